//! Secret scanning: finds credentials in text maestro is about to commit to
//! the SoT, in `sot check`, and in reflections and notes, and masks them
//! wherever maestro shows or stores text.
//!
//! The rules (`rules.rs`) are written from the token formats the providers
//! document (private keys, cloud keys, GitHub/GitLab/Slack tokens, LLM API
//! keys, JWTs, passwords in URLs) plus one heuristic for high-entropy values
//! assigned to secret-named keys (`generic.rs`). Each rule is a regex with a
//! literal the regex engine's prefilter finds quickly, run over the whole
//! text (no per-line work until something matches), then a check that
//! rejects placeholders, digests, UUIDs, template references and public keys
//! (`shape.rs`). The SoT's `secrets.toml`
//! ([`Allowlist`]) lets paths, patterns and exact secrets (by fingerprint)
//! through.
//!
//! A [`Finding`] says where (path:line:col) and which rule; it never holds
//! the secret, not even in `Debug`: its excerpt is the line masked. This
//! module decides nothing about commits and never prints; the callers refuse.

mod allow;
mod generic;
mod rules;
mod shape;
#[cfg(test)]
mod tests;

use std::fmt;

use serde::Serialize;
use sha2::{Digest, Sha256};

pub use allow::{Allowlist, Problem, Result, SecretsError};

use crate::terminal_text::sanitize_str;

/// The allowlist's file in the SoT.
pub const FILE: &str = "secrets.toml";
/// What a secret is replaced with.
pub const MASK: &str = "****";
/// Excerpts longer than this (minified JSON, one-line keys) are cut.
const EXCERPT_CHARS: usize = 200;

/// The compiled rules (shared by every scanner) and an allowlist.
#[derive(Debug, Clone, Default)]
pub struct Scanner {
    allow: Allowlist,
}

/// One secret found in a file. Holds no part of the secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// The rule's id (`github-token`, `generic-secret`): stable, scripts match on it.
    pub rule: &'static str,
    pub path: String,
    /// 1-based.
    pub line: usize,
    /// 1-based, in characters: where the secret starts.
    pub column: usize,
    pub description: &'static str,
    /// The line, with every secret on it replaced by [`MASK`]. Otherwise as
    /// written: faces sanitise it for the terminal like any SoT text.
    pub excerpt: String,
    /// [`fingerprint`] of the secret: what to put in the allowlist to allow it.
    pub fingerprint: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: secret ({}): {}",
            sanitize_str(&self.path),
            self.line,
            self.column,
            self.rule,
            self.description
        )
    }
}

/// The built-in rules: `(id, description)`, in the order they are tried.
pub fn rules() -> impl Iterator<Item = (&'static str, &'static str)> {
    rules::all().iter().map(|r| (r.id, r.description))
}

/// SHA-256 of a secret's exact text, lower-case hex: how the allowlist
/// names one secret without holding it. (A digest of a short, guessable
/// password can be brute-forced; allow those by regex or fix them.)
pub fn fingerprint(secret: &str) -> String {
    let digest = Sha256::digest(secret.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

impl Scanner {
    /// The built-in rules with `allow` applied to [`Scanner::scan`].
    pub fn new(allow: Allowlist) -> Scanner {
        Scanner { allow }
    }

    pub fn allowlist(&self) -> &Allowlist {
        &self.allow
    }

    /// The secrets in `text` that the allowlist does not let through, in
    /// text order. `path` is SoT-relative: allowlist paths match it, and
    /// findings carry it.
    pub fn scan(&self, path: &str, text: &str) -> Vec<Finding> {
        if self.allow.allows_path(path) {
            return Vec::new();
        }
        let hits = rules::find(text);
        if hits.is_empty() {
            return Vec::new();
        }
        let lines = LineIndex::new(text);
        let mut excerpts: Option<(usize, String)> = None;
        let mut findings = Vec::new();
        for hit in &hits {
            let secret = &text[hit.span.clone()];
            if self.allow.allows_secret(secret) {
                continue;
            }
            let (line, start) = lines.line_of(hit.span.start);
            // Hits are in text order: one excerpt per line, however many
            // secrets the line holds.
            let excerpt = match &excerpts {
                Some((at, e)) if *at == line => e.clone(),
                _ => {
                    let e = excerpt(lines.text(text, line), start, &hits);
                    excerpts = Some((line, e.clone()));
                    e
                }
            };
            findings.push(Finding {
                rule: hit.rule.id,
                path: path.to_string(),
                line: line + 1,
                column: text[start..hit.span.start].chars().count() + 1,
                description: hit.rule.description,
                excerpt,
                fingerprint: fingerprint(secret),
            });
        }
        findings
    }

    /// `text` with every secret a rule matches replaced by [`MASK`]; in an
    /// assignment only the value (`key = "****"`), in a URL only the
    /// password. The allowlist does not apply: allowing a secret into the
    /// SoT is not a reason to show it.
    pub fn mask(&self, text: &str) -> String {
        mask_spans(text, 0, &rules::find(text))
    }

    /// A single value (a variable's value, a command-line argument) holds a
    /// secret of a known format.
    pub fn is_secret(&self, value: &str) -> bool {
        !rules::find(value).is_empty()
    }

    /// [`Scanner::is_secret`], or the variable's name says secret and its
    /// value looks like one (the `generic-secret` rule for one variable).
    pub fn is_secret_var(&self, name: &str, value: &str) -> bool {
        self.is_secret(value)
            || generic::kind_of(name).is_some_and(|kind| generic::is_secret_value(kind, value))
    }
}

/// `text` with the hits masked; `text` starts at byte `offset` of the text
/// the hits were found in (a line of it, for excerpts).
fn mask_spans(text: &str, offset: usize, hits: &[rules::Hit]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    // Hits are in text order and do not overlap.
    for h in hits {
        if h.span.end <= offset {
            continue;
        }
        let start = h.span.start.saturating_sub(offset).max(at);
        if start >= text.len() {
            break;
        }
        let end = (h.span.end - offset).min(text.len());
        out.push_str(&text[at..start]);
        out.push_str(MASK);
        at = end;
    }
    out.push_str(&text[at..]);
    out
}

/// The line starting at byte `start`, masked and cut to a readable length.
fn excerpt(line: &str, start: usize, hits: &[rules::Hit]) -> String {
    // Only the hits that reach into the line (hits are in order and
    // disjoint, so their ends are in order too).
    let from = hits.partition_point(|h| h.span.end <= start);
    let to = hits.partition_point(|h| h.span.start < start + line.len());
    let masked = mask_spans(line, start, &hits[from..to.max(from)]);
    if masked.chars().count() <= EXCERPT_CHARS {
        return masked;
    }
    let mut cut: String = masked.chars().take(EXCERPT_CHARS).collect();
    cut.push('…');
    cut
}

/// 1-based line and column (in characters) of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (
        before.bytes().filter(|&b| b == b'\n').count() + 1,
        before[line_start..].chars().count() + 1,
    )
}

/// Line starts of a text, built once per scanned text with findings.
struct LineIndex {
    starts: Vec<usize>,
}

impl LineIndex {
    fn new(text: &str) -> LineIndex {
        let mut starts = vec![0];
        starts.extend(
            text.bytes()
                .enumerate()
                .filter(|&(_, b)| b == b'\n')
                .map(|(i, _)| i + 1),
        );
        LineIndex { starts }
    }

    /// 0-based line number and byte start of the line holding `offset`.
    fn line_of(&self, offset: usize) -> (usize, usize) {
        let line = self.starts.partition_point(|&s| s <= offset) - 1;
        (line, self.starts[line])
    }

    /// The line without its line ending.
    fn text<'t>(&self, text: &'t str, line: usize) -> &'t str {
        let start = self.starts[line];
        let end = self.starts.get(line + 1).map_or(text.len(), |&s| s - 1);
        text[start..end].trim_end_matches('\r')
    }
}
