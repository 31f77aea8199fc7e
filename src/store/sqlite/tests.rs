use std::os::unix::fs::PermissionsExt;

use super::*;
use crate::bus::EventSink;
use crate::fleet::Summary;
use crate::fleet::event::Stream;

fn started(nodes: &[&str]) -> Event {
    Event::RunStarted {
        kind: RunKind::Exec,
        command: "true".into(),
        target: "all".into(),
        nodes: nodes.iter().map(|n| n.to_string()).collect(),
        forks: 10,
        sot: "/sot".into(),
        sot_commit: Some("0123abc".into()),
        overrides: Vec::new(),
    }
}

fn finished() -> Event {
    Event::RunFinished {
        summary: Summary::default(),
        elapsed_ms: 1,
        cancelled: false,
        dropped_output: Default::default(),
    }
}

/// Record everything a sink sent.
fn drain(store: &mut SqliteStore, rx: &mut crate::bus::BusReceiver) {
    while let Ok(e) = rx_try(rx) {
        store.record(&e).unwrap();
    }
}

fn rx_try(rx: &mut crate::bus::BusReceiver) -> std::result::Result<Envelope, ()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    rt.block_on(async {
        tokio::time::timeout(std::time::Duration::from_millis(20), rx.recv())
            .await
            .ok()
            .flatten()
            .ok_or(())
    })
}

fn record_run(store: &mut SqliteStore, id: &str, results: &[(&str, NodeStatus)]) {
    let (sink, mut rx) = EventSink::channel(id);
    sink.send(started(
        &results.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
    ));
    drain(store, &mut rx);
    for (node, status) in results {
        sink.send(Event::NodeFinished {
            result: NodeResult::new(node, *status),
        });
        drain(store, &mut rx);
        // finished_ms comes from the clock: keep the runs apart.
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    sink.send(finished());
    drain(store, &mut rx);
}

#[test]
fn last_results_and_node_history() {
    let tmp = tempfile::tempdir().unwrap();
    let mut store = SqliteStore::open(&tmp.path().join("runs.db")).unwrap();
    assert!(store.last_results().unwrap().is_empty());
    record_run(
        &mut store,
        "run-1",
        &[("a", NodeStatus::Ok), ("b", NodeStatus::Ok)],
    );
    std::thread::sleep(std::time::Duration::from_millis(2));
    record_run(&mut store, "run-2", &[("a", NodeStatus::Unreachable)]);
    let last = store.last_results().unwrap();
    assert_eq!(last.len(), 2);
    assert_eq!(last["a"].run_id, "run-2");
    assert_eq!(last["a"].status, NodeStatus::Unreachable);
    assert_eq!(last["b"].run_id, "run-1");
    let history = store.node_history("a", 10).unwrap();
    let ids: Vec<&str> = history.iter().map(|(r, _)| r.id.as_str()).collect();
    assert_eq!(ids, ["run-2", "run-1"], "newest first");
    assert_eq!(history[0].1.status, NodeStatus::Unreachable);
    assert_eq!(store.node_history("a", 1).unwrap().len(), 1);
    assert!(store.node_history("nobody", 10).unwrap().is_empty());
    let run = store.run("run-1").unwrap().unwrap();
    assert_eq!(run.sot_commit.as_deref(), Some("0123abc"));
    assert_eq!(run.kind, RunKind::Exec);
    assert_eq!(run.state, RunState::Finished);
}

#[test]
fn interleaved_runs_are_recorded_apart_and_completely() {
    let tmp = tempfile::tempdir().unwrap();
    let mut store = SqliteStore::open(&tmp.path().join("runs.db")).unwrap();
    let (bus, mut rx) = crate::bus::Bus::new();
    let a = bus.run("run-a");
    let b = bus.run("run-b");
    a.send(started(&["n1", "n2"]));
    b.send(started(&["n2", "n3"]));
    a.send(Event::NodeFinished {
        result: NodeResult::new("n1", NodeStatus::Ok),
    });
    b.send(Event::Warning {
        node: Some("n3".into()),
        message: "only b".into(),
    });
    b.send(Event::NodeFinished {
        result: NodeResult::new("n2", NodeStatus::Failed),
    });
    a.send(Event::NodeFinished {
        result: NodeResult::new("n2", NodeStatus::Ok),
    });
    a.send(finished());
    b.send(Event::NodeFinished {
        result: NodeResult::new("n3", NodeStatus::Ok),
    });
    drain(&mut store, &mut rx);
    let ra = store.run("run-a").unwrap().unwrap();
    let rb = store.run("run-b").unwrap().unwrap();
    assert_eq!(ra.state, RunState::Finished);
    assert_eq!(rb.state, RunState::Running, "b has not finished");
    let status = |run: &RunRow| -> Vec<(String, NodeStatus)> {
        store
            .results(run)
            .unwrap()
            .into_iter()
            .map(|r| (r.node, r.status))
            .collect()
    };
    assert_eq!(
        status(&ra),
        [("n1".into(), NodeStatus::Ok), ("n2".into(), NodeStatus::Ok)]
    );
    assert_eq!(
        status(&rb),
        [
            ("n2".into(), NodeStatus::Failed),
            ("n3".into(), NodeStatus::Ok)
        ]
    );
    assert!(store.notes(&ra).unwrap().is_empty());
    assert_eq!(store.notes(&rb).unwrap()[0].message, "only b");
}

#[test]
fn task_results_and_facts_are_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let mut store = SqliteStore::open(&tmp.path().join("runs.db")).unwrap();
    let (sink, mut rx) = EventSink::channel("run-p");
    sink.send(started(&["n1"]));
    sink.send(Event::Facts {
        node: "n1".into(),
        facts: [("os".to_string(), "debian".to_string())].into(),
    });
    let mut r = NodeResult::new("n1", NodeStatus::Failed);
    for (index, status) in [TaskStatus::Changed, TaskStatus::Refused, TaskStatus::Failed]
        .into_iter()
        .enumerate()
    {
        r.tasks.push(TaskResult {
            index,
            name: format!("task {index}"),
            status,
            message: format!("message {index}"),
            diff: (index == 0).then(|| "--- a\n+++ b\n".to_string()),
            output: None,
        });
    }
    sink.send(Event::NodeFinished { result: r });
    sink.send(Event::Output {
        node: "n1".into(),
        stream: Stream::Stdout,
        data: b"x".to_vec(),
    });
    drain(&mut store, &mut rx);
    let run = store.run("last").unwrap().unwrap();
    let results = store.results(&run).unwrap();
    let tasks: Vec<(usize, TaskStatus, &str)> = results[0]
        .tasks
        .iter()
        .map(|t| (t.index, t.status, t.message.as_str()))
        .collect();
    assert_eq!(
        tasks,
        [
            (0, TaskStatus::Changed, "message 0"),
            (1, TaskStatus::Refused, "message 1"),
            (2, TaskStatus::Failed, "message 2")
        ]
    );
    assert_eq!(results[0].tasks[0].diff.as_deref(), Some("--- a\n+++ b\n"));
    let (facts, _) = store.facts("n1").unwrap().unwrap();
    assert_eq!(facts["os"], "debian");
}

#[test]
fn a_store_of_the_previous_release_migrates_and_keeps_its_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("old.db");
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/store-v0.db"),
        &path,
    )
    .unwrap();
    let mut store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.version().unwrap(), schema::LATEST);
    let runs = store.runs(10).unwrap();
    let kinds: Vec<RunKind> = runs.iter().map(|r| r.kind).collect();
    assert_eq!(
        kinds,
        [
            RunKind::HardenAudit,
            RunKind::Play,
            RunKind::Exec,
            RunKind::Exec
        ]
    );
    assert!(runs.iter().all(|r| r.sot_commit.is_none()));
    let exec = &runs[3];
    let results = store.results(exec).unwrap();
    assert_eq!(results.len(), 3);
    assert!(
        results
            .iter()
            .all(|r| r.status == NodeStatus::Ok && r.stdout.bytes == b"hello\n")
    );
    // New runs go in beside the old ones.
    record_run(&mut store, "run-new", &[("n01", NodeStatus::Ok)]);
    assert_eq!(store.runs(10).unwrap().len(), 5);
    drop(store);
    // And it opens again as current.
    assert_eq!(SqliteStore::open(&path).unwrap().runs(10).unwrap().len(), 5);
}

#[test]
fn a_newer_store_is_refused_and_left_untouched() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("new.db");
    {
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", schema::LATEST + 7)
            .unwrap();
    }
    let before = std::fs::read(&path).unwrap();
    let err = SqliteStore::open(&path).err().expect("refused");
    let text = err.to_string();
    assert!(
        matches!(err, StoreError::TooNew { found, supported, .. } if found == schema::LATEST + 7 && supported == schema::LATEST)
    );
    assert!(
        text.contains(&format!("schema version {}", schema::LATEST + 7))
            && text.contains(&format!("(version {})", schema::LATEST)),
        "{text}"
    );
    assert_eq!(std::fs::read(&path).unwrap(), before, "not changed");
    assert!(!tmp.path().join("new.db-wal").exists());
}

#[test]
fn a_new_store_is_private_like_ssh_keys() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("state/maestro/runs.db");
    let mut store = SqliteStore::open(&path).unwrap();
    record_run(&mut store, "run-1", &[("a", NodeStatus::Ok)]);
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(path.parent().unwrap()), 0o700);
    assert_eq!(mode(&tmp.path().join("state")), 0o700);
    let wal = path.with_file_name("runs.db-wal");
    assert!(wal.exists());
    assert_eq!(mode(&wal), 0o600, "SQLite gives its WAL the file's mode");
}

#[test]
fn approvals_survive_reopening_and_are_decided_once() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("runs.db");
    let reasons = vec!["L4 agent: two people must approve".to_string()];
    let id = {
        let mut store = SqliteStore::open(&path).unwrap();
        let a = store
            .request_approval("fp-1", "deploy x", &reasons, "alice")
            .unwrap();
        let again = store
            .request_approval("fp-1", "deploy x", &reasons, "alice")
            .unwrap();
        assert_eq!(a.id, again.id, "one pending approval per job");
        a.id
    };
    let mut store = SqliteStore::open(&path).unwrap();
    let pending = store.approvals(true).unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].reasons, reasons);
    let decided = store
        .decide_approval(&id, ApprovalState::Approved, "bob", Some("ok"))
        .unwrap();
    assert_eq!(decided.state, ApprovalState::Approved);
    assert_eq!(decided.decided_by.as_deref(), Some("bob"));
    assert!(
        store
            .decide_approval(&id, ApprovalState::Rejected, "eve", None)
            .is_err(),
        "a decision is final"
    );
    assert!(store.approvals(true).unwrap().is_empty());
    assert_eq!(
        store.approval_for("fp-1").unwrap().unwrap().state,
        ApprovalState::Approved
    );
}

#[test]
fn every_audit_of_a_node_is_kept_and_the_first_is_its_baseline() {
    let tmp = tempfile::tempdir().unwrap();
    let mut store = SqliteStore::open(&tmp.path().join("runs.db")).unwrap();
    assert!(store.first_compliance("a").unwrap().is_none());
    for (run, percent, failing) in [
        ("audit-1", 37.5, vec!["LOG-01", "SSH-13"]),
        ("audit-2", 96.0, vec!["SSH-26"]),
    ] {
        let (sink, mut rx) = EventSink::channel(run);
        sink.send(started(&["a"]));
        sink.send(Event::Compliance {
            node: "a".into(),
            baseline: "strict".into(),
            percent,
            passing: 10,
            failing: failing.len(),
            unknown: 0,
            failing_rules: failing.iter().map(|r| r.to_string()).collect(),
        });
        sink.send(finished());
        drain(&mut store, &mut rx);
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    let history = store.compliance_history("a", 10).unwrap();
    let runs: Vec<&str> = history.iter().map(|c| c.run_id.as_str()).collect();
    assert_eq!(runs, ["audit-2", "audit-1"], "newest first");
    assert_eq!(history[0].failing_rules, ["SSH-26"]);
    let first = store.first_compliance("a").unwrap().unwrap();
    assert_eq!((first.run_id.as_str(), first.percent), ("audit-1", 37.5));
    assert_eq!(first.failing_rules, ["LOG-01", "SSH-13"]);
    assert!(store.compliance_history("b", 10).unwrap().is_empty());
}
