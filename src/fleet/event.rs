//! The typed event stream every face subscribes to: the headless printer, the
//! `--json` writer, the SQLite store and the TUI all read these, and only these.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Serialize, Serializer};

/// What happened to one node in a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum NodeStatus {
    /// The command ran and exited 0.
    Ok,
    /// The command ran and failed (non-zero exit, killed by a signal, connection lost mid-command).
    Failed,
    /// No session could be opened: connection refused or timed out, host key refused, authentication failed.
    Unreachable,
    /// The command outlived `--timeout` and was stopped.
    TimedOut,
    /// The operator cancelled the run (or this node) before it finished.
    Cancelled,
}

impl NodeStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeStatus::Ok => "ok",
            NodeStatus::Failed => "failed",
            NodeStatus::Unreachable => "unreachable",
            NodeStatus::TimedOut => "timed_out",
            NodeStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<NodeStatus> {
        Some(match s {
            "ok" => NodeStatus::Ok,
            "failed" => NodeStatus::Failed,
            "unreachable" => NodeStatus::Unreachable,
            "timed_out" => NodeStatus::TimedOut,
            "cancelled" => NodeStatus::Cancelled,
            _ => return None,
        })
    }
}

impl std::fmt::Display for NodeStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stream {
    Stdout,
    Stderr,
}

/// Captured output of one stream: the first bytes (bounded) and how many there were.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Captured {
    /// At most the run's output limit; may hold any bytes (escape sequences, invalid UTF-8).
    #[serde(serialize_with = "lossy")]
    pub bytes: Vec<u8>,
    /// Bytes the node produced in total.
    pub total: u64,
}

impl Captured {
    pub fn truncated(&self) -> bool {
        self.total > self.bytes.len() as u64
    }

    /// Keep `chunk` up to `limit` bytes in all; count everything.
    pub fn push(&mut self, chunk: &[u8], limit: usize) {
        self.total += chunk.len() as u64;
        let room = limit.saturating_sub(self.bytes.len());
        self.bytes
            .extend_from_slice(&chunk[..chunk.len().min(room)]);
    }
}

/// What one playbook task (or hardening rule) did on a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    /// Already right (for a hardening rule: compliant).
    Ok,
    /// Changed something (in check mode: would change).
    Changed,
    Failed,
    /// Not run: `when` false, excluded by tags, or a rule that does not apply.
    Skipped,
    /// Not applied because it would be unsafe (a hardening remediation that
    /// would lock maestro out); counts as failing.
    Refused,
    /// A hardening rule whose check could not be made on the node (the
    /// message says why); never counts as passing.
    Unknown,
}

impl TaskStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Ok => "ok",
            TaskStatus::Changed => "changed",
            TaskStatus::Failed => "failed",
            TaskStatus::Skipped => "skipped",
            TaskStatus::Refused => "refused",
            TaskStatus::Unknown => "unknown",
        }
    }

    pub fn parse(s: &str) -> Option<TaskStatus> {
        Some(match s {
            "ok" => TaskStatus::Ok,
            "changed" => TaskStatus::Changed,
            "failed" => TaskStatus::Failed,
            "skipped" => TaskStatus::Skipped,
            "refused" => TaskStatus::Refused,
            "unknown" => TaskStatus::Unknown,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct TaskResult {
    pub index: usize,
    pub name: String,
    pub status: TaskStatus,
    pub message: String,
    /// Unified diff of what changed (or would change), with `--diff`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diff: Option<String>,
    /// Output of a command the task ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
}

/// Counts per task status for one node.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct TaskCounts {
    pub ok: usize,
    pub changed: usize,
    pub failed: usize,
    pub skipped: usize,
    pub refused: usize,
    #[serde(skip_serializing_if = "is_zero")]
    pub unknown: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

impl TaskCounts {
    pub fn of(tasks: &[TaskResult]) -> TaskCounts {
        let mut c = TaskCounts::default();
        for t in tasks {
            match t.status {
                TaskStatus::Ok => c.ok += 1,
                TaskStatus::Changed => c.changed += 1,
                TaskStatus::Failed => c.failed += 1,
                TaskStatus::Skipped => c.skipped += 1,
                TaskStatus::Refused => c.refused += 1,
                TaskStatus::Unknown => c.unknown += 1,
            }
        }
        c
    }
}

/// The outcome for one node.
#[derive(Debug, Clone, Serialize)]
pub struct NodeResult {
    pub node: String,
    pub status: NodeStatus,
    pub exit_code: Option<u32>,
    pub signal: Option<String>,
    pub stdout: Captured,
    pub stderr: Captured,
    pub duration_ms: u64,
    /// Why the node failed when it was not the command (connection, host key, auth, timeout).
    pub error: Option<String>,
    /// Playbook tasks or hardening rules, in order (empty for exec).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tasks: Vec<TaskResult>,
}

impl NodeResult {
    pub fn new(node: &str, status: NodeStatus) -> NodeResult {
        NodeResult {
            node: node.to_string(),
            status,
            exit_code: None,
            signal: None,
            stdout: Captured::default(),
            stderr: Captured::default(),
            duration_ms: 0,
            error: None,
            tasks: Vec::new(),
        }
    }
}

/// Counts per status for a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub ok: usize,
    pub failed: usize,
    pub unreachable: usize,
    pub timed_out: usize,
    pub cancelled: usize,
}

impl Summary {
    pub fn add(&mut self, s: NodeStatus) {
        match s {
            NodeStatus::Ok => self.ok += 1,
            NodeStatus::Failed => self.failed += 1,
            NodeStatus::Unreachable => self.unreachable += 1,
            NodeStatus::TimedOut => self.timed_out += 1,
            NodeStatus::Cancelled => self.cancelled += 1,
        }
    }
    pub fn total(&self) -> usize {
        self.ok + self.failed + self.unreachable + self.timed_out + self.cancelled
    }
    pub fn all_ok(&self) -> bool {
        self.total() == self.ok
    }
}

/// What a run does; recorded with it and shown by `maestro runs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum RunKind {
    #[serde(rename = "exec")]
    Exec,
    /// A playbook or install in check mode (a plan).
    #[serde(rename = "check")]
    Check,
    #[serde(rename = "play")]
    Play,
    #[serde(rename = "harden-audit")]
    HardenAudit,
    #[serde(rename = "harden-apply")]
    HardenApply,
    /// An agent deploy or enable.
    #[serde(rename = "deploy")]
    Deploy,
    #[serde(rename = "disable")]
    Disable,
    /// `agent status`: reads what nodes run.
    #[serde(rename = "status")]
    Status,
    /// The kill switch (or its release) on the target nodes.
    #[serde(rename = "kill")]
    Kill,
    /// `gateway set` / `gateway status`: the traffic an agent's gateway applies.
    #[serde(rename = "gateway")]
    Gateway,
}

impl RunKind {
    pub const ALL: [RunKind; 10] = [
        RunKind::Exec,
        RunKind::Check,
        RunKind::Play,
        RunKind::HardenAudit,
        RunKind::HardenApply,
        RunKind::Deploy,
        RunKind::Disable,
        RunKind::Status,
        RunKind::Kill,
        RunKind::Gateway,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RunKind::Exec => "exec",
            RunKind::Check => "check",
            RunKind::Play => "play",
            RunKind::HardenAudit => "harden-audit",
            RunKind::HardenApply => "harden-apply",
            RunKind::Deploy => "deploy",
            RunKind::Disable => "disable",
            RunKind::Status => "status",
            RunKind::Kill => "kill",
            RunKind::Gateway => "gateway",
        }
    }

    pub fn parse(s: &str) -> Option<RunKind> {
        RunKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl std::fmt::Display for RunKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Everything the engine reports while it works.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// The first event of every run (its id is in the envelope).
    RunStarted {
        kind: RunKind,
        command: String,
        target: String,
        nodes: Vec<String>,
        forks: usize,
        /// The SoT directory the run used, and its git commit.
        sot: String,
        sot_commit: Option<String>,
        /// What the admission gate let through only because of an override
        /// (a break-glass past a freeze window), with who and why.
        #[serde(skip_serializing_if = "Vec::is_empty")]
        overrides: Vec<String>,
    },
    NodeConnecting {
        node: String,
    },
    NodeConnected {
        node: String,
        elapsed_ms: u64,
    },
    NodeRunning {
        node: String,
    },
    Output {
        node: String,
        stream: Stream,
        #[serde(serialize_with = "lossy")]
        data: Vec<u8>,
    },
    /// A playbook task or hardening rule finished on a node.
    TaskFinished {
        node: String,
        task: TaskResult,
    },
    /// Facts gathered on a node (OS, kernel, package manager, init system, hostname).
    Facts {
        node: String,
        facts: std::collections::BTreeMap<String, String>,
    },
    /// `--accept-new` trusted a host key on first use and recorded it.
    HostKeyLearned {
        node: String,
        host: String,
        fingerprint: String,
        file: String,
    },
    Warning {
        node: Option<String>,
        message: String,
    },
    NodeFinished {
        result: NodeResult,
    },
    /// A hardening audit measured one node (sent before its `NodeFinished`):
    /// what the store keeps as the node's compliance history.
    Compliance {
        node: String,
        baseline: String,
        percent: f64,
        passing: usize,
        failing: usize,
        unknown: usize,
        /// Ids of the rules that failed, were refused or could not be checked.
        failing_rules: Vec<String>,
    },
    /// The last event of every run.
    RunFinished {
        summary: Summary,
        elapsed_ms: u64,
        cancelled: bool,
        /// Live output the bus dropped under backpressure (results keep it).
        dropped_output: crate::bus::Dropped,
    },
}

/// Bytes in JSON: UTF-8 where valid, U+FFFD elsewhere (`--json` consumers get
/// text; the store keeps the raw bytes).
fn lossy<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&String::from_utf8_lossy(bytes))
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A run id that sorts by time and reads well in a terminal: `20261121-072501-3f9a`.
pub fn new_run_id() -> String {
    let now = chrono::Utc::now();
    let nanos = now.timestamp_subsec_nanos();
    let salt = (nanos ^ std::process::id().rotate_left(16)) & 0xffff;
    format!("{}-{salt:04x}", now.format("%Y%m%d-%H%M%S"))
}
