//! Rooms end to end, through the real binaries and a real RabbitMQ: alice (cluster 3) makes a
//! room hosted by cluster 2; bob (cluster 1) and carol (cluster 2) join. Messages sent at once
//! from all three clusters get gap-free numbers, once each, and reach every member's live
//! stream in order; presence shows who looked lately and drops the idle (`--room-idle`). The
//! creator deletes the room with the host's master and a member cluster's master killed
//! between the phases: the deletion completes, every replica drops the room and keeps its
//! tombstone, members are told live, and a redelivered message brings nothing back.

mod common;

use common::*;
use std::collections::BTreeSet;
use std::time::Duration;
use tinysns_client::calls::RoomAction;
use tinysns_client::resume::Event;
use tinysns_common::proto::internal::{RoomChange, change, room_change};
use tinysns_common::proto::social::{ReadRoomRequest, RoomReply, RoomState, RoomsRequest, Status as Code};
use tinysns_common::rooms::host_cluster;
use tinysns_stack::client::User;
use tinysns_stack::topology::Topology;
use tinysns_tsd::store;

/// A room name cluster 2 of 3 hosts.
fn room_hosted_by_2() -> String {
    (0..)
        .map(|n| format!("lobby-{n}"))
        .find(|name| host_cluster(name, 3) == 2)
        .expect("some name hashes to cluster 2")
}

async fn read(user: &User, room: &str, present: bool) -> RoomReply {
    let request = ReadRoomRequest {
        room: room.into(),
        before_seq: 0,
        limit: 100,
        present,
    };
    user.link().read_room(request).await.expect("the room reads")
}

async fn act(user: &User, room: &str, action: RoomAction) -> (Code, String) {
    user.link()
        .room_action(room, action)
        .await
        .expect("the call is answered")
}

/// The room as every replica of `cluster` stores it.
fn stored_rooms(t: &Topology, cluster: u32, room: &str) -> Vec<Option<store::Room>> {
    (1..=2)
        .map(|server| {
            store::open(&t.server_data_dir(cluster, server))
                .and_then(|c| store::room(&c, room))
                .ok()
                .flatten()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_number_once_show_presence_and_close_in_every_cluster_through_a_crash() {
    let (mut t, alice, mut bob, carol) = start_with_three_users_and("rooms", |o| {
        o.tsd_args.push("--room-idle=3s".into());
    })
    .await;
    let room = room_hosted_by_2();
    assert_eq!(act(&alice, &room, RoomAction::Create).await.0, Code::Success);
    assert_eq!(act(&bob, &room, RoomAction::Create).await.0, Code::FailureAlreadyExists);
    let (status, message) = act(&bob, "Not a room!", RoomAction::Join).await;
    assert_eq!(status, Code::FailureInvalid, "{message}");
    let said = bob.link().say(&room, 1, "not a member").await.unwrap();
    assert_eq!(said.status, Code::FailureNotAFollower as i32, "{}", said.message);
    assert!(
        read(&bob, &room, true).await.messages.is_empty(),
        "a non-member reads no messages"
    );
    for user in [&bob, &carol] {
        assert_eq!(act(user, &room, RoomAction::Join).await.0, Code::Success);
    }
    let mut bob_live = bob.timeline(0).await.expect("bob's timeline opens");

    // Ten messages from each cluster at once: numbers 1..=30, each message once (a retry of
    // the same id changes nothing).
    let say_ten = |user: &User, who: &'static str| {
        let link = user.link().clone();
        let room = room.clone();
        async move {
            for n in 1..=10u64 {
                let reply = link.say(&room, n, &format!("{who} {n}")).await.unwrap();
                assert_eq!(reply.status, Code::Success as i32, "{}", reply.message);
            }
        }
    };
    tokio::join!(say_ten(&alice, "alice"), say_ten(&bob, "bob"), say_ten(&carol, "carol"));
    let again = alice.link().say(&room, 3, "alice 3").await.unwrap();
    assert_eq!(
        again.seq,
        read(&alice, &room, true)
            .await
            .messages
            .iter()
            .find(|m| m.text == "alice 3")
            .unwrap()
            .seq
    );
    let history = read(&alice, &room, true).await;
    let seqs: Vec<u64> = history.messages.iter().rev().map(|m| m.seq).collect();
    assert_eq!(seqs, (1..=30).collect::<Vec<_>>(), "gap-free, newest first, once each");
    assert_eq!(history.room.as_ref().unwrap().members, 3);

    // Bob's stream shows every message once, in the room's order, his own too.
    let mut shown = Vec::new();
    while shown.len() < 30 {
        match bob_live.next_room_event(Duration::from_secs(20)).await.unwrap() {
            Some(Event::RoomMessage(m)) => shown.push(m.seq),
            other => panic!("bob's stream: {other:?} after {shown:?}"),
        }
    }
    assert_eq!(shown, (1..=30).collect::<Vec<_>>());

    // Presence: everyone spoke just now; after the idle time only alice, who keeps looking.
    let present = |r: &RoomReply| -> BTreeSet<String> {
        r.members
            .iter()
            .filter(|m| m.present)
            .map(|m| m.user.as_ref().unwrap().username.clone())
            .collect()
    };
    assert_eq!(present(&read(&alice, &room, true).await).len(), 3);
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(900)).await;
        read(&alice, &room, true).await;
    }
    let members = read(&alice, &room, true).await;
    assert_eq!(present(&members), BTreeSet::from(["alice".to_string()]));
    assert_eq!(members.members.len(), 3, "the others are shown away, still members");
    assert_eq!(
        members.members[0].user.as_ref().unwrap().username,
        "alice",
        "present first"
    );

    // Bob leaves and comes back; his list of rooms follows.
    let mine = |user: &User| {
        let link = user.link().clone();
        async move {
            link.rooms(RoomsRequest::default())
                .await
                .unwrap()
                .mine
                .into_iter()
                .map(|r| r.name)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(act(&bob, &room, RoomAction::Leave).await.0, Code::Success);
    eventually!("bob's rooms to drop it", Duration::from_secs(15), async {
        mine(&bob).await.is_empty().then_some(())
    });
    assert_eq!(act(&bob, &room, RoomAction::Join).await.0, Code::Success);
    eventually!("bob's rooms to list it", Duration::from_secs(15), async {
        (mine(&bob).await == [room.clone()]).then_some(())
    });
    let message_copy = published_copy(&t, 2, |k| {
        matches!(
            k,
            change::Kind::Room(RoomChange {
                kind: Some(room_change::Kind::Message(_))
            })
        )
    });

    // Deletion: only the creator; the host's master dies right after phase 1, and bob's
    // cluster's once it has prepared.
    assert_eq!(act(&bob, &room, RoomAction::Delete).await.0, Code::FailureInvalid);
    let host_master = t.master_server(2).await.expect("cluster 2 has a master");
    let (status, message) = act(&alice, &room, RoomAction::Delete).await;
    assert_eq!(status, Code::Success, "{message}");
    t.server(2, host_master).kill();
    let participant = t.master_server(1).await.expect("cluster 1 has a master");
    eventually!("cluster 1 to prepare", Duration::from_secs(20), async {
        stored_rooms(&t, 1, &room)[participant as usize - 1]
            .as_ref()
            .is_some_and(|r| r.state == store::RoomState::Closing)
            .then_some(())
    });
    t.server(1, participant).kill();
    let refused = carol.link().say(&room, 99, "still open?").await.unwrap();
    assert_eq!(refused.status, Code::FailureInvalid as i32, "{}", refused.message);

    t.server(2, host_master).start().expect("restarts");
    t.server(1, participant).start().expect("restarts");
    t.wait_ready(Duration::from_secs(60))
        .await
        .expect("every replica is back");
    eventually!("every replica to drop the room", Duration::from_secs(60), async {
        (1..=3)
            .all(|c| {
                stored_rooms(&t, c, &room)
                    .iter()
                    .all(|r| r.as_ref().is_some_and(|r| r.state == store::RoomState::Deleted))
            })
            .then_some(())
    });
    match bob_live.next_room_event(Duration::from_secs(30)).await.unwrap() {
        Some(Event::RoomClosed(closed)) => assert_eq!(closed, room),
        other => panic!("bob was not told the room closed: {other:?}"),
    }
    let closed = read(&carol, &room, true).await;
    assert_eq!(closed.room.unwrap().state, RoomState::RoomClosed as i32);
    let (status, message) = act(&alice, &room, RoomAction::Create).await;
    assert_eq!(status, Code::FailureAlreadyExists, "{message}");

    // A redelivered message brings nothing back, also into a replica that catches up.
    t.server(1, 2).stop(Duration::from_secs(10));
    redeliver(&t, 2, vec![message_copy]).await;
    t.server(1, 2).start().expect("the slave restarts");
    t.wait_ready(Duration::from_secs(60))
        .await
        .expect("the slave catches up");
    for ((c, s), conn) in settled_stores(&t).await {
        assert!(
            store::room_messages(&conn, &room, 0, 10).unwrap().is_empty(),
            "replica {c}/{s}"
        );
        assert!(store::room_members(&conn, &room).unwrap().is_empty(), "replica {c}/{s}");
    }
}
