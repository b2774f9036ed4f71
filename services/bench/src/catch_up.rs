//! The catch-up phase (`--catch-up-entries N`): the failover cluster starts with N entries
//! preloaded (`tinysns_stack::preload`). Under a steady load its slave is stopped and its
//! data wiped; once the cluster writes without it, it is started again, empty: a new replica.
//! It comes back through a snapshot of the master's store and the log's tail. The phase
//! reports how long until the coordinator lists it in sync, the snapshot's size and times,
//! and the cluster's write latency before the stop, while the slave was away, and during the
//! catch-up (from the empty replica's start until it is in sync).

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
    /// The slave was stopped (and then wiped).
    pub wiped_at: Instant,
    /// ... and started again, empty.
    pub restarted_at: Instant,
    pub caught_up_at: Option<Instant>,
    /// The snapshot the master sent, from the two servers' logs.
    pub snapshot: Option<SnapshotTimes>,
}

/// How a snapshot went, from the master's and the slave's logs.
#[derive(Debug, Clone, Copy, Serialize, Default, PartialEq, Eq)]
pub struct SnapshotTimes {
    pub bytes: u64,
    /// From the start of taking it to the slave's answer to the last chunk.
    pub ms: u64,
    /// Taking it (the master's `VACUUM INTO`).
    pub taken_ms: u64,
    /// Installing it (the slave's copy into its store), if the slave's log says.
    pub install_ms: Option<u64>,
}

/// Stops the slave of `cluster` and wipes its data; once the coordinator no longer lists it
/// in sync (the cluster writes without it), restarts it and waits (up to `limit`) until it
/// is listed in sync again.
pub async fn wipe_slave_and_wait(t: &mut Topology, cluster: u32, limit: Duration) -> Result<Events> {
    let master = t.master_server(cluster).await.context("the cluster has no master")?;
    let slave = (1..=t.servers_per_cluster())
        .find(|s| *s != master)
        .context("the cluster has no slave")?;
    t.server(cluster, slave).stop(Duration::from_secs(10));
    std::fs::remove_dir_all(t.server_data_dir(cluster, slave)).context("wiping the slave's data")?;
    let wiped_at = Instant::now();
    while wiped_at.elapsed() < limit {
        if t.view(cluster)
            .await
            .is_ok_and(|view| !view.in_sync_slaves.contains(&slave))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let restarted_at = Instant::now();
    t.server(cluster, slave).start().context("restarting the slave")?;
    tracing::info!(cluster, slave, "slave wiped and restarted empty");
    let mut caught_up_at = None;
    // The restarted slave registers under a new incarnation; in sync means the coordinator
    // recorded it so after it caught up.
    tokio::time::sleep(Duration::from_millis(200)).await;
    while restarted_at.elapsed() < limit {
        if let Ok(view) = t.view(cluster).await
            && view.in_sync_slaves.contains(&slave)
        {
            caught_up_at = Some(Instant::now());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let master_log = std::fs::read_to_string(t.server(cluster, master).log_path()).unwrap_or_default();
    let slave_log = std::fs::read_to_string(t.server(cluster, slave).log_path()).unwrap_or_default();
    Ok(Events {
        slave,
        wiped_at,
        restarted_at,
        caught_up_at,
        snapshot: snapshot_sent(&master_log, &slave_log),
    })
}

/// The last snapshot a master's log says it sent, with the slave's install time.
fn snapshot_sent(master_log: &str, slave_log: &str) -> Option<SnapshotTimes> {
    let line = master_log.lines().rev().find(|l| l.contains("snapshot installed"))?;
    let installed = slave_log
        .lines()
        .rev()
        .find(|l| l.contains("installed the master's snapshot"));
    Some(SnapshotTimes {
        bytes: field(line, "bytes")?,
        ms: field(line, "ms")?,
        taken_ms: field(line, "taken_ms")?,
        install_ms: installed.and_then(|l| field(l, "ms")),
    })
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
    /// From the empty replica's start to the coordinator listing it in sync.
    pub in_sync_after_ms: Option<f64>,
    /// From the stop to the empty replica's start (the coordinator noticed it gone).
    pub away_ms: f64,
    pub snapshot: Option<SnapshotTimes>,
    /// Acknowledgement latency of the cluster's writes sent before the stop (this phase).
    pub write_before: Option<Summary>,
    /// ... sent while the slave was away (a stopped in-sync slave holds writes until the
    /// coordinator has dropped it from the in-sync set).
    pub write_away: Option<Summary>,
    /// ... and sent while the new, empty replica caught up.
    pub write_during: Option<Summary>,
    /// p99 during / p99 before (the target: at most 2).
    pub p99_ratio: Option<f64>,
    /// Write p99 (ms) of the writes sent in each second of the catch-up: where
    /// in the catch-up (taking, sending, installing the snapshot, the tail) writes waited.
    pub write_p99_by_second: Vec<f64>,
    /// Dropping this many unreplicated entries from the end of the preloaded store (as a
    /// deposed master does) took `truncation_ms`, measured on a copy before the run.
    pub truncated_entries: u64,
    pub truncation_ms: Option<f64>,
}

/// The report of a run of the phase: write latencies of `cluster`'s authors split at the stop,
/// the restart and the catch-up.
pub fn analyse(
    graph: &Graph,
    acks: &[AckRecord],
    cluster: u32,
    preloaded_entries: u64,
    events: &Events,
) -> CatchUpReport {
    let until = events.caught_up_at.unwrap_or_else(Instant::now);
    let mut before = Vec::new();
    let mut away = Vec::new();
    let mut during = Vec::new();
    let mut by_second: Vec<Vec<Duration>> = Vec::new();
    for a in acks
        .iter()
        .filter(|a| a.ok && a.phase == Phase::CatchUp && graph.cluster_of(a.author) == cluster)
    {
        let latency = a.acked.saturating_duration_since(a.sent);
        if a.sent < events.wiped_at {
            before.push(latency);
        } else if a.sent < events.restarted_at {
            away.push(latency);
        } else if a.sent < until {
            during.push(latency);
            let second = a.sent.duration_since(events.restarted_at).as_secs() as usize;
            if by_second.len() <= second {
                by_second.resize_with(second + 1, Vec::new);
            }
            by_second[second].push(latency);
        }
    }
    let write_p99_by_second = by_second
        .iter_mut()
        .map(|second| Summary::of(second).map_or(0.0, |s| s.p99_ms))
        .collect();
    let write_before = Summary::of(&mut before);
    let write_away = Summary::of(&mut away);
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
            .map(|at| at.duration_since(events.restarted_at).as_secs_f64() * 1e3),
        away_ms: events.restarted_at.duration_since(events.wiped_at).as_secs_f64() * 1e3,
        snapshot: events.snapshot,
        write_before,
        write_away,
        write_during,
        p99_ratio,
        write_p99_by_second,
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
            // Away: 200 ms.
            ack(1, 1050, 200, Phase::CatchUp),
            // During: 10 and 30 ms.
            ack(1, 1100, 10, Phase::CatchUp),
            ack(1, 2500, 30, Phase::CatchUp),
            // After the catch-up, another cluster, another phase: none count.
            ack(1, 5000, 900, Phase::CatchUp),
            ack(2, 1200, 900, Phase::CatchUp),
            ack(1, 1200, 900, Phase::Failover),
        ];
        let events = Events {
            slave: 2,
            wiped_at: t + ms(1000),
            restarted_at: t + ms(1100),
            caught_up_at: Some(t + ms(3000)),
            snapshot: Some(SnapshotTimes {
                bytes: 4096,
                ms: 20,
                taken_ms: 5,
                install_ms: Some(9),
            }),
        };
        let report = analyse(&graph, &acks, 1, 1_000_000, &events);
        assert_eq!(report.in_sync_after_ms, Some(1900.0));
        assert_eq!(report.away_ms, 100.0);
        let (before, during) = (report.write_before.unwrap(), report.write_during.unwrap());
        assert_eq!((before.count, during.count), (2, 2));
        assert_eq!(report.write_away.unwrap().max_ms, 200.0);
        assert_eq!(before.max_ms, 6.0);
        assert_eq!(during.max_ms, 30.0);
        assert_eq!(report.p99_ratio, crate::stats::ratio(during.p99_ms, before.p99_ms));
        assert_eq!(report.snapshot.map(|s| (s.bytes, s.ms)), Some((4096, 20)));
        // One write in each of the first two seconds after the restart.
        assert_eq!(report.write_p99_by_second.len(), 2);
        assert!(report.write_p99_by_second[0] >= 10.0);
        assert!(report.write_p99_by_second[1] >= 30.0);
    }

    #[test]
    fn the_snapshot_figures_come_from_the_masters_last_report() {
        let log = "2026 INFO tsd: sending a snapshot slave=2 last_lsn=9 bytes=100 taken_ms=3\n\
                   2026 INFO tsd: snapshot installed slave=2 last_lsn=9 bytes=4096 taken_ms=3 ms=12\n\
                   2026 INFO tsd: snapshot installed slave=2 last_lsn=99 bytes=8192 taken_ms=70 ms=250\n\
                   2026 INFO tsd: other";
        let slave = "2026 INFO tsd: installed the master's snapshot master=1 last_lsn=99 committed=90 ms=40";
        let want = SnapshotTimes {
            bytes: 8192,
            ms: 250,
            taken_ms: 70,
            install_ms: Some(40),
        };
        assert_eq!(snapshot_sent(log, slave), Some(want));
        assert_eq!(
            snapshot_sent(log, ""),
            Some(SnapshotTimes {
                install_ms: None,
                ..want
            })
        );
        assert_eq!(snapshot_sent("nothing here", slave), None);
        assert_eq!(field("a xbytes=5 bytes=7", "bytes"), Some(7));
    }
}
