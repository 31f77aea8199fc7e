//! [`WorkStore`] on PostgreSQL: controllers on several machines splitting a
//! run. A claim picks its rows with `FOR UPDATE SKIP LOCKED`, so two
//! controllers claiming at once take disjoint batches without waiting for
//! each other; expiry is the database's clock.

use postgres::Row;

use super::{Param, PgStore, args, bad_value, execute_all, prepared, result_statements, rows};
use crate::fleet::event::NodeResult;
use crate::store::Result;
use crate::store::work::{Claim, ItemState, NewWork, Progress, WorkItem, WorkRun, WorkStore};

/// Statements for one transaction.
type Statements = Vec<(String, Vec<Param>)>;

/// The database's clock in milliseconds: one clock for every controller.
const NOW_MS: &str = "(extract(epoch FROM clock_timestamp()) * 1000)::BIGINT";

fn work_row(r: &Row) -> Result<WorkRun> {
    Ok(WorkRun {
        run_id: r.try_get(0)?,
        job: r.try_get(1)?,
        sot_commit: r.try_get(2)?,
        ttl_ms: r.try_get(3)?,
        created_ms: r.try_get(4)?,
        created_by: r.try_get(5)?,
        closed_by: r.try_get(6)?,
    })
}

fn state(r: &Row, i: usize) -> Result<ItemState> {
    let s: String = r.try_get(i)?;
    ItemState::parse(&s).ok_or_else(|| bad_value("work state", &s))
}

impl WorkStore for PgStore {
    fn create_work(&mut self, w: &NewWork) -> Result<()> {
        let mut statements: Statements = vec![(
            format!(
                "INSERT INTO work_runs (run_id, job, sot_commit, ttl_ms, created_ms, created_by)
                 VALUES ($1, $2, $3, $4, {NOW_MS}, $5)"
            ),
            args![
                w.run_id.clone(),
                w.job.clone(),
                w.sot_commit.clone(),
                w.ttl_ms,
                w.created_by.clone()
            ],
        )];
        // One statement for every node: a 10,000-node run is one round trip.
        statements.push((
            "INSERT INTO work_items (run_id, node, position)
             SELECT $1, node, position - 1 FROM unnest($2::TEXT[]) WITH ORDINALITY AS n(node, position)"
                .into(),
            args![w.run_id.clone(), w.nodes.clone()],
        ));
        self.transaction(statements)
    }

    fn work(&self, run: &str) -> Result<Option<WorkRun>> {
        self.query_opt(
            "SELECT run_id, job, sot_commit, ttl_ms, created_ms, created_by, closed_by
             FROM work_runs WHERE run_id = $1",
            args![run.to_string()],
        )?
        .map(|r| work_row(&r))
        .transpose()
    }

    fn claim(&mut self, run: &str, controller: &str, max: usize) -> Result<Vec<Claim>> {
        let found = self.query(
            format!(
                "WITH picked AS (
                    SELECT node, CASE WHEN state = 'claimed' THEN claimed_by END AS was
                    FROM work_items
                    WHERE run_id = $1
                      AND (state = 'free' OR (state = 'claimed' AND expires_ms < {NOW_MS}))
                      AND EXISTS (SELECT 1 FROM runs WHERE id = $1)
                    ORDER BY position LIMIT $3
                    FOR UPDATE SKIP LOCKED
                 )
                 UPDATE work_items w SET state = 'claimed', claimed_by = $2,
                    expires_ms = {NOW_MS} + (SELECT ttl_ms FROM work_runs WHERE run_id = $1),
                    attempts = w.attempts + 1
                 FROM picked WHERE w.run_id = $1 AND w.node = picked.node
                 RETURNING w.node, picked.was, w.attempts, w.position"
            ),
            args![run.to_string(), controller.to_string(), max as i64],
        )?;
        let mut claims: Vec<(i64, Claim)> = rows(found, |r| {
            Ok((
                r.try_get(3)?,
                Claim {
                    node: r.try_get(0)?,
                    taken_from: r.try_get(1)?,
                    attempts: r.try_get::<_, i64>(2)?.max(0) as u32,
                },
            ))
        })?;
        // RETURNING comes in no particular order; the run's is the target's.
        claims.sort_by_key(|(position, _)| *position);
        Ok(claims.into_iter().map(|(_, c)| c).collect())
    }

    fn renew(&mut self, run: &str, controller: &str) -> Result<usize> {
        Ok(self.execute(
            format!(
                "UPDATE work_items
                 SET expires_ms = {NOW_MS} + (SELECT ttl_ms FROM work_runs WHERE run_id = $1)
                 WHERE run_id = $1 AND claimed_by = $2 AND state = 'claimed'"
            ),
            args![run.to_string(), controller.to_string()],
        )? as usize)
    }

    fn release(&mut self, run: &str, controller: &str, nodes: &[String]) -> Result<()> {
        self.execute(
            "UPDATE work_items SET state = 'free', claimed_by = NULL, expires_ms = NULL
             WHERE run_id = $1 AND node = ANY($3) AND claimed_by = $2 AND state = 'claimed'",
            args![run.to_string(), controller.to_string(), nodes.to_vec()],
        )?;
        Ok(())
    }

    fn complete(
        &mut self,
        run: &str,
        controller: &str,
        results: &[NodeResult],
    ) -> Result<Vec<bool>> {
        let run = run.to_string();
        let controller = controller.to_string();
        let work: Vec<(String, Statements)> = results
            .iter()
            .map(|r| (r.node.clone(), result_statements(&run, r)))
            .collect();
        // One connection job for the batch: a transaction per node, so a
        // node another controller took over does not hold back the others.
        self.with(move |c| {
            let mut kept = Vec::with_capacity(work.len());
            for (node, statements) in &work {
                let mut tx = c.transaction()?;
                let done = prepared(
                    &mut tx,
                    "UPDATE work_items SET state = 'done', done_by = $2, expires_ms = NULL
                     WHERE run_id = $1 AND node = $3 AND claimed_by = $2 AND state = 'claimed'",
                )?;
                let mine = tx.execute(&done, &[&run, &controller, node])? == 1;
                if mine {
                    execute_all(&mut tx, statements)?;
                    tx.commit()?;
                } else {
                    tx.rollback()?;
                }
                kept.push(mine);
            }
            Ok(kept)
        })
    }

    fn progress(&self, run: &str) -> Result<Progress> {
        let found = self.query(
            "SELECT state, count(*) FROM work_items WHERE run_id = $1 GROUP BY state",
            args![run.to_string()],
        )?;
        let mut p = Progress::default();
        for r in &found {
            let n = r.try_get::<_, i64>(1)?.max(0) as usize;
            match state(r, 0)? {
                ItemState::Free => p.free = n,
                ItemState::Claimed => p.claimed = n,
                ItemState::Done => p.done = n,
            }
        }
        Ok(p)
    }

    fn items(&self, run: &str) -> Result<Vec<WorkItem>> {
        let found = self.query(
            "SELECT node, state, claimed_by, done_by, attempts FROM work_items
             WHERE run_id = $1 ORDER BY position",
            args![run.to_string()],
        )?;
        rows(found, |r| {
            Ok(WorkItem {
                node: r.try_get(0)?,
                state: state(r, 1)?,
                claimed_by: r.try_get(2)?,
                done_by: r.try_get(3)?,
                attempts: r.try_get::<_, i64>(4)?.max(0) as u32,
            })
        })
    }

    fn close(&mut self, run: &str, controller: &str) -> Result<bool> {
        Ok(self.execute(
            "UPDATE work_runs SET closed_by = $2
             WHERE run_id = $1 AND closed_by IS NULL
               AND NOT EXISTS (SELECT 1 FROM work_items WHERE run_id = $1 AND state <> 'done')",
            args![run.to_string(), controller.to_string()],
        )? == 1)
    }
}
