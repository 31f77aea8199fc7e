//! Playbooks, installs and hardening against real OpenSSH nodes.
//!
//! Nodes: n01-n10 install (exec tests only read them), n17 root vs n18 sudo
//! user, n19 harden, n20 lock-out guard, n21 hostile values, n22 diff,
//! n23 refused installs.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use crate::common::fleet::{Operator, fleet};
use crate::common::{stderr, stdout};

pub(crate) fn json_lines(out: &str) -> Vec<serde_json::Value> {
    out.lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// (node, task index) of every task that reported `changed`.
pub(crate) fn changed_tasks(out: &str) -> BTreeSet<(String, u64)> {
    json_lines(out)
        .into_iter()
        .filter(|v| v["event"] == "task_finished" && v["task"]["status"] == "changed")
        .map(|v| {
            (
                v["node"].as_str().unwrap().to_string(),
                v["task"]["index"].as_u64().unwrap(),
            )
        })
        .collect()
}

pub(crate) fn on_node(node: &str, script: &str) -> String {
    let o = fleet().node_exec(node, &["sh", "-c", script]);
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn install_user_profile_on_ten_nodes_check_predicts_and_second_run_changes_nothing() {
    let nodes: Vec<usize> = (1..=10).collect();
    let op = Operator::new(&nodes);
    // --check on fresh nodes changes nothing...
    let check = op.maestro(&["--json", "install", "--profile", "user", "--check"]);
    assert_eq!(check.status.code(), Some(0), "{}", stderr(&check));
    assert_eq!(
        on_node("n01", "ls /opt/maestro 2>&1 || true").trim(),
        "ls: cannot access '/opt/maestro': No such file or directory"
    );
    let predicted = changed_tasks(&stdout(&check));
    assert!(
        predicted.len() >= 10 * 15,
        "a fresh node has most tasks to do: {}",
        predicted.len()
    );

    // ...and predicts exactly what the real run changes.
    let real = op.maestro(&["--json", "install", "--profile", "user", "--yes"]);
    assert_eq!(
        real.status.code(),
        Some(0),
        "{}{}",
        stdout(&real),
        stderr(&real)
    );
    assert_eq!(
        changed_tasks(&stdout(&real)),
        predicted,
        "check mode predicted the real run"
    );
    // The install's own run (its closing audit of the profile's baseline is
    // a second run).
    let lines = json_lines(&stdout(&real));
    let install_run = lines
        .iter()
        .find(|v| v["event"] == "run_started")
        .map(|v| v["run_id"].clone())
        .expect("a run_started event");
    let finished: Vec<serde_json::Value> = lines
        .into_iter()
        .filter(|v| v["event"] == "node_finished" && v["run_id"] == install_run)
        .collect();
    assert_eq!(finished.len(), 10);
    for v in &finished {
        assert_eq!(v["result"]["status"], "ok", "{v}");
        for t in v["result"]["tasks"].as_array().unwrap() {
            assert!(t["status"] == "ok" || t["status"] == "changed", "{t}");
        }
    }

    // The files are on each node with the right content and modes, and not on the host.
    let launcher = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("playbooks/files/maestro-runtime.sh"),
    )
    .unwrap();
    for i in [1, 4, 10] {
        let n = format!("n{i:02}");
        assert_eq!(
            on_node(&n, "cat /opt/maestro/bin/maestro-runtime"),
            launcher
        );
        assert_eq!(
            on_node(
                &n,
                "stat -c '%a %U %G' /opt/maestro/bin/maestro-runtime /opt/maestro/etc /opt/maestro/etc/runtime.toml /var/log/maestro"
            ),
            "755 root root\n750 root maestro\n640 root maestro\n750 maestro maestro\n"
        );
        assert!(
            on_node(&n, "cat /opt/maestro/etc/runtime.toml").contains(&format!("node = \"{n}\""))
        );
        assert_eq!(
            on_node(&n, "grep -c '^MAESTRO_' /opt/maestro/etc/runtime.env"),
            "2\n"
        );
        assert!(
            on_node(
                &n,
                "read pid </run/maestro/maestro-runtime.pid && kill -0 $pid && ps -o user= -p $pid"
            )
            .contains("maestro"),
            "the runtime runs as the service user"
        );
    }
    assert!(
        !Path::new("/opt/maestro/etc/runtime.toml").exists(),
        "nothing lands on the host"
    );

    // A second run changes nothing.
    let again = op.maestro(&["--json", "install", "--profile", "user", "--yes"]);
    assert_eq!(again.status.code(), Some(0));
    assert_eq!(
        changed_tasks(&stdout(&again)),
        BTreeSet::new(),
        "the second run reports 0 changed"
    );
    let recap = op.maestro(&["install", "--profile", "user", "--yes", "--limit", "n01"]);
    assert!(
        stdout(&recap).contains("changed=0 failed=0"),
        "{}",
        stdout(&recap)
    );
}

/// Every file the runtime install creates, with mode, owner, group and size
/// (no size for the running service's log and pidfile, which live on).
fn tree(node: &str) -> String {
    on_node(
        node,
        "find /opt/maestro /var/log/maestro /var/lib/maestro /etc/logrotate.d/maestro-runtime \
         /etc/systemd/system/maestro-runtime.service -printf '%p %m %u %g %s\\n' | sort",
    )
    .lines()
    .map(|l| match l.rsplit_once(' ') {
        Some((rest, _)) if l.contains(".log ") || l.contains(".pid ") => format!("{rest}\n"),
        _ => format!("{l}\n"),
    })
    .collect()
}

#[test]
fn a_sudo_user_install_matches_a_root_install() {
    let op = Operator::new(&[17, 18]);
    let nodes = std::fs::read_to_string(op.sot.join("nodes.toml")).unwrap();
    // n18 is reached as the unprivileged user `op`, which escalates with sudo.
    std::fs::write(
        op.sot.join("nodes.toml"),
        nodes.replace("[node.n18]\n", "[node.n18]\nuser = \"op\"\n"),
    )
    .unwrap();
    let o = op.maestro(&["--json", "install", "--profile", "user", "--yes"]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    let mut per_node: BTreeMap<String, Vec<(u64, String)>> = BTreeMap::new();
    for v in json_lines(&stdout(&o))
        .into_iter()
        .filter(|v| v["event"] == "task_finished")
    {
        per_node
            .entry(v["node"].as_str().unwrap().into())
            .or_default()
            .push((
                v["task"]["index"].as_u64().unwrap(),
                v["task"]["status"].as_str().unwrap().into(),
            ));
    }
    for v in per_node.values_mut() {
        v.sort();
    }
    assert_eq!(
        per_node["n17"], per_node["n18"],
        "the same task results as root and through sudo"
    );
    assert_eq!(
        on_node("n18", "id -un; sudo -n true && echo sudo-ok"),
        "root\nsudo-ok\n"
    );
    let (root, sudo) = (tree("n17"), tree("n18"));
    assert!(root.lines().count() > 10, "{root}");
    assert_eq!(root, sudo, "the same files, modes and owners");
}

#[test]
fn a_misconfigured_profile_or_a_missing_yes_is_refused_before_touching_any_node() {
    let op = Operator::new(&[23]);
    // enterprise requires an `owner` tag the node does not have.
    let o = op.maestro(&["install", "--profile", "enterprise", "--yes"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("n23: has no `owner` tag, which profile `enterprise` requires"),
        "{}",
        stderr(&o)
    );
    // A variable that breaks the profile's [validate] rules.
    let o = op.maestro(&[
        "install",
        "--profile",
        "user",
        "--yes",
        "-e",
        "runtime_root=opt/maestro",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("`runtime_root` must be an absolute path"),
        "{}",
        stderr(&o)
    );
    // Not a terminal and no --yes: refuse rather than change nodes unconfirmed.
    let o = op.maestro(&["install", "--profile", "user"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("pass --yes"), "{}", stderr(&o));
    assert_eq!(
        on_node(
            "n23",
            "test -e /opt/maestro && echo touched || echo untouched"
        ),
        "untouched\n"
    );
    let runs = op.maestro(&["runs"]);
    assert_eq!(
        stdout(&runs).lines().count(),
        1,
        "no run was even started: {}",
        stdout(&runs)
    );
}

#[test]
fn diff_shows_changes_but_never_sensitive_content() {
    let op = Operator::new(&[22]);
    let pb = op.tmp.path().join("conf.toml");
    let write = |value: &str| {
        std::fs::write(
            &pb,
            format!(
                "name = \"conf\"\n[[task]]\nname = \"app config\"\nfile = {{ path = \"/etc/app.conf\", content = \"level = {value}\\n\" }}\n\
                 [[task]]\nname = \"app secret\"\nfile = {{ path = \"/etc/app.secret\", content = \"token-{value}\\n\", sensitive = true, mode = \"0600\" }}\n"
            ),
        )
        .unwrap();
    };
    write("info");
    let o = op.maestro(&["play", pb.to_str().unwrap(), "--yes"]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    write("debug");
    let o = op.maestro(&["play", pb.to_str().unwrap(), "--check", "--diff"]);
    let out = stdout(&o);
    assert!(
        out.contains("-level = info") && out.contains("+level = debug"),
        "{out}"
    );
    assert!(
        out.contains("(content hidden: sensitive)") && !out.contains("token-"),
        "{out}"
    );
    assert_eq!(
        on_node("n22", "cat /etc/app.conf"),
        "level = info\n",
        "--check changed nothing"
    );
}

const HOSTILE: &str = "x'y\"z $(touch /tmp/pwned-dollar) `touch /tmp/pwned-tick`; touch /tmp/pwned-semi & * ? [a] \\ $HOME\nsecond line";
/// A file name cannot hold `/`: if this ever ran, it would leave `pwned-name*`
/// in the working directory (the login user's home) instead.
const HOSTILE_NAME: &str = "n'a\"m $(touch pwned-name) `touch pwned-name2`; * ? $HOME";

pub(crate) fn toml_str(s: &str) -> String {
    serde_json::to_string(s).unwrap() // a JSON string is a valid TOML basic string
}

#[test]
fn hostile_values_in_every_module_never_execute() {
    let op = Operator::new(&[21]);
    let vars = format!(
        "[vars]\nhostile = {}\nname = {}\n",
        toml_str(HOSTILE),
        toml_str(HOSTILE_NAME)
    );
    // `file` content is literal (no templating), so the hostile text goes in as is.
    let file_module = format!(
        "file = {{ path = \"/tmp/h/f-{{{{ name }}}}\", content = {} }}",
        toml_str(HOSTILE)
    );
    let modules: Vec<(&str, &str, bool)> = vec![
        (
            "dir",
            "dir = { path = \"/tmp/h/{{ name }}\", mode = \"0750\" }",
            false,
        ),
        ("file", file_module.as_str(), false),
        (
            "template",
            "template = { path = \"/tmp/h/t.txt\", content = \"value: {{ hostile }}\\n\" }",
            false,
        ),
        (
            "line",
            "line = { path = \"/tmp/h/lines.txt\", line = \"{{ name }}\", regexp = \"^$(touch /tmp/pwned-re)`touch /tmp/pwned-re2`$\", create = true }",
            false,
        ),
        (
            "command",
            "command = { run = \"printf '%s' {{ hostile }} > /tmp/h/cmd-out\", creates = \"/tmp/h/{{ name }}/created\", unless = \"test -e {{ name }}\" }",
            false,
        ),
        (
            "copy",
            "command = { run = \"cp /tmp/h/f-{{ name }} /tmp/h/f-copy\" }",
            false,
        ),
        (
            "absent",
            "absent = { path = \"/tmp/h/f-{{ name }}\" }",
            false,
        ),
        ("package", "package = { name = \"{{ name }}\" }", true),
        (
            "service",
            "service = { name = \"{{ name }}\", state = \"started\", command = \"sleep 300 # {{ hostile }}\", pidfile = \"/tmp/h/svc-{{ name }}.pid\" }",
            false,
        ),
        (
            "service-stop",
            "service = { name = \"{{ name }}\", state = \"stopped\", pidfile = \"/tmp/h/svc-{{ name }}.pid\" }",
            false,
        ),
        (
            "user",
            "user = { name = \"hostile-test\", home = \"/tmp/h/{{ name }}\", shell = \"{{ hostile }}\" }",
            false,
        ),
        (
            "sysctl",
            "sysctl = { key = \"kernel.maestro_no_such_key\", value = \"{{ hostile }}\", file = \"/tmp/h/{{ name }}.conf\" }",
            false,
        ),
        (
            "checksum",
            "checksum = { path = \"/tmp/h/{{ name }}\", sha256 = \"{{ hostile }}\" }",
            false,
        ),
    ];
    on_node("n21", "mkdir -p /tmp/h");
    for (label, module, check) in &modules {
        let pb = op.tmp.path().join(format!("{label}.toml"));
        std::fs::write(&pb, format!("name = \"hostile {label}\"\n{vars}\n[[task]]\nname = \"hostile {label}\"\n{module}\n")).unwrap();
        let mut args = vec!["play", pb.to_str().unwrap(), "--yes"];
        if *check {
            args.push("--check");
        }
        let o = op.maestro(&args);
        assert!(
            o.status.code() == Some(0) || o.status.code() == Some(1),
            "{label}: {}{}",
            stdout(&o),
            stderr(&o)
        );
    }
    // Values passed with -e are quoted the same way.
    let pb = op.tmp.path().join("extra.toml");
    std::fs::write(&pb, "name = \"extra\"\n[[task]]\nname = \"extra\"\ntemplate = { path = \"/tmp/h/extra\", content = \"{{ e }}\" }\n").unwrap();
    let o = op.maestro(&[
        "play",
        pb.to_str().unwrap(),
        "--yes",
        "-e",
        &format!("e={HOSTILE}"),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));

    assert_eq!(
        on_node(
            "n21",
            "ls -a / /tmp /tmp/h /root /home/op 2>/dev/null | grep -c '^pwned' || true"
        ),
        "0\n",
        "nothing executed on the node"
    );
    assert!(
        std::fs::read_dir("/tmp").unwrap().all(|e| !e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with("pwned")),
        "nor on the host"
    );
    // The values arrived literally.
    assert_eq!(
        on_node("n21", "cat /tmp/h/t.txt"),
        format!("value: {HOSTILE}\n")
    );
    assert_eq!(on_node("n21", "cat /tmp/h/cmd-out"), HOSTILE);
    assert_eq!(on_node("n21", "cat /tmp/h/extra"), HOSTILE);
    assert_eq!(
        on_node("n21", "cat /tmp/h/f-copy"),
        HOSTILE,
        "file content arrives byte for byte"
    );
    assert_eq!(
        on_node("n21", "cat /tmp/h/lines.txt"),
        format!("{HOSTILE_NAME}\n")
    );
    let dir = on_node("n21", "ls -la /tmp/h");
    assert!(
        dir.contains(HOSTILE_NAME),
        "the directory has the literal hostile name: {dir}"
    );
    assert!(
        !dir.contains(&format!("f-{HOSTILE_NAME}")),
        "absent removed the literal file: {dir}"
    );
}

fn compliance(out: &str) -> f64 {
    let v = json_lines(out)
        .into_iter()
        .find(|v| v["event"] == "compliance")
        .expect("a compliance line");
    v["percent"].as_f64().unwrap()
}

#[test]
fn harden_audit_then_apply_reaches_full_compliance_and_keeps_ssh_working() {
    // Serialised with the other hardening tests; host-wide state put back.
    let _host = crate::harden::HostState::save();
    let op = Operator::new(&[19]);
    let audit = op.maestro(&["--json", "harden", "--audit", "--baseline", "baseline"]);
    assert_eq!(
        audit.status.code(),
        Some(1),
        "a fresh node is not compliant: {}",
        stderr(&audit)
    );
    let before = compliance(&stdout(&audit));
    assert!(before < 100.0, "{before}");
    let text = op.maestro(&["harden", "--audit", "--baseline", "baseline"]);
    assert!(
        stdout(&text).contains("FAIL") && stdout(&text).contains("compliance:"),
        "{}",
        stdout(&text)
    );

    let apply = op.maestro(&["harden", "--apply", "--baseline", "baseline", "--yes"]);
    assert_eq!(
        apply.status.code(),
        Some(0),
        "{}{}",
        stdout(&apply),
        stderr(&apply)
    );
    let after = op.maestro(&["--json", "harden", "--audit", "--baseline", "baseline"]);
    assert_eq!(after.status.code(), Some(0), "{}", stdout(&after));
    assert_eq!(compliance(&stdout(&after)), 100.0);
    // sshd was reconfigured and reloaded, and still accepts maestro on new connections.
    assert!(
        on_node(
            "n19",
            "sshd -T 2>/dev/null | grep -i '^passwordauthentication'"
        )
        .contains("no")
    );
    let o = op.maestro(&["exec", "n19", "--", "echo still-in"]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert!(stdout(&o).contains("still-in"));
}

#[test]
fn a_remediation_that_would_lock_maestro_out_is_refused() {
    // Serialised with the other hardening tests; host-wide state put back.
    let _host = crate::harden::HostState::save();
    let op = Operator::new(&[20]);
    let o = op.maestro(&["harden", "--apply", "--baseline", "strict", "--yes"]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(out.contains("REFUSED"), "{out}");
    assert!(
        out.contains("would lock it out"),
        "the refusal says why: {out}"
    );
    assert!(
        !on_node("n20", "sshd -T 2>/dev/null | grep -i '^permitrootlogin'").contains(" no"),
        "root login was not disabled"
    );
    let o = op.maestro(&["exec", "n20", "--", "true"]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "maestro still gets in: {}",
        stdout(&o)
    );
}
