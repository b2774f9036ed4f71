//! The embedded store: the replicated log plus the tables derived from it, in one SQLite
//! database. Every entry is written to the log and applied to the tables in the same
//! transaction, so the tables can always be rebuilt from the log (which is how a replica
//! drops entries it must give up after a failover).

use prost::Message;
use rusqlite::{Connection, OptionalExtension, params};
use std::path::Path;
use tinysns_common::proto::internal::{Change, LogEntry, change, log_entry};
use tinysns_common::proto::social::Post;

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

pub type Result<T> = std::result::Result<T, StoreError>;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS log (lsn INTEGER PRIMARY KEY, term INTEGER NOT NULL, origin_cluster INTEGER NOT NULL, entry BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS users (user_id INTEGER PRIMARY KEY, created_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS follows (
    follower INTEGER NOT NULL, followee INTEGER NOT NULL, following INTEGER NOT NULL,
    since_ms INTEGER NOT NULL, version INTEGER NOT NULL, PRIMARY KEY (follower, followee));
CREATE INDEX IF NOT EXISTS follows_by_followee ON follows (followee, following);
CREATE TABLE IF NOT EXISTS posts (
    author INTEGER NOT NULL, post_id INTEGER NOT NULL, text TEXT NOT NULL, ts_ms INTEGER NOT NULL,
    seq INTEGER NOT NULL, PRIMARY KEY (author, post_id));
CREATE INDEX IF NOT EXISTS posts_by_author_time ON posts (author, ts_ms);
CREATE INDEX IF NOT EXISTS posts_by_seq ON posts (seq);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
";

const DERIVED_TABLES: [&str; 4] = ["users", "follows", "posts", "meta"];

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
    Ok(conn)
}

pub fn last_lsn(conn: &Connection) -> Result<u64> {
    Ok(conn.query_row("SELECT COALESCE(MAX(lsn), 0) FROM log", [], |r| r.get::<_, i64>(0))? as u64)
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
    conn.prepare_cached("INSERT INTO log (lsn, term, origin_cluster, entry) VALUES (?1, ?2, ?3, ?4)")?
        .execute(params![
            entry.lsn as i64,
            entry.term as i64,
            entry.origin_cluster,
            entry.encode_to_vec()
        ])?;
    apply(conn, entry)
}

/// Updates the derived tables for one entry. Deterministic, so every replica that applies
/// the same log holds the same state; idempotent for changes that arrive twice.
fn apply(conn: &Connection, entry: &LogEntry) -> Result<()> {
    match &entry.kind {
        Some(log_entry::Kind::Change(Change { kind: Some(change) })) => match change {
            change::Kind::User(u) => {
                conn.prepare_cached("INSERT OR IGNORE INTO users (user_id, created_ms) VALUES (?1, ?2)")?
                    .execute(params![u.user_id as i64, entry.timestamp_ms])?;
            }
            change::Kind::Follow(f) => {
                // Last writer wins by the origin's log position: a follower's relations all
                // originate in its home cluster, whose log orders them.
                conn.prepare_cached(
                    "INSERT INTO follows (follower, followee, following, since_ms, version)
                     VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (follower, followee) DO UPDATE SET
                        following = excluded.following,
                        since_ms = CASE WHEN follows.following = 1 AND excluded.following = 1
                                        THEN follows.since_ms ELSE excluded.since_ms END,
                        version = excluded.version
                     WHERE excluded.version > follows.version",
                )?
                .execute(params![
                    f.follower as i64,
                    f.followee as i64,
                    f.following,
                    entry.timestamp_ms,
                    entry.origin_lsn as i64
                ])?;
            }
            change::Kind::Post(p) => {
                conn.prepare_cached(
                    "INSERT OR IGNORE INTO posts (author, post_id, text, ts_ms, seq) VALUES (?1, ?2, ?3, ?4, ?5)",
                )?
                .execute(params![
                    p.author as i64,
                    p.post_id as i64,
                    p.text,
                    entry.timestamp_ms,
                    entry.lsn as i64
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
        Some(log_entry::Kind::Change(Change { kind: None })) | None => {}
    }
    Ok(())
}

/// Drops every entry after `lsn` and rebuilds the derived tables from what remains. Used by a
/// replica whose log diverged from the master's (it was deposed with unreplicated entries).
pub fn truncate_after(conn: &mut Connection, lsn: u64) -> Result<()> {
    let tx = conn.transaction()?;
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

/// Who `user` follows, with the time each follow started.
pub fn following(conn: &Connection, user: u64) -> Result<Vec<(u64, i64)>> {
    let mut stmt =
        conn.prepare_cached("SELECT followee, since_ms FROM follows WHERE follower = ?1 AND following = 1")?;
    let rows = stmt.query_map([user as i64], |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)?)))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// The newest `limit` posts (newest first) by users `user` follows, made since each follow
/// started, stored at or before `upto`.
pub fn timeline(conn: &Connection, user: u64, upto: u64, limit: usize) -> Result<Vec<Post>> {
    let mut stmt = conn.prepare_cached(
        "SELECT p.author, p.post_id, p.text, p.ts_ms, p.seq FROM posts p
         JOIN follows f ON f.followee = p.author AND f.follower = ?1 AND f.following = 1
         WHERE p.ts_ms >= f.since_ms AND p.seq <= ?2 AND p.author != ?1
         ORDER BY p.ts_ms DESC, p.seq DESC LIMIT ?3",
    )?;
    let rows = stmt.query_map(params![user as i64, bound(upto), limit as i64], |r| {
        Ok(Post {
            author: r.get::<_, i64>(0)? as u64,
            post_id: r.get::<_, i64>(1)? as u64,
            text: r.get(2)?,
            timestamp_ms: r.get(3)?,
            seq: r.get::<_, i64>(4)? as u64,
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
    Ok(format!("users={users:?} follows={follows:?} posts={posts:?}"))
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
        })
    }

    #[test]
    fn timeline_shows_only_posts_after_the_follow_newest_first() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = open(dir.path()).unwrap();
        let mut es = vec![
            entry(1, 10, 1, change::Kind::User(UserCreated { user_id: 1 })),
            entry(2, 10, 2, change::Kind::User(UserCreated { user_id: 2 })),
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
}
