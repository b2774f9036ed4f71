//! Rooms in the store: rooms (every cluster knows every room), members (at the host, and at
//! each member's home), messages (at the host and wherever members are), and the two phases
//! of deleting a room, as they apply; and the reads the room calls and the deletion driver
//! need.

use super::{Result, bound};
use rusqlite::{Connection, OptionalExtension, params};
use tinysns_common::proto::internal::{LogEntry, RoomMessage, room_change};

/// Schema of the room tables (part of the store's schema).
pub(super) const SCHEMA: &str = "
-- state: 0 open, 1 closing (deletion prepared), 2 deleted (kept: the name is not used again).
-- clusters: while closing, those that must be ready (comma-separated).
CREATE TABLE IF NOT EXISTS rooms (
    name TEXT PRIMARY KEY, creator INTEGER NOT NULL, creator_name TEXT NOT NULL,
    state INTEGER NOT NULL, last_seq INTEGER NOT NULL, created_ms INTEGER NOT NULL,
    clusters TEXT NOT NULL DEFAULT '');
-- Last writer wins by the host's log position (`version`): a member who left stays as a row.
CREATE TABLE IF NOT EXISTS room_members (
    room TEXT NOT NULL, user_id INTEGER NOT NULL, user_name TEXT NOT NULL,
    member INTEGER NOT NULL, version INTEGER NOT NULL, PRIMARY KEY (room, user_id));
CREATE INDEX IF NOT EXISTS room_members_by_user ON room_members (user_id, member);
CREATE TABLE IF NOT EXISTS room_messages (
    room TEXT NOT NULL, seq INTEGER NOT NULL, sender INTEGER NOT NULL, sender_name TEXT NOT NULL,
    message_id INTEGER NOT NULL, text TEXT NOT NULL, ts_ms INTEGER NOT NULL, lsn INTEGER NOT NULL,
    PRIMARY KEY (room, seq));
CREATE UNIQUE INDEX IF NOT EXISTS room_messages_by_id ON room_messages (room, sender, message_id);
CREATE TABLE IF NOT EXISTS room_deletion_ready (
    room TEXT NOT NULL, cluster INTEGER NOT NULL, PRIMARY KEY (room, cluster));
";

/// The tables above, for snapshots and the undo log.
pub(super) const TABLES: [&str; 4] = ["rooms", "room_members", "room_messages", "room_deletion_ready"];

/// What an account's deletion removes of the user (`?1`) from the room tables. Rooms it
/// created stay (their members keep talking); no one can delete them any more.
pub(super) const PURGE_USER: [&str; 2] = [
    "DELETE FROM room_members WHERE user_id = ?1",
    "DELETE FROM room_messages WHERE sender = ?1",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoomState {
    Open,
    Closing,
    Deleted,
}

impl RoomState {
    fn from_column(state: i64) -> Self {
        match state {
            0 => RoomState::Open,
            1 => RoomState::Closing,
            _ => RoomState::Deleted,
        }
    }
}

/// A room as this cluster knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Room {
    pub name: String,
    pub creator: u64,
    pub creator_name: String,
    pub state: RoomState,
    pub last_seq: u64,
    /// While closing: the clusters that must be ready.
    pub clusters: Vec<u32>,
    /// Members known here.
    pub members: u32,
}

/// A message as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRoomMessage {
    pub seq: u64,
    pub sender: u64,
    pub sender_name: String,
    pub message_id: u64,
    pub text: String,
    pub ts_ms: i64,
}

/// Applies one room change (deterministic, idempotent).
pub(super) fn apply(conn: &Connection, entry: &LogEntry, change: &room_change::Kind) -> Result<()> {
    match change {
        room_change::Kind::Created(c) => {
            conn.prepare_cached(
                "INSERT OR IGNORE INTO rooms (name, creator, creator_name, state, last_seq, created_ms)
                 VALUES (?1, ?2, ?3, 0, 0, ?4)",
            )?
            .execute(params![c.room, bound(c.creator), c.creator_name, entry.timestamp_ms])?;
            set_member(conn, entry, &c.room, c.creator, &c.creator_name, true)?;
        }
        room_change::Kind::Membership(m) => set_member(conn, entry, &m.room, m.user, &m.user_name, m.member)?,
        room_change::Kind::Message(m) => insert_message(conn, entry, m)?,
        room_change::Kind::DeletionPrepared(p) => {
            let clusters = p.clusters.iter().map(u32::to_string).collect::<Vec<_>>().join(",");
            conn.prepare_cached("UPDATE rooms SET state = 1, clusters = ?2 WHERE name = ?1 AND state = 0")?
                .execute(params![p.room, clusters])?;
        }
        room_change::Kind::DeletionReady(r) => {
            conn.prepare_cached("INSERT OR IGNORE INTO room_deletion_ready (room, cluster) VALUES (?1, ?2)")?
                .execute(params![r.room, r.cluster])?;
        }
        room_change::Kind::Deleted(d) => {
            for statement in [
                "INSERT OR IGNORE INTO rooms (name, creator, creator_name, state, last_seq, created_ms)
                 VALUES (?1, 0, '', 2, 0, 0)",
                "DELETE FROM room_members WHERE room = ?1",
                "DELETE FROM room_messages WHERE room = ?1",
                "DELETE FROM room_deletion_ready WHERE room = ?1",
                "UPDATE rooms SET state = 2, clusters = '' WHERE name = ?1",
            ] {
                conn.prepare_cached(statement)?.execute([&d.room])?;
            }
        }
    }
    Ok(())
}

fn set_member(conn: &Connection, entry: &LogEntry, room: &str, user: u64, name: &str, member: bool) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO room_members (room, user_id, user_name, member, version) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (room, user_id) DO UPDATE SET
            member = excluded.member, user_name = excluded.user_name, version = excluded.version
         WHERE excluded.version > room_members.version",
    )?
    .execute(params![room, bound(user), name, member, bound(entry.origin_lsn)])?;
    Ok(())
}

/// A message is stored once per number; the room's last number follows it (the host gives
/// them in order, so a cluster that receives them all ends at the host's).
fn insert_message(conn: &Connection, entry: &LogEntry, m: &RoomMessage) -> Result<()> {
    let stored = conn
        .prepare_cached(
            "INSERT OR IGNORE INTO room_messages (room, seq, sender, sender_name, message_id, text, ts_ms, lsn)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )?
        .execute(params![
            m.room,
            bound(m.seq),
            bound(m.sender),
            m.sender_name,
            bound(m.message_id),
            m.text,
            entry.timestamp_ms,
            bound(entry.lsn)
        ])?;
    if stored > 0 {
        conn.prepare_cached("UPDATE rooms SET last_seq = MAX(last_seq, ?2) WHERE name = ?1")?
            .execute(params![m.room, bound(m.seq)])?;
    }
    Ok(())
}

/// A room by its canonical name.
pub fn room(conn: &Connection, name: &str) -> Result<Option<Room>> {
    Ok(conn
        .prepare_cached(
            "SELECT name, creator, creator_name, state, last_seq, clusters,
                    (SELECT COUNT(*) FROM room_members m WHERE m.room = rooms.name AND m.member = 1)
             FROM rooms WHERE name = ?1",
        )?
        .query_row([name], room_row)
        .optional()?)
}

fn room_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Room> {
    let clusters: String = r.get(5)?;
    Ok(Room {
        name: r.get(0)?,
        creator: r.get::<_, i64>(1)? as u64,
        creator_name: r.get(2)?,
        state: RoomState::from_column(r.get(3)?),
        last_seq: r.get::<_, i64>(4)? as u64,
        clusters: clusters.split(',').filter_map(|c| c.parse().ok()).collect(),
        members: r.get::<_, i64>(6)?.clamp(0, i64::from(u32::MAX)) as u32,
    })
}

/// Whether `user` is a member of `room` here, and the host's position of that fact.
pub fn room_member_state(conn: &Connection, room: &str, user: u64) -> Result<Option<(bool, u64)>> {
    Ok(conn
        .prepare_cached("SELECT member, version FROM room_members WHERE room = ?1 AND user_id = ?2")?
        .query_row(params![room, bound(user)], |r| {
            Ok((r.get::<_, bool>(0)?, r.get::<_, i64>(1)? as u64))
        })
        .optional()?)
}

/// The members of `room` (id, name), by name then id.
pub fn room_members(conn: &Connection, room: &str) -> Result<Vec<(u64, String)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT user_id, user_name FROM room_members WHERE room = ?1 AND member = 1 ORDER BY user_name, user_id",
    )?;
    let rows = stmt.query_map([room], |r| Ok((r.get::<_, i64>(0)? as u64, r.get(1)?)))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// The rooms `user` is a member of, by name.
pub fn rooms_of(conn: &Connection, user: u64) -> Result<Vec<Room>> {
    let mut stmt = conn.prepare_cached(
        "SELECT name, creator, creator_name, state, last_seq, clusters,
                (SELECT COUNT(*) FROM room_members c WHERE c.room = rooms.name AND c.member = 1)
         FROM rooms JOIN room_members m ON m.room = rooms.name
         WHERE m.user_id = ?1 AND m.member = 1 AND rooms.state < 2 ORDER BY name LIMIT 1000",
    )?;
    let rows = stmt.query_map([bound(user)], room_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// The names of the rooms `user` is a member of (a timeline's state).
pub fn room_names_of(conn: &Connection, user: u64) -> Result<Vec<String>> {
    let mut stmt =
        conn.prepare_cached("SELECT room FROM room_members WHERE user_id = ?1 AND member = 1 ORDER BY room")?;
    let rows = stmt.query_map([bound(user)], |r| r.get(0))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Up to `limit` open rooms named after `after`, by name.
pub fn open_rooms(conn: &Connection, after: &str, limit: usize) -> Result<Vec<Room>> {
    let mut stmt = conn.prepare_cached(
        "SELECT name, creator, creator_name, state, last_seq, clusters,
                (SELECT COUNT(*) FROM room_members m WHERE m.room = rooms.name AND m.member = 1)
         FROM rooms WHERE state = 0 AND name > ?1 ORDER BY name LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![after, limit as i64], room_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// The clusters with members of `room` (where its messages go).
pub fn room_member_clusters(conn: &Connection, room: &str, clusters: u32) -> Result<std::collections::BTreeSet<u32>> {
    Ok(room_members(conn, room)?
        .into_iter()
        .filter_map(|(user, _)| tinysns_common::topology::cluster_of_user(user, clusters).ok())
        .collect())
}

/// Up to `limit` messages of `room` numbered below `before` (0: the newest), newest first.
pub fn room_messages(conn: &Connection, room: &str, before: u64, limit: usize) -> Result<Vec<StoredRoomMessage>> {
    let before = if before == 0 { i64::MAX } else { bound(before) };
    let mut stmt = conn.prepare_cached(
        "SELECT seq, sender, sender_name, message_id, text, ts_ms FROM room_messages
         WHERE room = ?1 AND seq < ?2 ORDER BY seq DESC LIMIT ?3",
    )?;
    let rows = stmt.query_map(params![room, before, limit as i64], |r| {
        Ok(StoredRoomMessage {
            seq: r.get::<_, i64>(0)? as u64,
            sender: r.get::<_, i64>(1)? as u64,
            sender_name: r.get(2)?,
            message_id: r.get::<_, i64>(3)? as u64,
            text: r.get(4)?,
            ts_ms: r.get(5)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// The number `sender`'s message `message_id` got in `room`, if it is stored.
pub fn room_message_seq(conn: &Connection, room: &str, sender: u64, message_id: u64) -> Result<Option<u64>> {
    Ok(conn
        .prepare_cached("SELECT seq FROM room_messages WHERE room = ?1 AND sender = ?2 AND message_id = ?3")?
        .query_row(params![room, bound(sender), bound(message_id)], |r| {
            r.get::<_, i64>(0).map(|s| s as u64)
        })
        .optional()?)
}

/// Whether message number `seq` of `room` is stored here.
pub fn room_seq_taken(conn: &Connection, room: &str, seq: u64) -> Result<bool> {
    Ok(conn
        .prepare_cached("SELECT 1 FROM room_messages WHERE room = ?1 AND seq = ?2")?
        .exists(params![room, bound(seq)])?)
}

pub fn room_deletion_ready(conn: &Connection, room: &str, cluster: u32) -> Result<bool> {
    Ok(conn
        .prepare_cached("SELECT 1 FROM room_deletion_ready WHERE room = ?1 AND cluster = ?2")?
        .exists(params![room, cluster])?)
}

/// Every room being deleted here (in phase 1), with the clusters that are ready.
pub fn closing_rooms(conn: &Connection) -> Result<Vec<(Room, Vec<u32>)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT name, creator, creator_name, state, last_seq, clusters, 0 FROM rooms WHERE state = 1 ORDER BY name",
    )?;
    let rooms = stmt.query_map([], room_row)?.collect::<rusqlite::Result<Vec<_>>>()?;
    let mut ready_stmt =
        conn.prepare_cached("SELECT cluster FROM room_deletion_ready WHERE room = ?1 ORDER BY cluster")?;
    rooms
        .into_iter()
        .map(|room| {
            let ready = ready_stmt
                .query_map([&room.name], |r| r.get(0))?
                .collect::<rusqlite::Result<Vec<u32>>>()?;
            Ok((room, ready))
        })
        .collect()
}
