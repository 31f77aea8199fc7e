//! What only the SQLite store has: its file, the first release's file, and
//! its mode. Everything else is tested on every backend in `store/tests.rs`.

use std::os::unix::fs::PermissionsExt;

use super::*;
use crate::store::tests::record_run;

#[test]
fn a_store_of_the_previous_release_migrates_and_keeps_its_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("old.db");
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/store-v0.db"),
        &path,
    )
    .unwrap();
    let mut store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.version().unwrap(), schema::LATEST);
    // Migration 8 is PostgreSQL's ledger table: beside SQLite the ledger
    // stays a file, and no empty table pretends otherwise.
    let ledger_tables: i64 = store
        .conn
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE name = 'ledger_entries'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(ledger_tables, 0);
    let runs = store.runs(10).unwrap();
    let kinds: Vec<RunKind> = runs.iter().map(|r| r.kind).collect();
    assert_eq!(
        kinds,
        [
            RunKind::HardenAudit,
            RunKind::Play,
            RunKind::Exec,
            RunKind::Exec
        ]
    );
    assert!(runs.iter().all(|r| r.sot_commit.is_none()));
    let exec = &runs[3];
    let results = store.results(exec).unwrap();
    assert_eq!(results.len(), 3);
    assert!(
        results
            .iter()
            .all(|r| r.status == NodeStatus::Ok && r.stdout.bytes == b"hello\n")
    );
    // New runs go in beside the old ones.
    record_run(&mut store, "run-new", &[("n01", NodeStatus::Ok)]);
    assert_eq!(store.runs(10).unwrap().len(), 5);
    drop(store);
    // And it opens again as current.
    assert_eq!(SqliteStore::open(&path).unwrap().runs(10).unwrap().len(), 5);
}

#[test]
fn a_newer_store_is_refused_and_left_untouched() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("new.db");
    {
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", schema::LATEST + 7)
            .unwrap();
    }
    let before = std::fs::read(&path).unwrap();
    let err = SqliteStore::open(&path).err().expect("refused");
    let text = err.to_string();
    assert!(
        matches!(err, StoreError::TooNew { found, supported, .. } if found == schema::LATEST + 7 && supported == schema::LATEST)
    );
    assert!(
        text.contains(&format!("schema version {}", schema::LATEST + 7))
            && text.contains(&format!("(version {})", schema::LATEST)),
        "{text}"
    );
    assert_eq!(std::fs::read(&path).unwrap(), before, "not changed");
    assert!(!tmp.path().join("new.db-wal").exists());
}

#[test]
fn a_new_store_is_private_like_ssh_keys() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("state/maestro/runs.db");
    let mut store = SqliteStore::open(&path).unwrap();
    record_run(&mut store, "run-1", &[("a", NodeStatus::Ok)]);
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(path.parent().unwrap()), 0o700);
    assert_eq!(mode(&tmp.path().join("state")), 0o700);
    let wal = path.with_file_name("runs.db-wal");
    assert!(wal.exists());
    assert_eq!(mode(&wal), 0o600, "SQLite gives its WAL the file's mode");
}
