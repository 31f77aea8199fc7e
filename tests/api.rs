//! `maestro serve`, the read-only HTTP API, on a SoT made by `maestro init`
//! with a run in its store (a node on a closed loopback port): every route
//! answers with the shape `/openapi.json` documents, no token or a wrong or
//! revoked one gets no data, a write method is refused, the SoT can be read
//! at an older commit, and serving changes nothing. And the ledger of a
//! team on one PostgreSQL store ([`shared_ledger`]).

mod common;
#[path = "api/shared_ledger.rs"]
mod shared_ledger;

use std::path::Path;
use std::process::{Command, Output};

use common::api::{Served, answer_schema, conforms};
use common::{ClosedNodeSot, snapshot, stderr, stdout};
use serde_json::Value;

fn both(o: &Output) -> String {
    format!("{}{}", stdout(o), stderr(o))
}

fn git_head_of(sot: &Path, rev: &str) -> String {
    let o = Command::new("git")
        .arg("-C")
        .arg(sot)
        .args(["rev-parse", rev])
        .output()
        .unwrap();
    stdout(&o).trim().to_string()
}

fn git_head(sot: &Path) -> String {
    git_head_of(sot, "HEAD")
}

#[test]
fn every_route_answers_as_documented_only_to_a_token_and_only_reads() {
    let scratch = ClosedNodeSot::new();
    let sot = &scratch.sot;
    let m = |args: &[&str]| scratch.maestro(args);
    // The SoT as it was before `closed` was added.
    let before_node = git_head_of(sot, "HEAD~1");
    let o = m(&["exec", "closed", "--accept-new", "--", "true"]);
    assert_eq!(o.status.code(), Some(1), "{}", both(&o));
    let run = scratch.last_run();

    // Tokens: made by the CLI, only their hashes committed.
    let add = |name: &str| {
        let o = m(&[
            "token",
            "add",
            name,
            "--person",
            "ada-lovelace",
            "--reason",
            "the API",
        ]);
        assert!(o.status.success(), "{}", both(&o));
        let token = stdout(&o).trim().to_string();
        assert!(token.starts_with("mst_"), "{token}");
        let file = std::fs::read_to_string(sot.join("tokens.toml")).unwrap();
        assert!(!file.contains(&token), "the token itself is never written");
        token
    };
    let token = add("ada-laptop");
    let revoked = add("old-laptop");
    let o = m(&["token", "remove", "old-laptop", "--reason", "lost it"]);
    assert!(o.status.success(), "{}", both(&o));
    let o = m(&["token", "add", "x", "--person", "nobody", "--reason", "r"]);
    assert_eq!(o.status.code(), Some(2), "an unknown person: {}", both(&o));

    let sot_files = snapshot(sot);
    let ledger_file = scratch.tmp.path().join("ledger.jsonl");
    let ledger_bytes = std::fs::read(&ledger_file).unwrap();
    let api = Served::start(scratch.command(&[]));

    let (status, doc) = api.call("GET", "/openapi.json", None);
    assert_eq!(status, 200);
    assert_eq!(doc["openapi"], "3.1.0");
    let documented: Vec<String> = doc["paths"].as_object().unwrap().keys().cloned().collect();
    let asked = std::cell::RefCell::new(Vec::new());
    let check = |route: &str, path: &str| -> Value {
        let (status, body) = api.get(path, &token);
        assert_eq!(status, 200, "GET {path}: {body}");
        conforms(&doc, answer_schema(&doc, route), &body, path)
            .unwrap_or_else(|e| panic!("GET {path} departs from /openapi.json: {e}\n{body}"));
        asked.borrow_mut().push(route.to_string());
        body
    };

    let me = check("/v1/whoami", "/v1/whoami");
    assert_eq!(
        (me["token"].as_str(), me["person"].as_str()),
        (Some("ada-laptop"), Some("ada-lovelace"))
    );

    let now = check("/v1/sot", "/v1/sot");
    assert_eq!(now["commit"].as_str(), Some(git_head(sot).as_str()));
    let names = |v: &Value| -> Vec<String> {
        v["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert!(names(&now).contains(&"closed".to_string()));
    assert!(
        !now["policies"].as_array().unwrap().is_empty(),
        "the example's policies"
    );
    let then = check("/v1/sot", &format!("/v1/sot?commit={before_node}"));
    assert_eq!(then["commit"].as_str(), Some(before_node.as_str()));
    assert!(
        !names(&then).contains(&"closed".to_string()),
        "the SoT as that commit had it"
    );
    assert_eq!(api.get("/v1/sot?commit=no-such-rev", &token).0, 404);

    let runs = check("/v1/runs", "/v1/runs");
    let listed = &runs["runs"][0];
    assert_eq!(listed["id"].as_str(), Some(run.as_str()));
    assert_eq!(listed["unreachable"].as_u64(), Some(1), "{listed}");
    let detail = check("/v1/runs/{id}", &format!("/v1/runs/{run}"));
    assert_eq!(detail["results"][0]["node"], "closed");
    assert_eq!(detail["results"][0]["status"], "unreachable");
    assert_eq!(api.get("/v1/runs/r-nope", &token).0, 404);
    assert_eq!(api.get("/v1/runs?limit=0", &token).0, 400);

    check("/v1/rollouts", "/v1/rollouts");
    let (status, body) = api.get("/v1/rollouts/ro-nope", &token);
    assert_eq!(status, 404);
    conforms(
        &doc,
        &serde_json::json!({"$ref": "#/components/schemas/Error"}),
        &body,
        "404",
    )
    .unwrap();
    asked.borrow_mut().push("/v1/rollouts/{id}".into()); // with data: tests/rollout/reflect.rs

    let ledger = check("/v1/ledger", "/v1/ledger");
    assert!(
        ledger["total"].as_u64().unwrap() >= 2,
        "the gate's entry and the results: {ledger}"
    );
    let of_run = check("/v1/ledger", &format!("/v1/ledger?run={run}&limit=1"));
    assert_eq!(of_run["entries"].as_array().unwrap().len(), 1);
    let cps = check("/v1/ledger/checkpoints", "/v1/ledger/checkpoints");
    assert!(cps["verify"]["problem"].is_null(), "{cps}");
    assert!(!cps["checkpoints"].as_array().unwrap().is_empty(), "{cps}");
    assert_eq!(
        cps["signatures_checked"], true,
        "the example SoT has ledger/key.pub"
    );
    check("/v1/telemetry", "/v1/telemetry?minutes=5");
    assert_eq!(api.get("/v1/telemetry?minutes=0", &token).0, 400);

    let mut asked = asked.into_inner();
    asked.sort();
    asked.dedup();
    let mut documented = documented;
    documented.sort();
    assert_eq!(asked, documented, "every documented route was asked");

    // No token, a wrong one, a revoked one: no data, on every route.
    for route in &documented {
        let path = route.replace("{id}", &run);
        for bad in [None, Some("mst_guess"), Some(revoked.as_str())] {
            let (status, body) = api.call("GET", &path, bad);
            assert_eq!(status, 401, "GET {path} with {bad:?}: {body}");
            conforms(
                &doc,
                &serde_json::json!({"$ref": "#/components/schemas/Error"}),
                &body,
                &path,
            )
            .unwrap();
            assert!(body.get("runs").is_none() && body.get("nodes").is_none());
        }
    }
    // Nothing writes.
    for (method, path) in [
        ("POST", "/v1/runs"),
        ("PUT", "/v1/sot"),
        ("DELETE", &*format!("/v1/runs/{run}")),
    ] {
        let (status, _) = api.call(method, path, Some(&token));
        assert_eq!(status, 405, "{method} {path}");
    }
    drop(api);
    assert!(snapshot(sot) == sot_files, "serving changed the SoT");
    assert_eq!(
        std::fs::read(&ledger_file).unwrap(),
        ledger_bytes,
        "serving changed the ledger"
    );
}

/// A team's store named once in the SoT (`[store] url`): every command
/// without `--db` uses it; `$MAESTRO_DB` and `--db` still win; a URL with
/// a password is refused by `sot check` without being shown.
#[test]
fn the_sot_names_the_team_store_and_the_environment_overrides_it() {
    let s = ClosedNodeSot::new();
    let url = maestro::store::test_cluster::fresh_database_url()
        .expect("PostgreSQL is installed (.ci/run installs it)");
    let settings = s.sot.join("maestro.toml");
    let text = std::fs::read_to_string(&settings).unwrap();
    std::fs::write(&settings, format!("{text}\n[store]\nurl = \"{url}\"\n")).unwrap();
    let git = |args: &[&str]| {
        let o = std::process::Command::new("git")
            .arg("-C")
            .arg(&s.sot)
            .args(["-c", "user.name=Ada", "-c", "user.email=ada@example.org"])
            .args(args)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
    };
    git(&["commit", "-qam", "the team's store"]);
    let without_db = |args: &[&str], env_db: Option<&Path>| {
        let mut c = common::maestro();
        c.arg("--sot")
            .arg(&s.sot)
            .args(args)
            .env("HOME", s.tmp.path())
            .env_remove("XDG_STATE_HOME")
            .env("MAESTRO_IDENTITY", &s.key)
            .stdin(std::process::Stdio::null());
        match env_db {
            Some(db) => c.env("MAESTRO_DB", db),
            None => c.env_remove("MAESTRO_DB"),
        };
        c.output().unwrap()
    };
    let runs_in = |db: &str| {
        let o = common::maestro()
            .args(["--db", db, "--json", "runs"])
            .env("HOME", s.tmp.path())
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        stdout(&o).lines().filter(|l| l.starts_with('{')).count()
    };
    let o = without_db(&["exec", "closed", "--accept-new", "--", "true"], None);
    assert_eq!(o.status.code(), Some(1), "{}{}", stdout(&o), stderr(&o));
    assert_eq!(runs_in(&url), 1, "recorded in the SoT's store");
    assert!(
        !s.tmp
            .path()
            .join(".local/state/maestro/maestro.db")
            .exists(),
        "not in the default SQLite file"
    );
    let local = s.tmp.path().join("mine.db");
    let o = without_db(&["exec", "closed", "--", "true"], Some(&local));
    assert_eq!(o.status.code(), Some(1), "{}{}", stdout(&o), stderr(&o));
    assert_eq!(runs_in(local.to_str().unwrap()), 1, "$MAESTRO_DB wins");
    assert_eq!(runs_in(&url), 1);

    let secret = url.replacen("maestro@", "maestro:hunter2@", 1);
    std::fs::write(&settings, format!("{text}\n[store]\nurl = \"{secret}\"\n")).unwrap();
    let o = without_db(&["sot", "check"], None);
    assert_eq!(o.status.code(), Some(2), "{}{}", stdout(&o), stderr(&o));
    let shown = format!("{}{}", stdout(&o), stderr(&o));
    assert!(shown.contains("carries a password"), "{shown}");
    assert!(
        !shown.contains("hunter2"),
        "the password is not shown: {shown}"
    );
}
