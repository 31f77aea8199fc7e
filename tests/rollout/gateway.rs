//! The gateway on real nodes: the distribution's nginx on each node's
//! loopback in front of support-triage's primary (1.3.2 on 8081) and
//! preview (1.4.0 on 18081) instances, clients on 9081, real traffic from
//! the load generator. What a user notices: the share of answers a split
//! gives the preview, no failed request while blue/green switches, a
//! mirror that never answers a client from the preview, a config nginx
//! refuses changing nothing, the kill switch taking both instances down.
//!
//! Nodes n20..n26 are this file's (n27..n30 are strategies.rs').

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use crate::common::fleet::Operator;
use crate::common::load::{Connection, Load, Options, Report};
use crate::common::{git, stderr, stdout};
use crate::{digest, json_lines, names, repo};

pub(crate) const AGENT: &str = "support-triage";
pub(crate) const V1: &str = "1.3.2";
pub(crate) const V2: &str = "1.4.0";
pub(crate) const PORT: u16 = 8081;
pub(crate) const GATEWAY: u16 = 9081;
pub(crate) const PREVIEW: u16 = 18081;

fn name(i: usize) -> String {
    format!("n{i:02}")
}

/// An operator with `nodes` (each agent bound to the node's own address)
/// and support-triage 1.3.2 and 1.4.0 behind a gateway. `loopback`
/// overrides the node variable (for the hostile-value test).
pub(crate) fn operator(nodes: &[usize], loopback: Option<&str>) -> Operator {
    let op = crate::operator(nodes);
    let f = crate::fleet();
    let mut text = String::new();
    for &i in nodes {
        let a = f.address(i);
        let lo = loopback.map(str::to_string).unwrap_or_else(|| a.clone());
        text.push_str(&format!(
            "[node.{}]\naddress = \"{a}\"\ngroups = [\"fleet\"]\ntags = {{ env = \"test\", region = \"eu-west\" }}\nvars = {{ loopback = {} }}\n\n",
            name(i),
            serde_json::to_string(&lo).unwrap()
        ));
    }
    std::fs::write(op.sot.join("nodes.toml"), text).unwrap();
    let art = op.sot.join("artifacts");
    std::fs::create_dir_all(&art).unwrap();
    for v in [V1, V2] {
        let file = format!("{AGENT}-{v}.tar.gz");
        std::fs::copy(repo().join("sot/artifacts").join(&file), art.join(&file)).unwrap();
    }
    std::fs::write(
        op.sot.join("models.toml"),
        "[model.llama]\nprovider = \"local\"\n",
    )
    .unwrap();
    std::fs::write(
        op.sot.join("agents.toml"),
        format!(
            "[agent.{AGENT}]\nmodel = \"llama\"\nautonomy = \"L2\"\ncurrent = \"{V1}\"\ncommand = \"./run\"\n\
             port = {PORT}\ngateway = {{ port = {GATEWAY}, preview_port = {PREVIEW} }}\n\
             health = {{ http = \"/healthz\", interval = \"100ms\", retries = 50, min_healthy = \"300ms\" }}\n\n\
             [agent.{AGENT}.versions.\"{V1}\"]\nartifact = \"artifacts/{AGENT}-{V1}.tar.gz\"\nsha256 = \"{}\"\n\n\
             [agent.{AGENT}.versions.\"{V2}\"]\nartifact = \"artifacts/{AGENT}-{V2}.tar.gz\"\nsha256 = \"{}\"\n",
            digest(&format!("{AGENT}-{V1}.tar.gz")),
            digest(&format!("{AGENT}-{V2}.tar.gz")),
        ),
    )
    .unwrap();
    op
}

/// Deploy `version` into `slot` on `nodes`; every node must be deployed.
fn deploy(op: &Operator, version: &str, slot: &str, nodes: &[usize]) {
    let what = format!("{AGENT}@{version}");
    let limit = names(nodes);
    let o = op.maestro(&[
        "--json", "deploy", &what, "--limit", &limit, "--slot", slot, "--yes",
    ]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "deploy {what} --slot {slot}: {}{}",
        stdout(&o),
        stderr(&o)
    );
}

/// Both instances on `nodes`: v1 primary, v2 preview.
fn both(op: &Operator, nodes: &[usize]) {
    deploy(op, V1, "primary", nodes);
    deploy(op, V2, "preview", nodes);
}

/// `gateway set --traffic T --json`: the process output and each node's entry.
fn set(
    op: &Operator,
    nodes: &[usize],
    traffic: &str,
) -> (std::process::Output, Vec<serde_json::Value>) {
    let o = op.maestro(&[
        "--json",
        "gateway",
        "set",
        AGENT,
        "--limit",
        &names(nodes),
        "--traffic",
        traffic,
    ]);
    let entries = json_lines(&stdout(&o))
        .into_iter()
        .filter(|v| v["event"] == "gateway")
        .map(|v| v["gateway"].clone())
        .collect();
    (o, entries)
}

fn set_ok(op: &Operator, nodes: &[usize], traffic: &str) -> Vec<serde_json::Value> {
    let (o, entries) = set(op, nodes, traffic);
    assert_eq!(
        o.status.code(),
        Some(0),
        "gateway set {traffic}: {}{}",
        stdout(&o),
        stderr(&o)
    );
    assert_eq!(entries.len(), nodes.len(), "{}", stdout(&o));
    entries
}

/// `gateway status --json`: node -> traffic as the node reads it back.
fn traffic(op: &Operator, nodes: &[usize]) -> Vec<(String, String, bool)> {
    let o = op.maestro(&[
        "--json",
        "gateway",
        "status",
        AGENT,
        "--limit",
        &names(nodes),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    json_lines(&stdout(&o))
        .into_iter()
        .filter(|v| v["event"] == "gateway")
        .map(|v| {
            let g = &v["gateway"];
            let t = &g["traffic"];
            let label = match t["kind"].as_str() {
                Some("split") => format!("split:{}", t["preview_percent"]),
                Some("mirror") => format!("mirror:{}", t["percent"]),
                Some(k) => k.to_string(),
                None => "-".into(),
            };
            (
                g["node"].as_str().unwrap().to_string(),
                label,
                g["running"].as_bool().unwrap(),
            )
        })
        .collect()
}

fn gateway_addr(i: usize) -> SocketAddr {
    format!("{}:{GATEWAY}", crate::fleet().address(i))
        .parse()
        .unwrap()
}

/// `agent status --json`: the agent's entry on one node.
fn agent_status(op: &Operator, node: usize) -> serde_json::Value {
    let o = op.maestro(&["--json", "agent", "status", AGENT, "--limit", &name(node)]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    json_lines(&stdout(&o))
        .into_iter()
        .find(|v| v["event"] == "agent")
        .map(|v| v["status"].clone())
        .unwrap_or_else(|| panic!("no agent status: {}", stdout(&o)))
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

fn on_node(i: usize, script: &str) -> (bool, String) {
    let o = crate::fleet().node_exec(&name(i), &["sh", "-c", script]);
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr),
    )
}

fn share(r: &Report, version: &str) -> f64 {
    r.answered_by(version) as f64 / r.ok().max(1) as f64
}

#[test]
fn a_split_gives_the_preview_its_share_and_a_preview_deploy_leaves_the_primary_alone() {
    let nodes = [20, 21];
    let op = operator(&nodes, None);
    deploy(&op, V1, "primary", &nodes);
    let before = agent_status(&op, 20);
    deploy(&op, V2, "preview", &nodes);
    let after = agent_status(&op, 20);
    assert_eq!(
        (before["version"].clone(), before["pid"].clone()),
        (after["version"].clone(), after["pid"].clone()),
        "a deploy to the preview slot never restarts the primary: {before} / {after}"
    );
    let preview = &after["preview"];
    assert_eq!(preview["version"], V2, "{after}");
    assert_eq!(preview["running"], true, "{after}");
    assert_eq!(preview["healthy"], true, "{after}");
    assert_eq!(preview["port"], PREVIEW, "{after}");
    let (ok, env) = on_node(
        20,
        &format!(
            "cat /var/lib/maestro/agents/{AGENT}/env.preview; cat /var/lib/maestro/agents/{AGENT}/state.preview"
        ),
    );
    assert!(
        ok && env.contains(&format!("MAESTRO_AGENT_PORT={PREVIEW}")),
        "{env}"
    );
    assert!(
        env.contains("slot=preview") && env.contains(&format!("version={V2}")),
        "{env}"
    );

    let entries = set_ok(&op, &nodes, "split:30");
    for e in &entries {
        assert!(
            matches!(e["change"].as_str(), Some("started" | "reloaded")),
            "{e}"
        );
    }
    assert_eq!(
        traffic(&op, &nodes),
        vec![
            ("n20".to_string(), "split:30".to_string(), true),
            ("n21".to_string(), "split:30".to_string(), true)
        ]
    );
    let load = Load::start(&[gateway_addr(20), gateway_addr(21)], 6);
    let report = load.wait_for(1000, Duration::from_secs(60));
    let report = {
        let _ = report;
        load.stop()
    };
    eprintln!("split:30: {report}");
    assert_eq!(report.failed(), 0, "{report}");
    assert!(report.ok() >= 1000, "{report}");
    // nginx's weighted round robin: 3 in 10 per worker, so the share is
    // 30% up to requests in flight; 5 points either way is the tolerance.
    let p = share(&report, V2);
    assert!((0.25..=0.35).contains(&p), "preview share {p:.3}: {report}");
    assert_eq!(report.answered_by(V1) + report.answered_by(V2), report.ok());

    // The same traffic again changes nothing and reloads nothing.
    for e in set_ok(&op, &nodes, "split:30") {
        assert_eq!(e["change"], "unchanged", "{e}");
    }

    // The preview taken down under the split: its share falls back to the
    // primary (a refused connection is retried there), no client fails.
    let load = Load::start(&[gateway_addr(20)], 4);
    load.wait_for(100, Duration::from_secs(30));
    let o = op.maestro(&[
        "--json", "disable", AGENT, "--slot", "preview", "--limit", "n20", "--yes",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    let mark = load.snapshot();
    let later = load.wait_for(200, Duration::from_secs(30)).since(&mark);
    let report = load.stop();
    assert_eq!(report.failed(), 0, "{report}");
    assert_eq!(later.answered_by(V2), 0, "{later}");
    let st = agent_status(&op, 20);
    assert_eq!(
        (st["running"].clone(), st["pid"].clone()),
        (true.into(), before["pid"].clone()),
        "{st}"
    );
    assert_eq!(st["preview"]["running"], false, "{st}");
}

#[test]
fn blue_green_switches_under_continuous_load_fail_no_request() {
    let nodes = [22];
    let op = operator(&nodes, None);
    both(&op, &nodes);
    set_ok(&op, &nodes, "preview");
    let addr = [gateway_addr(22)];
    let kept = Load::start(&addr, 6);
    let fresh = Load::with(
        &addr,
        Options {
            concurrency: 3,
            connection: Connection::Fresh,
            ..Options::default()
        },
    );
    kept.wait_for(300, Duration::from_secs(30));
    let mut reloads = Vec::new();
    // Green to blue and back, three times over, all under load.
    for (i, to) in ["primary", "preview", "primary", "preview", "primary"]
        .iter()
        .enumerate()
    {
        let e = set_ok(&op, &nodes, to);
        assert_eq!(e[0]["change"], "reloaded", "switch {i}: {}", e[0]);
        reloads.push(e[0]["ms"].as_u64().unwrap());
        kept.wait_for(300, Duration::from_secs(30));
    }
    // After the last switch (to the primary): requests still in flight on
    // an old worker finish there; what follows is the primary's only.
    let mark = kept.snapshot();
    let later = kept.wait_for(500, Duration::from_secs(30)).since(&mark);
    let (kept, fresh) = (kept.stop(), fresh.stop());
    eprintln!("blue/green, reloads {reloads:?} ms\n  keep-alive: {kept}\n  fresh: {fresh}");
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
    assert!(fresh.ok() > 100, "{fresh}");
    assert_eq!(
        later.answered_by(V2),
        0,
        "once switched to the primary, only the primary answers: {later}"
    );
    assert_eq!(traffic(&op, &nodes)[0].1, "primary");
}

#[test]
fn a_mirror_answers_every_client_from_the_primary_and_copies_each_request_to_the_preview() {
    let nodes = [23];
    let op = operator(&nodes, None);
    both(&op, &nodes);
    set_ok(&op, &nodes, "mirror:100");
    assert_eq!(traffic(&op, &nodes)[0].1, "mirror:100");
    let (primary0, preview0) = (requests_total(23, PORT), requests_total(23, PREVIEW));
    let load = Load::start(&[gateway_addr(23)], 4);
    load.wait_for(600, Duration::from_secs(60));
    let report = load.stop();
    // The mirrored copies may still be on their way when the clients are done.
    std::thread::sleep(Duration::from_millis(500));
    let (primary1, preview1) = (requests_total(23, PORT), requests_total(23, PREVIEW));
    eprintln!(
        "mirror:100: {report}; primary +{}, preview +{}",
        primary1 - primary0,
        preview1 - preview0
    );
    assert_eq!(report.failed(), 0, "{report}");
    assert_eq!(
        report.answered_by(V1),
        report.ok(),
        "every client answer comes from the primary: {report}"
    );
    assert_eq!(primary1 - primary0, report.ok(), "{report}");
    let mirrored = preview1 - preview0;
    assert!(
        mirrored >= report.ok() * 98 / 100 && mirrored <= report.ok(),
        "the preview got {mirrored} copies of {} requests",
        report.ok()
    );
}

#[test]
fn a_config_nginx_refuses_changes_nothing_and_the_old_traffic_keeps_flowing() {
    let nodes = [24];
    let op = operator(&nodes, None);
    both(&op, &nodes);
    set_ok(&op, &nodes, "primary");
    let file = format!("/etc/maestro/gateway/agents/{AGENT}.conf");
    let (_, before) = on_node(24, &format!("cat {file}"));
    // A broken hand edit beside the agent's file: the complete new config
    // fails nginx -t, whatever maestro renders.
    let (ok, out) = on_node(
        24,
        "printf 'upstream {\\n' >/etc/maestro/gateway/agents/zz-hand-edit.conf",
    );
    assert!(ok, "{out}");
    let load = Load::start(&[gateway_addr(24)], 4);
    load.wait_for(200, Duration::from_secs(30));
    let (o, entries) = set(&op, &nodes, "preview");
    let after_refusal = load.wait_for(300, Duration::from_secs(30));
    assert_eq!(o.status.code(), Some(1), "{}{}", stdout(&o), stderr(&o));
    let error = entries[0]["error"].as_str().unwrap_or_default().to_string();
    assert!(
        error.contains("nginx -t refused") && error.contains("zz-hand-edit.conf"),
        "the refusal names nginx -t and the broken file: {error}"
    );
    let (_, now) = on_node(24, &format!("cat {file}"));
    assert_eq!(now, before, "a refused config never replaces the good one");
    assert_eq!(
        traffic(&op, &nodes)[0],
        ("n24".into(), "primary".into(), true)
    );
    let mark = load.snapshot();
    let later = load.wait_for(300, Duration::from_secs(30)).since(&mark);
    let report = load.stop();
    eprintln!("refused config: {report}");
    assert_eq!(report.failed(), 0, "{report}");
    assert_eq!(
        report.answered_by(V2),
        0,
        "traffic stayed on the primary: {report}"
    );
    assert!(later.ok() >= 300 && after_refusal.ok() > 0, "{later}");
    // The hand edit gone, the same change goes through.
    on_node(24, "rm -f /etc/maestro/gateway/agents/zz-hand-edit.conf");
    assert_eq!(set_ok(&op, &nodes, "preview")[0]["change"], "reloaded");
}

#[test]
fn a_freeze_holds_traffic_changes_and_the_kill_switch_stops_and_blocks_both_instances() {
    let nodes = [25];
    let op = operator(&nodes, None);
    both(&op, &nodes);
    set_ok(&op, &nodes, "split:50");
    let st = agent_status(&op, 25);
    assert!(
        st["running"] == true && st["preview"]["running"] == true,
        "{st}"
    );
    let o = std::process::Command::new("git")
        .args(["init", "-q"])
        .arg(&op.sot)
        .output()
        .unwrap();
    assert!(o.status.success());
    git(&op.sot, &["add", "-A"]);
    git(
        &op.sot,
        &[
            "-c",
            "user.name=Gateway Tester",
            "-c",
            "user.email=gw@example.org",
            "commit",
            "-qm",
            "test SoT",
        ],
    );
    // A freeze window of the agent holds traffic changes like deploys;
    // a break-glass lets one through.
    let now = chrono::Utc::now();
    let (start, end) = (
        (now - chrono::Duration::hours(1)).to_rfc3339(),
        (now + chrono::Duration::hours(1)).to_rfc3339(),
    );
    let o = op.maestro(&[
        "freeze",
        "add",
        "gw-freeze",
        "--start",
        &start,
        "--end",
        &end,
        "--agent",
        AGENT,
        "--reason",
        "release freeze",
        "--actor",
        "Gateway Tester <gw@example.org>",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    let (o, _) = set(&op, &nodes, "primary");
    let said = stdout(&o) + &stderr(&o);
    assert_eq!(o.status.code(), Some(4), "{said}");
    assert!(said.contains("gw-freeze"), "{said}");
    assert_eq!(traffic(&op, &nodes)[0].1, "split:50", "nothing changed");
    let o = op.maestro(&[
        "--json",
        "gateway",
        "set",
        AGENT,
        "--limit",
        "n25",
        "--traffic",
        "split:40",
        "--break-glass",
        "--reason",
        "the canary leaks",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert_eq!(traffic(&op, &nodes)[0].1, "split:40");
    let o = op.maestro(&[
        "kill",
        AGENT,
        "--limit",
        "n25",
        "--reason",
        "the canary leaks",
        "--actor",
        "Gateway Tester <gw@example.org>",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    let st = agent_status(&op, 25);
    assert_eq!(st["running"], false, "{st}");
    assert_eq!(st["killed"], true, "{st}");
    assert_eq!(st["preview"]["running"], false, "{st}");
    let (_, procs) = on_node(
        25,
        &format!(
            "for f in $(grep -lzxF MAESTRO_AGENT={AGENT} /proc/[0-9]*/environ 2>/dev/null); do p=${{f%/environ}}; [ $p/ns/mnt -ef /proc/$$/ns/mnt ] && echo $f; done; ls /run/maestro"
        ),
    );
    assert!(
        !procs.contains("/proc/") && !procs.contains("agent-"),
        "nothing of either instance is left: {procs}"
    );
    for port in [PORT, PREVIEW] {
        let addr: SocketAddr = format!("{}:{port}", crate::fleet().address(25))
            .parse()
            .unwrap();
        assert!(
            std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err(),
            "{addr} still answers"
        );
    }
    // The marker holds both slots back, and the gate holds traffic changes.
    let o = op.maestro(&[
        "deploy",
        &format!("{AGENT}@{V2}"),
        "--limit",
        "n25",
        "--slot",
        "preview",
        "--yes",
    ]);
    assert_eq!(o.status.code(), Some(4), "{}{}", stdout(&o), stderr(&o));
    let (o, _) = set(&op, &nodes, "preview");
    let said = stdout(&o) + &stderr(&o);
    assert_eq!(o.status.code(), Some(4), "{said}");
    assert!(said.contains("kill switch"), "{said}");
}

#[test]
fn hostile_values_never_reach_a_shell_or_nginx() {
    // A loopback that would inject an nginx directive (and a command).
    let hostile = "127.0.32.26; include /etc/shadow; $(touch /tmp/gw-pwned)";
    let op = operator(&[26], Some(hostile));
    let (o, _) = set(&op, &[26], "primary");
    assert_eq!(o.status.code(), Some(2), "{}{}", stdout(&o), stderr(&o));
    let said = stdout(&o) + &stderr(&o);
    assert!(said.contains("is not an IP address"), "{said}");
    // A traffic setting that is not one is refused by the command line.
    let op = operator(&[26], None);
    let (o, _) = set(&op, &[26], "split:30; rm -rf /");
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("not a traffic setting"),
        "{}",
        stderr(&o)
    );
    let (_, files) = on_node(
        26,
        "for f in /etc/maestro/gateway /tmp/gw-pwned; do [ -e $f ] && echo exists $f; done; echo end",
    );
    assert_eq!(files.trim(), "end", "no node was touched: {files}");
    assert!(!Path::new("/tmp/gw-pwned").exists());
    // A hostile value that is valid reaches the node quoted: the agent's
    // env, which goes to node.sh through sh_quote, holds `$(...)` literally.
    let text = std::fs::read_to_string(op.sot.join("agents.toml")).unwrap();
    std::fs::write(
        op.sot.join("agents.toml"),
        text.replacen(
            "command = \"./run\"",
            "command = \"./run\"\nenv = { AGENT_NOTE = \"it's $(touch /tmp/gw-pwned) `id`\" }",
            1,
        ),
    )
    .unwrap();
    // No client goes to a preview that is not there (or not healthy).
    let (o, entries) = set(&op, &[26], "split:10");
    assert_eq!(o.status.code(), Some(1), "{}{}", stdout(&o), stderr(&o));
    let error = entries[0]["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("does not answer its health check"),
        "{error}"
    );
    deploy(&op, V2, "preview", &[26]);
    let (_, env) = on_node(
        26,
        &format!(
            "cat /var/lib/maestro/agents/{AGENT}/env.preview; [ -e /tmp/gw-pwned ] || echo not pwned"
        ),
    );
    assert!(
        env.contains("AGENT_NOTE='it'\\''s $(touch /tmp/gw-pwned) `id`'"),
        "{env}"
    );
    assert!(env.contains("not pwned"), "{env}");
    set_ok(&op, &[26], "preview");
    let load = Load::start(&[gateway_addr(26)], 2);
    load.wait_for(50, Duration::from_secs(30));
    let r = load.stop();
    assert_eq!((r.failed(), r.answered_by(V2)), (0, r.ok()), "{r}");
}
