//! Mutation tests for the parsers of the operator's files that maestro
//! reads (ssh_config, known_hosts): realistic files from
//! `tests/data/parser-corpus/` with byte flips, truncations, insertions of
//! syntax characters and random or invalid UTF-8 bytes, deletions and
//! duplicated lines. Whatever the damage, the parser answers with a value or
//! a diagnostic that names the file; it never panics.
//!
//! `cargo test` runs a short round; `PROPTEST_CASES=N` sets the number of
//! mutated files per parser for a longer one (e.g. `PROPTEST_CASES=20000
//! cargo test --lib parser_mutations`).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

use super::known_hosts::{HostKey, KnownHosts};
use super::ssh_config::{Error, SshConfig};

/// Mutated files per parser in a normal `cargo test` run.
const DEFAULT_CASES: u32 = 2000;

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_CASES)
}

fn corpus(kind: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/parser-corpus")
        .join(kind);
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .filter(|e| e.path().is_file())
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no corpus in {}", dir.display());
    files
}

/// One change to a file. Positions are taken modulo the file's length.
#[derive(Debug, Clone)]
enum Mutation {
    FlipBit { at: usize, bit: u8 },
    Truncate { at: usize },
    Insert { at: usize, bytes: Vec<u8> },
    Delete { at: usize, len: usize },
    DuplicateLine { from: usize, to: usize },
}

/// Bytes that mean something to these parsers, and byte sequences that are
/// not UTF-8 (a lone continuation byte, a truncated sequence, a surrogate,
/// an overlong encoding).
const INTERESTING: &[&[u8]] = &[
    b"\"",
    b"'",
    b"\\",
    b"=",
    b"#",
    b"%",
    b"%h",
    b"%C",
    b"*",
    b"?",
    b"!",
    b",",
    b"\n",
    b"\r",
    b"\t",
    b" ",
    b"[",
    b"]:",
    b"|1|",
    b"@",
    b"~",
    b"~/",
    b"none",
    b"Host ",
    b"Match ",
    b"all",
    b"host ",
    b"final ",
    b"Include ",
    b"Port ",
    b"99999",
    b"\0",
    b"\xff",
    b"\xc3",
    b"\xe2\x82",
    b"\xed\xa0\x80",
    b"\xc0\xaf",
];

fn mutation() -> impl Strategy<Value = Mutation> {
    let bytes = prop_oneof![
        prop::sample::select(INTERESTING).prop_map(<[u8]>::to_vec),
        prop::collection::vec(any::<u8>(), 1..8),
    ];
    prop_oneof![
        (any::<usize>(), 0u8..8).prop_map(|(at, bit)| Mutation::FlipBit { at, bit }),
        any::<usize>().prop_map(|at| Mutation::Truncate { at }),
        (any::<usize>(), bytes).prop_map(|(at, bytes)| Mutation::Insert { at, bytes }),
        (any::<usize>(), 1usize..40).prop_map(|(at, len)| Mutation::Delete { at, len }),
        (any::<usize>(), any::<usize>())
            .prop_map(|(from, to)| Mutation::DuplicateLine { from, to }),
    ]
}

fn apply(text: &mut Vec<u8>, mutation: &Mutation) {
    let len = text.len();
    let pos = |at: usize| if len == 0 { 0 } else { at % (len + 1) };
    match mutation {
        Mutation::FlipBit { at, bit } => {
            if len > 0 {
                text[at % len] ^= 1 << bit;
            }
        }
        Mutation::Truncate { at } => text.truncate(pos(*at)),
        Mutation::Insert { at, bytes } => {
            let at = pos(*at);
            text.splice(at..at, bytes.iter().copied());
        }
        Mutation::Delete { at, len: n } => {
            let at = pos(*at);
            let end = (at + n).min(len);
            text.drain(at..end);
        }
        Mutation::DuplicateLine { from, to } => {
            let lines: Vec<Vec<u8>> = text
                .split_inclusive(|&b| b == b'\n')
                .map(<[u8]>::to_vec)
                .collect();
            if lines.is_empty() {
                return;
            }
            let line = lines[from % lines.len()].clone();
            let mut out = lines;
            let to = to % (out.len() + 1);
            out.insert(to, line);
            *text = out.concat();
        }
    }
}

/// A corpus file with a few mutations applied.
fn mutated(kind: &str) -> impl Strategy<Value = (String, Vec<u8>)> + use<> {
    let files = corpus(kind);
    (0..files.len(), prop::collection::vec(mutation(), 1..6)).prop_map(move |(index, mutations)| {
        let (name, mut text) = files[index].clone();
        for m in &mutations {
            apply(&mut text, m);
        }
        (name, text)
    })
}

fn runner() -> TestRunner {
    TestRunner::new(Config {
        cases: cases(),
        // The shrunk input is printed on failure; no files in the tree.
        failure_persistence: None,
        ..Config::default()
    })
}

#[test]
fn mutated_ssh_configs_give_a_config_or_a_diagnostic_never_a_panic() {
    let home = tempfile::tempdir().unwrap();
    let ssh = home.path().join(".ssh");
    std::fs::create_dir_all(ssh.join("config.d")).unwrap();
    let include = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/parser-corpus/ssh_config/include/10-extra.conf");
    std::fs::copy(include, ssh.join("config.d/10-extra.conf")).unwrap();
    let file = ssh.join("config");
    let (parsed, refused) = (AtomicUsize::new(0), AtomicUsize::new(0));
    runner()
        .run(&mutated("ssh_config"), |(name, text)| {
            std::fs::write(&file, &text).unwrap();
            match SshConfig::load(&file, home.path()) {
                Ok(config) => {
                    parsed.fetch_add(1, Ordering::Relaxed);
                    for host in ["web1", "bastion", "db-main", "i-0abc", "x.prod", "quoted"] {
                        let resolved = config.resolve(host, "alice");
                        prop_assert!(resolved.port != Some(0));
                    }
                }
                Err(e @ Error::Syntax { .. }) => {
                    refused.fetch_add(1, Ordering::Relaxed);
                    // file:line: what is wrong, in this file or one it includes.
                    let message = e.to_string();
                    prop_assert!(
                        message.starts_with(&ssh.display().to_string()),
                        "{name}: diagnostic without its file: {message}"
                    );
                }
                Err(e @ Error::Read { .. }) => {
                    // An Include that names a directory or unreadable file.
                    prop_assert!(e.to_string().starts_with("cannot read "), "{name}: {e}");
                }
            }
            Ok(())
        })
        .unwrap();
    // The mutations must exercise both outcomes, or this tests nothing.
    let (parsed, refused) = (parsed.into_inner(), refused.into_inner());
    assert!(
        parsed > 0 && refused > 0,
        "parsed {parsed}, refused {refused}"
    );
}

#[test]
fn mutated_known_hosts_give_entries_or_warnings_never_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let file: PathBuf = dir.path().join("known_hosts");
    let key = HostKey::parse_openssh(
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl",
    )
    .unwrap();
    let (clean, warned) = (AtomicUsize::new(0), AtomicUsize::new(0));
    runner()
        .run(&mutated("known_hosts"), |(name, text)| {
            std::fs::write(&file, &text).unwrap();
            let known = KnownHosts::load(std::slice::from_ref(&file)).unwrap();
            let outcome = if known.warnings().is_empty() {
                &clean
            } else {
                &warned
            };
            outcome.fetch_add(1, Ordering::Relaxed);
            for w in known.warnings() {
                // Every skipped line is reported with its file and line.
                prop_assert!(w.file == file && w.line >= 1, "{name}: {w}");
                prop_assert!(w.line <= text.split(|&b| b == b'\n').count(), "{name}: {w}");
            }
            for (host, port) in [
                ("web1.example.com", 22),
                ("10.0.0.12", 2222),
                ("db-legacy.internal", 22),
                ("10.0.1.5", 2200),
                ("", 0),
            ] {
                let _ = known.verify(host, port, &key);
                for k in known.known_keys(host, port) {
                    prop_assert!(!k.key.fingerprint().is_empty());
                }
            }
            // The same text handed over as a string (lossily decoded).
            let lossy = String::from_utf8_lossy(&text);
            let again = KnownHosts::parse_str(&file, &lossy);
            prop_assert!(again.len() + again.warnings().len() <= lossy.split('\n').count());
            Ok(())
        })
        .unwrap();
    let (clean, warned) = (clean.into_inner(), warned.into_inner());
    assert!(clean > 0 && warned > 0, "clean {clean}, warned {warned}");
}
