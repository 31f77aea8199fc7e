//! Frame render time of the console's fleet view with 10,000 nodes, into a
//! TestBackend at 160×48 and 250×70 (target ≤ 5 ms per frame in release
//! mode): a redraw, and a scroll step (one key, then a redraw).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use maestro::fleet::NodeStatus;
use maestro::store::LastResult;
use maestro::tui::app::{App, ExecPolicy, Info, Msg};
use ratatui::Terminal;
use ratatui::backend::TestBackend;

const NODES: usize = 10_000;
const NOW: i64 = 1_763_712_000_000;

fn generate(dir: &Path, n: usize) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("maestro.toml"),
        "[maestro]\nname = \"bench\"\n\n[tags]\nrequired = [\"env\", \"region\"]\n",
    )
    .unwrap();
    let mut nodes = String::with_capacity(n * 200);
    for i in 0..n {
        let region = if i % 2 == 0 { "eu-west" } else { "us-east" };
        let group = ["gpu", "gateways", "batch"][i % 3];
        writeln!(
            nodes,
            "[node.node-{i:05}]\naddress = \"10.{}.{}.{}\"\ngroups = [\"{group}\"]\n\
             tags = {{ env = \"prod\", region = \"{region}\", role = \"inference\" }}\n",
            i / 65536,
            (i / 256) % 256,
            i % 256,
        )
        .unwrap();
    }
    std::fs::write(dir.join("nodes.toml"), nodes).unwrap();
    std::fs::write(
        dir.join("groups.toml"),
        "[group.gpu]\n\n[group.gateways]\n\n[group.batch]\n",
    )
    .unwrap();
}

fn app(dir: &Path) -> App {
    let sot = maestro::sot::load(dir).expect("generated SoT is valid");
    assert_eq!(sot.nodes.len(), NODES);
    let info = Info {
        title: "maestro".into(),
        sot: dir.display().to_string(),
        head: Some("5da5d72".into()),
        store: "bench.db".into(),
        policy: ExecPolicy::Allowed,
        run_details: Vec::new(),
    };
    let last: HashMap<String, LastResult> = sot
        .nodes
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let status = [NodeStatus::Ok, NodeStatus::Failed, NodeStatus::Unreachable][i % 3];
            (
                n.name.clone(),
                LastResult {
                    run_id: "20251121-075500-a1b2".into(),
                    status,
                    finished_ms: NOW - (i as i64) * 1000,
                },
            )
        })
        .collect();
    let mut app = App::new(info, Arc::new(sot), NOW);
    app.take_effects();
    app.on_msg(Msg::LastResults(Ok(last)));
    // Somewhere in the middle of the fleet.
    for _ in 0..100 {
        app.handle_key(key(KeyCode::PageDown));
    }
    app
}

fn key(code: KeyCode) -> KeyEvent {
    KeyEvent::new(code, KeyModifiers::NONE)
}

fn bench(c: &mut Criterion) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("sot");
    generate(&dir, NODES);
    let mut app = app(&dir);
    for (w, h) in [(160u16, 48u16), (250, 70)] {
        let mut terminal = Terminal::new(TestBackend::new(w, h)).unwrap();
        terminal.draw(|f| app.draw(f)).unwrap();

        // A plain figure first, so the report is one line to read.
        let frames = 500;
        let started = Instant::now();
        for i in 0..frames {
            app.handle_key(key(if i % 2 == 0 {
                KeyCode::PageDown
            } else {
                KeyCode::PageUp
            }));
            terminal.draw(|f| app.draw(f)).unwrap();
        }
        let per_frame = started.elapsed().as_secs_f64() * 1000.0 / frames as f64;
        println!(
            "tui_render: fleet view, {NODES} nodes, {w}x{h}: {per_frame:.3} ms per frame (mean of {frames} page scrolls)"
        );

        c.bench_function(
            &format!("tui_render/fleet_{NODES}_nodes/{w}x{h}/redraw"),
            |b| {
                b.iter(|| {
                    terminal.draw(|f| app.draw(f)).unwrap();
                });
            },
        );
        let mut down = true;
        c.bench_function(
            &format!("tui_render/fleet_{NODES}_nodes/{w}x{h}/scroll"),
            |b| {
                b.iter(|| {
                    down = !down;
                    app.handle_key(key(if down {
                        KeyCode::PageDown
                    } else {
                        KeyCode::PageUp
                    }));
                    terminal.draw(|f| app.draw(f)).unwrap();
                });
            },
        );
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(50).measurement_time(Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
