//! [`WorkStore`] on SQLite: controllers on one machine sharing one store
//! file. Each claim is one `BEGIN IMMEDIATE` transaction, so two processes
//! claiming at once are serialized by SQLite's write lock and never take the
//! same node.

use rusqlite::{OptionalExtension, TransactionBehavior, params};

use super::{SqliteStore, bad_value, write_result};
use crate::fleet::event::{NodeResult, now_ms};
use crate::store::Result;
use crate::store::work::{Claim, ItemState, NewWork, Progress, WorkItem, WorkRun, WorkStore};

impl WorkStore for SqliteStore {
    fn create_work(&mut self, w: &NewWork) -> Result<()> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute(
            "INSERT INTO work_runs (run_id, job, sot_commit, ttl_ms, created_ms, created_by)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                w.run_id,
                w.job,
                w.sot_commit,
                w.ttl_ms,
                now_ms(),
                w.created_by
            ],
        )?;
        {
            let mut st = tx.prepare_cached(
                "INSERT INTO work_items (run_id, node, position) VALUES (?1, ?2, ?3)",
            )?;
            for (i, node) in w.nodes.iter().enumerate() {
                st.execute(params![w.run_id, node, i as i64])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn work(&self, run: &str) -> Result<Option<WorkRun>> {
        Ok(self
            .conn
            .query_row(
                "SELECT run_id, job, sot_commit, ttl_ms, created_ms, created_by, closed_by
                 FROM work_runs WHERE run_id = ?1",
                params![run],
                |r| {
                    Ok(WorkRun {
                        run_id: r.get(0)?,
                        job: r.get(1)?,
                        sot_commit: r.get(2)?,
                        ttl_ms: r.get(3)?,
                        created_ms: r.get(4)?,
                        created_by: r.get(5)?,
                        closed_by: r.get(6)?,
                    })
                },
            )
            .optional()?)
    }

    fn claim(&mut self, run: &str, controller: &str, max: usize) -> Result<Vec<Claim>> {
        let now = now_ms();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let candidates: Vec<(String, Option<String>)> = {
            let mut st = tx.prepare_cached(
                "SELECT node, CASE WHEN state = 'claimed' THEN claimed_by END FROM work_items
                 WHERE run_id = ?1
                   AND (state = 'free' OR (state = 'claimed' AND expires_ms < ?2))
                   AND EXISTS (SELECT 1 FROM runs WHERE id = ?1)
                 ORDER BY position LIMIT ?3",
            )?;
            st.query_map(params![run, now, max as i64], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?
            .collect::<rusqlite::Result<_>>()?
        };
        let mut claims = Vec::with_capacity(candidates.len());
        {
            let mut st = tx.prepare_cached(
                "UPDATE work_items SET state = 'claimed', claimed_by = ?3,
                    expires_ms = ?4 + (SELECT ttl_ms FROM work_runs WHERE run_id = ?1),
                    attempts = attempts + 1
                 WHERE run_id = ?1 AND node = ?2 RETURNING attempts",
            )?;
            for (node, was) in candidates {
                let attempts: i64 =
                    st.query_row(params![run, node, controller, now], |r| r.get(0))?;
                claims.push(Claim {
                    node,
                    taken_from: was,
                    attempts: attempts.max(0) as u32,
                });
            }
        }
        tx.commit()?;
        Ok(claims)
    }

    fn renew(&mut self, run: &str, controller: &str) -> Result<usize> {
        Ok(self.conn.execute(
            "UPDATE work_items
             SET expires_ms = ?3 + (SELECT ttl_ms FROM work_runs WHERE run_id = ?1)
             WHERE run_id = ?1 AND claimed_by = ?2 AND state = 'claimed'",
            params![run, controller, now_ms()],
        )?)
    }

    fn release(&mut self, run: &str, controller: &str, nodes: &[String]) -> Result<()> {
        let tx = self.conn.transaction()?;
        {
            let mut st = tx.prepare_cached(
                "UPDATE work_items SET state = 'free', claimed_by = NULL, expires_ms = NULL
                 WHERE run_id = ?1 AND node = ?2 AND claimed_by = ?3 AND state = 'claimed'",
            )?;
            for node in nodes {
                st.execute(params![run, node, controller])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn complete(
        &mut self,
        run: &str,
        controller: &str,
        results: &[NodeResult],
    ) -> Result<Vec<bool>> {
        let mut kept = Vec::with_capacity(results.len());
        for r in results {
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)?;
            let mine = tx.execute(
                "UPDATE work_items SET state = 'done', done_by = ?3, expires_ms = NULL
                 WHERE run_id = ?1 AND node = ?2 AND claimed_by = ?3 AND state = 'claimed'",
                params![run, r.node, controller],
            )? == 1;
            if mine {
                write_result(&tx, run, r)?;
            }
            tx.commit()?;
            kept.push(mine);
        }
        Ok(kept)
    }

    fn progress(&self, run: &str) -> Result<Progress> {
        let mut st = self.conn.prepare_cached(
            "SELECT state, count(*) FROM work_items WHERE run_id = ?1 GROUP BY state",
        )?;
        let mut p = Progress::default();
        let rows = st.query_map(params![run], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
        })?;
        for row in rows {
            let (state, n) = row?;
            let n = n.max(0) as usize;
            match ItemState::parse(&state).ok_or_else(|| bad_value(0, "work state", &state))? {
                ItemState::Free => p.free = n,
                ItemState::Claimed => p.claimed = n,
                ItemState::Done => p.done = n,
            }
        }
        Ok(p)
    }

    fn items(&self, run: &str) -> Result<Vec<WorkItem>> {
        let mut st = self.conn.prepare_cached(
            "SELECT node, state, claimed_by, done_by, attempts FROM work_items
             WHERE run_id = ?1 ORDER BY position",
        )?;
        let rows = st.query_map(params![run], |r| {
            let state: String = r.get(1)?;
            Ok(WorkItem {
                node: r.get(0)?,
                state: ItemState::parse(&state)
                    .ok_or_else(|| bad_value(1, "work state", &state))?,
                claimed_by: r.get(2)?,
                done_by: r.get(3)?,
                attempts: r.get::<_, i64>(4)?.max(0) as u32,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn close(&mut self, run: &str, controller: &str) -> Result<bool> {
        Ok(self.conn.execute(
            "UPDATE work_runs SET closed_by = ?2
             WHERE run_id = ?1 AND closed_by IS NULL
               AND NOT EXISTS (SELECT 1 FROM work_items WHERE run_id = ?1 AND state <> 'done')",
            params![run, controller],
        )? == 1)
    }
}
