//! The fleet executor: bounded parallelism over nodes, one connection per
//! node for all of its work in a run, and one result per node whatever happens
//! to the others.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::cancel::Cancel;
use super::event::{Event, NodeResult, NodeStatus, RunKind, Summary};
use super::ssh::{ConnectSpec, ExecLimits, ExecOutcome, Session};
use crate::bus::EventSink;

/// Default `--forks`: enough to keep hundreds of nodes busy; each connection
/// costs one file descriptor and about 50 KB.
pub const DEFAULT_FORKS: usize = 100;

#[derive(Debug, Clone)]
pub struct RunOptions {
    /// What kind of run this is, for the store and the faces.
    pub kind: RunKind,
    /// The target pattern as the operator wrote it.
    pub target: String,
    /// What runs, as shown to the operator.
    pub description: String,
    pub forks: usize,
    pub limits: ExecLimits,
    /// The SoT directory the run uses, and its git commit (recorded with the run).
    pub sot: String,
    pub sot_commit: Option<String>,
    /// Admission overrides (break-glass) recorded with the run.
    pub overrides: Vec<String>,
    /// The run's nodes are shared work: claimed from the store in batches
    /// with other controllers ([`crate::work`]) instead of all run here.
    pub share: Option<Arc<crate::work::Share>>,
}

#[derive(Debug, Clone)]
pub struct RunReport {
    pub run_id: String,
    /// One per target node, in target order.
    pub results: Vec<NodeResult>,
    pub summary: Summary,
    pub cancelled: bool,
    pub elapsed: Duration,
}

/// What a per-node job gets besides the session.
#[derive(Clone)]
pub struct NodeContext {
    pub node: String,
    /// The user the session logged in as.
    pub login_user: String,
    pub limits: ExecLimits,
    pub cancel: Cancel,
    pub events: EventSink,
}

impl NodeContext {
    /// The context of `spec`'s node in a run made with `opts`.
    pub(crate) fn of(
        spec: &ConnectSpec,
        opts: &RunOptions,
        cancel: &Cancel,
        events: &EventSink,
    ) -> NodeContext {
        NodeContext {
            node: spec.node.clone(),
            login_user: spec.endpoint.user.clone(),
            limits: opts.limits.clone(),
            cancel: cancel.clone(),
            events: events.clone(),
        }
    }
}

/// Run `command` on every node.
pub async fn run_command(
    specs: Vec<ConnectSpec>,
    command: String,
    opts: RunOptions,
    events: EventSink,
    cancel: Cancel,
) -> RunReport {
    let command = Arc::new(command);
    run_nodes(specs, opts, events, cancel, move |session, ctx| {
        let command = command.clone();
        async move {
            let outcome = session
                .exec(&command, &ctx.limits, &ctx.cancel, &ctx.events)
                .await;
            outcome_to_result(&ctx.node, outcome)
        }
    })
    .await
}

pub fn outcome_to_result(node: &str, o: ExecOutcome) -> NodeResult {
    NodeResult {
        node: node.to_string(),
        status: o.status,
        exit_code: o.exit_code,
        signal: o.signal,
        stdout: o.stdout,
        stderr: o.stderr,
        duration_ms: o.duration.as_millis() as u64,
        error: o.error,
        tasks: Vec::new(),
    }
}

/// Connect to every node (at most `forks` at a time) and run `job` on each
/// session. Emits the whole event sequence on `events` (which names the run)
/// and returns every node's result.
pub async fn run_nodes<J, F>(
    specs: Vec<ConnectSpec>,
    opts: RunOptions,
    events: EventSink,
    cancel: Cancel,
    job: J,
) -> RunReport
where
    J: Fn(Arc<Session>, NodeContext) -> F + Send + Sync + 'static,
    F: Future<Output = NodeResult> + Send + 'static,
{
    if let Some(share) = opts.share.clone() {
        return super::shared::run_shared(specs, opts, events, cancel, job, share).await;
    }
    let run_id = events.run_id().to_string();
    let started = Instant::now();
    events.send(Event::RunStarted {
        kind: opts.kind,
        command: opts.description.clone(),
        target: opts.target.clone(),
        nodes: specs.iter().map(|s| s.node.clone()).collect(),
        forks: opts.forks,
        sot: opts.sot.clone(),
        sot_commit: opts.sot_commit.clone(),
        overrides: opts.overrides.clone(),
    });
    let forks = Arc::new(Semaphore::new(opts.forks.max(1)));
    let job = Arc::new(job);
    let mut tasks = JoinSet::new();
    let names: Vec<String> = specs.iter().map(|s| s.node.clone()).collect();
    for (index, spec) in specs.into_iter().enumerate() {
        let ctx = NodeContext::of(&spec, &opts, &cancel, &events);
        let forks = forks.clone();
        let job = job.clone();
        tasks.spawn(async move {
            let mut result = run_one(spec, ctx.clone(), forks, job).await;
            // What the report holds is masked like what the events carry.
            ctx.events.mask_result(&mut result);
            ctx.events.send(Event::NodeFinished {
                result: result.clone(),
            });
            (index, result)
        });
    }
    let mut results: Vec<Option<NodeResult>> = vec![None; names.len()];
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok((index, result)) => results[index] = Some(result),
            // A panic in one node's task must not lose the others' results;
            // the missing slot is filled below.
            Err(e) => events.send(Event::Warning {
                node: None,
                message: format!("internal error in a node task: {e}"),
            }),
        }
    }
    let results: Vec<NodeResult> = results
        .into_iter()
        .zip(&names)
        .map(|(r, name)| {
            r.unwrap_or_else(|| {
                let mut r = NodeResult::new(name, NodeStatus::Failed);
                r.error = Some("internal error: the node's task panicked".into());
                events.send(Event::NodeFinished { result: r.clone() });
                r
            })
        })
        .collect();
    let mut summary = Summary::default();
    for r in &results {
        summary.add(r.status);
    }
    let report = RunReport {
        run_id,
        results,
        summary,
        cancelled: cancel.all_cancelled(),
        elapsed: started.elapsed(),
    };
    events.send(Event::RunFinished {
        summary,
        elapsed_ms: report.elapsed.as_millis() as u64,
        cancelled: report.cancelled,
        dropped_output: events.dropped(),
    });
    report
}

pub(super) async fn run_one<J, F>(
    spec: ConnectSpec,
    ctx: NodeContext,
    forks: Arc<Semaphore>,
    job: Arc<J>,
) -> NodeResult
where
    J: Fn(Arc<Session>, NodeContext) -> F,
    F: Future<Output = NodeResult>,
{
    let node = spec.node.clone();
    let cancelled = |why: &str| {
        let mut r = NodeResult::new(&node, NodeStatus::Cancelled);
        r.error = Some(why.to_string());
        r
    };
    let _permit = tokio::select! {
        p = forks.acquire_owned() => p.expect("the semaphore is never closed"),
        _ = ctx.cancel.cancelled(&node) => return cancelled("cancelled before it started"),
    };
    let started = Instant::now();
    ctx.events
        .send(Event::NodeConnecting { node: node.clone() });
    let connected = tokio::select! {
        s = Session::connect(&spec, &ctx.events) => s,
        _ = ctx.cancel.cancelled(&node) => return cancelled("cancelled while connecting"),
    };
    let session = match connected {
        Ok(s) => Arc::new(s),
        Err(e) => {
            let mut r = NodeResult::new(&node, NodeStatus::Unreachable);
            r.error = Some(e.to_string());
            r.duration_ms = started.elapsed().as_millis() as u64;
            return r;
        }
    };
    ctx.events.send(Event::NodeConnected {
        node: node.clone(),
        elapsed_ms: started.elapsed().as_millis() as u64,
    });
    ctx.events.send(Event::NodeRunning { node: node.clone() });
    let mut result = job(session.clone(), ctx).await;
    result.duration_ms = started.elapsed().as_millis() as u64;
    if let Ok(session) = Arc::try_unwrap(session) {
        session.close().await;
    }
    result
}
