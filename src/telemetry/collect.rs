//! The collector: one task per node keeps one SSH session with one exec
//! channel running the sampler, asks it for a sample every interval, parses
//! what comes back and reports [`TelemetryEvent`]s. A stream that fails is
//! reported `Down` and reconnected with exponential backoff (1 s doubling to
//! `max_backoff`, with jitter so a fleet that lost its network does not
//! reconnect in lockstep).
//!
//! The controller paces the sampler: it sends a line only when the previous
//! sample has arrived, so a slow node never builds a backlog; an interval
//! without a sample is simply a gap. A sampler that answers nothing for
//! [`HUNG_AFTER_INTERVALS`] intervals is given up and reconnected.

use std::time::Duration;

use russh::ChannelMsg;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::MissedTickBehavior;

use super::parse::{Parsed, StreamParser};
use super::state::{Link, TelemetryEvent};
use crate::bus::EventSink;
use crate::fleet::Cancel;
use crate::fleet::ssh::{ConnectSpec, Session};

/// The node-side program (see its header for the records it prints).
pub const SAMPLER: &str = include_str!("sampler.sh");

/// Intervals without an answer after which a stream is restarted.
pub const HUNG_AFTER_INTERVALS: u32 = 10;

#[derive(Debug, Clone)]
pub struct CollectorOptions {
    pub interval: Duration,
    pub max_backoff: Duration,
    /// Stop each node after this many samples (`maestro top --once`: 2, the
    /// first rates need two).
    pub samples: Option<u64>,
    /// Reconnect after a failure (false: report `Down` once and stop).
    pub reconnect: bool,
}

impl Default for CollectorOptions {
    fn default() -> Self {
        CollectorOptions {
            interval: Duration::from_secs(1),
            max_backoff: Duration::from_secs(30),
            samples: None,
            reconnect: true,
        }
    }
}

/// The sampler as sent: its settings, then the program.
pub fn sampler_script(interval: Duration, root: &str) -> String {
    format!(
        "interval_ms={} root={}\n{SAMPLER}",
        interval.as_millis().max(1),
        crate::fleet::quote::sh_quote(root)
    )
}

/// Start one collector task per node; they report on `events` until
/// `stop` is cancelled (or each reached `options.samples`).
pub fn spawn(
    specs: Vec<ConnectSpec>,
    options: CollectorOptions,
    events: mpsc::UnboundedSender<TelemetryEvent>,
    stop: Cancel,
) -> JoinSet<()> {
    let mut tasks = JoinSet::new();
    for spec in specs {
        let options = options.clone();
        let events = events.clone();
        let stop = stop.clone();
        tasks.spawn(async move { node_loop(spec, options, events, stop).await });
    }
    tasks
}

enum Ended {
    Stopped,
    /// Reached the requested number of samples.
    Done,
    Failed {
        error: String,
        samples: u64,
    },
}

async fn node_loop(
    spec: ConnectSpec,
    options: CollectorOptions,
    events: mpsc::UnboundedSender<TelemetryEvent>,
    stop: Cancel,
) {
    let node = spec.node.clone();
    let send = |link: Link| {
        let _ = events.send(TelemetryEvent::Link {
            node: node.clone(),
            link,
        });
    };
    // Connection events (host keys learned, warnings) are not telemetry.
    let (sink, _discard) = EventSink::channel("telemetry");
    let mut backoff = Duration::from_secs(1);
    loop {
        send(Link::Connecting);
        let connected = tokio::select! {
            c = Session::connect(&spec, &sink) => c,
            _ = stop.cancelled(&node) => return,
        };
        let error = match connected {
            Ok(session) => {
                let ended = stream(&session, &node, &options, &events, &stop).await;
                session.close().await;
                match ended {
                    Ended::Stopped | Ended::Done => return,
                    Ended::Failed { error, samples } => {
                        if samples > 0 {
                            backoff = Duration::from_secs(1);
                        }
                        error
                    }
                }
            }
            Err(e) => e.to_string(),
        };
        let wait = jittered(backoff);
        send(Link::Down {
            error,
            retry_in_ms: if options.reconnect {
                wait.as_millis() as u64
            } else {
                0
            },
        });
        if !options.reconnect {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.cancelled(&node) => return,
        }
        backoff = (backoff * 2).min(options.max_backoff);
    }
}

/// 75–125 % of `d`.
fn jittered(d: Duration) -> Duration {
    let mut b = [0u8; 1];
    rand::fill(&mut b);
    d.mul_f64(0.75 + f64::from(b[0]) / 510.0)
}

async fn stream(
    session: &Session,
    node: &str,
    options: &CollectorOptions,
    events: &mpsc::UnboundedSender<TelemetryEvent>,
    stop: &Cancel,
) -> Ended {
    let failed = |error: String, samples: u64| Ended::Failed { error, samples };
    let script = sampler_script(options.interval, "");
    let mut channel = match session.open_stream(&script).await {
        Ok(c) => c,
        Err(e) => return failed(format!("cannot start the sampler: {e}"), 0),
    };
    let nonce = crate::playbook::compile::new_nonce();
    if let Err(e) = channel.data(format!("{nonce}\n").as_bytes()).await {
        return failed(format!("cannot talk to the sampler: {e}"), 0);
    }
    let mut parser = StreamParser::new(&nonce);
    let mut parsed = Vec::new();
    let mut ticker = tokio::time::interval(options.interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut waiting_for: u32 = 0;
    let mut samples: u64 = 0;
    let ended = loop {
        tokio::select! {
            _ = ticker.tick() => {
                if waiting_for == 0 {
                    if let Err(e) = channel.data(&b"\n"[..]).await {
                        break failed(format!("cannot talk to the sampler: {e}"), samples);
                    }
                    waiting_for = 1;
                } else {
                    waiting_for += 1;
                    if waiting_for > HUNG_AFTER_INTERVALS {
                        break failed(format!(
                            "no sample for {} intervals: the sampler is stuck; restarting it",
                            HUNG_AFTER_INTERVALS
                        ), samples);
                    }
                }
            }
            msg = channel.wait() => match msg {
                Some(ChannelMsg::Data { data }) => {
                    parser.feed(&data, &mut parsed);
                    for p in parsed.drain(..) {
                        let event = match p {
                            Parsed::Header(header) => TelemetryEvent::Header { node: node.to_string(), header },
                            Parsed::Sample(sample) => {
                                waiting_for = 0;
                                samples += 1;
                                TelemetryEvent::Sample { node: node.to_string(), sample }
                            }
                        };
                        let _ = events.send(event);
                    }
                    if options.samples.is_some_and(|n| samples >= n) {
                        break Ended::Done;
                    }
                }
                // The sampler's stderr is not read: it has nothing to say.
                Some(ChannelMsg::ExtendedData { .. }) => {}
                Some(ChannelMsg::ExitStatus { exit_status }) => {
                    break failed(format!("the sampler exited with status {exit_status}"), samples);
                }
                Some(ChannelMsg::ExitSignal { signal_name, .. }) => {
                    break failed(format!("the sampler was killed by {signal_name:?}"), samples);
                }
                Some(_) => {}
                None => break failed("the connection closed".into(), samples),
            },
            _ = stop.cancelled(node) => break Ended::Stopped,
        }
    };
    // End of stdin ends the sampler (and what it started) on the node.
    let _ = channel.eof().await;
    let _ = channel.close().await;
    ended
}
