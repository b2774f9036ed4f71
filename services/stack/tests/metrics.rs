//! Every process' Prometheus endpoint, scraped over HTTP from a running system: what the
//! counters and gauges show must follow what the system did.

mod common;

use common::*;
use std::collections::BTreeSet;
use std::time::Duration;
use tinysns_common::proto::social::Status as Code;
use tinysns_stack::scrape::{Samples, get, scrape};

const WAIT: Duration = Duration::from_secs(15);
const POSTS: u64 = 5;

/// The samples of the endpoint on `port`, None while it does not answer.
async fn samples(port: u16) -> Option<Samples> {
    scrape(port).await.ok()
}

fn shown(s: &Samples, name: &str, labels: &[(&str, &str)]) -> f64 {
    s.value(name, labels)
        .unwrap_or_else(|| panic!("{name}{labels:?} is not shown: {s:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_process_shows_what_it_did_on_its_metrics_endpoint() {
    let t = start("metrics").await;
    let ports: BTreeSet<u16> = t
        .coordinators
        .iter()
        .map(|c| c.metrics_port)
        .chain(
            t.servers
                .values()
                .chain(t.synchronizers.values())
                .map(|m| m.metrics_port),
        )
        .collect();
    assert_eq!(ports.len(), 1 + 6 + 6, "one metrics port per process");

    let master = t.master_server(1).await.expect("cluster 1 has a master");
    let slave = if master == 1 { 2 } else { 1 };
    let slave_label = slave.to_string();
    let (master_port, slave_port) = (
        t.servers[&(1, master)].metrics_port,
        t.servers[&(1, slave)].metrics_port,
    );
    assert_eq!(get(master_port, "/healthz").await.expect("healthz answers"), "ok");
    let before = scrape(master_port).await.expect("the master's metrics");
    let posts_before = shown(&before, "tinysns_tsd_posts_total", &[]);

    // User 1 lives in cluster 1: it logs in, opens its timeline and posts there.
    let mut u1 = login(&t, 1).await;
    // User 2 (cluster 2) follows user 1, so that user 1's posts go to cluster 2.
    let mut u2 = login(&t, 2).await;
    until_known(&mut u2, &[u1.id()]).await;
    assert_eq!(u2.follow(&t.name(1)).await.unwrap(), Code::Success);
    until_followers(&mut u1, &[u2.id()]).await;
    let mut timeline = u1.timeline(0).await.expect("the timeline opens");
    for i in 0..POSTS {
        let ack = timeline
            .post_with_id(1000 + i, &format!("metrics {i}"))
            .await
            .expect("posted");
        assert_eq!(ack.status, Code::Success as i32);
    }
    // A retried post is acknowledged again, but was stored (and counted) once.
    let ack = timeline
        .post_with_id(1000 + POSTS - 1, "retried")
        .await
        .expect("posted");
    assert_eq!(ack.status, Code::Success as i32);

    let m = eventually!("the master to show the open timeline", WAIT, async {
        let s = samples(master_port).await?;
        (s.value("tinysns_tsd_timeline_streams", &[])? >= 1.0).then_some(s)
    });
    assert_eq!(
        shown(&m, "tinysns_tsd_posts_total", &[]),
        posts_before + POSTS as f64,
        "posts_total went up by the posts made"
    );
    assert!(shown(&m, "tinysns_tsd_writes_total", &[("kind", "post")]) >= POSTS as f64);
    assert!(shown(&m, "tinysns_tsd_write_batches_total", &[]) >= 1.0);
    assert!(shown(&m, "tinysns_tsd_write_batch_seconds_count", &[]) >= 1.0);
    assert!(shown(&m, "tinysns_tsd_logins_total", &[("result", "ok")]) >= 1.0);
    assert!(shown(&m, "tinysns_tsd_sessions_present", &[]) >= 1.0);
    assert_eq!(shown(&m, "tinysns_tsd_master", &[]), 1.0);
    assert!(shown(&m, "tinysns_tsd_term", &[]) >= 1.0);
    let (last, committed) = (
        shown(&m, "tinysns_tsd_last_lsn", &[]),
        shown(&m, "tinysns_tsd_commit_lsn", &[]),
    );
    assert!(
        committed >= POSTS as f64 && last >= committed,
        "last {last}, committed {committed}"
    );

    // The slave catches up: its lag on the master comes back to 0, and it is in sync.
    eventually!("the slave's lag to return to 0", WAIT, async {
        let s = samples(master_port).await?;
        let lag = s.value("tinysns_tsd_slave_lag_entries", &[("slave", &slave_label)])?;
        let in_sync = s.value("tinysns_tsd_slave_in_sync", &[("slave", &slave_label)])?;
        (lag == 0.0 && in_sync == 1.0).then_some(())
    });
    let s = scrape(slave_port).await.expect("the slave's metrics");
    assert_eq!(shown(&s, "tinysns_tsd_master", &[]), 0.0);
    assert_eq!(s.sum("tinysns_tsd_slave_lag_entries"), None, "a slave shows no slaves");
    assert!(shown(&s, "tinysns_tsd_last_lsn", &[]) >= POSTS as f64);

    // Cluster 1's master synchronizer published the posts; cluster 2's applied them.
    let publisher = t
        .master_synchronizer(1)
        .await
        .expect("cluster 1 has a master synchronizer");
    let publisher_port = t.synchronizers[&publisher].metrics_port;
    eventually!("cluster 1's synchronizer to publish the posts", WAIT, async {
        let s = samples(publisher_port).await?;
        (s.value("tinysns_synchronizer_changes_published_total", &[])? >= POSTS as f64
            && s.value("tinysns_synchronizer_messages_confirmed_total", &[])? >= 1.0
            && s.value("tinysns_synchronizer_confirmed_lsn", &[])? >= POSTS as f64)
            .then_some(())
    });
    eventually!("cluster 1's change feed to be read to its end", WAIT, async {
        let s = samples(master_port).await?;
        (s.value("tinysns_tsd_change_feed_lag_entries", &[])? == 0.0).then_some(())
    });
    let consumer = t
        .master_synchronizer(2)
        .await
        .expect("cluster 2 has a master synchronizer");
    let consumer_port = t.synchronizers[&consumer].metrics_port;
    let s = eventually!("cluster 2's synchronizer to apply the posts", WAIT, async {
        let s = samples(consumer_port).await?;
        (s.value("tinysns_synchronizer_changes_applied_total", &[])? >= POSTS as f64).then_some(s)
    });
    assert_eq!(shown(&s, "tinysns_synchronizer_master", &[]), 1.0);
    assert!(shown(&s, "tinysns_synchronizer_messages_consumed_total", &[]) >= 1.0);
    assert!(shown(&s, "tinysns_synchronizer_bus_lag_seconds_count", &[]) >= POSTS as f64);
    let standby = t
        .synchronizers
        .iter()
        .find(|(id, m)| m.cluster == 2 && **id != consumer)
        .map(|(_, m)| m.metrics_port)
        .expect("cluster 2 has a standby synchronizer");
    let s = scrape(standby).await.expect("the standby's metrics");
    assert_eq!(shown(&s, "tinysns_synchronizer_master", &[]), 0.0);

    // The coordinator leads, knows every cluster's term and every member.
    let s = scrape(t.coordinators[0].metrics_port)
        .await
        .expect("the coordinator's metrics");
    assert_eq!(shown(&s, "tinysns_coordinator_leader", &[]), 1.0);
    for cluster in ["1", "2", "3"] {
        assert!(shown(&s, "tinysns_coordinator_term", &[("cluster", cluster)]) >= 1.0);
    }
    assert!(shown(&s, "tinysns_coordinator_heartbeats_total", &[]) >= 1.0);
    assert_eq!(
        shown(&s, "tinysns_coordinator_members_alive", &[("kind", "server")]),
        6.0
    );
    assert_eq!(
        shown(&s, "tinysns_coordinator_members_alive", &[("kind", "synchronizer")]),
        6.0
    );
    assert_eq!(
        shown(&s, "tinysns_coordinator_failovers_total", &[("kind", "server")]),
        0.0
    );

    // Closing the timeline brings its gauge back down.
    drop(timeline);
    eventually!("the timeline gauge to come back down", WAIT, async {
        let s = samples(master_port).await?;
        (s.value("tinysns_tsd_timeline_streams", &[])? == 0.0).then_some(())
    });
}
