//! What another cluster may hand us: the checks on a change from the bus before it is
//! applied. A synchronizer only forwards what it consumed from the broker, so anything that
//! can reach the broker could otherwise write into every cluster; each change must be one
//! its origin cluster could really have made.

use tinysns_common::limits::{MAX_LSN, canonical_username, validate_post_text, validate_profile};
use tinysns_common::proto::internal::{PostCreated, RemoteChange, RoomChange, TopicSequenced, change, room_change};
use tinysns_common::rooms;
use tinysns_common::topics;
use tinysns_common::topology::{cluster_of_user, cluster_of_username};

/// How far in the future a change's timestamp may be (clock skew between clusters).
pub const MAX_FUTURE_SKEW_MS: i64 = 10 * 60 * 1000;
/// How old a change may be: a year covers any broker outage or dead-letter replay.
pub const MAX_AGE_MS: i64 = 366 * 24 * 60 * 60 * 1000;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RemoteError {
    #[error("origin cluster {origin} is not another cluster of 1..={clusters} (this is {here})")]
    Origin { origin: u32, here: u32, clusters: u32 },
    #[error("origin position {0} is out of range (1..={MAX_LSN})")]
    Position(u64),
    #[error("timestamp {ts} is outside the window around now ({now})")]
    Timestamp { ts: i64, now: i64 },
    #[error("the change is empty")]
    Empty,
    #[error("user {user} lives in cluster {home}, so cluster {origin} cannot make this change")]
    NotHome { user: u64, home: u32, origin: u32 },
    #[error("topic {topic} is numbered by cluster {home}, so cluster {origin} cannot number it")]
    NotTopicHome { topic: String, home: u32, origin: u32 },
    #[error("{0}")]
    Content(String),
}

/// A user's name (if any) must be canonical.
fn check_canonical_name(username: &str) -> Result<(), String> {
    match canonical_username(username) {
        _ if username.is_empty() => Ok(()),
        Ok(canonical) if canonical == username => Ok(()),
        _ => Err(format!("{username:?} is not a canonical username")),
    }
}

/// A user's name (if any) must be canonical and owned by the cluster that registered it.
fn check_username(username: &str, origin: u32, clusters: u32) -> Result<(), String> {
    if username.is_empty() {
        return Ok(());
    }
    check_canonical_name(username)?;
    match cluster_of_username(username, clusters) {
        Ok(owner) if owner == origin => Ok(()),
        _ => Err(format!("the username {username} is not cluster {origin}'s to register")),
    }
}

/// Checks `remote` as applied in cluster `here` of `clusters` at `now_ms`.
pub fn check_remote(remote: &RemoteChange, here: u32, clusters: u32, now_ms: i64) -> Result<(), RemoteError> {
    let origin = remote.origin_cluster;
    if origin == 0 || origin > clusters || origin == here {
        return Err(RemoteError::Origin { origin, here, clusters });
    }
    if remote.origin_lsn == 0 || remote.origin_lsn > MAX_LSN {
        return Err(RemoteError::Position(remote.origin_lsn));
    }
    let ts = remote.timestamp_ms;
    let out_of_range =
        |ts: i64| ts <= 0 || ts > now_ms.saturating_add(MAX_FUTURE_SKEW_MS) || ts < now_ms.saturating_sub(MAX_AGE_MS);
    if out_of_range(ts) {
        return Err(RemoteError::Timestamp { ts, now: now_ms });
    }
    // The hybrid clock stamp may run ahead of the wall clock only as far as a wall clock may.
    let stamp_ms = (remote.hlc / 1000).min(i64::MAX as u64) as i64;
    if remote.hlc != 0 && out_of_range(stamp_ms) {
        return Err(RemoteError::Timestamp {
            ts: stamp_ms,
            now: now_ms,
        });
    }
    let Some(kind) = remote.change.as_ref().and_then(|c| c.kind.as_ref()) else {
        return Err(RemoteError::Empty);
    };
    // Every change is made in the home cluster of the user who acts; a topic's numbers in the
    // topic's home.
    if let change::Kind::TopicSequenced(t) = kind {
        check_topic_sequenced(t).map_err(RemoteError::Content)?;
        let home = topics::home_cluster(&t.topic, clusters);
        if home != origin {
            return Err(RemoteError::NotTopicHome {
                topic: t.topic.clone(),
                home,
                origin,
            });
        }
        return Ok(());
    }
    // A cluster says only that it is ready itself.
    if let change::Kind::DeletionReady(r) = kind {
        if r.cluster != origin || r.user == 0 {
            return Err(RemoteError::Content(format!(
                "cluster {origin} cannot say cluster {} is ready to delete user {}",
                r.cluster, r.user
            )));
        }
        return Ok(());
    }
    let (actor, content) = match kind {
        change::Kind::User(u) => (u.user_id, check_username(&u.username, origin, clusters)),
        change::Kind::Follow(f) => (
            f.follower,
            match f.followee {
                0 => Err("followee 0 is not a user".to_string()),
                x if x == f.follower => Err("a user cannot follow themselves".to_string()),
                _ => Ok(()),
            },
        ),
        change::Kind::Post(p) => (p.author, check_post(p)),
        // Made at the room's host, not a user's home.
        change::Kind::Room(r) => return check_room(r, origin, clusters).map_err(RemoteError::Content),
        // Checked above.
        change::Kind::TopicSequenced(t) => (t.post.as_ref().map(|p| p.author).unwrap_or_default(), Ok(())),
        change::Kind::TopicSubscription(t) => (t.user, check_canonical_topic(&t.topic)),
        // Checked above.
        change::Kind::DeletionReady(r) => (r.user, Ok(())),
        change::Kind::DeletionPrepared(d) => (d.user, check_canonical_name(&d.username)),
        change::Kind::AccountDeleted(d) => (d.user, check_canonical_name(&d.username)),
        change::Kind::PostDeleted(d) => (
            d.author,
            if d.number == 0 || d.number > MAX_LSN {
                Err(format!("post {}/{} cannot exist", d.author, d.number))
            } else {
                Ok(())
            },
        ),
        change::Kind::Profile(p) => (
            p.user_id,
            validate_profile(&p.display_name, &p.bio).map_err(|e| e.to_string()),
        ),
        change::Kind::DirectMessage(m) => (
            m.sender,
            validate_post_text(&m.text)
                .map_err(|e| e.to_string())
                .and_then(|()| match m.recipient {
                    0 => Err("recipient 0 is not a user".to_string()),
                    r if r == m.sender => Err("a user cannot message themselves".to_string()),
                    _ => Ok(()),
                }),
        ),
        change::Kind::ConversationRead(r) => (r.reader, Err("what a user has read is never published".to_string())),
        change::Kind::Block(b) => (
            b.blocker,
            match b.blocked {
                0 => Err("blocked 0 is not a user".to_string()),
                x if x == b.blocker => Err("a user cannot block themselves".to_string()),
                _ => Ok(()),
            },
        ),
        change::Kind::Like(l) => (
            l.liker,
            if l.post_author == 0 || l.post_number == 0 || l.post_number > MAX_LSN {
                Err(format!("post {}/{} cannot exist", l.post_author, l.post_number))
            } else {
                Ok(())
            },
        ),
    };
    content.map_err(RemoteError::Content)?;
    let home = cluster_of_user(actor, clusters).map_err(|e| RemoteError::Content(e.to_string()))?;
    if home != origin {
        return Err(RemoteError::NotHome {
            user: actor,
            home,
            origin,
        });
    }
    Ok(())
}

/// A room change names a canonical room and is made by its host (a readiness, by the cluster
/// that is ready), about real users, with a message a member could have sent.
fn check_room(r: &RoomChange, origin: u32, clusters: u32) -> Result<(), String> {
    let kind = r.kind.as_ref().ok_or("an empty room change")?;
    let room = match kind {
        room_change::Kind::Created(c) => &c.room,
        room_change::Kind::Membership(m) => &m.room,
        room_change::Kind::Message(m) => &m.room,
        room_change::Kind::DeletionPrepared(p) => &p.room,
        room_change::Kind::DeletionReady(r) => &r.room,
        room_change::Kind::Deleted(d) => &d.room,
    };
    if !rooms::is_canonical_room(room) {
        return Err(format!("{room:?} is not a canonical room name"));
    }
    let maker = match kind {
        room_change::Kind::DeletionReady(r) => r.cluster,
        _ => rooms::host_cluster(room, clusters),
    };
    if maker != origin {
        return Err(format!("cluster {origin} cannot make this change of room {room}"));
    }
    let user = |user: u64, name: &str| match user {
        0 => Err("user 0 is not a user".to_string()),
        _ => check_canonical_name(name),
    };
    match kind {
        room_change::Kind::Created(c) => user(c.creator, &c.creator_name),
        room_change::Kind::Membership(m) => user(m.user, &m.user_name),
        room_change::Kind::Message(m) => {
            user(m.sender, &m.sender_name)?;
            if m.seq == 0 || m.seq > MAX_LSN {
                return Err(format!("room message number {} is out of range", m.seq));
            }
            validate_post_text(&m.text).map_err(|e| e.to_string())
        }
        room_change::Kind::DeletionPrepared(p) => {
            let in_range = p.clusters.iter().all(|c| (1..=clusters).contains(c));
            match !p.clusters.is_empty() && p.clusters.len() <= clusters as usize && in_range {
                true => Ok(()),
                false => Err(format!("a room deletion naming clusters {:?}", p.clusters)),
            }
        }
        room_change::Kind::DeletionReady(_) | room_change::Kind::Deleted(_) => Ok(()),
    }
}

/// A post's text, the post it answers and its topics could all have been made by a member.
fn check_post(p: &PostCreated) -> Result<(), String> {
    validate_post_text(&p.text).map_err(|e| e.to_string())?;
    match (p.reply_to_author, p.reply_to_number) {
        (0, 0) => {}
        (author, number) if author > 0 && number > 0 && number <= MAX_LSN => {}
        (author, number) => return Err(format!("a reply to {author}/{number}, which cannot exist")),
    }
    if p.topics.len() > topics::MAX_TOPICS_PER_POST {
        return Err(format!("a post with {} topics", p.topics.len()));
    }
    p.topics.iter().try_for_each(|t| check_canonical_topic(t))
}

fn check_canonical_topic(topic: &str) -> Result<(), String> {
    match topics::parse_topic(topic) {
        Ok(canonical) if canonical == topic => Ok(()),
        _ => Err(format!("{topic:?} is not a canonical topic name")),
    }
}

/// A topic's number names a numbered post of a canonical topic.
fn check_topic_sequenced(t: &TopicSequenced) -> Result<(), String> {
    check_canonical_topic(&t.topic)?;
    if t.seq == 0 || t.seq > MAX_LSN {
        return Err(format!("topic number {} is out of range", t.seq));
    }
    let post = t.post.as_ref().ok_or("a topic number without its post")?;
    if post.author == 0 || post.number == 0 || post.number > MAX_LSN {
        return Err(format!("post {}/{} cannot exist", post.author, post.number));
    }
    if t.numbering_only {
        // The number alone: the post is named, not carried.
        return match post.text.is_empty() && post.topics.is_empty() {
            true => Ok(()),
            false => Err("a number without its post carries the post's text".into()),
        };
    }
    check_post(post)
}

/// Whether cluster `here` keeps `change`: a direct message only in the sender's and the
/// recipient's home clusters; everything else everywhere.
pub fn stored_here(change: &RemoteChange, here: u32, clusters: u32) -> bool {
    match change.change.as_ref().and_then(|c| c.kind.as_ref()) {
        Some(change::Kind::DirectMessage(m)) => [m.sender, m.recipient]
            .iter()
            .any(|user| cluster_of_user(*user, clusters).is_ok_and(|home| home == here)),
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tinysns_common::proto::internal::{Change, FollowChanged, PostCreated, UserCreated};

    const NOW: i64 = 1_800_000_000_000;

    fn remote(origin: u32, kind: change::Kind) -> RemoteChange {
        RemoteChange {
            origin_cluster: origin,
            origin_lsn: 5,
            timestamp_ms: NOW,
            change: Some(Change { kind: Some(kind) }),
            hlc: 0,
        }
    }

    fn post(author: u64, text: &str) -> change::Kind {
        change::Kind::Post(PostCreated {
            author,
            post_id: 1,
            text: text.into(),
            author_name: String::new(),
            number: 0,
            ..Default::default()
        })
    }

    fn follow(follower: u64, followee: u64) -> change::Kind {
        change::Kind::Follow(FollowChanged {
            follower,
            followee,
            following: true,
        })
    }

    #[test]
    fn changes_made_in_the_actors_home_cluster_pass() {
        // 3 clusters: user 2 lives in cluster 2, user 4 in cluster 1.
        assert_eq!(check_remote(&remote(2, post(2, "hi")), 1, 3, NOW), Ok(()));
        assert_eq!(check_remote(&remote(1, follow(4, 2)), 2, 3, NOW), Ok(()));
        let user = |user_id, name: &str| {
            change::Kind::User(UserCreated {
                user_id,
                username: name.into(),
            })
        };
        assert_eq!(check_remote(&remote(3, user(3, "")), 1, 3, NOW), Ok(()));
        // "alice" belongs to cluster 3 of 3, "bob" to cluster 1.
        assert_eq!(check_remote(&remote(3, user(3, "alice")), 1, 3, NOW), Ok(()));
        assert!(matches!(
            check_remote(&remote(3, user(3, "bob")), 1, 3, NOW),
            Err(RemoteError::Content(_))
        ));
        assert!(matches!(
            check_remote(&remote(3, user(3, "Alice")), 1, 3, NOW),
            Err(RemoteError::Content(_))
        ));
    }

    #[test]
    fn a_profile_comes_only_from_its_users_home_and_within_bounds() {
        let profile = |user_id, bio: &str| {
            change::Kind::Profile(tinysns_common::proto::internal::ProfileSet {
                user_id,
                display_name: "Name".into(),
                bio: bio.into(),
            })
        };
        assert_eq!(check_remote(&remote(2, profile(2, "ok")), 1, 3, NOW), Ok(()));
        assert_eq!(
            check_remote(&remote(2, profile(1, "forged")), 3, 3, NOW),
            Err(RemoteError::NotHome {
                user: 1,
                home: 1,
                origin: 2
            })
        );
        let long = "x".repeat(tinysns_common::limits::MAX_BIO_CHARS + 1);
        assert!(matches!(
            check_remote(&remote(2, profile(2, &long)), 1, 3, NOW),
            Err(RemoteError::Content(_))
        ));
        assert!(matches!(
            check_remote(&remote(2, profile(2, "a\nb")), 1, 3, NOW),
            Err(RemoteError::Content(_))
        ));
    }

    #[test]
    fn a_like_comes_only_from_its_likers_home_and_names_a_possible_post() {
        let like = |liker, author, number| {
            change::Kind::Like(tinysns_common::proto::internal::LikeSet {
                post_author: author,
                post_number: number,
                liker,
                liked: true,
                ..Default::default()
            })
        };
        // Liker 2 lives in cluster 2; the post's author may live anywhere.
        assert_eq!(check_remote(&remote(2, like(2, 1, 4)), 3, 3, NOW), Ok(()));
        assert_eq!(
            check_remote(&remote(2, like(3, 1, 4)), 1, 3, NOW),
            Err(RemoteError::NotHome {
                user: 3,
                home: 3,
                origin: 2
            })
        );
        for (author, number) in [(0, 1), (1, 0), (1, MAX_LSN + 1)] {
            assert!(
                matches!(
                    check_remote(&remote(2, like(2, author, number)), 1, 3, NOW),
                    Err(RemoteError::Content(_))
                ),
                "{author}/{number}"
            );
        }
    }

    #[test]
    fn a_deletion_comes_only_from_the_authors_home_and_a_reply_names_a_possible_post() {
        let deleted =
            |author, number| change::Kind::PostDeleted(tinysns_common::proto::internal::PostDeleted { author, number });
        assert_eq!(check_remote(&remote(2, deleted(2, 7)), 1, 3, NOW), Ok(()));
        assert!(matches!(
            check_remote(&remote(2, deleted(1, 7)), 3, 3, NOW),
            Err(RemoteError::NotHome { .. })
        ));
        assert!(matches!(
            check_remote(&remote(2, deleted(2, 0)), 1, 3, NOW),
            Err(RemoteError::Content(_))
        ));
        let reply = |author, number| {
            change::Kind::Post(PostCreated {
                reply_to_author: author,
                reply_to_number: number,
                ..match post(2, "re") {
                    change::Kind::Post(p) => p,
                    _ => unreachable!(),
                }
            })
        };
        assert_eq!(check_remote(&remote(2, reply(1, 3)), 1, 3, NOW), Ok(()));
        for (author, number) in [(0, 3), (1, 0), (1, MAX_LSN + 1)] {
            assert!(
                matches!(
                    check_remote(&remote(2, reply(author, number)), 1, 3, NOW),
                    Err(RemoteError::Content(_))
                ),
                "{author}/{number}"
            );
        }
    }

    #[test]
    fn a_direct_message_comes_from_its_senders_home_and_stays_with_its_two_users() {
        let dm = |sender, recipient, text: &str| {
            change::Kind::DirectMessage(tinysns_common::proto::internal::DirectMessage {
                sender,
                recipient,
                message_id: 1,
                text: text.into(),
                sender_name: String::new(),
            })
        };
        // Sender 2 lives in cluster 2, recipient 3 in cluster 3.
        let message = remote(2, dm(2, 3, "hi"));
        assert_eq!(check_remote(&message, 3, 3, NOW), Ok(()));
        assert!(stored_here(&message, 3, 3));
        assert!(!stored_here(&message, 1, 3), "cluster 1 holds neither user");
        assert!(matches!(
            check_remote(&remote(2, dm(1, 3, "forged")), 3, 3, NOW),
            Err(RemoteError::NotHome { .. })
        ));
        for bad in [dm(2, 2, "me"), dm(2, 0, "nobody"), dm(2, 3, ""), dm(2, 3, "bell\u{7}")] {
            assert!(matches!(
                check_remote(&remote(2, bad), 3, 3, NOW),
                Err(RemoteError::Content(_))
            ));
        }
        let read = change::Kind::ConversationRead(tinysns_common::proto::internal::ConversationRead {
            reader: 2,
            peer: 3,
            up_to_hlc: 5,
        });
        assert!(matches!(
            check_remote(&remote(2, read), 3, 3, NOW),
            Err(RemoteError::Content(_))
        ));
        let block = |blocker, blocked| {
            change::Kind::Block(tinysns_common::proto::internal::BlockSet {
                blocker,
                blocked,
                blocking: true,
            })
        };
        assert_eq!(check_remote(&remote(2, block(2, 3)), 1, 3, NOW), Ok(()));
        assert!(matches!(
            check_remote(&remote(2, block(2, 2)), 1, 3, NOW),
            Err(RemoteError::Content(_))
        ));
        assert!(stored_here(&remote(2, block(2, 3)), 1, 3));
    }

    #[test]
    fn forged_changes_are_refused() {
        // A post by user 1 (cluster 1) claimed to come from cluster 2.
        assert_eq!(
            check_remote(&remote(2, post(1, "forged")), 3, 3, NOW),
            Err(RemoteError::NotHome {
                user: 1,
                home: 1,
                origin: 2
            })
        );
        // A follow pinned by a position no log reaches.
        let mut pinned = remote(2, follow(2, 1));
        pinned.origin_lsn = i64::MAX as u64;
        assert_eq!(
            check_remote(&pinned, 1, 3, NOW),
            Err(RemoteError::Position(i64::MAX as u64))
        );
        pinned.origin_lsn = 0;
        assert_eq!(check_remote(&pinned, 1, 3, NOW), Err(RemoteError::Position(0)));
        // Timestamps far in the future or the past, or none.
        for ts in [NOW + MAX_FUTURE_SKEW_MS + 1, NOW - MAX_AGE_MS - 1, 0, -5, i64::MAX] {
            let mut r = remote(2, post(2, "t"));
            r.timestamp_ms = ts;
            assert!(
                matches!(check_remote(&r, 1, 3, NOW), Err(RemoteError::Timestamp { .. })),
                "{ts}"
            );
        }
        // A clock stamp running further ahead (or behind) than a wall clock may.
        for hlc in [
            (NOW + MAX_FUTURE_SKEW_MS + 1) as u64 * 1000,
            (NOW - MAX_AGE_MS - 1) as u64 * 1000,
            u64::MAX,
        ] {
            let mut r = remote(2, post(2, "t"));
            r.hlc = hlc;
            assert!(
                matches!(check_remote(&r, 1, 3, NOW), Err(RemoteError::Timestamp { .. })),
                "{hlc}"
            );
        }
        let mut skewed = remote(2, post(2, "t"));
        skewed.hlc = (NOW + 300_000) as u64 * 1000;
        assert_eq!(check_remote(&skewed, 1, 3, NOW), Ok(()), "5 minutes of skew pass");
        // Origins that are us, zero or beyond the clusters.
        for origin in [0, 1, 4] {
            assert!(matches!(
                check_remote(&remote(origin, post(2, "x")), 1, 3, NOW),
                Err(RemoteError::Origin { .. })
            ));
        }
        // Content: empty, self-follow, bad text, user 0.
        let mut empty = remote(2, post(2, "x"));
        empty.change = None;
        assert_eq!(check_remote(&empty, 1, 3, NOW), Err(RemoteError::Empty));
        assert!(matches!(
            check_remote(&remote(2, follow(2, 2)), 1, 3, NOW),
            Err(RemoteError::Content(_))
        ));
        assert!(matches!(
            check_remote(&remote(2, follow(2, 0)), 1, 3, NOW),
            Err(RemoteError::Content(_))
        ));
        assert!(matches!(
            check_remote(&remote(2, post(2, "a\nb")), 1, 3, NOW),
            Err(RemoteError::Content(_))
        ));
        assert!(matches!(
            check_remote(&remote(2, post(0, "x")), 1, 3, NOW),
            Err(RemoteError::Content(_))
        ));
    }

    #[test]
    fn only_a_topics_home_numbers_it_and_topics_must_be_canonical() {
        let numbered = |topic: &str, seq: u64| {
            change::Kind::TopicSequenced(TopicSequenced {
                topic: topic.into(),
                seq,
                post: Some(PostCreated {
                    author: 2,
                    post_id: 1,
                    text: "#rust".into(),
                    number: 1,
                    ..Default::default()
                }),
                post_hlc: 0,
                numbering_only: false,
            })
        };
        let home = topics::home_cluster("rust", 3);
        let elsewhere = home % 3 + 1;
        let here = 6 - home - elsewhere;
        assert_eq!(check_remote(&remote(home, numbered("rust", 1)), here, 3, NOW), Ok(()));
        assert!(matches!(
            check_remote(&remote(elsewhere, numbered("rust", 1)), here, 3, NOW),
            Err(RemoteError::NotTopicHome { .. })
        ));
        for bad in [numbered("Rust", 1), numbered("rust", 0)] {
            assert!(matches!(
                check_remote(&remote(home, bad), here, 3, NOW),
                Err(RemoteError::Content(_))
            ));
        }
        // The number alone (for a cluster that does not keep the post) carries no text.
        let bare = |text: &str| {
            let change::Kind::TopicSequenced(mut t) = numbered("rust", 1) else {
                unreachable!()
            };
            t.numbering_only = true;
            t.post.as_mut().unwrap().text = text.into();
            change::Kind::TopicSequenced(t)
        };
        assert_eq!(check_remote(&remote(home, bare("")), here, 3, NOW), Ok(()));
        assert!(matches!(
            check_remote(&remote(home, bare("#rust")), here, 3, NOW),
            Err(RemoteError::Content(_))
        ));
        let tagged = |topics: Vec<String>| {
            change::Kind::Post(PostCreated {
                author: 2,
                post_id: 1,
                text: "x".into(),
                topics,
                ..Default::default()
            })
        };
        assert_eq!(check_remote(&remote(2, tagged(vec!["go".into()])), 1, 3, NOW), Ok(()));
        let too_many = (0..11).map(|i| format!("t{i}")).collect();
        for bad in [tagged(vec!["Go".into()]), tagged(too_many)] {
            assert!(matches!(
                check_remote(&remote(2, bad), 1, 3, NOW),
                Err(RemoteError::Content(_))
            ));
        }
        let subscription = |user, topic: &str| {
            change::Kind::TopicSubscription(tinysns_common::proto::internal::TopicSubscription {
                user,
                topic: topic.into(),
                subscribed: true,
            })
        };
        assert_eq!(check_remote(&remote(2, subscription(2, "go")), 1, 3, NOW), Ok(()));
        assert!(matches!(
            check_remote(&remote(2, subscription(3, "go")), 1, 3, NOW),
            Err(RemoteError::NotHome { .. })
        ));
    }
}
