//! Deleting accounts in the store: the two phases as they apply (a deletion prepared, each
//! cluster's readiness, the deletion itself, which removes everything of the user), and the
//! reads the drivers of the phases and the checks on other changes need.

use super::{Result, bound};
use rusqlite::{Connection, OptionalExtension, params};

/// Schema of the deletion tables (part of the store's schema).
pub(super) const SCHEMA: &str = "
-- Accounts being deleted (`deleted` = 0: prepared) or deleted (1, kept for good: anything
-- about the user that arrives later is ignored).
CREATE TABLE IF NOT EXISTS account_deletions (
    user_id INTEGER PRIMARY KEY, username TEXT NOT NULL, deleted INTEGER NOT NULL);
-- Which clusters have prepared a deletion.
CREATE TABLE IF NOT EXISTS account_deletion_ready (
    user_id INTEGER NOT NULL, cluster INTEGER NOT NULL, PRIMARY KEY (user_id, cluster));
";

/// The tables above, for snapshots and the undo log.
pub(super) const TABLES: [&str; 2] = ["account_deletions", "account_deletion_ready"];

/// Phase 1 reached this cluster: the user's sessions here end (only its home holds any).
pub(super) fn apply_prepared(conn: &Connection, user: u64, username: &str) -> Result<()> {
    conn.prepare_cached("INSERT OR IGNORE INTO account_deletions (user_id, username, deleted) VALUES (?1, ?2, 0)")?
        .execute(params![user as i64, username])?;
    conn.prepare_cached("DELETE FROM sessions WHERE user_id = ?1")?
        .execute([user as i64])?;
    Ok(())
}

pub(super) fn apply_ready(conn: &Connection, user: u64, cluster: u32) -> Result<()> {
    conn.prepare_cached("INSERT OR IGNORE INTO account_deletion_ready (user_id, cluster) VALUES (?1, ?2)")?
        .execute(params![user as i64, cluster])?;
    Ok(())
}

/// Everything the user made or that is about the user, in every derived table. Replies of
/// other users to the user's posts stay (they are theirs), answering deleted posts.
const PURGE: &[&str] = &[
    "UPDATE topics SET posts = posts - (SELECT COUNT(*) FROM topic_posts t WHERE t.topic = topics.topic AND t.author = ?1)
     WHERE topic IN (SELECT topic FROM topic_posts WHERE author = ?1)",
    "DELETE FROM topic_posts WHERE author = ?1",
    "DELETE FROM topic_pending WHERE author = ?1",
    "DELETE FROM topic_subscriptions WHERE subscriber = ?1",
    "DELETE FROM replies WHERE author = ?1 OR parent_author = ?1",
    "DELETE FROM likes WHERE liker = ?1 OR author = ?1",
    "DELETE FROM posts WHERE author = ?1",
    "DELETE FROM post_tombstones WHERE author = ?1",
    "DELETE FROM follows WHERE follower = ?1 OR followee = ?1",
    "DELETE FROM direct_messages WHERE sender = ?1 OR recipient = ?1",
    "DELETE FROM conversations WHERE owner = ?1 OR peer = ?1",
    "DELETE FROM blocks WHERE blocker = ?1 OR blocked = ?1",
    "DELETE FROM profiles WHERE user_id = ?1",
    "DELETE FROM sessions WHERE user_id = ?1",
    "DELETE FROM credentials WHERE user_id = ?1",
    "DELETE FROM users WHERE user_id = ?1",
    "DELETE FROM account_deletion_ready WHERE user_id = ?1",
];

/// Phase 2: the user is gone here, and its name is free.
pub(super) fn apply_deleted(conn: &Connection, user: u64, username: &str) -> Result<()> {
    for statement in PURGE.iter().chain(&super::rooms::PURGE_USER) {
        conn.prepare_cached(statement)?.execute([user as i64])?;
    }
    conn.prepare_cached(
        "INSERT INTO account_deletions (user_id, username, deleted) VALUES (?1, ?2, 1)
         ON CONFLICT (user_id) DO UPDATE SET deleted = 1",
    )?
    .execute(params![user as i64, username])?;
    Ok(())
}

/// Where a user's deletion stands here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deletion {
    /// Phase 1: no new change involving the user is accepted.
    Prepared,
    Deleted,
}

pub fn deletion_state(conn: &Connection, user: u64) -> Result<Option<Deletion>> {
    Ok(conn
        .prepare_cached("SELECT deleted FROM account_deletions WHERE user_id = ?1")?
        .query_row([bound(user)], |r| r.get::<_, bool>(0))
        .optional()?
        .map(|deleted| if deleted { Deletion::Deleted } else { Deletion::Prepared }))
}

/// Whether `user` is being deleted or is deleted: nothing new may involve it.
pub fn account_closed(conn: &Connection, user: u64) -> Result<bool> {
    Ok(deletion_state(conn, user)?.is_some())
}

pub fn deletion_ready(conn: &Connection, user: u64, cluster: u32) -> Result<bool> {
    Ok(conn
        .prepare_cached("SELECT 1 FROM account_deletion_ready WHERE user_id = ?1 AND cluster = ?2")?
        .exists(params![bound(user), cluster])?)
}

/// A prepared deletion: the user, its name, and the clusters that are ready.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreparedDeletion {
    pub user: u64,
    pub username: String,
    pub ready: Vec<u32>,
}

/// Every deletion in phase 1 here, by user.
pub fn prepared_deletions(conn: &Connection) -> Result<Vec<PreparedDeletion>> {
    let mut stmt = conn.prepare_cached(
        "SELECT d.user_id, d.username, COALESCE(group_concat(r.cluster), '') FROM account_deletions d
         LEFT JOIN account_deletion_ready r ON r.user_id = d.user_id
         WHERE d.deleted = 0 GROUP BY d.user_id ORDER BY d.user_id",
    )?;
    let rows = stmt.query_map([], |r| {
        let ready: String = r.get(2)?;
        Ok(PreparedDeletion {
            user: r.get::<_, i64>(0)? as u64,
            username: r.get(1)?,
            ready: ready.split(',').filter_map(|c| c.parse().ok()).collect(),
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// How many rows of every table that could hold something of `user` still do (0 once its
/// account is deleted): for checks of stored state.
pub fn user_traces(conn: &Connection, user: u64) -> Result<u64> {
    let sql = "SELECT (SELECT COUNT(*) FROM users WHERE user_id = ?1)
        + (SELECT COUNT(*) FROM posts WHERE author = ?1)
        + (SELECT COUNT(*) FROM likes WHERE liker = ?1 OR author = ?1)
        + (SELECT COUNT(*) FROM follows WHERE follower = ?1 OR followee = ?1)
        + (SELECT COUNT(*) FROM direct_messages WHERE sender = ?1 OR recipient = ?1)
        + (SELECT COUNT(*) FROM conversations WHERE owner = ?1 OR peer = ?1)
        + (SELECT COUNT(*) FROM blocks WHERE blocker = ?1 OR blocked = ?1)
        + (SELECT COUNT(*) FROM topic_posts WHERE author = ?1)
        + (SELECT COUNT(*) FROM topic_pending WHERE author = ?1)
        + (SELECT COUNT(*) FROM topic_subscriptions WHERE subscriber = ?1)
        + (SELECT COUNT(*) FROM profiles WHERE user_id = ?1)
        + (SELECT COUNT(*) FROM credentials WHERE user_id = ?1)
        + (SELECT COUNT(*) FROM sessions WHERE user_id = ?1)
        + (SELECT COUNT(*) FROM room_members WHERE user_id = ?1)
        + (SELECT COUNT(*) FROM room_messages WHERE sender = ?1)";
    Ok(conn.query_row(sql, [bound(user)], |r| r.get::<_, i64>(0))? as u64)
}
