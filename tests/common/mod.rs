//! Helpers shared by the integration tests: run the real binary in scratch
//! directories (the pattern of ripgrep's and bottom's `tests/util.rs`).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub mod api;
pub mod fleet;
pub mod load;

/// The maestro binary under test, with a clean environment for SoT lookups.
pub fn maestro() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_maestro"));
    c.env_remove("MAESTRO_SOT").env_remove("MAESTRO_ACTOR");
    c
}

pub fn run(args: &[&str]) -> Output {
    maestro().args(args).output().expect("maestro runs")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Copy a directory tree.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

/// Every file under `dir` (including `.git`) with its bytes: compare two of
/// these to prove nothing changed.
pub fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            if e.file_type().unwrap().is_dir() {
                walk(root, &p, out);
            } else {
                out.insert(
                    p.strip_prefix(root).unwrap().to_path_buf(),
                    std::fs::read(&p).unwrap(),
                );
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

pub fn git(dir: &Path, args: &[&str]) -> String {
    let o = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .expect("git runs");
    assert!(
        o.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A fresh SoT repository made by `maestro init`.
pub fn init_sot(parent: &Path, name: &str) -> PathBuf {
    let dir = parent.join(name);
    let o = run(&[
        "init",
        dir.to_str().unwrap(),
        "--actor",
        "Test Runner <runner@example.com>",
    ]);
    assert!(o.status.success(), "init failed: {}", stderr(&o));
    dir
}

/// A SoT made by `maestro init` whose operator, `ada-lovelace`, signs with
/// a fresh SSH key (so the example's policies let her jobs run), with a run
/// store beside it and one node, `closed`, on a loopback port nobody
/// listens on: a job on it is a run with an unreachable node.
pub struct ClosedNodeSot {
    pub tmp: tempfile::TempDir,
    pub sot: PathBuf,
    pub db: PathBuf,
    /// Ada's private key (`.pub` beside it is in people.toml).
    pub key: PathBuf,
}

impl ClosedNodeSot {
    pub fn new() -> ClosedNodeSot {
        let tmp = tempfile::tempdir().unwrap();
        let key = tmp.path().join("ada");
        let o = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "ada", "-f"])
            .arg(&key)
            .output()
            .expect("ssh-keygen runs (openssh-client is installed by .ci/run)");
        assert!(o.status.success(), "{}", stderr(&o));
        let s = ClosedNodeSot {
            sot: tmp.path().join("fleet"),
            db: tmp.path().join("runs.db"),
            key,
            tmp,
        };
        let o = maestro()
            .args([
                "init",
                s.sot.to_str().unwrap(),
                "--person",
                "ada-lovelace",
                "--key",
            ])
            .arg(s.key.with_extension("pub"))
            .args(["--actor", "Ada <ada@example.org>"])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
        let o = s.maestro(&[
            "node",
            "add",
            "closed",
            "--address",
            "127.0.0.1",
            "--port",
            "1",
            "-t",
            "env=test",
            "-t",
            "region=eu-west",
            "-t",
            "jurisdiction=eu",
            "-t",
            "pii=none",
            "-t",
            "role=batch",
            "--reason",
            "a node nobody listens for",
        ]);
        assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
        s
    }

    /// `maestro --sot SOT --db DB ARGS` as ada (her key, her name on
    /// commits), without a terminal.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = maestro();
        c.arg("--sot")
            .arg(&self.sot)
            .arg("--db")
            .arg(&self.db)
            .args(args)
            .env("HOME", self.tmp.path())
            .env("MAESTRO_IDENTITY", &self.key)
            .env("MAESTRO_ACTOR", "Ada <ada@example.org>")
            .stdin(std::process::Stdio::null());
        c
    }

    pub fn maestro(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("maestro runs")
    }

    /// The id of the newest run in the store.
    pub fn last_run(&self) -> String {
        newest_run(&self.maestro(&["--json", "runs"]))
    }
}

/// The newest run's id in the output of `maestro --json runs`.
pub fn newest_run(runs: &Output) -> String {
    stdout(runs)
        .lines()
        .find_map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).ok()?;
            v["run"]["id"].as_str().map(str::to_string)
        })
        .expect("the run is in the store")
}
