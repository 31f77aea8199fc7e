//! The event bus: every event the engine reports travels in a run-scoped
//! [`Envelope`] (run id, sequence number, time) over one channel, and one
//! pump fans it out to [`Subscriber`]s — the store, the printer, the `--json`
//! writer, the console, and later the ledger, telemetry views and the API.
//! Producers know nothing about who listens (ripgrep's `Sink` is the model):
//! a new face is a new subscriber, not an edit to every producer.
//!
//! # Backpressure
//! Sending never blocks the engine. Results, task statuses, facts, warnings
//! and run boundaries are never dropped. Bulk node output ([`Event::Output`])
//! is the one kind that can outrun a slow subscriber, so it is bounded: while
//! more than [`BULK_BYTES_IN_FLIGHT`] bytes of output are queued and not yet
//! delivered, further output events are dropped and counted per run. The
//! count is reported in [`Event::RunFinished`] (`dropped_output`). Nothing is
//! lost for the record: each node's output is also captured in its
//! [`crate::fleet::NodeResult`] (up to `--max-output`), which is never dropped.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use serde::Serialize;
use tokio::sync::mpsc;

use crate::fleet::event::{Event, now_ms};

/// Bytes of live output that may wait in the bus before more is dropped.
pub const BULK_BYTES_IN_FLIGHT: usize = 8 << 20;

/// One event of one run, numbered in the order the run produced it.
#[derive(Debug, Clone, Serialize)]
pub struct Envelope {
    pub run_id: Arc<str>,
    /// 1, 2, 3, … within the run.
    pub seq: u64,
    /// Milliseconds since the Unix epoch when the event was produced.
    pub at_ms: i64,
    #[serde(flatten)]
    pub event: Event,
}

/// Output dropped under backpressure, per run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Dropped {
    pub events: u64,
    pub bytes: u64,
}

struct Pressure {
    bytes: AtomicUsize,
}

/// The sending half of the bus: cheap to clone, shared by every run.
#[derive(Clone)]
pub struct Bus {
    tx: mpsc::UnboundedSender<Envelope>,
    pressure: Arc<Pressure>,
}

/// The receiving half: the pump reads it.
pub struct BusReceiver {
    rx: mpsc::UnboundedReceiver<Envelope>,
    pressure: Arc<Pressure>,
}

impl Bus {
    pub fn new() -> (Bus, BusReceiver) {
        let (tx, rx) = mpsc::unbounded_channel();
        let pressure = Arc::new(Pressure {
            bytes: AtomicUsize::new(0),
        });
        (
            Bus {
                tx,
                pressure: pressure.clone(),
            },
            BusReceiver { rx, pressure },
        )
    }

    /// A sink for the events of run `run_id`.
    pub fn run(&self, run_id: &str) -> EventSink {
        EventSink {
            bus: self.clone(),
            scope: Arc::new(Scope {
                run_id: Arc::from(run_id),
                seq: AtomicU64::new(0),
                dropped_events: AtomicU64::new(0),
                dropped_bytes: AtomicU64::new(0),
            }),
            mask: Arc::from(Vec::new()),
        }
    }
}

impl BusReceiver {
    pub async fn recv(&mut self) -> Option<Envelope> {
        let e = self.rx.recv().await?;
        self.delivered(&e);
        Some(e)
    }

    /// For a subscriber on a blocking thread (the console's store writer).
    pub fn blocking_recv(&mut self) -> Option<Envelope> {
        let e = self.rx.blocking_recv()?;
        self.delivered(&e);
        Some(e)
    }

    fn delivered(&self, e: &Envelope) {
        if let Event::Output { data, .. } = &e.event {
            self.pressure.bytes.fetch_sub(data.len(), Ordering::Relaxed);
        }
    }
}

struct Scope {
    run_id: Arc<str>,
    seq: AtomicU64,
    dropped_events: AtomicU64,
    dropped_bytes: AtomicU64,
}

/// Where one run reports its events. Sending never blocks and never fails
/// the engine: a face that went away simply stops receiving.
#[derive(Clone)]
pub struct EventSink {
    bus: Bus,
    scope: Arc<Scope>,
    /// Values never shown or stored (secret variables, a become password):
    /// replaced by `****` in every event this sink sends and in the results
    /// it masks ([`EventSink::mask_result`]).
    mask: Arc<[String]>,
}

impl EventSink {
    /// A sink on a bus of its own, for tests and benchmarks.
    pub fn channel(run_id: &str) -> (EventSink, BusReceiver) {
        let (bus, rx) = Bus::new();
        (bus.run(run_id), rx)
    }

    pub fn run_id(&self) -> &str {
        &self.scope.run_id
    }

    /// The same sink with `values` masked. Values shorter than four
    /// characters are left alone: masking them would garble ordinary text.
    pub fn with_mask(mut self, values: Vec<String>) -> EventSink {
        let mut values: Vec<String> = values.into_iter().filter(|v| v.len() >= 4).collect();
        // Longest first, so a value containing another is masked whole.
        values.sort_by_key(|v| std::cmp::Reverse(v.len()));
        values.dedup();
        self.mask = Arc::from(values);
        self
    }

    fn mask_text(&self, text: &mut String) {
        for v in self.mask.iter() {
            if text.contains(v.as_str()) {
                *text = text.replace(v.as_str(), crate::secrets::MASK);
            }
        }
    }

    fn mask_bytes(&self, bytes: &mut Vec<u8>) {
        for v in self.mask.iter() {
            let needle = v.as_bytes();
            if bytes.windows(needle.len()).any(|w| w == needle) {
                let mut out = Vec::with_capacity(bytes.len());
                let mut i = 0;
                while i < bytes.len() {
                    if bytes[i..].starts_with(needle) {
                        out.extend_from_slice(crate::secrets::MASK.as_bytes());
                        i += needle.len();
                    } else {
                        out.push(bytes[i]);
                        i += 1;
                    }
                }
                *bytes = out;
            }
        }
    }

    /// Mask this sink's values in a node's result (its output, its tasks'
    /// messages, output and diffs, its error).
    pub fn mask_result(&self, r: &mut crate::fleet::event::NodeResult) {
        if self.mask.is_empty() {
            return;
        }
        self.mask_bytes(&mut r.stdout.bytes);
        self.mask_bytes(&mut r.stderr.bytes);
        if let Some(e) = &mut r.error {
            self.mask_text(e);
        }
        for t in &mut r.tasks {
            self.mask_task(t);
        }
    }

    fn mask_task(&self, t: &mut crate::fleet::event::TaskResult) {
        self.mask_text(&mut t.message);
        for s in [&mut t.diff, &mut t.output].into_iter().flatten() {
            self.mask_text(s);
        }
    }

    pub fn send(&self, mut event: Event) {
        if !self.mask.is_empty() {
            match &mut event {
                Event::Output { data, .. } => self.mask_bytes(data),
                Event::TaskFinished { task, .. } => self.mask_task(task),
                Event::NodeFinished { result } => self.mask_result(result),
                Event::Warning { message, .. } => self.mask_text(message),
                Event::RunStarted { command, .. } => self.mask_text(command),
                _ => {}
            }
        }
        if let Event::Output { data, .. } = &event {
            let queued = self
                .bus
                .pressure
                .bytes
                .fetch_add(data.len(), Ordering::Relaxed);
            if queued + data.len() > BULK_BYTES_IN_FLIGHT {
                self.bus
                    .pressure
                    .bytes
                    .fetch_sub(data.len(), Ordering::Relaxed);
                self.scope.dropped_events.fetch_add(1, Ordering::Relaxed);
                self.scope
                    .dropped_bytes
                    .fetch_add(data.len() as u64, Ordering::Relaxed);
                return;
            }
        }
        let envelope = Envelope {
            run_id: self.scope.run_id.clone(),
            seq: self.scope.seq.fetch_add(1, Ordering::Relaxed) + 1,
            at_ms: now_ms(),
            event,
        };
        if let Err(mpsc::error::SendError(e)) = self.bus.tx.send(envelope)
            && let Event::Output { data, .. } = &e.event
        {
            self.bus
                .pressure
                .bytes
                .fetch_sub(data.len(), Ordering::Relaxed);
        }
    }

    /// Output dropped so far under backpressure.
    pub fn dropped(&self) -> Dropped {
        Dropped {
            events: self.scope.dropped_events.load(Ordering::Relaxed),
            bytes: self.scope.dropped_bytes.load(Ordering::Relaxed),
        }
    }
}

/// Why a subscriber stopped taking events.
#[derive(Debug, thiserror::Error)]
#[error("{subscriber}: {message}")]
pub struct SubscriberError {
    pub subscriber: &'static str,
    pub message: String,
}

/// Something that takes the bus's events: the store, a printer, the console.
pub trait Subscriber: Send {
    /// A short name for error messages (`run store`, `printer`).
    fn name(&self) -> &'static str;
    /// Take one event. An error stops delivery to this subscriber only; the
    /// pump reports it when the bus closes.
    fn event(&mut self, envelope: &Envelope) -> Result<(), SubscriberError>;
    /// Called about twice a second while events flow (progress displays).
    fn tick(&mut self) {}
}

/// Deliver every event to every subscriber until all senders are gone; the
/// errors of subscribers that gave up, in the order they failed.
pub async fn pump(
    mut rx: BusReceiver,
    subscribers: &mut [&mut dyn Subscriber],
) -> Vec<SubscriberError> {
    let mut failed: Vec<Option<SubscriberError>> = subscribers.iter().map(|_| None).collect();
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(500));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            e = rx.recv() => match e {
                Some(e) => deliver(&e, subscribers, &mut failed),
                None => break,
            },
            _ = tick.tick() => {
                for (s, f) in subscribers.iter_mut().zip(&failed) {
                    if f.is_none() {
                        s.tick();
                    }
                }
            }
        }
    }
    failed.into_iter().flatten().collect()
}

/// [`pump`] for a blocking thread.
pub fn pump_blocking(
    mut rx: BusReceiver,
    subscribers: &mut [&mut dyn Subscriber],
) -> Vec<SubscriberError> {
    let mut failed: Vec<Option<SubscriberError>> = subscribers.iter().map(|_| None).collect();
    while let Some(e) = rx.blocking_recv() {
        deliver(&e, subscribers, &mut failed);
    }
    failed.into_iter().flatten().collect()
}

fn deliver(
    e: &Envelope,
    subscribers: &mut [&mut dyn Subscriber],
    failed: &mut [Option<SubscriberError>],
) {
    for (s, f) in subscribers.iter_mut().zip(failed.iter_mut()) {
        if f.is_none()
            && let Err(err) = s.event(e)
        {
            *f = Some(err);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::event::Stream;

    struct Collect(Vec<(String, u64)>);
    impl Subscriber for Collect {
        fn name(&self) -> &'static str {
            "collect"
        }
        fn event(&mut self, e: &Envelope) -> Result<(), SubscriberError> {
            self.0.push((e.run_id.to_string(), e.seq));
            Ok(())
        }
    }

    struct FailsAfter(usize);
    impl Subscriber for FailsAfter {
        fn name(&self) -> &'static str {
            "fails"
        }
        fn event(&mut self, _: &Envelope) -> Result<(), SubscriberError> {
            if self.0 == 0 {
                return Err(SubscriberError {
                    subscriber: "fails",
                    message: "disk full".into(),
                });
            }
            self.0 -= 1;
            Ok(())
        }
    }

    #[tokio::test]
    async fn runs_are_numbered_apart_and_a_failing_subscriber_does_not_stop_the_others() {
        let (bus, rx) = Bus::new();
        let a = bus.run("run-a");
        let b = bus.run("run-b");
        for i in 0..3 {
            a.send(Event::NodeConnecting {
                node: format!("a{i}"),
            });
            b.send(Event::NodeConnecting {
                node: format!("b{i}"),
            });
        }
        drop((bus, a, b));
        let mut collect = Collect(Vec::new());
        let mut fails = FailsAfter(2);
        let errors = pump(rx, &mut [&mut collect, &mut fails]).await;
        let seqs = |run: &str| -> Vec<u64> {
            collect
                .0
                .iter()
                .filter(|(r, _)| r == run)
                .map(|(_, s)| *s)
                .collect()
        };
        assert_eq!(seqs("run-a"), [1, 2, 3]);
        assert_eq!(seqs("run-b"), [1, 2, 3]);
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].to_string(), "fails: disk full");
    }

    #[tokio::test]
    async fn bulk_output_is_dropped_and_counted_under_pressure_but_results_never_are() {
        let (events, mut rx) = EventSink::channel("run-1");
        let chunk = vec![b'x'; 1 << 20];
        for _ in 0..20 {
            events.send(Event::Output {
                node: "n1".into(),
                stream: Stream::Stdout,
                data: chunk.clone(),
            });
        }
        events.send(Event::NodeConnecting { node: "n1".into() });
        let dropped = events.dropped();
        assert_eq!(dropped.events, 12, "8 MiB in flight, 12 of 20 MiB dropped");
        assert_eq!(dropped.bytes, 12 << 20);
        drop(events);
        let mut outputs = 0;
        let mut others = 0;
        while let Some(e) = rx.recv().await {
            match e.event {
                Event::Output { .. } => outputs += 1,
                _ => others += 1,
            }
        }
        assert_eq!((outputs, others), (8, 1));
        // Once delivered, output flows again.
        let (events, mut rx) = EventSink::channel("run-2");
        for _ in 0..20 {
            events.send(Event::Output {
                node: "n1".into(),
                stream: Stream::Stdout,
                data: chunk.clone(),
            });
            rx.recv().await.unwrap();
        }
        assert_eq!(events.dropped(), Dropped::default());
    }
}
