//! Blue/green and shadow rollouts end to end: support-triage (1.3.2 →
//! 1.4.0) behind each node's nginx gateway, the real binary driving the
//! rollout, clients from the load generator on the gateways.
//!
//! Nodes: n27–n28 blue/green, n29–n30 shadow (tests/rollout/gateway.rs
//! uses n20–n26).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::common::fleet::Operator;
use crate::common::load::{Connection, Load, Options};
use crate::common::{stderr, stdout};
use crate::gateway::{AGENT, GATEWAY, PREVIEW, V1, V2};
use crate::{json_lines, names};

const ROLLOUTS: &str = r#"
[strategy.bluegreen.blue_green]
scale_down_delay = "1s"

[strategy.bluegreen-slow.blue_green]
scale_down_delay = "60s"

[strategy.mirror.shadow]
mirror_percent = 100
duration = "3s"
gate = "preview-healthy"

[gate.preview-healthy]
interval = "1s"
count = 1
min_requests = 5
success = "error_rate < 0.05 and requests > 0"
failure = "error_rate >= 0.1"
"#;

/// The gateway tests' operator (support-triage 1.3.2 and 1.4.0 behind a
/// gateway on `nodes`) with the strategies above.
fn operator(nodes: &[usize]) -> Operator {
    let op = crate::gateway::operator(nodes, None);
    std::fs::write(op.sot.join("rollouts.toml"), ROLLOUTS).unwrap();
    op
}

fn ok(op: &Operator, args: &[&str]) -> String {
    let o = op.maestro(args);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{args:?}: {}{}",
        stdout(&o),
        stderr(&o)
    );
    stdout(&o)
}

/// v1 in the primary slot, the gateway sending everything to it.
fn stable(op: &Operator, nodes: &[usize]) {
    let limit = names(nodes);
    let what = format!("{AGENT}@{V1}");
    ok(op, &["--json", "deploy", &what, "--limit", &limit, "--yes"]);
    ok(
        op,
        &[
            "--json",
            "gateway",
            "set",
            AGENT,
            "--limit",
            &limit,
            "--traffic",
            "primary",
        ],
    );
}

/// Each node's traffic as its gateway reads it back (`primary`, `mirror:100`, ...).
fn traffic(op: &Operator, nodes: &[usize]) -> Vec<String> {
    let out = ok(
        op,
        &[
            "--json",
            "gateway",
            "status",
            AGENT,
            "--limit",
            &names(nodes),
        ],
    );
    json_lines(&out)
        .into_iter()
        .filter(|v| v["event"] == "gateway")
        .map(|v| {
            let t = &v["gateway"]["traffic"];
            match t["kind"].as_str() {
                Some("split") => format!("split:{}", t["preview_percent"]),
                Some("mirror") => format!("mirror:{}", t["percent"]),
                Some(k) => k.to_string(),
                None => "-".into(),
            }
        })
        .collect()
}

fn agent_status(op: &Operator, node: usize) -> serde_json::Value {
    let out = ok(
        op,
        &[
            "--json",
            "agent",
            "status",
            AGENT,
            "--limit",
            &format!("n{node:02}"),
        ],
    );
    json_lines(&out)
        .into_iter()
        .find(|v| v["event"] == "agent")
        .map(|v| v["status"].clone())
        .unwrap_or_else(|| panic!("no agent status: {out}"))
}

/// `rollout status last --json` (its exit code follows the rollout's status).
fn rollout_status(op: &Operator) -> serde_json::Value {
    let out = stdout(&op.maestro(&["--json", "rollout", "status", "last"]));
    json_lines(&out)
        .into_iter()
        .find(|v| v["event"] == "rollout_status")
        .unwrap_or_else(|| panic!("no status: {out}"))["status"]
        .clone()
}

fn gateways(nodes: &[usize]) -> Vec<SocketAddr> {
    nodes
        .iter()
        .map(|&i| {
            format!("{}:{GATEWAY}", crate::fleet().address(i))
                .parse()
                .unwrap()
        })
        .collect()
}

/// `agent_requests_total` of the instance on `port` of node `i`.
fn requests_total(i: usize, port: u16) -> u64 {
    use std::io::{Read, Write};
    let addr: SocketAddr = format!("{}:{port}", crate::fleet().address(i))
        .parse()
        .unwrap();
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    text.lines()
        .find(|l| l.starts_with("agent_requests_total"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no agent_requests_total on {addr}: {text}"))
}

/// After a completed rollout: every node's primary runs v2, the preview
/// is stopped, the gateway is back on the primary.
fn completed_on_v2(op: &Operator, nodes: &[usize]) {
    let s = rollout_status(op);
    assert_eq!(s["rollout"]["status"], "completed", "{s}");
    for &i in nodes {
        let st = agent_status(op, i);
        assert_eq!(st["version"], V2, "n{i:02}: {st}");
        assert_eq!(st["running"], true, "n{i:02}: {st}");
        assert_eq!(st["preview"]["running"], false, "n{i:02}: {st}");
    }
    assert!(
        traffic(op, nodes).iter().all(|t| t == "primary"),
        "{:?}",
        traffic(op, nodes)
    );
}

#[test]
fn strategies_blue_green_under_continuous_load_fails_no_request_and_ends_on_the_new_version() {
    let nodes = [27, 28];
    let op = operator(&nodes);
    stable(&op, &nodes);
    let addrs = gateways(&nodes);
    let kept = Load::start(&addrs, 4);
    let fresh = Load::with(
        &addrs,
        Options {
            concurrency: 2,
            connection: Connection::Fresh,
            ..Options::default()
        },
    );
    kept.wait_for(200, Duration::from_secs(30));
    let what = format!("{AGENT}@{V2}");

    // First an abort during scale_down_delay: an instant switch back to
    // the old primary, which kept running.
    let mut bin = op.command(&[
        "rollout",
        "start",
        &what,
        "--strategy",
        "bluegreen-slow",
        "--limit",
        "fleet",
    ]);
    let child = std::thread::spawn(move || bin.output().unwrap());
    let until = Instant::now() + Duration::from_secs(90);
    while traffic(&op, &nodes).iter().any(|t| t != "preview") {
        assert!(
            Instant::now() < until,
            "no switch: {:?}",
            traffic(&op, &nodes)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    kept.wait_for(100, Duration::from_secs(30));
    ok(&op, &["rollout", "abort", "last"]);
    let o = child.join().unwrap();
    assert_eq!(o.status.code(), Some(1), "{}{}", stdout(&o), stderr(&o));
    let s = rollout_status(&op);
    assert_eq!(s["rollout"]["status"], "aborted", "{s}");
    assert!(traffic(&op, &nodes).iter().all(|t| t == "primary"));
    let mark = kept.snapshot();
    let back = kept.wait_for(200, Duration::from_secs(30)).since(&mark);
    eprintln!("blue/green aborted in scale_down_delay; after the abort: {back}");
    assert_eq!(
        back.answered_by(V1),
        back.ok(),
        "after the abort only v1 answers: {back}"
    );
    for &i in &nodes {
        let st = agent_status(&op, i);
        assert_eq!(st["version"], V1, "n{i:02}: {st}");
        assert_eq!(st["preview"]["running"], false, "n{i:02}: {st}");
    }

    let started = Instant::now();
    let o = op.maestro(&[
        "rollout",
        "start",
        &what,
        "--strategy",
        "bluegreen",
        "--limit",
        "fleet",
    ]);
    let took = started.elapsed();
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    // Requests in flight on an old worker finish there; what follows the
    // completion is the new version's only.
    let mark = kept.snapshot();
    let later = kept.wait_for(300, Duration::from_secs(30)).since(&mark);
    let (kept, fresh) = (kept.stop(), fresh.stop());
    eprintln!(
        "blue/green in {took:?}\n  keep-alive: {kept}\n  fresh: {fresh}\n  after completion: {later}"
    );
    assert_eq!(kept.failed(), 0, "keep-alive clients saw failures: {kept}");
    assert_eq!(
        fresh.failed(),
        0,
        "new-connection clients saw failures: {fresh}"
    );
    assert!(
        kept.answered_by(V1) > 0 && kept.answered_by(V2) > 0,
        "{kept}"
    );
    assert!(fresh.ok() > 50, "{fresh}");
    assert!(later.ok() >= 300, "{later}");
    assert_eq!(
        later.answered_by(V2),
        later.ok(),
        "after completion every answer is the new version's: {later}"
    );
    completed_on_v2(&op, &nodes);
}

#[test]
fn strategies_shadow_answers_clients_from_the_primary_while_the_preview_gets_the_copies() {
    let nodes = [29, 30];
    let op = operator(&nodes);
    stable(&op, &nodes);
    let load = Load::start(&gateways(&nodes), 4);
    load.wait_for(100, Duration::from_secs(30));
    let what = format!("{AGENT}@{V2}");
    let mut bin = op.command(&[
        "rollout",
        "start",
        &what,
        "--strategy",
        "mirror",
        "--limit",
        "fleet",
    ]);
    let child = std::thread::spawn(move || bin.output().unwrap());
    // The shadow phase: both gateways mirror.
    let until = Instant::now() + Duration::from_secs(60);
    while traffic(&op, &nodes).iter().any(|t| t != "mirror:100") {
        assert!(
            Instant::now() < until,
            "no mirror: {:?}",
            traffic(&op, &nodes)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let previews0: u64 = nodes.iter().map(|&i| requests_total(i, PREVIEW)).sum();
    let mark = load.snapshot();
    std::thread::sleep(Duration::from_millis(1000));
    let during = load.snapshot().since(&mark);
    let previews1: u64 = nodes.iter().map(|&i| requests_total(i, PREVIEW)).sum();
    // Still shadowing at the end of the window: the window was the shadow's.
    assert!(
        traffic(&op, &nodes).iter().all(|t| t == "mirror:100"),
        "the shadow phase ended inside the window: {:?}",
        traffic(&op, &nodes)
    );
    let o = child.join().unwrap();
    let report = load.stop();
    eprintln!(
        "shadow: during the window {during}; preview +{} requests; whole run {report}",
        previews1 - previews0
    );
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert!(during.ok() > 20, "{during}");
    assert_eq!(
        during.answered_by(V1),
        during.ok(),
        "during the shadow every client answer is v1's: {during}"
    );
    assert!(
        previews1 - previews0 >= during.ok() * 9 / 10,
        "the preview got {} copies of {} requests",
        previews1 - previews0,
        during.ok()
    );
    assert_eq!(report.failed(), 0, "{report}");
    let s = rollout_status(&op);
    let m = &s["measurements"][0];
    assert_eq!(m["outcome"], "pass", "{s}");
    assert!(m["metrics"]["requests"].as_f64().unwrap() > 0.0, "{m}");
    completed_on_v2(&op, &nodes);
}
