use anyhow::Context;
use clap::Parser;
use tinysns_common::{health::Health, shutdown::Shutdown, telemetry};
use tinysns_coordinator::config::Config;
use tinysns_coordinator::service::CoordinatorService;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    if let Err(problem) = config.validate() {
        eprintln!("error: {problem}");
        std::process::exit(2);
    }
    if config.print_config {
        tinysns_common::cli::print_config(&config)?;
        return Ok(());
    }
    telemetry::init("info");
    let addr = format!("{}:{}", config.bind, config.port);
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let shutdown = Shutdown::new();
    shutdown.trigger_on_signal();

    let service = CoordinatorService::new(&config);
    let detector = tokio::spawn(service.clone().run_failure_detector(shutdown.clone()));
    let (health, health_service) = Health::new().await;
    health.set_ready(true).await;
    tracing::info!(%addr, clusters = config.clusters, heartbeat = ?config.heartbeat_interval,
        failure_timeout = ?config.failure_timeout, "coordinator listening");

    let stop = shutdown.clone();
    tonic::transport::Server::builder()
        .add_service(health_service)
        .add_service(service.into_server())
        .serve_with_incoming_shutdown(
            tinysns_common::grpc::incoming(listener),
            async move { stop.wait().await },
        )
        .await
        .context("gRPC server failed")?;
    shutdown.trigger();
    let _ = detector.await;
    tracing::info!("coordinator stopped");
    Ok(())
}
