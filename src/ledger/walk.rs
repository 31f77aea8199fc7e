//! The one walk along a ledger that [`super::verify`] reports on, fed one
//! line at a time by whichever place holds the ledger: the file's lines in
//! file order, or the PostgreSQL table's rows in `seq` order. Position N
//! (the Nth line or row) is where entry N belongs.
//!
//! The walk knows nothing about where its lines come from: a line that is
//! not an entry comes back as a [`NotAnEntry`] and the source names its
//! place (`file:line:col`, or the table's row).

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;
use ssh_key::PublicKey;

use super::canonical;
use super::checkpoint::Checkpoint;
use super::entry::{GENESIS, sha256_hex};
use super::verify::{Problem, Report};
use super::{LedgerError, NotAnEntry};

/// What the walk needs from a line once the first problem is known.
#[derive(Deserialize)]
struct Seq {
    seq: u64,
}

/// A forward jump in `seq`, classified at the end of the ledger: the
/// skipped entries either turn up later (reordered) or nowhere (removed).
struct Gap {
    line: u64,
    seq: u64,
    expected: u64,
}

/// A verification in progress. It owns everything it needs, so a source
/// can carry it to another thread (the PostgreSQL connection's) and back.
pub(super) struct Walk {
    /// The heads the usable checkpoints recorded, by size.
    by_size: BTreeMap<u64, Vec<String>>,
    /// The first checkpoint whose signature failed, reported last.
    bad_signature: Option<Problem>,
    /// Lines read so far.
    line: u64,
    /// Hash of the last entry that verified in order.
    head: String,
    verified: u64,
    checked: usize,
    /// Size of the last checkpoint that matched.
    since: u64,
    problem: Option<Problem>,
    gap: Option<Gap>,
    /// Reused for each line's canonical bytes.
    unhashed: Vec<u8>,
}

impl Walk {
    /// A walk against `checkpoints`. With `keys`, each checkpoint's
    /// signature is checked first and one that fails is not used (see
    /// [`super::verify`]).
    pub(super) fn new(checkpoints: &[Checkpoint], keys: Option<&[PublicKey]>) -> Walk {
        let mut bad_signature = None;
        let mut by_size: BTreeMap<u64, Vec<String>> = BTreeMap::new();
        for checkpoint in checkpoints {
            if let Some(keys) = keys
                && let Err(e) = checkpoint.verify(keys)
            {
                let reason = match e {
                    LedgerError::Signature { message, .. } => message,
                    other => other.to_string(),
                };
                bad_signature.get_or_insert(Problem::BadSignature {
                    size: checkpoint.size,
                    reason,
                });
                continue;
            }
            by_size
                .entry(checkpoint.size)
                .or_default()
                .push(checkpoint.head.clone());
        }
        let mut walk = Walk {
            by_size,
            bad_signature,
            line: 0,
            head: GENESIS.to_string(),
            verified: 0,
            checked: 0,
            since: 0,
            problem: None,
            gap: None,
            unhashed: Vec::with_capacity(4096),
        };
        walk.check_checkpoints(0, GENESIS);
        walk
    }

    /// Lines (or rows) read so far: the position of the last one given.
    pub(super) fn lines_read(&self) -> u64 {
        self.line
    }

    /// The next line, without its newline.
    pub(super) fn line(&mut self, text: &[u8]) -> Result<(), NotAnEntry> {
        self.line += 1;
        if self.problem.is_some() {
            // The first problem is named; the rest is only counted.
            return Ok(());
        }
        if let Some(gap) = &self.gap {
            let Seq { seq } = serde_json::from_slice(text).map_err(|e| NotAnEntry::json(&e))?;
            if (gap.expected..gap.seq).contains(&seq) {
                self.problem = Some(Problem::Reordered {
                    line: gap.line,
                    seq: gap.seq,
                    expected: gap.expected,
                });
                self.gap = None;
            }
            return Ok(());
        }
        self.entry(text)
    }

    /// The report, once every line was given.
    pub(super) fn finish(mut self) -> Report {
        if let Some(gap) = self.gap.take() {
            self.problem = Some(Problem::Removed {
                after_seq: gap.expected - 1,
                missing: gap.expected..=gap.seq - 1,
            });
        }
        let largest = self.by_size.keys().next_back().copied().unwrap_or(0);
        if self.problem.is_none() && largest > self.line {
            self.problem = Some(Problem::Truncated {
                size: self.line,
                checkpoint_size: largest,
            });
        }
        Report {
            entries: self.line,
            verified: self.verified,
            head: self.head,
            checkpoints_checked: self.checked,
            problem: self.problem.or(self.bad_signature),
        }
    }

    /// Check one line while the chain is still intact.
    fn entry(&mut self, text: &[u8]) -> Result<(), NotAnEntry> {
        let line = self.line;
        let (seq, links, intact, stored) = match canonical::split(text, &mut self.unhashed) {
            Some(split) => (
                split.seq,
                split.prev == self.head,
                sha256_hex(&self.unhashed) == split.hash,
                split.hash.to_string(),
            ),
            None => {
                let (seq, links, canonical, stored) = self.slow(text)?;
                (seq, links, sha256_hex(&canonical) == stored, stored)
            }
        };
        let expected = self.verified + 1;
        if !intact {
            self.problem = Some(Problem::Edited { seq, line });
        } else if seq < expected {
            self.problem = Some(Problem::Reordered {
                line,
                seq,
                expected,
            });
        } else if seq > expected && !links {
            self.gap = Some(Gap {
                line,
                seq,
                expected,
            });
        } else if seq > expected || !links {
            // Linked but misnumbered can only be forged; unlinked in place
            // means the predecessor is not the original.
            self.problem = Some(Problem::Broken { line, seq });
        } else {
            self.check_checkpoints(seq, &stored);
            if self.problem.is_none() {
                self.verified = seq;
                self.head = stored;
            }
        }
        Ok(())
    }

    /// A line in any other serialization: parse it and let `serde_jcs`
    /// canonicalize it. Returns `(seq, links to head, canonical bytes, stored hash)`.
    fn slow(&self, text: &[u8]) -> Result<(u64, bool, Vec<u8>, String), NotAnEntry> {
        let mut map = match serde_json::from_slice(text) {
            Ok(Value::Object(map)) => map,
            Ok(_) => return Err(NotAnEntry::because("it is not a JSON object")),
            Err(e) => return Err(NotAnEntry::json(&e)),
        };
        let Some(Value::String(stored)) = map.remove("hash") else {
            return Err(NotAnEntry::because("no string `hash`"));
        };
        let Some(seq) = map.get("seq").and_then(Value::as_u64) else {
            return Err(NotAnEntry::because("no number `seq`"));
        };
        let Some(prev) = map.get("prev").and_then(Value::as_str) else {
            return Err(NotAnEntry::because("no string `prev`"));
        };
        let links = prev == self.head;
        let canonical = serde_jcs::to_vec(&Value::Object(map))
            .map_err(|e| NotAnEntry::because(&format!("it has no canonical form: {e}")))?;
        Ok((seq, links, canonical, stored))
    }

    fn check_checkpoints(&mut self, size: u64, hash: &str) {
        let Some(heads) = self.by_size.get(&size) else {
            return;
        };
        if heads.iter().all(|head| head == hash) {
            self.checked += heads.len();
            self.since = size;
        } else {
            self.problem = Some(Problem::CheckpointMismatch {
                size,
                since: self.since,
            });
        }
    }
}
