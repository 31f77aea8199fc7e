//! The `generic-secret` rule: a value assigned to a key whose name says it
//! holds a secret (`password`, `DB_PASSWORD`, `clientSecret`, `api_key`,
//! `hf-token`), in TOML, `KEY=value` vars, YAML, JSON or a rendered config,
//! when the value looks like one.
//!
//! Both halves are judged. The key name is split into words, so `tokenizer`,
//! `max_tokens`, `password_file`, `token_sha256` and `secret_name` are not
//! secret-named: a word before (`hashed_`, `max_`) or after (`_file`, `_id`,
//! `_sha256`) says the value describes the secret instead of being it. The
//! value must be long and random enough, and not a reference, placeholder,
//! digest, UUID, path, URL or public key. Passwords get a lower bar than
//! tokens (8 characters and two character classes, not 16 and high entropy):
//! people choose them.

use std::ops::Range;

use regex::Captures;

use super::shape;

/// A secret-ish word somewhere in a key, an assignment operator, a value.
/// The key words are matched loosely here; [`kind_of`] decides.
pub const PATTERN: &str = concat!(
    r"(?P<key>[A-Za-z0-9_.-]*(?i-u:pass|pw|secret|token|key|cred)[A-Za-z0-9_.-]*)",
    r#"["']?[ \t]*(?:=>|:=|=|:)[ \t]*"#,
    r#"(?P<value>"(?:[^"\\\r\n]|\\.)*"|'[^'\r\n]*'|[^ \t\r\n"'`,;#{}\[\]()<>\\]+)"#,
);

/// What kind of secret a key names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Chosen by a person: shorter, less random.
    Password,
    /// Generated: tokens, API keys, client secrets, signing keys.
    Token,
}

/// The regex check of the rule: the value's span if it is a secret.
pub fn assignment(text: &str, caps: &Captures<'_>) -> Option<Range<usize>> {
    let key = caps.name("key")?;
    let value = caps.name("value")?;
    // `arn:…:secret:prod-db`, `https://host/token:x`: part of a longer
    // name, not a key being assigned to.
    if matches!(text[..key.start()].bytes().last(), Some(b':' | b'/')) {
        return None;
    }
    let kind = kind_of(key.as_str())?;
    let raw = value.as_str();
    let quoted = raw.len() >= 2 && (raw.starts_with('"') || raw.starts_with('\''));
    let span = if quoted {
        value.start() + 1..value.end() - 1
    } else {
        if is_code(raw, &text[value.end()..]) {
            return None;
        }
        value.range()
    };
    is_secret_value(kind, &text[span.clone()]).then_some(span)
}

/// An unquoted value that is a program's expression, not a literal: notes
/// and reflections quote code (`let password = cfg.password();`,
/// `token: &Self::Token,`), and config values are literals.
fn is_code(value: &str, after: &str) -> bool {
    let next = after.chars().next();
    // `NAME: Type = value`, `field: Type {`: the value was a type.
    let then = after.trim_start_matches([' ', '\t']).chars().next();
    let identifier = |s: &str| {
        s.bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
            && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    };
    let path = value.split('.').count() >= 2 && value.split('.').all(identifier);
    matches!(next, Some('(' | '<' | '[' | '!' | '?'))
        || matches!(then, Some('=' | '{'))
        || value.contains("::")
        || value.starts_with(['&', '*', ':'])
        || path
        || (identifier(value) && matches!(next, Some(',' | ';' | ')')))
}

/// Whether `value`, assigned to a key of `kind`, is a secret.
pub fn is_secret_value(kind: Kind, value: &str) -> bool {
    let min = match kind {
        Kind::Password => 8,
        Kind::Token => 16,
    };
    if value.chars().count() < min
        || value.contains(char::is_whitespace)
        || value.contains("://")
        || shape::is_reference(value)
        || shape::is_placeholder(value)
        || shape::is_hash(value)
        || shape::is_uuid(value)
        || shape::is_public_key(value)
        || shape::is_path(value)
        || shape::is_base64_of_text(value)
        || value
            .bytes()
            .all(|b| b.is_ascii_digit() || b".-_:".contains(&b))
    {
        return false;
    }
    match kind {
        Kind::Password => {
            // A passphrase of lower-case words is let through: too many
            // settings (`scram-sha-256`, `prod-readonly`) look the same.
            let plain_words = shape::is_wordy(value)
                && !value
                    .chars()
                    .any(|c| c.is_ascii_uppercase() || c.is_ascii_digit());
            shape::classes(value) >= 2 && shape::entropy(value) >= 2.5 && !plain_words
        }
        Kind::Token => random(value, min),
    }
}

/// A generated secret: long, high entropy, not made of words. Hex is held
/// to a lower entropy bar: its alphabet is 16 characters.
pub fn random(value: &str, min_len: usize) -> bool {
    if value.chars().count() < min_len
        || shape::is_reference(value)
        || shape::is_placeholder(value)
        || shape::is_wordy(value)
        || shape::is_base64_of_text(value)
        || shape::is_uuid(value)
        || shape::is_hash(value)
    {
        return false;
    }
    if shape::is_hex(value) {
        shape::entropy(value) >= 3.0
    } else {
        shape::classes(value) >= 2 && shape::entropy(value) >= 3.3
    }
}

/// Words that make a key secret-named.
const PASSWORD_WORDS: &[&str] = &[
    "password",
    "passwords",
    "passwd",
    "passphrase",
    "pass",
    "pwd",
    "pw",
];
const TOKEN_WORDS: &[&str] = &[
    "secret",
    "secrets",
    "token",
    "tokens",
    "apikey",
    "accesskey",
    "secretkey",
    "privatekey",
    "credential",
    "credentials",
    "creds",
];
/// `clientsecret`, `authtoken`, `myapikey`: one word that ends in a secret word.
const TOKEN_SUFFIXES: &[&str] = &[
    "secret",
    "token",
    "apikey",
    "accesskey",
    "secretkey",
    "privatekey",
];
/// `X_key` is secret-named for these X (not `ssh_host_key`, `public_key`).
const KEY_QUALIFIERS: &[&str] = &[
    "api",
    "access",
    "private",
    "secret",
    "signing",
    "encryption",
    "master",
    "auth",
    "session",
    "hmac",
    "license",
    "account",
    "shared",
    "app",
    "client",
    "webhook",
    "bot",
];
/// Before the secret word: the value is not the secret itself.
const BEFORE: &[&str] = &[
    "hashed",
    "hash",
    "encrypted",
    "max",
    "min",
    "public",
    "no",
    "use",
    "enable",
    "enabled",
    "disable",
    "allow",
    "require",
    "required",
    "permit",
    "empty",
    "is",
    "has",
    "num",
    "show",
    "ask",
    "prompt",
    "check",
];
/// After it: the value describes the secret (where it is, what it is).
const AFTER: &[&str] = &[
    "id",
    "ids",
    "uuid",
    "name",
    "names",
    "file",
    "files",
    "path",
    "paths",
    "dir",
    "env",
    "var",
    "vars",
    "variable",
    "ref",
    "reference",
    "url",
    "uri",
    "endpoint",
    "host",
    "type",
    "kind",
    "length",
    "len",
    "size",
    "bits",
    "ttl",
    "timeout",
    "expiry",
    "expires",
    "expiration",
    "lifetime",
    "age",
    "header",
    "field",
    "param",
    "hash",
    "hashed",
    "sha",
    "sha1",
    "sha256",
    "sha512",
    "md5",
    "digest",
    "checksum",
    "fingerprint",
    "count",
    "version",
    "issuer",
    "audience",
    "alg",
    "algorithm",
    "policy",
    "mount",
    "role",
    "scope",
    "scopes",
    "user",
    "username",
    "prefix",
    "suffix",
    "format",
    "mode",
    "enabled",
    "required",
    "rotation",
    "rotate",
    "min",
    "max",
    "command",
    "cmd",
    "helper",
    "provider",
    "source",
    "store",
    "backend",
    "location",
    "template",
    "pattern",
    "regex",
    "label",
    "description",
    "hint",
    "encryption",
    "encoding",
    "method",
    "auth",
    "authentication",
    "complexity",
    "strength",
    "prompt",
    "limit",
    "limits",
    "budget",
    "usage",
    "per",
    "rate",
    "window",
    "cache",
    "lookup",
    "arn",
    "plugin",
    "manager",
    "service",
    "class",
];

/// Whether `key` names a secret, and which kind.
pub fn kind_of(key: &str) -> Option<Kind> {
    let words = words(key);
    let mut first = None;
    let mut last = None;
    for (i, w) in words.iter().enumerate() {
        let w = w.as_str();
        let kind =
            if PASSWORD_WORDS.contains(&w) || w.ends_with("password") || w.ends_with("passwd") {
                Kind::Password
            } else if TOKEN_WORDS.contains(&w)
                || TOKEN_SUFFIXES.iter().any(|t| w.ends_with(t))
                || ((w == "key" || w == "keys")
                    && i > 0
                    && KEY_QUALIFIERS.contains(&words[i - 1].as_str()))
            {
                Kind::Token
            } else {
                continue;
            };
        first.get_or_insert(i);
        last = Some((i, kind));
    }
    let (first, (last, kind)) = (first?, last?);
    let described = words[..first].iter().any(|w| BEFORE.contains(&w.as_str()))
        || words[last + 1..]
            .iter()
            .any(|w| AFTER.contains(&w.as_str()));
    (!described).then_some(kind)
}

/// `DB_PASSWORD`, `clientSecret`, `--api-key`, `"db.password"` → lower-case words.
fn words(key: &str) -> Vec<String> {
    let mut out = Vec::new();
    for part in key.split(['_', '-', '.']) {
        let b = part.as_bytes();
        let mut start = 0;
        for i in 1..b.len() {
            if b[i - 1].is_ascii_lowercase() && b[i].is_ascii_uppercase() {
                out.push(part[start..i].to_ascii_lowercase());
                start = i;
            }
        }
        if start < part.len() {
            out.push(part[start..].to_ascii_lowercase());
        }
    }
    out
}
