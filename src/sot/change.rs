//! Typed SoT changes (`node add`, `agent tag`, …): validate the SoT as it would
//! be after the change, then write and commit it as one git commit.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use toml_edit::Value;

use super::edit::{self, Kind};
use super::git::{ACTOR_TRAILER, Actor, SotRepo, is_maestro_trailer};
use super::{AGENTS_FILE, NODES_FILE, Result, Sot, SotError, load, load_with};

/// Why and by whom: every change needs both.
#[derive(Debug, Clone)]
pub struct Intent {
    pub reason: String,
    /// `Name <email>`; `None` takes the repository's git identity.
    pub actor: Option<String>,
}

/// The result of a committed change.
#[derive(Debug, Clone)]
pub struct Committed {
    pub commit: String,
    pub files: Vec<PathBuf>,
    pub summary: String,
}

#[derive(Debug, Clone, Default)]
pub struct NewNode {
    pub name: String,
    pub address: String,
    pub port: Option<u16>,
    pub user: Option<String>,
    pub groups: Vec<String>,
    pub tags: Vec<(String, String)>,
    pub vars: Vec<(String, String)>,
    pub profile: Option<String>,
    /// The nodes file to add to, relative to the SoT (default `nodes.toml`).
    pub file: Option<PathBuf>,
}

#[derive(Debug, Clone, Default)]
pub struct NewAgent {
    pub name: String,
    pub description: Option<String>,
    pub model: String,
    pub provider: Option<String>,
    pub autonomy: String,
    pub owner: Option<String>,
    pub tags: Vec<(String, String)>,
}

pub fn add_node(root: &Path, node: &NewNode, intent: &Intent) -> Result<Committed> {
    let sot = load(root)?;
    if let Some(existing) = sot.node(&node.name) {
        return Err(SotError::Refused(format!(
            "node `{}` already exists (in {})",
            node.name,
            existing.file.display()
        )));
    }
    let file = node
        .file
        .clone()
        .unwrap_or_else(|| PathBuf::from(NODES_FILE));
    let mut fields = vec![("address", Value::from(node.address.as_str()))];
    if let Some(p) = node.port {
        fields.push(("port", Value::from(i64::from(p))));
    }
    if let Some(u) = &node.user {
        fields.push(("user", Value::from(u.as_str())));
    }
    if !node.groups.is_empty() {
        fields.push(("groups", edit::string_array(&node.groups)));
    }
    if !node.tags.is_empty() {
        fields.push(("tags", edit::string_table(&node.tags)));
    }
    if !node.vars.is_empty() {
        fields.push(("vars", edit::string_table(&node.vars)));
    }
    if let Some(p) = &node.profile {
        fields.push(("profile", Value::from(p.as_str())));
    }
    let text = read_or_empty(root, &file)?;
    let new = edit::add(&text, Kind::Node, &node.name, fields)?;
    apply(
        root,
        vec![(file, new)],
        &format!("node add {}", node.name),
        intent,
    )
}

pub fn remove_node(root: &Path, name: &str, intent: &Intent) -> Result<Committed> {
    let sot = load(root)?;
    let file = node_file(&sot, name)?;
    let new = edit::remove(&read_or_empty(root, &file)?, Kind::Node, name)?;
    apply(
        root,
        vec![(file, new)],
        &format!("node remove {name}"),
        intent,
    )
}

pub fn tag_node(
    root: &Path,
    name: &str,
    set: &[(String, String)],
    unset: &[String],
    intent: &Intent,
) -> Result<Committed> {
    let sot = load(root)?;
    let file = node_file(&sot, name)?;
    let new = edit::retag(&read_or_empty(root, &file)?, Kind::Node, name, set, unset)?;
    apply(
        root,
        vec![(file, new)],
        &format!("node tag {name} {}", tag_summary(set, unset)),
        intent,
    )
}

pub fn add_agent(root: &Path, agent: &NewAgent, intent: &Intent) -> Result<Committed> {
    let sot = load(root)?;
    if sot.agents.contains_key(&agent.name) {
        return Err(SotError::Refused(format!(
            "agent `{}` already exists",
            agent.name
        )));
    }
    let mut fields = Vec::new();
    if let Some(d) = &agent.description {
        fields.push(("description", Value::from(d.as_str())));
    }
    fields.push(("model", Value::from(agent.model.as_str())));
    if let Some(p) = &agent.provider {
        fields.push(("provider", Value::from(p.as_str())));
    }
    fields.push(("autonomy", Value::from(agent.autonomy.as_str())));
    if let Some(o) = &agent.owner {
        fields.push(("owner", Value::from(o.as_str())));
    }
    if !agent.tags.is_empty() {
        fields.push(("tags", edit::string_table(&agent.tags)));
    }
    let file = PathBuf::from(AGENTS_FILE);
    let new = edit::add(
        &read_or_empty(root, &file)?,
        Kind::Agent,
        &agent.name,
        fields,
    )?;
    apply(
        root,
        vec![(file, new)],
        &format!("agent add {}", agent.name),
        intent,
    )
}

pub fn remove_agent(root: &Path, name: &str, intent: &Intent) -> Result<Committed> {
    let sot = load(root)?;
    agent_exists(&sot, name)?;
    let file = PathBuf::from(AGENTS_FILE);
    let new = edit::remove(&read_or_empty(root, &file)?, Kind::Agent, name)?;
    apply(
        root,
        vec![(file, new)],
        &format!("agent remove {name}"),
        intent,
    )
}

pub fn tag_agent(
    root: &Path,
    name: &str,
    set: &[(String, String)],
    unset: &[String],
    intent: &Intent,
) -> Result<Committed> {
    let sot = load(root)?;
    agent_exists(&sot, name)?;
    let file = PathBuf::from(AGENTS_FILE);
    let new = edit::retag(&read_or_empty(root, &file)?, Kind::Agent, name, set, unset)?;
    apply(
        root,
        vec![(file, new)],
        &format!("agent tag {name} {}", tag_summary(set, unset)),
        intent,
    )
}

fn node_file(sot: &Sot, name: &str) -> Result<PathBuf> {
    match sot.node(name) {
        Some(n) => Ok(n.file.clone()),
        None => {
            let hint = super::diag::suggest(name, sot.nodes.iter().map(|n| n.name.as_str()))
                .map(|s| format!(" (did you mean `{s}`?)"))
                .unwrap_or_default();
            Err(SotError::Refused(format!(
                "there is no node `{name}`{hint}"
            )))
        }
    }
}

fn agent_exists(sot: &Sot, name: &str) -> Result<()> {
    if sot.agents.contains_key(name) {
        return Ok(());
    }
    let hint = super::diag::suggest(name, sot.agents.keys().map(String::as_str))
        .map(|s| format!(" (did you mean `{s}`?)"))
        .unwrap_or_default();
    Err(SotError::Refused(format!(
        "there is no agent `{name}`{hint}"
    )))
}

fn tag_summary(set: &[(String, String)], unset: &[String]) -> String {
    set.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .chain(unset.iter().map(|k| format!("-{k}")))
        .collect::<Vec<_>>()
        .join(" ")
}

fn read_or_empty(root: &Path, rel: &Path) -> Result<String> {
    let path = root.join(rel);
    match std::fs::read_to_string(&path) {
        Ok(s) => Ok(s),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(source) => Err(SotError::Io { path, source }),
    }
}

/// The reason becomes the commit message's body: it may not carry control
/// characters (other than newlines and tabs) nor a line that reads as one of
/// maestro's own trailers, which would let a reason forge who made a change.
fn check_reason(reason: &str) -> Result<()> {
    if reason
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return Err(SotError::Refused(
            "the reason contains a control character; write it as plain text".into(),
        ));
    }
    if let Some(line) = reason.lines().find(|l| is_maestro_trailer(l)) {
        return Err(SotError::Refused(format!(
            "the reason has a line that reads as a maestro trailer (`{}`); maestro writes those itself, so reword it",
            line.trim()
        )));
    }
    Ok(())
}

/// Check cleanliness, validate the result, then write and commit.
fn apply(
    root: &Path,
    files: Vec<(PathBuf, String)>,
    what: &str,
    intent: &Intent,
) -> Result<Committed> {
    let reason = intent.reason.trim();
    if reason.is_empty() {
        return Err(SotError::Refused(
            "say why: every SoT change needs --reason \"...\" (it becomes the commit message)"
                .into(),
        ));
    }
    check_reason(reason)?;
    let repo = SotRepo::open(root)?;
    let paths: Vec<PathBuf> = files.iter().map(|(p, _)| p.clone()).collect();
    repo.ensure_clean(&paths)?;
    let actor = Actor::resolve(&repo.repo, intent.actor.as_deref())?;
    let overrides: HashMap<PathBuf, String> = files.iter().cloned().collect();
    match load_with(root, &overrides) {
        Ok(_) => {}
        Err(SotError::Invalid(d)) => return Err(SotError::InvalidChange(d)),
        Err(e) => return Err(e),
    }
    let first_line = reason.lines().next().unwrap_or(reason);
    let message = format!("{what}: {first_line}\n\n{reason}\n\n{ACTOR_TRAILER}: {actor}\n");
    let changes: Vec<(PathBuf, Option<String>)> =
        files.into_iter().map(|(p, t)| (p, Some(t))).collect();
    let oid = repo.commit(&changes, &message, &actor)?;
    Ok(Committed {
        commit: oid.to_string(),
        files: paths,
        summary: format!("{what}: {first_line}"),
    })
}
