//! Two-person approval: a job that changes nodes for an agent at or above
//! the SoT's `[approvals] min_autonomy` (L4 by default, as seed 003 asks)
//! runs only once `quorum` (2) distinct people have signed its plan, neither of them the requester
//! (GitHub's "the last pusher cannot approve" rule).
//!
//! The job itself records the pending request when the gate holds it
//! (exit 4 with the request id); `maestro approve ID` signs the request's
//! plan digest with the approver's SSH key (SSHSIG, namespace
//! [`crate::identity::APPROVAL_NAMESPACE`]); the job runs when it is tried
//! again and the quorum is met. Every count verifies every stored
//! signature again against people.toml: a row written into the store by
//! hand, a signature by an unknown key, one person signing twice, an
//! expired signature, or a signature over another plan does not count.
//! The count is done here, in Rust, and passed to Cedar as
//! `context.approvals` (Cedar has no set size).

use std::path::Path;

use serde::Serialize;

use crate::identity::{self, Actor};
use crate::ops::Prepared;
use crate::ops::gate::{Check, Verdict};
use crate::sot::model::Sot;
use crate::store::{Approval, ApprovalSignature, Store, StoreError};

// Which agents, how many people and how long a signature counts are the
// SoT's `[approvals]` (L4, two people, 24 h by default):
// [`crate::sot::model::ApprovalSettings`].

#[derive(Debug, thiserror::Error)]
pub enum ApprovalError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Identity(#[from] identity::IdentityError),
    #[error("no approval request {0}; `maestro approvals` lists them")]
    NotFound(String),
    #[error("approval {0} is {1}, not pending")]
    NotPending(String, String),
    #[error("{0} requested this job and cannot approve it; two other people must")]
    Requester(String),
    #[error(
        "approvals are signed: name your key with --identity FILE or MAESTRO_IDENTITY, or load it into ssh-agent"
    )]
    NoKey,
}

pub type Result<T> = std::result::Result<T, ApprovalError>;

/// The plan an approval is for: the job, its resolved description (the
/// version it deploys) and its nodes. Not the SoT commit: an unrelated
/// commit (a ledger checkpoint) must not void approvals, while a change to
/// what runs where does.
pub fn plan_digest(job: &Prepared) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(format!("{:?}\0{}\0", job.job(), job.description()));
    for n in job.nodes() {
        h.update(n.as_bytes());
        h.update([0]);
    }
    format!("{:x}", h.finalize())
}

/// What an approver signs.
pub fn message(approval_id: &str, plan: &str, expires_ms: i64) -> Vec<u8> {
    format!("maestro approval v1\nrequest {approval_id}\nplan {plan}\nexpires {expires_ms}\n")
        .into_bytes()
}

/// Whether `job` needs approvals at all.
pub fn required(job: &Prepared) -> Option<String> {
    // Stopping an agent never waits for anyone (nor does lifting the stop,
    // which starts nothing).
    if !job.changes_nodes() || matches!(job.job(), crate::ops::JobSpec::Kill { .. }) {
        return None;
    }
    let agent = crate::policy::agent_of(job.job())?;
    let a = job.sot().agents.get(agent)?;
    let rule = job.sot().settings.approvals;
    (a.autonomy >= rule.min_autonomy).then(|| {
        format!(
            "agent `{agent}` is {}: jobs that change its nodes need signed approvals by {} people other than the requester",
            a.autonomy, rule.quorum
        )
    })
}

/// One signature, and whether it counts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Counted {
    pub person: String,
    pub key: String,
    pub signed_ms: i64,
    pub expires_ms: i64,
    /// Why it does not count (none: it counts).
    pub rejected: Option<String>,
}

/// Check every signature of `approval` for `plan` at `now_ms`.
pub fn check_signatures(
    sot: &Sot,
    approval: &Approval,
    signatures: &[ApprovalSignature],
    plan: &str,
    now_ms: i64,
) -> Vec<Counted> {
    let mut seen: Vec<String> = Vec::new();
    signatures
        .iter()
        .map(|s| {
            let verdict = (|| {
                let sig = identity::unarmor(&s.signature).map_err(|e| e.to_string())?;
                let msg = message(&s.approval_id, &s.plan, s.expires_ms);
                let person = identity::verify(sot, identity::APPROVAL_NAMESPACE, &msg, &sig)
                    .map_err(|e| e.to_string())?;
                if person.name != s.person {
                    return Err(format!(
                        "signed by {}'s key, recorded as {}",
                        person.name, s.person
                    ));
                }
                if s.plan != plan {
                    return Err("signed a different plan".into());
                }
                if s.expires_ms <= now_ms {
                    return Err("expired".into());
                }
                if person.name == approval.requested_by {
                    return Err("the requester's own approval does not count".into());
                }
                if seen.contains(&person.name) {
                    return Err("this person already approved".into());
                }
                seen.push(person.name.clone());
                Ok(())
            })();
            Counted {
                person: s.person.clone(),
                key: s.key.clone(),
                signed_ms: s.signed_ms,
                expires_ms: s.expires_ms,
                rejected: verdict.err(),
            }
        })
        .collect()
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// The pending request for `job`'s plan, if one was recorded.
pub fn request_for(store: &dyn Store, job: &Prepared) -> Result<Option<Approval>> {
    Ok(store.approval_for(&plan_digest(job))?)
}

/// Distinct valid approvals of `job`'s plan in the store at `path`.
pub fn count(path: &Path, job: &Prepared) -> Result<usize> {
    let store = crate::store::open_path(path)?;
    let Some(approval) = request_for(&*store, job)? else {
        return Ok(0);
    };
    let sigs = store.approval_signatures(&approval.id)?;
    Ok(
        check_signatures(job.sot(), &approval, &sigs, &plan_digest(job), now_ms())
            .iter()
            .filter(|c| c.rejected.is_none())
            .count(),
    )
}

/// What `maestro approve` did.
#[derive(Debug, Clone, Serialize)]
pub struct Signed {
    pub approval: String,
    pub person: String,
    pub valid: usize,
    pub quorum: usize,
    pub signatures: Vec<Counted>,
}

/// Sign approval `id` as the person `signature` proves (made with
/// [`signing_message`]'s bytes), and count again.
pub fn add_signature(
    path: &Path,
    sot: &Sot,
    id: &str,
    expires_ms: i64,
    signature: &russh::keys::ssh_key::SshSig,
) -> Result<Signed> {
    let mut store = crate::store::open_path(path)?;
    let approval = store
        .approval(id)?
        .ok_or_else(|| ApprovalError::NotFound(id.to_string()))?;
    if approval.state != crate::store::ApprovalState::Pending {
        return Err(ApprovalError::NotPending(
            id.to_string(),
            approval.state.as_str().to_string(),
        ));
    }
    let msg = message(id, &approval.fingerprint, expires_ms);
    let person = identity::verify(sot, identity::APPROVAL_NAMESPACE, &msg, signature)?;
    if person.name == approval.requested_by {
        return Err(ApprovalError::Requester(person.name.clone()));
    }
    let key = identity::fingerprint(&russh::keys::PublicKey::from(
        signature.public_key().clone(),
    ));
    store.add_approval_signature(&ApprovalSignature {
        approval_id: id.to_string(),
        person: person.name.clone(),
        key,
        plan: approval.fingerprint.clone(),
        signature: identity::armor(signature)?,
        signed_ms: now_ms(),
        expires_ms,
    })?;
    let sigs = store.approval_signatures(id)?;
    let signatures = check_signatures(sot, &approval, &sigs, &approval.fingerprint, now_ms());
    Ok(Signed {
        approval: id.to_string(),
        person: person.name.clone(),
        valid: signatures.iter().filter(|c| c.rejected.is_none()).count(),
        quorum: sot.settings.approvals.quorum,
        signatures,
    })
}

/// The bytes an approver of `id` signs, and the expiry they carry.
pub fn signing_message(path: &Path, sot: &Sot, id: &str) -> Result<(Vec<u8>, i64)> {
    let store = crate::store::open_path(path)?;
    let approval = store
        .approval(id)?
        .ok_or_else(|| ApprovalError::NotFound(id.to_string()))?;
    let expires = now_ms() + sot.settings.approvals.lifetime.as_millis() as i64;
    Ok((message(id, &approval.fingerprint, expires), expires))
}

/// A pending request with its signatures, for `maestro approvals` and the
/// console.
#[derive(Debug, Clone, Serialize)]
pub struct Pending {
    #[serde(flatten)]
    pub approval: Approval,
    pub valid: usize,
    pub quorum: usize,
    pub signatures: Vec<Counted>,
}

pub fn list(path: &Path, sot: &Sot, pending_only: bool) -> Result<Vec<Pending>> {
    let store = crate::store::open_path(path)?;
    let now = now_ms();
    store
        .approvals(pending_only)?
        .into_iter()
        .map(|approval| {
            let sigs = store.approval_signatures(&approval.id)?;
            let signatures = check_signatures(sot, &approval, &sigs, &approval.fingerprint, now);
            Ok(Pending {
                valid: signatures.iter().filter(|c| c.rejected.is_none()).count(),
                quorum: sot.settings.approvals.quorum,
                signatures,
                approval,
            })
        })
        .collect()
}

/// The gate's check: holds jobs that need approvals until the quorum of
/// valid signatures is met.
#[derive(Debug, Clone)]
pub struct ApprovalCheck {
    pub store: Option<std::path::PathBuf>,
    pub actor: Actor,
}

impl Check for ApprovalCheck {
    fn name(&self) -> &'static str {
        "approval"
    }

    fn check(&self, job: &Prepared) -> Verdict {
        let Some(why) = required(job) else {
            return Verdict::Allow;
        };
        let valid = match &self.store {
            Some(path) => match count(path, job) {
                Ok(n) => n,
                Err(e) => return Verdict::Deny(vec![format!("approvals cannot be counted: {e}")]),
            },
            None => 0,
        };
        let quorum = job.sot().settings.approvals.quorum;
        if valid >= quorum {
            return Verdict::Allow;
        }
        Verdict::NeedsApproval(vec![
            why,
            format!(
                "{valid} of {quorum} valid approvals so far; approve with `maestro approve ID`, then run the job again"
            ),
        ])
    }
}
