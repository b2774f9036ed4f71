//! Finding this cluster's tsd master through the coordinator.

use std::time::Duration;
use tinysns_common::proto::coordinator::GetClusterRequest;
use tinysns_common::proto::coordinator::coordinator_client::CoordinatorClient;
use tinysns_common::proto::internal::change_feed_client::ChangeFeedClient;
use tonic::transport::Channel;

#[derive(Clone)]
pub struct ClusterLink {
    coordinator: CoordinatorClient<Channel>,
    pub cluster: u32,
}

impl ClusterLink {
    pub fn new(coordinator: &str, cluster: u32) -> Result<Self, tinysns_common::grpc::AddressError> {
        let channel = tinysns_common::grpc::channel(coordinator, Duration::from_secs(1))?;
        Ok(Self {
            coordinator: CoordinatorClient::new(channel),
            cluster,
        })
    }

    /// A change-feed client on the cluster's current tsd master.
    pub async fn master(&self) -> Result<ChangeFeedClient<Channel>, tonic::Status> {
        let mut call = tonic::Request::new(GetClusterRequest {
            cluster_id: self.cluster,
        });
        call.set_timeout(Duration::from_secs(2));
        let view = self.coordinator.clone().get_cluster(call).await?.into_inner();
        let master = view
            .master
            .ok_or_else(|| tonic::Status::unavailable(format!("cluster {} has no live server", self.cluster)))?;
        let channel = tinysns_common::grpc::channel(&master.address, Duration::from_secs(1))
            .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
        Ok(ChangeFeedClient::new(channel).max_decoding_message_size(64 * 1024 * 1024))
    }
}
