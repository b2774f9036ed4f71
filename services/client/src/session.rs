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
use tinysns_common::proto::social::{Empty, LoginReply, LoginRequest, RegisterRequest, Status as Code, UserRef};
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
        match until_reachable(deadline, || self.attach()).await {
            Ok(attached) => {
                self.inner.current.send_replace(Some(attached.clone()));
                Ok((attached.server, attached.client))
            }
            Err(ConnectError::Unreachable(why)) => Err(tonic::Status::unavailable(why)),
            Err(ConnectError::Refused { message, .. }) => Err(tonic::Status::permission_denied(message)),
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

/// The coordinators (and TLS) every session of one process finds its masters through.
#[derive(Clone)]
pub struct Resolver {
    coordinators: Coordinators<CoordinatorClient<Channel>>,
    tls: Option<ClientTlsConfig>,
}

impl Resolver {
    pub fn new(connection: impl Into<Connection>) -> Result<Self, ConnectError> {
        let Connection { coordinators, tls } = connection.into();
        let coordinators = Coordinators::connect(&coordinators, |address| {
            secure_channel(address, CONNECT_TIMEOUT, tls.as_ref()).map(CoordinatorClient::new)
        })
        .map_err(|e| ConnectError::Unreachable(e.to_string()))?;
        Ok(Self { coordinators, tls })
    }

    /// A link for a session logged in before (the gateway keeps its token in the browser's
    /// cookie) of `user`, which only routes the calls: the servers check the token on each
    /// and act for the token's user. None for a token that cannot be sent.
    pub fn link(&self, user: u64, token: &str) -> Option<Link> {
        Some(self.link_with(user, Bearer::new(token)?, None))
    }

    fn link_with(&self, user: u64, bearer: Bearer, attached: Option<Attached>) -> Link {
        Link {
            inner: Arc::new(LinkInner {
                coordinators: self.coordinators.clone(),
                tls: self.tls.clone(),
                user,
                bearer,
                current: watch::channel(attached).0,
                attaching: tokio::sync::Mutex::new(()),
            }),
        }
    }

    /// Finds the user's master and logs in (or registers) there, retrying for up to
    /// `patience` while no server can take the user. Refusals are final at once.
    pub async fn log_in(
        &self,
        credentials: &Credentials,
        patience: Duration,
    ) -> Result<(LoginReply, Link), ConnectError> {
        let deadline = Instant::now() + patience;
        let (reply, bearer, attached) = until_reachable(deadline, || {
            log_in_at_master(&self.coordinators, self.tls.as_ref(), credentials)
        })
        .await?;
        let link = self.link_with(reply.user_id, bearer, Some(attached));
        Ok((reply, link))
    }
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
        let resolver = Resolver::new(connection)?;
        let (reply, link) = resolver.log_in(&credentials, patience).await?;
        Ok(Self::present(link, reply.username, reply.token).await)
    }

    /// Holds the session present (an Attach stream) while it lives.
    async fn present(link: Link, username: String, token: String) -> Self {
        let (attached_tx, attached) = tokio::sync::oneshot::channel();
        let watcher = link.inner.current.subscribe();
        let presence = tokio::spawn(hold_presence(link.clone(), watcher, attached_tx));
        // Present by stream before going on, so that a crash from here on frees the user at
        // once (until then only the login's short lease holds it).
        let _ = tokio::time::timeout(ATTACH_WAIT, attached).await;
        Self {
            user: link.user(),
            link,
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

    /// Ends the session on the servers (its token stops working everywhere).
    pub async fn logout(mut self) {
        self.presence.abort();
        // Wait until the presence task is gone, so its stream ends before the Logout.
        let _ = (&mut self.presence).await;
        let _ = self.link.end_session().await;
    }
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

impl std::ops::Deref for Session {
    type Target = Link;

    /// A session makes its calls through its link (see `calls`).
    fn deref(&self) -> &Link {
        &self.link
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.presence.abort();
    }
}

/// Runs `attempt` until it reaches a server, retrying with backoff while none can take the
/// user (a failover in progress) until `deadline`; a refusal is final at once.
async fn until_reachable<T, F, Fut>(deadline: Instant, mut attempt: F) -> Result<T, ConnectError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ConnectError>>,
{
    let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_millis(500));
    loop {
        let delay = backoff.next_delay();
        match attempt().await {
            Err(ConnectError::Unreachable(why)) if Instant::now() + delay < deadline => {
                tracing::debug!(error = %why, "no server for the user yet, retrying");
                tokio::time::sleep(delay).await;
            }
            other => return other,
        }
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
) -> Result<(LoginReply, Bearer, Attached), ConnectError> {
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
        client: SocialServiceClient::with_interceptor(channel, bearer.clone()),
    };
    Ok((reply, bearer, attached))
}
