//! The rollout step of a whole reconcile, against the mocked API server and fake
//! coordinators (`crate::fixtures`).

use std::sync::Arc;

use serde_json::{Value, json};

use crate::crd::SocialClusterSpec;
use crate::fixtures::{ApiServer, FakeCoordinators, Recorded, run_with, socialcluster};
use crate::reconcile::tests::{condition, status_patch};
use crate::reconcile::{Outcome, RESYNC_ROLLING, SWITCHOVER_ANNOTATION};

const OLD: &str = "demo-v1";
const NEW: &str = "demo-v2";

fn pod(sts: &str, ordinal: u32, revision: &str, ready: bool) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": format!("{sts}-{ordinal}"), "namespace": "ns1",
            "labels": {"controller-revision-hash": revision},
            "ownerReferences": [{
                "apiVersion": "apps/v1", "kind": "StatefulSet", "name": sts, "uid": "sts-uid",
                "controller": true
            }]
        },
        "status": {"conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}
    })
}

/// Every pod of the default SocialCluster (3 coordinators; 3 clusters of 2 servers and 2
/// synchronizers), ready; `revision` picks each pod's revision from its StatefulSet name and
/// ordinal.
pub(in crate::reconcile) fn pods(revision: impl Fn(&str, u32) -> &'static str) -> Vec<Value> {
    let mut sets = vec![("demo-coordinator".to_owned(), 3)];
    for k in 1..=3 {
        sets.push((format!("demo-tsd-{k}"), 2));
        sets.push((format!("demo-sync-{k}"), 2));
    }
    sets.iter()
        .flat_map(|(sts, n)| (0..*n).map(|o| pod(sts, o, revision(sts, o), true)).collect::<Vec<_>>())
        .collect()
}

/// An API server on which every StatefulSet's template changed (update revision NEW) and
/// whose pods are `pods`.
fn rolling(pods: Vec<Value>) -> (crate::crd::SocialCluster, ApiServer) {
    let sc = socialcluster(SocialClusterSpec::default());
    let mut server = ApiServer::new(&sc);
    server.ready = true;
    server.revision = Some((NEW, 0));
    server.lists.insert("pods", pods);
    (sc, server)
}

fn deleted_pods(seen: &[Recorded]) -> Vec<&str> {
    seen.iter()
        .filter(|r| r.method == "DELETE" && r.path.contains("/pods/"))
        .map(Recorded::name)
        .collect()
}

fn events(seen: &[Recorded]) -> Vec<String> {
    seen.iter()
        .filter(|r| r.method == "POST" && r.path.contains("/events"))
        .map(|r| {
            format!(
                "{}: {}",
                r.body["reason"].as_str().unwrap_or(""),
                r.body["note"].as_str().unwrap_or("")
            )
        })
        .collect()
}

fn progressing(seen: &[Recorded]) -> Value {
    condition(&status_patch(seen).body, "Progressing").clone()
}

fn cluster_status(seen: &[Recorded], k: u64) -> Value {
    status_patch(seen).body["status"]["clusters"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["id"] == k))
        .cloned()
        .expect("the cluster's status")
}

#[tokio::test]
async fn a_changed_template_updates_the_highest_coordinator_first_and_nothing_else() {
    let (sc, server) = rolling(pods(|_, _| OLD));
    let coordinators = Arc::new(FakeCoordinators::healthy(3, 2));
    let (result, seen) = run_with(sc, server, coordinators.clone()).await;
    let (action, outcome) = result.expect("reconcile succeeds");
    assert_eq!(outcome, Outcome::Applied { ready: false });
    assert_eq!(action, kube::runtime::controller::Action::requeue(RESYNC_ROLLING));
    assert_eq!(deleted_pods(&seen), ["demo-coordinator-2"]);
    assert_eq!(progressing(&seen)["reason"], "RollingCoordinators");
    assert!(
        events(&seen)
            .iter()
            .any(|e| e.starts_with("RollingUpdate: deleting pod demo-coordinator-2"))
    );
    // The pods were listed with the instance's labels only.
    let list = seen
        .iter()
        .find(|r| r.method == "GET" && r.path == "/api/v1/namespaces/ns1/pods")
        .expect("the pods were listed");
    assert!(
        list.query.contains("app.kubernetes.io%2Finstance%3Ddemo"),
        "{}",
        list.query
    );
    assert_eq!(
        coordinators.calls(),
        [
            "roles demo-coordinator-0.demo-coordinator.ns1.svc.cluster.local:29000,demo-coordinator-1.demo-coordinator.ns1.svc.cluster.local:29000,demo-coordinator-2.demo-coordinator.ns1.svc.cluster.local:29000"
        ]
    );
}

#[tokio::test]
async fn with_the_coordinators_updated_the_first_cluster_updates_its_slave() {
    let (sc, server) = rolling(pods(|sts, _| if sts.starts_with("demo-tsd") { OLD } else { NEW }));
    let (result, seen) = run_with(sc, server, Arc::new(FakeCoordinators::healthy(3, 2))).await;
    result.expect("reconcile succeeds");
    // Server 2 (ordinal 1) is cluster 1's slave.
    assert_eq!(deleted_pods(&seen), ["demo-tsd-1-1"]);
    assert_eq!(progressing(&seen)["reason"], "RollingSlaves");
    let cluster1 = cluster_status(&seen, 1);
    assert_eq!(
        (cluster1["phase"].as_str(), cluster1["master"].as_u64()),
        (Some("RollingSlaves"), Some(1))
    );
    assert_eq!(cluster_status(&seen, 2)["phase"], "NotReady");
}

#[tokio::test]
async fn an_updated_slave_in_sync_takes_over_before_the_master_is_updated() {
    let (sc, server) = rolling(pods(|sts, o| if sts == "demo-tsd-1" && o == 0 { OLD } else { NEW }));
    let coordinators = Arc::new(FakeCoordinators::healthy(3, 2));
    let (result, seen) = run_with(sc, server, coordinators.clone()).await;
    result.expect("reconcile succeeds");
    assert!(deleted_pods(&seen).is_empty(), "no pod is deleted in the same step");
    assert_eq!(coordinators.calls()[1], "switchover 1 Some(2)");
    assert!(
        events(&seen)
            .iter()
            .any(|e| e.starts_with("Switchover: cluster 1: server 2 is master"))
    );
    assert_eq!(progressing(&seen)["reason"], "SwitchingOver");
}

#[tokio::test]
async fn coordinators_that_do_not_answer_hold_the_rollout() {
    let (sc, server) = rolling(pods(|sts, _| if sts.starts_with("demo-tsd") { OLD } else { NEW }));
    let coordinators = Arc::new(FakeCoordinators {
        down: true,
        ..FakeCoordinators::default()
    });
    let (result, seen) = run_with(sc, server, coordinators).await;
    result.expect("an unreachable coordinator is no reconcile error");
    assert!(deleted_pods(&seen).is_empty());
    let condition = progressing(&seen);
    assert_eq!(condition["reason"], "RolloutWaiting");
    assert!(
        condition["message"]
            .as_str()
            .unwrap_or("")
            .contains("coordinators cannot be asked")
    );
}

fn annotated(value: &str) -> (crate::crd::SocialCluster, ApiServer) {
    let mut sc = socialcluster(SocialClusterSpec::default());
    sc.metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert(SWITCHOVER_ANNOTATION.to_owned(), value.to_owned());
    let mut server = ApiServer::new(&sc);
    server.ready = true;
    (sc, server)
}

fn removed_annotation(seen: &[Recorded]) -> bool {
    seen.iter().any(|r| {
        r.method == "PATCH"
            && r.path == "/apis/tinysns.io/v1alpha1/namespaces/ns1/socialclusters/demo"
            && r.body["metadata"]["annotations"][SWITCHOVER_ANNOTATION].is_null()
            && r.body["metadata"]["annotations"]
                .as_object()
                .is_some_and(|a| a.contains_key(SWITCHOVER_ANNOTATION))
    })
}

#[tokio::test]
async fn a_switchover_annotation_is_carried_out_reported_and_removed() {
    let (sc, server) = annotated("2/2");
    let coordinators = Arc::new(FakeCoordinators::healthy(3, 2));
    let (result, seen) = run_with(sc, server, coordinators.clone()).await;
    result.expect("reconcile succeeds");
    assert_eq!(coordinators.calls()[0], "switchover 2 Some(2)");
    assert!(
        events(&seen)
            .iter()
            .any(|e| e == "Switchover: cluster 2: server 2 is master, as asked")
    );
    assert!(removed_annotation(&seen));
    assert_eq!(cluster_status(&seen, 2)["master"], 2);
}

#[tokio::test]
async fn a_bad_switchover_annotation_is_refused_and_removed() {
    let (sc, server) = annotated("9");
    let coordinators = Arc::new(FakeCoordinators::healthy(3, 2));
    let (result, seen) = run_with(sc, server, coordinators.clone()).await;
    result.expect("reconcile succeeds");
    assert!(coordinators.calls().iter().all(|c| !c.starts_with("switchover")));
    assert!(events(&seen).iter().any(|e| e.starts_with("SwitchoverRefused:")));
    assert!(removed_annotation(&seen));
}
