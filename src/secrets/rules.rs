//! The built-in rules: one regex per credential format, written from the
//! format each provider documents for its keys and tokens, and a check that
//! turns a regex match into a secret (or rejects it as a placeholder, a
//! public value, or a token-shaped word).
//!
//! Rules are tried in table order and a later rule's match that overlaps an
//! earlier one's is dropped, so the specific formats come first and the
//! key-name heuristics (`bearer-token`, `generic-secret`) last.

use std::ops::Range;
use std::sync::LazyLock;

use regex::{Captures, Regex};

use super::{generic, shape};

/// Turns a match into the byte range of the secret, or rejects it.
type Check = fn(&str, &Captures<'_>) -> Option<Range<usize>>;

#[derive(Debug)]
pub struct Rule {
    pub id: &'static str,
    pub description: &'static str,
    /// The secret is the group named `s`, else the whole match.
    pattern: &'static str,
    check: Check,
}

/// The table. Provider references are in the comments; the lengths are the
/// documented ones (or, where a provider documents only the prefix, the
/// range its tokens are issued in).
static RULES: &[Rule] = &[
    // RFC 7468 textual encodings (PKCS#1, PKCS#8, SEC 1), OpenSSH's
    // PROTOCOL.key, OpenPGP armor (RFC 4880 §6.2). The label alone is not
    // enough (scripts grep for it): a key body must follow.
    Rule {
        id: "private-key",
        description: "private key (PEM, OpenSSH or PGP armor)",
        pattern: r"-----BEGIN[ A-Z0-9]{0,40}PRIVATE KEY(?: BLOCK)?-----",
        check: private_key,
    },
    // AWS IAM "unique identifier prefixes": AKIA long-term, ASIA temporary
    // (STS) access key IDs, 20 characters.
    Rule {
        id: "aws-access-key-id",
        description: "AWS access key ID",
        pattern: r"(?P<s>(?:AKIA|ASIA)[A-Z0-9]{16})",
        check: token,
    },
    // The secret access key is 40 characters of base64 and has no prefix of
    // its own: only the name it is assigned to identifies it.
    Rule {
        id: "aws-secret-access-key",
        description: "AWS secret access key",
        pattern: r#"(?i:secret[_.-]?access[_.-]?key)["']?[ \t]*(?:=>|:=|=|:)[ \t]*["']?(?P<s>[A-Za-z0-9/+=]{20,})"#,
        check: aws_secret,
    },
    // Google Cloud API keys: "AIza" and 35 more characters.
    Rule {
        id: "gcp-api-key",
        description: "Google Cloud API key",
        pattern: r"(?P<s>AIza[0-9A-Za-z_-]{35})",
        check: token,
    },
    // Google OAuth client secrets issued since 2021: "GOCSPX-" and 28.
    Rule {
        id: "gcp-oauth-client-secret",
        description: "Google OAuth client secret",
        pattern: r"(?P<s>GOCSPX-[0-9A-Za-z_-]{28})",
        check: token,
    },
    // Azure Storage connection strings: AccountKey is 64 bytes of base64.
    Rule {
        id: "azure-storage-key",
        description: "Azure Storage account key",
        pattern: r"AccountKey=(?P<s>[A-Za-z0-9+/]{86}==)",
        check: token,
    },
    // GitHub's token formats (2021): ghp_ personal, gho_ OAuth, ghu_
    // user-to-server, ghs_ server-to-server, ghr_ refresh, 36 base62
    // characters; fine-grained personal tokens github_pat_<22>_<59>.
    Rule {
        id: "github-token",
        description: "GitHub token",
        pattern: r"(?P<s>gh[pousr]_[A-Za-z0-9]{36}|github_pat_[A-Za-z0-9]{20,30}_[A-Za-z0-9]{50,70})",
        check: token,
    },
    // GitLab "token overview": glpat- personal/project/group, gldt- deploy,
    // glrt- runner, glptt- trigger, glft- feed, glimt- incoming mail,
    // glcbt- CI job, glsoat- SCIM, gloas- OAuth secret, glagent- agent.
    Rule {
        id: "gitlab-token",
        description: "GitLab token",
        pattern: r"(?P<s>(?:glpat|gldt|glrt|glptt|glft|glimt|glcbt|glsoat|gloas|glagent)-[A-Za-z0-9_-]{20,}(?:\.[0-9a-z]{2}\.[0-9a-z]{7,10})?)",
        check: token,
    },
    // Slack token types: xoxb- bot, xoxp- user, xoxa-/xoxo-/xoxr- legacy and
    // refresh, xoxe- rotating refresh, xapp- app-level tokens.
    Rule {
        id: "slack-token",
        description: "Slack token",
        pattern: r"(?P<s>xox[abopr]-[0-9]{6,}-[A-Za-z0-9-]{10,}|xoxe(?:\.xox[bp])?-1-[A-Za-z0-9-]{40,}|xapp-[0-9]-[A-Z0-9]{8,}-[0-9]{6,}-[A-Za-z0-9]{32,})",
        check: token,
    },
    // Slack incoming webhooks and workflow triggers: the URL is the secret.
    Rule {
        id: "slack-webhook",
        description: "Slack webhook URL",
        pattern: r"(?P<s>https://hooks\.slack\.com/(?:services/T[A-Z0-9]{6,}/B[A-Z0-9]{6,}/[A-Za-z0-9]{20,}|workflows/T[A-Z0-9]{6,}/A[A-Z0-9]{6,}/[0-9]{6,}/[A-Za-z0-9]{20,}|triggers/T[A-Z0-9]{6,}/[0-9]{6,}/[A-Za-z0-9]{20,}))",
        check: token,
    },
    // Anthropic: sk-ant-api03- API keys, sk-ant-admin01- admin keys. Before
    // the OpenAI rule, which would otherwise see an `sk-` key.
    Rule {
        id: "anthropic-api-key",
        description: "Anthropic API key",
        pattern: r"(?P<s>sk-ant-(?:api|admin|oat|ort|sid)[0-9]{2}-[A-Za-z0-9_-]{32,})",
        check: random_token,
    },
    // OpenAI: legacy user keys sk-<48>, project/service-account/admin keys
    // sk-proj-/sk-svcacct-/sk-admin-; both carry "T3BlbkFJ" ("OpenAI" in
    // base64) in the middle.
    Rule {
        id: "openai-api-key",
        description: "OpenAI API key",
        pattern: r"(?P<s>sk-(?:proj|svcacct|admin)-[A-Za-z0-9_-]{40,}|sk-[A-Za-z0-9]{48}|sk-[A-Za-z0-9_-]{10,}T3BlbkFJ[A-Za-z0-9_-]{10,})",
        check: random_token,
    },
    // Hugging Face user access tokens: "hf_" and 34 letters (model servers
    // pull weights with them).
    Rule {
        id: "huggingface-token",
        description: "Hugging Face access token",
        pattern: r"(?P<s>hf_[A-Za-z0-9]{34,37})",
        check: random_token,
    },
    // Stripe: sk_ secret and rk_ restricted keys in live and test mode,
    // whsec_ webhook signing secrets. pk_ publishable keys are public.
    Rule {
        id: "stripe-key",
        description: "Stripe secret key",
        pattern: r"(?P<s>(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{20,}|whsec_[A-Za-z0-9+/=]{32,})",
        check: random_token,
    },
    // npm granular and automation tokens: "npm_" and 36.
    Rule {
        id: "npm-token",
        description: "npm access token",
        pattern: r"(?P<s>npm_[A-Za-z0-9]{36})",
        check: random_token,
    },
    // PyPI API tokens are macaroons: "pypi-" and base64 that starts with the
    // encoded location (pypi.org / test.pypi.org).
    Rule {
        id: "pypi-token",
        description: "PyPI API token",
        pattern: r"(?P<s>pypi-(?:AgEIcHlwaS5vcmc|AgENdGVzdC5weXBpLm9yZw)[A-Za-z0-9_-]{50,})",
        check: token,
    },
    // SendGrid API keys: "SG." <22> "." <43>.
    Rule {
        id: "sendgrid-api-key",
        description: "SendGrid API key",
        pattern: r"(?P<s>SG\.[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43})",
        check: token,
    },
    // DigitalOcean: dop_v1_ personal, doo_v1_ OAuth, dor_v1_ refresh, 64 hex.
    Rule {
        id: "digitalocean-token",
        description: "DigitalOcean token",
        pattern: r"(?P<s>do[opr]_v1_[a-f0-9]{64})",
        check: token,
    },
    // age (age-encryption.org/v1) identities: Bech32, upper case. The
    // recipients (`age1…`) are public.
    Rule {
        id: "age-secret-key",
        description: "age secret key",
        pattern: r"(?P<s>AGE-SECRET-KEY-1[QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L]{58})",
        check: token,
    },
    // HashiCorp Vault (1.10+): hvs. service, hvb. batch, hvr. recovery tokens.
    Rule {
        id: "vault-token",
        description: "HashiCorp Vault token",
        pattern: r"(?P<s>hv[sbr]\.[A-Za-z0-9_-]{24,})",
        check: random_token,
    },
    // RFC 7519/7515 compact serialisation: base64url header "." payload "."
    // signature; the header must decode to a JSON object with "alg".
    Rule {
        id: "jwt",
        description: "JSON Web Token",
        pattern: r"(?P<s>eyJ[A-Za-z0-9_-]{8,}\.ey[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*)",
        check: jwt,
    },
    // RFC 3986 §3.2.1: "user:password" in the userinfo is deprecated; a URL
    // that carries one gives the password to everyone who sees the URL.
    Rule {
        id: "password-in-url",
        description: "password in a URL",
        pattern: r#"[A-Za-z][A-Za-z0-9+.-]{1,30}://[^\s:/?#@"'<>\[\]]{0,128}:(?P<s>[^\s/?#@"'<>]{1,256})@[A-Za-z0-9\[{$]"#,
        check: url_password,
    },
    // RFC 6750: "Authorization: Bearer <token>".
    Rule {
        id: "bearer-token",
        description: "bearer token",
        pattern: r"(?i:bearer)[ \t]+(?P<s>[A-Za-z0-9._~+/-]{16,}=*)",
        check: bearer,
    },
    Rule {
        id: "generic-secret",
        description: "high-entropy value assigned to a secret-named key",
        pattern: generic::PATTERN,
        check: generic::assignment,
    },
];

pub struct Compiled {
    pub rule: &'static Rule,
    regex: Regex,
}

/// Compiled once per process: a scanner is cheap to make.
static COMPILED: LazyLock<Vec<Compiled>> = LazyLock::new(|| {
    RULES
        .iter()
        .map(|rule| Compiled {
            rule,
            // The patterns are ours, and a test compiles every one.
            regex: Regex::new(rule.pattern).expect("built-in secret rule compiles"),
        })
        .collect()
});

pub fn all() -> &'static [Rule] {
    RULES
}

/// One secret found: which rule, and where it is in the text.
#[derive(Debug, Clone)]
pub struct Hit {
    pub rule: &'static Rule,
    pub span: Range<usize>,
}

/// Every secret in `text`, in text order, overlaps resolved by rule order.
pub fn find(text: &str) -> Vec<Hit> {
    let mut hits: Vec<Hit> = Vec::new();
    for compiled in COMPILED.iter() {
        let found: Vec<Hit> = compiled
            .regex
            .captures_iter(text)
            .filter_map(|caps| (compiled.rule.check)(text, &caps))
            .map(|span| Hit {
                rule: compiled.rule,
                span,
            })
            .collect();
        if !found.is_empty() {
            hits = merge(hits, found);
        }
    }
    hits
}

/// `taken` (in order, disjoint) plus the hits of `later` (in order) that
/// overlap none of it: one linear pass, however many secrets a text holds.
fn merge(taken: Vec<Hit>, later: Vec<Hit>) -> Vec<Hit> {
    let mut out = Vec::with_capacity(taken.len() + later.len());
    let mut taken = taken.into_iter().peekable();
    for hit in later {
        while let Some(t) = taken.next_if(|t| t.span.start < hit.span.end) {
            out.push(t);
        }
        // Everything left in `taken` starts at or after `hit` ends.
        let blocked = out.last().is_some_and(|last: &Hit| {
            last.span.end > hit.span.start && last.span.start < hit.span.end
        });
        if !blocked {
            out.push(hit);
        }
    }
    out.extend(taken);
    out
}

/// The secret's group, when the characters either side of it do not
/// continue the token (a token inside a longer identifier is not one).
fn bounded(text: &str, caps: &Captures<'_>) -> Option<Range<usize>> {
    let m = caps.name("s").or_else(|| caps.get(0))?;
    let continues = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b'-';
    let bytes = text.as_bytes();
    let before = m.start().checked_sub(1).map(|i| bytes[i]);
    let after = bytes.get(m.end()).copied();
    if before.is_some_and(continues) || after.is_some_and(continues) {
        return None;
    }
    Some(m.range())
}

/// A prefixed token: the prefix identifies it; only filler is rejected.
fn token(text: &str, caps: &Captures<'_>) -> Option<Range<usize>> {
    let span = bounded(text, caps)?;
    (!shape::is_filler(&text[span.clone()])).then_some(span)
}

/// A token whose prefix is short enough to occur in names (`sk-`, `hf_`):
/// the rest must look random too.
fn random_token(text: &str, caps: &Captures<'_>) -> Option<Range<usize>> {
    let span = token(text, caps)?;
    let secret = &text[span.clone()];
    (shape::alphanumeric_classes(secret) >= 2 && shape::entropy(secret) >= 3.5).then_some(span)
}

fn aws_secret(_text: &str, caps: &Captures<'_>) -> Option<Range<usize>> {
    let m = caps.name("s")?;
    let secret = m.as_str();
    (secret.len() == 40
        && !secret.contains('=')
        && shape::alphanumeric_classes(secret) == 3
        && !shape::is_filler(secret))
    .then(|| m.range())
}

/// The armor line and the key body after it, through the END line when
/// there is one. The body may be on real lines (a TOML multi-line string)
/// or on one line with `\n` escapes.
fn private_key(text: &str, caps: &Captures<'_>) -> Option<Range<usize>> {
    let header = caps.get(0)?;
    let bytes = text.as_bytes();
    let mut i = header.end();
    let mut body = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'\\' && matches!(bytes.get(i + 1), Some(b'n' | b'r')) {
            i += 2;
        } else if b.is_ascii_alphanumeric() || b"+/=".contains(&b) {
            body += 1;
            i += 1;
        } else if b" \t\r\n:,.-()".contains(&b) && !text[i..].starts_with("-----") {
            // Line breaks and armor headers (`Proc-Type: 4,ENCRYPTED`).
            i += 1;
        } else {
            break;
        }
    }
    if body < 40 {
        return None;
    }
    let mut end = i;
    if text[i..].starts_with("-----END")
        && let Some(close) = text[i + 8..].find("-----")
    {
        end = i + 8 + close + 5;
    }
    Some(header.start()..end)
}

fn jwt(text: &str, caps: &Captures<'_>) -> Option<Range<usize>> {
    let span = token(text, caps)?;
    let header = text[span.clone()].split('.').next()?;
    let json: serde_json::Value = serde_json::from_slice(&shape::decode_base64(header)?).ok()?;
    json.get("alg")?.as_str()?;
    Some(span)
}

fn url_password(_text: &str, caps: &Captures<'_>) -> Option<Range<usize>> {
    let m = caps.name("s")?;
    let password = m.as_str();
    (!shape::is_reference(password) && !shape::is_placeholder(password)).then(|| m.range())
}

fn bearer(_text: &str, caps: &Captures<'_>) -> Option<Range<usize>> {
    let m = caps.name("s")?;
    generic::random(m.as_str(), 16).then(|| m.range())
}
