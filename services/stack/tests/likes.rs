//! Likes end to end, across clusters: a user of cluster 1 likes posts of a user of cluster 3
//! and of cluster 2; liking twice is one like; counts and likers converge in every cluster;
//! unliking is seen everywhere; bad names and missing posts are refused and change nothing;
//! replicas agree; tsc shows posts with their names and likes.

mod common;

use common::*;
use std::time::Duration;
use tinysns_common::proto::social::{LikesReply, Status as Code};
use tinysns_stack::client::User;

/// `post`'s likes as `viewer`'s cluster shows them, once they satisfy `ready`.
async fn likes_when(viewer: &mut User, post: &str, ready: impl Fn(&LikesReply) -> bool) -> LikesReply {
    let mut last = None;
    for _ in 0..300 {
        let reply = viewer.likes(post).await.expect("Likes answers");
        if reply.status == Code::Success as i32 && ready(&reply) {
            return reply;
        }
        last = Some(reply);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the likes of {post} never became as expected; last: {last:?}");
}

fn names(reply: &LikesReply) -> Vec<&str> {
    reply.users.iter().map(|u| u.username.as_str()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn likes_made_in_one_cluster_are_counted_in_every_cluster() {
    let t = start_with("likes", |o| o.synchronizers_per_cluster = 1).await;
    // "alice" lives in cluster 3 of 3, "bob" in cluster 1, "carol" in cluster 2.
    let mut alice = register(&t, "alice").await;
    let mut bob = register(&t, "bob").await;
    let mut carol = register(&t, "carol").await;
    assert_eq!(
        [alice.id(), bob.id(), carol.id()].map(|id| ((id - 1) % 3) + 1),
        [3, 1, 2],
        "the users live in three different clusters"
    );

    let mut timeline = alice.timeline(0).await.expect("alice's timeline");
    for text in ["first", "second"] {
        assert_eq!(timeline.post(text).await.unwrap().status, Code::Success as i32);
    }
    // Her posts are numbered in order, everywhere.
    let mut mine = alice.posts(None).await.expect("Posts answers");
    assert_eq!(mine.status, Code::Success as i32);
    let numbered: Vec<(u64, &str)> = mine.posts.iter().map(|p| (p.number, p.text.as_str())).collect();
    assert_eq!(numbered, [(2, "second"), (1, "first")]);
    for _ in 0..300 {
        mine = bob.posts(Some("alice")).await.expect("Posts answers");
        if mine.posts.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(mine.posts.iter().map(|p| p.number).collect::<Vec<_>>(), [2, 1]);

    // Bob (cluster 1) likes alice/1 twice: one like. Carol (cluster 2) likes it too.
    for _ in 0..2 {
        assert_eq!(bob.like("alice/1", true).await.unwrap().0, Code::Success);
    }
    let carol_sees = likes_when(&mut carol, "alice/1", |_| true).await;
    assert!(carol_sees.count <= 1);
    assert_eq!(carol.like("alice/1", true).await.unwrap().0, Code::Success);
    // Every cluster counts both, once each.
    for (viewer, name) in [(&mut alice, "alice"), (&mut bob, "bob"), (&mut carol, "carol")] {
        let seen = likes_when(viewer, "alice/1", |r| r.count == 2).await;
        assert_eq!(names(&seen), ["bob", "carol"], "{name}'s cluster");
        assert_eq!(seen.liked, name != "alice", "{name} likes it");
    }
    let counted = bob.posts(Some("alice")).await.unwrap();
    let first = counted.posts.iter().find(|p| p.number == 1).expect("alice/1");
    assert_eq!((first.likes, first.liked), (2, true));

    // Bob stops liking it; every cluster sees one like left.
    assert_eq!(bob.like("alice/1", false).await.unwrap().0, Code::Success);
    assert_eq!(bob.like("alice/1", false).await.unwrap().0, Code::Success, "idempotent");
    for viewer in [&mut alice, &mut bob, &mut carol] {
        let seen = likes_when(viewer, "alice/1", |r| r.count == 1).await;
        assert_eq!(names(&seen), ["carol"]);
    }

    // Bad input is refused and changes nothing.
    for (post, expected) in [
        ("alice", Code::FailureInvalid),
        ("alice/0", Code::FailureInvalid),
        ("alice/99", Code::FailureNotExists),
        ("nobody_here/1", Code::FailureNotExists),
        ("Not A Name!/1", Code::FailureInvalid),
    ] {
        let (status, message) = bob.like(post, true).await.unwrap();
        assert_eq!(status, expected, "{post}: {message}");
        assert!(!message.is_empty());
    }
    let missing = bob.likes("alice/99").await.unwrap();
    assert_eq!(missing.status, Code::FailureNotExists as i32);

    // Every replica of every cluster holds the same likes.
    let digests = settled_digests(&t).await;
    for c in 1..=3 {
        let (a, b) = (&digests[&(c, 1)], &digests[&(c, 2)]);
        assert!(a.is_ok() && a == b, "cluster {c}: {a:?} vs {b:?}");
    }

    // tsc: POSTS shows names and likes; LIKE and LIKES work; a bad name is caught.
    let mut tsc = tsc_registered(&t, "bob");
    tsc.send("POSTS alice\n");
    tsc.wait_for("[alice/1] 1 like\n", 1, Duration::from_secs(20))
        .expect("tsc shows her posts with names");
    tsc.send("LIKE alice/2\n");
    tsc.send("LIKES alice/2\n");
    tsc.wait_for("1 like, you like it\nLiked by: bob, \n", 1, Duration::from_secs(20))
        .expect("tsc likes and lists likers");
    tsc.send("LIKE alice\n");
    tsc.wait_for(tinysns_tsc::command::BAD_POST_NAME, 1, Duration::from_secs(20))
        .expect("a bad name is explained");
    let (_, output) = tsc.finish(Duration::from_secs(10));
    assert!(!output.contains("Invalid Command"), "{output}");
}
