//! [`RolloutStore`] on SQLite: the unique partial index on active rollouts
//! is what keeps two operators from starting two rollouts of one agent.

use rusqlite::{OptionalExtension, params};

use super::{SqliteStore, bad_value};
use crate::fleet::event::now_ms;
use crate::store::rollouts::{
    JournalEntry, Measurement, NewRollout, Outcome, Rollout, RolloutStatus, RolloutStore,
};
use crate::store::{Result, StoreError};

const COLUMNS: &str = "id, agent, from_version, to_version, strategy, definition, target, nodes, \
    attempt, phase, step, weight, status, reason, requested, controller, lease_ms, created_by, \
    created_ms, updated_ms";

fn rollout_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Rollout> {
    let nodes: String = r.get(7)?;
    let status: String = r.get(12)?;
    Ok(Rollout {
        id: r.get(0)?,
        agent: r.get(1)?,
        from_version: r.get(2)?,
        to_version: r.get(3)?,
        strategy: r.get(4)?,
        definition: r.get(5)?,
        target: r.get(6)?,
        nodes: serde_json::from_str(&nodes).unwrap_or_default(),
        attempt: r.get(8)?,
        phase: r.get(9)?,
        step: r.get(10)?,
        weight: r.get(11)?,
        status: RolloutStatus::parse(&status)
            .ok_or_else(|| bad_value(12, "rollout status", &status))?,
        reason: r.get(13)?,
        requested: r.get(14)?,
        controller: r.get(15)?,
        lease_ms: r.get(16)?,
        created_by: r.get(17)?,
        created_ms: r.get(18)?,
        updated_ms: r.get(19)?,
    })
}

impl SqliteStore {
    fn conflict(&self, agent: &str, e: rusqlite::Error) -> StoreError {
        let unique = matches!(
            &e,
            rusqlite::Error::SqliteFailure(f, _)
                if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
        );
        if unique && let Ok(Some(active)) = self.active_rollout(agent) {
            return StoreError::ActiveRollout {
                agent: agent.to_string(),
                id: active.id,
                status: active.status.to_string(),
            };
        }
        StoreError::Sql(e)
    }
}

impl RolloutStore for SqliteStore {
    fn create_rollout(&mut self, n: &NewRollout) -> Result<Rollout> {
        let now = now_ms();
        let inserted = self.conn.execute(
            &format!(
                "INSERT INTO rollouts ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 1, 'start', 0, 0, \
                 'progressing', NULL, NULL, ?9, ?10, ?11, ?10, ?10)"
            ),
            params![
                n.id,
                n.agent,
                n.from_version,
                n.to_version,
                n.strategy,
                n.definition,
                n.target,
                serde_json::to_string(&n.nodes).unwrap_or_else(|_| "[]".into()),
                n.controller,
                now,
                n.created_by
            ],
        );
        if let Err(e) = inserted {
            return Err(self.conflict(&n.agent, e));
        }
        self.rollout(&n.id)?
            .ok_or_else(|| StoreError::Corrupt(format!("rollout {} vanished", n.id)))
    }

    fn rollout(&self, id: &str) -> Result<Option<Rollout>> {
        if id == "last" {
            return Ok(self.rollouts(1)?.into_iter().next());
        }
        if let Some(r) = self
            .conn
            .query_row(
                &format!("SELECT {COLUMNS} FROM rollouts WHERE id = ?1"),
                params![id],
                rollout_row,
            )
            .optional()?
        {
            return Ok(Some(r));
        }
        let mut st = self.conn.prepare(&format!(
            "SELECT {COLUMNS} FROM rollouts WHERE substr(id, 1, length(?1)) = ?1 LIMIT 2"
        ))?;
        let found: Vec<Rollout> = st
            .query_map(params![id], rollout_row)?
            .collect::<rusqlite::Result<_>>()?;
        Ok(if found.len() == 1 {
            found.into_iter().next()
        } else {
            None
        })
    }

    fn rollouts(&self, limit: usize) -> Result<Vec<Rollout>> {
        let mut st = self.conn.prepare(&format!(
            "SELECT {COLUMNS} FROM rollouts ORDER BY created_ms DESC, id DESC LIMIT ?1"
        ))?;
        let rows = st
            .query_map(params![limit as i64], rollout_row)?
            .collect::<rusqlite::Result<_>>()?;
        Ok(rows)
    }

    fn active_rollout(&self, agent: &str) -> Result<Option<Rollout>> {
        Ok(self
            .conn
            .query_row(
                &format!(
                    "SELECT {COLUMNS} FROM rollouts WHERE agent = ?1 AND status IN ('progressing', 'paused')"
                ),
                params![agent],
                rollout_row,
            )
            .optional()?)
    }

    fn save_rollout(&mut self, r: &Rollout) -> Result<()> {
        let saved = self.conn.execute(
            "UPDATE rollouts SET attempt = ?2, phase = ?3, step = ?4, weight = ?5, status = ?6, \
             reason = ?7, requested = ?8, updated_ms = ?9 WHERE id = ?1",
            params![
                r.id,
                r.attempt,
                r.phase,
                r.step,
                r.weight,
                r.status.as_str(),
                r.reason,
                r.requested,
                now_ms()
            ],
        );
        match saved {
            Ok(_) => Ok(()),
            Err(e) => Err(self.conflict(&r.agent, e)),
        }
    }

    fn claim_rollout(
        &mut self,
        id: &str,
        who: &str,
        lease_ms: i64,
        holder_dead: &dyn Fn(&str) -> bool,
    ) -> Result<bool> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let held: Option<(Option<String>, Option<i64>)> = tx
            .query_row(
                "SELECT controller, lease_ms FROM rollouts WHERE id = ?1",
                params![id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let Some((holder, lease)) = held else {
            return Ok(false);
        };
        let now = now_ms();
        let free = match holder.as_deref() {
            None => true,
            Some(h) if h == who => true,
            Some(h) => lease.is_none_or(|l| l < now) || holder_dead(h),
        };
        if free {
            tx.execute(
                "UPDATE rollouts SET controller = ?2, lease_ms = ?3 WHERE id = ?1",
                params![id, who, now + lease_ms],
            )?;
        }
        tx.commit()?;
        Ok(free)
    }

    fn release_rollout(&mut self, id: &str, who: &str) -> Result<()> {
        self.conn.execute(
            "UPDATE rollouts SET controller = NULL, lease_ms = NULL WHERE id = ?1 AND controller = ?2",
            params![id, who],
        )?;
        Ok(())
    }

    fn request_rollout(&mut self, id: &str, what: Option<&str>) -> Result<()> {
        self.conn.execute(
            "UPDATE rollouts SET requested = ?2, updated_ms = ?3 WHERE id = ?1",
            params![id, what, now_ms()],
        )?;
        Ok(())
    }

    fn append_journal(&mut self, id: &str, e: &JournalEntry) -> Result<i64> {
        // Immediate: a deferred transaction that reads and then writes is
        // refused at once (not retried) when another connection wrote in between.
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let seq: i64 = tx.query_row(
            "SELECT COALESCE(MAX(seq), 0) + 1 FROM rollout_journal WHERE rollout_id = ?1",
            params![id],
            |r| r.get(0),
        )?;
        tx.execute(
            "INSERT INTO rollout_journal (rollout_id, seq, at_ms, attempt, step, entry, action, node, version, ok, detail) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            params![id, seq, now_ms(), e.attempt, e.step, e.entry, e.action, e.node, e.version, e.ok, e.detail],
        )?;
        tx.commit()?;
        Ok(seq)
    }

    fn journal(&self, id: &str) -> Result<Vec<JournalEntry>> {
        let mut st = self.conn.prepare(
            "SELECT seq, at_ms, attempt, step, entry, action, node, version, ok, detail \
             FROM rollout_journal WHERE rollout_id = ?1 ORDER BY seq",
        )?;
        let rows = st
            .query_map(params![id], |r| {
                Ok(JournalEntry {
                    seq: r.get(0)?,
                    at_ms: r.get(1)?,
                    attempt: r.get(2)?,
                    step: r.get(3)?,
                    entry: r.get(4)?,
                    action: r.get(5)?,
                    node: r.get(6)?,
                    version: r.get(7)?,
                    ok: r.get(8)?,
                    detail: r.get(9)?,
                })
            })?
            .collect::<rusqlite::Result<_>>()?;
        Ok(rows)
    }

    fn record_measurement(&mut self, m: &Measurement) -> Result<()> {
        self.conn.execute(
            "INSERT INTO rollout_measurements (rollout_id, attempt, step, gate, seq, at_ms, version, outcome, metrics, message) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            params![m.rollout_id, m.attempt, m.step, m.gate, m.seq, m.at_ms, m.version,
                    m.outcome.as_str(), m.metrics.to_string(), m.message],
        )?;
        Ok(())
    }

    fn measurements(&self, id: &str) -> Result<Vec<Measurement>> {
        let mut st = self.conn.prepare(
            "SELECT rollout_id, attempt, step, gate, seq, at_ms, version, outcome, metrics, message \
             FROM rollout_measurements WHERE rollout_id = ?1 ORDER BY attempt, step, seq",
        )?;
        let rows = st
            .query_map(params![id], |r| {
                let outcome: String = r.get(7)?;
                let metrics: String = r.get(8)?;
                Ok(Measurement {
                    rollout_id: r.get(0)?,
                    attempt: r.get(1)?,
                    step: r.get(2)?,
                    gate: r.get(3)?,
                    seq: r.get(4)?,
                    at_ms: r.get(5)?,
                    version: r.get(6)?,
                    outcome: Outcome::parse(&outcome)
                        .ok_or_else(|| bad_value(7, "gate outcome", &outcome))?,
                    metrics: serde_json::from_str(&metrics).unwrap_or(serde_json::Value::Null),
                    message: r.get(9)?,
                })
            })?
            .collect::<rusqlite::Result<_>>()?;
        Ok(rows)
    }
}
