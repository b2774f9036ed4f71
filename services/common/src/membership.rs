//! Heartbeats to the coordinator and the role they confer, shared by tsd and synchronizer.
//!
//! A master's authority is a lease: it holds only while the last successful heartbeat is
//! recent enough that the coordinator cannot yet have declared it dead and promoted someone
//! else. A master whose lease ran out (paused, partitioned from the coordinator) stops
//! acting as master on its own, before its successor starts.

use crate::grpc::MemberCredentials;
use crate::proto::coordinator::{HeartbeatRequest, Member, Role, membership_client::MembershipClient};
use crate::shutdown::Shutdown;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;

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
    /// (Masters) slaves that hold the whole log.
    pub in_sync_slaves: Mutex<Vec<u32>>,
    /// Wakes the heartbeat loop when the in-sync set changes, so the coordinator learns at
    /// once which slaves may take over.
    changed: tokio::sync::Notify,
}

impl Progress {
    pub fn new(applied_lsn: u64) -> Arc<Self> {
        Arc::new(Self {
            applied_lsn: AtomicU64::new(applied_lsn),
            in_sync_slaves: Mutex::new(Vec::new()),
            changed: tokio::sync::Notify::new(),
        })
    }

    pub fn set_applied(&self, lsn: u64) {
        self.applied_lsn.store(lsn, Ordering::SeqCst);
    }

    pub fn set_in_sync(&self, mut slaves: Vec<u32>) {
        slaves.sort_unstable();
        let mut current = self.in_sync_slaves.lock().unwrap_or_else(|p| p.into_inner());
        if *current != slaves {
            *current = slaves;
            self.changed.notify_one();
        }
    }
}

/// Shared access to the current role.
#[derive(Clone)]
pub struct RoleHandle {
    rx: watch::Receiver<Assignment>,
    max_term: Arc<AtomicU64>,
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

    /// Records a term seen in a message from a peer; returns the highest term known. A
    /// master that sees a newer term has been replaced and stops acting as master at once.
    pub fn observe_term(&self, term: u64) -> u64 {
        self.max_term.fetch_max(term, Ordering::SeqCst).max(term)
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
    pub fn new() -> Self {
        let (tx, rx) = watch::channel(Assignment::default());
        let handle = RoleHandle {
            rx,
            max_term: Arc::new(AtomicU64::new(0)),
        };
        Self { tx, handle }
    }

    pub fn handle(&self) -> RoleHandle {
        self.handle.clone()
    }

    /// Heartbeats `me` to the coordinator's internal API at `coordinator` until shutdown,
    /// presenting `secret` and reporting `progress` so the coordinator promotes only an
    /// up-to-date slave.
    pub async fn run(
        self,
        coordinator: String,
        secret: MemberCredentials,
        me: Member,
        progress: Arc<Progress>,
        shutdown: Shutdown,
    ) {
        let channel = match crate::grpc::internal_channel(&coordinator, Duration::from_secs(1), &secret) {
            Ok(c) => c,
            Err(error) => {
                tracing::error!(%error, "cannot heartbeat: bad coordinator address");
                return;
            }
        };
        let mut client = MembershipClient::new(channel);
        let mut interval = Duration::from_millis(250);
        let mut reachable = true;
        loop {
            let sent = Instant::now();
            let current = self.tx.borrow().clone();
            let request = HeartbeatRequest {
                member: Some(me.clone()),
                believed_role: current.role as i32,
                believed_term: current.term.max(self.handle.max_term.load(Ordering::SeqCst)),
                applied_lsn: progress.applied_lsn.load(Ordering::SeqCst),
                in_sync_slaves: progress
                    .in_sync_slaves
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone(),
            };
            let mut call = tonic::Request::new(request);
            call.set_timeout(interval * 2);
            match client.heartbeat(call).await {
                Ok(reply) => {
                    let r = reply.into_inner();
                    if !reachable {
                        tracing::info!(%coordinator, "coordinator reachable again");
                        reachable = true;
                    }
                    interval = Duration::from_millis(u64::from(r.heartbeat_interval_ms.max(10)));
                    let failure_timeout = Duration::from_millis(u64::from(r.failure_timeout_ms));
                    let role = Role::try_from(r.role).unwrap_or(Role::Unspecified);
                    self.handle.observe_term(r.term);
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
                    };
                    if next.role != current.role || next.term != current.term {
                        tracing::info!(role = ?next.role, term = next.term, cluster = next.me.cluster_id, "role assigned");
                    }
                    self.tx.send_replace(next);
                }
                Err(status) => {
                    if reachable {
                        tracing::warn!(%coordinator, error = %status.message(), "heartbeat failed");
                        reachable = false;
                    }
                }
            }
            tokio::select! {
                _ = tokio::time::sleep_until((sent + interval).into()) => {}
                _ = progress.changed.notified() => {}
                _ = shutdown.wait() => return,
            }
        }
    }
}
