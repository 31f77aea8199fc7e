//! The operations layer, between the engine and its faces: a job is
//! [`prepare`]d (the SoT, targets, playbook or baseline and connection specs
//! resolved, everything a user can get wrong found before anything runs),
//! [`Prepared::plan`]ned (check mode: a typed [`Plan`] per node), admitted by
//! the [`gate`] (policy, kill switch, freeze windows, approvals) and
//! [`Prepared::apply`]ed. The CLI and the console call these same functions
//! and show the same plan; neither knows how a playbook is looked up or how
//! compliance is computed.
//!
//! Every run a job makes reports on the [`crate::bus`] under its own run id;
//! the faces subscribe to the bus.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::agent;
use crate::bus::Bus;
use crate::exit::Exit;
use crate::fleet::event::{NodeStatus, RunKind, new_run_id};
use crate::fleet::resolve::{ConnectOptions, connect_specs};
use crate::fleet::ssh::{ConnectSpec, ExecLimits};
use crate::fleet::{Cancel, RunOptions, RunReport, run_command, run_nodes, target};
use crate::harden::{self, Compliance, Mode};
use crate::playbook::compile::Options;
use crate::playbook::run::{PlayRequest, play};
use crate::playbook::{self, Playbook};
use crate::sot::model::Agent;
use crate::sot::{Profile, Sot};

pub mod evidence;
pub mod gate;
pub mod plan;

pub use gate::{Decision, ExecPolicy, Gate, Refusal, RefusalClass};
pub use plan::{NodeOutcome, NodePlan, Plan, PlannedChange};

#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    /// The operator asked for something that cannot be (exit 2).
    #[error("{0}")]
    Invalid(String),
    /// A playbook or baseline with problems (exit 2).
    #[error("{0}")]
    Diagnostics(crate::sot::Diagnostics),
    /// The gate did not admit the job.
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// The job's evidence could not be recorded, so it did not run (exit 5).
    #[error("the ledger could not record the job, so nothing ran: {0}")]
    Evidence(String),
    /// Sharing the run with other controllers (`--share`, `maestro join`).
    #[error(transparent)]
    Work(#[from] crate::work::WorkError),
}

impl OpsError {
    pub fn exit(&self) -> Exit {
        match self {
            OpsError::Invalid(_) | OpsError::Diagnostics(_) => Exit::InvalidInput,
            OpsError::Refused(r) => r.class.exit(),
            OpsError::Evidence(_) => Exit::Internal,
            OpsError::Work(crate::work::WorkError::Store(_)) => Exit::Internal,
            OpsError::Work(_) => Exit::InvalidInput,
        }
    }
}

pub type Result<T> = std::result::Result<T, OpsError>;

/// What a job does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobSpec {
    /// `maestro exec`: a command through the login shell.
    Exec { command: String },
    /// `maestro play`: a playbook from the SoT's library by name, or a file
    /// given as a path (it must look like one: `./site.toml`).
    Play { playbook: String },
    /// `maestro install --profile`: the profile's playbooks as one.
    Install { profile: String },
    /// `maestro harden`: the baseline named, else the profile's, else the default.
    Harden {
        apply: bool,
        baseline: Option<String>,
        profile: Option<String>,
        /// Only the rules of this section: a category (`ssh`) or a CIS
        /// item prefix (`5.1`, `6.2.3`).
        section: Option<String>,
    },
    /// `maestro deploy AGENT[@VERSION]`: a registry version, verified,
    /// switched to, health-checked (default version: the agent's `current`),
    /// in the agent's primary slot or (`--slot preview`) beside it.
    Deploy {
        agent: String,
        version: Option<String>,
        slot: agent::Slot,
    },
    /// `maestro enable AGENT`: the runtime where missing, then the agent's
    /// current version, healthy.
    Enable { agent: String },
    /// `maestro disable AGENT`: the service stopped and removed, files kept.
    /// With `slot` preview: only the preview instance (what a rollout's
    /// abort does); the primary keeps running.
    Disable { agent: String, slot: agent::Slot },
    /// `maestro agent status [AGENT]`: what each node runs (reads only).
    AgentStatus { agent: Option<String> },
    /// `maestro kill AGENT|--all`: the agent stopped on every target node,
    /// its kill marker left, each node confirmed (the kill switch must be
    /// engaged in the SoT first: [`crate::killswitch::change::engage`]).
    /// With `release`: the markers removed, nothing started.
    Kill { agent: String, release: bool },
    /// `maestro gateway set AGENT --traffic T`: the node's nginx sends the
    /// agent's clients to its primary, its preview, a split or a mirror.
    /// Sending traffic to an agent is held like starting it: a kill switch
    /// or a freeze window of the agent blocks it.
    GatewaySet {
        agent: String,
        traffic: crate::gateway::Traffic,
    },
    /// `maestro gateway status AGENT`: the traffic each node's gateway
    /// applies (reads only).
    GatewayStatus { agent: String },
}

impl JobSpec {
    /// The agent this job would start on its nodes, if any: what a kill
    /// switch or a freeze window holds back.
    pub fn agent_started(&self) -> Option<&str> {
        match self {
            JobSpec::Deploy { agent, .. }
            | JobSpec::Enable { agent }
            | JobSpec::GatewaySet { agent, .. } => Some(agent),
            _ => None,
        }
    }
}

/// Which nodes: a target pattern as typed, or names pinned by a face.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Targets {
    Pattern(String),
    Nodes(Vec<String>),
}

/// A password that is never printed, logged or stored.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: String) -> Secret {
        Secret(s)
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(…)")
    }
}

/// How a playbook job runs (Ansible's flags).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlaySettings {
    pub diff: bool,
    pub extra_vars: Vec<(String, String)>,
    pub tags: Vec<String>,
    pub skip_tags: Vec<String>,
    pub r#become: bool,
    pub become_user: Option<String>,
    pub become_password: Option<Secret>,
}

/// Everything a face knows about a job before it is prepared.
#[derive(Debug, Clone)]
pub struct JobRequest {
    pub job: JobSpec,
    pub targets: Targets,
    pub settings: PlaySettings,
    pub connect: ConnectOptions,
    pub forks: usize,
    pub limits: ExecLimits,
    /// Lessons (`lessons.toml`) the operator applies in this job
    /// (`--lesson ID`): each counts as a use once the job has run.
    pub lessons: Vec<String>,
}

/// Where the SoT came from, recorded with every run.
#[derive(Debug, Clone)]
pub struct SotSource {
    pub sot: Arc<Sot>,
    /// The directory as the operator named it.
    pub label: String,
    /// Its git HEAD, when it is a repository.
    pub commit: Option<String>,
}

impl SotSource {
    /// Label and commit for the SoT loaded from `root`.
    pub fn new(sot: Arc<Sot>, root: &Path) -> SotSource {
        let commit = crate::sot::git::SotRepo::open(root)
            .ok()
            .and_then(|r| r.head());
        SotSource {
            sot,
            label: root.display().to_string(),
            commit,
        }
    }
}

/// The work itself, resolved.
enum Work {
    Command(Arc<String>),
    Playbook(Box<PlayWork>),
    Harden {
        baseline: Arc<harden::Loaded>,
        apply: bool,
    },
    /// `deploy` and `enable` (with the agent's runtime profile first, when
    /// it names one and the job is an enable).
    Deploy {
        deploy: Arc<agent::Deploy>,
        params: Arc<HashMap<String, agent::NodeParams>>,
        runtime: Option<Box<PlayWork>>,
        slot: agent::Slot,
    },
    Disable {
        agent: Arc<Agent>,
        params: Arc<HashMap<String, agent::NodeParams>>,
        slot: agent::Slot,
    },
    AgentStatus {
        agents: Arc<Vec<Agent>>,
    },
    /// The kill switch's node script, per node.
    Kill(Arc<std::collections::HashMap<String, String>>),
    /// The gateway of one agent on each node (`traffic`: set it; none: read it).
    Gateway {
        targets: Arc<HashMap<String, crate::gateway::Result<crate::gateway::Target>>>,
        traffic: Option<crate::gateway::Traffic>,
    },
}

/// A playbook (or a profile's playbooks) and where its files are.
struct PlayWork {
    playbook: Arc<Playbook>,
    base_dir: PathBuf,
    profile: Option<Profile>,
    /// The profile's hardening baseline: an install ends with an audit of
    /// it (the node's first-boot audit, kept in the store).
    audit: Option<Arc<harden::Loaded>>,
}

/// A job with everything resolved; nothing has touched a node yet.
pub struct Prepared {
    source: SotSource,
    job: JobSpec,
    work: Work,
    /// Node indices into the SoT, in SoT order, and their connection specs.
    indices: Vec<usize>,
    nodes: Vec<String>,
    specs: Vec<ConnectSpec>,
    warnings: Vec<String>,
    target_label: String,
    description: String,
    settings: PlaySettings,
    forks: usize,
    limits: ExecLimits,
    lessons: Vec<String>,
    /// Shared work: the run's nodes split with other controllers.
    share: Option<Arc<crate::work::Share>>,
}

/// Resolve a job against the SoT: targets, connection specs, the playbook
/// or baseline, and the profile. Problems are [`OpsError::Invalid`] or
/// [`OpsError::Diagnostics`]: exit 2, nothing touched.
pub fn prepare(source: SotSource, request: JobRequest) -> Result<Prepared> {
    let sot = &source.sot;
    crate::reflect::lesson::check_cited(sot, &request.lessons).map_err(OpsError::Invalid)?;
    let (indices, target_label) = match &request.targets {
        Targets::Pattern(p) => (
            target::select(sot, p).map_err(|e| OpsError::Invalid(e.to_string()))?,
            p.clone(),
        ),
        Targets::Nodes(names) => {
            let indices = names
                .iter()
                .map(|n| {
                    sot.node_index
                        .get(n)
                        .copied()
                        .ok_or_else(|| OpsError::Invalid(format!("node {n} is not in the SoT")))
                })
                .collect::<Result<Vec<usize>>>()?;
            (indices, names.join(","))
        }
    };
    let (work, description) = match &request.job {
        JobSpec::Exec { command } => {
            if command.trim().is_empty() {
                return Err(OpsError::Invalid(
                    "no command given: maestro exec TARGET -- COMMAND...".into(),
                ));
            }
            (Work::Command(Arc::new(command.clone())), command.clone())
        }
        JobSpec::Play { playbook: name } => {
            let path = playbook_path(sot, name)?;
            let pb = playbook::load_playbook(&path).map_err(OpsError::Diagnostics)?;
            let base_dir = path.parent().unwrap_or(Path::new(".")).to_path_buf();
            (
                Work::Playbook(Box::new(PlayWork {
                    playbook: Arc::new(pb),
                    base_dir,
                    profile: None,
                    audit: None,
                })),
                format!("play {name}"),
            )
        }
        JobSpec::Install { profile } => {
            let (pb, dir, p) = playbook::for_profile(sot, profile).map_err(|e| match e {
                playbook::ProfileError::Playbook(d) => OpsError::Diagnostics(d),
                other => OpsError::Invalid(other.to_string()),
            })?;
            // Found before anything runs: a broken baseline fails the
            // install up front, not after the playbooks changed nodes.
            let audit = match &p.hardening {
                Some(h) => Some(Arc::new(harden_baseline(sot, Some(h), None, None)?)),
                None => None,
            };
            (
                Work::Playbook(Box::new(PlayWork {
                    playbook: Arc::new(pb),
                    base_dir: dir,
                    profile: Some(p),
                    audit,
                })),
                format!("install --profile {profile}"),
            )
        }
        JobSpec::Deploy {
            agent,
            version,
            slot,
        } => {
            let deploy = agent::Deploy::resolve(
                sot,
                agent,
                version.as_deref(),
                &agent::artifact::default_cache(),
            )
            .map_err(|e| OpsError::Invalid(e.to_string()))?;
            slot.check(&deploy.agent)
                .map_err(|e| OpsError::Invalid(e.to_string()))?;
            let description = match slot {
                agent::Slot::Primary => format!("deploy {}", deploy.label()),
                agent::Slot::Preview => format!("deploy {} --slot preview", deploy.label()),
            };
            (deploy_work(sot, &indices, deploy, None, *slot), description)
        }
        JobSpec::Enable { agent } => {
            let deploy =
                agent::Deploy::resolve(sot, agent, None, &agent::artifact::default_cache())
                    .map_err(|e| OpsError::Invalid(e.to_string()))?;
            let runtime = match &deploy.agent.profile {
                Some(profile) => {
                    let (pb, dir, p) =
                        playbook::for_profile(sot, profile).map_err(|e| match e {
                            playbook::ProfileError::Playbook(d) => OpsError::Diagnostics(d),
                            other => OpsError::Invalid(other.to_string()),
                        })?;
                    Some(Box::new(PlayWork {
                        playbook: Arc::new(pb),
                        base_dir: dir,
                        profile: Some(p),
                        audit: None,
                    }))
                }
                None => None,
            };
            let description = format!("enable {}", deploy.label());
            (
                deploy_work(sot, &indices, deploy, runtime, agent::Slot::Primary),
                description,
            )
        }
        JobSpec::AgentStatus { agent } => {
            let agents: Vec<Agent> = match agent {
                Some(name) => vec![
                    agent::find(sot, name)
                        .map_err(|e| OpsError::Invalid(e.to_string()))?
                        .clone(),
                ],
                None => sot.agents.values().cloned().collect(),
            };
            let description = match agent {
                Some(a) => format!("agent status {a}"),
                None => "agent status".to_string(),
            };
            (
                Work::AgentStatus {
                    agents: Arc::new(agents),
                },
                description,
            )
        }
        JobSpec::Disable { agent, slot } => {
            let a = agent::find(sot, agent).map_err(|e| OpsError::Invalid(e.to_string()))?;
            let params = indices
                .iter()
                .map(|&i| {
                    let node = &sot.nodes[i];
                    let host = agent::loopback(sot, node);
                    (
                        node.name.clone(),
                        agent::NodeParams {
                            host,
                            env: String::new(),
                        },
                    )
                })
                .collect();
            (
                Work::Disable {
                    agent: Arc::new(a.clone()),
                    params: Arc::new(params),
                    slot: *slot,
                },
                match slot {
                    agent::Slot::Primary => format!("disable {agent}"),
                    agent::Slot::Preview => format!("disable {agent} --slot preview"),
                },
            )
        }
        JobSpec::GatewaySet { agent, .. } | JobSpec::GatewayStatus { agent } => {
            let a = agent::find(sot, agent).map_err(|e| OpsError::Invalid(e.to_string()))?;
            if a.gateway.is_none() {
                return Err(OpsError::Invalid(
                    crate::gateway::GatewayError::NoGateway(a.name.clone()).to_string(),
                ));
            }
            let mut targets = HashMap::new();
            let mut bad = Vec::new();
            for &i in &indices {
                let node = &sot.nodes[i];
                match crate::gateway::Target::of(sot, a, node) {
                    Ok(t) => {
                        targets.insert(node.name.clone(), Ok(t));
                    }
                    Err(e) => bad.push(e.to_string()),
                }
            }
            // A node whose address cannot go into nginx's config is found
            // before any node is touched.
            if !bad.is_empty() {
                return Err(OpsError::Invalid(bad.join("\n")));
            }
            let (traffic, description) = match &request.job {
                JobSpec::GatewaySet { traffic, .. } => (
                    Some(*traffic),
                    format!("gateway set {agent} --traffic {traffic}"),
                ),
                _ => (None, format!("gateway status {agent}")),
            };
            (
                Work::Gateway {
                    targets: Arc::new(targets),
                    traffic,
                },
                description,
            )
        }
        JobSpec::Kill { agent, release } => {
            let scripts = crate::killswitch::node_scripts(sot, agent, *release, &indices)
                .map_err(OpsError::Invalid)?;
            let description = if *release {
                format!("kill --release {agent}")
            } else {
                format!("kill {agent}")
            };
            (Work::Kill(Arc::new(scripts)), description)
        }
        JobSpec::Harden {
            apply,
            baseline,
            profile,
            section,
        } => {
            let loaded = harden_baseline(
                sot,
                baseline.as_deref(),
                profile.as_deref(),
                section.as_deref(),
            )?;
            let description = format!(
                "harden {} ({}, {} rules)",
                if *apply { "--apply" } else { "--audit" },
                loaded.name,
                loaded.rules.len()
            );
            (
                Work::Harden {
                    baseline: Arc::new(loaded),
                    apply: *apply,
                },
                description,
            )
        }
    };
    let (specs, warnings) = connect_specs(sot, &indices, &request.connect)
        .map_err(|e| OpsError::Invalid(e.to_string()))?;
    let nodes = specs.iter().map(|s| s.node.clone()).collect();
    let prepared = Prepared {
        source,
        job: request.job,
        work,
        indices,
        nodes,
        specs,
        warnings,
        target_label,
        description,
        settings: request.settings,
        forks: request.forks,
        limits: request.limits,
        lessons: request.lessons,
        share: None,
    };
    prepared.check_lessons_apply()?;
    Ok(prepared)
}

/// The baseline a hardening job uses: the one named, else the profile's,
/// else the default; only `section`'s rules when given. Also what
/// `harden --coverage` reads (it needs no nodes).
pub fn harden_baseline(
    sot: &Sot,
    baseline: Option<&str>,
    profile: Option<&str>,
    section: Option<&str>,
) -> Result<harden::Loaded> {
    let name = match (baseline, profile) {
        (Some(b), _) => b.to_string(),
        (None, Some(p)) => sot
            .profiles
            .get(p)
            .and_then(|p| p.hardening.clone())
            .ok_or_else(|| {
                OpsError::Invalid(format!(
                    "profile `{p}` does not exist or names no hardening baseline"
                ))
            })?,
        (None, None) => harden::default_name(sot),
    };
    let loaded =
        harden::load(&sot.root.join(&sot.settings.hardening_dir), &name).map_err(|e| match e {
            harden::LoadError::Invalid(d) => OpsError::Diagnostics(d),
            other => OpsError::Invalid(other.to_string()),
        })?;
    match section {
        Some(section) => loaded
            .only_section(section)
            .map_err(|e| OpsError::Invalid(e.to_string())),
        None => Ok(loaded),
    }
}

/// A deploy's work: the verified artifact and each node's rendered
/// environment.
fn deploy_work(
    sot: &Sot,
    indices: &[usize],
    deploy: agent::Deploy,
    runtime: Option<Box<PlayWork>>,
    slot: agent::Slot,
) -> Work {
    let params = indices
        .iter()
        .map(|&i| {
            let node = &sot.nodes[i];
            (
                node.name.clone(),
                agent::render_env(sot, &deploy.agent, &deploy.version, node, slot),
            )
        })
        .collect();
    Work::Deploy {
        deploy: Arc::new(deploy),
        params: Arc::new(params),
        runtime,
        slot,
    }
}

/// `NAME` is a playbook of the SoT's library; a path must look like one
/// (`./site.toml`, `/srv/pb.toml`): a file of that name in the working
/// directory never shadows the library.
pub fn playbook_path(sot: &Sot, name: &str) -> Result<PathBuf> {
    if name.contains('/') {
        let path = PathBuf::from(name);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(OpsError::Invalid(format!("no playbook file {name}")))
        };
    }
    let in_sot = sot
        .root
        .join(&sot.settings.playbooks_dir)
        .join(format!("{}.toml", name.trim_end_matches(".toml")));
    if in_sot.is_file() {
        return Ok(in_sot);
    }
    let hint = crate::sot::diag::suggest(name, sot.playbooks.iter().map(String::as_str))
        .map(|s| format!(" (did you mean `{s}`?)"))
        .unwrap_or_default();
    Err(OpsError::Invalid(format!(
        "no playbook `{name}`{hint} in the SoT's library: give one of {}, or a file as a path (./{name}.toml)",
        sot.playbooks.join(", ")
    )))
}

/// Where a job's runs report, and how they are stopped.
#[derive(Clone)]
pub struct Launch {
    pub bus: Bus,
    pub cancel: Cancel,
    /// The id of the job's (first) run, known before it starts so a face
    /// can follow it.
    pub run_id: String,
}

impl Launch {
    pub fn new(bus: Bus, cancel: Cancel) -> Launch {
        Launch {
            bus,
            cancel,
            run_id: new_run_id(),
        }
    }
}

/// What applying a job did.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The run's report; for `harden --apply`, the audit after remediation,
    /// with the remediations that were refused marked so.
    pub report: RunReport,
    /// Every run the job made, in order.
    pub runs: Vec<String>,
    /// For hardening jobs and installs of a profile with a baseline: the
    /// fleet's compliance.
    pub compliance: Option<Compliance>,
    /// An install's closing audit (its report is `report`'s sibling).
    pub audit: Option<RunReport>,
    /// For `agent status`: what each node runs of each agent.
    pub agents: Vec<agent::AgentOnNode>,
    /// For `gateway set` and `gateway status`: each node's gateway.
    pub gateways: Vec<crate::gateway::GatewayOnNode>,
    /// Reflections the job left pending (its checklists' triggers fired).
    pub reflections: Vec<crate::store::Reflection>,
    /// Why the job's reflections or lesson uses could not be recorded.
    pub reflection_error: Option<String>,
}

impl Outcome {
    /// The outcome of a job that made one run.
    fn of(report: RunReport, compliance: Option<Compliance>) -> Outcome {
        Outcome {
            runs: vec![report.run_id.clone()],
            report,
            compliance,
            agents: Vec::new(),
            gateways: Vec::new(),
            audit: None,
            reflections: Vec::new(),
            reflection_error: None,
        }
    }
}

impl Prepared {
    /// Split this job's run with other controllers through `share` (see
    /// [`crate::work`]). Only a command (`exec`) is shared: what a joining
    /// controller needs of it is the command line, never a secret.
    pub fn share(&mut self, share: Arc<crate::work::Share>) -> Result<()> {
        if !matches!(self.work, Work::Command(_)) {
            return Err(OpsError::Invalid(format!(
                "only `exec` can be shared between controllers, not {}",
                self.description
            )));
        }
        self.share = Some(share);
        Ok(())
    }

    /// What a joining controller needs to prepare this job, if it can be shared.
    pub fn shared_job(&self) -> Option<crate::work::SharedJob> {
        match &self.job {
            JobSpec::Exec { command } => Some(crate::work::SharedJob {
                command: command.clone(),
                target: self.target_label.clone(),
                timeout_s: self.limits.timeout.map(|t| t.as_secs_f64()),
                max_output: self.limits.max_output,
            }),
            _ => None,
        }
    }

    /// The SoT commit this job was prepared from.
    pub fn sot_commit(&self) -> Option<&str> {
        self.source.commit.as_deref()
    }

    pub fn job(&self) -> &JobSpec {
        &self.job
    }

    /// The job as shown to the operator (`play agent-runtime`).
    pub fn description(&self) -> &str {
        &self.description
    }

    /// The target nodes, in SoT order.
    pub fn nodes(&self) -> &[String] {
        &self.nodes
    }

    pub fn target(&self) -> &str {
        &self.target_label
    }

    /// Problems resolving connections (ssh_config) worth telling the operator.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    pub fn sot(&self) -> &Sot {
        &self.source.sot
    }

    /// The sudo password for `become`, asked for after the job was found
    /// valid (so a bad job never prompts).
    pub fn set_become_password(&mut self, password: Option<Secret>) {
        self.settings.become_password = password;
    }

    /// The profile an install installs.
    pub fn profile(&self) -> Option<&Profile> {
        match &self.work {
            Work::Playbook(work) => work.profile.as_ref(),
            _ => None,
        }
    }

    /// The hardening baseline of a hardening job.
    pub fn baseline(&self) -> Option<&harden::Loaded> {
        match &self.work {
            Work::Harden { baseline, .. } => Some(baseline),
            _ => None,
        }
    }

    /// Every agent this job would start on its nodes: the agent of an agent
    /// job, and for a playbook every `maestro-agent-NAME` service it starts
    /// or restarts. What the kill switch and freeze windows hold back.
    pub fn agents_started(&self) -> Vec<String> {
        let mut agents: Vec<String> = self
            .job
            .agent_started()
            .map(str::to_string)
            .into_iter()
            .collect();
        if let Work::Playbook(work) = &self.work {
            for task in work.playbook.tasks.iter().chain(&work.playbook.handlers) {
                if let Some(svc) = &task.get_ref().service
                    && svc.state != playbook::model::ServiceState::Stopped
                    && let Some(agent) = svc.name.strip_prefix("maestro-agent-")
                    && !agents.iter().any(|a| a == agent)
                {
                    agents.push(agent.to_string());
                }
            }
        }
        agents
    }

    /// Whether applying it changes nodes (a check or an audit does not).
    pub fn changes_nodes(&self) -> bool {
        !matches!(
            self.work,
            Work::Harden { apply: false, .. }
                | Work::AgentStatus { .. }
                | Work::Gateway { traffic: None, .. }
        )
    }

    /// Values of this job that are never shown or stored: extra variables
    /// that look like secrets (by name and value, as the secret scanner
    /// judges them) and the become password.
    pub fn secret_values(&self) -> Vec<String> {
        let scanner = crate::secrets::Scanner::default();
        let mut out: Vec<String> = self
            .settings
            .extra_vars
            .iter()
            .filter(|(k, v)| scanner.is_secret_var(k, v))
            .map(|(_, v)| v.clone())
            .collect();
        if let Some(p) = &self.settings.become_password {
            out.push(p.expose().to_string());
        }
        out
    }

    /// A stable identity of exactly this job (kind, targets, what runs), for
    /// approvals.
    pub fn fingerprint(&self) -> String {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        h.update(format!("{:?}\0{:?}\0", self.job, self.nodes));
        if let Some(c) = &self.source.commit {
            h.update(c.as_bytes());
        }
        let digest = h.finalize();
        digest.iter().take(16).map(|b| format!("{b:02x}")).collect()
    }

    /// Why the profile refuses this install (required tags, `[validate]`).
    pub fn profile_problems(&self) -> Vec<String> {
        match &self.work {
            Work::Playbook(work) if let Some(profile) = &work.profile => {
                playbook::profile_problems(
                    &self.source.sot,
                    &work.playbook,
                    profile,
                    &self.indices,
                    &self.settings.extra_vars,
                )
            }
            _ => Vec::new(),
        }
    }

    /// The compiled script of each node, without connecting (facts are not
    /// gathered): for review and audit (`--emit-scripts`).
    pub fn scripts(&self, check: bool) -> Result<Vec<(String, String)>> {
        let Work::Playbook(work) = &self.work else {
            return Err(OpsError::Invalid(
                "only playbook jobs compile to scripts".into(),
            ));
        };
        let PlayWork {
            playbook,
            base_dir,
            profile,
            ..
        } = &**work;
        let renderer = playbook::vars::Renderer::new();
        let sot = &self.source.sot;
        let mut out = Vec::new();
        for (&i, spec) in self.indices.iter().zip(&self.specs) {
            let node = &sot.nodes[i];
            let vars = playbook::vars::merge(
                &playbook.vars,
                profile.as_ref(),
                sot,
                node,
                &self.settings.extra_vars,
            );
            let ctx = playbook::vars::context(&vars, node, None);
            let script = playbook::compile::compile(
                playbook,
                base_dir,
                &ctx,
                &spec.endpoint.user,
                &self.options(check),
                &renderer,
            )
            .map_err(|e| OpsError::Invalid(format!("{}: {e}", node.name)))?;
            out.push((node.name.clone(), script.text));
        }
        Ok(out)
    }

    fn options(&self, check: bool) -> Options {
        Options {
            check,
            diff: self.settings.diff,
            tags: self.settings.tags.clone(),
            skip_tags: self.settings.skip_tags.clone(),
            r#become: self.settings.r#become,
            become_user: self.settings.become_user.clone(),
        }
    }

    fn run_options(&self, kind: RunKind, description: String, overrides: &[String]) -> RunOptions {
        RunOptions {
            overrides: overrides.to_vec(),
            kind,
            target: self.target_label.clone(),
            description,
            forks: self.forks,
            limits: self.limits.clone(),
            sot: self.source.label.clone(),
            sot_commit: self.source.commit.clone(),
            share: self.share.clone(),
        }
    }

    /// Each target node's place in SoT order, to sort what nodes reported.
    fn node_order(&self) -> HashMap<&str, usize> {
        self.nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.as_str(), i))
            .collect()
    }

    fn password(&self) -> Option<String> {
        self.settings
            .become_password
            .as_ref()
            .map(|s| s.expose().to_string())
    }

    async fn run_playbook(
        &self,
        work: &PlayWork,
        check: bool,
        run_id: &str,
        launch: &Launch,
        overrides: &[String],
    ) -> RunReport {
        let PlayWork {
            playbook,
            base_dir,
            profile,
            ..
        } = work;
        let request = Arc::new(PlayRequest {
            sot: self.source.sot.clone(),
            playbook: playbook.clone(),
            base_dir: base_dir.clone(),
            profile: profile.clone(),
            extra_vars: self.settings.extra_vars.clone(),
            options: self.options(check),
            become_password: self.password(),
        });
        let (kind, description) = if check {
            (RunKind::Check, format!("{} --check", self.description))
        } else {
            (RunKind::Play, self.description.clone())
        };
        play(
            self.specs.clone(),
            request,
            self.run_options(kind, description, overrides),
            launch.bus.run(run_id).with_mask(self.secret_values()),
            launch.cancel.clone(),
        )
        .await
    }

    /// `target`: the deploy, each node's parameters and the slot.
    async fn run_deploy(
        &self,
        (deploy, params, slot): (
            &Arc<agent::Deploy>,
            &Arc<HashMap<String, agent::NodeParams>>,
            agent::Slot,
        ),
        check: bool,
        specs: &[ConnectSpec],
        run_id: &str,
        launch: &Launch,
        overrides: &[String],
    ) -> RunReport {
        let (kind, description) = if check {
            (RunKind::Check, format!("{} --check", self.description))
        } else {
            (RunKind::Deploy, self.description.clone())
        };
        let deploy = deploy.clone();
        let params = params.clone();
        let diff = self.settings.diff;
        run_nodes(
            specs.to_vec(),
            self.run_options(kind, description, overrides),
            launch.bus.run(run_id).with_mask(self.secret_values()),
            launch.cancel.clone(),
            move |session, ctx| {
                let p = params.get(&ctx.node).cloned().unwrap_or(agent::NodeParams {
                    host: "127.0.0.1".into(),
                    env: String::new(),
                });
                agent::deploy_node(session, ctx, deploy.clone(), p, check, diff, slot)
            },
        )
        .await
    }

    async fn run_harden(
        &self,
        baseline: &Arc<harden::Loaded>,
        mode: Mode,
        run_id: &str,
        launch: &Launch,
        overrides: &[String],
    ) -> RunReport {
        let (kind, flag) = match mode {
            Mode::Apply => (RunKind::HardenApply, "--apply"),
            Mode::Check => (RunKind::Check, "--apply --check"),
            Mode::Audit => (RunKind::HardenAudit, "--audit"),
        };
        let description = format!(
            "harden {flag} ({}, {} rules)",
            baseline.name,
            baseline.rules.len()
        );
        harden::run(
            self.specs.clone(),
            baseline.clone(),
            mode,
            self.password(),
            self.run_options(kind, description, overrides),
            launch.bus.run(run_id).with_mask(self.secret_values()),
            launch.cancel.clone(),
        )
        .await
    }

    /// What applying would do on each node. Playbooks run in check mode and
    /// hardening remediation in its check mode (both recorded as `check`
    /// runs, under `launch.run_id`); a command or an audit cannot be
    /// predicted and is planned as itself.
    pub async fn plan(&self, launch: &Launch) -> Plan {
        match &self.work {
            Work::Command(command) => {
                Plan::static_plan(&self.description, true, &self.nodes, command)
            }
            Work::Playbook(work) => {
                let report = self
                    .run_playbook(work, true, &launch.run_id, launch, &[])
                    .await;
                Plan::from_check(&self.description, &report)
            }
            Work::Harden {
                baseline,
                apply: true,
            } => {
                let report = self
                    .run_harden(baseline, Mode::Check, &launch.run_id, launch, &[])
                    .await;
                Plan::from_check(&self.description, &report)
            }
            Work::Deploy {
                deploy,
                params,
                slot,
                ..
            } => {
                let report = self
                    .run_deploy(
                        (deploy, params, *slot),
                        true,
                        &self.specs,
                        &launch.run_id,
                        launch,
                        &[],
                    )
                    .await;
                Plan::from_check(&self.description, &report)
            }
            Work::AgentStatus { .. } => Plan::static_plan(
                &self.description,
                false,
                &self.nodes,
                "read the agents' state (changes nothing)",
            ),
            Work::Disable { agent, slot, .. } => Plan::static_plan(
                &self.description,
                true,
                &self.nodes,
                &format!(
                    "stop {}'s {slot} instance and remove its service; its files stay",
                    agent.name
                ),
            ),
            Work::Harden {
                baseline,
                apply: false,
            } => Plan::static_plan(
                &self.description,
                false,
                &self.nodes,
                &format!("audit {} rules (changes nothing)", baseline.rules.len()),
            ),
            Work::Kill(_) => Plan::static_plan(
                &self.description,
                true,
                &self.nodes,
                "stop the agent's processes and confirm none is left",
            ),
            Work::Gateway {
                traffic: Some(t), ..
            } => Plan::static_plan(
                &self.description,
                true,
                &self.nodes,
                &format!(
                    "send the agent's clients to {t} (nginx -t first, then a graceful reload)"
                ),
            ),
            Work::Gateway { traffic: None, .. } => Plan::static_plan(
                &self.description,
                false,
                &self.nodes,
                "read the gateway's traffic (changes nothing)",
            ),
        }
    }

    /// Admit the job through `gate`, then run it. Refused jobs touch no node.
    /// Every decision goes into the run store's ledger before any
    /// node is touched (a job whose evidence cannot be written does not
    /// run), and the results after.
    pub async fn apply(&self, gate: &Gate, launch: &Launch) -> Result<Outcome> {
        let started = std::time::Instant::now();
        let decision = gate.admit(self);
        let record = match (&decision, gate.store_path()) {
            (Decision::Allow, Some(store)) => {
                let answer = gate.policy_answer(self).and_then(|a| a.ok());
                let mut r = evidence::base_record(self, gate.actor());
                r.policy = evidence::policy_hits(answer.as_ref());
                r.decision = "allow".into();
                evidence::append(store, r.clone())
                    .map_err(|e| OpsError::Evidence(e.to_string()))?;
                Some((store.to_path_buf(), r))
            }
            _ => None,
        };
        if let Decision::Refused(r) = decision {
            return Err(OpsError::Refused(r));
        }
        // What the gate let through only because someone broke the glass
        // is recorded with the run.
        let overrides = gate.overrides(self);
        let mut outcome = self.run(launch, &overrides).await;
        if let Some((store, r)) = record {
            // The run happened; a failure to record its results leaves the
            // decision entry without its result, which `ledger show` shows.
            let _ = evidence::conclude(&store, self, r, &outcome, started);
        }
        if let Some(store) = gate.store_path() {
            let reflected = self.reflect_on(store, gate, &outcome, &overrides);
            match reflected {
                Ok(made) => outcome.reflections = made,
                Err(e) => outcome.reflection_error = Some(e.to_string()),
            }
        }
        Ok(outcome)
    }

    /// The lessons this job applied (`--lesson`), as uses evidenced by its
    /// run, and the reflections its outcome triggers.
    fn reflect_on(
        &self,
        store: &Path,
        gate: &Gate,
        outcome: &Outcome,
        overrides: &[String],
    ) -> crate::reflect::Result<Vec<crate::store::Reflection>> {
        let ops = if gate.reflects() {
            self.operations(outcome, overrides)
        } else {
            Vec::new()
        };
        if self.lessons.is_empty() && (ops.is_empty() || self.source.sot.checklists.is_empty()) {
            return Ok(Vec::new());
        }
        let mut db = crate::store::open_path(store)?;
        let now = crate::reflect::now_ms();
        // A use is evidence that the lesson worked: a job a proven person
        // ran, that every node finished ok. A typed name or a failed job
        // counts nothing.
        let s = &outcome.report.summary;
        let succeeded = !outcome.report.cancelled && s.all_ok() && s.ok > 0;
        if gate.actor().is_verified() && succeeded {
            crate::reflect::lesson::record_uses(
                &mut *db,
                &self.lessons,
                &format!("run:{}", outcome.report.run_id),
                gate.actor().name(),
                now,
            )?;
        }
        crate::reflect::fire(&self.source.sot, &mut *db, &ops, now)
    }

    /// What this job's outcome was, as the checklists' triggers see it.
    fn operations(
        &self,
        outcome: &Outcome,
        overrides: &[String],
    ) -> Vec<crate::reflect::Operation> {
        use crate::reflect::{Operation, Trigger};
        let agent = crate::policy::agent_of(&self.job)
            .map(str::to_string)
            .or_else(|| self.agents_started().into_iter().next());
        let op = |trigger, measure| Operation {
            trigger,
            source: format!("run:{}", outcome.report.run_id),
            agent: agent.clone(),
            description: self.description.clone(),
            measure,
        };
        let mut ops = Vec::new();
        let reports = std::iter::once(&outcome.report).chain(outcome.audit.as_ref());
        if reports.flat_map(|r| &r.results).any(|n| {
            matches!(
                n.status,
                NodeStatus::Failed | NodeStatus::Unreachable | NodeStatus::TimedOut
            )
        }) {
            ops.push(op(Trigger::FailedNodes, None));
        }
        match &self.job {
            JobSpec::Kill { release: false, .. } => ops.push(op(Trigger::KillEngaged, None)),
            JobSpec::Kill { release: true, .. } => ops.push(op(Trigger::KillReleased, None)),
            JobSpec::Deploy { agent, .. } | JobSpec::Enable { agent } => {
                if let Some(a) = self.source.sot.agents.get(agent) {
                    ops.push(op(Trigger::DeployAutonomy, Some(f64::from(a.autonomy.0))));
                }
            }
            _ => {}
        }
        if let Some(c) = &outcome.compliance
            && c.nodes_measured > 0
        {
            ops.push(op(Trigger::AuditBelow, Some(c.percent)));
        }
        if !overrides.is_empty() {
            ops.push(op(Trigger::BreakGlass, None));
        }
        ops
    }

    /// The long-term lessons in this job's scope: what its confirmation
    /// shows ("lessons for this agent: …").
    pub fn lessons_in_scope(&self) -> Vec<&crate::reflect::Lesson> {
        crate::reflect::lesson::in_scope(
            &self.source.sot,
            crate::policy::action_of(&self.job),
            &self.agents_started_or_named(),
            &self.nodes,
        )
    }

    /// The lessons the operator cited for this job.
    pub fn lessons_cited(&self) -> &[String] {
        &self.lessons
    }

    /// A lesson cited with `--lesson` must be about this kind of job: a use
    /// outside its scope would count towards promoting it for nothing.
    fn check_lessons_apply(&self) -> Result<()> {
        let sot = &self.source.sot;
        let action = crate::policy::action_of(&self.job);
        let agents = self.agents_started_or_named();
        let outside: Vec<String> = self
            .lessons
            .iter()
            .filter_map(|id| sot.lessons.get(id))
            .filter(|l| !l.scope.covers(sot, action, &agents, &self.nodes))
            .map(|l| {
                format!(
                    "lesson `{}` is for {}, and this {action} job on {} is not",
                    l.id,
                    l.scope.describe(),
                    self.target_label
                )
            })
            .collect();
        if outside.is_empty() {
            Ok(())
        } else {
            Err(OpsError::Invalid(outside.join("\n")))
        }
    }

    fn agents_started_or_named(&self) -> Vec<String> {
        let mut agents = self.agents_started();
        if let Some(a) = crate::policy::agent_of(&self.job)
            && !agents.iter().any(|x| x == a)
        {
            agents.push(a.to_string());
        }
        agents
    }

    /// The same as [`Prepared::apply`] in check mode: changes nothing, so
    /// only the checks that refuse invalid input apply.
    pub async fn check(&self, gate: &Gate, launch: &Launch) -> Result<Outcome> {
        if let Decision::Refused(r) = gate.admit(self)
            && r.class == RefusalClass::Invalid
        {
            return Err(OpsError::Refused(r));
        }
        let report = match &self.work {
            Work::Playbook(work) => {
                self.run_playbook(work, true, &launch.run_id, launch, &[])
                    .await
            }
            Work::Harden { baseline, .. } => {
                self.run_harden(baseline, Mode::Check, &launch.run_id, launch, &[])
                    .await
            }
            Work::Deploy {
                deploy,
                params,
                slot,
                ..
            } => {
                self.run_deploy(
                    (deploy, params, *slot),
                    true,
                    &self.specs,
                    &launch.run_id,
                    launch,
                    &[],
                )
                .await
            }
            Work::Command(_) | Work::Disable { .. } | Work::AgentStatus { .. } => {
                return Err(OpsError::Invalid(format!(
                    "{} has no check mode",
                    self.description
                )));
            }
            Work::Kill(_) => {
                return Err(OpsError::Invalid("a kill has no check mode".into()));
            }
            Work::Gateway { .. } => {
                return Err(OpsError::Invalid(format!(
                    "{} has no check mode",
                    self.description
                )));
            }
        };
        Ok(Outcome::of(report, None))
    }

    async fn run(&self, launch: &Launch, overrides: &[String]) -> Outcome {
        match &self.work {
            Work::Command(command) => {
                let report = run_command(
                    self.specs.clone(),
                    command.to_string(),
                    self.run_options(RunKind::Exec, self.description.clone(), overrides),
                    launch
                        .bus
                        .run(&launch.run_id)
                        .with_mask(self.secret_values()),
                    launch.cancel.clone(),
                )
                .await;
                Outcome::of(report, None)
            }
            Work::Playbook(work) => {
                let report = self
                    .run_playbook(work, false, &launch.run_id, launch, overrides)
                    .await;
                let Some(baseline) = work
                    .audit
                    .as_ref()
                    .filter(|_| !launch.cancel.all_cancelled())
                else {
                    return Outcome::of(report, None);
                };
                let audited = self
                    .run_harden(baseline, Mode::Audit, &new_run_id(), launch, overrides)
                    .await;
                Outcome {
                    runs: vec![report.run_id.clone(), audited.run_id.clone()],
                    compliance: Some(harden::compliance(baseline, &audited)),
                    report,
                    agents: Vec::new(),
                    gateways: Vec::new(),
                    audit: Some(audited),
                    reflections: Vec::new(),
                    reflection_error: None,
                }
            }
            Work::Kill(scripts) => {
                let report = crate::killswitch::run(
                    self.specs.clone(),
                    scripts.clone(),
                    self.run_options(RunKind::Kill, self.description.clone(), overrides),
                    launch
                        .bus
                        .run(&launch.run_id)
                        .with_mask(self.secret_values()),
                    launch.cancel.clone(),
                )
                .await;
                Outcome::of(report, None)
            }
            Work::Deploy {
                deploy,
                params,
                runtime: None,
                slot,
            } => {
                let report = self
                    .run_deploy(
                        (deploy, params, *slot),
                        false,
                        &self.specs,
                        &launch.run_id,
                        launch,
                        overrides,
                    )
                    .await;
                Outcome::of(report, None)
            }
            Work::Deploy {
                deploy,
                params,
                runtime: Some(runtime),
                slot,
            } => {
                // enable: the runtime where missing (an idempotent install),
                // then the agent on the nodes where that worked.
                let installed = self
                    .run_playbook(runtime, false, &launch.run_id, launch, overrides)
                    .await;
                let ready: Vec<ConnectSpec> = self
                    .specs
                    .iter()
                    .filter(|s| {
                        installed
                            .results
                            .iter()
                            .any(|n| n.node == s.node && n.status == NodeStatus::Ok)
                    })
                    .cloned()
                    .collect();
                let mut deployed = self
                    .run_deploy(
                        (deploy, params, *slot),
                        false,
                        &ready,
                        &new_run_id(),
                        launch,
                        overrides,
                    )
                    .await;
                for n in &installed.results {
                    if n.status != NodeStatus::Ok {
                        let mut failed = n.clone();
                        failed.error = Some(format!(
                            "the runtime could not be installed, so {} was not deployed: {}",
                            deploy.agent.name,
                            n.error.clone().unwrap_or_else(|| "a task failed".into())
                        ));
                        deployed.summary.add(failed.status);
                        deployed.results.push(failed);
                    }
                }
                Outcome {
                    runs: vec![installed.run_id.clone(), deployed.run_id.clone()],
                    report: deployed,
                    compliance: None,
                    agents: Vec::new(),
                    gateways: Vec::new(),
                    audit: None,
                    reflections: Vec::new(),
                    reflection_error: None,
                }
            }
            Work::AgentStatus { agents } => {
                let collected = Arc::new(std::sync::Mutex::new(Vec::new()));
                let sot = self.source.sot.clone();
                let agents = agents.clone();
                let sink = collected.clone();
                let report = run_nodes(
                    self.specs.clone(),
                    self.run_options(RunKind::Status, self.description.clone(), overrides),
                    launch
                        .bus
                        .run(&launch.run_id)
                        .with_mask(self.secret_values()),
                    launch.cancel.clone(),
                    move |session, ctx| {
                        let (sot, agents, sink) = (sot.clone(), agents.clone(), sink.clone());
                        async move {
                            let Some(node) = sot.node_index.get(&ctx.node).map(|&i| &sot.nodes[i])
                            else {
                                return crate::fleet::event::NodeResult::new(
                                    &ctx.node,
                                    NodeStatus::Failed,
                                );
                            };
                            let found =
                                agent::status_node(&session, &ctx, &sot, &agents, node).await;
                            let result = agent::status_result(&ctx, &found);
                            sink.lock().unwrap_or_else(|e| e.into_inner()).extend(found);
                            result
                        }
                    },
                )
                .await;
                let mut agents =
                    std::mem::take(&mut *collected.lock().unwrap_or_else(|e| e.into_inner()));
                let order = self.node_order();
                agents.sort_by_key(|a| (order.get(a.node.as_str()).copied(), a.agent.clone()));
                let mut outcome = Outcome::of(report, None);
                outcome.agents = agents;
                outcome
            }
            Work::Gateway { targets, traffic } => {
                let collected = Arc::new(std::sync::Mutex::new(Vec::new()));
                let (targets, traffic, sink) = (targets.clone(), *traffic, collected.clone());
                let report = run_nodes(
                    self.specs.clone(),
                    self.run_options(RunKind::Gateway, self.description.clone(), overrides),
                    launch
                        .bus
                        .run(&launch.run_id)
                        .with_mask(self.secret_values()),
                    launch.cancel.clone(),
                    move |session, ctx| {
                        let sink = sink.clone();
                        let target = targets.get(&ctx.node).cloned().unwrap_or_else(|| {
                            Err(crate::gateway::GatewayError::NoReport {
                                node: ctx.node.clone(),
                                detail: "not a target of this job".into(),
                            })
                        });
                        async move {
                            let (result, on) = match traffic {
                                Some(t) => crate::gateway::set_node(session, ctx, target, t).await,
                                None => crate::gateway::status_node(session, ctx, target).await,
                            };
                            sink.lock().unwrap_or_else(|e| e.into_inner()).push(on);
                            result
                        }
                    },
                )
                .await;
                let mut gateways =
                    std::mem::take(&mut *collected.lock().unwrap_or_else(|e| e.into_inner()));
                let order = self.node_order();
                gateways.sort_by_key(|g| order.get(g.node.as_str()).copied());
                let mut outcome = Outcome::of(report, None);
                outcome.gateways = gateways;
                outcome
            }
            Work::Disable {
                agent,
                params,
                slot,
            } => {
                let (params, agent, slot) = (params.clone(), agent.clone(), *slot);
                let report = run_nodes(
                    self.specs.clone(),
                    self.run_options(RunKind::Disable, self.description.clone(), overrides),
                    launch
                        .bus
                        .run(&launch.run_id)
                        .with_mask(self.secret_values()),
                    launch.cancel.clone(),
                    move |session, ctx| {
                        let p = params.get(&ctx.node).cloned().unwrap_or(agent::NodeParams {
                            host: "127.0.0.1".into(),
                            env: String::new(),
                        });
                        agent::disable_node(session, ctx, agent.clone(), p, slot)
                    },
                )
                .await;
                Outcome::of(report, None)
            }
            Work::Harden {
                baseline,
                apply: false,
            } => {
                let report = self
                    .run_harden(baseline, Mode::Audit, &launch.run_id, launch, overrides)
                    .await;
                {
                    let compliance = harden::compliance(baseline, &report);
                    Outcome::of(report, Some(compliance))
                }
            }
            Work::Harden {
                baseline,
                apply: true,
            } => {
                let applied = self
                    .run_harden(baseline, Mode::Apply, &launch.run_id, launch, overrides)
                    .await;
                if launch.cancel.all_cancelled() {
                    let compliance = harden::compliance(baseline, &applied);
                    return Outcome::of(applied, Some(compliance));
                }
                let mut audited = self
                    .run_harden(baseline, Mode::Audit, &new_run_id(), launch, &[])
                    .await;
                harden::carry_refusals(&applied, &mut audited);
                Outcome {
                    runs: vec![applied.run_id.clone(), audited.run_id.clone()],
                    compliance: Some(harden::compliance(baseline, &audited)),
                    report: audited,
                    agents: Vec::new(),
                    gateways: Vec::new(),
                    audit: None,
                    reflections: Vec::new(),
                    reflection_error: None,
                }
            }
        }
    }
}
