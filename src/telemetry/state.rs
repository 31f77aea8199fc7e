//! The controller's picture of the fleet: per node and per agent, the latest
//! sample, what it means (rates, percentages, latency percentiles, computed
//! here from two samples, never on the node), and ring buffers of recent
//! points, one slot per interval, a missed interval an empty slot (a gap,
//! never a zero).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::parse::Header;
use super::sample::{AgentMetrics, AgentSample, Filesystem, NodeSample, Process, Scrape};

/// Slots kept per node and agent by default: 15 minutes at 1 s.
pub const DEFAULT_HISTORY: usize = 900;
/// A node is stale after this many intervals without a sample.
pub const STALE_AFTER_INTERVALS: u32 = 3;
/// Latency percentiles are computed over this many recent samples.
const LATENCY_WINDOW: usize = 10;

/// A fixed-capacity buffer that drops its oldest entry when full.
#[derive(Debug, Clone)]
pub struct Ring<T> {
    items: VecDeque<T>,
    capacity: usize,
}

impl<T> Ring<T> {
    pub fn new(capacity: usize) -> Ring<T> {
        Ring {
            items: VecDeque::with_capacity(capacity.min(64)),
            capacity: capacity.max(1),
        }
    }

    pub fn push(&mut self, item: T) {
        if self.items.len() == self.capacity {
            self.items.pop_front();
        }
        self.items.push_back(item);
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Oldest first.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &T> + ExactSizeIterator {
        self.items.iter()
    }

    pub fn last(&self) -> Option<&T> {
        self.items.back()
    }
}

/// What a node's sample means.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct NodePoint {
    /// Busy share of all CPUs since the previous sample, 0–100.
    pub cpu_pct: Option<f32>,
    pub load1: Option<f32>,
    /// `(MemTotal - MemAvailable) / MemTotal`, 0–100.
    pub mem_used_pct: Option<f32>,
    pub mem_total_kb: Option<u64>,
    pub mem_available_kb: Option<u64>,
    pub root_fs_used_pct: Option<f32>,
    /// Bytes per second over every interface but `lo`.
    pub net_rx_bps: Option<f64>,
    pub net_tx_bps: Option<f64>,
    /// Mean over the node's GPUs; `None` without GPUs or when none reported.
    pub gpu_util_pct: Option<f32>,
    pub gpu_mem_pct: Option<f32>,
}

/// What an agent's sample means.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct AgentPoint {
    pub running: bool,
    /// Share of one core since the previous sample.
    pub cpu_pct: Option<f32>,
    pub rss_bytes: Option<u64>,
    pub requests_total: Option<f64>,
    pub errors_total: Option<f64>,
    pub requests_per_s: Option<f64>,
    pub errors_per_s: Option<f64>,
    /// Request latency percentiles in seconds, from the histogram's buckets
    /// over the last few samples.
    pub p50_s: Option<f64>,
    /// Read by rollout gates (`latency_p90`).
    pub p90_s: Option<f64>,
    pub p95_s: Option<f64>,
    pub p99_s: Option<f64>,
}

/// The state of a node's telemetry stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "link")]
pub enum Link {
    Connecting,
    Streaming,
    /// The stream failed; the collector retries after `retry_in_ms`.
    Down {
        error: String,
        retry_in_ms: u64,
    },
}

/// How current a node's numbers are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Freshness {
    /// The last sample is at most [`STALE_AFTER_INTERVALS`] intervals old.
    Fresh,
    Stale,
    /// No sample yet.
    Never,
}

/// What the collector reports.
#[derive(Debug, Clone, PartialEq)]
pub enum TelemetryEvent {
    Link {
        node: String,
        link: Link,
    },
    Header {
        node: String,
        header: Header,
    },
    Sample {
        node: String,
        sample: Box<NodeSample>,
    },
}

impl TelemetryEvent {
    pub fn node(&self) -> &str {
        match self {
            TelemetryEvent::Link { node, .. }
            | TelemetryEvent::Header { node, .. }
            | TelemetryEvent::Sample { node, .. } => node,
        }
    }
}

#[derive(Debug, Clone)]
pub struct AgentTelemetry {
    pub latest: AgentSample,
    pub point: AgentPoint,
    pub history: Ring<Option<AgentPoint>>,
    /// Recent metrics with the node's uptime when read, for rates and percentiles.
    window: VecDeque<(f64, AgentMetrics)>,
    previous_cpu: Option<(f64, u32, u64)>,
    pending: Option<AgentPoint>,
}

#[derive(Debug, Clone)]
pub struct NodeTelemetry {
    pub name: String,
    pub link: Link,
    pub header: Option<Header>,
    pub latest: Option<NodeSample>,
    pub point: Option<NodePoint>,
    pub history: Ring<Option<NodePoint>>,
    pub agents: BTreeMap<String, AgentTelemetry>,
    pub samples: u64,
    pub rejected_lines: u64,
    pub last_sample_at: Option<Instant>,
    /// The root filesystem is sampled every 30th sample: its last reading.
    root_fs: Option<Filesystem>,
    pending: Option<NodePoint>,
}

impl NodeTelemetry {
    fn new(name: &str, capacity: usize) -> NodeTelemetry {
        NodeTelemetry {
            name: name.to_string(),
            link: Link::Connecting,
            header: None,
            latest: None,
            point: None,
            history: Ring::new(capacity),
            agents: BTreeMap::new(),
            samples: 0,
            rejected_lines: 0,
            last_sample_at: None,
            root_fs: None,
            pending: None,
        }
    }
}

/// Every node's telemetry, fed by [`TelemetryEvent`]s and advanced one slot
/// per interval by [`TelemetryState::tick`].
#[derive(Debug, Clone)]
pub struct TelemetryState {
    pub interval: Duration,
    capacity: usize,
    nodes: Vec<NodeTelemetry>,
    index: HashMap<String, usize>,
}

impl TelemetryState {
    pub fn new(nodes: &[String], interval: Duration, capacity: usize) -> TelemetryState {
        TelemetryState {
            interval,
            capacity,
            nodes: nodes
                .iter()
                .map(|n| NodeTelemetry::new(n, capacity))
                .collect(),
            index: nodes
                .iter()
                .enumerate()
                .map(|(i, n)| (n.clone(), i))
                .collect(),
        }
    }

    pub fn nodes(&self) -> &[NodeTelemetry] {
        &self.nodes
    }

    pub fn node(&self, name: &str) -> Option<&NodeTelemetry> {
        self.index.get(name).map(|&i| &self.nodes[i])
    }

    pub fn freshness(&self, node: &NodeTelemetry, now: Instant) -> Freshness {
        match node.last_sample_at {
            None => Freshness::Never,
            Some(at) if now.duration_since(at) <= self.interval * STALE_AFTER_INTERVALS => {
                Freshness::Fresh
            }
            Some(_) => Freshness::Stale,
        }
    }

    pub fn apply(&mut self, event: TelemetryEvent, now: Instant) {
        let Some(&i) = self.index.get(event.node()) else {
            return;
        };
        let capacity = self.capacity;
        let node = &mut self.nodes[i];
        match event {
            TelemetryEvent::Link { link, .. } => node.link = link,
            TelemetryEvent::Header { header, .. } => node.header = Some(header),
            TelemetryEvent::Sample { sample, .. } => {
                node.link = Link::Streaming;
                let clock_ticks = node.header.as_ref().map_or(100, |h| h.clock_ticks);
                if sample.root_fs.is_some() {
                    node.root_fs = sample.root_fs;
                }
                let point = node_point(node.latest.as_ref(), &sample, node.root_fs);
                for agent in &sample.agents {
                    let entry =
                        node.agents
                            .entry(agent.name.clone())
                            .or_insert_with(|| AgentTelemetry {
                                latest: agent.clone(),
                                point: AgentPoint::default(),
                                history: Ring::new(capacity),
                                window: VecDeque::new(),
                                previous_cpu: None,
                                pending: None,
                            });
                    let p = agent_point(entry, agent, sample.uptime, clock_ticks);
                    entry.latest = agent.clone();
                    entry.point = p;
                    entry.pending = Some(p);
                }
                // An agent whose state file went away is no longer on the node.
                node.agents
                    .retain(|name, _| sample.agents.iter().any(|a| &a.name == name));
                node.samples += 1;
                node.rejected_lines += sample.rejected_lines as u64;
                node.point = Some(point);
                node.pending = Some(point);
                node.last_sample_at = Some(now);
                node.latest = Some(*sample);
            }
        }
    }

    /// Close the current interval: each node's and agent's history gets the
    /// point that arrived during it, or a gap.
    pub fn tick(&mut self) {
        for node in &mut self.nodes {
            node.history.push(node.pending.take());
            for agent in node.agents.values_mut() {
                agent.history.push(agent.pending.take());
            }
        }
    }
}

fn pct(part: f64, whole: f64) -> Option<f32> {
    (whole > 0.0 && part.is_finite()).then(|| (100.0 * part / whole).clamp(0.0, 100.0) as f32)
}

fn node_point(
    previous: Option<&NodeSample>,
    s: &NodeSample,
    root_fs: Option<Filesystem>,
) -> NodePoint {
    let mut p = NodePoint {
        load1: s.load.map(|l| l[0] as f32),
        ..NodePoint::default()
    };
    if let Some(m) = s.memory {
        p.mem_total_kb = Some(m.total_kb);
        p.mem_available_kb = m.available_kb;
        p.mem_used_pct = m
            .available_kb
            .and_then(|a| pct((m.total_kb - a) as f64, m.total_kb as f64));
    }
    p.root_fs_used_pct = root_fs.and_then(|f| pct(f.used_kb as f64, f.total_kb as f64));
    if let (Some(prev), Some(now)) = (previous.and_then(|p| p.cpu), s.cpu) {
        // A counter that went backwards (a reboot, a bad line) gives no reading.
        if let (Some(busy), Some(total)) = (
            now.busy().checked_sub(prev.busy()),
            now.total().checked_sub(prev.total()),
        ) {
            p.cpu_pct = pct(busy as f64, total as f64);
        }
    }
    let dt = match (previous.and_then(|p| p.uptime), s.uptime) {
        (Some(a), Some(b)) if b > a => Some(b - a),
        _ => None,
    };
    if let (Some(prev), Some(dt)) = (previous, dt) {
        let sum = |s: &NodeSample, rx: bool| -> u64 {
            s.net
                .iter()
                .map(|n| if rx { n.rx_bytes } else { n.tx_bytes })
                .fold(0u64, u64::saturating_add)
        };
        let same_interfaces = prev.net.len() == s.net.len()
            && prev
                .net
                .iter()
                .zip(&s.net)
                .all(|(a, b)| a.interface == b.interface);
        if same_interfaces && !s.net.is_empty() {
            p.net_rx_bps = sum(s, true)
                .checked_sub(sum(prev, true))
                .map(|d| d as f64 / dt);
            p.net_tx_bps = sum(s, false)
                .checked_sub(sum(prev, false))
                .map(|d| d as f64 / dt);
        }
    }
    let utils: Vec<f64> = s.gpus.iter().filter_map(|g| g.utilization_pct).collect();
    if !utils.is_empty() {
        p.gpu_util_pct = Some((utils.iter().sum::<f64>() / utils.len() as f64) as f32);
    }
    let mems: Vec<f64> = s
        .gpus
        .iter()
        .filter_map(|g| pct(g.memory_used_mib?, g.memory_total_mib?).map(f64::from))
        .collect();
    if !mems.is_empty() {
        p.gpu_mem_pct = Some((mems.iter().sum::<f64>() / mems.len() as f64) as f32);
    }
    p
}

/// The rate of a counter between two readings; a counter that went down was
/// reset (the agent restarted), so it counted `now` since then.
pub fn counter_rate(before: Option<f64>, now: Option<f64>, dt: f64) -> Option<f64> {
    let now = now?;
    let before = before?;
    if dt <= 0.0 {
        return None;
    }
    Some(if now >= before { now - before } else { now } / dt)
}

fn agent_point(
    entry: &mut AgentTelemetry,
    agent: &AgentSample,
    uptime: Option<f64>,
    clock_ticks: u64,
) -> AgentPoint {
    let mut p = AgentPoint::default();
    if let Process::Running {
        pid,
        cpu_ticks,
        rss_bytes,
        ..
    } = agent.process
    {
        p.running = true;
        p.rss_bytes = Some(rss_bytes);
        if let Some(up) = uptime {
            if let Some((before, before_pid, before_ticks)) = entry.previous_cpu
                && before_pid == pid
                && up > before
                && cpu_ticks >= before_ticks
            {
                let cpu_s = (cpu_ticks - before_ticks) as f64 / clock_ticks as f64;
                p.cpu_pct = Some((100.0 * cpu_s / (up - before)) as f32);
            }
            entry.previous_cpu = Some((up, pid, cpu_ticks));
        }
    } else {
        entry.previous_cpu = None;
    }
    let Scrape::Ok { metrics } = &agent.scrape else {
        return p;
    };
    p.requests_total = metrics.requests;
    p.errors_total = metrics.errors;
    let Some(up) = uptime else { return p };
    if let Some((before, m)) = entry.window.back() {
        let dt = up - before;
        p.requests_per_s = counter_rate(m.requests, metrics.requests, dt);
        p.errors_per_s = counter_rate(m.errors, metrics.errors, dt);
    }
    entry.window.push_back((up, metrics.clone()));
    while entry.window.len() > LATENCY_WINDOW {
        entry.window.pop_front();
    }
    if let (Some((_, first)), Some((_, last))) = (entry.window.front(), entry.window.back())
        && entry.window.len() >= 2
    {
        let buckets = bucket_delta(&first.buckets, &last.buckets);
        p.p50_s = histogram_quantile(0.50, &buckets);
        p.p90_s = histogram_quantile(0.90, &buckets);
        p.p95_s = histogram_quantile(0.95, &buckets);
        p.p99_s = histogram_quantile(0.99, &buckets);
    }
    p
}

/// The requests each bucket counted between two cumulative readings; after
/// a reset (any bucket went down) the newer reading alone.
pub fn bucket_delta(before: &[(f64, f64)], now: &[(f64, f64)]) -> Vec<(f64, f64)> {
    let same_bounds = before.len() == now.len()
        && before
            .iter()
            .zip(now)
            .all(|(a, b)| a.0.to_bits() == b.0.to_bits());
    if !same_bounds || before.iter().zip(now).any(|(a, b)| b.1 < a.1) {
        return now.to_vec();
    }
    before
        .iter()
        .zip(now)
        .map(|(a, b)| (b.0, b.1 - a.1))
        .collect()
}

/// Prometheus's `histogram_quantile`: linear interpolation inside the
/// bucket that holds the rank; the `+Inf` bucket answers its lower bound.
pub fn histogram_quantile(q: f64, buckets: &[(f64, f64)]) -> Option<f64> {
    let (&(last_le, total), _) = buckets.split_last()?;
    if !last_le.is_infinite() || total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let mut lower = 0.0;
    let mut below = 0.0;
    for &(le, count) in buckets {
        if count >= rank {
            if le.is_infinite() {
                return Some(lower);
            }
            let in_bucket = count - below;
            if in_bucket <= 0.0 {
                return Some(le);
            }
            return Some(lower + (le - lower) * (rank - below) / in_bucket);
        }
        lower = le;
        below = count.max(below);
    }
    Some(lower)
}
