//! The managed RabbitMQ broker: a single-node Deployment, its Service and a Secret with
//! generated credentials (never guest/guest, which RabbitMQ refuses over the network anyway).

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EmptyDirVolumeSource, EnvVar, EnvVarSource, PodSpec, PodTemplateSpec, Probe, Secret,
    SecretKeySelector, Service, ServicePort, ServiceSpec, TCPSocketAction, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use rand::Rng;

use super::{AMQP_PORT, Owner, Role, container_security_context, pod_security_context, resources_for};
use crate::crd::{ManagedRabbitMq, RabbitMqSpec, SocialClusterSpec};

/// Broker user the synchronizers log in as.
pub const USERNAME: &str = "tinysns";
pub const KEY_USERNAME: &str = "username";
pub const KEY_PASSWORD: &str = "password";
pub const KEY_URL: &str = "url";
/// uid of the broker process. The rabbitmq image starts as root and drops privileges itself;
/// running it directly as a fixed non-root uid with a writable emptyDir home works as well
/// and lets the pod run under the restricted Pod Security Standard.
pub const RABBITMQ_UID: i64 = 999;
const PASSWORD_LEN: usize = 32;

/// The managed broker settings, or None for an external broker.
pub fn managed(spec: &SocialClusterSpec) -> Option<&ManagedRabbitMq> {
    match &spec.rabbitmq {
        RabbitMqSpec::Managed(m) => Some(m),
        RabbitMqSpec::External(_) => None,
    }
}

/// Secret name and key that hold the AMQP URL synchronizers use.
pub fn url_secret(owner: &Owner, spec: &SocialClusterSpec) -> (String, String) {
    match &spec.rabbitmq {
        RabbitMqSpec::Managed(_) => (owner.rabbitmq_secret_name(), KEY_URL.to_owned()),
        RabbitMqSpec::External(e) => (e.url_secret_ref.name.clone(), e.url_secret_ref.key.clone()),
    }
}

/// A fresh random password: alphanumeric, so it needs no escaping inside the amqp:// URL.
pub fn generate_password() -> String {
    rand::rng()
        .sample_iter(&rand::distr::Alphanumeric)
        .take(PASSWORD_LEN)
        .map(char::from)
        .collect()
}

/// The password stored in an existing credentials Secret, if it holds a usable one.
pub fn password_from_secret(secret: &Secret) -> Option<String> {
    let bytes = secret.data.as_ref()?.get(KEY_PASSWORD)?;
    let password = String::from_utf8(bytes.0.clone()).ok()?;
    // Only reuse what we would have generated; anything else (edited by hand into something
    // that breaks the URL) is replaced.
    if password.len() >= 16 && password.chars().all(|c| c.is_ascii_alphanumeric()) {
        Some(password)
    } else {
        None
    }
}

/// The AMQP URL of the managed broker (vhost "/" escaped as %2f).
pub fn amqp_url(owner: &Owner, password: &str) -> String {
    format!(
        "amqp://{USERNAME}:{password}@{}:{AMQP_PORT}/%2f",
        owner.service_host(&owner.rabbitmq_name())
    )
}

fn secret_env(name: &str, secret: &str, key: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.to_owned(),
                key: key.to_owned(),
                optional: Some(false),
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
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

/// Deployment, Service and credentials Secret of the managed broker.
pub fn build(
    owner: &Owner,
    spec: &SocialClusterSpec,
    managed: &ManagedRabbitMq,
    password: &str,
) -> (Deployment, Service, Secret) {
    let name = owner.rabbitmq_name();
    let secret_name = owner.rabbitmq_secret_name();
    let role = Role::RabbitMq;

    let secret = Secret {
        metadata: owner.meta(secret_name.clone(), role, None),
        type_: Some("Opaque".to_owned()),
        data: Some(BTreeMap::from([
            (KEY_USERNAME.to_owned(), ByteString(USERNAME.as_bytes().to_vec())),
            (KEY_PASSWORD.to_owned(), ByteString(password.as_bytes().to_vec())),
            (KEY_URL.to_owned(), ByteString(amqp_url(owner, password).into_bytes())),
        ])),
        ..Secret::default()
    };

    let container = Container {
        name: role.as_str().to_owned(),
        image: Some(managed.image.clone()),
        image_pull_policy: Some(managed.pull_policy.as_str().to_owned()),
        env: Some(vec![
            secret_env("RABBITMQ_DEFAULT_USER", &secret_name, KEY_USERNAME),
            secret_env("RABBITMQ_DEFAULT_PASS", &secret_name, KEY_PASSWORD),
        ]),
        ports: Some(vec![ContainerPort {
            name: Some("amqp".to_owned()),
            container_port: AMQP_PORT,
            protocol: Some("TCP".to_owned()),
            ..ContainerPort::default()
        }]),
        readiness_probe: Some(tcp_probe(5, 5, 3)),
        // Boot of the Erlang VM takes a while on small nodes: be patient before restarting.
        liveness_probe: Some(tcp_probe(60, 20, 3)),
        resources: Some(resources_for(spec, role)),
        // The entrypoint writes config and the Erlang cookie; only the data dir is a volume,
        // so the root filesystem stays writable here.
        security_context: Some(container_security_context(false)),
        volume_mounts: Some(vec![VolumeMount {
            name: "data".to_owned(),
            mount_path: "/var/lib/rabbitmq".to_owned(),
            ..VolumeMount::default()
        }]),
        ..Container::default()
    };

    let deployment = Deployment {
        metadata: owner.meta(name.clone(), role, None),
        spec: Some(DeploymentSpec {
            replicas: Some(1),
            // Two brokers side by side would split the synchronizers between them.
            strategy: Some(DeploymentStrategy {
                type_: Some("Recreate".to_owned()),
                ..DeploymentStrategy::default()
            }),
            selector: LabelSelector {
                match_labels: Some(owner.selector_labels(role, None)),
                ..LabelSelector::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(owner.labels(role, None)),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![container],
                    security_context: Some(pod_security_context(RABBITMQ_UID)),
                    automount_service_account_token: Some(false),
                    enable_service_links: Some(false),
                    termination_grace_period_seconds: Some(60),
                    volumes: Some(vec![Volume {
                        name: "data".to_owned(),
                        empty_dir: Some(EmptyDirVolumeSource::default()),
                        ..Volume::default()
                    }]),
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        }),
        ..Deployment::default()
    };

    let service = Service {
        metadata: owner.meta(name, role, None),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".to_owned()),
            selector: Some(owner.selector_labels(role, None)),
            ports: Some(vec![ServicePort {
                name: Some("amqp".to_owned()),
                port: AMQP_PORT,
                target_port: Some(IntOrString::String("amqp".to_owned())),
                protocol: Some("TCP".to_owned()),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    };

    (deployment, service, secret)
}
