//! End-to-end tests: the real binaries, real gRPC over loopback, a real RabbitMQ.

mod common;

use common::*;
use std::time::{Duration, Instant};
use tinysns_common::auth::AuthMode;
use tinysns_common::proto::social::Status as Code;
use tinysns_common::proto::social::{ListRequest, LoginRequest, TimelineOpen, TimelineRequest, timeline_request};
use tinysns_stack::tsc::Tsc;

const DELIVERY: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_cluster_follow_list_and_timeline() {
    let t = start("cross-cluster").await;
    let (mut u1, mut u2, mut u3) = (login(&t, 1).await, login(&t, 2).await, login(&t, 3).await);
    for u in [&mut u1, &mut u2, &mut u3] {
        until_known(u, &[1, 2, 3]).await;
    }
    assert_eq!(u1.follow(&t.name(2)).await.unwrap(), Code::Success);
    assert_eq!(u1.follow(&t.name(3)).await.unwrap(), Code::Success);
    assert_eq!(u2.follow(&t.name(1)).await.unwrap(), Code::Success);
    until_followers(&mut u2, &[1]).await;
    until_followers(&mut u3, &[1]).await;
    until_followers(&mut u1, &[2]).await;
    let list = u1.list().await.unwrap();
    assert_eq!(list.user_ids(), vec![1, 2, 3]);
    let names: Vec<String> = list.all_users.iter().map(|u| u.username.clone()).collect();
    assert_eq!(names, vec![t.name(1), t.name(2), t.name(3)], "LIST shows usernames");

    let mut t1 = u1.timeline(0).await.unwrap();
    assert!(t1.history.is_empty());
    let mut t2 = u2.timeline(0).await.unwrap();
    let mut t3 = u3.timeline(0).await.unwrap();

    let posted = Instant::now();
    assert_eq!(
        t2.post("hello from cluster 2").await.unwrap().status,
        Code::Success as i32
    );
    let got = expect_post(&mut t1, DELIVERY).await;
    println!("cross-cluster delivery 2 -> 1 took {:?}", posted.elapsed());
    assert_eq!((got.author, got.text.as_str()), (2, "hello from cluster 2"));
    assert_eq!(got.author_name, t.name(2), "posts carry their author's username");

    assert_eq!(
        t3.post("hello from cluster 3").await.unwrap().status,
        Code::Success as i32
    );
    let got = expect_post(&mut t1, DELIVERY).await;
    assert_eq!((got.author, got.text.as_str()), (3, "hello from cluster 3"));

    // User 1's own post reaches its follower (2) but is not echoed to 1.
    assert_eq!(
        t1.post("hello from cluster 1").await.unwrap().status,
        Code::Success as i32
    );
    let got = expect_post(&mut t2, DELIVERY).await;
    assert_eq!((got.author, got.text.as_str()), (1, "hello from cluster 1"));
    let extra = t1.collect(Duration::from_millis(500)).await.unwrap();
    assert!(
        extra.is_empty(),
        "own post echoed or duplicate delivered: {:?}",
        texts(&extra)
    );
    // 3 does not follow 1 or 2: nothing arrives.
    assert!(t3.collect(Duration::from_millis(300)).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeline_shows_last_20_newest_first_and_only_after_follow() {
    let t = start("history").await;
    let (mut u1, mut u2) = (login(&t, 1).await, login(&t, 2).await);
    until_known(&mut u1, &[2]).await;
    let mut t2 = u2.timeline(0).await.unwrap();
    for i in 0..3 {
        t2.post(&format!("before-{i}")).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(u1.follow(&t.name(2)).await.unwrap(), Code::Success);
    tokio::time::sleep(Duration::from_millis(20)).await;
    for i in 0..25 {
        t2.post(&format!("after-{i}")).await.unwrap();
    }
    let expected: Vec<String> = (5..25).rev().map(|i| format!("after-{i}")).collect();
    let history = eventually!("the 25 posts to reach cluster 1", DELIVERY, async {
        let timeline = u1.timeline(0).await.ok()?;
        (texts(&timeline.history) == expected).then_some(timeline.history)
    });
    assert!(
        history.windows(2).all(|w| w[0].timestamp_ms >= w[1].timestamp_ms),
        "newest first"
    );
    assert!(history.iter().all(|p| !p.text.starts_with("before")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeline_resumed_behind_the_compacted_log_misses_nothing() {
    // A log that keeps 5 entries: a follower away for 60 posts resumes from a position the
    // log no longer holds (and the posts of someone it does not follow are in between), on
    // servers restarted meanwhile (so nothing is in memory).
    let mut t = start_with("resume-compacted", |o| {
        o.tsd_args.extend(["--log-retain".to_string(), "5".to_string()]);
    })
    .await;
    let (mut u1, mut u4, mut u7) = (login(&t, 1).await, login(&t, 4).await, login(&t, 7).await);
    assert_eq!(u1.follow(&t.name(4)).await.unwrap(), Code::Success);
    let cursor = u1.timeline(0).await.unwrap().live_from;
    let (mut t4, mut t7) = (u4.timeline(0).await.unwrap(), u7.timeline(0).await.unwrap());
    for i in 0..60 {
        t4.post(&format!("followed-{i}")).await.unwrap();
        t7.post(&format!("not followed-{i}")).await.unwrap();
    }
    // Users 1, 4 and 7 live in cluster 1: its log's front moves past the cursor within a
    // few commit-point periods.
    let dir = t.server_data_dir(1, 1);
    eventually!(
        "the log to be compacted past the cursor",
        Duration::from_secs(10),
        async {
            let conn = tinysns_tsd::store::open(&dir).ok()?;
            (tinysns_tsd::store::compaction::bounds(&conn).ok()?.start > cursor + 10).then_some(())
        }
    );
    // Restarted, the servers hold nothing in memory: the missed stretch can only come from
    // the store.
    for server in [1, 2] {
        t.server(1, server).stop(Duration::from_secs(10));
    }
    for server in [1, 2] {
        t.server(1, server).start().expect("restart");
    }
    let mut resumed = eventually!("cluster 1 to serve again", Duration::from_secs(20), async {
        u1.timeline(cursor).await.ok()
    });
    let got = resumed.collect(Duration::from_secs(2)).await.unwrap();
    let want: Vec<String> = (0..60).map(|i| format!("followed-{i}")).collect();
    assert_eq!(texts(&got), want, "every missed post once, oldest first");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minutes_of_clock_skew_between_clusters_hide_no_post() {
    // Cluster 2's clocks run 5 minutes behind, cluster 3's 5 minutes ahead.
    let t = start_with("clock-skew", |o| {
        o.cluster_tsd_args
            .insert(2, vec!["--clock-skew-ms".into(), "-300000".into()]);
        o.cluster_tsd_args
            .insert(3, vec!["--clock-skew-ms".into(), "300000".into()]);
    })
    .await;
    let (mut u1, mut u2, mut u3) = (login(&t, 1).await, login(&t, 2).await, login(&t, 3).await);
    until_known(&mut u1, &[2, 3]).await;
    until_known(&mut u3, &[1]).await;
    // An author whose clock is behind: its post's wall time is before the follow's.
    assert_eq!(u1.follow(&t.name(2)).await.unwrap(), Code::Success);
    until_followers(&mut u2, &[1]).await;
    let mut t2 = u2.timeline(0).await.unwrap();
    t2.post("from a clock behind").await.unwrap();
    // A follower whose clock is ahead: the follow's wall time is after the post's.
    assert_eq!(u3.follow(&t.name(1)).await.unwrap(), Code::Success);
    until_followers(&mut u1, &[3]).await;
    let mut t1 = u1.timeline(0).await.unwrap();
    t1.post("to a clock ahead").await.unwrap();
    eventually!("the post from behind to be shown", DELIVERY, async {
        let history = u1.timeline(0).await.ok()?.history;
        (texts(&history) == ["from a clock behind"]).then_some(())
    });
    let shown = eventually!("the post to the clock ahead to be shown", DELIVERY, async {
        let history = u3.timeline(0).await.ok()?.history;
        (texts(&history) == ["to a clock ahead"]).then_some(history)
    });
    // The wall clock is still what is shown: cluster 1's time, minutes behind cluster 3's.
    assert!(shown[0].timestamp_ms < tinysns_common::now_ms() + 60_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quorum_queues_carry_changes_between_clusters() {
    let t = start_with("quorum", |o| {
        o.broker = tinysns_stack::topology::Broker::Private;
        o.synchronizer_args = vec!["--amqp-queue-type".into(), "quorum".into()];
    })
    .await;
    let (mut u1, mut u2) = (login(&t, 1).await, login(&t, 2).await);
    until_known(&mut u1, &[2]).await;
    assert_eq!(u1.follow(&t.name(2)).await.unwrap(), Code::Success);
    until_followers(&mut u2, &[1]).await;
    u2.timeline(0)
        .await
        .unwrap()
        .post("through a quorum queue")
        .await
        .unwrap();
    eventually!("the post to cross", DELIVERY, async {
        let history = u1.timeline(0).await.ok()?.history;
        (texts(&history) == ["through a quorum queue"]).then_some(())
    });
    // The queues are quorum queues: declaring one as such is accepted, as classic refused.
    let url = t.rabbit.as_ref().expect("a private broker").url();
    let conn = lapin::Connection::connect(&url, lapin::ConnectionProperties::default())
        .await
        .unwrap();
    let names = tinysns_synchronizer::bus::Names::new(&t.namespace);
    let durable = lapin::options::QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    for (queue_type, accepted) in [
        (tinysns_synchronizer::bus::QueueType::Quorum, true),
        (tinysns_synchronizer::bus::QueueType::Classic, false),
    ] {
        let channel = conn.create_channel().await.unwrap();
        let args = tinysns_synchronizer::bus::queue_arguments(queue_type, Some(&names));
        let declared = channel.queue_declare(names.queue(1).into(), durable, args).await;
        assert_eq!(declared.is_ok(), accepted, "{queue_type:?}: {declared:?}");
    }
}

/// A broker killed (its connections reset, not closed) while the system is quiet, with no
/// publish pending to fail: the synchronizers must notice, reconnect once the broker is back,
/// and a post made then must cross. (Under load, `faults::managed_broker_*` kill it too.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quiet_synchronizers_reconnect_after_the_broker_is_killed() {
    let mut t = start_with("broker-killed-quiet", |o| {
        o.broker = tinysns_stack::topology::Broker::Private
    })
    .await;
    let (mut u1, mut u2) = (login(&t, 1).await, login(&t, 2).await);
    until_known(&mut u1, &[2]).await;
    assert_eq!(u1.follow(&t.name(2)).await.unwrap(), Code::Success);
    until_followers(&mut u2, &[1]).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    t.rabbit.as_mut().expect("a private broker").kill();
    tokio::time::sleep(Duration::from_secs(3)).await;
    t.start_broker().await.expect("the broker restarts on its data");
    u2.timeline(0)
        .await
        .unwrap()
        .post("after the broker came back")
        .await
        .unwrap();
    eventually!("the post to cross", DELIVERY, async {
        let history = u1.timeline(0).await.ok()?.history;
        (texts(&history) == ["after the broker came back"]).then_some(())
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_error_status_is_reported_and_nothing_bad_is_stored() {
    // The classic system: numeric ids, one login per user at a time.
    let t = start_with("errors", |o| o.auth = AuthMode::Open).await;
    let (mut u1, u2) = (login(&t, 1).await, login(&t, 2).await);
    let mut u3 = login(&t, 3).await;
    until_known(&mut u1, &[2, 3]).await;

    // A second concurrent login of the same user.
    match tinysns_stack::client::User::login(&t.coordinator_address(), 1).await {
        Err(tinysns_client::session::ConnectError::Refused { status, .. }) => {
            assert_eq!(status, Code::FailureAlreadyExists)
        }
        Err(other) => panic!("unexpected error {other}"),
        Ok(_) => panic!("second concurrent login accepted"),
    }
    // Invalid user ids never reach a server.
    assert!(
        tinysns_stack::client::User::login(&t.coordinator_address(), 0)
            .await
            .is_err()
    );

    assert_eq!(u1.follow("1").await.unwrap(), Code::FailureInvalid, "follow yourself");
    assert_eq!(u1.follow("99").await.unwrap(), Code::FailureNotExists, "unknown user");
    for bad in ["abc", "-5", "0", "1.5", "99999999999999999999999"] {
        assert_eq!(u1.follow(bad).await.unwrap(), Code::FailureInvalidUsername, "{bad}");
    }
    assert_eq!(u1.unfollow("3").await.unwrap(), Code::FailureNotAFollower);
    assert_eq!(u1.unfollow("98").await.unwrap(), Code::FailureNotExists);
    assert_eq!(u1.follow("2").await.unwrap(), Code::Success);
    assert_eq!(u1.follow("2").await.unwrap(), Code::FailureAlreadyExists);
    assert_eq!(u1.unfollow("2").await.unwrap(), Code::Success);
    assert_eq!(u1.unfollow("2").await.unwrap(), Code::FailureNotAFollower);

    // Talking to cluster 1's master directly: a user of another cluster cannot log in
    // there, and nobody without a session gets anything.
    let master = t.view(1).await.unwrap().master.unwrap();
    let mut direct = social_client(&master.address);
    let reply = direct
        .login(LoginRequest {
            user_id: 2,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.status, Code::FailureInvalid as i32, "user 2 lives in cluster 2");
    let status = direct.list(ListRequest::default()).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated);
    let open = TimelineRequest {
        kind: Some(timeline_request::Kind::Open(TimelineOpen {
            resume_after: 0,
            ..Default::default()
        })),
    };
    let status = direct.timeline(tokio_stream::iter(vec![open])).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated);

    // Posts: empty, oversized and control characters are refused and never delivered.
    assert_eq!(u3.follow("1").await.unwrap(), Code::Success);
    until_followers(&mut u1, &[3]).await;
    let mut t3 = u3.timeline(0).await.unwrap();
    let mut t1 = u1.timeline(0).await.unwrap();
    let oversized = "x".repeat(tinysns_common::limits::MAX_POST_BYTES + 1);
    for bad in ["", "   ", oversized.as_str(), "bell\u{7}", "two\nlines"] {
        let ack = t1.post(bad).await.unwrap();
        assert_eq!(ack.status, Code::FailureInvalid as i32, "{bad:?} accepted");
    }
    assert_eq!(t1.post("a fine post").await.unwrap().status, Code::Success as i32);
    let got = expect_post(&mut t3, DELIVERY).await;
    assert_eq!(got.text, "a fine post");
    assert!(t3.collect(Duration::from_millis(500)).await.unwrap().is_empty());
    drop(u2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tsc_binary_behaves_like_the_classic_client() {
    let t = start_with("tsc", |o| o.auth = AuthMode::Open).await;
    let port = t.coordinator_address();
    let port = port.as_str();
    // Users 2 and 3 exist first.
    for user in [2, 3] {
        let (code, _) = Tsc::start(port, user).unwrap().finish(Duration::from_secs(10));
        assert_eq!(code, Some(0));
    }
    let mut tsc1 = Tsc::start(port, 1).unwrap();
    let banner = "\n========= TINY SNS CLIENT =========\n Command Lists and Format:\n FOLLOW <username>\n UNFOLLOW <username>\n LIST\n TIMELINE\n=====================================\n";
    tsc1.wait_for("Cmd> ", 1, Duration::from_secs(10)).unwrap();
    // Wait until users 2 and 3 are known in cluster 1.
    let mut u1probe = 0;
    loop {
        tsc1.send("list\n");
        u1probe += 1;
        let out = tsc1.wait_for("Cmd> ", u1probe + 1, Duration::from_secs(10)).unwrap();
        if out.contains("All users: 1, 2, 3, ") {
            break;
        }
        assert!(u1probe < 100, "users never propagated:\n{out}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let before = tsc1.output();
    // FOLLOW 2 twice, FOLLOW yourself, an unknown user, a malformed one, UNFOLLOW someone
    // not followed and someone unknown: the classic messages for each.
    tsc1.send("FOLLOW 2\nfollow 2\nFOLLOW 1\nfollow 42\nFollow abc\nUNFOLLOW 3\nunfollow 77\nLIST 2\nFOLLOW \nDANCE\nTIMELINE\n");
    let out = tsc1
        .wait_for("Now you are in the timeline", 1, Duration::from_secs(10))
        .unwrap();
    let transcript = &out[before.len()..];
    assert_eq!(
        transcript,
        "Command completed successfully\nCmd> \
         Input username already exists, command failed\nCmd> \
         Input username already exists, command failed\nCmd> \
         Command failed with invalid username\nCmd> \
         Command failed with invalid username\nCmd> \
         Command failed with invalid username\nCmd> \
         Command failed with invalid username\nCmd> \
         Invalid Input -- Only FOLLOW and UNFOLLOW commands have Arguments\nCmd> \
         Invalid Input -- No Arguments Given\nCmd> \
         Invalid Command\nCmd> \
         Command completed successfully\nNow you are in the timeline\n"
    );
    assert!(out.starts_with(banner), "banner differs:\n{out}");

    // User 2 posts through its own tsc (stdin piped, then closed).
    let mut tsc2 = Tsc::start(port, 2).unwrap();
    tsc2.send("TIMELINE\nhello through tsc\n");
    tsc2.wait_for("Now you are in the timeline", 1, Duration::from_secs(10))
        .unwrap();
    let (code, _) = tsc2.finish(Duration::from_secs(10));
    assert_eq!(code, Some(0));
    let out = tsc1
        .wait_for(">> hello through tsc\n", 1, DELIVERY)
        .unwrap_or_else(|o| panic!("post never shown:\n{o}"));
    let line = out.lines().find(|l| l.ends_with(">> hello through tsc")).unwrap();
    // `2 (Sun Nov 22 01:53:24 2026) >> hello through tsc`
    assert!(line.starts_with("2 ("), "{line}");
    assert_eq!(line.find(") >> "), Some(2 + 1 + 24), "ctime is 24 characters: {line}");

    // `exit` leaves timeline mode; the prompt comes back.
    tsc1.send("exit\nLIST\n");
    let (code, out) = tsc1.finish(Duration::from_secs(10));
    assert_eq!(code, Some(0));
    assert!(
        out.ends_with("Command completed successfully\nAll users: 1, 2, 3, \nFollowers: \nCmd> "),
        "{out}"
    );
    assert_eq!(out.matches(">> hello through tsc").count(), 1);

    // A client killed with SIGKILL frees its user at once: its connection closes, so its
    // session's stream ends. A restarted client logs in straight away (within the old 4 s
    // lease, which would have refused it).
    let mut crashed = Tsc::start(port, 3).unwrap();
    crashed.wait_for("Cmd> ", 1, Duration::from_secs(10)).unwrap();
    crashed.kill();
    let started = Instant::now();
    let restarted = Tsc::start(port, 3).unwrap();
    let out = restarted
        .wait_for("Cmd> ", 1, Duration::from_secs(10))
        .unwrap_or_else(|o| panic!("the restarted client did not get in:\n{o}"));
    assert!(!out.contains("connection failed"), "{out}");
    println!("restart after kill -9 logged in after {:?}", started.elapsed());
    drop(restarted);

    // No coordinator there: the classic failure line.
    let dead = tinysns_stack::free_port().unwrap();
    let (code, out) = Tsc::start(&format!("127.0.0.1:{dead}"), 1)
        .unwrap()
        .finish(Duration::from_secs(10));
    assert_eq!(out, "connection failed: -1\n");
    assert_eq!(code, Some(1));
}
