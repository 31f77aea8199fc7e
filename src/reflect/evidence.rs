//! The evidence an answer can cite, newest first: the runs and rollouts in
//! the store, the ledger's entries and the SoT's lessons. The console's
//! answer form picks from these instead of making people type ids.

use serde::Serialize;

use super::EvidenceKind;
use crate::sot::model::Sot;
use crate::store::Store;

/// How many of each kind are offered.
pub const PER_KIND: usize = 15;

/// One piece of evidence, as an answer cites it (`value`) and as a list
/// shows it (`label`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Pick {
    pub kind: EvidenceKind,
    pub value: String,
    pub label: String,
}

/// The newest runs, rollouts and ledger entries, and every lesson.
pub fn picks(
    sot: &Sot,
    store: &dyn Store,
    ledger: &crate::ledger::Place,
) -> crate::store::Result<Vec<Pick>> {
    let mut out = Vec::new();
    for r in store.rollouts(PER_KIND)? {
        out.push(Pick {
            kind: EvidenceKind::Rollout,
            value: format!("rollout:{}", r.id),
            label: format!("{} {}@{} {}", r.id, r.agent, r.to_version, r.status),
        });
    }
    for r in store.runs(PER_KIND)? {
        out.push(Pick {
            kind: EvidenceKind::Run,
            value: format!("run:{}", r.id),
            label: format!(
                "{} {} {} ({} ok, {} failed)",
                r.id,
                r.kind,
                r.command,
                r.ok,
                r.failed + r.unreachable + r.timed_out
            ),
        });
    }
    // A ledger that cannot be read offers nothing; citing it by hand
    // still checks it.
    let entries = crate::ledger::read(ledger, None).unwrap_or_default();
    for e in entries.iter().rev().take(PER_KIND) {
        out.push(Pick {
            kind: EvidenceKind::Ledger,
            value: format!("ledger:{}", &e.hash[..16.min(e.hash.len())]),
            label: format!(
                "#{} {} {} {}",
                e.seq, e.body.action, e.body.decision, e.body.description
            ),
        });
    }
    for l in sot.lessons.values() {
        out.push(Pick {
            kind: EvidenceKind::Lesson,
            value: format!("lesson:{}", l.id),
            label: format!("{} ({}) {}", l.id, l.memory.as_str(), l.text),
        });
    }
    Ok(out)
}
