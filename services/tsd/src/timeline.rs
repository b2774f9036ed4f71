//! The timeline stream: history (or what was missed), then live posts of the users the
//! caller follows; every post the client sends on the stream is stored under the caller's
//! name and acknowledged.

use crate::clock;
use crate::fanout::{self, Following, Handback, Subscription};
use crate::presence::TimelineSlot;
use crate::social::{Caller, Social};
use crate::store;
use std::net::SocketAddr;
use tinysns_common::proto::internal::{LogEntry, change, log_entry, room_change};
use tinysns_common::proto::social::{
    DirectMessageView, LikeEvent, NewPost, Post, PostAck, PostName, RoomMessageView, Status as Code, TimelineEvent,
    TimelineOpen, TimelineRequest, TopicPost, UserRef, timeline_event, timeline_request,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Status, Streaming};

/// Posts shown when a timeline opens.
pub const HISTORY: usize = 20;
/// Posts read per query when a resumed timeline catches up past the log's compacted front.
const COMPACTED_PAGE: usize = 512;

impl Social {
    /// Starts the caller's timeline on the stream whose first message is `open`.
    pub(crate) async fn open_timeline(
        &self,
        caller: Caller,
        connection: Option<SocketAddr>,
        mut inbound: Streaming<TimelineRequest>,
    ) -> Result<ReceiverStream<Result<TimelineEvent, Status>>, Status> {
        let slot = self
            .presence
            .open_timeline(caller.user, connection)
            .map_err(|e| Status::resource_exhausted(e.to_string()))?;
        let open = match inbound.message().await?.and_then(|m| m.kind) {
            Some(timeline_request::Kind::Open(open)) => open,
            _ => return Err(Status::invalid_argument("the first timeline message must be `open`")),
        };
        let (tx, rx) = mpsc::channel(256);
        tokio::spawn(self.clone().deliver(caller.user, open, tx.clone(), slot));
        tokio::spawn(self.clone().accept_posts(caller, inbound, tx));
        Ok(ReceiverStream::new(rx))
    }
}

type Events = mpsc::Sender<Result<TimelineEvent, Status>>;

/// What a timeline shows of an entry routed to it: a post, a post in a subscribed topic, a
/// direct message, a like of one of the user's posts, a message in one of the user's rooms,
/// or the closing of one.
fn shown(entry: &LogEntry) -> Option<timeline_event::Kind> {
    let Some(log_entry::Kind::Change(c)) = &entry.kind else {
        return None;
    };
    match c.kind.as_ref()? {
        change::Kind::Post(p) => Some(timeline_event::Kind::Post(Post {
            author: p.author,
            post_id: p.post_id,
            text: p.text.clone(),
            timestamp_ms: entry.timestamp_ms,
            seq: entry.lsn,
            author_name: p.author_name.clone(),
            number: p.number,
            likes: 0,
            liked: false,
            // (The live path names the replied-to author by id only.)
            reply_to: (p.reply_to_number > 0).then(|| PostName {
                author: p.reply_to_author,
                author_name: String::new(),
                number: p.reply_to_number,
            }),
            replies: 0,
        })),
        change::Kind::TopicSequenced(t) => t.post.as_ref().filter(|_| !t.numbering_only).map(|p| {
            timeline_event::Kind::TopicPost(TopicPost {
                topic: t.topic.clone(),
                seq: t.seq,
                post: Some(Post {
                    author: p.author,
                    post_id: p.post_id,
                    text: p.text.clone(),
                    // When it was posted (its stamp's wall-clock part).
                    timestamp_ms: (t.post_hlc / 1000).min(i64::MAX as u64) as i64,
                    author_name: p.author_name.clone(),
                    number: p.number,
                    ..Default::default()
                }),
            })
        }),
        change::Kind::DirectMessage(m) => Some(timeline_event::Kind::DirectMessage(DirectMessageView {
            sender: Some(UserRef {
                id: m.sender,
                username: m.sender_name.clone(),
            }),
            // (The stream's own user.)
            recipient: Some(UserRef {
                id: m.recipient,
                username: String::new(),
            }),
            text: m.text.clone(),
            timestamp_ms: entry.timestamp_ms,
            stamp: clock::stamp(entry),
            message_id: m.message_id,
            seq: entry.lsn,
        })),
        change::Kind::Like(l) => Some(timeline_event::Kind::Like(LikeEvent {
            post: Some(PostName {
                author: l.post_author,
                author_name: String::new(),
                number: l.post_number,
            }),
            liker: Some(UserRef {
                id: l.liker,
                username: l.liker_name.clone(),
            }),
            liked: l.liked,
            seq: entry.lsn,
        })),
        change::Kind::Room(r) => match r.kind.as_ref()? {
            room_change::Kind::Message(m) => Some(timeline_event::Kind::RoomMessage(RoomMessageView {
                room: m.room.clone(),
                seq: m.seq,
                sender: Some(UserRef {
                    id: m.sender,
                    username: m.sender_name.clone(),
                }),
                text: m.text.clone(),
                timestamp_ms: entry.timestamp_ms,
                message_id: m.message_id,
                cursor: entry.lsn,
            })),
            room_change::Kind::Deleted(d) => Some(timeline_event::Kind::RoomClosed(d.room.clone())),
            _ => None,
        },
        _ => None,
    }
}

fn event(kind: timeline_event::Kind) -> Result<TimelineEvent, Status> {
    Ok(TimelineEvent { kind: Some(kind) })
}

/// Where a resumed timeline continues.
#[derive(Debug, PartialEq, Eq)]
enum ResumeFrom {
    /// Just after this log position.
    After(u64),
    /// Just after this log position, once it is committed here.
    WaitFor(u64),
}

/// Where a timeline resumed after `resume_after` (the last position the client saw) continues,
/// given this master's commit point and the end of its log. The client saw only committed
/// entries, and committed entries are never truncated; a restarted master re-confirms the
/// end of its log before it counts it as committed, so a position past the commit point but
/// within the log is waited for, never sent again. A position past the whole log is not one
/// this cluster gave out: the stream continues from the commit point.
fn resume_from(resume_after: u64, committed: u64, last: u64) -> ResumeFrom {
    if resume_after <= committed {
        ResumeFrom::After(resume_after)
    } else if resume_after <= last {
        ResumeFrom::WaitFor(resume_after)
    } else {
        ResumeFrom::After(committed)
    }
}

impl Social {
    /// Streams the timeline: history (or what was missed), then live posts, until the client
    /// goes away or this server stops being master.
    /// `slot` counts the open timeline until the stream ends.
    async fn deliver(self, user: u64, open: TimelineOpen, tx: Events, slot: TimelineSlot) {
        if let Err(status) = self.try_deliver(user, open, &tx).await {
            let _ = tx.send(Err(status)).await;
        }
        drop(slot);
    }

    async fn try_deliver(&self, user: u64, open: TimelineOpen, tx: &Events) -> Result<(), Status> {
        self.fenced()?;
        let committed = self.feed.committed();
        let start = if open.resume_after == 0 {
            let history = self.read(move |c| store::timeline(c, user, committed, HISTORY)).await?;
            for post in history {
                if tx.send(event(timeline_event::Kind::Post(post))).await.is_err() {
                    return Ok(());
                }
            }
            ResumeFrom::After(committed)
        } else {
            let last = if open.resume_after > committed {
                self.read(store::last_lsn).await?
            } else {
                committed
            };
            resume_from(open.resume_after, committed, last)
        };
        let cursor = match start {
            ResumeFrom::After(cursor) | ResumeFrom::WaitFor(cursor) => cursor,
        };
        if tx.send(event(timeline_event::Kind::LiveFrom(cursor))).await.is_err() {
            return Ok(());
        }
        if start == ResumeFrom::WaitFor(cursor) && !self.committed_through(cursor, tx).await? {
            return Ok(());
        }
        let following = self
            .read(move |c| {
                Ok(Following {
                    users: store::following(c, user)?.into_iter().collect(),
                    topics: store::subscriptions(c, user)?.into_iter().collect(),
                    rooms: store::room_names_of(c, user)?.into_iter().collect(),
                    own: false,
                    likes: open.likes,
                })
            })
            .await?;
        let following = match open.own_posts {
            true => following.with_own_posts(user),
            false => following,
        };
        let mut place = Handback {
            after: cursor,
            following,
        };
        // Read the log on our own until the fan-out can take over; back to reading on our own
        // whenever it lets go (we fell behind).
        loop {
            match self.fanout.join(user, place.after, &place.following) {
                Some(subscription) => match self.served(subscription, tx).await? {
                    Some(handback) => place = handback,
                    None => return Ok(()),
                },
                None => {
                    if !self.read_on(user, &mut place, tx).await? {
                        return Ok(());
                    }
                }
            }
        }
    }

    /// Waits until this master has committed its log through `lsn`. False when the client
    /// went away.
    async fn committed_through(&self, lsn: u64, tx: &Events) -> Result<bool, Status> {
        let mut role = self.role.clone();
        loop {
            tokio::select! {
                _ = self.feed.committed_through(lsn) => return Ok(true),
                _ = role.changed() => { self.fenced()?; }
                _ = tx.closed() => return Ok(false),
            }
        }
    }

    /// Shows what the fan-out routes to this timeline. `None` when the client went away,
    /// else where to continue on our own.
    async fn served(&self, mut subscription: Subscription, tx: &Events) -> Result<Option<Handback>, Status> {
        let mut role = self.role.clone();
        loop {
            let entry = tokio::select! {
                routed = subscription.next() => match routed {
                    Ok(entry) => entry,
                    Err(Some(handback)) => return Ok(Some(handback)),
                    Err(None) => return Err(Status::unavailable("the timeline lost its place; open it again to resume")),
                },
                _ = role.changed() => { self.fenced()?; continue; }
                _ = tx.closed() => return Ok(None),
            };
            // A master that has just learned of a newer term (from its new master's first
            // Append), or lost its lease, stops streaming at once: its log may be rewritten.
            self.fenced()?;
            if let Some(shown) = shown(&entry)
                && tx.send(event(shown)).await.is_err()
            {
                return Ok(None);
            }
        }
    }

    /// Reads one stretch of the log after `place` on our own, showing what the user follows
    /// and moving `place` on. False when the client went away.
    async fn read_on(&self, user: u64, place: &mut Handback, tx: &Events) -> Result<bool, Status> {
        let mut tail = self.feed.tail(self.reader.clone(), place.after);
        let mut role = self.role.clone();
        let entries = loop {
            tokio::select! {
                entries = tail.next() => match entries {
                    Ok(entries) => break entries,
                    Err(store::StoreError::Compacted { start, .. }) => {
                        return self.read_compacted(user, place, start, tx).await;
                    }
                    Err(e) => return Err(Status::internal(e.to_string())),
                },
                _ = role.changed() => { self.fenced()?; }
                _ = tx.closed() => return Ok(false),
            }
        };
        self.fenced()?;
        for entry in entries {
            if fanout::step(&mut place.following, user, &entry)
                && let Some(shown) = shown(&entry)
                && tx.send(event(shown)).await.is_err()
            {
                return Ok(false);
            }
        }
        // Where the tail is, also when it skipped back over a rewound log.
        place.after = tail.cursor();
        Ok(true)
    }

    /// What the user missed in a stretch of the log that was compacted (up to `start`): the
    /// posts of the users they follow, from the posts table by log position, a page at a time,
    /// moving `place` on. False when the client went away.
    async fn read_compacted(&self, user: u64, place: &mut Handback, start: u64, tx: &Events) -> Result<bool, Status> {
        let after = place.after;
        let posts = self
            .read(move |c| store::timeline_between(c, user, after, start, COMPACTED_PAGE))
            .await?;
        self.fenced()?;
        place.after = match posts.last() {
            Some(last) if posts.len() == COMPACTED_PAGE => last.seq,
            _ => start,
        };
        for post in posts {
            if tx.send(event(timeline_event::Kind::Post(post))).await.is_err() {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Stores the posts the client sends on its timeline stream, acknowledging each.
    async fn accept_posts(self, caller: Caller, mut inbound: Streaming<TimelineRequest>, tx: Events) {
        let user = caller.user;
        loop {
            let message = match inbound.message().await {
                Ok(Some(m)) => m,
                Ok(None) => return,
                Err(status) => {
                    tracing::debug!(user, error = %status, "timeline stream ended");
                    return;
                }
            };
            let Some(timeline_request::Kind::Post(NewPost { post_id, text })) = message.kind else {
                let ack = PostAck {
                    post_id: 0,
                    status: Code::FailureInvalid as i32,
                    message: "expected a post".into(),
                };
                if tx.send(event(timeline_event::Kind::Ack(ack))).await.is_err() {
                    return;
                }
                continue;
            };
            let post_id = if post_id == 0 {
                rand::random::<u64>() >> 1
            } else {
                post_id
            };
            let ack = match self.store_post(&caller, post_id, text, None, &[]).await {
                Ok((status, message)) => PostAck {
                    post_id,
                    status: status as i32,
                    message,
                },
                Err(status) => {
                    let _ = tx.send(Err(status)).await;
                    return;
                }
            };
            if tx.send(event(timeline_event::Kind::Ack(ack))).await.is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{ResumeFrom, resume_from};

    #[test]
    fn a_client_resumes_just_after_what_it_saw() {
        assert_eq!(resume_from(7, 10, 12), ResumeFrom::After(7));
        assert_eq!(resume_from(10, 10, 10), ResumeFrom::After(10));
    }

    #[test]
    fn what_it_saw_past_a_restarted_masters_commit_point_is_waited_for_not_sent_again() {
        // A restart stored the commit point at 10; the client had seen up to 12.
        assert_eq!(resume_from(12, 10, 15), ResumeFrom::WaitFor(12));
        assert_eq!(resume_from(15, 10, 15), ResumeFrom::WaitFor(15));
    }

    #[test]
    fn a_position_this_log_never_held_continues_from_the_commit_point() {
        assert_eq!(resume_from(16, 10, 15), ResumeFrom::After(10));
        assert_eq!(resume_from(u64::MAX, 0, 0), ResumeFrom::After(0));
    }
}
