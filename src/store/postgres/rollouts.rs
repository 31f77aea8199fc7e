//! [`RolloutStore`] on PostgreSQL: the unique partial index on active
//! rollouts keeps two controllers from starting two rollouts of one agent.

use postgres::Row;
use postgres::error::SqlState;

use super::{PgStore, args, bad_value, rows};
use crate::fleet::event::now_ms;
use crate::store::rollouts::{
    JournalEntry, Measurement, NewRollout, Outcome, Rollout, RolloutStatus, RolloutStore,
};
use crate::store::{Result, StoreError};

const COLUMNS: &str = "id, agent, from_version, to_version, strategy, definition, target, nodes, \
    attempt, phase, step, weight, status, reason, requested, controller, lease_ms, created_by, \
    created_ms, updated_ms";

fn small<T: TryFrom<i64>>(r: &Row, i: usize, what: &str) -> Result<T> {
    let v: i64 = r.try_get(i)?;
    T::try_from(v).map_err(|_| bad_value(what, &v.to_string()))
}

fn rollout_row(r: &Row) -> Result<Rollout> {
    let nodes: String = r.try_get(7)?;
    let status: String = r.try_get(12)?;
    Ok(Rollout {
        id: r.try_get(0)?,
        agent: r.try_get(1)?,
        from_version: r.try_get(2)?,
        to_version: r.try_get(3)?,
        strategy: r.try_get(4)?,
        definition: r.try_get(5)?,
        target: r.try_get(6)?,
        nodes: serde_json::from_str(&nodes).unwrap_or_default(),
        attempt: small(r, 8, "rollout attempt")?,
        phase: r.try_get(9)?,
        step: small(r, 10, "rollout step")?,
        weight: small(r, 11, "rollout weight")?,
        status: RolloutStatus::parse(&status)
            .ok_or_else(|| bad_value("rollout status", &status))?,
        reason: r.try_get(13)?,
        requested: r.try_get(14)?,
        controller: r.try_get(15)?,
        lease_ms: r.try_get(16)?,
        created_by: r.try_get(17)?,
        created_ms: r.try_get(18)?,
        updated_ms: r.try_get(19)?,
    })
}

impl PgStore {
    fn conflict(&self, agent: &str, e: StoreError) -> StoreError {
        let unique = matches!(
            &e,
            StoreError::Postgres(pg) if pg.code() == Some(&SqlState::UNIQUE_VIOLATION)
        );
        if unique && let Ok(Some(active)) = self.active_rollout(agent) {
            return StoreError::ActiveRollout {
                agent: agent.to_string(),
                id: active.id,
                status: active.status.to_string(),
            };
        }
        e
    }
}

impl RolloutStore for PgStore {
    fn create_rollout(&mut self, n: &NewRollout) -> Result<Rollout> {
        let now = now_ms();
        let inserted = self.execute(
            format!(
                "INSERT INTO rollouts ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 1, 'start', 0, 0, \
                 'progressing', NULL, NULL, $9, $10, $11, $10, $10)"
            ),
            args![
                n.id.clone(),
                n.agent.clone(),
                n.from_version.clone(),
                n.to_version.clone(),
                n.strategy.clone(),
                n.definition.clone(),
                n.target.clone(),
                serde_json::to_string(&n.nodes).unwrap_or_else(|_| "[]".into()),
                n.controller.clone(),
                now,
                n.created_by.clone()
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
        if let Some(r) = self.query_opt(
            format!("SELECT {COLUMNS} FROM rollouts WHERE id = $1"),
            args![id.to_string()],
        )? {
            return Ok(Some(rollout_row(&r)?));
        }
        let found = rows(
            self.query(
                format!(
                    "SELECT {COLUMNS} FROM rollouts WHERE substr(id, 1, length($1::text)) = $1 LIMIT 2"
                ),
                args![id.to_string()],
            )?,
            rollout_row,
        )?;
        Ok(if found.len() == 1 {
            found.into_iter().next()
        } else {
            None
        })
    }

    fn rollouts(&self, limit: usize) -> Result<Vec<Rollout>> {
        rows(
            self.query(
                format!(
                    "SELECT {COLUMNS} FROM rollouts ORDER BY created_ms DESC, id DESC LIMIT $1"
                ),
                args![limit as i64],
            )?,
            rollout_row,
        )
    }

    fn active_rollout(&self, agent: &str) -> Result<Option<Rollout>> {
        self.query_opt(
            format!(
                "SELECT {COLUMNS} FROM rollouts WHERE agent = $1 AND status IN ('progressing', 'paused')"
            ),
            args![agent.to_string()],
        )?
        .map(|r| rollout_row(&r))
        .transpose()
    }

    fn save_rollout(&mut self, r: &Rollout) -> Result<()> {
        let saved = self.execute(
            "UPDATE rollouts SET attempt = $2, phase = $3, step = $4, weight = $5, status = $6, \
             reason = $7, requested = $8, updated_ms = $9 WHERE id = $1",
            args![
                r.id.clone(),
                i64::from(r.attempt),
                r.phase.clone(),
                i64::from(r.step),
                i64::from(r.weight),
                r.status.as_str(),
                r.reason.clone(),
                r.requested.clone(),
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
        // `holder_dead` runs here, not on the connection thread, so the
        // claim is a compare-and-set: it takes the rollout only if the
        // holder and lease are still the ones judged.
        let Some(held) = self.query_opt(
            "SELECT controller, lease_ms FROM rollouts WHERE id = $1",
            args![id.to_string()],
        )?
        else {
            return Ok(false);
        };
        let holder: Option<String> = held.try_get(0)?;
        let lease: Option<i64> = held.try_get(1)?;
        let now = now_ms();
        let free = match holder.as_deref() {
            None => true,
            Some(h) if h == who => true,
            Some(h) => lease.is_none_or(|l| l < now) || holder_dead(h),
        };
        if !free {
            return Ok(false);
        }
        let taken = self.execute(
            "UPDATE rollouts SET controller = $2, lease_ms = $3 WHERE id = $1
             AND controller IS NOT DISTINCT FROM $4 AND lease_ms IS NOT DISTINCT FROM $5",
            args![
                id.to_string(),
                who.to_string(),
                now + lease_ms,
                holder,
                lease
            ],
        )?;
        Ok(taken == 1)
    }

    fn release_rollout(&mut self, id: &str, who: &str) -> Result<()> {
        self.execute(
            "UPDATE rollouts SET controller = NULL, lease_ms = NULL WHERE id = $1 AND controller = $2",
            args![id.to_string(), who.to_string()],
        )?;
        Ok(())
    }

    fn request_rollout(&mut self, id: &str, what: Option<&str>) -> Result<()> {
        self.execute(
            "UPDATE rollouts SET requested = $2, updated_ms = $3 WHERE id = $1",
            args![id.to_string(), what.map(str::to_string), now_ms()],
        )?;
        Ok(())
    }

    fn append_journal(&mut self, id: &str, e: &JournalEntry) -> Result<i64> {
        let id = id.to_string();
        let e = e.clone();
        self.with(move |c| {
            let mut tx = c.transaction()?;
            // Appenders to one journal queue on the rollout's row.
            tx.execute("SELECT 1 FROM rollouts WHERE id = $1 FOR UPDATE", &[&id])?;
            let seq: i64 = tx
                .query_one(
                    "INSERT INTO rollout_journal (rollout_id, seq, at_ms, attempt, step, entry, action, node, version, ok, detail) \
                     SELECT $1, COALESCE(MAX(seq), 0) + 1, $2, $3, $4, $5, $6, $7, $8, $9, $10 \
                     FROM rollout_journal WHERE rollout_id = $1 RETURNING seq",
                    &[&id, &now_ms(), &i64::from(e.attempt), &e.step.map(i64::from), &e.entry,
                      &e.action, &e.node, &e.version, &e.ok, &e.detail],
                )?
                .get(0);
            tx.commit()?;
            Ok(seq)
        })
    }

    fn journal(&self, id: &str) -> Result<Vec<JournalEntry>> {
        rows(
            self.query(
                "SELECT seq, at_ms, attempt, step, entry, action, node, version, ok, detail \
                 FROM rollout_journal WHERE rollout_id = $1 ORDER BY seq",
                args![id.to_string()],
            )?,
            |r| {
                Ok(JournalEntry {
                    seq: r.try_get(0)?,
                    at_ms: r.try_get(1)?,
                    attempt: small(r, 2, "journal attempt")?,
                    step: r
                        .try_get::<_, Option<i64>>(3)?
                        .map(|s| {
                            u32::try_from(s).map_err(|_| bad_value("journal step", &s.to_string()))
                        })
                        .transpose()?,
                    entry: r.try_get(4)?,
                    action: r.try_get(5)?,
                    node: r.try_get(6)?,
                    version: r.try_get(7)?,
                    ok: r.try_get(8)?,
                    detail: r.try_get(9)?,
                })
            },
        )
    }

    fn record_measurement(&mut self, m: &Measurement) -> Result<()> {
        self.execute(
            "INSERT INTO rollout_measurements (rollout_id, attempt, step, gate, seq, at_ms, version, outcome, metrics, message) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            args![m.rollout_id.clone(), i64::from(m.attempt), i64::from(m.step), m.gate.clone(),
                  i64::from(m.seq), m.at_ms, m.version.clone(), m.outcome.as_str(),
                  m.metrics.to_string(), m.message.clone()],
        )?;
        Ok(())
    }

    fn measurements(&self, id: &str) -> Result<Vec<Measurement>> {
        rows(
            self.query(
                "SELECT rollout_id, attempt, step, gate, seq, at_ms, version, outcome, metrics, message \
                 FROM rollout_measurements WHERE rollout_id = $1 ORDER BY attempt, step, seq",
                args![id.to_string()],
            )?,
            |r| {
                let outcome: String = r.try_get(7)?;
                let metrics: String = r.try_get(8)?;
                Ok(Measurement {
                    rollout_id: r.try_get(0)?,
                    attempt: small(r, 1, "measurement attempt")?,
                    step: small(r, 2, "measurement step")?,
                    gate: r.try_get(3)?,
                    seq: small(r, 4, "measurement seq")?,
                    at_ms: r.try_get(5)?,
                    version: r.try_get(6)?,
                    outcome: Outcome::parse(&outcome)
                        .ok_or_else(|| bad_value("gate outcome", &outcome))?,
                    metrics: serde_json::from_str(&metrics).unwrap_or(serde_json::Value::Null),
                    message: r.try_get(9)?,
                })
            },
        )
    }
}
