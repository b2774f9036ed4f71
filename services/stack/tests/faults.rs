//! Fault injection under load: each scenario runs a workload of follows, posts in topics,
//! likes and direct messages across all clusters, injects one fault, and then checks the
//! invariants: every acknowledged post reached every follower exactly once, both replicas of
//! every cluster hold the same data, and the stored state of every replica holds every
//! acknowledged post where it must be kept, no refused one, each post under one clock stamp
//! everywhere, topics numbered alike without gaps, every acknowledged like, and every
//! acknowledged direct message once where its users live and nowhere else
//! (`tinysns_stack::checker`). The seed and the
//! timings are printed so a failure can be replayed
//! (`TINYSNS_FAULT_SEED=<seed> cargo test -p tinysns-stack --test faults <name>`).
//!
//! Nightly mode: `TINYSNS_FAULT_ROUNDS=<n>` runs every scenario `n` times, each with a fresh
//! seed (CI runs each once).

mod common;

use common::*;
use std::time::{Duration, Instant};
use tinysns_common::proto::social::{FollowRequest, ListRequest};
use tinysns_operator::rollout;
use tinysns_stack::proxy::Link;
use tinysns_stack::topology::{Broker, Topology};
use tinysns_stack::workload::Workload;

#[derive(Debug, Clone, Copy)]
enum Fault {
    KillMasterTsd,
    PauseMasterTsd,
    BrokerOutage,
    /// The broker set up as the operator sets up a managed node (its definitions, generated
    /// password and memory budget; classic or quorum queues), killed -9 and started again
    /// 10 s later on the same data: a deleted broker pod coming back on its volume.
    BrokerNodeKilled {
        quorum: bool,
    },
    BrokerMemoryAlarm,
    CoordinatorRestart,
    /// The master paused, and the coordinator killed and restarted meanwhile (a double fault).
    CoordinatorRestartWhilePaused,
    /// With 3 coordinators: the leading one killed, then (under the new leader) a master tsd.
    CoordinatorLeaderThenMaster,
    /// Master and slave of a cluster killed -9 at once, restarted in an order the seed picks.
    BothReplicasKilled,
    /// The link from the master to its slave (replication) partitioned, both ways or one way,
    /// for longer than the replica timeout, then healed.
    PartitionMasterFromSlave(Link),
    /// The same, one way: the seed picks whether appends or the slave's answers are lost.
    PartitionOneWay,
    /// The master cut off from the coordinator (its slave is not) until it is replaced.
    PartitionMasterFromCoordinator,
    WipeReplica,
    WipeSlaveThenKillMaster,
    KillMasterSynchronizer,
    /// The disk of the master (or of its slave) fills up: every tsd of the cluster keeps its
    /// data on a small tmpfs of its own, and the test fills what is left of it.
    DiskFull {
        on_master: bool,
    },
    /// Every flush of the master's (or the slave's) disk takes a second longer for a few
    /// seconds, then the disk heals (`tinysns-slow-sync`, preloaded into every tsd).
    SlowDisk {
        on_master: bool,
    },
    /// A planned switchover asked of the coordinator (as the operator does in a rollout).
    PlannedSwitchover,
    /// The master (or its slave) stopped by SIGTERM, as Kubernetes stops a pod, and started
    /// again: it leaves its cluster first (a master hands over), so nobody waits for it.
    GracefulStop {
        master: bool,
    },
    /// A rolling update of every process, rehearsed with the real binaries: each step the
    /// operator's rules pick (`tinysns_operator::rollout`) taken as the operator would.
    RollingUpdate,
}

/// How much longer each flush takes on a slow disk, and for how long it stays slow.
const SLOW_FLUSH: Duration = Duration::from_secs(1);
const SLOW_FOR: Duration = Duration::from_secs(5);
/// The replica timeout in the slow-disk scenarios: a slave that takes longer leaves the
/// in-sync set.
const SLOW_REPLICA_TIMEOUT: &str = "500ms";

/// Size of the tmpfs each tsd of the cluster under a disk-full fault keeps its data on.
const SMALL_DISK_BYTES: u64 = 64 << 20;

/// A tmpfs of its own as a tsd's data directory, so a test can fill that disk (mounting
/// needs root, as the test suite runs on CI). Unmounted when dropped.
struct SmallDisk {
    path: std::path::PathBuf,
}

impl SmallDisk {
    fn mount(path: std::path::PathBuf, bytes: u64) -> Self {
        // One an interrupted earlier run left mounted.
        let _ = std::process::Command::new("umount").arg("-l").arg(&path).status();
        std::fs::create_dir_all(&path).expect("data directory");
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
            .arg(&path)
            .status()
            .expect("mount runs");
        assert!(
            status.success(),
            "cannot mount a tmpfs on {} (the disk-full scenarios need root)",
            path.display()
        );
        Self { path }
    }

    /// Takes every byte left on the disk.
    fn fill(&self) {
        use std::io::Write;
        let mut filler = std::fs::File::create(self.path.join("filler")).expect("filler file");
        let block = vec![0xA5u8; 64 * 1024];
        while filler.write_all(&block).is_ok() {}
        let _ = filler.sync_all();
    }

    fn free(&self) {
        std::fs::remove_file(self.path.join("filler")).expect("remove the filler");
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// Entries kept behind the commit point in scenarios that exercise compaction and snapshots.
const LOG_RETAIN: u64 = 20;

fn compacts(fault: Fault) -> bool {
    matches!(
        fault,
        Fault::KillMasterTsd | Fault::WipeReplica | Fault::PartitionMasterFromSlave(_) | Fault::BothReplicasKilled
    )
}

/// The seeds to run a scenario with: the one `TINYSNS_FAULT_SEED` names, else
/// `TINYSNS_FAULT_ROUNDS` (default 1) random ones.
fn seeds() -> Vec<u64> {
    let var = |name: &str| std::env::var(name).ok().and_then(|s| s.parse::<u64>().ok());
    match var("TINYSNS_FAULT_SEED") {
        Some(seed) => vec![seed],
        None => (0..var("TINYSNS_FAULT_ROUNDS").unwrap_or(1).max(1))
            .map(|_| rand::random())
            .collect(),
    }
}

fn log(started: Instant, what: &str) {
    println!("[{:>7.3}s] {what}", started.elapsed().as_secs_f64());
}

async fn scenario(name: &str, fault: Fault) {
    for seed in seeds() {
        scenario_once(name, fault, seed).await;
    }
}

async fn scenario_once(name: &str, fault: Fault, seed: u64) {
    println!("scenario {name}: fault {fault:?}, seed {seed}");
    let cluster = (seed % 3) as u32 + 1;
    let mut disks = Vec::new();
    let mut t = start_with(name, |o| {
        if matches!(fault, Fault::DiskFull { .. }) {
            for server in 1..=o.servers_per_cluster {
                let dir = o.dir.join(format!("cluster{cluster}-server{server}"));
                disks.push(SmallDisk::mount(dir, SMALL_DISK_BYTES));
            }
        }
        o.broker = match fault {
            Fault::BrokerNodeKilled { quorum } => {
                if quorum {
                    o.synchronizer_args
                        .extend(["--amqp-queue-type".to_string(), "quorum".to_string()]);
                }
                Broker::PrivateWith(managed_broker(&o.dir))
            }
            _ => Broker::Private,
        };
        if matches!(fault, Fault::CoordinatorLeaderThenMaster | Fault::RollingUpdate) {
            o.coordinators = 3;
        }
        o.partitionable = matches!(
            fault,
            Fault::PartitionMasterFromSlave(_) | Fault::PartitionOneWay | Fault::PartitionMasterFromCoordinator
        );
        if matches!(fault, Fault::SlowDisk { .. }) {
            o.slow_disks = true;
            o.tsd_args
                .extend(["--replica-timeout".to_string(), SLOW_REPLICA_TIMEOUT.to_string()]);
        }
        if compacts(fault) {
            // A short log: its front is dropped within seconds under the workload, so a
            // replica that was away or wiped comes back through a snapshot.
            o.tsd_args.extend(["--log-retain".to_string(), LOG_RETAIN.to_string()]);
        }
    })
    .await;
    let started = Instant::now();
    let workload = Workload::start(&t, 2, seed, Duration::from_millis(40))
        .await
        .unwrap_or_else(|e| panic!("workload did not start: {e}"));
    log(started, &format!("workload running: follows {:?}", workload.follows));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = workload.acked();
    log(
        started,
        &format!("injecting {fault:?} in cluster {cluster} after {before} acknowledged posts"),
    );
    inject(&mut t, fault, cluster, seed, started, &disks).await;
    log(started, "fault over; workload continues");
    tokio::time::sleep(Duration::from_secs(3)).await;
    // Generous: a broker outage leaves a backlog, and CI machines are slow. The check stops
    // waiting as soon as everything has arrived.
    let follows = workload.follows.clone();
    let outcome = workload.finish(Duration::from_secs(90)).await;
    log(
        started,
        &format!(
            "acknowledged {} posts, {} likes, {} direct messages ({} refused), {} reconnects; checking invariants",
            outcome.acked,
            outcome.acked_likes.len(),
            outcome.acked_messages.len(),
            outcome.refused_messages.len(),
            outcome.reconnects
        ),
    );
    assert!(outcome.acked > before, "no post was acknowledged after the fault");
    assert!(
        !outcome.acked_likes.is_empty() && !outcome.acked_messages.is_empty(),
        "the workload liked and messaged"
    );
    assert!(outcome.refused.is_empty(), "posts refused: {:?}", outcome.refused);
    assert!(
        outcome.duplicates.is_empty(),
        "seed {seed}: duplicates: {:?}",
        outcome.duplicates
    );
    assert!(
        outcome.missing.is_empty(),
        "seed {seed}: {} missing, e.g. {:?}",
        outcome.missing.len(),
        &outcome.missing[..outcome.missing.len().min(5)]
    );
    // Replicas agree once the cluster is quiet (lagging slaves catch up in the background).
    t.wait_ready(Duration::from_secs(20))
        .await
        .expect("every replica is back");
    eventually!("replicas to converge", Duration::from_secs(20), async {
        let digests = t.replica_digests();
        (1..=3)
            .all(|c| {
                let (a, b) = (&digests[&(c, 1)], &digests[&(c, 2)]);
                a.is_ok() && a == b
            })
            .then_some(())
    });
    // What is stored, not only what was delivered live: every acknowledged post and follow in
    // every replica of every cluster, nothing refused anywhere, one clock stamp per post.
    let told = tinysns_stack::checker::Told {
        acked: &outcome.acked_posts,
        refused: &outcome.refused_posts,
        follows: &follows,
        messages: &outcome.acked_messages,
        refused_messages: &outcome.refused_messages,
        likes: &outcome.acked_likes,
    };
    // (Topic numbers may still be crossing the bus: the check is repeated for a while.)
    let deadline = Instant::now() + Duration::from_secs(30);
    let found = loop {
        let found = tinysns_stack::checker::problems(&tinysns_stack::checker::stored(&t), &told);
        if found.is_empty() || Instant::now() > deadline {
            break found;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert!(found.is_empty(), "seed {seed}: stored state: {found:#?}");
    log(started, "invariants hold (live deliveries and stored state)");
    println!(
        "longest wait between acknowledgements in cluster {cluster}: {:?} (every cluster: {:?})",
        outcome.longest_ack_gap.get(&cluster),
        outcome.longest_ack_gap
    );
}

/// A private broker configured as the operator configures a managed node of the default
/// spec: the operator's rabbitmq.conf node settings (memory budget from the default limit)
/// and definitions with a generated password, loaded from a file here instead of the Secret.
fn managed_broker(dir: &std::path::Path) -> tinysns_stack::rabbit::BrokerSetup {
    use tinysns_operator::build::rabbitmq::{self, config};
    use tinysns_operator::build::{Role, default_resources, quantity};
    let password = rabbitmq::generate_password();
    std::fs::create_dir_all(dir).expect("topology directory");
    let definitions = dir.join(config::DEFINITIONS_FILE);
    std::fs::write(&definitions, config::definitions(&password).to_string()).expect("definitions");
    let limit = default_resources(Role::RabbitMq)
        .limits
        .and_then(|l| l.get("memory").cloned())
        .map(|q| quantity::to_units(&q).expect("the default limit is a quantity"));
    let conf = config::node_settings(limit).replace(
        &format!("{}/{}", config::DEFINITIONS_DIR, config::DEFINITIONS_FILE),
        &definitions.display().to_string(),
    );
    tinysns_stack::rabbit::BrokerSetup {
        conf,
        user: rabbitmq::USERNAME.to_string(),
        password,
    }
}

async fn inject(t: &mut Topology, fault: Fault, cluster: u32, seed: u64, started: Instant, disks: &[SmallDisk]) {
    match fault {
        Fault::KillMasterTsd => {
            let master = t.master_server(cluster).await.expect("a master");
            t.server(cluster, master).kill();
            log(started, &format!("killed tsd {cluster}/{master} (kill -9)"));
            wait_new_master(t, cluster, master).await;
            log(started, "slave promoted");
            tokio::time::sleep(Duration::from_secs(1)).await;
            t.server(cluster, master).start().expect("restart");
            log(started, "killed tsd restarted; it rejoins as slave");
        }
        Fault::PauseMasterTsd => pause_master(t, cluster, started, false).await,
        Fault::PlannedSwitchover => planned_switchover(t, cluster, started).await,
        Fault::GracefulStop { master } => graceful_stop(t, cluster, master, started).await,
        Fault::RollingUpdate => rolling_update(t, started).await,
        Fault::CoordinatorRestartWhilePaused => pause_master(t, cluster, started, true).await,
        Fault::BrokerOutage => {
            let rabbit = t.rabbit.as_mut().expect("a private broker");
            rabbit.stop();
            log(started, "RabbitMQ stopped for 30 s");
            tokio::time::sleep(Duration::from_secs(30)).await;
            t.start_broker().await.expect("broker restarts");
            log(started, "RabbitMQ restarted");
        }
        Fault::BrokerNodeKilled { .. } => {
            let rabbit = t.rabbit.as_mut().expect("a private broker");
            rabbit.kill();
            log(started, "RabbitMQ killed (kill -9); back in 10 s, as a pod rescheduled");
            // Long enough for every synchronizer to notice (their connections were reset,
            // not closed) and for publishers to fill their window of unconfirmed messages.
            tokio::time::sleep(Duration::from_secs(10)).await;
            t.start_broker().await.expect("broker restarts on its data");
            log(started, "RabbitMQ restarted on the same data");
        }
        Fault::BrokerMemoryAlarm => {
            let rabbit = t.rabbit.as_ref().expect("a private broker");
            // A one-byte high watermark: the broker raises its memory alarm at once and blocks
            // every publishing connection (consumers go on).
            rabbit
                .ctl(&["set_vm_memory_high_watermark", "absolute", "1"])
                .expect("rabbitmqctl raises the alarm");
            log(started, "RabbitMQ memory alarm raised for 8 s");
            tokio::time::sleep(Duration::from_secs(8)).await;
            rabbit
                .ctl(&["set_vm_memory_high_watermark", "0.4"])
                .expect("rabbitmqctl clears the alarm");
            log(started, "RabbitMQ memory alarm cleared");
            // Every cluster posts under the workload, so every master synchronizer published
            // into the alarm.
            let master = t.master_synchronizer(cluster).await.expect("a master synchronizer");
            let told = std::fs::read_to_string(t.synchronizer(master).log_path()).unwrap_or_default();
            assert!(
                told.contains("the broker blocks publishing"),
                "synchronizer {master} of cluster {cluster} never heard connection.blocked"
            );
        }
        Fault::CoordinatorRestart => {
            let before = t.views().await.unwrap();
            t.coordinators[0].process.kill();
            log(started, "coordinator killed (kill -9) for 2 s");
            tokio::time::sleep(Duration::from_secs(2)).await;
            t.coordinators[0].process.start().expect("restart");
            tokio::time::sleep(Duration::from_secs(2)).await;
            let after = t.views().await.unwrap();
            for (b, a) in before.iter().zip(&after) {
                let id = |v: &tinysns_common::proto::coordinator::ClusterView| v.master.as_ref().map(|m| m.member_id);
                assert_eq!(
                    (id(b), b.term),
                    (id(a), a.term),
                    "cluster {}: master or term changed",
                    b.cluster_id
                );
            }
            log(started, "coordinator restarted; every master kept its role and term");
        }
        Fault::CoordinatorLeaderThenMaster => {
            let leader = t.leading_coordinator().await.expect("a leading coordinator");
            t.coordinators[leader].process.kill();
            log(started, &format!("leading coordinator {leader} killed (kill -9)"));
            let next = eventually!("another coordinator to lead", Duration::from_secs(15), async {
                t.leading_coordinator().await.filter(|l| *l != leader)
            });
            log(started, &format!("coordinator {next} leads"));
            // The new leader lists a master once that master's heartbeat reaches it.
            let master = eventually!(
                "the master to report to the new leader",
                Duration::from_secs(10),
                async { t.master_server(cluster).await }
            );
            t.server(cluster, master).kill();
            log(
                started,
                &format!("killed tsd {cluster}/{master} (kill -9) under the new leader"),
            );
            wait_new_master(t, cluster, master).await;
            log(started, "slave promoted by the new leader");
            t.coordinators[leader].process.start().expect("restart");
            t.server(cluster, master).start().expect("restart");
            log(started, "the killed coordinator and tsd restarted");
        }
        Fault::BothReplicasKilled => {
            let master = t.master_server(cluster).await.expect("a master");
            let slave = if master == 1 { 2 } else { 1 };
            t.server(cluster, master).kill();
            t.server(cluster, slave).kill();
            let (first, second) = if seed.is_multiple_of(2) {
                (master, slave)
            } else {
                (slave, master)
            };
            log(
                started,
                &format!(
                    "tsd {cluster}/{master} (master) and {cluster}/{slave} killed at once; {cluster}/{first} returns first"
                ),
            );
            tokio::time::sleep(Duration::from_secs(2)).await;
            t.server(cluster, first).start().expect("restart");
            tokio::time::sleep(Duration::from_secs(1)).await;
            t.server(cluster, second).start().expect("restart");
            eventually!("the cluster to have a master", Duration::from_secs(15), async {
                t.master_server(cluster).await
            });
            log(started, "both back; the cluster has a master");
        }
        Fault::PartitionOneWay => {
            let link = if seed.is_multiple_of(2) {
                Link::CutToTarget
            } else {
                Link::CutFromTarget
            };
            Box::pin(inject(
                t,
                Fault::PartitionMasterFromSlave(link),
                cluster,
                seed,
                started,
                disks,
            ))
            .await;
        }
        Fault::PartitionMasterFromSlave(link) => {
            let master = t.master_server(cluster).await.expect("a master");
            let slave = if master == 1 { 2 } else { 1 };
            t.links(cluster, slave).inbound.set(link);
            log(
                started,
                &format!("link tsd {cluster}/{master} -> {cluster}/{slave} set to {link:?} for 6 s"),
            );
            // Past the replica timeout the master drops the slave (the coordinator records
            // it) and writes go on without it.
            eventually!("the slave to leave the in-sync set", Duration::from_secs(10), async {
                t.view(cluster).await.ok()?.in_sync_slaves.is_empty().then_some(())
            });
            log(started, "the coordinator recorded the slave out of sync; writes go on");
            tokio::time::sleep(Duration::from_secs(3)).await;
            t.links(cluster, slave).inbound.set(Link::Open);
            log(started, "partition healed; the slave catches up and rejoins");
            assert_eq!(t.master_server(cluster).await, Some(master), "the master changed");
        }
        Fault::PartitionMasterFromCoordinator => {
            let master = t.master_server(cluster).await.expect("a master");
            t.links(cluster, master).to_coordinator.set(Link::Cut);
            log(started, &format!("tsd {cluster}/{master} cut off from the coordinator"));
            wait_new_master(t, cluster, master).await;
            log(started, "its slave was promoted; healing");
            t.links(cluster, master).to_coordinator.set(Link::Open);
            eventually!("the old master to rejoin as slave", Duration::from_secs(15), async {
                let view = t.view(cluster).await.ok()?;
                view.slaves.iter().any(|s| s.member_id == master).then_some(())
            });
            log(started, "the old master rejoined as slave");
        }
        Fault::WipeReplica => {
            let master = t.master_server(cluster).await.expect("a master");
            let slave = if master == 1 { 2 } else { 1 };
            t.server(cluster, slave).stop(Duration::from_secs(10));
            std::fs::remove_dir_all(t.server_data_dir(cluster, slave)).expect("wipe");
            log(started, &format!("tsd {cluster}/{slave} stopped and its data wiped"));
            tokio::time::sleep(Duration::from_secs(1)).await;
            t.server(cluster, slave).start().expect("restart");
            log(started, "wiped replica restarted empty; it catches up from the master");
            // The master's log no longer starts at 1: only a snapshot brings the replica up.
            let log_path = t.server(cluster, slave).log_path().to_path_buf();
            eventually!(
                "the wiped replica to install a snapshot",
                Duration::from_secs(20),
                async {
                    std::fs::read_to_string(&log_path)
                        .ok()?
                        .contains("installed the master's snapshot")
                        .then_some(())
                }
            );
            log(started, "the wiped replica installed the master's snapshot");
        }
        Fault::WipeSlaveThenKillMaster => {
            // Kafka's KIP-903: an in-sync slave loses its disk and is back before the failure
            // timeout; then the master dies. The empty slave must not take over (it would
            // truncate the master's log when that returns): the cluster waits for its master.
            let master = t.master_server(cluster).await.expect("a master");
            let slave = if master == 1 { 2 } else { 1 };
            // Both go at once, so the master cannot report the slave out of sync; the slave
            // is back, empty, well within the failure timeout.
            t.server(cluster, master).kill();
            t.server(cluster, slave).kill();
            std::fs::remove_dir_all(t.server_data_dir(cluster, slave)).expect("wipe");
            t.server(cluster, slave).start().expect("restart");
            log(
                started,
                &format!(
                    "tsd {cluster}/{master} (master) and {cluster}/{slave} killed, {cluster}/{slave} wiped and restarted empty"
                ),
            );
            tokio::time::sleep(Duration::from_secs(3)).await;
            let view = t.view(cluster).await.unwrap();
            assert!(view.master.is_none(), "the wiped slave was made master: {view:?}");
            t.server(cluster, master).start().expect("restart");
            log(started, "the cluster waited for its master; restarted, it leads again");
            eventually!("the old master to lead", Duration::from_secs(10), async {
                (t.master_server(cluster).await == Some(master)).then_some(())
            });
        }
        Fault::SlowDisk { on_master } => slow_disk(t, cluster, on_master, started).await,
        Fault::DiskFull { on_master } => {
            let master = t.master_server(cluster).await.expect("a master");
            let slave = if master == 1 { 2 } else { 1 };
            let full = if on_master { master } else { slave };
            disks[full as usize - 1].fill();
            log(started, &format!("the disk of tsd {cluster}/{full} is full"));
            // SQLite reuses its write-ahead log's space until a checkpoint needs more, so the
            // first failing write may come some seconds later.
            eventually!("the tsd on the full disk to stop", Duration::from_secs(60), async {
                (!t.server(cluster, full).is_running()).then_some(())
            });
            let told = std::fs::read_to_string(t.server(cluster, full).log_path()).unwrap_or_default();
            assert!(
                told.contains("cannot write"),
                "tsd {cluster}/{full} stopped without saying why"
            );
            log(started, "it gave up its role and stopped");
            if on_master {
                eventually!("the slave to take over", Duration::from_secs(15), async {
                    (t.master_server(cluster).await == Some(slave)).then_some(())
                });
            } else {
                eventually!("the slave to leave the in-sync set", Duration::from_secs(15), async {
                    t.view(cluster).await.ok()?.in_sync_slaves.is_empty().then_some(())
                });
            }
            log(started, "writes go on without it; freeing the disk and restarting it");
            disks[full as usize - 1].free();
            t.server(cluster, full).start().expect("restart");
        }
        Fault::KillMasterSynchronizer => {
            let master = t.master_synchronizer(cluster).await.expect("a master synchronizer");
            t.synchronizer(master).kill();
            log(
                started,
                &format!("killed synchronizer {master} of cluster {cluster} (kill -9)"),
            );
        }
    }
}

async fn planned_switchover(t: &mut Topology, cluster: u32, started: Instant) {
    let before = t.view(cluster).await.expect("a view of the cluster");
    let old = before.master.as_ref().expect("a master").member_id;
    let asked = Instant::now();
    let reply = t
        .switchover(cluster, None)
        .await
        .unwrap_or_else(|status| panic!("switchover refused: {status:?}"));
    let new = reply.master.as_ref().expect("the new master").member_id;
    log(
        started,
        &format!(
            "switchover {old} -> {new} under term {} answered after {:?}",
            reply.term,
            asked.elapsed()
        ),
    );
    assert_ne!(new, old, "another server is master");
    assert!(reply.term > before.term, "under a higher term");
    assert!(t.server(cluster, old).is_running(), "nobody stopped the old master");
    // The old master held the whole log: the new master counts it in sync again soon.
    eventually!("the old master to be in sync again", Duration::from_secs(15), async {
        let view = t.view(cluster).await.ok()?;
        (view.master.as_ref()?.member_id == new && view.in_sync_slaves.contains(&old)).then_some(())
    });
    log(started, "the old master is an in-sync slave");
    // A second switchover hands the cluster back.
    let back = t.switchover(cluster, Some(old)).await.expect("switch back");
    assert_eq!(back.master.map(|m| m.member_id), Some(old));
    log(started, &format!("switched back to {old} under term {}", back.term));
}

async fn graceful_stop(t: &mut Topology, cluster: u32, master: bool, started: Instant) {
    let current = t.master_server(cluster).await.expect("a master");
    let other = if current == 1 { 2 } else { 1 };
    let stopped = if master { current } else { other };
    let asked = Instant::now();
    let exited = t.server(cluster, stopped).stop(Duration::from_secs(15));
    log(
        started,
        &format!(
            "tsd {cluster}/{stopped} (master: {master}) stopped by SIGTERM in {:?}",
            asked.elapsed()
        ),
    );
    assert!(exited, "tsd {cluster}/{stopped} did not stop on SIGTERM within 15 s");
    let told = std::fs::read_to_string(t.server(cluster, stopped).log_path()).unwrap_or_default();
    assert!(
        told.contains("the coordinator let this member go"),
        "tsd {cluster}/{stopped} stopped without leaving its cluster"
    );
    if master {
        assert!(
            told.contains("planned switchover under way"),
            "the master stopped without handing over"
        );
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    t.server(cluster, stopped).start().expect("restart");
    log(started, "restarted; it rejoins as a slave");
}

/// What a rolling update changes: one more flag for each role (the "new template").
fn new_template(name: &str) -> [&'static str; 2] {
    match name {
        n if n.starts_with("tsd") => ["--commit-point-interval", "50ms"],
        n if n.starts_with("sync") => ["--leave-timeout", "4s"],
        _ => ["--switchover-timeout", "6s"],
    }
}

/// The rollout's view of the topology: one "pod" per process, updated once it was restarted
/// with the new template; a tsd is ready while its readiness check says so (in sync).
async fn rollout_view(t: &mut Topology, updated: &std::collections::BTreeSet<String>) -> Vec<rollout::SetState> {
    use rollout::{PodState, SetKind, SetState};
    let mut sets = Vec::new();
    let mut pods = Vec::new();
    for (i, node) in t.coordinators.iter_mut().enumerate() {
        let name = node.process.name.clone();
        pods.push(PodState {
            ordinal: i as u32,
            updated: updated.contains(&name),
            ready: node.process.is_running(),
            terminating: false,
            name,
        });
    }
    sets.push(SetState {
        kind: SetKind::Coordinator,
        desired: pods.len() as u32,
        pods,
    });
    for cluster in 1..=t.options.clusters {
        let mut servers = Vec::new();
        for server in 1..=t.servers_per_cluster() {
            let address = t.server_address(cluster, server);
            let name = t.server(cluster, server).name.clone();
            let ready = readiness(&address).await == Some(SERVING);
            servers.push(PodState {
                ordinal: server - 1,
                updated: updated.contains(&name),
                ready,
                terminating: false,
                name,
            });
        }
        sets.push(SetState {
            kind: SetKind::Tsd { cluster },
            desired: servers.len() as u32,
            pods: servers,
        });
        let mut syncs = Vec::new();
        let ids: Vec<u32> = t
            .synchronizers
            .iter()
            .filter(|(_, m)| m.cluster == cluster)
            .map(|(id, _)| *id)
            .collect();
        for (ordinal, id) in ids.iter().enumerate() {
            let process = t.synchronizer(*id);
            let name = process.name.clone();
            syncs.push(PodState {
                ordinal: ordinal as u32,
                updated: updated.contains(&name),
                ready: process.is_running(),
                terminating: false,
                name,
            });
        }
        sets.push(SetState {
            kind: SetKind::Synchronizer { cluster },
            desired: syncs.len() as u32,
            pods: syncs,
        });
    }
    sets
}

/// The coordinators' view, as the operator reads it. Synchronizer member ids are global;
/// the operator counts them by ordinal within the cluster, which is what this returns.
async fn rollout_roles(t: &Topology) -> Option<std::collections::BTreeMap<u32, rollout::ClusterRoles>> {
    let views = t.views().await.ok()?;
    Some(
        views
            .into_iter()
            .map(|v| {
                let sync_ids: Vec<u32> = t
                    .synchronizers
                    .iter()
                    .filter(|(_, m)| m.cluster == v.cluster_id)
                    .map(|(id, _)| *id)
                    .collect();
                let sync_master = v
                    .sync_master
                    .and_then(|m| sync_ids.iter().position(|id| *id == m.member_id))
                    .map(|ordinal| ordinal as u32 + 1);
                let roles = rollout::ClusterRoles {
                    master: v.master.map(|m| m.member_id),
                    in_sync: v.in_sync_slaves,
                    sync_master,
                };
                (v.cluster_id, roles)
            })
            .collect(),
    )
}

/// A rolling update of every process under load, each step picked by the operator's rules
/// and taken as the operator would: a pod "deleted" is stopped by SIGTERM and started again
/// with the new template (as its StatefulSet would recreate it); a switchover is asked of
/// the coordinators.
async fn rolling_update(t: &mut Topology, started: Instant) {
    let mut updated = std::collections::BTreeSet::new();
    let (mut deleted, mut switchovers) = (0, 0);
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        assert!(
            Instant::now() < deadline,
            "the rolling update did not finish in 180 s ({updated:?} updated)"
        );
        let sets = rollout_view(t, &updated).await;
        let roles = rollout_roles(t).await;
        match rollout::next_step(&sets, roles.as_ref()) {
            rollout::Step::Done => break,
            rollout::Step::Wait { .. } => tokio::time::sleep(Duration::from_millis(100)).await,
            rollout::Step::DeletePod { pod, .. } => {
                let process = t.process_named(&pod).expect("a pod the view named");
                assert!(process.stop(Duration::from_secs(20)), "{pod} did not stop on SIGTERM");
                process.add_args(new_template(&pod));
                process.start().expect("restart with the new template");
                if pod.starts_with("coordinator") {
                    // A coordinator counts as ready once the coordinators answer again.
                    eventually!("the coordinators to answer", Duration::from_secs(20), async {
                        t.views().await.ok().map(|_| ())
                    });
                }
                log(started, &format!("updated {pod}"));
                updated.insert(pod);
                deleted += 1;
            }
            rollout::Step::Switchover { cluster, to } => {
                let reply = t
                    .switchover(cluster, Some(to))
                    .await
                    .expect("the switchover the rules asked for");
                log(
                    started,
                    &format!("cluster {cluster}: switched over to server {to} (term {})", reply.term),
                );
                switchovers += 1;
            }
        }
    }
    let processes = t.coordinators.len() + t.servers.len() + t.synchronizers.len();
    assert_eq!(deleted, processes, "every process was updated once");
    assert_eq!(switchovers, t.options.clusters as usize, "one switchover per cluster");
    log(
        started,
        &format!("rolling update done: {deleted} processes, {switchovers} switchovers"),
    );
}

async fn wait_new_master(t: &Topology, cluster: u32, old: u32) {
    eventually!(
        format!("a new master in cluster {cluster}"),
        Duration::from_secs(10),
        async { t.master_server(cluster).await.filter(|m| *m != old).map(|_| ()) }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn coordinator_restart_while_the_master_is_paused_under_load() {
    scenario("fault-pause-restart", Fault::CoordinatorRestartWhilePaused).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rolling_update_of_every_process_under_load() {
    scenario("fault-rolling-update", Fault::RollingUpdate).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn planned_switchover_under_load() {
    scenario("fault-switchover", Fault::PlannedSwitchover).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn master_stopped_by_sigterm_hands_over_under_load() {
    scenario("fault-sigterm-master", Fault::GracefulStop { master: true }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slave_stopped_by_sigterm_leaves_under_load() {
    scenario("fault-sigterm-slave", Fault::GracefulStop { master: false }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_master_tsd_under_load() {
    scenario("fault-kill-tsd", Fault::KillMasterTsd).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn paused_master_is_fenced_under_load() {
    scenario("fault-pause-tsd", Fault::PauseMasterTsd).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn broker_outage_under_load() {
    scenario("fault-broker", Fault::BrokerOutage).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn coordinator_leader_then_master_killed_under_load() {
    scenario("fault-coordinator-leader", Fault::CoordinatorLeaderThenMaster).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn both_replicas_killed_at_once_under_load() {
    scenario("fault-both-replicas", Fault::BothReplicasKilled).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn master_partitioned_from_its_slave_under_load() {
    scenario("fault-partition-slave", Fault::PartitionMasterFromSlave(Link::Cut)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replication_cut_one_way_under_load() {
    scenario("fault-partition-one-way", Fault::PartitionOneWay).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn master_partitioned_from_the_coordinator_under_load() {
    scenario("fault-partition-coordinator", Fault::PartitionMasterFromCoordinator).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn managed_broker_killed_and_restarted_on_its_data_under_load() {
    scenario("fault-broker-node", Fault::BrokerNodeKilled { quorum: false }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn managed_broker_with_quorum_queues_killed_and_restarted_under_load() {
    scenario("fault-broker-node-quorum", Fault::BrokerNodeKilled { quorum: true }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn broker_memory_alarm_under_load() {
    scenario("fault-broker-alarm", Fault::BrokerMemoryAlarm).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn coordinator_restart_under_load() {
    scenario("fault-coordinator", Fault::CoordinatorRestart).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn wiped_replica_rejoins_under_load() {
    scenario("fault-wipe", Fault::WipeReplica).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn wiped_slave_then_killed_master_loses_nothing() {
    scenario("fault-wipe-kill", Fault::WipeSlaveThenKillMaster).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn full_disk_on_the_master_under_load() {
    scenario("fault-disk-full-master", Fault::DiskFull { on_master: true }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn full_disk_on_the_slave_under_load() {
    scenario("fault-disk-full-slave", Fault::DiskFull { on_master: false }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slow_disk_on_the_master_under_load() {
    scenario("fault-slow-disk-master", Fault::SlowDisk { on_master: true }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slow_disk_on_the_slave_under_load() {
    scenario("fault-slow-disk-slave", Fault::SlowDisk { on_master: false }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_master_synchronizer_under_load() {
    scenario("fault-kill-sync", Fault::KillMasterSynchronizer).await;
}

/// Slows the disk of the master or the slave of `cluster` down, then heals it. A slow slave
/// must leave the in-sync set (writes go on without it) and rejoin once healed; a slow master
/// only writes slowly.
async fn slow_disk(t: &mut Topology, cluster: u32, on_master: bool, started: Instant) {
    let master = t.master_server(cluster).await.expect("a master");
    let slave = if master == 1 { 2 } else { 1 };
    let slow = if on_master { master } else { slave };
    t.slow_disk(cluster, slow, Some(SLOW_FLUSH))
        .expect("slow the disk down");
    let healed_at = Instant::now() + SLOW_FOR;
    log(
        started,
        &format!("every flush of tsd {cluster}/{slow}'s disk takes {SLOW_FLUSH:?} longer"),
    );
    if on_master {
        // The disk is really slow: a write waits for at least one slow flush.
        let mut user = login(t, u64::from(cluster)).await;
        let mut timeline = user.timeline(0).await.expect("a timeline");
        let began = Instant::now();
        timeline.post("written to a slow disk").await.expect("acknowledged");
        let took = began.elapsed();
        assert!(took >= SLOW_FLUSH, "a write took {took:?} on the slow disk");
        log(started, &format!("a write took {took:?}"));
    } else {
        eventually!(
            "the slow slave to leave the in-sync set",
            Duration::from_secs(20),
            async { t.view(cluster).await.ok()?.in_sync_slaves.is_empty().then_some(()) }
        );
        log(started, "the slow slave left the in-sync set; writes go on without it");
    }
    tokio::time::sleep_until(healed_at.into()).await;
    t.slow_disk(cluster, slow, None).expect("heal the disk");
    log(started, "the disk is fast again");
    eventually!("the slave to be in sync again", Duration::from_secs(30), async {
        (t.view(cluster).await.ok()?.in_sync_slaves == [slave]).then_some(())
    });
    assert_eq!(
        t.master_server(cluster).await,
        Some(master),
        "a slow disk is no reason to fail over"
    );
    log(started, "the slave is in sync again");
}

/// Pauses the master of `cluster` (SIGSTOP) until its slave took over (with
/// `restart_coordinator`, the coordinator is also killed and restarted meanwhile), then
/// resumes it: it must answer no write, not even with a refusal.
async fn pause_master(t: &mut Topology, cluster: u32, started: Instant, restart_coordinator: bool) {
    // A session of the cluster's first user, for raw calls to one server or the other.
    let user = u64::from(cluster);
    let token = login(t, user).await.token().to_string();
    let master = t.master_server(cluster).await.expect("a master");
    let address = t.view(cluster).await.unwrap().master.unwrap().address;
    t.server(cluster, master).pause();
    log(started, &format!("paused tsd {cluster}/{master} (SIGSTOP)"));
    if restart_coordinator {
        // A double fault: the coordinator's decisions must come back from its store, and
        // a restarted coordinator must not wait for the paused master forever nor
        // re-adopt it blindly.
        t.coordinators[0].process.kill();
        log(started, "coordinator killed (kill -9) while the master is paused");
        tokio::time::sleep(Duration::from_secs(1)).await;
        t.coordinators[0].process.start().expect("restart");
        log(started, "coordinator restarted");
    }
    wait_new_master(t, cluster, master).await;
    // The coordinator has chosen the slave; it takes over once it hears so (its next
    // heartbeat). Until then the old master may still replicate through it, rightly:
    // the slave stores what it acknowledges. Fencing is about the time after.
    let new_master = authed_client(&t.view(cluster).await.unwrap().master.unwrap().address, &token);
    eventually!("the new master to take over", Duration::from_secs(10), async {
        new_master.clone().list(ListRequest::default()).await.ok().map(|_| ())
    });
    log(started, "slave took over; resuming the old master (SIGCONT)");
    t.server(cluster, master).resume();
    // The deposed master must not answer a write, even before it hears from the
    // coordinator — neither acknowledge it nor refuse it on its possibly stale data
    // (an unknown user; a follow that may already exist): its client gets a
    // retryable error.
    let mut old = authed_client(&address, &token);
    for target in [t.name(user % 3 + 1), "nosuchuser".to_string()] {
        let request = FollowRequest { target };
        match old.follow(request).await {
            Ok(reply) => panic!("the deposed master answered a write: {:?}", reply.into_inner()),
            Err(status) => {
                assert!(tinysns_common::grpc::is_retryable(&status), "not retryable: {status:?}");
                log(
                    started,
                    &format!("deposed master refused the write: {}", status.message()),
                );
            }
        }
    }
}
