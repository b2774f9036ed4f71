//! A gateway process beside a [`Topology`]: what the operator deploys as a Deployment, run
//! locally for the launcher, the HTTP/browser tests and the benchmark.

use crate::process::Process;
use crate::topology::Topology;
use crate::{bin_dir, free_port};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("no free port: {0}")]
    Port(#[from] std::io::Error),
    #[error(transparent)]
    Process(#[from] crate::process::ProcessError),
    #[error("the gateway did not answer /healthz within {0:?} (log: {1})")]
    NotUp(Duration, String),
}

pub struct Gateway {
    pub process: Process,
    pub port: u16,
    pub metrics_port: u16,
    /// `http://127.0.0.1:<port>` (`https://` with the topology's TLS).
    pub url: String,
}

impl Gateway {
    /// Starts gateway `name` for `topology` (over HTTPS with its certificates when it runs
    /// TLS) with `extra` flags, and waits until it answers.
    pub async fn start(topology: &Topology, name: &str, extra: &[&str]) -> Result<Self, GatewayError> {
        Self::start_on(topology, name, (free_port()?, free_port()?), extra).await
    }

    /// [`Self::start`] on the given HTTP and metrics ports.
    pub async fn start_on(
        topology: &Topology,
        name: &str,
        (port, metrics_port): (u16, u16),
        extra: &[&str],
    ) -> Result<Self, GatewayError> {
        let mut args = vec![
            "--bind".to_string(),
            "127.0.0.1".into(),
            "--port".into(),
            port.to_string(),
            "--metrics-port".into(),
            metrics_port.to_string(),
            "--coordinator-host".into(),
            topology.coordinator_address(),
        ];
        if let Some(certs) = &topology.certs {
            args.extend(certs.args());
        }
        args.extend(extra.iter().map(|a| a.to_string()));
        let log = topology.options.dir.join("logs").join(format!("{name}.log"));
        let mut process = Process::new(name, bin_dir().join("tinysns-gateway"), args, Vec::new(), log);
        process.start()?;
        let scheme = if topology.certs.is_some() { "https" } else { "http" };
        let gateway = Self {
            process,
            port,
            metrics_port,
            url: format!("{scheme}://127.0.0.1:{port}"),
        };
        gateway.wait_up(Duration::from_secs(20)).await?;
        Ok(gateway)
    }

    /// Waits until the gateway's metrics endpoint (served once it is up) answers.
    pub async fn wait_up(&self, timeout: Duration) -> Result<(), GatewayError> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if crate::scrape::get(self.metrics_port, "/healthz").await.is_ok()
                && tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await.is_ok()
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(GatewayError::NotUp(timeout, self.process.log.display().to_string()))
    }
}
