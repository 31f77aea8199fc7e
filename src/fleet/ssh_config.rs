//! OpenSSH client configuration (`ssh_config(5)`): parse `~/.ssh/config`
//! style files and resolve the options that apply to one host, the way
//! `ssh -G host` does, for the options a fleet runner needs.
//!
//! Supported syntax: case-insensitive keywords; `Keyword value` and
//! `Keyword=value`; single and double quotes and backslash escapes in values
//! (OpenSSH's `argv_split()` rules); `#` comments on their own line or
//! starting a word after a value; `Host` blocks with several patterns, `*`
//! and `?` wildcards and `!negation` (a negated match disables the whole
//! block); `Match` blocks (see [`criteria`] for the criteria and how
//! `canonical` and `final` are treated); options before the first `Host`
//! or `Match` line apply to every host; `Include` with `~`, globs, paths
//! relative to `~/.ssh` (or to the system config's directory) and OpenSSH's
//! nesting limit of 16.
//!
//! Resolution follows OpenSSH: for a single-valued option the first value
//! obtained wins; `IdentityFile` accumulates (duplicates dropped);
//! `UserKnownHostsFile` is first-wins as a whole list; a real `ProxyJump`
//! and `ProxyCommand` exclude each other, first one wins. `Host` patterns are
//! matched case-sensitively against the host as typed, like ssh does.
//!
//! Resolved options: HostName, User, Port, IdentityFile, IdentitiesOnly,
//! ProxyJump, ProxyCommand, StrictHostKeyChecking, UserKnownHostsFile,
//! ConnectTimeout, ServerAliveInterval, ServerAliveCountMax, BatchMode.
//! Every other keyword is accepted and ignored (OpenSSH has hundreds).
//!
//! Not supported:
//!
//! * `CanonicalizeHostname` and the pass it triggers;
//! * the `Match` criteria `localnetwork` and `tagged` (they never match,
//!   with a warning);
//! * `%` tokens other than `%%`, `%d`, `%h`, `%n`, `%p`, `%r`, `%u` in file
//!   names (`%C`, `%i`, `%j`, `%k`, `%l`, `%L` are left as typed, with a
//!   warning), and `${ENV}` references;
//! * `~user/` paths (only `~` and `~/` are expanded);
//! * service names for `Port` (numbers only);
//! * ssh's refusal of config files with unsafe owner or permissions.

mod criteria;

use self::criteria::{ExecResults, Facts, MatchLine};
use super::known_hosts::wildcard_match;
use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// ssh's limit on nested `Include`s (`READCONF_MAX_DEPTH`).
const MAX_INCLUDE_DEPTH: usize = 16;
/// Tokens this module expands in file names (besides `%%`).
const FILE_TOKENS: &str = "dhnpru";
/// Tokens ssh expands in HostName (besides `%%`).
const HOSTNAME_TOKENS: &str = "h";

/// Errors that make a config unusable; ssh refuses to run on these too.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read {}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error("{}:{line}: {kind}", file.display())]
    Syntax {
        file: PathBuf,
        line: usize,
        kind: SyntaxError,
    },
}

impl Error {
    /// True when the file itself does not exist, which callers usually treat
    /// as an empty config (ssh does for `~/.ssh/config`).
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::Read { source, .. } if source.kind() == io::ErrorKind::NotFound)
    }
}

/// What is wrong with a config line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SyntaxError {
    #[error("no argument after keyword \"{0}\"")]
    NoArgument(String),
    #[error("keyword {0} is missing its argument")]
    MissingArgument(String),
    #[error("keyword {0} has extra arguments at end of line")]
    ExtraArguments(String),
    #[error("keyword {0} has an empty argument")]
    EmptyArgument(String),
    #[error("unterminated quote")]
    UnterminatedQuote,
    #[error("bad port number {0:?}")]
    BadPort(String),
    #[error("invalid value {value:?} for {keyword}")]
    InvalidValue { keyword: String, value: String },
    #[error("keyword {0}: \"none\" must appear alone")]
    NoneNotAlone(String),
    #[error("bad Include pattern {pattern:?}: {reason}")]
    BadIncludePattern { pattern: String, reason: String },
    #[error("Include nested more than {MAX_INCLUDE_DEPTH} levels deep")]
    IncludeTooDeep,
    #[error("'all' cannot be combined with other Match attributes")]
    MatchAllNotAlone,
    #[error("missing Match criteria for {0}")]
    MissingMatchArgument(String),
    #[error("unsupported Match attribute {0}")]
    UnknownMatchCriterion(String),
    #[error("one or more attributes required for Match")]
    MatchWithoutCriteria,
}

/// The options that apply to one host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostConfig {
    /// HostName, with `%h` expanded to the original host and `%%` to `%`;
    /// lowercased like ssh does, except for IPv6 addresses and names with a
    /// `%` scope id.
    pub hostname: Option<String>,
    pub user: Option<String>,
    pub port: Option<u16>,
    /// All IdentityFile values in order, `~` and `%d %u %h %r %p %n %%`
    /// expanded. Empty when none is configured: ssh then tries its default
    /// key files, which is the caller's business.
    pub identity_files: Vec<PathBuf>,
    pub identities_only: Option<bool>,
    /// Raw value, e.g. "bastion", "user@host:port" or "a,b"; `none` gives None.
    pub proxy_jump: Option<String>,
    /// Raw command (tokens not expanded); `none` gives None. Set only when it
    /// won over ProxyJump.
    pub proxy_command: Option<String>,
    pub strict_host_key_checking: Option<StrictHostKeyChecking>,
    /// The user known_hosts files ssh would read, expanded like
    /// `identity_files`. Unlike the other fields this is never "unset": with
    /// no UserKnownHostsFile it holds ssh's defaults `~/.ssh/known_hosts`
    /// and `~/.ssh/known_hosts2`, and `UserKnownHostsFile none` empties it.
    pub user_known_hosts_files: Vec<PathBuf>,
    /// Seconds.
    pub connect_timeout: Option<u64>,
    /// Seconds; 0 disables keepalives.
    pub server_alive_interval: Option<u64>,
    pub server_alive_count_max: Option<u32>,
    pub batch_mode: Option<bool>,
}

/// What is fixed before the config is read, as `ssh -l USER -p PORT` fixes
/// it: these win over the config and are what `Match user`, `%r` and `%p`
/// see.
#[derive(Debug, Clone, Copy, Default)]
pub struct Preset<'a> {
    pub user: Option<&'a str>,
    pub port: Option<u16>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StrictHostKeyChecking {
    Yes,
    /// `no` or `off`.
    No,
    AcceptNew,
    Ask,
}

/// A parsed config: one or more files, each evaluated from an active start.
#[derive(Debug, Clone, Default)]
pub struct SshConfig {
    home: PathBuf,
    files: Vec<Vec<Item>>,
    warnings: Vec<String>,
    /// Some `Match` line has a non-negated `final`: read the config twice.
    final_pass: bool,
    exec_results: ExecResults,
}

/// One meaningful config line. Included files are kept as nested lists
/// because their effect on which block is active depends on the host being
/// resolved (see `walk`).
#[derive(Debug, Clone)]
enum Item {
    Host(Vec<HostPattern>),
    Match(MatchLine),
    Set(Setting),
    /// One entry per file the Include line's patterns matched, in order.
    Include(Vec<Vec<Item>>),
}

#[derive(Debug, Clone)]
struct HostPattern {
    negated: bool,
    glob: String,
}

/// A validated option value. `None` inside means the value `none`.
#[derive(Debug, Clone)]
enum Setting {
    HostName(String),
    User(String),
    Port(u16),
    IdentityFile(String),
    IdentitiesOnly(bool),
    ProxyJump(Option<String>),
    ProxyCommand(Option<String>),
    StrictHostKeyChecking(StrictHostKeyChecking),
    UserKnownHostsFile(Vec<String>),
    ConnectTimeout(Option<u64>),
    ServerAliveInterval(Option<u64>),
    ServerAliveCountMax(u32),
    BatchMode(bool),
}

impl SshConfig {
    /// Parse a user config file (like `~/.ssh/config`), following Include:
    /// relative paths are relative to `home/.ssh`, globs allowed, nesting
    /// limited to 16. `home` is also used for `~` and `%d`.
    pub fn load(path: &Path, home: &Path) -> Result<SshConfig, Error> {
        let include_dir = home.join(".ssh");
        let mut parser = Parser::new(home, include_dir);
        let items = parser.parse_file(path, 0)?;
        Ok(parser.finish(items))
    }

    /// Parse a system-wide config (like `/etc/ssh/ssh_config`), whose
    /// relative Include paths are relative to its own directory (`/etc/ssh`
    /// for the standard location).
    pub fn load_system(path: &Path, home: &Path) -> Result<SshConfig, Error> {
        let include_dir = path.parent().unwrap_or(Path::new("/")).to_owned();
        let mut parser = Parser::new(home, include_dir);
        let items = parser.parse_file(path, 0)?;
        Ok(parser.finish(items))
    }

    /// Parse user config text as if read from `origin` (used in messages).
    pub fn parse_str(text: &str, origin: &Path, home: &Path) -> Result<SshConfig, Error> {
        let mut parser = Parser::new(home, home.join(".ssh"));
        let items = parser.parse_text(text, origin, 0)?;
        Ok(parser.finish(items))
    }

    /// Add a config read after this one, as ssh reads `/etc/ssh/ssh_config`
    /// after `~/.ssh/config`: its values only fill what is still unset.
    pub fn extend(&mut self, later: SshConfig) {
        self.files.extend(later.files);
        self.warnings.extend(later.warnings);
        self.final_pass |= later.final_pass;
    }

    /// Warnings produced while parsing, as "file:line: message".
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// Resolve options for `host` (the name as typed) with OpenSSH
    /// semantics. `local_user` is the `%u` token and the default for `%r`.
    pub fn resolve(&self, host: &str, local_user: &str) -> HostConfig {
        self.resolve_with(host, local_user, Preset::default())
    }

    /// [`SshConfig::resolve`] with the user and port already fixed, as on
    /// ssh's command line.
    pub fn resolve_with(&self, host: &str, local_user: &str, preset: Preset<'_>) -> HostConfig {
        let mut acc = Accumulator {
            user: preset.user.map(str::to_owned),
            port: preset.port,
            ..Accumulator::default()
        };
        let home = self.home.to_string_lossy();
        let mut walker = Walker {
            host: host.to_owned(),
            original_host: host,
            local_user,
            home: &home,
            final_pass: false,
            exec: &self.exec_results,
            acc: &mut acc,
        };
        for items in &self.files {
            // ssh starts every top-level file with options active.
            let mut active = true;
            walker.walk(items, &mut active, false);
        }
        if self.final_pass {
            // ssh's second reading: Host lines now see the resolved name.
            walker.host = walker.acc.resolved_host(host);
            walker.final_pass = true;
            for items in &self.files {
                let mut active = true;
                walker.walk(items, &mut active, false);
            }
        }
        acc.finish(host, local_user, &self.home)
    }
}

/// One resolution's walk over the items, mirroring the `activep` handling in
/// OpenSSH's readconf.c.
struct Walker<'a> {
    /// What `Host` lines match against.
    host: String,
    original_host: &'a str,
    local_user: &'a str,
    home: &'a str,
    final_pass: bool,
    exec: &'a ExecResults,
    acc: &'a mut Accumulator,
}

impl Walker<'_> {
    fn walk(&mut self, items: &[Item], active: &mut bool, never_match: bool) {
        for item in items {
            match item {
                Item::Host(patterns) => {
                    *active = !never_match && host_matches(patterns, &self.host);
                }
                Item::Match(line) => {
                    // Evaluated even where it cannot activate anything, as
                    // ssh does (an `exec` may have side effects).
                    let matched = line.matches(&self.facts(), self.exec);
                    *active = !never_match && matched;
                }
                Item::Set(Setting::HostName(_)) if self.final_pass => {
                    // ssh fixes HostName after the first pass.
                }
                Item::Set(setting) if *active => self.acc.apply(setting),
                Item::Set(_) => {}
                Item::Include(files) => {
                    // An included file continues the includer's block, but
                    // Host lines inside an Include that sits in an inactive
                    // block may never activate anything; and whatever the
                    // file does, the includer's state is restored afterwards.
                    let saved = *active;
                    for file in files {
                        self.walk(file, active, never_match || !saved);
                        *active = saved;
                    }
                }
            }
        }
    }

    fn facts(&self) -> Facts<'_> {
        let host = if self.final_pass {
            self.host.clone()
        } else {
            self.acc.hostname_so_far(self.original_host)
        };
        let jump = self.acc.jump_host.as_deref().unwrap_or("");
        let jump_host = if jump.eq_ignore_ascii_case("none") {
            ""
        } else {
            last_hop_host(jump)
        };
        Facts {
            host,
            original_host: self.original_host,
            remote_user: self.acc.user.as_deref().unwrap_or(self.local_user),
            local_user: self.local_user,
            port: self.acc.port.unwrap_or(22),
            jump_host,
            home: self.home,
            final_pass: self.final_pass,
        }
    }
}

fn host_matches(patterns: &[HostPattern], host: &str) -> bool {
    let mut matched = false;
    for pattern in patterns {
        if wildcard_match(&pattern.glob, host) {
            if pattern.negated {
                return false;
            }
            matched = true;
        }
    }
    matched
}

/// Values collected while walking, first-wins.
#[derive(Debug, Default)]
struct Accumulator {
    hostname: Option<String>,
    user: Option<String>,
    port: Option<u16>,
    identity_files: Vec<String>,
    identities_only: Option<bool>,
    /// "none" is kept as a value here because it still blocks later values.
    jump_host: Option<String>,
    proxy_command: Option<String>,
    strict_host_key_checking: Option<StrictHostKeyChecking>,
    user_known_hosts_files: Option<Vec<String>>,
    connect_timeout: Option<u64>,
    server_alive_interval: Option<u64>,
    server_alive_count_max: Option<u32>,
    batch_mode: Option<bool>,
}

fn set_first<T: Clone>(slot: &mut Option<T>, value: &T) {
    if slot.is_none() {
        *slot = Some(value.clone());
    }
}

impl Accumulator {
    /// What `Match host` sees: HostName so far with `%h` expanded, else the
    /// host as typed.
    fn hostname_so_far(&self, host: &str) -> String {
        match &self.hostname {
            Some(h) => expand_tokens(h, |t| (t == 'h').then(|| host.to_owned())),
            None => host.to_owned(),
        }
    }

    /// The destination after the first pass, as ssh's main() computes it.
    fn resolved_host(&self, host: &str) -> String {
        normalize_hostname(&self.hostname_so_far(host))
    }

    fn apply(&mut self, setting: &Setting) {
        match setting {
            Setting::HostName(v) => set_first(&mut self.hostname, v),
            Setting::User(v) => set_first(&mut self.user, v),
            Setting::Port(v) => set_first(&mut self.port, v),
            Setting::IdentityFile(v) => {
                // ssh ignores a repeated IdentityFile rather than trying the
                // same key twice.
                if !self.identity_files.contains(v) {
                    self.identity_files.push(v.clone());
                }
            }
            Setting::IdentitiesOnly(v) => set_first(&mut self.identities_only, v),
            Setting::ProxyJump(v) => {
                // Observed with ssh 9.2: a ProxyJump is ignored once either
                // proxy option is set; a real jump also claims ProxyCommand
                // (as "none"), while `ProxyJump none` leaves it free.
                if self.jump_host.is_none() && self.proxy_command.is_none() {
                    match v {
                        Some(jump) => {
                            self.jump_host = Some(jump.clone());
                            self.proxy_command = Some("none".to_owned());
                        }
                        None => self.jump_host = Some("none".to_owned()),
                    }
                }
            }
            Setting::ProxyCommand(v) => {
                let value = v.clone().unwrap_or_else(|| "none".to_owned());
                set_first(&mut self.proxy_command, &value);
            }
            Setting::StrictHostKeyChecking(v) => set_first(&mut self.strict_host_key_checking, v),
            Setting::UserKnownHostsFile(v) => set_first(&mut self.user_known_hosts_files, v),
            // `none` means "no timeout", which is also ssh's unset state, so
            // a later value can still fill it in (as ssh does).
            Setting::ConnectTimeout(v) => {
                if let Some(v) = v {
                    set_first(&mut self.connect_timeout, v);
                }
            }
            Setting::ServerAliveInterval(v) => {
                if let Some(v) = v {
                    set_first(&mut self.server_alive_interval, v);
                }
            }
            Setting::ServerAliveCountMax(v) => set_first(&mut self.server_alive_count_max, v),
            Setting::BatchMode(v) => set_first(&mut self.batch_mode, v),
        }
    }

    fn finish(self, host: &str, local_user: &str, home: &Path) -> HostConfig {
        let hostname = self.hostname.map(|h| {
            normalize_hostname(&expand_tokens(&h, |t| (t == 'h').then(|| host.to_owned())))
        });
        // What %h means in file names: the real destination.
        let remote_host = hostname.clone().unwrap_or_else(|| normalize_hostname(host));
        let remote_user = self.user.clone().unwrap_or_else(|| local_user.to_owned());
        let port = self.port.unwrap_or(22).to_string();
        let home_str = home.to_string_lossy();
        let token = |t: char| -> Option<String> {
            match t {
                'd' => Some(home_str.to_string()),
                'h' => Some(remote_host.clone()),
                'n' => Some(host.to_owned()),
                'p' => Some(port.clone()),
                'r' => Some(remote_user.clone()),
                'u' => Some(local_user.to_owned()),
                _ => None,
            }
        };
        // ssh expands `~` first, then the % tokens.
        let expand_path = |p: &String| PathBuf::from(expand_tokens(&expand_tilde(p, home), token));

        let user_known_hosts_files = match &self.user_known_hosts_files {
            Some(files) => files.iter().map(expand_path).collect(),
            None => vec![
                home.join(".ssh/known_hosts"),
                home.join(".ssh/known_hosts2"),
            ],
        };
        let not_none = |v: Option<String>| v.filter(|v| !v.eq_ignore_ascii_case("none"));
        HostConfig {
            hostname,
            user: self.user,
            port: self.port,
            identity_files: self.identity_files.iter().map(expand_path).collect(),
            identities_only: self.identities_only,
            proxy_jump: not_none(self.jump_host),
            proxy_command: not_none(self.proxy_command),
            strict_host_key_checking: self.strict_host_key_checking,
            user_known_hosts_files,
            connect_timeout: self.connect_timeout,
            server_alive_interval: self.server_alive_interval,
            server_alive_count_max: self.server_alive_count_max,
            batch_mode: self.batch_mode,
        }
    }
}

/// The host of the last ProxyJump hop (`[user@]host[:port]`, maybe an
/// `ssh://` URI), which is what ssh keeps as its jump host.
fn last_hop_host(jump: &str) -> &str {
    let hop = jump.rsplit(',').next().unwrap_or(jump);
    let hop = hop.strip_prefix("ssh://").unwrap_or(hop);
    let hop = hop.rsplit_once('@').map_or(hop, |(_, host)| host);
    match hop.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') && port.parse::<u16>().is_ok() => host,
        _ => hop,
    }
}

/// ssh lowercases the destination, except IPv6 addresses and names with a
/// `%` (scope ids such as `fe80::1%eth0`), which it leaves as typed.
fn normalize_hostname(host: &str) -> String {
    if host.contains([':', '%']) {
        host.to_owned()
    } else {
        host.to_ascii_lowercase()
    }
}

/// `~` or `~/...` → under `home`; anything else (including `~user`) as is.
fn expand_tilde(path: &str, home: &Path) -> String {
    if path == "~" {
        return home.to_string_lossy().into_owned();
    }
    match path.strip_prefix("~/") {
        Some(rest) => home
            .join(rest.trim_start_matches('/'))
            .to_string_lossy()
            .into_owned(),
        None => path.to_owned(),
    }
}

/// Replace `%%` and the `%x` tokens `lookup` knows; unknown tokens (already
/// warned about at parse time) and a lone trailing `%` stay as typed.
fn expand_tokens(s: &str, lookup: impl Fn(char) -> Option<String>) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('%') => out.push('%'),
            Some(t) => match lookup(t) {
                Some(value) => out.push_str(&value),
                None => {
                    out.push('%');
                    out.push(t);
                }
            },
            None => out.push('%'),
        }
    }
    out
}

/// What is wrong with the `%` tokens of a ProxyCommand; ssh refuses to run
/// such a command too.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProxyCommandError {
    #[error("unknown token %{0} (ProxyCommand accepts %%, %h, %k, %n, %p and %r)")]
    UnknownToken(char),
    #[error("it ends with a lone % (write %% for a literal %)")]
    TrailingPercent,
}

/// What ProxyCommand's tokens stand for: the endpoint maestro would
/// otherwise connect to.
#[derive(Debug, Clone, Copy)]
pub struct ProxyTarget<'a> {
    /// `%h` (and `%k`, as there is no HostKeyAlias): the HostName.
    pub host: &'a str,
    /// `%p`
    pub port: u16,
    /// `%r`
    pub user: &'a str,
    /// `%n`: the name the config was looked up with.
    pub original_host: &'a str,
}

/// Expand a ProxyCommand's `%%`, `%h`, `%k`, `%n`, `%p` and `%r` as ssh
/// does. Values go in as they are, unquoted, as with ssh: the command is
/// the config author's shell code.
pub fn expand_proxy_command(
    command: &str,
    target: &ProxyTarget<'_>,
) -> Result<String, ProxyCommandError> {
    let mut out = String::with_capacity(command.len());
    let mut chars = command.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('%') => out.push('%'),
            Some('h' | 'k') => out.push_str(target.host),
            Some('n') => out.push_str(target.original_host),
            Some('p') => out.push_str(&target.port.to_string()),
            Some('r') => out.push_str(target.user),
            Some(t) => return Err(ProxyCommandError::UnknownToken(t)),
            None => return Err(ProxyCommandError::TrailingPercent),
        }
    }
    Ok(out)
}

/// The `%x` tokens in `s` that are not in `known` (nor `%%`).
fn unknown_tokens(s: &str, known: &str) -> Vec<char> {
    let mut unknown = Vec::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '%' {
            match chars.next() {
                Some('%') => {}
                Some(t) if known.contains(t) => {}
                Some(t) => unknown.push(t),
                None => {}
            }
        }
    }
    unknown
}

struct Parser<'a> {
    home: &'a Path,
    /// Where relative Include paths are anchored.
    include_dir: PathBuf,
    warnings: Vec<String>,
    final_pass: bool,
}

/// A syntax error about to be tagged with its file and line.
type LineResult<T> = Result<T, SyntaxError>;

impl<'a> Parser<'a> {
    fn new(home: &'a Path, include_dir: PathBuf) -> Self {
        Parser {
            home,
            include_dir,
            warnings: Vec::new(),
            final_pass: false,
        }
    }

    fn finish(self, items: Vec<Item>) -> SshConfig {
        SshConfig {
            home: self.home.to_owned(),
            files: vec![items],
            warnings: self.warnings,
            final_pass: self.final_pass,
            exec_results: ExecResults::default(),
        }
    }

    fn warn(&mut self, file: &Path, line: usize, message: impl fmt::Display) {
        self.warnings
            .push(format!("{}:{line}: {message}", file.display()));
    }

    fn parse_file(&mut self, path: &Path, depth: usize) -> Result<Vec<Item>, Error> {
        let bytes = fs::read(path).map_err(|source| Error::Read {
            path: path.to_owned(),
            source,
        })?;
        // Config files are text; a stray non-UTF-8 byte should not make the
        // whole file unusable.
        self.parse_text(&String::from_utf8_lossy(&bytes), path, depth)
    }

    fn parse_text(&mut self, text: &str, origin: &Path, depth: usize) -> Result<Vec<Item>, Error> {
        let mut items = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let line_no = index + 1;
            let syntax = |kind| Error::Syntax {
                file: origin.to_owned(),
                line: line_no,
                kind,
            };
            let Some((keyword, rest)) = split_keyword(line) else {
                continue;
            };
            if rest.is_empty() {
                return Err(syntax(SyntaxError::NoArgument(
                    keyword.to_ascii_lowercase(),
                )));
            }
            let keyword = keyword.to_ascii_lowercase();
            let args = split_args(rest).map_err(syntax)?;
            let item = match keyword.as_str() {
                "host" => Some(Item::Host(parse_host_patterns(&args).map_err(syntax)?)),
                "match" => {
                    let (line, unsupported) = criteria::parse_match(&args).map_err(syntax)?;
                    for name in unsupported {
                        self.warn(
                            origin,
                            line_no,
                            format_args!(
                                "Match {name} is not supported; this Match line never matches"
                            ),
                        );
                    }
                    for command in line.exec_commands() {
                        self.warn_tokens(command, criteria::EXEC_TOKENS, origin, line_no);
                    }
                    self.final_pass |= line.wants_final_pass();
                    Some(Item::Match(line))
                }
                "include" => Some(self.parse_include(&args, origin, line_no, depth)?),
                _ => {
                    let setting = parse_setting(&keyword, rest, args).map_err(syntax)?;
                    if let Some(setting) = &setting {
                        self.check_tokens(setting, origin, line_no);
                    }
                    setting.map(Item::Set)
                }
            };
            items.extend(item);
        }
        Ok(items)
    }

    fn parse_include(
        &mut self,
        args: &[String],
        origin: &Path,
        line: usize,
        depth: usize,
    ) -> Result<Item, Error> {
        let syntax = |kind| Error::Syntax {
            file: origin.to_owned(),
            line,
            kind,
        };
        if args.is_empty() {
            return Err(syntax(SyntaxError::MissingArgument("include".into())));
        }
        let mut files = Vec::new();
        for arg in args {
            if arg.is_empty() {
                return Err(syntax(SyntaxError::EmptyArgument("include".into())));
            }
            let pattern = self.include_pattern(arg);
            // glob(3) semantics: `*` does not match a leading dot, so editor
            // backups like `.web.conf.swp` stay out, as with ssh.
            let options = glob::MatchOptions {
                require_literal_leading_dot: true,
                ..glob::MatchOptions::new()
            };
            let paths = glob::glob_with(&pattern, options).map_err(|e| {
                syntax(SyntaxError::BadIncludePattern {
                    pattern: arg.clone(),
                    reason: e.msg.to_owned(),
                })
            })?;
            // No match is not an error (ssh only logs it at debug level);
            // entries that cannot be examined are skipped like glob(3) does.
            for path in paths.flatten() {
                if path.is_dir() {
                    continue;
                }
                // Checked only when a file is really included, as ssh does;
                // this is also what stops an Include loop.
                if depth + 1 > MAX_INCLUDE_DEPTH {
                    return Err(syntax(SyntaxError::IncludeTooDeep));
                }
                files.push(self.parse_file(&path, depth + 1)?);
            }
        }
        Ok(Item::Include(files))
    }

    /// The glob pattern for one Include argument: `~/` means the home
    /// directory and a relative path is anchored in `include_dir`. Those
    /// directories are escaped so a `[` or `*` in them is taken literally.
    fn include_pattern(&self, arg: &str) -> String {
        let escaped = |dir: &Path| glob::Pattern::escape(&dir.to_string_lossy());
        if arg == "~" {
            escaped(self.home)
        } else if let Some(rest) = arg.strip_prefix("~/") {
            format!("{}/{rest}", escaped(self.home))
        } else if Path::new(arg).is_absolute() {
            arg.to_owned()
        } else {
            format!("{}/{arg}", escaped(&self.include_dir))
        }
    }

    /// Warn about `%` tokens and `~user` paths that resolve() will leave as
    /// typed, so a surprising literal path can be traced to its line.
    fn check_tokens(&mut self, setting: &Setting, origin: &Path, line: usize) {
        let (values, known): (Vec<&String>, &str) = match setting {
            Setting::HostName(v) => (vec![v], HOSTNAME_TOKENS),
            Setting::IdentityFile(v) => (vec![v], FILE_TOKENS),
            Setting::UserKnownHostsFile(v) => (v.iter().collect(), FILE_TOKENS),
            _ => return,
        };
        for value in values {
            self.warn_tokens(value, known, origin, line);
            if value.starts_with('~') && value != "~" && !value.starts_with("~/") {
                self.warn(
                    origin,
                    line,
                    format_args!("~user in {value:?} is not supported and is left as is"),
                );
            }
        }
    }
}

impl Parser<'_> {
    fn warn_tokens(&mut self, value: &str, known: &str, origin: &Path, line: usize) {
        for token in unknown_tokens(value, known) {
            self.warn(
                origin,
                line,
                format_args!("token %{token} in {value:?} is not supported and is left as is"),
            );
        }
    }
}

/// Split a line into its keyword and the text of its arguments, like
/// OpenSSH's strdelim(): the keyword ends at whitespace or `=`, and one `=`
/// with optional whitespace around it may separate it from the value.
/// `None` for blank and comment lines.
fn split_keyword(line: &str) -> Option<(&str, &str)> {
    const SPACE: [char; 2] = [' ', '\t'];
    let line = line.trim_matches(|c: char| matches!(c, ' ' | '\t' | '\r' | '\n' | '\x0c'));
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let end = line.find([' ', '\t', '=']).unwrap_or(line.len());
    let (keyword, rest) = line.split_at(end);
    let rest = rest.trim_start_matches(SPACE);
    let rest = match rest.strip_prefix('=') {
        Some(after) => after.trim_start_matches(SPACE),
        None => rest,
    };
    Some((keyword, rest))
}

/// Split arguments like OpenSSH's argv_split(): whitespace separates words,
/// single or double quotes group (and may sit inside a word), backslash
/// escapes quotes, backslash and (outside quotes) space, and a `#` starting
/// a word ends the line.
fn split_args(s: &str) -> LineResult<Vec<String>> {
    let mut args = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.next_if(|&c| c == ' ' || c == '\t').is_some() {}
        match chars.peek() {
            None | Some('#') => break,
            Some(_) => {}
        }
        let mut arg = String::new();
        let mut quote: Option<char> = None;
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.peek().copied() {
                    Some(next @ ('\'' | '"' | '\\')) => {
                        arg.push(next);
                        chars.next();
                    }
                    Some(' ') if quote.is_none() => {
                        arg.push(' ');
                        chars.next();
                    }
                    // Unrecognised escapes are kept, backslash included.
                    _ => arg.push('\\'),
                },
                ' ' | '\t' if quote.is_none() => break,
                '"' | '\'' if quote.is_none() => quote = Some(c),
                c if Some(c) == quote => quote = None,
                c => arg.push(c),
            }
        }
        if quote.is_some() {
            return Err(SyntaxError::UnterminatedQuote);
        }
        args.push(arg);
    }
    Ok(args)
}

fn parse_host_patterns(args: &[String]) -> LineResult<Vec<HostPattern>> {
    args.iter()
        .map(|arg| {
            if arg.is_empty() {
                return Err(SyntaxError::EmptyArgument("host".into()));
            }
            Ok(match arg.strip_prefix('!') {
                Some(glob) => HostPattern {
                    negated: true,
                    glob: glob.to_owned(),
                },
                None => HostPattern {
                    negated: false,
                    glob: arg.clone(),
                },
            })
        })
        .collect()
}

/// The single argument of a single-valued option.
fn single(keyword: &str, args: Vec<String>) -> LineResult<String> {
    let mut args = args.into_iter();
    let value = args
        .next()
        .ok_or_else(|| SyntaxError::MissingArgument(keyword.to_owned()))?;
    if args.next().is_some() {
        return Err(SyntaxError::ExtraArguments(keyword.to_owned()));
    }
    if value.is_empty() {
        return Err(SyntaxError::EmptyArgument(keyword.to_owned()));
    }
    Ok(value)
}

fn invalid(keyword: &str, value: &str) -> SyntaxError {
    SyntaxError::InvalidValue {
        keyword: keyword.to_owned(),
        value: value.to_owned(),
    }
}

/// Turn an option line into a setting; `Ok(None)` for keywords this module
/// does not resolve. `raw` is the unsplit argument text, which ProxyCommand
/// takes verbatim (comments included), as ssh does.
fn parse_setting(keyword: &str, raw: &str, args: Vec<String>) -> LineResult<Option<Setting>> {
    let setting = match keyword {
        "hostname" => Setting::HostName(single(keyword, args)?),
        "user" => Setting::User(single(keyword, args)?),
        "port" => {
            let value = single(keyword, args)?;
            match value.parse::<u16>() {
                Ok(port) if port != 0 => Setting::Port(port),
                _ => return Err(SyntaxError::BadPort(value)),
            }
        }
        "identityfile" => Setting::IdentityFile(single(keyword, args)?),
        "identitiesonly" => Setting::IdentitiesOnly(parse_flag(keyword, &single(keyword, args)?)?),
        "batchmode" => Setting::BatchMode(parse_flag(keyword, &single(keyword, args)?)?),
        "proxyjump" => {
            // ssh 9.2 reads ProxyJump from the raw line rather than the split
            // words: quotes stay, `#` anywhere starts a comment, and only the
            // first word counts. Copy that so we connect where ssh would.
            let value = raw
                .trim_start_matches([' ', '\t', '='])
                .split('#')
                .next()
                .and_then(|v| v.split_ascii_whitespace().next())
                .ok_or_else(|| SyntaxError::MissingArgument(keyword.to_owned()))?
                .to_owned();
            if value.eq_ignore_ascii_case("none") {
                Setting::ProxyJump(None)
            } else if value.split(',').any(str::is_empty) {
                return Err(invalid(keyword, &value));
            } else {
                Setting::ProxyJump(Some(value))
            }
        }
        "proxycommand" => {
            if args.is_empty() {
                return Err(SyntaxError::MissingArgument(keyword.to_owned()));
            }
            if args.len() == 1 && args[0].eq_ignore_ascii_case("none") {
                Setting::ProxyCommand(None)
            } else {
                Setting::ProxyCommand(Some(raw.to_owned()))
            }
        }
        "stricthostkeychecking" => {
            let value = single(keyword, args)?;
            Setting::StrictHostKeyChecking(match value.to_ascii_lowercase().as_str() {
                "yes" | "true" => StrictHostKeyChecking::Yes,
                "no" | "false" | "off" => StrictHostKeyChecking::No,
                "accept-new" => StrictHostKeyChecking::AcceptNew,
                "ask" => StrictHostKeyChecking::Ask,
                _ => return Err(invalid(keyword, &value)),
            })
        }
        "userknownhostsfile" => {
            if args.is_empty() {
                return Err(SyntaxError::MissingArgument(keyword.to_owned()));
            }
            if args.iter().any(String::is_empty) {
                return Err(SyntaxError::EmptyArgument(keyword.to_owned()));
            }
            if args.iter().any(|a| a.eq_ignore_ascii_case("none")) {
                if args.len() > 1 {
                    return Err(SyntaxError::NoneNotAlone(keyword.to_owned()));
                }
                Setting::UserKnownHostsFile(Vec::new())
            } else {
                Setting::UserKnownHostsFile(args)
            }
        }
        "connecttimeout" => Setting::ConnectTimeout(parse_time(keyword, &single(keyword, args)?)?),
        "serveraliveinterval" => {
            Setting::ServerAliveInterval(parse_time(keyword, &single(keyword, args)?)?)
        }
        "serveralivecountmax" => {
            let value = single(keyword, args)?;
            Setting::ServerAliveCountMax(value.parse().map_err(|_| invalid(keyword, &value))?)
        }
        _ => return Ok(None),
    };
    Ok(Some(setting))
}

fn parse_flag(keyword: &str, value: &str) -> LineResult<bool> {
    match value.to_ascii_lowercase().as_str() {
        "yes" | "true" => Ok(true),
        "no" | "false" => Ok(false),
        _ => Err(invalid(keyword, value)),
    }
}

/// A time value: `none`, or seconds written like ssh's convtime(): numbers
/// each optionally followed by a unit s, m, h, d or w ("90", "1m30s").
fn parse_time(keyword: &str, value: &str) -> LineResult<Option<u64>> {
    if value.eq_ignore_ascii_case("none") {
        return Ok(None);
    }
    let bad = || invalid(keyword, value);
    if value.is_empty() {
        return Err(bad());
    }
    let mut total: u64 = 0;
    let mut rest = value;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(bad());
        }
        let number: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let mut chars = rest.chars();
        let unit = match chars.next().map(|c| c.to_ascii_lowercase()) {
            None | Some('s') => 1,
            Some('m') => 60,
            Some('h') => 60 * 60,
            Some('d') => 24 * 60 * 60,
            Some('w') => 7 * 24 * 60 * 60,
            Some(_) => return Err(bad()),
        };
        rest = chars.as_str();
        total = number
            .checked_mul(unit)
            .and_then(|secs| total.checked_add(secs))
            .ok_or_else(bad)?;
    }
    Ok(Some(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOME: &str = "/home/alice";

    fn parse(text: &str) -> SshConfig {
        SshConfig::parse_str(text, Path::new("config"), Path::new(HOME)).expect("config parses")
    }

    fn parse_err(text: &str) -> Error {
        SshConfig::parse_str(text, Path::new("config"), Path::new(HOME))
            .expect_err("config should be rejected")
    }

    fn syntax_kind(text: &str) -> (usize, SyntaxError) {
        match parse_err(text) {
            Error::Syntax { line, kind, .. } => (line, kind),
            other => panic!("unexpected error {other}"),
        }
    }

    fn paths(list: &[&str]) -> Vec<PathBuf> {
        list.iter().map(PathBuf::from).collect()
    }

    const REALISTIC: &str = r#"
# Global options apply to every host.
ServerAliveInterval 30
IdentitiesOnly yes

Host bastion bastion.example.com
    HostName bastion.example.com
    User jump
    Port 2222
    IdentityFile ~/.ssh/bastion_ed25519

Host web? web??.example.com
    User deploy
    ProxyJump bastion
    StrictHostKeyChecking accept-new

Host db-*
    HostName %h.internal.example.com
    User postgres
    ConnectTimeout 5

Host *
    User fallback
    Port 22
    IdentityFile ~/.ssh/id_ed25519
    StrictHostKeyChecking yes
    ConnectTimeout 10
    BatchMode yes
"#;

    #[test]
    fn realistic_config_with_global_options_and_defaults() {
        let config = parse(REALISTIC);
        assert!(config.warnings().is_empty(), "{:?}", config.warnings());

        let bastion = config.resolve("bastion", "alice");
        assert_eq!(
            bastion,
            HostConfig {
                hostname: Some("bastion.example.com".into()),
                user: Some("jump".into()),
                port: Some(2222),
                identity_files: paths(&[
                    "/home/alice/.ssh/bastion_ed25519",
                    "/home/alice/.ssh/id_ed25519"
                ]),
                identities_only: Some(true),
                proxy_jump: None,
                proxy_command: None,
                strict_host_key_checking: Some(StrictHostKeyChecking::Yes),
                user_known_hosts_files: paths(&[
                    "/home/alice/.ssh/known_hosts",
                    "/home/alice/.ssh/known_hosts2"
                ]),
                connect_timeout: Some(10),
                server_alive_interval: Some(30),
                server_alive_count_max: None,
                batch_mode: Some(true),
            }
        );

        let web = config.resolve("web1", "alice");
        assert_eq!(web.hostname, None);
        assert_eq!(web.user.as_deref(), Some("deploy"));
        assert_eq!(web.port, Some(22));
        assert_eq!(web.proxy_jump.as_deref(), Some("bastion"));
        assert_eq!(
            web.strict_host_key_checking,
            Some(StrictHostKeyChecking::AcceptNew)
        );
        assert_eq!(
            config.resolve("web12.example.com", "alice").user.as_deref(),
            Some("deploy")
        );
        // `?` is exactly one character.
        assert_eq!(
            config.resolve("web12", "alice").user.as_deref(),
            Some("fallback")
        );

        let db = config.resolve("db-main", "alice");
        assert_eq!(db.hostname.as_deref(), Some("db-main.internal.example.com"));
        assert_eq!(db.user.as_deref(), Some("postgres"));
        assert_eq!(db.connect_timeout, Some(5));

        let other = config.resolve("random.host", "alice");
        assert_eq!(other.user.as_deref(), Some("fallback"));
        assert_eq!(
            other.identity_files,
            paths(&["/home/alice/.ssh/id_ed25519"])
        );
        assert_eq!(other.server_alive_interval, Some(30));
    }

    #[test]
    fn first_obtained_value_wins() {
        let config = parse(
            "Host a\n  User first\n  User second\n  Port 1000\nHost a b\n  User third\n  Port 2000\n  HostName b.example\n",
        );
        let a = config.resolve("a", "me");
        assert_eq!(a.user.as_deref(), Some("first"));
        assert_eq!(a.port, Some(1000));
        assert_eq!(a.hostname.as_deref(), Some("b.example"));
        assert_eq!(config.resolve("b", "me").user.as_deref(), Some("third"));
    }

    #[test]
    fn keyword_equals_forms_and_case_insensitive_keywords() {
        for line in [
            "Port=2200",
            "Port = 2200",
            "port =2200",
            "PORT= 2200",
            "\tPort\t2200  ",
        ] {
            let config = parse(line);
            assert_eq!(config.resolve("x", "me").port, Some(2200), "{line:?}");
        }
        let config = parse("HOSTNAME=h.example\nuSeR=bob\n");
        let x = config.resolve("x", "me");
        assert_eq!(x.hostname.as_deref(), Some("h.example"));
        assert_eq!(x.user.as_deref(), Some("bob"));
    }

    #[test]
    fn quoted_values_and_escapes() {
        let config = parse(
            "Host a\n  IdentityFile \"~/My Keys/id ed25519\"\n  User 'x y'z\nHost b\n  User x\\ y\nHost \"c\" 'd'\n  User cd\n",
        );
        let a = config.resolve("a", "me");
        assert_eq!(a.identity_files, paths(&["/home/alice/My Keys/id ed25519"]));
        assert_eq!(a.user.as_deref(), Some("x yz"));
        assert_eq!(config.resolve("b", "me").user.as_deref(), Some("x y"));
        assert_eq!(config.resolve("d", "me").user.as_deref(), Some("cd"));
    }

    #[test]
    fn comments_and_blank_lines() {
        let config = parse(
            "# top comment\n\n   # indented\nHost a # trailing comment\n  User bob # who\n  #User carol\n\r\n",
        );
        assert_eq!(config.resolve("a", "me").user.as_deref(), Some("bob"));
        // The comment is not a pattern.
        assert_eq!(config.resolve("#", "me").user, None);
    }

    #[test]
    fn negated_host_patterns_disable_the_block() {
        let config = parse(
            "Host *.example.com !bastion.example.com\n  ProxyJump bastion.example.com\nHost *\n  User u\n",
        );
        assert_eq!(
            config
                .resolve("web.example.com", "me")
                .proxy_jump
                .as_deref(),
            Some("bastion.example.com")
        );
        let bastion = config.resolve("bastion.example.com", "me");
        assert_eq!(bastion.proxy_jump, None);
        assert_eq!(bastion.user.as_deref(), Some("u"));
        // Only negations: matches nothing.
        let config = parse("Host !a\n  User u\n");
        assert_eq!(config.resolve("b", "me").user, None);
    }

    #[test]
    fn host_patterns_are_case_sensitive_like_ssh() {
        let config = parse("Host Web\n  Port 2201\n");
        assert_eq!(config.resolve("Web", "me").port, Some(2201));
        assert_eq!(config.resolve("web", "me").port, None);
    }

    #[test]
    fn identity_files_accumulate_with_expansion() {
        let config = parse(
            "IdentityFile ~/.ssh/global\nHost app\n  HostName App.Example.COM\n  User deploy\n  Port 2022\n  IdentityFile ~/.ssh/id_%h_%r\n  IdentityFile %d/keys/%u@%n:%p%%\n  IdentityFile ~/.ssh/global\nHost *\n  IdentityFile /etc/ssh/shared_key\n  IdentityFile ~\n",
        );
        let app = config.resolve("app", "alice");
        assert_eq!(
            app.identity_files,
            paths(&[
                "/home/alice/.ssh/global",
                "/home/alice/.ssh/id_app.example.com_deploy",
                "/home/alice/keys/alice@app:2022%",
                "/etc/ssh/shared_key",
                "/home/alice",
            ])
        );
        // %r falls back to the local user, %h to the name as typed.
        let other = parse("IdentityFile ~/.ssh/%r-%h\n").resolve("Other", "bob");
        assert_eq!(other.identity_files, paths(&["/home/alice/.ssh/bob-other"]));
    }

    #[test]
    fn unsupported_tokens_are_kept_and_warned_about() {
        let config = parse("Host a\n  IdentityFile ~/.ssh/%C\n  UserKnownHostsFile ~bob/kh\n");
        assert_eq!(
            config.resolve("a", "me").identity_files,
            paths(&["/home/alice/.ssh/%C"])
        );
        assert_eq!(
            config.resolve("a", "me").user_known_hosts_files,
            paths(&["~bob/kh"])
        );
        assert_eq!(
            config.warnings(),
            [
                "config:2: token %C in \"~/.ssh/%C\" is not supported and is left as is",
                "config:3: ~user in \"~bob/kh\" is not supported and is left as is",
            ]
        );
    }

    #[test]
    fn hostname_tokens_and_lowercasing() {
        let config = parse(
            "Host short\n  HostName %h.Corp.Example\nHost pct\n  HostName 100%%\nHost v6\n  HostName FE80::1\n",
        );
        assert_eq!(
            config.resolve("short", "me").hostname.as_deref(),
            Some("short.corp.example")
        );
        // Names with % or : keep their case, as in ssh.
        assert_eq!(
            config.resolve("pct", "me").hostname.as_deref(),
            Some("100%")
        );
        assert_eq!(
            config.resolve("v6", "me").hostname.as_deref(),
            Some("FE80::1")
        );
    }

    #[test]
    fn proxy_jump_values() {
        let config = parse(
            "Host a\n  ProxyJump bastion\nHost b\n  ProxyJump user@jump.example.com:2222\nHost c\n  ProxyJump j1,admin@j2:22\nHost d\n  ProxyJump none\nHost *\n  ProxyJump default-jump\n",
        );
        let jump = |h| config.resolve(h, "me").proxy_jump;
        assert_eq!(jump("a").as_deref(), Some("bastion"));
        assert_eq!(jump("b").as_deref(), Some("user@jump.example.com:2222"));
        assert_eq!(jump("c").as_deref(), Some("j1,admin@j2:22"));
        // `none` wins first and blocks the default.
        assert_eq!(jump("d"), None);
        assert_eq!(jump("e").as_deref(), Some("default-jump"));
        assert_eq!(
            syntax_kind("ProxyJump a,,b\n").1,
            invalid("proxyjump", "a,,b")
        );
        // ssh's raw reading of ProxyJump (checked against ssh -G 9.2).
        let raw = |line: &str| {
            parse(&format!("ProxyJump {line}\n"))
                .resolve("x", "me")
                .proxy_jump
        };
        assert_eq!(raw("\"quoted\" # c").as_deref(), Some("\"quoted\""));
        assert_eq!(raw("a#b").as_deref(), Some("a"));
        assert_eq!(raw("a b").as_deref(), Some("a"));
        assert_eq!(raw("= u@h:22").as_deref(), Some("u@h:22"));
        // Deliberate difference: ssh 9.2 takes `none # comment` as a jump
        // through a host called "none" (its none check sees the comment).
        assert_eq!(raw("none # no jump"), None);
    }

    #[test]
    fn proxy_jump_and_proxy_command_exclude_each_other() {
        let config = parse(
            "Host cmd\n  ProxyCommand nc %h %p # raw\nHost cmdnone\n  ProxyCommand none # off\nHost jumpnone\n  ProxyJump none\nHost *\n  ProxyJump j\n  ProxyCommand ssh -W %h:%p j\n",
        );
        let cmd = config.resolve("cmd", "me");
        assert_eq!(cmd.proxy_command.as_deref(), Some("nc %h %p # raw"));
        assert_eq!(cmd.proxy_jump, None);
        let cmdnone = config.resolve("cmdnone", "me");
        assert_eq!((cmdnone.proxy_jump, cmdnone.proxy_command), (None, None));
        // `ProxyJump none` leaves ProxyCommand free (checked against ssh 9.2).
        let jumpnone = config.resolve("jumpnone", "me");
        assert_eq!(jumpnone.proxy_jump, None);
        assert_eq!(jumpnone.proxy_command.as_deref(), Some("ssh -W %h:%p j"));
        let other = config.resolve("other", "me");
        assert_eq!(other.proxy_jump.as_deref(), Some("j"));
        assert_eq!(other.proxy_command, None);
    }

    #[test]
    fn strict_host_key_checking_values() {
        let cases = [
            ("yes", StrictHostKeyChecking::Yes),
            ("true", StrictHostKeyChecking::Yes),
            ("no", StrictHostKeyChecking::No),
            ("off", StrictHostKeyChecking::No),
            ("false", StrictHostKeyChecking::No),
            ("accept-new", StrictHostKeyChecking::AcceptNew),
            ("Ask", StrictHostKeyChecking::Ask),
        ];
        for (value, expected) in cases {
            let config = parse(&format!("StrictHostKeyChecking {value}\n"));
            assert_eq!(
                config.resolve("h", "me").strict_host_key_checking,
                Some(expected)
            );
        }
        assert!(matches!(
            syntax_kind("StrictHostKeyChecking maybe\n").1,
            SyntaxError::InvalidValue { .. }
        ));
    }

    #[test]
    fn flags_and_times() {
        let config = parse(
            "Host a\n  BatchMode no\n  IdentitiesOnly TRUE\n  ConnectTimeout 1m30s\n  ServerAliveInterval 2h\nHost b\n  ConnectTimeout none\n  ConnectTimeout 7\n",
        );
        let a = config.resolve("a", "me");
        assert_eq!(a.batch_mode, Some(false));
        assert_eq!(a.identities_only, Some(true));
        assert_eq!(a.connect_timeout, Some(90));
        assert_eq!(a.server_alive_interval, Some(7200));
        // `none` is ssh's unset value, so a later line still applies.
        assert_eq!(config.resolve("b", "me").connect_timeout, Some(7));
        assert_eq!(parse_time("t", "1m30"), Ok(Some(90)));
        assert_eq!(parse_time("t", "1w1d1h1m1s"), Ok(Some(694_861)));
        for bad in ["", "m", "5x", "-5", "99999999999999999999"] {
            assert!(parse_time("t", bad).is_err(), "{bad:?}");
        }
        assert!(matches!(
            syntax_kind("BatchMode maybe\n").1,
            SyntaxError::InvalidValue { .. }
        ));
    }

    #[test]
    fn user_known_hosts_files() {
        let config = parse(
            "Host a\n  UserKnownHostsFile ~/.ssh/kh_a \"/etc/ssh/kh %h\"\nHost b\n  UserKnownHostsFile none\nHost *\n  UserKnownHostsFile /ignored/for/a\n",
        );
        assert_eq!(
            config.resolve("a", "me").user_known_hosts_files,
            paths(&["/home/alice/.ssh/kh_a", "/etc/ssh/kh a"])
        );
        assert!(config.resolve("b", "me").user_known_hosts_files.is_empty());
        assert_eq!(
            config.resolve("c", "me").user_known_hosts_files,
            paths(&["/ignored/for/a"])
        );
        assert_eq!(
            parse("").resolve("c", "me").user_known_hosts_files,
            paths(&[
                "/home/alice/.ssh/known_hosts",
                "/home/alice/.ssh/known_hosts2"
            ])
        );
        assert_eq!(
            syntax_kind("UserKnownHostsFile a none\n").1,
            SyntaxError::NoneNotAlone("userknownhostsfile".into())
        );
    }

    #[test]
    fn unknown_keywords_are_ignored() {
        let config = parse(
            "SendEnv LANG LC_*\nHost a\n  ForwardAgent yes\n  SomeFutureOption x y z\n  User u\n",
        );
        assert!(config.warnings().is_empty());
        assert_eq!(config.resolve("a", "me").user.as_deref(), Some("u"));
    }

    #[test]
    fn errors_carry_file_and_line() {
        let err = parse_err("Host a\n  User u\n  Port 99999\n");
        assert_eq!(err.to_string(), "config:3: bad port number \"99999\"");
        assert_eq!(
            syntax_kind("Port 0\n"),
            (1, SyntaxError::BadPort("0".into()))
        );
        assert_eq!(
            syntax_kind("Port ssh\n"),
            (1, SyntaxError::BadPort("ssh".into()))
        );
        assert_eq!(
            syntax_kind("\nHost a\n  User \"unterminated\n"),
            (3, SyntaxError::UnterminatedQuote)
        );
        // Quotes are checked even in blocks that will never match, and for
        // keywords that are otherwise ignored, as ssh does.
        assert_eq!(
            syntax_kind("Host zzz\n  SendEnv 'x\n").1,
            SyntaxError::UnterminatedQuote
        );
        assert_eq!(
            syntax_kind("User\n").1,
            SyntaxError::NoArgument("user".into())
        );
        assert_eq!(
            syntax_kind("FooBar\n").1,
            SyntaxError::NoArgument("foobar".into())
        );
        assert_eq!(
            syntax_kind("User=\n").1,
            SyntaxError::NoArgument("user".into())
        );
        assert_eq!(
            syntax_kind("User # c\n").1,
            SyntaxError::MissingArgument("user".into())
        );
        assert_eq!(
            syntax_kind("User a b\n").1,
            SyntaxError::ExtraArguments("user".into())
        );
        assert_eq!(
            syntax_kind("Host \"\"\n").1,
            SyntaxError::EmptyArgument("host".into())
        );
    }

    #[test]
    fn match_host_sees_the_hostname_so_far_and_originalhost_the_name_as_typed() {
        let config = parse(
            "Host web\n  HostName Web.Internal\nMatch host web.internal\n  Port 2201\nMatch originalhost WEB\n  User typed\nMatch host web\n  Port 9\nMatch host db,!db-legacy\n  User db-user\n",
        );
        let web = config.resolve("web", "me");
        // HostName so far, %h expanded, compared without case.
        assert_eq!(web.port, Some(2201));
        // originalhost patterns are case-insensitive too.
        assert_eq!(web.user.as_deref(), Some("typed"));
        assert_eq!(config.resolve("db", "me").user.as_deref(), Some("db-user"));
        // A negated pattern in the list vetoes the match.
        assert_eq!(config.resolve("db-legacy", "me").user, None);
        assert!(config.warnings().is_empty(), "{:?}", config.warnings());
    }

    #[test]
    fn match_user_and_localuser_with_negation_and_several_criteria() {
        let config = parse(
            "Host *\n  User from-host\nMatch user from-host localuser alice\n  Port 1001\nMatch !localuser alice\n  IdentityFile ~/.ssh/not-alice\nMatch user Preset\n  Port 1002\nMatch all\n  ConnectTimeout 3\n",
        );
        let alice = config.resolve("x", "alice");
        assert_eq!(alice.port, Some(1001), "both criteria hold");
        assert!(alice.identity_files.is_empty());
        assert_eq!(alice.connect_timeout, Some(3));
        let bob = config.resolve("x", "bob");
        assert_eq!(bob.port, None, "one criterion fails: the block is off");
        assert_eq!(
            bob.identity_files,
            paths(&["/home/alice/.ssh/not-alice"]),
            "!localuser"
        );
        // A user fixed beforehand (ssh -l, the SoT) is what `Match user`
        // sees, and user patterns are case-sensitive.
        let preset = config.resolve_with(
            "x",
            "alice",
            Preset {
                user: Some("Preset"),
                port: None,
            },
        );
        assert_eq!(preset.user.as_deref(), Some("Preset"));
        assert_eq!(preset.port, Some(1002));
        let lower = config.resolve_with(
            "x",
            "alice",
            Preset {
                user: Some("preset"),
                port: None,
            },
        );
        assert_eq!(lower.port, None);
    }

    #[test]
    fn match_exec_runs_the_command_with_tokens() {
        let dir = tempfile::tempdir().unwrap();
        let flag = dir.path().join("vpn-up");
        let log = dir.path().join("log");
        let text = format!(
            "Host *\n  Port 2022\nMatch exec \"test -e {flag}\"\n  User vpn\nMatch exec \"echo %h %n %p %r %u %% >> {log}; test %n = web1\"\n  IdentityFile ~/.ssh/web1\nMatch host nomatch exec \"touch {log}.skipped\"\n  User never\nMatch !exec false\n  ConnectTimeout 4\n",
            flag = flag.display(),
            log = log.display()
        );
        let config = parse(&text);
        let web1 = config.resolve("web1", "me");
        assert_eq!(web1.user, None, "no flag file: exec did not match");
        assert_eq!(web1.identity_files, paths(&["/home/alice/.ssh/web1"]));
        assert_eq!(web1.connect_timeout, Some(4), "!exec");
        assert!(config.resolve("web2", "me").identity_files.is_empty());
        assert_eq!(
            fs::read_to_string(&log).unwrap(),
            "web1 web1 2022 me me %\nweb2 web2 2022 me me %\n"
        );
        assert!(
            !Path::new(&format!("{}.skipped", log.display())).exists(),
            "exec is not run once an earlier criterion failed"
        );
        // Each expanded command runs once per config, however many nodes.
        let again = config.resolve("web1", "me");
        assert_eq!(again, web1);
        assert_eq!(fs::read_to_string(&log).unwrap().lines().count(), 2);
        // A new config runs it again and sees the flag file.
        fs::write(&flag, "").unwrap();
        assert_eq!(
            parse(&text).resolve("web1", "me").user.as_deref(),
            Some("vpn")
        );
    }

    #[test]
    fn match_final_reads_the_config_a_second_time() {
        let config = parse(
            "Match final host *.internal\n  User final-user\nMatch canonical\n  Port 2200\nMatch !final\n  IdentityFile ~/.ssh/first-pass\nHost app\n  HostName APP.internal\nHost app.internal\n  ConnectTimeout 9\nMatch final\n  HostName changed\n",
        );
        let app = config.resolve("app", "me");
        assert_eq!(app.user.as_deref(), Some("final-user"));
        assert_eq!(app.port, Some(2200), "canonical is true in the final pass");
        assert_eq!(app.identity_files, paths(&["/home/alice/.ssh/first-pass"]));
        assert_eq!(
            app.connect_timeout,
            Some(9),
            "Host lines see the resolved name in the final pass"
        );
        assert_eq!(app.hostname.as_deref(), Some("app.internal"));
        let other = config.resolve("other", "me");
        assert_eq!(other.user, None);
        assert_eq!(
            other.hostname, None,
            "HostName is fixed after the first pass"
        );
        // Without `final` anywhere there is one pass, and canonical is false.
        let one_pass = parse("Match canonical\n  Port 2200\n");
        assert_eq!(one_pass.resolve("x", "me").port, None);
    }

    #[test]
    fn match_blocks_end_at_the_next_host_or_match_line() {
        let config = parse(
            "Host a\n  User a-user\nMatch host nomatch\n  Port 2222\n  User match-user\nHost *\n  Port 22\n",
        );
        let a = config.resolve("a", "me");
        assert_eq!(a.port, Some(22));
        assert_eq!(a.user.as_deref(), Some("a-user"));
        // Match in an Include from an inactive block cannot activate.
        let home = tempfile::tempdir().unwrap();
        let ssh = home.path().join(".ssh");
        write(&ssh.join("config"), "Host other\n  Include inc\n");
        write(&ssh.join("inc"), "Match all\n  User sneaky\n");
        let config = SshConfig::load(&ssh.join("config"), home.path()).unwrap();
        assert_eq!(config.resolve("x", "me").user, None);
        assert_eq!(
            config.resolve("other", "me").user.as_deref(),
            Some("sneaky")
        );
    }

    #[test]
    fn unsupported_match_criteria_never_match_and_say_so() {
        let config =
            parse("Match localnetwork 10.0.0.0/8\n  User lan\nMatch !tagged x\n  Port 1\n");
        assert_eq!(
            config.warnings(),
            [
                "config:1: Match localnetwork is not supported; this Match line never matches",
                "config:3: Match tagged is not supported; this Match line never matches",
            ]
        );
        let x = config.resolve("x", "me");
        assert_eq!((x.user, x.port), (None, None));
    }

    #[test]
    fn bad_match_lines_are_errors_like_in_ssh() {
        assert_eq!(
            syntax_kind("Match host a all\nMatch user b host c all\n"),
            (2, SyntaxError::MatchAllNotAlone)
        );
        assert_eq!(
            syntax_kind("Match all host a\n").1,
            SyntaxError::MatchAllNotAlone
        );
        assert_eq!(
            syntax_kind("Match host\n").1,
            SyntaxError::MissingMatchArgument("host".into())
        );
        assert_eq!(
            syntax_kind("Match exec \"\"\n").1,
            SyntaxError::MissingMatchArgument("exec".into())
        );
        assert_eq!(
            syntax_kind("Match Address 10.0.0.1\n").1,
            SyntaxError::UnknownMatchCriterion("Address".into())
        );
        assert_eq!(
            syntax_kind("Match # nothing\n").1,
            SyntaxError::MatchWithoutCriteria
        );
        // A comment ends the criteria; `all` may follow canonical/final.
        let config = parse("Match host a # comment\n  Port 1\nMatch canonical all\n  User u\n");
        assert_eq!(config.resolve("a", "me").port, Some(1));
        assert_eq!(config.resolve("a", "me").user, None);
    }

    #[test]
    fn server_alive_options() {
        let config = parse(
            "Host a\n  ServerAliveInterval 0\n  ServerAliveCountMax 0\nHost *\n  ServerAliveInterval 5\n  ServerAliveCountMax 2\n",
        );
        let a = config.resolve("a", "me");
        assert_eq!(
            (a.server_alive_interval, a.server_alive_count_max),
            (Some(0), Some(0))
        );
        let b = config.resolve("b", "me");
        assert_eq!(
            (b.server_alive_interval, b.server_alive_count_max),
            (Some(5), Some(2))
        );
        assert_eq!(parse("").resolve("b", "me").server_alive_count_max, None);
        for bad in ["-1", "x", "1.5"] {
            assert_eq!(
                syntax_kind(&format!("ServerAliveCountMax {bad}\n")).1,
                invalid("serveralivecountmax", bad)
            );
        }
    }

    #[test]
    fn proxy_command_tokens() {
        let target = ProxyTarget {
            host: "10.1.2.3",
            port: 2222,
            user: "deploy",
            original_host: "web1",
        };
        assert_eq!(
            expand_proxy_command("ssh -W %h:%p -l %r bastion # %n %k 100%%", &target),
            Ok("ssh -W 10.1.2.3:2222 -l deploy bastion # web1 10.1.2.3 100%".into())
        );
        assert_eq!(
            expand_proxy_command("nc %h %p %C", &target),
            Err(ProxyCommandError::UnknownToken('C'))
        );
        assert_eq!(
            expand_proxy_command("nc %h 5%", &target),
            Err(ProxyCommandError::TrailingPercent)
        );
    }

    fn write(path: &Path, text: &str) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
    }

    #[test]
    fn include_with_glob_relative_to_dot_ssh() {
        let home = tempfile::tempdir().unwrap();
        let ssh = home.path().join(".ssh");
        write(
            &ssh.join("config"),
            "Include config.d/*.conf\nInclude missing/*.conf\n\nHost *\n  User default\n",
        );
        write(
            &ssh.join("config.d/10-web.conf"),
            "Host web\n  User web-user\n  Port 2201\n",
        );
        write(
            &ssh.join("config.d/20-db.conf"),
            "Host db web\n  User db-user\n  HostName db.internal\n",
        );
        write(&ssh.join("config.d/README"), "not included\n");
        write(&ssh.join("config.d/.20-db.conf.swp"), "Port 9\n");

        let config = SshConfig::load(&ssh.join("config"), home.path()).unwrap();
        let web = config.resolve("web", "me");
        assert_eq!(web.user.as_deref(), Some("web-user"), "10-web sorts first");
        assert_eq!(web.port, Some(2201));
        assert_eq!(web.hostname.as_deref(), Some("db.internal"));
        assert_eq!(config.resolve("db", "me").user.as_deref(), Some("db-user"));
        assert_eq!(config.resolve("x", "me").user.as_deref(), Some("default"));
        assert_eq!(
            config.resolve("x", "me").port,
            None,
            "dotfiles are not globbed"
        );
    }

    #[test]
    fn include_takes_glob_characters_in_home_literally() {
        let base = tempfile::tempdir().unwrap();
        let home = base.path().join("odd [home] *");
        let ssh = home.join(".ssh");
        write(&ssh.join("config"), "Include inc*\nInclude ~/.ssh/other\n");
        write(&ssh.join("inc1"), "User from-inc\n");
        write(&ssh.join("other"), "Port 2\n");
        let config = SshConfig::load(&ssh.join("config"), &home).unwrap();
        let x = config.resolve("x", "me");
        assert_eq!(x.user.as_deref(), Some("from-inc"));
        assert_eq!(x.port, Some(2));
    }

    #[test]
    fn include_inside_host_block_and_tilde() {
        let home = tempfile::tempdir().unwrap();
        let ssh = home.path().join(".ssh");
        write(
            &ssh.join("config"),
            "Host a\n  Include ~/.ssh/inc\n  User a-user\nHost b\n  Include inc\n",
        );
        // The included file continues the includer's block; its own Host
        // line can narrow it, and the includer's state is restored after.
        write(
            &ssh.join("inc"),
            "Port 1111\nHost a\n  IdentityFile ~/inc-key\n",
        );
        let config = SshConfig::load(&ssh.join("config"), home.path()).unwrap();

        let a = config.resolve("a", "me");
        assert_eq!(a.port, Some(1111));
        assert_eq!(a.identity_files, [home.path().join("inc-key")]);
        assert_eq!(a.user.as_deref(), Some("a-user"), "block state restored");

        let b = config.resolve("b", "me");
        assert_eq!(b.port, Some(1111));
        // An Include in a block that does not match `a` must not let its
        // `Host a` line switch options on.
        assert!(config.resolve("c", "me").port.is_none());
        assert!(config.resolve("c", "me").identity_files.is_empty());
    }

    #[test]
    fn include_in_inactive_block_cannot_activate() {
        let home = tempfile::tempdir().unwrap();
        let ssh = home.path().join(".ssh");
        write(&ssh.join("config"), "Host other\n  Include inc\n");
        write(&ssh.join("inc"), "Host *\n  User sneaky\n");
        let config = SshConfig::load(&ssh.join("config"), home.path()).unwrap();
        assert_eq!(config.resolve("x", "me").user, None);
        assert_eq!(
            config.resolve("other", "me").user.as_deref(),
            Some("sneaky")
        );
    }

    #[test]
    fn include_errors() {
        let home = tempfile::tempdir().unwrap();
        let ssh = home.path().join(".ssh");
        write(&ssh.join("loop"), "Include loop\n");
        let err = SshConfig::load(&ssh.join("loop"), home.path()).unwrap_err();
        assert!(
            matches!(
                &err,
                Error::Syntax {
                    kind: SyntaxError::IncludeTooDeep,
                    line: 1,
                    ..
                }
            ),
            "{err}"
        );

        write(&ssh.join("bad"), "\n\nPort 70000\n");
        write(&ssh.join("top"), "Include bad\n");
        let err = SshConfig::load(&ssh.join("top"), home.path()).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("{}:3: bad port number \"70000\"", ssh.join("bad").display())
        );

        let missing = SshConfig::load(&ssh.join("nope"), home.path()).unwrap_err();
        assert!(missing.is_not_found());
        assert!(!err.is_not_found());
    }

    #[test]
    fn include_depth_limit_matches_ssh() {
        let home = tempfile::tempdir().unwrap();
        let ssh = home.path().join(".ssh");
        // Chain of files 0 -> 1 -> ... -> n; ssh allows 16 levels of nesting.
        let build = |n: usize| {
            for i in 0..n {
                write(&ssh.join(format!("c{i}")), &format!("Include c{}\n", i + 1));
            }
            write(&ssh.join(format!("c{n}")), "User deep\n");
        };
        build(16);
        let config = SshConfig::load(&ssh.join("c0"), home.path()).unwrap();
        assert_eq!(config.resolve("x", "me").user.as_deref(), Some("deep"));
        build(17);
        assert!(SshConfig::load(&ssh.join("c0"), home.path()).is_err());
    }

    #[test]
    fn system_config_after_user_config() {
        let home = tempfile::tempdir().unwrap();
        let etc = home.path().join("etc/ssh");
        write(
            &etc.join("ssh_config"),
            "Include ssh_config.d/*.conf\nHost *\n  User sys\n  Port 2\n",
        );
        write(
            &etc.join("ssh_config.d/a.conf"),
            "StrictHostKeyChecking ask\n",
        );
        let system = SshConfig::load_system(&etc.join("ssh_config"), home.path()).unwrap();
        let mut config = parse("Host *\n  Port 1\n  StrictHostKeyChecking no\n");
        config.extend(system);
        let x = config.resolve("x", "me");
        assert_eq!(x.port, Some(1));
        assert_eq!(x.user.as_deref(), Some("sys"));
        assert_eq!(x.strict_host_key_checking, Some(StrictHostKeyChecking::No));
        // Each file starts active again: a user file ending inside a
        // non-matching Host block does not hide the system file.
        let mut config = parse("Host nomatch\n  Port 1\n");
        config.extend(SshConfig::load_system(&etc.join("ssh_config"), home.path()).unwrap());
        assert_eq!(
            config.resolve("x", "me").strict_host_key_checking,
            Some(StrictHostKeyChecking::Ask)
        );
    }

    #[test]
    fn argument_splitting() {
        let split = |s: &str| split_args(s).unwrap();
        assert_eq!(split("a  b\tc"), ["a", "b", "c"]);
        assert_eq!(split("\"a b\" 'c d'"), ["a b", "c d"]);
        assert_eq!(split("x\"y z\"w"), ["xy zw"]);
        assert_eq!(split(r#""it's" 'say "hi"'"#), ["it's", "say \"hi\""]);
        assert_eq!(split(r"a\ b c\\d \q"), ["a b", r"c\d", r"\q"]);
        assert_eq!(split("a b#c # comment"), ["a", "b#c"]);
        assert_eq!(split("\"\""), [""]);
        assert_eq!(split_args("'open"), Err(SyntaxError::UnterminatedQuote));
    }

    #[test]
    fn keyword_splitting() {
        assert_eq!(split_keyword("  Port=22"), Some(("Port", "22")));
        assert_eq!(split_keyword("Port = = 22"), Some(("Port", "= 22")));
        assert_eq!(split_keyword("Port"), Some(("Port", "")));
        assert_eq!(split_keyword("   # c"), None);
        assert_eq!(split_keyword(" \t "), None);
    }

    fn whoami() -> String {
        let out = std::process::Command::new("id")
            .arg("-un")
            .output()
            .expect("id runs");
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }

    /// What `ssh -G -F file host` prints.
    struct DashG(String);

    impl DashG {
        fn field(&self, name: &str) -> Option<String> {
            self.0
                .lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
                .map(str::to_owned)
        }
    }

    fn ssh_dash_g(file: &Path, host: &str) -> DashG {
        let output = match std::process::Command::new("ssh")
            .arg("-G")
            .arg("-F")
            .arg(file)
            .arg(host)
            .stdin(std::process::Stdio::null())
            .output()
        {
            Ok(out) if out.status.success() => out,
            Ok(out) => panic!(
                "ssh -G {host} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ),
            Err(e) => panic!("ssh (openssh-client) must be installed for this cross-check: {e}"),
        };
        DashG(String::from_utf8(output.stdout).unwrap())
    }

    /// Match blocks, `final` and the `exec` tokens, compared with `ssh -G`.
    #[test]
    fn match_blocks_match_ssh_dash_g() {
        let local_user = whoami();
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("config");
        let log = dir.path().join("exec.log");
        let text = r#"
Host web*
    HostName %h.example.internal
Match host web1.example.internal localuser LOCAL
    Port 2201
Match originalhost WEB2 !localuser nobody-here
    Port 2202
    ProxyCommand nc %h %p
Match exec "test %n = web3"
    User deploy
Match user deploy
    Port 2203
    ServerAliveInterval 7
Match final host db.internal
    Port 2204
Host db
    HostName db.internal
Match canonical originalhost db
    User canon
Match !final originalhost db
    ServerAliveCountMax 5
Match host *.example.internal exec "echo C=%C L=%L d=%d h=%h k=%k l=%l n=%n p=%p r=%r u=%u >> LOG"
    ConnectTimeout 8
Match !host *.example.internal,db* !user nobody
    ProxyJump jump
Match all
    ServerAliveCountMax 2
"#
        .replace("LOCAL", &local_user)
        .replace("LOG", &log.to_string_lossy());
        fs::write(&file, text).unwrap();
        let home = std::env::var("HOME").unwrap();
        let config = SshConfig::load(&file, Path::new(&home)).unwrap();
        assert!(config.warnings().is_empty(), "{:?}", config.warnings());
        let exec_lines = || -> std::collections::BTreeSet<String> {
            let text = fs::read_to_string(&log).unwrap_or_default();
            let _ = fs::remove_file(&log);
            text.lines().map(str::to_owned).collect()
        };
        // Each host takes a different path through the Match blocks.
        let expected = [
            ("web1", "2201", "8"),
            ("web2", "2202", "8"),
            ("web3", "2203", "8"),
            ("db", "2204", "none"),
            ("other", "22", "none"),
        ];
        for (host, port, timeout) in expected {
            let g = ssh_dash_g(&file, host);
            assert_eq!(g.field("port").unwrap(), port, "ssh's port for {host}");
            assert_eq!(g.field("connecttimeout").unwrap(), timeout);
            let ssh_exec = exec_lines();
            assert_eq!(ssh_exec.is_empty(), timeout == "none", "{ssh_exec:?}");
            let ours = config.resolve(host, &local_user);
            assert_eq!(exec_lines(), ssh_exec, "Match exec tokens for {host}");
            let field = |name: &str| g.field(name).unwrap();
            assert_eq!(
                ours.hostname
                    .clone()
                    .unwrap_or_else(|| normalize_hostname(host)),
                field("hostname"),
                "hostname of {host}"
            );
            assert_eq!(
                ours.user.clone().unwrap_or_else(|| local_user.clone()),
                field("user"),
                "user of {host}"
            );
            assert_eq!(
                ours.port.unwrap_or(22).to_string(),
                field("port"),
                "port of {host}"
            );
            assert_eq!(
                ours.proxy_command,
                g.field("proxycommand"),
                "proxycommand of {host}"
            );
            assert_eq!(ours.proxy_jump, g.field("proxyjump"), "proxyjump of {host}");
            assert_eq!(
                ours.connect_timeout
                    .map_or("none".to_owned(), |t| t.to_string()),
                field("connecttimeout"),
                "connecttimeout of {host}"
            );
            assert_eq!(
                ours.server_alive_interval.unwrap_or(0).to_string(),
                field("serveraliveinterval"),
                "serveraliveinterval of {host}"
            );
            assert_eq!(
                ours.server_alive_count_max.unwrap_or(3).to_string(),
                field("serveralivecountmax"),
                "serveralivecountmax of {host}"
            );
        }
    }

    /// Compare resolve() with `ssh -G` for the options both print.
    #[test]
    fn matches_ssh_dash_g() {
        let local_user = whoami();
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("config");
        write(
            &dir.path().join("conf.d/10-gl.conf"),
            "Host gl\n  User gl-user\n  Port 1234\n",
        );
        write(
            &dir.path().join("inner.conf"),
            "Port 3000\nHost inc-b\n  User inc-b-user\n",
        );
        let text = r#"
Include DIR/conf.d/*.conf
Host bastion
    HostName Bastion.Example.com
    User jumper
Host web* !web-legacy
    User=deploy
    ProxyJump bastion
    Port 2201
Host web-legacy
    ProxyJump "admin@old-jump:2222,bastion"
Host db
    HostName %h.internal
    ProxyJump none
Match host db
    User wrong
Host inc-*
    Include DIR/inner.conf
    User inc-default
Host *.example.com db
    User "fallback user"
    ProxyJump bastion
    Port 22
Host *
    Port 2000
"#;
        let text = text.replace("DIR", &dir.path().to_string_lossy());
        fs::write(&file, text).unwrap();
        let config = SshConfig::load(&file, Path::new(HOME)).unwrap();
        for host in [
            "bastion",
            "web1",
            "web-legacy",
            "db",
            "a.example.com",
            "Other",
            "inc-a",
            "inc-b",
            "gl",
        ] {
            let g = ssh_dash_g(&file, host);
            let field = |name: &str| g.field(name);
            let ours = config.resolve(host, &local_user);
            let ssh_port: u16 = field("port").unwrap().parse().unwrap();
            assert_eq!(
                ours.hostname
                    .clone()
                    .unwrap_or_else(|| normalize_hostname(host)),
                field("hostname").unwrap(),
                "hostname of {host}"
            );
            assert_eq!(
                ours.user.clone().unwrap_or_else(|| local_user.clone()),
                field("user").unwrap(),
                "user of {host}"
            );
            assert_eq!(ours.port.unwrap_or(22), ssh_port, "port of {host}");
            assert_eq!(ours.proxy_jump, field("proxyjump"), "proxyjump of {host}");
        }
    }
}
