//! The whole system over TLS: clients check servers against the CA, members authenticate
//! each other with certificates (mutual TLS) on top of the cluster secret, synchronizers
//! reach the broker over amqps://, and a plaintext client or a member without a certificate
//! gets nowhere.

mod common;

use common::*;
use std::time::Duration;
use tinysns_common::grpc::{MemberCredentials, internal_channel};
use tinysns_common::proto::coordinator::ListClustersRequest;
use tinysns_common::proto::coordinator::membership_client::MembershipClient;
use tinysns_common::proto::social::{LoginRequest, Status as Code};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_system_runs_over_tls_and_refuses_plaintext_and_certificateless_peers() {
    let t = start_with("tls", |o| {
        o.tls = true;
        o.synchronizers_per_cluster = 1;
    })
    .await;
    // Clients over TLS, and a post crossing clusters: tsd, coordinator, synchronizers, the
    // replication between members and the broker (amqps://, checked against the run's CA via
    // --amqp-ca-file) all spoke TLS to get it there.
    assert!(t.amqp_url.starts_with("amqps://"), "{}", t.amqp_url);
    let (mut u1, mut u2) = (login(&t, 1).await, login(&t, 2).await);
    until_known(&mut u1, &[2]).await;
    assert_eq!(u1.follow(&t.name(2)).await.unwrap(), Code::Success);
    let mut t1 = u1.timeline(0).await.unwrap();
    let mut t2 = u2.timeline(0).await.unwrap();
    t2.post("over tls").await.unwrap();
    assert_eq!(expect_post(&mut t1, Duration::from_secs(10)).await.text, "over tls");

    // A plaintext client on a TLS client port.
    let master = t.view(1).await.unwrap().master.unwrap();
    let plain = social_client(&master.address)
        .login(LoginRequest {
            user_id: 1,
            ..Default::default()
        })
        .await;
    assert!(plain.is_err(), "a plaintext call was answered: {plain:?}");

    // A caller with the secret and the CA but no certificate of its own: refused by mutual TLS.
    let no_certificate = MemberCredentials::new(Some(t.secret.clone()), t.client_tls(false));
    let address = format!("127.0.0.1:{}", t.coordinators[0].internal_port);
    let channel = internal_channel(&address, Duration::from_secs(1), &no_certificate).unwrap();
    let refused = MembershipClient::new(channel)
        .list_clusters(ListClustersRequest {})
        .await;
    assert!(refused.is_err(), "a member without a certificate was answered");
    let channel = internal_channel(&address, Duration::from_secs(1), &t.member_credentials()).unwrap();
    let views = MembershipClient::new(channel)
        .list_clusters(ListClustersRequest {})
        .await;
    assert_eq!(views.unwrap().into_inner().clusters, 3);

    // Kubernetes-style health checks, in plaintext on their own port.
    let port = t.coordinators[0].health_port.expect("a health port with TLS");
    let channel = tinysns_common::grpc::channel(&format!("127.0.0.1:{port}"), Duration::from_secs(1)).unwrap();
    let health = tonic_health::pb::health_client::HealthClient::new(channel)
        .check(tonic_health::pb::HealthCheckRequest { service: String::new() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        health.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );

    // tsc with --tls-ca.
    let files = t.certs.clone().expect("certificates");
    let ca = files.ca.display().to_string();
    let (code, out) = tsc_as(&t, 1, &["--tls-ca", &ca]).finish(Duration::from_secs(20));
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("Cmd> "), "{out}");
    // Without it, tsc cannot reach a TLS system.
    let (code, out) = tsc_as(&t, 1, &[]).finish(Duration::from_secs(20));
    assert_eq!((code, out.as_str()), (Some(1), "connection failed: -1\n"));
}
