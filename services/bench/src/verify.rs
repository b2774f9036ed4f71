//! The after-the-run check that nothing acknowledged was lost: every follower's timeline is
//! re-read from where its live stream started, and every acknowledged post of every user it
//! follows must be there.

use crate::driver::{AckRecord, Routed, Router};
use crate::workload::Graph;
use futures_util::StreamExt;
use std::collections::{HashMap, HashSet};
use std::time::Duration;
use tinysns_client::live::{LiveTimeline, Patience};
use tinysns_client::resume::Event;

#[derive(Debug, Default)]
pub struct ReRead {
    pub checked_followers: u64,
    pub checked_pairs: u64,
    pub missing_pairs: u64,
    /// Acknowledged posts missing from at least one follower's timeline.
    pub lost: HashSet<u64>,
}

/// Reads `user`'s timeline after `cursor` until every post in `expected` was seen or nothing
/// new came for `idle`; returns what is still missing.
async fn read_until(
    router: &Router,
    user: u64,
    cursor: u64,
    mut expected: HashSet<u64>,
    idle: Duration,
) -> HashSet<u64> {
    let patience = Patience {
        retry_for: Duration::from_secs(120),
        ..crate::driver::PATIENCE
    };
    let mut timeline = LiveTimeline::new(Routed { router, user }, cursor, patience);
    loop {
        match tokio::time::timeout(idle, timeline.next()).await {
            Ok(Ok(Event::Post(post))) => {
                expected.remove(&post.post_id);
                if expected.is_empty() {
                    return expected;
                }
            }
            Ok(Ok(_)) => {}
            Ok(Err(status)) => {
                tracing::debug!(user, error = %status, "re-read: cannot open the timeline");
                return expected;
            }
            Err(_) => return expected,
        }
    }
}

pub async fn reread(
    router: &Router,
    graph: &Graph,
    acks: &[AckRecord],
    cursors: &HashMap<u64, u64>,
    idle: Duration,
    progress: &indicatif::ProgressBar,
) -> ReRead {
    let mut by_author: HashMap<u64, Vec<u64>> = HashMap::new();
    for a in acks.iter().filter(|a| a.ok) {
        by_author.entry(a.author).or_default().push(a.post_id);
    }
    let checks = (1..=graph.users).filter_map(|user| {
        let expected: HashSet<u64> = graph
            .followees_of(user)
            .iter()
            .filter_map(|t| by_author.get(t))
            .flatten()
            .copied()
            .collect();
        if expected.is_empty() {
            progress.inc(1);
            return None;
        }
        let cursor = cursors.get(&user).copied().unwrap_or(0);
        Some(async move {
            let pairs = expected.len() as u64;
            let missing = if cursor == 0 {
                expected
            } else {
                read_until(router, user, cursor, expected, idle).await
            };
            progress.inc(1);
            (pairs, missing)
        })
    });
    let mut results = futures_util::stream::iter(checks).buffer_unordered(16);
    let mut out = ReRead::default();
    while let Some((pairs, missing)) = results.next().await {
        out.checked_followers += 1;
        out.checked_pairs += pairs;
        out.missing_pairs += missing.len() as u64;
        out.lost.extend(missing);
    }
    out
}
