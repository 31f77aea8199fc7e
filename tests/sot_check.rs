//! `maestro sot check` against the example SoT and a corpus of broken SoTs.
//!
//! Each case in `tests/sot-corpus/` holds the files it replaces in `base/`
//! (a `*.delete` file removes one) and `expect.txt`: one `code file:line:col`
//! per expected problem. The reported set must equal the expected set exactly.

mod common;

use std::collections::BTreeSet;
use std::path::Path;

use common::*;

const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sot-corpus");

fn diagnostics(sot: &Path) -> (i32, BTreeSet<String>, String) {
    let o = run(&["--json", "--sot", sot.to_str().unwrap(), "sot", "check"]);
    let mut found = BTreeSet::new();
    for line in stdout(&o).lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("each line is JSON");
        if v["event"] == "diagnostic" {
            let d = &v["diagnostic"];
            let file = Path::new(d["file"].as_str().unwrap());
            let rel = file.strip_prefix(sot).unwrap_or(file);
            found.insert(format!(
                "{} {}:{}:{}",
                d["code"].as_str().unwrap(),
                rel.display(),
                d["line"],
                d["col"]
            ));
        }
    }
    (o.status.code().unwrap(), found, stdout(&o))
}

#[test]
fn the_example_sot_is_valid() {
    let o = run(&[
        "--sot",
        concat!(env!("CARGO_MANIFEST_DIR"), "/sot"),
        "sot",
        "check",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("12 nodes"), "{}", stdout(&o));
}

#[test]
fn the_corpus_base_is_valid() {
    let (code, found, out) = diagnostics(&Path::new(CORPUS).join("base"));
    assert_eq!((code, found.len()), (0, 0), "{out}");
}

#[test]
fn every_broken_variant_is_reported_at_the_right_place() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cases: Vec<_> = std::fs::read_dir(CORPUS)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir() && !p.ends_with("base"))
        .collect();
    cases.sort();
    assert!(
        cases.len() >= 20,
        "the corpus must keep at least 20 broken variants, has {}",
        cases.len()
    );
    let mut failures = Vec::new();
    for case in &cases {
        let name = case.file_name().unwrap().to_string_lossy().into_owned();
        let sot = tmp.path().join(&name);
        copy_dir(&Path::new(CORPUS).join("base"), &sot);
        copy_dir(case, &sot);
        std::fs::remove_file(sot.join("expect.txt")).unwrap();
        for e in walk_files(&sot) {
            if let Some(target) = e.to_str().and_then(|s| s.strip_suffix(".delete")) {
                std::fs::remove_file(&e).unwrap();
                std::fs::remove_file(target).unwrap();
            }
        }
        let expected: BTreeSet<String> = std::fs::read_to_string(case.join("expect.txt"))
            .unwrap_or_else(|_| panic!("{name} has no expect.txt"))
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(str::to_string)
            .collect();
        let (code, found, out) = diagnostics(&sot);
        if code != 2 || found != expected {
            failures.push(format!(
                "{name}: exit {code}\n  expected {expected:?}\n  found    {found:?}\n{out}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn walk_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk_files(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn text_output_shows_file_line_col_snippet_caret_and_hint() {
    let tmp = tempfile::tempdir().unwrap();
    let sot = tmp.path().join("s");
    copy_dir(&Path::new(CORPUS).join("base"), &sot);
    copy_dir(&Path::new(CORPUS).join("18-dangling-group-on-node"), &sot);
    let o = run(&["--sot", sot.to_str().unwrap(), "sot", "check"]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    let shown = err.replace(sot.to_str().unwrap(), "SOT");
    assert_eq!(
        shown,
        "error[dangling-ref]: unknown group `wbe`\n \
         --> SOT/nodes.toml:3:11\n  \
         |\n\
         3 | groups = [\"wbe\"]\n  \
         |           ^^^^^\n  \
         = hint: did you mean `web`?\n\n\
         1 problem found; nothing was changed\n"
    );
}

#[test]
fn a_directory_without_maestro_toml_is_invalid_input() {
    let tmp = tempfile::tempdir().unwrap();
    let o = run(&["--sot", tmp.path().to_str().unwrap(), "sot", "check"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("maestro init"), "{}", stderr(&o));
}

#[test]
fn symlinks_that_lead_outside_the_sot_are_refused_not_read() {
    use std::os::unix::fs::symlink;
    let tmp = tempfile::tempdir().unwrap();
    let sot = tmp.path().join("s");
    copy_dir(&Path::new(CORPUS).join("base"), &sot);
    let secret = tmp.path().join("secret.toml");
    std::fs::write(&secret, "[node.leak]\naddress = \"SECRET-CONTENT\"\n").unwrap();
    std::fs::create_dir_all(sot.join("nodes")).unwrap();
    symlink("/etc/passwd", sot.join("nodes/passwd.toml")).unwrap();
    symlink(&secret, sot.join("playbooks/leak.toml")).unwrap();
    // A symlink that stays inside the SoT is fine.
    std::fs::create_dir_all(sot.join("real")).unwrap();
    std::fs::rename(sot.join("groups.toml"), sot.join("real/groups.toml")).unwrap();
    symlink("real/groups.toml", sot.join("groups.toml")).unwrap();

    let (code, found, out) = diagnostics(&sot);
    assert_eq!(code, 2, "{out}");
    assert_eq!(
        found,
        BTreeSet::from([
            "outside-sot nodes/passwd.toml:1:1".to_string(),
            "outside-sot playbooks/leak.toml:1:1".to_string(),
        ]),
        "{out}"
    );
    let o = run(&["--sot", sot.to_str().unwrap(), "sot", "check"]);
    let err = stderr(&o);
    assert!(
        err.contains("nodes/passwd.toml is a symlink to /etc/passwd, outside"),
        "{err}"
    );
    assert!(
        !err.contains("root:") && !err.contains("SECRET-CONTENT"),
        "nothing of the targets is shown:\n{err}"
    );

    // The connection files named in maestro.toml are judged the same way.
    std::fs::remove_file(sot.join("nodes/passwd.toml")).unwrap();
    std::fs::remove_file(sot.join("playbooks/leak.toml")).unwrap();
    symlink("/etc/passwd", sot.join("known_hosts")).unwrap();
    let settings = std::fs::read_to_string(sot.join("maestro.toml")).unwrap();
    std::fs::write(
        sot.join("maestro.toml"),
        format!("{settings}\n[connection]\nknown_hosts = \"known_hosts\"\n"),
    )
    .unwrap();
    let (code, found, out) = diagnostics(&sot);
    assert_eq!(code, 2, "{out}");
    assert_eq!(
        found,
        BTreeSet::from(["outside-sot maestro.toml:13:15".to_string()]),
        "{out}"
    );
}
