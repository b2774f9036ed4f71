//! Password accounts end to end: registration (unique across clusters), login, tokens on
//! every call (missing, foreign, forged, revoked and expired ones refused with nothing
//! stored), password changes, the brake on guessing, and tsc with accounts.

mod common;

use common::*;
use std::time::Duration;
use tinysns_client::session::{ConnectError, Credentials};
use tinysns_common::proto::social::{
    BlockRequest, ChangePasswordRequest, ConversationRequest, DeleteAccountRequest, Empty, FollowRequest,
    HistoryRequest, InboxRequest, LikesRequest, ListRequest, LoginRequest, PostRef, PostsRequest, ProfileRequest,
    PublishRequest, RegisterRequest, SendMessageRequest, SetProfileRequest, Status as Code, ThreadRequest,
    TimelineOpen, TimelineRequest, TopicRequest, TopicsRequest, timeline_request,
};
use tinysns_stack::client::User;
use tinysns_stack::topology::Topology;
use tinysns_stack::tsc::Tsc;
use tonic::Code as Grpc;

const PASSWORD: &str = "correct horse battery";
/// Tokens of this test's system expire quickly, so that expiry can be seen.
const SESSION_TTL_SECS: u64 = 8;

fn password(username: &str, password: &str, register: bool) -> Credentials {
    Credentials::Password {
        username: username.into(),
        password: password.into(),
        register,
    }
}

async fn connect(t: &Topology, credentials: Credentials) -> Result<User, ConnectError> {
    User::connect(&t.coordinator_address(), credentials, Duration::from_secs(20)).await
}

/// Every client RPC with `token` at `address`: the gRPC code each got.
async fn every_rpc(address: &str, token: &str) -> Vec<(&'static str, Grpc)> {
    let mut c = authed_client(address, token);
    let code = |r: Result<_, tonic::Status>| r.err().map_or(Grpc::Ok, |s| s.code());
    let open = TimelineRequest {
        kind: Some(timeline_request::Kind::Open(TimelineOpen {
            resume_after: 0,
            ..Default::default()
        })),
    };
    let follow = FollowRequest {
        target: "someone".into(),
    };
    let change = ChangePasswordRequest {
        current_password: PASSWORD.into(),
        new_password: "another password".into(),
    };
    let post = PostRef {
        post: "someone/1".into(),
    };
    let topic = TopicRequest { topic: "rust".into() };
    vec![
        ("Attach", code(c.attach(Empty {}).await.map(|_| ()))),
        ("KeepAlive", code(c.keep_alive(Empty {}).await.map(|_| ()))),
        ("List", code(c.list(ListRequest::default()).await.map(|_| ()))),
        ("Follow", code(c.follow(follow.clone()).await.map(|_| ()))),
        ("UnFollow", code(c.un_follow(follow).await.map(|_| ()))),
        ("ChangePassword", code(c.change_password(change).await.map(|_| ()))),
        (
            "GetProfile",
            code(c.get_profile(ProfileRequest::default()).await.map(|_| ())),
        ),
        (
            "SetProfile",
            code(
                c.set_profile(SetProfileRequest {
                    display_name: Some("mallory".into()),
                    bio: None,
                })
                .await
                .map(|_| ()),
            ),
        ),
        ("Posts", code(c.posts(PostsRequest::default()).await.map(|_| ()))),
        ("Like", code(c.like(post.clone()).await.map(|_| ()))),
        ("Unlike", code(c.unlike(post.clone()).await.map(|_| ()))),
        ("Likes", code(c.likes(LikesRequest::default()).await.map(|_| ()))),
        ("Publish", code(c.publish(PublishRequest::default()).await.map(|_| ()))),
        ("Thread", code(c.thread(ThreadRequest::default()).await.map(|_| ()))),
        ("DeletePost", code(c.delete_post(post).await.map(|_| ()))),
        (
            "SendMessage",
            code(c.send_message(SendMessageRequest::default()).await.map(|_| ())),
        ),
        ("Inbox", code(c.inbox(InboxRequest::default()).await.map(|_| ()))),
        (
            "ReadConversation",
            code(c.read_conversation(ConversationRequest::default()).await.map(|_| ())),
        ),
        ("Block", code(c.block(BlockRequest::default()).await.map(|_| ()))),
        ("Unblock", code(c.unblock(BlockRequest::default()).await.map(|_| ()))),
        ("Subscribe", code(c.subscribe(topic.clone()).await.map(|_| ()))),
        ("Unsubscribe", code(c.unsubscribe(topic).await.map(|_| ()))),
        ("History", code(c.history(HistoryRequest::default()).await.map(|_| ()))),
        ("Topics", code(c.topics(TopicsRequest::default()).await.map(|_| ()))),
        (
            "DeleteAccount",
            code(c.delete_account(DeleteAccountRequest::default()).await.map(|_| ())),
        ),
        (
            "Timeline",
            code(c.timeline(tokio_stream::iter(vec![open])).await.map(|_| ())),
        ),
        ("Logout", code(c.logout(Empty {}).await.map(|_| ()))),
    ]
}

fn all_refused(results: Vec<(&'static str, Grpc)>, why: &str) {
    for (rpc, code) in results {
        assert_eq!(code, Grpc::Unauthenticated, "{rpc} with {why}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_decide_who_acts_and_bad_ones_change_nothing() {
    let t = start_with("accounts", |o| {
        o.synchronizers_per_cluster = 1;
        o.tsd_args = vec!["--session-ttl".into(), format!("{SESSION_TTL_SECS}s")];
    })
    .await;
    // "alice" lives in cluster 3 of 3, "bob" in cluster 1, "carol" in cluster 2.
    let mut alice = connect(&t, password("Alice", PASSWORD, true)).await.unwrap();
    assert_eq!(
        (alice.username(), alice.id() % 3),
        ("alice", 0),
        "ids stay in the owner's residue class"
    );
    let bob = connect(&t, password("bob", PASSWORD, true)).await.unwrap();
    let alice_master = t.view(3).await.unwrap().master.unwrap().address;
    let settled = settled_digests(&t).await;

    // No token, a token of a user of another cluster, garbage, an oversized one.
    all_refused(every_rpc(&alice_master, "").await, "an empty token");
    all_refused(
        every_rpc(&alice_master, bob.token()).await,
        "bob's token on alice's cluster",
    );
    all_refused(every_rpc(&alice_master, &"f".repeat(64)).await, "a made-up token");
    all_refused(every_rpc(&alice_master, &"a".repeat(300)).await, "a 300-byte token");
    let mut anonymous = social_client(&alice_master);
    assert_eq!(
        anonymous.list(ListRequest::default()).await.unwrap_err().code(),
        Grpc::Unauthenticated
    );
    assert_eq!(settled_digests(&t).await, settled, "a refused call changed a store");

    // Names are unique and case-insensitive; wrong passwords say nothing about the account.
    let taken = connect(&t, password("ALICE", PASSWORD, true)).await.map(|u| u.id());
    assert!(
        matches!(
            taken,
            Err(ConnectError::Refused {
                status: Code::FailureAlreadyExists,
                ..
            })
        ),
        "{taken:?}"
    );
    for (name, pw) in [("alice", "wrong password"), ("nobody_here", PASSWORD)] {
        match connect(&t, password(name, pw, false)).await {
            Err(ConnectError::Refused { status, message }) => {
                assert_eq!(
                    (status, message.as_str()),
                    (Code::FailureInvalid, "wrong username or password")
                );
            }
            other => panic!("{name} logged in with a wrong password: {:?}", other.map(|u| u.id())),
        }
    }
    for bad in ["", "bad name", &"x".repeat(33)] {
        assert!(
            connect(&t, password(bad, PASSWORD, true)).await.is_err(),
            "{bad:?} registered"
        );
    }
    assert!(
        connect(&t, password("shortpw", "1234567", true)).await.is_err(),
        "a 7-byte password"
    );

    // Two devices; logging one out revokes only its token.
    let phone = connect(&t, password("alice", PASSWORD, false)).await.unwrap();
    let laptop = connect(&t, password("alice", PASSWORD, false)).await.unwrap();
    assert_eq!((phone.id(), laptop.id()), (alice.id(), alice.id()));
    let phone_token = phone.token().to_string();
    phone.logout().await;
    all_refused(every_rpc(&alice_master, &phone_token).await, "a logged-out token");
    assert!(alice.list().await.is_ok(), "other sessions go on");

    // A password change ends every other session and only the new password works.
    let laptop_token = laptop.token().to_string();
    let (status, _) = alice
        .change_password("not the password", "new password 1")
        .await
        .unwrap();
    assert_eq!(status, Code::FailureInvalid, "the current password is checked");
    let (status, message) = alice.change_password(PASSWORD, "new password 1").await.unwrap();
    assert_eq!(status, Code::Success, "{message}");
    all_refused(
        every_rpc(&alice_master, &laptop_token).await,
        "a token revoked by a password change",
    );
    assert!(alice.list().await.is_ok(), "the session that changed it goes on");
    assert!(connect(&t, password("alice", PASSWORD, false)).await.is_err());
    let fresh = connect(&t, password("alice", "new password 1", false)).await.unwrap();

    // Open timelines are bounded per user.
    let mut open = Vec::new();
    for _ in 0..8 {
        open.push(alice.timeline(0).await.unwrap());
    }
    let ninth = alice.timeline(0).await.err().map(|s| s.code());
    assert_eq!(ninth, Some(Grpc::ResourceExhausted));
    drop(open);

    // Tokens expire.
    let expiring = fresh.token().to_string();
    tokio::time::sleep(Duration::from_secs(SESSION_TTL_SECS + 1)).await;
    all_refused(every_rpc(&alice_master, &expiring).await, "an expired token");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_failures_lock_the_username_for_a_while() {
    let t = start_with("lockout", |o| {
        o.clusters = 1;
        o.synchronizers_per_cluster = 1;
    })
    .await;
    connect(&t, password("target", PASSWORD, true)).await.unwrap();
    let master = t.view(1).await.unwrap().master.unwrap().address;
    let mut direct = social_client(&master);
    let login = |pw: &str| LoginRequest {
        user_id: 0,
        username: "target".into(),
        password: pw.into(),
    };
    for _ in 0..5 {
        let reply = direct.login(login("guess guess")).await.unwrap().into_inner();
        assert_eq!(reply.status, Code::FailureInvalid as i32);
    }
    let locked = direct.login(login(PASSWORD)).await.unwrap_err();
    assert_eq!(locked.code(), Grpc::ResourceExhausted, "{}", locked.message());
    assert!(locked.message().contains("try again"), "{}", locked.message());
    // Other names are not affected.
    connect(&t, password("bystander", PASSWORD, true)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_username_registered_concurrently_everywhere_makes_exactly_one_account() {
    let t = start_with("register-race", |o| o.synchronizers_per_cluster = 1).await;
    // Accounts of users 1-3 first: they must get ids 1-3 (see `accounts`).
    let mut others = Vec::new();
    for k in 1..=3 {
        others.push(login(&t, k).await);
    }
    let masters: Vec<String> = futures_util::future::join_all((1..=3).map(|c| {
        let t = &t;
        async move { t.view(c).await.unwrap().master.unwrap().address }
    }))
    .await;
    // Every cluster's master at once, twice each: only the owner's writer can take the
    // name, and it takes it once.
    let attempts = masters.iter().chain(masters.iter()).map(|address| {
        let mut c = social_client(address);
        async move {
            c.register(RegisterRequest {
                username: "zed".into(),
                password: PASSWORD.into(),
            })
            .await
            .map(|r| r.into_inner())
        }
    });
    let replies = futures_util::future::join_all(attempts).await;
    let won: Vec<_> = replies
        .iter()
        .filter_map(|r| r.as_ref().ok())
        .filter(|r| r.status == Code::Success as i32)
        .collect();
    assert_eq!(won.len(), 1, "{replies:?}");
    let id = won[0].user_id;
    // Every cluster learns of exactly one zed, with that id.
    let mut zed = connect(&t, password("zed", PASSWORD, false)).await.unwrap();
    assert_eq!(zed.id(), id);
    for user in others.iter_mut().chain(std::iter::once(&mut zed)) {
        let named = eventually!("zed to be known everywhere", Duration::from_secs(15), async {
            let list = user.list().await.ok()?;
            let zeds: Vec<u64> = list
                .all_users
                .iter()
                .filter(|u| u.username == "zed")
                .map(|u| u.id)
                .collect();
            (!zeds.is_empty()).then_some(zeds)
        });
        assert_eq!(named, vec![id]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tsc_registers_logs_in_and_changes_passwords() {
    let t = start_with("tsc-accounts", |o| o.synchronizers_per_cluster = 1).await;
    let port = t.coordinator_address();
    let port = port.as_str();
    let env = [("TINYSNS_PASSWORD", PASSWORD)];
    let mut alice = Tsc::start_with(port, &["--register", "-u", "alice"], &env).unwrap();
    alice.wait_for("Cmd> ", 1, Duration::from_secs(20)).unwrap();
    alice.send("LIST\nPASSWORD\n");
    alice.send(&format!("{PASSWORD}\nnew password 2\n"));
    let (code, out) = alice.finish(Duration::from_secs(10));
    assert_eq!(code, Some(0));
    assert!(out.contains("All users: alice, \n"), "{out}");
    assert!(out.ends_with("Command completed successfully\nCmd> "), "{out}");

    // The old password no longer works; the new one does, from a file.
    let (code, out) = Tsc::start_with(port, &["-u", "alice"], &env)
        .unwrap()
        .finish(Duration::from_secs(10));
    assert_eq!((code, out.as_str()), (Some(1), "connection failed: -1\n"));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pw");
    std::fs::write(&file, "new password 2\n").unwrap();
    let file = file.display().to_string();
    let again = Tsc::start_with(port, &["-u", "ALICE", "--password-file", &file], &[]).unwrap();
    again.wait_for("Cmd> ", 1, Duration::from_secs(20)).unwrap();
    let (code, _) = again.finish(Duration::from_secs(10));
    assert_eq!(code, Some(0));
}
