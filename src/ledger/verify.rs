//! `maestro ledger verify`: walk the ledger once, streaming (the file's
//! lines, or the table's rows in `seq` order: [`super::walk`]), and name
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
//! (or the row's `seq`) rather than a [`Problem`]: nothing about the chain
//! can be said past it.

use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader, ErrorKind};
use std::ops::RangeInclusive;
use std::path::Path;

use serde::Serialize;
use ssh_key::PublicKey;

use super::checkpoint::Checkpoint;
use super::place::Place;
use super::walk::Walk;
use super::{Result, io_error, syntax_error};

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
    /// A checkpoint's signature does not verify with any ledger key the SoT
    /// lists; it was not used.
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
                "the checkpoint at size {size} is not signed by a ledger key the SoT lists \
                 ({reason}); it was not used as evidence"
            ),
        }
    }
}

/// A verification against what a SoT has committed.
#[derive(Debug, Clone)]
pub struct AgainstSot {
    pub report: Report,
    /// The checkpoints of the SoT's `ledger/checkpoints.jsonl`.
    pub checkpoints: Vec<Checkpoint>,
    /// Whether the SoT lists ledger keys (`ledger/key.pub`), so the
    /// checkpoints' signatures were checked.
    pub signatures_checked: bool,
}

/// Verify the ledger at `place` against the checkpoints and the ledger keys
/// the SoT in `sot_root` has committed (either may be missing) — what
/// `ledger verify`, the console's ledger view and the API report.
pub fn verify_against_sot(place: &Place, sot_root: &Path) -> Result<AgainstSot> {
    let checkpoints = super::checkpoint::read_all(sot_root.join(super::CHECKPOINTS_FILE))?;
    let key_file = sot_root.join(super::PUBLIC_KEY_FILE);
    let keys = if key_file.exists() {
        super::checkpoint::read_public_keys(&key_file)?
    } else {
        Vec::new()
    };
    // No key listed is no key file: the signatures cannot be checked.
    let keys = (!keys.is_empty()).then_some(keys);
    let report = verify(place, &checkpoints, keys.as_deref())?;
    Ok(AgainstSot {
        report,
        checkpoints,
        signatures_checked: keys.is_some(),
    })
}

/// Verify the ledger at `place` against `checkpoints`. With `keys` (the
/// controllers' ledger keys), each checkpoint's signature is checked first
/// and a checkpoint that fails is reported (after any problem in the chain
/// itself) and not used; without them, checkpoints are compared
/// unverified, which can raise a false alarm but never hide a problem. A
/// missing file, or an empty table, is an empty ledger.
pub fn verify(
    place: &Place,
    checkpoints: &[Checkpoint],
    keys: Option<&[PublicKey]>,
) -> Result<Report> {
    let mut walk = Walk::new(checkpoints, keys);
    match place {
        Place::File(path) => match File::open(path) {
            Ok(file) => walk_file(path, file, &mut walk)?,
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(io_error(path, e)),
        },
        Place::Postgres(url) => walk = super::postgres::walk(url, walk)?,
    }
    Ok(walk.finish())
}

/// Give the walk every line of the file, in file order.
fn walk_file(path: &Path, file: File, walk: &mut Walk) -> Result<()> {
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
        let Some(text) = buf.strip_suffix(b"\n") else {
            return Err(syntax_error(
                path,
                walk.lines_read() + 1,
                1,
                "the last line is incomplete (no newline at its end): a write was \
                 interrupted or the file was cut"
                    .into(),
            ));
        };
        walk.line(text)
            .map_err(|e| e.at_line(path, walk.lines_read()))?;
    }
}
