//! Heartbeats to the coordinator and the role they confer, shared by tsd and synchronizer.
//!
//! A master's authority is a lease: it holds only while the last successful heartbeat is
//! recent enough that the coordinator cannot yet have declared it dead and promoted someone
//! else. A master whose lease ran out (paused, partitioned from the coordinator) stops
//! acting as master on its own, before its successor starts.
//!
//! Terms are durable where a [`TermStore`] is given (servers): a higher term is stored before
//! anything acts on it, so a restarted member never reports or accepts an older term than
//! one it already acted on (Raft's rule for `currentTerm`).

use crate::coordinators::Coordinators;
use crate::grpc::MemberCredentials;
use crate::proto::coordinator::{HeartbeatRequest, Member, ReplicaId, Role, membership_client::MembershipClient};
use crate::shutdown::Shutdown;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// The shortest heartbeat period, used while a switchover or a leave is under way.
const BUSY_HEARTBEAT_FLOOR: Duration = Duration::from_millis(10);

/// What the coordinator last told us.
#[derive(Debug, Clone, Default)]
pub struct Assignment {
    pub role: Role,
    pub term: u64,
    /// Ourselves as the coordinator sees us (synchronizers learn their cluster here).
    pub me: Member,
    pub master: Option<Member>,
    pub slaves: Vec<Member>,
    pub clusters: u32,
    pub heartbeat_interval: Duration,
    pub failure_timeout: Duration,
    /// Until when a master may act as master without hearing from the coordinator again.
    pub lease_until: Option<Instant>,
    /// (Masters) the in-sync set the coordinator has recorded for our cluster.
    pub in_sync: Vec<ReplicaId>,
    /// A planned switchover to this replica is under way (we are its master or its target).
    /// A master takes no writes meanwhile.
    pub handover_to: Option<ReplicaId>,
    /// The lowest feature level among the system's live members ([`crate::features`]); 0
    /// until a coordinator has said.
    pub system_feature_level: u32,
}

impl Assignment {
    pub fn registered(&self) -> bool {
        self.lease_until.is_some()
    }
}

/// A snapshot of our role, with the checks that depend on time and on terms seen elsewhere.
#[derive(Debug, Clone)]
pub struct RoleView {
    pub assignment: Assignment,
    pub term: u64,
    master: bool,
    lease: bool,
}

impl RoleView {
    /// Master under the newest term we know of. Enough to serve; to acknowledge a write
    /// alone a master also needs [`RoleView::has_lease`].
    pub fn is_master(&self) -> bool {
        self.master
    }

    /// The coordinator answered recently enough that nobody else can have been made master:
    /// a master may then acknowledge writes even without a slave. Without the lease (the
    /// coordinator is unreachable) it may still acknowledge what a slave of its term has
    /// stored, because a promoted slave refuses the old term.
    pub fn has_lease(&self) -> bool {
        self.lease
    }
}

/// What a member reports about itself in each heartbeat.
#[derive(Debug, Default)]
pub struct Progress {
    /// Last log position durably stored.
    pub applied_lsn: AtomicU64,
    /// (Masters) slaves, each under the incarnation replicated to, that hold the whole log.
    pub in_sync: Mutex<Vec<ReplicaId>>,
    /// Wakes the heartbeat loop when the in-sync set changes, so the coordinator learns at
    /// once which slaves may take over.
    changed: tokio::sync::Notify,
    /// Set when the member can no longer do its job (its writer died, its disk failed): it
    /// stops heartbeating, so the coordinator replaces it.
    failure: Mutex<Option<String>>,
    /// (A master told to hand over) the target holds our whole log and we take no writes.
    ready_to_hand_over: Mutex<Option<ReplicaId>>,
    /// The member is shutting down (`leave`), and whether the coordinator has let it go.
    leaving: std::sync::atomic::AtomicBool,
    left: watch::Sender<bool>,
}

impl Progress {
    pub fn new(applied_lsn: u64) -> Arc<Self> {
        Arc::new(Self {
            applied_lsn: AtomicU64::new(applied_lsn),
            in_sync: Mutex::new(Vec::new()),
            changed: tokio::sync::Notify::new(),
            failure: Mutex::new(None),
            ready_to_hand_over: Mutex::new(None),
            leaving: std::sync::atomic::AtomicBool::new(false),
            left: watch::channel(false).0,
        })
    }

    /// (A master in a planned switchover) `target` holds our whole log, or (`None`) not yet.
    /// Said to the coordinator at once.
    pub fn set_ready_to_hand_over(&self, target: Option<ReplicaId>) {
        let mut current = crate::lock(&self.ready_to_hand_over);
        if *current != target {
            *current = target;
            self.changed.notify_one();
        }
    }

    /// The member is shutting down: tell the coordinator at once (a master hands over
    /// first), and resolve once it has let us go. Heartbeats stop then.
    pub async fn leave(&self) {
        self.leaving.store(true, Ordering::SeqCst);
        self.changed.notify_one();
        let mut left = self.left.subscribe();
        let _ = left.wait_for(|left| *left).await;
    }

    /// The member can no longer serve: stop heartbeating (at once) so it is replaced.
    pub fn fail(&self, why: impl Into<String>) {
        crate::lock(&self.failure).get_or_insert_with(|| why.into());
        self.changed.notify_one();
    }

    pub fn failure(&self) -> Option<String> {
        crate::lock(&self.failure).clone()
    }

    pub fn set_applied(&self, lsn: u64) {
        self.applied_lsn.store(lsn, Ordering::SeqCst);
    }

    pub fn set_in_sync(&self, mut slaves: Vec<ReplicaId>) {
        slaves.sort_unstable_by_key(|r| (r.member_id, r.incarnation));
        let mut current = crate::lock(&self.in_sync);
        if *current != slaves {
            *current = slaves;
            self.changed.notify_one();
        }
    }
}

/// Where a member keeps its current term across restarts.
pub trait TermStore: Send + Sync {
    /// Durably records `term` (a higher term than any recorded before).
    fn store(&self, term: u64) -> Result<(), TermError>;
}

#[derive(Debug, thiserror::Error)]
#[error("cannot store term {term} durably: {why}")]
pub struct TermError {
    pub term: u64,
    pub why: String,
}

/// Shared access to the current role.
#[derive(Clone)]
pub struct RoleHandle {
    rx: watch::Receiver<Assignment>,
    max_term: Arc<AtomicU64>,
    /// Serializes raising the term, so it is stored before anyone can read it.
    terms: Arc<Mutex<Option<Arc<dyn TermStore>>>>,
}

impl RoleHandle {
    pub fn current(&self) -> RoleView {
        let a = self.rx.borrow().clone();
        let newest = self.max_term.load(Ordering::SeqCst);
        let master = a.role == Role::Master && a.term >= newest;
        let lease = master && a.lease_until.is_some_and(|until| Instant::now() < until);
        RoleView {
            term: a.term,
            master,
            lease,
            assignment: a,
        }
    }

    /// Records a term seen in a message from a peer or the coordinator; returns the highest
    /// term known. A master that sees a newer term has been replaced and stops acting as
    /// master at once. With a [`TermStore`] a higher term is stored first; if that fails the
    /// known term stays where it was and the caller must not act on `term`.
    pub fn observe_term(&self, term: u64) -> Result<u64, TermError> {
        let known = self.max_term.load(Ordering::SeqCst);
        if term <= known {
            return Ok(known);
        }
        let store = crate::lock(&self.terms);
        let known = self.max_term.load(Ordering::SeqCst);
        if term <= known {
            return Ok(known);
        }
        if let Some(store) = store.as_ref() {
            store.store(term)?;
        }
        self.max_term.store(term, Ordering::SeqCst);
        Ok(term)
    }

    /// Resolves when the assignment changes (or every heartbeat interval at the latest, so
    /// callers also notice leases running out).
    pub async fn changed(&mut self) {
        let wait = self.rx.borrow().heartbeat_interval.max(Duration::from_millis(50));
        let _ = tokio::time::timeout(wait, self.rx.changed()).await;
    }
}

/// Runs the heartbeat loop; the handle reflects every reply.
pub struct Membership {
    tx: watch::Sender<Assignment>,
    handle: RoleHandle,
}

impl Default for Membership {
    fn default() -> Self {
        Self::new()
    }
}

impl Membership {
    /// Terms held in memory only: for members that hold no data (synchronizers).
    pub fn new() -> Self {
        Self::build(0, None)
    }

    /// Terms kept in `store`, starting from `stored_term`, the term it last recorded.
    pub fn durable(stored_term: u64, store: Arc<dyn TermStore>) -> Self {
        Self::build(stored_term, Some(store))
    }

    fn build(term: u64, store: Option<Arc<dyn TermStore>>) -> Self {
        let (tx, rx) = watch::channel(Assignment::default());
        let handle = RoleHandle {
            rx,
            max_term: Arc::new(AtomicU64::new(term)),
            terms: Arc::new(Mutex::new(store)),
        };
        Self { tx, handle }
    }

    /// Takes `assignment` as if the coordinator had sent it: for tests and tools that run a
    /// member without a coordinator.
    pub fn assume(&self, assignment: Assignment) {
        self.tx.send_replace(assignment);
    }

    pub fn handle(&self) -> RoleHandle {
        self.handle.clone()
    }

    /// Heartbeats `me` to the coordinators' internal API at `coordinators` (the leading one
    /// answers) until shutdown, presenting `secret` and reporting `progress` so the
    /// coordinator promotes only an up-to-date slave.
    pub async fn run(
        self,
        coordinators: Vec<String>,
        secret: MemberCredentials,
        me: Member,
        progress: Arc<Progress>,
        shutdown: Shutdown,
    ) {
        let clients = match Coordinators::connect(&coordinators, |address| {
            crate::grpc::internal_channel(address, Duration::from_secs(1), &secret).map(MembershipClient::new)
        }) {
            Ok(clients) => clients,
            Err(error) => {
                tracing::error!(%error, "cannot heartbeat: bad coordinator address");
                return;
            }
        };
        let coordinator = coordinators.join(",");
        let mut interval = Duration::from_millis(250);
        let mut reachable = true;
        // A switchover or a leave under way: heartbeat often, so it completes quickly.
        let mut busy = false;
        loop {
            if let Some(why) = progress.failure() {
                tracing::error!(%why, "stopping heartbeats so that the coordinator replaces this member");
                self.tx.send_replace(Assignment::default());
                // Keep the role's sender until shutdown: once it is dropped, every wait on a
                // role change returns at once, and the loops that wait on them would spin.
                shutdown.wait().await;
                return;
            }
            let sent = Instant::now();
            let current = self.tx.borrow().clone();
            let request = HeartbeatRequest {
                member: Some(me.clone()),
                believed_role: current.role as i32,
                believed_term: current.term.max(self.handle.max_term.load(Ordering::SeqCst)),
                applied_lsn: progress.applied_lsn.load(Ordering::SeqCst),
                in_sync: crate::lock(&progress.in_sync).clone(),
                ready_to_hand_over: *crate::lock(&progress.ready_to_hand_over),
                leaving: progress.leaving.load(Ordering::SeqCst),
            };
            let timeout = interval * 2;
            let answer = clients
                .call(|mut client| {
                    let mut call = tonic::Request::new(request.clone());
                    call.set_timeout(timeout);
                    async move { client.heartbeat(call).await }
                })
                .await;
            match answer {
                Ok(reply) => {
                    let r = reply.into_inner();
                    if !reachable {
                        tracing::info!(%coordinator, "coordinator reachable again");
                        reachable = true;
                    }
                    interval = Duration::from_millis(u64::from(r.heartbeat_interval_ms.max(10)));
                    let failure_timeout = Duration::from_millis(u64::from(r.failure_timeout_ms));
                    let role = Role::try_from(r.role).unwrap_or(Role::Unspecified);
                    match self.handle.observe_term(r.term) {
                        // Acting on a term we could not store could let it go backwards after
                        // a restart: keep the old assignment and let its lease run out.
                        Err(error) => tracing::error!(%error, "ignoring the coordinator's answer"),
                        Ok(_) => {
                            let next = Assignment {
                                role,
                                term: r.term,
                                me: r.member.unwrap_or_else(|| me.clone()),
                                master: r.master,
                                slaves: r.slaves,
                                clusters: r.clusters,
                                heartbeat_interval: interval,
                                failure_timeout,
                                // The coordinator saw this heartbeat no earlier than we sent it; keep
                                // half an interval of margin for timer slack.
                                lease_until: Some(sent + failure_timeout.saturating_sub(interval / 2)),
                                in_sync: r.in_sync,
                                handover_to: r.handover_to,
                                // 0: the coordinator does not know yet (it has just
                                // started leading): the last level stands.
                                system_feature_level: match r.system_feature_level {
                                    0 => current.system_feature_level,
                                    level => level,
                                },
                            };
                            if next.system_feature_level != current.system_feature_level {
                                tracing::info!(level = next.system_feature_level, "system feature level");
                            }
                            if next.role != current.role || next.term != current.term {
                                tracing::info!(role = ?next.role, term = next.term, cluster = next.me.cluster_id, "role assigned");
                            }
                            if next.handover_to.is_some() && current.handover_to.is_none() {
                                tracing::info!(to = ?next.handover_to, "planned switchover under way");
                            }
                            busy = next.handover_to.is_some() || request.leaving;
                            self.tx.send_replace(next);
                            if request.leaving && r.left {
                                tracing::info!("the coordinator let this member go; heartbeats stop");
                                progress.left.send_replace(true);
                                shutdown.wait().await;
                                return;
                            }
                        }
                    }
                }
                Err(status) => {
                    if reachable {
                        tracing::warn!(%coordinator, error = %status.message(), "heartbeat failed");
                        reachable = false;
                    }
                }
            }
            let next = if busy {
                (interval / 10).max(BUSY_HEARTBEAT_FLOOR)
            } else {
                interval
            };
            tokio::select! {
                _ = tokio::time::sleep_until((sent + next).into()) => {}
                _ = progress.changed.notified() => {}
                _ = shutdown.wait() => return,
            }
        }
    }
}

/// Stops the member the way an orchestrator expects (SIGTERM: Kubernetes deleting the pod,
/// a rolling upgrade, a node drain): it first leaves ([`Progress::leave`]), so a master hands
/// over to an in-sync slave and a slave leaves the in-sync set before it stops answering;
/// then it lingers two heartbeat intervals (its master learns it is gone from its next
/// heartbeat, and is answered meanwhile) and triggers `shutdown`. Without an answer within
/// `timeout`, or on a second signal, it stops at once.
pub async fn leave_on_signal(progress: Arc<Progress>, role: RoleHandle, shutdown: Shutdown, timeout: Duration) {
    tokio::select! {
        _ = crate::shutdown::signal() => {}
        _ = shutdown.wait() => return,
    }
    tracing::info!(?timeout, "leaving the cluster before stopping");
    let left = async {
        if tokio::time::timeout(timeout, progress.leave()).await.is_err() {
            tracing::warn!(
                ?timeout,
                "the coordinator did not let this member go in time; stopping anyway"
            );
            return;
        }
        let linger = role.current().assignment.heartbeat_interval * 2;
        tokio::time::sleep(linger).await;
    };
    tokio::select! {
        _ = left => {}
        _ = crate::shutdown::signal() => tracing::info!("second signal: stopping at once"),
        _ = shutdown.wait() => return,
    }
    shutdown.trigger();
}
