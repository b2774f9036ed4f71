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
