//! Routes each committed post to the open timelines of its author's followers, each direct
//! message to its recipient's, and each room message (and a room's closing) to its members'.
//!
//! One task follows the committed log for the whole server and keeps an index of open
//! timelines by the users they follow, so a post costs work only for the timelines that show
//! it, instead of every open timeline waking up and scanning every entry.
//!
//! A timeline joins once it has read the log up to where the fan-out is (it catches up on
//! its own before that), and leaves with its state handed back if it falls too far behind
//! to keep up with its channel: it then reads the log on its own again, from exactly where
//! the fan-out stopped serving it, so nothing is shown twice or missed.

use crate::clock;
use crate::feed::Tail;
use crate::store;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tinysns_common::backoff::Backoff;
use tinysns_common::proto::internal::{LikeSet, LogEntry, RoomChange, change, log_entry, room_change};
use tokio::sync::mpsc;

/// Posts queued for one timeline before it is considered too slow and left to catch up on
/// its own.
const QUEUE: usize = 1024;

/// What a timeline's user follows: users, and since when (hybrid clock stamp,
/// `crate::clock`; posts stamped earlier are not shown), and the topics they subscribe to.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Following {
    pub users: HashMap<u64, u64>,
    pub topics: HashSet<String>,
    /// The rooms the user is a member of.
    pub rooms: HashSet<String>,
    /// The user's own posts show too (then `users` holds the user, since 0).
    pub own: bool,
    /// Likes of the user's posts by others show too.
    pub likes: bool,
}

impl Following {
    pub fn users(users: impl IntoIterator<Item = (u64, u64)>) -> Self {
        Self {
            users: users.into_iter().collect(),
            ..Self::default()
        }
    }
}

impl Following {
    /// The user's own posts show too, from the start.
    pub fn with_own_posts(mut self, user: u64) -> Self {
        self.own = true;
        self.users.insert(user, 0);
        self
    }
}

/// Takes a follow (`on`) or unfollow of `followee` made at `entry` into `following`.
pub fn record_follow(following: &mut Following, followee: u64, on: bool, entry: &LogEntry) {
    if on {
        following.users.entry(followee).or_insert(clock::stamp(entry));
    } else {
        following.users.remove(&followee);
    }
}

/// Takes a subscription (`on`) to `topic` or its end into `following`.
pub fn record_subscription(following: &mut Following, topic: &str, on: bool) {
    if on {
        following.topics.insert(topic.to_owned());
    } else {
        following.topics.remove(topic);
    }
}

/// Whether `user`'s timeline shows `like`: someone else's like (or its withdrawal) of one
/// of the user's posts, on a timeline that asked for likes.
pub fn shows_like(following: &Following, user: u64, like: &LikeSet) -> bool {
    following.likes && like.post_author == user && like.liker != user
}

/// Takes `user` joining (`on`) or leaving `room` into `following`.
pub fn record_room(following: &mut Following, room: &str, on: bool) {
    if on {
        following.rooms.insert(room.to_owned());
    } else {
        following.rooms.remove(room);
    }
}

/// The room a membership change (or a creation, which makes its creator a member) puts
/// `user` in or out of.
fn membership_of(room: &RoomChange, user: u64) -> Option<(&str, bool)> {
    match room.kind.as_ref()? {
        room_change::Kind::Created(c) if c.creator == user => Some((&c.room, true)),
        room_change::Kind::Membership(m) if m.user == user => Some((&m.room, m.member)),
        _ => None,
    }
}

/// Whether `user`'s timeline shows the post of `author` at `entry`: someone else's post,
/// made after the user followed them (or the user's own, if its timeline shows them).
pub fn shows(following: &Following, user: u64, author: u64, entry: &LogEntry) -> bool {
    (author != user || following.own)
        && following
            .users
            .get(&author)
            .is_some_and(|since| clock::stamp(entry) >= *since)
}

/// Whether `user`'s timeline shows a post numbered in `topic`: someone else's post in a topic
/// the user subscribes to, by an author the user does not follow (whose posts it shows as
/// posts already).
pub fn shows_in_topic(following: &Following, user: u64, topic: &str, author: u64) -> bool {
    author != user && following.topics.contains(topic) && !following.users.contains_key(&author)
}

/// Takes `entry` into the state of `user`'s timeline; true if it is a post the timeline
/// shows. What a timeline reading the log on its own does with each entry.
pub fn step(following: &mut Following, user: u64, entry: &LogEntry) -> bool {
    let Some(log_entry::Kind::Change(c)) = &entry.kind else {
        return false;
    };
    match &c.kind {
        Some(change::Kind::Follow(f)) if f.follower == user => {
            record_follow(following, f.followee, f.following, entry);
            false
        }
        Some(change::Kind::TopicSubscription(t)) if t.user == user => {
            record_subscription(following, &t.topic, t.subscribed);
            false
        }
        Some(change::Kind::Post(p)) => shows(following, user, p.author, entry),
        Some(change::Kind::TopicSequenced(t)) => {
            !t.numbering_only
                && t.post
                    .as_ref()
                    .is_some_and(|p| shows_in_topic(following, user, &t.topic, p.author))
        }
        Some(change::Kind::DirectMessage(m)) => m.recipient == user,
        Some(change::Kind::Like(l)) => shows_like(following, user, l),
        Some(change::Kind::Room(r)) => {
            if let Some((room, on)) = membership_of(r, user) {
                record_room(following, room, on);
                return false;
            }
            match r.kind.as_ref() {
                Some(room_change::Kind::Message(m)) => following.rooms.contains(&m.room),
                Some(room_change::Kind::Deleted(d)) => following.rooms.remove(&d.room),
                _ => false,
            }
        }
        _ => false,
    }
}

#[derive(Clone, Default)]
pub struct Fanout {
    state: Arc<Mutex<State>>,
}

#[derive(Default)]
struct State {
    /// The last lsn routed; timelines join at or after it.
    position: u64,
    timelines: HashMap<u64, Member>,
    /// For each followed user, the timelines that show their posts.
    by_followee: HashMap<u64, HashSet<u64>>,
    /// For each topic, the timelines whose users subscribe to it.
    by_topic: HashMap<String, HashSet<u64>>,
    /// For each room, the timelines of its members.
    by_room: HashMap<String, HashSet<u64>>,
    /// For each user, their open timelines (a user may have more than one stream).
    by_user: HashMap<u64, HashSet<u64>>,
    next_id: u64,
}

struct Member {
    user: u64,
    following: Following,
    /// Entries up to here were already read by the timeline itself before it joined.
    joined_after: u64,
    tx: mpsc::Sender<Arc<LogEntry>>,
    handback: Arc<Mutex<Option<Handback>>>,
}

/// A timeline's state when the fan-out stops serving it.
#[derive(Debug, Clone, PartialEq)]
pub struct Handback {
    /// Continue reading the log after this lsn ...
    pub after: u64,
    /// ... with this follow state, which is as of `after`.
    pub following: Following,
}

/// A timeline served by the fan-out. Dropping it leaves.
pub struct Subscription {
    fanout: Fanout,
    id: u64,
    rx: mpsc::Receiver<Arc<LogEntry>>,
    handback: Arc<Mutex<Option<Handback>>>,
}

impl Subscription {
    /// The next post for this timeline; `Err` with where to continue once the fan-out has
    /// stopped serving it (too slow, or the log was rewound). The fan-out leaves the handback
    /// before it closes the channel, so `Err(None)` means a broken invariant.
    pub async fn next(&mut self) -> Result<Arc<LogEntry>, Option<Handback>> {
        match self.rx.recv().await {
            Some(entry) => Ok(entry),
            None => Err(lock(&self.handback).take()),
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.fanout.state().remove(self.id);
    }
}

/// Takes timeline `id` out of `index`'s set under `key` (and the set once empty).
fn unindex_in<K, Q>(index: &mut HashMap<K, HashSet<u64>>, key: &Q, id: u64)
where
    K: std::borrow::Borrow<Q> + std::hash::Hash + Eq,
    Q: std::hash::Hash + Eq + ?Sized,
{
    if let Some(set) = index.get_mut(key) {
        set.remove(&id);
        if set.is_empty() {
            index.remove(key);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Fanout {
    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// Joins `user`'s timeline, which has read the log through `after` with follow state
    /// `following` — if the fan-out has not routed anything beyond `after` yet. Otherwise the
    /// timeline must read further on its own first (`None`).
    pub fn join(&self, user: u64, after: u64, following: &Following) -> Option<Subscription> {
        let mut state = self.state();
        if after < state.position {
            return None;
        }
        let (tx, rx) = mpsc::channel(QUEUE);
        let handback = Arc::new(Mutex::new(None));
        let id = state.next_id;
        state.next_id += 1;
        for followee in following.users.keys() {
            state.by_followee.entry(*followee).or_default().insert(id);
        }
        for topic in &following.topics {
            state.by_topic.entry(topic.clone()).or_default().insert(id);
        }
        for room in &following.rooms {
            state.by_room.entry(room.clone()).or_default().insert(id);
        }
        state.by_user.entry(user).or_default().insert(id);
        state.timelines.insert(
            id,
            Member {
                user,
                following: following.clone(),
                joined_after: after,
                tx,
                handback: handback.clone(),
            },
        );
        Some(Subscription {
            fanout: self.clone(),
            id,
            rx,
            handback,
        })
    }

    /// Routes entries as they are committed, for as long as the server runs.
    pub async fn run(self, mut tail: Tail) {
        self.state().position = tail.cursor();
        let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(2));
        loop {
            match tail.next().await {
                Ok(entries) => {
                    backoff.reset();
                    self.route(&entries);
                }
                Err(store::StoreError::Compacted { start, .. }) => {
                    // Fell behind the log's compacted front: every timeline reads on its own
                    // (what it missed comes from the posts table) and routing resumes there.
                    tracing::warn!(
                        start,
                        "fan-out fell behind the compacted log; timelines read on their own"
                    );
                    let mut state = self.state();
                    state.release_all();
                    state.position = state.position.max(start);
                    tail.skip_to(start);
                }
                Err(error) => {
                    let retry_in = backoff.next_delay();
                    tracing::warn!(%error, ?retry_in, "fan-out cannot read the log");
                    tokio::time::sleep(retry_in).await;
                }
            }
        }
    }

    /// Routes committed entries, which follow on from what was routed before.
    pub fn route(&self, entries: &[Arc<LogEntry>]) {
        let mut state = self.state();
        let Some(first) = entries.first() else { return };
        if first.lsn <= state.position {
            // The log was rewound under us (a deposed master's suffix was replaced). Every
            // timeline goes back to reading on its own, which copes with that.
            state.release_all();
        }
        for entry in entries {
            state.route(entry);
            state.position = entry.lsn;
        }
    }
}

impl State {
    fn route(&mut self, entry: &Arc<LogEntry>) {
        let Some(log_entry::Kind::Change(c)) = &entry.kind else {
            return;
        };
        match &c.kind {
            Some(change::Kind::Follow(f)) => {
                let ids: Vec<u64> = self.by_user.get(&f.follower).into_iter().flatten().copied().collect();
                for id in ids {
                    self.apply_follow(id, entry, f.followee, f.following);
                }
            }
            Some(change::Kind::Post(p)) => {
                let ids: Vec<u64> = self.by_followee.get(&p.author).into_iter().flatten().copied().collect();
                for id in ids {
                    self.offer(id, entry, p.author);
                }
            }
            Some(change::Kind::TopicSubscription(t)) => {
                let ids: Vec<u64> = self.by_user.get(&t.user).into_iter().flatten().copied().collect();
                for id in ids {
                    self.apply_subscription(id, entry, &t.topic, t.subscribed);
                }
            }
            Some(change::Kind::TopicSequenced(t)) => {
                // A number without the post's text (no subscribers here when it was sent).
                let Some(author) = t.post.as_ref().filter(|_| !t.numbering_only).map(|p| p.author) else {
                    return;
                };
                let ids: Vec<u64> = self.by_topic.get(&t.topic).into_iter().flatten().copied().collect();
                for id in ids {
                    if self
                        .timelines
                        .get(&id)
                        .is_some_and(|m| shows_in_topic(&m.following, m.user, &t.topic, author))
                    {
                        self.send(id, entry);
                    }
                }
            }
            Some(change::Kind::DirectMessage(m)) => {
                let ids: Vec<u64> = self.by_user.get(&m.recipient).into_iter().flatten().copied().collect();
                for id in ids {
                    self.send(id, entry);
                }
            }
            Some(change::Kind::Room(r)) => self.route_room(entry, r),
            Some(change::Kind::Like(l)) => {
                let ids: Vec<u64> = self
                    .by_user
                    .get(&l.post_author)
                    .into_iter()
                    .flatten()
                    .copied()
                    .collect();
                for id in ids {
                    if self
                        .timelines
                        .get(&id)
                        .is_some_and(|m| shows_like(&m.following, m.user, l))
                    {
                        self.send(id, entry);
                    }
                }
            }
            _ => {}
        }
    }

    fn route_room(&mut self, entry: &Arc<LogEntry>, r: &RoomChange) {
        let (room, user, on) = match r.kind.as_ref() {
            Some(room_change::Kind::Created(c)) => (&c.room, c.creator, true),
            Some(room_change::Kind::Membership(m)) => (&m.room, m.user, m.member),
            Some(room_change::Kind::Message(m)) => {
                let ids: Vec<u64> = self.by_room.get(&m.room).into_iter().flatten().copied().collect();
                for id in ids {
                    self.send(id, entry);
                }
                return;
            }
            Some(room_change::Kind::Deleted(d)) => {
                // Members are told it closed, and are members no more.
                let ids: Vec<u64> = self.by_room.get(&d.room).into_iter().flatten().copied().collect();
                for id in ids {
                    self.send(id, entry);
                    if let Some(member) = self.timelines.get_mut(&id) {
                        record_room(&mut member.following, &d.room, false);
                    }
                }
                self.by_room.remove(&d.room);
                return;
            }
            _ => return,
        };
        let ids: Vec<u64> = self.by_user.get(&user).into_iter().flatten().copied().collect();
        for id in ids {
            let Some(member) = self.timelines.get_mut(&id) else {
                continue;
            };
            if entry.lsn <= member.joined_after {
                continue;
            }
            record_room(&mut member.following, room, on);
            if on {
                self.by_room.entry(room.clone()).or_default().insert(id);
            } else {
                unindex_in(&mut self.by_room, room, id);
            }
        }
    }

    fn apply_follow(&mut self, id: u64, entry: &LogEntry, followee: u64, following: bool) {
        let Some(member) = self.timelines.get_mut(&id) else {
            return;
        };
        if entry.lsn <= member.joined_after {
            return;
        }
        record_follow(&mut member.following, followee, following, entry);
        if following {
            self.by_followee.entry(followee).or_default().insert(id);
        } else {
            unindex_in(&mut self.by_followee, &followee, id);
        }
    }

    fn apply_subscription(&mut self, id: u64, entry: &LogEntry, topic: &str, on: bool) {
        let Some(member) = self.timelines.get_mut(&id) else {
            return;
        };
        if entry.lsn <= member.joined_after {
            return;
        }
        record_subscription(&mut member.following, topic, on);
        if on {
            self.by_topic.entry(topic.to_owned()).or_default().insert(id);
        } else {
            unindex_in(&mut self.by_topic, topic, id);
        }
    }

    fn offer(&mut self, id: u64, entry: &Arc<LogEntry>, author: u64) {
        let Some(member) = self.timelines.get_mut(&id) else {
            return;
        };
        if shows(&member.following, member.user, author, entry) {
            self.send(id, entry);
        }
    }

    /// Hands `entry` to timeline `id` unless it had read it before joining.
    fn send(&mut self, id: u64, entry: &Arc<LogEntry>) {
        let Some(member) = self.timelines.get_mut(&id) else {
            return;
        };
        if entry.lsn <= member.joined_after {
            return;
        }
        if member.tx.try_send(entry.clone()).is_err() {
            // Too slow (or gone): it continues on its own just before this post.
            self.release(id, entry.lsn - 1);
        }
    }

    /// Stops serving timeline `id`, handing back its state as of `after`.
    fn release(&mut self, id: u64, after: u64) {
        if let Some(member) = self.remove(id) {
            *lock(&member.handback) = Some(Handback {
                after,
                following: member.following,
            });
        }
    }

    fn release_all(&mut self) {
        // Everything routed so far is in each timeline's state, and a timeline that joined
        // ahead of the fan-out had read up to where it joined.
        let all: Vec<(u64, u64)> = self
            .timelines
            .iter()
            .map(|(id, m)| (*id, self.position.max(m.joined_after)))
            .collect();
        for (id, after) in all {
            self.release(id, after);
        }
    }

    fn remove(&mut self, id: u64) -> Option<Member> {
        let member = self.timelines.remove(&id)?;
        for followee in member.following.users.keys() {
            unindex_in(&mut self.by_followee, followee, id);
        }
        for topic in &member.following.topics {
            unindex_in(&mut self.by_topic, topic, id);
        }
        for room in &member.following.rooms {
            unindex_in(&mut self.by_room, room, id);
        }
        if let Some(set) = self.by_user.get_mut(&member.user) {
            set.remove(&id);
            if set.is_empty() {
                self.by_user.remove(&member.user);
            }
        }
        Some(member)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tinysns_common::proto::internal::{Change, FollowChanged, PostCreated};

    fn entry(lsn: u64, timestamp_ms: i64, kind: change::Kind) -> Arc<LogEntry> {
        Arc::new(LogEntry {
            lsn,
            term: 1,
            timestamp_ms,
            origin_cluster: 1,
            origin_lsn: lsn,
            kind: Some(log_entry::Kind::Change(Change { kind: Some(kind) })),
            hlc: 0,
        })
    }

    fn post(lsn: u64, author: u64) -> Arc<LogEntry> {
        entry(
            lsn,
            lsn as i64 * 10,
            change::Kind::Post(PostCreated {
                author,
                post_id: lsn,
                text: format!("post {lsn}"),
                author_name: String::new(),
                number: 0,
                ..Default::default()
            }),
        )
    }

    fn follow(lsn: u64, follower: u64, followee: u64, following: bool) -> Arc<LogEntry> {
        entry(
            lsn,
            lsn as i64 * 10,
            change::Kind::Follow(FollowChanged {
                follower,
                followee,
                following,
            }),
        )
    }

    /// Posts routed so far, by lsn.
    fn received(sub: &mut Subscription) -> Vec<u64> {
        std::iter::from_fn(|| sub.rx.try_recv().ok().map(|e| e.lsn)).collect()
    }

    #[test]
    fn a_timeline_joins_only_once_it_has_read_as_far_as_the_fanout() {
        let fanout = Fanout::default();
        fanout.route(&[post(1, 2), post(2, 2), post(3, 2)]);
        assert!(fanout.join(1, 2, &Following::default()).is_none());
        assert!(fanout.join(1, 3, &Following::default()).is_some());
        // Ahead of the fan-out (it is behind the committed log) is fine too.
        assert!(fanout.join(1, 9, &Following::default()).is_some());
    }

    #[test]
    fn posts_reach_exactly_the_followers_who_should_see_them() {
        let fanout = Fanout::default();
        let mut sub = fanout.join(1, 0, &Following::users([(2, 0)])).unwrap();
        let mut other = fanout.join(5, 0, &Following::default()).unwrap();
        fanout.route(&[
            post(1, 2),             // followed: shown
            post(2, 3),             // not followed
            post(3, 1),             // the user's own post
            follow(4, 1, 3, true),  // follows 3 from now on
            post(5, 3),             // shown
            follow(6, 1, 2, false), // unfollows 2
            post(7, 2),             // not shown any more
            follow(8, 5, 2, true),  // someone else follows 2
            post(9, 2),
        ]);
        assert_eq!(received(&mut sub), vec![1, 5]);
        assert_eq!(received(&mut other), vec![9]);
    }

    #[test]
    fn posts_made_before_the_follow_are_not_shown() {
        let fanout = Fanout::default();
        // Followed at stamp 1 s (posts here are stamped by their wall time, lsn x 10 ms).
        let mut sub = fanout.join(1, 0, &Following::users([(2, 1_000_000)])).unwrap();
        fanout.route(&[post(1, 2), post(200, 2)]);
        assert_eq!(received(&mut sub), vec![200]);
    }

    #[test]
    fn the_clock_stamp_decides_not_the_wall_clock() {
        let fanout = Fanout::default();
        let mut sub = fanout.join(1, 0, &Following::users([(2, 5_000_000)])).unwrap();
        // Made on a clock minutes behind, after its cluster saw the follow: shown.
        let behind = Arc::new(LogEntry {
            hlc: 5_000_001,
            ..(*post(3, 2)).clone()
        });
        // Made on a clock ahead, but before its cluster saw the follow: not shown.
        let ahead = Arc::new(LogEntry {
            timestamp_ms: 900_000,
            hlc: 4_999_999,
            ..(*post(4, 2)).clone()
        });
        fanout.route(&[behind, ahead]);
        assert_eq!(received(&mut sub), vec![3]);
    }

    #[test]
    fn entries_the_timeline_read_itself_are_not_routed_to_it_again() {
        let fanout = Fanout::default();
        fanout.route(&[post(1, 2)]);
        // Joined ahead of the fan-out: it already showed 2 and 3, and saw the unfollow at 3.
        let mut sub = fanout.join(1, 3, &Following::default()).unwrap();
        fanout.route(&[post(2, 2), follow(3, 1, 2, false), post(4, 2)]);
        assert_eq!(received(&mut sub), Vec::<u64>::new());
        fanout.route(&[follow(5, 1, 2, true), post(6, 2)]);
        assert_eq!(received(&mut sub), vec![6]);
    }

    #[tokio::test]
    async fn a_timeline_too_slow_to_keep_up_gets_its_place_back() {
        let fanout = Fanout::default();
        let mut sub = fanout.join(1, 0, &Following::users([(2, 0)])).unwrap();
        let posts: Vec<_> = (1..=QUEUE as u64).map(|lsn| post(lsn, 2)).collect();
        fanout.route(&posts);
        let overflow = QUEUE as u64 + 2;
        fanout.route(&[
            follow(QUEUE as u64 + 1, 1, 3, true),
            post(overflow, 2),
            post(overflow + 1, 2),
        ]);
        for lsn in 1..=QUEUE as u64 {
            assert_eq!(sub.next().await.unwrap().lsn, lsn);
        }
        let back = sub.next().await.unwrap_err().unwrap();
        // It continues just before the post that did not fit, with the follow it made.
        assert_eq!(back.after, overflow - 1);
        assert_eq!(
            back.following.users.keys().copied().collect::<HashSet<_>>(),
            HashSet::from([2, 3])
        );
        assert!(fanout.state().timelines.is_empty());
        assert!(fanout.state().by_followee.is_empty());
    }

    #[tokio::test]
    async fn a_rewound_log_sends_every_timeline_back_to_reading_on_its_own() {
        let fanout = Fanout::default();
        let mut sub = fanout.join(1, 0, &Following::users([(2, 0)])).unwrap();
        fanout.route(&[post(1, 2), post(2, 2)]);
        fanout.route(&[post(2, 2)]);
        assert_eq!(sub.next().await.unwrap().lsn, 1);
        assert_eq!(sub.next().await.unwrap().lsn, 2);
        assert_eq!(sub.next().await.unwrap_err().unwrap().after, 2);
    }

    #[test]
    fn a_closed_timeline_leaves_no_trace() {
        let fanout = Fanout::default();
        let sub = fanout.join(1, 0, &Following::users([(2, 0), (3, 0)])).unwrap();
        drop(sub);
        let state = fanout.state();
        assert!(state.timelines.is_empty() && state.by_followee.is_empty() && state.by_user.is_empty());
    }

    fn numbered(lsn: u64, topic: &str, author: u64) -> Arc<LogEntry> {
        entry(
            lsn,
            lsn as i64 * 10,
            change::Kind::TopicSequenced(tinysns_common::proto::internal::TopicSequenced {
                topic: topic.into(),
                seq: lsn,
                post: Some(PostCreated {
                    author,
                    post_id: lsn,
                    number: lsn,
                    ..Default::default()
                }),
                post_hlc: 0,
                numbering_only: false,
            }),
        )
    }

    fn subscription(lsn: u64, user: u64, topic: &str, subscribed: bool) -> Arc<LogEntry> {
        entry(
            lsn,
            lsn as i64 * 10,
            change::Kind::TopicSubscription(tinysns_common::proto::internal::TopicSubscription {
                user,
                topic: topic.into(),
                subscribed,
            }),
        )
    }

    #[test]
    fn subscribed_topics_posts_reach_the_timeline_unless_the_author_is_followed_or_oneself() {
        let fanout = Fanout::default();
        let mut following = Following::users([(3, 0)]);
        following.topics.insert("rust".into());
        let mut sub = fanout.join(1, 0, &following).unwrap();
        let entries = [
            numbered(1, "rust", 2),
            numbered(2, "go", 2),
            // Followed (shown as a post instead) and one's own.
            numbered(3, "rust", 3),
            numbered(4, "rust", 1),
            subscription(5, 1, "go", true),
            subscription(6, 1, "rust", false),
            numbered(7, "go", 2),
            numbered(8, "rust", 2),
        ];
        fanout.route(&entries);
        assert_eq!(received(&mut sub), [1, 7]);
        // A timeline reading the log on its own shows the same.
        let mut own = following.clone();
        let shown: Vec<u64> = entries.iter().filter(|e| step(&mut own, 1, e)).map(|e| e.lsn).collect();
        assert_eq!(shown, [1, 7]);
        drop(sub);
        assert!(fanout.state().by_topic.is_empty(), "leaving unindexes the topics");
    }

    fn room_entry(lsn: u64, kind: room_change::Kind) -> Arc<LogEntry> {
        entry(
            lsn,
            lsn as i64 * 10,
            change::Kind::Room(RoomChange { kind: Some(kind) }),
        )
    }

    #[test]
    fn room_messages_reach_members_until_they_leave_and_a_closing_reaches_them_once() {
        use tinysns_common::proto::internal::{RoomDeleted, RoomMembership, RoomMessage};
        let fanout = Fanout::default();
        let mut bob = fanout.join(5, 0, &Following::default()).unwrap();
        let mut carol = fanout.join(7, 0, &Following::default()).unwrap();
        let membership = |lsn, user, member| {
            room_entry(
                lsn,
                room_change::Kind::Membership(RoomMembership {
                    room: "lobby".into(),
                    user,
                    user_name: String::new(),
                    member,
                }),
            )
        };
        let message = |lsn, seq| {
            room_entry(
                lsn,
                room_change::Kind::Message(RoomMessage {
                    room: "lobby".into(),
                    seq,
                    sender: 2,
                    ..Default::default()
                }),
            )
        };
        fanout.route(&[
            membership(1, 5, true),
            message(2, 1),
            membership(3, 7, true),
            message(4, 2),
        ]);
        assert_eq!(received(&mut bob), [2, 4]);
        assert_eq!(received(&mut carol), [4], "only what came after joining");
        fanout.route(&[membership(5, 5, false), message(6, 3)]);
        assert_eq!(received(&mut bob), Vec::<u64>::new());
        assert_eq!(received(&mut carol), [6]);
        let deleted = room_entry(7, room_change::Kind::Deleted(RoomDeleted { room: "lobby".into() }));
        fanout.route(&[deleted, message(8, 4)]);
        assert_eq!(received(&mut carol), [7], "told once that it closed, then nothing");
        let mut following = Following::default();
        for e in [membership(1, 5, true), message(2, 1)] {
            assert_eq!(step(&mut following, 5, &e), e.lsn == 2, "reading on its own: the same");
        }
    }

    #[test]
    fn own_posts_show_only_on_a_timeline_that_asks_for_them() {
        let fanout = Fanout::default();
        let mut classic = fanout.join(5, 0, &Following::default()).unwrap();
        let mut web = fanout.join(5, 0, &Following::default().with_own_posts(5)).unwrap();
        fanout.route(&[post(1, 5), post(2, 6)]);
        assert_eq!(received(&mut classic), Vec::<u64>::new());
        assert_eq!(received(&mut web), [1], "its own post, not a stranger's");
    }

    #[test]
    fn likes_of_ones_posts_show_only_on_a_timeline_that_asks_for_them() {
        let fanout = Fanout::default();
        let asking = Following {
            likes: true,
            ..Following::default()
        };
        let mut classic = fanout.join(5, 0, &Following::default()).unwrap();
        let mut web = fanout.join(5, 0, &asking).unwrap();
        let like = |lsn, author, liker| {
            entry(
                lsn,
                10,
                change::Kind::Like(LikeSet {
                    post_author: author,
                    post_number: 1,
                    liker,
                    liked: true,
                    ..Default::default()
                }),
            )
        };
        fanout.route(&[like(1, 5, 6), like(2, 5, 5), like(3, 7, 6)]);
        assert_eq!(received(&mut classic), Vec::<u64>::new());
        assert_eq!(received(&mut web), [1], "another's like of its post only");
        let mut following = asking.clone();
        assert!(step(&mut following, 5, &like(1, 5, 6)), "reading on its own: the same");
        assert!(!step(&mut following, 5, &like(2, 5, 5)));
    }
}
