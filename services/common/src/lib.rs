//! Shared by every tinysns process: the generated protocol code, the cluster arithmetic,
//! input limits, and the plumbing for logging, health, metrics, shutdown and gRPC connections.

pub mod auth;
pub mod background;
pub mod backoff;
pub mod cli;
pub mod coordinators;
pub mod features;
pub mod grpc;
pub mod health;
pub mod limits;
pub mod masters;
pub mod membership;
pub mod metrics;
pub mod proto;
pub mod rooms;
pub mod secret;
pub mod shutdown;
pub mod telemetry;
pub mod tls;
pub mod topics;
pub mod topology;

/// Milliseconds since the Unix epoch, the one timestamp unit used on the wire and on disk.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Locks `mutex`, also after a panic in another holder: every structure guarded this way is
/// left consistent between statements, so serving on beats stopping.
pub fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}
