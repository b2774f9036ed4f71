//! The synchronizer process: heartbeats, and while it is its cluster's master synchronizer,
//! keeps a RabbitMQ connection with a publisher and a consumer running, reconnecting with
//! backoff when the broker or the tsd master goes away.

use crate::bus::{self, BusError};
use crate::cluster::ClusterLink;
use crate::config::{Config, mask_password};
use crate::metrics::Metrics;
use crate::{consumer, publisher};
use anyhow::Context;
use std::sync::Arc;
use std::time::Duration;
use tinysns_common::backoff::Backoff;
use tinysns_common::grpc::MemberCredentials;
use tinysns_common::health::Health;
use tinysns_common::membership::{Membership, Progress};
use tinysns_common::proto::coordinator::{Member, MemberKind};
use tinysns_common::shutdown::Shutdown;
use tinysns_common::tls::Tls;

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error("tsd: {}", .0.message())]
    Tsd(#[from] tonic::Status),
    #[error("the change feed ended")]
    FeedEnded,
    #[error("the broker ended the consumer")]
    ConsumerEnded,
    #[error("the queue holds {ready} ready messages, but none was delivered for {idle:?}")]
    ConsumerStalled { ready: u32, idle: Duration },
    #[error("the connection to RabbitMQ failed: {0}")]
    ConnectionLost(String),
}

pub async fn run(config: Config, shutdown: Shutdown) -> anyhow::Result<()> {
    let addr = format!("{}:{}", config.bind, config.port);
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    tracing::info!(%addr, id = config.id, auth = %config.auth, amqp = %mask_password(&config.amqp_url), "synchronizer listening");
    let metrics = Arc::new(Metrics::new());
    if let Some(port) = config.metrics_port {
        tinysns_common::metrics::serve(&config.bind, port, metrics.clone(), shutdown.clone()).await?;
    }
    let (health, health_service) = Health::new().await;
    let stop = shutdown.clone();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(health_service)
            .serve_with_incoming_shutdown(
                tinysns_common::grpc::incoming(listener),
                async move { stop.wait().await },
            ),
    );

    let membership = Membership::new();
    let mut role = membership.handle();
    let me = Member {
        kind: MemberKind::Synchronizer as i32,
        cluster_id: 0,
        member_id: config.id,
        address: config.advertise.clone(),
        internal_address: String::new(),
        incarnation: 0,
        feature_level: tinysns_common::features::FEATURE_LEVEL,
    };
    let progress = Progress::new(0);
    tokio::spawn(tinysns_common::membership::leave_on_signal(
        progress.clone(),
        role.clone(),
        shutdown.clone(),
        config.leave_timeout,
    ));
    tokio::spawn(membership.run(
        config.coordinators_internal.clone(),
        MemberCredentials::new(config.secret.clone(), config.tls.as_ref().map(Tls::client)),
        me,
        progress,
        shutdown.clone(),
    ));

    let mut working: Option<(Shutdown, tokio::task::JoinHandle<()>)> = None;
    while !shutdown.is_triggered() {
        tokio::select! {
            _ = role.changed() => {}
            _ = shutdown.wait() => break,
        }
        let view = role.current();
        health.set_ready(view.assignment.registered()).await;
        match (view.is_master(), working.is_some()) {
            (true, false) => {
                let cluster = view.assignment.me.cluster_id;
                tracing::info!(cluster, term = view.term, "master synchronizer: starting to sync");
                let stop = Shutdown::new();
                let task = tokio::spawn(work(
                    config.clone(),
                    cluster,
                    view.assignment.clusters,
                    metrics.clone(),
                    stop.clone(),
                ));
                working = Some((stop, task));
                metrics.set_master(true);
            }
            (false, true) => {
                tracing::info!("no longer master synchronizer: stopping");
                if let Some((stop, task)) = working.take() {
                    stop.trigger();
                    let _ = task.await;
                }
                metrics.set_master(false);
            }
            _ => {}
        }
    }
    if let Some((stop, task)) = working.take() {
        stop.trigger();
        let _ = task.await;
    }
    let _ = server.await;
    tracing::info!("synchronizer stopped");
    Ok(())
}

/// Syncs until `stop`, reconnecting after any failure.
async fn work(config: Config, cluster: u32, clusters: u32, metrics: Arc<Metrics>, stop: Shutdown) {
    let link = match ClusterLink::new(
        &config.coordinators_internal,
        MemberCredentials::new(config.secret.clone(), config.tls.as_ref().map(Tls::client)),
        cluster,
    ) {
        Ok(l) => l,
        Err(error) => {
            tracing::error!(%error, "bad coordinator address");
            return;
        }
    };
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    while !stop.is_triggered() {
        match session(&config, &link, clusters, &metrics, &stop).await {
            Ok(()) => backoff.reset(),
            Err(error) => {
                metrics.restarted();
                let retry_in = backoff.next_delay();
                tracing::warn!(%error, ?retry_in, "sync interrupted");
                tokio::select! {
                    _ = tokio::time::sleep(retry_in) => {}
                    _ = stop.wait() => {}
                }
            }
        }
    }
}

/// What the publisher and the consumer of one sync session share.
pub struct Session<'a> {
    pub link: &'a ClusterLink,
    /// How many clusters the system has.
    pub clusters: u32,
    pub names: &'a bus::Names,
    pub secret: Option<&'a tinysns_common::secret::ClusterSecret>,
    pub metrics: &'a Metrics,
    pub stop: &'a Shutdown,
}

/// One broker connection's worth of work: returns Ok only when asked to stop.
async fn session(
    config: &Config,
    link: &ClusterLink,
    clusters: u32,
    metrics: &Metrics,
    stop: &Shutdown,
) -> Result<(), SyncError> {
    let names = bus::Names::new(&config.amqp_namespace);
    let endpoint = bus::Endpoint {
        url: &config.amqp_url,
        ca: config.amqp_ca.as_deref(),
        heartbeat: config.amqp_heartbeat,
        timeout: config.amqp_connect_timeout,
    };
    let (conn, publish, consume) = bus::open(endpoint, &names, clusters, config.amqp_queue_type).await?;
    tracing::info!(amqp = %mask_password(&config.amqp_url), "connected to RabbitMQ");
    let (blocked_tx, blocked) = tokio::sync::watch::channel(false);
    let mut watcher = tokio::spawn(bus::watch_connection(Box::pin(conn.events_listener()), blocked_tx));
    let tag = format!("tinysns-synchronizer-{}", config.id);
    let shared = Session {
        link,
        clusters,
        names: &names,
        secret: config.secret.as_ref(),
        metrics,
        stop,
    };
    // A failed connection ends the work at once: its pending confirms and its consumer may
    // otherwise wait forever (a broker killed resets the connection without closing it).
    let result = tokio::select! {
        r = publisher::publish(&shared, &publish, config.amqp_confirm_timeout, blocked) => r,
        r = consumer::consume(&shared, &consume, &tag, config.consumer_stall_timeout) => r,
        lost = &mut watcher => Err(SyncError::ConnectionLost(match lost {
            Ok(Some(error)) => error.to_string(),
            Ok(None) => "its events ended".to_owned(),
            Err(join) => join.to_string(),
        })),
    };
    watcher.abort();
    bus::close(&conn, endpoint).await;
    result
}
