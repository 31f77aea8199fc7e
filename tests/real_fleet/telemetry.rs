//! Telemetry against real OpenSSH nodes: `maestro top --once` on 24 nodes
//! checked against `/proc` (the nodes share this machine's kernel), an
//! agent's request count as the test made it, no sampler left on a node
//! after the controller dies, and a real Prometheus scraping
//! `maestro metrics serve`.
//!
//! Nodes: n01–n10, n25, n27–n39 read only; n85 runs a stand-in agent, n86 the
//! disconnect test, n87–n88 the Prometheus test.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::fleet::{Operator, fleet};
use crate::common::{stderr, stdout};

fn json_lines(out: &str) -> Vec<Value> {
    out.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

fn host_meminfo(key: &str) -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .unwrap()
        .lines()
        .find_map(|l| {
            l.strip_prefix(key)?
                .trim()
                .strip_suffix(" kB")?
                .trim()
                .parse()
                .ok()
        })
        .unwrap()
}

/// (busy, total) jiffies from the host's /proc/stat.
fn host_cpu() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap();
    let v: Vec<u64> = stat.lines().next().unwrap()[3..]
        .split_whitespace()
        .map(|x| x.parse().unwrap())
        .collect();
    let idle = v[3] + v[4];
    let total: u64 = v[..8].iter().sum();
    (total - idle, total)
}

fn host_uptime() -> f64 {
    std::fs::read_to_string("/proc/uptime")
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn top_once_on_24_nodes_reports_what_their_proc_says() {
    // 24 nodes no other test stops, kills or rekeys (n11-n16 are broken on
    // purpose by the exec tests, n24/n26 by the ssh tests).
    let nodes: Vec<usize> = (1..=10).chain([25]).chain(27..=39).collect();
    assert_eq!(nodes.len(), 24);
    let op = Operator::new(&nodes);
    let (busy0, total0) = host_cpu();
    let up0 = host_uptime();
    let o = op.maestro(&["--json", "top", "all", "--once"]);
    let (busy1, total1) = host_cpu();
    let up1 = host_uptime();
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    let lines = json_lines(&stdout(&o));
    assert_eq!(lines.len(), 24, "one object per node:\n{}", stdout(&o));
    let mem_total = host_meminfo("MemTotal:");
    let mem_available = host_meminfo("MemAvailable:") as f64;
    let host_pct = 100.0 * (busy1 - busy0) as f64 / (total1 - total0).max(1) as f64;
    for (v, i) in lines.iter().zip(&nodes) {
        let node = format!("n{i:02}");
        assert_eq!(v["node"], node.as_str());
        assert_eq!(v["freshness"], "fresh", "{v}");
        assert_eq!(
            v["mem_total_kb"], mem_total,
            "{node}: MemTotal is the host's: {v}"
        );
        let avail = v["mem_available_kb"].as_f64().unwrap();
        assert!(
            (avail - mem_available).abs() < 0.15 * mem_available,
            "{node}: MemAvailable {avail} kB vs {mem_available} kB in /proc/meminfo"
        );
        let cpu = v["cpu_pct"]
            .as_f64()
            .unwrap_or_else(|| panic!("{node}: no CPU: {v}"));
        assert!((0.0..=100.0).contains(&cpu), "{node}: {cpu}");
        // The node's last interval lies inside the test's window; on a
        // shared 2-core machine they differ, but not by this much.
        assert!(
            (cpu - host_pct).abs() < 45.0,
            "{node}: CPU {cpu:.1}% vs the host's {host_pct:.1}% over the same time"
        );
        let uptime = v["uptime_s"].as_f64().unwrap();
        assert!(
            uptime >= up0 - 0.5 && uptime <= up1 + 0.5,
            "{node}: uptime {uptime} outside [{up0}, {up1}]"
        );
        assert!(v["load"][0].as_f64().is_some(), "{v}");
        assert!(v["root_fs_used_pct"].as_f64().is_some(), "{v}");
        assert_eq!(
            v["agents"].as_array().unwrap().len(),
            0,
            "no agents on {node}"
        );
    }
    // The table too.
    let o = op.maestro(&["top", "n01,n02", "--once"]);
    let out = stdout(&o);
    assert!(out.starts_with("NODE"), "{out}");
    assert!(
        out.lines().filter(|l| l.ends_with("fresh")).count() == 2,
        "{out}"
    );
}

/// A stand-in agent per the node-side contract: a python3 HTTP service on
/// the node's address that counts requests, writes its pidfile (PID and
/// start time) and runs with MAESTRO_AGENT in its environment.
const AGENT: &str = r#"
import http.server, os, sys
name, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
os.setsid()
n = {"requests": 0, "errors": 0}
buckets = [0.005, 0.05, 0.5, float("inf")]
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/metrics":
            lines = ['agent_requests_total{version="1.0.0"} %d' % n["requests"],
                     'agent_errors_total{version="1.0.0"} %d' % n["errors"],
                     'agent_starts_total 1']
            for b in buckets:
                le = "+Inf" if b == float("inf") else repr(b)
                lines.append('agent_request_duration_seconds_bucket{le="%s",version="1.0.0"} %d' % (le, n["requests"]))
            body = ("\n".join(lines) + "\n").encode()
        else:
            n["requests"] += 1
            if self.path == "/fail":
                n["errors"] += 1
            body = b"ok\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
srv = http.server.HTTPServer((host, port), H)
start = open("/proc/self/stat").read().rsplit(") ", 1)[1].split()[19]
os.makedirs("/run/maestro", exist_ok=True)
open("/run/maestro/agent-%s.pid" % name, "w").write("%d\n%s\n" % (os.getpid(), start))
srv.serve_forever()
"#;

/// Start the stand-in agent on node `i`; returns its PID.
fn start_agent(i: usize, name: &str, port: u16) -> u32 {
    let f = fleet();
    let node = format!("n{i:02}");
    let host = f.address(i);
    let dir = format!("/var/lib/maestro/agents/{name}");
    let state = format!(
        "agent={name}\nversion=1.0.0\ndigest={}\nsince=1\nprevious=\nhost={host}\nport={port}\nmetrics=/metrics\npidfile=/run/maestro/agent-{name}.pid\nenabled=1\n",
        "ab".repeat(32)
    );
    let script = format!(
        "mkdir -p {dir} /run/maestro && printf '%s' \"$1\" > {dir}/agent.py && printf '%s' \"$2\" > {dir}/state && \
         rm -f /run/maestro/agent-{name}.pid && \
         (MAESTRO_AGENT={name} python3 {dir}/agent.py {name} {host} {port} </dev/null >/dev/null 2>&1 &) && \
         for _ in $(seq 50); do [ -s /run/maestro/agent-{name}.pid ] && break; sleep 0.1; done; head -1 /run/maestro/agent-{name}.pid"
    );
    let o = f.node_exec(&node, &["sh", "-c", &script, "sh", AGENT, &state]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout)
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("no pid: {}", String::from_utf8_lossy(&o.stdout)))
}

fn stop_pid(pid: u32) {
    let _ = Command::new("kill").arg(pid.to_string()).status();
}

fn http_get(addr: &str, path: &str) -> String {
    http_get_with(addr, path, "")
}

fn http_get_with(addr: &str, path: &str, headers: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n{headers}\r\n").unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    body
}

#[test]
fn agent_rows_count_the_requests_the_test_sent() {
    let f = fleet();
    let port = 18085;
    let pid = start_agent(85, "echo", port);
    let addr = format!("{}:{port}", f.address(85));
    for _ in 0..17 {
        assert!(http_get(&addr, "/").contains("200"));
    }
    for _ in 0..3 {
        http_get(&addr, "/fail");
    }
    let op = Operator::new(&[85]);
    let o = op.maestro(&["--json", "top", "n85", "--once"]);
    stop_pid(pid);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    let v = &json_lines(&stdout(&o))[0];
    let agents = v["agents"].as_array().unwrap();
    assert_eq!(agents.len(), 1, "{v}");
    let a = &agents[0];
    assert_eq!(a["agent"], "echo");
    assert_eq!(a["version"], "1.0.0");
    assert_eq!(a["pid"], pid);
    assert_eq!(a["running"], true, "{a}");
    assert_eq!(a["requests_total"], 20.0, "17 + 3 requests: {a}");
    assert_eq!(a["errors_total"], 3.0, "{a}");
    assert_eq!(
        a["requests_per_s"], 0.0,
        "nothing between the two readings: {a}"
    );
    assert!(a["rss_bytes"].as_u64().unwrap() > 1 << 20, "{a}");
    assert!(a["metrics_error"].is_null(), "{a}");

    // The agent stopped: the row says so instead of repeating old numbers.
    std::thread::sleep(Duration::from_millis(300));
    let o = op.maestro(&["--json", "top", "n85", "--once"]);
    let v = &json_lines(&stdout(&o))[0];
    let a = &v["agents"][0];
    assert_eq!(a["running"], false, "{a}");
    // Gone, or a zombie until whoever inherited it reaps it.
    assert!(a["process"] == "gone" || a["process"] == "zombie", "{a}");
    assert!(a["requests_total"].is_null(), "{a}");
}

/// PIDs of the processes in node `i`'s mount namespace whose command line
/// is the sampler's.
fn samplers_on(i: usize) -> Vec<u32> {
    let f = fleet();
    let o = f.node_exec(&format!("n{i:02}"), &["readlink", "/proc/self/ns/mnt"]);
    let ns = String::from_utf8_lossy(&o.stdout).trim().to_string();
    assert!(ns.starts_with("mnt:"), "{ns}");
    let mut pids = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let same_ns =
            std::fs::read_link(e.path().join("ns/mnt")).is_ok_and(|l| l.to_string_lossy() == ns);
        let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        if same_ns && String::from_utf8_lossy(&cmdline).contains("maestro telemetry sampler") {
            pids.push(pid);
        }
    }
    pids
}

#[test]
fn no_sampler_is_left_on_a_node_after_the_controller_dies() {
    let op = Operator::new(&[86]);
    for (how, signal) in [("killed", "KILL"), ("interrupted", "INT")] {
        let mut child = op.spawn(&["--json", "top", "n86"]);
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = lines.next().expect("a sample").unwrap();
        assert!(first.contains("\"node\":\"n86\""), "{first}");
        let samplers = samplers_on(86);
        assert_eq!(
            samplers.len(),
            1,
            "one sampler while streaming: {samplers:?}"
        );
        Command::new("kill")
            .args([&format!("-{signal}"), &child.id().to_string()])
            .status()
            .unwrap();
        child.wait().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !samplers_on(86).is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        assert_eq!(
            samplers_on(86),
            Vec::<u32>::new(),
            "the sampler outlived a controller that was {how}"
        );
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn prometheus_scrapes_metrics_serve() {
    assert!(
        Command::new("sh")
            .args(["-c", "command -v prometheus && command -v promtool"])
            .status()
            .unwrap()
            .success(),
        "needs Debian's prometheus package (apt-get install prometheus; .ci/run does this)"
    );
    let f = fleet();
    let agent = start_agent(87, "echo", 18087);
    let op = Operator::new(&[87, 88]);
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut serve = op.spawn(&["metrics", "serve", "all", "--listen", &listen]);
    let mut err = BufReader::new(serve.stderr.take().unwrap());
    let mut line = String::new();
    err.read_line(&mut line).unwrap();
    assert!(line.contains("serving"), "{line}");

    // The exposition, once the nodes reported, passes promtool.
    let deadline = Instant::now() + Duration::from_secs(20);
    let body = loop {
        let r = http_get(&listen, "/metrics");
        if r.contains("maestro_node_cpu_percent{") && r.contains("maestro_agent_requests_total{") {
            break r;
        }
        assert!(Instant::now() < deadline, "no CPU series in:\n{r}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    let text = body.split_once("\r\n\r\n").unwrap().1.to_string();
    assert!(
        text.contains(
            "maestro_agent_up{node=\"n87\",region=\"eu-west\",agent=\"echo\",version=\"1.0.0\"} 1"
        ),
        "{text}"
    );
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let checked = promtool.wait_with_output().unwrap();
    assert!(
        checked.status.success(),
        "promtool check metrics: {}{}\n{text}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );

    // OpenMetrics for a client that asks for it, as Prometheus does.
    let om = http_get_with(
        &listen,
        "/metrics",
        "Accept: application/openmetrics-text;version=1.0.0\r\n",
    );
    assert!(om.contains("application/openmetrics-text"), "{om}");
    assert!(
        om.contains("# TYPE maestro_agent_requests counter\n"),
        "{om}"
    );
    assert!(om.ends_with("# EOF\n"), "{om}");

    // A real Prometheus scrapes it and answers for n88's CPU.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: maestro\n    static_configs:\n      - targets: ['{listen}']\n"
        ),
    )
    .unwrap();
    let web = format!("127.0.0.1:{}", free_port());
    let mut prometheus = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address={web}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("prometheus.log")).unwrap())
        .spawn()
        .unwrap();
    let query = "/api/v1/query?query=maestro_node_cpu_percent%7Bnode%3D%22n88%22%7D";
    let deadline = Instant::now() + Duration::from_secs(60);
    let answer = loop {
        let r = TcpStream::connect(&web).ok().map(|_| http_get(&web, query));
        if let Some(r) = r.as_ref().filter(|r| r.contains("\"node\":\"n88\"")) {
            break r.clone();
        }
        if Instant::now() > deadline {
            let log = std::fs::read_to_string(dir.path().join("prometheus.log")).unwrap();
            stop_pid(prometheus.id());
            stop_pid(serve.id());
            stop_pid(agent);
            panic!("Prometheus never had n88's CPU: {r:?}\n{log}");
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    stop_pid(prometheus.id());
    stop_pid(serve.id());
    stop_pid(agent);
    prometheus.wait().unwrap();
    serve.wait().unwrap();
    let v: Value = serde_json::from_str(answer.split_once("\r\n\r\n").unwrap().1).unwrap();
    assert_eq!(v["status"], "success", "{v}");
    let series = &v["data"]["result"][0];
    assert_eq!(series["metric"]["region"], "us-east", "{v}");
    assert_eq!(series["metric"]["job"], "maestro");
    let cpu: f64 = series["value"][1].as_str().unwrap().parse().unwrap();
    assert!((0.0..=100.0).contains(&cpu), "{v}");
    let _ = f;
}
