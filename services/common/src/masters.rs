//! Finding a cluster's tsd master through the coordinators' members' API, for the members
//! that call tsd's internal API: a synchronizer (its own cluster) and tsd (other clusters'
//! reads). Channels are kept per master address, so a call costs one lookup, not a connect.

use crate::coordinators::{Coordinators, CoordinatorsError};
use crate::grpc::{InternalChannel, MemberCredentials, internal_channel};
use crate::proto::coordinator::GetClusterRequest;
use crate::proto::coordinator::membership_client::MembershipClient;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long a coordinator has to say who a cluster's master is.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);
/// How long connecting to a master may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Clone)]
pub struct Masters {
    coordinators: Coordinators<MembershipClient<InternalChannel>>,
    secret: MemberCredentials,
    channels: Arc<Mutex<HashMap<String, InternalChannel>>>,
}

impl Masters {
    pub fn new(coordinators: &[String], secret: MemberCredentials) -> Result<Self, CoordinatorsError> {
        Ok(Self {
            coordinators: Coordinators::connect(coordinators, |address| {
                internal_channel(address, CONNECT_TIMEOUT, &secret).map(MembershipClient::new)
            })?,
            secret,
            channels: Arc::default(),
        })
    }

    /// A channel to `cluster`'s current tsd master's internal API.
    pub async fn channel(&self, cluster: u32) -> Result<InternalChannel, tonic::Status> {
        let view = self
            .coordinators
            .call(|mut client| async move {
                let mut call = tonic::Request::new(GetClusterRequest { cluster_id: cluster });
                call.set_timeout(LOOKUP_TIMEOUT);
                client.get_cluster(call).await
            })
            .await?
            .into_inner();
        let master = view
            .master
            .ok_or_else(|| tonic::Status::unavailable(format!("cluster {cluster} has no live server")))?;
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(channel) = channels.get(&master.internal_address) {
            return Ok(channel.clone());
        }
        let channel = internal_channel(&master.internal_address, CONNECT_TIMEOUT, &self.secret)
            .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
        // Masters come and go over a long life: keep the few current ones.
        if channels.len() >= 64 {
            channels.clear();
        }
        channels.insert(master.internal_address, channel.clone());
        Ok(channel)
    }
}
