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
