//! Mutation tests: every parser that reads operator- or node-supplied bytes
//! (the SoT loader, the playbook and hardening baseline parsers, the task
//! marker parser) is fed randomly damaged copies of real inputs — the example
//! SoT and its libraries, and a real marker stream — and must answer with a
//! result or a diagnostic, never a panic.
//!
//! A short run is part of `cargo test`. `bench/mutate.sh` runs each target
//! for minutes: the environment variables below set the budget.
//!
//! - `MAESTRO_MUTATION_CASES`: cases per target (default 256)
//! - `MAESTRO_MUTATION_SECONDS`: when set, run each target for this long
//!   instead, in batches of `MAESTRO_MUTATION_CASES` cases
//!
//! A failure prints the input that panicked (proptest shrinks it first) and
//! the seed to replay it with `PROPTEST_RNG_SEED`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

use maestro::playbook::report::Parser;

/// One edit to a byte string; positions are indices scaled to its length.
#[derive(Debug, Clone)]
enum Mutation {
    FlipBit(Index, u8),
    /// Overwrite a byte with one that matters to TOML, UTF-8 or a terminal.
    Special(Index, u8),
    Insert(Index, Vec<u8>),
    Delete(Index, usize),
    /// Copy a slice of the input somewhere else (repeats tables, keys, quotes).
    Duplicate(Index, usize, Index),
    Truncate(Index),
}

const SPECIAL: &[u8] = b"\0\x07\x1b\x7f\x80\xbf\xc3\xe2\xf0\xff\"'[]{}=,.\n\r\t#\\ 0-+:";

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<Index>(), 0u8..8).prop_map(|(i, b)| Mutation::FlipBit(i, b)),
        (any::<Index>(), prop::sample::select(SPECIAL)).prop_map(|(i, b)| Mutation::Special(i, b)),
        (any::<Index>(), prop::collection::vec(any::<u8>(), 1..8))
            .prop_map(|(i, v)| Mutation::Insert(i, v)),
        (any::<Index>(), 1usize..64).prop_map(|(i, n)| Mutation::Delete(i, n)),
        (any::<Index>(), 1usize..128, any::<Index>())
            .prop_map(|(i, n, j)| Mutation::Duplicate(i, n, j)),
        any::<Index>().prop_map(Mutation::Truncate),
    ]
}

fn apply(input: &[u8], mutations: &[Mutation]) -> Vec<u8> {
    let mut b = input.to_vec();
    for m in mutations {
        // An index into 0..=len, so inserts can append.
        let at = |i: &Index, len: usize| i.index(len + 1);
        match m {
            Mutation::FlipBit(i, bit) if !b.is_empty() => {
                let p = i.index(b.len());
                b[p] ^= 1 << bit;
            }
            Mutation::Special(i, byte) if !b.is_empty() => {
                let p = i.index(b.len());
                b[p] = *byte;
            }
            Mutation::Insert(i, v) => {
                let p = at(i, b.len());
                b.splice(p..p, v.iter().copied());
            }
            Mutation::Delete(i, n) => {
                let p = at(i, b.len());
                let end = (p + n).min(b.len());
                b.drain(p..end);
            }
            Mutation::Duplicate(from, n, to) if !b.is_empty() => {
                let p = from.index(b.len());
                let end = (p + n).min(b.len());
                let piece = b[p..end].to_vec();
                let q = at(to, b.len());
                b.splice(q..q, piece);
            }
            Mutation::Truncate(i) => {
                let p = at(i, b.len());
                b.truncate(p);
            }
            _ => {}
        }
    }
    b
}

fn mutations() -> impl Strategy<Value = Vec<Mutation>> {
    prop::collection::vec(mutation(), 1..6)
}

/// Run `test` over mutated inputs for the configured budget.
fn fuzz<S, F>(strategy: S, test: F)
where
    S: Strategy,
    S::Value: std::fmt::Debug,
    F: Fn(S::Value) -> Result<(), TestCaseError>,
{
    let cases: u32 = std::env::var("MAESTRO_MUTATION_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(256);
    let budget = std::env::var("MAESTRO_MUTATION_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .map(Duration::from_secs);
    let started = Instant::now();
    let mut total = 0u64;
    loop {
        let mut runner = TestRunner::new(Config {
            cases,
            failure_persistence: None,
            ..Config::default()
        });
        if let Err(e) = runner.run(&strategy, &test) {
            panic!("after {total} passing cases: {e}");
        }
        total += u64::from(cases);
        match budget {
            Some(b) if started.elapsed() < b => continue,
            _ => break,
        }
    }
    // bench/mutate.sh reads this line.
    eprintln!(
        "mutation: {total} cases, 0 panics, {:.1}s",
        started.elapsed().as_secs_f64()
    );
}

/// The example SoT as `maestro init` writes it, in a scratch directory.
struct Scratch {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    /// Every file the loader reads, with its original bytes.
    files: Vec<(PathBuf, Vec<u8>)>,
}

fn scratch_sot() -> Scratch {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("sot");
    let mut files = Vec::new();
    for (rel, text) in maestro::sot::example::scaffold("fleet") {
        let path = root.join(&rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &text).unwrap();
        if rel.extension().is_some_and(|e| e == "toml") && !rel.starts_with("playbooks/files") {
            files.push((rel, text));
        }
    }
    maestro::sot::load(&root).expect("the example SoT is valid");
    Scratch {
        _tmp: tmp,
        root,
        files,
    }
}

fn corpus(dir: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let mut out: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect();
    out.sort();
    assert!(!out.is_empty(), "no corpus in {}", dir.display());
    out
}

#[test]
fn the_sot_loader_never_panics() {
    let s = scratch_sot();
    let n = s.files.len();
    fuzz((0..n, mutations()), |(which, m)| {
        let (rel, original) = &s.files[which];
        let path = s.root.join(rel);
        std::fs::write(&path, apply(original, &m)).unwrap();
        let outcome = std::panic::catch_unwind(|| {
            // Rendering is part of answering: diagnostics must print too.
            if let Err(e) = maestro::sot::load(&s.root) {
                let _ = e.to_string();
            }
        });
        std::fs::write(&path, original).unwrap();
        prop_assert!(
            outcome.is_ok(),
            "loading with {} mutated panicked",
            rel.display()
        );
        Ok(())
    });
}

#[test]
fn the_playbook_parser_never_panics() {
    let files = corpus("playbooks");
    let n = files.len();
    fuzz((0..n, mutations()), |(which, m)| {
        let (path, original) = &files[which];
        let text = String::from_utf8_lossy(&apply(original, &m)).into_owned();
        let _ = maestro::playbook::model::parse(path, &text);
        let file = maestro::diag::SourceFile::new(path.clone(), text);
        let _ = maestro::playbook::check(&file).to_string();
        Ok(())
    });
}

#[test]
fn the_baseline_loader_never_panics() {
    let tmp = tempfile::tempdir().unwrap();
    let files = corpus("hardening");
    for (p, bytes) in &files {
        std::fs::write(tmp.path().join(p.file_name().unwrap()), bytes).unwrap();
    }
    let n = files.len();
    fuzz((0..n, mutations()), |(which, m)| {
        let (p, original) = &files[which];
        let path = tmp.path().join(p.file_name().unwrap());
        std::fs::write(&path, apply(original, &m)).unwrap();
        for (q, _) in &files {
            let name = q.file_stem().unwrap().to_str().unwrap();
            if let Err(e) = maestro::harden::load(tmp.path(), name) {
                let _ = e.to_string();
            }
        }
        let _ = maestro::harden::check_library(tmp.path()).to_string();
        std::fs::write(&path, original).unwrap();
        Ok(())
    });
}

/// What a playbook script prints on a node, markers and task output mixed.
const MARKER_STREAM: &[u8] = b"\x1eMn0nce facts hostname=gpu-eu-01 os=debian arch=x86_64\n\
    \x1eMn0nce begin 0\nsome task output\n\x1eMn0nce diff-begin\n--- /etc/x\n+++ /etc/x\n@@ -1 +1 @@\n-a\n+b\n\
    \x1eMn0nce diff-end\n\x1eMn0nce end 0 changed wrote /etc/x\n\x1eMn0nce begin 1\n\
    \x1eMn0nce out-begin\nline\n\x1eMn0nce out-end\n\x1eMn0nce end 1 failed exit 3\n\
    \x1eMn0nce begin 2\n\x1eMn0nce end 2 skipped when false\n\x1eMn0nce done failed\n";

#[test]
fn the_task_marker_parser_never_panics() {
    let names: Vec<String> = (0..3).map(|i| format!("task {i}")).collect();
    fuzz(
        (mutations(), prop::collection::vec(1usize..64, 1..8)),
        |(m, chunks)| {
            let stream = apply(MARKER_STREAM, &m);
            let mut p = Parser::new("n0nce", names.clone());
            // Chunked as the network would deliver it.
            let mut rest = stream.as_slice();
            let mut sizes = chunks.iter().cycle();
            while !rest.is_empty() {
                let n = (*sizes.next().unwrap()).min(rest.len());
                let (chunk, tail) = rest.split_at(n);
                let _ = p.feed(chunk);
                rest = tail;
            }
            Ok(())
        },
    );
}
