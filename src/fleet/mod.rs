//! The fleet engine: everything maestro does to a node goes through here.
//!
//! [`target`] turns `--limit` into nodes, [`resolve`] turns nodes into
//! connection specs (ssh_config, known_hosts, ProxyJump, ProxyCommand), [`run`] connects with
//! bounded parallelism and runs jobs over [`ssh`] sessions, and every step is
//! reported as an [`event::Event`]. The engine prints nothing.

pub mod cancel;
pub mod event;
pub mod known_hosts;
#[cfg(test)]
mod parser_mutations;
pub mod proxy;
pub mod quote;
pub mod resolve;
pub mod run;
mod shared;
pub mod ssh;
pub mod ssh_config;
pub mod target;

pub use crate::bus::EventSink;
pub use cancel::Cancel;
pub use event::{Event, NodeResult, NodeStatus, RunKind, Summary};
pub use run::{DEFAULT_FORKS, RunOptions, RunReport, run_command, run_nodes};
