//! The reads that decide where this cluster's changes go: which clusters have followers of
//! an author or subscribers of a topic, and an author's posts since a stamp (what a new
//! follower's cluster may have missed). All through indexes.

use super::{Result, bound, topics::post_as_created};
use rusqlite::{Connection, params};
use std::collections::BTreeSet;
use tinysns_common::proto::internal::PostCreated;

/// Schema of the routing indexes (part of the store's schema).
pub(super) const SCHEMA: &str = "
CREATE INDEX IF NOT EXISTS subscribers_by_topic ON topic_subscriptions (topic, subscribed, subscriber);
";

/// The home clusters (of `clusters`) of the users following `author`.
pub fn follower_clusters(conn: &Connection, author: u64, clusters: u32) -> Result<BTreeSet<u32>> {
    let mut stmt = conn.prepare_cached(
        "SELECT DISTINCT (follower - 1) % ?2 + 1 FROM follows WHERE followee = +?1 AND following = 1",
    )?;
    let rows = stmt.query_map(params![author as i64, i64::from(clusters.max(1))], |r| {
        r.get::<_, i64>(0)
    })?;
    Ok(rows.map(|c| c.map(|c| c as u32)).collect::<rusqlite::Result<_>>()?)
}

/// The home clusters (of `clusters`) of the users subscribed to `topic`.
pub fn subscriber_clusters(conn: &Connection, topic: &str, clusters: u32) -> Result<BTreeSet<u32>> {
    let mut stmt = conn.prepare_cached(
        "SELECT DISTINCT (subscriber - 1) % ?2 + 1 FROM topic_subscriptions WHERE topic = ?1 AND subscribed = 1",
    )?;
    let rows = stmt.query_map(params![topic, i64::from(clusters.max(1))], |r| r.get::<_, i64>(0))?;
    Ok(rows.map(|c| c.map(|c| c as u32)).collect::<rusqlite::Result<_>>()?)
}

/// `author`'s posts stamped at or after `since_hlc` and stored before log position `before`,
/// newest first, at most `limit`, each as its author's cluster made it with its stamp.
pub fn posts_since(
    conn: &Connection,
    author: u64,
    since_hlc: u64,
    before: u64,
    limit: usize,
) -> Result<Vec<(PostCreated, u64)>> {
    let numbers: Vec<i64> = conn
        .prepare_cached(
            "SELECT number FROM posts WHERE author = +?1 AND hlc >= +?2 AND seq < ?3 ORDER BY hlc DESC LIMIT ?4",
        )?
        .query_map(
            params![author as i64, bound(since_hlc), bound(before), limit as i64],
            |r| r.get(0),
        )?
        .collect::<rusqlite::Result<_>>()?;
    let mut posts = Vec::with_capacity(numbers.len());
    for number in numbers {
        posts.extend(post_as_created(conn, author, number as u64)?);
    }
    Ok(posts)
}
