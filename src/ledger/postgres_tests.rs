//! The ledger in a PostgreSQL store, on the private test cluster
//! (`crate::store::test_cluster`; under `CI=true` a missing PostgreSQL
//! fails these tests rather than skipping them): several controllers
//! appending build one chain, and tampering with the table is reported as
//! the same [`Problem`] tampering with the file is.

use super::checkpoint::LedgerKey;
use super::*;
use crate::store::PgUrl;

/// A fresh database; `None` (the test has nothing to run on) only when
/// PostgreSQL is not installed and this is not CI.
fn database() -> Option<PgUrl> {
    crate::store::test_cluster::fresh_database()
}

fn record(run: &str, i: u64) -> Record {
    Record {
        run: Some(run.to_string()),
        action: "exec".into(),
        description: format!("exec uptime — entry {i}, ünïcode \"quoted\""),
        decision: "ran".into(),
        nodes: vec![NodeEntry {
            node: format!("node-{i:03}"),
            outcome: "ok".into(),
        }],
        ..Default::default()
    }
}

/// Run `sql` on the database, as someone with write access to it would.
fn tamper(url: &PgUrl, sql: &str) -> u64 {
    let store = crate::store::PgStore::open(url).unwrap();
    let sql = sql.to_string();
    store
        .on_connection(move |c| c.execute(sql.as_str(), &[]))
        .unwrap()
        .unwrap()
}

/// `n` entries appended by one controller, with its checkpoint at the end.
fn appended(url: &PgUrl, n: u64, key: &LedgerKey) -> (Vec<Entry>, Checkpoint) {
    let mut ledger = Ledger::open(&Place::Postgres(url.clone())).unwrap();
    let entries: Vec<Entry> = (1..=n)
        .map(|i| ledger.append(record(&format!("run-{}", i % 3), i)).unwrap())
        .collect();
    ledger.sync().unwrap();
    let (size, head) = ledger.head();
    (entries, key.sign_checkpoint(size, &head).unwrap())
}

#[test]
fn two_controllers_appending_at_once_build_one_chain() {
    let Some(url) = database() else { return };
    let place = Place::Postgres(url.clone());
    let seqs: Vec<Vec<u64>> = std::thread::scope(|s| {
        let writers: Vec<_> = (0..2)
            .map(|writer| {
                let place = &place;
                s.spawn(move || {
                    // Each its own connection, as two laptops have.
                    let mut ledger = Ledger::open(place).unwrap();
                    (0..200)
                        .map(|i| {
                            let run = format!("writer-{writer}");
                            ledger.append(record(&run, i)).unwrap().seq
                        })
                        .collect()
                })
            })
            .collect();
        writers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    // Each writer saw its own entries in order, interleaved with the other's.
    for mine in &seqs {
        assert!(mine.windows(2).all(|w| w[0] < w[1]), "{mine:?}");
    }
    let mut all: Vec<u64> = seqs.concat();
    all.sort_unstable();
    assert_eq!(all, (1..=400).collect::<Vec<_>>(), "no seq twice, no gap");

    let report = verify(&place, &[], None).unwrap();
    assert_eq!(
        (report.problem, report.entries, report.verified),
        (None, 400, 400)
    );
    let entries = read(&place, None).unwrap();
    assert_eq!(
        entries.iter().map(|e| e.seq).collect::<Vec<_>>(),
        (1..=400).collect::<Vec<_>>()
    );
    assert!(entries.windows(2).all(|w| w[1].prev == w[0].hash));
    assert_eq!(report.head, entries[399].hash);

    // A reopened handle continues the chain.
    let mut again = Ledger::open(&place).unwrap();
    assert_eq!(again.head(), (400, report.head.clone()));
    let next = again.append(record("writer-0", 400)).unwrap();
    assert_eq!((next.seq, next.prev.as_str()), (401, report.head.as_str()));

    // `show --run` reads one writer's entries.
    let of_one = read(&place, Some("writer-1")).unwrap();
    assert_eq!(
        of_one.iter().map(|e| e.seq).collect::<Vec<_>>(),
        seqs[1],
        "the run's entries, in chain order"
    );
}

#[test]
fn a_row_holds_exactly_the_line_the_file_would() {
    let Some(url) = database() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (key, _) = LedgerKey::load_or_create(dir.path().join("ledger.key")).unwrap();
    let (entries, _) = appended(&url, 3, &key);
    let store = crate::store::PgStore::open(&url).unwrap();
    let rows: Vec<(i64, String)> = store
        .on_connection(|c| {
            c.query("SELECT seq, line FROM ledger_entries ORDER BY seq", &[])
                .map(|rows| rows.iter().map(|r| (r.get(0), r.get(1))).collect())
        })
        .unwrap()
        .unwrap();
    for (entry, (seq, line)) in entries.iter().zip(&rows) {
        assert_eq!(*seq as u64, entry.seq);
        let file_line = entry.to_line().unwrap();
        assert_eq!(format!("{line}\n").as_bytes(), file_line.as_slice());
    }
}

#[test]
fn tampering_with_the_table_is_the_problem_tampering_with_the_file_is() {
    let Some(url) = database() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (key, _) = LedgerKey::load_or_create(dir.path().join("ledger.key")).unwrap();
    let (_, checkpoint) = appended(&url, 60, &key);
    let place = Place::Postgres(url.clone());
    let keys = std::slice::from_ref(key.public_key());
    let problem = || {
        verify(&place, std::slice::from_ref(&checkpoint), Some(keys))
            .unwrap()
            .problem
    };
    assert_eq!(problem(), None);

    // One value changed in a row.
    tamper(
        &url,
        "UPDATE ledger_entries SET line = replace(line, 'node-017', 'node-018') WHERE seq = 17",
    );
    let edited = problem().expect("an edited row");
    assert_eq!(edited, Problem::Edited { seq: 17, line: 17 });
    assert_eq!(
        edited.to_string(),
        "entry 17 (line 17) was edited: its hash does not match its contents"
    );
    tamper(&url, "DELETE FROM ledger_entries WHERE seq = 17");
    // A row deleted from the middle.
    assert_eq!(
        problem(),
        Some(Problem::Removed {
            after_seq: 16,
            missing: 17..=17
        })
    );

    // The newest rows deleted: only the checkpoint shows it.
    let Some(url) = database() else { return };
    let (_, checkpoint) = appended(&url, 60, &key);
    let place = Place::Postgres(url.clone());
    assert_eq!(tamper(&url, "DELETE FROM ledger_entries WHERE seq > 57"), 3);
    let alone = verify(&place, &[], None).unwrap();
    assert_eq!((alone.problem, alone.entries), (None, 57));
    let report = verify(&place, std::slice::from_ref(&checkpoint), Some(keys)).unwrap();
    assert_eq!(
        report.problem,
        Some(Problem::Truncated {
            size: 57,
            checkpoint_size: 60
        })
    );

    // Appending after a row that is not an entry is refused, naming the
    // row and not the password.
    tamper(
        &url,
        "UPDATE ledger_entries SET line = '{\"seq\": 57, oops}' WHERE seq = 57",
    );
    let message = Ledger::open(&place).expect_err("refused").to_string();
    assert!(
        message.contains("ledger_entries row with seq 57, column 13: not a ledger entry"),
        "{message}"
    );
    let message = read(&place, None).unwrap_err().to_string();
    assert!(message.contains("seq 57 (line 57)"), "{message}");
    let message = verify(&place, &[], None).unwrap_err().to_string();
    assert!(message.contains("seq 57 (line 57), column 13"), "{message}");
}

#[test]
fn checkpoints_of_two_controllers_verify_against_one_chain() {
    let Some(url) = database() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (ada, _) = LedgerKey::load_or_create(dir.path().join("a/ledger.key")).unwrap();
    let (grace, _) = LedgerKey::load_or_create(dir.path().join("b/ledger.key")).unwrap();
    let (_, by_ada) = appended(&url, 5, &ada);
    let (_, by_grace) = appended(&url, 5, &grace);
    assert_eq!((by_ada.size, by_grace.size), (5, 10));
    let place = Place::Postgres(url);
    let both = [by_ada.clone(), by_grace.clone()];
    let keys = [ada.public_key().clone(), grace.public_key().clone()];
    let report = verify(&place, &both, Some(&keys)).unwrap();
    assert_eq!(
        (report.problem, report.entries, report.checkpoints_checked),
        (None, 10, 2)
    );
    // Grace's key not listed: her checkpoint is not evidence.
    let report = verify(&place, &both, Some(&keys[..1])).unwrap();
    assert!(
        matches!(report.problem, Some(Problem::BadSignature { size: 10, .. })),
        "{report:?}"
    );
    assert_eq!(report.checkpoints_checked, 1);
}
