//! The fleet's telemetry as a Prometheus/OpenMetrics registry: one series
//! per node and per agent, labelled with the node's name and its SoT tags
//! `region`, `jurisdiction` and `role` (when it has them). Values are read
//! from the shared state at scrape time; a stale node exports only
//! `maestro_node_up 0`, so Prometheus marks its other series stale instead
//! of repeating old numbers.

use std::collections::HashMap;
use std::time::Instant;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use super::state::{AgentTelemetry, Freshness, NodeTelemetry, TelemetryState};
use super::{SharedState, lock};

/// The SoT tags exported as labels.
pub const TAG_LABELS: [&str; 3] = ["region", "jurisdiction", "role"];

type Labels = Vec<(String, String)>;

/// The registry's collector over the shared state.
#[derive(Debug)]
pub struct FleetCollector {
    state: SharedState,
    /// Per node: `node` and its tag labels.
    labels: HashMap<String, Labels>,
}

impl FleetCollector {
    /// `tags`: each node's SoT tags.
    pub fn new<'a>(
        state: SharedState,
        tags: impl IntoIterator<Item = (&'a str, &'a std::collections::BTreeMap<String, String>)>,
    ) -> FleetCollector {
        let labels = tags
            .into_iter()
            .map(|(node, tags)| {
                let mut l = vec![("node".to_string(), node.to_string())];
                for key in TAG_LABELS {
                    if let Some(v) = tags.get(key) {
                        l.push((key.to_string(), v.clone()));
                    }
                }
                (node.to_string(), l)
            })
            .collect();
        FleetCollector { state, labels }
    }
}

/// A registry holding only the fleet collector.
pub fn registry(collector: FleetCollector) -> Registry {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(collector));
    registry
}

/// The registry as OpenMetrics text (what `metrics serve` answers).
pub fn encode(registry: &Registry) -> String {
    let mut text = String::new();
    // Writing to a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut text, registry);
    text
}

/// The same exposition in the classic Prometheus text format (0.0.4), for
/// clients that do not ask for OpenMetrics (`curl`, `promtool check
/// metrics`): a counter family is named with its `_total` suffix there, and
/// there is no `# EOF`.
pub fn to_prometheus_text(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut text = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(name)
                .then(|| format!("{prefix}{name}_total {tail}"))
        });
        match renamed {
            Some(l) => text.push_str(&l),
            None => text.push_str(line),
        }
        text.push('\n');
    }
    text
}

type NodeValue = fn(&NodeTelemetry) -> Option<f64>;
type AgentValue = fn(&AgentTelemetry) -> Option<f64>;

const NODE_GAUGES: &[(&str, &str, NodeValue)] = &[
    (
        "maestro_node_cpu_percent",
        "Busy share of all CPUs over the last interval",
        |n| n.point?.cpu_pct.map(f64::from),
    ),
    ("maestro_node_load1", "1-minute load average", |n| {
        n.point?.load1.map(f64::from)
    }),
    (
        "maestro_node_memory_used_percent",
        "(MemTotal - MemAvailable) / MemTotal",
        |n| n.point?.mem_used_pct.map(f64::from),
    ),
    ("maestro_node_memory_available_bytes", "MemAvailable", |n| {
        n.point?.mem_available_kb.map(|k| k as f64 * 1024.0)
    }),
    (
        "maestro_node_root_fs_used_percent",
        "Used share of the root filesystem",
        |n| n.point?.root_fs_used_pct.map(f64::from),
    ),
    (
        "maestro_node_network_receive_bytes_per_second",
        "Bytes received per second, every interface but lo",
        |n| n.point?.net_rx_bps,
    ),
    (
        "maestro_node_network_transmit_bytes_per_second",
        "Bytes sent per second, every interface but lo",
        |n| n.point?.net_tx_bps,
    ),
    (
        "maestro_node_gpu_utilization_percent",
        "Mean GPU utilisation (nvidia-smi)",
        |n| n.point?.gpu_util_pct.map(f64::from),
    ),
];

const AGENT_GAUGES: &[(&str, &str, AgentValue)] = &[
    ("maestro_agent_up", "1 when the agent's process runs", |a| {
        Some(if a.point.running { 1.0 } else { 0.0 })
    }),
    ("maestro_agent_cpu_percent", "Share of one core", |a| {
        a.point.cpu_pct.map(f64::from)
    }),
    ("maestro_agent_rss_bytes", "Resident memory", |a| {
        a.point.rss_bytes.map(|b| b as f64)
    }),
    (
        "maestro_agent_requests_per_second",
        "Requests per second over the last interval",
        |a| a.point.requests_per_s,
    ),
    (
        "maestro_agent_errors_per_second",
        "Errors per second over the last interval",
        |a| a.point.errors_per_s,
    ),
    (
        "maestro_agent_request_latency_p95_seconds",
        "95th percentile request latency over the last samples",
        |a| a.point.p95_s,
    ),
];

const AGENT_COUNTERS: &[(&str, &str, AgentValue)] = &[
    (
        "maestro_agent_requests",
        "Requests the agent counted (agent_requests_total)",
        |a| a.point.requests_total,
    ),
    (
        "maestro_agent_errors",
        "Errors the agent counted (agent_errors_total)",
        |a| a.point.errors_total,
    ),
];

impl FleetCollector {
    fn node_labels(&self, node: &NodeTelemetry) -> Labels {
        self.labels
            .get(&node.name)
            .cloned()
            .unwrap_or_else(|| vec![("node".into(), node.name.clone())])
    }

    fn agent_labels(&self, node: &NodeTelemetry, name: &str, agent: &AgentTelemetry) -> Labels {
        let mut l = self.node_labels(node);
        l.push(("agent".into(), name.to_string()));
        if let Some(v) = &agent.latest.version {
            l.push(("version".into(), v.clone()));
        }
        l
    }
}

impl Collector for FleetCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let state = lock(&self.state);
        let now = Instant::now();
        let fresh: Vec<&NodeTelemetry> = state
            .nodes()
            .iter()
            .filter(|n| state.freshness(n, now) == Freshness::Fresh)
            .collect();
        {
            let mut family = encoder.encode_descriptor(
                "maestro_node_up",
                "1 when the node's telemetry is fresh (a sample within 3 intervals)",
                None,
                MetricType::Gauge,
            )?;
            for node in state.nodes() {
                let up = i64::from(state.freshness(node, now) == Freshness::Fresh);
                let labels = self.node_labels(node);
                ConstGauge::new(up).encode(family.encode_family(&labels)?)?;
            }
        }
        for (name, help, value) in NODE_GAUGES {
            gauges(&mut encoder, name, help, &state, |emit| {
                for node in &fresh {
                    if let Some(v) = value(node) {
                        emit(self.node_labels(node), v)?;
                    }
                }
                Ok(())
            })?;
        }
        for (name, help, value) in AGENT_GAUGES {
            gauges(&mut encoder, name, help, &state, |emit| {
                for node in &fresh {
                    for (agent_name, agent) in &node.agents {
                        if let Some(v) = value(agent) {
                            emit(self.agent_labels(node, agent_name, agent), v)?;
                        }
                    }
                }
                Ok(())
            })?;
        }
        for (name, help, value) in AGENT_COUNTERS {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for node in &fresh {
                for (agent_name, agent) in &node.agents {
                    if let Some(v) = value(agent) {
                        let labels = self.agent_labels(node, agent_name, agent);
                        ConstCounter::new(v).encode(family.encode_family(&labels)?)?;
                    }
                }
            }
        }
        Ok(())
    }
}

fn gauges(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    _state: &TelemetryState,
    each: impl FnOnce(&mut dyn FnMut(Labels, f64) -> std::fmt::Result) -> std::fmt::Result,
) -> std::fmt::Result {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    each(&mut |labels, v| ConstGauge::new(v).encode(family.encode_family(&labels)?))
}
