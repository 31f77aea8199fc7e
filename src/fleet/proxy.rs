//! ProxyCommand: reach a node through a local command whose standard input
//! and output carry the SSH connection (`ssh -W %h:%p bastion`, a cloud
//! session manager, `nc`), as OpenSSH does.
//!
//! The command runs as `/bin/sh -c "exec COMMAND"` (ssh's own form, so a
//! config that works with ssh behaves the same here) in a process group of
//! its own. Its standard error is drained all along (a chatty proxy must not
//! block on a full pipe) and the last few KiB are kept for the error
//! message. Whatever the command started is killed when the session ends or
//! the connection attempt is abandoned (connect timeout, cancel, a failed
//! handshake): [`Proxy`] owns the group and kills it when dropped.
//!
//! Deliberate difference from ssh: the shell is `/bin/sh`, not `$SHELL`, so
//! the command means the same for every operator of a fleet.

use std::io;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, Join};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::task::JoinHandle;

/// Bytes of the command's stderr kept for messages (the end of it).
const STDERR_KEPT: usize = 4096;
/// How long a failed command gets to finish writing its complaint.
const FAILURE_GRACE: Duration = Duration::from_secs(1);
/// How long a command gets to exit on SIGHUP when the session ends.
const SHUTDOWN_GRACE: Duration = Duration::from_millis(500);

/// The transport: read the command's stdout, write its stdin.
pub type ProxyStream = Join<ChildStdout, ChildStdin>;

/// A running ProxyCommand. Dropping it kills the command's process group.
pub struct Proxy {
    child: Child,
    /// The command's PID, which is also its process group ID.
    pid: libc::pid_t,
    stderr: Arc<Mutex<Vec<u8>>>,
    reader: Option<JoinHandle<()>>,
    /// Once the child is reaped its PID may be reused: never signal it again.
    reaped: bool,
}

/// How the command ended up when the connection through it failed.
#[derive(Debug)]
pub struct ProxyFailure {
    /// None: it was still running (the failure was on the SSH side).
    pub status: Option<ExitStatus>,
    /// The end of its stderr, lossy UTF-8, trimmed.
    pub stderr: String,
}

impl Proxy {
    /// Start `command` (tokens already expanded).
    pub fn spawn(command: &str) -> io::Result<(Proxy, ProxyStream)> {
        let mut child = Command::new("/bin/sh")
            .arg("-c")
            .arg(format!("exec {command}"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()?;
        let pid = child
            .id()
            .and_then(|id| libc::pid_t::try_from(id).ok())
            .ok_or_else(|| io::Error::other("the proxy command has no process id"))?;
        let (Some(stdin), Some(stdout), Some(mut err)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(io::Error::other("the proxy command's pipes are missing"));
        };
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let kept = stderr.clone();
        let reader = tokio::spawn(async move {
            let mut buf = [0u8; 1024];
            while let Ok(n @ 1..) = err.read(&mut buf).await {
                let mut kept = kept.lock().unwrap_or_else(|p| p.into_inner());
                kept.extend_from_slice(&buf[..n]);
                let excess = kept.len().saturating_sub(STDERR_KEPT);
                kept.drain(..excess);
            }
        });
        let proxy = Proxy {
            child,
            pid,
            stderr,
            reader: Some(reader),
            reaped: false,
        };
        Ok((proxy, tokio::io::join(stdout, stdin)))
    }

    /// The connection through the command failed: give the command a moment
    /// to finish its complaint, then stop it and say how it ended.
    pub async fn failure(&mut self) -> ProxyFailure {
        let deadline = tokio::time::Instant::now() + FAILURE_GRACE;
        if let Some(reader) = self.reader.take() {
            let _ = tokio::time::timeout_at(deadline, reader).await;
        }
        // Its stderr closes a moment before it is seen to have exited.
        while !self.exited() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let exited = self.exited();
        self.kill_group(libc::SIGKILL);
        let status = self.child.wait().await.ok();
        self.reaped = true;
        ProxyFailure {
            status: status.filter(|_| exited),
            stderr: self.stderr_text(),
        }
    }

    /// The session is over: hang up on the command as ssh does, give it a
    /// moment, then kill whatever is left of its process group.
    pub async fn shutdown(mut self) {
        self.kill_group(libc::SIGHUP);
        let deadline = tokio::time::Instant::now() + SHUTDOWN_GRACE;
        while !self.exited() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.kill_group(libc::SIGKILL);
        let _ = self.child.wait().await;
        self.reaped = true;
    }

    fn stderr_text(&self) -> String {
        let kept = self.stderr.lock().unwrap_or_else(|p| p.into_inner());
        String::from_utf8_lossy(&kept).trim().to_owned()
    }

    /// Has the command exited? Asked without reaping it, so its PID (the
    /// group's ID) stays reserved and safe to signal.
    fn exited(&self) -> bool {
        if self.reaped {
            return true;
        }
        // SAFETY: waitid only writes into the zeroed siginfo we pass.
        unsafe {
            let mut info: libc::siginfo_t = std::mem::zeroed();
            let rc = libc::waitid(
                libc::P_PID,
                self.pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
            );
            rc == 0 && info.si_pid() == self.pid
        }
    }

    fn kill_group(&self, signal: libc::c_int) {
        if !self.reaped {
            // SAFETY: plain syscall; the group is ours (see `reaped`).
            unsafe {
                libc::kill(-self.pid, signal);
            }
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        // The leader is not reaped yet, so the group ID cannot have been
        // reused; tokio's kill_on_drop then reaps the leader.
        self.kill_group(libc::SIGKILL);
        if let Some(reader) = self.reader.take() {
            reader.abort();
        }
    }
}

impl std::fmt::Display for ProxyFailure {
    /// "the command exited with status 255: <its stderr>"
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.status {
            Some(status) => match (
                status.code(),
                std::os::unix::process::ExitStatusExt::signal(&status),
            ) {
                (Some(code), _) => write!(f, "the command exited with status {code}")?,
                (None, Some(signal)) => write!(f, "the command was killed by signal {signal}")?,
                (None, None) => write!(f, "the command exited")?,
            },
            None => write!(
                f,
                "the command is running but no SSH server answered through it"
            )?,
        }
        // The last lines are where commands put the reason.
        let lines: Vec<&str> = self
            .stderr
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        if !lines.is_empty() {
            let from = lines.len().saturating_sub(3);
            write!(f, ": {}", lines[from..].join("; "))?;
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// PIDs of processes whose command line contains `marker`.
    pub(crate) fn processes_with(marker: &str) -> Vec<u32> {
        let mut found = Vec::new();
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
                continue;
            };
            let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
            let zombie = stat
                .rsplit_once(") ")
                .is_some_and(|(_, rest)| rest.starts_with('Z'));
            let args = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if !zombie && args.contains(marker) {
                found.push(pid);
            }
        }
        found
    }

    #[tokio::test]
    async fn the_stream_is_the_commands_stdin_and_stdout() {
        let (proxy, mut stream) = Proxy::spawn("sed -n 's/hello/HELLO/p;q'").unwrap();
        stream.write_all(b"hello\n").await.unwrap();
        let mut out = String::new();
        stream.read_to_string(&mut out).await.unwrap();
        assert_eq!(out, "HELLO\n");
        proxy.shutdown().await;
    }

    #[tokio::test]
    async fn a_failed_command_reports_its_status_and_stderr() {
        let (mut proxy, _stream) =
            Proxy::spawn("sh -c 'echo debug1: noise >&2; echo bastion: access denied >&2; exit 3'")
                .unwrap();
        let failure = proxy.failure().await;
        assert_eq!(failure.status.and_then(|s| s.code()), Some(3));
        assert_eq!(
            failure.to_string(),
            "the command exited with status 3: debug1: noise; bastion: access denied"
        );
    }

    #[tokio::test]
    async fn dropping_the_proxy_kills_everything_it_started() {
        // A background child that would outlive a plain kill of the shell.
        let (proxy, _stream) =
            Proxy::spawn("sh -c 'sleep 30.7341 </dev/null >/dev/null 2>&1 & sleep 30.7342'")
                .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while processes_with("sleep 30.734").len() < 2 {
            assert!(
                std::time::Instant::now() < deadline,
                "the command never started"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        drop(proxy);
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !processes_with("sleep 30.734").is_empty() {
            assert!(
                std::time::Instant::now() < deadline,
                "left behind: {:?}",
                processes_with("sleep 30.734")
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn shutdown_hangs_up_then_kills_the_group() {
        let (proxy, _stream) = Proxy::spawn(
            "sh -c 'trap \"\" HUP; sleep 30.8121 </dev/null >/dev/null 2>&1 & exec sleep 30.8122'",
        )
        .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while processes_with("sleep 30.812").len() < 2 {
            assert!(
                std::time::Instant::now() < deadline,
                "the command never started"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let started = std::time::Instant::now();
        proxy.shutdown().await;
        assert!(started.elapsed() < Duration::from_secs(2));
        assert!(processes_with("sleep 30.812").is_empty());
    }

    fn spec_through(command: &str, timeout: Duration) -> crate::fleet::ssh::ConnectSpec {
        use crate::fleet::known_hosts::KnownHosts;
        use crate::fleet::ssh::{ConnectSpec, Endpoint, HostKeyPolicy, HostKeys, Keepalive};
        ConnectSpec {
            node: "n1".into(),
            endpoint: Endpoint {
                host: "10.9.9.9".into(),
                port: 22,
                user: "root".into(),
            },
            identity_files: Vec::new(),
            identities_only: false,
            host_keys: Arc::new(HostKeys::new(
                KnownHosts::default(),
                HostKeyPolicy::Strict,
                "/nonexistent/known_hosts".into(),
            )),
            jump: None,
            proxy_command: Some(command.into()),
            connect_timeout: timeout,
            keepalive: Keepalive::default(),
        }
    }

    #[tokio::test]
    async fn a_proxy_that_fails_is_a_connect_error_with_its_stderr() {
        use crate::fleet::ssh::{ConnectError, Session};
        let (events, _rx) = crate::fleet::EventSink::channel("test");
        let spec = spec_through(
            "sh -c 'echo channel 0: open failed: connect failed: No route to host >&2; exit 255'",
            Duration::from_secs(10),
        );
        let Err(e) = Session::connect(&spec, &events).await else {
            panic!("connected through a command that exited");
        };
        assert!(matches!(e, ConnectError::ProxyCommand { .. }), "{e:?}");
        assert_eq!(
            e.to_string(),
            "cannot connect to root@10.9.9.9:22 through ProxyCommand `sh -c 'echo channel 0: open failed: connect failed: No route to host >&2; exit 255'`: the command exited with status 255: channel 0: open failed: connect failed: No route to host"
        );
    }

    #[tokio::test]
    async fn a_connect_timeout_kills_the_proxy_and_what_it_started() {
        use crate::fleet::ssh::{ConnectError, Session};
        let (events, _rx) = crate::fleet::EventSink::channel("test");
        // Never speaks SSH; a background child would survive a kill of the
        // command alone.
        let spec = spec_through(
            "sh -c 'sleep 30.9151 </dev/null >/dev/null 2>&1 & exec sleep 30.9152'",
            Duration::from_millis(700),
        );
        let started = std::time::Instant::now();
        let e = Session::connect(&spec, &events).await.err().unwrap();
        assert!(matches!(e, ConnectError::Timeout(..)), "{e:?}");
        assert!(started.elapsed() < Duration::from_secs(3));
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !processes_with("sleep 30.915").is_empty() {
            assert!(
                std::time::Instant::now() < deadline,
                "left behind after the timeout: {:?}",
                processes_with("sleep 30.915")
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}
