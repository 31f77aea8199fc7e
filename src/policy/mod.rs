//! Policy: Cedar policies from the SoT decide, per target node, whether a
//! job may run. Every job passes [`PolicyCheck`] in the admission gate
//! before any node is touched; a denial is exit 3 with the deciding policy
//! ids and the reason for each denied node.
//!
//! - `policies/*.cedar`: the policies, each named by an `@id("…")`
//!   annotation (else `FILE.N`).
//! - `policies/schema.cedarschema`: the schema they are validated against in
//!   strict mode when the SoT loads (problems with file:line:col).
//! - `policies/tests.toml`: requests and the decision each must get, run by
//!   `maestro policy test` and `maestro sot check`.
//!
//! Entities come from the SoT (people and teams, groups, nodes with their
//! tags, agents, models) and are built once per SoT load.
//!
//! Cedar skips a policy whose evaluation errors, so an erroring `forbid`
//! would not deny. Two things close that hole here: strict validation
//! refuses policies that could error on a missing attribute or tag (the
//! validator demands `has`/`hasTag` guards), and any evaluation error that
//! remains counts as a denial ([`Answer::allowed`] is false when a policy
//! errored), with the error shown.

mod check;
mod entities;
pub mod load;
mod question;
mod suite;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::PathBuf;

pub use check::{PolicyCheck, denial};
pub use load::load;
pub use question::{Answer, JobContext, NodeAnswer, Question, action_of, agent_of};
pub use suite::{CaseResult, TestCase};

/// Where the policies live in the SoT, and their schema and tests.
pub const DIR: &str = "policies";
pub const SCHEMA_FILE: &str = "schema.cedarschema";
pub const TESTS_FILE: &str = "tests.toml";
/// The Cedar namespace of maestro's entity types and actions.
pub const NAMESPACE: &str = "Maestro";

/// Every action a job can be, as Cedar names it (`Maestro::Action::"deploy"`),
/// and the group it is in: `change` (touches nodes) or `read`.
pub const ACTIONS: &[(&str, &str)] = &[
    ("exec", "change"),
    ("play", "change"),
    ("install", "change"),
    ("harden", "change"),
    ("deploy", "change"),
    ("enable", "change"),
    ("disable", "change"),
    ("gateway", "change"),
    ("kill", "change"),
    ("release", "change"),
    ("promote", "change"),
    ("audit", "read"),
    ("status", "read"),
];

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("unknown action `{0}`; actions: {1}")]
    UnknownAction(String, String),
    #[error("no node `{0}` in the SoT")]
    UnknownNode(String),
    #[error("no agent `{0}` in the SoT")]
    UnknownAgent(String),
    #[error("the request does not fit the policy schema: {0}")]
    Request(String),
}

pub type Result<T> = std::result::Result<T, PolicyError>;

/// Where a policy was written (for `policy list` and denials).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub file: PathBuf,
    pub line: usize,
    pub effect: &'static str,
    /// The policy's `@reason("…")` annotation, or its first comment line.
    pub reason: Option<String>,
}

/// The policies of a SoT, validated, with the SoT's entities.
pub struct Policies {
    schema: cedar_policy::Schema,
    set: cedar_policy::PolicySet,
    entities: cedar_policy::Entities,
    authorizer: cedar_policy::Authorizer,
    /// Policy id → where it is, in file order.
    origins: BTreeMap<String, Origin>,
    order: Vec<String>,
    tests: Vec<TestCase>,
    /// Whether any policy can tell two nodes with the same groups and tags
    /// apart (names a node or reads its `name`); if none can, one decision
    /// serves every node of the same kind.
    node_identity: bool,
}

impl std::fmt::Debug for Policies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Policies")
            .field("policies", &self.order)
            .field("tests", &self.tests.len())
            .finish()
    }
}

impl Policies {
    /// Policy ids in file order, with where each is written.
    pub fn list(&self) -> impl Iterator<Item = (&str, &Origin)> {
        self.order
            .iter()
            .filter_map(|id| self.origins.get(id).map(|o| (id.as_str(), o)))
    }

    pub fn origin(&self, id: &str) -> Option<&Origin> {
        self.origins.get(id)
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    pub fn tests(&self) -> &[TestCase] {
        &self.tests
    }
}
