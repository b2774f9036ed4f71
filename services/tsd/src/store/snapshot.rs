//! A copy of a whole store, to bring up a replica whose log ends before the master's log
//! starts (it is new, wiped, or was away while the log was compacted): the master writes a
//! consistent copy of its database (`VACUUM INTO`, one read transaction), ships the file, and
//! the replica replaces its log, derived tables and undo log with the copy's in one
//! transaction. What belongs to the replica alone (its incarnation, its term) stays.

use super::{
    ADDED_COLUMNS, ADDED_TABLES, DERIVED_TABLES, Result, StoreError, compaction, record_commit_point, table_columns,
    write_transaction,
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

/// Writes a consistent copy of the store in the file `db` to `path` (which must not exist),
/// on a connection of its own, beside the writer. The copy is in transit (removed after it is
/// sent, or on the next try after a crash), so it is not flushed to disk: a flush of the
/// whole store at once would hold up the writer's own flushes.
pub fn take(db: &Path, path: &Path) -> Result<SnapshotInfo> {
    let conn = Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    // VACUUM INTO writes with the source connection's flags.
    conn.pragma_update(None, "synchronous", "OFF")?;
    create(&conn, path)
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

/// Rows deleted or copied per transaction while a snapshot is installed.
pub const INSTALL_STEP: i64 = 5_000;

/// Present in `replica` while an install has begun and not finished: the store is partial.
const INSTALLING: &str = "installing";

/// The tables an install replaces, in steps (`log_bounds` goes last, in one transaction).
fn replaced_tables() -> impl Iterator<Item = &'static str> {
    DERIVED_TABLES
        .iter()
        .chain(&COPIED_WITH_DERIVED)
        .copied()
        .filter(|t| *t != "log_bounds")
}

/// Replaces the log and everything derived from it in the store file `db` with the snapshot at
/// `path`, on a connection of its own, in steps of a few thousand rows so that other writers
/// of the disk are not held up behind one huge transaction: `rest` is called after each step
/// with the time it took (the caller pauses). The store is marked durably before anything is
/// removed, and the mark goes in the same transaction as the last step: a crash in between
/// leaves a marked store, which `open` empties (`discard_interrupted_install`).
pub fn install(
    db: &Path,
    path: &Path,
    rows_per_step: i64,
    mut rest: impl FnMut(std::time::Duration),
) -> Result<SnapshotInfo> {
    let source = path
        .to_str()
        .ok_or_else(|| StoreError::Snapshot(format!("path {} is not UTF-8", path.display())))?;
    let mut conn = Connection::open(db)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.execute("ATTACH DATABASE ?1 AS snapshot", [source])
        .map_err(|e| StoreError::Snapshot(format!("cannot open the snapshot: {e}")))?;
    let installed = install_attached(&mut conn, rows_per_step.max(1), &mut rest);
    let _ = conn.execute_batch("DETACH DATABASE snapshot");
    installed
}

fn install_attached(
    conn: &mut Connection,
    step: i64,
    rest: &mut impl FnMut(std::time::Duration),
) -> Result<SnapshotInfo> {
    let info = check_attached(conn)?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.execute(
        "INSERT OR REPLACE INTO replica (key, value) VALUES (?1, 1)",
        [INSTALLING],
    )?;
    // From here the store is partial until the last step: a failure leaves it marked, and
    // only a restart (which empties it) makes it usable again.
    replace_marked(conn, info, step, rest).map_err(|e| StoreError::InstallInterrupted(e.to_string()))
}

fn replace_marked(
    conn: &mut Connection,
    info: SnapshotInfo,
    step: i64,
    rest: &mut impl FnMut(std::time::Duration),
) -> Result<SnapshotInfo> {
    // The steps in between need not reach the disk one by one: the mark stands for them.
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    for table in replaced_tables() {
        clear_in_steps(conn, table, step, rest)?;
    }
    for table in replaced_tables() {
        // A table an older sender did not have (checked in `check`) stays empty.
        if table_columns(conn, "snapshot", table)?.is_empty() {
            continue;
        }
        copy_in_steps(conn, table, step, rest)?;
    }
    conn.pragma_update(None, "synchronous", "FULL")?;
    let tx = write_transaction(conn)?;
    let columns = table_columns(&tx, "main", "log_bounds")?.join(",");
    tx.execute("DELETE FROM main.log_bounds", [])?;
    tx.execute(
        &format!("INSERT INTO main.log_bounds ({columns}) SELECT {columns} FROM snapshot.log_bounds"),
        [],
    )
    .map_err(|e| StoreError::Snapshot(format!("cannot copy the log bounds: {e}")))?;
    if compaction::bounds(&tx).is_err() {
        return Err(StoreError::Snapshot("the snapshot has no log bounds".into()));
    }
    fill_added_columns(&tx)?;
    record_commit_point(&tx, info.committed)?;
    tx.execute("DELETE FROM replica WHERE key = ?1", [INSTALLING])?;
    tx.commit()?;
    Ok(info)
}

/// What the attached snapshot holds, once it is known to be a sound database.
fn check_attached(conn: &Connection) -> Result<SnapshotInfo> {
    // What is wrong with the file sent is the sender's problem, never our store's: these
    // errors must not read as a failing disk (`StoreError::is_fatal`), which stops the server.
    let damaged = |e: &dyn std::fmt::Display| StoreError::Snapshot(format!("the snapshot is damaged: {e}"));
    let check: String = conn
        .query_row("PRAGMA snapshot.quick_check", [], |r| r.get(0))
        .map_err(|e| damaged(&e))?;
    if check != "ok" {
        return Err(damaged(&check));
    }
    for table in replaced_tables().chain(["log_bounds"]) {
        let theirs = table_columns(conn, "snapshot", table).map_err(|e| damaged(&e))?;
        if theirs.is_empty() && ADDED_TABLES.contains(&table) {
            continue;
        }
        // A column added since the sender's release is filled in as `open` fills it.
        if let Some(missing) = table_columns(conn, "main", table)?
            .into_iter()
            .find(|c| !theirs.contains(c) && !is_added_column(table, c))
        {
            return Err(damaged(&format!("table {table} has no column {missing}")));
        }
    }
    info(conn, "snapshot").map_err(|e| damaged(&e))
}

fn is_added_column(table: &str, column: &str) -> bool {
    ADDED_COLUMNS.iter().any(|(t, c, _, _)| *t == table && *c == column)
}

/// Fills in the columns the snapshot's older release did not have (call before detaching it).
fn fill_added_columns(conn: &Connection) -> Result<()> {
    for (table, column, _, fill) in ADDED_COLUMNS {
        let theirs = table_columns(conn, "snapshot", table)?;
        if !theirs.is_empty() && !theirs.iter().any(|c| c == column) && !fill.is_empty() {
            conn.execute_batch(fill)?;
        }
    }
    Ok(())
}

fn clear_in_steps(conn: &Connection, table: &str, step: i64, rest: &mut impl FnMut(std::time::Duration)) -> Result<()> {
    let delete = format!("DELETE FROM main.{table} WHERE rowid IN (SELECT rowid FROM main.{table} LIMIT {step})");
    loop {
        let started = std::time::Instant::now();
        if conn.execute(&delete, [])? == 0 {
            return Ok(());
        }
        rest(started.elapsed());
    }
}

fn copy_in_steps(
    conn: &mut Connection,
    table: &str,
    step: i64,
    rest: &mut impl FnMut(std::time::Duration),
) -> Result<()> {
    let theirs = table_columns(conn, "snapshot", table)?;
    let columns = table_columns(conn, "main", table)?
        .into_iter()
        .filter(|c| theirs.contains(c))
        .collect::<Vec<_>>()
        .join(",");
    let next = format!(
        "SELECT MAX(r) FROM (SELECT rowid AS r FROM snapshot.{table} WHERE rowid > ?1 ORDER BY rowid LIMIT {step})"
    );
    let copy = format!(
        "INSERT INTO main.{table} ({columns}) SELECT {columns} FROM snapshot.{table} WHERE rowid > ?1 AND rowid <= ?2"
    );
    let mut after = i64::MIN;
    loop {
        let started = std::time::Instant::now();
        let tx = write_transaction(conn)?;
        let last: Option<i64> = tx
            .query_row(&next, [after], |r| r.get(0))
            .map_err(|e| StoreError::Snapshot(format!("cannot read table {table}: {e}")))?;
        let Some(last) = last else {
            return Ok(());
        };
        tx.execute(&copy, [after, last])
            .map_err(|e| StoreError::Snapshot(format!("cannot copy table {table}: {e}")))?;
        tx.commit()?;
        after = last;
        rest(started.elapsed());
    }
}

/// Empties a store whose install of a snapshot was interrupted (it holds part of one), so it
/// starts over as a new, empty replica: a new incarnation (chosen by `identity::load`), the
/// same term. True if it was one.
pub(super) fn discard_interrupted_install(conn: &Connection) -> Result<bool> {
    let interrupted = conn
        .query_row("SELECT 1 FROM replica WHERE key = ?1", [INSTALLING], |_| Ok(()))
        .optional()?
        .is_some();
    if !interrupted {
        return Ok(false);
    }
    let tx = conn.unchecked_transaction()?;
    for table in replaced_tables() {
        tx.execute(&format!("DELETE FROM main.{table}"), [])?;
    }
    tx.execute(
        "UPDATE log_bounds SET log_start = 0, start_term = 0, start_hlc = 0, undo_floor = 0",
        [],
    )?;
    tx.execute(
        "DELETE FROM replica WHERE key IN (?1, 'committed', 'incarnation')",
        [INSTALLING],
    )?;
    tx.commit()?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::super::tests::{dump, mixed_entries, write};
    use super::super::{commit_point, entries_after, last_lsn, open, term_at, truncate_after, undo};
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

    /// What the `replica` table holds (the replica's own rows), by key.
    fn replica_rows(conn: &Connection) -> Vec<(String, i64)> {
        conn.prepare("SELECT key, value FROM replica ORDER BY key")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(|r| r.unwrap())
            .collect()
    }

    /// A replica's store holding 50 entries of its own, incarnation 42, term 9.
    fn replica_store(dir: &Path) -> Connection {
        let mut replica = open(dir).unwrap();
        write(&mut replica, &mixed_entries(99, 50));
        replica
            .execute_batch("INSERT INTO replica (key, value) VALUES ('incarnation', 42), ('term', 9)")
            .unwrap();
        replica
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
        let mut replica = replica_store(replica_dir.path());

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
        let mut steps = 0;
        let installed = install(&replica_dir.path().join("tsd.db"), &path, 16, |_| steps += 1).unwrap();
        assert_eq!(installed, taken);
        // 100 log entries and more rows than that in the tables, 16 at a time.
        assert!(steps > 200 / 16, "{steps} steps");
        assert_eq!(dump(&replica), dump(&master));
        let kept = replica_rows(&replica);
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
        let db = replica_dir.path().join("tsd.db");
        let refused = install(&db, &garbage, INSTALL_STEP, |_| {}).unwrap_err();
        assert!(!refused.is_fatal(), "a bad file must not stop the server: {refused}");
        // A database that is not a store.
        let foreign = files.path().join("foreign.db");
        Connection::open(&foreign)
            .unwrap()
            .execute_batch("CREATE TABLE x (a)")
            .unwrap();
        let refused = install(&db, &foreign, INSTALL_STEP, |_| {}).unwrap_err();
        assert!(!refused.is_fatal(), "a bad file must not stop the server: {refused}");
        // A store missing a column we need.
        let master_dir = tempfile::tempdir().unwrap();
        drop(master_store(master_dir.path()));
        let partial = files.path().join("partial.db");
        create(&read_only(master_dir.path()), &partial).unwrap();
        Connection::open(&partial)
            .unwrap()
            .execute_batch("ALTER TABLE posts DROP COLUMN ts_ms")
            .unwrap();
        let refused = install(&db, &partial, INSTALL_STEP, |_| {}).unwrap_err();
        assert!(!refused.is_fatal(), "a bad file must not stop the server: {refused}");
        assert!(refused.to_string().contains("ts_ms"), "{refused}");
        assert_eq!(dump(&replica), before);
        // Recording goes on: the store still drops suffixes exactly.
        write(&mut replica, &mixed_entries(6, 60)[40..]);
        truncate_after(&mut replica, 40).unwrap();
        assert_eq!(dump(&replica), before);
    }

    #[test]
    fn a_snapshot_from_a_release_without_post_numbers_likes_or_replies_installs_and_numbers_its_posts() {
        let (master_dir, replica_dir, files) = (
            tempfile::tempdir().unwrap(),
            tempfile::tempdir().unwrap(),
            tempfile::tempdir().unwrap(),
        );
        let master = master_store(master_dir.path());
        // (An older release has no likes to send.)
        let without_likes = |rows: Vec<String>| {
            rows.into_iter()
                .filter(|r| !r.starts_with("likes:"))
                .collect::<Vec<_>>()
        };
        let expected = without_likes(dump(&master));
        assert!(expected.iter().any(|r| r.starts_with("posts:")));
        drop(master);
        let old = files.path().join("old.db");
        create(&read_only(master_dir.path()), &old).unwrap();
        Connection::open(&old)
            .unwrap()
            .execute_batch(
                "DROP INDEX posts_by_author_number; DROP TABLE replies;
                 ALTER TABLE posts DROP COLUMN number; ALTER TABLE posts DROP COLUMN reply_author;
                 ALTER TABLE posts DROP COLUMN reply_number; DROP TABLE likes; DROP TABLE post_tombstones;",
            )
            .unwrap();
        drop(replica_store(replica_dir.path()));
        install(&replica_dir.path().join("tsd.db"), &old, INSTALL_STEP, |_| {}).unwrap();
        let replica = open(replica_dir.path()).unwrap();
        // Numbered as the master numbered them: per author, in the order applied.
        assert_eq!(without_likes(dump(&replica)), expected);
        assert!(!dump(&replica).iter().any(|r| r.starts_with("likes:")));
        let unnumbered: i64 = replica
            .query_row("SELECT COUNT(*) FROM posts WHERE number = 0", [], |r| r.get(0))
            .unwrap();
        assert_eq!(unnumbered, 0);
    }

    #[test]
    fn an_install_cut_short_leaves_a_store_that_restarts_empty_under_a_new_incarnation() {
        let (master_dir, replica_dir, files) = (
            tempfile::tempdir().unwrap(),
            tempfile::tempdir().unwrap(),
            tempfile::tempdir().unwrap(),
        );
        let master = master_store(master_dir.path());
        let replica = replica_store(replica_dir.path());
        drop(replica);
        let path = files.path().join("snapshot.db");
        create(&read_only(master_dir.path()), &path).unwrap();
        let db = replica_dir.path().join("tsd.db");

        // The process dies after a few steps (the panic stands for the crash).
        let mut steps = 0;
        let crashed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            install(&db, &path, 16, |_| {
                steps += 1;
                assert!(steps < 5, "crash");
            })
        }));
        assert!(crashed.is_err());

        let reopened = open(replica_dir.path()).unwrap();
        assert_eq!(last_lsn(&reopened).unwrap(), 0);
        assert_eq!(compaction::bounds(&reopened).unwrap(), compaction::LogBounds::default());
        for table in DERIVED_TABLES.iter().chain(&["log", "undo"]) {
            let rows: i64 = reopened
                .query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))
                .unwrap();
            assert_eq!(rows, 0, "{table} still has rows");
        }
        let kept = replica_rows(&reopened);
        assert_eq!(
            kept,
            vec![("term".into(), 9)],
            "the term stays; a new incarnation comes"
        );
        drop(reopened);

        // The next snapshot installs as on an empty store.
        install(&db, &path, INSTALL_STEP, |_| {}).unwrap();
        let replica = open(replica_dir.path()).unwrap();
        assert_eq!(dump(&replica), dump(&master));
    }
}
