//! The chart's RBAC rules allow every request the operator makes. Runs reconciles that
//! between them make every kind of request (create, growth, orphans, a rollout step with a
//! manual switchover, the ServiceMonitor on and off, an undecodable object), maps each
//! recorded request to (API group, resource, verb), and checks it against the rules in
//! `charts/tinysns-operator/templates/_helpers.tpl`. A new kind of request without a rule
//! fails here instead of on a cluster.

use std::collections::BTreeSet;
use std::sync::Arc;

use serde_json::{Value, json};

use super::tests::sts_with_claims;
use crate::crd::SocialClusterSpec;
use crate::fixtures::{ApiServer, FakeCoordinators, Recorded, run, run_with, socialcluster};
use crate::render::RENDER_UID;

/// (API group, resource, verb) of one request.
type Access = (String, String, String);

/// The rules of the chart's `tinysns-operator.rules` template, as (group, resource, verb).
fn chart_rules() -> BTreeSet<Access> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../charts/tinysns-operator/templates/_helpers.tpl"
    );
    let text = std::fs::read_to_string(path).expect("the chart's helpers");
    let start = text
        .find("{{- define \"tinysns-operator.rules\" -}}")
        .expect("the rules template");
    let body = &text[start..];
    let body = &body[body.find('\n').expect("a body") + 1..body.find("{{- end }}").expect("its end")];
    let rules: Vec<Value> = serde_yaml::from_str(body).expect("the rules are YAML");
    let mut allowed = BTreeSet::new();
    for rule in rules {
        let strings = |key: &str| -> Vec<String> {
            rule[key]
                .as_array()
                .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
                .unwrap_or_default()
        };
        for group in strings("apiGroups") {
            for resource in strings("resources") {
                for verb in strings("verbs") {
                    allowed.insert((group.clone(), resource.clone(), verb));
                }
            }
        }
    }
    allowed
}

/// What RBAC checks for a recorded request; None for discovery (open to every client).
fn access(r: &Recorded) -> Option<Access> {
    let path = r.path.trim_start_matches('/');
    let parts: Vec<&str> = path.split('/').collect();
    let (group, rest) = match parts.as_slice() {
        ["api", "v1", rest @ ..] => (String::new(), rest),
        ["apis", group, _version, rest @ ..] => ((*group).to_owned(), rest),
        _ => panic!("unexpected path {}", r.path),
    };
    let (resource, named, subresource) = match rest {
        [] => return None,
        ["namespaces", _, resource] => (*resource, false, None),
        ["namespaces", _, resource, _name] => (*resource, true, None),
        ["namespaces", _, resource, _name, sub] => (*resource, true, Some(*sub)),
        other => panic!("unexpected path {} ({other:?})", r.path),
    };
    let verb = match (r.method.as_str(), named) {
        ("GET", true) => "get",
        ("GET", false) => "list",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", _) => "delete",
        (method, _) => panic!("unexpected method {method}"),
    };
    let resource = match subresource {
        Some(sub) => format!("{resource}/{sub}"),
        None => resource.to_owned(),
    };
    Some((group, resource, verb.to_owned()))
}

/// Every request a set of reconciles makes.
async fn requests() -> Vec<Recorded> {
    let mut seen = Vec::new();

    // A first reconcile, with the Prometheus Operator installed and a gateway Ingress.
    let mut spec = SocialClusterSpec::default();
    spec.gateway.ingress = Some(crate::crd::GatewayIngress {
        host: "social.example.com".to_owned(),
        tls_secret_name: None,
        class_name: None,
        annotations: Default::default(),
    });
    let sc = socialcluster(spec);
    let mut server = ApiServer::new(&sc);
    server.service_monitors = true;
    seen.extend(run(sc, server).await.1);

    // The ServiceMonitor turned off; leftovers of every kind to delete; a volume to grow.
    let mut spec = SocialClusterSpec::default();
    spec.monitoring.service_monitor = false;
    spec.storage.size = k8s_openapi::apimachinery::pkg::api::resource::Quantity("2Gi".to_owned());
    let sc = socialcluster(spec);
    let mut server = ApiServer::new(&sc);
    server.service_monitors = true;
    let leftover = |kind: &str, api_version: &str| {
        json!({"apiVersion": api_version, "kind": kind, "metadata": {
            "name": "demo-leftover", "namespace": "ns1",
            "ownerReferences": [{"apiVersion": "tinysns.io/v1alpha1", "kind": "SocialCluster",
                                 "name": "demo", "uid": RENDER_UID, "controller": true}]}})
    };
    server.lists.insert(
        "statefulsets",
        vec![sts_with_claims("demo-tsd-1", "1Gi"), leftover("StatefulSet", "apps/v1")],
    );
    server.lists.insert(
        "persistentvolumeclaims",
        vec![json!({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": "data-demo-tsd-1-0", "namespace": "ns1"},
        "spec": {"resources": {"requests": {"storage": "1Gi"}}}})],
    );
    for (plural, kind, api_version) in [
        ("deployments", "Deployment", "apps/v1"),
        ("services", "Service", "v1"),
        ("configmaps", "ConfigMap", "v1"),
        ("secrets", "Secret", "v1"),
        ("poddisruptionbudgets", "PodDisruptionBudget", "policy/v1"),
        ("networkpolicies", "NetworkPolicy", "networking.k8s.io/v1"),
        ("ingresses", "Ingress", "networking.k8s.io/v1"),
    ] {
        server.lists.insert(plural, vec![leftover(kind, api_version)]);
    }
    seen.extend(run(sc, server).await.1);

    // A rollout under way: the highest coordinator still runs the old template, so its pod
    // is deleted; then a manual switchover asked for by annotation, which is removed.
    let rolling_server = |sc: &crate::crd::SocialCluster| {
        let mut server = ApiServer::new(sc);
        server.ready = true;
        server.revision = Some(("demo-v2", 0));
        let outdated = |sts: &str, ordinal: u32| {
            if sts == "demo-coordinator" && ordinal == 2 {
                "demo-v1"
            } else {
                "demo-v2"
            }
        };
        server
            .lists
            .insert("pods", super::rolling::reconcile_tests::pods(outdated));
        server
    };
    let sc = socialcluster(SocialClusterSpec::default());
    let server = rolling_server(&sc);
    seen.extend(run_with(sc, server, Arc::new(FakeCoordinators::healthy(3, 2))).await.1);
    let mut sc = socialcluster(SocialClusterSpec::default());
    sc.metadata.annotations = Some([(super::SWITCHOVER_ANNOTATION.to_owned(), "2".to_owned())].into());
    let server = rolling_server(&sc);
    seen.extend(run_with(sc, server, Arc::new(FakeCoordinators::healthy(3, 2))).await.1);
    seen
}

#[tokio::test]
async fn the_charts_rules_allow_every_request_the_operator_makes() {
    let allowed = chart_rules();
    let seen = requests().await;
    let made: BTreeSet<Access> = seen.iter().filter_map(access).collect();
    // The scenarios really make the requests that matter: deleting pods, patching claims,
    // deleting a StatefulSet for a new claim template, removing the annotation, events.
    for expected in [
        ("", "pods", "delete"),
        ("", "persistentvolumeclaims", "patch"),
        ("apps", "statefulsets", "delete"),
        ("tinysns.io", "socialclusters", "patch"),
        ("tinysns.io", "socialclusters/status", "patch"),
        ("events.k8s.io", "events", "create"),
        ("monitoring.coreos.com", "servicemonitors", "patch"),
        ("monitoring.coreos.com", "servicemonitors", "delete"),
        ("networking.k8s.io", "networkpolicies", "delete"),
        ("apps", "deployments", "patch"),
        ("apps", "deployments", "delete"),
        ("networking.k8s.io", "ingresses", "patch"),
        ("networking.k8s.io", "ingresses", "delete"),
    ] {
        let expected = (expected.0.to_owned(), expected.1.to_owned(), expected.2.to_owned());
        assert!(made.contains(&expected), "no scenario made {expected:?}: {made:?}");
    }
    // The watches main.rs starts: SocialClusters and the kinds it owns.
    let watched = [
        ("tinysns.io", "socialclusters"),
        ("apps", "statefulsets"),
        ("apps", "deployments"),
        ("", "services"),
        ("", "secrets"),
        ("policy", "poddisruptionbudgets"),
        ("networking.k8s.io", "ingresses"),
    ]
    .into_iter()
    .flat_map(|(group, resource)| {
        ["list", "watch"].map(|verb| (group.to_owned(), resource.to_owned(), verb.to_owned()))
    });
    let missing: Vec<Access> = made
        .into_iter()
        .chain(watched)
        .filter(|a| !allowed.contains(a))
        .collect();
    assert!(missing.is_empty(), "the chart's RBAC does not allow: {missing:?}");
}

#[test]
fn leader_election_has_its_role() {
    // The elector reads (get), creates and replaces (update) its Lease: leader.rs.
    let rbac = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../charts/tinysns-operator/templates/rbac.yaml"
    ))
    .expect("the chart's RBAC");
    assert!(rbac.contains("resources: [\"leases\"]"), "{rbac}");
    assert!(rbac.contains("verbs: [\"get\", \"create\", \"update\"]"), "{rbac}");
}
