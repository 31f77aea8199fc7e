//! Names used in one place that must be defined in another (a node's groups,
//! an agent's model and version, a profile's playbooks), resolved once every
//! file is read, with a "did you mean" for near misses.

use std::collections::BTreeMap;
use std::ops::Range;

use super::{GROUPS_FILE, Loader, MODELS_FILE};
use crate::diag::{Code, suggest};
use crate::sot::model::*;
/// Where a definition was made, to point at the first one when a name repeats.
#[derive(Clone)]
pub(super) struct Origin {
    pub(super) file: usize,
    pub(super) span: Range<usize>,
}

/// A name used somewhere that must resolve to a definition.
pub(super) struct Reference {
    pub(super) kind: RefKind,
    pub(super) name: String,
    pub(super) origin: Origin,
    /// For agent versions: the agent the version must belong to.
    pub(super) agent: Option<String>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum RefKind {
    Node,
    Group,
    Model,
    Profile,
    Playbook,
    Baseline,
    AgentVersion,
    Agent,
    Strategy,
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
            RefKind::Agent => "agent",
            RefKind::Strategy => "rollout strategy",
        }
    }
}

impl Loader<'_> {
    pub(super) fn location(&self, o: &Origin) -> String {
        let d = self.files[o.file].diagnostic(Code::Duplicate, o.span.clone(), String::new());
        format!("{}:{}:{}", d.file.display(), d.line, d.col)
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn resolve(
        &mut self,
        nodes: &[Node],
        groups: &BTreeMap<String, Group>,
        models: &BTreeMap<String, Model>,
        agents: &BTreeMap<String, Agent>,
        profiles: &BTreeMap<String, Profile>,
        playbooks: &[String],
        baselines: &[String],
        rollouts: &crate::rollout::spec::Definitions,
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
                RefKind::Agent => (
                    agents.contains_key(&r.name),
                    agents.keys().map(String::as_str).collect(),
                ),
                RefKind::Strategy => (
                    rollouts.strategies.contains_key(&r.name),
                    rollouts.strategies.keys().map(String::as_str).collect(),
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
                RefKind::Agent => super::AGENTS_FILE.to_string(),
                RefKind::Strategy => format!("[strategy.NAME] in {}", crate::rollout::FILE),
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
