//! Reflection from the command line, without a fleet: a run whose node is
//! unreachable (a closed port on loopback) leaves a pending LAW-REFLECT-001
//! reflection in a SoT made by `maestro init`, and its operator answers it
//! on a terminal (a real pty from util-linux's `script`), question by
//! question, as themselves (their SSH key in people.toml).

mod common;

use std::io::Write;

use std::process::{Command, Output, Stdio};

use common::{ClosedNodeSot, stderr, stdout};

fn both(o: &Output) -> String {
    format!("{}{}", stdout(o), stderr(o))
}

#[test]
fn an_unreachable_node_leaves_a_reflection_answered_question_by_question_on_a_terminal() {
    let s = ClosedNodeSot::new();
    let (sot, db, key) = (&s.sot, &s.db, &s.key);
    let m = |args: &[&str]| s.maestro(args);

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
    let run = s.last_run();

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
        .env("MAESTRO_IDENTITY", key)
        .env("HOME", s.tmp.path())
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
