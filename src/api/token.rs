//! API tokens: `tokens.toml` holds `[token.NAME]` with the person the token
//! acts as and the SHA-256 of the token, never the token itself. `maestro
//! token add` makes one (printed once), `token remove` revokes it; both are
//! SoT commits, so who may read the API is reviewed like any other change.

use std::path::{Path, PathBuf};

use serde::Serialize;
use sha2::{Digest, Sha256};
use toml_edit::Value;

use crate::sot::change::{Committed, Intent, Transaction};
use crate::sot::edit::{self, Kind};
use crate::sot::{Result, SotError};

/// The SoT file of API tokens.
pub const FILE: &str = "tokens.toml";

/// What every token starts with, so a scanner (and a person) knows one.
pub const PREFIX: &str = "mst_";

/// One token of `tokens.toml`.
#[derive(Debug, Clone, Serialize)]
pub struct ApiToken {
    pub name: String,
    /// A person of people.toml: what the API answers, it answers them.
    pub person: String,
    /// Lowercase hex SHA-256 of the whole token (prefix included).
    pub sha256: String,
    pub created: Option<String>,
}

/// The SHA-256 of a token as `tokens.toml` records it.
pub fn hash(token: &str) -> String {
    crate::ledger::sha256_hex(token.as_bytes())
}

/// A new random token: the prefix and 32 bytes from the OS, base64url.
pub fn generate() -> String {
    use base64::Engine as _;
    let mut bytes = [0u8; 32];
    rand::fill(&mut bytes);
    format!(
        "{PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

/// The token of `tokens` whose hash is the hash of `presented`, compared in
/// constant time over every token (the comparison does not tell how much of
/// a guess matched).
pub fn find<'a>(
    tokens: impl IntoIterator<Item = &'a ApiToken>,
    presented: &str,
) -> Option<&'a ApiToken> {
    let want = Sha256::digest(presented.as_bytes());
    let mut found = None;
    for t in tokens {
        let Some(have) = from_hex(&t.sha256) else {
            continue;
        };
        let diff = have
            .iter()
            .zip(want.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        if diff == 0 && found.is_none() {
            found = Some(t);
        }
    }
    found
}

fn from_hex(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, chunk) in s.as_bytes().chunks(2).enumerate() {
        let text = std::str::from_utf8(chunk).ok()?;
        out[i] = u8::from_str_radix(text, 16).ok()?;
    }
    Some(out)
}

/// Whether `s` is a SHA-256 as the file must hold it.
pub(crate) fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// `maestro token add`: a new token for `person`, its hash committed. The
/// token is returned to be shown once; it is in no file and no log.
pub fn add(root: &Path, name: &str, person: &str, intent: &Intent) -> Result<(Committed, String)> {
    let what = format!("token add {name}");
    let mut tx = Transaction::begin(root, intent, &what)?;
    let sot = tx.load()?;
    if sot.api_tokens.contains_key(name) {
        return Err(SotError::Exists {
            kind: "API token",
            name: name.to_string(),
            file: Some(PathBuf::from(FILE)),
        });
    }
    if !sot.people.contains_key(person) {
        return Err(SotError::Unknown {
            kind: "person",
            name: person.to_string(),
            suggestion: crate::diag::suggest(person, sot.people.keys().map(String::as_str))
                .map(str::to_string),
        });
    }
    let token = generate();
    let created = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let fields = vec![
        ("person", Value::from(person)),
        ("sha256", Value::from(hash(&token))),
        ("created", Value::from(created.as_str())),
        ("by", Value::from(tx.actor().to_string())),
        ("reason", Value::from(intent.reason.trim())),
    ];
    let file = PathBuf::from(FILE);
    let new = edit::add(&tx.read(&file)?, Kind::Token, name, fields)?;
    Ok((tx.commit(vec![(file, new)], &what)?, token))
}

/// `maestro token remove`: the token no longer opens the API.
pub fn remove(root: &Path, name: &str, intent: &Intent) -> Result<Committed> {
    let what = format!("token remove {name}");
    let mut tx = Transaction::begin(root, intent, &what)?;
    let sot = tx.load()?;
    if !sot.api_tokens.contains_key(name) {
        return Err(SotError::Unknown {
            kind: "API token",
            name: name.to_string(),
            suggestion: crate::diag::suggest(name, sot.api_tokens.keys().map(String::as_str))
                .map(str::to_string),
        });
    }
    let file = PathBuf::from(FILE);
    let new = edit::remove(&tx.read(&file)?, Kind::Token, name)?;
    tx.commit(vec![(file, new)], &what)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(name: &str, secret: &str) -> ApiToken {
        ApiToken {
            name: name.into(),
            person: "ada".into(),
            sha256: hash(secret),
            created: None,
        }
    }

    #[test]
    fn tokens_toml_binds_each_hash_to_a_person_and_says_where_it_does_not() {
        let load = |text: &str| {
            let overrides = [(PathBuf::from(FILE), text.to_string())]
                .into_iter()
                .collect();
            crate::sot::load_with(Path::new("sot"), &overrides)
        };
        let good = format!(
            "[token.laptop]\nperson = \"ada\"\nsha256 = \"{}\"\n",
            hash("mst_x")
        );
        let sot = load(&good).unwrap();
        assert_eq!(sot.api_tokens["laptop"].person, "ada");
        let bad = "[token.laptop]\nperson = \"adda\"\nsha256 = \"mst_the_token_itself\"\n";
        let crate::sot::SotError::Invalid(d) = load(bad).unwrap_err() else {
            panic!("not diagnostics")
        };
        let found: Vec<String> = d
            .iter()
            .map(|d| format!("{}:{}:{} {}", d.file.display(), d.line, d.col, d.message))
            .collect();
        assert!(
            found
                .iter()
                .any(|m| m.starts_with("sot/tokens.toml:2:10 ") && m.contains("`adda`")),
            "{found:?}"
        );
        assert!(
            found
                .iter()
                .any(|m| m.starts_with("sot/tokens.toml:3:10 ") && m.contains("not a SHA-256")),
            "{found:?}"
        );
    }

    #[test]
    fn a_token_is_found_by_its_hash_and_nothing_else_is() {
        let a = generate();
        let b = generate();
        assert!(a.starts_with(PREFIX) && a.len() == PREFIX.len() + 43, "{a}");
        assert_ne!(a, b);
        let tokens = [token("laptop", &a), token("ci", &b)];
        assert_eq!(find(&tokens, &a).map(|t| t.name.as_str()), Some("laptop"));
        assert_eq!(find(&tokens, &b).map(|t| t.name.as_str()), Some("ci"));
        assert!(find(&tokens, "").is_none());
        assert!(find(&tokens, &a[..a.len() - 1]).is_none());
        assert!(
            find(&tokens, &tokens[0].sha256).is_none(),
            "the hash is not the token"
        );
        assert!(is_sha256_hex(&tokens[0].sha256));
        assert!(!is_sha256_hex(&tokens[0].sha256.to_uppercase()));
    }
}
