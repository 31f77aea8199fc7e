//! Target patterns in the SoT (a kill switch's `limit`, a freeze window's
//! `targets`), checked against the nodes and groups once they are loaded:
//! a pattern that selects nothing would hold nothing, silently.

use std::ops::Range;

use crate::diag::{Code, Diagnostics, SourceFile};
use crate::sot::schema::At;
use crate::sot::{Result, Sot, SotError};

/// One pattern, where it was written and what it scopes.
pub(super) struct Scope {
    pub file: usize,
    pub pattern: At<String>,
    /// How messages name its owner: "freeze window `weekend`".
    pub what: String,
}

impl Scope {
    pub fn new(file: usize, pattern: &At<String>, what: &str) -> Scope {
        Scope {
            file,
            pattern: pattern.clone(),
            what: what.to_string(),
        }
    }
}

pub(super) fn check(sot: &Sot, files: &[SourceFile], scopes: &[Scope]) -> Result<()> {
    let mut diags = Vec::new();
    for s in scopes {
        if let Err(e) = crate::fleet::target::select(sot, &s.pattern.value) {
            let span: Range<usize> = s.pattern.span.clone();
            let mut d = files[s.file].diagnostic(
                Code::DanglingRef,
                span,
                format!("the target of {} selects no node: {e}", s.what),
            );
            d.hint = Some(
                "use node names, groups, globs or tag selectors the SoT has (see `maestro node list`)"
                    .into(),
            );
            diags.push(d);
        }
    }
    if diags.is_empty() {
        return Ok(());
    }
    let mut d = Diagnostics(diags);
    d.sort();
    Err(SotError::Invalid(d))
}
