//! Loading a SoT directory: read the files, parse them with spans, check every
//! rule, and either return a [`Sot`] or every problem found.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::ops::Range;
use std::path::{Component, Path, PathBuf};

use toml::de::DeTable;

use super::model::*;
use super::paths::{Resolved, Source, read_source, resolve_within};
use super::schema::{At, Cx, Table, Value, entries_in_order, get};
use super::{Result, SotError};
use crate::diag::{Code, Diagnostic, Diagnostics, SourceFile, display_path, suggest};

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

/// Where a definition was made, to point at the first one when a name repeats.
#[derive(Clone)]
struct Origin {
    file: usize,
    span: Range<usize>,
}

/// A name used somewhere that must resolve to a definition.
struct Reference {
    kind: RefKind,
    name: String,
    origin: Origin,
    /// For agent versions: the agent the version must belong to.
    agent: Option<String>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum RefKind {
    Node,
    Group,
    Model,
    Profile,
    Playbook,
    Baseline,
    AgentVersion,
}

impl RefKind {
    fn noun(self) -> &'static str {
        match self {
            RefKind::Node => "node",
            RefKind::Group => "group",
            RefKind::Model => "model",
            RefKind::Profile => "profile",
            RefKind::Playbook => "playbook",
            RefKind::Baseline => "hardening baseline",
            RefKind::AgentVersion => "version",
        }
    }
}

/// What a file holds, which decides the schema it is read against.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Role {
    Settings,
    Nodes,
    Groups,
    Models,
    Agents,
    Profile,
    Playbook,
    Baseline,
}

/// Every file of the SoT, read before checking starts so the parsed tables can
/// borrow their text for the whole check.
struct Files {
    files: Vec<SourceFile>,
    roles: Vec<(Role, PathBuf)>,
    /// Files that cannot be parsed (not UTF-8, a symlink out of the SoT):
    /// listed in `files` (for the diagnostic's excerpt) but never parsed.
    unreadable: Vec<usize>,
    early: Vec<Diagnostic>,
}

impl Files {
    fn read_all(root: &Path, overrides: &HashMap<PathBuf, String>) -> Result<Files> {
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

/// A diagnostics context for file `idx` that borrows only the diagnostics list,
/// so the loader's other fields stay usable while it is alive.
macro_rules! cx {
    ($self:ident, $idx:expr) => {{
        let idx = $idx;
        let files = $self.files;
        Cx {
            file: &files[idx],
            diags: &mut $self.diags,
        }
    }};
}

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
        let (profiles, playbooks, baselines) = self.library();

        if let Some(settings) = &settings {
            self.check_node_tags(settings, &nodes, &profiles);
        }
        self.check_duplicate_nodes(&nodes);
        // Cross-references only make sense when every file parsed: a syntax error
        // would otherwise show up again as a cascade of dangling references.
        if !self.syntax_failed {
            self.resolve(
                &nodes, &groups, &models, &agents, &profiles, &playbooks, &baselines,
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
        Ok(Sot {
            root: self.root,
            settings,
            nodes,
            groups,
            models,
            agents,
            profiles,
            playbooks,
            baselines,
            node_index: HashMap::new(),
        }
        .indexed())
    }

    fn settings(&mut self, idx: usize, t: &Table<'_>) -> Settings {
        let mut cx = cx!(self, idx);
        cx.check_keys(
            t,
            &["maestro", "connection", "paths", "tags"],
            "maestro.toml",
        );
        let mut s = Settings {
            name: String::new(),
            description: None,
            default_user: "root".into(),
            default_port: 22,
            known_hosts: None,
            ssh_config: None,
            default_profile: None,
            tag_values: BTreeMap::new(),
            required_tags: Vec::new(),
            profiles_dir: "profiles".into(),
            playbooks_dir: "playbooks".into(),
            hardening_dir: "hardening".into(),
        };
        match cx.table(t, "maestro", "maestro.toml") {
            Some(m) => {
                let what = "[maestro]";
                cx.check_keys(m.value, &["name", "description", "default_profile"], what);
                match cx.string(m.value, "name", what) {
                    Some(n) => s.name = n.value,
                    None if get(m.value, "name").is_none() => {
                        cx.missing(m.span.clone(), "name", what, "\"my-fleet\"")
                    }
                    None => {}
                }
                s.description = cx.string(m.value, "description", what).map(|a| a.value);
                if let Some(p) = cx.string(m.value, "default_profile", what) {
                    self.refs.push(Reference {
                        kind: RefKind::Profile,
                        name: p.value.clone(),
                        origin: Origin {
                            file: idx,
                            span: p.span,
                        },
                        agent: None,
                    });
                    s.default_profile = Some(p.value);
                }
            }
            None if get(t, "maestro").is_none() => cx.error_hint(
                Code::MissingKey,
                0..0,
                "maestro.toml has no [maestro] table",
                "start the file with `[maestro]` and `name = \"my-fleet\"`",
            ),
            None => {}
        }
        let mut cx = cx!(self, idx);
        if let Some(c) = cx.table(t, "connection", "maestro.toml") {
            let what = "[connection]";
            cx.check_keys(
                c.value,
                &["user", "port", "known_hosts", "ssh_config"],
                what,
            );
            if let Some(u) = cx.string(c.value, "user", what) {
                check_user(&mut cx, &u);
                s.default_user = u.value;
            }
            if let Some(p) = cx.integer(c.value, "port", what) {
                s.default_port = check_port(&mut cx, &p).unwrap_or(22);
            }
            for (key, slot) in [
                ("known_hosts", &mut s.known_hosts),
                ("ssh_config", &mut s.ssh_config),
            ] {
                if let Some(f) = cx.string(c.value, key, what) {
                    let path = PathBuf::from(&f.value);
                    // A path written inside the SoT must stay inside once its
                    // symlinks are resolved; one written as leaving it
                    // (absolute, `..`) says so in plain sight.
                    let written_inside = path
                        .components()
                        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
                    let resolved = resolve_within(&self.root, &self.root.join(&path));
                    if !self.root.join(&path).is_file() {
                        cx.error_hint(
                            Code::MissingFile,
                            f.span,
                            format!("{key} file `{}` does not exist", f.value),
                            "paths are relative to the SoT directory",
                        );
                    } else if let Ok(Resolved::Outside(target)) = resolved
                        && written_inside
                    {
                        cx.error_hint(
                            Code::OutsideSot,
                            f.span,
                            format!(
                                "{key} file `{}` is a symlink to {}, outside the SoT",
                                f.value,
                                target.display()
                            ),
                            "replace the symlink with the file itself",
                        );
                    }
                    *slot = Some(path);
                }
            }
        }
        if let Some(p) = cx.table(t, "paths", "maestro.toml") {
            let what = "[paths]";
            cx.check_keys(p.value, &["profiles", "playbooks", "hardening"], what);
            for (key, slot) in [
                ("profiles", &mut s.profiles_dir),
                ("playbooks", &mut s.playbooks_dir),
                ("hardening", &mut s.hardening_dir),
            ] {
                if let Some(d) = cx.string(p.value, key, what) {
                    if !self.root.join(&d.value).is_dir() {
                        cx.error_hint(
                            Code::MissingFile,
                            d.span,
                            format!("{key} directory `{}` does not exist", d.value),
                            "paths are relative to the SoT directory",
                        );
                    }
                    *slot = PathBuf::from(d.value);
                }
            }
        }
        if let Some(tags) = cx.table(t, "tags", "maestro.toml") {
            let what = "[tags]";
            cx.check_keys(tags.value, &["required", "values"], what);
            for r in cx.strings(tags.value, "required", what) {
                if check_tag_key(&mut cx, &r) {
                    s.required_tags.push(r.value);
                }
            }
            if let Some(values) = cx.table(tags.value, "values", what) {
                for (k, v) in entries_in_order(values.value) {
                    let key = At {
                        value: k.get_ref().to_string(),
                        span: k.span(),
                    };
                    check_tag_key(&mut cx, &key);
                    let allowed: Vec<String> = match v.get_ref() {
                        Value::Array(a) => a
                            .iter()
                            .filter_map(|x| match x.get_ref() {
                                Value::String(s) => Some(s.to_string()),
                                _ => {
                                    cx.error(Code::Type, x.span(), "tag values must be strings");
                                    None
                                }
                            })
                            .collect(),
                        _ => {
                            cx.error(
                                Code::Type,
                                v.span(),
                                format!(
                                    "allowed values of tag `{}` must be an array of strings",
                                    key.value
                                ),
                            );
                            Vec::new()
                        }
                    };
                    s.tag_values.insert(key.value, allowed);
                }
            }
        }
        s
    }

    fn nodes(
        &mut self,
        idx: usize,
        rel: &Path,
        t: &Table<'_>,
        settings: Option<&Settings>,
        out: &mut Vec<Node>,
    ) {
        let file_name = rel.display().to_string();
        let mut cx = cx!(self, idx);
        cx.check_keys(t, &["node"], &file_name);
        let Some(nodes) = cx.table(t, "node", &file_name) else {
            return;
        };
        let (default_user, default_port) = settings
            .map(|s| (s.default_user.clone(), s.default_port))
            .unwrap_or(("root".into(), 22));
        for (k, v) in entries_in_order(nodes.value) {
            let name = k.get_ref().to_string();
            let what = format!("node `{name}`");
            let mut cx = cx!(self, idx);
            check_name(&mut cx, &name, k.span(), "node");
            let Value::Table(nt) = v.get_ref() else {
                cx.error_hint(
                    Code::Type,
                    v.span(),
                    format!("{what} must be a table, found {}", v.get_ref().type_str()),
                    format!("write it as `[node.{name}]` followed by `address = \"...\"`"),
                );
                continue;
            };
            cx.check_keys(
                nt,
                &[
                    "address",
                    "port",
                    "user",
                    "groups",
                    "tags",
                    "vars",
                    "profile",
                    "description",
                ],
                &what,
            );
            let header = k.span();
            let address = match cx.string(nt, "address", &what) {
                Some(a) => {
                    check_address(&mut cx, &a);
                    a.value
                }
                None => {
                    if get(nt, "address").is_none() {
                        cx.missing(header.clone(), "address", &what, "\"10.0.0.1\"");
                    }
                    String::new()
                }
            };
            let port = cx
                .integer(nt, "port", &what)
                .and_then(|p| check_port(&mut cx, &p));
            let user = cx.string(nt, "user", &what);
            if let Some(u) = &user {
                check_user(&mut cx, u);
            }
            let groups = cx.strings(nt, "groups", &what);
            let tags = cx.string_map(nt, "tags", &what);
            let vars = cx.vars(nt, "vars", &what);
            let profile = cx.string(nt, "profile", &what);
            let _ = cx.string(nt, "description", &what);
            for g in &groups {
                self.refs.push(Reference {
                    kind: RefKind::Group,
                    name: g.value.clone(),
                    origin: Origin {
                        file: idx,
                        span: g.span.clone(),
                    },
                    agent: None,
                });
            }
            if let Some(p) = &profile {
                self.refs.push(Reference {
                    kind: RefKind::Profile,
                    name: p.value.clone(),
                    origin: Origin {
                        file: idx,
                        span: p.span.clone(),
                    },
                    agent: None,
                });
            }
            let tag_map = tags
                .iter()
                .map(|(k, v)| (k.value.clone(), v.value.clone()))
                .collect();
            self.node_tags.push((idx, tags, header.clone()));
            out.push(Node {
                name,
                address,
                port: port.unwrap_or(default_port),
                port_set: port.is_some(),
                user_set: user.is_some(),
                user: user.map_or_else(|| default_user.clone(), |u| u.value),
                groups: groups.into_iter().map(|g| g.value).collect(),
                tags: tag_map,
                vars,
                profile: profile.map(|p| p.value),
                file: rel.to_path_buf(),
            });
            self.node_origins.push(Origin {
                file: idx,
                span: header,
            });
        }
    }

    fn groups(&mut self, idx: usize, t: &Table<'_>, out: &mut BTreeMap<String, Group>) {
        let mut cx = cx!(self, idx);
        cx.check_keys(t, &["group"], GROUPS_FILE);
        let Some(groups) = cx.table(t, "group", GROUPS_FILE) else {
            return;
        };
        for (k, v) in entries_in_order(groups.value) {
            let name = k.get_ref().to_string();
            let what = format!("group `{name}`");
            let mut cx = cx!(self, idx);
            check_name(&mut cx, &name, k.span(), "group");
            let Value::Table(gt) = v.get_ref() else {
                cx.error(Code::Type, v.span(), format!("{what} must be a table"));
                continue;
            };
            cx.check_keys(gt, &["description", "members", "vars"], &what);
            let description = cx.string(gt, "description", &what).map(|d| d.value);
            let members = cx.strings(gt, "members", &what);
            let vars = cx.vars(gt, "vars", &what);
            for m in &members {
                self.refs.push(Reference {
                    kind: RefKind::Node,
                    name: m.value.clone(),
                    origin: Origin {
                        file: idx,
                        span: m.span.clone(),
                    },
                    agent: None,
                });
            }
            out.insert(
                name.clone(),
                Group {
                    name,
                    description,
                    members: members.into_iter().map(|m| m.value).collect(),
                    vars,
                },
            );
        }
    }

    fn models(&mut self, idx: usize, t: &Table<'_>, out: &mut BTreeMap<String, Model>) {
        let mut cx = cx!(self, idx);
        cx.check_keys(t, &["model"], MODELS_FILE);
        let Some(models) = cx.table(t, "model", MODELS_FILE) else {
            return;
        };
        for (k, v) in entries_in_order(models.value) {
            let name = k.get_ref().to_string();
            let what = format!("model `{name}`");
            let mut cx = cx!(self, idx);
            check_name(&mut cx, &name, k.span(), "model");
            let Value::Table(mt) = v.get_ref() else {
                cx.error(Code::Type, v.span(), format!("{what} must be a table"));
                continue;
            };
            cx.check_keys(
                mt,
                &[
                    "provider",
                    "description",
                    "artifact",
                    "sha256",
                    "jurisdictions",
                ],
                &what,
            );
            let provider = match cx.string(mt, "provider", &what) {
                Some(p) => {
                    check_name(&mut cx, &p.value, p.span.clone(), "provider");
                    p.value
                }
                None => {
                    if get(mt, "provider").is_none() {
                        cx.missing(k.span(), "provider", &what, "\"vllm\"");
                    }
                    String::new()
                }
            };
            let sha256 = cx.string(mt, "sha256", &what);
            if let Some(s) = &sha256 {
                check_sha256(&mut cx, s);
            }
            out.insert(
                name.clone(),
                Model {
                    name,
                    provider,
                    description: cx.string(mt, "description", &what).map(|d| d.value),
                    artifact: cx.string(mt, "artifact", &what).map(|d| d.value),
                    sha256: sha256.map(|s| s.value),
                    jurisdictions: cx
                        .strings(mt, "jurisdictions", &what)
                        .into_iter()
                        .map(|j| j.value)
                        .collect(),
                },
            );
        }
    }

    fn agents(&mut self, idx: usize, t: &Table<'_>, out: &mut BTreeMap<String, Agent>) {
        let mut cx = cx!(self, idx);
        cx.check_keys(t, &["agent"], AGENTS_FILE);
        let Some(agents) = cx.table(t, "agent", AGENTS_FILE) else {
            return;
        };
        for (k, v) in entries_in_order(agents.value) {
            let name = k.get_ref().to_string();
            let what = format!("agent `{name}`");
            let mut cx = cx!(self, idx);
            check_name(&mut cx, &name, k.span(), "agent");
            let Value::Table(at) = v.get_ref() else {
                cx.error(Code::Type, v.span(), format!("{what} must be a table"));
                continue;
            };
            cx.check_keys(
                at,
                &[
                    "description",
                    "model",
                    "provider",
                    "autonomy",
                    "owner",
                    "profile",
                    "current",
                    "tags",
                    "versions",
                ],
                &what,
            );
            let model = cx.string(at, "model", &what);
            if model.is_none() && get(at, "model").is_none() {
                cx.missing(k.span(), "model", &what, "\"llama-3.1-8b-instruct\"");
            }
            let provider = cx.string(at, "provider", &what);
            if let Some(p) = &provider {
                check_name(&mut cx, &p.value, p.span.clone(), "provider");
            }
            let autonomy = match cx.string(at, "autonomy", &what) {
                Some(a) => match a.value.parse::<Autonomy>() {
                    Ok(l) => l,
                    Err(e) => {
                        let hint = suggest(
                            &a.value.to_uppercase(),
                            ["L0", "L1", "L2", "L3", "L4", "L5"],
                        )
                        .map(|s| format!("did you mean `{s}`?"))
                        .unwrap_or_else(|| "L0 suggests only; L5 acts without a human".into());
                        cx.error_hint(Code::BadValue, a.span, e, hint);
                        Autonomy(0)
                    }
                },
                None => {
                    if get(at, "autonomy").is_none() {
                        cx.missing(k.span(), "autonomy", &what, "\"L1\"");
                    }
                    Autonomy(0)
                }
            };
            let tags = cx.string_map(at, "tags", &what);
            for (tk, tv) in &tags {
                check_tag_key(&mut cx, tk);
                check_tag_value(&mut cx, tk, tv);
            }
            let mut versions = Vec::new();
            if let Some(vt) = cx.table(at, "versions", &what) {
                for (vk, vv) in entries_in_order(vt.value) {
                    let version = vk.get_ref().to_string();
                    let vwhat = format!("version `{version}` of agent `{name}`");
                    check_version(&mut cx, &version, vk.span());
                    let Value::Table(vtab) = vv.get_ref() else {
                        cx.error(Code::Type, vv.span(), format!("{vwhat} must be a table"));
                        continue;
                    };
                    cx.check_keys(vtab, &["artifact", "sha256"], &vwhat);
                    let artifact = cx.string(vtab, "artifact", &vwhat);
                    if artifact.is_none() && get(vtab, "artifact").is_none() {
                        cx.missing(
                            vk.span(),
                            "artifact",
                            &vwhat,
                            "\"artifacts/agent-1.0.0.tar.gz\"",
                        );
                    }
                    let sha = cx.string(vtab, "sha256", &vwhat);
                    match &sha {
                        Some(s) => check_sha256(&mut cx, s),
                        None if get(vtab, "sha256").is_none() => {
                            cx.missing(vk.span(), "sha256", &vwhat, "\"<64 hex digits>\"")
                        }
                        None => {}
                    }
                    versions.push(AgentVersion {
                        version,
                        artifact: artifact.map(|a| a.value).unwrap_or_default(),
                        sha256: sha.map(|s| s.value).unwrap_or_default(),
                    });
                }
            }
            let current = cx.string(at, "current", &what);
            let profile = cx.string(at, "profile", &what);
            let description = cx.string(at, "description", &what).map(|d| d.value);
            let owner = cx.string(at, "owner", &what).map(|d| d.value);
            if let Some(m) = &model {
                self.refs.push(Reference {
                    kind: RefKind::Model,
                    name: m.value.clone(),
                    origin: Origin {
                        file: idx,
                        span: m.span.clone(),
                    },
                    agent: None,
                });
            }
            if let Some(c) = &current {
                self.refs.push(Reference {
                    kind: RefKind::AgentVersion,
                    name: c.value.clone(),
                    origin: Origin {
                        file: idx,
                        span: c.span.clone(),
                    },
                    agent: Some(name.clone()),
                });
            }
            if let Some(p) = &profile {
                self.refs.push(Reference {
                    kind: RefKind::Profile,
                    name: p.value.clone(),
                    origin: Origin {
                        file: idx,
                        span: p.span.clone(),
                    },
                    agent: None,
                });
            }
            out.insert(
                name.clone(),
                Agent {
                    name,
                    description,
                    model: model.map(|m| m.value).unwrap_or_default(),
                    provider: provider.map(|p| p.value),
                    autonomy,
                    owner,
                    profile: profile.map(|p| p.value),
                    current: current.map(|c| c.value),
                    tags: tags.into_iter().map(|(k, v)| (k.value, v.value)).collect(),
                    versions,
                },
            );
        }
    }

    /// Profiles, playbooks and hardening baselines referenced by the SoT.
    fn library(&mut self) -> (BTreeMap<String, Profile>, Vec<String>, Vec<String>) {
        let mut profiles = BTreeMap::new();
        for (idx, rel) in self.files_of(Role::Profile) {
            let name = stem(&rel);
            let Some(t) = self.parse(idx) else { continue };
            let what = format!("profile `{name}`");
            let mut cx = cx!(self, idx);
            cx.check_keys(
                &t,
                &[
                    "description",
                    "playbooks",
                    "hardening",
                    "required_tags",
                    "vars",
                    "validate",
                ],
                &what,
            );
            let mut validate = ProfileRules::default();
            if let Some(v) = cx.table(&t, "validate", &what) {
                let vwhat = format!("[validate] of {what}");
                cx.check_keys(v.value, &["absolute_paths", "names", "not_root"], &vwhat);
                let mut list = |key| -> Vec<String> {
                    cx.strings(v.value, key, &vwhat)
                        .into_iter()
                        .map(|s| s.value)
                        .collect()
                };
                validate.absolute_paths = list("absolute_paths");
                validate.names = list("names");
                validate.not_root = list("not_root");
            }
            let playbooks = cx.strings(&t, "playbooks", &what);
            let hardening = cx.string(&t, "hardening", &what);
            let required = cx.strings(&t, "required_tags", &what);
            for r in &required {
                check_tag_key(&mut cx, r);
            }
            let profile = Profile {
                name: name.clone(),
                description: cx.string(&t, "description", &what).map(|d| d.value),
                playbooks: playbooks.iter().map(|p| p.value.clone()).collect(),
                hardening: hardening.as_ref().map(|h| h.value.clone()),
                required_tags: required.into_iter().map(|r| r.value).collect(),
                vars: cx.vars(&t, "vars", &what),
                validate,
            };
            for p in playbooks {
                self.refs.push(Reference {
                    kind: RefKind::Playbook,
                    name: p.value,
                    origin: Origin {
                        file: idx,
                        span: p.span,
                    },
                    agent: None,
                });
            }
            if let Some(h) = hardening {
                self.refs.push(Reference {
                    kind: RefKind::Baseline,
                    name: h.value,
                    origin: Origin {
                        file: idx,
                        span: h.span,
                    },
                    agent: None,
                });
            }
            profiles.insert(name, profile);
        }
        // Playbooks and baselines are checked by their own modules, so a broken
        // task or rule is caught by `sot check`, before any run.
        let mut names = |role| {
            let mut out = Vec::new();
            for (idx, rel) in self.files_of(role) {
                if self.parse(idx).is_some() {
                    let file = &self.files[idx];
                    let problems = match role {
                        Role::Playbook => crate::playbook::check(file),
                        _ => crate::harden::check(file),
                    };
                    self.diags.extend(problems.0);
                }
                out.push(stem(&rel));
            }
            out
        };
        let playbooks = names(Role::Playbook);
        let baselines = names(Role::Baseline);
        (profiles, playbooks, baselines)
    }

    fn check_node_tags(
        &mut self,
        s: &Settings,
        nodes: &[Node],
        profiles: &BTreeMap<String, Profile>,
    ) {
        let node_tags = std::mem::take(&mut self.node_tags);
        for ((idx, tags, header), node) in node_tags.iter().zip(nodes) {
            let mut cx = cx!(self, *idx);
            for (k, v) in tags {
                if !check_tag_key(&mut cx, k) {
                    continue;
                }
                if !check_tag_value(&mut cx, k, v) {
                    continue;
                }
                if let Some(allowed) = s.tag_values.get(&k.value)
                    && !allowed.contains(&v.value)
                {
                    let hint = match suggest(&v.value, allowed.iter().map(String::as_str)) {
                        Some(x) => {
                            format!("did you mean `{x}`? allowed: {}", allowed.join(", "))
                        }
                        None => format!(
                            "allowed values: {} (see [tags.values] in maestro.toml)",
                            allowed.join(", ")
                        ),
                    };
                    cx.error_hint(
                        Code::BadTag,
                        v.span.clone(),
                        format!("`{}` is not an allowed value of tag `{}`", v.value, k.value),
                        hint,
                    );
                }
            }
            let profile_name = node.profile.as_ref().or(s.default_profile.as_ref());
            let profile_required = profile_name
                .and_then(|p| profiles.get(p))
                .map(|p| p.required_tags.as_slice())
                .unwrap_or(&[]);
            for req in s.required_tags.iter().chain(profile_required) {
                if !node.tags.contains_key(req) {
                    let by = if s.required_tags.contains(req) {
                        "maestro.toml requires it".to_string()
                    } else {
                        format!(
                            "profile `{}` requires it",
                            profile_name.expect("profile tags")
                        )
                    };
                    cx.error_hint(
                        Code::MissingTag,
                        header.clone(),
                        format!("node `{}` has no `{req}` tag", node.name),
                        format!("{by}: add `{req} = \"...\"` to its tags"),
                    );
                }
            }
        }
    }

    fn check_duplicate_nodes(&mut self, nodes: &[Node]) {
        let definitions = std::mem::take(&mut self.node_origins);
        let mut by_name: HashMap<&str, usize> = HashMap::with_capacity(nodes.len());
        let mut by_endpoint: HashMap<(&str, u16), usize> = HashMap::with_capacity(nodes.len());
        for (i, n) in nodes.iter().enumerate() {
            if let Some(&first) = by_name.get(n.name.as_str()) {
                let at = self.location(&definitions[first]);
                let o = &definitions[i];
                cx!(self, o.file).error_hint(
                    Code::Duplicate,
                    o.span.clone(),
                    format!("node `{}` is defined twice", n.name),
                    format!("first defined at {at}"),
                );
                continue;
            }
            by_name.insert(&n.name, i);
            if n.address.is_empty() {
                continue;
            }
            if let Some(&first) = by_endpoint.get(&(n.address.as_str(), n.port)) {
                let at = self.location(&definitions[first]);
                let o = &definitions[i];
                cx!(self, o.file).error_hint(
                    Code::Duplicate,
                    o.span.clone(),
                    format!(
                        "node `{}` has the same address and port ({}:{}) as node `{}`",
                        n.name, n.address, n.port, nodes[first].name
                    ),
                    format!("`{}` is defined at {at}", nodes[first].name),
                );
                continue;
            }
            by_endpoint.insert((&n.address, n.port), i);
        }
    }

    fn location(&self, o: &Origin) -> String {
        let d = self.files[o.file].diagnostic(Code::Duplicate, o.span.clone(), String::new());
        format!("{}:{}:{}", d.file.display(), d.line, d.col)
    }

    #[allow(clippy::too_many_arguments)]
    fn resolve(
        &mut self,
        nodes: &[Node],
        groups: &BTreeMap<String, Group>,
        models: &BTreeMap<String, Model>,
        agents: &BTreeMap<String, Agent>,
        profiles: &BTreeMap<String, Profile>,
        playbooks: &[String],
        baselines: &[String],
    ) {
        let node_names: Vec<&str> = nodes.iter().map(|n| n.name.as_str()).collect();
        let node_set: std::collections::HashSet<&str> = node_names.iter().copied().collect();
        let refs = std::mem::take(&mut self.refs);
        for r in &refs {
            let (found, candidates): (bool, Vec<&str>) = match r.kind {
                RefKind::Node => (node_set.contains(r.name.as_str()), node_names.clone()),
                RefKind::Group => (
                    groups.contains_key(&r.name),
                    groups.keys().map(String::as_str).collect(),
                ),
                RefKind::Model => (
                    models.contains_key(&r.name),
                    models.keys().map(String::as_str).collect(),
                ),
                RefKind::Profile => (
                    profiles.contains_key(&r.name),
                    profiles.keys().map(String::as_str).collect(),
                ),
                RefKind::Playbook => (
                    playbooks.contains(&r.name),
                    playbooks.iter().map(String::as_str).collect(),
                ),
                RefKind::Baseline => (
                    baselines.contains(&r.name),
                    baselines.iter().map(String::as_str).collect(),
                ),
                RefKind::AgentVersion => {
                    let agent = r.agent.as_deref().and_then(|a| agents.get(a));
                    let versions: Vec<&str> = agent
                        .map(|a| a.versions.iter().map(|v| v.version.as_str()).collect())
                        .unwrap_or_default();
                    (versions.contains(&r.name.as_str()), versions)
                }
            };
            if found {
                continue;
            }
            let noun = r.kind.noun();
            let where_defined = match r.kind {
                RefKind::Node => "nodes.toml or nodes/*.toml".to_string(),
                RefKind::Group => GROUPS_FILE.to_string(),
                RefKind::Model => MODELS_FILE.to_string(),
                RefKind::Profile => "the profiles directory".to_string(),
                RefKind::Playbook => "the playbooks directory".to_string(),
                RefKind::Baseline => "the hardening directory".to_string(),
                RefKind::AgentVersion => format!(
                    "[agent.{}.versions]",
                    r.agent.as_deref().unwrap_or_default()
                ),
            };
            let hint = match suggest(&r.name, candidates.iter().copied()) {
                Some(s) => format!("did you mean `{s}`?"),
                None => format!("define it in {where_defined}"),
            };
            let message = match r.kind {
                RefKind::AgentVersion => format!(
                    "agent `{}` has no version `{}`",
                    r.agent.as_deref().unwrap_or_default(),
                    r.name
                ),
                _ => format!("unknown {noun} `{}`", r.name),
            };
            cx!(self, r.origin.file).error_hint(
                Code::DanglingRef,
                r.origin.span.clone(),
                message,
                hint,
            );
        }
    }
}

fn stem(rel: &Path) -> String {
    rel.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// `*.toml` files directly in `dir` (plus overridden ones), as paths relative to the SoT.
fn list_toml(
    dir: &Path,
    overrides: &HashMap<PathBuf, String>,
    rel_dir: &Path,
) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    match std::fs::read_dir(dir) {
        Ok(rd) => {
            for e in rd {
                let e = e.map_err(|source| SotError::Io {
                    path: dir.to_path_buf(),
                    source,
                })?;
                let p = e.path();
                if p.extension().is_some_and(|x| x == "toml") && p.is_file() {
                    out.push(rel_dir.join(e.file_name()));
                }
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(SotError::Io {
                path: dir.to_path_buf(),
                source,
            });
        }
    }
    for k in overrides.keys() {
        if k.parent() == Some(rel_dir)
            && k.extension().is_some_and(|x| x == "toml")
            && !out.contains(k)
        {
            out.push(k.clone());
        }
    }
    out.sort();
    Ok(out)
}

// ---- value rules -------------------------------------------------------------

fn check_name(cx: &mut Cx<'_>, name: &str, span: Range<usize>, kind: &str) -> bool {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b))
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name.as_bytes()[name.len() - 1].is_ascii_alphanumeric();
    if !ok {
        cx.error_hint(
            Code::BadValue,
            span,
            format!("invalid {kind} name `{name}`"),
            "use 1-63 lowercase letters, digits, `-`, `_` or `.`, starting and ending with a letter or digit",
        );
    }
    ok
}

fn check_address(cx: &mut Cx<'_>, a: &At<String>) {
    let s = a.value.as_str();
    if s.parse::<IpAddr>().is_ok() {
        return;
    }
    let looks_numeric = s
        .split('.')
        .all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_digit()));
    let hostname_ok = !s.is_empty()
        && s.len() <= 253
        && !looks_numeric
        && s.trim_end_matches('.').split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
    if !hostname_ok {
        let hint = if looks_numeric || s.contains(':') {
            "not a valid IPv4 or IPv6 address"
        } else {
            "use an IP address or a DNS host name (letters, digits and `-` in dot-separated labels)"
        };
        cx.error_hint(
            Code::BadAddress,
            a.span.clone(),
            format!("invalid address `{s}`"),
            hint,
        );
    }
}

fn check_port(cx: &mut Cx<'_>, p: &At<i64>) -> Option<u16> {
    match u16::try_from(p.value) {
        Ok(port) if port > 0 => Some(port),
        _ => {
            cx.error_hint(
                Code::BadPort,
                p.span.clone(),
                format!("port {} is out of range", p.value),
                "a port is between 1 and 65535; SSH listens on 22 by default",
            );
            None
        }
    }
}

fn check_user(cx: &mut Cx<'_>, u: &At<String>) {
    let ok = !u.value.is_empty()
        && u.value.len() <= 32
        && u.value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        && !u.value.starts_with('-');
    if !ok {
        cx.error_hint(
            Code::BadValue,
            u.span.clone(),
            format!("invalid user name `{}`", u.value),
            "a POSIX user name: letters, digits, `-`, `_`, `.`",
        );
    }
}

fn check_tag_key(cx: &mut Cx<'_>, k: &At<String>) -> bool {
    let s = &k.value;
    let ok = !s.is_empty()
        && s.len() <= 63
        && s.as_bytes()[0].is_ascii_lowercase()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b));
    if !ok {
        cx.error_hint(
            Code::BadTag,
            k.span.clone(),
            format!("invalid tag key `{s}`"),
            "tag keys are lowercase: a letter, then letters, digits, `-`, `_` or `.`",
        );
    }
    ok
}

fn check_tag_value(cx: &mut Cx<'_>, k: &At<String>, v: &At<String>) -> bool {
    let s = &v.value;
    let ok = !s.is_empty()
        && s.len() <= 63
        && s.as_bytes()[0].is_ascii_alphanumeric()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:/".contains(&b));
    if !ok {
        cx.error_hint(
            Code::BadTag,
            v.span.clone(),
            format!("invalid value `{s}` for tag `{}`", k.value),
            "tag values: letters, digits, `-`, `_`, `.`, `:` or `/`, no spaces",
        );
    }
    ok
}

fn check_sha256(cx: &mut Cx<'_>, s: &At<String>) {
    if s.value.len() != 64 || !s.value.bytes().all(|b| b.is_ascii_hexdigit()) {
        cx.error_hint(
            Code::BadValue,
            s.span.clone(),
            format!("`{}` is not a sha256 digest", s.value),
            "64 hexadecimal digits, as printed by `sha256sum FILE`",
        );
    }
}

fn check_version(cx: &mut Cx<'_>, v: &str, span: Range<usize>) {
    let core = v.split(['-', '+']).next().unwrap_or("");
    let parts: Vec<&str> = core.split('.').collect();
    let ok = parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    if !ok {
        cx.error_hint(
            Code::BadValue,
            span,
            format!("`{v}` is not a version"),
            "use semantic versions such as `1.4.0` or `2.0.0-rc.1`",
        );
    }
}
