//! Playbooks: TOML task lists compiled into one POSIX `sh` script per node and
//! run through the fleet engine in one exec channel.
//!
//! [`model`] is the file format, [`compile`] turns a playbook plus a node's
//! variables into a script, [`report`] parses the script's markers into task
//! results, and [`run`] drives it over the fleet. Hardening baselines
//! ([`crate::harden`]) reuse the same script runner.

pub mod compile;
pub mod cond;
pub mod model;
pub mod report;
pub mod run;
mod schema;
pub mod vars;

pub use model::{Playbook, load as load_playbook};

/// Check one playbook file's text: every problem that keeps it from loading.
pub fn check(file: &SourceFile) -> Diagnostics {
    match model::parse(&file.display_path, &file.text) {
        Ok(_) => Diagnostics::default(),
        Err(d) => d,
    }
}

/// Check every playbook in `dir` (what `sot check` reports about them).
pub fn check_library(dir: &Path) -> Diagnostics {
    crate::sot::paths::check_dir(dir, check)
}

/// The module library every script starts with.
pub const LIBRARY: &str = include_str!("lib.sh");

use std::path::{Path, PathBuf};

use crate::diag::{Diagnostics, SourceFile};
use crate::sot::{Profile, Sot};

/// Why a profile's playbooks cannot be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("there is no profile `{name}`{hint}; profiles: {known}")]
    Unknown {
        name: String,
        hint: String,
        known: String,
    },
    #[error("profile `{0}` lists no playbooks")]
    Empty(String),
    /// One of its playbooks has problems (file:line:col).
    #[error("{0}")]
    Playbook(crate::sot::Diagnostics),
}

/// A profile's playbooks as one playbook (one script per node, one round
/// trip), the directory its `src` files are read from, and the profile.
pub fn for_profile(sot: &Sot, name: &str) -> Result<(Playbook, PathBuf, Profile), ProfileError> {
    let profile = sot.profiles.get(name).cloned().ok_or_else(|| {
        let hint = crate::sot::diag::suggest(name, sot.profiles.keys().map(String::as_str))
            .map(|s| format!(" (did you mean `{s}`?)"))
            .unwrap_or_default();
        let all: Vec<&str> = sot.profiles.keys().map(String::as_str).collect();
        ProfileError::Unknown {
            name: name.to_string(),
            hint,
            known: all.join(", "),
        }
    })?;
    let dir = sot.root.join(&sot.settings.playbooks_dir);
    let mut combined: Option<Playbook> = None;
    for p in &profile.playbooks {
        let pb = load_playbook(&dir.join(format!("{p}.toml"))).map_err(ProfileError::Playbook)?;
        combined = Some(match combined {
            None => pb,
            Some(mut all) => {
                // Earlier playbooks' defaults win over later ones'.
                let mut vars = pb.vars.clone();
                vars.extend(std::mem::take(&mut all.vars));
                all.vars = vars;
                all.r#become |= pb.r#become;
                all.tasks.extend(pb.tasks);
                all.handlers.extend(pb.handlers);
                all
            }
        });
    }
    let mut pb = combined.ok_or_else(|| ProfileError::Empty(name.to_string()))?;
    pb.name = Some(format!("install {name}"));
    Ok((pb, dir, profile))
}

/// Why `profile` refuses to install on `nodes` (required tags, `[validate]`
/// rules), one line per problem; empty when it may proceed.
pub fn profile_problems(
    sot: &Sot,
    pb: &Playbook,
    profile: &Profile,
    nodes: &[usize],
    extra: &[(String, String)],
) -> Vec<String> {
    let mut problems = Vec::new();
    for &i in nodes {
        let node = &sot.nodes[i];
        for tag in &profile.required_tags {
            if !node.tags.contains_key(tag) {
                problems.push(format!(
                    "{}: has no `{tag}` tag, which profile `{}` requires",
                    node.name, profile.name
                ));
            }
        }
        let vars = vars::merge(&pb.vars, Some(profile), sot, node, extra);
        for p in profile.check_vars(&vars) {
            problems.push(format!("{}: {p}", node.name));
        }
    }
    problems
}
