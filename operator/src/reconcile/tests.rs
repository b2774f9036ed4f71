//! Reconcile tests against the mocked API server in `fixtures`.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::ObjectMeta;
use serde_json::{Value, json};

use super::*;
use crate::crd::SocialClusterSpec;
use crate::fixtures::{ApiServer, Recorded, run, socialcluster};
use crate::render::RENDER_UID;

const NS: &str = "/namespaces/ns1/";

fn writes(seen: &[Recorded]) -> Vec<&Recorded> {
    seen.iter()
        .filter(|r| r.method != "GET" && !r.path.contains("/events") && !r.path.ends_with("/status"))
        .collect()
}

pub(super) fn status_patch(seen: &[Recorded]) -> &Recorded {
    let patches: Vec<_> = seen.iter().filter(|r| r.path.ends_with("/status")).collect();
    assert_eq!(patches.len(), 1, "exactly one status write");
    let p = patches[0];
    assert_eq!(p.method, "PATCH");
    assert_eq!(
        p.path,
        "/apis/tinysns.io/v1alpha1/namespaces/ns1/socialclusters/demo/status"
    );
    assert!(p.query.contains("fieldManager=tinysns-operator") && p.query.contains("force=true"));
    assert_eq!(p.body["apiVersion"], "tinysns.io/v1alpha1");
    assert_eq!(p.body["kind"], "SocialCluster");
    p
}

pub(super) fn condition<'a>(status: &'a Value, type_: &str) -> &'a Value {
    status["status"]["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == type_))
        .unwrap_or_else(|| panic!("no {type_} condition in {status}"))
}

/// Checks that `status` says Degraded=True for `reason` with a message containing `text`;
/// returns the message.
fn degraded_message(status: &Value, reason: &str, text: &str) -> String {
    let degraded = condition(status, "Degraded");
    assert_eq!(degraded["status"], "True", "{degraded}");
    assert_eq!(degraded["reason"], reason, "{degraded}");
    let message = degraded["message"].as_str().unwrap_or_default().to_owned();
    assert!(message.contains(text), "{degraded}");
    message
}

fn applied<'a>(seen: &'a [Recorded], plural: &str, name: &str) -> &'a Recorded {
    let suffix = format!("/{plural}/{name}");
    seen.iter()
        .find(|r| r.method == "PATCH" && r.path.ends_with(&suffix))
        .unwrap_or_else(|| panic!("{plural}/{name} was not applied"))
}

fn stored_secret(name: &str, key: &str, value: &str) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some("ns1".to_owned()),
            ..ObjectMeta::default()
        },
        data: Some(BTreeMap::from([(
            key.to_owned(),
            ByteString(value.as_bytes().to_vec()),
        )])),
        ..Secret::default()
    }
}

fn existing_secret(password: &str) -> Secret {
    let mut secret = stored_secret("demo-rabbitmq-credentials", "password", password);
    if let Some(data) = secret.data.as_mut() {
        data.insert(
            "erlang-cookie".to_owned(),
            ByteString(KEPT_ERLANG_COOKIE.as_bytes().to_vec()),
        );
    }
    secret
}

const KEPT_ERLANG_COOKIE: &str = "KeepThisErlangCookie0123456789abcdefghijklmnopq";

const KEPT_PASSWORD: &str = "KeepThisPasswordPlease0123456789";
const KEPT_CLUSTER_SECRET: &str = "KeepThisClusterSecretPlease0123456789abcdefghijk";

fn existing_cluster_secret(value: &str) -> Secret {
    stored_secret("demo-cluster-secret", "secret", value)
}

/// A server on which both generated Secrets already exist (a second reconcile).
fn existing(sc: &crate::crd::SocialCluster) -> ApiServer {
    ApiServer::new(sc)
        .with_secret(existing_secret(KEPT_PASSWORD))
        .with_secret(existing_cluster_secret(KEPT_CLUSTER_SECRET))
}

/// The value of `key` in the Secret applied as `name`.
fn applied_secret_value(seen: &[Recorded], name: &str, key: &str) -> String {
    let secret: Secret = serde_json::from_value(applied(seen, "secrets", name).body.clone()).expect("a Secret");
    let bytes = secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .unwrap_or_else(|| panic!("{name} has no {key}"));
    String::from_utf8(bytes.0.clone()).expect("UTF-8")
}

#[tokio::test]
async fn create_applies_every_child_then_writes_status() {
    let sc = socialcluster(SocialClusterSpec::default());
    let (result, seen) = run(sc.clone(), ApiServer::new(&sc)).await;
    let (action, outcome) = result.expect("reconcile succeeds");
    assert_eq!(outcome, Outcome::Applied { ready: false });
    assert_eq!(action, Action::requeue(RESYNC_PROGRESSING));

    let lines: Vec<String> = seen.iter().map(Recorded::line).collect();
    let mut expected = vec![
        format!("GET /api/v1{NS}secrets/demo-cluster-secret"),
        format!("GET /api/v1{NS}secrets/demo-rabbitmq-credentials"),
        "GET /apis/apps/v1/namespaces/ns1/statefulsets".to_owned(),
        "GET /api/v1/namespaces/ns1/persistentvolumeclaims".to_owned(),
        format!("PATCH /api/v1{NS}secrets/demo-cluster-secret"),
        format!("PATCH /api/v1{NS}secrets/demo-rabbitmq-credentials"),
        format!("PATCH /api/v1{NS}configmaps/demo-rabbitmq-config"),
    ];
    for svc in ["demo-coordinator", "demo-rabbitmq", "demo-rabbitmq-nodes"] {
        expected.push(format!("PATCH /api/v1{NS}services/{svc}"));
    }
    for k in 1..=3 {
        expected.push(format!("PATCH /api/v1{NS}services/demo-tsd-{k}"));
        expected.push(format!("PATCH /api/v1{NS}services/demo-sync-{k}"));
    }
    expected.push(format!("PATCH /api/v1{NS}services/demo-gateway"));
    expected.push(format!("PATCH /apis/apps/v1{NS}deployments/demo-gateway"));
    expected.push(format!("PATCH /apis/apps/v1{NS}statefulsets/demo-coordinator"));
    expected.push(format!("PATCH /apis/apps/v1{NS}statefulsets/demo-rabbitmq"));
    for k in 1..=3 {
        expected.push(format!("PATCH /apis/apps/v1{NS}statefulsets/demo-tsd-{k}"));
        expected.push(format!("PATCH /apis/apps/v1{NS}statefulsets/demo-sync-{k}"));
    }
    for pdb in ["demo-coordinator", "demo-rabbitmq"] {
        expected.push(format!("PATCH /apis/policy/v1{NS}poddisruptionbudgets/{pdb}"));
    }
    for k in 1..=3 {
        expected.push(format!("PATCH /apis/policy/v1{NS}poddisruptionbudgets/demo-tsd-{k}"));
        expected.push(format!("PATCH /apis/policy/v1{NS}poddisruptionbudgets/demo-sync-{k}"));
    }
    expected.push(format!("PATCH /apis/policy/v1{NS}poddisruptionbudgets/demo-gateway"));
    for role in ["coordinator", "tsd", "synchronizer", "rabbitmq", "gateway"] {
        expected.push(format!(
            "PATCH /apis/networking.k8s.io/v1{NS}networkpolicies/demo-{role}"
        ));
    }
    for list in [
        "/apis/networking.k8s.io/v1/namespaces/ns1/ingresses",
        "/apis/apps/v1/namespaces/ns1/statefulsets",
        "/apis/apps/v1/namespaces/ns1/deployments",
        "/apis/policy/v1/namespaces/ns1/poddisruptionbudgets",
        "/apis/networking.k8s.io/v1/namespaces/ns1/networkpolicies",
        "/api/v1/namespaces/ns1/services",
        "/api/v1/namespaces/ns1/configmaps",
        "/api/v1/namespaces/ns1/secrets",
    ] {
        expected.push(format!("GET {list}"));
    }
    // Discovery: no Prometheus Operator on this server, so no ServiceMonitor.
    expected.push("GET /apis/monitoring.coreos.com/v1".to_owned());
    expected.push("PATCH /apis/tinysns.io/v1alpha1/namespaces/ns1/socialclusters/demo/status".to_owned());
    assert_eq!(lines, expected);

    for r in seen.iter().filter(|r| r.method == "PATCH") {
        assert!(
            r.query.contains("fieldManager=tinysns-operator") && r.query.contains("force=true"),
            "server-side apply with the one field manager: {}?{}",
            r.path,
            r.query
        );
        if !r.path.ends_with("/status") {
            assert_eq!(r.body["metadata"]["name"].as_str(), Some(r.name()));
            assert!(r.body["apiVersion"].is_string() && r.body["kind"].is_string());
        }
    }
    for r in seen
        .iter()
        .filter(|r| r.method == "GET" && r.query.contains("labelSelector"))
    {
        assert!(
            r.query.contains("app.kubernetes.io%2Finstance%3Ddemo"),
            "lists only this instance: {}",
            r.query
        );
    }

    // A fresh random password, stored in the Secret and in the URL.
    let secret = applied(&seen, "secrets", "demo-rabbitmq-credentials");
    let password: Secret = serde_json::from_value(secret.body.clone()).expect("a Secret");
    let password = crate::build::rabbitmq::password_from_secret(&password).expect("generated password");
    assert_eq!(password.len(), 32);

    let tsd = applied(&seen, "statefulsets", "demo-tsd-2");
    assert_eq!(tsd.body["spec"]["replicas"], 2);
    assert_eq!(tsd.body["metadata"]["ownerReferences"][0]["uid"], RENDER_UID);

    let status = status_patch(&seen);
    assert_eq!(status.body["status"]["observedGeneration"], 1);
    assert_eq!(condition(&status.body, "Ready")["status"], "False");
    assert_eq!(condition(&status.body, "Progressing")["status"], "True");
    assert_eq!(condition(&status.body, "Degraded")["status"], "False");
    assert_eq!(status.body["status"]["readyClusters"], 0);
    assert_eq!(
        status.body["status"]["replicas"]["gateway"],
        json!({"ready": 0, "desired": 2})
    );
    let waiting = condition(&status.body, "Ready")["message"].as_str().unwrap_or_default();
    assert!(waiting.contains("gateway 0/2"), "{waiting}");
    assert_eq!(
        status.body["status"]["coordinatorAddress"],
        "demo-coordinator-0.demo-coordinator.ns1.svc.cluster.local:9000,\
         demo-coordinator-1.demo-coordinator.ns1.svc.cluster.local:9000,\
         demo-coordinator-2.demo-coordinator.ns1.svc.cluster.local:9000"
    );
}

#[tokio::test]
async fn all_replicas_ready_sets_ready_true() {
    let sc = socialcluster(SocialClusterSpec::default());
    let mut server = ApiServer::new(&sc);
    server.ready = true;
    let (result, seen) = run(sc, server).await;
    let (action, outcome) = result.expect("reconcile succeeds");
    assert_eq!(outcome, Outcome::Applied { ready: true });
    assert_eq!(action, Action::requeue(RESYNC_READY));
    let status = status_patch(&seen);
    let ready = condition(&status.body, "Ready");
    assert_eq!(ready["status"], "True");
    assert_eq!(ready["reason"], "AllReplicasReady");
    assert_eq!(ready["observedGeneration"], 1);
    assert_eq!(condition(&status.body, "Progressing")["status"], "False");
    assert_eq!(status.body["status"]["readyClusters"], 3);
    assert_eq!(
        status.body["status"]["replicas"]["tsd"],
        json!({"ready": 6, "desired": 6})
    );
    assert_eq!(
        status.body["status"]["replicas"]["synchronizer"],
        json!({"ready": 6, "desired": 6})
    );
    assert_eq!(
        status.body["status"]["replicas"]["rabbitmq"],
        json!({"ready": 1, "desired": 1})
    );
    assert_eq!(
        status.body["status"]["replicas"]["gateway"],
        json!({"ready": 2, "desired": 2})
    );
    assert_eq!(
        status.body["status"]["clusters"][2],
        json!({"id": 3, "phase": "Ready", "tsd": {"ready": 2, "desired": 2}, "synchronizer": {"ready": 2, "desired": 2}})
    );
}

/// A reconcile that finds nothing new writes the same status again (which the API server
/// treats as a no-op), so the operator's own status write cannot retrigger it forever.
#[tokio::test]
async fn reconciling_twice_writes_an_identical_status() {
    let mut sc = socialcluster(SocialClusterSpec::default());
    let mut server = ApiServer::new(&sc);
    server.ready = true;
    server = server
        .with_secret(existing_secret(KEPT_PASSWORD))
        .with_secret(existing_cluster_secret(KEPT_CLUSTER_SECRET));
    let (_, first) = run(sc.clone(), server.clone()).await;
    let first = status_patch(&first).body.clone();
    sc.status = serde_json::from_value(first["status"].clone()).expect("status parses");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (_, second) = run(sc, server).await;
    assert_eq!(status_patch(&second).body, first);
    // Children are applied identically too.
    let fresh = socialcluster(SocialClusterSpec::default());
    let (_, third) = run(fresh.clone(), existing(&fresh)).await;
    let bodies = |seen: &[Recorded]| -> Vec<Value> {
        seen.iter()
            .filter(|r| r.method == "PATCH" && !r.path.ends_with("/status"))
            .map(|r| r.body.clone())
            .collect()
    };
    let (_, fourth) = run(fresh.clone(), existing(&fresh)).await;
    assert_eq!(bodies(&third), bodies(&fourth));
}

#[tokio::test]
async fn spec_change_updates_children_and_keeps_the_password() {
    let mut spec = SocialClusterSpec {
        servers_per_cluster: 3,
        ..SocialClusterSpec::default()
    };
    spec.image.tag = Some("v2".to_owned());
    let mut sc = socialcluster(spec);
    sc.metadata.generation = Some(2);
    let server = existing(&sc);
    let kept = KEPT_PASSWORD;
    let (result, seen) = run(sc, server).await;
    result.expect("reconcile succeeds");

    let secret = applied(&seen, "secrets", "demo-rabbitmq-credentials");
    let secret: Secret = serde_json::from_value(secret.body.clone()).expect("a Secret");
    assert_eq!(
        crate::build::rabbitmq::password_from_secret(&secret).as_deref(),
        Some(kept)
    );
    assert_eq!(
        applied_secret_value(&seen, "demo-cluster-secret", "secret"),
        KEPT_CLUSTER_SECRET
    );

    for k in 1..=3 {
        let tsd = applied(&seen, "statefulsets", &format!("demo-tsd-{k}"));
        assert_eq!(tsd.body["spec"]["replicas"], 3);
        assert_eq!(
            tsd.body["spec"]["template"]["spec"]["containers"][0]["image"],
            "tinysns:v2"
        );
    }
    assert!(seen.iter().all(|r| r.method != "DELETE"), "nothing to delete");
    assert_eq!(status_patch(&seen).body["status"]["observedGeneration"], 2);
}

#[tokio::test]
async fn cluster_secret_is_generated_when_absent_and_mounted_everywhere() {
    let sc = socialcluster(SocialClusterSpec::default());
    let (result, seen) = run(sc.clone(), ApiServer::new(&sc)).await;
    result.expect("reconcile succeeds");

    let value = applied_secret_value(&seen, "demo-cluster-secret", "secret");
    assert_eq!(value.len(), 48);
    assert!(value.chars().all(|c| c.is_ascii_alphanumeric()), "alphanumeric");
    let body = &applied(&seen, "secrets", "demo-cluster-secret").body;
    assert_eq!(body["immutable"], true);
    assert_eq!(body["metadata"]["ownerReferences"][0]["uid"], RENDER_UID);
    assert_eq!(
        body["metadata"]["labels"]["app.kubernetes.io/component"],
        "cluster-secret"
    );
    // It is applied before any workload that mounts it.
    let position = |suffix: &str| {
        seen.iter()
            .position(|r| r.method == "PATCH" && r.path.ends_with(suffix))
            .unwrap_or_else(|| panic!("{suffix} not applied"))
    };
    let secret_at = position("/secrets/demo-cluster-secret");
    for sts in ["demo-coordinator", "demo-tsd-1", "demo-sync-1"] {
        assert!(secret_at < position(&format!("/statefulsets/{sts}")), "{sts}");
        let pod = &applied(&seen, "statefulsets", sts).body["spec"]["template"]["spec"];
        let volumes = pod["volumes"].as_array().expect("volumes");
        assert!(
            volumes
                .iter()
                .any(|v| v["secret"]["secretName"] == "demo-cluster-secret"),
            "{sts} mounts the cluster secret: {volumes:?}"
        );
    }

    // The next reconcile finds it and applies the very same value.
    let (result, again) = run(
        sc.clone(),
        ApiServer::new(&sc).with_secret(existing_cluster_secret(&value)),
    )
    .await;
    result.expect("reconcile succeeds");
    assert_eq!(applied_secret_value(&again, "demo-cluster-secret", "secret"), value);
}

#[tokio::test]
async fn existing_cluster_secret_is_never_regenerated() {
    let sc = socialcluster(SocialClusterSpec::default());
    // Not what the operator generates (base64 with a trailing newline), but what the binaries
    // accept: kept exactly as stored, so re-applying changes nothing in the immutable Secret.
    let stored = "dGhpcyBpcyBhIHByZS1zaGFyZWQgY2x1c3RlciBzZWNyZXQ+/=\n";
    for value in [KEPT_CLUSTER_SECRET, stored] {
        let server = ApiServer::new(&sc).with_secret(existing_cluster_secret(value));
        let (result, seen) = run(sc.clone(), server).await;
        result.expect("reconcile succeeds");
        assert_eq!(applied_secret_value(&seen, "demo-cluster-secret", "secret"), value);
        let patches = seen
            .iter()
            .filter(|r| r.method == "PATCH" && r.path.ends_with("/secrets/demo-cluster-secret"))
            .count();
        assert_eq!(patches, 1);
    }
}

#[tokio::test]
async fn unusable_cluster_secret_is_reported_not_replaced() {
    let sc = socialcluster(SocialClusterSpec::default());
    let short = "tooShortToBeASecret";
    let server = ApiServer::new(&sc).with_secret(existing_cluster_secret(short));
    let (result, seen) = run(sc.clone(), server).await;
    let (action, outcome) = result.expect("reported in status, not an error");
    assert_eq!(outcome, Outcome::InvalidClusterSecret);
    // A hand-made Secret is not watched: look again rather than wait for an event.
    assert_eq!(action, Action::requeue(RESYNC_PROGRESSING));
    assert!(
        seen.iter().all(|r| r.method != "PATCH" || r.path.ends_with("/status")),
        "nothing is applied: {:?}",
        seen.iter().map(Recorded::line).collect::<Vec<_>>()
    );
    assert!(seen.iter().all(|r| r.method != "DELETE"));
    let event = seen.iter().find(|r| r.method == "POST").expect("a Warning event");
    assert_eq!(event.body["type"], "Warning");
    assert_eq!(event.body["reason"], "InvalidClusterSecret");
    let status = status_patch(&seen);
    let message = degraded_message(&status.body, "InvalidClusterSecret", "demo-cluster-secret");
    assert!(message.contains("19 characters"), "{message}");
    for r in &seen {
        assert!(
            !r.body.to_string().contains(short),
            "the value is never echoed: {}",
            r.line()
        );
    }
}

#[tokio::test]
async fn external_broker_keeps_the_cluster_secret_and_drops_the_credentials() {
    let spec = SocialClusterSpec {
        rabbitmq: crate::crd::RabbitMqSpec::External(crate::crd::ExternalRabbitMq {
            queue_type: crate::crd::QueueType::Classic,
            url_secret_ref: crate::crd::SecretKeyRef {
                name: "my-amqp".to_owned(),
                key: "url".to_owned(),
            },
        }),
        ..SocialClusterSpec::default()
    };
    let sc = socialcluster(spec);
    let mut server = existing(&sc);
    server.lists.insert(
        "secrets",
        ["demo-cluster-secret", "demo-rabbitmq-credentials"]
            .iter()
            .map(|n| owned("Secret", "v1", n, RENDER_UID, json!({})))
            .collect(),
    );
    let (result, seen) = run(sc, server).await;
    result.expect("reconcile succeeds");
    let gets: Vec<String> = seen
        .iter()
        .filter(|r| r.method == "GET" && r.path.contains("/secrets/"))
        .map(Recorded::line)
        .collect();
    assert_eq!(gets, [format!("GET /api/v1{NS}secrets/demo-cluster-secret")]);
    assert_eq!(
        applied_secret_value(&seen, "demo-cluster-secret", "secret"),
        KEPT_CLUSTER_SECRET
    );
    let deleted: Vec<String> = seen
        .iter()
        .filter(|r| r.method == "DELETE")
        .map(Recorded::line)
        .collect();
    assert_eq!(
        deleted,
        [format!("DELETE /api/v1{NS}secrets/demo-rabbitmq-credentials")]
    );
}

#[tokio::test]
async fn paused_writes_no_child() {
    let spec = SocialClusterSpec {
        paused: true,
        ..SocialClusterSpec::default()
    };
    let sc = socialcluster(spec);
    let (result, seen) = run(sc.clone(), ApiServer::new(&sc)).await;
    let (action, outcome) = result.expect("reconcile succeeds");
    assert_eq!(outcome, Outcome::Paused);
    assert_eq!(action, Action::await_change());
    assert!(
        writes(&seen).iter().all(|r| r.path.contains("/events")),
        "no child writes: {seen:#?}"
    );
    assert!(
        seen.iter()
            .all(|r| !r.path.contains("/apps/") && !r.path.contains("/secrets"))
    );
    let event = seen.iter().find(|r| r.method == "POST").expect("a Paused event");
    assert_eq!(event.path, "/apis/events.k8s.io/v1/namespaces/ns1/events");
    assert_eq!(event.body["reason"], "Paused");
    let status = status_patch(&seen);
    let progressing = condition(&status.body, "Progressing");
    assert_eq!(progressing["status"], "False");
    assert_eq!(progressing["reason"], "Paused");
}

/// A child as the API server lists it: labelled and controlled by the fixture's uid.
fn owned(kind: &str, api_version: &str, name: &str, uid: &str, extra: Value) -> Value {
    let mut obj = json!({
        "apiVersion": api_version,
        "kind": kind,
        "metadata": {
            "name": name,
            "namespace": "ns1",
            "labels": {"app.kubernetes.io/name": "tinysns", "app.kubernetes.io/instance": "demo",
                       "app.kubernetes.io/managed-by": "tinysns-operator"},
            "ownerReferences": [{"apiVersion": "tinysns.io/v1alpha1", "kind": "SocialCluster",
                                 "name": "demo", "uid": uid, "controller": true}]
        }
    });
    if let (Some(o), Some(e)) = (obj.as_object_mut(), extra.as_object()) {
        o.extend(e.clone());
    }
    obj
}

fn sts(name: &str, uid: &str) -> Value {
    owned(
        "StatefulSet",
        "apps/v1",
        name,
        uid,
        json!({"spec": {"selector": {}, "template": {}, "serviceName": name}}),
    )
}

#[tokio::test]
async fn scale_down_deletes_the_removed_clusters_children() {
    let spec = SocialClusterSpec {
        clusters: 2,
        ..SocialClusterSpec::default()
    };
    let sc = socialcluster(spec);
    let mut server = existing(&sc);
    let mut statefulsets: Vec<Value> = [
        "demo-coordinator",
        "demo-tsd-1",
        "demo-sync-1",
        "demo-tsd-2",
        "demo-sync-2",
        "demo-tsd-3",
        "demo-sync-3",
    ]
    .iter()
    .map(|n| sts(n, RENDER_UID))
    .collect();
    // Same labels but another owner: must survive.
    statefulsets.push(sts("demo-tsd-9", "someone-else"));
    server.lists.insert("statefulsets", statefulsets);
    server.lists.insert(
        "services",
        ["demo-coordinator", "demo-tsd-3", "demo-sync-3"]
            .iter()
            .map(|n| owned("Service", "v1", n, RENDER_UID, json!({})))
            .collect(),
    );
    server.lists.insert(
        "poddisruptionbudgets",
        ["demo-tsd-3", "demo-sync-3", "demo-rabbitmq"]
            .iter()
            .map(|n| owned("PodDisruptionBudget", "policy/v1", n, RENDER_UID, json!({})))
            .collect(),
    );
    // The generated Secrets are still wanted: never deleted as orphans.
    server.lists.insert(
        "secrets",
        ["demo-cluster-secret", "demo-rabbitmq-credentials"]
            .iter()
            .map(|n| owned("Secret", "v1", n, RENDER_UID, json!({})))
            .collect(),
    );
    let (result, seen) = run(sc, server).await;
    result.expect("reconcile succeeds");

    let deleted: Vec<String> = seen
        .iter()
        .filter(|r| r.method == "DELETE")
        .map(Recorded::line)
        .collect();
    assert_eq!(
        deleted,
        [
            format!("DELETE /apis/apps/v1{NS}statefulsets/demo-tsd-3"),
            format!("DELETE /apis/apps/v1{NS}statefulsets/demo-sync-3"),
            format!("DELETE /apis/policy/v1{NS}poddisruptionbudgets/demo-tsd-3"),
            format!("DELETE /apis/policy/v1{NS}poddisruptionbudgets/demo-sync-3"),
            format!("DELETE /api/v1{NS}services/demo-tsd-3"),
            format!("DELETE /api/v1{NS}services/demo-sync-3"),
        ]
    );
    for d in seen.iter().filter(|r| r.method == "DELETE") {
        assert_eq!(d.body["propagationPolicy"], "Background");
    }
    assert!(
        seen.iter().all(|r| !(r.method == "PATCH" && r.name().ends_with("-3"))),
        "cluster 3 is not re-applied"
    );
    let event = seen
        .iter()
        .find(|r| r.method == "POST")
        .expect("an event about the deletion");
    assert_eq!(event.body["reason"], "DeletedOrphans");
    let status = status_patch(&seen);
    assert_eq!(status.body["status"]["clusters"].as_array().map(Vec::len), Some(2));
}

#[tokio::test]
async fn invalid_spec_reports_degraded_without_touching_children() {
    let mut spec = SocialClusterSpec::default();
    spec.timing.failure_timeout = "100ms".to_owned();
    let sc = socialcluster(spec);
    let (result, seen) = run(sc.clone(), ApiServer::new(&sc)).await;
    let (action, outcome) = result.expect("an invalid spec is not a reconcile error");
    assert_eq!(outcome, Outcome::InvalidSpec);
    // No requeue: only an edit of the spec can fix it (and that triggers a reconcile).
    assert_eq!(action, Action::await_change());
    assert_eq!(
        seen.iter().map(Recorded::line).collect::<Vec<_>>(),
        [
            "POST /apis/events.k8s.io/v1/namespaces/ns1/events".to_owned(),
            "PATCH /apis/tinysns.io/v1alpha1/namespaces/ns1/socialclusters/demo/status".to_owned(),
        ]
    );
    assert_eq!(seen[0].body["type"], "Warning");
    assert_eq!(seen[0].body["reason"], "InvalidSpec");
    let status = status_patch(&seen);
    degraded_message(&status.body, "InvalidSpec", "failureTimeout");
    assert_eq!(condition(&status.body, "Ready")["status"], "False");

    // Reconciling again with that status already written publishes no second event.
    let mut sc = sc;
    sc.status = serde_json::from_value(status.body["status"].clone()).expect("status parses");
    let (result, seen) = run(sc.clone(), ApiServer::new(&sc)).await;
    result.expect("still not an error");
    assert!(seen.iter().all(|r| r.method != "POST"), "no repeated event");
    // lastTransitionTime stays put when the status does not change.
    let again = status_patch(&seen);
    assert_eq!(
        condition(&again.body, "Degraded")["lastTransitionTime"],
        condition(&status.body, "Degraded")["lastTransitionTime"]
    );
}

#[tokio::test]
async fn rejected_apply_is_reported_in_status_and_retried() {
    let sc = socialcluster(SocialClusterSpec::default());
    let mut server = existing(&sc);
    server.reject = Some("/statefulsets/demo-tsd-1".to_owned());
    let (result, seen) = run(sc, server).await;
    let err = result.expect_err("a rejected child fails the reconcile (for backoff)");
    assert!(
        matches!(&err, Error::Kube(kube::Error::Api(s)) if s.code == 422),
        "{err}"
    );

    let rejected = seen
        .iter()
        .position(|r| r.path.ends_with("/statefulsets/demo-tsd-1"))
        .expect("the rejected apply was attempted");
    let after: Vec<String> = seen[rejected + 1..].iter().map(Recorded::line).collect();
    assert_eq!(
        after,
        [
            "POST /apis/events.k8s.io/v1/namespaces/ns1/events".to_owned(),
            "PATCH /apis/tinysns.io/v1alpha1/namespaces/ns1/socialclusters/demo/status".to_owned(),
        ],
        "nothing else is applied or deleted after a rejection"
    );
    let event = &seen[rejected + 1];
    assert_eq!(event.body["type"], "Warning");
    assert_eq!(event.body["reason"], "ApplyRejected");
    let status = status_patch(&seen);
    degraded_message(&status.body, "ApplyRejected", "Forbidden");
}

#[tokio::test]
async fn object_without_uid_is_invalid_not_a_crash() {
    let mut sc = socialcluster(SocialClusterSpec::default());
    sc.metadata.uid = None;
    let (result, seen) = run(sc.clone(), ApiServer::new(&sc)).await;
    assert_eq!(result.expect("reported in status").1, Outcome::InvalidSpec);
    assert!(writes(&seen).is_empty());
}

#[tokio::test]
async fn api_errors_are_returned_for_retry() {
    // No mock answers: the verifier panics on nothing, but the client errors when the
    // service is dropped. Simulate by dropping the handle right away.
    let (service, handle) =
        tower_test::mock::pair::<http::Request<kube::client::Body>, http::Response<kube::client::Body>>();
    drop(handle);
    let coordinators = Arc::new(crate::fixtures::FakeCoordinators::default());
    let ctx = crate::fixtures::context(Client::new(service, "default"), coordinators);
    let sc = socialcluster(SocialClusterSpec::default());
    let err = reconcile_inner(&sc, &ctx).await.expect_err("no API server");
    assert!(matches!(err, Error::Kube(_)), "{err}");
}

#[test]
fn backoff_grows_and_is_capped() {
    assert_eq!(backoff(1), Duration::from_secs(2));
    assert_eq!(backoff(2), Duration::from_secs(4));
    assert_eq!(backoff(5), Duration::from_secs(32));
    assert_eq!(backoff(20), BACKOFF_MAX);
    assert_eq!(backoff(u32::MAX), BACKOFF_MAX);
}

#[test]
fn metrics_encode_reconciliations() {
    let m = Metrics::new();
    m.observe("ok", Duration::from_millis(3));
    let text = tinysns_common::metrics::encode(&m).expect("encodes");
    assert!(
        text.contains("tinysns_operator_reconciliations_total{result=\"ok\"} 1"),
        "{text}"
    );
    assert!(text.contains("tinysns_operator_reconcile_duration_seconds"), "{text}");
}

#[tokio::test]
async fn an_upgrade_from_the_deployment_broker_replaces_it_and_keeps_the_password() {
    let sc = socialcluster(SocialClusterSpec::default());
    // What an older operator left: a broker Deployment, and credentials without a cookie.
    let mut server = ApiServer::new(&sc)
        .with_secret(stored_secret("demo-rabbitmq-credentials", "password", KEPT_PASSWORD))
        .with_secret(existing_cluster_secret(KEPT_CLUSTER_SECRET));
    server.lists.insert(
        "deployments",
        vec![owned(
            "Deployment",
            "apps/v1",
            "demo-rabbitmq",
            RENDER_UID,
            json!({"spec": {"selector": {}, "template": {}}}),
        )],
    );
    let (result, seen) = run(sc, server).await;
    result.expect("reconcile succeeds");
    assert!(
        seen.iter()
            .any(|r| r.line() == format!("DELETE /apis/apps/v1{NS}deployments/demo-rabbitmq")),
        "the old broker is deleted"
    );
    applied(&seen, "statefulsets", "demo-rabbitmq");
    assert_eq!(
        applied_secret_value(&seen, "demo-rabbitmq-credentials", "password"),
        KEPT_PASSWORD
    );
    let cookie = applied_secret_value(&seen, "demo-rabbitmq-credentials", "erlang-cookie");
    assert!(cookie.len() >= 32 && cookie.chars().all(|c| c.is_ascii_alphanumeric()));
    // A second reconcile keeps the cookie it stored.
    let stored: Secret =
        serde_json::from_value(applied(&seen, "secrets", "demo-rabbitmq-credentials").body.clone()).expect("a Secret");
    let sc = socialcluster(SocialClusterSpec::default());
    let server = ApiServer::new(&sc)
        .with_secret(stored)
        .with_secret(existing_cluster_secret(KEPT_CLUSTER_SECRET));
    let (result, again) = run(sc, server).await;
    result.expect("reconcile succeeds");
    assert_eq!(
        applied_secret_value(&again, "demo-rabbitmq-credentials", "erlang-cookie"),
        cookie
    );
}

/// A StatefulSet as stored whose data claim template asks for `size`.
pub(super) fn sts_with_claims(name: &str, size: &str) -> Value {
    owned(
        "StatefulSet",
        "apps/v1",
        name,
        RENDER_UID,
        json!({"spec": {"selector": {}, "template": {}, "serviceName": name,
            "volumeClaimTemplates": [{"metadata": {"name": "data"},
                "spec": {"resources": {"requests": {"storage": size}}}}]}}),
    )
}

fn pvc(name: &str, size: &str) -> Value {
    owned(
        "PersistentVolumeClaim",
        "v1",
        name,
        RENDER_UID,
        json!({"spec": {"resources": {"requests": {"storage": size}}},
               "status": {"capacity": {"storage": size}}}),
    )
}

/// A server where cluster 1's servers have 1Gi volumes and the spec asks for 2Gi.
fn grown(reject: Option<&str>) -> (crate::crd::SocialCluster, ApiServer) {
    let mut spec = SocialClusterSpec::default();
    spec.storage.size = k8s_openapi::apimachinery::pkg::api::resource::Quantity("2Gi".to_owned());
    let sc = socialcluster(spec);
    let mut server = existing(&sc);
    server.lists.insert(
        "statefulsets",
        vec![
            sts_with_claims("demo-tsd-1", "1Gi"),
            sts_with_claims("demo-tsd-2", "2Gi"),
        ],
    );
    server.lists.insert(
        "persistentvolumeclaims",
        vec![
            pvc("data-demo-tsd-1-0", "1Gi"),
            pvc("data-demo-tsd-1-1", "1Gi"),
            pvc("data-demo-tsd-2-0", "2Gi"),
        ],
    );
    server.reject = reject.map(str::to_owned);
    (sc, server)
}

#[tokio::test]
async fn grown_storage_expands_the_claims_and_recreates_the_set_without_its_pods() {
    let (sc, server) = grown(None);
    let (result, seen) = run(sc, server).await;
    result.expect("reconcile succeeds");
    let expanded: Vec<(String, Value)> = seen
        .iter()
        .filter(|r| r.method == "PATCH" && r.path.contains("/persistentvolumeclaims/"))
        .map(|r| {
            (
                r.name().to_owned(),
                r.body["spec"]["resources"]["requests"]["storage"].clone(),
            )
        })
        .collect();
    assert_eq!(
        expanded,
        [
            ("data-demo-tsd-1-0".to_owned(), json!("2Gi")),
            ("data-demo-tsd-1-1".to_owned(), json!("2Gi"))
        ],
        "only the smaller claims, to the new size"
    );
    let deleted: Vec<&Recorded> = seen.iter().filter(|r| r.method == "DELETE").collect();
    assert_eq!(
        deleted.len(),
        1,
        "{:?}",
        deleted.iter().map(|r| r.line()).collect::<Vec<_>>()
    );
    assert_eq!(
        deleted[0].line(),
        format!("DELETE /apis/apps/v1{NS}statefulsets/demo-tsd-1")
    );
    assert_eq!(deleted[0].body["propagationPolicy"], "Orphan", "the pods keep running");
    assert!(
        seen.iter()
            .all(|r| !(r.method == "PATCH" && r.path.ends_with("/statefulsets/demo-tsd-1"))),
        "recreated once the API server has removed it"
    );
    applied(&seen, "statefulsets", "demo-tsd-2");
    let event = seen.iter().find(|r| r.method == "POST").expect("an event");
    assert_eq!(event.body["reason"], "ExpandingVolumes");
    let status = status_patch(&seen);
    let volumes = status.body["status"]["volumes"].as_array().expect("volumes in status");
    let phase = |name: &str| {
        volumes
            .iter()
            .find(|v| v["name"] == name)
            .map(|v| (v["requested"].clone(), v["phase"].clone()))
    };
    assert_eq!(phase("data-demo-tsd-1-0"), Some((json!("2Gi"), json!("Expanding"))));
    assert_eq!(phase("data-demo-tsd-2-0"), Some((json!("2Gi"), json!("Ready"))));
}

#[tokio::test]
async fn a_storage_class_that_cannot_expand_keeps_the_set_and_says_so() {
    let (sc, server) = grown(Some("/persistentvolumeclaims/data-demo-tsd-1-0"));
    let (result, seen) = run(sc, server).await;
    result.expect("a refused expansion is reported, not retried as an error");
    assert!(seen.iter().all(|r| r.method != "DELETE"), "nothing recreated");
    let kept = applied(&seen, "statefulsets", "demo-tsd-1");
    assert_eq!(
        kept.body["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"], "1Gi",
        "the old claim template, which the API server accepts"
    );
    let status = status_patch(&seen);
    degraded_message(&status.body, "VolumeExpansionRefused", "allowVolumeExpansion");
}

#[tokio::test]
async fn an_undecodable_object_is_reported_on_itself() {
    use kube::core::DeserializeGuard;
    let guard: DeserializeGuard<crate::crd::SocialCluster> = serde_json::from_value(json!({
        "apiVersion": "tinysns.io/v1alpha1",
        "kind": "SocialCluster",
        "metadata": {"name": "demo", "namespace": "ns1", "uid": RENDER_UID, "generation": 4},
        "spec": {"clusters": "three"}
    }))
    .expect("the guard decodes what the watch hands over");
    let invalid = guard.0.as_ref().expect_err("the spec does not decode");

    let sc = socialcluster(SocialClusterSpec::default());
    let (service, handle) =
        tower_test::mock::pair::<http::Request<kube::client::Body>, http::Response<kube::client::Body>>();
    let verifier = ApiServer::new(&sc).spawn(handle);
    let ctx = crate::fixtures::context(
        kube::Client::new(service, "default"),
        std::sync::Arc::new(crate::fixtures::FakeCoordinators::healthy(3, 2)),
    );
    let action = report_undecodable(invalid, &ctx).await.expect("reported");
    assert_eq!(action, Action::await_change(), "only an edit can fix it");
    drop(ctx);
    let seen = verifier.await.expect("the mock server did not panic");

    let lines: Vec<String> = seen.iter().map(Recorded::line).collect();
    assert_eq!(
        lines,
        [
            "POST /apis/events.k8s.io/v1/namespaces/ns1/events".to_owned(),
            "PATCH /apis/tinysns.io/v1alpha1/namespaces/ns1/socialclusters/demo/status".to_owned(),
        ],
        "nothing but the report"
    );
    assert_eq!(seen[0].body["reason"], "UndecodableObject");
    degraded_message(&seen[1].body, "UndecodableObject", "\"three\"");
    assert_eq!(seen[1].body["status"]["observedGeneration"], 4);
}

#[tokio::test]
async fn a_service_monitor_where_the_prometheus_operator_is_installed() {
    let sc = socialcluster(SocialClusterSpec::default());
    let mut server = existing(&sc);
    server.service_monitors = true;
    let (result, seen) = run(sc, server).await;
    result.expect("reconcile succeeds");
    let monitor = applied(&seen, "servicemonitors", "demo");
    assert_eq!(
        monitor.path,
        "/apis/monitoring.coreos.com/v1/namespaces/ns1/servicemonitors/demo"
    );
    assert_eq!(monitor.body["spec"]["endpoints"][0]["port"], "metrics");

    let mut spec = SocialClusterSpec::default();
    spec.monitoring.service_monitor = false;
    let sc = socialcluster(spec);
    let mut server = existing(&sc);
    server.service_monitors = true;
    let (result, seen) = run(sc, server).await;
    result.expect("reconcile succeeds");
    assert!(
        seen.iter()
            .any(|r| r.line() == "DELETE /apis/monitoring.coreos.com/v1/namespaces/ns1/servicemonitors/demo"),
        "turned off: deleted"
    );
}

/// A spec whose gateway has an Ingress with a certificate.
fn gateway_with_ingress() -> SocialClusterSpec {
    let mut spec = SocialClusterSpec::default();
    spec.gateway.replicas = 3;
    spec.gateway.ingress = Some(crate::crd::GatewayIngress {
        host: "social.example.com".to_owned(),
        tls_secret_name: Some("social-example-tls".to_owned()),
        class_name: Some("nginx".to_owned()),
        annotations: BTreeMap::new(),
    });
    spec
}

#[tokio::test]
async fn the_gateway_and_its_ingress_are_applied_and_their_readiness_reported() {
    let sc = socialcluster(gateway_with_ingress());
    let mut server = existing(&sc);
    server.ready = true;
    let (result, seen) = run(sc, server).await;
    assert_eq!(result.expect("reconcile succeeds").1, Outcome::Applied { ready: true });

    let deployment = applied(&seen, "deployments", "demo-gateway");
    assert_eq!(deployment.path, format!("/apis/apps/v1{NS}deployments/demo-gateway"));
    assert_eq!(deployment.body["kind"], "Deployment");
    assert_eq!(deployment.body["spec"]["replicas"], 3);
    assert_eq!(
        deployment.body["spec"]["template"]["spec"]["containers"][0]["command"][0],
        "/usr/local/bin/tinysns-gateway"
    );
    let service = applied(&seen, "services", "demo-gateway");
    assert_eq!(service.body["spec"]["ports"][0]["port"], 8080);
    applied(&seen, "poddisruptionbudgets", "demo-gateway");
    applied(&seen, "networkpolicies", "demo-gateway");
    let ingress = applied(&seen, "ingresses", "demo-gateway");
    assert_eq!(
        ingress.path,
        format!("/apis/networking.k8s.io/v1{NS}ingresses/demo-gateway")
    );
    assert_eq!(ingress.body["apiVersion"], "networking.k8s.io/v1");
    assert_eq!(ingress.body["kind"], "Ingress");
    assert_eq!(ingress.body["spec"]["rules"][0]["host"], "social.example.com");
    assert_eq!(ingress.body["spec"]["tls"][0]["secretName"], "social-example-tls");
    assert_eq!(ingress.body["metadata"]["ownerReferences"][0]["uid"], RENDER_UID);
    // The Ingress goes after the Service it routes to.
    let position = |plural: &str| {
        seen.iter()
            .position(|r| r.method == "PATCH" && r.path.ends_with(&format!("/{plural}/demo-gateway")))
            .unwrap_or_else(|| panic!("{plural}"))
    };
    assert!(position("services") < position("deployments"));
    assert!(position("deployments") < position("ingresses"));

    let status = status_patch(&seen);
    assert_eq!(
        status.body["status"]["replicas"]["gateway"],
        json!({"ready": 3, "desired": 3})
    );
    assert!(
        seen.iter().all(|r| r.method != "DELETE"),
        "nothing is an orphan: {:?}",
        seen.iter()
            .filter(|r| r.method == "DELETE")
            .map(Recorded::line)
            .collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn a_gateway_scaled_to_zero_is_deleted_with_its_ingress() {
    let mut spec = gateway_with_ingress();
    spec.gateway.replicas = 0;
    let sc = socialcluster(spec);
    let mut server = existing(&sc);
    server.ready = true;
    for (plural, kind, api_version) in [
        ("deployments", "Deployment", "apps/v1"),
        ("services", "Service", "v1"),
        ("poddisruptionbudgets", "PodDisruptionBudget", "policy/v1"),
        ("networkpolicies", "NetworkPolicy", "networking.k8s.io/v1"),
        ("ingresses", "Ingress", "networking.k8s.io/v1"),
    ] {
        server.lists.insert(
            plural,
            vec![owned(kind, api_version, "demo-gateway", RENDER_UID, json!({}))],
        );
    }
    let (result, seen) = run(sc, server).await;
    assert_eq!(result.expect("reconcile succeeds").1, Outcome::Applied { ready: true });
    let deleted: Vec<String> = seen
        .iter()
        .filter(|r| r.method == "DELETE")
        .map(Recorded::line)
        .collect();
    assert_eq!(
        deleted,
        [
            format!("DELETE /apis/networking.k8s.io/v1{NS}ingresses/demo-gateway"),
            format!("DELETE /apis/apps/v1{NS}deployments/demo-gateway"),
            format!("DELETE /apis/policy/v1{NS}poddisruptionbudgets/demo-gateway"),
            format!("DELETE /apis/networking.k8s.io/v1{NS}networkpolicies/demo-gateway"),
            format!("DELETE /api/v1{NS}services/demo-gateway"),
        ]
    );
    assert!(
        seen.iter()
            .all(|r| !(r.method == "PATCH" && r.name() == "demo-gateway")),
        "no gateway object is applied"
    );
    let status = status_patch(&seen);
    assert_eq!(status.body["status"]["replicas"].get("gateway"), None);
}

#[tokio::test]
async fn removing_the_ingress_deletes_only_the_ingress() {
    let sc = socialcluster(SocialClusterSpec::default());
    let mut server = existing(&sc);
    server.lists.insert(
        "ingresses",
        vec![owned(
            "Ingress",
            "networking.k8s.io/v1",
            "demo-gateway",
            RENDER_UID,
            json!({}),
        )],
    );
    let (result, seen) = run(sc, server).await;
    result.expect("reconcile succeeds");
    let deleted: Vec<String> = seen
        .iter()
        .filter(|r| r.method == "DELETE")
        .map(Recorded::line)
        .collect();
    assert_eq!(
        deleted,
        [format!("DELETE /apis/networking.k8s.io/v1{NS}ingresses/demo-gateway")]
    );
    applied(&seen, "deployments", "demo-gateway");
    applied(&seen, "services", "demo-gateway");
}
