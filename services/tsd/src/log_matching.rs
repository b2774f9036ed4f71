//! The slave side of replication, as a function of the store: Raft's log-matching rule.
//!
//! Entries are accepted only if our entry at `prev_lsn` carries `prev_term`; entries we
//! already hold with the same term are skipped (a retransmission), and a conflicting suffix
//! (written by a master that was deposed before replicating it) is dropped. The writer runs
//! this on its thread and tells the feed and the heartbeat what changed.

use crate::store::{self, StoreError};
use rusqlite::Connection;
use tinysns_common::proto::internal::{AppendRequest, LogEntry};

/// What an Append did to the log.
#[derive(Debug, Clone, PartialEq)]
pub struct Matched {
    pub accepted: bool,
    /// Accepted: the position up to which our log now equals the master's. Refused: where it
    /// may agree at most (the master continues from there).
    pub last_lsn: u64,
    /// Entries newly stored, in order.
    pub stored: Vec<LogEntry>,
    /// The log was first truncated to end here (entries of a deposed master dropped).
    pub truncated_to: Option<u64>,
}

/// Applies `req` to the log in `conn`; `known_term` is the highest term we know (and have
/// stored), at least `req.term` for a master we accept. With `record_commit`, the master's
/// commit position (capped by what matches) is stored with the entries.
pub fn apply(
    conn: &mut Connection,
    mut req: AppendRequest,
    known_term: u64,
    record_commit: bool,
) -> Result<Matched, StoreError> {
    let bounds = store::compaction::bounds(conn)?;
    if req.prev_lsn < bounds.start {
        // Our log starts later (it was compacted): entries up to its start were committed, so
        // every master holds them as we do. Continue from there.
        req.entries.retain(|e| e.lsn > bounds.start);
        req.prev_lsn = bounds.start;
        req.prev_term = bounds.start_term;
    }
    let mut last = store::last_lsn(conn)?;
    let mut out = Matched {
        accepted: false,
        last_lsn: last,
        stored: Vec::new(),
        truncated_to: None,
    };
    if req.term < known_term {
        return Ok(out);
    }
    match store::term_at(conn, req.prev_lsn)? {
        None => return Ok(out),
        Some(term) if term != req.prev_term => {
            let keep = req.prev_lsn.saturating_sub(1);
            store::truncate_after(conn, keep)?;
            out.truncated_to = Some(keep);
            out.last_lsn = keep;
            return Ok(out);
        }
        Some(_) => {}
    }
    let mut fresh = Vec::with_capacity(req.entries.len());
    let mut matched_skip = req.prev_lsn;
    for entry in req.entries {
        if entry.lsn <= last {
            if store::term_at(conn, entry.lsn)? == Some(entry.term) {
                matched_skip = entry.lsn;
                continue;
            }
            let keep = entry.lsn - 1;
            store::truncate_after(conn, keep)?;
            out.truncated_to = Some(keep);
            last = keep;
        }
        if entry.lsn != last + 1 + fresh.len() as u64 {
            return Err(StoreError::OutOfOrder {
                got: entry.lsn,
                last: last + fresh.len() as u64,
            });
        }
        fresh.push(entry);
    }
    let matched = fresh.last().map_or(req.prev_lsn.max(matched_skip), |e| e.lsn);
    let tx = store::write_transaction(conn)?;
    for entry in &fresh {
        store::append(&tx, entry)?;
    }
    if record_commit && !fresh.is_empty() {
        store::record_commit_point(&tx, req.commit_lsn.min(matched))?;
    }
    tx.commit()?;
    // Report the position that matches the master's log, not our own end: anything of ours
    // beyond it is unconfirmed and is checked entry by entry on the next call.
    out.accepted = true;
    out.last_lsn = matched;
    out.stored = fresh;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(lsn: u64, term: u64) -> LogEntry {
        LogEntry {
            lsn,
            term,
            ..Default::default()
        }
    }

    fn append(term: u64, prev: (u64, u64), entries: Vec<LogEntry>) -> AppendRequest {
        AppendRequest {
            term,
            master_id: 1,
            prev_lsn: prev.0,
            prev_term: prev.1,
            entries,
            commit_lsn: 0,
        }
    }

    fn terms(conn: &Connection) -> Vec<u64> {
        let last = store::last_lsn(conn).unwrap();
        (1..=last).map(|l| store::term_at(conn, l).unwrap().unwrap()).collect()
    }

    /// A store whose log holds entries of the given terms.
    fn store_with(dir: &std::path::Path, log: &[u64]) -> Connection {
        let mut conn = store::open(dir).unwrap();
        let entries = log.iter().enumerate().map(|(i, t)| entry(i as u64 + 1, *t)).collect();
        apply(&mut conn, append(*log.last().unwrap_or(&1), (0, 0), entries), 0, true).unwrap();
        conn
    }

    #[test]
    fn a_retransmission_stores_nothing_twice() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = store_with(dir.path(), &[1, 1, 1]);
        let again = apply(
            &mut conn,
            append(1, (0, 0), vec![entry(1, 1), entry(2, 1), entry(3, 1)]),
            1,
            true,
        )
        .unwrap();
        assert!(again.accepted);
        assert_eq!((again.last_lsn, again.stored.len(), again.truncated_to), (3, 0, None));
        // Overlapping: the known part is skipped, the new part stored.
        let more = apply(
            &mut conn,
            append(1, (1, 1), vec![entry(2, 1), entry(3, 1), entry(4, 1)]),
            1,
            true,
        )
        .unwrap();
        assert_eq!((more.last_lsn, more.stored.len()), (4, 1));
        assert_eq!(terms(&conn), vec![1, 1, 1, 1]);
    }

    #[test]
    fn a_conflicting_suffix_of_a_deposed_master_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        // Entries 3 and 4 were written under term 1 by a master deposed before replicating.
        let mut conn = store_with(dir.path(), &[1, 1, 1, 1]);
        let m = apply(&mut conn, append(2, (2, 1), vec![entry(3, 2)]), 2, true).unwrap();
        assert!(m.accepted);
        assert_eq!((m.last_lsn, m.truncated_to), (3, Some(2)));
        assert_eq!(terms(&conn), vec![1, 1, 2]);
    }

    #[test]
    fn a_mismatch_at_prev_drops_it_and_refuses_so_the_master_steps_back() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = store_with(dir.path(), &[1, 1, 1]);
        let m = apply(&mut conn, append(3, (3, 2), vec![entry(4, 3)]), 3, true).unwrap();
        assert!(!m.accepted);
        assert_eq!((m.last_lsn, m.truncated_to), (2, Some(2)));
        assert_eq!(terms(&conn), vec![1, 1]);
    }

    #[test]
    fn an_append_beyond_our_end_is_refused_and_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = store_with(dir.path(), &[1, 1]);
        let m = apply(&mut conn, append(1, (5, 1), vec![entry(6, 1)]), 1, true).unwrap();
        assert_eq!((m.accepted, m.last_lsn, m.truncated_to), (false, 2, None));
        assert_eq!(terms(&conn), vec![1, 1]);
    }

    #[test]
    fn a_master_of_an_older_term_is_refused_and_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = store_with(dir.path(), &[1, 2]);
        let m = apply(&mut conn, append(2, (1, 1), vec![entry(2, 2), entry(3, 2)]), 3, true).unwrap();
        assert_eq!((m.accepted, m.last_lsn, m.stored.len()), (false, 2, 0));
        assert_eq!(terms(&conn), vec![1, 2]);
    }

    #[test]
    fn entries_before_a_compacted_start_count_as_matching() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = store_with(dir.path(), &[1, 1, 2, 2, 2]);
        let tx = store::write_transaction(&mut conn).unwrap();
        store::record_commit_point(&tx, 4).unwrap();
        store::compaction::compact(&tx, 3, 100).unwrap();
        tx.commit().unwrap();
        // A master probing from before our start: agreed up to what we hold.
        let m = apply(
            &mut conn,
            append(
                2,
                (1, 1),
                vec![entry(2, 1), entry(3, 2), entry(4, 2), entry(5, 2), entry(6, 2)],
            ),
            2,
            true,
        )
        .unwrap();
        assert!(m.accepted);
        assert_eq!((m.last_lsn, m.stored.len(), m.truncated_to), (6, 1, None));
        let m = apply(&mut conn, append(2, (0, 0), vec![]), 2, true).unwrap();
        assert_eq!((m.accepted, m.last_lsn), (true, 3));
        assert_eq!(store::term_at(&conn, 3).unwrap(), Some(2));
        assert_eq!(store::term_at(&conn, 2).unwrap(), None);
    }

    #[test]
    fn the_commit_point_recorded_is_never_past_what_matches() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = store_with(dir.path(), &[1]);
        let mut req = append(1, (1, 1), vec![entry(2, 1)]);
        req.commit_lsn = 9;
        apply(&mut conn, req, 1, true).unwrap();
        assert_eq!(store::commit_point(&conn).unwrap(), 2);
        let mut req = append(1, (2, 1), vec![entry(3, 1), entry(4, 1)]);
        req.commit_lsn = 3;
        apply(&mut conn, req, 1, true).unwrap();
        assert_eq!(store::commit_point(&conn).unwrap(), 3);
    }
}
