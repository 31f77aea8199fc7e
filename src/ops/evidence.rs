//! Evidence of every job in the ledger ([`crate::ledger`]): the gate's
//! decision (with the policies that decided) is appended before any node
//! is touched, so nothing runs without a record, and the per-node results
//! after the run, followed by a signed checkpoint.
//!
//! The ledger sits beside a SQLite run store (`ledger.jsonl`); a team's
//! PostgreSQL store holds it in its own table, so every controller sharing
//! the database appends to one chain. The key that signs checkpoints
//! (`ledger.key`) is always this controller's own: beside the SQLite store,
//! or in the controller's state directory. Checkpoints are committed into
//! the SoT when it has a `ledger/` directory (the example SoT of `maestro
//! init` has one), with this controller's public key added to the SoT's
//! list, so cutting off the newest entries is visible against the git
//! history.

use std::path::{Path, PathBuf};
use std::time::Instant;

use super::{Outcome, Prepared};
use crate::identity::Actor;
use crate::ledger::{self, Kind, NodeEntry, PolicyHit, Record};

/// The ledger of the run store at `store`: the file beside a SQLite store,
/// the shared table of a PostgreSQL one.
pub fn ledger_place(store: &Path) -> ledger::Place {
    match crate::store::Location::from_path(store) {
        crate::store::Location::Sqlite(path) => {
            ledger::Place::File(path.with_file_name(ledger::FILE))
        }
        crate::store::Location::Postgres(url) => ledger::Place::Postgres(url),
    }
}

/// This controller's ledger key: beside a SQLite store, in the
/// controller's state directory with a PostgreSQL one (a private key is
/// never kept in a database the team shares).
pub fn key_path(store: &Path) -> PathBuf {
    match crate::store::Location::from_path(store) {
        crate::store::Location::Sqlite(path) => path.with_file_name("ledger.key"),
        crate::store::Location::Postgres(_) => crate::store::local_state_dir().join("ledger.key"),
    }
}

/// The actor as the ledger records it.
pub(crate) fn ledger_actor(a: &Actor) -> ledger::Actor {
    match a {
        Actor::Person { name, key } => ledger::Actor {
            name: name.clone(),
            verified: true,
            key: Some(key.clone()),
        },
        Actor::Unverified { claimed } => ledger::Actor {
            name: claimed.clone(),
            verified: false,
            key: None,
        },
    }
}

/// The record of `job` as the gate saw it.
pub(super) fn base_record(job: &Prepared, who: &Actor) -> Record {
    let mut inputs = ledger::Inputs {
        sot_commit: job.source.commit.clone(),
        ..Default::default()
    };
    inputs
        .digests
        .insert("plan".into(), crate::approval::plan_digest(job));
    for (k, v) in &job.settings.extra_vars {
        // Variables are recorded masked when they look like secrets.
        let shown = if crate::secrets::Scanner::default().is_secret_var(k, v) {
            "****".to_string()
        } else {
            v.clone()
        };
        inputs.vars.insert(k.clone(), shown);
    }
    Record {
        kind: match job.job {
            super::JobSpec::Kill { .. } => Kind::Kill,
            _ => Kind::Job,
        },
        actor: ledger_actor(who),
        action: crate::policy::action_of(&job.job).to_string(),
        target: job.target_label.clone(),
        description: job.description.clone(),
        inputs,
        ..Default::default()
    }
}

/// The policies that decided, over every node.
pub(super) fn policy_hits(answer: Option<&crate::policy::Answer>) -> Vec<PolicyHit> {
    let Some(answer) = answer else {
        return Vec::new();
    };
    let mut hits: Vec<PolicyHit> = Vec::new();
    for n in &answer.nodes {
        for p in &n.policies {
            let decision = if n.allowed { "allow" } else { "deny" }.to_string();
            if !hits
                .iter()
                .any(|h| &h.policy == p && h.decision == decision)
            {
                hits.push(PolicyHit {
                    policy: p.clone(),
                    effect: if n.allowed { "permit" } else { "forbid" }.into(),
                    decision,
                });
            }
        }
    }
    hits
}

/// Append `record` to the ledger of `store`.
pub(super) fn append(store: &Path, record: Record) -> ledger::Result<ledger::Entry> {
    let mut l = ledger::Ledger::open(&ledger_place(store))?;
    let entry = l.append(record)?;
    l.sync()?;
    Ok(entry)
}

/// The run's results, and a signed checkpoint committed into the SoT.
pub(super) fn conclude(
    store: &Path,
    job: &Prepared,
    mut record: Record,
    outcome: &Outcome,
    started: Instant,
) -> ledger::Result<()> {
    record.run = Some(outcome.report.run_id.clone());
    record.decision = "ran".into();
    record.nodes = outcome
        .report
        .results
        .iter()
        .map(|r| NodeEntry {
            node: r.node.clone(),
            outcome: r.status.as_str().to_string(),
        })
        .collect();
    record.bytes = outcome
        .report
        .results
        .iter()
        .map(|r| r.stdout.total + r.stderr.total)
        .sum();
    record.duration_ms = started.elapsed().as_millis() as u64;
    let mut l = ledger::Ledger::open(&ledger_place(store))?;
    l.append(record)?;
    l.sync()?;
    let (size, head) = l.head();
    let (key, _created) = ledger::LedgerKey::load_or_create(key_path(store))?;
    let checkpoint = key.sign_checkpoint(size, &head)?;
    commit_checkpoint(&job.source.sot.root, &key, &checkpoint);
    Ok(())
}

/// Commit `checkpoint` (and the key's public half, the first time) into the
/// SoT when it keeps a ledger directory. A SoT that cannot take the commit
/// (not a repository, dirty files, locked past the wait) keeps the
/// checkpoint out; `ledger verify` then checks the chain alone.
fn commit_checkpoint(root: &Path, key: &ledger::LedgerKey, checkpoint: &ledger::Checkpoint) {
    if !root.join("ledger").is_dir() {
        return;
    }
    let intent = crate::sot::change::Intent {
        reason: format!(
            "ledger checkpoint: {} entries, head {}",
            checkpoint.size,
            &checkpoint.head[..12.min(checkpoint.head.len())]
        ),
        actor: Some("maestro ledger <ledger@maestro.invalid>".into()),
        wait: std::time::Duration::from_secs(10),
    };
    let _ = crate::sot::change::commit_ledger(root, &intent, key, checkpoint);
}
