//! The verbs, as the faces call them (Argo Rollouts' names): start,
//! promote, pause, resume, abort, retry, undo. Each that starts the new
//! version on nodes (start, promote, retry, undo) passes the admission
//! gate first, with every target node: a kill switch or a freeze window
//! refuses it before anything changes.

use tokio::sync::mpsc::UnboundedSender;

use super::controller::{self, Controller, Ended, Settings};
use super::{Plan, Result, RolloutError, RolloutEvent};
use crate::fleet::event::new_run_id;
use crate::ops::{self, Decision, Gate, JobRequest, JobSpec, Launch, SotSource, Targets};
use crate::store::{NewRollout, Rollout, RolloutStatus, Store};

/// `maestro rollout start AGENT@VERSION --limit TARGET [--strategy NAME]`.
#[derive(Debug, Clone)]
pub struct StartRequest {
    pub agent: String,
    pub version: String,
    pub strategy: Option<String>,
    pub limit: String,
}

fn request(settings: &Settings, job: JobSpec, targets: Targets) -> JobRequest {
    JobRequest {
        job,
        targets,
        settings: ops::PlaySettings::default(),
        connect: settings.connect.clone(),
        forks: settings.forks,
        limits: settings.limits.clone(),
        lessons: Vec::new(),
    }
}

/// The admission gate's answer for deploying `version` to `nodes`.
fn admit(
    source: &SotSource,
    settings: &Settings,
    gate: &Gate,
    agent: &str,
    version: &str,
    targets: Targets,
) -> Result<ops::Prepared> {
    let job = JobSpec::Deploy {
        agent: agent.to_string(),
        version: Some(version.to_string()),
        slot: crate::agent::Slot::Primary,
    };
    let prepared = ops::prepare(source.clone(), request(settings, job, targets))?;
    if let Decision::Refused(r) = gate.admit(&prepared) {
        return Err(ops::OpsError::Refused(r).into());
    }
    Ok(prepared)
}

/// Start a rollout and drive it. Nothing is recorded when the request is
/// invalid or refused; a second active rollout of the agent is refused by
/// the store.
pub async fn start(
    source: SotSource,
    settings: Settings,
    req: StartRequest,
    gate: &Gate,
    launch: Launch,
    events: UnboundedSender<RolloutEvent>,
) -> Result<(Ended, Rollout)> {
    let sot = source.sot.clone();
    let agent =
        crate::agent::find(&sot, &req.agent).map_err(|e| RolloutError::Invalid(e.to_string()))?;
    let strategy = req.strategy.clone().or_else(|| agent.rollout.clone()).ok_or_else(|| {
        RolloutError::Invalid(format!(
            "agent `{}` names no rollout strategy: add `rollout = \"NAME\"` to it in agents.toml, or pass --strategy NAME",
            req.agent
        ))
    })?;
    let plan = Plan::from_sot(&sot.rollouts, &strategy)?;
    let through_gateway = !matches!(
        &plan.strategy.kind,
        super::Kind::Canary {
            traffic: super::Traffic::Nodes,
            ..
        }
    );
    if through_gateway && agent.gateway.is_none() {
        return Err(RolloutError::Invalid(format!(
            "strategy `{strategy}` ({}) moves traffic at the gateway, and agent `{}` has none: add `gateway = {{ port = ..., preview_port = ... }}` to it in agents.toml",
            plan.strategy.kind.name(),
            req.agent
        )));
    }
    let prepared = admit(
        &source,
        &settings,
        gate,
        &req.agent,
        &req.version,
        Targets::Pattern(req.limit.clone()),
    )?;
    let nodes = prepared.nodes().to_vec();
    let mut store = crate::store::open_path(&settings.db)?;
    refuse_while_reflection_pending(&sot, &*store, &req.agent)?;
    if let Some(active) = store.active_rollout(&req.agent)? {
        return Err(crate::store::StoreError::ActiveRollout {
            agent: req.agent.clone(),
            id: active.id,
            status: active.status.to_string(),
        }
        .into());
    }
    // What runs now: the stable version is what rollback restores.
    let status = ops::prepare(
        source.clone(),
        request(
            &settings,
            JobSpec::AgentStatus {
                agent: Some(req.agent.clone()),
            },
            Targets::Nodes(nodes.clone()),
        ),
    )?;
    let observe_launch = Launch {
        bus: launch.bus.clone(),
        cancel: launch.cancel.clone(),
        run_id: new_run_id(),
    };
    let seen = status.apply(gate, &observe_launch).await?;
    let mut counts: std::collections::BTreeMap<String, usize> = Default::default();
    let mut problems = Vec::new();
    for a in &seen.agents {
        if let Some(e) = &a.error {
            problems.push(format!("{}: {e}", a.node));
        } else if a.state.version.is_empty() || !a.state.running {
            problems.push(format!("{}: runs no version of {}", a.node, req.agent));
        } else if a.state.version != req.version {
            *counts.entry(a.state.version.clone()).or_insert(0) += 1;
        }
    }
    for n in &nodes {
        if !seen.agents.iter().any(|a| &a.node == n) {
            problems.push(format!("{n}: did not answer"));
        }
    }
    if !problems.is_empty() {
        return Err(RolloutError::Invalid(format!(
            "a rollout needs every target node running a stable version to roll back to (deploy one first with `maestro deploy`):\n  {}",
            problems.join("\n  ")
        )));
    }
    let from = counts
        .iter()
        .max_by_key(|(_, c)| **c)
        .map(|(v, _)| v.clone());
    let id = format!("ro-{}", new_run_id());
    let r = store.create_rollout(&NewRollout {
        id: id.clone(),
        agent: req.agent.clone(),
        from_version: from,
        to_version: req.version.clone(),
        strategy: strategy.clone(),
        definition: serde_json::to_string(&plan).unwrap_or_default(),
        target: req.limit.clone(),
        nodes,
        created_by: settings.actor.label(),
        controller: controller::me(),
    })?;
    for a in &seen.agents {
        let e = crate::store::JournalEntry {
            seq: 0,
            at_ms: 0,
            attempt: 1,
            step: None,
            entry: "result".into(),
            action: "observe".into(),
            node: Some(a.node.clone()),
            version: Some(a.state.version.clone()),
            ok: Some(true),
            detail: "running at the start".into(),
        };
        store.append_journal(&id, &e)?;
    }
    let _ = events.send(RolloutEvent::Rollout {
        rollout: Box::new(r.clone()),
    });
    Controller::new(store, settings, source, launch, events, r)?
        .drive()
        .await
}

fn load(settings: &Settings, id: &str) -> Result<(Box<dyn Store>, Rollout)> {
    let store = crate::store::open_path(&settings.db)?;
    let r = store.rollout(id)?.ok_or_else(|| {
        RolloutError::Invalid(format!(
            "no rollout `{id}` in {} (see `maestro rollout list`)",
            crate::store::shown(&settings.db)
        ))
    })?;
    Ok((store, r))
}

/// Whether a live controller (another process) drives `r`.
fn driven_elsewhere(r: &Rollout) -> bool {
    let now = crate::fleet::event::now_ms();
    match (&r.controller, r.lease_ms) {
        (Some(c), Some(lease)) => {
            c != &controller::me() && lease >= now && !controller::holder_dead(c)
        }
        _ => false,
    }
}

/// What a verb did when it did not drive the rollout itself.
#[derive(Debug, Clone)]
pub enum Done {
    /// This process drove it to here.
    Drove(Ended, Rollout),
    /// Asked the live controller, which acts on it.
    Asked(Rollout),
}

/// `promote [--full]`: leave the pause (or inconclusive gate) and go on;
/// `--full` skips every remaining step and gate.
#[allow(clippy::too_many_arguments)]
pub async fn promote(
    source: SotSource,
    settings: Settings,
    id: &str,
    full: bool,
    gate: &Gate,
    launch: Launch,
    events: UnboundedSender<RolloutEvent>,
) -> Result<Done> {
    let (mut store, mut r) = load(&settings, id)?;
    if !r.status.is_active() {
        return Err(RolloutError::WrongState(format!(
            "rollout {} is {}: nothing to promote (`maestro rollout retry {}` starts it again)",
            r.id, r.status, r.id
        )));
    }
    admit(
        &source,
        &settings,
        gate,
        &r.agent,
        &r.to_version,
        Targets::Nodes(r.nodes.clone()),
    )?;
    let what = if full { "full" } else { "promote" };
    if r.status == RolloutStatus::Progressing && driven_elsewhere(&r) {
        store.request_rollout(&r.id, Some(what))?;
        let r = store.rollout(&r.id)?.unwrap_or(r);
        return Ok(Done::Asked(r));
    }
    Controller::claim(&mut *store, &r)?;
    let e = crate::store::JournalEntry {
        seq: 0,
        at_ms: 0,
        attempt: r.attempt,
        step: Some(r.step),
        entry: "result".into(),
        action: "promote".into(),
        node: None,
        version: None,
        ok: Some(true),
        detail: format!("{what} by {}", settings.actor.label()),
    };
    store.append_journal(&r.id, &e)?;
    if r.status == RolloutStatus::Paused && r.phase == "waiting" {
        r.step += 1;
        r.requested = full.then(|| "full".to_string());
    } else {
        r.requested = Some(what.into());
    }
    r.status = RolloutStatus::Progressing;
    r.reason = None;
    store.save_rollout(&r)?;
    let (ended, r) = Controller::new(store, settings, source, launch, events, r)?
        .drive()
        .await?;
    Ok(Done::Drove(ended, r))
}

/// `resume`: continue a rollout paused by `rollout pause`, or one whose
/// controller died (the journal says where it was).
pub async fn resume(
    source: SotSource,
    settings: Settings,
    id: &str,
    launch: Launch,
    events: UnboundedSender<RolloutEvent>,
) -> Result<Done> {
    let (mut store, mut r) = load(&settings, id)?;
    match (r.status, r.phase.as_str()) {
        (RolloutStatus::Paused, "waiting") => {
            return Err(RolloutError::WrongState(format!(
                "rollout {} waits for a decision ({}): `maestro rollout promote {}` continues, `abort` rolls back",
                r.id,
                r.reason.as_deref().unwrap_or("paused"),
                r.id
            )));
        }
        (RolloutStatus::Paused | RolloutStatus::Progressing, _) => {}
        _ => {
            return Err(RolloutError::WrongState(format!(
                "rollout {} is {}: nothing to resume{}",
                r.id,
                r.status,
                if r.status == RolloutStatus::Aborted {
                    format!(" (`maestro rollout retry {}` starts it again)", r.id)
                } else {
                    String::new()
                }
            )));
        }
    }
    Controller::claim(&mut *store, &r)?;
    r.status = RolloutStatus::Progressing;
    r.reason = None;
    r.requested = None;
    store.save_rollout(&r)?;
    let (ended, r) = Controller::new(store, settings, source, launch, events, r)?
        .drive()
        .await?;
    Ok(Done::Drove(ended, r))
}

/// `pause`: ask the controller to stop where it is (it finishes the node
/// actions in flight), or, with none running, mark it paused.
pub fn pause(settings: &Settings, id: &str) -> Result<Rollout> {
    let (mut store, mut r) = load(settings, id)?;
    match r.status {
        RolloutStatus::Progressing if driven_elsewhere(&r) => {
            store.request_rollout(&r.id, Some("pause"))?;
        }
        RolloutStatus::Progressing => {
            r.status = RolloutStatus::Paused;
            r.phase = "paused".into();
            r.reason = Some(
                "paused by an operator (maestro rollout pause); `maestro rollout resume` continues"
                    .into(),
            );
            store.save_rollout(&r)?;
        }
        RolloutStatus::Paused => {}
        s => {
            return Err(RolloutError::WrongState(format!(
                "rollout {} is {s}: nothing to pause",
                r.id
            )));
        }
    }
    Ok(store.rollout(&r.id)?.unwrap_or(r))
}

/// `abort`: with a live controller, ask it; else roll back here: the new
/// version is taken off every node it reached (unlike Argo, where abort
/// leaves the new pods).
pub async fn abort(
    source: SotSource,
    settings: Settings,
    id: &str,
    launch: Launch,
    events: UnboundedSender<RolloutEvent>,
) -> Result<Done> {
    let (mut store, r) = load(&settings, id)?;
    if !r.status.is_active() {
        return Err(RolloutError::WrongState(format!(
            "rollout {} is {}: nothing to abort",
            r.id, r.status
        )));
    }
    if r.status == RolloutStatus::Progressing && driven_elsewhere(&r) {
        store.request_rollout(&r.id, Some("abort"))?;
        return Ok(Done::Asked(store.rollout(&r.id)?.unwrap_or(r)));
    }
    Controller::claim(&mut *store, &r)?;
    let actor = settings.actor.label();
    let mut c = Controller::new(store, settings, source, launch, events, r)?;
    let ended = c
        .abort(format!("aborted by {actor} (maestro rollout abort)"))
        .await?;
    Ok(Done::Drove(ended, c.rollout))
}

/// The SoT can make learning a condition of the next rollout: a pending
/// reflection of a checklist with `block_rollouts` refuses it (exit 4, with
/// the reflection's id).
fn refuse_while_reflection_pending(
    sot: &crate::sot::Sot,
    store: &dyn crate::store::Store,
    agent: &str,
) -> Result<()> {
    match crate::reflect::blocking_rollout(sot, store, agent) {
        Ok(None) => Ok(()),
        Ok(Some(pending)) => {
            Err(ops::OpsError::Refused(crate::reflect::blocking_refusal(sot, &pending)).into())
        }
        Err(crate::reflect::ReflectError::Store(e)) => Err(e.into()),
        Err(e) => Err(RolloutError::Invalid(e.to_string())),
    }
}

/// `retry`: an aborted rollout again from its first step (a new attempt,
/// journaled apart from the last one).
pub async fn retry(
    source: SotSource,
    settings: Settings,
    id: &str,
    gate: &Gate,
    launch: Launch,
    events: UnboundedSender<RolloutEvent>,
) -> Result<Done> {
    let (mut store, mut r) = load(&settings, id)?;
    if r.status != RolloutStatus::Aborted {
        return Err(RolloutError::WrongState(format!(
            "rollout {} is {}: only an aborted rollout can be retried",
            r.id, r.status
        )));
    }
    // A retry is the next rollout of the agent too: the reflection on the
    // abort it repeats comes first.
    refuse_while_reflection_pending(&source.sot, &*store, &r.agent)?;
    admit(
        &source,
        &settings,
        gate,
        &r.agent,
        &r.to_version,
        Targets::Nodes(r.nodes.clone()),
    )?;
    r.attempt += 1;
    r.step = 0;
    r.weight = 0;
    r.status = RolloutStatus::Progressing;
    r.phase = "start".into();
    r.reason = None;
    r.requested = None;
    store.save_rollout(&r)?;
    Controller::claim(&mut *store, &r)?;
    let (ended, r) = Controller::new(store, settings, source, launch, events, r)?
        .drive()
        .await?;
    Ok(Done::Drove(ended, r))
}

/// `undo [--to VERSION]`: put a finished rollout's nodes back on its
/// stable version (or VERSION) at once, as a new rollout with no steps and
/// no gates: reverting to a known version skips the canary.
#[allow(clippy::too_many_arguments)]
pub async fn undo(
    source: SotSource,
    settings: Settings,
    id: &str,
    to: Option<String>,
    gate: &Gate,
    launch: Launch,
    events: UnboundedSender<RolloutEvent>,
) -> Result<(Ended, Rollout)> {
    let (mut store, r) = load(&settings, id)?;
    if r.status.is_active() {
        return Err(RolloutError::WrongState(format!(
            "rollout {} is {}: abort it to roll back (undo is for finished rollouts)",
            r.id, r.status
        )));
    }
    let to = to.or_else(|| r.from_version.clone()).ok_or_else(|| {
        RolloutError::Invalid(format!(
            "rollout {} had no stable version: name one with --to VERSION",
            r.id
        ))
    })?;
    admit(
        &source,
        &settings,
        gate,
        &r.agent,
        &to,
        Targets::Nodes(r.nodes.clone()),
    )?;
    let plan = Plan::immediate();
    let new = store.create_rollout(&NewRollout {
        id: format!("ro-{}", new_run_id()),
        agent: r.agent.clone(),
        from_version: Some(r.to_version.clone()),
        to_version: to,
        strategy: "undo".into(),
        definition: serde_json::to_string(&plan).unwrap_or_default(),
        target: r.target.clone(),
        nodes: r.nodes.clone(),
        created_by: settings.actor.label(),
        controller: controller::me(),
    })?;
    Controller::new(store, settings, source, launch, events, new)?
        .drive()
        .await
}

/// The kill switch ends any active rollout of `agent` (no rollback: the
/// kill switch stops the agent everywhere, and nothing may start it).
pub fn kill_switch_engaged(db: &std::path::Path, agent: &str, reason: &str) -> Result<Vec<String>> {
    let mut store = crate::store::open_path(db)?;
    let mut ended = Vec::new();
    let agents: Vec<Rollout> = store
        .rollouts(1000)?
        .into_iter()
        .filter(|r| r.status.is_active() && (agent == "--all" || r.agent == agent))
        .collect();
    for mut r in agents {
        r.status = RolloutStatus::Aborted;
        r.phase = "aborted".into();
        r.reason = Some(format!(
            "the kill switch was engaged for {}: {reason}",
            r.agent
        ));
        r.requested = None;
        store.save_rollout(&r)?;
        let e = crate::store::JournalEntry {
            seq: 0,
            at_ms: 0,
            attempt: r.attempt,
            step: Some(r.step),
            entry: "result".into(),
            action: "abort".into(),
            node: None,
            version: None,
            ok: Some(true),
            detail: r.reason.clone().unwrap_or_default(),
        };
        store.append_journal(&r.id, &e)?;
        ended.push(r.id);
    }
    Ok(ended)
}
