//! Reading `policies/`: the schema, every `*.cedar` file and the tests,
//! parsed and validated in strict mode, every problem a diagnostic with
//! file:line:col. The SoT loader calls [`load`] once the rest of the SoT is
//! valid, because the entities are built from it.

use std::collections::BTreeMap;
use std::str::FromStr;

use cedar_policy::{Authorizer, Entities, PolicyId, PolicySet, Schema, ValidationMode, Validator};

use super::{Origin, Policies, entities, suite};
use crate::diag::{Code, Diagnostic, SourceFile};
use crate::sot::model::Sot;

/// The policy files of a SoT, as the loader read them.
pub struct Sources<'a> {
    pub policies: Vec<&'a SourceFile>,
    pub schema: Option<&'a SourceFile>,
    pub tests: Option<&'a SourceFile>,
}

/// Diagnostics for a Cedar error: one per labelled span (or one at the
/// start of the file), the error's help as the hint.
fn cedar_diagnostics(
    file: &SourceFile,
    code: Code,
    err: &dyn miette::Diagnostic,
    context: &str,
    out: &mut Vec<Diagnostic>,
) {
    let related: Vec<&dyn miette::Diagnostic> =
        err.related().map(|r| r.collect()).unwrap_or_default();
    let mut message = format!("{context}{err}");
    if !related.is_empty() && err.labels().is_none() {
        // A collection of errors (ParseErrors): report each with its place.
        for e in related {
            cedar_diagnostics(file, code, e, context, out);
        }
        return;
    }
    let spans: Vec<std::ops::Range<usize>> = err
        .labels()
        .map(|ls| ls.map(|l| l.offset()..l.offset() + l.len()).collect())
        .unwrap_or_default();
    let hint = err.help().map(|h| h.to_string());
    if spans.is_empty() {
        message = message.replace('\n', " ");
    }
    for span in spans
        .iter()
        .take(1)
        .cloned()
        .chain(spans.is_empty().then_some(0..0))
    {
        let mut d = file.diagnostic(code, span, message.clone());
        d.hint = hint.clone();
        out.push(d);
    }
}

/// Offset of the `n`th (0-based) policy's first token in `text`: the start
/// of its annotations or of `permit`/`forbid`. Cedar's public API keeps no
/// source location for a parsed policy, so the origin is found in the text.
fn policy_starts(text: &str) -> Vec<usize> {
    let mut starts = Vec::new();
    let mut pending: Option<usize> = None;
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim_start();
        let at = offset + (line.len() - trimmed.len());
        if trimmed.starts_with('@') {
            pending.get_or_insert(at);
        } else if trimmed.starts_with("permit") || trimmed.starts_with("forbid") {
            starts.push(pending.take().unwrap_or(at));
        } else if !trimmed.is_empty() && !trimmed.starts_with("//") {
            pending = None;
        }
        offset += line.len();
    }
    starts
}

/// The comment lines just above offset `at` (the policy's explanation).
fn comment_above(text: &str, at: usize) -> Option<String> {
    let before = &text[..at];
    let mut lines: Vec<&str> = Vec::new();
    for line in before.lines().rev() {
        let t = line.trim();
        if let Some(c) = t.strip_prefix("//") {
            lines.push(c.trim());
        } else {
            break;
        }
    }
    lines.reverse();
    let joined = lines.join(" ");
    (!joined.is_empty()).then_some(joined)
}

/// Load the policies of `sot` from `sources`. None when the SoT has no
/// policy files at all.
pub fn load(
    sot: &Sot,
    sources: &Sources<'_>,
) -> std::result::Result<Option<Policies>, Vec<Diagnostic>> {
    if sources.policies.is_empty() && sources.schema.is_none() {
        if let Some(tests) = sources.tests {
            return Err(vec![tests.diagnostic(
                Code::MissingFile,
                0..0,
                "policy tests without policies: add policies/*.cedar and policies/schema.cedarschema"
                    .into(),
            )]);
        }
        return Ok(None);
    }
    let mut diags = Vec::new();
    let Some(schema_file) = sources.schema else {
        let first = sources.policies[0];
        return Err(vec![first.diagnostic(
            Code::MissingFile,
            0..0,
            format!(
                "policies need a schema: add {}/{} (the example SoT of `maestro init` has one)",
                super::DIR,
                super::SCHEMA_FILE
            ),
        )]);
    };
    let schema = match Schema::from_cedarschema_str(&schema_file.text) {
        Ok((schema, _warnings)) => Some(schema),
        Err(e) => {
            cedar_diagnostics(schema_file, Code::Syntax, &e, "", &mut diags);
            None
        }
    };

    let mut set = PolicySet::new();
    let mut origins = BTreeMap::new();
    let mut order = Vec::new();
    // Which file each policy came from, for validation errors.
    let mut file_of: BTreeMap<String, &SourceFile> = BTreeMap::new();
    for file in &sources.policies {
        let parsed = match PolicySet::from_str(&file.text) {
            Ok(p) => p,
            Err(e) => {
                cedar_diagnostics(file, Code::Syntax, &e, "", &mut diags);
                continue;
            }
        };
        let starts = policy_starts(&file.text);
        let stem = file
            .display_path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        // PolicySet iterates in no particular order; Cedar numbers the
        // policies of one text policy0, policy1, … in source order.
        let mut policies: Vec<_> = parsed.policies().collect();
        policies.sort_by_key(|p| {
            p.id()
                .to_string()
                .trim_start_matches("policy")
                .parse::<usize>()
                .unwrap_or(usize::MAX)
        });
        for (n, policy) in policies.into_iter().enumerate() {
            let start = starts.get(n).copied().unwrap_or(0);
            let id = match policy.annotation("id") {
                Some(id) if !id.trim().is_empty() => id.to_string(),
                _ => {
                    diags.push(file.diagnostic(
                        Code::MissingKey,
                        start..start + 6,
                        format!(
                            "policy {} of this file has no `@id(\"…\")`: denials name policies by id",
                            n + 1
                        ),
                    ));
                    format!("{stem}.{}", n + 1)
                }
            };
            if let Some(other) = file_of.get(&id) {
                diags.push(file.diagnostic(
                    Code::Duplicate,
                    start..start + 3,
                    format!(
                        "policy id `{id}` is also used in {}",
                        other.display_path.display()
                    ),
                ));
                continue;
            }
            let effect = match policy.effect() {
                cedar_policy::Effect::Permit => "permit",
                cedar_policy::Effect::Forbid => "forbid",
            };
            let reason = policy
                .annotation("reason")
                .map(str::to_string)
                .or_else(|| comment_above(&file.text, start));
            if let Err(e) = set.add(policy.new_id(PolicyId::new(&id))) {
                cedar_diagnostics(file, Code::BadValue, &e, "", &mut diags);
                continue;
            }
            let line = file.text[..start.min(file.text.len())]
                .matches('\n')
                .count()
                + 1;
            origins.insert(
                id.clone(),
                Origin {
                    file: file.display_path.clone(),
                    line,
                    effect,
                    reason,
                },
            );
            order.push(id.clone());
            file_of.insert(id, file);
        }
    }
    let Some(schema) = schema else {
        return Err(diags);
    };
    let validation = Validator::new(schema.clone()).validate(&set, ValidationMode::Strict);
    for e in validation.validation_errors() {
        let id = e.policy_id().to_string();
        match file_of.get(&id) {
            Some(file) => cedar_diagnostics(
                file,
                Code::BadValue,
                e,
                &format!("policy `{id}`: "),
                &mut diags,
            ),
            None => diags.push(schema_file.diagnostic(Code::BadValue, 0..0, e.to_string())),
        }
    }
    let entities = match entities::build(sot)
        .map_err(|e| e.to_string())
        .and_then(|list| Entities::from_entities(list, Some(&schema)).map_err(|e| e.to_string()))
    {
        Ok(e) => Some(e),
        Err(e) => {
            diags.push(schema_file.diagnostic(
                Code::BadValue,
                0..0,
                format!("the SoT's people, nodes, agents or models do not fit this schema: {e}"),
            ));
            None
        }
    };
    let tests = match sources.tests {
        Some(file) => suite::parse(file, sot, &mut diags),
        None => Vec::new(),
    };
    if !diags.is_empty() {
        return Err(diags);
    }
    Ok(Some(Policies {
        schema,
        set,
        entities: entities.expect("no diagnostics implies entities were built"),
        authorizer: Authorizer::new(),
        origins,
        order,
        tests,
        // Conservative: a mention anywhere, comments included, turns the
        // sharing of decisions off.
        node_identity: sources
            .policies
            .iter()
            .any(|f| f.text.contains("Node::") || f.text.contains(".name")),
    }))
}
