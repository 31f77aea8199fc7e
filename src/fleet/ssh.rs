//! One SSH connection to one node, on russh: host-key verification against
//! known_hosts, authentication by ssh-agent and key files, ProxyJump and
//! ProxyCommand, keepalives, and command execution with bounded output,
//! timeouts and cancellation.
//!
//! Never prompts: an unknown host key, a changed key or an encrypted key
//! without an agent is an error that says what to do.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use russh::client::{self, Handle};
use russh::keys::{self, HashAlg, PrivateKey, PrivateKeyWithHashAlg, PublicKeyOrCertificate};
use russh::{ChannelMsg, Disconnect};

use super::cancel::Cancel;
use super::event::{Captured, Event, NodeStatus, Stream};
use super::known_hosts::{HostKey, KnownHosts, Verdict};
use super::proxy::Proxy;
use super::quote::sh_quote;
use crate::bus::EventSink;

/// Where to connect: the network endpoint after ssh_config resolution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
    pub user: String,
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}:{}", self.user, self.host, self.port)
    }
}

/// What to do with a host whose key is not in known_hosts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HostKeyPolicy {
    /// Refuse it (the default): the operator verifies the fingerprint first.
    Strict,
    /// Trust on first use and record it (`--accept-new`). A changed key is still refused.
    AcceptNew,
}

/// Known host keys for a set of files, plus what this process learned.
pub struct HostKeys {
    known: KnownHosts,
    policy: HostKeyPolicy,
    /// Where `AcceptNew` records new keys.
    record_to: PathBuf,
    learned: Mutex<Vec<(String, u16, HostKey)>>,
}

impl HostKeys {
    pub fn new(known: KnownHosts, policy: HostKeyPolicy, record_to: PathBuf) -> HostKeys {
        HostKeys {
            known,
            policy,
            record_to,
            learned: Mutex::new(Vec::new()),
        }
    }
}

/// Everything needed to open a session to one node.
#[derive(Clone)]
pub struct ConnectSpec {
    pub node: String,
    pub endpoint: Endpoint,
    pub identity_files: Vec<PathBuf>,
    /// Only use the identity files (and agent keys matching them).
    pub identities_only: bool,
    pub host_keys: Arc<HostKeys>,
    /// The hop to tunnel through (ProxyJump); it may have its own hop.
    pub jump: Option<Box<ConnectSpec>>,
    /// A local command to carry the connection (ProxyCommand, tokens
    /// expanded); it excludes `jump`.
    pub proxy_command: Option<String>,
    pub connect_timeout: Duration,
    pub keepalive: Keepalive,
}

/// Detecting a peer that stopped answering without closing the connection
/// (ssh_config's ServerAliveInterval and ServerAliveCountMax): after
/// `interval` of silence a probe is sent, and after `max` unanswered probes
/// the connection is dropped, so a frozen node is given up within about
/// `interval * (max + 1)`, as with OpenSSH.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Keepalive {
    /// None: no probes, a frozen peer is waited for forever (interval 0).
    pub interval: Option<Duration>,
    pub max: usize,
}

impl Default for Keepalive {
    /// What maestro uses when ssh_config says nothing: 15 s, 3 probes.
    fn default() -> Self {
        Keepalive {
            interval: Some(Duration::from_secs(15)),
            max: 3,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("cannot connect to {endpoint}: {source}")]
    Network {
        endpoint: String,
        source: std::io::Error,
    },
    #[error("no answer from {0} within {1:?} (connect timeout)")]
    Timeout(String, Duration),
    #[error(
        "unknown host key for {node} ({host}): {algorithm} {fingerprint}\n  maestro never trusts a key it has not been told to trust. Check this fingerprint against the node itself, out of band (on its console: ssh-keygen -lf /etc/ssh/{key_file}). Only if it matches, run again with --accept-new to record it, or add the key you checked to {file}:\n    {entry}"
    )]
    HostKeyUnknown {
        node: String,
        host: String,
        algorithm: String,
        fingerprint: String,
        /// The node's public key file that holds this key, by convention.
        key_file: String,
        /// The known_hosts line for exactly the key that was presented.
        entry: String,
        file: String,
    },
    #[error(
        "WARNING: the host key of {node} ({host}) has CHANGED: it now presents {fingerprint}, but {file}:{line} records {known}.\n  Someone may be intercepting the connection, or the node was reinstalled. Refusing to connect. If the change is expected, remove the old key: ssh-keygen -R {lookup} -f {file}"
    )]
    HostKeyChanged {
        node: String,
        host: String,
        lookup: String,
        fingerprint: String,
        known: String,
        file: String,
        line: usize,
    },
    #[error(
        "the host key of {node} ({host}) is marked @revoked in {file}:{line}; refusing to connect"
    )]
    HostKeyRevoked {
        node: String,
        host: String,
        file: String,
        line: usize,
    },
    #[error("permission denied for {endpoint}: {detail}")]
    Auth { endpoint: String, detail: String },
    #[error("via jump host {via}: {source}")]
    Jump {
        via: String,
        source: Box<ConnectError>,
    },
    #[error("ssh to {endpoint}: {source}")]
    Ssh {
        endpoint: String,
        source: russh::Error,
    },
    #[error("cannot start the ProxyCommand for {endpoint} (`{command}`): {source}")]
    ProxySpawn {
        endpoint: String,
        command: String,
        source: std::io::Error,
    },
    #[error("cannot connect to {endpoint} through ProxyCommand `{command}`: {detail}")]
    ProxyCommand {
        endpoint: String,
        command: String,
        /// How the command ended and the end of its stderr.
        detail: String,
    },
}

/// A connected, authenticated session. Keep it for all of a node's work in a run.
pub struct Session {
    handle: Handle<Verifier>,
    node: String,
    /// Keeps the tunnel alive while this session uses it.
    _jump: Option<Box<Session>>,
    /// The ProxyCommand carrying this session; killed when it is dropped.
    proxy: Option<Proxy>,
}

struct Verifier {
    node: String,
    host: String,
    port: u16,
    keys: Arc<HostKeys>,
    events: EventSink,
    problem: Arc<Mutex<Option<ConnectError>>>,
}

impl client::Handler for Verifier {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let PublicKeyOrCertificate::PublicKey { key, .. } = key else {
            *self.problem.lock().unwrap() = Some(ConnectError::Auth {
                endpoint: self.host.clone(),
                detail:
                    "the server presented a host certificate; maestro verifies plain host keys only"
                        .into(),
            });
            return Ok(false);
        };
        let presented = match key
            .to_openssh()
            .ok()
            .as_deref()
            .and_then(HostKey::parse_openssh)
        {
            Some(k) => k,
            None => return Ok(false),
        };
        let fingerprint = presented.fingerprint();
        let learned = self
            .keys
            .learned
            .lock()
            .unwrap()
            .iter()
            .any(|(h, p, k)| h == &self.host && *p == self.port && k == &presented);
        if learned {
            return Ok(true);
        }
        let problem = match self.keys.known.verify(&self.host, self.port, &presented) {
            Verdict::Trusted { .. } => return Ok(true),
            Verdict::Changed { file, line, known } => ConnectError::HostKeyChanged {
                node: self.node.clone(),
                host: self.host.clone(),
                lookup: lookup_name(&self.host, self.port),
                fingerprint,
                known: known.fingerprint(),
                file: file.display().to_string(),
                line,
            },
            Verdict::Revoked { file, line } => ConnectError::HostKeyRevoked {
                node: self.node.clone(),
                host: self.host.clone(),
                file: file.display().to_string(),
                line,
            },
            Verdict::Unknown => match self.keys.policy {
                HostKeyPolicy::Strict => ConnectError::HostKeyUnknown {
                    node: self.node.clone(),
                    host: self.host.clone(),
                    algorithm: presented.algorithm.clone(),
                    fingerprint,
                    key_file: host_key_file(&presented.algorithm),
                    entry: KnownHosts::entry_line(&self.host, self.port, &presented),
                    file: self.keys.record_to.display().to_string(),
                },
                HostKeyPolicy::AcceptNew => {
                    // One writer at a time: parallel first connections must not
                    // interleave their lines in the file.
                    static WRITE: Mutex<()> = Mutex::new(());
                    let _guard = WRITE.lock().unwrap();
                    let file = &self.keys.record_to;
                    if let Err(e) = KnownHosts::append(file, &self.host, self.port, &presented) {
                        self.events.send(Event::Warning {
                            node: Some(self.node.clone()),
                            message: format!(
                                "could not record the host key in {}: {e}",
                                file.display()
                            ),
                        });
                        return Ok(false);
                    }
                    self.keys.learned.lock().unwrap().push((
                        self.host.clone(),
                        self.port,
                        presented,
                    ));
                    self.events.send(Event::HostKeyLearned {
                        node: self.node.clone(),
                        host: lookup_name(&self.host, self.port),
                        fingerprint,
                        file: file.display().to_string(),
                    });
                    return Ok(true);
                }
            },
        };
        *self.problem.lock().unwrap() = Some(problem);
        Ok(false)
    }
}

/// The name known_hosts uses for a host: `host`, or `[host]:port` off port 22.
fn lookup_name(host: &str, port: u16) -> String {
    if port == 22 {
        host.to_string()
    } else {
        format!("[{host}]:{port}")
    }
}

/// Where sshd keeps a host key of this type, by the usual convention.
fn host_key_file(algorithm: &str) -> String {
    let kind = match algorithm {
        "ssh-ed25519" => "ed25519",
        a if a.starts_with("ecdsa-") => "ecdsa",
        "ssh-rsa" | "rsa-sha2-256" | "rsa-sha2-512" => "rsa",
        _ => "*",
    };
    format!("ssh_host_{kind}_key.pub")
}

/// One client config per keepalive setting, shared by every connection
/// that uses it.
fn client_config(keepalive: Keepalive) -> Arc<client::Config> {
    static CONFIGS: OnceLock<Mutex<HashMap<Keepalive, Arc<client::Config>>>> = OnceLock::new();
    let mut configs = CONFIGS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    configs
        .entry(keepalive)
        .or_insert_with(|| {
            Arc::new(client::Config {
                // Detect a dead peer mid-command even when it never closes the socket.
                keepalive_interval: keepalive.interval,
                keepalive_max: keepalive.max,
                nodelay: true,
                ..Default::default()
            })
        })
        .clone()
}

impl Session {
    /// Connect, verify the host key, authenticate; all within the connect timeout.
    pub async fn connect(spec: &ConnectSpec, events: &EventSink) -> Result<Session, ConnectError> {
        let what = spec.endpoint.to_string();
        match tokio::time::timeout(spec.connect_timeout, Self::connect_inner(spec, events)).await {
            Ok(r) => r,
            Err(_) => Err(ConnectError::Timeout(what, spec.connect_timeout)),
        }
    }

    async fn connect_inner(
        spec: &ConnectSpec,
        events: &EventSink,
    ) -> Result<Session, ConnectError> {
        let ep = &spec.endpoint;
        let problem = Arc::new(Mutex::new(None));
        let verifier = Verifier {
            node: spec.node.clone(),
            host: ep.host.clone(),
            port: ep.port,
            keys: spec.host_keys.clone(),
            events: events.clone(),
            problem: problem.clone(),
        };
        let config = client_config(spec.keepalive);
        let mut proxy = None;
        let (result, jump) = match (&spec.proxy_command, &spec.jump) {
            (Some(command), _) => {
                let (started, stream) =
                    Proxy::spawn(command).map_err(|source| ConnectError::ProxySpawn {
                        endpoint: ep.to_string(),
                        command: command.clone(),
                        source,
                    })?;
                // Owned here until the session has it: an abandoned attempt
                // (timeout, cancel, error) drops it, which kills the command.
                let started = proxy.insert(started);
                let result = client::connect_stream(config, stream, verifier).await;
                if result.is_err() && problem.lock().unwrap().is_none() {
                    let failure = started.failure().await;
                    return Err(ConnectError::ProxyCommand {
                        endpoint: ep.to_string(),
                        command: command.clone(),
                        detail: failure.to_string(),
                    });
                }
                (result, None)
            }
            (None, None) => {
                let addr = (ep.host.as_str(), ep.port);
                let stream = tokio::net::TcpStream::connect(addr)
                    .await
                    .map_err(|source| ConnectError::Network {
                        endpoint: ep.to_string(),
                        source,
                    })?;
                let _ = stream.set_nodelay(true);
                (client::connect_stream(config, stream, verifier).await, None)
            }
            (None, Some(hop)) => {
                let via = Box::pin(Session::connect_inner(hop, events))
                    .await
                    .map_err(|e| ConnectError::Jump {
                        via: hop.endpoint.to_string(),
                        source: Box::new(e),
                    })?;
                let channel = via
                    .handle
                    .channel_open_direct_tcpip(ep.host.clone(), u32::from(ep.port), "127.0.0.1", 0)
                    .await
                    .map_err(|source| ConnectError::Jump {
                        via: hop.endpoint.to_string(),
                        source: Box::new(ConnectError::Ssh {
                            endpoint: ep.to_string(),
                            source,
                        }),
                    })?;
                (
                    client::connect_stream(config, channel.into_stream(), verifier).await,
                    Some(Box::new(via)),
                )
            }
        };
        let mut handle = match result {
            Ok(h) => h,
            Err(source) => {
                if let Some(p) = problem.lock().unwrap().take() {
                    return Err(p);
                }
                return Err(ConnectError::Ssh {
                    endpoint: ep.to_string(),
                    source,
                });
            }
        };
        authenticate(&mut handle, spec).await?;
        Ok(Session {
            handle,
            node: spec.node.clone(),
            _jump: jump,
            proxy,
        })
    }

    /// Run `command` through the login shell, streaming output as events and
    /// keeping at most `limits.max_output` bytes per stream.
    pub async fn exec(
        &self,
        command: &str,
        limits: &ExecLimits,
        cancel: &Cancel,
        events: &EventSink,
    ) -> ExecOutcome {
        let request = Request {
            command,
            stdin: b"",
            stdin_file: None,
            output_events: true,
            sudo: None,
        };
        self.run(request, limits, cancel, events, &mut |_| {}).await
    }

    /// Run a command with `stdin` as its input (then EOF), passing every stdout
    /// chunk to `on_stdout` as it arrives (unbounded: the caller parses it).
    pub async fn run(
        &self,
        request: Request<'_>,
        limits: &ExecLimits,
        cancel: &Cancel,
        events: &EventSink,
        on_stdout: &mut (dyn FnMut(&[u8]) + Send),
    ) -> ExecOutcome {
        let Request {
            command,
            stdin,
            stdin_file,
            output_events,
            sudo,
        } = request;
        let started = Instant::now();
        let mut out = ExecOutcome::new();
        let mut channel = match self.handle.channel_open_session().await {
            Ok(c) => c,
            Err(e) => {
                out.status = NodeStatus::Failed;
                out.error = Some(format!("cannot open a session channel: {e}"));
                return out;
            }
        };
        // The login shell's PID is its process group (sshd makes each session a
        // new session leader): report it first so a cancel can stop the whole
        // group, then replace the shell with `/bin/sh -c COMMAND` (POSIX sh, as
        // Ansible's shell module; cheaper than a second login shell).
        let wrapped = format!(
            "printf 'MAESTRO-PGID %s\\n' $$ >&2; exec /bin/sh -c {}",
            sh_quote(command)
        );
        if let Err(e) = channel.exec(true, wrapped).await {
            out.status = NodeStatus::Failed;
            out.error = Some(format!("cannot start the command: {e}"));
            return out;
        }
        // The input, then EOF: a command that reads stdin must never wait
        // forever. Behind `sudo -S` it waits until sudo lets the command
        // start (see [`Become`]).
        let mut handshake = sudo.map(Handshake::new);
        if handshake.is_none()
            && let Err(e) = send_input(&channel, stdin, stdin_file).await
        {
            out.status = NodeStatus::Failed;
            out.error = Some(format!("cannot send the command's input: {e}"));
            return out;
        }
        let mut pgid: Option<u32> = None;
        let mut marker = Vec::new();
        let mut got_exit = false;
        let deadline = limits.timeout.map(|t| tokio::time::Instant::now() + t);
        let timed_out = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(timed_out);
        let stop: Option<Stop> = loop {
            tokio::select! {
                msg = channel.wait() => match msg {
                    Some(ChannelMsg::Data { data }) => {
                        let data = match &mut handshake {
                            Some(h) if !h.started => {
                                let (started, rest) = h.stdout(&data);
                                if started
                                    && let Err(e) = send_input(&channel, stdin, stdin_file).await
                                {
                                    break Some(Stop::Failed(format!("cannot send the command's input: {e}")));
                                }
                                rest
                            }
                            _ => data.to_vec(),
                        };
                        on_stdout(&data);
                        self.output(Stream::Stdout, &data, &mut out.stdout, limits, output_events.then_some(events));
                    }
                    Some(ChannelMsg::ExtendedData { data, ext: 1 }) => {
                        if pgid.is_some() {
                            let data = match &mut handshake {
                                Some(h) if !h.started => match h.stderr(&data) {
                                    Asked::Nothing(rest) => rest,
                                    Asked::Password(rest) => {
                                        if let Err(e) = channel.data(&h.password()[..]).await {
                                            break Some(Stop::Failed(format!("cannot answer sudo: {e}")));
                                        }
                                        rest
                                    }
                                    Asked::Again => break Some(Stop::Failed(
                                        "sudo refused the password (-K / --become-password-file): it asked again".into(),
                                    )),
                                },
                                _ => data.to_vec(),
                            };
                            self.output(Stream::Stderr, &data, &mut out.stderr, limits, output_events.then_some(events));
                            continue;
                        }
                        // The first stderr line is our PGID marker; anything else is the command's.
                        marker.extend_from_slice(&data);
                        let newline = marker.iter().position(|&b| b == b'\n');
                        if newline.is_none() && marker.len() < 64 {
                            continue;
                        }
                        let parsed = newline.and_then(|nl| {
                            let line = std::str::from_utf8(&marker[..nl]).ok()?;
                            Some((line.strip_prefix("MAESTRO-PGID ")?.trim().parse::<u32>().ok()?, nl))
                        });
                        let rest = match parsed {
                            Some((p, nl)) => {
                                pgid = Some(p);
                                marker.split_off(nl + 1)
                            }
                            None => {
                                pgid = Some(0);
                                std::mem::take(&mut marker)
                            }
                        };
                        marker.clear();
                        self.output(Stream::Stderr, &rest, &mut out.stderr, limits, output_events.then_some(events));
                    }
                    Some(ChannelMsg::ExitStatus { exit_status }) => {
                        out.exit_code = Some(exit_status);
                        got_exit = true;
                    }
                    Some(ChannelMsg::ExitSignal { signal_name, .. }) => {
                        out.signal = Some(format!("{signal_name:?}"));
                        got_exit = true;
                    }
                    Some(_) => {}
                    None => break None,
                },
                _ = cancel.cancelled(&self.node) => break Some(Stop::Cancelled),
                _ = &mut timed_out => break Some(Stop::TimedOut),
            }
        };
        if !marker.is_empty() {
            let rest = std::mem::take(&mut marker);
            self.output(
                Stream::Stderr,
                &rest,
                &mut out.stderr,
                limits,
                output_events.then_some(events),
            );
        }
        out.duration = started.elapsed();
        if let Some(stop) = stop {
            self.stop_remote(pgid.filter(|&p| p > 1)).await;
            let _ = channel.close().await;
            (out.status, out.error) = match stop {
                Stop::TimedOut => (
                    NodeStatus::TimedOut,
                    Some(format!(
                        "command still running after {:?}; stopped it",
                        limits.timeout.unwrap_or_default()
                    )),
                ),
                Stop::Cancelled => (
                    NodeStatus::Cancelled,
                    Some("cancelled by the operator; the remote command was stopped".into()),
                ),
                Stop::Failed(why) => (NodeStatus::Failed, Some(why)),
            };
            return out;
        }
        if let Some(h) = &handshake
            && !h.started
            && out.error.is_none()
        {
            out.status = NodeStatus::Failed;
            out.error = Some(if h.asked {
                "sudo did not accept the password (-K / --become-password-file)".into()
            } else {
                "sudo did not start the command".into()
            });
            return out;
        }
        out.status = match (got_exit, out.exit_code, &out.signal) {
            (true, Some(0), None) => NodeStatus::Ok,
            (true, _, _) => NodeStatus::Failed,
            (false, _, _) => {
                out.error = Some("connection lost before the command finished".into());
                NodeStatus::Failed
            }
        };
        if let (NodeStatus::Failed, None, Some(sig)) = (out.status, &out.error, &out.signal) {
            out.error = Some(format!("killed by signal {sig}"));
        }
        out
    }

    fn output(
        &self,
        stream: Stream,
        data: &[u8],
        into: &mut Captured,
        limits: &ExecLimits,
        events: Option<&EventSink>,
    ) {
        if data.is_empty() {
            return;
        }
        let before = into.bytes.len();
        into.push(data, limits.max_output);
        if let Some(events) = events
            && into.bytes.len() > before
        {
            events.send(Event::Output {
                node: self.node.clone(),
                stream,
                data: into.bytes[before..].to_vec(),
            });
        }
    }

    /// Start a long-lived `/bin/sh -c COMMAND` whose stdin stays open: the
    /// caller writes to the channel and reads its output itself (the
    /// telemetry sampler, paced by the controller). Closing the channel, or
    /// losing the connection, closes the command's stdin.
    pub async fn open_stream(
        &self,
        command: &str,
    ) -> Result<russh::Channel<client::Msg>, russh::Error> {
        let channel = self.handle.channel_open_session().await?;
        channel
            .exec(true, format!("exec /bin/sh -c {}", sh_quote(command)))
            .await?;
        Ok(channel)
    }

    /// Stop the remote process group: TERM, then KILL after a grace period.
    async fn stop_remote(&self, pgid: Option<u32>) {
        let Some(pgid) = pgid else { return };
        let script = format!(
            "kill -TERM -- -{pgid} 2>/dev/null; sleep 1; kill -KILL -- -{pgid} 2>/dev/null; true"
        );
        let stop = async {
            let mut ch = self.handle.channel_open_session().await.ok()?;
            ch.exec(true, script).await.ok()?;
            while ch.wait().await.is_some() {}
            Some(())
        };
        let _ = tokio::time::timeout(Duration::from_secs(5), stop).await;
    }

    pub async fn close(self) {
        let _ = self
            .handle
            .disconnect(Disconnect::ByApplication, "", "en")
            .await;
        if let Some(proxy) = self.proxy {
            proxy.shutdown().await;
        }
    }
}

/// What to run: the command line, its standard input, and whether its output
/// is reported as `Output` events (exec) or only parsed by the caller (playbooks).
pub struct Request<'a> {
    pub command: &'a str,
    pub stdin: &'a [u8],
    /// A file sent after `stdin` (an agent's artifact), streamed from disk.
    pub stdin_file: Option<&'a std::path::Path>,
    pub output_events: bool,
    /// The command is `sudo -S` (see [`Become`]).
    pub sudo: Option<Become<'a>>,
}

/// How a command run through `sudo -S -p PROMPT -- sh -c 'echo READY; …'`
/// gets its password, as Ansible does it: the password is written only when
/// sudo prints the prompt (a random marker), and the command's input only
/// after the shell printed the ready marker, so a sudo that does not ask
/// (NOPASSWD, cached credentials) never receives the password on stdin,
/// where the shell would read it as a command. A second prompt means a
/// wrong password: the command is stopped. Neither marker nor password ever
/// reaches the captured output.
pub struct Become<'a> {
    pub prompt: &'a str,
    pub ready: &'a str,
    pub password: &'a str,
}

struct Handshake<'a> {
    sudo: Become<'a>,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    asked: bool,
    started: bool,
}

enum Asked {
    /// Not a prompt; pass these bytes on.
    Nothing(Vec<u8>),
    /// sudo asked: answer, and pass the rest on.
    Password(Vec<u8>),
    /// sudo asked a second time: the password was wrong.
    Again,
}

impl<'a> Handshake<'a> {
    fn new(sudo: Become<'a>) -> Handshake<'a> {
        Handshake {
            sudo,
            stdout: Vec::new(),
            stderr: Vec::new(),
            asked: false,
            started: false,
        }
    }

    fn password(&self) -> Vec<u8> {
        let mut p = self.sudo.password.as_bytes().to_vec();
        p.push(b'\n');
        p
    }

    /// Stdout before the command started: is the ready line there? Returns
    /// what follows it (the command's own output).
    fn stdout(&mut self, data: &[u8]) -> (bool, Vec<u8>) {
        self.stdout.extend_from_slice(data);
        let marker = format!("{}\n", self.sudo.ready);
        match find(&self.stdout, marker.as_bytes()) {
            Some(at) => {
                self.started = true;
                let rest = self.stdout.split_off(at + marker.len());
                self.stdout.clear();
                (true, rest)
            }
            None => (false, Vec::new()),
        }
    }

    /// Stderr before the command started: sudo's prompt, or its messages.
    fn stderr(&mut self, data: &[u8]) -> Asked {
        self.stderr.extend_from_slice(data);
        let prompt = self.sudo.prompt.as_bytes();
        match find(&self.stderr, prompt) {
            Some(at) => {
                if self.asked {
                    return Asked::Again;
                }
                self.asked = true;
                let mut rest = self.stderr[..at].to_vec();
                rest.extend_from_slice(&self.stderr[at + prompt.len()..]);
                self.stderr.clear();
                Asked::Password(rest)
            }
            // Keep a tail that may be the start of a prompt; pass the rest.
            None => {
                let keep = self.stderr.len().min(prompt.len().saturating_sub(1));
                let pass = self.stderr.len() - keep;
                let out = self.stderr[..pass].to_vec();
                self.stderr.drain(..pass);
                Asked::Nothing(out)
            }
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

async fn send_input(
    channel: &russh::Channel<client::Msg>,
    stdin: &[u8],
    file: Option<&std::path::Path>,
) -> Result<(), russh::Error> {
    if !stdin.is_empty() {
        channel.data(stdin).await?;
    }
    if let Some(path) = file {
        let f = tokio::fs::File::open(path).await?;
        channel
            .data(tokio::io::BufReader::with_capacity(256 * 1024, f))
            .await?;
    }
    channel.eof().await
}

/// Why the wait for a command ended early.
enum Stop {
    Cancelled,
    TimedOut,
    Failed(String),
}

/// Bounds on one command.
#[derive(Debug, Clone)]
pub struct ExecLimits {
    /// Bytes kept per stream; the rest is counted, not kept.
    pub max_output: usize,
    pub timeout: Option<Duration>,
}

impl Default for ExecLimits {
    fn default() -> Self {
        ExecLimits {
            max_output: 1 << 20,
            timeout: None,
        }
    }
}

#[derive(Debug)]
pub struct ExecOutcome {
    pub status: NodeStatus,
    pub exit_code: Option<u32>,
    pub signal: Option<String>,
    pub stdout: Captured,
    pub stderr: Captured,
    pub duration: Duration,
    pub error: Option<String>,
}

impl ExecOutcome {
    fn new() -> ExecOutcome {
        ExecOutcome {
            status: NodeStatus::Failed,
            exit_code: None,
            signal: None,
            stdout: Captured::default(),
            stderr: Captured::default(),
            duration: Duration::ZERO,
            error: None,
        }
    }
}

/// Keys loaded from files (or why they could not be), by path.
type KeyCache = Mutex<HashMap<PathBuf, Result<Arc<PrivateKey>, String>>>;

/// Keys loaded from files, shared by every connection of the process.
fn key_cache() -> &'static KeyCache {
    static CACHE: OnceLock<KeyCache> = OnceLock::new();
    CACHE.get_or_init(Default::default)
}

enum LoadedKey {
    Key(Arc<PrivateKey>),
    Missing,
    Encrypted,
    Bad(String),
}

fn load_key(path: &Path) -> LoadedKey {
    if !path.exists() {
        return LoadedKey::Missing;
    }
    let mut cache = key_cache().lock().unwrap();
    let entry = cache.entry(path.to_path_buf()).or_insert_with(|| {
        match keys::load_secret_key(path, None) {
            Ok(k) => Ok(Arc::new(k)),
            Err(keys::Error::KeyIsEncrypted) => Err("encrypted".into()),
            Err(e) => Err(e.to_string()),
        }
    });
    match entry {
        Ok(k) => LoadedKey::Key(k.clone()),
        Err(e) if e == "encrypted" => LoadedKey::Encrypted,
        Err(e) => LoadedKey::Bad(e.clone()),
    }
}

/// The public half of an identity file, from `FILE.pub`, to match agent keys.
fn identity_public(path: &Path) -> Option<keys::PublicKey> {
    let mut pub_path = path.as_os_str().to_owned();
    pub_path.push(".pub");
    keys::load_public_key(PathBuf::from(pub_path)).ok()
}

async fn authenticate(
    handle: &mut Handle<Verifier>,
    spec: &ConnectSpec,
) -> Result<(), ConnectError> {
    let user = spec.endpoint.user.clone();
    let mut tried: Vec<String> = Vec::new();
    let mut encrypted: Vec<PathBuf> = Vec::new();

    // 1. ssh-agent, when there is one.
    if std::env::var_os("SSH_AUTH_SOCK").is_some()
        && let Ok(mut agent) = keys::agent::client::AgentClient::connect_env().await
    {
        let wanted: Vec<_> = spec
            .identity_files
            .iter()
            .filter_map(|f| identity_public(f))
            .collect();
        let ids = agent.request_identities().await.unwrap_or_default();
        for id in ids {
            let key = id.public_key().into_owned();
            if spec.identities_only && !wanted.iter().any(|w| w.key_data() == key.key_data()) {
                continue;
            }
            let hash = rsa_hash_for(handle, &key).await;
            match handle
                .authenticate_publickey_with(user.clone(), key.clone(), hash, &mut agent)
                .await
            {
                Ok(r) if r.success() => return Ok(()),
                _ => tried.push(format!("agent key {}", key.fingerprint(HashAlg::Sha256))),
            }
        }
    }
    // 2. Identity files.
    for path in &spec.identity_files {
        match load_key(path) {
            LoadedKey::Key(key) => {
                let hash = rsa_hash_for(handle, key.public_key()).await;
                let auth = handle
                    .authenticate_publickey(user.clone(), PrivateKeyWithHashAlg::new(key, hash))
                    .await
                    .map_err(|source| ConnectError::Ssh {
                        endpoint: spec.endpoint.to_string(),
                        source,
                    })?;
                if auth.success() {
                    return Ok(());
                }
                tried.push(path.display().to_string());
            }
            LoadedKey::Missing => {}
            LoadedKey::Encrypted => encrypted.push(path.clone()),
            LoadedKey::Bad(e) => tried.push(format!("{} (unreadable: {e})", path.display())),
        }
    }
    let mut detail = if tried.is_empty() {
        "no usable key: no ssh-agent key and no identity file was found".to_string()
    } else {
        format!("the server refused {}", tried.join(", "))
    };
    for e in encrypted {
        detail.push_str(&format!(
            "; {} is encrypted and no ssh-agent holds it: run `ssh-add {}` (maestro never prompts for a passphrase)",
            e.display(),
            e.display()
        ));
    }
    Err(ConnectError::Auth {
        endpoint: spec.endpoint.to_string(),
        detail,
    })
}

async fn rsa_hash_for(handle: &Handle<Verifier>, key: &keys::PublicKey) -> Option<HashAlg> {
    if key.algorithm().is_rsa() {
        handle
            .best_supported_rsa_hash()
            .await
            .ok()
            .flatten()
            .flatten()
    } else {
        None
    }
}
