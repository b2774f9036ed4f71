//! The topic sequencer: while this server is its cluster's master, it numbers the posts that
//! wait in topics whose home is this cluster (`tinysns_common::topics::home_cluster`).
//!
//! Every cluster keeps a post's topics waiting (`topic_pending`) until the number arrives; only
//! the topic's home gives one, through its single writer (`Command::SequenceTopic`), which
//! takes the topic's next number and writes a `TopicSequenced` that replicates and crosses to
//! every cluster. A number is given once (the writer checks the post still waits), so a new
//! master that reads the waiting posts again from the start gives no number twice, and since
//! only the home's writer gives them, each topic's sequence is gap-free and the same
//! everywhere.

use crate::command::{Command, Outcome};
use crate::reader::Reader;
use crate::store;
use crate::writer::Writer;
use std::time::Duration;
use tinysns_common::features::Feature;
use tinysns_common::membership::RoleHandle;
use tinysns_common::shutdown::Shutdown;
use tinysns_common::topics::home_cluster;

/// Waiting posts read per step.
const PAGE: usize = 256;

pub struct Sequencer {
    pub cluster: u32,
    pub writer: Writer,
    pub reader: Reader,
    pub role: RoleHandle,
    pub interval: Duration,
}

impl Sequencer {
    /// Numbers waiting posts every `interval` while master, until shutdown.
    pub async fn run(self, shutdown: Shutdown) {
        // Waiting posts up to here were numbered, or are other homes' to number.
        let mut after = 0i64;
        let mut term = None;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(self.interval) => {}
                _ = shutdown.wait() => return,
            }
            let view = self.role.current();
            if !view.is_master() || !view.has_lease() {
                term = None;
                continue;
            }
            // A member of an older release (joined while posts wait) could not carry numbers.
            if !Feature::Topics.enabled_at(view.assignment.system_feature_level) {
                continue;
            }
            if term != Some(view.term) {
                // A new reign reads everything waiting again.
                term = Some(view.term);
                after = 0;
            }
            match self.number_waiting(after, view.assignment.clusters).await {
                Ok(done) => after = done,
                Err(error) => tracing::warn!(%error, "cannot number topic posts yet"),
            }
        }
    }

    /// Numbers the waiting posts after `after` that are this cluster's to number; returns how
    /// far every waiting post is taken care of.
    async fn number_waiting(&self, mut after: i64, clusters: u32) -> Result<i64, SequencerError> {
        loop {
            let page = self
                .reader
                .with(move |c| store::pending_topic_posts(c, after, PAGE))
                .await?;
            let Some(last) = page.last().map(|p| p.id) else {
                return Ok(after);
            };
            let mine: Vec<_> = page
                .into_iter()
                .filter(|p| home_cluster(&p.topic, clusters) == self.cluster)
                .collect();
            // Submitted together, in log order: the writer takes them into one batch.
            let outcomes = futures_util::future::join_all(mine.iter().map(|p| {
                self.writer.submit(Command::SequenceTopic {
                    topic: p.topic.clone(),
                    author: p.author,
                    number: p.number,
                })
            }))
            .await;
            for (post, outcome) in mine.iter().zip(outcomes) {
                match outcome {
                    Ok(Outcome::Written(_) | Outcome::Unchanged(_)) => {}
                    Ok(Outcome::Rejected(status, message)) => {
                        tracing::warn!(topic = %post.topic, post.author, post.number, ?status, %message, "topic number refused");
                    }
                    // Not written: this post and what follows are read again next time.
                    Err(error) => {
                        tracing::debug!(%error, "numbering stopped");
                        return Ok(post.id - 1);
                    }
                }
            }
            after = last;
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum SequencerError {
    #[error(transparent)]
    Store(#[from] store::StoreError),
}
