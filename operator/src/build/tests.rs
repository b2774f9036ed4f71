//! Builder tests: spec in, objects out, no client.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Container, EnvVar, PodSpec, Service, Volume, VolumeMount};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;
use std::collections::BTreeMap;

use super::security::{
    CLUSTER_SECRET_DIR, CLUSTER_SECRET_FILE, CLUSTER_SECRET_KEY, CLUSTER_SECRET_VOLUME, TLS_DIR, TLS_VOLUME,
    UnusableSecret,
};
use super::*;
use crate::crd::{AuthMode, ExternalRabbitMq, RabbitMqSpec, SecretKeyRef, SocialClusterSpec, TlsSpec};
use crate::render::{self, RENDER_UID};

const CLUSTER_SECRET: &str = "clusterSecretForTests0123456789abcdefghijklmnopq";

fn credentials(password: &str) -> Credentials {
    Credentials {
        rabbitmq_password: password.to_owned(),
        rabbitmq_erlang_cookie: "erlangCookieForTests0123456789".to_owned(),
        cluster_secret: CLUSTER_SECRET.to_owned(),
    }
}

/// The StatefulSets of tinysns processes (not the broker's).
fn tinysns_sets(c: &Children) -> impl Iterator<Item = &StatefulSet> {
    c.stateful_sets.iter().filter(|s| s.name_any() != "demo-rabbitmq")
}

/// `spec` as the builders take it (checked).
fn validated(spec: &SocialClusterSpec) -> Validated {
    render::validated("ns1", spec.clone(), &Environment::default()).expect("a valid spec")
}

/// The default spec's owner (for what does not depend on the spec).
fn owner() -> Owner {
    let sc = render::object("demo", "ns1", SocialClusterSpec::default());
    Owner::from_object(&sc, &Environment::default()).expect("fixture has name, namespace and uid")
}

#[test]
fn advertised_names_end_in_the_configured_cluster_domain() {
    let sc = render::object("demo", "ns1", SocialClusterSpec::default());
    let environment = Environment::new("corp.example.", "1.2.3").expect("a domain");
    let owner = Owner::from_object(&sc, &environment).unwrap();
    assert_eq!(
        owner.coordinator_hosts(1),
        ["demo-coordinator-0.demo-coordinator.ns1.svc.corp.example"]
    );
    for bad in ["", "not a domain", "-x.local"] {
        assert!(Environment::new(bad, "1.2.3").is_err(), "{bad:?}");
    }
    for bad in ["", "-x", "a:b", &"x".repeat(129)] {
        assert!(Environment::new("cluster.local", bad).is_err(), "{bad:?}");
    }
}

fn spec(clusters: u32, servers: u32, syncs: u32) -> SocialClusterSpec {
    SocialClusterSpec {
        clusters,
        servers_per_cluster: servers,
        synchronizers_per_cluster: syncs,
        ..SocialClusterSpec::default()
    }
}

fn sts<'a>(c: &'a Children, name: &str) -> &'a StatefulSet {
    c.stateful_sets
        .iter()
        .find(|s| s.name_any() == name)
        .unwrap_or_else(|| panic!("no StatefulSet {name}"))
}

fn container(s: &StatefulSet) -> &Container {
    &s.spec
        .as_ref()
        .expect("spec")
        .template
        .spec
        .as_ref()
        .expect("pod spec")
        .containers[0]
}

fn env_value<'a>(c: &'a Container, name: &str) -> Option<&'a str> {
    c.env
        .as_ref()?
        .iter()
        .find(|e| e.name == name)
        .and_then(|e| e.value.as_deref())
}

fn env_var<'a>(c: &'a Container, name: &str) -> &'a EnvVar {
    c.env
        .as_ref()
        .and_then(|env| env.iter().find(|e| e.name == name))
        .unwrap_or_else(|| panic!("no env {name}"))
}

fn replicas(s: &StatefulSet) -> i32 {
    s.spec.as_ref().and_then(|s| s.replicas).expect("replicas")
}

/// Checks the shape every spec must have; returns the children for spec-specific checks.
fn check_shape(spec: &SocialClusterSpec) -> Children {
    let c = build_all(&validated(spec), &credentials("p4ssw0rdp4ssw0rdp4ssw0rd"));
    let k = spec.clusters as usize;
    let gateway = usize::from(spec.gateway.replicas > 0);
    assert_eq!(
        c.stateful_sets.len(),
        2 + 2 * k,
        "coordinator, rabbitmq + tsd + sync per cluster"
    );
    assert_eq!(
        c.services.len(),
        3 + 2 * k + gateway,
        "coordinator, rabbitmq (clients and nodes), tsd + sync per cluster, the gateway"
    );
    assert_eq!(c.deployments.len(), gateway, "the gateway");
    assert_eq!(c.config_maps.len(), 1, "the broker's configuration");
    assert_eq!(c.secrets.len(), 2, "cluster secret + broker credentials");
    let gateway_pdb = usize::from(spec.gateway.replicas > 1);
    assert_eq!(c.pdbs.len(), 2 + 2 * k + gateway_pdb);
    assert_eq!(
        c.ingresses.len(),
        usize::from(gateway == 1 && spec.gateway.ingress.is_some())
    );

    for value in c.to_values().expect("serializable") {
        let meta = &value["metadata"];
        let name = meta["name"].as_str().expect("name");
        assert_eq!(meta["namespace"], "ns1", "{name}");
        assert_eq!(meta["labels"][LABEL_NAME], "tinysns", "{name}");
        assert_eq!(meta["labels"][LABEL_INSTANCE], "demo", "{name}");
        assert_eq!(meta["labels"][LABEL_MANAGED_BY], FIELD_MANAGER, "{name}");
        assert!(meta["labels"][LABEL_COMPONENT].is_string(), "{name}");
        let refs = meta["ownerReferences"].as_array().expect("owner refs");
        assert_eq!(refs.len(), 1, "{name}");
        assert_eq!(refs[0]["uid"], RENDER_UID);
        assert_eq!(refs[0]["controller"], true);
        assert_eq!(refs[0]["kind"], "SocialCluster");
        assert!(value["apiVersion"].is_string() && value["kind"].is_string());
    }

    // Kubernetes replaces no tinysns pod on its own: the operator drives every update.
    for set in tinysns_sets(&c) {
        let strategy = set.spec.as_ref().and_then(|s| s.update_strategy.as_ref());
        assert_eq!(
            strategy.and_then(|s| s.type_.as_deref()),
            Some("OnDelete"),
            "{}",
            set.name_any()
        );
    }

    let coordinator = sts(&c, "demo-coordinator");
    assert_eq!(replicas(coordinator), spec.coordinator.replicas as i32);
    let coordinator_spec = coordinator.spec.as_ref().expect("spec");
    assert_eq!(coordinator_spec.service_name.as_deref(), Some("demo-coordinator"));
    assert_eq!(coordinator_spec.volume_claim_templates.as_ref().map(Vec::len), Some(1));
    let cc = container(coordinator);
    let hosts: Vec<String> = (0..spec.coordinator.replicas)
        .map(|i| format!("demo-coordinator-{i}.demo-coordinator.ns1.svc.cluster.local"))
        .collect();
    let peers: Vec<String> = hosts.iter().map(|h| format!("{h}:29000")).collect();
    assert_eq!(env_value(cc, "TINYSNS_PEERS"), Some(peers.join(",").as_str()));
    assert_eq!(env_value(cc, "TINYSNS_DATA_DIR"), Some(DATA_DIR));
    assert_eq!(
        cc.env.as_ref().expect("env")[0].name,
        "POD_NAME",
        "the node id comes from it"
    );
    assert_eq!(
        env_value(cc, "TINYSNS_CLUSTERS"),
        Some(spec.clusters.to_string().as_str())
    );
    assert_eq!(env_value(cc, "TINYSNS_HEARTBEAT_INTERVAL"), Some("250ms"));
    assert_eq!(env_value(cc, "TINYSNS_FAILURE_TIMEOUT"), Some("1s"));
    assert_eq!(env_value(cc, "TINYSNS_PORT"), Some("9000"));

    for cluster in 1..=spec.clusters {
        let tsd = sts(&c, &format!("demo-tsd-{cluster}"));
        let tsd_spec = tsd.spec.as_ref().expect("spec");
        assert_eq!(replicas(tsd), spec.servers_per_cluster as i32);
        assert_eq!(tsd_spec.pod_management_policy.as_deref(), Some("Parallel"));
        assert_eq!(
            tsd_spec.service_name.as_deref(),
            Some(format!("demo-tsd-{cluster}").as_str())
        );
        let claims = tsd_spec.volume_claim_templates.as_ref().expect("claims");
        assert_eq!(claims.len(), 1);
        let tc = container(tsd);
        assert_eq!(env_value(tc, "TINYSNS_CLUSTER"), Some(cluster.to_string().as_str()));
        assert_eq!(env_value(tc, "TINYSNS_SERVER"), None, "derived from POD_NAME");
        assert_eq!(
            env_value(tc, "TINYSNS_ADVERTISE_HOST"),
            Some(format!("$(POD_NAME).demo-tsd-{cluster}.ns1.svc.cluster.local").as_str())
        );
        assert_eq!(
            env_value(tc, "TINYSNS_COORDINATOR_HOST"),
            Some(hosts.join(",").as_str())
        );
        // $(POD_NAME) only expands if POD_NAME is defined before the variable using it.
        assert_eq!(tc.env.as_ref().expect("env")[0].name, "POD_NAME");

        let sync = sts(&c, &format!("demo-sync-{cluster}"));
        assert_eq!(replicas(sync), spec.synchronizers_per_cluster as i32);
        let sc = container(sync);
        assert_eq!(env_value(sc, "TINYSNS_CLUSTER"), Some(cluster.to_string().as_str()));
        assert_eq!(
            env_value(sc, "TINYSNS_CLUSTERS"),
            Some(spec.clusters.to_string().as_str())
        );
        let amqp = env_var(sc, "AMQP_URL");
        let secret_ref = amqp
            .value_from
            .as_ref()
            .and_then(|v| v.secret_key_ref.as_ref())
            .expect("AMQP_URL from a secret");
        assert_eq!(secret_ref.name, "demo-rabbitmq-credentials");
        assert_eq!(secret_ref.key, "url");

        let svc = c
            .services
            .iter()
            .find(|s| s.name_any() == format!("demo-tsd-{cluster}"))
            .expect("tsd service");
        let svc_spec = svc.spec.as_ref().expect("svc spec");
        assert_eq!(svc_spec.cluster_ip.as_deref(), Some("None"), "headless");
        assert_eq!(
            svc_spec
                .selector
                .as_ref()
                .and_then(|s| s.get(LABEL_CLUSTER))
                .map(String::as_str),
            Some(cluster.to_string().as_str())
        );
    }

    for s in tinysns_sets(&c) {
        let pod = s.spec.as_ref().and_then(|s| s.template.spec.as_ref()).expect("pod");
        let psc = pod.security_context.as_ref().expect("pod security context");
        assert_eq!(psc.run_as_non_root, Some(true));
        let container = &pod.containers[0];
        let csc = container.security_context.as_ref().expect("container security context");
        assert_eq!(csc.allow_privilege_escalation, Some(false));
        let live = container
            .liveness_probe
            .as_ref()
            .and_then(|p| p.grpc.as_ref())
            .expect("grpc liveness");
        assert_eq!(live.service.as_deref(), Some(""));
        let ready = container
            .readiness_probe
            .as_ref()
            .and_then(|p| p.grpc.as_ref())
            .expect("grpc readiness");
        assert_eq!(ready.service.as_deref(), Some("readiness"));
        assert!(
            container
                .resources
                .as_ref()
                .and_then(|r| r.requests.as_ref())
                .is_some_and(|r| r.contains_key("cpu") && r.contains_key("memory")),
            "default requests"
        );
        // Selector labels must match the template labels or the API server rejects it.
        let selector = s
            .spec
            .as_ref()
            .and_then(|s| s.selector.match_labels.as_ref())
            .expect("selector");
        let labels = s
            .spec
            .as_ref()
            .and_then(|s| s.template.metadata.as_ref())
            .and_then(|m| m.labels.as_ref())
            .expect("template labels");
        for (k, v) in selector {
            assert_eq!(labels.get(k), Some(v));
        }
    }
    for p in c.pdbs.iter().filter(|p| p.name_any() != "demo-rabbitmq") {
        let spec = p.spec.as_ref().expect("pdb spec");
        assert_eq!(spec.max_unavailable, Some(IntOrString::Int(1)));
    }
    check_ports(&c, spec);
    for s in tinysns_sets(&c) {
        check_security(s, spec);
    }
    c
}

fn service<'a>(c: &'a Children, name: &str) -> &'a Service {
    c.services
        .iter()
        .find(|s| s.name_any() == name)
        .unwrap_or_else(|| panic!("no Service {name}"))
}

/// (name, port, targetPort) of each port of a Service.
fn service_ports(svc: &Service) -> Vec<(String, i32, String)> {
    let ports = svc.spec.as_ref().and_then(|s| s.ports.as_ref()).expect("ports");
    ports
        .iter()
        .map(|p| {
            let target = match &p.target_port {
                Some(IntOrString::String(t)) => t.clone(),
                other => panic!("targets a named port, not {other:?}"),
            };
            (p.name.clone().unwrap_or_default(), p.port, target)
        })
        .collect()
}

/// (name, port) of each container port.
fn container_ports(c: &Container) -> Vec<(String, i32)> {
    c.ports
        .as_ref()
        .expect("ports")
        .iter()
        .map(|p| (p.name.clone().unwrap_or_default(), p.container_port))
        .collect()
}

fn named(ports: &[(&str, i32)]) -> Vec<(String, i32)> {
    ports.iter().map(|(n, p)| ((*n).to_owned(), *p)).collect()
}

fn targeted(ports: &[(&str, i32)]) -> Vec<(String, i32, String)> {
    ports
        .iter()
        .map(|(n, p)| ((*n).to_owned(), *p, (*n).to_owned()))
        .collect()
}

/// Client, internal and metrics ports on containers, Services and in the environment (and,
/// with TLS, the plaintext health port on the containers only).
fn check_ports(c: &Children, spec: &SocialClusterSpec) {
    let coordinator = [("grpc", 9000), ("internal", 29000), ("metrics", 9464)];
    let tsd = [("grpc", 10000), ("internal", 30000), ("metrics", 9464)];
    let sync = [("grpc", 9100), ("metrics", 9464)];
    let with_health = |ports: &[(&'static str, i32)]| {
        let mut all = ports.to_vec();
        if spec.tls.is_some() {
            all.push(("health", HEALTH_PORT));
        }
        named(&all)
    };
    let cc = container(sts(c, "demo-coordinator"));
    assert_eq!(container_ports(cc), with_health(&coordinator));
    assert_eq!(service_ports(service(c, "demo-coordinator")), targeted(&coordinator));
    assert_eq!(env_value(cc, "TINYSNS_INTERNAL_PORT"), Some("29000"));
    for k in 1..=spec.clusters {
        let tc = container(sts(c, &format!("demo-tsd-{k}")));
        assert_eq!(container_ports(tc), with_health(&tsd));
        assert_eq!(service_ports(service(c, &format!("demo-tsd-{k}"))), targeted(&tsd));
        assert_eq!(env_value(tc, "TINYSNS_PORT"), Some("10000"));
        assert_eq!(env_value(tc, "TINYSNS_INTERNAL_PORT"), Some("30000"));
        assert_eq!(env_value(tc, "TINYSNS_COORDINATOR_PORT"), Some("9000"));
        assert_eq!(env_value(tc, "TINYSNS_COORDINATOR_INTERNAL_PORT"), Some("29000"));
        let sc = container(sts(c, &format!("demo-sync-{k}")));
        assert_eq!(container_ports(sc), named(&sync));
        assert_eq!(service_ports(service(c, &format!("demo-sync-{k}"))), targeted(&sync));
        assert_eq!(
            env_value(sc, "TINYSNS_INTERNAL_PORT"),
            None,
            "a synchronizer serves no API"
        );
        assert_eq!(env_value(sc, "TINYSNS_COORDINATOR_INTERNAL_PORT"), Some("29000"));
    }
    for s in tinysns_sets(c) {
        assert_eq!(env_value(container(s), "TINYSNS_METRICS_PORT"), Some("9464"));
    }
    // Probes use the health port when there is one (TLS), else the client port.
    for s in tinysns_sets(c) {
        let probe = container(s).readiness_probe.as_ref().and_then(|p| p.grpc.as_ref());
        let ports = container_ports(container(s));
        let health = ports.iter().find(|(n, _)| n == "health").unwrap_or(&ports[0]).1;
        assert_eq!(probe.map(|g| g.port), Some(health), "{}", s.name_any());
    }
}

fn pod(s: &StatefulSet) -> &PodSpec {
    s.spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .expect("pod spec")
}

fn volume<'a>(s: &'a StatefulSet, name: &str) -> Option<&'a Volume> {
    pod(s).volumes.as_ref()?.iter().find(|v| v.name == name)
}

fn mount<'a>(c: &'a Container, name: &str) -> Option<&'a VolumeMount> {
    c.volume_mounts.as_ref()?.iter().find(|m| m.name == name)
}

/// (secretName, keys projected, defaultMode) of a Secret volume.
fn secret_volume(v: &Volume) -> (String, Vec<String>, Option<i32>) {
    let source = v.secret.as_ref().expect("a Secret volume");
    assert_eq!(source.optional, Some(false), "pods wait for the Secret");
    let keys = source.items.iter().flatten().map(|i| i.key.clone()).collect();
    (
        source.secret_name.clone().unwrap_or_default(),
        keys,
        source.default_mode,
    )
}

/// The cluster secret mount, TINYSNS_AUTH and the TLS wiring (only with spec.tls) of one
/// StatefulSet's pods.
fn check_security(s: &StatefulSet, spec: &SocialClusterSpec) {
    let name = s.name_any();
    let c = container(s);
    let v = volume(s, CLUSTER_SECRET_VOLUME).unwrap_or_else(|| panic!("{name}: cluster secret volume"));
    assert_eq!(
        secret_volume(v),
        ("demo-cluster-secret".to_owned(), vec!["secret".to_owned()], Some(0o440)),
        "{name}"
    );
    let m = mount(c, CLUSTER_SECRET_VOLUME).unwrap_or_else(|| panic!("{name}: cluster secret mount"));
    assert_eq!(
        (m.mount_path.as_str(), m.read_only),
        (CLUSTER_SECRET_DIR, Some(true)),
        "{name}"
    );
    assert_eq!(
        env_value(c, "TINYSNS_CLUSTER_SECRET_FILE"),
        Some("/etc/tinysns/cluster-secret/secret"),
        "{name}"
    );
    assert_eq!(env_value(c, "TINYSNS_AUTH"), Some(spec.auth.as_str()), "{name}");
    // The group of the secret files is the pods' fsGroup, which the process runs in.
    let psc = pod(s).security_context.as_ref().expect("pod security context");
    assert_eq!((psc.fs_group, psc.run_as_group), (Some(TINYSNS_UID), Some(TINYSNS_UID)));

    let tls_env = ["TINYSNS_TLS_CERT", "TINYSNS_TLS_KEY", "TINYSNS_TLS_CA"].map(|v| env_value(c, v));
    match &spec.tls {
        None => {
            assert!(
                volume(s, TLS_VOLUME).is_none() && mount(c, TLS_VOLUME).is_none(),
                "{name}"
            );
            assert_eq!(tls_env, [None; 3], "{name}");
        }
        Some(TlsSpec { secret_name }) => {
            let v = volume(s, TLS_VOLUME).unwrap_or_else(|| panic!("{name}: tls volume"));
            let keys = ["tls.crt", "tls.key", "ca.crt"].map(str::to_owned).to_vec();
            assert_eq!(secret_volume(v), (secret_name.clone(), keys, Some(0o440)), "{name}");
            let m = mount(c, TLS_VOLUME).unwrap_or_else(|| panic!("{name}: tls mount"));
            assert_eq!((m.mount_path.as_str(), m.read_only), (TLS_DIR, Some(true)), "{name}");
            assert_eq!(
                tls_env,
                [
                    Some("/etc/tinysns/tls/tls.crt"),
                    Some("/etc/tinysns/tls/tls.key"),
                    Some("/etc/tinysns/tls/ca.crt")
                ],
                "{name}"
            );
        }
    }
}

#[test]
fn one_by_one() {
    let c = check_shape(&spec(1, 1, 1));
    assert_eq!(
        c.stateful_sets.iter().map(ResourceExt::name_any).collect::<Vec<_>>(),
        ["demo-coordinator", "demo-rabbitmq", "demo-tsd-1", "demo-sync-1"]
    );
}

#[test]
fn default_spec_is_three_clusters_of_two() {
    let c = check_shape(&SocialClusterSpec::default());
    assert_eq!(replicas(sts(&c, "demo-tsd-3")), 2);
    assert_eq!(replicas(sts(&c, "demo-sync-3")), 2);
    assert!(c.stateful_sets.iter().all(|s| s.name_any() != "demo-tsd-4"));
}

#[test]
fn every_standard_spec_has_the_shape() {
    for (name, spec) in render::standard_specs() {
        let c = check_shape(&spec);
        assert!(!c.stateful_sets.is_empty(), "{name}");
    }
}

#[test]
fn five_by_three() {
    let c = check_shape(&spec(5, 3, 2));
    assert_eq!(replicas(sts(&c, "demo-tsd-5")), 3);
    assert_eq!(
        env_value(container(sts(&c, "demo-sync-5")), "TINYSNS_CLUSTERS"),
        Some("5")
    );
}

#[test]
fn storage_and_image_come_from_the_spec() {
    let mut s = SocialClusterSpec::default();
    s.storage.size = Quantity("5Gi".to_owned());
    s.storage.storage_class_name = Some("fast".to_owned());
    s.image.repository = "registry.example/tinysns".to_owned();
    s.image.tag = Some("v1".to_owned());
    let c = build_all(&validated(&s), &credentials("x"));
    let tsd = sts(&c, "demo-tsd-1");
    let claim = &tsd
        .spec
        .as_ref()
        .and_then(|s| s.volume_claim_templates.as_ref())
        .expect("claims")[0];
    let claim_spec = claim.spec.as_ref().expect("claim spec");
    assert_eq!(claim_spec.storage_class_name.as_deref(), Some("fast"));
    assert_eq!(
        claim_spec
            .resources
            .as_ref()
            .and_then(|r| r.requests.as_ref())
            .and_then(|r| r.get("storage")),
        Some(&Quantity("5Gi".to_owned()))
    );
    assert_eq!(container(tsd).image.as_deref(), Some("registry.example/tinysns:v1"));
    // No tag: the operator's own version, never `latest`.
    s.image.tag = None;
    let c = build_all(&validated(&s), &credentials("x"));
    assert_eq!(
        container(sts(&c, "demo-tsd-1")).image.as_deref(),
        Some(format!("registry.example/tinysns:{DEFAULT_IMAGE_TAG}").as_str())
    );
    assert_eq!(
        container(tsd).command.as_ref().expect("command")[0],
        "/usr/local/bin/tsd"
    );
}

#[test]
fn managed_rabbitmq_secret_carries_the_given_password() {
    let c = build_all(
        &validated(&SocialClusterSpec::default()),
        &credentials("abcdefghijklmnop1234"),
    );
    let secret = c
        .secrets
        .iter()
        .find(|s| s.name_any() == "demo-rabbitmq-credentials")
        .expect("credentials Secret");
    assert_eq!(secret.name_any(), "demo-rabbitmq-credentials");
    let data = secret.data.as_ref().expect("data");
    assert_eq!(data["password"].0, b"abcdefghijklmnop1234");
    assert_eq!(
        String::from_utf8(data["url"].0.clone()).expect("utf8"),
        "amqp://tinysns:abcdefghijklmnop1234@demo-rabbitmq.ns1.svc.cluster.local:5672/%2f"
    );
    assert_eq!(
        rabbitmq::password_from_secret(secret).as_deref(),
        Some("abcdefghijklmnop1234")
    );
}

#[test]
fn generated_passwords_are_random_and_url_safe() {
    let a = rabbitmq::generate_password();
    let b = rabbitmq::generate_password();
    assert_ne!(a, b);
    assert_eq!(a.len(), 32);
    assert!(a.chars().all(|c| c.is_ascii_alphanumeric()));
    assert_ne!(a, "guest");
}

#[test]
fn external_rabbitmq_has_no_broker_and_uses_the_given_secret() {
    let s = SocialClusterSpec {
        rabbitmq: RabbitMqSpec::External(ExternalRabbitMq {
            url_secret_ref: SecretKeyRef {
                name: "my-amqp".to_owned(),
                key: "uri".to_owned(),
            },
            queue_type: crate::crd::QueueType::Classic,
        }),
        ..SocialClusterSpec::default()
    };
    let c = build_all(&validated(&s), &credentials(""));
    assert!(c.config_maps.is_empty());
    assert!(c.stateful_sets.iter().all(|s| s.name_any() != "demo-rabbitmq"));
    assert_eq!(
        c.secrets.iter().map(ResourceExt::name_any).collect::<Vec<_>>(),
        ["demo-cluster-secret"],
        "only the cluster secret"
    );
    assert!(c.services.iter().all(|s| s.name_any() != "demo-rabbitmq"));
    assert!(c.pdbs.iter().all(|p| p.name_any() != "demo-rabbitmq"));
    let amqp = env_var(container(sts(&c, "demo-sync-2")), "AMQP_URL");
    let r = amqp
        .value_from
        .as_ref()
        .and_then(|v| v.secret_key_ref.as_ref())
        .expect("secret ref");
    assert_eq!((r.name.as_str(), r.key.as_str()), ("my-amqp", "uri"));
}

#[test]
fn validation_rejects_what_the_schema_cannot() {
    let mut s = SocialClusterSpec::default();
    s.timing.failure_timeout = "499ms".to_owned();
    assert!(matches!(
        validate(&s),
        Err(InvalidSpec::TimeoutNotAboveHeartbeat { .. })
    ));
    s.timing.failure_timeout = "1x".to_owned();
    assert!(matches!(validate(&s), Err(InvalidSpec::BadDuration { .. })));
    s.timing.failure_timeout = "2s".to_owned();
    s.timing.heartbeat_interval = "0s".to_owned();
    assert_eq!(validate(&s), Err(InvalidSpec::ZeroHeartbeat));
    let zero = spec(0, 1, 1);
    assert!(matches!(
        validate(&zero),
        Err(InvalidSpec::OutOfRange { field: "clusters", .. })
    ));
    assert!(validate(&spec(32, 8, 8)).is_ok());
    let mut edge = SocialClusterSpec::default();
    edge.timing.failure_timeout = "500ms".to_owned();
    assert!(validate(&edge).is_ok(), "exactly twice is fine");
}

#[test]
fn owner_requires_uid_and_a_short_name() {
    let mut sc = render::object("demo", "ns1", SocialClusterSpec::default());
    sc.metadata.uid = None;
    assert_eq!(
        Owner::from_object(&sc, &Environment::default()).err(),
        Some(InvalidSpec::MissingMetadata("metadata.uid"))
    );
    let long = "a".repeat(MAX_NAME_LEN + 1);
    let sc = render::object(&long, "ns1", SocialClusterSpec::default());
    assert!(matches!(
        Owner::from_object(&sc, &Environment::default()),
        Err(InvalidSpec::NameTooLong(_))
    ));
    let ok = "a".repeat(MAX_NAME_LEN);
    let sc = render::object(&ok, "ns1", SocialClusterSpec::default());
    let o = Owner::from_object(&sc, &Environment::default()).expect("max length is fine");
    assert!(o.coordinator_name().len() <= 52);
}

#[test]
fn owner_names_must_be_able_to_name_services() {
    // Names the API server takes for a SocialCluster (DNS subdomains) that no Service may
    // carry.
    for bad in ["1demo", "demo.eu", "demo-", "-demo"] {
        let sc = render::object(bad, "ns1", SocialClusterSpec::default());
        assert_eq!(
            Owner::from_object(&sc, &Environment::default()).err(),
            Some(InvalidSpec::NameNotALabel(bad.to_owned())),
            "{bad}"
        );
    }
    for good in ["demo", "d", "demo-2", "a1-b2"] {
        let sc = render::object(good, "ns1", SocialClusterSpec::default());
        assert!(Owner::from_object(&sc, &Environment::default()).is_ok(), "{good}");
    }
}

#[test]
fn spec_defaults_apply_to_a_minimal_manifest() {
    let sc: crate::crd::SocialCluster =
        serde_yaml::from_str("apiVersion: tinysns.io/v1alpha1\nkind: SocialCluster\nmetadata: {name: x}\nspec: {}\n")
            .expect("minimal manifest parses");
    assert_eq!(sc.spec, SocialClusterSpec::default());
}

#[test]
fn a_null_size_reads_as_the_default() {
    // The schema lets `null` through (a Quantity is nullable); it must not make the object
    // undecodable.
    let sc: crate::crd::SocialCluster = serde_yaml::from_str(
        "apiVersion: tinysns.io/v1alpha1\nkind: SocialCluster\nmetadata: {name: x}\n\
         spec: {storage: {size: null}, coordinator: {storageSize: null}}\n",
    )
    .expect("a null size decodes");
    assert_eq!(sc.spec, SocialClusterSpec::default());
    let sized: crate::crd::SocialCluster = serde_yaml::from_str(
        "apiVersion: tinysns.io/v1alpha1\nkind: SocialCluster\nmetadata: {name: x}\nspec: {storage: {size: 5Gi}}\n",
    )
    .expect("a size decodes");
    assert_eq!(sized.spec.storage.size.0, "5Gi");
}

#[test]
fn cluster_secret_object_is_immutable_shared_and_owned() {
    let c = build_all(&validated(&SocialClusterSpec::default()), &credentials("p"));
    let secret = &c.secrets[0];
    assert_eq!(secret.name_any(), "demo-cluster-secret", "applied first");
    assert_eq!(secret.type_.as_deref(), Some("Opaque"));
    assert_eq!(secret.immutable, Some(true));
    let data = secret.data.as_ref().expect("data");
    assert_eq!(data.keys().collect::<Vec<_>>(), [CLUSTER_SECRET_KEY]);
    assert_eq!(data[CLUSTER_SECRET_KEY].0, CLUSTER_SECRET.as_bytes());
    let labels = secret.labels();
    assert_eq!(labels[LABEL_COMPONENT], "cluster-secret");
    assert_eq!(labels[LABEL_INSTANCE], "demo");
    assert_eq!(secret.owner_references()[0].controller, Some(true));
    assert_eq!(security::cluster_secret_from(secret).as_deref(), Ok(CLUSTER_SECRET));
    assert_eq!(
        CLUSTER_SECRET_FILE,
        format!("{CLUSTER_SECRET_DIR}/{CLUSTER_SECRET_KEY}"),
        "the file the binaries read is the projected key"
    );
}

#[test]
fn generated_cluster_secrets_are_random_and_accepted_by_the_binaries() {
    let a = security::generate_cluster_secret();
    let b = security::generate_cluster_secret();
    assert_ne!(a, b);
    assert_eq!(a.len(), 48);
    assert!(a.chars().all(|c| c.is_ascii_alphanumeric()));
    let secret = security::cluster_secret(&owner(), &a);
    assert_eq!(security::cluster_secret_from(&secret), Ok(a));
}

#[test]
fn only_a_cluster_secret_the_binaries_accept_is_reused() {
    let stored = |value: &[u8]| Secret {
        metadata: ObjectMeta {
            name: Some("demo-cluster-secret".to_owned()),
            ..ObjectMeta::default()
        },
        data: Some(BTreeMap::from([(
            "secret".to_owned(),
            k8s_openapi::ByteString(value.to_vec()),
        )])),
        ..Secret::default()
    };
    let name = "demo-cluster-secret".to_owned();
    let ok = format!("{}\n", "x".repeat(32));
    assert_eq!(
        security::cluster_secret_from(&stored(ok.as_bytes())),
        Ok(ok),
        "kept as stored"
    );
    let b64 = "c2VjcmV0IHZhbHVlIHRoYXQgaXMgbG9uZyBlbm91Z2g+/w==";
    assert_eq!(
        security::cluster_secret_from(&stored(b64.as_bytes())).as_deref(),
        Ok(b64)
    );
    assert_eq!(
        security::cluster_secret_from(&stored(b"short")),
        Err(UnusableSecret::Length {
            name: name.clone(),
            len: 5
        })
    );
    assert!(matches!(
        security::cluster_secret_from(&stored("y".repeat(257).as_bytes())),
        Err(UnusableSecret::Length { len: 257, .. })
    ));
    let spaced = format!("{} {}", "a".repeat(20), "b".repeat(20));
    assert_eq!(
        security::cluster_secret_from(&stored(spaced.as_bytes())),
        Err(UnusableSecret::Alphabet { name: name.clone() })
    );
    assert_eq!(
        security::cluster_secret_from(&stored(&[0xff; 40])),
        Err(UnusableSecret::NotText { name: name.clone() })
    );
    let mut empty = stored(b"");
    empty.data = None;
    assert_eq!(
        security::cluster_secret_from(&empty),
        Err(UnusableSecret::MissingKey { name })
    );
    let err = security::cluster_secret_from(&stored(spaced.as_bytes())).expect_err("unusable");
    assert!(!err.to_string().contains(&spaced), "errors never carry the value");
}

#[test]
fn credentials_debug_hides_the_values() {
    let shown = format!("{:?}", credentials("brokerPassword1234"));
    assert!(
        !shown.contains(CLUSTER_SECRET) && !shown.contains("brokerPassword1234"),
        "{shown}"
    );
    assert!(shown.contains("48 characters"), "{shown}");
}

#[test]
fn tls_is_wired_only_when_spec_tls_is_set() {
    let plain = build_all(&validated(&SocialClusterSpec::default()), &credentials("p"));
    let tls = SocialClusterSpec {
        tls: Some(TlsSpec {
            secret_name: "demo-tls".to_owned(),
        }),
        ..SocialClusterSpec::default()
    };
    let secured = build_all(&validated(&tls), &credentials("p"));
    for s in tinysns_sets(&plain) {
        check_security(s, &SocialClusterSpec::default());
    }
    for s in tinysns_sets(&secured) {
        check_security(s, &tls);
    }
    // The operator references the TLS Secret; it never writes it.
    assert!(secured.secrets.iter().all(|s| s.name_any() != "demo-tls"));
    assert_eq!(plain.secrets.len(), secured.secrets.len());
    // Probes cannot speak TLS: with it, coordinator and tsd answer them on a plaintext health
    // port; the synchronizer's port only ever serves health, in plaintext.
    for (children, tls) in [(&plain, false), (&secured, true)] {
        for s in tinysns_sets(children) {
            let (name, c) = (s.name_any(), container(s));
            let synchronizer = name.starts_with("demo-sync");
            let expected = match (tls, synchronizer) {
                (true, false) => HEALTH_PORT,
                (_, true) => SYNCHRONIZER_PORT,
                (false, false) if name == "demo-coordinator" => COORDINATOR_PORT,
                (false, false) => TSD_PORT,
            };
            let probe = |p: &Option<k8s_openapi::api::core::v1::Probe>| {
                p.as_ref().and_then(|p| p.grpc.as_ref()).map(|g| g.port)
            };
            assert_eq!(probe(&c.liveness_probe), Some(expected), "{name} liveness");
            assert_eq!(probe(&c.readiness_probe), Some(expected), "{name} readiness");
            let health_env = env_value(c, "TINYSNS_HEALTH_PORT");
            assert_eq!(health_env.is_some(), tls && !synchronizer, "{name}");
            let has_port = c.ports.iter().flatten().any(|p| p.name.as_deref() == Some("health"));
            assert_eq!(has_port, tls && !synchronizer, "{name}");
        }
    }
}

#[test]
fn auth_mode_reaches_every_binary() {
    for auth in [AuthMode::Password, AuthMode::Open] {
        let s = SocialClusterSpec {
            auth,
            ..SocialClusterSpec::default()
        };
        let c = build_all(&validated(&s), &credentials("p"));
        assert_eq!(tinysns_sets(&c).count(), 7);
        for sts in tinysns_sets(&c) {
            assert_eq!(
                env_value(container(sts), "TINYSNS_AUTH"),
                Some(auth.as_str()),
                "{}",
                sts.name_any()
            );
        }
    }
    assert_eq!(AuthMode::default(), AuthMode::Password);
}

#[test]
fn tls_secret_name_is_validated() {
    let with_tls = |name: &str| SocialClusterSpec {
        tls: Some(TlsSpec {
            secret_name: name.to_owned(),
        }),
        ..SocialClusterSpec::default()
    };
    for good in ["demo-tls", "a", "tls.example-1", &"a".repeat(253)] {
        assert_eq!(validate(&with_tls(good)), Ok(()), "{good}");
    }
    for bad in ["", "Demo", "-tls", "tls-", "a..b", "a_b", &"a".repeat(254)] {
        assert_eq!(
            validate(&with_tls(bad)),
            Err(InvalidSpec::BadSecretName {
                field: "tls.secretName",
                value: bad.to_owned()
            }),
            "{bad}"
        );
    }
    for reserved in ["demo-cluster-secret", "demo-rabbitmq-credentials"] {
        let sc = render::object("demo", "ns1", with_tls(reserved));
        assert!(
            matches!(
                check(&sc, &Environment::default()),
                Err(InvalidSpec::ReservedSecretName { .. })
            ),
            "{reserved}"
        );
    }
    let sc = render::object("demo", "ns1", with_tls("demo-tls"));
    assert_eq!(
        check(&sc, &Environment::default()).map(|v| v.owner().name.clone()),
        Ok("demo".to_owned())
    );
}

#[test]
fn auth_and_tls_parse_from_a_manifest() {
    let sc: crate::crd::SocialCluster = serde_yaml::from_str(
        "apiVersion: tinysns.io/v1alpha1\nkind: SocialCluster\nmetadata: {name: x}\n\
         spec: {auth: open, tls: {secretName: x-tls}}\n",
    )
    .expect("manifest parses");
    assert_eq!(sc.spec.auth, AuthMode::Open);
    assert_eq!(sc.spec.tls.map(|t| t.secret_name).as_deref(), Some("x-tls"));
    let bad: Result<crate::crd::SocialCluster, _> = serde_yaml::from_str(
        "apiVersion: tinysns.io/v1alpha1\nkind: SocialCluster\nmetadata: {name: x}\nspec: {auth: none}\n",
    );
    assert!(bad.is_err(), "only password and open");
}

#[test]
fn bad_gateway_specs_are_refused_with_their_field() {
    use crate::crd::GatewayIngress;
    let with_ingress = |edit: &dyn Fn(&mut GatewayIngress)| {
        let mut ingress = GatewayIngress {
            host: "social.example.com".to_owned(),
            tls_secret_name: Some("social-tls".to_owned()),
            class_name: Some("nginx".to_owned()),
            annotations: BTreeMap::from([(
                "nginx.ingress.kubernetes.io/backend-protocol".to_owned(),
                "HTTPS".to_owned(),
            )]),
        };
        edit(&mut ingress);
        let mut spec = SocialClusterSpec::default();
        spec.gateway.ingress = Some(ingress);
        spec
    };
    assert!(validate(&with_ingress(&|_| {})).is_ok());
    assert!(validate(&with_ingress(&|i| i.host = "*.example.com".to_owned())).is_ok());
    assert!(validate(&with_ingress(&|i| i.host = "localhost".to_owned())).is_ok());

    let mut many = SocialClusterSpec::default();
    many.gateway.replicas = crate::crd::MAX_GATEWAY_REPLICAS + 1;
    let refused = validate(&many).unwrap_err();
    assert!(matches!(
        refused,
        InvalidSpec::OutOfRange {
            field: "gateway.replicas",
            ..
        }
    ));
    assert!(refused.to_string().contains("gateway.replicas"), "{refused}");
    let mut none = SocialClusterSpec::default();
    none.gateway.replicas = 0;
    assert!(validate(&none).is_ok(), "0: no gateway");

    let mut proxies = SocialClusterSpec::default();
    proxies.gateway.trusted_proxies = vec!["10.0.0.0/8".into(), "192.168.1.5".into(), "fd00::/8".into()];
    assert!(validate(&proxies).is_ok());
    for bad in ["10.0.0.0/33", "ingress.local", "10.0.0.0/", "::1/129"] {
        proxies.gateway.trusted_proxies = vec![bad.into()];
        assert_eq!(
            validate(&proxies),
            Err(InvalidSpec::BadTrustedProxy(bad.into())),
            "{bad}"
        );
    }

    for host in [
        "10.0.0.1",
        "Social.example.com",
        "social_example.com",
        "",
        "a..b",
        "*.",
        "x.*.y",
    ] {
        let refused = validate(&with_ingress(&|i| i.host = host.to_owned())).unwrap_err();
        assert_eq!(refused, InvalidSpec::BadIngressHost(host.to_owned()), "{host}");
        assert!(refused.to_string().starts_with("gateway.ingress.host"), "{refused}");
    }
    let refused = validate(&with_ingress(&|i| i.tls_secret_name = Some("Social_TLS".to_owned()))).unwrap_err();
    assert_eq!(
        refused,
        InvalidSpec::BadSecretName {
            field: "gateway.ingress.tlsSecretName",
            value: "Social_TLS".to_owned()
        }
    );
    assert_eq!(
        validate(&with_ingress(&|i| i.class_name = Some("NGINX".to_owned()))),
        Err(InvalidSpec::BadIngressClass("NGINX".to_owned()))
    );
    for key in ["bad key", "-x", "Example.com/x", &format!("x/{}", "a".repeat(64)), "x/"] {
        let refused = validate(&with_ingress(&|i| {
            i.annotations.insert(key.to_owned(), "v".to_owned());
        }));
        assert_eq!(refused, Err(InvalidSpec::BadAnnotationKey(key.to_owned())), "{key}");
    }

    // The operator's own Secrets cannot serve as the Ingress certificate.
    let spec = with_ingress(&|i| i.tls_secret_name = Some("demo-cluster-secret".to_owned()));
    let sc = render::object("demo", "ns1", spec);
    assert_eq!(
        check(&sc, &Environment::default()).err(),
        Some(InvalidSpec::ReservedSecretName {
            field: "gateway.ingress.tlsSecretName",
            value: "demo-cluster-secret".to_owned()
        })
    );
}

#[test]
fn gateway_specs_parse_from_a_manifest() {
    let sc: crate::crd::SocialCluster = serde_yaml::from_str(
        "apiVersion: tinysns.io/v1alpha1\nkind: SocialCluster\nmetadata: {name: x}\nspec:\n  gateway:\n    replicas: 3\n    ingress:\n      host: social.example.com\n      tlsSecretName: social-tls\n      className: nginx\n      annotations: {a.io/b: c}\n",
    )
    .expect("the manifest parses");
    let gateway = &sc.spec.gateway;
    assert_eq!(gateway.replicas, 3);
    let ingress = gateway.ingress.as_ref().expect("an ingress");
    assert_eq!(ingress.host, "social.example.com");
    assert_eq!(ingress.tls_secret_name.as_deref(), Some("social-tls"));
    assert_eq!(ingress.class_name.as_deref(), Some("nginx"));
    assert_eq!(ingress.annotations.get("a.io/b").map(String::as_str), Some("c"));
    let defaults: crate::crd::SocialCluster =
        serde_yaml::from_str("apiVersion: tinysns.io/v1alpha1\nkind: SocialCluster\nmetadata: {name: x}\nspec: {}\n")
            .expect("minimal manifest parses");
    assert_eq!(defaults.spec.gateway.replicas, 2);
    assert_eq!(defaults.spec.gateway.ingress, None);
}
