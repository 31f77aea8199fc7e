//! `maestro deploy`, `enable`, `disable` and `agent status`: agents on the
//! fleet, through the same prepare → plan → gate → apply as every job.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::Args;

use super::FleetArgs;
use super::drive::{drive, exit_for};
use super::fleet_cmd::{gate, load_source, print_warnings, request};
use super::freeze_cmd::BreakGlassArgs;
use super::play_cmd::{PlayArgs, Privilege, playbook_job};
use super::printer::{Printer, sanitize};
use crate::exit::Exit;
use crate::ops::{self, JobSpec, Targets};

/// `maestro deploy AGENT[@VERSION]` and friends.
#[derive(Args, Debug, Clone)]
pub struct DeployArgs {
    /// The agent, and the registry version to deploy [default: its `current`]
    #[arg(value_name = "AGENT[@VERSION]")]
    pub agent: String,
    /// Nodes to deploy to: names, globs, groups, tag selectors
    #[arg(long, short = 'l')]
    pub limit: String,
    /// Change nothing; report what each node would do
    #[arg(long, short = 'C')]
    pub check: bool,
    /// Show the version and digest each node changes from and to
    #[arg(long, short = 'D')]
    pub diff: bool,
    /// Which instance: `primary` (what clients get), or `preview`, a second
    /// instance beside it on the gateway's preview_port that never touches
    /// the primary (see `maestro gateway set`)
    #[arg(long, default_value = "primary", value_parser = ["primary", "preview"])]
    pub slot: String,
    /// Apply without asking (required when not on a terminal)
    #[arg(long, short = 'y')]
    pub yes: bool,
    #[command(flatten)]
    pub glass: BreakGlassArgs,
    #[command(flatten)]
    pub fleet: FleetArgs,
}

#[derive(Args, Debug, Clone)]
pub struct ToggleArgs {
    pub agent: String,
    /// Nodes to work on
    #[arg(long, short = 'l')]
    pub limit: String,
    /// Change nothing; report what each node would do
    #[arg(long, short = 'C')]
    pub check: bool,
    /// Apply without asking (required when not on a terminal)
    #[arg(long, short = 'y')]
    pub yes: bool,
    #[command(flatten)]
    pub glass: BreakGlassArgs,
    #[command(flatten)]
    pub fleet: FleetArgs,
}

/// `maestro disable AGENT [--slot preview]`.
#[derive(Args, Debug, Clone)]
pub struct DisableArgs {
    #[command(flatten)]
    pub toggle: ToggleArgs,
    /// Which instance: `primary`, or `preview` (the primary keeps running)
    #[arg(long, default_value = "primary", value_parser = ["primary", "preview"])]
    pub slot: String,
}

#[derive(Args, Debug, Clone)]
pub struct StatusArgs {
    /// One agent [default: every agent in the registry]
    pub agent: Option<String>,
    /// Nodes to ask
    #[arg(long, short = 'l', default_value = "all")]
    pub limit: String,
    #[command(flatten)]
    pub fleet: FleetArgs,
}

fn as_play_args(
    limit: &str,
    check: bool,
    diff: bool,
    yes: bool,
    glass: &BreakGlassArgs,
    fleet: &FleetArgs,
) -> PlayArgs {
    PlayArgs {
        limit: limit.to_string(),
        check,
        diff,
        extra_vars: Vec::new(),
        tags: Vec::new(),
        skip_tags: Vec::new(),
        privilege: Privilege {
            become_root: false,
            become_user: None,
            ask_become_pass: false,
            become_password_file: None,
        },
        yes,
        glass: glass.clone(),
        emit_scripts: None,
        fleet: fleet.clone(),
    }
}

pub fn deploy(
    root: &Path,
    db: Option<PathBuf>,
    args: DeployArgs,
    json: bool,
) -> anyhow::Result<Exit> {
    let (agent, version) = crate::agent::split_ref(&args.agent);
    let job = JobSpec::Deploy {
        agent: agent.to_string(),
        version: version.map(str::to_string),
        slot: args.slot.parse().map_err(anyhow::Error::msg)?,
    };
    let play = as_play_args(
        &args.limit,
        args.check,
        args.diff,
        args.yes,
        &args.glass,
        &args.fleet,
    );
    playbook_job(root, db, job, play, json)
}

pub fn enable(
    root: &Path,
    db: Option<PathBuf>,
    args: ToggleArgs,
    json: bool,
) -> anyhow::Result<Exit> {
    let job = JobSpec::Enable {
        agent: args.agent.clone(),
    };
    let play = as_play_args(
        &args.limit,
        args.check,
        false,
        args.yes,
        &args.glass,
        &args.fleet,
    );
    playbook_job(root, db, job, play, json)
}

pub fn disable(
    root: &Path,
    db: Option<PathBuf>,
    args: DisableArgs,
    json: bool,
) -> anyhow::Result<Exit> {
    let job = JobSpec::Disable {
        agent: args.toggle.agent.clone(),
        slot: args.slot.parse().map_err(anyhow::Error::msg)?,
    };
    let args = args.toggle;
    let play = as_play_args(
        &args.limit,
        args.check,
        false,
        args.yes,
        &args.glass,
        &args.fleet,
    );
    playbook_job(root, db, job, play, json)
}

/// `maestro agent status`: per node and agent, what runs, its digest, its
/// health and since when; what differs from the SoT's `current` is marked.
pub fn status(
    root: &Path,
    db: Option<PathBuf>,
    args: StatusArgs,
    json: bool,
) -> anyhow::Result<Exit> {
    let source = load_source(root)?;
    let job = JobSpec::AgentStatus {
        agent: args.agent.clone(),
    };
    let prepared = ops::prepare(
        source,
        request(job, Targets::Pattern(args.limit.clone()), &args.fleet),
    )?;
    print_warnings(&prepared);
    let db = db.unwrap_or_else(crate::store::default_path);
    let gate = gate(&db);
    let prepared = Arc::new(prepared);
    let job = prepared.clone();
    let driven = drive(&db, Printer::quiet(), move |launch| async move {
        job.apply(&gate, &launch).await
    })?;
    let mut driven = driven.try_map(|v| v)?;
    let outcome = &driven.value;
    let mut text = String::new();
    if json {
        for a in &outcome.agents {
            text.push_str(&serde_json::json!({"event": "agent", "status": a}).to_string());
            text.push('\n');
        }
    } else {
        let rows: Vec<&crate::agent::AgentOnNode> = outcome
            .agents
            .iter()
            .filter(|a| {
                !a.state.version.is_empty()
                    || a.preview.is_some()
                    || a.error.is_some()
                    || args.agent.is_some()
            })
            .collect();
        let nw = rows.iter().map(|a| a.node.len()).max().unwrap_or(4).max(4);
        let aw = rows
            .iter()
            .map(|a| a.agent.len() + if a.preview.is_some() { 10 } else { 0 })
            .max()
            .unwrap_or(5)
            .max(5);
        text.push_str(&format!(
            "  {:nw$}  {:aw$}  {:10} {:12} {:9} {:19} STATE\n",
            "NODE", "AGENT", "VERSION", "SHA256", "HEALTH", "SINCE"
        ));
        let row = |text: &mut String,
                   mark: &str,
                   node: &str,
                   agent: &str,
                   s: &crate::agent::NodeAgentState,
                   state: String| {
            let health = match (s.running, s.healthy, s.killed) {
                (_, _, true) => "killed",
                (false, _, _) if s.version.is_empty() => "-",
                (false, _, _) => "stopped",
                (true, Some(true), _) => "healthy",
                (true, Some(false), _) => "unhealthy",
                (true, None, _) => "running",
            };
            let since = s
                .since
                .and_then(|t| chrono::DateTime::from_timestamp(t as i64, 0))
                .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
                .unwrap_or_else(|| "-".into());
            text.push_str(&format!(
                "{mark} {node:nw$}  {agent:aw$}  {:10} {:12} {:9} {:19} {}\n",
                if s.version.is_empty() {
                    "-"
                } else {
                    &s.version
                },
                if s.digest.is_empty() {
                    "-"
                } else {
                    &s.digest[..s.digest.len().min(12)]
                },
                health,
                since,
                state
            ));
        };
        for a in &rows {
            let s = &a.state;
            let mark = if a.differs || a.error.is_some() {
                "!"
            } else {
                " "
            };
            let state = match &a.error {
                Some(e) => e.clone(),
                None if s.version.is_empty() => "not deployed".into(),
                None => a.summary(),
            };
            row(&mut text, mark, &a.node, &a.agent, s, state);
            if let Some(p) = &a.preview {
                let port = p.port.map(|p| format!(" on port {p}")).unwrap_or_default();
                let state = format!(
                    "preview slot{port}, {}",
                    if p.running { "running" } else { "stopped" }
                );
                row(
                    &mut text,
                    " ",
                    &a.node,
                    &format!("{} (preview)", a.agent),
                    p,
                    state,
                );
            }
        }
        let differ = outcome.agents.iter().filter(|a| a.differs).count();
        if differ > 0 {
            text.push_str(&format!(
                "{differ} agent instance(s) differ from the SoT's current version (marked !)\n"
            ));
        }
        let unreachable: Vec<&str> = outcome
            .report
            .results
            .iter()
            .filter(|r| r.status != crate::fleet::event::NodeStatus::Ok)
            .map(|r| r.node.as_str())
            .collect();
        if !unreachable.is_empty() {
            text.push_str(&format!("could not ask: {}\n", unreachable.join(", ")));
        }
    }
    driven.printer.print(&sanitize(text.trim_end().as_bytes()));
    Ok(exit_for(&outcome.report, driven.store_error.as_ref()))
}
