//! The parser against hostile input, the controller's arithmetic, and the
//! sampler itself run by the local `/bin/sh` (a fake agent directory and a
//! fake `nvidia-smi`), down to what it leaves behind.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::collect::sampler_script;
use super::parse::{MAX_BODY, Parsed, StreamParser, parse_exposition};
use super::sample::{NodeSample, Process, Scrape};
use super::state::{
    Freshness, TelemetryEvent, TelemetryState, bucket_delta, counter_rate, histogram_quantile,
};

const NONCE: &str = "0123abcd";

fn samples(input: &[u8]) -> Vec<NodeSample> {
    let mut p = StreamParser::new(NONCE);
    let mut out = Vec::new();
    p.feed(input, &mut out);
    out.into_iter()
        .filter_map(|p| match p {
            Parsed::Sample(s) => Some(*s),
            Parsed::Header(_) => None,
        })
        .collect()
}

const GOOD: &str = "H 1 100 4096 curl
S 1 100.50
C 10 0 5 80 5 0 0 0
L 0.50 0.40 0.30
M 1000 250
F 2000 500
N eth0 1000 2000
G 0, 45, 1000, 8000, 60, 120.5
G 1, [N/A], [N/A], 8000, [N/A], [Not Supported]
A echo 1 1.0.0 abcdef 42 S 30 20 100
B echo
# TYPE agent_requests_total counter
agent_requests_total{version=\"1.0.0\"} 7
agent_errors_total{version=\"1.0.0\"} 1
agent_request_duration_seconds_bucket{le=\"0.1\",version=\"1.0.0\"} 5
agent_request_duration_seconds_bucket{le=\"+Inf\",version=\"1.0.0\"} 7

0123abcd 0
E 1
";

#[test]
fn a_whole_sample_parses() {
    let s = samples(GOOD.as_bytes());
    assert_eq!(s.len(), 1);
    let s = &s[0];
    assert_eq!(s.seq, 1);
    assert_eq!(s.uptime, Some(100.5));
    assert_eq!(s.cpu.unwrap().busy(), 15);
    assert_eq!(s.memory.unwrap().available_kb, Some(250));
    assert_eq!(s.root_fs.unwrap().used_kb, 500);
    assert_eq!(s.net[0].interface, "eth0");
    assert_eq!(s.gpus.len(), 2);
    assert_eq!(s.gpus[0].utilization_pct, Some(45.0));
    assert_eq!(s.gpus[1].utilization_pct, None, "[N/A] is missing, not 0");
    assert_eq!(s.gpus[1].power_w, None);
    let a = &s.agents[0];
    assert_eq!(a.version.as_deref(), Some("1.0.0"));
    assert_eq!(
        a.process,
        Process::Running {
            pid: 42,
            letter: 'S',
            cpu_ticks: 50,
            rss_bytes: 100 * 4096
        }
    );
    let Scrape::Ok { metrics } = &a.scrape else {
        panic!("{:?}", a.scrape)
    };
    assert_eq!(metrics.requests, Some(7.0));
    assert_eq!(metrics.errors, Some(1.0));
    assert_eq!(metrics.buckets, vec![(0.1, 5.0), (f64::INFINITY, 7.0)]);
    assert_eq!(s.rejected_lines, 0);
}

#[test]
fn any_split_of_the_stream_gives_the_same_sample() {
    let whole = samples(GOOD.as_bytes());
    for chunk in [1, 2, 3, 7, 64] {
        let mut p = StreamParser::new(NONCE);
        let mut out = Vec::new();
        for piece in GOOD.as_bytes().chunks(chunk) {
            p.feed(piece, &mut out);
        }
        let got: Vec<_> = out
            .into_iter()
            .filter_map(|p| match p {
                Parsed::Sample(s) => Some(*s),
                _ => None,
            })
            .collect();
        assert_eq!(got, whole, "chunks of {chunk}");
    }
}

#[test]
fn missing_and_broken_fields_are_missing_not_zero() {
    let s = samples(b"S 2\nC 1 2\nM 1000\nL x y z\nN eth0 12\nQ what\nE 2\n");
    let s = &s[0];
    assert_eq!(s.uptime, None);
    assert_eq!(s.cpu, None, "a short /proc/stat line gives no CPU");
    assert_eq!(s.memory.unwrap().available_kb, None, "no MemAvailable");
    assert_eq!(s.load, None);
    assert!(s.net.is_empty());
    assert_eq!(s.rejected_lines, 4);
}

#[test]
fn ten_megabytes_of_junk_yield_nothing_and_cost_little() {
    let mut junk = Vec::with_capacity(10 << 20);
    let mut x: u32 = 12345;
    while junk.len() < 10 << 20 {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
        junk.push((x >> 16) as u8);
    }
    let started = Instant::now();
    let mut p = StreamParser::new(NONCE);
    let mut out = Vec::new();
    for chunk in junk.chunks(32 * 1024) {
        p.feed(chunk, &mut out);
    }
    // Then a good sample still parses: junk never wedges the stream.
    p.feed(b"\nS 9 1.0\nL 1 2 3\nE 9\n", &mut out);
    assert_eq!(out.len(), 1, "only the good sample");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn a_huge_metrics_body_is_refused_and_the_sample_kept() {
    let mut input = b"S 1 1.0\nA big 1 1.0 - 7 S 1 1 1\nB big\n".to_vec();
    let line = vec![b'a'; 1000];
    while input.len() < 10 << 20 {
        input.extend_from_slice(&line);
        input.push(b'\n');
    }
    // And one line longer than a body may be, with no newline for a long time.
    input.extend(std::iter::repeat_n(b'z', 3 << 20));
    input.extend_from_slice(format!("\n\n{NONCE} 0\nL 1 1 1\nE 1\n").as_bytes());
    let s = samples(&input);
    assert_eq!(s.len(), 1);
    assert!(s[0].load.is_some(), "records after the body still count");
    match &s[0].agents[0].scrape {
        Scrape::Failed { error } => assert!(error.contains("more than 1 MiB"), "{error}"),
        other => panic!("{other:?}"),
    }
    let _ = MAX_BODY;
}

#[test]
fn garbage_instead_of_metrics_is_an_error_not_zeroes() {
    let input = format!(
        "S 1 1.0\nA a 1 1.0 - 7 S 1 1 1\nB a\n<html>nope</html>\n\n{NONCE} 0\nA b 1 1.0 - 8 S 1 1 1\nB b\n\n{NONCE} 22\nE 1\n"
    );
    let s = samples(input.as_bytes());
    match &s[0].agents[0].scrape {
        Scrape::Failed { error } => assert!(error.contains("not Prometheus text"), "{error}"),
        other => panic!("{other:?}"),
    }
    match &s[0].agents[1].scrape {
        Scrape::Failed { error } => assert!(error.contains("did not answer"), "{error}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_body_cannot_forge_records_or_end_itself_without_the_nonce() {
    let input = "S 1 1.0\nA a 1 1.0 - 7 S 1 1 1\nB a\nE 1\nS 2 2.0\n00000000 0\nagent_requests_total 3\n\n0123abcd 0\nE 1\n";
    let s = samples(input.as_bytes());
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].seq, 1);
    assert_eq!(s[0].uptime, Some(1.0), "the forged `S 2` was body text");
    let Scrape::Ok { metrics } = &s[0].agents[0].scrape else {
        panic!()
    };
    assert_eq!(metrics.requests, Some(3.0));
}

#[test]
fn negative_and_nan_counters_are_refused() {
    let m = parse_exposition(
        "agent_requests_total -5\nagent_errors_total NaN\nagent_starts_total 2\nagent_request_duration_seconds_bucket{le=\"0.5\"} -1\n",
    );
    assert_eq!(m.requests, None);
    assert_eq!(m.errors, None);
    assert_eq!(m.starts, Some(2.0));
    assert!(m.buckets.is_empty());
    assert_eq!(m.rejected_lines, 3);
}

#[test]
fn exposition_labels_timestamps_and_several_versions() {
    let m = parse_exposition(
        "# HELP x\nagent_requests_total{version=\"1\",path=\"/a,}\\\"b\"} 3 1700000000000\n\
         agent_requests_total{version=\"2\"} 4\n\
         agent_request_duration_seconds_bucket{le=\"1\",version=\"1\"} 1\n\
         agent_request_duration_seconds_bucket{version=\"2\",le=\"1\"} 2\n\
         agent_request_duration_seconds_bucket{le=\"+Inf\"} 5\n\
         other_metric{a=\"b\"} 9\n\
         broken{ 1\n",
    );
    assert_eq!(m.requests, Some(7.0), "summed over versions");
    assert_eq!(m.buckets, vec![(1.0, 3.0), (f64::INFINITY, 5.0)]);
    assert_eq!(m.rejected_lines, 1);
}

#[test]
fn counter_resets_give_the_count_since_the_reset() {
    assert_eq!(counter_rate(Some(10.0), Some(15.0), 1.0), Some(5.0));
    assert_eq!(counter_rate(Some(100.0), Some(3.0), 1.0), Some(3.0));
    assert_eq!(counter_rate(None, Some(3.0), 1.0), None);
    assert_eq!(counter_rate(Some(1.0), Some(3.0), 0.0), None);
    // Histograms too: after a reset the new buckets alone.
    let before = [(0.1, 10.0), (f64::INFINITY, 20.0)];
    let after = [(0.1, 1.0), (f64::INFINITY, 2.0)];
    assert_eq!(bucket_delta(&before, &after), after.to_vec());
}

#[test]
fn quantiles_interpolate_inside_buckets() {
    let b = [
        (0.1, 50.0),
        (0.5, 90.0),
        (1.0, 100.0),
        (f64::INFINITY, 100.0),
    ];
    assert!((histogram_quantile(0.5, &b).unwrap() - 0.1).abs() < 1e-9);
    assert!((histogram_quantile(0.95, &b).unwrap() - 0.75).abs() < 1e-9);
    assert_eq!(histogram_quantile(0.5, &[(f64::INFINITY, 0.0)]), None);
    // Everything above the last bound: its lower edge, as Prometheus says.
    assert_eq!(
        histogram_quantile(0.99, &[(0.1, 0.0), (f64::INFINITY, 10.0)]),
        Some(0.1)
    );
}

fn sample_event(node: &str, seq: u64, busy: u64, total: u64, requests: f64) -> TelemetryEvent {
    let mut text = format!(
        "S {seq} {seq}.0\nC {busy} 0 0 {} 0 0 0 0\nM 1000 400\nA echo 1 1.0 - 5 S {} 0 10\nB echo\n",
        total - busy,
        seq * 10
    );
    text.push_str(&format!(
        "agent_requests_total {requests}\nagent_request_duration_seconds_bucket{{le=\"0.1\"}} {requests}\nagent_request_duration_seconds_bucket{{le=\"+Inf\"}} {requests}\n\n{NONCE} 0\nE {seq}\n"
    ));
    let s = samples(text.as_bytes()).remove(0);
    TelemetryEvent::Sample {
        node: node.into(),
        sample: Box::new(s),
    }
}

#[test]
fn the_state_turns_samples_into_rates_gaps_and_staleness() {
    let interval = Duration::from_secs(1);
    let mut state = TelemetryState::new(&["n1".into(), "n2".into()], interval, 5);
    let t0 = Instant::now();
    state.apply(sample_event("n1", 1, 10, 100, 0.0), t0);
    state.tick();
    state.apply(sample_event("n1", 2, 60, 200, 30.0), t0 + interval);
    state.tick();
    // Interval 3: nothing from n1.
    state.tick();
    state.apply(sample_event("n1", 4, 60, 300, 10.0), t0 + 3 * interval);
    state.tick();
    let n1 = state.node("n1").unwrap();
    let cpu: Vec<Option<f32>> = n1
        .history
        .iter()
        .map(|p| p.and_then(|p| p.cpu_pct))
        .collect();
    assert_eq!(cpu, vec![None, Some(50.0), None, Some(0.0)]);
    assert!(n1.history.iter().nth(2).unwrap().is_none(), "a gap");
    assert_eq!(n1.point.unwrap().mem_used_pct, Some(60.0));
    let echo = &n1.agents["echo"];
    assert_eq!(
        echo.point.requests_per_s,
        Some(5.0),
        "counter reset 30 -> 10 over 2 s"
    );
    assert_eq!(
        echo.point.cpu_pct,
        Some(100.0 * 0.2 / 2.0),
        "20 ticks in 2 s at 100 Hz"
    );
    assert_eq!(state.freshness(n1, t0 + 4 * interval), Freshness::Fresh);
    assert_eq!(state.freshness(n1, t0 + 7 * interval), Freshness::Stale);
    assert_eq!(
        state.freshness(state.node("n2").unwrap(), t0),
        Freshness::Never
    );
    // The ring keeps its capacity.
    for _ in 0..10 {
        state.tick();
    }
    assert_eq!(state.node("n1").unwrap().history.len(), 5);
}

/// The sampler under the local /bin/sh, as the node would run it.
struct LocalSampler {
    child: std::process::Child,
    out: BufReader<std::process::ChildStdout>,
    parser: StreamParser,
}

impl LocalSampler {
    fn start(root: &std::path::Path, path: &str) -> LocalSampler {
        let script = sampler_script(Duration::from_millis(200), root.to_str().unwrap());
        let mut child = Command::new("/bin/sh")
            .arg("-c")
            .arg(script)
            .env("PATH", path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        writeln!(child.stdin.as_mut().unwrap(), "{NONCE}").unwrap();
        let out = BufReader::new(child.stdout.take().unwrap());
        LocalSampler {
            child,
            out,
            parser: StreamParser::new(NONCE),
        }
    }

    fn sample(&mut self) -> NodeSample {
        writeln!(self.child.stdin.as_mut().unwrap()).unwrap();
        let mut parsed = Vec::new();
        loop {
            let mut line = Vec::new();
            let n = self.out.read_until(b'\n', &mut line).unwrap();
            assert!(n > 0, "the sampler ended");
            self.parser.feed(&line, &mut parsed);
            if let Some(Parsed::Sample(s)) = parsed
                .iter()
                .find(|p| matches!(p, Parsed::Sample(_)))
                .cloned()
            {
                return *s;
            }
        }
    }
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.rsplit(") ").next().unwrap_or("").starts_with('Z'))
        .unwrap_or(false)
}

#[test]
fn the_sampler_reads_proc_agents_and_gpus_and_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let bin = dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    // A fake nvidia-smi: one GPU fine, one [N/A]; it records its PID.
    let pidfile = dir.path().join("smi.pid");
    std::fs::write(
        bin.join("nvidia-smi"),
        format!(
            "#!/bin/sh\necho $$ > {}\nwhile :; do echo '0, 37, 100, 1000, 50, 70.1'; echo '1, [N/A], [N/A], 1000, [N/A], [N/A]'; sleep 0.1; done\n",
            pidfile.display()
        ),
    )
    .unwrap();
    std::os::unix::fs::PermissionsExt::set_mode(
        &mut std::fs::metadata(bin.join("nvidia-smi"))
            .unwrap()
            .permissions(),
        0o755,
    );
    Command::new("chmod")
        .arg("755")
        .arg(bin.join("nvidia-smi"))
        .status()
        .unwrap();
    // An agent whose pidfile names this test process (it is running).
    let me = std::process::id();
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let start = stat
        .rsplit(") ")
        .next()
        .unwrap()
        .split(' ')
        .nth(19)
        .unwrap();
    let agent = root.join("var/lib/maestro/agents/echo");
    std::fs::create_dir_all(&agent).unwrap();
    std::fs::create_dir_all(root.join("run/maestro")).unwrap();
    std::fs::write(
        root.join("run/maestro/agent-echo.pid"),
        format!("{me}\n{start}\n"),
    )
    .unwrap();
    std::fs::write(
        agent.join("state"),
        "agent=echo\nversion=1.2.3\ndigest=abc\nhost=127.0.0.1\nport=\nmetrics=\npidfile=/run/maestro/agent-echo.pid\nenabled=1\n",
    )
    .unwrap();
    // A second agent with hostile values and a dead pid.
    let evil = root.join("var/lib/maestro/agents/evil");
    std::fs::create_dir_all(&evil).unwrap();
    std::fs::write(
        evil.join("state"),
        "agent=evil\nversion=$(reboot)\nhost=127.0.0.1;reboot\nport=1\nmetrics=/m\npidfile=/run/maestro/none.pid\n",
    )
    .unwrap();

    let path = format!("{}:/usr/bin:/bin", bin.display());
    let mut sampler = LocalSampler::start(&root, &path);
    let first = sampler.sample();
    std::thread::sleep(Duration::from_millis(300));
    let second = sampler.sample();
    assert!(first.cpu.is_some() && first.memory.is_some() && first.load.is_some());
    assert!(first.root_fs.is_some(), "the first sample has the root fs");
    assert!(second.root_fs.is_none(), "then only every 30th");
    assert!(second.uptime > first.uptime);
    let echo = second.agents.iter().find(|a| a.name == "echo").unwrap();
    assert_eq!(echo.version.as_deref(), Some("1.2.3"));
    assert!(
        matches!(echo.process, Process::Running { pid, .. } if pid == me),
        "{:?}",
        echo.process
    );
    assert_eq!(echo.scrape, Scrape::NotScraped, "no metrics endpoint");
    let evil = second.agents.iter().find(|a| a.name == "evil").unwrap();
    assert_eq!(evil.version, None, "a version that is not one is dropped");
    assert_eq!(evil.process, Process::NoPidfile);
    assert_eq!(evil.scrape, Scrape::NotScraped);
    // nvidia-smi runs on its own clock: a sample may catch one GPU's line
    // between two loops, so look at a few.
    let mut gpus = second.gpus;
    for _ in 0..10 {
        if gpus.len() == 2 {
            break;
        }
        std::thread::sleep(Duration::from_millis(150));
        gpus = sampler.sample().gpus;
    }
    assert_eq!(gpus.len(), 2, "{gpus:?}");
    assert_eq!(gpus[0].utilization_pct, Some(37.0));
    assert_eq!(gpus[1].utilization_pct, None);

    // End of stdin: the sampler exits and its nvidia-smi with it.
    let smi: u32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(alive(smi));
    let sh = sampler.child.id();
    drop(sampler.child.stdin.take());
    let status = sampler.child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let deadline = Instant::now() + Duration::from_secs(3);
    while alive(smi) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!alive(smi), "nvidia-smi {smi} outlived the sampler {sh}");
}

#[test]
fn a_hung_nvidia_smi_shows_as_missing_gpus_not_old_values() {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let pidfile = dir.path().join("smi.pid");
    // One loop's output, then it hangs (the same process: exec).
    std::fs::write(
        bin.join("nvidia-smi"),
        format!(
            "#!/bin/sh\necho $$ > {}\necho '0, 99, 1, 2, 3, 4'\nexec sleep 1000\n",
            pidfile.display()
        ),
    )
    .unwrap();
    Command::new("chmod")
        .arg("755")
        .arg(bin.join("nvidia-smi"))
        .status()
        .unwrap();
    let path = format!("{}:/usr/bin:/bin", bin.display());
    let mut sampler = LocalSampler::start(&dir.path().join("none"), &path);
    let mut seen = Vec::new();
    for _ in 0..6 {
        std::thread::sleep(Duration::from_millis(100));
        seen.push(sampler.sample().gpus.len());
    }
    assert!(
        seen.iter().sum::<usize>() <= 2,
        "reported at most twice: {seen:?}"
    );
    assert_eq!(&seen[3..], &[0, 0, 0], "then missing: {seen:?}");
    let smi: u32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    drop(sampler.child.stdin.take());
    sampler.child.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(3);
    while alive(smi) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!alive(smi), "the hung nvidia-smi {smi} was left running");
}

#[test]
fn the_summary_keeps_gaps_sums_agents_and_aggregates_fresh_nodes_only() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("maestro.toml"), "[maestro]\nname = \"t\"\n").unwrap();
    std::fs::write(dir.path().join("groups.toml"), "[group.g]\n").unwrap();
    std::fs::write(
        dir.path().join("nodes.toml"),
        "[node.n1]\naddress = \"10.0.0.1\"\ngroups = [\"g\"]\n\n[node.n2]\naddress = \"10.0.0.2\"\ngroups = [\"g\"]\n",
    )
    .unwrap();
    let sot = crate::sot::load(dir.path()).unwrap();
    let interval = Duration::from_secs(1);
    let mut state = TelemetryState::new(&["n1".into(), "n2".into()], interval, 100);
    let t0 = Instant::now();
    state.apply(sample_event("n1", 1, 10, 100, 0.0), t0);
    state.tick();
    state.apply(sample_event("n1", 2, 60, 200, 30.0), t0 + interval);
    state.tick();
    state.tick();
    state.apply(sample_event("n1", 4, 60, 300, 40.0), t0 + 3 * interval);
    state.tick();
    let s = super::summary::summarize(&state, &sot, t0 + 3 * interval);
    let n1 = &s.nodes[0];
    assert_eq!(n1.cpu, vec![None, Some(50.0), None, Some(0.0)]);
    assert_eq!(
        n1.requests,
        vec![None, Some(30.0), None, Some(5.0)],
        "30 in 1 s, then 10 in 2 s"
    );
    assert!(!n1.has_gpu);
    assert_eq!(n1.agents, vec!["echo 1.0".to_string()]);
    assert_eq!(s.nodes[1].freshness, Some(Freshness::Never));
    assert!(s.nodes[1].cpu.iter().all(Option::is_none));
    let g = &s.groups[0];
    assert_eq!((g.name.as_str(), g.nodes, g.fresh), ("g", 2, 1));
    assert_eq!(
        g.cpu_avg,
        Some(0.0),
        "the never-sampled node is not averaged in"
    );
    assert_eq!(s.agents[0].requests, Some(5.0));
}
