//! What the room calls mean at the host: creation once, membership, gap-free numbers once
//! per message id, and deletion in two phases that leaves a tombstone nothing gets past.

use super::deletion_tests::remote;
use super::tests::{register, run};
use super::*;
use tinysns_common::proto::internal::{RoomChange, RoomDeletionReady, RoomMessage, room_change};

fn room(command: RoomCommand) -> Command {
    Command::Room(command)
}

fn say(user: u64, message_id: u64, text: &str) -> Command {
    room(RoomCommand::Say {
        room: "lobby".into(),
        user,
        name: String::new(),
        message_id,
        text: text.into(),
    })
}

fn join(user: u64) -> Command {
    room(RoomCommand::Join {
        room: "lobby".into(),
        user,
        name: format!("user{user}"),
    })
}

fn refused(outcome: Outcome) -> (Status, String) {
    match outcome {
        Outcome::Rejected(status, message) => (status, message),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// Cluster 2 of 3 hosting `lobby`, made by alice (2); bob (5) is here too, carol (1) in
/// cluster 1.
fn lobby() -> (tempfile::TempDir, Connection) {
    let dir = tempfile::tempdir().unwrap();
    let mut c = store::open(dir.path()).unwrap();
    run(&mut c, register("alice"));
    run(&mut c, register("bob"));
    let carol = change::Kind::User(tinysns_common::proto::internal::UserCreated {
        user_id: 1,
        username: "carol".into(),
    });
    assert!(matches!(run(&mut c, remote(1, 1, carol)), Outcome::Written(_)));
    let create = room(RoomCommand::Create {
        room: "lobby".into(),
        user: 2,
        name: "alice".into(),
    });
    assert!(matches!(run(&mut c, create.clone()), Outcome::Written(_)));
    assert_eq!(run(&mut c, create), Outcome::Unchanged(None), "the creator's retry");
    (dir, c)
}

#[test]
fn a_room_is_made_once_and_only_members_speak_with_gap_free_numbers() {
    let (_dir, mut c) = lobby();
    let (status, message) = refused(run(
        &mut c,
        room(RoomCommand::Create {
            room: "lobby".into(),
            user: 5,
            name: "bob".into(),
        }),
    ));
    assert_eq!(
        (status, message.as_str()),
        (Status::FailureAlreadyExists, "room lobby exists")
    );
    let (status, _) = refused(run(&mut c, say(5, 1, "not a member yet")));
    assert_eq!(status, Status::FailureNotAFollower);
    assert!(matches!(run(&mut c, join(5)), Outcome::Written(_)));
    assert_eq!(
        run(&mut c, join(5)),
        Outcome::Unchanged(None),
        "joining twice is one join"
    );
    assert!(matches!(run(&mut c, join(1)), Outcome::Written(_)));
    for (user, id) in [(2, 1), (5, 1), (1, 7), (2, 2)] {
        assert!(matches!(run(&mut c, say(user, id, "hi")), Outcome::Written(_)));
    }
    assert_eq!(
        run(&mut c, say(5, 1, "hi")),
        Outcome::Unchanged(None),
        "a re-sent message"
    );
    let seqs: Vec<u64> = store::room_messages(&c, "lobby", 0, 100)
        .unwrap()
        .iter()
        .map(|m| m.seq)
        .collect();
    assert_eq!(seqs, [4, 3, 2, 1]);
    assert_eq!(store::room_message_seq(&c, "lobby", 1, 7).unwrap(), Some(3));
    assert_eq!(store::room(&c, "lobby").unwrap().unwrap().members, 3);
    let (status, message) = refused(run(
        &mut c,
        room(RoomCommand::Leave {
            room: "lobby".into(),
            user: 2,
        }),
    ));
    assert_eq!(status, Status::FailureInvalid, "{message}");
    let leave = room(RoomCommand::Leave {
        room: "lobby".into(),
        user: 5,
    });
    assert!(matches!(run(&mut c, leave.clone()), Outcome::Written(_)));
    assert_eq!(run(&mut c, leave), Outcome::Unchanged(None));
    assert_eq!(refused(run(&mut c, say(5, 2, "gone"))).0, Status::FailureNotAFollower);
    let (status, message) = refused(run(&mut c, join(1).clone_into_room("nowhere")));
    assert_eq!(
        (status, message.as_str()),
        (Status::FailureNotExists, "there is no room nowhere")
    );
}

impl Command {
    /// The same room command about another room.
    fn clone_into_room(&self, other: &str) -> Command {
        match self.clone() {
            Command::Room(RoomCommand::Join { user, name, .. }) => room(RoomCommand::Join {
                room: other.into(),
                user,
                name,
            }),
            command => command,
        }
    }
}

#[test]
fn a_room_is_deleted_once_every_cluster_with_members_is_ready_and_stays_closed() {
    let (_dir, mut c) = lobby();
    run(&mut c, join(1));
    run(&mut c, say(1, 1, "hello"));
    let delete = |user| {
        room(RoomCommand::Delete {
            room: "lobby".into(),
            user,
            host: 2,
            clusters: 3,
        })
    };
    run(&mut c, join(5));
    let (status, _) = refused(run(&mut c, delete(5)));
    assert_eq!(status, Status::FailureInvalid, "only the creator deletes");
    assert!(matches!(run(&mut c, delete(2)), Outcome::Written(_)));
    assert_eq!(run(&mut c, delete(2)), Outcome::Unchanged(None));
    let closing = store::room(&c, "lobby").unwrap().unwrap();
    assert_eq!(closing.state, store::RoomState::Closing);
    assert_eq!(
        closing.clusters,
        [1, 2],
        "carol's cluster and the host (bob is here too)"
    );
    assert_eq!(refused(run(&mut c, say(1, 2, "late"))).1, "room lobby is closed");
    assert_eq!(refused(run(&mut c, join(5))).0, Status::FailureInvalid);

    let complete = room(RoomCommand::Complete { room: "lobby".into() });
    assert_eq!(
        run(&mut c, complete.clone()),
        Outcome::Unchanged(None),
        "nobody is ready"
    );
    let ready_here = room(RoomCommand::Ready {
        room: "lobby".into(),
        cluster: 2,
    });
    assert!(matches!(run(&mut c, ready_here.clone()), Outcome::Written(_)));
    assert_eq!(run(&mut c, ready_here), Outcome::Unchanged(None));
    assert_eq!(
        run(&mut c, complete.clone()),
        Outcome::Unchanged(None),
        "cluster 1 is not"
    );
    let ready_there = change::Kind::Room(RoomChange {
        kind: Some(room_change::Kind::DeletionReady(RoomDeletionReady {
            room: "lobby".into(),
            cluster: 1,
        })),
    });
    assert!(matches!(
        run(&mut c, remote(1, 9, ready_there.clone())),
        Outcome::Written(_)
    ));
    assert_eq!(run(&mut c, remote(1, 9, ready_there)), Outcome::Unchanged(None));
    assert!(matches!(run(&mut c, complete.clone()), Outcome::Written(_)));
    assert_eq!(run(&mut c, complete), Outcome::Unchanged(None));

    let gone = store::room(&c, "lobby").unwrap().unwrap();
    assert_eq!((gone.state, gone.members), (store::RoomState::Deleted, 0));
    assert!(store::room_messages(&c, "lobby", 0, 10).unwrap().is_empty());
    assert!(store::rooms_of(&c, 1).unwrap().is_empty());
    // A late copy of a message (a redelivery) is ignored, and the name is not used again.
    let late = change::Kind::Room(RoomChange {
        kind: Some(room_change::Kind::Message(RoomMessage {
            room: "lobby".into(),
            seq: 1,
            sender: 1,
            sender_name: "carol".into(),
            message_id: 1,
            text: "hello".into(),
        })),
    });
    assert_eq!(run(&mut c, remote(2, 30, late)), Outcome::Unchanged(None));
    let (status, message) = refused(run(
        &mut c,
        room(RoomCommand::Create {
            room: "lobby".into(),
            user: 2,
            name: "alice".into(),
        }),
    ));
    assert_eq!(status, Status::FailureAlreadyExists, "{message}");
}

#[test]
fn a_deleted_account_leaves_its_rooms_and_its_messages_go() {
    let (_dir, mut c) = lobby();
    run(&mut c, join(5));
    run(&mut c, say(5, 1, "bye"));
    run(
        &mut c,
        Command::DeleteAccount {
            user: 5,
            username: "bob".into(),
        },
    );
    assert_eq!(refused(run(&mut c, say(5, 2, "again"))).0, Status::FailureNotExists);
    for cluster in 1..=3 {
        run(&mut c, Command::ReadyForDeletion { user: 5, cluster });
    }
    run(
        &mut c,
        Command::CompleteDeletion {
            user: 5,
            username: "bob".into(),
            clusters: 3,
        },
    );
    assert_eq!(store::user_traces(&c, 5).unwrap(), 0);
    assert_eq!(store::room(&c, "lobby").unwrap().unwrap().members, 1);
}
