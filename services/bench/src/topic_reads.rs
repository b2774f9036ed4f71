//! Reads at scale (`--topic-posts`): a topic of a million posts and an inbox of many
//! conversations, preloaded into the topic's home (cluster 1, user 1's cluster) before the
//! system starts; timed on the quiet system through the client API, by a user of the home
//! (read locally) and by a user of another cluster (its cluster asks the home).

use crate::driver::Router;
use crate::stats::Summary;
use anyhow::{Result, bail};
use futures_util::StreamExt;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use std::time::{Duration, Instant};
use tinysns_common::proto::social::{HistoryRequest, InboxRequest, Status as Code};

/// Reads timed per figure, and how many run at once.
const READS: usize = 2000;
const CONCURRENCY: usize = 4;
/// The preloaded inbox: conversations and messages.
pub const CONVERSATIONS: u64 = 1000;
pub const MESSAGES: u64 = 100_000;

/// The preloaded topic: the first name numbered by cluster `home` of `clusters`.
pub fn topic_homed_in(home: u32, clusters: u32) -> String {
    (0..)
        .map(|i| format!("big{i}"))
        .find(|name| tinysns_common::topics::home_cluster(name, clusters) == home)
        .unwrap_or_default()
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct TopicReadsReport {
    pub topic_posts: u64,
    pub inbox_conversations: u64,
    pub inbox_messages: u64,
    /// A page of 20 from a random number, either way, read in the topic's home.
    pub history_at_home: Option<Summary>,
    /// The same, asked in another cluster (which asks the home).
    pub history_elsewhere: Option<Summary>,
    /// A page of 20 conversations from a random point of the inbox.
    pub inbox: Option<Summary>,
}

/// Times the reads: `home_user` lives in the topic's home, `other_user` elsewhere; the inbox
/// is `home_user`'s.
pub async fn measure(
    router: &Router,
    topic: &str,
    posts: u64,
    home_user: u64,
    other_user: u64,
    seed: u64,
) -> Result<TopicReadsReport> {
    let mut rng = StdRng::seed_from_u64(seed);
    let history = |rng: &mut StdRng| HistoryRequest {
        topic: topic.to_string(),
        from_seq: rng.random_range(1..=posts.max(1)),
        forward: rng.random_bool(0.5),
        limit: 20,
    };
    let at_home: Vec<HistoryRequest> = (0..READS).map(|_| history(&mut rng)).collect();
    let elsewhere: Vec<HistoryRequest> = (0..READS).map(|_| history(&mut rng)).collect();
    let starts = inbox_page_starts(router, home_user).await?;
    let inbox_pages: Vec<InboxRequest> = (0..READS)
        .map(|_| InboxRequest {
            before_stamp: starts[rng.random_range(0..starts.len())],
            limit: 20,
        })
        .collect();
    let read_history = |user: u64| {
        move |request: HistoryRequest| async move {
            let reply = router
                .call(user, |mut c| {
                    let request = request.clone();
                    async move { c.history(request).await }
                })
                .await?;
            check(reply.status, reply.posts.len(), &reply.message)
        }
    };
    let history_at_home = timed(at_home, read_history(home_user)).await?;
    let history_elsewhere = timed(elsewhere, read_history(other_user)).await?;
    let inbox = timed(inbox_pages, |request| async move {
        let reply = router
            .call(home_user, |mut c| async move { c.inbox(request).await })
            .await?;
        check(reply.status, 1, &reply.message)
    })
    .await?;
    Ok(TopicReadsReport {
        topic_posts: posts,
        inbox_conversations: CONVERSATIONS,
        inbox_messages: MESSAGES,
        history_at_home,
        history_elsewhere,
        inbox,
    })
}

/// Where each page of `user`'s inbox starts, read once through it (0: the first page).
async fn inbox_page_starts(router: &Router, user: u64) -> Result<Vec<u64>> {
    let mut starts = vec![0];
    loop {
        let request = InboxRequest {
            before_stamp: *starts.last().unwrap_or(&0),
            limit: 20,
        };
        let reply = router.call(user, |mut c| async move { c.inbox(request).await }).await?;
        check(reply.status, reply.conversations.len(), &reply.message)?;
        if reply.next_before_stamp == 0 {
            return Ok(starts);
        }
        starts.push(reply.next_before_stamp);
    }
}

/// A read answered with a page.
fn check(status: i32, rows: usize, message: &str) -> Result<()> {
    if status != Code::Success as i32 || rows == 0 {
        bail!("a read at scale failed or came back empty: {message}");
    }
    Ok(())
}

/// Runs `read` on each request, `CONCURRENCY` at once, and summarizes their latencies.
async fn timed<R, F, Fut>(requests: Vec<R>, read: F) -> Result<Option<Summary>>
where
    F: Fn(R) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let mut took: Vec<Duration> = Vec::with_capacity(requests.len());
    let mut reads = futures_util::stream::iter(requests)
        .map(|request| {
            let started = Instant::now();
            let done = read(request);
            async move { done.await.map(|()| started.elapsed()) }
        })
        .buffer_unordered(CONCURRENCY);
    while let Some(result) = reads.next().await {
        took.push(result?);
    }
    Ok(Summary::of(&mut took))
}
