//! Every test that needs the real OpenSSH test fleet lives in this one test
//! binary, so the fleet (tests/fleet/fleet.sh) is started once and shared.

#[path = "../common/mod.rs"]
mod common;

mod agents;
mod drift;
mod exec;
mod fleet_script;
mod harden;
mod killswitch;
mod modules;
mod ops;
mod playbook;
mod policy;
mod ssh;
mod team;
mod telemetry;
mod tui;
