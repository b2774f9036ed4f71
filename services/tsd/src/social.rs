//! The client API: every call but Register and Login is made by the user its session token
//! names, never by a user a request field names. Account calls live in `login`, the
//! timeline stream in `timeline`, profiles in `profiles`, posts by name (replies, threads, deletion) in `posts`,
//! likes in `likes`, direct messages and blocks in `messages`; this module authenticates and
//! serves LIST and FOLLOW.

use crate::accounts::{FailedLogins, Hasher, token_hash};
use crate::command::{Command, Outcome};
use crate::fanout::Fanout;
use crate::feed::Feed;
use crate::metrics::Metrics;
use crate::peers::Peers;
use crate::presence::Presence;
use crate::reader::Reader;
use crate::store;
use crate::writer::{WriteError, Writer};
use std::sync::Arc;
use std::time::Duration;
use tinysns_common::auth::{AuthMode, presented_token};
use tinysns_common::features::Feature;
use tinysns_common::grpc::not_master;
use tinysns_common::limits::{canonical_username, parse_user_id};
use tinysns_common::membership::{RoleHandle, RoleView};
use tinysns_common::proto::internal::peer_room_request::Call;
use tinysns_common::proto::social::social_service_server::{SocialService, SocialServiceServer};
use tinysns_common::proto::social::{
    BlockRequest, ChangePasswordRequest, ConversationReply, ConversationRequest, DeleteAccountRequest, Empty,
    FollowRequest, HistoryReply, HistoryRequest, InboxReply, InboxRequest, LikesReply, LikesRequest, ListReply,
    ListRequest, LoginReply, LoginRequest, PostRef, PostsReply, PostsRequest, ProfileReply, ProfileRequest,
    PublishReply, PublishRequest, RegisterRequest, Reply, SendMessageRequest, SessionEvent, SetProfileRequest,
    Status as Code, ThreadReply, ThreadRequest, TimelineEvent, TimelineRequest, TopicRequest, TopicsReply,
    TopicsRequest,
};
use tinysns_common::proto::social::{ReadRoomRequest, RoomReply, RoomRequest, RoomsReply, RoomsRequest, SayRequest};
use tinysns_common::topology::cluster_of_user;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

/// Largest message a client may send (a post is at most 4 KiB).
pub const MAX_CLIENT_MESSAGE_BYTES: usize = 64 * 1024;
/// Users per LIST page, at most and by default.
pub const MAX_LIST_PAGE: usize = 1000;

/// Everything the client API needs; cheap to clone into stream tasks.
#[derive(Clone)]
pub struct Social {
    pub cluster: u32,
    pub auth: AuthMode,
    pub writer: Writer,
    pub reader: Reader,
    pub feed: Feed,
    pub fanout: Fanout,
    pub role: RoleHandle,
    pub presence: Arc<Presence>,
    pub hasher: Hasher,
    pub failed_logins: Arc<FailedLogins>,
    pub session_ttl: Duration,
    pub metrics: Arc<Metrics>,
    /// Other clusters, for what only they keep whole.
    pub peers: Peers,
    /// Who is present in the rooms this cluster hosts.
    pub room_presence: Arc<crate::room_presence::RoomPresence>,
}

/// The user a call acts for, established from its token.
#[derive(Debug, Clone)]
pub struct Caller {
    pub user: u64,
    /// Empty in open mode.
    pub username: String,
    pub token_hash: Vec<u8>,
}

/// The reply to a write: success if it was written or already so, else the refusal.
pub fn answer(outcome: Outcome) -> Reply {
    match outcome {
        Outcome::Written(_) | Outcome::Unchanged(_) => reply(Code::Success, ""),
        Outcome::Rejected(status, message) => reply(status, message),
    }
}

pub fn reply(status: Code, message: impl Into<String>) -> Reply {
    Reply {
        status: status as i32,
        message: message.into(),
    }
}

impl Social {
    pub fn server(self) -> SocialServiceServer<Self> {
        SocialServiceServer::new(self).max_decoding_message_size(MAX_CLIENT_MESSAGE_BYTES)
    }

    pub(crate) fn master(&self) -> Result<RoleView, Status> {
        let view = self.role.current();
        if view.is_master() {
            Ok(view)
        } else {
            Err(not_master(format!(
                "cluster {} is served by another server",
                self.cluster
            )))
        }
    }

    /// Master and still holding the coordinator's lease: only then may it serve reads. A
    /// master cut off from the coordinator may have been replaced already, and what it
    /// would show could be stale; its client gets a retryable error and finds the new master.
    pub(crate) fn fenced(&self) -> Result<RoleView, Status> {
        let view = self.master()?;
        if view.has_lease() {
            Ok(view)
        } else {
            Err(not_master(format!(
                "cluster {}: this master cannot confirm it still leads (coordinator unreachable)",
                self.cluster
            )))
        }
    }

    /// How many clusters the system has.
    pub(crate) fn clusters(&self) -> u32 {
        self.role.current().assignment.clusters.max(1)
    }

    /// `user`'s home cluster if it is another one (whose store keeps all of the user's posts),
    /// once posts are kept only where needed (before that, every cluster keeps them all).
    pub(crate) fn home_of(&self, user: u64) -> Option<u32> {
        self.home_elsewhere(cluster_of_user(user, self.clusters()).ok()?)
    }

    /// `home` if it is another cluster and posts are kept only where needed.
    pub(crate) fn home_elsewhere(&self, home: u32) -> Option<u32> {
        let level = self.role.current().assignment.system_feature_level;
        (home != self.cluster && Feature::SelectiveReplication.enabled_at(level)).then_some(home)
    }

    pub(crate) async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&rusqlite::Connection) -> Result<T, store::StoreError> + Send + 'static,
    ) -> Result<T, Status> {
        self.reader.with(f).await.map_err(|e| Status::internal(e.to_string()))
    }

    /// `command`, or its refusal while some member of the system cannot carry `feature`'s
    /// changes yet (a rolling upgrade is under way: `tinysns_common::features`).
    pub(crate) fn gated(&self, feature: Feature, command: Command) -> Command {
        let level = self.role.current().assignment.system_feature_level;
        if feature.enabled_at(level) {
            command
        } else {
            Command::Refuse {
                status: Code::FailureUpgrading,
                message: feature.upgrading_message(level),
            }
        }
    }

    pub(crate) async fn submit(&self, command: Command) -> Result<Outcome, Status> {
        self.writer.submit(command).await.map_err(WriteError::into_status)
    }

    /// The user whose valid session token the call carries.
    pub(crate) async fn authenticate(&self, metadata: &tonic::metadata::MetadataMap) -> Result<Caller, Status> {
        self.master()?;
        let hash = token_hash(presented_token(metadata)?);
        let key = hash.clone();
        let found = self
            .read(move |c| {
                let Some((user, expires_ms)) = store::session(c, &key)? else {
                    return Ok(None);
                };
                Ok(Some((user, expires_ms, store::username_of(c, user)?)))
            })
            .await?;
        let Some((user, expires_ms, username)) = found else {
            return Err(Status::unauthenticated(
                "unknown, revoked or expired session: log in again",
            ));
        };
        if expires_ms <= tinysns_common::now_ms() {
            return Err(Status::unauthenticated("session expired: log in again"));
        }
        Ok(Caller {
            user,
            username: username.unwrap_or_default(),
            token_hash: hash,
        })
    }

    /// The id of the user `target` names (a username in password mode, an id in open mode),
    /// or why it names nobody.
    pub(crate) async fn resolve_target(&self, target: &str) -> Result<Result<u64, (Code, String)>, Status> {
        let invalid = || (Code::FailureInvalidUsername, format!("{target:?} is not a valid user"));
        match self.auth {
            AuthMode::Open => Ok(parse_user_id(target).ok_or_else(invalid)),
            AuthMode::Password => {
                let Ok(name) = canonical_username(target.trim()) else {
                    return Ok(Err(invalid()));
                };
                let lookup = name.clone();
                Ok(match self.read(move |c| store::user_by_name(c, &lookup)).await? {
                    Some(id) => Ok(id),
                    None => Err((Code::FailureNotExists, format!("no user is named {name}"))),
                })
            }
        }
    }

    async fn follow(&self, caller: Caller, request: FollowRequest, on: bool) -> Result<Reply, Status> {
        let command = match self.resolve_target(&request.target).await? {
            Ok(target) => Command::Follow {
                follower: caller.user,
                followee: target,
                on,
            },
            // Still through the writer, so that a deposed master cannot answer it.
            Err((status, message)) => Command::Refuse { status, message },
        };
        Ok(answer(self.submit(command).await?))
    }

    async fn list(&self, caller: Caller, request: ListRequest) -> Result<ListReply, Status> {
        let size = match request.page_size as usize {
            0 => MAX_LIST_PAGE,
            n => n.min(MAX_LIST_PAGE),
        };
        let (users_after, followers_after, user) = (request.users_after, request.followers_after, caller.user);
        let (mut all_users, mut followers) = self
            .read(move |c| {
                Ok((
                    store::users_page(c, users_after, size + 1)?,
                    store::followers_page(c, user, followers_after, size + 1)?,
                ))
            })
            .await?;
        let next = |page: &mut Vec<tinysns_common::proto::social::UserRef>| {
            if page.len() > size {
                page.truncate(size);
                page.last().map_or(0, |u| u.id)
            } else {
                0
            }
        };
        let (next_users_after, next_followers_after) = (next(&mut all_users), next(&mut followers));
        Ok(ListReply {
            status: Code::Success as i32,
            message: String::new(),
            all_users,
            followers,
            next_users_after,
            next_followers_after,
        })
    }
}

impl Social {
    /// A room call that answers with a plain reply.
    async fn room_rpc(
        &self,
        request: Request<RoomRequest>,
        call: fn(RoomRequest) -> Call,
    ) -> Result<Response<Reply>, Status> {
        let caller = self.authenticate(request.metadata()).await?;
        let reply = self.room_call(&caller, call(request.into_inner())).await?;
        Ok(Response::new(Reply {
            status: reply.status,
            message: reply.message,
        }))
    }
}

#[tonic::async_trait]
impl SocialService for Social {
    async fn register(&self, request: Request<RegisterRequest>) -> Result<Response<LoginReply>, Status> {
        self.register_account(request.into_inner()).await.map(Response::new)
    }

    async fn login(&self, request: Request<LoginRequest>) -> Result<Response<LoginReply>, Status> {
        let result = self.log_in(request.into_inner()).await;
        self.metrics.login(crate::login::login_result(&result));
        result.map(Response::new)
    }

    type AttachStream = ReceiverStream<Result<SessionEvent, Status>>;

    async fn attach(&self, request: Request<Empty>) -> Result<Response<Self::AttachStream>, Status> {
        let caller = self.authenticate(request.metadata()).await?;
        self.hold_presence(caller).map(Response::new)
    }

    async fn keep_alive(&self, request: Request<Empty>) -> Result<Response<Reply>, Status> {
        let caller = self.authenticate(request.metadata()).await?;
        Ok(Response::new(self.renew_presence(&caller)))
    }

    async fn logout(&self, request: Request<Empty>) -> Result<Response<Reply>, Status> {
        let caller = self.authenticate(request.metadata()).await?;
        self.log_out(caller).await.map(Response::new)
    }

    async fn change_password(&self, request: Request<ChangePasswordRequest>) -> Result<Response<Reply>, Status> {
        let caller = self.authenticate(request.metadata()).await?;
        self.set_password(caller, request.into_inner()).await.map(Response::new)
    }

    async fn list(&self, request: Request<ListRequest>) -> Result<Response<ListReply>, Status> {
        let caller = self.authenticate(request.metadata()).await?;
        self.fenced()?;
        Social::list(self, caller, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn follow(&self, request: Request<FollowRequest>) -> Result<Response<Reply>, Status> {
        let caller = self.authenticate(request.metadata()).await?;
        Social::follow(self, caller, request.into_inner(), true)
            .await
            .map(Response::new)
    }

    async fn un_follow(&self, request: Request<FollowRequest>) -> Result<Response<Reply>, Status> {
        let caller = self.authenticate(request.metadata()).await?;
        Social::follow(self, caller, request.into_inner(), false)
            .await
            .map(Response::new)
    }

    async fn get_profile(&self, request: Request<ProfileRequest>) -> Result<Response<ProfileReply>, Status> {
        let caller = self.authenticate(request.metadata()).await?;
        self.fenced()?;
        self.get_profile_of(caller, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn set_profile(&self, request: Request<SetProfileRequest>) -> Result<Response<Reply>, Status> {
        let caller = self.authenticate(request.metadata()).await?;
        self.set_own_profile(caller, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn posts(&self, request: Request<PostsRequest>) -> Result<Response<PostsReply>, Status> {
        let caller = self.authenticate(request.metadata()).await?;
        self.fenced()?;
        self.posts_of(caller, request.into_inner()).await.map(Response::new)
    }

    async fn like(&self, request: Request<PostRef>) -> Result<Response<Reply>, Status> {
        let caller = self.authenticate(request.metadata()).await?;
        Social::like(self, caller, request.into_inner(), true)
            .await
            .map(Response::new)
    }

    async fn unlike(&self, request: Request<PostRef>) -> Result<Response<Reply>, Status> {
        let caller = self.authenticate(request.metadata()).await?;
        Social::like(self, caller, request.into_inner(), false)
            .await
            .map(Response::new)
    }

    async fn likes(&self, request: Request<LikesRequest>) -> Result<Response<LikesReply>, Status> {
        let caller = self.authenticate(request.metadata()).await?;
        self.fenced()?;
        self.likes_of(caller, request.into_inner()).await.map(Response::new)
    }

    async fn publish(&self, request: Request<PublishRequest>) -> Result<Response<PublishReply>, Status> {
        let caller = self.authenticate(request.metadata()).await?;
        Social::publish(self, caller, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn thread(&self, request: Request<ThreadRequest>) -> Result<Response<ThreadReply>, Status> {
        let caller = self.authenticate(request.metadata()).await?;
        self.fenced()?;
        Social::thread(self, caller, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn delete_post(&self, request: Request<PostRef>) -> Result<Response<Reply>, Status> {
        let caller = self.authenticate(request.metadata()).await?;
        self.delete_own_post(caller, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn send_message(&self, request: Request<SendMessageRequest>) -> Result<Response<Reply>, Status> {
        let caller = self.authenticate(request.metadata()).await?;
        Social::send_message(self, caller, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn inbox(&self, request: Request<InboxRequest>) -> Result<Response<InboxReply>, Status> {
        let caller = self.authenticate(request.metadata()).await?;
        self.fenced()?;
        self.inbox_of(caller, request.into_inner()).await.map(Response::new)
    }

    async fn read_conversation(
        &self,
        request: Request<ConversationRequest>,
    ) -> Result<Response<ConversationReply>, Status> {
        let caller = self.authenticate(request.metadata()).await?;
        self.fenced()?;
        Social::read_conversation(self, caller, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn block(&self, request: Request<BlockRequest>) -> Result<Response<Reply>, Status> {
        let caller = self.authenticate(request.metadata()).await?;
        self.block_user(caller, request.into_inner(), true)
            .await
            .map(Response::new)
    }

    async fn unblock(&self, request: Request<BlockRequest>) -> Result<Response<Reply>, Status> {
        let caller = self.authenticate(request.metadata()).await?;
        self.block_user(caller, request.into_inner(), false)
            .await
            .map(Response::new)
    }

    async fn delete_account(&self, request: Request<DeleteAccountRequest>) -> Result<Response<Reply>, Status> {
        let caller = self.authenticate(request.metadata()).await?;
        Social::delete_account(self, caller, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn subscribe(&self, request: Request<TopicRequest>) -> Result<Response<Reply>, Status> {
        let caller = self.authenticate(request.metadata()).await?;
        Social::subscribe(self, caller, request.into_inner(), true)
            .await
            .map(Response::new)
    }

    async fn unsubscribe(&self, request: Request<TopicRequest>) -> Result<Response<Reply>, Status> {
        let caller = self.authenticate(request.metadata()).await?;
        Social::subscribe(self, caller, request.into_inner(), false)
            .await
            .map(Response::new)
    }

    async fn history(&self, request: Request<HistoryRequest>) -> Result<Response<HistoryReply>, Status> {
        let caller = self.authenticate(request.metadata()).await?;
        self.fenced()?;
        Social::history(self, caller, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn create_room(&self, request: Request<RoomRequest>) -> Result<Response<Reply>, Status> {
        self.room_rpc(request, Call::Create).await
    }

    async fn join_room(&self, request: Request<RoomRequest>) -> Result<Response<Reply>, Status> {
        self.room_rpc(request, Call::Join).await
    }

    async fn leave_room(&self, request: Request<RoomRequest>) -> Result<Response<Reply>, Status> {
        self.room_rpc(request, Call::Leave).await
    }

    async fn delete_room(&self, request: Request<RoomRequest>) -> Result<Response<Reply>, Status> {
        self.room_rpc(request, Call::Delete).await
    }

    async fn say(&self, request: Request<SayRequest>) -> Result<Response<RoomReply>, Status> {
        let caller = self.authenticate(request.metadata()).await?;
        self.room_call(&caller, Call::Say(request.into_inner()))
            .await
            .map(Response::new)
    }

    async fn read_room(&self, request: Request<ReadRoomRequest>) -> Result<Response<RoomReply>, Status> {
        let caller = self.authenticate(request.metadata()).await?;
        self.room_call(&caller, Call::Read(request.into_inner()))
            .await
            .map(Response::new)
    }

    async fn rooms(&self, request: Request<RoomsRequest>) -> Result<Response<RoomsReply>, Status> {
        let caller = self.authenticate(request.metadata()).await?;
        Social::rooms(self, &caller, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn topics(&self, request: Request<TopicsRequest>) -> Result<Response<TopicsReply>, Status> {
        let caller = self.authenticate(request.metadata()).await?;
        self.fenced()?;
        Social::topics(self, caller, request.into_inner())
            .await
            .map(Response::new)
    }

    type TimelineStream = ReceiverStream<Result<TimelineEvent, Status>>;

    async fn timeline(
        &self,
        request: Request<Streaming<TimelineRequest>>,
    ) -> Result<Response<Self::TimelineStream>, Status> {
        let caller = self.authenticate(request.metadata()).await?;
        let connection = request.remote_addr();
        self.open_timeline(caller, connection, request.into_inner())
            .await
            .map(Response::new)
    }
}
