//! Node-level canary rollouts end to end: the real binary, real sshd nodes,
//! the example agent (python3 HTTP services on each node's own loopback
//! address), real traffic from the test process, the gates reading the
//! agents' Prometheus metrics through the telemetry sampler.
//!
//! Nodes: n01–n10 the 10-node canary, n11–n12 no metrics, n13–n16 the
//! controller killed and resumed, n17 two operators starting at once,
//! n18–n19 a version with 20% errors rolled back by itself.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::common::fleet::Operator;
use crate::common::{stderr, stdout};
use crate::{digest, fleet, json_lines, names, operator, repo};

pub(crate) const AGENT: &str = "fleet-doctor";
pub(crate) const PORT: u16 = 8083;
const GATEWAY: u16 = 9083;
const PREVIEW: u16 = 18083;

const ROLLOUTS: &str = r#"
[strategy.progressive.canary]
max_unavailable = 5
steps = [
  { set_weight = 10 },
  { pause = {} },
  { set_weight = 50 },
  { analysis = { gate = "healthy" } },
  { set_weight = 100 },
]

[strategy.gated.canary]
max_unavailable = 1
steps = [{ set_weight = 50 }, { analysis = { gate = "healthy" } }, { set_weight = 100 }]

[strategy.slow.canary]
max_unavailable = 1
steps = [
  { set_weight = 25 },
  { set_weight = 50 },
  { analysis = { gate = "steady" } },
  { set_weight = 100 },
]

[strategy.split.canary]
traffic = "gateway"
steps = [{ set_weight = 50 }, { analysis = { gate = "healthy" } }, { set_weight = 100 }]

[strategy.hold.canary]
steps = [{ set_weight = 100 }, { pause = {} }]

[gate.healthy]
interval = "1s"
count = 2
min_requests = 5
success = "error_rate < 0.05"
failure = "error_rate >= 0.1"

[gate.steady]
interval = "1s"
count = 4
min_requests = 5
success = "error_rate < 0.05"
"#;

/// An operator with `nodes`, fleet-doctor 2.0.3 (stable), 2.1.0 (healthy),
/// 2.2.0 (no metrics), 2.3.0 (20% errors), and the strategies above.
pub(crate) fn rollout_operator(nodes: &[usize]) -> Operator {
    let op = operator(nodes);
    let f = fleet();
    let mut text = String::new();
    for &i in nodes {
        text.push_str(&format!(
            "[node.n{i:02}]\naddress = \"{a}\"\ngroups = [\"fleet\"]\ntags = {{ env = \"test\", region = \"eu-west\" }}\nvars = {{ loopback = \"{a}\" }}\n\n",
            a = f.address(i)
        ));
    }
    std::fs::write(op.sot.join("nodes.toml"), text).unwrap();
    let art = op.sot.join("artifacts");
    std::fs::create_dir_all(&art).unwrap();
    for v in ["2.0.3", "2.1.0"] {
        let name = format!("fleet-doctor-{v}.tar.gz");
        std::fs::copy(repo().join("sot/artifacts").join(&name), art.join(&name)).unwrap();
    }
    std::fs::write(
        op.sot.join("models.toml"),
        "[model.claude-sonnet]\nprovider = \"anthropic\"\n",
    )
    .unwrap();
    let v = |version: &str, file: &str, env: &str| {
        format!(
            "[agent.fleet-doctor.versions.\"{version}\"]\nartifact = \"artifacts/fleet-doctor-{file}.tar.gz\"\nsha256 = \"{}\"\n{env}\n",
            digest(&format!("fleet-doctor-{file}.tar.gz"))
        )
    };
    std::fs::write(
        op.sot.join("agents.toml"),
        format!(
            "[agent.fleet-doctor]\nmodel = \"claude-sonnet\"\nautonomy = \"L3\"\ncurrent = \"2.0.3\"\n\
             command = \"./run\"\nport = {PORT}\nrollout = \"progressive\"\n\
             gateway = {{ port = {GATEWAY}, preview_port = {PREVIEW} }}\n\
             health = {{ http = \"/healthz\", interval = \"200ms\", retries = 25, min_healthy = \"300ms\" }}\n\n{}{}{}{}",
            v("2.0.3", "2.0.3", ""),
            v("2.1.0", "2.1.0", ""),
            v("2.2.0", "2.1.0", "env = { AGENT_METRICS = \"0\" }\n"),
            v("2.3.0", "2.1.0", "env = { AGENT_ERROR_RATE = \"0.2\" }\n"),
        ),
    )
    .unwrap();
    std::fs::write(op.sot.join("rollouts.toml"), ROLLOUTS).unwrap();
    op
}

/// node -> running version (`agent status --json`).
pub(crate) fn versions(op: &Operator, nodes: &[usize]) -> Vec<(String, String)> {
    let o = op.maestro(&["--json", "agent", "status", AGENT, "--limit", &names(nodes)]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    let mut v: Vec<(String, String)> = json_lines(&stdout(&o))
        .into_iter()
        .filter(|v| v["event"] == "agent")
        .map(|v| {
            let s = &v["status"];
            let running = s["running"].as_bool().unwrap();
            let version = s["version"].as_str().unwrap().to_string();
            (
                s["node"].as_str().unwrap().to_string(),
                if running {
                    version
                } else {
                    format!("{version} (stopped)")
                },
            )
        })
        .collect();
    v.sort();
    v
}

/// Versions started on a node, in order (the example agent's start counter).
fn starts(node: usize) -> Vec<String> {
    let o = fleet().node_exec(
        &format!("n{node:02}"),
        &[
            "sh",
            "-c",
            &format!("cat /var/lib/maestro/agents/{AGENT}/data/starts 2>/dev/null"),
        ],
    );
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| l.split(' ').nth(1).map(str::to_string))
        .collect()
}

pub(crate) fn deploy_stable(op: &Operator, nodes: &[usize]) {
    let o = op.maestro(&[
        "deploy",
        "fleet-doctor@2.0.3",
        "--limit",
        &names(nodes),
        "--yes",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
}

/// Requests to every node's agent from the test process, until dropped.
pub(crate) struct Traffic {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Traffic {
    pub(crate) fn start(nodes: &[usize]) -> Traffic {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = nodes
            .iter()
            .map(|&i| {
                let addr = format!("{}:{PORT}", fleet().address(i));
                let stop = stop.clone();
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        get(&addr, "/work");
                        std::thread::sleep(Duration::from_millis(25));
                    }
                })
            })
            .collect();
        Traffic { stop, threads }
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn get(addr: &str, path: &str) -> bool {
    let Ok(a) = addr.parse() else { return false };
    let Ok(mut s) = TcpStream::connect_timeout(&a, Duration::from_millis(500)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .is_err()
    {
        return false;
    }
    let mut text = String::new();
    s.read_to_string(&mut text).is_ok() && text.starts_with("HTTP/1.")
}

pub(crate) fn rollout_status(op: &Operator) -> serde_json::Value {
    let o = op.maestro(&["--json", "rollout", "status", "last"]);
    json_lines(&stdout(&o))
        .into_iter()
        .find(|v| v["event"] == "rollout_status")
        .unwrap_or_else(|| panic!("no status: {}{}", stdout(&o), stderr(&o)))["status"]
        .clone()
}

#[test]
fn a_canary_pauses_is_promoted_passes_its_gate_and_completes_on_ten_nodes() {
    let nodes: Vec<usize> = (1..=10).collect();
    let op = rollout_operator(&nodes);
    deploy_stable(&op, &nodes);
    let _traffic = Traffic::start(&nodes);

    // 10%: one node, then the pause = {} ends the controller (exit 6).
    let o = op.maestro(&["rollout", "start", "fleet-doctor@2.1.0", "--limit", "fleet"]);
    assert_eq!(o.status.code(), Some(6), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("paused"), "{}", stdout(&o));
    let v = versions(&op, &nodes);
    let on_new: Vec<&str> = v
        .iter()
        .filter(|(_, v)| v == "2.1.0")
        .map(|(n, _)| n.as_str())
        .collect();
    assert_eq!(on_new, ["n01"], "{v:?}");
    let s = rollout_status(&op);
    assert_eq!(s["rollout"]["status"], "paused");
    assert_eq!(s["rollout"]["weight"], 10);
    assert_eq!(s["steps"][1]["state"], "current", "{s}");

    // promote (another process): 50%, the gate over real traffic, 100%.
    let started = Instant::now();
    let o = op.maestro(&["rollout", "promote", "last"]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    eprintln!("promote to completion took {:?}", started.elapsed());
    let v = versions(&op, &nodes);
    assert!(v.iter().all(|(_, v)| v == "2.1.0"), "{v:?}");
    let s = rollout_status(&op);
    assert_eq!(s["rollout"]["status"], "completed", "{s}");
    assert_eq!(s["rollout"]["weight"], 100);
    let m = s["measurements"].as_array().unwrap();
    assert_eq!(m.len(), 2, "{s}");
    for x in m {
        assert_eq!(x["outcome"], "pass", "{x}");
        assert!(x["metrics"]["requests"].as_f64().unwrap() >= 5.0, "{x}");
        assert_eq!(x["metrics"]["error_rate"].as_f64(), Some(0.0), "{x}");
    }
    // Every node started 2.0.3 once and 2.1.0 once.
    for &n in &nodes {
        assert_eq!(starts(n), ["2.0.3", "2.1.0"], "n{n:02}");
    }
    // The text tree shows the steps, the weight and the nodes per version.
    let o = op.maestro(&["rollout", "status"]);
    let text = stdout(&o);
    assert!(text.contains("✔ completed"), "{text}");
    assert!(text.contains("2.1.0 (new): 10 node(s)"), "{text}");
}

#[test]
fn a_version_without_metrics_is_inconclusive_and_pauses_never_promotes() {
    let nodes = [11, 12];
    let op = rollout_operator(&nodes);
    deploy_stable(&op, &nodes);
    let _traffic = Traffic::start(&nodes);
    let o = op.maestro(&[
        "rollout",
        "start",
        "fleet-doctor@2.2.0",
        "--strategy",
        "gated",
        "--limit",
        "fleet",
    ]);
    assert_eq!(o.status.code(), Some(6), "{}{}", stdout(&o), stderr(&o));
    let s = rollout_status(&op);
    assert_eq!(s["rollout"]["status"], "paused", "{s}");
    assert_eq!(s["rollout"]["weight"], 50);
    let reason = s["rollout"]["reason"].as_str().unwrap();
    assert!(
        reason.contains("inconclusive") && reason.contains("no metrics"),
        "{reason}"
    );
    assert_eq!(s["measurements"][0]["outcome"], "inconclusive", "{s}");
    // It never went further: n12 still runs the stable version.
    let v = versions(&op, &nodes);
    assert_eq!(
        v,
        [
            ("n11".into(), "2.2.0".into()),
            ("n12".into(), "2.0.3".into())
        ]
    );
    // resume does not skip the decision; abort rolls n11 back.
    let o = op.maestro(&["rollout", "resume", "last"]);
    assert_eq!(o.status.code(), Some(2), "{}{}", stdout(&o), stderr(&o));
    let o = op.maestro(&["rollout", "abort", "last"]);
    assert_eq!(o.status.code(), Some(1), "{}{}", stdout(&o), stderr(&o));
    let v = versions(&op, &nodes);
    assert!(v.iter().all(|(_, v)| v == "2.0.3"), "{v:?}");
}

#[test]
fn a_version_with_twenty_percent_errors_fails_its_gate_and_rolls_back_by_itself() {
    let nodes = [18, 19];
    let op = rollout_operator(&nodes);
    deploy_stable(&op, &nodes);
    let _traffic = Traffic::start(&nodes);
    let started = Instant::now();
    let o = op.maestro(&[
        "rollout",
        "start",
        "fleet-doctor@2.3.0",
        "--strategy",
        "gated",
        "--limit",
        "fleet",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}{}", stdout(&o), stderr(&o));
    eprintln!("start to rolled back: {:?}", started.elapsed());
    let s = rollout_status(&op);
    assert_eq!(s["rollout"]["status"], "aborted", "{s}");
    let reason = s["rollout"]["reason"].as_str().unwrap();
    assert!(
        reason.contains("gate `healthy` failed") && reason.contains("error_rate >= 0.1"),
        "{reason}"
    );
    let m = &s["measurements"][0];
    assert_eq!(m["outcome"], "fail", "{s}");
    let rate = m["metrics"]["error_rate"].as_f64().unwrap();
    assert!((0.15..=0.25).contains(&rate), "{m}");
    let v = versions(&op, &nodes);
    assert!(v.iter().all(|(_, v)| v == "2.0.3"), "{v:?}");
    assert_eq!(starts(18), ["2.0.3", "2.3.0", "2.0.3"]);
    assert_eq!(starts(19), ["2.0.3"]);
    drop(_traffic);

    // The same version split at each node's nginx gateway: v2 in the
    // preview slot gets 50% of real client traffic, fails the gate, and
    // maestro sets traffic back to the primary (v1) and stops the preview.
    let o = op.maestro(&[
        "gateway",
        "set",
        AGENT,
        "--limit",
        &names(&nodes),
        "--traffic",
        "primary",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    let gateways: Vec<std::net::SocketAddr> = nodes
        .iter()
        .map(|&i| format!("{}:{GATEWAY}", fleet().address(i)).parse().unwrap())
        .collect();
    let load = crate::common::load::Load::start(&gateways, 4);
    let o = op.maestro(&[
        "rollout",
        "start",
        "fleet-doctor@2.3.0",
        "--strategy",
        "split",
        "--limit",
        "fleet",
    ]);
    let during = load.stop();
    assert_eq!(o.status.code(), Some(1), "{}{}", stdout(&o), stderr(&o));
    // The split really sent clients to v2.
    assert!(during.answered_by("2.3.0") > 0, "{during:?}");
    let s = rollout_status(&op);
    assert_eq!(s["rollout"]["status"], "aborted", "{s}");
    let m = &s["measurements"][0];
    assert_eq!(m["outcome"], "fail", "{s}");
    let rate = m["metrics"]["error_rate"].as_f64().unwrap();
    assert!((0.15..=0.25).contains(&rate), "{m}");
    // After the rollback: every answer from v1, none failed; nodes run v1.
    let after = crate::common::load::Load::start(&gateways, 4);
    std::thread::sleep(Duration::from_secs(2));
    let after = after.stop();
    assert!(after.ok() > 20, "{after:?}");
    assert_eq!(after.failed(), 0, "{after:?}");
    assert_eq!(after.answered_by("2.0.3"), after.ok(), "{after:?}");
    let o = op.maestro(&[
        "--json",
        "gateway",
        "status",
        AGENT,
        "--limit",
        &names(&nodes),
    ]);
    for g in json_lines(&stdout(&o))
        .iter()
        .filter(|v| v["event"] == "gateway")
    {
        assert_eq!(g["gateway"]["traffic"]["kind"], "primary", "{g}");
    }
    let v = versions(&op, &nodes);
    assert!(v.iter().all(|(_, v)| v == "2.0.3"), "{v:?}");
}

fn wait_for(
    op: &Operator,
    what: &str,
    until: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let o = op.maestro(&["--json", "rollout", "status", "last"]);
        if let Some(s) = json_lines(&stdout(&o))
            .into_iter()
            .find(|v| v["event"] == "rollout_status")
            && until(&s["status"])
        {
            return s["status"].clone();
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_controller_killed_during_a_deploy_and_during_analysis_is_resumed_from_its_journal() {
    let nodes = [13, 14, 15, 16];
    let op = rollout_operator(&nodes);
    deploy_stable(&op, &nodes);
    let _traffic = Traffic::start(&nodes);

    // Killed (SIGKILL) once the first node is on the new version.
    let mut child = op.spawn(&[
        "rollout",
        "start",
        "fleet-doctor@2.1.0",
        "--strategy",
        "slow",
        "--limit",
        "fleet",
    ]);
    wait_for(&op, "a node deployed", |s| {
        s["versions"]["2.1.0"]
            .as_array()
            .is_some_and(|n| !n.is_empty())
    });
    child.kill().unwrap();
    child.wait().unwrap();
    let s = rollout_status(&op);
    assert_eq!(s["rollout"]["status"], "progressing", "{s}");

    // Resumed, then killed again during the analysis, after a measurement.
    let mut child = op.spawn(&["rollout", "resume", "last"]);
    let s = wait_for(&op, "a measurement", |s| {
        s["measurements"].as_array().is_some_and(|m| !m.is_empty())
    });
    assert_eq!(s["rollout"]["phase"], "analysis", "{s}");
    child.kill().unwrap();
    child.wait().unwrap();
    let before = rollout_status(&op)["measurements"]
        .as_array()
        .unwrap()
        .len();
    assert!(before < 4, "the gate was not done yet");

    let o = op.maestro(&["rollout", "resume", "last"]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    let s = rollout_status(&op);
    assert_eq!(s["rollout"]["status"], "completed", "{s}");
    // The gate took exactly its count of measurements across the three
    // controllers: none repeated, none skipped.
    let m = s["measurements"].as_array().unwrap();
    let seqs: Vec<u64> = m.iter().map(|x| x["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, [1, 2, 3, 4], "{s}");
    // No node was deployed twice.
    for &n in &nodes {
        assert_eq!(starts(n), ["2.0.3", "2.1.0"], "n{n:02}");
    }
    let v = versions(&op, &nodes);
    assert!(v.iter().all(|(_, v)| v == "2.1.0"), "{v:?}");
}

#[test]
fn two_operators_starting_a_rollout_of_one_agent_on_one_store_get_one_rollout() {
    let nodes = [17];
    let op = rollout_operator(&nodes);
    one_rollout_of_two(&op, &nodes);
}

/// The same race between two controller processes on a PostgreSQL store
/// (a private cluster on loopback): the database's unique index decides,
/// and the loser names the winner.
#[test]
fn two_controllers_on_one_postgresql_store_start_one_rollout_of_an_agent() {
    let nodes = [33];
    let mut op = rollout_operator(&nodes);
    let url = maestro::store::test_cluster::fresh_database_url()
        .expect("PostgreSQL is installed (.ci/run installs it)");
    op.db = std::path::PathBuf::from(url);
    one_rollout_of_two(&op, &nodes);
}

fn one_rollout_of_two(op: &Operator, nodes: &[usize]) {
    deploy_stable(op, nodes);
    let args = [
        "rollout",
        "start",
        "fleet-doctor@2.1.0",
        "--strategy",
        "hold",
        "--limit",
        "fleet",
    ];
    let a = op.spawn(&args);
    let b = op.spawn(&args);
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    let mut codes = [a.status.code(), b.status.code()];
    codes.sort();
    assert_eq!(
        codes,
        [Some(4), Some(6)],
        "{}{}\n{}{}",
        stdout(&a),
        stderr(&a),
        stdout(&b),
        stderr(&b)
    );
    let refused = if a.status.code() == Some(4) { &a } else { &b };
    assert!(
        stderr(refused).contains("only one rollout of an agent may be active"),
        "{}",
        stderr(refused)
    );
    let o = op.maestro(&["--json", "rollout", "list"]);
    let listed = json_lines(&stdout(&o));
    assert_eq!(listed.len(), 1, "{}", stdout(&o));
    let winner = listed[0]["rollout"]["id"].as_str().unwrap_or_default();
    assert!(
        !winner.is_empty() && stderr(refused).contains(winner),
        "the refusal names the winner {winner}: {}",
        stderr(refused)
    );
    // A third, later, is refused too while the first is paused.
    let o = op.maestro(&args);
    assert_eq!(o.status.code(), Some(4), "{}{}", stdout(&o), stderr(&o));
    let o = op.maestro(&["rollout", "promote", "last"]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
}
