//! Typed SoT changes (`node add`, `agent tag`, …): validate the SoT as it would
//! be after the change, then write and commit it as one git commit.

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use toml_edit::Value;

use super::edit::{self, Kind};
use super::git::{ACTOR_TRAILER, Actor, SotRepo, is_maestro_trailer};
use super::lock::SotLock;
use super::{
    AGENTS_FILE, NODES_DIR, NODES_FILE, ReasonProblem, Result, Sot, SotError, load, load_with,
};

/// Why and by whom: every change needs both.
#[derive(Debug, Clone)]
pub struct Intent {
    pub reason: String,
    /// `Name <email>`; `None` takes the repository's git identity.
    pub actor: Option<String>,
    /// How long to wait for another writer's change to finish.
    pub wait: Duration,
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
    let file = match &node.file {
        Some(f) => nodes_file(f)?,
        None => PathBuf::from(NODES_FILE),
    };
    let what = format!("node add {}", node.name);
    let mut tx = Transaction::begin(root, intent, &what)?;
    let sot = tx.load()?;
    if let Some(existing) = sot.node(&node.name) {
        return Err(SotError::Exists {
            kind: "node",
            name: node.name.clone(),
            file: Some(existing.file.clone()),
        });
    }
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
    let new = edit::add(&tx.read(&file)?, Kind::Node, &node.name, fields)?;
    tx.commit(vec![(file, new)], &what)
}

pub fn remove_node(root: &Path, name: &str, intent: &Intent) -> Result<Committed> {
    let what = format!("node remove {name}");
    let mut tx = Transaction::begin(root, intent, &what)?;
    let file = node_file(&tx.load()?, name)?;
    let new = edit::remove(&tx.read(&file)?, Kind::Node, name)?;
    tx.commit(vec![(file, new)], &what)
}

pub fn tag_node(
    root: &Path,
    name: &str,
    set: &[(String, String)],
    unset: &[String],
    intent: &Intent,
) -> Result<Committed> {
    let what = format!("node tag {name} {}", tag_summary(set, unset));
    let mut tx = Transaction::begin(root, intent, &what)?;
    let file = node_file(&tx.load()?, name)?;
    let new = edit::retag(&tx.read(&file)?, Kind::Node, name, set, unset)?;
    tx.commit(vec![(file, new)], &what)
}

pub fn add_agent(root: &Path, agent: &NewAgent, intent: &Intent) -> Result<Committed> {
    let what = format!("agent add {}", agent.name);
    let mut tx = Transaction::begin(root, intent, &what)?;
    if tx.load()?.agents.contains_key(&agent.name) {
        return Err(SotError::Exists {
            kind: "agent",
            name: agent.name.clone(),
            file: None,
        });
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
    let new = edit::add(&tx.read(&file)?, Kind::Agent, &agent.name, fields)?;
    tx.commit(vec![(file, new)], &what)
}

pub fn remove_agent(root: &Path, name: &str, intent: &Intent) -> Result<Committed> {
    let what = format!("agent remove {name}");
    let mut tx = Transaction::begin(root, intent, &what)?;
    agent_exists(&tx.load()?, name)?;
    let file = PathBuf::from(AGENTS_FILE);
    let new = edit::remove(&tx.read(&file)?, Kind::Agent, name)?;
    tx.commit(vec![(file, new)], &what)
}

pub fn tag_agent(
    root: &Path,
    name: &str,
    set: &[(String, String)],
    unset: &[String],
    intent: &Intent,
) -> Result<Committed> {
    let what = format!("agent tag {name} {}", tag_summary(set, unset));
    let mut tx = Transaction::begin(root, intent, &what)?;
    agent_exists(&tx.load()?, name)?;
    let file = PathBuf::from(AGENTS_FILE);
    let new = edit::retag(&tx.read(&file)?, Kind::Agent, name, set, unset)?;
    tx.commit(vec![(file, new)], &what)
}

/// `--file` of `node add`: only a file the loader reads (`nodes.toml` or
/// `nodes/NAME.toml`), named relative to the SoT. Anything else would be
/// written and committed but never loaded, or written outside the SoT.
fn nodes_file(file: &Path) -> Result<PathBuf> {
    let parts: Vec<Component<'_>> = file
        .components()
        .filter(|c| !matches!(c, Component::CurDir))
        .collect();
    let ok = match parts.as_slice() {
        [Component::Normal(f)] => *f == NODES_FILE,
        [Component::Normal(d), Component::Normal(f)] => {
            *d == NODES_DIR
                && Path::new(f).extension().is_some_and(|x| x == "toml")
                && Path::new(f).file_stem().is_some_and(|s| !s.is_empty())
        }
        _ => false,
    };
    if ok {
        Ok(parts.iter().collect())
    } else {
        Err(SotError::NotANodesFile(file.to_path_buf()))
    }
}

fn node_file(sot: &Sot, name: &str) -> Result<PathBuf> {
    match sot.node(name) {
        Some(n) => Ok(n.file.clone()),
        None => Err(SotError::Unknown {
            kind: "node",
            name: name.to_string(),
            suggestion: crate::diag::suggest(name, sot.nodes.iter().map(|n| n.name.as_str()))
                .map(str::to_string),
        }),
    }
}

fn agent_exists(sot: &Sot, name: &str) -> Result<()> {
    if sot.agents.contains_key(name) {
        return Ok(());
    }
    Err(SotError::Unknown {
        kind: "agent",
        name: name.to_string(),
        suggestion: crate::diag::suggest(name, sot.agents.keys().map(String::as_str))
            .map(str::to_string),
    })
}

fn tag_summary(set: &[(String, String)], unset: &[String]) -> String {
    set.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .chain(unset.iter().map(|k| format!("-{k}")))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The reason becomes the commit message's body: it may not carry control
/// characters (other than newlines and tabs) nor a line that reads as one of
/// maestro's own trailers, which would let a reason forge who made a change.
fn check_reason(reason: &str) -> Result<()> {
    if reason
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return Err(SotError::BadReason(ReasonProblem::ControlCharacter));
    }
    if let Some(line) = reason.lines().find(|l| is_maestro_trailer(l)) {
        return Err(SotError::BadReason(ReasonProblem::TrailerLine(
            line.trim().to_string(),
        )));
    }
    Ok(())
}

/// A change in progress: its reason and actor checked, the SoT's write lock
/// held (so the SoT it reads cannot change under it), and what it read.
/// Every SoT write goes through one (the kill switch and freeze windows
/// write theirs from their own modules).
pub(crate) struct Transaction {
    root: PathBuf,
    repo: SotRepo,
    actor: Actor,
    reason: String,
    /// Files read for the change and their bytes then (`None`: absent).
    read: Vec<(PathBuf, Option<Vec<u8>>)>,
    _lock: SotLock,
}

impl Transaction {
    /// Check who and why, then take the lock: everything read after this is
    /// what the commit will be based on.
    pub(crate) fn begin(root: &Path, intent: &Intent, what: &str) -> Result<Transaction> {
        let reason = intent.reason.trim();
        if reason.is_empty() {
            return Err(SotError::BadReason(ReasonProblem::Missing));
        }
        check_reason(reason)?;
        let repo = SotRepo::open(root)?;
        let actor = Actor::resolve(&repo.repo, intent.actor.as_deref())?;
        let lock = SotLock::acquire(repo.repo.path(), what, intent.wait)?;
        Ok(Transaction {
            root: root.to_path_buf(),
            repo,
            actor,
            reason: reason.to_string(),
            read: Vec::new(),
            _lock: lock,
        })
    }

    /// Who makes the change (recorded in kill-switch and freeze entries too).
    pub(crate) fn actor(&self) -> &Actor {
        &self.actor
    }

    pub(crate) fn load(&self) -> Result<Sot> {
        load(&self.root)
    }

    /// A SoT file's text (empty when it does not exist yet), remembered so
    /// the commit can refuse if it changes before the write.
    pub(crate) fn read(&mut self, rel: &Path) -> Result<String> {
        let path = self.root.join(rel);
        let bytes = match std::fs::read(&path) {
            Ok(b) => Some(b),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(source) => return Err(SotError::Io { path, source }),
        };
        let text = match &bytes {
            Some(b) => String::from_utf8(b.clone()).map_err(|_| {
                SotError::Refused(format!(
                    "{} is not valid UTF-8; fix it first (`maestro sot check` shows where)",
                    path.display()
                ))
            })?,
            None => String::new(),
        };
        self.read.push((rel.to_path_buf(), bytes));
        Ok(text)
    }

    /// Check cleanliness, validate the result, then write and commit.
    pub(crate) fn commit(self, files: Vec<(PathBuf, String)>, what: &str) -> Result<Committed> {
        let paths: Vec<PathBuf> = files.iter().map(|(p, _)| p.clone()).collect();
        self.repo.ensure_clean(&paths)?;
        let overrides: HashMap<PathBuf, String> = files.iter().cloned().collect();
        match load_with(&self.root, &overrides) {
            Ok(_) => {}
            Err(SotError::Invalid(d)) => return Err(SotError::InvalidChange(d)),
            Err(e) => return Err(e),
        }
        // Nothing that looks like a credential is committed.
        let secrets = super::secrets::scan_files(&self.root, &files);
        if !secrets.is_empty() {
            return Err(SotError::InvalidChange(secrets));
        }
        // Writers that go through maestro wait for the lock; one that does not
        // (an editor, a script) must not have its edit overwritten either.
        for (rel, then) in &self.read {
            if std::fs::read(self.root.join(rel)).ok() != *then {
                return Err(SotError::ChangedUnderneath(self.root.join(rel)));
            }
        }
        let reason = &self.reason;
        let first_line = reason.lines().next().unwrap_or(reason);
        let message = format!(
            "{what}: {first_line}\n\n{reason}\n\n{ACTOR_TRAILER}: {}\n",
            self.actor
        );
        let changes: Vec<(PathBuf, Option<String>)> =
            files.into_iter().map(|(p, t)| (p, Some(t))).collect();
        let oid = self.repo.commit(&changes, &message, &self.actor)?;
        Ok(Committed {
            commit: oid.to_string(),
            files: paths,
            summary: format!("{what}: {first_line}"),
        })
    }
}

/// Append a signed ledger checkpoint to `ledger/checkpoints.jsonl` (and
/// add this controller's ledger key to the list in `ledger/key.pub` when it
/// is not there yet: each controller of a team signs with its own key):
/// one commit, through the same checks as every SoT write.
pub fn commit_ledger(
    root: &Path,
    intent: &Intent,
    key: &crate::ledger::LedgerKey,
    checkpoint: &crate::ledger::Checkpoint,
) -> Result<Committed> {
    let io = |e: crate::ledger::LedgerError| SotError::Refused(e.to_string());
    let mut tx = Transaction::begin(root, intent, "ledger")?;
    let checkpoints = PathBuf::from(crate::ledger::CHECKPOINTS_FILE);
    let line = serde_json::to_string(checkpoint)
        .map_err(|e| SotError::Refused(format!("encoding the checkpoint: {e}")))?;
    let text = with_line(tx.read(&checkpoints)?, &line);
    let mut files = vec![(checkpoints, text)];
    let public = PathBuf::from(crate::ledger::PUBLIC_KEY_FILE);
    let recorded = tx.read(&public)?;
    // A file that does not parse is refused rather than appended to: every
    // checkpoint's verification reads it.
    let listed =
        crate::ledger::checkpoint::parse_public_keys(&root.join(&public), &recorded).map_err(io)?;
    if !listed
        .iter()
        .any(|k| k.key_data() == key.public_key().key_data())
    {
        let ours = key.public_openssh().map_err(io)?;
        files.push((public, with_line(recorded, ours.trim())));
    }
    tx.commit(files, "ledger")
}

/// `text` with `line` appended as its last line.
fn with_line(mut text: String, line: &str) -> String {
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(line);
    text.push('\n');
    text
}
