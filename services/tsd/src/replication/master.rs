//! The master's replication stage: acknowledges each committed batch once the slaves the
//! in-sync rules require hold it, keeps the in-sync set it proposes to the coordinator, and
//! runs a link task per slave.

use super::in_sync::{self, LinkView, Replica, Round, Verdict};
use super::link::{Goal, Link};
use crate::feed::Feed;
use crate::metrics::{Metrics, SlaveSample};
use crate::reader::Reader;
use crate::writer::{Batch, WriteError};
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tinysns_common::grpc::MemberCredentials;
use tinysns_common::membership::{Progress, RoleHandle};
use tinysns_common::proto::coordinator::{Member, ReplicaId};
use tokio::sync::{Notify, watch};

/// Most committed batches replicated in one round.
const MAX_BATCHES_PER_ROUND: usize = 64;
/// How often an idle master looks at its slaves (a slave that restarted or joined empty is
/// caught up, and joins the in-sync set, even when no client writes).
const CATCH_UP_PERIOD: Duration = Duration::from_millis(100);

/// How a master replicates.
#[derive(Debug, Clone, Copy)]
pub struct ReplicationSettings {
    /// A lagging in-sync slave is dropped after keeping a write waiting this long.
    pub replica_timeout: Duration,
    /// Bytes per second a snapshot is sent at (`None`: as fast as it goes).
    pub snapshot_rate: Option<u64>,
}

pub struct Replicator {
    role: RoleHandle,
    /// A handle of our own to wait on role changes with (it remembers what it has seen).
    role_changes: RoleHandle,
    reader: Reader,
    feed: Feed,
    master_id: u32,
    progress: Arc<Progress>,
    secret: MemberCredentials,
    settings: ReplicationSettings,
    links: HashMap<u32, Link>,
    goal: watch::Sender<Goal>,
    /// Notified by every link when its view moves.
    moved: Arc<Notify>,
    /// The in-sync set we propose to the coordinator.
    proposed: BTreeSet<Replica>,
    metrics: Arc<Metrics>,
}

impl Replicator {
    pub fn new(
        role: RoleHandle,
        reader: Reader,
        feed: Feed,
        master_id: u32,
        progress: Arc<Progress>,
        secret: MemberCredentials,
        settings: ReplicationSettings,
    ) -> Self {
        Self {
            role_changes: role.clone(),
            role,
            reader,
            feed,
            master_id,
            progress,
            secret,
            settings,
            links: HashMap::new(),
            goal: watch::channel(Goal::default()).0,
            moved: Arc::new(Notify::new()),
            proposed: BTreeSet::new(),
            metrics: Arc::default(),
        }
    }

    /// Where to show replication latency and each slave's lag.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    pub async fn run(mut self, mut batches: tokio::sync::mpsc::Receiver<Batch>) {
        // Its own view of role changes: a planned switchover is answered at once, not at the
        // next tick.
        let mut changes = self.role.clone();
        let mut tick = tokio::time::interval(CATCH_UP_PERIOD);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                batch = batches.recv() => match batch {
                    Some(first) => {
                        // Everything the writer committed meanwhile goes out in the same
                        // round: under load, replication keeps up by batching.
                        let mut group = vec![first];
                        while group.len() < MAX_BATCHES_PER_ROUND {
                            match batches.try_recv() {
                                Ok(next) if next.term == group[0].term => group.push(next),
                                Ok(next) => {
                                    self.acknowledge(std::mem::take(&mut group)).await;
                                    group.push(next);
                                }
                                Err(_) => break,
                            }
                        }
                        self.acknowledge(group).await;
                        self.offer_handover();
                    }
                    None => return,
                },
                _ = tick.tick() => self.catch_up().await,
                // Only a planned switchover needs an answer sooner than the next tick.
                _ = changes.changed() => {
                    if self.role.current().assignment.handover_to.is_some() {
                        self.catch_up().await;
                    }
                }
            }
        }
    }

    /// Replicates batches of one term up to the newest, then answers their clients.
    async fn acknowledge(&mut self, group: Vec<Batch>) {
        let Some(term) = group.first().map(|b| b.term) else {
            return;
        };
        // A batch that wrote nothing (only refusals) still waits for what was committed
        // before it: its answers were decided on that state.
        let target = group
            .iter()
            .map(|b| b.last_lsn)
            .max()
            .unwrap_or(0)
            .max(self.feed.committed());
        let started = Instant::now();
        let result = self.replicate(term, target).await;
        match &result {
            Ok(()) => self.metrics.replicated(started),
            Err(why) => tracing::warn!(%why, lsn = target, "writes not acknowledged"),
        }
        for batch in group {
            match &result {
                Ok(()) => {
                    self.feed.publish(&batch.entries);
                    for (reply, outcome) in batch.replies {
                        let _ = reply.send(Ok(outcome));
                    }
                }
                Err(why) => {
                    for (reply, _) in batch.replies {
                        let _ = reply.send(Err(WriteError::NotMaster(why.clone())));
                    }
                }
            }
        }
    }

    /// While idle: keeps every link's goal at our log's end, lets caught-up slaves join the
    /// in-sync set, and makes visible entries we hold but never acknowledged (their batch
    /// failed) once the required slaves have them.
    async fn catch_up(&mut self) {
        let view = self.role.current();
        if !view.is_master() {
            self.step_down();
            return;
        }
        let end = self.progress.applied_lsn.load(Ordering::SeqCst);
        self.refresh_links(&view.assignment.slaves, &view.assignment.in_sync);
        self.set_goal(view.term, end, false);
        self.admit();
        self.show_slaves(end);
        if self.feed.committed() < end && self.replicate(view.term, end).await.is_ok() {
            self.feed.publish_through(end, &self.reader).await;
        }
        self.offer_handover();
    }

    /// In a planned switchover (the writer takes nothing new meanwhile): tells the
    /// coordinator once the target holds our whole log, so it can be promoted.
    fn offer_handover(&self) {
        let view = self.role.current();
        let ready = view.assignment.handover_to.filter(|to| {
            let links: Vec<LinkView> = self.links.values().map(Link::view).collect();
            let end = self.progress.applied_lsn.load(Ordering::SeqCst);
            view.is_master()
                && in_sync::may_hand_over(&links, (to.member_id, to.incarnation), end, self.feed.committed())
        });
        self.progress.set_ready_to_hand_over(ready);
    }

    /// Waits until the slaves the in-sync rules require hold the log up to `target`, as
    /// long as we are master under `term`. Without the lease (coordinator unreachable) only
    /// a required slave of our term storing the entries proves nobody else is master.
    async fn replicate(&mut self, term: u64, target: u64) -> Result<(), String> {
        let started = Instant::now();
        let mut lease_lost_at: Option<Instant> = None;
        let mut probe = None;
        loop {
            let view = self.role.current();
            if !view.is_master() || view.term != term {
                self.step_down();
                return Err(format!("no longer master of term {term}"));
            }
            self.refresh_links(&view.assignment.slaves, &view.assignment.in_sync);
            if !view.has_lease() {
                let since = *lease_lost_at.get_or_insert_with(Instant::now);
                if since.elapsed() > view.assignment.failure_timeout * 2 {
                    return Err("cannot confirm mastership: coordinator unreachable".into());
                }
                // Ask every link for an answer sent after now.
                if probe.is_none() {
                    probe = Some(self.set_goal(term, target, true));
                }
            } else {
                self.set_goal(term, target, false);
            }
            self.admit();
            let recorded: BTreeSet<Replica> = view
                .assignment
                .in_sync
                .iter()
                .map(|r| (r.member_id, r.incarnation))
                .collect();
            let round = Round {
                target,
                probe: if view.has_lease() { None } else { probe },
                started,
            };
            let links: Vec<LinkView> = self.links.values().map(Link::view).collect();
            match in_sync::verdict(
                &links,
                &self.proposed,
                &recorded,
                &round,
                Instant::now(),
                self.settings.replica_timeout,
            ) {
                Verdict::Acknowledge => return Ok(()),
                Verdict::Deposed(newer) => {
                    if let Err(error) = self.role.observe_term(newer) {
                        tracing::error!(%error, "deposed, but the newer term is not stored");
                    }
                    self.step_down();
                    return Err(format!("a slave knows the newer term {newer}"));
                }
                Verdict::Drop(lagging) => {
                    tracing::warn!(?lagging, timeout = ?self.settings.replica_timeout, "slaves too slow to acknowledge; asking the coordinator to drop them from the in-sync set");
                    for replica in lagging {
                        self.proposed.remove(&replica);
                    }
                    self.report();
                }
                Verdict::Wait => {}
            }
            tokio::select! {
                _ = self.moved.notified() => {}
                _ = self.role_changes.changed() => {}
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
        }
    }

    /// Sets every link's goal; with `probe`, also asks each for a fresh answer, returning the
    /// probe's number.
    fn set_goal(&self, term: u64, lsn: u64, probe: bool) -> u64 {
        let master_id = self.master_id;
        let mut number = 0;
        self.goal.send_if_modified(|goal| {
            let next = Goal {
                term,
                master_id,
                lsn: if goal.term == term { goal.lsn.max(lsn) } else { lsn },
                probe: goal.probe + u64::from(probe),
            };
            number = next.probe;
            let changed = next != *goal;
            *goal = next;
            changed
        });
        number
    }

    /// Slaves holding everything acknowledged and everything we asked of them join the
    /// in-sync set: from now on every write waits for them, and then the coordinator hears.
    fn admit(&mut self) {
        let links: Vec<LinkView> = self.links.values().map(Link::view).collect();
        let end = self.feed.committed().max(self.goal.borrow().lsn);
        let joining = in_sync::ready_to_join(&links, &self.proposed, end);
        if !joining.is_empty() {
            tracing::info!(?joining, "slaves caught up; in sync");
            self.proposed.extend(joining);
            self.report();
        }
    }

    fn report(&self) {
        self.progress.set_in_sync(
            self.proposed
                .iter()
                .map(|(member_id, incarnation)| ReplicaId {
                    member_id: *member_id,
                    incarnation: *incarnation,
                })
                .collect(),
        );
    }

    fn step_down(&mut self) {
        self.links.clear();
        self.proposed.clear();
        self.goal.send_replace(Goal::default());
        self.progress.set_in_sync(Vec::new());
        self.show_slaves(0);
    }

    /// Each slave's lag behind `end` (our log's end) and whether it is in sync, for metrics.
    fn show_slaves(&self, end: u64) {
        let slaves: Vec<SlaveSample> = self
            .links
            .values()
            .map(|link| SlaveSample {
                id: link.replica.0,
                matched: link.view().matched,
                in_sync: self.proposed.contains(&link.replica),
            })
            .collect();
        self.metrics.observe_slaves(end, &slaves);
    }

    /// One link per slave in the coordinator's view, under its current incarnation. A link
    /// to a slave the coordinator does not list but still records as in sync stays: a
    /// coordinator that just took over has not heard from every slave yet, and dropping the
    /// slave here would shrink the in-sync set for nothing (the coordinator drops dead
    /// slaves from its record, and then the link goes).
    fn refresh_links(&mut self, slaves: &[Member], recorded: &[ReplicaId]) {
        let before = self.proposed.len();
        self.links
            .retain(|id, link| match slaves.iter().find(|s| s.member_id == *id) {
                Some(s) => s.internal_address == link.address && s.incarnation == link.replica.1,
                None => recorded
                    .iter()
                    .any(|r| r.member_id == *id && r.incarnation == link.replica.1),
            });
        let links = &self.links;
        self.proposed
            .retain(|r| links.get(&r.0).is_some_and(|l| l.replica == *r));
        for slave in slaves {
            if self.links.contains_key(&slave.member_id) {
                continue;
            }
            let link = Link::start(
                slave,
                &self.secret,
                self.goal.subscribe(),
                self.reader.clone(),
                self.feed.clone(),
                self.moved.clone(),
                self.settings.snapshot_rate,
            );
            if let Some(link) = link {
                tracing::info!(slave = slave.member_id, incarnation = slave.incarnation, address = %slave.internal_address, "replicating to slave");
                self.links.insert(slave.member_id, link);
            }
        }
        if self.proposed.len() != before {
            self.report();
        }
    }
}
