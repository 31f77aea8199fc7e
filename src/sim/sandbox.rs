//! The opt-in sandbox for a simulated node's commands (`SimConfig::sandbox`,
//! used by `maestro demo`): a command may write its node's directory and
//! private scratch space, and nothing else on the real host.
//!
//! The simulator runs commands with `sh -c` as the operator on the operator's
//! machine, so without this, `maestro demo` plus `rm -rf ~` would be real.
//! Each sandboxed command starts in fresh namespaces, set up in the forked
//! child before `exec` (only raw syscalls there: it is the child of a
//! multi-threaded process, so nothing may allocate):
//!
//! 1. **Who it runs as.** Run as root, the simulator first switches the child
//!    to [`SANDBOX_UID`]/[`SANDBOX_GID`], an id that owns nothing on the host
//!    (so the command cannot signal host processes, open root's devices or
//!    sockets, or write root's files even through a gap in the mounts). Run
//!    as another user, the command keeps that user's id, and step 4 keeps it
//!    away from that user's processes.
//! 2. **A private mount namespace** (inside a new user namespace when not
//!    root) in which every mount of the host is made read-only and nosuid,
//!    recursively (`mount_setattr(2)` with `AT_RECURSIVE`, kernel ≥ 5.12);
//!    `/tmp`, `/var/tmp` and `/dev/shm` get private tmpfs mounts; the node's
//!    directory alone is bind-mounted writable, at its own path.
//! 3. **No way back.** The command finally runs in yet another user namespace:
//!    it holds no capability over the mount namespace above, and any mount
//!    namespace it creates gets copies whose read-only flags are locked by
//!    the kernel (`MNT_LOCK_READONLY`). `no_new_privs` is set, so setuid
//!    binaries gain nothing either.
//! 4. **Its own network, hostname, IPC and PID namespaces**: no network but
//!    an unconfigured loopback, `hostname` prints the node's name, and
//!    `kill -9 -1` only reaches the command's own processes. The process
//!    spawned by the simulator waits for the command (PID 1 of the new PID
//!    namespace) and exits the same way.
//!
//! [`probe`] checks all of this on the running kernel by running a command
//! in the sandbox and reading the mount table it sees.

use std::ffi::{CString, OsStr};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;

/// The user id sandboxed commands run as when the simulator runs as root.
/// Chosen to own nothing on the host; no /etc/passwd entry is needed.
pub const SANDBOX_UID: u32 = 2_100_000_000;
pub const SANDBOX_GID: u32 = 2_100_000_000;

/// Directories that get a private tmpfs (when they exist as directories).
const PRIVATE_TMPFS: &[&str] = &["/tmp", "/var/tmp", "/dev/shm"];
/// Processes the sandbox user may have at once across all nodes (root only:
/// RLIMIT_NPROC counts per real user, and only sandboxed commands use it).
const MAX_PROCESSES: libc::rlim_t = 1024;
/// Largest file a sandboxed command may write.
const MAX_FILE_BYTES: libc::rlim_t = 256 << 20;

// The new mount API (linux/mount.h), spelled out to stay independent of
// which libc release exports it.
const OPEN_TREE_CLONE: libc::c_uint = 1;
const OPEN_TREE_CLOEXEC: libc::c_uint = libc::O_CLOEXEC as libc::c_uint;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;
const MOUNT_ATTR_RDONLY: u64 = 0x1;
const MOUNT_ATTR_NOSUID: u64 = 0x2;
const MOUNT_ATTR_NODEV: u64 = 0x4;
const AT_RECURSIVE: libc::c_uint = 0x8000;

#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// Everything the child needs, prepared before `fork` (nothing is allocated
/// after it).
#[derive(Debug)]
pub struct Sandbox {
    node_dir: PathBuf,
    node_dir_c: CString,
    hostname: Vec<u8>,
    /// Whether to switch to SANDBOX_UID first (the simulator runs as root).
    as_root: bool,
    /// `0 <uid> 1` for the first user namespace (not root) ...
    outer_uid_map: CString,
    outer_gid_map: CString,
    /// ... and for the last one, which the command runs in.
    inner_uid_map: CString,
    inner_gid_map: CString,
    tmpfs: Vec<CString>,
    /// Directories to create inside a private tmpfs so the node directory has
    /// a mount point there (outermost first, the node directory last).
    mount_point_dirs: Vec<CString>,
}

impl Sandbox {
    /// The sandbox of one node: `node_dir` (absolute, canonical) stays
    /// writable; the command's hostname is `hostname`.
    pub fn new(node_dir: &Path, hostname: &str) -> io::Result<Sandbox> {
        if !node_dir.is_absolute() {
            return Err(io::Error::other(format!(
                "sandbox: the node directory must be absolute: {}",
                node_dir.display()
            )));
        }
        let cstr = |b: &[u8]| CString::new(b).map_err(io::Error::other);
        // SAFETY: plain getters.
        let (euid, egid) = unsafe { (libc::geteuid(), libc::getegid()) };
        let as_root = euid == 0;
        let (inner_uid, inner_gid) = if as_root {
            (SANDBOX_UID, SANDBOX_GID)
        } else {
            (0, 0)
        };
        let tmpfs: Vec<&str> = PRIVATE_TMPFS
            .iter()
            .copied()
            .filter(|d| {
                std::fs::symlink_metadata(d)
                    .map(|m| m.is_dir())
                    .unwrap_or(false)
            })
            .collect();
        let mut mount_point_dirs = Vec::new();
        if let Some(root) = tmpfs.iter().find(|t| node_dir.starts_with(t)) {
            let mut dir = PathBuf::from(root);
            for part in node_dir.strip_prefix(root).unwrap_or(Path::new("")) {
                dir.push(part);
                mount_point_dirs.push(cstr(dir.as_os_str().as_bytes())?);
            }
        }
        Ok(Sandbox {
            node_dir: node_dir.to_path_buf(),
            node_dir_c: cstr(node_dir.as_os_str().as_bytes())?,
            hostname: hostname.as_bytes().to_vec(),
            as_root,
            outer_uid_map: cstr(format!("0 {euid} 1").as_bytes())?,
            outer_gid_map: cstr(format!("0 {egid} 1").as_bytes())?,
            inner_uid_map: cstr(format!("0 {inner_uid} 1").as_bytes())?,
            inner_gid_map: cstr(format!("0 {inner_gid} 1").as_bytes())?,
            tmpfs: tmpfs
                .iter()
                .map(|t| cstr(t.as_bytes()))
                .collect::<io::Result<_>>()?,
            mount_point_dirs,
        })
    }

    /// Prepare the node directory on the host: owned by the sandbox user
    /// when the simulator runs as root (so the command can write it).
    pub fn prepare_dir(&self) -> io::Result<()> {
        if self.as_root {
            std::os::unix::fs::chown(&self.node_dir, Some(SANDBOX_UID), Some(SANDBOX_GID))?;
        }
        Ok(())
    }

    /// `sh -c <command>` in the sandbox, in the node directory, with a
    /// minimal environment. stdin/stdout/stderr are left to the caller.
    pub fn command(
        self: &std::sync::Arc<Self>,
        command: &[u8],
        env: &[(&str, &OsStr)],
    ) -> std::process::Command {
        let mut cmd = std::process::Command::new("/bin/sh");
        cmd.arg("-c").arg(OsStr::from_bytes(command)).env_clear();
        cmd.env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .env("HOME", &self.node_dir)
        .env("PWD", &self.node_dir)
        .env("LANG", "C.UTF-8");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let sandbox = std::sync::Arc::clone(self);
        // SAFETY: `enter` only makes raw syscalls on data prepared above.
        unsafe {
            cmd.pre_exec(move || {
                sandbox.enter();
                Ok(())
            });
        }
        cmd
    }

    /// Runs in the forked child. Returns only in the sandboxed process, ready
    /// to `exec`; on any failure it writes the step to stderr and exits 125.
    fn enter(&self) {
        // SAFETY (whole function): raw syscalls on NUL-terminated strings and
        // plain structs owned by `self`; no allocation.
        unsafe {
            if !self.as_root {
                check(libc::unshare(libc::CLONE_NEWUSER), b"unshare(user)");
                write_file(c"/proc/self/setgroups", b"deny", b"setgroups");
                write_file(
                    c"/proc/self/uid_map",
                    self.outer_uid_map.as_bytes(),
                    b"uid_map",
                );
                write_file(
                    c"/proc/self/gid_map",
                    self.outer_gid_map.as_bytes(),
                    b"gid_map",
                );
            }
            check(
                libc::unshare(
                    libc::CLONE_NEWNS
                        | libc::CLONE_NEWNET
                        | libc::CLONE_NEWUTS
                        | libc::CLONE_NEWIPC
                        | libc::CLONE_NEWPID,
                ),
                b"unshare(mount, net, uts, ipc, pid)",
            );
            check(
                libc::mount(
                    std::ptr::null(),
                    c"/".as_ptr(),
                    std::ptr::null(),
                    libc::MS_REC | libc::MS_PRIVATE,
                    std::ptr::null(),
                ),
                b"making mounts private",
            );
            // A detached copy of the node directory, taken before everything
            // becomes read-only, attached again below.
            let node_tree = libc::syscall(
                libc::SYS_open_tree,
                libc::AT_FDCWD,
                self.node_dir_c.as_ptr(),
                OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC,
            ) as libc::c_int;
            check(node_tree, b"open_tree(node directory)");
            let read_only = MountAttr {
                attr_set: MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID,
                attr_clr: 0,
                propagation: 0,
                userns_fd: 0,
            };
            check(
                libc::syscall(
                    libc::SYS_mount_setattr,
                    libc::AT_FDCWD,
                    c"/".as_ptr(),
                    AT_RECURSIVE,
                    &read_only as *const MountAttr,
                    std::mem::size_of::<MountAttr>(),
                ) as libc::c_int,
                b"mount_setattr(/, recursive read-only)",
            );
            for dir in &self.tmpfs {
                check(
                    libc::mount(
                        c"tmpfs".as_ptr(),
                        dir.as_ptr(),
                        c"tmpfs".as_ptr(),
                        libc::MS_NOSUID | libc::MS_NODEV,
                        c"mode=1777,size=64m".as_ptr().cast(),
                    ),
                    b"mounting a private tmpfs",
                );
            }
            for dir in &self.mount_point_dirs {
                if libc::mkdir(dir.as_ptr(), 0o755) != 0 && errno() != libc::EEXIST {
                    fail(b"creating the node directory's mount point");
                }
            }
            let writable = MountAttr {
                attr_set: MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
                attr_clr: MOUNT_ATTR_RDONLY,
                propagation: 0,
                userns_fd: 0,
            };
            check(
                libc::syscall(
                    libc::SYS_mount_setattr,
                    node_tree,
                    c"".as_ptr(),
                    libc::AT_EMPTY_PATH as libc::c_uint,
                    &writable as *const MountAttr,
                    std::mem::size_of::<MountAttr>(),
                ) as libc::c_int,
                b"mount_setattr(node directory, writable)",
            );
            check(
                libc::syscall(
                    libc::SYS_move_mount,
                    node_tree,
                    c"".as_ptr(),
                    libc::AT_FDCWD,
                    self.node_dir_c.as_ptr(),
                    MOVE_MOUNT_F_EMPTY_PATH,
                ) as libc::c_int,
                b"move_mount(node directory)",
            );
            // Enter it now, while any path to it can be walked.
            check(libc::fchdir(node_tree), b"entering the node directory");
            libc::close(node_tree);
            check(
                libc::sethostname(self.hostname.as_ptr().cast(), self.hostname.len()),
                b"sethostname",
            );

            // The new PID namespace applies to children: fork the command's
            // process (PID 1 there); this one waits and exits likewise.
            let child = libc::fork();
            check(child, b"fork");
            if child > 0 {
                reap_and_mirror(child);
            }
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            // A /proc of the new PID namespace, over the host's read-only
            // one. It must be writable for the last user namespace's id maps;
            // what it exposes is this namespace's processes, and sysctls the
            // command's user (no capability outside) may not write.
            check(
                libc::mount(
                    c"proc".as_ptr(),
                    c"/proc".as_ptr(),
                    c"proc".as_ptr(),
                    libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                    std::ptr::null(),
                ),
                b"mounting /proc",
            );
            if self.as_root {
                let nproc = libc::rlimit {
                    rlim_cur: MAX_PROCESSES,
                    rlim_max: MAX_PROCESSES,
                };
                check(libc::setrlimit(libc::RLIMIT_NPROC, &nproc), b"RLIMIT_NPROC");
                check(libc::setgroups(0, std::ptr::null()), b"setgroups");
                check(
                    libc::setresgid(SANDBOX_GID, SANDBOX_GID, SANDBOX_GID),
                    b"setresgid",
                );
                check(
                    libc::setresuid(SANDBOX_UID, SANDBOX_UID, SANDBOX_UID),
                    b"setresuid",
                );
                // Changing ids made the process non-dumpable, which would
                // leave /proc/self/uid_map owned by root.
                check(libc::prctl(libc::PR_SET_DUMPABLE, 1), b"PR_SET_DUMPABLE");
            }
            let fsize = libc::rlimit {
                rlim_cur: MAX_FILE_BYTES,
                rlim_max: MAX_FILE_BYTES,
            };
            check(libc::setrlimit(libc::RLIMIT_FSIZE, &fsize), b"RLIMIT_FSIZE");
            // The command's own user namespace: no capability over the
            // mounts above, so it cannot make them writable again.
            check(libc::unshare(libc::CLONE_NEWUSER), b"unshare(user, last)");
            write_file(c"/proc/self/setgroups", b"deny", b"setgroups (last)");
            write_file(
                c"/proc/self/uid_map",
                self.inner_uid_map.as_bytes(),
                b"uid_map (last)",
            );
            write_file(
                c"/proc/self/gid_map",
                self.inner_gid_map.as_bytes(),
                b"gid_map (last)",
            );
            check(
                libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0),
                b"PR_SET_NO_NEW_PRIVS",
            );
        }
    }
}

/// In the process the simulator spawned: wait for the sandboxed command and
/// end the same way (exit code, or the same signal).
unsafe fn reap_and_mirror(child: libc::pid_t) -> ! {
    // SAFETY: raw syscalls only.
    unsafe {
        // Keep no pipe open: the simulator sees EOF when the command's end
        // of them closes, and std's exec-error pipe closes now.
        libc::syscall(libc::SYS_close_range, 0u32, u32::MAX, 0u32);
        let mut status = 0;
        loop {
            let r = libc::waitpid(child, &mut status, 0);
            if r == child {
                break;
            }
            if r < 0 && errno() != libc::EINTR {
                libc::_exit(255);
            }
        }
        if libc::WIFEXITED(status) {
            libc::_exit(libc::WEXITSTATUS(status));
        }
        let sig = libc::WTERMSIG(status);
        libc::signal(sig, libc::SIG_DFL);
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, sig);
        libc::sigprocmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
        libc::kill(libc::getpid(), sig);
        libc::_exit(128 + sig);
    }
}

fn errno() -> libc::c_int {
    // SAFETY: errno is thread-local.
    unsafe { *libc::__errno_location() }
}

/// `what` failed: say so on stderr (the command's stderr) and exit 125.
fn fail(what: &[u8]) -> ! {
    let code = errno();
    let mut digits = [0u8; 12];
    let mut n = code.unsigned_abs();
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    // SAFETY: writes of borrowed buffers to fd 2, then _exit.
    unsafe {
        for part in [
            &b"maestro sandbox: "[..],
            what,
            &b" failed: errno "[..],
            &digits[at..],
            &b"\n"[..],
        ] {
            libc::write(2, part.as_ptr().cast(), part.len());
        }
        libc::_exit(125);
    }
}

fn check<T: Into<i64>>(ret: T, what: &[u8]) {
    if ret.into() < 0 {
        fail(what);
    }
}

/// open + write + close, failing the sandbox on any error.
unsafe fn write_file(path: &std::ffi::CStr, data: &[u8], what: &[u8]) {
    // SAFETY: raw syscalls on borrowed buffers.
    unsafe {
        let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
        check(fd, what);
        if libc::write(fd, data.as_ptr().cast(), data.len()) != data.len() as isize {
            fail(what);
        }
        libc::close(fd);
    }
}

/// Why the sandbox does not work here (shown by the read-only demo).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ProbeFailed(pub String);

/// Check that the sandbox works on this kernel: run a command in it (in a
/// throwaway node directory under `scratch`) that writes its directory and
/// reports the mounts it sees; every mount but the private ones must be
/// read-only. Harmless when the sandbox does not work: the command only
/// writes its own directory and reads.
pub fn probe(scratch: &Path) -> Result<(), ProbeFailed> {
    let dir = scratch.join(".sandbox-probe");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)
        .map_err(|e| ProbeFailed(format!("creating {}: {e}", dir.display())))?;
    let dir = dir
        .canonicalize()
        .map_err(|e| ProbeFailed(format!("resolving {}: {e}", dir.display())))?;
    let result = probe_in(&dir);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn probe_in(dir: &Path) -> Result<(), ProbeFailed> {
    let sandbox = std::sync::Arc::new(
        Sandbox::new(dir, "sandbox-probe")
            .map_err(|e| ProbeFailed(format!("preparing the sandbox: {e}")))?,
    );
    sandbox
        .prepare_dir()
        .map_err(|e| ProbeFailed(format!("preparing {}: {e}", dir.display())))?;
    let out = sandbox
        .command(
            b"echo written > ./probe && hostname && cat /proc/self/mountinfo",
            &[],
        )
        .stdin(Stdio::null())
        .output()
        .map_err(|e| ProbeFailed(format!("starting a sandboxed command: {e}")))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        return Err(ProbeFailed(format!(
            "a sandboxed command failed ({}): {}",
            out.status,
            stderr.trim()
        )));
    }
    match std::fs::read_to_string(dir.join("probe")) {
        Ok(s) if s == "written\n" => {}
        _ => {
            return Err(ProbeFailed(
                "a sandboxed command could not write its node directory".into(),
            ));
        }
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let mut lines = stdout.lines();
    if lines.next() != Some("sandbox-probe") {
        return Err(ProbeFailed(
            "a sandboxed command does not have its own hostname".into(),
        ));
    }
    let writable: Vec<&str> = lines
        .filter_map(|l| {
            // mountinfo: id parent major:minor root mountpoint options ...
            let fields: Vec<&str> = l.split(' ').collect();
            let (point, options) = (*fields.get(4)?, *fields.get(5)?);
            let private = point == dir.to_str().unwrap_or_default()
                || point == "/proc"
                || PRIVATE_TMPFS.contains(&point);
            let rw = options.split(',').any(|o| o == "rw");
            (rw && !private).then_some(point)
        })
        .collect();
    if !writable.is_empty() {
        return Err(ProbeFailed(format!(
            "mounts stay writable inside the sandbox: {}",
            writable.join(", ")
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_probe_passes_on_this_kernel() {
        let scratch = tempfile::tempdir().unwrap();
        if unsafe { libc::geteuid() } == 0 {
            // The sandbox user must be able to reach the node directory.
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(scratch.path(), std::fs::Permissions::from_mode(0o711))
                .unwrap();
        }
        probe(scratch.path()).unwrap();
    }

    #[test]
    fn a_sandboxed_command_changes_only_its_directory() {
        let scratch = tempfile::tempdir().unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(scratch.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
        let dir = scratch.path().canonicalize().unwrap().join("node");
        std::fs::create_dir(&dir).unwrap();
        let sandbox = std::sync::Arc::new(Sandbox::new(&dir, "node-01").unwrap());
        sandbox.prepare_dir().unwrap();
        let marker = format!("maestro-sandbox-test-{}", std::process::id());
        let script = format!(
            "touch /tmp/{marker}; echo x > /etc/{marker}; mkdir -p /opt/{marker}; \
             touch {outside}/{marker}; mount -o remount,rw / 2>/dev/null; echo y > /etc/{marker}; \
             echo inside > ./inside; id -u; hostname; kill -0 1 && echo pid1-is-mine; \
             ls /proc | grep -c '^[0-9]'",
            outside = scratch.path().display()
        );
        let out = sandbox
            .command(script.as_bytes(), &[])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        for path in [
            format!("/tmp/{marker}"),
            format!("/etc/{marker}"),
            format!("/opt/{marker}"),
            format!("{}/{marker}", scratch.path().display()),
        ] {
            assert!(!Path::new(&path).exists(), "{path} was written on the host");
        }
        assert_eq!(
            std::fs::read_to_string(dir.join("inside")).unwrap(),
            "inside\n"
        );
        let lines: Vec<&str> = stdout.lines().collect();
        assert_eq!(
            lines[0], "0",
            "root inside its own user namespace: {stdout}"
        );
        assert_eq!(lines[1], "node-01");
        assert_eq!(lines[2], "pid1-is-mine");
        assert!(
            lines[3].parse::<usize>().unwrap() < 5,
            "only the command's own processes are visible: {stdout}"
        );
    }
}
