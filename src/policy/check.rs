//! The policy check of the admission gate: every job is asked of the
//! policies for each of its target nodes before any node is touched. One
//! denied node refuses the whole job (exit 3), so a target that mixes
//! allowed and forbidden nodes touches none of them.

use std::path::PathBuf;

use super::question::{JobContext, Question, action_of, agent_of};
use crate::identity::Actor;
use crate::ops::Prepared;
use crate::ops::gate::{Check, Verdict};

/// Asks the SoT's policies about each job (allows everything when the SoT
/// has no `policies/`).
#[derive(Debug, Clone)]
pub struct PolicyCheck {
    pub actor: Actor,
    /// The run store, where signed approvals are counted.
    pub store: Option<PathBuf>,
    /// A break-glass was given for this job.
    pub break_glass: bool,
}

impl PolicyCheck {
    /// The question this check asks of the policies for `job`.
    pub fn question<'a>(&'a self, job: &'a Prepared) -> Question<'a> {
        let mut context = JobContext::now(job.nodes().len(), job.changes_nodes());
        context.frozen = !crate::freeze::FreezeCheck::default()
            .holding(job)
            .is_empty();
        context.break_glass = self.break_glass;
        context.approvals = match &self.store {
            Some(store) => crate::approval::count(store, job).unwrap_or(0),
            None => 0,
        };
        Question {
            actor: &self.actor,
            action: action_of(job.job()),
            agent: agent_of(job.job()),
            nodes: job.nodes(),
            context,
        }
    }
}

impl Check for PolicyCheck {
    fn name(&self) -> &'static str {
        "policy"
    }

    fn check(&self, job: &Prepared) -> Verdict {
        let Some(policies) = job.sot().policies.as_deref() else {
            return Verdict::Allow;
        };
        let answer = match policies.decide(&self.question(job), job.sot()) {
            Ok(a) => a,
            // A question the policies cannot be asked is a denial, never
            // a pass.
            Err(e) => return Verdict::Deny(vec![format!("cannot ask the policies: {e}")]),
        };
        if answer.allowed() {
            return Verdict::Allow;
        }
        Verdict::Deny(denial(&self.actor, &answer, policies))
    }
}

/// Why `answer` refuses the job: who may not do what on how many nodes,
/// then each reason with the nodes it denies (grouped, so a denial of a
/// thousand nodes by one policy stays readable).
pub fn denial(actor: &Actor, answer: &super::Answer, policies: &super::Policies) -> Vec<String> {
    let denied: Vec<_> = answer.denied().collect();
    let mut reasons = vec![format!(
        "{} may not {} {} of the {} target nodes (the whole job is refused)",
        actor.label(),
        answer.action,
        denied.len(),
        answer.nodes.len()
    )];
    // Nodes denied for the same reason are one line, so a denial of a
    // thousand nodes by one policy stays readable.
    let mut by_reason: Vec<(String, Vec<&str>)> = Vec::new();
    for n in denied {
        let reason = n.reason(policies);
        match by_reason.iter_mut().find(|(r, _)| *r == reason) {
            Some((_, nodes)) => nodes.push(&n.node),
            None => by_reason.push((reason, vec![&n.node])),
        }
    }
    for (reason, nodes) in by_reason {
        let shown = if nodes.len() > 8 {
            format!("{} and {} more", nodes[..8].join(", "), nodes.len() - 8)
        } else {
            nodes.join(", ")
        };
        reasons.push(format!("{shown}: {reason}"));
    }
    reasons
}
