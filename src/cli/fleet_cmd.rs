//! `maestro exec` and `maestro runs`: the headless face over the fleet engine.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use super::drive::{Driven, conclude, drive};
use super::out;
use super::printer::{Printer, recap, sanitize, task_lines};
use super::{ExecArgs, FleetArgs, RunsCommand};
use crate::exit::Exit;
use crate::fleet::RunReport;
use crate::fleet::resolve::ConnectOptions;
use crate::fleet::ssh::ExecLimits;
use crate::ops::{self, Gate, JobRequest, JobSpec, PlaySettings, Prepared, SotSource, Targets};
use crate::sot;
use crate::store::RunState;

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

/// The SoT at `root`, with its label and commit for the runs.
pub fn load_source(root: &Path) -> anyhow::Result<SotSource> {
    let sot = sot::load(root)?;
    resolve_identity(&sot)?;
    Ok(SotSource::new(Arc::new(sot), root))
}

/// The operator as proven once per process (see [`crate::identity`]).
static IDENTITY: std::sync::OnceLock<crate::identity::Actor> = std::sync::OnceLock::new();

/// Prove who runs this command against the SoT's people.toml: the key file
/// of `--identity`/`MAESTRO_IDENTITY`, else the ssh-agent's keys, else the
/// typed name, unverified. A named key that proves nobody is an error
/// (exit 2): it must not quietly fall back to a typed name.
pub fn resolve_identity(sot: &sot::Sot) -> anyhow::Result<crate::identity::Actor> {
    if let Some(a) = IDENTITY.get() {
        return Ok(a.clone());
    }
    let lookup = crate::identity::Lookup {
        key_file: std::env::var_os("MAESTRO_IDENTITY")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from),
        claimed: actor(),
        use_agent: true,
    };
    // Its own thread and runtime: callers may already be inside one.
    let sot_for = sot.clone();
    let resolved = std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| anyhow::anyhow!("starting the runtime: {e}"))
            .and_then(|rt| {
                rt.block_on(crate::identity::resolve(&sot_for, &lookup))
                    .map_err(anyhow::Error::from)
            })
    })
    .join()
    .map_err(|_| anyhow::anyhow!("the identity lookup panicked"))?
    .map_err(|e| InvalidInput(format!("MAESTRO_IDENTITY: {e}")))?;
    Ok(IDENTITY.get_or_init(|| resolved).clone())
}

/// The identity proven for this process, or the typed name.
pub fn identity() -> crate::identity::Actor {
    IDENTITY
        .get()
        .cloned()
        .unwrap_or_else(|| crate::identity::Actor::unverified(actor()))
}

/// A job request with the connection flags every fleet command shares.
pub fn request(job: JobSpec, targets: Targets, fleet: &FleetArgs) -> JobRequest {
    JobRequest {
        job,
        targets,
        settings: PlaySettings::default(),
        connect: connect_options(fleet),
        forks: fleet.forks,
        limits: ExecLimits {
            max_output: fleet.max_output,
            timeout: fleet.timeout.map(Duration::from_secs_f64),
        },
        lessons: fleet.lesson.clone(),
    }
}

/// The admission gate for jobs started from the command line; approvals
/// are kept in the run store at `db`.
pub fn gate(db: &Path) -> Gate {
    Gate::new(Some(db.to_path_buf()), identity())
}

/// Who runs this command, as recorded with approvals and break-glasses.
pub fn actor() -> String {
    std::env::var("MAESTRO_ACTOR")
        .ok()
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "unknown".into())
}

pub fn print_warnings(prepared: &Prepared) {
    for w in prepared.warnings() {
        eprintln!("warning: {}", sanitize(w.as_bytes()));
    }
    for line in lesson_lines(prepared) {
        eprintln!("{line}");
    }
}

/// The long-term lessons in a job's scope, as its confirmation shows them:
/// `lessons for agent fleet-doctor, deploy jobs: …`.
pub fn lesson_lines(prepared: &Prepared) -> Vec<String> {
    crate::reflect::lesson::confirmation_lines(&prepared.lessons_in_scope())
        .into_iter()
        .map(|l| sanitize(l.as_bytes()))
        .collect()
}

/// A reflection an operation left pending, and where to answer it.
pub fn reflection_line(r: &crate::store::Reflection, json: bool) -> String {
    if json {
        json!({"event": "reflection_pending", "reflection": r}).to_string()
    } else {
        format!(
            "reflection {} pending ({} after {}): maestro reflect {}",
            r.id,
            r.checklist,
            sanitize(r.description.as_bytes()),
            r.id
        )
    }
}

/// What a job left for reflection: the reflections its outcome triggered
/// (and where to answer them), or why they could not be recorded.
pub fn reflection_lines(outcome: &ops::Outcome, json: bool) -> Vec<String> {
    let mut out: Vec<String> = outcome
        .reflections
        .iter()
        .map(|r| reflection_line(r, json))
        .collect();
    if let Some(e) = &outcome.reflection_error {
        out.push(if json {
            json!({"event": "warning", "message": format!("reflection: {e}")}).to_string()
        } else {
            format!("warning: the job's reflection or lesson uses were not recorded: {e}")
        });
    }
    out
}

/// The end of a job that ran: the reflections it left, then the recap and
/// the exit code.
pub fn conclude_job<E>(driven: Driven<Result<ops::Outcome, E>>, json: bool) -> Result<Exit, E> {
    let mut lines = Vec::new();
    let mut driven = driven.try_map(|o| {
        o.map(|o| {
            lines = reflection_lines(&o, json);
            o.report
        })
    })?;
    for l in &lines {
        driven.printer.print(l);
    }
    Ok(conclude(driven))
}

pub fn exec(root: &Path, db: Option<PathBuf>, args: ExecArgs, json: bool) -> anyhow::Result<Exit> {
    let source = load_source(root)?;
    let command = args.command.join(" ");
    let prepared = ops::prepare(
        source,
        request(
            JobSpec::Exec {
                command: command.clone(),
            },
            Targets::Pattern(args.target.clone()),
            &args.fleet,
        ),
    )?;
    print_warnings(&prepared);
    if !json {
        eprintln!(
            "exec on {} node{} ({}), forks {}: {}",
            prepared.nodes().len(),
            if prepared.nodes().len() == 1 { "" } else { "s" },
            args.target,
            args.fleet.forks,
            sanitize(command.as_bytes())
        );
    }
    let db = db.unwrap_or_else(crate::store::default_path);
    let gate = gate(&db);
    let share = args.share.then(|| {
        let ttl = args
            .claim_ttl
            .map_or(crate::work::DEFAULT_TTL, Duration::from_secs_f64);
        (db.clone(), ttl)
    });
    let driven = drive(&db, Printer::new(json, true), move |launch| async move {
        let mut prepared = prepared;
        if let Some((db, ttl)) = share {
            super::work_cmd::share(&mut prepared, &db, &launch.run_id, ttl, json)?;
        }
        prepared.apply(&gate, &launch).await
    })?;
    Ok(conclude_job(driven, json)?)
}

pub fn runs(
    db: Option<PathBuf>,
    cmd: Option<RunsCommand>,
    limit: usize,
    json: bool,
) -> anyhow::Result<Exit> {
    let store = crate::store::open_path(&db.unwrap_or_else(crate::store::default_path))?;
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
                    store.location()
                ))
            })?;
            let mut results = store.results(&run)?;
            let notes = store.notes(&run)?;
            let shared = match store.work(&run.id)? {
                Some(work) => Some((work, store.items(&run.id)?)),
                None => None,
            };
            if let Some(n) = &node {
                results.retain(|r| &r.node == n);
            }
            if json {
                // The facts last gathered on each node of the run.
                let mut facts = serde_json::Map::new();
                for r in &results {
                    if let Some((f, _)) = store.facts(&r.node)? {
                        facts.insert(r.node.clone(), json!(f));
                    }
                }
                let shared = shared.map(|(work, items)| json!({"work": work, "items": items}));
                out!(
                    "{}",
                    json!({"event": "run", "run": run, "results": results, "notes": notes, "facts": facts, "shared": shared})
                );
                return Ok(Exit::Ok);
            }
            out!(
                "run {} · {} on {} ({} nodes) · {} · started {}\ncommand: {}\nsot: {}{}",
                run.id,
                run.kind,
                sanitize(run.target.as_bytes()),
                run.node_count,
                run.state,
                time(run.started_ms),
                sanitize(run.command.as_bytes()),
                sanitize(run.sot.as_bytes()),
                run.sot_commit
                    .as_deref()
                    .map(|c| format!(" @ {}", &c[..c.len().min(12)]))
                    .unwrap_or_default()
            );
            if let Some((work, items)) = &shared {
                out!("{}", crate::work::summary(work, items));
            }
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
                    if run.state == RunState::Running {
                        " (it never finished)"
                    } else {
                        ""
                    }
                );
            }
            for r in &results {
                out!("\n{}", super::printer::node_block_public(r));
                if !r.tasks.is_empty() {
                    out!("{}", task_lines(r).trim_end());
                }
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
                cancelled: run.state == RunState::Cancelled,
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
