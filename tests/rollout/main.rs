//! Progressive delivery end to end: rollouts of the example agents on real
//! OpenSSH nodes, behind a real nginx gateway on each node, under real
//! traffic from a load generator on loopback. This binary has its own fleet
//! (tests/fleet/fleet.sh) on its own network, so it never shares nodes with
//! `tests/real_fleet/`.

#[path = "../common/mod.rs"]
mod common;

mod gateway;

use common::fleet::{Fleet, Layout, Operator};

/// Nodes n01..n30 on 127.0.30.x (MAESTRO_ROLLOUT_NET moves them).
pub const ROLLOUT_FLEET: Layout = Layout {
    size: 30,
    net_var: "MAESTRO_ROLLOUT_NET",
    default_net: "127.0.30",
};

pub fn fleet() -> &'static Fleet {
    common::fleet::fleet_of(&ROLLOUT_FLEET)
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
mod strategies;
