//! Internal APIs are for members only. Each attack below worked against the system before
//! the internal port and the cluster secret existed (one forged Append emptied a replica, one
//! heartbeat sent a cluster's users to any address, one ApplyRemote wrote a post in another
//! user's name). Now each is refused with a clear status, and the stored state of every
//! replica and the coordinator's routing are unchanged afterwards.

mod common;

use common::*;
use std::time::Duration;
use tinysns_common::grpc::{InternalChannel, MemberCredentials, internal_channel};
use tinysns_common::proto::coordinator::RaftMessage;
use tinysns_common::proto::coordinator::consensus_client::ConsensusClient;
use tinysns_common::proto::coordinator::coordinator_client::CoordinatorClient;
use tinysns_common::proto::coordinator::membership_client::MembershipClient;
use tinysns_common::proto::coordinator::{
    GetServerRequest, HeartbeatRequest, ListClustersRequest, Member, MemberKind, Role, SwitchoverRequest,
};
use tinysns_common::proto::internal::change_feed_client::ChangeFeedClient;
use tinysns_common::proto::internal::peer_client::PeerClient;
use tinysns_common::proto::internal::replication_client::ReplicationClient;
use tinysns_common::proto::internal::{
    AppendRequest, ApplyRemoteRequest, Change, ChangeFeedRequest, CommitCursorRequest, LogEntry, PeerPostsRequest,
    PostCreated, RemoteChange, SnapshotChunk, change, log_entry,
};
use tinysns_common::secret::ClusterSecret;
use tinysns_stack::topology::Topology;
use tonic::Code;

/// The three ways to knock: on the client port, on the internal port without the secret,
/// and with a wrong one.
fn outsiders(client: u16, internal: u16) -> Vec<(&'static str, InternalChannel, Code)> {
    let wrong = MemberCredentials::new(Some(ClusterSecret::new(&"0".repeat(48)).unwrap()), None);
    let at = |port: u16, secret: &MemberCredentials| {
        internal_channel(&format!("127.0.0.1:{port}"), Duration::from_secs(1), secret).unwrap()
    };
    vec![
        (
            "client port",
            at(client, &MemberCredentials::default()),
            Code::Unimplemented,
        ),
        (
            "internal port, no secret",
            at(internal, &MemberCredentials::default()),
            Code::Unauthenticated,
        ),
        (
            "internal port, wrong secret",
            at(internal, &wrong),
            Code::Unauthenticated,
        ),
    ]
}

fn forged_entry(lsn: u64, term: u64) -> LogEntry {
    LogEntry {
        lsn,
        term,
        timestamp_ms: 1,
        hlc: 1000,
        origin_cluster: 1,
        origin_lsn: lsn,
        kind: Some(log_entry::Kind::Change(Change {
            kind: Some(change::Kind::Post(PostCreated {
                author: 1,
                post_id: 666,
                text: "forged".into(),
                author_name: String::new(),
                number: 1,
                ..Default::default()
            })),
        })),
    }
}

/// The old attack: `lsn = 0` and a term far ahead truncated the slave's whole log.
/// A whole "snapshot" in one chunk that is no SQLite database.
fn garbage_snapshot(term: u64) -> SnapshotChunk {
    SnapshotChunk {
        term,
        master_id: 9,
        offset: 0,
        data: vec![7; 8192],
        last: true,
    }
}

fn forged_append() -> AppendRequest {
    AppendRequest {
        term: u64::MAX - 1,
        master_id: 9,
        prev_lsn: 0,
        prev_term: 0,
        entries: vec![forged_entry(0, u64::MAX - 1)],
        commit_lsn: 0,
    }
}

/// A post in user 1's name (home cluster 1) claimed to come from cluster 2.
fn forged_remote_post() -> ApplyRemoteRequest {
    ApplyRemoteRequest {
        changes: vec![RemoteChange {
            origin_cluster: 2,
            origin_lsn: 5,
            timestamp_ms: tinysns_common::now_ms(),
            hlc: 0,
            change: Some(Change {
                kind: Some(change::Kind::Post(PostCreated {
                    author: 1,
                    post_id: 667,
                    text: "in someone else's name".into(),
                    author_name: String::new(),
                    number: 1,
                    ..Default::default()
                })),
            }),
        }],
    }
}

/// The old hijack: a heartbeat claiming mastership of cluster 1 at a higher term.
fn hijack(term: u64, id: u32, address: &str) -> HeartbeatRequest {
    HeartbeatRequest {
        member: Some(Member {
            kind: MemberKind::Server as i32,
            cluster_id: 1,
            member_id: id,
            address: address.into(),
            internal_address: address.into(),
            incarnation: 1,
            ..Default::default()
        }),
        believed_role: Role::Master as i32,
        believed_term: term,
        applied_lsn: u64::MAX / 2,
        in_sync: vec![],
        ..Default::default()
    }
}

async fn route_of_user_1(t: &Topology) -> (String, u64) {
    let channel = tinysns_common::grpc::channel(&t.coordinator_address(), Duration::from_secs(1)).unwrap();
    let info = CoordinatorClient::new(channel)
        .get_server(GetServerRequest {
            user_id: 1,
            username: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    (info.address, info.term)
}

fn code<T>(result: Result<T, tonic::Status>) -> Code {
    match result {
        Ok(_) => Code::Ok,
        Err(status) => status.code(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internal_apis_refuse_outsiders_and_malformed_calls() {
    let t = start_with("internal-auth", |o| o.synchronizers_per_cluster = 1).await;
    let mut u1 = login(&t, 1).await;
    let mut timeline = u1.timeline(0).await.unwrap();
    timeline.post("before the attacks").await.unwrap();
    let digests = settled_digests(&t).await;
    let route = route_of_user_1(&t).await;

    let master = t.master_server(1).await.unwrap();
    let m = &t.servers[&(1, master)];
    let slave = &t.servers[&(1, 3 - master)];
    let c3 = &t.servers[&(3, t.master_server(3).await.unwrap())];

    // Outsiders: every internal RPC of tsd (slave and master) and of the coordinator.
    for (server, name) in [(slave, "slave"), (m, "master")] {
        for (how, channel, expected) in outsiders(server.port, server.internal_port) {
            let mut replication = ReplicationClient::new(channel.clone());
            assert_eq!(
                code(replication.append(forged_append()).await),
                expected,
                "{name} Append, {how}"
            );
            let chunk = garbage_snapshot(1);
            assert_eq!(
                code(replication.install_snapshot(chunk).await),
                expected,
                "{name} InstallSnapshot, {how}"
            );
            let mut feed = ChangeFeedClient::new(channel.clone());
            let cursor = CommitCursorRequest { lsn: i64::MAX as u64 };
            assert_eq!(
                code(feed.commit_cursor(cursor).await),
                expected,
                "{name} CommitCursor, {how}"
            );
            assert_eq!(
                code(feed.apply_remote(forged_remote_post()).await),
                expected,
                "{name} ApplyRemote, {how}"
            );
            let subscribe = feed.subscribe(ChangeFeedRequest { after_lsn: 0 }).await;
            assert_eq!(code(subscribe), expected, "{name} Subscribe, {how}");
            // Another cluster's read for a viewer it names: only for members.
            let mut peer = PeerClient::new(channel);
            let read = PeerPostsRequest {
                viewer: 2,
                author: 1,
                request: Some(Default::default()),
            };
            assert_eq!(code(peer.posts(read).await), expected, "{name} Peer.Posts, {how}");
        }
    }
    for (how, channel, expected) in outsiders(t.coordinators[0].port, t.coordinators[0].internal_port) {
        let mut members = MembershipClient::new(channel);
        let beat = members.heartbeat(hijack(1 << 40, 9, "evil.example:1")).await;
        assert_eq!(code(beat), expected, "Heartbeat, {how}");
        assert_eq!(
            code(members.list_clusters(ListClustersRequest {}).await),
            expected,
            "ListClusters, {how}"
        );
        let switchover = SwitchoverRequest {
            cluster_id: 1,
            to_member_id: 3 - master,
            timeout_ms: 0,
        };
        assert_eq!(
            code(members.switchover(switchover).await),
            expected,
            "Switchover, {how}"
        );
    }
    // The coordinators' Raft messages: never on the client port, never without the secret.
    for (how, channel, expected) in outsiders(t.coordinators[0].port, t.coordinators[0].internal_port) {
        let mut raft = ConsensusClient::new(channel);
        let forged = RaftMessage {
            json: br#"{"vote":{"leader_id":{"term":999,"node_id":7},"committed":false},"last_log_id":null}"#.to_vec(),
        };
        assert_eq!(code(raft.vote(forged).await), expected, "Raft Vote, {how}");
    }

    // Members' credentials do not make malformed calls acceptable.
    let member = |port: u16| {
        internal_channel(
            &format!("127.0.0.1:{port}"),
            Duration::from_secs(1),
            &t.member_credentials(),
        )
        .unwrap()
    };
    let mut replication = ReplicationClient::new(member(slave.internal_port));
    assert_eq!(
        code(replication.append(forged_append()).await),
        Code::InvalidArgument,
        "lsn 0"
    );
    // A snapshot that is not a store, under the current term, changes nothing and leaves
    // the slave up; a chunk out of order or under term 0 is refused before it is written.
    let term = t.view(1).await.unwrap().term;
    assert_eq!(
        code(replication.install_snapshot(garbage_snapshot(term)).await),
        Code::Internal,
        "garbage snapshot"
    );
    let mut late = garbage_snapshot(term);
    late.offset = 4096;
    assert_eq!(
        code(replication.install_snapshot(late).await),
        Code::FailedPrecondition,
        "a chunk of no snapshot begun"
    );
    assert_eq!(
        code(replication.install_snapshot(garbage_snapshot(0)).await),
        Code::InvalidArgument,
        "term 0"
    );
    let mut gap = forged_append();
    gap.term = 1;
    gap.entries = vec![forged_entry(1, 1), forged_entry(3, 1)];
    assert_eq!(code(replication.append(gap).await), Code::InvalidArgument, "a gap");
    let mut feed = ChangeFeedClient::new(member(m.internal_port));
    let cursor = CommitCursorRequest { lsn: i64::MAX as u64 };
    assert_eq!(
        code(feed.commit_cursor(cursor).await),
        Code::InvalidArgument,
        "cursor past the log"
    );
    // Another cluster's read names the user it acts for and carries its request.
    let mut peer = PeerClient::new(member(m.internal_port));
    let nobody = PeerPostsRequest {
        viewer: 0,
        author: 1,
        request: Some(Default::default()),
    };
    assert_eq!(
        code(peer.posts(nobody).await),
        Code::InvalidArgument,
        "a read for no user"
    );
    let empty = PeerPostsRequest {
        viewer: 2,
        author: 1,
        request: None,
    };
    assert_eq!(
        code(peer.posts(empty).await),
        Code::InvalidArgument,
        "a read without its request"
    );
    let mut feed3 = ChangeFeedClient::new(member(c3.internal_port));
    let reply = feed3.apply_remote(forged_remote_post()).await.unwrap().into_inner();
    assert_eq!(
        (reply.applied, reply.rejected),
        (0, vec![0]),
        "post in another cluster's user's name"
    );
    // A member's secret does not make garbage a Raft message.
    let mut raft = ConsensusClient::new(member(t.coordinators[0].internal_port));
    let garbage = raft
        .append_entries(RaftMessage {
            json: b"{ not raft".to_vec(),
        })
        .await;
    assert_eq!(code(garbage), Code::InvalidArgument, "garbage Raft message");
    let mut members = MembershipClient::new(member(t.coordinators[0].internal_port));
    let near_max = members.heartbeat(hijack(u64::MAX - 1, 9, "evil.example:1")).await;
    assert_eq!(code(near_max), Code::InvalidArgument, "term near u64::MAX");
    let moved = members.heartbeat(hijack(1, master, "evil.example:1")).await;
    assert_eq!(code(moved), Code::AlreadyExists, "a live member's id at a new address");
    // Switchovers the coordinator cannot do are refused, and change nothing.
    for (cluster_id, to_member_id, timeout_ms, expected, what) in [
        (0, 0, 0, Code::InvalidArgument, "cluster 0"),
        (4, 0, 0, Code::InvalidArgument, "a cluster that does not exist"),
        (1, 9, 0, Code::FailedPrecondition, "a target that is no member"),
        (1, 0, u32::MAX, Code::InvalidArgument, "a timeout of 49 days"),
    ] {
        let request = SwitchoverRequest {
            cluster_id,
            to_member_id,
            timeout_ms,
        };
        assert_eq!(
            code(members.switchover(request).await),
            expected,
            "switchover to {what}"
        );
    }

    // Nothing changed: stored state, routing, service.
    assert_eq!(settled_digests(&t).await, digests, "a replica's stored state changed");
    assert_eq!(route_of_user_1(&t).await, route, "the coordinator's routing changed");
    timeline.post("after the attacks").await.unwrap();
    let log = std::fs::read_to_string(m.process.log_path()).unwrap();
    let warnings = log
        .matches("refused an internal call without the cluster secret")
        .count();
    assert_eq!(warnings, 1, "each refused peer is logged once:\n{log}");
    let slave_log = std::fs::read_to_string(slave.process.log_path()).unwrap();
    assert!(
        !slave_log.contains("giving up this server's role"),
        "a bad snapshot stopped the slave:\n{slave_log}"
    );
}
