//! `policies/tests.toml`: requests and the decision each must get, so a
//! change to a policy that opens a hole (or closes a door) fails
//! `maestro policy test` and `maestro sot check`.
//!
//! ```toml
//! [[test]]
//! name = "an EU-only agent never runs on a US node"
//! actor = "ada"                  # a person of people.toml
//! verified = true                # false: the name is only claimed
//! action = "deploy"
//! node = "gpu-us-01"
//! agent = "invoice-extractor"
//! approvals = 0                  # optional context: hour, weekday, targets,
//! expect = "deny"                # frozen, break_glass
//! policies = ["model-jurisdiction"]   # optional: exactly these decided
//! ```

use serde::{Deserialize, Serialize};
use toml::Spanned;

use super::question::{JobContext, Question};
use super::{ACTIONS, Policies};
use crate::diag::{Code, Diagnostic, SourceFile};
use crate::identity::Actor;
use crate::sot::model::Sot;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    test: Vec<Raw>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    name: String,
    actor: Spanned<String>,
    #[serde(default = "yes")]
    verified: bool,
    action: Spanned<String>,
    node: Spanned<String>,
    agent: Option<Spanned<String>>,
    #[serde(default)]
    approvals: usize,
    #[serde(default = "noon")]
    hour: u32,
    #[serde(default = "monday")]
    weekday: u32,
    #[serde(default = "one")]
    targets: usize,
    #[serde(default)]
    frozen: bool,
    #[serde(default)]
    break_glass: bool,
    expect: Spanned<String>,
    policies: Option<Vec<String>>,
}

fn yes() -> bool {
    true
}
fn noon() -> u32 {
    12
}
fn monday() -> u32 {
    1
}
fn one() -> usize {
    1
}

/// One test, resolved against the SoT.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TestCase {
    pub name: String,
    /// Line of the test's `name` in tests.toml.
    pub line: usize,
    pub actor: Actor,
    pub action: String,
    pub node: String,
    pub agent: Option<String>,
    pub context: JobContext,
    pub expect_allow: bool,
    pub policies: Option<Vec<String>>,
}

/// What one test got.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CaseResult {
    pub name: String,
    pub line: usize,
    pub passed: bool,
    pub allowed: bool,
    pub policies: Vec<String>,
    /// Why it failed, in words.
    pub problem: Option<String>,
}

pub(super) fn parse(file: &SourceFile, sot: &Sot, diags: &mut Vec<Diagnostic>) -> Vec<TestCase> {
    let raw: File = match toml::from_str(&file.text) {
        Ok(f) => f,
        Err(e) => {
            diags.push(Diagnostic::from_toml_error(file, &e));
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    for t in raw.test {
        let mut bad = |span: std::ops::Range<usize>, message: String| {
            diags.push(file.diagnostic(Code::DanglingRef, span, message));
        };
        let mut ok = true;
        if !sot.people.contains_key(t.actor.get_ref()) && t.verified {
            bad(
                t.actor.span(),
                format!(
                    "test `{}`: no person `{}` in people.toml (set `verified = false` for a typed name)",
                    t.name,
                    t.actor.get_ref()
                ),
            );
            ok = false;
        }
        if !ACTIONS.iter().any(|(a, _)| a == t.action.get_ref()) {
            bad(
                t.action.span(),
                format!("test `{}`: unknown action `{}`", t.name, t.action.get_ref()),
            );
            ok = false;
        }
        if sot.node(t.node.get_ref()).is_none() {
            bad(
                t.node.span(),
                format!(
                    "test `{}`: no node `{}` in the SoT",
                    t.name,
                    t.node.get_ref()
                ),
            );
            ok = false;
        }
        if let Some(a) = &t.agent
            && !sot.agents.contains_key(a.get_ref())
        {
            bad(
                a.span(),
                format!("test `{}`: no agent `{}` in the SoT", t.name, a.get_ref()),
            );
            ok = false;
        }
        let expect_allow = match t.expect.get_ref().as_str() {
            "allow" => true,
            "deny" => false,
            other => {
                diags.push(file.diagnostic(
                    Code::BadValue,
                    t.expect.span(),
                    format!(
                        "test `{}`: expect is \"allow\" or \"deny\", not \"{other}\"",
                        t.name
                    ),
                ));
                ok = false;
                false
            }
        };
        if !ok {
            continue;
        }
        let line = file.text[..t.actor.span().start].matches('\n').count() + 1;
        let actor = match sot.people.get(t.actor.get_ref()) {
            Some(p) if t.verified => Actor::Person {
                name: p.name.clone(),
                key: "test".into(),
            },
            _ => Actor::unverified(t.actor.get_ref().clone()),
        };
        let changes = ACTIONS
            .iter()
            .any(|(a, g)| *a == t.action.get_ref() && *g == "change");
        out.push(TestCase {
            name: t.name,
            line,
            actor,
            action: t.action.into_inner(),
            node: t.node.into_inner(),
            agent: t.agent.map(Spanned::into_inner),
            context: JobContext {
                hour: t.hour,
                weekday: t.weekday,
                targets: t.targets,
                changes,
                approvals: t.approvals,
                frozen: t.frozen,
                break_glass: t.break_glass,
            },
            expect_allow,
            policies: t.policies,
        });
    }
    out
}

impl Policies {
    /// Run every test of `policies/tests.toml`.
    pub fn run_tests(&self, sot: &Sot) -> Vec<CaseResult> {
        self.tests
            .iter()
            .map(|t| {
                let nodes = [t.node.clone()];
                let q = Question {
                    actor: &t.actor,
                    action: &t.action,
                    agent: t.agent.as_deref(),
                    nodes: &nodes,
                    context: t.context.clone(),
                };
                let answer = match self.decide(&q, sot) {
                    Ok(a) => a,
                    Err(e) => {
                        return CaseResult {
                            name: t.name.clone(),
                            line: t.line,
                            passed: false,
                            allowed: false,
                            policies: Vec::new(),
                            problem: Some(e.to_string()),
                        };
                    }
                };
                let node = &answer.nodes[0];
                let mut problem = None;
                if node.allowed != t.expect_allow {
                    problem = Some(format!(
                        "expected {}, got {} ({})",
                        if t.expect_allow { "allow" } else { "deny" },
                        if node.allowed { "allow" } else { "deny" },
                        node.reason(self)
                    ));
                } else if let Some(want) = &t.policies {
                    let mut want = want.clone();
                    want.sort();
                    if want != node.policies {
                        problem = Some(format!(
                            "decided by [{}], the test expects [{}]",
                            node.policies.join(", "),
                            want.join(", ")
                        ));
                    }
                }
                CaseResult {
                    name: t.name.clone(),
                    line: t.line,
                    passed: problem.is_none(),
                    allowed: node.allowed,
                    policies: node.policies.clone(),
                    problem,
                }
            })
            .collect()
    }
}
