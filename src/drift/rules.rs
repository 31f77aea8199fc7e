//! `drift.toml`: per-field ignore rules (Argo CD's `ignoreDifferences`).
//!
//! ```toml
//! [[ignore]]
//! what = "agent-version"        # agent-version | agent-digest | agent-stopped | unknown-agent | playbook
//! agent = "fleet-doctor"        # optional: only this agent (agent kinds, unknown-agent)
//! nodes = "canary-*"            # optional: a target pattern, as `--limit` takes
//! path = "/etc/motd"            # optional, playbook only: a path the task names
//! task = "motd"                 # optional, playbook only: the task's name
//! reason = "the canary runs ahead of current"
//! ```
//!
//! Every problem is a diagnostic with file:line:col; a missing file means
//! no rules.

use std::collections::HashSet;
use std::path::Path;

use serde::Deserialize;
use toml::Spanned;

use super::{Finding, Kind};
use crate::diag::{Code, Diagnostic, Diagnostics, SourceFile, display_path};
use crate::fleet::target;
use crate::sot::Sot;

/// The file's name in the SoT.
pub const FILE: &str = "drift.toml";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    ignore: Vec<RawRule>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    what: Spanned<String>,
    agent: Option<Spanned<String>>,
    nodes: Option<Spanned<String>>,
    path: Option<Spanned<String>>,
    task: Option<Spanned<String>>,
    reason: Spanned<String>,
}

/// One rule: a finding it matches is reported as ignored, with the reason.
#[derive(Debug, Clone)]
pub struct Rule {
    pub what: Kind,
    pub agent: Option<String>,
    /// The nodes the pattern selected when the rules were loaded.
    pub nodes: Option<HashSet<String>>,
    pub path: Option<String>,
    pub task: Option<String>,
    pub reason: String,
    /// `drift.toml:LINE`, for the report.
    pub at: String,
}

#[derive(Debug, Clone, Default)]
pub struct Rules(pub Vec<Rule>);

impl Rules {
    /// The rule that makes `finding` ignored, if any.
    pub fn matching(&self, f: &Finding) -> Option<&Rule> {
        self.0.iter().find(|r| {
            r.what == f.kind
                && r.agent.as_ref().is_none_or(|a| *a == f.subject)
                && r.nodes.as_ref().is_none_or(|n| n.contains(&f.node))
                && r.task.as_ref().is_none_or(|t| Some(t) == f.task.as_ref())
                && r.path.as_ref().is_none_or(|p| {
                    f.detail
                        .split(|c: char| c.is_whitespace() || c == ':')
                        .any(|w| w == p)
                })
        })
    }
}

/// The rules in `sot.root/drift.toml` (none when it does not exist).
pub fn load(sot: &Sot) -> Result<Rules, Diagnostics> {
    let path = sot.root.join(FILE);
    let shown = display_path(&sot.root, Path::new(FILE));
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Rules::default()),
        Err(e) => {
            return Err(Diagnostics::one(Diagnostic::file_level(
                Code::MissingFile,
                &shown,
                format!("cannot read {FILE}: {e}"),
            )));
        }
    };
    parse(sot, shown, text)
}

/// Parse and validate the rules' text (`shown` is the path diagnostics name).
pub fn parse(sot: &Sot, shown: std::path::PathBuf, text: String) -> Result<Rules, Diagnostics> {
    let file = SourceFile::new(shown, text);
    let raw: RawFile = toml::from_str(&file.text)
        .map_err(|e| Diagnostics::one(Diagnostic::from_toml_error(&file, &e)))?;
    let mut problems = Diagnostics::default();
    let mut rules = Vec::new();
    for r in raw.ignore {
        let line = file
            .diagnostic(Code::BadValue, r.what.span(), String::new())
            .line;
        let what = match Kind::parse(r.what.get_ref()) {
            Some(k) => Some(k),
            None => {
                let mut d = file.diagnostic(
                    Code::BadValue,
                    r.what.span(),
                    format!("`{}` is not a kind of drift", r.what.get_ref()),
                );
                d.hint = Some(format!("one of {}", Kind::NAMES.join(", ")));
                problems.extend([d]);
                None
            }
        };
        if let Some(a) = &r.agent
            && !sot.agents.contains_key(a.get_ref())
            && what != Some(Kind::UnknownAgent)
        {
            let mut d = file.diagnostic(
                Code::DanglingRef,
                a.span(),
                format!("agent `{}` is not in the registry", a.get_ref()),
            );
            d.hint = crate::diag::suggest(a.get_ref(), sot.agents.keys().map(String::as_str))
                .map(|s| format!("did you mean `{s}`?"));
            problems.extend([d]);
        }
        let nodes = match &r.nodes {
            None => None,
            Some(p) => match target::select(sot, p.get_ref()) {
                Ok(ix) => Some(ix.iter().map(|&i| sot.nodes[i].name.clone()).collect()),
                Err(e) => {
                    problems.extend([file.diagnostic(Code::DanglingRef, p.span(), e.to_string())]);
                    None
                }
            },
        };
        for (key, v) in [("path", &r.path), ("task", &r.task)] {
            if let Some(v) = v
                && what.is_some()
                && what != Some(Kind::Playbook)
            {
                problems.extend([file.diagnostic(
                    Code::BadValue,
                    v.span(),
                    format!("`{key}` only applies to `what = \"playbook\"`"),
                )]);
            }
        }
        if r.reason.get_ref().trim().is_empty() {
            problems.extend([file.diagnostic(
                Code::BadValue,
                r.reason.span(),
                "an ignore rule needs a reason".into(),
            )]);
        }
        if let Some(what) = what {
            rules.push(Rule {
                what,
                agent: r.agent.map(Spanned::into_inner),
                nodes,
                path: r.path.map(Spanned::into_inner),
                task: r.task.map(Spanned::into_inner),
                reason: r.reason.into_inner(),
                at: format!("{FILE}:{line}"),
            });
        }
    }
    if problems.is_empty() {
        Ok(Rules(rules))
    } else {
        problems.sort();
        Err(problems)
    }
}
