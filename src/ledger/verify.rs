//! `maestro ledger verify`: walk the ledger file once, streaming, and name
//! the first entry that is not what was appended.
//!
//! Each line's hash is recomputed over the canonical JSON of what the line
//! holds (not of what this version's types would write), each `seq` must be
//! the line's position and each `prev` the hash of the line before. Signed
//! checkpoints then pin the chain: the entry at a checkpoint's size must
//! have the checkpoint's head (else the chain was rewritten, hashes and all)
//! and the file must reach the largest checkpoint's size (else its tail was
//! cut off, which no chain can show by itself).
//!
//! A line that is not JSON, or not an entry, is an error with `file:line:col`
//! rather than a [`Problem`]: nothing about the chain can be said past it.

use std::collections::BTreeMap;
use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader, ErrorKind};
use std::ops::RangeInclusive;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use ssh_key::PublicKey;

use super::canonical;
use super::checkpoint::Checkpoint;
use super::entry::{GENESIS, sha256_hex};
use super::{LedgerError, Result, io_error, json_message, syntax_error};

/// What a verification found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// Lines in the ledger file.
    pub entries: u64,
    /// Entries that verified, in order, before the first problem (all of
    /// them when there is none).
    pub verified: u64,
    /// The hash of the last verified entry ([`GENESIS`] if none).
    pub head: String,
    /// Signed checkpoints whose head was compared with the chain and matched.
    pub checkpoints_checked: usize,
    /// The first problem, if any.
    pub problem: Option<Problem>,
}

impl Report {
    pub fn is_ok(&self) -> bool {
        self.problem.is_none()
    }
}

/// The first thing wrong with a ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "problem", rename_all = "snake_case")]
pub enum Problem {
    /// The stored hash does not match the entry's contents.
    Edited { seq: u64, line: u64 },
    /// `seq` jumps forward and the link to the predecessor breaks, and the
    /// skipped entries appear nowhere later in the file.
    Removed {
        after_seq: u64,
        missing: RangeInclusive<u64>,
    },
    /// An entry is not at its position: moved, duplicated or inserted.
    Reordered { line: u64, seq: u64, expected: u64 },
    /// The entry is in place and intact but its `prev` is not the hash of
    /// the entry before it.
    Broken { line: u64, seq: u64 },
    /// The file ends before the size a signed checkpoint recorded.
    Truncated { size: u64, checkpoint_size: u64 },
    /// The entry at a signed checkpoint's size has another hash: the chain
    /// was rewritten after entry `since` (the last checkpoint that matched).
    CheckpointMismatch { size: u64, since: u64 },
    /// A checkpoint's signature does not verify with the ledger key; it was
    /// not used.
    BadSignature { size: u64, reason: String },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Edited { seq, line } => write!(
                f,
                "entry {seq} (line {line}) was edited: its hash does not match its contents"
            ),
            Problem::Removed { after_seq, missing } => {
                let (first, last) = (*missing.start(), *missing.end());
                let what = if first == last {
                    format!("entry {first} was removed")
                } else {
                    format!("entries {first} to {last} were removed")
                };
                let place = if *after_seq == 0 {
                    "the ledger starts".to_string()
                } else {
                    format!("entry {after_seq} (line {after_seq}) is followed")
                };
                write!(
                    f,
                    "{what}: {place} by entry {}, whose link to its predecessor does not match",
                    last + 1
                )
            }
            Problem::Reordered {
                line,
                seq,
                expected,
            } => write!(
                f,
                "entries were reordered: line {line} holds entry {seq} where entry {expected} belongs \
                 (moved, duplicated or inserted)"
            ),
            Problem::Broken { line, seq } => write!(
                f,
                "entry {seq} (line {line}) does not link to the entry before it: that entry was \
                 replaced, or this one was forged"
            ),
            Problem::Truncated {
                size,
                checkpoint_size,
            } => write!(
                f,
                "the ledger ends at entry {size}, but a signed checkpoint recorded {checkpoint_size} \
                 entries: the newest {} entries were removed",
                checkpoint_size - size
            ),
            Problem::CheckpointMismatch { size, since } => write!(
                f,
                "entry {size} is not the entry the checkpoint at size {size} signed: entries {} to \
                 {size} were rewritten with recomputed hashes",
                since + 1
            ),
            Problem::BadSignature { size, reason } => write!(
                f,
                "the checkpoint at size {size} is not signed by the ledger key ({reason}); it was \
                 not used as evidence"
            ),
        }
    }
}

/// What the walk needs from a line once the first problem is known.
#[derive(Deserialize)]
struct Seq {
    seq: u64,
}

/// A forward jump in `seq`, classified at the end of the file: the skipped
/// entries either turn up later (reordered) or nowhere (removed).
struct Gap {
    line: u64,
    seq: u64,
    expected: u64,
}

/// A verification against what a SoT has committed.
#[derive(Debug, Clone)]
pub struct AgainstSot {
    pub report: Report,
    /// The checkpoints of the SoT's `ledger/checkpoints.jsonl`.
    pub checkpoints: Vec<Checkpoint>,
    /// Whether the SoT has the ledger's public key (`ledger/key.pub`), so
    /// the checkpoints' signatures were checked.
    pub signatures_checked: bool,
}

/// Verify the ledger at `path` against the checkpoints and the public key
/// the SoT in `sot_root` has committed (either may be missing) — what
/// `ledger verify`, the console's ledger view and the API report.
pub fn verify_against_sot(path: impl AsRef<Path>, sot_root: &Path) -> Result<AgainstSot> {
    let checkpoints = super::checkpoint::read_all(sot_root.join(super::CHECKPOINTS_FILE))?;
    let key_file = sot_root.join(super::PUBLIC_KEY_FILE);
    let key = if key_file.exists() {
        Some(super::checkpoint::read_public_key(&key_file)?)
    } else {
        None
    };
    let report = verify(path, &checkpoints, key.as_ref())?;
    Ok(AgainstSot {
        report,
        checkpoints,
        signatures_checked: key.is_some(),
    })
}

/// Verify the ledger at `path` against `checkpoints`. With `key`, each
/// checkpoint's signature is checked first and a checkpoint that fails is
/// reported (after any problem in the chain itself) and not used; without
/// it, checkpoints are compared unverified, which can raise a false alarm
/// but never hide a problem. A missing file is an empty ledger.
pub fn verify(
    path: impl AsRef<Path>,
    checkpoints: &[Checkpoint],
    key: Option<&PublicKey>,
) -> Result<Report> {
    let path = path.as_ref();
    let mut bad_signature = None;
    let mut by_size: BTreeMap<u64, Vec<&Checkpoint>> = BTreeMap::new();
    for checkpoint in checkpoints {
        if let Some(key) = key
            && let Err(e) = checkpoint.verify(key)
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
        by_size.entry(checkpoint.size).or_default().push(checkpoint);
    }

    let mut walk = Walk {
        by_size,
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

    match File::open(path) {
        Ok(file) => walk.lines(path, file)?,
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(io_error(path, e)),
    }

    if let Some(gap) = walk.gap.take() {
        walk.problem = Some(Problem::Removed {
            after_seq: gap.expected - 1,
            missing: gap.expected..=gap.seq - 1,
        });
    }
    let largest = walk.by_size.keys().next_back().copied().unwrap_or(0);
    if walk.problem.is_none() && largest > walk.line {
        walk.problem = Some(Problem::Truncated {
            size: walk.line,
            checkpoint_size: largest,
        });
    }
    Ok(Report {
        entries: walk.line,
        verified: walk.verified,
        head: walk.head,
        checkpoints_checked: walk.checked,
        problem: walk.problem.or(bad_signature),
    })
}

struct Walk<'a> {
    by_size: BTreeMap<u64, Vec<&'a Checkpoint>>,
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

impl Walk<'_> {
    fn lines(&mut self, path: &Path, file: File) -> Result<()> {
        let mut reader = BufReader::with_capacity(1 << 20, file);
        let mut buf = Vec::with_capacity(4096);
        loop {
            buf.clear();
            let n = reader
                .read_until(b'\n', &mut buf)
                .map_err(|e| io_error(path, e))?;
            if n == 0 {
                return Ok(());
            }
            self.line += 1;
            if buf.last() != Some(&b'\n') {
                return Err(syntax_error(
                    path,
                    self.line,
                    1,
                    "the last line is incomplete (no newline at its end): a write was \
                     interrupted or the file was cut"
                        .into(),
                ));
            }
            if self.problem.is_some() {
                // The first problem is named; the rest is only counted.
                continue;
            }
            if let Some(gap) = &self.gap {
                let Seq { seq } =
                    serde_json::from_slice(&buf).map_err(|e| not_an_entry(path, self.line, &e))?;
                if (gap.expected..gap.seq).contains(&seq) {
                    self.problem = Some(Problem::Reordered {
                        line: gap.line,
                        seq: gap.seq,
                        expected: gap.expected,
                    });
                    self.gap = None;
                }
                continue;
            }
            self.entry(path, &buf)?;
        }
    }

    /// Check one line while the chain is still intact.
    fn entry(&mut self, path: &Path, text: &[u8]) -> Result<()> {
        let line = self.line;
        let without_newline = &text[..text.len() - 1];
        let (seq, links, intact, stored) =
            match canonical::split(without_newline, &mut self.unhashed) {
                Some(split) => (
                    split.seq,
                    split.prev == self.head,
                    sha256_hex(&self.unhashed) == split.hash,
                    split.hash.to_string(),
                ),
                None => {
                    let (seq, links, canonical, stored) = self.slow(path, text)?;
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
    fn slow(&self, path: &Path, text: &[u8]) -> Result<(u64, bool, Vec<u8>, String)> {
        let line = self.line;
        let mut map = match serde_json::from_slice(text) {
            Ok(Value::Object(map)) => map,
            Ok(_) => return Err(not_an_entry_because(path, line, "it is not a JSON object")),
            Err(e) => return Err(not_an_entry(path, line, &e)),
        };
        let Some(Value::String(stored)) = map.remove("hash") else {
            return Err(not_an_entry_because(path, line, "no string `hash`"));
        };
        let Some(seq) = map.get("seq").and_then(Value::as_u64) else {
            return Err(not_an_entry_because(path, line, "no number `seq`"));
        };
        let Some(prev) = map.get("prev").and_then(Value::as_str) else {
            return Err(not_an_entry_because(path, line, "no string `prev`"));
        };
        let links = prev == self.head;
        let canonical = serde_jcs::to_vec(&Value::Object(map)).map_err(LedgerError::Encode)?;
        Ok((seq, links, canonical, stored))
    }

    fn check_checkpoints(&mut self, size: u64, hash: &str) {
        let Some(checkpoints) = self.by_size.get(&size) else {
            return;
        };
        if checkpoints.iter().all(|c| c.head == hash) {
            self.checked += checkpoints.len();
            self.since = size;
        } else {
            self.problem = Some(Problem::CheckpointMismatch {
                size,
                since: self.since,
            });
        }
    }
}

fn not_an_entry(path: &Path, line: u64, e: &serde_json::Error) -> LedgerError {
    syntax_error(
        path,
        line,
        e.column(),
        format!("not a ledger entry: {}", json_message(e)),
    )
}

fn not_an_entry_because(path: &Path, line: u64, why: &str) -> LedgerError {
    syntax_error(path, line, 1, format!("not a ledger entry: {why}"))
}
