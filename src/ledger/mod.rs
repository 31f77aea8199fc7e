//! The evidence ledger: what every job did, who asked for it and what it was
//! allowed to do, in a record nobody can quietly change.
//!
//! Every job appends entries ([`Record`]: who, verified or not; what; the
//! digests of its inputs with secrets masked; the policies evaluated and
//! their decisions; approvals; per-node results; duration; bytes moved) to
//! an append-only ledger at a [`Place`]: a JSON-lines file beside a SQLite
//! store, or the table of the PostgreSQL store a team shares, where every
//! controller appends to one chain (`ledger/postgres.rs`). Each [`Entry`]
//! carries the SHA-256 of the previous one, over RFC 8785 canonical JSON
//! ([`entry`]), so an edit, a removal or a reordering anywhere breaks the
//! chain ([`chain`] appends, [`verify`] walks it). Because cutting off the
//! newest entries leaves a valid chain, the controller signs a
//! [`Checkpoint`] (size + head hash, SSHSIG ed25519) at the end of each job
//! and the operations layer commits it into the SoT, whose git history then
//! remembers how long the ledger was ([`checkpoint`]).
//!
//! Files:
//! - `STATE/ledger.jsonl` (0600): one entry a line,
//!   `{"body":{…},"prev":HEX,"seq":N,"time":RFC3339,"hash":HEX}`, where
//!   `hash` is SHA-256 over the canonical JSON of the other four fields.
//!   maestro writes exactly that canonical JSON with `hash` added last, which
//!   lets `verify` hash the bytes as they are; any other serialization of an
//!   entry still verifies (it is re-canonicalized), only slower.
//! - or, with a PostgreSQL store, table `ledger_entries (seq, line)`: one
//!   row an entry, `line` exactly the line above without its newline.
//! - `SOT/ledger/checkpoints.jsonl`: one [`Checkpoint`] a line,
//!   `{"size","head","time","key","signature"}`, the signature an armored
//!   SSHSIG over `{"head","size","time"}` in canonical JSON.
//! - `SOT/ledger/key.pub`: the public half of each controller's ledger key,
//!   one OpenSSH line per controller (like `authorized_keys`); a checkpoint
//!   counts when it is signed by one of them.
//!
//! This module never prints, never commits to git (the caller does, through
//! the SoT's one write path) and never decides anything: it records and it
//! checks.

use std::path::{Path, PathBuf};

mod canonical;
pub mod chain;
pub mod checkpoint;
pub mod entry;
pub mod export;
mod place;
mod postgres;
pub mod verify;
mod walk;

#[cfg(test)]
mod postgres_tests;
#[cfg(test)]
mod tests;

pub use checkpoint::{Checkpoint, LedgerKey, NAMESPACE};
pub(crate) use entry::sha256_hex;
pub use entry::{Actor, Entry, GENESIS, Inputs, Kind, NodeEntry, PolicyHit, Record};
pub use place::{Ledger, Place, read};
pub(crate) use postgres::LOCK as POSTGRES_LOCK;
pub use verify::{AgainstSot, Problem, Report, verify, verify_against_sot};

/// The ledger file, relative to the state directory.
pub const FILE: &str = "ledger.jsonl";
/// The SoT file of signed checkpoints.
pub const CHECKPOINTS_FILE: &str = "ledger/checkpoints.jsonl";
/// The SoT file listing the public half of each controller's ledger key.
pub const PUBLIC_KEY_FILE: &str = "ledger/key.pub";

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A line that is not what the file should hold. The ledger is
    /// evidence: it is reported, never skipped or repaired.
    #[error("{}:{line}:{column}: {message}", path.display())]
    Syntax {
        path: PathBuf,
        line: u64,
        column: usize,
        message: String,
    },
    /// A row of a PostgreSQL ledger that is not an entry: the `seq` it is
    /// stored under and, when the rows were walked, its position (its line).
    #[error(
        "{url}: ledger_entries row with seq {seq}{}, column {column}: {message}",
        line.map(|l| format!(" (line {l})")).unwrap_or_default()
    )]
    Row {
        url: String,
        line: Option<u64>,
        seq: i64,
        column: usize,
        message: String,
    },
    /// Reading or appending to a PostgreSQL ledger (the URL without its password).
    #[error("the ledger in {url}: {source}")]
    Postgres {
        url: String,
        source: ::postgres::Error,
    },
    /// Opening the PostgreSQL store that holds the ledger.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("ledger key {}: {message}", path.display())]
    Key { path: PathBuf, message: String },
    #[error("encoding the ledger key: {0}")]
    KeyEncoding(ssh_key::Error),
    #[error("checkpoint at size {size}: {message}")]
    Signature { size: u64, message: String },
    #[error("encoding a ledger entry: {0}")]
    Encode(serde_json::Error),
    /// A DSSE envelope that does not verify or does not decode.
    #[error("the envelope does not verify: {0}")]
    Envelope(String),
}

pub type Result<T> = std::result::Result<T, LedgerError>;

fn io_error(path: &Path, source: std::io::Error) -> LedgerError {
    LedgerError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A `file:line:col` error. serde_json counts columns from 1 but reports 0
/// at the end of an empty input; either way the column names a character.
fn syntax_error(path: &Path, line: u64, column: usize, message: String) -> LedgerError {
    LedgerError::Syntax {
        path: path.to_path_buf(),
        line,
        column: column.max(1),
        // serde_json quotes what it read, and that came from a file.
        message: crate::terminal_text::sanitize_str(&message),
    }
}

/// Why one line is not a ledger entry. Where the line is (`file:line:col`)
/// is for its reader to add: the same line can come from a file or a row.
#[derive(Debug)]
pub(crate) struct NotAnEntry {
    /// The character at fault, from 1.
    column: usize,
    message: String,
}

impl NotAnEntry {
    fn json(e: &serde_json::Error) -> NotAnEntry {
        NotAnEntry {
            column: e.column(),
            message: format!("not a ledger entry: {}", json_message(e)),
        }
    }

    fn because(why: &str) -> NotAnEntry {
        NotAnEntry {
            column: 1,
            message: format!("not a ledger entry: {why}"),
        }
    }

    /// The error for line `line` of the file at `path`.
    fn at_line(self, path: &Path, line: u64) -> LedgerError {
        syntax_error(path, line, self.column, self.message)
    }
}

/// serde_json's message without its own "at line 1 column N": each line is
/// parsed alone, so its position is the caller's to give.
fn json_message(e: &serde_json::Error) -> String {
    let text = e.to_string();
    match text.rfind(" at line ") {
        Some(at) => text[..at].to_string(),
        None => text,
    }
}
