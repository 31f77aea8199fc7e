//! The node-side script for one agent action, and what it reports back.

use serde::Serialize;

use super::{Action, Artifact, NodeParams, Slot};
use crate::fleet::quote::sh_quote;
use crate::sot::model::{Agent, AgentVersion, HealthProbe};

const NODE_SH: &str = include_str!("node.sh");

fn seconds(ms: u64) -> String {
    format!("{}.{:03}", ms / 1000, ms % 1000)
}

/// The script: quoted assignments, then `node.sh`. `slot` is the instance
/// a probe, deploy or disable works on (a status reports both).
pub fn script(
    action: Action,
    agent: &Agent,
    target: Option<(&AgentVersion, Option<&Artifact>)>,
    params: &NodeParams,
    probe_health: bool,
    slot: Slot,
) -> String {
    let (version, digest, transfer) = match target {
        Some((v, a)) => (v.version.as_str(), v.sha256.as_str(), a.is_some()),
        None => ("", "", false),
    };
    let (health, health_arg) = match &agent.health.probe {
        HealthProbe::Http { path } => ("http", path.as_str()),
        HealthProbe::Command { command } => ("command", command.as_str()),
        HealthProbe::Process => ("process", ""),
    };
    let metrics = if agent.port.is_some() { "/metrics" } else { "" };
    let action = match action {
        Action::Status => "status",
        Action::Probe => "probe",
        Action::Deploy => "deploy",
        Action::Disable => "disable",
    };
    let vars: [(&str, String); 19] = [
        ("a_action", action.into()),
        ("a_slot", slot.as_str().into()),
        ("a_name", agent.name.clone()),
        ("a_version", version.into()),
        ("a_digest", digest.into()),
        ("a_transfer", if transfer { "1" } else { "0" }.into()),
        ("a_command", agent.command.clone().unwrap_or_default()),
        ("a_host", params.host.clone()),
        (
            "a_primary_port",
            agent.port.map(|p| p.to_string()).unwrap_or_default(),
        ),
        (
            "a_preview_port",
            agent
                .gateway
                .map(|g| g.preview_port.to_string())
                .unwrap_or_default(),
        ),
        ("a_metrics", metrics.into()),
        ("a_keep", agent.keep.to_string()),
        ("a_env", params.env.clone()),
        ("a_health", health.into()),
        ("a_health_arg", health_arg.into()),
        ("a_timeout", seconds(agent.health.timeout_ms)),
        ("a_interval", seconds(agent.health.interval_ms)),
        ("a_retries", agent.health.retries.to_string()),
        ("a_min_healthy", seconds(agent.health.min_healthy_ms)),
    ];
    let mut s = String::with_capacity(NODE_SH.len() + 1024);
    for (k, v) in vars {
        s.push_str(&format!("{k}={}\n", sh_quote(&v)));
    }
    s.push_str(&format!("a_probe={}\n", if probe_health { 1 } else { 0 }));
    s.push_str(NODE_SH);
    s
}

/// What a node runs of an agent, from its state file and its processes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct NodeAgentState {
    pub version: String,
    pub digest: String,
    /// The port this instance listens on (the agent's `port`, or the
    /// gateway's `preview_port` for the preview slot).
    pub port: Option<u16>,
    /// Unix seconds since the version runs.
    pub since: Option<u64>,
    pub previous: String,
    pub enabled: bool,
    pub running: bool,
    pub pid: Option<u32>,
    pub killed: bool,
    /// Where `current` points.
    pub current: String,
    /// The health check's answer, when it was asked.
    pub healthy: Option<bool>,
}

impl NodeAgentState {
    /// Runs exactly this version, enabled and up.
    pub fn is_running(&self, version: &str, digest: &str) -> bool {
        self.version == version
            && self.digest == digest
            && self.current == version
            && self.running
            && self.enabled
    }

    pub fn version_or_nothing(&self) -> &str {
        if self.version.is_empty() {
            "nothing"
        } else {
            &self.version
        }
    }
}

/// Everything the script said.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// The slot the action worked on; for a status, the primary.
    pub state: Option<NodeAgentState>,
    /// A status's preview slot.
    pub preview: Option<NodeAgentState>,
    pub have: Option<bool>,
    pub free_kb: Option<u64>,
    pub result: Option<String>,
    pub detail: Option<String>,
    pub from: Option<String>,
}

/// Parse the `@@maestro key=value ...` lines (values run to the next
/// ` key=`; `detail=` runs to the end of the line).
pub fn parse(stdout: &[u8]) -> Report {
    let text = String::from_utf8_lossy(stdout);
    let mut r = Report::default();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("@@maestro ") else {
            continue;
        };
        let (head, detail) = match rest.find("detail=") {
            Some(i) => (&rest[..i], Some(rest[i + 7..].to_string())),
            None => (rest, None),
        };
        if detail.is_some() {
            r.detail = detail;
        }
        let mut words = head.split(' ').filter(|w| !w.is_empty()).peekable();
        let head_word = words.peek().copied();
        let is_state = matches!(head_word, Some("state" | "preview"));
        if is_state {
            words.next();
        }
        let mut st = NodeAgentState::default();
        for w in words {
            let Some((k, v)) = w.split_once('=') else {
                continue;
            };
            match k {
                "version" => st.version = v.into(),
                "digest" => st.digest = v.into(),
                "port" => st.port = v.parse().ok(),
                "since" => st.since = v.parse().ok(),
                "previous" => st.previous = v.into(),
                "enabled" => st.enabled = v != "0",
                "running" => st.running = v == "1",
                "pid" => st.pid = v.parse().ok(),
                "killed" => st.killed = v == "1",
                "current" => st.current = v.into(),
                "healthy" => st.healthy = (!v.is_empty()).then_some(v == "1"),
                "have" => r.have = Some(v == "1"),
                "free_kb" => r.free_kb = v.parse().ok(),
                "result" => r.result = Some(v.into()),
                "from" | "to" => r.from = Some(v.into()),
                _ => {}
            }
        }
        match head_word {
            Some("state") => r.state = Some(st),
            Some("preview") => r.preview = Some(st),
            _ => {}
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_parse_with_details_that_contain_spaces_and_equals() {
        let out = b"noise\n@@maestro state version=1.2.0 digest=ab since=17 previous= enabled=1 running=1 pid=42 killed=0 current=1.2.0 healthy=\n@@maestro result=rolled_back to=1.1.0 detail=1.2.0 failed (GET x=1 failed); back on 1.1.0\n";
        let r = parse(out);
        let st = r.state.unwrap();
        assert_eq!(st.version, "1.2.0");
        assert!(st.running && st.enabled && !st.killed);
        assert_eq!(st.pid, Some(42));
        assert_eq!(st.healthy, None);
        assert_eq!(r.result.as_deref(), Some("rolled_back"));
        assert_eq!(r.from.as_deref(), Some("1.1.0"));
        assert_eq!(
            r.detail.as_deref(),
            Some("1.2.0 failed (GET x=1 failed); back on 1.1.0")
        );
    }

    #[test]
    fn a_status_reports_both_slots() {
        let r = parse(b"@@maestro state slot=primary port=8081 version=1.0.0 digest=a since=1 previous= enabled=1 running=1 pid=7 killed=0 current=1.0.0 healthy=1\n@@maestro preview slot=preview port=18081 version=1.1.0 digest=b since=2 previous= enabled=1 running=1 pid=9 killed=0 current=1.1.0 healthy=1\n");
        let (p, q) = (r.state.unwrap(), r.preview.unwrap());
        assert_eq!((p.version.as_str(), p.port), ("1.0.0", Some(8081)));
        assert_eq!(
            (q.version.as_str(), q.port, q.pid),
            ("1.1.0", Some(18081), Some(9))
        );
    }

    #[test]
    fn the_slot_and_both_ports_reach_the_script_quoted() {
        let mut agent = crate::sot::model::Agent {
            name: "a".into(),
            description: None,
            model: "m".into(),
            provider: None,
            autonomy: crate::sot::model::Autonomy(1),
            owner: None,
            profile: None,
            current: None,
            tags: Default::default(),
            versions: Vec::new(),
            command: Some("./run; echo $(id)".into()),
            port: Some(8081),
            env: Default::default(),
            health: Default::default(),
            keep: 3,
            gateway: None,
            rollout: None,
        };
        let params = NodeParams {
            host: "127.0.0.1".into(),
            env: String::new(),
        };
        let s = script(Action::Status, &agent, None, &params, false, Slot::Primary);
        assert!(s.contains("a_slot=primary\n"), "{s}");
        assert!(s.contains("a_preview_port=''\n"), "{s}");
        assert!(s.contains("a_command='./run; echo $(id)'\n"), "{s}");
        agent.gateway = Some(crate::sot::model::AgentGateway {
            port: 9081,
            preview_port: 18081,
        });
        let s = script(Action::Deploy, &agent, None, &params, false, Slot::Preview);
        assert!(s.contains("a_slot=preview\n"), "{s}");
        assert!(
            s.contains("a_primary_port=8081\na_preview_port=18081\n"),
            "{s}"
        );
    }

    #[test]
    fn a_state_without_a_state_file_is_nothing_deployed() {
        let r = parse(b"@@maestro state version= digest= since= previous= enabled= running=0 pid= killed=0 current= healthy=\n");
        let st = r.state.unwrap();
        assert!(st.version.is_empty() && !st.running);
        assert!(!st.is_running("1.0.0", "x"));
    }
}
