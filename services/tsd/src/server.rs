//! Wires a tsd together: store, writer, replication, feed, membership and the gRPC services.

use crate::accounts::Hasher;
use crate::changefeed::ChangeFeedService;
use crate::chores::run_while_master;
use crate::clock::WallClock;
use crate::config::Config;
use crate::fanout::Fanout;
use crate::feed::Feed;
use crate::identity;
use crate::metrics::{Exposed, Metrics};
use crate::peers::{PeerService, Peers};
use crate::presence::{Presence, Sharing};
use crate::reader::Reader;
use crate::replication::{ReplicationService, ReplicationSettings, Replicator};
use crate::social::Social;
use crate::store;
use crate::writer::{Writer, WriterSetup};
use anyhow::Context;
use std::sync::Arc;
use tinysns_common::auth::AuthMode;
use tinysns_common::grpc::{MemberCredentials, RequireSecret};
use tinysns_common::health::Health;
use tinysns_common::masters::Masters;
use tinysns_common::membership::{Membership, Progress};
use tinysns_common::proto::coordinator::{Member, MemberKind};
use tinysns_common::shutdown::Shutdown;
use tinysns_common::tls::{Tls, with_tls};

/// Password hashes computed at once, on threads of their own (each holds the Argon2 memory
/// cost: 4 x 19 MiB by default).
const HASHING_THREADS: usize = 4;
const CLIENT_PING_INTERVAL: std::time::Duration = std::time::Duration::from_secs(2);
const CLIENT_PING_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(4);
/// How often readiness is looked at again when the role did not change.
const READINESS_RECHECK: std::time::Duration = std::time::Duration::from_millis(500);

pub async fn run(config: Config, shutdown: Shutdown) -> anyhow::Result<()> {
    let (identity, terms) = identity::load(&config.data_dir)
        .with_context(|| format!("cannot open the store in {}", config.data_dir.display()))?;
    let conn = store::open(&config.data_dir)
        .with_context(|| format!("cannot open the store in {}", config.data_dir.display()))?;
    crate::replication::remove_stale_snapshots(&config.data_dir);
    let last = store::last_lsn(&conn)?;
    let committed = store::commit_point(&conn)?;
    tracing::info!(data_dir = %config.data_dir.display(), last_lsn = last, committed, incarnation = identity.incarnation, term = identity.term, "store opened");
    // Entries after the commit point may never have been acknowledged: nobody (timelines, the
    // synchronizer) sees them until they are replicated again.
    let feed = Feed::new(committed);
    let progress = Progress::new(last);
    let credentials = MemberCredentials::new(config.secret.clone(), config.tls.as_ref().map(Tls::client));
    let peers = Peers::new(
        Masters::new(&config.coordinators_internal, credentials.clone()).context("bad coordinator addresses")?,
    );
    let membership = Membership::durable(identity.term, Arc::new(terms));
    let role = membership.handle();
    let metrics = Arc::new(Metrics::new());
    let setup = WriterSetup {
        cluster: config.cluster,
        role: role.clone(),
        feed: feed.clone(),
        progress: progress.clone(),
        wall: WallClock {
            skew_ms: config.clock_skew_ms,
        },
        log_retain: config.log_retain,
        commit_point_period: config.commit_point_interval,
        metrics: metrics.clone(),
    };
    let (writer, batches) = Writer::start(conn, setup, shutdown.clone())?;
    let reader = Reader::new(&config.data_dir);
    tokio::spawn(
        Replicator::new(
            role.clone(),
            reader.clone(),
            feed.clone(),
            config.server,
            progress.clone(),
            credentials.clone(),
            ReplicationSettings {
                replica_timeout: config.replica_timeout,
                snapshot_rate: config.snapshot_rate(),
            },
        )
        .with_metrics(metrics.clone())
        .run(batches),
    );

    tinysns_common::cli::warn_if_no_secret(config.secret.as_ref());
    let addr = format!("{}:{}", config.bind, config.port);
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let internal_addr = format!("{}:{}", config.internal_bind, config.internal_port);
    let internal_listener = tokio::net::TcpListener::bind(&internal_addr)
        .await
        .with_context(|| format!("cannot listen on {internal_addr}"))?;
    tracing::info!(%addr, %internal_addr, auth = %config.auth, advertise = %config.advertise, cluster = config.cluster, server = config.server, "tsd listening");

    // Only once we listen may the coordinator route clients to us.
    let me = Member {
        kind: MemberKind::Server as i32,
        cluster_id: config.cluster,
        member_id: config.server,
        address: config.advertise.clone(),
        internal_address: config.internal_advertise.clone(),
        incarnation: identity.incarnation,
        feature_level: tinysns_common::features::FEATURE_LEVEL,
    };
    tokio::spawn(tinysns_common::membership::leave_on_signal(
        progress.clone(),
        role.clone(),
        shutdown.clone(),
        config.leave_timeout,
    ));
    tokio::spawn(membership.run(
        config.coordinators_internal.clone(),
        credentials,
        me,
        progress.clone(),
        shutdown.clone(),
    ));

    let (health, health_service) = Health::new().await;
    if let Some(port) = config.health_port {
        tinysns_common::health::serve_plain(&config.bind, port, health_service.clone(), shutdown.clone())
            .await
            .with_context(|| format!("cannot serve health on port {port}"))?;
    }
    let mut watch = role.clone();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        while !stop.is_triggered() {
            health.set_ready(crate::readiness::is_ready(&watch.current())).await;
            // Also when nothing is said: a lease runs out on its own.
            tokio::select! {
                _ = watch.changed() => {}
                _ = tokio::time::sleep(READINESS_RECHECK) => {}
            }
        }
    });

    let sharing = match config.auth {
        AuthMode::Open => Sharing::Exclusive,
        AuthMode::Password => Sharing::Shared,
    };
    let presence = Arc::new(Presence::new(sharing));
    if let Some(port) = config.metrics_port {
        let exposed = Exposed {
            metrics: metrics.clone(),
            role: role.clone(),
            progress: progress.clone(),
            feed: feed.clone(),
            presence: presence.clone(),
        };
        tinysns_common::metrics::serve(&config.bind, port, Arc::new(exposed), shutdown.clone()).await?;
    }

    let sequencer = crate::sequencer::Sequencer {
        cluster: config.cluster,
        writer: writer.clone(),
        reader: reader.clone(),
        after: 0,
    };
    let deletions = crate::deletions::Deletions {
        cluster: config.cluster,
        writer: writer.clone(),
        reader: reader.clone(),
    };
    let room_deletions = crate::rooms::RoomDeletions {
        cluster: config.cluster,
        writer: writer.clone(),
        reader: reader.clone(),
    };
    let interval = config.chore_interval;
    tokio::spawn(run_while_master(sequencer, role.clone(), interval, shutdown.clone()));
    tokio::spawn(run_while_master(deletions, role.clone(), interval, shutdown.clone()));
    tokio::spawn(run_while_master(
        room_deletions,
        role.clone(),
        interval,
        shutdown.clone(),
    ));
    let fanout = Fanout::default();
    tokio::spawn(fanout.clone().run(feed.tail(reader.clone(), feed.committed())));
    let social = Social {
        cluster: config.cluster,
        auth: config.auth,
        writer: writer.clone(),
        reader: reader.clone(),
        feed: feed.clone(),
        fanout,
        role: role.clone(),
        presence,
        hasher: Hasher::new(config.argon2, HASHING_THREADS)?,
        failed_logins: Arc::default(),
        session_ttl: config.session_ttl,
        metrics,
        peers,
        room_presence: Arc::new(crate::room_presence::RoomPresence::new(config.room_idle)),
    };
    let changefeed = ChangeFeedService {
        cluster: config.cluster,
        writer: writer.clone(),
        reader,
        feed,
        role,
        metrics: social.metrics.clone(),
    };
    let stop = shutdown.clone();
    let (client_tls, internal_tls) = match &config.tls {
        Some(tls) => (tls.client_api(), tls.internal_api()?),
        None => (None, None),
    };
    let members = with_tls(tonic::transport::Server::builder(), internal_tls)?
        .timeout(config.request_timeout)
        .layer(tonic::service::InterceptorLayer::new(RequireSecret::new(
            config.secret.clone(),
        )))
        .add_service(ReplicationService::server(writer, &config.data_dir))
        .add_service(changefeed.server())
        .add_service(PeerService { social: social.clone() }.server())
        .serve_with_incoming_shutdown(tinysns_common::grpc::incoming(internal_listener), async move {
            stop.wait().await
        });
    let stop = shutdown.clone();
    let clients = with_tls(tonic::transport::Server::builder(), client_tls)?
        .timeout(config.request_timeout)
        // A client whose host vanished without closing its connection is noticed by these
        // pings, which ends its Attach stream and so its presence.
        .http2_keepalive_interval(Some(CLIENT_PING_INTERVAL))
        .http2_keepalive_timeout(Some(CLIENT_PING_TIMEOUT))
        .add_service(health_service)
        .add_service(social.server())
        .serve_with_incoming_shutdown(
            tinysns_common::grpc::incoming(listener),
            async move { stop.wait().await },
        );
    let served = async { tokio::try_join!(clients, members) };
    let grace = config.shutdown_grace;
    let outlasted = async {
        shutdown.wait().await;
        tokio::time::sleep(grace).await;
    };
    tokio::select! {
        served = served => {
            shutdown.trigger();
            served.context("gRPC server failed")?;
        }
        // Open streams (timelines, presence) would hold a graceful stop forever: a server
        // that gave up its role must go, so its clients reconnect to the new master.
        () = outlasted => tracing::warn!(?grace, "calls still open after the shutdown grace; stopping anyway"),
    }
    if let Some(why) = progress.failure() {
        anyhow::bail!("stopped because {why}");
    }
    tracing::info!("tsd stopped");
    Ok(())
}
