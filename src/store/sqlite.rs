//! [`RunStore`] on SQLite (WAL).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension, params};

use super::schema::{self, Migrated};
use super::{
    Approval, ApprovalSignature, ApprovalState, ComplianceRecord, Facts, LastResult, Note, Result,
    Rollup, RunRow, RunState, RunStore, StoreError, TelemetryStore,
};
use crate::bus::{Envelope, Subscriber, SubscriberError};
use crate::fleet::event::{
    Captured, Event, NodeResult, NodeStatus, RunKind, TaskResult, TaskStatus, now_ms,
};

pub struct SqliteStore {
    conn: Connection,
    path: PathBuf,
}

impl SqliteStore {
    /// Open (creating when missing, 0600 in a 0700 directory) and migrate.
    pub fn open(path: &Path) -> Result<SqliteStore> {
        create_private(path)?;
        let open = || -> rusqlite::Result<(Connection, Migrated)> {
            let mut conn = Connection::open(path)?;
            conn.busy_timeout(std::time::Duration::from_secs(5))?;
            // Refuse a newer schema before changing anything, the journal mode included.
            let migrated = match schema::newer_than_latest(&conn)? {
                Some(newer) => Migrated::TooNew(newer),
                None => {
                    conn.pragma_update(None, "journal_mode", "WAL")?;
                    conn.pragma_update(None, "synchronous", "NORMAL")?;
                    schema::migrate(&mut conn)?
                }
            };
            Ok((conn, migrated))
        };
        let (conn, migrated) = open().map_err(|source| StoreError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        if let Migrated::TooNew(found) = migrated {
            return Err(StoreError::TooNew {
                path: path.to_path_buf(),
                found,
                supported: schema::LATEST,
            });
        }
        Ok(SqliteStore {
            conn,
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The schema version of the open store.
    pub fn version(&self) -> Result<i64> {
        Ok(self
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))?)
    }

    fn note(&self, run: &str, node: Option<&str>, kind: &str, message: &str) -> Result<()> {
        self.conn.execute(
            "INSERT INTO run_notes (run_id, at_ms, node, kind, message) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![run, now_ms(), node, kind, message],
        )?;
        Ok(())
    }

    fn node_finished(&mut self, run: &str, r: &NodeResult) -> Result<()> {
        let tx = self.conn.transaction()?;
        write_result(&tx, run, r)?;
        tx.commit()?;
        Ok(())
    }

    fn approval_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Approval> {
        let reasons: String = r.get(3)?;
        let state: String = r.get(6)?;
        Ok(Approval {
            id: r.get(0)?,
            fingerprint: r.get(1)?,
            summary: r.get(2)?,
            reasons: serde_json::from_str(&reasons).unwrap_or_default(),
            requested_by: r.get(4)?,
            requested_ms: r.get(5)?,
            state: ApprovalState::parse(&state)
                .ok_or_else(|| bad_value(6, "approval state", &state))?,
            decided_by: r.get(7)?,
            decided_ms: r.get(8)?,
            comment: r.get(9)?,
        })
    }
}

/// Create the store's directory (0700) and file (0600) when they are missing.
fn create_private(path: &Path) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| StoreError::Io { path, source }
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
        && !dir.exists()
    {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io(dir))?;
    }
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(io(path)(e)),
    }
}

/// One node's result and its task results, inside the caller's transaction.
fn write_result(tx: &rusqlite::Transaction<'_>, run: &str, r: &NodeResult) -> Result<()> {
    tx.execute(
            "INSERT OR REPLACE INTO node_results
             (run_id, node, status, exit_code, signal, duration_ms, error, stdout, stdout_total, stderr, stderr_total, finished_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
            params![run, r.node, r.status.as_str(), r.exit_code, r.signal, r.duration_ms as i64, r.error,
                    r.stdout.bytes, r.stdout.total as i64, r.stderr.bytes, r.stderr.total as i64, now_ms()],
        )?;
    {
        let mut st = tx.prepare_cached(
                "INSERT OR REPLACE INTO task_results (run_id, node, idx, name, status, message, diff, output)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?;
        for t in &r.tasks {
            st.execute(params![
                run,
                r.node,
                t.index as i64,
                t.name,
                t.status.as_str(),
                t.message,
                t.diff,
                t.output
            ])?;
        }
    }
    Ok(())
}

fn bad_value(column: usize, what: &str, value: &str) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(
        column,
        rusqlite::types::Type::Text,
        format!("unknown {what} `{value}`").into(),
    )
}

impl RunStore for SqliteStore {
    fn record(&mut self, e: &Envelope) -> Result<()> {
        let run = &*e.run_id;
        match &e.event {
            Event::RunStarted {
                kind,
                command,
                target,
                nodes,
                forks,
                sot,
                sot_commit,
                overrides,
            } => {
                self.conn.execute(
                    "INSERT INTO runs (id, kind, command, target, sot, sot_commit, forks, node_count, nodes, state, started_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 'running', ?10)",
                    params![run, kind.as_str(), command, target, sot, sot_commit, *forks as i64, nodes.len() as i64,
                            serde_json::to_string(nodes).unwrap_or_default(), e.at_ms],
                )?;
                // A break-glass is part of the run's record (`runs show`).
                for o in overrides {
                    self.note(run, None, "break_glass", o)?;
                }
            }
            Event::NodeFinished { result } => self.node_finished(run, result)?,
            Event::Facts { node, facts } => {
                self.conn.execute(
                    "INSERT OR REPLACE INTO node_facts (node, facts, at_ms) VALUES (?1, ?2, ?3)",
                    params![
                        node,
                        serde_json::to_string(facts).unwrap_or_default(),
                        e.at_ms
                    ],
                )?;
            }
            Event::HostKeyLearned {
                node,
                host,
                fingerprint,
                file,
            } => self.note(
                run,
                Some(node),
                "host_key_learned",
                &format!("trusted {host} {fingerprint} on first use, recorded in {file}"),
            )?,
            Event::Warning { node, message } => {
                self.note(run, node.as_deref(), "warning", message)?
            }
            Event::Compliance {
                node,
                baseline,
                percent,
                passing,
                failing,
                unknown,
                failing_rules,
            } => {
                self.conn.execute(
                    "INSERT OR REPLACE INTO compliance_history (run_id, node, at_ms, baseline, percent, passing, failing, unknown, failing_rules)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                    params![run, node, e.at_ms, baseline, percent, *passing as i64, *failing as i64, *unknown as i64,
                            serde_json::to_string(failing_rules).unwrap_or_default()],
                )?;
            }
            Event::RunFinished {
                summary,
                cancelled,
                dropped_output,
                ..
            } => {
                let state = if *cancelled {
                    RunState::Cancelled
                } else {
                    RunState::Finished
                };
                self.conn.execute(
                    "UPDATE runs SET state = ?2, finished_ms = ?3, ok = ?4, failed = ?5, unreachable = ?6,
                     timed_out = ?7, cancelled = ?8, dropped_output_bytes = ?9 WHERE id = ?1",
                    params![run, state.as_str(), e.at_ms,
                            summary.ok as i64, summary.failed as i64, summary.unreachable as i64,
                            summary.timed_out as i64, summary.cancelled as i64, dropped_output.bytes as i64],
                )?;
            }
            _ => {}
        }
        Ok(())
    }

    fn runs(&self, limit: usize) -> Result<Vec<RunRow>> {
        let mut st = self.conn.prepare_cached(&format!(
            "{RUN_SELECT} ORDER BY started_ms DESC, id DESC LIMIT ?1"
        ))?;
        let rows = st.query_map(params![limit as i64], run_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn run(&self, id: &str) -> Result<Option<RunRow>> {
        if id == "last" {
            return Ok(self.runs(1)?.into_iter().next());
        }
        let mut st = self.conn.prepare_cached(&format!(
            "{RUN_SELECT} WHERE lower(substr(id, 1, length(?1))) = lower(?1) ORDER BY started_ms DESC LIMIT 2"
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

    fn results(&self, run: &RunRow) -> Result<Vec<NodeResult>> {
        let mut st = self.conn.prepare_cached(&format!(
            "SELECT {RESULT_COLUMNS} FROM node_results WHERE run_id = ?1"
        ))?;
        let mut rows: Vec<NodeResult> = st
            .query_map(params![run.id], node_result)?
            .collect::<rusqlite::Result<_>>()?;
        let order: HashMap<&str, usize> = run
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.as_str(), i))
            .collect();
        rows.sort_by_key(|r| order.get(r.node.as_str()).copied().unwrap_or(usize::MAX));
        let at: HashMap<String, usize> = rows
            .iter()
            .enumerate()
            .map(|(i, r)| (r.node.clone(), i))
            .collect();
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
                    status: TaskStatus::parse(&status)
                        .ok_or_else(|| bad_value(3, "task status", &status))?,
                    message: r.get(4)?,
                    diff: r.get(5)?,
                    output: r.get(6)?,
                },
            ))
        })?;
        for t in tasks {
            let (node, task) = t?;
            if let Some(&i) = at.get(&node) {
                rows[i].tasks.push(task);
            }
        }
        Ok(rows)
    }

    fn notes(&self, run: &RunRow) -> Result<Vec<Note>> {
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

    fn facts(&self, node: &str) -> Result<Option<Facts>> {
        Ok(self
            .conn
            .query_row(
                "SELECT facts, at_ms FROM node_facts WHERE node = ?1",
                params![node],
                |r| {
                    let f: String = r.get(0)?;
                    let facts: BTreeMap<String, String> =
                        serde_json::from_str(&f).unwrap_or_default();
                    Ok((facts, r.get(1)?))
                },
            )
            .optional()?)
    }

    fn last_results(&self) -> Result<HashMap<String, LastResult>> {
        // One query for every node (the console asks for thousands at once);
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
                    status: NodeStatus::parse(&status)
                        .ok_or_else(|| bad_value(2, "node status", &status))?,
                    finished_ms: r.get(3)?,
                },
            ))
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn node_history(&self, node: &str, limit: usize) -> Result<Vec<(RunRow, NodeResult)>> {
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

    fn compliance_history(&self, node: &str, limit: usize) -> Result<Vec<ComplianceRecord>> {
        let mut st = self.conn.prepare_cached(&format!(
            "SELECT {COMPLIANCE_COLUMNS} FROM compliance_history WHERE node = ?1 ORDER BY at_ms DESC, rowid DESC LIMIT ?2"
        ))?;
        let rows = st.query_map(params![node, limit as i64], compliance_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn first_compliance(&self, node: &str) -> Result<Option<ComplianceRecord>> {
        let mut st = self.conn.prepare_cached(&format!(
            "SELECT {COMPLIANCE_COLUMNS} FROM compliance_history WHERE node = ?1 ORDER BY at_ms, rowid LIMIT 1"
        ))?;
        Ok(st.query_row(params![node], compliance_row).optional()?)
    }

    fn request_approval(
        &mut self,
        fingerprint: &str,
        summary: &str,
        reasons: &[String],
        requested_by: &str,
    ) -> Result<Approval> {
        if let Some(a) = self.approval_for(fingerprint)?
            && a.state == ApprovalState::Pending
        {
            return Ok(a);
        }
        let id = format!("apr-{}", crate::fleet::event::new_run_id());
        self.conn.execute(
            "INSERT INTO approvals (id, fingerprint, summary, reasons, requested_by, requested_ms, state)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'pending')",
            params![id, fingerprint, summary, serde_json::to_string(reasons).unwrap_or_default(), requested_by, now_ms()],
        )?;
        self.approval_for(fingerprint)?.ok_or_else(|| {
            StoreError::Corrupt(format!("approval {id} vanished after it was written"))
        })
    }

    fn approval_for(&self, fingerprint: &str) -> Result<Option<Approval>> {
        Ok(self
            .conn
            .query_row(
                &format!("{APPROVAL_SELECT} WHERE fingerprint = ?1 ORDER BY requested_ms DESC, rowid DESC LIMIT 1"),
                params![fingerprint],
                SqliteStore::approval_row,
            )
            .optional()?)
    }

    fn approvals(&self, pending_only: bool) -> Result<Vec<Approval>> {
        let mut st = self.conn.prepare_cached(&format!(
            "{APPROVAL_SELECT} WHERE (?1 = 0 OR state = 'pending') ORDER BY requested_ms DESC, rowid DESC"
        ))?;
        let rows = st.query_map(params![pending_only], SqliteStore::approval_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn decide_approval(
        &mut self,
        id: &str,
        state: ApprovalState,
        by: &str,
        comment: Option<&str>,
    ) -> Result<Approval> {
        let changed = self.conn.execute(
            "UPDATE approvals SET state = ?2, decided_by = ?3, decided_ms = ?4, comment = ?5
             WHERE id = ?1 AND state = 'pending'",
            params![id, state.as_str(), by, now_ms(), comment],
        )?;
        let approval = self
            .conn
            .query_row(
                &format!("{APPROVAL_SELECT} WHERE id = ?1"),
                params![id],
                SqliteStore::approval_row,
            )
            .optional()?
            .ok_or_else(|| StoreError::Corrupt(format!("no approval {id}")))?;
        if changed == 0 {
            return Err(StoreError::Corrupt(format!(
                "approval {id} was already {}",
                approval.state.as_str()
            )));
        }
        Ok(approval)
    }

    fn approval(&self, id: &str) -> Result<Option<Approval>> {
        Ok(self
            .conn
            .query_row(
                &format!("{APPROVAL_SELECT} WHERE id = ?1"),
                params![id],
                SqliteStore::approval_row,
            )
            .optional()?)
    }

    fn add_approval_signature(&mut self, s: &ApprovalSignature) -> Result<()> {
        self.conn.execute(
            "INSERT OR REPLACE INTO approval_signatures
             (approval_id, person, key, plan, signature, signed_ms, expires_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                s.approval_id,
                s.person,
                s.key,
                s.plan,
                s.signature,
                s.signed_ms,
                s.expires_ms
            ],
        )?;
        Ok(())
    }

    fn approval_signatures(&self, id: &str) -> Result<Vec<ApprovalSignature>> {
        let mut st = self.conn.prepare_cached(
            "SELECT approval_id, person, key, plan, signature, signed_ms, expires_ms
             FROM approval_signatures WHERE approval_id = ?1 ORDER BY signed_ms, person",
        )?;
        let rows = st.query_map(params![id], |r| {
            Ok(ApprovalSignature {
                approval_id: r.get(0)?,
                person: r.get(1)?,
                key: r.get(2)?,
                plan: r.get(3)?,
                signature: r.get(4)?,
                signed_ms: r.get(5)?,
                expires_ms: r.get(6)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}

impl Subscriber for SqliteStore {
    fn name(&self) -> &'static str {
        "run store"
    }

    fn event(&mut self, envelope: &Envelope) -> std::result::Result<(), SubscriberError> {
        self.record(envelope).map_err(|e| SubscriberError {
            subscriber: "run store",
            message: format!("{}: {e}", self.path.display()),
        })
    }
}

const APPROVAL_SELECT: &str =
    "SELECT id, fingerprint, summary, reasons, requested_by, requested_ms, state,
    decided_by, decided_ms, comment FROM approvals";

const RESULT_COLUMNS: &str = "node, status, exit_code, signal, duration_ms, error, stdout, stdout_total, stderr, stderr_total";

const COMPLIANCE_COLUMNS: &str =
    "run_id, node, at_ms, baseline, percent, passing, failing, unknown, failing_rules";

fn compliance_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ComplianceRecord> {
    let rules: String = r.get(8)?;
    Ok(ComplianceRecord {
        run_id: r.get(0)?,
        node: r.get(1)?,
        at_ms: r.get(2)?,
        baseline: r.get(3)?,
        percent: r.get(4)?,
        passing: r.get::<_, i64>(5)? as usize,
        failing: r.get::<_, i64>(6)? as usize,
        unknown: r.get::<_, i64>(7)? as usize,
        failing_rules: serde_json::from_str(&rules)
            .map_err(|_| bad_value(8, "failing rules", &rules))?,
    })
}

fn node_result(r: &rusqlite::Row<'_>) -> rusqlite::Result<NodeResult> {
    let status: String = r.get(1)?;
    Ok(NodeResult {
        node: r.get(0)?,
        status: NodeStatus::parse(&status).ok_or_else(|| bad_value(1, "node status", &status))?,
        exit_code: r.get(2)?,
        signal: r.get(3)?,
        duration_ms: r.get::<_, i64>(4)? as u64,
        error: r.get(5)?,
        stdout: Captured {
            bytes: r.get(6)?,
            total: r.get::<_, i64>(7)? as u64,
        },
        stderr: Captured {
            bytes: r.get(8)?,
            total: r.get::<_, i64>(9)? as u64,
        },
        tasks: Vec::new(),
    })
}

const RUN_SELECT: &str =
    "SELECT id, kind, command, target, sot, sot_commit, forks, node_count, nodes, state,
    started_ms, finished_ms, ok, failed, unreachable, timed_out, cancelled FROM runs";

fn run_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RunRow> {
    let kind: String = r.get(1)?;
    let nodes: String = r.get(8)?;
    let state: String = r.get(9)?;
    Ok(RunRow {
        id: r.get(0)?,
        kind: RunKind::parse(&kind).ok_or_else(|| bad_value(1, "run kind", &kind))?,
        command: r.get(2)?,
        target: r.get(3)?,
        sot: r.get(4)?,
        sot_commit: r.get(5)?,
        forks: r.get::<_, i64>(6)? as usize,
        node_count: r.get::<_, i64>(7)? as usize,
        nodes: serde_json::from_str(&nodes).unwrap_or_default(),
        state: RunState::parse(&state).ok_or_else(|| bad_value(9, "run state", &state))?,
        started_ms: r.get(10)?,
        finished_ms: r.get(11)?,
        ok: r.get::<_, i64>(12)? as usize,
        failed: r.get::<_, i64>(13)? as usize,
        unreachable: r.get::<_, i64>(14)? as usize,
        timed_out: r.get::<_, i64>(15)? as usize,
        cancelled: r.get::<_, i64>(16)? as usize,
    })
}

impl TelemetryStore for SqliteStore {
    fn write_rollups(&mut self, rows: &[Rollup]) -> Result<()> {
        let tx = self.conn.transaction()?;
        {
            let mut insert = tx.prepare_cached(
                "INSERT OR REPLACE INTO telemetry_rollups (node, agent, minute_ms, samples,
                    cpu_pct_avg, cpu_pct_max, mem_used_pct_avg, load1_avg, root_fs_used_pct,
                    net_rx_bps_avg, net_tx_bps_avg, gpu_util_pct_avg, rss_bytes_max,
                    requests_per_s_avg, errors_per_s_avg, p95_s_max)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
            )?;
            for r in rows {
                insert.execute(params![
                    r.node,
                    r.agent,
                    r.minute_ms,
                    r.samples,
                    r.cpu_pct_avg,
                    r.cpu_pct_max,
                    r.mem_used_pct_avg,
                    r.load1_avg,
                    r.root_fs_used_pct,
                    r.net_rx_bps_avg,
                    r.net_tx_bps_avg,
                    r.gpu_util_pct_avg,
                    r.rss_bytes_max.map(|b| b.min(i64::MAX as u64) as i64),
                    r.requests_per_s_avg,
                    r.errors_per_s_avg,
                    r.p95_s_max,
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn prune_rollups(&mut self, before_ms: i64) -> Result<usize> {
        Ok(self.conn.execute(
            "DELETE FROM telemetry_rollups WHERE minute_ms < ?1",
            params![before_ms],
        )?)
    }

    fn rollups(&self, node: &str, since_ms: i64) -> Result<Vec<Rollup>> {
        let mut q = self.conn.prepare(
            "SELECT node, agent, minute_ms, samples, cpu_pct_avg, cpu_pct_max, mem_used_pct_avg,
                    load1_avg, root_fs_used_pct, net_rx_bps_avg, net_tx_bps_avg, gpu_util_pct_avg,
                    rss_bytes_max, requests_per_s_avg, errors_per_s_avg, p95_s_max
             FROM telemetry_rollups WHERE node = ?1 AND minute_ms >= ?2
             ORDER BY minute_ms, agent",
        )?;
        let rows = q.query_map(params![node, since_ms], |r| {
            Ok(Rollup {
                node: r.get(0)?,
                agent: r.get(1)?,
                minute_ms: r.get(2)?,
                samples: r.get(3)?,
                cpu_pct_avg: r.get(4)?,
                cpu_pct_max: r.get(5)?,
                mem_used_pct_avg: r.get(6)?,
                load1_avg: r.get(7)?,
                root_fs_used_pct: r.get(8)?,
                net_rx_bps_avg: r.get(9)?,
                net_tx_bps_avg: r.get(10)?,
                gpu_util_pct_avg: r.get(11)?,
                rss_bytes_max: r.get::<_, Option<i64>>(12)?.map(|b| b.max(0) as u64),
                requests_per_s_avg: r.get(13)?,
                errors_per_s_avg: r.get(14)?,
                p95_s_max: r.get(15)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}

#[cfg(test)]
mod tests;

mod kills;
mod reflections;
mod rollouts;
mod work;
