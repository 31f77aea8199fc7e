//! Snapshot tests of every view at 80×24 and 160×48 (the text of the frame,
//! styles aside), and the console's behaviour driven by keys: pinned
//! confirmation plans, keys that say why they do nothing, read-only mode.
//!
//! The app is driven exactly as the event loop drives it (keys, messages,
//! effects) with a fixed clock, so frames are deterministic.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;

use super::action::{Action, ExecPlan, Pending};
use super::app::{App, Effect, ExecPolicy, Info, Msg};
use super::components::node::NodeCompliance;
use super::components::run::RunDetail;
use crate::bus::Envelope;
use crate::fleet::event::RunKind;
use crate::fleet::event::{Captured, Stream};
use crate::fleet::{Event, NodeResult, NodeStatus, Summary};
use crate::ops::Plan;
use crate::sot::Sot;
use crate::store::{ComplianceRecord, LastResult, Note, RunRow, RunState};

/// The id of every run the app under test starts.
const LIVE_RUN: &str = "20251121-075945-beef";

/// An event of the run the app started, at `at_ms`.
fn at(at_ms: i64, event: Event) -> Msg {
    Msg::Engine(Envelope {
        run_id: LIVE_RUN.into(),
        seq: 0,
        at_ms,
        event,
    })
}

/// An event of the run the app started.
fn ev(event: Event) -> Msg {
    at(NOW, event)
}

/// Answer the app's request for a plan as the operations layer would for
/// a job that needs no check run, admitted by the gate.
fn plan_arrives(app: &mut App) {
    let effects = app.take_effects();
    let plan = effects
        .iter()
        .find_map(|e| match e {
            Effect::Plan(p) => Some(p.clone()),
            _ => None,
        })
        .expect("the dialog asked for a plan");
    let planned = super::app::Planned {
        plan: Some(Plan::static_plan(
            &plan.command,
            true,
            &plan.nodes,
            &plan.command,
        )),
        refusal: None,
        policy: None,
        lessons: Vec::new(),
    };
    app.on_msg(Msg::Planned {
        plan,
        result: Ok(planned),
    });
}

/// 2025-11-21 08:00:00 UTC.
const NOW: i64 = 1_763_712_000_000;
const SIZES: [(u16, u16); 2] = [(80, 24), (160, 48)];

fn write_sot(dir: &Path, nodes: &[(&str, &str, &str, &str, &str)]) -> Sot {
    std::fs::write(
        dir.join("maestro.toml"),
        format!(
            "[maestro]\nname = \"acme-prod\"\n\n[paths]\nprofiles = \"{repo}/profiles\"\nplaybooks = \"{repo}/playbooks\"\n\
             hardening = \"{repo}/hardening\"\n\n[tags]\nrequired = [\"env\", \"region\"]\n",
            repo = env!("CARGO_MANIFEST_DIR")
        ),
    )
    .unwrap();
    let mut text = String::new();
    for (name, address, group, region, role) in nodes {
        text.push_str(&format!(
            "[node.{name}]\naddress = \"{address}\"\ngroups = [\"{group}\"]\n\
             tags = {{ env = \"prod\", region = \"{region}\", role = \"{role}\" }}\n\
             vars = {{ gpu_count = 8 }}\n\n"
        ));
    }
    std::fs::write(dir.join("nodes.toml"), text).unwrap();
    std::fs::write(
        dir.join("groups.toml"),
        "[group.gpu]\ndescription = \"inference nodes\"\n\n[group.gateways]\ndescription = \"API gateways\"\n\n[group.batch]\n",
    )
    .unwrap();
    // A registry of its own (the kill-switch tests bring theirs).
    if dir.join("agents.toml").exists() {
        return crate::sot::load(dir).unwrap();
    }
    std::fs::write(
        dir.join("models.toml"),
        "[model.llama-3-1-8b-instruct]\nprovider = \"vllm\"\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("agents.toml"),
        format!(
            "[agent.fleet-doctor]\nmodel = \"llama-3-1-8b-instruct\"\nautonomy = \"L3\"\ncurrent = \"2.1.0\"\ncommand = \"./run\"\nport = 8083\n\n\
             [agent.fleet-doctor.versions.\"2.0.3\"]\nartifact = \"artifacts/fd-2.0.3.tar.gz\"\nsha256 = \"{a}\"\n\n\
             [agent.fleet-doctor.versions.\"2.1.0\"]\nartifact = \"artifacts/fd-2.1.0.tar.gz\"\nsha256 = \"{b}\"\n\n\
             [agent.support-triage]\nmodel = \"llama-3-1-8b-instruct\"\nautonomy = \"L2\"\ncurrent = \"1.4.0\"\n\n\
             [agent.support-triage.versions.\"1.4.0\"]\nartifact = \"artifacts/st-1.4.0.tar.gz\"\nsha256 = \"{a}\"\n",
            a = "a".repeat(64),
            b = "b".repeat(64)
        ),
    )
    .unwrap();
    crate::sot::load(dir).unwrap()
}

const FLEET: &[(&str, &str, &str, &str, &str)] = &[
    ("gpu-eu-01", "10.20.2.21", "gpu", "eu-west", "inference"),
    ("gpu-eu-02", "10.20.2.22", "gpu", "eu-west", "inference"),
    ("gpu-eu-03", "10.20.2.23", "gpu", "eu-west", "inference"),
    ("gpu-us-01", "10.30.2.21", "gpu", "us-east", "inference"),
    ("gpu-us-02", "10.30.2.22", "gpu", "us-east", "inference"),
    ("gw-eu-01", "10.20.1.11", "gateways", "eu-west", "gateway"),
    ("gw-us-01", "10.30.1.11", "gateways", "us-east", "gateway"),
    ("batch-eu-01", "10.20.3.31", "batch", "eu-west", "batch"),
    ("batch-us-01", "10.30.3.31", "batch", "us-east", "batch"),
];

fn info(policy: ExecPolicy) -> Info {
    Info {
        title: "maestro".into(),
        sot: "/srv/fleet/sot".into(),
        head: Some("5da5d72".into()),
        store: "/var/lib/maestro/maestro.db".into(),
        policy,
        run_details: vec![
            "forks 100 · timeout none · output kept 1024 KiB per stream".into(),
            "recorded in /var/lib/maestro/maestro.db".into(),
        ],
    }
}

fn app_with(nodes: &[(&str, &str, &str, &str, &str)], policy: ExecPolicy) -> App {
    let tmp = tempfile::tempdir().unwrap();
    let sot = write_sot(tmp.path(), nodes);
    let mut app = App::new(info(policy), Arc::new(sot), NOW);
    app.set_run_ids(|| LIVE_RUN.into());
    app.take_effects();
    app
}

fn app() -> App {
    let mut app = app_with(FLEET, ExecPolicy::Allowed);
    app.on_msg(Msg::LastResults(Ok(last_results())));
    app.on_msg(Msg::Runs(Ok(vec![run_row(), older_run()])));
    app
}

fn last_results() -> HashMap<String, LastResult> {
    let mut last = HashMap::new();
    for (node, status, ago_s) in [
        ("gpu-eu-01", NodeStatus::Ok, 300),
        ("gpu-eu-02", NodeStatus::Ok, 300),
        ("gpu-eu-03", NodeStatus::Failed, 300),
        ("gpu-us-01", NodeStatus::Unreachable, 7200),
        ("gw-eu-01", NodeStatus::TimedOut, 90_000),
    ] {
        last.insert(
            node.to_string(),
            LastResult {
                run_id: "20251121-075500-a1b2".into(),
                status,
                finished_ms: NOW - ago_s * 1000,
            },
        );
    }
    last
}

fn run_row() -> RunRow {
    RunRow {
        id: "20251121-075500-a1b2".into(),
        kind: RunKind::Exec,
        command: "systemctl is-active vllm".into(),
        target: "gpu".into(),
        sot: "/srv/fleet/sot".into(),
        sot_commit: Some("5da5d72c0ffee".into()),
        forks: 100,
        node_count: 4,
        nodes: vec![
            "gpu-eu-01".into(),
            "gpu-eu-02".into(),
            "gpu-eu-03".into(),
            "gpu-us-01".into(),
        ],
        state: RunState::Finished,
        started_ms: NOW - 301_000,
        finished_ms: Some(NOW - 299_800),
        ok: 2,
        failed: 1,
        unreachable: 1,
        timed_out: 0,
        cancelled: 0,
    }
}

fn older_run() -> RunRow {
    RunRow {
        id: "20251120-080000-0c0d".into(),
        command: "uname -r".into(),
        target: "all".into(),
        node_count: 9,
        nodes: FLEET.iter().map(|n| n.0.to_string()).collect(),
        started_ms: NOW - 86_400_000,
        finished_ms: Some(NOW - 86_398_000),
        ok: 9,
        failed: 0,
        unreachable: 0,
        ..run_row()
    }
}

fn result(node: &str, status: NodeStatus, code: Option<u32>, out: &[u8], err: &[u8]) -> NodeResult {
    let mut r = NodeResult::new(node, status);
    r.exit_code = code;
    r.stdout = Captured {
        bytes: out.to_vec(),
        total: out.len() as u64,
    };
    r.stderr = Captured {
        bytes: err.to_vec(),
        total: err.len() as u64,
    };
    r.duration_ms = 1240;
    r
}

fn run_detail() -> RunDetail {
    let mut unreachable = result("gpu-us-01", NodeStatus::Unreachable, None, b"", b"");
    unreachable.error = Some("connecting to 10.30.2.21:22: connection refused".into());
    RunDetail {
        run: run_row(),
        results: vec![
            result(
                "gpu-eu-01",
                NodeStatus::Ok,
                Some(0),
                // Hostile bytes: a screen clear and a colour change must
                // show as text, never reach the terminal.
                b"active\n\x1b[2J\x1b[31mred\x1b[0m\tafter-tab\n",
                b"",
            ),
            result("gpu-eu-02", NodeStatus::Ok, Some(0), b"active\n", b""),
            result(
                "gpu-eu-03",
                NodeStatus::Failed,
                Some(3),
                b"inactive\n",
                b"vllm.service: failed\n",
            ),
            unreachable,
        ],
        notes: vec![Note {
            at_ms: NOW - 300_500,
            node: Some("gpu-eu-02".into()),
            kind: "host_key_learned".into(),
            message: "trusted [10.20.2.22]:22 SHA256:abc on first use".into(),
        }],
        shared: None,
    }
}

fn key(code: KeyCode) -> KeyEvent {
    KeyEvent::new(code, KeyModifiers::NONE)
}

fn press(app: &mut App, code: KeyCode) {
    app.handle_key(key(code));
}

fn typed(app: &mut App, text: &str) {
    for c in text.chars() {
        press(app, KeyCode::Char(c));
    }
}

fn text_of(buffer: &Buffer) -> String {
    let mut out = String::new();
    for y in 0..buffer.area.height {
        let line: String = (0..buffer.area.width)
            .map(|x| buffer[(x, y)].symbol())
            .collect();
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn render(app: &App, width: u16, height: u16) -> String {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal.draw(|f| app.draw(f)).unwrap();
    let text = text_of(terminal.backend().buffer());
    // Temporary directories never reach a frame here, but keep snapshots
    // stable if one ever does.
    let tmp = std::env::temp_dir().display().to_string();
    text.replace(&tmp, "[TMP]")
}

/// Snapshot the app at both sizes.
fn snap(name: &str, app: &App) {
    for (w, h) in SIZES {
        insta::assert_snapshot!(format!("{name}_{w}x{h}"), render(app, w, h));
    }
}

// ---- views ----------------------------------------------------------------

#[test]
fn fleet_view() {
    let mut app = app();
    press(&mut app, KeyCode::Char(' '));
    press(&mut app, KeyCode::Down);
    press(&mut app, KeyCode::Char(' '));
    snap("fleet", &app);
}

#[test]
fn fleet_view_filtered_and_sorted_by_last_run() {
    let mut app = app();
    press(&mut app, KeyCode::Char('/'));
    typed(&mut app, "region=eu-west");
    press(&mut app, KeyCode::Enter);
    for _ in 0..4 {
        press(&mut app, KeyCode::Char('s'));
    }
    snap("fleet_filtered", &app);
}

#[test]
fn fleet_view_empty_sot() {
    let app = app_with(&[], ExecPolicy::Allowed);
    snap("fleet_empty", &app);
}

#[test]
fn fleet_view_filter_matches_nothing() {
    let mut app = app();
    press(&mut app, KeyCode::Char('/'));
    typed(&mut app, "nothing-matches");
    press(&mut app, KeyCode::Enter);
    snap("fleet_no_match", &app);
}

#[test]
fn groups_view() {
    let mut app = app();
    press(&mut app, KeyCode::Char(':'));
    typed(&mut app, "groups");
    press(&mut app, KeyCode::Enter);
    snap("groups", &app);
    // Enter shows the group's nodes (groups are in name order).
    press(&mut app, KeyCode::Down);
    press(&mut app, KeyCode::Down);
    press(&mut app, KeyCode::Enter);
    let frame = render(&app, 160, 48);
    assert!(frame.contains("filter group=gpu"), "{frame}");
    assert!(frame.contains("nodes 5/9"), "{frame}");
}

#[test]
fn node_view() {
    let mut app = app();
    press(&mut app, KeyCode::Enter);
    let effects = app.take_effects();
    assert!(
        matches!(&effects[..], [Effect::LoadNodeHistory(n)] if n == "batch-eu-01"),
        "the history is read in the background"
    );
    snap("node_loading", &app);
    let detail = run_detail();
    app.on_msg(Msg::NodeHistory {
        node: "batch-eu-01".into(),
        result: Ok(vec![
            (run_row(), detail.results[2].clone()),
            (older_run(), detail.results[1].clone()),
        ]),
    });
    snap("node", &app);
    let record = |run: &str, ago_s: i64, percent: f64, failing: &[&str]| ComplianceRecord {
        run_id: run.into(),
        node: "batch-eu-01".into(),
        at_ms: NOW - ago_s * 1000,
        baseline: "strict".into(),
        percent,
        passing: 120,
        failing: failing.len() - 1,
        unknown: 1,
        failing_rules: failing.iter().map(|r| r.to_string()).collect(),
    };
    let first = record(
        "20251120-090000-f1r5",
        86_400,
        37.6,
        &[
            "SSH-05", "SSH-06", "SSH-07", "SSH-12", "SSH-13", "SSH-18", "KRN-01", "KRN-02",
            "KRN-03", "LOG-01", "ACC-06", "AUD-02", "AUD-10", "AIDE-01", "KRN-19",
        ],
    );
    app.on_msg(Msg::NodeCompliance {
        node: "batch-eu-01".into(),
        result: Ok(NodeCompliance {
            history: vec![
                record(
                    "20251121-075500-a1b2",
                    300,
                    95.4,
                    &["SSH-26", "AUD-03", "AUD-04", "KRN-19"],
                ),
                first.clone(),
            ],
            first: Some(first),
        }),
    });
    snap("node_compliance", &app);
    app.on_msg(Msg::NodeHistory {
        node: "batch-eu-01".into(),
        result: Err("run store /var/lib/maestro/maestro.db: unable to open database file".into()),
    });
    snap("node_store_error", &app);
}

#[test]
fn runs_view() {
    let mut app = app();
    press(&mut app, KeyCode::Char(':'));
    typed(&mut app, "runs");
    press(&mut app, KeyCode::Enter);
    assert!(matches!(&app.take_effects()[..], [Effect::LoadRuns]));
    snap("runs", &app);
    app.on_msg(Msg::Runs(Ok(Vec::new())));
    snap("runs_empty", &app);
    app.on_msg(Msg::Runs(Err(
        "run store /var/lib/maestro/maestro.db: file is not a database".into(),
    )));
    snap("runs_error", &app);
}

#[test]
fn run_detail_view() {
    let mut app = app();
    app.dispatch(Action::Show(super::action::ViewId::Runs));
    press(&mut app, KeyCode::Enter);
    let effects = app.take_effects();
    assert!(
        effects
            .iter()
            .any(|e| matches!(e, Effect::LoadRun(id) if id == "20251121-075500-a1b2"))
    );
    snap("run_loading", &app);
    app.on_msg(Msg::Run {
        id: "20251121-075500-a1b2".into(),
        result: Ok(Some(run_detail())),
    });
    snap("run", &app);
    let frame = render(&app, 160, 48);
    assert!(
        frame.contains("^[[2J^[[31mred^[[0m    after-tab"),
        "escape sequences are shown as text: {frame}"
    );
    press(&mut app, KeyCode::Down);
    press(&mut app, KeyCode::Down);
    snap("run_failed_node", &app);
}

/// A run two controllers shared (`exec --share`, `maestro join`) says who
/// did how many nodes, and which were taken over from one that stopped.
#[test]
fn shared_run_detail_view() {
    use crate::store::{ItemState, WorkItem, WorkRun};
    let work = WorkRun {
        run_id: "20251121-075500-a1b2".into(),
        job: "{}".into(),
        sot_commit: None,
        ttl_ms: 30_000,
        created_ms: NOW,
        created_by: "4242@ops-1".into(),
        closed_by: Some("977@ops-2".into()),
    };
    let item = |node: &str, by: &str, attempts| WorkItem {
        node: node.into(),
        state: ItemState::Done,
        claimed_by: None,
        done_by: Some(by.into()),
        attempts,
    };
    let items = [
        item("gpu-eu-01", "4242@ops-1", 1),
        item("gpu-eu-02", "977@ops-2", 1),
        item("gpu-eu-03", "977@ops-2", 2),
        item("gpu-us-01", "4242@ops-1", 1),
    ];
    let mut app = app();
    app.dispatch(Action::Show(super::action::ViewId::Runs));
    press(&mut app, KeyCode::Enter);
    app.on_msg(Msg::Run {
        id: "20251121-075500-a1b2".into(),
        result: Ok(Some(RunDetail {
            shared: Some(crate::work::summary(&work, &items)),
            ..run_detail()
        })),
    });
    let frame = render(&app, 160, 48);
    assert!(
        frame.contains(
            "shared: started by 4242@ops-1, done by 4242@ops-1 2, 977@ops-2 2 · 0 free, 0 claimed · closed by 977@ops-2"
        ),
        "{frame}"
    );
    assert!(
        frame.contains("taken over from a controller that stopped: gpu-eu-03"),
        "{frame}"
    );
    snap("run_shared", &app);
}

fn live_app() -> App {
    let mut app = app();
    let nodes: Vec<String> = FLEET[..6].iter().map(|n| n.0.to_string()).collect();
    app.dispatch(Action::Confirmed(Pending::Exec(ExecPlan {
        job: crate::tui::action::Job::Command,
        nodes: nodes.clone(),
        command: "systemctl restart vllm".into(),
    })));
    let t0 = NOW - 15_000;
    app.set_now(t0);
    app.on_msg(at(
        t0,
        Event::RunStarted {
            kind: RunKind::Exec,
            command: "systemctl restart vllm".into(),
            target: nodes.join(","),
            nodes: nodes.clone(),
            forks: 100,
            sot: "/srv/fleet/sot".into(),
            sot_commit: None,
            overrides: Vec::new(),
        },
    ));
    // Two nodes started 15 s ago and are stuck; one is connecting.
    for n in ["gpu-eu-01", "gpu-eu-02"] {
        app.on_msg(ev(Event::NodeConnecting { node: n.into() }));
        app.on_msg(ev(Event::NodeConnected {
            node: n.into(),
            elapsed_ms: 20,
        }));
        app.on_msg(ev(Event::NodeRunning { node: n.into() }));
    }
    app.on_msg(ev(Event::Output {
        node: "gpu-eu-01".into(),
        stream: Stream::Stdout,
        data: b"waiting for GPU memory to drain\n".to_vec(),
    }));
    app.set_now(NOW - 3_000);
    for n in ["gpu-eu-03", "gpu-us-01", "gpu-us-02"] {
        app.on_msg(ev(Event::NodeConnecting { node: n.into() }));
    }
    app.on_msg(ev(Event::NodeFinished {
        result: result("gpu-eu-03", NodeStatus::Ok, Some(0), b"restarted\n", b""),
    }));
    let mut unreachable = result("gpu-us-01", NodeStatus::Unreachable, None, b"", b"");
    unreachable.error = Some("connecting to 10.30.2.21:22: connection refused".into());
    app.on_msg(ev(Event::NodeFinished {
        result: unreachable,
    }));
    app.set_now(NOW);
    app
}

#[test]
fn live_view_in_flight() {
    let mut app = live_app();
    let effects = app.take_effects();
    assert!(matches!(&effects[..], [Effect::StartExec { plan, .. }] if plan.nodes.len() == 6));
    snap("live", &app);
    // c cancels the selected (first) node, C the run.
    press(&mut app, KeyCode::Char('c'));
    snap("live_cancelling_node", &app);
}

#[test]
fn live_view_finished() {
    let mut app = live_app();
    for n in ["gpu-eu-01", "gpu-eu-02", "gpu-us-02"] {
        app.on_msg(ev(Event::NodeFinished {
            result: result(n, NodeStatus::Ok, Some(0), b"restarted\n", b""),
        }));
    }
    app.on_msg(ev(Event::NodeFinished {
        result: result(
            "gw-eu-01",
            NodeStatus::Failed,
            Some(1),
            b"",
            b"Failed to restart vllm.service: Unit vllm.service not found.\n",
        ),
    }));
    app.on_msg(ev(Event::RunFinished {
        summary: Summary {
            ok: 4,
            failed: 1,
            unreachable: 1,
            timed_out: 0,
            cancelled: 0,
        },
        elapsed_ms: 15_200,
        cancelled: false,
        dropped_output: Default::default(),
    }));
    snap("live_finished", &app);
    // The fleet table shows the new results before the store is re-read.
    press(&mut app, KeyCode::Esc);
    let frame = render(&app, 160, 48);
    assert!(
        frame.contains("gw-eu-01") && frame.contains("failed 0s"),
        "{frame}"
    );
    let effects = app.take_effects();
    assert!(effects.iter().any(|e| matches!(e, Effect::LoadLastResults)));
    assert!(effects.iter().any(|e| matches!(e, Effect::LoadRuns)));
}

#[test]
fn live_view_run_that_could_not_start() {
    let mut app = app();
    app.dispatch(Action::Confirmed(Pending::Exec(ExecPlan {
        job: crate::tui::action::Job::Command,
        nodes: vec!["gpu-eu-01".into()],
        command: "true".into(),
    })));
    app.on_msg(Msg::RunEnded {
        error: Some("reading ssh config /root/.ssh/config: line 3: unknown keyword `Hots`".into()),
    });
    snap("live_error", &app);
}

#[test]
fn help_popup() {
    let mut app = app();
    press(&mut app, KeyCode::Char('?'));
    snap("help", &app);
}

#[test]
fn command_line_completion() {
    let mut app = app();
    press(&mut app, KeyCode::Char(':'));
    typed(&mut app, "q");
    press(&mut app, KeyCode::Tab);
    snap("command_completion", &app);
}

#[test]
fn confirm_dialog_shows_the_plan() {
    let mut app = app();
    press(&mut app, KeyCode::Char(' '));
    press(&mut app, KeyCode::Char(' '));
    press(&mut app, KeyCode::Char(' '));
    press(&mut app, KeyCode::Char('x'));
    typed(&mut app, "uname -r");
    snap("exec_prompt", &app);
    press(&mut app, KeyCode::Enter);
    snap("confirm_planning", &app);
    plan_arrives(&mut app);
    snap("confirm", &app);
}

#[test]
fn tiny_terminal() {
    let app = app();
    let mut terminal = Terminal::new(TestBackend::new(30, 8)).unwrap();
    terminal.draw(|f| app.draw(f)).unwrap();
    insta::assert_snapshot!("tiny_30x8", text_of(terminal.backend().buffer()));
}

// ---- behaviour -------------------------------------------------------------

fn started_plan(app: &mut App) -> Option<ExecPlan> {
    app.take_effects().into_iter().find_map(|e| match e {
        Effect::StartExec { plan, .. } => Some(plan),
        _ => None,
    })
}

#[test]
fn the_plan_is_pinned_when_the_prompt_opens() {
    let mut app = app();
    // Mark the first three shown: batch-eu-01, batch-us-01, gpu-eu-01.
    press(&mut app, KeyCode::Char(' '));
    press(&mut app, KeyCode::Char(' '));
    press(&mut app, KeyCode::Char(' '));
    press(&mut app, KeyCode::Char('x'));
    typed(&mut app, "uname -r");
    press(&mut app, KeyCode::Enter);
    // While the dialog is open the table refreshes from the store: the
    // plan does not change.
    app.on_msg(Msg::LastResults(Ok(HashMap::new())));
    app.on_msg(Msg::Runs(Ok(Vec::new())));
    plan_arrives(&mut app);
    press(&mut app, KeyCode::Char('y'));
    let plan = started_plan(&mut app).expect("the run started");
    assert_eq!(
        plan.nodes,
        ["gpu-eu-01", "batch-eu-01", "batch-us-01"],
        "in SoT order"
    );
    assert_eq!(plan.command, "uname -r");
}

#[test]
fn filtering_after_exec_opens_does_not_change_the_targets() {
    let mut app = app();
    press(&mut app, KeyCode::Char('a'));
    press(&mut app, KeyCode::Char(':'));
    typed(&mut app, "exec hostname");
    press(&mut app, KeyCode::Enter);
    // The dialog owns the keyboard: typing a filter goes nowhere.
    press(&mut app, KeyCode::Char('/'));
    typed(&mut app, "gw");
    plan_arrives(&mut app);
    press(&mut app, KeyCode::Char('y'));
    let plan = started_plan(&mut app).expect("the run started");
    assert_eq!(
        plan.nodes.len(),
        9,
        "every marked node, as shown in the dialog"
    );
    assert_eq!(plan.command, "hostname");
}

#[test]
fn no_means_nothing_runs() {
    let mut app = app();
    press(&mut app, KeyCode::Char('x'));
    typed(&mut app, "reboot");
    press(&mut app, KeyCode::Enter);
    press(&mut app, KeyCode::Char('n'));
    assert!(started_plan(&mut app).is_none());
    assert!(render(&app, 160, 48).contains("cancelled: nothing ran"));
    press(&mut app, KeyCode::Char('x'));
    typed(&mut app, "reboot");
    press(&mut app, KeyCode::Enter);
    press(&mut app, KeyCode::Enter);
    assert!(started_plan(&mut app).is_none(), "Enter alone means no");
}

#[test]
fn playbooks_installs_and_audits_run_on_the_marked_nodes_after_confirmation() {
    let mut app = app();
    press(&mut app, KeyCode::Char(' ')); // mark the first node shown
    press(&mut app, KeyCode::Char('p')); // opens `:play ` for the playbook's name
    assert!(render(&app, 160, 48).contains(":play"));
    typed(&mut app, "nope");
    press(&mut app, KeyCode::Enter);
    assert!(render(&app, 160, 48).contains("no playbook `nope`; playbooks: agent-runtime, auditd"));
    press(&mut app, KeyCode::Char('p'));
    typed(&mut app, "agent-runtime");
    press(&mut app, KeyCode::Enter);
    let screen = render(&app, 160, 48);
    assert!(
        screen.contains("Run this (it changes the nodes) on 1 node:")
            && screen.contains("play agent-runtime"),
        "{screen}"
    );
    press(&mut app, KeyCode::Char('y'));
    assert!(
        render(&app, 160, 48).contains("the plan is still being made"),
        "y waits for the plan"
    );
    plan_arrives(&mut app);
    press(&mut app, KeyCode::Char('y'));
    let plan = started_plan(&mut app).expect("confirmed: the run starts");
    assert_eq!(
        plan.job,
        super::action::Job::Playbook("agent-runtime".into())
    );
    assert_eq!(plan.nodes.len(), 1);
    // h: the audit of the default baseline, also confirmed first.
    let mut app = self::app();
    press(&mut app, KeyCode::Char('h'));
    let screen = render(&app, 160, 48);
    assert!(
        screen.contains("harden --audit --baseline baseline")
            && screen.contains("it changes nothing"),
        "{screen}"
    );
}

#[test]
fn unavailable_keys_say_why() {
    let mut app = app();
    press(&mut app, KeyCode::Char('z'));
    assert!(render(&app, 160, 48).contains("z does nothing in the nodes view; ? lists the keys"));
    app.dispatch(Action::Show(super::action::ViewId::Runs));
    press(&mut app, KeyCode::Char('x'));
    assert!(render(&app, 160, 48).contains("x does nothing in the runs view"));
    press(&mut app, KeyCode::Char(':'));
    typed(&mut app, "lve");
    press(&mut app, KeyCode::Enter);
    assert!(render(&app, 160, 48).contains("unknown command :lve (did you mean :live?)"));
    press(&mut app, KeyCode::Char(':'));
    typed(&mut app, "live");
    press(&mut app, KeyCode::Enter);
    assert!(render(&app, 160, 48).contains("no run started in this session yet"));
}

#[test]
fn read_only_refuses_changing_actions_and_says_why() {
    let mut app = app_with(
        FLEET,
        ExecPolicy::Refused("the sandbox does not work here (no mount_setattr)".into()),
    );
    snap("read_only", &app);
    press(&mut app, KeyCode::Char('x'));
    assert!(render(&app, 160, 48).contains("read-only: the sandbox does not work here"));
    press(&mut app, KeyCode::Char(':'));
    typed(&mut app, "exec touch /etc/x");
    press(&mut app, KeyCode::Enter);
    app.dispatch(Action::Confirmed(Pending::Exec(ExecPlan {
        job: crate::tui::action::Job::Command,
        nodes: vec!["gpu-eu-01".into()],
        command: "touch /etc/x".into(),
    })));
    assert!(
        started_plan(&mut app).is_none(),
        "nothing starts, even when confirmed"
    );
}

#[test]
fn quitting_during_a_run_asks_and_cancels() {
    let mut app = live_app();
    app.take_effects();
    press(&mut app, KeyCode::Char('q'));
    assert!(!app.should_quit());
    assert!(render(&app, 80, 24).contains("A run is still in flight."));
    press(&mut app, KeyCode::Char('y'));
    assert!(app.should_quit());
}

#[test]
fn quit_and_back() {
    let mut app = app();
    press(&mut app, KeyCode::Enter);
    press(&mut app, KeyCode::Esc);
    assert!(render(&app, 80, 24).contains(" nodes 9/9"));
    press(&mut app, KeyCode::Char('q'));
    assert!(app.should_quit());
    let mut app = app_with(FLEET, ExecPolicy::Allowed);
    app.handle_key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL));
    assert!(app.should_quit());
}

#[test]
fn a_lost_terminal_quits_and_cancels_the_run() {
    let mut app = live_app();
    let cancel = app
        .take_effects()
        .into_iter()
        .find_map(|e| match e {
            Effect::StartExec { cancel, .. } => Some(cancel),
            _ => None,
        })
        .unwrap();
    app.quit_now();
    assert!(app.should_quit());
    assert!(cancel.all_cancelled(), "the run in flight is cancelled");
}

/// What `agent status` found: fleet-doctor on four nodes (one behind, one
/// unhealthy), and one node that could not say.
fn agent_status(killed: bool) -> Vec<crate::agent::AgentOnNode> {
    let node =
        |name: &str, version: &str, healthy: bool, running: bool| crate::agent::AgentOnNode {
            node: name.into(),
            agent: "fleet-doctor".into(),
            state: crate::agent::NodeAgentState {
                version: version.into(),
                digest: if version == "2.1.0" {
                    "b".repeat(64)
                } else {
                    "a".repeat(64)
                },
                port: Some(8083),
                since: Some((NOW / 1000 - 3600) as u64),
                previous: String::new(),
                enabled: true,
                running: running && !killed,
                pid: Some(4242),
                killed,
                current: version.into(),
                healthy: (running && !killed).then_some(healthy),
            },
            preview: None,
            expected: Some("2.1.0".into()),
            differs: version != "2.1.0" || !running || killed,
            error: None,
        };
    let mut v = vec![
        node("gpu-eu-01", "2.1.0", true, true),
        node("gpu-eu-02", "2.1.0", true, true),
        node("gpu-eu-03", "2.0.3", true, true),
        node("gpu-us-01", "2.1.0", false, true),
    ];
    v.push(crate::agent::AgentOnNode {
        node: "gw-eu-01".into(),
        agent: "fleet-doctor".into(),
        state: Default::default(),
        preview: None,
        expected: Some("2.1.0".into()),
        differs: false,
        error: Some("connection refused (127.0.0.1:22)".into()),
    });
    v
}

#[test]
fn agents_view() {
    let mut app = app();
    press(&mut app, KeyCode::Char(':'));
    typed(&mut app, "agents");
    press(&mut app, KeyCode::Enter);
    assert!(
        app.take_effects()
            .iter()
            .any(|e| matches!(e, Effect::LoadAgents)),
        "entering :agents asks the nodes"
    );
    snap("agents_loading", &app);
    app.on_msg(Msg::Agents(Ok(agent_status(false))));
    snap("agents", &app);
    press(&mut app, KeyCode::Enter);
    snap("agents_nodes", &app);
    press(&mut app, KeyCode::Esc);
    app.on_msg(Msg::Agents(Ok(agent_status(true))));
    snap("agents_killed", &app);
    app.on_msg(Msg::Agents(Err("no node answered".into())));
    snap("agents_error", &app);
}

#[test]
fn agents_view_deploys_and_enables_on_the_marked_nodes_only_after_confirmation() {
    let mut app = app();
    // Nothing marked and a filter that shows nothing: says why.
    app.dispatch(Action::Filter("nothing-matches".into()));
    app.dispatch(Action::Show(super::action::ViewId::Agents));
    app.take_effects();
    press(&mut app, KeyCode::Char('d'));
    assert!(render(&app, 160, 48).contains("no node to work on"));
    app.dispatch(Action::Filter(String::new()));
    app.dispatch(Action::Show(super::action::ViewId::Fleet));
    press(&mut app, KeyCode::Char(' '));
    app.dispatch(Action::Show(super::action::ViewId::Agents));
    app.take_effects();
    press(&mut app, KeyCode::Char('d'));
    let effects = app.take_effects();
    let plan = effects
        .iter()
        .find_map(|e| match e {
            Effect::Plan(p) => Some(p.clone()),
            _ => None,
        })
        .expect("d asks for a plan first");
    assert_eq!(plan.job, super::action::Job::Deploy("fleet-doctor".into()));
    assert_eq!(
        plan.nodes.len(),
        1,
        "only the marked node: {:?}",
        plan.nodes
    );
    assert!(
        !effects
            .iter()
            .any(|e| matches!(e, Effect::StartExec { .. })),
        "nothing runs before y"
    );
}
// ---- kill switch -------------------------------------------------------------

/// The fleet with two agents in the registry, and `killswitch` as the SoT's
/// killswitch.toml when given.
fn kill_app(killswitch: Option<&str>) -> App {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("models.toml"),
        "[model.llama]\nprovider = \"local\"\n",
    )
    .unwrap();
    std::fs::write(
        tmp.path().join("agents.toml"),
        "[agent.support-bot]\nmodel = \"llama\"\nautonomy = \"L2\"\n\n\
         [agent.invoice-extractor]\nmodel = \"llama\"\nautonomy = \"L1\"\n",
    )
    .unwrap();
    if let Some(k) = killswitch {
        std::fs::write(tmp.path().join("killswitch.toml"), k).unwrap();
    }
    let sot = write_sot(tmp.path(), FLEET);
    let mut app = App::new(info(ExecPolicy::Allowed), Arc::new(sot), NOW);
    app.set_run_ids(|| LIVE_RUN.into());
    app.take_effects();
    app.on_msg(Msg::LastResults(Ok(last_results())));
    app
}

/// `:kill support-bot leaking customer data` on the three gpu-eu nodes, marked.
fn kill_panel_open() -> App {
    let mut app = kill_app(None);
    press(&mut app, KeyCode::Char('/'));
    typed(&mut app, "gpu-eu");
    press(&mut app, KeyCode::Enter);
    press(&mut app, KeyCode::Char('a'));
    press(&mut app, KeyCode::Esc);
    press(&mut app, KeyCode::Char('K'));
    typed(&mut app, "support-bot leaking customer data");
    press(&mut app, KeyCode::Enter);
    app
}

fn engaged_record() -> crate::killswitch::Engaged {
    crate::killswitch::Engaged {
        agent: "support-bot".into(),
        by: "Ada Lovelace <ada@example.org>".into(),
        at: chrono::DateTime::from_timestamp_millis(NOW).unwrap(),
        reason: "leaking customer data".into(),
        limit: Some("gpu-eu-01,gpu-eu-02,gpu-eu-03".into()),
    }
}

/// Confirm the open panel and let the SoT commit arrive.
fn kill_confirmed(app: &mut App) -> super::action::KillPlan {
    typed(app, "support-bot");
    press(app, KeyCode::Enter);
    let plan = app
        .take_effects()
        .into_iter()
        .find_map(|e| match e {
            Effect::Kill(p) => Some(p),
            _ => None,
        })
        .expect("confirming asks for the kill");
    app.on_msg(Msg::KillEngaged(Ok((
        engaged_record(),
        Some("9f8e7d6c5b4a39281706".into()),
    ))));
    app.on_msg(ev(Event::RunStarted {
        kind: RunKind::Kill,
        command: "kill support-bot".into(),
        target: plan.nodes.join(","),
        nodes: plan.nodes.clone(),
        forks: 100,
        sot: "/srv/fleet/sot".into(),
        sot_commit: None,
        overrides: Vec::new(),
    }));
    plan
}

fn kill_result(node: &str, status: NodeStatus, stdout: &str) -> Msg {
    let mut r = result(node, status, Some(0), stdout.as_bytes(), b"");
    if status == NodeStatus::Unreachable {
        r.exit_code = None;
        r.error = Some("connecting to 10.20.2.23:22: connection timed out after 10s".into());
    }
    ev(Event::NodeFinished { result: r })
}

#[test]
fn kill_panel_pins_agent_scope_and_nodes_and_waits_for_the_name() {
    let mut app = kill_panel_open();
    snap("kill_panel_empty", &app);
    // A wrong name does nothing but say what to type.
    typed(&mut app, "support");
    press(&mut app, KeyCode::Enter);
    assert!(
        app.take_effects().is_empty(),
        "nothing is engaged on a wrong name"
    );
    assert!(render(&app, 80, 24).contains("type `support-bot` exactly"));
    for _ in 0.."support".len() {
        press(&mut app, KeyCode::Backspace);
    }
    // Marking more nodes now cannot change what the panel kills: keys go to
    // the panel, and the plan was copied when it opened.
    let plan = kill_confirmed(&mut app);
    assert_eq!(plan.agent, "support-bot");
    assert_eq!(plan.reason, "leaking customer data");
    assert_eq!(plan.nodes, ["gpu-eu-01", "gpu-eu-02", "gpu-eu-03"]);
    assert!(!plan.whole_fleet);
}

#[test]
fn kill_panel_engaged_every_node_confirmed() {
    let mut app = kill_panel_open();
    kill_confirmed(&mut app);
    app.on_msg(kill_result(
        "gpu-eu-01",
        NodeStatus::Ok,
        "maestro-kill: stopped 4711 4712\n",
    ));
    app.on_msg(kill_result(
        "gpu-eu-02",
        NodeStatus::Ok,
        "maestro-kill: stopped 5120\n",
    ));
    app.on_msg(kill_result(
        "gpu-eu-03",
        NodeStatus::Ok,
        "maestro-kill: already-stopped\n",
    ));
    app.on_msg(ev(Event::RunFinished {
        summary: Summary {
            ok: 3,
            ..Summary::default()
        },
        elapsed_ms: 840,
        cancelled: false,
        dropped_output: Default::default(),
    }));
    snap("kill_panel_engaged", &app);
}

#[test]
fn kill_panel_partial_unreachable_is_never_shown_as_stopped() {
    let mut app = kill_panel_open();
    kill_confirmed(&mut app);
    app.on_msg(ev(Event::NodeConnecting {
        node: "gpu-eu-02".into(),
    }));
    app.on_msg(kill_result(
        "gpu-eu-01",
        NodeStatus::Ok,
        "maestro-kill: stopped 4711\n",
    ));
    app.on_msg(kill_result("gpu-eu-03", NodeStatus::Unreachable, ""));
    snap("kill_panel_partial_unreachable", &app);
    let text = render(&app, 80, 24);
    assert!(text.contains("gpu-eu-03  unreachable"), "{text}");
    assert!(
        text.contains("1/3 confirmed stopped · 1 unreachable · 1 in progress"),
        "{text}"
    );
}

#[test]
fn an_engaged_kill_switch_is_a_banner_above_every_view() {
    let app = kill_app(Some(
        "[engaged.support-bot]\nby = \"Ada Lovelace <ada@example.org>\"\nat = 2025-11-21T07:25:01Z\n\
         reason = \"leaking customer data\"\n\n[engaged.all]\nby = \"Grace <grace@example.org>\"\n\
         at = 2025-11-21T07:40:00Z\nreason = \"incident 4711\"\nlimit = \"gpu\"\n",
    ));
    snap("kill_banner", &app);
    let mut app = app;
    press(&mut app, KeyCode::Char(':'));
    typed(&mut app, "runs");
    press(&mut app, KeyCode::Enter);
    assert!(
        render(&app, 80, 24)
            .lines()
            .next()
            .unwrap()
            .contains("KILL SWITCH ENGAGED")
    );
    // Without a kill switch there is no banner.
    assert!(!render(&kill_app(None), 80, 24).contains("KILL SWITCH"));
}

#[test]
fn kill_needs_an_agent_and_a_reason() {
    let mut app = kill_app(None);
    press(&mut app, KeyCode::Char(':'));
    typed(&mut app, "kill support-bto oops");
    press(&mut app, KeyCode::Enter);
    assert!(render(&app, 80, 24).contains("did you mean `support-bot`"));
    press(&mut app, KeyCode::Char(':'));
    typed(&mut app, "kill support-bot");
    press(&mut app, KeyCode::Enter);
    assert!(render(&app, 160, 48).contains("usage: :kill AGENT|all REASON"));
}

// ---- telemetry (:top) -------------------------------------------------------

fn telemetry_summary() -> crate::telemetry::summary::Summary {
    use crate::telemetry::Freshness;
    use crate::telemetry::summary::{Aggregate, NodeSummary, Summary};
    let wave = |base: f32, gap_at: Option<usize>| -> Vec<Option<f32>> {
        (0..40)
            .map(|i| {
                if Some(i) == gap_at || gap_at.is_some_and(|g| i == g + 1) {
                    None
                } else {
                    Some(base + (i % 10) as f32 * 4.0)
                }
            })
            .collect()
    };
    let none = vec![None; 40];
    let node =
        |name: &str, fresh: Option<Freshness>, link: &str, gpu: bool, agents: bool| NodeSummary {
            node: name.into(),
            groups: vec![
                if name.starts_with("gpu") {
                    "gpu"
                } else {
                    "edge"
                }
                .into(),
            ],
            freshness: fresh,
            link: link.into(),
            cpu: wave(10.0, Some(20)),
            mem: wave(40.0, Some(20)),
            load1: Some(0.42),
            gpu: if gpu {
                wave(50.0, Some(20))
            } else {
                none.clone()
            },
            has_gpu: gpu,
            requests: if agents {
                wave(2.0, Some(20))
            } else {
                none.clone()
            },
            errors: if agents {
                wave(0.0, Some(20))
                    .into_iter()
                    .map(|v| v.map(|v| v / 40.0))
                    .collect()
            } else {
                none.clone()
            },
            p95_ms: if agents {
                wave(20.0, Some(20))
            } else {
                none.clone()
            },
            agents: if agents {
                vec!["fleet-doctor 2.1.0".into()]
            } else {
                vec![]
            },
        };
    let mut stale = node(
        "gpu-eu-03",
        Some(Freshness::Stale),
        "connection reset by peer",
        true,
        true,
    );
    for s in [
        &mut stale.cpu,
        &mut stale.mem,
        &mut stale.gpu,
        &mut stale.requests,
        &mut stale.errors,
        &mut stale.p95_ms,
    ] {
        for p in s.iter_mut().skip(36) {
            *p = None;
        }
    }
    let mut never = node(
        "gpu-us-01",
        Some(Freshness::Never),
        "connecting",
        false,
        false,
    );
    never.cpu = none.clone();
    never.mem = none.clone();
    never.load1 = None;
    Summary {
        interval_s: 1.0,
        nodes: vec![
            node("gpu-eu-01", Some(Freshness::Fresh), "streaming", true, true),
            node(
                "gpu-eu-02",
                Some(Freshness::Fresh),
                "streaming",
                true,
                false,
            ),
            stale,
            never,
            node("gw-eu-01", Some(Freshness::Fresh), "streaming", false, true),
        ],
        groups: vec![
            Aggregate {
                name: "edge".into(),
                nodes: 1,
                fresh: 1,
                cpu_avg: Some(46.0),
                mem_avg: Some(76.0),
                requests: Some(38.0),
                errors: Some(0.9),
                p95_ms: Some(56.0),
            },
            Aggregate {
                name: "gpu".into(),
                nodes: 4,
                fresh: 2,
                cpu_avg: Some(46.0),
                mem_avg: Some(76.0),
                requests: Some(38.0),
                errors: Some(0.9),
                p95_ms: Some(56.0),
            },
        ],
        agents: vec![Aggregate {
            name: "fleet-doctor".into(),
            nodes: 3,
            fresh: 2,
            cpu_avg: Some(46.0),
            mem_avg: Some(76.0),
            requests: Some(76.0),
            errors: Some(1.8),
            p95_ms: Some(56.0),
        }],
    }
}

#[test]
fn telemetry_view() {
    let mut app = app();
    press(&mut app, KeyCode::Char(':'));
    typed(&mut app, "top");
    press(&mut app, KeyCode::Enter);
    assert!(
        app.take_effects()
            .iter()
            .any(|e| matches!(e, Effect::StartTelemetry)),
        "entering :top starts the telemetry"
    );
    snap("top_starting", &app);
    // Fresh, stale, never sampled, without GPUs, without agents: one table.
    app.on_msg(Msg::Telemetry(Ok(Arc::new(telemetry_summary()))));
    snap("top", &app);
    let text = render(&app, 160, 48);
    assert!(
        text.contains("stale") && text.contains("no agents"),
        "{text}"
    );
    assert!(text.contains('·'), "missed samples are gaps: {text}");
    // The node's charts: with agents and GPU, then without either.
    press(&mut app, KeyCode::Enter);
    snap("top_charts", &app);
    press(&mut app, KeyCode::Esc);
    press(&mut app, KeyCode::Down);
    press(&mut app, KeyCode::Enter);
    snap("top_charts_no_agents", &app);
    press(&mut app, KeyCode::Esc);
    for _ in 0..3 {
        press(&mut app, KeyCode::Down);
    }
    press(&mut app, KeyCode::Enter);
    snap("top_charts_no_gpu", &app);
    press(&mut app, KeyCode::Esc);
    press(&mut app, KeyCode::Esc);
    app.dispatch(Action::Show(super::action::ViewId::Top));
    assert!(
        !app.take_effects()
            .iter()
            .any(|e| matches!(e, Effect::StartTelemetry)),
        "telemetry starts once per console"
    );
    app.on_msg(Msg::Telemetry(Err("no node in the SoT".into())));
    let text = render(&app, 160, 48);
    assert!(
        text.contains("stale"),
        "an error after data keeps the data: {text}"
    );
    // The fleet table gains live CPU/memory columns (none for stale nodes).
    app.dispatch(Action::Show(super::action::ViewId::Fleet));
    snap("fleet_live", &app);
}

// ---- rollouts ----------------------------------------------------------------

fn rollout_row(
    id: &str,
    status: crate::store::RolloutStatus,
    step: u32,
    weight: u8,
    reason: Option<&str>,
) -> crate::store::Rollout {
    use crate::rollout::spec::{Kind, Step, Strategy, Traffic, Unavailable};
    let plan = crate::rollout::Plan {
        strategy: Strategy {
            name: "progressive".into(),
            kind: Kind::Canary {
                traffic: Traffic::Nodes,
                steps: vec![
                    Step::SetWeight(10),
                    Step::Pause(None),
                    Step::SetWeight(50),
                    Step::Analysis {
                        gate: "healthy".into(),
                    },
                    Step::SetWeight(100),
                ],
                max_unavailable: Unavailable::Percent(25),
                max_fail_percent: 0,
            },
        },
        gates: Default::default(),
    };
    crate::store::Rollout {
        id: id.into(),
        agent: "support-triage".into(),
        from_version: Some("1.3.2".into()),
        to_version: "1.4.0".into(),
        strategy: "progressive".into(),
        definition: serde_json::to_string(&plan).unwrap(),
        target: "gpu".into(),
        nodes: vec![
            "gpu-eu-01".into(),
            "gpu-eu-02".into(),
            "gpu-us-01".into(),
            "cpu-eu-01".into(),
        ],
        attempt: 1,
        phase: "deploy".into(),
        step,
        weight,
        status,
        reason: reason.map(str::to_string),
        requested: None,
        controller: None,
        lease_ms: None,
        created_by: "ops".into(),
        created_ms: NOW - 60_000,
        updated_ms: NOW,
    }
}

fn rollout_overview(
    r: crate::store::Rollout,
    on_new: usize,
    rates: &[(crate::store::GateOutcome, Option<f64>)],
) -> crate::rollout::view::Overview {
    let journal: Vec<crate::store::JournalEntry> = r
        .nodes
        .iter()
        .enumerate()
        .map(|(i, n)| crate::store::JournalEntry {
            seq: i as i64,
            at_ms: NOW,
            attempt: 1,
            step: None,
            entry: "result".into(),
            action: "observe".into(),
            node: Some(n.clone()),
            version: Some(if i < on_new { "1.4.0" } else { "1.3.2" }.into()),
            ok: Some(true),
            detail: String::new(),
        })
        .collect();
    let measurements = rates
        .iter()
        .enumerate()
        .map(|(i, (o, rate))| crate::store::Measurement {
            rollout_id: r.id.clone(),
            attempt: 1,
            step: 3,
            gate: "healthy".into(),
            seq: i as u32 + 1,
            at_ms: NOW,
            version: "1.4.0".into(),
            outcome: *o,
            metrics: match rate {
                Some(x) => serde_json::json!({"error_rate": x, "requests": 120.0, "nodes": 2.0}),
                None => serde_json::json!({"nodes": 0.0}),
            },
            message: format!("measurement {}/3: {}", i + 1, o.as_str()),
        })
        .collect();
    crate::rollout::view::Overview::new(&r, &journal, measurements)
}

fn rollouts_app() -> App {
    use crate::store::GateOutcome::*;
    use crate::store::RolloutStatus::*;
    let mut app = app();
    press(&mut app, KeyCode::Char(':'));
    typed(&mut app, "rollouts");
    press(&mut app, KeyCode::Enter);
    assert!(
        app.take_effects()
            .iter()
            .any(|e| matches!(e, Effect::LoadRollouts)),
        "entering :rollouts reads the store"
    );
    app.on_msg(Msg::Rollouts(Ok(vec![
        rollout_overview(
            rollout_row("ro-5-progressing", Progressing, 3, 50, None),
            2,
            &[(Pass, Some(0.0))],
        ),
        rollout_overview(
            rollout_row(
                "ro-4-paused",
                Paused,
                1,
                10,
                Some("step 2 of 5: pause = {}; promote continues"),
            ),
            1,
            &[],
        ),
        rollout_overview(
            rollout_row(
                "ro-3-inconclusive",
                Paused,
                3,
                50,
                Some("gate `healthy` inconclusive: no metrics"),
            ),
            2,
            &[(Inconclusive, None)],
        ),
        rollout_overview(
            rollout_row(
                "ro-2-aborted",
                Aborted,
                3,
                0,
                Some("gate `healthy` failed: error_rate 0.2"),
            ),
            0,
            &[(Pass, Some(0.01)), (Fail, Some(0.2))],
        ),
        rollout_overview(
            rollout_row("ro-1-completed", Completed, 5, 100, None),
            4,
            &[(Pass, Some(0.0)), (Pass, Some(0.01))],
        ),
    ])));
    app
}

#[test]
fn rollouts_view_in_progress_paused_inconclusive_aborted_and_complete() {
    let mut app = rollouts_app();
    for name in [
        "progressing",
        "paused",
        "inconclusive",
        "aborted",
        "completed",
    ] {
        snap(&format!("rollouts_{name}"), &app);
        press(&mut app, KeyCode::Char('j'));
    }
}

#[test]
fn rollout_keys_confirm_a_pinned_rollout_and_say_why_when_they_do_not_apply() {
    let mut app = rollouts_app();
    // Completed: nothing to promote or abort, but it can be undone.
    for _ in 0..4 {
        press(&mut app, KeyCode::Char('j'));
    }
    press(&mut app, KeyCode::Char('P'));
    let text = render(&app, 160, 48);
    assert!(
        text.contains("promote does not apply: rollout ro-1-completed is completed"),
        "{text}"
    );
    // The paused one: P asks first, with the rollout pinned.
    for _ in 0..3 {
        press(&mut app, KeyCode::Char('k'));
    }
    press(&mut app, KeyCode::Char('P'));
    snap("rollouts_confirm_promote", &app);
    // The list refreshes under the dialog: what runs is still ro-4-paused.
    app.on_msg(Msg::Rollouts(Ok(Vec::new())));
    press(&mut app, KeyCode::Char('y'));
    let effects = app.take_effects();
    let plan = effects
        .iter()
        .find_map(|e| match e {
            Effect::Rollout(p) => Some(p.clone()),
            _ => None,
        })
        .expect("confirming runs the verb");
    assert_eq!(plan.id, "ro-4-paused");
    assert_eq!(plan.verb, super::action::RolloutVerb::Promote);
}

// ---- guardrails: the policy decision, :ledger, :approvals ----------------

#[test]
fn a_confirmation_shows_the_policy_denial_and_y_does_not_run_it() {
    use crate::ops::{self, JobRequest, JobSpec, PlaySettings, SotSource, Targets};
    // The console on the example SoT (which ships policies), as a typed name.
    let example = Arc::new(crate::sot::load(Path::new("sot")).unwrap());
    let mut app = App::new(info(ExecPolicy::Allowed), example.clone(), NOW);
    app.set_run_ids(|| LIVE_RUN.into());
    app.take_effects();
    app.on_msg(Msg::LastResults(Ok(HashMap::new())));
    press(&mut app, KeyCode::Char('/'));
    typed(&mut app, "gpu-");
    press(&mut app, KeyCode::Enter);
    press(&mut app, KeyCode::Char('a'));
    press(&mut app, KeyCode::Char(':'));
    typed(&mut app, "exec hostname");
    press(&mut app, KeyCode::Enter);
    let plan = app
        .take_effects()
        .into_iter()
        .find_map(|e| match e {
            Effect::Plan(p) => Some(p),
            _ => None,
        })
        .expect("the dialog asked for a plan");
    // The gate's real answer for exactly the plan's nodes.
    let source = SotSource {
        sot: example,
        label: "sot".into(),
        commit: None,
    };
    let prepared = ops::prepare(
        source,
        JobRequest {
            job: JobSpec::Exec {
                command: "hostname".into(),
            },
            targets: Targets::Nodes(plan.nodes.clone()),
            settings: PlaySettings::default(),
            connect: Default::default(),
            forks: 10,
            limits: crate::fleet::ssh::ExecLimits {
                max_output: 1 << 20,
                timeout: None,
            },
            lessons: Vec::new(),
        },
    )
    .unwrap();
    let gate = ops::Gate::new(None, crate::identity::Actor::unverified("ada"));
    let refusal = match gate.admit(&prepared) {
        ops::Decision::Refused(r) => r,
        ops::Decision::Allow => panic!("a typed name may not change production nodes"),
    };
    assert_eq!(refusal.class, ops::RefusalClass::Denied);
    let answer = gate.policy_answer(&prepared).unwrap().unwrap();
    app.on_msg(Msg::Planned {
        plan,
        result: Ok(super::app::Planned {
            plan: None,
            refusal: Some(refusal),
            policy: Some(super::app::Planned::policy_line(&answer)),
            lessons: Vec::new(),
        }),
    });
    snap("confirm_policy_denied", &app);
    let text = render(&app, 160, 48);
    let n = plan_nodes_in(&text);
    assert!(n >= 6, "{text}");
    assert!(
        text.contains(&format!(
            "policy: denied for ada (unverified) on {n} of {n} nodes by unverified-changes-nothing"
        )),
        "{text}"
    );
    press(&mut app, KeyCode::Char('y'));
    assert!(
        !app.take_effects()
            .iter()
            .any(|e| matches!(e, Effect::StartExec { .. })),
        "a denied job never starts"
    );
    assert!(render(&app, 160, 48).contains("the gate refuses this"));
}

/// How many nodes the confirmation says the plan runs on.
fn plan_nodes_in(text: &str) -> usize {
    let at = text.find("Run this command on ").unwrap() + 20;
    text[at..].split(' ').next().unwrap().parse().unwrap()
}

/// A small ledger in `dir`, its entries at fixed times: an admitted and
/// run deploy by a proven person, a denial of a typed name, a held job.
fn ledger_file(dir: &Path) -> (std::path::PathBuf, Vec<crate::ledger::Entry>) {
    use crate::ledger::{Actor, Entry, GENESIS, NodeEntry, PolicyHit, Record};
    let bodies = vec![
        Record {
            run: Some("20251121-075500-a1b2".into()),
            actor: Actor {
                name: "linus".into(),
                verified: true,
                key: Some("SHA256:6f3Vx0rSGs0vZ4lX2kq0mS5Jm3v2Yx1w8Cq9a1Bz0dE".into()),
            },
            action: "deploy".into(),
            target: "gw-eu-*".into(),
            description: "deploy invoice-extractor@0.9.1".into(),
            decision: "ran".into(),
            policy: vec![PolicyHit {
                policy: "owners-run-their-agents".into(),
                effect: "permit".into(),
                decision: "allow".into(),
            }],
            nodes: vec![
                NodeEntry {
                    node: "gw-eu-01".into(),
                    outcome: "ok".into(),
                },
                NodeEntry {
                    node: "gw-eu-02".into(),
                    outcome: "failed".into(),
                },
            ],
            duration_ms: 4_200,
            ..Default::default()
        },
        Record {
            actor: Actor {
                name: "mallory".into(),
                verified: false,
                key: None,
            },
            action: "exec".into(),
            target: "gpu".into(),
            description: "exec rm -rf /srv/models".into(),
            decision: "denied".into(),
            policy: vec![PolicyHit {
                policy: "unverified-changes-nothing".into(),
                effect: "forbid".into(),
                decision: "deny".into(),
            }],
            note: Some("policy: mallory (unverified) may not exec 3 of the 3 target nodes".into()),
            ..Default::default()
        },
        Record {
            actor: Actor {
                name: "grace".into(),
                verified: true,
                key: None,
            },
            action: "deploy".into(),
            target: "n97".into(),
            description: "deploy fleet-doctor@2.1.0".into(),
            decision: "awaiting_approval".into(),
            approvals: vec!["apr-20251121-075800-9f00".into()],
            ..Default::default()
        },
    ];
    let mut prev = GENESIS.to_string();
    let mut entries = Vec::new();
    let mut text = Vec::new();
    for (i, body) in bodies.into_iter().enumerate() {
        let e = Entry::new(
            i as u64 + 1,
            format!("2025-11-21T07:5{}:00.000Z", 5 + i),
            prev.clone(),
            body,
        )
        .unwrap();
        prev = e.hash.clone();
        text.extend(e.to_line().unwrap());
        entries.push(e);
    }
    let path = dir.join("ledger.jsonl");
    std::fs::write(&path, text).unwrap();
    (path, entries)
}

#[test]
fn ledger_view_shows_who_did_what_the_deciding_policies_and_whether_it_verifies() {
    use super::components::ledger::LedgerData;
    let tmp = tempfile::tempdir().unwrap();
    let (path, entries) = ledger_file(tmp.path());
    let mut app = app();
    press(&mut app, KeyCode::Char(':'));
    typed(&mut app, "ledger");
    press(&mut app, KeyCode::Enter);
    assert!(
        app.take_effects()
            .iter()
            .any(|e| matches!(e, Effect::LoadLedger)),
        "entering :ledger reads it"
    );
    let newest_first: Vec<_> = entries.iter().rev().cloned().collect();
    app.on_msg(Msg::Ledger(Ok(LedgerData {
        entries: newest_first.clone(),
        verify: Ok(
            crate::ledger::verify(&crate::ledger::Place::File(path.clone()), &[], None).unwrap(),
        ),
    })));
    snap("ledger", &app);
    press(&mut app, KeyCode::Char('j'));
    snap("ledger_denial", &app);
    let text = render(&app, 160, 48);
    assert!(text.contains("verified: 3 entries"), "{text}");
    assert!(text.contains("mallory (unverified)"), "{text}");

    // One byte changed in the file: the title says so, in words.
    let edited = std::fs::read_to_string(&path)
        .unwrap()
        .replacen("rm -rf", "rm -rF", 1);
    std::fs::write(&path, edited).unwrap();
    app.on_msg(Msg::Ledger(Ok(LedgerData {
        entries: newest_first,
        verify: Ok(
            crate::ledger::verify(&crate::ledger::Place::File(path.clone()), &[], None).unwrap(),
        ),
    })));
    let text = render(&app, 160, 48);
    assert!(text.contains("NOT VERIFIED: entry 2"), "{text}");
}

#[test]
fn approvals_view_lists_held_jobs_and_a_signs_the_pinned_request_after_asking() {
    use crate::approval::{Counted, Pending as Request};
    use crate::store::{Approval, ApprovalState};
    let request = |id: &str, summary: &str, valid: usize, signatures: Vec<Counted>| {
        Request {
        approval: Approval {
            id: id.into(),
            fingerprint: "9c1e4d2b7a0f5e3c8d6b4a2f0e9c7b5a3d1f8e6c4b2a0f9e7d5c3b1a8f6e4d2c".into(),
            summary: summary.into(),
            reasons: vec![
                "approval: agent `fleet-doctor` is L4: jobs that change its nodes need signed approvals by 2 people other than the requester".into(),
            ],
            requested_by: "grace".into(),
            requested_ms: NOW - 600_000,
            state: ApprovalState::Pending,
            decided_by: None,
            decided_ms: None,
            comment: None,
        },
        valid,
        quorum: 2,
        signatures,
    }
    };
    let mut app = app();
    press(&mut app, KeyCode::Char(':'));
    typed(&mut app, "approvals");
    press(&mut app, KeyCode::Enter);
    assert!(
        app.take_effects()
            .iter()
            .any(|e| matches!(e, Effect::LoadApprovals)),
        "entering :approvals reads the store"
    );
    app.on_msg(Msg::Approvals(Ok(vec![
        request(
            "apr-20251121-075800-9f00",
            "deploy fleet-doctor@2.1.0",
            1,
            vec![
                Counted {
                    person: "alice".into(),
                    key: "SHA256:3j8uk/B34NQvKEg41UwTC42LXtyvREgZ7TImj2J/spk".into(),
                    signed_ms: NOW - 120_000,
                    expires_ms: NOW + 86_000_000,
                    rejected: None,
                },
                Counted {
                    person: "grace".into(),
                    key: "SHA256:Dtb74s8qvh35AT+EBCY74jujJ8d86DUt2kmNO7Cnmbc".into(),
                    signed_ms: NOW - 60_000,
                    expires_ms: NOW + 86_000_000,
                    rejected: Some("the requester's own approval does not count".into()),
                },
            ],
        ),
        request(
            "apr-20251121-075900-1a2b",
            "enable fleet-doctor",
            0,
            Vec::new(),
        ),
    ])));
    snap("approvals", &app);
    press(&mut app, KeyCode::Char('a'));
    snap("approvals_confirm", &app);
    // The list refreshes under the dialog: what is signed is still the first.
    app.on_msg(Msg::Approvals(Ok(Vec::new())));
    press(&mut app, KeyCode::Char('y'));
    let signed = app.take_effects().into_iter().find_map(|e| match e {
        Effect::Approve(p) => Some(p),
        _ => None,
    });
    assert_eq!(
        signed.map(|p| p.id).as_deref(),
        Some("apr-20251121-075800-9f00")
    );
    app.on_msg(Msg::Approved(Err(
        "grace requested this job and cannot approve it; two other people must".into(),
    )));
    assert!(render(&app, 160, 48).contains("cannot approve it"));
}

// ---- reflection ---------------------------------------------------------------

fn reflection(
    id: &str,
    trigger: &str,
    source: &str,
    ago_ms: i64,
    answered: bool,
) -> crate::store::Reflection {
    crate::store::Reflection {
        id: id.into(),
        checklist: "law-reflect-001".into(),
        trigger: trigger.into(),
        source: source.into(),
        agent: Some("fleet-doctor".into()),
        description: format!(
            "{source} of fleet-doctor 2.0.3 → 2.3.0 (canary) aborted: gate `healthy` failed"
        ),
        created_ms: NOW - ago_ms,
        answered_ms: answered.then_some(NOW - ago_ms / 2),
        answered_by: answered.then(|| "ada".into()),
        commit: answered.then(|| "4f1c2d9e8b7a6c5d4e3f2a1b0c9d8e7f6a5b4c3d".into()),
        ledger: answered.then(|| "9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d".into()),
    }
}

fn reflect_data() -> super::components::reflect::ReflectData {
    use crate::reflect::EvidenceKind;
    use crate::reflect::evidence::Pick;
    let sot = crate::sot::load(Path::new("sot")).unwrap();
    let reflections = vec![
        reflection(
            "rfl-3c2a9d10ef",
            "rollout_aborted",
            "rollout:ro-20251121-0742-7d1e",
            1_080_000,
            false,
        ),
        reflection(
            "rfl-0b41c7e2aa",
            "failed_nodes",
            "run:20251121-064000-c3d4",
            5_400_000,
            true,
        ),
    ];
    let pick = |kind, value: &str, label: &str| Pick {
        kind,
        value: value.into(),
        label: label.into(),
    };
    let picks = vec![
        pick(
            EvidenceKind::Rollout,
            "rollout:ro-20251121-0742-7d1e",
            "ro-20251121-0742-7d1e fleet-doctor@2.3.0 aborted",
        ),
        pick(
            EvidenceKind::Run,
            "run:20251121-074300-e5f6",
            "20251121-074300-e5f6 deploy deploy fleet-doctor@2.3.0 (1 ok, 1 failed)",
        ),
        pick(
            EvidenceKind::Ledger,
            "ledger:5e0c1a7b9d3f2e4c",
            "#41 deploy ran deploy fleet-doctor@2.3.0",
        ),
        pick(
            EvidenceKind::Lesson,
            "lesson:canary-min-requests",
            "canary-min-requests (stm) gate on at least 50 requests",
        ),
    ];
    let stats = crate::reflect::stats::compute(&sot, &reflections, None);
    super::components::reflect::ReflectData {
        reflections,
        checklists: sot.checklists.values().cloned().collect(),
        picks,
        stats,
    }
}

#[test]
fn reflect_view_lists_reflections_and_the_form_cites_picked_evidence() {
    let mut app = app();
    press(&mut app, KeyCode::Char(':'));
    typed(&mut app, "reflect");
    press(&mut app, KeyCode::Enter);
    assert!(
        app.take_effects()
            .iter()
            .any(|e| matches!(e, Effect::LoadReflections)),
        "entering :reflect reads the store"
    );
    app.on_msg(Msg::Reflections(Ok(reflect_data())));
    snap("reflect", &app);
    let text = render(&app, 160, 48);
    assert!(
        text.contains("reflections 50% answered, 1 pending"),
        "{text}"
    );

    // The answer form: the operation itself is already cited where it fits.
    press(&mut app, KeyCode::Char('a'));
    typed(
        &mut app,
        "the canary's errors passed 10% and its gate rolled it back",
    );
    press(&mut app, KeyCode::Down);
    press(&mut app, KeyCode::Enter); // also cite the failed deploy run
    snap("reflect_form", &app);
    press(&mut app, KeyCode::Tab);
    typed(&mut app, "n18 for 40 s");
    // Evidence no list holds (a URL, a commit, a file) is typed after Ctrl-E.
    app.handle_key(KeyEvent::new(KeyCode::Char('e'), KeyModifiers::CONTROL));
    typed(&mut app, "url:https://status.example.org/incidents/7");
    press(&mut app, KeyCode::Enter);
    snap("reflect_form_typed", &app);
    app.handle_key(KeyEvent::new(KeyCode::Char('s'), KeyModifiers::CONTROL));
    // A second Ctrl-S while the first is being signed commits nothing more.
    app.handle_key(KeyEvent::new(KeyCode::Char('s'), KeyModifiers::CONTROL));
    let effects = app.take_effects();
    assert_eq!(
        effects
            .iter()
            .filter(|e| matches!(e, Effect::AnswerReflection(_)))
            .count(),
        1,
        "one answer in flight"
    );
    let submitted = effects
        .into_iter()
        .find_map(|e| match e {
            Effect::AnswerReflection(s) => Some(s),
            _ => None,
        })
        .expect("Ctrl-S submits the answer");
    assert_eq!(submitted.id, "rfl-3c2a9d10ef");
    let what = &submitted.answers.items["what-happened"];
    assert_eq!(
        what.text,
        "the canary's errors passed 10% and its gate rolled it back"
    );
    let cited: Vec<&str> = what.evidence.iter().map(|c| c.value.as_str()).collect();
    assert_eq!(
        cited,
        ["rollout:ro-20251121-0742-7d1e", "run:20251121-074300-e5f6"]
    );
    assert_eq!(submitted.answers.items["impact"].text, "n18 for 40 s");
    let impact: Vec<&str> = submitted.answers.items["impact"]
        .evidence
        .iter()
        .map(|c| c.value.as_str())
        .collect();
    assert!(
        impact.contains(&"url:https://status.example.org/incidents/7"),
        "{impact:?}"
    );
    // A refused answer keeps the form open; a committed one closes it.
    app.on_msg(Msg::ReflectionAnswered(Err(
        "`detection` is required and not answered".into(),
    )));
    assert!(render(&app, 160, 48).contains("answer rfl-3c2a9d10ef"));
    app.on_msg(Msg::ReflectionAnswered(Ok(
        "rfl-3c2a9d10ef answered: commit 4f1c2d9e8b7a, ledger entry 9a8b7c6d5e4f".into(),
    )));
    assert!(!render(&app, 160, 48).contains("answer rfl-3c2a9d10ef"));
}

#[test]
fn lessons_view_shows_memory_uses_and_what_promotion_needs() {
    use crate::reflect::lesson::{Lesson, LessonScope, LessonStatus, Memory, Promotion};
    let lesson = |id: &str, memory, uses, promotable, retire, text: &str| LessonStatus {
        lesson: Lesson {
            id: id.into(),
            text: text.into(),
            memory,
            scope: LessonScope {
                agent: Some("fleet-doctor".into()),
                group: None,
                operation: Some("deploy".into()),
            },
            evidence: vec!["rollout:ro-20251121-0742-7d1e".into()],
            reflection: Some("rfl-3c2a9d10ef".into()),
            by: Some("ada".into()),
            created: Some("2025-11-01T08:00:00Z".into()),
            promoted: (memory == Memory::Ltm).then(|| Promotion {
                by: "margaret".into(),
                at: "2025-11-20T09:00:00Z".into(),
                uses: 3,
            }),
        },
        uses,
        unresolved: 0,
        last_used_ms: Some(NOW - 3_600_000),
        promotable,
        retire,
    };
    let mut app = app();
    press(&mut app, KeyCode::Char(':'));
    typed(&mut app, "lessons");
    press(&mut app, KeyCode::Enter);
    assert!(
        app.take_effects()
            .iter()
            .any(|e| matches!(e, Effect::LoadLessons))
    );
    app.on_msg(Msg::Lessons(Ok(vec![
        lesson(
            "canary-min-requests",
            Memory::Stm,
            3,
            true,
            false,
            "gate on at least 50 requests",
        ),
        lesson(
            "warm-cache-first",
            Memory::Ltm,
            4,
            false,
            false,
            "warm the model cache before the first canary step",
        ),
        lesson(
            "old-proxy-timeout",
            Memory::Stm,
            0,
            false,
            true,
            "raise the proxy timeout during blue/green",
        ),
    ])));
    snap("lessons", &app);
    // Long-term memory first.
    let text = render(&app, 160, 48);
    let ltm = text.find("warm-cache-first").unwrap();
    assert!(ltm < text.find("canary-min-requests").unwrap(), "{text}");
    press(&mut app, KeyCode::Down);
    press(&mut app, KeyCode::Char('p'));
    assert!(
        render(&app, 160, 48).contains("maestro lesson promote canary-min-requests"),
        "p says how to promote"
    );
}

#[test]
fn the_confirmation_shows_the_long_term_lessons_in_the_jobs_scope() {
    use crate::ops::{self, JobRequest, JobSpec, PlaySettings, SotSource, Targets};
    let tmp = tempfile::tempdir().unwrap();
    write_sot(tmp.path(), FLEET);
    std::fs::write(
        tmp.path().join("lessons.toml"),
        "[lesson.drain-before-restart]\ntext = \"drain the node from the gateway before restarting vLLM\"\n\
         memory = \"ltm\"\nscope = { group = \"gpu\", operation = \"exec\" }\nevidence = [\"run:20251121-064000-c3d4\"]\n\
         promoted_by = \"margaret\"\npromoted = \"2025-11-20T09:00:00Z\"\nuses_at_promotion = 3\n\n\
         [lesson.still-short-term]\ntext = \"not shown: short-term\"\nscope = { group = \"gpu\" }\nevidence = [\"run:x\"]\n\n\
         [lesson.other-kind]\ntext = \"not shown: deploys only\"\nmemory = \"ltm\"\nscope = { operation = \"deploy\" }\n\
         evidence = [\"run:x\"]\npromoted_by = \"m\"\npromoted = \"2025-11-20T09:00:00Z\"\n",
    )
    .unwrap();
    let sot = Arc::new(crate::sot::load(tmp.path()).unwrap());
    let mut app = App::new(info(ExecPolicy::Allowed), sot.clone(), NOW);
    app.take_effects();
    press(&mut app, KeyCode::Char(':'));
    typed(&mut app, "filter group=gpu");
    press(&mut app, KeyCode::Enter);
    press(&mut app, KeyCode::Char(':'));
    typed(&mut app, "exec systemctl restart vllm");
    press(&mut app, KeyCode::Enter);
    let plan = app
        .take_effects()
        .into_iter()
        .find_map(|e| match e {
            Effect::Plan(p) => Some(p),
            _ => None,
        })
        .expect("the dialog asked for a plan");
    let prepared = ops::prepare(
        SotSource {
            sot,
            label: "sot".into(),
            commit: None,
        },
        JobRequest {
            job: JobSpec::Exec {
                command: "systemctl restart vllm".into(),
            },
            targets: Targets::Nodes(plan.nodes.clone()),
            settings: PlaySettings::default(),
            connect: Default::default(),
            forks: 10,
            limits: Default::default(),
            lessons: Vec::new(),
        },
    )
    .unwrap();
    let lessons = crate::reflect::lesson::confirmation_lines(&prepared.lessons_in_scope());
    assert_eq!(lessons.len(), 1, "{lessons:?}");
    app.on_msg(Msg::Planned {
        result: Ok(super::app::Planned {
            plan: Some(Plan::static_plan(
                &plan.command,
                true,
                &plan.nodes,
                &plan.command,
            )),
            refusal: None,
            policy: None,
            lessons,
        }),
        plan,
    });
    snap("confirm_lessons", &app);
    assert!(
        render(&app, 160, 48)
            .contains("lesson for group gpu, exec jobs (drain-before-restart): drain the node"),
        "{}",
        render(&app, 160, 48)
    );
}

/// With a team's shared store another operator's runs and rollouts reach
/// this console only by reading the store again: :runs and :rollouts do so
/// every LIVE_REFRESH_MS while shown, and other views leave the store alone.
#[test]
fn runs_and_rollouts_read_the_store_again_every_second_while_shown() {
    use crate::tui::app::LIVE_REFRESH_MS;
    let loads = |app: &mut App| {
        let effects = app.take_effects();
        (
            effects
                .iter()
                .filter(|e| matches!(e, Effect::LoadRuns))
                .count(),
            effects
                .iter()
                .filter(|e| matches!(e, Effect::LoadRollouts))
                .count(),
        )
    };
    let mut app = app();
    app.set_now(NOW);
    app.take_effects();
    // The fleet view: no polling however long it stays.
    app.set_now(NOW + 10 * LIVE_REFRESH_MS);
    assert_eq!(loads(&mut app), (0, 0));

    let t0 = NOW + 10 * LIVE_REFRESH_MS;
    press(&mut app, KeyCode::Char(':'));
    typed(&mut app, "runs");
    press(&mut app, KeyCode::Enter);
    assert_eq!(loads(&mut app), (1, 0), "entering :runs reads the store");
    app.set_now(t0 + LIVE_REFRESH_MS - 1);
    assert_eq!(loads(&mut app), (0, 0), "not before a second has passed");
    app.set_now(t0 + LIVE_REFRESH_MS);
    assert_eq!(loads(&mut app), (1, 0), "a second later it reads again");
    app.set_now(t0 + 2 * LIVE_REFRESH_MS);
    assert_eq!(loads(&mut app), (1, 0));

    let t1 = t0 + 2 * LIVE_REFRESH_MS;
    press(&mut app, KeyCode::Char(':'));
    typed(&mut app, "rollouts");
    press(&mut app, KeyCode::Enter);
    assert_eq!(
        loads(&mut app),
        (0, 1),
        "entering :rollouts reads the store"
    );
    app.set_now(t1 + LIVE_REFRESH_MS);
    assert_eq!(
        loads(&mut app),
        (0, 1),
        ":rollouts refreshes, :runs is hidden"
    );
}

/// `:api` lists the API's tokens (never a token: its name, its person, and
/// a hash prefix) and says which store the API and the console read.
#[test]
fn api_view_lists_the_tokens_and_the_store_they_read() {
    use crate::api::token::ApiToken;
    let tmp = tempfile::tempdir().unwrap();
    let mut sot = write_sot(tmp.path(), FLEET);
    for (name, person, created) in [
        ("grafana", "ada", Some("2026-12-01T09:12:00Z")),
        ("ada-laptop", "ada", None),
    ] {
        sot.api_tokens.insert(
            name.into(),
            ApiToken {
                name: name.into(),
                person: person.into(),
                sha256: crate::api::token::hash(&format!("mst_{name}")),
                created: created.map(str::to_string),
            },
        );
    }
    let mut team = info(ExecPolicy::Allowed);
    team.store = "postgres://maestro:***@db.internal/maestro".into();
    let mut console = App::new(team, Arc::new(sot), NOW);
    press(&mut console, KeyCode::Char(':'));
    typed(&mut console, "api");
    press(&mut console, KeyCode::Enter);
    snap("api", &console);
    let frame = render(&console, 160, 48);
    assert!(frame.contains("tokens 2"), "{frame}");
    assert!(frame.contains("shared with every controller"), "{frame}");
    let grafana = crate::api::token::hash("mst_grafana");
    assert!(frame.contains(&grafana[..12]), "{frame}");
    assert!(!frame.contains(&grafana[..13]), "only a prefix: {frame}");

    // No token: the API refuses everything, and the view says how to make one.
    let mut app = app();
    press(&mut app, KeyCode::Char(':'));
    typed(&mut app, "tokens");
    press(&mut app, KeyCode::Enter);
    let frame = render(&app, 160, 48);
    assert!(frame.contains("tokens.toml holds no token"), "{frame}");
    assert!(frame.contains("this machine's SQLite file"), "{frame}");
}
