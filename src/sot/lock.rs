//! One SoT writer at a time: a lock file in the repository's git directory,
//! taken before a change reads the SoT and released after its commit, the way
//! git's own `index.lock` serialises writers to the index.
//!
//! Without it two `node add` commands read the same `nodes.toml`, and the
//! second one's commit silently dropped the first one's node.
//!
//! The lock is never broken automatically: a lock whose process is gone is
//! reported with the command that removes it, because deciding "stale" and
//! deleting in one step races with the next writer that took it.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::{Result, SotError};

/// The lock's file name inside the git directory (beside `index.lock`).
pub const LOCK_FILE: &str = "maestro-sot.lock";

/// How long a writer waits for another one by default.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(10);

/// Who holds a lock, as written in the lock file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub pid: u32,
    pub host: String,
    /// Seconds since the epoch.
    pub since: u64,
    /// What it is doing (`node add gpu-eu-05`).
    pub what: String,
}

impl Holder {
    fn current(what: &str) -> Holder {
        Holder {
            pid: std::process::id(),
            host: hostname(),
            since: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            what: what.replace(['\n', '\r'], " "),
        }
    }

    fn to_text(&self) -> String {
        format!(
            "pid={}\nhost={}\nsince={}\nwhat={}\n",
            self.pid, self.host, self.since, self.what
        )
    }

    /// Read a lock file's text; `None` when it is not one maestro wrote.
    fn parse(text: &str) -> Option<Holder> {
        let field = |key: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
                .map(str::to_string)
        };
        Some(Holder {
            pid: field("pid")?.parse().ok()?,
            host: field("host").unwrap_or_default(),
            since: field("since").and_then(|s| s.parse().ok()).unwrap_or(0),
            what: field("what").unwrap_or_default(),
        })
    }

    /// False only when the holder ran on this host and its process is gone.
    fn may_be_running(&self) -> bool {
        if !self.host.is_empty() && self.host != hostname() {
            return true;
        }
        let Ok(pid) = libc::pid_t::try_from(self.pid) else {
            return true;
        };
        // Signal 0 checks for existence; EPERM means it exists as another user.
        // SAFETY: kill with signal 0 sends nothing.
        let rc = unsafe { libc::kill(pid, 0) };
        rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
    }
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "pid {}", self.pid)?;
        if !self.host.is_empty() {
            write!(f, " on {}", self.host)?;
        }
        if !self.what.is_empty() {
            write!(f, ", `{}`", self.what)?;
        }
        if let Some(t) = chrono::DateTime::from_timestamp(self.since as i64, 0)
            && self.since > 0
        {
            write!(f, ", since {}", t.format("%Y-%m-%d %H:%M:%S UTC"))?;
        }
        Ok(())
    }
}

/// Why a writer did not get the lock.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "another maestro change to this SoT is in progress ({}); waited {}s for it. Nothing was changed: try again, or wait longer with --wait SECONDS",
        holder.as_ref().map_or_else(|| "holder unknown".to_string(), Holder::to_string),
        waited.as_secs()
    )]
    Busy {
        path: PathBuf,
        holder: Option<Holder>,
        waited: Duration,
    },
    #[error(
        "a maestro change to this SoT was interrupted: {holder} took {} and is no longer running. Its files may be half-written: check `git status`, then remove the lock (`rm {}`) and try again. Nothing was changed",
        path.display(), path.display()
    )]
    Stale { path: PathBuf, holder: Holder },
    #[error("cannot take the SoT lock {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A held lock; dropping it releases the lock.
#[derive(Debug)]
pub struct SotLock {
    path: PathBuf,
}

impl SotLock {
    /// Take the lock in `git_dir`, waiting up to `wait` for another writer.
    pub fn acquire(git_dir: &Path, what: &str, wait: Duration) -> Result<SotLock> {
        let path = git_dir.join(LOCK_FILE);
        let io = |source| {
            SotError::Lock(LockError::Io {
                path: path.clone(),
                source,
            })
        };
        // Write the holder beside the lock, then link it into place: the lock
        // appears atomically with its contents, so a reader never sees it empty.
        let mut tmp = tempfile::Builder::new()
            .prefix(".maestro-sot.lock.")
            .tempfile_in(git_dir)
            .map_err(io)?;
        tmp.write_all(Holder::current(what).to_text().as_bytes())
            .map_err(io)?;
        let started = Instant::now();
        let mut pause = Duration::from_millis(5);
        loop {
            match std::fs::hard_link(tmp.path(), &path) {
                Ok(()) => return Ok(SotLock { path }),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(io(e)),
            }
            let holder = std::fs::read_to_string(&path)
                .ok()
                .and_then(|t| Holder::parse(&t));
            if let Some(h) = &holder
                && !h.may_be_running()
            {
                return Err(SotError::Lock(LockError::Stale {
                    path,
                    holder: h.clone(),
                }));
            }
            if started.elapsed() >= wait {
                return Err(SotError::Lock(LockError::Busy {
                    path,
                    holder,
                    waited: started.elapsed(),
                }));
            }
            std::thread::sleep(pause.min(wait.saturating_sub(started.elapsed())));
            pause = (pause * 2).min(Duration::from_millis(100));
        }
    }
}

impl Drop for SotLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_writer_waits_then_gets_the_lock_once_it_is_released() {
        let dir = tempfile::tempdir().unwrap();
        let first = SotLock::acquire(dir.path(), "first", DEFAULT_WAIT).unwrap();
        let err = SotLock::acquire(dir.path(), "second", Duration::from_millis(50)).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains(&format!("pid {}", std::process::id())) && text.contains("`first`"),
            "{text}"
        );
        drop(first);
        let _second = SotLock::acquire(dir.path(), "second", Duration::ZERO).unwrap();
    }

    #[test]
    fn a_lock_left_by_a_dead_process_is_explained_not_broken() {
        let dir = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        let path = dir.path().join(LOCK_FILE);
        std::fs::write(&path, format!("pid={dead}\nwhat=node add x\n")).unwrap();
        let err = SotLock::acquire(dir.path(), "y", DEFAULT_WAIT).unwrap_err();
        assert!(
            matches!(err, SotError::Lock(LockError::Stale { .. })),
            "{err}"
        );
        assert!(err.to_string().contains(&format!("rm {}", path.display())));
        assert!(path.exists(), "a stale lock is never removed automatically");
    }
}
