//! What a string looks like: how random it is, and whether it is one of the
//! things that sit where secrets sit without being one (digests, UUIDs,
//! placeholders, template references, paths, public keys, base64 of prose).
//!
//! The rules in [`super::rules`] and [`super::generic`] ask these questions
//! about a candidate after its regex matched; nothing here looks at context.

/// Shannon entropy of the characters of `s`, in bits per character.
pub fn entropy(s: &str) -> f64 {
    let mut counts = std::collections::HashMap::new();
    let mut total = 0u32;
    for c in s.chars() {
        total += 1;
        *counts.entry(c).or_insert(0u32) += 1;
    }
    let n = f64::from(total);
    counts
        .values()
        .map(|&k| {
            let p = f64::from(k) / n;
            -p * p.log2()
        })
        .sum()
}

/// How many of lower case, upper case, digits and other characters occur.
pub fn classes(s: &str) -> usize {
    let (mut lower, mut upper, mut digit, mut other) = (false, false, false, false);
    for c in s.chars() {
        match c {
            'a'..='z' => lower = true,
            'A'..='Z' => upper = true,
            '0'..='9' => digit = true,
            _ => other = true,
        }
    }
    [lower, upper, digit, other].iter().filter(|&&b| b).count()
}

/// Letters and digits in one case mix: what a random token is made of.
pub fn alphanumeric_classes(s: &str) -> usize {
    let lower = s.chars().any(|c| c.is_ascii_lowercase());
    let upper = s.chars().any(|c| c.is_ascii_uppercase());
    let digit = s.chars().any(|c| c.is_ascii_digit());
    [lower, upper, digit].iter().filter(|&&b| b).count()
}

pub fn is_hex(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// `8-4-4-4-12` hex digits.
pub fn is_uuid(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() == 5
        && parts
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(p, n)| p.len() == n && is_hex(p))
}

/// A run of `n` identical characters (`XXXXXX`, `000000`, `******`).
pub fn has_run(s: &str, n: usize) -> bool {
    let mut run = 0;
    let mut last = None;
    for c in s.chars() {
        if Some(c) == last {
            run += 1;
        } else {
            run = 1;
            last = Some(c);
        }
        if run >= n {
            return true;
        }
    }
    false
}

/// A token-shaped string that is a documented example or filler:
/// `AKIAIOSFODNN7EXAMPLE`, `ghp_XXXXXXXX…`, `…1234567890…`.
pub fn is_filler(s: &str) -> bool {
    let lower = s.to_ascii_lowercase();
    has_run(s, 6)
        || ["example", "123456", "abcdef", "qwerty"]
            .iter()
            .any(|w| lower.contains(w))
}

/// Words that mark a value as something to be filled in. Long ones count
/// anywhere in the value; the short ones only as the whole value (a random
/// token contains `tbd` often enough to matter).
const PLACEHOLDER_PARTS: &[&str] = &[
    "example",
    "changeme",
    "change_me",
    "change-me",
    "placeholder",
    "dummy",
    "redacted",
    "replace",
    "your_",
    "your-",
    "yourpass",
    "yourtoken",
    "yoursecret",
    "insert",
    "sample",
    "notasecret",
    "not-a-secret",
    "not_a_secret",
    "fixme",
    "xxxx",
    "****",
    "...",
];
const PLACEHOLDER_WORDS: &[&str] = &[
    "x",
    "xx",
    "xxx",
    "pass",
    "pw",
    "pwd",
    "password",
    "passwd",
    "passw0rd",
    "secret",
    "token",
    "apikey",
    "api_key",
    "key",
    "test",
    "testing",
    "fake",
    "todo",
    "tbd",
    "none",
    "null",
    "nil",
    "undefined",
    "unset",
    "empty",
    "default",
    "required",
    "optional",
    "disabled",
    "enabled",
    "true",
    "false",
    "yes",
    "no",
    "on",
    "off",
    "user",
    "username",
    "admin",
    "root",
];

/// A value someone is meant to fill in (`changeme`, `your-token-here`).
pub fn is_placeholder(s: &str) -> bool {
    let lower = s.to_ascii_lowercase();
    PLACEHOLDER_WORDS.contains(&lower.as_str())
        || PLACEHOLDER_PARTS.iter().any(|w| lower.contains(w))
        || has_run(s, 5)
}

/// A value that names where the secret comes from instead of holding it:
/// template and shell expansions, vault and secret-manager references,
/// sops and ansible-vault ciphertext.
pub fn is_reference(s: &str) -> bool {
    const INSIDE: &[&str] = &["{{", "{%", "${", "$(", "%(", "#{", "<%", "@@", "%s"];
    const STARTS: &[&str] = &[
        "ENC[",
        "$ANSIBLE_VAULT",
        "!vault",
        "vault:",
        "vault(",
        "env:",
        "file:",
        "op://",
        "secret://",
        "sops:",
        "ref+",
        "awssm:",
        "gcpsm:",
        "arn:",
        "keyring:",
        "lookup(",
        "projects/",
    ];
    if INSIDE.iter().any(|m| s.contains(m)) || STARTS.iter().any(|p| s.starts_with(p)) {
        return true;
    }
    let b = s.as_bytes();
    // `$TOKEN`, `<your token>`, `{password}` (a format string's field).
    if b.len() >= 2 {
        let (first, last) = (b[0], b[b.len() - 1]);
        if first == b'$' && (b[1].is_ascii_alphabetic() || b[1] == b'_') {
            return true;
        }
        if (first == b'<' && last == b'>') || (first == b'{' && last == b'}') {
            return true;
        }
    }
    is_env_name(s)
}

/// `OPENAI_API_KEY`: the name of an environment variable holding the secret.
fn is_env_name(s: &str) -> bool {
    s.contains('_')
        && s.bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
        && is_wordy(s)
}

/// A digest written with its algorithm (`sha256:…`), an SSH fingerprint, or
/// a crypt(3) password hash: derived from a secret, not the secret.
pub fn is_hash(s: &str) -> bool {
    const PREFIXES: &[&str] = &[
        "sha1:", "sha224:", "sha256:", "sha384:", "sha512:", "md5:", "blake2b:", "blake3:",
        "SHA256:", "MD5:", "$1$", "$5$", "$6$", "$y$", "$2a$", "$2b$", "$2y$", "$argon2",
        "$scrypt", "$pbkdf2", "{SSHA}", "{SHA}",
    ];
    PREFIXES.iter().any(|p| s.starts_with(p))
}

/// An SSH, age or nostr public key: meant to be published.
pub fn is_public_key(s: &str) -> bool {
    const PREFIXES: &[&str] = &[
        "ssh-ed25519",
        "ssh-rsa",
        "ssh-dss",
        "ecdsa-sha2-",
        "sk-ssh-",
        "sk-ecdsa-",
        "age1",
        "npub1",
    ];
    PREFIXES.iter().any(|p| s.starts_with(p))
}

/// A filesystem path (`/run/secrets/db`, `./tokens/hf`), as long as no part of
/// it is random-looking: base64 can start with `/` too.
pub fn is_path(s: &str) -> bool {
    let rest = ["/", "./", "../", "~/"]
        .iter()
        .find_map(|p| s.strip_prefix(p));
    let Some(rest) = rest else {
        return false;
    };
    !s.contains(['+', '=', '\\'])
        && rest.split('/').all(|seg| {
            let random = seg.len() >= 10 && alphanumeric_classes(seg) == 3;
            !random
        })
}

/// Made of words, short numbers and separators (`prod-eu-west`,
/// `ThisIsMyPassword`, `NODE_01`), not of random characters.
pub fn is_wordy(s: &str) -> bool {
    let chunks = chunks(s);
    if chunks.is_empty() {
        return false;
    }
    let letters: usize = chunks.iter().map(|c| c.len()).sum();
    letters >= 3 * chunks.len() && chunks.iter().all(|c| wordlike(c))
}

/// Split at separators and at lower-to-upper case changes (camelCase).
fn chunks(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    for part in s.split(|c: char| "-_./:@ +".contains(c)) {
        let b = part.as_bytes();
        let mut start = 0;
        for i in 1..b.len() {
            if b[i - 1].is_ascii_lowercase() && b[i].is_ascii_uppercase() {
                out.push(&part[start..i]);
                start = i;
            }
        }
        if start < part.len() {
            out.push(&part[start..]);
        }
    }
    out
}

fn wordlike(chunk: &str) -> bool {
    let letters_end = chunk
        .find(|c: char| !c.is_ascii_alphabetic())
        .unwrap_or(chunk.len());
    let (letters, digits) = chunk.split_at(letters_end);
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    if letters.is_empty() {
        return digits.len() <= 8;
    }
    if digits.len() > 4 {
        return false;
    }
    let rest = &letters[1..];
    let one_case = letters.bytes().all(|b| b.is_ascii_lowercase())
        || letters.bytes().all(|b| b.is_ascii_uppercase())
        || rest.bytes().all(|b| b.is_ascii_lowercase());
    let upper_acronym = letters.len() <= 4 && letters.bytes().all(|b| b.is_ascii_uppercase());
    let vowel = letters.bytes().any(|b| b"aeiouyAEIOUY".contains(&b));
    one_case && (vowel || upper_acronym || letters.len() == 1)
}

/// Base64 (standard or URL-safe alphabet, padding optional) decoded, or
/// `None` if `s` is not base64.
pub fn decode_base64(s: &str) -> Option<Vec<u8>> {
    let s = s.trim_end_matches('=');
    if s.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0;
    for b in s.bytes() {
        let v = match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(((acc >> bits) & 0xff) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// Base64 whose content is ordinary text (a sentence, a motd).
pub fn is_base64_of_text(s: &str) -> bool {
    let Some(bytes) = decode_base64(s) else {
        return false;
    };
    let Ok(text) = std::str::from_utf8(&bytes) else {
        return false;
    };
    let n = text.chars().count();
    let plain = text
        .chars()
        .filter(|c| c.is_alphabetic() || *c == ' ' || ",.!?'-\n".contains(*c))
        .count();
    n >= 8 && text.contains(' ') && plain * 10 >= n * 9
}
