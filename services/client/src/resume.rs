//! What a resumable timeline means, apart from how it is carried: where the next stream
//! resumes, what was shown already (so a resumed stream shows nothing twice), and which posts
//! wait for their acknowledgement (re-sent under the same ids on the next stream, so each is
//! stored once).
//!
//! The server resumes a stream just after the log position the client names, so live posts
//! and messages never come twice. Two things can: the history (sent again when a stream
//! breaks before it went live) and topic posts (which carry their topic's number, not a log
//! position). Both are remembered in bounded sets.

use std::collections::{HashSet, VecDeque};
use std::hash::Hash;
use tinysns_common::proto::social::{
    DirectMessageView, LikeEvent, NewPost, Post, PostAck, RoomMessageView, TimelineEvent, TimelineOpen,
    TimelineRequest, TopicPost, timeline_event, timeline_request,
};

/// How many shown items of each kind are remembered for spotting repeats; far more than a
/// history page, and more than a resumed stream can repeat.
pub const REMEMBERED: usize = 4096;
/// Posts that may wait for their acknowledgement at once, per timeline.
pub const MAX_UNACKED: usize = 1024;

/// What a timeline shows, once each.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A post of a followed user, from the history or live.
    Post(Post),
    /// A direct message to or from the user.
    DirectMessage(DirectMessageView),
    /// A post in a subscribed topic.
    TopicPost(TopicPost),
    /// A message in one of the user's rooms (its own too).
    RoomMessage(RoomMessageView),
    /// One of the user's rooms was deleted (its name).
    RoomClosed(String),
    /// Someone liked one of the user's posts, or stopped (timelines that asked for likes).
    Like(LikeEvent),
    /// The answer to one of the user's own posts sent on the timeline.
    Ack(PostAck),
    /// The history is over; what follows is live, after log position `from`. `resumed`:
    /// this stream replaced one that broke (a failover), and nothing was missed.
    Live { from: u64, resumed: bool },
    /// The stream broke; the timeline is reconnecting (and will say `Live` again).
    Reconnecting { error: String },
}

/// A set that remembers only its newest [`REMEMBERED`] members.
#[derive(Debug)]
struct Recent<K> {
    members: HashSet<K>,
    order: VecDeque<K>,
}

impl<K: Hash + Eq + Clone> Recent<K> {
    fn new() -> Self {
        Self {
            members: HashSet::new(),
            order: VecDeque::new(),
        }
    }

    /// True when `key` is new.
    fn insert(&mut self, key: K) -> bool {
        if !self.members.insert(key.clone()) {
            return false;
        }
        self.order.push_back(key);
        if self.order.len() > REMEMBERED
            && let Some(oldest) = self.order.pop_front()
        {
            self.members.remove(&oldest);
        }
        true
    }
}

/// The state a timeline carries from one stream to the next.
#[derive(Debug)]
pub struct Resume {
    /// The last log position shown live (0: none yet; the next stream starts with history).
    cursor: u64,
    /// Whether the current stream has gone live (positions before that are history's).
    live: bool,
    /// Whether any stream has gone live: the next one is a resumption.
    went_live: bool,
    /// The user's own new posts show too (a non-classic client).
    own_posts: bool,
    /// Likes of the user's posts show too (a non-classic client).
    likes: bool,
    liked: Recent<u64>,
    /// Ids of the posts sent on this timeline: with `own_posts`, the server shows them back,
    /// and only the user's posts from elsewhere (another device) are new here.
    sent: Recent<u64>,
    posts: Recent<(u64, u64)>,
    messages: Recent<(u64, u64)>,
    topic_posts: Recent<(String, u64)>,
    room_messages: Recent<(String, u64)>,
    rooms_closed: Recent<String>,
    unacked: VecDeque<NewPost>,
    /// Live posts and messages the server sent again (hidden here; a correct server sends
    /// none, and the fault suite's checker counts them).
    repeats: u64,
}

/// Too many posts wait for their acknowledgement.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("{MAX_UNACKED} posts are waiting to be acknowledged; wait for them")]
pub struct Backlog;

impl Resume {
    /// `resume_after`: the last log position the user saw (0: start with the history).
    pub fn new(resume_after: u64) -> Self {
        Self {
            cursor: resume_after,
            live: false,
            went_live: resume_after > 0,
            own_posts: false,
            likes: false,
            liked: Recent::new(),
            sent: Recent::new(),
            posts: Recent::new(),
            messages: Recent::new(),
            topic_posts: Recent::new(),
            room_messages: Recent::new(),
            rooms_closed: Recent::new(),
            unacked: VecDeque::new(),
            repeats: 0,
        }
    }

    /// The user's own new posts show too (from other devices): for clients that are not
    /// the classic one.
    pub fn show_own_posts(&mut self) {
        self.own_posts = true;
    }

    /// Likes of the user's posts show too: for clients that are not the classic one.
    pub fn show_likes(&mut self) {
        self.likes = true;
    }

    /// How many live posts and messages the server sent again (each shown once anyway).
    pub fn repeats(&self) -> u64 {
        self.repeats
    }

    /// Where the timeline is: the last log position shown live.
    pub fn cursor(&self) -> u64 {
        self.cursor
    }

    /// How many posts wait for their acknowledgement.
    pub fn unacked(&self) -> usize {
        self.unacked.len()
    }

    /// What opens the next stream: the open request, then every unacknowledged post again,
    /// in the order they were first sent.
    pub fn opening(&mut self) -> Vec<TimelineRequest> {
        self.live = false;
        let open = TimelineRequest {
            kind: Some(timeline_request::Kind::Open(TimelineOpen {
                resume_after: self.cursor,
                own_posts: self.own_posts,
                likes: self.likes,
            })),
        };
        std::iter::once(open)
            .chain(self.unacked.iter().cloned().map(post_request))
            .collect()
    }

    /// Notes a post the user sends; what to send on the stream.
    pub fn send(&mut self, post_id: u64, text: String) -> Result<TimelineRequest, Backlog> {
        if self.unacked.len() >= MAX_UNACKED {
            return Err(Backlog);
        }
        let post = NewPost { post_id, text };
        self.sent.insert(post_id);
        self.unacked.push_back(post.clone());
        Ok(post_request(post))
    }

    /// What an event from the server shows, if anything (None: a repeat, or bookkeeping).
    pub fn receive(&mut self, event: TimelineEvent) -> Option<Event> {
        match event.kind? {
            timeline_event::Kind::Post(post) => {
                self.advance(post.seq);
                if self.own_posts && self.sent.members.contains(&post.post_id) {
                    return None;
                }
                let new = self.posts.insert((post.author, post.post_id));
                self.count_repeat(new);
                new.then_some(Event::Post(post))
            }
            timeline_event::Kind::DirectMessage(message) => {
                self.advance(message.seq);
                let sender = message.sender.as_ref().map_or(0, |u| u.id);
                let new = self.messages.insert((sender, message.message_id));
                self.count_repeat(new);
                new.then_some(Event::DirectMessage(message))
            }
            timeline_event::Kind::TopicPost(post) => self
                .topic_posts
                .insert((post.topic.clone(), post.seq))
                .then_some(Event::TopicPost(post)),
            timeline_event::Kind::RoomMessage(message) => {
                self.advance(message.cursor);
                let new = self.room_messages.insert((message.room.clone(), message.seq));
                self.count_repeat(new);
                new.then_some(Event::RoomMessage(message))
            }
            timeline_event::Kind::Like(like) => {
                self.advance(like.seq);
                let new = self.liked.insert(like.seq);
                self.count_repeat(new);
                new.then_some(Event::Like(like))
            }
            // (It carries no log position: a stream resumed before it may send it again.)
            timeline_event::Kind::RoomClosed(room) => self
                .rooms_closed
                .insert(room.clone())
                .then_some(Event::RoomClosed(room)),
            timeline_event::Kind::LiveFrom(from) => {
                self.cursor = self.cursor.max(from);
                self.live = true;
                let resumed = std::mem::replace(&mut self.went_live, true);
                Some(Event::Live { from, resumed })
            }
            timeline_event::Kind::Ack(ack) => {
                let index = self.unacked.iter().position(|p| p.post_id == ack.post_id)?;
                self.unacked.remove(index);
                Some(Event::Ack(ack))
            }
        }
    }

    /// History may come again after a break; a live entry must not.
    fn count_repeat(&mut self, new: bool) {
        if !new && self.live {
            self.repeats += 1;
        }
    }

    /// A live entry at log position `seq` was shown.
    fn advance(&mut self, seq: u64) {
        if self.live {
            self.cursor = self.cursor.max(seq);
        }
    }
}

fn post_request(post: NewPost) -> TimelineRequest {
    TimelineRequest {
        kind: Some(timeline_request::Kind::Post(post)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tinysns_common::proto::social::{Status as Code, UserRef};

    fn post(author: u64, post_id: u64, seq: u64) -> TimelineEvent {
        TimelineEvent {
            kind: Some(timeline_event::Kind::Post(Post {
                author,
                post_id,
                seq,
                ..Default::default()
            })),
        }
    }

    fn live(from: u64) -> TimelineEvent {
        TimelineEvent {
            kind: Some(timeline_event::Kind::LiveFrom(from)),
        }
    }

    fn ack(post_id: u64) -> TimelineEvent {
        TimelineEvent {
            kind: Some(timeline_event::Kind::Ack(PostAck {
                post_id,
                status: Code::Success as i32,
                ..Default::default()
            })),
        }
    }

    fn resume_after(requests: &[TimelineRequest]) -> Option<u64> {
        match requests.first()?.kind.as_ref()? {
            timeline_request::Kind::Open(open) => Some(open.resume_after),
            timeline_request::Kind::Post(_) => None,
        }
    }

    fn posts_in(requests: &[TimelineRequest]) -> Vec<u64> {
        requests
            .iter()
            .filter_map(|r| match r.kind.as_ref()? {
                timeline_request::Kind::Post(p) => Some(p.post_id),
                timeline_request::Kind::Open(_) => None,
            })
            .collect()
    }

    #[test]
    fn a_stream_that_broke_in_its_history_shows_the_history_once() {
        let mut state = Resume::new(0);
        assert_eq!(resume_after(&state.opening()), Some(0));
        assert!(state.receive(post(7, 1, 40)).is_some());
        // Broken before going live: the next stream starts with the history again.
        assert_eq!(
            resume_after(&state.opening()),
            Some(0),
            "history positions are not a cursor"
        );
        assert_eq!(state.receive(post(7, 1, 40)), None, "shown once");
        assert!(state.receive(post(7, 2, 41)).is_some());
        assert_eq!(
            state.receive(live(50)),
            Some(Event::Live {
                from: 50,
                resumed: false
            })
        );
        assert_eq!(state.repeats(), 0, "history sent again is no fault");
        assert!(state.receive(post(7, 3, 51)).is_some());
        assert_eq!(state.receive(post(7, 3, 51)), None);
        assert_eq!(state.repeats(), 1, "a live post sent twice is counted");
    }

    #[test]
    fn a_resumed_stream_continues_after_the_last_live_position_shown() {
        let mut state = Resume::new(0);
        state.opening();
        state.receive(live(50));
        assert!(state.receive(post(7, 3, 52)).is_some());
        assert!(state.receive(post(8, 1, 55)).is_some());
        assert_eq!(state.cursor(), 55);
        assert_eq!(resume_after(&state.opening()), Some(55));
        assert_eq!(
            state.receive(live(55)),
            Some(Event::Live {
                from: 55,
                resumed: true
            })
        );
        // A server whose commit point lags names an earlier position: the cursor stays.
        state.opening();
        state.receive(live(53));
        assert_eq!(state.cursor(), 55);
    }

    #[test]
    fn a_timeline_opened_at_a_position_counts_as_resumed() {
        let mut state = Resume::new(90);
        assert_eq!(resume_after(&state.opening()), Some(90));
        assert_eq!(
            state.receive(live(90)),
            Some(Event::Live {
                from: 90,
                resumed: true
            })
        );
    }

    #[test]
    fn unacknowledged_posts_are_sent_again_in_order_until_acknowledged() {
        let mut state = Resume::new(0);
        state.opening();
        for id in [11, 12, 13] {
            state.send(id, format!("post {id}")).unwrap();
        }
        assert!(matches!(state.receive(ack(12)), Some(Event::Ack(a)) if a.post_id == 12));
        assert_eq!(state.receive(ack(12)), None, "a repeated acknowledgement shows nothing");
        assert_eq!(state.receive(ack(99)), None, "nor one for a post never sent");
        let again = state.opening();
        assert_eq!(posts_in(&again), [11, 13]);
        assert_eq!(state.unacked(), 2);
    }

    #[test]
    fn the_backlog_of_unacknowledged_posts_is_bounded() {
        let mut state = Resume::new(0);
        for id in 0..MAX_UNACKED as u64 {
            state.send(id, String::new()).unwrap();
        }
        assert_eq!(state.send(u64::MAX, String::new()), Err(Backlog));
        assert_eq!(state.unacked(), MAX_UNACKED);
    }

    #[test]
    fn messages_and_topic_posts_show_once_and_messages_move_the_cursor() {
        let mut state = Resume::new(0);
        state.opening();
        state.receive(live(10));
        let message = TimelineEvent {
            kind: Some(timeline_event::Kind::DirectMessage(DirectMessageView {
                sender: Some(UserRef {
                    id: 4,
                    ..Default::default()
                }),
                message_id: 77,
                seq: 12,
                ..Default::default()
            })),
        };
        assert!(state.receive(message.clone()).is_some());
        assert_eq!(state.receive(message), None);
        assert_eq!(state.cursor(), 12);
        let topic_post = TimelineEvent {
            kind: Some(timeline_event::Kind::TopicPost(TopicPost {
                topic: "rust".into(),
                seq: 3,
                ..Default::default()
            })),
        };
        assert!(state.receive(topic_post.clone()).is_some());
        assert_eq!(
            state.receive(topic_post),
            None,
            "a topic post shown again after a resume"
        );
        assert_eq!(state.cursor(), 12, "a topic's number is not a log position");
    }

    #[test]
    fn room_messages_show_once_and_move_the_cursor_and_a_closing_shows_once() {
        let mut state = Resume::new(0);
        state.opening();
        state.receive(live(10));
        let message = TimelineEvent {
            kind: Some(timeline_event::Kind::RoomMessage(RoomMessageView {
                room: "lobby".into(),
                seq: 1,
                cursor: 15,
                ..Default::default()
            })),
        };
        assert!(matches!(state.receive(message.clone()), Some(Event::RoomMessage(_))));
        assert_eq!(state.receive(message), None);
        assert_eq!((state.cursor(), state.repeats()), (15, 1), "a live repeat is counted");
        let closed = TimelineEvent {
            kind: Some(timeline_event::Kind::RoomClosed("lobby".into())),
        };
        assert_eq!(state.receive(closed.clone()), Some(Event::RoomClosed("lobby".into())));
        assert_eq!(state.receive(closed), None);
        assert_eq!(state.cursor(), 15);
    }

    #[test]
    fn only_the_newest_shown_items_are_remembered() {
        let mut recent = Recent::new();
        for k in 0..REMEMBERED as u64 + 10 {
            assert!(recent.insert(k));
        }
        assert_eq!(recent.members.len(), REMEMBERED);
        assert!(recent.insert(0), "the oldest were forgotten");
        assert!(!recent.insert(REMEMBERED as u64 + 9));
    }

    #[test]
    fn own_posts_from_elsewhere_show_and_those_sent_here_do_not() {
        let mut state = Resume::new(0);
        state.show_own_posts();
        assert!(matches!(
            state.opening()[0].kind,
            Some(timeline_request::Kind::Open(TimelineOpen { own_posts: true, .. }))
        ));
        state.receive(live(10));
        state.send(77, "typed here".into()).unwrap();
        assert_eq!(
            state.receive(post(2, 77, 11)),
            None,
            "the post typed here comes back: hidden"
        );
        assert_eq!(state.cursor(), 11, "but the cursor moves past it");
        assert!(
            state.receive(post(2, 78, 12)).is_some(),
            "the same user's post from another device"
        );
        assert_eq!(state.repeats(), 0);
    }
}
