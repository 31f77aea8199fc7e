//! The store's schema and its migrations, keyed on `PRAGMA user_version`.
//!
//! Version 0 is a store made before versioning (its tables were created with
//! `CREATE TABLE IF NOT EXISTS` and no version): migration 1 is exactly that
//! schema, so it creates the tables in a new file and changes nothing in an
//! old one. Each later migration is a step from the version before it. A store
//! with a version above [`LATEST`] was written by a newer maestro and is
//! refused, never altered.

use rusqlite::Connection;

/// `MIGRATIONS[i]` takes a store from version `i` to `i + 1`.
pub const MIGRATIONS: &[&str] = &[
    // 1: the schema of the first release.
    "
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
        status  TEXT NOT NULL,              -- ok | changed | failed | skipped | refused
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
    ",
    // 2: the SoT commit of each run, output dropped under backpressure, and
    // approvals held by the admission gate.
    "
    ALTER TABLE runs ADD COLUMN sot_commit TEXT;
    ALTER TABLE runs ADD COLUMN dropped_output_bytes INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE approvals (
        id           TEXT PRIMARY KEY,
        fingerprint  TEXT NOT NULL,
        summary      TEXT NOT NULL,
        reasons      TEXT NOT NULL,         -- JSON array
        requested_by TEXT NOT NULL,
        requested_ms INTEGER NOT NULL,
        state        TEXT NOT NULL,         -- pending | approved | rejected
        decided_by   TEXT,
        decided_ms   INTEGER,
        comment      TEXT
    );
    CREATE INDEX approvals_by_fingerprint ON approvals(fingerprint, requested_ms);
    CREATE INDEX run_notes_by_run ON run_notes(run_id);
    ",
    // 3: one-minute telemetry rollups per node (agent '') and per agent,
    // pruned to the retention the collector is given.
    "
    CREATE TABLE telemetry_rollups (
        node           TEXT NOT NULL,
        agent          TEXT NOT NULL,       -- '' for the node itself
        minute_ms      INTEGER NOT NULL,    -- start of the minute, Unix ms
        samples        INTEGER NOT NULL,
        cpu_pct_avg    REAL,
        cpu_pct_max    REAL,
        mem_used_pct_avg REAL,
        load1_avg      REAL,
        root_fs_used_pct REAL,
        net_rx_bps_avg REAL,
        net_tx_bps_avg REAL,
        gpu_util_pct_avg REAL,
        rss_bytes_max  INTEGER,
        requests_per_s_avg REAL,
        errors_per_s_avg REAL,
        p95_s_max      REAL,
        PRIMARY KEY (node, agent, minute_ms)
    );
    CREATE INDEX telemetry_rollups_by_minute ON telemetry_rollups(minute_ms);
    ",
    // 4: each node's compliance at every hardening audit (the first one is
    // its first-boot baseline).
    "
    CREATE TABLE compliance_history (
        run_id        TEXT NOT NULL REFERENCES runs(id),
        node          TEXT NOT NULL,
        at_ms         INTEGER NOT NULL,
        baseline      TEXT NOT NULL,
        percent       REAL NOT NULL,
        passing       INTEGER NOT NULL,
        failing       INTEGER NOT NULL,
        unknown       INTEGER NOT NULL,
        failing_rules TEXT NOT NULL,        -- JSON array of rule ids
        PRIMARY KEY (run_id, node)
    );
    CREATE INDEX compliance_by_node ON compliance_history(node, at_ms);
    ",
    // 5: rollouts (progressive delivery): one row per rollout, the journal of
    // its intents and results, and every gate measurement with its values.
    // At most one active (progressing or paused) rollout per agent, enforced
    // here so two operators on one store cannot start two. Written with IF
    // NOT EXISTS so it applies whichever of migrations 5 and 6 lands first.
    "
    CREATE TABLE IF NOT EXISTS rollouts (
        id           TEXT PRIMARY KEY,
        agent        TEXT NOT NULL,
        from_version TEXT,
        to_version   TEXT NOT NULL,
        strategy     TEXT NOT NULL,
        definition   TEXT NOT NULL,         -- JSON: the strategy and its gates as started
        target       TEXT NOT NULL,
        nodes        TEXT NOT NULL,         -- JSON array, in rollout order
        attempt      INTEGER NOT NULL,
        phase        TEXT NOT NULL,
        step         INTEGER NOT NULL,
        weight       INTEGER NOT NULL,
        status       TEXT NOT NULL,         -- progressing | paused | completed | aborted
        reason       TEXT,
        requested    TEXT,                  -- pause | abort | promote | full: for the controller
        controller   TEXT,                  -- PID@HOST of the process driving it
        lease_ms     INTEGER,
        created_by   TEXT NOT NULL,
        created_ms   INTEGER NOT NULL,
        updated_ms   INTEGER NOT NULL
    );
    CREATE UNIQUE INDEX IF NOT EXISTS rollouts_one_active_per_agent
        ON rollouts(agent) WHERE status IN ('progressing', 'paused');
    CREATE TABLE IF NOT EXISTS rollout_journal (
        rollout_id TEXT NOT NULL REFERENCES rollouts(id),
        seq        INTEGER NOT NULL,
        at_ms      INTEGER NOT NULL,
        attempt    INTEGER NOT NULL,
        step       INTEGER,
        entry      TEXT NOT NULL,           -- intent | result
        action     TEXT NOT NULL,           -- observe | deploy | rollback | gate | pause | promote | abort | traffic
        node       TEXT,
        version    TEXT,
        ok         INTEGER,
        detail     TEXT NOT NULL,
        PRIMARY KEY (rollout_id, seq)
    );
    CREATE TABLE IF NOT EXISTS rollout_measurements (
        rollout_id TEXT NOT NULL REFERENCES rollouts(id),
        attempt    INTEGER NOT NULL,
        step       INTEGER NOT NULL,
        gate       TEXT NOT NULL,
        seq        INTEGER NOT NULL,
        at_ms      INTEGER NOT NULL,
        version    TEXT NOT NULL,
        outcome    TEXT NOT NULL,           -- pass | fail | inconclusive
        metrics    TEXT NOT NULL,           -- JSON: the values measured (and stable's)
        message    TEXT NOT NULL,
        PRIMARY KEY (rollout_id, attempt, step, seq)
    );
    ",
    // 6: signed approvals. Each row is one person's SSH signature over a
    // request's plan digest; whoever counts them verifies them again
    // against people.toml, so a row written by hand proves nothing.
    "
    ALTER TABLE approvals ADD COLUMN expires_ms INTEGER;
    CREATE TABLE approval_signatures (
        approval_id TEXT NOT NULL REFERENCES approvals(id),
        person      TEXT NOT NULL,           -- as the signer claimed; checked on every count
        key         TEXT NOT NULL,           -- SHA256 fingerprint of the signing key
        plan        TEXT NOT NULL,           -- the plan digest that was signed
        signature   TEXT NOT NULL,           -- armored SSHSIG, namespace maestro-approval
        signed_ms   INTEGER NOT NULL,
        expires_ms  INTEGER NOT NULL,
        PRIMARY KEY (approval_id, person)
    );
    ",
    // 7: reflections an operation left pending (one per checklist and
    // operation), and each evidenced use of a lesson.
    "
    CREATE TABLE reflections (
        id          TEXT PRIMARY KEY,
        checklist   TEXT NOT NULL,
        trigger     TEXT NOT NULL,           -- rollout_aborted | failed_nodes | …
        source      TEXT NOT NULL,           -- run:ID | rollout:ID
        agent       TEXT,
        description TEXT NOT NULL,
        created_ms  INTEGER NOT NULL,
        answered_ms INTEGER,
        answered_by TEXT,
        commit_id   TEXT,                    -- the SoT commit of the answer
        ledger_hash TEXT,                    -- the ledger entry that records it
        UNIQUE (checklist, source)
    );
    CREATE INDEX reflections_by_created ON reflections(created_ms);
    CREATE TABLE lesson_uses (
        lesson   TEXT NOT NULL,
        evidence TEXT NOT NULL,              -- run:ID | rollout:ID | reflection:ID
        at_ms    INTEGER NOT NULL,
        actor    TEXT NOT NULL,
        PRIMARY KEY (lesson, evidence)
    );
    ",
    // 8: nothing. On PostgreSQL, 8 creates the team's shared ledger table;
    // beside a SQLite store the ledger stays the file `ledger.jsonl`, and an
    // empty `ledger_entries` table here would tell whoever opens the
    // database that nothing was ever recorded. The step keeps the numbers
    // aligned: version N is the same schema on both databases.
    "-- the ledger is the file beside the store",
    // 9: shared work: the nodes of a run that several controllers split
    // (`--share`, `maestro join`), each claimed, renewed and completed by one.
    "
    CREATE TABLE work_runs (
        run_id     TEXT PRIMARY KEY,
        job        TEXT NOT NULL,            -- JSON: what a joining controller prepares
        sot_commit TEXT,
        ttl_ms     INTEGER NOT NULL,
        created_ms INTEGER NOT NULL,
        created_by TEXT NOT NULL,
        closed_by  TEXT
    );
    CREATE TABLE work_items (
        run_id     TEXT NOT NULL REFERENCES work_runs(run_id),
        node       TEXT NOT NULL,
        position   INTEGER NOT NULL,
        state      TEXT NOT NULL DEFAULT 'free',   -- free | claimed | done
        claimed_by TEXT,
        expires_ms INTEGER,
        attempts   INTEGER NOT NULL DEFAULT 0,
        done_by    TEXT,
        PRIMARY KEY (run_id, node)
    );
    CREATE INDEX work_items_claimable ON work_items(run_id, state, position);
    ",
    // 10: kill switches as every controller of the store sees them at once
    // (the SoT's killswitch.toml reaches another checkout only on a pull).
    "
    CREATE TABLE kill_switches (
        agent      TEXT PRIMARY KEY,         -- an agent, or `all`
        engaged    INTEGER NOT NULL,         -- 1 engaged, 0 released
        by_whom    TEXT NOT NULL,
        at_ms      INTEGER NOT NULL,
        reason     TEXT NOT NULL,
        node_limit TEXT,
        commit_id  TEXT
    );
    ",
];

/// The schema version this maestro writes.
pub const LATEST: i64 = MIGRATIONS.len() as i64;

/// What opening found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Migrated {
    /// Already at [`LATEST`].
    Current,
    /// Migrated from this version.
    From(i64),
    /// Newer than this maestro: nothing was changed.
    TooNew(i64),
}

/// The store's version when it is newer than [`LATEST`] (read before anything
/// is changed, the journal mode included).
pub fn newer_than_latest(conn: &Connection) -> rusqlite::Result<Option<i64>> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    Ok((version > LATEST).then_some(version))
}

/// Bring the store to [`LATEST`] in one transaction (a second process opening
/// the same old store at the same time waits, then finds it current).
pub fn migrate(conn: &mut Connection) -> rusqlite::Result<Migrated> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version == LATEST {
        return Ok(Migrated::Current);
    }
    if version > LATEST {
        return Ok(Migrated::TooNew(version));
    }
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version >= LATEST {
        return Ok(if version == LATEST {
            Migrated::Current
        } else {
            Migrated::TooNew(version)
        });
    }
    for (i, step) in MIGRATIONS.iter().enumerate().skip(version.max(0) as usize) {
        tx.execute_batch(step)?;
        tx.pragma_update(None, "user_version", i as i64 + 1)?;
    }
    tx.commit()?;
    Ok(Migrated::From(version))
}
