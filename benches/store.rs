//! The run store's throughput on PostgreSQL against SQLite, measured back
//! to back in one process: the record of one 10,000-node run (RunStarted,
//! 10,000 NodeFinished with a line of output each, RunFinished), written
//! event by event as the bus delivers them. PostgreSQL is a private cluster
//! on loopback (`maestro::store::test_cluster`, the tests' own); SQLite a
//! file in a temporary directory. Prints each backend's events per second
//! and the ratio. `cargo bench --bench store [-- NODES REPEATS]`.

use std::time::{Duration, Instant};

use maestro::bus::{Dropped, Envelope};
use maestro::fleet::event::{Event, NodeResult, NodeStatus, RunKind, Summary};
use maestro::store::{Location, Store};

fn record_run(store: &mut dyn Store, run: &str, nodes: usize) -> Duration {
    let names: Vec<String> = (0..nodes).map(|i| format!("node-{i:05}")).collect();
    let envelope = |seq: u64, event: Event| Envelope {
        run_id: run.into(),
        seq,
        at_ms: 0,
        event,
    };
    let t = Instant::now();
    store
        .record(&envelope(
            1,
            Event::RunStarted {
                kind: RunKind::Exec,
                command: "uname -r".into(),
                target: "all".into(),
                nodes: names.clone(),
                forks: 100,
                sot: "/sot".into(),
                sot_commit: None,
                overrides: Vec::new(),
            },
        ))
        .unwrap();
    let mut summary = Summary::default();
    for (i, n) in names.iter().enumerate() {
        let mut r = NodeResult::new(n, NodeStatus::Ok);
        r.stdout.push(b"6.1.0-25-amd64\n", 1 << 20);
        summary.add(NodeStatus::Ok);
        store
            .record(&envelope(i as u64 + 2, Event::NodeFinished { result: r }))
            .unwrap();
    }
    store
        .record(&envelope(
            nodes as u64 + 2,
            Event::RunFinished {
                summary,
                elapsed_ms: 0,
                cancelled: false,
                dropped_output: Dropped::default(),
            },
        ))
        .unwrap();
    let elapsed = t.elapsed();
    let row = store.run(run).unwrap().expect("the run was recorded");
    assert_eq!(row.ok, nodes, "every node's result is in the store");
    elapsed
}

/// The best of `repeats` runs, each into a fresh store from `open`.
fn best(repeats: usize, nodes: usize, mut open: impl FnMut() -> Box<dyn Store>) -> Duration {
    (0..repeats)
        .map(|i| record_run(&mut *open(), &format!("bench-{i}"), nodes))
        .min()
        .unwrap()
}

#[allow(clippy::print_stdout)]
fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let nodes = args.first().copied().unwrap_or(10_000);
    let repeats = args.get(1).copied().unwrap_or(3);
    let tmp = tempfile::tempdir().unwrap();
    let mut n = 0;
    let sqlite = best(repeats, nodes, || {
        n += 1;
        maestro::store::open(&Location::Sqlite(tmp.path().join(format!("runs-{n}.db")))).unwrap()
    });
    let postgres = best(repeats, nodes, || {
        let url = maestro::store::test_cluster::fresh_database_url()
            .expect("PostgreSQL is installed (initdb under /usr/lib/postgresql/*/bin)");
        maestro::store::open(&Location::parse(&url)).unwrap()
    });
    let rate = |d: Duration| (nodes + 2) as f64 / d.as_secs_f64();
    println!("store: one {nodes}-node run recorded event by event, best of {repeats}");
    println!(
        "  sqlite      {:>8.1} ms  {:>9.0} events/s",
        sqlite.as_secs_f64() * 1e3,
        rate(sqlite)
    );
    println!(
        "  postgresql  {:>8.1} ms  {:>9.0} events/s",
        postgres.as_secs_f64() * 1e3,
        rate(postgres)
    );
    println!(
        "  postgresql / sqlite time: {:.2}x",
        postgres.as_secs_f64() / sqlite.as_secs_f64()
    );
}
