//! `maestro kill AGENT|--all`, `maestro kill --release AGENT` and
//! `maestro kill --status`: the kill switch from the command line.
//!
//! A kill commits the engaged state first, then stops the agent on every
//! target node and prints one confirmation per node; it exits 1 until every
//! node is confirmed (run it again when unreachable nodes are back).

use std::path::{Path, PathBuf};

use clap::Args;
use serde_json::json;

use super::drive::drive;
use super::fleet_cmd::{InvalidInput, gate, load_source, print_warnings, request};
use super::printer::{Printer, sanitize};
use super::{FleetArgs, Who, out};
use crate::exit::Exit;
use crate::killswitch::change::{self, Engagement};
use crate::killswitch::{ALL, NodeConfirmation, NodeKill, confirmations};
use crate::ops::{self, JobSpec, Targets};
use crate::sot::change::Intent;

#[derive(Args, Debug)]
pub struct KillArgs {
    /// The agent to stop everywhere (or --all)
    #[arg(required_unless_present_any = ["all", "status"], conflicts_with = "all")]
    pub agent: Option<String>,
    /// Every agent
    #[arg(long)]
    pub all: bool,
    /// Only these nodes [default: every node, or the engaged kill switch's scope]
    #[arg(long, short = 'l', value_name = "TARGET")]
    pub limit: Option<String>,
    /// Why (recorded in the SoT commit and on every node's marker)
    #[arg(long, short = 'r', required_unless_present = "status")]
    pub reason: Option<String>,
    /// Lift the kill switch: a commit, the markers removed, nothing restarted
    #[arg(long, conflicts_with = "status")]
    pub release: bool,
    /// Go ahead with a release inside a freeze window (recorded with the run; the reason is --reason)
    #[arg(long, requires = "release")]
    pub break_glass: bool,
    /// Show the engaged kill switches and change nothing
    #[arg(long)]
    pub status: bool,
    #[command(flatten)]
    pub who: Who,
    /// How long to wait for another change to this SoT to finish
    #[arg(long, value_name = "SECONDS", default_value_t = crate::sot::lock::DEFAULT_WAIT.as_secs())]
    pub wait: u64,
    #[command(flatten)]
    pub fleet: FleetArgs,
}

pub fn kill(root: &Path, db: Option<PathBuf>, args: KillArgs, json: bool) -> anyhow::Result<Exit> {
    if args.status {
        return status(root, json);
    }
    let agent = match (&args.agent, args.all) {
        (_, true) => ALL.to_string(),
        (Some(a), false) => a.clone(),
        (None, false) => return Err(InvalidInput("name the agent, or --all".into()).into()),
    };
    let intent = Intent {
        reason: args.reason.clone().unwrap_or_default(),
        actor: args.who.actor.clone(),
        wait: std::time::Duration::from_secs(args.wait),
    };
    if args.release {
        release(root, db, &agent, &args, &intent, json)
    } else {
        engage(root, db, &agent, &args, &intent, json)
    }
}

fn engage(
    root: &Path,
    db: Option<PathBuf>,
    agent: &str,
    args: &KillArgs,
    intent: &Intent,
    json: bool,
) -> anyhow::Result<Exit> {
    // Policy decides before anything is committed: a kill the policies
    // refuse leaves the SoT as it was. (The kill job itself needs the
    // engagement in the SoT, so the question is asked directly here; the
    // job's own gate asks it again.)
    {
        let source = load_source(root)?;
        let sot = &source.sot;
        if let Some(policies) = sot.policies.as_deref() {
            let target = args.limit.clone().unwrap_or_else(|| "all".into());
            let nodes: Vec<String> = crate::fleet::target::select(sot, &target)
                .map_err(|e| InvalidInput(e.to_string()))?
                .into_iter()
                .map(|i| sot.nodes[i].name.clone())
                .collect();
            let actor = super::fleet_cmd::identity();
            let answer = policies
                .decide(
                    &crate::policy::Question {
                        actor: &actor,
                        action: "kill",
                        agent: (agent != ALL).then_some(agent),
                        nodes: &nodes,
                        context: crate::policy::JobContext::now(nodes.len(), true),
                    },
                    sot,
                )
                .map_err(|e| InvalidInput(e.to_string()))?;
            if !answer.allowed() {
                return Err(ops::OpsError::Refused(ops::Refusal {
                    class: ops::RefusalClass::Denied,
                    reasons: crate::policy::denial(&actor, &answer, policies)
                        .into_iter()
                        .map(|r| format!("policy: {r}"))
                        .collect(),
                    approval: None,
                })
                .into());
            }
        }
    }
    let engagement = change::engage(root, agent, args.limit.as_deref(), intent)?;
    let engaged = engagement.engaged().clone();
    let commit = match &engagement {
        Engagement::Committed { commit, .. } => Some(commit.commit.as_str()),
        Engagement::Already(_) => None,
    };
    let db_path = db.clone().unwrap_or_else(crate::store::default_path);
    if let Err(e) = crate::killswitch::publish(&db_path, &engaged, commit) {
        eprintln!(
            "warning: the kill switch is committed but not in the run store ({e}): \
             controllers sharing the store see it only once they pull the SoT"
        );
    }
    if json {
        out!(
            "{}",
            json!({"event": "kill_engaged", "engaged": engaged,
                   "commit": match &engagement { Engagement::Committed { commit, .. } => Some(commit.commit.clone()), Engagement::Already(_) => None }})
        );
    } else {
        match &engagement {
            Engagement::Committed { commit, .. } => eprintln!(
                "engaged: {} (commit {})",
                sanitize(engaged.describe().as_bytes()),
                &commit.commit[..12]
            ),
            Engagement::Already(_) => eprintln!(
                "already engaged: {}; confirming the nodes again",
                sanitize(engaged.describe().as_bytes())
            ),
        }
    }
    // The kill switch ends every active rollout of the agent: its
    // controller stops at its next look at the store, nothing rolls back
    // (the agent is being stopped everywhere).
    let store = db.clone().unwrap_or_else(crate::store::default_path);
    let rollout_agent = if agent == ALL { "--all" } else { agent };
    match crate::rollout::verbs::kill_switch_engaged(&store, rollout_agent, &intent.reason) {
        Ok(ids) => {
            for id in ids {
                if json {
                    out!(
                        "{}",
                        json!({"event": "rollout_aborted", "rollout": id, "reason": "kill switch"})
                    );
                } else {
                    eprintln!("rollout {id} aborted: the kill switch was engaged");
                }
            }
        }
        Err(e) => eprintln!("warning: could not end the agent's active rollouts: {e}"),
    }
    // The nodes this run reaches: the operator's --limit, else everything
    // the kill switch holds.
    let target = args
        .limit
        .clone()
        .or(engaged.limit.clone())
        .unwrap_or_else(|| "all".into());
    run(
        root,
        db,
        JobSpec::Kill {
            agent: agent.to_string(),
            release: false,
        },
        &target,
        &args.fleet,
        None,
        json,
    )
}

fn release(
    root: &Path,
    db: Option<PathBuf>,
    agent: &str,
    args: &KillArgs,
    intent: &Intent,
    json: bool,
) -> anyhow::Result<Exit> {
    let source = load_source(root)?;
    let engaged = source
        .sot
        .killswitch
        .iter()
        .find(|e| e.agent == agent)
        .cloned();
    let target = args
        .limit
        .clone()
        .or(engaged.as_ref().and_then(|e| e.limit.clone()))
        .unwrap_or_else(|| "all".into());
    let glass = super::freeze_cmd::glass(args.break_glass, args.reason.as_deref());
    // A freeze window holds a release: ask the gate before anything is committed.
    let job = JobSpec::Kill {
        agent: agent.to_string(),
        release: true,
    };
    let prepared = ops::prepare(
        source,
        request(job.clone(), Targets::Pattern(target.clone()), &args.fleet),
    )?;
    let db_path = db.clone().unwrap_or_else(crate::store::default_path);
    let mut g = gate(&db_path);
    if let Some(glass) = glass.clone() {
        g = g.with_break_glass(glass);
    }
    if let ops::Decision::Refused(r) = g.admit(&prepared) {
        return Err(ops::OpsError::Refused(r).into());
    }
    let released = change::release(root, agent, intent)?;
    let by = intent.actor.clone().unwrap_or_else(super::fleet_cmd::actor);
    let commit = released.as_ref().map(|(c, _)| c.commit.as_str());
    if let Err(e) = crate::killswitch::publish_release(&db_path, agent, &by, &intent.reason, commit)
    {
        eprintln!(
            "warning: the kill switch is released in the SoT but not in the run store ({e}): \
             controllers sharing the store still hold `{agent}`"
        );
    }
    match released {
        Some((commit, e)) => {
            if json {
                out!(
                    "{}",
                    json!({"event": "kill_released", "released": e, "commit": commit.commit})
                );
            } else {
                eprintln!(
                    "released: {} (commit {}); nothing is restarted",
                    sanitize(e.describe().as_bytes()),
                    &commit.commit[..12]
                );
            }
        }
        None => {
            if json {
                out!("{}", json!({"event": "kill_not_engaged", "agent": agent}));
            } else {
                eprintln!(
                    "the kill switch for `{agent}` is not engaged; removing markers left on the nodes"
                );
            }
        }
    }
    run(root, db, job, &target, &args.fleet, glass, json)
}

/// Run the kill (or release) job and print one confirmation per node.
fn run(
    root: &Path,
    db: Option<PathBuf>,
    job: JobSpec,
    target: &str,
    fleet: &FleetArgs,
    glass: Option<crate::freeze::BreakGlass>,
    json: bool,
) -> anyhow::Result<Exit> {
    // The SoT as committed: the marker says who engaged it, when and why.
    let source = load_source(root)?;
    let prepared = ops::prepare(
        source,
        request(job, Targets::Pattern(target.to_string()), fleet),
    )?;
    print_warnings(&prepared);
    if !json {
        eprintln!(
            "{} on {} node{} ({target})",
            prepared.description(),
            prepared.nodes().len(),
            if prepared.nodes().len() == 1 { "" } else { "s" },
        );
    }
    let db = db.unwrap_or_else(crate::store::default_path);
    let mut g = gate(&db);
    if let Some(glass) = glass {
        g = g.with_break_glass(glass);
    }
    let printer = if json {
        Printer::new(true, false)
    } else {
        Printer::quiet()
    };
    let driven = drive(&db, printer, move |launch| async move {
        prepared.apply(&g, &launch).await
    })?;
    let outcome = driven.value?;
    let reflections = super::fleet_cmd::reflection_lines(&outcome, json);
    let report = outcome.report;
    let nodes = confirmations(&report);
    let mut printer = driven.printer;
    for l in &reflections {
        printer.print(l);
    }
    for c in &nodes {
        if json {
            printer.print(&json!({"event": "kill_node", "node": c.node, "state": c.state, "pids": c.pids, "detail": c.detail}).to_string());
        } else {
            printer.print(&line(c));
        }
    }
    let confirmed = nodes.iter().filter(|c| c.state.confirmed()).count();
    let unreachable = nodes
        .iter()
        .filter(|c| c.state == NodeKill::Unreachable)
        .count();
    let failed = nodes.len() - confirmed - unreachable;
    let all = confirmed == nodes.len() && !report.cancelled;
    if json {
        printer.print(
            &json!({"event": "kill_summary", "run": report.run_id, "nodes": nodes.len(), "confirmed": confirmed,
                    "unreachable": unreachable, "failed": failed, "all_confirmed": all, "elapsed_ms": report.elapsed.as_millis() as u64})
            .to_string(),
        );
    } else {
        let mut text = format!(
            "{confirmed}/{} node{} confirmed",
            nodes.len(),
            if nodes.len() == 1 { "" } else { "s" }
        );
        if unreachable > 0 {
            text.push_str(&format!(", {unreachable} unreachable"));
        }
        if failed > 0 {
            text.push_str(&format!(", {failed} failed"));
        }
        text.push_str(&format!(
            " in {:.1}s (run {})",
            report.elapsed.as_secs_f64(),
            report.run_id
        ));
        if !all {
            text.push_str(
                "\nnot every node is confirmed: run the same command again once they are reachable",
            );
        }
        printer.print(&text);
    }
    if let Some(e) = &driven.store_error {
        eprintln!(
            "error: run {} was not recorded: {e}; its results above are all there is",
            report.run_id
        );
        return Ok(Exit::Internal);
    }
    Ok(if all { Exit::Ok } else { Exit::TargetsFailed })
}

fn line(c: &NodeConfirmation) -> String {
    let mut s = format!("{:<16} {}", sanitize(c.node.as_bytes()), c.state.as_str());
    if c.state == NodeKill::Stopped && !c.pids.is_empty() {
        s.push_str(&format!(
            " (pid {})",
            c.pids
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if let Some(d) = &c.detail
        && !c.state.confirmed()
    {
        s.push_str(": ");
        s.push_str(&sanitize(d.lines().next().unwrap_or("").as_bytes()));
    }
    s
}

fn status(root: &Path, json: bool) -> anyhow::Result<Exit> {
    let sot = crate::sot::load(root)?;
    if json {
        for e in &sot.killswitch {
            out!("{}", json!({"event": "kill_switch", "engaged": e}));
        }
        return Ok(Exit::Ok);
    }
    if sot.killswitch.is_empty() {
        out!("no kill switch is engaged");
        return Ok(Exit::Ok);
    }
    out!(
        "{:20}  {:20}  {:30}  {:16}  REASON",
        "AGENT",
        "ENGAGED",
        "BY",
        "SCOPE"
    );
    for e in &sot.killswitch {
        out!(
            "{:20}  {:20}  {:30}  {:16}  {}",
            sanitize(e.agent.as_bytes()),
            crate::freeze::stamp(&e.at),
            sanitize(e.by.as_bytes()),
            sanitize(e.limit.as_deref().unwrap_or("all").as_bytes()),
            sanitize(e.reason.as_bytes())
        );
    }
    Ok(Exit::Ok)
}
