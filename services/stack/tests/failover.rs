//! Processes dying and coming back: nothing acknowledged may be lost.

mod common;

use common::*;
use std::time::{Duration, Instant};
use tinysns_common::proto::social::ListRequest;
use tinysns_common::proto::social::Status as Code;
use tinysns_stack::proxy::Link;

const DELIVERY: Duration = Duration::from_secs(15);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_process_restarted_and_nothing_lost() {
    let mut t = start("restart-all").await;
    let (mut u1, mut u2, mut u3) = (login(&t, 1).await, login(&t, 2).await, login(&t, 3).await);
    until_known(&mut u1, &[2, 3]).await;
    until_known(&mut u3, &[1, 2]).await;
    assert_eq!(u1.follow(&t.name(2)).await.unwrap(), Code::Success);
    assert_eq!(u3.follow(&t.name(1)).await.unwrap(), Code::Success);
    let mut t2 = u2.timeline(0).await.unwrap();
    for i in 0..3 {
        t2.post(&format!("two-{i}")).await.unwrap();
    }
    let mut t1 = u1.timeline(0).await.unwrap();
    for i in 0..2 {
        t1.post(&format!("one-{i}")).await.unwrap();
    }
    let want1: Vec<String> = (0..3).rev().map(|i| format!("two-{i}")).collect();
    let want3: Vec<String> = (0..2).rev().map(|i| format!("one-{i}")).collect();
    eventually!("posts to cross clusters", DELIVERY, async {
        let h1 = u1.timeline(0).await.ok()?.history;
        let h3 = u3.timeline(0).await.ok()?.history;
        (texts(&h1) == want1 && texts(&h3) == want3).then_some(())
    });
    drop((t1, t2));
    let lists_before = (
        u1.list().await.unwrap(),
        u2.list().await.unwrap(),
        u3.list().await.unwrap(),
    );
    for u in [u1, u2, u3] {
        u.logout().await;
    }

    let terms_before: Vec<u64> = t.views().await.unwrap().iter().map(|v| v.term).collect();
    t.stop_all();
    // Also lose what the coordinator decided: the terms must come back from the servers'
    // own durable record and never go backwards.
    std::fs::remove_dir_all(t.coordinator_data_dir(0)).unwrap();
    t.start_broker().await.unwrap();
    t.start_services().unwrap();
    t.wait_ready(Duration::from_secs(30)).await.unwrap();

    let terms_after: Vec<u64> = t.views().await.unwrap().iter().map(|v| v.term).collect();
    for (before, after) in terms_before.iter().zip(&terms_after) {
        assert!(
            after > before,
            "terms went backwards: {terms_before:?} -> {terms_after:?}"
        );
    }
    let (mut u1, mut u2, mut u3) = (login(&t, 1).await, login(&t, 2).await, login(&t, 3).await);
    let lists_after = (
        u1.list().await.unwrap(),
        u2.list().await.unwrap(),
        u3.list().await.unwrap(),
    );
    assert_eq!(lists_before, lists_after);
    assert_eq!(texts(&u1.timeline(0).await.unwrap().history), want1);
    assert_eq!(texts(&u3.timeline(0).await.unwrap().history), want3);
    // And the system still carries new posts across clusters.
    let mut t1 = u1.timeline(0).await.unwrap();
    let mut t2 = u2.timeline(0).await.unwrap();
    t2.post("after the restart").await.unwrap();
    assert_eq!(expect_post(&mut t1, DELIVERY).await.text, "after the restart");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_master_tsd_is_replaced_by_its_slave_with_the_same_data() {
    let mut t = start("tsd-failover").await;
    let (mut u1, mut u2) = (login(&t, 1).await, login(&t, 2).await);
    until_known(&mut u1, &[2]).await;
    assert_eq!(u1.follow(&t.name(2)).await.unwrap(), Code::Success);
    let mut t2 = u2.timeline(0).await.unwrap();
    for i in 0..3 {
        t2.post(&format!("before-{i}")).await.unwrap();
    }
    let want: Vec<String> = (0..3).rev().map(|i| format!("before-{i}")).collect();
    eventually!("posts to reach cluster 1", DELIVERY, async {
        (texts(&u1.timeline(0).await.ok()?.history) == want).then_some(())
    });
    let mut t1 = u1.timeline(0).await.unwrap();
    let mine = t1.post("written before the failover").await.unwrap();
    assert_eq!(mine.status, Code::Success as i32);
    // A tsc in timeline mode rides through the failover too.
    let mut tsc = tsc_for(&t, 4).await;
    tsc.send(&format!("FOLLOW {}\nTIMELINE\n", t.name(2)));
    tsc.wait_for("Now you are in the timeline", 1, Duration::from_secs(10))
        .unwrap();
    let list_before = u1.list().await.unwrap();

    let old = t.master_server(1).await.expect("cluster 1 has a master");
    let killed = Instant::now();
    t.server(1, old).kill();
    // The same session carries on against the new master: same data, writes accepted.
    assert_eq!(u1.list().await.unwrap(), list_before);
    let new = t.master_server(1).await.expect("cluster 1 has a new master");
    assert_ne!(new, old);
    let mut t1 = u1.timeline(0).await.unwrap();
    let ack = t1.post("written after the failover").await.unwrap();
    println!(
        "tsd failover: first write acknowledged by the new master {:?} after the kill",
        killed.elapsed()
    );
    assert_eq!(ack.status, Code::Success as i32);
    assert_eq!(texts(&t1.history), want);
    t2.post("live after the failover").await.unwrap();
    assert_eq!(expect_post(&mut t1, DELIVERY).await.text, "live after the failover");
    let out = tsc
        .wait_for(">> live after the failover\n", 1, DELIVERY)
        .unwrap_or_else(|o| panic!("tsc missed it:\n{o}"));
    assert_eq!(out.matches(">> live after the failover").count(), 1);

    // The killed server comes back as a slave and catches up; then it takes over again
    // and has everything, including what was written while it was down.
    t.server(1, old).start().unwrap();
    t.wait_ready(Duration::from_secs(20)).await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    t.server(1, new).kill();
    let mut t1 = u1.timeline(0).await.unwrap();
    assert_eq!(t.master_server(1).await, Some(old));
    let mut want = vec!["live after the failover".to_string()];
    want.extend((0..3).rev().map(|i| format!("before-{i}")));
    assert_eq!(texts(&t1.history), want);
    assert_eq!(
        t1.post_with_id(mine.post_id, "written before the failover")
            .await
            .unwrap()
            .status,
        Code::Success as i32
    );
    let (_, out) = tsc.finish(Duration::from_secs(10));
    assert_eq!(
        out.matches(">> live after the failover").count(),
        1,
        "duplicate after failover:\n{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_master_synchronizers_are_replaced_and_delivery_continues() {
    let mut t = start("sync-failover").await;
    let (mut u1, mut u2) = (login(&t, 1).await, login(&t, 2).await);
    until_known(&mut u1, &[2]).await;
    assert_eq!(u1.follow(&t.name(2)).await.unwrap(), Code::Success);
    until_followers(&mut u2, &[1]).await;
    let mut t1 = u1.timeline(0).await.unwrap();
    let mut t2 = u2.timeline(0).await.unwrap();
    t2.post("before").await.unwrap();
    assert_eq!(expect_post(&mut t1, DELIVERY).await.text, "before");

    // The publishing side (cluster 2) and the consuming side (cluster 1) both lose their
    // master synchronizer.
    for cluster in [2, 1] {
        let old = t.master_synchronizer(cluster).await.expect("a master synchronizer");
        t.synchronizer(old).kill();
        t2.post(&format!("after killing the master synchronizer of cluster {cluster}"))
            .await
            .unwrap();
        let got = expect_post(&mut t1, Duration::from_secs(20)).await;
        assert_eq!(
            got.text,
            format!("after killing the master synchronizer of cluster {cluster}")
        );
        let new = t.master_synchronizer(cluster).await.expect("a new master synchronizer");
        assert_ne!(new, old);
    }
    let extra = t1.collect(Duration::from_secs(1)).await.unwrap();
    assert!(extra.is_empty(), "duplicates: {:?}", texts(&extra));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_without_live_servers_is_reported_unavailable() {
    let mut t = start("no-servers").await;
    t.server(3, 1).kill();
    t.server(3, 2).kill();
    eventually!("cluster 3 to lose its master", Duration::from_secs(10), async {
        t.master_server(3).await.is_none().then_some(())
    });
    let (code, out) = tsc_as(&t, 3, &[]).finish(Duration::from_secs(10));
    assert_eq!((code, out.as_str()), (Some(1), "connection failed: -1\n"));
    // Other clusters are unaffected.
    let (code, out) = tsc_for(&t, 1).await.finish(Duration::from_secs(10));
    assert_eq!(code, Some(0), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_cut_off_from_the_coordinator_stops_serving_reads() {
    let t = start("fenced-reads").await;
    let user = login(&t, 1).await;
    let address = t.view(1).await.unwrap().master.unwrap().address;
    let mut raw = authed_client(&address, user.token());
    raw.list(ListRequest::default()).await.expect("the master serves LIST");
    // The coordinator stops answering: the master's lease runs out within a failure timeout,
    // and by then another master could have been made. It must stop answering reads.
    t.coordinators[0].process.pause();
    let refused = eventually!("the master to refuse reads", Duration::from_secs(5), async {
        raw.list(ListRequest::default()).await.err()
    });
    t.coordinators[0].process.resume();
    assert!(tinysns_common::grpc::is_retryable(&refused), "{refused:?}");
    eventually!("the master to serve again", Duration::from_secs(5), async {
        raw.list(ListRequest::default()).await.ok()
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slave_that_stops_answering_leaves_the_in_sync_set_and_writes_go_on() {
    // The coordinator would notice a dead slave only after 20 s; the master drops a slave
    // that keeps a write waiting after 500 ms (with the coordinator's agreement).
    let mut t = start_with("slave-stalls", |o| {
        o.failure_timeout = Some("20s".into());
        o.tsd_args = vec!["--replica-timeout".into(), "500ms".into()];
    })
    .await;
    // Users 1 and 4 live in cluster 1; 4 follows 1.
    let mut author = login(&t, 1).await;
    let mut reader = login(&t, 4).await;
    assert_eq!(reader.follow(&t.name(1)).await.unwrap(), Code::Success);
    let mut timeline = author.timeline(0).await.unwrap();
    timeline.post("before").await.unwrap();
    let master = t.master_server(1).await.unwrap();
    let slave = if master == 1 { 2 } else { 1 };
    eventually!("the slave to be in sync", Duration::from_secs(10), async {
        let view = t.view(1).await.ok()?;
        (view.in_sync_slaves == [slave]).then_some(())
    });
    // The slave stops answering (its heartbeats stop too, but 20 s is far away).
    t.server(1, slave).pause();
    let started = Instant::now();
    timeline.post("while the slave is stalled").await.unwrap();
    let waited = started.elapsed();
    let view = t.view(1).await.unwrap();
    assert!(view.in_sync_slaves.is_empty(), "{view:?}");
    assert!(
        view.slaves.iter().any(|s| s.member_id == slave),
        "the slave still counts as alive"
    );
    assert!(waited < Duration::from_secs(10), "the write waited {waited:?}");
    // It answers again: it catches up and rejoins, and can then take over with everything.
    t.server(1, slave).resume();
    eventually!("the slave to rejoin the in-sync set", Duration::from_secs(10), async {
        let view = t.view(1).await.ok()?;
        (view.in_sync_slaves == [slave]).then_some(())
    });
    timeline.post("after").await.unwrap();
    drop(timeline);
    t.server(1, master).kill();
    eventually!("the slave to take over", Duration::from_secs(40), async {
        (t.master_server(1).await == Some(slave)).then_some(())
    });
    let want = ["after", "while the slave is stalled", "before"];
    eventually!(
        "the new master to show every acknowledged post",
        Duration::from_secs(20),
        async {
            let history = reader.timeline(0).await.ok()?.history;
            (texts(&history) == want).then_some(())
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeline_resumed_after_both_replicas_restart_shows_nothing_twice() {
    // The stored commit point stays where the first write put it, so a restart knows the
    // posts below as written but not yet committed until its slave has them again; the
    // master keeps waiting for the slave (nobody drops it from the in-sync set meanwhile).
    let mut t = start_with("resume-after-restart", |o| {
        o.failure_timeout = Some("30s".into());
        o.tsd_args = vec![
            "--commit-point-interval".into(),
            "1h".into(),
            "--replica-timeout".into(),
            "1h".into(),
        ];
    })
    .await;
    // Users 1 and 4 live in cluster 1; 4 follows 1.
    let mut author = login(&t, 1).await;
    let mut reader = login(&t, 4).await;
    assert_eq!(reader.follow(&t.name(1)).await.unwrap(), Code::Success);
    let mut live = reader.timeline(0).await.unwrap();
    let mut posting = author.timeline(0).await.unwrap();
    for text in ["one", "two", "three"] {
        posting.post(text).await.unwrap();
    }
    let seen = live.collect(Duration::from_secs(2)).await.unwrap();
    assert_eq!(texts(&seen), ["one", "two", "three"]);
    let resume_after = seen.last().unwrap().seq;
    drop((live, posting));

    // Both replicas die at once; the master comes back first, alone, and stays master.
    let master = t.master_server(1).await.unwrap();
    let slave = if master == 1 { 2 } else { 1 };
    t.server(1, master).kill();
    t.server(1, slave).kill();
    t.server(1, master).start().unwrap();
    let mut live = reader.timeline(resume_after).await.unwrap();
    assert_eq!(t.master_server(1).await, Some(master));
    assert_eq!(live.live_from, resume_after);
    // The slave returns and is brought up to date: the master commits its tail again.
    t.server(1, slave).start().unwrap();
    let mut posting = author.timeline(0).await.unwrap();
    posting.post("four").await.unwrap();
    let after = live.collect(Duration::from_secs(2)).await.unwrap();
    assert_eq!(texts(&after), ["four"], "the resumed timeline showed posts again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slave_is_ready_only_while_it_is_in_sync() {
    // Readiness (the gRPC health entry Kubernetes probes) means "could take over now": a
    // slave catching up is alive but not ready. Cutting the master's appends to the wiped
    // slave keeps it catching up for as long as the test looks.
    let mut t = start_with("readiness", |o| o.partitionable = true).await;
    let master = t.master_server(1).await.unwrap();
    let slave = if master == 1 { 2 } else { 1 };
    let address = |t: &tinysns_stack::topology::Topology, id: u32| t.server_address(1, id);
    eventually!("the slave to be in sync and ready", Duration::from_secs(20), async {
        (t.view(1).await.ok()?.in_sync_slaves == [slave] && readiness(&address(&t, slave)).await == Some(SERVING))
            .then_some(())
    });
    assert_eq!(readiness(&address(&t, master)).await, Some(SERVING));

    t.server(1, slave).kill();
    std::fs::remove_dir_all(t.server_data_dir(1, slave)).unwrap();
    t.links(1, slave).inbound.set(Link::Cut);
    t.server(1, slave).start().unwrap();
    eventually!(
        "the new slave to answer, registered but not ready",
        Duration::from_secs(60),
        async {
            let view = t.view(1).await.ok()?;
            let registered = view.slaves.iter().any(|s| s.member_id == slave);
            (registered
                && !view.in_sync_slaves.contains(&slave)
                && readiness(&address(&t, slave)).await == Some(NOT_SERVING))
            .then_some(())
        }
    );
    assert_eq!(readiness(&address(&t, master)).await, Some(SERVING));

    t.links(1, slave).inbound.set(Link::Open);
    eventually!("the caught-up slave to be ready", Duration::from_secs(30), async {
        (t.view(1).await.ok()?.in_sync_slaves == [slave] && readiness(&address(&t, slave)).await == Some(SERVING))
            .then_some(())
    });
}

/// Posts `text` as `user`, reopening the timeline while the system answers with retryable
/// errors; returns how long the acknowledgement took.
async fn post_through(user: &mut tinysns_stack::client::User, text: &str) -> Duration {
    let started = Instant::now();
    loop {
        let attempt = async {
            let mut timeline = user.timeline(0).await?;
            timeline.post(text).await
        };
        match attempt.await {
            Ok(ack) if ack.status == Code::Success as i32 => return started.elapsed(),
            Ok(ack) => panic!("{text:?} refused: {ack:?}"),
            Err(status) if tinysns_common::grpc::is_retryable(&status) => {
                assert!(
                    started.elapsed() < Duration::from_secs(10),
                    "{text:?} not acknowledged for 10 s: {status:?}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(status) => panic!("{text:?} failed: {status:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_the_leading_coordinator_is_not_an_outage() {
    let mut t = start_with("coordinator-ha", |o| {
        o.coordinators = 3;
        o.clusters = 2;
        o.synchronizers_per_cluster = 1;
    })
    .await;
    let (mut u1, mut u2) = (login(&t, 1).await, login(&t, 2).await);
    until_known(&mut u1, &[2]).await;
    assert_eq!(u1.follow(&t.name(2)).await.unwrap(), Code::Success);
    let masters = |views: &[tinysns_common::proto::coordinator::ClusterView]| -> Vec<(u64, Option<u32>)> {
        views
            .iter()
            .map(|v| (v.term, v.master.as_ref().map(|m| m.member_id)))
            .collect()
    };
    let before = masters(&t.views().await.unwrap());
    let mut written = Vec::new();
    for round in 0..2 {
        let leader = t.leading_coordinator().await.expect("a leading coordinator");
        t.coordinators[leader].process.kill();
        let killed = Instant::now();
        // Writes go on while the other two elect a leader among themselves.
        let mut slowest = Duration::ZERO;
        for i in 0..4 {
            let text = format!("round {round} post {i}");
            slowest = slowest.max(post_through(&mut u2, &text).await);
            written.push(text);
        }
        let next = eventually!("another coordinator to lead", Duration::from_secs(10), async {
            t.leading_coordinator().await.filter(|l| *l != leader)
        });
        println!(
            "coordinator {leader} killed; coordinator {next} leads after {:?}; slowest post {slowest:?}",
            killed.elapsed()
        );
        // The new leader continued from what the coordinators agreed on: once the members'
        // heartbeats reach it, it shows the same masters under the same terms.
        eventually!(
            "the masters to report to the new leader",
            Duration::from_secs(10),
            async {
                let now = masters(&t.views().await.ok()?);
                assert!(
                    now.iter()
                        .zip(&before)
                        .all(|(n, b)| n.0 == b.0 && (n.1.is_none() || n.1 == b.1)),
                    "round {round}: a master was replaced: {before:?} -> {now:?}"
                );
                (now == before).then_some(())
            }
        );
        t.coordinators[leader]
            .process
            .start()
            .expect("the coordinator restarts");
    }
    // A master killed now is replaced by the current leader with nothing lost.
    let old = t.master_server(2).await.expect("cluster 2 has a master");
    t.server(2, old).kill();
    post_through(&mut u2, "after the master failover").await;
    written.push("after the master failover".to_string());
    let new = t.master_server(2).await.expect("cluster 2 has a new master");
    assert_ne!(new, old);
    let want: Vec<String> = written.iter().rev().cloned().collect();
    eventually!("every acknowledged post in the follower's timeline", DELIVERY, async {
        (texts(&u1.timeline(0).await.ok()?.history) == want).then_some(())
    });
    let after = t.views().await.unwrap();
    assert!(after.iter().zip(&before).all(|(a, b)| a.term >= b.0), "terms went back");
}
