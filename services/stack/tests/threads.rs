//! Replies, threads and deleting posts end to end, across clusters: users of clusters 1 and 2
//! reply to a post of cluster 3 and page through its thread from every cluster; the author
//! deletes the post, and it disappears from every cluster's thread, likes and timelines; a
//! redelivered copy of the post on the bus and a replica that catches up afterwards bring
//! nothing back (read from every replica's stored state); bad input is refused.

mod common;

use common::*;
use std::time::Duration;
use tinysns_common::proto::internal::change;
use tinysns_common::proto::social::{Status as Code, ThreadReply};
use tinysns_stack::client::User;
use tinysns_tsd::store;

/// `post`'s thread as `viewer`'s cluster shows it, once it satisfies `ready`.
async fn thread_when(viewer: &mut User, post: &str, ready: impl Fn(&ThreadReply) -> bool) -> ThreadReply {
    let mut last = None;
    for _ in 0..300 {
        let reply = viewer.thread(post, "").await.expect("Thread answers");
        if ready(&reply) {
            return reply;
        }
        last = Some(reply);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the thread of {post} never became as expected; last: {last:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_form_threads_and_a_deleted_post_never_comes_back() {
    // "alice" lives in cluster 3 of 3, "bob" in cluster 1, "carol" in cluster 2.
    let (mut t, mut alice, mut bob, mut carol) = start_with_three_users("threads").await;
    assert_eq!(bob.follow("alice").await.unwrap(), Code::Success);

    let mut timeline = alice.timeline(0).await.expect("alice's timeline");
    assert_eq!(
        timeline
            .post("What is a raven like a writing desk?")
            .await
            .unwrap()
            .status,
        Code::Success as i32
    );
    // Bob and carol reply from their clusters once the post has reached them.
    thread_when(&mut bob, "alice/1", |r| r.status == Code::Success as i32).await;
    thread_when(&mut carol, "alice/1", |r| r.status == Code::Success as i32).await;
    let first = bob.reply("alice/1", "No idea").await.expect("Publish answers");
    assert_eq!(
        (first.status, first.number),
        (Code::Success as i32, 1),
        "{}",
        first.message
    );
    for i in 0..22 {
        let reply = carol.reply("alice/1", &format!("guess {i}")).await.unwrap();
        assert_eq!(reply.status, Code::Success as i32, "{}", reply.message);
        assert_eq!(reply.number, i + 1, "carol's posts are numbered in order");
    }
    // A reply to a reply: a thread of its own.
    assert_eq!(
        alice.reply("bob/1", "Nor I").await.unwrap().status,
        Code::Success as i32
    );

    // Every cluster shows the thread: 23 replies, 20 per page, oldest first.
    for viewer in [&mut alice, &mut bob, &mut carol] {
        // (Once alice's reply to bob's reply has reached this cluster too.)
        let page = thread_when(viewer, "alice/1", |r| {
            r.post.as_ref().is_some_and(|p| p.replies == 23) && r.replies.first().is_some_and(|p| p.replies == 1)
        })
        .await;
        assert_eq!(page.replies.len(), 20);
        assert_eq!(page.replies[0].text, "No idea");
        assert!(!page.next_page_token.is_empty());
        let rest = viewer.thread("alice/1", &page.next_page_token).await.unwrap();
        let texts: Vec<&str> = rest.replies.iter().map(|p| p.text.as_str()).collect();
        assert_eq!(texts, ["guess 19", "guess 20", "guess 21"]);
        assert_eq!(rest.next_page_token, "");
        let parent = rest.replies[0].reply_to.as_ref().expect("a reply names its post");
        assert_eq!((parent.author_name.as_str(), parent.number), ("alice", 1));
    }
    let nested = thread_when(&mut carol, "bob/1", |r| r.replies.len() == 1).await;
    assert_eq!(nested.replies[0].text, "Nor I");

    // Bad input is refused and changes nothing.
    for (post, expected) in [
        ("alice/99", Code::FailureNotExists),
        ("alice", Code::FailureInvalid),
        ("nobody_here/1", Code::FailureNotExists),
    ] {
        let reply = bob.reply(post, "hello?").await.unwrap();
        assert_eq!(reply.status, expected as i32, "{post}: {}", reply.message);
    }
    assert_eq!(
        bob.reply("alice/1", "").await.unwrap().status,
        Code::FailureInvalid as i32
    );
    let (status, message) = bob.delete_post("alice/1").await.unwrap();
    assert_eq!(status, Code::FailureInvalid, "only the author deletes: {message}");
    assert_eq!(bob.delete_post("bob/9").await.unwrap().0, Code::FailureNotExists);

    // Cluster 1's slave is away while alice deletes her post (it catches up afterwards).
    t.server(1, 2).stop(Duration::from_secs(10));
    assert_eq!(bob.like("alice/1", true).await.unwrap().0, Code::Success);
    let author = alice.id();
    let copy = published_copy(
        &t,
        3,
        |kind| matches!(kind, change::Kind::Post(p) if p.author == author && p.number == 1),
    );
    let (status, message) = alice.delete_post("alice/1").await.unwrap();
    assert_eq!(status, Code::Success, "{message}");
    assert_eq!(
        alice.delete_post("alice/1").await.unwrap().0,
        Code::Success,
        "idempotent"
    );
    for viewer in [&mut alice, &mut bob, &mut carol] {
        let gone = thread_when(viewer, "alice/1", |r| r.status == Code::FailureNotExists as i32).await;
        assert!(gone.message.contains("deleted"), "{}", gone.message);
    }
    // Bob's cluster keeps the post (he follows alice) and refuses a like once her deletion
    // has reached it; a like it took before then loses to the tombstone (checked below).
    let mut refused = false;
    for _ in 0..300 {
        refused = bob.like("alice/1", true).await.unwrap().0 == Code::FailureNotExists;
        if refused {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(refused, "bob's cluster never learnt that alice/1 is deleted");
    // The replies stay (they are their authors' posts), answering a post that is gone.
    let orphan = thread_when(&mut alice, "carol/1", |r| r.status == Code::Success as i32).await;
    assert!(orphan.post.unwrap().reply_to.is_some());

    // The broker delivers the post again, as after a lost acknowledgement.
    redeliver(&t, 3, vec![copy]).await;
    t.server(1, 2).start().expect("the slave restarts");
    t.wait_ready(Duration::from_secs(60))
        .await
        .expect("the slave catches up");

    // Nothing came back, in any replica's stored state; the replicas agree.
    for ((c, s), conn) in settled_stores(&t).await {
        assert_eq!(store::post_by_number(&conn, alice.id(), 1).unwrap(), None, "{c}/{s}");
        assert!(store::is_tombstoned(&conn, alice.id(), 1).unwrap(), "{c}/{s}");
        assert_eq!(store::like_count(&conn, alice.id(), 1).unwrap(), 0, "{c}/{s}");
    }
    // Bob's timeline no longer shows it.
    let history = bob.timeline(0).await.unwrap().history.clone();
    assert!(!history.is_empty(), "her reply to bob is still there");
    assert!(
        history.iter().all(|p| !(p.author == alice.id() && p.number == 1)),
        "{history:?}"
    );
    let mine = alice.profile(None).await.unwrap().profile.unwrap();
    assert_eq!(mine.posts, 1, "only her reply to bob is left");

    // tsc: REPLY, THREAD and DELETE.
    let mut tsc = tsc_registered(&t, "bob");
    tsc.send("REPLY carol/2 Curiouser and curiouser\n");
    tsc.wait_for("Your reply is bob/2\n", 1, Duration::from_secs(20))
        .expect("tsc replies");
    // The thread is read at carol's cluster, which the reply reaches over the bus.
    thread_when(&mut bob, "carol/2", |r| r.replies.iter().any(|p| p.number == 2)).await;
    tsc.send("THREAD carol/2\n");
    tsc.wait_for(
        "Replies:\n[bob/2] 0 likes, reply to carol/2\n",
        1,
        Duration::from_secs(20),
    )
    .expect("tsc shows the thread");
    tsc.send("DELETE bob/2\n");
    tsc.send("THREAD bob/2\n");
    tsc.wait_for(
        "Input username does not exists, command failed",
        1,
        Duration::from_secs(20),
    )
    .expect("the deleted reply is gone");
    let (_, output) = tsc.finish(Duration::from_secs(10));
    assert!(!output.contains("Invalid Command"), "{output}");
}
