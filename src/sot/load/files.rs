//! Finding and reading the SoT's files: maestro.toml, the registries, and
//! the profile, playbook and baseline libraries it names, each read only if it
//! resolves inside its directory.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use toml::de::DeTable;

use super::{AGENTS_FILE, GROUPS_FILE, MODELS_FILE, NODES_DIR, NODES_FILE, SETTINGS_FILE};
use crate::diag::{Diagnostic, SourceFile, display_path};
use crate::sot::paths::{Source, files_with_extension, read_source};
use crate::sot::schema::{Value, get};
use crate::sot::{Result, SotError};

/// What a file holds, which decides the schema it is read against.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Role {
    Settings,
    Nodes,
    Groups,
    Models,
    Agents,
    KillSwitch,
    Freeze,
    Rollouts,
    People,
    /// Reflection checklists (`checklists/*.toml`) and the lessons registry.
    Checklist,
    Lessons,
    /// API tokens (`tokens.toml`): who may read `maestro serve`.
    Tokens,
    /// A Cedar policy file (`policies/*.cedar`), the policy schema and the
    /// policy tests: read here, parsed by [`crate::policy`].
    Policy,
    PolicySchema,
    PolicyTests,
    Profile,
    Playbook,
    Baseline,
}

/// Every file of the SoT, read before checking starts so the parsed tables can
/// borrow their text for the whole check.
pub(super) struct Files {
    pub(super) files: Vec<SourceFile>,
    pub(super) roles: Vec<(Role, PathBuf)>,
    /// Files that cannot be parsed (not UTF-8, a symlink out of the SoT):
    /// listed in `files` (for the diagnostic's excerpt) but never parsed.
    pub(super) unreadable: Vec<usize>,
    pub(super) early: Vec<Diagnostic>,
}

impl Files {
    pub(super) fn read_all(root: &Path, overrides: &HashMap<PathBuf, String>) -> Result<Files> {
        let mut f = Files {
            files: Vec::new(),
            roles: Vec::new(),
            unreadable: Vec::new(),
            early: Vec::new(),
        };
        let top = Path::new("");
        if !f.read(
            root,
            overrides,
            Path::new(SETTINGS_FILE),
            Role::Settings,
            top,
        )? {
            return Err(SotError::NotASot(root.to_path_buf()));
        }
        // An unreadable maestro.toml names no directories: use the defaults
        // (its diagnostic says what to fix).
        let dirs = if f.unreadable.contains(&0) {
            library_dirs("")
        } else {
            library_dirs(&f.files[0].text)
        };
        let mut plan = vec![(PathBuf::from(NODES_FILE), Role::Nodes, top)];
        plan.extend(
            list_toml(&root.join(NODES_DIR), overrides, Path::new(NODES_DIR))?
                .into_iter()
                .map(|p| (p, Role::Nodes, top)),
        );
        plan.push((GROUPS_FILE.into(), Role::Groups, top));
        plan.push((MODELS_FILE.into(), Role::Models, top));
        plan.push((AGENTS_FILE.into(), Role::Agents, top));
        plan.push((crate::killswitch::FILE.into(), Role::KillSwitch, top));
        plan.push((crate::freeze::FILE.into(), Role::Freeze, top));
        plan.push((crate::rollout::FILE.into(), Role::Rollouts, top));
        plan.push((super::people::PEOPLE_FILE.into(), Role::People, top));
        let checklists = Path::new(crate::reflect::CHECKLISTS_DIR);
        plan.extend(
            list_toml(&root.join(checklists), overrides, checklists)?
                .into_iter()
                .map(|p| (p, Role::Checklist, top)),
        );
        plan.push((crate::reflect::LESSONS_FILE.into(), Role::Lessons, top));
        plan.push((crate::api::token::FILE.into(), Role::Tokens, top));
        let policies = Path::new(crate::policy::DIR);
        plan.extend(
            list_files(&root.join(policies), overrides, policies, "cedar")?
                .into_iter()
                .map(|p| (p, Role::Policy, top)),
        );
        plan.push((
            policies.join(crate::policy::SCHEMA_FILE),
            Role::PolicySchema,
            top,
        ));
        plan.push((
            policies.join(crate::policy::TESTS_FILE),
            Role::PolicyTests,
            top,
        ));
        for (dir, role) in [
            (&dirs[0], Role::Profile),
            (&dirs[1], Role::Playbook),
            (&dirs[2], Role::Baseline),
        ] {
            plan.extend(
                list_toml(&root.join(dir), overrides, dir)?
                    .into_iter()
                    .map(|p| (p, role, dir.as_path())),
            );
        }
        for (rel, role, anchor) in plan {
            f.read(root, overrides, &rel, role, anchor)?;
        }
        Ok(f)
    }

    /// Read one file (or its override); false when it does not exist.
    /// `anchor` (relative to `root`) is the directory the file must resolve
    /// into: the SoT for its own files, the configured library directory for
    /// profiles, playbooks and baselines.
    fn read(
        &mut self,
        root: &Path,
        overrides: &HashMap<PathBuf, String>,
        rel: &Path,
        role: Role,
        anchor: &Path,
    ) -> Result<bool> {
        let display = display_path(root, rel);
        let file = if let Some(t) = overrides.get(rel) {
            SourceFile::new(display, t.clone())
        } else {
            let path = root.join(rel);
            match read_source(&root.join(anchor), &path, display) {
                Ok(Source::Text(file)) => file,
                Ok(Source::Unreadable(file, d)) => {
                    self.unreadable(file, d, role, rel);
                    return Ok(true);
                }
                Ok(Source::Missing) => return Ok(false),
                Err(source) => return Err(SotError::Io { path, source }),
            }
        };
        self.files.push(file);
        self.roles.push((role, rel.to_path_buf()));
        Ok(true)
    }

    /// Keep a file that cannot be parsed in the list (so file indices and
    /// roles stay aligned) with the diagnostic that says why.
    fn unreadable(&mut self, file: SourceFile, d: Diagnostic, role: Role, rel: &Path) {
        self.early.push(d);
        self.unreadable.push(self.files.len());
        self.files.push(file);
        self.roles.push((role, rel.to_path_buf()));
    }
}

/// The profiles, playbooks and hardening directories named in maestro.toml
/// (defaults when it does not parse: the checker reports that separately).
fn library_dirs(settings_text: &str) -> [PathBuf; 3] {
    let mut dirs = [
        PathBuf::from("profiles"),
        PathBuf::from("playbooks"),
        PathBuf::from("hardening"),
    ];
    if let Ok(t) = DeTable::parse(settings_text)
        && let Some(Value::Table(p)) = get(t.get_ref(), "paths").map(|v| v.get_ref())
    {
        for (slot, key) in dirs.iter_mut().zip(["profiles", "playbooks", "hardening"]) {
            if let Some(Value::String(s)) = get(p, key).map(|v| v.get_ref()) {
                *slot = PathBuf::from(s.as_ref());
            }
        }
    }
    dirs
}

/// `*.toml` files directly in `dir` (plus overridden ones), as paths relative to the SoT.
fn list_toml(
    dir: &Path,
    overrides: &HashMap<PathBuf, String>,
    rel_dir: &Path,
) -> Result<Vec<PathBuf>> {
    list_files(dir, overrides, rel_dir, "toml")
}

/// The `*.EXT` files of `dir` (relative to the SoT as `rel_dir`), with
/// overridden files that would be there after a change.
fn list_files(
    dir: &Path,
    overrides: &HashMap<PathBuf, String>,
    rel_dir: &Path,
    ext: &str,
) -> Result<Vec<PathBuf>> {
    let mut out: Vec<PathBuf> = files_with_extension(dir, ext)
        .map_err(|source| SotError::Io {
            path: dir.to_path_buf(),
            source,
        })?
        .into_iter()
        .filter_map(|p| Some(rel_dir.join(p.file_name()?)))
        .collect();
    for k in overrides.keys() {
        if k.parent() == Some(rel_dir)
            && k.extension().is_some_and(|x| x == ext)
            && !out.contains(k)
        {
            out.push(k.clone());
        }
    }
    out.sort();
    Ok(out)
}
