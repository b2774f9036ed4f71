//! Profiles end to end: a user sets a display name and bio at its home cluster, and users of
//! other clusters see it (and its follower count) once the synchronizers have carried it;
//! bad input is refused and changes nothing; replicas agree; tsc shows and sets them.

mod common;

use common::*;
use std::time::Duration;
use tinysns_common::features::FEATURE_LEVEL;
use tinysns_common::limits::MAX_BIO_CHARS;
use tinysns_common::proto::social::{Profile, Status as Code};
use tinysns_stack::client::User;
use tinysns_stack::topology::Topology;

/// `target`'s profile as `viewer`'s cluster shows it, once it satisfies `ready`.
async fn profile_when(viewer: &mut User, target: &str, ready: impl Fn(&Profile) -> bool) -> Profile {
    let mut last = None;
    for _ in 0..300 {
        let reply = viewer.profile(Some(target)).await.expect("GetProfile answers");
        if let Some(profile) = reply.profile.as_ref().filter(|p| ready(p)) {
            return profile.clone();
        }
        last = Some(reply);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{target}'s profile never became as expected; last: {last:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_profile_set_in_one_cluster_is_seen_in_the_others() {
    let t = start_with("profiles", |o| o.synchronizers_per_cluster = 1).await;
    // "alice" lives in cluster 3 of 3, "bob" in cluster 1.
    let mut alice = register(&t, "alice").await;
    let mut bob = register(&t, "bob").await;

    let mine = alice.profile(None).await.expect("her own profile");
    assert_eq!(mine.status, Code::Success as i32);
    let mine = mine.profile.expect("a profile");
    assert_eq!((mine.username.as_str(), mine.display_name.as_str()), ("alice", ""));

    let (status, _) = alice
        .set_profile(Some("Alice Liddell"), Some("Curiouser and curiouser"))
        .await
        .expect("SetProfile answers");
    assert_eq!(status, Code::Success);
    assert_eq!(bob.follow("alice").await.expect("FOLLOW answers"), Code::Success);

    // Cluster 1 learns her profile and that bob follows her.
    let seen = profile_when(&mut bob, "alice", |p| {
        p.display_name == "Alice Liddell" && p.followers == 1
    })
    .await;
    assert_eq!(seen.bio, "Curiouser and curiouser");
    assert_eq!(seen.user_id, alice.id());
    // A field left out keeps its value.
    let (status, _) = alice.set_profile(None, Some("Down the rabbit hole")).await.unwrap();
    assert_eq!(status, Code::Success);
    let seen = profile_when(&mut bob, "alice", |p| p.bio == "Down the rabbit hole").await;
    assert_eq!(seen.display_name, "Alice Liddell");
    // Bob's own counts, at his own cluster.
    let his = bob.profile(None).await.unwrap().profile.expect("his profile");
    assert_eq!((his.following, his.followers), (1, 0));

    // Bad input is refused and changes nothing.
    let long_bio = "x".repeat(MAX_BIO_CHARS + 1);
    for (name, bio) in [
        (None, Some(long_bio.as_str())),
        (Some("two\nlines"), None),
        (Some("bell\u{7}"), None),
    ] {
        let (status, message) = alice.set_profile(name, bio).await.unwrap();
        assert_eq!(status, Code::FailureInvalid, "{name:?} {bio:?}");
        assert!(!message.is_empty());
    }
    let unknown = bob.profile(Some("nobody_here")).await.unwrap();
    assert_eq!(unknown.status, Code::FailureNotExists as i32);
    let bad = bob.profile(Some("Not A Name!")).await.unwrap();
    assert_eq!(bad.status, Code::FailureInvalidUsername as i32);
    let kept = alice.profile(None).await.unwrap().profile.unwrap();
    assert_eq!(
        (kept.display_name.as_str(), kept.bio.as_str()),
        ("Alice Liddell", "Down the rabbit hole")
    );

    // Every replica of every cluster holds the same profiles.
    let digests = settled_digests(&t).await;
    for c in 1..=3 {
        let (a, b) = (&digests[&(c, 1)], &digests[&(c, 2)]);
        assert!(a.is_ok() && a == b, "cluster {c}: {a:?} vs {b:?}");
        assert!(
            a.as_ref().is_ok_and(|d| d.contains("Down the rabbit hole")),
            "cluster {c} holds her profile"
        );
    }

    // tsc: PROFILE shows, PROFILE NAME sets; HELP lists the commands.
    let mut tsc = tsc_registered(&t, "bob");
    tsc.send("PROFILE alice\n");
    tsc.wait_for(
        "alice (Alice Liddell)\nBio: Down the rabbit hole\nFollowers: 1, Following: 0, Posts: 0",
        1,
        Duration::from_secs(20),
    )
    .expect("tsc shows her profile");
    tsc.send("PROFILE NAME Bob the Builder\n");
    tsc.send("PROFILE\n");
    tsc.wait_for("bob (Bob the Builder)", 1, Duration::from_secs(20))
        .expect("tsc sets and shows his name");
    tsc.send("HELP\n");
    tsc.wait_for(" PROFILE NAME <display name>", 1, Duration::from_secs(20))
        .expect("HELP lists PROFILE");
    let (_, output) = tsc.finish(Duration::from_secs(10));
    assert!(!output.contains("Invalid Command"), "{output}");
}

/// Heartbeats as a synchronizer of an older release (feature level 1, before profiles) until
/// `stop` is set, then leaves.
async fn older_member(t: &Topology, stop: tokio::sync::watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
    use tinysns_common::proto::coordinator::membership_client::MembershipClient;
    use tinysns_common::proto::coordinator::{HeartbeatRequest, Member, MemberKind};
    let channel = tinysns_common::grpc::internal_channel(
        &t.coordinator_internal_addresses()[0],
        Duration::from_secs(1),
        &t.member_credentials(),
    )
    .expect("a channel to the coordinator");
    let mut client = MembershipClient::new(channel);
    let beat = move |leaving: bool| HeartbeatRequest {
        member: Some(Member {
            kind: MemberKind::Synchronizer as i32,
            member_id: 50,
            address: "127.0.0.1:9".into(),
            feature_level: 1,
            ..Default::default()
        }),
        leaving,
        ..Default::default()
    };
    client.heartbeat(beat(false)).await.expect("the old member joins");
    tokio::spawn(async move {
        let mut stop = stop;
        while !*stop.borrow() {
            let _ = client.heartbeat(beat(false)).await;
            let _ = tokio::time::timeout(Duration::from_millis(100), stop.changed()).await;
        }
        client.heartbeat(beat(true)).await.expect("the old member leaves");
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn profiles_wait_while_a_member_of_an_older_release_runs() {
    let t = start_with("profiles-upgrade", |o| o.synchronizers_per_cluster = 1).await;
    let mut alice = register(&t, "alice").await;
    let _bob = register(&t, "bob").await;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let old = older_member(&t, stopped).await;
    let level = t.list_clusters().await.expect("ListClusters").system_feature_level;
    assert_eq!(level, 1, "the oldest member sets the system's level");
    tokio::time::sleep(t.heartbeat_interval() * 3).await;

    // A new kind of write waits, and changes nothing; what older releases had works.
    let (status, message) = alice
        .set_profile(Some("Alice"), None)
        .await
        .expect("SetProfile answers");
    assert_eq!(status, Code::FailureUpgrading, "{message}");
    assert!(message.contains("upgrade"), "{message}");
    let mine = alice.profile(None).await.unwrap().profile.expect("her profile");
    assert_eq!(mine.display_name, "");
    assert_eq!(alice.follow("bob").await.expect("FOLLOW answers"), Code::Success);
    // Topics wait too; a post is never refused for the #tags in its text: it is stored
    // without topics (an older member could not carry them).
    assert_eq!(alice.subscribe("rust", true).await.unwrap().0, Code::FailureUpgrading);
    let explicit = alice.publish("explicit", &["rust".to_string()]).await.unwrap();
    assert_eq!(explicit.status, Code::FailureUpgrading as i32);
    let tagged = alice.publish("a #rust post", &[]).await.unwrap();
    assert_eq!(tagged.status, Code::Success as i32, "{}", tagged.message);

    // Once the old member is gone, profiles open.
    stop.send_replace(true);
    old.await.expect("the old member's task");
    let mut status = Code::FailureUpgrading;
    for _ in 0..100 {
        status = alice
            .set_profile(Some("Alice"), None)
            .await
            .expect("SetProfile answers")
            .0;
        if status != Code::FailureUpgrading {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status, Code::Success);
    assert_eq!(t.list_clusters().await.unwrap().system_feature_level, FEATURE_LEVEL);
    let mine = alice.profile(None).await.unwrap().profile.expect("her profile");
    assert_eq!(mine.display_name, "Alice");
    let rust = alice.history("rust", 0, false, 0).await.unwrap();
    assert_eq!(rust.posts.len(), 0, "the post made during the upgrade carries no topic");
    assert_eq!(alice.subscribe("rust", true).await.unwrap().0, Code::Success);
}
