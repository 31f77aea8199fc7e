//! What only the PostgreSQL store has: its schema table, and several
//! controllers opening one database. The behaviour both stores share is
//! tested on both in `store/tests.rs`.

use super::cluster::fresh_database;
use super::*;
use crate::store::{Location, schema as sqlite_schema};

/// The public tables of the database at `url`, and its recorded version.
fn tables_and_version(url: &PgUrl) -> (Vec<String>, i64) {
    let admin = worker::Worker::connect(url.secret()).unwrap();
    admin
        .run(|c| {
            let tables = c
                .query(
                    "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename",
                    &[],
                )?
                .iter()
                .map(|r| r.get(0))
                .collect();
            Ok::<_, postgres::Error>((tables, schema::version(c)?))
        })
        .unwrap()
        .unwrap()
}

#[test]
fn a_newer_database_is_refused_and_left_untouched() {
    let Some(url) = fresh_database() else { return };
    let admin = worker::Worker::connect(url.secret()).unwrap();
    let newer = sqlite_schema::LATEST + 7;
    admin
        .run(move |c| {
            c.batch_execute(&format!(
                "CREATE TABLE maestro_schema (one BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (one), version BIGINT NOT NULL);
                 INSERT INTO maestro_schema (version) VALUES ({newer})"
            ))
        })
        .unwrap()
        .unwrap();
    drop(admin);
    let err = PgStore::open(&url).err().expect("refused");
    let text = err.to_string();
    assert!(
        matches!(err, StoreError::TooNewDatabase { found, supported, .. } if found == newer && supported == sqlite_schema::LATEST),
        "{text}"
    );
    assert!(
        text.contains(&format!("schema version {newer}"))
            && text.contains(&format!("(version {})", sqlite_schema::LATEST))
            && text.contains(&url.to_string()),
        "{text}"
    );
    assert_eq!(
        tables_and_version(&url),
        (vec!["maestro_schema".to_string()], newer),
        "nothing created, the version kept"
    );
}

#[test]
fn controllers_opening_a_fresh_database_at_once_migrate_it_once() {
    let Some(url) = fresh_database() else { return };
    let opened: Vec<Result<i64>> = std::thread::scope(|s| {
        let opens: Vec<_> = (0..4)
            .map(|_| s.spawn(|| PgStore::open(&url)?.version()))
            .collect();
        opens.into_iter().map(|o| o.join().unwrap()).collect()
    });
    for version in opened {
        assert_eq!(version.unwrap(), sqlite_schema::LATEST);
    }
    let (tables, version) = tables_and_version(&url);
    assert_eq!(version, sqlite_schema::LATEST);
    assert!(tables.contains(&"rollouts".to_string()), "{tables:?}");
    // Migration 8: the team's one ledger.
    assert!(tables.contains(&"ledger_entries".to_string()), "{tables:?}");
    // And it opens again as current.
    assert_eq!(
        PgStore::open(&url).unwrap().version().unwrap(),
        sqlite_schema::LATEST
    );
}

#[test]
fn a_wrong_password_is_not_shown_when_connecting_fails() {
    let Some(url) = fresh_database() else { return };
    // A database that does not exist on the test cluster: connecting fails.
    let wrong = url
        .secret()
        .replace("maestro@", "maestro:hunter2@")
        .replace("/t_", "/missing_");
    let Location::Postgres(wrong) = Location::parse(&wrong) else {
        unreachable!()
    };
    let err = PgStore::open(&wrong).err().expect("no such database");
    let text = err.to_string();
    assert!(matches!(err, StoreError::PgOpen { .. }), "{text}");
    assert!(
        text.contains("maestro:***@127.0.0.1") && !text.contains("hunter2"),
        "{text}"
    );
    // The server's reason, said once, in the one-line message.
    assert_eq!(text.matches("does not exist").count(), 1, "{text}");
}
