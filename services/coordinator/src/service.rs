//! The coordinator's gRPC service and its failure detector.

use crate::config::Config;
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
    auth: AuthMode,
    heartbeat_interval_ms: u32,
    failure_timeout_ms: u32,
}

impl CoordinatorService {
    pub fn new(config: &Config) -> Self {
        let registry = Registry::new(config.clusters, config.failure_timeout, Instant::now());
        Self {
            registry: Arc::new(Mutex::new(registry)),
            auth: config.auth.auth,
            heartbeat_interval_ms: config.heartbeat_interval.as_millis() as u32,
            failure_timeout_ms: config.failure_timeout.as_millis() as u32,
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

    fn with_registry<T>(&self, f: impl FnOnce(&mut Registry) -> T) -> T {
        // A panic while holding the lock cannot leave the registry half-updated in a way
        // worse than the heartbeats repair within one interval, so keep serving.
        let mut guard = self.registry.lock().unwrap_or_else(|p| p.into_inner());
        let out = f(&mut guard);
        log_events(guard.drain_events());
        out
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
                    self.with_registry(|r| {
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
            } => tracing::error!(?kind, cluster, term, "no live member left to be master"),
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
        in_sync_slaves: servers.in_sync,
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
        });
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
            in_sync_slaves: req.in_sync_slaves,
        };
        let (assignment, clusters) = self.with_registry(|r| (r.heartbeat(&report, Instant::now()), r.clusters()));
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
    }

    async fn list_clusters(
        &self,
        _: Request<pb::ListClustersRequest>,
    ) -> Result<Response<pb::ListClustersReply>, Status> {
        Ok(Response::new(self.with_registry(|r| pb::ListClustersReply {
            clusters: r.clusters(),
            views: (1..=r.clusters()).map(|c| view(r, c)).collect(),
        })))
    }
}
