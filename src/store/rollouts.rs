//! What the store keeps of rollouts: the rollout row (where it is, what it
//! waits for), its journal (an intent before every node action and gate
//! decision, a result after) and its gate measurements with their values.
//! The controller resumes from these after a crash; the faces read them.

use serde::Serialize;

use super::Result;

/// Where a rollout is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RolloutStatus {
    /// A controller drives it (or drove it and died: `rollout resume`).
    Progressing,
    /// Waiting for a person: a `pause = {}` step, an inconclusive gate, or
    /// `rollout pause`.
    Paused,
    /// Every node runs the new version.
    Completed,
    /// Rolled back (failed gate, failed health, `abort`, the kill switch).
    Aborted,
}

impl RolloutStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RolloutStatus::Progressing => "progressing",
            RolloutStatus::Paused => "paused",
            RolloutStatus::Completed => "completed",
            RolloutStatus::Aborted => "aborted",
        }
    }

    pub fn parse(s: &str) -> Option<RolloutStatus> {
        Some(match s {
            "progressing" => RolloutStatus::Progressing,
            "paused" => RolloutStatus::Paused,
            "completed" => RolloutStatus::Completed,
            "aborted" => RolloutStatus::Aborted,
            _ => return None,
        })
    }

    pub fn is_active(self) -> bool {
        matches!(self, RolloutStatus::Progressing | RolloutStatus::Paused)
    }
}

impl std::fmt::Display for RolloutStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A rollout as the store keeps it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rollout {
    pub id: String,
    pub agent: String,
    /// The stable version the nodes ran when it started (what rollback restores).
    pub from_version: Option<String>,
    pub to_version: String,
    pub strategy: String,
    /// The strategy and its gates as started (JSON).
    #[serde(skip)]
    pub definition: String,
    pub target: String,
    /// The target nodes in rollout order.
    pub nodes: Vec<String>,
    /// 1, then one more for each `retry`.
    pub attempt: u32,
    /// What it does or did last (`deploy`, `analysis`, `pause`, `rollback`, `done`).
    pub phase: String,
    /// Index of the current step.
    pub step: u32,
    /// The new version's share of the traffic now, percent.
    pub weight: u8,
    pub status: RolloutStatus,
    pub reason: Option<String>,
    /// What another process asked the controller to do (`pause`, `abort`).
    pub requested: Option<String>,
    /// `PID@HOST` of the process that drives it, while one does.
    pub controller: Option<String>,
    pub lease_ms: Option<i64>,
    pub created_by: String,
    pub created_ms: i64,
    pub updated_ms: i64,
}

/// What `rollout start` records.
#[derive(Debug, Clone)]
pub struct NewRollout {
    pub id: String,
    pub agent: String,
    pub from_version: Option<String>,
    pub to_version: String,
    pub strategy: String,
    pub definition: String,
    pub target: String,
    pub nodes: Vec<String>,
    pub created_by: String,
    pub controller: String,
}

/// One line of a rollout's journal.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JournalEntry {
    pub seq: i64,
    pub at_ms: i64,
    pub attempt: u32,
    pub step: Option<u32>,
    /// `intent` (written before the action) or `result` (after it).
    pub entry: String,
    pub action: String,
    pub node: Option<String>,
    pub version: Option<String>,
    pub ok: Option<bool>,
    pub detail: String,
}

/// A gate measurement's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Pass,
    Fail,
    /// Missing or too little data, or neither condition matched.
    Inconclusive,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Pass => "pass",
            Outcome::Fail => "fail",
            Outcome::Inconclusive => "inconclusive",
        }
    }

    pub fn parse(s: &str) -> Option<Outcome> {
        Some(match s {
            "pass" => Outcome::Pass,
            "fail" => Outcome::Fail,
            "inconclusive" => Outcome::Inconclusive,
            _ => return None,
        })
    }
}

/// One measurement of a gate, with every value it judged.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Measurement {
    pub rollout_id: String,
    pub attempt: u32,
    pub step: u32,
    pub gate: String,
    pub seq: u32,
    pub at_ms: i64,
    /// The version measured.
    pub version: String,
    pub outcome: Outcome,
    /// The values (and `stable.*`), as JSON.
    pub metrics: serde_json::Value,
    pub message: String,
}

/// What the rollout engine needs from a store.
pub trait RolloutStore: Send {
    /// Record a new rollout, progressing and claimed by `controller`.
    /// Refused with [`super::StoreError::ActiveRollout`] when the agent
    /// already has an active one.
    fn create_rollout(&mut self, new: &NewRollout) -> Result<Rollout>;
    /// By id or unique id prefix; `last` is the newest.
    fn rollout(&self, id: &str) -> Result<Option<Rollout>>;
    /// Newest first.
    fn rollouts(&self, limit: usize) -> Result<Vec<Rollout>>;
    fn active_rollout(&self, agent: &str) -> Result<Option<Rollout>>;
    /// Write the row's progress (phase, step, weight, status, reason,
    /// attempt, requested). Fails with ActiveRollout when a retry would
    /// make a second active rollout of the agent.
    fn save_rollout(&mut self, r: &Rollout) -> Result<()>;
    /// Take the rollout for `who` if nobody holds it, its holder's lease
    /// ran out, or `holder_dead` says the holder is gone. Returns whether
    /// `who` holds it now.
    fn claim_rollout(
        &mut self,
        id: &str,
        who: &str,
        lease_ms: i64,
        holder_dead: &dyn Fn(&str) -> bool,
    ) -> Result<bool>;
    /// Give it up (the controller is done with it).
    fn release_rollout(&mut self, id: &str, who: &str) -> Result<()>;
    /// Ask the controller for something (`pause`, `abort`).
    fn request_rollout(&mut self, id: &str, what: Option<&str>) -> Result<()>;
    fn append_journal(&mut self, id: &str, e: &JournalEntry) -> Result<i64>;
    fn journal(&self, id: &str) -> Result<Vec<JournalEntry>>;
    fn record_measurement(&mut self, m: &Measurement) -> Result<()>;
    fn measurements(&self, id: &str) -> Result<Vec<Measurement>>;
}
