//! `maestro rollout ...`: progressive delivery (Argo Rollouts' verbs) over
//! the rollout engine. Exit codes: 0 completed (or the verb did what was
//! asked), 1 aborted/rolled back, 2 invalid input or a verb that does not
//! apply to the rollout's state, 3 denied by policy, 4 blocked (kill
//! switch, freeze window, another active rollout of the agent), 5 maestro
//! itself failed, 6 paused (a `pause = {}` step or an inconclusive gate:
//! waiting for `promote` or `abort`).

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};

use super::FleetArgs;
use super::drive::drive;
use super::fleet_cmd::{connect_options, gate, load_source};
use super::out;
use super::printer::{Printer, sanitize};
use crate::exit::Exit;
use crate::rollout::controller::Ended;
use crate::rollout::verbs::{self, Done, StartRequest};
use crate::rollout::view::{Overview, tree};
use crate::rollout::{RolloutError, RolloutEvent, Settings};
use crate::store::{Store, StoreError};

#[derive(Subcommand, Debug)]
pub enum RolloutCommand {
    /// Start a rollout of AGENT@VERSION on the target nodes and drive it
    Start(StartArgs),
    /// A rollout's steps (current marked), weight, nodes per version, gate measurements
    Status {
        /// Rollout id (a unique prefix), or `last` [default: last]
        id: Option<String>,
        /// Redraw as the rollout changes, until it completes, aborts or pauses
        #[arg(long, short = 'w')]
        watch: bool,
    },
    /// Every rollout, newest first
    List {
        #[arg(short = 'n', long, default_value_t = 20)]
        limit: usize,
    },
    /// Leave the current pause (or inconclusive gate) and drive on; --full skips every remaining step
    Promote {
        id: String,
        #[arg(long)]
        full: bool,
        #[command(flatten)]
        fleet: FleetArgs,
    },
    /// Ask the controller to stop where it is (resume continues)
    Pause { id: String },
    /// Continue a paused rollout, or one whose controller died, from its journal
    Resume {
        id: String,
        #[command(flatten)]
        fleet: FleetArgs,
    },
    /// Traffic back to stable, the new version rolled back on every node it reached
    Abort {
        id: String,
        #[command(flatten)]
        fleet: FleetArgs,
    },
    /// Put a finished rollout's nodes back on its stable version (or --to VERSION), all at once
    Undo {
        id: String,
        #[arg(long, value_name = "VERSION")]
        to: Option<String>,
        #[command(flatten)]
        fleet: FleetArgs,
    },
    /// Start an aborted rollout again from its first step
    Retry {
        id: String,
        #[command(flatten)]
        fleet: FleetArgs,
    },
}

#[derive(Args, Debug)]
pub struct StartArgs {
    /// The agent and the registry version to roll out
    #[arg(value_name = "AGENT@VERSION")]
    pub agent: String,
    /// The strategy from rollouts.toml [default: the agent's `rollout`]
    #[arg(long)]
    pub strategy: Option<String>,
    /// Nodes to roll out to: names, globs, groups, tag selectors
    #[arg(long, short = 'l')]
    pub limit: String,
    #[command(flatten)]
    pub fleet: FleetArgs,
}

fn settings(db: &Path, fleet: &FleetArgs) -> Settings {
    Settings {
        connect: connect_options(fleet),
        forks: fleet.forks,
        limits: crate::fleet::ssh::ExecLimits {
            max_output: fleet.max_output,
            timeout: fleet.timeout.map(std::time::Duration::from_secs_f64),
        },
        db: db.to_path_buf(),
        actor: super::fleet_cmd::identity(),
    }
}

/// One event as the operator sees it.
fn event_line(e: &RolloutEvent, json: bool) -> String {
    if json {
        return serde_json::to_string(e).unwrap_or_default();
    }
    let text = match e {
        RolloutEvent::Step { index, step, .. } => format!("step {}: {step}", index + 1),
        RolloutEvent::Deploy { version, nodes, .. } => {
            format!("  deploying {version} to {}", nodes.join(", "))
        }
        RolloutEvent::Node {
            node,
            version,
            ok,
            detail,
            ..
        } => format!(
            "    {node}: {} {version}: {detail}",
            if *ok { "ok" } else { "FAILED" }
        ),
        RolloutEvent::Measurement { measurement } => format!(
            "  {} {}",
            crate::rollout::view::outcome_glyph(measurement.outcome),
            measurement.message
        ),
        RolloutEvent::Gate {
            gate,
            outcome,
            reason,
            ..
        } => {
            format!("  gate {gate}: {}: {reason}", outcome.as_str())
        }
        RolloutEvent::Rollback { version, nodes, .. } => {
            format!("  rolling back to {version}: {}", nodes.join(", "))
        }
        RolloutEvent::Rollout { rollout } => format!(
            "rollout {} ({} {} → {}): {}{}",
            rollout.id,
            rollout.agent,
            rollout.from_version.as_deref().unwrap_or("-"),
            rollout.to_version,
            rollout.status,
            rollout
                .reason
                .as_deref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default()
        ),
    };
    sanitize(text.as_bytes())
}

fn error_exit(e: &RolloutError, json: bool) -> Exit {
    let exit = match e {
        RolloutError::Invalid(_) | RolloutError::WrongState(_) => Exit::InvalidInput,
        RolloutError::Store(StoreError::ActiveRollout { .. }) => Exit::Blocked,
        RolloutError::Store(_) => Exit::Internal,
        RolloutError::Ops(o) => o.exit(),
    };
    let msg = sanitize(e.to_string().as_bytes());
    if json {
        out!(
            "{}",
            serde_json::json!({"event": "error", "exit": exit.code(), "message": msg})
        );
    } else {
        eprintln!("error: {msg}");
    }
    exit
}

fn ended_exit(e: &Ended) -> Exit {
    match e {
        Ended::Completed => Exit::Ok,
        Ended::Paused(_) => Exit::Paused,
        Ended::Aborted(_) | Ended::Detached(_) => Exit::TargetsFailed,
    }
}

pub fn rollout(
    root: &Path,
    db: Option<PathBuf>,
    cmd: RolloutCommand,
    json: bool,
) -> anyhow::Result<Exit> {
    let db = db.unwrap_or_else(crate::store::default_path);
    // The verbs that drive a rollout act as the operator's proven identity
    // (the controller's deploy and gateway jobs are judged by policy).
    if !matches!(
        cmd,
        RolloutCommand::Status { .. } | RolloutCommand::List { .. } | RolloutCommand::Pause { .. }
    ) {
        super::fleet_cmd::resolve_identity(&crate::sot::load(root)?)?;
    }
    match cmd {
        RolloutCommand::Status { id, watch } => {
            status(&db, id.as_deref().unwrap_or("last"), watch, json)
        }
        RolloutCommand::List { limit } => list(&db, limit, json),
        RolloutCommand::Pause { id } => {
            let s = Settings {
                connect: Default::default(),
                forks: 1,
                limits: Default::default(),
                db: db.clone(),
                actor: super::fleet_cmd::identity(),
            };
            match verbs::pause(&s, &id) {
                Ok(r) => {
                    let e = RolloutEvent::Rollout {
                        rollout: Box::new(r),
                    };
                    out!("{}", event_line(&e, json));
                    Ok(Exit::Ok)
                }
                Err(e) => Ok(error_exit(&e, json)),
            }
        }
        RolloutCommand::Start(args) => {
            let (agent, version) = crate::agent::split_ref(&args.agent);
            let Some(version) = version else {
                return Ok(error_exit(
                    &RolloutError::Invalid(format!(
                        "name the version to roll out: maestro rollout start {agent}@VERSION"
                    )),
                    json,
                ));
            };
            let req = StartRequest {
                agent: agent.to_string(),
                version: version.to_string(),
                strategy: args.strategy.clone(),
                limit: args.limit.clone(),
            };
            let s = settings(&db, &args.fleet);
            drive_verb(root, &db, json, move |source, launch, tx| async move {
                let g = gate(&s.db);
                verbs::start(source, s, req, &g, launch, tx)
                    .await
                    .map(|(e, r)| Done::Drove(e, r))
            })
        }
        RolloutCommand::Promote { id, full, fleet } => {
            let s = settings(&db, &fleet);
            drive_verb(root, &db, json, move |source, launch, tx| async move {
                let g = gate(&s.db);
                verbs::promote(source, s, &id, full, &g, launch, tx).await
            })
        }
        RolloutCommand::Resume { id, fleet } => {
            let s = settings(&db, &fleet);
            drive_verb(root, &db, json, move |source, launch, tx| async move {
                verbs::resume(source, s, &id, launch, tx).await
            })
        }
        RolloutCommand::Abort { id, fleet } => {
            let s = settings(&db, &fleet);
            drive_verb(root, &db, json, move |source, launch, tx| async move {
                verbs::abort(source, s, &id, launch, tx).await
            })
        }
        RolloutCommand::Retry { id, fleet } => {
            let s = settings(&db, &fleet);
            drive_verb(root, &db, json, move |source, launch, tx| async move {
                let g = gate(&s.db);
                verbs::retry(source, s, &id, &g, launch, tx).await
            })
        }
        RolloutCommand::Undo { id, to, fleet } => {
            let s = settings(&db, &fleet);
            drive_verb(root, &db, json, move |source, launch, tx| async move {
                let g = gate(&s.db);
                verbs::undo(source, s, &id, to, &g, launch, tx)
                    .await
                    .map(|(e, r)| Done::Drove(e, r))
            })
        }
    }
}

/// Run a verb on a runtime with the store recording its deploy runs, the
/// rollout's events printed as they come.
fn drive_verb<F, Fut>(root: &Path, db: &Path, json: bool, verb: F) -> anyhow::Result<Exit>
where
    F: FnOnce(
            crate::ops::SotSource,
            crate::ops::Launch,
            tokio::sync::mpsc::UnboundedSender<RolloutEvent>,
        ) -> Fut
        + Send
        + 'static,
    Fut: std::future::Future<Output = crate::rollout::Result<Done>> + Send + 'static,
{
    let source = load_source(root)?;
    let driven = drive(db, Printer::quiet(), move |launch| async move {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let printer = tokio::spawn(async move {
            while let Some(e) = rx.recv().await {
                out!("{}", event_line(&e, json));
            }
        });
        let done = verb(source, launch, tx).await;
        let _ = printer.await;
        done
    })?;
    Ok(match driven.value {
        Err(e) => error_exit(&e, json),
        Ok(Done::Asked(r)) => {
            let line = if json {
                serde_json::json!({"event": "requested", "rollout": r}).to_string()
            } else {
                format!(
                    "asked the controller of {} ({}) to {}",
                    r.id,
                    r.controller.as_deref().unwrap_or("?"),
                    r.requested.as_deref().unwrap_or("act")
                )
            };
            out!("{}", sanitize(line.as_bytes()));
            Exit::Ok
        }
        Ok(Done::Drove(ended, r)) => {
            // The reflections its end left (and the store's word on them).
            let source = format!("rollout:{}", r.id);
            match crate::store::open_path(db).and_then(|s| s.reflections(true)) {
                Ok(pending) => {
                    for p in pending.iter().filter(|p| p.source == source) {
                        out!("{}", super::fleet_cmd::reflection_line(p, json));
                    }
                }
                Err(e) => eprintln!("warning: the rollout's reflections could not be read: {e}"),
            }
            ended_exit(&ended)
        }
    })
}

fn overview(store: &dyn Store, id: &str) -> anyhow::Result<Option<Overview>> {
    let Some(r) = store.rollout(id)? else {
        return Ok(None);
    };
    let journal = store.journal(&r.id)?;
    let measurements = store.measurements(&r.id)?;
    Ok(Some(Overview::new(&r, &journal, measurements)))
}

fn status(db: &Path, id: &str, watch: bool, json: bool) -> anyhow::Result<Exit> {
    let store = crate::store::open_path(db)?;
    let mut last = String::new();
    loop {
        let Some(o) = overview(&*store, id)? else {
            return Ok(error_exit(
                &RolloutError::Invalid(format!(
                    "no rollout `{id}` in {} (see `maestro rollout list`)",
                    crate::store::shown(db)
                )),
                json,
            ));
        };
        let text = if json {
            serde_json::json!({"event": "rollout_status", "status": o}).to_string()
        } else {
            sanitize(tree(&o).join("\n").as_bytes())
        };
        if text != last {
            if watch && !json && !last.is_empty() {
                out!("");
            }
            out!("{text}");
            last = text;
        }
        let r = &o.rollout;
        if !watch || r.status != crate::store::RolloutStatus::Progressing {
            return Ok(match r.status {
                crate::store::RolloutStatus::Completed => Exit::Ok,
                crate::store::RolloutStatus::Aborted => Exit::TargetsFailed,
                crate::store::RolloutStatus::Paused => Exit::Paused,
                crate::store::RolloutStatus::Progressing => Exit::Ok,
            });
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
}

fn list(db: &Path, limit: usize, json: bool) -> anyhow::Result<Exit> {
    let store = crate::store::open_path(db)?;
    let rows = store.rollouts(limit)?;
    if json {
        for r in rows {
            out!("{}", serde_json::json!({"event": "rollout", "rollout": r}));
        }
        return Ok(Exit::Ok);
    }
    out!(
        "{:30}  {:16}  {:17}  {:12}  {:11}  {:>4}  {:>6}  REASON",
        "ROLLOUT",
        "AGENT",
        "VERSIONS",
        "STRATEGY",
        "STATUS",
        "STEP",
        "WEIGHT"
    );
    for r in rows {
        let line = format!(
            "{:30}  {:16}  {:17}  {:12}  {:11}  {:>4}  {:>5}%  {}",
            r.id,
            r.agent,
            format!(
                "{}→{}",
                r.from_version.as_deref().unwrap_or("-"),
                r.to_version
            ),
            r.strategy,
            r.status.as_str(),
            r.step + 1,
            r.weight,
            r.reason.as_deref().unwrap_or("")
        );
        out!("{}", sanitize(line.as_bytes()));
    }
    Ok(Exit::Ok)
}
