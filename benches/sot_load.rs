//! SoT load time at fleet scale: a generated SoT of 10,000 nodes (the target
//! is ≤ 200 ms in release mode), with 1,000 nodes alongside to show growth.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};

/// Write a SoT of `n` nodes in the example's shape: two regions, tags, vars, groups.
fn generate(dir: &Path, n: usize) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("maestro.toml"),
        "[maestro]\nname = \"bench\"\n\n[tags]\nrequired = [\"env\", \"region\", \"jurisdiction\"]\n\n\
         [tags.values]\nenv = [\"prod\", \"staging\"]\nregion = [\"eu-west\", \"us-east\"]\njurisdiction = [\"eu\", \"us\"]\n",
    )
    .unwrap();
    let mut nodes = String::with_capacity(n * 220);
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
             tags = {{ env = \"prod\", region = \"{region}\", jurisdiction = \"{j}\", role = \"inference\" }}\n\
             vars = {{ gpu_count = {} }}\n",
            i / 65536,
            (i / 256) % 256,
            i % 256,
            i % 8
        )
        .unwrap();
    }
    std::fs::write(dir.join("nodes.toml"), nodes).unwrap();
    std::fs::write(
        dir.join("groups.toml"),
        "[group.gpu]\ndescription = \"gpu\"\n\n[group.gateways]\n\n[group.batch]\n",
    )
    .unwrap();
}

fn bench(c: &mut Criterion) {
    let tmp = tempfile::tempdir().unwrap();
    for n in [1_000usize, 10_000] {
        let dir = tmp.path().join(format!("sot-{n}"));
        generate(&dir, n);
        let sot = maestro::sot::load(&dir).expect("generated SoT is valid");
        assert_eq!(sot.nodes.len(), n);
        c.bench_function(&format!("sot_load/{n}_nodes"), |b| {
            b.iter(|| maestro::sot::load(&dir).unwrap())
        });
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(Duration::from_secs(5));
    targets = bench
}
criterion_main!(benches);
