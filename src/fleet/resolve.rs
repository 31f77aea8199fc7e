//! From SoT nodes to connection specs: apply ssh_config, pick identities,
//! known_hosts files and the host-key policy, keepalives, and build
//! ProxyJump chains or ProxyCommand lines.
//!
//! Precedence for a node's endpoint: what the node itself sets in the SoT >
//! ssh_config (looked up by the node's address, as `ssh ADDRESS` would) >
//! `[connection]` defaults in maestro.toml > OpenSSH defaults.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::known_hosts::KnownHosts;
use super::ssh::{ConnectSpec, Endpoint, HostKeyPolicy, HostKeys, Keepalive};
use super::ssh_config::{
    HostConfig, Preset, ProxyCommandError, ProxyTarget, SshConfig, StrictHostKeyChecking,
    expand_proxy_command,
};
use crate::sot::Sot;

/// Connection options from the command line.
#[derive(Debug, Clone, Default)]
pub struct ConnectOptions {
    /// `-F FILE`: the ssh_config to use instead of the SoT's or ~/.ssh/config.
    pub ssh_config: Option<PathBuf>,
    /// `--known-hosts FILE` (repeatable): extra known_hosts files.
    pub known_hosts: Vec<PathBuf>,
    /// `--accept-new`: trust unknown host keys on first use and record them.
    pub accept_new: bool,
    /// `-i FILE` (repeatable): identity files tried before ssh_config's.
    pub identities: Vec<PathBuf>,
    /// `-u USER`: connect as this user on every node.
    pub user: Option<String>,
    pub connect_timeout: Option<Duration>,
}

#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("reading ssh config {}: {message}", path.display())]
    SshConfig { path: PathBuf, message: String },
    #[error("reading known_hosts: {0}")]
    KnownHosts(String),
    #[error("node {node}: bad ProxyJump `{value}`: {why}")]
    ProxyJump {
        node: String,
        value: String,
        why: String,
    },
    #[error("node {node}: bad ProxyCommand `{command}`: {source}")]
    ProxyCommand {
        node: String,
        command: String,
        source: ProxyCommandError,
    },
    /// An identity file named on the command line (`-i`) is missing or
    /// unreadable: nothing is tried without the key the operator asked for.
    #[error("identity file {} not accessible: {source}", path.display())]
    IdentityFile {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What resolution noticed and the operator should hear about.
pub type Warnings = Vec<String>;

pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// ServerAliveInterval when ssh_config sets none (OpenSSH's default, 0,
/// would wait on a frozen node forever).
pub const DEFAULT_SERVER_ALIVE_INTERVAL: Duration = Duration::from_secs(15);
/// ServerAliveCountMax when ssh_config sets none (OpenSSH's default).
pub const DEFAULT_SERVER_ALIVE_COUNT_MAX: usize = 3;

struct Resolver<'a> {
    sot: &'a Sot,
    opts: &'a ConnectOptions,
    config: SshConfig,
    home: PathBuf,
    local_user: String,
    stores: HashMap<(Vec<PathBuf>, HostKeyPolicy), Arc<HostKeys>>,
    warnings: Warnings,
}

/// Build a [`ConnectSpec`] for each of `nodes` (indices into `sot.nodes`).
pub fn connect_specs(
    sot: &Sot,
    nodes: &[usize],
    opts: &ConnectOptions,
) -> Result<(Vec<ConnectSpec>, Warnings), ResolveError> {
    // As ssh warns before connecting, but an error: the operator asked for
    // this key, and falling back to others would hide the typo.
    for path in &opts.identities {
        if let Err(source) = std::fs::File::open(path) {
            return Err(ResolveError::IdentityFile {
                path: path.clone(),
                source,
            });
        }
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/root"));
    let local_user = std::env::var("USER").unwrap_or_else(|_| "root".into());
    let config_path = opts
        .ssh_config
        .clone()
        .or_else(|| sot.settings.ssh_config.as_ref().map(|p| sot.root.join(p)))
        .or_else(|| Some(home.join(".ssh/config")).filter(|p| p.is_file()));
    let config = match &config_path {
        Some(p) => SshConfig::load(p, &home).map_err(|e| ResolveError::SshConfig {
            path: p.clone(),
            message: e.to_string(),
        })?,
        None => SshConfig::parse_str("", Path::new("(no ssh_config)"), &home).map_err(|e| {
            ResolveError::SshConfig {
                path: PathBuf::new(),
                message: e.to_string(),
            }
        })?,
    };
    let mut warnings: Warnings = config.warnings().to_vec();
    if opts.accept_new {
        warnings.push(
            "--accept-new: unknown host keys will be trusted on first use and recorded".into(),
        );
    }
    let mut r = Resolver {
        sot,
        opts,
        config,
        home,
        local_user,
        stores: HashMap::new(),
        warnings,
    };
    let mut specs = Vec::with_capacity(nodes.len());
    for &i in nodes {
        specs.push(r.node_spec(i)?);
    }
    Ok((specs, r.warnings))
}

impl Resolver<'_> {
    fn node_spec(&mut self, index: usize) -> Result<ConnectSpec, ResolveError> {
        let node = &self.sot.nodes[index];
        // What the command line and the node fix is fixed before ssh_config
        // is read, like `ssh -l USER -p PORT`: `Match user` and `%r` see it.
        let preset_user = self
            .opts
            .user
            .as_deref()
            .or_else(|| node.user_set.then_some(node.user.as_str()));
        let preset = Preset {
            user: preset_user,
            port: node.port_set.then_some(node.port),
        };
        let hc = self
            .config
            .resolve_with(&node.address, &self.local_user, preset);
        let host = hc.hostname.clone().unwrap_or_else(|| node.address.clone());
        let port = if node.port_set {
            node.port
        } else {
            hc.port.unwrap_or(node.port)
        };
        let user = self
            .opts
            .user
            .clone()
            .or_else(|| node.user_set.then(|| node.user.clone()))
            .or_else(|| hc.user.clone())
            .unwrap_or_else(|| node.user.clone());
        let endpoint = Endpoint { host, port, user };
        let address = node.address.clone();
        let mut spec = self.spec_for(&node.name, endpoint, &hc, &address)?;
        // ssh_config resolution already let only the first of the two count.
        if let Some(jump) = hc.proxy_jump.clone() {
            spec.jump = self.jump_chain(&node.name, &jump)?;
        }
        Ok(spec)
    }

    /// `original_host` is the name ssh_config was looked up with (`%n`).
    fn spec_for(
        &mut self,
        name: &str,
        endpoint: Endpoint,
        hc: &HostConfig,
        original_host: &str,
    ) -> Result<ConnectSpec, ResolveError> {
        let mut identity_files = self.opts.identities.clone();
        identity_files.extend(hc.identity_files.iter().cloned());
        if identity_files.is_empty() {
            for default in ["id_ed25519", "id_ecdsa", "id_rsa"] {
                identity_files.push(self.home.join(".ssh").join(default));
            }
        }
        let host_keys = self.host_keys(hc)?;
        let connect_timeout = self
            .opts
            .connect_timeout
            .or(hc.connect_timeout.map(Duration::from_secs))
            .unwrap_or(DEFAULT_CONNECT_TIMEOUT);
        let proxy_command = match &hc.proxy_command {
            Some(command) => {
                let target = ProxyTarget {
                    host: &endpoint.host,
                    port: endpoint.port,
                    user: &endpoint.user,
                    original_host,
                };
                Some(expand_proxy_command(command, &target).map_err(|source| {
                    ResolveError::ProxyCommand {
                        node: name.to_string(),
                        command: command.clone(),
                        source,
                    }
                })?)
            }
            None => None,
        };
        Ok(ConnectSpec {
            node: name.to_string(),
            endpoint,
            identity_files,
            identities_only: hc.identities_only.unwrap_or(false),
            host_keys,
            jump: None,
            proxy_command,
            connect_timeout,
            keepalive: keepalive(hc),
        })
    }

    /// The known_hosts store for this host's files and policy (shared by every
    /// node with the same ones).
    fn host_keys(&mut self, hc: &HostConfig) -> Result<Arc<HostKeys>, ResolveError> {
        let mut files: Vec<PathBuf> = if hc.user_known_hosts_files.is_empty() {
            vec![self.home.join(".ssh/known_hosts")]
        } else {
            hc.user_known_hosts_files.clone()
        };
        if let Some(k) = &self.sot.settings.known_hosts {
            files.push(self.sot.root.join(k));
        }
        files.extend(self.opts.known_hosts.iter().cloned());
        let policy = match (self.opts.accept_new, hc.strict_host_key_checking) {
            (true, _) => HostKeyPolicy::AcceptNew,
            (false, Some(StrictHostKeyChecking::AcceptNew)) => HostKeyPolicy::AcceptNew,
            (false, Some(StrictHostKeyChecking::No)) => {
                let w = "ssh_config sets StrictHostKeyChecking no: maestro treats it as accept-new and still refuses changed keys".to_string();
                if !self.warnings.contains(&w) {
                    self.warnings.push(w);
                }
                HostKeyPolicy::AcceptNew
            }
            _ => HostKeyPolicy::Strict,
        };
        let key = (files.clone(), policy);
        if let Some(s) = self.stores.get(&key) {
            return Ok(s.clone());
        }
        let known =
            KnownHosts::load(&files).map_err(|e| ResolveError::KnownHosts(e.to_string()))?;
        for w in known.warnings() {
            self.warnings.push(format!("known_hosts: {w}"));
        }
        let store = Arc::new(HostKeys::new(known, policy, files[0].clone()));
        self.stores.insert(key, store.clone());
        Ok(store)
    }

    /// `ProxyJump a,b` → connect to a, through it to b, through b to the node.
    /// A hop may name a SoT node (its address, port and user are used) or an
    /// ssh_config host, or be `[user@]host[:port]`.
    fn jump_chain(
        &mut self,
        node: &str,
        value: &str,
    ) -> Result<Option<Box<ConnectSpec>>, ResolveError> {
        let mut previous: Option<Box<ConnectSpec>> = None;
        for hop in value.split(',').map(str::trim).filter(|h| !h.is_empty()) {
            let bad = |why: &str| ResolveError::ProxyJump {
                node: node.into(),
                value: value.into(),
                why: why.into(),
            };
            let hop = hop.strip_prefix("ssh://").unwrap_or(hop);
            let (user, rest) = match hop.rsplit_once('@') {
                Some((u, r)) => (Some(u.to_string()), r),
                None => (None, hop),
            };
            let (name, port) = match rest.rsplit_once(':') {
                Some((h, p)) if !h.contains(':') => (
                    h,
                    Some(p.parse::<u16>().map_err(|_| bad("port is not a number"))?),
                ),
                _ => (rest, None),
            };
            if name.is_empty() {
                return Err(bad("empty host"));
            }
            let sot_node = self.sot.node(name);
            let alias = sot_node.map_or(name, |n| n.address.as_str()).to_owned();
            let user = user.or_else(|| sot_node.filter(|n| n.user_set).map(|n| n.user.clone()));
            let port = port.or(sot_node.filter(|n| n.port_set).map(|n| n.port));
            let preset = Preset {
                user: user.as_deref(),
                port,
            };
            let hc = self.config.resolve_with(&alias, &self.local_user, preset);
            let endpoint = Endpoint {
                host: hc.hostname.clone().unwrap_or_else(|| alias.clone()),
                port: port.or(hc.port).unwrap_or(22),
                user: user
                    .or_else(|| hc.user.clone())
                    .or_else(|| sot_node.map(|n| n.user.clone()))
                    .unwrap_or_else(|| self.local_user.clone()),
            };
            let mut spec = self.spec_for(&format!("{node} via {name}"), endpoint, &hc, &alias)?;
            // The first hop may need its own ProxyCommand (a bastion behind
            // a session manager); later hops are reached through the chain.
            if previous.is_some() {
                spec.proxy_command = None;
                spec.jump = previous.take();
            }
            previous = Some(Box::new(spec));
        }
        Ok(previous)
    }
}

/// ServerAliveInterval and ServerAliveCountMax, with maestro's defaults.
fn keepalive(hc: &HostConfig) -> Keepalive {
    let interval = hc
        .server_alive_interval
        .map_or(DEFAULT_SERVER_ALIVE_INTERVAL, Duration::from_secs);
    let max = hc
        .server_alive_count_max
        .map_or(DEFAULT_SERVER_ALIVE_COUNT_MAX, |m| m as usize);
    Keepalive {
        interval: (!interval.is_zero()).then_some(interval),
        // ssh's 0 means "give up at the first silence, without probing",
        // which russh cannot do (its 0 means never): one probe is the
        // closest.
        max: max.max(1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keepalive_for(config: &str) -> Keepalive {
        let config = SshConfig::parse_str(config, Path::new("config"), Path::new("/home/a"))
            .expect("config parses");
        keepalive(&config.resolve("node", "me"))
    }

    #[test]
    fn keepalives_follow_ssh_config_with_maestros_defaults() {
        let secs = |s| Some(Duration::from_secs(s));
        assert_eq!(
            keepalive_for(""),
            Keepalive {
                interval: secs(15),
                max: 3
            },
            "a frozen node is still given up when ssh_config says nothing"
        );
        assert_eq!(
            keepalive_for("ServerAliveInterval 5\nServerAliveCountMax 2\n"),
            Keepalive {
                interval: secs(5),
                max: 2
            }
        );
        assert_eq!(
            keepalive_for("ServerAliveCountMax 7\n"),
            Keepalive {
                interval: secs(15),
                max: 7
            }
        );
        assert_eq!(keepalive_for("ServerAliveInterval 0\n").interval, None);
        assert_eq!(keepalive_for("ServerAliveCountMax 0\n").max, 1);
    }
}
