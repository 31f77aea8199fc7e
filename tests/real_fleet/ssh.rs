//! How maestro connects, against real OpenSSH nodes: ProxyCommand through
//! a jump node, `Match` blocks, keepalives that give up on a frozen node,
//! and a missing `-i` key.
//!
//! Nodes: n24 frozen (keepalives), n25 the ProxyCommand's jump node,
//! n26 the node behind it (reachable only through n25) and the Match node.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common;
use crate::common::fleet::{Operator, fleet};
use crate::common::{stderr, stdout};

/// Processes on this machine whose command line contains `marker`.
fn processes_with(marker: &str) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        let zombie = stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z'));
        if !zombie && args.contains(marker) {
            found.push(pid);
        }
    }
    found
}

fn spawn_maestro(op: &Operator, args: &[&str]) -> Child {
    common::maestro()
        .env("HOME", &op.home)
        .env_remove("SSH_AUTH_SOCK")
        .arg("--sot")
        .arg(&op.sot)
        .arg("--db")
        .arg(&op.db)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// The known_hosts name of `host` on the fleet's port.
fn lookup_name(host: &str, port: u16) -> String {
    match port {
        22 => host.to_string(),
        port => format!("[{host}]:{port}"),
    }
}

/// Record node `index`'s host key under another name, as a ProxyCommand
/// user would for a name only the bastion can resolve.
fn trust_as(op: &Operator, index: usize, name: &str) {
    let f = fleet();
    let ours = lookup_name(&f.address(index), f.port);
    let line = f
        .known_hosts()
        .lines()
        .find(|l| l.split_whitespace().next() == Some(ours.as_str()))
        .unwrap()
        .to_string();
    let mut text = std::fs::read_to_string(op.known_hosts_path()).unwrap();
    text.push_str(&line.replacen(&ours, &lookup_name(name, f.port), 1));
    text.push('\n');
    std::fs::write(op.known_hosts_path(), text).unwrap();
}

fn nodes_toml(op: &Operator, text: &str) {
    std::fs::write(op.sot.join("nodes.toml"), text).unwrap();
}

/// n26 is known as `hidden-target` only inside n25 (its /etc/hosts): from
/// this machine it can only be reached through a ProxyCommand on n25.
fn hide_n26_behind_n25() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let f = fleet();
        let o = f.node_exec(
            "n25",
            &[
                "sh",
                "-c",
                &format!(
                    "printf '%s\\thidden-target\\n' {} >>/etc/hosts",
                    f.address(26)
                ),
            ],
        );
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    });
}

#[test]
fn proxy_command_through_a_jump_node_reaches_a_node_only_it_can_resolve() {
    let f = fleet();
    hide_n26_behind_n25();
    let op = Operator::new(&[]);
    trust_as(&op, 26, "hidden-target");
    let log = op.tmp.path().join("proxy.log");
    // The command logs its expanded tokens, starts a helper that would
    // outlive a kill of the command alone, and tunnels with OpenSSH's -W
    // through n25 using the fleet's own client config.
    let proxy = format!(
        "sh -c 'echo \"proxy %h %p %r %n\" >>{log}; sleep 30.6061 </dev/null >/dev/null 2>&1 & exec ssh -F {cfg} -W %h:%p n25'",
        log = log.display(),
        cfg = f.dir.join("ssh_config").display()
    );
    std::fs::write(
        op.home.join(".ssh/config"),
        format!("Host behind-proxy\n  HostName hidden-target\n  ProxyCommand {proxy}\n"),
    )
    .unwrap();
    nodes_toml(
        &op,
        "[node.hidden]\naddress = \"behind-proxy\"\ntags = { env = \"test\", region = \"eu-west\" }\n",
    );
    let o = op.maestro(&["exec", "hidden", "--", "hostname"]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("hidden | OK"), "{}", stdout(&o));
    assert!(stdout(&o).contains("n26"), "ran on n26: {}", stdout(&o));
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        format!("proxy hidden-target {} root behind-proxy\n", f.port),
        "the connection went through the command, tokens expanded"
    );
    // The session is over and maestro has exited: nothing it started is left.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !processes_with("sleep 30.6061").is_empty() {
        assert!(
            Instant::now() < deadline,
            "the ProxyCommand's helper was left running: {:?}",
            processes_with("sleep 30.6061")
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    // `ProxyCommand none` (first obtained value wins) connects directly,
    // which cannot work: only n25 knows the name.
    let direct = op.tmp.path().join("direct_config");
    std::fs::write(
        &direct,
        format!("Host behind-proxy\n  ProxyCommand none\n  HostName hidden-target\nHost *\n  ProxyCommand {proxy}\n"),
    )
    .unwrap();
    let o = op.maestro(&[
        "exec",
        "hidden",
        "-F",
        direct.to_str().unwrap(),
        "--",
        "hostname",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}{}", stdout(&o), stderr(&o));
    assert!(
        stdout(&o).contains("hidden | UNREACHABLE")
            && stdout(&o).contains("cannot connect to root@hidden-target"),
        "{}",
        stdout(&o)
    );
    assert_eq!(
        std::fs::read_to_string(&log).unwrap().lines().count(),
        1,
        "no ProxyCommand ran"
    );
}

#[test]
fn a_failing_proxy_command_is_unreachable_with_the_commands_own_words() {
    let f = fleet();
    let op = Operator::new(&[]);
    std::fs::write(
        op.home.join(".ssh/config"),
        format!(
            "Host nowhere\n  ProxyCommand ssh -F {} -W %h:%p n25\n",
            f.dir.join("ssh_config").display()
        ),
    )
    .unwrap();
    nodes_toml(
        &op,
        "[node.nowhere]\naddress = \"nowhere\"\ntags = { env = \"test\", region = \"eu-west\" }\n",
    );
    let o = op.maestro(&["exec", "nowhere", "--", "true"]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{out}{}", stderr(&o));
    assert!(out.contains("nowhere | UNREACHABLE"), "{out}");
    // ssh's own complaint from the jump node, and how the command ended.
    assert!(
        out.contains(&format!(
            "through ProxyCommand `ssh -F {} -W nowhere:{} n25`",
            f.dir.join("ssh_config").display(),
            f.port
        )) && out.contains("the command exited with status 255")
            && out.contains("open failed"),
        "{out}"
    );
}

/// Stops every process of a node (a frozen machine: the TCP connection
/// stays up, nothing answers) and lets them go again when dropped.
struct Frozen(Vec<u32>);

impl Frozen {
    fn node(name: &str) -> Frozen {
        let f = fleet();
        let ns = std::fs::read_to_string(f.dir.join(format!("nodes/{name}/mntns"))).unwrap();
        let ns = ns.trim();
        let mut pids = Vec::new();
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let link = std::fs::read_link(entry.path().join("ns/mnt")).ok();
            if link.is_some_and(|l| l == Path::new(ns)) {
                pids.push(pid);
            }
        }
        assert!(!pids.is_empty(), "no process of {name} found");
        let frozen = Frozen(pids);
        frozen.signal("-STOP");
        frozen
    }

    fn signal(&self, signal: &str) {
        let mut kill = Command::new("kill");
        kill.arg(signal);
        for pid in &self.0 {
            kill.arg(pid.to_string());
        }
        let _ = kill.stderr(Stdio::null()).status();
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        self.signal("-CONT");
    }
}

#[test]
fn a_frozen_node_is_given_up_after_server_alive_interval_times_count() {
    let op = Operator::new(&[24]);
    std::fs::write(
        op.home.join(".ssh/config"),
        "Host *\n  ServerAliveInterval 1\n  ServerAliveCountMax 2\n",
    )
    .unwrap();
    let mut child = spawn_maestro(&op, &["exec", "n24", "--", "sleep 60.2424"]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while processes_with("sleep 60.2424").len() < 2 {
        assert!(
            Instant::now() < deadline,
            "the command never started on n24"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let frozen = Frozen::node("n24");
    let started = Instant::now();
    // 1 s × (2 + 1) unanswered probes, as OpenSSH counts; the default
    // (15 s × 4) would take a minute.
    let limit = Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if started.elapsed() > limit {
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let elapsed = started.elapsed();
    if status.is_none() {
        let _ = child.kill();
    }
    let o = child.wait_with_output().unwrap();
    drop(frozen);
    assert!(
        status.is_some(),
        "still waiting on the frozen node after {limit:?}"
    );
    assert!(
        elapsed >= Duration::from_secs(2),
        "given up before two probes went unanswered: {elapsed:?}"
    );
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{out}{}", stderr(&o));
    assert!(
        out.contains("n24 | FAILED") && out.contains("connection lost"),
        "{out}"
    );
}

#[test]
fn match_exec_picks_the_login_user_on_a_real_node() {
    let f = fleet();
    let op = Operator::new(&[]);
    let flag = op.tmp.path().join("use-op");
    std::fs::write(
        op.home.join(".ssh/config"),
        format!(
            "Host n26-alias\n  HostName {}\nMatch originalhost n26-alias exec \"test -e {}\"\n  User op\n",
            f.address(26),
            flag.display()
        ),
    )
    .unwrap();
    // No user set on the node: ssh_config decides (the SoT default is root).
    std::fs::write(
        op.sot.join("nodes.toml"),
        "[node.m26]\naddress = \"n26-alias\"\ntags = { env = \"test\", region = \"us-east\" }\n",
    )
    .unwrap();
    let o = op.maestro(&["exec", "m26", "--", "id -un"]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains(">>\nroot"), "{}", stdout(&o));
    assert!(
        !stderr(&o).contains("Match"),
        "no warning about Match: {}",
        stderr(&o)
    );
    std::fs::write(&flag, "").unwrap();
    let o = op.maestro(&["exec", "m26", "--", "id -un"]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains(">>\nop"), "{}", stdout(&o));
}

#[test]
fn a_missing_identity_file_is_invalid_input_that_names_it() {
    let op = Operator::new(&[26]);
    let missing = op.home.join(".ssh/id_typo");
    let started = Instant::now();
    let o = op.maestro(&["exec", "all", "-i", missing.to_str().unwrap(), "--", "true"]);
    assert_eq!(o.status.code(), Some(2), "{}{}", stdout(&o), stderr(&o));
    assert!(
        stderr(&o).contains(&format!(
            "identity file {} not accessible: No such file or directory",
            missing.display()
        )),
        "{}",
        stderr(&o)
    );
    assert!(
        !stdout(&o).contains("n26 |"),
        "nothing was tried: {}",
        stdout(&o)
    );
    assert!(started.elapsed() < Duration::from_secs(5));
}
