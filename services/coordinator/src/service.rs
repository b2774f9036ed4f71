//! The coordinator's gRPC service and its failure detector.

use crate::metrics::Metrics;
use crate::raft::leadership::{Leadership, NotLeader, Tenure};
use crate::raft::store::StateMachine;
use crate::raft::{Command, Raft};
use crate::registry::{Event, Kind, Registry, RegistryError, Report, Switchover};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tinysns_common::auth::AuthMode;
use tinysns_common::limits::canonical_username;
use tinysns_common::proto::coordinator as pb;
use tinysns_common::proto::coordinator::coordinator_server::{Coordinator, CoordinatorServer};
use tinysns_common::proto::coordinator::membership_server::{Membership, MembershipServer};
use tinysns_common::shutdown::Shutdown;
use tonic::{Request, Response, Status};

/// What the service needs besides Raft.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    pub clusters: u32,
    pub auth: AuthMode,
    pub heartbeat_interval: Duration,
    pub failure_timeout: Duration,
    /// Default time a planned switchover may take before it is cancelled.
    pub switchover_timeout: Duration,
}

/// Longest switchover a caller may ask for.
const MAX_SWITCHOVER_TIMEOUT: Duration = Duration::from_secs(60);
/// How often a switchover under way is looked at for the caller waiting on it.
const SWITCHOVER_POLL: Duration = Duration::from_millis(10);

/// The leader's registry, built for one tenure from the replicated metadata.
struct Decider {
    tenure: Tenure,
    registry: Registry,
}

#[derive(Clone)]
pub struct CoordinatorService {
    decider: Arc<tokio::sync::Mutex<Option<Decider>>>,
    raft: Raft,
    machine: StateMachine,
    leadership: Arc<Leadership>,
    settings: Settings,
    metrics: Arc<Metrics>,
}

fn not_leader(why: NotLeader) -> Status {
    tinysns_common::coordinators::not_leader_status(why.to_string())
}

impl CoordinatorService {
    pub fn new(
        raft: Raft,
        machine: StateMachine,
        leadership: Arc<Leadership>,
        settings: Settings,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            decider: Arc::new(tokio::sync::Mutex::new(None)),
            raft,
            machine,
            leadership,
            settings,
            metrics,
        }
    }

    /// The client API (client port).
    pub fn into_server(self) -> CoordinatorServer<Self> {
        CoordinatorServer::new(self)
    }

    /// The members' API (internal port, behind the cluster secret).
    pub fn into_membership_server(self) -> MembershipServer<Self> {
        MembershipServer::new(self)
    }

    /// Runs `f` on the leader's registry; whatever it decided is committed by a quorum of
    /// coordinators before anyone hears of it. A coordinator that is not the leader (or whose
    /// lease has lapsed) answers nobody: callers try another.
    async fn with_registry<T>(&self, f: impl FnOnce(&mut Registry) -> T) -> Result<T, Status> {
        let mut guard = self.decider.lock().await;
        let tenure = self.leadership.current().map_err(not_leader)?;
        if guard.as_ref().map(|d| d.tenure) != Some(tenure) {
            // A new tenure: continue from what the coordinators agreed on, with a failure
            // timeout of grace for the masters on record (their leases may still run, and
            // nobody's heartbeats were heard while this coordinator did not lead).
            tracing::info!(term = tenure.term, "deciding from the replicated metadata");
            let registry = Registry::restore(
                self.settings.clusters,
                self.settings.failure_timeout,
                Instant::now(),
                self.machine.metadata(),
            )
            .with_switchover_timeout(self.settings.switchover_timeout);
            *guard = Some(Decider { tenure, registry });
        }
        let Some(decider) = guard.as_mut() else {
            return Err(Status::internal("no registry"));
        };
        let out = f(&mut decider.registry);
        let events = decider.registry.drain_events();
        self.metrics.record_events(&events);
        log_events(events);
        self.metrics.observe_alive(
            decider.registry.alive(Kind::Server),
            decider.registry.alive(Kind::Synchronizer),
        );
        self.metrics
            .observe_feature_level(decider.registry.system_feature_level(Instant::now()));
        if let Some(metadata) = decider.registry.take_changed() {
            let part = metadata.changed_since(&self.machine.metadata());
            if !part.is_empty()
                && let Err(error) = self.raft.client_write(Command::Update(part)).await
            {
                // Nothing decided in this registry may stand: the next leader (maybe this
                // coordinator again) continues from what was committed.
                tracing::error!(%error, "cannot commit the coordinator's decision; answering nobody until a leader can");
                *guard = None;
                return Err(Status::unavailable(format!(
                    "coordinator cannot commit its decision: {error}"
                )));
            }
        }
        Ok(out)
    }

    /// Runs the failure detector until shutdown: checks twice per heartbeat interval.
    pub async fn run_failure_detector(self, shutdown: Shutdown) {
        let period = (self.settings.heartbeat_interval / 2).max(Duration::from_millis(10));
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last = Instant::now();
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    let now = Instant::now();
                    // Ticks that came late mean we were not running: forgive that time.
                    let stall = now.duration_since(last).saturating_sub(period * 2);
                    if !stall.is_zero() {
                        tracing::warn!(?stall, "coordinator was not scheduled; not counting that time against members");
                    }
                    last = now;
                    let _ = self.with_registry(|r| {
                        if !stall.is_zero() {
                            r.forgive(stall);
                        }
                        r.expire(now)
                    }).await;
                }
                _ = shutdown.wait() => return,
            }
        }
    }

    fn heartbeat_interval_ms(&self) -> u32 {
        u32::try_from(self.settings.heartbeat_interval.as_millis()).unwrap_or(u32::MAX)
    }

    fn failure_timeout_ms(&self) -> u32 {
        u32::try_from(self.settings.failure_timeout.as_millis()).unwrap_or(u32::MAX)
    }
}

fn log_events(events: Vec<Event>) {
    for event in events {
        match event {
            Event::Joined { kind, cluster, id } => tracing::info!(?kind, cluster, id, "member joined"),
            Event::Died { kind, cluster, id } => {
                tracing::warn!(?kind, cluster, id, "member missed its heartbeats, presumed dead")
            }
            Event::MasterChanged {
                kind,
                cluster,
                id: Some(id),
                term,
            } => tracing::info!(?kind, cluster, master = id, term, "new master"),
            Event::MasterChanged {
                kind,
                cluster,
                id: None,
                term,
            } => tracing::error!(
                ?kind,
                cluster,
                term,
                "no live member may be master; waiting for one that holds every acknowledged write"
            ),
            Event::DataLost {
                cluster,
                id,
                was_master,
            } => tracing::error!(
                cluster,
                id,
                was_master,
                "server came back with a new, empty data directory; it is neither master nor in sync until it has caught up"
            ),
            Event::Left { kind, cluster, id } => tracing::info!(?kind, cluster, id, "member is shutting down; let go"),
            Event::SwitchoverStarted { cluster, from, to } => {
                tracing::info!(cluster, from, to, "planned switchover started")
            }
            Event::SwitchoverCancelled { cluster, to, why } => {
                tracing::warn!(cluster, to, %why, "planned switchover cancelled; the master goes on")
            }
            Event::SwitchoverCompleted { cluster, from, to } => {
                tracing::info!(cluster, from, to, "planned switchover completed")
            }
            Event::FailedOver { kind, cluster, from } => {
                tracing::warn!(?kind, cluster, master = from, "master failed; failing over")
            }
        }
    }
}

fn to_status(error: RegistryError) -> Status {
    match error {
        RegistryError::Unavailable(_) => Status::unavailable(error.to_string()),
        RegistryError::DuplicateMember { .. } => Status::already_exists(error.to_string()),
        RegistryError::NoMaster(_) => Status::unavailable(error.to_string()),
        RegistryError::NotInSync { .. } | RegistryError::NoCandidate(_) | RegistryError::SwitchoverUnderWay { .. } => {
            Status::failed_precondition(error.to_string())
        }
        _ => Status::invalid_argument(error.to_string()),
    }
}

fn view(registry: &Registry, cluster: u32) -> pb::ClusterView {
    let servers = registry.view(Kind::Server, cluster);
    let syncs = registry.view(Kind::Synchronizer, cluster);
    pb::ClusterView {
        cluster_id: cluster,
        term: servers.term,
        master: servers.master,
        slaves: servers.slaves,
        sync_master: syncs.master,
        sync_slaves: syncs.slaves,
        in_sync_slaves: servers.in_sync.iter().map(|r| r.member_id).collect(),
    }
}

#[tonic::async_trait]
impl Coordinator for CoordinatorService {
    async fn get_server(&self, request: Request<pb::GetServerRequest>) -> Result<Response<pb::ServerInfo>, Status> {
        let request = request.into_inner();
        let username = if request.username.is_empty() {
            None
        } else {
            let name = canonical_username(&request.username).map_err(|e| Status::invalid_argument(e.to_string()))?;
            Some(name)
        };
        let (found, clusters) = self
            .with_registry(|r| {
                let found = match &username {
                    Some(name) => r.server_for_username(name),
                    None => r.server_for_user(request.user_id),
                };
                (found, r.clusters())
            })
            .await?;
        let (cluster, master, term) = found.map_err(to_status)?;
        Ok(Response::new(pb::ServerInfo {
            cluster_id: cluster,
            server_id: master.member_id,
            address: master.address,
            term,
            clusters,
            auth: self.settings.auth.to_proto() as i32,
        }))
    }
}

#[tonic::async_trait]
impl Membership for CoordinatorService {
    async fn heartbeat(&self, request: Request<pb::HeartbeatRequest>) -> Result<Response<pb::HeartbeatReply>, Status> {
        self.metrics.heartbeat();
        let req = request.into_inner();
        let member = req
            .member
            .ok_or_else(|| Status::invalid_argument("member is required"))?;
        let believed = pb::Role::try_from(req.believed_role).unwrap_or(pb::Role::Unspecified);
        let report = Report {
            member,
            believed_role: believed,
            believed_term: req.believed_term,
            applied_lsn: req.applied_lsn,
            in_sync: req.in_sync,
            ready_to_hand_over: req.ready_to_hand_over,
            leaving: req.leaving,
        };
        let (assignment, clusters, system_feature_level) = self
            .with_registry(|r| {
                let now = Instant::now();
                (r.heartbeat(&report, now), r.clusters(), r.system_feature_level(now))
            })
            .await?;
        let a = assignment.map_err(to_status)?;
        Ok(Response::new(pb::HeartbeatReply {
            role: a.role as i32,
            term: a.term,
            member: Some(a.member),
            master: a.master,
            slaves: a.slaves,
            clusters,
            heartbeat_interval_ms: self.heartbeat_interval_ms(),
            failure_timeout_ms: self.failure_timeout_ms(),
            in_sync: a.in_sync,
            handover_to: a.handover_to,
            left: a.left,
            system_feature_level,
        }))
    }

    async fn get_cluster(&self, request: Request<pb::GetClusterRequest>) -> Result<Response<pb::ClusterView>, Status> {
        let cluster = request.into_inner().cluster_id;
        self.with_registry(|r| {
            if cluster == 0 || cluster > r.clusters() {
                return Err(Status::invalid_argument(format!("cluster {cluster} does not exist")));
            }
            Ok(Response::new(view(r, cluster)))
        })
        .await?
    }

    async fn switchover(
        &self,
        request: Request<pb::SwitchoverRequest>,
    ) -> Result<Response<pb::SwitchoverReply>, Status> {
        let request = request.into_inner();
        let timeout = match request.timeout_ms {
            0 => self.settings.switchover_timeout,
            ms => Duration::from_millis(u64::from(ms)),
        };
        if timeout > MAX_SWITCHOVER_TIMEOUT {
            return Err(Status::invalid_argument(format!(
                "timeout_ms is at most {}",
                MAX_SWITCHOVER_TIMEOUT.as_millis()
            )));
        }
        let cluster = request.cluster_id;
        let to = (request.to_member_id != 0).then_some(request.to_member_id);
        let target = self
            .with_registry(|r| r.begin_switchover(cluster, to, Instant::now(), timeout))
            .await?
            .map_err(to_status)?;
        // The registry cancels it once its deadline passes; this bound only guards the wait.
        let give_up = Instant::now() + timeout + self.settings.failure_timeout;
        loop {
            let (state, view) = self
                .with_registry(|r| (r.switchover(cluster, target), r.view(Kind::Server, cluster)))
                .await?;
            match state {
                Switchover::Done { term } => {
                    return Ok(Response::new(pb::SwitchoverReply {
                        master: view.master,
                        term,
                    }));
                }
                Switchover::Failed(why) => return Err(Status::aborted(format!("switchover cancelled: {why}"))),
                Switchover::Pending if Instant::now() > give_up => {
                    return Err(Status::deadline_exceeded("switchover still under way"));
                }
                Switchover::Pending => tokio::time::sleep(SWITCHOVER_POLL).await,
            }
        }
    }

    async fn list_clusters(
        &self,
        _: Request<pb::ListClustersRequest>,
    ) -> Result<Response<pb::ListClustersReply>, Status> {
        Ok(Response::new(
            self.with_registry(|r| pb::ListClustersReply {
                clusters: r.clusters(),
                views: (1..=r.clusters()).map(|c| view(r, c)).collect(),
                system_feature_level: r.system_feature_level(Instant::now()),
            })
            .await?,
        ))
    }
}
