//! One-minute rollups of every node's and agent's points, written to the
//! store when the minute ends, and minutes older than the retention pruned.

use std::collections::HashMap;
use std::time::Duration;

use super::state::{AgentPoint, NodePoint, NodeTelemetry, TelemetryState};
use super::{Subscriber, Update};
use crate::store::{Rollup, TelemetryStore};

/// How long rollups are kept by default.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);

#[derive(Debug, Default, Clone, Copy)]
struct Mean {
    sum: f64,
    n: u32,
    max: Option<f64>,
}

impl Mean {
    fn add(&mut self, v: Option<f64>) {
        if let Some(v) = v.filter(|v| v.is_finite()) {
            self.sum += v;
            self.n += 1;
            self.max = Some(self.max.map_or(v, |m| m.max(v)));
        }
    }

    fn mean(&self) -> Option<f64> {
        (self.n > 0).then(|| self.sum / f64::from(self.n))
    }
}

#[derive(Debug, Default, Clone)]
struct Minute {
    samples: u32,
    cpu: Mean,
    mem: Mean,
    load: Mean,
    fs: Mean,
    rx: Mean,
    tx: Mean,
    gpu: Mean,
    rss: Mean,
    requests: Mean,
    errors: Mean,
    p95: Mean,
}

impl Minute {
    fn node(&mut self, p: &NodePoint) {
        self.samples += 1;
        self.cpu.add(p.cpu_pct.map(f64::from));
        self.mem.add(p.mem_used_pct.map(f64::from));
        self.load.add(p.load1.map(f64::from));
        self.fs.add(p.root_fs_used_pct.map(f64::from));
        self.rx.add(p.net_rx_bps);
        self.tx.add(p.net_tx_bps);
        self.gpu.add(p.gpu_util_pct.map(f64::from));
    }

    fn agent(&mut self, p: &AgentPoint) {
        self.samples += 1;
        self.cpu.add(p.cpu_pct.map(f64::from));
        self.rss.add(p.rss_bytes.map(|b| b as f64));
        self.requests.add(p.requests_per_s);
        self.errors.add(p.errors_per_s);
        self.p95.add(p.p95_s);
    }

    fn row(&self, node: &str, agent: &str, minute_ms: i64) -> Rollup {
        Rollup {
            node: node.to_string(),
            agent: agent.to_string(),
            minute_ms,
            samples: self.samples,
            cpu_pct_avg: self.cpu.mean(),
            cpu_pct_max: self.cpu.max,
            mem_used_pct_avg: self.mem.mean(),
            load1_avg: self.load.mean(),
            root_fs_used_pct: self.fs.max,
            net_rx_bps_avg: self.rx.mean(),
            net_tx_bps_avg: self.tx.mean(),
            gpu_util_pct_avg: self.gpu.mean(),
            rss_bytes_max: self.rss.max.map(|b| b as u64),
            requests_per_s_avg: self.requests.mean(),
            errors_per_s_avg: self.errors.mean(),
            p95_s_max: self.p95.max,
        }
    }
}

/// The rollup writer: a telemetry [`Subscriber`] over a [`TelemetryStore`].
pub struct Rollups<S: TelemetryStore> {
    store: S,
    retention: Duration,
    minute_ms: Option<i64>,
    open: HashMap<(String, String), Minute>,
    /// The last write error, for the face to show (writing never stops the collector).
    pub last_error: Option<String>,
    now_ms: fn() -> i64,
}

impl<S: TelemetryStore> Rollups<S> {
    pub fn new(store: S, retention: Duration) -> Rollups<S> {
        Rollups {
            store,
            retention,
            minute_ms: None,
            open: HashMap::new(),
            last_error: None,
            now_ms: crate::fleet::event::now_ms,
        }
    }

    #[cfg(test)]
    fn with_clock(mut self, now_ms: fn() -> i64) -> Self {
        self.now_ms = now_ms;
        self
    }

    /// Write the open minute (also done when the minute ends).
    pub fn flush(&mut self) {
        let Some(minute_ms) = self.minute_ms else {
            return;
        };
        let rows: Vec<Rollup> = self
            .open
            .drain()
            .filter(|(_, m)| m.samples > 0)
            .map(|((node, agent), m)| m.row(&node, &agent, minute_ms))
            .collect();
        let cutoff = (self.now_ms)() - self.retention.as_millis() as i64;
        let written = self
            .store
            .write_rollups(&rows)
            .and_then(|()| self.store.prune_rollups(cutoff));
        self.last_error = written.err().map(|e| e.to_string());
    }

    fn roll_over(&mut self) -> i64 {
        let minute = (self.now_ms)().div_euclid(60_000) * 60_000;
        if self.minute_ms.is_some_and(|m| m != minute) {
            self.flush();
        }
        self.minute_ms = Some(minute);
        minute
    }

    pub fn into_store(mut self) -> S {
        self.flush();
        self.store
    }
}

impl<S: TelemetryStore> Subscriber for Rollups<S> {
    fn updated(&mut self, node: &NodeTelemetry, update: Update, _state: &TelemetryState) {
        if update != Update::Sample {
            return;
        }
        self.roll_over();
        if let Some(p) = &node.point {
            self.open
                .entry((node.name.clone(), String::new()))
                .or_default()
                .node(p);
        }
        for (name, agent) in &node.agents {
            self.open
                .entry((node.name.clone(), name.clone()))
                .or_default()
                .agent(&agent.point);
        }
    }

    fn tick(&mut self, _state: &TelemetryState) {
        self.roll_over();
    }

    fn finish(&mut self, _state: &TelemetryState) {
        self.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SqliteStore;
    use crate::telemetry::sample::NodeSample;
    use crate::telemetry::state::TelemetryEvent;
    use std::sync::atomic::{AtomicI64, Ordering};
    use std::time::Instant;

    static CLOCK: AtomicI64 = AtomicI64::new(0);
    fn clock() -> i64 {
        CLOCK.load(Ordering::SeqCst)
    }

    #[test]
    fn minutes_are_written_when_they_end_and_old_ones_pruned() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("t.db")).unwrap();
        let mut rollups = Rollups::new(store, Duration::from_secs(200)).with_clock(clock);
        let mut state = TelemetryState::new(&["n1".into()], Duration::from_secs(1), 10);
        let now = Instant::now();
        let mut feed = |rollups: &mut Rollups<SqliteStore>, at: i64, seq: u64, busy: u64| {
            CLOCK.store(at, Ordering::SeqCst);
            let sample = NodeSample {
                seq,
                uptime: Some(seq as f64),
                cpu: Some(crate::telemetry::sample::CpuTimes {
                    user: busy,
                    idle: seq * 100 - busy,
                    ..Default::default()
                }),
                ..Default::default()
            };
            state.apply(
                TelemetryEvent::Sample {
                    node: "n1".into(),
                    sample: Box::new(sample),
                },
                now,
            );
            rollups.updated(&state.nodes()[0], Update::Sample, &state);
        };
        // Minute 0: samples 1..3 (CPU 50 % twice after the first).
        feed(&mut rollups, 1_000, 1, 50);
        feed(&mut rollups, 2_000, 2, 100);
        feed(&mut rollups, 3_000, 3, 150);
        // Minute 1 starts: minute 0 is written.
        feed(&mut rollups, 61_000, 4, 200);
        let rows = rollups.store.rollups("n1", 0).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].minute_ms, 0);
        assert_eq!(rows[0].samples, 3);
        assert_eq!(rows[0].cpu_pct_avg, Some(50.0));
        // Minute 4 starts: minute 1 is written; with 200 s of retention minute 0
        // (240 s old) is pruned and minute 1 (180 s old) kept.
        CLOCK.store(4 * 60_000 + 1, Ordering::SeqCst);
        rollups.tick(&state);
        let rows = rollups.store.rollups("n1", 0).unwrap();
        assert_eq!(
            rows.iter().map(|r| r.minute_ms).collect::<Vec<_>>(),
            vec![60_000],
            "minute 1 written; minute 0 is older than the retention"
        );
    }
}
