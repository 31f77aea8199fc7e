//! Progressive delivery end to end: rollouts of the example agents on real
//! OpenSSH nodes, behind a real nginx gateway on each node, under real
//! traffic from a load generator on loopback. This binary has its own fleet
//! (tests/fleet/fleet.sh) on its own network, so it never shares nodes with
//! `tests/real_fleet/`.

#[path = "../common/mod.rs"]
mod common;

mod gateway;

use common::fleet::{Fleet, Layout, Operator};

/// Nodes n01..n33 on 127.0.30.x (MAESTRO_ROLLOUT_NET moves them).
pub const ROLLOUT_FLEET: Layout = Layout {
    size: 33,
    net_var: "MAESTRO_ROLLOUT_NET",
    default_net: "127.0.30",
};

pub fn fleet() -> &'static Fleet {
    common::fleet::fleet_of(&ROLLOUT_FLEET)
}

/// The repository (for the example SoT and its artifacts).
pub fn repo() -> &'static std::path::Path {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The sha256 that the example `agents.toml` records for artifact `file`.
pub fn digest(file: &str) -> String {
    let text = std::fs::read_to_string(repo().join("sot/agents.toml")).unwrap();
    let at = text.find(&format!("artifacts/{file}")).unwrap();
    let rest = &text[at..];
    let q = rest.find("sha256 = \"").unwrap() + 10;
    rest[q..q + 64].to_string()
}

/// `n01,n02,...` for `--limit`.
pub fn names(nodes: &[usize]) -> String {
    nodes
        .iter()
        .map(|i| format!("n{i:02}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// The JSON objects of a `--json` output, one per line.
pub fn json_lines(out: &str) -> Vec<serde_json::Value> {
    out.lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// An operator whose SoT holds nodes `nodes` of this binary's fleet.
pub fn operator(nodes: &[usize]) -> Operator {
    Operator::on(fleet(), nodes)
}

#[test]
fn the_rollout_fleet_starts_and_answers() {
    let op = operator(&[1]);
    let o = op.maestro(&["exec", "n01", "--", "echo", "up"]);
    assert!(o.status.success(), "{}", common::stderr(&o));
    assert!(common::stdout(&o).contains("up"), "{}", common::stdout(&o));
}

mod canary;
mod reflect;
mod strategies;
