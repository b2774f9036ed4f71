//! Topics end to end, across clusters: users of all three clusters post to the same topics at
//! once, and every cluster ends with the same gap-free numbering; history pages both ways;
//! a subscriber's open timeline gets the topic's posts live; a deleted post leaves every
//! cluster's topic, and a redelivered copy of the post and of its number on the bus, with a
//! replica catching up afterwards, bring nothing back (read from every replica's stored
//! state); bad input is refused; tsc's TOPIC, SUBSCRIBE and HISTORY work.

mod common;

use common::*;
use std::time::Duration;
use tinysns_common::proto::internal::change;
use tinysns_common::proto::social::{HistoryReply, Status as Code};
use tinysns_stack::client::User;
use tinysns_tsd::store;

/// Posts each of the three users makes, all at once.
const EACH: u64 = 15;

/// Every post of `topic` as `viewer`'s cluster numbers it, oldest first, once there are
/// `count`: (number in the topic, author, author's number).
async fn numbered_when(viewer: &mut User, topic: &str, count: usize) -> Vec<(u64, u64, u64)> {
    let mut last = Vec::new();
    for _ in 0..400 {
        let reply = viewer.history(topic, 0, true, 100).await.expect("History answers");
        assert_eq!(reply.status, Code::Success as i32, "{}", reply.message);
        last = reply
            .posts
            .iter()
            .map(|tp| {
                let post = tp.post.as_ref().expect("a post");
                (tp.seq, post.author, post.number)
            })
            .collect();
        if last.len() == count {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("#{topic} never held {count} posts; last: {last:?}");
}

/// Every page of `topic` from `viewer`, `limit` at a time, in the direction asked.
async fn all_pages(viewer: &mut User, topic: &str, forward: bool, limit: u32) -> Vec<u64> {
    let (mut from, mut seen) = (0, Vec::new());
    loop {
        let page: HistoryReply = viewer.history(topic, from, forward, limit).await.unwrap();
        assert!(page.posts.len() <= limit as usize);
        seen.extend(page.posts.iter().map(|p| p.seq));
        if page.next_seq == 0 {
            return seen;
        }
        from = page.next_seq;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_are_numbered_alike_in_every_cluster_and_deletion_sticks() {
    // "alice" lives in cluster 3 of 3, "bob" in cluster 1, "carol" in cluster 2.
    let (mut t, mut alice, mut bob, mut carol) = start_with_three_users("topics").await;
    let mut dave = register(&t, "dave").await;
    until_known(&mut dave, &[carol.id()]).await;

    // Dave subscribes to #go and watches his timeline; he follows carol.
    assert_eq!(dave.subscribe("#Go", true).await.unwrap().0, Code::Success);
    assert_eq!(dave.subscribe("go", true).await.unwrap().0, Code::Success, "idempotent");
    assert_eq!(dave.follow("carol").await.unwrap(), Code::Success);
    let mut watching = dave.timeline(0).await.expect("dave's timeline");

    // Everyone posts to #rust at once, from three clusters; every third post is also in #go,
    // given explicitly.
    let post_all = |mut user: User, name: &'static str| async move {
        for i in 1..=EACH {
            let topics = if i % 3 == 0 { vec!["go".to_string()] } else { Vec::new() };
            let reply = user.publish(&format!("{name} on #Rust, {i}"), &topics).await.unwrap();
            assert_eq!(reply.status, Code::Success as i32, "{}", reply.message);
        }
        user
    };
    let (a, b, c) = tokio::join!(post_all(alice, "alice"), post_all(bob, "bob"), post_all(carol, "carol"));
    (alice, bob, carol) = (a, b, c);

    // Every cluster numbers all of them 1..=45, the same way.
    let total = 3 * EACH as usize;
    let numbering = numbered_when(&mut alice, "rust", total).await;
    assert_eq!(
        numbering.iter().map(|n| n.0).collect::<Vec<_>>(),
        (1..=total as u64).collect::<Vec<_>>(),
        "gap-free"
    );
    for viewer in [&mut bob, &mut carol, &mut dave] {
        assert_eq!(
            numbered_when(viewer, "rust", total).await,
            numbering,
            "the same in every cluster"
        );
    }
    // Each author's posts keep their order within the topic.
    for author in [alice.id(), bob.id(), carol.id()] {
        let numbers: Vec<u64> = numbering.iter().filter(|n| n.1 == author).map(|n| n.2).collect();
        assert!(numbers.is_sorted(), "{numbers:?}");
    }
    // Paging both ways covers everything once.
    let backwards = all_pages(&mut bob, "rust", false, 20).await;
    assert_eq!(backwards, (1..=total as u64).rev().collect::<Vec<_>>());
    let forwards = all_pages(&mut carol, "rust", true, 7).await;
    assert_eq!(forwards, (1..=total as u64).collect::<Vec<_>>());
    assert_eq!(numbered_when(&mut bob, "go", 15).await.len(), 15);

    // Dave saw the #go posts of alice and bob live; carol's come as posts (he follows her).
    let mut live = Vec::new();
    while let Some(tp) = watching.next_topic_post(Duration::from_secs(5)).await.unwrap() {
        assert_eq!(tp.topic, "go");
        live.push(tp.post.unwrap().author);
        if live.len() == 10 {
            break;
        }
    }
    live.sort();
    assert_eq!(
        live,
        [vec![bob.id(); 5], vec![alice.id(); 5]].concat(),
        "alice's and bob's #go posts"
    );

    // Listing: counts, the most active first, and dave's subscription. (Dave's cluster
    // counts the topics' numbers as they cross from the topics' homes.)
    let mut topics = dave.topics(false).await.unwrap();
    for _ in 0..300 {
        if topics.topics.iter().map(|t| t.count).sum::<u64>() == 60 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        topics = dave.topics(false).await.unwrap();
    }
    let summary: Vec<(&str, u64, bool)> = topics
        .topics
        .iter()
        .map(|t| (t.topic.as_str(), t.count, t.subscribed))
        .collect();
    assert_eq!(summary, [("go", 15, true), ("rust", 45, false)]);
    assert_eq!(topics.subscriptions, ["go"]);
    let active = dave.topics(true).await.unwrap();
    assert_eq!(
        active.topics.iter().map(|t| t.topic.as_str()).collect::<Vec<_>>(),
        ["rust", "go"]
    );
    assert_eq!(active.topics[0].recent, 45);

    // Bad input is refused and changes nothing.
    for bad in ["", "#", "two words", "42", &"x".repeat(65)] {
        let (status, message) = dave.subscribe(bad, true).await.unwrap();
        assert_eq!(status, Code::FailureInvalid, "{bad:?}: {message}");
        let history = dave.history(bad, 0, false, 0).await.unwrap();
        assert_eq!(history.status, Code::FailureInvalid as i32, "{bad:?}");
    }
    let eleven: Vec<String> = (0..11).map(|i| format!("t{i}")).collect();
    let refused = dave.publish("too many", &eleven).await.unwrap();
    assert_eq!(refused.status, Code::FailureInvalid as i32, "{}", refused.message);
    let unknown = dave.history("nobody_posted_here", 0, false, 0).await.unwrap();
    assert_eq!(
        (unknown.status, unknown.posts.len(), unknown.last_seq),
        (Code::Success as i32, 0, 0)
    );

    // Cluster 1's slave is away while alice deletes her first #rust post.
    let deleted = numbering.iter().find(|n| n.1 == alice.id()).copied().unwrap();
    let (author, number) = (deleted.1, deleted.2);
    let post_copy = published_copy(
        &t,
        3,
        |k| matches!(k, change::Kind::Post(p) if p.author == author && p.number == number),
    );
    let home = tinysns_common::topics::home_cluster("rust", 3);
    let number_copy = published_copy(
        &t,
        home,
        |k| matches!(k, change::Kind::TopicSequenced(s) if s.topic == "rust" && s.seq == deleted.0),
    );
    t.server(1, 2).stop(Duration::from_secs(10));
    let (status, message) = alice.delete_post(&format!("alice/{number}")).await.unwrap();
    assert_eq!(status, Code::Success, "{message}");
    for viewer in [&mut alice, &mut bob, &mut carol] {
        let left = numbered_when(viewer, "rust", total - 1).await;
        assert!(!left.contains(&deleted));
    }
    // The broker delivers the post and its number again; the slave catches up.
    redeliver(&t, 3, vec![post_copy]).await;
    redeliver(&t, home, vec![number_copy]).await;
    t.server(1, 2).start().expect("the slave restarts");
    t.wait_ready(Duration::from_secs(60))
        .await
        .expect("the slave catches up");

    // Nothing came back in any replica's stored state; the numbering stays; replicas agree.
    // Every cluster holds every number; the topic's home also every post (the history).
    let expected: Vec<u64> = (1..=total as u64).filter(|n| *n != deleted.0).collect();
    for ((c, s), conn) in settled_stores(&t).await {
        let numbers: Vec<u64> = store::all_topic_posts(&conn)
            .unwrap()
            .iter()
            .filter(|(topic, ..)| topic == "rust")
            .map(|(_, seq, ..)| *seq)
            .collect();
        assert_eq!(numbers, expected, "replica {c}/{s}");
        if c == home {
            let stored: Vec<u64> = store::topic_history(&conn, "rust", 0, true, 100)
                .unwrap()
                .iter()
                .map(|(seq, _, _)| *seq)
                .collect();
            assert_eq!(stored, expected, "replica {c}/{s}");
        }
        assert_eq!(
            store::topic_counts(&conn, "rust").unwrap(),
            Some((total as u64, total as u64 - 1)),
            "replica {c}/{s}"
        );
        assert!(
            store::pending_topic_posts(&conn, 0, 10).unwrap().is_empty(),
            "replica {c}/{s}"
        );
    }

    // tsc: TOPIC, SUBSCRIBE, HISTORY, and a topic post.
    let mut tsc = tsc_registered(&t, "bob");
    tsc.send("SUBSCRIBE #rust\n");
    tsc.send("HISTORY rust 45 2\n");
    tsc.wait_for("More: HISTORY rust 43\n", 1, Duration::from_secs(20))
        .expect("tsc pages a topic");
    tsc.send("TOPIC zig first post\n");
    tsc.wait_for("Your post is bob/", 1, Duration::from_secs(20))
        .expect("tsc posts in a topic");
    tsc.send("TOPIC\n");
    tsc.wait_for(
        "#rust 44 posts, 44 in the last hour (subscribed)\n",
        1,
        Duration::from_secs(20),
    )
    .expect("tsc lists topics");
    tsc.send("HISTORY rust x\n");
    tsc.wait_for(tinysns_tsc::command::HISTORY_USAGE, 1, Duration::from_secs(20))
        .expect("bad input is explained");
    let (_, output) = tsc.finish(Duration::from_secs(10));
    assert!(!output.contains("Invalid Command"), "{output}");
}
