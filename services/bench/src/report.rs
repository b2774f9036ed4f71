//! The results: a JSON document and a human-readable table.

use crate::analysis::{Delivery, FailoverTiming, PhaseDelivery};
use crate::floors::Floors;
use crate::machine::Machine;
use crate::stats::{Summary, ratio};
use crate::workload::GraphSummary;
use serde::Serialize;
use std::fmt::Write;

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub tool: &'static str,
    pub version: &'static str,
    pub started_at: String,
    pub mode: String,
    pub build: &'static str,
    pub seed: u64,
    pub machine: Machine,
    /// How busy the machine was: the benchmark shares it with whatever else runs.
    pub machine_load: MachineLoad,
    pub config: serde_json::Value,
    pub graph: GraphSummary,
    pub floors: Floors,
    /// Composed floors, from the measured ones (see docs/benchmarks.md).
    pub composed_floors: ComposedFloors,
    pub post_ack_latency: Compared,
    pub throughput: Throughput,
    pub delivery: DeliveryReport,
    pub failover: FailoverReport,
    pub switchover: crate::switchover::SwitchoverReport,
    pub catch_up: crate::catch_up::CatchUpReport,
    /// What the HTTP/WebSocket gateway adds to delivery.
    pub gateway: crate::gateway_phase::GatewayReport,
    /// How many clusters keep each post (started systems only).
    pub stored_copies: Option<crate::storage::StoredCopies>,
    /// The likes and messages beside the posts (`--mix`).
    pub side_load: Option<crate::mix::SideLoadCounts>,
    /// History and inbox pages at scale (`--topic-posts`).
    pub topic_reads: Option<crate::topic_reads::TopicReadsReport>,
    pub lost: Lost,
    pub peak_rss: Vec<Rss>,
    pub peak_rss_by_role: Vec<RoleRss>,
    pub targets: Vec<Target>,
    pub errors: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct MachineLoad {
    pub load_average_start: Option<f64>,
    pub load_average_end: Option<f64>,
    pub run_seconds: f64,
    /// CPU time all cores spent busy during the run.
    pub busy_cpu_seconds: Option<f64>,
    /// Of which the processes of this run (the system and the benchmark).
    pub our_cpu_seconds: f64,
    /// The rest: other processes on the machine (and the kernel on their behalf).
    pub other_cpu_seconds: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ComposedFloors {
    /// client -> master RPC + master -> slave RPC + one fdatasync.
    pub post_ack: FloorPair,
    /// One gRPC round trip.
    pub same_cluster_delivery: FloorPair,
    /// RabbitMQ publish/confirm/consume + two gRPC round trips + one fdatasync.
    pub cross_cluster_delivery: Option<FloorPair>,
    /// The coordinator's failure timeout.
    pub failover_ms: f64,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct FloorPair {
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// A latency distribution beside its floor.
#[derive(Debug, Clone, Serialize)]
pub struct Compared {
    pub latency: Option<Summary>,
    pub floor: Option<FloorPair>,
    pub ratio_p50: Option<f64>,
    pub ratio_p99: Option<f64>,
}

impl Compared {
    pub fn new(latency: Option<Summary>, floor: Option<FloorPair>) -> Self {
        let (ratio_p50, ratio_p99) = match (latency, floor) {
            (Some(l), Some(f)) => (ratio(l.p50_ms, f.p50_ms), ratio(l.p99_ms, f.p99_ms)),
            _ => (None, None),
        };
        Self {
            latency,
            floor,
            ratio_p50,
            ratio_p99,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Throughput {
    pub posts_per_sec: f64,
    pub posts: u64,
    pub seconds: f64,
    pub posters: usize,
    pub ack_latency: Option<Summary>,
    /// Bare gRPC unary calls/s with 64 in flight: the ceiling for one RPC per post.
    pub floor_calls_per_sec: f64,
    pub ratio_to_floor: Option<f64>,
    /// How long after the phase ended the last expected delivery arrived (None: not within
    /// the drain timeout): the acknowledgement does not wait for other clusters, so a
    /// backlog there shows here.
    pub delivery_backlog_secs: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DeliveryFigure {
    #[serde(flatten)]
    pub delivery: Delivery,
    pub floor: Option<FloorPair>,
    pub ratio_p50: Option<f64>,
    pub ratio_p99: Option<f64>,
}

impl DeliveryFigure {
    pub fn new(delivery: Delivery, floor: Option<FloorPair>) -> Self {
        let c = Compared::new(delivery.latency, floor);
        Self {
            delivery,
            floor,
            ratio_p50: c.ratio_p50,
            ratio_p99: c.ratio_p99,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct DeliveryReport {
    /// The offered rate of the latency phase and what was acknowledged.
    pub offered_posts_per_sec: f64,
    pub achieved_posts_per_sec: f64,
    pub same_cluster: DeliveryFigure,
    pub cross_cluster: DeliveryFigure,
    /// Every phase, for completeness (the headline figures are the latency phase's).
    pub by_phase: serde_json::Value,
}

#[derive(Debug, Clone, Serialize)]
pub struct FailoverReport {
    pub skipped: Option<String>,
    pub cluster: Option<u32>,
    pub killed: Option<String>,
    /// The longest stretch, in any cluster, without an acknowledged write around the kill.
    pub longest_write_gap_any_cluster_ms: Option<f64>,
    #[serde(flatten)]
    pub timing: Option<FailoverTiming>,
    pub floor_ms: f64,
    pub ratio_to_floor: Option<f64>,
    /// Acknowledged posts of the failover phase missing from a follower's re-read timeline.
    pub acknowledged_lost: u64,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct Lost {
    pub acknowledged_posts: u64,
    pub refused_posts: u64,
    /// Acknowledged posts missing from at least one follower's re-read timeline.
    pub lost_posts: u64,
    pub checked_followers: u64,
    pub checked_pairs: u64,
    pub missing_pairs: u64,
    /// Live (post, follower) pairs never delivered on an open stream, all phases.
    pub undelivered_live: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Rss {
    pub role: String,
    pub process: String,
    pub pid: u32,
    pub peak_rss_bytes: u64,
    /// CPU time used over the whole run (user + system), where that could be read.
    pub cpu_seconds: Option<f64>,
}

impl Rss {
    /// `pid`'s peak memory and CPU time so far; None once it is gone.
    pub fn of(role: &str, process: &str, pid: u32) -> Option<Self> {
        Some(Self {
            role: role.into(),
            process: process.into(),
            pid,
            peak_rss_bytes: crate::machine::peak_rss(pid)?,
            cpu_seconds: crate::machine::cpu_seconds(pid),
        })
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct RoleRss {
    pub role: String,
    pub processes: usize,
    pub max_peak_rss_bytes: u64,
    /// CPU time of all the role's processes over the run.
    pub cpu_seconds: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Target {
    pub name: String,
    pub target: String,
    pub value: String,
    pub met: Option<bool>,
}

pub fn by_role(rss: &[Rss]) -> Vec<RoleRss> {
    let mut roles: Vec<RoleRss> = Vec::new();
    for r in rss {
        match roles.iter_mut().find(|x| x.role == r.role) {
            Some(x) => {
                x.processes += 1;
                x.max_peak_rss_bytes = x.max_peak_rss_bytes.max(r.peak_rss_bytes);
                x.cpu_seconds += r.cpu_seconds.unwrap_or(0.0);
            }
            None => roles.push(RoleRss {
                role: r.role.clone(),
                processes: 1,
                max_peak_rss_bytes: r.peak_rss_bytes,
                cpu_seconds: r.cpu_seconds.unwrap_or(0.0),
            }),
        }
    }
    roles
}

fn opt(v: Option<f64>, unit: &str) -> String {
    match v {
        Some(v) if v >= 100.0 => format!("{v:.0}{unit}"),
        Some(v) if v >= 10.0 => format!("{v:.1}{unit}"),
        Some(v) => format!("{v:.2}{unit}"),
        None => "-".into(),
    }
}

fn x(v: Option<f64>) -> String {
    opt(v, "x")
}

fn lat(s: &Option<Summary>) -> [String; 3] {
    match s {
        Some(s) => [
            opt(Some(s.p50_ms), " ms"),
            opt(Some(s.p99_ms), " ms"),
            opt(Some(s.max_ms), " ms"),
        ],
        None => ["-".into(), "-".into(), "-".into()],
    }
}

pub fn phase_delivery_json(
    by_phase: &std::collections::HashMap<crate::driver::Phase, PhaseDelivery>,
) -> serde_json::Value {
    let mut map = serde_json::Map::new();
    for (phase, d) in by_phase {
        let key = serde_json::to_value(phase)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        map.insert(key, serde_json::to_value(d).unwrap_or_default());
    }
    serde_json::Value::Object(map)
}

impl Report {
    /// The human-readable table.
    pub fn table(&self) -> String {
        let mut t = String::new();
        let m = &self.machine;
        let _ = writeln!(
            t,
            "\ntinysns-bench {} ({} mode, {} build), seed {}\nmachine: {} cores, {}, {:.1} GiB, Linux {}\n",
            self.version,
            self.mode,
            self.build,
            self.seed,
            m.cores,
            m.cpu_model,
            m.memory_bytes as f64 / (1u64 << 30) as f64,
            m.kernel
        );
        let l = &self.machine_load;
        let _ = writeln!(
            t,
            "load: {:.1} s run; CPU busy {} s, of which this run {:.1} s and other processes {} s; load average {} -> {}\n",
            l.run_seconds,
            opt(l.busy_cpu_seconds, ""),
            l.our_cpu_seconds,
            opt(l.other_cpu_seconds, ""),
            opt(l.load_average_start, ""),
            opt(l.load_average_end, "")
        );
        let _ = writeln!(
            t,
            "{:<44} {:>10} {:>10} {:>10} {:>11} {:>9} {:>9}",
            "figure", "p50", "p99", "max", "floor p50", "x p50", "x p99"
        );
        let row = |t: &mut String, name: &str, s: &Option<Summary>, floor: Option<FloorPair>, r50, r99| {
            let [p50, p99, max] = lat(s);
            let _ = writeln!(
                t,
                "{:<44} {:>10} {:>10} {:>10} {:>11} {:>9} {:>9}",
                name,
                p50,
                p99,
                max,
                opt(floor.map(|f| f.p50_ms), " ms"),
                x(r50),
                x(r99)
            );
        };
        let f = &self.floors;
        row(
            &mut t,
            "floor: gRPC unary round trip",
            &Some(f.grpc_unary),
            None,
            None,
            None,
        );
        row(
            &mut t,
            "floor: RabbitMQ publish+confirm -> consume",
            &f.rabbitmq_publish_confirm_consume,
            None,
            None,
            None,
        );
        row(
            &mut t,
            "floor: write 200 B + fdatasync",
            &Some(f.fdatasync),
            None,
            None,
            None,
        );
        let a = &self.post_ack_latency;
        row(
            &mut t,
            &format!("post ack latency @ {:.0}/s", self.delivery.offered_posts_per_sec),
            &a.latency,
            a.floor,
            a.ratio_p50,
            a.ratio_p99,
        );
        let d = &self.delivery;
        for (name, fig) in [("same cluster", &d.same_cluster), ("cross cluster", &d.cross_cluster)] {
            row(
                &mut t,
                &format!("delivery ack -> follower, {name}"),
                &fig.delivery.latency,
                fig.floor,
                fig.ratio_p50,
                fig.ratio_p99,
            );
        }
        for (name, fig) in [("same cluster", &d.same_cluster), ("cross cluster", &d.cross_cluster)] {
            row(
                &mut t,
                &format!("delivery sent -> follower, {name}"),
                &fig.delivery.latency_from_send,
                None,
                None,
                None,
            );
        }
        if self.gateway.skipped.is_none() {
            let g = &self.gateway.all;
            for (name, s) in [
                ("gateway phase: ack -> gRPC stream", &g.grpc),
                ("gateway phase: ack -> WebSocket", &g.websocket),
                ("gateway phase: WebSocket - gRPC, same pair", &g.added_per_delivery),
            ] {
                row(&mut t, name, s, None, None, None);
            }
        }
        let tp = &self.throughput;
        row(
            &mut t,
            &format!("post ack latency at saturation ({} posters)", tp.posters),
            &tp.ack_latency,
            None,
            None,
            None,
        );
        let _ = writeln!(
            t,
            "\nthroughput: {:.0} posts/s acknowledged ({} posts in {:.1} s, {} posters); bare gRPC {:.0} calls/s -> {}",
            tp.posts_per_sec,
            tp.posts,
            tp.seconds,
            tp.posters,
            tp.floor_calls_per_sec,
            x(tp.ratio_to_floor)
        );
        let _ = writeln!(
            t,
            "deliveries still outstanding when the throughput phase ended arrived within {}",
            opt(tp.delivery_backlog_secs, " s")
        );
        let _ = writeln!(
            t,
            "undelivered live (post, follower) pairs: same cluster {} of {}, cross cluster {} of {}",
            d.same_cluster.delivery.undelivered,
            d.same_cluster.delivery.expected,
            d.cross_cluster.delivery.undelivered,
            d.cross_cluster.delivery.expected
        );
        let _ = writeln!(t, "{}", self.gateway.line());
        let fo = &self.failover;
        match &fo.skipped {
            Some(why) => {
                let _ = writeln!(t, "failover: skipped ({why})");
            }
            None if fo.cluster.is_none() => {
                let _ = writeln!(
                    t,
                    "failover: killed {}: longest write gap of any cluster {}; acknowledged posts lost: {}",
                    fo.killed.as_deref().unwrap_or("-"),
                    opt(fo.longest_write_gap_any_cluster_ms, " ms"),
                    fo.acknowledged_lost
                );
            }
            None => {
                let timing = fo.timing.as_ref();
                let _ = writeln!(
                    t,
                    "failover: killed {} (cluster {}): first ack by the new master after {}, longest ack gap {}; \
                     floor (failure timeout) {} -> {}; acknowledged posts lost: {}",
                    fo.killed.as_deref().unwrap_or("-"),
                    fo.cluster.unwrap_or(0),
                    opt(timing.and_then(|t| t.time_to_first_ack_ms), " ms"),
                    opt(timing.and_then(|t| t.longest_ack_gap_ms), " ms"),
                    opt(Some(fo.floor_ms), " ms"),
                    x(fo.ratio_to_floor),
                    fo.acknowledged_lost
                );
            }
        }
        let _ = writeln!(t, "{}", self.switchover.line());
        let l = &self.lost;
        let _ = writeln!(
            t,
            "re-read check: {} acknowledged posts, {} followers' timelines re-read, {} of {} (post, follower) pairs missing, {} posts lost",
            l.acknowledged_posts, l.checked_followers, l.missing_pairs, l.checked_pairs, l.lost_posts
        );
        if let Some(r) = &self.topic_reads {
            let _ = writeln!(
                t,
                "reads at scale: a topic of {} posts, an inbox of {} conversations ({} messages)",
                r.topic_posts, r.inbox_conversations, r.inbox_messages
            );
            for (name, s) in [
                ("  history page of 20, in the topic's home", &r.history_at_home),
                ("  history page of 20, asked in another cluster", &r.history_elsewhere),
                ("  inbox page of 20 conversations", &r.inbox),
            ] {
                let [p50, p99, max] = lat(s);
                let _ = writeln!(t, "{name:<50} p50 {p50} p99 {p99} max {max}");
            }
        }
        if let Some(m) = &self.side_load {
            let _ = writeln!(
                t,
                "mix: posts in {} topics, every user subscribed to one; beside them {} likes and {} direct messages ({} calls failed)",
                crate::mix::TOPICS,
                m.likes,
                m.messages,
                m.failed
            );
        }
        if let Some(c) = &self.stored_copies {
            let spread: Vec<String> = c.posts_by_copies.iter().map(|(k, n)| format!("{n} in {k}")).collect();
            let _ = writeln!(
                t,
                "stored copies per post: {} over {} clusters ({} posts, {} copies; posts kept in n clusters: {})",
                opt(c.copies_per_post, ""),
                c.clusters,
                c.posts,
                c.copies,
                spread.join(", ")
            );
        }
        let _ = writeln!(t, "\npeak RSS (VmHWM) and CPU time by role:");
        for r in &self.peak_rss_by_role {
            let _ = writeln!(
                t,
                "  {:<14} {:>8.1} MiB (largest of {}), {:>7.1} s CPU in all",
                r.role,
                r.max_peak_rss_bytes as f64 / (1u64 << 20) as f64,
                r.processes,
                r.cpu_seconds
            );
        }
        let _ = writeln!(t, "\ntargets:");
        for target in &self.targets {
            let verdict = match target.met {
                Some(true) => "met",
                Some(false) => "MISSED",
                None => "n/a",
            };
            let _ = writeln!(
                t,
                "  {:<48} {:<14} {:<22} {}",
                target.name, target.target, target.value, verdict
            );
        }
        if !self.errors.is_empty() {
            let _ = writeln!(t, "\nerrors ({}):", self.errors.len());
            for e in &self.errors {
                let _ = writeln!(t, "  {e}");
            }
        }
        t
    }
}
