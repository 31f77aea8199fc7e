//! Live telemetry from every node and agent, streamed over the SSH
//! connections maestro makes, with nothing installed on the nodes.
//!
//! - `sampler.sh`: the node-side POSIX sh program, one per node on one
//!   long-lived exec channel, paced by the controller, reading `/proc` with
//!   shell builtins (CPU, load, memory, root filesystem, network, GPUs
//!   through one long-lived `nvidia-smi --loop-ms`, and each agent's process
//!   and Prometheus metrics from its state file). It ends with its channel.
//! - [`collect`]: one task per node: connect, stream, reconnect with backoff.
//! - [`parse`]: the sampler's records and agents' Prometheus text, robust to
//!   anything a node can send.
//! - [`state`]: ring buffers per node and agent, rates and percentiles
//!   computed here, staleness.
//! - [`rollup`]: one-minute rollups into the store, with retention.
//! - [`export`]: the state as a Prometheus/OpenMetrics registry.
//! - [`summary`]: one moment of the state, rows and aggregates, for a face.
//!
//! [`start`] wires them: collectors feed one hub task that owns the state,
//! advances it every interval and tells each [`Subscriber`] (the rollup
//! writer, `maestro top --json`, ...) what changed. Faces read the shared
//! state through [`Telemetry::state`]. Nothing here prints.

pub mod collect;
pub mod export;
pub mod parse;
pub mod rollup;
pub mod sample;
pub mod state;
pub mod summary;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

pub use collect::CollectorOptions;
pub use state::{
    AgentPoint, Freshness, Link, NodePoint, NodeTelemetry, TelemetryEvent, TelemetryState,
};

use crate::fleet::Cancel;
use crate::fleet::ssh::ConnectSpec;

/// What changed on a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Update {
    Link,
    Header,
    Sample,
}

/// Told about every change, in the hub task, with the state after it.
/// Keep it quick: the hub waits for it.
pub trait Subscriber: Send {
    fn updated(&mut self, node: &NodeTelemetry, update: Update, state: &TelemetryState);
    /// An interval ended (every node's history got a slot).
    fn tick(&mut self, _state: &TelemetryState) {}
    /// The collectors ended (stopped, or each took its samples).
    fn finish(&mut self, _state: &TelemetryState) {}
}

/// Shared, lock-briefly view of the telemetry.
pub type SharedState = Arc<Mutex<TelemetryState>>;

/// Running telemetry: collectors and the hub.
pub struct Telemetry {
    state: SharedState,
    stop: Cancel,
    hub: JoinHandle<Vec<Box<dyn Subscriber>>>,
}

/// Start collecting from `specs`. Must be called inside a tokio runtime.
pub fn start(
    specs: Vec<ConnectSpec>,
    options: CollectorOptions,
    history: usize,
    subscribers: Vec<Box<dyn Subscriber>>,
) -> Telemetry {
    let names: Vec<String> = specs.iter().map(|s| s.node.clone()).collect();
    let state = Arc::new(Mutex::new(TelemetryState::new(
        &names,
        options.interval,
        history,
    )));
    let (tx, rx) = mpsc::unbounded_channel();
    let stop = Cancel::new();
    let interval = options.interval;
    let collectors = collect::spawn(specs, options, tx, stop.clone());
    let hub = tokio::spawn(hub(state.clone(), rx, interval, subscribers, collectors));
    Telemetry { state, stop, hub }
}

impl Telemetry {
    pub fn state(&self) -> SharedState {
        self.state.clone()
    }

    /// Stop every collector (each closes its sampler's channel) and wait
    /// for the hub; returns the subscribers.
    pub async fn stop(self) -> Vec<Box<dyn Subscriber>> {
        self.stop.cancel_all();
        self.hub.await.unwrap_or_default()
    }

    /// Wait until every collector ended by itself (`samples` reached, or
    /// no reconnect after a failure).
    pub async fn finished(self) -> Vec<Box<dyn Subscriber>> {
        self.hub.await.unwrap_or_default()
    }
}

/// Lock the state, surviving a panicked holder (the data is still good).
pub fn lock(state: &SharedState) -> MutexGuard<'_, TelemetryState> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

async fn hub(
    state: SharedState,
    mut events: mpsc::UnboundedReceiver<TelemetryEvent>,
    interval: Duration,
    mut subscribers: Vec<Box<dyn Subscriber>>,
    mut collectors: tokio::task::JoinSet<()>,
) -> Vec<Box<dyn Subscriber>> {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    // The collectors hold the senders: the channel ends when they all did.
    let reaper = tokio::spawn(async move { while collectors.join_next().await.is_some() {} });
    let mut batch = Vec::new();
    loop {
        tokio::select! {
            n = events.recv_many(&mut batch, 1024) => {
                if n == 0 {
                    break;
                }
                let mut s = lock(&state);
                let now = Instant::now();
                for event in batch.drain(..) {
                    let update = match &event {
                        TelemetryEvent::Link { .. } => Update::Link,
                        TelemetryEvent::Header { .. } => Update::Header,
                        TelemetryEvent::Sample { .. } => Update::Sample,
                    };
                    let node = event.node().to_string();
                    s.apply(event, now);
                    if let Some(n) = s.node(&node) {
                        for sub in &mut subscribers {
                            sub.updated(n, update, &s);
                        }
                    }
                }
            }
            _ = ticker.tick() => {
                let mut s = lock(&state);
                s.tick();
                for sub in &mut subscribers {
                    sub.tick(&s);
                }
            }
        }
    }
    let _ = reaper.await;
    let s = lock(&state);
    for sub in &mut subscribers {
        sub.finish(&s);
    }
    drop(s);
    subscribers
}

#[cfg(test)]
mod tests;
