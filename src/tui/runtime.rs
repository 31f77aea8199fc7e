//! The event loop: one `tokio::select!` over the terminal's events, the
//! results of background work (store reads, engine runs) and a tick; the
//! frame is redrawn when something changed. Store reads and the engine run
//! in tokio tasks and report through one channel, so drawing never waits.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use crossterm::event::{Event as TermEvent, EventStream, KeyEventKind};
use futures_util::StreamExt;
use ratatui::Terminal;
use ratatui::backend::Backend;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc::{UnboundedSender, unbounded_channel};

use super::action::{ExecPlan, Job};
use super::app::{App, Effect, Msg};
use super::components::run::RunDetail;
use super::components::runs::RUNS_SHOWN;
use crate::fleet::event::now_ms;
use crate::fleet::resolve::{ConnectOptions, connect_specs};
use crate::fleet::ssh::ExecLimits;
use crate::fleet::{Cancel, Event, EventSink, RunOptions, RunReport, run_command};
use crate::playbook::run::{PlayRequest, play};
use crate::sot::Sot;
use crate::store::Store;

/// Recent runs shown in the node view.
const NODE_HISTORY: usize = 50;
/// How long quitting waits for a cancelled run to end (and be recorded).
const QUIT_GRACE: Duration = Duration::from_secs(5);

/// What runs started from the console use: the same engine inputs as
/// `maestro exec`.
#[derive(Clone)]
pub struct ExecContext {
    pub sot: Arc<Sot>,
    pub connect: ConnectOptions,
    pub forks: usize,
    pub limits: ExecLimits,
}

/// Run a confirmed exec plan through the engine, exactly as `maestro exec`
/// does: the pinned node names become connection specs, then
/// [`run_command`]. Errors are what stopped the run from starting.
pub async fn run_exec(
    ctx: &ExecContext,
    plan: ExecPlan,
    events: EventSink,
    cancel: Cancel,
) -> Result<RunReport, String> {
    let indices = plan
        .nodes
        .iter()
        .map(|n| {
            ctx.sot
                .node_index
                .get(n)
                .copied()
                .ok_or_else(|| format!("node {n} is not in the SoT"))
        })
        .collect::<Result<Vec<usize>, String>>()?;
    let sot = Arc::clone(&ctx.sot);
    let connect = ctx.connect.clone();
    // ssh_config and known_hosts are files: read them off the event loop.
    let (specs, warnings) =
        tokio::task::spawn_blocking(move || connect_specs(&sot, &indices, &connect))
            .await
            .map_err(|e| format!("resolving the nodes: {e}"))?
            .map_err(|e| e.to_string())?;
    for message in warnings {
        events.send(Event::Warning {
            node: None,
            message,
        });
    }
    let kind = match &plan.job {
        Job::Command => "exec",
        Job::Playbook(_) | Job::Install(_) => "play",
        Job::HardenAudit(_) => "harden-audit",
    };
    let opts = RunOptions {
        kind: kind.into(),
        target: plan.nodes.join(","),
        description: plan.command.clone(),
        forks: ctx.forks,
        limits: ctx.limits.clone(),
    };
    let sot = &ctx.sot;
    // The same engine functions as `maestro play`, `install` and `harden --audit`.
    let playbook = |pb: crate::playbook::Playbook, base_dir: PathBuf, profile| {
        Arc::new(PlayRequest {
            sot: Arc::clone(sot),
            playbook: Arc::new(pb),
            base_dir,
            profile,
            extra_vars: Vec::new(),
            options: Default::default(),
            become_password: None,
        })
    };
    Ok(match plan.job {
        Job::Command => run_command(specs, plan.command, opts, events, cancel).await,
        Job::Playbook(name) => {
            let dir = sot.root.join(&sot.settings.playbooks_dir);
            let pb = crate::playbook::load_playbook(&dir.join(format!("{name}.toml")))
                .map_err(|d| d.to_string())?;
            play(specs, playbook(pb, dir, None), opts, events, cancel).await
        }
        Job::Install(profile) => {
            let (pb, dir, profile) = crate::playbook::for_profile(sot, &profile)?;
            let problems = crate::playbook::profile_problems(
                sot,
                &pb,
                &profile,
                &indices_of(sot, &plan.nodes),
                &[],
            );
            if !problems.is_empty() {
                return Err(format!(
                    "profile `{}` refuses: {}",
                    profile.name,
                    problems.join("; ")
                ));
            }
            play(
                specs,
                playbook(pb, dir, Some(profile)),
                opts,
                events,
                cancel,
            )
            .await
        }
        Job::HardenAudit(name) => {
            let baseline = crate::harden::load(&sot.root.join(&sot.settings.hardening_dir), &name)
                .map_err(|d| d.to_string())?;
            crate::harden::run(
                specs,
                Arc::new(baseline),
                crate::harden::Mode::Audit,
                None,
                opts,
                events,
                cancel,
            )
            .await
        }
    })
}

fn indices_of(sot: &Sot, names: &[String]) -> Vec<usize> {
    names
        .iter()
        .filter_map(|n| sot.node_index.get(n).copied())
        .collect()
}

/// Where the loop reads and records runs.
pub struct Stores {
    pub db: PathBuf,
    /// Recorded with each run (`maestro runs show` prints it).
    pub sot_label: String,
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
    let stores = Arc::new(stores);
    let ctx = Arc::new(ctx);
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
            perform(effect, &tx, &stores, &ctx);
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

/// Carry out one effect in the background; its result comes back as a [`Msg`].
fn perform(
    effect: Effect,
    tx: &UnboundedSender<Msg>,
    stores: &Arc<Stores>,
    ctx: &Arc<ExecContext>,
) {
    let tx = tx.clone();
    let stores = Arc::clone(stores);
    match effect {
        Effect::LoadLastResults => read_store(tx, stores, |s| {
            Msg::LastResults(s.and_then(|s| s.last_results().map_err(|e| e.to_string())))
        }),
        Effect::LoadRuns => read_store(tx, stores, |s| {
            Msg::Runs(s.and_then(|s| s.runs(RUNS_SHOWN).map_err(|e| e.to_string())))
        }),
        Effect::LoadRun(id) => read_store(tx, stores, move |s| Msg::Run {
            result: s.and_then(|s| load_run(&s, &id).map_err(|e| e.to_string())),
            id,
        }),
        Effect::LoadNodeHistory(node) => read_store(tx, stores, move |s| Msg::NodeHistory {
            result: s.and_then(|s| {
                s.node_history(&node, NODE_HISTORY)
                    .map_err(|e| e.to_string())
            }),
            node,
        }),
        Effect::StartExec { plan, cancel } => start_exec(plan, cancel, tx, stores, Arc::clone(ctx)),
    }
}

/// Open the store off the event loop, read, and send the result back.
fn read_store(
    tx: UnboundedSender<Msg>,
    stores: Arc<Stores>,
    read: impl FnOnce(Result<Store, String>) -> Msg + Send + 'static,
) {
    tokio::task::spawn_blocking(move || {
        let store = Store::open(&stores.db).map_err(|e| e.to_string());
        let _ = tx.send(read(store));
    });
}

fn load_run(store: &Store, id: &str) -> crate::store::Result<Option<RunDetail>> {
    let Some(run) = store.run(id)? else {
        return Ok(None);
    };
    Ok(Some(RunDetail {
        results: store.results(&run)?,
        notes: store.notes(&run)?,
        run,
    }))
}

/// The engine runs in a task; a blocking recorder feeds every event to the
/// store first (as `maestro exec` does), then to the app.
fn start_exec(
    plan: ExecPlan,
    cancel: Cancel,
    tx: UnboundedSender<Msg>,
    stores: Arc<Stores>,
    ctx: Arc<ExecContext>,
) {
    let (events, mut rx) = EventSink::channel();
    let recorder_tx = tx.clone();
    tokio::task::spawn_blocking(move || {
        let mut store = match Store::open(&stores.db) {
            Ok(mut s) => {
                s.set_sot(&stores.sot_label);
                Some(s)
            }
            Err(e) => {
                let _ =
                    recorder_tx.send(Msg::StoreWarning(format!("this run is not recorded: {e}")));
                None
            }
        };
        while let Some(event) = rx.blocking_recv() {
            if let Some(s) = &mut store
                && let Err(e) = s.record(&event)
            {
                let _ = recorder_tx.send(Msg::StoreWarning(format!(
                    "this run is not fully recorded in {}: {e}",
                    stores.db.display()
                )));
                store = None;
            }
            let _ = recorder_tx.send(Msg::Engine(event));
        }
    });
    tokio::spawn(async move {
        let error = run_exec(&ctx, plan, events, cancel).await.err();
        let _ = tx.send(Msg::RunEnded { error });
    });
}
