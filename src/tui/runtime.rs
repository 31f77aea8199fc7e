//! The event loop: one `tokio::select!` over the terminal's events, the
//! results of background work (store reads, plans and runs through the
//! operations layer) and a tick; the frame is redrawn when something
//! changed. The console has one bus for all its runs: a recorder on a
//! blocking thread writes each event to the store, then hands it to the app.
//! Store reads and engine work run in tokio tasks, so drawing never waits.

use crate::tui::components::ledger::LedgerData;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use crossterm::event::{Event as TermEvent, EventStream, KeyEventKind};
use futures_util::StreamExt;
use ratatui::Terminal;
use ratatui::backend::Backend;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc::{UnboundedSender, unbounded_channel};

use super::action::{ExecPlan, Job, KillPlan};
use super::app::{App, Effect, Msg, Planned};
use super::components::run::RunDetail;
use super::components::runs::RUNS_SHOWN;
use crate::bus::{Bus, BusReceiver, Envelope, Subscriber, SubscriberError, pump_blocking};
use crate::fleet::Cancel;
use crate::fleet::event::{new_run_id, now_ms};
use crate::fleet::resolve::ConnectOptions;
use crate::fleet::ssh::ExecLimits;
use crate::ops::{
    self, Decision, Gate, JobRequest, JobSpec, Launch, Outcome, PlaySettings, Prepared, SotSource,
    Targets,
};
use crate::store::Store;

/// Recent runs shown in the node view.
const NODE_HISTORY: usize = 50;
/// How long quitting waits for a cancelled run to end (and be recorded).
const QUIT_GRACE: Duration = Duration::from_secs(5);

/// What runs started from the console use: the same engine inputs as
/// `maestro exec`, and the gate every job passes.
#[derive(Clone)]
pub struct ExecContext {
    pub source: SotSource,
    pub connect: ConnectOptions,
    pub forks: usize,
    pub limits: ExecLimits,
    pub gate: Arc<Gate>,
}

/// The job a confirmed plan stands for, on exactly its pinned nodes: the
/// same request `maestro exec`, `play`, `install` or `harden --audit` makes.
pub fn job_request(ctx: &ExecContext, plan: &ExecPlan) -> JobRequest {
    let job = match &plan.job {
        Job::Command => JobSpec::Exec {
            command: plan.command.clone(),
        },
        Job::Playbook(name) => JobSpec::Play {
            playbook: name.clone(),
        },
        Job::Install(profile) => JobSpec::Install {
            profile: profile.clone(),
        },
        Job::HardenAudit(baseline) => JobSpec::Harden {
            apply: false,
            baseline: Some(baseline.clone()),
            profile: None,
            section: None,
        },
        Job::Deploy(agent) => JobSpec::Deploy {
            agent: agent.clone(),
            version: None,
            slot: crate::agent::Slot::Primary,
        },
        Job::Enable(agent) => JobSpec::Enable {
            agent: agent.clone(),
        },
    };
    JobRequest {
        job,
        targets: Targets::Nodes(plan.nodes.clone()),
        settings: PlaySettings::default(),
        connect: ctx.connect.clone(),
        forks: ctx.forks,
        limits: ctx.limits.clone(),
        lessons: Vec::new(),
    }
}

/// Prepare off the event loop (ssh_config and known_hosts are files).
async fn prepare(ctx: &ExecContext, plan: &ExecPlan) -> Result<Prepared, String> {
    let source = ctx.source.clone();
    let request = job_request(ctx, plan);
    tokio::task::spawn_blocking(move || ops::prepare(source, request))
        .await
        .map_err(|e| format!("preparing the job: {e}"))?
        .map_err(|e| e.to_string())
}

/// The plan the confirmation shows: the gate's answer and, when it admits
/// the job, the operations layer's plan (a check-mode run for playbooks).
pub async fn plan_exec(
    ctx: &ExecContext,
    plan: &ExecPlan,
    launch: &Launch,
) -> Result<(Planned, Vec<String>), String> {
    let prepared = prepare(ctx, plan).await?;
    let warnings = prepared.warnings().to_vec();
    let policy = match ctx.gate.policy_answer(&prepared) {
        Some(Ok(a)) => Some(Planned::policy_line(&a)),
        Some(Err(e)) => Some(format!("cannot ask the policies: {e}")),
        None => None,
    };
    let lessons = crate::reflect::lesson::confirmation_lines(&prepared.lessons_in_scope());
    let planned = match ctx.gate.admit(&prepared) {
        Decision::Refused(r) => Planned {
            plan: None,
            refusal: Some(r),
            policy,
            lessons,
        },
        Decision::Allow => Planned {
            plan: Some(prepared.plan(launch).await),
            refusal: None,
            policy,
            lessons,
        },
    };
    Ok((planned, warnings))
}

/// Run a confirmed plan through the operations layer, exactly as the CLI
/// does. Errors are what stopped the run from starting.
pub async fn run_exec(
    ctx: &ExecContext,
    plan: ExecPlan,
    launch: Launch,
) -> Result<Outcome, String> {
    let prepared = prepare(ctx, &plan).await?;
    prepared
        .apply(&ctx.gate, &launch)
        .await
        .map_err(|e| e.to_string())
}

/// Where the loop reads and records runs.
pub struct Stores {
    pub db: PathBuf,
}

/// Everything the background work shares.
struct Shared {
    stores: Stores,
    ctx: ExecContext,
    bus: Bus,
    /// The views' connection to the store, opened by the first read and
    /// kept, so a team's PostgreSQL store sees one connection per console
    /// rather than one per refresh; a read that fails drops it and the next
    /// read opens it again.
    reader: std::sync::Mutex<Option<Box<dyn Store>>>,
}

pub async fn event_loop<B: Backend>(
    terminal: &mut Terminal<B>,
    mut app: App,
    ctx: ExecContext,
    stores: Stores,
) -> anyhow::Result<()>
where
    B::Error: Send + Sync + 'static,
{
    let (tx, mut rx) = unbounded_channel::<Msg>();
    let (bus, bus_rx) = Bus::new();
    start_recorder(bus_rx, &stores, tx.clone());
    let shared = Arc::new(Shared {
        stores,
        ctx,
        bus,
        reader: std::sync::Mutex::new(None),
    });
    let mut terminal_events = EventStream::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    // A closed terminal (SIGHUP) or a polite kill (SIGTERM) ends the console
    // like q does, so a run in flight is cancelled and recorded, and the
    // demo still removes its files.
    let mut hangup = signal(SignalKind::hangup()).context("listening for SIGHUP")?;
    let mut terminate = signal(SignalKind::terminate()).context("listening for SIGTERM")?;
    app.set_now(now_ms());
    let mut dirty = true;
    loop {
        for effect in app.take_effects() {
            perform(effect, &tx, &shared);
        }
        if app.should_quit() {
            break;
        }
        if dirty {
            terminal.draw(|f| app.draw(f))?;
            dirty = false;
        }
        tokio::select! {
            event = terminal_events.next() => match event {
                Some(Ok(TermEvent::Key(key))) if key.kind != KeyEventKind::Release => {
                    app.set_now(now_ms());
                    app.handle_key(key);
                    dirty = true;
                }
                Some(Ok(TermEvent::Resize(..))) => dirty = true,
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(anyhow::Error::new(e).context("reading the terminal")),
                None => break,
            },
            Some(msg) = rx.recv() => {
                app.set_now(now_ms());
                app.on_msg(msg);
                dirty = true;
            }
            _ = tick.tick() => {
                app.set_now(now_ms());
                dirty = true;
            }
            _ = hangup.recv() => app.quit_now(),
            _ = terminate.recv() => app.quit_now(),
        }
    }
    // A run cancelled by quitting: let it end so the store records it.
    let deadline = tokio::time::Instant::now() + QUIT_GRACE;
    while app.run_in_flight() {
        tokio::select! {
            Some(msg) = rx.recv() => app.on_msg(msg),
            _ = tokio::time::sleep_until(deadline) => break,
        }
    }
    Ok(())
}

/// The console's subscriber: the store first (so a run the app shows as
/// finished is recorded), then the app.
struct Recorder {
    store: Option<Box<dyn Store>>,
    tx: UnboundedSender<Msg>,
}

impl Subscriber for Recorder {
    fn name(&self) -> &'static str {
        "console"
    }

    fn event(&mut self, envelope: &Envelope) -> Result<(), SubscriberError> {
        if let Some(store) = &mut self.store
            && let Err(e) = store.record(envelope)
        {
            let _ = self.tx.send(Msg::Warning(format!(
                "runs are no longer recorded in {}: {e}",
                store.location()
            )));
            self.store = None;
        }
        let _ = self.tx.send(Msg::Engine(envelope.clone()));
        Ok(())
    }
}

fn start_recorder(rx: BusReceiver, stores: &Stores, tx: UnboundedSender<Msg>) {
    let store = match crate::store::open_path(&stores.db) {
        Ok(s) => Some(s),
        Err(e) => {
            let _ = tx.send(Msg::Warning(format!("runs are not recorded: {e}")));
            None
        }
    };
    let mut recorder = Recorder { store, tx };
    std::thread::spawn(move || pump_blocking(rx, &mut [&mut recorder]));
}

/// Carry out one effect in the background; its result comes back as a [`Msg`].
fn perform(effect: Effect, tx: &UnboundedSender<Msg>, shared: &Arc<Shared>) {
    let tx = tx.clone();
    let db = shared.stores.db.clone();
    match effect {
        Effect::LoadLastResults => read_store(shared, tx, |s| s.last_results(), Msg::LastResults),
        Effect::LoadRuns => read_store(shared, tx, |s| s.runs(RUNS_SHOWN), Msg::Runs),
        Effect::LoadRun(id) => {
            let wanted = id.clone();
            read_store(
                shared,
                tx,
                move |s| load_run(s, &wanted),
                |result| Msg::Run { result, id },
            )
        }
        Effect::LoadNodeHistory(node) => {
            let (tx2, node2, wanted, wanted2) =
                (tx.clone(), node.clone(), node.clone(), node.clone());
            read_store(
                shared,
                tx,
                move |s| s.node_history(&wanted, NODE_HISTORY),
                |result| Msg::NodeHistory { result, node },
            );
            read_store(
                shared,
                tx2,
                move |s| {
                    Ok(crate::tui::components::node::NodeCompliance {
                        history: s.compliance_history(&wanted2, NODE_HISTORY)?,
                        first: s.first_compliance(&wanted2)?,
                    })
                },
                |result| Msg::NodeCompliance {
                    result,
                    node: node2,
                },
            )
        }
        Effect::LoadAgents => {
            let shared = Arc::clone(shared);
            tokio::spawn(async move {
                let result = agent_status(&shared).await;
                let _ = tx.send(Msg::Agents(result));
            });
        }
        Effect::StartTelemetry => {
            let shared = Arc::clone(shared);
            tokio::spawn(async move { stream_telemetry(&shared, tx).await });
        }
        Effect::Plan(plan) => {
            let shared = Arc::clone(shared);
            tokio::spawn(async move {
                let launch = Launch {
                    bus: shared.bus.clone(),
                    cancel: Cancel::new(),
                    run_id: new_run_id(),
                };
                let result =
                    plan_exec(&shared.ctx, &plan, &launch)
                        .await
                        .map(|(planned, warnings)| {
                            for w in warnings {
                                let _ = tx.send(Msg::Warning(w));
                            }
                            planned
                        });
                let _ = tx.send(Msg::Planned { plan, result });
            });
        }
        Effect::StartExec {
            plan,
            cancel,
            run_id,
        } => {
            let shared = Arc::clone(shared);
            tokio::spawn(async move {
                let launch = Launch {
                    bus: shared.bus.clone(),
                    cancel,
                    run_id,
                };
                let error = run_exec(&shared.ctx, plan, launch).await.err();
                let _ = tx.send(Msg::RunEnded { error });
            });
        }
        Effect::LoadLedger => {
            let root = shared.ctx.source.sot.root.clone();
            tokio::task::spawn_blocking(move || {
                let _ = tx.send(Msg::Ledger(load_ledger(&db, &root)));
            });
        }
        Effect::LoadApprovals => {
            let sot = shared.ctx.source.sot.clone();
            tokio::task::spawn_blocking(move || {
                let _ = tx.send(Msg::Approvals(
                    crate::approval::list(&db, &sot, true).map_err(|e| e.to_string()),
                ));
            });
        }
        Effect::Approve(plan) => {
            let sot = shared.ctx.source.sot.clone();
            tokio::spawn(async move {
                let _ = tx.send(Msg::Approved(approve(&db, &sot, &plan).await));
            });
        }
        Effect::LoadReflections => {
            let root = shared.ctx.source.sot.root.clone();
            tokio::task::spawn_blocking(move || {
                let _ = tx.send(Msg::Reflections(load_reflections(&db, &root)));
            });
        }
        Effect::LoadLessons => {
            let root = shared.ctx.source.sot.root.clone();
            tokio::task::spawn_blocking(move || {
                let lessons = crate::sot::load(&root)
                    .map_err(|e| e.to_string())
                    .and_then(|sot| {
                        let store = crate::store::open_path(&db).map_err(|e| e.to_string())?;
                        crate::reflect::lesson::statuses(&sot, &*store, crate::reflect::now_ms())
                            .map_err(|e| e.to_string())
                    });
                let _ = tx.send(Msg::Lessons(lessons));
            });
        }
        Effect::AnswerReflection(submitted) => {
            let root = shared.ctx.source.sot.root.clone();
            let actor = shared.ctx.gate.actor().clone();
            tokio::task::spawn_blocking(move || {
                let result = crate::reflect::answer::answer(
                    &root,
                    &db,
                    &submitted.id,
                    &submitted.answers,
                    &actor,
                )
                .map(|a| a.summary())
                .map_err(|e| e.to_string().replace('\n', " · "));
                let _ = tx.send(Msg::ReflectionAnswered(result));
            });
        }
        Effect::LoadRollouts => read_store(shared, tx, |s| load_rollouts(s), Msg::Rollouts),
        Effect::Rollout(plan) => {
            let shared = Arc::clone(shared);
            tokio::spawn(async move {
                let result = run_rollout_verb(&shared, plan).await;
                let _ = tx.send(Msg::RolloutDone(result));
            });
        }
        Effect::Kill(plan) => {
            let shared = Arc::clone(shared);
            tokio::spawn(async move {
                let error = run_kill(&shared, plan, &tx).await.err();
                let _ = tx.send(Msg::KillEnded { error });
            });
        }
    }
}

/// Engage the kill switch in the SoT (the same change `maestro kill`
/// commits), then stop the agent on exactly the plan's nodes through the
/// operations layer, with the SoT as committed (the nodes' markers say who
/// engaged it and why).
async fn run_kill(
    shared: &Shared,
    plan: KillPlan,
    tx: &UnboundedSender<Msg>,
) -> Result<(), String> {
    // The policies decide before anything is committed, as `maestro kill`.
    if let Some(policies) = shared.ctx.source.sot.policies.as_deref() {
        let actor = shared.ctx.gate.actor().clone();
        let answer = policies
            .decide(
                &crate::policy::Question {
                    actor: &actor,
                    action: "kill",
                    agent: (plan.agent != crate::killswitch::ALL).then_some(plan.agent.as_str()),
                    nodes: &plan.nodes,
                    context: crate::policy::JobContext::now(plan.nodes.len(), true),
                },
                &shared.ctx.source.sot,
            )
            .map_err(|e| e.to_string())?;
        if !answer.allowed() {
            let why = format!(
                "denied by policy, nothing was committed: {}",
                crate::policy::denial(&actor, &answer, policies).join(" · ")
            );
            let _ = tx.send(Msg::KillEngaged(Err(why.clone())));
            return Err(why);
        }
    }
    let root = shared.ctx.source.sot.root.clone();
    let label = shared.ctx.source.label.clone();
    let agent = plan.agent.clone();
    let limit = (!plan.whole_fleet).then(|| plan.nodes.join(","));
    let reason = plan.reason.clone();
    let db = shared.stores.db.clone();
    let engaged = tokio::task::spawn_blocking(move || {
        let intent = crate::sot::change::Intent {
            reason,
            actor: std::env::var("MAESTRO_ACTOR").ok(),
            wait: crate::sot::lock::DEFAULT_WAIT,
        };
        let engagement =
            crate::killswitch::change::engage(&root, &agent, limit.as_deref(), &intent)?;
        let commit = match &engagement {
            crate::killswitch::change::Engagement::Committed { commit, .. } => {
                Some(commit.commit.clone())
            }
            crate::killswitch::change::Engagement::Already(_) => None,
        };
        // Committed is what counts; the store only carries it to the other
        // controllers sooner than a pull, and the kill job runs either way.
        let _ = crate::killswitch::publish(&db, engagement.engaged(), commit.as_deref());
        let sot = crate::sot::load(&root)?;
        Ok::<_, crate::sot::SotError>((engagement, SotSource::new(Arc::new(sot), &root)))
    })
    .await
    .map_err(|e| format!("engaging the kill switch: {e}"))?;
    let (engagement, mut source) = match engaged {
        Ok(e) => e,
        Err(e) => {
            let _ = tx.send(Msg::KillEngaged(Err(e.to_string())));
            return Err(e.to_string());
        }
    };
    source.label = label;
    let commit = match &engagement {
        crate::killswitch::change::Engagement::Committed { commit, .. } => {
            Some(commit.commit.clone())
        }
        crate::killswitch::change::Engagement::Already(_) => None,
    };
    let _ = tx.send(Msg::KillEngaged(Ok((engagement.engaged().clone(), commit))));
    let request = JobRequest {
        job: JobSpec::Kill {
            agent: plan.agent.clone(),
            release: false,
        },
        targets: Targets::Nodes(plan.nodes.clone()),
        settings: PlaySettings::default(),
        connect: shared.ctx.connect.clone(),
        forks: shared.ctx.forks,
        limits: shared.ctx.limits.clone(),
        lessons: Vec::new(),
    };
    let prepared = tokio::task::spawn_blocking(move || ops::prepare(source, request))
        .await
        .map_err(|e| format!("preparing the kill: {e}"))?
        .map_err(|e| e.to_string())?;
    let launch = Launch {
        bus: shared.bus.clone(),
        cancel: Cancel::new(),
        run_id: plan.run_id,
    };
    prepared
        .apply(&shared.ctx.gate, &launch)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Open the store off the event loop, read, and send the result back.
/// Every rollout (newest first, at most 50) as the Rollouts view shows it.
fn load_rollouts(store: &dyn Store) -> crate::store::Result<Vec<crate::rollout::view::Overview>> {
    let mut out = Vec::new();
    for r in store.rollouts(50)? {
        let journal = store.journal(&r.id)?;
        let measurements = store.measurements(&r.id)?;
        out.push(crate::rollout::view::Overview::new(
            &r,
            &journal,
            measurements,
        ));
    }
    Ok(out)
}

/// A confirmed rollout verb, through the same engine functions as
/// `maestro rollout promote|abort|undo` (promote and undo pass the
/// console's gate).
async fn run_rollout_verb(
    shared: &Shared,
    plan: crate::tui::action::RolloutPlan,
) -> Result<String, String> {
    use crate::rollout::verbs::{self, Done};
    use crate::tui::action::RolloutVerb;
    let settings = crate::rollout::Settings {
        connect: shared.ctx.connect.clone(),
        forks: shared.ctx.forks,
        limits: shared.ctx.limits.clone(),
        db: shared.stores.db.clone(),
        actor: shared.ctx.gate.actor().clone(),
    };
    let launch = Launch {
        bus: shared.bus.clone(),
        cancel: Cancel::new(),
        run_id: new_run_id(),
    };
    // The view reads progress from the store; the events are not needed here.
    let (events, mut rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move { while rx.recv().await.is_some() {} });
    let source = shared.ctx.source.clone();
    let gate = &shared.ctx.gate;
    let done = match plan.verb {
        RolloutVerb::Promote => {
            verbs::promote(source, settings, &plan.id, false, gate, launch, events).await
        }
        RolloutVerb::Abort => verbs::abort(source, settings, &plan.id, launch, events).await,
        RolloutVerb::Undo => verbs::undo(source, settings, &plan.id, None, gate, launch, events)
            .await
            .map(|(e, r)| Done::Drove(e, r)),
    };
    match done {
        Ok(Done::Drove(ended, r)) => Ok(format!("rollout {}: {} ({ended:?})", r.id, r.status)),
        Ok(Done::Asked(r)) => Ok(format!(
            "asked the controller of {} to {}",
            r.id,
            plan.verb.as_str()
        )),
        Err(e) => Err(format!("rollout {} {}: {e}", plan.id, plan.verb.as_str())),
    }
}

/// The ledger's newest 200 entries (newest first) and its verification
/// against the SoT's checkpoints.
fn load_ledger(db: &Path, root: &Path) -> Result<LedgerData, String> {
    let place = crate::ops::evidence::ledger_place(db);
    let mut entries = crate::ledger::read(&place, None).map_err(|e| e.to_string())?;
    let skip = entries.len().saturating_sub(200);
    entries.drain(..skip);
    entries.reverse();
    let verify = crate::ledger::verify_against_sot(&place, root)
        .map(|v| v.report)
        .map_err(|e| e.to_string());
    Ok(LedgerData { entries, verify })
}

/// `maestro approve ID` from the console: the request's plan signed with
/// the operator's key file (MAESTRO_IDENTITY) or ssh-agent.
async fn approve(
    db: &Path,
    sot: &crate::sot::Sot,
    plan: &crate::tui::action::ApprovePlan,
) -> Result<String, String> {
    use crate::identity::{self, APPROVAL_NAMESPACE};
    let (message, expires) =
        crate::approval::signing_message(db, sot, &plan.id).map_err(|e| e.to_string())?;
    let signature = match std::env::var_os("MAESTRO_IDENTITY").filter(|v| !v.is_empty()) {
        Some(path) => identity::Signer::from_file(Path::new(&path))
            .and_then(|s| s.sign(APPROVAL_NAMESPACE, &message)),
        None => identity::sign_with_agent(sot, APPROVAL_NAMESPACE, &message).await,
    }
    .map_err(|e| e.to_string())?;
    let signed = crate::approval::add_signature(db, sot, &plan.id, expires, &signature)
        .map_err(|e| e.to_string())?;
    Ok(format!(
        "{} approved {}: {} of {} valid approvals",
        signed.person, signed.approval, signed.valid, signed.quorum
    ))
}

/// `read` on the views' store connection (opened first if need be) in the
/// background; its result comes back as the [`Msg`] `msg` makes of it.
fn read_store<T: Send + 'static>(
    shared: &Arc<Shared>,
    tx: UnboundedSender<Msg>,
    read: impl FnOnce(&dyn Store) -> crate::store::Result<T> + Send + 'static,
    msg: impl FnOnce(Result<T, String>) -> Msg + Send + 'static,
) {
    let shared = Arc::clone(shared);
    tokio::task::spawn_blocking(move || {
        let mut reader = shared
            .reader
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let result = match &mut *reader {
            Some(store) => Ok(store),
            None => crate::store::open_path(&shared.stores.db).map(|s| reader.insert(s)),
        }
        .and_then(|store| read(&**store))
        .map_err(|e| e.to_string());
        if result.is_err() {
            *reader = None;
        }
        drop(reader);
        let _ = tx.send(msg(result));
    });
}

fn load_run(store: &dyn Store, id: &str) -> crate::store::Result<Option<RunDetail>> {
    let Some(run) = store.run(id)? else {
        return Ok(None);
    };
    Ok(Some(RunDetail {
        results: store.results(&run)?,
        notes: store.notes(&run)?,
        shared: match store.work(&run.id)? {
            Some(work) => Some(crate::work::summary(&work, &store.items(&run.id)?)),
            None => None,
        },
        run,
    }))
}

/// `agent status` on the whole fleet, through the operations layer (its run
/// is recorded like any other).
async fn agent_status(shared: &Shared) -> Result<Vec<crate::agent::AgentOnNode>, String> {
    let ctx = &shared.ctx;
    let request = JobRequest {
        job: JobSpec::AgentStatus { agent: None },
        targets: Targets::Pattern("all".into()),
        settings: PlaySettings::default(),
        connect: ctx.connect.clone(),
        forks: ctx.forks,
        limits: ctx.limits.clone(),
        lessons: Vec::new(),
    };
    let source = ctx.source.clone();
    let prepared = tokio::task::spawn_blocking(move || ops::prepare(source, request))
        .await
        .map_err(|e| format!("preparing the job: {e}"))?
        .map_err(|e| e.to_string())?;
    let launch = Launch {
        bus: shared.bus.clone(),
        cancel: Cancel::new(),
        run_id: new_run_id(),
    };
    let outcome = prepared
        .apply(&ctx.gate, &launch)
        .await
        .map_err(|e| e.to_string())?;
    Ok(outcome.agents)
}

/// Telemetry from every node of the SoT while the console runs: the hub
/// collects in the background and, once a second, its state is summarised
/// (one brief lock) and handed to the app. Ends when the console does.
async fn stream_telemetry(shared: &Shared, tx: UnboundedSender<Msg>) {
    let sot = shared.ctx.source.sot.clone();
    let connect = shared.ctx.connect.clone();
    let resolve = sot.clone();
    let specs = tokio::task::spawn_blocking(move || {
        let indices: Vec<usize> = (0..resolve.nodes.len()).collect();
        crate::fleet::resolve::connect_specs(&resolve, &indices, &connect)
            .map(|(specs, _warnings)| specs)
            .map_err(|e| e.to_string())
    })
    .await
    .unwrap_or_else(|e| Err(format!("resolving the nodes: {e}")));
    let specs = match specs {
        Ok(s) => s,
        Err(e) => {
            let _ = tx.send(Msg::Telemetry(Err(e)));
            return;
        }
    };
    let running = crate::telemetry::start(
        specs,
        crate::telemetry::CollectorOptions::default(),
        crate::telemetry::state::DEFAULT_HISTORY,
        Vec::new(),
    );
    let state = running.state();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        let summary = {
            let s = crate::telemetry::lock(&state);
            crate::telemetry::summary::summarize(&s, &sot, std::time::Instant::now())
        };
        if tx.send(Msg::Telemetry(Ok(Arc::new(summary)))).is_err() {
            break;
        }
    }
    running.stop().await;
}

/// What `:reflect` shows: the store's reflections, the SoT's checklists as
/// they are on disk now, the evidence to pick from and the figures.
fn load_reflections(
    db: &std::path::Path,
    root: &std::path::Path,
) -> Result<crate::tui::components::reflect::ReflectData, String> {
    let sot = crate::sot::load(root).map_err(|e| e.to_string())?;
    let store = crate::store::open_path(db).map_err(|e| e.to_string())?;
    let reflections =
        crate::store::ReflectionStore::reflections(&*store, false).map_err(|e| e.to_string())?;
    let picks =
        crate::reflect::evidence::picks(&sot, &*store, &crate::ops::evidence::ledger_place(db))
            .map_err(|e| e.to_string())?;
    let stats = crate::reflect::stats::compute(&sot, &reflections, None);
    Ok(crate::tui::components::reflect::ReflectData {
        reflections,
        checklists: sot.checklists.values().cloned().collect(),
        picks,
        stats,
    })
}
