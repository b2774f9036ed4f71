//! Dropping the log's front. The derived tables hold everything the dropped entries did, so
//! an entry is needed only by readers of the log: a slave catching up, the synchronizer
//! publishing to other clusters, live streams. Entries go once they are committed, published
//! and older than a retained tail; a replica that needs older ones gets a snapshot instead
//! (`super::snapshot`).

use super::{Result, last_lsn};
use rusqlite::Connection;

/// What the log's front no longer holds, in the one-row table `log_bounds`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LogBounds {
    /// Entries up to here were dropped (0: none ever were).
    pub start: u64,
    /// The term of the entry at `start`.
    pub start_term: u64,
    /// The highest clock stamp of the dropped entries.
    pub start_hlc: u64,
    /// Entries up to here can no longer be undone (`super::undo`).
    pub undo_floor: u64,
}

pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS log_bounds (
    id INTEGER PRIMARY KEY CHECK (id = 1), log_start INTEGER NOT NULL, start_term INTEGER NOT NULL,
    start_hlc INTEGER NOT NULL, undo_floor INTEGER NOT NULL);
-- A store from before the undo log has no inverses for the entries it holds.
INSERT OR IGNORE INTO log_bounds VALUES (1, 0, 0, 0, (SELECT COALESCE(MAX(lsn), 0) FROM log));
";

pub fn bounds(conn: &Connection) -> Result<LogBounds> {
    Ok(conn
        .prepare_cached("SELECT log_start, start_term, start_hlc, undo_floor FROM log_bounds WHERE id = 1")?
        .query_row([], |r| {
            Ok(LogBounds {
                start: r.get::<_, i64>(0)? as u64,
                start_term: r.get::<_, i64>(1)? as u64,
                start_hlc: r.get::<_, i64>(2)? as u64,
                undo_floor: r.get::<_, i64>(3)? as u64,
            })
        })?)
}

/// How far the log's front may go: behind the commit point and, with other clusters to tell,
/// behind what the synchronizer confirmed it published, keeping `retain` entries before the
/// nearer of the two for slaves and streams a little behind.
pub fn horizon(committed: u64, published: Option<u64>, retain: u64) -> u64 {
    committed.min(published.unwrap_or(u64::MAX)).saturating_sub(retain)
}

/// Whether to drop entries now, with `held` entries in the log: whenever it holds more than
/// it must retain, except that a busy writer (a full batch) leaves it until the log holds
/// twice that, so a burst of writes is not slowed by the clean-up.
pub fn due(held: u64, retain: u64, busy: bool) -> bool {
    let bound = if busy { retain.saturating_mul(2).max(1) } else { retain };
    held > bound
}

/// Drops at most `limit` entries from the log's front, none after `upto`. Returns how many.
/// Call in the writer's transaction.
pub fn compact(conn: &Connection, upto: u64, limit: u64) -> Result<u64> {
    let bounds = bounds(conn)?;
    let upto = upto.min(last_lsn(conn)?).min(bounds.start.saturating_add(limit));
    if upto <= bounds.start {
        return Ok(0);
    }
    let (term, hlc) = conn
        .prepare_cached("SELECT (SELECT term FROM log WHERE lsn = ?1), MAX(hlc) FROM log WHERE lsn <= ?1")?
        .query_row([upto as i64], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)))?;
    conn.prepare_cached("DELETE FROM log WHERE lsn <= ?1")?
        .execute([upto as i64])?;
    conn.prepare_cached("UPDATE log_bounds SET log_start = ?1, start_term = ?2, start_hlc = MAX(start_hlc, ?3)")?
        .execute([upto as i64, term, hlc])?;
    Ok(upto - bounds.start)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_horizon_stays_behind_the_commit_point_and_the_published_position() {
        assert_eq!(horizon(1000, None, 100), 900);
        assert_eq!(horizon(1000, Some(400), 100), 300);
        assert_eq!(horizon(1000, Some(5000), 0), 1000);
        assert_eq!(horizon(50, None, 100), 0);
        assert_eq!(horizon(1000, Some(0), 0), 0, "nothing published: nothing dropped");
    }

    #[test]
    fn a_busy_writer_compacts_only_a_log_twice_the_retained_tail() {
        assert!(!due(100, 100, false));
        assert!(due(101, 100, false));
        assert!(!due(150, 100, true));
        assert!(!due(200, 100, true));
        assert!(due(201, 100, true));
        assert!(due(2, 0, true), "retaining nothing, a busy writer still compacts");
    }
}
