//! How one log entry changes the derived tables.

use super::{Result, deletions, messages, rooms, topics};
use crate::clock;
use rusqlite::{Connection, params};
use tinysns_common::proto::internal::{
    AccountChange, Change, LogEntry, PostCreated, account_change, change, log_entry,
};

/// Updates the derived tables for one entry. Deterministic, so every replica that applies
/// the same log holds the same state; idempotent for changes that arrive twice.
pub(super) fn apply(conn: &Connection, entry: &LogEntry) -> Result<()> {
    match &entry.kind {
        Some(log_entry::Kind::Change(Change { kind: Some(change) })) => match change {
            change::Kind::User(u) => insert_user(conn, u.user_id, &u.username, entry.timestamp_ms)?,
            change::Kind::Follow(f) => {
                // Last writer wins by the origin's log position: a follower's relations all
                // originate in its home cluster, whose log orders them.
                conn.prepare_cached(
                    "INSERT INTO follows (follower, followee, following, since_ms, version, since_hlc)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                     ON CONFLICT (follower, followee) DO UPDATE SET
                        following = excluded.following,
                        since_ms = CASE WHEN follows.following = 1 AND excluded.following = 1
                                        THEN follows.since_ms ELSE excluded.since_ms END,
                        since_hlc = CASE WHEN follows.following = 1 AND excluded.following = 1
                                        THEN follows.since_hlc ELSE excluded.since_hlc END,
                        version = excluded.version
                     WHERE excluded.version > follows.version",
                )?
                .execute(params![
                    f.follower as i64,
                    f.followee as i64,
                    f.following,
                    entry.timestamp_ms,
                    entry.origin_lsn as i64,
                    clock::stamp(entry) as i64
                ])?;
            }
            change::Kind::Post(p) => insert_post(conn, entry, p)?,
            change::Kind::PostDeleted(d) => {
                delete_post(conn, d.author, d.number, entry.timestamp_ms)?;
                topics::apply_post_deleted(conn, d.author, d.number)?;
            }
            change::Kind::TopicSequenced(t) => topics::apply_topic_sequenced(conn, t)?,
            change::Kind::TopicSubscription(t) => topics::apply_subscription(conn, entry, t)?,
            change::Kind::DeletionPrepared(d) => deletions::apply_prepared(conn, d.user, &d.username)?,
            change::Kind::DeletionReady(r) => deletions::apply_ready(conn, r.user, r.cluster)?,
            change::Kind::AccountDeleted(d) => deletions::apply_deleted(conn, d.user, &d.username)?,
            change::Kind::DirectMessage(m) => messages::apply_direct_message(conn, entry, m, clock::stamp(entry))?,
            change::Kind::ConversationRead(r) => messages::apply_conversation_read(conn, r)?,
            change::Kind::Block(b) => messages::apply_block(conn, entry, b)?,
            change::Kind::Like(l) => {
                // Last writer wins by the origin's log position: a user's likes are all
                // made in its home cluster. Stored whether or not this cluster holds the
                // post (it may arrive later from its author's cluster).
                conn.prepare_cached(
                    "INSERT INTO likes (author, number, liker, liked, version)
                     SELECT ?1, ?2, ?3, ?4, ?5
                     WHERE NOT EXISTS (SELECT 1 FROM post_tombstones WHERE author = ?1 AND number = ?2)
                     ON CONFLICT (author, number, liker) DO UPDATE SET
                        liked = excluded.liked, version = excluded.version
                     WHERE excluded.version > likes.version",
                )?
                .execute(params![
                    l.post_author as i64,
                    l.post_number.min(i64::MAX as u64) as i64,
                    l.liker as i64,
                    l.liked,
                    entry.origin_lsn as i64
                ])?;
            }
            change::Kind::Room(r) => {
                if let Some(kind) = &r.kind {
                    rooms::apply(conn, entry, kind)?;
                }
            }
            change::Kind::Profile(p) => {
                // Last writer wins by the origin's log position: a profile is only ever set
                // in its user's home cluster.
                conn.prepare_cached(
                    "INSERT INTO profiles (user_id, display_name, bio, version, updated_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (user_id) DO UPDATE SET
                        display_name = excluded.display_name, bio = excluded.bio,
                        version = excluded.version, updated_ms = excluded.updated_ms
                     WHERE excluded.version > profiles.version",
                )?
                .execute(params![
                    p.user_id as i64,
                    p.display_name,
                    p.bio,
                    entry.origin_lsn as i64,
                    entry.timestamp_ms
                ])?;
            }
        },
        Some(log_entry::Kind::SyncCursor(c)) => {
            conn.prepare_cached(
                "INSERT INTO meta (key, value) VALUES ('sync_cursor', ?1)
                 ON CONFLICT (key) DO UPDATE SET value = MAX(value, excluded.value)",
            )?
            .execute([c.lsn as i64])?;
        }
        Some(log_entry::Kind::Account(AccountChange { kind: Some(account) })) => apply_account(conn, entry, account)?,
        Some(log_entry::Kind::Change(Change { kind: None }))
        | Some(log_entry::Kind::Account(AccountChange { kind: None }))
        | None => {}
    }
    Ok(())
}

/// A post is stored once (by author and client-chosen id), never after its tombstone; a
/// reply is also indexed under the post it answers. (Every statement here keeps its plan
/// whatever is bound: a plan that depends on a bound value is prepared again on each post.)
fn insert_post(conn: &Connection, entry: &LogEntry, p: &PostCreated) -> Result<()> {
    let number = if p.number > 0 {
        if super::is_tombstoned(conn, p.author, p.number)? {
            return Ok(());
        }
        p.number
    } else {
        // A post from before numbers existed takes the author's next one.
        super::highest_post_number(conn, p.author)? + 1
    };
    let stored = conn
        .prepare_cached(
            "INSERT OR IGNORE INTO posts (author, post_id, text, ts_ms, seq, author_name, hlc, number,
                                          reply_author, reply_number)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        )?
        .execute(params![
            p.author as i64,
            p.post_id as i64,
            p.text,
            entry.timestamp_ms,
            entry.lsn as i64,
            p.author_name,
            clock::stamp(entry) as i64,
            number.min(i64::MAX as u64) as i64,
            p.reply_to_author as i64,
            p.reply_to_number.min(i64::MAX as u64) as i64
        ])?;
    if stored > 0 && !p.topics.is_empty() {
        topics::apply_post_topics(conn, entry, p, number)?;
    }
    if stored > 0 && p.reply_to_number > 0 {
        conn.prepare_cached(
            "INSERT OR IGNORE INTO replies (parent_author, parent_number, hlc, author, number)
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )?
        .execute(params![
            p.reply_to_author as i64,
            p.reply_to_number.min(i64::MAX as u64) as i64,
            clock::stamp(entry) as i64,
            p.author as i64,
            number.min(i64::MAX as u64) as i64
        ])?;
    }
    Ok(())
}

/// Removes the post and its likes, and keeps its tombstone. Replies to it stay (they are
/// their authors' posts), answering a post that is gone.
fn delete_post(conn: &Connection, author: u64, number: u64, deleted_ms: i64) -> Result<()> {
    let key = params![author as i64, number.min(i64::MAX as u64) as i64];
    conn.prepare_cached(
        "DELETE FROM replies WHERE (parent_author, parent_number, hlc, author, number) IN
            (SELECT reply_author, reply_number, hlc, author, number FROM posts
             WHERE author = ?1 AND number = ?2 AND reply_number > 0)",
    )?
    .execute(key)?;
    conn.prepare_cached("DELETE FROM posts WHERE author = ?1 AND number = ?2")?
        .execute(key)?;
    conn.prepare_cached("DELETE FROM likes WHERE author = ?1 AND number = ?2")?
        .execute(key)?;
    conn.prepare_cached("INSERT OR IGNORE INTO post_tombstones (author, number, deleted_ms) VALUES (?1, ?2, ?3)")?
        .execute(params![author as i64, number.min(i64::MAX as u64) as i64, deleted_ms])?;
    Ok(())
}

fn insert_user(conn: &Connection, user: u64, username: &str, created_ms: i64) -> Result<()> {
    conn.prepare_cached("INSERT OR IGNORE INTO users (user_id, created_ms, username) VALUES (?1, ?2, NULLIF(?3, ''))")?
        .execute(params![user as i64, created_ms, username])?;
    Ok(())
}

fn apply_account(conn: &Connection, entry: &LogEntry, account: &account_change::Kind) -> Result<()> {
    match account {
        account_change::Kind::Registered(r) => {
            insert_user(conn, r.user_id, &r.username, entry.timestamp_ms)?;
            conn.prepare_cached("INSERT OR REPLACE INTO credentials (user_id, phc) VALUES (?1, ?2)")?
                .execute(params![r.user_id as i64, r.password_phc])?;
            conn.prepare_cached(
                "INSERT INTO meta (key, value) VALUES ('highest_registered', ?1)
                 ON CONFLICT (key) DO UPDATE SET value = MAX(value, excluded.value)",
            )?
            .execute([r.user_id as i64])?;
        }
        account_change::Kind::Password(p) => {
            conn.prepare_cached("UPDATE credentials SET phc = ?2 WHERE user_id = ?1")?
                .execute(params![p.user_id as i64, p.password_phc])?;
            conn.prepare_cached("DELETE FROM sessions WHERE user_id = ?1 AND token_hash != ?2")?
                .execute(params![p.user_id as i64, p.keep_session])?;
        }
        account_change::Kind::SessionStarted(s) => {
            // Sessions of the user that expired by this entry's time go (deterministic: every
            // replica applies the same entry with the same timestamp).
            conn.prepare_cached("DELETE FROM sessions WHERE user_id = ?1 AND expires_ms <= ?2")?
                .execute(params![s.user_id as i64, entry.timestamp_ms])?;
            conn.prepare_cached(
                "INSERT OR REPLACE INTO sessions (token_hash, user_id, expires_ms) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![s.token_hash, s.user_id as i64, s.expires_ms])?;
        }
        account_change::Kind::SessionEnded(e) => {
            conn.prepare_cached("DELETE FROM sessions WHERE token_hash = ?1")?
                .execute([&e.token_hash])?;
        }
    }
    Ok(())
}
