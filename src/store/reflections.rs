//! What the store keeps of reflection: the reflections operations left
//! pending (and, once answered, where the answer was committed and which
//! ledger entry records it), and each evidenced use of a lesson. The
//! answers and the lessons themselves live in the SoT.

use serde::Serialize;

use super::Result;

/// A reflection an operation triggered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reflection {
    pub id: String,
    pub checklist: String,
    /// The trigger's field (`rollout_aborted`, `failed_nodes`, …).
    pub trigger: String,
    /// The operation, as evidence: `run:ID` or `rollout:ID`.
    pub source: String,
    pub agent: Option<String>,
    pub description: String,
    pub created_ms: i64,
    pub answered_ms: Option<i64>,
    pub answered_by: Option<String>,
    /// The SoT commit holding the answer.
    pub commit: Option<String>,
    /// The ledger entry recording the answer.
    pub ledger: Option<String>,
}

impl Reflection {
    pub fn is_pending(&self) -> bool {
        self.answered_ms.is_none()
    }
}

/// What [`ReflectionStore::add_reflection`] records.
#[derive(Debug, Clone)]
pub struct NewReflection {
    pub id: String,
    pub checklist: String,
    pub trigger: String,
    pub source: String,
    pub agent: Option<String>,
    pub description: String,
    pub created_ms: i64,
}

/// Where an answer went.
#[derive(Debug, Clone)]
pub struct AnswerRecord {
    pub by: String,
    pub at_ms: i64,
    pub commit: String,
    pub ledger: String,
}

/// One use of a lesson: an operation that applied it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LessonUse {
    pub lesson: String,
    /// `run:ID`, `rollout:ID` or `reflection:ID`.
    pub evidence: String,
    pub at_ms: i64,
    pub actor: String,
}

pub trait ReflectionStore: Send {
    /// Record a pending reflection; `None` when this checklist already has
    /// one for this operation.
    fn add_reflection(&mut self, new: &NewReflection) -> Result<Option<Reflection>>;
    /// By id or unique id prefix.
    fn reflection(&self, id: &str) -> Result<Option<Reflection>>;
    /// Oldest first.
    fn reflections(&self, pending_only: bool) -> Result<Vec<Reflection>>;
    /// Mark it answered; refused when it already was.
    fn answer_reflection(&mut self, id: &str, answer: &AnswerRecord) -> Result<()>;
    /// Record a use; false when this evidence was already counted for it.
    fn add_lesson_use(&mut self, u: &LessonUse) -> Result<bool>;
    /// Every use (of one lesson, with `lesson`), oldest first.
    fn lesson_uses(&self, lesson: Option<&str>) -> Result<Vec<LessonUse>>;
}
