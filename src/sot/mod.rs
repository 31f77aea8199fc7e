//! The source of truth: a git repository of TOML files describing the fleet,
//! the agent and model registry, and the profiles that install them.
//!
//! This module loads and validates a SoT ([`load`]), rewrites it keeping the
//! operator's comments ([`edit`]) and records every change as a git commit
//! ([`git`]) made under the SoT's write lock ([`lock`]) by one transaction
//! ([`change`]). [`paths`] keeps every read inside the SoT. It never prints.

pub mod change;
pub mod edit;
pub mod example;
pub mod git;
mod load;
pub mod lock;
pub mod model;
pub mod paths;
pub(crate) mod schema;
pub mod secrets;

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
    /// A change names a node or agent that does not exist.
    #[error("there is no {kind} `{name}`{}", did_you_mean(.suggestion))]
    Unknown {
        kind: &'static str,
        name: String,
        suggestion: Option<String>,
    },
    /// A change adds a node or agent that already exists.
    #[error("{kind} `{name}` already exists{}", .file.as_ref().map(|f| format!(" (in {})", f.display())).unwrap_or_default())]
    Exists {
        kind: &'static str,
        name: String,
        file: Option<PathBuf>,
    },
    /// An actor that cannot author a commit.
    #[error(
        "cannot use actor `{actor}`: {why}; write it as --actor \"Name <email>\" (or fix `git config user.name`/`user.email`)"
    )]
    BadActor { actor: String, why: &'static str },
    #[error(
        "who is making this change? pass --actor \"Name <email>\" or set `git config user.name` and `user.email`"
    )]
    NoActor,
    #[error(
        "{} is not inside a git repository; maestro records every SoT change as a commit (start one with `maestro init DIR` or `git init`)",
        .0.display()
    )]
    NotARepository(PathBuf),
    #[error("the SoT repository is bare; use a checkout")]
    BareRepository,
    /// Files a change would write have uncommitted edits.
    #[error(
        "refusing to change files with uncommitted edits: {}\ncommit or stash them first (`git -C {} status`); nothing was changed",
        files.join(", "),
        root.display()
    )]
    Dirty { files: Vec<String>, root: PathBuf },
    /// A reason that cannot be the commit message.
    #[error("{0}")]
    BadReason(ReasonProblem),
    /// A file changed between being read for a change and being written,
    /// by a writer that does not take maestro's lock.
    #[error("{} changed while this change was being prepared; nothing was written: run the command again", .0.display())]
    ChangedUnderneath(PathBuf),
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
            | SotError::NotANodesFile(_)
            | SotError::Unknown { .. }
            | SotError::Exists { .. }
            | SotError::BadReason(_)
            | SotError::BadActor { .. }
            | SotError::NoActor
            | SotError::NotARepository(_)
            | SotError::BareRepository
            | SotError::Dirty { .. }
            | SotError::ChangedUnderneath(_) => true,
            SotError::Lock(e) => !matches!(e, lock::LockError::Io { .. }),
            SotError::Io { .. } | SotError::Git(_) => false,
        }
    }
}

/// What is wrong with a change's `--reason`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReasonProblem {
    #[error("say why: every SoT change needs --reason \"...\" (it becomes the commit message)")]
    Missing,
    #[error("the reason contains a control character; write it as plain text")]
    ControlCharacter,
    #[error(
        "the reason has a line that reads as a maestro trailer (`{0}`); maestro writes those itself, so reword it"
    )]
    TrailerLine(String),
}

fn did_you_mean(suggestion: &Option<String>) -> String {
    suggestion
        .as_ref()
        .map(|s| format!(" (did you mean `{s}`?)"))
        .unwrap_or_default()
}

pub type Result<T, E = SotError> = std::result::Result<T, E>;
