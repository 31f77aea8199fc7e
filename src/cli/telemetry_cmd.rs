//! `maestro top` and `maestro metrics serve`: faces over the telemetry engine.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::fleet_cmd::{InvalidInput, connect_options, load_source};
use super::printer::sanitize;
use super::{FleetArgs, out};
use crate::exit::Exit;
use crate::fleet::resolve::connect_specs;
use crate::fleet::ssh::ConnectSpec;
use crate::fleet::target;
use crate::sot::Sot;
use crate::telemetry::export::{FleetCollector, encode, registry, to_prometheus_text};
use crate::telemetry::rollup::{DEFAULT_RETENTION, Rollups};
use crate::telemetry::sample::{Process, Scrape};
use crate::telemetry::state::DEFAULT_HISTORY;
use crate::telemetry::{
    self, CollectorOptions, Freshness, Link, NodeTelemetry, Subscriber, TelemetryState, Update,
    lock,
};

#[derive(Args, Debug)]
pub struct TopArgs {
    /// Nodes (as for exec) [default: all]
    #[arg(default_value = "all")]
    pub target: String,
    /// One sample (two readings, for rates) per node, then exit
    #[arg(long)]
    pub once: bool,
    /// Seconds between samples
    #[arg(long, default_value_t = 1.0, value_name = "SECS")]
    pub interval: f64,
    /// Sort nodes by this column
    #[arg(long, value_enum, default_value_t = SortBy::Name)]
    pub sort: SortBy,
    #[command(flatten)]
    pub fleet: FleetArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SortBy {
    Name,
    Cpu,
    Mem,
    Load,
}

#[derive(Subcommand, Debug)]
pub enum MetricsCommand {
    /// Serve the fleet's telemetry as a Prometheus/OpenMetrics endpoint (GET /metrics)
    Serve(ServeArgs),
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Nodes (as for exec) [default: all]
    #[arg(default_value = "all")]
    pub target: String,
    /// Address to listen on
    #[arg(long, default_value = "127.0.0.1:9464")]
    pub listen: String,
    /// Seconds between samples
    #[arg(long, default_value_t = 1.0, value_name = "SECS")]
    pub interval: f64,
    /// Days of one-minute rollups kept in the run store
    #[arg(long, default_value_t = DEFAULT_RETENTION.as_secs() / 86_400, value_name = "DAYS")]
    pub retention_days: u64,
    #[command(flatten)]
    pub fleet: FleetArgs,
}

fn specs(sot: &Sot, pattern: &str, fleet: &FleetArgs) -> anyhow::Result<Vec<ConnectSpec>> {
    let indices = target::select(sot, pattern).map_err(|e| InvalidInput(e.to_string()))?;
    let (specs, warnings) = connect_specs(sot, &indices, &connect_options(fleet))
        .map_err(|e| InvalidInput(e.to_string()))?;
    for w in warnings.iter() {
        eprintln!("warning: {}", sanitize(w.as_bytes()));
    }
    Ok(specs)
}

fn interval(secs: f64) -> anyhow::Result<Duration> {
    if !(0.1..=3600.0).contains(&secs) {
        return Err(InvalidInput(format!(
            "--interval {secs}: give between 0.1 and 3600 seconds"
        ))
        .into());
    }
    Ok(Duration::from_secs_f64(secs))
}

pub(super) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")
}

pub fn top(root: &Path, db: Option<PathBuf>, args: TopArgs, json: bool) -> anyhow::Result<Exit> {
    let source = load_source(root)?;
    let specs = specs(&source.sot, &args.target, &args.fleet)?;
    let interval = interval(args.interval)?;
    let options = CollectorOptions {
        interval,
        samples: args.once.then_some(2),
        reconnect: !args.once,
        ..CollectorOptions::default()
    };
    let mut subscribers: Vec<Box<dyn Subscriber>> = Vec::new();
    if json && !args.once {
        subscribers.push(Box::new(JsonLines));
    }
    if !args.once {
        let store = crate::store::open_path(&db.unwrap_or_else(crate::store::default_path))?;
        subscribers.push(Box::new(Rollups::new(store, DEFAULT_RETENTION)));
    }
    let sort = args.sort;
    runtime()?.block_on(async move {
        let running = telemetry::start(specs, options, DEFAULT_HISTORY, subscribers);
        let state = running.state();
        if args.once {
            let deadline = interval * 2 + Duration::from_secs(30);
            if tokio::time::timeout(deadline, running.finished())
                .await
                .is_err()
            {
                eprintln!("warning: some nodes did not answer within {deadline:?}");
            }
            let s = lock(&state);
            let now = Instant::now();
            if json {
                for n in sorted(&s, sort) {
                    out!("{}", node_json(n, &s, now));
                }
            } else {
                print_table(&s, sort, now);
            }
            let all_ok = s.nodes().iter().all(|n| n.samples > 0);
            return Ok(if all_ok {
                Exit::Ok
            } else {
                Exit::TargetsFailed
            });
        }
        let refresh = async {
            let mut tick = tokio::time::interval(interval);
            loop {
                tick.tick().await;
                if !json {
                    let s = lock(&state);
                    // Home, clear, then the table: one frame per interval.
                    print!("\x1b[H\x1b[2J");
                    print_table(&s, sort, Instant::now());
                }
            }
        };
        tokio::select! {
            _ = refresh => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        running.stop().await;
        Ok(Exit::Ok)
    })
}

/// `--json`: one object per sample per node, as samples arrive.
struct JsonLines;

impl Subscriber for JsonLines {
    fn updated(&mut self, node: &NodeTelemetry, update: Update, state: &TelemetryState) {
        if matches!(update, Update::Sample)
            || matches!((update, &node.link), (Update::Link, Link::Down { .. }))
        {
            out!("{}", node_json(node, state, Instant::now()));
        }
    }
}

fn sorted(s: &TelemetryState, by: SortBy) -> Vec<&NodeTelemetry> {
    let mut nodes: Vec<&NodeTelemetry> = s.nodes().iter().collect();
    let key = |n: &NodeTelemetry| -> f32 {
        let p = n.point.unwrap_or_default();
        match by {
            SortBy::Cpu => p.cpu_pct,
            SortBy::Mem => p.mem_used_pct,
            SortBy::Load => p.load1,
            SortBy::Name => None,
        }
        .unwrap_or(-1.0)
    };
    if by != SortBy::Name {
        nodes.sort_by(|a, b| key(b).total_cmp(&key(a)));
    }
    nodes
}

fn freshness_str(f: Freshness) -> &'static str {
    match f {
        Freshness::Fresh => "fresh",
        Freshness::Stale => "stale",
        Freshness::Never => "none",
    }
}

/// One node as JSON: its latest point, raw readings and agents.
pub fn node_json(n: &NodeTelemetry, s: &TelemetryState, now: Instant) -> Value {
    let p = n.point.unwrap_or_default();
    let sample = n.latest.as_ref();
    let agents: Vec<Value> = n
        .agents
        .iter()
        .map(|(name, a)| {
            let (process, pid) = match &a.latest.process {
                Process::Running { pid, letter, .. } => (letter.to_string(), Some(*pid)),
                Process::Zombie { pid } => ("zombie".into(), Some(*pid)),
                Process::Gone { pid } => ("gone".into(), Some(*pid)),
                Process::NoPidfile => ("not running".into(), None),
            };
            let scrape_error = match &a.latest.scrape {
                Scrape::Failed { error } => Some(error.clone()),
                _ => None,
            };
            json!({
                "agent": name,
                "version": a.latest.version,
                "digest": a.latest.digest,
                "enabled": a.latest.enabled,
                "process": process,
                "pid": pid,
                "running": a.point.running,
                "cpu_pct": a.point.cpu_pct,
                "rss_bytes": a.point.rss_bytes,
                "requests_total": a.point.requests_total,
                "errors_total": a.point.errors_total,
                "requests_per_s": a.point.requests_per_s,
                "errors_per_s": a.point.errors_per_s,
                "p50_s": a.point.p50_s,
                "p95_s": a.point.p95_s,
                "p99_s": a.point.p99_s,
                "metrics_error": scrape_error,
            })
        })
        .collect();
    let (link, error) = match &n.link {
        Link::Connecting => ("connecting", None),
        Link::Streaming => ("streaming", None),
        Link::Down { error, .. } => ("down", Some(error.clone())),
    };
    json!({
        "event": "telemetry",
        "node": n.name,
        "seq": sample.map(|s| s.seq),
        "freshness": freshness_str(s.freshness(n, now)),
        "link": link,
        "error": error,
        "uptime_s": sample.and_then(|s| s.uptime),
        "cpu_pct": p.cpu_pct,
        "load": sample.and_then(|s| s.load),
        "mem_total_kb": p.mem_total_kb,
        "mem_available_kb": p.mem_available_kb,
        "mem_used_pct": p.mem_used_pct,
        "root_fs_used_pct": p.root_fs_used_pct,
        "net_rx_bps": p.net_rx_bps,
        "net_tx_bps": p.net_tx_bps,
        "gpus": sample.map(|s| &s.gpus),
        "agents": agents,
        "rejected_lines": n.rejected_lines,
    })
}

fn num(v: Option<f32>, width: usize) -> String {
    match v {
        Some(v) => format!("{v:>width$.1}"),
        None => format!("{:>width$}", "-"),
    }
}

fn print_table(s: &TelemetryState, sort: SortBy, now: Instant) {
    out!(
        "{:<16} {:>6} {:>6} {:>6} {:>9} {:>6} {:>10} {:>10} {:>5}  STATE",
        "NODE",
        "CPU%",
        "MEM%",
        "LOAD1",
        "MEMAVAIL",
        "FS%",
        "RX/s",
        "TX/s",
        "GPU%"
    );
    for n in sorted(s, sort) {
        let p = n.point.unwrap_or_default();
        let state = match (&n.link, s.freshness(n, now)) {
            (Link::Down { error, .. }, _) => format!("down: {}", sanitize(error.as_bytes())),
            (_, f) => freshness_str(f).to_string(),
        };
        out!(
            "{:<16} {} {} {} {:>9} {} {:>10} {:>10} {}  {}",
            sanitize(n.name.as_bytes()),
            num(p.cpu_pct, 6),
            num(p.mem_used_pct, 6),
            num(p.load1, 6),
            p.mem_available_kb
                .map(|k| human(k as f64 * 1024.0))
                .unwrap_or_else(|| "-".into()),
            num(p.root_fs_used_pct, 6),
            p.net_rx_bps.map(human).unwrap_or_else(|| "-".into()),
            p.net_tx_bps.map(human).unwrap_or_else(|| "-".into()),
            num(p.gpu_util_pct, 5),
            state
        );
        for (name, a) in &n.agents {
            let rate = |v: Option<f64>| v.map_or_else(|| "-".into(), |v| format!("{v:.1}"));
            let process = match &a.latest.process {
                Process::Running { .. } => "running",
                Process::Zombie { .. } => "zombie",
                Process::Gone { .. } => "gone",
                Process::NoPidfile => "not running",
            };
            let metrics = match &a.latest.scrape {
                Scrape::Failed { error } => format!("  metrics: {}", sanitize(error.as_bytes())),
                _ => String::new(),
            };
            out!(
                "  └ {:<12} {} cpu={} rss={} req={} req/s={} err/s={} p95={}{}  [{}{}]",
                sanitize(name.as_bytes()),
                a.latest.version.as_deref().unwrap_or("-"),
                num(a.point.cpu_pct, 1),
                a.point
                    .rss_bytes
                    .map(|b| human(b as f64))
                    .unwrap_or_else(|| "-".into()),
                a.point
                    .requests_total
                    .map_or_else(|| "-".into(), |v| format!("{v}")),
                rate(a.point.requests_per_s),
                rate(a.point.errors_per_s),
                a.point
                    .p95_s
                    .map_or_else(|| "-".into(), |v| format!("{:.0}ms", v * 1000.0)),
                metrics,
                process,
                ""
            );
        }
    }
}

fn human(bytes: f64) -> String {
    const UNITS: [&str; 5] = ["B", "K", "M", "G", "T"];
    let mut v = bytes;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{v:.0}{}", UNITS[u])
    } else {
        format!("{v:.1}{}", UNITS[u])
    }
}

pub fn metrics(root: &Path, db: Option<PathBuf>, cmd: MetricsCommand) -> anyhow::Result<Exit> {
    let MetricsCommand::Serve(args) = cmd;
    let source = load_source(root)?;
    let specs = specs(&source.sot, &args.target, &args.fleet)?;
    let interval = interval(args.interval)?;
    let tags: Vec<(String, std::collections::BTreeMap<String, String>)> = specs
        .iter()
        .filter_map(|s| {
            let i = source.sot.nodes.iter().position(|n| n.name == s.node)?;
            Some((s.node.clone(), source.sot.nodes[i].tags.clone()))
        })
        .collect();
    let store = crate::store::open_path(&db.unwrap_or_else(crate::store::default_path))?;
    let retention = Duration::from_secs(args.retention_days.saturating_mul(86_400));
    let listen = args.listen.clone();
    runtime()?.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&listen)
            .await
            .with_context(|| format!("listening on {listen}"))?;
        let local = listener.local_addr()?;
        let options = CollectorOptions {
            interval,
            ..CollectorOptions::default()
        };
        let running = telemetry::start(
            specs,
            options,
            DEFAULT_HISTORY,
            vec![Box::new(Rollups::new(store, retention))],
        );
        let state = running.state();
        let registry = Arc::new(registry(FleetCollector::new(
            state.clone(),
            tags.iter().map(|(n, t)| (n.as_str(), t)),
        )));
        eprintln!("serving http://{local}/metrics for {} nodes", tags.len());
        let serve = async {
            loop {
                let Ok((conn, _)) = listener.accept().await else {
                    continue;
                };
                let registry = registry.clone();
                tokio::spawn(async move {
                    let _ = tokio::time::timeout(Duration::from_secs(10), answer(conn, &registry))
                        .await;
                });
            }
        };
        tokio::select! {
            _ = serve => {}
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate() => {}
        }
        running.stop().await;
        Ok(Exit::Ok)
    })
}

pub(super) async fn terminate() {
    if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        s.recv().await;
    }
}

/// A minimal HTTP/1.x answer: `GET /metrics` (and `HEAD`), one request per
/// connection. Anything else is 404 or 405; a request head over 8 KiB is refused.
async fn answer(
    mut conn: tokio::net::TcpStream,
    registry: &prometheus_client::registry::Registry,
) -> std::io::Result<()> {
    let mut head = Vec::new();
    let mut buf = [0u8; 2048];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && !head.windows(2).any(|w| w == b"\n\n") {
        let n = conn.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
        if head.len() > 8192 {
            return respond(
                &mut conn,
                "431 Request Header Fields Too Large",
                "text/plain",
                b"request head too large\n",
                false,
            )
            .await;
        }
    }
    let line = String::from_utf8_lossy(head.split(|&b| b == b'\n').next().unwrap_or(b""));
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = path.split('?').next().unwrap_or("");
    let head_only = method == "HEAD";
    match (method, path) {
        ("GET" | "HEAD", "/metrics") => {
            // OpenMetrics for who asks for it (Prometheus does), else the
            // classic text format.
            let openmetrics = String::from_utf8_lossy(&head).lines().any(|l| {
                l.to_ascii_lowercase().starts_with("accept:")
                    && l.contains("application/openmetrics-text")
            });
            let body = encode(registry);
            let (body, content_type) = if openmetrics {
                (
                    body,
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                )
            } else {
                (
                    to_prometheus_text(&body),
                    "text/plain; version=0.0.4; charset=utf-8",
                )
            };
            respond(
                &mut conn,
                "200 OK",
                content_type,
                body.as_bytes(),
                head_only,
            )
            .await
        }
        ("GET" | "HEAD", "/") => {
            respond(
                &mut conn,
                "200 OK",
                "text/plain; charset=utf-8",
                b"maestro metrics: GET /metrics\n",
                head_only,
            )
            .await
        }
        ("GET" | "HEAD", _) => {
            respond(
                &mut conn,
                "404 Not Found",
                "text/plain",
                b"not found\n",
                head_only,
            )
            .await
        }
        _ => {
            respond(
                &mut conn,
                "405 Method Not Allowed",
                "text/plain",
                b"GET only\n",
                false,
            )
            .await
        }
    }
}

async fn respond(
    conn: &mut tokio::net::TcpStream,
    status: &str,
    content_type: &str,
    body: &[u8],
    head_only: bool,
) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes()).await?;
    if !head_only {
        conn.write_all(body).await?;
    }
    conn.shutdown().await
}
