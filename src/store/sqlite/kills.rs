//! [`KillStore`] on SQLite.

use rusqlite::params;

use super::SqliteStore;
use crate::store::Result;
use crate::store::kills::{KillRecord, KillStore};

impl KillStore for SqliteStore {
    fn record_kill(&mut self, k: &KillRecord) -> Result<()> {
        self.conn.execute(
            "INSERT OR REPLACE INTO kill_switches (agent, engaged, by_whom, at_ms, reason, node_limit, commit_id)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![k.agent, k.engaged, k.by, k.at_ms, k.reason, k.limit, k.commit],
        )?;
        Ok(())
    }

    fn engaged_kills(&self) -> Result<Vec<KillRecord>> {
        let mut st = self.conn.prepare_cached(
            "SELECT agent, engaged, by_whom, at_ms, reason, node_limit, commit_id
             FROM kill_switches WHERE engaged ORDER BY agent",
        )?;
        let rows = st.query_map([], |r| {
            Ok(KillRecord {
                agent: r.get(0)?,
                engaged: r.get(1)?,
                by: r.get(2)?,
                at_ms: r.get(3)?,
                reason: r.get(4)?,
                limit: r.get(5)?,
                commit: r.get(6)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}
