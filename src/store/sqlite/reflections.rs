//! [`ReflectionStore`] on SQLite.

use rusqlite::{OptionalExtension, params};

use super::SqliteStore;
use crate::store::reflections::{
    AnswerRecord, LessonUse, NewReflection, Reflection, ReflectionStore,
};
use crate::store::{Result, StoreError};

const COLUMNS: &str = "id, checklist, trigger, source, agent, description, created_ms, \
    answered_ms, answered_by, commit_id, ledger_hash";

fn reflection_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Reflection> {
    Ok(Reflection {
        id: r.get(0)?,
        checklist: r.get(1)?,
        trigger: r.get(2)?,
        source: r.get(3)?,
        agent: r.get(4)?,
        description: r.get(5)?,
        created_ms: r.get(6)?,
        answered_ms: r.get(7)?,
        answered_by: r.get(8)?,
        commit: r.get(9)?,
        ledger: r.get(10)?,
    })
}

impl ReflectionStore for SqliteStore {
    fn add_reflection(&mut self, new: &NewReflection) -> Result<Option<Reflection>> {
        let added = self.conn.execute(
            "INSERT INTO reflections (id, checklist, trigger, source, agent, description, created_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT (checklist, source) DO NOTHING",
            params![
                new.id,
                new.checklist,
                new.trigger,
                new.source,
                new.agent,
                new.description,
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
            .conn
            .query_row(
                &format!("SELECT {COLUMNS} FROM reflections WHERE id = ?1"),
                params![id],
                reflection_row,
            )
            .optional()?;
        if exact.is_some() || id.len() < 6 {
            return Ok(exact);
        }
        let mut st = self.conn.prepare(&format!(
            "SELECT {COLUMNS} FROM reflections WHERE substr(id, 1, ?2) = ?1 LIMIT 2"
        ))?;
        let mut found: Vec<Reflection> = st
            .query_map(params![id, id.len() as i64], reflection_row)?
            .collect::<rusqlite::Result<_>>()?;
        Ok(if found.len() == 1 { found.pop() } else { None })
    }

    fn reflections(&self, pending_only: bool) -> Result<Vec<Reflection>> {
        let mut st = self.conn.prepare(&format!(
            "SELECT {COLUMNS} FROM reflections
             WHERE (?1 = 0 OR answered_ms IS NULL) ORDER BY created_ms, id"
        ))?;
        let rows = st.query_map(params![pending_only], reflection_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn answer_reflection(&mut self, id: &str, a: &AnswerRecord) -> Result<()> {
        let changed = self.conn.execute(
            "UPDATE reflections SET answered_ms = ?2, answered_by = ?3, commit_id = ?4, ledger_hash = ?5
             WHERE id = ?1 AND answered_ms IS NULL",
            params![id, a.at_ms, a.by, a.commit, a.ledger],
        )?;
        if changed == 0 {
            return Err(StoreError::Corrupt(format!(
                "reflection {id} is not pending (answered already, or unknown)"
            )));
        }
        Ok(())
    }

    fn add_lesson_use(&mut self, u: &LessonUse) -> Result<bool> {
        let added = self.conn.execute(
            "INSERT INTO lesson_uses (lesson, evidence, at_ms, actor) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (lesson, evidence) DO NOTHING",
            params![u.lesson, u.evidence, u.at_ms, u.actor],
        )?;
        Ok(added == 1)
    }

    fn lesson_uses(&self, lesson: Option<&str>) -> Result<Vec<LessonUse>> {
        let mut st = self.conn.prepare(
            "SELECT lesson, evidence, at_ms, actor FROM lesson_uses
             WHERE (?1 IS NULL OR lesson = ?1) ORDER BY at_ms, lesson, evidence",
        )?;
        let rows = st.query_map(params![lesson], |r| {
            Ok(LessonUse {
                lesson: r.get(0)?,
                evidence: r.get(1)?,
                at_ms: r.get(2)?,
                actor: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}
