//! The gateway phase: what the HTTP/WebSocket gateway adds to delivery. A few users of every
//! cluster watch their timeline two ways at once: the benchmark's own gRPC stream (their
//! actor's, as in every phase) and the gateway's live WebSocket (`gateway_watch`). The
//! users they follow post through gRPC at a modest rate; every (post, watched follower)
//! pair is timed on both ways from the post's acknowledgement, as the delivery figures are,
//! and the difference of the two arrivals of the same pair is what the gateway added.

use crate::driver::{AckRecord, DeliveryRecord, Phase};
use crate::report::Rss;
use crate::stats::Summary;
use crate::workload::Graph;
use anyhow::{Context, Result};
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::time::Instant;
use tinysns_stack::gateway::Gateway;
use tinysns_stack::topology::Topology;

/// Who watches and who posts.
pub struct Plan {
    /// The first `per_cluster` users of every cluster.
    pub watched: Vec<u64>,
    /// Every user a watched user follows: each of their posts reaches a watched user.
    pub posters: HashSet<u64>,
}

pub fn plan(graph: &Graph, per_cluster: usize) -> Plan {
    let watched: Vec<u64> = (1..=graph.clusters)
        .flat_map(|cluster| {
            (1..=graph.users)
                .filter(move |u| graph.cluster_of(*u) == cluster)
                .take(per_cluster)
        })
        .collect();
    let posters = watched
        .iter()
        .flat_map(|w| graph.followees_of(*w).iter().copied())
        .collect();
    Plan { watched, posters }
}

/// The gateway the phase talks to: one it started beside the system (stopped when dropped),
/// or one it was given (`--gateway`).
pub enum Endpoint {
    Started(Gateway),
    Given(String),
}

impl Endpoint {
    /// `given`, or else a gateway started for `topology`.
    pub async fn new(given: Option<&str>, topology: Option<&Topology>) -> Result<Self> {
        match (given, topology) {
            (Some(url), _) => Ok(Self::Given(url.trim_end_matches('/').to_string())),
            (None, Some(t)) => Gateway::start(t, "gateway", &[])
                .await
                .map(Self::Started)
                .context("starting the gateway (is tinysns-gateway built beside the benchmark?)"),
            (None, None) => anyhow::bail!("attached to a running system: give its gateway with --gateway URL"),
        }
    }

    pub fn url(&self) -> &str {
        match self {
            Self::Started(g) => &g.url,
            Self::Given(url) => url,
        }
    }

    /// The started gateway's peak memory and CPU time.
    pub fn rss(&self) -> Option<Rss> {
        match self {
            Self::Started(g) => Rss::of("gateway", &g.process.name, g.process.pid()?),
            Self::Given(_) => None,
        }
    }
}

/// (post, watched follower) pairs the acknowledged posts of the phase owe the sockets.
pub fn expected_pairs(graph: &Graph, acks: &[AckRecord], watched: &HashSet<u64>) -> u64 {
    acks.iter()
        .filter(|a| a.ok && a.phase == Phase::Gateway)
        .map(|a| {
            graph
                .followers_of(a.author)
                .iter()
                .filter(|f| watched.contains(f))
                .count() as u64
        })
        .sum()
}

/// Delivery of the same pairs both ways.
#[derive(Debug, Clone, Serialize, Default)]
pub struct BothWays {
    /// (post, watched follower) pairs expected.
    pub pairs: u64,
    /// From the post's acknowledgement to its arrival on the follower's gRPC stream
    /// (arrivals before the acknowledgement count as 0, as in `delivery`).
    pub grpc: Option<Summary>,
    /// The same to its arrival on the follower's WebSocket.
    pub websocket: Option<Summary>,
    /// p99 of `websocket` − p99 of `grpc`.
    pub added_p99_ms: Option<f64>,
    /// WebSocket arrival − gRPC arrival of each pair that arrived both ways (negative when
    /// the socket was first): what the gateway added to that delivery.
    pub added_per_delivery: Option<Summary>,
    /// Pairs that arrived on the WebSocket before the gRPC stream: how much of the spread
    /// of `added_per_delivery` is the two streams' scheduling rather than the gateway.
    pub websocket_first: u64,
}

#[derive(Debug, Default)]
struct Samples {
    pairs: u64,
    grpc: Vec<f64>,
    websocket: Vec<f64>,
    added: Vec<f64>,
}

impl Samples {
    fn websocket_first(&self) -> u64 {
        self.added.iter().filter(|d| **d < 0.0).count() as u64
    }
}

impl Samples {
    fn figures(mut self) -> BothWays {
        let grpc = Summary::of_ms(&mut self.grpc);
        let websocket = Summary::of_ms(&mut self.websocket);
        BothWays {
            websocket_first: self.websocket_first(),
            pairs: self.pairs,
            added_p99_ms: grpc.zip(websocket).map(|(g, w)| w.p99_ms - g.p99_ms),
            grpc,
            websocket,
            added_per_delivery: Summary::of_ms(&mut self.added),
        }
    }
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct GatewayReport {
    pub skipped: Option<String>,
    pub url: Option<String>,
    pub offered_posts_per_sec: f64,
    pub seconds: f64,
    pub offered_posts: u64,
    /// Offered posts not sent: every poster picked had a post in flight.
    pub unsent_posts: u64,
    /// Users watched both ways, and the users they follow (who post in the phase).
    pub watched_users: usize,
    pub posters: usize,
    pub acknowledged_posts: u64,
    pub all: BothWays,
    pub same_cluster: BothWays,
    pub cross_cluster: BothWays,
    /// Expected pairs that never arrived on the WebSocket (must be 0).
    pub websocket_missed: u64,
    /// Pairs that arrived more than once on the WebSocket (must be 0).
    pub websocket_duplicated: u64,
    /// Expected pairs that never arrived on the gRPC stream (also in `lost.undelivered_live`).
    pub grpc_missed: u64,
    /// Times the gateway's stream to the servers broke and resumed.
    pub websocket_reconnects: u64,
}

/// What the phase ran, for [`GatewayReport::new`].
pub struct Ran {
    pub url: String,
    pub offered_posts_per_sec: f64,
    pub seconds: f64,
    pub offered_posts: u64,
    pub unsent_posts: u64,
    pub plan: Plan,
    pub seen: crate::gateway_watch::Seen,
}

/// Milliseconds from `from` to `to`, negative when `to` came first.
fn signed_ms(to: Instant, from: Instant) -> f64 {
    match to.checked_duration_since(from) {
        Some(d) => d.as_secs_f64() * 1e3,
        None => -(from - to).as_secs_f64() * 1e3,
    }
}

/// The first arrival of every (post, follower) pair of `followers`, and how many arrived
/// again.
fn first_arrivals(records: &[DeliveryRecord], followers: &HashSet<u64>) -> (HashMap<(u64, u64), Instant>, u64) {
    let mut first = HashMap::new();
    let mut again = 0;
    for r in records.iter().filter(|r| followers.contains(&r.follower)) {
        match first.entry((r.post_id, r.follower)) {
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(r.at);
            }
            std::collections::hash_map::Entry::Occupied(mut o) => {
                again += 1;
                if r.at < *o.get() {
                    o.insert(r.at);
                }
            }
        }
    }
    (first, again)
}

impl GatewayReport {
    pub fn skipped(why: impl Into<String>) -> Self {
        Self {
            skipped: Some(why.into()),
            ..Default::default()
        }
    }

    /// The figures of the phase: `grpc` are every gRPC delivery of the run.
    pub fn new(ran: &Ran, graph: &Graph, acks: &[AckRecord], grpc: &[DeliveryRecord]) -> Self {
        let watched: HashSet<u64> = ran.plan.watched.iter().copied().collect();
        let (by_grpc, _) = first_arrivals(grpc, &watched);
        let (by_socket, duplicated) = first_arrivals(&ran.seen.arrivals, &watched);
        let (mut same, mut cross) = (Samples::default(), Samples::default());
        let (mut posts, mut ws_missed, mut grpc_missed) = (0, 0, 0);
        for post in acks.iter().filter(|a| a.ok && a.phase == Phase::Gateway) {
            posts += 1;
            for &follower in graph.followers_of(post.author).iter().filter(|f| watched.contains(f)) {
                let samples = match graph.cluster_of(follower) == graph.cluster_of(post.author) {
                    true => &mut same,
                    false => &mut cross,
                };
                samples.pairs += 1;
                let pair = (post.post_id, follower);
                let (g, w) = (by_grpc.get(&pair), by_socket.get(&pair));
                let since_ack = |at: &Instant| at.saturating_duration_since(post.acked).as_secs_f64() * 1e3;
                samples.grpc.extend(g.map(since_ack));
                samples.websocket.extend(w.map(since_ack));
                if let (Some(g), Some(w)) = (g, w) {
                    samples.added.push(signed_ms(*w, *g));
                }
                grpc_missed += u64::from(g.is_none());
                ws_missed += u64::from(w.is_none());
            }
        }
        let all = Samples {
            pairs: same.pairs + cross.pairs,
            grpc: [same.grpc.as_slice(), &cross.grpc].concat(),
            websocket: [same.websocket.as_slice(), &cross.websocket].concat(),
            added: [same.added.as_slice(), &cross.added].concat(),
        };
        Self {
            skipped: None,
            url: Some(ran.url.clone()),
            offered_posts_per_sec: ran.offered_posts_per_sec,
            seconds: ran.seconds,
            offered_posts: ran.offered_posts,
            unsent_posts: ran.unsent_posts,
            watched_users: ran.plan.watched.len(),
            posters: ran.plan.posters.len(),
            acknowledged_posts: posts,
            all: all.figures(),
            same_cluster: same.figures(),
            cross_cluster: cross.figures(),
            websocket_missed: ws_missed,
            websocket_duplicated: duplicated,
            grpc_missed,
            websocket_reconnects: ran.seen.reconnects,
        }
    }

    /// Posts the WebSocket missed or repeated (must be 0).
    pub fn websocket_faults(&self) -> u64 {
        self.websocket_missed + self.websocket_duplicated
    }

    /// The line of the printed report.
    pub fn line(&self) -> String {
        if let Some(why) = &self.skipped {
            return format!("gateway: skipped ({why})");
        }
        let ms = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.2} ms"));
        format!(
            "gateway ({}): {:.0} posts/s for {:.1} s from {} users, {} users watching both ways, {} pairs \
             ({} same cluster): added at p99 {} (p99 WebSocket - p99 gRPC), {} per delivery; \
             WebSocket missed {}, duplicated {}, reconnects {}; gRPC missed {}",
            self.url.as_deref().unwrap_or("-"),
            self.offered_posts_per_sec,
            self.seconds,
            self.posters,
            self.watched_users,
            self.all.pairs,
            self.same_cluster.pairs,
            ms(self.all.added_p99_ms),
            ms(self.all.added_per_delivery.map(|s| s.p99_ms)),
            self.websocket_missed,
            self.websocket_duplicated,
            self.websocket_reconnects,
            self.grpc_missed
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway_watch::Seen;
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn the_plan_watches_every_cluster_and_posts_from_their_followees() {
        let graph = Graph::build(30, 3, 3, 1.0, 5);
        let p = plan(&graph, 2);
        assert_eq!(p.watched, vec![1, 4, 2, 5, 3, 6]);
        for w in &p.watched {
            assert!(graph.followees_of(*w).iter().all(|f| p.posters.contains(f)));
        }
    }

    #[test]
    fn both_ways_are_timed_per_pair_and_faults_counted() {
        // Users 1, 2, 3 in clusters 1, 2, 3; the ring makes 1 follow 2.
        let graph = Graph::build(3, 3, 1, 1.0, 1);
        assert_eq!(graph.followers_of(2), &[1]);
        let t = Instant::now();
        let ms = Duration::from_millis;
        let ack = |post_id, author| AckRecord {
            post_id,
            author,
            phase: Phase::Gateway,
            sent: t,
            acked: t + ms(10),
            ok: true,
            server: Arc::from("a:1"),
        };
        let at = |post_id, follower, when| DeliveryRecord {
            post_id,
            follower,
            at: t + ms(when),
        };
        let acks = vec![ack(1, 2), ack(2, 2), ack(3, 2)];
        // Post 1: gRPC at +20, socket at +21; post 2: socket first and twice; post 3: no socket.
        let grpc = vec![at(1, 1, 20), at(2, 1, 30), at(3, 1, 40), at(1, 3, 20)];
        let socket = vec![at(1, 1, 21), at(2, 1, 29), at(2, 1, 35)];
        let ran = Ran {
            url: "http://x".into(),
            offered_posts_per_sec: 1.0,
            seconds: 1.0,
            offered_posts: 3,
            unsent_posts: 0,
            plan: plan(&graph, 1),
            seen: Seen {
                arrivals: socket,
                reconnects: 0,
            },
        };
        let r = GatewayReport::new(&ran, &graph, &acks, &grpc);
        assert_eq!((r.acknowledged_posts, r.all.pairs, r.cross_cluster.pairs), (3, 3, 3));
        assert_eq!((r.websocket_missed, r.websocket_duplicated, r.grpc_missed), (1, 1, 0));
        assert_eq!(r.websocket_faults(), 2);
        let added = r.all.added_per_delivery.expect("differences");
        assert_eq!(added.count, 2);
        assert!((added.p50_ms + 1.0).abs() < 1e-6 && (added.max_ms - 1.0).abs() < 1e-6);
        let (g, w) = (r.all.grpc.expect("grpc"), r.all.websocket.expect("socket"));
        assert_eq!((g.count, w.count), (3, 2));
        assert!((r.all.added_p99_ms.expect("p99") - (w.p99_ms - g.p99_ms)).abs() < 1e-9);
        assert!(r.same_cluster.grpc.is_none());
        assert_eq!(r.all.websocket_first, 1);
    }
}
