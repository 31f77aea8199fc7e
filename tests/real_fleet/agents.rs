//! Agents on the real fleet: deploys of the example agents (real python3
//! HTTP services on each node's own loopback address), idempotence, the
//! node's own digest check, rollback of an unhealthy version, a controller
//! killed mid-deploy, enable/disable, URL artifacts, and bad input.
//!
//! Nodes n47..n59 and n99 are this file's (tui.rs uses n60 for the console kill).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use crate::common::fleet::{Operator, fleet};
use crate::common::{git, stderr, stdout};

const AGENT: &str = "fleet-doctor";
const PORT: u16 = 8083;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The example artifacts' digests, as sot/agents.toml records them.
fn digest(file: &str) -> String {
    let text = std::fs::read_to_string(repo().join("sot/agents.toml")).unwrap();
    let at = text
        .find(&format!("artifacts/{file}"))
        .unwrap_or_else(|| panic!("{file} in agents.toml"));
    let rest = &text[at..];
    let q = rest.find("sha256 = \"").unwrap() + 10;
    rest[q..q + 64].to_string()
}

/// An operator whose SoT has `nodes` (each agent bound to the node's own
/// address) and a registry with fleet-doctor 2.0.3, 2.1.0 and 2.2.0, a
/// version that never gets healthy (same bytes as 2.1.0).
pub(crate) fn agent_operator(nodes: &[usize]) -> Operator {
    let op = Operator::new(nodes);
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
    std::fs::write(
        op.sot.join("agents.toml"),
        format!(
            "[agent.fleet-doctor]\nmodel = \"claude-sonnet\"\nautonomy = \"L3\"\ncurrent = \"2.1.0\"\n\
             command = \"./run\"\nport = {PORT}\n\
             health = {{ http = \"/healthz\", interval = \"200ms\", retries = 25, min_healthy = \"500ms\" }}\n\n\
             [agent.fleet-doctor.versions.\"2.0.3\"]\nartifact = \"artifacts/fleet-doctor-2.0.3.tar.gz\"\nsha256 = \"{}\"\n\n\
             [agent.fleet-doctor.versions.\"2.1.0\"]\nartifact = \"artifacts/fleet-doctor-2.1.0.tar.gz\"\nsha256 = \"{}\"\n\n\
             [agent.fleet-doctor.versions.\"2.2.0\"]\nartifact = \"artifacts/fleet-doctor-2.1.0.tar.gz\"\nsha256 = \"{}\"\n\
             env = {{ AGENT_HEALTHY = \"0\" }}\n",
            digest("fleet-doctor-2.0.3.tar.gz"),
            digest("fleet-doctor-2.1.0.tar.gz"),
            digest("fleet-doctor-2.1.0.tar.gz"),
        ),
    )
    .unwrap();
    op
}

fn names(nodes: &[usize]) -> String {
    nodes
        .iter()
        .map(|i| format!("n{i:02}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// GET http://ADDR:PORT/PATH from the test process: (status, body).
pub(crate) fn get(node: usize, path: &str) -> Option<(u16, String)> {
    let addr = format!("{}:{PORT}", fleet().address(node));
    let mut s = TcpStream::connect_timeout(&addr.parse().ok()?, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let code = text.split(' ').nth(1)?.parse().ok()?;
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    Some((code, body))
}

fn on_node(node: usize, script: &str) -> String {
    let o = fleet().node_exec(&format!("n{node:02}"), &["sh", "-c", script]);
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Versions started on a node, in order (the example agent's start counter).
fn starts(node: usize) -> Vec<String> {
    on_node(
        node,
        &format!("cat /var/lib/maestro/agents/{AGENT}/data/starts 2>/dev/null"),
    )
    .lines()
    .filter_map(|l| l.split(' ').nth(1).map(str::to_string))
    .collect()
}

fn json_lines(out: &str) -> Vec<serde_json::Value> {
    out.lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// `agent status --json`: node -> (version, running, healthy).
fn status(op: &Operator, nodes: &[usize]) -> Vec<(String, String, bool, Option<bool>)> {
    let o = op.maestro(&["--json", "agent", "status", AGENT, "--limit", &names(nodes)]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    json_lines(&stdout(&o))
        .into_iter()
        .filter(|v| v["event"] == "agent")
        .map(|v| {
            let s = &v["status"];
            (
                s["node"].as_str().unwrap().to_string(),
                s["version"].as_str().unwrap().to_string(),
                s["running"].as_bool().unwrap(),
                s["healthy"].as_bool(),
            )
        })
        .collect()
}

/// Per node: the outcome word of the deploy task in a `--json` run.
fn outcomes(out: &str) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = json_lines(out)
        .into_iter()
        .filter(|e| e["event"] == "task_finished")
        .map(|e| {
            let msg = e["task"]["message"].as_str().unwrap().to_string();
            (
                e["node"].as_str().unwrap().to_string(),
                msg.split(':').next().unwrap().to_string(),
            )
        })
        .collect();
    v.sort();
    v
}

pub(crate) fn deploy(
    op: &Operator,
    what: &str,
    nodes: &[usize],
    extra: &[&str],
) -> std::process::Output {
    let limit = names(nodes);
    let mut args = vec!["--json", "deploy", what, "--limit", &limit, "--yes"];
    args.extend_from_slice(extra);
    op.maestro(&args)
}

/// A `--json` deploy in the background, its stdout piped to follow it.
fn spawn_deploy(op: &Operator, what: &str, nodes: &[usize], forks: usize) -> std::process::Child {
    op.command(&[
        "--json",
        "deploy",
        what,
        "--limit",
        &names(nodes),
        "--yes",
        "--forks",
        &forks.to_string(),
    ])
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::null())
    .spawn()
    .unwrap()
}

#[test]
fn deploys_converge_stay_idempotent_are_checked_on_the_node_roll_back_and_survive_a_controller_crash()
 {
    let nodes: Vec<usize> = (47..=56).collect();
    let op = agent_operator(&nodes);

    // v1 on 10 nodes: every node runs it and answers its health check.
    let o = deploy(&op, "fleet-doctor@2.0.3", &nodes, &[]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert!(
        outcomes(&stdout(&o)).iter().all(|(_, w)| w == "deployed"),
        "{}",
        stdout(&o)
    );
    for &n in &nodes {
        assert_eq!(get(n, "/healthz").map(|r| r.0), Some(200), "n{n} healthz");
        let (code, body) = get(n, "/v1/ask").unwrap();
        assert_eq!(code, 200);
        assert!(body.contains("\"version\": \"2.0.3\""), "{body}");
        assert!(body.contains(&format!("\"node\": \"n{n:02}\"")), "{body}");
    }
    let st = status(&op, &nodes);
    assert_eq!(st.len(), 10);
    assert!(
        st.iter()
            .all(|(_, v, run, h)| v == "2.0.3" && *run && *h == Some(true)),
        "{st:?}"
    );

    // The same deploy again changes nothing: no node restarts it.
    let o = deploy(&op, "fleet-doctor@2.0.3", &nodes, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert!(
        outcomes(&stdout(&o)).iter().all(|(_, w)| w == "unchanged"),
        "{}",
        stdout(&o)
    );
    let check = deploy(&op, "fleet-doctor@2.0.3", &nodes[..1], &["--check"]);
    assert!(stdout(&check).contains("unchanged"), "{}", stdout(&check));
    for &n in &nodes {
        assert_eq!(starts(n), vec!["2.0.3"], "n{n} started once");
    }

    // Tampered on the way: the artifact changes on the controller after it
    // was verified (one node at a time; corrupted after the first node).
    let art = op.sot.join("artifacts/fleet-doctor-2.1.0.tar.gz");
    let good = std::fs::read(&art).unwrap();
    let mut child = spawn_deploy(&op, "fleet-doctor@2.1.0", &nodes, 1);
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = String::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        seen.push_str(&line);
        seen.push('\n');
        if line.contains("\"event\":\"node_finished\"") {
            let mut bad = good.clone();
            let mid = bad.len() / 2;
            bad[mid] ^= 0xff;
            std::fs::write(&art, &bad).unwrap();
            break;
        }
    }
    for line in lines {
        seen.push_str(&line.unwrap());
        seen.push('\n');
    }
    let code = child.wait().unwrap().code();
    std::fs::write(&art, &good).unwrap();
    assert_eq!(code, Some(1), "{seen}");
    let out = outcomes(&seen);
    let deployed: Vec<&str> = out
        .iter()
        .filter(|(_, w)| w == "deployed")
        .map(|(n, _)| n.as_str())
        .collect();
    assert_eq!(deployed.len(), 1, "{seen}");
    let first: usize = deployed[0][1..].parse().unwrap();
    assert_eq!(
        seen.lines()
            .filter(|l| l.contains("\"task_finished\"") && l.contains("sha256 on this node is"))
            .count(),
        9,
        "the nine others refuse the bytes they got: {seen}"
    );
    for (node, v, run, _) in status(&op, &nodes) {
        let want = if node == deployed[0] {
            "2.1.0"
        } else {
            "2.0.3"
        };
        assert_eq!((v.as_str(), run), (want, true), "{node}");
    }

    // A version that never gets healthy rolls back by itself on every node.
    let o = deploy(&op, "fleet-doctor@2.2.0", &nodes, &[]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(
        outcomes(&stdout(&o))
            .iter()
            .all(|(_, w)| w == "rolled_back"),
        "{}",
        stdout(&o)
    );
    for (node, v, run, healthy) in status(&op, &nodes) {
        let want = if node == deployed[0] {
            "2.1.0"
        } else {
            "2.0.3"
        };
        assert_eq!(
            (v.as_str(), run, healthy),
            (want, true, Some(true)),
            "{node}"
        );
    }

    // The controller is SIGKILLed mid-deploy; the same deploy again
    // converges every node, and none is started twice.
    let before: Vec<usize> = nodes
        .iter()
        .map(|&n| starts(n).iter().filter(|v| *v == "2.1.0").count())
        .collect();
    let mut child = spawn_deploy(&op, "fleet-doctor@2.1.0", &nodes, 3);
    let lines = BufReader::new(child.stdout.take().unwrap()).lines();
    for line in lines {
        if line.unwrap().contains("\"event\":\"node_finished\"") {
            break;
        }
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let o = deploy(&op, "fleet-doctor@2.1.0", &nodes, &[]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    for (i, &n) in nodes.iter().enumerate() {
        let after = starts(n).iter().filter(|v| *v == "2.1.0").count();
        let expected = if n == first { before[i] } else { before[i] + 1 };
        assert_eq!(after, expected, "n{n}: 2.1.0 started {before:?} -> {after}");
        let (code, body) = get(n, "/v1/ask").unwrap();
        assert_eq!(code, 200);
        assert!(body.contains("\"version\": \"2.1.0\""), "n{n}: {body}");
    }
    // Three versions kept for rollback (keep = 3 by default), nothing else.
    let dirs = on_node(nodes[1], &format!("ls /opt/maestro/agents/{AGENT}"));
    assert!(
        dirs.contains("2.0.3") && dirs.contains("2.1.0") && dirs.contains("current"),
        "{dirs}"
    );
}

#[test]
fn bad_agent_input_is_refused_before_any_node_is_touched() {
    let nodes = [57];
    let op = agent_operator(&nodes);
    let limit = names(&nodes);
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["deploy", "no-such-agent", "--limit", &limit, "--yes"],
            "unknown agent",
        ),
        (
            vec!["deploy", "fleet-doctr", "--limit", &limit, "--yes"],
            "did you mean `fleet-doctor`",
        ),
        (
            vec!["deploy", "fleet-doctor@9.9.9", "--limit", &limit, "--yes"],
            "no version `9.9.9`",
        ),
    ];
    for (args, want) in cases {
        let o = op.maestro(&args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(want), "{args:?}: {}", stderr(&o));
    }
    // The artifact on the controller is not what agents.toml says.
    let art = op.sot.join("artifacts/fleet-doctor-2.0.3.tar.gz");
    let good = std::fs::read(&art).unwrap();
    std::fs::write(&art, b"not the artifact").unwrap();
    let o = op.maestro(&["deploy", "fleet-doctor@2.0.3", "--limit", &limit, "--yes"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("but agents.toml says"),
        "{}",
        stderr(&o)
    );
    std::fs::remove_file(&art).unwrap();
    let o = op.maestro(&["deploy", "fleet-doctor@2.0.3", "--limit", &limit, "--yes"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("does not exist"), "{}", stderr(&o));
    std::fs::write(&art, good).unwrap();
    // A URL nobody answers.
    let text = std::fs::read_to_string(op.sot.join("agents.toml"))
        .unwrap()
        .replace(
            "artifacts/fleet-doctor-2.0.3.tar.gz",
            "http://127.0.0.1:9/fleet-doctor-2.0.3.tar.gz",
        );
    std::fs::write(op.sot.join("agents.toml"), text).unwrap();
    let o = op.maestro(&["deploy", "fleet-doctor@2.0.3", "--limit", &limit, "--yes"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("cannot fetch http://127.0.0.1:9/"),
        "{}",
        stderr(&o)
    );
    // Nothing reached the node.
    assert_eq!(
        on_node(57, "ls /opt/maestro/agents 2>/dev/null | wc -l").trim(),
        "0"
    );
    // A bad registry entry is a SoT error with file:line:col.
    let text = std::fs::read_to_string(op.sot.join("agents.toml"))
        .unwrap()
        .replace("retries = 25", "retries = 25, timeout = \"soon\"");
    std::fs::write(op.sot.join("agents.toml"), text).unwrap();
    let o = op.maestro(&["sot", "check"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("agents.toml:7:") && stderr(&o).contains("not a duration"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn a_url_artifact_is_fetched_once_and_cached_by_digest_and_deployed_through_sudo() {
    let nodes = [58];
    let op = agent_operator(&nodes);
    // Log in as the unprivileged `op` (NOPASSWD sudo): the deploy runs as root through sudo.
    let text = std::fs::read_to_string(op.sot.join("nodes.toml"))
        .unwrap()
        .replace("groups = [", "user = \"op\"\ngroups = [");
    std::fs::write(op.sot.join("nodes.toml"), text).unwrap();
    // A real HTTP server on loopback serving the artifacts directory.
    let dir = op.sot.join("artifacts");
    let port = 18000 + (std::process::id() % 1000) as u16;
    let log = op.tmp.path().join("http.log");
    let mut server = std::process::Command::new("python3")
        .args([
            "-m",
            "http.server",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
        ])
        .current_dir(&dir)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("python3 -m http.server");
    let up = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(50));
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    assert!(up, "http.server did not start");
    let text = std::fs::read_to_string(op.sot.join("agents.toml"))
        .unwrap()
        .replace(
            "artifacts/fleet-doctor-2.0.3.tar.gz",
            &format!("http://127.0.0.1:{port}/fleet-doctor-2.0.3.tar.gz"),
        );
    std::fs::write(op.sot.join("agents.toml"), text).unwrap();
    let o = deploy(&op, "fleet-doctor@2.0.3", &nodes, &[]);
    let o2 = deploy(&op, "fleet-doctor@2.0.3", &nodes, &[]);
    server.kill().ok();
    server.wait().ok();
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert_eq!(o2.status.code(), Some(0), "{}{}", stdout(&o2), stderr(&o2));
    let fetches = std::fs::read_to_string(&log)
        .unwrap()
        .matches("GET /fleet-doctor-2.0.3.tar.gz")
        .count();
    assert_eq!(fetches, 1, "fetched once, then from the cache");
    let cached = op.home.join(format!(
        ".cache/maestro/artifacts/sha256-{}",
        digest("fleet-doctor-2.0.3.tar.gz")
    ));
    assert!(cached.is_file(), "{}", cached.display());
    assert_eq!(get(58, "/healthz").map(|r| r.0), Some(200));
    let owner = on_node(
        58,
        &format!(
            "stat -c %U /opt/maestro/agents/{AGENT}/2.0.3 /var/lib/maestro/agents/{AGENT}/state"
        ),
    );
    assert_eq!(
        owner.split_whitespace().collect::<Vec<_>>(),
        ["root", "root"],
        "{owner}"
    );
}

#[test]
fn disable_stops_the_agent_and_keeps_its_files_and_enable_brings_it_back() {
    let nodes = [59];
    let op = agent_operator(&nodes);
    let limit = names(&nodes);
    let o = op.maestro(&["--json", "enable", AGENT, "--limit", &limit, "--yes"]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    for &n in &nodes {
        for _ in 0..7 {
            assert!(get(n, "/v1").unwrap().1.contains("2.1.0"));
        }
    }
    // Telemetry reads the deployed agent from its state file and metrics.
    let o = op.maestro(&["--json", "top", &limit, "--once"]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    let samples: Vec<serde_json::Value> = json_lines(&stdout(&o))
        .into_iter()
        .filter(|v| v["event"] == "telemetry")
        .collect();
    assert_eq!(samples.len(), 1, "{}", stdout(&o));
    for s in &samples {
        let a = &s["agents"][0];
        assert_eq!(a["agent"], AGENT, "{s}");
        assert_eq!(a["version"], "2.1.0", "{s}");
        assert_eq!(a["requests_total"].as_f64(), Some(7.0), "{s}");
    }
    let o = op.maestro(&["--json", "disable", AGENT, "--limit", &limit, "--yes"]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert!(outcomes(&stdout(&o)).iter().all(|(_, w)| w == "disabled"));
    for &n in &nodes {
        assert!(get(n, "/healthz").is_none(), "n{n} still answers");
        assert!(on_node(n, &format!("ls /opt/maestro/agents/{AGENT}")).contains("2.1.0"));
    }
    let st = status(&op, &nodes);
    assert!(
        st.iter().all(|(_, v, run, _)| v == "2.1.0" && !run),
        "{st:?}"
    );
    let o = op.maestro(&["--json", "enable", AGENT, "--limit", &limit, "--yes"]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    for &n in &nodes {
        assert_eq!(get(n, "/healthz").map(|r| r.0), Some(200));
        assert_eq!(starts(n), vec!["2.1.0", "2.1.0"], "n{n}");
    }
}

#[test]
fn the_example_artifacts_are_built_reproducibly_with_the_digests_agents_toml_records() {
    let out = tempfile::tempdir().unwrap();
    let o = std::process::Command::new("sh")
        .arg(repo().join("agents/build.sh"))
        .arg(out.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = std::fs::read_to_string(repo().join("sot/agents.toml")).unwrap();
    let mut n = 0;
    for e in std::fs::read_dir(out.path()).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        let built = std::fs::read(out.path().join(&name)).unwrap();
        let committed = std::fs::read(repo().join("sot/artifacts").join(&name)).unwrap();
        assert_eq!(
            built, committed,
            "{name}: same bytes as the committed artifact"
        );
        let sum = sha256_hex(&built);
        assert_eq!(digest(&name), sum, "{name}");
        assert!(text.contains(&sum));
        n += 1;
    }
    assert_eq!(n, 5);
}

fn sha256_hex(bytes: &[u8]) -> String {
    let o = std::process::Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            c.stdin.take().unwrap().write_all(bytes)?;
            c.wait_with_output()
        })
        .unwrap();
    String::from_utf8_lossy(&o.stdout)[..64].to_string()
}

/// The operator's SoT as a git repository (the kill switch commits).
pub(crate) fn commit_sot(op: &Operator) {
    git(&op.sot, &["init", "-q"]);
    git(&op.sot, &["add", "-A"]);
    git(
        &op.sot,
        &[
            "-c",
            "user.name=Agent Tester",
            "-c",
            "user.email=agents@example.org",
            "commit",
            "-qm",
            "test SoT",
        ],
    );
}

#[test]
fn the_kill_switch_stops_a_deployed_agent_and_holds_back_deploys_until_released() {
    let nodes = [99];
    let op = agent_operator(&nodes);
    commit_sot(&op);
    let o = deploy(&op, "fleet-doctor@2.0.3", &nodes, &[]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert_eq!(get(99, "/healthz").map(|r| r.0), Some(200));
    let o = op.maestro(&[
        "kill",
        AGENT,
        "--limit",
        "n99",
        "--reason",
        "answers with customer data",
        "--actor",
        "Sam Oncall <sam@example.org>",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert!(get(99, "/healthz").is_none(), "the agent still answers");
    let pids = on_node(
        99,
        &format!("grep -l 'MAESTRO_AGENT={AGENT}' /proc/[0-9]*/environ 2>/dev/null | wc -l"),
    );
    // Nodes share one PID namespace: count only the processes of this node's agent.
    let pidfile = on_node(
        99,
        &format!("cat /run/maestro/agent-{AGENT}.pid 2>/dev/null"),
    );
    assert!(
        pidfile.trim().is_empty(),
        "pidfile left: {pidfile} ({pids} environ matches)"
    );
    // A deploy (of any version) is refused while it is engaged, naming who and why.
    let o = op.maestro(&["deploy", "fleet-doctor@2.1.0", "--limit", "n99", "--yes"]);
    assert_eq!(o.status.code(), Some(4), "{}{}", stdout(&o), stderr(&o));
    assert!(
        stderr(&o).contains("Sam Oncall") && stderr(&o).contains("answers with customer data"),
        "{}",
        stderr(&o)
    );
    let o = op.maestro(&["enable", AGENT, "--limit", "n99", "--yes"]);
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    // Released: nothing restarts by itself; the next deploy works.
    let o = op.maestro(&[
        "kill",
        "--release",
        AGENT,
        "--reason",
        "fixed",
        "--actor",
        "Sam Oncall <sam@example.org>",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert!(
        get(99, "/healthz").is_none(),
        "a release must not restart the agent"
    );
    let o = deploy(&op, "fleet-doctor@2.1.0", &nodes, &[]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert!(get(99, "/v1").unwrap().1.contains("2.1.0"));
}
