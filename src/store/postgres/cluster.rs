//! A private PostgreSQL cluster for maestro's own tests and benchmarks
//! (hidden from the docs; the integration tests and `benches/` reach it as
//! `maestro::store::test_cluster`): started once per process on
//! a free loopback port, one fresh database per test, and stopped (its
//! directory removed) by a watchdog process once the test binary is gone;
//! unit tests have no teardown hook, and a watchdog also covers a binary
//! that was killed.
//!
//! PostgreSQL refuses to run as root, and CI runs as root: then the
//! cluster runs as `nobody` (setpriv). With `CI=true` a missing PostgreSQL
//! fails the tests; elsewhere they run on SQLite only and say so.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::worker::Worker;
use crate::store::{Location, PgUrl};

struct Cluster {
    port: u16,
}

impl Cluster {
    fn url(&self, database: &str) -> String {
        format!("postgres://maestro@127.0.0.1:{}/{database}", self.port)
    }
}

static CLUSTER: OnceLock<Option<Cluster>> = OnceLock::new();
static NEXT: AtomicUsize = AtomicUsize::new(0);

/// The URL of a new, empty database; `None` when PostgreSQL is not
/// installed (never under `CI=true`: there that fails).
pub fn fresh_database() -> Option<PgUrl> {
    let cluster = CLUSTER.get_or_init(start).as_ref()?;
    let name = format!("t_{}", NEXT.fetch_add(1, Ordering::Relaxed));
    // Through the worker: a test may call this from inside a tokio runtime.
    let admin = Worker::connect(&cluster.url("postgres")).expect("connecting to the test cluster");
    let create = format!("CREATE DATABASE {name}");
    admin
        .run(move |c| c.batch_execute(&create))
        .expect("the test cluster's connection thread")
        .expect("CREATE DATABASE");
    match Location::parse(&cluster.url(&name)) {
        Location::Postgres(url) => Some(url),
        Location::Sqlite(_) => unreachable!("a postgres:// URL"),
    }
}

/// [`fresh_database`] as the URL to pass to `--db` (the test cluster has
/// no password to hide).
pub fn fresh_database_url() -> Option<String> {
    fresh_database().map(|u| u.secret().to_string())
}

/// Where initdb and postgres are: `pg_config --bindir`, else the newest
/// `/usr/lib/postgresql/*/bin`.
fn bindir() -> Option<PathBuf> {
    let from_pg_config = Command::new("pg_config")
        .arg("--bindir")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    let mut installed: Vec<PathBuf> = glob::glob("/usr/lib/postgresql/*/bin")
        .into_iter()
        .flatten()
        .flatten()
        .collect();
    installed.sort_by_key(|p| {
        p.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
    });
    from_pg_config
        .into_iter()
        .chain(installed.into_iter().rev())
        .find(|dir| dir.join("initdb").is_file() && dir.join("postgres").is_file())
}

// The postmaster outlives every test and is stopped by the watchdog, never waited on.
#[allow(clippy::print_stderr, clippy::zombie_processes)]
fn start() -> Option<Cluster> {
    let Some(bin) = bindir() else {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!(
                "CI=true and PostgreSQL is not installed (no initdb under `pg_config --bindir` \
                 or /usr/lib/postgresql/*/bin): the store's tests must run on it; .ci/run installs `postgresql`"
            );
        }
        eprintln!(
            "note: PostgreSQL is not installed (no initdb): the store's tests ran on SQLite only"
        );
        return None;
    };
    let dir = tempfile::Builder::new()
        .prefix("maestro-pg-")
        .tempdir()
        .expect("a temporary directory for the test cluster")
        .keep();
    let data = dir.join("data");
    let root = unsafe { libc::geteuid() } == 0;
    if root {
        // PostgreSQL will not run as root: the cluster is nobody's.
        let chown = Command::new("chown")
            .args(["65534:65534"])
            .arg(&dir)
            .status()
            .expect("chown");
        assert!(chown.success(), "chown of {}", dir.display());
    }
    let command = |program: &str| {
        let mut c = if root {
            let mut c = Command::new("setpriv");
            c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
                .arg(bin.join(program));
            c
        } else {
            Command::new(bin.join(program))
        };
        c.current_dir(&dir).env("LC_ALL", "C").stdin(Stdio::null());
        c
    };
    let initdb = command("initdb")
        .arg("-D")
        .arg(&data)
        .args(["-U", "maestro", "--auth=trust", "-E", "UTF8", "--no-sync"])
        .output()
        .expect("running initdb");
    assert!(
        initdb.status.success(),
        "initdb failed: {}",
        String::from_utf8_lossy(&initdb.stderr)
    );
    let port = free_port();
    let log = std::fs::File::create(dir.join("postgres.log")).expect("the cluster's log");
    let mut postmaster = command("postgres")
        .arg("-D")
        .arg(&data)
        .arg("-k")
        .arg(&dir)
        .args(["-p", &port.to_string()])
        .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"])
        .stdout(log.try_clone().expect("the cluster's log"))
        .stderr(log)
        .spawn()
        .expect("starting postgres");
    watch(postmaster.id(), &dir);
    let cluster = Cluster { port };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if Worker::connect(&cluster.url("postgres")).is_ok() {
            return Some(cluster);
        }
        let log = || std::fs::read_to_string(dir.join("postgres.log")).unwrap_or_default();
        if let Ok(Some(status)) = postmaster.try_wait() {
            panic!(
                "postgres exited ({status}) before accepting connections:\n{}",
                log()
            );
        }
        assert!(
            Instant::now() < deadline,
            "postgres did not accept connections within 60 s:\n{}",
            log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// Once this test binary has exited, stop the postmaster (fast shutdown)
/// and remove the cluster's directory. The watchdog outlives this process.
#[allow(clippy::zombie_processes)]
fn watch(postmaster: u32, dir: &Path) {
    let script = r#"
        while kill -0 "$1" 2>/dev/null; do sleep 0.5; done
        kill -INT "$2" 2>/dev/null
        # Gone, a zombie nobody reaps, or 30 s: then its directory goes.
        for _ in $(seq 150); do
            kill -0 "$2" 2>/dev/null || break
            [ "$(cut -d' ' -f3 "/proc/$2/stat" 2>/dev/null)" = Z ] && break
            sleep 0.2
        done
        rm -rf -- "$3"
    "#;
    Command::new("sh")
        .args(["-c", script, "maestro-pg-watchdog"])
        .arg(std::process::id().to_string())
        .arg(postmaster.to_string())
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting the test cluster's watchdog");
}
