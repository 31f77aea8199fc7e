//! Reflection from the command line, without a fleet: a run whose node is
//! unreachable (a closed port on loopback) leaves a pending LAW-REFLECT-001
//! reflection in a SoT made by `maestro init`, and its operator answers it
//! on a terminal (a real pty from util-linux's `script`), question by
//! question, as themselves (their SSH key in people.toml).

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::{maestro, stderr, stdout};

fn both(o: &Output) -> String {
    format!("{}{}", stdout(o), stderr(o))
}

fn keygen(path: &Path) {
    let o = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "ada", "-f"])
        .arg(path)
        .output()
        .expect("ssh-keygen runs (openssh-client is installed by .ci/run)");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn an_unreachable_node_leaves_a_reflection_answered_question_by_question_on_a_terminal() {
    let tmp = tempfile::tempdir().unwrap();
    let key = tmp.path().join("ada");
    keygen(&key);
    let sot = tmp.path().join("fleet");
    let db = tmp.path().join("runs.db");
    let m = |args: &[&str]| -> Output {
        maestro()
            .arg("--sot")
            .arg(&sot)
            .arg("--db")
            .arg(&db)
            .args(args)
            .env("MAESTRO_IDENTITY", &key)
            .env("HOME", tmp.path())
            .stdin(Stdio::null())
            .output()
            .expect("maestro runs")
    };
    let o = maestro()
        .args([
            "init",
            sot.to_str().unwrap(),
            "--person",
            "ada-lovelace",
            "--key",
        ])
        .arg(key.with_extension("pub"))
        .args(["--actor", "Ada <ada@example.org>"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", both(&o));
    let o = m(&[
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
        "--actor",
        "Ada <ada@example.org>",
    ]);
    assert!(o.status.success(), "{}", both(&o));

    let o = m(&["exec", "closed", "--accept-new", "--", "true"]);
    assert_eq!(o.status.code(), Some(1), "{}", both(&o));
    let text = both(&o);
    let at = text
        .find("reflection rfl-")
        .unwrap_or_else(|| panic!("no reflection: {text}"))
        + "reflection ".len();
    let id: String = text[at..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect();
    let o = m(&["--json", "runs"]);
    let run = stdout(&o)
        .lines()
        .find_map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).ok()?;
            v["run"]["id"].as_str().map(str::to_string)
        })
        .expect("the run is in the store");

    // Without a terminal and without --answers: told what to do, exit 2.
    let o = m(&["reflect", &id]);
    assert_eq!(o.status.code(), Some(2), "{}", both(&o));
    assert!(both(&o).contains("--template"), "{}", both(&o));

    // On a terminal: each question, then its evidence.
    let cmd = format!(
        "{} --sot {} --db {} reflect {id}",
        env!("CARGO_BIN_EXE_maestro"),
        sot.display(),
        db.display()
    );
    let mut child = Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .env("MAESTRO_IDENTITY", &key)
        .env("HOME", tmp.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("script (util-linux) runs");
    let ev = format!("run:{run}");
    let lines = [
        "the node refused the connection",
        &ev,
        "one test node, no agent",
        &ev,
        "the run's own result",
        &ev,
        "nothing: it is a test",
        &ev,
        "small tests",
        "remove the node",
        "file:nodes.toml",
        "",
        "",
    ];
    let input: String = lines.iter().map(|l| format!("{l}\n")).collect();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    assert!(stdout(&o).contains("What happened?"), "{}", both(&o));
    assert!(
        stdout(&o).contains(&format!("reflection {id} answered")),
        "{}",
        both(&o)
    );
    let file = std::fs::read_to_string(sot.join(format!("reflections/{id}.toml"))).unwrap();
    assert!(file.contains("the node refused the connection"), "{file}");
    assert!(file.contains(&ev), "{file}");

    let o = m(&["--json", "reflect", "stats"]);
    let stats: serde_json::Value = stdout(&o)
        .lines()
        .find_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .unwrap();
    assert_eq!(stats["stats"]["answered"], 1, "{stats}");
    assert_eq!(stats["stats"]["adoption_percent"], 100.0, "{stats}");
}
