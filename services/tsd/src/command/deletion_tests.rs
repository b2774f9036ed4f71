//! What deleting an account means: two phases, everything of the user gone in phase 2, the
//! name free again, and nothing about the user taken in afterwards.

use super::tests::{register, run};
use super::*;

pub(super) fn remote(origin_cluster: u32, origin_lsn: u64, kind: change::Kind) -> Command {
    Command::Remote(RemoteChange {
        origin_cluster,
        origin_lsn,
        timestamp_ms: 1_000,
        change: Some(Change { kind: Some(kind) }),
        hlc: 0,
    })
}

fn count(c: &Connection, sql: &str) -> i64 {
    c.query_row(sql, [], |r| r.get(0)).unwrap()
}

#[test]
fn an_account_is_deleted_in_two_phases_and_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = store::open(dir.path()).unwrap();
    // Cluster 2 of 3: alice is user 2, bob user 5.
    run(&mut c, register("alice"));
    run(&mut c, register("bob"));
    let post = |author, post_id, topics: &[&str]| Command::Post {
        author,
        author_name: String::new(),
        post_id,
        text: "hello".into(),
        reply_to: None,
        parent_vouched: false,
        topics: topics.iter().map(|t| t.to_string()).collect(),
    };
    run(&mut c, post(2, 1, &["rust"]));
    run(&mut c, post(5, 1, &["rust"]));
    for p in store::pending_topic_posts(&c, 0, 10).unwrap() {
        run(
            &mut c,
            Command::SequenceTopic {
                topic: p.topic,
                author: p.author,
                number: p.number,
            },
        );
    }
    run(
        &mut c,
        Command::Follow {
            follower: 5,
            followee: 2,
            on: true,
        },
    );
    run(
        &mut c,
        Command::Follow {
            follower: 2,
            followee: 5,
            on: true,
        },
    );
    run(
        &mut c,
        Command::Like {
            liker_name: String::new(),
            liker: 5,
            author: 2,
            number: 1,
            on: true,
            vouched: false,
        },
    );
    run(
        &mut c,
        Command::Like {
            liker_name: String::new(),
            liker: 2,
            author: 5,
            number: 1,
            on: true,
            vouched: false,
        },
    );
    let dm = |sender, recipient, message_id| Command::SendMessage {
        sender,
        sender_name: String::new(),
        recipient,
        message_id,
        text: "hi".into(),
    };
    run(&mut c, dm(5, 2, 1));
    run(&mut c, dm(2, 5, 1));
    run(
        &mut c,
        Command::Subscribe {
            user: 2,
            topic: "go".into(),
            on: true,
        },
    );
    run(
        &mut c,
        Command::SetProfile {
            user: 2,
            display_name: Some("Alice".into()),
            bio: None,
        },
    );
    run(
        &mut c,
        Command::StartSession {
            user: 2,
            token_hash: vec![1; 32],
            expires_ms: i64::MAX,
        },
    );

    // Phase 1: once; her sessions end; nothing new may involve her.
    let delete = || Command::DeleteAccount {
        user: 2,
        username: "alice".into(),
    };
    assert!(matches!(run(&mut c, delete()), Outcome::Written(_)));
    assert_eq!(run(&mut c, delete()), Outcome::Unchanged(None));
    assert_eq!(store::session(&c, &[1; 32]).unwrap(), None);
    for refused in [
        Command::Follow {
            follower: 5,
            followee: 2,
            on: false,
        },
        Command::Like {
            liker_name: String::new(),
            liker: 5,
            author: 2,
            number: 1,
            on: false,
            vouched: false,
        },
        dm(5, 2, 2),
        post(2, 2, &[]),
        Command::StartSession {
            user: 2,
            token_hash: vec![2; 32],
            expires_ms: i64::MAX,
        },
    ] {
        assert!(
            matches!(
                run(&mut c, refused.clone()),
                Outcome::Rejected(Status::FailureNotExists, _)
            ),
            "{refused:?}"
        );
    }
    // Phase 2 waits for every cluster.
    let complete = || Command::CompleteDeletion {
        user: 2,
        username: "alice".into(),
        clusters: 3,
    };
    run(&mut c, Command::ReadyForDeletion { user: 2, cluster: 2 });
    assert_eq!(
        run(&mut c, Command::ReadyForDeletion { user: 2, cluster: 2 }),
        Outcome::Unchanged(None)
    );
    let ready = |cluster| {
        change::Kind::DeletionReady(tinysns_common::proto::internal::AccountDeletionReady { user: 2, cluster })
    };
    run(&mut c, remote(1, 7, ready(1)));
    assert_eq!(
        run(&mut c, complete()),
        Outcome::Unchanged(None),
        "cluster 3 is not ready"
    );
    assert_eq!(store::deletion_state(&c, 2).unwrap(), Some(store::Deletion::Prepared));
    run(&mut c, remote(3, 9, ready(3)));
    assert!(matches!(run(&mut c, complete()), Outcome::Written(_)));
    assert_eq!(store::deletion_state(&c, 2).unwrap(), Some(store::Deletion::Deleted));

    // Nothing of hers is left; bob's own things stay.
    for (table, sql) in [
        ("users", "SELECT COUNT(*) FROM users WHERE user_id = 2"),
        ("posts", "SELECT COUNT(*) FROM posts WHERE author = 2"),
        ("likes", "SELECT COUNT(*) FROM likes WHERE liker = 2 OR author = 2"),
        (
            "follows",
            "SELECT COUNT(*) FROM follows WHERE follower = 2 OR followee = 2",
        ),
        (
            "messages",
            "SELECT COUNT(*) FROM direct_messages WHERE sender = 2 OR recipient = 2",
        ),
        (
            "conversations",
            "SELECT COUNT(*) FROM conversations WHERE owner = 2 OR peer = 2",
        ),
        ("topics", "SELECT COUNT(*) FROM topic_posts WHERE author = 2"),
        (
            "subscriptions",
            "SELECT COUNT(*) FROM topic_subscriptions WHERE subscriber = 2",
        ),
        ("profile", "SELECT COUNT(*) FROM profiles WHERE user_id = 2"),
        ("credentials", "SELECT COUNT(*) FROM credentials WHERE user_id = 2"),
    ] {
        assert_eq!(count(&c, sql), 0, "{table}");
    }
    assert_eq!(count(&c, "SELECT COUNT(*) FROM posts WHERE author = 5"), 1);
    assert_eq!(
        store::topic_counts(&c, "rust").unwrap(),
        Some((2, 1)),
        "numbers stay, her post leaves"
    );

    // Her name is free: registering it makes a new user.
    assert!(matches!(run(&mut c, register("alice")), Outcome::Written(_)));
    let again = store::user_by_name(&c, "alice").unwrap().expect("registered again");
    assert!(again > 5, "a new id: {again}");

    // Redelivered changes about her change nothing.
    let old_post = change::Kind::Post(PostCreated {
        author: 2,
        post_id: 1,
        text: "hello".into(),
        number: 1,
        ..Default::default()
    });
    assert_eq!(run(&mut c, remote(2, 3, old_post)), Outcome::Unchanged(None));
    let old_follow = change::Kind::Follow(FollowChanged {
        follower: 4,
        followee: 2,
        following: true,
    });
    assert_eq!(run(&mut c, remote(1, 4, old_follow)), Outcome::Unchanged(None));
    assert_eq!(count(&c, "SELECT COUNT(*) FROM posts WHERE author = 2"), 0);
}
