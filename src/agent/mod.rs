//! Agents on the fleet: a registry version deployed to nodes with its
//! artifact verified twice (on the controller before anything is sent, on
//! the node before anything is unpacked), switched to atomically, started
//! under the node's supervisor, health-checked, and rolled back by the node
//! itself when the new version is not healthy.
//!
//! Each agent has two slots on a node ([`Slot`]): the primary instance on
//! the agent's `port`, and the preview instance on its gateway's
//! `preview_port`, which a rollout (or `deploy --slot preview`) stands up
//! beside the primary without touching it; the node's gateway
//! ([`crate::gateway`]) decides which of them answers clients.
//!
//! The node-side half is `node.sh` (POSIX sh, the layout is in its header
//! and in the README). This module renders it for one node and action,
//! parses what it reports, and turns that into run results. It never prints.

pub mod artifact;
mod node;

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;

use crate::fleet::event::{NodeResult, NodeStatus, TaskResult, TaskStatus};
use crate::fleet::run::NodeContext;
use crate::fleet::ssh::{Request, Session};
use crate::sot::model::{Agent, AgentVersion, Node, Sot};

pub use artifact::{Artifact, ArtifactError};
pub use node::{NodeAgentState, Report};

/// Problems with an agent job found before any node is touched (exit 2).
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("unknown agent `{name}`{hint}")]
    UnknownAgent { name: String, hint: String },
    #[error("agent `{agent}` has no version `{version}` (versions: {known})")]
    UnknownVersion {
        agent: String,
        version: String,
        known: String,
    },
    #[error("agent `{0}` has no `current` version: name one (maestro deploy {0}@VERSION)")]
    NoCurrent(String),
    #[error(
        "agent `{0}` has no `command` in agents.toml: maestro cannot start it (e.g. command = \"./run\")"
    )]
    NoCommand(String),
    #[error(
        "agent `{0}` has no `gateway` in agents.toml, so no port for a preview instance (e.g. gateway = {{ port = 9081, preview_port = 18081 }})"
    )]
    NoPreviewPort(String),
    #[error(transparent)]
    Artifact(#[from] ArtifactError),
}

/// Which instance of an agent on a node: the primary one (on the agent's
/// `port`, what clients get by default) or the preview one beside it (on
/// the gateway's `preview_port`: a canary, the green of blue/green, a
/// shadow).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Slot {
    #[default]
    Primary,
    Preview,
}

impl Slot {
    pub fn as_str(self) -> &'static str {
        match self {
            Slot::Primary => "primary",
            Slot::Preview => "preview",
        }
    }

    /// The port this slot of `agent` listens on, if it has one.
    pub fn port(self, agent: &Agent) -> Option<u16> {
        match self {
            Slot::Primary => agent.port,
            Slot::Preview => agent.gateway.map(|g| g.preview_port),
        }
    }

    /// The slot can run `agent`: the preview needs a gateway's `preview_port`.
    pub fn check(self, agent: &Agent) -> Result<(), AgentError> {
        match self {
            Slot::Preview if agent.gateway.is_none() => {
                Err(AgentError::NoPreviewPort(agent.name.clone()))
            }
            _ => Ok(()),
        }
    }
}

impl std::fmt::Display for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Slot {
    type Err = String;
    fn from_str(s: &str) -> Result<Slot, String> {
        match s {
            "primary" => Ok(Slot::Primary),
            "preview" => Ok(Slot::Preview),
            other => Err(format!("no slot `{other}`: primary or preview")),
        }
    }
}

/// `AGENT[@VERSION]` as typed.
pub fn split_ref(s: &str) -> (&str, Option<&str>) {
    match s.split_once('@') {
        Some((a, v)) => (a, Some(v)),
        None => (s, None),
    }
}

/// The registry entry for `name`, or an error with a suggestion.
pub fn find<'a>(sot: &'a Sot, name: &str) -> Result<&'a Agent, AgentError> {
    sot.agents
        .get(name)
        .ok_or_else(|| AgentError::UnknownAgent {
            name: name.to_string(),
            hint: crate::diag::suggest(name, sot.agents.keys().map(String::as_str))
                .map(|s| format!("; did you mean `{s}`?"))
                .unwrap_or_else(|| {
                    format!(
                        " (agents.toml has: {})",
                        sot.agents.keys().cloned().collect::<Vec<_>>().join(", ")
                    )
                }),
        })
}

/// The version to deploy: the one named, else the agent's `current`.
pub fn pick_version<'a>(
    agent: &'a Agent,
    version: Option<&str>,
) -> Result<&'a AgentVersion, AgentError> {
    let v = match version {
        Some(v) => v,
        None => agent
            .current
            .as_deref()
            .ok_or_else(|| AgentError::NoCurrent(agent.name.clone()))?,
    };
    agent.version(v).ok_or_else(|| AgentError::UnknownVersion {
        agent: agent.name.clone(),
        version: v.to_string(),
        known: agent
            .versions
            .iter()
            .map(|v| v.version.clone())
            .collect::<Vec<_>>()
            .join(", "),
    })
}

/// A deploy, resolved: the agent, the version and its verified artifact.
#[derive(Debug, Clone)]
pub struct Deploy {
    pub agent: Agent,
    pub version: AgentVersion,
    pub artifact: Artifact,
}

impl Deploy {
    /// Resolve `agent@version` and verify its artifact on the controller
    /// (fetching a URL into the cache first).
    pub fn resolve(
        sot: &Sot,
        agent: &str,
        version: Option<&str>,
        cache: &std::path::Path,
    ) -> Result<Deploy, AgentError> {
        let a = find(sot, agent)?;
        let v = pick_version(a, version)?;
        if a.command.is_none() {
            return Err(AgentError::NoCommand(a.name.clone()));
        }
        let artifact = artifact::resolve(&sot.root, v, cache)?;
        Ok(Deploy {
            agent: a.clone(),
            version: v.clone(),
            artifact,
        })
    }

    pub fn label(&self) -> String {
        format!("{}@{}", self.agent.name, self.version.version)
    }
}

/// What an agent job does on one node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Status,
    Probe,
    Deploy,
    Disable,
}

/// What a deploy did (or would do) on one node, as reported to the operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeOutcome {
    Deployed,
    Unchanged,
    WouldDeploy,
    RolledBack,
    Refused,
    Disabled,
    Failed,
}

impl NodeOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeOutcome::Deployed => "deployed",
            NodeOutcome::Unchanged => "unchanged",
            NodeOutcome::WouldDeploy => "would deploy",
            NodeOutcome::RolledBack => "rolled_back",
            NodeOutcome::Refused => "refused",
            NodeOutcome::Disabled => "disabled",
            NodeOutcome::Failed => "failed",
        }
    }

    /// The outcome a task result of an agent run carries (its message
    /// starts with the outcome and a colon).
    pub fn of(task: &TaskResult) -> Option<NodeOutcome> {
        let word = task.message.split(':').next()?;
        [
            NodeOutcome::Deployed,
            NodeOutcome::Unchanged,
            NodeOutcome::WouldDeploy,
            NodeOutcome::RolledBack,
            NodeOutcome::Refused,
            NodeOutcome::Disabled,
            NodeOutcome::Failed,
        ]
        .into_iter()
        .find(|o| o.as_str() == word)
    }

    fn task_status(self) -> TaskStatus {
        match self {
            NodeOutcome::Deployed | NodeOutcome::WouldDeploy | NodeOutcome::Disabled => {
                TaskStatus::Changed
            }
            NodeOutcome::Unchanged => TaskStatus::Ok,
            NodeOutcome::Refused => TaskStatus::Refused,
            NodeOutcome::RolledBack | NodeOutcome::Failed => TaskStatus::Failed,
        }
    }
}

/// The address an agent binds on a node and its health check uses: the
/// node's `loopback` variable (its own or its groups'), else 127.0.0.1.
pub fn loopback(sot: &Sot, node: &Node) -> String {
    let from = |vars: &crate::sot::model::Vars| {
        vars.get("loopback")
            .and_then(|v| v.as_str())
            .map(str::to_string)
    };
    from(&node.vars)
        .or_else(|| {
            node.groups
                .iter()
                .filter_map(|g| sot.groups.get(g))
                .find_map(|g| from(&g.vars))
        })
        .unwrap_or_else(|| "127.0.0.1".into())
}

/// Everything the node script needs for one node.
#[derive(Debug, Clone)]
pub struct NodeParams {
    pub host: String,
    /// The agent's environment file, rendered for this node.
    pub env: String,
}

/// The environment an agent's instance in `slot` runs with on `node`:
/// what maestro tells it (name, version, slot, model, autonomy, tags,
/// address and the slot's port), then the registry's `env`, then the
/// version's.
pub fn render_env(
    sot: &Sot,
    agent: &Agent,
    version: &AgentVersion,
    node: &Node,
    slot: Slot,
) -> NodeParams {
    let host = loopback(sot, node);
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    env.insert("MAESTRO_AGENT".into(), agent.name.clone());
    env.insert("MAESTRO_AGENT_VERSION".into(), version.version.clone());
    env.insert("MAESTRO_AGENT_SLOT".into(), slot.as_str().into());
    env.insert("MAESTRO_AGENT_HOST".into(), host.clone());
    if let Some(p) = slot.port(agent) {
        env.insert("MAESTRO_AGENT_PORT".into(), p.to_string());
    }
    env.insert(
        "MAESTRO_AGENT_DATA".into(),
        format!("/var/lib/maestro/agents/{}/data", agent.name),
    );
    env.insert("MAESTRO_NODE".into(), node.name.clone());
    env.insert("MAESTRO_MODEL".into(), agent.model.clone());
    if let Some(p) = &agent.provider {
        env.insert("MAESTRO_PROVIDER".into(), p.clone());
    }
    env.insert("MAESTRO_AUTONOMY".into(), agent.autonomy.to_string());
    for (k, v) in agent.tags.iter().chain(&node.tags) {
        let key: String = k
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_uppercase()
                } else {
                    '_'
                }
            })
            .collect();
        env.insert(format!("MAESTRO_TAG_{key}"), v.clone());
    }
    for (k, v) in agent.env.iter().chain(&version.env) {
        env.insert(k.clone(), v.clone());
    }
    let mut text = String::new();
    for (k, v) in &env {
        text.push_str(&format!("{k}={}\n", crate::fleet::quote::sh_quote(v)));
    }
    NodeParams { host, env: text }
}

/// Run `action` for `agent`'s instance in `slot` on one node; the artifact
/// goes on stdin when `artifact` is given. Returns the node's report (or
/// why there is none).
#[allow(clippy::too_many_arguments)]
pub async fn run_action(
    session: &Session,
    ctx: &NodeContext,
    action: Action,
    agent: &Agent,
    target: Option<(&AgentVersion, Option<&Artifact>)>,
    params: &NodeParams,
    probe_health: bool,
    slot: Slot,
) -> Result<Report, String> {
    let script = node::script(action, agent, target, params, probe_health, slot);
    let command = root_command(&ctx.login_user, &script);
    let mut stdout = Vec::new();
    let request = Request {
        command: &command,
        stdin: b"",
        stdin_file: target.and_then(|(_, a)| a).map(|a| a.path.as_path()),
        output_events: false,
        sudo: None,
    };
    let outcome = session
        .run(
            request,
            &ctx.limits,
            &ctx.cancel,
            &ctx.events,
            &mut |d: &[u8]| stdout.extend_from_slice(d),
        )
        .await;
    let report = node::parse(&stdout);
    if report.result.is_none() && report.state.is_none() && report.have.is_none() {
        let why = outcome.error.clone().unwrap_or_else(|| {
            let err = String::from_utf8_lossy(&outcome.stderr.bytes);
            let err = err
                .lines()
                .filter(|l| !l.starts_with("MAESTRO-PGID"))
                .collect::<Vec<_>>()
                .join("; ");
            format!(
                "the node-side script reported nothing (exit {:?}){}",
                outcome.exit_code,
                if err.is_empty() {
                    String::new()
                } else {
                    format!(": {err}")
                }
            )
        });
        return Err(why);
    }
    Ok(report)
}

/// `script` run as root with `/bin/sh -c`, through `sudo -n` for a login
/// user that is not root (the node scripts of agents and the gateway).
pub(crate) fn root_command(login_user: &str, script: &str) -> String {
    let quoted = crate::fleet::quote::sh_quote(script);
    if login_user == "root" {
        format!("/bin/sh -c {quoted}")
    } else {
        format!("sudo -n -- /bin/sh -c {quoted}")
    }
}

/// One node's deploy (or its check) into `slot`: probe, then send and
/// switch only where something must change. A deploy to the preview slot
/// never touches the primary instance; a preview that fails its health
/// check is stopped and reported failed (there is nothing to roll back to).
/// `params` must be rendered for the same slot ([`render_env`]).
pub async fn deploy_node(
    session: Arc<Session>,
    ctx: NodeContext,
    job: Arc<Deploy>,
    params: NodeParams,
    check: bool,
    diff: bool,
    slot: Slot,
) -> NodeResult {
    let started = std::time::Instant::now();
    let name = match slot {
        Slot::Primary => format!("deploy {}", job.label()),
        Slot::Preview => format!("deploy {} (preview)", job.label()),
    };
    let finish = |outcome: NodeOutcome, detail: String, change: &Option<String>| {
        let task = TaskResult {
            index: 0,
            name: name.clone(),
            status: outcome.task_status(),
            message: format!("{}: {detail}", outcome.as_str()),
            diff: change.clone().filter(|_| {
                diff && matches!(outcome, NodeOutcome::Deployed | NodeOutcome::WouldDeploy)
            }),
            output: None,
        };
        ctx.events.send(crate::fleet::event::Event::TaskFinished {
            node: ctx.node.clone(),
            task: task.clone(),
        });
        let status = match task.status {
            TaskStatus::Ok | TaskStatus::Changed | TaskStatus::Skipped => NodeStatus::Ok,
            TaskStatus::Failed | TaskStatus::Refused | TaskStatus::Unknown => NodeStatus::Failed,
        };
        let mut r = NodeResult::new(&ctx.node, status);
        r.duration_ms = started.elapsed().as_millis() as u64;
        if status == NodeStatus::Failed {
            r.error = Some(task.message.clone());
        }
        r.tasks = vec![task];
        r
    };
    let fail = |why: String| {
        let mut r = NodeResult::new(&ctx.node, NodeStatus::Failed);
        r.error = Some(why);
        r.duration_ms = started.elapsed().as_millis() as u64;
        r
    };
    if let Err(e) = slot.check(&job.agent) {
        return fail(e.to_string());
    }
    let target = Some((&job.version, None));
    let probe = match run_action(
        &session,
        &ctx,
        Action::Probe,
        &job.agent,
        target,
        &params,
        false,
        slot,
    )
    .await
    {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    let state = probe.state.clone().unwrap_or_default();
    let v = &job.version.version;
    let agent_slot = match slot {
        Slot::Primary => job.agent.name.clone(),
        Slot::Preview => format!("{} (preview)", job.agent.name),
    };
    let change = Some(format!(
        "--- {node} {agent} (running)\n+++ {node} {agent} (after the deploy)\n-version {}\n-sha256 {}\n+version {}\n+sha256 {}\n",
        state.version_or_nothing(),
        if state.digest.is_empty() {
            "-"
        } else {
            &state.digest
        },
        job.version.version,
        job.version.sha256,
        node = ctx.node,
        agent = agent_slot,
    ));
    if state.killed {
        return finish(
            NodeOutcome::Refused,
            format!(
                "the kill switch is engaged for {} on this node",
                job.agent.name
            ),
            &change,
        );
    }
    if state.is_running(v, &job.version.sha256) {
        return finish(NodeOutcome::Unchanged, format!("{v} is running"), &change);
    }
    let have = probe.have == Some(true);
    let need_kb = job.artifact.size.div_ceil(1024) * 3;
    if !have
        && let Some(free) = probe.free_kb
        && free < need_kb
    {
        return finish(
            NodeOutcome::Failed,
            format!(
                "not enough disk: {free} KiB free, {need_kb} KiB needed; {} keeps running",
                state.version_or_nothing()
            ),
            &change,
        );
    }
    if check {
        let from = if state.version.is_empty() {
            "nothing deployed yet".to_string()
        } else {
            format!("from {}", state.version)
        };
        let send = if have {
            "already on the node"
        } else {
            "artifact to send"
        };
        return finish(
            NodeOutcome::WouldDeploy,
            format!("{v} ({from}; {send})"),
            &change,
        );
    }
    let artifact = (!have).then_some(&job.artifact);
    let report = match run_action(
        &session,
        &ctx,
        Action::Deploy,
        &job.agent,
        Some((&job.version, artifact)),
        &params,
        false,
        slot,
    )
    .await
    {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    let detail = report.detail.clone().unwrap_or_default();
    match report.result.as_deref() {
        Some("deployed") => {
            let from = report.from.clone().unwrap_or_default();
            let from = if from.is_empty() {
                String::new()
            } else {
                format!(" (was {from})")
            };
            finish(
                NodeOutcome::Deployed,
                format!("{v} is running, {detail}{from}"),
                &change,
            )
        }
        Some("unchanged") => finish(NodeOutcome::Unchanged, detail, &change),
        Some("rolled_back") => finish(NodeOutcome::RolledBack, detail, &change),
        Some("refused") => finish(NodeOutcome::Refused, detail, &change),
        _ => finish(NodeOutcome::Failed, detail, &change),
    }
}

/// One node's `disable` of the instance in `slot`: stop and remove its
/// service, keep the files. The other slot keeps running.
pub async fn disable_node(
    session: Arc<Session>,
    ctx: NodeContext,
    agent: Arc<Agent>,
    params: NodeParams,
    slot: Slot,
) -> NodeResult {
    let started = std::time::Instant::now();
    let mut r = NodeResult::new(&ctx.node, NodeStatus::Ok);
    let report = run_action(
        &session,
        &ctx,
        Action::Disable,
        &agent,
        None,
        &params,
        false,
        slot,
    )
    .await;
    let (outcome, detail) = match report {
        Ok(rep) => match rep.result.as_deref() {
            Some("disabled") => (NodeOutcome::Disabled, rep.detail.unwrap_or_default()),
            Some("unchanged") => (NodeOutcome::Unchanged, rep.detail.unwrap_or_default()),
            _ => (NodeOutcome::Failed, rep.detail.unwrap_or_default()),
        },
        Err(e) => (NodeOutcome::Failed, e),
    };
    let task = TaskResult {
        index: 0,
        name: match slot {
            Slot::Primary => format!("disable {}", agent.name),
            Slot::Preview => format!("disable {} (preview)", agent.name),
        },
        status: outcome.task_status(),
        message: format!("{}: {detail}", outcome.as_str()),
        diff: None,
        output: None,
    };
    ctx.events.send(crate::fleet::event::Event::TaskFinished {
        node: ctx.node.clone(),
        task: task.clone(),
    });
    if outcome == NodeOutcome::Failed {
        r.status = NodeStatus::Failed;
        r.error = Some(task.message.clone());
    }
    r.tasks = vec![task];
    r.duration_ms = started.elapsed().as_millis() as u64;
    r
}

/// What one node runs of one agent, as `agent status` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct AgentOnNode {
    pub node: String,
    pub agent: String,
    /// The primary instance.
    #[serde(flatten)]
    pub state: NodeAgentState,
    /// The preview instance, when the node has (or had) one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preview: Option<NodeAgentState>,
    /// The SoT's `current` for the agent.
    pub expected: Option<String>,
    /// Runs something else than the SoT's `current` (or nothing).
    pub differs: bool,
    /// Why the node could not say.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The status of `agents` on one node: one exec per agent on the open session.
pub async fn status_node(
    session: &Session,
    ctx: &NodeContext,
    sot: &Sot,
    agents: &[Agent],
    node: &Node,
) -> Vec<AgentOnNode> {
    let mut out = Vec::new();
    for agent in agents {
        let params = NodeParams {
            host: loopback(sot, node),
            env: String::new(),
        };
        let r = run_action(
            session,
            ctx,
            Action::Status,
            agent,
            None,
            &params,
            true,
            Slot::Primary,
        )
        .await;
        let (state, preview, error) = match r {
            Ok(rep) => (
                rep.state.unwrap_or_default(),
                rep.preview
                    .filter(|p| !p.version.is_empty() || p.running || !p.current.is_empty()),
                None,
            ),
            Err(e) => (NodeAgentState::default(), None, Some(e)),
        };
        let expected = agent.current.clone();
        // Only nodes that run (or ran) the agent can differ; the rest do
        // not have it, which is what `enable`/`deploy` decide.
        let differs = error.is_none()
            && !state.version.is_empty()
            && (Some(&state.version) != expected.as_ref() || !state.running);
        out.push(AgentOnNode {
            node: ctx.node.clone(),
            agent: agent.name.clone(),
            state,
            preview,
            expected,
            differs,
            error,
        });
    }
    out
}

/// A node's `agent status` as a run result: one task per agent (ok: as the
/// SoT says or not deployed; changed: differs; failed: could not tell).
pub fn status_result(ctx: &NodeContext, found: &[AgentOnNode]) -> NodeResult {
    let mut r = NodeResult::new(&ctx.node, NodeStatus::Ok);
    for (index, a) in found.iter().enumerate() {
        let (status, message) = match &a.error {
            Some(e) => (TaskStatus::Failed, e.clone()),
            None if a.state.version.is_empty() && a.preview.is_none() => {
                (TaskStatus::Skipped, "not deployed".into())
            }
            None => (
                if a.differs {
                    TaskStatus::Changed
                } else {
                    TaskStatus::Ok
                },
                a.summary(),
            ),
        };
        if status == TaskStatus::Failed {
            r.status = NodeStatus::Failed;
            r.error = Some(message.clone());
        }
        let task = TaskResult {
            index,
            name: a.agent.clone(),
            status,
            message,
            diff: None,
            output: None,
        };
        ctx.events.send(crate::fleet::event::Event::TaskFinished {
            node: ctx.node.clone(),
            task: task.clone(),
        });
        r.tasks.push(task);
    }
    r
}

impl AgentOnNode {
    /// `2.1.0 running, healthy` / `2.0.3 stopped (SoT: 2.1.0)` / `killed`.
    pub fn summary(&self) -> String {
        let s = &self.state;
        let mut out = format!(
            "{} {}",
            s.version_or_nothing(),
            if s.running { "running" } else { "stopped" }
        );
        match s.healthy {
            Some(true) => out.push_str(", healthy"),
            Some(false) => out.push_str(", unhealthy"),
            None => {}
        }
        if s.killed {
            out.push_str(", kill switch engaged");
        }
        if !s.enabled && !s.version.is_empty() {
            out.push_str(", disabled");
        }
        if let Some(expected) = &self.expected
            && expected != &s.version
        {
            out.push_str(&format!(" (SoT: {expected})"));
        }
        if let Some(p) = &self.preview {
            out.push_str(&format!(
                "; preview {} {}",
                p.version_or_nothing(),
                if p.running { "running" } else { "stopped" }
            ));
            match p.healthy {
                Some(true) => out.push_str(", healthy"),
                Some(false) => out.push_str(", unhealthy"),
                None => {}
            }
        }
        out
    }
}
