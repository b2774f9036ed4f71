//! What the topic commands mean: numbering at the topic's home, subscriptions, and how
//! numbers from elsewhere and deletions apply.

use super::tests::run;
use super::*;

fn topic_post(author: u64, post_id: u64, topics: &[&str]) -> Command {
    Command::Post {
        author,
        author_name: String::new(),
        post_id,
        text: format!("post {post_id}"),
        reply_to: None,
        parent_vouched: false,
        topics: topics.iter().map(|t| t.to_string()).collect(),
    }
}

/// Numbers every waiting post, in log order, as the home's sequencer does.
fn number_all(c: &mut Connection) -> Vec<Outcome> {
    let waiting = store::pending_topic_posts(c, 0, 100).unwrap();
    waiting
        .into_iter()
        .map(|p| {
            run(
                c,
                Command::SequenceTopic {
                    topic: p.topic,
                    author: p.author,
                    number: p.number,
                },
            )
        })
        .collect()
}

/// (number in the topic, author's post number) of a page of history.
fn page(c: &Connection, topic: &str, from: u64, forward: bool, limit: usize) -> Vec<(u64, u64)> {
    store::topic_history(c, topic, from, forward, limit)
        .unwrap()
        .into_iter()
        .map(|(seq, post, _)| (seq, post.number))
        .collect()
}

fn store_with_user(user: u64) -> (tempfile::TempDir, Connection) {
    let dir = tempfile::tempdir().unwrap();
    let mut c = store::open(dir.path()).unwrap();
    run(&mut c, Command::CreateUser { user });
    (dir, c)
}

#[test]
fn a_topics_posts_are_numbered_once_without_gaps_and_page_both_ways() {
    let (_dir, mut c) = store_with_user(2);
    run(&mut c, topic_post(2, 1, &["rust", "go"]));
    run(&mut c, topic_post(2, 2, &["rust"]));
    run(&mut c, topic_post(2, 3, &[]));
    run(&mut c, topic_post(2, 4, &["rust"]));
    assert_eq!(store::pending_topic_posts(&c, 0, 100).unwrap().len(), 4);
    assert!(number_all(&mut c).iter().all(|o| matches!(o, Outcome::Written(_))));
    assert!(
        store::pending_topic_posts(&c, 0, 100).unwrap().is_empty(),
        "nothing waits"
    );
    // Asked again (a new master reading from the start): nothing is numbered twice.
    let again = Command::SequenceTopic {
        topic: "rust".into(),
        author: 2,
        number: 1,
    };
    assert_eq!(run(&mut c, again), Outcome::Unchanged(None));
    assert_eq!(page(&c, "rust", 0, false, 20), [(3, 4), (2, 2), (1, 1)]);
    assert_eq!(page(&c, "rust", 2, false, 20), [(2, 2), (1, 1)]);
    assert_eq!(page(&c, "rust", 0, true, 2), [(1, 1), (2, 2)]);
    assert_eq!(page(&c, "rust", 3, true, 2), [(3, 4)]);
    assert_eq!(page(&c, "go", 0, false, 20), [(1, 1)]);
    assert_eq!(page(&c, "nothing", 0, false, 20), []);
    assert_eq!(store::topic_counts(&c, "rust").unwrap(), Some((3, 3)));
    let listed: Vec<_> = store::topics_by_name(&c, "", 10, 0).unwrap();
    assert_eq!(
        listed
            .iter()
            .map(|t| (t.topic.as_str(), t.count, t.recent))
            .collect::<Vec<_>>(),
        [("go", 1, 1), ("rust", 3, 3)]
    );
    let active = store::active_topics(&c, 10, 0).unwrap();
    assert_eq!(
        active.iter().map(|t| t.topic.as_str()).collect::<Vec<_>>(),
        ["rust", "go"]
    );
    assert!(
        store::active_topics(&c, 10, u64::MAX >> 2).unwrap().is_empty(),
        "nothing that recent"
    );
}

#[test]
fn a_deleted_post_leaves_its_topics_and_its_number_is_not_given_again() {
    let (_dir, mut c) = store_with_user(2);
    run(&mut c, topic_post(2, 1, &["rust"]));
    run(&mut c, topic_post(2, 2, &["rust"]));
    number_all(&mut c);
    // Deleted before its number: it never gets one.
    run(&mut c, topic_post(2, 3, &["rust"]));
    run(&mut c, Command::DeletePost { author: 2, number: 3 });
    assert!(store::pending_topic_posts(&c, 0, 100).unwrap().is_empty());
    // Deleted after: it leaves the history and the count, not the numbering.
    run(&mut c, Command::DeletePost { author: 2, number: 2 });
    assert_eq!(page(&c, "rust", 0, false, 20), [(1, 1)]);
    assert_eq!(store::topic_counts(&c, "rust").unwrap(), Some((2, 1)));
    run(&mut c, topic_post(2, 4, &["rust"]));
    number_all(&mut c);
    assert_eq!(page(&c, "rust", 0, false, 20), [(3, 4), (1, 1)]);
}

fn remote(origin_lsn: u64, kind: change::Kind) -> Command {
    Command::Remote(RemoteChange {
        origin_cluster: 1,
        origin_lsn,
        timestamp_ms: 1_000,
        change: Some(Change { kind: Some(kind) }),
        hlc: 0,
    })
}

fn numbered(topic: &str, seq: u64, author: u64, number: u64) -> change::Kind {
    change::Kind::TopicSequenced(TopicSequenced {
        topic: topic.into(),
        seq,
        post: Some(PostCreated {
            author,
            post_id: number,
            text: "x".into(),
            number,
            ..Default::default()
        }),
        post_hlc: 5_000_000,
        numbering_only: false,
    })
}

#[test]
fn numbers_from_the_home_apply_once_in_any_order_and_never_revive_a_deleted_post() {
    let (_dir, mut c) = store_with_user(4);
    for number in 1..=3 {
        let post = change::Kind::Post(PostCreated {
            author: 4,
            post_id: number,
            text: "#rust".into(),
            number,
            topics: vec!["rust".into()],
            ..Default::default()
        });
        run(&mut c, remote(number, post));
    }
    assert_eq!(
        store::pending_topic_posts(&c, 0, 100).unwrap().len(),
        3,
        "they wait here too"
    );
    // Number 2 arrives before number 1 (a redelivery reordered them).
    assert!(matches!(
        run(&mut c, remote(11, numbered("rust", 2, 4, 2))),
        Outcome::Written(_)
    ));
    assert!(matches!(
        run(&mut c, remote(10, numbered("rust", 1, 4, 1))),
        Outcome::Written(_)
    ));
    assert_eq!(
        run(&mut c, remote(10, numbered("rust", 1, 4, 1))),
        Outcome::Unchanged(None)
    );
    // Post 3 is deleted before its number comes: it stays out.
    run(
        &mut c,
        remote(4, change::Kind::PostDeleted(PostDeleted { author: 4, number: 3 })),
    );
    run(&mut c, remote(12, numbered("rust", 3, 4, 3)));
    assert_eq!(page(&c, "rust", 0, false, 20), [(2, 2), (1, 1)]);
    assert_eq!(store::topic_counts(&c, "rust").unwrap(), Some((3, 2)));
    assert!(store::pending_topic_posts(&c, 0, 100).unwrap().is_empty());
    // A post whose number came first does not wait for one.
    run(&mut c, remote(13, numbered("rust", 4, 4, 5)));
    let late = change::Kind::Post(PostCreated {
        author: 4,
        post_id: 5,
        text: "#rust".into(),
        number: 5,
        topics: vec!["rust".into()],
        ..Default::default()
    });
    run(&mut c, remote(5, late));
    assert!(store::pending_topic_posts(&c, 0, 100).unwrap().is_empty());
    assert_eq!(page(&c, "rust", 0, false, 1), [(4, 5)]);
}

#[test]
fn subscribing_is_idempotent_and_the_last_change_from_the_home_wins() {
    let (_dir, mut c) = store_with_user(2);
    let subscribe = |on| Command::Subscribe {
        user: 2,
        topic: "rust".into(),
        on,
    };
    assert!(matches!(run(&mut c, subscribe(true)), Outcome::Written(_)));
    assert_eq!(run(&mut c, subscribe(true)), Outcome::Unchanged(None));
    assert_eq!(store::subscriptions(&c, 2).unwrap(), ["rust"]);
    assert!(matches!(run(&mut c, subscribe(false)), Outcome::Written(_)));
    assert!(store::subscriptions(&c, 2).unwrap().is_empty());
    assert_eq!(run(&mut c, subscribe(false)), Outcome::Unchanged(None));
    // Another cluster's user: an older change loses to a newer one that came first.
    let remote_subscription = |lsn, subscribed| {
        remote(
            lsn,
            change::Kind::TopicSubscription(TopicSubscription {
                user: 4,
                topic: "go".into(),
                subscribed,
            }),
        )
    };
    assert!(matches!(run(&mut c, remote_subscription(9, true)), Outcome::Written(_)));
    assert_eq!(run(&mut c, remote_subscription(8, false)), Outcome::Unchanged(None));
    assert_eq!(store::subscriptions(&c, 4).unwrap(), ["go"]);
}
