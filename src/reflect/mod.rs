//! Reflection: the checklists the SoT asks operations to be reflected on
//! (`checklists/*.toml`), the pending reflections an operation leaves when
//! one of them triggers, the answers (every cited piece of evidence
//! resolved, the whole scanned for secrets, committed into the SoT by the
//! verified person who signs them, referenced from the ledger), and the
//! lessons they record, which earn their way from short-term to long-term
//! memory by being applied.
//!
//! A checklist's triggers are fields, not code: the operations layer and the
//! rollout controller describe what happened as [`Operation`]s and [`fire`]
//! matches them against every checklist. Nothing here prints or touches a
//! node; pending reflections and lesson uses are kept in the run store.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::sot::model::{Autonomy, Sot};
use crate::store::{NewReflection, Reflection, ReflectionStore, StoreError};

pub mod answer;
pub mod evidence;
pub mod lesson;
pub mod stats;
#[cfg(test)]
mod tests;

pub use answer::{Answered, Answers};
pub use lesson::{Lesson, LessonScope, Memory};
pub use stats::Stats;

/// Where checklists live in the SoT.
pub const CHECKLISTS_DIR: &str = "checklists";
/// Where answered reflections are committed.
pub const REFLECTIONS_DIR: &str = "reflections";
/// The lessons registry.
pub const LESSONS_FILE: &str = "lessons.toml";

#[derive(Debug, thiserror::Error)]
pub enum ReflectError {
    /// The answer or the request is wrong (exit 2): every problem at once.
    #[error("{}", .0.join("\n"))]
    Invalid(Vec<String>),
    /// Problems located in a file (exit 2).
    #[error("{0}")]
    Diagnostics(crate::diag::Diagnostics),
    /// The actor may not do this (exit 3).
    #[error("{0}")]
    Denied(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Sot(#[from] crate::sot::SotError),
    #[error("the ledger: {0}")]
    Ledger(#[from] crate::ledger::LedgerError),
}

impl ReflectError {
    pub fn exit(&self) -> crate::exit::Exit {
        use crate::exit::Exit;
        match self {
            ReflectError::Invalid(_) | ReflectError::Diagnostics(_) => Exit::InvalidInput,
            ReflectError::Denied(_) => Exit::PolicyDenied,
            ReflectError::Sot(e) if e.is_invalid_input() => Exit::InvalidInput,
            ReflectError::Sot(_) => Exit::Internal,
            ReflectError::Store(_) | ReflectError::Ledger(_) => Exit::Internal,
        }
    }
}

pub type Result<T> = std::result::Result<T, ReflectError>;

/// What can make a checklist apply: one field each in `[checklist.NAME.on]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// A rollout ended rolled back (a failed gate, `abort`, the kill switch).
    RolloutAborted,
    RolloutCompleted,
    KillEngaged,
    KillReleased,
    /// A run in which some node failed, was unreachable or timed out.
    FailedNodes,
    /// A hardening audit whose compliance fell below the checklist's percent.
    AuditBelow,
    /// A deploy (or enable) of an agent at or above the checklist's level.
    DeployAutonomy,
    /// A job let through a freeze window by `--break-glass`.
    BreakGlass,
}

impl Trigger {
    pub const ALL: [Trigger; 8] = [
        Trigger::RolloutAborted,
        Trigger::RolloutCompleted,
        Trigger::KillEngaged,
        Trigger::KillReleased,
        Trigger::FailedNodes,
        Trigger::AuditBelow,
        Trigger::DeployAutonomy,
        Trigger::BreakGlass,
    ];

    /// The field of `[checklist.NAME.on]` (and how the store names it).
    pub fn key(self) -> &'static str {
        match self {
            Trigger::RolloutAborted => "rollout_aborted",
            Trigger::RolloutCompleted => "rollout_completed",
            Trigger::KillEngaged => "kill_engaged",
            Trigger::KillReleased => "kill_released",
            Trigger::FailedNodes => "failed_nodes",
            Trigger::AuditBelow => "audit_below",
            Trigger::DeployAutonomy => "deploy_autonomy",
            Trigger::BreakGlass => "break_glass",
        }
    }

    pub fn parse(s: &str) -> Option<Trigger> {
        Trigger::ALL.into_iter().find(|t| t.key() == s)
    }
}

/// A checklist's triggers as the SoT writes them.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Triggers {
    pub rollout_aborted: bool,
    pub rollout_completed: bool,
    pub kill_engaged: bool,
    pub kill_released: bool,
    pub failed_nodes: bool,
    /// Compliance percent below which an audit triggers.
    pub audit_below: Option<f64>,
    /// The lowest agent level whose deploys trigger.
    pub deploy_autonomy: Option<Autonomy>,
    pub break_glass: bool,
}

impl Triggers {
    /// Whether `op` makes this checklist apply.
    pub fn matches(&self, op: &Operation) -> bool {
        match op.trigger {
            Trigger::RolloutAborted => self.rollout_aborted,
            Trigger::RolloutCompleted => self.rollout_completed,
            Trigger::KillEngaged => self.kill_engaged,
            Trigger::KillReleased => self.kill_released,
            Trigger::FailedNodes => self.failed_nodes,
            Trigger::BreakGlass => self.break_glass,
            Trigger::AuditBelow => matches!(
                (self.audit_below, op.measure),
                (Some(limit), Some(percent)) if percent < limit
            ),
            Trigger::DeployAutonomy => matches!(
                (self.deploy_autonomy, op.measure),
                (Some(level), Some(agent)) if agent >= f64::from(level.0)
            ),
        }
    }

    pub fn any(&self) -> bool {
        self.rollout_aborted
            || self.rollout_completed
            || self.kill_engaged
            || self.kill_released
            || self.failed_nodes
            || self.audit_below.is_some()
            || self.deploy_autonomy.is_some()
            || self.break_glass
    }
}

/// What an answer may cite, written `KIND:VALUE` (`run:r-…`, `url:https://…`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EvidenceKind {
    /// A run in the store.
    Run,
    /// A rollout in the store.
    Rollout,
    /// A ledger entry, by its hash (or a prefix of 12 or more).
    Ledger,
    /// A commit of the SoT repository.
    Commit,
    /// A file of the SoT, by its path in it.
    File,
    /// A web page (an incident ticket, a dashboard): http or https.
    Url,
    /// A lesson of `lessons.toml` (citing one counts as applying it).
    Lesson,
}

impl EvidenceKind {
    pub const ALL: [EvidenceKind; 7] = [
        EvidenceKind::Run,
        EvidenceKind::Rollout,
        EvidenceKind::Ledger,
        EvidenceKind::Commit,
        EvidenceKind::File,
        EvidenceKind::Url,
        EvidenceKind::Lesson,
    ];

    pub fn key(self) -> &'static str {
        match self {
            EvidenceKind::Run => "run",
            EvidenceKind::Rollout => "rollout",
            EvidenceKind::Ledger => "ledger",
            EvidenceKind::Commit => "commit",
            EvidenceKind::File => "file",
            EvidenceKind::Url => "url",
            EvidenceKind::Lesson => "lesson",
        }
    }

    pub fn parse(s: &str) -> Option<EvidenceKind> {
        EvidenceKind::ALL.into_iter().find(|k| k.key() == s)
    }
}

/// One question of a checklist.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Item {
    pub id: String,
    pub question: String,
    pub required: bool,
    /// The kinds of evidence an answer must cite one of (none: text is enough).
    pub evidence: Vec<EvidenceKind>,
}

/// A checklist of `checklists/*.toml` (`[checklist.NAME]`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Checklist {
    pub name: String,
    pub title: String,
    pub on: Triggers,
    pub items: Vec<Item>,
    /// Who may sign answers: these people, and the members of these teams
    /// (both empty: anyone of people.toml).
    pub people: Vec<String>,
    pub teams: Vec<String>,
    /// An agent's pending reflection of this checklist holds its next
    /// rollout (exit 4) until it is answered.
    pub block_rollouts: bool,
    /// The file it is defined in, relative to the SoT.
    pub file: std::path::PathBuf,
}

impl Checklist {
    /// Whether `person` may sign an answer to it.
    pub fn may_answer(&self, person: &crate::sot::model::Person) -> bool {
        (self.people.is_empty() && self.teams.is_empty())
            || self.people.contains(&person.name)
            || person.teams.iter().any(|t| self.teams.contains(t))
    }

    /// "ada, team platform" — who may answer, for messages.
    pub fn answerers(&self) -> String {
        if self.people.is_empty() && self.teams.is_empty() {
            return "anyone in people.toml".into();
        }
        let mut parts: Vec<String> = self.people.clone();
        match self.teams.len() {
            0 => {}
            1 => parts.push(format!("team {}", self.teams[0])),
            _ => parts.push(format!("teams {}", self.teams.join(", "))),
        }
        parts.join(", ")
    }
}

/// Something that happened which a checklist may want reflected on.
#[derive(Debug, Clone, PartialEq)]
pub struct Operation {
    pub trigger: Trigger,
    /// What it is, as evidence: `run:ID` or `rollout:ID`.
    pub source: String,
    pub agent: Option<String>,
    /// As shown to people (`deploy fleet-doctor@1.4.0`).
    pub description: String,
    /// The figure a threshold judges: compliance percent for audits, the
    /// agent's level for deploys.
    pub measure: Option<f64>,
}

/// Record a pending reflection for every checklist `op` triggers (once per
/// checklist and operation: a second firing of the same is not a second
/// reflection). Returns the reflections made.
pub fn fire(
    sot: &Sot,
    store: &mut dyn ReflectionStore,
    ops: &[Operation],
    now_ms: i64,
) -> Result<Vec<Reflection>> {
    let mut made = Vec::new();
    for op in ops {
        for checklist in sot.checklists.values() {
            if !checklist.on.matches(op) {
                continue;
            }
            let new = NewReflection {
                id: new_id(&checklist.name, &op.source, now_ms),
                checklist: checklist.name.clone(),
                trigger: op.trigger.key().to_string(),
                source: op.source.clone(),
                agent: op.agent.clone(),
                description: op.description.clone(),
                created_ms: now_ms,
            };
            if let Some(r) = store.add_reflection(&new)? {
                made.push(r);
            }
        }
    }
    Ok(made)
}

/// `rfl-` and 10 hex digits of the checklist, the operation and the time.
fn new_id(checklist: &str, source: &str, now_ms: i64) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(format!("{checklist}\0{source}\0{now_ms}"));
    let hex: String = digest.iter().take(5).map(|b| format!("{b:02x}")).collect();
    format!("rfl-{hex}")
}

/// The first pending reflection of `agent` whose checklist holds its next
/// rollout: what `rollout start` is refused with.
pub fn blocking_rollout(
    sot: &Sot,
    store: &dyn ReflectionStore,
    agent: &str,
) -> Result<Option<Reflection>> {
    Ok(store.reflections(true)?.into_iter().find(|r| {
        r.agent.as_deref() == Some(agent)
            && sot
                .checklists
                .get(&r.checklist)
                .is_some_and(|c| c.block_rollouts)
    }))
}

/// The refusal `rollout start` gives for `r` (exit 4).
pub fn blocking_refusal(sot: &Sot, r: &Reflection) -> crate::ops::Refusal {
    let title = sot
        .checklists
        .get(&r.checklist)
        .map(|c| c.title.clone())
        .unwrap_or_else(|| r.checklist.clone());
    crate::ops::Refusal {
        class: crate::ops::RefusalClass::Blocked,
        reasons: vec![format!(
            "reflection: {} ({title}, after {}) must be answered before the next rollout of {}: maestro reflect {}",
            r.id,
            r.description,
            r.agent.as_deref().unwrap_or("the agent"),
            r.id
        )],
        approval: None,
    }
}

/// Pending reflections by checklist, for the console's header and lists.
pub fn pending_by_checklist(reflections: &[Reflection]) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for r in reflections.iter().filter(|r| r.answered_ms.is_none()) {
        *out.entry(r.checklist.clone()).or_insert(0) += 1;
    }
    out
}

/// Milliseconds since the epoch, now.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}
