//! Who this replica is across restarts: the incarnation of its data directory and the
//! highest term it has acted on, kept beside the log in the same SQLite file (so a wiped
//! data directory loses both together, and comes back as a new incarnation at term 0).

use crate::store::{self, StoreError};
use rusqlite::{Connection, OptionalExtension};
use std::path::Path;
use std::sync::Mutex;
use tinysns_common::membership::{TermError, TermStore};

/// The replica's identity, read once at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity {
    /// Random, positive, chosen when the store was created.
    pub incarnation: u64,
    /// The highest term stored so far.
    pub term: u64,
}

/// Reads the identity of the store in `dir` (open it with [`store::open`] first), choosing an
/// incarnation if the store has none yet.
pub fn load(dir: &Path) -> Result<(Identity, SqliteTerms), StoreError> {
    let conn = store::open(dir)?;
    // 1..=2^53: positive as an SQLite integer and exact as a JSON number.
    let fresh = rand::random_range(1..=(1u64 << 53));
    conn.execute(
        "INSERT OR IGNORE INTO replica (key, value) VALUES ('incarnation', ?1)",
        [fresh as i64],
    )?;
    let read = |key: &str| -> Result<u64, StoreError> {
        Ok(conn
            .query_row("SELECT value FROM replica WHERE key = ?1", [key], |r| {
                r.get::<_, i64>(0)
            })
            .optional()?
            .unwrap_or(0) as u64)
    };
    let identity = Identity {
        incarnation: read("incarnation")?,
        term: read("term")?.max(store::last_term(&conn)?),
    };
    Ok((identity, SqliteTerms { conn: Mutex::new(conn) }))
}

/// Stores terms in the replica's SQLite file, on a connection of its own.
pub struct SqliteTerms {
    conn: Mutex<Connection>,
}

impl TermStore for SqliteTerms {
    fn store(&self, term: u64) -> Result<(), TermError> {
        let conn = tinysns_common::lock(&self.conn);
        conn.execute(
            "INSERT INTO replica (key, value) VALUES ('term', ?1)
             ON CONFLICT (key) DO UPDATE SET value = MAX(value, excluded.value)",
            [term as i64],
        )
        .map(|_| ())
        .map_err(|e| TermError {
            term,
            why: e.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_incarnation_is_chosen_once_and_terms_only_grow() {
        let dir = tempfile::tempdir().unwrap();
        let (first, terms) = load(dir.path()).unwrap();
        assert!(first.incarnation > 0);
        assert_eq!(first.term, 0);
        terms.store(7).unwrap();
        terms.store(5).unwrap();
        drop(terms);
        let (again, _) = load(dir.path()).unwrap();
        assert_eq!(
            again,
            Identity {
                incarnation: first.incarnation,
                term: 7
            }
        );
    }

    #[test]
    fn a_wiped_store_is_a_new_incarnation_at_term_zero() {
        let dir = tempfile::tempdir().unwrap();
        let (first, terms) = load(dir.path()).unwrap();
        terms.store(3).unwrap();
        drop(terms);
        std::fs::remove_dir_all(dir.path()).unwrap();
        let (wiped, _) = load(dir.path()).unwrap();
        assert_ne!(wiped.incarnation, first.incarnation);
        assert_eq!(wiped.term, 0);
    }

    #[test]
    fn the_term_is_never_below_the_last_logged_term() {
        // A store written before terms were kept: its log alone says which terms it saw.
        let dir = tempfile::tempdir().unwrap();
        let conn = store::open(dir.path()).unwrap();
        let entry = tinysns_common::proto::internal::LogEntry {
            lsn: 1,
            term: 4,
            ..Default::default()
        };
        store::append(&conn, &entry).unwrap();
        drop(conn);
        assert_eq!(load(dir.path()).unwrap().0.term, 4);
    }
}
