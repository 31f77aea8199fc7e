//! The kill switch and freeze windows on the real fleet: an agent killed on
//! 24 nodes leaves no process behind (checked inside each node's
//! namespaces, not through maestro), a node that was down is reported
//! unreachable and confirmed by the next kill, a job that would start the
//! agent is blocked while it is engaged, a freeze window holds a play until
//! someone breaks the glass, and the break-glass is in the run record.
//!
//! Nodes n61..n84 are this file's. The agent processes are started the way
//! the node-side contract says (setsid, a pidfile with PID and start time,
//! MAESTRO_AGENT=NAME in the environment) until `maestro deploy` exists.
//! The nodes share the machine's PID namespace, so every look at processes
//! keeps to the node's own mount namespace.

use std::path::Path;

use crate::common::fleet::{Operator, fleet};
use crate::common::{git, stderr, stdout};

const ACTOR: &str = "Kill Tester <kill@example.org>";

fn nodes(range: std::ops::RangeInclusive<usize>) -> Vec<usize> {
    range.collect()
}

fn name(i: usize) -> String {
    format!("n{i:02}")
}

/// An operator whose SoT is a git repository with `agents` in its registry.
fn operator(nodes: &[usize], agents: &[&str]) -> Operator {
    let op = Operator::new(nodes);
    std::fs::write(
        op.sot.join("models.toml"),
        "[model.m1]\nprovider = \"local\"\n",
    )
    .unwrap();
    let mut text = String::new();
    for a in agents {
        text.push_str(&format!(
            "[agent.{a}]\nmodel = \"m1\"\nautonomy = \"L1\"\n\n"
        ));
    }
    std::fs::write(op.sot.join("agents.toml"), text).unwrap();
    let o = std::process::Command::new("git")
        .args(["init", "-q"])
        .arg(&op.sot)
        .output()
        .unwrap();
    assert!(o.status.success());
    git(&op.sot, &["add", "-A"]);
    git(
        &op.sot,
        &[
            "-c",
            "user.name=Kill Tester",
            "-c",
            "user.email=kill@example.org",
            "commit",
            "-qm",
            "test SoT",
        ],
    );
    op
}

fn on_node(node: &str, script: &str) -> (bool, String) {
    let o = fleet().node_exec(node, &["sh", "-c", script]);
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr),
    )
}

/// Start `agent` on `node` as the contract says: a session leader with a
/// child, recorded in /run/maestro/agent-NAME.pid (PID, start time), and a
/// straggler outside that session; all with MAESTRO_AGENT=NAME. One more
/// child in the leader's process group has dropped the variable (only the
/// group kill finds it: `sleep 86403`).
fn start_agent(node: &str, agent: &str) {
    let script = format!(
        r#"set -e
mkdir -p /run/maestro
MAESTRO_AGENT={agent} setsid sh -c 'env -u MAESTRO_AGENT sleep 86403 & sleep 86400 & exec sleep 86401' </dev/null >/dev/null 2>&1 &
p=$!
read -r st </proc/$p/stat
r=${{st##*) }}
set -- $r
shift 19
printf '%s\n%s\n' "$p" "$1" >/run/maestro/agent-{agent}.pid
MAESTRO_AGENT={agent} setsid sleep 86402 </dev/null >/dev/null 2>&1 &
"#
    );
    let (ok, out) = on_node(node, &script);
    assert!(ok, "starting {agent} on {node}: {out}");
    // The shell forks its members in the background: wait until all four
    // have exec'd (three carry MAESTRO_AGENT, `env -u` has dropped it), so
    // a test never counts a half-started agent.
    let settled = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !(agent_pids(node, agent).len() == 3 && pids_running(node, "sleep 86403").len() == 1) {
        assert!(
            std::time::Instant::now() < settled,
            "{agent} on {node} did not settle into its four processes"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// PIDs of processes in `node`'s mount namespace with MAESTRO_AGENT=`agent`.
fn agent_pids(node: &str, agent: &str) -> Vec<String> {
    let script = format!(
        r#"for f in /proc/[0-9]*/environ; do
    p=${{f#/proc/}}; p=${{p%/environ}}
    [ /proc/$p/ns/mnt -ef /proc/$$/ns/mnt ] || continue
    read -r st </proc/$p/stat 2>/dev/null || continue
    case ${{st##*) }} in Z*) continue ;; esac
    tr '\0' '\n' <"$f" 2>/dev/null | grep -qx 'MAESTRO_AGENT={agent}' && echo "$p"
done; true"#
    );
    let (ok, out) = on_node(node, &script);
    assert!(ok, "{out}");
    out.split_whitespace().map(str::to_string).collect()
}

/// PIDs in `node`'s mount namespace whose command line is `cmdline`.
fn pids_running(node: &str, cmdline: &str) -> Vec<String> {
    let script = format!(
        r#"for f in /proc/[0-9]*/cmdline; do
    p=${{f#/proc/}}; p=${{p%/cmdline}}
    [ /proc/$p/ns/mnt -ef /proc/$$/ns/mnt ] || continue
    read -r st </proc/$p/stat 2>/dev/null || continue
    case ${{st##*) }} in Z*) continue ;; esac
    [ "$(tr '\0' ' ' <"$f" 2>/dev/null)" = '{cmdline} ' ] && echo "$p"
done; true"#
    );
    let (ok, out) = on_node(node, &script);
    assert!(ok, "{out}");
    out.split_whitespace().map(str::to_string).collect()
}

fn json_lines(out: &str) -> Vec<serde_json::Value> {
    out.lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

fn kill_states(out: &str) -> Vec<(String, String)> {
    json_lines(out)
        .into_iter()
        .filter(|v| v["event"] == "kill_node")
        .map(|v| {
            (
                v["node"].as_str().unwrap().to_string(),
                v["state"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// A playbook that (re)starts the agent's service: what a kill switch must block.
fn agent_playbook(op: &Operator, agent: &str) -> std::path::PathBuf {
    let pb = op.tmp.path().join("start-agent.toml");
    std::fs::write(
        &pb,
        format!(
            "name = \"start agent\"\n\n[[task]]\nname = \"agent service\"\n\
             service = {{ name = \"maestro-agent-{agent}\", state = \"started\", command = \"sleep 86400\", pidfile = \"/run/maestro/agent-{agent}.pid\" }}\n"
        ),
    )
    .unwrap();
    pb
}

#[test]
fn kill_on_24_nodes_leaves_no_process_and_a_node_that_was_down_is_confirmed_by_the_next_kill() {
    let agent = "ks-support";
    let all = nodes(61..=84);
    let op = operator(&all, &[agent]);
    for &i in &all {
        start_agent(&name(i), agent);
        assert_eq!(
            agent_pids(&name(i), agent).len(),
            3,
            "three processes on {}",
            name(i)
        );
    }
    assert_eq!(
        pids_running("n61", "sleep 86403").len(),
        1,
        "the check finds the member without the variable"
    );
    // n84 goes down (its processes with it) before the kill.
    fleet().node_cmd("stop-node", "n84");
    let o = op.maestro(&[
        "--json",
        "kill",
        agent,
        "--reason",
        "refunds nobody asked for",
        "--actor",
        ACTOR,
        "--connect-timeout",
        "3",
    ]);
    let out = stdout(&o);
    assert_eq!(
        o.status.code(),
        Some(1),
        "an unreachable node keeps the exit at 1: {out}{}",
        stderr(&o)
    );
    let states = kill_states(&out);
    assert_eq!(states.len(), 24, "{out}");
    for (node, state) in &states {
        if node == "n84" {
            assert_eq!(state, "unreachable", "an unreachable node is never stopped");
        } else {
            assert_eq!(state, "stopped", "{node}: {out}");
        }
    }
    // Checked inside each node, not through maestro: nothing of the agent is left.
    for &i in &all[..23] {
        let left = agent_pids(&name(i), agent);
        assert!(left.is_empty(), "{} still runs {agent}: {left:?}", name(i));
        let grouped = pids_running(&name(i), "sleep 86403");
        assert!(
            grouped.is_empty(),
            "{}: the session's member without the variable survived: {grouped:?}",
            name(i)
        );
        let (_, marker) = on_node(
            &name(i),
            &format!("cat /var/lib/maestro/agents/{agent}/killed"),
        );
        assert!(
            marker.contains("reason=refunds nobody asked for") && marker.contains(ACTOR),
            "{}: the marker says who and why: {marker}",
            name(i)
        );
    }
    // The engaged state is a commit with the actor and the reason.
    let log = git(&op.sot, &["log", "-1", "--format=%s%n%b"]);
    assert!(
        log.contains("kill ks-support: refunds nobody asked for"),
        "{log}"
    );
    assert!(log.contains(&format!("Maestro-Actor: {ACTOR}")), "{log}");
    let status = op.maestro(&["kill", "--status"]);
    assert!(
        stdout(&status).contains("refunds nobody asked for"),
        "{}",
        stdout(&status)
    );

    // While engaged, a playbook that would start the agent is blocked (exit 4),
    // naming who engaged it, when and why, and touches no node.
    let pb = agent_playbook(&op, agent);
    let o = op.maestro(&["play", pb.to_str().unwrap(), "-l", "n61", "--yes"]);
    assert_eq!(o.status.code(), Some(4), "{}{}", stdout(&o), stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains(ACTOR)
            && err.contains("refunds nobody asked for")
            && err.contains("engaged by"),
        "{err}"
    );
    assert!(
        agent_pids("n61", agent).is_empty(),
        "the blocked play started nothing"
    );

    // n84 comes back; the same kill again confirms every node, and commits nothing new.
    fleet().node_cmd("start-node", "n84");
    let head = git(&op.sot, &["rev-parse", "HEAD"]);
    let o = op.maestro(&[
        "--json",
        "kill",
        agent,
        "--reason",
        "confirming n84",
        "--actor",
        ACTOR,
    ]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{out}{}", stderr(&o));
    let states = kill_states(&out);
    assert_eq!(states.len(), 24);
    assert!(
        states.iter().all(|(_, s)| s == "already_stopped"),
        "{states:?}"
    );
    assert_eq!(
        git(&op.sot, &["rev-parse", "HEAD"]),
        head,
        "already engaged: no commit"
    );
    assert!(agent_pids("n84", agent).is_empty());

    // Release: a commit, the markers gone, nothing restarted.
    let o = op.maestro(&[
        "kill",
        "--release",
        agent,
        "--reason",
        "fixed in 1.4.1",
        "--actor",
        ACTOR,
    ]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert!(
        stdout(&o).contains("24/24 nodes confirmed"),
        "{}",
        stdout(&o)
    );
    for &i in &all {
        let (ok, _) = on_node(
            &name(i),
            &format!("test -e /var/lib/maestro/agents/{agent}/killed"),
        );
        assert!(!ok, "{}: the marker is gone after the release", name(i));
        assert!(
            agent_pids(&name(i), agent).is_empty(),
            "a release restarts nothing"
        );
    }
    let log = git(&op.sot, &["log", "-1", "--format=%s"]);
    assert!(
        log.contains("kill --release ks-support: fixed in 1.4.1"),
        "{log}"
    );
    assert!(
        !std::fs::read_to_string(op.sot.join("killswitch.toml"))
            .unwrap()
            .contains("ks-support")
    );
}

#[test]
fn a_kill_with_a_hostile_reason_writes_it_literally_and_runs_nothing_of_it() {
    let agent = "ks-hostile";
    let op = operator(&[80, 81], &[agent]);
    start_agent("n80", agent);
    // The same agent on a node outside --limit: the nodes share one PID
    // namespace, so this also proves the kill keeps to its node.
    start_agent("n81", agent);
    let reason = "it's $(touch /root/pwned-kill) `touch /root/pwned-kill2`";
    let o = op.maestro(&[
        "kill", agent, "--limit", "n80", "--reason", reason, "--actor", ACTOR,
    ]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert!(
        stdout(&o).contains("n80") && stdout(&o).contains("stopped (pid"),
        "{}",
        stdout(&o)
    );
    let (_, marker) = on_node(
        "n80",
        &format!("cat /var/lib/maestro/agents/{agent}/killed"),
    );
    assert!(marker.contains(&format!("reason={reason}")), "{marker}");
    let (pwned, _) = on_node("n80", "ls /root/pwned-kill /root/pwned-kill2");
    assert!(!pwned, "the reason was run by a shell");
    assert!(agent_pids("n80", agent).is_empty());
    assert_eq!(agent_pids("n81", agent).len(), 3, "n81 is outside --limit");
    assert!(
        std::fs::read_to_string(op.sot.join("killswitch.toml"))
            .unwrap()
            .contains("limit = \"n80\""),
        "the scope is recorded"
    );
    // A play that would start the agent on n81 is not held (the kill
    // switch holds n80 only); on n80 it is.
    let pb = agent_playbook(&op, agent);
    let o = op.maestro(&["play", pb.to_str().unwrap(), "-l", "n80", "--check"]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "a check changes nothing and is not held: {}",
        stderr(&o)
    );
    let o = op.maestro(&["play", pb.to_str().unwrap(), "-l", "n80,n81", "--yes"]);
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("would start on 1 node"),
        "{}",
        stderr(&o)
    );
    // Clean up n81 the way an operator would.
    let o = op.maestro(&[
        "kill", agent, "--limit", "n81", "--reason", "cleanup", "--actor", ACTOR,
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(agent_pids("n81", agent).is_empty());
    assert!(
        std::fs::read_to_string(op.sot.join("killswitch.toml"))
            .unwrap()
            .contains("limit = \"n80,n81\""),
        "a wider kill widens the recorded scope"
    );
}

/// A SoT with a freeze window that is always open: every minute, for an hour.
fn frozen(op: &Operator) {
    std::fs::write(
        op.sot.join("freeze.toml"),
        "[freeze.change-freeze]\nreason = \"quarter-end close\"\ncron = \"* * * * *\"\n\
         duration = \"1h\"\ntimezone = \"Europe/Berlin\"\ntargets = \"fleet\"\n",
    )
    .unwrap();
    git(&op.sot, &["add", "-A"]);
    git(
        &op.sot,
        &[
            "-c",
            "user.name=T",
            "-c",
            "user.email=t@example.org",
            "commit",
            "-qm",
            "freeze",
        ],
    );
}

#[test]
fn a_play_inside_a_recurring_freeze_window_is_held_until_the_glass_is_broken_and_the_run_records_it()
 {
    let op = operator(&[61, 62], &["ks-frozen"]);
    frozen(&op);
    let pb = op.tmp.path().join("touch.toml");
    std::fs::write(
        &pb,
        "name = \"touch\"\n\n[[task]]\nname = \"stamp\"\nfile = { path = \"/root/ks-freeze-stamp\", content = \"x\\n\" }\n",
    )
    .unwrap();
    let o = op.maestro(&["play", pb.to_str().unwrap(), "--yes"]);
    assert_eq!(o.status.code(), Some(4), "{}{}", stdout(&o), stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("freeze window `change-freeze`")
            && err.contains("quarter-end close")
            && err.contains("--break-glass"),
        "{err}"
    );
    for n in ["n61", "n62"] {
        assert!(
            !on_node(n, "test -e /root/ks-freeze-stamp").0,
            "{n} was touched"
        );
    }
    // --break-glass without a reason is refused by the arguments.
    let o = op.maestro(&["play", pb.to_str().unwrap(), "--yes", "--break-glass"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));

    let o = op
        .command(&[
            "--json",
            "play",
            pb.to_str().unwrap(),
            "--yes",
            "--break-glass",
            "--reason",
            "payroll hotfix",
        ])
        .env("MAESTRO_ACTOR", "Grace <grace@example.org>")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    for n in ["n61", "n62"] {
        assert!(
            on_node(n, "test -e /root/ks-freeze-stamp").0,
            "{n} was not changed"
        );
    }
    let started = json_lines(&stdout(&o))
        .into_iter()
        .find(|v| v["event"] == "run_started")
        .expect("run_started");
    let overrides = started["overrides"].to_string();
    assert!(
        overrides.contains("payroll hotfix") && overrides.contains("change-freeze"),
        "{started}"
    );
    let shown = op.maestro(&["--json", "runs", "show", "last"]);
    let run = &json_lines(&stdout(&shown))[0];
    let notes: Vec<&serde_json::Value> = run["notes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["kind"] == "break_glass")
        .collect();
    assert_eq!(notes.len(), 1, "{run}");
    let note = notes[0]["message"].as_str().unwrap();
    assert!(
        note.contains("Grace <grace@example.org>")
            && note.contains("payroll hotfix")
            && note.contains("change-freeze"),
        "{note}"
    );
}

#[test]
fn a_freeze_never_holds_a_kill_but_holds_its_release() {
    let agent = "ks-frozen-kill";
    let op = operator(&[63, 64], &[agent]);
    frozen(&op);
    start_agent("n63", agent);
    let o = op.maestro(&["kill", agent, "--reason", "leaking data", "--actor", ACTOR]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert!(agent_pids("n63", agent).is_empty());
    let head = git(&op.sot, &["rev-parse", "HEAD"]);
    let o = op.maestro(&[
        "kill",
        "--release",
        agent,
        "--reason",
        "fixed",
        "--actor",
        ACTOR,
    ]);
    assert_eq!(o.status.code(), Some(4), "{}{}", stdout(&o), stderr(&o));
    assert!(stderr(&o).contains("change-freeze"), "{}", stderr(&o));
    assert_eq!(
        git(&op.sot, &["rev-parse", "HEAD"]),
        head,
        "a held release commits nothing"
    );
    assert!(
        on_node(
            "n63",
            &format!("test -e /var/lib/maestro/agents/{agent}/killed")
        )
        .0
    );
    let o = op.maestro(&[
        "kill",
        "--release",
        agent,
        "--reason",
        "fixed, CAB approved",
        "--break-glass",
        "--actor",
        ACTOR,
    ]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert!(
        !on_node(
            "n63",
            &format!("test -e /var/lib/maestro/agents/{agent}/killed")
        )
        .0
    );
}

#[test]
fn kill_refuses_an_unknown_agent_before_touching_anything() {
    let op = operator(&[65], &["ks-known"]);
    let head = git(&op.sot, &["rev-parse", "HEAD"]);
    let o = op.maestro(&["kill", "ks-knwon", "--reason", "typo", "--actor", ACTOR]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("did you mean `ks-known`"),
        "{}",
        stderr(&o)
    );
    assert_eq!(git(&op.sot, &["rev-parse", "HEAD"]), head);
    assert!(!Path::new(&op.sot.join("killswitch.toml")).exists());
}
