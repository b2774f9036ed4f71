//! tinysns-bench: starts (or attaches to) a local tinysns system and drives it with a
//! realistic workload — users spread over the clusters, a skewed follow graph, followers on
//! open timeline streams, posters at a target rate — then reports acknowledgement latency,
//! sustained throughput, delivery latency within and across clusters, failover time, lost
//! posts and peak memory, each beside a floor measured in the same run.

mod analysis;
mod catch_up;
mod driver;
mod floors;
mod gateway_phase;
mod gateway_watch;
mod machine;
mod mix;
mod report;
mod stats;
mod storage;
mod switchover;
mod topic_reads;
mod verify;
mod workload;

use anyhow::{Context, Result, bail};
use clap::Parser;
use driver::{Command, Phase, Recorder, Router, UserHandle};
use futures_util::{StreamExt, TryStreamExt};
use indicatif::{ProgressBar, ProgressStyle};
use machine::Machine;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use report::{
    Compared, ComposedFloors, DeliveryFigure, DeliveryReport, FailoverReport, FloorPair, Lost, Report, Rss, Target,
    Throughput,
};
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tinysns_common::auth::AuthMode;
use tinysns_common::proto::coordinator::GetServerRequest;
use tinysns_common::proto::coordinator::coordinator_client::CoordinatorClient;
use tinysns_common::proto::social::{
    FollowRequest, ListRequest, LoginReply, LoginRequest, RegisterRequest, Status as Code,
};
use tinysns_stack::accounts::{PASSWORD, username_for};
use tinysns_stack::topology::{Broker, Options, Ports, Topology};
use tokio::sync::oneshot;
use workload::Graph;

/// Entries the preloaded log keeps behind its commit point (tsd's default `--log-retain`).
const PRELOAD_RETAIN: u64 = 100_000;
/// Unreplicated entries the catch-up figures time dropping from the preloaded store.
const TRUNCATED_SUFFIX: u64 = 1_000;
/// Load before the catch-up phase wipes the slave: the latencies it is compared with.
const CATCH_UP_BASELINE: Duration = Duration::from_secs(10);

#[derive(Parser, Debug)]
#[command(
    name = "tinysns-bench",
    about = "Benchmarks a local tinysns system: throughput, ack and delivery latency, failover, memory",
    after_help = "Full mode (the defaults) takes about 3 minutes; --quick about half a minute. \
                  Results: a table on stdout and a JSON file (--out). See docs/benchmarks.md."
)]
struct Cli {
    /// A few seconds of load with few users: a smoke run (the test uses it).
    #[arg(long)]
    quick: bool,
    /// Drive an already running system through its coordinator (host:port) instead of
    /// starting one. No failover and no service memory figures then.
    #[arg(long, value_name = "HOST:PORT")]
    attach: Option<String>,
    /// The broker for the RabbitMQ floor when attaching (or to use instead of a private one).
    #[arg(long, value_name = "URL", env = "TINYSNS_BENCH_AMQP_URL")]
    amqp_url: Option<String>,
    /// Where to write the JSON results.
    #[arg(long, default_value = "bench-results.json")]
    out: PathBuf,
    /// Seed of the workload (follow graph, posters); random if not given, always printed.
    #[arg(long)]
    seed: Option<u64>,
    /// Data and logs of the started system, and the fdatasync floor's file [default: a
    /// fresh directory under the system's temporary directory].
    #[arg(long)]
    dir: Option<PathBuf>,
    #[arg(long, default_value_t = 3)]
    clusters: u32,
    #[arg(long, default_value_t = 2)]
    servers: u32,
    #[arg(long, default_value_t = 2)]
    synchronizers: u32,
    /// Users, spread round-robin over the clusters [full: 1000, quick: 60].
    #[arg(long)]
    users: Option<u64>,
    /// Mean number of users each user follows [full: 10, quick: 4].
    #[arg(long)]
    follows: Option<usize>,
    /// Zipf exponent of followee popularity.
    #[arg(long, default_value_t = 1.0)]
    zipf: f64,
    /// Seconds of load before measuring [full: 3, quick: 0.5].
    #[arg(long)]
    warmup_secs: Option<f64>,
    /// Offered posts/s in the latency phase [full: 1000, quick: 200].
    #[arg(long)]
    latency_rate: Option<f64>,
    #[arg(long)]
    latency_secs: Option<f64>,
    /// Users posting back to back in the throughput phase [full: 300, quick: 30].
    #[arg(long)]
    throughput_posters: Option<usize>,
    #[arg(long)]
    throughput_secs: Option<f64>,
    /// Offered posts/s while a master is killed [full: 1000, quick: 200].
    #[arg(long)]
    failover_rate: Option<f64>,
    /// Length of the failover phase; the kill comes after a third of it [full: 15, quick: 6].
    #[arg(long)]
    failover_secs: Option<f64>,
    #[arg(long, default_value_t = 1)]
    failover_cluster: u32,
    /// What the failover phase kills: the master tsd of --failover-cluster, or the leading
    /// coordinator (with --coordinators 3: writes must not stop in any cluster).
    #[arg(long, value_enum, default_value_t = KillTarget::Master)]
    failover_kill: KillTarget,
    #[arg(long)]
    no_failover: bool,
    /// The social mix: posts name topics, every user subscribes to one, and likes and direct
    /// messages run beside the posts at --mix-rate each (see docs/benchmarks.md).
    #[arg(long)]
    mix: bool,
    /// Likes (and as many direct messages) per second in --mix.
    #[arg(long, default_value_t = 100.0)]
    mix_rate: f64,
    /// The cluster whose master the switchover phase hands to its slave (at --failover-rate,
    /// for --failover-secs, asked a third of the way in) [default: the one after
    /// --failover-cluster, whose master the failover phase killed].
    #[arg(long)]
    switchover_cluster: Option<u32>,
    #[arg(long)]
    no_switchover: bool,
    /// Preload --failover-cluster with this many entries and, after the other phases, wipe
    /// its slave under --failover-rate load and time its way back in sync (a snapshot, then
    /// the log's tail). 0: no catch-up phase. The figures mode uses 1000000.
    #[arg(long, default_value_t = 0)]
    catch_up_entries: u64,
    /// Preload a topic of this many posts (and user 1's inbox with 1000 conversations of
    /// 100,000 messages) into cluster 1 and time history and inbox pages on the quiet
    /// system. 0: not. The figures mode uses 1000000.
    #[arg(long, default_value_t = 0)]
    topic_posts: u64,
    /// Length of the catch-up phase's load; the wipe comes after 10 s of it.
    #[arg(long, default_value_t = 70.0)]
    catch_up_secs: f64,
    /// The gateway phase's gateway (`http://host:port`): by default one started beside the
    /// system; attaching, the phase runs only with this.
    #[arg(long, value_name = "URL")]
    gateway: Option<String>,
    /// Skip the gateway phase.
    #[arg(long)]
    no_gateway: bool,
    /// Offered posts/s in the gateway phase [full: 200, quick: 200].
    #[arg(long)]
    gateway_rate: Option<f64>,
    /// Length of the gateway phase [full: 10, quick: 3].
    #[arg(long)]
    gateway_secs: Option<f64>,
    /// Users of each cluster watching their timeline through the gateway as well as over gRPC
    /// [full: 8, quick: 4].
    #[arg(long)]
    gateway_watchers: Option<usize>,
    /// How the started system logs users in (attaching: whatever the system says).
    #[command(flatten)]
    auth: tinysns_common::auth::AuthArgs,
    /// Coordinators of the started system: 1, or 3 replicating with Raft.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=5))]
    coordinators: u32,
    /// The coordinator's failure timeout (started system only) [default: the coordinator's, 1s].
    #[arg(long)]
    failure_timeout: Option<String>,
    /// The longest wait for outstanding deliveries after each phase.
    #[arg(long)]
    drain_secs: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
struct Settings {
    mode: &'static str,
    attach: Option<String>,
    dir: PathBuf,
    clusters: u32,
    coordinators: u32,
    servers_per_cluster: u32,
    synchronizers_per_cluster: u32,
    users: u64,
    follows_per_user: usize,
    zipf_exponent: f64,
    warmup_secs: f64,
    latency_rate: f64,
    latency_secs: f64,
    throughput_posters: usize,
    throughput_secs: f64,
    failover: bool,
    failover_rate: f64,
    failover_secs: f64,
    failover_cluster: u32,
    failover_kill: KillTarget,
    switchover: bool,
    switchover_cluster: u32,
    catch_up_entries: u64,
    catch_up_secs: f64,
    mix: bool,
    mix_rate: f64,
    topic_posts: u64,
    gateway: bool,
    gateway_url: Option<String>,
    gateway_rate: f64,
    gateway_secs: f64,
    gateway_watchers_per_cluster: usize,
    failure_timeout: String,
    drain_secs: f64,
    #[serde(skip)]
    floor_sizes: floors::Sizes,
}

impl Settings {
    fn resolve(cli: &Cli) -> Self {
        let q = cli.quick;
        let pick = |v: Option<f64>, full: f64, quick: f64| v.unwrap_or(if q { quick } else { full });
        let dir = cli
            .dir
            .clone()
            .unwrap_or_else(|| std::env::temp_dir().join(format!("tinysns-bench-{}", std::process::id())));
        Self {
            mode: if q { "quick" } else { "full" },
            attach: cli.attach.clone(),
            dir,
            clusters: cli.clusters,
            coordinators: cli.coordinators,
            servers_per_cluster: cli.servers,
            synchronizers_per_cluster: cli.synchronizers,
            users: cli.users.unwrap_or(if q { 60 } else { 1000 }),
            follows_per_user: cli.follows.unwrap_or(if q { 4 } else { 10 }),
            zipf_exponent: cli.zipf,
            warmup_secs: pick(cli.warmup_secs, 3.0, 0.5),
            latency_rate: pick(cli.latency_rate, 1000.0, 200.0),
            latency_secs: pick(cli.latency_secs, 30.0, 3.0),
            throughput_posters: cli.throughput_posters.unwrap_or(if q { 30 } else { 300 }),
            throughput_secs: pick(cli.throughput_secs, 30.0, 2.0),
            failover: !cli.no_failover && cli.attach.is_none(),
            failover_rate: pick(cli.failover_rate, 1000.0, 200.0),
            failover_secs: pick(cli.failover_secs, 15.0, 6.0),
            failover_cluster: cli.failover_cluster,
            failover_kill: cli.failover_kill,
            switchover: !cli.no_switchover && cli.attach.is_none(),
            switchover_cluster: cli
                .switchover_cluster
                .unwrap_or(cli.failover_cluster % cli.clusters.max(1) + 1),
            catch_up_entries: if cli.attach.is_none() { cli.catch_up_entries } else { 0 },
            catch_up_secs: cli.catch_up_secs,
            mix: cli.mix,
            mix_rate: cli.mix_rate,
            topic_posts: if cli.attach.is_none() { cli.topic_posts } else { 0 },
            gateway: !cli.no_gateway,
            gateway_url: cli.gateway.clone(),
            gateway_rate: pick(cli.gateway_rate, 200.0, 200.0),
            gateway_secs: pick(cli.gateway_secs, 10.0, 3.0),
            gateway_watchers_per_cluster: cli.gateway_watchers.unwrap_or(if q { 4 } else { 8 }),
            failure_timeout: cli.failure_timeout.clone().unwrap_or_else(|| "1s".into()),
            drain_secs: pick(cli.drain_secs, 30.0, 15.0),
            floor_sizes: if q {
                floors::Sizes {
                    grpc: 300,
                    rabbit: 100,
                    fsync: 200,
                    throughput_for: Duration::from_millis(500),
                }
            } else {
                floors::Sizes {
                    grpc: 3000,
                    rabbit: 1000,
                    fsync: 2000,
                    throughput_for: Duration::from_secs(2),
                }
            },
        }
    }
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s.max(0.0))
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tinysns_common::telemetry::init("warn,tinysns_bench=info");
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tinysns-bench: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// A bar over a phase of `len` units with live counters.
struct Progress {
    bar: ProgressBar,
    ticker: tokio::task::JoinHandle<()>,
}

impl Progress {
    fn timed(name: &str, duration: Duration, recorder: &Arc<Recorder>) -> Self {
        let bar = ProgressBar::new(duration.as_millis() as u64);
        bar.set_style(
            ProgressStyle::with_template("{prefix:>12} [{bar:30}] {elapsed:>4} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar.set_prefix(name.to_string());
        let (b, recorder) = (bar.clone(), recorder.clone());
        let started = Instant::now();
        let ticker = tokio::spawn(async move {
            let mut last = (Instant::now(), recorder.acked.load(Ordering::Relaxed));
            loop {
                tokio::time::sleep(Duration::from_millis(250)).await;
                let acked = recorder.acked.load(Ordering::Relaxed);
                let rate = (acked - last.1) as f64 / last.0.elapsed().as_secs_f64();
                last = (Instant::now(), acked);
                b.set_position(started.elapsed().as_millis() as u64);
                b.set_message(format!(
                    "{rate:>6.0} posts/s  acked {acked}  delivered {}/{}  reconnects {}",
                    recorder.delivered.load(Ordering::Relaxed),
                    recorder.expected.load(Ordering::Relaxed),
                    recorder.reconnects.load(Ordering::Relaxed)
                ));
            }
        });
        Self { bar, ticker }
    }

    fn finish(self) {
        self.ticker.abort();
        self.bar.finish();
    }
}

fn counter_bar(name: &str, len: u64) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template("{prefix:>12} [{bar:30}] {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_prefix(name.to_string());
    bar
}

struct OpenLoop {
    started: Instant,
    ended: Instant,
    offered: u64,
    skipped: u64,
}

/// Offers `rate` posts/s for `duration`, each from a random user with no post in flight.
async fn open_loop<H: std::borrow::Borrow<UserHandle>>(
    handles: &[H],
    rate: f64,
    duration: Duration,
    phase: Phase,
    rng: &mut StdRng,
    ids: &AtomicU64,
) -> OpenLoop {
    let started = Instant::now();
    let (mut offered, mut skipped) = (0u64, 0u64);
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    while !handles.is_empty() {
        tick.tick().await;
        let elapsed = started.elapsed();
        if elapsed >= duration {
            break;
        }
        let due = (elapsed.as_secs_f64() * rate) as u64;
        while offered < due {
            offered += 1;
            let idle = (0..32)
                .map(|_| handles[rng.random_range(0..handles.len())].borrow())
                .find(|h| !h.busy.swap(true, Ordering::AcqRel));
            let Some(handle) = idle else {
                skipped += 1;
                continue;
            };
            let post = Command::Post {
                post_id: ids.fetch_add(1, Ordering::Relaxed),
                phase,
                done: None,
            };
            if handle.commands.try_send(post).is_err() {
                handle.busy.store(false, Ordering::Release);
                skipped += 1;
            }
        }
    }
    OpenLoop {
        started,
        ended: Instant::now(),
        offered,
        skipped,
    }
}

/// Each poster posts back to back (the next post once the last is acknowledged).
async fn closed_loop(posters: &[&UserHandle], duration: Duration, phase: Phase, ids: &AtomicU64) -> (Instant, Instant) {
    let started = Instant::now();
    let deadline = started + duration;
    futures_util::future::join_all(posters.iter().map(|h| async move {
        while Instant::now() < deadline {
            let (done, acked) = oneshot::channel();
            let post = Command::Post {
                post_id: ids.fetch_add(1, Ordering::Relaxed),
                phase,
                done: Some(done),
            };
            if h.commands.send(post).await.is_err() {
                return;
            }
            if !matches!(tokio::time::timeout(Duration::from_secs(30), acked).await, Ok(Ok(true))) {
                return;
            }
        }
    }))
    .await;
    (started, deadline)
}

/// Waits until the posts in flight are acknowledged and every expected delivery arrived,
/// for at most `timeout`; returns how long that took (None: not within the timeout).
async fn drain(handles: &[UserHandle], recorder: &Recorder, timeout: Duration) -> Option<Duration> {
    let started = Instant::now();
    let deadline = started + timeout;
    while Instant::now() < deadline {
        let idle = handles.iter().all(|h| !h.busy.load(Ordering::Acquire));
        let delivered = recorder.delivered.load(Ordering::Relaxed) >= recorder.expected.load(Ordering::Relaxed);
        if idle && delivered {
            let took = started.elapsed();
            // Let stragglers (duplicates, late acks) land before the next phase.
            tokio::time::sleep(Duration::from_millis(100)).await;
            return Some(took);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tracing::warn!(
        delivered = recorder.delivered.load(Ordering::Relaxed),
        expected = recorder.expected.load(Ordering::Relaxed),
        "deliveries still outstanding after {timeout:?}"
    );
    None
}

/// The number of clusters and the auth mode, as the client API tells them.
async fn system_shape(coordinator: &str) -> Result<(u32, AuthMode)> {
    let addresses = tinysns_common::coordinators::parse_addresses(coordinator, 9000).map_err(anyhow::Error::msg)?;
    let coordinators = tinysns_common::coordinators::Coordinators::connect(&addresses, |address| {
        tinysns_common::grpc::channel(address, Duration::from_secs(1)).map(CoordinatorClient::new)
    })?;
    let info = coordinators
        .call(|mut client| async move {
            client
                .get_server(GetServerRequest {
                    user_id: 1,
                    username: String::new(),
                })
                .await
        })
        .await
        .with_context(|| format!("cannot ask the coordinator at {coordinator} for a server"))?
        .into_inner();
    anyhow::ensure!(info.clusters > 0, "the coordinator at {coordinator} knows no cluster");
    let auth = AuthMode::from_proto(info.auth).context("the coordinator names no auth mode")?;
    Ok((info.clusters, auth))
}

/// Gives every user a session, waits until every cluster knows them all, then creates the
/// follows.
async fn setup(router: &Router, graph: &Graph, auth: AuthMode) -> Result<()> {
    let bar = counter_bar("users", graph.users);
    match auth {
        AuthMode::Open => {
            futures_util::stream::iter(1..=graph.users)
                .map(|user| {
                    let bar = &bar;
                    async move {
                        let request = LoginRequest {
                            user_id: user,
                            ..Default::default()
                        };
                        let reply = router
                            .call(user, |mut c| {
                                let request = request.clone();
                                async move { c.login(request).await }
                            })
                            .await?;
                        session_for(router, user, reply)?;
                        bar.inc(1);
                        Ok::<(), anyhow::Error>(())
                    }
                })
                .buffer_unordered(32)
                .try_collect::<Vec<()>>()
                .await?;
        }
        AuthMode::Password => {
            // Each cluster hands out ids in the order it registers accounts: register each
            // cluster's users in ascending order (clusters in parallel) so ids match.
            let per_cluster = (1..=graph.clusters).map(|cluster| {
                let bar = &bar;
                async move {
                    for user in (1..=graph.users).filter(|u| graph.cluster_of(*u) == cluster) {
                        let reply = register_or_log_in(router, user, graph.clusters).await?;
                        session_for(router, user, reply)?;
                        bar.inc(1);
                    }
                    Ok::<(), anyhow::Error>(())
                }
            });
            futures_util::future::try_join_all(per_cluster).await?;
        }
    }
    bar.finish();

    let everyone: HashSet<u64> = (1..=graph.users).collect();
    for probe in 1..=u64::from(graph.clusters).min(graph.users) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let known = known_users(router, probe).await?;
            if everyone.is_subset(&known) {
                break;
            }
            if Instant::now() > deadline {
                bail!(
                    "cluster {} knows only {} of the {} users after 60 s",
                    graph.cluster_of(probe),
                    everyone.intersection(&known).count(),
                    graph.users
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    let edges: Vec<(u64, u64)> = (1..=graph.users)
        .flat_map(|f| graph.followees_of(f).iter().map(move |t| (f, *t)))
        .collect();
    let bar = counter_bar("follows", edges.len() as u64);
    futures_util::stream::iter(edges)
        .map(|(follower, target)| {
            let bar = &bar;
            async move {
                let reply = router
                    .call(follower, |mut c| async move {
                        let target = match auth {
                            AuthMode::Open => target.to_string(),
                            AuthMode::Password => username_for(target, graph.clusters),
                        };
                        c.follow(FollowRequest { target }).await
                    })
                    .await?;
                if reply.status != Code::Success as i32 && reply.status != Code::FailureAlreadyExists as i32 {
                    bail!("user {follower} cannot follow {target}: {}", reply.message);
                }
                bar.inc(1);
                Ok(())
            }
        })
        .buffer_unordered(32)
        .try_collect::<Vec<()>>()
        .await?;
    bar.finish();
    Ok(())
}

/// Registers `user`'s generated account (or logs in to it, on a system that has it).
async fn register_or_log_in(router: &Router, user: u64, clusters: u32) -> Result<LoginReply> {
    let username = username_for(user, clusters);
    let register = RegisterRequest {
        username: username.clone(),
        password: PASSWORD.to_string(),
    };
    let reply = router
        .call(user, |mut c| {
            let register = register.clone();
            async move { c.register(register).await }
        })
        .await?;
    if reply.status != Code::FailureAlreadyExists as i32 {
        return Ok(reply);
    }
    let login = LoginRequest {
        user_id: 0,
        username,
        password: PASSWORD.to_string(),
    };
    router
        .call(user, |mut c| {
            let login = login.clone();
            async move { c.login(login).await }
        })
        .await
}

/// Keeps the token of a successful login or registration as `user`'s.
fn session_for(router: &Router, user: u64, reply: LoginReply) -> Result<()> {
    if reply.status != Code::Success as i32 {
        bail!("user {user} cannot log in: {}", reply.message);
    }
    if reply.user_id != user {
        bail!(
            "user {user} got id {}: attach only to a fresh system (ids are handed out in order)",
            reply.user_id
        );
    }
    router.set_token(user, &reply.token)
}

/// Every user id `probe`'s cluster knows (all pages of LIST).
async fn known_users(router: &Router, probe: u64) -> Result<HashSet<u64>> {
    let mut known = HashSet::new();
    let mut after = 0;
    loop {
        let request = ListRequest {
            users_after: after,
            followers_after: u64::MAX,
            ..Default::default()
        };
        let list = router.call(probe, |mut c| async move { c.list(request).await }).await?;
        known.extend(list.all_users.iter().map(|u| u.id));
        if list.next_users_after == 0 {
            return Ok(known);
        }
        after = list.next_users_after;
    }
}

/// VmHWM of every process of the system (and of the benchmark itself).
fn rss_snapshot(topology: Option<&mut Topology>) -> Vec<Rss> {
    let mut out = Vec::new();
    let mut push =
        |role: &str, process: &str, pid: Option<u32>| out.extend(pid.and_then(|pid| Rss::of(role, process, pid)));
    push("bench", "tinysns-bench", Some(std::process::id()));
    let Some(t) = topology else {
        return out;
    };
    for node in &t.coordinators {
        push("coordinator", &node.process.name, node.process.pid());
    }
    for m in t.servers.values() {
        push("tsd", &m.process.name, m.process.pid());
    }
    for m in t.synchronizers.values() {
        push("synchronizer", &m.process.name, m.process.pid());
    }
    if let Some((pid, bytes, cpu)) = t
        .rabbit
        .as_ref()
        .and_then(|r| r.pid())
        .and_then(machine::peak_rss_of_group)
    {
        out.push(Rss {
            role: "rabbitmq".into(),
            process: "beam.smp".into(),
            pid,
            peak_rss_bytes: bytes,
            cpu_seconds: Some(cpu),
        });
    }
    out
}

/// Keeps, per process, the largest of two snapshots (a process killed in between keeps its
/// last reading).
fn merge_rss(before: Vec<Rss>, after: Vec<Rss>) -> Vec<Rss> {
    let mut merged: Vec<Rss> = before;
    for r in after {
        match merged.iter_mut().find(|m| m.process == r.process) {
            Some(m) if m.pid == r.pid => {
                m.peak_rss_bytes = m.peak_rss_bytes.max(r.peak_rss_bytes);
                m.cpu_seconds = r.cpu_seconds.or(m.cpu_seconds);
            }
            Some(m) => *m = r,
            None => merged.push(r),
        }
    }
    merged
}

/// Why the gateway phase does not run, if it does not.
fn gateway_skipped(settings: &Settings, auth: AuthMode) -> Option<String> {
    if !settings.gateway {
        Some("--no-gateway".into())
    } else if auth == AuthMode::Open {
        Some("--auth open: the gateway logs users in with passwords".into())
    } else if settings.attach.is_some() && settings.gateway_url.is_none() {
        Some("attached to a running system: give its gateway with --gateway URL".into())
    } else {
        None
    }
}

/// The gateway phase (see `gateway_phase`): the watched users' sockets open, the users they
/// follow post at `--gateway-rate`, then the deliveries drain both ways. Returns what ran and
/// the started gateway's memory and CPU figures (the gateway stops on return).
async fn gateway_load(
    settings: &Settings,
    topology: Option<&Topology>,
    graph: &Graph,
    handles: &[UserHandle],
    recorder: &Arc<Recorder>,
    rng: &mut StdRng,
    ids: &AtomicU64,
) -> Result<(gateway_phase::Ran, Option<Rss>)> {
    let endpoint = gateway_phase::Endpoint::new(settings.gateway_url.as_deref(), topology).await?;
    let plan = gateway_phase::plan(graph, settings.gateway_watchers_per_cluster);
    let users: Vec<(u64, String)> = plan
        .watched
        .iter()
        .map(|u| (*u, username_for(*u, graph.clusters)))
        .collect();
    let watchers = gateway_watch::Watchers::open(endpoint.url(), &users, recorder.clone()).await?;
    let posters: Vec<&UserHandle> = handles.iter().filter(|h| plan.posters.contains(&h.user)).collect();
    let (duration, drain_for) = (secs(settings.gateway_secs), secs(settings.drain_secs));
    let p = Progress::timed("gateway", duration, recorder);
    let load = open_loop(&posters, settings.gateway_rate, duration, Phase::Gateway, rng, ids).await;
    drain(handles, recorder, drain_for).await;
    let watched: HashSet<u64> = plan.watched.iter().copied().collect();
    let expected = gateway_phase::expected_pairs(graph, &tinysns_common::lock(&recorder.acks), &watched);
    watchers.wait_for(expected, drain_for).await;
    p.finish();
    let seen = watchers.stop().await;
    let ran = gateway_phase::Ran {
        url: endpoint.url().to_string(),
        offered_posts_per_sec: settings.gateway_rate,
        seconds: load.ended.saturating_duration_since(load.started).as_secs_f64(),
        offered_posts: load.offered,
        unsent_posts: load.skipped,
        plan,
        seen,
    };
    Ok((ran, endpoint.rss()))
}

struct Failover {
    cluster: u32,
    killed: String,
    port: u16,
    at: Instant,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
enum KillTarget {
    Master,
    CoordinatorLeader,
}

/// Kills what the failover phase is about; returns what was killed and its port.
async fn kill_target(t: &mut Topology, target: KillTarget, cluster: u32) -> Result<(String, u16)> {
    match target {
        KillTarget::Master => {
            let master = t
                .master_server(cluster)
                .await
                .with_context(|| format!("cluster {cluster} has no master to kill"))?;
            let member = t
                .servers
                .get(&(cluster, master))
                .with_context(|| format!("the coordinator names server {master}, which this topology lacks"))?;
            let killed = (member.process.name.clone(), member.port);
            t.server(cluster, master).kill();
            Ok(killed)
        }
        KillTarget::CoordinatorLeader => {
            let leader = t.leading_coordinator().await.context("no coordinator leads")?;
            let node = &mut t.coordinators[leader];
            let killed = (node.process.name.clone(), node.port);
            node.process.kill();
            Ok(killed)
        }
    }
}

async fn run(cli: Cli) -> Result<()> {
    let settings = Settings::resolve(&cli);
    let seed = cli.seed.unwrap_or_else(rand::random);
    println!("seed: {seed} (repeat this workload with --seed {seed})");
    let started_at = chrono::Utc::now().to_rfc3339();
    let machine = Machine::detect();
    let (run_started, busy_at_start, load_at_start) =
        (Instant::now(), machine::busy_cpu_seconds(), machine::load_average());
    if settings.attach.is_none() {
        let _ = std::fs::remove_dir_all(&settings.dir);
    }
    std::fs::create_dir_all(&settings.dir).with_context(|| format!("cannot create {}", settings.dir.display()))?;

    // The system.
    let mut topology: Option<Topology> = None;
    let mut truncation_ms: Option<f64> = None;
    let (coordinator, amqp_url, clusters, auth) = match &settings.attach {
        Some(address) => {
            let (clusters, auth) = system_shape(address).await?;
            (address.clone(), cli.amqp_url.clone(), clusters, auth)
        }
        None => {
            let spinner = ProgressBar::new_spinner();
            spinner.enable_steady_tick(Duration::from_millis(200));
            spinner.set_message(format!(
                "starting RabbitMQ and {} clusters x ({} tsd + {} synchronizers) in {}",
                settings.clusters,
                settings.servers_per_cluster,
                settings.synchronizers_per_cluster,
                settings.dir.display()
            ));
            let options = Options {
                dir: settings.dir.clone(),
                clusters: settings.clusters,
                servers_per_cluster: settings.servers_per_cluster,
                synchronizers_per_cluster: settings.synchronizers_per_cluster,
                ports: Ports::Free,
                broker: match &cli.amqp_url {
                    Some(url) => Broker::External(url.clone()),
                    None => Broker::Private,
                },
                heartbeat_interval: None,
                failure_timeout: cli.failure_timeout.clone(),
                auth: cli.auth.auth,
                tsd_args: Vec::new(),
                cluster_tsd_args: Default::default(),
                synchronizer_args: Vec::new(),
                coordinators: settings.coordinators,
                partitionable: false,
                tls: false,
                slow_disks: false,
            };
            let prepared = Topology::prepare(options)?;
            if settings.catch_up_entries > 0 {
                spinner.set_message(format!(
                    "preloading cluster {} with {} entries",
                    settings.failover_cluster, settings.catch_up_entries
                ));
                tinysns_stack::preload::preload(
                    &prepared,
                    settings.failover_cluster,
                    settings.catch_up_entries,
                    PRELOAD_RETAIN,
                )?;
                let took =
                    tinysns_stack::preload::time_truncation(&prepared, settings.failover_cluster, TRUNCATED_SUFFIX)?;
                truncation_ms = Some(took.as_secs_f64() * 1e3);
            }
            if settings.topic_posts > 0 {
                if settings.catch_up_entries > 0 && settings.failover_cluster == 1 {
                    bail!("--topic-posts and --catch-up-entries both preload cluster 1: run them apart");
                }
                spinner.set_message(format!(
                    "preloading a topic of {} posts into cluster 1",
                    settings.topic_posts
                ));
                let topic = topic_reads::topic_homed_in(1, settings.clusters);
                let inbox = (1, topic_reads::CONVERSATIONS, topic_reads::MESSAGES);
                tinysns_stack::preload::preload_topic(
                    &prepared,
                    1,
                    &topic,
                    settings.topic_posts,
                    inbox,
                    PRELOAD_RETAIN,
                )?;
            }
            let t = prepared.launch().await.with_context(|| {
                format!(
                    "the system did not start (binaries from {}; logs in {}/logs)",
                    tinysns_stack::bin_dir().display(),
                    settings.dir.display()
                )
            })?;
            spinner.finish_with_message(format!("system up: coordinator {}", t.coordinator_address()));
            let address = t.coordinator_address();
            let url = t.amqp_url.clone();
            topology = Some(t);
            (address, Some(url), settings.clusters, cli.auth.auth)
        }
    };

    // Floors, on the quiet system.
    let spinner = ProgressBar::new_spinner();
    spinner.enable_steady_tick(Duration::from_millis(200));
    spinner.set_message("measuring floors: gRPC round trip, RabbitMQ round trip, fdatasync");
    let floors = floors::measure(&coordinator, amqp_url.as_deref(), &settings.dir, settings.floor_sizes).await?;
    spinner.finish_with_message("floors measured");

    // Users, follows, open timelines.
    let graph = Arc::new(Graph::build(
        settings.users,
        clusters,
        settings.follows_per_user,
        settings.zipf_exponent,
        seed,
    ));
    let router = Arc::new(Router::new(&coordinator, settings.users)?);
    let recorder = Arc::new(Recorder::default());
    setup(&router, &graph, auth).await?;
    let topic_reads = match settings.topic_posts {
        0 => None,
        posts => {
            let spinner = ProgressBar::new_spinner();
            spinner.set_message(format!("timing history and inbox pages at {posts} posts in a topic"));
            let topic = topic_reads::topic_homed_in(1, clusters);
            let other = if clusters > 1 && settings.users > 1 { 2 } else { 1 };
            let figures = topic_reads::measure(&router, &topic, posts, 1, other, seed).await?;
            spinner.finish_with_message("reads at scale timed");
            Some(figures)
        }
    };
    let handles: Vec<UserHandle> = (1..=settings.users)
        .map(|user| driver::spawn_user(user, router.clone(), recorder.clone(), graph.clone(), settings.mix))
        .collect();
    let bar = counter_bar("timelines", settings.users);
    let deadline = Instant::now() + Duration::from_secs(60);
    while recorder.ready.load(Ordering::Relaxed) < settings.users {
        bar.set_position(recorder.ready.load(Ordering::Relaxed));
        if Instant::now() > deadline || recorder.gave_up.load(Ordering::Relaxed) > 0 {
            bail!(
                "only {} of {} timelines opened",
                recorder.ready.load(Ordering::Relaxed),
                settings.users
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bar.finish();

    let side_load = match settings.mix {
        true => {
            mix::subscribe_all(&router, settings.users).await?;
            Some(mix::SideLoad::start(
                router.clone(),
                settings.users,
                clusters,
                auth,
                settings.mix_rate,
                seed,
            ))
        }
        false => None,
    };
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed_0f90_57ab);
    // Post ids are unique per author; a random base keeps reruns against one system apart.
    let ids = AtomicU64::new((rand::random::<u64>() >> 4) + 1);
    let drain_for = secs(settings.drain_secs);

    if settings.warmup_secs > 0.0 {
        let p = Progress::timed("warmup", secs(settings.warmup_secs), &recorder);
        open_loop(
            &handles,
            settings.latency_rate,
            secs(settings.warmup_secs),
            Phase::Warmup,
            &mut rng,
            &ids,
        )
        .await;
        drain(&handles, &recorder, drain_for).await;
        p.finish();
    }

    let p = Progress::timed("latency", secs(settings.latency_secs), &recorder);
    let latency = open_loop(
        &handles,
        settings.latency_rate,
        secs(settings.latency_secs),
        Phase::Latency,
        &mut rng,
        &ids,
    )
    .await;
    drain(&handles, &recorder, drain_for).await;
    p.finish();

    let mut posters: Vec<&UserHandle> = handles.iter().collect();
    posters.shuffle(&mut rng);
    posters.truncate(settings.throughput_posters.max(1));
    let p = Progress::timed("throughput", secs(settings.throughput_secs), &recorder);
    let (tp_start, tp_end) = closed_loop(&posters, secs(settings.throughput_secs), Phase::Throughput, &ids).await;
    let poster_count = posters.len();
    drop(posters);
    let tp_backlog = drain(&handles, &recorder, drain_for).await;
    p.finish();
    let side_load = match side_load {
        Some(load) => Some(load.stop().await),
        None => None,
    };

    let gateway_ran = match gateway_skipped(&settings, auth) {
        Some(why) => Err(why),
        None => gateway_load(
            &settings,
            topology.as_ref(),
            &graph,
            &handles,
            &recorder,
            &mut rng,
            &ids,
        )
        .await
        .map_err(|e| {
            let why = format!("{e:#}");
            recorder.error(format!("gateway phase: {why}"));
            why
        }),
    };

    let mut rss_before_kill = Vec::new();
    let mut failover: Option<Failover> = None;
    let mut failover_error: Option<String> = None;
    if settings.failover
        && let Some(t) = topology.as_mut()
    {
        let duration = secs(settings.failover_secs);
        let cluster = settings.failover_cluster;
        let p = Progress::timed("failover", duration, &recorder);
        let target = settings.failover_kill;
        let kill = async {
            tokio::time::sleep(duration / 3).await;
            let before = rss_snapshot(Some(&mut *t));
            let at = Instant::now();
            let (killed, port) = kill_target(t, target, cluster).await?;
            tracing::info!(%killed, ?target, "killed (kill -9)");
            Ok::<_, anyhow::Error>((
                Failover {
                    cluster,
                    killed,
                    port,
                    at,
                },
                before,
            ))
        };
        let (_load, killed) = tokio::join!(
            open_loop(
                &handles,
                settings.failover_rate,
                duration,
                Phase::Failover,
                &mut rng,
                &ids
            ),
            kill
        );
        match killed {
            Ok((f, before)) => {
                failover = Some(f);
                rss_before_kill = before;
            }
            Err(e) => failover_error = Some(format!("{e:#}")),
        }
        drain(&handles, &recorder, drain_for * 2).await;
        p.finish();
    }

    let mut switchover_asked = Err(if settings.attach.is_some() {
        "attached to a running system: its masters are not ours to move".to_string()
    } else {
        "--no-switchover".to_string()
    });
    if settings.switchover
        && let Some(t) = topology.as_ref()
    {
        let duration = secs(settings.failover_secs);
        let p = Progress::timed("switchover", duration, &recorder);
        let ask = async {
            tokio::time::sleep(duration / 3).await;
            switchover::ask(t, settings.switchover_cluster).await
        };
        let (_load, asked) = tokio::join!(
            open_loop(
                &handles,
                settings.failover_rate,
                duration,
                Phase::Switchover,
                &mut rng,
                &ids
            ),
            ask
        );
        switchover_asked = asked.map_err(|e| format!("{e:#}"));
        drain(&handles, &recorder, drain_for).await;
        p.finish();
    }

    let mut catch_up_report = catch_up::CatchUpReport {
        skipped: Some("--catch-up-entries 0".into()),
        ..Default::default()
    };
    let mut catch_up_events = None;
    if settings.catch_up_entries > 0
        && let Some(t) = topology.as_mut()
    {
        let duration = secs(settings.catch_up_secs);
        let cluster = settings.failover_cluster;
        let p = Progress::timed("catch-up", duration, &recorder);
        let wipe = async {
            tokio::time::sleep(CATCH_UP_BASELINE).await;
            catch_up::wipe_slave_and_wait(t, cluster, duration.saturating_sub(CATCH_UP_BASELINE) + drain_for).await
        };
        let (_load, events) = tokio::join!(
            open_loop(
                &handles,
                settings.failover_rate,
                duration,
                Phase::CatchUp,
                &mut rng,
                &ids
            ),
            wipe
        );
        match events {
            Ok(events) => catch_up_events = Some(events),
            Err(e) => catch_up_report.skipped = Some(format!("{e:#}")),
        }
        drain(&handles, &recorder, drain_for).await;
        p.finish();
    }

    // Close the streams, then re-read every follower's timeline.
    let mut cursors = HashMap::new();
    for handle in handles {
        let user = handle.user;
        cursors.insert(user, handle.stop().await);
    }
    let (acks, deliveries) = recorder.take();
    let bar = counter_bar("re-read", settings.users);
    let idle = if cli.quick {
        Duration::from_secs(3)
    } else {
        Duration::from_secs(5)
    };
    let reread = verify::reread(&router, &graph, &acks, &cursors, idle, &bar).await;
    bar.finish();

    let mut rss = merge_rss(rss_before_kill, rss_snapshot(topology.as_mut()));
    let gateway_report = match gateway_ran {
        Ok((ran, gateway_rss)) => {
            rss.extend(gateway_rss);
            gateway_phase::GatewayReport::new(&ran, &graph, &acks, &deliveries)
        }
        Err(why) => gateway_phase::GatewayReport::skipped(why),
    };
    let stored_copies = match &topology {
        Some(t) => Some(storage::stored_copies(t).await.context("counting stored copies")?),
        None => None,
    };
    let busy = busy_at_start
        .zip(machine::busy_cpu_seconds())
        .map(|(start, end)| end - start);
    let ours: f64 = rss.iter().filter_map(|r| r.cpu_seconds).sum();
    let machine_load = report::MachineLoad {
        load_average_start: load_at_start,
        load_average_end: machine::load_average(),
        run_seconds: run_started.elapsed().as_secs_f64(),
        busy_cpu_seconds: busy,
        our_cpu_seconds: ours,
        other_cpu_seconds: busy.map(|b| (b - ours).max(0.0)),
    };

    // Figures.
    let f = &floors;
    let failure_timeout_ms = humantime::parse_duration(&settings.failure_timeout)
        .map(|d| d.as_secs_f64() * 1e3)
        .unwrap_or(1000.0);
    let composed = ComposedFloors {
        post_ack: FloorPair {
            p50_ms: 2.0 * f.grpc_unary.p50_ms + f.fdatasync.p50_ms,
            p99_ms: 2.0 * f.grpc_unary.p99_ms + f.fdatasync.p99_ms,
        },
        same_cluster_delivery: FloorPair {
            p50_ms: f.grpc_unary.p50_ms,
            p99_ms: f.grpc_unary.p99_ms,
        },
        cross_cluster_delivery: f.rabbitmq_publish_confirm_consume.map(|r| FloorPair {
            p50_ms: r.p50_ms + 2.0 * f.grpc_unary.p50_ms + f.fdatasync.p50_ms,
            p99_ms: r.p99_ms + 2.0 * f.grpc_unary.p99_ms + f.fdatasync.p99_ms,
        }),
        failover_ms: failure_timeout_ms,
    };
    if let Some(events) = &catch_up_events {
        catch_up_report = catch_up::analyse(
            &graph,
            &acks,
            settings.failover_cluster,
            settings.catch_up_entries,
            events,
        );
        catch_up_report.truncated_entries = TRUNCATED_SUFFIX;
        catch_up_report.truncation_ms = truncation_ms;
    }
    let by_phase = analysis::deliveries(&graph, &acks, &deliveries);
    let headline = by_phase.get(&Phase::Latency).cloned().unwrap_or_default();
    let (_, achieved) = analysis::rate(&acks, Phase::Latency, latency.started, latency.ended);
    let steady_from = if settings.throughput_secs > 3.0 {
        tp_start + Duration::from_secs(1)
    } else {
        tp_start
    };
    let (tp_posts, tp_rate) = analysis::rate(&acks, Phase::Throughput, steady_from, tp_end);
    let undelivered_live: u64 = by_phase
        .values()
        .map(|d| d.same_cluster.undelivered + d.cross_cluster.undelivered)
        .sum();
    let failover_posts: HashSet<u64> = acks
        .iter()
        .filter(|a| a.ok && a.phase == Phase::Failover)
        .map(|a| a.post_id)
        .collect();
    let failover_report = match &failover {
        Some(fo) => {
            // A master's failover is timed in its cluster; a coordinator's, across all.
            let timing = (settings.failover_kill == KillTarget::Master)
                .then(|| analysis::failover(&graph, &acks, fo.cluster, fo.port, fo.at));
            FailoverReport {
                skipped: None,
                cluster: timing.is_some().then_some(fo.cluster),
                killed: Some(fo.killed.clone()),
                longest_write_gap_any_cluster_ms: analysis::longest_write_gap(&graph, &acks, Phase::Failover, fo.at),
                ratio_to_floor: timing
                    .as_ref()
                    .and_then(|t| t.time_to_first_ack_ms)
                    .and_then(|t| stats::ratio(t, failure_timeout_ms)),
                timing,
                floor_ms: failure_timeout_ms,
                acknowledged_lost: reread.lost.intersection(&failover_posts).count() as u64,
            }
        }
        None => FailoverReport {
            skipped: Some(failover_error.clone().unwrap_or_else(|| {
                if settings.attach.is_some() {
                    "attached to a running system: its processes are not ours to kill".into()
                } else {
                    "--no-failover".into()
                }
            })),
            cluster: None,
            killed: None,
            longest_write_gap_any_cluster_ms: None,
            timing: None,
            floor_ms: failure_timeout_ms,
            ratio_to_floor: None,
            acknowledged_lost: 0,
        },
    };
    let switchover_report = match &switchover_asked {
        Ok(asked) => switchover::SwitchoverReport::new(asked, &graph, &acks, &reread.lost),
        Err(why) => switchover::SwitchoverReport::skipped(why.clone()),
    };
    let same = DeliveryFigure::new(headline.same_cluster, Some(composed.same_cluster_delivery));
    let cross = DeliveryFigure::new(headline.cross_cluster, composed.cross_cluster_delivery);
    let post_ack = Compared::new(analysis::ack_latency(&acks, Phase::Latency), Some(composed.post_ack));
    let throughput = Throughput {
        posts_per_sec: tp_rate,
        posts: tp_posts,
        seconds: tp_end.saturating_duration_since(steady_from).as_secs_f64(),
        posters: poster_count,
        ack_latency: analysis::ack_latency(&acks, Phase::Throughput),
        floor_calls_per_sec: f.grpc_unary_calls_per_sec,
        ratio_to_floor: stats::ratio(tp_rate, f.grpc_unary_calls_per_sec),
        delivery_backlog_secs: tp_backlog.map(|d| d.as_secs_f64()),
    };
    let lost = Lost {
        acknowledged_posts: acks.iter().filter(|a| a.ok).count() as u64,
        refused_posts: acks.iter().filter(|a| !a.ok).count() as u64,
        lost_posts: reread.lost.len() as u64,
        checked_followers: reread.checked_followers,
        checked_pairs: reread.checked_pairs,
        missing_pairs: reread.missing_pairs,
        undelivered_live,
    };
    let rate_note = format!("@ {:.0}/s", settings.latency_rate);
    let p99 = |d: &DeliveryFigure| d.delivery.latency.map(|l| l.p99_ms);
    let ms = |v: Option<f64>| v.map(|v| format!("{v:.1} ms")).unwrap_or_else(|| "-".into());
    let mut targets = vec![
        Target {
            name: "sustained posts/s, 3 clusters, durable replication".into(),
            target: ">= 5000/s".into(),
            value: format!("{tp_rate:.0}/s"),
            met: Some(tp_rate >= 5000.0),
        },
        Target {
            name: format!("same-cluster delivery p99 {rate_note}"),
            target: "< 10 ms @ 1000/s".into(),
            value: ms(p99(&same)),
            met: p99(&same).map(|v| v < 10.0),
        },
        Target {
            name: format!("cross-cluster delivery p99 {rate_note}"),
            target: "< 100 ms @ 1000/s".into(),
            value: ms(p99(&cross)),
            met: p99(&cross).map(|v| v < 100.0),
        },
        Target {
            name: "undelivered live (post, follower) pairs".into(),
            target: "0".into(),
            value: undelivered_live.to_string(),
            met: Some(undelivered_live == 0),
        },
        Target {
            name: "acknowledged posts lost (re-read)".into(),
            target: "0".into(),
            value: lost.lost_posts.to_string(),
            met: Some(lost.lost_posts == 0),
        },
    ];
    if settings.failover_kill == KillTarget::CoordinatorLeader {
        let gap = failover_report.longest_write_gap_any_cluster_ms;
        targets.push(Target {
            name: "coordinator leader killed: longest write gap of any cluster".into(),
            target: "<= 2 s".into(),
            value: ms(gap),
            met: gap.map(|g| g <= 2000.0),
        });
    } else if let Some(timing) = &failover_report.timing {
        targets.push(Target {
            name: "failover: kill -9 master -> first ack by new master".into(),
            target: "< 3 s".into(),
            value: ms(timing.time_to_first_ack_ms),
            met: timing.time_to_first_ack_ms.map(|t| t < 3000.0),
        });
    }
    if switchover_report.skipped.is_none() {
        let gap = switchover_report.longest_write_gap_any_cluster_ms;
        targets.push(Target {
            name: "planned switchover: longest write gap of any cluster".into(),
            target: "< 1 s".into(),
            value: ms(gap),
            met: gap.map(|g| g < 1000.0),
        });
    }
    if catch_up_report.skipped.is_none() {
        let took = catch_up_report.in_sync_after_ms;
        targets.push(Target {
            name: format!(
                "empty replica of {} entries in sync under {} posts/s",
                catch_up_report.preloaded_entries, settings.failover_rate
            ),
            target: "<= 60 s".into(),
            value: ms(took),
            met: Some(took.is_some_and(|t| t <= 60_000.0)),
        });
        let truncation = catch_up_report.truncation_ms;
        targets.push(Target {
            name: format!(
                "dropping {} unreplicated entries from that store (costs the suffix)",
                catch_up_report.truncated_entries
            ),
            target: "<= 1 s".into(),
            value: ms(truncation),
            met: truncation.map(|t| t <= 1000.0),
        });
        let ratio = catch_up_report.p99_ratio;
        targets.push(Target {
            name: "write p99 during that catch-up / before it".into(),
            target: "<= 2".into(),
            value: ratio.map_or("-".into(), |r| format!("{r:.2}")),
            met: ratio.map(|r| r <= 2.0),
        });
    }
    if gateway_report.skipped.is_none() {
        // The measure: the WebSocket's delivery p99 beside the gRPC one. The per-pair
        // differences are reported too; their tail also holds the servers' two timeline tasks
        // (one per stream) being scheduled apart, which no gateway can remove.
        let added = gateway_report.all.added_p99_ms;
        targets.push(Target {
            name: "gateway adds to delivery p99 (WebSocket p99 - gRPC p99)".into(),
            target: "< 2 ms".into(),
            value: added.map_or("-".into(), |v| format!("{v:.2} ms")),
            met: added.map(|v| v < 2.0),
        });
        targets.push(Target {
            name: "WebSocket posts missed + duplicated".into(),
            target: "0".into(),
            value: format!(
                "{} + {}",
                gateway_report.websocket_missed, gateway_report.websocket_duplicated
            ),
            met: Some(gateway_report.websocket_faults() == 0 && gateway_report.acknowledged_posts > 0),
        });
    }
    let mut errors = recorder.errors.lock().unwrap_or_else(|p| p.into_inner()).clone();
    if gateway_report.unsent_posts > 0 {
        errors.push(format!(
            "gateway phase: {} of {} offered posts skipped (every sampled poster had a post in flight)",
            gateway_report.unsent_posts, gateway_report.offered_posts
        ));
    }
    if gateway_report.websocket_faults() > 0 {
        errors.push(format!(
            "gateway phase: {} (post, follower) pairs never arrived on the WebSocket, {} arrived twice",
            gateway_report.websocket_missed, gateway_report.websocket_duplicated
        ));
    }
    if latency.skipped > 0 {
        errors.push(format!(
            "latency phase: {} of {} offered posts skipped (every sampled user had a post in flight)",
            latency.skipped, latency.offered
        ));
    }
    let report = Report {
        tool: "tinysns-bench",
        version: env!("CARGO_PKG_VERSION"),
        started_at,
        mode: settings.mode.to_string(),
        build: if cfg!(debug_assertions) { "debug" } else { "release" },
        seed,
        machine,
        machine_load,
        config: serde_json::to_value(&settings)?,
        graph: graph.summary(),
        floors: floors.clone(),
        composed_floors: composed,
        post_ack_latency: post_ack,
        throughput,
        delivery: DeliveryReport {
            offered_posts_per_sec: settings.latency_rate,
            achieved_posts_per_sec: achieved,
            same_cluster: same,
            cross_cluster: cross,
            by_phase: report::phase_delivery_json(&by_phase),
        },
        failover: failover_report,
        switchover: switchover_report,
        catch_up: catch_up_report,
        gateway: gateway_report,
        stored_copies,
        side_load,
        topic_reads,
        lost,
        peak_rss_by_role: report::by_role(&rss),
        peak_rss: rss,
        targets,
        errors,
    };
    let json = serde_json::to_string_pretty(&report)?;
    std::fs::write(&cli.out, json + "\n").with_context(|| format!("cannot write {}", cli.out.display()))?;
    print!("{}", report.table());
    println!(
        "\nresults: {} (seed {seed}); system logs: {}/logs",
        cli.out.display(),
        settings.dir.display()
    );
    if let Some(mut t) = topology.take() {
        tokio::task::spawn_blocking(move || t.stop_all())
            .await
            .context("stopping the system")?;
    }
    Ok(())
}
