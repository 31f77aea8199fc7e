//! The allowlist, `secrets.toml` in the SoT: what the scanner lets through.
//!
//! ```toml
//! [allow]
//! paths = ["^docs/examples/"]        # regexes over the SoT-relative path
//! regexes = ["EXAMPLE", "^dummy-"]  # a secret whose text matches one is allowed
//! fingerprints = ["<sha256 hex>"]   # one exact secret (see `fingerprint`)
//! ```
//!
//! Fingerprints are SHA-256 digests of the secret, so the allowlist itself
//! never holds one. Every problem in the file is reported at once, each at
//! its line and column.

use std::fmt;
use std::ops::Range;

use regex::Regex;
use serde::Deserialize;
use toml::Spanned;

use super::line_col;
use crate::terminal_text::sanitize_str;

/// What the scanner lets through. The default allows nothing.
#[derive(Debug, Clone, Default)]
pub struct Allowlist {
    /// Files not scanned at all (matched against the SoT-relative path).
    pub paths: Vec<Regex>,
    /// A secret whose text matches one of these is allowed.
    pub regexes: Vec<Regex>,
    /// SHA-256 (lower-case hex) of secrets allowed exactly.
    pub fingerprints: Vec<String>,
}

/// A problem in the allowlist file, at its place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub path: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            sanitize_str(&self.path),
            self.line,
            self.column,
            sanitize_str(&self.message)
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretsError {
    /// Every problem found in the allowlist, one per line.
    #[error("{}", lines(.0))]
    Allowlist(Vec<Problem>),
}

fn lines(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(Problem::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

pub type Result<T> = std::result::Result<T, SecretsError>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    allow: Option<Table>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Table {
    #[serde(default)]
    paths: Vec<Spanned<String>>,
    #[serde(default)]
    regexes: Vec<Spanned<String>>,
    #[serde(default)]
    fingerprints: Vec<Spanned<String>>,
}

impl Allowlist {
    /// Read `secrets.toml`; `path` names it in problems.
    pub fn parse(path: &str, text: &str) -> Result<Allowlist> {
        let problem = |span: Range<usize>, message: String| {
            let (line, column) = line_col(text, span.start);
            Problem {
                path: path.to_string(),
                line,
                column,
                message,
            }
        };
        let file: File = toml::from_str(text).map_err(|e| {
            let message = e.message().lines().next().unwrap_or("invalid TOML");
            // toml names the allowed keys in an unknown-key message itself.
            SecretsError::Allowlist(vec![problem(e.span().unwrap_or(0..0), message.to_string())])
        })?;
        let Some(table) = file.allow else {
            return Ok(Allowlist::default());
        };
        let mut problems = Vec::new();
        let mut compile = |entries: Vec<Spanned<String>>, what: &str| -> Vec<Regex> {
            let mut out = Vec::new();
            for entry in entries {
                match Regex::new(entry.get_ref()) {
                    Ok(re) => out.push(re),
                    Err(e) => problems.push(problem(
                        entry.span(),
                        format!("`{what}` entry is not a regex: {}", regex_reason(&e)),
                    )),
                }
            }
            out
        };
        let paths = compile(table.paths, "paths");
        let regexes = compile(table.regexes, "regexes");
        let mut fingerprints = Vec::new();
        for entry in table.fingerprints {
            let hex = entry.get_ref();
            if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                fingerprints.push(hex.to_ascii_lowercase());
            } else {
                problems.push(problem(
                    entry.span(),
                    "`fingerprints` entry is not a SHA-256 digest (64 hex digits); \
                     copy it from the finding maestro reports"
                        .to_string(),
                ));
            }
        }
        if problems.is_empty() {
            Ok(Allowlist {
                paths,
                regexes,
                fingerprints,
            })
        } else {
            Err(SecretsError::Allowlist(problems))
        }
    }

    /// The file at this SoT-relative path is not scanned.
    pub fn allows_path(&self, path: &str) -> bool {
        self.paths.iter().any(|re| re.is_match(path))
    }

    /// This secret (its exact text, as found) is allowed.
    pub fn allows_secret(&self, secret: &str) -> bool {
        self.regexes.iter().any(|re| re.is_match(secret))
            || (!self.fingerprints.is_empty()
                && self.fingerprints.contains(&super::fingerprint(secret)))
    }
}

/// The regex crate's message without its multi-line pattern excerpt.
fn regex_reason(e: &regex::Error) -> String {
    let text = e.to_string();
    let last = text.lines().last().unwrap_or("invalid regex");
    last.strip_prefix("error: ").unwrap_or(last).to_string()
}
