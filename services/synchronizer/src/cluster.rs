//! This cluster's tsd master, found through the coordinators.

use tinysns_common::coordinators::CoordinatorsError;
use tinysns_common::grpc::{InternalChannel, MemberCredentials};
use tinysns_common::masters::Masters;
use tinysns_common::proto::internal::change_feed_client::ChangeFeedClient;

#[derive(Clone)]
pub struct ClusterLink {
    masters: Masters,
    pub cluster: u32,
}

impl ClusterLink {
    pub fn new(coordinators: &[String], secret: MemberCredentials, cluster: u32) -> Result<Self, CoordinatorsError> {
        Ok(Self {
            masters: Masters::new(coordinators, secret)?,
            cluster,
        })
    }

    /// A change-feed client on the cluster's current tsd master (its internal API).
    pub async fn master(&self) -> Result<ChangeFeedClient<InternalChannel>, tonic::Status> {
        let channel = self.masters.channel(self.cluster).await?;
        Ok(ChangeFeedClient::new(channel).max_decoding_message_size(64 * 1024 * 1024))
    }
}
