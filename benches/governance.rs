//! Guardrails at fleet scale, each against a baseline measured in the same
//! run: a policy decision and the authorization of a 10,000-node job with
//! 50 policies (targets: p95 ≤ 1 ms per decision, ≤ 200 ms per job), ledger
//! appends (≥ 5,000/s) and `ledger verify` of 1,000,000 entries (≤ 10 s),
//! and the secret scan of a 10,000-node SoT (≤ 200 ms). Targets are for a
//! release build: `cargo bench --bench governance`. `LEDGER_ENTRIES=N`
//! shrinks the verify run.

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use maestro::identity::Actor;
use maestro::policy::{JobContext, Question};

const NODES: usize = 10_000;

/// A SoT of `n` nodes in the example's shape with the example's people,
/// policies and schema, and generated policies up to 50 in all.
fn generate(dir: &Path, n: usize) {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("sot");
    std::fs::create_dir_all(dir.join("policies")).unwrap();
    std::fs::write(
        dir.join("maestro.toml"),
        "[maestro]\nname = \"bench\"\n\n[tags]\nrequired = [\"env\", \"region\", \"jurisdiction\", \"pii\"]\n\n\
         [tags.values]\nenv = [\"prod\", \"staging\"]\nregion = [\"eu-west\", \"us-east\"]\njurisdiction = [\"eu\", \"us\"]\npii = [\"none\", \"restricted\"]\n",
    )
    .unwrap();
    let mut nodes = String::with_capacity(n * 240);
    for i in 0..n {
        let (region, j) = if i % 2 == 0 {
            ("eu-west", "eu")
        } else {
            ("us-east", "us")
        };
        let group = ["gpu", "gateways", "batch"][i % 3];
        writeln!(
            nodes,
            "[node.node-{i:05}]\naddress = \"10.{}.{}.{}\"\ngroups = [\"{group}\"]\n\
             tags = {{ env = \"{}\", region = \"{region}\", jurisdiction = \"{j}\", pii = \"{}\" }}\n\
             vars = {{ gpu_count = {}, image = \"sha256:{:064x}\" }}\n",
            i / 65536,
            (i / 256) % 256,
            i % 256,
            if i % 5 == 0 { "staging" } else { "prod" },
            if i % 3 == 0 { "restricted" } else { "none" },
            i % 8,
            (i as u128).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835),
        )
        .unwrap();
    }
    std::fs::write(dir.join("nodes.toml"), nodes).unwrap();
    std::fs::write(
        dir.join("groups.toml"),
        "[group.gpu]\n\n[group.gateways]\n\n[group.batch]\n",
    )
    .unwrap();
    for f in ["models.toml", "people.toml"] {
        std::fs::copy(repo.join(f), dir.join(f)).unwrap();
    }
    // The example's agents without their artifacts' files: versions are
    // not needed for decisions.
    std::fs::write(
        dir.join("agents.toml"),
        "[agent.invoice-extractor]\nmodel = \"mistral-small-24b\"\nautonomy = \"L1\"\nowner = \"team-finance\"\n\
         tags = { pii = \"restricted\", jurisdiction = \"eu\" }\n",
    )
    .unwrap();
    let mut count = 0;
    for f in ["schema.cedarschema", "base.cedar", "guardrails.cedar"] {
        let text = std::fs::read_to_string(repo.join("policies").join(f)).unwrap();
        count += text.matches("@id(").count();
        std::fs::write(dir.join("policies").join(f), text).unwrap();
    }
    let mut extra = String::new();
    for k in count..50 {
        writeln!(
            extra,
            "@id(\"generated-{k}\")\nforbid (principal, action in Maestro::Action::\"change\", resource)\n\
             when {{ resource.hasTag(\"role\") && resource.getTag(\"role\") == \"retired-{k}\" }};\n"
        )
        .unwrap();
    }
    std::fs::write(dir.join("policies/generated.cedar"), extra).unwrap();
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("sot");
    generate(&dir, NODES);
    let sot = maestro::sot::load(&dir).expect("the generated SoT is valid");
    let policies = sot.policies.as_deref().expect("policies loaded");
    let names: Vec<String> = sot.nodes.iter().map(|n| n.name.clone()).collect();
    let linus = Actor::Person {
        name: "linus".into(),
        key: "bench".into(),
    };
    println!(
        "governance: {} nodes, {} policies",
        names.len(),
        policies.len()
    );

    // One decision (one node) at a time: its p50/p95 over 2,000 nodes.
    let mut times = Vec::new();
    for name in names.iter().take(2_000) {
        let one = [name.clone()];
        let start = Instant::now();
        let answer = policies
            .decide(
                &Question {
                    actor: &linus,
                    action: "deploy",
                    agent: Some("invoice-extractor"),
                    nodes: &one,
                    context: JobContext::now(1, true),
                },
                &sot,
            )
            .unwrap();
        times.push(start.elapsed());
        std::hint::black_box(answer);
    }
    times.sort();
    let p50 = times[times.len() / 2];
    let p95 = times[times.len() * 95 / 100];
    // Baseline: the same request without policies to evaluate (the fixed
    // cost of building a question and walking the nodes).
    let start = Instant::now();
    let job = policies
        .decide(
            &Question {
                actor: &linus,
                action: "deploy",
                agent: Some("invoice-extractor"),
                nodes: &names,
                context: JobContext::now(names.len(), true),
            },
            &sot,
        )
        .unwrap();
    let whole = start.elapsed();
    let denied = job.denied().count();
    println!(
        "policy decision, one node: p50 {:.3} ms, p95 {:.3} ms (target p95 <= 1 ms)",
        ms(p50),
        ms(p95)
    );
    println!(
        "authorize a {}-node deploy: {:.1} ms total, {:.1} us per node, {denied} nodes denied (target <= 200 ms)",
        names.len(),
        ms(whole),
        whole.as_secs_f64() * 1e6 / names.len() as f64
    );

    // Ledger appends, against writing the same lines to a plain file.
    let ldir = tmp.path().join("ledger");
    std::fs::create_dir_all(&ldir).unwrap();
    let mut ledger =
        maestro::ledger::Ledger::open(&maestro::ledger::Place::File(ldir.join("ledger.jsonl")))
            .unwrap();
    let n_append = 20_000;
    let record = |i: usize| maestro::ledger::Record {
        run: Some(format!("run-{}", i / 100)),
        action: "exec".into(),
        description: format!("exec uptime on node-{:05}", i % NODES),
        decision: "ran".into(),
        nodes: (0..4)
            .map(|k| maestro::ledger::NodeEntry {
                node: format!("node-{:05}", (i + k) % NODES),
                outcome: "ok".into(),
            })
            .collect(),
        duration_ms: 1234,
        bytes: 5678,
        ..Default::default()
    };
    let start = Instant::now();
    let mut lines = Vec::new();
    for i in 0..n_append {
        let e = ledger.append(record(i)).unwrap();
        if i < 1000 {
            lines.push(e.to_line().unwrap());
        }
    }
    ledger.sync().unwrap();
    let append = start.elapsed();
    let start = Instant::now();
    {
        use std::io::Write;
        let mut f = std::fs::File::create(ldir.join("plain")).unwrap();
        for i in 0..n_append {
            f.write_all(&lines[i % lines.len()]).unwrap();
        }
        f.sync_all().unwrap();
    }
    let plain = start.elapsed();
    let rate = n_append as f64 / append.as_secs_f64();
    println!(
        "ledger append: {rate:.0} entries/s ({:.1} us each); plain line writes {:.1} us each; ratio {:.1}x (target >= 5,000/s)",
        append.as_secs_f64() * 1e6 / n_append as f64,
        plain.as_secs_f64() * 1e6 / n_append as f64,
        append.as_secs_f64() / plain.as_secs_f64()
    );

    // Verify: a ledger of LEDGER_ENTRIES (default 1,000,000) against
    // hashing the same file's bytes once with SHA-256.
    let total: usize = std::env::var("LEDGER_ENTRIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    for i in n_append..total {
        ledger.append(record(i)).unwrap();
    }
    ledger.sync().unwrap();
    let path = ldir.join("ledger.jsonl");
    let start = Instant::now();
    let report =
        maestro::ledger::verify(&maestro::ledger::Place::File(path.clone()), &[], None).unwrap();
    let verify = start.elapsed();
    assert!(report.is_ok(), "{:?}", report.problem);
    let start = Instant::now();
    {
        use sha2::Digest;
        let bytes = std::fs::read(&path).unwrap();
        std::hint::black_box(sha2::Sha256::digest(&bytes));
    }
    let hash_only = start.elapsed();
    println!(
        "ledger verify of {} entries: {:.2} s; one SHA-256 over the file {:.2} s; ratio {:.1}x (target <= 10 s)",
        report.entries,
        verify.as_secs_f64(),
        hash_only.as_secs_f64(),
        verify.as_secs_f64() / hash_only.as_secs_f64()
    );

    // Secret scan of the 10,000-node SoT, against reading it.
    let start = Instant::now();
    let found = maestro::sot::secrets::scan_tree(&dir, &[]);
    let scan = start.elapsed();
    let start = Instant::now();
    let mut bytes = 0;
    for e in std::fs::read_dir(&dir).unwrap().flatten() {
        if e.path().is_file() {
            bytes += std::fs::read_to_string(e.path()).unwrap().len();
        }
    }
    let read = start.elapsed();
    println!(
        "secret scan of the {}-node SoT ({:.1} MB): {:.1} ms, {} findings; reading it {:.1} ms; ratio {:.1}x (target <= 200 ms)",
        NODES,
        bytes as f64 / 1e6,
        ms(scan),
        found.len(),
        ms(read),
        scan.as_secs_f64() / read.as_secs_f64()
    );
}
