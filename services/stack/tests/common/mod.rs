//! Helpers shared by the end-to-end tests.
#![allow(dead_code)]

use std::path::PathBuf;
use std::time::Duration;
use tinysns_client::session::Credentials;
use tinysns_common::auth::Bearer;
use tinysns_common::proto::social::Post;
use tinysns_common::proto::social::social_service_client::SocialServiceClient;
use tinysns_stack::client::{Timeline, User};
use tinysns_stack::topology::{Options, Topology};
use tinysns_stack::tsc::Tsc;
use tonic::service::interceptor::InterceptedService;

/// A fresh topology (3 clusters x 2 servers x 2 synchronizers) in its own directory.
pub async fn start(name: &str) -> Topology {
    start_with(name, |_| {}).await
}

pub async fn start_with(name: &str, adjust: impl FnOnce(&mut Options)) -> Topology {
    tinysns_common::telemetry::init("warn");
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("e2e-{name}"));
    // A broker left behind by an interrupted earlier run of this test must not linger.
    if let Ok(pid) = std::fs::read_to_string(dir.join("rabbitmq/rabbitmq.pid"))
        && let Ok(pid) = pid.trim().parse::<i32>()
    {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
    }
    let _ = std::fs::remove_dir_all(&dir);
    let mut options = Options::for_tests(dir);
    adjust(&mut options);
    match Topology::start(options).await {
        Ok(t) => t,
        Err(e) => panic!(
            "the topology did not start: {e}\n(run `cargo build --bins` first; logs under target/tmp/e2e-{name})"
        ),
    }
}

/// A raw client of the server at `address`: for requests no well-behaved client sends, or
/// to talk to one particular server.
pub fn social_client(address: &str) -> SocialServiceClient<tonic::transport::Channel> {
    let channel = tinysns_common::grpc::channel(address, Duration::from_secs(1)).expect("a valid address");
    SocialServiceClient::new(channel)
}

/// Logs in user `k` (in password mode its generated account, registered on first need).
pub async fn login(t: &Topology, user: u64) -> User {
    let credentials = t
        .credentials(user)
        .await
        .unwrap_or_else(|e| panic!("no account for user {user}: {e}"));
    User::connect(t.connection(), credentials, Duration::from_secs(20))
        .await
        .unwrap_or_else(|e| panic!("user {user} cannot log in: {e}"))
}

/// The real `tsc` logged in as user `k` (its account, in password mode; its id, in open mode).
/// The password every account registered by [`register`] has.
pub const PASSWORD: &str = "correct horse battery";

/// Registers `name` (password mode) and logs in.
pub async fn register(t: &Topology, name: &str) -> User {
    let credentials = Credentials::Password {
        username: name.into(),
        password: PASSWORD.into(),
        register: true,
    };
    User::connect(&t.coordinator_address(), credentials, Duration::from_secs(20))
        .await
        .unwrap_or_else(|e| panic!("{name} registers: {e:?}"))
}

/// `tsc -u <name>` for an account `register` made.
pub fn tsc_registered(t: &Topology, name: &str) -> Tsc {
    Tsc::start_with(
        &t.coordinator_address(),
        &["-u", name],
        &[("TINYSNS_PASSWORD", PASSWORD)],
    )
    .expect("tsc starts")
}

/// A system with one synchronizer per cluster and a private broker (for tests that touch the
/// bus), with "alice" (cluster 3 of 3), "bob" (cluster 1) and "carol" (cluster 2) registered.
pub async fn start_with_three_users(name: &str) -> (Topology, User, User, User) {
    start_with_three_users_and(name, |_| {}).await
}

/// [`start_with_three_users`], with the options adjusted further.
pub async fn start_with_three_users_and(name: &str, adjust: impl FnOnce(&mut Options)) -> (Topology, User, User, User) {
    let t = start_with(name, |o| {
        o.synchronizers_per_cluster = 1;
        o.broker = tinysns_stack::topology::Broker::Private;
        adjust(o);
    })
    .await;
    let (alice, bob, carol) = (
        register(&t, "alice").await,
        register(&t, "bob").await,
        register(&t, "carol").await,
    );
    assert_eq!(
        [alice.id(), bob.id(), carol.id()].map(|id| ((id - 1) % 3) + 1),
        [3, 1, 2],
        "the users live in three different clusters"
    );
    let (mut alice, mut bob, mut carol) = (alice, bob, carol);
    let ids = [alice.id(), bob.id(), carol.id()];
    // Each account is written in its own cluster; the others learn of it over the bus.
    for user in [&mut alice, &mut bob, &mut carol] {
        until_known(user, &ids).await;
    }
    (t, alice, bob, carol)
}

pub async fn tsc_for(t: &Topology, k: u64) -> Tsc {
    let port = t.coordinator_address();
    let port = port.as_str();
    match t
        .credentials(k)
        .await
        .unwrap_or_else(|e| panic!("no account for user {k}: {e}"))
    {
        Credentials::Open(id) => Tsc::start(port, id),
        Credentials::Password { username, password, .. } => {
            Tsc::start_with(port, &["-u", &username], &[("TINYSNS_PASSWORD", &password)])
        }
    }
    .expect("tsc starts")
}

/// `tsc -u <user k's name> <extra>` with the generated accounts' password, without
/// registering anything first (for a user whose cluster may be down).
pub fn tsc_as(t: &Topology, k: u64, extra: &[&str]) -> Tsc {
    let name = t.name(k);
    let args: Vec<&str> = ["-u", name.as_str()].into_iter().chain(extra.iter().copied()).collect();
    Tsc::start_with(
        &t.coordinator_address(),
        &args,
        &[("TINYSNS_PASSWORD", tinysns_stack::accounts::PASSWORD)],
    )
    .expect("tsc starts")
}

/// A raw client of the server at `address` presenting `token`: to send requests no
/// well-behaved client sends, or to talk to one particular server.
pub fn authed_client(
    address: &str,
    token: &str,
) -> SocialServiceClient<InterceptedService<tonic::transport::Channel, Bearer>> {
    let channel = tinysns_common::grpc::channel(address, Duration::from_secs(1)).expect("a valid address");
    SocialServiceClient::with_interceptor(channel, Bearer::new(token).expect("a header-safe token"))
}

/// Evaluates the async block every 50 ms until it yields `Some`, failing the test after
/// the timeout. A macro rather than a function so the block may borrow test state mutably.
#[macro_export]
macro_rules! eventually {
    ($what:expr, $timeout:expr, $check:expr) => {{
        let timeout: std::time::Duration = $timeout;
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Some(value) = $check.await {
                break value;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "timed out after {timeout:?} waiting for: {}",
                $what
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }};
}

/// Waits until `user` sees all of `ids` in LIST (changes crossed the clusters).
pub async fn until_known(user: &mut User, ids: &[u64]) {
    let me = user.id();
    eventually!(
        format!("user {me} to know users {ids:?}"),
        Duration::from_secs(15),
        async {
            let list = user.list().await.ok()?;
            ids.iter().all(|id| list.user_ids().contains(id)).then_some(())
        }
    )
}

/// Waits until `user`'s followers are exactly `expected`.
pub async fn until_followers(user: &mut User, expected: &[u64]) {
    let me = user.id();
    eventually!(
        format!("user {me} to have followers {expected:?}"),
        Duration::from_secs(15),
        async {
            let list = user.list().await.ok()?;
            (list.follower_ids() == expected).then_some(())
        }
    )
}

/// The next live post on `timeline`, failing the test after `timeout`.
pub async fn expect_post(timeline: &mut Timeline, timeout: Duration) -> Post {
    timeline
        .next_post(timeout)
        .await
        .expect("timeline stream failed")
        .expect("no post arrived in time")
}

pub fn texts(posts: &[Post]) -> Vec<String> {
    posts.iter().map(|p| p.text.clone()).collect()
}

/// Every replica's stored state once it has stopped changing (the bus has delivered).
pub async fn settled_digests(t: &Topology) -> std::collections::BTreeMap<(u32, u32), Result<String, String>> {
    let mut last = t.replica_digests();
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = t.replica_digests();
        if now == last {
            return now;
        }
        last = now;
    }
}

/// Every replica's store once the system has settled, after checking that both replicas of
/// each cluster hold the same state (for checks of what is stored, not only what is shown).
pub async fn settled_stores(t: &Topology) -> Vec<((u32, u32), tinysns_tsd::store::Connection)> {
    let digests = settled_digests(t).await;
    for c in 1..=t.options.clusters {
        let (a, b) = (&digests[&(c, 1)], &digests[&(c, 2)]);
        assert!(a.is_ok() && a == b, "cluster {c}: {a:?} vs {b:?}");
    }
    digests
        .keys()
        .map(|&(c, s)| {
            (
                (c, s),
                tinysns_tsd::store::open(&t.server_data_dir(c, s)).expect("the store opens"),
            )
        })
        .collect()
}

pub const SERVING: i32 = tonic_health::pb::health_check_response::ServingStatus::Serving as i32;
pub const NOT_SERVING: i32 = tonic_health::pb::health_check_response::ServingStatus::NotServing as i32;

/// The `readiness` health status of the server at `address` (None: it does not answer).
pub async fn readiness(address: &str) -> Option<i32> {
    let channel = tinysns_common::grpc::channel(address, Duration::from_secs(1)).ok()?;
    let request = tonic_health::pb::HealthCheckRequest {
        service: tinysns_common::health::READINESS.to_string(),
    };
    let reply = tonic_health::pb::health_client::HealthClient::new(channel)
        .check(request)
        .await
        .ok()?;
    Some(reply.into_inner().status)
}

/// The first change of `cluster`'s own log (read from its first server's store) that
/// `wanted` picks, as its synchronizer published it: what a redelivery would carry again.
pub fn published_copy(
    t: &Topology,
    cluster: u32,
    wanted: impl Fn(&tinysns_common::proto::internal::change::Kind) -> bool,
) -> tinysns_common::proto::internal::RemoteChange {
    use tinysns_common::proto::internal::{Change, RemoteChange, log_entry};
    let conn = tinysns_tsd::store::open(&t.server_data_dir(cluster, 1)).expect("the store opens");
    let entries = tinysns_tsd::store::entries_after(&conn, 0, u64::MAX, 1_000_000).expect("the log reads");
    let entry = entries
        .into_iter()
        .find(|e| {
            e.origin_cluster == cluster
                && matches!(&e.kind, Some(log_entry::Kind::Change(Change { kind: Some(kind) })) if wanted(kind))
        })
        .expect("the change is in its home cluster's log");
    let Some(log_entry::Kind::Change(change)) = entry.kind else {
        unreachable!()
    };
    RemoteChange {
        origin_cluster: entry.origin_cluster,
        origin_lsn: entry.origin_lsn,
        timestamp_ms: entry.timestamp_ms,
        change: Some(change),
        hlc: entry.hlc,
    }
}

/// Publishes `changes` of cluster `origin` on the bus again, signed, as the broker would
/// deliver them again after a lost acknowledgement.
pub async fn redeliver(t: &Topology, origin: u32, changes: Vec<tinysns_common::proto::internal::RemoteChange>) {
    use lapin::options::BasicPublishOptions;
    use prost::Message;
    let conn = lapin::Connection::connect(&t.amqp_url, lapin::ConnectionProperties::default())
        .await
        .expect("the broker accepts a connection");
    let channel = conn.create_channel().await.expect("a channel");
    let payload = tinysns_common::proto::internal::BusEnvelope {
        version: 2,
        change: None,
        changes,
    }
    .encode_to_vec();
    channel
        .basic_publish(
            format!("{}.changes-by-origin", t.namespace).as_str().into(),
            format!("from.{origin}").as_str().into(),
            BasicPublishOptions::default(),
            &payload,
            lapin::BasicProperties::default()
                .with_delivery_mode(2)
                .with_headers(tinysns_synchronizer::bus::signature(&payload, Some(&t.secret))),
        )
        .await
        .expect("published")
        .await
        .expect("confirmed");
    let _ = conn.close(200, "done".into()).await;
}
