//! A copy of a whole store, to bring up a replica whose log ends before the master's log
//! starts (it is new, wiped, or was away while the log was compacted): the master writes a
//! consistent copy of its database (`VACUUM INTO`, one read transaction), ships the file, and
//! the replica replaces its log, derived tables and undo log with the copy's in one
//! transaction. What belongs to the replica alone (its incarnation, its term) stays.

use super::{
    DERIVED_TABLES, Result, StoreError, compaction, record_commit_point, table_columns, undo, write_transaction,
};
use rusqlite::{Connection, OptionalExtension};
use std::path::{Path, PathBuf};

/// The tables a snapshot carries beside the derived ones (everything but `replica`).
const COPIED_WITH_DERIVED: [&str; 3] = ["log", "undo", "log_bounds"];

/// A snapshot's file (and SQLite's companions of it), removed when dropped: snapshots are
/// only ever in transit.
#[derive(Debug)]
pub struct SnapshotFile(pub PathBuf);

impl Drop for SnapshotFile {
    fn drop(&mut self) {
        for suffix in ["", "-journal", "-wal", "-shm"] {
            let mut path = self.0.clone().into_os_string();
            path.push(suffix);
            let _ = std::fs::remove_file(path);
        }
    }
}

/// What a snapshot holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// The last entry it holds (the replica continues after it).
    pub last_lsn: u64,
    /// Committed when it was taken (a lower bound).
    pub committed: u64,
    /// The highest clock stamp it holds.
    pub max_hlc: u64,
}

/// Writes a consistent copy of the store `conn` reads to `path` (which must not exist). Works
/// on a read-only connection, beside the writer.
pub fn create(conn: &Connection, path: &Path) -> Result<SnapshotInfo> {
    let target = path
        .to_str()
        .ok_or_else(|| StoreError::Snapshot(format!("path {} is not UTF-8", path.display())))?;
    conn.execute("VACUUM INTO ?1", [target])?;
    let copy = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    info(&copy, "main")
}

fn info(conn: &Connection, schema: &str) -> Result<SnapshotInfo> {
    let committed = conn
        .query_row(
            &format!("SELECT value FROM {schema}.replica WHERE key = 'committed'"),
            [],
            |r| r.get::<_, i64>(0),
        )
        .optional()?
        .unwrap_or(0) as u64;
    let last_lsn = conn.query_row(
        &format!("SELECT COALESCE(MAX(lsn), (SELECT log_start FROM {schema}.log_bounds)) FROM {schema}.log"),
        [],
        |r| r.get::<_, i64>(0),
    )? as u64;
    let max_hlc = conn.query_row(
        &format!(
            "SELECT MAX(COALESCE((SELECT MAX(hlc) FROM {schema}.log), 0), (SELECT start_hlc FROM {schema}.log_bounds))"
        ),
        [],
        |r| r.get::<_, i64>(0),
    )? as u64;
    Ok(SnapshotInfo {
        last_lsn,
        committed: committed.min(last_lsn),
        max_hlc,
    })
}

/// Replaces the log and everything derived from it in `conn`'s store with the snapshot at
/// `path`, atomically: a crash leaves either the old store or the new one.
pub fn install(conn: &mut Connection, path: &Path) -> Result<SnapshotInfo> {
    let source = path
        .to_str()
        .ok_or_else(|| StoreError::Snapshot(format!("path {} is not UTF-8", path.display())))?;
    conn.execute("ATTACH DATABASE ?1 AS snapshot", [source])
        .map_err(|e| StoreError::Snapshot(format!("cannot open the snapshot: {e}")))?;
    let installed = copy_in(conn);
    conn.execute_batch("DETACH DATABASE snapshot")?;
    // A failed transaction rolls the paused triggers back; make sure either way.
    undo::record(conn)?;
    installed
}

fn copy_in(conn: &mut Connection) -> Result<SnapshotInfo> {
    // What is wrong with the file sent is the sender's problem, never our store's: these
    // errors must not read as a failing disk (`StoreError::is_fatal`), which stops the server.
    let damaged = |e: &dyn std::fmt::Display| StoreError::Snapshot(format!("the snapshot is damaged: {e}"));
    let check: String = conn
        .query_row("PRAGMA snapshot.quick_check", [], |r| r.get(0))
        .map_err(|e| damaged(&e))?;
    if check != "ok" {
        return Err(damaged(&check));
    }
    let info = info(conn, "snapshot").map_err(|e| damaged(&e))?;
    let tx = write_transaction(conn)?;
    undo::pause(&tx)?;
    for table in DERIVED_TABLES.iter().chain(&COPIED_WITH_DERIVED) {
        let columns = table_columns(&tx, "main", table)?.join(",");
        tx.execute(&format!("DELETE FROM main.{table}"), [])?;
        tx.execute(
            &format!("INSERT INTO main.{table} ({columns}) SELECT {columns} FROM snapshot.{table}"),
            [],
        )
        .map_err(|e| StoreError::Snapshot(format!("cannot copy table {table}: {e}")))?;
    }
    if compaction::bounds(&tx).is_err() {
        return Err(StoreError::Snapshot("the snapshot has no log bounds".into()));
    }
    record_commit_point(&tx, info.committed)?;
    tx.commit()?;
    Ok(info)
}

#[cfg(test)]
mod tests {
    use super::super::tests::{dump, mixed_entries, write};
    use super::super::{commit_point, entries_after, open, term_at, truncate_after, undo};
    use super::*;

    /// A master's store: 200 entries, committed to 120, compacted to 100.
    fn master_store(dir: &Path) -> Connection {
        let mut conn = open(dir).unwrap();
        write(&mut conn, &mixed_entries(11, 200));
        let tx = write_transaction(&mut conn).unwrap();
        record_commit_point(&tx, 120).unwrap();
        undo::prune(&tx, 120).unwrap();
        compaction::compact(&tx, 100, 1000).unwrap();
        tx.commit().unwrap();
        conn
    }

    fn read_only(dir: &Path) -> Connection {
        Connection::open_with_flags(dir.join("tsd.db"), rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap()
    }

    #[test]
    fn a_replica_becomes_a_copy_of_the_master_and_keeps_its_identity() {
        let (master_dir, replica_dir, files) = (
            tempfile::tempdir().unwrap(),
            tempfile::tempdir().unwrap(),
            tempfile::tempdir().unwrap(),
        );
        let mut master = master_store(master_dir.path());
        let mut replica = open(replica_dir.path()).unwrap();
        write(&mut replica, &mixed_entries(99, 50));
        replica
            .execute_batch("INSERT INTO replica (key, value) VALUES ('incarnation', 42), ('term', 9)")
            .unwrap();

        let path = files.path().join("snapshot.db");
        let taken = create(&read_only(master_dir.path()), &path).unwrap();
        assert_eq!(
            taken,
            SnapshotInfo {
                last_lsn: 200,
                committed: 120,
                max_hlc: super::super::max_hlc(&master).unwrap()
            }
        );
        assert_eq!(install(&mut replica, &path).unwrap(), taken);
        assert_eq!(dump(&replica), dump(&master));
        let kept: Vec<(String, i64)> = replica
            .prepare("SELECT key, value FROM replica ORDER BY key")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        assert_eq!(
            kept,
            vec![
                ("committed".into(), 120),
                ("incarnation".into(), 42),
                ("term".into(), 9)
            ]
        );
        assert_eq!(commit_point(&replica).unwrap(), 120);

        // Its log starts where the master's does, and it can drop what the master could.
        assert_eq!(term_at(&replica, 100).unwrap(), term_at(&master, 100).unwrap());
        assert_eq!(term_at(&replica, 99).unwrap(), None);
        assert_eq!(entries_after(&replica, 0, u64::MAX, 1).unwrap()[0].lsn, 101);
        truncate_after(&mut replica, 150).unwrap();
        truncate_after(&mut master, 150).unwrap();
        assert_eq!(dump(&replica), dump(&master));
    }

    #[test]
    fn a_damaged_snapshot_changes_nothing() {
        let (replica_dir, files) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let mut replica = open(replica_dir.path()).unwrap();
        write(&mut replica, &mixed_entries(5, 40));
        let before = dump(&replica);
        let garbage = files.path().join("garbage.db");
        std::fs::write(&garbage, vec![7u8; 8192]).unwrap();
        let refused = install(&mut replica, &garbage).unwrap_err();
        assert!(!refused.is_fatal(), "a bad file must not stop the server: {refused}");
        // A database that is not a store.
        let foreign = files.path().join("foreign.db");
        Connection::open(&foreign)
            .unwrap()
            .execute_batch("CREATE TABLE x (a)")
            .unwrap();
        let refused = install(&mut replica, &foreign).unwrap_err();
        assert!(!refused.is_fatal(), "a bad file must not stop the server: {refused}");
        assert_eq!(dump(&replica), before);
        // Recording goes on: the store still drops suffixes exactly.
        write(&mut replica, &mixed_entries(6, 60)[40..]);
        truncate_after(&mut replica, 40).unwrap();
        assert_eq!(dump(&replica), before);
    }
}
