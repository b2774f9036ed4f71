//! Finding this cluster's tsd master through the coordinator's members' API.

use std::time::Duration;
use tinysns_common::grpc::{InternalChannel, MemberCredentials, internal_channel};
use tinysns_common::proto::coordinator::GetClusterRequest;
use tinysns_common::proto::coordinator::membership_client::MembershipClient;
use tinysns_common::proto::internal::change_feed_client::ChangeFeedClient;

#[derive(Clone)]
pub struct ClusterLink {
    coordinator: MembershipClient<InternalChannel>,
    secret: MemberCredentials,
    pub cluster: u32,
}

impl ClusterLink {
    pub fn new(
        coordinator: &str,
        secret: MemberCredentials,
        cluster: u32,
    ) -> Result<Self, tinysns_common::grpc::AddressError> {
        let channel = internal_channel(coordinator, Duration::from_secs(1), &secret)?;
        Ok(Self {
            coordinator: MembershipClient::new(channel),
            secret,
            cluster,
        })
    }

    /// A change-feed client on the cluster's current tsd master (its internal API).
    pub async fn master(&self) -> Result<ChangeFeedClient<InternalChannel>, tonic::Status> {
        let mut call = tonic::Request::new(GetClusterRequest {
            cluster_id: self.cluster,
        });
        call.set_timeout(Duration::from_secs(2));
        let view = self.coordinator.clone().get_cluster(call).await?.into_inner();
        let master = view
            .master
            .ok_or_else(|| tonic::Status::unavailable(format!("cluster {} has no live server", self.cluster)))?;
        let channel = internal_channel(&master.internal_address, Duration::from_secs(1), &self.secret)
            .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
        Ok(ChangeFeedClient::new(channel).max_decoding_message_size(64 * 1024 * 1024))
    }
}
