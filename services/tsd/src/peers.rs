//! Reads another cluster answers: a topic's history at the topic's home, a user's profile
//! and posts and a post's thread and likes at the author's home (`routing` keeps posts only where they
//! are needed, so only the home has them all). `PeerService` answers them here for other
//! clusters on the internal API (authenticated by the cluster secret, never on the client
//! port); `Peers` asks them of other clusters' masters, found through the coordinators.

use crate::social::Social;
use std::future::Future;
use std::time::Duration;
use tinysns_common::grpc::InternalChannel;
use tinysns_common::masters::Masters;
use tinysns_common::proto::internal::peer_client::PeerClient;
use tinysns_common::proto::internal::peer_server::{Peer, PeerServer};
use tinysns_common::proto::internal::{
    PeerHistoryRequest, PeerLikesRequest, PeerPostsRequest, PeerProfileRequest, PeerRoomRequest, PeerThreadRequest,
    peer_room_request,
};
use tinysns_common::proto::social::{
    HistoryReply, HistoryRequest, LikesReply, LikesRequest, PostsReply, PostsRequest, ProfileReply, RoomReply,
    ThreadReply, ThreadRequest,
};
use tonic::{Code, Request, Response, Status};

/// How long another cluster has to answer a read.
const PEER_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Asks other clusters' masters.
#[derive(Clone)]
pub struct Peers {
    masters: Masters,
}

impl Peers {
    pub fn new(masters: Masters) -> Self {
        Self { masters }
    }

    /// `rpc` with `message` on `cluster`'s master; once more (on the master found then) if
    /// that one could not answer, as after a failover.
    async fn call<M, T, F, Fut>(&self, cluster: u32, message: M, rpc: F) -> Result<T, Status>
    where
        M: Clone,
        F: Fn(PeerClient<InternalChannel>, Request<M>) -> Fut,
        Fut: Future<Output = Result<Response<T>, Status>>,
    {
        let mut last = Status::unavailable(format!("cluster {cluster} did not answer"));
        for _ in 0..2 {
            let client = PeerClient::new(self.masters.channel(cluster).await?);
            let mut request = Request::new(message.clone());
            request.set_timeout(PEER_READ_TIMEOUT);
            match rpc(client, request).await {
                Ok(reply) => return Ok(reply.into_inner()),
                Err(status) if matches!(status.code(), Code::Unavailable | Code::FailedPrecondition) => last = status,
                Err(status) => return Err(status),
            }
        }
        Err(last)
    }

    pub async fn history(&self, cluster: u32, viewer: u64, request: HistoryRequest) -> Result<HistoryReply, Status> {
        let message = PeerHistoryRequest {
            viewer,
            request: Some(request),
        };
        self.call(cluster, message, |mut c, r| async move { c.history(r).await })
            .await
    }

    pub async fn profile(&self, cluster: u32, viewer: u64, user: u64) -> Result<ProfileReply, Status> {
        let message = PeerProfileRequest { viewer, user };
        self.call(cluster, message, |mut c, r| async move { c.profile(r).await })
            .await
    }

    pub async fn posts(
        &self,
        cluster: u32,
        viewer: u64,
        author: u64,
        request: PostsRequest,
    ) -> Result<PostsReply, Status> {
        let message = PeerPostsRequest {
            viewer,
            author,
            request: Some(request),
        };
        self.call(cluster, message, |mut c, r| async move { c.posts(r).await })
            .await
    }

    pub async fn thread(
        &self,
        cluster: u32,
        viewer: u64,
        (author, number): (u64, u64),
        request: ThreadRequest,
    ) -> Result<ThreadReply, Status> {
        let message = PeerThreadRequest {
            viewer,
            author,
            number,
            request: Some(request),
        };
        self.call(cluster, message, |mut c, r| async move { c.thread(r).await })
            .await
    }

    /// A room call of `viewer` (named `viewer_name`) at the room's host. A write retried here
    /// after a failover is decided once: a message by its id, the rest by the room's state.
    pub async fn room(
        &self,
        cluster: u32,
        viewer: u64,
        viewer_name: &str,
        call: peer_room_request::Call,
    ) -> Result<RoomReply, Status> {
        let message = PeerRoomRequest {
            viewer,
            viewer_name: viewer_name.to_owned(),
            call: Some(call),
        };
        self.call(cluster, message, |mut c, r| async move { c.room(r).await })
            .await
    }

    pub async fn likes(
        &self,
        cluster: u32,
        viewer: u64,
        (author, number): (u64, u64),
        request: LikesRequest,
    ) -> Result<LikesReply, Status> {
        let message = PeerLikesRequest {
            viewer,
            author,
            number,
            request: Some(request),
        };
        self.call(cluster, message, |mut c, r| async move { c.likes(r).await })
            .await
    }
}

/// Answers other clusters' reads from this cluster's store.
#[derive(Clone)]
pub struct PeerService {
    pub social: Social,
}

impl PeerService {
    pub fn server(self) -> PeerServer<Self> {
        PeerServer::new(self)
    }
}

/// The asking cluster's user, required.
fn viewer_of(viewer: u64) -> Result<u64, Status> {
    match viewer {
        0 => Err(Status::invalid_argument("a read for no user")),
        viewer => Ok(viewer),
    }
}

/// The asking cluster's user and request, both required.
fn parts<T>(viewer: u64, request: Option<T>) -> Result<(u64, T), Status> {
    let request = request.ok_or_else(|| Status::invalid_argument("a read without its request"))?;
    Ok((viewer_of(viewer)?, request))
}

#[tonic::async_trait]
impl Peer for PeerService {
    async fn history(&self, request: Request<PeerHistoryRequest>) -> Result<Response<HistoryReply>, Status> {
        self.social.fenced()?;
        let PeerHistoryRequest { viewer, request } = request.into_inner();
        let (viewer, request) = parts(viewer, request)?;
        self.social.history_here(viewer, request).await.map(Response::new)
    }

    async fn room(&self, request: Request<PeerRoomRequest>) -> Result<Response<RoomReply>, Status> {
        self.social.fenced()?;
        let PeerRoomRequest {
            viewer,
            viewer_name,
            call,
        } = request.into_inner();
        let (viewer, call) = parts(viewer, call)?;
        tinysns_common::limits::canonical_username(&viewer_name)
            .ok()
            .filter(|canonical| *canonical == viewer_name)
            .or_else(|| viewer_name.is_empty().then(String::new))
            .ok_or_else(|| Status::invalid_argument("a room call naming its user wrongly"))?;
        self.social
            .room_here(viewer, &viewer_name, call)
            .await
            .map(Response::new)
    }

    async fn profile(&self, request: Request<PeerProfileRequest>) -> Result<Response<ProfileReply>, Status> {
        self.social.fenced()?;
        let PeerProfileRequest { viewer, user } = request.into_inner();
        viewer_of(viewer)?;
        self.social.profile_here(user).await.map(Response::new)
    }

    async fn likes(&self, request: Request<PeerLikesRequest>) -> Result<Response<LikesReply>, Status> {
        self.social.fenced()?;
        let PeerLikesRequest {
            viewer,
            author,
            number,
            request,
        } = request.into_inner();
        let (viewer, request) = parts(viewer, request)?;
        self.social
            .likes_here(viewer, (author, number), request, false)
            .await
            .map(Response::new)
    }

    async fn posts(&self, request: Request<PeerPostsRequest>) -> Result<Response<PostsReply>, Status> {
        self.social.fenced()?;
        let PeerPostsRequest {
            viewer,
            author,
            request,
        } = request.into_inner();
        let (viewer, request) = parts(viewer, request)?;
        self.social.posts_here(viewer, author, request).await.map(Response::new)
    }

    async fn thread(&self, request: Request<PeerThreadRequest>) -> Result<Response<ThreadReply>, Status> {
        self.social.fenced()?;
        let PeerThreadRequest {
            viewer,
            author,
            number,
            request,
        } = request.into_inner();
        let (viewer, request) = parts(viewer, request)?;
        self.social
            .thread_here(viewer, (author, number), request)
            .await
            .map(Response::new)
    }
}
