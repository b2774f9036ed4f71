//! Direct messages end to end, across clusters: a user of cluster 1 writes to a user of
//! cluster 3, whose open stream shows them as they arrive; the inbox counts unread messages
//! until the conversation is read; only the two users can read it, and only their two home
//! clusters store it; a block stops messages and follows and ends the blocked user's follow;
//! replicas agree; tsc sends, lists and reads.

mod common;

use common::*;
use std::time::Duration;
use tinysns_common::proto::social::{InboxReply, Status as Code};
use tinysns_stack::client::User;
use tinysns_tsd::store;

async fn inbox_when(user: &mut User, ready: impl Fn(&InboxReply) -> bool) -> InboxReply {
    let mut last = None;
    for _ in 0..300 {
        let reply = user.inbox().await.expect("Inbox answers");
        if ready(&reply) {
            return reply;
        }
        last = Some(reply);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the inbox never became as expected; last: {last:?}");
}

/// Retries `send` until it answers `expected` (a block takes a moment to reach the sender's
/// cluster).
async fn message_until(user: &mut User, to: &str, text: &str, expected: Code) -> String {
    let mut last = String::new();
    for _ in 0..300 {
        let (status, message) = user.send_message(to, text).await.expect("SendMessage answers");
        if status == expected {
            return message;
        }
        last = format!("{status:?}: {message}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("sending to {to} never answered {expected:?}; last: {last}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_messages_reach_only_their_two_users_and_count_as_unread_until_read() {
    let t = start_with("messages", |o| o.synchronizers_per_cluster = 1).await;
    // "alice" lives in cluster 3 of 3, "bob" in cluster 1, "carol" in cluster 2.
    let mut alice = register(&t, "alice").await;
    let mut bob = register(&t, "bob").await;
    let mut carol = register(&t, "carol").await;

    // Her open stream shows his messages as they arrive.
    let mut stream = alice.timeline(0).await.expect("alice's timeline");
    for text in [
        "Have you guessed the riddle yet?",
        "Why is a raven like a writing desk?",
    ] {
        let (status, message) = bob.send_message("alice", text).await.unwrap();
        assert_eq!(status, Code::Success, "{message}");
        let live = stream.next_message(Duration::from_secs(15)).await.unwrap();
        let live = live.unwrap_or_else(|| panic!("{text:?} arrives live"));
        assert_eq!(live.text, text);
        assert_eq!(live.sender.as_ref().map(|u| u.username.as_str()), Some("bob"));
    }
    drop(stream);
    let inbox = inbox_when(&mut alice, |r| r.unread_total == 2).await;
    let first = &inbox.conversations[0];
    assert_eq!(
        (first.peer.as_ref().unwrap().username.as_str(), first.unread),
        ("bob", 2)
    );
    // Reading marks read; the conversation is the same from either side.
    let talk = alice.conversation("bob", true).await.unwrap();
    let texts: Vec<&str> = talk.messages.iter().map(|m| m.text.as_str()).collect();
    assert_eq!(
        texts,
        [
            "Why is a raven like a writing desk?",
            "Have you guessed the riddle yet?"
        ]
    );
    assert_eq!(talk.unread, 0);
    assert_eq!(alice.inbox().await.unwrap().unread_total, 0);
    let his = bob.conversation("alice", false).await.unwrap();
    assert_eq!(his.messages.len(), 2);
    assert_eq!(
        bob.inbox().await.unwrap().unread_total,
        0,
        "his own messages are not unread"
    );
    // Her answer reaches him, unread.
    assert_eq!(bob.send_message("alice", "Well?").await.unwrap().0, Code::Success);
    assert_eq!(
        alice
            .send_message("bob", "I haven't the slightest idea")
            .await
            .unwrap()
            .0,
        Code::Success
    );
    let his_inbox = inbox_when(&mut bob, |r| r.unread_total == 1).await;
    assert_eq!(his_inbox.conversations[0].unread, 1);

    // Privacy: carol, with her own token, sees none of it; her cluster stores none of it.
    let hers = carol.conversation("alice", true).await.unwrap();
    assert_eq!((hers.status, hers.messages.len()), (Code::Success as i32, 0));
    assert!(carol.inbox().await.unwrap().conversations.is_empty());
    let digests = settled_digests(&t).await;
    for server in 1..=2 {
        let conn = store::open(&t.server_data_dir(2, server)).unwrap();
        assert!(
            store::conversation(&conn, alice.id(), bob.id(), 0, 100)
                .unwrap()
                .is_empty()
        );
    }
    for (cluster, server) in [(1, 1), (1, 2), (3, 1), (3, 2)] {
        let conn = store::open(&t.server_data_dir(cluster, server)).unwrap();
        assert_eq!(
            store::conversation(&conn, alice.id(), bob.id(), 0, 100).unwrap().len(),
            4
        );
    }
    for c in 1..=3 {
        let (a, b) = (&digests[&(c, 1)], &digests[&(c, 2)]);
        assert!(a.is_ok() && a == b, "cluster {c}: {a:?} vs {b:?}");
    }

    // Bad input is refused and changes nothing.
    for (to, text, expected) in [
        ("nobody_here", "hello", Code::FailureNotExists),
        ("bob", "", Code::FailureInvalid),
        ("bob", "bell\u{7}", Code::FailureInvalid),
        ("Not A Name!", "hello", Code::FailureInvalidUsername),
    ] {
        assert_eq!(
            alice.send_message(to, text).await.unwrap().0,
            expected,
            "{to:?} {text:?}"
        );
    }
    let (status, _) = alice.send_message("alice", "me").await.unwrap();
    assert_eq!(status, Code::FailureInvalid);
    assert_eq!(bob.inbox().await.unwrap().unread_total, 1);

    // A block: his messages and follows stop, and his follow ends.
    assert_eq!(bob.follow("alice").await.unwrap(), Code::Success);
    assert_eq!(alice.block("bob", true).await.unwrap().0, Code::Success);
    let why = message_until(&mut bob, "alice", "Please?", Code::FailureInvalid).await;
    assert!(why.contains("does not accept"), "{why}");
    assert_eq!(bob.follow("alice").await.unwrap(), Code::FailureNotExists);
    let his_profile = bob.profile(None).await.unwrap().profile.unwrap();
    assert_eq!(his_profile.following, 0, "the block ended his follow");
    // She may still write to him; unblocked, he may write again.
    assert_eq!(
        alice.send_message("bob", "Off with his head").await.unwrap().0,
        Code::Success
    );
    assert_eq!(alice.block("bob", false).await.unwrap().0, Code::Success);
    message_until(&mut bob, "alice", "Sorry", Code::Success).await;

    // tsc: DM, INBOX, READ.
    let mut tsc = tsc_registered(&t, "carol");
    tsc.send("DM alice Twinkle, twinkle, little bat\n");
    tsc.send("READ alice\n");
    tsc.wait_for(">> Twinkle, twinkle, little bat\n", 1, Duration::from_secs(20))
        .expect("tsc sends and reads");
    tsc.send("INBOX\n");
    tsc.wait_for("Unread: 0\nalice (last ", 1, Duration::from_secs(20))
        .expect("tsc lists the inbox");
    let (_, output) = tsc.finish(Duration::from_secs(10));
    assert!(!output.contains("Invalid Command"), "{output}");
    inbox_when(&mut alice, |r| {
        r.conversations
            .iter()
            .any(|c| c.peer.as_ref().is_some_and(|p| p.username == "carol") && c.unread == 1)
    })
    .await;
}
