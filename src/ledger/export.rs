//! `maestro ledger export --run ID`: the run's entries as an in-toto
//! Statement v1 in a DSSE envelope signed by the ledger key, for supply-chain
//! tooling that already reads attestations (in-toto, Sigstore's formats).
//!
//! - The statement's subjects are the run's ledger entries, each named
//!   `ledger-entry-SEQ` with its SHA-256; the predicate (type
//!   [`PREDICATE_TYPE`]) holds the entries themselves and the newest signed
//!   checkpoint that covers them, so a verifier can also check them against
//!   the ledger.
//! - The envelope is DSSE v1: `payloadType` `application/vnd.in-toto+json`,
//!   the statement base64-encoded, one ed25519 signature over the DSSE
//!   pre-authentication encoding, `keyid` the key's SHA256 fingerprint.

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{Checkpoint, Entry, LedgerError, LedgerKey, Result};

pub const PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";
pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
pub const PREDICATE_TYPE: &str = "https://maestro.invalid/ledger/run/v1";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    #[serde(rename = "payloadType")]
    pub payload_type: String,
    pub payload: String,
    pub signatures: Vec<EnvelopeSignature>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvelopeSignature {
    pub keyid: String,
    pub sig: String,
}

/// DSSE's pre-authentication encoding: what is signed.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEv1 {} {} {} ",
        payload_type.len(),
        payload_type,
        payload.len()
    )
    .into_bytes();
    out.extend_from_slice(payload);
    out
}

/// The statement for `run`'s entries, signed with `key`.
pub fn export(
    run: &str,
    entries: &[Entry],
    checkpoint: Option<&Checkpoint>,
    key: &LedgerKey,
) -> Result<Envelope> {
    let subject: Vec<serde_json::Value> = entries
        .iter()
        .map(|e| json!({"name": format!("ledger-entry-{}", e.seq), "digest": {"sha256": e.hash}}))
        .collect();
    let statement = json!({
        "_type": STATEMENT_TYPE,
        "subject": subject,
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "run": run,
            "entries": entries,
            "checkpoint": checkpoint,
        },
    });
    let payload = serde_json::to_vec(&statement).map_err(LedgerError::Encode)?;
    let sig = key.sign_raw(&pae(PAYLOAD_TYPE, &payload))?;
    let b64 = base64::engine::general_purpose::STANDARD;
    Ok(Envelope {
        payload_type: PAYLOAD_TYPE.to_string(),
        payload: b64.encode(&payload),
        signatures: vec![EnvelopeSignature {
            keyid: key.fingerprint(),
            sig: b64.encode(sig),
        }],
    })
}

/// Check an envelope's signature with `key` and return its statement.
pub fn verify_envelope(envelope: &Envelope, key: &ssh_key::PublicKey) -> Result<serde_json::Value> {
    use russh::keys::signature::Verifier;
    let b64 = base64::engine::general_purpose::STANDARD;
    let payload = b64
        .decode(&envelope.payload)
        .map_err(|e| LedgerError::Envelope(format!("payload: {e}")))?;
    let message = pae(&envelope.payload_type, &payload);
    let ok = envelope.signatures.iter().any(|s| {
        b64.decode(&s.sig).ok().is_some_and(|raw| {
            ssh_key::Signature::new(ssh_key::Algorithm::Ed25519, raw)
                .is_ok_and(|sig| Verifier::verify(key, &message, &sig).is_ok())
        })
    });
    if !ok {
        return Err(LedgerError::Envelope(
            "no signature verifies with this key".into(),
        ));
    }
    serde_json::from_slice(&payload).map_err(|e| LedgerError::Envelope(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::{Ledger, Place, Record};

    #[test]
    fn an_export_verifies_with_the_ledger_key_and_not_once_changed() {
        let dir = tempfile::tempdir().unwrap();
        let mut ledger = Ledger::open(&Place::File(dir.path().join("ledger.jsonl"))).unwrap();
        let mut entries = Vec::new();
        for action in ["deploy", "exec"] {
            entries.push(
                ledger
                    .append(Record {
                        run: Some("r1".into()),
                        action: action.into(),
                        ..Default::default()
                    })
                    .unwrap(),
            );
        }
        let (key, _) = LedgerKey::load_or_create(dir.path().join("ledger.key")).unwrap();
        let (size, head) = ledger.head();
        let checkpoint = key.sign_checkpoint(size, &head).unwrap();
        let envelope = export("r1", &entries, Some(&checkpoint), &key).unwrap();
        assert_eq!(envelope.payload_type, PAYLOAD_TYPE);
        let statement = verify_envelope(&envelope, key.public_key()).unwrap();
        assert_eq!(statement["_type"], STATEMENT_TYPE);
        assert_eq!(statement["subject"][1]["name"], "ledger-entry-2");
        assert_eq!(statement["subject"][1]["digest"]["sha256"], entries[1].hash);
        assert_eq!(
            statement["predicate"]["entries"][0]["body"]["action"],
            "deploy"
        );

        let b64 = base64::engine::general_purpose::STANDARD;
        let mut payload = b64.decode(&envelope.payload).unwrap();
        let at = payload.windows(6).position(|w| w == b"deploy").unwrap();
        payload[at] = b'D';
        let forged = Envelope {
            payload: b64.encode(&payload),
            ..envelope.clone()
        };
        assert!(verify_envelope(&forged, key.public_key()).is_err());
        let (other, _) = LedgerKey::load_or_create(dir.path().join("other.key")).unwrap();
        assert!(verify_envelope(&envelope, other.public_key()).is_err());
    }
}
