//! Topics as clients use them: subscribing (written at the subscriber's home cluster,
//! replicated everywhere, last writer wins), a topic's numbered history paged either way, and
//! the topics there are, by name or by activity in the last hour.

use crate::command::Command;
use crate::posts::Refusal;
use crate::social::{Caller, Social, answer};
use crate::store;
use tinysns_common::features::Feature;
use tinysns_common::limits::page_size;
use tinysns_common::proto::social::{
    HistoryReply, HistoryRequest, Reply, Status as Code, TopicPost, TopicRequest, TopicSummary, TopicsReply,
    TopicsRequest,
};
use tinysns_common::topics::{home_cluster, parse_topic};
use tonic::Status;

/// The window of "active" topics.
const ACTIVE_WINDOW_MS: i64 = 60 * 60 * 1000;

/// The hybrid clock stamp (`crate::clock`) of `ms` ago.
fn stamp_of_ms_ago(ms: i64) -> u64 {
    (tinysns_common::now_ms() - ms).max(0) as u64 * 1000
}

impl Social {
    /// The caller subscribes (`on`) to a topic or stops; idempotent.
    pub(crate) async fn subscribe(&self, caller: Caller, request: TopicRequest, on: bool) -> Result<Reply, Status> {
        let command = match parse_topic(&request.topic) {
            Ok(topic) => self.gated(
                Feature::Topics,
                Command::Subscribe {
                    user: caller.user,
                    topic,
                    on,
                },
            ),
            // Through the writer, so that a deposed master cannot answer it.
            Err(e) => Command::Refuse {
                status: Code::FailureInvalid,
                message: e.to_string(),
            },
        };
        Ok(answer(self.submit(command).await?))
    }

    /// A page of a topic's history by number, with the topic's counts; a topic nobody has
    /// posted to yet has an empty history.
    /// Read at the topic's home, which keeps every post of the topic.
    pub(crate) async fn history(&self, caller: Caller, request: HistoryRequest) -> Result<HistoryReply, Status> {
        let topic = match parse_topic(&request.topic) {
            Ok(topic) => topic,
            Err(e) => return Ok(refused_history((Code::FailureInvalid, e.to_string()))),
        };
        if let Some(home) = self.home_elsewhere(home_cluster(&topic, self.clusters())) {
            return self.peers.history(home, caller.user, request).await;
        }
        self.history_here(caller.user, request).await
    }

    /// [`Self::history`] of this cluster's store, for `viewer` (of any cluster).
    pub(crate) async fn history_here(&self, viewer: u64, request: HistoryRequest) -> Result<HistoryReply, Status> {
        let topic = match parse_topic(&request.topic) {
            Ok(topic) => topic,
            Err(e) => return Ok(refused_history((Code::FailureInvalid, e.to_string()))),
        };
        let (limit, from, forward) = (page_size(request.limit), request.from_seq, request.forward);
        let (rows, counts, subscribed) = self
            .read(move |c| {
                let rows = store::topic_history(c, &topic, from, forward, limit + 1)?
                    .into_iter()
                    .map(|(seq, created, ts_ms)| {
                        let post = store::with_counts(c, store::topic_post_view(&created, 0, ts_ms), viewer)?;
                        Ok(TopicPost {
                            topic: topic.clone(),
                            seq,
                            post: Some(post),
                        })
                    })
                    .collect::<Result<Vec<_>, store::StoreError>>()?;
                let counts = store::topic_counts(c, &topic)?;
                let subscribed = store::subscription_state(c, viewer, &topic)?.is_some_and(|(s, _)| s);
                Ok((rows, counts, subscribed))
            })
            .await?;
        let mut posts = rows;
        let next_seq = if posts.len() > limit {
            posts.pop().map_or(0, |p| p.seq)
        } else {
            0
        };
        let (last_seq, count) = counts.unwrap_or_default();
        Ok(HistoryReply {
            status: Code::Success as i32,
            message: String::new(),
            posts,
            next_seq,
            last_seq,
            count,
            subscribed,
        })
    }

    /// Topics by name (a page after `after`) or the most active of the last hour, and the
    /// caller's subscriptions.
    pub(crate) async fn topics(&self, caller: Caller, request: TopicsRequest) -> Result<TopicsReply, Status> {
        let (limit, viewer) = (page_size(request.limit), caller.user);
        let since = stamp_of_ms_ago(ACTIVE_WINDOW_MS);
        let after = request.after.trim().to_ascii_lowercase();
        let (found, subscriptions) = self
            .read(move |c| {
                let found = if request.active {
                    store::active_topics(c, limit, since)?
                } else {
                    store::topics_by_name(c, &after, limit, since)?
                };
                Ok((found, store::subscriptions(c, viewer)?))
            })
            .await?;
        Ok(TopicsReply {
            status: Code::Success as i32,
            message: String::new(),
            topics: found
                .into_iter()
                .map(|t| TopicSummary {
                    subscribed: subscriptions.contains(&t.topic),
                    topic: t.topic,
                    count: t.count,
                    last_seq: t.last_seq,
                    recent: t.recent,
                })
                .collect(),
            subscriptions,
        })
    }
}

fn refused_history((status, message): Refusal) -> HistoryReply {
    HistoryReply {
        status: status as i32,
        message,
        ..Default::default()
    }
}
