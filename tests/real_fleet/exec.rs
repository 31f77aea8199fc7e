//! `maestro exec` against real OpenSSH nodes (tests/fleet/fleet.sh): results,
//! failures, host keys, ssh_config, ProxyJump, --forks, hostile output,
//! cancellation, and the run store.
//!
//! One fleet of 16 nodes is shared by every test here. Tests that break a
//! node use a node of their own: n11 stopped, n12 killed, n13 rekeyed,
//! n14 unknown, n15/n16 ssh_config and ProxyJump.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common;
use crate::common::fleet::{Operator, fleet};
use crate::common::{stderr, stdout};

fn json_lines(out: &str) -> Vec<serde_json::Value> {
    out.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

#[test]
fn exec_on_ten_nodes_reports_and_stores_every_result() {
    let op = Operator::new(&(1..=10).collect::<Vec<_>>());
    let o = op.maestro(&["exec", "all", "--", "uname", "-r"]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{out}{}", stderr(&o));
    assert!(
        stderr(&o).contains("exec on 10 nodes (all)"),
        "the target count is printed first: {}",
        stderr(&o)
    );
    let kernel =
        String::from_utf8(Command::new("uname").arg("-r").output().unwrap().stdout).unwrap();
    for i in 1..=10 {
        assert!(
            out.contains(&format!("n{i:02} | OK | rc=0")),
            "n{i:02} missing:\n{out}"
        );
    }
    assert_eq!(
        out.matches(kernel.trim()).count(),
        10,
        "each node printed `uname -r`:\n{out}"
    );
    assert!(
        out.contains("10 nodes in") && out.contains("ok=10 failed=0 unreachable=0"),
        "{out}"
    );

    // The run is in the store, with every node's output.
    let runs = op.maestro(&["runs"]);
    assert!(
        stdout(&runs)
            .lines()
            .nth(1)
            .is_some_and(|l| l.contains("exec") && l.contains("finished")),
        "{}",
        stdout(&runs)
    );
    let show = op.maestro(&["--json", "runs", "show", "last"]);
    let v = &json_lines(&stdout(&show))[0];
    assert_eq!(v["run"]["ok"], 10);
    assert_eq!(v["run"]["command"], "uname -r");
    let results = v["results"].as_array().unwrap();
    assert_eq!(results.len(), 10);
    for (i, r) in results.iter().enumerate() {
        assert_eq!(r["node"], format!("n{:02}", i + 1));
        assert_eq!(r["status"], "ok");
        assert_eq!(r["exit_code"], 0);
        assert_eq!(r["stdout"]["bytes"].as_str().unwrap().trim(), kernel.trim());
    }
}

#[test]
fn a_stopped_node_is_unreachable_and_the_others_still_run() {
    let f = fleet();
    f.node_cmd("stop-node", "n11");
    let op = Operator::new(&[2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
    let started = Instant::now();
    let o = op.maestro(&["exec", "all", "--connect-timeout", "3", "--", "hostname"]);
    let elapsed = started.elapsed();
    f.node_cmd("start-node", "n11");
    let out = stdout(&o);
    assert_eq!(
        o.status.code(),
        Some(1),
        "exit 1 when some targets failed:\n{out}"
    );
    assert!(out.contains("ok=9 failed=0 unreachable=1"), "{out}");
    let recap_line = out.lines().find(|l| l.starts_with("  n11 ")).unwrap();
    assert!(
        recap_line.contains("unreachable") && recap_line.contains(&f.address(11)),
        "{recap_line}"
    );
    for i in 2..=10 {
        assert!(out.contains(&format!("n{i:02} | OK")), "{out}");
    }
    assert!(
        elapsed < Duration::from_secs(3 + 5),
        "unreachable within the connect timeout, took {elapsed:?}"
    );
}

#[test]
fn a_node_whose_sshd_dies_mid_command_fails_alone() {
    let f = fleet();
    let op = Operator::new(&[1, 3, 12]);
    // Each node waits for a file in its own private /tmp: nothing finishes
    // before the test says so, however slow the machine is.
    let cmd = "while [ ! -e /tmp/release-after-kill ]; do sleep 0.1; done; echo finished";
    let child = op.spawn(&["exec", "all", "--", cmd]);
    let running = || {
        String::from_utf8(
            Command::new("ps")
                .args(["-eo", "args"])
                .output()
                .unwrap()
                .stdout,
        )
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("/bin/sh -c") && l.contains("release-after-kill"))
        .count()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while running() < 3 {
        assert!(
            Instant::now() < deadline,
            "the command never ran on all three nodes"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    f.node_cmd("kill-node", "n12");
    for n in ["n01", "n03"] {
        assert!(
            f.node_exec(n, &["touch", "/tmp/release-after-kill"])
                .status
                .success()
        );
    }
    let o = child.wait_with_output().unwrap();
    f.node_cmd("start-node", "n12");
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(
        out.contains("n12 | FAILED") && out.contains("connection lost"),
        "{out}"
    );
    assert!(
        out.contains("n01 | OK") && out.contains("n03 | OK"),
        "{out}"
    );
    assert!(out.contains("ok=2 failed=1"), "{out}");
}

/// Processes on this machine (nodes share its PID namespace) whose command line is `args`.
fn count_processes(args: &str) -> usize {
    String::from_utf8(
        Command::new("ps")
            .args(["-eo", "args"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
    .lines()
    .filter(|l| l.trim() == args)
    .count()
}

/// Wait (up to 30 s, however loaded the machine) until `n` such processes run.
fn wait_for_processes(args: &str, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while count_processes(args) < n {
        assert!(Instant::now() < deadline, "`{args}` never ran on {n} nodes");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn host_keys_changed_unknown_and_accept_new() {
    let f = fleet();
    // Changed: n13 gets a new host key that known_hosts does not have.
    let new_fp = f.node_cmd("rekey-node", "n13");
    let op = Operator::new(&[13, 14]);
    let o = op.maestro(&["exec", "n13", "--", "true"]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        out.contains(&format!(
            "WARNING: the host key of n13 ({}) has CHANGED",
            f.address(13)
        )),
        "{out}"
    );
    assert!(
        out.contains(new_fp.trim()),
        "the new fingerprint is shown: {out}"
    );
    // --accept-new never accepts a changed key.
    let o = op.maestro(&["exec", "n13", "--accept-new", "--", "true"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).contains("has CHANGED"), "{}", stdout(&o));

    // Unknown: drop n14 from known_hosts.
    let kh = op.known_hosts_path();
    let text = std::fs::read_to_string(&kh).unwrap();
    let kept: String = text
        .lines()
        .filter(|l| !l.contains(&f.address(14)))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&kh, &kept).unwrap();
    let o = op.maestro(&["exec", "n14", "--", "true"]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(1));
    let fp = String::from_utf8(
        Command::new("ssh-keygen")
            .args(["-lf"])
            .arg(f.dir.join("nodes/n14/ssh_host_ed25519_key.pub"))
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let fp = fp.split_whitespace().nth(1).unwrap().to_string();
    assert!(
        out.contains(&format!("unknown host key for n14 ({})", f.address(14))) && out.contains(&fp),
        "fingerprint {fp} shown:\n{out}"
    );
    // How to trust it: check the fingerprint out of band first, then either
    // --accept-new or the exact line for the key that was shown; never
    // `ssh-keyscan >> known_hosts`, which trusts whatever answers.
    let key = std::fs::read_to_string(f.dir.join("nodes/n14/ssh_host_ed25519_key.pub")).unwrap();
    let blob = key.split_whitespace().nth(1).unwrap();
    let name = match f.port {
        22 => f.address(14),
        port => format!("[{}]:{port}", f.address(14)),
    };
    assert!(
        out.contains("out of band")
            && out.contains("ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub")
            && out.contains("--accept-new")
            && out.contains(&format!("{name} ssh-ed25519 {blob}"))
            && !out.contains("ssh-keyscan"),
        "says how to trust it: {out}"
    );
    assert_eq!(
        std::fs::read_to_string(&kh).unwrap(),
        kept,
        "a refused key is not recorded"
    );

    let o = op.maestro(&["exec", "n14", "--accept-new", "--", "true"]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert!(
        stderr(&o).contains("trusted new host key"),
        "{}",
        stderr(&o)
    );
    let recorded = std::fs::read_to_string(&kh).unwrap();
    assert!(
        recorded.starts_with(&kept) && recorded[kept.len()..].contains(&f.address(14)),
        "recorded:\n{recorded}"
    );
    // Now known: works without --accept-new, and the store has the note.
    let o = op.maestro(&["exec", "n14", "--", "true"]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    let show = op.maestro(&["runs", "show", "last"]);
    assert!(stdout(&show).contains("ok=1"), "{}", stdout(&show));
}

#[test]
fn ssh_config_alias_and_proxy_jump() {
    let f = fleet();
    let op = Operator::new(&[]);
    // The node's address is an ssh_config alias; the identity file has a non-default name.
    std::fs::rename(
        op.home.join(".ssh/id_ed25519"),
        op.home.join(".ssh/fleet_key"),
    )
    .unwrap();
    std::fs::remove_file(op.home.join(".ssh/id_ed25519.pub")).unwrap();
    std::fs::write(
        op.home.join(".ssh/config"),
        format!(
            "Host n15-alias\n  HostName {a15}\n  Port {port}\n  User op\n  IdentityFile ~/.ssh/fleet_key\n\n\
             Host {a16}\n  ProxyJump n15-alias\n  IdentityFile ~/.ssh/fleet_key\n",
            port = f.port,
            a15 = f.address(15),
            a16 = f.address(16)
        ),
    )
    .unwrap();
    std::fs::write(
        op.sot.join("nodes.toml"),
        format!(
            "[node.aliased]\naddress = \"n15-alias\"\ntags = {{ env = \"test\", region = \"eu-west\" }}\n\n\
             [node.behind-jump]\naddress = \"{}\"\ntags = {{ env = \"test\", region = \"us-east\" }}\n",
            f.address(16)
        ),
    )
    .unwrap();
    // With the default sot port set, ssh_config's Port still applies to the alias
    // because the node does not set one itself.
    let o = op.maestro(&["exec", "aliased", "--", "id -un; hostname"]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert!(
        stdout(&o).contains("op\nn15"),
        "ran as op on n15: {}",
        stdout(&o)
    );

    let jump_log = f.dir.join("nodes/n15/sshd.log");
    let accepted = || {
        std::fs::read_to_string(&jump_log)
            .unwrap()
            .matches("Accepted publickey for op")
            .count()
    };
    let before = accepted();
    let o = op.maestro(&["exec", "behind-jump", "--", "hostname"]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("n16"), "{}", stdout(&o));
    assert_eq!(
        accepted(),
        before + 1,
        "the session went through the jump host n15"
    );
}

#[test]
fn forks_bounds_the_sessions_open_at_once() {
    let op = Operator::new(&(1..=10).collect::<Vec<_>>());
    let o = op.maestro(&[
        "--json",
        "exec",
        "all",
        "--forks",
        "3",
        "--",
        "echo start $(date +%s%N); sleep 0.4; echo end $(date +%s%N)",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let mut spans = Vec::new();
    for v in json_lines(&stdout(&o)) {
        if v["event"] == "node_finished" {
            let text = v["result"]["stdout"]["bytes"].as_str().unwrap().to_string();
            let num = |key: &str| -> u128 {
                text.lines()
                    .find_map(|l| l.strip_prefix(key))
                    .unwrap()
                    .trim()
                    .parse()
                    .unwrap()
            };
            spans.push((num("start "), num("end ")));
        }
    }
    assert_eq!(spans.len(), 10);
    // The most commands ever running at one instant, observed on the nodes.
    let most = spans
        .iter()
        .map(|&(s, _)| spans.iter().filter(|&&(s2, e2)| s2 <= s && s < e2).count())
        .max()
        .unwrap();
    assert_eq!(
        most, 3,
        "--forks 3 must run exactly 3 at a time at most (and use them): {spans:?}"
    );
}

#[test]
fn hostile_output_neither_breaks_the_terminal_nor_the_store() {
    let op = Operator::new(&[1, 2]);
    let cmd = r"printf '\033[2J\033]0;pwned\007\233 title\n'; printf 'bad \377\376 utf8\n'; head -c 10000000 /dev/zero | tr '\0' A; printf '\033[31m' >&2";
    let o = op.maestro(&["exec", "all", "--", cmd]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let raw = &o.stdout;
    assert!(
        !raw.contains(&0x1b) && !raw.contains(&0x07),
        "no escape or bell byte reaches the terminal"
    );
    assert!(
        std::str::from_utf8(raw).is_ok(),
        "what reaches the terminal is valid UTF-8"
    );
    let out = stdout(&o);
    assert!(
        out.contains("^[[2J") && out.contains("bad \u{FFFD}\u{FFFD} utf8"),
        "{}",
        &out[..400.min(out.len())]
    );
    assert!(
        out.len() < 400_000,
        "10 MB per node is not dumped on the terminal ({} bytes)",
        out.len()
    );

    let show = op.maestro(&["--json", "runs", "show", "last", "--node", "n01"]);
    let v = &json_lines(&stdout(&show))[0];
    let r = &v["results"][0];
    assert_eq!(r["status"], "ok");
    assert_eq!(
        r["stdout"]["total"].as_u64().unwrap(),
        10_000_000 + 34,
        "every byte counted"
    );
    assert!(
        r["stdout"]["bytes"].as_str().unwrap().len() >= 1 << 20,
        "1 MiB kept"
    );
    assert_eq!(
        r["stderr"]["bytes"], "\u{1b}[31m",
        "raw bytes are stored as they came"
    );
    let text = op.maestro(&["runs", "show", "last", "--node", "n02"]);
    assert!(!text.stdout.contains(&0x1b), "runs show sanitizes too");
}

#[test]
fn ctrl_c_stops_remote_commands_and_says_which_nodes_were_cut_off() {
    let op = Operator::new(&[3, 5]);
    let child = op.spawn(&["exec", "all", "--", "sleep 31.7; echo never"]);
    let pid = child.id();
    let remote = || count_processes("sleep 31.7");
    wait_for_processes("sleep 31.7", 2);
    assert_eq!(remote(), 2, "the command is running on both nodes");
    let started = Instant::now();
    Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "cancelling took {:?}",
        started.elapsed()
    );
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{out}{}", stderr(&o));
    assert!(
        out.contains("cancelled=2") && out.contains("cut off on n03, n05"),
        "{out}"
    );
    assert_eq!(
        remote(),
        0,
        "the remote commands were stopped, not left running"
    );
    let show = op.maestro(&["runs"]);
    assert!(stdout(&show).contains("cancelled"), "{}", stdout(&show));
}

#[test]
fn an_encrypted_key_without_an_agent_is_a_clear_error_not_a_prompt() {
    let op = Operator::new(&[1]);
    let key = op.home.join(".ssh/id_ed25519");
    std::fs::remove_file(&key).unwrap();
    std::fs::remove_file(op.home.join(".ssh/id_ed25519.pub")).unwrap();
    let s = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "sekret", "-f"])
        .arg(&key)
        .status()
        .unwrap();
    assert!(s.success());
    let started = Instant::now();
    let o = op.maestro(&["exec", "all", "--", "true"]);
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(o.status.code(), Some(1));
    let out = stdout(&o);
    assert!(
        out.contains("is encrypted and no ssh-agent holds it") && out.contains("ssh-add"),
        "{out}"
    );
}

#[test]
fn authentication_through_ssh_agent() {
    let f = fleet();
    let op = Operator::new(&[1, 2]);
    std::fs::remove_file(op.home.join(".ssh/id_ed25519")).unwrap();
    let sock = op.tmp.path().join("agent.sock");
    let mut agent = Command::new("ssh-agent")
        .arg("-D")
        .arg("-a")
        .arg(&sock)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !sock.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let added = Command::new("ssh-add")
        .arg(f.key())
        .env("SSH_AUTH_SOCK", &sock)
        .output()
        .unwrap();
    let o = common::maestro()
        .env("HOME", &op.home)
        .env("SSH_AUTH_SOCK", &sock)
        .args([
            "--sot",
            op.sot.to_str().unwrap(),
            "--db",
            op.db.to_str().unwrap(),
            "exec",
            "all",
            "--",
            "echo via-agent",
        ])
        .output()
        .unwrap();
    let _ = agent.kill();
    let _ = agent.wait();
    assert!(
        added.status.success(),
        "ssh-add: {}",
        String::from_utf8_lossy(&added.stderr)
    );
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert_eq!(stdout(&o).matches("via-agent").count(), 2);
}

#[test]
fn json_prints_one_object_per_event() {
    let op = Operator::new(&[4, 6]);
    let o = op.maestro(&["--json", "exec", "all", "--", "echo hi"]);
    assert_eq!(o.status.code(), Some(0));
    let events: Vec<String> = json_lines(&stdout(&o))
        .iter()
        .map(|v| v["event"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(events.first().map(String::as_str), Some("run_started"));
    assert_eq!(events.last().map(String::as_str), Some("run_finished"));
    assert_eq!(events.iter().filter(|e| *e == "node_finished").count(), 2);
    assert_eq!(events.iter().filter(|e| *e == "node_connected").count(), 2);
}

#[test]
fn a_target_that_matches_nothing_is_invalid_input() {
    let op = Operator::new(&[1]);
    let o = op.maestro(&["exec", "n1", "--", "true"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("`n1` matches no node, group or tag (did you mean `n01`?)"),
        "{}",
        stderr(&o)
    );
}
