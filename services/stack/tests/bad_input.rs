//! Input no well-behaved client sends: bytes that are not UTF-8 where the protocol says
//! text, and poison messages on the bus (a message too large for tsd included). Each gets a
//! clear error or the dead-letter queue,
//! never a crash, and nothing is stored.

mod common;

use common::*;
use lapin::options::{BasicPublishOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};
use prost::Message;
use std::time::Duration;
use tinysns_common::auth::{AuthMode, Bearer};
use tinysns_common::proto::internal::{BusEnvelope, Change, PostCreated, RemoteChange, change};
use tinysns_common::proto::social::{
    FollowRequest, LoginRequest, Reply, Status as Code, TimelineRequest, timeline_request,
};
use tinysns_common::secret::ClusterSecret;
use tinysns_stack::topology::Broker;
use tinysns_synchronizer::bus::signature;
use tonic::service::interceptor::InterceptedService;

/// `FollowRequest` with the target as raw bytes, to send what a string field forbids.
#[derive(Clone, PartialEq, Message)]
struct RawFollowRequest {
    #[prost(bytes = "vec", tag = "2")]
    target: Vec<u8>,
}

/// Open mode (numeric ids): malformed ids and targets, over raw gRPC.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_to_every_rpc_get_clear_errors_and_store_nothing() {
    let t = start_with("non-utf8", |o| o.auth = AuthMode::Open).await;
    let mut u1 = login(&t, 1).await;
    let master = t.view(1).await.unwrap().master.unwrap();
    let token = login_token(&master.address, 4).await;
    let channel = tinysns_common::grpc::channel(&master.address, Duration::from_secs(1)).unwrap();
    let mut grpc = tonic::client::Grpc::new(InterceptedService::new(channel, Bearer::new(&token).unwrap()));
    grpc.ready().await.unwrap();
    let codec = tonic_prost::ProstCodec::<RawFollowRequest, Reply>::default();
    let path = http::uri::PathAndQuery::from_static("/tinysns.social.v1.SocialService/Follow");
    let request = tonic::Request::new(RawFollowRequest {
        target: vec![0xff, 0xfe, b'2'],
    });
    let status = grpc
        .unary(request, path, codec)
        .await
        .expect_err("invalid UTF-8 accepted");
    println!("non-UTF-8 follow target: {:?} {}", status.code(), status.message());

    // Invalid ids and targets on every RPC, straight to the server.
    let mut anonymous = social_client(&master.address);
    let invalid = Code::FailureInvalidUsername as i32;
    let login = anonymous
        .login(LoginRequest {
            user_id: 0,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(login.status, invalid);
    assert!(login.token.is_empty());
    let mut direct = authed_client(&master.address, &token);
    let follow = |target: &str| FollowRequest {
        target: target.to_string(),
    };
    for target in ["", "0", &"9".repeat(5000), "2\u{0}", "abc", "-1"] {
        assert_eq!(
            direct.follow(follow(target)).await.unwrap().into_inner().status,
            invalid,
            "{target:?}"
        );
        assert_eq!(
            direct.un_follow(follow(target)).await.unwrap().into_inner().status,
            invalid,
            "{target:?}"
        );
    }
    let post_first = TimelineRequest {
        kind: Some(timeline_request::Kind::Post(Default::default())),
    };
    let status = direct.timeline(tokio_stream::iter(vec![post_first])).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    let status = direct
        .timeline(tokio_stream::iter(Vec::<TimelineRequest>::new()))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    // A message over the client API's size limit.
    let huge = FollowRequest {
        target: "x".repeat(100 * 1024),
    };
    assert_eq!(direct.follow(huge).await.unwrap_err().code(), tonic::Code::OutOfRange);

    // The server is fine and nothing was stored.
    assert_eq!(u1.follow("2").await.unwrap(), Code::FailureNotExists);
    assert_eq!(u1.list().await.unwrap().user_ids(), vec![1, 4]);
}

/// Open-mode login of `user` straight at `address`: its session token.
async fn login_token(address: &str, user: u64) -> String {
    let reply = social_client(address)
        .login(LoginRequest {
            user_id: user,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.status, Code::Success as i32, "{}", reply.message);
    reply.token
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_messages_are_dead_lettered_and_never_block_the_queue() {
    let t = start_with("poison", |o| o.broker = Broker::Private).await;
    let (mut u1, mut u2) = (login(&t, 1).await, login(&t, 2).await);
    until_known(&mut u1, &[2]).await;
    assert_eq!(u1.follow(&t.name(2)).await.unwrap(), Code::Success);
    let mut t1 = u1.timeline(0).await.unwrap();
    let mut t2 = u2.timeline(0).await.unwrap();

    let conn = Connection::connect(&t.amqp_url, ConnectionProperties::default())
        .await
        .unwrap();
    let channel = conn.create_channel().await.unwrap();
    let exchange = format!("{}.changes-by-origin", t.namespace);
    // Made now, so after user 1 followed user 2 (the timeline shows only those).
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let post = |lsn: u64, text: &str| RemoteChange {
        origin_cluster: 2,
        origin_lsn: lsn,
        timestamp_ms: now_ms,
        hlc: 0,
        change: Some(Change {
            kind: Some(change::Kind::Post(PostCreated {
                author: 2,
                post_id: lsn,
                text: text.into(),
                author_name: String::new(),
                number: lsn,
                ..Default::default()
            })),
        }),
    };
    let envelope = |version, change, changes| BusEnvelope {
        version,
        change,
        changes,
    };
    // Signed with the cluster secret, as a member would: they pass the signature check and
    // must be caught by decoding and by tsd.
    let signed_poison = [
        b"\xff\xff\xff not protobuf".to_vec(),
        envelope(99, None, vec![post(1_000_001, "from the future")]).encode_to_vec(),
        envelope(1, None, vec![]).encode_to_vec(),
        envelope(2, None, vec![]).encode_to_vec(),
        // Decodable, but tsd refuses its second change: the first is applied all the same,
        // and the message is kept in the dead-letter queue.
        envelope(
            2,
            None,
            vec![post(1_000_002, "half of a bad batch"), post(1_000_003, "bell\u{7}")],
        )
        .encode_to_vec(),
        // Valid, but more than tsd takes in one call (4 MiB): refused for its size every
        // time, it must end in the dead-letter queue instead of blocking the queue.
        envelope(
            2,
            None,
            (0..1_200).map(|i| post(2_000_000 + i, &"x".repeat(4_000))).collect(),
        )
        .encode_to_vec(),
    ];
    // Valid changes from someone who can publish to the broker but lacks the secret: unsigned,
    // and signed with another secret.
    let forged = envelope(2, None, vec![post(1_000_004, "forged")]).encode_to_vec();
    let wrong_secret = ClusterSecret::new(&"f".repeat(40)).unwrap();
    let mut poison: Vec<(Vec<u8>, Option<&ClusterSecret>)> =
        signed_poison.into_iter().map(|p| (p, Some(&t.secret))).collect();
    poison.push((forged.clone(), None));
    poison.push((forged, Some(&wrong_secret)));
    // Published as if by cluster 2: clusters 1 and 3 get each message.
    for (payload, secret) in &poison {
        channel
            .basic_publish(
                exchange.as_str().into(),
                "from.2".into(),
                BasicPublishOptions::default(),
                payload,
                BasicProperties::default()
                    .with_delivery_mode(2)
                    .with_headers(signature(payload, *secret)),
            )
            .await
            .unwrap()
            .await
            .unwrap();
    }
    assert_eq!(
        expect_post(&mut t1, Duration::from_secs(15)).await.text,
        "half of a bad batch"
    );
    // The queues keep flowing: a post made after the poison arrives.
    t2.post("after the poison").await.unwrap();
    assert_eq!(
        expect_post(&mut t1, Duration::from_secs(15)).await.text,
        "after the poison",
        "the forged post must never show"
    );
    assert!(t1.collect(Duration::from_millis(300)).await.unwrap().is_empty());
    // Both consumers moved each poison message to the dead-letter queue.
    let dead = format!("{}.dead-letter", t.namespace);
    let passive = QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    let count = eventually!(
        "poison messages in the dead-letter queue",
        Duration::from_secs(15),
        async {
            let q = channel
                .queue_declare(dead.as_str().into(), passive, FieldTable::default())
                .await
                .ok()?;
            (q.message_count() as usize == poison.len() * 2).then_some(q.message_count())
        }
    );
    println!("{count} poison deliveries dead-lettered");
    let logs: String = (1..=6)
        .map(|i| std::fs::read_to_string(t.options.dir.join(format!("logs/synchronizer-{i}.log"))).unwrap_or_default())
        .collect();
    assert!(
        logs.contains("poison message dead-lettered"),
        "no log line for the poison messages"
    );
}
