//! A post is kept only where someone needs it, end to end over a real broker: its author's
//! cluster, its followers' clusters, its topics' homes (and a reply the answered author's).
//! Read from every replica's store. Users of other clusters still read the author's profile and posts,
//! threads, likes and a topic's history (their cluster asks the home), like and answer
//! posts their cluster does not keep, and see subscribed topics' posts live; a follow that
//! reaches the author's cluster after the author posted brings those posts along.

mod common;

use common::*;
use std::time::Duration;
use tinysns_common::proto::social::Status as Code;
use tinysns_common::topics::home_cluster;
use tinysns_stack::topology::Topology;
use tinysns_tsd::store;

/// Which clusters' replicas (both of each, checked equal) keep `author`'s post `number`,
/// and which hold number `seq` of `topic` (if given).
async fn keepers(t: &Topology, author: u64, number: u64) -> Vec<u32> {
    let mut clusters: Vec<u32> = settled_stores(t)
        .await
        .iter()
        .filter(|(_, conn)| store::post_by_number(conn, author, number).unwrap().is_some())
        .map(|((cluster, _), _)| *cluster)
        .collect();
    clusters.dedup();
    clusters
}

/// How long a change may take to cross the clusters.
const CROSSING: Duration = Duration::from_secs(15);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn posts_are_kept_where_needed_and_read_everywhere() {
    // "alice" lives in cluster 3 of 3, "bob" in cluster 1, "carol" in cluster 2.
    let (mut t, mut alice, mut bob, mut carol) = start_with_three_users("selective").await;
    assert_eq!(bob.follow("alice").await.unwrap(), Code::Success);
    until_followers(&mut alice, &[bob.id()]).await;

    // Bob's cluster follows alice; carol's does not.
    let mut bobs = bob.timeline(0).await.unwrap();
    let reply = alice.publish("for my followers", &[]).await.unwrap();
    assert_eq!(
        (reply.status, reply.number),
        (Code::Success as i32, 1),
        "{}",
        reply.message
    );
    assert_eq!(
        expect_post(&mut bobs, Duration::from_secs(15)).await.text,
        "for my followers"
    );
    assert_eq!(
        keepers(&t, alice.id(), 1).await,
        [1, 3],
        "the author's and the follower's cluster"
    );

    // Carol's cluster asks alice's for her posts, the thread, the likes; carol likes and
    // answers the post her cluster does not keep.
    let posts = carol.posts(Some("alice")).await.unwrap();
    assert_eq!(texts(&posts.posts), ["for my followers"]);
    let profile = carol.profile(Some("alice")).await.unwrap().profile.unwrap();
    assert_eq!(
        (profile.posts, profile.followers),
        (1, 1),
        "counted where all her posts are"
    );
    assert_eq!(carol.like("alice/1", true).await.unwrap().0, Code::Success);
    let answer = carol.reply("alice/1", "read it from afar").await.unwrap();
    assert_eq!(answer.status, Code::Success as i32, "{}", answer.message);
    let thread = eventually!("the thread to show carol's like and reply", CROSSING, async {
        let r = bob.thread("alice/1", "").await.unwrap();
        (r.replies.len() == 1 && r.post.as_ref().is_some_and(|p| p.likes == 1)).then_some(r)
    });
    assert_eq!(thread.replies[0].text, "read it from afar");
    let likes = carol.likes("alice/1").await.unwrap();
    assert_eq!((likes.count, likes.liked), (1, true));
    assert_eq!(
        keepers(&t, carol.id(), 1).await,
        [2, 3],
        "a reply: its author's cluster and the answered author's"
    );
    // Nothing of this: not from anywhere.
    assert_eq!(carol.like("alice/9", true).await.unwrap().0, Code::FailureNotExists);
    let missing = carol.reply("alice/9", "hello?").await.unwrap();
    assert_eq!(missing.status, Code::FailureNotExists as i32, "{}", missing.message);

    // A topic numbered in bob's cluster: carol's holds its numbers but not the post, and
    // reads its history from bob's.
    let topic = (0..)
        .map(|i| format!("far{i}"))
        .find(|name| home_cluster(name, 3) == 1)
        .unwrap();
    let tagged = alice.publish(&format!("about #{topic}"), &[]).await.unwrap();
    assert_eq!(tagged.status, Code::Success as i32, "{}", tagged.message);
    let history = eventually!("carol to read the topic's history", CROSSING, async {
        let h = carol.history(&topic, 0, false, 20).await.unwrap();
        (h.posts.len() == 1).then_some(h)
    });
    assert_eq!(history.posts[0].seq, 1);
    assert_eq!(history.posts[0].post.as_ref().unwrap().text, format!("about #{topic}"));
    assert_eq!(keepers(&t, alice.id(), 2).await, [1, 3]);
    for ((cluster, server), conn) in settled_stores(&t).await {
        let numbers = store::all_topic_posts(&conn).unwrap();
        assert_eq!(
            numbers,
            [(topic.clone(), 1, alice.id(), 2)],
            "cluster {cluster} server {server} numbers the topic's post"
        );
    }
    // Once carol subscribes, the topic's posts reach her cluster live.
    assert_eq!(carol.subscribe(&topic, true).await.unwrap().0, Code::Success);
    let mut carols = carol.timeline(0).await.unwrap();
    // The subscription crosses to the topic's home (bob's cluster), which then sends the
    // topic's posts to carol's cluster with their text; its history says so.
    let mut subscribed = false;
    for _ in 0..300 {
        subscribed = carol.history(&topic, 0, false, 1).await.unwrap().subscribed;
        if subscribed {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(subscribed, "the topic's home never learnt of carol's subscription");
    let live = alice.publish(&format!("more #{topic}"), &[]).await.unwrap();
    assert_eq!(live.status, Code::Success as i32, "{}", live.message);
    let shown = carols
        .next_topic_post(Duration::from_secs(15))
        .await
        .unwrap()
        .expect("the topic's post arrives live");
    assert_eq!((shown.seq, shown.post.unwrap().text), (2, format!("more #{topic}")));

    // Carol follows alice while her cluster's synchronizer is away; alice posts meanwhile, so
    // only the follow's arrival in alice's cluster can bring the post to carol's.
    let sync = t.master_synchronizer(2).await.expect("cluster 2's synchronizer");
    assert!(t.synchronizer(sync).stop(Duration::from_secs(10)));
    assert_eq!(carol.follow("alice").await.unwrap(), Code::Success);
    let during = alice.publish("while carol's follow travels", &[]).await.unwrap();
    assert_eq!(during.status, Code::Success as i32, "{}", during.message);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        keepers(&t, alice.id(), during.number).await,
        [1, 3],
        "not yet in carol's"
    );
    t.synchronizer(sync).start().unwrap();
    let timeline = eventually!("carol's timeline to show the post", CROSSING, async {
        let mut timeline = carol.timeline(0).await.unwrap();
        let posts = timeline.collect(Duration::from_millis(300)).await.unwrap();
        texts(&posts)
            .contains(&"while carol's follow travels".to_string())
            .then_some(posts)
    });
    assert!(
        !texts(&timeline).contains(&"for my followers".to_string()),
        "posted before the follow"
    );
    assert_eq!(keepers(&t, alice.id(), during.number).await, [1, 2, 3]);
}
