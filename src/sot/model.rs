//! The SoT's typed model: what the rest of maestro reads once validation passed.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::PathBuf;

use serde::Serialize;

/// Free-form variables (node, group, profile vars) as TOML values.
pub type Vars = toml::Table;

/// Settings from `maestro.toml`.
#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    pub name: String,
    pub description: Option<String>,
    /// Connection defaults for nodes that do not set their own.
    pub default_user: String,
    pub default_port: u16,
    /// An extra known_hosts file, relative to the SoT directory.
    pub known_hosts: Option<PathBuf>,
    /// An ssh_config file to resolve nodes through, relative to the SoT directory.
    pub ssh_config: Option<PathBuf>,
    /// The profile nodes use when they name none.
    pub default_profile: Option<String>,
    /// Tag taxonomy: for each governed tag key, its allowed values.
    pub tag_values: BTreeMap<String, Vec<String>>,
    /// Tags every node must carry.
    pub required_tags: Vec<String>,
    /// Directories of profiles, playbooks and hardening baselines, relative to the SoT directory.
    pub profiles_dir: PathBuf,
    pub playbooks_dir: PathBuf,
    pub hardening_dir: PathBuf,
    /// The two-person rule (`[approvals]`).
    pub approvals: ApprovalSettings,
    /// The team's shared run store (`[store] url`, a `postgres://` URL
    /// without a password): what `--db` defaults to for everyone using
    /// this SoT.
    pub store_url: Option<String>,
}

/// `[approvals]` of maestro.toml: which agents' jobs need signed approvals,
/// from how many people other than the requester, valid how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ApprovalSettings {
    pub min_autonomy: Autonomy,
    pub quorum: usize,
    #[serde(serialize_with = "seconds")]
    pub lifetime: std::time::Duration,
}

fn seconds<S: serde::Serializer>(d: &std::time::Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_secs())
}

impl Default for ApprovalSettings {
    /// L4 and above, two people, 24 hours (seed 003's dual control).
    fn default() -> Self {
        ApprovalSettings {
            min_autonomy: Autonomy(4),
            quorum: 2,
            lifetime: std::time::Duration::from_secs(24 * 3600),
        }
    }
}

/// A managed machine.
#[derive(Debug, Clone, Serialize)]
pub struct Node {
    pub name: String,
    pub address: String,
    pub port: u16,
    pub user: String,
    /// Whether `port` / `user` were written on the node itself (they then win
    /// over ssh_config; defaults from maestro.toml do not).
    #[serde(skip)]
    pub port_set: bool,
    #[serde(skip)]
    pub user_set: bool,
    /// Every group the node belongs to: those it names and those that list it, sorted.
    pub groups: Vec<String>,
    pub tags: BTreeMap<String, String>,
    pub vars: Vars,
    pub profile: Option<String>,
    /// The SoT file that defines the node, relative to the SoT directory.
    pub file: PathBuf,
}

#[derive(Debug, Clone, Serialize)]
pub struct Group {
    pub name: String,
    pub description: Option<String>,
    /// Members listed on the group itself (nodes may also name the group).
    pub members: Vec<String>,
    pub vars: Vars,
}

/// Autonomy level of an agent, L0 (suggests only) to L5 (fully autonomous).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Autonomy(pub u8);

/// Written as the SoT spells it (`"L5"`), in `agent show` and in `--json`.
impl Serialize for Autonomy {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl fmt::Display for Autonomy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "L{}", self.0)
    }
}

/// A string that is not an autonomy level.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("autonomy level must be one of L0, L1, L2, L3, L4, L5, not `{0}`")]
pub struct BadAutonomy(pub String);

impl std::str::FromStr for Autonomy {
    type Err = BadAutonomy;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.as_bytes() {
            [b'L', d @ b'0'..=b'5'] => Ok(Autonomy(d - b'0')),
            _ => Err(BadAutonomy(s.to_string())),
        }
    }
}

/// A person of `people.toml`: who may act, in which teams, proven by which
/// SSH keys (OpenSSH public-key lines, checked when the SoT loads).
#[derive(Debug, Clone, Serialize)]
pub struct Person {
    pub name: String,
    pub email: String,
    pub teams: Vec<String>,
    pub keys: Vec<String>,
}

/// A model in the registry (served locally or reached through a provider).
#[derive(Debug, Clone, Serialize)]
pub struct Model {
    pub name: String,
    pub provider: String,
    pub description: Option<String>,
    pub artifact: Option<String>,
    pub sha256: Option<String>,
    /// Jurisdictions the model may serve (empty: any).
    pub jurisdictions: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct AgentVersion {
    pub version: String,
    /// A path (relative to the SoT directory) or an http(s) URL.
    pub artifact: String,
    pub sha256: String,
    /// Environment for this version only, over the agent's own `env`.
    pub env: BTreeMap<String, String>,
}

/// A duration as the SoT writes it: whole numbers with units, `500ms`,
/// `2s`, `5m`, `1h`, `1d`, `1w`, or several of them, `2h30m` (Prometheus and
/// Argo Rollouts write them so). Zero (`0s`) is a duration; callers that need
/// a positive one say so.
pub fn parse_duration(s: &str) -> Option<std::time::Duration> {
    let mut rest = s.trim();
    if rest.is_empty() {
        return None;
    }
    let mut ms: u64 = 0;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let n: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let scale = match &rest[..unit] {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "w" => 604_800_000,
            _ => return None,
        };
        rest = &rest[unit..];
        ms = ms.checked_add(n.checked_mul(scale)?)?;
    }
    Some(std::time::Duration::from_millis(ms))
}

/// How an agent is told it is healthy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthProbe {
    /// GET on the node's loopback at the agent's port; 2xx is healthy.
    Http { path: String },
    /// A command run in the version's directory; exit 0 is healthy.
    Command { command: String },
    /// No probe: the process must stay up.
    Process,
}

/// The registry's health check: a probe, retried until it passes, and then
/// passing for `min_healthy` before a version counts as healthy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HealthCheck {
    pub probe: HealthProbe,
    pub timeout_ms: u64,
    pub interval_ms: u64,
    pub retries: u32,
    pub min_healthy_ms: u64,
}

impl Default for HealthCheck {
    fn default() -> HealthCheck {
        HealthCheck {
            probe: HealthProbe::Process,
            timeout_ms: 2_000,
            interval_ms: 1_000,
            retries: 10,
            min_healthy_ms: 2_000,
        }
    }
}

/// An agent in the registry.
#[derive(Debug, Clone, Serialize)]
pub struct Agent {
    pub name: String,
    pub description: Option<String>,
    pub model: String,
    /// Set only when agents.toml names one.
    pub provider: Option<String>,
    pub autonomy: Autonomy,
    pub owner: Option<String>,
    pub profile: Option<String>,
    /// The version deployed by default.
    pub current: Option<String>,
    pub tags: BTreeMap<String, String>,
    pub versions: Vec<AgentVersion>,
    /// How to run it: a command run in the version's directory.
    pub command: Option<String>,
    /// The port it listens on (on the node's loopback), if any.
    pub port: Option<u16>,
    pub env: BTreeMap<String, String>,
    pub health: HealthCheck,
    /// Versions kept on a node for instant rollback (the running one included).
    pub keep: u32,
    /// The rollout strategy `maestro rollout start` uses (`rollouts.toml`).
    pub rollout: Option<String>,
    /// The node-local gateway in front of the agent's two instances, when
    /// it has one (`gateway = { port, preview_port }`).
    pub gateway: Option<AgentGateway>,
}

/// `gateway = { port = 9081, preview_port = 18081 }`: clients talk to the
/// node's nginx on `loopback:port`; the primary instance listens on the
/// agent's `port` as always, the preview instance (the second slot, for
/// canaries, blue/green and shadows) on `preview_port`. All three differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct AgentGateway {
    pub port: u16,
    pub preview_port: u16,
}

impl Agent {
    pub fn version(&self, v: &str) -> Option<&AgentVersion> {
        self.versions.iter().find(|x| x.version == v)
    }
}

/// An installer profile, as far as the SoT needs to know it.
#[derive(Debug, Clone, Serialize)]
pub struct Profile {
    pub name: String,
    pub description: Option<String>,
    pub playbooks: Vec<String>,
    pub hardening: Option<String>,
    /// `install` ends with an audit of `hardening` and fails below this
    /// fleet compliance (percent).
    pub min_compliance: Option<u8>,
    pub required_tags: Vec<String>,
    pub vars: Vars,
    /// Rules every targeted node's variables must pass before an install.
    pub validate: ProfileRules,
}

/// `[validate]` of a profile: which variables must be absolute paths, valid
/// user/group names, or anything but `root`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ProfileRules {
    pub absolute_paths: Vec<String>,
    pub names: Vec<String>,
    pub not_root: Vec<String>,
}

impl Profile {
    /// What is wrong with `vars` for this profile, one line per problem.
    pub fn check_vars(&self, vars: &Vars) -> Vec<String> {
        let mut problems = Vec::new();
        let get = |k: &str| {
            vars.get(k).map(|v| {
                v.as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| v.to_string())
            })
        };
        for k in &self.validate.absolute_paths {
            match get(k) {
                Some(v) if v.starts_with('/') && !v.contains("..") => {}
                Some(v) => problems.push(format!(
                    "`{k}` must be an absolute path without `..`, not `{v}`"
                )),
                None => problems.push(format!("`{k}` is not set")),
            }
        }
        for k in &self.validate.names {
            match get(k) {
                Some(v)
                    if !v.is_empty()
                        && v.len() <= 32
                        && v.bytes().all(|b| {
                            b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_".contains(&b)
                        })
                        && !v.starts_with('-') => {}
                Some(v) => problems.push(format!(
                    "`{k}` must be a user name (lowercase letters, digits, - and _), not `{v}`"
                )),
                None => problems.push(format!("`{k}` is not set")),
            }
        }
        for k in &self.validate.not_root {
            if get(k).as_deref() == Some("root") {
                problems.push(format!("`{k}` must not be root in profile `{}`", self.name));
            }
        }
        problems
    }
}

/// A validated SoT.
#[derive(Debug, Clone, Serialize)]
pub struct Sot {
    /// The SoT directory as given.
    pub root: PathBuf,
    pub settings: Settings,
    /// Nodes in file order (files in load order, tables in source order).
    pub nodes: Vec<Node>,
    pub groups: BTreeMap<String, Group>,
    pub models: BTreeMap<String, Model>,
    pub agents: BTreeMap<String, Agent>,
    pub profiles: BTreeMap<String, Profile>,
    /// Playbook and hardening baseline names found on disk.
    pub playbooks: Vec<String>,
    pub baselines: Vec<String>,
    /// Engaged kill switches (`killswitch.toml`), in file order.
    pub killswitch: Vec<crate::killswitch::Engaged>,
    /// Freeze windows (`freeze.toml`), in file order.
    pub freeze: Vec<crate::freeze::Window>,
    /// Rollout strategies and gates (`rollouts.toml`).
    pub rollouts: crate::rollout::spec::Definitions,
    /// The people of `people.toml`, by name.
    pub people: BTreeMap<String, Person>,
    /// Reflection checklists (`checklists/*.toml`), by name.
    pub checklists: BTreeMap<String, crate::reflect::Checklist>,
    /// Lessons (`lessons.toml`), by id.
    pub lessons: BTreeMap<String, crate::reflect::Lesson>,
    /// Tokens of the read-only HTTP API (`tokens.toml`), by name; only
    /// their hashes are in the SoT.
    #[serde(skip)]
    pub api_tokens: BTreeMap<String, crate::api::token::ApiToken>,
    /// The Cedar policies of `policies/`, with the entities built from this
    /// SoT; none when the SoT has no `policies/` directory (every job is
    /// then allowed, as before policies existed).
    #[serde(skip)]
    pub policies: Option<std::sync::Arc<crate::policy::Policies>>,
    #[serde(skip)]
    pub(crate) node_index: HashMap<String, usize>,
}

impl Sot {
    /// Build the name index (after construction or any change to `nodes`).
    pub(crate) fn indexed(mut self) -> Self {
        self.node_index = self
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.name.clone(), i))
            .collect();
        self
    }

    pub fn node(&self, name: &str) -> Option<&Node> {
        self.node_index.get(name).map(|&i| &self.nodes[i])
    }
}

#[cfg(test)]
mod tests {
    use super::parse_duration;
    use std::time::Duration;

    #[test]
    fn durations_are_numbers_with_units_one_or_several() {
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration(" 2s "), Some(Duration::from_secs(2)));
        assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(
            parse_duration("1w1d"),
            Some(Duration::from_secs(8 * 86_400))
        );
        assert_eq!(parse_duration("0s"), Some(Duration::ZERO));
        for bad in ["", "5", "m", "5x", "2 hours", "1.5s", "-1s", "s5"] {
            assert_eq!(parse_duration(bad), None, "{bad:?}");
        }
    }
}
