//! Where a ledger is kept, and the one handle that appends to it: a file
//! beside a SQLite store ([`super::chain`]), or the table of a PostgreSQL
//! store a team shares ([`super::postgres`]). Both hold the same lines and
//! answer `read`, `verify` and `append` alike; callers choose the place
//! once (`ops::evidence::ledger_place`) and never look inside it.

use std::fmt;
use std::path::PathBuf;

use super::Result;
use super::chain::{self, FileLedger};
use super::entry::{Entry, Record};
use super::postgres::{self, PgLedger};
use crate::store::PgUrl;

/// Where a ledger is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    /// A JSON-lines file, one controller's (beside a SQLite store).
    File(PathBuf),
    /// The `ledger_entries` table of a PostgreSQL store: one chain for
    /// every controller that uses the database.
    Postgres(PgUrl),
}

/// A path, or the database's URL without its password.
impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Place::File(path) => write!(f, "{}", path.display()),
            Place::Postgres(url) => url.fmt(f),
        }
    }
}

/// An open ledger, appending after whatever entry is last, whoever wrote it.
pub struct Ledger {
    place: Place,
    inner: Inner,
}

impl fmt::Debug for Ledger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ledger")
            .field("place", &self.place)
            .field("head", &self.head())
            .finish()
    }
}

enum Inner {
    File(FileLedger),
    Postgres(PgLedger),
}

impl Ledger {
    /// Open the ledger at `place` and learn its head: a file is created
    /// (with its directories) if missing; a database is migrated if older.
    pub fn open(place: &Place) -> Result<Ledger> {
        let inner = match place {
            Place::File(path) => Inner::File(FileLedger::open(path)?),
            Place::Postgres(url) => Inner::Postgres(PgLedger::open(url)?),
        };
        Ok(Ledger {
            place: place.clone(),
            inner,
        })
    }

    /// Append one entry after the current head and return it.
    pub fn append(&mut self, body: Record) -> Result<Entry> {
        match &mut self.inner {
            Inner::File(l) => l.append(body),
            Inner::Postgres(l) => l.append(body),
        }
    }

    /// Make every appended entry durable; once per job. A database's
    /// entries are durable once appended (each append commits).
    pub fn sync(&self) -> Result<()> {
        match &self.inner {
            Inner::File(l) => l.sync(),
            Inner::Postgres(_) => Ok(()),
        }
    }

    /// `(size, head hash)` as of this handle's last append or open: a prefix
    /// of the chain, so always safe to sign as a checkpoint.
    pub fn head(&self) -> (u64, String) {
        match &self.inner {
            Inner::File(l) => l.head(),
            Inner::Postgres(l) => l.head(),
        }
    }
}

/// Every entry of the ledger at `place` (of one run, with `run`), in chain
/// order, for `ledger show`. A missing file or an empty table is an empty
/// ledger. This does not verify anything: that is [`super::verify()`].
pub fn read(place: &Place, run: Option<&str>) -> Result<Vec<Entry>> {
    match place {
        Place::File(path) => chain::read_file(path, run),
        Place::Postgres(url) => postgres::read(url, run),
    }
}
