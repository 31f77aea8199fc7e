//! The store's behaviour, on every backend: each test body runs on a fresh
//! SQLite file and on a fresh PostgreSQL database (see
//! [`super::postgres::cluster`]). What only one backend has (a file's
//! mode, the first release's SQLite file) is tested beside it.

use super::*;
use crate::bus::EventSink;
use crate::fleet::Summary;
use crate::fleet::event::{Event, NodeResult, NodeStatus, RunKind, Stream, TaskResult, TaskStatus};

/// A store to test, and what keeps it alive.
pub(super) struct TestStore {
    pub location: Location,
    _dir: Option<tempfile::TempDir>,
}

impl TestStore {
    pub fn open(&self) -> Box<dyn Store> {
        open(&self.location).unwrap_or_else(|e| panic!("opening {}: {e}", self.location))
    }
}

/// Run `body` on a new SQLite store, then on a new PostgreSQL one.
#[allow(clippy::print_stderr)]
pub(super) fn each_backend(body: impl Fn(&TestStore)) {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = TestStore {
        location: Location::Sqlite(dir.path().join("runs.db")),
        _dir: Some(dir),
    };
    let postgres = postgres::cluster::fresh_database().map(|url| TestStore {
        location: Location::Postgres(url),
        _dir: None,
    });
    for store in std::iter::once(sqlite).chain(postgres) {
        // Shown with a failure: which backend it was.
        eprintln!("on {}", store.location);
        body(&store);
    }
}

pub(super) fn started(nodes: &[&str]) -> Event {
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

pub(super) fn finished() -> Event {
    Event::RunFinished {
        summary: Summary::default(),
        elapsed_ms: 1,
        cancelled: false,
        dropped_output: Default::default(),
    }
}

/// Record everything a sink sent.
pub(super) fn drain(store: &mut dyn Store, rx: &mut crate::bus::BusReceiver) {
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

pub(super) fn record_run(store: &mut dyn Store, id: &str, results: &[(&str, NodeStatus)]) {
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
    each_backend(|db| {
        let mut store = db.open();
        let store = &mut *store;
        assert!(store.last_results().unwrap().is_empty());
        record_run(
            store,
            "run-1",
            &[("a", NodeStatus::Ok), ("b", NodeStatus::Ok)],
        );
        std::thread::sleep(std::time::Duration::from_millis(2));
        record_run(store, "run-2", &[("a", NodeStatus::Unreachable)]);
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
        assert_eq!(store.run("run-").unwrap().map(|r| r.id), None, "ambiguous");
        assert_eq!(
            store.run("RUN-2").unwrap().map(|r| r.id).as_deref(),
            Some("run-2")
        );
        // A prefix is text: `_` and `%` are not wildcards.
        for pattern in ["run_2", "%2", "run-_", "%"] {
            assert_eq!(store.run(pattern).unwrap().map(|r| r.id), None, "{pattern}");
        }
        assert_eq!(
            store.run("last").unwrap().map(|r| r.id).as_deref(),
            Some("run-2")
        );
    });
}

#[test]
fn interleaved_runs_are_recorded_apart_and_completely() {
    each_backend(|db| {
        let mut store = db.open();
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
        drain(&mut *store, &mut rx);
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
    });
}

#[test]
fn task_results_output_and_facts_are_kept() {
    each_backend(|db| {
        let mut store = db.open();
        let (sink, mut rx) = EventSink::channel("run-p");
        sink.send(started(&["n1"]));
        sink.send(Event::Facts {
            node: "n1".into(),
            facts: [("os".to_string(), "debian".to_string())].into(),
        });
        let mut r = NodeResult::new("n1", NodeStatus::Failed);
        r.exit_code = Some(3);
        r.stdout = crate::fleet::event::Captured {
            bytes: b"out\xff\n".to_vec(),
            total: 5,
        };
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
        drain(&mut *store, &mut rx);
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
        assert_eq!(results[0].exit_code, Some(3));
        assert_eq!(results[0].stdout.bytes, b"out\xff\n", "bytes, not text");
        let (facts, _) = store.facts("n1").unwrap().unwrap();
        assert_eq!(facts["os"], "debian");
        assert!(store.facts("n2").unwrap().is_none());
    });
}

#[test]
fn approvals_survive_reopening_and_are_decided_once() {
    each_backend(|db| {
        let reasons = vec!["L4 agent: two people must approve".to_string()];
        let id = {
            let mut store = db.open();
            let a = store
                .request_approval("fp-1", "deploy x", &reasons, "alice")
                .unwrap();
            let again = store
                .request_approval("fp-1", "deploy x", &reasons, "alice")
                .unwrap();
            assert_eq!(a.id, again.id, "one pending approval per job");
            a.id
        };
        let mut store = db.open();
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
        assert_eq!(store.approvals(false).unwrap().len(), 1);
        assert_eq!(
            store.approval_for("fp-1").unwrap().unwrap().state,
            ApprovalState::Approved
        );
        let signature = |person: &str, signed_ms| ApprovalSignature {
            approval_id: id.clone(),
            person: person.into(),
            key: format!("SHA256:{person}"),
            plan: "plan".into(),
            signature: "sig".into(),
            signed_ms,
            expires_ms: signed_ms + 10,
        };
        store.add_approval_signature(&signature("bob", 2)).unwrap();
        store
            .add_approval_signature(&signature("alice", 1))
            .unwrap();
        store.add_approval_signature(&signature("bob", 3)).unwrap();
        let people: Vec<(String, i64)> = store
            .approval_signatures(&id)
            .unwrap()
            .into_iter()
            .map(|s| (s.person, s.signed_ms))
            .collect();
        assert_eq!(
            people,
            [("alice".into(), 1), ("bob".into(), 3)],
            "one per person"
        );
    });
}

#[test]
fn every_audit_of_a_node_is_kept_and_the_first_is_its_baseline() {
    each_backend(|db| {
        let mut store = db.open();
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
            drain(&mut *store, &mut rx);
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
    });
}

#[test]
fn telemetry_minutes_are_replaced_read_in_order_and_pruned() {
    each_backend(|db| {
        let mut store = db.open();
        let minute = |agent: &str, minute_ms, cpu| Rollup {
            node: "n1".into(),
            agent: agent.into(),
            minute_ms,
            samples: 6,
            cpu_pct_avg: Some(cpu),
            rss_bytes_max: Some(u64::MAX),
            ..Default::default()
        };
        store
            .write_rollups(&[
                minute("", 120_000, 1.0),
                minute("web", 60_000, 2.0),
                minute("", 60_000, 3.0),
            ])
            .unwrap();
        store.write_rollups(&[minute("", 120_000, 4.0)]).unwrap();
        let read: Vec<(String, i64, Option<f64>)> = store
            .rollups("n1", 0)
            .unwrap()
            .into_iter()
            .map(|r| (r.agent, r.minute_ms, r.cpu_pct_avg))
            .collect();
        assert_eq!(
            read,
            [
                ("".into(), 60_000, Some(3.0)),
                ("web".into(), 60_000, Some(2.0)),
                ("".into(), 120_000, Some(4.0))
            ]
        );
        let first = &store.rollups("n1", 0).unwrap()[0];
        assert_eq!(
            first.rss_bytes_max,
            Some(i64::MAX as u64),
            "clamped, not wrapped"
        );
        assert_eq!(first.mem_used_pct_avg, None, "a gap stays a gap");
        assert_eq!(store.rollups("n1", 100_000).unwrap().len(), 1);
        assert_eq!(store.prune_rollups(100_000).unwrap(), 2);
        assert_eq!(store.rollups("n1", 0).unwrap().len(), 1);
        assert!(store.rollups("n2", 0).unwrap().is_empty());
    });
}

fn new_rollout(id: &str, agent: &str) -> NewRollout {
    NewRollout {
        id: id.into(),
        agent: agent.into(),
        from_version: Some("1.0".into()),
        to_version: "1.1".into(),
        strategy: "canary".into(),
        definition: "{}".into(),
        target: "all".into(),
        nodes: vec!["n1".into(), "n2".into()],
        created_by: "alice".into(),
        controller: "1@host".into(),
    }
}

#[test]
fn one_active_rollout_per_agent() {
    each_backend(|db| {
        let mut store = db.open();
        let first = store.create_rollout(&new_rollout("ro-1", "web")).unwrap();
        assert_eq!(first.status, RolloutStatus::Progressing);
        assert_eq!(first.nodes, ["n1", "n2"]);
        let refused = store
            .create_rollout(&new_rollout("ro-2", "web"))
            .unwrap_err();
        assert!(
            matches!(&refused, StoreError::ActiveRollout { id, status, .. } if id == "ro-1" && status == "progressing"),
            "{refused}"
        );
        store.create_rollout(&new_rollout("ro-3", "db")).unwrap();
        let mut done = first.clone();
        done.status = RolloutStatus::Aborted;
        done.phase = "rollback".into();
        done.weight = 0;
        store.save_rollout(&done).unwrap();
        assert!(store.active_rollout("web").unwrap().is_none());
        std::thread::sleep(std::time::Duration::from_millis(2));
        store.create_rollout(&new_rollout("ro-4", "web")).unwrap();
        // A retry of the aborted one would make two active rollouts of web.
        let mut retry = done.clone();
        retry.status = RolloutStatus::Progressing;
        retry.attempt = 2;
        assert!(matches!(
            store.save_rollout(&retry),
            Err(StoreError::ActiveRollout { .. })
        ));
        assert_eq!(
            store.rollout("ro-1").unwrap().unwrap().status,
            RolloutStatus::Aborted
        );
        assert_eq!(store.rollout("ro-").unwrap(), None, "ambiguous prefix");
        assert_eq!(store.rollout("ro-4").unwrap().unwrap().agent, "web");
        assert_eq!(store.rollout("last").unwrap().unwrap().id, "ro-4");
        assert_eq!(store.rollouts(10).unwrap().len(), 3);
    });
}

#[test]
fn a_rollout_is_claimed_by_one_controller_at_a_time() {
    each_backend(|db| {
        let mut store = db.open();
        store.create_rollout(&new_rollout("ro-1", "web")).unwrap();
        let alive = |_: &str| false;
        let dead = |_: &str| true;
        assert!(
            store
                .claim_rollout("ro-1", "1@host", 60_000, &alive)
                .unwrap(),
            "its creator"
        );
        assert!(
            !store
                .claim_rollout("ro-1", "2@host", 60_000, &alive)
                .unwrap(),
            "held, lease running"
        );
        assert!(
            store
                .claim_rollout("ro-1", "2@host", 60_000, &dead)
                .unwrap(),
            "the holder died"
        );
        store.release_rollout("ro-1", "1@host").unwrap();
        assert_eq!(
            store
                .rollout("ro-1")
                .unwrap()
                .unwrap()
                .controller
                .as_deref(),
            Some("2@host"),
            "not its to release"
        );
        store.release_rollout("ro-1", "2@host").unwrap();
        assert_eq!(store.rollout("ro-1").unwrap().unwrap().controller, None);
        assert!(
            store
                .claim_rollout("ro-1", "3@host", 60_000, &alive)
                .unwrap(),
            "free"
        );
        assert!(
            !store
                .claim_rollout("nothing", "3@host", 60_000, &alive)
                .unwrap()
        );
        store.request_rollout("ro-1", Some("pause")).unwrap();
        assert_eq!(
            store.rollout("ro-1").unwrap().unwrap().requested.as_deref(),
            Some("pause")
        );
    });
}

#[test]
fn a_rollouts_journal_and_measurements_are_kept_in_order() {
    each_backend(|db| {
        let mut store = db.open();
        store.create_rollout(&new_rollout("ro-1", "web")).unwrap();
        let entry = |entry: &str, ok| JournalEntry {
            seq: 0,
            at_ms: 0,
            attempt: 1,
            step: Some(0),
            entry: entry.into(),
            action: "deploy".into(),
            node: Some("n1".into()),
            version: Some("1.1".into()),
            ok,
            detail: String::new(),
        };
        assert_eq!(
            store
                .append_journal("ro-1", &entry("intent", None))
                .unwrap(),
            1
        );
        assert_eq!(
            store
                .append_journal("ro-1", &entry("result", Some(true)))
                .unwrap(),
            2
        );
        let journal = store.journal("ro-1").unwrap();
        let read: Vec<(i64, &str, Option<bool>)> = journal
            .iter()
            .map(|e| (e.seq, e.entry.as_str(), e.ok))
            .collect();
        assert_eq!(read, [(1, "intent", None), (2, "result", Some(true))]);
        assert!(store.journal("ro-2").unwrap().is_empty());
        for (seq, outcome) in [(2, GateOutcome::Fail), (1, GateOutcome::Pass)] {
            store
                .record_measurement(&Measurement {
                    rollout_id: "ro-1".into(),
                    attempt: 1,
                    step: 0,
                    gate: "errors".into(),
                    seq,
                    at_ms: 5,
                    version: "1.1".into(),
                    outcome,
                    metrics: serde_json::json!({"error_rate": 0.5}),
                    message: "measured".into(),
                })
                .unwrap();
        }
        let measured: Vec<(u32, GateOutcome, serde_json::Value)> = store
            .measurements("ro-1")
            .unwrap()
            .into_iter()
            .map(|m| (m.seq, m.outcome, m.metrics))
            .collect();
        assert_eq!(
            measured,
            [
                (1, GateOutcome::Pass, serde_json::json!({"error_rate": 0.5})),
                (2, GateOutcome::Fail, serde_json::json!({"error_rate": 0.5}))
            ]
        );
    });
}

#[test]
fn reflections_are_made_once_answered_once_and_lessons_counted_once() {
    each_backend(|db| {
        let mut store = db.open();
        let new = |id: &str, source: &str, created_ms| NewReflection {
            id: id.into(),
            checklist: "law-reflect-001".into(),
            trigger: "rollout_aborted".into(),
            source: source.into(),
            agent: Some("web".into()),
            description: "aborted".into(),
            created_ms,
        };
        let made = store
            .add_reflection(&new("refl-abcdef01", "rollout:ro-1", 2))
            .unwrap()
            .unwrap();
        assert!(made.is_pending());
        assert!(
            store
                .add_reflection(&new("refl-abcdef02", "rollout:ro-1", 3))
                .unwrap()
                .is_none(),
            "one per checklist and operation"
        );
        store
            .add_reflection(&new("refl-99", "rollout:ro-2", 1))
            .unwrap()
            .unwrap();
        let ids: Vec<String> = store
            .reflections(false)
            .unwrap()
            .into_iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(ids, ["refl-99", "refl-abcdef01"], "oldest first");
        assert_eq!(
            store
                .reflection("refl-abcdef")
                .unwrap()
                .map(|r| r.id)
                .as_deref(),
            Some("refl-abcdef01")
        );
        assert_eq!(
            store.reflection("refl-").unwrap(),
            None,
            "too short a prefix"
        );
        let answer = AnswerRecord {
            by: "alice".into(),
            at_ms: 9,
            commit: "c0ffee".into(),
            ledger: "hash".into(),
        };
        store.answer_reflection("refl-abcdef01", &answer).unwrap();
        assert!(
            store.answer_reflection("refl-abcdef01", &answer).is_err(),
            "answered already"
        );
        let answered = store.reflection("refl-abcdef01").unwrap().unwrap();
        assert_eq!(
            (answered.answered_by.as_deref(), answered.commit.as_deref()),
            (Some("alice"), Some("c0ffee"))
        );
        assert_eq!(store.reflections(true).unwrap().len(), 1);
        let use_of = |lesson: &str, evidence: &str, at_ms| LessonUse {
            lesson: lesson.into(),
            evidence: evidence.into(),
            at_ms,
            actor: "bob".into(),
        };
        assert!(store.add_lesson_use(&use_of("L1", "run:r1", 2)).unwrap());
        assert!(
            !store.add_lesson_use(&use_of("L1", "run:r1", 3)).unwrap(),
            "counted once"
        );
        assert!(store.add_lesson_use(&use_of("L2", "run:r1", 1)).unwrap());
        assert_eq!(
            store
                .lesson_uses(None)
                .unwrap()
                .iter()
                .map(|u| u.lesson.as_str())
                .collect::<Vec<_>>(),
            ["L2", "L1"]
        );
        assert_eq!(store.lesson_uses(Some("L1")).unwrap().len(), 1);
    });
}

#[test]
fn the_store_records_what_the_bus_delivers() {
    each_backend(|db| {
        let mut store = db.open();
        let (bus, rx) = crate::bus::Bus::new();
        let sink = bus.run("run-bus");
        sink.send(started(&["n1"]));
        sink.send(Event::NodeFinished {
            result: NodeResult::new("n1", NodeStatus::Ok),
        });
        sink.send(finished());
        drop((sink, bus));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        // Inside a runtime, as the engine runs it: PostgreSQL's client must not mind.
        let failed = rt.block_on(async {
            let subscriber: &mut dyn crate::bus::Subscriber = &mut *store;
            crate::bus::pump(rx, &mut [subscriber]).await
        });
        assert!(
            failed.is_empty(),
            "{:?}",
            failed.iter().map(|e| &e.message).collect::<Vec<_>>()
        );
        assert_eq!(
            store.run("run-bus").unwrap().unwrap().state,
            RunState::Finished
        );
    });
}

#[test]
fn a_kill_switch_is_engaged_and_released_for_every_reader_of_the_store() {
    each_backend(|db| {
        let mut store = db.open();
        let kill = |engaged, at_ms| KillRecord {
            agent: "web".into(),
            engaged,
            by: "Ada <ada@example.org>".into(),
            at_ms,
            reason: "runaway costs".into(),
            limit: Some("gpu".into()),
            commit: Some("0123abc".into()),
        };
        store.record_kill(&kill(true, 1_000)).unwrap();
        let other = db.open();
        assert_eq!(other.engaged_kills().unwrap(), [kill(true, 1_000)]);
        store.record_kill(&kill(false, 2_000)).unwrap();
        assert!(other.engaged_kills().unwrap().is_empty(), "released");
        store.record_kill(&kill(true, 3_000)).unwrap();
        assert_eq!(
            other.engaged_kills().unwrap()[0].at_ms,
            3_000,
            "engaged again"
        );
    });
}
