//! Policy and approvals on the real fleet: the example SoT's Cedar policies
//! deny a deploy of an EU-only agent to a US node and refuse the whole job
//! (the EU node is not touched either); an L4 agent's deploy waits for two
//! distinct people's signed approvals, the requester's own and one for
//! another plan not counting.
//!
//! Nodes n97 (jurisdiction eu) and n98 (jurisdiction us) are this file's.

use std::path::{Path, PathBuf};
use std::process::Output;

use super::agents::{agent_operator, commit_sot, get};
use crate::common::fleet::{Operator, fleet};
use crate::common::{stderr, stdout};

const EU: usize = 97;
const US: usize = 98;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A key pair made with ssh-keygen; returns (private key path, public line).
fn keypair(dir: &Path, name: &str) -> (PathBuf, String) {
    let path = dir.join(name);
    let out = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
        .arg(&path)
        .output()
        .expect("ssh-keygen runs (openssh-client is installed by .ci/run)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let public = std::fs::read_to_string(path.with_extension("pub")).unwrap();
    (path, public.trim().to_string())
}

pub(crate) struct People {
    pub(crate) requester: PathBuf,
    pub(crate) alice: PathBuf,
    pub(crate) bob: PathBuf,
}

/// The agents operator's SoT made governed: jurisdiction and PII tags on
/// the nodes, the example policies, three people with fresh keys, an
/// EU-only agent and an L4 agent.
fn governed_operator() -> (Operator, People) {
    governed_operator_on(EU, US)
}

/// [`governed_operator`] over two other nodes (jurisdiction eu, us).
pub(crate) fn governed_operator_on(eu: usize, us: usize) -> (Operator, People) {
    let op = agent_operator(&[eu, us]);
    let f = fleet();
    let mut nodes = String::new();
    for (i, j) in [(eu, "eu"), (us, "us")] {
        nodes.push_str(&format!(
            "[node.n{i:02}]\naddress = \"{a}\"\ngroups = [\"fleet\"]\n\
             tags = {{ env = \"test\", region = \"eu-west\", jurisdiction = \"{j}\", pii = \"restricted\" }}\n\
             vars = {{ loopback = \"{a}\" }}\n\n",
            a = f.address(i)
        ));
    }
    std::fs::write(op.sot.join("nodes.toml"), nodes).unwrap();
    std::fs::write(
        op.sot.join("models.toml"),
        "[model.eu-only]\nprovider = \"vllm\"\njurisdictions = [\"eu\"]\n\n\
         [model.anywhere]\nprovider = \"vllm\"\njurisdictions = [\"eu\", \"us\"]\n",
    )
    .unwrap();
    // Two agents on fleet-doctor's artifacts: one whose model serves only
    // in the EU, one at L4 (two-person rule).
    let agents = std::fs::read_to_string(op.sot.join("agents.toml")).unwrap();
    let eu_agent = agents
        .replace("[agent.fleet-doctor", "[agent.eu-doctor")
        .replace("model = \"claude-sonnet\"", "model = \"eu-only\"")
        .replace(
            "autonomy = \"L3\"",
            "autonomy = \"L2\"\nowner = \"ops\"\ntags = { pii = \"none\" }",
        );
    let l4_agent = agents
        .replace("model = \"claude-sonnet\"", "model = \"anywhere\"")
        .replace(
            "autonomy = \"L3\"",
            "autonomy = \"L4\"\nowner = \"ops\"\ntags = { pii = \"none\" }",
        );
    std::fs::write(
        op.sot.join("agents.toml"),
        format!("{l4_agent}\n{eu_agent}"),
    )
    .unwrap();
    let keys = op.tmp.path().join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    let mut people = String::new();
    let mut paths = Vec::new();
    for name in ["requester", "alice", "bob"] {
        let (path, public) = keypair(&keys, name);
        people.push_str(&format!(
            "[person.{name}]\nemail = \"{name}@example.org\"\nteams = [\"ops\"]\nkeys = [\"{public}\"]\n\n"
        ));
        paths.push(path);
    }
    std::fs::write(op.sot.join("people.toml"), people).unwrap();
    let policies = op.sot.join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    for f in ["schema.cedarschema", "base.cedar", "guardrails.cedar"] {
        std::fs::copy(repo().join("sot/policies").join(f), policies.join(f)).unwrap();
    }
    // A ledger directory: each job's signed checkpoint is committed here.
    std::fs::create_dir_all(op.sot.join("ledger")).unwrap();
    std::fs::write(op.sot.join("ledger/.keep"), "").unwrap();
    let check = op.maestro(&["sot", "check"]);
    assert!(check.status.success(), "{}", stderr(&check));
    commit_sot(&op);
    let bob = paths.pop().unwrap();
    let alice = paths.pop().unwrap();
    let requester = paths.pop().unwrap();
    (
        op,
        People {
            requester,
            alice,
            bob,
        },
    )
}

pub(crate) fn as_person(op: &Operator, key: &Path, args: &[&str]) -> Output {
    op.command(args)
        .env("MAESTRO_IDENTITY", key)
        .output()
        .expect("maestro runs")
}

pub(crate) fn both(o: &Output) -> String {
    format!("{}{}", stdout(o), stderr(o))
}

/// The approval id a held job printed (`approval apr-…`).
pub(crate) fn approval_id(o: &Output) -> String {
    let text = both(o);
    let at = text
        .find("apr-")
        .unwrap_or_else(|| panic!("no approval id in: {text}"));
    text[at..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect()
}

#[test]
fn a_policy_denial_refuses_the_whole_job_and_an_l4_deploy_waits_for_two_other_peoples_signatures() {
    let (op, people) = governed_operator();
    let limit = format!("n{EU:02},n{US:02}");

    // Unproven, nothing changes.
    let typed = op.maestro(&["deploy", "eu-doctor", "--limit", &limit, "--yes"]);
    assert_eq!(typed.status.code(), Some(3), "{}", both(&typed));
    assert!(
        both(&typed).contains("unverified-changes-nothing"),
        "{}",
        both(&typed)
    );

    // The EU-only agent to an EU and a US node: denied as a whole.
    let denied = as_person(
        &op,
        &people.requester,
        &["deploy", "eu-doctor", "--limit", &limit, "--yes"],
    );
    let text = both(&denied);
    assert_eq!(denied.status.code(), Some(3), "{text}");
    assert!(text.contains("model-jurisdiction"), "{text}");
    assert!(text.contains(&format!("n{US:02}")), "{text}");
    assert!(
        !text.contains(&format!("n{EU:02}: ")),
        "the EU node is allowed: {text}"
    );
    assert!(get(EU, "/healthz").is_none(), "the EU node was touched");
    assert!(get(US, "/healthz").is_none(), "the US node was touched");

    // The L4 agent: held for approval, nothing deployed.
    let deploy = ["deploy", "fleet-doctor", "--limit", "n97", "--yes"];
    let held = as_person(&op, &people.requester, &deploy);
    assert_eq!(held.status.code(), Some(4), "{}", both(&held));
    assert!(
        both(&held).contains("0 of 2 valid approvals"),
        "{}",
        both(&held)
    );
    let id = approval_id(&held);
    assert!(get(EU, "/healthz").is_none());

    // The requester cannot approve their own job.
    let own = as_person(&op, &people.requester, &["approve", &id]);
    assert_eq!(own.status.code(), Some(2), "{}", both(&own));
    assert!(both(&own).contains("cannot approve"), "{}", both(&own));

    // Alice approves; one is not enough.
    let a = as_person(&op, &people.alice, &["approve", &id]);
    assert!(a.status.success(), "{}", both(&a));
    assert!(stdout(&a).contains("1 of 2"), "{}", stdout(&a));
    let again = as_person(&op, &people.alice, &["approve", &id]);
    assert!(
        stdout(&again).contains("1 of 2"),
        "the same person twice counts once: {}",
        stdout(&again)
    );
    let still = as_person(&op, &people.requester, &deploy);
    assert_eq!(still.status.code(), Some(4), "{}", both(&still));
    assert!(
        both(&still).contains("1 of 2 valid approvals"),
        "{}",
        both(&still)
    );

    // Bob approves another plan (another version): it does not count for this one.
    let other_plan = ["deploy", "fleet-doctor@2.0.3", "--limit", "n97", "--yes"];
    let other = as_person(&op, &people.requester, &other_plan);
    assert_eq!(other.status.code(), Some(4), "{}", both(&other));
    let other_id = approval_id(&other);
    assert_ne!(other_id, id);
    let b = as_person(&op, &people.bob, &["approve", &other_id]);
    assert!(b.status.success(), "{}", both(&b));
    // Bob's signature copied onto the first request in the store does not
    // count either: it signed the other request and plan.
    let conn = rusqlite::Connection::open(&op.db).unwrap();
    conn.execute(
        "INSERT INTO approval_signatures SELECT ?1, person, key, plan, signature, signed_ms, expires_ms
         FROM approval_signatures WHERE approval_id = ?2",
        rusqlite::params![id, other_id],
    )
    .unwrap();
    drop(conn);
    let forged = as_person(&op, &people.requester, &deploy);
    assert_eq!(forged.status.code(), Some(4), "{}", both(&forged));
    let list = op.maestro(&["approvals"]);
    assert!(
        stdout(&list).contains("not counted: bob (the signature does not verify"),
        "{}",
        stdout(&list)
    );

    // Bob approves this plan: two distinct people, the job runs.
    let b = as_person(&op, &people.bob, &["approve", &id]);
    assert!(stdout(&b).contains("2 of 2"), "{}", both(&b));
    let runs = as_person(&op, &people.requester, &deploy);
    assert!(runs.status.success(), "{}", both(&runs));
    let (code, _) = get(EU, "/healthz").expect("fleet-doctor answers on n97");
    assert_eq!(code, 200);
    let exec = as_person(&op, &people.alice, &["exec", &limit, "--", "true"]);
    assert!(exec.status.success(), "{}", both(&exec));

    // A kill the policies refuse (a typed name) commits nothing.
    let head = crate::common::git(&op.sot, &["rev-parse", "HEAD"]);
    let kill = op.maestro(&[
        "kill",
        "fleet-doctor",
        "--limit",
        &limit,
        "--reason",
        "test",
    ]);
    assert_eq!(kill.status.code(), Some(3), "{}", both(&kill));
    assert!(!op.sot.join("killswitch.toml").exists());
    assert_eq!(crate::common::git(&op.sot, &["rev-parse", "HEAD"]), head);
    assert!(get(EU, "/healthz").is_some(), "the agent still runs");

    ledger_holds_the_evidence_and_shows_tampering(&op);
}

/// Every decision above is in the ledger, signed checkpoints are in the
/// SoT's history, and tampering with the file is named.
fn ledger_holds_the_evidence_and_shows_tampering(op: &Operator) {
    let show = op.maestro(&["--json", "ledger", "show"]);
    assert!(show.status.success(), "{}", both(&show));
    let entries: Vec<serde_json::Value> = stdout(&show)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let bodies: Vec<&serde_json::Value> = entries.iter().map(|e| &e["entry"]["body"]).collect();
    assert!(
        bodies.iter().any(|b| b["decision"] == "denied"
            && b["policy"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["policy"] == "model-jurisdiction")),
        "the denial is recorded with its policy: {bodies:#?}"
    );
    assert!(bodies.iter().any(|b| b["decision"] == "awaiting_approval"));
    let ran: Vec<_> = bodies.iter().filter(|b| b["decision"] == "ran").collect();
    assert_eq!(ran.len(), 2, "the deploy and the exec ran");
    assert!(ran.iter().all(|b| b["actor"]["verified"] == true));
    let log = crate::common::git(&op.sot, &["log", "--format=%s"]);
    assert!(log.contains("ledger: ledger checkpoint"), "{log}");
    assert!(op.sot.join("ledger/key.pub").exists());

    // The deploy's run as an attestation: an in-toto statement in a DSSE
    // envelope, its subjects the run's entries.
    let run = ran[0]["run"].as_str().unwrap();
    let export = op.maestro(&["ledger", "export", "--run", run]);
    assert!(export.status.success(), "{}", both(&export));
    let envelope: serde_json::Value = serde_json::from_str(&stdout(&export)).unwrap();
    assert_eq!(envelope["payloadType"], "application/vnd.in-toto+json");
    assert_eq!(envelope["signatures"].as_array().unwrap().len(), 1);
    use base64::Engine as _;
    let payload = base64::engine::general_purpose::STANDARD
        .decode(envelope["payload"].as_str().unwrap())
        .unwrap();
    let statement: serde_json::Value = serde_json::from_slice(&payload).unwrap();
    assert_eq!(statement["_type"], "https://in-toto.io/Statement/v1");
    assert!(statement["predicate"]["checkpoint"]["signature"].is_string());

    let ok = op.maestro(&["ledger", "verify"]);
    assert!(ok.status.success(), "{}", both(&ok));
    assert!(
        stdout(&ok).contains(&format!("{} entries", entries.len())),
        "{}",
        stdout(&ok)
    );

    let file = op.db.with_file_name("ledger.jsonl");
    let original = std::fs::read_to_string(&file).unwrap();
    let lines: Vec<&str> = original.lines().collect();
    let tampered = |text: String, expect: &str| {
        std::fs::write(&file, text).unwrap();
        let v = op.maestro(&["ledger", "verify"]);
        assert_eq!(v.status.code(), Some(1), "{}", both(&v));
        assert!(
            stdout(&v).contains(expect),
            "expected {expect:?}: {}",
            stdout(&v)
        );
    };
    // One byte of one entry.
    tampered(
        original.replacen("\"decision\":\"denied\"", "\"decision\":\"demied\"", 1),
        "edited",
    );
    // The last three entries cut off: only the committed checkpoint sees it.
    tampered(
        lines[..lines.len() - 3]
            .iter()
            .map(|l| format!("{l}\n"))
            .collect(),
        "a signed checkpoint recorded",
    );
    std::fs::write(&file, original).unwrap();
}

/// `KEY=value` and `key: value` lines of the secrets corpus's vars files.
fn corpus_vars() -> Vec<(String, String)> {
    let dir = repo().join("tests/secrets/secrets");
    let mut out = Vec::new();
    for f in ["agent.vars", "infra.vars"] {
        for line in std::fs::read_to_string(dir.join(f)).unwrap().lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (k, v) = match (line.find('='), line.find(": ")) {
                (Some(e), Some(c)) if c < e => (&line[..c], &line[c + 2..]),
                (Some(e), _) => (&line[..e], &line[e + 1..]),
                (None, Some(c)) => (&line[..c], &line[c + 2..]),
                (None, None) => continue,
            };
            let v = v.trim().trim_matches('"').trim_matches('\'');
            let k: String = k
                .trim()
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() {
                        c.to_ascii_lowercase()
                    } else {
                        '_'
                    }
                })
                .collect();
            out.push((format!("{k}_{}", out.len()), v.to_string()));
        }
    }
    out
}

#[test]
fn secret_variables_never_reach_the_output_the_store_or_the_ledger() {
    let (op, people) = governed_operator();
    let vars = corpus_vars();
    assert!(vars.len() >= 30, "{}", vars.len());
    // A playbook that echoes every variable and writes them into a file
    // (shown with --diff): the node gets them, nobody sees them.
    let mut echo = String::new();
    let mut file = String::new();
    for (k, _) in &vars {
        echo.push_str(&format!(" {{{{ {k} }}}}"));
        file.push_str(&format!("{k}={{{{ {k} }}}}\\n"));
    }
    let pb = op.tmp.path().join("uses-secrets.toml");
    std::fs::write(
        &pb,
        format!(
            "name = \"uses-secrets\"\n\n[[task]]\nname = \"echo them\"\ncommand = {{ run = \"echo{echo}\" }}\n\n\
             [[task]]\nname = \"write them\"\ntemplate = {{ path = \"/tmp/secret-vars\", content = \"{file}\", mode = \"0600\" }}\n"
        ),
    )
    .unwrap();
    let mut args = vec![
        "--json".to_string(),
        "play".into(),
        pb.display().to_string(),
        "--limit".into(),
        format!("n{EU:02}"),
        "--diff".into(),
        "--yes".into(),
    ];
    for (k, v) in &vars {
        args.push("-e".into());
        args.push(format!("{k}={v}"));
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = as_person(&op, &people.alice, &args);
    assert!(o.status.success(), "{}", both(&o));
    let on_node = fleet().node_exec(&format!("n{EU:02}"), &["cat", "/tmp/secret-vars"]);
    let written = String::from_utf8_lossy(&on_node.stdout).into_owned();
    assert!(written.contains(&vars[0].1), "the node got the real values");

    let output = both(&o);
    let store = std::fs::read(&op.db).unwrap();
    let ledger = std::fs::read(op.db.with_file_name("ledger.jsonl")).unwrap();
    let mut leaks = Vec::new();
    for (k, v) in &vars {
        let needle = v.as_bytes();
        let found = |hay: &[u8]| hay.windows(needle.len()).any(|w| w == needle);
        for (place, hay) in [
            ("output", output.as_bytes()),
            ("store", &store[..]),
            ("ledger", &ledger[..]),
        ] {
            if found(hay) {
                leaks.push(format!("{k} in the {place}"));
            }
        }
    }
    assert!(leaks.is_empty(), "{leaks:#?}");
    assert!(output.contains("****"), "masked values are shown as ****");
}
