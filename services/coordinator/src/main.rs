use anyhow::Context;
use clap::Parser;
use std::sync::Arc;
use tinysns_common::grpc::MemberCredentials;
use tinysns_common::grpc::RequireSecret;
use tinysns_common::tls::Tls;
use tinysns_common::tls::with_tls;
use tinysns_common::{health::Health, shutdown::Shutdown, telemetry};
use tinysns_coordinator::config::Config;
use tinysns_coordinator::metrics::{Exposed, Metrics};
use tinysns_coordinator::raft::leadership::Leadership;
use tinysns_coordinator::raft::network::ConsensusService;
use tinysns_coordinator::raft::node::{self, Timing};
use tinysns_coordinator::service::{CoordinatorService, Settings};

/// No call to the coordinator takes long; one that does is cut off rather than held forever.
const CALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut config = Config::parse();
    let checked = config.validate().and_then(|()| {
        let internal_port = config.resolved_internal_port()?;
        let metrics_port = config.resolved_metrics_port()?;
        let tls = config.tls_files.load().map_err(|e| e.to_string())?;
        Ok((internal_port, metrics_port, config.secret.load()?, tls))
    });
    let (internal_port, metrics_port, secret, tls) = match checked {
        Ok(ok) => ok,
        Err(problem) => {
            eprintln!("error: {problem}");
            std::process::exit(2);
        }
    };
    config.internal_port = Some(internal_port);
    config.metrics.metrics_port = metrics_port;
    let (node_id, peers) = match config.raft_peers() {
        Ok(resolved) => resolved,
        Err(problem) => {
            eprintln!("error: {problem}");
            std::process::exit(2);
        }
    };
    config.node_id = Some(node_id);
    if config.auth.auth == tinysns_common::auth::AuthMode::Password && secret.is_none() {
        eprintln!(
            "error: --auth password needs a cluster secret (--cluster-secret-file); \
             use --auth open for a classic local system without one"
        );
        std::process::exit(2);
    }
    if config.print_config {
        tinysns_common::cli::print_config(&config)?;
        return Ok(());
    }
    telemetry::init("info,openraft=warn");
    tinysns_common::cli::warn_if_no_secret(secret.as_ref());
    let addr = format!("{}:{}", config.bind, config.port);
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let internal_addr = format!(
        "{}:{internal_port}",
        tinysns_common::cli::internal_bind(&config.bind, secret.as_ref())
    );
    let internal_listener = tokio::net::TcpListener::bind(&internal_addr)
        .await
        .with_context(|| format!("cannot listen on {internal_addr}"))?;
    let shutdown = Shutdown::new();
    shutdown.trigger_on_signal();

    if config.data_dir.is_none() {
        tracing::warn!(
            "no --data-dir: terms, masters and in-sync sets are kept in memory only; a restart must guess them from heartbeats"
        );
    }
    let credentials = MemberCredentials::new(secret.clone(), tls.as_ref().map(Tls::client));
    let timing = Timing {
        heartbeat: config.raft_heartbeat_interval,
        election_timeout: config.raft_election_timeout,
    };
    let (raft, machine) = node::start(node_id, &peers, config.data_dir.as_deref(), timing, credentials)
        .await
        .context("cannot start the coordinators' Raft node")?;
    let leadership = Leadership::new(raft.clone(), config.raft_election_timeout);
    let confirmer = tokio::spawn(leadership.clone().run(config.raft_heartbeat_interval, shutdown.clone()));
    let settings = Settings {
        clusters: config.clusters,
        auth: config.auth.auth,
        heartbeat_interval: config.heartbeat_interval,
        failure_timeout: config.failure_timeout,
        switchover_timeout: config.switchover_timeout,
    };
    let metrics = Arc::new(Metrics::new());
    if let Some(port) = metrics_port {
        let exposed = Exposed {
            metrics: metrics.clone(),
            leadership: leadership.clone(),
            machine: machine.clone(),
            raft: raft.clone(),
            clusters: config.clusters,
        };
        tinysns_common::metrics::serve(&config.bind, port, Arc::new(exposed), shutdown.clone()).await?;
    }
    let service = CoordinatorService::new(raft.clone(), machine, leadership, settings, metrics);
    let detector = tokio::spawn(service.clone().run_failure_detector(shutdown.clone()));
    let (health, health_service) = Health::new().await;
    health.set_ready(true).await;
    if let Some(port) = config.health_port {
        tinysns_common::health::serve_plain(&config.bind, port, health_service.clone(), shutdown.clone())
            .await
            .with_context(|| format!("cannot serve health on port {port}"))?;
    }
    let (client_tls, internal_tls) = match &tls {
        Some(tls) => (tls.client_api(), tls.internal_api()?),
        None => (None, None),
    };
    tracing::info!(%addr, %internal_addr, node_id, coordinators = peers.len(), auth = %config.auth.auth, clusters = config.clusters, heartbeat = ?config.heartbeat_interval,
        failure_timeout = ?config.failure_timeout, "coordinator listening");

    let stop = shutdown.clone();
    let members = with_tls(tonic::transport::Server::builder(), internal_tls)?
        .timeout(CALL_TIMEOUT)
        .layer(tonic::service::InterceptorLayer::new(RequireSecret::new(secret)))
        .add_service(service.clone().into_membership_server())
        .add_service(ConsensusService::new(raft.clone()))
        .serve_with_incoming_shutdown(tinysns_common::grpc::incoming(internal_listener), async move {
            stop.wait().await
        });
    let stop = shutdown.clone();
    let clients = with_tls(tonic::transport::Server::builder(), client_tls)?
        .timeout(CALL_TIMEOUT)
        .add_service(health_service)
        .add_service(service.into_server())
        .serve_with_incoming_shutdown(
            tinysns_common::grpc::incoming(listener),
            async move { stop.wait().await },
        );
    let served = tokio::try_join!(clients, members);
    shutdown.trigger();
    served.context("gRPC server failed")?;
    let _ = detector.await;
    let _ = confirmer.await;
    if let Err(error) = raft.shutdown().await {
        tracing::warn!(%error, "Raft did not stop cleanly");
    }
    tracing::info!("coordinator stopped");
    Ok(())
}
