//! The shared real-sshd test fleet: started once per test binary by
//! `tests/fleet/fleet.sh` (isolated OpenSSH nodes on 127.0.10.x), stopped by
//! its watchdog when the test process exits.
//!
//! Missing prerequisites (root, sshd) fail the tests: they are never skipped.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// At most 99: fleet.sh names nodes n01..n99 (three digits from 100 on,
/// which every test's node names would then miss).
pub const FLEET_SIZE: usize = 99;

pub struct Fleet {
    pub dir: PathBuf,
    pub port: u16,
    /// Node i listens on `{net}.i` (default 127.0.10; set MAESTRO_TEST_NET to
    /// run a second fleet beside this one, e.g. 127.0.20).
    pub net: String,
}

static FLEET: OnceLock<Fleet> = OnceLock::new();

/// How a test binary's fleet is laid out: its size, the environment variable
/// that moves it to another 127.0.X network (to run two copies of the suite
/// side by side), and its default network. Each test binary that needs nodes
/// has its own fleet on its own network, so a fleet still stopping never
/// collides with the next binary's.
pub struct Layout {
    pub size: usize,
    pub net_var: &'static str,
    pub default_net: &'static str,
}

/// The fleet of `tests/real_fleet/`.
pub const REAL_FLEET: Layout = Layout {
    size: FLEET_SIZE,
    net_var: "MAESTRO_TEST_NET",
    default_net: "127.0.10",
};

pub fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fleet/fleet.sh")
}

/// The fleet of `tests/real_fleet/`, started on first use.
pub fn fleet() -> &'static Fleet {
    fleet_of(&REAL_FLEET)
}

/// This test binary's fleet, started on first use with `layout` (a binary
/// uses one layout).
pub fn fleet_of(layout: &Layout) -> &'static Fleet {
    assert!(layout.size <= FLEET_SIZE, "fleet.sh names at most 99 nodes");
    FLEET.get_or_init(|| {
        let euid = unsafe_free_euid();
        assert_eq!(
            euid, 0,
            "the real-sshd fleet tests need root (mount namespaces); run them as root, as CI does"
        );
        assert!(
            Path::new("/usr/sbin/sshd").exists(),
            "the real-sshd fleet tests need OpenSSH's sshd: apt-get install -y openssh-server (.ci/run does this)"
        );
        let dir = std::env::temp_dir().join(format!("maestro-test-fleet-{}", std::process::id()));
        let net = std::env::var(layout.net_var).unwrap_or_else(|_| layout.default_net.into());
        let start = || {
            Command::new("bash")
                .env("FLEET_NET_PREFIX", &net)
                .arg(script())
                .args(["start", dir.to_str().unwrap(), &layout.size.to_string(), "--owner-pid"])
                .arg(std::process::id().to_string())
                .output()
                .expect("bash runs")
        };
        let text = |o: &std::process::Output| {
            format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            )
        };
        // A start has failed while the previous test binary's fleet was
        // being stopped by its watchdog (fleet.sh now checks a namespace is
        // still a node's before it signals it: namespace inode numbers are
        // reused). One more try, with the first failure printed and what it
        // left behind stopped, is what an operator would do; a second
        // failure fails the tests.
        let mut o = start();
        if !o.status.success() {
            eprintln!("starting the test fleet failed once; stopping what it left and trying again:\n{}", text(&o));
            let stop = Command::new("bash")
                .arg(script())
                .args(["stop", dir.to_str().unwrap()])
                .output()
                .expect("bash runs");
            eprintln!("{}", text(&stop));
            std::thread::sleep(std::time::Duration::from_secs(2));
            o = start();
        }
        assert!(o.status.success(), "starting the test fleet failed:\n{}", text(&o));
        let env = std::fs::read_to_string(dir.join("fleet.env")).unwrap();
        let port = env
            .lines()
            .find_map(|l| l.strip_prefix("FLEET_PORT="))
            .and_then(|p| p.trim_matches('"').parse().ok())
            .expect("fleet.env has FLEET_PORT");
        Fleet { dir, port, net }
    })
}

fn unsafe_free_euid() -> u32 {
    // /proc/self/status: "Uid: real effective saved fs"
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(str::to_string)
        })
        .and_then(|l| l.split_whitespace().nth(2).and_then(|u| u.parse().ok()))
        .unwrap_or(u32::MAX)
}

impl Fleet {
    pub fn address(&self, i: usize) -> String {
        format!("{}.{i}", self.net)
    }

    /// Run a fleet.sh subcommand on one node (`stop-node`, `kill-node`, ...).
    pub fn node_cmd(&self, cmd: &str, node: &str) -> String {
        let o = Command::new("bash")
            .arg(script())
            .args([cmd, self.dir.to_str().unwrap(), node])
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "fleet.sh {cmd} {node}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// Run a command inside a node's namespaces (to inspect its files).
    pub fn node_exec(&self, node: &str, cmd: &[&str]) -> std::process::Output {
        Command::new("bash")
            .arg(script())
            .args(["node-exec", self.dir.to_str().unwrap(), node, "--"])
            .args(cmd)
            .output()
            .unwrap()
    }

    pub fn known_hosts(&self) -> String {
        std::fs::read_to_string(self.dir.join("known_hosts")).unwrap()
    }

    pub fn key(&self) -> PathBuf {
        self.dir.join("id_ed25519")
    }
}

/// A scratch operator environment: a SoT over some fleet nodes, a HOME with
/// the fleet's key and known_hosts in ~/.ssh, and a run store.
pub struct Operator {
    pub tmp: tempfile::TempDir,
    pub sot: PathBuf,
    pub home: PathBuf,
    pub db: PathBuf,
}

impl Operator {
    /// `nodes`: fleet node numbers to put in the SoT (as nNN at the fleet's address N).
    pub fn new(nodes: &[usize]) -> Operator {
        Operator::on(fleet(), nodes)
    }

    /// [`Operator::new`] over another binary's fleet.
    pub fn on(f: &Fleet, nodes: &[usize]) -> Operator {
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path().join("home");
        let ssh = home.join(".ssh");
        std::fs::create_dir_all(&ssh).unwrap();
        std::fs::copy(f.key(), ssh.join("id_ed25519")).unwrap();
        std::fs::copy(f.dir.join("id_ed25519.pub"), ssh.join("id_ed25519.pub")).unwrap();
        std::fs::write(ssh.join("known_hosts"), f.known_hosts()).unwrap();
        let sot = tmp.path().join("sot");
        std::fs::create_dir_all(&sot).unwrap();
        let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
        std::fs::write(
            sot.join("maestro.toml"),
            format!(
                "[maestro]\nname = \"test-fleet\"\n\n[connection]\nuser = \"root\"\nport = {}\n\n[paths]\nprofiles = \"{}\"\nplaybooks = \"{}\"\nhardening = \"{}\"\n\n\
                 [tags]\nrequired = [\"env\", \"region\"]\n",
                f.port,
                repo.join("profiles").display(),
                repo.join("playbooks").display(),
                repo.join("hardening").display()
            ),
        )
        .unwrap();
        let mut text = String::new();
        for &i in nodes {
            let region = if i % 2 == 1 { "eu-west" } else { "us-east" };
            text.push_str(&format!(
                "[node.n{i:02}]\naddress = \"{}\"\ngroups = [\"fleet\"]\ntags = {{ env = \"test\", region = \"{region}\" }}\n\n",
                f.address(i)
            ));
        }
        std::fs::write(sot.join("nodes.toml"), text).unwrap();
        std::fs::write(
            sot.join("groups.toml"),
            "[group.fleet]\ndescription = \"the test fleet\"\n",
        )
        .unwrap();
        let db = tmp.path().join("runs.db");
        Operator { tmp, sot, home, db }
    }

    /// `maestro --sot SOT --db DB ARGS...` with this operator's HOME, to run.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = super::maestro();
        c.env("HOME", &self.home)
            .env_remove("SSH_AUTH_SOCK")
            .env_remove("XDG_STATE_HOME")
            .arg("--sot")
            .arg(&self.sot)
            .arg("--db")
            .arg(&self.db)
            .args(args);
        c
    }

    /// [`Operator::command`], run to completion.
    pub fn maestro(&self, args: &[&str]) -> std::process::Output {
        self.command(args).output().expect("maestro runs")
    }

    /// [`Operator::command`] started in the background, stdin closed and
    /// stdout and stderr piped.
    pub fn spawn(&self, args: &[&str]) -> std::process::Child {
        self.command(args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("maestro starts")
    }

    pub fn known_hosts_path(&self) -> PathBuf {
        self.home.join(".ssh/known_hosts")
    }
}
