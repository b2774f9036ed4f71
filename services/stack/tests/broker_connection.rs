//! The synchronizer's broker connection against a real RabbitMQ that dies or freezes: the
//! loss is reported (so the sync session ends and starts again on a new connection), and
//! closing the lost connection returns within its timeout instead of waiting forever.

use std::time::{Duration, Instant};

use tinysns_stack::free_port;
use tinysns_stack::rabbit::RabbitMq;
use tinysns_synchronizer::bus::{self, Endpoint, Names, QueueType};
use tinysns_synchronizer::consumer;
use tinysns_synchronizer::run::SyncError;

const HEARTBEAT: Duration = Duration::from_secs(1);
const TIMEOUT: Duration = Duration::from_secs(3);

async fn broker(name: &str) -> RabbitMq {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    let mut broker = RabbitMq::new(&dir, free_port().expect("a port"), free_port().expect("a port"), None)
        .expect("Debian's rabbitmq-server is installed");
    broker.start(Duration::from_secs(60)).await.expect("the broker starts");
    broker
}

/// Signals the broker's whole process group (the start script leads it).
fn signal(broker: &RabbitMq, signal: &str) {
    let pid = broker.pid().expect("the broker runs");
    let status = std::process::Command::new("kill")
        .args([signal, "--", &format!("-{pid}")])
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill {signal} of the broker's group");
}

/// Opens the synchronizer's connection, loses it with `lose`, and checks that the loss is
/// reported within `within` and that closing returns within the timeout.
async fn loss_is_noticed(broker: &mut RabbitMq, lose: impl FnOnce(&mut RabbitMq), within: Duration) {
    let url = broker.url();
    let endpoint = Endpoint {
        url: &url,
        ca: None,
        heartbeat: HEARTBEAT,
        timeout: TIMEOUT,
    };
    let (conn, _publish, _consume) = bus::open(endpoint, &Names::new("loss"), 2, QueueType::Classic)
        .await
        .expect("connects and declares");
    let (blocked, _) = tokio::sync::watch::channel(false);
    let watch = tokio::spawn(bus::watch_connection(Box::pin(conn.events_listener()), blocked));
    lose(broker);
    let lost_at = Instant::now();
    let reported = tokio::time::timeout(within, watch)
        .await
        .expect("the loss is reported in time")
        .expect("the watch ran");
    assert!(reported.is_some(), "the watch ends with the connection's error");
    let closing = Instant::now();
    bus::close(&conn, endpoint).await;
    assert!(
        closing.elapsed() < TIMEOUT + Duration::from_secs(1),
        "closing a lost connection is bounded: {:?}",
        closing.elapsed()
    );
    println!("loss reported after {:?}", lost_at.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_broker_is_noticed_and_its_connection_closes() {
    let mut broker = broker("broker-killed").await;
    loss_is_noticed(&mut broker, RabbitMq::kill, Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_broker_is_noticed_by_its_missing_heartbeats() {
    let mut broker = broker("broker-frozen").await;
    // A frozen broker keeps the socket open and says nothing: only heartbeats tell.
    loss_is_noticed(&mut broker, |b| signal(b, "-STOP"), HEARTBEAT * 6).await;
    signal(&broker, "-CONT");
    broker.kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_with_ready_messages_and_no_delivery_is_a_stalled_consumer() {
    use lapin::options::BasicPublishOptions;
    let broker = broker("broker-stall").await;
    let url = broker.url();
    let endpoint = Endpoint {
        url: &url,
        ca: None,
        heartbeat: HEARTBEAT,
        timeout: TIMEOUT,
    };
    let names = Names::new("stall");
    let (conn, publish, consume) = bus::open(endpoint, &names, 2, QueueType::Classic)
        .await
        .expect("connects and declares");
    let idle = Duration::from_secs(30);
    let check = || consumer::check_not_stalled(&consume, &names, 1, idle);
    assert!(check().await.is_ok(), "an empty queue is not a stall");
    publish
        .basic_publish(
            names.exchange().into(),
            Names::origin_key(2).into(),
            BasicPublishOptions::default(),
            b"waiting",
            lapin::BasicProperties::default(),
        )
        .await
        .expect("published")
        .await
        .expect("confirmed");
    match check().await {
        Err(SyncError::ConsumerStalled {
            ready: 1,
            idle: reported,
        }) => assert_eq!(reported, idle),
        other => panic!("one ready message and no delivery is a stall, got {other:?}"),
    }
    bus::close(&conn, endpoint).await;
}
