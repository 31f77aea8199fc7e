//! The console end to end: the real `maestro` binary in a real terminal
//! (a tmux pane of 160×48) against the real OpenSSH test fleet. Open, filter
//! to 3 nodes, mark them, run `uname -r` with confirmation, see 3 results,
//! open the run in the runs view, quit; the terminal is restored.
//!
//! The test owns a tmux server on its own socket and kills only that
//! session. Screens are polled with a timeout, never slept on.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::common::fleet::Operator;
use crate::common::stdout;

const WAIT: Duration = Duration::from_secs(30);

pub(crate) struct Tmux {
    socket: PathBuf,
    session: String,
}

impl Tmux {
    /// A detached session running a plain bash in `dir`, with `env` set.
    fn start(dir: &Path, width: u16, height: u16, env: &[(&str, &str)]) -> Tmux {
        let found = Command::new("tmux").arg("-V").output();
        assert!(
            found.is_ok_and(|o| o.status.success()),
            "the console's end-to-end test drives a terminal with tmux, which is not installed: \
             apt-get install -y tmux (.ci/run installs it)"
        );
        let tmux = Tmux {
            socket: dir.join("tmux.sock"),
            session: format!("maestro-tui-{}", std::process::id()),
        };
        let mut shell =
            String::from("env -u SSH_AUTH_SOCK -u XDG_STATE_HOME -u MAESTRO_SOT -u MAESTRO_DB");
        for (k, v) in env {
            shell.push_str(&format!(" {k}='{v}'"));
        }
        shell.push_str(" PS1='e2e$ ' bash --norc --noprofile");
        let o = tmux.run(&[
            "new-session",
            "-d",
            "-x",
            &width.to_string(),
            "-y",
            &height.to_string(),
            "-s",
            &tmux.session,
            "-c",
            dir.to_str().unwrap(),
            &shell,
        ]);
        assert!(
            o.status.success(),
            "tmux new-session: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        tmux.wait_for("the shell prompt", |s| s.contains("e2e$"));
        tmux
    }

    /// A 160×48 session with `op`'s console open in it (its HOME, SoT and
    /// store, and `env`), and the shell's `maestro exited N` once it quits.
    pub(crate) fn console(op: &Operator, env: &[(&str, &str)]) -> Tmux {
        let mut all = vec![
            ("HOME", op.home.to_str().unwrap()),
            ("TERM", "xterm-256color"),
        ];
        all.extend_from_slice(env);
        let tmux = Tmux::start(op.tmp.path(), 160, 48, &all);
        tmux.text(&format!(
            "{} --sot {} --db '{}'; echo \"maestro exited $?\"",
            env!("CARGO_BIN_EXE_maestro"),
            op.sot.display(),
            op.db.display()
        ));
        tmux.keys(&["Enter"]);
        tmux
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("tmux runs")
    }

    /// Named keys (`Enter`, `Space`, `Escape`) or single characters.
    pub(crate) fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", &self.session];
        args.extend_from_slice(keys);
        let o = self.run(&args);
        assert!(
            o.status.success(),
            "send-keys {keys:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }

    /// Text typed literally.
    pub(crate) fn text(&self, text: &str) {
        let o = self.run(&["send-keys", "-t", &self.session, "-l", text]);
        assert!(o.status.success(), "send-keys -l {text:?}");
    }

    pub(crate) fn screen(&self) -> String {
        let o = self.run(&["capture-pane", "-p", "-t", &self.session]);
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    fn format(&self, format: &str) -> String {
        let o = self.run(&["display-message", "-p", "-t", &self.session, format]);
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    }

    /// Poll the screen until `ready` holds; fail with the screen after WAIT.
    pub(crate) fn wait_for(&self, what: &str, ready: impl Fn(&str) -> bool) -> String {
        let started = Instant::now();
        loop {
            let screen = self.screen();
            if ready(&screen) {
                return screen;
            }
            if started.elapsed() > WAIT {
                panic!("waited {WAIT:?} for {what}; the screen is:\n{screen}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        // Only our session, on our own socket.
        let _ = self.run(&["kill-session", "-t", &self.session]);
    }
}

#[test]
fn console_filters_marks_runs_and_records_a_command() {
    let op = Operator::new(&[1, 2, 3, 4, 5, 6]);
    let kernel = String::from_utf8(Command::new("uname").arg("-r").output().unwrap().stdout)
        .unwrap()
        .trim()
        .to_string();
    let term = Tmux::console(&op, &[]);
    let screen = term.wait_for("the fleet view", |s| s.contains("nodes 6/6"));
    assert!(screen.contains("fleet test-fleet"), "{screen}");
    assert_eq!(
        term.format("#{alternate_on}"),
        "1",
        "the console uses the alternate screen"
    );

    // Filter to the three eu-west nodes and mark them.
    term.keys(&["/"]);
    term.text("region=eu-west");
    term.keys(&["Enter"]);
    let screen = term.wait_for("the filter", |s| s.contains("nodes 3/6"));
    for gone in ["n02", "n04", "n06"] {
        assert!(!screen.contains(gone), "{gone} is filtered out:\n{screen}");
    }
    term.keys(&["Space", "Space", "Space"]);
    term.wait_for("three marks", |s| s.contains("3 marked"));

    // Exec with confirmation: the dialog shows the plan.
    term.keys(&["x"]);
    term.wait_for("the exec prompt", |s| s.contains("exec on 3 nodes>"));
    term.text("uname -r");
    term.keys(&["Enter"]);
    let screen = term.wait_for("the confirmation", |s| {
        s.contains("Run this command on 3 nodes")
    });
    assert!(screen.contains("n01, n03, n05"), "{screen}");
    assert!(screen.contains("uname -r"), "{screen}");
    // y is taken once the operations layer's plan and the gate's answer are shown.
    let screen = term.wait_for("the plan", |s| s.contains("gate: admitted"));
    assert!(screen.contains("plan: runs on 3 nodes"), "{screen}");
    term.keys(&["y"]);
    let screen = term.wait_for("the run to finish", |s| s.contains("finished in"));
    assert!(
        screen.contains("ok 3 · failed 0 · unreachable 0"),
        "{screen}"
    );
    let results: Vec<&str> = screen
        .lines()
        .filter(|l| l.contains(" done ") && l.contains(&kernel))
        .collect();
    assert_eq!(
        results.len(),
        3,
        "three results with the kernel version:\n{screen}"
    );

    // The run in the runs view, and its detail.
    term.keys(&[":"]);
    term.text("runs");
    term.keys(&["Enter"]);
    let screen = term.wait_for("the runs view", |s| s.contains("runs 1 "));
    assert!(
        screen
            .lines()
            .any(|l| l.contains("exec") && l.contains("finished") && l.contains("uname -r")),
        "{screen}"
    );
    term.keys(&["Enter"]);
    let screen = term.wait_for("the run detail", |s| s.contains("n01 · ok · rc=0"));
    for node in ["n01", "n03", "n05"] {
        assert!(
            screen
                .lines()
                .any(|l| l.contains(node) && l.contains(" ok ")),
            "{node} ok in the detail:\n{screen}"
        );
    }
    assert!(
        screen.contains(&kernel),
        "the selected node's output:\n{screen}"
    );

    // The fleet shows the new results; the node view (the cursor stayed on
    // n05, the last one marked) lists the run.
    term.keys(&[":"]);
    term.text("nodes");
    term.keys(&["Enter"]);
    let screen = term.wait_for("the fleet's last runs", |s| {
        s.lines()
            .filter(|l| l.contains(" ok ") && l.contains(" yes "))
            .count()
            == 3
    });
    assert!(
        screen.contains("nodes 3/6"),
        "the filter is kept:\n{screen}"
    );
    term.keys(&["Enter"]);
    let screen = term.wait_for("the node view", |s| {
        s.contains("node n05")
            && s.lines()
                .any(|l| l.contains("exec") && l.contains("uname -r"))
    });
    assert!(screen.contains("region=eu-west"), "{screen}");

    // Quit: the shell is back, the terminal restored.
    term.keys(&["q"]);
    let screen = term.wait_for("the shell", |s| s.contains("maestro exited 0"));
    assert!(
        !screen.contains("Run this command"),
        "the console's screen is gone:\n{screen}"
    );
    assert_eq!(
        term.format("#{alternate_on}"),
        "0",
        "the alternate screen is left"
    );
    term.text("stty -a");
    term.keys(&["Enter"]);
    let screen = term.wait_for("stty", |s| {
        s.contains("icanon") && s.matches("e2e$").count() >= 2
    });
    let modes: Vec<&str> = screen.split_whitespace().collect();
    for mode in ["icanon", "echo", "isig"] {
        assert!(
            modes.contains(&mode) && !modes.contains(&format!("-{mode}").as_str()),
            "{mode} is on again after quitting:\n{screen}"
        );
    }

    // Recorded like a CLI run.
    let show = op.maestro(&["--json", "runs", "show", "last"]);
    let v: serde_json::Value = serde_json::from_str(stdout(&show).lines().next().unwrap()).unwrap();
    assert_eq!(v["run"]["command"], "uname -r");
    assert_eq!(v["run"]["kind"], "exec");
    assert_eq!(v["run"]["ok"], 3);
    let nodes: Vec<&str> = v["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["node"].as_str().unwrap())
        .collect();
    assert_eq!(nodes, ["n01", "n03", "n05"]);
    for r in v["results"].as_array().unwrap() {
        assert_eq!(r["stdout"]["bytes"].as_str().unwrap().trim(), kernel);
    }
}

#[test]
fn without_a_terminal_maestro_says_so_and_exits_2() {
    let op = Operator::new(&[1]);
    let o = op.maestro(&[]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("needs a terminal"), "{err}");
    assert!(err.contains("usage:"), "{err}");
}

#[test]
fn the_console_kills_a_running_agent_after_its_name_is_typed() {
    use crate::agents::{agent_operator, commit_sot, deploy, get};
    let op = agent_operator(&[60]);
    commit_sot(&op);
    let o = deploy(&op, "fleet-doctor@2.0.3", &[60], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert_eq!(get(60, "/healthz").map(|r| r.0), Some(200));
    let term = Tmux::console(
        &op,
        &[("MAESTRO_ACTOR", "Console Tester <console@example.org>")],
    );
    term.wait_for("the fleet view", |s| s.contains("nodes 1/1"));
    term.keys(&[":"]);
    term.text("kill fleet-doctor answers with secrets");
    term.keys(&["Enter"]);
    let screen = term.wait_for("the kill panel", |s| {
        s.contains("Type `fleet-doctor` to confirm")
    });
    assert!(screen.contains("answers with secrets"), "{screen}");
    // A wrong name does nothing; the agent keeps running.
    term.text("fleet-docto");
    term.keys(&["Enter"]);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        get(60, "/healthz").map(|r| r.0),
        Some(200),
        "killed before the name was typed"
    );
    term.text("r");
    term.keys(&["Enter"]);
    let screen = term.wait_for("every node confirmed", |s| {
        s.contains("1/1 confirmed stopped")
    });
    assert!(screen.contains("KILL SWITCH ENGAGED"), "{screen}");
    assert!(get(60, "/healthz").is_none(), "the agent still answers");
    // The engaged state is in the SoT, committed by the console's actor.
    let log = crate::common::git(&op.sot, &["log", "-1", "--format=%an %s"]);
    assert!(log.contains("Console Tester"), "{log}");
    // Esc and q sent back to back can read as Alt-q: let the panel close first.
    term.keys(&["Escape"]);
    term.wait_for("the panel to close", |s| !s.contains("confirmed stopped"));
    term.keys(&["q"]);
    term.wait_for("maestro to exit", |s| s.contains("maestro exited 0"));
}
