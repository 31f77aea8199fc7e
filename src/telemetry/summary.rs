//! A face-neutral summary of the telemetry state for one moment: a row per
//! node with its recent history (gaps kept as `None`), and aggregate rows
//! per group and per agent. The console's Telemetry view draws it; building
//! it takes the state's lock once, drawing it needs no lock at all.

use std::collections::BTreeMap;
use std::time::Instant;

use super::state::{Freshness, Link, TelemetryState};
use crate::sot::Sot;

/// Points of history kept per series (the sparklines' width).
pub const POINTS: usize = 40;

/// Oldest first; `None` is a missed sample.
pub type Series = Vec<Option<f32>>;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeSummary {
    pub node: String,
    pub groups: Vec<String>,
    pub freshness: Option<Freshness>,
    /// `streaming`, `connecting`, or the stream's error.
    pub link: String,
    pub cpu: Series,
    pub mem: Series,
    pub load1: Option<f32>,
    /// `None` for every point on a node without GPUs.
    pub gpu: Series,
    pub has_gpu: bool,
    /// Summed over the node's agents.
    pub requests: Series,
    pub errors: Series,
    /// Milliseconds, the highest of the node's agents.
    pub p95_ms: Series,
    /// `NAME VERSION` of each agent on the node.
    pub agents: Vec<String>,
}

impl NodeSummary {
    pub fn last(series: &Series) -> Option<f32> {
        series.last().copied().flatten()
    }
}

/// A group or an agent over its nodes (their latest points).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Aggregate {
    pub name: String,
    pub nodes: usize,
    pub fresh: usize,
    pub cpu_avg: Option<f32>,
    pub mem_avg: Option<f32>,
    pub requests: Option<f32>,
    pub errors: Option<f32>,
    pub p95_ms: Option<f32>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    pub interval_s: f32,
    pub nodes: Vec<NodeSummary>,
    pub groups: Vec<Aggregate>,
    pub agents: Vec<Aggregate>,
}

fn tail<T>(
    items: impl DoubleEndedIterator<Item = T> + ExactSizeIterator,
) -> impl Iterator<Item = T> {
    let skip = items.len().saturating_sub(POINTS);
    items.skip(skip)
}

#[derive(Default)]
struct Acc {
    nodes: usize,
    fresh: usize,
    cpu: (f32, usize),
    mem: (f32, usize),
    requests: Option<f32>,
    errors: Option<f32>,
    p95: Option<f32>,
}

impl Acc {
    fn add(
        &mut self,
        n: &NodeSummary,
        fresh: bool,
        req: Option<f32>,
        err: Option<f32>,
        p95: Option<f32>,
    ) {
        self.nodes += 1;
        if !fresh {
            return;
        }
        self.fresh += 1;
        if let Some(c) = NodeSummary::last(&n.cpu) {
            self.cpu.0 += c;
            self.cpu.1 += 1;
        }
        if let Some(m) = NodeSummary::last(&n.mem) {
            self.mem.0 += m;
            self.mem.1 += 1;
        }
        if let Some(r) = req {
            *self.requests.get_or_insert(0.0) += r;
        }
        if let Some(e) = err {
            *self.errors.get_or_insert(0.0) += e;
        }
        if let Some(p) = p95 {
            self.p95 = Some(self.p95.map_or(p, |q| q.max(p)));
        }
    }

    fn done(self, name: String) -> Aggregate {
        let avg = |(s, n): (f32, usize)| (n > 0).then(|| s / n as f32);
        Aggregate {
            name,
            nodes: self.nodes,
            fresh: self.fresh,
            cpu_avg: avg(self.cpu),
            mem_avg: avg(self.mem),
            requests: self.requests,
            errors: self.errors,
            p95_ms: self.p95,
        }
    }
}

fn add_opt(a: Option<f32>, b: Option<f32>) -> Option<f32> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x + y),
        (x, None) => x,
        (None, y) => y,
    }
}

/// The summary of `state` at `now`, with the SoT's groups.
pub fn summarize(state: &TelemetryState, sot: &Sot, now: Instant) -> Summary {
    let mut groups: BTreeMap<String, Acc> = BTreeMap::new();
    let mut agents: BTreeMap<String, Acc> = BTreeMap::new();
    let mut nodes = Vec::with_capacity(state.nodes().len());
    for n in state.nodes() {
        let freshness = state.freshness(n, now);
        let hist = || tail(n.history.iter()).copied();
        let mut requests: Series = vec![None; n.history.len().min(POINTS)];
        let mut errors = requests.clone();
        let mut p95 = requests.clone();
        for a in n.agents.values() {
            let offset = requests.len().saturating_sub(a.history.len().min(POINTS));
            for (i, p) in tail(a.history.iter()).enumerate() {
                let Some(p) = p else { continue };
                let at = offset + i;
                if at >= requests.len() {
                    break;
                }
                requests[at] = add_opt(requests[at], p.requests_per_s.map(|v| v as f32));
                errors[at] = add_opt(errors[at], p.errors_per_s.map(|v| v as f32));
                if let Some(v) = p.p95_s {
                    let ms = (v * 1000.0) as f32;
                    p95[at] = Some(p95[at].map_or(ms, |q| q.max(ms)));
                }
            }
        }
        let has_gpu = n.latest.as_ref().is_some_and(|s| !s.gpus.is_empty());
        let summary = NodeSummary {
            node: n.name.clone(),
            groups: sot
                .node(&n.name)
                .map(|s| s.groups.clone())
                .unwrap_or_default(),
            freshness: Some(freshness),
            link: match &n.link {
                Link::Connecting => "connecting".into(),
                Link::Streaming => "streaming".into(),
                Link::Down { error, .. } => error.clone(),
            },
            cpu: hist().map(|p| p.and_then(|p| p.cpu_pct)).collect(),
            mem: hist().map(|p| p.and_then(|p| p.mem_used_pct)).collect(),
            load1: n.point.and_then(|p| p.load1),
            gpu: hist().map(|p| p.and_then(|p| p.gpu_util_pct)).collect(),
            has_gpu,
            requests,
            errors,
            p95_ms: p95,
            agents: n
                .agents
                .iter()
                .map(|(name, a)| match &a.latest.version {
                    Some(v) => format!("{name} {v}"),
                    None => name.clone(),
                })
                .collect(),
        };
        let fresh = freshness == Freshness::Fresh;
        for g in &summary.groups {
            groups.entry(g.clone()).or_default().add(
                &summary,
                fresh,
                NodeSummary::last(&summary.requests),
                NodeSummary::last(&summary.errors),
                NodeSummary::last(&summary.p95_ms),
            );
        }
        for (name, a) in &n.agents {
            let p = a.point;
            agents.entry(name.clone()).or_default().add(
                &summary,
                fresh && p.running,
                p.requests_per_s.map(|v| v as f32),
                p.errors_per_s.map(|v| v as f32),
                p.p95_s.map(|v| (v * 1000.0) as f32),
            );
        }
        nodes.push(summary);
    }
    Summary {
        interval_s: state.interval.as_secs_f32(),
        nodes,
        groups: groups.into_iter().map(|(k, a)| a.done(k)).collect(),
        agents: agents.into_iter().map(|(k, a)| a.done(k)).collect(),
    }
}
