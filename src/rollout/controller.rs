//! The controller: drives one rollout through its steps from the row and
//! journal in the store. Every node action and gate decision is journaled
//! as an intent before it happens and a result after; a controller that
//! starts on a rollout (start, promote, resume, retry) continues from
//! there, so a node whose deploy has a result is not deployed again, and a
//! gate whose decision has a result is neither measured again nor skipped.
//! A deploy whose intent has no result is sent again: the node-side deploy
//! is idempotent (it finishes even when the controller died, and a second
//! one finds the version running and starts nothing).

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use tokio::sync::mpsc::UnboundedSender;

use super::analysis;
use super::spec::{GateSpec, Kind, Step};
use super::{Plan, Result, RolloutError, RolloutEvent};
use crate::fleet::event::{NodeStatus, new_run_id};
use crate::fleet::resolve::ConnectOptions;
use crate::fleet::ssh::ExecLimits;
use crate::ops::{self, Gate, JobRequest, JobSpec, Launch, OpsError, SotSource, Targets};
use crate::store::{
    GateOutcome as Outcome, JournalEntry, Measurement, Rollout, RolloutStatus, Store,
};

/// How long a controller's claim lasts without a heartbeat.
pub const LEASE_MS: i64 = 15_000;
/// How often a waiting controller looks at the store for requests.
const POLL: Duration = Duration::from_millis(200);

/// How the controller reaches nodes and records runs.
#[derive(Debug, Clone)]
pub struct Settings {
    pub connect: ConnectOptions,
    pub forks: usize,
    pub limits: ExecLimits,
    pub db: PathBuf,
    /// Who drives the rollout: what its jobs' policies judge.
    pub actor: crate::identity::Actor,
}

/// How a controller's drive ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    Completed,
    Paused(String),
    Aborted(String),
    /// Someone else now holds it, or it was ended from outside (the kill
    /// switch): this controller stopped touching it.
    Detached(String),
}

/// This process as a controller: `PID@HOST`.
pub fn me() -> String {
    format!("{}@{}", std::process::id(), hostname())
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

/// Whether the controller `PID@HOST` is gone (only known on this host).
pub fn holder_dead(holder: &str) -> bool {
    match holder.split_once('@') {
        Some((pid, host)) if host == hostname() => {
            !std::path::Path::new(&format!("/proc/{pid}")).exists()
        }
        _ => false,
    }
}

pub struct Controller {
    store: Box<dyn Store>,
    settings: Settings,
    source: SotSource,
    launch: Launch,
    events: UnboundedSender<RolloutEvent>,
    plan: Plan,
    pub rollout: Rollout,
    me: String,
    /// The weight is the gateways' split (the new version in the preview slot).
    gateway: bool,
}

/// One phase of a blue/green or shadow rollout.
#[derive(Debug, Clone)]
enum Phase {
    /// The new version into every node's preview slot (healthy, or abort).
    Preview,
    /// Every node's gateway to this traffic.
    Traffic(crate::gateway::Traffic),
    /// A gate: pass goes on, fail aborts, inconclusive pauses.
    Gate(String),
    /// Wait `ms` from the start of phase `since_step` (promote ends it).
    Hold { ms: u64, since_step: u32 },
}

impl Phase {
    fn describe(&self) -> String {
        match self {
            Phase::Preview => "preview: the new version in the preview slot".into(),
            Phase::Traffic(t) => format!("traffic {t}"),
            Phase::Gate(g) => format!("analysis {g}"),
            Phase::Hold { ms, .. } => format!("hold {}", super::spec::human_ms(*ms)),
        }
    }

    /// The phases of a blue/green or shadow strategy (`None` for a canary).
    fn of(kind: &Kind) -> Option<Vec<Phase>> {
        use crate::gateway::Traffic as T;
        match kind {
            Kind::Canary { .. } => None,
            Kind::BlueGreen {
                pre_promotion,
                scale_down_delay_ms,
            } => {
                let mut p = vec![Phase::Preview];
                p.extend(pre_promotion.clone().map(Phase::Gate));
                p.push(Phase::Traffic(T::Preview));
                let since = p.len() as u32;
                p.push(Phase::Hold {
                    ms: *scale_down_delay_ms,
                    since_step: since,
                });
                Some(p)
            }
            Kind::Shadow {
                mirror_percent,
                duration_ms,
                gate,
            } => {
                let mut p = vec![
                    Phase::Preview,
                    Phase::Traffic(T::Mirror {
                        percent: *mirror_percent,
                    }),
                ];
                p.extend(gate.clone().map(Phase::Gate));
                p.push(Phase::Hold {
                    ms: *duration_ms,
                    since_step: 1,
                });
                Some(p)
            }
        }
    }
}

/// A gate's decision and why.
struct Decision {
    outcome: Outcome,
    reason: String,
}

impl Controller {
    /// A controller for `rollout`, which this process must hold (see
    /// [`Controller::claim`]).
    pub fn new(
        store: Box<dyn Store>,
        settings: Settings,
        source: SotSource,
        launch: Launch,
        events: UnboundedSender<RolloutEvent>,
        rollout: Rollout,
    ) -> Result<Controller> {
        let plan = Plan::of(&rollout)?;
        let gateway = !matches!(
            &plan.strategy.kind,
            Kind::Canary {
                traffic: super::Traffic::Nodes,
                ..
            }
        );
        Ok(Controller {
            store,
            settings,
            source,
            launch,
            events,
            plan,
            rollout,
            me: me(),
            gateway,
        })
    }

    /// Take the rollout for this process; refused while a live controller holds it.
    pub fn claim(store: &mut dyn Store, r: &Rollout) -> Result<()> {
        if store.claim_rollout(&r.id, &me(), LEASE_MS, &holder_dead)? {
            return Ok(());
        }
        Err(RolloutError::WrongState(format!(
            "rollout {} is driven by {} (a live maestro process); ask it with `maestro rollout pause|abort|promote {}`",
            r.id,
            r.controller.as_deref().unwrap_or("another process"),
            r.id
        )))
    }

    fn emit(&self, e: RolloutEvent) {
        let _ = self.events.send(e);
    }

    fn journal(
        &mut self,
        entry: &str,
        action: &str,
        node: Option<&str>,
        version: Option<&str>,
        ok: Option<bool>,
        detail: &str,
    ) -> Result<()> {
        let e = JournalEntry {
            seq: 0,
            at_ms: 0,
            attempt: self.rollout.attempt,
            step: Some(self.rollout.step),
            entry: entry.into(),
            action: action.into(),
            node: node.map(str::to_string),
            version: version.map(str::to_string),
            ok,
            detail: detail.into(),
        };
        self.store.append_journal(&self.rollout.id, &e)?;
        Ok(())
    }

    fn save(&mut self) -> Result<()> {
        self.store.save_rollout(&self.rollout)?;
        Ok(())
    }

    fn finish(&mut self, status: RolloutStatus, phase: &str, reason: Option<String>) -> Result<()> {
        self.rollout.status = status;
        self.rollout.phase = phase.into();
        self.rollout.reason = reason;
        self.rollout.requested = None;
        self.save()?;
        self.store.release_rollout(&self.rollout.id, &self.me)?;
        self.rollout.controller = None;
        self.emit(RolloutEvent::Rollout {
            rollout: Box::new(self.rollout.clone()),
        });
        self.reflect();
        Ok(())
    }

    /// A rollout that ended is an operation the SoT's checklists may want
    /// reflected on; a reflection that cannot be recorded is journaled.
    fn reflect(&mut self) {
        let trigger = match self.rollout.status {
            RolloutStatus::Completed => crate::reflect::Trigger::RolloutCompleted,
            RolloutStatus::Aborted => crate::reflect::Trigger::RolloutAborted,
            _ => return,
        };
        let op = crate::reflect::Operation {
            trigger,
            // One reflection per attempt: a retry that aborts again is
            // another operation to reflect on.
            source: match self.rollout.attempt {
                0 | 1 => format!("rollout:{}", self.rollout.id),
                n => format!("rollout:{}#{n}", self.rollout.id),
            },
            agent: Some(self.rollout.agent.clone()),
            description: super::describe_end(&self.rollout),
            measure: None,
        };
        let sot = self.source.sot.clone();
        if let Err(e) =
            crate::reflect::fire(&sot, &mut *self.store, &[op], crate::reflect::now_ms())
        {
            let _ = self.journal(
                "result",
                "reflect",
                None,
                None,
                Some(false),
                &format!("the rollout's reflection could not be recorded: {e}"),
            );
        }
    }

    /// Look at the store: renew the lease, and act on what others asked
    /// or did. `Some` ends the drive.
    async fn control(&mut self) -> Result<Option<Ended>> {
        let Some(now) = self.store.rollout(&self.rollout.id)? else {
            return Ok(Some(Ended::Detached(
                "the rollout is gone from the store".into(),
            )));
        };
        if now.status != RolloutStatus::Progressing {
            let why = format!(
                "rollout is now {}{}",
                now.status,
                now.reason
                    .as_deref()
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default()
            );
            self.rollout = now;
            return Ok(Some(Ended::Detached(why)));
        }
        if now.controller.as_deref() != Some(self.me.as_str()) {
            return Ok(Some(Ended::Detached(format!(
                "rollout is now driven by {}",
                now.controller.as_deref().unwrap_or("nobody")
            ))));
        }
        self.store
            .claim_rollout(&self.rollout.id, &self.me, LEASE_MS, &holder_dead)?;
        self.rollout.requested = now.requested.clone();
        match now.requested.as_deref() {
            Some("abort") => {
                self.rollout.requested = None;
                let reason = "aborted by an operator (maestro rollout abort)".to_string();
                return Ok(Some(self.abort(reason).await?));
            }
            Some("pause") => {
                self.rollout.requested = None;
                self.journal(
                    "result",
                    "pause",
                    None,
                    None,
                    Some(true),
                    "paused by an operator",
                )?;
                let why = "paused by an operator (maestro rollout pause); `maestro rollout resume` continues".to_string();
                self.finish(RolloutStatus::Paused, "paused", Some(why.clone()))?;
                return Ok(Some(Ended::Paused(why)));
            }
            _ => {}
        }
        Ok(None)
    }

    /// Sleep `d`, looking at the store every [`POLL`]; ends early on a
    /// `promote` request (returned as `Ok(None)` with `promoted` set).
    async fn wait(&mut self, d: Duration, promoted: &mut bool) -> Result<Option<Ended>> {
        let until = Instant::now() + d;
        loop {
            if let Some(end) = self.control().await? {
                return Ok(Some(end));
            }
            if matches!(self.rollout.requested.as_deref(), Some("promote" | "full")) {
                *promoted = true;
                return Ok(None);
            }
            let now = Instant::now();
            if now >= until {
                return Ok(None);
            }
            tokio::time::sleep((until - now).min(POLL)).await;
        }
    }

    /// Drive the rollout until it completes, pauses or aborts.
    pub async fn drive(mut self) -> Result<(Ended, Rollout)> {
        let ended = self.run().await;
        if ended.is_err() {
            // Whatever failed, the next controller may take it at once.
            let _ = self.store.release_rollout(&self.rollout.id, &self.me);
        }
        Ok((ended?, self.rollout))
    }

    async fn run(&mut self) -> Result<Ended> {
        if let Some(phases) = Phase::of(&self.plan.strategy.kind) {
            return self.run_phases(phases).await;
        }
        let Kind::Canary {
            steps,
            max_unavailable,
            max_fail_percent,
            traffic,
        } = self.plan.strategy.kind.clone()
        else {
            return Err(RolloutError::Invalid(format!(
                "strategy `{}` is a {} rollout; this maestro drives canary rollouts only",
                self.plan.strategy.name,
                self.plan.strategy.kind.name()
            )));
        };
        let batch = max_unavailable.batch(self.rollout.nodes.len());
        self.gateway = traffic == super::Traffic::Gateway;
        loop {
            if let Some(end) = self.control().await? {
                return Ok(end);
            }
            let i = self.rollout.step as usize;
            if self.rollout.requested.as_deref() == Some("full") || i >= steps.len() {
                if self.rollout.requested.as_deref() == Some("full") {
                    self.rollout.requested = None;
                    self.store.request_rollout(&self.rollout.id, None)?;
                }
                let end = if self.gateway {
                    self.gateway_complete(batch, max_fail_percent).await?
                } else {
                    self.set_weight(100, batch, max_fail_percent).await?
                };
                if let Some(end) = end {
                    return Ok(end);
                }
                self.journal(
                    "result",
                    "complete",
                    None,
                    Some(&self.rollout.to_version.clone()),
                    Some(true),
                    "every node runs the new version",
                )?;
                self.finish(RolloutStatus::Completed, "done", None)?;
                return Ok(Ended::Completed);
            }
            let step = steps[i].clone();
            self.emit(RolloutEvent::Step {
                id: self.rollout.id.clone(),
                index: i as u32,
                step: step.describe(),
            });
            // A promote asked for while the last step ran applies to it only.
            if self.rollout.requested.as_deref() == Some("promote")
                && !matches!(step, Step::Pause(_) | Step::Analysis { .. })
            {
                self.rollout.requested = None;
                self.store.request_rollout(&self.rollout.id, None)?;
            }
            match &step {
                Step::SetWeight(w) => {
                    self.rollout.phase = "deploy".into();
                    self.save()?;
                    let end = if self.gateway {
                        self.gateway_weight(*w).await?
                    } else {
                        self.set_weight(*w, batch, max_fail_percent).await?
                    };
                    if let Some(end) = end {
                        return Ok(end);
                    }
                }
                Step::Pause(None) => {
                    self.journal(
                        "intent",
                        "pause",
                        None,
                        None,
                        None,
                        "pause = {}: waiting for promote",
                    )?;
                    let why = format!(
                        "step {} of {}: pause = {{}}; `maestro rollout promote {}` continues, `abort` rolls back",
                        i + 1,
                        steps.len(),
                        self.rollout.id
                    );
                    self.finish(RolloutStatus::Paused, "waiting", Some(why.clone()))?;
                    return Ok(Ended::Paused(why));
                }
                Step::Pause(Some(ms)) => {
                    let step = self.rollout.step;
                    if let Some(end) = self.timed_pause(*ms, step, "pause").await? {
                        return Ok(end);
                    }
                }
                Step::Analysis { gate } => {
                    if let Some(end) = self.gate_step(gate).await? {
                        return Ok(end);
                    }
                }
            }
            self.rollout.step += 1;
            self.save()?;
        }
    }

    /// A timed wait of `ms` measured from `since_step`'s start (its pause
    /// intent, or the result of the traffic it set), so a resumed
    /// controller waits only what is left. A promote ends it early.
    async fn timed_pause(
        &mut self,
        ms: u64,
        since_step: u32,
        phase: &str,
    ) -> Result<Option<Ended>> {
        self.rollout.phase = phase.into();
        self.save()?;
        let journal = self.store.journal(&self.rollout.id)?;
        let attempt = self.rollout.attempt;
        let own = self.rollout.step;
        let started = journal.iter().find(|e| {
            e.attempt == attempt
                && e.step == Some(since_step)
                && ((e.action == "pause" && e.entry == "intent")
                    || (since_step != own && e.action == "traffic" && e.entry == "result"))
        });
        let elapsed = match started {
            Some(e) => (crate::fleet::event::now_ms() - e.at_ms).max(0) as u64,
            None => {
                self.journal(
                    "intent",
                    "pause",
                    None,
                    None,
                    None,
                    &format!("{phase} {}", super::spec::human_ms(ms)),
                )?;
                0
            }
        };
        let mut promoted = false;
        let left = Duration::from_millis(ms.saturating_sub(elapsed));
        if let Some(end) = self.wait(left, &mut promoted).await? {
            return Ok(Some(end));
        }
        if promoted {
            self.rollout.requested = None;
            self.store.request_rollout(&self.rollout.id, None)?;
        }
        self.journal(
            "result",
            "pause",
            None,
            None,
            Some(true),
            if promoted { "promoted" } else { "pause over" },
        )?;
        Ok(None)
    }

    /// An analysis step: pass goes on, fail aborts (rolls back), inconclusive pauses.
    async fn gate_step(&mut self, gate: &str) -> Result<Option<Ended>> {
        self.rollout.phase = "analysis".into();
        self.save()?;
        let spec = self.plan.gates.get(gate).cloned().ok_or_else(|| {
            RolloutError::Invalid(format!("the rollout's plan has no gate `{gate}`"))
        })?;
        let decision = match self.analysis(&spec).await? {
            Ok(d) => d,
            Err(end) => return Ok(Some(end)),
        };
        match decision.outcome {
            Outcome::Pass => Ok(None),
            Outcome::Fail => {
                let reason = format!("gate `{gate}` failed: {}", decision.reason);
                Ok(Some(self.abort(reason).await?))
            }
            Outcome::Inconclusive => {
                let why = format!(
                    "gate `{gate}` inconclusive: {}; `maestro rollout promote {}` skips it, `abort` rolls back",
                    decision.reason, self.rollout.id
                );
                self.finish(RolloutStatus::Paused, "waiting", Some(why.clone()))?;
                Ok(Some(Ended::Paused(why)))
            }
        }
    }

    /// Blue/green and shadow as a list of phases over the gateway; the
    /// rollout's `step` is the phase index, journaled like a canary's steps.
    async fn run_phases(&mut self, phases: Vec<Phase>) -> Result<Ended> {
        self.gateway = true;
        let all = self.rollout.nodes.len();
        loop {
            if let Some(end) = self.control().await? {
                return Ok(end);
            }
            let i = self.rollout.step as usize;
            if self.rollout.requested.as_deref() == Some("full") || i >= phases.len() {
                if self.rollout.requested.as_deref() == Some("full") {
                    self.rollout.requested = None;
                    self.store.request_rollout(&self.rollout.id, None)?;
                }
                if let Some(end) = self.gateway_complete(all, 0).await? {
                    return Ok(end);
                }
                self.journal(
                    "result",
                    "complete",
                    None,
                    Some(&self.rollout.to_version.clone()),
                    Some(true),
                    "every node runs the new version",
                )?;
                self.finish(RolloutStatus::Completed, "done", None)?;
                return Ok(Ended::Completed);
            }
            let phase = phases[i].clone();
            self.emit(RolloutEvent::Step {
                id: self.rollout.id.clone(),
                index: i as u32,
                step: phase.describe(),
            });
            if self.rollout.requested.as_deref() == Some("promote")
                && !matches!(phase, Phase::Hold { .. } | Phase::Gate(_))
            {
                self.rollout.requested = None;
                self.store.request_rollout(&self.rollout.id, None)?;
            }
            let end = match &phase {
                Phase::Preview => {
                    self.rollout.phase = "deploy".into();
                    self.save()?;
                    self.gateway_preview().await?
                }
                Phase::Traffic(t) => {
                    self.rollout.phase = "traffic".into();
                    self.save()?;
                    self.gateway_traffic(*t).await?
                }
                Phase::Gate(g) => self.gate_step(g).await?,
                Phase::Hold { ms, since_step } => {
                    let what = if *since_step == self.rollout.step {
                        "scale_down_delay"
                    } else {
                        "shadow"
                    };
                    self.timed_pause(*ms, *since_step, what).await?
                }
            };
            if let Some(end) = end {
                return Ok(end);
            }
            self.rollout.step += 1;
            self.save()?;
        }
    }

    /// The nodes that run the new version: seen so at the start, or
    /// deployed to it in this attempt.
    fn on_new(&self) -> Result<BTreeSet<String>> {
        let to = &self.rollout.to_version;
        let mut done = BTreeSet::new();
        for e in self.store.journal(&self.rollout.id)? {
            let Some(node) = e.node else { continue };
            if e.entry != "result" || e.ok != Some(true) || e.version.as_ref() != Some(to) {
                continue;
            }
            if e.action == "observe" || (e.action == "deploy" && e.attempt == self.rollout.attempt)
            {
                done.insert(node);
            }
        }
        Ok(done)
    }

    fn settings_request(&self, job: JobSpec, nodes: &[String]) -> JobRequest {
        JobRequest {
            job,
            targets: Targets::Nodes(nodes.to_vec()),
            settings: ops::PlaySettings::default(),
            connect: self.settings.connect.clone(),
            forks: self.settings.forks,
            limits: self.settings.limits.clone(),
            lessons: Vec::new(),
        }
    }

    /// Deploy `version` to `nodes` through `gate`: per node, ok and what it said.
    async fn deploy(
        &mut self,
        nodes: &[String],
        version: &str,
        gate: &Gate,
    ) -> std::result::Result<Vec<(String, bool, String)>, OpsError> {
        let job = JobSpec::Deploy {
            agent: self.rollout.agent.clone(),
            version: Some(version.to_string()),
            slot: crate::agent::Slot::Primary,
        };
        self.run_job(job, nodes, gate).await
    }

    /// Run `job` on `nodes` through `gate`: per node, ok and what it said.
    async fn run_job(
        &mut self,
        job: JobSpec,
        nodes: &[String],
        gate: &Gate,
    ) -> std::result::Result<Vec<(String, bool, String)>, OpsError> {
        let prepared = ops::prepare(self.source.clone(), self.settings_request(job, nodes))?;
        let launch = Launch {
            bus: self.launch.bus.clone(),
            cancel: self.launch.cancel.clone(),
            run_id: new_run_id(),
        };
        let outcome = prepared.apply(gate, &launch).await?;
        Ok(outcome
            .report
            .results
            .iter()
            .map(|r| {
                let detail = r
                    .tasks
                    .first()
                    .map(|t| t.message.clone())
                    .or_else(|| r.error.clone())
                    .unwrap_or_default();
                (r.node.clone(), r.status == NodeStatus::Ok, detail)
            })
            .collect())
    }

    /// Bring the new version to the first `weight` percent of the nodes,
    /// `batch` at a time; more failures than `max_fail_percent` abort.
    async fn set_weight(
        &mut self,
        weight: u8,
        batch: usize,
        max_fail_percent: u8,
    ) -> Result<Option<Ended>> {
        let total = self.rollout.nodes.len();
        let want = if weight == 0 {
            0
        } else {
            (total * weight as usize).div_ceil(100).max(1)
        };
        let done = self.on_new()?;
        let todo: Vec<String> = self.rollout.nodes[..want.min(total)]
            .iter()
            .filter(|n| !done.contains(*n))
            .cloned()
            .collect();
        let gate =
            Gate::new(Some(self.settings.db.clone()), self.settings.actor.clone()).within_rollout();
        let to = self.rollout.to_version.clone();
        let mut failed: Vec<(String, String)> = Vec::new();
        for chunk in todo.chunks(batch) {
            if let Some(end) = self.control().await? {
                return Ok(Some(end));
            }
            for n in chunk {
                self.journal("intent", "deploy", Some(n), Some(&to), None, "")?;
            }
            self.emit(RolloutEvent::Deploy {
                id: self.rollout.id.clone(),
                version: to.clone(),
                nodes: chunk.to_vec(),
            });
            let results = match self.deploy(chunk, &to, &gate).await {
                Ok(r) => r,
                Err(OpsError::Refused(r)) => {
                    // A freeze window or kill switch that appeared mid-way
                    // holds the rest: paused, nothing half-sent.
                    let why = format!("the next deploy was not admitted: {r}");
                    for n in chunk {
                        self.journal(
                            "result",
                            "deploy",
                            Some(n),
                            Some(&to),
                            Some(false),
                            "not admitted",
                        )?;
                    }
                    self.finish(RolloutStatus::Paused, "paused", Some(why.clone()))?;
                    return Ok(Some(Ended::Paused(why)));
                }
                Err(e) => return Err(e.into()),
            };
            for (node, ok, detail) in results {
                self.journal(
                    "result",
                    "deploy",
                    Some(&node),
                    Some(&to),
                    Some(ok),
                    &detail,
                )?;
                self.emit(RolloutEvent::Node {
                    id: self.rollout.id.clone(),
                    node: node.clone(),
                    version: to.clone(),
                    ok,
                    detail: detail.clone(),
                });
                if !ok {
                    failed.push((node, detail));
                }
            }
            // Exclusive: more than max_fail_percent of the step's nodes.
            if failed.len() * 100 > max_fail_percent as usize * todo.len() {
                let first = &failed[0];
                let reason = format!(
                    "{} of {} node(s) of this step failed ({}%), more than max_fail_percent = {}: {}: {}",
                    failed.len(),
                    todo.len(),
                    failed.len() * 100 / todo.len().max(1),
                    max_fail_percent,
                    first.0,
                    first.1
                );
                return Ok(Some(self.abort(reason).await?));
            }
        }
        self.rollout.weight = weight;
        self.save()?;
        Ok(None)
    }

    /// Roll every node this attempt touched back to the stable version,
    /// then mark the rollout aborted with `reason`.
    pub async fn abort(&mut self, reason: String) -> Result<Ended> {
        self.rollout.phase = "rollback".into();
        self.save()?;
        self.journal("intent", "abort", None, None, None, &reason)?;
        let mut reason = reason;
        if self.gateway {
            let notes = self.gateway_back().await?;
            reason.push_str(&notes);
        }
        let journal = self.store.journal(&self.rollout.id)?;
        let attempt = self.rollout.attempt;
        let mut touched: Vec<String> = Vec::new();
        let mut restored: BTreeSet<String> = BTreeSet::new();
        for e in &journal {
            let Some(node) = &e.node else { continue };
            if e.attempt != attempt {
                continue;
            }
            if e.action == "deploy" && e.entry == "intent" && !touched.contains(node) {
                touched.push(node.clone());
            }
            if e.action == "rollback" && e.entry == "result" && e.ok == Some(true) {
                restored.insert(node.clone());
            }
        }
        let todo: Vec<String> = self
            .rollout
            .nodes
            .iter()
            .filter(|n| touched.contains(n) && !restored.contains(*n))
            .cloned()
            .collect();
        match (self.rollout.from_version.clone(), todo.is_empty()) {
            (_, true) => {}
            (None, false) => {
                reason.push_str(&format!(
                    "; no stable version to go back to: {} keep the new version",
                    todo.join(", ")
                ));
            }
            (Some(from), false) => {
                for n in &todo {
                    self.journal("intent", "rollback", Some(n), Some(&from), None, "")?;
                }
                self.emit(RolloutEvent::Rollback {
                    id: self.rollout.id.clone(),
                    version: from.clone(),
                    nodes: todo.clone(),
                });
                let gate =
                    Gate::rollback(Some(self.settings.db.clone()), self.settings.actor.clone());
                match self.deploy(&todo, &from, &gate).await {
                    Ok(results) => {
                        let mut bad = Vec::new();
                        for (node, ok, detail) in results {
                            self.journal(
                                "result",
                                "rollback",
                                Some(&node),
                                Some(&from),
                                Some(ok),
                                &detail,
                            )?;
                            self.emit(RolloutEvent::Node {
                                id: self.rollout.id.clone(),
                                node: node.clone(),
                                version: from.clone(),
                                ok,
                                detail,
                            });
                            if !ok {
                                bad.push(node);
                            }
                        }
                        if !bad.is_empty() {
                            reason
                                .push_str(&format!("; the rollback failed on {}", bad.join(", ")));
                        }
                    }
                    Err(e) => reason.push_str(&format!("; the rollback was not run: {e}")),
                }
            }
        }
        self.rollout.weight = 0;
        self.journal("result", "abort", None, None, Some(true), &reason)?;
        self.finish(RolloutStatus::Aborted, "aborted", Some(reason.clone()))?;
        Ok(Ended::Aborted(reason))
    }

    /// Run `job` on every node, journaled under `action` (detail `what`);
    /// returns the nodes that failed with why.
    async fn on_all(
        &mut self,
        action: &str,
        what: &str,
        job: JobSpec,
        gate: &Gate,
    ) -> Result<Vec<(String, String)>> {
        let nodes = self.rollout.nodes.clone();
        for n in &nodes {
            self.journal("intent", action, Some(n), None, None, what)?;
        }
        let results = match self.run_job(job, &nodes, gate).await {
            Ok(r) => r,
            Err(OpsError::Refused(r)) => nodes
                .iter()
                .map(|n| (n.clone(), false, format!("not admitted: {r}")))
                .collect(),
            Err(e) => return Err(e.into()),
        };
        let mut failed = Vec::new();
        for (node, ok, detail) in results {
            self.journal(
                "result",
                action,
                Some(&node),
                None,
                Some(ok),
                &format!("{what}: {detail}"),
            )?;
            if !ok {
                failed.push((node, detail));
            }
        }
        Ok(failed)
    }

    fn gateway_job(&self, traffic: crate::gateway::Traffic) -> JobSpec {
        JobSpec::GatewaySet {
            agent: self.rollout.agent.clone(),
            traffic,
        }
    }

    /// The new version in every node's preview slot (once), then the
    /// gateways' split at `weight`.
    async fn gateway_weight(&mut self, weight: u8) -> Result<Option<Ended>> {
        if let Some(end) = self.gateway_preview().await? {
            return Ok(Some(end));
        }
        let traffic = match weight {
            0 => crate::gateway::Traffic::Primary,
            100.. => crate::gateway::Traffic::Preview,
            w => crate::gateway::Traffic::Split { preview_percent: w },
        };
        self.gateway_traffic(traffic).await
    }

    /// The new version in every node's preview slot, once per attempt (a
    /// node with a journaled result is not deployed again); a node whose
    /// preview fails its health aborts the rollout.
    async fn gateway_preview(&mut self) -> Result<Option<Ended>> {
        let gate =
            Gate::new(Some(self.settings.db.clone()), self.settings.actor.clone()).within_rollout();
        let to = self.rollout.to_version.clone();
        let attempt = self.rollout.attempt;
        let previewed: BTreeSet<String> = self
            .store
            .journal(&self.rollout.id)?
            .into_iter()
            .filter(|e| {
                e.attempt == attempt
                    && e.action == "preview"
                    && e.entry == "result"
                    && e.ok == Some(true)
            })
            .filter_map(|e| e.node)
            .collect();
        let todo: Vec<String> = self
            .rollout
            .nodes
            .iter()
            .filter(|n| !previewed.contains(*n))
            .cloned()
            .collect();
        if !todo.is_empty() {
            for n in &todo {
                self.journal("intent", "preview", Some(n), Some(&to), None, "")?;
            }
            self.emit(RolloutEvent::Deploy {
                id: self.rollout.id.clone(),
                version: format!("{to} (preview slot)"),
                nodes: todo.clone(),
            });
            let job = JobSpec::Deploy {
                agent: self.rollout.agent.clone(),
                version: Some(to.clone()),
                slot: crate::agent::Slot::Preview,
            };
            let results = self.run_job(job, &todo, &gate).await?;
            let mut failed = Vec::new();
            for (node, ok, detail) in results {
                self.journal(
                    "result",
                    "preview",
                    Some(&node),
                    Some(&to),
                    Some(ok),
                    &detail,
                )?;
                self.emit(RolloutEvent::Node {
                    id: self.rollout.id.clone(),
                    node: node.clone(),
                    version: to.clone(),
                    ok,
                    detail: detail.clone(),
                });
                if !ok {
                    failed.push(format!("{node}: {detail}"));
                }
            }
            if !failed.is_empty() {
                let reason = format!(
                    "the new version failed in the preview slot: {}",
                    failed.join("; ")
                );
                return Ok(Some(self.abort(reason).await?));
            }
        }
        Ok(None)
    }

    /// Every node's gateway to `traffic` (journaled per node); a node that
    /// cannot be set aborts the rollout.
    async fn gateway_traffic(&mut self, traffic: crate::gateway::Traffic) -> Result<Option<Ended>> {
        let gate =
            Gate::new(Some(self.settings.db.clone()), self.settings.actor.clone()).within_rollout();
        let job = self.gateway_job(traffic);
        let failed = self
            .on_all("traffic", &traffic.to_string(), job, &gate)
            .await?;
        if let Some((node, why)) = failed.first() {
            let reason = format!("the gateway could not be set to {traffic} on {node}: {why}");
            return Ok(Some(self.abort(reason).await?));
        }
        self.rollout.weight = traffic.preview_share();
        self.save()?;
        Ok(None)
    }

    /// The end of a gateway canary: all traffic to the preview, the primary
    /// redeployed to the new version, traffic back to the primary, the
    /// preview stopped.
    async fn gateway_complete(
        &mut self,
        batch: usize,
        max_fail_percent: u8,
    ) -> Result<Option<Ended>> {
        if let Some(end) = self.gateway_weight(100).await? {
            return Ok(Some(end));
        }
        if let Some(end) = self.set_weight(100, batch, max_fail_percent).await? {
            return Ok(Some(end));
        }
        let gate =
            Gate::new(Some(self.settings.db.clone()), self.settings.actor.clone()).within_rollout();
        let job = self.gateway_job(crate::gateway::Traffic::Primary);
        let failed = self.on_all("traffic", "primary", job, &gate).await?;
        if let Some((node, why)) = failed.first() {
            let reason = format!("the gateway could not be set back to primary on {node}: {why}");
            return Ok(Some(self.abort(reason).await?));
        }
        let stop = JobSpec::Disable {
            agent: self.rollout.agent.clone(),
            slot: crate::agent::Slot::Preview,
        };
        self.on_all("preview-stop", "preview stopped", stop, &gate)
            .await?;
        Ok(None)
    }

    /// Abort's first half with a gateway: traffic to the primary (the
    /// stable version) on every node, then the preview stopped. Returns
    /// what went wrong, for the reason.
    async fn gateway_back(&mut self) -> Result<String> {
        let gate = Gate::rollback(Some(self.settings.db.clone()), self.settings.actor.clone());
        let mut notes = String::new();
        let job = self.gateway_job(crate::gateway::Traffic::Primary);
        let failed = self.on_all("traffic", "primary", job, &gate).await?;
        if !failed.is_empty() {
            let names: Vec<&str> = failed.iter().map(|f| f.0.as_str()).collect();
            notes.push_str(&format!(
                "; traffic could not be set back to primary on {}",
                names.join(", ")
            ));
        }
        let stop = JobSpec::Disable {
            agent: self.rollout.agent.clone(),
            slot: crate::agent::Slot::Preview,
        };
        let failed = self
            .on_all("preview-stop", "preview stopped", stop, &gate)
            .await?;
        if !failed.is_empty() {
            let names: Vec<&str> = failed.iter().map(|f| f.0.as_str()).collect();
            notes.push_str(&format!(
                "; the preview could not be stopped on {}",
                names.join(", ")
            ));
        }
        Ok(notes)
    }

    /// Run (or continue) the step's gate. `Err(end)`: the drive ended
    /// while it ran (paused, aborted, taken over).
    async fn analysis(&mut self, gate: &GateSpec) -> Result<std::result::Result<Decision, Ended>> {
        let (attempt, step) = (self.rollout.attempt, self.rollout.step);
        let journal = self.store.journal(&self.rollout.id)?;
        let at_step =
            |e: &&JournalEntry| e.attempt == attempt && e.step == Some(step) && e.action == "gate";
        if let Some(done) = journal.iter().filter(at_step).find(|e| e.entry == "result") {
            // Decided before a crash: the decision stands.
            let outcome = match done.ok {
                Some(true) => Outcome::Pass,
                Some(false) => Outcome::Fail,
                None => Outcome::Inconclusive,
            };
            return Ok(Ok(Decision {
                outcome,
                reason: done.detail.clone(),
            }));
        }
        if !journal.iter().filter(at_step).any(|e| e.entry == "intent") {
            self.journal(
                "intent",
                "gate",
                None,
                Some(&self.rollout.to_version.clone()),
                None,
                &gate.name,
            )?;
        }
        let previous: Vec<Measurement> = self
            .store
            .measurements(&self.rollout.id)?
            .into_iter()
            .filter(|m| m.attempt == attempt && m.step == step)
            .collect();
        let mut outcomes: Vec<Outcome> = previous.iter().map(|m| m.outcome).collect();
        let mut last = previous.last().map(|m| m.message.clone());
        let decided = analysis::decide(gate, &outcomes);
        let decision = match decided {
            Some(o) => Decision {
                outcome: o,
                reason: last.clone().unwrap_or_default(),
            },
            None => {
                let sot = self.source.sot.clone();
                let indices: Vec<usize> = self
                    .rollout
                    .nodes
                    .iter()
                    .filter_map(|n| sot.node_index.get(n).copied())
                    .collect();
                let (specs, _) =
                    crate::fleet::resolve::connect_specs(&sot, &indices, &self.settings.connect)
                        .map_err(|e| RolloutError::Invalid(e.to_string()))?;
                let every = Duration::from_millis((gate.interval_ms / 2).clamp(250, 1000));
                let telemetry = crate::telemetry::start(
                    specs,
                    crate::telemetry::CollectorOptions {
                        interval: every,
                        ..Default::default()
                    },
                    8,
                    Vec::new(),
                );
                let state = telemetry.state();
                let result = self
                    .measure_loop(gate, &state, &mut outcomes, &mut last, previous.is_empty())
                    .await;
                telemetry.stop().await;
                match result? {
                    Ok(d) => d,
                    Err(end) => return Ok(Err(end)),
                }
            }
        };
        let ok = match decision.outcome {
            Outcome::Pass => Some(true),
            Outcome::Fail => Some(false),
            Outcome::Inconclusive => None,
        };
        self.journal(
            "result",
            "gate",
            None,
            Some(&self.rollout.to_version.clone()),
            ok,
            &decision.reason,
        )?;
        self.emit(RolloutEvent::Gate {
            id: self.rollout.id.clone(),
            step,
            gate: gate.name.clone(),
            outcome: decision.outcome,
            reason: decision.reason.clone(),
        });
        Ok(Ok(decision))
    }

    async fn measure_loop(
        &mut self,
        gate: &GateSpec,
        state: &crate::telemetry::SharedState,
        outcomes: &mut Vec<Outcome>,
        last: &mut Option<String>,
        first: bool,
    ) -> Result<std::result::Result<Decision, Ended>> {
        let nodes = self.rollout.nodes.clone();
        let mut promoted = false;
        // The first samples (and rates) need two readings of every node.
        let ready = Instant::now() + Duration::from_secs(10);
        while Instant::now() < ready
            && !analysis::all_sampled(&crate::telemetry::lock(state), &nodes)
        {
            if let Some(end) = self.wait(POLL, &mut promoted).await? {
                return Ok(Err(end));
            }
        }
        if first
            && gate.initial_delay_ms > 0
            && let Some(end) = self
                .wait(Duration::from_millis(gate.initial_delay_ms), &mut promoted)
                .await?
        {
            return Ok(Err(end));
        }
        let agent = self.rollout.agent.clone();
        let take = |state: &crate::telemetry::SharedState| {
            analysis::snapshot(
                &crate::telemetry::lock(state),
                &agent,
                &nodes,
                Instant::now(),
            )
        };
        let mut before = take(state);
        loop {
            if promoted {
                self.rollout.requested = None;
                self.store.request_rollout(&self.rollout.id, None)?;
                return Ok(Ok(Decision {
                    outcome: Outcome::Pass,
                    reason: "skipped by promote".into(),
                }));
            }
            if let Some(end) = self
                .wait(Duration::from_millis(gate.interval_ms), &mut promoted)
                .await?
            {
                return Ok(Err(end));
            }
            if promoted {
                continue;
            }
            let after = take(state);
            let new = analysis::measure(&before, &after, &self.rollout.to_version);
            let stable = self
                .rollout
                .from_version
                .as_ref()
                .map(|v| analysis::measure(&before, &after, v));
            let (outcome, why) = analysis::judge(gate, &new, stable.as_ref());
            let mut metrics = serde_json::to_value(&new).unwrap_or_default();
            if let (Some(s), Some(obj)) = (&stable, metrics.as_object_mut()) {
                obj.insert("stable".into(), serde_json::to_value(s).unwrap_or_default());
            }
            let seq = outcomes.len() as u32 + 1;
            let message = format!(
                "measurement {seq}/{}: {}: {why} ({})",
                gate.count,
                outcome.as_str(),
                brief(&new)
            );
            let m = Measurement {
                rollout_id: self.rollout.id.clone(),
                attempt: self.rollout.attempt,
                step: self.rollout.step,
                gate: gate.name.clone(),
                seq,
                at_ms: crate::fleet::event::now_ms(),
                version: self.rollout.to_version.clone(),
                outcome,
                metrics,
                message: message.clone(),
            };
            self.store.record_measurement(&m)?;
            self.emit(RolloutEvent::Measurement {
                measurement: Box::new(m),
            });
            outcomes.push(outcome);
            *last = Some(message.clone());
            if let Some(o) = analysis::decide(gate, outcomes) {
                return Ok(Ok(Decision {
                    outcome: o,
                    reason: message,
                }));
            }
            before = after;
        }
    }
}

/// `error_rate 0.2, 100 requests, p99 0.01s` for reasons and messages.
pub fn brief(v: &analysis::Values) -> String {
    let mut parts = Vec::new();
    if let Some(e) = v.error_rate {
        parts.push(format!("error_rate {e:.3}"));
    }
    parts.push(format!("{} requests", v.requests.unwrap_or(0.0)));
    if let Some(p) = v.latency_p99 {
        parts.push(format!("p99 {p:.3}s"));
    }
    parts.push(format!("{} node(s)", v.nodes));
    parts.join(", ")
}

/// The node each version runs on, for the status tree.
pub fn by_version(
    versions: &std::collections::BTreeMap<String, String>,
) -> HashMap<String, Vec<String>> {
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    for (n, v) in versions {
        out.entry(v.clone()).or_default().push(n.clone());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::Traffic as T;

    #[test]
    fn blue_green_and_shadow_phases_in_order_with_their_holds_anchored() {
        let bg = Phase::of(&Kind::BlueGreen {
            pre_promotion: Some("healthy".into()),
            scale_down_delay_ms: 1000,
        })
        .unwrap();
        let d: Vec<String> = bg.iter().map(Phase::describe).collect();
        assert_eq!(
            d,
            [
                "preview: the new version in the preview slot",
                "analysis healthy",
                "traffic preview",
                "hold 1s"
            ]
        );
        // The delay counts from its own start.
        assert!(matches!(bg[3], Phase::Hold { since_step: 3, .. }));
        let plain = Phase::of(&Kind::BlueGreen {
            pre_promotion: None,
            scale_down_delay_ms: 0,
        })
        .unwrap();
        assert!(matches!(plain[1], Phase::Traffic(T::Preview)));
        assert!(matches!(plain[2], Phase::Hold { since_step: 2, .. }));
        let shadow = Phase::of(&Kind::Shadow {
            mirror_percent: 30,
            duration_ms: 3000,
            gate: Some("healthy".into()),
        })
        .unwrap();
        assert!(matches!(
            shadow[1],
            Phase::Traffic(T::Mirror { percent: 30 })
        ));
        assert!(matches!(&shadow[2], Phase::Gate(g) if g == "healthy"));
        // The shadow's duration counts from the mirror's start (phase 1),
        // so the gate runs inside it.
        assert!(matches!(
            shadow[3],
            Phase::Hold {
                ms: 3000,
                since_step: 1
            }
        ));
        assert!(
            Phase::of(&Kind::Canary {
                traffic: crate::rollout::Traffic::Gateway,
                steps: vec![],
                max_unavailable: crate::rollout::spec::Unavailable::Count(1),
                max_fail_percent: 0,
            })
            .is_none()
        );
    }
}
