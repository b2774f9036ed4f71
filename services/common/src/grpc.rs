//! gRPC channels with the timeouts every internal call needs, so that a dead peer costs a
//! bounded wait instead of a hang.

use crate::secret::{ClusterSecret, SECRET_HEADER};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

#[derive(Debug, thiserror::Error)]
#[error("invalid address {address:?}: {source}")]
pub struct AddressError {
    address: String,
    source: tonic::transport::Error,
}

/// A lazily connecting plaintext channel to `address` (`host:port`). Never fails for an
/// unreachable peer: the first call does, with UNAVAILABLE, after `connect_timeout`.
pub fn channel(address: &str, connect_timeout: Duration) -> Result<Channel, AddressError> {
    secure_channel(address, connect_timeout, None)
}

/// [`channel`], over TLS when `tls` is given (the server is checked against its CA, and our
/// certificate presented if the config has one).
pub fn secure_channel(
    address: &str,
    connect_timeout: Duration,
    tls: Option<&ClientTlsConfig>,
) -> Result<Channel, AddressError> {
    let scheme = if tls.is_some() { "https" } else { "http" };
    let uri = if address.contains("://") {
        address.to_string()
    } else {
        format!("{scheme}://{address}")
    };
    let error = |source| AddressError {
        address: address.to_string(),
        source,
    };
    let mut endpoint = Endpoint::from_shared(uri).map_err(error)?;
    if let Some(tls) = tls {
        endpoint = endpoint.tls_config(tls.clone()).map_err(error)?;
    }
    Ok(endpoint
        .connect_timeout(connect_timeout)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(5))
        .keep_alive_timeout(Duration::from_secs(5))
        .keep_alive_while_idle(true)
        .connect_lazy())
}

/// Whether an error from a call means "this peer cannot serve you now, ask the coordinator
/// again": it is down, it is not (or no longer) master, or it is still catching up.
pub fn is_retryable(status: &tonic::Status) -> bool {
    matches!(
        status.code(),
        tonic::Code::Unavailable
            | tonic::Code::FailedPrecondition
            | tonic::Code::Cancelled
            | tonic::Code::DeadlineExceeded
            | tonic::Code::Unknown
            | tonic::Code::Aborted
    )
}

/// The status a non-master returns for a client request.
pub fn not_master(detail: impl std::fmt::Display) -> tonic::Status {
    tonic::Status::failed_precondition(format!("not master: {detail}"))
}

/// Accepted connections of a gRPC server, with Nagle's algorithm off: small replies (post
/// acknowledgements, timeline posts, replication acks) must not wait for the peer's delayed
/// ACK. tonic leaves `tcp_nodelay` unset on connections from a listener we bound ourselves.
pub fn incoming(listener: tokio::net::TcpListener) -> tonic::transport::server::TcpIncoming {
    tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true))
}

/// What a member proves itself with when it calls another: the cluster secret on every
/// request (when the deployment has one; without one the internal API listens on loopback
/// only) and, with TLS, its certificate.
#[derive(Clone, Debug, Default)]
pub struct MemberCredentials {
    secret: Option<ClusterSecret>,
    tls: Option<ClientTlsConfig>,
}

impl MemberCredentials {
    pub fn new(secret: Option<ClusterSecret>, tls: Option<ClientTlsConfig>) -> Self {
        Self { secret, tls }
    }
}

impl tonic::service::Interceptor for MemberCredentials {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(secret) = &self.secret {
            request.metadata_mut().insert(SECRET_HEADER, secret.header_value());
        }
        Ok(request)
    }
}

/// A channel to another member's internal API.
pub type InternalChannel = InterceptedService<Channel, MemberCredentials>;

/// [`channel`] to a member's internal API, presenting `credentials` on every call.
pub fn internal_channel(
    address: &str,
    connect_timeout: Duration,
    credentials: &MemberCredentials,
) -> Result<InternalChannel, AddressError> {
    let channel = secure_channel(address, connect_timeout, credentials.tls.as_ref())?;
    Ok(InterceptedService::new(channel, credentials.clone()))
}

/// The server side of the internal API: refuses every call that does not carry the cluster
/// secret, with UNAUTHENTICATED, and logs each refused peer once.
#[derive(Clone, Debug)]
pub struct RequireSecret {
    secret: Option<ClusterSecret>,
    warned: Arc<Mutex<HashSet<std::net::IpAddr>>>,
}

/// Peers remembered as already warned about; past this the set starts over (bounded memory).
const WARNED_PEERS: usize = 1024;

impl RequireSecret {
    /// With `None`, calls are let through: the caller binds the listener to loopback.
    pub fn new(secret: Option<ClusterSecret>) -> Self {
        Self {
            secret,
            warned: Arc::default(),
        }
    }

    /// Whether `metadata` proves membership.
    pub fn admits(&self, metadata: &tonic::metadata::MetadataMap) -> bool {
        match &self.secret {
            None => true,
            Some(secret) => metadata
                .get(SECRET_HEADER)
                .is_some_and(|presented| secret.matches(presented.as_bytes())),
        }
    }

    fn warn_once(&self, peer: Option<std::net::SocketAddr>) {
        let ip = peer.map(|p| p.ip()).unwrap_or(std::net::IpAddr::from([0, 0, 0, 0]));
        let mut warned = crate::lock(&self.warned);
        if warned.len() >= WARNED_PEERS {
            warned.clear();
        }
        if warned.insert(ip) {
            tracing::warn!(peer = %ip, "refused an internal call without the cluster secret (logged once per peer)");
        }
    }
}

impl tonic::service::Interceptor for RequireSecret {
    fn call(&mut self, request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if self.admits(request.metadata()) {
            return Ok(request);
        }
        self.warn_once(request.remote_addr());
        Err(tonic::Status::unauthenticated(
            "internal API: the cluster secret is missing or wrong",
        ))
    }
}
