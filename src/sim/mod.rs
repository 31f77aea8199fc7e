//! Fleet simulator: an in-process russh SSH server that listens as thousands
//! of simulated nodes on loopback ports.
//!
//! It exists **only** for scale tests (1,000–10,000 nodes driven from one
//! controller process) and for the demo mode. It is not evidence of how
//! maestro behaves against real SSH servers: the fleet of real `sshd` nodes is
//! the proof for SSH behaviour (authentication, host keys, channel semantics,
//! signals, error paths).
//!
//! Each node has its own TCP port on `bind_ip`, a host key (one shared key or
//! one per node), and a scratch directory. It accepts public-key
//! authentication with a single authorized client key under any user name, and
//! serves `exec` requests by running `sh -c <command>` in its directory with
//! `MAESTRO_SIM_NODE=<name>` and `HOME=<dir>`. Output is streamed to the
//! channel as it is produced; client data goes to the command's stdin; the
//! channel ends like OpenSSH's: EOF, `exit-status` (or `exit-signal`), close.
//! Closing the channel or dropping the connection kills the command's whole
//! process group. `exec true` (or `:`) is answered without spawning a process.
//! At most [`MAX_CHILDREN`] shells run at once in the whole process; further
//! exec requests queue. Shells, pty, subsystems and env requests are refused.
//!
//! [`Simulator::start`] raises RLIMIT_NOFILE (soft to hard; hard too when
//! privileged) and refuses fleets needing more than 3 descriptors per node
//! (listener, server side and in-process client side of a connection) plus
//! 256 spare. [`Simulator::stop_node`] simulates a crash: the listener closes
//! (connection refused) and live connections are shut down at the socket.

mod conn;
mod exec;
pub mod fleet_files;
pub mod sandbox;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::keys::{Algorithm, PrivateKey, PublicKey, ssh_key};
use russh::server;
use russh::{MethodKind, MethodSet};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use conn::ConnSet;
pub use exec::MAX_CHILDREN;
use exec::NodeHandler;

/// File descriptors kept free beyond the per-node budget (the pipes of up
/// to [`MAX_CHILDREN`] running shells, log files, ...).
const FD_RESERVE: u64 = 256;
/// Descriptors per node: its listener, the server side of one connection and,
/// since the controller usually runs in the same process, the client side.
const FDS_PER_NODE: u64 = 3;
/// How long [`Simulator::shutdown`] waits for connections and commands to end.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// What to simulate.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Number of nodes.
    pub nodes: usize,
    /// Address every node listens on; each node gets its own (ephemeral) port.
    pub bind_ip: Ipv4Addr,
    /// The only client key accepted (under any user name).
    pub authorized_key: PublicKey,
    /// Each node gets `scratch_root/<name>/` as its working directory and
    /// `HOME`; created (with the root) on start.
    pub scratch_root: PathBuf,
    /// Nodes are named `format!("{name_prefix}{i:05}")`, `i` from 1.
    pub name_prefix: String,
    /// One host key for all nodes (fast start for 10k nodes) instead of one
    /// ed25519 key per node.
    pub shared_host_key: bool,
    /// How many connections can be open at once, when the controller runs in
    /// another process and bounds them (`maestro exec --forks`). `None`
    /// assumes every node is connected at once by a client in this process.
    pub max_connections: Option<usize>,
    /// Run every command in [`sandbox`]: the host read-only, only the node's
    /// directory and private tmpfs mounts writable (the demo). Off by
    /// default: benchmarks measure the plain `sh -c`.
    pub sandbox: bool,
}

impl SimConfig {
    /// `nodes` nodes on 127.0.0.1 named `sim-00001`…, one host key per node.
    pub fn new(nodes: usize, authorized_key: PublicKey, scratch_root: impl Into<PathBuf>) -> Self {
        SimConfig {
            nodes,
            bind_ip: Ipv4Addr::LOCALHOST,
            authorized_key,
            scratch_root: scratch_root.into(),
            name_prefix: "sim-".to_string(),
            shared_host_key: false,
            max_connections: None,
            sandbox: false,
        }
    }
}

/// One simulated node.
#[derive(Debug, Clone)]
pub struct SimNode {
    pub name: String,
    pub addr: SocketAddr,
    pub host_key: PublicKey,
    /// Working directory and `HOME` of the node's commands (canonical path).
    pub dir: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error(
        "simulating {nodes} nodes needs about {needed} file descriptors \
         (a listener per node, the open connections, {FD_RESERVE} spare) but RLIMIT_NOFILE is {limit} \
         (already raised as far as allowed); raise the hard limit \
         (ulimit -Hn / LimitNOFILE=) or simulate fewer nodes"
    )]
    TooManyNodes {
        nodes: usize,
        needed: u64,
        limit: u64,
    },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("{node}: setting up the sandbox: {source}")]
    Sandbox {
        node: String,
        #[source]
        source: io::Error,
    },
    #[error("generating a host key: {0}")]
    HostKey(#[from] ssh_key::Error),
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> SimError {
    move |source| SimError::Io {
        what: what.into(),
        source,
    }
}

/// Fleet-wide counters, shared with every connection.
#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) open_connections: AtomicUsize,
    pub(crate) open_sessions: AtomicUsize,
    pub(crate) max_open_sessions: AtomicUsize,
    pub(crate) running_commands: AtomicUsize,
}

/// What every connection of the simulator needs.
pub(crate) struct SimShared {
    pub(crate) authorized_key: PublicKey,
    pub(crate) counters: Arc<Counters>,
}

/// What the connections of one node need.
pub(crate) struct NodeShared {
    pub(crate) name: String,
    pub(crate) dir: PathBuf,
    pub(crate) exec_count: AtomicU64,
    /// Set when commands run sandboxed (`SimConfig::sandbox`).
    pub(crate) sandbox: Option<Arc<sandbox::Sandbox>>,
}

/// The parts of a node the simulator itself keeps.
struct NodeRuntime {
    shared: Arc<NodeShared>,
    conns: Arc<ConnSet>,
    /// The accept loop, which owns the listener; `None` once stopped.
    accept: Mutex<Option<JoinHandle<()>>>,
    /// `[ip]:port ssh-ed25519 AAAA…`
    known_host: String,
}

impl NodeRuntime {
    fn take_accept(&self) -> Option<JoinHandle<()>> {
        self.accept.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

/// A running simulated fleet. Dropping it stops every node without waiting;
/// [`Simulator::shutdown`] also waits for connections and commands to end.
pub struct Simulator {
    nodes: Vec<SimNode>,
    runtime: Vec<NodeRuntime>,
    index: HashMap<String, usize>,
    counters: Arc<Counters>,
}

impl Simulator {
    /// Creates the scratch directories, binds one listener per node and
    /// starts serving. Must be called within a tokio runtime.
    pub async fn start(cfg: SimConfig) -> Result<Simulator, SimError> {
        let needed = match cfg.max_connections {
            // Listeners, plus both sides only of the connections that can be open.
            Some(c) => (cfg.nodes as u64).saturating_add(2 * c as u64),
            None => (cfg.nodes as u64).saturating_mul(FDS_PER_NODE),
        }
        .saturating_add(FD_RESERVE);
        let limit = raise_nofile_limit(needed).map_err(io_err("reading RLIMIT_NOFILE"))?;
        if needed > limit {
            return Err(SimError::TooManyNodes {
                nodes: cfg.nodes,
                needed,
                limit,
            });
        }

        let names: Vec<String> = (1..=cfg.nodes)
            .map(|i| format!("{}{i:05}", cfg.name_prefix))
            .collect();
        let dirs = make_dirs(cfg.scratch_root.clone(), names.clone()).await?;

        let mut rng = rand::rng();
        let shared_key = if cfg.shared_host_key {
            Some(PrivateKey::random(&mut rng, Algorithm::Ed25519)?)
        } else {
            None
        };
        let shared_config = shared_key.map(server_config);

        let counters = Arc::new(Counters::default());
        let sim_shared = Arc::new(SimShared {
            authorized_key: cfg.authorized_key.clone(),
            counters: Arc::clone(&counters),
        });
        // Built up node by node: on error, dropping it stops what was started.
        let mut sim = Simulator {
            nodes: Vec::with_capacity(cfg.nodes),
            runtime: Vec::with_capacity(cfg.nodes),
            index: HashMap::with_capacity(cfg.nodes),
            counters,
        };
        for (name, dir) in names.into_iter().zip(dirs) {
            let config = match &shared_config {
                Some(config) => Arc::clone(config),
                None => server_config(PrivateKey::random(&mut rng, Algorithm::Ed25519)?),
            };
            let host_key = config.keys[0].public_key().clone();
            let listener = TcpListener::bind(SocketAddr::new(IpAddr::V4(cfg.bind_ip), 0))
                .await
                .map_err(io_err(format!("{name}: binding {}", cfg.bind_ip)))?;
            let addr = listener
                .local_addr()
                .map_err(io_err(format!("{name}: reading the listener's address")))?;
            let known_host = format!(
                "[{}]:{} {}",
                addr.ip(),
                addr.port(),
                openssh_key(&host_key)?
            );

            let sandbox = if cfg.sandbox {
                let sandbox = sandbox::Sandbox::new(&dir, &name)
                    .and_then(|s| s.prepare_dir().map(|()| s))
                    .map_err(|source| SimError::Sandbox {
                        node: name.clone(),
                        source,
                    })?;
                Some(Arc::new(sandbox))
            } else {
                None
            };
            let shared = Arc::new(NodeShared {
                name: name.clone(),
                dir: dir.clone(),
                exec_count: AtomicU64::new(0),
                sandbox,
            });
            let conns = Arc::new(ConnSet::default());
            let accept = tokio::spawn(accept_loop(
                listener,
                config,
                Arc::clone(&shared),
                Arc::clone(&conns),
                Arc::clone(&sim_shared),
            ));
            sim.index.insert(name.clone(), sim.nodes.len());
            sim.nodes.push(SimNode {
                name,
                addr,
                host_key,
                dir,
            });
            sim.runtime.push(NodeRuntime {
                shared,
                conns,
                accept: Mutex::new(Some(accept)),
                known_host,
            });
        }
        Ok(sim)
    }

    /// All nodes, in name order.
    pub fn nodes(&self) -> &[SimNode] {
        &self.nodes
    }

    /// known_hosts lines `[127.0.0.1]:PORT ssh-ed25519 AAAA…`, one per node
    /// (stopped ones included), each ending in a newline.
    pub fn known_hosts(&self) -> String {
        let mut out = String::with_capacity(self.runtime.len() * 100);
        for rt in &self.runtime {
            out.push_str(&rt.known_host);
            out.push('\n');
        }
        out
    }

    /// Stops one node as if it crashed: closes its listener (new connections
    /// are refused) and cuts its live connections (their commands are killed).
    /// Returns false if there is no such node or it was already stopped.
    pub async fn stop_node(&self, name: &str) -> bool {
        let Some(&i) = self.index.get(name) else {
            return false;
        };
        let rt = &self.runtime[i];
        let Some(accept) = rt.take_accept() else {
            return false;
        };
        accept.abort();
        // Once the task is gone its listener is closed.
        let _ = accept.await;
        rt.conns.stop();
        true
    }

    /// Number of exec requests the node has served (0 for an unknown node).
    pub fn exec_count(&self, name: &str) -> u64 {
        self.index.get(name).map_or(0, |&i| {
            self.runtime[i].shared.exec_count.load(Ordering::Relaxed)
        })
    }

    /// Session channels open right now across the fleet (opened and not yet
    /// closed by both sides, nor ended with their connection).
    pub fn open_sessions(&self) -> usize {
        self.counters.open_sessions.load(Ordering::Relaxed)
    }

    /// High-water mark of [`Simulator::open_sessions`] since start.
    pub fn max_open_sessions(&self) -> usize {
        self.counters.max_open_sessions.load(Ordering::Relaxed)
    }

    /// TCP connections open right now across the fleet.
    pub fn open_connections(&self) -> usize {
        self.counters.open_connections.load(Ordering::Relaxed)
    }

    /// `sh` children running right now (at most [`MAX_CHILDREN`]).
    pub fn running_commands(&self) -> usize {
        self.counters.running_commands.load(Ordering::Relaxed)
    }

    /// Stops every node, then waits (up to a few seconds) for connections
    /// to close and commands to be killed and reaped.
    pub async fn shutdown(self) {
        let tasks: Vec<JoinHandle<()>> = self
            .runtime
            .iter()
            .filter_map(NodeRuntime::take_accept)
            .collect();
        for task in &tasks {
            task.abort();
        }
        for task in tasks {
            let _ = task.await;
        }
        for rt in &self.runtime {
            rt.conns.stop();
        }
        let deadline = tokio::time::Instant::now() + SHUTDOWN_GRACE;
        while (self.open_connections() > 0 || self.running_commands() > 0)
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        for rt in &self.runtime {
            if let Some(task) = rt.take_accept() {
                task.abort();
            }
            rt.conns.stop();
        }
    }
}

fn server_config(key: PrivateKey) -> Arc<server::Config> {
    Arc::new(server::Config {
        keys: vec![key],
        methods: MethodSet::from(&[MethodKind::PublicKey][..]),
        auth_rejection_time: Duration::from_millis(200),
        auth_rejection_time_initial: Some(Duration::ZERO),
        nodelay: true,
        // Like sshd: idle connections stay until the client or a stop ends them.
        inactivity_timeout: None,
        ..Default::default()
    })
}

/// `ssh-ed25519 AAAA…` without a comment.
fn openssh_key(key: &PublicKey) -> Result<String, SimError> {
    Ok(PublicKey::new(key.key_data().clone(), "").to_openssh()?)
}

async fn accept_loop(
    listener: TcpListener,
    config: Arc<server::Config>,
    node: Arc<NodeShared>,
    conns: Arc<ConnSet>,
    sim: Arc<SimShared>,
) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(_) => {
                // Out of descriptors or similar: back off instead of spinning.
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        if config.nodelay {
            let _ = stream.set_nodelay(true);
        }
        let Some(stream) = conns.track(stream, &sim.counters) else {
            return;
        };
        let handler = NodeHandler::new(Arc::clone(&node), Arc::clone(&sim));
        let config = Arc::clone(&config);
        tokio::spawn(async move {
            // Version exchange here; the session then runs in its own task
            // (dropping `RunningSession` detaches it, it does not stop it).
            let _ = server::run_stream(config, stream, handler).await;
        });
    }
}

/// Creates `root` and `root/<name>` for every name; returns the node
/// directories under the canonical root (so they match what `pwd` prints).
async fn make_dirs(root: PathBuf, names: Vec<String>) -> Result<Vec<PathBuf>, SimError> {
    tokio::task::spawn_blocking(move || {
        std::fs::create_dir_all(&root).map_err(io_err(format!("creating {}", root.display())))?;
        let root = root
            .canonicalize()
            .map_err(io_err(format!("resolving {}", root.display())))?;
        names
            .iter()
            .map(|name| {
                let dir = root.join(name);
                create_dir(&dir).map(|()| dir)
            })
            .collect()
    })
    .await
    .map_err(|e| SimError::Io {
        what: "creating the scratch directories".into(),
        source: io::Error::other(e),
    })?
}

fn create_dir(dir: &Path) -> Result<(), SimError> {
    match std::fs::create_dir(dir) {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => {
            Err(io_err(format!("creating {}", dir.display()))(e))
        }
        _ => Ok(()),
    }
}

/// Raises the soft RLIMIT_NOFILE to the hard limit, and both limits
/// if that is below `needed` and the process may (CAP_SYS_RESOURCE, e.g. root
/// in a container). Returns the soft limit in force.
fn raise_nofile_limit(needed: u64) -> io::Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid, writable rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // NOFILE can never exceed nr_open, whatever the hard limit says.
    let nr_open = std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|s| s.trim().parse::<libc::rlim_t>().ok())
        .unwrap_or(1 << 20);
    let soft_target = lim.rlim_max.min(nr_open);
    if lim.rlim_cur < soft_target && set_nofile(soft_target, lim.rlim_max) {
        lim.rlim_cur = soft_target;
    }
    // Fails (and changes nothing) without privilege.
    if lim.rlim_cur < needed && needed <= nr_open && set_nofile(needed, needed) {
        lim.rlim_cur = needed;
    }
    Ok(lim.rlim_cur)
}

fn set_nofile(cur: libc::rlim_t, max: libc::rlim_t) -> bool {
    let lim = libc::rlimit {
        rlim_cur: cur,
        rlim_max: max,
    };
    // SAFETY: `lim` is a valid rlimit.
    unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) == 0 }
}
