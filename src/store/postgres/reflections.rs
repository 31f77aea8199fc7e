//! [`ReflectionStore`] on PostgreSQL.

use postgres::Row;

use super::{PgStore, args, rows};
use crate::store::reflections::{
    AnswerRecord, LessonUse, NewReflection, Reflection, ReflectionStore,
};
use crate::store::{Result, StoreError};

const COLUMNS: &str = "id, checklist, trigger, source, agent, description, created_ms, \
    answered_ms, answered_by, commit_id, ledger_hash";

fn reflection_row(r: &Row) -> Result<Reflection> {
    Ok(Reflection {
        id: r.try_get(0)?,
        checklist: r.try_get(1)?,
        trigger: r.try_get(2)?,
        source: r.try_get(3)?,
        agent: r.try_get(4)?,
        description: r.try_get(5)?,
        created_ms: r.try_get(6)?,
        answered_ms: r.try_get(7)?,
        answered_by: r.try_get(8)?,
        commit: r.try_get(9)?,
        ledger: r.try_get(10)?,
    })
}

impl ReflectionStore for PgStore {
    fn add_reflection(&mut self, new: &NewReflection) -> Result<Option<Reflection>> {
        let added = self.execute(
            "INSERT INTO reflections (id, checklist, trigger, source, agent, description, created_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (checklist, source) DO NOTHING",
            args![
                new.id.clone(),
                new.checklist.clone(),
                new.trigger.clone(),
                new.source.clone(),
                new.agent.clone(),
                new.description.clone(),
                new.created_ms
            ],
        )?;
        if added == 0 {
            return Ok(None);
        }
        self.reflection(&new.id)
    }

    fn reflection(&self, id: &str) -> Result<Option<Reflection>> {
        let exact = self
            .query_opt(
                format!("SELECT {COLUMNS} FROM reflections WHERE id = $1"),
                args![id.to_string()],
            )?
            .map(|r| reflection_row(&r))
            .transpose()?;
        if exact.is_some() || id.len() < 6 {
            return Ok(exact);
        }
        let mut found = rows(
            self.query(
                format!("SELECT {COLUMNS} FROM reflections WHERE substr(id, 1, length($1::text)) = $1 LIMIT 2"),
                args![id.to_string()],
            )?,
            reflection_row,
        )?;
        Ok(if found.len() == 1 { found.pop() } else { None })
    }

    fn reflections(&self, pending_only: bool) -> Result<Vec<Reflection>> {
        rows(
            self.query(
                format!(
                    "SELECT {COLUMNS} FROM reflections
                     WHERE (NOT $1 OR answered_ms IS NULL) ORDER BY created_ms, id"
                ),
                args![pending_only],
            )?,
            reflection_row,
        )
    }

    fn answer_reflection(&mut self, id: &str, a: &AnswerRecord) -> Result<()> {
        let changed = self.execute(
            "UPDATE reflections SET answered_ms = $2, answered_by = $3, commit_id = $4, ledger_hash = $5
             WHERE id = $1 AND answered_ms IS NULL",
            args![
                id.to_string(),
                a.at_ms,
                a.by.clone(),
                a.commit.clone(),
                a.ledger.clone()
            ],
        )?;
        if changed == 0 {
            return Err(StoreError::Corrupt(format!(
                "reflection {id} is not pending (answered already, or unknown)"
            )));
        }
        Ok(())
    }

    fn add_lesson_use(&mut self, u: &LessonUse) -> Result<bool> {
        let added = self.execute(
            "INSERT INTO lesson_uses (lesson, evidence, at_ms, actor) VALUES ($1, $2, $3, $4)
             ON CONFLICT (lesson, evidence) DO NOTHING",
            args![
                u.lesson.clone(),
                u.evidence.clone(),
                u.at_ms,
                u.actor.clone()
            ],
        )?;
        Ok(added == 1)
    }

    fn lesson_uses(&self, lesson: Option<&str>) -> Result<Vec<LessonUse>> {
        rows(
            self.query(
                "SELECT lesson, evidence, at_ms, actor FROM lesson_uses
                 WHERE ($1::text IS NULL OR lesson = $1) ORDER BY at_ms, lesson, evidence",
                args![lesson.map(str::to_string)],
            )?,
            |r| {
                Ok(LessonUse {
                    lesson: r.try_get(0)?,
                    evidence: r.try_get(1)?,
                    at_ms: r.try_get(2)?,
                    actor: r.try_get(3)?,
                })
            },
        )
    }
}
