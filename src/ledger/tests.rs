use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use tempfile::TempDir;

use super::checkpoint::{self, Checkpoint, LedgerKey};
use super::*;

fn record(i: u64) -> Record {
    Record {
        kind: Kind::Job,
        run: Some(format!("run-{}", i / 10)),
        actor: Actor {
            name: "Ada <ada@example.com>".into(),
            verified: i.is_multiple_of(2),
            key: Some("SHA256:abc".into()),
        },
        action: "deploy".into(),
        target: "role=gpu".into(),
        description: format!("deploy support-bot 1.{i} — ünïcode \"quoted\""),
        inputs: Inputs {
            sot_commit: Some("0123abcd".into()),
            digests: [("playbook:deploy".to_string(), format!("sha256:{i:064x}"))].into(),
            vars: [("token".to_string(), "***".to_string())].into(),
        },
        policy: vec![PolicyHit {
            policy: "gpu-nodes-need-approval".into(),
            effect: "forbid".into(),
            decision: "allow".into(),
        }],
        decision: "allow".into(),
        approvals: vec!["Grace".into()],
        nodes: vec![NodeEntry {
            node: format!("gpu-{i:02}"),
            outcome: "changed".into(),
        }],
        duration_ms: 1200 + i,
        bytes: 4096 * i,
        note: None,
    }
}

struct Fixture {
    _dir: TempDir,
    /// The file, to tamper with.
    ledger: PathBuf,
    place: Place,
    key: LedgerKey,
    checkpoints: Vec<Checkpoint>,
}

/// A ledger of `n` entries with a signed checkpoint every `every` entries.
fn fixture(n: u64, every: u64) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state").join(FILE);
    let (key, created) = LedgerKey::load_or_create(dir.path().join("ledger.key")).unwrap();
    assert!(created);
    let place = Place::File(path.clone());
    let mut ledger = Ledger::open(&place).unwrap();
    let mut checkpoints = Vec::new();
    for i in 1..=n {
        let entry = ledger.append(record(i)).unwrap();
        assert_eq!(entry.seq, i);
        if i.is_multiple_of(every) {
            ledger.sync().unwrap();
            let (size, head) = ledger.head();
            checkpoints.push(key.sign_checkpoint(size, &head).unwrap());
        }
    }
    Fixture {
        _dir: dir,
        ledger: path,
        place,
        key,
        checkpoints,
    }
}

impl Fixture {
    fn verify(&self) -> Report {
        verify(&self.place, &self.checkpoints, Some(self.keys())).unwrap()
    }

    /// The fixture's key as the SoT would list it.
    fn keys(&self) -> &[ssh_key::PublicKey] {
        std::slice::from_ref(self.key.public_key())
    }

    fn problem(&self) -> Problem {
        let report = self.verify();
        report.problem.expect("verify should find a problem")
    }

    fn lines(&self) -> Vec<String> {
        fs::read_to_string(&self.ledger)
            .unwrap()
            .lines()
            .map(String::from)
            .collect()
    }

    fn write_lines(&self, lines: &[String]) {
        fs::write(&self.ledger, lines.join("\n") + "\n").unwrap();
    }
}

#[test]
fn round_trip_with_checkpoints_verifies() {
    let f = fixture(200, 50);
    let report = f.verify();
    assert_eq!(report.problem, None, "{report:?}");
    assert_eq!((report.entries, report.verified), (200, 200));
    assert_eq!(report.checkpoints_checked, 4);
    assert_eq!(report.head, f.checkpoints[3].head);
    // maestro's own lines take verify's fast path.
    for line in f.lines() {
        assert!(
            super::canonical::split(line.as_bytes(), &mut Vec::new()).is_some(),
            "{line}"
        );
    }

    // The checkpoints file round-trips and still verifies.
    let file = f.ledger.with_file_name("checkpoints.jsonl");
    for c in &f.checkpoints {
        checkpoint::append_line(&file, c).unwrap();
    }
    assert_eq!(checkpoint::read_all(&file).unwrap(), f.checkpoints);

    // A reopened ledger continues the chain.
    let mut ledger = Ledger::open(&f.place).unwrap();
    assert_eq!(ledger.head(), (200, report.head.clone()));
    let next = ledger.append(record(201)).unwrap();
    assert_eq!((next.seq, next.prev.as_str()), (201, report.head.as_str()));
    assert!(f.verify().is_ok());

    // `show` reads typed entries, and filters by run.
    let all = read(&f.place, None).unwrap();
    assert_eq!(all.len(), 201);
    assert_eq!(all[16].body, record(17));
    let run = read(&f.place, Some("run-3")).unwrap();
    assert_eq!(
        run.iter().map(|e| e.seq).collect::<Vec<_>>(),
        (30..=39).collect::<Vec<_>>()
    );
}

#[test]
fn reformatting_a_line_is_not_tampering() {
    let f = fixture(20, 10);
    let mut lines = f.lines();
    // Pretty-printed (on one line) with escapes and key order changed.
    let value: serde_json::Value = serde_json::from_str(&lines[4]).unwrap();
    let pretty = serde_json::to_string_pretty(&value)
        .unwrap()
        .replace('\n', " ");
    lines[4] = pretty.replace("ünïcode", "\\u00fcn\\u00efcode");
    assert_ne!(lines[4], f.lines()[4]);
    f.write_lines(&lines);
    assert_eq!(f.verify().problem, None);
}

#[test]
fn editing_one_byte_names_the_entry() {
    let f = fixture(60, 50);
    let mut lines = f.lines();
    lines[16] = lines[16].replacen("\"bytes\":69632", "\"bytes\":69633", 1);
    assert_ne!(lines[16], f.lines()[16]);
    f.write_lines(&lines);
    let problem = f.problem();
    assert_eq!(problem, Problem::Edited { seq: 17, line: 17 });
    assert_eq!(
        problem.to_string(),
        "entry 17 (line 17) was edited: its hash does not match its contents"
    );
}

#[test]
fn adding_a_field_is_an_edit() {
    let f = fixture(10, 10);
    let mut lines = f.lines();
    lines[2] = lines[2].replacen("{\"body\":", "{\"approved\":true,\"body\":", 1);
    assert_ne!(lines[2], f.lines()[2]);
    f.write_lines(&lines);
    assert_eq!(f.problem(), Problem::Edited { seq: 3, line: 3 });
}

#[test]
fn deleting_an_entry_is_removed() {
    let f = fixture(60, 50);
    let mut lines = f.lines();
    lines.remove(29);
    f.write_lines(&lines);
    let problem = f.problem();
    assert_eq!(
        problem,
        Problem::Removed {
            after_seq: 29,
            missing: 30..=30
        }
    );
    assert!(
        problem.to_string().starts_with("entry 30 was removed"),
        "{problem}"
    );

    let f = fixture(5, 5);
    let mut lines = f.lines();
    lines.drain(0..2);
    f.write_lines(&lines);
    let problem = verify(&f.place, &[], None).unwrap().problem.unwrap();
    assert_eq!(
        problem,
        Problem::Removed {
            after_seq: 0,
            missing: 1..=2
        }
    );
    assert!(
        problem
            .to_string()
            .starts_with("entries 1 to 2 were removed: the ledger starts")
    );
}

#[test]
fn swapping_two_lines_is_reordered() {
    let f = fixture(60, 50);
    let mut lines = f.lines();
    lines.swap(39, 40);
    f.write_lines(&lines);
    assert_eq!(
        f.problem(),
        Problem::Reordered {
            line: 40,
            seq: 41,
            expected: 40
        }
    );

    // A duplicated line goes backwards.
    let f = fixture(10, 10);
    let mut lines = f.lines();
    lines.insert(5, lines[4].clone());
    f.write_lines(&lines);
    assert_eq!(
        verify(&f.place, &[], None).unwrap().problem,
        Some(Problem::Reordered {
            line: 6,
            seq: 5,
            expected: 6
        })
    );
}

#[test]
fn cutting_the_tail_is_seen_only_by_a_checkpoint() {
    let f = fixture(200, 50);
    let mut lines = f.lines();
    lines.truncate(197);
    f.write_lines(&lines);
    let alone = verify(&f.place, &[], None).unwrap();
    assert_eq!((alone.problem, alone.entries), (None, 197));
    let problem = f.problem();
    assert_eq!(
        problem,
        Problem::Truncated {
            size: 197,
            checkpoint_size: 200
        }
    );
    assert!(
        problem
            .to_string()
            .contains("the newest 3 entries were removed")
    );

    // Deleting the whole file is a truncation to nothing.
    fs::remove_file(&f.ledger).unwrap();
    assert_eq!(
        f.problem(),
        Problem::Truncated {
            size: 0,
            checkpoint_size: 200
        }
    );
}

/// Rewrite entry `seq` and recompute every hash after it, as an attacker
/// with write access (but without the ledger key) would.
fn rewrite_from(f: &Fixture, seq: usize) {
    let mut entries = read(&f.place, None).unwrap();
    entries[seq - 1].body.decision = "deny".into();
    for i in seq - 1..entries.len() {
        if i > 0 {
            entries[i].prev = entries[i - 1].hash.clone();
        }
        entries[i].hash = entries[i].compute_hash().unwrap();
    }
    let lines: Vec<String> = entries
        .iter()
        .map(|e| {
            String::from_utf8(e.to_line().unwrap())
                .unwrap()
                .trim_end()
                .to_string()
        })
        .collect();
    f.write_lines(&lines);
}

#[test]
fn a_rewritten_chain_contradicts_its_checkpoint() {
    let f = fixture(200, 50);
    rewrite_from(&f, 120);
    assert_eq!(verify(&f.place, &[], None).unwrap().problem, None);
    let problem = f.problem();
    assert_eq!(
        problem,
        Problem::CheckpointMismatch {
            size: 150,
            since: 100
        }
    );
    assert!(
        problem
            .to_string()
            .contains("entries 101 to 150 were rewritten")
    );
    assert_eq!(f.verify().checkpoints_checked, 2);
}

#[test]
fn a_checkpoint_by_another_key_is_a_bad_signature() {
    let f = fixture(100, 50);
    let dir = tempfile::tempdir().unwrap();
    let (other, _) = LedgerKey::load_or_create(dir.path().join("other.key")).unwrap();
    let mut checkpoints = f.checkpoints.clone();
    checkpoints.push(other.sign_checkpoint(100, &f.checkpoints[1].head).unwrap());
    let report = verify(&f.place, &checkpoints, Some(f.keys())).unwrap();
    assert!(matches!(
        report.problem,
        Some(Problem::BadSignature { size: 100, .. })
    ));
    assert_eq!(report.checkpoints_checked, 2);

    // The right key's fingerprint on a stolen signature does not help.
    let mut forged = other.sign_checkpoint(300, &f.checkpoints[1].head).unwrap();
    forged.key = f.key.fingerprint();
    assert!(matches!(
        verify(&f.place, &[forged], Some(f.keys())).unwrap().problem,
        Some(Problem::BadSignature { size: 300, .. })
    ));

    // A genuine checkpoint whose size was changed after signing.
    let mut moved = f.checkpoints[0].clone();
    moved.size = 300;
    let err = moved.verify(f.keys()).unwrap_err();
    assert!(err.to_string().contains("does not verify"), "{err}");
}

#[test]
fn a_garbage_line_is_an_error_with_line_and_column() {
    let f = fixture(10, 10);
    let mut lines = f.lines();
    lines[4] = "{\"seq\": 5, oops}".into();
    f.write_lines(&lines);
    let message = verify(&f.place, &[], None).unwrap_err().to_string();
    assert!(
        message.contains("ledger.jsonl:5:12: not a ledger entry"),
        "{message}"
    );
    let message = read(&f.place, None).unwrap_err().to_string();
    assert!(message.contains("ledger.jsonl:5:12:"), "{message}");

    // A last line cut short: opening refuses to chain onto it.
    let f = fixture(3, 3);
    let text = fs::read_to_string(&f.ledger).unwrap();
    fs::write(&f.ledger, &text[..text.len() - 20]).unwrap();
    let message = Ledger::open(&f.place).unwrap_err().to_string();
    assert!(
        message.contains("ledger.jsonl:3:1: the last line is incomplete"),
        "{message}"
    );
    fs::write(&f.ledger, text.replace("\"hash\":\"", "\"hash\" \"")).unwrap();
    let message = Ledger::open(&f.place).unwrap_err().to_string();
    assert!(message.contains("ledger.jsonl:3:"), "{message}");

    let cp = f.ledger.with_file_name("checkpoints.jsonl");
    fs::write(&cp, "\n{\"size\": 1}\n").unwrap();
    let message = checkpoint::read_all(&cp).unwrap_err().to_string();
    assert!(
        message.contains("checkpoints.jsonl:2:11: not a checkpoint: missing field `head`"),
        "{message}"
    );
}

#[test]
fn two_writers_build_one_chain() {
    let dir = tempfile::tempdir().unwrap();
    let place = Place::File(dir.path().join(FILE));
    std::thread::scope(|s| {
        for writer in 0..2 {
            let place = &place;
            s.spawn(move || {
                let mut ledger = Ledger::open(place).unwrap();
                for i in 0..500 {
                    ledger.append(record(writer * 1000 + i)).unwrap();
                }
                ledger.sync().unwrap();
            });
        }
    });
    let report = verify(&place, &[], None).unwrap();
    assert_eq!((report.problem, report.entries), (None, 1000));
}

#[test]
fn the_key_is_private_and_created_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys").join("ledger.key");
    let (first, created) = LedgerKey::load_or_create(&path).unwrap();
    assert!(created);
    assert_eq!(
        fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let (second, created) = LedgerKey::load_or_create(&path).unwrap();
    assert!(!created);
    assert_eq!(first.fingerprint(), second.fingerprint());
    assert!(
        first
            .public_openssh()
            .unwrap()
            .starts_with("ssh-ed25519 AAAA")
    );
    // No temporary file is left next to it.
    assert_eq!(fs::read_dir(path.parent().unwrap()).unwrap().count(), 1);

    // The public half, as recorded in the SoT, verifies checkpoints.
    let public = dir.path().join("key.pub");
    fs::write(&public, first.public_openssh().unwrap() + "\n").unwrap();
    let public = checkpoint::read_public_keys(&public).unwrap();
    first
        .sign_checkpoint(0, GENESIS)
        .unwrap()
        .verify(&public)
        .unwrap();

    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    let message = LedgerKey::load_or_create(&path).unwrap_err().to_string();
    assert!(message.contains("too open: run `chmod 600"), "{message}");
}

#[test]
fn ssh_keygen_verifies_a_checkpoint() {
    let has_ssh_keygen = std::process::Command::new("ssh-keygen")
        .arg("-?")
        .output()
        .is_ok();
    if !has_ssh_keygen {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "ssh-keygen is needed in CI"
        );
        return;
    }
    let f = fixture(50, 50);
    let dir = f.ledger.parent().unwrap();
    let checkpoint = &f.checkpoints[0];
    let signers = dir.join("allowed_signers");
    fs::write(
        &signers,
        format!(
            "maestro-ledger namespaces=\"maestro-ledger\" {}\n",
            f.key.public_openssh().unwrap()
        ),
    )
    .unwrap();
    let signature = dir.join("checkpoint.sig");
    fs::write(&signature, &checkpoint.signature).unwrap();
    let message = checkpoint.signed_message().unwrap();
    assert!(ssh_keygen_verify(&signers, &signature, &message));
    let mut altered = message.clone();
    altered[9] ^= 1;
    assert!(!ssh_keygen_verify(&signers, &signature, &altered));
}

fn ssh_keygen_verify(signers: &Path, signature: &Path, message: &[u8]) -> bool {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new("ssh-keygen")
        .args([
            "-Y",
            "verify",
            "-I",
            "maestro-ledger",
            "-n",
            "maestro-ledger",
            "-f",
        ])
        .arg(signers)
        .arg("-s")
        .arg(signature)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(message).unwrap();
    child.wait().unwrap().success()
}

/// A SoT repository made from the example, for the ledger's commits.
fn sot_repo(dir: &Path) -> PathBuf {
    let root = dir.join("sot");
    let actor = crate::sot::git::Actor::new("Test", "test@example.org").unwrap();
    crate::sot::git::init_repo(&root, &crate::sot::example::scaffold("t"), &actor, "init").unwrap();
    root
}

/// Commit `checkpoint` as the ops layer does at the end of a job.
fn commit(root: &Path, key: &LedgerKey, checkpoint: &Checkpoint) {
    let intent = crate::sot::change::Intent {
        reason: format!("ledger checkpoint: {} entries", checkpoint.size),
        actor: Some("maestro ledger <ledger@maestro.invalid>".into()),
        wait: std::time::Duration::from_secs(10),
    };
    crate::sot::change::commit_ledger(root, &intent, key, checkpoint).unwrap();
}

#[test]
fn each_controller_signs_with_its_own_key_and_the_sot_lists_them_all() {
    let f = fixture(20, 10);
    let dir = tempfile::tempdir().unwrap();
    let root = sot_repo(dir.path());
    let (second, _) = LedgerKey::load_or_create(dir.path().join("b/ledger.key")).unwrap();
    let (a_at_10, b_at_20) = (
        &f.checkpoints[0],
        second.sign_checkpoint(20, &f.checkpoints[1].head).unwrap(),
    );
    commit(&root, &f.key, a_at_10);
    commit(&root, &second, &b_at_20);
    commit(&root, &f.key, &f.checkpoints[1]);
    // One line per controller, in the order they first signed; A's second
    // checkpoint added no line.
    let listed = fs::read_to_string(root.join(PUBLIC_KEY_FILE)).unwrap();
    assert_eq!(
        listed,
        format!(
            "{}\n{}\n",
            f.key.public_openssh().unwrap(),
            second.public_openssh().unwrap()
        )
    );
    let checked = verify_against_sot(&f.place, &root).unwrap();
    assert!(checked.signatures_checked);
    assert_eq!(checked.report.problem, None, "{:?}", checked.report);
    assert_eq!(checked.report.checkpoints_checked, 3);

    // A checkpoint by a key nobody listed does not count.
    let (stranger, _) = LedgerKey::load_or_create(dir.path().join("c/ledger.key")).unwrap();
    let forged = stranger
        .sign_checkpoint(20, &f.checkpoints[1].head)
        .unwrap();
    checkpoint::append_line(root.join(CHECKPOINTS_FILE), &forged).unwrap();
    let checked = verify_against_sot(&f.place, &root).unwrap();
    let Some(Problem::BadSignature { size: 20, reason }) = checked.report.problem else {
        panic!("{:?}", checked.report)
    };
    assert!(
        reason.contains(&stranger.fingerprint()) && reason.contains("not one of the ledger keys"),
        "{reason}"
    );
    assert_eq!(checked.report.checkpoints_checked, 3);
}

#[test]
fn a_key_file_of_one_line_verifies_as_before() {
    let f = fixture(20, 10);
    let dir = tempfile::tempdir().unwrap();
    let public = dir.path().join("key.pub");
    // As an older maestro wrote it, and as a person might: no newline.
    fs::write(&public, f.key.public_openssh().unwrap()).unwrap();
    let keys = checkpoint::read_public_keys(&public).unwrap();
    assert_eq!(keys.len(), 1);
    let report = verify(&f.place, &f.checkpoints, Some(&keys)).unwrap();
    assert_eq!((report.problem, report.checkpoints_checked), (None, 2));

    // Comments and blank lines are skipped; a line that is not a key is
    // named by its line.
    fs::write(
        &public,
        format!(
            "# ada's laptop\n\n{}\nssh-ed25519 garbage\n",
            f.key.public_openssh().unwrap()
        ),
    )
    .unwrap();
    let message = checkpoint::read_public_keys(&public)
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("key.pub:4:1: not an OpenSSH public key"),
        "{message}"
    );
}
