//! Dropping a suffix of the log at the cost of the suffix: every change an entry makes to the
//! derived tables is recorded with its inverse (the undo log of <https://sqlite.org/undoredo.html>),
//! so truncation runs the inverses of the dropped entries newest first instead of rebuilding
//! the tables from the whole log.
//!
//! Temporary triggers on the writer's connection record the inverses in `undo`, tagged with the
//! entry being applied (the log's last lsn: an entry is written to the log before it is
//! applied). Inverses of committed entries are never needed (no replica drops a committed
//! entry), so they are pruned when the commit point moves; `log_bounds.undo_floor` says how far.
//! A new post records nothing: the post's `seq` is the lsn of the entry that created it, which
//! is all its undoing needs.

use super::{DERIVED_TABLES, Result, StoreError, apply, compaction, table_columns, write_transaction};
use rusqlite::{Connection, OptionalExtension};

/// The table whose inserts record nothing: a post is only ever inserted by the entry that
/// creates it, which stores its own lsn as the post's `seq`, so undoing that entry is deleting
/// the post with that `seq` (`undo_after`). Posts are the bulk of all writes.
const INSERTS_UNDONE_BY_SEQ: &str = "posts";

/// The triggers of one table: each writes the statement that undoes the change, which finds
/// its row by primary key (rowids are not stable across a snapshot's copy).
fn triggers_for(table: &str, columns: &[String], key: &[String]) -> String {
    let record = |event: &str, inverse: String| {
        format!(
            "CREATE TEMP TRIGGER IF NOT EXISTS undo_{table}_{event} AFTER {event} ON main.{table} BEGIN
               INSERT INTO undo (lsn, statement) VALUES ((SELECT MAX(lsn) FROM log), {inverse});
             END;"
        )
    };
    let where_new = sql_concat(key.iter().map(|c| format!("'{c}=' || quote(new.{c})")), " AND ");
    let old_values = sql_concat(columns.iter().map(|c| format!("quote(old.{c})")), ",");
    let assignments = sql_concat(columns.iter().map(|c| format!("'{c}=' || quote(old.{c})")), ",");
    let on_insert = if table == INSERTS_UNDONE_BY_SEQ {
        String::new()
    } else {
        record("INSERT", format!("'DELETE FROM {table} WHERE ' || {where_new}"))
    };
    [
        on_insert,
        record(
            "UPDATE",
            format!("'UPDATE {table} SET ' || {assignments} || ' WHERE ' || {where_new}"),
        ),
        record(
            "DELETE",
            format!(
                "'INSERT INTO {table} ({}) VALUES (' || {old_values} || ')'",
                columns.join(",")
            ),
        ),
    ]
    .join("\n")
}

/// An SQL expression joining the string expressions `parts` with the literal `separator`.
fn sql_concat(parts: impl Iterator<Item = String>, separator: &str) -> String {
    parts.collect::<Vec<_>>().join(&format!(" || '{separator}' || "))
}

/// Starts recording inverses on `conn` (idempotent). REPLACE deletes the row it replaces
/// without firing delete triggers unless recursive triggers are on.
pub fn record(conn: &Connection) -> Result<()> {
    conn.pragma_update(None, "recursive_triggers", true)?;
    for table in DERIVED_TABLES {
        let key = primary_key(conn, table)?;
        conn.execute_batch(&triggers_for(table, &table_columns(conn, "main", table)?, &key))?;
    }
    Ok(())
}

/// The columns of `table`'s primary key.
fn primary_key(conn: &Connection, table: &str) -> Result<Vec<String>> {
    let mut stmt = conn.prepare("SELECT name FROM pragma_table_info(?1) WHERE pk > 0 ORDER BY pk")?;
    let names: Vec<String> = stmt
        .query_map([table], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    if names.is_empty() {
        return Err(StoreError::Internal(format!("table {table} has no primary key")));
    }
    Ok(names)
}

/// Stops recording on `conn` (inside a transaction, until [`record`] runs again): for changes
/// that are not entries being applied (undoing, rebuilding). A snapshot is installed on a
/// connection of its own, which records nothing.
pub fn pause(conn: &Connection) -> Result<()> {
    for table in DERIVED_TABLES {
        for event in ["INSERT", "UPDATE", "DELETE"] {
            conn.execute_batch(&format!("DROP TRIGGER IF EXISTS temp.undo_{table}_{event}"))?;
        }
    }
    Ok(())
}

/// Forgets the inverses of entries up to `lsn` (they are committed). Call in the writer's
/// transaction.
pub fn prune(conn: &Connection, lsn: u64) -> Result<()> {
    let floor = compaction::bounds(conn)?.undo_floor;
    if lsn <= floor {
        return Ok(());
    }
    // Inverses are appended in log order (`seq` grows with `lsn`), so those to forget are the
    // table's front: find where it ends walking from the front, over no more rows than go.
    let end: Option<i64> = conn
        .prepare_cached("SELECT seq FROM undo WHERE lsn > ?1 ORDER BY seq LIMIT 1")?
        .query_row([lsn as i64], |r| r.get(0))
        .optional()?;
    match end {
        Some(end) => conn.prepare_cached("DELETE FROM undo WHERE seq < ?1")?.execute([end])?,
        None => conn.prepare_cached("DELETE FROM undo")?.execute([])?,
    };
    conn.prepare_cached("UPDATE log_bounds SET undo_floor = ?1")?
        .execute([lsn as i64])?;
    Ok(())
}

/// Drops every entry after `keep` and their effects on the derived tables. Used by a replica
/// whose log diverged from the master's (it was deposed with unreplicated entries). Costs the
/// suffix; entries whose inverses were pruned (committed ones) cannot be dropped, except from a
/// log never compacted, which is then replayed from its start.
pub fn truncate_after(conn: &mut Connection, keep: u64) -> Result<()> {
    let bounds = compaction::bounds(conn)?;
    if keep < bounds.start {
        return Err(StoreError::Internal(format!(
            "cannot drop entries after {keep}: the log before {} was compacted (they were committed)",
            bounds.start
        )));
    }
    let dropped = drop_suffix(conn, keep, bounds);
    // A failed transaction rolls the dropped triggers back; make sure either way.
    record(conn)?;
    dropped
}

fn drop_suffix(conn: &mut Connection, keep: u64, bounds: compaction::LogBounds) -> Result<()> {
    let tx = write_transaction(conn)?;
    pause(&tx)?;
    if keep >= bounds.undo_floor {
        undo_after(&tx, keep)?;
    } else if bounds.start == 0 {
        rebuild(&tx, keep)?;
    } else {
        return Err(StoreError::Internal(format!(
            "cannot drop entries after {keep}: entries up to {} were committed",
            bounds.undo_floor
        )));
    }
    tx.execute("DELETE FROM log WHERE lsn > ?1", [keep as i64])?;
    tx.commit()?;
    Ok(())
}

/// Undoes the entries after `keep`, newest first: runs the inverses recorded for them, and
/// deletes the posts they created (see `INSERTS_UNDONE_BY_SEQ`). An entry that creates a post
/// does so before any other change it makes, so its recorded inverses run first.
fn undo_after(conn: &Connection, keep: u64) -> Result<()> {
    let recorded = recorded_after(conn, keep)?;
    let created: Vec<i64> = conn
        .prepare(&format!(
            "SELECT seq FROM {INSERTS_UNDONE_BY_SEQ} WHERE seq > ?1 ORDER BY seq DESC"
        ))?
        .query_map([keep as i64], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let mut created = created.into_iter().peekable();
    let delete_created = |lsn: i64| -> Result<()> {
        conn.prepare_cached(&format!("DELETE FROM {INSERTS_UNDONE_BY_SEQ} WHERE seq = ?1"))?
            .execute([lsn])?;
        Ok(())
    };
    for (lsn, statement) in &recorded.statements {
        while let Some(post) = created.next_if(|post| post > lsn) {
            delete_created(post)?;
        }
        conn.execute_batch(statement)?;
    }
    for post in created {
        delete_created(post)?;
    }
    if let Some(first) = recorded.first_seq {
        conn.execute("DELETE FROM undo WHERE seq >= ?1", [first])?;
    }
    Ok(())
}

/// The inverses recorded for entries after `keep`, newest first.
struct Recorded {
    /// `(lsn, statement)`.
    statements: Vec<(i64, String)>,
    /// The oldest one's place in `undo`.
    first_seq: Option<i64>,
}

/// They are the table's end (see `prune`): read backwards no further than the suffix.
fn recorded_after(conn: &Connection, keep: u64) -> Result<Recorded> {
    let mut recorded = Recorded {
        statements: Vec::new(),
        first_seq: None,
    };
    let mut stmt = conn.prepare("SELECT seq, lsn, statement FROM undo ORDER BY seq DESC")?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        let lsn: i64 = row.get(1)?;
        if lsn as u64 <= keep {
            break;
        }
        recorded.first_seq = Some(row.get(0)?);
        recorded.statements.push((lsn, row.get(2)?));
    }
    Ok(recorded)
}

/// The derived tables rebuilt from the log up to `keep` (a store from before the undo log).
fn rebuild(conn: &Connection, keep: u64) -> Result<()> {
    for table in DERIVED_TABLES {
        conn.execute(&format!("DELETE FROM {table}"), [])?;
    }
    conn.execute("DELETE FROM undo", [])?;
    let mut stmt = conn.prepare("SELECT lsn, entry FROM log WHERE lsn <= ?1 ORDER BY lsn")?;
    let mut rows = stmt.query([keep as i64])?;
    while let Some(row) = rows.next()? {
        let entry = super::decode(row.get::<_, i64>(0)? as u64, &row.get::<_, Vec<u8>>(1)?)?;
        apply::apply(conn, &entry)?;
    }
    conn.execute("UPDATE log_bounds SET undo_floor = ?1", [keep as i64])?;
    Ok(())
}
