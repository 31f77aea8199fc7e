//! What one sample from a node says, as the sampler reported it: raw
//! cumulative counters (CPU jiffies, bytes, request counts), nothing derived.
//! Rates and percentiles are computed from two samples in [`super::state`].

use serde::Serialize;

/// CPU time since boot, in clock ticks, summed over all CPUs (`/proc/stat`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct CpuTimes {
    pub user: u64,
    pub nice: u64,
    pub system: u64,
    pub idle: u64,
    pub iowait: u64,
    pub irq: u64,
    pub softirq: u64,
    pub steal: u64,
}

impl CpuTimes {
    pub fn total(&self) -> u64 {
        self.busy() + self.idle + self.iowait
    }

    /// Time not idle and not waiting for I/O.
    pub fn busy(&self) -> u64 {
        self.user + self.nice + self.system + self.irq + self.softirq + self.steal
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Memory {
    pub total_kb: u64,
    /// `MemAvailable` (absent on kernels before 3.14).
    pub available_kb: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Filesystem {
    pub total_kb: u64,
    pub used_kb: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NetCounters {
    pub interface: String,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
}

/// One GPU in nvidia-smi's latest loop; `[N/A]` fields are `None`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Gpu {
    pub index: u32,
    pub utilization_pct: Option<f64>,
    pub memory_used_mib: Option<f64>,
    pub memory_total_mib: Option<f64>,
    pub temperature_c: Option<f64>,
    pub power_w: Option<f64>,
}

/// The agent's process as its pidfile and `/proc/PID/stat` show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum Process {
    /// The pidfile names a live process started when the pidfile says.
    Running {
        pid: u32,
        /// `/proc/PID/stat` state letter: R, S, D, T, ...
        letter: char,
        /// utime + stime, in clock ticks.
        cpu_ticks: u64,
        rss_bytes: u64,
    },
    /// A zombie: it exited and nobody reaped it.
    Zombie { pid: u32 },
    /// The pidfile names a process that is gone (or was replaced).
    Gone { pid: u32 },
    /// No readable pidfile: not running, or never started.
    NoPidfile,
}

/// An agent's own counters, from its Prometheus text (summed over every
/// label set but `le`).
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct AgentMetrics {
    pub requests: Option<f64>,
    pub errors: Option<f64>,
    pub starts: Option<f64>,
    /// Cumulative `agent_request_duration_seconds` buckets, `(le, count)`, by `le`.
    pub buckets: Vec<(f64, f64)>,
    pub duration_sum: Option<f64>,
    pub duration_count: Option<f64>,
    /// Lines that were not Prometheus text, or values refused (negative
    /// counters, NaN): counted, the rest of the body still used.
    pub rejected_lines: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "status")]
pub enum Scrape {
    /// The state file names no metrics endpoint, or the process is not running.
    NotScraped,
    Ok {
        metrics: AgentMetrics,
    },
    /// The endpoint did not answer, answered nothing usable, or too much.
    Failed {
        error: String,
    },
}

/// One maestro-managed agent on the node (its state file, process and metrics).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AgentSample {
    pub name: String,
    pub version: Option<String>,
    pub digest: Option<String>,
    pub enabled: Option<bool>,
    pub process: Process,
    pub scrape: Scrape,
}

/// One sample of one node.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct NodeSample {
    pub seq: u64,
    /// Seconds since the node booted (`/proc/uptime`): the clock rates use.
    pub uptime: Option<f64>,
    pub cpu: Option<CpuTimes>,
    pub load: Option<[f64; 3]>,
    pub memory: Option<Memory>,
    /// Sampled every 30th sample (it needs a `df`); `None` in between.
    pub root_fs: Option<Filesystem>,
    pub net: Vec<NetCounters>,
    pub gpus: Vec<Gpu>,
    pub agents: Vec<AgentSample>,
    /// Records that did not parse: counted and skipped.
    pub rejected_lines: usize,
}
