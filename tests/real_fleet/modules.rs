//! The module library on real nodes: safe root writes, pidfile services,
//! `src` containment, and the modules the installer needs (group, user
//! options, file and line attributes, command conditions).
//!
//! Attacks are made by the unprivileged node user `op`, who owns /home/op.
//! Nodes: n41 symlinks, n42 services, n43 src and sensitive lines,
//! n44 accounts and attributes, n45 command conditions, n46 the installer.

use crate::common::fleet::Operator;
use crate::common::{stderr, stdout};
use crate::playbook::{changed_tasks, json_lines, on_node};

/// Run a shell command on a node as the unprivileged user `op`.
fn as_op(node: &str, script: &str) -> String {
    on_node(
        node,
        &format!(
            "setpriv --reuid op --regid op --init-groups sh -c {} 2>&1",
            maestro::fleet::quote::sh_quote(script)
        ),
    )
}

/// Write a playbook into the operator's scratch directory and play it.
fn play(op: &Operator, name: &str, body: &str, args: &[&str]) -> std::process::Output {
    let pb = op.tmp.path().join(format!("{name}.toml"));
    std::fs::write(&pb, format!("name = \"{name}\"\n{body}")).unwrap();
    let mut all = vec!["--json", "play", pb.to_str().unwrap(), "--yes"];
    all.extend_from_slice(args);
    op.maestro(&all)
}

/// Each task's (status, message), in order, from a `--json` run on one node.
fn results(out: &str) -> Vec<(String, String)> {
    json_lines(out)
        .into_iter()
        .filter(|v| v["event"] == "task_finished")
        .map(|v| {
            (
                v["task"]["status"].as_str().unwrap_or("").to_string(),
                v["task"]["message"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

#[test]
fn a_symlink_planted_by_the_directory_owner_never_redirects_a_root_write() {
    let n = "n41";
    let op = Operator::new(&[41]);
    on_node(
        n,
        "for v in victim victim-link victim-line victim-sysctl; do printf 'root secret\\n' >/etc/$v; chmod 600 /etc/$v; done; \
         mkdir -m 700 /etc/victim-dir",
    );
    // What op plants in the directory op owns: the temporary name the old
    // module wrote through, and links where the tasks' paths are.
    let planted = as_op(
        n,
        "cd /home/op && ln -s /etc/victim app.conf.maestro-new && ln -s /etc/victim-link linked.conf && \
         ln -s /etc/victim-line env && ln -s /etc/victim-dir data && ln -s /etc/victim-sysctl sysctl.conf && echo planted",
    );
    assert!(planted.contains("planted"), "{planted}");
    let sysctl_now = on_node(n, "cat /proc/sys/kernel/pid_max")
        .trim()
        .to_string();
    let task = |name: &str, module: &str| format!("[[task]]\nname = \"{name}\"\n{module}\n");
    let cases = [
        (
            "template",
            "template = { path = \"/home/op/app.conf\", content = \"level = {{ 1 + 1 }}\\n\", owner = \"op\", mode = \"0644\" }",
            true,
        ),
        (
            "template through a link",
            "template = { path = \"/home/op/linked.conf\", content = \"x\\n\", owner = \"op\" }",
            false,
        ),
        (
            "file attributes through a link",
            "file = { path = \"/home/op/linked.conf\", owner = \"op\", mode = \"0644\" }",
            false,
        ),
        (
            "line through a link",
            "line = { path = \"/home/op/env\", line = \"A=1\", create = true }",
            false,
        ),
        (
            "dir through a link",
            "dir = { path = \"/home/op/data\", mode = \"0777\", owner = \"op\" }",
            false,
        ),
    ];
    for (name, module, ok) in cases {
        let o = play(&op, "links", &task(name, module), &[]);
        let r = results(&stdout(&o));
        if ok {
            assert_eq!(r[0].0, "changed", "{name}: {r:?} {}", stderr(&o));
        } else {
            assert_eq!(r[0].0, "failed", "{name}: {r:?}");
            assert!(r[0].1.contains("symbolic link"), "{name}: {r:?}");
        }
    }
    let sysctl = play(
        &op,
        "sysctl",
        &task(
            "persist through a link",
            &format!(
                "sysctl = {{ key = \"kernel.pid_max\", value = \"{sysctl_now}\", file = \"/home/op/sysctl.conf\" }}"
            ),
        ),
        &[],
    );
    let r = results(&stdout(&sysctl));
    assert_eq!(r[0].0, "failed", "{r:?}");
    assert!(r[0].1.contains("symbolic link"), "{r:?}");
    // The victims are untouched: content, owner, mode.
    assert_eq!(
        on_node(
            n,
            "for v in victim victim-link victim-line victim-sysctl; do stat -c '%U %a' /etc/$v; cat /etc/$v; done; stat -c '%U %a' /etc/victim-dir"
        ),
        "root 600\nroot secret\n".repeat(4) + "root 700\n"
    );
    // The template landed where it was meant to, as a file op owns.
    assert_eq!(
        on_node(
            n,
            "stat -c '%F %U %a' /home/op/app.conf; cat /home/op/app.conf"
        ),
        "regular file op 644\nlevel = 2\n"
    );
    // The links are still links (never replaced, never followed), and no
    // temporary file or directory is left behind.
    assert_eq!(
        on_node(
            n,
            "cd /home/op && for f in linked.conf env data sysctl.conf app.conf.maestro-new; do [ -L $f ] && echo link; done; ls -A | grep -c maestro- || true"
        ),
        "link\nlink\nlink\nlink\nlink\n1\n",
        "only op's own planted app.conf.maestro-new"
    );
}

#[test]
fn absent_removes_a_link_itself_never_its_target() {
    let n = "n41";
    let op = Operator::new(&[41]);
    on_node(n, "printf keep >/etc/keep-me");
    as_op(n, "ln -sf /etc/keep-me /home/op/gone");
    let o = play(
        &op,
        "absent",
        "[[task]]\nname = \"gone\"\nabsent = { path = \"/home/op/gone\" }\n",
        &[],
    );
    assert_eq!(results(&stdout(&o))[0].0, "changed");
    assert_eq!(
        on_node(
            n,
            "cat /etc/keep-me; [ -e /home/op/gone ] || [ -L /home/op/gone ] || echo removed"
        ),
        "keepremoved\n"
    );
}

/// Processes of the agent runtime in the node's mount namespace: one line
/// "USER ARGS" per process whose arguments name the launcher.
fn runtimes(node: &str) -> String {
    on_node(
        node,
        "ns=$(readlink /proc/self/ns/mnt); for p in /proc/[0-9]*; do \
           [ \"$(readlink $p/ns/mnt 2>/dev/null)\" = \"$ns\" ] || continue; \
           a=$(tr '\\0' ' ' <$p/cmdline 2>/dev/null); \
           case $a in 'sh -c /opt/maestro/bin/maestro-runtime '|'/bin/sh /opt/maestro/bin/maestro-runtime ') echo \"$(stat -c %U $p) $a\" ;; esac; done | sort",
    )
}

#[test]
fn the_runtime_runs_as_its_user_from_a_root_only_pidfile_and_a_restart_leaves_exactly_one() {
    let n = "n42";
    let op = Operator::new(&[42]);
    let install = |extra: &[&str]| {
        let mut args = vec!["--json", "install", "--profile", "user", "--yes"];
        args.extend_from_slice(extra);
        let o = op.maestro(&args);
        assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
        o
    };
    install(&[]);
    let one = "maestro /bin/sh /opt/maestro/bin/maestro-runtime \n\
               maestro sh -c /opt/maestro/bin/maestro-runtime \n";
    assert_eq!(runtimes(n), one, "one runtime, as the service user");
    assert_eq!(
        on_node(
            n,
            "stat -c '%U %a' /run/maestro /run/maestro/maestro-runtime.pid"
        ),
        "root 755\nroot 644\n",
        "the pidfile is where only root can write"
    );
    // The service user cannot touch it.
    assert!(
        on_node(
            n,
            "setpriv --reuid maestro --regid maestro --init-groups sh -c 'echo 1 >/run/maestro/maestro-runtime.pid; ln -sf /etc/passwd /run/maestro/x' 2>&1"
        )
        .contains("Permission denied")
    );
    // Restarts (a configuration change notifies the handler), twice.
    for beat in ["5", "7"] {
        let o = install(&["-e", &format!("heartbeat_seconds={beat}")]);
        let restarted = json_lines(&stdout(&o)).into_iter().any(|v| {
            v["event"] == "task_finished"
                && v["task"]["name"] == "restart runtime"
                && v["task"]["status"] == "changed"
        });
        assert!(restarted, "{}", stdout(&o));
        assert_eq!(runtimes(n), one, "exactly one runtime after a restart");
    }

    // A pidfile that names a process maestro did not start (here root's own
    // sleep, as a stale or forged file would) is not trusted: nothing is killed.
    let victim = on_node(
        n,
        "setsid sleep 300 </dev/null >/dev/null 2>&1 & echo $!; \
         read -r p s </run/maestro/maestro-runtime.pid; true",
    );
    let victim = victim.trim();
    on_node(
        n,
        &format!("printf '%s\\n0\\n' {victim} >/run/maestro/maestro-runtime.pid"),
    );
    install(&["-e", "heartbeat_seconds=9"]);
    assert!(
        on_node(n, &format!("kill -0 {victim} && echo alive")).contains("alive"),
        "the foreign process was not signalled"
    );
    on_node(n, &format!("kill {victim}"));
}

#[test]
fn a_pidfile_in_a_directory_others_can_write_is_refused() {
    let n = "n42";
    let op = Operator::new(&[42]);
    on_node(n, "mkdir -p /srv/op-run && chown op /srv/op-run");
    for (dir, why) in [
        ("/srv/op-run", "owned by op"),
        ("/tmp", "which others can write"),
    ] {
        let o = play(
            &op,
            "svc",
            &format!(
                "[[task]]\nname = \"svc\"\nservice = {{ name = \"svc\", state = \"started\", command = \"sleep 60\", pidfile = \"{dir}/svc.pid\" }}\n"
            ),
            &[],
        );
        let r = results(&stdout(&o));
        assert_eq!(r[0].0, "failed", "{r:?}");
        assert!(r[0].1.contains(why), "{r:?}");
    }
    assert_eq!(
        on_node(n, "ls /srv/op-run /tmp | grep -c svc.pid || true"),
        "0\n"
    );
}

#[test]
fn src_outside_the_playbook_library_is_refused() {
    let op = Operator::new(&[43]);
    let lib = op.tmp.path().join("lib");
    std::fs::create_dir_all(lib.join("files")).unwrap();
    std::fs::write(lib.join("files/ok.txt"), "fine\n").unwrap();
    std::fs::write(op.tmp.path().join("outside.txt"), "not for nodes\n").unwrap();
    std::os::unix::fs::symlink("/etc/shadow", lib.join("files/shadow")).unwrap();
    for (src, shown) in [
        ("/etc/shadow", "/etc/shadow"),
        ("../outside.txt", "outside.txt"),
        ("files/shadow", "/etc/shadow"),
    ] {
        let pb = lib.join("pb.toml");
        std::fs::write(
            &pb,
            format!("name = \"src\"\n[[task]]\nname = \"copy\"\ntemplate = {{ path = \"/tmp/copied\", src = \"{src}\" }}\n"),
        )
        .unwrap();
        let o = op.maestro(&["play", pb.to_str().unwrap(), "--check", "--diff"]);
        let all = format!("{}{}", stdout(&o), stderr(&o));
        assert_eq!(o.status.code(), Some(1), "{src}: {all}");
        assert!(
            all.contains("outside the playbook library") && all.contains(shown),
            "{src}: {all}"
        );
        assert!(
            !all.contains("root:"),
            "nothing of the file is shown: {all}"
        );
    }
    let pb = lib.join("pb.toml");
    std::fs::write(
        &pb,
        "name = \"src\"\n[[task]]\nname = \"copy\"\nfile = { path = \"/tmp/copied\", src = \"files/ok.txt\" }\n",
    )
    .unwrap();
    let o = op.maestro(&["play", pb.to_str().unwrap(), "--yes"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(on_node("n43", "cat /tmp/copied"), "fine\n");
}

#[test]
fn a_sensitive_line_is_never_shown_in_a_diff() {
    let op = Operator::new(&[43]);
    let body = |token: &str, sensitive: bool| {
        format!(
            "[[task]]\nname = \"token\"\nline = {{ path = \"/etc/app.env\", regexp = \"^TOKEN=\", line = \"TOKEN={token}\", create = true, sensitive = {sensitive} }}\n"
        )
    };
    let o = play(&op, "token", &body("first-secret", true), &["--diff"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let o = play(&op, "token", &body("second-secret", true), &["--diff"]);
    let out = stdout(&o);
    assert!(out.contains("content hidden: sensitive"), "{out}");
    assert!(!out.contains("secret"), "{out}");
    assert_eq!(on_node("n43", "cat /etc/app.env"), "TOKEN=second-secret\n");
    // Not sensitive: the diff shows the change.
    let o = play(&op, "token", &body("third", false), &["--diff"]);
    assert!(stdout(&o).contains("+TOKEN=third"), "{}", stdout(&o));
    let _ = changed_tasks;
}

#[test]
fn group_first_then_user_with_uid_groups_and_a_home() {
    let n = "n44";
    let op = Operator::new(&[44]);
    let body = "[[task]]\nname = \"group\"\ngroup = { name = \"agent\", gid = 4321, system = true }\n\
        [[task]]\nname = \"user\"\nuser = { name = \"agent\", uid = 4321, groups = [\"audio\"], home = \"/home/agent\", create_home = true, shell = \"/bin/sh\" }\n\
        [[task]]\nname = \"second user in the group\"\nuser = { name = \"helper\", group = \"agent\", system = true }\n";
    let o = play(&op, "accounts", body, &[]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert_eq!(
        results(&stdout(&o))
            .iter()
            .map(|r| r.0.as_str())
            .collect::<Vec<_>>(),
        ["changed"; 3]
    );
    assert_eq!(
        on_node(
            n,
            "id agent; id -gn helper; stat -c '%U %G' /home/agent; getent group agent | cut -d: -f3"
        ),
        "uid=4321(agent) gid=4321(agent) groups=4321(agent),29(audio)\nagent\nagent agent\n4321\n"
    );
    let again = play(&op, "accounts", body, &[]);
    assert_eq!(
        changed_tasks(&stdout(&again)).len(),
        0,
        "{}",
        stdout(&again)
    );
    // A changed request changes the account.
    let o = play(
        &op,
        "accounts",
        "[[task]]\nname = \"user\"\nuser = { name = \"agent\", shell = \"/bin/false\", groups = [\"audio\", \"video\"] }\n",
        &[],
    );
    assert_eq!(results(&stdout(&o))[0].0, "changed", "{}", stdout(&o));
    assert_eq!(
        on_node(n, "getent passwd agent | cut -d: -f7; id -Gn agent"),
        "/bin/false\nagent audio video\n"
    );
}

#[test]
fn file_sets_only_attributes_and_line_sets_its_own() {
    let n = "n44";
    let op = Operator::new(&[44]);
    on_node(
        n,
        "printf 'binary data\\n' >/srv/data.bin; chmod 600 /srv/data.bin; printf 'A=1\\n' >/srv/app.env; chmod 666 /srv/app.env",
    );
    let body = "[[task]]\nname = \"attributes\"\nfile = { path = \"/srv/data.bin\", owner = \"op\", group = \"op\", mode = \"0640\" }\n\
        [[task]]\nname = \"new env\"\nline = { path = \"/srv/new.env\", line = \"B=2\", create = true, mode = \"0600\", owner = \"op\", group = \"op\" }\n\
        [[task]]\nname = \"existing env\"\nline = { path = \"/srv/app.env\", regexp = \"^A=\", line = \"A=1\", mode = \"0644\" }\n";
    let o = play(&op, "attrs", body, &[]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    let r = results(&stdout(&o));
    assert_eq!(
        r[0],
        (
            "changed".into(),
            "/srv/data.bin: mode=0640 owner=op group=op".into()
        )
    );
    assert_eq!(r[2], ("changed".into(), "/srv/app.env: mode=0644".into()));
    assert_eq!(
        on_node(
            n,
            "stat -c '%n %a %U %G' /srv/data.bin /srv/new.env /srv/app.env; cat /srv/data.bin /srv/new.env /srv/app.env"
        ),
        "/srv/data.bin 640 op op\n/srv/new.env 600 op op\n/srv/app.env 644 root root\nbinary data\nB=2\nA=1\n"
    );
    let again = play(&op, "attrs", body, &[]);
    assert_eq!(
        changed_tasks(&stdout(&again)).len(),
        0,
        "{}",
        stdout(&again)
    );
    // Attributes only, on a file that is not there: a clear failure.
    let o = play(
        &op,
        "missing",
        "[[task]]\nname = \"attributes\"\nfile = { path = \"/srv/none\", mode = \"0600\" }\n",
        &[],
    );
    let r = results(&stdout(&o));
    assert_eq!(r[0].0, "failed");
    assert!(r[0].1.contains("does not exist"), "{r:?}");
}

#[test]
fn command_changed_when_and_failed_when_decide_on_the_node() {
    let op = Operator::new(&[45]);
    let body = "[vars]\nmarker = \"already exists\"\n\
        [[task]]\nname = \"read-only check\"\ncommand = { run = \"test -d /etc\", changed_when = false }\n\
        [[task]]\nname = \"tolerated failure\"\ncommand = { run = \"echo 'group already exists' >&2; exit 9\", failed_when = \"rc != 0 and marker not in stderr\", changed_when = \"rc == 0\" }\n\
        [[task]]\nname = \"changed when it says so\"\ncommand = { run = \"echo nothing to do\", changed_when = \"'changed' in stdout\" }\n";
    for _ in 0..2 {
        let o = play(&op, "conds", body, &[]);
        assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
        let r = results(&stdout(&o));
        assert!(r.iter().all(|t| t.0 == "ok"), "{r:?}");
    }
    let check = play(&op, "conds", body, &["--check"]);
    assert_eq!(results(&stdout(&check))[0].0, "ok", "{}", stdout(&check));
    let o = play(
        &op,
        "fails",
        "[[task]]\nname = \"real failure\"\ncommand = { run = \"echo boom >&2; exit 3\", failed_when = \"rc != 0 and 'exists' not in stderr\" }\n",
        &[],
    );
    assert_eq!(o.status.code(), Some(1));
    let r = results(&stdout(&o));
    assert_eq!(r[0].0, "failed");
    assert!(r[0].1.contains("exit code 3"), "{r:?}");
    // An unsupported condition is refused before anything runs.
    let o = play(
        &op,
        "bad",
        "[[task]]\nname = \"bad\"\ncommand = { run = \"true\", changed_when = \"stdout | length > 3\" }\n",
        &[],
    );
    assert_ne!(o.status.code(), Some(0));
    assert!(
        format!("{}{}", stdout(&o), stderr(&o)).contains("not supported"),
        "{}{}",
        stdout(&o),
        stderr(&o)
    );
}

/// The installer from the module-library issue, written with the new modules:
/// it changes nothing on its second run.
#[test]
fn an_installer_with_group_user_attributes_and_checks_reports_zero_changed_the_second_time() {
    let n = "n46";
    let op = Operator::new(&[46]);
    on_node(n, "printf 'seed\\n' >/srv/seed.dat");
    let body = "[vars]\nuser = \"agent\"\nroot = \"/opt/agent\"\n\
        [[task]]\nname = \"group\"\ngroup = { name = \"{{ user }}\", system = true }\n\
        [[task]]\nname = \"user\"\nuser = { name = \"{{ user }}\", system = true, home = \"{{ root }}\", shell = \"/bin/false\" }\n\
        [[task]]\nname = \"root\"\ndir = { path = \"{{ root }}\", mode = \"0750\", owner = \"root\", group = \"{{ user }}\" }\n\
        [[task]]\nname = \"config\"\ntemplate = { path = \"{{ root }}/agent.conf\", content = \"node = {{ node.name }}\\n\", mode = \"0640\", group = \"{{ user }}\" }\n\
        [[task]]\nname = \"env\"\nline = { path = \"{{ root }}/agent.env\", regexp = \"^ROOT=\", line = \"ROOT={{ root }}\", create = true, mode = \"0640\", group = \"{{ user }}\" }\n\
        [[task]]\nname = \"seed attributes\"\nfile = { path = \"/srv/seed.dat\", owner = \"{{ user }}\", mode = \"0600\" }\n\
        [[task]]\nname = \"config is readable by the group\"\ncommand = { run = \"grep -q '^node = ' {{ root }}/agent.conf\", changed_when = false }\n";
    let first = play(&op, "installer", body, &[]);
    assert_eq!(
        first.status.code(),
        Some(0),
        "{}{}",
        stdout(&first),
        stderr(&first)
    );
    assert_eq!(
        changed_tasks(&stdout(&first)).len(),
        6,
        "{}",
        stdout(&first)
    );
    let second = play(&op, "installer", body, &[]);
    assert_eq!(second.status.code(), Some(0));
    assert_eq!(
        changed_tasks(&stdout(&second)).len(),
        0,
        "{}",
        stdout(&second)
    );
    let text = op.maestro(&[
        "play",
        op.tmp.path().join("installer.toml").to_str().unwrap(),
        "--yes",
    ]);
    assert!(
        stdout(&text).contains("changed=0 failed=0"),
        "{}",
        stdout(&text)
    );
    assert_eq!(
        on_node(
            n,
            "stat -c '%a %U %G' /opt/agent /opt/agent/agent.conf /opt/agent/agent.env /srv/seed.dat"
        ),
        "750 root agent\n640 root agent\n640 root agent\n600 agent root\n"
    );
}

#[test]
fn templated_vars_reach_the_node_rendered_and_cycles_are_refused() {
    let op = Operator::new(&[43]);
    let body = "[vars]\nhost = \"{{ node.name }}\"\nlabel = \"{{ host }}-{{ region }}\"\nregion = \"{{ node.tags.region }}\"\n\
        [[task]]\nname = \"label\"\ntemplate = { path = \"/tmp/label\", content = \"{{ label }}\\n\" }\n\
        [[task]]\nname = \"label in a command\"\ncommand = { run = \"printf '%s' {{ label }} >/tmp/label-cmd\" }\n";
    let o = play(&op, "vars", body, &[]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert_eq!(
        on_node("n43", "cat /tmp/label /tmp/label-cmd"),
        "n43-eu-west\nn43-eu-west"
    );
    // -e overrides by the documented precedence, and what uses it follows.
    play(&op, "vars", body, &["-e", "host=override"]);
    assert_eq!(on_node("n43", "cat /tmp/label"), "override-eu-west\n");
    // A cycle made with -e (the playbook alone has none) fails the node,
    // naming the variables, and ships nothing.
    let o = play(&op, "vars", body, &["-e", "region={{ label }}"]);
    assert_eq!(o.status.code(), Some(1));
    let all = format!("{}{}", stdout(&o), stderr(&o));
    assert!(all.contains("refers to itself"), "{all}");
    assert_eq!(on_node("n43", "cat /tmp/label"), "override-eu-west\n");
    // A cycle in the playbook is refused at load, with file:line:col.
    let pb = op.tmp.path().join("cycle.toml");
    std::fs::write(
        &pb,
        "name = \"cycle\"\n[vars]\na = \"{{ b }}\"\nb = \"{{ a }}\"\n[[task]]\nname = \"t\"\ncommand = { run = \"true\" }\n",
    )
    .unwrap();
    let o = op.maestro(&["play", pb.to_str().unwrap(), "--check"]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(
        err.starts_with("error[bad-value]: variable `a` refers to itself: a -> b -> a\n"),
        "diagnostics are printed as the SoT's are, without `error: ` in front: {err}"
    );
    assert!(err.contains("cycle.toml:3:5"), "{err}");
}
