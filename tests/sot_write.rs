//! Writes to the SoT: each is exactly one git commit that says who and why,
//! touches only the intended table, keeps comments, and a refused write
//! leaves the repository byte-identical.

mod common;

use std::path::Path;

use common::*;

const ACTOR: &str = "Alice Ops <alice@example.com>";

fn commit_count(dir: &Path) -> usize {
    git(dir, &["rev-list", "--count", "HEAD"])
        .trim()
        .parse()
        .unwrap()
}

fn add_gpu_node(sot: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "--sot",
        sot.to_str().unwrap(),
        "node",
        "add",
        "gpu-eu-05",
        "--address",
        "10.20.2.25",
        "--group",
        "gpu",
        "-t",
        "env=prod",
        "-t",
        "region=eu-west",
        "-t",
        "jurisdiction=eu",
        "-t",
        "pii=none",
        "-t",
        "role=inference",
        "--reason",
        "scale out EU inference for the launch",
    ];
    args.extend_from_slice(extra);
    run(&args)
}

#[test]
fn node_add_is_one_commit_that_only_appends_the_new_table() {
    let tmp = tempfile::tempdir().unwrap();
    let sot = init_sot(tmp.path(), "fleet");
    let before = std::fs::read_to_string(sot.join("nodes.toml")).unwrap();
    let commits = commit_count(&sot);

    let o = add_gpu_node(&sot, &["--actor", ACTOR]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(commit_count(&sot), commits + 1);

    // Only nodes.toml changed, and only by lines added at its end.
    assert_eq!(
        git(&sot, &["show", "--name-only", "--format=", "HEAD"]).trim(),
        "nodes.toml"
    );
    let after = std::fs::read_to_string(sot.join("nodes.toml")).unwrap();
    assert!(
        after.starts_with(&before),
        "every existing line and comment must be kept"
    );
    assert_eq!(
        &after[before.len()..],
        "\n[node.gpu-eu-05]\naddress = \"10.20.2.25\"\ngroups = [\"gpu\"]\n\
         tags = { env = \"prod\", region = \"eu-west\", jurisdiction = \"eu\", pii = \"none\", role = \"inference\" }\n"
    );
    // Who and why.
    let msg = git(&sot, &["log", "-1", "--format=%an <%ae>%n%B"]);
    assert!(msg.starts_with("Alice Ops <alice@example.com>\nnode add gpu-eu-05: scale out EU inference for the launch"), "{msg}");
    assert!(
        msg.contains("Maestro-Actor: Alice Ops <alice@example.com>"),
        "{msg}"
    );
    // The working tree is clean and the result is a valid SoT that has the node.
    assert_eq!(git(&sot, &["status", "--porcelain"]), "");
    let show = run(&["--sot", sot.to_str().unwrap(), "node", "show", "gpu-eu-05"]);
    assert!(stdout(&show).contains("10.20.2.25"), "{}", stdout(&show));
}

#[test]
fn refused_writes_leave_the_repository_byte_identical() {
    let tmp = tempfile::tempdir().unwrap();
    let sot = init_sot(tmp.path(), "fleet");
    let s = sot.to_str().unwrap();

    // 1. The change would make the SoT invalid (unknown group, bad tag value).
    let before = snapshot(&sot);
    let o = run(&[
        "--sot",
        s,
        "node",
        "add",
        "web-9",
        "--address",
        "10.9.9.9",
        "--group",
        "gpus",
        "-t",
        "env=production",
        "-t",
        "region=eu-west",
        "-t",
        "jurisdiction=eu",
        "-t",
        "pii=none",
        "-t",
        "role=gateway",
        "--reason",
        "r",
        "--actor",
        ACTOR,
    ]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(
        err.contains("nothing was written")
            && err.contains("unknown group `gpus`")
            && err.contains("did you mean `gpu`?"),
        "{err}"
    );
    assert_eq!(
        snapshot(&sot),
        before,
        "an invalid change must not touch a byte"
    );

    // 2. The file to change has uncommitted edits.
    let nodes = sot.join("nodes.toml");
    let mut text = std::fs::read_to_string(&nodes).unwrap();
    text.push_str("# an operator's edit in progress\n");
    std::fs::write(&nodes, &text).unwrap();
    let before = snapshot(&sot);
    let o = add_gpu_node(&sot, &["--actor", ACTOR]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("uncommitted edits"), "{}", stderr(&o));
    assert_eq!(
        snapshot(&sot),
        before,
        "a refused write must not touch a byte"
    );

    // 3. The name already exists, and 4. an unknown node is tagged.
    git(&sot, &["checkout", "nodes.toml"]);
    let before = snapshot(&sot);
    let o = run(&[
        "--sot",
        s,
        "node",
        "add",
        "gpu-eu-01",
        "--address",
        "10.1.1.1",
        "--reason",
        "r",
        "--actor",
        ACTOR,
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("already exists"));
    let o = run(&[
        "--sot", s, "node", "tag", "gpu-eu-1", "env=dev", "--reason", "r", "--actor", ACTOR,
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("did you mean `gpu-eu-01`?"),
        "{}",
        stderr(&o)
    );
    // 5. No reason given: clap refuses before anything runs.
    let o = run(&["--sot", s, "node", "remove", "gpu-eu-01", "--actor", ACTOR]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(snapshot(&sot), before);
}

#[test]
fn staged_changes_elsewhere_do_not_ride_along() {
    let tmp = tempfile::tempdir().unwrap();
    let sot = init_sot(tmp.path(), "fleet");
    let groups = sot.join("groups.toml");
    let mut text = std::fs::read_to_string(&groups).unwrap();
    text.push_str("# staged but not committed\n");
    std::fs::write(&groups, &text).unwrap();
    git(&sot, &["add", "groups.toml"]);

    let o = add_gpu_node(&sot, &["--actor", ACTOR]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        git(&sot, &["show", "--name-only", "--format=", "HEAD"]).trim(),
        "nodes.toml"
    );
    // The operator's staged edit is still staged, untouched.
    assert_eq!(
        git(&sot, &["diff", "--cached", "--name-only"]).trim(),
        "groups.toml"
    );
}

#[test]
fn tag_and_remove_change_only_their_lines() {
    let tmp = tempfile::tempdir().unwrap();
    let sot = init_sot(tmp.path(), "fleet");
    let s = sot.to_str().unwrap();

    let o = run(&[
        "--sot",
        s,
        "node",
        "tag",
        "gpu-eu-03",
        "env=staging",
        "--reason",
        "drain for maintenance",
        "--actor",
        ACTOR,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let diff = git(&sot, &["show", "--format=", "-U0", "HEAD"]);
    let changed: Vec<&str> = diff
        .lines()
        .filter(|l| l.starts_with(['+', '-']) && !l.starts_with("+++") && !l.starts_with("---"))
        .collect();
    assert_eq!(
        changed,
        [
            "-tags = { env = \"prod\", region = \"eu-west\", jurisdiction = \"eu\", pii = \"none\", role = \"inference\" }",
            "+tags = { env = \"staging\", region = \"eu-west\", jurisdiction = \"eu\", pii = \"none\", role = \"inference\" }",
        ]
    );

    // gpu-eu-03 is listed in group canary: removing it would dangle, so it is refused.
    let o = run(&[
        "--sot",
        s,
        "node",
        "remove",
        "gpu-eu-03",
        "--reason",
        "decommission",
        "--actor",
        ACTOR,
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("unknown node `gpu-eu-03`"),
        "{}",
        stderr(&o)
    );

    let before = std::fs::read_to_string(sot.join("nodes.toml")).unwrap();
    let o = run(&[
        "--sot",
        s,
        "node",
        "remove",
        "gw-us-02",
        "--reason",
        "decommission",
        "--actor",
        ACTOR,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let after = std::fs::read_to_string(sot.join("nodes.toml")).unwrap();
    let removed = "\n[node.gw-us-02]\naddress = \"10.40.1.12\"\ngroups = [\"gateways\"]\n\
        tags = { env = \"prod\", region = \"us-east\", jurisdiction = \"us\", pii = \"restricted\", role = \"gateway\" }\n";
    assert_eq!(after, before.replacen(removed, "", 1));
    assert!(
        after.contains("# ---- US (Virginia)"),
        "section comments survive"
    );
}

#[test]
fn agents_are_added_tagged_and_removed_through_commits() {
    let tmp = tempfile::tempdir().unwrap();
    let sot = init_sot(tmp.path(), "fleet");
    let s = sot.to_str().unwrap();
    let o = run(&[
        "--sot",
        s,
        "agent",
        "add",
        "doc-search",
        "--model",
        "llama-3-1-8b-instruct",
        "--autonomy",
        "L1",
        "--owner",
        "team-docs",
        "--reason",
        "new internal search agent",
        "--actor",
        ACTOR,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run(&[
        "--sot",
        s,
        "agent",
        "tag",
        "doc-search",
        "pii=none",
        "--reason",
        "classified",
        "--actor",
        ACTOR,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let list = stdout(&run(&["--sot", s, "agent", "list"]));
    assert!(
        list.lines()
            .any(|l| l.starts_with("doc-search") && l.contains("L1")),
        "{list}"
    );

    let o = run(&[
        "--sot",
        s,
        "agent",
        "add",
        "rogue",
        "--model",
        "gpt-9",
        "--autonomy",
        "L9",
        "--reason",
        "r",
        "--actor",
        ACTOR,
    ]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(
        err.contains("unknown model `gpt-9`") && err.contains("autonomy level must be one of"),
        "{err}"
    );

    let o = run(&[
        "--sot",
        s,
        "agent",
        "remove",
        "doc-search",
        "--reason",
        "retired",
        "--actor",
        ACTOR,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let log = stdout(&run(&["--sot", s, "sot", "log"]));
    let summaries: Vec<&str> = log
        .lines()
        .filter(|l| l.starts_with("    "))
        .map(str::trim)
        .collect();
    assert_eq!(
        summaries,
        [
            "agent remove doc-search: retired",
            "agent tag doc-search pii=none: classified",
            "agent add doc-search: new internal search agent",
            "init: new SoT `fleet` from the maestro example",
        ]
    );
    assert!(log.contains("Alice Ops <alice@example.com>"), "{log}");
}

#[test]
fn the_author_comes_from_git_config_when_no_actor_is_given() {
    let tmp = tempfile::tempdir().unwrap();
    let sot = init_sot(tmp.path(), "fleet");
    git(&sot, &["config", "user.name", "Bob Config"]);
    git(&sot, &["config", "user.email", "bob@example.com"]);
    let o = add_gpu_node(&sot, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        git(&sot, &["log", "-1", "--format=%an <%ae>"]).trim(),
        "Bob Config <bob@example.com>"
    );
}

#[test]
fn init_scaffolds_the_example_and_refuses_a_non_empty_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let sot = init_sot(tmp.path(), "fleet");
    // The embedded example is the repository's example, file for file.
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    for f in ["nodes.toml", "groups.toml", "models.toml", "agents.toml"] {
        assert_eq!(
            std::fs::read(sot.join(f)).unwrap(),
            std::fs::read(repo.join("sot").join(f)).unwrap(),
            "{f}"
        );
    }
    for dir in ["profiles", "playbooks", "hardening"] {
        let original = snapshot(&repo.join(dir));
        assert!(!original.is_empty());
        assert_eq!(
            snapshot(&sot.join(dir)),
            original,
            "{dir}/ is copied file for file"
        );
    }
    let o = run(&["--sot", sot.to_str().unwrap(), "sot", "check"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(git(&sot, &["status", "--porcelain"]), "");

    let o = run(&["init", sot.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("not empty"));
}

#[test]
fn actors_that_would_break_the_commit_are_refused_before_anything_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let sot = init_sot(tmp.path(), "fleet");
    let before = snapshot(&sot);
    for actor in [
        // extra header lines in the commit object
        "Mallory <m@example.com>\ncommitter Alice <alice@example.com> 0 +0000",
        "Mallory\r <m@example.com>",
        // a second address: git refused it with exit 5, after the write
        "Mal<lory <m@example.com>",
        "Alice <alice@example.com> <m@example.com>",
        "Alice <alice@exa mple.com>",
        "Alice",
        "<alice@example.com>",
        "Alice <>",
        "Alice <alice@example.com",
    ] {
        let o = add_gpu_node(&sot, &["--actor", actor]);
        assert_eq!(o.status.code(), Some(2), "{actor:?}: {}", stderr(&o));
        assert!(
            stderr(&o).contains("Name <email>"),
            "{actor:?}: {}",
            stderr(&o)
        );
        assert_eq!(snapshot(&sot), before, "{actor:?} must not touch a byte");
    }
    // No dangling malformed commit object was written either.
    let fsck = git(&sot, &["fsck", "--strict", "--no-progress"]);
    assert!(!fsck.contains("dangling commit"), "{fsck}");
}

#[test]
fn a_reason_cannot_forge_the_actor_trailer() {
    let tmp = tempfile::tempdir().unwrap();
    let sot = init_sot(tmp.path(), "fleet");
    let s = sot.to_str().unwrap();
    let before = snapshot(&sot);
    for reason in [
        "routine\n\nMaestro-Actor: Mallory <m@example.com>",
        "routine\nmaestro-actor : Mallory <m@example.com>",
        "routine\n  Maestro-Approved-By: Mallory",
        "routine \x1b]0;title\x07",
    ] {
        let o = run(&[
            "--sot",
            s,
            "node",
            "tag",
            "gpu-eu-03",
            "env=staging",
            "--reason",
            reason,
            "--actor",
            ACTOR,
        ]);
        assert_eq!(o.status.code(), Some(2), "{reason:?}: {}", stderr(&o));
        assert_eq!(snapshot(&sot), before, "{reason:?} must not touch a byte");
    }
    // Mentioning the trailer in prose is fine, and the log names the real actor.
    let o = run(&[
        "--sot",
        s,
        "node",
        "tag",
        "gpu-eu-03",
        "env=staging",
        "--reason",
        "the Maestro-Actor: line is written by maestro",
        "--actor",
        ACTOR,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let log = stdout(&run(&["--sot", s, "sot", "log", "-n", "1"]));
    assert!(log.contains(ACTOR), "{log}");
    let trailers = git(
        &sot,
        &["log", "-1", "--format=%(trailers:key=Maestro-Actor)"],
    );
    assert_eq!(trailers.trim(), format!("Maestro-Actor: {ACTOR}"));
}

/// `[node.NAME]` headers in a nodes.toml text.
fn node_names(text: &str) -> std::collections::BTreeSet<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("[node.")?.strip_suffix(']'))
        .map(str::to_string)
        .collect()
}

#[test]
fn parallel_writers_never_lose_a_commit() {
    let tmp = tempfile::tempdir().unwrap();
    let sot = init_sot(tmp.path(), "fleet");
    let s = sot.to_str().unwrap();
    let mut committed = Vec::new();
    for round in 0..5 {
        // Three real processes started together, racing for nodes.toml.
        let children: Vec<_> = ["a", "b", "c"]
            .iter()
            .enumerate()
            .map(|(i, w)| {
                let name = format!("c{round}{w}");
                let address = format!("10.77.{round}.{}", i + 1);
                let child = maestro()
                    .args([
                        "--sot",
                        s,
                        "node",
                        "add",
                        &name,
                        "--address",
                        &address,
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
                        "race",
                        "--actor",
                        ACTOR,
                    ])
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap();
                (name, child)
            })
            .collect();
        for (name, child) in children {
            let o = child.wait_with_output().unwrap();
            assert!(
                o.status.success(),
                "{name}: exit {:?}: {}",
                o.status.code(),
                stderr(&o)
            );
            assert!(stdout(&o).starts_with("committed "), "{}", stdout(&o));
            committed.push(name);
        }
    }
    // Every reported commit's node exists at the end...
    let nodes = node_names(&std::fs::read_to_string(sot.join("nodes.toml")).unwrap());
    for name in &committed {
        assert!(nodes.contains(name), "{name} was committed but is gone");
    }
    // ...and no commit removed a node an earlier one added.
    let commits = git(&sot, &["rev-list", "--reverse", "HEAD"]);
    let mut previous = std::collections::BTreeSet::new();
    for c in commits.lines() {
        let now = node_names(&git(&sot, &["show", &format!("{c}:nodes.toml")]));
        let lost: Vec<_> = previous.difference(&now).collect();
        assert!(lost.is_empty(), "commit {c} removed {lost:?}");
        previous = now;
    }
    assert_eq!(commit_count(&sot), 1 + committed.len());
    assert!(!sot.join(".git/maestro-sot.lock").exists());
}

#[test]
fn a_writer_that_cannot_get_the_lock_refuses_and_says_who_holds_it() {
    let tmp = tempfile::tempdir().unwrap();
    let sot = init_sot(tmp.path(), "fleet");
    let lock = sot.join(".git/maestro-sot.lock");
    // A live holder: another process in the middle of a change.
    let mut holder = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .unwrap();
    std::fs::write(&lock, format!("pid={}\nwhat=node add other\n", holder.id())).unwrap();
    let before = snapshot(&sot);
    let started = std::time::Instant::now();
    let o = add_gpu_node(&sot, &["--actor", ACTOR, "--wait", "1"]);
    let waited = started.elapsed();
    holder.kill().unwrap();
    holder.wait().unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("another maestro change to this SoT is in progress")
            && err.contains(&format!("pid {}", holder.id()))
            && err.contains("`node add other`")
            && err.contains("Nothing was changed"),
        "{err}"
    );
    assert!(waited >= std::time::Duration::from_secs(1), "{waited:?}");
    assert_eq!(snapshot(&sot), before);

    // The holder is gone now: its lock is stale, and the message says what to do.
    let o = add_gpu_node(&sot, &["--actor", ACTOR]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("was interrupted")
            && err.contains("is no longer running")
            && err.contains(&format!("rm {}", lock.display())),
        "{err}"
    );
    assert_eq!(
        snapshot(&sot),
        before,
        "a stale lock is not broken silently"
    );
    std::fs::remove_file(&lock).unwrap();
    let o = add_gpu_node(&sot, &["--actor", ACTOR]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn node_add_file_must_be_a_file_the_loader_reads() {
    let tmp = tempfile::tempdir().unwrap();
    let sot = init_sot(tmp.path(), "fleet");
    let before = snapshot(&sot);
    let outside = tmp.path().join("outside.toml");
    for file in [
        "other.toml",
        "nodes.txt",
        "nodes/sub/x.toml",
        "nodes/x.txt",
        "nodes/.toml",
        "groups.toml",
        "../outside.toml",
        "nodes/../../outside.toml",
        outside.to_str().unwrap(),
        "/etc/maestro-nodes.toml",
    ] {
        let o = add_gpu_node(&sot, &["--actor", ACTOR, "--file", file]);
        assert_eq!(o.status.code(), Some(2), "{file}: {}", stderr(&o));
        assert!(
            stderr(&o).contains("nodes live in nodes.toml or nodes/NAME.toml"),
            "{file}: {}",
            stderr(&o)
        );
        assert_eq!(snapshot(&sot), before, "{file}");
    }
    assert!(!outside.exists() && !Path::new("/etc/maestro-nodes.toml").exists());

    // A new file under nodes/ is loaded, so the node really exists.
    let o = add_gpu_node(&sot, &["--actor", ACTOR, "--file", "./nodes/eu.toml"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        git(&sot, &["show", "--name-only", "--format=", "HEAD"]).trim(),
        "nodes/eu.toml"
    );
    let show = run(&["--sot", sot.to_str().unwrap(), "node", "show", "gpu-eu-05"]);
    assert!(
        stdout(&show).contains("file = \"nodes/eu.toml\""),
        "{}",
        stdout(&show)
    );
}

/// A token that looks like GitHub's (ghp_ + 36), random each run.
fn github_token() -> String {
    use std::time::{SystemTime, UNIX_EPOCH};
    let mut x = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let body: String = (0..36)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            alphabet[(x % alphabet.len() as u64) as usize] as char
        })
        .collect();
    format!("ghp_{body}")
}

#[test]
fn a_secret_is_never_committed_and_sot_check_names_where_it_is() {
    let tmp = tempfile::tempdir().unwrap();
    let sot = init_sot(tmp.path(), "fleet");
    let s = sot.to_str().unwrap();
    let before = std::fs::read_to_string(sot.join("nodes.toml")).unwrap();
    let commits = commit_count(&sot);
    let token = github_token();

    // A write that would commit it is refused, with the place and the rule.
    let tag = format!("owner={token}");
    let o = run(&[
        "--sot",
        s,
        "node",
        "tag",
        "gpu-eu-01",
        &tag,
        "--reason",
        "who owns it",
        "--actor",
        ACTOR,
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("secret[") || err.contains("error[secret]"),
        "{err}"
    );
    assert!(err.contains("github-token"), "{err}");
    assert!(err.contains("nodes.toml:"), "{err}");
    assert!(
        !err.contains(&token),
        "the secret itself is never printed: {err}"
    );
    assert_eq!(
        std::fs::read_to_string(sot.join("nodes.toml")).unwrap(),
        before
    );
    assert_eq!(commit_count(&sot), commits);

    // A file written behind maestro's back is found by `sot check`.
    std::fs::write(sot.join("notes.txt"), format!("ci token: {token}\n")).unwrap();
    let o = run(&["--sot", s, "sot", "check"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("notes.txt:1:11"), "{}", stderr(&o));
    assert!(!stderr(&o).contains(&token));

    // Allowed by its fingerprint (the hint names it), the SoT is clean again.
    let hint = stderr(&o);
    let at = hint.find("fingerprints = [\"").unwrap() + 17;
    let fp = &hint[at..at + 64];
    std::fs::write(
        sot.join("secrets.toml"),
        format!("[allow]\nfingerprints = [\"{fp}\"]\n"),
    )
    .unwrap();
    let o = run(&["--sot", s, "sot", "check"]);
    assert!(o.status.success(), "{}", stderr(&o));

    // A bad allowlist is an error at its line and column.
    std::fs::write(
        sot.join("secrets.toml"),
        "[allow]\nregexes = [\"(unclosed\"]\n",
    )
    .unwrap();
    let o = run(&["--sot", s, "sot", "check"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("secrets.toml:2:"), "{}", stderr(&o));
}

#[test]
fn the_history_scan_finds_a_secret_a_later_commit_removed() {
    let tmp = tempfile::tempdir().unwrap();
    let sot = init_sot(tmp.path(), "fleet");
    let s = sot.to_str().unwrap();
    let token = github_token();
    let id = ["-c", "user.name=Eve", "-c", "user.email=eve@example.org"];
    std::fs::write(sot.join("notes.txt"), format!("token {token}\n")).unwrap();
    git(&sot, &["add", "notes.txt"]);
    git(&sot, &[id[0], id[1], id[2], id[3], "commit", "-qm", "oops"]);
    git(&sot, &["rm", "-q", "notes.txt"]);
    git(
        &sot,
        &[id[0], id[1], id[2], id[3], "commit", "-qm", "remove it"],
    );
    let clean = run(&["--sot", s, "sot", "scan"]);
    assert!(clean.status.success(), "{}", stderr(&clean));
    let o = run(&["--sot", s, "sot", "scan", "--history"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains(":notes.txt:1:7"), "{}", stderr(&o));
    assert!(!stderr(&o).contains(&token));
}
