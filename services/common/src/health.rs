//! The standard gRPC health service, with two entries: `""` (liveness: serving while the
//! process runs) and `"readiness"` (serving once the process has joined the system).

use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

pub const READINESS: &str = "readiness";

#[derive(Clone)]
pub struct Health {
    reporter: HealthReporter,
}

impl Health {
    /// Returns the reporter and the service to mount on the process' gRPC server.
    pub async fn new() -> (
        Self,
        tonic_health::pb::health_server::HealthServer<impl tonic_health::pb::health_server::Health>,
    ) {
        let (reporter, service) = tonic_health::server::health_reporter();
        reporter.set_service_status("", ServingStatus::Serving).await;
        reporter.set_service_status(READINESS, ServingStatus::NotServing).await;
        (Self { reporter }, service)
    }

    pub async fn set_ready(&self, ready: bool) {
        let status = if ready {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        self.reporter.set_service_status(READINESS, status).await;
    }
}

/// Starts a plaintext gRPC server with only `health` on `bind:port`: Kubernetes' gRPC probes
/// cannot speak TLS, so a process whose client port uses TLS answers them here.
pub async fn serve_plain(
    bind: &str,
    port: u16,
    health: tonic_health::pb::health_server::HealthServer<impl tonic_health::pb::health_server::Health>,
    shutdown: crate::shutdown::Shutdown,
) -> Result<tokio::task::JoinHandle<()>, std::io::Error> {
    let listener = tokio::net::TcpListener::bind(format!("{bind}:{port}")).await?;
    Ok(tokio::spawn(async move {
        let served = tonic::transport::Server::builder()
            .add_service(health)
            .serve_with_incoming_shutdown(crate::grpc::incoming(listener), async move { shutdown.wait().await })
            .await;
        if let Err(error) = served {
            tracing::error!(%error, "the health port stopped");
        }
    }))
}
