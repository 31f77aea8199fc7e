//! The run store: every run, every node's result, output and task results,
//! the facts last gathered on each node, the notes a run produced (host keys
//! learned, warnings), and approvals waiting for a person.
//!
//! [`RunStore`] is what the engine and the faces need; [`SqliteStore`] is the
//! implementation (SQLite in WAL mode, schema versioned with
//! `PRAGMA user_version`, see [`schema`]). The store subscribes to the event
//! bus: it records events as they come, keyed by the run id in each
//! envelope, so several runs in flight are kept apart, and a run that
//! crashes half-way leaves what it had finished plus a run row still marked
//! `running`: the journal `maestro runs show` reads.
//!
//! Path: `--db FILE`, else `$MAESTRO_DB`, else `$XDG_STATE_HOME/maestro/maestro.db`,
//! else `~/.local/state/maestro/maestro.db`. The directory is created 0700
//! and the file 0600, as OpenSSH keeps `~/.ssh`.
//!
//! A team shares one PostgreSQL database instead: `--db postgres://…` (or
//! `$MAESTRO_DB`) selects [`PgStore`], the same store behind the same
//! traits ([`Location`], [`open`]).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use serde::Serialize;

use crate::bus::{Envelope, Subscriber};
use crate::fleet::event::{NodeResult, NodeStatus, RunKind};

pub mod kills;
mod location;
mod postgres;
pub mod reflections;
pub mod rollouts;
pub mod schema;
mod sqlite;
#[cfg(test)]
mod tests;
pub mod work;
#[cfg(test)]
mod work_tests;

pub use location::{Location, PgUrl};
pub use postgres::PgStore;
#[doc(hidden)]
pub use postgres::cluster as test_cluster;

pub use rollouts::{
    JournalEntry, Measurement, NewRollout, Outcome as GateOutcome, Rollout, RolloutStatus,
    RolloutStore,
};

pub use kills::{KillRecord, KillStore};
pub use reflections::{AnswerRecord, LessonUse, NewReflection, Reflection, ReflectionStore};
pub use sqlite::SqliteStore;
pub use work::{Claim, ItemState, NewWork, Progress, WorkItem, WorkRun, WorkStore};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("run store {}: {source}", path.display())]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("creating {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "run store {} has schema version {found}, newer than this maestro knows (version {supported}); \
         it was written by a newer maestro. Upgrade maestro, or use another store with --db; the file was not changed",
        path.display()
    )]
    TooNew {
        path: PathBuf,
        found: i64,
        supported: i64,
    },
    #[error("run store: {0}")]
    Sql(#[from] rusqlite::Error),
    /// Connecting to or migrating a PostgreSQL store (the URL without its
    /// password). `cause` is the driver's whole error chain, once: kept as
    /// text rather than as a `source`, so that neither a one-line message
    /// loses the reason nor a printed chain says it twice.
    #[error("run store {url}: {cause}")]
    PgOpen { url: String, cause: String },
    #[error(
        "run store {url} has schema version {found}, newer than this maestro knows (version {supported}); \
         it was written by a newer maestro. Upgrade maestro, or use another store with --db; the database was not changed"
    )]
    TooNewDatabase {
        url: String,
        found: i64,
        supported: i64,
    },
    #[error("run store: {0}")]
    Postgres(#[from] ::postgres::Error),
    #[error("run store: the PostgreSQL connection thread stopped; open the store again")]
    Disconnected,
    #[error("run store: {0}")]
    Corrupt(String),
    /// Another rollout of the agent is active (the store's unique index).
    #[error(
        "rollout {id} of {agent} is already {status}: only one rollout of an agent may be active (see `maestro rollout status {id}`; promote, abort or resume it)"
    )]
    ActiveRollout {
        agent: String,
        id: String,
        status: String,
    },
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// The default store path (see the module docs).
pub fn default_path() -> PathBuf {
    if let Some(p) = std::env::var_os("MAESTRO_DB").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    local_state_dir().join("maestro.db")
}

/// This controller's own state directory (`$XDG_STATE_HOME/maestro`, else
/// `~/.local/state/maestro`): where the ledger and its key go when the
/// store is a PostgreSQL database, which has no directory to sit beside.
pub fn local_state_dir() -> PathBuf {
    let state = std::env::var_os("XDG_STATE_HOME")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))
        .unwrap_or_else(|| PathBuf::from("."));
    state.join("maestro")
}

/// A `--db` value as it may be shown: a path, or a URL without its password.
pub fn shown(db: &std::path::Path) -> String {
    Location::from_path(db).to_string()
}

/// Everything maestro keeps in a store, whichever database holds it.
pub trait Store:
    RunStore + TelemetryStore + RolloutStore + ReflectionStore + WorkStore + KillStore + Subscriber
{
    /// Where it is, for messages (a URL's password hidden).
    fn location(&self) -> String;
}

impl Store for SqliteStore {
    fn location(&self) -> String {
        self.path().display().to_string()
    }
}

impl Store for PgStore {
    fn location(&self) -> String {
        self.url().to_string()
    }
}

/// Open (creating and migrating) the store at `location`.
pub fn open(location: &Location) -> Result<Box<dyn Store>> {
    Ok(match location {
        Location::Sqlite(path) => Box::new(SqliteStore::open(path)?),
        Location::Postgres(url) => Box::new(PgStore::open(url)?),
    })
}

/// [`open`] for a `--db` value: a SQLite file path or a `postgres://` URL.
pub fn open_path(db: &std::path::Path) -> Result<Box<dyn Store>> {
    open(&Location::from_path(db))
}

/// Where a run is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    /// Started and not finished: in flight, or the controller died (a journal).
    Running,
    Finished,
    Cancelled,
}

impl RunState {
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Running => "running",
            RunState::Finished => "finished",
            RunState::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<RunState> {
        Some(match s {
            "running" => RunState::Running,
            "finished" => RunState::Finished,
            "cancelled" => RunState::Cancelled,
            _ => return None,
        })
    }
}

impl std::fmt::Display for RunState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A run as listed by `maestro runs`.
#[derive(Debug, Clone, Serialize)]
pub struct RunRow {
    pub id: String,
    pub kind: RunKind,
    pub command: String,
    pub target: String,
    /// The SoT directory the run used, and its git commit when it was in git.
    pub sot: String,
    pub sot_commit: Option<String>,
    pub forks: usize,
    pub node_count: usize,
    pub nodes: Vec<String>,
    pub state: RunState,
    pub started_ms: i64,
    pub finished_ms: Option<i64>,
    pub ok: usize,
    pub failed: usize,
    pub unreachable: usize,
    pub timed_out: usize,
    pub cancelled: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Note {
    pub at_ms: i64,
    pub node: Option<String>,
    pub kind: String,
    pub message: String,
}

/// A node's most recent result, for "last run" columns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LastResult {
    pub run_id: String,
    pub status: NodeStatus,
    pub finished_ms: i64,
}

/// One minute of one node's (agent `""`) or one agent's telemetry.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Rollup {
    pub node: String,
    pub agent: String,
    pub minute_ms: i64,
    pub samples: u32,
    pub cpu_pct_avg: Option<f64>,
    pub cpu_pct_max: Option<f64>,
    pub mem_used_pct_avg: Option<f64>,
    pub load1_avg: Option<f64>,
    pub root_fs_used_pct: Option<f64>,
    pub net_rx_bps_avg: Option<f64>,
    pub net_tx_bps_avg: Option<f64>,
    pub gpu_util_pct_avg: Option<f64>,
    pub rss_bytes_max: Option<u64>,
    pub requests_per_s_avg: Option<f64>,
    pub errors_per_s_avg: Option<f64>,
    pub p95_s_max: Option<f64>,
}

/// Downsampled telemetry history (the live ring buffers are in memory).
pub trait TelemetryStore: Send {
    /// Insert or replace these minutes.
    fn write_rollups(&mut self, rows: &[Rollup]) -> Result<()>;
    /// Drop minutes that started before `before_ms`; returns how many.
    fn prune_rollups(&mut self, before_ms: i64) -> Result<usize>;
    /// A node's minutes (its own and its agents') since `since_ms`, oldest first.
    fn rollups(&self, node: &str, since_ms: i64) -> Result<Vec<Rollup>>;
}

/// A boxed store (`store::open`'s) keeps telemetry as the store in it does.
impl<T: TelemetryStore + ?Sized> TelemetryStore for Box<T> {
    fn write_rollups(&mut self, rows: &[Rollup]) -> Result<()> {
        (**self).write_rollups(rows)
    }
    fn prune_rollups(&mut self, before_ms: i64) -> Result<usize> {
        (**self).prune_rollups(before_ms)
    }
    fn rollups(&self, node: &str, since_ms: i64) -> Result<Vec<Rollup>> {
        (**self).rollups(node, since_ms)
    }
}

/// Facts gathered on a node, and when.
pub type Facts = (BTreeMap<String, String>, i64);

/// Where an approval stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalState {
    Pending,
    Approved,
    Rejected,
}

impl ApprovalState {
    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalState::Pending => "pending",
            ApprovalState::Approved => "approved",
            ApprovalState::Rejected => "rejected",
        }
    }

    pub fn parse(s: &str) -> Option<ApprovalState> {
        Some(match s {
            "pending" => ApprovalState::Pending,
            "approved" => ApprovalState::Approved,
            "rejected" => ApprovalState::Rejected,
            _ => return None,
        })
    }
}

/// A job the admission gate held back until someone decides on it. It
/// survives the process: the next admission of the same job (same
/// fingerprint) finds it.
#[derive(Debug, Clone, Serialize)]
pub struct Approval {
    pub id: String,
    /// Identifies the exact job: kind, targets and what runs.
    pub fingerprint: String,
    /// The job as shown to the people who decide.
    pub summary: String,
    /// Why it needs approval (the checks that asked for it).
    pub reasons: Vec<String>,
    pub requested_by: String,
    pub requested_ms: i64,
    pub state: ApprovalState,
    pub decided_by: Option<String>,
    pub decided_ms: Option<i64>,
    pub comment: Option<String>,
}

/// A node's compliance as one hardening audit measured it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ComplianceRecord {
    pub run_id: String,
    pub node: String,
    pub at_ms: i64,
    pub baseline: String,
    pub percent: f64,
    pub passing: usize,
    pub failing: usize,
    pub unknown: usize,
    /// Ids of the rules that failed, were refused or could not be checked.
    pub failing_rules: Vec<String>,
}

/// What the engine and the faces need from a run store.
pub trait RunStore: Send {
    /// Record one event of the bus. Events that carry nothing worth
    /// keeping are ignored.
    fn record(&mut self, event: &Envelope) -> Result<()>;
    /// The newest runs first.
    fn runs(&self, limit: usize) -> Result<Vec<RunRow>>;
    /// One run by id or unique id prefix; `last` means the newest.
    fn run(&self, id: &str) -> Result<Option<RunRow>>;
    /// Every node result of a run with its task results, in target order.
    fn results(&self, run: &RunRow) -> Result<Vec<NodeResult>>;
    fn notes(&self, run: &RunRow) -> Result<Vec<Note>>;
    /// The facts last gathered on a node.
    fn facts(&self, node: &str) -> Result<Option<Facts>>;
    /// The most recent result of every node that has one.
    fn last_results(&self) -> Result<HashMap<String, LastResult>>;
    /// A node's results in its `limit` most recent runs, newest first.
    fn node_history(&self, node: &str, limit: usize) -> Result<Vec<(RunRow, NodeResult)>>;
    /// A node's compliance at its `limit` most recent audits, newest first.
    fn compliance_history(&self, node: &str, limit: usize) -> Result<Vec<ComplianceRecord>>;
    /// A node's first recorded audit: its first-boot baseline.
    fn first_compliance(&self, node: &str) -> Result<Option<ComplianceRecord>>;

    /// Hold a job for approval (or return the approval already waiting for
    /// the same fingerprint).
    fn request_approval(
        &mut self,
        fingerprint: &str,
        summary: &str,
        reasons: &[String],
        requested_by: &str,
    ) -> Result<Approval>;
    /// The newest approval for a job.
    fn approval_for(&self, fingerprint: &str) -> Result<Option<Approval>>;
    fn approvals(&self, pending_only: bool) -> Result<Vec<Approval>>;
    fn decide_approval(
        &mut self,
        id: &str,
        state: ApprovalState,
        by: &str,
        comment: Option<&str>,
    ) -> Result<Approval>;
    /// One approval by id.
    fn approval(&self, id: &str) -> Result<Option<Approval>>;
    /// Record one person's signature of an approval (a second signature by
    /// the same person replaces the first: one person is one approval).
    fn add_approval_signature(&mut self, signature: &ApprovalSignature) -> Result<()>;
    fn approval_signatures(&self, id: &str) -> Result<Vec<ApprovalSignature>>;
}

/// One person's signature of an approval request, as stored. Nothing here
/// is trusted: [`crate::approval`] verifies it against people.toml each time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApprovalSignature {
    pub approval_id: String,
    pub person: String,
    pub key: String,
    pub plan: String,
    pub signature: String,
    pub signed_ms: i64,
    pub expires_ms: i64,
}
