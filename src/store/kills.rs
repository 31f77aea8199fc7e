//! Kill switches as every controller of a store sees them.
//!
//! The SoT's `killswitch.toml` is the record (a commit says who and why),
//! but another operator's checkout has it only once they pull. So
//! `maestro kill` also writes the engagement here, and `kill --release`
//! its release, and the admission gate holds a job when either the SoT or
//! the store says the agent is killed: an engagement reaches every
//! controller of a team's database at its next admission, without a pull.

use super::Result;

/// One kill switch as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KillRecord {
    /// An agent of the registry, or `all`.
    pub agent: String,
    pub engaged: bool,
    /// Who engaged or released it.
    pub by: String,
    pub at_ms: i64,
    pub reason: String,
    /// The nodes it holds (a target pattern; none: every node).
    pub limit: Option<String>,
    /// The SoT commit that engaged or released it.
    pub commit: Option<String>,
}

pub trait KillStore: Send {
    /// Record an engagement or a release (the newest replaces the last).
    fn record_kill(&mut self, kill: &KillRecord) -> Result<()>;
    /// The engaged kill switches.
    fn engaged_kills(&self) -> Result<Vec<KillRecord>>;
}
