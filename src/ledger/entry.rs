//! What one ledger line holds: an [`Entry`] (its place in the chain) around
//! a [`Record`] (what happened), and how an entry's hash is computed.
//!
//! The hash is SHA-256 over the RFC 8785 canonical JSON (JCS) of the entry
//! without its `hash` field. Verification canonicalizes what is in the file,
//! not what this version of the types would write, so an entry written by an
//! older or newer maestro (fewer or more fields) still verifies, and
//! reformatting a line (whitespace, key order, escapes) is not tampering
//! while changing, adding or removing any value is.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{LedgerError, Result};

/// The `prev` of the first entry: 64 zeros.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One line of the ledger file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Position in the chain, 1-based (line N holds entry N).
    pub seq: u64,
    /// When it was appended: RFC 3339, UTC, milliseconds.
    pub time: String,
    /// [`Entry::hash`] of the previous entry, [`GENESIS`] for the first.
    pub prev: String,
    pub body: Record,
    /// Lowercase hex SHA-256 of the canonical JSON of the other four fields.
    pub hash: String,
}

/// The fields an entry's hash covers, borrowed so appending hashes without copying.
#[derive(Serialize)]
struct Unhashed<'a> {
    seq: u64,
    time: &'a str,
    prev: &'a str,
    body: &'a Record,
}

impl Entry {
    /// The entry at `seq` after `prev`, hashed.
    pub fn new(seq: u64, time: String, prev: String, body: Record) -> Result<Entry> {
        Ok(Entry::seal(seq, time, prev, body)?.0)
    }

    /// The entry and its line as the ledger file holds it (with its newline).
    pub(crate) fn seal(
        seq: u64,
        time: String,
        prev: String,
        body: Record,
    ) -> Result<(Entry, Vec<u8>)> {
        let mut entry = Entry {
            seq,
            time,
            prev,
            body,
            hash: String::new(),
        };
        let mut line = entry.unhashed_canonical()?;
        entry.hash = sha256_hex(&line);
        seal_line(&mut line, &entry.hash);
        Ok((entry, line))
    }

    /// The hash these contents should have (compare with [`Entry::hash`]).
    pub fn compute_hash(&self) -> Result<String> {
        Ok(sha256_hex(&self.unhashed_canonical()?))
    }

    /// The line maestro writes for this entry, newline included: the
    /// canonical JSON the hash covers, with the hash added at its end (where
    /// `verify` finds it without re-canonicalizing). Any other serialization
    /// of the entry verifies too, only slower.
    pub fn to_line(&self) -> Result<Vec<u8>> {
        let mut line = self.unhashed_canonical()?;
        seal_line(&mut line, &self.hash);
        Ok(line)
    }

    fn unhashed_canonical(&self) -> Result<Vec<u8>> {
        let unhashed = Unhashed {
            seq: self.seq,
            time: &self.time,
            prev: &self.prev,
            body: &self.body,
        };
        serde_jcs::to_vec(&unhashed).map_err(LedgerError::Encode)
    }
}

/// `{…}` → `{…,"hash":"HASH"}\n`.
fn seal_line(canonical: &mut Vec<u8>, hash: &str) {
    canonical.pop();
    canonical.extend_from_slice(b",\"hash\":\"");
    canonical.extend_from_slice(hash.as_bytes());
    canonical.extend_from_slice(b"\"}\n");
}

/// Lowercase hex SHA-256.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

/// What an entry is about. Unknown kinds (written by a newer maestro) read
/// back as [`Kind::Other`]; verification never depends on this type.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A job: a deploy, a command, a playbook, a hardening run.
    #[default]
    Job,
    /// The kill switch was engaged or released.
    Kill,
    /// An approval was given for a plan.
    Approval,
    /// maestro committed a change to the SoT.
    SotCommit,
    /// A reflection was answered (its commit in the inputs).
    Reflection,
    /// A lesson was promoted to long-term memory.
    Lesson,
    #[serde(other)]
    Other,
}

/// What happened, as the operations layer knows it. Plain data: callers
/// fill what they have and leave the rest at its default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
// An entry from an older maestro lacks newer fields; `show` still reads it.
#[serde(default)]
pub struct Record {
    pub kind: Kind,
    /// The run id, when the entry belongs to a run.
    pub run: Option<String>,
    pub actor: Actor,
    /// e.g. `deploy`, `exec`, `kill`.
    pub action: String,
    /// The target pattern as given.
    pub target: String,
    pub description: String,
    pub inputs: Inputs,
    /// Every policy evaluated and what it said.
    pub policy: Vec<PolicyHit>,
    /// The admission decision: `allow`, `deny`, …
    pub decision: String,
    /// Who approved (person names, as verified).
    pub approvals: Vec<String>,
    pub nodes: Vec<NodeEntry>,
    pub duration_ms: u64,
    /// Bytes moved to and from nodes.
    pub bytes: u64,
    pub note: Option<String>,
}

/// Who acted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Actor {
    pub name: String,
    /// Whether an SSH signature proved the name (else it is only a claim).
    pub verified: bool,
    /// The SHA256 fingerprint of the key that proved it.
    pub key: Option<String>,
}

/// What the job was made of, by digest.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Inputs {
    /// The SoT commit the job was planned from.
    pub sot_commit: Option<String>,
    /// Playbooks, artifacts, scripts: name → digest.
    pub digests: BTreeMap<String, String>,
    /// Variables, with secrets already masked by the caller: the ledger is
    /// not a secret store and is readable by whoever audits it.
    pub vars: BTreeMap<String, String>,
}

/// One policy evaluated for the job.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PolicyHit {
    pub policy: String,
    /// `permit` or `forbid`.
    pub effect: String,
    /// What it decided for this job.
    pub decision: String,
}

/// One node's result.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct NodeEntry {
    pub node: String,
    /// `ok`, `changed`, `failed`, `unreachable`, `stopped`, …
    pub outcome: String,
}
