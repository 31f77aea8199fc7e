//! Signed checkpoints: the controller's statement "the ledger had `size`
//! entries and its last hash was `head`", made at the end of each job.
//!
//! A hash chain shows an edit, a removal or a reordering anywhere in it, but
//! not that its newest entries were cut off: what is left is still a valid
//! chain. Checkpoints are committed into the SoT repository
//! (`ledger/checkpoints.jsonl`, one JSON object a line), so its git history
//! remembers how long the ledger was, and a checkpoint that reaches beyond
//! the file's end shows the truncation.
//!
//! The signature is an SSHSIG (namespace [`NAMESPACE`]) by the signing
//! controller's ledger key, an ed25519 key in an OpenSSH private key file in
//! its own state directory (never in the store or the SoT). The SoT lists
//! the public half of every controller's key (`ledger/key.pub`, one a line,
//! like `authorized_keys`), and a checkpoint counts when the key it names is
//! listed and made its signature. An auditor can check one without maestro:
//! the signed message is [`Checkpoint::signed_message`], and
//! `ssh-keygen -Y verify -f allowed_signers -I maestro-ledger -n maestro-ledger -s SIG`
//! with `maestro-ledger namespaces="maestro-ledger" <key>` in `allowed_signers`
//! for each line of `key.pub`.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use chrono::{SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use ssh_key::{Algorithm, HashAlg, LineEnding, PrivateKey, PublicKey, SshSig};

use super::{LedgerError, Result, io_error, json_message, syntax_error};

/// The SSHSIG namespace of checkpoints: a signature made for anything else
/// (an identity proof, an approval, a git commit) is not a checkpoint.
pub const NAMESPACE: &str = "maestro-ledger";

/// One signed checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// How many entries the ledger had.
    pub size: u64,
    /// The hash of entry `size` ([`super::GENESIS`] when `size` is 0).
    pub head: String,
    /// When it was signed: RFC 3339, UTC, milliseconds.
    pub time: String,
    /// SHA256 fingerprint of the signing key (`SHA256:…`).
    pub key: String,
    /// Armored SSHSIG over [`Checkpoint::signed_message`].
    pub signature: String,
}

/// What the signature covers.
#[derive(Serialize)]
struct Signed<'a> {
    size: u64,
    head: &'a str,
    time: &'a str,
}

impl Checkpoint {
    /// The bytes signed: the canonical JSON (RFC 8785) of
    /// `{"head":…,"size":…,"time":…}`, no trailing newline.
    pub fn signed_message(&self) -> Result<Vec<u8>> {
        signed_message(self.size, &self.head, &self.time)
    }

    /// Check the signature against the ledger keys the SoT lists (one per
    /// controller): the key the checkpoint names must be one of them, and
    /// must have made the signature.
    pub fn verify(&self, keys: &[PublicKey]) -> Result<()> {
        let refuse = |message: String| LedgerError::Signature {
            size: self.size,
            message,
        };
        let Some(key) = keys.iter().find(|k| fingerprint(k) == self.key) else {
            let listed: Vec<String> = keys.iter().map(fingerprint).collect();
            return Err(refuse(format!(
                "it names key {}, which is not one of the ledger keys ({})",
                crate::terminal_text::sanitize_str(&self.key),
                listed.join(", ")
            )));
        };
        let fingerprint = fingerprint(key);
        let signature = SshSig::from_pem(&self.signature)
            .map_err(|e| refuse(format!("the signature is not an SSH signature: {e}")))?;
        key.verify(NAMESPACE, &self.signed_message()?, &signature)
            .map_err(|e| {
                refuse(format!(
                    "the signature does not verify with the ledger key {fingerprint}: {e}"
                ))
            })
    }
}

fn signed_message(size: u64, head: &str, time: &str) -> Result<Vec<u8>> {
    serde_jcs::to_vec(&Signed { size, head, time }).map_err(LedgerError::Encode)
}

fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

/// The controller's ledger signing key.
#[derive(Debug, Clone)]
pub struct LedgerKey {
    key: PrivateKey,
}

impl LedgerKey {
    /// Load the ed25519 key at `path`, or generate it if there is none.
    /// `true` means it was just created: record
    /// [`LedgerKey::public_openssh`] in the SoT. The file is written in full
    /// under a temporary name in the same directory and then linked into
    /// place, so two controllers starting at once agree on one key and none
    /// ever reads half a key.
    pub fn load_or_create(path: impl AsRef<Path>) -> Result<(LedgerKey, bool)> {
        let path = path.as_ref();
        match Self::load(path) {
            Err(LedgerError::Io { source, .. }) if source.kind() == ErrorKind::NotFound => {}
            other => return other.map(|key| (key, false)),
        }
        let mut key = PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519)
            .map_err(|e| key_error(path, format!("generating an ed25519 key: {e}")))?;
        key.set_comment(NAMESPACE);
        let pem = key
            .to_openssh(LineEnding::LF)
            .map_err(|e| key_error(path, format!("encoding the key: {e}")))?;
        let dir = match path.parent().filter(|d| !d.as_os_str().is_empty()) {
            Some(dir) => dir,
            None => Path::new("."),
        };
        std::fs::create_dir_all(dir).map_err(|e| io_error(dir, e))?;
        let temp = write_private_temp(dir, path, pem.as_bytes())?;
        let linked = std::fs::hard_link(&temp, path);
        let _ = std::fs::remove_file(&temp);
        match linked {
            Ok(()) => Ok((LedgerKey { key }, true)),
            // Another controller created it first: use theirs.
            Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok((Self::load(path)?, false)),
            Err(e) => Err(io_error(path, e)),
        }
    }

    /// Load an existing key, refusing one other users can read or write (as
    /// ssh does) and anything that is not an unencrypted ed25519 key.
    pub fn load(path: impl AsRef<Path>) -> Result<LedgerKey> {
        let path = path.as_ref();
        let meta = std::fs::symlink_metadata(path).map_err(|e| io_error(path, e))?;
        if !meta.file_type().is_file() {
            return Err(key_error(path, "not a regular file (a symlink?)".into()));
        }
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(key_error(
                path,
                format!(
                    "permissions {mode:04o} are too open: run `chmod 600 {}`",
                    path.display()
                ),
            ));
        }
        let text = std::fs::read_to_string(path).map_err(|e| io_error(path, e))?;
        let key = PrivateKey::from_openssh(text.trim())
            .map_err(|e| key_error(path, format!("not an OpenSSH private key: {e}")))?;
        if key.is_encrypted() {
            return Err(key_error(
                path,
                "the key is encrypted; the controller signs unattended and needs it unencrypted"
                    .into(),
            ));
        }
        if key.algorithm() != Algorithm::Ed25519 {
            return Err(key_error(
                path,
                format!("a {} key; the ledger key is ed25519", key.algorithm()),
            ));
        }
        Ok(LedgerKey { key })
    }

    pub fn public_key(&self) -> &PublicKey {
        self.key.public_key()
    }

    /// `ssh-ed25519 AAAA… maestro-ledger`, for `ledger/key.pub` in the SoT.
    pub fn public_openssh(&self) -> Result<String> {
        self.key
            .public_key()
            .to_openssh()
            .map_err(LedgerError::KeyEncoding)
    }

    /// `SHA256:…`, as `ssh-keygen -l` prints it.
    pub fn fingerprint(&self) -> String {
        fingerprint(self.key.public_key())
    }

    /// A raw ed25519 signature (64 bytes) over `message`: what DSSE
    /// envelopes carry ([`super::export`]).
    pub fn sign_raw(&self, message: &[u8]) -> Result<Vec<u8>> {
        use russh::keys::signature::Signer;
        let sig: ssh_key::Signature =
            self.key
                .try_sign(message)
                .map_err(|e| LedgerError::Signature {
                    size: 0,
                    message: format!("signing an export: {e}"),
                })?;
        Ok(sig.as_bytes().to_vec())
    }

    /// Sign "the ledger had `size` entries ending in `head`", now.
    pub fn sign_checkpoint(&self, size: u64, head: &str) -> Result<Checkpoint> {
        let time = Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true);
        let message = signed_message(size, head, &time)?;
        let signature = self
            .key
            .sign(NAMESPACE, HashAlg::Sha512, &message)
            .and_then(|s| s.to_pem(LineEnding::LF))
            .map_err(|e| LedgerError::Signature {
                size,
                message: format!("signing: {e}"),
            })?;
        Ok(Checkpoint {
            size,
            head: head.to_string(),
            time,
            key: self.fingerprint(),
            signature,
        })
    }
}

fn key_error(path: &Path, message: String) -> LedgerError {
    LedgerError::Key {
        path: path.to_path_buf(),
        message,
    }
}

/// Write `bytes` to a new 0600 file next to `path` (never an existing file,
/// never through a symlink) and fsync it.
fn write_private_temp(dir: &Path, path: &Path, bytes: &[u8]) -> Result<PathBuf> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "ledger-key".into());
    for attempt in 0..100u32 {
        let temp = dir.join(format!(".{name}.{}.{attempt}.tmp", std::process::id()));
        let mut file = match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temp)
        {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(io_error(&temp, e)),
        };
        let written = file.write_all(bytes).and_then(|()| file.sync_all());
        if let Err(e) = written {
            let _ = std::fs::remove_file(&temp);
            return Err(io_error(&temp, e));
        }
        return Ok(temp);
    }
    Err(key_error(
        path,
        format!("could not create a temporary file in {}", dir.display()),
    ))
}

/// The ledger keys the SoT lists (`ledger/key.pub`): one OpenSSH public
/// key a line, as in `authorized_keys`, one per controller; blank lines and
/// `#` comments are skipped.
pub fn read_public_keys(path: impl AsRef<Path>) -> Result<Vec<PublicKey>> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path).map_err(|e| io_error(path, e))?;
    parse_public_keys(path, &text)
}

/// [`read_public_keys`] of text read from `path` (named in errors).
pub fn parse_public_keys(path: &Path, text: &str) -> Result<Vec<PublicKey>> {
    let mut keys = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let key = PublicKey::from_openssh(line).map_err(|e| {
            syntax_error(
                path,
                index as u64 + 1,
                1,
                format!("not an OpenSSH public key: {e}"),
            )
        })?;
        keys.push(key);
    }
    Ok(keys)
}

/// Append one checkpoint as a line of `path` (created if missing) and
/// fsync it.
pub fn append_line(path: impl AsRef<Path>, checkpoint: &Checkpoint) -> Result<()> {
    let path = path.as_ref();
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| io_error(dir, e))?;
    }
    let mut line = serde_json::to_vec(checkpoint).map_err(LedgerError::Encode)?;
    line.push(b'\n');
    let mut file = OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .map_err(|e| io_error(path, e))?;
    file.write_all(&line)
        .and_then(|()| file.sync_data())
        .map_err(|e| io_error(path, e))
}

/// Every checkpoint in `path`, in file order; a missing file has none. A
/// line that is not a checkpoint is an error naming `file:line:col`.
pub fn read_all(path: impl AsRef<Path>) -> Result<Vec<Checkpoint>> {
    let path = path.as_ref();
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_error(path, e)),
    };
    let mut checkpoints = Vec::new();
    for (index, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| io_error(path, e))?;
        if line.trim().is_empty() {
            continue;
        }
        let checkpoint = serde_json::from_str(&line).map_err(|e| {
            syntax_error(
                path,
                index as u64 + 1,
                e.column(),
                format!("not a checkpoint: {}", json_message(&e)),
            )
        })?;
        checkpoints.push(checkpoint);
    }
    Ok(checkpoints)
}
