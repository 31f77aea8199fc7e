//! The executor's loop for shared work ([`crate::work`]): nodes are claimed
//! from the store in batches as `--forks` has room, each result is recorded
//! only while this controller still holds the node's claim, claims are
//! renewed while nodes run, and the loop ends when every node of the run is
//! done, whoever did it. The report is then the whole run, read back from
//! the store; the one controller that closes the run sends its
//! `RunFinished`.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::cancel::Cancel;
use super::event::{Event, NodeResult, NodeStatus, Summary};
use super::run::{NodeContext, RunOptions, RunReport, run_one};
use super::ssh::{ConnectSpec, Session};
use crate::bus::EventSink;
use crate::work::Share;

/// How often a controller with nothing to claim looks again: the latency
/// with which it takes over an expired claim or sees the run finished.
const POLL: Duration = Duration::from_millis(100);

pub(super) async fn run_shared<J, F>(
    specs: Vec<ConnectSpec>,
    opts: RunOptions,
    events: EventSink,
    cancel: Cancel,
    job: J,
    share: Arc<Share>,
) -> RunReport
where
    J: Fn(Arc<Session>, NodeContext) -> F + Send + Sync + 'static,
    F: Future<Output = NodeResult> + Send + 'static,
{
    let started = Instant::now();
    let names: Vec<String> = specs.iter().map(|s| s.node.clone()).collect();
    if !share.joined() {
        events.send(Event::RunStarted {
            kind: opts.kind,
            command: opts.description.clone(),
            target: opts.target.clone(),
            nodes: names.clone(),
            forks: opts.forks,
            sot: opts.sot.clone(),
            sot_commit: opts.sot_commit.clone(),
            overrides: opts.overrides.clone(),
        });
    }
    let mut specs: HashMap<String, ConnectSpec> =
        specs.into_iter().map(|s| (s.node.clone(), s)).collect();
    let forks = opts.forks.max(1);
    // Claim when a quarter of the forks is free, not per finished node:
    // one round trip to the store fetches a batch.
    let batch = (forks / 4).max(1);
    // Every claimed node starts at once (the loop claims only what it has
    // room for); the semaphore is run_one's, never waited on.
    let permits = Arc::new(Semaphore::new(forks));
    let job = Arc::new(job);
    let mut tasks: JoinSet<NodeResult> = JoinSet::new();
    let mut running: HashMap<tokio::task::Id, String> = HashMap::new();
    let mut last_renewal = Instant::now();
    let mut store_trouble = false;
    loop {
        if cancel.all_cancelled() {
            break;
        }
        let room = forks - tasks.len();
        let mut claimed = 0;
        if room >= batch || (tasks.is_empty() && room > 0) {
            match share.claim(room) {
                Ok(claims) => {
                    store_trouble = false;
                    for c in claims {
                        claimed += 1;
                        if let Some(from) = &c.taken_from {
                            events.send(Event::Warning {
                                node: Some(c.node.clone()),
                                message: format!(
                                    "taken over from controller {from}, whose claim expired \
                                     (attempt {})",
                                    c.attempts
                                ),
                            });
                        }
                        let Some(spec) = specs.remove(&c.node) else {
                            let mut r = NodeResult::new(&c.node, NodeStatus::Failed);
                            r.error = Some(
                                "not among this controller's target nodes: its SoT or target \
                                 differs from the run's"
                                    .into(),
                            );
                            let handle = tasks.spawn(async move { r });
                            running.insert(handle.id(), c.node);
                            continue;
                        };
                        let ctx = NodeContext::of(&spec, &opts, &cancel, &events);
                        let (permits, job) = (permits.clone(), job.clone());
                        let handle = tasks.spawn(async move {
                            let mut result = run_one(spec, ctx.clone(), permits, job).await;
                            ctx.events.mask_result(&mut result);
                            result
                        });
                        running.insert(handle.id(), c.node);
                    }
                }
                Err(e) => warn_once(&events, &mut store_trouble, &e),
            }
        }
        if tasks.is_empty() && claimed == 0 {
            match share.progress() {
                Ok(p) if p.finished() => break,
                Ok(_) => {}
                Err(e) => warn_once(&events, &mut store_trouble, &e),
            }
            tokio::select! {
                _ = tokio::time::sleep(POLL) => {}
                _ = cancel.all() => {}
            }
            continue;
        }
        let mut done = Vec::new();
        if !tasks.is_empty() {
            tokio::select! {
                joined = tasks.join_next_with_id() => {
                    if let Some(joined) = joined {
                        done.push(finished(joined, &mut running));
                    }
                }
                _ = tokio::time::sleep(POLL) => {}
            }
            while let Some(joined) = tasks.try_join_next_with_id() {
                done.push(finished(joined, &mut running));
            }
        }
        if !done.is_empty() {
            record(&share, &events, done);
        }
        if last_renewal.elapsed() >= share.renew_every() {
            last_renewal = Instant::now();
            if let Err(e) = share.renew() {
                warn_once(&events, &mut store_trouble, &e);
            }
        }
    }
    if cancel.all_cancelled() {
        return stopped(&share, &events, tasks, running, names, started).await;
    }
    let mut results = share.results().unwrap_or_default();
    for name in &names {
        if !results.iter().any(|r| &r.node == name) {
            let mut r = NodeResult::new(name, NodeStatus::Failed);
            r.error = Some("the run's store holds no result for this node".into());
            results.push(r);
        }
    }
    let mut summary = Summary::default();
    for r in &results {
        summary.add(r.status);
    }
    let report = RunReport {
        run_id: events.run_id().to_string(),
        results,
        summary,
        cancelled: false,
        elapsed: started.elapsed(),
    };
    if share.close().unwrap_or(false) {
        events.send(Event::RunFinished {
            summary,
            elapsed_ms: report.elapsed.as_millis() as u64,
            cancelled: false,
            dropped_output: events.dropped(),
        });
    }
    report
}

/// A finished node task's result (a panicked one's is a failure).
fn finished(
    joined: Result<(tokio::task::Id, NodeResult), tokio::task::JoinError>,
    running: &mut HashMap<tokio::task::Id, String>,
) -> NodeResult {
    match joined {
        Ok((id, result)) => {
            running.remove(&id);
            result
        }
        Err(e) => {
            let node = running.remove(&e.id()).unwrap_or_default();
            let mut r = NodeResult::new(&node, NodeStatus::Failed);
            r.error = Some(format!("internal error: the node's task panicked: {e}"));
            r
        }
    }
}

/// Complete the finished nodes; a node this controller no longer held is
/// reported and not recorded (the controller that took it over records it).
fn record(share: &Share, events: &EventSink, done: Vec<NodeResult>) {
    let kept = match share.complete(&done) {
        Ok(kept) => kept,
        Err(e) => {
            // Unrecorded, the claims expire and another controller (or a
            // later `maestro join`) runs these nodes again.
            events.send(Event::Warning {
                node: None,
                message: format!(
                    "{} node result(s) could not be recorded in the shared run ({e}); \
                     their claims will expire and the nodes run again",
                    done.len()
                ),
            });
            return;
        }
    };
    for (result, kept) in done.into_iter().zip(kept) {
        if kept {
            events.send(Event::NodeFinished { result });
        } else {
            events.send(Event::Warning {
                node: Some(result.node.clone()),
                message: format!(
                    "finished here ({}) after its claim expired and another controller took \
                     it over: that controller's result is the run's",
                    result.status.as_str()
                ),
            });
        }
    }
}

/// Ctrl-C on this controller: its running nodes are cancelled, their claims
/// given back for the others, and its report says which nodes it left.
async fn stopped(
    share: &Share,
    events: &EventSink,
    mut tasks: JoinSet<NodeResult>,
    mut running: HashMap<tokio::task::Id, String>,
    names: Vec<String>,
    started: Instant,
) -> RunReport {
    let mut done = Vec::new();
    while let Some(joined) = tasks.join_next_with_id().await {
        done.push(finished(joined, &mut running));
    }
    let (cancelled, ran): (Vec<NodeResult>, Vec<NodeResult>) = done
        .into_iter()
        .partition(|r| r.status == NodeStatus::Cancelled);
    record(share, events, ran);
    let left: Vec<String> = cancelled.iter().map(|r| r.node.clone()).collect();
    let _ = share.release(&left);
    let recorded = share.results().unwrap_or_default();
    let results: Vec<NodeResult> = names
        .iter()
        .map(|name| {
            recorded
                .iter()
                .find(|r| &r.node == name)
                .cloned()
                .unwrap_or_else(|| {
                    let mut r = NodeResult::new(name, NodeStatus::Cancelled);
                    r.error = Some(format!(
                        "left to the other controllers: maestro join {}",
                        share.run_id()
                    ));
                    r
                })
        })
        .collect();
    let mut summary = Summary::default();
    for r in &results {
        summary.add(r.status);
    }
    RunReport {
        run_id: events.run_id().to_string(),
        results,
        summary,
        cancelled: true,
        elapsed: started.elapsed(),
    }
}

fn warn_once(events: &EventSink, already: &mut bool, e: &crate::work::WorkError) {
    if !*already {
        events.send(Event::Warning {
            node: None,
            message: format!("shared run: {e}; retrying"),
        });
        *already = true;
    }
}
