//! `maestro gateway status|set AGENT`: the traffic layer on each node (the
//! node's nginx in front of the agent's primary and preview instances),
//! through the same prepare → gate → apply as every job, so a kill switch
//! or a freeze window holds `set` like a deploy.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::{Args, Subcommand};

use super::FleetArgs;
use super::drive::{drive, exit_for};
use super::fleet_cmd::{gate, load_source, print_warnings, request};
use super::freeze_cmd::BreakGlassArgs;
use super::printer::{Printer, sanitize};
use crate::exit::Exit;
use crate::gateway::{Change, GatewayOnNode, Traffic};
use crate::ops::{self, JobSpec, Targets};

#[derive(Subcommand, Debug)]
pub enum GatewayCommand {
    /// What each node's gateway sends the agent's clients to (reads only)
    Status(StatusArgs),
    /// Send the agent's clients to its primary, its preview, a split or a mirror (nginx -t, then a graceful reload)
    Set(SetArgs),
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    /// The agent (it needs `gateway = { port, preview_port }` in agents.toml)
    pub agent: String,
    /// Nodes to ask
    #[arg(long, short = 'l', default_value = "all")]
    pub limit: String,
    #[command(flatten)]
    pub fleet: FleetArgs,
}

#[derive(Args, Debug)]
pub struct SetArgs {
    /// The agent (it needs `gateway = { port, preview_port }` in agents.toml)
    pub agent: String,
    /// Nodes whose gateway changes
    #[arg(long, short = 'l')]
    pub limit: String,
    /// primary | preview | split:N (N% of answers from the preview) | mirror:N (N% of requests copied to the preview, answers from the primary)
    #[arg(long, value_parser = parse_traffic)]
    pub traffic: Traffic,
    #[command(flatten)]
    pub glass: BreakGlassArgs,
    #[command(flatten)]
    pub fleet: FleetArgs,
}

fn parse_traffic(s: &str) -> Result<Traffic, String> {
    s.parse()
        .map_err(|e: crate::gateway::GatewayError| e.to_string())
}

pub fn gateway(
    root: &Path,
    db: Option<PathBuf>,
    cmd: GatewayCommand,
    json: bool,
) -> anyhow::Result<Exit> {
    let (job, limit, fleet, glass) = match cmd {
        GatewayCommand::Status(a) => (
            JobSpec::GatewayStatus { agent: a.agent },
            a.limit,
            a.fleet,
            None,
        ),
        GatewayCommand::Set(a) => (
            JobSpec::GatewaySet {
                agent: a.agent,
                traffic: a.traffic,
            },
            a.limit,
            a.fleet,
            Some(a.glass),
        ),
    };
    let source = load_source(root)?;
    let prepared = ops::prepare(source, request(job, Targets::Pattern(limit), &fleet))?;
    print_warnings(&prepared);
    let db = db.unwrap_or_else(crate::store::default_path);
    let gate = match glass.as_ref().and_then(|g| g.glass()) {
        Some(g) => gate(&db).with_break_glass(g),
        None => gate(&db),
    };
    let prepared = Arc::new(prepared);
    let job = prepared.clone();
    let driven = drive(&db, Printer::quiet(), move |launch| async move {
        job.apply(&gate, &launch).await
    })?;
    let mut driven = driven.try_map(|v| v)?;
    let outcome = &driven.value;
    let mut text = String::new();
    if json {
        for g in &outcome.gateways {
            text.push_str(&serde_json::json!({"event": "gateway", "gateway": g}).to_string());
            text.push('\n');
        }
    } else {
        text = table(&outcome.gateways);
    }
    driven.printer.print(&sanitize(text.trim_end().as_bytes()));
    for l in super::fleet_cmd::reflection_lines(outcome, json) {
        driven.printer.print(&l);
    }
    Ok(exit_for(&outcome.report, driven.store_error.as_ref()))
}

fn table(rows: &[GatewayOnNode]) -> String {
    let nw = rows.iter().map(|g| g.node.len()).max().unwrap_or(4).max(4);
    let aw = rows
        .iter()
        .map(|g| g.address.as_deref().unwrap_or("-").len())
        .max()
        .unwrap_or(7)
        .max(7);
    let mut text = format!(
        "  {:nw$}  {:aw$}  {:11} {:8} STATE\n",
        "NODE", "ADDRESS", "TRAFFIC", "NGINX"
    );
    for g in rows {
        let mark = if g.error.is_some() { "!" } else { " " };
        let traffic = g
            .state
            .traffic
            .map(|t| t.to_string())
            .unwrap_or_else(|| "-".into());
        let nginx = if g.state.running {
            "running"
        } else {
            "stopped"
        };
        let state = match (&g.error, g.change) {
            (Some(e), _) => e.clone(),
            (None, Some(Change::Started)) => "started".into(),
            (None, Some(Change::Reloaded)) => match g.ms {
                Some(ms) => format!("reloaded in {ms} ms"),
                None => "reloaded".into(),
            },
            (None, Some(Change::Unchanged)) => "unchanged".into(),
            (None, None) if !g.state.configured => "no config for this agent".into(),
            (None, None) => "ok".into(),
        };
        text.push_str(&format!(
            "{mark} {:nw$}  {:aw$}  {:11} {:8} {}\n",
            g.node,
            g.address.as_deref().unwrap_or("-"),
            traffic,
            nginx,
            state
        ));
    }
    text
}
