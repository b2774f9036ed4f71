//! gRPC channels with the timeouts every internal call needs, so that a dead peer costs a
//! bounded wait instead of a hang.

use std::time::Duration;
use tonic::transport::{Channel, Endpoint};

#[derive(Debug, thiserror::Error)]
#[error("invalid address {address:?}: {source}")]
pub struct AddressError {
    address: String,
    source: tonic::transport::Error,
}

/// A lazily connecting channel to `address` (`host:port`). Never fails for an unreachable
/// peer: the first call does, with UNAVAILABLE, after `connect_timeout`.
pub fn channel(address: &str, connect_timeout: Duration) -> Result<Channel, AddressError> {
    let uri = if address.contains("://") {
        address.to_string()
    } else {
        format!("http://{address}")
    };
    let endpoint = Endpoint::from_shared(uri).map_err(|source| AddressError {
        address: address.to_string(),
        source,
    })?;
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
