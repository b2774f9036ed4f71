//! The managed broker's objects, and the synchronizers' connection to each kind of broker.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Container, EnvVar, PodSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;

use super::nodes::CONFIG_ANNOTATION;
use super::*;
use crate::build::{Children, Credentials, Environment, Owner, Validated, build_all, validate};
use crate::crd::{ExternalRabbitMq, QueueType, RabbitMqClusterRef, SecretKeyRef};
use crate::render;

fn owner() -> Owner {
    let sc = render::object("demo", "ns1", SocialClusterSpec::default());
    Owner::from_object(&sc, &Environment::default()).expect("fixture has name, namespace and uid")
}

fn validated(spec: &SocialClusterSpec) -> Validated {
    render::validated("ns1", spec.clone(), &Environment::default()).expect("a valid spec")
}

fn credentials(password: &str, cookie: &str) -> Credentials {
    Credentials {
        rabbitmq_password: password.to_owned(),
        rabbitmq_erlang_cookie: cookie.to_owned(),
        cluster_secret: "clusterSecretForTests0123456789abcdefghijklmnopq".to_owned(),
    }
}

fn with_broker(rabbitmq: RabbitMqSpec) -> SocialClusterSpec {
    SocialClusterSpec {
        rabbitmq,
        ..SocialClusterSpec::default()
    }
}

fn nodes(replicas: u32) -> SocialClusterSpec {
    with_broker(RabbitMqSpec::Managed(ManagedRabbitMq {
        replicas,
        ..ManagedRabbitMq::default()
    }))
}

fn build(spec: &SocialClusterSpec) -> Children {
    build_all(
        &validated(spec),
        &credentials("brokerPassword0123456789", "erlangCookie0123456789"),
    )
}

fn sts<'a>(c: &'a Children, name: &str) -> &'a StatefulSet {
    c.stateful_sets
        .iter()
        .find(|s| s.name_any() == name)
        .unwrap_or_else(|| panic!("no StatefulSet {name}"))
}

fn pod(s: &StatefulSet) -> &PodSpec {
    s.spec.as_ref().and_then(|s| s.template.spec.as_ref()).expect("pod")
}

fn container(s: &StatefulSet) -> &Container {
    &pod(s).containers[0]
}

fn env_var<'a>(c: &'a Container, name: &str) -> Option<&'a EnvVar> {
    c.env.as_ref()?.iter().find(|e| e.name == name)
}

fn template_annotation(s: &StatefulSet, key: &str) -> Option<String> {
    s.spec
        .as_ref()?
        .template
        .metadata
        .as_ref()?
        .annotations
        .as_ref()?
        .get(key)
        .cloned()
}

fn max_unavailable(c: &Children) -> Option<IntOrString> {
    let pdb = c
        .pdbs
        .iter()
        .find(|p| p.name_any() == "demo-rabbitmq")
        .expect("broker PDB");
    pdb.spec.as_ref()?.max_unavailable.clone()
}

#[test]
fn one_node_keeps_its_queues_on_a_volume_and_is_never_evicted_silently() {
    let c = build(&nodes(1));
    let broker = sts(&c, "demo-rabbitmq");
    let spec = broker.spec.as_ref().expect("spec");
    assert_eq!(spec.replicas, Some(1));
    assert_eq!(spec.service_name.as_deref(), Some("demo-rabbitmq-nodes"));
    let claims = spec.volume_claim_templates.as_ref().expect("a volume per node");
    assert_eq!(claims.len(), 1);
    let requested = claims[0]
        .spec
        .as_ref()
        .and_then(|s| s.resources.as_ref()?.requests.as_ref()?.get("storage").cloned());
    assert_eq!(requested.map(|q| q.0), Some("1Gi".to_owned()));
    let data = container(broker)
        .volume_mounts
        .as_ref()
        .and_then(|m| m.iter().find(|m| m.mount_path == nodes::DATA_DIR))
        .expect("data mounted");
    assert_eq!(data.name, "data");
    assert!(
        pod(broker).volumes.iter().flatten().all(|v| v.empty_dir.is_none()),
        "no emptyDir"
    );
    // Kubernetes may roll the broker itself (its nodes restart one at a time).
    assert_ne!(
        spec.update_strategy.as_ref().and_then(|s| s.type_.as_deref()),
        Some("OnDelete")
    );
    assert_eq!(max_unavailable(&c), Some(IntOrString::Int(0)));
    assert!(container(broker).lifecycle.is_none(), "no quorum to wait for");
    assert_eq!(container(broker).image.as_deref(), Some("rabbitmq:4.1.0"));
}

#[test]
fn three_nodes_use_quorum_queues_and_leave_one_at_a_time() {
    let c = build(&nodes(3));
    let broker = sts(&c, "demo-rabbitmq");
    assert_eq!(broker.spec.as_ref().and_then(|s| s.replicas), Some(3));
    assert_eq!(max_unavailable(&c), Some(IntOrString::Int(1)));
    let pre_stop = container(broker)
        .lifecycle
        .as_ref()
        .and_then(|l| l.pre_stop.as_ref()?.exec.as_ref()?.command.clone())
        .expect("a preStop hook")
        .join(" ");
    assert!(pre_stop.contains("await_online_quorum_plus_one"), "{pre_stop}");
    let grace = pod(broker).termination_grace_period_seconds.expect("grace");
    assert!(grace > nodes::QUORUM_WAIT_SECONDS, "the hook may run to its end");
    for k in 1..=3 {
        let sync = container(sts(&c, &format!("demo-sync-{k}")));
        let queue_type = env_var(sync, "TINYSNS_AMQP_QUEUE_TYPE").and_then(|e| e.value.as_deref());
        assert_eq!(queue_type, Some("quorum"));
    }
    let one = build(&nodes(1));
    let sync = container(sts(&one, "demo-sync-1"));
    assert_eq!(
        env_var(sync, "TINYSNS_AMQP_QUEUE_TYPE").and_then(|e| e.value.as_deref()),
        Some("classic")
    );
}

#[test]
fn nodes_share_a_cookie_and_are_named_by_their_stable_dns_names() {
    let c = build(&nodes(3));
    let broker = sts(&c, "demo-rabbitmq");
    let node_name = env_var(container(broker), "RABBITMQ_NODENAME").and_then(|e| e.value.clone());
    assert_eq!(
        node_name.as_deref(),
        Some("rabbit@$(MY_POD_NAME).demo-rabbitmq-nodes.ns1.svc.cluster.local")
    );
    let env_names: Vec<&str> = container(broker)
        .env
        .iter()
        .flatten()
        .map(|e| e.name.as_str())
        .collect();
    assert!(
        env_names.iter().position(|n| *n == "MY_POD_NAME") < env_names.iter().position(|n| *n == "RABBITMQ_NODENAME"),
        "$(MY_POD_NAME) expands only when defined before"
    );
    let init = pod(broker).init_containers.as_ref().expect("init containers");
    let copy = init[0].command.as_ref().expect("command").join(" ");
    assert!(copy.contains(".erlang.cookie") && copy.contains("chmod 600"), "{copy}");
    let secret = c
        .secrets
        .iter()
        .find(|s| s.name_any() == "demo-rabbitmq-credentials")
        .expect("credentials");
    let data = secret.data.as_ref().expect("data");
    assert_eq!(data[KEY_ERLANG_COOKIE].0, b"erlangCookie0123456789");
    let nodes_service = c
        .services
        .iter()
        .find(|s| s.name_any() == "demo-rabbitmq-nodes")
        .and_then(|s| s.spec.as_ref())
        .expect("nodes Service");
    assert_eq!(nodes_service.cluster_ip.as_deref(), Some("None"));
    assert_eq!(nodes_service.publish_not_ready_addresses, Some(true));
}

#[test]
fn the_password_reaches_the_broker_as_a_hash_and_nowhere_in_plain_sight() {
    let c = build(&nodes(1));
    let secret = c
        .secrets
        .iter()
        .find(|s| s.name_any() == "demo-rabbitmq-credentials")
        .expect("credentials");
    let definitions = &secret.data.as_ref().expect("data")[config::DEFINITIONS_FILE].0;
    let definitions: serde_json::Value = serde_json::from_slice(definitions).expect("JSON");
    assert_eq!(definitions, config::definitions("brokerPassword0123456789"));
    for set in &c.stateful_sets {
        let text = serde_json::to_string(set).expect("serializes");
        assert!(!text.contains("brokerPassword0123456789"), "{}", set.name_any());
        assert!(!text.contains("erlangCookie0123456789"), "{}", set.name_any());
    }
    assert!(
        c.config_maps
            .iter()
            .all(|m| !serde_json::to_string(m).expect("json").contains("brokerPassword")),
        "ConfigMaps hold no secret"
    );
}

#[test]
fn new_credentials_restart_the_broker_and_the_synchronizers() {
    let spec = nodes(1);
    let with = |password: &str, cookie: &str| build_all(&validated(&spec), &credentials(password, cookie));
    let before = with("brokerPassword0123456789", "erlangCookie0123456789");
    let again = with("brokerPassword0123456789", "erlangCookie0123456789");
    let new_password = with("anotherPassword012345678", "erlangCookie0123456789");
    let new_cookie = with("brokerPassword0123456789", "anotherCookie012345678");
    let broker = |c: &Children| template_annotation(sts(c, "demo-rabbitmq"), CREDENTIALS_ANNOTATION);
    let sync = |c: &Children| template_annotation(sts(c, "demo-sync-1"), CREDENTIALS_ANNOTATION);
    assert!(broker(&before).is_some() && sync(&before).is_some());
    assert_eq!(broker(&before), broker(&again), "stable across reconciles");
    assert_eq!(sync(&before), sync(&again));
    assert_ne!(broker(&before), broker(&new_password));
    assert_ne!(sync(&before), sync(&new_password));
    assert_ne!(broker(&before), broker(&new_cookie));
    assert_eq!(sync(&before), sync(&new_cookie), "synchronizers do not use the cookie");
}

#[test]
fn the_memory_budget_follows_the_limit_and_a_new_one_restarts_the_nodes() {
    let conf = |c: &Children| c.config_maps[0].data.as_ref().expect("data")["rabbitmq.conf"].clone();
    let default = build(&nodes(1));
    let budget = 512u64 * 1024 * 1024 / 100 * config::MEMORY_BUDGET_PERCENT;
    assert!(
        conf(&default).contains(&format!("total_memory_available_override_value = {budget}\n")),
        "{}",
        conf(&default)
    );
    assert!(conf(&default).contains("cluster_formation.peer_discovery_backend = k8s"));
    let mut bigger = nodes(1);
    let mut resources = crate::build::default_resources(crate::build::Role::RabbitMq);
    resources.limits.get_or_insert_default().insert(
        "memory".to_owned(),
        k8s_openapi::apimachinery::pkg::api::resource::Quantity("2Gi".to_owned()),
    );
    bigger.resources.rabbitmq = Some(resources);
    let bigger = build(&bigger);
    assert!(conf(&bigger).contains(&format!(
        "total_memory_available_override_value = {}\n",
        (2u64 << 30) / 100 * config::MEMORY_BUDGET_PERCENT
    )));
    let annotation = |c: &Children| template_annotation(sts(c, "demo-rabbitmq"), CONFIG_ANNOTATION);
    assert_ne!(annotation(&default), annotation(&bigger));
}

#[test]
fn a_rabbitmq_cluster_reference_uses_its_default_user() {
    let spec = with_broker(RabbitMqSpec::ClusterRef(RabbitMqClusterRef {
        name: "bus".to_owned(),
        queue_type: QueueType::Quorum,
    }));
    let c = build(&spec);
    assert!(c.stateful_sets.iter().all(|s| s.name_any() != "demo-rabbitmq"));
    assert!(c.config_maps.is_empty());
    assert!(c.secrets.iter().all(|s| s.name_any() != "demo-rabbitmq-credentials"));
    let sync = container(sts(&c, "demo-sync-1"));
    for (name, key) in [("AMQP_USERNAME", "username"), ("AMQP_PASSWORD", "password")] {
        let reference = env_var(sync, name)
            .and_then(|e| e.value_from.as_ref()?.secret_key_ref.clone())
            .unwrap_or_else(|| panic!("{name} from a Secret"));
        assert_eq!(
            (reference.name.as_str(), reference.key.as_str()),
            ("bus-default-user", key)
        );
    }
    let url = env_var(sync, "AMQP_URL")
        .and_then(|e| e.value.clone())
        .expect("AMQP_URL");
    assert_eq!(
        url,
        "amqp://$(AMQP_USERNAME):$(AMQP_PASSWORD)@bus.ns1.svc.cluster.local:5672/%2f"
    );
    let names: Vec<&str> = sync.env.iter().flatten().map(|e| e.name.as_str()).collect();
    let position = |n: &str| names.iter().position(|x| *x == n);
    assert!(position("AMQP_PASSWORD") < position("AMQP_URL"), "defined before use");
    assert_eq!(
        env_var(sync, "TINYSNS_AMQP_QUEUE_TYPE").and_then(|e| e.value.as_deref()),
        Some("quorum")
    );
    assert!(template_annotation(sts(&c, "demo-sync-1"), CREDENTIALS_ANNOTATION).is_none());
}

#[test]
fn an_external_broker_gets_the_queue_type_it_asks_for() {
    let spec = with_broker(RabbitMqSpec::External(ExternalRabbitMq {
        url_secret_ref: SecretKeyRef {
            name: "amqp".to_owned(),
            key: "url".to_owned(),
        },
        queue_type: QueueType::Quorum,
    }));
    let c = build(&spec);
    let sync = container(sts(&c, "demo-sync-2"));
    assert_eq!(
        env_var(sync, "TINYSNS_AMQP_QUEUE_TYPE").and_then(|e| e.value.as_deref()),
        Some("quorum")
    );
}

#[test]
fn broker_settings_the_operator_cannot_build_are_invalid() {
    assert_eq!(validate(&nodes(2)), Err(crate::build::InvalidSpec::RabbitMqReplicas(2)));
    let mut bad_size = ManagedRabbitMq::default();
    bad_size.storage.size = k8s_openapi::apimachinery::pkg::api::resource::Quantity("big".to_owned());
    assert!(matches!(
        validate(&with_broker(RabbitMqSpec::Managed(bad_size))),
        Err(crate::build::InvalidSpec::BadQuantity {
            field: "rabbitmq.managed.storage.size",
            ..
        })
    ));
    let mut bad_limit = nodes(1);
    let mut resources = crate::build::default_resources(crate::build::Role::RabbitMq);
    resources.limits.get_or_insert_default().insert(
        "memory".to_owned(),
        k8s_openapi::apimachinery::pkg::api::resource::Quantity("lots".to_owned()),
    );
    bad_limit.resources.rabbitmq = Some(resources);
    assert!(matches!(
        validate(&bad_limit),
        Err(crate::build::InvalidSpec::BadQuantity { .. })
    ));
}

#[test]
fn stored_credentials_are_reused_only_when_they_look_generated() {
    let owner = owner();
    let secret = credentials_secret(&owner, "storedPassword0123456789", "storedCookie0123456789");
    assert_eq!(
        password_from_secret(&secret).as_deref(),
        Some("storedPassword0123456789")
    );
    assert_eq!(
        erlang_cookie_from_secret(&secret).as_deref(),
        Some("storedCookie0123456789")
    );
    let mut older = secret.clone();
    older.data.as_mut().expect("data").remove(KEY_ERLANG_COOKIE);
    assert_eq!(
        erlang_cookie_from_secret(&older),
        None,
        "older operators wrote no cookie"
    );
    let mut edited = secret;
    edited
        .data
        .as_mut()
        .expect("data")
        .insert(KEY_PASSWORD.to_owned(), k8s_openapi::ByteString(b"p@ss:word/".to_vec()));
    assert_eq!(password_from_secret(&edited), None, "it would break the URL");
    let cookie = generate_erlang_cookie();
    assert!(cookie.len() >= 32 && cookie.chars().all(|c| c.is_ascii_alphanumeric()));
    assert_ne!(cookie, generate_erlang_cookie());
}
