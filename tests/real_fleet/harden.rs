//! Hardening that independent checks confirm: every rule is audited on the
//! node's effective state, and the test checks that state itself (a logger
//! message, the moduli file, a real login shell's umask, what ssh-keyscan is
//! offered) instead of trusting the rule.
//!
//! Nodes: n91 logging, n92 key exchange, n93 login umask, n94 host keys,
//! n95 enterprise apply then drift behind maestro's back, n96 first-boot audit.
//!
//! Hardening changes host-wide state (nodes share the kernel and /dev): every
//! test here holds [`HostState`], which serialises them and puts back the
//! sysctls, the kernel's audit rules and /dev/log afterwards.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::sync::{Mutex, MutexGuard};

use crate::common::fleet::{Operator, fleet};
use crate::common::{stderr, stdout};
use crate::playbook::{json_lines, on_node};

static HOST: Mutex<()> = Mutex::new(());

/// Host-wide state the hardening rules change, saved and put back on drop.
pub(crate) struct HostState {
    sysctls: Vec<(String, String)>,
    dev_log_existed: bool,
    audit_enabled: Option<String>,
    audit_pid: Option<u32>,
    _lock: MutexGuard<'static, ()>,
}

/// A field of `auditctl -s` (the kernel's audit status).
fn audit_status(field: &str) -> Option<String> {
    let o = Command::new("auditctl").arg("-s").output().ok()?;
    String::from_utf8_lossy(&o.stdout).lines().find_map(|l| {
        l.strip_prefix(field)
            .and_then(|v| v.strip_prefix(' '))
            .map(str::to_string)
    })
}

/// The sysctl keys the baselines check or set (`_h_sysctl_check KEY …`).
fn baseline_sysctl_keys() -> BTreeSet<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("hardening");
    let mut keys = BTreeSet::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let text = std::fs::read_to_string(e.unwrap().path()).unwrap_or_default();
        for word in text.split_whitespace() {
            let w = word.trim_matches(['"', '\'', ';', '&', '|']);
            let dotted = w.split('.').count() >= 2
                && w.split('.').all(|p| {
                    !p.is_empty()
                        && p.chars()
                            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
                });
            if dotted
                && ["net.", "kernel.", "fs.", "dev.", "vm."]
                    .iter()
                    .any(|p| w.starts_with(p))
            {
                keys.insert(w.to_string());
            }
        }
    }
    keys
}

impl HostState {
    pub(crate) fn save() -> HostState {
        let lock = HOST.lock().unwrap_or_else(|e| e.into_inner());
        let sysctls = baseline_sysctl_keys()
            .into_iter()
            .filter_map(|k| {
                let path = format!("/proc/sys/{}", k.replace('.', "/"));
                std::fs::read_to_string(path)
                    .ok()
                    .map(|v| (k, v.trim().to_string()))
            })
            .collect();
        let audit_enabled = audit_status("enabled");
        let audit_pid = audit_status("pid").and_then(|p| p.parse().ok());
        HostState {
            sysctls,
            dev_log_existed: Path::new("/dev/log").exists(),
            audit_enabled,
            audit_pid,
            _lock: lock,
        }
    }
}

impl Drop for HostState {
    fn drop(&mut self) {
        for (k, v) in &self.sysctls {
            let _ = std::fs::write(
                format!("/proc/sys/{}", k.replace('.', "/")),
                format!("{v}\n"),
            );
        }
        // An auditd a test started on a node receives every record of the
        // shared kernel: stop it (by the PID the kernel reports).
        let now: Option<u32> = audit_status("pid").and_then(|p| p.parse().ok());
        if let Some(pid) = now.filter(|p| *p != 0 && Some(*p) != self.audit_pid)
            && std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.trim() == "auditd")
        {
            let _ = Command::new("kill").arg(pid.to_string()).output();
        }
        // An AIDE initialisation a remediation started in the background.
        for n in 91..=96 {
            let _ = fleet().node_exec(
                &format!("n{n}"),
                &[
                    "sh",
                    "-c",
                    "p=$(head -n 1 /run/maestro-aide-init.pid 2>/dev/null) && [ -n \"$p\" ] && kill -- -\"$p\"",
                ],
            );
        }
        if let Some(enabled) = &self.audit_enabled {
            // The kernel's audit rules are global: drop what a node loaded.
            let _ = Command::new("auditctl").arg("-D").output();
            let _ = Command::new("auditctl").args(["-e", enabled]).output();
        }
        if !self.dev_log_existed {
            // A node's rsyslogd bound /dev/log, which test nodes share.
            let _ = std::fs::remove_file("/dev/log");
        }
    }
}

/// Each rule's status and message, by rule id, from `--json harden` output.
pub(crate) fn rules(out: &str, node: &str) -> Vec<(String, String, String)> {
    let c = json_lines(out)
        .into_iter()
        .find(|v| v["event"] == "compliance")
        .unwrap_or_else(|| panic!("a compliance line in {out}"));
    let n = c["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["node"] == node)
        .unwrap_or_else(|| panic!("{node} in {c}"))
        .clone();
    n["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let name = r["rule"].as_str().unwrap();
            (
                name.split_whitespace().next().unwrap().to_string(),
                r["status"].as_str().unwrap().to_string(),
                r["message"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

pub(crate) fn status(out: &str, node: &str, rule: &str) -> (String, String) {
    rules(out, node)
        .into_iter()
        .find(|(id, _, _)| id == rule)
        .map(|(_, s, m)| (s, m))
        .unwrap_or_else(|| panic!("rule {rule} on {node} in {out}"))
}

fn passes(out: &str, node: &str, rule: &str) -> bool {
    matches!(status(out, node, rule).0.as_str(), "ok" | "changed")
}

/// `harden --audit --baseline strict --section SECTION`, as JSON.
fn audit(op: &Operator, section: &str) -> String {
    let o = op.maestro(&[
        "--json",
        "harden",
        "--audit",
        "--baseline",
        "strict",
        "--section",
        section,
    ]);
    assert!(
        matches!(o.status.code(), Some(0 | 1)),
        "audit ran: {}",
        stderr(&o)
    );
    stdout(&o)
}

fn apply(op: &Operator, args: &[&str]) -> String {
    let mut all = vec!["--json", "harden", "--apply", "--yes"];
    all.extend_from_slice(args);
    let o = op.maestro(&all);
    assert!(
        matches!(o.status.code(), Some(0 | 1)),
        "apply ran: {}{}",
        stdout(&o),
        stderr(&o)
    );
    stdout(&o)
}

/// A message sent with logger on the node reaches a log file there: what an
/// auditor checks, independent of maestro's rule.
fn a_logged_message_arrives(node: &str) -> bool {
    let probe = format!("independent-probe-{}", std::process::id());
    on_node(
        node,
        &format!(
            "logger -t test -- {probe} 2>/dev/null; for i in 1 2 3 4 5 6 7 8 9 10; do \
             grep -qs {probe} /var/log/syslog /var/log/messages /var/log/user.log && {{ echo arrived; exit 0; }}; sleep 0.3; done"
        ),
    )
    .contains("arrived")
}

fn maestro_still_gets_in(op: &Operator, node: &str) {
    let o = op.maestro(&["exec", node, "--", "echo still-in"]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("still-in"));
}

#[test]
fn logging_passes_only_when_a_logged_message_really_arrives() {
    let _host = HostState::save();
    let op = Operator::new(&[91]);
    let before = audit(&op, "logging");
    assert!(
        !a_logged_message_arrives("n91"),
        "a fresh test node records nothing"
    );
    assert!(
        !passes(&before, "n91", "LOG-01"),
        "LOG-01 passes on a node where nothing is logged: {:?}",
        status(&before, "n91", "LOG-01")
    );
    apply(&op, &["--baseline", "strict", "--section", "logging"]);
    let after = audit(&op, "logging");
    let logging: Vec<_> = rules(&after, "n91")
        .into_iter()
        .filter(|(id, _, _)| id.starts_with("LOG-"))
        .collect();
    let any_pass = logging.iter().any(|(_, s, _)| s == "ok" || s == "changed");
    assert!(any_pass, "the logging rules were remediated: {logging:?}");
    assert!(
        a_logged_message_arrives("n91"),
        "the logging rules pass ({logging:?}) but a message sent with logger is recorded nowhere"
    );
    assert!(passes(&after, "n91", "LOG-01"), "{logging:?}");
}

#[test]
fn key_exchange_passes_only_without_small_diffie_hellman_groups() {
    let _host = HostState::save();
    let op = Operator::new(&[92]);
    apply(&op, &["--baseline", "strict", "--section", "ssh"]);
    let after = audit(&op, "ssh");
    let kex = on_node(
        "n92",
        "sshd -T 2>/dev/null | awk '$1 == \"kexalgorithms\" { print $2 }'",
    );
    let small = on_node(
        "n92",
        "awk '$1 !~ /^#/ && NF >= 7 && $5 + 1 < 3072' /etc/ssh/moduli | wc -l",
    );
    let gex = kex.contains("diffie-hellman-group-exchange");
    assert!(
        passes(&after, "n92", "SSH-13"),
        "{:?}",
        status(&after, "n92", "SSH-13")
    );
    assert!(
        !gex || small.trim() == "0",
        "SSH-13 passes, but sshd negotiates group exchange ({kex}) with {} group(s) below 3072 bits in /etc/ssh/moduli",
        small.trim()
    );
    maestro_still_gets_in(&op, "n92");
}

/// `umask` in an interactive login shell over SSH as `op`: what a user gets.
fn login_umask(node: &str) -> String {
    let f = fleet();
    let mut child = Command::new("ssh")
        .args([
            "-F",
            f.dir.join("ssh_config").to_str().unwrap(),
            "-T",
            "-l",
            "op",
            node,
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        child.stdin.take().unwrap().write_all(b"umask\n").unwrap();
    }
    let o = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

#[test]
fn login_umask_passes_only_when_an_ssh_login_really_gets_027() {
    let _host = HostState::save();
    let op = Operator::new(&[93]);
    assert_eq!(login_umask("n93"), "0022", "a fresh node's login umask");
    apply(&op, &["--baseline", "strict", "--section", "accounts"]);
    let after = audit(&op, "accounts");
    assert!(
        passes(&after, "n93", "ACC-06"),
        "{:?}",
        status(&after, "n93", "ACC-06")
    );
    assert_eq!(
        login_umask("n93"),
        "0027",
        "ACC-06 passes, so an SSH login must get umask 027"
    );
}

/// The host-key algorithms the node's running sshd offers (ssh-keyscan).
fn offered_host_keys(node_index: usize) -> String {
    let f = fleet();
    let o = Command::new("ssh-keyscan")
        .args([
            "-T",
            "5",
            "-p",
            &f.port.to_string(),
            "-t",
            "rsa,ecdsa,ed25519",
        ])
        .arg(f.address(node_index))
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn host_keys_weaker_than_ed25519_are_no_longer_offered() {
    let _host = HostState::save();
    let op = Operator::new(&[94]);
    // Debian's defaults: no HostKey line (sshd loads RSA, ECDSA and Ed25519).
    let o = fleet().node_exec(
        "n94",
        &[
            "sh",
            "-c",
            "set -e; ssh-keygen -q -t ecdsa -N '' -f /etc/ssh/ssh_host_ecdsa_key.n94 && \
             mv -f /etc/ssh/ssh_host_ecdsa_key.n94 /etc/ssh/ssh_host_ecdsa_key && \
             mv -f /etc/ssh/ssh_host_ecdsa_key.n94.pub /etc/ssh/ssh_host_ecdsa_key.pub && \
             sed -i 's/^HostKey /#HostKey /' /etc/ssh/sshd_config && \
             kill -HUP $(sshd -T 2>/dev/null | awk '$1 == \"pidfile\" { print $2 }' | xargs head -n 1) && sleep 1",
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        offered_host_keys(94).contains("ecdsa-sha2-nistp256"),
        "the prepared node offers ECDSA: {}",
        offered_host_keys(94)
    );
    apply(&op, &["--baseline", "strict", "--section", "ssh"]);
    let after = audit(&op, "ssh");
    let offered = offered_host_keys(94);
    assert!(
        !offered.contains("ecdsa"),
        "after hardening sshd still offers an ECDSA host key: {offered}\n{:?}",
        rules(&after, "n94")
            .into_iter()
            .filter(|(id, _, _)| id.starts_with("SSH-"))
            .collect::<Vec<_>>()
    );
    assert!(offered.contains("ssh-ed25519"), "{offered}");
    maestro_still_gets_in(&op, "n94");
}

fn percent(out: &str) -> f64 {
    json_lines(out)
        .into_iter()
        .find(|v| v["event"] == "compliance")
        .and_then(|v| v["percent"].as_f64())
        .expect("a compliance line")
}

#[test]
fn the_audit_after_an_enterprise_apply_catches_changes_made_behind_maestros_back() {
    let _host = HostState::save();
    let op = Operator::new(&[95]);
    let fresh = op.maestro(&["--json", "harden", "--audit", "--profile", "enterprise"]);
    let before = percent(&stdout(&fresh));
    apply(&op, &["--profile", "enterprise"]);
    let o = op.maestro(&["--json", "harden", "--audit", "--profile", "enterprise"]);
    let hardened = stdout(&o);
    let after = percent(&hardened);
    assert!(after > before, "{before} -> {after}");
    for rule in ["LOG-01", "SSH-13", "SSH-18"] {
        assert!(
            passes(&hardened, "n95", rule),
            "{rule}: {:?}",
            status(&hardened, "n95", rule)
        );
    }
    maestro_still_gets_in(&op, "n95");

    // Behind maestro's back: the log daemon stops, a 2048-bit group comes back.
    let weak = std::fs::read_to_string("/etc/ssh/moduli")
        .unwrap()
        .lines()
        .find(|l| l.split_whitespace().nth(4) == Some("2047"))
        .expect("the host's moduli file has 2048-bit groups")
        .to_string();
    let o = fleet().node_exec(
        "n95",
        &[
            "sh",
            "-c",
            "kill $(cat /run/rsyslogd.pid) && printf '%s\\n' \"$1\" >>/etc/ssh/moduli",
            "sh",
            &weak,
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    std::thread::sleep(std::time::Duration::from_millis(500));
    let o = op.maestro(&["--json", "harden", "--audit", "--profile", "enterprise"]);
    assert_eq!(o.status.code(), Some(1), "the drift fails the audit");
    let drifted = stdout(&o);
    let (log, why) = status(&drifted, "n95", "LOG-01");
    assert_eq!(log, "failed", "{why}");
    assert!(why.contains("no log daemon runs"), "{why}");
    let (kex, why) = status(&drifted, "n95", "SSH-13");
    assert_eq!(kex, "failed", "{why}");
    assert!(why.contains("below 3072 bits"), "{why}");
    assert!(percent(&drifted) < after);
}

/// `(percent, failing_rules)` of every audit the store kept for `node`, oldest first.
fn compliance_history(db: &Path, node: &str) -> Vec<(f64, String)> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut st = conn
        .prepare(
            "SELECT percent, failing_rules FROM compliance_history WHERE node = ?1 ORDER BY at_ms",
        )
        .unwrap();
    st.query_map([node], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap()
}

#[test]
fn an_enterprise_install_ends_with_a_first_boot_audit_and_fails_below_min_compliance() {
    let _host = HostState::save();
    let op = Operator::new(&[96]);
    let nodes = std::fs::read_to_string(op.sot.join("nodes.toml")).unwrap();
    std::fs::write(
        op.sot.join("nodes.toml"),
        nodes.replace("env = \"test\"", "env = \"test\", owner = \"security\""),
    )
    .unwrap();
    let o = op.maestro(&["install", "--profile", "enterprise", "--yes"]);
    let out = stdout(&o);
    assert_eq!(
        o.status.code(),
        Some(1),
        "a fresh node is below the profile's min_compliance: {out}{}",
        stderr(&o)
    );
    assert!(out.contains("first-boot audit (strict"), "{out}");
    assert!(
        out.contains("below the profile's min_compliance of 90%"),
        "{out}"
    );
    let first = compliance_history(&op.db, "n96");
    assert_eq!(first.len(), 1, "the install recorded one audit: {first:?}");
    assert!(
        first[0].0 < 90.0 && first[0].1.contains("LOG-01"),
        "{first:?}"
    );

    apply(&op, &["--profile", "enterprise"]);
    let o = op.maestro(&["install", "--profile", "enterprise", "--yes"]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{out}{}", stderr(&o));
    assert!(out.contains("(the profile requires 90%)"), "{out}");
    let history = compliance_history(&op.db, "n96");
    // install, the audit after --apply, install again
    assert_eq!(history.len(), 3, "{history:?}");
    assert!(
        history[2].0 >= 90.0 && history[2].0 > history[0].0,
        "{history:?}"
    );
    maestro_still_gets_in(&op, "n96");
}
