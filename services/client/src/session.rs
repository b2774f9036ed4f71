//! The client's link to its server. Finds the master of the user's cluster through the
//! coordinator, registers or logs in once (getting a session token), holds the session
//! present with an Attach stream, and when the server fails over finds the new master and
//! carries on with the same token (sessions are replicated), so commands simply take a
//! little longer.

use std::sync::Arc;
use std::time::{Duration, Instant};
use tinysns_common::auth::{AuthMode, Bearer};
use tinysns_common::backoff::Backoff;
use tinysns_common::coordinators::Coordinators;
use tinysns_common::grpc::{is_retryable, secure_channel};
use tinysns_common::proto::coordinator::coordinator_client::CoordinatorClient;
use tinysns_common::proto::coordinator::{GetServerRequest, ServerInfo};
use tinysns_common::proto::social::social_service_client::SocialServiceClient;
use tinysns_common::proto::social::{
    BlockRequest, ChangePasswordRequest, ConversationReply, ConversationRequest, DeleteAccountRequest, Empty,
    FollowRequest, HistoryReply, HistoryRequest, InboxReply, InboxRequest, LikesReply, LikesRequest, ListRequest,
    LoginReply, LoginRequest, PostRef, PostsReply, PostsRequest, ProfileReply, ProfileRequest, PublishReply,
    PublishRequest, RegisterRequest, Reply, SendMessageRequest, SetProfileRequest, Status as Code, ThreadReply,
    ThreadRequest, TopicRequest, TopicsReply, TopicsRequest, UserRef,
};
use tokio::sync::watch;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, ClientTlsConfig};

/// How long a command keeps retrying through a failover before it reports failure.
pub const RETRY_FOR: Duration = Duration::from_secs(20);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// How long login waits for the Attach stream to be up.
const ATTACH_WAIT: Duration = Duration::from_secs(2);

/// A client of the current master that presents the session token on every call.
pub type Client = SocialServiceClient<InterceptedService<Channel, Bearer>>;

/// Where the coordinators are (`host:port` each; the leading one answers), and the TLS (if
/// any) the coordinators and the servers are reached with.
#[derive(Clone, Debug)]
pub struct Connection {
    pub coordinators: Vec<String>,
    pub tls: Option<ClientTlsConfig>,
}

impl From<&str> for Connection {
    /// `host:port`, or several comma-separated.
    fn from(coordinators: &str) -> Self {
        Self {
            coordinators: coordinators.split(',').map(|a| a.trim().to_string()).collect(),
            tls: None,
        }
    }
}

impl From<&String> for Connection {
    fn from(coordinator: &String) -> Self {
        coordinator.as_str().into()
    }
}

/// Who logs in, and how.
#[derive(Clone, Debug)]
pub enum Credentials {
    /// Open mode: a numeric user id, no password.
    Open(u64),
    /// Password mode.
    Password {
        username: String,
        password: String,
        /// Create the account first.
        register: bool,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("{0}")]
    Unreachable(String),
    #[error("login refused: {message}")]
    Refused { status: Code, message: String },
}

/// All pages of LIST, put together.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Listing {
    pub all_users: Vec<UserRef>,
    pub followers: Vec<UserRef>,
}

impl Listing {
    pub fn user_ids(&self) -> Vec<u64> {
        self.all_users.iter().map(|u| u.id).collect()
    }

    pub fn follower_ids(&self) -> Vec<u64> {
        self.followers.iter().map(|u| u.id).collect()
    }
}

/// The way to the user's current master, shared by every call and stream of one session:
/// cheap to clone, usable from many tasks at once. When the master fails over, the first
/// caller to notice re-resolves through the coordinator; the others wait for its answer.
#[derive(Clone)]
pub struct Link {
    inner: Arc<LinkInner>,
}

struct LinkInner {
    coordinators: Coordinators<CoordinatorClient<Channel>>,
    tls: Option<ClientTlsConfig>,
    user: u64,
    bearer: Bearer,
    current: watch::Sender<Option<Attached>>,
    /// Held while re-resolving, so that a failover costs one lookup, not one per caller.
    attaching: tokio::sync::Mutex<()>,
}

/// The current master: its address and a client for it.
#[derive(Clone)]
struct Attached {
    server: Arc<str>,
    client: Client,
}

impl Link {
    /// A client for the current master, re-resolving until `deadline` if there is none.
    pub async fn client(&self, deadline: Instant) -> Result<Client, tonic::Status> {
        Ok(self.attached(deadline).await?.1)
    }

    /// The current master's address and a client for it, re-resolving until `deadline` if
    /// there is none.
    pub async fn attached(&self, deadline: Instant) -> Result<(Arc<str>, Client), tonic::Status> {
        let current = || self.inner.current.borrow().clone().map(|a| (a.server, a.client));
        if let Some(attached) = current() {
            return Ok(attached);
        }
        let _attaching = self.inner.attaching.lock().await;
        if let Some(attached) = current() {
            return Ok(attached);
        }
        let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_millis(500));
        loop {
            let delay = backoff.next_delay();
            match self.attach().await {
                Ok(attached) => {
                    self.inner.current.send_replace(Some(attached.clone()));
                    return Ok((attached.server, attached.client));
                }
                Err(ConnectError::Unreachable(why)) if Instant::now() + delay < deadline => {
                    tracing::debug!(error = %why, "no server for the user yet, retrying");
                    tokio::time::sleep(delay).await;
                }
                Err(ConnectError::Unreachable(why)) => return Err(tonic::Status::unavailable(why)),
                Err(ConnectError::Refused { message, .. }) => return Err(tonic::Status::permission_denied(message)),
            }
        }
    }

    /// A client for the user's master as the coordinator names it now.
    async fn attach(&self) -> Result<Attached, ConnectError> {
        let server = locate(&self.inner.coordinators, &Credentials::Open(self.inner.user)).await?;
        let channel = secure_channel(&server.address, CONNECT_TIMEOUT, self.inner.tls.as_ref())
            .map_err(|e| ConnectError::Unreachable(e.to_string()))?;
        tracing::debug!(server = %server.address, cluster = server.cluster_id, "attached");
        Ok(Attached {
            server: server.address.into(),
            client: SocialServiceClient::with_interceptor(channel, self.inner.bearer.clone()),
        })
    }

    /// Forgets the current server: the next call re-resolves through the coordinator.
    pub fn reset(&self) {
        self.inner.current.send_replace(None);
    }

    /// The user this link acts for.
    pub fn user(&self) -> u64 {
        self.inner.user
    }

    /// Runs `call` against the master, following failovers for up to [`RETRY_FOR`].
    pub async fn call<T, F, Fut>(&self, mut call: F) -> Result<T, tonic::Status>
    where
        F: FnMut(Client) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let deadline = Instant::now() + RETRY_FOR;
        loop {
            let client = self.client(deadline).await?;
            match call(client).await {
                Ok(reply) => return Ok(reply.into_inner()),
                Err(status) if is_retryable(&status) && Instant::now() < deadline => {
                    tracing::debug!(error = %status.message(), "server unavailable, re-resolving");
                    self.reset();
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(status) => return Err(status),
            }
        }
    }
}

/// One device's login: who the user is, and the [`Link`] its calls go through. While the
/// session lives it holds an Attach stream open on the master, so the user counts as present.
pub struct Session {
    link: Link,
    pub user: u64,
    /// Empty in open mode.
    pub username: String,
    token: String,
    presence: tokio::task::JoinHandle<()>,
}

fn coordinators_of(
    coordinators: &[String],
    tls: Option<&ClientTlsConfig>,
) -> Result<Coordinators<CoordinatorClient<Channel>>, ConnectError> {
    Coordinators::connect(coordinators, |address| {
        secure_channel(address, CONNECT_TIMEOUT, tls).map(CoordinatorClient::new)
    })
    .map_err(|e| ConnectError::Unreachable(e.to_string()))
}

impl Session {
    /// How the user is named in post names: the username, or the id in open mode.
    pub fn me(&self) -> String {
        if self.username.is_empty() {
            self.user.to_string()
        } else {
            self.username.clone()
        }
    }

    /// Connects and logs in (registering first if asked), retrying for up to `patience`
    /// while no server can take the user (a failover in progress); failure here is the
    /// classic "connection failed". A refusal (wrong password, taken name, logged in
    /// elsewhere in open mode) is final at once.
    pub async fn connect(
        connection: impl Into<Connection>,
        credentials: Credentials,
        patience: Duration,
    ) -> Result<Self, ConnectError> {
        let Connection { coordinators, tls } = connection.into();
        let coordinators = coordinators_of(&coordinators, tls.as_ref())?;
        let deadline = Instant::now() + patience;
        let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_millis(500));
        let (reply, client) = loop {
            let delay = backoff.next_delay();
            match log_in_at_master(&coordinators, tls.as_ref(), &credentials).await {
                Err(ConnectError::Unreachable(why)) if Instant::now() + delay < deadline => {
                    tracing::debug!(error = %why, "no server for the user yet, retrying");
                    tokio::time::sleep(delay).await;
                }
                other => break other?,
            }
        };
        let LoginReply {
            user_id,
            username,
            token,
            ..
        } = reply;
        Ok(Self::attached(coordinators, tls, (user_id, username), token, Some(client)).await)
    }

    /// Carries on a session logged in before, by another process (the gateway keeps the
    /// token in the browser's cookie), for `user`; the servers check the token on every call.
    pub async fn resume(connection: impl Into<Connection>, user: u64, token: &str) -> Result<Self, ConnectError> {
        let Connection { coordinators, tls } = connection.into();
        let coordinators = coordinators_of(&coordinators, tls.as_ref())?;
        Ok(Self::attached(coordinators, tls, (user, String::new()), token.to_string(), None).await)
    }

    async fn attached(
        coordinators: Coordinators<CoordinatorClient<Channel>>,
        tls: Option<ClientTlsConfig>,
        (user, username): (u64, String),
        token: String,
        client: Option<Attached>,
    ) -> Self {
        // A token that is not ASCII cannot be sent; the servers refuse the placeholder.
        let bearer = Bearer::new(&token)
            .or_else(|| Bearer::new("invalid"))
            .expect("an ASCII token");
        let (current, watcher) = watch::channel(client);
        let link = Link {
            inner: Arc::new(LinkInner {
                coordinators,
                tls,
                user,
                bearer,
                current,
                attaching: tokio::sync::Mutex::new(()),
            }),
        };
        let (attached_tx, attached) = tokio::sync::oneshot::channel();
        let logged_in = link.inner.current.borrow().is_some();
        let presence = tokio::spawn(hold_presence(link.clone(), watcher, attached_tx));
        // Present by stream before going on, so that a crash from here on frees the user at
        // once (until then only the login's short lease holds it).
        if logged_in {
            let _ = tokio::time::timeout(ATTACH_WAIT, attached).await;
        }
        Self {
            link,
            user,
            username,
            token,
            presence,
        }
    }

    /// The session token (for tools and tests that make raw calls as this user).
    pub fn token(&self) -> &str {
        &self.token
    }

    /// The way to the user's master, for streams and calls made beside the session's own.
    pub fn link(&self) -> &Link {
        &self.link
    }

    /// A client for the current master, re-resolving until `deadline` if there is none.
    pub async fn client(&self, deadline: Instant) -> Result<Client, tonic::Status> {
        self.link.client(deadline).await
    }

    /// Forgets the current server: the next call re-resolves through the coordinator.
    pub fn reset(&self) {
        self.link.reset();
    }

    /// Runs `call` against the master, following failovers for up to [`RETRY_FOR`].
    pub async fn call<T, F, Fut>(&self, call: F) -> Result<T, tonic::Status>
    where
        F: FnMut(Client) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        self.link.call(call).await
    }

    /// FOLLOW (`follow` true) or UNFOLLOW `target`, following failovers.
    pub async fn relation(&self, target: &str, follow: bool) -> Result<Code, tonic::Status> {
        let request = FollowRequest {
            target: target.to_string(),
        };
        let reply = self
            .call(|mut c| {
                let request = request.clone();
                async move {
                    if follow {
                        c.follow(request).await
                    } else {
                        c.un_follow(request).await
                    }
                }
            })
            .await?;
        Ok(Code::try_from(reply.status).unwrap_or(Code::FailureUnknown))
    }

    /// LIST, every page, following failovers; Ok(Err(status)) for a refused LIST.
    pub async fn list(&self) -> Result<Result<Listing, Code>, tonic::Status> {
        let mut listing = Listing::default();
        // Where each list continues; None once it is complete.
        let (mut users_after, mut followers_after) = (Some(0u64), Some(0u64));
        while users_after.is_some() || followers_after.is_some() {
            let request = ListRequest {
                page_size: 0,
                users_after: users_after.unwrap_or(u64::MAX),
                followers_after: followers_after.unwrap_or(u64::MAX),
            };
            let reply = self.call(|mut c| async move { c.list(request).await }).await?;
            let status = Code::try_from(reply.status).unwrap_or(Code::FailureUnknown);
            if status != Code::Success {
                return Ok(Err(status));
            }
            if users_after.is_some() {
                listing.all_users.extend(reply.all_users);
                users_after = Some(reply.next_users_after).filter(|n| *n != 0);
            }
            if followers_after.is_some() {
                listing.followers.extend(reply.followers);
                followers_after = Some(reply.next_followers_after).filter(|n| *n != 0);
            }
        }
        Ok(Ok(listing))
    }

    /// The profile of `target` (the caller's when None), following failovers.
    pub async fn profile(&self, target: Option<&str>) -> Result<ProfileReply, tonic::Status> {
        let request = ProfileRequest {
            user: target.unwrap_or_default().to_string(),
        };
        self.call(|mut c| {
            let request = request.clone();
            async move { c.get_profile(request).await }
        })
        .await
    }

    /// Sets the caller's display name and/or bio (None keeps a field), following failovers.
    pub async fn set_profile(&self, request: SetProfileRequest) -> Result<(Code, String), tonic::Status> {
        let reply = self
            .call(|mut c| {
                let request = request.clone();
                async move { c.set_profile(request).await }
            })
            .await?;
        Ok(outcome(reply))
    }

    /// A page of `user`'s posts (the caller's when empty) with numbers and likes, newest
    /// first, numbered below `before_number` (0: the newest).
    pub async fn posts(&self, request: PostsRequest) -> Result<PostsReply, tonic::Status> {
        self.call(|mut c| {
            let request = request.clone();
            async move { c.posts(request).await }
        })
        .await
    }

    /// Likes (`on`) or stops liking the post named `post` (`alice/17`).
    pub async fn like(&self, post: &str, on: bool) -> Result<(Code, String), tonic::Status> {
        let request = PostRef { post: post.to_string() };
        let reply = self
            .call(|mut c| {
                let request = request.clone();
                async move {
                    if on {
                        c.like(request).await
                    } else {
                        c.unlike(request).await
                    }
                }
            })
            .await?;
        Ok(outcome(reply))
    }

    /// Posts outside a timeline (a reply when `reply_to` names a post); a retry after a
    /// failover re-sends the same post id, so the post is stored once.
    pub async fn publish(
        &mut self,
        text: &str,
        reply_to: &str,
        topics: &[String],
    ) -> Result<PublishReply, tonic::Status> {
        let request = PublishRequest {
            post_id: rand::random::<u64>() >> 1,
            text: text.to_string(),
            reply_to: reply_to.to_string(),
            topics: topics.to_vec(),
        };
        self.call(|mut c| {
            let request = request.clone();
            async move { c.publish(request).await }
        })
        .await
    }

    /// Starts deleting the account, confirmed by its name (its id in open mode).
    pub async fn delete_account(&self, confirm: &str) -> Result<(Code, String), tonic::Status> {
        let request = DeleteAccountRequest {
            confirm: confirm.to_string(),
        };
        let reply = self
            .call(|mut c| {
                let request = request.clone();
                async move { c.delete_account(request).await }
            })
            .await?;
        Ok(outcome(reply))
    }

    /// Subscribes to `topic` (`on`) or stops.
    pub async fn subscribe(&self, topic: &str, on: bool) -> Result<(Code, String), tonic::Status> {
        let request = TopicRequest {
            topic: topic.to_string(),
        };
        let reply = self
            .call(|mut c| {
                let request = request.clone();
                async move {
                    if on {
                        c.subscribe(request).await
                    } else {
                        c.unsubscribe(request).await
                    }
                }
            })
            .await?;
        Ok(outcome(reply))
    }

    pub async fn history(&self, request: HistoryRequest) -> Result<HistoryReply, tonic::Status> {
        self.call(|mut c| {
            let request = request.clone();
            async move { c.history(request).await }
        })
        .await
    }

    pub async fn topics(&self, request: TopicsRequest) -> Result<TopicsReply, tonic::Status> {
        self.call(|mut c| {
            let request = request.clone();
            async move { c.topics(request).await }
        })
        .await
    }

    /// `post` and the page of its replies from `page_token` (empty: the first page).
    pub async fn thread(&self, post: &str, page_token: &str) -> Result<ThreadReply, tonic::Status> {
        let request = ThreadRequest {
            post: post.to_string(),
            page_token: page_token.to_string(),
            limit: 0,
        };
        self.call(|mut c| {
            let request = request.clone();
            async move { c.thread(request).await }
        })
        .await
    }

    /// Deletes one of the caller's posts, in every cluster.
    pub async fn delete_post(&self, post: &str) -> Result<(Code, String), tonic::Status> {
        let request = PostRef { post: post.to_string() };
        let reply = self
            .call(|mut c| {
                let request = request.clone();
                async move { c.delete_post(request).await }
            })
            .await?;
        Ok(outcome(reply))
    }

    /// A direct message to `to`; a retry re-sends the same message id, so it is stored once.
    pub async fn send_message(&self, to: &str, text: &str) -> Result<(Code, String), tonic::Status> {
        let request = SendMessageRequest {
            to: to.to_string(),
            message_id: rand::random::<u64>() >> 1,
            text: text.to_string(),
        };
        let reply = self
            .call(|mut c| {
                let request = request.clone();
                async move { c.send_message(request).await }
            })
            .await?;
        Ok(outcome(reply))
    }

    /// The newest conversations with their unread counts.
    pub async fn inbox(&self) -> Result<InboxReply, tonic::Status> {
        self.call(|mut c| async move { c.inbox(InboxRequest::default()).await })
            .await
    }

    /// The newest messages with `with` (newest first), marking them read if `mark_read`.
    pub async fn conversation(&self, with: &str, mark_read: bool) -> Result<ConversationReply, tonic::Status> {
        let request = ConversationRequest {
            with: with.to_string(),
            before_stamp: 0,
            limit: 0,
            mark_read,
        };
        self.call(|mut c| {
            let request = request.clone();
            async move { c.read_conversation(request).await }
        })
        .await
    }

    /// Blocks (`on`) or stops blocking `user`.
    pub async fn block(&self, user: &str, on: bool) -> Result<(Code, String), tonic::Status> {
        let request = BlockRequest { user: user.to_string() };
        let reply = self
            .call(|mut c| {
                let request = request.clone();
                async move {
                    if on {
                        c.block(request).await
                    } else {
                        c.unblock(request).await
                    }
                }
            })
            .await?;
        Ok(outcome(reply))
    }

    /// Who likes `post` (the first page of up to 1000 likers), and how many do.
    pub async fn likes(&self, post: &str) -> Result<LikesReply, tonic::Status> {
        let request = LikesRequest {
            post: post.to_string(),
            page_size: 0,
            users_after: 0,
        };
        self.call(|mut c| {
            let request = request.clone();
            async move { c.likes(request).await }
        })
        .await
    }

    /// Changes the password (password mode); other sessions of the user end.
    pub async fn change_password(&self, current: &str, new: &str) -> Result<(Code, String), tonic::Status> {
        let request = ChangePasswordRequest {
            current_password: current.to_string(),
            new_password: new.to_string(),
        };
        let reply = self
            .call(|mut c| {
                let request = request.clone();
                async move { c.change_password(request).await }
            })
            .await?;
        Ok(outcome(reply))
    }

    /// Ends the session on the servers (its token stops working everywhere).
    pub async fn logout(self) {
        self.presence.abort();
        // Wait until the presence task is gone, so its stream ends before the Logout.
        let _ = self.presence.await;
        let client = self.link.inner.current.borrow().clone().map(|a| a.client);
        if let Some(mut client) = client {
            let _ = client.logout(Empty {}).await;
        }
    }
}

/// A reply's status and the server's detail.
fn outcome(reply: Reply) -> (Code, String) {
    (
        Code::try_from(reply.status).unwrap_or(Code::FailureUnknown),
        reply.message,
    )
}

/// Register or Login on a server that runs in `mode`.
async fn log_in(
    mut client: SocialServiceClient<Channel>,
    credentials: &Credentials,
    mode: AuthMode,
) -> Result<LoginReply, ConnectError> {
    let unreachable = |s: tonic::Status| ConnectError::Unreachable(s.message().to_string());
    let reply = match (credentials, mode) {
        (Credentials::Open(user), AuthMode::Open) => client.login(LoginRequest {
            user_id: *user,
            ..Default::default()
        }),
        (
            Credentials::Password {
                username,
                password,
                register,
            },
            AuthMode::Password,
        ) => {
            if *register {
                let request = RegisterRequest {
                    username: username.clone(),
                    password: password.clone(),
                };
                let reply = client.register(request).await.map_err(unreachable)?.into_inner();
                return accepted(reply);
            }
            client.login(LoginRequest {
                user_id: 0,
                username: username.clone(),
                password: password.clone(),
            })
        }
        (_, mode) => {
            return Err(ConnectError::Refused {
                status: Code::FailureInvalid,
                message: match mode {
                    AuthMode::Open => "this system runs in open mode: give a numeric user id".into(),
                    AuthMode::Password => "this system uses accounts: give a username and a password".into(),
                },
            });
        }
    }
    .await
    .map_err(unreachable)?
    .into_inner();
    accepted(reply)
}

fn accepted(reply: LoginReply) -> Result<LoginReply, ConnectError> {
    match Code::try_from(reply.status).unwrap_or(Code::FailureUnknown) {
        Code::Success => Ok(reply),
        status => Err(ConnectError::Refused {
            status,
            message: reply.message,
        }),
    }
}

/// Holds an Attach stream open on whichever server is current, so the session counts as
/// present while this process lives (and stops counting the moment it dies).
async fn hold_presence(
    link: Link,
    mut current: watch::Receiver<Option<Attached>>,
    attached: tokio::sync::oneshot::Sender<()>,
) {
    let mut attached = Some(attached);
    loop {
        current.borrow_and_update();
        if let Ok(mut client) = link.client(Instant::now() + RETRY_FOR).await {
            match client.attach(Empty {}).await {
                Ok(reply) => {
                    let mut stream = reply.into_inner();
                    while let Ok(Some(_)) = stream.message().await {
                        if let Some(first) = attached.take() {
                            let _ = first.send(());
                        }
                    }
                }
                Err(status) if is_retryable(&status) => link.reset(),
                // The session has ended (logged out elsewhere, or a password change).
                Err(status) if matches!(status.code(), tonic::Code::Unauthenticated) => return,
                Err(_) => {}
            }
        }
        // The stream ended (failover, or a server restart): wait for the next server, or
        // retry on the same one shortly.
        let _ = tokio::time::timeout(Duration::from_millis(500), current.changed()).await;
    }
}

/// Where the user's server is (found by username when logging in by name), and how the
/// system logs users in.
async fn locate(
    coordinators: &Coordinators<CoordinatorClient<Channel>>,
    credentials: &Credentials,
) -> Result<ServerInfo, ConnectError> {
    let request = match credentials {
        Credentials::Password { username, .. } => GetServerRequest {
            user_id: 0,
            username: username.clone(),
        },
        Credentials::Open(user) => GetServerRequest {
            user_id: *user,
            username: String::new(),
        },
    };
    let info = coordinators
        .call(|mut client| {
            let mut call = tonic::Request::new(request.clone());
            call.set_timeout(Duration::from_secs(2));
            async move { client.get_server(call).await }
        })
        .await;
    info.map(tonic::Response::into_inner).map_err(|s| match s.code() {
        tonic::Code::InvalidArgument => ConnectError::Refused {
            status: Code::FailureInvalidUsername,
            message: s.message().to_string(),
        },
        _ => ConnectError::Unreachable(s.message().to_string()),
    })
}

/// Finds the user's master and logs in (or registers) there.
async fn log_in_at_master(
    coordinators: &Coordinators<CoordinatorClient<Channel>>,
    tls: Option<&ClientTlsConfig>,
    credentials: &Credentials,
) -> Result<(LoginReply, Attached), ConnectError> {
    let server = locate(coordinators, credentials).await?;
    let channel =
        secure_channel(&server.address, CONNECT_TIMEOUT, tls).map_err(|e| ConnectError::Unreachable(e.to_string()))?;
    let mode = AuthMode::from_proto(server.auth).unwrap_or(AuthMode::Password);
    let reply = log_in(SocialServiceClient::new(channel.clone()), credentials, mode).await?;
    let bearer = Bearer::new(&reply.token).ok_or_else(|| ConnectError::Refused {
        status: Code::FailureUnknown,
        message: "the server issued an unusable token".into(),
    })?;
    tracing::debug!(server = %server.address, cluster = server.cluster_id, "logged in");
    let attached = Attached {
        server: server.address.into(),
        client: SocialServiceClient::with_interceptor(channel, bearer),
    };
    Ok((reply, attached))
}
