//! Finding this cluster's tsd master through the coordinator's members' API.

use std::time::Duration;
use tinysns_common::coordinators::{Coordinators, CoordinatorsError};
use tinysns_common::grpc::{InternalChannel, MemberCredentials, internal_channel};
use tinysns_common::proto::coordinator::GetClusterRequest;
use tinysns_common::proto::coordinator::membership_client::MembershipClient;
use tinysns_common::proto::internal::change_feed_client::ChangeFeedClient;

#[derive(Clone)]
pub struct ClusterLink {
    coordinators: Coordinators<MembershipClient<InternalChannel>>,
    secret: MemberCredentials,
    pub cluster: u32,
}

impl ClusterLink {
    pub fn new(coordinators: &[String], secret: MemberCredentials, cluster: u32) -> Result<Self, CoordinatorsError> {
        Ok(Self {
            coordinators: Coordinators::connect(coordinators, |address| {
                internal_channel(address, Duration::from_secs(1), &secret).map(MembershipClient::new)
            })?,
            secret,
            cluster,
        })
    }

    /// A change-feed client on the cluster's current tsd master (its internal API).
    pub async fn master(&self) -> Result<ChangeFeedClient<InternalChannel>, tonic::Status> {
        let cluster_id = self.cluster;
        let view = self
            .coordinators
            .call(|mut client| async move {
                let mut call = tonic::Request::new(GetClusterRequest { cluster_id });
                call.set_timeout(Duration::from_secs(2));
                client.get_cluster(call).await
            })
            .await?
            .into_inner();
        let master = view
            .master
            .ok_or_else(|| tonic::Status::unavailable(format!("cluster {} has no live server", self.cluster)))?;
        let channel = internal_channel(&master.internal_address, Duration::from_secs(1), &self.secret)
            .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
        Ok(ChangeFeedClient::new(channel).max_decoding_message_size(64 * 1024 * 1024))
    }
}
