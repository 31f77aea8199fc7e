//! Hot paths of the engine, at fleet scale:
//! - target selection (`--limit`) over 10,000 nodes,
//! - playbook compilation for one node (the 20-task agent-runtime install),
//! - event throughput: the engine's event channel, and the SQLite store
//!   recording node results.

use std::path::Path;
use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use maestro::bus::{Envelope, EventSink};
use maestro::fleet::event::{Event, NodeResult, NodeStatus, RunKind};
use maestro::playbook::compile::{Options, compile};
use maestro::playbook::vars::{Renderer, context, merge};
use maestro::store::{RunStore, SqliteStore};

fn sot_with(n: usize, dir: &Path) -> maestro::sot::Sot {
    let mut nodes = String::new();
    for i in 0..n {
        let region = if i % 2 == 0 { "eu-west" } else { "us-east" };
        let group = ["gpu", "gateways", "batch"][i % 3];
        nodes.push_str(&format!(
            "[node.node-{i:05}]\naddress = \"10.{}.{}.{}\"\ngroups = [\"{group}\"]\ntags = {{ env = \"prod\", region = \"{region}\" }}\n\n",
            i / 65536,
            (i / 256) % 256,
            i % 256
        ));
    }
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("maestro.toml"), "[maestro]\nname = \"bench\"\n").unwrap();
    std::fs::write(dir.join("nodes.toml"), nodes).unwrap();
    std::fs::write(
        dir.join("groups.toml"),
        "[group.gpu]\n[group.gateways]\n[group.batch]\n",
    )
    .unwrap();
    maestro::sot::load(dir).unwrap()
}

fn bench(c: &mut Criterion) {
    let tmp = tempfile::tempdir().unwrap();
    let sot = sot_with(10_000, &tmp.path().join("sot"));

    c.bench_function(
        "target_select/10000_nodes/gpu&region=eu-west!node-0000*",
        |b| {
            b.iter(|| {
                maestro::fleet::target::select(&sot, "gpu:&region=eu-west:!node-0000*").unwrap()
            })
        },
    );

    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let pb = maestro::playbook::load_playbook(&repo.join("playbooks/agent-runtime.toml")).unwrap();
    let renderer = Renderer::new();
    let node = &sot.nodes[42];
    c.bench_function("compile/agent-runtime/one_node", |b| {
        b.iter(|| {
            let vars = merge(&pb.vars, None, &sot, node, &[]);
            let ctx = context(&vars, node, None);
            compile(
                &pb,
                &repo.join("playbooks"),
                &ctx,
                "root",
                &Options::default(),
                &renderer,
            )
            .unwrap()
        })
    });

    let mut g = c.benchmark_group("events");
    g.throughput(Throughput::Elements(100_000));
    g.bench_function("channel/100k_events", |b| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        b.iter(|| {
            rt.block_on(async {
                let (sink, mut rx) = EventSink::channel("bench");
                let consumer = tokio::spawn(async move {
                    let mut n = 0usize;
                    while rx.recv().await.is_some() {
                        n += 1;
                    }
                    n
                });
                for i in 0..100_000 {
                    sink.send(Event::NodeConnecting {
                        node: format!("node-{i}"),
                    });
                }
                drop(sink);
                consumer.await.unwrap()
            })
        })
    });
    g.throughput(Throughput::Elements(1_000));
    g.bench_function("store/record_1000_node_results", |b| {
        b.iter_batched(
            || {
                let dir = tempfile::tempdir().unwrap();
                let store = SqliteStore::open(&dir.path().join("runs.db")).unwrap();
                (dir, store)
            },
            |(_dir, mut store)| {
                let names: Vec<String> = (0..1000).map(|i| format!("node-{i:05}")).collect();
                let envelope = |seq: u64, event: Event| Envelope {
                    run_id: "bench".into(),
                    seq,
                    at_ms: 0,
                    event,
                };
                store
                    .record(&envelope(
                        1,
                        Event::RunStarted {
                            kind: RunKind::Exec,
                            command: "true".into(),
                            target: "all".into(),
                            nodes: names.clone(),
                            forks: 100,
                            sot: "/sot".into(),
                            sot_commit: None,
                            overrides: Vec::new(),
                        },
                    ))
                    .unwrap();
                for (i, n) in names.iter().enumerate() {
                    let mut r = NodeResult::new(n, NodeStatus::Ok);
                    r.stdout.push(b"6.1.0-25-amd64\n", 1 << 20);
                    store
                        .record(&envelope(i as u64 + 2, Event::NodeFinished { result: r }))
                        .unwrap();
                }
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(Duration::from_secs(5));
    targets = bench
}
criterion_main!(benches);
