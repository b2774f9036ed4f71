//! What the operator asks of a SocialCluster's coordinators: who is master where (to order a
//! rollout) and planned switchovers. It calls their internal API like any member does: with
//! the cluster secret, and with the members' TLS certificate when `spec.tls` is set.
//!
//! Behind a trait, so reconcile tests run against a fake.

use std::collections::BTreeMap;
use std::time::Duration;

use tinysns_common::coordinators::Coordinators;
use tinysns_common::grpc::{InternalChannel, MemberCredentials, internal_channel};
use tinysns_common::proto::coordinator::membership_client::MembershipClient;
use tinysns_common::proto::coordinator::{ListClustersRequest, SwitchoverRequest};
use tinysns_common::secret::ClusterSecret;
use tinysns_common::tls::Tls;

use crate::rollout::ClusterRoles;

/// How long the operator waits for a coordinator to connect and to answer a view.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a switchover call may take (the coordinators cancel it after their
/// --switchover-timeout, 5 s by default).
const SWITCHOVER_CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Where a SocialCluster's coordinators answer, and how to prove membership.
#[derive(Clone)]
pub struct Endpoint {
    /// host:port of every coordinator's internal API.
    pub addresses: Vec<String>,
    pub secret: String,
    /// The members' TLS material (certificate, key and CA, PEM), when spec.tls is set.
    pub tls: Option<TlsPem>,
}

#[derive(Clone)]
pub struct TlsPem {
    pub cert: Vec<u8>,
    pub key: Vec<u8>,
    pub ca: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum CoordinatorError {
    #[error("cannot call the coordinators: {0}")]
    Endpoint(String),
    #[error("the coordinators did not answer: {0}")]
    Unavailable(String),
    #[error("the coordinators refused: {0}")]
    Refused(String),
}

impl From<tonic::Status> for CoordinatorError {
    fn from(status: tonic::Status) -> Self {
        let message = status.message().to_owned();
        if tinysns_common::grpc::is_retryable(&status) {
            CoordinatorError::Unavailable(message)
        } else {
            CoordinatorError::Refused(message)
        }
    }
}

#[tonic::async_trait]
pub trait CoordinatorApi: Send + Sync {
    /// Per cluster: master, in-sync slaves and master synchronizer.
    async fn roles(&self, endpoint: &Endpoint) -> Result<BTreeMap<u32, ClusterRoles>, CoordinatorError>;
    /// Hands `cluster` from its master to server `to` (or the best in-sync slave); returns
    /// the new master once it is master.
    async fn switchover(&self, endpoint: &Endpoint, cluster: u32, to: Option<u32>) -> Result<u32, CoordinatorError>;
}

/// The real coordinators, over gRPC.
pub struct Grpc;

fn clients(endpoint: &Endpoint) -> Result<Coordinators<MembershipClient<InternalChannel>>, CoordinatorError> {
    let secret = ClusterSecret::new(&endpoint.secret).map_err(|e| CoordinatorError::Endpoint(e.to_string()))?;
    let tls = endpoint
        .tls
        .as_ref()
        .map(|pem| Tls::from_pem(&pem.cert, &pem.key, &pem.ca).client());
    let credentials = MemberCredentials::new(Some(secret), tls);
    Coordinators::connect(&endpoint.addresses, |address| {
        internal_channel(address, CALL_TIMEOUT, &credentials).map(MembershipClient::new)
    })
    .map_err(|e| CoordinatorError::Endpoint(e.to_string()))
}

#[tonic::async_trait]
impl CoordinatorApi for Grpc {
    async fn roles(&self, endpoint: &Endpoint) -> Result<BTreeMap<u32, ClusterRoles>, CoordinatorError> {
        let reply = clients(endpoint)?
            .call(|mut client| async move {
                let mut call = tonic::Request::new(ListClustersRequest {});
                call.set_timeout(CALL_TIMEOUT);
                client.list_clusters(call).await
            })
            .await?;
        Ok(reply
            .into_inner()
            .views
            .into_iter()
            .map(|view| {
                let roles = ClusterRoles {
                    master: view.master.map(|m| m.member_id),
                    in_sync: view.in_sync_slaves,
                    sync_master: view.sync_master.map(|m| m.member_id),
                };
                (view.cluster_id, roles)
            })
            .collect())
    }

    async fn switchover(&self, endpoint: &Endpoint, cluster: u32, to: Option<u32>) -> Result<u32, CoordinatorError> {
        let request = SwitchoverRequest {
            cluster_id: cluster,
            to_member_id: to.unwrap_or(0),
            timeout_ms: 0,
        };
        let reply = clients(endpoint)?
            .call(|mut client| {
                let mut call = tonic::Request::new(request);
                call.set_timeout(SWITCHOVER_CALL_TIMEOUT);
                async move { client.switchover(call).await }
            })
            .await?;
        reply
            .into_inner()
            .master
            .map(|m| m.member_id)
            .ok_or_else(|| CoordinatorError::Refused("the coordinators named no new master".into()))
    }
}
