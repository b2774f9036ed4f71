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

use crate::chores::Chore;
use crate::command::{Command, Outcome};
use crate::reader::Reader;
use crate::store;
use crate::writer::Writer;
use tinysns_common::features::Feature;
use tinysns_common::membership::RoleView;
use tinysns_common::topics::home_cluster;

/// Waiting posts read per step.
const PAGE: usize = 256;

pub struct Sequencer {
    pub cluster: u32,
    pub writer: Writer,
    pub reader: Reader,
    /// Waiting posts up to here were numbered, or are other homes' to number.
    pub after: i64,
}

impl Chore for Sequencer {
    const NAME: &'static str = "topic sequencer";
    const FEATURE: Feature = Feature::Topics;

    fn new_reign(&mut self) {
        self.after = 0;
    }

    async fn round(&mut self, view: &RoleView) -> Result<(), store::StoreError> {
        self.after = self.number_waiting(self.after, view.assignment.clusters).await?;
        Ok(())
    }
}

impl Sequencer {
    /// Numbers the waiting posts after `after` that are this cluster's to number; returns how
    /// far every waiting post is taken care of.
    async fn number_waiting(&self, mut after: i64, clusters: u32) -> Result<i64, store::StoreError> {
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
                        tracing::debug!(topic = %post.topic, post.author, post.number, ?status, %message, "not numbered");
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
