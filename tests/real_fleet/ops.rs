//! The operations layer on the real fleet: the sudo password handshake,
//! runs in flight at once, what stops a run (a closed stdout, SIGTERM), the
//! store's failures and exit codes, task results and facts read back, and
//! the console producing the same plan as the CLI.
//!
//! Nodes n33..n40 are this file's: the sudo tests change `op`'s sudo rules.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common;
use crate::common::fleet::{Operator, fleet};
use crate::common::{stderr, stdout};

fn on_node(node: &str, script: &str) -> String {
    let o = fleet().node_exec(node, &["sh", "-c", script]);
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn json_lines(out: &str) -> Vec<serde_json::Value> {
    out.lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// A playbook that becomes root and records who it ran as.
fn whoami_playbook(op: &Operator) -> std::path::PathBuf {
    let pb = op.tmp.path().join("whoami.toml");
    std::fs::write(
        &pb,
        "name = \"whoami\"\nbecome = true\n\n[[task]]\nname = \"who\"\n\
         command = { run = \"id -u > /root/whoami\" }\n",
    )
    .unwrap();
    pb
}

/// Wait until `path` exists on `node` (the remote command is running).
fn wait_on_node(node: &str, path: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while on_node(node, &format!("test -e {path} && echo yes")).trim() != "yes" {
        assert!(Instant::now() < deadline, "{path} never appeared on {node}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_sudo_password_reaches_sudo_only_and_is_never_run_or_stored() {
    // A hostile password: run by a shell, it would create files as root.
    let password = "pw $(touch /root/pwned-a); touch /root/pwned-b";
    let op = Operator::new(&[33, 34]);
    let pb = whoami_playbook(&op);
    let pass_file = op.tmp.path().join("become-pass");
    std::fs::write(&pass_file, format!("{password}\n")).unwrap();
    // n33: op has NOPASSWD sudo (sudo never asks). n34: sudo asks for
    // op's password, which is the hostile string.
    let f = fleet();
    let set = f.node_exec(
        "n34",
        &[
            "sh",
            "-c",
            &format!(
                "printf 'op:%s\\n' '{password}' | chpasswd && \
                 echo 'op ALL=(ALL) ALL' > /etc/sudoers.d/op && chmod 0440 /etc/sudoers.d/op"
            ),
        ],
    );
    assert!(
        set.status.success(),
        "{}",
        String::from_utf8_lossy(&set.stderr)
    );
    let o = op.maestro(&[
        "play",
        pb.to_str().unwrap(),
        "-u",
        "op",
        "--become-password-file",
        pass_file.to_str().unwrap(),
        "--yes",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    for node in ["n33", "n34"] {
        assert_eq!(
            on_node(node, "cat /root/whoami"),
            "0\n",
            "{node} ran as root"
        );
        assert_eq!(
            on_node(node, "ls /root | grep -c pwned"),
            "0\n",
            "{node}: the password was never run as a command"
        );
    }
    let show = op.maestro(&["--json", "runs", "show", "last"]);
    let everything = format!(
        "{}{}{}{}",
        stdout(&o),
        stderr(&o),
        stdout(&show),
        String::from_utf8_lossy(&std::fs::read(&op.db).unwrap())
    );
    assert!(
        !everything.contains("pwned"),
        "the password is never printed or stored: {everything}"
    );
    // A wrong password: sudo asks again, maestro stops and says so.
    std::fs::write(&pass_file, "not the password\n").unwrap();
    on_node("n34", "rm -f /root/whoami");
    let o = op.maestro(&[
        "play",
        pb.to_str().unwrap(),
        "-l",
        "n34",
        "-u",
        "op",
        "--become-password-file",
        pass_file.to_str().unwrap(),
        "--yes",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(
        stdout(&o).contains("sudo refused the password"),
        "{}",
        stdout(&o)
    );
    assert_eq!(
        on_node("n34", "test -e /root/whoami || echo absent"),
        "absent\n"
    );
    assert!(!String::from_utf8_lossy(&std::fs::read(&op.db).unwrap()).contains("not the password"));
}

#[test]
fn two_runs_in_flight_at_once_are_recorded_apart_and_completely() {
    let op = Operator::new(&[35, 36]);
    on_node("n35", "rm -f /tmp/long-started");
    let long = op.spawn(&[
        "exec",
        "n35",
        "--",
        "touch /tmp/long-started; sleep 2; echo long-done",
    ]);
    wait_on_node("n35", "/tmp/long-started");
    // While the exec runs, a playbook on another node, into the same store.
    let o = op.maestro(&["play", "agent-runtime", "-l", "n36", "--yes"]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    let long = long.wait_with_output().unwrap();
    assert_eq!(long.status.code(), Some(0), "{}", stderr(&long));
    let runs = json_lines(&stdout(&op.maestro(&["--json", "runs"])));
    assert_eq!(runs.len(), 2, "{runs:?}");
    for r in &runs {
        let run = &r["run"];
        assert_eq!(run["state"], "finished", "{run}");
        let id = run["id"].as_str().unwrap();
        let show = &json_lines(&stdout(&op.maestro(&["--json", "runs", "show", id])))[0];
        let results = show["results"].as_array().unwrap();
        assert_eq!(results.len(), 1, "{show}");
        match run["kind"].as_str().unwrap() {
            "exec" => {
                assert_eq!(results[0]["node"], "n35");
                assert_eq!(results[0]["stdout"]["bytes"], "long-done\n");
            }
            "play" => {
                assert_eq!(results[0]["node"], "n36");
                let playbook = std::fs::read_to_string(concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/playbooks/agent-runtime.toml"
                ))
                .unwrap();
                let tasks =
                    playbook.matches("[[task]]").count() + playbook.matches("[[handler]]").count();
                assert_eq!(
                    results[0]["tasks"].as_array().unwrap().len(),
                    tasks,
                    "every task and handler of the playbook: {show}"
                );
            }
            other => panic!("unexpected run kind {other}"),
        }
        assert!(
            run["sot_commit"].is_null(),
            "this SoT is not a git repository"
        );
    }
}

#[test]
fn a_closed_stdout_or_sigterm_cancels_the_run_records_it_and_exits_non_zero() {
    let op = Operator::new(&[37, 38]);
    // `| head -1`: the reader goes away after the first line.
    on_node("n37", "rm -f /root/after-pipe");
    on_node("n38", "rm -f /root/after-pipe");
    let mut c = op.command(&[
        "exec",
        "all",
        "--",
        "if [ \"$(hostname)\" = n37 ]; then echo first; else sleep 4; touch /root/after-pipe; fi",
    ]);
    c.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    let mut first = [0u8; 1];
    child
        .stdout
        .as_mut()
        .unwrap()
        .read_exact(&mut first)
        .unwrap();
    drop(child.stdout.take());
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(1), "a broken pipe is not success");
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(
        on_node("n38", "test -e /root/after-pipe || echo absent"),
        "absent\n",
        "n38: the remote command was stopped, not left running"
    );
    let runs = json_lines(&stdout(&op.maestro(&["--json", "runs"])));
    assert_eq!(runs[0]["run"]["state"], "cancelled", "{runs:?}");
    assert_eq!(
        (
            runs[0]["run"]["ok"].as_u64(),
            runs[0]["run"]["cancelled"].as_u64()
        ),
        (Some(1), Some(1))
    );

    // SIGTERM: the same.
    on_node("n37", "rm -f /tmp/term-started");
    let child = op.spawn(&[
        "exec",
        "n37",
        "--",
        "touch /tmp/term-started; sleep 30.3; echo never",
    ]);
    wait_on_node("n37", "/tmp/term-started");
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let runs = json_lines(&stdout(&op.maestro(&["--json", "runs"])));
    assert_eq!(runs[0]["run"]["state"], "cancelled", "{runs:?}");
    // Nodes share this machine's PID namespace: no `sleep 30.3` is left.
    let ps = Command::new("ps").args(["-eo", "args"]).output().unwrap();
    assert!(
        !String::from_utf8_lossy(&ps.stdout)
            .lines()
            .any(|l| l.trim() == "sleep 30.3"),
        "the remote command was stopped"
    );
}

#[test]
fn a_full_disk_under_the_store_is_exit_5_and_says_the_run_was_not_recorded() {
    let op = Operator::new(&[39]);
    let mnt = op.tmp.path().join("small");
    std::fs::create_dir(&mnt).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=256k", "tmpfs"])
        .arg(&mnt)
        .status()
        .unwrap();
    assert!(
        mounted.success(),
        "mounting a small tmpfs (tests run as root)"
    );
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(mnt.clone());
    let db = mnt.join("runs.db");
    let o = common::maestro()
        .env("HOME", &op.home)
        .env_remove("SSH_AUTH_SOCK")
        .arg("--sot")
        .arg(&op.sot)
        .arg("--db")
        .arg(&db)
        // 400 KiB of output does not fit in what is left.
        .args(["exec", "n39", "--", "head -c 409600 /dev/zero | tr '\\0' x"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(5), "{}", stderr(&o));
    assert!(stderr(&o).contains("was not recorded"), "{}", stderr(&o));
}

#[test]
fn exit_codes_follow_the_readme_table() {
    let op = Operator::new(&[40]);
    let code = |args: &[&str]| op.maestro(args).status.code();
    assert_eq!(code(&["exec", "n40", "--", "true"]), Some(0));
    assert_eq!(code(&["exec", "n40", "--", "exit 7"]), Some(1));
    assert_eq!(code(&["exec", "nosuchnode", "--", "true"]), Some(2));
    assert_eq!(code(&["play", "no-such-playbook", "--yes"]), Some(2));
    // A store written by a newer maestro: exit 5, both versions named.
    let newer = op.tmp.path().join("newer.db");
    {
        let conn = rusqlite::Connection::open(&newer).unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
    }
    let o = common::maestro()
        .env("HOME", &op.home)
        .arg("--sot")
        .arg(&op.sot)
        .arg("--db")
        .arg(&newer)
        .args(["runs"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(5), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("schema version 99")
            && stderr(&o).contains(&format!("(version {})", maestro::store::schema::LATEST)),
        "{}",
        stderr(&o)
    );
}

#[test]
fn runs_show_has_every_task_and_the_gathered_facts() {
    let op = Operator::new(&[40]);
    let pb = op.tmp.path().join("two.toml");
    std::fs::write(
        &pb,
        "name = \"two\"\n\n[[task]]\nname = \"first\"\ncommand = { run = \"true\" }\n\n\
         [[task]]\nname = \"second fails\"\ncommand = { run = \"echo nope; exit 3\" }\n",
    )
    .unwrap();
    let o = op.maestro(&["play", pb.to_str().unwrap(), "--yes"]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    let show = &json_lines(&stdout(&op.maestro(&["--json", "runs", "show", "last"])))[0];
    let r = &show["results"][0];
    assert_eq!(r["status"], "failed");
    let tasks: Vec<(String, String)> = r["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["name"].as_str().unwrap().to_string(),
                t["status"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        tasks,
        [
            ("first".to_string(), "changed".to_string()),
            ("second fails".to_string(), "failed".to_string())
        ]
    );
    assert_eq!(r["tasks"][1]["message"], "exit code 3");
    assert_eq!(show["facts"]["n40"]["hostname"], "n40", "{show}");
    let text = stdout(&op.maestro(&["runs", "show", "last"]));
    assert!(
        text.contains("changed  first") && text.contains("failed   second fails: exit code 3"),
        "{text}"
    );
}

#[test]
fn the_console_and_the_cli_make_the_same_plan() {
    let op = Operator::new(&[40]);
    let f = fleet();
    let empty = op.tmp.path().join("ssh_config");
    std::fs::write(&empty, "").unwrap();
    let o = op.maestro(&[
        "--json",
        "play",
        "agent-runtime",
        "-l",
        "n40",
        "--check",
        "-F",
        empty.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let cli = json_lines(&stdout(&o))
        .into_iter()
        .find(|v| v["event"] == "plan")
        .expect("--check --json prints the plan")["plan"]
        .clone();
    // The console's path: an ExecPlan pinned to the node, through the
    // console's own runtime functions.
    let sot = maestro::sot::load(&op.sot).unwrap();
    let source = maestro::ops::SotSource::new(std::sync::Arc::new(sot), &op.sot);
    let config = maestro::tui::Config {
        source,
        title: "maestro".into(),
        db: op.db.clone(),
        connect: maestro::fleet::resolve::ConnectOptions {
            ssh_config: Some(empty),
            known_hosts: vec![op.known_hosts_path()],
            identities: vec![f.key()],
            ..Default::default()
        },
        forks: 10,
        limits: Default::default(),
        policy: maestro::ops::ExecPolicy::Allowed,
        actor: maestro::identity::Actor::unverified("console tester"),
    };
    let ctx = config.exec_context();
    let plan = maestro::tui::action::ExecPlan {
        nodes: vec!["n40".into()],
        command: "play agent-runtime".into(),
        job: maestro::tui::action::Job::Playbook("agent-runtime".into()),
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let planned = rt.block_on(async {
        let (bus, mut rx) = maestro::bus::Bus::new();
        let drain = tokio::spawn(async move { while rx.recv().await.is_some() {} });
        let launch = maestro::ops::Launch::new(bus, maestro::fleet::Cancel::new());
        let planned = maestro::tui::plan_exec(&ctx, &plan, &launch).await;
        drop(launch);
        drain.abort();
        planned
    });
    let (planned, _) = planned.expect("the console plans");
    assert!(planned.refusal.is_none());
    let console = serde_json::to_value(planned.plan.expect("a plan")).unwrap();
    let changes = cli["nodes"][0]["changes"].as_array().unwrap();
    assert!(changes.len() > 10, "a fresh node would change: {cli}");
    assert_eq!(
        console["nodes"], cli["nodes"],
        "the same plan, node for node"
    );
    assert_eq!(console["job"], cli["job"]);
}

#[test]
fn an_audit_of_unreachable_nodes_is_not_compliant() {
    let op = Operator::new(&[40]);
    // A node nothing answers for (nothing listens on 127.0.9.99:22).
    let mut nodes = std::fs::read_to_string(op.sot.join("nodes.toml")).unwrap();
    nodes.push_str(
        "[node.gone]\naddress = \"127.0.9.99\"\ngroups = [\"fleet\"]\ntags = { env = \"test\", region = \"eu-west\" }\n",
    );
    std::fs::write(op.sot.join("nodes.toml"), nodes).unwrap();
    let o = op.maestro(&["--json", "harden", "--audit", "--limit", "gone"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let c = json_lines(&stdout(&o))
        .into_iter()
        .find(|v| v["event"] == "compliance")
        .expect("a compliance line");
    assert_eq!(c["percent"], 0.0, "{c}");
    assert_eq!(
        (c["nodes_measured"].as_u64(), c["nodes_total"].as_u64()),
        (Some(0), Some(1))
    );
    let text = op.maestro(&["harden", "--audit", "--limit", "all"]);
    let out = stdout(&text);
    assert!(
        out.contains("measured on 1 of 2 nodes; 1 not audited count as failing every rule")
            && out.contains("gone: not audited:"),
        "{out}"
    );
}
