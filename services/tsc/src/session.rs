//! The client's link to its server. Finds the master of the user's cluster through the
//! coordinator, logs in, keeps the session alive, and when the server fails over finds the
//! new master and re-attaches the same session, so commands simply take a little longer.

use std::time::{Duration, Instant};
use tinysns_common::grpc::{channel, is_retryable};
use tinysns_common::proto::coordinator::GetServerRequest;
use tinysns_common::proto::coordinator::coordinator_client::CoordinatorClient;
use tinysns_common::proto::social::social_service_client::SocialServiceClient;
use tinysns_common::proto::social::{
    FollowRequest, ListReply, ListRequest, LoginRequest, SessionRequest, Status as Code,
};
use tokio::sync::watch;
use tonic::transport::Channel;

/// How long a command keeps retrying through a failover before it reports failure.
pub const RETRY_FOR: Duration = Duration::from_secs(20);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

pub type Client = SocialServiceClient<Channel>;

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("{0}")]
    Unreachable(String),
    #[error("login refused: {message}")]
    Refused { status: Code, message: String },
}

pub struct Session {
    coordinator: CoordinatorClient<Channel>,
    pub user: u64,
    session_id: String,
    current: watch::Sender<Option<Client>>,
    keepalive: tokio::task::JoinHandle<()>,
}

impl Session {
    /// Connects and logs in, retrying for up to `patience` while no server can take the user
    /// (a failover in progress); failure here is the classic "connection failed". A refusal
    /// (the user is logged in elsewhere, or invalid) is final at once.
    pub async fn connect(coordinator: &str, user: u64, patience: Duration) -> Result<Self, ConnectError> {
        let coordinator =
            channel(coordinator, CONNECT_TIMEOUT).map_err(|e| ConnectError::Unreachable(e.to_string()))?;
        let (current, watcher) = watch::channel(None);
        let mut session = Self {
            coordinator: CoordinatorClient::new(coordinator),
            user,
            session_id: String::new(),
            current,
            keepalive: tokio::spawn(async {}),
        };
        session.attach_until(Instant::now() + patience).await?;
        session.keepalive = tokio::spawn(keep_alive(watcher, user, session.session_id.clone()));
        Ok(session)
    }

    /// Resolves the user's server and logs in (re-attaching our session if we have one).
    async fn attach(&mut self) -> Result<Client, ConnectError> {
        let unreachable = |s: tonic::Status| ConnectError::Unreachable(s.message().to_string());
        let mut call = tonic::Request::new(GetServerRequest { user_id: self.user });
        call.set_timeout(Duration::from_secs(2));
        let server = self
            .coordinator
            .get_server(call)
            .await
            .map_err(unreachable)?
            .into_inner();
        let channel =
            channel(&server.address, CONNECT_TIMEOUT).map_err(|e| ConnectError::Unreachable(e.to_string()))?;
        let mut client = SocialServiceClient::new(channel);
        let reply = client
            .login(LoginRequest {
                user_id: self.user,
                session_id: self.session_id.clone(),
            })
            .await
            .map_err(unreachable)?
            .into_inner();
        let status = Code::try_from(reply.status).unwrap_or(Code::FailureUnknown);
        if status != Code::Success {
            return Err(ConnectError::Refused {
                status,
                message: reply.message,
            });
        }
        tracing::debug!(server = %server.address, cluster = server.cluster_id, "logged in");
        self.session_id = reply.session_id;
        self.current.send_replace(Some(client.clone()));
        Ok(client)
    }

    /// A client for the current master, re-resolving until `deadline` if there is none.
    pub async fn client(&mut self, deadline: Instant) -> Result<Client, tonic::Status> {
        if let Some(client) = self.current.borrow().clone() {
            return Ok(client);
        }
        self.attach_until(deadline).await.map_err(|error| match error {
            ConnectError::Refused { message, .. } => tonic::Status::permission_denied(message),
            ConnectError::Unreachable(why) => tonic::Status::unavailable(why),
        })
    }

    /// [`Self::attach`], retried with backoff until `deadline` while no server can take us.
    async fn attach_until(&mut self, deadline: Instant) -> Result<Client, ConnectError> {
        let mut backoff = Duration::from_millis(50);
        loop {
            match self.attach().await {
                Err(ConnectError::Unreachable(why)) if Instant::now() + backoff < deadline => {
                    tracing::debug!(error = %why, "no server for the user yet, retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_millis(500));
                }
                other => return other,
            }
        }
    }

    /// Forgets the current server: the next call re-resolves through the coordinator.
    pub fn reset(&mut self) {
        self.current.send_replace(None);
    }

    /// Runs `call` against the master, following failovers for up to [`RETRY_FOR`].
    pub async fn call<T, F, Fut>(&mut self, mut call: F) -> Result<T, tonic::Status>
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

    /// FOLLOW (`follow` true) or UNFOLLOW `target`, following failovers.
    pub async fn relation(&mut self, target: &str, follow: bool) -> Result<Code, tonic::Status> {
        let request = FollowRequest {
            user_id: self.user,
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

    /// LIST, following failovers.
    pub async fn list(&mut self) -> Result<ListReply, tonic::Status> {
        let user_id = self.user;
        self.call(|mut c| async move { c.list(ListRequest { user_id }).await })
            .await
    }

    pub async fn logout(self) {
        self.keepalive.abort();
        // Wait until the renewal task is gone, so no KeepAlive of ours is sent after Logout.
        let _ = self.keepalive.await;
        let client = self.current.borrow().clone();
        if let Some(mut client) = client {
            let _ = client
                .logout(SessionRequest {
                    user_id: self.user,
                    session_id: self.session_id.clone(),
                })
                .await;
        }
    }
}

async fn keep_alive(mut current: watch::Receiver<Option<Client>>, user: u64, session_id: String) {
    // Login has just started the lease; the first renewal is due one period later.
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + KEEPALIVE, KEEPALIVE);
    loop {
        tick.tick().await;
        let client = current.borrow_and_update().clone();
        if let Some(mut client) = client {
            let _ = client
                .keep_alive(SessionRequest {
                    user_id: user,
                    session_id: session_id.clone(),
                })
                .await;
        }
    }
}

/// How often the session is renewed (the server's lease is several times longer).
pub const KEEPALIVE: Duration = Duration::from_secs(1);
