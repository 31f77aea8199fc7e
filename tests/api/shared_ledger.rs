//! Two controllers of one team: two `maestro` processes with their own state
//! directories (so their own ledger keys) and one PostgreSQL store (the
//! private test cluster). Each runs a job; a third, with no state of its
//! own, finds one hash chain holding both jobs' entries and both signed
//! checkpoints verified, from the CLI and from the API, and an edited row
//! is caught by name.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

use crate::common::api::Served;
use crate::common::{ClosedNodeSot, maestro, newest_run, stdout};

fn both(o: &Output) -> String {
    format!("{}{}", stdout(o), crate::common::stderr(o))
}

/// A controller: its own home and state directory, the team's SoT and
/// database, ada's identity.
struct Controller {
    home: PathBuf,
    sot: PathBuf,
    url: String,
    identity: PathBuf,
}

impl Controller {
    fn new(scratch: &ClosedNodeSot, name: &str, url: &str) -> Controller {
        let home = scratch.tmp.path().join(name);
        std::fs::create_dir_all(&home).unwrap();
        Controller {
            home,
            sot: scratch.sot.clone(),
            url: url.to_string(),
            identity: scratch.key.clone(),
        }
    }

    fn state(&self) -> PathBuf {
        self.home.join("state")
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = maestro();
        c.arg("--sot")
            .arg(&self.sot)
            .arg("--db")
            .arg(&self.url)
            .args(args)
            .env("HOME", &self.home)
            .env("XDG_STATE_HOME", self.state())
            .env("MAESTRO_IDENTITY", &self.identity)
            .env("MAESTRO_ACTOR", "Ada <ada@example.org>")
            .stdin(std::process::Stdio::null());
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("maestro runs")
    }
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect()
}

#[test]
fn two_controllers_on_one_postgresql_store_keep_one_ledger_chain() {
    let scratch = ClosedNodeSot::new();
    // Under CI=true a missing PostgreSQL fails here instead of skipping.
    let Some(url) = ::maestro::store::test_cluster::fresh_database_url() else {
        return;
    };
    let checkpoints_file = scratch.sot.join("ledger/checkpoints.jsonl");
    let keys_file = scratch.sot.join("ledger/key.pub");
    let checkpoints_before = lines(&checkpoints_file).len();

    let laptops = [
        Controller::new(&scratch, "ada-laptop", &url),
        Controller::new(&scratch, "grace-laptop", &url),
    ];
    let mut runs = Vec::new();
    for laptop in &laptops {
        let o = laptop.run(&["exec", "closed", "--accept-new", "--", "true"]);
        assert_eq!(
            o.status.code(),
            Some(1),
            "an unreachable node: {}",
            both(&o)
        );
        runs.push(newest_run(&laptop.run(&["--json", "runs"])));
        // Its key is its own, in its own state directory; no local chain.
        let state = laptop.state().join("maestro");
        assert!(state.join("ledger.key").is_file(), "{}", state.display());
        assert!(
            !state.join("ledger.jsonl").exists(),
            "the chain is the database's"
        );
    }
    assert_ne!(runs[0], runs[1]);
    assert_ne!(
        std::fs::read(laptops[0].state().join("maestro/ledger.key")).unwrap(),
        std::fs::read(laptops[1].state().join("maestro/ledger.key")).unwrap(),
        "two controllers, two keys"
    );
    // The SoT lists both public keys and holds both checkpoints.
    let keys = lines(&keys_file);
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert_ne!(keys[0], keys[1]);
    assert_eq!(lines(&checkpoints_file).len(), checkpoints_before + 2);

    // A third controller, with no state of its own, sees the one chain.
    let auditor = Controller::new(&scratch, "auditor", &url);
    let o = auditor.run(&["ledger", "verify"]);
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    let text = stdout(&o);
    assert!(
        text.contains("ok — 4 entries") && text.contains("2 signed checkpoints checked"),
        "{text}"
    );
    assert!(!text.contains("not checked"), "{text}");
    let o = auditor.run(&["--json", "ledger", "verify"]);
    let report: Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(report["report"]["entries"], 4, "{report}");
    assert_eq!(report["report"]["checkpoints_checked"], 2, "{report}");
    assert!(report["report"]["problem"].is_null(), "{report}");

    let o = auditor.run(&["--json", "ledger", "show"]);
    assert!(o.status.success(), "{}", both(&o));
    let entries: Vec<Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["entry"].clone())
        .collect();
    let seqs: Vec<u64> = entries.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, [1, 2, 3, 4]);
    for run in &runs {
        let o = auditor.run(&["--json", "ledger", "show", "--run", run]);
        assert_eq!(
            stdout(&o).lines().count(),
            1,
            "the run's results: {}",
            both(&o)
        );
    }

    // The API of any controller answers from the same chain.
    let o = scratch.maestro(&[
        "token",
        "add",
        "auditor",
        "--person",
        "ada-lovelace",
        "--reason",
        "read the shared ledger",
    ]);
    assert!(o.status.success(), "{}", both(&o));
    let token = stdout(&o).trim().to_string();
    let api = Served::start(auditor.command(&[]));
    let (status, ledger) = api.get("/v1/ledger", &token);
    assert_eq!(status, 200, "{ledger}");
    assert_eq!(ledger["total"], 4, "{ledger}");
    let (status, checked) = api.get("/v1/ledger/checkpoints", &token);
    assert_eq!(status, 200, "{checked}");
    assert_eq!(checked["signatures_checked"], true, "{checked}");
    assert_eq!(checked["verify"]["checkpoints_checked"], 2, "{checked}");
    assert!(checked["verify"]["problem"].is_null(), "{checked}");
    drop(api);

    // Someone with write access to the database edits the first entry.
    let mut db = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    let edited = db
        .execute(
            "UPDATE ledger_entries SET line = replace(line, '\"target\":\"closed\"', '\"target\":\"other\"')
             WHERE seq = 1 AND line LIKE '%\"target\":\"closed\"%'",
            &[],
        )
        .unwrap();
    assert_eq!(edited, 1);
    let o = laptops[1].run(&["ledger", "verify"]);
    assert_eq!(o.status.code(), Some(1), "{}", both(&o));
    assert!(
        stdout(&o).contains("entry 1 (line 1) was edited"),
        "{}",
        both(&o)
    );
}
