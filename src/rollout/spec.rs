//! Rollout definitions as the SoT holds them (`rollouts.toml`): named
//! strategies (`[strategy.NAME]`) and named gates (`[gate.NAME]`). The
//! loader (`sot/load/rollouts.rs`) builds these with file:line:col
//! diagnostics; a started rollout keeps a copy of its strategy and gates
//! (as JSON in the store), so a later `promote` by another process drives
//! exactly what was started even if the SoT changed since.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Every strategy and gate of the SoT.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Definitions {
    pub strategies: BTreeMap<String, Strategy>,
    pub gates: BTreeMap<String, GateSpec>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Strategy {
    pub name: String,
    pub kind: Kind,
}

/// Where the new version's share of the traffic comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Traffic {
    /// The weight is the share of the target nodes that run the new version
    /// (the first nodes in SoT order, so each step grows the same set).
    Nodes,
    /// The weight is the share of each node's requests its gateway sends
    /// to the new version (in the preview slot).
    Gateway,
}

/// How many nodes of a step may be out of service (being deployed) at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unavailable {
    Count(u32),
    Percent(u8),
}

impl Unavailable {
    /// The batch size for `total` target nodes: never less than 1.
    /// Inclusive: `max_unavailable = 2` lets 2 nodes deploy together.
    pub fn batch(self, total: usize) -> usize {
        let n = match self {
            Unavailable::Count(c) => c as usize,
            Unavailable::Percent(p) => (total * p as usize) / 100,
        };
        n.max(1)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Kind {
    Canary {
        traffic: Traffic,
        steps: Vec<Step>,
        max_unavailable: Unavailable,
        /// The rollout fails when the failed nodes of a step are MORE than
        /// this percent of the step's nodes (exclusive: 0 = any failure fails,
        /// 50 with 4 nodes: 3 failures fail it, 2 do not).
        max_fail_percent: u8,
    },
    BlueGreen {
        pre_promotion: Option<String>,
        scale_down_delay_ms: u64,
    },
    Shadow {
        mirror_percent: u8,
        duration_ms: u64,
        gate: Option<String>,
    },
}

impl Kind {
    pub fn name(&self) -> &'static str {
        match self {
            Kind::Canary { .. } => "canary",
            Kind::BlueGreen { .. } => "blue_green",
            Kind::Shadow { .. } => "shadow",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// `set_weight = N`: N percent of the traffic to the new version.
    SetWeight(u8),
    /// `pause = {}` (until `promote`: `None`) or `pause = "5m"`.
    Pause(Option<u64>),
    /// `analysis = { gate = "NAME" }`.
    Analysis { gate: String },
}

impl Step {
    pub fn describe(&self) -> String {
        match self {
            Step::SetWeight(w) => format!("set_weight {w}"),
            Step::Pause(None) => "pause (until promote)".into(),
            Step::Pause(Some(ms)) => format!("pause {}", human_ms(*ms)),
            Step::Analysis { gate } => format!("analysis {gate}"),
        }
    }
}

/// A metric gate: measurements over the telemetry of one version across the
/// step's nodes, judged by `success` / `failure` (minijinja expressions).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateSpec {
    pub name: String,
    pub interval_ms: u64,
    /// Measurements taken (at least 1).
    pub count: u32,
    pub initial_delay_ms: u64,
    /// Failed measurements tolerated; one more fails the gate (Argo's
    /// failureLimit, default 0).
    pub failure_limit: u32,
    /// Inconclusive measurements tolerated; one more makes the gate
    /// inconclusive, which pauses the rollout (default 0).
    pub inconclusive_limit: u32,
    /// Fewer requests than this in a measurement is too little data:
    /// inconclusive (default 1: no traffic is never a pass).
    pub min_requests: u64,
    pub success: Option<String>,
    pub failure: Option<String>,
}

/// The names a gate expression may use (each also as `stable.NAME`).
pub const METRICS: &[(&str, &str)] = &[
    ("requests", "requests answered during the measurement"),
    ("errors", "requests answered with an error"),
    ("request_rate", "requests per second"),
    ("error_rate", "errors / requests (0..1)"),
    (
        "latency_p50",
        "median request latency, seconds (worst node)",
    ),
    (
        "latency_p90",
        "90th percentile latency, seconds (worst node)",
    ),
    (
        "latency_p99",
        "99th percentile latency, seconds (worst node)",
    ),
    ("cpu", "CPU, percent of one core (mean over nodes)"),
    ("memory", "resident memory, MiB (mean over nodes)"),
    ("restarts", "agent starts during the measurement"),
    ("nodes", "nodes that reported metrics of this version"),
];

pub fn human_ms(ms: u64) -> String {
    if ms.is_multiple_of(3_600_000) && ms > 0 {
        format!("{}h", ms / 3_600_000)
    } else if ms.is_multiple_of(60_000) && ms > 0 {
        format!("{}m", ms / 60_000)
    } else if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}
