//! Raft's messages between coordinators: gRPC on the internal port (behind the cluster
//! secret, with TLS when configured), each message openraft's own JSON.

use super::{NodeId, Raft, TypeConfig};
use openraft::BasicNode;
use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::time::Duration;
use tinysns_common::grpc::{InternalChannel, MemberCredentials, internal_channel};
use tinysns_common::proto::coordinator::RaftMessage;
use tinysns_common::proto::coordinator::consensus_client::ConsensusClient;
use tinysns_common::proto::coordinator::consensus_server::{Consensus, ConsensusServer};
use tonic::{Request, Response, Status};

const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

/// Makes a [`Peer`] for each coordinator Raft talks to.
pub struct Network {
    credentials: MemberCredentials,
}

impl Network {
    pub fn new(credentials: MemberCredentials) -> Self {
        Self { credentials }
    }
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Peer;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Peer {
        let client = internal_channel(&node.addr, CONNECT_TIMEOUT, &self.credentials)
            .map(ConsensusClient::new)
            .map_err(|e| e.to_string());
        Peer { target, client }
    }
}

/// One other coordinator, connected lazily.
pub struct Peer {
    target: NodeId,
    client: Result<ConsensusClient<InternalChannel>, String>,
}

#[derive(Clone, Copy)]
enum Call {
    Append,
    Vote,
    Snapshot,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct TransportError(String);

impl Peer {
    async fn call<Req, Resp, E>(
        &mut self,
        kind: Call,
        request: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let mut client = match &self.client {
            Ok(client) => client.clone(),
            Err(why) => return Err(RPCError::Unreachable(Unreachable::new(&TransportError(why.clone())))),
        };
        let json = serde_json::to_vec(request).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let mut message = Request::new(RaftMessage { json });
        message.set_timeout(option.hard_ttl());
        let reply = match kind {
            Call::Append => client.append_entries(message).await,
            Call::Vote => client.vote(message).await,
            Call::Snapshot => client.install_snapshot(message).await,
        };
        let reply = reply.map_err(|status| match status.code() {
            tonic::Code::Unavailable => RPCError::Unreachable(Unreachable::new(&status)),
            _ => RPCError::Network(NetworkError::new(&status)),
        })?;
        let answer: Result<Resp, RaftError<NodeId, E>> =
            serde_json::from_slice(&reply.into_inner().json).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        answer.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for Peer {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.call(Call::Append, &rpc, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>>
    {
        self.call(Call::Snapshot, &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.call(Call::Vote, &rpc, &option).await
    }
}

/// The receiving side: hands each message to the local Raft.
#[derive(Clone)]
pub struct ConsensusService {
    raft: Raft,
}

impl ConsensusService {
    pub fn new(raft: Raft) -> ConsensusServer<Self> {
        ConsensusServer::new(Self { raft })
    }
}

fn parse<T: DeserializeOwned>(message: Request<RaftMessage>) -> Result<T, Status> {
    serde_json::from_slice(&message.into_inner().json)
        .map_err(|e| Status::invalid_argument(format!("not a Raft message: {e}")))
}

fn reply<T: Serialize>(answer: &T) -> Result<Response<RaftMessage>, Status> {
    let json = serde_json::to_vec(answer).map_err(|e| Status::internal(e.to_string()))?;
    Ok(Response::new(RaftMessage { json }))
}

#[tonic::async_trait]
impl Consensus for ConsensusService {
    async fn append_entries(&self, request: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        let rpc: AppendEntriesRequest<TypeConfig> = parse(request)?;
        reply(&self.raft.append_entries(rpc).await)
    }

    async fn vote(&self, request: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        let rpc: VoteRequest<NodeId> = parse(request)?;
        reply(&self.raft.vote(rpc).await)
    }

    async fn install_snapshot(&self, request: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        let rpc: InstallSnapshotRequest<TypeConfig> = parse(request)?;
        reply(&self.raft.install_snapshot(rpc).await)
    }
}
