//! Starting this coordinator's Raft node: its store, its peers, and the first membership.

use super::network::Network;
use super::store::{self, StateMachine};
use super::{NodeId, Raft};
use openraft::BasicNode;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tinysns_common::grpc::MemberCredentials;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot open the coordinator's Raft store: {0}")]
    Store(#[from] rusqlite::Error),
    #[error("invalid Raft timing: {0}")]
    Config(#[from] openraft::ConfigError),
    #[error("Raft did not start: {0}")]
    Raft(String),
}

/// Raft's timing, from the coordinator's flags.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub heartbeat: Duration,
    pub election_timeout: Duration,
}

/// Starts the node `id` of the coordinators `peers` (internal addresses, node id = position),
/// storing in `data_dir` (in memory without one). The first start of each coordinator
/// proposes the same membership: every peer a voter, which openraft allows on every node.
pub async fn start(
    id: NodeId,
    peers: &[String],
    data_dir: Option<&Path>,
    timing: Timing,
    credentials: MemberCredentials,
) -> Result<(Raft, StateMachine), StartError> {
    let millis = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    let config = openraft::Config {
        cluster_name: "tinysns-coordinators".into(),
        heartbeat_interval: millis(timing.heartbeat),
        election_timeout_min: millis(timing.election_timeout),
        election_timeout_max: millis(timing.election_timeout) * 2,
        // The metadata is small: a snapshot every thousand decisions keeps the log short.
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(1000),
        max_in_snapshot_log_to_keep: 100,
        ..Default::default()
    }
    .validate()?;
    let (log, machine) = store::open(data_dir)?;
    let raft = Raft::new(id, Arc::new(config), Network::new(credentials), log, machine.clone())
        .await
        .map_err(|e| StartError::Raft(e.to_string()))?;
    let initialized = raft
        .is_initialized()
        .await
        .map_err(|e| StartError::Raft(e.to_string()))?;
    if !initialized {
        let nodes: BTreeMap<NodeId, BasicNode> = peers
            .iter()
            .enumerate()
            .map(|(i, addr)| (i as NodeId, BasicNode::new(addr)))
            .collect();
        match raft.initialize(nodes).await {
            Ok(()) => tracing::info!(id, peers = ?peers, "formed the coordinators' Raft group"),
            // Another coordinator got there first and already sent us the membership.
            Err(error) => tracing::info!(%error, "Raft group already formed"),
        }
    }
    Ok((raft, machine))
}
