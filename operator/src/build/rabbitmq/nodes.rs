//! The managed broker's objects: a StatefulSet of RabbitMQ nodes, each on its own volume,
//! behind a client Service (AMQP, metrics) and a headless Service the nodes cluster through;
//! its configuration, credentials and disruption budget.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapVolumeSource, Container, ContainerPort, EnvVar, ExecAction, KeyToPath, Lifecycle,
    LifecycleHandler, PodSpec, PodTemplateSpec, Probe, Secret, SecretVolumeSource, Service, ServicePort, ServiceSpec,
    TCPSocketAction, Volume, VolumeMount,
};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{CREDENTIALS_ANNOTATION, KEY_ERLANG_COOKIE, RABBITMQ_UID, config, credentials_secret};
use crate::build::{
    AMQP_PORT, DATA_VOLUME, Owner, Role, container_security_context, data_claim, env, pdb_allowing,
    pod_security_context, quantity, resources_for,
};
use crate::crd::{ManagedRabbitMq, SocialClusterSpec};

pub const EPMD_PORT: i32 = 4369;
/// Erlang distribution: AMQP port + 20000, RabbitMQ's default.
pub const DIST_PORT: i32 = 25672;
/// rabbitmq_prometheus.
pub const PROMETHEUS_PORT: i32 = 15692;
/// The broker's data directory (and the rabbitmq user's home, where the cookie lives).
pub const DATA_DIR: &str = "/var/lib/rabbitmq";
/// Pod template annotation: a digest of rabbitmq.conf and enabled_plugins, which the nodes
/// read at boot only.
pub const CONFIG_ANNOTATION: &str = "tinysns.io/broker-config";
/// How long a node being stopped waits for its quorum queues to keep a majority without it
/// (`rabbitmq-upgrade await_online_quorum_plus_one`) before it goes anyway.
pub const QUORUM_WAIT_SECONDS: i64 = 600;
const COOKIE_DIR: &str = "/tmp/erlang-cookie-secret";
const CONFIG_VOLUME: &str = "config";
const COOKIE_VOLUME: &str = "erlang-cookie";
const DEFINITIONS_VOLUME: &str = "definitions";
const CONF_KEY: &str = "rabbitmq.conf";
const PLUGINS_KEY: &str = "enabled_plugins";

/// Every object of a managed broker.
#[derive(Clone, Debug)]
pub struct Broker {
    pub stateful_set: StatefulSet,
    /// `<name>-rabbitmq`: what the synchronizers connect to.
    pub service: Service,
    /// `<name>-rabbitmq-nodes`: stable names the nodes cluster through.
    pub nodes_service: Service,
    pub config_map: ConfigMap,
    pub secret: Secret,
    pub pdb: PodDisruptionBudget,
}

/// Builds the managed broker with the given (kept) password and Erlang cookie.
pub fn build(
    owner: &Owner,
    spec: &SocialClusterSpec,
    managed: &ManagedRabbitMq,
    password: &str,
    erlang_cookie: &str,
) -> Broker {
    let memory_limit = resources_for(spec, Role::RabbitMq)
        .limits
        .as_ref()
        .and_then(|limits| limits.get("memory"))
        // `validate` refused a limit that is not a quantity; none means "measure the node".
        .and_then(|limit| quantity::to_units(limit).ok());
    let conf = config::rabbitmq_conf(memory_limit);
    let config_map = ConfigMap {
        metadata: owner.meta(config_map_name(owner), Role::RabbitMq, None),
        data: Some(BTreeMap::from([
            (CONF_KEY.to_owned(), conf.clone()),
            (PLUGINS_KEY.to_owned(), config::ENABLED_PLUGINS.to_owned()),
        ])),
        ..ConfigMap::default()
    };
    let annotations = BTreeMap::from([
        (
            CREDENTIALS_ANNOTATION.to_owned(),
            config::digest(&[password, erlang_cookie]),
        ),
        (
            CONFIG_ANNOTATION.to_owned(),
            config::digest(&[&conf, config::ENABLED_PLUGINS]),
        ),
    ]);
    // One node may not be evicted at all (a drain waits for you: see docs/kubernetes.md);
    // of three, one at a time, so quorum queues keep their majority.
    let max_unavailable = if managed.replicas > 1 { 1 } else { 0 };
    Broker {
        stateful_set: stateful_set(owner, spec, managed, annotations),
        service: client_service(owner),
        nodes_service: nodes_service(owner),
        config_map,
        secret: credentials_secret(owner, password, erlang_cookie),
        pdb: pdb_allowing(owner, Role::RabbitMq, None, max_unavailable),
    }
}

fn config_map_name(owner: &Owner) -> String {
    format!("{}-config", owner.rabbitmq_name())
}

fn nodes_service_name(owner: &Owner) -> String {
    format!("{}-nodes", owner.rabbitmq_name())
}

fn port(name: &str, number: i32) -> ContainerPort {
    ContainerPort {
        name: Some(name.to_owned()),
        container_port: number,
        protocol: Some("TCP".to_owned()),
        ..ContainerPort::default()
    }
}

fn service_port(name: &str, number: i32) -> ServicePort {
    ServicePort {
        name: Some(name.to_owned()),
        port: number,
        target_port: Some(IntOrString::String(name.to_owned())),
        protocol: Some("TCP".to_owned()),
        ..ServicePort::default()
    }
}

fn tcp_probe(initial_delay: i32, period: i32, failures: i32) -> Probe {
    Probe {
        tcp_socket: Some(TCPSocketAction {
            port: IntOrString::String("amqp".to_owned()),
            ..TCPSocketAction::default()
        }),
        initial_delay_seconds: Some(initial_delay),
        period_seconds: Some(period),
        timeout_seconds: Some(5),
        failure_threshold: Some(failures),
        ..Probe::default()
    }
}

fn mount(volume: &str, path: &str, sub_path: Option<&str>) -> VolumeMount {
    VolumeMount {
        name: volume.to_owned(),
        mount_path: path.to_owned(),
        sub_path: sub_path.map(str::to_owned),
        read_only: Some(volume != DATA_VOLUME),
        ..VolumeMount::default()
    }
}

/// The node's name: long, from the pod's stable DNS name, which is what 4.1's peer discovery
/// derives node 0's name from.
fn node_env(owner: &Owner) -> Vec<EnvVar> {
    let pod_name = EnvVar {
        name: "MY_POD_NAME".to_owned(),
        value_from: crate::build::pod_name_env().value_from,
        ..EnvVar::default()
    };
    vec![
        pod_name,
        env("RABBITMQ_USE_LONGNAME", "true"),
        env(
            "RABBITMQ_NODENAME",
            format!(
                "rabbit@$(MY_POD_NAME).{}",
                owner.service_host(&nodes_service_name(owner))
            ),
        ),
        env("RABBITMQ_ENABLED_PLUGINS_FILE", "/etc/rabbitmq/enabled_plugins"),
    ]
}

/// A node stopped on purpose first waits until its quorum queues keep a majority without it,
/// then hands its queue leaders to the others (`drain`; a restarted node is revived).
fn pre_stop(replicas: u32) -> Option<Lifecycle> {
    (replicas > 1).then(|| Lifecycle {
        pre_stop: Some(LifecycleHandler {
            exec: Some(ExecAction {
                command: Some(vec![
                    "sh".to_owned(),
                    "-c".to_owned(),
                    format!(
                        "rabbitmq-upgrade await_online_quorum_plus_one -t {QUORUM_WAIT_SECONDS}; rabbitmq-upgrade drain -t 60"
                    ),
                ]),
            }),
            ..LifecycleHandler::default()
        }),
        ..Lifecycle::default()
    })
}

fn broker_container(spec: &SocialClusterSpec, managed: &ManagedRabbitMq, owner: &Owner) -> Container {
    Container {
        name: Role::RabbitMq.as_str().to_owned(),
        image: Some(managed.image.clone()),
        image_pull_policy: Some(managed.pull_policy.as_str().to_owned()),
        env: Some(node_env(owner)),
        ports: Some(vec![
            port("amqp", AMQP_PORT),
            port("epmd", EPMD_PORT),
            port("cluster-links", DIST_PORT),
            port("prometheus", PROMETHEUS_PORT),
        ]),
        readiness_probe: Some(tcp_probe(5, 5, 3)),
        // Boot of the Erlang VM takes a while on small nodes: be patient before restarting.
        liveness_probe: Some(tcp_probe(60, 20, 3)),
        lifecycle: pre_stop(managed.replicas),
        resources: Some(resources_for(spec, Role::RabbitMq)),
        security_context: Some(container_security_context(false)),
        volume_mounts: Some(vec![
            mount(DATA_VOLUME, DATA_DIR, None),
            mount(CONFIG_VOLUME, "/etc/rabbitmq/conf.d/20-tinysns.conf", Some(CONF_KEY)),
            mount(CONFIG_VOLUME, "/etc/rabbitmq/enabled_plugins", Some(PLUGINS_KEY)),
            mount(DEFINITIONS_VOLUME, config::DEFINITIONS_DIR, None),
        ]),
        termination_message_policy: Some("FallbackToLogsOnError".to_owned()),
        ..Container::default()
    }
}

/// Copies the shared Erlang cookie into the data directory with the mode Erlang insists on
/// (a Secret volume's files are links the node may not own).
fn cookie_container(managed: &ManagedRabbitMq) -> Container {
    Container {
        name: "erlang-cookie".to_owned(),
        image: Some(managed.image.clone()),
        image_pull_policy: Some(managed.pull_policy.as_str().to_owned()),
        command: Some(vec![
            "sh".to_owned(),
            "-c".to_owned(),
            format!("cp {COOKIE_DIR}/.erlang.cookie {DATA_DIR}/.erlang.cookie && chmod 600 {DATA_DIR}/.erlang.cookie"),
        ]),
        security_context: Some(container_security_context(true)),
        volume_mounts: Some(vec![
            mount(DATA_VOLUME, DATA_DIR, None),
            mount(COOKIE_VOLUME, COOKIE_DIR, None),
        ]),
        ..Container::default()
    }
}

fn secret_volume(name: &str, secret: String, key: &str, path: &str) -> Volume {
    Volume {
        name: name.to_owned(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(secret),
            items: Some(vec![KeyToPath {
                key: key.to_owned(),
                path: path.to_owned(),
                mode: Some(0o400),
            }]),
            default_mode: Some(0o400),
            optional: Some(false),
        }),
        ..Volume::default()
    }
}

fn stateful_set(
    owner: &Owner,
    spec: &SocialClusterSpec,
    managed: &ManagedRabbitMq,
    annotations: BTreeMap<String, String>,
) -> StatefulSet {
    let role = Role::RabbitMq;
    let volumes = vec![
        Volume {
            name: CONFIG_VOLUME.to_owned(),
            config_map: Some(ConfigMapVolumeSource {
                name: config_map_name(owner),
                optional: Some(false),
                ..ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        },
        secret_volume(
            COOKIE_VOLUME,
            owner.rabbitmq_secret_name(),
            KEY_ERLANG_COOKIE,
            ".erlang.cookie",
        ),
        secret_volume(
            DEFINITIONS_VOLUME,
            owner.rabbitmq_secret_name(),
            config::DEFINITIONS_FILE,
            config::DEFINITIONS_FILE,
        ),
    ];
    let grace = if managed.replicas > 1 {
        QUORUM_WAIT_SECONDS + 120
    } else {
        60
    };
    StatefulSet {
        metadata: owner.meta(owner.rabbitmq_name(), role, None),
        spec: Some(StatefulSetSpec {
            replicas: Some(i32::try_from(managed.replicas).unwrap_or(1)),
            service_name: Some(nodes_service_name(owner)),
            // Node 0 forms the cluster and the others join it, in whatever order they start.
            pod_management_policy: Some("Parallel".to_owned()),
            selector: LabelSelector {
                match_labels: Some(owner.selector_labels(role, None)),
                ..LabelSelector::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(owner.labels(role, None)),
                    annotations: Some(annotations),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    init_containers: Some(vec![cookie_container(managed)]),
                    containers: vec![broker_container(spec, managed, owner)],
                    security_context: Some(pod_security_context(RABBITMQ_UID)),
                    automount_service_account_token: Some(false),
                    enable_service_links: Some(false),
                    termination_grace_period_seconds: Some(grace),
                    volumes: Some(volumes),
                    ..PodSpec::default()
                }),
            },
            volume_claim_templates: Some(vec![data_claim(
                owner,
                role,
                None,
                managed.storage.size.clone(),
                managed.storage.storage_class_name.clone(),
            )]),
            ..StatefulSetSpec::default()
        }),
        ..StatefulSet::default()
    }
}

fn client_service(owner: &Owner) -> Service {
    let role = Role::RabbitMq;
    Service {
        metadata: owner.meta(owner.rabbitmq_name(), role, None),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".to_owned()),
            selector: Some(owner.selector_labels(role, None)),
            ports: Some(vec![
                service_port("amqp", AMQP_PORT),
                service_port("prometheus", PROMETHEUS_PORT),
            ]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

/// Published before the nodes are ready: a node joining the cluster must resolve node 0
/// while both are still booting.
fn nodes_service(owner: &Owner) -> Service {
    let role = Role::RabbitMq;
    Service {
        metadata: owner.meta(nodes_service_name(owner), role, None),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".to_owned()),
            publish_not_ready_addresses: Some(true),
            selector: Some(owner.selector_labels(role, None)),
            ports: Some(vec![
                service_port("epmd", EPMD_PORT),
                service_port("cluster-links", DIST_PORT),
                service_port("amqp", AMQP_PORT),
            ]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}
