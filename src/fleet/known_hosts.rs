//! OpenSSH `known_hosts` files: parse them, decide whether a server's host
//! key is trusted, and append new entries (trust on first use).
//!
//! What is supported, following `sshd(8)` "SSH_KNOWN_HOSTS FILE FORMAT" and
//! the behaviour of OpenSSH's `hostfile.c`:
//!
//! * comments (`#`) and blank lines, fields separated by any run of spaces or
//!   tabs, CRLF line endings;
//! * comma-separated host pattern lists, `[host]:port` names for ports other
//!   than 22, wildcards `*` and `?` (also inside brackets, `[10.0.0.*]:2222`),
//!   negated patterns `!pattern` (a negated match rules the line out even when
//!   another pattern on it matches), case-insensitive matching;
//! * hashed host names `|1|salt|hmac` (HMAC-SHA1 of the lookup name keyed with
//!   the salt), as written by `ssh-keygen -H` or `HashKnownHosts yes`;
//! * the `@revoked` marker: a revoked key is refused when its line's host
//!   patterns match, and that beats any line that trusts it.
//!
//! Not supported:
//!
//! * certificates: `@cert-authority` lines are parsed but never used, so a
//!   host that presents a certificate has to be trusted by its plain key;
//! * the legacy SSH-1 `bits exponent modulus` key format (such lines are
//!   skipped with a warning);
//! * `CheckHostIP`: only the name passed to [`KnownHosts::verify`] is looked
//!   up, never the resolved address as well;
//! * `RevokedHostKeys` files (a separate file format, KRL).

use std::collections::HashMap;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};

/// The port OpenSSH leaves out of known_hosts names.
const DEFAULT_PORT: u16 = 22;
/// Length of the salt and of the HMAC in a `|1|` hashed host name (SHA-1).
const SHA1_LEN: usize = 20;

/// Errors from reading or writing known_hosts files. Malformed lines are not
/// errors: they are skipped and reported by [`KnownHosts::warnings`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read {}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error("cannot write {}: {source}", path.display())]
    Write { path: PathBuf, source: io::Error },
    /// The host name would not survive a round trip through the file format.
    #[error(
        "cannot record host {0:?} in known_hosts: empty or contains whitespace, ',' or a leading '#', '@', '|' or '!'"
    )]
    InvalidHost(String),
    /// The key would not survive a round trip through the file format.
    #[error("cannot record an invalid host key (algorithm {0:?})")]
    InvalidKey(String),
}

/// A public key as OpenSSH writes it: algorithm name and base64 blob (comment ignored).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostKey {
    pub algorithm: String,
    pub blob: String,
}

impl HostKey {
    /// Parse `"ssh-ed25519 AAAA... [comment]"`.
    ///
    /// The blob must be valid base64 and must start with the algorithm name,
    /// as every SSH public key blob does; OpenSSH rejects a mismatch too.
    pub fn parse_openssh(s: &str) -> Option<HostKey> {
        let mut fields = s.split_ascii_whitespace();
        let algorithm = fields.next()?;
        let blob = fields.next()?;
        let bytes = STANDARD.decode(blob).ok()?;
        if blob_key_type(&bytes)? != algorithm {
            return None;
        }
        Some(HostKey {
            algorithm: algorithm.to_owned(),
            blob: blob.to_owned(),
        })
    }

    /// Build a key from its wire-format blob (e.g. what an SSH library hands
    /// over); the algorithm is read from the blob itself.
    pub fn from_blob(bytes: &[u8]) -> Option<HostKey> {
        let algorithm = blob_key_type(bytes)?;
        Some(HostKey {
            algorithm: algorithm.to_owned(),
            blob: STANDARD.encode(bytes),
        })
    }

    /// SHA256 fingerprint exactly as `ssh-keygen -lf` prints it: `"SHA256:<base64 without padding>"` of the decoded blob.
    ///
    /// A hand-built key whose blob is not base64 has no fingerprint; it gets
    /// a visibly bogus one rather than a plausible-looking wrong one.
    pub fn fingerprint(&self) -> String {
        match STANDARD.decode(&self.blob) {
            Ok(bytes) => format!("SHA256:{}", STANDARD_NO_PAD.encode(Sha256::digest(bytes))),
            Err(_) => "SHA256:(invalid key blob)".to_owned(),
        }
    }

    /// The decoded blob; empty when the blob is not base64, which can only
    /// happen for a hand-built key, and then matches nothing.
    fn blob_bytes(&self) -> Vec<u8> {
        STANDARD.decode(&self.blob).unwrap_or_default()
    }

    /// The key type named inside the blob. Keys are compared and grouped by
    /// this rather than by `algorithm`, because SSH libraries may report an
    /// RSA key by its signature algorithm (`rsa-sha2-512`) while the blob and
    /// known_hosts say `ssh-rsa`.
    fn key_type(&self) -> String {
        blob_key_type(&self.blob_bytes())
            .unwrap_or(&self.algorithm)
            .to_owned()
    }
}

impl fmt::Display for HostKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.algorithm, self.blob)
    }
}

/// The first SSH `string` of a key blob (u32 big-endian length + bytes): the key type.
fn blob_key_type(blob: &[u8]) -> Option<&str> {
    let len_bytes: [u8; 4] = blob.get(..4)?.try_into().ok()?;
    let len = usize::try_from(u32::from_be_bytes(len_bytes)).ok()?;
    let name = blob.get(4..4usize.checked_add(len)?)?;
    let name = std::str::from_utf8(name).ok()?;
    // Key type names are short printable ASCII; anything else is not a key.
    let plausible = !name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic());
    plausible.then_some(name)
}

/// The outcome of [`KnownHosts::verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// A line for this host holds this key.
    Trusted { file: PathBuf, line: usize },
    /// The host is known but with other key(s): possible MITM. `known` is a
    /// key of the same type as the presented one when there is one, else the
    /// first key found; [`KnownHosts::known_keys`] lists them all.
    Changed {
        file: PathBuf,
        line: usize,
        known: HostKey,
    },
    /// The key is explicitly marked @revoked.
    Revoked { file: PathBuf, line: usize },
    /// No line matches this host.
    Unknown,
}

/// A line that was skipped while loading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    pub file: PathBuf,
    pub line: usize,
    pub reason: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file.display(), self.line, self.reason)
    }
}

/// A key recorded for a host, with where it was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KnownKey<'a> {
    pub file: &'a Path,
    pub line: usize,
    pub key: &'a HostKey,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Marker {
    None,
    Revoked,
    CertAuthority,
}

/// One `pattern` or `!pattern` of a host list, lowercased.
#[derive(Debug, Clone)]
struct Pattern {
    negated: bool,
    glob: String,
}

#[derive(Debug, Clone)]
enum Hosts {
    Patterns(Vec<Pattern>),
    Hashed { salt: Vec<u8>, hmac: Vec<u8> },
}

impl Hosts {
    /// `name` is the lowercased lookup name (`host` or `[host]:port`).
    fn matches(&self, name: &str) -> bool {
        match self {
            Hosts::Patterns(patterns) => {
                let mut matched = false;
                for pattern in patterns {
                    if wildcard_match(&pattern.glob, name) {
                        if pattern.negated {
                            // As in OpenSSH's match_hostname(): a negated
                            // match vetoes the whole line.
                            return false;
                        }
                        matched = true;
                    }
                }
                matched
            }
            Hosts::Hashed { salt, hmac } => {
                let mut mac =
                    Hmac::<Sha1>::new_from_slice(salt).expect("HMAC accepts keys of any length");
                mac.update(name.as_bytes());
                mac.verify_slice(hmac).is_ok()
            }
        }
    }
}

#[derive(Debug, Clone)]
struct Entry {
    /// Index into `KnownHosts::files`.
    file: usize,
    line: usize,
    marker: Marker,
    hosts: Hosts,
    key: HostKey,
    key_bytes: Vec<u8>,
}

/// Host keys loaded from one or more known_hosts files, in file order.
#[derive(Debug, Clone, Default)]
pub struct KnownHosts {
    files: Vec<PathBuf>,
    entries: Vec<Entry>,
    warnings: Vec<Warning>,
    /// Entries whose hosts are plain names, by name: a lookup in a 10,000-line
    /// file must not scan every line.
    literal: HashMap<String, Vec<usize>>,
    /// Entries that must be matched one by one (wildcards, negations, hashed).
    scanned: Vec<usize>,
}

/// Serialises appends within this process: a fleet tool connects to many
/// hosts at once, and two first-use appends racing on the trailing-newline
/// check could otherwise interleave.
static APPEND_LOCK: Mutex<()> = Mutex::new(());

impl KnownHosts {
    /// Load files in order; a missing file is fine (empty); unreadable lines are skipped but counted (see [`KnownHosts::warnings`]).
    pub fn load(files: &[PathBuf]) -> Result<KnownHosts, Error> {
        let mut known = KnownHosts::default();
        for path in files {
            let bytes = match fs::read(path) {
                Ok(bytes) => bytes,
                // ssh itself treats a missing known_hosts file as empty.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(source) => {
                    return Err(Error::Read {
                        path: path.clone(),
                        source,
                    });
                }
            };
            let file = known.add_file(path);
            for (index, raw) in bytes.split(|&b| b == b'\n').enumerate() {
                match std::str::from_utf8(raw) {
                    Ok(text) => known.parse_line(file, index + 1, text),
                    Err(_) => known.warn(file, index + 1, "line is not valid UTF-8"),
                }
            }
        }
        Ok(known)
    }

    /// Parse known_hosts text as if it had been read from `file`.
    pub fn parse_str(file: &Path, text: &str) -> KnownHosts {
        let mut known = KnownHosts::default();
        let index = known.add_file(file);
        for (n, line) in text.split('\n').enumerate() {
            known.parse_line(index, n + 1, line);
        }
        known
    }

    /// Lines that were skipped because they could not be understood.
    pub fn warnings(&self) -> &[Warning] {
        &self.warnings
    }

    /// Number of usable lines loaded (including `@revoked` and
    /// `@cert-authority` lines).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// host = the name or address used to connect (after ssh_config HostName resolution), port = TCP port.
    /// OpenSSH form: port 22 → lookup name `host`; other ports → `[host]:port`.
    ///
    /// Revoked beats Trusted, which beats Changed, which beats Unknown.
    /// Entries for `name` (the lowercased lookup name), in file order.
    fn matching(&self, name: &str) -> Vec<&Entry> {
        let mut idx: Vec<usize> = self.literal.get(name).cloned().unwrap_or_default();
        idx.extend(
            self.scanned
                .iter()
                .copied()
                .filter(|&i| self.entries[i].hosts.matches(name)),
        );
        idx.sort_unstable();
        idx.dedup();
        idx.into_iter()
            .map(|i| &self.entries[i])
            .filter(|e| e.marker != Marker::CertAuthority)
            .collect()
    }

    pub fn verify(&self, host: &str, port: u16, key: &HostKey) -> Verdict {
        let name = lookup_name(host, port);
        let presented = key.blob_bytes();
        let matching = self.matching(&name);

        let revoked = matching
            .iter()
            .find(|e| e.marker == Marker::Revoked && e.key_bytes == presented);
        if let Some(e) = revoked {
            return Verdict::Revoked {
                file: self.files[e.file].clone(),
                line: e.line,
            };
        }

        let plain: Vec<&Entry> = matching
            .into_iter()
            .filter(|e| e.marker == Marker::None)
            .collect();
        if let Some(e) = plain.iter().find(|e| e.key_bytes == presented) {
            return Verdict::Trusted {
                file: self.files[e.file].clone(),
                line: e.line,
            };
        }

        // Nothing trusts this key. Any other key on record for the host means
        // the host's identity changed; prefer reporting the key of the same
        // type, which is the one the server should have presented.
        let key_type = key.key_type();
        let changed = plain
            .iter()
            .find(|e| e.key.key_type() == key_type)
            .or_else(|| plain.first());
        match changed {
            Some(e) => Verdict::Changed {
                file: self.files[e.file].clone(),
                line: e.line,
                known: e.key.clone(),
            },
            None => Verdict::Unknown,
        }
    }

    /// All plain (unmarked) keys recorded for this host, in file order: what
    /// to show the user next to a [`Verdict::Changed`].
    pub fn known_keys(&self, host: &str, port: u16) -> Vec<KnownKey<'_>> {
        let name = lookup_name(host, port);
        self.matching(&name)
            .into_iter()
            .filter(|e| e.marker == Marker::None)
            .map(|e| KnownKey {
                file: &self.files[e.file],
                line: e.line,
                key: &e.key,
            })
            .collect()
    }

    /// The line to append for trust-on-first-use, e.g. "[127.0.0.1]:2222 ssh-ed25519 AAAA..." (plain, not hashed).
    ///
    /// The host is lowercased, as ssh writes it.
    pub fn entry_line(host: &str, port: u16, key: &HostKey) -> String {
        format!("{} {} {}", lookup_name(host, port), key.algorithm, key.blob)
    }

    /// Like [`KnownHosts::entry_line`] but with the host name hashed under a
    /// fresh random salt, as ssh does with `HashKnownHosts yes`.
    pub fn entry_line_hashed(host: &str, port: u16, key: &HostKey) -> Result<String, Error> {
        let mut salt = [0u8; SHA1_LEN];
        File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut salt))
            .map_err(|source| Error::Read {
                path: PathBuf::from("/dev/urandom"),
                source,
            })?;
        Ok(format!(
            "{} {} {}",
            hash_host_name(&lookup_name(host, port), &salt),
            key.algorithm,
            key.blob
        ))
    }

    /// Append that line to `file` (create parent dirs with 0700 and the file with 0600 if missing; make sure the previous content ends with a newline; no leading blank line).
    pub fn append(file: &Path, host: &str, port: u16, key: &HostKey) -> Result<(), Error> {
        check_recordable(host, key)?;
        let line = Self::entry_line(host, port, key);
        let _guard = APPEND_LOCK
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        append_line(file, &line).map_err(|source| Error::Write {
            path: file.to_owned(),
            source,
        })
    }

    fn add_file(&mut self, path: &Path) -> usize {
        self.files.push(path.to_owned());
        self.files.len() - 1
    }

    fn warn(&mut self, file: usize, line: usize, reason: &str) {
        self.warnings.push(Warning {
            file: self.files[file].clone(),
            line,
            reason: reason.to_owned(),
        });
    }

    fn parse_line(&mut self, file: usize, line: usize, text: &str) {
        match parse_entry(text) {
            Ok(Some((marker, hosts, key))) => {
                let key_bytes = key.blob_bytes();
                let index = self.entries.len();
                match &hosts {
                    Hosts::Patterns(p)
                        if p.iter().all(|p| !p.negated && !p.glob.contains(['*', '?'])) =>
                    {
                        for p in p {
                            self.literal.entry(p.glob.clone()).or_default().push(index);
                        }
                    }
                    _ => self.scanned.push(index),
                }
                self.entries.push(Entry {
                    file,
                    line,
                    marker,
                    hosts,
                    key,
                    key_bytes,
                });
            }
            Ok(None) => {}
            Err(reason) => self.warn(file, line, reason),
        }
    }
}

/// Split off the first whitespace-delimited field, returning it and the rest
/// with leading whitespace removed.
fn next_field(s: &str) -> (&str, &str) {
    let s = s.trim_start_matches([' ', '\t']);
    let end = s.find([' ', '\t']).unwrap_or(s.len());
    let (field, rest) = s.split_at(end);
    (field, rest.trim_start_matches([' ', '\t']))
}

/// Parse one line; `Ok(None)` for blank lines and comments, `Err(reason)` for
/// lines to skip with a warning.
fn parse_entry(text: &str) -> Result<Option<(Marker, Hosts, HostKey)>, &'static str> {
    let text = text.trim_end_matches(['\r', ' ', '\t']);
    let (first, rest) = next_field(text);
    if first.is_empty() || first.starts_with('#') {
        return Ok(None);
    }
    let marker = match first {
        "@revoked" => Marker::Revoked,
        "@cert-authority" => Marker::CertAuthority,
        m if m.starts_with('@') => return Err("unknown marker"),
        _ => Marker::None,
    };
    let (hosts, rest) = match marker {
        Marker::None => (first, rest),
        _ => next_field(rest),
    };
    if hosts.is_empty() {
        return Err("missing host patterns");
    }
    if rest.is_empty() {
        return Err("missing key");
    }
    let key = HostKey::parse_openssh(rest).ok_or("invalid key")?;
    Ok(Some((marker, parse_hosts(hosts)?, key)))
}

fn parse_hosts(field: &str) -> Result<Hosts, &'static str> {
    if let Some(hashed) = field.strip_prefix("|1|") {
        let (salt, hmac) = hashed.split_once('|').ok_or("malformed hashed host")?;
        let salt = STANDARD.decode(salt).map_err(|_| "malformed hashed host")?;
        let hmac = STANDARD.decode(hmac).map_err(|_| "malformed hashed host")?;
        // OpenSSH insists on SHA-1-sized salt and digest.
        if salt.len() != SHA1_LEN || hmac.len() != SHA1_LEN {
            return Err("malformed hashed host");
        }
        return Ok(Hosts::Hashed { salt, hmac });
    }
    if field.starts_with('|') {
        return Err("unsupported host hash format");
    }
    let patterns = field
        .split(',')
        .map(|p| match p.strip_prefix('!') {
            Some(glob) => Pattern {
                negated: true,
                glob: glob.to_ascii_lowercase(),
            },
            None => Pattern {
                negated: false,
                glob: p.to_ascii_lowercase(),
            },
        })
        .collect();
    Ok(Hosts::Patterns(patterns))
}

/// The name OpenSSH looks up (and records): bare host for the default port,
/// `[host]:port` otherwise. Port 0 means "default" to OpenSSH as well.
fn lookup_name(host: &str, port: u16) -> String {
    let host = host.to_ascii_lowercase();
    if port == DEFAULT_PORT || port == 0 {
        host
    } else {
        format!("[{host}]:{port}")
    }
}

/// `|1|base64(salt)|base64(HMAC-SHA1(key = salt, name))`.
fn hash_host_name(name: &str, salt: &[u8]) -> String {
    let mut mac = Hmac::<Sha1>::new_from_slice(salt).expect("HMAC accepts keys of any length");
    mac.update(name.as_bytes());
    format!(
        "|1|{}|{}",
        STANDARD.encode(salt),
        STANDARD.encode(mac.finalize().into_bytes())
    )
}

/// Glob matching with `*` (any run) and `?` (any one character), as in
/// OpenSSH's match_pattern(), for known_hosts and ssh_config `Host` patterns.
/// Case-sensitive: known_hosts lowercases both sides first, ssh_config does not.
pub(crate) fn wildcard_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    // Where the last `*` was seen and how much text it has swallowed so far,
    // so a failed match can backtrack by letting it swallow one more char.
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi + 1, ti));
            pi += 1;
        } else if let Some((after_star, swallowed_to)) = star {
            pi = after_star;
            ti = swallowed_to + 1;
            star = Some((after_star, ti));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// Refuse to write a line that would be read back differently.
fn check_recordable(host: &str, key: &HostKey) -> Result<(), Error> {
    let bad_host = host.is_empty()
        || host.contains(|c: char| c.is_whitespace() || c == ',')
        || host.starts_with(['#', '@', '|', '!']);
    if bad_host {
        return Err(Error::InvalidHost(host.to_owned()));
    }
    if HostKey::parse_openssh(&key.to_string()).as_ref() != Some(key) {
        return Err(Error::InvalidKey(key.algorithm.clone()));
    }
    Ok(())
}

fn append_line(file: &Path, line: &str) -> io::Result<()> {
    if let Some(parent) = file.parent()
        && !parent.as_os_str().is_empty()
    {
        create_private_dirs(parent)?;
    }
    let mut f = open_private_append(file)?;
    let mut text = String::with_capacity(line.len() + 2);
    if f.metadata()?.len() > 0 {
        // A file edited by hand may lack the final newline; without one our
        // entry would be glued onto the last line.
        f.seek(SeekFrom::End(-1))?;
        let mut last = [0u8; 1];
        f.read_exact(&mut last)?;
        if last[0] != b'\n' {
            text.push('\n');
        }
    }
    text.push_str(line);
    text.push('\n');
    // One write on an O_APPEND descriptor, so another process appending at
    // the same time cannot split our line.
    f.write_all(text.as_bytes())
}

#[cfg(unix)]
fn create_private_dirs(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    // Only directories created here get 0700; existing ones are left alone.
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

#[cfg(not(unix))]
fn create_private_dirs(dir: &Path) -> io::Result<()> {
    fs::create_dir_all(dir)
}

#[cfg(unix)]
fn open_private_append(file: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .mode(0o600)
        .open(file)
}

#[cfg(not(unix))]
fn open_private_append(file: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Fixture keys generated once with `ssh-keygen -t ed25519` / `-t ecdsa`.
    const ED1: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFUSZJT8xAd7PIUNB/3l9JqBMSYwwVYYOk+zs2Xyw6Uw test@fixture";
    const ED2: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIH7qxltvW0pC+OwMpIPXaPhXc4NuwyiC54AdZb+VhRtc";
    const ECDSA: &str = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBIwBC7yCOXZ3Una68ypu+R0YlBCaT3SJ7Zn1ceWJvbD9/H2p/93ng6p6XKFQb+E+UFXOhGL1dmVx1eHFhuSU+co=";

    fn key(s: &str) -> HostKey {
        HostKey::parse_openssh(s).expect("fixture key parses")
    }

    /// The "alg blob" part of a fixture, without comment.
    fn bare(s: &str) -> String {
        key(s).to_string()
    }

    fn kh(text: &str) -> KnownHosts {
        KnownHosts::parse_str(Path::new("kh"), text)
    }

    fn trusted(line: usize) -> Verdict {
        Verdict::Trusted {
            file: PathBuf::from("kh"),
            line,
        }
    }

    #[test]
    fn parses_openssh_public_keys() {
        let k = key(ED1);
        assert_eq!(k.algorithm, "ssh-ed25519");
        assert_eq!(
            k.blob,
            "AAAAC3NzaC1lZDI1NTE5AAAAIFUSZJT8xAd7PIUNB/3l9JqBMSYwwVYYOk+zs2Xyw6Uw"
        );
        // Extra whitespace and tabs between fields are fine.
        assert_eq!(
            HostKey::parse_openssh(&format!("  ssh-ed25519\t\t{}  c", k.blob)),
            Some(k.clone())
        );
        assert_eq!(HostKey::parse_openssh("ssh-ed25519"), None);
        assert_eq!(HostKey::parse_openssh(""), None);
        assert_eq!(HostKey::parse_openssh("ssh-ed25519 not*base64"), None);
        // The blob says ed25519, the label says rsa: refuse, like OpenSSH.
        assert_eq!(HostKey::parse_openssh(&format!("ssh-rsa {}", k.blob)), None);
    }

    #[test]
    fn from_blob_reads_the_algorithm_from_the_blob() {
        let k = key(ECDSA);
        let bytes = STANDARD.decode(&k.blob).unwrap();
        assert_eq!(HostKey::from_blob(&bytes), Some(k));
        assert_eq!(HostKey::from_blob(b"\0\0"), None);
        assert_eq!(HostKey::from_blob(b"\0\0\0\x09short"), None);
    }

    #[test]
    fn fingerprints_match_ssh_keygen() {
        // `ssh-keygen -lf` on the fixture keys printed:
        //   256 SHA256:Pg3Rj3cjdw2RW9m2jPvwuBEMfRJcnQreocSj36tOBVM test@fixture (ED25519)
        //   256 SHA256:sRhCWF8nvqHAejQGLW58X2A3WlQWXtL8o5qGz+DqRtA no comment (ED25519)
        //   256 SHA256:/iUbUBaKI8u94SXmJ81jMjxiv0Ju9HLUweE7ziVeEp8 no comment (ECDSA)
        assert_eq!(
            key(ED1).fingerprint(),
            "SHA256:Pg3Rj3cjdw2RW9m2jPvwuBEMfRJcnQreocSj36tOBVM"
        );
        assert_eq!(
            key(ED2).fingerprint(),
            "SHA256:sRhCWF8nvqHAejQGLW58X2A3WlQWXtL8o5qGz+DqRtA"
        );
        assert_eq!(
            key(ECDSA).fingerprint(),
            "SHA256:/iUbUBaKI8u94SXmJ81jMjxiv0Ju9HLUweE7ziVeEp8"
        );
        let broken = HostKey {
            algorithm: "ssh-ed25519".into(),
            blob: "!!".into(),
        };
        assert_eq!(broken.fingerprint(), "SHA256:(invalid key blob)");
    }

    #[test]
    fn fingerprint_matches_live_ssh_keygen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.pub");
        fs::write(&path, format!("{ECDSA}\n")).unwrap();
        // ssh-keygen comes with openssh-client, which .ci/run installs: a
        // missing tool fails this test rather than skipping it.
        let out = std::process::Command::new("ssh-keygen")
            .arg("-lf")
            .arg(&path)
            .output()
            .expect("ssh-keygen (openssh-client) must be installed");
        assert!(out.status.success(), "ssh-keygen -lf failed");
        let stdout = String::from_utf8(out.stdout).unwrap();
        let printed = stdout.split_whitespace().nth(1).unwrap();
        assert_eq!(printed, key(ECDSA).fingerprint());
    }

    #[test]
    fn trusts_a_plain_entry_and_skips_comments_and_blank_lines() {
        let text = format!(
            "# a comment\n\n   \n\t# indented comment\nserver.example.com   \t {}\n",
            ED1
        );
        let known = kh(&text);
        assert!(known.warnings().is_empty(), "{:?}", known.warnings());
        assert_eq!(known.len(), 1);
        assert_eq!(
            known.verify("server.example.com", 22, &key(ED1)),
            trusted(5)
        );
        assert_eq!(
            known.verify("other.example.com", 22, &key(ED1)),
            Verdict::Unknown
        );
    }

    #[test]
    fn handles_crlf_and_leading_whitespace() {
        let known = kh(&format!("  host1 {}\r\n", bare(ED1)));
        assert!(known.warnings().is_empty());
        assert_eq!(known.verify("host1", 22, &key(ED1)), trusted(1));
    }

    #[test]
    fn comma_separated_host_lists() {
        let known = kh(&format!("web1,web1.example.com,10.0.0.5 {}\n", bare(ED1)));
        for host in ["web1", "web1.example.com", "10.0.0.5"] {
            assert_eq!(known.verify(host, 22, &key(ED1)), trusted(1), "{host}");
        }
        assert_eq!(known.verify("web2", 22, &key(ED1)), Verdict::Unknown);
    }

    #[test]
    fn bracketed_host_and_port() {
        let known = kh(&format!(
            "[127.0.0.1]:2222 {}\nplain.example {}\n[explicit.example]:22 {}\n",
            bare(ED1),
            bare(ED2),
            bare(ED2)
        ));
        assert_eq!(known.verify("127.0.0.1", 2222, &key(ED1)), trusted(1));
        // The bracketed form is only for non-default ports...
        assert_eq!(known.verify("127.0.0.1", 22, &key(ED1)), Verdict::Unknown);
        assert_eq!(known.verify("127.0.0.1", 2223, &key(ED1)), Verdict::Unknown);
        // ...and a bare name only matches port 22, as in OpenSSH.
        assert_eq!(known.verify("plain.example", 22, &key(ED2)), trusted(2));
        assert_eq!(
            known.verify("plain.example", 2222, &key(ED2)),
            Verdict::Unknown
        );
        // OpenSSH never looks up "[host]:22", so such a line is dead.
        assert_eq!(
            known.verify("explicit.example", 22, &key(ED2)),
            Verdict::Unknown
        );
    }

    #[test]
    fn hashed_entries_from_ssh_keygen() {
        // `ssh-keygen -H` output for "server.example.com" and
        // "[127.0.0.1]:2222", both with key ED1.
        let text = "\
|1|r9t+emmk2uxfiArexAI4E//mld0=|sx11FRKsCF16ddXginBG2OQbr+M= ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFUSZJT8xAd7PIUNB/3l9JqBMSYwwVYYOk+zs2Xyw6Uw
|1|eEEHuck7c5ct2ColTpNjys1J9Cc=|OQP25Re2ZfP+8avvnubAQLmhSpw= ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFUSZJT8xAd7PIUNB/3l9JqBMSYwwVYYOk+zs2Xyw6Uw
";
        let known = kh(text);
        assert!(known.warnings().is_empty());
        assert_eq!(
            known.verify("server.example.com", 22, &key(ED1)),
            trusted(1)
        );
        // Lookup is case-insensitive because the name is lowercased before hashing.
        assert_eq!(
            known.verify("Server.Example.COM", 22, &key(ED1)),
            trusted(1)
        );
        assert_eq!(known.verify("127.0.0.1", 2222, &key(ED1)), trusted(2));
        assert_eq!(known.verify("127.0.0.1", 22, &key(ED1)), Verdict::Unknown);
        assert_eq!(
            known.verify("server.example.org", 22, &key(ED1)),
            Verdict::Unknown
        );
        assert!(matches!(
            known.verify("server.example.com", 22, &key(ED2)),
            Verdict::Changed { line: 1, .. }
        ));
    }

    #[test]
    fn malformed_hashed_entries_are_warned_about() {
        let k = bare(ED1);
        let known = kh(&format!(
            "|1|bm90IDIwIGJ5dGVz|sx11FRKsCF16ddXginBG2OQbr+M= {k}\n|1|nopipe {k}\n|2|a|b {k}\n"
        ));
        assert_eq!(known.len(), 0);
        let reasons: Vec<_> = known.warnings().iter().map(|w| w.reason.as_str()).collect();
        assert_eq!(
            reasons,
            [
                "malformed hashed host",
                "malformed hashed host",
                "unsupported host hash format"
            ]
        );
    }

    #[test]
    fn hash_host_name_matches_ssh_keygen() {
        // Rebuild the first ssh-keygen line from its salt.
        let salt = STANDARD.decode("r9t+emmk2uxfiArexAI4E//mld0=").unwrap();
        assert_eq!(
            hash_host_name("server.example.com", &salt),
            "|1|r9t+emmk2uxfiArexAI4E//mld0=|sx11FRKsCF16ddXginBG2OQbr+M="
        );
    }

    #[test]
    fn wildcard_patterns() {
        let known = kh(&format!(
            "*.prod.example.com {}\nweb?.example.com {}\n[127.0.0.*]:2222 {}\n",
            bare(ED1),
            bare(ED2),
            bare(ECDSA)
        ));
        assert_eq!(
            known.verify("db.prod.example.com", 22, &key(ED1)),
            trusted(1)
        );
        assert_eq!(
            known.verify("a.b.prod.example.com", 22, &key(ED1)),
            trusted(1)
        );
        assert_eq!(
            known.verify("prod.example.com", 22, &key(ED1)),
            Verdict::Unknown
        );
        assert_eq!(known.verify("web1.example.com", 22, &key(ED2)), trusted(2));
        assert_eq!(
            known.verify("web12.example.com", 22, &key(ED2)),
            Verdict::Unknown
        );
        assert_eq!(known.verify("127.0.0.9", 2222, &key(ECDSA)), trusted(3));
        assert_eq!(
            known.verify("127.0.0.9", 2223, &key(ECDSA)),
            Verdict::Unknown
        );
        assert_eq!(known.verify("127.0.0.9", 22, &key(ECDSA)), Verdict::Unknown);
    }

    #[test]
    fn wildcard_matcher_edge_cases() {
        assert!(wildcard_match("*", ""));
        assert!(wildcard_match("*", "anything"));
        assert!(wildcard_match("a*b*c", "aXXbYYc"));
        assert!(wildcard_match("a*b*c", "abbbc"));
        assert!(!wildcard_match("a*b*c", "abcx"));
        assert!(wildcard_match("**a", "bba"));
        assert!(wildcard_match("?", "é"));
        assert!(!wildcard_match("?", ""));
        assert!(!wildcard_match("", "a"));
        assert!(wildcard_match("", ""));
    }

    #[test]
    fn negated_patterns_exclude_the_line() {
        let known = kh(&format!(
            "*.example.com,!secret.example.com {}\n!only-negative {}\n",
            bare(ED1),
            bare(ED2)
        ));
        assert_eq!(known.verify("www.example.com", 22, &key(ED1)), trusted(1));
        assert_eq!(
            known.verify("secret.example.com", 22, &key(ED1)),
            Verdict::Unknown
        );
        // A line with only negated patterns matches nothing.
        assert_eq!(known.verify("anything", 22, &key(ED2)), Verdict::Unknown);
    }

    #[test]
    fn matching_is_case_insensitive() {
        let known = kh(&format!(
            "Web1.Example.COM,[DB.example.com]:2200 {}\n",
            bare(ED1)
        ));
        assert_eq!(known.verify("web1.example.com", 22, &key(ED1)), trusted(1));
        assert_eq!(known.verify("WEB1.example.com", 22, &key(ED1)), trusted(1));
        assert_eq!(known.verify("db.EXAMPLE.com", 2200, &key(ED1)), trusted(1));
    }

    #[test]
    fn revoked_keys_are_refused_and_beat_trust() {
        let known = kh(&format!(
            "host1 {ed1}\n@revoked * {ed1}\n@revoked other {ed2}\nhost1 {ed2}\n",
            ed1 = bare(ED1),
            ed2 = bare(ED2)
        ));
        assert_eq!(
            known.verify("host1", 22, &key(ED1)),
            Verdict::Revoked {
                file: "kh".into(),
                line: 2
            }
        );
        // @revoked only applies where its host patterns match (as in OpenSSH).
        assert_eq!(known.verify("host1", 22, &key(ED2)), trusted(4));
        assert!(matches!(
            known.verify("other", 22, &key(ED2)),
            Verdict::Revoked { line: 3, .. }
        ));
        // A revoked line is not a trusted key for the Changed check either.
        assert!(matches!(
            known.verify("other", 22, &key(ED1)),
            Verdict::Revoked { line: 2, .. }
        ));
        assert_eq!(known.verify("other", 22, &key(ECDSA)), Verdict::Unknown);
    }

    #[test]
    fn cert_authority_lines_are_ignored() {
        let known = kh(&format!("@cert-authority *.example.com {}\n", bare(ED1)));
        assert!(known.warnings().is_empty());
        assert_eq!(
            known.verify("a.example.com", 22, &key(ED1)),
            Verdict::Unknown
        );
        assert!(known.known_keys("a.example.com", 22).is_empty());
    }

    #[test]
    fn changed_key_prefers_same_algorithm() {
        let known = kh(&format!(
            "host1 {ecdsa}\nhost1 {ed2}\nhost2 {ecdsa}\n",
            ecdsa = bare(ECDSA),
            ed2 = bare(ED2)
        ));
        assert_eq!(
            known.verify("host1", 22, &key(ED1)),
            Verdict::Changed {
                file: "kh".into(),
                line: 2,
                known: key(ED2)
            }
        );
        // Only a key of another type on record: still a change (not Unknown).
        assert_eq!(
            known.verify("host2", 22, &key(ED1)),
            Verdict::Changed {
                file: "kh".into(),
                line: 3,
                known: key(ECDSA)
            }
        );
        let all: Vec<usize> = known
            .known_keys("host1", 22)
            .iter()
            .map(|k| k.line)
            .collect();
        assert_eq!(all, [1, 2]);
    }

    #[test]
    fn trusted_wins_over_other_keys_for_the_host() {
        // A host with several keys (one per algorithm) is normal.
        let known = kh(&format!("host1 {}\nhost1 {}\n", bare(ED2), bare(ED1)));
        assert_eq!(known.verify("host1", 22, &key(ED1)), trusted(2));
    }

    #[test]
    fn keys_are_matched_by_blob_not_label() {
        // Libraries may label a key with the algorithm negotiated for it; the
        // blob is what identifies the key.
        let k = key(ED1);
        let relabelled = HostKey {
            algorithm: "something-else".into(),
            blob: k.blob.clone(),
        };
        let known = kh(&format!("host1 {}\n", bare(ED1)));
        assert_eq!(known.verify("host1", 22, &relabelled), trusted(1));
    }

    #[test]
    fn bad_lines_are_skipped_with_warnings() {
        let text = format!(
            "good {ed1}\nonlyhost\n@bogus host {ed1}\nhost2 ssh-ed25519 ###\n@revoked\n1024 35 1234567\nhost3 {ed1}\n",
            ed1 = bare(ED1)
        );
        let known = kh(&text);
        assert_eq!(known.len(), 2);
        let got: Vec<String> = known.warnings().iter().map(|w| w.to_string()).collect();
        assert_eq!(
            got,
            [
                "kh:2: missing key",
                "kh:3: unknown marker",
                "kh:4: invalid key",
                "kh:5: missing host patterns",
                "kh:6: invalid key",
            ]
        );
        assert_eq!(known.verify("host3", 22, &key(ED1)), trusted(7));
    }

    #[test]
    fn load_reads_files_in_order_and_tolerates_missing_ones() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        let b = dir.path().join("b");
        fs::write(&a, format!("host1 {}\n", bare(ED1))).unwrap();
        let mut invalid = b"\xff\xfe not utf8\n".to_vec();
        invalid.extend_from_slice(format!("host1 {}\nhost2 {}\n", bare(ED2), bare(ED2)).as_bytes());
        fs::write(&b, invalid).unwrap();
        let missing = dir.path().join("missing");

        let known = KnownHosts::load(&[missing, a.clone(), b.clone()]).unwrap();
        assert_eq!(known.len(), 3);
        assert_eq!(
            known.verify("host1", 22, &key(ED1)),
            Verdict::Trusted { file: a, line: 1 }
        );
        assert_eq!(
            known.verify("host2", 22, &key(ED2)),
            Verdict::Trusted {
                file: b.clone(),
                line: 3
            }
        );
        assert_eq!(
            known.warnings(),
            [Warning {
                file: b,
                line: 1,
                reason: "line is not valid UTF-8".into()
            }]
        );
    }

    #[test]
    fn load_reports_unreadable_files() {
        let dir = tempfile::tempdir().unwrap();
        // A directory cannot be read as a file.
        let err = KnownHosts::load(&[dir.path().to_owned()]).unwrap_err();
        assert!(matches!(err, Error::Read { .. }), "{err}");
    }

    #[test]
    fn entry_lines() {
        assert_eq!(
            KnownHosts::entry_line("127.0.0.1", 2222, &key(ED1)),
            format!("[127.0.0.1]:2222 {}", bare(ED1))
        );
        assert_eq!(
            KnownHosts::entry_line("Web1.Example.com", 22, &key(ED1)),
            format!("web1.example.com {}", bare(ED1))
        );
        assert_eq!(
            KnownHosts::entry_line("::1", 2222, &key(ED1)),
            format!("[::1]:2222 {}", bare(ED1))
        );
    }

    #[test]
    fn hashed_entry_lines_round_trip() {
        let line = KnownHosts::entry_line_hashed("10.1.2.3", 2200, &key(ED1)).unwrap();
        assert!(line.starts_with("|1|"), "{line}");
        assert!(!line.contains("10.1.2.3"));
        let known = kh(&line);
        assert_eq!(known.verify("10.1.2.3", 2200, &key(ED1)), trusted(1));
        assert_eq!(known.verify("10.1.2.3", 22, &key(ED1)), Verdict::Unknown);
        let other = KnownHosts::entry_line_hashed("10.1.2.3", 2200, &key(ED1)).unwrap();
        assert_ne!(line, other, "each line gets a fresh salt");
    }

    #[cfg(unix)]
    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn append_creates_private_dirs_and_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("new/.ssh/known_hosts");
        KnownHosts::append(&file, "127.0.0.1", 2222, &key(ED1)).unwrap();
        KnownHosts::append(&file, "host2", 22, &key(ED2)).unwrap();
        assert_eq!(
            fs::read_to_string(&file).unwrap(),
            format!("[127.0.0.1]:2222 {}\nhost2 {}\n", bare(ED1), bare(ED2))
        );
        #[cfg(unix)]
        {
            assert_eq!(mode(&file), 0o600);
            assert_eq!(mode(file.parent().unwrap()), 0o700);
            assert_eq!(mode(&dir.path().join("new")), 0o700);
        }
        let known = KnownHosts::load(&[file]).unwrap();
        assert!(matches!(
            known.verify("127.0.0.1", 2222, &key(ED1)),
            Verdict::Trusted { line: 1, .. }
        ));
        assert!(matches!(
            known.verify("host2", 22, &key(ED2)),
            Verdict::Trusted { line: 2, .. }
        ));
    }

    #[test]
    fn append_adds_missing_final_newline_only_when_needed() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("known_hosts");
        fs::write(&file, format!("host1 {}", bare(ED1))).unwrap();
        KnownHosts::append(&file, "host2", 22, &key(ED2)).unwrap();
        assert_eq!(
            fs::read_to_string(&file).unwrap(),
            format!("host1 {}\nhost2 {}\n", bare(ED1), bare(ED2))
        );

        let empty = dir.path().join("empty");
        fs::write(&empty, "").unwrap();
        KnownHosts::append(&empty, "host2", 22, &key(ED2)).unwrap();
        assert_eq!(
            fs::read_to_string(&empty).unwrap(),
            format!("host2 {}\n", bare(ED2))
        );
    }

    #[test]
    fn append_refuses_unrecordable_input() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("known_hosts");
        for host in ["", "a b", "a,b", "#x", "@revoked", "|1|x", "!x"] {
            assert!(
                matches!(
                    KnownHosts::append(&file, host, 22, &key(ED1)),
                    Err(Error::InvalidHost(_))
                ),
                "{host:?}"
            );
        }
        let bad_key = HostKey {
            algorithm: "ssh-ed25519".into(),
            blob: "not base64".into(),
        };
        assert!(matches!(
            KnownHosts::append(&file, "h", 22, &bad_key),
            Err(Error::InvalidKey(_))
        ));
        assert!(!file.exists());
    }
}
