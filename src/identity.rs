//! Who runs a job: a person of `people.toml` proven by an SSH signature
//! (SSHSIG, the format of `ssh-keygen -Y sign` and of git's SSH signing),
//! or "unverified". A name typed with `--actor` or `MAESTRO_ACTOR` is only a
//! claim: policies see it as [`Actor::Unverified`] and can refuse it.
//!
//! The operator's key is a key file (`MAESTRO_IDENTITY=~/.ssh/id_ed25519`)
//! or a key held by their ssh-agent (`SSH_AUTH_SOCK`). maestro signs a fresh
//! challenge with it and checks the signature against the keys of
//! `people.toml`, so only someone holding a person's private key acts as
//! that person. Approvals are signatures of the same kind over a plan's
//! digest, stored and checked again by whoever counts them.
//!
//! This module never prints; it returns what it found and why.

use std::path::{Path, PathBuf};

use russh::keys::ssh_key::{HashAlg, PrivateKey, PublicKey, SshSig};
use serde::Serialize;

use crate::sot::model::{Person, Sot};

/// The SSHSIG namespace of a job's identity proof.
pub const NAMESPACE: &str = "maestro-identity";
/// The SSHSIG namespace of approvals (a signature for one cannot be
/// replayed as the other).
pub const APPROVAL_NAMESPACE: &str = "maestro-approval";

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("{path}: {message}")]
    KeyFile { path: PathBuf, message: String },
    #[error("not an SSH public key: {0}")]
    PublicKey(String),
    #[error("not an SSH signature: {0}")]
    Signature(String),
    #[error("ssh-agent: {0}")]
    Agent(String),
    #[error("the signature is by key {0}, which is no person's key in people.toml")]
    UnknownKey(String),
    #[error("the signature does not verify: {0}")]
    BadSignature(String),
}

pub type Result<T> = std::result::Result<T, IdentityError>;

/// The actor of a job as policies see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Actor {
    /// A person whose key signed for this process.
    Person { name: String, key: String },
    /// A name nobody proved (or "unknown").
    Unverified { claimed: String },
}

impl Actor {
    pub fn unverified(claimed: impl Into<String>) -> Actor {
        Actor::Unverified {
            claimed: claimed.into(),
        }
    }

    /// How it is recorded and shown: `ada` or `ada (unverified)`.
    pub fn label(&self) -> String {
        match self {
            Actor::Person { name, .. } => name.clone(),
            Actor::Unverified { claimed } => format!("{claimed} (unverified)"),
        }
    }

    pub fn name(&self) -> &str {
        match self {
            Actor::Person { name, .. } => name,
            Actor::Unverified { claimed } => claimed,
        }
    }

    pub fn is_verified(&self) -> bool {
        matches!(self, Actor::Person { .. })
    }
}

impl From<String> for Actor {
    fn from(claimed: String) -> Actor {
        Actor::unverified(claimed)
    }
}

impl From<&str> for Actor {
    fn from(claimed: &str) -> Actor {
        Actor::unverified(claimed)
    }
}

/// One line of a `.pub` file (`ssh-ed25519 AAAA… comment`).
pub fn parse_public_key(line: &str) -> Result<PublicKey> {
    PublicKey::from_openssh(line.trim()).map_err(|e| IdentityError::PublicKey(e.to_string()))
}

/// The SHA256 fingerprint OpenSSH prints (`SHA256:…`).
pub fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

/// What signs for the operator: a key file read once.
pub struct Signer {
    key: PrivateKey,
    path: PathBuf,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer").field("path", &self.path).finish()
    }
}

impl Signer {
    /// An OpenSSH private key file without a passphrase (a key with one
    /// belongs in ssh-agent, which maestro asks instead).
    pub fn from_file(path: &Path) -> Result<Signer> {
        let err = |message: String| IdentityError::KeyFile {
            path: path.to_path_buf(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        let key = PrivateKey::from_openssh(text.trim_end()).map_err(|e| err(e.to_string()))?;
        if key.is_encrypted() {
            return Err(err(
                "the key has a passphrase; add it to ssh-agent (`ssh-add`) and unset MAESTRO_IDENTITY"
                    .into(),
            ));
        }
        Ok(Signer {
            key,
            path: path.to_path_buf(),
        })
    }

    pub fn public_key(&self) -> PublicKey {
        self.key.public_key().clone()
    }

    pub fn sign(&self, namespace: &str, message: &[u8]) -> Result<SshSig> {
        self.key
            .sign(namespace, HashAlg::Sha512, message)
            .map_err(|e| IdentityError::KeyFile {
                path: self.path.clone(),
                message: format!("cannot sign: {e}"),
            })
    }
}

/// Sign `message` with a key held by the ssh-agent at `SSH_AUTH_SOCK`,
/// choosing the first of its keys that is a person's key in `sot`.
pub async fn sign_with_agent(sot: &Sot, namespace: &str, message: &[u8]) -> Result<SshSig> {
    use russh::keys::agent::client::AgentClient;
    let mut agent = AgentClient::connect_env()
        .await
        .map_err(|e| IdentityError::Agent(e.to_string()))?;
    let keys = agent
        .request_identities()
        .await
        .map_err(|e| IdentityError::Agent(e.to_string()))?;
    let key = keys
        .iter()
        .map(|k| k.public_key().into_owned())
        .find(|k| person_of_key(sot, k).is_some())
        .ok_or_else(|| {
            IdentityError::Agent(format!(
                "none of its {} keys is a person's key in people.toml",
                keys.len()
            ))
        })?;
    let data = SshSig::signed_data(namespace, HashAlg::Sha512, message)
        .map_err(|e| IdentityError::Signature(e.to_string()))?;
    let signature = agent
        .sign_request_signature(&key, None, &data)
        .await
        .map_err(|e| IdentityError::Agent(e.to_string()))?;
    SshSig::new(
        key.key_data().clone(),
        namespace,
        HashAlg::Sha512,
        signature,
    )
    .map_err(|e| IdentityError::Signature(e.to_string()))
}

/// The person of `people.toml` whose key `key` is.
pub fn person_of_key<'s>(sot: &'s Sot, key: &PublicKey) -> Option<&'s Person> {
    sot.people.values().find(|p| {
        p.keys
            .iter()
            .any(|line| parse_public_key(line).is_ok_and(|k| k.key_data() == key.key_data()))
    })
}

/// Check `signature` over `message` in `namespace` and name the person who
/// made it. A signature by a key nobody has in `people.toml` proves nothing.
pub fn verify<'s>(
    sot: &'s Sot,
    namespace: &str,
    message: &[u8],
    signature: &SshSig,
) -> Result<&'s Person> {
    let key = PublicKey::from(signature.public_key().clone());
    let person =
        person_of_key(sot, &key).ok_or_else(|| IdentityError::UnknownKey(fingerprint(&key)))?;
    key.verify(namespace, message, signature)
        .map_err(|e| IdentityError::BadSignature(e.to_string()))?;
    Ok(person)
}

/// Armored text of a signature (`-----BEGIN SSH SIGNATURE-----`), as stored.
pub fn armor(signature: &SshSig) -> Result<String> {
    signature
        .to_pem(russh::keys::ssh_key::LineEnding::LF)
        .map_err(|e| IdentityError::Signature(e.to_string()))
}

pub fn unarmor(text: &str) -> Result<SshSig> {
    SshSig::from_pem(text).map_err(|e| IdentityError::Signature(e.to_string()))
}

/// A fresh challenge: the process, the time and random bytes, so a
/// signature made for one process proves nothing for another.
fn challenge() -> Vec<u8> {
    let nonce: [u8; 16] = rand::random();
    format!(
        "maestro identity\npid {}\ntime {}\nnonce {}\n",
        std::process::id(),
        chrono::Utc::now().to_rfc3339(),
        nonce.iter().map(|b| format!("{b:02x}")).collect::<String>()
    )
    .into_bytes()
}

/// Prove who the operator is with `signer`: sign a fresh challenge and
/// check it against `people.toml`.
pub fn prove(sot: &Sot, signer: &Signer) -> Result<Actor> {
    let message = challenge();
    let signature = signer.sign(NAMESPACE, &message)?;
    let person = verify(sot, NAMESPACE, &message, &signature)?;
    Ok(Actor::Person {
        name: person.name.clone(),
        key: fingerprint(&signer.public_key()),
    })
}

/// The same with the operator's ssh-agent.
pub async fn prove_with_agent(sot: &Sot) -> Result<Actor> {
    let message = challenge();
    let signature = sign_with_agent(sot, NAMESPACE, &message).await?;
    let person = verify(sot, NAMESPACE, &message, &signature)?;
    Ok(Actor::Person {
        name: person.name.clone(),
        key: fingerprint(&PublicKey::from(signature.public_key().clone())),
    })
}

/// Where the operator's identity comes from, as the faces look it up.
#[derive(Debug, Clone, Default)]
pub struct Lookup {
    /// `--identity FILE` / `MAESTRO_IDENTITY`.
    pub key_file: Option<PathBuf>,
    /// The name claimed with `--actor` / `MAESTRO_ACTOR` / `$USER`.
    pub claimed: String,
    /// Whether to ask the ssh-agent when no key file is named.
    pub use_agent: bool,
}

/// Resolve the operator: the key file if one is named (an error if it does
/// not prove a person: a named key that fails must not fall back to a
/// typed name), else the agent's keys, else unverified.
pub async fn resolve(sot: &Sot, lookup: &Lookup) -> Result<Actor> {
    if let Some(path) = &lookup.key_file {
        return prove(sot, &Signer::from_file(path)?);
    }
    if lookup.use_agent
        && std::env::var_os("SSH_AUTH_SOCK").is_some()
        && !sot.people.is_empty()
        && let Ok(actor) = prove_with_agent(sot).await
    {
        return Ok(actor);
    }
    Ok(Actor::unverified(lookup.claimed.clone()))
}
