//! Fills a cluster's stores with many entries before it starts, for figures at scale (the
//! benchmark's catch-up phase): one account of this cluster and its posts, written through
//! the tsd's own store code, committed and compacted as a long-running master would have
//! left them. Every replica gets a copy, each with an identity of its own.

use crate::topology::{StackError, Topology};
use std::path::Path;
use tinysns_common::proto::internal::{
    Change, DirectMessage, LogEntry, PostCreated, SyncCursor, TopicSequenced, UserCreated, change, log_entry,
};
use tinysns_tsd::store::{self, compaction, snapshot};

/// Entries written per transaction.
const BATCH: u64 = 20_000;

/// The preloaded account (an id far above the benchmark's users).
pub const PRELOAD_AUTHOR: u64 = 1 << 40;

#[derive(Debug, thiserror::Error)]
pub enum PreloadError {
    #[error("store: {0}")]
    Store(#[from] store::StoreError),
    #[error(transparent)]
    Stack(#[from] StackError),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

fn entry(cluster: u32, lsn: u64, now_ms: i64, change: change::Kind) -> LogEntry {
    // Spread over the last `lsn` milliseconds, oldest first.
    let timestamp_ms = now_ms - 1_000_000_000 + lsn as i64;
    LogEntry {
        lsn,
        term: 1,
        timestamp_ms,
        origin_cluster: cluster,
        origin_lsn: lsn,
        kind: Some(log_entry::Kind::Change(Change { kind: Some(change) })),
        hlc: timestamp_ms as u64 * 1000,
    }
}

/// Writes `entries` entries (an account, then its posts of about 200 bytes) into every
/// replica of `cluster` of the prepared, not yet started, `topology`, committed and published
/// (a sync cursor at the end), with the log compacted down to its last `retain` entries.
pub fn preload(topology: &Topology, cluster: u32, entries: u64, retain: u64) -> Result<(), PreloadError> {
    write_entries(topology, cluster, entries, retain, |lsn, _| {
        if lsn == 1 {
            preloaded_account()
        } else {
            preloaded_post(lsn - 1, Vec::new())
        }
    })
}

/// A topic and a user's inbox at scale, in every replica of `cluster` (the topic's home) of
/// the prepared `topology`: `posts` posts of the preloaded account in `topic`, numbered
/// 1..=`posts` as the home numbers them, and `messages` direct messages to user `recipient`
/// from `conversations` other (preloaded) users.
pub fn preload_topic(
    topology: &Topology,
    cluster: u32,
    topic: &str,
    posts: u64,
    (recipient, conversations, messages): (u64, u64, u64),
    retain: u64,
) -> Result<(), PreloadError> {
    let entries = 1 + 2 * posts + messages;
    write_entries(topology, cluster, entries, retain, |lsn, stamp| match lsn {
        1 => preloaded_account(),
        // A post, then its number in the topic.
        lsn if lsn <= 1 + 2 * posts && lsn % 2 == 0 => preloaded_post(lsn / 2, vec![topic.to_string()]),
        lsn if lsn <= 1 + 2 * posts => {
            let number = lsn / 2;
            let post = match preloaded_post(number, Vec::new()) {
                change::Kind::Post(post) => post,
                _ => unreachable!("a preloaded post"),
            };
            change::Kind::TopicSequenced(TopicSequenced {
                topic: topic.to_string(),
                seq: number,
                post: Some(post),
                post_hlc: stamp(lsn - 1),
                numbering_only: false,
            })
        }
        lsn => {
            let k = lsn - 1 - 2 * posts;
            change::Kind::DirectMessage(DirectMessage {
                sender: PRELOAD_AUTHOR + 1 + k % conversations.max(1),
                recipient,
                message_id: k,
                text: format!("preloaded message {k:>10} {}", "x".repeat(80)),
                sender_name: String::new(),
            })
        }
    })
}

fn preloaded_account() -> change::Kind {
    change::Kind::User(UserCreated {
        user_id: PRELOAD_AUTHOR,
        username: "preloaded".into(),
    })
}

/// The preloaded account's post `number` (of about 200 bytes).
fn preloaded_post(number: u64, topics: Vec<String>) -> change::Kind {
    change::Kind::Post(PostCreated {
        author: PRELOAD_AUTHOR,
        post_id: number + 1,
        text: format!("preloaded post {:>10} {}", number + 1, "x".repeat(170)),
        author_name: "preloaded".into(),
        number,
        topics,
        ..Default::default()
    })
}

/// Writes `entries` entries made by `change(lsn, stamp)` (`stamp(lsn)`: an entry's clock
/// stamp) after what the first replica of `cluster` holds, commits and publishes them (a
/// sync cursor at the end), compacts the log down to its last `retain` entries, and copies
/// the store to the cluster's other replicas.
fn write_entries(
    topology: &Topology,
    cluster: u32,
    entries: u64,
    retain: u64,
    mut change: impl FnMut(u64, &dyn Fn(u64) -> u64) -> change::Kind,
) -> Result<(), PreloadError> {
    let first = topology.server_data_dir(cluster, 1);
    let mut conn = store::open(&first)?;
    let now_ms = tinysns_common::now_ms();
    let stamp = |lsn: u64| entry(cluster, lsn, now_ms, preloaded_account()).hlc;
    let mut lsn = store::last_lsn(&conn)?;
    let end = lsn + entries;
    while lsn < end {
        let tx = store::write_transaction(&mut conn)?;
        for _ in 0..BATCH.min(end - lsn) {
            lsn += 1;
            store::append(&tx, &entry(cluster, lsn, now_ms, change(lsn, &stamp)))?;
        }
        tx.commit().map_err(store::StoreError::from)?;
    }
    // As a long-running cluster's synchronizer would have: everything published.
    let tx = store::write_transaction(&mut conn)?;
    let cursor = LogEntry {
        kind: Some(log_entry::Kind::SyncCursor(SyncCursor { lsn: end })),
        ..entry(cluster, end + 1, now_ms, change::Kind::User(UserCreated::default()))
    };
    store::append(&tx, &cursor)?;
    let end = end + 1;
    store::record_commit_point(&tx, end)?;
    compaction::compact(&tx, compaction::horizon(end, None, retain), u64::MAX)?;
    tx.commit().map_err(store::StoreError::from)?;
    drop(conn);
    for server in 2..=topology.servers_per_cluster() {
        copy_store(&first, &topology.server_data_dir(cluster, server))?;
    }
    Ok(())
}

/// How long the first replica of `cluster` (preloaded) takes to drop a suffix of `suffix`
/// entries written after its commit point, as a deposed master does: measured on a copy,
/// which is removed afterwards.
pub fn time_truncation(topology: &Topology, cluster: u32, suffix: u64) -> Result<std::time::Duration, PreloadError> {
    let scratch = topology.options.dir.join("truncation-scratch");
    let _ = std::fs::remove_dir_all(&scratch);
    copy_store(&topology.server_data_dir(cluster, 1), &scratch)?;
    let mut conn = store::open(&scratch)?;
    let keep = store::last_lsn(&conn)?;
    let now_ms = tinysns_common::now_ms();
    let tx = store::write_transaction(&mut conn)?;
    for lsn in keep + 1..=keep + suffix {
        let post = change::Kind::Post(PostCreated {
            author: PRELOAD_AUTHOR,
            post_id: lsn,
            text: format!("unreplicated post {lsn}"),
            author_name: "preloaded".into(),
            number: lsn,
            ..Default::default()
        });
        store::append(&tx, &entry(cluster, lsn, now_ms, post))?;
    }
    tx.commit().map_err(store::StoreError::from)?;
    let started = std::time::Instant::now();
    store::truncate_after(&mut conn, keep)?;
    let took = started.elapsed();
    drop(conn);
    std::fs::remove_dir_all(&scratch)?;
    Ok(took)
}

/// A copy of the store in `from` as the store in `to`, without `from`'s identity.
fn copy_store(from: &Path, to: &Path) -> Result<(), PreloadError> {
    std::fs::create_dir_all(to)?;
    let target = to.join("tsd.db");
    if target.exists() {
        std::fs::remove_file(&target)?;
    }
    snapshot::create(&store::open(from)?, &target)?;
    store::open(to)?
        .execute("DELETE FROM replica WHERE key != 'committed'", [])
        .map_err(store::StoreError::from)?;
    Ok(())
}
