//! Progressive delivery of agents: canary, blue/green and shadow rollouts,
//! over the fleet's nodes or behind each node's gateway, gated by live
//! metrics, rolled back by themselves when a gate or a node's health
//! fails, journaled in the store so a crashed controller is resumed
//! without redeploying a node or repeating a gate's decision.
//!
//! - [`spec`]: strategies and gates as `rollouts.toml` defines them.
//! - [`analysis`]: gate measurements over the telemetry and their verdicts.
//! - [`controller`]: the state machine that drives one rollout.
//!
//! The controller is the process that drives the rollout (`maestro rollout
//! start`, `promote`, `resume`, `retry`): there is no daemon. A `pause = {}`
//! step or an inconclusive gate ends that process with the rollout paused;
//! `promote` in another process continues it. Nothing here prints: faces
//! get [`RolloutEvent`]s.

pub mod analysis;
pub mod controller;
pub mod spec;
pub mod verbs;
pub mod view;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::store::{Measurement, Rollout, StoreError};
pub use controller::{Controller, Ended, Settings};
pub use spec::{Definitions, GateSpec, Kind, Step, Strategy, Traffic};

/// The SoT file of strategies and gates.
pub const FILE: &str = "rollouts.toml";

#[derive(Debug, thiserror::Error)]
pub enum RolloutError {
    /// The operator asked for something that cannot be (exit 2).
    #[error("{0}")]
    Invalid(String),
    /// The rollout is in a state where this verb does not apply (exit 2).
    #[error("{0}")]
    WrongState(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Ops(#[from] crate::ops::OpsError),
}

pub type Result<T> = std::result::Result<T, RolloutError>;

/// A strategy and the gates it uses, as a rollout was started with
/// (kept in the store as JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub strategy: Strategy,
    pub gates: BTreeMap<String, GateSpec>,
}

impl Plan {
    /// `name` from the SoT's definitions, with the gates it names.
    pub fn from_sot(defs: &Definitions, name: &str) -> Result<Plan> {
        let strategy = defs.strategies.get(name).cloned().ok_or_else(|| {
            let known: Vec<&str> = defs.strategies.keys().map(String::as_str).collect();
            RolloutError::Invalid(format!(
                "no rollout strategy `{name}` in {FILE}{}",
                if known.is_empty() {
                    " (it defines none)".to_string()
                } else {
                    format!(" (strategies: {})", known.join(", "))
                }
            ))
        })?;
        let mut names = Vec::new();
        match &strategy.kind {
            Kind::Canary { steps, .. } => {
                for s in steps {
                    if let Step::Analysis { gate } = s {
                        names.push(gate.clone());
                    }
                }
            }
            Kind::BlueGreen { pre_promotion, .. } => names.extend(pre_promotion.clone()),
            Kind::Shadow { gate, .. } => names.extend(gate.clone()),
        }
        let gates = names
            .into_iter()
            .filter_map(|g| defs.gates.get(&g).map(|s| (g, s.clone())))
            .collect();
        Ok(Plan { strategy, gates })
    }

    /// The plan of an `undo`: every node at once, no steps, no gates.
    pub fn immediate() -> Plan {
        Plan {
            strategy: Strategy {
                name: "undo".into(),
                kind: Kind::Canary {
                    traffic: Traffic::Nodes,
                    steps: Vec::new(),
                    max_unavailable: spec::Unavailable::Percent(100),
                    max_fail_percent: 0,
                },
            },
            gates: BTreeMap::new(),
        }
    }

    pub fn of(r: &Rollout) -> Result<Plan> {
        serde_json::from_str(&r.definition).map_err(|e| {
            RolloutError::Store(StoreError::Corrupt(format!(
                "rollout {}'s definition does not read back: {e}",
                r.id
            )))
        })
    }

    pub fn steps(&self) -> &[Step] {
        match &self.strategy.kind {
            Kind::Canary { steps, .. } => steps,
            _ => &[],
        }
    }
}

/// What a rollout reports to the faces as it goes.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "snake_case", tag = "event")]
pub enum RolloutEvent {
    Step {
        id: String,
        index: u32,
        step: String,
    },
    Deploy {
        id: String,
        version: String,
        nodes: Vec<String>,
    },
    Node {
        id: String,
        node: String,
        version: String,
        ok: bool,
        detail: String,
    },
    Measurement {
        measurement: Box<Measurement>,
    },
    Gate {
        id: String,
        step: u32,
        gate: String,
        outcome: crate::store::GateOutcome,
        reason: String,
    },
    Rollback {
        id: String,
        version: String,
        nodes: Vec<String>,
    },
    Rollout {
        rollout: Box<Rollout>,
    },
}

/// The version each node runs, as the journal tells it (what the rollout
/// saw at its start, then each deploy and rollback that succeeded).
pub fn node_versions(
    r: &Rollout,
    journal: &[crate::store::JournalEntry],
) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for e in journal {
        let (Some(node), Some(version)) = (&e.node, &e.version) else {
            continue;
        };
        if e.entry == "result"
            && e.ok == Some(true)
            && matches!(e.action.as_str(), "observe" | "deploy" | "rollback")
        {
            out.insert(node.clone(), version.clone());
        }
    }
    for n in &r.nodes {
        out.entry(n.clone()).or_insert_with(|| "?".into());
    }
    out
}

/// "rollout ro-… of fleet-doctor 1.4.0 → 1.5.0 (canary) aborted: gate … failed":
/// how a reflection names the rollout it is about.
pub fn describe_end(r: &crate::store::Rollout) -> String {
    format!(
        "rollout {} of {} {} → {} ({}) {}{}",
        r.id,
        r.agent,
        r.from_version.as_deref().unwrap_or("nothing"),
        r.to_version,
        r.strategy,
        r.status,
        r.reason
            .as_deref()
            .map(|x| format!(": {x}"))
            .unwrap_or_default()
    )
}
