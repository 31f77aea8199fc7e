//! Drift on the real fleet: an agent version changed behind the SoT's
//! back, a managed file edited by hand, an unknown agent process; each
//! shows in `maestro drift` (exit 1), ignore rules in `drift.toml`, `--fix`
//! through the normal deploy/play paths, and a second drift exits 0.
//!
//! Nodes n89 and n90 are this file's.

use std::path::Path;

use crate::common::fleet::{Operator, fleet};
use crate::common::{stderr, stdout};

const AGENT: &str = "fleet-doctor";
const FILE: &str = "/etc/maestro-drift-test.conf";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn digest(file: &str) -> String {
    let text = std::fs::read_to_string(repo().join("sot/agents.toml")).unwrap();
    let at = text.find(&format!("artifacts/{file}")).unwrap();
    let rest = &text[at..];
    let q = rest.find("sha256 = \"").unwrap() + 10;
    rest[q..q + 64].to_string()
}

/// n89 and n90 with fleet-doctor 2.0.3 and 2.1.0 (current), each bound to
/// the node's own address, and a playbook that manages one file.
fn drift_operator() -> (Operator, String) {
    let nodes = [89, 90];
    let op = Operator::new(&nodes);
    let f = fleet();
    let mut text = String::new();
    for i in nodes {
        text.push_str(&format!(
            "[node.n{i:02}]\naddress = \"{a}\"\ngroups = [\"fleet\"]\ntags = {{ env = \"test\", region = \"eu-west\" }}\nvars = {{ loopback = \"{a}\" }}\n\n",
            a = f.address(i)
        ));
    }
    std::fs::write(op.sot.join("nodes.toml"), text).unwrap();
    let art = op.sot.join("artifacts");
    std::fs::create_dir_all(&art).unwrap();
    for v in ["2.0.3", "2.1.0"] {
        let name = format!("fleet-doctor-{v}.tar.gz");
        std::fs::copy(repo().join("sot/artifacts").join(&name), art.join(&name)).unwrap();
    }
    std::fs::write(
        op.sot.join("models.toml"),
        "[model.claude-sonnet]\nprovider = \"anthropic\"\n",
    )
    .unwrap();
    std::fs::write(
        op.sot.join("agents.toml"),
        format!(
            "[agent.fleet-doctor]\nmodel = \"claude-sonnet\"\nautonomy = \"L3\"\ncurrent = \"2.1.0\"\n\
             command = \"./run\"\nport = 8083\n\
             health = {{ http = \"/healthz\", interval = \"200ms\", retries = 25, min_healthy = \"500ms\" }}\n\n\
             [agent.fleet-doctor.versions.\"2.0.3\"]\nartifact = \"artifacts/fleet-doctor-2.0.3.tar.gz\"\nsha256 = \"{}\"\n\n\
             [agent.fleet-doctor.versions.\"2.1.0\"]\nartifact = \"artifacts/fleet-doctor-2.1.0.tar.gz\"\nsha256 = \"{}\"\n",
            digest("fleet-doctor-2.0.3.tar.gz"),
            digest("fleet-doctor-2.1.0.tar.gz"),
        ),
    )
    .unwrap();
    let pb = op.tmp.path().join("conf.toml");
    std::fs::write(
        &pb,
        format!("name = \"conf\"\n[[task]]\nname = \"app config\"\nfile = {{ path = \"{FILE}\", content = \"level = 1\\n\" }}\n"),
    )
    .unwrap();
    (op, pb.to_string_lossy().into_owned())
}

fn on_node(node: &str, script: &str) -> String {
    let o = fleet().node_exec(node, &["sh", "-c", script]);
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn findings(out: &str) -> Vec<serde_json::Value> {
    out.lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["event"] == "drift")
        .map(|v| v["finding"].clone())
        .collect()
}

fn rogue_pids(node: &str) -> String {
    on_node(
        node,
        "me=$(readlink /proc/self/ns/mnt); for e in /proc/[0-9]*/environ; do grep -qxz MAESTRO_AGENT=rogue \"$e\" 2>/dev/null || continue; p=${e#/proc/}; p=${p%%/*}; [ \"$(readlink /proc/$p/ns/mnt)\" = \"$me\" ] && echo $p; done",
    )
}

#[test]
fn drift_shows_what_changed_behind_maestros_back_and_fix_clears_it() {
    let (op, pb) = drift_operator();
    let nodes = "n89,n90";
    for args in [
        vec!["deploy", AGENT, "--limit", nodes, "--yes"],
        vec!["play", &pb, "--limit", nodes, "--yes"],
    ] {
        let o = op.maestro(&args);
        assert_eq!(
            o.status.code(),
            Some(0),
            "{args:?}: {}{}",
            stdout(&o),
            stderr(&o)
        );
    }
    let o = op.maestro(&["drift", nodes]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("no drift"), "{}", stdout(&o));

    // Behind the SoT's back: n89 runs the older version, n90's file is
    // edited by hand, and n90 runs an agent the registry does not know.
    let o = op.maestro(&[
        "deploy",
        &format!("{AGENT}@2.0.3"),
        "--limit",
        "n89",
        "--yes",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    on_node("n90", &format!("echo 'level = 9' > {FILE}"));
    on_node(
        "n90",
        "mkdir -p /var/lib/maestro/agents/rogue && MAESTRO_AGENT=rogue setsid sleep 600 </dev/null >/dev/null 2>&1 &",
    );
    assert!(!rogue_pids("n90").trim().is_empty(), "the rogue agent runs");
    assert!(rogue_pids("n89").trim().is_empty(), "only on n90");

    let o = op.maestro(&["--json", "drift", nodes]);
    assert_eq!(o.status.code(), Some(1), "{}{}", stdout(&o), stderr(&o));
    let found = findings(&stdout(&o));
    let has = |node: &str, kind: &str, subject: &str| {
        found.iter().any(|f| {
            f["node"] == node
                && f["kind"] == kind
                && f["subject"].as_str().unwrap().contains(subject)
                && f["ignored"].is_null()
        })
    };
    assert!(has("n89", "agent-version", AGENT), "{found:?}");
    let v = found.iter().find(|f| f["kind"] == "agent-version").unwrap();
    assert_eq!(
        (v["expected"].as_str(), v["actual"].as_str()),
        (Some("2.1.0"), Some("2.0.3"))
    );
    assert!(has("n90", "playbook", "conf.toml"), "{found:?}");
    assert!(has("n90", "unknown-agent", "rogue"), "{found:?}");
    assert_eq!(found.len(), 3, "nothing else differs: {found:?}");
    // The text report names them too.
    let o = op.maestro(&["drift", nodes]);
    assert_eq!(o.status.code(), Some(1));
    let text = stdout(&o);
    assert!(
        text.contains("3 difference(s)") && text.contains(FILE),
        "{text}"
    );

    // Ignore rules: a bad one is located; a good one turns a finding off.
    std::fs::write(
        op.sot.join("drift.toml"),
        "[[ignore]]\nwhat = \"unknown-agent\"\nreason = \"x\"\n\n[[ignore]]\nwhat = \"agent-versoin\"\nreason = \"typo\"\n",
    )
    .unwrap();
    let o = op.maestro(&["drift", nodes]);
    assert_eq!(o.status.code(), Some(2), "{}{}", stdout(&o), stderr(&o));
    assert!(stderr(&o).contains("drift.toml:6:8"), "{}", stderr(&o));
    std::fs::write(
        op.sot.join("drift.toml"),
        "[[ignore]]\nwhat = \"unknown-agent\"\nagent = \"rogue\"\nnodes = \"n90\"\nreason = \"a colleague's experiment\"\n",
    )
    .unwrap();
    let o = op.maestro(&["--json", "drift", nodes]);
    assert_eq!(o.status.code(), Some(1));
    let found = findings(&stdout(&o));
    let rogue = found.iter().find(|f| f["kind"] == "unknown-agent").unwrap();
    assert!(
        rogue["ignored"]
            .as_str()
            .unwrap()
            .contains("a colleague's experiment"),
        "{rogue}"
    );
    std::fs::remove_file(op.sot.join("drift.toml")).unwrap();

    // --fix: a deploy of current, the playbook again, the rogue stopped.
    let o = op.maestro(&["drift", nodes, "--fix"]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert!(rogue_pids("n90").trim().is_empty(), "{}", stdout(&o));
    assert_eq!(on_node("n90", &format!("cat {FILE}")), "level = 1\n");
    let state = on_node("n89", &format!("cat /var/lib/maestro/agents/{AGENT}/state"));
    assert!(state.contains("version=2.1.0"), "{state}");

    let o = op.maestro(&["drift", nodes]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("no drift"), "{}", stdout(&o));
}
