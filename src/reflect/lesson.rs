//! Lessons (`lessons.toml`, `[lesson.ID]`): what a reflection learned, in
//! short-term memory (STM) until it has been applied, with evidence, often
//! enough to be promoted to long-term memory (LTM). An LTM lesson is shown
//! in the confirmation of every operation in its scope.
//!
//! A use is an operation that cited the lesson (`--lesson ID` on a job, or
//! `lesson:ID` in a reflection's answer), counted once per operation and
//! only while the operation's evidence still resolves (the run or rollout
//! is in the store).

use std::path::{Path, PathBuf};

use serde::Serialize;
use toml_edit::Value;

use super::{LESSONS_FILE, ReflectError, Result};
use crate::identity::Actor;
use crate::sot::change::{Committed, Intent, Transaction};
use crate::sot::model::Sot;
use crate::store::{LessonUse, ReflectionStore};

/// Evidenced uses a lesson needs before it can be promoted.
pub const USES_TO_PROMOTE: usize = 3;
/// A lesson nobody applied for this long is flagged for retirement.
pub const RETIRE_AFTER_DAYS: i64 = 90;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Memory {
    /// Short-term: recorded, not yet proven by use.
    Stm,
    /// Long-term: shown with every operation in its scope.
    Ltm,
}

impl Memory {
    pub fn as_str(self) -> &'static str {
        match self {
            Memory::Stm => "stm",
            Memory::Ltm => "ltm",
        }
    }
}

/// What a lesson is about: every field given must match an operation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct LessonScope {
    pub agent: Option<String>,
    pub group: Option<String>,
    /// A kind of operation, as policies name it (`deploy`, `exec`, `kill`).
    pub operation: Option<String>,
}

impl LessonScope {
    pub fn is_empty(&self) -> bool {
        self.agent.is_none() && self.group.is_none() && self.operation.is_none()
    }

    /// "agent fleet-doctor, deploy" — as confirmations say it.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(a) = &self.agent {
            parts.push(format!("agent {a}"));
        }
        if let Some(g) = &self.group {
            parts.push(format!("group {g}"));
        }
        if let Some(o) = &self.operation {
            parts.push(format!("{o} jobs"));
        }
        parts.join(", ")
    }

    /// Whether an operation of `action` about `agents` on `nodes` is in scope.
    pub fn covers(&self, sot: &Sot, action: &str, agents: &[String], nodes: &[String]) -> bool {
        self.operation.as_deref().is_none_or(|o| o == action)
            && self
                .agent
                .as_ref()
                .is_none_or(|a| agents.iter().any(|x| x == a))
            && self.group.as_ref().is_none_or(|g| {
                nodes
                    .iter()
                    .any(|n| sot.node(n).is_some_and(|n| n.groups.contains(g)))
            })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Promotion {
    pub by: String,
    pub at: String,
    /// Evidenced uses when it was promoted.
    pub uses: usize,
}

/// A lesson of `lessons.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Lesson {
    pub id: String,
    pub text: String,
    pub memory: Memory,
    pub scope: LessonScope,
    /// What it was learned from (`rollout:…`, `run:…`, `url:…`).
    pub evidence: Vec<String>,
    /// The reflection that recorded it.
    pub reflection: Option<String>,
    pub by: Option<String>,
    /// RFC 3339, when it was recorded.
    pub created: Option<String>,
    pub promoted: Option<Promotion>,
}

/// A lesson with what the store knows of its uses.
#[derive(Debug, Clone, Serialize)]
pub struct LessonStatus {
    #[serde(flatten)]
    pub lesson: Lesson,
    /// Uses whose operation is still in the store.
    pub uses: usize,
    /// Uses recorded whose evidence no longer resolves.
    pub unresolved: usize,
    pub last_used_ms: Option<i64>,
    pub promotable: bool,
    /// Not applied in [`RETIRE_AFTER_DAYS`] (counted from its creation when
    /// it was never applied).
    pub retire: bool,
}

/// Whether `evidence` (`run:ID`, `rollout:ID`, `reflection:ID`) is in the store.
fn resolves(store: &dyn crate::store::Store, evidence: &str) -> bool {
    match evidence.split_once(':') {
        Some(("run", id)) => store.run(id).ok().flatten().is_some(),
        Some(("rollout", id)) => store.rollout(id).ok().flatten().is_some(),
        Some(("reflection", id)) => store.reflection(id).ok().flatten().is_some(),
        _ => false,
    }
}

fn created_ms(l: &Lesson) -> Option<i64> {
    l.created
        .as_deref()
        .and_then(|c| chrono::DateTime::parse_from_rfc3339(c).ok())
        .map(|t| t.timestamp_millis())
}

/// Every lesson of the SoT with its uses, in id order.
pub fn statuses(
    sot: &Sot,
    store: &dyn crate::store::Store,
    now_ms: i64,
) -> Result<Vec<LessonStatus>> {
    let uses = store.lesson_uses(None)?;
    Ok(sot
        .lessons
        .values()
        .map(|l| status_of(l, &uses, store, now_ms))
        .collect())
}

fn status_of(
    l: &Lesson,
    uses: &[LessonUse],
    store: &dyn crate::store::Store,
    now_ms: i64,
) -> LessonStatus {
    let mine: Vec<&LessonUse> = uses.iter().filter(|u| u.lesson == l.id).collect();
    let good = mine.iter().filter(|u| resolves(store, &u.evidence)).count();
    let last_used_ms = mine.iter().map(|u| u.at_ms).max();
    let since = last_used_ms.or_else(|| created_ms(l));
    let retire = since.is_some_and(|t| now_ms - t > RETIRE_AFTER_DAYS * 86_400_000);
    LessonStatus {
        lesson: l.clone(),
        uses: good,
        unresolved: mine.len() - good,
        last_used_ms,
        promotable: l.memory == Memory::Stm && good >= USES_TO_PROMOTE,
        retire,
    }
}

/// The LTM lessons in scope of an operation: what its confirmation shows.
pub fn in_scope<'s>(
    sot: &'s Sot,
    action: &str,
    agents: &[String],
    nodes: &[String],
) -> Vec<&'s Lesson> {
    sot.lessons
        .values()
        .filter(|l| l.memory == Memory::Ltm && l.scope.covers(sot, action, agents, nodes))
        .collect()
}

/// The lines a confirmation shows for `lessons` (the CLI prints the same):
/// `lesson for agent fleet-doctor, deploy jobs (ID): TEXT`.
pub fn confirmation_lines(lessons: &[&Lesson]) -> Vec<String> {
    lessons
        .iter()
        .map(|l| format!("lesson for {} ({}): {}", l.scope.describe(), l.id, l.text))
        .collect()
}

/// Check that every lesson `ids` names exists (before a job runs).
pub fn check_cited(sot: &Sot, ids: &[String]) -> std::result::Result<(), String> {
    let unknown: Vec<String> = ids
        .iter()
        .filter(|id| !sot.lessons.contains_key(*id))
        .map(|id| {
            let hint = crate::diag::suggest(id, sot.lessons.keys().map(String::as_str))
                .map(|s| format!(" (did you mean `{s}`?)"))
                .unwrap_or_default();
            format!("no lesson `{id}` in {LESSONS_FILE}{hint}")
        })
        .collect();
    if unknown.is_empty() {
        Ok(())
    } else {
        Err(unknown.join("\n"))
    }
}

/// Record that the operation `evidence` applied `lessons`.
pub fn record_uses(
    store: &mut dyn ReflectionStore,
    lessons: &[String],
    evidence: &str,
    actor: &str,
    at_ms: i64,
) -> Result<usize> {
    let mut added = 0;
    for l in lessons {
        if store.add_lesson_use(&LessonUse {
            lesson: l.clone(),
            evidence: evidence.to_string(),
            at_ms,
            actor: actor.to_string(),
        })? {
            added += 1;
        }
    }
    Ok(added)
}

/// What promoting did.
#[derive(Debug, Clone, Serialize)]
pub struct Promoted {
    pub lesson: String,
    pub uses: usize,
    pub commit: String,
    pub ledger: String,
}

/// `maestro lesson promote ID`: STM → LTM, once it has
/// [`USES_TO_PROMOTE`] evidenced uses, by a proven person whom the
/// policies allow (action `promote`, on the nodes of the lesson's scope),
/// as one reviewed commit recorded in the ledger.
pub fn promote(root: &Path, db: &Path, id: &str, actor: &Actor, reason: &str) -> Result<Promoted> {
    let sot = crate::sot::load(root)?;
    let Some(lesson) = sot.lessons.get(id) else {
        return Err(ReflectError::Invalid(vec![
            check_cited(&sot, &[id.to_string()]).unwrap_err(),
        ]));
    };
    let Actor::Person { name, .. } = actor else {
        return Err(ReflectError::Denied(format!(
            "promoting a lesson needs a proven person, and {} is only a typed name: sign in with MAESTRO_IDENTITY=KEYFILE or a key in your ssh-agent",
            actor.name()
        )));
    };
    if lesson.memory == Memory::Ltm {
        return Err(ReflectError::Invalid(vec![format!(
            "lesson `{id}` is in long-term memory already"
        )]));
    }
    let store = crate::store::open_path(db)?;
    let status = status_of(
        lesson,
        &store.lesson_uses(Some(id))?,
        &*store,
        super::now_ms(),
    );
    if status.uses < USES_TO_PROMOTE {
        return Err(ReflectError::Invalid(vec![format!(
            "lesson `{id}` has {} evidenced use{} of the {USES_TO_PROMOTE} it needs before promotion{}: cite it with `--lesson {id}` on the operations that apply it",
            status.uses,
            if status.uses == 1 { "" } else { "s" },
            if status.unresolved > 0 {
                format!(
                    " ({} more whose runs are no longer in the store)",
                    status.unresolved
                )
            } else {
                String::new()
            }
        )]));
    }
    check_policy(&sot, lesson, actor)?;
    let person = sot
        .people
        .get(name)
        .ok_or_else(|| ReflectError::Denied(format!("{name} is not in people.toml")))?;
    let intent = Intent {
        reason: reason.to_string(),
        actor: Some(format!("{} <{}>", person.name, person.email)),
        wait: std::time::Duration::from_secs(10),
    };
    let what = format!("lesson promote {id}");
    let mut tx = Transaction::begin(root, &intent, &what)?;
    // Under the SoT's lock: another promotion may have landed since.
    if tx
        .load()?
        .lessons
        .get(id)
        .is_some_and(|l| l.memory == Memory::Ltm)
    {
        return Err(ReflectError::Invalid(vec![format!(
            "lesson `{id}` was promoted meanwhile"
        )]));
    }
    let file = PathBuf::from(LESSONS_FILE);
    let text = tx.read(&file)?;
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let new = set_fields(
        &text,
        id,
        vec![
            ("memory", Value::from("ltm")),
            ("promoted_by", Value::from(name.as_str())),
            ("promoted", Value::from(now.as_str())),
            ("uses_at_promotion", Value::from(status.uses as i64)),
        ],
    )?;
    let committed: Committed = tx.commit(vec![(file, new)], &what)?;
    let ledger = super::answer::record_in_ledger(
        db,
        actor,
        crate::ledger::Kind::Lesson,
        "promote",
        id,
        &format!("lesson promote {id} ({} uses)", status.uses),
        &committed.commit,
        Default::default(),
    )?;
    Ok(Promoted {
        lesson: id.to_string(),
        uses: status.uses,
        commit: committed.commit,
        ledger,
    })
}

/// The policies on a promotion: action `promote` on the nodes of the
/// lesson's group (every node when it names none), about its agent.
pub(crate) fn check_policy(sot: &Sot, lesson: &Lesson, actor: &Actor) -> Result<()> {
    let Some(policies) = sot.policies.as_deref() else {
        return Ok(());
    };
    let nodes: Vec<String> = sot
        .nodes
        .iter()
        .filter(|n| {
            lesson
                .scope
                .group
                .as_ref()
                .is_none_or(|g| n.groups.contains(g))
        })
        .map(|n| n.name.clone())
        .collect();
    let question = crate::policy::Question {
        actor,
        action: "promote",
        agent: lesson.scope.agent.as_deref(),
        nodes: &nodes,
        context: crate::policy::JobContext::now(nodes.len(), true),
    };
    let answer = policies
        .decide(&question, sot)
        .map_err(|e| ReflectError::Denied(format!("the policies could not decide: {e}")))?;
    if answer.allowed() {
        return Ok(());
    }
    let reasons: Vec<String> = answer
        .denied()
        .take(3)
        .map(|n| format!("{}: {}", n.node, n.reason(policies)))
        .collect();
    Err(ReflectError::Denied(format!(
        "denied by policy: {} may not promote lesson `{}`\n  {}",
        actor.label(),
        lesson.id,
        reasons.join("\n  ")
    )))
}

/// `[lesson.ID]`'s fields set in `text`, keeping the rest of the file.
fn set_fields(text: &str, id: &str, fields: Vec<(&str, Value)>) -> Result<String> {
    let mut doc: toml_edit::DocumentMut = text
        .parse()
        .map_err(|e| ReflectError::Invalid(vec![format!("{LESSONS_FILE}: {e}")]))?;
    let Some(table) = doc
        .get_mut("lesson")
        .and_then(|l| l.get_mut(id))
        .and_then(|t| t.as_table_like_mut())
    else {
        return Err(ReflectError::Invalid(vec![format!(
            "{LESSONS_FILE} has no [lesson.{id}]"
        )]));
    };
    for (k, v) in fields {
        table.insert(k, toml_edit::Item::Value(v));
    }
    Ok(doc.to_string())
}
