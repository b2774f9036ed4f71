//! The catch-up phase (`--catch-up-entries N`): the failover cluster starts with N entries
//! preloaded (`tinysns_stack::preload`). Under a steady load its slave is stopped, its data
//! wiped, and it is restarted empty; it comes back through a snapshot of the master's store
//! and the log's tail. The phase reports how long until the coordinator lists it in sync
//! again, the snapshot's size and transfer time, and the cluster's write latency p99 before
//! and during the catch-up.

use crate::driver::{AckRecord, Phase};
use crate::stats::Summary;
use crate::workload::Graph;
use anyhow::{Context, Result};
use serde::Serialize;
use std::time::{Duration, Instant};
use tinysns_stack::topology::Topology;

/// What happened to the slave, and when.
pub struct Events {
    pub slave: u32,
    pub wiped_at: Instant,
    pub caught_up_at: Option<Instant>,
    /// The master's report of the snapshot it sent (`bytes`, `ms`), from its log.
    pub snapshot: Option<(u64, u64)>,
}

/// Stops the slave of `cluster`, wipes its data, restarts it, and waits (up to `limit`) until
/// the coordinator lists it in sync again.
pub async fn wipe_slave_and_wait(t: &mut Topology, cluster: u32, limit: Duration) -> Result<Events> {
    let master = t.master_server(cluster).await.context("the cluster has no master")?;
    let slave = (1..=t.servers_per_cluster())
        .find(|s| *s != master)
        .context("the cluster has no slave")?;
    t.server(cluster, slave).stop(Duration::from_secs(10));
    std::fs::remove_dir_all(t.server_data_dir(cluster, slave)).context("wiping the slave's data")?;
    let wiped_at = Instant::now();
    t.server(cluster, slave).start().context("restarting the slave")?;
    tracing::info!(cluster, slave, "slave wiped and restarted empty");
    let mut caught_up_at = None;
    // The restarted slave registers under a new incarnation; in sync means the coordinator
    // recorded it so after it caught up.
    tokio::time::sleep(Duration::from_millis(200)).await;
    while wiped_at.elapsed() < limit {
        if let Ok(view) = t.view(cluster).await
            && view.in_sync_slaves.contains(&slave)
        {
            caught_up_at = Some(Instant::now());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let master_log = std::fs::read_to_string(t.server(cluster, master).log_path()).unwrap_or_default();
    Ok(Events {
        slave,
        wiped_at,
        caught_up_at,
        snapshot: snapshot_sent(&master_log),
    })
}

/// `(bytes, ms)` of the last snapshot a master's log says it sent.
fn snapshot_sent(log: &str) -> Option<(u64, u64)> {
    let line = log.lines().rev().find(|l| l.contains("snapshot installed"))?;
    Some((field(line, "bytes")?, field(line, "ms")?))
}

/// The number after ` name=` in a log line.
fn field(line: &str, name: &str) -> Option<u64> {
    let start = line.find(&format!(" {name}="))? + name.len() + 2;
    let digits: String = line[start..].chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

#[derive(Debug, Clone, Serialize, Default, PartialEq)]
pub struct CatchUpReport {
    pub skipped: Option<String>,
    pub cluster: Option<u32>,
    /// The slave wiped.
    pub slave: Option<u32>,
    pub preloaded_entries: u64,
    /// From the wipe to the coordinator listing the slave in sync.
    pub in_sync_after_ms: Option<f64>,
    pub snapshot_bytes: Option<u64>,
    /// The master's time to take, send and have the slave install the snapshot.
    pub snapshot_ms: Option<u64>,
    /// Acknowledgement latency of the cluster's writes sent before the wipe (this phase).
    pub write_before: Option<Summary>,
    /// ... and sent while the slave caught up.
    pub write_during: Option<Summary>,
    /// p99 during / p99 before (the target: at most 2).
    pub p99_ratio: Option<f64>,
    /// Dropping this many unreplicated entries from the end of the preloaded store (as a
    /// deposed master does) took `truncation_ms`, measured on a copy before the run.
    pub truncated_entries: u64,
    pub truncation_ms: Option<f64>,
}

/// The report of a run of the phase: write latencies of `cluster`'s authors split at the wipe.
pub fn analyse(
    graph: &Graph,
    acks: &[AckRecord],
    cluster: u32,
    preloaded_entries: u64,
    events: &Events,
) -> CatchUpReport {
    let until = events.caught_up_at.unwrap_or_else(Instant::now);
    let mut before = Vec::new();
    let mut during = Vec::new();
    for a in acks
        .iter()
        .filter(|a| a.ok && a.phase == Phase::CatchUp && graph.cluster_of(a.author) == cluster)
    {
        let latency = a.acked.saturating_duration_since(a.sent);
        if a.sent < events.wiped_at {
            before.push(latency);
        } else if a.sent < until {
            during.push(latency);
        }
    }
    let write_before = Summary::of(&mut before);
    let write_during = Summary::of(&mut during);
    let p99_ratio = write_before
        .as_ref()
        .zip(write_during.as_ref())
        .and_then(|(b, d)| crate::stats::ratio(d.p99_ms, b.p99_ms));
    CatchUpReport {
        skipped: None,
        cluster: Some(cluster),
        slave: Some(events.slave),
        preloaded_entries,
        in_sync_after_ms: events
            .caught_up_at
            .map(|at| at.duration_since(events.wiped_at).as_secs_f64() * 1e3),
        snapshot_bytes: events.snapshot.map(|s| s.0),
        snapshot_ms: events.snapshot.map(|s| s.1),
        write_before,
        write_during,
        p99_ratio,
        truncated_entries: 0,
        truncation_ms: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn latencies_split_at_the_wipe_and_stop_at_the_catch_up() {
        // Users 1, 2, 3 live in clusters 1, 2, 3.
        let graph = Graph::build(3, 3, 1, 1.0, 1);
        let t = Instant::now();
        let ms = Duration::from_millis;
        let ack = |author, sent: u64, took: u64, phase| AckRecord {
            post_id: sent,
            author,
            phase,
            sent: t + ms(sent),
            acked: t + ms(sent + took),
            ok: true,
            server: Arc::from("a:1"),
        };
        let acks = vec![
            ack(1, 0, 4, Phase::CatchUp),
            ack(1, 100, 6, Phase::CatchUp),
            // During: 10 and 30 ms.
            ack(1, 1100, 10, Phase::CatchUp),
            ack(1, 1500, 30, Phase::CatchUp),
            // After the catch-up, another cluster, another phase: none count.
            ack(1, 5000, 900, Phase::CatchUp),
            ack(2, 1200, 900, Phase::CatchUp),
            ack(1, 1200, 900, Phase::Failover),
        ];
        let events = Events {
            slave: 2,
            wiped_at: t + ms(1000),
            caught_up_at: Some(t + ms(3000)),
            snapshot: Some((4096, 20)),
        };
        let report = analyse(&graph, &acks, 1, 1_000_000, &events);
        assert_eq!(report.in_sync_after_ms, Some(2000.0));
        let (before, during) = (report.write_before.unwrap(), report.write_during.unwrap());
        assert_eq!((before.count, during.count), (2, 2));
        assert_eq!(before.max_ms, 6.0);
        assert_eq!(during.max_ms, 30.0);
        assert_eq!(report.p99_ratio, crate::stats::ratio(during.p99_ms, before.p99_ms));
        assert_eq!((report.snapshot_bytes, report.snapshot_ms), (Some(4096), Some(20)));
    }

    #[test]
    fn the_snapshot_figures_come_from_the_masters_last_report() {
        let log = "2026 INFO tsd: sending a snapshot slave=2 last_lsn=9 bytes=100\n\
                   2026 INFO tsd: snapshot installed slave=2 last_lsn=9 bytes=4096 ms=12\n\
                   2026 INFO tsd: snapshot installed slave=2 last_lsn=99 bytes=8192 ms=250\n\
                   2026 INFO tsd: other";
        assert_eq!(snapshot_sent(log), Some((8192, 250)));
        assert_eq!(snapshot_sent("nothing here"), None);
        assert_eq!(field("a xbytes=5 bytes=7", "bytes"), Some(7));
    }
}
