//! Playbooks: TOML task lists compiled into one POSIX `sh` script per node and
//! run through the fleet engine in one exec channel.
//!
//! [`model`] is the file format, [`compile`] turns a playbook plus a node's
//! variables into a script, [`report`] parses the script's markers into task
//! results, and [`run`] drives it over the fleet. Hardening baselines
//! ([`crate::harden`]) reuse the same script runner.

pub mod compile;
pub mod model;
pub mod report;
pub mod run;
pub mod vars;

pub use model::{Playbook, load as load_playbook};

/// The module library every script starts with.
pub const LIBRARY: &str = include_str!("lib.sh");
