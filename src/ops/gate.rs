//! The admission gate: every job passes it after it is prepared and before
//! any node is touched. Each [`Check`] looks at the prepared job and says
//! allow, invalid (exit 2), deny (exit 3), block (exit 4) or "needs
//! approval". Approvals are kept in the run store, so a job held for
//! approval is found again by the next process that admits the same job.
//!
//! Every gate enforces a profile's rules and required tags, the kill switch
//! ([`crate::killswitch::KillSwitchCheck`]) and freeze windows
//! ([`crate::freeze::FreezeCheck`]); the console adds its read-only mode.
//! The policy checks plug in here as more [`Check`]s instead of adding
//! checks of their own to each command.

use std::path::PathBuf;

use serde::Serialize;

use super::Prepared;
use crate::exit::Exit;
use crate::store::ApprovalState;

/// What one check says of a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    /// The job's input is wrong (a profile's rules): exit 2.
    Invalid(Vec<String>),
    /// Policy says no: exit 3.
    Deny(Vec<String>),
    /// A kill switch or freeze window holds it: exit 4.
    Block(Vec<String>),
    /// A person must approve it first (held as pending, exit 4 until then).
    NeedsApproval(Vec<String>),
}

/// One rule of the gate.
pub trait Check: Send + Sync {
    /// A short name shown with its reasons (`profile`, `read-only`, `policy`).
    fn name(&self) -> &'static str;
    fn check(&self, job: &Prepared) -> Verdict;
    /// What this check let through only because of an override (a
    /// break-glass past a freeze window), one line each: recorded with the run.
    fn overrides(&self, _job: &Prepared) -> Vec<String> {
        Vec::new()
    }
}

/// Why a job was not admitted, and which exit code that is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RefusalClass {
    Invalid,
    Denied,
    Blocked,
    AwaitingApproval,
}

impl RefusalClass {
    pub fn exit(self) -> Exit {
        match self {
            RefusalClass::Invalid => Exit::InvalidInput,
            RefusalClass::Denied => Exit::PolicyDenied,
            RefusalClass::Blocked | RefusalClass::AwaitingApproval => Exit::Blocked,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{}", self.describe())]
pub struct Refusal {
    pub class: RefusalClass,
    /// Each reason prefixed by the check that gave it.
    pub reasons: Vec<String>,
    /// The approval that holds the job, when it waits for one.
    pub approval: Option<String>,
}

impl Refusal {
    fn describe(&self) -> String {
        let head = match self.class {
            RefusalClass::Invalid => "refused before touching any node",
            RefusalClass::Denied => "denied by policy; no node was touched",
            RefusalClass::Blocked => "blocked; no node was touched",
            RefusalClass::AwaitingApproval => "waiting for approval; no node was touched",
        };
        let mut s = head.to_string();
        if let Some(id) = &self.approval {
            s.push_str(&format!(" (approval {id})"));
        }
        for r in &self.reasons {
            s.push_str("\n  ");
            s.push_str(r);
        }
        s
    }
}

/// The gate's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow,
    Refused(Refusal),
}

/// The checks every job passes, in order.
pub struct Gate {
    checks: Vec<Box<dyn Check>>,
    /// Where approvals are kept (the run store).
    approvals: Option<PathBuf>,
    /// Who asks (recorded with an approval request; what policies judge).
    actor: crate::identity::Actor,
    /// Whether the jobs it admits are operations in their own right, whose
    /// outcomes the SoT's checklists judge (a rollout's own deploys are
    /// not: the rollout is, when it ends).
    reflect: bool,
}

impl Gate {
    /// The checks that apply everywhere, with approvals kept in `store`.
    pub fn new(store: Option<PathBuf>, actor: impl Into<crate::identity::Actor>) -> Gate {
        let actor = actor.into();
        Gate {
            checks: vec![
                Box::new(ProfileRules),
                Box::new(crate::policy::PolicyCheck {
                    actor: actor.clone(),
                    store: store.clone(),
                    break_glass: false,
                }),
                Box::new(crate::killswitch::KillSwitchCheck {
                    store: store.clone(),
                }),
                Box::new(crate::freeze::FreezeCheck::default()),
                Box::new(crate::approval::ApprovalCheck {
                    store: store.clone(),
                    actor: actor.clone(),
                }),
            ],
            approvals: store,
            actor,
            reflect: true,
        }
    }

    /// The run store approvals (and, beside it, the ledger) are kept in.
    pub fn store_path(&self) -> Option<&std::path::Path> {
        self.approvals.as_deref()
    }

    /// Who the gate admits jobs for.
    pub fn actor(&self) -> &crate::identity::Actor {
        &self.actor
    }

    /// The policy decision for `job`, per node (none when the SoT has no
    /// policies): what a confirmation shows before `y`.
    pub fn policy_answer(
        &self,
        job: &Prepared,
    ) -> Option<crate::policy::Result<crate::policy::Answer>> {
        let policies = job.sot().policies.as_deref()?;
        let check = crate::policy::PolicyCheck {
            actor: self.actor.clone(),
            store: self.approvals.clone(),
            break_glass: false,
        };
        Some(policies.decide(&check.question(job), job.sot()))
    }

    /// The gate of a rollback to the stable version (a rollout's abort or
    /// failed gate): only the kill switch holds it. A freeze window does
    /// not: putting back what ran before is what a freeze protects.
    pub fn rollback(store: Option<PathBuf>, actor: impl Into<crate::identity::Actor>) -> Gate {
        Gate {
            checks: vec![Box::new(crate::killswitch::KillSwitchCheck {
                store: store.clone(),
            })],
            approvals: store,
            actor: actor.into(),
            reflect: false,
        }
    }

    /// The same gate for the jobs a rollout makes: their outcomes are the
    /// rollout's, reflected on when it ends, not one by one.
    pub fn within_rollout(mut self) -> Gate {
        self.reflect = false;
        self
    }

    /// Whether outcomes of the jobs it admits trigger reflections.
    pub fn reflects(&self) -> bool {
        self.reflect
    }

    pub fn with(mut self, check: impl Check + 'static) -> Gate {
        self.checks.push(Box::new(check));
        self
    }

    /// The same gate with `check` in place of the check of the same name
    /// (a freeze check that knows about a break-glass, or judges at a
    /// given time).
    pub fn replacing(mut self, check: impl Check + 'static) -> Gate {
        self.checks.retain(|c| c.name() != check.name());
        self.checks.push(Box::new(check));
        self
    }

    /// The gate with `--break-glass`: jobs held only by freeze windows go
    /// through, and the override is recorded with their runs.
    pub fn with_break_glass(self, glass: crate::freeze::BreakGlass) -> Gate {
        let policy = crate::policy::PolicyCheck {
            actor: self.actor.clone(),
            store: self.approvals.clone(),
            break_glass: true,
        };
        let has_policy = self.checks.iter().any(|c| c.name() == "policy");
        let gate = self.replacing(crate::freeze::FreezeCheck {
            break_glass: Some(glass),
            now: None,
        });
        if has_policy {
            gate.replacing(policy)
        } else {
            gate
        }
    }

    /// The overrides the checks made for `job` (see [`Check::overrides`]).
    pub fn overrides(&self, job: &Prepared) -> Vec<String> {
        self.checks.iter().flat_map(|c| c.overrides(job)).collect()
    }

    /// Run every check; the strictest answer wins (invalid, then deny, then
    /// block, then approval), with the reasons of every check that gave it.
    ///
    /// A refusal is final for the face that asked, so it is recorded in the
    /// ledger here, with the policies that decided; an admission is
    /// recorded by [`Prepared::apply`] just before the job runs.
    pub fn admit(&self, job: &Prepared) -> Decision {
        let decision = self.decide(job);
        if let (Decision::Refused(refusal), Some(store)) = (&decision, self.store_path()) {
            let answer = self.policy_answer(job).and_then(|a| a.ok());
            let mut r = super::evidence::base_record(job, &self.actor);
            r.policy = super::evidence::policy_hits(answer.as_ref());
            r.decision = serde_json::to_value(refusal.class)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_else(|| "refused".into());
            r.note = Some(refusal.reasons.join("\n"));
            r.approvals = refusal.approval.iter().cloned().collect();
            // A refusal that cannot be recorded is still a refusal.
            let _ = super::evidence::append(store, r);
        }
        decision
    }

    fn decide(&self, job: &Prepared) -> Decision {
        let mut invalid = Vec::new();
        let mut deny = Vec::new();
        let mut block = Vec::new();
        let mut approve = Vec::new();
        for c in &self.checks {
            let tag = |rs: Vec<String>| rs.into_iter().map(move |r| format!("{}: {r}", c.name()));
            match c.check(job) {
                Verdict::Allow => {}
                Verdict::Invalid(r) => invalid.extend(tag(r)),
                Verdict::Deny(r) => deny.extend(tag(r)),
                Verdict::Block(r) => block.extend(tag(r)),
                Verdict::NeedsApproval(r) => approve.extend(tag(r)),
            }
        }
        let refuse = |class, reasons| {
            Decision::Refused(Refusal {
                class,
                reasons,
                approval: None,
            })
        };
        if !invalid.is_empty() {
            return refuse(RefusalClass::Invalid, invalid);
        }
        if !deny.is_empty() {
            return refuse(RefusalClass::Denied, deny);
        }
        if !block.is_empty() {
            return refuse(RefusalClass::Blocked, block);
        }
        if approve.is_empty() {
            return Decision::Allow;
        }
        self.approval(job, approve)
    }

    /// A job that needs approval: denied once rejected, otherwise held as
    /// pending in the store under its plan digest. Only the approval check
    /// lets it through (with a quorum of valid signatures): a row marked
    /// approved in the store proves nothing by itself.
    fn approval(&self, job: &Prepared, reasons: Vec<String>) -> Decision {
        let held = |class, reasons, approval| {
            Decision::Refused(Refusal {
                class,
                reasons,
                approval,
            })
        };
        let Some(path) = &self.approvals else {
            let mut reasons = reasons;
            reasons.push("no run store to keep the approval in".into());
            return held(RefusalClass::Denied, reasons, None);
        };
        let plan = crate::approval::plan_digest(job);
        let store =
            crate::store::open_path(path).and_then(|mut s| match s.approval_for(&plan)? {
                Some(a) if a.state == ApprovalState::Rejected => Ok(a),
                _ => s.request_approval(&plan, job.description(), &reasons, self.actor.name()),
            });
        match store {
            Ok(a) => match a.state {
                ApprovalState::Rejected => held(
                    RefusalClass::Denied,
                    vec![format!(
                        "approval {} was rejected by {}",
                        a.id,
                        a.decided_by.unwrap_or_default()
                    )],
                    Some(a.id),
                ),
                ApprovalState::Pending | ApprovalState::Approved => {
                    held(RefusalClass::AwaitingApproval, reasons, Some(a.id))
                }
            },
            Err(e) => {
                let mut reasons = reasons;
                reasons.push(format!("the approval could not be recorded: {e}"));
                held(RefusalClass::Denied, reasons, None)
            }
        }
    }
}

/// A profile's required tags and `[validate]` rules, for installs.
struct ProfileRules;

impl Check for ProfileRules {
    fn name(&self) -> &'static str {
        "profile"
    }

    fn check(&self, job: &Prepared) -> Verdict {
        let problems = job.profile_problems();
        if problems.is_empty() {
            Verdict::Allow
        } else {
            Verdict::Invalid(problems)
        }
    }
}

/// Whether changing work may run at all here (the console's read-only mode:
/// the demo, when its sandbox does not work on this machine).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecPolicy {
    Allowed,
    /// Every job that touches nodes is denied, with the reason shown.
    Refused(String),
}

impl Check for ExecPolicy {
    fn name(&self) -> &'static str {
        "read-only"
    }

    fn check(&self, _: &Prepared) -> Verdict {
        match self {
            ExecPolicy::Allowed => Verdict::Allow,
            ExecPolicy::Refused(why) => Verdict::Deny(vec![why.clone()]),
        }
    }
}
