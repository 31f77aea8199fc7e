//! Asking the policies: a [`Question`] (who, which action, which nodes,
//! which agent, the job's context) gets an [`Answer`] per node with the
//! policies that decided it and any evaluation error.

use std::collections::BTreeSet;

use cedar_policy::{Context, Decision, EntityUid, Request, RestrictedExpression};
use serde::Serialize;

use super::entities::uid;
use super::{ACTIONS, Policies, PolicyError, Result};
use crate::identity::Actor;
use crate::ops::JobSpec;

/// The job as policies see it beyond who, what and where.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct JobContext {
    /// Hour of the day (0–23) and ISO weekday (1 = Monday) in UTC.
    pub hour: u32,
    pub weekday: u32,
    /// How many nodes the whole job targets.
    pub targets: usize,
    /// Whether the job changes nodes.
    pub changes: bool,
    /// Distinct people whose signed approvals of this plan are valid.
    pub approvals: usize,
    /// A freeze window covers the job; a break-glass was given.
    pub frozen: bool,
    pub break_glass: bool,
}

impl JobContext {
    /// The context at the current time.
    pub fn now(targets: usize, changes: bool) -> JobContext {
        use chrono::{Datelike, Timelike};
        let now = chrono::Utc::now();
        JobContext {
            hour: now.hour(),
            weekday: now.weekday().number_from_monday(),
            targets,
            changes,
            ..JobContext::default()
        }
    }
}

/// One question: may `actor` do `action` (with `agent`) on each of `nodes`?
#[derive(Debug, Clone)]
pub struct Question<'a> {
    pub actor: &'a Actor,
    pub action: &'a str,
    pub agent: Option<&'a str>,
    pub nodes: &'a [String],
    pub context: JobContext,
}

/// The decision for one node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeAnswer {
    pub node: String,
    pub allowed: bool,
    /// The policies that decided: the permits that allowed it, or the
    /// forbids that denied it (none: no policy permits it).
    pub policies: Vec<String>,
    /// Evaluation errors (each one denies).
    pub errors: Vec<String>,
}

impl NodeAnswer {
    /// One line for a denial: which policies, and why.
    pub fn reason(&self, policies: &Policies) -> String {
        let mut parts = Vec::new();
        for id in &self.policies {
            match policies.origin(id) {
                Some(o) => parts.push(match &o.reason {
                    Some(r) => {
                        format!("{} `{id}` ({}:{}): {r}", o.effect, o.file.display(), o.line)
                    }
                    None => format!("{} `{id}` ({}:{})", o.effect, o.file.display(), o.line),
                }),
                None => parts.push(format!("`{id}`")),
            }
        }
        for e in &self.errors {
            parts.push(format!("evaluation error (counts as a denial): {e}"));
        }
        if parts.is_empty() {
            parts.push("no policy permits it (Cedar denies by default)".into());
        }
        parts.join("; ")
    }
}

/// The answer for every node of a question.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Answer {
    pub actor: Actor,
    pub action: String,
    pub agent: Option<String>,
    pub context: JobContext,
    pub nodes: Vec<NodeAnswer>,
}

impl Answer {
    pub fn allowed(&self) -> bool {
        self.nodes.iter().all(|n| n.allowed)
    }

    pub fn denied(&self) -> impl Iterator<Item = &NodeAnswer> {
        self.nodes.iter().filter(|n| !n.allowed)
    }

    /// The distinct policies that decided, over every node.
    pub fn deciding(&self) -> BTreeSet<&str> {
        self.nodes
            .iter()
            .flat_map(|n| n.policies.iter().map(String::as_str))
            .collect()
    }
}

/// The Cedar action of a job.
pub fn action_of(job: &JobSpec) -> &'static str {
    match job {
        JobSpec::Exec { .. } => "exec",
        JobSpec::Play { .. } => "play",
        JobSpec::Install { .. } => "install",
        JobSpec::Harden { apply: true, .. } => "harden",
        JobSpec::Harden { apply: false, .. } => "audit",
        JobSpec::Deploy { .. } => "deploy",
        JobSpec::Enable { .. } => "enable",
        JobSpec::Disable { .. } => "disable",
        JobSpec::AgentStatus { .. } | JobSpec::GatewayStatus { .. } => "status",
        JobSpec::Kill { release: false, .. } => "kill",
        JobSpec::Kill { release: true, .. } => "release",
        JobSpec::GatewaySet { .. } => "gateway",
    }
}

/// The agent a job is about, if any.
pub fn agent_of(job: &JobSpec) -> Option<&str> {
    match job {
        JobSpec::Deploy { agent, .. }
        | JobSpec::Enable { agent }
        | JobSpec::Disable { agent, .. }
        | JobSpec::GatewaySet { agent, .. }
        | JobSpec::GatewayStatus { agent } => Some(agent),
        JobSpec::Kill { agent, .. } if agent != crate::killswitch::ALL => Some(agent),
        JobSpec::AgentStatus { agent } => agent.as_deref(),
        _ => None,
    }
}

impl Policies {
    fn principal(&self, actor: &Actor) -> EntityUid {
        match actor {
            Actor::Person { name, .. } => uid("Person", name),
            Actor::Unverified { claimed } => uid("Unverified", claimed),
        }
    }

    fn context(&self, q: &Question<'_>, autonomy: i64, action: &EntityUid) -> Result<Context> {
        let c = &q.context;
        let long = |v: usize| RestrictedExpression::new_long(i64::try_from(v).unwrap_or(i64::MAX));
        let mut pairs = vec![
            ("hour".to_string(), long(c.hour as usize)),
            ("weekday".to_string(), long(c.weekday as usize)),
            ("targets".to_string(), long(c.targets)),
            (
                "changes".to_string(),
                RestrictedExpression::new_bool(c.changes),
            ),
            (
                "autonomy".to_string(),
                RestrictedExpression::new_long(autonomy),
            ),
            ("approvals".to_string(), long(c.approvals)),
            (
                "frozen".to_string(),
                RestrictedExpression::new_bool(c.frozen),
            ),
            (
                "break_glass".to_string(),
                RestrictedExpression::new_bool(c.break_glass),
            ),
            (
                "verified".to_string(),
                RestrictedExpression::new_bool(q.actor.is_verified()),
            ),
        ];
        if let Some(agent) = q.agent {
            pairs.push((
                "agent".to_string(),
                RestrictedExpression::new_entity_uid(uid("Agent", agent)),
            ));
        }
        let context =
            Context::from_pairs(pairs).map_err(|e| PolicyError::Request(e.to_string()))?;
        context
            .validate(&self.schema, action)
            .map_err(|e| PolicyError::Request(e.to_string()))?;
        Ok(context)
    }

    /// Decide `q` for each of its nodes.
    pub fn decide(&self, q: &Question<'_>, sot: &crate::sot::model::Sot) -> Result<Answer> {
        if !ACTIONS.iter().any(|(a, _)| *a == q.action) {
            return Err(PolicyError::UnknownAction(
                q.action.to_string(),
                ACTIONS
                    .iter()
                    .map(|(a, _)| *a)
                    .collect::<Vec<_>>()
                    .join(", "),
            ));
        }
        let autonomy = match q.agent {
            Some(name) => {
                let agent = sot
                    .agents
                    .get(name)
                    .ok_or_else(|| PolicyError::UnknownAgent(name.to_string()))?;
                i64::from(agent.autonomy.0)
            }
            None => 0,
        };
        let action = uid("Action", q.action);
        let principal = self.principal(q.actor);
        let context = self.context(q, autonomy, &action)?;
        let mut nodes = Vec::with_capacity(q.nodes.len());
        // Nodes of one kind (same groups, same tags) get one decision when
        // no policy can tell them apart: a 10,000-node job is a handful of
        // evaluations.
        let mut by_kind: std::collections::HashMap<String, (bool, Vec<String>, Vec<String>)> =
            std::collections::HashMap::new();
        for node in q.nodes {
            let Some(n) = sot.node(node) else {
                return Err(PolicyError::UnknownNode(node.clone()));
            };
            let kind = (!self.node_identity).then(|| {
                let mut k = n.groups.join("\u{1}");
                for (t, v) in &n.tags {
                    k.push('\u{2}');
                    k.push_str(t);
                    k.push('\u{3}');
                    k.push_str(v);
                }
                k
            });
            if let Some((allowed, policies, errors)) = kind.as_ref().and_then(|k| by_kind.get(k)) {
                nodes.push(NodeAnswer {
                    node: node.clone(),
                    allowed: *allowed,
                    policies: policies.clone(),
                    errors: errors.clone(),
                });
                continue;
            }
            // The request was validated once through its context; the
            // entity types are fixed by this function, so each node's
            // request is built without the schema.
            let request = Request::new(
                principal.clone(),
                action.clone(),
                uid("Node", node),
                context.clone(),
                None,
            )
            .map_err(|e| PolicyError::Request(e.to_string()))?;
            let response = self
                .authorizer
                .is_authorized(&request, &self.set, &self.entities);
            let diagnostics = response.diagnostics();
            let errors: Vec<String> = diagnostics.errors().map(|e| e.to_string()).collect();
            let mut policies: Vec<String> = diagnostics.reason().map(|p| p.to_string()).collect();
            policies.sort();
            let allowed = response.decision() == Decision::Allow && errors.is_empty();
            if let Some(k) = kind {
                by_kind.insert(k, (allowed, policies.clone(), errors.clone()));
            }
            nodes.push(NodeAnswer {
                node: node.clone(),
                allowed,
                policies,
                errors,
            });
        }
        Ok(Answer {
            actor: q.actor.clone(),
            action: q.action.to_string(),
            agent: q.agent.map(str::to_string),
            context: q.context.clone(),
            nodes,
        })
    }
}
