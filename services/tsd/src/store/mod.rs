//! The embedded store: the replicated log plus the tables derived from it, in one SQLite
//! database. Every entry is written to the log and applied to the tables in the same
//! transaction (`apply`), with the inverse of each change (`undo`), so a replica drops a
//! suffix it must give up after a failover at the cost of the suffix. The log's front is
//! dropped once nobody needs it (`compaction`); a replica that needs it gets a copy of the
//! whole store instead (`snapshot`).

mod apply;
pub mod compaction;
mod deletions;
mod messages;
mod queries;
mod rooms;
mod routing;
pub mod snapshot;
mod topics;
pub mod undo;

use crate::clock;
use apply::apply;
use prost::Message;
use rusqlite::{OptionalExtension, params};
use std::path::Path;
use tinysns_common::proto::internal::LogEntry;

pub use deletions::{
    Deletion, PreparedDeletion, account_closed, deletion_ready, deletion_state, prepared_deletions, user_traces,
};
pub use messages::{
    ConversationSummary, StoredMessage, all_messages, block_state, blocks, conversation, inbox, inbox_entry,
    message_stored, unread_total,
};
pub use queries::*;
/// The store's connection type, which every function here takes.
pub use rooms::{
    Room, RoomState, StoredRoomMessage, closing_rooms, open_rooms, room, room_deletion_ready, room_member_clusters,
    room_member_state, room_members, room_message_seq, room_messages, room_names_of, room_seq_taken, rooms_of,
};
pub use routing::{follower_clusters, posts_since, subscriber_clusters};
pub use rusqlite::Connection;
pub use topics::{
    PendingTopicPost, TopicCounts, active_topics, all_topic_posts, is_pending, pending_topic_posts, post_as_created,
    subscription_state, subscriptions, topic_counts, topic_history, topic_last_seq, topic_post_view, topic_seq_taken,
    topics_by_name,
};
pub use undo::truncate_after;

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
    #[error("snapshot: {0}")]
    Snapshot(String),
    /// Installing a snapshot failed after it began to replace the store, which is partial
    /// until a restart empties it.
    #[error("installing a snapshot failed halfway: {0}")]
    InstallInterrupted(String),
    /// A reader of the log asked for entries after `after`, but the log was compacted up to
    /// `start`: what lies between is only in the derived tables now.
    #[error("the log after {after} was compacted up to {start}")]
    Compacted { after: u64, start: u64 },
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
            StoreError::DataDir { .. } | StoreError::InstallInterrupted(_) => true,
            _ => false,
        }
    }
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// Prepared statements each connection keeps (rusqlite's default is 16). The writer's loop
/// uses more than 16 distinct statements, and past the cache a statement is prepared again
/// (parsed and planned) every time it is used.
pub const STATEMENT_CACHE: usize = 256;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS log (lsn INTEGER PRIMARY KEY, term INTEGER NOT NULL, origin_cluster INTEGER NOT NULL, entry BLOB NOT NULL, hlc INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS users (user_id INTEGER PRIMARY KEY, created_ms INTEGER NOT NULL, username TEXT);
CREATE TABLE IF NOT EXISTS follows (
    follower INTEGER NOT NULL, followee INTEGER NOT NULL, following INTEGER NOT NULL,
    since_ms INTEGER NOT NULL, version INTEGER NOT NULL, since_hlc INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (follower, followee));
CREATE TABLE IF NOT EXISTS posts (
    author INTEGER NOT NULL, post_id INTEGER NOT NULL, text TEXT NOT NULL, ts_ms INTEGER NOT NULL,
    seq INTEGER NOT NULL, author_name TEXT NOT NULL DEFAULT '', hlc INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (author, post_id));
CREATE INDEX IF NOT EXISTS posts_by_seq ON posts (seq);
CREATE TABLE IF NOT EXISTS profiles (
    user_id INTEGER PRIMARY KEY, display_name TEXT NOT NULL, bio TEXT NOT NULL,
    version INTEGER NOT NULL, updated_ms INTEGER NOT NULL);
-- One row per (post, liker) ever liked: `liked` is the last state, `version` the liker's
-- home-cluster log position that set it (last writer wins).
CREATE TABLE IF NOT EXISTS likes (
    author INTEGER NOT NULL, number INTEGER NOT NULL, liker INTEGER NOT NULL,
    liked INTEGER NOT NULL, version INTEGER NOT NULL,
    PRIMARY KEY (author, number, liker));
-- Replies by the post they answer, in the order they were made (the thread's index; only
-- replies pay for it).
CREATE TABLE IF NOT EXISTS replies (
    parent_author INTEGER NOT NULL, parent_number INTEGER NOT NULL,
    hlc INTEGER NOT NULL, author INTEGER NOT NULL, number INTEGER NOT NULL,
    PRIMARY KEY (parent_author, parent_number, hlc, author, number));
-- Posts their authors deleted: a late copy of one (or a like of it) is ignored.
CREATE TABLE IF NOT EXISTS post_tombstones (
    author INTEGER NOT NULL, number INTEGER NOT NULL, deleted_ms INTEGER NOT NULL,
    PRIMARY KEY (author, number));
-- Direct messages between users of this cluster and anyone (keyed by sender and its id).
CREATE TABLE IF NOT EXISTS direct_messages (
    sender INTEGER NOT NULL, message_id INTEGER NOT NULL, recipient INTEGER NOT NULL,
    text TEXT NOT NULL, ts_ms INTEGER NOT NULL, hlc INTEGER NOT NULL,
    PRIMARY KEY (sender, message_id));
CREATE INDEX IF NOT EXISTS dms_by_pair ON direct_messages (min(sender, recipient), max(sender, recipient), hlc);
-- Each user's conversations: the last message, how far the owner has read, what is unread.
CREATE TABLE IF NOT EXISTS conversations (
    owner INTEGER NOT NULL, peer INTEGER NOT NULL, last_hlc INTEGER NOT NULL, last_ms INTEGER NOT NULL,
    read_hlc INTEGER NOT NULL, unread INTEGER NOT NULL,
    PRIMARY KEY (owner, peer));
CREATE INDEX IF NOT EXISTS conversations_by_owner ON conversations (owner, last_hlc);
CREATE TABLE IF NOT EXISTS blocks (
    blocker INTEGER NOT NULL, blocked INTEGER NOT NULL, blocking INTEGER NOT NULL, version INTEGER NOT NULL,
    PRIMARY KEY (blocker, blocked));
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS replica (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS credentials (user_id INTEGER PRIMARY KEY, phc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sessions (token_hash BLOB PRIMARY KEY, user_id INTEGER NOT NULL, expires_ms INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS sessions_by_user ON sessions (user_id);
-- Rows are appended in log order (lsn grows with seq): no index on lsn is needed (`undo`).
CREATE TABLE IF NOT EXISTS undo (seq INTEGER PRIMARY KEY, lsn INTEGER NOT NULL, statement TEXT NOT NULL);
";

/// Columns added after the first release, for stores created before them, with what fills
/// them in for rows stored before (hybrid clock stamps: the rows' wall-clock times).
const ADDED_COLUMNS: [(&str, &str, &str, &str); 8] = [
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
    // Posts stored before numbers existed are numbered per author in the order they were
    // applied, as a post without a number is when it arrives (an author's posts reach every
    // cluster in the order of its home cluster's log).
    ("posts", "number", "INTEGER NOT NULL DEFAULT 0", NUMBER_UNNUMBERED_POSTS),
    // Replies: the post answered (0, 0 for a post that is not a reply, as all older ones).
    ("posts", "reply_author", "INTEGER NOT NULL DEFAULT 0", ""),
    ("posts", "reply_number", "INTEGER NOT NULL DEFAULT 0", ""),
];

/// Numbers every post still numbered 0 after its author's highest number, in stamp order.
const NUMBER_UNNUMBERED_POSTS: &str = "
UPDATE posts SET number = r.n FROM (
    SELECT p.author, p.post_id,
           ROW_NUMBER() OVER (PARTITION BY p.author ORDER BY p.seq)
             + (SELECT COALESCE(MAX(q.number), 0) FROM posts q WHERE q.author = p.author) AS n
    FROM posts p WHERE p.number = 0) AS r
WHERE posts.author = r.author AND posts.post_id = r.post_id";

/// Indexes on added columns (created once the columns exist).
const LATE_INDEXES: &str = "
-- Followers by followee, covering the follower (where an author's posts go: `routing`).
DROP INDEX IF EXISTS follows_by_followee;
CREATE INDEX IF NOT EXISTS followers_by_followee ON follows (followee, following, follower);
CREATE UNIQUE INDEX IF NOT EXISTS users_by_name ON users (username) WHERE username IS NOT NULL;
DROP INDEX IF EXISTS posts_by_author_time;
CREATE INDEX IF NOT EXISTS posts_by_author_hlc ON posts (author, hlc);
CREATE INDEX IF NOT EXISTS posts_by_author_number ON posts (author, number);
-- (A partial index on posts made SQLite prepare every post's INSERT again: replies have a
-- table of their own, `replies`.)
DROP INDEX IF EXISTS posts_by_parent;
DROP INDEX IF EXISTS undo_by_lsn;
";

const DERIVED_TABLES: [&str; 23] = [
    "users",
    "follows",
    "posts",
    "profiles",
    "likes",
    "replies",
    "post_tombstones",
    "direct_messages",
    "conversations",
    "blocks",
    "meta",
    "credentials",
    "sessions",
    topics::TABLES[0],
    topics::TABLES[1],
    topics::TABLES[2],
    topics::TABLES[3],
    deletions::TABLES[0],
    deletions::TABLES[1],
    rooms::TABLES[0],
    rooms::TABLES[1],
    rooms::TABLES[2],
    rooms::TABLES[3],
];

/// Derived tables added after the first release: a snapshot from a replica of an older
/// version has none, and installs them empty (that version could not have written to them).
const ADDED_TABLES: [&str; 17] = [
    "profiles",
    "likes",
    "replies",
    "post_tombstones",
    "direct_messages",
    "conversations",
    "blocks",
    topics::TABLES[0],
    topics::TABLES[1],
    topics::TABLES[2],
    topics::TABLES[3],
    deletions::TABLES[0],
    deletions::TABLES[1],
    rooms::TABLES[0],
    rooms::TABLES[1],
    rooms::TABLES[2],
    rooms::TABLES[3],
];

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
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    conn.execute_batch(SCHEMA)?;
    conn.execute_batch(topics::SCHEMA)?;
    conn.execute_batch(deletions::SCHEMA)?;
    conn.execute_batch(rooms::SCHEMA)?;
    conn.execute_batch(routing::SCHEMA)?;
    add_missing_columns(&conn)?;
    conn.execute_batch(LATE_INDEXES)?;
    conn.execute_batch(compaction::SCHEMA)?;
    if snapshot::discard_interrupted_install(&conn)? {
        tracing::warn!(
            "the store held part of a snapshot (its install was interrupted): emptied; this replica starts over under a new incarnation"
        );
    }
    undo::record(&conn)?;
    Ok(conn)
}

/// The columns of `table` in `schema` (`main`, or an attached snapshot), in declaration order.
fn table_columns(conn: &Connection, schema: &str, table: &str) -> Result<Vec<String>> {
    let mut stmt = conn.prepare("SELECT name FROM pragma_table_info(?1, ?2) ORDER BY cid")?;
    let names = stmt.query_map([table, schema], |r| r.get::<_, String>(0))?;
    Ok(names.collect::<rusqlite::Result<_>>()?)
}

/// The log's last lsn (where it was compacted to, if it holds no entries).
pub fn last_lsn(conn: &Connection) -> Result<u64> {
    Ok(conn
        .prepare_cached("SELECT COALESCE(MAX(lsn), (SELECT log_start FROM log_bounds)) FROM log")?
        .query_row([], |r| r.get::<_, i64>(0))? as u64)
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

/// Records `lsn` as committed (call inside the writer's transaction). Committed entries are
/// never dropped, so their inverses go.
pub fn record_commit_point(conn: &Connection, lsn: u64) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO replica (key, value) VALUES ('committed', ?1)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    )?
    .execute([lsn as i64])?;
    undo::prune(conn, lsn)
}

/// The highest hybrid clock stamp stored, dropped entries' included (0 for an empty log).
pub fn max_hlc(conn: &Connection) -> Result<u64> {
    Ok(conn.query_row(
        "SELECT MAX(COALESCE((SELECT MAX(hlc) FROM log), 0), (SELECT start_hlc FROM log_bounds))",
        [],
        |r| r.get::<_, i64>(0),
    )? as u64)
}

/// The term of the log's last entry (0 for an empty log).
pub fn last_term(conn: &Connection) -> Result<u64> {
    Ok(conn.query_row(
        "SELECT COALESCE(MAX(term), (SELECT start_term FROM log_bounds)) FROM log",
        [],
        |r| r.get::<_, i64>(0),
    )? as u64)
}

/// The term of the entry at `lsn` (0 for lsn 0; the start's term for the log's compacted
/// start; None if absent or compacted).
pub fn term_at(conn: &Connection, lsn: u64) -> Result<Option<u64>> {
    if lsn == 0 {
        return Ok(Some(0));
    }
    let stored = conn
        .prepare_cached("SELECT term FROM log WHERE lsn = ?1")?
        .query_row([lsn as i64], |r| r.get::<_, i64>(0))
        .optional()?;
    match stored {
        Some(term) => Ok(Some(term as u64)),
        None => {
            let bounds = compaction::bounds(conn)?;
            Ok((bounds.start == lsn).then_some(bounds.start_term))
        }
    }
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

/// An inclusive upper bound for SQL: SQLite integers are signed.
pub(crate) fn bound(upto: u64) -> i64 {
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use tinysns_common::proto::internal::{
        AccountChange, Change, FollowChanged, LikeSet, PasswordSet, PostCreated, Registered, SessionEnded,
        SessionStarted, SyncCursor, UserCreated, account_change, change, log_entry,
    };

    pub(crate) fn entry(lsn: u64, ts: i64, origin_lsn: u64, kind: change::Kind) -> LogEntry {
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

    pub(crate) fn write(conn: &mut Connection, entries: &[LogEntry]) {
        let tx = conn.transaction().unwrap();
        for e in entries {
            append(&tx, e).unwrap();
        }
        tx.commit().unwrap();
    }

    pub(crate) fn follow(follower: u64, followee: u64, on: bool) -> change::Kind {
        change::Kind::Follow(FollowChanged {
            follower,
            followee,
            following: on,
        })
    }

    pub(crate) fn post(author: u64, id: u64) -> change::Kind {
        change::Kind::Post(PostCreated {
            author,
            post_id: id,
            text: format!("p{id}"),
            author_name: String::new(),
            number: 0,
            ..Default::default()
        })
    }

    /// Every row of every table a snapshot carries: equal dumps are equal stores.
    pub(crate) fn dump(conn: &Connection) -> Vec<String> {
        let mut rows = Vec::new();
        for table in DERIVED_TABLES.iter().chain(&["log", "log_bounds"]) {
            let columns = table_columns(conn, "main", table).unwrap();
            let select = columns
                .iter()
                .map(|c| format!("quote({c})"))
                .collect::<Vec<_>>()
                .join(" || ',' || ");
            let mut stmt = conn
                .prepare(&format!("SELECT '{table}:' || {select} FROM {table} ORDER BY 1"))
                .unwrap();
            rows.extend(
                stmt.query_map([], |r| r.get::<_, String>(0))
                    .unwrap()
                    .map(|r| r.unwrap()),
            );
        }
        rows
    }

    fn account(kind: account_change::Kind) -> log_entry::Kind {
        log_entry::Kind::Account(AccountChange { kind: Some(kind) })
    }

    /// A seeded mix of every kind of entry, with replays, flips and replacements, so every
    /// statement `apply` runs (insert, upsert, replace, delete) is exercised.
    pub(crate) fn mixed_entries(seed: u64, count: u64) -> Vec<LogEntry> {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        (1..=count)
            .map(|lsn| {
                let user = rng.random_range(1..=6u64);
                let other = rng.random_range(1..=6u64);
                let token = vec![rng.random_range(0..4u8); 4];
                let kind = match rng.random_range(0..9) {
                    0 => log_entry::Kind::Change(Change {
                        kind: Some(change::Kind::User(UserCreated {
                            user_id: user,
                            username: format!("u{user}"),
                        })),
                    }),
                    1 | 2 => log_entry::Kind::Change(Change {
                        kind: Some(follow(user, other, rng.random_bool(0.7))),
                    }),
                    3 => log_entry::Kind::Change(Change {
                        kind: Some(post(user, rng.random_range(1..=20))),
                    }),
                    4 => log_entry::Kind::Change(Change {
                        kind: Some(change::Kind::Like(LikeSet {
                            post_author: other,
                            post_number: rng.random_range(1..=3),
                            liker: user,
                            liked: rng.random_bool(0.7),
                            ..Default::default()
                        })),
                    }),
                    5 => account(account_change::Kind::Registered(Registered {
                        user_id: user,
                        username: format!("r{user}"),
                        password_phc: format!("phc{lsn}"),
                    })),
                    6 => account(account_change::Kind::Password(PasswordSet {
                        user_id: user,
                        password_phc: format!("new{lsn}"),
                        keep_session: token.clone(),
                    })),
                    7 => account(account_change::Kind::SessionStarted(SessionStarted {
                        user_id: user,
                        token_hash: token,
                        expires_ms: lsn as i64 * 10 + 50,
                    })),
                    _ => {
                        if rng.random_bool(0.5) {
                            account(account_change::Kind::SessionEnded(SessionEnded { token_hash: token }))
                        } else {
                            log_entry::Kind::SyncCursor(SyncCursor {
                                lsn: rng.random_range(0..lsn),
                            })
                        }
                    }
                };
                LogEntry {
                    lsn,
                    term: 1 + lsn / 50,
                    timestamp_ms: lsn as i64 * 10,
                    origin_cluster: 1,
                    origin_lsn: rng.random_range(1..=lsn),
                    kind: Some(kind),
                    hlc: lsn * 1000 + rng.random_range(0..500),
                }
            })
            .collect()
    }

    #[test]
    fn the_next_post_number_is_not_prepared_again_on_every_use() {
        let dir = tempfile::tempdir().unwrap();
        let conn = open(dir.path()).unwrap();
        for author in 0..50 {
            highest_post_number(&conn, author).unwrap();
        }
        let statement = conn.prepare_cached(queries::HIGHEST_POST_NUMBER).unwrap();
        assert_eq!(statement.get_status(rusqlite::StatementStatus::RePrepare), 0);
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
    fn truncation_undoes_exactly_the_dropped_suffix() {
        for seed in 0..20u64 {
            let all = mixed_entries(seed, 150);
            let keep = 40 + seed * 5;
            let dir = tempfile::tempdir().unwrap();
            let mut truncated = open(dir.path()).unwrap();
            // In several transactions, as the writer commits them, forgetting the inverses of
            // what is committed now and then (up to `keep` at most).
            let prune = |c: &mut Connection, committed: u64| {
                let tx = write_transaction(c).unwrap();
                undo::prune(&tx, committed).unwrap();
                tx.commit().unwrap();
            };
            let mut committed = 0;
            for (i, chunk) in all.chunks(17).enumerate() {
                write(&mut truncated, chunk);
                committed = (17 * i as u64).min(keep - seed % 7);
                prune(&mut truncated, committed);
            }
            truncate_after(&mut truncated, keep).unwrap();
            let fresh_dir = tempfile::tempdir().unwrap();
            let mut fresh = open(fresh_dir.path()).unwrap();
            write(&mut fresh, &all[..keep as usize]);
            // (`dump` shows the undo floor too.)
            prune(&mut fresh, committed);
            assert_eq!(dump(&truncated), dump(&fresh), "seed {seed}, keep {keep}");
            // And it goes on from there like any store.
            write(&mut truncated, &all[keep as usize..]);
            write(&mut fresh, &all[keep as usize..]);
            assert_eq!(dump(&truncated), dump(&fresh), "seed {seed}, replayed");
            // A second truncation finds the inverses recorded after the first.
            let again = (keep + 1 + seed % 30).min(149);
            truncate_after(&mut truncated, again).unwrap();
            let again_dir = tempfile::tempdir().unwrap();
            let mut again_fresh = open(again_dir.path()).unwrap();
            write(&mut again_fresh, &all[..again as usize]);
            prune(&mut again_fresh, committed);
            assert_eq!(dump(&truncated), dump(&again_fresh), "seed {seed}, keep {again}");
        }
    }

    #[test]
    fn committed_entries_cannot_be_dropped_once_the_log_is_compacted() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = open(dir.path()).unwrap();
        write(&mut c, &mixed_entries(7, 100));
        let tx = write_transaction(&mut c).unwrap();
        undo::prune(&tx, 60).unwrap();
        compaction::compact(&tx, 30, 1000).unwrap();
        tx.commit().unwrap();
        let before = dump(&c);
        assert!(truncate_after(&mut c, 50).is_err(), "below the undo floor");
        assert!(truncate_after(&mut c, 20).is_err(), "below the log's start");
        assert_eq!(dump(&c), before, "a refused truncation changes nothing");
        truncate_after(&mut c, 70).unwrap();
        assert_eq!(last_lsn(&c).unwrap(), 70);
    }

    #[test]
    fn a_store_without_inverses_is_rebuilt_from_its_log() {
        let all = mixed_entries(3, 80);
        let dir = tempfile::tempdir().unwrap();
        let mut c = open(dir.path()).unwrap();
        write(&mut c, &all);
        // As a store from before the undo log: no inverses for what it holds.
        let tx = write_transaction(&mut c).unwrap();
        undo::prune(&tx, 80).unwrap();
        tx.commit().unwrap();
        truncate_after(&mut c, 30).unwrap();
        let fresh_dir = tempfile::tempdir().unwrap();
        let mut fresh = open(fresh_dir.path()).unwrap();
        write(&mut fresh, &all[..30]);
        // Equal but for the undo floor: the rebuilt store has no inverses up to 30.
        let without_bounds = |c: &Connection| {
            let mut rows = dump(c);
            rows.retain(|r| !r.starts_with("log_bounds:"));
            rows
        };
        assert_eq!(without_bounds(&c), without_bounds(&fresh));
        assert_eq!(compaction::bounds(&c).unwrap().undo_floor, 30);
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
