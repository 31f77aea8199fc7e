//! [`RunStore`] on PostgreSQL: the shared store of a team, selected with
//! `--db postgres://…`. It behaves as [`super::SqliteStore`] does, query for
//! query; the connection lives on its own thread ([`worker`]).

use std::collections::{BTreeMap, HashMap};

use postgres::Row;
use postgres::types::ToSql;

use super::location::PgUrl;
use super::schema::LATEST;
use super::{
    Approval, ApprovalSignature, ApprovalState, ComplianceRecord, Facts, LastResult, Note, Result,
    Rollup, RunRow, RunState, RunStore, StoreError, TelemetryStore,
};
use crate::bus::{Envelope, Subscriber, SubscriberError};
use crate::fleet::event::{
    Captured, Event, NodeResult, NodeStatus, RunKind, TaskResult, TaskStatus, now_ms,
};

#[doc(hidden)]
pub mod cluster;
mod kills;
mod reflections;
mod rollouts;
mod schema;
#[cfg(test)]
mod tests;
mod work;
mod worker;

/// One query parameter, owned: it travels to the connection thread.
type Param = Box<dyn ToSql + Send + Sync>;

/// `args![a, b]`: owned query parameters.
macro_rules! args {
    ($($e:expr),* $(,)?) => { vec![$(Box::new($e) as $crate::store::postgres::Param),*] };
}
use args;

pub struct PgStore {
    worker: worker::Worker,
    url: PgUrl,
}

impl PgStore {
    /// Connect (no TLS: a loopback or unix-socket server, or a tunnel) and
    /// migrate. A database written by a newer maestro is refused untouched.
    pub fn open(url: &PgUrl) -> Result<PgStore> {
        let failed = |e: Box<dyn std::error::Error + Send + Sync>| StoreError::PgOpen {
            url: url.to_string(),
            // "error connecting to server: Connection refused (os error 111)"
            cause: std::iter::successors(Some(&*e as &dyn std::error::Error), |e| e.source())
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(": "),
        };
        let worker = worker::Worker::connect(url.secret()).map_err(failed)?;
        let migrated = worker
            .run(schema::migrate)?
            .map_err(|e| failed(Box::new(e)))?;
        if let schema::Migrated::TooNew(found) = migrated {
            return Err(StoreError::TooNewDatabase {
                url: url.to_string(),
                found,
                supported: LATEST,
            });
        }
        Ok(PgStore {
            worker,
            url: url.clone(),
        })
    }

    pub fn url(&self) -> &PgUrl {
        &self.url
    }

    /// The schema version of the open store.
    pub fn version(&self) -> Result<i64> {
        Ok(self.worker.run(schema::version)??)
    }

    /// Run `job` on this store's connection, for a module that keeps its
    /// own table in the team's database (the ledger: `crate::ledger`). The
    /// job runs on the connection's thread, so it may block and stream.
    pub(crate) fn on_connection<R: Send + 'static>(
        &self,
        job: impl FnOnce(&mut postgres::Client) -> R + Send + 'static,
    ) -> Result<R> {
        Ok(self.worker.run(job)?)
    }

    /// Run `job` on the connection.
    fn with<R: Send + 'static>(
        &self,
        job: impl FnOnce(&mut postgres::Client) -> std::result::Result<R, postgres::Error>
        + Send
        + 'static,
    ) -> Result<R> {
        Ok(self.worker.run(job)??)
    }

    fn query(&self, sql: impl Into<String>, args: Vec<Param>) -> Result<Vec<Row>> {
        let sql = sql.into();
        self.with(move |c| {
            let statement = prepared(c, &sql)?;
            c.query(&statement, &borrow(&args))
        })
    }

    fn query_opt(&self, sql: impl Into<String>, args: Vec<Param>) -> Result<Option<Row>> {
        let sql = sql.into();
        self.with(move |c| {
            let statement = prepared(c, &sql)?;
            c.query_opt(&statement, &borrow(&args))
        })
    }

    fn execute(&self, sql: impl Into<String>, args: Vec<Param>) -> Result<u64> {
        let sql = sql.into();
        self.with(move |c| {
            let statement = prepared(c, &sql)?;
            c.execute(&statement, &borrow(&args))
        })
    }

    /// Several statements in one transaction (one alone needs none).
    fn transaction(&self, statements: Vec<(String, Vec<Param>)>) -> Result<()> {
        self.with(move |c| {
            if let [(sql, args)] = statements.as_slice() {
                let statement = prepared(c, sql)?;
                return c.execute(&statement, &borrow(args)).map(drop);
            }
            let mut tx = c.transaction()?;
            execute_all(&mut tx, &statements)?;
            tx.commit()
        })
    }

    fn note(&self, run: &str, node: Option<&str>, kind: &str, message: &str) -> Result<()> {
        self.execute(
            "INSERT INTO run_notes (run_id, at_ms, node, kind, message) VALUES ($1, $2, $3, $4, $5)",
            args![
                run.to_string(),
                now_ms(),
                node.map(str::to_string),
                kind.to_string(),
                message.to_string()
            ],
        )?;
        Ok(())
    }

    fn node_finished(&self, run: &str, r: &NodeResult) -> Result<()> {
        self.transaction(result_statements(run, r))
    }

    fn approval_where(&self, clause: &str, args: Vec<Param>) -> Result<Option<Approval>> {
        self.query_opt(format!("{APPROVAL_SELECT} {clause}"), args)?
            .map(|r| approval_row(&r))
            .transpose()
    }
}

/// One node's result and its task results, as statements for one transaction.
fn result_statements(run: &str, r: &NodeResult) -> Vec<(String, Vec<Param>)> {
    let mut statements = vec![(
            "INSERT INTO node_results
             (run_id, node, status, exit_code, signal, duration_ms, error, stdout, stdout_total, stderr, stderr_total, finished_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
             ON CONFLICT (run_id, node) DO UPDATE SET status = excluded.status,
                exit_code = excluded.exit_code, signal = excluded.signal,
                duration_ms = excluded.duration_ms, error = excluded.error,
                stdout = excluded.stdout, stdout_total = excluded.stdout_total,
                stderr = excluded.stderr, stderr_total = excluded.stderr_total,
                finished_ms = excluded.finished_ms"
                .to_string(),
            args![
                run.to_string(),
                r.node.clone(),
                r.status.as_str(),
                r.exit_code.map(i64::from),
                r.signal.clone(),
                r.duration_ms as i64,
                r.error.clone(),
                r.stdout.bytes.clone(),
                r.stdout.total as i64,
                r.stderr.bytes.clone(),
                r.stderr.total as i64,
                now_ms()
            ],
        )];
    for t in &r.tasks {
        statements.push((
            "INSERT INTO task_results (run_id, node, idx, name, status, message, diff, output)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                 ON CONFLICT (run_id, node, idx) DO UPDATE SET name = excluded.name,
                    status = excluded.status, message = excluded.message,
                    diff = excluded.diff, output = excluded.output"
                .to_string(),
            args![
                run.to_string(),
                r.node.clone(),
                t.index as i64,
                t.name.clone(),
                t.status.as_str(),
                t.message.clone(),
                t.diff.clone(),
                t.output.clone()
            ],
        ));
    }
    statements
}

/// The parameters as the client takes them.
fn borrow(args: &[Param]) -> Vec<&(dyn ToSql + Sync)> {
    args.iter().map(|a| &**a as &(dyn ToSql + Sync)).collect()
}

thread_local! {
    /// The statements prepared on this thread's connection, by their SQL.
    /// Each [`worker`] thread owns exactly one connection for its whole
    /// life, so a statement here is always the connection's: it is parsed
    /// once per connection instead of on every call (a round trip saved on
    /// each write of a run). A prepared statement is session-wide and
    /// survives the transaction that prepared it, even a rolled-back one.
    static PREPARED: std::cell::RefCell<HashMap<String, postgres::Statement>> =
        std::cell::RefCell::new(HashMap::new());
}

/// At most this many statements are kept per connection; maestro's SQL is a
/// fixed set far smaller, so the bound only guards against a future caller
/// that builds its SQL from values.
const PREPARED_MAX: usize = 512;

/// `sql` prepared on `client` (a connection or one of its transactions),
/// from [`PREPARED`] after the first time. Call only on a worker thread.
fn prepared(
    client: &mut impl postgres::GenericClient,
    sql: &str,
) -> std::result::Result<postgres::Statement, postgres::Error> {
    if let Some(statement) = PREPARED.with(|p| p.borrow().get(sql).cloned()) {
        return Ok(statement);
    }
    let statement = client.prepare(sql)?;
    PREPARED.with(|p| {
        let mut p = p.borrow_mut();
        if p.len() >= PREPARED_MAX {
            p.clear();
        }
        p.insert(sql.to_string(), statement.clone());
    });
    Ok(statement)
}

/// Every statement, in order, on `tx`.
fn execute_all(
    tx: &mut postgres::Transaction<'_>,
    statements: &[(String, Vec<Param>)],
) -> std::result::Result<(), postgres::Error> {
    for (sql, args) in statements {
        let statement = prepared(tx, sql)?;
        tx.execute(&statement, &borrow(args))?;
    }
    Ok(())
}

/// A value maestro did not write.
pub(super) fn bad_value(what: &str, value: &str) -> StoreError {
    StoreError::Corrupt(format!("unknown {what} `{value}`"))
}

fn count(r: &Row, i: usize) -> Result<usize> {
    Ok(r.try_get::<_, i64>(i)?.max(0) as usize)
}

fn approval_row(r: &Row) -> Result<Approval> {
    let reasons: String = r.try_get(3)?;
    let state: String = r.try_get(6)?;
    Ok(Approval {
        id: r.try_get(0)?,
        fingerprint: r.try_get(1)?,
        summary: r.try_get(2)?,
        reasons: serde_json::from_str(&reasons).unwrap_or_default(),
        requested_by: r.try_get(4)?,
        requested_ms: r.try_get(5)?,
        state: ApprovalState::parse(&state).ok_or_else(|| bad_value("approval state", &state))?,
        decided_by: r.try_get(7)?,
        decided_ms: r.try_get(8)?,
        comment: r.try_get(9)?,
    })
}

fn compliance_row(r: &Row) -> Result<ComplianceRecord> {
    let rules: String = r.try_get(8)?;
    Ok(ComplianceRecord {
        run_id: r.try_get(0)?,
        node: r.try_get(1)?,
        at_ms: r.try_get(2)?,
        baseline: r.try_get(3)?,
        percent: r.try_get(4)?,
        passing: count(r, 5)?,
        failing: count(r, 6)?,
        unknown: count(r, 7)?,
        failing_rules: serde_json::from_str(&rules)
            .map_err(|_| bad_value("failing rules", &rules))?,
    })
}

fn node_result(r: &Row) -> Result<NodeResult> {
    let status: String = r.try_get(1)?;
    Ok(NodeResult {
        node: r.try_get(0)?,
        status: NodeStatus::parse(&status).ok_or_else(|| bad_value("node status", &status))?,
        exit_code: r.try_get::<_, Option<i64>>(2)?.map(|c| c as u32),
        signal: r.try_get(3)?,
        duration_ms: r.try_get::<_, i64>(4)?.max(0) as u64,
        error: r.try_get(5)?,
        stdout: Captured {
            bytes: r.try_get(6)?,
            total: r.try_get::<_, i64>(7)?.max(0) as u64,
        },
        stderr: Captured {
            bytes: r.try_get(8)?,
            total: r.try_get::<_, i64>(9)?.max(0) as u64,
        },
        tasks: Vec::new(),
    })
}

fn run_row(r: &Row) -> Result<RunRow> {
    let kind: String = r.try_get(1)?;
    let nodes: String = r.try_get(8)?;
    let state: String = r.try_get(9)?;
    Ok(RunRow {
        id: r.try_get(0)?,
        kind: RunKind::parse(&kind).ok_or_else(|| bad_value("run kind", &kind))?,
        command: r.try_get(2)?,
        target: r.try_get(3)?,
        sot: r.try_get(4)?,
        sot_commit: r.try_get(5)?,
        forks: count(r, 6)?,
        node_count: count(r, 7)?,
        nodes: serde_json::from_str(&nodes).unwrap_or_default(),
        state: RunState::parse(&state).ok_or_else(|| bad_value("run state", &state))?,
        started_ms: r.try_get(10)?,
        finished_ms: r.try_get(11)?,
        ok: count(r, 12)?,
        failed: count(r, 13)?,
        unreachable: count(r, 14)?,
        timed_out: count(r, 15)?,
        cancelled: count(r, 16)?,
    })
}

fn rows<T>(rows: Vec<Row>, map: impl Fn(&Row) -> Result<T>) -> Result<Vec<T>> {
    rows.iter().map(map).collect()
}

const APPROVAL_SELECT: &str =
    "SELECT id, fingerprint, summary, reasons, requested_by, requested_ms, state,
    decided_by, decided_ms, comment FROM approvals";

const RESULT_COLUMNS: &str = "node, status, exit_code, signal, duration_ms, error, stdout, stdout_total, stderr, stderr_total";

const COMPLIANCE_COLUMNS: &str =
    "run_id, node, at_ms, baseline, percent, passing, failing, unknown, failing_rules";

const RUN_SELECT: &str =
    "SELECT id, kind, command, target, sot, sot_commit, forks, node_count, nodes, state,
    started_ms, finished_ms, ok, failed, unreachable, timed_out, cancelled FROM runs";

impl RunStore for PgStore {
    fn record(&mut self, e: &Envelope) -> Result<()> {
        let run = e.run_id.to_string();
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
                self.execute(
                    "INSERT INTO runs (id, kind, command, target, sot, sot_commit, forks, node_count, nodes, state, started_ms)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'running', $10)",
                    args![run.clone(), kind.as_str(), command.clone(), target.clone(), sot.clone(),
                          sot_commit.clone(), *forks as i64, nodes.len() as i64,
                          serde_json::to_string(nodes).unwrap_or_default(), e.at_ms],
                )?;
                // A break-glass is part of the run's record (`runs show`).
                for o in overrides {
                    self.note(&run, None, "break_glass", o)?;
                }
            }
            Event::NodeFinished { result } => self.node_finished(&run, result)?,
            Event::Facts { node, facts } => {
                self.execute(
                    "INSERT INTO node_facts (node, facts, at_ms) VALUES ($1, $2, $3)
                     ON CONFLICT (node) DO UPDATE SET facts = excluded.facts, at_ms = excluded.at_ms",
                    args![
                        node.clone(),
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
                &run,
                Some(node),
                "host_key_learned",
                &format!("trusted {host} {fingerprint} on first use, recorded in {file}"),
            )?,
            Event::Warning { node, message } => {
                self.note(&run, node.as_deref(), "warning", message)?
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
                self.execute(
                    "INSERT INTO compliance_history (run_id, node, at_ms, baseline, percent, passing, failing, unknown, failing_rules)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                     ON CONFLICT (run_id, node) DO UPDATE SET seq = DEFAULT, at_ms = excluded.at_ms,
                        baseline = excluded.baseline, percent = excluded.percent,
                        passing = excluded.passing, failing = excluded.failing,
                        unknown = excluded.unknown, failing_rules = excluded.failing_rules",
                    args![run.clone(), node.clone(), e.at_ms, baseline.clone(), *percent,
                          *passing as i64, *failing as i64, *unknown as i64,
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
                self.execute(
                    "UPDATE runs SET state = $2, finished_ms = $3, ok = $4, failed = $5, unreachable = $6,
                     timed_out = $7, cancelled = $8, dropped_output_bytes = $9 WHERE id = $1",
                    args![run.clone(), state.as_str(), e.at_ms,
                          summary.ok as i64, summary.failed as i64, summary.unreachable as i64,
                          summary.timed_out as i64, summary.cancelled as i64, dropped_output.bytes as i64],
                )?;
            }
            _ => {}
        }
        Ok(())
    }

    fn runs(&self, limit: usize) -> Result<Vec<RunRow>> {
        rows(
            self.query(
                format!("{RUN_SELECT} ORDER BY started_ms DESC, id DESC LIMIT $1"),
                args![limit as i64],
            )?,
            run_row,
        )
    }

    fn run(&self, id: &str) -> Result<Option<RunRow>> {
        if id == "last" {
            return Ok(self.runs(1)?.into_iter().next());
        }
        // A prefix, compared as text (no LIKE: `_` and `%` are not
        // wildcards), ignoring case as SQLite's store does.
        let found = rows(
            self.query(
                format!(
                    "{RUN_SELECT} WHERE lower(left(id, length($1::text))) = lower($1::text) ORDER BY started_ms DESC LIMIT 2"
                ),
                args![id.to_string()],
            )?,
            run_row,
        )?;
        Ok(if found.len() == 1 {
            found.into_iter().next()
        } else {
            found.into_iter().find(|r| r.id == id)
        })
    }

    fn results(&self, run: &RunRow) -> Result<Vec<NodeResult>> {
        let mut results = rows(
            self.query(
                format!("SELECT {RESULT_COLUMNS} FROM node_results WHERE run_id = $1"),
                args![run.id.clone()],
            )?,
            node_result,
        )?;
        let order: HashMap<&str, usize> = run
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.as_str(), i))
            .collect();
        results.sort_by_key(|r| order.get(r.node.as_str()).copied().unwrap_or(usize::MAX));
        let at: HashMap<String, usize> = results
            .iter()
            .enumerate()
            .map(|(i, r)| (r.node.clone(), i))
            .collect();
        let tasks = self.query(
            "SELECT node, idx, name, status, message, diff, output FROM task_results WHERE run_id = $1 ORDER BY node, idx",
            args![run.id.clone()],
        )?;
        for r in &tasks {
            let node: String = r.try_get(0)?;
            let status: String = r.try_get(3)?;
            let task = TaskResult {
                index: count(r, 1)?,
                name: r.try_get(2)?,
                status: TaskStatus::parse(&status)
                    .ok_or_else(|| bad_value("task status", &status))?,
                message: r.try_get(4)?,
                diff: r.try_get(5)?,
                output: r.try_get(6)?,
            };
            if let Some(&i) = at.get(&node) {
                results[i].tasks.push(task);
            }
        }
        Ok(results)
    }

    fn notes(&self, run: &RunRow) -> Result<Vec<Note>> {
        rows(
            self.query(
                "SELECT at_ms, node, kind, message FROM run_notes WHERE run_id = $1 ORDER BY at_ms, seq",
                args![run.id.clone()],
            )?,
            |r| {
                Ok(Note {
                    at_ms: r.try_get(0)?,
                    node: r.try_get(1)?,
                    kind: r.try_get(2)?,
                    message: r.try_get(3)?,
                })
            },
        )
    }

    fn facts(&self, node: &str) -> Result<Option<Facts>> {
        let Some(r) = self.query_opt(
            "SELECT facts, at_ms FROM node_facts WHERE node = $1",
            args![node.to_string()],
        )?
        else {
            return Ok(None);
        };
        let f: String = r.try_get(0)?;
        let facts: BTreeMap<String, String> = serde_json::from_str(&f).unwrap_or_default();
        Ok(Some((facts, r.try_get(1)?)))
    }

    fn last_results(&self) -> Result<HashMap<String, LastResult>> {
        // One query for every node (the console asks for thousands at once).
        let found = self.query(
            "SELECT DISTINCT ON (node) node, run_id, status, finished_ms FROM node_results
             ORDER BY node, finished_ms DESC",
            args![],
        )?;
        found
            .iter()
            .map(|r| {
                let status: String = r.try_get(2)?;
                Ok((
                    r.try_get(0)?,
                    LastResult {
                        run_id: r.try_get(1)?,
                        status: NodeStatus::parse(&status)
                            .ok_or_else(|| bad_value("node status", &status))?,
                        finished_ms: r.try_get(3)?,
                    },
                ))
            })
            .collect()
    }

    fn node_history(&self, node: &str, limit: usize) -> Result<Vec<(RunRow, NodeResult)>> {
        let ids = self.query(
            "SELECT run_id FROM node_results WHERE node = $1 ORDER BY finished_ms DESC LIMIT $2",
            args![node.to_string(), limit as i64],
        )?;
        let mut out = Vec::with_capacity(ids.len());
        for id in &ids {
            let id: String = id.try_get(0)?;
            let Some(run) = self.run(&id)? else { continue };
            if let Some(r) = self.query_opt(
                format!(
                    "SELECT {RESULT_COLUMNS} FROM node_results WHERE run_id = $1 AND node = $2"
                ),
                args![run.id.clone(), node.to_string()],
            )? {
                out.push((run, node_result(&r)?));
            }
        }
        Ok(out)
    }

    fn compliance_history(&self, node: &str, limit: usize) -> Result<Vec<ComplianceRecord>> {
        rows(
            self.query(
                format!("SELECT {COMPLIANCE_COLUMNS} FROM compliance_history WHERE node = $1 ORDER BY at_ms DESC, seq DESC LIMIT $2"),
                args![node.to_string(), limit as i64],
            )?,
            compliance_row,
        )
    }

    fn first_compliance(&self, node: &str) -> Result<Option<ComplianceRecord>> {
        self.query_opt(
            format!("SELECT {COMPLIANCE_COLUMNS} FROM compliance_history WHERE node = $1 ORDER BY at_ms, seq LIMIT 1"),
            args![node.to_string()],
        )?
        .map(|r| compliance_row(&r))
        .transpose()
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
        self.execute(
            "INSERT INTO approvals (id, fingerprint, summary, reasons, requested_by, requested_ms, state)
             VALUES ($1, $2, $3, $4, $5, $6, 'pending')",
            args![id.clone(), fingerprint.to_string(), summary.to_string(),
                  serde_json::to_string(reasons).unwrap_or_default(), requested_by.to_string(), now_ms()],
        )?;
        self.approval_for(fingerprint)?.ok_or_else(|| {
            StoreError::Corrupt(format!("approval {id} vanished after it was written"))
        })
    }

    fn approval_for(&self, fingerprint: &str) -> Result<Option<Approval>> {
        self.approval_where(
            "WHERE fingerprint = $1 ORDER BY requested_ms DESC, seq DESC LIMIT 1",
            args![fingerprint.to_string()],
        )
    }

    fn approvals(&self, pending_only: bool) -> Result<Vec<Approval>> {
        rows(
            self.query(
                format!("{APPROVAL_SELECT} WHERE (NOT $1 OR state = 'pending') ORDER BY requested_ms DESC, seq DESC"),
                args![pending_only],
            )?,
            approval_row,
        )
    }

    fn decide_approval(
        &mut self,
        id: &str,
        state: ApprovalState,
        by: &str,
        comment: Option<&str>,
    ) -> Result<Approval> {
        let changed = self.execute(
            "UPDATE approvals SET state = $2, decided_by = $3, decided_ms = $4, comment = $5
             WHERE id = $1 AND state = 'pending'",
            args![
                id.to_string(),
                state.as_str(),
                by.to_string(),
                now_ms(),
                comment.map(str::to_string)
            ],
        )?;
        let approval = self
            .approval(id)?
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
        self.approval_where("WHERE id = $1", args![id.to_string()])
    }

    fn add_approval_signature(&mut self, s: &ApprovalSignature) -> Result<()> {
        self.execute(
            "INSERT INTO approval_signatures
             (approval_id, person, key, plan, signature, signed_ms, expires_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (approval_id, person) DO UPDATE SET key = excluded.key,
                plan = excluded.plan, signature = excluded.signature,
                signed_ms = excluded.signed_ms, expires_ms = excluded.expires_ms",
            args![
                s.approval_id.clone(),
                s.person.clone(),
                s.key.clone(),
                s.plan.clone(),
                s.signature.clone(),
                s.signed_ms,
                s.expires_ms
            ],
        )?;
        Ok(())
    }

    fn approval_signatures(&self, id: &str) -> Result<Vec<ApprovalSignature>> {
        rows(
            self.query(
                "SELECT approval_id, person, key, plan, signature, signed_ms, expires_ms
                 FROM approval_signatures WHERE approval_id = $1 ORDER BY signed_ms, person",
                args![id.to_string()],
            )?,
            |r| {
                Ok(ApprovalSignature {
                    approval_id: r.try_get(0)?,
                    person: r.try_get(1)?,
                    key: r.try_get(2)?,
                    plan: r.try_get(3)?,
                    signature: r.try_get(4)?,
                    signed_ms: r.try_get(5)?,
                    expires_ms: r.try_get(6)?,
                })
            },
        )
    }
}

impl Subscriber for PgStore {
    fn name(&self) -> &'static str {
        "run store"
    }

    fn event(&mut self, envelope: &Envelope) -> std::result::Result<(), SubscriberError> {
        self.record(envelope).map_err(|e| SubscriberError {
            subscriber: "run store",
            message: format!("{}: {e}", self.url),
        })
    }
}

impl TelemetryStore for PgStore {
    fn write_rollups(&mut self, rollups: &[Rollup]) -> Result<()> {
        let statements = rollups
            .iter()
            .map(|r| {
                (
                    "INSERT INTO telemetry_rollups (node, agent, minute_ms, samples,
                        cpu_pct_avg, cpu_pct_max, mem_used_pct_avg, load1_avg, root_fs_used_pct,
                        net_rx_bps_avg, net_tx_bps_avg, gpu_util_pct_avg, rss_bytes_max,
                        requests_per_s_avg, errors_per_s_avg, p95_s_max)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
                     ON CONFLICT (node, agent, minute_ms) DO UPDATE SET samples = excluded.samples,
                        cpu_pct_avg = excluded.cpu_pct_avg, cpu_pct_max = excluded.cpu_pct_max,
                        mem_used_pct_avg = excluded.mem_used_pct_avg, load1_avg = excluded.load1_avg,
                        root_fs_used_pct = excluded.root_fs_used_pct,
                        net_rx_bps_avg = excluded.net_rx_bps_avg, net_tx_bps_avg = excluded.net_tx_bps_avg,
                        gpu_util_pct_avg = excluded.gpu_util_pct_avg, rss_bytes_max = excluded.rss_bytes_max,
                        requests_per_s_avg = excluded.requests_per_s_avg,
                        errors_per_s_avg = excluded.errors_per_s_avg, p95_s_max = excluded.p95_s_max"
                        .to_string(),
                    args![
                        r.node.clone(),
                        r.agent.clone(),
                        r.minute_ms,
                        i64::from(r.samples),
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
                    ],
                )
            })
            .collect();
        self.transaction(statements)
    }

    fn prune_rollups(&mut self, before_ms: i64) -> Result<usize> {
        Ok(self.execute(
            "DELETE FROM telemetry_rollups WHERE minute_ms < $1",
            args![before_ms],
        )? as usize)
    }

    fn rollups(&self, node: &str, since_ms: i64) -> Result<Vec<Rollup>> {
        rows(
            self.query(
                "SELECT node, agent, minute_ms, samples, cpu_pct_avg, cpu_pct_max, mem_used_pct_avg,
                        load1_avg, root_fs_used_pct, net_rx_bps_avg, net_tx_bps_avg, gpu_util_pct_avg,
                        rss_bytes_max, requests_per_s_avg, errors_per_s_avg, p95_s_max
                 FROM telemetry_rollups WHERE node = $1 AND minute_ms >= $2
                 ORDER BY minute_ms, agent",
                args![node.to_string(), since_ms],
            )?,
            |r| {
                Ok(Rollup {
                    node: r.try_get(0)?,
                    agent: r.try_get(1)?,
                    minute_ms: r.try_get(2)?,
                    samples: r.try_get::<_, i64>(3)?.clamp(0, u32::MAX.into()) as u32,
                    cpu_pct_avg: r.try_get(4)?,
                    cpu_pct_max: r.try_get(5)?,
                    mem_used_pct_avg: r.try_get(6)?,
                    load1_avg: r.try_get(7)?,
                    root_fs_used_pct: r.try_get(8)?,
                    net_rx_bps_avg: r.try_get(9)?,
                    net_tx_bps_avg: r.try_get(10)?,
                    gpu_util_pct_avg: r.try_get(11)?,
                    rss_bytes_max: r.try_get::<_, Option<i64>>(12)?.map(|b| b.max(0) as u64),
                    requests_per_s_avg: r.try_get(13)?,
                    errors_per_s_avg: r.try_get(14)?,
                    p95_s_max: r.try_get(15)?,
                })
            },
        )
    }
}
