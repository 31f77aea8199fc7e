//! The run store: SQLite (WAL) with every run, every node's result and output,
//! and the notes a run produced (host keys learned, warnings).
//!
//! It is a subscriber of the event stream: [`Store::record`] takes events as
//! they come, so a run that crashes half-way leaves what it had finished plus a
//! run row still marked `running`: the journal `maestro runs show` reads.
//!
//! Path: `--db FILE`, else `$MAESTRO_DB`, else `$XDG_STATE_HOME/maestro/maestro.db`,
//! else `~/.local/state/maestro/maestro.db`.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use crate::fleet::event::{Event, NodeResult, NodeStatus, TaskResult, TaskStatus, now_ms};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("run store {}: {source}", path.display())]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("creating {}: {source}", path.display())]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("run store: {0}")]
    Sql(#[from] rusqlite::Error),
}

pub type Result<T> = std::result::Result<T, StoreError>;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS runs (
    id          TEXT PRIMARY KEY,
    kind        TEXT NOT NULL,
    command     TEXT NOT NULL,
    target      TEXT NOT NULL,
    sot         TEXT NOT NULL,
    forks       INTEGER NOT NULL,
    node_count  INTEGER NOT NULL,
    nodes       TEXT NOT NULL,          -- JSON array of target node names
    state       TEXT NOT NULL,          -- running | finished | cancelled
    started_ms  INTEGER NOT NULL,
    finished_ms INTEGER,
    ok INTEGER NOT NULL DEFAULT 0, failed INTEGER NOT NULL DEFAULT 0,
    unreachable INTEGER NOT NULL DEFAULT 0, timed_out INTEGER NOT NULL DEFAULT 0,
    cancelled INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS node_results (
    run_id       TEXT NOT NULL REFERENCES runs(id),
    node         TEXT NOT NULL,
    status       TEXT NOT NULL,
    exit_code    INTEGER,
    signal       TEXT,
    duration_ms  INTEGER NOT NULL,
    error        TEXT,
    stdout       BLOB NOT NULL,
    stdout_total INTEGER NOT NULL,
    stderr       BLOB NOT NULL,
    stderr_total INTEGER NOT NULL,
    finished_ms  INTEGER NOT NULL,
    PRIMARY KEY (run_id, node)
);
CREATE INDEX IF NOT EXISTS node_results_by_node ON node_results(node, finished_ms);
CREATE TABLE IF NOT EXISTS task_results (
    run_id  TEXT NOT NULL REFERENCES runs(id),
    node    TEXT NOT NULL,
    idx     INTEGER NOT NULL,
    name    TEXT NOT NULL,
    status  TEXT NOT NULL,              -- ok | changed | failed | skipped
    message TEXT NOT NULL,
    diff    TEXT,
    output  TEXT,
    PRIMARY KEY (run_id, node, idx)
);
CREATE TABLE IF NOT EXISTS node_facts (
    node  TEXT PRIMARY KEY,
    facts TEXT NOT NULL,                -- JSON object
    at_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS run_notes (
    run_id  TEXT NOT NULL REFERENCES runs(id),
    at_ms   INTEGER NOT NULL,
    node    TEXT,
    kind    TEXT NOT NULL,              -- host_key_learned | warning
    message TEXT NOT NULL
);
";

/// A run as listed by `maestro runs`.
#[derive(Debug, Clone, Serialize)]
pub struct RunRow {
    pub id: String,
    pub kind: String,
    pub command: String,
    pub target: String,
    pub sot: String,
    pub forks: usize,
    pub node_count: usize,
    pub nodes: Vec<String>,
    pub state: String,
    pub started_ms: i64,
    pub finished_ms: Option<i64>,
    pub ok: usize,
    pub failed: usize,
    pub unreachable: usize,
    pub timed_out: usize,
    pub cancelled: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Note {
    pub at_ms: i64,
    pub node: Option<String>,
    pub kind: String,
    pub message: String,
}

pub struct Store {
    conn: Connection,
    path: PathBuf,
    /// The SoT the runs recorded through this handle belong to.
    sot: String,
    /// The run being recorded.
    current: Option<String>,
}

impl Store {
    pub fn default_path() -> PathBuf {
        if let Some(p) = std::env::var_os("MAESTRO_DB").filter(|p| !p.is_empty()) {
            return PathBuf::from(p);
        }
        let state = std::env::var_os("XDG_STATE_HOME")
            .filter(|p| !p.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))
            .unwrap_or_else(|| PathBuf::from("."));
        state.join("maestro").join("maestro.db")
    }

    pub fn open(path: &Path) -> Result<Store> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::Dir {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        let open = || -> rusqlite::Result<Connection> {
            let conn = Connection::open(path)?;
            conn.pragma_update(None, "journal_mode", "WAL")?;
            conn.pragma_update(None, "synchronous", "NORMAL")?;
            conn.busy_timeout(std::time::Duration::from_secs(5))?;
            conn.execute_batch(SCHEMA)?;
            Ok(conn)
        };
        let conn = open().map_err(|source| StoreError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(Store {
            conn,
            path: path.to_path_buf(),
            sot: String::new(),
            current: None,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Tag the runs recorded from now on with the SoT they ran against.
    pub fn set_sot(&mut self, sot: &str) {
        self.sot = sot.to_string();
    }

    /// Record one event. Events that carry nothing worth keeping are ignored.
    pub fn record(&mut self, event: &Event) -> Result<()> {
        match event {
            Event::RunStarted {
                run_id,
                kind,
                command,
                target,
                nodes,
                forks,
                at_ms,
            } => {
                self.conn.execute(
                    "INSERT INTO runs (id, kind, command, target, sot, forks, node_count, nodes, state, started_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'running', ?9)",
                    params![run_id, kind, command, target, self.sot, *forks as i64, nodes.len() as i64,
                            serde_json::to_string(nodes).unwrap_or_default(), at_ms],
                )?;
                self.current = Some(run_id.clone());
            }
            Event::NodeFinished { result } => {
                let Some(run) = &self.current else {
                    return Ok(());
                };
                let r = result;
                self.conn.execute(
                    "INSERT OR REPLACE INTO node_results
                     (run_id, node, status, exit_code, signal, duration_ms, error, stdout, stdout_total, stderr, stderr_total, finished_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                    params![run, r.node, r.status.as_str(), r.exit_code, r.signal, r.duration_ms as i64, r.error,
                            r.stdout.bytes, r.stdout.total as i64, r.stderr.bytes, r.stderr.total as i64, now_ms()],
                )?;
            }
            Event::HostKeyLearned {
                node,
                host,
                fingerprint,
                file,
            } => {
                self.note(
                    Some(node),
                    "host_key_learned",
                    &format!("trusted {host} {fingerprint} on first use, recorded in {file}"),
                )?;
            }
            Event::Warning { node, message } => self.note(node.as_deref(), "warning", message)?,
            Event::RunFinished {
                run_id,
                summary,
                cancelled,
                ..
            } => {
                self.conn.execute(
                    "UPDATE runs SET state = ?2, finished_ms = ?3, ok = ?4, failed = ?5, unreachable = ?6,
                     timed_out = ?7, cancelled = ?8 WHERE id = ?1",
                    params![run_id, if *cancelled { "cancelled" } else { "finished" }, now_ms(),
                            summary.ok as i64, summary.failed as i64, summary.unreachable as i64,
                            summary.timed_out as i64, summary.cancelled as i64],
                )?;
                self.current = None;
            }
            _ => {}
        }
        Ok(())
    }

    fn note(&self, node: Option<&str>, kind: &str, message: &str) -> Result<()> {
        if let Some(run) = &self.current {
            self.conn.execute(
                "INSERT INTO run_notes (run_id, at_ms, node, kind, message) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![run, now_ms(), node, kind, message],
            )?;
        }
        Ok(())
    }

    /// The newest runs first.
    pub fn runs(&self, limit: usize) -> Result<Vec<RunRow>> {
        let mut st = self.conn.prepare_cached(&format!(
            "{RUN_SELECT} ORDER BY started_ms DESC, id DESC LIMIT ?1"
        ))?;
        let rows = st.query_map(params![limit as i64], run_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// One run by id or unique id prefix; `last` means the newest.
    pub fn run(&self, id: &str) -> Result<Option<RunRow>> {
        if id == "last" {
            return Ok(self.runs(1)?.into_iter().next());
        }
        let mut st = self.conn.prepare_cached(&format!(
            "{RUN_SELECT} WHERE id LIKE ?1 || '%' ORDER BY started_ms DESC LIMIT 2"
        ))?;
        let rows: Vec<RunRow> = st
            .query_map(params![id], run_row)?
            .collect::<rusqlite::Result<_>>()?;
        Ok(if rows.len() == 1 {
            rows.into_iter().next()
        } else {
            rows.into_iter().find(|r| r.id == id)
        })
    }

    /// Every node result of a run, in target order.
    pub fn results(&self, run: &RunRow) -> Result<Vec<NodeResult>> {
        let mut st = self.conn.prepare_cached(&format!(
            "SELECT {RESULT_COLUMNS} FROM node_results WHERE run_id = ?1"
        ))?;
        let mut rows: Vec<NodeResult> = st
            .query_map(params![run.id], node_result)?
            .collect::<rusqlite::Result<_>>()?;
        let order: std::collections::HashMap<&str, usize> = run
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.as_str(), i))
            .collect();
        rows.sort_by_key(|r| order.get(r.node.as_str()).copied().unwrap_or(usize::MAX));
        let mut st = self.conn.prepare_cached(
            "SELECT node, idx, name, status, message, diff, output FROM task_results WHERE run_id = ?1 ORDER BY node, idx",
        )?;
        let tasks = st.query_map(params![run.id], |r| {
            let status: String = r.get(3)?;
            Ok((
                r.get::<_, String>(0)?,
                TaskResult {
                    index: r.get::<_, i64>(1)? as usize,
                    name: r.get(2)?,
                    status: TaskStatus::parse(&status).unwrap_or(TaskStatus::Failed),
                    message: r.get(4)?,
                    diff: r.get(5)?,
                    output: r.get(6)?,
                },
            ))
        })?;
        for t in tasks {
            let (node, task) = t?;
            if let Some(row) = rows.iter_mut().find(|r| r.node == node) {
                row.tasks.push(task);
            }
        }
        Ok(rows)
    }

    pub fn notes(&self, run: &RunRow) -> Result<Vec<Note>> {
        let mut st = self
            .conn
            .prepare_cached("SELECT at_ms, node, kind, message FROM run_notes WHERE run_id = ?1 ORDER BY at_ms, rowid")?;
        let rows = st.query_map(params![run.id], |r| {
            Ok(Note {
                at_ms: r.get(0)?,
                node: r.get(1)?,
                kind: r.get(2)?,
                message: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The facts last gathered on a node.
    pub fn facts(
        &self,
        node: &str,
    ) -> Result<Option<(std::collections::BTreeMap<String, String>, i64)>> {
        Ok(self
            .conn
            .query_row(
                "SELECT facts, at_ms FROM node_facts WHERE node = ?1",
                params![node],
                |r| {
                    let f: String = r.get(0)?;
                    Ok((serde_json::from_str(&f).unwrap_or_default(), r.get(1)?))
                },
            )
            .optional()?)
    }

    /// The most recent result of each node, for "last run" columns.
    pub fn last_result_of(&self, node: &str) -> Result<Option<(String, NodeStatus, i64)>> {
        Ok(self
            .conn
            .query_row(
                "SELECT run_id, status, finished_ms FROM node_results WHERE node = ?1 ORDER BY finished_ms DESC LIMIT 1",
                params![node],
                |r| {
                    let s: String = r.get(1)?;
                    Ok((r.get(0)?, NodeStatus::parse(&s).unwrap_or(NodeStatus::Failed), r.get(2)?))
                },
            )
            .optional()?)
    }
}

/// A node's most recent result, for "last run" columns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LastResult {
    pub run_id: String,
    pub status: NodeStatus,
    pub finished_ms: i64,
}

impl Store {
    /// The most recent result of every node that has one, in one query (the
    /// console's fleet table asks for thousands of nodes at once).
    pub fn last_results(&self) -> Result<std::collections::HashMap<String, LastResult>> {
        // SQLite takes the bare columns from the row holding MAX(finished_ms).
        let mut st = self.conn.prepare_cached(
            "SELECT node, run_id, status, MAX(finished_ms) FROM node_results GROUP BY node",
        )?;
        let rows = st.query_map([], |r| {
            let status: String = r.get(2)?;
            Ok((
                r.get::<_, String>(0)?,
                LastResult {
                    run_id: r.get(1)?,
                    status: NodeStatus::parse(&status).unwrap_or(NodeStatus::Failed),
                    finished_ms: r.get(3)?,
                },
            ))
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// A node's results in its `limit` most recent runs, newest first, each
    /// with its run.
    pub fn node_history(&self, node: &str, limit: usize) -> Result<Vec<(RunRow, NodeResult)>> {
        let ids: Vec<String> = {
            let mut st = self.conn.prepare_cached(
                "SELECT run_id FROM node_results WHERE node = ?1 ORDER BY finished_ms DESC LIMIT ?2",
            )?;
            st.query_map(params![node, limit as i64], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?
        };
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let Some(run) = self.run(&id)? else { continue };
            let mut st = self.conn.prepare_cached(&format!(
                "SELECT {RESULT_COLUMNS} FROM node_results WHERE run_id = ?1 AND node = ?2"
            ))?;
            if let Some(result) = st
                .query_row(params![run.id, node], node_result)
                .optional()?
            {
                out.push((run, result));
            }
        }
        Ok(out)
    }
}

const RESULT_COLUMNS: &str = "node, status, exit_code, signal, duration_ms, error, stdout, stdout_total, stderr, stderr_total";

fn node_result(r: &rusqlite::Row<'_>) -> rusqlite::Result<NodeResult> {
    let status: String = r.get(1)?;
    Ok(NodeResult {
        node: r.get(0)?,
        status: NodeStatus::parse(&status).unwrap_or(NodeStatus::Failed),
        exit_code: r.get(2)?,
        signal: r.get(3)?,
        duration_ms: r.get::<_, i64>(4)? as u64,
        error: r.get(5)?,
        stdout: crate::fleet::event::Captured {
            bytes: r.get(6)?,
            total: r.get::<_, i64>(7)? as u64,
        },
        stderr: crate::fleet::event::Captured {
            bytes: r.get(8)?,
            total: r.get::<_, i64>(9)? as u64,
        },
        tasks: Vec::new(),
    })
}

const RUN_SELECT: &str = "SELECT id, kind, command, target, sot, forks, node_count, nodes, state, started_ms, finished_ms,
    ok, failed, unreachable, timed_out, cancelled FROM runs";

fn run_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RunRow> {
    let nodes: String = r.get(7)?;
    Ok(RunRow {
        id: r.get(0)?,
        kind: r.get(1)?,
        command: r.get(2)?,
        target: r.get(3)?,
        sot: r.get(4)?,
        forks: r.get::<_, i64>(5)? as usize,
        node_count: r.get::<_, i64>(6)? as usize,
        nodes: serde_json::from_str(&nodes).unwrap_or_default(),
        state: r.get(8)?,
        started_ms: r.get(9)?,
        finished_ms: r.get(10)?,
        ok: r.get::<_, i64>(11)? as usize,
        failed: r.get::<_, i64>(12)? as usize,
        unreachable: r.get::<_, i64>(13)? as usize,
        timed_out: r.get::<_, i64>(14)? as usize,
        cancelled: r.get::<_, i64>(15)? as usize,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::Summary;

    fn record_run(store: &mut Store, id: &str, at_ms: i64, results: &[(&str, NodeStatus)]) {
        store
            .record(&Event::RunStarted {
                run_id: id.into(),
                kind: "exec".into(),
                command: "true".into(),
                target: "all".into(),
                nodes: results.iter().map(|(n, _)| n.to_string()).collect(),
                forks: 10,
                at_ms,
            })
            .unwrap();
        for (node, status) in results {
            store
                .record(&Event::NodeFinished {
                    result: NodeResult::new(node, *status),
                })
                .unwrap();
            // finished_ms comes from the clock: keep the runs apart.
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        store
            .record(&Event::RunFinished {
                run_id: id.into(),
                summary: Summary::default(),
                elapsed_ms: 1,
                cancelled: false,
            })
            .unwrap();
    }

    #[test]
    fn last_results_and_node_history() {
        let tmp = tempfile::tempdir().unwrap();
        let mut store = Store::open(&tmp.path().join("runs.db")).unwrap();
        assert!(store.last_results().unwrap().is_empty());
        record_run(
            &mut store,
            "run-1",
            1,
            &[("a", NodeStatus::Ok), ("b", NodeStatus::Ok)],
        );
        record_run(&mut store, "run-2", 2, &[("a", NodeStatus::Unreachable)]);
        let last = store.last_results().unwrap();
        assert_eq!(last.len(), 2);
        assert_eq!(last["a"].run_id, "run-2");
        assert_eq!(last["a"].status, NodeStatus::Unreachable);
        assert_eq!(last["b"].run_id, "run-1");
        let history = store.node_history("a", 10).unwrap();
        let ids: Vec<&str> = history.iter().map(|(r, _)| r.id.as_str()).collect();
        assert_eq!(ids, ["run-2", "run-1"], "newest first");
        assert_eq!(history[0].1.status, NodeStatus::Unreachable);
        assert_eq!(store.node_history("a", 1).unwrap().len(), 1);
        assert!(store.node_history("nobody", 10).unwrap().is_empty());
    }
}
