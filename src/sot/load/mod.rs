//! Loading a SoT directory: read the files, parse them with spans, check every
//! rule, and either return a [`Sot`] or every problem found.
//!
//! One file per registry (`settings`, `nodes`, `groups`, `models`, `agents`,
//! `killswitch`, `freeze`, `rollouts`, `people`, `checklists`, `lessons`, `profiles`), each a method of [`Loader`] that reads its tables and records
//! the names it refers to; `refs` resolves those once everything is read,
//! `files` finds and reads the files, `tables` walks "a table of named
//! tables" for every registry, and `rules` holds the value rules they share.
//! A new registry is a new file with one method and a line in `run`.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::path::{Path, PathBuf};

use toml::de::DeTable;

use super::model::Sot;
use super::schema::At;
use super::{Result, SotError};
use crate::diag::{Diagnostic, Diagnostics, SourceFile};
use files::{Files, Role};
use refs::{Origin, Reference};

/// The settings file every SoT has.
pub const SETTINGS_FILE: &str = "maestro.toml";
/// Registry files, each optional. Nodes may also be split into `nodes/*.toml`.
pub const NODES_FILE: &str = "nodes.toml";
pub const NODES_DIR: &str = "nodes";
pub const GROUPS_FILE: &str = "groups.toml";
pub const MODELS_FILE: &str = "models.toml";
pub const AGENTS_FILE: &str = "agents.toml";

/// Load and validate the SoT in `root`.
pub fn load(root: &Path) -> Result<Sot> {
    load_with(root, &HashMap::new())
}

/// Load with some files' contents replaced (paths relative to `root`). Writes use
/// this to validate the SoT as it would be after the change, before touching disk.
pub fn load_with(root: &Path, overrides: &HashMap<PathBuf, String>) -> Result<Sot> {
    let files = Files::read_all(root, overrides)?;
    Loader {
        root: root.to_path_buf(),
        files: &files.files,
        roles: &files.roles,
        unreadable: &files.unreadable,
        diags: files.early.clone(),
        refs: Vec::new(),
        node_origins: Vec::new(),
        node_tags: Vec::new(),
        syntax_failed: !files.early.is_empty(),
    }
    .run()
}

/// A diagnostics context for file `idx` that borrows only the diagnostics list,
/// so the loader's other fields stay usable while it is alive.
macro_rules! cx {
    ($self:ident, $idx:expr) => {{
        let idx = $idx;
        let files = $self.files;
        $crate::sot::schema::Cx {
            file: &files[idx],
            diags: &mut $self.diags,
        }
    }};
}

mod agents;
mod checklists;
mod files;
mod freeze;
mod groups;
mod killswitch;
mod lessons;
mod models;
mod nodes;
mod people;
mod profiles;
mod refs;
mod rollouts;
mod rules;
mod scope;
mod settings;
mod tables;
mod tokens;

/// A node's tags as written (file, key/value pairs with spans, header span).
type NodeTags = (usize, Vec<(At<String>, At<String>)>, Range<usize>);

struct Loader<'a> {
    root: PathBuf,
    files: &'a [SourceFile],
    roles: &'a [(Role, PathBuf)],
    unreadable: &'a [usize],
    diags: Vec<Diagnostic>,
    refs: Vec<Reference>,
    /// Where each node (same order as the nodes vector) was defined.
    node_origins: Vec<Origin>,
    /// Node tag occurrences, checked once the taxonomy and profiles are known.
    node_tags: Vec<NodeTags>,
    syntax_failed: bool,
}

impl<'a> Loader<'a> {
    /// Parse file `idx`, recording syntax errors. The table borrows the file's text.
    fn parse(&mut self, idx: usize) -> Option<DeTable<'a>> {
        if self.unreadable.contains(&idx) {
            return None;
        }
        let file: &'a SourceFile = &self.files[idx];
        let (table, errors) = DeTable::parse_recoverable(&file.text);
        if errors.is_empty() {
            return Some(table.into_inner());
        }
        self.syntax_failed = true;
        self.diags
            .extend(errors.iter().map(|e| Diagnostic::from_toml_error(file, e)));
        None
    }

    fn files_of(&self, role: Role) -> Vec<(usize, PathBuf)> {
        self.roles
            .iter()
            .enumerate()
            .filter(|(_, (r, _))| *r == role)
            .map(|(i, (_, p))| (i, p.clone()))
            .collect()
    }

    fn run(mut self) -> Result<Sot> {
        let settings_table = self.parse(0);
        let settings = settings_table.as_ref().map(|t| self.settings(0, t));

        let mut nodes = Vec::new();
        for (idx, rel) in self.files_of(Role::Nodes) {
            if let Some(t) = self.parse(idx) {
                self.nodes(idx, &rel, &t, settings.as_ref(), &mut nodes);
            }
        }
        let mut groups = BTreeMap::new();
        for (idx, _) in self.files_of(Role::Groups) {
            if let Some(t) = self.parse(idx) {
                self.groups(idx, &t, &mut groups);
            }
        }
        let mut models = BTreeMap::new();
        for (idx, _) in self.files_of(Role::Models) {
            if let Some(t) = self.parse(idx) {
                self.models(idx, &t, &mut models);
            }
        }
        let mut agents = BTreeMap::new();
        for (idx, _) in self.files_of(Role::Agents) {
            if let Some(t) = self.parse(idx) {
                self.agents(idx, &t, &mut agents);
            }
        }
        // Target patterns of kill switches and freeze windows, checked once
        // the nodes and groups they select from are known.
        let mut scopes = Vec::new();
        let mut killswitch = Vec::new();
        for (idx, _) in self.files_of(Role::KillSwitch) {
            if let Some(t) = self.parse(idx) {
                self.killswitch(idx, &t, &mut killswitch, &mut scopes);
            }
        }
        let mut freeze = Vec::new();
        for (idx, _) in self.files_of(Role::Freeze) {
            if let Some(t) = self.parse(idx) {
                self.freeze(idx, &t, &mut freeze, &mut scopes);
            }
        }
        let mut rollouts = crate::rollout::spec::Definitions::default();
        for (idx, _) in self.files_of(Role::Rollouts) {
            if let Some(t) = self.parse(idx) {
                self.rollouts(idx, &t, &mut rollouts);
            }
        }
        let mut people = BTreeMap::new();
        for (idx, _) in self.files_of(Role::People) {
            if let Some(t) = self.parse(idx) {
                self.people(idx, &t, &mut people);
            }
        }
        let mut checklists = BTreeMap::new();
        for (idx, rel) in self.files_of(Role::Checklist) {
            if let Some(t) = self.parse(idx) {
                self.checklists(idx, &rel, &t, &people, &mut checklists);
            }
        }
        let mut lessons = BTreeMap::new();
        for (idx, _) in self.files_of(Role::Lessons) {
            if let Some(t) = self.parse(idx) {
                self.lessons(idx, &t, &mut lessons);
            }
        }
        let mut api_tokens = BTreeMap::new();
        for (idx, _) in self.files_of(Role::Tokens) {
            if let Some(t) = self.parse(idx) {
                self.tokens(idx, &t, &people, &mut api_tokens);
            }
        }
        let (profiles, playbooks, baselines) = self.library();

        if let Some(settings) = &settings {
            self.check_node_tags(settings, &nodes, &profiles);
        }
        self.check_duplicate_nodes(&nodes);
        // Cross-references only make sense when every file parsed: a syntax error
        // would otherwise show up again as a cascade of dangling references.
        if !self.syntax_failed {
            self.resolve(
                &nodes, &groups, &models, &agents, &profiles, &playbooks, &baselines, &rollouts,
            );
        }

        if !self.diags.is_empty() {
            let mut d = Diagnostics(self.diags);
            d.sort();
            return Err(SotError::Invalid(d));
        }
        let settings = settings.expect("no diagnostics implies settings parsed");
        // Membership may be declared on either side; the model shows the union.
        let index: HashMap<String, usize> = nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.name.clone(), i))
            .collect();
        for group in groups.values() {
            for member in &group.members {
                let n = &mut nodes[index[member]];
                if !n.groups.contains(&group.name) {
                    n.groups.push(group.name.clone());
                }
            }
        }
        for n in &mut nodes {
            n.groups.sort();
        }
        let sot = Sot {
            root: self.root.clone(),
            settings,
            nodes,
            groups,
            models,
            agents,
            profiles,
            playbooks,
            baselines,
            killswitch,
            freeze,
            rollouts,
            people,
            checklists,
            lessons,
            api_tokens,
            policies: None,
            node_index: HashMap::new(),
        }
        .indexed();
        scope::check(&sot, self.files, &scopes)?;
        self.policies(sot)
    }

    /// The Cedar policies, read against the finished SoT (their entities
    /// are its people, nodes, agents and models).
    fn policies(&self, mut sot: Sot) -> Result<Sot> {
        let of = |role| {
            self.roles
                .iter()
                .enumerate()
                .filter(move |(_, (r, _))| *r == role)
                .map(|(i, _)| &self.files[i])
        };
        let sources = crate::policy::load::Sources {
            policies: of(Role::Policy).collect(),
            schema: of(Role::PolicySchema).next(),
            tests: of(Role::PolicyTests).next(),
        };
        match crate::policy::load(&sot, &sources) {
            Ok(p) => {
                sot.policies = p.map(std::sync::Arc::new);
                Ok(sot)
            }
            Err(diags) => {
                let mut d = Diagnostics(diags);
                d.sort();
                Err(SotError::Invalid(d))
            }
        }
    }
}

fn stem(rel: &Path) -> String {
    rel.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}
