//! The embedded store: the replicated log plus the tables derived from it, in one SQLite
//! database. Every entry is written to the log and applied to the tables in the same
//! transaction, so the tables can always be rebuilt from the log (which is how a replica
//! drops entries it must give up after a failover).

use crate::clock;
use prost::Message;
use rusqlite::{Connection, OptionalExtension, params};
use std::path::Path;
use tinysns_common::proto::internal::{AccountChange, Change, LogEntry, account_change, change, log_entry};
use tinysns_common::proto::social::{Post, UserRef};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("cannot create data directory {path}: {source}")]
    DataDir { path: String, source: std::io::Error },
    #[error("corrupt log entry at lsn {lsn}: {source}")]
    Corrupt { lsn: u64, source: prost::DecodeError },
    #[error("{0}")]
    Internal(String),
    #[error("entry lsn {got} does not follow the log's last lsn {last}")]
    OutOfOrder { got: u64, last: u64 },
}

impl StoreError {
    /// Another connection holds the database for longer than the busy timeout: worth a retry.
    pub fn is_busy(&self) -> bool {
        matches!(self, StoreError::Sql(rusqlite::Error::SqliteFailure(e, _)) if e.code == rusqlite::ErrorCode::DatabaseBusy)
    }

    /// Whether the store can no longer be written by this process: the disk is full or
    /// failing, or the database is gone or damaged. (A malformed request is not.)
    pub fn is_fatal(&self) -> bool {
        use rusqlite::ErrorCode::*;
        match self {
            StoreError::Sql(rusqlite::Error::SqliteFailure(e, _)) => matches!(
                e.code,
                DiskFull | SystemIoFailure | CannotOpen | ReadOnly | DatabaseCorrupt | NotADatabase
            ),
            StoreError::DataDir { .. } => true,
            _ => false,
        }
    }
}

pub type Result<T> = std::result::Result<T, StoreError>;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS log (lsn INTEGER PRIMARY KEY, term INTEGER NOT NULL, origin_cluster INTEGER NOT NULL, entry BLOB NOT NULL, hlc INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS users (user_id INTEGER PRIMARY KEY, created_ms INTEGER NOT NULL, username TEXT);
CREATE TABLE IF NOT EXISTS follows (
    follower INTEGER NOT NULL, followee INTEGER NOT NULL, following INTEGER NOT NULL,
    since_ms INTEGER NOT NULL, version INTEGER NOT NULL, since_hlc INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (follower, followee));
CREATE INDEX IF NOT EXISTS follows_by_followee ON follows (followee, following);
CREATE TABLE IF NOT EXISTS posts (
    author INTEGER NOT NULL, post_id INTEGER NOT NULL, text TEXT NOT NULL, ts_ms INTEGER NOT NULL,
    seq INTEGER NOT NULL, author_name TEXT NOT NULL DEFAULT '', hlc INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (author, post_id));
CREATE INDEX IF NOT EXISTS posts_by_seq ON posts (seq);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS replica (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS credentials (user_id INTEGER PRIMARY KEY, phc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sessions (token_hash BLOB PRIMARY KEY, user_id INTEGER NOT NULL, expires_ms INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS sessions_by_user ON sessions (user_id);
";

/// Columns added after the first release, for stores created before them, with what fills
/// them in for rows stored before (hybrid clock stamps: the rows' wall-clock times).
const ADDED_COLUMNS: [(&str, &str, &str, &str); 5] = [
    ("users", "username", "TEXT", ""),
    ("posts", "author_name", "TEXT NOT NULL DEFAULT ''", ""),
    ("log", "hlc", "INTEGER NOT NULL DEFAULT 0", ""),
    (
        "posts",
        "hlc",
        "INTEGER NOT NULL DEFAULT 0",
        "UPDATE posts SET hlc = ts_ms * 1000",
    ),
    (
        "follows",
        "since_hlc",
        "INTEGER NOT NULL DEFAULT 0",
        "UPDATE follows SET since_hlc = since_ms * 1000",
    ),
];

/// Indexes on added columns (created once the columns exist).
const LATE_INDEXES: &str = "
CREATE UNIQUE INDEX IF NOT EXISTS users_by_name ON users (username) WHERE username IS NOT NULL;
DROP INDEX IF EXISTS posts_by_author_time;
CREATE INDEX IF NOT EXISTS posts_by_author_hlc ON posts (author, hlc);
";

const DERIVED_TABLES: [&str; 6] = ["users", "follows", "posts", "meta", "credentials", "sessions"];

fn add_missing_columns(conn: &Connection) -> Result<()> {
    for (table, column, decl, backfill) in ADDED_COLUMNS {
        let exists: bool = conn
            .prepare(&format!("SELECT 1 FROM pragma_table_info('{table}') WHERE name = ?1"))?
            .exists([column])?;
        if !exists {
            conn.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} {decl}"))?;
            if !backfill.is_empty() {
                conn.execute_batch(backfill)?;
            }
        }
    }
    Ok(())
}

/// A transaction that takes the write lock when it begins. The log's connection is not the
/// only writer (the replica's term is stored on a connection of its own), and a deferred
/// transaction that read first and writes later fails at once, without waiting, if another
/// connection committed in between.
pub fn write_transaction(conn: &mut Connection) -> Result<rusqlite::Transaction<'_>> {
    Ok(conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?)
}

/// Opens (creating if needed) the database in `dir`. Writes are durable once committed:
/// WAL with `synchronous=FULL` syncs the log on every commit.
pub fn open(dir: &Path) -> Result<Connection> {
    std::fs::create_dir_all(dir).map_err(|source| StoreError::DataDir {
        path: dir.display().to_string(),
        source,
    })?;
    let conn = Connection::open(dir.join("tsd.db"))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.execute_batch(SCHEMA)?;
    add_missing_columns(&conn)?;
    conn.execute_batch(LATE_INDEXES)?;
    Ok(conn)
}

pub fn last_lsn(conn: &Connection) -> Result<u64> {
    Ok(conn.query_row("SELECT COALESCE(MAX(lsn), 0) FROM log", [], |r| r.get::<_, i64>(0))? as u64)
}

/// A log position known to be committed (replicated and acknowledged) when it was stored;
/// entries after it are published again only once replicated. Not a derived table: it
/// survives truncation (and is capped by the log's end when read).
pub fn commit_point(conn: &Connection) -> Result<u64> {
    let stored = conn
        .query_row("SELECT value FROM replica WHERE key = 'committed'", [], |r| {
            r.get::<_, i64>(0)
        })
        .optional()?
        .unwrap_or(0) as u64;
    Ok(stored.min(last_lsn(conn)?))
}

/// Records `lsn` as committed (call inside the writer's transaction).
pub fn record_commit_point(conn: &Connection, lsn: u64) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO replica (key, value) VALUES ('committed', ?1)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    )?
    .execute([lsn as i64])?;
    Ok(())
}

/// The highest hybrid clock stamp stored (0 for an empty log).
pub fn max_hlc(conn: &Connection) -> Result<u64> {
    Ok(conn.query_row("SELECT COALESCE(MAX(hlc), 0) FROM log", [], |r| r.get::<_, i64>(0))? as u64)
}

/// The term of the log's last entry (0 for an empty log).
pub fn last_term(conn: &Connection) -> Result<u64> {
    Ok(conn.query_row("SELECT COALESCE(MAX(term), 0) FROM log", [], |r| r.get::<_, i64>(0))? as u64)
}

/// The term of the entry at `lsn` (0 for lsn 0, None if absent).
pub fn term_at(conn: &Connection, lsn: u64) -> Result<Option<u64>> {
    if lsn == 0 {
        return Ok(Some(0));
    }
    Ok(conn
        .prepare_cached("SELECT term FROM log WHERE lsn = ?1")?
        .query_row([lsn as i64], |r| r.get::<_, i64>(0))
        .optional()?
        .map(|t| t as u64))
}

/// Appends an entry and applies it. Call inside a transaction.
pub fn append(conn: &Connection, entry: &LogEntry) -> Result<()> {
    conn.prepare_cached("INSERT INTO log (lsn, term, origin_cluster, entry, hlc) VALUES (?1, ?2, ?3, ?4, ?5)")?
        .execute(params![
            entry.lsn as i64,
            entry.term as i64,
            entry.origin_cluster,
            entry.encode_to_vec(),
            clock::stamp(entry) as i64
        ])?;
    apply(conn, entry)
}

/// Updates the derived tables for one entry. Deterministic, so every replica that applies
/// the same log holds the same state; idempotent for changes that arrive twice.
fn apply(conn: &Connection, entry: &LogEntry) -> Result<()> {
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
            change::Kind::Post(p) => {
                conn.prepare_cached(
                    "INSERT OR IGNORE INTO posts (author, post_id, text, ts_ms, seq, author_name, hlc)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )?
                .execute(params![
                    p.author as i64,
                    p.post_id as i64,
                    p.text,
                    entry.timestamp_ms,
                    entry.lsn as i64,
                    p.author_name,
                    clock::stamp(entry) as i64
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

/// Drops every entry after `lsn` and rebuilds the derived tables from what remains. Used by a
/// replica whose log diverged from the master's (it was deposed with unreplicated entries).
pub fn truncate_after(conn: &mut Connection, lsn: u64) -> Result<()> {
    let tx = write_transaction(conn)?;
    tx.execute("DELETE FROM log WHERE lsn > ?1", [lsn as i64])?;
    for table in DERIVED_TABLES {
        tx.execute(&format!("DELETE FROM {table}"), [])?;
    }
    {
        let mut stmt = tx.prepare("SELECT lsn, entry FROM log ORDER BY lsn")?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            let entry = decode(row.get::<_, i64>(0)? as u64, &row.get::<_, Vec<u8>>(1)?)?;
            apply(&tx, &entry)?;
        }
    }
    tx.commit()?;
    Ok(())
}

/// An inclusive upper bound for SQL: SQLite integers are signed.
fn bound(upto: u64) -> i64 {
    upto.min(i64::MAX as u64) as i64
}

fn decode(lsn: u64, bytes: &[u8]) -> Result<LogEntry> {
    LogEntry::decode(bytes).map_err(|source| StoreError::Corrupt { lsn, source })
}

/// Up to `limit` entries after `after`, oldest first.
pub fn entries_after(conn: &Connection, after: u64, upto: u64, limit: usize) -> Result<Vec<LogEntry>> {
    let mut stmt =
        conn.prepare_cached("SELECT lsn, entry FROM log WHERE lsn > ?1 AND lsn <= ?2 ORDER BY lsn LIMIT ?3")?;
    let rows = stmt.query_map(params![after as i64, bound(upto), limit as i64], |r| {
        Ok((r.get::<_, i64>(0)? as u64, r.get::<_, Vec<u8>>(1)?))
    })?;
    rows.map(|row| {
        let (lsn, bytes) = row?;
        decode(lsn, &bytes)
    })
    .collect()
}

pub fn user_exists(conn: &Connection, user: u64) -> Result<bool> {
    let mut stmt = conn.prepare_cached("SELECT 1 FROM users WHERE user_id = ?1")?;
    Ok(stmt.exists([user as i64])?)
}

/// `(following, version)` of the relation, if it was ever recorded.
pub fn follow_state(conn: &Connection, follower: u64, followee: u64) -> Result<Option<(bool, u64)>> {
    let mut stmt =
        conn.prepare_cached("SELECT following, version FROM follows WHERE follower = ?1 AND followee = ?2")?;
    Ok(stmt
        .query_row([follower as i64, followee as i64], |r| {
            Ok((r.get::<_, bool>(0)?, r.get::<_, i64>(1)? as u64))
        })
        .optional()?)
}

/// The log position of a post, if it is stored.
pub fn post_seq(conn: &Connection, author: u64, post_id: u64) -> Result<Option<u64>> {
    let mut stmt = conn.prepare_cached("SELECT seq FROM posts WHERE author = ?1 AND post_id = ?2")?;
    Ok(stmt
        .query_row([author as i64, post_id as i64], |r| r.get::<_, i64>(0))
        .optional()?
        .map(|s| s as u64))
}

/// The id of the account with this (canonical) username.
pub fn user_by_name(conn: &Connection, username: &str) -> Result<Option<u64>> {
    let mut stmt = conn.prepare_cached("SELECT user_id FROM users WHERE username = ?1")?;
    Ok(stmt
        .query_row([username], |r| r.get::<_, i64>(0))
        .optional()?
        .map(|id| id as u64))
}

pub fn username_of(conn: &Connection, user: u64) -> Result<Option<String>> {
    let mut stmt = conn.prepare_cached("SELECT username FROM users WHERE user_id = ?1")?;
    Ok(stmt
        .query_row([user as i64], |r| r.get::<_, Option<String>>(0))
        .optional()?
        .flatten())
}

/// The stored password hash (PHC string) of a user of this cluster.
pub fn password_hash(conn: &Connection, user: u64) -> Result<Option<String>> {
    let mut stmt = conn.prepare_cached("SELECT phc FROM credentials WHERE user_id = ?1")?;
    Ok(stmt.query_row([user as i64], |r| r.get(0)).optional()?)
}

/// `(user, expires_ms)` of the session whose token hashes to `token_hash`.
pub fn session(conn: &Connection, token_hash: &[u8]) -> Result<Option<(u64, i64)>> {
    let mut stmt = conn.prepare_cached("SELECT user_id, expires_ms FROM sessions WHERE token_hash = ?1")?;
    Ok(stmt
        .query_row([token_hash], |r| Ok((r.get::<_, i64>(0)? as u64, r.get(1)?)))
        .optional()?)
}

/// The highest id this cluster has registered (0 for none).
pub fn highest_registered(conn: &Connection) -> Result<u64> {
    Ok(conn
        .query_row("SELECT value FROM meta WHERE key = 'highest_registered'", [], |r| {
            r.get::<_, i64>(0)
        })
        .optional()?
        .unwrap_or(0) as u64)
}

fn user_refs(stmt: &mut rusqlite::CachedStatement<'_>, args: impl rusqlite::Params) -> Result<Vec<UserRef>> {
    let rows = stmt.query_map(args, |r| {
        Ok(UserRef {
            id: r.get::<_, i64>(0)? as u64,
            username: r.get::<_, Option<String>>(1)?.unwrap_or_default(),
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Up to `limit` users with ids above `after`, ascending.
pub fn users_page(conn: &Connection, after: u64, limit: usize) -> Result<Vec<UserRef>> {
    let mut stmt =
        conn.prepare_cached("SELECT user_id, username FROM users WHERE user_id > ?1 ORDER BY user_id LIMIT ?2")?;
    user_refs(&mut stmt, params![bound(after), limit as i64])
}

/// Up to `limit` followers of `user` with ids above `after`, ascending.
pub fn followers_page(conn: &Connection, user: u64, after: u64, limit: usize) -> Result<Vec<UserRef>> {
    let mut stmt = conn.prepare_cached(
        "SELECT f.follower, u.username FROM follows f LEFT JOIN users u ON u.user_id = f.follower
         WHERE f.followee = ?1 AND f.following = 1 AND f.follower > ?2 ORDER BY f.follower LIMIT ?3",
    )?;
    user_refs(&mut stmt, params![user as i64, bound(after), limit as i64])
}

pub fn all_users(conn: &Connection) -> Result<Vec<u64>> {
    let mut stmt = conn.prepare_cached("SELECT user_id FROM users ORDER BY user_id")?;
    let rows = stmt.query_map([], |r| r.get::<_, i64>(0))?;
    Ok(rows.map(|r| r.map(|v| v as u64)).collect::<rusqlite::Result<_>>()?)
}

pub fn followers(conn: &Connection, user: u64) -> Result<Vec<u64>> {
    let mut stmt =
        conn.prepare_cached("SELECT follower FROM follows WHERE followee = ?1 AND following = 1 ORDER BY follower")?;
    let rows = stmt.query_map([user as i64], |r| r.get::<_, i64>(0))?;
    Ok(rows.map(|r| r.map(|v| v as u64)).collect::<rusqlite::Result<_>>()?)
}

/// Who `user` follows, with the hybrid clock stamp of each follow (`crate::clock`).
pub fn following(conn: &Connection, user: u64) -> Result<Vec<(u64, u64)>> {
    let mut stmt =
        conn.prepare_cached("SELECT followee, since_hlc FROM follows WHERE follower = ?1 AND following = 1")?;
    let rows = stmt.query_map([user as i64], |r| {
        Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64))
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// The newest `limit` posts (newest first, by hybrid clock stamp) by users `user` follows,
/// made after each follow (by stamp, not wall clock), stored at or before `upto`.
pub fn timeline(conn: &Connection, user: u64, upto: u64, limit: usize) -> Result<Vec<Post>> {
    let mut stmt = conn.prepare_cached(
        "SELECT p.author, p.post_id, p.text, p.ts_ms, p.seq, p.author_name FROM posts p
         JOIN follows f ON f.followee = p.author AND f.follower = ?1 AND f.following = 1
         WHERE p.hlc >= f.since_hlc AND p.seq <= ?2 AND p.author != ?1
         ORDER BY p.hlc DESC, p.seq DESC LIMIT ?3",
    )?;
    let rows = stmt.query_map(params![user as i64, bound(upto), limit as i64], |r| {
        Ok(Post {
            author: r.get::<_, i64>(0)? as u64,
            post_id: r.get::<_, i64>(1)? as u64,
            text: r.get(2)?,
            timestamp_ms: r.get(3)?,
            seq: r.get::<_, i64>(4)? as u64,
            author_name: r.get(5)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub fn sync_cursor(conn: &Connection) -> Result<u64> {
    Ok(conn
        .query_row("SELECT value FROM meta WHERE key = 'sync_cursor'", [], |r| {
            r.get::<_, i64>(0)
        })
        .optional()?
        .unwrap_or(0) as u64)
}

/// A digest of the derived state, to compare replicas in tests and tools.
pub fn state_digest(conn: &Connection) -> Result<String> {
    let users = all_users(conn)?;
    let mut stmt = conn.prepare("SELECT follower, followee, following FROM follows ORDER BY follower, followee")?;
    let follows: Vec<(i64, i64, bool)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let mut stmt = conn.prepare("SELECT author, post_id, seq FROM posts ORDER BY author, post_id")?;
    let posts: Vec<(i64, i64, i64)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let mut stmt = conn.prepare("SELECT user_id, phc FROM credentials ORDER BY user_id")?;
    let credentials: Vec<(i64, String)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let mut stmt = conn.prepare("SELECT user_id, hex(token_hash) FROM sessions ORDER BY token_hash")?;
    let sessions: Vec<(i64, String)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    Ok(format!(
        "users={users:?} follows={follows:?} posts={posts:?} credentials={credentials:?} sessions={sessions:?}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tinysns_common::proto::internal::{FollowChanged, PostCreated, UserCreated};

    fn entry(lsn: u64, ts: i64, origin_lsn: u64, kind: change::Kind) -> LogEntry {
        LogEntry {
            lsn,
            term: 1,
            timestamp_ms: ts,
            origin_cluster: 1,
            origin_lsn,
            kind: Some(log_entry::Kind::Change(Change { kind: Some(kind) })),
            hlc: 0,
        }
    }

    fn write(conn: &mut Connection, entries: &[LogEntry]) {
        let tx = conn.transaction().unwrap();
        for e in entries {
            append(&tx, e).unwrap();
        }
        tx.commit().unwrap();
    }

    fn follow(follower: u64, followee: u64, on: bool) -> change::Kind {
        change::Kind::Follow(FollowChanged {
            follower,
            followee,
            following: on,
        })
    }

    fn post(author: u64, id: u64) -> change::Kind {
        change::Kind::Post(PostCreated {
            author,
            post_id: id,
            text: format!("p{id}"),
            author_name: String::new(),
        })
    }

    #[test]
    fn timeline_shows_only_posts_after_the_follow_newest_first() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = open(dir.path()).unwrap();
        let mut es = vec![
            entry(
                1,
                10,
                1,
                change::Kind::User(UserCreated {
                    user_id: 1,
                    username: String::new(),
                }),
            ),
            entry(
                2,
                10,
                2,
                change::Kind::User(UserCreated {
                    user_id: 2,
                    username: String::new(),
                }),
            ),
            entry(3, 20, 3, post(2, 1)),
            entry(4, 30, 4, follow(1, 2, true)),
        ];
        for i in 0..25u64 {
            es.push(entry(5 + i, 40 + i as i64, 5 + i, post(2, 100 + i)));
        }
        write(&mut c, &es);
        let t = timeline(&c, 1, u64::MAX, 20).unwrap();
        assert_eq!(t.len(), 20);
        assert_eq!(t[0].post_id, 124);
        assert_eq!(t[19].post_id, 105);
        assert!(
            t.iter().all(|p| p.post_id != 1),
            "post made before the follow must not show"
        );
        assert_eq!(followers(&c, 2).unwrap(), vec![1]);
        assert_eq!(all_users(&c).unwrap(), vec![1, 2]);
    }

    #[test]
    fn the_clock_stamp_orders_the_timeline_and_decides_after_the_follow() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = open(dir.path()).unwrap();
        let stamped = |lsn, ts, hlc, kind| LogEntry {
            hlc,
            ..entry(lsn, ts, lsn, kind)
        };
        write(
            &mut c,
            &[
                // A post made before the follow on a clock 5 minutes ahead.
                stamped(1, 400_000, 900, post(2, 1)),
                stamped(2, 100_000, 1_000, follow(1, 2, true)),
                // Posts made after it on a clock 5 minutes behind, then a correct one.
                stamped(3, 1, 1_001, post(2, 2)),
                stamped(4, 100_050, 1_002, post(2, 3)),
            ],
        );
        let shown: Vec<u64> = timeline(&c, 1, u64::MAX, 20)
            .unwrap()
            .iter()
            .map(|p| p.post_id)
            .collect();
        assert_eq!(shown, vec![3, 2]);
    }

    #[test]
    fn stale_follow_changes_lose_and_duplicates_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = open(dir.path()).unwrap();
        write(
            &mut c,
            &[
                entry(1, 10, 7, follow(1, 2, true)),
                entry(2, 20, 9, follow(1, 2, false)),
            ],
        );
        // A redelivered older change must not resurrect the follow.
        write(&mut c, &[entry(3, 10, 7, follow(1, 2, true))]);
        assert_eq!(follow_state(&c, 1, 2).unwrap(), Some((false, 9)));
        write(&mut c, &[entry(4, 30, 5, post(2, 1)), entry(5, 30, 5, post(2, 1))]);
        assert_eq!(post_seq(&c, 2, 1).unwrap(), Some(4));
    }

    #[test]
    fn truncation_rebuilds_the_derived_state() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = open(dir.path()).unwrap();
        write(
            &mut c,
            &[
                entry(1, 10, 1, follow(1, 2, true)),
                entry(2, 20, 2, post(2, 1)),
                entry(3, 30, 3, follow(1, 2, false)),
            ],
        );
        truncate_after(&mut c, 2).unwrap();
        assert_eq!(last_lsn(&c).unwrap(), 2);
        assert_eq!(follow_state(&c, 1, 2).unwrap(), Some((true, 1)));
        assert_eq!(entries_after(&c, 0, u64::MAX, 10).unwrap().len(), 2);
        assert_eq!(term_at(&c, 2).unwrap(), Some(1));
        assert_eq!(term_at(&c, 3).unwrap(), None);
    }

    #[test]
    fn a_store_from_before_accounts_gains_their_columns() {
        let dir = tempfile::tempdir().unwrap();
        {
            let old = Connection::open(dir.path().join("tsd.db")).unwrap();
            old.execute_batch(
                "CREATE TABLE users (user_id INTEGER PRIMARY KEY, created_ms INTEGER NOT NULL);
                 CREATE TABLE posts (author INTEGER NOT NULL, post_id INTEGER NOT NULL, text TEXT NOT NULL,
                     ts_ms INTEGER NOT NULL, seq INTEGER NOT NULL, PRIMARY KEY (author, post_id));
                 INSERT INTO users VALUES (7, 1);",
            )
            .unwrap();
        }
        let mut c = open(dir.path()).unwrap();
        assert_eq!(username_of(&c, 7).unwrap(), None);
        write(&mut c, &[entry(1, 10, 1, post(7, 1))]);
        assert_eq!(timeline(&c, 7, u64::MAX, 5).unwrap().len(), 0);
        assert_eq!(post_seq(&c, 7, 1).unwrap(), Some(1));
        // Opening again leaves it as it is.
        drop(c);
        assert!(open(dir.path()).is_ok());
    }

    #[test]
    fn users_and_followers_come_in_pages() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = open(dir.path()).unwrap();
        let mut es: Vec<LogEntry> = (1..=2500u64)
            .map(|u| {
                entry(
                    u,
                    1,
                    u,
                    change::Kind::User(UserCreated {
                        user_id: u,
                        username: format!("u{u}"),
                    }),
                )
            })
            .collect();
        es.extend((2..=1201u64).map(|f| entry(2500 + f, 2, 2500 + f, follow(f, 1, true))));
        write(&mut c, &es);
        let mut seen = Vec::new();
        let mut after = 0;
        loop {
            let page = users_page(&c, after, 1000).unwrap();
            let Some(last) = page.last() else { break };
            after = last.id;
            seen.extend(page.iter().map(|u| u.id));
        }
        assert_eq!(seen, (1..=2500).collect::<Vec<_>>());
        assert_eq!(users_page(&c, 0, 3).unwrap()[2].username, "u3");
        let first = followers_page(&c, 1, 0, 1000).unwrap();
        let rest = followers_page(&c, 1, first.last().unwrap().id, 1000).unwrap();
        assert_eq!((first.len(), rest.len()), (1000, 200));
        assert_eq!(rest.last().unwrap().id, 1201);
        assert!(users_page(&c, u64::MAX, 10).unwrap().is_empty());
    }
}
