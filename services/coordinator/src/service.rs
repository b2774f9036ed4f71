//! The coordinator's gRPC service and its failure detector.

use crate::config::Config;
use crate::metadata::{StateFile, StateFileError};
use crate::registry::{Event, Kind, Registry, RegistryError, Report};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tinysns_common::auth::AuthMode;
use tinysns_common::limits::canonical_username;
use tinysns_common::proto::coordinator as pb;
use tinysns_common::proto::coordinator::coordinator_server::{Coordinator, CoordinatorServer};
use tinysns_common::proto::coordinator::membership_server::{Membership, MembershipServer};
use tinysns_common::shutdown::Shutdown;
use tonic::{Request, Response, Status};

#[derive(Clone)]
pub struct CoordinatorService {
    registry: Arc<Mutex<Registry>>,
    state: Option<StateFile>,
    auth: AuthMode,
    heartbeat_interval_ms: u32,
    failure_timeout_ms: u32,
}

impl CoordinatorService {
    /// A coordinator that continues from the state stored in `config.data_dir` (or keeps
    /// its state in memory only, without one).
    pub fn new(config: &Config) -> Result<Self, StateFileError> {
        let state = config.data_dir.as_deref().map(StateFile::in_dir);
        let now = Instant::now();
        let registry = match state.as_ref().map(StateFile::load).transpose()?.flatten() {
            Some(metadata) => {
                tracing::info!(path = %state.as_ref().map(|s| s.path().display().to_string()).unwrap_or_default(), "continuing from the stored state");
                Registry::restore(config.clusters, config.failure_timeout, now, metadata)
            }
            None => Registry::new(config.clusters, config.failure_timeout, now),
        };
        if let Some(state) = &state {
            // Fail at start, not at the first election, if the state cannot be written.
            state.save(registry.metadata())?;
        }
        Ok(Self {
            registry: Arc::new(Mutex::new(registry)),
            state,
            auth: config.auth.auth,
            heartbeat_interval_ms: config.heartbeat_interval.as_millis() as u32,
            failure_timeout_ms: config.failure_timeout.as_millis() as u32,
        })
    }

    /// The client API (client port).
    pub fn into_server(self) -> CoordinatorServer<Self> {
        CoordinatorServer::new(self)
    }

    /// The members' API (internal port, behind the cluster secret).
    pub fn into_membership_server(self) -> MembershipServer<Self> {
        MembershipServer::new(self)
    }

    /// Runs `f` on the registry; whatever it decided is stored before anyone hears of it.
    /// While the state cannot be stored nobody gets an answer (members keep their leases
    /// until they run out, and retry).
    fn with_registry<T>(&self, f: impl FnOnce(&mut Registry) -> T) -> Result<T, Status> {
        // A panic while holding the lock cannot leave the registry half-updated in a way
        // worse than the heartbeats repair within one interval, so keep serving.
        let mut guard = tinysns_common::lock(&self.registry);
        let out = f(&mut guard);
        log_events(guard.drain_events());
        let changed = guard.take_changed();
        if let (Some(state), Some(metadata)) = (&self.state, changed)
            && let Err(error) = state.save(metadata)
        {
            tracing::error!(%error, "cannot store the coordinator's state; answering nobody until it can");
            guard.mark_changed();
            return Err(Status::unavailable(format!(
                "coordinator cannot store its state: {error}"
            )));
        }
        Ok(out)
    }

    /// Runs the failure detector until shutdown: checks twice per heartbeat interval.
    pub async fn run_failure_detector(self, shutdown: Shutdown) {
        let period = std::time::Duration::from_millis(u64::from(self.heartbeat_interval_ms / 2).max(10));
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
                    });
                }
                _ = shutdown.wait() => return,
            }
        }
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
        }
    }
}

fn to_status(error: RegistryError) -> Status {
    match error {
        RegistryError::Unavailable(_) => Status::unavailable(error.to_string()),
        RegistryError::DuplicateMember { .. } => Status::already_exists(error.to_string()),
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
        let (found, clusters) = self.with_registry(|r| {
            let found = match &username {
                Some(name) => r.server_for_username(name),
                None => r.server_for_user(request.user_id),
            };
            (found, r.clusters())
        })?;
        let (cluster, master, term) = found.map_err(to_status)?;
        Ok(Response::new(pb::ServerInfo {
            cluster_id: cluster,
            server_id: master.member_id,
            address: master.address,
            term,
            clusters,
            auth: self.auth.to_proto() as i32,
        }))
    }
}

#[tonic::async_trait]
impl Membership for CoordinatorService {
    async fn heartbeat(&self, request: Request<pb::HeartbeatRequest>) -> Result<Response<pb::HeartbeatReply>, Status> {
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
        };
        let (assignment, clusters) = self.with_registry(|r| (r.heartbeat(&report, Instant::now()), r.clusters()))?;
        let a = assignment.map_err(to_status)?;
        Ok(Response::new(pb::HeartbeatReply {
            role: a.role as i32,
            term: a.term,
            member: Some(a.member),
            master: a.master,
            slaves: a.slaves,
            clusters,
            heartbeat_interval_ms: self.heartbeat_interval_ms,
            failure_timeout_ms: self.failure_timeout_ms,
            in_sync: a.in_sync,
        }))
    }

    async fn get_cluster(&self, request: Request<pb::GetClusterRequest>) -> Result<Response<pb::ClusterView>, Status> {
        let cluster = request.into_inner().cluster_id;
        self.with_registry(|r| {
            if cluster == 0 || cluster > r.clusters() {
                return Err(Status::invalid_argument(format!("cluster {cluster} does not exist")));
            }
            Ok(Response::new(view(r, cluster)))
        })?
    }

    async fn list_clusters(
        &self,
        _: Request<pb::ListClustersRequest>,
    ) -> Result<Response<pb::ListClustersReply>, Status> {
        Ok(Response::new(self.with_registry(|r| pb::ListClustersReply {
            clusters: r.clusters(),
            views: (1..=r.clusters()).map(|c| view(r, c)).collect(),
        })?))
    }
}
