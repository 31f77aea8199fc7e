//! `Match` lines of ssh_config: parse their criteria and decide, as
//! OpenSSH's `match_cfg_line()` (readconf.c) does, whether the block they
//! open applies to the host being resolved.
//!
//! Criteria: `all`, `canonical`, `final`, `host`, `originalhost`, `user`,
//! `localuser` and `exec`, each negatable with `!`; several on one line must
//! all match. `localnetwork` and `tagged` are recognised but never match
//! (with a warning at parse time). `exec` runs `/bin/sh -c COMMAND` with
//! its standard streams on /dev/null; exit status 0 is a match. Its result
//! is remembered per expanded command for the life of the config, so a
//! fleet of a thousand nodes runs `Match exec "test -e ~/.vpn-up"` once,
//! not a thousand times.
//!
//! maestro does no hostname canonicalisation, so it behaves like OpenSSH
//! with `CanonicalizeHostname no`: `canonical` and `final` are false in the
//! first pass, and when any `Match` line has a non-negated `final`, the
//! config is read a second time (values from the first pass still win) in
//! which both are true and `Host` lines are matched against the resolved
//! HostName.

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use sha1::{Digest, Sha1};

use super::{LineResult, SyntaxError, expand_tokens};
use crate::fleet::known_hosts::wildcard_match;

/// Tokens OpenSSH expands in `Match exec` (besides `%%`).
pub(super) const EXEC_TOKENS: &str = "CLdhklnpruj";

/// One criterion of a `Match` line.
#[derive(Debug, Clone)]
pub(super) struct Criterion {
    negated: bool,
    test: Test,
}

#[derive(Debug, Clone)]
enum Test {
    All,
    Canonical,
    Final,
    /// A comma-separated pattern list, like the others below.
    Host(String),
    OriginalHost(String),
    User(String),
    LocalUser(String),
    /// The command as written; tokens are expanded when it runs.
    Exec(String),
    /// `localnetwork` and `tagged`: accepted, never match.
    Unsupported,
}

/// A parsed `Match` line.
#[derive(Debug, Clone)]
pub(super) struct MatchLine {
    criteria: Vec<Criterion>,
}

impl MatchLine {
    /// True when a non-negated `final` asks for the second pass.
    pub(super) fn wants_final_pass(&self) -> bool {
        self.criteria
            .iter()
            .any(|c| !c.negated && matches!(c.test, Test::Final))
    }

    /// The `exec` commands, for the token check at parse time.
    pub(super) fn exec_commands(&self) -> impl Iterator<Item = &String> {
        self.criteria.iter().filter_map(|c| match &c.test {
            Test::Exec(command) => Some(command),
            _ => None,
        })
    }

    /// Whether the block this line opens applies.
    pub(super) fn matches(&self, facts: &Facts<'_>, exec: &ExecResults) -> bool {
        let mut result = true;
        for criterion in &self.criteria {
            let matched = match &criterion.test {
                // `all` ends the line (the parser made sure it is last).
                Test::All => return result && !criterion.negated,
                Test::Canonical | Test::Final => facts.final_pass,
                Test::Host(patterns) => {
                    pattern_list_matches(&facts.host.to_ascii_lowercase(), patterns, true)
                }
                Test::OriginalHost(patterns) => {
                    pattern_list_matches(&facts.original_host.to_ascii_lowercase(), patterns, true)
                }
                Test::User(patterns) => pattern_list_matches(facts.remote_user, patterns, false),
                Test::LocalUser(patterns) => {
                    pattern_list_matches(facts.local_user, patterns, false)
                }
                Test::Exec(command) => {
                    // ssh runs no command once the line has failed.
                    if !result {
                        continue;
                    }
                    exec.run(&expand_tokens(command, |t| facts.exec_token(t)))
                }
                Test::Unsupported => {
                    result = false;
                    continue;
                }
            };
            if matched == criterion.negated {
                result = false;
            }
        }
        result
    }
}

/// Parse the arguments of a `Match` line. Unsupported-but-known criteria
/// are returned by name so the caller can warn about them.
pub(super) fn parse_match(args: &[String]) -> LineResult<(MatchLine, Vec<String>)> {
    let mut criteria = Vec::new();
    let mut unsupported = Vec::new();
    let mut attributes = 0;
    let mut args = args.iter();
    while let Some(word) = args.next() {
        let (negated, name) = match word.strip_prefix('!') {
            Some(name) => (true, name),
            None => (false, word.as_str()),
        };
        let lower = name.to_ascii_lowercase();
        if lower == "all" {
            if attributes > 1 || args.next().is_some_and(|a| !a.is_empty()) {
                return Err(SyntaxError::MatchAllNotAlone);
            }
            criteria.push(Criterion {
                negated,
                test: Test::All,
            });
            return Ok((MatchLine { criteria }, unsupported));
        }
        attributes += 1;
        let test = match lower.as_str() {
            "canonical" => Test::Canonical,
            "final" => Test::Final,
            _ => {
                let argument = args
                    .next()
                    .filter(|a| !a.is_empty())
                    .ok_or_else(|| SyntaxError::MissingMatchArgument(lower.clone()))?
                    .clone();
                match lower.as_str() {
                    "host" => Test::Host(argument),
                    "originalhost" => Test::OriginalHost(argument),
                    "user" => Test::User(argument),
                    "localuser" => Test::LocalUser(argument),
                    "exec" => Test::Exec(argument),
                    "localnetwork" | "tagged" => {
                        unsupported.push(lower);
                        Test::Unsupported
                    }
                    _ => return Err(SyntaxError::UnknownMatchCriterion(name.to_owned())),
                }
            }
        };
        criteria.push(Criterion { negated, test });
    }
    if attributes == 0 {
        return Err(SyntaxError::MatchWithoutCriteria);
    }
    Ok((MatchLine { criteria }, unsupported))
}

/// What a `Match` line is evaluated against: the state of resolution at
/// that line.
pub(super) struct Facts<'a> {
    /// HostName so far (with `%h` expanded), else the host as typed; in the
    /// final pass, the resolved HostName.
    pub host: String,
    pub original_host: &'a str,
    /// User so far, else the local user.
    pub remote_user: &'a str,
    pub local_user: &'a str,
    pub port: u16,
    /// The last ProxyJump hop's host so far, or "".
    pub jump_host: &'a str,
    pub home: &'a str,
    pub final_pass: bool,
}

impl Facts<'_> {
    /// The `Match exec` tokens, as readconf.c expands them.
    fn exec_token(&self, token: char) -> Option<String> {
        let this_host = local_hostname();
        Some(match token {
            'C' => connection_hash(
                &this_host,
                &self.host,
                &self.port.to_string(),
                self.remote_user,
                self.jump_host,
            ),
            'L' => this_host.split('.').next().unwrap_or_default().to_owned(),
            'd' => self.home.to_owned(),
            'h' | 'k' => self.host.clone(),
            'l' => this_host,
            'n' => self.original_host.to_owned(),
            'p' => self.port.to_string(),
            'r' => self.remote_user.to_owned(),
            'u' => self.local_user.to_owned(),
            'j' => self.jump_host.to_owned(),
            _ => return None,
        })
    }
}

/// `%C`: hex SHA-1 of local host, host, port, remote user and jump host,
/// as OpenSSH's `ssh_connection_hash()`.
fn connection_hash(this_host: &str, host: &str, port: &str, user: &str, jump: &str) -> String {
    let mut sha = Sha1::new();
    for part in [this_host, host, port, user, jump] {
        sha.update(part.as_bytes());
    }
    sha.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

fn local_hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates
    // (or truncates) within it.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return String::new();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// OpenSSH's `match_pattern_list()`: comma-separated globs, `!` negates and
/// a negated match vetoes; `lowercase` lowercases the patterns (the caller
/// lowercases the subject where ssh does).
pub(super) fn pattern_list_matches(subject: &str, list: &str, lowercase: bool) -> bool {
    let mut positive = false;
    for pattern in list.split(',') {
        let (negated, pattern) = match pattern.strip_prefix('!') {
            Some(p) => (true, p),
            None => (false, pattern),
        };
        let matched = if lowercase {
            wildcard_match(&pattern.to_ascii_lowercase(), subject)
        } else {
            wildcard_match(pattern, subject)
        };
        if matched {
            if negated {
                return false;
            }
            positive = true;
        }
    }
    positive
}

/// `Match exec` outcomes by expanded command, shared by every resolution
/// made with one config.
#[derive(Debug, Clone, Default)]
pub(super) struct ExecResults(Arc<Mutex<HashMap<String, bool>>>);

impl ExecResults {
    fn run(&self, command: &str) -> bool {
        let mut known = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(&result) = known.get(command) {
            return result;
        }
        // A command that cannot even be started does not match (ssh stops
        // with an error there; /bin/sh missing is not a case worth a type).
        let result = Command::new("/bin/sh")
            .arg("-c")
            .arg(command)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        known.insert(command.to_owned(), result);
        result
    }
}
