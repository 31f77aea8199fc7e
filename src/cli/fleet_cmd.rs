//! `maestro exec` and `maestro runs`: the headless face over the fleet engine.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use serde_json::json;

use super::out;
use super::printer::{Printer, recap, sanitize};
use super::{ExecArgs, FleetArgs, RunsCommand};
use crate::exit::Exit;
use crate::fleet::event::EventSink;
use crate::fleet::resolve::{ConnectOptions, connect_specs};
use crate::fleet::ssh::ExecLimits;
use crate::fleet::{Cancel, RunOptions, RunReport, target};
use crate::sot;
use crate::store::Store;

/// Any error a user caused before anything ran (bad target, bad ssh_config).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct InvalidInput(pub String);

pub fn connect_options(f: &FleetArgs) -> ConnectOptions {
    ConnectOptions {
        ssh_config: f.ssh_config.clone(),
        known_hosts: f.known_hosts.clone(),
        accept_new: f.accept_new,
        identities: f.identity.clone(),
        user: f.user.clone(),
        connect_timeout: f.connect_timeout.map(Duration::from_secs_f64),
    }
}

pub fn exec(root: &Path, db: Option<PathBuf>, args: ExecArgs, json: bool) -> anyhow::Result<Exit> {
    let sot = sot::load(root)?;
    let nodes = target::select(&sot, &args.target).map_err(|e| InvalidInput(e.to_string()))?;
    let (specs, warnings) = connect_specs(&sot, &nodes, &connect_options(&args.fleet))
        .map_err(|e| InvalidInput(e.to_string()))?;
    let command = args.command.join(" ");
    if command.trim().is_empty() {
        return Err(
            InvalidInput("no command given: maestro exec TARGET -- COMMAND...".into()).into(),
        );
    }
    for w in &warnings {
        eprintln!("warning: {}", sanitize(w.as_bytes()));
    }
    if !json {
        eprintln!(
            "exec on {} node{} ({}), forks {}: {}",
            specs.len(),
            if specs.len() == 1 { "" } else { "s" },
            args.target,
            args.fleet.forks,
            sanitize(command.as_bytes())
        );
    }
    let mut store = Store::open(&db.unwrap_or_else(Store::default_path))?;
    store.set_sot(&root.display().to_string());
    let opts = RunOptions {
        kind: "exec".into(),
        target: args.target.clone(),
        description: command.clone(),
        forks: args.fleet.forks,
        limits: ExecLimits {
            max_output: args.fleet.max_output,
            timeout: args.fleet.timeout.map(Duration::from_secs_f64),
        },
    };
    let report = drive(store, Printer::new(json, true), |events, cancel| {
        crate::fleet::run_command(specs, command, opts, events, cancel)
    })?;
    Ok(if report.summary.all_ok() {
        Exit::Ok
    } else {
        Exit::TargetsFailed
    })
}

/// Run an engine future on a fresh runtime while feeding its events to the
/// store and the printer; Ctrl-C cancels the run cleanly.
pub fn drive<F, Fut>(mut store: Store, mut printer: Printer, start: F) -> anyhow::Result<RunReport>
where
    F: FnOnce(EventSink, Cancel) -> Fut,
    Fut: std::future::Future<Output = RunReport> + Send + 'static,
{
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async move {
        let (events, mut rx) = EventSink::channel();
        let cancel = Cancel::new();
        let run = tokio::spawn(start(events, cancel.clone()));
        let on_ctrl_c = cancel.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!("\ncancelling: stopping remote commands (Ctrl-C again to quit at once)");
                on_ctrl_c.cancel_all();
                if tokio::signal::ctrl_c().await.is_ok() {
                    std::process::exit(130);
                }
            }
        });
        let mut store_error = None;
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        loop {
            tokio::select! {
                e = rx.recv() => match e {
                    Some(e) => {
                        if store_error.is_none()
                            && let Err(err) = store.record(&e)
                        {
                            store_error = Some(err);
                        }
                        printer.handle(&e);
                    }
                    None => break,
                },
                _ = tick.tick() => printer.tick(),
            }
        }
        let report = run.await.context("the run task failed")?;
        printer.finish(&report);
        if let Some(e) = store_error {
            eprintln!(
                "warning: the run was not fully recorded in {}: {e}",
                store.path().display()
            );
        }
        Ok(report)
    })
}

pub fn runs(
    db: Option<PathBuf>,
    cmd: Option<RunsCommand>,
    limit: usize,
    json: bool,
) -> anyhow::Result<Exit> {
    let store = Store::open(&db.unwrap_or_else(Store::default_path))?;
    match cmd {
        None => {
            let rows = store.runs(limit)?;
            if json {
                for r in rows {
                    out!("{}", json!({"event": "run", "run": r}));
                }
                return Ok(Exit::Ok);
            }
            out!(
                "{:20}  {:7}  {:9}  {:>5}  {:>4}  {:>6}  {:>5}  {:19}  COMMAND",
                "RUN",
                "KIND",
                "STATE",
                "NODES",
                "OK",
                "FAILED",
                "UNRCH",
                "STARTED"
            );
            for r in rows {
                out!(
                    "{:20}  {:7}  {:9}  {:>5}  {:>4}  {:>6}  {:>5}  {:19}  {}",
                    r.id,
                    r.kind,
                    r.state,
                    r.node_count,
                    r.ok,
                    r.failed + r.timed_out + r.cancelled,
                    r.unreachable,
                    time(r.started_ms),
                    sanitize(r.command.as_bytes())
                );
            }
            Ok(Exit::Ok)
        }
        Some(RunsCommand::Show { id, node }) => {
            let run = store.run(&id)?.ok_or_else(|| {
                InvalidInput(format!(
                    "no run `{id}` in {} (see `maestro runs`)",
                    store.path().display()
                ))
            })?;
            let mut results = store.results(&run)?;
            let notes = store.notes(&run)?;
            if let Some(n) = &node {
                results.retain(|r| &r.node == n);
            }
            if json {
                out!(
                    "{}",
                    json!({"event": "run", "run": run, "results": results, "notes": notes})
                );
                return Ok(Exit::Ok);
            }
            out!(
                "run {} · {} on {} ({} nodes) · {} · started {}\ncommand: {}",
                run.id,
                run.kind,
                sanitize(run.target.as_bytes()),
                run.node_count,
                run.state,
                time(run.started_ms),
                sanitize(run.command.as_bytes())
            );
            for n in &notes {
                out!(
                    "note: {}{}",
                    n.node
                        .as_ref()
                        .map(|x| format!("{x}: "))
                        .unwrap_or_default(),
                    sanitize(n.message.as_bytes())
                );
            }
            let missing: Vec<&String> = run
                .nodes
                .iter()
                .filter(|n| !results.iter().any(|r| &r.node == *n))
                .collect();
            if node.is_none() && !missing.is_empty() {
                out!(
                    "no result for {} node(s): {} — the run was interrupted{}",
                    missing.len(),
                    missing
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                    if run.state == "running" {
                        " (it never finished)"
                    } else {
                        ""
                    }
                );
            }
            for r in &results {
                out!("\n{}", super::printer::node_block_public(r));
            }
            let summary = crate::fleet::Summary {
                ok: run.ok,
                failed: run.failed,
                unreachable: run.unreachable,
                timed_out: run.timed_out,
                cancelled: run.cancelled,
            };
            let report = RunReport {
                run_id: run.id.clone(),
                results,
                summary,
                cancelled: run.state == "cancelled",
                elapsed: Duration::from_millis(
                    run.finished_ms
                        .unwrap_or(run.started_ms)
                        .saturating_sub(run.started_ms) as u64,
                ),
            };
            out!("{}", recap(&report));
            Ok(Exit::Ok)
        }
    }
}

fn time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| {
            t.with_timezone(&chrono::Local)
                .format("%Y-%m-%d %H:%M:%S")
                .to_string()
        })
        .unwrap_or_default()
}
