//! Deleting an account end to end: alice (cluster 3) has posts, likes, follows, messages and a
//! subscription involving users of clusters 1 and 2; she deletes her account, and the masters
//! of her home and of cluster 2 are killed (-9) between the two phases. The deletion still
//! completes; nothing of hers is left in any replica's stored state, also after a redelivered
//! post of hers on the bus and a replica that catches up afterwards; her name can be
//! registered again, as a new user. tsc's DELETEACCOUNT asks for the name and leaves.

mod common;

use common::*;
use std::time::Duration;
use tinysns_common::proto::internal::change;
use tinysns_common::proto::social::Status as Code;
use tinysns_stack::topology::Topology;
use tinysns_tsd::store;

/// Whether every replica of `cluster` holds alice's deletion in `state` (read from disk).
fn deletion_everywhere_in(t: &Topology, cluster: u32, user: u64, state: store::Deletion) -> bool {
    (1..=2).all(|server| {
        store::open(&t.server_data_dir(cluster, server))
            .and_then(|c| store::deletion_state(&c, user))
            .is_ok_and(|s| s == Some(state))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_account_is_gone_everywhere_even_with_masters_killed_between_the_phases() {
    // "alice" lives in cluster 3 of 3, "bob" in cluster 1, "carol" in cluster 2.
    let (mut t, mut alice, mut bob, mut carol) = start_with_three_users("account-deletion").await;
    let id = alice.id();

    assert_eq!(
        alice.publish("hello #rust", &[]).await.unwrap().status,
        Code::Success as i32
    );
    assert_eq!(alice.set_profile(Some("Alice"), None).await.unwrap().0, Code::Success);
    assert_eq!(alice.subscribe("go", true).await.unwrap().0, Code::Success);
    assert_eq!(alice.follow("bob").await.unwrap(), Code::Success);
    assert_eq!(bob.follow("alice").await.unwrap(), Code::Success);
    assert_eq!(carol.follow("alice").await.unwrap(), Code::Success);
    for _ in 0..300 {
        if bob.like("alice/1", true).await.unwrap().0 == Code::Success {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(bob.send_message("alice", "hi alice").await.unwrap().0, Code::Success);
    assert_eq!(alice.send_message("carol", "hi carol").await.unwrap().0, Code::Success);
    assert_eq!(
        carol.publish("#rust too", &[]).await.unwrap().status,
        Code::Success as i32
    );
    let settled = settled_digests(&t).await;
    assert!(settled.values().all(|d| d.is_ok()));
    let post_copy = published_copy(&t, 3, |k| matches!(k, change::Kind::Post(p) if p.author == id));

    // A wrong confirmation changes nothing.
    let (status, _) = alice.delete_account("bob").await.unwrap();
    assert_eq!(status, Code::FailureInvalid);

    // Phase 1; alice's home master dies right after it, and cluster 2's once it has prepared.
    let home_master = t.master_server(3).await.expect("cluster 3 has a master");
    let (status, message) = alice.delete_account("Alice").await.unwrap();
    assert_eq!(status, Code::Success, "{message}");
    t.server(3, home_master).kill();
    let participant = t.master_server(2).await.expect("cluster 2 has a master");
    let mut prepared = false;
    for _ in 0..400 {
        prepared = store::open(&t.server_data_dir(2, participant))
            .and_then(|c| store::deletion_state(&c, id))
            .is_ok_and(|s| s.is_some());
        if prepared {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(prepared, "cluster 2 prepared");
    t.server(2, participant).kill();

    // Once bob's cluster has prepared, nothing new may involve her there.
    let mut closed = false;
    for _ in 0..400 {
        closed = (1..=2).all(|server| {
            store::open(&t.server_data_dir(1, server))
                .and_then(|c| store::account_closed(&c, id))
                .unwrap_or(false)
        });
        if closed {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(closed, "cluster 1 prepared");
    let (status, _) = bob.send_message("alice", "still there?").await.unwrap();
    assert_eq!(status, Code::FailureNotExists);

    // The new masters carry on: the deletion completes everywhere.
    t.server(3, home_master).start().expect("restarts");
    t.server(2, participant).start().expect("restarts");
    t.wait_ready(Duration::from_secs(60))
        .await
        .expect("every replica is back");
    let mut done = false;
    for _ in 0..600 {
        done = (1..=3).all(|c| deletion_everywhere_in(&t, c, id, store::Deletion::Deleted));
        if done {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(done, "the deletion completed in every replica");

    // A redelivered post of hers, with cluster 1's slave away, brings nothing back.
    t.server(1, 2).stop(Duration::from_secs(10));
    redeliver(&t, 3, vec![post_copy]).await;
    t.server(1, 2).start().expect("the slave restarts");
    t.wait_ready(Duration::from_secs(60))
        .await
        .expect("the slave catches up");
    for ((c, s), conn) in settled_stores(&t).await {
        assert_eq!(
            store::user_traces(&conn, id).unwrap(),
            0,
            "replica {c}/{s} holds something of hers"
        );
        assert_eq!(
            store::topic_counts(&conn, "rust").unwrap(),
            Some((2, 1)),
            "replica {c}/{s}"
        );
        assert_eq!(store::user_by_name(&conn, "alice").unwrap(), None, "replica {c}/{s}");
    }
    // Bob and carol are untouched.
    assert_eq!(bob.posts(Some("carol")).await.unwrap().posts.len(), 1);
    let inbox = carol.inbox().await.unwrap();
    assert!(
        inbox.conversations.is_empty(),
        "her conversation with alice went: {inbox:?}"
    );

    // Her name is free: a new alice, with a new id.
    let again = register(&t, "alice").await;
    assert_ne!(again.id(), id);
    // Her old session ended with the account.
    let revoked = alice.posts(None).await.expect_err("her token is revoked");
    assert_eq!(revoked.code(), tonic::Code::Unauthenticated, "{revoked}");

    // tsc: DELETEACCOUNT asks for the name, then the client leaves.
    let mut tsc = tsc_registered(&t, "carol");
    tsc.send("DELETEACCOUNT\n");
    tsc.wait_for("Type your username to confirm: ", 1, Duration::from_secs(20))
        .expect("tsc asks for the name");
    tsc.send("carol\n");
    tsc.wait_for(
        "your account is being deleted in every cluster\n",
        1,
        Duration::from_secs(20),
    )
    .expect("tsc deletes the account");
    let (_, output) = tsc.finish(Duration::from_secs(10));
    assert!(!output.contains("Invalid Command"), "{output}");
}
