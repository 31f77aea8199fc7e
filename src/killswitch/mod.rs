//! The kill switch: stop an agent (or every agent) everywhere, and keep it
//! stopped until someone releases it.
//!
//! Engaging it is two things. The engaged state is a SoT file,
//! `killswitch.toml` (`[engaged.AGENT]` or `[engaged.all]`: who, when, why,
//! and an optional target pattern), committed through the SoT's one write
//! path ([`change`]) so every operator and every later run sees it. Then the
//! agent is stopped on every target node in parallel by one node-side script
//! ([`script`]): the kill marker is written (the node-side start refuses
//! while it exists), the systemd unit is stopped and masked for this boot
//! when systemd is PID 1, else the pidfile's session is signalled, and
//! stragglers are found by `MAESTRO_AGENT=NAME` in their environment. Each
//! node then confirms that no process of the agent remains ([`NodeKill`]):
//! `stopped`, `already stopped`, or `unreachable` — an unreachable node is
//! never reported stopped.
//!
//! While engaged, the admission gate's [`KillSwitchCheck`] blocks every job
//! that would start the agent on a covered node (exit 4), naming who engaged
//! it, when and why. It never prints.

use chrono::{DateTime, Utc};
use serde::{Serialize, Serializer};

use crate::fleet::event::NodeStatus;
use crate::fleet::{NodeResult, RunReport};
use crate::ops::Prepared;
use crate::ops::gate::{Check, Verdict};
use crate::sot::Sot;

pub mod change;
mod run;
pub mod script;

pub use run::{node_scripts, run};

/// The SoT file of engaged kill switches.
pub const FILE: &str = "killswitch.toml";
/// The name that engages the kill switch of every agent.
pub const ALL: &str = "all";

/// One engaged kill switch.
#[derive(Debug, Clone, Serialize)]
pub struct Engaged {
    /// An agent of the registry, or [`ALL`].
    pub agent: String,
    /// Who engaged it (`Name <email>`).
    pub by: String,
    #[serde(serialize_with = "rfc3339")]
    pub at: DateTime<Utc>,
    pub reason: String,
    /// The nodes it holds (a target pattern; none: every node).
    pub limit: Option<String>,
}

fn rfc3339<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&crate::freeze::stamp(t))
}

impl Engaged {
    pub fn covers_agent(&self, agent: &str) -> bool {
        self.agent == ALL || self.agent == agent
    }

    /// The nodes (SoT indices) it holds.
    pub fn nodes(&self, sot: &Sot) -> Vec<usize> {
        match &self.limit {
            None => (0..sot.nodes.len()).collect(),
            // The loader checks the pattern; one that stops resolving holds
            // every node rather than none.
            Some(p) => crate::fleet::target::select(sot, p)
                .unwrap_or_else(|_| (0..sot.nodes.len()).collect()),
        }
    }

    /// `kill switch for `support-bot` engaged by Ada <ada@x> at 2026-…Z (on region=eu-west): why`
    pub fn describe(&self) -> String {
        let what = if self.agent == ALL {
            "kill switch for every agent".to_string()
        } else {
            format!("kill switch for `{}`", self.agent)
        };
        let scope = self
            .limit
            .as_ref()
            .map(|l| format!(" (on {l})"))
            .unwrap_or_default();
        format!(
            "{what} engaged by {} at {}{scope}: {}",
            self.by,
            crate::freeze::stamp(&self.at),
            self.reason
        )
    }
}

/// The engaged kill switches that hold `agent`.
pub fn engaged_for<'a>(sot: &'a Sot, agent: &str) -> Vec<&'a Engaged> {
    sot.killswitch
        .iter()
        .filter(|e| e.covers_agent(agent))
        .collect()
}

/// Tell every controller of the store at `db` that `engaged` is in force
/// (after the SoT commit `commit` recorded it).
pub fn publish(
    db: &std::path::Path,
    engaged: &Engaged,
    commit: Option<&str>,
) -> crate::store::Result<()> {
    crate::store::open_path(db)?.record_kill(&crate::store::KillRecord {
        agent: engaged.agent.clone(),
        engaged: true,
        by: engaged.by.clone(),
        at_ms: engaged.at.timestamp_millis(),
        reason: engaged.reason.clone(),
        limit: engaged.limit.clone(),
        commit: commit.map(str::to_string),
    })
}

/// Tell every controller of the store at `db` that `agent`'s kill switch
/// was released by `by` (in the SoT commit `commit`).
pub fn publish_release(
    db: &std::path::Path,
    agent: &str,
    by: &str,
    reason: &str,
    commit: Option<&str>,
) -> crate::store::Result<()> {
    crate::store::open_path(db)?.record_kill(&crate::store::KillRecord {
        agent: agent.to_string(),
        engaged: false,
        by: by.to_string(),
        at_ms: Utc::now().timestamp_millis(),
        reason: reason.to_string(),
        limit: None,
        commit: commit.map(str::to_string),
    })
}

/// The gate's kill-switch check: a job that would start an agent whose kill
/// switch holds one of its nodes is blocked. A break-glass does not lift it:
/// only `maestro kill --release` does.
///
/// It asks the SoT and, with `store`, the run store too: an engagement
/// another controller of a shared store made is in force here before this
/// checkout has pulled its commit ([`crate::store::kills`]).
#[derive(Debug, Clone, Default)]
pub struct KillSwitchCheck {
    pub store: Option<std::path::PathBuf>,
}

impl KillSwitchCheck {
    /// The SoT's engagements, and those only the store has heard of yet.
    fn engaged(&self, sot: &Sot) -> crate::store::Result<Vec<Engaged>> {
        let mut all = sot.killswitch.clone();
        let Some(db) = &self.store else {
            return Ok(all);
        };
        for k in crate::store::open_path(db)?.engaged_kills()? {
            if !all.iter().any(|e| e.agent == k.agent) {
                all.push(Engaged {
                    agent: k.agent,
                    by: k.by,
                    at: DateTime::from_timestamp_millis(k.at_ms).unwrap_or_default(),
                    reason: k.reason,
                    limit: k.limit,
                });
            }
        }
        Ok(all)
    }
}

impl Check for KillSwitchCheck {
    fn name(&self) -> &'static str {
        "kill switch"
    }

    fn check(&self, job: &Prepared) -> Verdict {
        let sot = job.sot();
        let agents = job.agents_started();
        if agents.is_empty() {
            return Verdict::Allow;
        }
        let engaged = match self.engaged(sot) {
            Ok(e) => e,
            // Unknown is not released: a job that starts an agent waits.
            Err(e) => {
                return Verdict::Block(vec![format!(
                    "the run store's kill switches could not be read ({e}); nothing that starts an agent is admitted until they can"
                )]);
            }
        };
        if engaged.is_empty() {
            return Verdict::Allow;
        }
        let nodes: Vec<usize> = job
            .nodes()
            .iter()
            .filter_map(|n| sot.node_index.get(n).copied())
            .collect();
        let mut reasons = Vec::new();
        for agent in agents {
            for e in engaged.iter().filter(|e| e.covers_agent(&agent)) {
                let held = e.nodes(sot);
                let hit = nodes.iter().filter(|n| held.contains(n)).count();
                if hit == 0 {
                    continue;
                }
                reasons.push(format!(
                    "`{agent}` would start on {hit} node{} held by the {}; release it with `maestro kill --release {} --reason \"...\"`",
                    if hit == 1 { "" } else { "s" },
                    e.describe(),
                    e.agent
                ));
            }
        }
        if reasons.is_empty() {
            Verdict::Allow
        } else {
            Verdict::Block(reasons)
        }
    }
}

/// What a kill (or a release) found on one node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeKill {
    /// Processes of the agent were running and none is left.
    Stopped,
    /// Nothing of the agent was running; the marker is in place.
    AlreadyStopped,
    /// For a release: the marker is gone (nothing was started).
    Released,
    /// No session: nothing is known about the node. Never "stopped".
    Unreachable,
    /// The script ran but could not confirm (processes left, a refused
    /// write, a timeout, a cancel).
    Failed,
}

impl NodeKill {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeKill::Stopped => "stopped",
            NodeKill::AlreadyStopped => "already stopped",
            NodeKill::Released => "released",
            NodeKill::Unreachable => "unreachable",
            NodeKill::Failed => "failed",
        }
    }

    /// Whether the node is confirmed (kill: nothing runs; release: marker gone).
    pub fn confirmed(self) -> bool {
        matches!(
            self,
            NodeKill::Stopped | NodeKill::AlreadyStopped | NodeKill::Released
        )
    }
}

/// One node's confirmation, read from its result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeConfirmation {
    pub node: String,
    pub state: NodeKill,
    /// Processes the script stopped (kill) or that are left (failed).
    pub pids: Vec<u32>,
    /// What went wrong, for `unreachable` and `failed`.
    pub detail: Option<String>,
}

/// Read a node's confirmation from what the script printed. Only a node
/// whose script ran to its last line and said so is confirmed.
pub fn confirmation(r: &NodeResult) -> NodeConfirmation {
    let mut c = NodeConfirmation {
        node: r.node.clone(),
        state: NodeKill::Failed,
        pids: Vec::new(),
        detail: r.error.clone(),
    };
    if r.status == NodeStatus::Unreachable {
        c.state = NodeKill::Unreachable;
        return c;
    }
    let out = String::from_utf8_lossy(&r.stdout.bytes);
    let verdict = out
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix(script::VERDICT_PREFIX));
    let Some(verdict) = verdict else {
        if c.detail.is_none() {
            c.detail = Some(first_line(&r.stderr.bytes).unwrap_or_else(|| {
                format!("the kill script did not finish ({})", r.status.as_str())
            }));
        }
        return c;
    };
    let mut words = verdict.split_whitespace();
    let word = words.next().unwrap_or("");
    c.pids = words.filter_map(|w| w.parse().ok()).collect();
    c.state = match (word, r.status) {
        ("stopped", NodeStatus::Ok) => NodeKill::Stopped,
        ("already-stopped", NodeStatus::Ok) => NodeKill::AlreadyStopped,
        ("released", NodeStatus::Ok) => NodeKill::Released,
        ("remaining", _) => {
            c.detail = Some(format!(
                "still running after SIGKILL: pid {}",
                c.pids
                    .iter()
                    .map(u32::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
            NodeKill::Failed
        }
        _ => {
            if c.detail.is_none() {
                c.detail = first_line(&r.stderr.bytes)
                    .or_else(|| Some(format!("the kill script said `{verdict}`")));
            }
            NodeKill::Failed
        }
    };
    c
}

fn first_line(bytes: &[u8]) -> Option<String> {
    String::from_utf8_lossy(bytes)
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .map(str::to_string)
}

/// Every node's confirmation of a kill or release run, in target order.
pub fn confirmations(report: &RunReport) -> Vec<NodeConfirmation> {
    report.results.iter().map(confirmation).collect()
}

#[cfg(test)]
mod tests;
