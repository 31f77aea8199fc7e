//! Where the store is: a SQLite file, or a PostgreSQL database named by a
//! `postgres://` / `postgresql://` URL. The URL may carry a password, so it
//! is only ever shown through [`PgUrl`]'s `Display`, which hides it.

use std::path::{Path, PathBuf};

/// A store location as given to `--db` or `$MAESTRO_DB`.
#[derive(Clone, PartialEq, Eq)]
pub enum Location {
    Sqlite(PathBuf),
    Postgres(PgUrl),
}

impl Location {
    /// `postgres://…` and `postgresql://…` name a PostgreSQL database;
    /// anything else is a SQLite file path.
    pub fn parse(s: &str) -> Location {
        if PgUrl::is_url(s) {
            Location::Postgres(PgUrl(s.to_string()))
        } else {
            Location::Sqlite(PathBuf::from(s))
        }
    }

    /// The CLI carries `--db` as a path; a URL survives the trip unchanged.
    pub fn from_path(path: &Path) -> Location {
        match path.to_str() {
            Some(s) if PgUrl::is_url(s) => Location::Postgres(PgUrl(s.to_string())),
            _ => Location::Sqlite(path.to_path_buf()),
        }
    }

    /// The SQLite file, when it is one: the ledger and its key sit beside it.
    pub fn sqlite_path(&self) -> Option<&Path> {
        match self {
            Location::Sqlite(p) => Some(p),
            Location::Postgres(_) => None,
        }
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Sqlite(p) => write!(f, "{}", p.display()),
            Location::Postgres(url) => url.fmt(f),
        }
    }
}

impl std::fmt::Debug for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Location({self})")
    }
}

/// A PostgreSQL connection URL. `Display` and `Debug` replace the password
/// (in the user info or a `password=` parameter) with `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct PgUrl(String);

impl PgUrl {
    /// `s` as a PostgreSQL URL, if it is one.
    pub fn parse(s: &str) -> Option<PgUrl> {
        PgUrl::is_url(s).then(|| PgUrl(s.to_string()))
    }

    fn is_url(s: &str) -> bool {
        s.starts_with("postgres://") || s.starts_with("postgresql://")
    }

    /// Whether the URL carries a password (in its user info or a
    /// `password=` parameter): a secret, never to be committed.
    pub fn has_password(&self) -> bool {
        self.redacted() != self.0
    }

    /// The URL with its password, for connecting only.
    pub(crate) fn secret(&self) -> &str {
        &self.0
    }

    fn redacted(&self) -> String {
        let s = &self.0;
        let Some(scheme_end) = s.find("://").map(|i| i + 3) else {
            return s.clone();
        };
        let (scheme, rest) = s.split_at(scheme_end);
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(authority_end);
        let authority = match authority.rfind('@') {
            Some(at) => {
                let (userinfo, host) = authority.split_at(at);
                match userinfo.split_once(':') {
                    Some((user, _password)) => format!("{user}:***{host}"),
                    None => authority.to_string(),
                }
            }
            None => authority.to_string(),
        };
        let tail = match tail.split_once('?') {
            Some((path, query)) => {
                let query: Vec<String> = query
                    .split('&')
                    .map(|kv| match kv.split_once('=') {
                        Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                        _ => kv.to_string(),
                    })
                    .collect();
                format!("{path}?{}", query.join("&"))
            }
            None => tail.to_string(),
        };
        format!("{scheme}{authority}{tail}")
    }
}

impl std::fmt::Display for PgUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl std::fmt::Debug for PgUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PgUrl({})", self.redacted())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_select_postgres_and_anything_else_is_a_file() {
        for url in ["postgres://h/db", "postgresql://u@h:5433/db"] {
            assert!(
                matches!(Location::parse(url), Location::Postgres(_)),
                "{url}"
            );
            assert!(matches!(
                Location::from_path(Path::new(url)),
                Location::Postgres(_)
            ));
        }
        for file in [
            "runs.db",
            "/var/lib/maestro/maestro.db",
            "postgres.db",
            "./postgres:/x",
        ] {
            assert_eq!(Location::parse(file), Location::Sqlite(PathBuf::from(file)));
        }
    }

    #[test]
    fn a_password_is_never_shown() {
        let cases = [
            (
                "postgres://ops:s3cret@db.example:5432/maestro",
                "postgres://ops:***@db.example:5432/maestro",
            ),
            (
                "postgresql://ops:p@ss@w0rd@h/db?sslmode=disable",
                "postgresql://ops:***@h/db?sslmode=disable",
            ),
            (
                "postgres://h/db?user=ops&password=s3cret",
                "postgres://h/db?user=ops&password=***",
            ),
            ("postgres://ops@h/db", "postgres://ops@h/db"),
            ("postgres://ops:s3cret@h", "postgres://ops:***@h"),
        ];
        for (url, shown) in cases {
            let location = Location::parse(url);
            assert_eq!(location.to_string(), shown);
            assert!(!format!("{location:?}").contains("s3cret"));
            assert!(!format!("{location:?}").contains("w0rd"));
        }
    }

    #[test]
    fn a_postgres_store_holds_the_shared_ledger_and_the_key_stays_local() {
        let url = Path::new("postgres://ops:s3cret@db.example/maestro");
        let place = crate::ops::evidence::ledger_place(url);
        let Location::Postgres(expected) = Location::from_path(url) else {
            unreachable!("a postgres:// URL")
        };
        assert_eq!(place, crate::ledger::Place::Postgres(expected));
        assert_eq!(place.to_string(), "postgres://ops:***@db.example/maestro");
        let key = crate::ops::evidence::key_path(url);
        assert!(
            key.starts_with(crate::store::local_state_dir()),
            "{}",
            key.display()
        );
        assert!(!key.to_string_lossy().contains("s3cret"));

        let file = Path::new("/var/lib/maestro/maestro.db");
        assert_eq!(
            crate::ops::evidence::ledger_place(file),
            crate::ledger::Place::File("/var/lib/maestro/ledger.jsonl".into())
        );
        assert_eq!(
            crate::ops::evidence::key_path(file),
            Path::new("/var/lib/maestro/ledger.key")
        );
    }
}
