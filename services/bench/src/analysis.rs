//! Turns what the actors recorded into figures: acknowledgement latency, throughput,
//! delivery latency within and across clusters, undelivered posts, failover time.

use crate::driver::{AckRecord, DeliveryRecord, Phase};
use crate::stats::Summary;
use crate::workload::Graph;
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

/// Delivery from a post's acknowledgement (as its author saw it) to its arrival on a
/// follower's open timeline. Arrivals before the acknowledgement count as 0.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Delivery {
    pub latency: Option<Summary>,
    /// The same arrivals measured from when the author sent the post (never negative):
    /// what a reader experiences end to end, acknowledgement included.
    pub latency_from_send: Option<Summary>,
    /// (post, follower) pairs expected.
    pub expected: u64,
    pub delivered: u64,
    /// Expected pairs that never arrived on the live stream.
    pub undelivered: u64,
    /// Posts with at least one follower that never got it live.
    pub undelivered_posts: u64,
    /// Arrivals that came before the author saw the acknowledgement (counted as 0).
    pub arrived_before_ack: u64,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct PhaseDelivery {
    pub same_cluster: Delivery,
    pub cross_cluster: Delivery,
}

struct Acked {
    author: u64,
    phase: Phase,
    sent: Instant,
    acked: Instant,
}

/// Delivery figures per phase.
pub fn deliveries(graph: &Graph, acks: &[AckRecord], deliveries: &[DeliveryRecord]) -> HashMap<Phase, PhaseDelivery> {
    let posts: HashMap<u64, Acked> = acks
        .iter()
        .filter(|a| a.ok)
        .map(|a| {
            (
                a.post_id,
                Acked {
                    author: a.author,
                    phase: a.phase,
                    sent: a.sent,
                    acked: a.acked,
                },
            )
        })
        .collect();
    let mut out: HashMap<Phase, PhaseDelivery> = HashMap::new();
    let mut samples: HashMap<(Phase, bool), Vec<Duration>> = HashMap::new();
    let mut from_send: HashMap<(Phase, bool), Vec<Duration>> = HashMap::new();
    let mut seen: HashSet<(u64, u64)> = HashSet::with_capacity(deliveries.len());
    for d in deliveries {
        let Some(post) = posts.get(&d.post_id) else {
            continue;
        };
        if !seen.insert((d.post_id, d.follower)) || !graph.followers_of(post.author).contains(&d.follower) {
            continue;
        }
        let same = graph.cluster_of(post.author) == graph.cluster_of(d.follower);
        let figures = out.entry(post.phase).or_default();
        let figures = if same {
            &mut figures.same_cluster
        } else {
            &mut figures.cross_cluster
        };
        figures.delivered += 1;
        if d.at < post.acked {
            figures.arrived_before_ack += 1;
        }
        samples
            .entry((post.phase, same))
            .or_default()
            .push(d.at.saturating_duration_since(post.acked));
        from_send
            .entry((post.phase, same))
            .or_default()
            .push(d.at.saturating_duration_since(post.sent));
    }
    for (post_id, post) in &posts {
        let figures = out.entry(post.phase).or_default();
        let author_cluster = graph.cluster_of(post.author);
        let mut missing = [false, false];
        for &follower in graph.followers_of(post.author) {
            let same = graph.cluster_of(follower) == author_cluster;
            let f = if same {
                &mut figures.same_cluster
            } else {
                &mut figures.cross_cluster
            };
            f.expected += 1;
            if !seen.contains(&(*post_id, follower)) {
                f.undelivered += 1;
                missing[usize::from(same)] = true;
            }
        }
        figures.cross_cluster.undelivered_posts += u64::from(missing[0]);
        figures.same_cluster.undelivered_posts += u64::from(missing[1]);
    }
    for ((phase, same), mut s) in samples {
        let figures = out.entry(phase).or_default();
        let f = if same {
            &mut figures.same_cluster
        } else {
            &mut figures.cross_cluster
        };
        f.latency = Summary::of(&mut s);
    }
    for ((phase, same), mut s) in from_send {
        let figures = out.entry(phase).or_default();
        let f = if same {
            &mut figures.same_cluster
        } else {
            &mut figures.cross_cluster
        };
        f.latency_from_send = Summary::of(&mut s);
    }
    out
}

/// Acknowledgement latency (sent -> acknowledged, as the author saw it) of a phase.
pub fn ack_latency(acks: &[AckRecord], phase: Phase) -> Option<Summary> {
    let mut samples: Vec<Duration> = acks
        .iter()
        .filter(|a| a.ok && a.phase == phase)
        .map(|a| a.acked.saturating_duration_since(a.sent))
        .collect();
    Summary::of(&mut samples)
}

/// Acknowledged posts per second of a phase between `from` and `to`.
pub fn rate(acks: &[AckRecord], phase: Phase, from: Instant, to: Instant) -> (u64, f64) {
    let count = acks
        .iter()
        .filter(|a| a.ok && a.phase == phase && a.acked >= from && a.acked <= to)
        .count() as u64;
    let secs = to.saturating_duration_since(from).as_secs_f64();
    (count, if secs > 0.0 { count as f64 / secs } else { 0.0 })
}

#[derive(Debug, Clone, Serialize)]
pub struct FailoverTiming {
    /// Kill -> first post of the cluster acknowledged by another server.
    pub time_to_first_ack_ms: Option<f64>,
    /// The longest stretch without any acknowledgement for the cluster's users, around
    /// the kill.
    pub longest_ack_gap_ms: Option<f64>,
    pub acked_in_cluster_before_kill: u64,
    pub acked_in_cluster_after_kill: u64,
}

/// The longest stretch, in any one cluster (by its users' home), without an acknowledged
/// write of `phase`, among the stretches that reach past `killed_at`.
pub fn longest_write_gap(graph: &Graph, acks: &[AckRecord], phase: Phase, killed_at: Instant) -> Option<f64> {
    let mut by_cluster: std::collections::BTreeMap<u32, Vec<Instant>> = std::collections::BTreeMap::new();
    for a in acks.iter().filter(|a| a.ok && a.phase == phase) {
        by_cluster.entry(graph.cluster_of(a.author)).or_default().push(a.acked);
    }
    by_cluster
        .values_mut()
        .filter_map(|times| {
            times.sort_unstable();
            times.windows(2).filter(|w| w[1] > killed_at).map(|w| w[1] - w[0]).max()
        })
        .max()
        .map(|d| d.as_secs_f64() * 1e3)
}

fn port_of(address: &str) -> Option<u16> {
    address.rsplit_once(':')?.1.parse().ok()
}

pub fn failover(
    graph: &Graph,
    acks: &[AckRecord],
    cluster: u32,
    killed_port: u16,
    killed_at: Instant,
) -> FailoverTiming {
    let mut times: Vec<Instant> = acks
        .iter()
        .filter(|a| a.ok && a.phase == Phase::Failover && graph.cluster_of(a.author) == cluster)
        .map(|a| a.acked)
        .collect();
    times.sort_unstable();
    let first = acks
        .iter()
        .filter(|a| {
            a.ok && graph.cluster_of(a.author) == cluster
                && a.acked > killed_at
                && port_of(&a.server) != Some(killed_port)
        })
        .map(|a| a.acked)
        .min();
    let longest = times
        .windows(2)
        .filter(|w| w[1] > killed_at)
        .map(|w| w[1] - w[0])
        .chain(times.first().filter(|t| **t > killed_at).map(|t| *t - killed_at))
        .max();
    let before = times.iter().filter(|t| **t <= killed_at).count() as u64;
    FailoverTiming {
        time_to_first_ack_ms: first.map(|t| (t - killed_at).as_secs_f64() * 1e3),
        longest_ack_gap_ms: longest.map(|d| d.as_secs_f64() * 1e3),
        acked_in_cluster_before_kill: before,
        acked_in_cluster_after_kill: times.len() as u64 - before,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn ack(post_id: u64, author: u64, phase: Phase, sent: Instant, acked: Instant, server: &str) -> AckRecord {
        AckRecord {
            post_id,
            author,
            phase,
            sent,
            acked,
            ok: true,
            server: Arc::from(server),
        }
    }

    #[test]
    fn the_longest_write_gap_is_the_worst_cluster_after_the_kill() {
        // Users 1, 2, 3 live in clusters 1, 2, 3.
        let graph = Graph::build(3, 3, 1, 1.0, 1);
        let t = Instant::now();
        let ms = Duration::from_millis;
        let at = |author, when| ack(when, author, Phase::Failover, t, t + ms(when), "a:1");
        let acks = vec![
            // Cluster 1: a 900 ms gap before the kill (at 1000) does not count; 300 after.
            at(1, 0),
            at(1, 900),
            at(1, 1200),
            at(1, 1500),
            // Cluster 2: 700 ms across the kill.
            at(2, 800),
            at(2, 1500),
            // Cluster 3: steady; another phase's gap is ignored.
            at(3, 990),
            at(3, 1010),
            ack(99, 3, Phase::Latency, t, t + ms(9000), "a:1"),
        ];
        assert_eq!(
            longest_write_gap(&graph, &acks, Phase::Failover, t + ms(1000)),
            Some(700.0)
        );
        assert_eq!(longest_write_gap(&graph, &[], Phase::Failover, t), None);
    }

    #[test]
    fn delivery_split_by_cluster_with_early_arrivals_and_misses() {
        // 3 users, 3 clusters: the ring 1->2->3->1 plus whatever the graph adds.
        let graph = Graph::build(3, 3, 1, 1.0, 1);
        assert_eq!(graph.followers_of(2), &[1]);
        let t = Instant::now();
        let ms = Duration::from_millis;
        let acks = vec![
            ack(10, 2, Phase::Latency, t, t + ms(5), "a:1"),
            ack(11, 2, Phase::Latency, t, t + ms(5), "a:1"),
            ack(12, 3, Phase::Latency, t, t + ms(5), "a:1"),
        ];
        let deliveries = vec![
            DeliveryRecord {
                post_id: 10,
                follower: 1,
                at: t + ms(25),
            },
            // A duplicate is counted once.
            DeliveryRecord {
                post_id: 10,
                follower: 1,
                at: t + ms(99),
            },
            DeliveryRecord {
                post_id: 12,
                follower: 2,
                at: t + ms(1),
            },
        ];
        let out = deliveries_of(&graph, &acks, &deliveries);
        let cross = &out[&Phase::Latency].cross_cluster;
        assert_eq!((cross.expected, cross.delivered, cross.undelivered), (3, 2, 1));
        assert_eq!(cross.undelivered_posts, 1);
        assert_eq!(cross.arrived_before_ack, 1);
        let latency = cross.latency.expect("latency");
        assert_eq!((latency.count, latency.max_ms), (2, 20.0));
        assert_eq!(latency.p50_ms, 0.0);
        let from_send = cross.latency_from_send.expect("latency from send");
        assert_eq!((from_send.p50_ms, from_send.max_ms), (1.0, 25.0));
    }

    fn deliveries_of(graph: &Graph, acks: &[AckRecord], d: &[DeliveryRecord]) -> HashMap<Phase, PhaseDelivery> {
        deliveries(graph, acks, d)
    }

    #[test]
    fn failover_time_counts_only_other_servers() {
        let graph = Graph::build(6, 3, 1, 1.0, 1);
        let t = Instant::now();
        let ms = Duration::from_millis;
        let acks = vec![
            ack(1, 1, Phase::Failover, t, t + ms(10), "127.0.0.1:7000"),
            // In flight from the old master when it died.
            ack(2, 4, Phase::Failover, t, t + ms(110), "127.0.0.1:7000"),
            ack(3, 4, Phase::Failover, t, t + ms(1600), "127.0.0.1:7001"),
            ack(4, 2, Phase::Failover, t, t + ms(150), "127.0.0.1:8000"),
        ];
        let f = failover(&graph, &acks, 1, 7000, t + ms(100));
        assert_eq!(f.time_to_first_ack_ms, Some(1500.0));
        assert_eq!(f.longest_ack_gap_ms, Some(1490.0));
        assert_eq!((f.acked_in_cluster_before_kill, f.acked_in_cluster_after_kill), (1, 2));
    }

    #[test]
    fn rates_and_ack_latency() {
        let t = Instant::now();
        let ms = Duration::from_millis;
        let acks: Vec<AckRecord> = (0..10)
            .map(|i| ack(i, 1, Phase::Throughput, t, t + ms(100 * i), "x:1"))
            .collect();
        let (count, per_sec) = rate(&acks, Phase::Throughput, t, t + ms(1000));
        assert_eq!(count, 10);
        assert!((per_sec - 10.0).abs() < 1e-9);
        assert_eq!(ack_latency(&acks, Phase::Throughput).map(|s| s.max_ms), Some(900.0));
        assert!(ack_latency(&acks, Phase::Latency).is_none());
    }
}
