//! The ledger of a team that shares a PostgreSQL store (`--db postgres://…`):
//! one hash chain in the table `ledger_entries` (migration 8), whichever
//! controller appends.
//!
//! A row is one entry: `seq` orders the rows and `line` is byte for byte the
//! line the ledger file would hold, without its newline, so the walk of
//! [`super::verify`] hashes the same bytes from either place and a row's
//! position in `seq` order is its line number. An append is one
//! transaction under [`LOCK`] (a transaction-scoped advisory lock, released
//! by the commit or by the server when a controller dies): read the last
//! row, seal the next entry after it, insert it. A second controller waits
//! for the lock and then chains onto the first one's entry.
//!
//! The connection is the store's ([`PgStore`]: it runs on its own thread,
//! since the blocking client panics inside a tokio runtime, and opening it
//! migrates the database so the table exists). This module never changes a
//! row it did not insert.

use chrono::{SecondsFormat, Utc};
use postgres::GenericClient;

use super::chain::{entry_of, tail_of};
use super::entry::{Entry, GENESIS, Record};
use super::walk::Walk;
use super::{LedgerError, NotAnEntry, Result};
use crate::store::{PgStore, PgUrl};

/// The advisory lock key every maestro appending to a database's ledger
/// takes: "maestroL". It differs from the store's migration lock (checked
/// where that one is defined), so appending never waits for a migration of
/// another step, nor a migration for an append.
pub(crate) const LOCK: i64 = 0x6d61_6573_7472_6f4c;

/// Rows fetched per round trip while streaming the table.
const BATCH: i32 = 2000;

/// An open ledger in a PostgreSQL database.
pub(super) struct PgLedger {
    store: PgStore,
    /// `(size, head)` as of this handle's last append or open.
    tip: (u64, String),
}

impl PgLedger {
    /// Connect (migrating the database if it is older) and learn the head.
    /// A last row that is not an entry is an error naming it: appending
    /// after it would chain onto something nobody can verify.
    pub(super) fn open(url: &PgUrl) -> Result<PgLedger> {
        let store = PgStore::open(url)?;
        let shown = url.to_string();
        let tip = store.on_connection(move |c| tail(c, &shown))??;
        Ok(PgLedger { store, tip })
    }

    /// Append one entry after the current head, whoever wrote it: one
    /// transaction holding [`LOCK`].
    pub(super) fn append(&mut self, body: Record) -> Result<Entry> {
        let shown = self.store.url().to_string();
        let entry = self.store.on_connection(move |c| {
            let failed = |e| pg_error(&shown, e);
            let mut tx = c.transaction().map_err(failed)?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK])
                .map_err(failed)?;
            let (seq, head) = tail(&mut tx, &shown)?;
            let time = Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true);
            let (entry, mut line) = Entry::seal(seq + 1, time, head, body)?;
            line.pop(); // the newline: a row is a line without its separator
            // Canonical JSON is UTF-8 (serde_jcs writes a String's bytes),
            // so this copies the bytes as they are.
            let line = String::from_utf8_lossy(&line).into_owned();
            let seq = i64::try_from(entry.seq).map_err(|_| {
                LedgerError::Encode(serde::ser::Error::custom(
                    "the ledger is full (seq beyond 2^63)",
                ))
            })?;
            tx.execute(
                "INSERT INTO ledger_entries (seq, line) VALUES ($1, $2)",
                &[&seq, &line],
            )
            .map_err(failed)?;
            tx.commit().map_err(failed)?;
            Ok::<_, LedgerError>(entry)
        })??;
        self.tip = (entry.seq, entry.hash.clone());
        Ok(entry)
    }

    /// `(size, head hash)` as of this handle's last append or open.
    pub(super) fn head(&self) -> (u64, String) {
        self.tip.clone()
    }
}

/// `(seq, hash)` of the last row. Call inside the append's transaction,
/// after taking the lock.
fn tail(c: &mut impl GenericClient, shown: &str) -> Result<(u64, String)> {
    let row = c
        .query_opt(
            "SELECT seq, line FROM ledger_entries ORDER BY seq DESC LIMIT 1",
            &[],
        )
        .map_err(|e| pg_error(shown, e))?;
    let Some(row) = row else {
        return Ok((0, GENESIS.to_string()));
    };
    let failed = |e| pg_error(shown, e);
    let (seq, line): (i64, String) = (
        row.try_get(0).map_err(failed)?,
        row.try_get(1).map_err(failed)?,
    );
    let (held, hash) = tail_of(line.as_bytes()).map_err(|e| row_error(shown, None, seq, e))?;
    if i64::try_from(held).ok() != Some(seq) {
        let misplaced = NotAnEntry {
            column: 1,
            message: format!(
                "the row holds entry {held}: the table was changed; appending after it would \
                 chain onto an unverifiable entry (run `maestro ledger verify`)"
            ),
        };
        return Err(row_error(shown, None, seq, misplaced));
    }
    Ok((held, hash))
}

/// Every entry (of one run, with `run`), in `seq` order.
pub(super) fn read(url: &PgUrl, run: Option<&str>) -> Result<Vec<Entry>> {
    let store = PgStore::open(url)?;
    let shown = url.to_string();
    let run = run.map(str::to_string);
    store.on_connection(move |c| {
        let mut entries = Vec::new();
        rows(c, &shown, |line, seq, text| {
            let entry =
                entry_of(text.as_bytes()).map_err(|e| row_error(&shown, Some(line), seq, e))?;
            if run
                .as_deref()
                .is_none_or(|r| entry.body.run.as_deref() == Some(r))
            {
                entries.push(entry);
            }
            Ok(())
        })?;
        Ok(entries)
    })?
}

/// Give `walk` every row, in `seq` order, and hand it back.
pub(super) fn walk(url: &PgUrl, mut walk: Walk) -> Result<Walk> {
    let store = PgStore::open(url)?;
    let shown = url.to_string();
    store.on_connection(move |c| {
        rows(c, &shown, |line, seq, text| {
            walk.line(text.as_bytes())
                .map_err(|e| row_error(&shown, Some(line), seq, e))
        })?;
        Ok(walk)
    })?
}

/// Stream the table in `seq` order, a batch at a time, from one snapshot
/// (a read-only repeatable-read transaction): `each(position, seq, line)`,
/// positions from 1.
fn rows(
    c: &mut postgres::Client,
    shown: &str,
    mut each: impl FnMut(u64, i64, &str) -> Result<()>,
) -> Result<()> {
    let failed = |e| pg_error(shown, e);
    let mut tx = c
        .build_transaction()
        .isolation_level(postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .map_err(failed)?;
    let portal = tx
        .bind("SELECT seq, line FROM ledger_entries ORDER BY seq", &[])
        .map_err(failed)?;
    let mut position = 0;
    loop {
        let batch = tx.query_portal(&portal, BATCH).map_err(failed)?;
        if batch.is_empty() {
            break;
        }
        for row in &batch {
            position += 1;
            let seq: i64 = row.try_get(0).map_err(failed)?;
            let line: &str = row.try_get(1).map_err(failed)?;
            each(position, seq, line)?;
        }
    }
    tx.commit().map_err(failed)
}

fn pg_error(shown: &str, source: postgres::Error) -> LedgerError {
    LedgerError::Postgres {
        url: shown.to_string(),
        source,
    }
}

/// A row that is not an entry, named by its position (when known) and seq.
fn row_error(shown: &str, line: Option<u64>, seq: i64, e: NotAnEntry) -> LedgerError {
    LedgerError::Row {
        url: shown.to_string(),
        line,
        seq,
        column: e.column.max(1),
        message: crate::terminal_text::sanitize_str(&e.message),
    }
}
