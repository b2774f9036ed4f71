//! What each command means, checked against a temporary store.

use super::*;
use tinysns_common::proto::internal::LogEntry;

/// Decides `command` on `conn` and, if it writes, appends and applies the entry.
pub(super) fn run(conn: &mut Connection, command: Command) -> Outcome {
    let tx = conn.transaction().unwrap();
    let lsn = store::last_lsn(&tx).unwrap() + 1;
    let outcome = match decide(&tx, &command).unwrap() {
        Decision::Write { kind, origin } => {
            // As the writer stamps them: a clock that moves on with every entry.
            let (origin_cluster, origin_lsn, hlc) =
                origin.map_or((2, lsn, 1_000_000 + lsn), |o| (o.cluster, o.lsn, o.hlc));
            let entry = LogEntry {
                lsn,
                term: 1,
                timestamp_ms: 1_000,
                origin_cluster,
                origin_lsn,
                kind: Some(kind),
                hlc,
            };
            store::append(&tx, &entry).unwrap();
            Outcome::Written(lsn)
        }
        Decision::Done(outcome) => outcome,
    };
    tx.commit().unwrap();
    outcome
}

pub(super) fn register(name: &str) -> Command {
    Command::Register(Registration {
        username: name.into(),
        password_phc: format!("$phc-of-{name}"),
        cluster: 2,
        clusters: 3,
    })
}

fn session(user: u64, token: u8, expires_ms: i64) -> Command {
    Command::StartSession {
        user,
        token_hash: vec![token; 32],
        expires_ms,
    }
}

#[test]
fn a_name_is_registered_once_with_ids_of_the_clusters_class() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = store::open(dir.path()).unwrap();
    assert!(matches!(run(&mut c, register("alice")), Outcome::Written(_)));
    assert!(matches!(run(&mut c, register("bob")), Outcome::Written(_)));
    assert!(matches!(
        run(&mut c, register("alice")),
        Outcome::Rejected(Status::FailureAlreadyExists, _)
    ));
    // Cluster 2 of 3 hands out 2, 5, 8...
    assert_eq!(store::user_by_name(&c, "alice").unwrap(), Some(2));
    assert_eq!(store::user_by_name(&c, "bob").unwrap(), Some(5));
    assert_eq!(store::password_hash(&c, 2).unwrap().as_deref(), Some("$phc-of-alice"));
    // An id taken by someone else (an open-mode user) is skipped.
    run(&mut c, Command::CreateUser { user: 8 });
    run(&mut c, register("carol"));
    assert_eq!(store::user_by_name(&c, "carol").unwrap(), Some(11));
}

fn post(author: u64, post_id: u64) -> Command {
    Command::Post {
        author,
        author_name: String::new(),
        post_id,
        text: format!("post {post_id}"),
        reply_to: None,
        parent_vouched: false,
        topics: Vec::new(),
    }
}

fn like(liker: u64, author: u64, number: u64, on: bool) -> Command {
    Command::Like {
        liker,
        liker_name: String::new(),
        author,
        number,
        on,
        vouched: false,
    }
}

fn remote_like(liker: u64, origin_lsn: u64, on: bool) -> Command {
    Command::Remote(RemoteChange {
        origin_cluster: 1,
        origin_lsn,
        timestamp_ms: 1_000,
        change: Some(Change {
            kind: Some(change::Kind::Like(LikeSet {
                post_author: 2,
                post_number: 1,
                liker,
                liked: on,
                ..Default::default()
            })),
        }),
        hlc: 0,
    })
}

#[test]
fn an_authors_posts_are_numbered_in_order_and_a_resent_post_keeps_its_number() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = store::open(dir.path()).unwrap();
    run(&mut c, Command::CreateUser { user: 2 });
    run(&mut c, Command::CreateUser { user: 5 });
    for (author, post_id) in [(2, 70), (5, 3), (2, 11), (2, 70)] {
        run(&mut c, post(author, post_id));
    }
    let numbers = |author| {
        store::posts_of(&c, author, 0, 10, 0)
            .unwrap()
            .iter()
            .map(|p| (p.post_id, p.number))
            .collect::<Vec<_>>()
    };
    assert_eq!(numbers(2), [(11, 2), (70, 1)]);
    assert_eq!(numbers(5), [(3, 1)]);
    assert_eq!(store::highest_post_number(&c, 9).unwrap(), 0);
}

#[test]
fn liking_is_idempotent_needs_the_post_and_the_last_like_from_home_wins() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = store::open(dir.path()).unwrap();
    run(&mut c, Command::CreateUser { user: 2 });
    assert!(matches!(
        run(&mut c, like(4, 2, 1, true)),
        Outcome::Rejected(Status::FailureNotExists, _)
    ));
    run(&mut c, post(2, 9));
    assert!(matches!(run(&mut c, like(4, 2, 1, true)), Outcome::Written(_)));
    assert_eq!(run(&mut c, like(4, 2, 1, true)), Outcome::Unchanged(None));
    assert!(matches!(run(&mut c, like(7, 2, 1, true)), Outcome::Written(_)));
    assert_eq!(store::like_count(&c, 2, 1).unwrap(), 2);
    assert!(matches!(run(&mut c, like(4, 2, 1, false)), Outcome::Written(_)));
    assert_eq!(run(&mut c, like(4, 2, 1, false)), Outcome::Unchanged(None));
    assert_eq!(store::like_count(&c, 2, 1).unwrap(), 1);
    let likers = store::likers_page(&c, 2, 1, 0, 10).unwrap();
    assert_eq!(likers.iter().map(|u| u.id).collect::<Vec<_>>(), [7]);
    // Another cluster's liker: its home's log order decides, whatever order arrives.
    assert!(matches!(run(&mut c, remote_like(10, 8, true)), Outcome::Written(_)));
    assert!(matches!(run(&mut c, remote_like(10, 12, false)), Outcome::Written(_)));
    assert_eq!(run(&mut c, remote_like(10, 8, true)), Outcome::Unchanged(None));
    assert_eq!(run(&mut c, remote_like(10, 12, false)), Outcome::Unchanged(None));
    assert_eq!(store::like_state(&c, 2, 1, 10).unwrap(), Some((false, 12)));
    // A like of a post this cluster does not hold (yet) is kept: counts converge.
    let early = Command::Remote(RemoteChange {
        origin_cluster: 1,
        origin_lsn: 20,
        timestamp_ms: 1_000,
        change: Some(Change {
            kind: Some(change::Kind::Like(LikeSet {
                post_author: 2,
                post_number: 5,
                liker: 10,
                liked: true,
                ..Default::default()
            })),
        }),
        hlc: 0,
    });
    assert!(matches!(run(&mut c, early), Outcome::Written(_)));
    assert_eq!(store::like_count(&c, 2, 5).unwrap(), 1);
}

fn reply(author: u64, post_id: u64, to: (u64, u64)) -> Command {
    match post(author, post_id) {
        Command::Post {
            author,
            author_name,
            post_id,
            text,
            ..
        } => Command::Post {
            author,
            author_name,
            post_id,
            text,
            reply_to: Some(to),
            parent_vouched: false,
            topics: Vec::new(),
        },
        _ => unreachable!(),
    }
}

/// The copy of `author`'s post `post_id` (number `number`) another cluster sends.
fn remote_post(author: u64, post_id: u64, number: u64, origin_lsn: u64) -> Command {
    Command::Remote(RemoteChange {
        origin_cluster: 1,
        origin_lsn,
        timestamp_ms: 1_000,
        change: Some(Change {
            kind: Some(change::Kind::Post(PostCreated {
                author,
                post_id,
                text: "late".into(),
                number,
                ..Default::default()
            })),
        }),
        hlc: 0,
    })
}

#[test]
fn replies_need_their_post_and_page_in_the_order_they_were_made() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = store::open(dir.path()).unwrap();
    for user in [2, 5] {
        run(&mut c, Command::CreateUser { user });
    }
    assert!(matches!(
        run(&mut c, reply(5, 1, (2, 1))),
        Outcome::Rejected(Status::FailureNotExists, _)
    ));
    run(&mut c, post(2, 10));
    for post_id in 1..=5 {
        assert!(matches!(run(&mut c, reply(5, post_id, (2, 1))), Outcome::Written(_)));
    }
    let mut seen = Vec::new();
    let mut after = store::ReplyCursor::default();
    loop {
        let page = store::replies_to(&c, 2, 1, after, 2, 0).unwrap();
        let Some((_, last)) = page.last() else { break };
        after = store::ReplyCursor::parse(&last.token()).expect("a token reads back");
        seen.extend(page.iter().map(|(p, _)| p.number));
    }
    assert_eq!(seen, [1, 2, 3, 4, 5]);
    let root = store::with_counts(&c, store::post_by_number(&c, 2, 1).unwrap().unwrap(), 0).unwrap();
    assert_eq!(root.replies, 5);
    for bad in ["x", "1-2", "1-2-3-4", "-1-2-3", "99999999999999999999-1-1"] {
        assert_eq!(store::ReplyCursor::parse(bad), None, "{bad}");
    }
}

#[test]
fn a_post_kept_only_at_its_authors_cluster_is_liked_and_answered_once_vouched_for_unless_deleted_here() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = store::open(dir.path()).unwrap();
    for user in [2, 5] {
        run(&mut c, Command::CreateUser { user });
    }
    // Post 2/1 is not stored here: its author's cluster vouched for it.
    let vouched_like = Command::Like {
        liker_name: String::new(),
        liker: 5,
        author: 2,
        number: 1,
        on: true,
        vouched: true,
    };
    assert!(matches!(run(&mut c, vouched_like), Outcome::Written(_)));
    assert_eq!(store::like_count(&c, 2, 1).unwrap(), 1);
    let vouched_reply = |post_id| match reply(5, post_id, (2, 1)) {
        Command::Post {
            author,
            author_name,
            post_id,
            text,
            reply_to,
            topics,
            ..
        } => Command::Post {
            author,
            author_name,
            post_id,
            text,
            reply_to,
            parent_vouched: true,
            topics,
        },
        _ => unreachable!(),
    };
    assert!(matches!(run(&mut c, vouched_reply(1)), Outcome::Written(_)));
    // Deleted meanwhile (its tombstone arrived here): vouching does not bring it back.
    let tombstone = Command::Remote(RemoteChange {
        origin_cluster: 1,
        origin_lsn: 50,
        timestamp_ms: 1_000,
        change: Some(Change {
            kind: Some(change::Kind::PostDeleted(PostDeleted { author: 2, number: 1 })),
        }),
        hlc: 0,
    });
    assert!(matches!(run(&mut c, tombstone), Outcome::Written(_)));
    let late_like = Command::Like {
        liker_name: String::new(),
        liker: 2,
        author: 2,
        number: 1,
        on: true,
        vouched: true,
    };
    assert!(matches!(
        run(&mut c, late_like),
        Outcome::Rejected(Status::FailureNotExists, _)
    ));
    assert!(matches!(
        run(&mut c, vouched_reply(2)),
        Outcome::Rejected(Status::FailureNotExists, _)
    ));
}

#[test]
fn a_deleted_post_stays_deleted_whatever_arrives_later() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = store::open(dir.path()).unwrap();
    run(&mut c, Command::CreateUser { user: 2 });
    let delete = |number| Command::DeletePost { author: 2, number };
    assert!(matches!(
        run(&mut c, delete(1)),
        Outcome::Rejected(Status::FailureNotExists, _)
    ));
    run(&mut c, post(2, 10));
    run(&mut c, like(4, 2, 1, true));
    assert!(matches!(run(&mut c, delete(1)), Outcome::Written(_)));
    assert_eq!(run(&mut c, delete(1)), Outcome::Unchanged(None), "idempotent");
    assert_eq!(store::post_by_number(&c, 2, 1).unwrap(), None);
    assert_eq!(store::like_count(&c, 2, 1).unwrap(), 0);
    assert!(matches!(
        run(&mut c, like(7, 2, 1, true)),
        Outcome::Rejected(Status::FailureNotExists, _)
    ));
    // A redelivered copy of the post, and a late like from another cluster: ignored.
    assert_eq!(run(&mut c, remote_post(2, 10, 1, 40)), Outcome::Unchanged(None));
    assert_eq!(run(&mut c, remote_like(10, 41, true)), Outcome::Unchanged(None));
    assert_eq!(store::post_by_number(&c, 2, 1).unwrap(), None);
    // The next post takes the next number: a name is never reused.
    run(&mut c, post(2, 11));
    assert_eq!(store::post_number(&c, 2, 11).unwrap(), Some(2));
}

#[test]
fn a_deletion_dropped_with_a_deposed_masters_suffix_brings_the_post_back_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = store::open(dir.path()).unwrap();
    run(&mut c, Command::CreateUser { user: 2 });
    run(&mut c, post(2, 10));
    run(&mut c, reply(2, 11, (2, 1)));
    run(&mut c, like(4, 2, 1, true));
    let before = store::state_digest(&c).unwrap();
    let kept = store::last_lsn(&c).unwrap();
    run(&mut c, Command::DeletePost { author: 2, number: 1 });
    assert_ne!(store::state_digest(&c).unwrap(), before);
    store::truncate_after(&mut c, kept).unwrap();
    assert_eq!(store::state_digest(&c).unwrap(), before);
    assert!(!store::is_tombstoned(&c, 2, 1).unwrap());
    assert_eq!(store::like_count(&c, 2, 1).unwrap(), 1);
}

fn set_profile(user: u64, name: Option<&str>, bio: Option<&str>) -> Command {
    Command::SetProfile {
        user,
        display_name: name.map(str::to_owned),
        bio: bio.map(str::to_owned),
    }
}

fn remote_profile(user: u64, origin_lsn: u64, name: &str) -> Command {
    Command::Remote(RemoteChange {
        origin_cluster: 1,
        origin_lsn,
        timestamp_ms: 1_000,
        change: Some(Change {
            kind: Some(change::Kind::Profile(ProfileSet {
                user_id: user,
                display_name: name.into(),
                bio: String::new(),
            })),
        }),
        hlc: 0,
    })
}

#[test]
fn a_profile_is_set_field_by_field_and_unchanged_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = store::open(dir.path()).unwrap();
    assert!(matches!(
        run(&mut c, set_profile(2, Some("Alice"), None)),
        Outcome::Rejected(Status::FailureNotExists, _)
    ));
    run(&mut c, register("alice"));
    assert!(matches!(
        run(&mut c, set_profile(2, Some("Alice"), None)),
        Outcome::Written(_)
    ));
    assert!(matches!(
        run(&mut c, set_profile(2, None, Some("hi"))),
        Outcome::Written(_)
    ));
    let (name, bio, _) = store::profile_fields(&c, 2).unwrap().expect("a profile");
    assert_eq!((name.as_str(), bio.as_str()), ("Alice", "hi"), "the name was kept");
    assert_eq!(
        run(&mut c, set_profile(2, Some("Alice"), Some("hi"))),
        Outcome::Unchanged(None)
    );
    assert!(matches!(
        run(&mut c, set_profile(2, Some(""), None)),
        Outcome::Written(_)
    ));
    assert_eq!(store::profile_fields(&c, 2).unwrap().map(|p| p.0), Some(String::new()));
}

#[test]
fn a_remote_profile_applies_only_if_newer_than_what_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = store::open(dir.path()).unwrap();
    assert!(matches!(
        run(&mut c, remote_profile(4, 10, "newer")),
        Outcome::Written(_)
    ));
    // A redelivered or reordered older change is not applied over it.
    assert_eq!(run(&mut c, remote_profile(4, 7, "older")), Outcome::Unchanged(None));
    assert_eq!(run(&mut c, remote_profile(4, 10, "newer")), Outcome::Unchanged(None));
    assert_eq!(
        store::profile_fields(&c, 4).unwrap(),
        Some(("newer".to_owned(), String::new(), 10))
    );
    assert!(matches!(
        run(&mut c, remote_profile(4, 12, "newest")),
        Outcome::Written(_)
    ));
    assert_eq!(
        store::profile_fields(&c, 4).unwrap().map(|p| p.0),
        Some("newest".to_owned())
    );
}

#[test]
fn sessions_end_by_logout_and_by_a_password_change_except_the_changers() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = store::open(dir.path()).unwrap();
    run(&mut c, register("alice"));
    for token in [1, 2, 3] {
        assert!(matches!(run(&mut c, session(2, token, 5_000)), Outcome::Written(_)));
    }
    assert!(matches!(
        run(&mut c, session(99, 4, 5_000)),
        Outcome::Rejected(Status::FailureNotExists, _)
    ));
    run(
        &mut c,
        Command::EndSession {
            token_hash: vec![1; 32],
        },
    );
    assert_eq!(store::session(&c, &[1; 32]).unwrap(), None);
    assert_eq!(
        run(
            &mut c,
            Command::EndSession {
                token_hash: vec![1; 32]
            }
        ),
        Outcome::Unchanged(None)
    );
    let change = Command::SetPassword {
        user: 2,
        password_phc: "$new".into(),
        keep_session: vec![3; 32],
    };
    assert!(matches!(run(&mut c, change), Outcome::Written(_)));
    assert_eq!(store::session(&c, &[2; 32]).unwrap(), None, "other sessions end");
    assert_eq!(store::session(&c, &[3; 32]).unwrap(), Some((2, 5_000)));
    assert_eq!(store::password_hash(&c, 2).unwrap().as_deref(), Some("$new"));
}

#[test]
fn expired_sessions_are_swept_when_the_user_logs_in_again() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = store::open(dir.path()).unwrap();
    run(&mut c, register("alice"));
    // Expired before the entries' timestamp (1 000).
    run(&mut c, session(2, 1, 500));
    run(&mut c, session(2, 2, 5_000));
    assert_eq!(store::session(&c, &[1; 32]).unwrap(), None);
    assert!(store::session(&c, &[2; 32]).unwrap().is_some());
}

/// A change cluster 3 made at its `lsn`.
fn remote(lsn: u64, kind: change::Kind) -> Command {
    Command::Remote(RemoteChange {
        origin_cluster: 3,
        origin_lsn: lsn,
        timestamp_ms: 1_000,
        change: Some(Change { kind: Some(kind) }),
        hlc: 0,
    })
}

fn follow(follower: u64, followee: u64, following: bool) -> change::Kind {
    change::Kind::Follow(FollowChanged {
        follower,
        followee,
        following,
    })
}

#[test]
fn a_redelivered_remote_change_is_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = store::open(dir.path()).unwrap();
    let user = change::Kind::User(tinysns_common::proto::internal::UserCreated {
        user_id: 3,
        username: String::new(),
    });
    let post = change::Kind::Post(PostCreated {
        author: 3,
        post_id: 77,
        text: "hello".into(),
        author_name: String::new(),
        number: 0,
        ..Default::default()
    });
    for (lsn, kind) in [(1, user), (2, post)] {
        assert!(matches!(run(&mut c, remote(lsn, kind.clone())), Outcome::Written(_)));
        // The bus redelivers it (a consumer died before its ack): nothing changes.
        assert_eq!(run(&mut c, remote(lsn, kind)), Outcome::Unchanged(None));
    }
    assert_eq!(store::last_lsn(&c).unwrap(), 2, "two entries, not four");
    assert!(store::post_seq(&c, 3, 77).unwrap().is_some());
}

#[test]
fn remote_follows_arriving_out_of_order_end_in_the_origins_last_state() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = store::open(dir.path()).unwrap();
    // Cluster 3 had 3 follow 1 (lsn 5), then unfollow (lsn 7); the unfollow arrives first
    // (a batch redelivered after a newer one).
    assert!(matches!(
        run(&mut c, remote(7, follow(3, 1, false))),
        Outcome::Written(_)
    ));
    assert_eq!(run(&mut c, remote(5, follow(3, 1, true))), Outcome::Unchanged(None));
    assert_eq!(store::follow_state(&c, 3, 1).unwrap().map(|(on, _)| on), Some(false));
    // A newer follow (lsn 9) still applies.
    assert!(matches!(
        run(&mut c, remote(9, follow(3, 1, true))),
        Outcome::Written(_)
    ));
    assert_eq!(store::follow_state(&c, 3, 1).unwrap(), Some((true, 9)));
}

#[test]
fn a_refusal_is_an_answer_without_an_entry() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = store::open(dir.path()).unwrap();
    let refuse = Command::Refuse {
        status: Status::FailureNotExists,
        message: "no user is named x".into(),
    };
    assert_eq!(
        run(&mut c, refuse),
        Outcome::Rejected(Status::FailureNotExists, "no user is named x".into())
    );
    assert_eq!(store::last_lsn(&c).unwrap(), 0);
}

fn message(sender: u64, recipient: u64, message_id: u64) -> Command {
    Command::SendMessage {
        sender,
        sender_name: String::new(),
        recipient,
        message_id,
        text: format!("message {message_id}"),
    }
}

fn unread(c: &Connection, owner: u64, peer: u64) -> u64 {
    store::inbox_entry(c, owner, peer).unwrap().map_or(0, |e| e.unread)
}

#[test]
fn a_message_is_stored_once_counts_as_unread_until_read_and_both_see_the_conversation() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = store::open(dir.path()).unwrap();
    for user in [2, 5] {
        run(&mut c, Command::CreateUser { user });
    }
    assert!(matches!(
        run(&mut c, message(2, 9, 1)),
        Outcome::Rejected(Status::FailureNotExists, _)
    ));
    assert!(matches!(
        run(&mut c, message(2, 2, 1)),
        Outcome::Rejected(Status::FailureInvalid, _)
    ));
    for id in 1..=3 {
        assert!(matches!(run(&mut c, message(2, 5, id)), Outcome::Written(_)));
    }
    assert_eq!(
        run(&mut c, message(2, 5, 3)),
        Outcome::Unchanged(None),
        "a re-sent message"
    );
    assert_eq!((unread(&c, 5, 2), unread(&c, 2, 5)), (3, 0));
    assert_eq!(store::unread_total(&c, 5).unwrap(), 3);
    let talk = store::conversation(&c, 5, 2, 0, 10).unwrap();
    assert_eq!(talk.iter().map(|m| m.message_id).collect::<Vec<_>>(), [3, 2, 1]);
    assert_eq!(
        store::conversation(&c, 2, 5, 0, 10).unwrap(),
        talk,
        "the same from either side"
    );
    // Reading up to the second message leaves one unread; reading all leaves none.
    let read = |up_to_hlc| Command::ReadConversation {
        reader: 5,
        peer: 2,
        up_to_hlc,
    };
    assert!(matches!(run(&mut c, read(talk[1].hlc)), Outcome::Written(_)));
    assert_eq!(unread(&c, 5, 2), 1);
    run(&mut c, read(talk[0].hlc));
    assert_eq!(unread(&c, 5, 2), 0);
    assert_eq!(run(&mut c, read(talk[0].hlc)), Outcome::Unchanged(None));
    // A reply from 5 does not count as unread for 5.
    run(&mut c, message(5, 2, 1));
    assert_eq!((unread(&c, 5, 2), unread(&c, 2, 5)), (0, 1));
    let inbox = store::inbox(&c, 2, 0, 10).unwrap();
    assert_eq!(inbox.iter().map(|e| (e.peer, e.unread)).collect::<Vec<_>>(), [(5, 1)]);
}

#[test]
fn a_block_stops_messages_and_follows_and_ends_the_follow_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = store::open(dir.path()).unwrap();
    for user in [2, 5] {
        run(&mut c, Command::CreateUser { user });
    }
    let follow = |on| Command::Follow {
        follower: 5,
        followee: 2,
        on,
    };
    let block = |on| Command::Block {
        blocker: 2,
        blocked: 5,
        on,
    };
    run(&mut c, follow(true));
    assert!(matches!(run(&mut c, block(true)), Outcome::Written(_)));
    assert_eq!(run(&mut c, block(true)), Outcome::Unchanged(None));
    assert_eq!(
        store::follow_state(&c, 5, 2).unwrap().map(|(f, _)| f),
        Some(false),
        "the follow ended"
    );
    assert!(matches!(
        run(&mut c, message(5, 2, 1)),
        Outcome::Rejected(Status::FailureInvalid, _)
    ));
    assert!(matches!(
        run(&mut c, follow(true)),
        Outcome::Rejected(Status::FailureNotExists, _)
    ));
    // A follow made at 5's home before the block reached it, arriving here late, loses.
    let late = Command::Remote(RemoteChange {
        origin_cluster: 1,
        origin_lsn: 999,
        timestamp_ms: 1_000,
        change: Some(Change {
            kind: Some(change::Kind::Follow(FollowChanged {
                follower: 5,
                followee: 2,
                following: true,
            })),
        }),
        hlc: 0,
    });
    assert_eq!(run(&mut c, late), Outcome::Unchanged(None));
    // 2 may still message 5; after unblocking, 5 may message and follow again.
    assert!(matches!(run(&mut c, message(2, 5, 1)), Outcome::Written(_)));
    assert!(matches!(
        run(
            &mut c,
            Command::Block {
                blocker: 2,
                blocked: 2,
                on: true
            }
        ),
        Outcome::Rejected(Status::FailureInvalid, _)
    ));
    run(&mut c, block(false));
    assert!(matches!(run(&mut c, message(5, 2, 1)), Outcome::Written(_)));
    assert!(matches!(run(&mut c, follow(true)), Outcome::Written(_)));
}
