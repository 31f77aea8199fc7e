//! Telemetry, printed (not a timed test):
//!
//! 1. The controller path at 1 Hz for 1,000 simulated nodes over 60 s
//!    (`MAESTRO_BENCH_SECS` to change): each node's sampler records go
//!    through its own stream parser into the shared state, the state ticks
//!    once a second and the console's summary is built from it. This is a
//!    parser + state substitute for 1,000 streaming SSH nodes (the
//!    simulator caps concurrent shells at 64): SSH decryption and the
//!    channels are not in it. Printed: CPU as a share of one core, and RSS.
//! 2. The console's Telemetry view (`:top`) with 10,000 nodes, each with 45
//!    seconds of history: the summary build, then frames at 160×48 and
//!    250×70 while paging (target ≤ 5 ms per frame, release mode).
//!
//! `cargo bench --bench telemetry_view` (release), or `cargo test --bench
//! telemetry_view` for the dev profile (maestro unoptimised, its
//! dependencies optimised): there, on a 2-core machine shared with other
//! builds, 1,000 nodes took 6.7% of a core and 35 MiB RSS, the 10,000-node
//! summary 278 ms, and a frame 1.5 ms (160×48) / 2.4 ms (250×70).

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use maestro::telemetry::parse::{Parsed, StreamParser};
use maestro::telemetry::summary::summarize;
use maestro::telemetry::{TelemetryEvent, TelemetryState};
use maestro::tui::app::{App, ExecPolicy, Info, Msg};
use ratatui::Terminal;
use ratatui::backend::TestBackend;

const NONCE: &str = "0123abcd";

/// One second of a node's sampler output (what `sampler.sh` prints).
fn record(seq: u64, i: usize, out: &mut String) {
    out.clear();
    let busy = seq * (10 + (i as u64 % 50));
    let idle = seq * 100;
    let requests = seq * (i as u64 % 7 + 1);
    let _ = write!(
        out,
        "S {seq} {}.0\nC {busy} 0 5 {idle} 5 0 0 0\nL 0.50 0.40 0.30\nM 16000000 {}\nN eth0 {} {}\n\
         A fleet-doctor 1 2.1.0 abcdef 4242 S {} 20 104857600\nB fleet-doctor\n\
         # TYPE agent_requests_total counter\nagent_requests_total{{version=\"2.1.0\"}} {requests}\n\
         agent_errors_total{{version=\"2.1.0\"}} {}\n\
         agent_request_duration_seconds_bucket{{le=\"0.05\",version=\"2.1.0\"}} {}\n\
         agent_request_duration_seconds_bucket{{le=\"0.1\",version=\"2.1.0\"}} {}\n\
         agent_request_duration_seconds_bucket{{le=\"+Inf\",version=\"2.1.0\"}} {requests}\n\n{NONCE} 0\nE {seq}\n",
        1000 + seq,
        8_000_000 - (i as u64 % 1000) * 1000,
        seq * 100_000,
        seq * 50_000,
        seq * 3,
        requests / 20,
        requests / 2,
        requests * 9 / 10,
    );
}

fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    ticks / 100.0
}

fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Feed `seconds` of samples for `names` (paced at 1 Hz when `pace`).
fn stream(
    state: &mut TelemetryState,
    names: &[String],
    seconds: u64,
    pace: bool,
    sot: Option<&maestro::sot::Sot>,
) {
    let mut parsers: Vec<StreamParser> = names.iter().map(|_| StreamParser::new(NONCE)).collect();
    let mut out = Vec::new();
    let mut text = String::new();
    for p in &mut parsers {
        p.feed(b"H 1 100 4096 curl\n", &mut out);
    }
    out.clear();
    let start = Instant::now();
    for seq in 1..=seconds {
        let now = Instant::now();
        for (i, (name, p)) in names.iter().zip(&mut parsers).enumerate() {
            record(seq, i, &mut text);
            p.feed(text.as_bytes(), &mut out);
            for parsed in out.drain(..) {
                if let Parsed::Sample(sample) = parsed {
                    state.apply(
                        TelemetryEvent::Sample {
                            node: name.clone(),
                            sample,
                        },
                        now,
                    );
                }
            }
        }
        state.tick();
        if let Some(sot) = sot {
            std::hint::black_box(summarize(state, sot, now));
        }
        if pace {
            let next = start + Duration::from_secs(seq);
            if let Some(wait) = next.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
    }
}

fn generate(dir: &Path, n: usize) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("maestro.toml"),
        "[maestro]\nname = \"bench\"\n\n[tags]\nrequired = [\"env\", \"region\"]\n",
    )
    .unwrap();
    let mut nodes = String::with_capacity(n * 200);
    for i in 0..n {
        let region = if i % 2 == 0 { "eu-west" } else { "us-east" };
        let group = ["gpu", "gateways", "batch"][i % 3];
        writeln!(
            nodes,
            "[node.node-{i:05}]\naddress = \"10.{}.{}.{}\"\ngroups = [\"{group}\"]\n\
             tags = {{ env = \"prod\", region = \"{region}\", role = \"inference\" }}\n",
            i / 65536,
            (i / 256) % 256,
            i % 256,
        )
        .unwrap();
    }
    std::fs::write(dir.join("nodes.toml"), nodes).unwrap();
    std::fs::write(
        dir.join("groups.toml"),
        "[group.gpu]\n\n[group.gateways]\n\n[group.batch]\n",
    )
    .unwrap();
}

fn key(code: KeyCode) -> KeyEvent {
    KeyEvent::new(code, KeyModifiers::NONE)
}

fn main() {
    // 1. 1,000 nodes at 1 Hz.
    let seconds: u64 = std::env::var("MAESTRO_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let tmp = tempfile::tempdir().unwrap();
    let small = tmp.path().join("sot1k");
    generate(&small, 1000);
    let sot1k = maestro::sot::load(&small).unwrap();
    let names: Vec<String> = sot1k.nodes.iter().map(|n| n.name.clone()).collect();
    let mut state = TelemetryState::new(
        &names,
        Duration::from_secs(1),
        maestro::telemetry::state::DEFAULT_HISTORY,
    );
    let rss_before = rss_mib();
    let cpu0 = cpu_seconds();
    let wall = Instant::now();
    stream(&mut state, &names, seconds, true, Some(&sot1k));
    let cpu = cpu_seconds() - cpu0;
    let wall = wall.elapsed().as_secs_f64();
    println!(
        "telemetry: controller path (parser + state + console summary; no SSH), 1000 nodes at 1 Hz for {seconds} s: \
         CPU {:.2}% of one core ({cpu:.2} s in {wall:.1} s), RSS {:.0} MiB ({:.0} MiB before streaming; history {} samples per node)",
        cpu / wall * 100.0,
        rss_mib(),
        rss_before,
        maestro::telemetry::state::DEFAULT_HISTORY,
    );
    drop(state);

    // 2. The Telemetry view with 10,000 nodes.
    let big = tmp.path().join("sot10k");
    generate(&big, 10_000);
    let sot = Arc::new(maestro::sot::load(&big).unwrap());
    let names: Vec<String> = sot.nodes.iter().map(|n| n.name.clone()).collect();
    let mut state = TelemetryState::new(&names, Duration::from_secs(1), 64);
    stream(&mut state, &names, 45, false, None);
    let started = Instant::now();
    let summary = Arc::new(summarize(&state, &sot, Instant::now()));
    println!(
        "telemetry: summary of 10000 nodes (once a second, under the state's lock): {:.1} ms",
        started.elapsed().as_secs_f64() * 1000.0
    );
    let info = Info {
        title: "maestro".into(),
        sot: big.display().to_string(),
        head: Some("5da5d72".into()),
        store: "bench.db".into(),
        policy: ExecPolicy::Allowed,
        run_details: Vec::new(),
    };
    let mut app = App::new(info, sot.clone(), 1_763_712_000_000);
    app.take_effects();
    app.handle_key(key(KeyCode::Char(':')));
    for c in "top".chars() {
        app.handle_key(key(KeyCode::Char(c)));
    }
    app.handle_key(key(KeyCode::Enter));
    app.take_effects();
    app.on_msg(Msg::Telemetry(Ok(summary)));
    for _ in 0..100 {
        app.handle_key(key(KeyCode::PageDown));
    }
    for (w, h) in [(160u16, 48u16), (250, 70)] {
        let mut terminal = Terminal::new(TestBackend::new(w, h)).unwrap();
        terminal.draw(|f| app.draw(f)).unwrap();
        let frames = 500;
        let started = Instant::now();
        for i in 0..frames {
            app.handle_key(key(if i % 2 == 0 {
                KeyCode::PageDown
            } else {
                KeyCode::PageUp
            }));
            terminal.draw(|f| app.draw(f)).unwrap();
        }
        let per_frame = started.elapsed().as_secs_f64() * 1000.0 / frames as f64;
        let text: String = terminal
            .backend()
            .buffer()
            .content()
            .iter()
            .map(|c| c.symbol())
            .collect();
        assert!(text.contains("node-"), "the view shows nodes");
        println!(
            "telemetry: Telemetry view (:top), 10000 nodes, {w}x{h}: {per_frame:.3} ms per frame (mean of {frames} page scrolls)"
        );
    }
}
