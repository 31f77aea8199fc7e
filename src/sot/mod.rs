//! The source of truth: a git repository of TOML files describing the fleet,
//! the agent and model registry, and the profiles that install them.
//!
//! This module loads and validates a SoT ([`load`]), rewrites it keeping the
//! operator's comments ([`edit`]) and records every change as a git commit
//! ([`git`]). It never prints.

pub mod change;
pub mod edit;
pub mod example;
pub mod git;
mod load;
pub mod lock;
pub mod model;
pub mod paths;
mod schema;

use std::path::PathBuf;

/// Diagnostics moved to [`crate::diag`] (the SoT and the library checks share
/// them); this path keeps older code compiling.
pub use crate::diag;
pub use crate::diag::{Code, Diagnostic, Diagnostics};
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
    /// `node add --file` names a file the loader does not read.
    #[error(
        "cannot add a node to `{}`: nodes live in nodes.toml or nodes/NAME.toml (relative to the SoT), the files `sot check` reads; nothing was written",
        .0.display()
    )]
    NotANodesFile(PathBuf),
    /// Another change holds the SoT's write lock, or a crashed one left it.
    #[error(transparent)]
    Lock(#[from] lock::LockError),
    #[error("git: {0}")]
    Git(#[from] git2::Error),
}

impl SotError {
    /// Whether the operator can fix this (exit 2: bad SoT, bad input, refused
    /// or contended change; nothing was changed), as opposed to maestro or
    /// the system failing.
    pub fn is_invalid_input(&self) -> bool {
        match self {
            SotError::NotASot(_)
            | SotError::Invalid(_)
            | SotError::InvalidChange(_)
            | SotError::Refused(_)
            | SotError::NotANodesFile(_) => true,
            SotError::Lock(e) => !matches!(e, lock::LockError::Io { .. }),
            SotError::Io { .. } | SotError::Git(_) => false,
        }
    }
}

pub type Result<T, E = SotError> = std::result::Result<T, E>;
