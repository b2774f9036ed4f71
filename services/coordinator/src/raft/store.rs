//! The Raft log, the vote and the state machine of one coordinator, in one SQLite file
//! (`coordinator-raft.sqlite3` in `--data-dir`, or in memory without one). Every write is
//! synchronous (WAL, `synchronous=FULL`): when openraft hears that something is stored, it is.
//!
//! The state machine is small (one [`Metadata`] for the whole system), so it is stored whole
//! after each applied batch and a snapshot is simply its JSON.

// openraft's storage traits return its `StorageError` by value; the helpers here return the
// same type rather than box it only to unbox it again.
#![allow(clippy::result_large_err)]

use super::{Command, NodeId, TypeConfig};
use crate::metadata::Metadata;
use openraft::storage::{LogFlushed, RaftLogStorage, RaftStateMachine};
use openraft::{
    BasicNode, Entry, EntryPayload, LogId, LogState, RaftLogReader, RaftSnapshotBuilder, Snapshot, SnapshotMeta,
    StorageError, StorageIOError, StoredMembership, Vote,
};
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};
use std::fmt::Debug;
use std::io::Cursor;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};

type Result<T> = std::result::Result<T, StorageError<NodeId>>;

/// The file the coordinator keeps its Raft state in, inside `--data-dir`.
pub const FILE_NAME: &str = "coordinator-raft.sqlite3";

/// What the applied log amounts to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MachineState {
    pub last_applied: Option<LogId<NodeId>>,
    pub membership: StoredMembership<NodeId, BasicNode>,
    pub metadata: Metadata,
}

#[derive(Debug, Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta<NodeId, BasicNode>,
    data: Vec<u8>,
}

/// Opens (creating if needed) the store in `dir`, or in memory; returns the log store and the
/// state machine, which share the file.
pub fn open(dir: Option<&Path>) -> std::result::Result<(LogStore, StateMachine), rusqlite::Error> {
    let conn = match dir {
        Some(dir) => {
            std::fs::create_dir_all(dir).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
            Connection::open(dir.join(FILE_NAME))?
        }
        None => Connection::open_in_memory()?,
    };
    conn.execute_batch(
        "PRAGMA journal_mode = WAL;
         PRAGMA synchronous = FULL;
         CREATE TABLE IF NOT EXISTS raft_log (idx INTEGER PRIMARY KEY, entry TEXT NOT NULL);
         CREATE TABLE IF NOT EXISTS raft_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);",
    )?;
    let db = Arc::new(Mutex::new(conn));
    let state: MachineState = read_meta(&db, "machine")
        .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?
        .unwrap_or_default();
    let machine = StateMachine {
        db: db.clone(),
        state: Arc::new(RwLock::new(state)),
    };
    Ok((LogStore { db }, machine))
}

fn read_meta<T: for<'de> Deserialize<'de>>(db: &Mutex<Connection>, key: &str) -> Result<Option<T>> {
    let conn = tinysns_common::lock(db);
    let text: Option<String> = conn
        .query_row("SELECT value FROM raft_meta WHERE key = ?1", [key], |row| row.get(0))
        .optional()
        .map_err(|e| StorageIOError::read(&e))?;
    text.map(|t| serde_json::from_str(&t).map_err(|e| StorageIOError::read(&e).into()))
        .transpose()
}

fn write_meta<T: Serialize>(conn: &Connection, key: &str, value: &T) -> std::result::Result<(), rusqlite::Error> {
    let text = serde_json::to_string(value).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
    conn.execute(
        "INSERT INTO raft_meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        params![key, text],
    )?;
    Ok(())
}

/// The Raft log and vote.
#[derive(Clone)]
pub struct LogStore {
    db: Arc<Mutex<Connection>>,
}

fn sql_bounds(range: &impl RangeBounds<u64>) -> (i64, i64) {
    let start = match range.start_bound() {
        Bound::Included(&i) => i,
        Bound::Excluded(&i) => i.saturating_add(1),
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(&i) => i.saturating_add(1),
        Bound::Excluded(&i) => i,
        Bound::Unbounded => u64::MAX,
    };
    let clamp = |i: u64| i64::try_from(i).unwrap_or(i64::MAX);
    (clamp(start), clamp(end))
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>> {
        let (start, end) = sql_bounds(&range);
        let conn = tinysns_common::lock(&self.db);
        let mut stmt = conn
            .prepare_cached("SELECT entry FROM raft_log WHERE idx >= ?1 AND idx < ?2 ORDER BY idx")
            .map_err(|e| StorageIOError::read_logs(&e))?;
        let rows = stmt
            .query_map(params![start, end], |row| row.get::<_, String>(0))
            .map_err(|e| StorageIOError::read_logs(&e))?;
        rows.map(|row| {
            let text = row.map_err(|e| StorageIOError::read_logs(&e))?;
            serde_json::from_str(&text).map_err(|e| StorageIOError::read_logs(&e).into())
        })
        .collect()
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>> {
        let purged: Option<LogId<NodeId>> = read_meta(&self.db, "purged")?;
        let last: Option<String> = {
            let conn = tinysns_common::lock(&self.db);
            conn.query_row("SELECT entry FROM raft_log ORDER BY idx DESC LIMIT 1", [], |row| {
                row.get(0)
            })
            .optional()
            .map_err(|e| StorageIOError::read_logs(&e))?
        };
        let last = match last {
            Some(text) => {
                let entry: Entry<TypeConfig> =
                    serde_json::from_str(&text).map_err(|e| StorageIOError::read_logs(&e))?;
                Some(entry.log_id)
            }
            None => purged,
        };
        Ok(LogState {
            last_purged_log_id: purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<()> {
        let conn = tinysns_common::lock(&self.db);
        write_meta(&conn, "vote", vote).map_err(|e| StorageIOError::write_vote(&e).into())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>> {
        read_meta(&self.db, "vote")
    }

    async fn save_committed(&mut self, committed: Option<LogId<NodeId>>) -> Result<()> {
        let conn = tinysns_common::lock(&self.db);
        write_meta(&conn, "committed", &committed).map_err(|e| StorageIOError::write(&e).into())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>> {
        Ok(read_meta::<Option<LogId<NodeId>>>(&self.db, "committed")?.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<()>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let written = (|| -> std::result::Result<(), rusqlite::Error> {
            let mut conn = tinysns_common::lock(&self.db);
            let tx = conn.transaction()?;
            for entry in entries {
                let text =
                    serde_json::to_string(&entry).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
                tx.execute(
                    "INSERT OR REPLACE INTO raft_log (idx, entry) VALUES (?1, ?2)",
                    params![entry.log_id.index as i64, text],
                )?;
            }
            tx.commit()
        })();
        match written {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(StorageIOError::write_logs(&e).into())
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<()> {
        let conn = tinysns_common::lock(&self.db);
        conn.execute("DELETE FROM raft_log WHERE idx >= ?1", [log_id.index as i64])
            .map_err(|e| StorageIOError::write_logs(&e))?;
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<()> {
        let mut conn = tinysns_common::lock(&self.db);
        let purged = (|| -> std::result::Result<(), rusqlite::Error> {
            let tx = conn.transaction()?;
            write_meta(&tx, "purged", &log_id)?;
            tx.execute("DELETE FROM raft_log WHERE idx <= ?1", [log_id.index as i64])?;
            tx.commit()
        })();
        purged.map_err(|e| StorageIOError::write_logs(&e).into())
    }
}

/// The applied metadata, shared with whoever reads it (the leader's registry).
#[derive(Clone)]
pub struct StateMachine {
    db: Arc<Mutex<Connection>>,
    state: Arc<RwLock<MachineState>>,
}

impl StateMachine {
    /// The metadata as applied so far.
    pub fn metadata(&self) -> Metadata {
        self.read().metadata.clone()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, MachineState> {
        self.state.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn replace(&self, next: MachineState, snapshot: Option<&StoredSnapshot>) -> Result<()> {
        let mut conn = tinysns_common::lock(&self.db);
        let stored = (|| -> std::result::Result<(), rusqlite::Error> {
            let tx = conn.transaction()?;
            write_meta(&tx, "machine", &next)?;
            if let Some(snapshot) = snapshot {
                write_meta(&tx, "snapshot", snapshot)?;
            }
            tx.commit()
        })();
        stored.map_err(|e| StorageIOError::write_state_machine(&e))?;
        *self.state.write().unwrap_or_else(std::sync::PoisonError::into_inner) = next;
        Ok(())
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>> {
        let state = self.read().clone();
        let data = serde_json::to_vec(&state).map_err(|e| StorageIOError::read_state_machine(&e))?;
        let snapshot_id = match &state.last_applied {
            Some(id) => format!("{}-{}", id.leader_id, id.index),
            None => "empty".to_string(),
        };
        let stored = StoredSnapshot {
            meta: SnapshotMeta {
                last_log_id: state.last_applied,
                last_membership: state.membership.clone(),
                snapshot_id,
            },
            data,
        };
        {
            let conn = tinysns_common::lock(&self.db);
            write_meta(&conn, "snapshot", &stored).map_err(|e| StorageIOError::write_snapshot(None, &e))?;
        }
        Ok(Snapshot {
            meta: stored.meta,
            snapshot: Box::new(Cursor::new(stored.data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> Result<(Option<LogId<NodeId>>, StoredMembership<NodeId, BasicNode>)> {
        let state = self.read();
        Ok((state.last_applied, state.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<()>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let mut next = self.read().clone();
        let mut replies = Vec::new();
        for entry in entries {
            next.last_applied = Some(entry.log_id);
            match entry.payload {
                EntryPayload::Blank => {}
                EntryPayload::Normal(Command::Update(part)) => next.metadata.merge(part),
                EntryPayload::Membership(membership) => {
                    next.membership = StoredMembership::new(Some(entry.log_id), membership)
                }
            }
            replies.push(());
        }
        self.replace(next, None)?;
        Ok(replies)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<()> {
        let data = snapshot.into_inner();
        let state: MachineState =
            serde_json::from_slice(&data).map_err(|e| StorageIOError::read_snapshot(Some(meta.signature()), &e))?;
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data,
        };
        self.replace(state, Some(&stored))
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>> {
        let stored: Option<StoredSnapshot> = read_meta(&self.db, "snapshot")?;
        Ok(stored.map(|s| Snapshot {
            meta: s.meta,
            snapshot: Box::new(Cursor::new(s.data)),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::testing::{StoreBuilder, Suite};

    struct Builder;

    impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for Builder {
        async fn build(&self) -> Result<(tempfile::TempDir, LogStore, StateMachine)> {
            let dir = tempfile::tempdir().map_err(|e| StorageIOError::write(&e))?;
            let (log, machine) = open(Some(dir.path())).map_err(|e| StorageIOError::write(&e))?;
            Ok((dir, log, machine))
        }
    }

    /// Openraft's own conformance suite for log stores and state machines.
    #[test]
    fn passes_openraft_storage_suite() {
        Suite::test_all(Builder).unwrap();
    }

    #[tokio::test]
    async fn state_survives_reopening_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, mut machine) = open(Some(dir.path())).unwrap();
        let mut part = Metadata::default();
        part.servers.insert(
            2,
            crate::metadata::GroupMeta {
                term: 9,
                ..Default::default()
            },
        );
        let entry = Entry::<TypeConfig> {
            log_id: LogId::new(openraft::CommittedLeaderId::new(3, 1), 1),
            payload: EntryPayload::Normal(Command::Update(part.clone())),
        };
        log.save_vote(&Vote::new(3, 1)).await.unwrap();
        machine.apply([entry]).await.unwrap();
        drop((log, machine));
        let (mut log, machine) = open(Some(dir.path())).unwrap();
        assert_eq!(machine.metadata(), part);
        assert_eq!(log.read_vote().await.unwrap(), Some(Vote::new(3, 1)));
    }
}
