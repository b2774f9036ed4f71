//! Direct messages, conversations (unread counts) and blocks in the store: how their changes
//! apply, and the indexed reads of an inbox and a conversation.

use super::{Result, bound};
use rusqlite::{Connection, OptionalExtension, params};
use tinysns_common::proto::internal::{BlockSet, ConversationRead, DirectMessage, LogEntry};

/// Stores a message once, and moves both sides' conversations: the recipient's gains an
/// unread message (unless it read past it already).
pub(super) fn apply_direct_message(conn: &Connection, entry: &LogEntry, m: &DirectMessage, hlc: u64) -> Result<()> {
    let stored = conn
        .prepare_cached(
            "INSERT OR IGNORE INTO direct_messages (sender, message_id, recipient, text, ts_ms, hlc)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?
        .execute(params![
            m.sender as i64,
            m.message_id as i64,
            m.recipient as i64,
            m.text,
            entry.timestamp_ms,
            bound(hlc)
        ])?;
    if stored == 0 {
        return Ok(());
    }
    let mut touch = conn.prepare_cached(
        "INSERT INTO conversations (owner, peer, last_hlc, last_ms, read_hlc, unread)
         VALUES (?1, ?2, ?3, ?4, 0, ?5)
         ON CONFLICT (owner, peer) DO UPDATE SET
            last_hlc = MAX(last_hlc, excluded.last_hlc),
            last_ms = CASE WHEN excluded.last_hlc > last_hlc THEN excluded.last_ms ELSE last_ms END,
            unread = unread + CASE WHEN ?5 = 1 AND excluded.last_hlc > read_hlc THEN 1 ELSE 0 END",
    )?;
    touch.execute(params![
        m.recipient as i64,
        m.sender as i64,
        bound(hlc),
        entry.timestamp_ms,
        1
    ])?;
    touch.execute(params![
        m.sender as i64,
        m.recipient as i64,
        bound(hlc),
        entry.timestamp_ms,
        0
    ])?;
    Ok(())
}

/// The reader has read up to a stamp: what is unread is what came from the peer after it.
pub(super) fn apply_conversation_read(conn: &Connection, r: &ConversationRead) -> Result<()> {
    conn.prepare_cached(
        "UPDATE conversations SET
            read_hlc = MAX(read_hlc, ?3),
            unread = (SELECT COUNT(*) FROM direct_messages
                      WHERE min(sender, recipient) = min(?1, ?2) AND max(sender, recipient) = max(?1, ?2)
                        AND sender = ?2 AND hlc > MAX(conversations.read_hlc, ?3))
         WHERE owner = ?1 AND peer = ?2",
    )?
    .execute(params![r.reader as i64, r.peer as i64, bound(r.up_to_hlc)])?;
    Ok(())
}

/// Last writer wins by the blocker's home log position. Blocking also ends the blocked
/// user's follow of the blocker, in every cluster that applies it.
pub(super) fn apply_block(conn: &Connection, entry: &LogEntry, b: &BlockSet) -> Result<()> {
    let changed = conn
        .prepare_cached(
            "INSERT INTO blocks (blocker, blocked, blocking, version) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (blocker, blocked) DO UPDATE SET blocking = excluded.blocking, version = excluded.version
             WHERE excluded.version > blocks.version",
        )?
        .execute(params![
            b.blocker as i64,
            b.blocked as i64,
            b.blocking,
            entry.origin_lsn as i64
        ])?;
    if changed > 0 && b.blocking {
        conn.prepare_cached(
            "UPDATE follows SET following = 0 WHERE follower = ?1 AND followee = ?2 AND following = 1",
        )?
        .execute(params![b.blocked as i64, b.blocker as i64])?;
    }
    Ok(())
}

/// Whether `blocker` blocks `blocked`, and the log position that said so.
pub fn block_state(conn: &Connection, blocker: u64, blocked: u64) -> Result<Option<(bool, u64)>> {
    Ok(conn
        .prepare_cached("SELECT blocking, version FROM blocks WHERE blocker = ?1 AND blocked = ?2")?
        .query_row([blocker as i64, blocked as i64], |r| {
            Ok((r.get::<_, bool>(0)?, r.get::<_, i64>(1)? as u64))
        })
        .optional()?)
}

pub fn blocks(conn: &Connection, blocker: u64, blocked: u64) -> Result<bool> {
    Ok(block_state(conn, blocker, blocked)?.is_some_and(|(blocking, _)| blocking))
}

/// Whether the sender's message with this id is stored.
pub fn message_stored(conn: &Connection, sender: u64, message_id: u64) -> Result<bool> {
    Ok(conn
        .prepare_cached("SELECT 1 FROM direct_messages WHERE sender = ?1 AND message_id = ?2")?
        .exists([sender as i64, message_id as i64])?)
}

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    pub sender: u64,
    pub recipient: u64,
    pub message_id: u64,
    pub text: String,
    pub timestamp_ms: i64,
    pub hlc: u64,
}

/// Up to `limit` messages between `a` and `b` stamped before `before` (0: from the newest),
/// newest first.
pub fn conversation(conn: &Connection, a: u64, b: u64, before: u64, limit: usize) -> Result<Vec<StoredMessage>> {
    let before = if before == 0 { i64::MAX } else { bound(before) };
    let mut stmt = conn.prepare_cached(
        "SELECT sender, recipient, message_id, text, ts_ms, hlc FROM direct_messages
         WHERE min(sender, recipient) = min(?1, ?2) AND max(sender, recipient) = max(?1, ?2) AND hlc < ?3
         ORDER BY hlc DESC LIMIT ?4",
    )?;
    let rows = stmt.query_map(params![a as i64, b as i64, before, limit as i64], |r| {
        Ok(StoredMessage {
            sender: r.get::<_, i64>(0)? as u64,
            recipient: r.get::<_, i64>(1)? as u64,
            message_id: r.get::<_, i64>(2)? as u64,
            text: r.get(3)?,
            timestamp_ms: r.get(4)?,
            hlc: r.get::<_, i64>(5)? as u64,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// One line of an inbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversationSummary {
    pub peer: u64,
    pub peer_name: String,
    pub last_hlc: u64,
    pub last_ms: i64,
    pub unread: u64,
}

/// Up to `limit` of `owner`'s conversations with a message stamped before `before` (0: from
/// the latest), most recent first.
pub fn inbox(conn: &Connection, owner: u64, before: u64, limit: usize) -> Result<Vec<ConversationSummary>> {
    let before = if before == 0 { i64::MAX } else { bound(before) };
    let mut stmt = conn.prepare_cached(
        "SELECT c.peer, COALESCE(u.username, ''), c.last_hlc, c.last_ms, c.unread
         FROM conversations c LEFT JOIN users u ON u.user_id = c.peer
         WHERE c.owner = ?1 AND c.last_hlc < ?2 ORDER BY c.last_hlc DESC LIMIT ?3",
    )?;
    let rows = stmt.query_map(params![owner as i64, before, limit as i64], summary)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// `owner`'s conversation with `peer`, if they ever exchanged a message.
pub fn inbox_entry(conn: &Connection, owner: u64, peer: u64) -> Result<Option<ConversationSummary>> {
    Ok(conn
        .prepare_cached(
            "SELECT c.peer, COALESCE(u.username, ''), c.last_hlc, c.last_ms, c.unread
             FROM conversations c LEFT JOIN users u ON u.user_id = c.peer WHERE c.owner = ?1 AND c.peer = ?2",
        )?
        .query_row([owner as i64, peer as i64], summary)
        .optional()?)
}

fn summary(r: &rusqlite::Row<'_>) -> rusqlite::Result<ConversationSummary> {
    Ok(ConversationSummary {
        peer: r.get::<_, i64>(0)? as u64,
        peer_name: r.get(1)?,
        last_hlc: r.get::<_, i64>(2)? as u64,
        last_ms: r.get(3)?,
        unread: r.get::<_, i64>(4)? as u64,
    })
}

/// How many messages `owner` has not read, over all conversations.
pub fn unread_total(conn: &Connection, owner: u64) -> Result<u64> {
    Ok(conn
        .prepare_cached("SELECT COALESCE(SUM(unread), 0) FROM conversations WHERE owner = ?1")?
        .query_row([owner as i64], |r| r.get::<_, i64>(0))? as u64)
}

/// Every stored direct message as `(sender, recipient, text)`, in order (for the fault
/// suite's checker).
pub fn all_messages(conn: &Connection) -> Result<Vec<(u64, u64, String)>> {
    let mut stmt = conn.prepare("SELECT sender, recipient, text FROM direct_messages ORDER BY sender, message_id")?;
    let rows = stmt.query_map([], |r| {
        Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64, r.get(2)?))
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}
