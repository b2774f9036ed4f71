//! The social mix beside the posts (`--mix`): every post names one of [`TOPICS`] topics
//! (`#t<n>`, numbered at the topic's home), every user subscribes to one topic at setup (its
//! posts arrive live on the timeline), and a side load likes and unlikes posts and sends
//! direct messages at a fixed rate while posts are measured.

use crate::driver::Router;
use anyhow::{Result, bail};
use futures_util::{StreamExt, TryStreamExt};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tinysns_common::auth::AuthMode;
use tinysns_common::proto::social::{PostRef, SendMessageRequest, Status as Code, TopicRequest};
use tinysns_stack::accounts::username_for;
use tokio::sync::watch;

/// Topics the posts are spread over.
pub const TOPICS: u64 = 32;

/// The topic a post names.
pub fn topic_of(post_id: u64) -> String {
    format!("t{}", post_id % TOPICS)
}

/// How a user is named to others.
fn name_of(user: u64, clusters: u32, auth: AuthMode) -> String {
    match auth {
        AuthMode::Open => user.to_string(),
        AuthMode::Password => username_for(user, clusters),
    }
}

/// Every user subscribes to topic `t<user % TOPICS>`.
pub async fn subscribe_all(router: &Router, users: u64) -> Result<()> {
    futures_util::stream::iter(1..=users)
        .map(|user| async move {
            let topic = TopicRequest {
                topic: format!("t{}", user % TOPICS),
            };
            let reply = router
                .call(user, |mut c| {
                    let topic = topic.clone();
                    async move { c.subscribe(topic).await }
                })
                .await?;
            if reply.status != Code::Success as i32 {
                bail!("user {user} cannot subscribe: {}", reply.message);
            }
            Ok(())
        })
        .buffer_unordered(32)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(())
}

/// What the side load did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SideLoadCounts {
    pub likes: u64,
    pub messages: u64,
    pub failed: u64,
}

/// The side load, running until [`SideLoad::stop`].
pub struct SideLoad {
    stop: watch::Sender<bool>,
    join: tokio::task::JoinHandle<SideLoadCounts>,
}

impl SideLoad {
    /// Every `1 / rate` s a random user likes (or unlikes) another's first post, and another
    /// sends a direct message to a random user.
    pub fn start(router: Arc<Router>, users: u64, clusters: u32, auth: AuthMode, rate: f64, seed: u64) -> Self {
        let (stop, mut stopped) = watch::channel(false);
        let join = tokio::spawn(async move {
            let counts = Arc::new([AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)]);
            let mut rng = StdRng::seed_from_u64(seed);
            // Message ids are unique per sender: a random base keeps reruns apart.
            let base = rng.random::<u64>() >> 8;
            let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate.max(0.1)));
            let mut n = 0u64;
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stopped.changed() => break,
                }
                n += 1;
                let (a, b) = (rng.random_range(1..=users), rng.random_range(1..=users));
                let (router, counts) = (router.clone(), counts.clone());
                let post = format!("{}/1", name_of(b, clusters, auth));
                let to = name_of(b, clusters, auth);
                tokio::spawn(async move {
                    let liked = router
                        .call(a, |mut c| {
                            let post = PostRef { post: post.clone() };
                            async move {
                                if n.is_multiple_of(2) {
                                    c.like(post).await
                                } else {
                                    c.unlike(post).await
                                }
                            }
                        })
                        .await;
                    let sent = router
                        .call(a, |mut c| {
                            let message = SendMessageRequest {
                                to: to.clone(),
                                text: format!("bench message {n}"),
                                message_id: base + n,
                            };
                            async move { c.send_message(message).await }
                        })
                        .await;
                    // A post not made yet, or a message to oneself, is a refusal, not a failure.
                    counts[0].fetch_add(u64::from(liked.is_ok()), Ordering::Relaxed);
                    counts[1].fetch_add(u64::from(sent.is_ok()), Ordering::Relaxed);
                    counts[2].fetch_add(u64::from(liked.is_err()) + u64::from(sent.is_err()), Ordering::Relaxed);
                });
            }
            SideLoadCounts {
                likes: counts[0].load(Ordering::Relaxed),
                messages: counts[1].load(Ordering::Relaxed),
                failed: counts[2].load(Ordering::Relaxed),
            }
        });
        Self { stop, join }
    }

    pub async fn stop(self) -> SideLoadCounts {
        let _ = self.stop.send(true);
        self.join.await.unwrap_or_default()
    }
}
