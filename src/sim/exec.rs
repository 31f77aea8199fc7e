//! The per-connection russh handler of a simulated node and the commands it runs.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::ExitStatusExt;
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};

use russh::server::{self, Auth, Msg, PublicKeyOffer, Session, VerifiedPublicKey};
use russh::{Channel, ChannelId, Sig};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::{ChildStdin, Command};
use tokio::sync::{Semaphore, mpsc, oneshot};

use super::{Counters, NodeShared, SimShared};

/// At most this many `sh` children run at once in the whole process, however
/// many nodes and simulators there are; further exec requests queue.
pub const MAX_CHILDREN: usize = 64;
static SPAWN_LIMIT: Semaphore = Semaphore::const_new(MAX_CHILDREN);

/// Size of the reads from the child's stdout/stderr (one SSH data message each).
const READ_CHUNK: usize = 32 * 1024;

/// One SSH connection to a simulated node.
pub(crate) struct NodeHandler {
    node: Arc<NodeShared>,
    sim: Arc<SimShared>,
    channels: HashMap<ChannelId, ChanState>,
}

impl NodeHandler {
    pub(crate) fn new(node: Arc<NodeShared>, sim: Arc<SimShared>) -> Self {
        NodeHandler {
            node,
            sim,
            channels: HashMap::new(),
        }
    }

    fn key_allowed(&self, key: &russh::keys::PublicKey) -> bool {
        key.key_data() == self.sim.authorized_key.key_data()
    }
}

/// State of one open session channel. Dropping it (channel closed by the
/// client, or connection gone) kills the channel's command if still running.
struct ChanState {
    /// Client data goes to the command's stdin; `None` after the client's EOF.
    stdin_tx: Option<mpsc::UnboundedSender<Vec<u8>>>,
    /// Handed to the command when it starts (data sent before exec is kept).
    stdin_rx: Option<mpsc::UnboundedReceiver<Vec<u8>>>,
    /// Never sent on: dropping it tells the command task to kill the command.
    kill_tx: Option<oneshot::Sender<()>>,
    /// Process group of the running command, 0 when none.
    pgid: Arc<AtomicI32>,
    started: bool,
    _open: SessionGuard,
}

/// Counts a session channel as open for as long as it lives.
struct SessionGuard(Arc<Counters>);

impl SessionGuard {
    fn new(counters: &Arc<Counters>) -> Self {
        let now = counters.open_sessions.fetch_add(1, Ordering::Relaxed) + 1;
        counters.max_open_sessions.fetch_max(now, Ordering::Relaxed);
        SessionGuard(Arc::clone(counters))
    }
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        self.0.open_sessions.fetch_sub(1, Ordering::Relaxed);
    }
}

/// True for the commands answered without spawning a shell.
fn is_noop(command: &[u8]) -> bool {
    matches!(command.trim_ascii(), b"true" | b":")
}

impl server::Handler for NodeHandler {
    type Error = russh::Error;

    async fn auth_publickey_offered(
        &mut self,
        _user: &str,
        offer: PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        Ok(if self.key_allowed(offer.public_key) {
            Auth::Accept
        } else {
            Auth::reject()
        })
    }

    async fn auth_publickey(
        &mut self,
        _user: &str,
        key: VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        Ok(if self.key_allowed(key.public_key) {
            Auth::Accept
        } else {
            Auth::reject()
        })
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: server::ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        // Everything is driven through the handler callbacks; the channel
        // object is dropped (russh then ignores its message queue).
        let id = channel.id();
        drop(channel);
        let (stdin_tx, stdin_rx) = mpsc::unbounded_channel();
        self.channels.insert(
            id,
            ChanState {
                stdin_tx: Some(stdin_tx),
                stdin_rx: Some(stdin_rx),
                kill_tx: None,
                pgid: Arc::new(AtomicI32::new(0)),
                started: false,
                _open: SessionGuard::new(&self.sim.counters),
            },
        );
        reply.accept().await;
        Ok(())
    }

    async fn data(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        if let Some(tx) = self
            .channels
            .get(&channel)
            .and_then(|c| c.stdin_tx.as_ref())
        {
            // Fails only once the command's stdin is gone; the data is dropped.
            let _ = tx.send(data.to_vec());
        }
        Ok(())
    }

    async fn channel_eof(
        &mut self,
        channel: ChannelId,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        if let Some(state) = self.channels.get_mut(&channel) {
            state.stdin_tx = None;
        }
        Ok(())
    }

    async fn channel_close(
        &mut self,
        channel: ChannelId,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.channels.remove(&channel);
        Ok(())
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let Some(state) = self.channels.get_mut(&channel) else {
            return session.channel_failure(channel);
        };
        if state.started {
            return session.channel_failure(channel);
        }
        state.started = true;
        session.channel_success(channel)?;
        self.node.exec_count.fetch_add(1, Ordering::Relaxed);

        if is_noop(data) {
            session.eof(channel)?;
            session.exit_status_request(channel, 0)?;
            return session.close(channel);
        }

        let (kill_tx, kill_rx) = oneshot::channel();
        state.kill_tx = Some(kill_tx);
        let job = Job {
            handle: session.handle(),
            channel,
            command: data.to_vec(),
            node: Arc::clone(&self.node),
            counters: Arc::clone(&self.sim.counters),
            stdin: state.stdin_rx.take(),
            kill: kill_rx,
            pgid: Arc::clone(&state.pgid),
        };
        tokio::spawn(job.run());
        Ok(())
    }

    async fn signal(
        &mut self,
        channel: ChannelId,
        signal: Sig,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        let pgid = self
            .channels
            .get(&channel)
            .map_or(0, |c| c.pgid.load(Ordering::Acquire));
        if let (true, Some(signo)) = (pgid > 0, signo_of(&signal)) {
            // SAFETY: plain syscall; `pgid` is the group of a child we have not reaped yet.
            unsafe {
                libc::kill(-pgid, signo);
            }
        }
        Ok(())
    }

    // What the simulator does not offer is refused, so that clients asking
    // for it with want_reply do not wait forever (russh's defaults never reply).
    async fn shell_request(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_failure(channel)
    }

    async fn subsystem_request(
        &mut self,
        channel: ChannelId,
        _name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_failure(channel)
    }

    #[allow(clippy::too_many_arguments)]
    async fn pty_request(
        &mut self,
        channel: ChannelId,
        _term: &str,
        _col_width: u32,
        _row_height: u32,
        _pix_width: u32,
        _pix_height: u32,
        _modes: &[(russh::Pty, u32)],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_failure(channel)
    }

    async fn env_request(
        &mut self,
        channel: ChannelId,
        _variable_name: &str,
        _variable_value: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_failure(channel)
    }
}

/// One exec request that needs a shell.
struct Job {
    handle: server::Handle,
    channel: ChannelId,
    command: Vec<u8>,
    node: Arc<NodeShared>,
    counters: Arc<Counters>,
    stdin: Option<mpsc::UnboundedReceiver<Vec<u8>>>,
    kill: oneshot::Receiver<()>,
    pgid: Arc<AtomicI32>,
}

/// Kills a command's whole process group unless disarmed.
struct GroupKill(i32);

impl Drop for GroupKill {
    fn drop(&mut self) {
        if self.0 > 0 {
            // SAFETY: plain syscall on a process group whose leader we have not reaped.
            unsafe {
                libc::kill(-self.0, libc::SIGKILL);
            }
        }
    }
}

/// Counts a running `sh` child.
struct RunningGuard(Arc<Counters>);

impl Drop for RunningGuard {
    fn drop(&mut self) {
        self.0.running_commands.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Job {
    async fn run(self) {
        let Job {
            handle,
            channel,
            command,
            node,
            counters,
            stdin,
            mut kill,
            pgid,
        } = self;

        let permit = tokio::select! {
            permit = SPAWN_LIMIT.acquire() => permit.expect("the spawn semaphore is never closed"),
            _ = &mut kill => return,
        };

        let mut cmd = match &node.sandbox {
            Some(sandbox) => Command::from(
                sandbox.command(&command, &[("MAESTRO_SIM_NODE", node.name.as_ref())]),
            ),
            None => {
                let mut cmd = Command::new("sh");
                cmd.arg("-c")
                    .arg(OsStr::from_bytes(&command))
                    .current_dir(&node.dir)
                    .env("MAESTRO_SIM_NODE", &node.name)
                    .env("HOME", &node.dir)
                    .env("PWD", &node.dir);
                cmd
            }
        };
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let mut child = match cmd.spawn() {
            Ok(child) => child,
            Err(e) => {
                let msg = format!("maestro-sim: {}: cannot start sh: {e}\n", node.name);
                let _ = handle.extended_data(channel, 1, msg.into_bytes()).await;
                finish(&handle, channel, Outcome::Code(127)).await;
                return;
            }
        };
        counters.running_commands.fetch_add(1, Ordering::Relaxed);
        let running = RunningGuard(Arc::clone(&counters));
        // The child called setpgid(0, 0): its pid is its process group.
        let group = child
            .id()
            .and_then(|pid| i32::try_from(pid).ok())
            .unwrap_or(0);
        let mut group_kill = GroupKill(group);
        pgid.store(group, Ordering::Release);

        if let (Some(sink), Some(rx)) = (child.stdin.take(), stdin) {
            tokio::spawn(feed_stdin(sink, rx));
        }
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();

        let status = {
            let work = async {
                let (_, _, status) = tokio::join!(
                    pump(stdout, &handle, channel, None),
                    pump(stderr, &handle, channel, Some(1)),
                    child.wait(),
                );
                status
            };
            tokio::select! {
                status = work => Some(status),
                _ = &mut kill => None,
            }
        };
        pgid.store(0, Ordering::Release);

        match status {
            Some(Ok(status)) => {
                // Like sshd, leave any background processes of a command that
                // exited on its own alone.
                group_kill.0 = 0;
                // Uncounted before the slot is free, so running_commands()
                // never exceeds MAX_CHILDREN.
                drop(running);
                drop(permit);
                finish(&handle, channel, Outcome::from(status)).await;
            }
            Some(Err(e)) => {
                drop(group_kill);
                let _ = child.kill().await;
                let msg = format!("maestro-sim: {}: waiting for sh: {e}\n", node.name);
                let _ = handle.extended_data(channel, 1, msg.into_bytes()).await;
                finish(&handle, channel, Outcome::Code(255)).await;
            }
            None => {
                // The client closed the channel or the connection is gone:
                // kill the whole group and reap the shell. Nobody to report to.
                drop(group_kill);
                let _ = child.kill().await;
            }
        }
    }
}

/// Forwards the client's data to the command's stdin; closes it on the
/// client's EOF (the sender is dropped) or when the channel goes away.
async fn feed_stdin(mut sink: ChildStdin, mut rx: mpsc::UnboundedReceiver<Vec<u8>>) {
    while let Some(chunk) = rx.recv().await {
        if sink.write_all(&chunk).await.is_err() {
            return;
        }
    }
}

/// Streams one of the command's output pipes to the channel as it is produced.
async fn pump<R: AsyncRead + Unpin>(
    src: Option<R>,
    handle: &server::Handle,
    channel: ChannelId,
    ext: Option<u32>,
) {
    let Some(mut src) = src else { return };
    let mut buf = vec![0u8; READ_CHUNK];
    loop {
        let n = match src.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let chunk = buf[..n].to_vec();
        let sent = match ext {
            None => handle.data(channel, chunk).await,
            Some(code) => handle.extended_data(channel, code, chunk).await,
        };
        if sent.is_err() {
            // Session gone; the command is killed when the handler drops.
            return;
        }
    }
}

enum Outcome {
    Code(u32),
    Signal { sig: Sig, core_dumped: bool },
}

impl From<ExitStatus> for Outcome {
    fn from(status: ExitStatus) -> Self {
        match (status.code(), status.signal()) {
            (Some(code), _) => Outcome::Code(code as u32),
            (None, Some(signo)) => Outcome::Signal {
                sig: sig_of(signo),
                core_dumped: status.core_dumped(),
            },
            (None, None) => Outcome::Code(255),
        }
    }
}

/// Ends a channel the way OpenSSH's sshd does: EOF, exit status, close.
async fn finish(handle: &server::Handle, channel: ChannelId, outcome: Outcome) {
    // Errors only mean the connection is already gone.
    let _ = handle.eof(channel).await;
    let _ = match outcome {
        Outcome::Code(code) => handle.exit_status_request(channel, code).await,
        Outcome::Signal { sig, core_dumped } => {
            handle
                .exit_signal_request(channel, sig, core_dumped, String::new(), String::new())
                .await
        }
    };
    let _ = handle.close(channel).await;
}

/// Signal names as RFC 4254 spells them (without "SIG").
const SIGNAL_NAMES: &[(libc::c_int, &str)] = &[
    (libc::SIGABRT, "ABRT"),
    (libc::SIGALRM, "ALRM"),
    (libc::SIGFPE, "FPE"),
    (libc::SIGHUP, "HUP"),
    (libc::SIGILL, "ILL"),
    (libc::SIGINT, "INT"),
    (libc::SIGKILL, "KILL"),
    (libc::SIGPIPE, "PIPE"),
    (libc::SIGQUIT, "QUIT"),
    (libc::SIGSEGV, "SEGV"),
    (libc::SIGTERM, "TERM"),
    (libc::SIGUSR1, "USR1"),
    (libc::SIGUSR2, "USR2"),
    (libc::SIGBUS, "BUS"),
    (libc::SIGTRAP, "TRAP"),
    (libc::SIGSYS, "SYS"),
    (libc::SIGXCPU, "XCPU"),
    (libc::SIGXFSZ, "XFSZ"),
    (libc::SIGCONT, "CONT"),
    (libc::SIGSTOP, "STOP"),
    (libc::SIGTSTP, "TSTP"),
];

fn sig_of(signo: libc::c_int) -> Sig {
    match signo {
        libc::SIGABRT => Sig::ABRT,
        libc::SIGALRM => Sig::ALRM,
        libc::SIGFPE => Sig::FPE,
        libc::SIGHUP => Sig::HUP,
        libc::SIGILL => Sig::ILL,
        libc::SIGINT => Sig::INT,
        libc::SIGKILL => Sig::KILL,
        libc::SIGPIPE => Sig::PIPE,
        libc::SIGQUIT => Sig::QUIT,
        libc::SIGSEGV => Sig::SEGV,
        libc::SIGTERM => Sig::TERM,
        libc::SIGUSR1 => Sig::USR1,
        other => Sig::Custom(
            SIGNAL_NAMES
                .iter()
                .find(|(n, _)| *n == other)
                .map_or_else(|| other.to_string(), |(_, name)| (*name).to_string()),
        ),
    }
}

fn signo_of(sig: &Sig) -> Option<libc::c_int> {
    Some(match sig {
        Sig::ABRT => libc::SIGABRT,
        Sig::ALRM => libc::SIGALRM,
        Sig::FPE => libc::SIGFPE,
        Sig::HUP => libc::SIGHUP,
        Sig::ILL => libc::SIGILL,
        Sig::INT => libc::SIGINT,
        Sig::KILL => libc::SIGKILL,
        Sig::PIPE => libc::SIGPIPE,
        Sig::QUIT => libc::SIGQUIT,
        Sig::SEGV => libc::SIGSEGV,
        Sig::TERM => libc::SIGTERM,
        Sig::USR1 => libc::SIGUSR1,
        Sig::Custom(name) => {
            let name = name.strip_prefix("SIG").unwrap_or(name);
            return SIGNAL_NAMES
                .iter()
                .find(|(_, n)| *n == name)
                .map(|(signo, _)| *signo);
        }
    })
}
