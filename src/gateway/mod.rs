//! The traffic layer on a node: the distribution's nginx, one per node on
//! the node's loopback address, in front of each agent's two instances
//! (the primary slot on the agent's `port`, the preview slot on the
//! gateway's `preview_port`, see [`crate::agent::Slot`]). Clients talk to
//! `loopback:gateway.port`; a [`Traffic`] says who answers them: the
//! primary, a weighted split, the preview, or the primary with a mirrored
//! share of requests copied to the preview (whose answers are discarded).
//!
//! This module renders one agent's nginx config from typed values
//! ([`config`]), and runs `node.sh` on a node to stage it, check the
//! complete new config with `nginx -t`, swap it in and reload nginx
//! gracefully, or to read back what a node's gateway applies. Rollouts
//! compose these calls into canary, blue/green and shadow strategies.
//!
//! It must not: print (it is engine code), decide when traffic moves (the
//! rollout's state machine does), start or stop agent instances (the
//! agent module does), ship a proxy of its own, or ever let a config
//! nginx refuses replace one that works.

mod config;

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::fleet::event::{Event, NodeResult, NodeStatus, TaskResult, TaskStatus};
use crate::fleet::quote::sh_quote;
use crate::fleet::run::NodeContext;
use crate::fleet::ssh::{Request, Session};
use crate::sot::model::{Agent, AgentGateway, Node, Sot};

pub use config::{AgentConfig, HEADER, read_header};

const NODE_SH: &str = include_str!("node.sh");

/// Who answers the clients of an agent's gateway on a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Traffic {
    /// Every request to the primary instance.
    Primary,
    /// `preview_percent` of the requests to the preview instance, the rest
    /// to the primary (nginx's weighted round robin; 0 and 100 are a
    /// single upstream, since nginx weights start at 1).
    Split { preview_percent: u8 },
    /// Every request to the preview instance.
    Preview,
    /// Clients are answered by the primary only; `percent` of the requests
    /// are also copied to the preview instance, whose answers are dropped.
    Mirror { percent: u8 },
}

impl Traffic {
    /// The share of client answers the preview gives, in percent.
    pub fn preview_share(self) -> u8 {
        match self {
            Traffic::Primary | Traffic::Mirror { .. } => 0,
            Traffic::Split { preview_percent } => preview_percent,
            Traffic::Preview => 100,
        }
    }
}

impl std::fmt::Display for Traffic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Traffic::Primary => f.write_str("primary"),
            Traffic::Preview => f.write_str("preview"),
            Traffic::Split { preview_percent } => write!(f, "split:{preview_percent}"),
            Traffic::Mirror { percent } => write!(f, "mirror:{percent}"),
        }
    }
}

impl std::str::FromStr for Traffic {
    type Err = GatewayError;

    /// `primary`, `preview`, `split:N`, `mirror:N` (N a percentage, 0..=100).
    fn from_str(s: &str) -> Result<Traffic> {
        let bad = || GatewayError::BadTraffic(s.to_string());
        let percent = |n: &str| -> Result<u8> {
            match n.parse::<u8>() {
                Ok(p) if p <= 100 => Ok(p),
                _ => Err(bad()),
            }
        };
        match s.split_once(':') {
            None if s == "primary" => Ok(Traffic::Primary),
            None if s == "preview" => Ok(Traffic::Preview),
            Some(("split", n)) => Ok(Traffic::Split {
                preview_percent: percent(n)?,
            }),
            Some(("mirror", n)) => Ok(Traffic::Mirror {
                percent: percent(n)?,
            }),
            _ => Err(bad()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GatewayError {
    #[error(
        "`{0}` is not a traffic setting: primary, preview, split:N or mirror:N (N from 0 to 100, the preview's percent)"
    )]
    BadTraffic(String),
    #[error(
        "agent `{0}` has no `gateway` in agents.toml: add e.g. gateway = {{ port = 9081, preview_port = 18081 }} (and `port`)"
    )]
    NoGateway(String),
    #[error(
        "node {node}: its loopback address `{host}` is not an IP address; the gateway listens on it (set the node's `loopback` variable to e.g. \"127.0.0.1\")"
    )]
    BadHost { node: String, host: String },
    /// `nginx -t` refused the new config; nothing was changed.
    #[error("node {node}: {detail}")]
    Refused { node: String, detail: String },
    /// nginx could not be started or did not load the new config.
    #[error("node {node}: {detail}")]
    Failed { node: String, detail: String },
    /// The node-side script said nothing (unreachable, no sudo, ...).
    #[error("node {node}: {detail}")]
    NoReport { node: String, detail: String },
}

pub type Result<T> = std::result::Result<T, GatewayError>;

/// What one node's gateway applies for one agent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct GatewayState {
    /// nginx runs (the verified master of this node's gateway).
    pub running: bool,
    pub pid: Option<u32>,
    /// The agent has a config file in the gateway.
    pub configured: bool,
    /// What that file says it applies.
    pub traffic: Option<Traffic>,
}

/// What a `set` did on a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    /// nginx was not running and was started with the config.
    Started,
    /// The config was swapped in and nginx reloaded gracefully.
    Reloaded,
    /// The node already applied it.
    Unchanged,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Applied {
    pub change: Change,
    pub traffic: Traffic,
    /// From the signal to the new workers running (or nginx's start).
    pub ms: Option<u64>,
    pub state: GatewayState,
}

/// Everything the node script needs for one agent on one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub agent: String,
    pub host: std::net::IpAddr,
    pub primary_port: u16,
    pub gateway: AgentGateway,
    /// The agent's HTTP health check path, if it has one: a traffic that
    /// gives clients to the preview is refused while the preview fails it.
    pub health_path: Option<String>,
}

impl Target {
    /// The gateway of `agent` on `node`, on the node's loopback address.
    pub fn of(sot: &Sot, agent: &Agent, node: &Node) -> Result<Target> {
        let (Some(gateway), Some(primary_port)) = (agent.gateway, agent.port) else {
            return Err(GatewayError::NoGateway(agent.name.clone()));
        };
        let host = crate::agent::loopback(sot, node);
        let ip = host.parse().map_err(|_| GatewayError::BadHost {
            node: node.name.clone(),
            host: host.clone(),
        })?;
        let health_path = match &agent.health.probe {
            crate::sot::model::HealthProbe::Http { path } => Some(path.clone()),
            _ => None,
        };
        Ok(Target {
            agent: agent.name.clone(),
            host: ip,
            primary_port,
            gateway,
            health_path,
        })
    }

    /// Where clients talk to the gateway: `127.0.0.1:9081`.
    pub fn address(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::new(self.host, self.gateway.port)
    }

    /// The agent's nginx config for `traffic`.
    pub fn config(&self, traffic: Traffic) -> String {
        AgentConfig {
            agent: &self.agent,
            host: self.host,
            listen_port: self.gateway.port,
            primary_port: self.primary_port,
            preview_port: self.gateway.preview_port,
            traffic,
        }
        .render()
    }
}

/// The script for one action: quoted `g_*` assignments, then `node.sh`.
fn script(action: &str, target: &Target, traffic: Option<Traffic>) -> String {
    let vars = [
        ("g_action", action.to_string()),
        ("g_agent", target.agent.clone()),
        ("g_port", target.gateway.port.to_string()),
        (
            "g_traffic",
            traffic.map(|t| t.to_string()).unwrap_or_default(),
        ),
        (
            "g_conf",
            traffic.map(|t| target.config(t)).unwrap_or_default(),
        ),
        (
            "g_check",
            match (traffic, &target.health_path) {
                (Some(t), Some(path)) if t.preview_share() > 0 => format!(
                    "http://{}{path}",
                    std::net::SocketAddr::new(target.host, target.gateway.preview_port)
                ),
                _ => String::new(),
            },
        ),
    ];
    let mut s = String::with_capacity(NODE_SH.len() + 2048);
    for (k, v) in vars {
        s.push_str(&format!("{k}={}\n", sh_quote(&v)));
    }
    s.push_str(NODE_SH);
    s
}

/// What the script said.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Report {
    state: Option<GatewayState>,
    result: Option<String>,
    ms: Option<u64>,
    detail: Option<String>,
}

fn parse(stdout: &[u8]) -> Report {
    let text = String::from_utf8_lossy(stdout);
    let mut r = Report::default();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("@@maestro ") else {
            continue;
        };
        let (head, detail) = match rest.find("detail=") {
            Some(i) => (&rest[..i], Some(rest[i + 7..].trim_end().to_string())),
            None => (rest, None),
        };
        if detail.is_some() {
            r.detail = detail;
        }
        let mut words = head.split(' ').filter(|w| !w.is_empty()).peekable();
        let is_state = words.peek() == Some(&"gateway");
        if is_state {
            words.next();
        }
        let mut st = GatewayState::default();
        for w in words {
            let Some((k, v)) = w.split_once('=') else {
                continue;
            };
            match k {
                "running" => st.running = v == "1",
                "pid" => st.pid = v.parse().ok(),
                "configured" => st.configured = v == "1",
                "traffic" => st.traffic = v.parse().ok(),
                "result" => r.result = Some(v.to_string()),
                "ms" => r.ms = v.parse().ok(),
                _ => {}
            }
        }
        if is_state {
            r.state = Some(st);
        }
    }
    r
}

async fn run_script(session: &Session, ctx: &NodeContext, script: &str) -> Result<Report> {
    let command = crate::agent::root_command(&ctx.login_user, script);
    let mut stdout = Vec::new();
    let request = Request {
        command: &command,
        stdin: b"",
        stdin_file: None,
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
    let report = parse(&stdout);
    if report.result.is_none() && report.state.is_none() {
        let detail = outcome.error.clone().unwrap_or_else(|| {
            let err = String::from_utf8_lossy(&outcome.stderr.bytes);
            let err: Vec<&str> = err
                .lines()
                .filter(|l| !l.starts_with("MAESTRO-PGID"))
                .collect();
            format!(
                "the gateway's node-side script reported nothing (exit {:?}){}",
                outcome.exit_code,
                if err.is_empty() {
                    String::new()
                } else {
                    format!(": {}", err.join("; "))
                }
            )
        });
        return Err(GatewayError::NoReport {
            node: ctx.node.clone(),
            detail,
        });
    }
    Ok(report)
}

/// Apply `traffic` for `target`'s agent on one node: stage, `nginx -t`,
/// swap in, start or reload gracefully. A refused config changes nothing.
pub async fn apply(
    session: &Session,
    ctx: &NodeContext,
    target: &Target,
    traffic: Traffic,
) -> Result<Applied> {
    let report = run_script(session, ctx, &script("set", target, Some(traffic))).await?;
    let node = ctx.node.clone();
    let detail = report.detail.clone().unwrap_or_default();
    let change = match report.result.as_deref() {
        Some("started") => Change::Started,
        Some("reloaded") => Change::Reloaded,
        Some("unchanged") => Change::Unchanged,
        Some("invalid" | "refused") => return Err(GatewayError::Refused { node, detail }),
        _ => return Err(GatewayError::Failed { node, detail }),
    };
    Ok(Applied {
        change,
        traffic,
        ms: report.ms,
        state: report.state.unwrap_or_default(),
    })
}

/// What `target`'s agent gets from the gateway on one node (reads only).
pub async fn status(session: &Session, ctx: &NodeContext, target: &Target) -> Result<GatewayState> {
    let report = run_script(session, ctx, &script("status", target, None)).await?;
    report.state.ok_or_else(|| GatewayError::Failed {
        node: ctx.node.clone(),
        detail: report
            .detail
            .unwrap_or_else(|| "the gateway reported no state".into()),
    })
}

/// One agent's gateway on one node, as `gateway status` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct GatewayOnNode {
    pub node: String,
    pub agent: String,
    /// `loopback:gateway.port`, where clients talk to it.
    pub address: Option<String>,
    #[serde(flatten)]
    pub state: GatewayState,
    /// What a `set` did (absent for a status).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub change: Option<Change>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl GatewayOnNode {
    fn new(ctx: &NodeContext, target: &Result<Target>) -> GatewayOnNode {
        GatewayOnNode {
            node: ctx.node.clone(),
            agent: target.as_ref().map(|t| t.agent.clone()).unwrap_or_default(),
            address: target.as_ref().ok().map(|t| t.address().to_string()),
            state: GatewayState::default(),
            change: None,
            ms: None,
            error: None,
        }
    }
}

fn task_result(ctx: &NodeContext, name: String, status: TaskStatus, message: String) -> NodeResult {
    let task = TaskResult {
        index: 0,
        name,
        status,
        message,
        diff: None,
        output: None,
    };
    ctx.events.send(Event::TaskFinished {
        node: ctx.node.clone(),
        task: task.clone(),
    });
    let failed = matches!(
        status,
        TaskStatus::Failed | TaskStatus::Refused | TaskStatus::Unknown
    );
    let mut r = NodeResult::new(
        &ctx.node,
        if failed {
            NodeStatus::Failed
        } else {
            NodeStatus::Ok
        },
    );
    if failed {
        r.error = Some(task.message.clone());
    }
    r.tasks = vec![task];
    r
}

/// One node's `gateway set` as a run result (the closure for
/// [`crate::fleet::run_nodes`]): changed when started or reloaded, ok when
/// unchanged, failed (nothing changed) when nginx refused the config.
pub async fn set_node(
    session: Arc<Session>,
    ctx: NodeContext,
    target: Result<Target>,
    traffic: Traffic,
) -> (NodeResult, GatewayOnNode) {
    let started = std::time::Instant::now();
    let mut on = GatewayOnNode::new(&ctx, &target);
    let name = format!("gateway {} {traffic}", on.agent);
    let applied = match &target {
        Ok(t) => apply(&session, &ctx, t, traffic).await,
        Err(e) => Err(e.clone()),
    };
    let mut r = match applied {
        Ok(a) => {
            let (status, word) = match a.change {
                Change::Started => (TaskStatus::Changed, "started"),
                Change::Reloaded => (TaskStatus::Changed, "reloaded"),
                Change::Unchanged => (TaskStatus::Ok, "unchanged"),
            };
            let took = a.ms.map(|m| format!(" in {m} ms")).unwrap_or_default();
            on.state = a.state;
            on.change = Some(a.change);
            on.ms = a.ms;
            task_result(
                &ctx,
                name,
                status,
                format!(
                    "{word}: {traffic} on {}{took}",
                    on.address.clone().unwrap_or_default()
                ),
            )
        }
        Err(e) => {
            let message = match &e {
                GatewayError::Refused { detail, .. } => format!("refused: {detail}"),
                GatewayError::Failed { detail, .. } | GatewayError::NoReport { detail, .. } => {
                    format!("failed: {detail}")
                }
                other => format!("failed: {other}"),
            };
            on.error = Some(message.clone());
            let status = if matches!(e, GatewayError::Refused { .. }) {
                TaskStatus::Refused
            } else {
                TaskStatus::Failed
            };
            task_result(&ctx, name, status, message)
        }
    };
    r.duration_ms = started.elapsed().as_millis() as u64;
    (r, on)
}

/// One node's `gateway status` as a run result.
pub async fn status_node(
    session: Arc<Session>,
    ctx: NodeContext,
    target: Result<Target>,
) -> (NodeResult, GatewayOnNode) {
    let started = std::time::Instant::now();
    let mut on = GatewayOnNode::new(&ctx, &target);
    let got = match &target {
        Ok(t) => status(&session, &ctx, t).await,
        Err(e) => Err(e.clone()),
    };
    let name = format!("gateway {}", on.agent);
    let mut r = match got {
        Ok(st) => {
            let message = match (&st.traffic, st.running) {
                (Some(t), true) => format!("{t}, nginx running"),
                (Some(t), false) => format!("{t} configured, nginx not running"),
                (None, true) => "no config for this agent, nginx running".into(),
                (None, false) => "no gateway".into(),
            };
            on.state = st;
            task_result(&ctx, name, TaskStatus::Ok, message)
        }
        Err(e) => {
            let message = e.to_string();
            on.error = Some(message.clone());
            task_result(&ctx, name, TaskStatus::Failed, message)
        }
    };
    r.duration_ms = started.elapsed().as_millis() as u64;
    (r, on)
}

#[cfg(test)]
mod tests;
