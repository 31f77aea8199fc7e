//! The PostgreSQL schema: [`MIGRATIONS`] is step for step the DDL of
//! [`crate::store::schema::MIGRATIONS`] (same version numbers, tables,
//! columns and constraints), in PostgreSQL's types: BIGINT for SQLite's
//! INTEGER (milliseconds, counts), DOUBLE PRECISION for REAL, BYTEA for BLOB,
//! BOOLEAN for a flag, and a BIGSERIAL `seq` where SQLite orders by `rowid`.
//! One step has no SQLite twin: 8, the evidence ledger of a team sharing
//! the database (SQLite's 8 is empty: its ledger is a file beside it).
//! The version is the one row of `maestro_schema`.

use postgres::Transaction;

use crate::store::schema::LATEST;

pub const MIGRATIONS: &[&str] = &[
    // 1: the schema of the first release.
    "
    CREATE TABLE runs (
        id          TEXT PRIMARY KEY,
        kind        TEXT NOT NULL,
        command     TEXT NOT NULL,
        target      TEXT NOT NULL,
        sot         TEXT NOT NULL,
        forks       BIGINT NOT NULL,
        node_count  BIGINT NOT NULL,
        nodes       TEXT NOT NULL,
        state       TEXT NOT NULL,
        started_ms  BIGINT NOT NULL,
        finished_ms BIGINT,
        ok BIGINT NOT NULL DEFAULT 0, failed BIGINT NOT NULL DEFAULT 0,
        unreachable BIGINT NOT NULL DEFAULT 0, timed_out BIGINT NOT NULL DEFAULT 0,
        cancelled BIGINT NOT NULL DEFAULT 0
    );
    CREATE TABLE node_results (
        run_id       TEXT NOT NULL REFERENCES runs(id),
        node         TEXT NOT NULL,
        status       TEXT NOT NULL,
        exit_code    BIGINT,
        signal       TEXT,
        duration_ms  BIGINT NOT NULL,
        error        TEXT,
        stdout       BYTEA NOT NULL,
        stdout_total BIGINT NOT NULL,
        stderr       BYTEA NOT NULL,
        stderr_total BIGINT NOT NULL,
        finished_ms  BIGINT NOT NULL,
        PRIMARY KEY (run_id, node)
    );
    CREATE INDEX node_results_by_node ON node_results(node, finished_ms);
    CREATE TABLE task_results (
        run_id  TEXT NOT NULL REFERENCES runs(id),
        node    TEXT NOT NULL,
        idx     BIGINT NOT NULL,
        name    TEXT NOT NULL,
        status  TEXT NOT NULL,
        message TEXT NOT NULL,
        diff    TEXT,
        output  TEXT,
        PRIMARY KEY (run_id, node, idx)
    );
    CREATE TABLE node_facts (
        node  TEXT PRIMARY KEY,
        facts TEXT NOT NULL,
        at_ms BIGINT NOT NULL
    );
    CREATE TABLE run_notes (
        seq     BIGSERIAL PRIMARY KEY,
        run_id  TEXT NOT NULL REFERENCES runs(id),
        at_ms   BIGINT NOT NULL,
        node    TEXT,
        kind    TEXT NOT NULL,
        message TEXT NOT NULL
    );
    ",
    // 2: the SoT commit of each run, output dropped under backpressure, and
    // approvals held by the admission gate.
    "
    ALTER TABLE runs ADD COLUMN sot_commit TEXT;
    ALTER TABLE runs ADD COLUMN dropped_output_bytes BIGINT NOT NULL DEFAULT 0;
    CREATE TABLE approvals (
        id           TEXT PRIMARY KEY,
        seq          BIGSERIAL NOT NULL,
        fingerprint  TEXT NOT NULL,
        summary      TEXT NOT NULL,
        reasons      TEXT NOT NULL,
        requested_by TEXT NOT NULL,
        requested_ms BIGINT NOT NULL,
        state        TEXT NOT NULL,
        decided_by   TEXT,
        decided_ms   BIGINT,
        comment      TEXT
    );
    CREATE INDEX approvals_by_fingerprint ON approvals(fingerprint, requested_ms);
    CREATE INDEX run_notes_by_run ON run_notes(run_id);
    ",
    // 3: one-minute telemetry rollups per node (agent '') and per agent.
    "
    CREATE TABLE telemetry_rollups (
        node           TEXT NOT NULL,
        agent          TEXT NOT NULL,
        minute_ms      BIGINT NOT NULL,
        samples        BIGINT NOT NULL,
        cpu_pct_avg    DOUBLE PRECISION,
        cpu_pct_max    DOUBLE PRECISION,
        mem_used_pct_avg DOUBLE PRECISION,
        load1_avg      DOUBLE PRECISION,
        root_fs_used_pct DOUBLE PRECISION,
        net_rx_bps_avg DOUBLE PRECISION,
        net_tx_bps_avg DOUBLE PRECISION,
        gpu_util_pct_avg DOUBLE PRECISION,
        rss_bytes_max  BIGINT,
        requests_per_s_avg DOUBLE PRECISION,
        errors_per_s_avg DOUBLE PRECISION,
        p95_s_max      DOUBLE PRECISION,
        PRIMARY KEY (node, agent, minute_ms)
    );
    CREATE INDEX telemetry_rollups_by_minute ON telemetry_rollups(minute_ms);
    ",
    // 4: each node's compliance at every hardening audit.
    "
    CREATE TABLE compliance_history (
        run_id        TEXT NOT NULL REFERENCES runs(id),
        seq           BIGSERIAL NOT NULL,
        node          TEXT NOT NULL,
        at_ms         BIGINT NOT NULL,
        baseline      TEXT NOT NULL,
        percent       DOUBLE PRECISION NOT NULL,
        passing       BIGINT NOT NULL,
        failing       BIGINT NOT NULL,
        unknown       BIGINT NOT NULL,
        failing_rules TEXT NOT NULL,
        PRIMARY KEY (run_id, node)
    );
    CREATE INDEX compliance_by_node ON compliance_history(node, at_ms);
    ",
    // 5: rollouts, their journals and gate measurements. The partial unique
    // index is what keeps two controllers from starting two active
    // rollouts of one agent.
    "
    CREATE TABLE rollouts (
        id           TEXT PRIMARY KEY,
        agent        TEXT NOT NULL,
        from_version TEXT,
        to_version   TEXT NOT NULL,
        strategy     TEXT NOT NULL,
        definition   TEXT NOT NULL,
        target       TEXT NOT NULL,
        nodes        TEXT NOT NULL,
        attempt      BIGINT NOT NULL,
        phase        TEXT NOT NULL,
        step         BIGINT NOT NULL,
        weight       BIGINT NOT NULL,
        status       TEXT NOT NULL,
        reason       TEXT,
        requested    TEXT,
        controller   TEXT,
        lease_ms     BIGINT,
        created_by   TEXT NOT NULL,
        created_ms   BIGINT NOT NULL,
        updated_ms   BIGINT NOT NULL
    );
    CREATE UNIQUE INDEX rollouts_one_active_per_agent
        ON rollouts(agent) WHERE status IN ('progressing', 'paused');
    CREATE TABLE rollout_journal (
        rollout_id TEXT NOT NULL REFERENCES rollouts(id),
        seq        BIGINT NOT NULL,
        at_ms      BIGINT NOT NULL,
        attempt    BIGINT NOT NULL,
        step       BIGINT,
        entry      TEXT NOT NULL,
        action     TEXT NOT NULL,
        node       TEXT,
        version    TEXT,
        ok         BOOLEAN,
        detail     TEXT NOT NULL,
        PRIMARY KEY (rollout_id, seq)
    );
    CREATE TABLE rollout_measurements (
        rollout_id TEXT NOT NULL REFERENCES rollouts(id),
        attempt    BIGINT NOT NULL,
        step       BIGINT NOT NULL,
        gate       TEXT NOT NULL,
        seq        BIGINT NOT NULL,
        at_ms      BIGINT NOT NULL,
        version    TEXT NOT NULL,
        outcome    TEXT NOT NULL,
        metrics    TEXT NOT NULL,
        message    TEXT NOT NULL,
        PRIMARY KEY (rollout_id, attempt, step, seq)
    );
    ",
    // 6: signed approvals.
    "
    ALTER TABLE approvals ADD COLUMN expires_ms BIGINT;
    CREATE TABLE approval_signatures (
        approval_id TEXT NOT NULL REFERENCES approvals(id),
        person      TEXT NOT NULL,
        key         TEXT NOT NULL,
        plan        TEXT NOT NULL,
        signature   TEXT NOT NULL,
        signed_ms   BIGINT NOT NULL,
        expires_ms  BIGINT NOT NULL,
        PRIMARY KEY (approval_id, person)
    );
    ",
    // 7: reflections and each evidenced use of a lesson.
    "
    CREATE TABLE reflections (
        id          TEXT PRIMARY KEY,
        checklist   TEXT NOT NULL,
        trigger     TEXT NOT NULL,
        source      TEXT NOT NULL,
        agent       TEXT,
        description TEXT NOT NULL,
        created_ms  BIGINT NOT NULL,
        answered_ms BIGINT,
        answered_by TEXT,
        commit_id   TEXT,
        ledger_hash TEXT,
        UNIQUE (checklist, source)
    );
    CREATE INDEX reflections_by_created ON reflections(created_ms);
    CREATE TABLE lesson_uses (
        lesson   TEXT NOT NULL,
        evidence TEXT NOT NULL,
        at_ms    BIGINT NOT NULL,
        actor    TEXT NOT NULL,
        PRIMARY KEY (lesson, evidence)
    );
    ",
    // 8: the evidence ledger every controller of the team appends to, one
    // hash chain (see `crate::ledger::postgres`). `line` is byte for byte
    // the line the ledger file would hold, without its newline, so both
    // places verify the same bytes; `seq` orders the rows.
    "
    CREATE TABLE ledger_entries (
        seq  BIGINT PRIMARY KEY,
        line TEXT NOT NULL
    );
    ",
    // 9: shared work (see the SQLite migration).
    "
    CREATE TABLE work_runs (
        run_id     TEXT PRIMARY KEY,
        job        TEXT NOT NULL,
        sot_commit TEXT,
        ttl_ms     BIGINT NOT NULL,
        created_ms BIGINT NOT NULL,
        created_by TEXT NOT NULL,
        closed_by  TEXT
    );
    CREATE TABLE work_items (
        run_id     TEXT NOT NULL REFERENCES work_runs(run_id),
        node       TEXT NOT NULL,
        position   BIGINT NOT NULL,
        state      TEXT NOT NULL DEFAULT 'free',
        claimed_by TEXT,
        expires_ms BIGINT,
        attempts   BIGINT NOT NULL DEFAULT 0,
        done_by    TEXT,
        PRIMARY KEY (run_id, node)
    );
    CREATE INDEX work_items_claimable ON work_items(run_id, state, position);
    ",
    // 10: kill switches as every controller sees them.
    "
    CREATE TABLE kill_switches (
        agent      TEXT PRIMARY KEY,
        engaged    BOOLEAN NOT NULL,
        by_whom    TEXT NOT NULL,
        at_ms      BIGINT NOT NULL,
        reason     TEXT NOT NULL,
        node_limit TEXT,
        commit_id  TEXT
    );
    ",
];

const _: () = assert!(
    MIGRATIONS.len() == crate::store::schema::MIGRATIONS.len(),
    "every SQLite migration has its PostgreSQL step"
);

/// Any fixed number: every maestro migrating this database takes the same lock.
const MIGRATION_LOCK: i64 = 0x6d61_6573_7472_6f00; // "maestro\0"

// Every advisory lock maestro takes in a database is a distinct key: the
// ledger's appends must never wait on (or be taken for) a migration.
const _: () = assert!(MIGRATION_LOCK != crate::ledger::POSTGRES_LOCK);

/// The version recorded in the database, without changing anything (0 when
/// maestro never wrote to it).
pub fn version(client: &mut postgres::Client) -> Result<i64, postgres::Error> {
    let exists: bool = client
        .query_one("SELECT to_regclass('maestro_schema') IS NOT NULL", &[])?
        .get(0);
    if !exists {
        return Ok(0);
    }
    Ok(client
        .query_opt("SELECT version FROM maestro_schema", &[])?
        .map_or(0, |r| r.get(0)))
}

/// What migrating left.
pub enum Migrated {
    /// At [`LATEST`] (now, or already).
    Current,
    /// Newer than this maestro: nothing was changed.
    TooNew(i64),
}

/// Bring the database to [`LATEST`] in one transaction that holds an
/// advisory lock, so two controllers opening a fresh database at once do
/// not both migrate: the second waits, then finds it current.
pub fn migrate(client: &mut postgres::Client) -> Result<Migrated, postgres::Error> {
    let found = version(client)?;
    if found >= LATEST {
        return Ok(if found == LATEST {
            Migrated::Current
        } else {
            Migrated::TooNew(found)
        });
    }
    let mut tx = client.transaction()?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS maestro_schema (
            one     BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (one),
            version BIGINT NOT NULL
        )",
    )?;
    let found = current(&mut tx)?;
    if found >= LATEST {
        tx.rollback()?;
        return Ok(if found == LATEST {
            Migrated::Current
        } else {
            Migrated::TooNew(found)
        });
    }
    for step in MIGRATIONS.iter().skip(found.max(0) as usize) {
        tx.batch_execute(step)?;
    }
    tx.execute(
        "INSERT INTO maestro_schema (one, version) VALUES (TRUE, $1)
         ON CONFLICT (one) DO UPDATE SET version = excluded.version",
        &[&LATEST],
    )?;
    tx.commit()?;
    Ok(Migrated::Current)
}

fn current(tx: &mut Transaction<'_>) -> Result<i64, postgres::Error> {
    Ok(tx
        .query_opt("SELECT version FROM maestro_schema", &[])?
        .map_or(0, |r| r.get(0)))
}
