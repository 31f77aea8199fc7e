//! [`KillStore`] on PostgreSQL: one row per agent, the newest change wins.

use super::{PgStore, args, rows};
use crate::store::Result;
use crate::store::kills::{KillRecord, KillStore};

impl KillStore for PgStore {
    fn record_kill(&mut self, k: &KillRecord) -> Result<()> {
        self.execute(
            "INSERT INTO kill_switches (agent, engaged, by_whom, at_ms, reason, node_limit, commit_id)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (agent) DO UPDATE SET engaged = excluded.engaged,
                by_whom = excluded.by_whom, at_ms = excluded.at_ms, reason = excluded.reason,
                node_limit = excluded.node_limit, commit_id = excluded.commit_id",
            args![
                k.agent.clone(),
                k.engaged,
                k.by.clone(),
                k.at_ms,
                k.reason.clone(),
                k.limit.clone(),
                k.commit.clone()
            ],
        )?;
        Ok(())
    }

    fn engaged_kills(&self) -> Result<Vec<KillRecord>> {
        let found = self.query(
            "SELECT agent, engaged, by_whom, at_ms, reason, node_limit, commit_id
             FROM kill_switches WHERE engaged ORDER BY agent",
            args![],
        )?;
        rows(found, |r| {
            Ok(KillRecord {
                agent: r.try_get(0)?,
                engaged: r.try_get(1)?,
                by: r.try_get(2)?,
                at_ms: r.try_get(3)?,
                reason: r.try_get(4)?,
                limit: r.try_get(5)?,
                commit: r.try_get(6)?,
            })
        })
    }
}
