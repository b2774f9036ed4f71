//! Topics in the store: how their changes apply (a post's topics wait in `topic_pending`
//! until the topic's home numbers them; a number becomes a row of `topic_posts`), and the
//! indexed reads of a topic's history, the topics there are, and subscriptions.

use super::{Result, bound};
use rusqlite::{Connection, OptionalExtension, params};
use tinysns_common::proto::internal::{LogEntry, PostCreated, TopicSequenced, TopicSubscription};
use tinysns_common::proto::social::Post;

/// Schema of the topic tables (part of the store's schema).
pub(super) const SCHEMA: &str = "
-- Each topic's numbered posts, by number (the sequence the topic's home gives, the same in
-- every cluster). A deleted post's row goes; its number is not given again.
CREATE TABLE IF NOT EXISTS topic_posts (
    topic TEXT NOT NULL, seq INTEGER NOT NULL, author INTEGER NOT NULL, number INTEGER NOT NULL,
    hlc INTEGER NOT NULL,
    PRIMARY KEY (topic, seq));
CREATE INDEX IF NOT EXISTS topic_posts_by_post ON topic_posts (author, number);
CREATE INDEX IF NOT EXISTS topic_posts_by_time ON topic_posts (topic, hlc);
-- Posts with topics that have no number yet in one of them. Every cluster keeps them until
-- the number arrives; the topic's home numbers them. `id` grows with the log (lsn * 16 +
-- the topic's place in the post), so the home's sequencer reads them in log order.
CREATE TABLE IF NOT EXISTS topic_pending (
    id INTEGER PRIMARY KEY, topic TEXT NOT NULL, author INTEGER NOT NULL, number INTEGER NOT NULL,
    UNIQUE (topic, author, number));
CREATE INDEX IF NOT EXISTS topic_pending_by_post ON topic_pending (author, number);
-- Per topic: the newest number, how many of its posts are not deleted, and the newest stamp.
CREATE TABLE IF NOT EXISTS topics (
    topic TEXT PRIMARY KEY, last_seq INTEGER NOT NULL, posts INTEGER NOT NULL, last_hlc INTEGER NOT NULL);
-- Who subscribes to what: `version` is the subscriber's home log position (last writer wins).
CREATE TABLE IF NOT EXISTS topic_subscriptions (
    subscriber INTEGER NOT NULL, topic TEXT NOT NULL, subscribed INTEGER NOT NULL, version INTEGER NOT NULL,
    PRIMARY KEY (subscriber, topic));
";

/// The tables above, for snapshots and the undo log.
pub(super) const TABLES: [&str; 4] = ["topic_posts", "topic_pending", "topics", "topic_subscriptions"];

/// A newly stored post waits for a number in each of its topics (unless the number came
/// first).
pub(super) fn apply_post_topics(conn: &Connection, entry: &LogEntry, p: &PostCreated, number: u64) -> Result<()> {
    let mut pending = conn.prepare_cached(
        "INSERT OR IGNORE INTO topic_pending (id, topic, author, number)
         SELECT ?1, ?2, ?3, ?4
         WHERE NOT EXISTS (SELECT 1 FROM topic_posts WHERE author = ?3 AND number = ?4 AND topic = ?2)",
    )?;
    for (place, topic) in p.topics.iter().enumerate().take(16) {
        let id = bound(entry.lsn).saturating_mul(16).saturating_add(place as i64);
        pending.execute(params![id, topic, p.author as i64, bound(number)])?;
    }
    Ok(())
}

/// A number from the topic's home: the post joins the topic's history (unless it was deleted
/// meanwhile) and stops waiting.
pub(super) fn apply_topic_sequenced(conn: &Connection, t: &TopicSequenced) -> Result<()> {
    let Some(post) = &t.post else { return Ok(()) };
    let (author, number) = (post.author as i64, bound(post.number));
    conn.prepare_cached("DELETE FROM topic_pending WHERE topic = ?1 AND author = ?2 AND number = ?3")?
        .execute(params![t.topic, author, number])?;
    let left_out = super::is_tombstoned(conn, post.author, post.number)? || super::account_closed(conn, post.author)?;
    let stored = if left_out {
        0
    } else {
        conn.prepare_cached(
            "INSERT OR IGNORE INTO topic_posts (topic, seq, author, number, hlc) VALUES (?1, ?2, ?3, ?4, ?5)",
        )?
        .execute(params![t.topic, bound(t.seq), author, number, bound(t.post_hlc)])?
    };
    conn.prepare_cached(
        "INSERT INTO topics (topic, last_seq, posts, last_hlc) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (topic) DO UPDATE SET
            last_seq = MAX(last_seq, excluded.last_seq), posts = posts + excluded.posts,
            last_hlc = MAX(last_hlc, excluded.last_hlc)",
    )?
    .execute(params![t.topic, bound(t.seq), stored as i64, bound(t.post_hlc)])?;
    Ok(())
}

/// A deleted post leaves every topic (and stops waiting for numbers).
pub(super) fn apply_post_deleted(conn: &Connection, author: u64, number: u64) -> Result<()> {
    let key = params![author as i64, bound(number)];
    conn.prepare_cached(
        "UPDATE topics SET posts = posts - 1
         WHERE topic IN (SELECT topic FROM topic_posts WHERE author = ?1 AND number = ?2)",
    )?
    .execute(key)?;
    conn.prepare_cached("DELETE FROM topic_posts WHERE author = ?1 AND number = ?2")?
        .execute(key)?;
    conn.prepare_cached("DELETE FROM topic_pending WHERE author = ?1 AND number = ?2")?
        .execute(key)?;
    Ok(())
}

/// Last writer wins by the subscriber's home log position.
pub(super) fn apply_subscription(conn: &Connection, entry: &LogEntry, s: &TopicSubscription) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO topic_subscriptions (subscriber, topic, subscribed, version) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (subscriber, topic) DO UPDATE SET subscribed = excluded.subscribed, version = excluded.version
         WHERE excluded.version > topic_subscriptions.version",
    )?
    .execute(params![s.user as i64, s.topic, s.subscribed, entry.origin_lsn as i64])?;
    Ok(())
}

/// A post waiting for a number in a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingTopicPost {
    pub id: i64,
    pub topic: String,
    pub author: u64,
    pub number: u64,
}

/// Posts waiting for a number, in log order, after `after_id`.
pub fn pending_topic_posts(conn: &Connection, after_id: i64, limit: usize) -> Result<Vec<PendingTopicPost>> {
    let mut stmt =
        conn.prepare_cached("SELECT id, topic, author, number FROM topic_pending WHERE id > ?1 ORDER BY id LIMIT ?2")?;
    let rows = stmt.query_map(params![after_id, limit as i64], |r| {
        Ok(PendingTopicPost {
            id: r.get(0)?,
            topic: r.get(1)?,
            author: r.get::<_, i64>(2)? as u64,
            number: r.get::<_, i64>(3)? as u64,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Whether `author/number` waits for a number in `topic`.
pub fn is_pending(conn: &Connection, topic: &str, author: u64, number: u64) -> Result<bool> {
    Ok(conn
        .prepare_cached("SELECT 1 FROM topic_pending WHERE topic = ?1 AND author = ?2 AND number = ?3")?
        .exists(params![topic, author as i64, bound(number)])?)
}

/// Whether number `seq` of `topic` names a post here.
pub fn topic_seq_taken(conn: &Connection, topic: &str, seq: u64) -> Result<bool> {
    Ok(conn
        .prepare_cached("SELECT 1 FROM topic_posts WHERE topic = ?1 AND seq = ?2")?
        .exists(params![topic, bound(seq)])?)
}

/// The newest number of `topic` here (0: none yet).
pub fn topic_last_seq(conn: &Connection, topic: &str) -> Result<u64> {
    Ok(conn
        .prepare_cached("SELECT last_seq FROM topics WHERE topic = ?1")?
        .query_row([topic], |r| r.get::<_, i64>(0))
        .optional()?
        .unwrap_or(0) as u64)
}

/// The stored post `author/number` as its author's cluster made it, with its stamp: what a
/// topic's number carries.
pub fn post_as_created(conn: &Connection, author: u64, number: u64) -> Result<Option<(PostCreated, u64)>> {
    Ok(conn
        .prepare_cached(
            "SELECT post_id, text, author_name, reply_author, reply_number, hlc FROM posts
             WHERE author = ?1 AND number = ?2",
        )?
        .query_row(params![author as i64, bound(number)], |r| {
            Ok((
                PostCreated {
                    author,
                    post_id: r.get::<_, i64>(0)? as u64,
                    text: r.get(1)?,
                    author_name: r.get(2)?,
                    number,
                    reply_to_author: r.get::<_, i64>(3)? as u64,
                    reply_to_number: r.get::<_, i64>(4)? as u64,
                    topics: Vec::new(),
                },
                r.get::<_, i64>(5)? as u64,
            ))
        })
        .optional()?)
}

/// Whether `user` subscribes to `topic`, and since which of its home's log positions.
pub fn subscription_state(conn: &Connection, user: u64, topic: &str) -> Result<Option<(bool, u64)>> {
    Ok(conn
        .prepare_cached("SELECT subscribed, version FROM topic_subscriptions WHERE subscriber = ?1 AND topic = ?2")?
        .query_row(params![user as i64, topic], |r| {
            Ok((r.get::<_, bool>(0)?, r.get::<_, i64>(1)? as u64))
        })
        .optional()?)
}

/// The topics `user` subscribes to, by name.
pub fn subscriptions(conn: &Connection, user: u64) -> Result<Vec<String>> {
    let mut stmt = conn.prepare_cached(
        "SELECT topic FROM topic_subscriptions WHERE subscriber = ?1 AND subscribed = 1 ORDER BY topic",
    )?;
    let rows = stmt.query_map([user as i64], |r| r.get(0))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// A page of a topic's history: its posts by number, from `from` (included; 0: the newest
/// going backwards, the first going forwards), up to `limit`, deleted ones left out. Read
/// through the primary key: no scan of the topic.
pub fn topic_history(
    conn: &Connection,
    topic: &str,
    from: u64,
    forward: bool,
    limit: usize,
) -> Result<Vec<(u64, PostCreated, i64)>> {
    let sql = if forward {
        "SELECT t.seq, t.author, t.number, p.post_id, p.text, p.author_name, p.reply_author, p.reply_number, p.ts_ms
         FROM topic_posts t JOIN posts p ON p.author = t.author AND p.number = t.number
         WHERE t.topic = ?1 AND t.seq >= ?2 ORDER BY t.seq LIMIT ?3"
    } else {
        "SELECT t.seq, t.author, t.number, p.post_id, p.text, p.author_name, p.reply_author, p.reply_number, p.ts_ms
         FROM topic_posts t JOIN posts p ON p.author = t.author AND p.number = t.number
         WHERE t.topic = ?1 AND t.seq <= ?2 ORDER BY t.seq DESC LIMIT ?3"
    };
    let from = match (from, forward) {
        (0, false) => i64::MAX,
        (from, _) => bound(from),
    };
    let mut stmt = conn.prepare_cached(sql)?;
    let rows = stmt.query_map(params![topic, from, limit as i64], |r| {
        Ok((
            r.get::<_, i64>(0)? as u64,
            PostCreated {
                author: r.get::<_, i64>(1)? as u64,
                number: r.get::<_, i64>(2)? as u64,
                post_id: r.get::<_, i64>(3)? as u64,
                text: r.get(4)?,
                author_name: r.get(5)?,
                reply_to_author: r.get::<_, i64>(6)? as u64,
                reply_to_number: r.get::<_, i64>(7)? as u64,
                topics: Vec::new(),
            },
            r.get::<_, i64>(8)?,
        ))
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// A topic's newest number and count of posts not deleted (None: no post has a number yet).
pub fn topic_counts(conn: &Connection, topic: &str) -> Result<Option<(u64, u64)>> {
    Ok(conn
        .prepare_cached("SELECT last_seq, posts FROM topics WHERE topic = ?1")?
        .query_row([topic], |r| {
            Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)?.max(0) as u64))
        })
        .optional()?)
}

/// A topic as listed: name, posts not deleted, newest number, posts since the window began.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicCounts {
    pub topic: String,
    pub count: u64,
    pub last_seq: u64,
    pub recent: u64,
}

/// Topics by name after `after`, with how many posts each had since `since_hlc` (counted
/// through the (topic, stamp) index: only the window's posts).
pub fn topics_by_name(conn: &Connection, after: &str, limit: usize, since_hlc: u64) -> Result<Vec<TopicCounts>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT t.topic, t.posts, t.last_seq, {RECENT} FROM topics t WHERE t.topic > ?1 ORDER BY t.topic LIMIT ?2"
    ))?;
    let rows = stmt.query_map(params![after, limit as i64, bound(since_hlc)], topic_counts_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// How many posts of topic `t` are stamped at or after `?3`.
const RECENT: &str = "(SELECT COUNT(*) FROM topic_posts r WHERE r.topic = t.topic AND r.hlc >= ?3)";

/// The topics with the most posts since `since_hlc`, most first: only topics with a post in
/// the window are counted, each through the (topic, stamp) index.
pub fn active_topics(conn: &Connection, limit: usize, since_hlc: u64) -> Result<Vec<TopicCounts>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT t.topic, t.posts, t.last_seq, {RECENT} AS recent FROM topics t
         WHERE t.last_hlc >= ?3 AND recent > 0 ORDER BY recent DESC, t.topic LIMIT ?2"
    ))?;
    let rows = stmt.query_map(params!["", limit as i64, bound(since_hlc)], topic_counts_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

fn topic_counts_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<TopicCounts> {
    Ok(TopicCounts {
        topic: r.get(0)?,
        count: r.get::<_, i64>(1)?.max(0) as u64,
        last_seq: r.get::<_, i64>(2)?.max(0) as u64,
        recent: r.get::<_, i64>(3)?.max(0) as u64,
    })
}

/// Every number this replica holds, as `(topic, number in it, author, author's post number)`,
/// by topic and number (for the fault suite's checker; the post itself may be kept elsewhere).
pub fn all_topic_posts(conn: &Connection) -> Result<Vec<(String, u64, u64, u64)>> {
    let mut stmt = conn.prepare("SELECT topic, seq, author, number FROM topic_posts ORDER BY topic, seq")?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get(0)?,
            r.get::<_, i64>(1)? as u64,
            r.get::<_, i64>(2)? as u64,
            r.get::<_, i64>(3)? as u64,
        ))
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// A history row as a client sees it (counts are filled in by the caller).
pub fn topic_post_view(created: &PostCreated, seq: u64, timestamp_ms: i64) -> Post {
    Post {
        author: created.author,
        post_id: created.post_id,
        text: created.text.clone(),
        timestamp_ms,
        seq,
        author_name: created.author_name.clone(),
        number: created.number,
        ..Default::default()
    }
}
