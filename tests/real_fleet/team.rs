//! A team on one PostgreSQL store (a private cluster on loopback), with
//! real controller processes: two split one job (`exec --share` on one,
//! `maestro join` on the other) and every node is done once, also when one
//! is SIGKILLed mid-run; approvals signed on two controllers count on a
//! third; a kill switch engaged on one holds the agent on another; and one
//! operator's console shows the run another controller records.
//!
//! Nodes n47..n70 are this file's; each test counts its runs in a file of
//! its own on every node.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::common::fleet::{Operator, fleet};
use crate::common::{stderr, stdout};

const NODES: std::ops::RangeInclusive<usize> = 47..=70;

fn team_operator() -> Operator {
    let nodes: Vec<usize> = NODES.collect();
    let mut op = Operator::new(&nodes);
    op.db = PathBuf::from(
        maestro::store::test_cluster::fresh_database_url()
            .expect("PostgreSQL is installed (.ci/run installs it)"),
    );
    op
}

fn json_of(o: &std::process::Output) -> serde_json::Value {
    let out = stdout(o);
    let line = out.lines().find(|l| l.starts_with('{')).unwrap_or("{}");
    serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

/// The id of the run the first controller started, once it is recorded.
fn running_run(op: &Operator) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let o = op.maestro(&["--json", "runs"]);
        if let Some(id) = json_of(&o)["run"]["id"].as_str() {
            return id.to_string();
        }
        assert!(
            Instant::now() < deadline,
            "no run was recorded: {}",
            stderr(&o)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `runs show RUN --json`'s shared work: each node's item.
fn items(op: &Operator, run: &str) -> Vec<serde_json::Value> {
    let o = op.maestro(&["--json", "runs", "show", run]);
    json_of(&o)["shared"]["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// How many times each node ran the counting command.
fn runs_per_node(file: &str) -> Vec<(String, usize)> {
    NODES
        .map(|i| {
            let node = format!("n{i:02}");
            let o = fleet().node_exec(&node, &["sh", "-c", &format!("cat {file} 2>/dev/null")]);
            let n = String::from_utf8_lossy(&o.stdout).lines().count();
            (node, n)
        })
        .collect()
}

/// Wait for `child`, killing it after `limit`: a controller that never
/// finishes fails the test instead of hanging it.
fn finish(child: std::process::Child, limit: Duration) -> std::process::Output {
    let pid = child.id();
    let (done, waited) = std::sync::mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        if waited.recv_timeout(limit).is_err() {
            // Ours, by PID, and still unreaped: it cannot have been reused.
            let _ = std::process::Command::new("kill")
                .args(["-9", &pid.to_string()])
                .status();
        }
    });
    let output = child.wait_with_output().unwrap();
    let _ = done.send(());
    let _ = watchdog.join();
    output
}

fn counter(tag: &str) -> String {
    let unique = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("/tmp/maestro-team-{tag}-{unique}")
}

#[test]
fn two_controllers_split_one_job_and_every_node_is_done_once() {
    let op = team_operator();
    let file = counter("split");
    let command = format!("sleep 0.4; echo run >> {file}");
    let a = op.spawn(&["exec", "fleet", "--share", "--forks", "4", "--", &command]);
    let run = running_run(&op);
    let b = op.spawn(&["join", &run, "--forks", "4"]);
    let limit = Duration::from_secs(120);
    let (a, b) = (finish(a, limit), finish(b, limit));
    for o in [&a, &b] {
        assert_eq!(o.status.code(), Some(0), "{}{}", stdout(o), stderr(o));
        // Each controller's recap is the whole run.
        assert!(stdout(o).contains("24 nodes"), "{}", stdout(o));
        assert!(stdout(o).contains("ok=24 failed=0"), "{}", stdout(o));
    }
    assert!(
        stderr(&a).contains(&format!("maestro join {run}")),
        "{}",
        stderr(&a)
    );
    assert!(
        stderr(&b).contains(&format!("joining run {run}")),
        "{}",
        stderr(&b)
    );
    let per_node = runs_per_node(&file);
    assert!(
        per_node.iter().all(|(_, n)| *n == 1),
        "every node ran the command exactly once: {per_node:?}"
    );
    let items = items(&op, &run);
    assert_eq!(items.len(), 24);
    let mut done_by: Vec<&str> = items
        .iter()
        .map(|i| i["done_by"].as_str().unwrap_or("nobody"))
        .collect();
    done_by.sort();
    done_by.dedup();
    assert_eq!(done_by.len(), 2, "both controllers did nodes: {items:?}");
    assert!(
        items
            .iter()
            .all(|i| i["state"] == "done" && i["attempts"] == 1)
    );
    let o = op.maestro(&["--json", "runs", "show", &run]);
    let shown = json_of(&o);
    assert_eq!(shown["run"]["state"], "finished");
    assert_eq!(shown["run"]["ok"], 24);
    assert_eq!(shown["results"].as_array().map(Vec::len), Some(24));
    // The text face says who did what.
    let o = op.maestro(&["runs", "show", &run]);
    assert!(stdout(&o).contains("shared: started by"), "{}", stdout(&o));
}

#[test]
fn when_one_controller_is_killed_the_other_takes_its_nodes_over() {
    let op = team_operator();
    let file = counter("kill");
    let command = format!("sleep 1; echo run >> {file}");
    let a = op.spawn(&[
        "exec",
        "fleet",
        "--share",
        "--claim-ttl",
        "2",
        "--forks",
        "4",
        "--",
        &command,
    ]);
    let run = running_run(&op);
    let mut b = op.spawn(&["join", &run, "--forks", "4"]);
    // Kill b once it has finished a node and holds others.
    let b_id = format!("{}@", b.id());
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let items = items(&op, &run);
        let b_done = items
            .iter()
            .filter(|i| i["done_by"].as_str().is_some_and(|c| c.starts_with(&b_id)))
            .count();
        let b_holds = items
            .iter()
            .filter(|i| {
                i["state"] == "claimed"
                    && i["claimed_by"]
                        .as_str()
                        .is_some_and(|c| c.starts_with(&b_id))
            })
            .count();
        if b_done >= 1 && b_holds >= 1 {
            break;
        }
        assert!(Instant::now() < deadline, "b never worked: {items:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    b.kill().unwrap();
    let _ = b.wait();
    let a = finish(a, Duration::from_secs(120));
    assert_eq!(a.status.code(), Some(0), "{}{}", stdout(&a), stderr(&a));
    assert!(stdout(&a).contains("ok=24 failed=0"), "{}", stdout(&a));
    assert!(
        stderr(&a).contains("taken over from controller"),
        "{}",
        stderr(&a)
    );
    let items = items(&op, &run);
    assert!(items.iter().all(|i| i["state"] == "done"), "{items:?}");
    let taken: Vec<&str> = items
        .iter()
        .filter(|i| i["attempts"] == 2)
        .map(|i| i["node"].as_str().unwrap_or_default())
        .collect();
    assert!(
        (1..=4).contains(&taken.len()),
        "the nodes b held when it died, at most its forks, were taken over: {items:?}"
    );
    assert!(
        taken.iter().all(|n| items.iter().any(
            |i| i["node"] == *n && i["done_by"].as_str().is_some_and(|c| !c.starts_with(&b_id))
        )),
        "a finished them: {items:?}"
    );
    // A node b had not started is run once; one that was running on b
    // when it died may have finished there too (sshd does not stop a
    // command whose client vanished), so it ran at most twice.
    for (node, n) in runs_per_node(&file) {
        if taken.contains(&node.as_str()) {
            assert!((1..=2).contains(&n), "{node} ran {n} times");
        } else {
            assert_eq!(n, 1, "{node} ran {n} times");
        }
    }
    let o = op.maestro(&["--json", "runs", "show", &run]);
    let shown = json_of(&o);
    assert_eq!(shown["run"]["state"], "finished");
    assert_eq!(shown["run"]["ok"], 24);
}

/// Another controller of `op`'s team: its own clone of the SoT repository
/// and its own HOME (state directory, ledger key), the same store.
fn another_controller(op: &Operator) -> Operator {
    let tmp = tempfile::tempdir().unwrap();
    let sot = tmp.path().join("sot");
    let o = std::process::Command::new("git")
        .args(["clone", "-q"])
        .arg(&op.sot)
        .arg(&sot)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let home = tmp.path().join("home");
    let o = std::process::Command::new("cp")
        .arg("-a")
        .arg(&op.home)
        .arg(&home)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    Operator {
        tmp,
        sot,
        home,
        db: op.db.clone(),
    }
}

fn with_postgres(mut op: Operator) -> Operator {
    op.db = PathBuf::from(
        maestro::store::test_cluster::fresh_database_url()
            .expect("PostgreSQL is installed (.ci/run installs it)"),
    );
    op
}

/// n57 and n58 (deploys of fleet-doctor) are these two tests'.
#[test]
fn approvals_signed_on_two_controllers_admit_an_l4_deploy_on_a_third() {
    use super::policy::{approval_id, as_person, both, governed_operator_on};
    let (op, people) = governed_operator_on(57, 58);
    let requester = with_postgres(op);
    let (on_a, on_b) = (
        another_controller(&requester),
        another_controller(&requester),
    );
    let deploy = ["deploy", "fleet-doctor", "--limit", "n57", "--yes"];
    let held = as_person(&requester, &people.requester, &deploy);
    assert_eq!(held.status.code(), Some(4), "{}", both(&held));
    let id = approval_id(&held);
    let a = as_person(&on_a, &people.alice, &["approve", &id]);
    assert!(a.status.success(), "{}", both(&a));
    assert!(stdout(&a).contains("1 of 2"), "{}", both(&a));
    let b = as_person(&on_b, &people.bob, &["approve", &id]);
    assert!(b.status.success(), "{}", both(&b));
    assert!(
        stdout(&b).contains("2 of 2"),
        "alice's signature from a counts on b: {}",
        both(&b)
    );
    let ran = as_person(&requester, &people.requester, &deploy);
    assert!(ran.status.success(), "{}", both(&ran));
    let (code, _) = super::agents::get(57, "/healthz").expect("fleet-doctor answers on n57");
    assert_eq!(code, 200);
    // Each controller's own store file would have held one signature: the
    // approval counted because the three share one database.
    let list = requester.maestro(&["approvals"]);
    assert!(
        stdout(&list).contains("alice") && stdout(&list).contains("bob"),
        "{}",
        stdout(&list)
    );
}

#[test]
fn a_kill_switch_engaged_on_one_controller_holds_the_agent_on_another_before_it_pulls() {
    let op = with_postgres(super::agents::agent_operator(&[59]));
    super::agents::commit_sot(&op);
    let other = another_controller(&op);
    let o = op.maestro(&[
        "kill",
        "fleet-doctor",
        "--reason",
        "runaway costs",
        "--actor",
        "Ada <ada@example.org>",
    ]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    // `other`'s SoT has no killswitch.toml: only the store says so.
    assert!(!other.sot.join("killswitch.toml").exists());
    let held = other.maestro(&["deploy", "fleet-doctor", "--limit", "n59", "--yes"]);
    assert_eq!(
        held.status.code(),
        Some(4),
        "{}{}",
        stdout(&held),
        stderr(&held)
    );
    assert!(stderr(&held).contains("kill switch"), "{}", stderr(&held));
    assert!(stderr(&held).contains("runaway costs"), "{}", stderr(&held));
    assert!(
        super::agents::get(59, "/healthz").is_none(),
        "nothing started on n59"
    );
    let o = op.maestro(&[
        "kill",
        "--release",
        "fleet-doctor",
        "--reason",
        "fixed",
        "--actor",
        "Ada <ada@example.org>",
    ]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    let ran = other.maestro(&["deploy", "fleet-doctor", "--limit", "n59", "--yes"]);
    assert!(
        ran.status.success(),
        "released everywhere: {}{}",
        stdout(&ran),
        stderr(&ran)
    );
    assert_eq!(super::agents::get(59, "/healthz").map(|r| r.0), Some(200));
}

/// Live views across machines: the console of one operator shows, within
/// about its one-second refresh, a run another controller records in the
/// team's store, and opens it.
#[test]
fn a_console_shows_the_run_another_controller_starts() {
    use super::tui::Tmux;
    let op = team_operator();
    // The other operator's own checkout of the team's SoT.
    crate::agents::commit_sot(&op);
    let other = another_controller(&op);
    let term = Tmux::console(&op, &[]);
    term.wait_for("the fleet view", |s| s.contains("nodes 24/24"));
    term.keys(&[":"]);
    term.text("runs");
    term.keys(&["Enter"]);
    term.wait_for("the empty runs view", |s| {
        s.contains("No runs recorded yet")
    });

    let o = other.maestro(&["exec", "n47", "--", "echo", "from-the-other-controller"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let recorded = Instant::now();
    let id = running_run(&other);
    let screen = term.wait_for("the other controller's run, finished", |s| {
        s.lines().any(|l| l.contains(&id) && l.contains("finished"))
    });
    let latency = recorded.elapsed();
    assert!(
        screen.contains("echo from-the-other-controller"),
        "{screen}"
    );
    // The view reads the store every second; more than a few seconds would
    // be a console that does not refresh (the wait above allows 30 s).
    assert!(latency < Duration::from_secs(5), "shown after {latency:?}");

    // While :runs refreshes, the console reads through one kept connection:
    // the database sees no new session in 6 s of refreshes (a connection
    // per refresh shows up as several, however late PostgreSQL counts them).
    let mut probe = postgres::Client::connect(op.db.to_str().unwrap(), postgres::NoTls).unwrap();
    let mut sessions = || -> i64 {
        probe
            .query_one(
                "SELECT sessions FROM pg_stat_database WHERE datname = current_database()",
                &[],
            )
            .unwrap()
            .get(0)
    };
    let before = sessions();
    std::thread::sleep(Duration::from_secs(6));
    let opened = sessions() - before;
    assert!(opened <= 1, "{opened} new sessions in 6 s of refreshes");

    term.keys(&["Enter"]);
    let screen = term.wait_for("the run detail", |s| s.contains("n47 · ok · rc=0"));
    assert!(screen.contains("from-the-other-controller"), "{screen}");
    term.keys(&["q"]);
    term.wait_for("the console to quit", |s| s.contains("maestro exited 0"));
}
