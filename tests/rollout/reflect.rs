//! Reflection on the real fleet: a canary that fails its gate and rolls
//! back leaves a pending reflection of the example SoT's LAW-REFLECT-001,
//! which holds the agent's next rollout (exit 4) until a proven person of
//! the platform team answers it. Answers citing a run that does not exist,
//! or carrying an API key, are refused and commit nothing; the answer with
//! evidence is one commit and one ledger entry, and records a lesson. Three
//! later jobs that apply the lesson make it promotable; promoted, it is
//! shown before a fourth job in its scope.
//!
//! Nodes n31 and n32 are this file's.

use std::path::{Path, PathBuf};
use std::process::Output;

use super::canary::{Traffic, deploy_stable, rollout_operator, rollout_status};
use crate::common::api::{Served, answer_schema, conforms};
use crate::common::fleet::Operator;
use crate::common::{git, stderr, stdout};
use crate::{json_lines, repo};

const NODES: [usize; 2] = [31, 32];

fn both(o: &Output) -> String {
    format!("{}{}", stdout(o), stderr(o))
}

/// A fresh key pair; returns the private key's path and the public line.
fn keypair(dir: &Path, name: &str) -> (PathBuf, String) {
    let path = dir.join(name);
    let o = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
        .arg(&path)
        .output()
        .expect("ssh-keygen runs (openssh-client is installed by .ci/run)");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let public = std::fs::read_to_string(path.with_extension("pub")).unwrap();
    (path, public.trim().to_string())
}

fn as_person(op: &Operator, key: &Path, args: &[&str]) -> Output {
    op.command(args)
        .env("MAESTRO_IDENTITY", key)
        .output()
        .expect("maestro runs")
}

fn commits(op: &Operator) -> usize {
    git(&op.sot, &["rev-list", "--count", "HEAD"])
        .trim()
        .parse()
        .unwrap()
}

fn ledger_entries(op: &Operator) -> Vec<serde_json::Value> {
    let o = op.maestro(&["--json", "ledger", "show"]);
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    json_lines(&stdout(&o))
        .into_iter()
        .filter(|v| v["event"] == "ledger_entry")
        .collect()
}

/// The rollout operator's SoT with the example checklist, a person of the
/// platform team with a fresh key, and a git history.
fn reflecting_operator() -> (Operator, PathBuf) {
    let op = rollout_operator(&NODES);
    let keys = op.tmp.path().join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    let (ada, public) = keypair(&keys, "ada");
    std::fs::write(
        op.sot.join("people.toml"),
        format!(
            "[person.ada]\nemail = \"ada@example.org\"\nteams = [\"platform\", \"team-sre\"]\nkeys = [\"{public}\"]\n"
        ),
    )
    .unwrap();
    std::fs::create_dir_all(op.sot.join("checklists")).unwrap();
    std::fs::copy(
        repo().join("sot/checklists/law-reflect-001.toml"),
        op.sot.join("checklists/law-reflect-001.toml"),
    )
    .unwrap();
    let check = op.maestro(&["sot", "check"]);
    assert!(check.status.success(), "{}", both(&check));
    assert!(stdout(&check).contains("1 checklists"), "{}", both(&check));
    git(&op.sot, &["init", "-q"]);
    git(&op.sot, &["add", "-A"]);
    git(
        &op.sot,
        &[
            "-c",
            "user.name=Reflect Tester",
            "-c",
            "user.email=reflect@example.org",
            "commit",
            "-qm",
            "test SoT",
        ],
    );
    (op, ada)
}

/// The reflection id a command printed (`reflection rfl-… pending`).
fn reflection_id(text: &str) -> String {
    let at = text
        .find("reflection rfl-")
        .unwrap_or_else(|| panic!("no pending reflection in: {text}"))
        + "reflection ".len();
    text[at..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect()
}

#[test]
fn an_aborted_rollout_is_reflected_on_with_evidence_before_the_next_and_its_lesson_earns_promotion()
{
    let (op, ada) = reflecting_operator();
    deploy_stable(&op, &NODES);
    let traffic = Traffic::start(&NODES);
    let o = op.maestro(&[
        "rollout",
        "start",
        "fleet-doctor@2.3.0",
        "--strategy",
        "gated",
        "--limit",
        "fleet",
    ]);
    drop(traffic);
    assert_eq!(o.status.code(), Some(1), "{}", both(&o));
    let status = rollout_status(&op);
    assert_eq!(status["rollout"]["status"], "aborted", "{status}");
    let rollout = status["rollout"]["id"].as_str().unwrap().to_string();
    let id = reflection_id(&stdout(&o));

    // One pending reflection, of the rollout, for the checklist.
    let o = op.maestro(&["--json", "reflect"]);
    let pending: Vec<serde_json::Value> = json_lines(&stdout(&o))
        .into_iter()
        .filter(|v| v["event"] == "reflection")
        .collect();
    assert_eq!(pending.len(), 1, "{}", both(&o));
    let r = &pending[0]["reflection"];
    assert_eq!(r["id"], id.as_str());
    assert_eq!(r["trigger"], "rollout_aborted");
    assert_eq!(r["checklist"], "law-reflect-001");
    assert_eq!(r["source"], format!("rollout:{rollout}"));

    // It holds the agent's next rollout.
    let o = op.maestro(&[
        "rollout",
        "start",
        "fleet-doctor@2.1.0",
        "--strategy",
        "gated",
        "--limit",
        "fleet",
    ]);
    assert_eq!(o.status.code(), Some(4), "{}", both(&o));
    assert!(
        both(&o).contains(&format!("maestro reflect {id}")),
        "{}",
        both(&o)
    );
    // And retrying the aborted one is that next rollout too.
    let o = op.maestro(&["rollout", "retry", &rollout]);
    assert_eq!(o.status.code(), Some(4), "{}", both(&o));
    assert!(both(&o).contains(&id), "{}", both(&o));

    // The template is a valid answers file to start from.
    let template = op.maestro(&["reflect", &id, "--template"]);
    assert_eq!(template.status.code(), Some(0), "{}", both(&template));
    assert!(stdout(&template).contains("[answer.what-happened]"));

    let commits_before = commits(&op);
    let entries_before = ledger_entries(&op).len();
    let deploy_run = {
        let o = op.maestro(&["--json", "runs"]);
        json_lines(&stdout(&o))
            .into_iter()
            .find(|v| v["run"]["kind"] == "deploy")
            .map(|v| v["run"]["id"].as_str().unwrap().to_string())
            .expect("the stable deploy's run is in the store")
    };
    let answers = |what_evidence: &str, extra: &str| {
        format!(
            "[answer.what-happened]\ntext = \"2.3.0 served 20% errors on n31; the gate failed it\"\nevidence = [\"rollout:{rollout}\", \"{what_evidence}\"]\n\n\
             [answer.impact]\ntext = \"n31, about 40 requests, under a minute\"\nevidence = [\"rollout:{rollout}\"]\n\n\
             [answer.detection]\ntext = \"the healthy gate, at its second measurement\"\nevidence = [\"rollout:{rollout}\"]\n\n\
             [answer.response]\ntext = \"maestro rolled n31 back to 2.0.3 by itself\"\nevidence = [\"run:{deploy_run}\"]\n\n\
             [answer.keep]\ntext = \"one node first, behind a gate{extra}\"\n\n\
             [answer.change]\ntext = \"test error rates before tagging a release\"\nevidence = [\"file:rollouts.toml\"]\n\n\
             [[lesson]]\nid = \"gate-the-first-node\"\ntext = \"start fleet-doctor on one node behind a gate\"\n\
             scope = {{ group = \"fleet\", operation = \"exec\" }}\nevidence = [\"rollout:{rollout}\"]\n"
        )
    };
    let file = op.tmp.path().join("answers.toml");

    // A run that does not exist: refused where it is written, nothing committed.
    std::fs::write(&file, answers("run:20251121-000000-dead", "")).unwrap();
    let o = as_person(
        &op,
        &ada,
        &["reflect", &id, "--answers", file.to_str().unwrap()],
    );
    assert_eq!(o.status.code(), Some(2), "{}", both(&o));
    assert!(
        both(&o).contains("there is no run `20251121-000000-dead`"),
        "{}",
        both(&o)
    );
    assert!(both(&o).contains("answers.toml:3:"), "{}", both(&o));
    assert_eq!(commits(&op), commits_before);

    // An API key in an answer: the scanner refuses it and never prints it.
    let key = format!(
        "sk-ant-api03-{}AA",
        "x7Kq2mZ9pL4vR8tW1nB6cY3dF5gH0jS".repeat(3)
    );
    std::fs::write(
        &file,
        answers(&format!("run:{deploy_run}"), &format!(" (key {key})")),
    )
    .unwrap();
    let o = as_person(
        &op,
        &ada,
        &["reflect", &id, "--answers", file.to_str().unwrap()],
    );
    assert_eq!(o.status.code(), Some(2), "{}", both(&o));
    assert!(both(&o).contains("a secret"), "{}", both(&o));
    assert!(!both(&o).contains(&key), "{}", both(&o));
    assert_eq!(commits(&op), commits_before);

    // A typed name may not sign it.
    std::fs::write(&file, answers(&format!("run:{deploy_run}"), "")).unwrap();
    let o = op.maestro(&["reflect", &id, "--answers", file.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(3), "{}", both(&o));

    // With evidence, by ada: one commit, one ledger entry, the lesson in STM.
    let o = as_person(
        &op,
        &ada,
        &[
            "--json",
            "reflect",
            &id,
            "--answers",
            file.to_str().unwrap(),
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    let done = json_lines(&stdout(&o))
        .into_iter()
        .find(|v| v["event"] == "reflection_answered")
        .expect("the answer is reported")["answered"]
        .clone();
    assert_eq!(commits(&op), commits_before + 1);
    let log = git(&op.sot, &["log", "-1", "--format=%an%n%s%n%b"]);
    assert!(log.starts_with("ada\n"), "{log}");
    assert!(log.contains(&format!("reflect {id}")), "{log}");
    let committed = std::fs::read_to_string(op.sot.join(format!("reflections/{id}.toml"))).unwrap();
    assert!(committed.contains("the gate failed it"), "{committed}");
    let entries = ledger_entries(&op);
    assert_eq!(entries.len(), entries_before + 1);
    let last = &entries.last().unwrap()["entry"];
    assert_eq!(last["hash"], done["ledger"]);
    assert_eq!(last["body"]["kind"], "reflection");
    assert_eq!(last["body"]["inputs"]["sot_commit"], done["commit"]);
    let v = op.maestro(&["ledger", "verify"]);
    assert_eq!(v.status.code(), Some(0), "{}", both(&v));
    let pending = op.maestro(&["--json", "reflect"]);
    assert_eq!(pending.status.code(), Some(0), "{}", both(&pending));
    assert!(pending.stdout.is_empty(), "{}", both(&pending));

    // Answered: the next rollout starts (and completes).
    let traffic = Traffic::start(&NODES);
    let o = op.maestro(&[
        "rollout",
        "start",
        "fleet-doctor@2.1.0",
        "--strategy",
        "gated",
        "--limit",
        "fleet",
    ]);
    drop(traffic);
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));

    // Three jobs apply the lesson; it becomes promotable, then is promoted.
    let lesson = |op: &Operator| {
        let o = op.maestro(&["--json", "lesson", "list"]);
        json_lines(&stdout(&o))
            .into_iter()
            .find(|v| v["lesson"]["id"] == "gate-the-first-node")
            .unwrap_or_else(|| panic!("no lesson: {}", both(&o)))["lesson"]
            .clone()
    };
    assert_eq!(lesson(&op)["memory"], "stm");
    let o = as_person(
        &op,
        &ada,
        &[
            "lesson",
            "promote",
            "gate-the-first-node",
            "--reason",
            "early",
        ],
    );
    assert_eq!(o.status.code(), Some(2), "{}", both(&o));
    assert!(both(&o).contains("0 evidenced uses"), "{}", both(&o));
    let applied = [
        "exec",
        "n31",
        "--lesson",
        "gate-the-first-node",
        "--",
        "true",
    ];
    // A typed name, or a run that failed, is no evidence the lesson works.
    let o = op.maestro(&applied);
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    let o = as_person(
        &op,
        &ada,
        &[
            "exec",
            "n31",
            "--lesson",
            "gate-the-first-node",
            "--",
            "false",
        ],
    );
    assert_eq!(o.status.code(), Some(1), "{}", both(&o));
    assert!(
        both(&o).contains("reflection rfl-"),
        "the failed run is an operation to reflect on: {}",
        both(&o)
    );
    assert_eq!(lesson(&op)["uses"].as_u64(), Some(0), "{}", lesson(&op));
    for _ in 0..3 {
        let o = as_person(&op, &ada, &applied);
        assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    }
    let o = op.maestro(&["exec", "n31", "--lesson", "no-such-lesson", "--", "true"]);
    assert_eq!(o.status.code(), Some(2), "{}", both(&o));
    let l = lesson(&op);
    assert_eq!(
        (l["uses"].as_u64(), l["promotable"].as_bool()),
        (Some(3), Some(true)),
        "{l}"
    );
    let o = op.maestro(&[
        "lesson",
        "promote",
        "gate-the-first-node",
        "--reason",
        "three uses",
    ]);
    assert_eq!(
        o.status.code(),
        Some(3),
        "a typed name promotes nothing: {}",
        both(&o)
    );
    let o = as_person(
        &op,
        &ada,
        &[
            "lesson",
            "promote",
            "gate-the-first-node",
            "--reason",
            "applied on three exec jobs",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    assert_eq!(lesson(&op)["memory"], "ltm");

    // The fourth job in its scope shows it before it runs.
    let o = op.maestro(&["exec", "n32", "--", "true"]);
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    assert!(
        stderr(&o).contains(
            "lesson for group fleet, exec jobs (gate-the-first-node): start fleet-doctor on one node behind a gate"
        ),
        "{}",
        both(&o)
    );

    // The figures: two triggered (the abort, the failed run), one answered.
    let o = op.maestro(&["--json", "reflect", "stats"]);
    let s = json_lines(&stdout(&o))
        .into_iter()
        .find(|v| v["event"] == "reflect_stats")
        .unwrap()["stats"]
        .clone();
    assert_eq!(
        (s["triggered"].as_u64(), s["answered"].as_u64()),
        (Some(2), Some(1)),
        "{s}"
    );
    assert_eq!(s["adoption_percent"].as_f64(), Some(50.0));
    assert_eq!(s["pending"].as_u64(), Some(1), "{s}");
    assert_eq!(s["lessons_ltm"].as_u64(), Some(1));

    // The read-only API shows the aborted rollout with its gate
    // measurements and journal, as its /openapi.json documents them.
    let o = op.maestro(&[
        "token",
        "add",
        "dashboard",
        "--person",
        "ada",
        "--reason",
        "the team's dashboard",
        "--actor",
        "Ada <ada@example.org>",
    ]);
    assert!(o.status.success(), "{}", both(&o));
    let token = stdout(&o).trim().to_string();
    let api = Served::start(op.command(&[]));
    let (_, doc) = api.call("GET", "/openapi.json", None);
    let (status, body) = api.get(&format!("/v1/rollouts/{rollout}"), &token);
    assert_eq!(status, 200, "{body}");
    conforms(
        &doc,
        answer_schema(&doc, "/v1/rollouts/{id}"),
        &body,
        "rollout",
    )
    .unwrap_or_else(|e| panic!("{e}\n{body}"));
    assert_eq!(body["rollout"]["status"], "aborted", "{body}");
    assert!(
        !body["measurements"].as_array().unwrap().is_empty()
            && !body["journal"].as_array().unwrap().is_empty(),
        "{body}"
    );
}
