//! What a job would do, per node: the check-mode result both faces show
//! before they ask for confirmation.

use serde::Serialize;

use crate::fleet::event::{NodeStatus, TaskStatus};
use crate::fleet::{NodeResult, RunReport};

/// A job's plan. Faces render it; they never compute it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Plan {
    /// The check-mode run that produced it (recorded in the store), if one ran.
    pub run_id: Option<String>,
    /// The job as shown to the operator.
    pub job: String,
    /// Whether applying it changes nodes (an audit does not).
    pub changes_nodes: bool,
    pub nodes: Vec<NodePlan>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodePlan {
    pub node: String,
    #[serde(flatten)]
    pub outcome: NodeOutcome,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "plan", rename_all = "snake_case")]
pub enum NodeOutcome {
    /// An ad-hoc command or an audit: what runs cannot be predicted.
    WouldRun { what: String },
    /// Check mode ran: these tasks would change (or fail, or be refused).
    Changes { changes: Vec<PlannedChange> },
    /// Check mode could not run on the node.
    NotPlanned { status: NodeStatus, error: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlannedChange {
    pub task: String,
    pub status: TaskStatus,
    pub message: String,
}

impl Plan {
    /// A plan that needs no check run: `what` runs on every node.
    pub fn static_plan(job: &str, changes_nodes: bool, nodes: &[String], what: &str) -> Plan {
        Plan {
            run_id: None,
            job: job.to_string(),
            changes_nodes,
            nodes: nodes
                .iter()
                .map(|n| NodePlan {
                    node: n.clone(),
                    outcome: NodeOutcome::WouldRun {
                        what: what.to_string(),
                    },
                })
                .collect(),
        }
    }

    /// The plan of a check-mode run: every task that would change, fail or
    /// be refused, per node.
    pub fn from_check(job: &str, report: &RunReport) -> Plan {
        Plan {
            run_id: Some(report.run_id.clone()),
            job: job.to_string(),
            changes_nodes: true,
            nodes: report.results.iter().map(node_plan).collect(),
        }
    }

    /// Nodes on which something would change.
    pub fn changing(&self) -> usize {
        self.nodes
            .iter()
            .filter(|n| match &n.outcome {
                NodeOutcome::Changes { changes } => !changes.is_empty(),
                NodeOutcome::WouldRun { .. } => self.changes_nodes,
                NodeOutcome::NotPlanned { .. } => false,
            })
            .count()
    }
}

impl NodeOutcome {
    /// One line, the same in both faces: `2 changes: a, b (failed)`.
    pub fn summary(&self) -> String {
        match self {
            NodeOutcome::WouldRun { what } => format!("runs: {what}"),
            NodeOutcome::Changes { changes } => {
                let names: Vec<String> = changes
                    .iter()
                    .map(|c| match c.status {
                        TaskStatus::Changed => c.task.clone(),
                        other => format!("{} ({})", c.task, other.as_str()),
                    })
                    .collect();
                format!(
                    "{} change{}{}",
                    changes.len(),
                    if changes.len() == 1 { "" } else { "s" },
                    if names.is_empty() {
                        String::new()
                    } else {
                        format!(": {}", names.join(", "))
                    }
                )
            }
            NodeOutcome::NotPlanned { status, error } => {
                format!("{status}: {}", error.lines().next().unwrap_or(""))
            }
        }
    }
}

fn node_plan(r: &NodeResult) -> NodePlan {
    let changes: Vec<PlannedChange> = r
        .tasks
        .iter()
        .filter(|t| {
            matches!(
                t.status,
                TaskStatus::Changed
                    | TaskStatus::Failed
                    | TaskStatus::Refused
                    | TaskStatus::Unknown
            )
        })
        .map(|t| PlannedChange {
            task: t.name.clone(),
            status: t.status,
            message: t.message.clone(),
        })
        .collect();
    let ran = matches!(r.status, NodeStatus::Ok | NodeStatus::Failed)
        && (r.error.is_none() || !changes.is_empty());
    NodePlan {
        node: r.node.clone(),
        outcome: if ran {
            NodeOutcome::Changes { changes }
        } else {
            NodeOutcome::NotPlanned {
                status: r.status,
                error: r.error.clone().unwrap_or_default(),
            }
        },
    }
}
