//! The source of truth: a git repository of TOML files describing the fleet,
//! the agent and model registry, and the profiles that install them.
//!
//! This module loads and validates a SoT ([`load`]), rewrites it keeping the
//! operator's comments ([`edit`]) and records every change as a git commit
//! ([`git`]). It never prints.

pub mod change;
pub mod diag;
pub mod edit;
pub mod example;
pub mod git;
mod load;
pub mod model;
mod schema;

use std::path::PathBuf;

pub use diag::{Code, Diagnostic, Diagnostics};
pub use load::{
    AGENTS_FILE, GROUPS_FILE, MODELS_FILE, NODES_DIR, NODES_FILE, SETTINGS_FILE, load, load_with,
};
pub use model::*;

#[derive(Debug, thiserror::Error)]
pub enum SotError {
    #[error("{} is not a maestro SoT: it has no maestro.toml (create one with `maestro init DIR`)", .0.display())]
    NotASot(PathBuf),
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The SoT (or the SoT as a change would leave it) breaks the rules.
    #[error("{0}")]
    Invalid(Diagnostics),
    /// The SoT is valid now, but the requested change would break it; nothing was written.
    #[error("the change would leave the SoT invalid, so nothing was written:\n\n{0}")]
    InvalidChange(Diagnostics),
    /// A write that maestro refuses to make (dirty files, unknown names, …).
    #[error("{0}")]
    Refused(String),
    #[error("git: {0}")]
    Git(#[from] git2::Error),
}

pub type Result<T, E = SotError> = std::result::Result<T, E>;
