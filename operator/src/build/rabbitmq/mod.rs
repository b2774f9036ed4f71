//! The message bus between clusters. Managed: a StatefulSet of 1 or 3 RabbitMQ nodes on
//! persistent volumes, its Services, configuration, credentials and disruption budget
//! (`nodes`), told what to load and how much memory it has (`config`). Or a RabbitmqCluster
//! of the RabbitMQ Cluster Operator, or an external broker: then only the synchronizers'
//! connection settings are built here.

pub mod config;
pub mod nodes;

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, Secret, SecretKeySelector};
use rand::Rng;

use super::{AMQP_PORT, Owner, Role, env};
use crate::crd::{ManagedRabbitMq, RabbitMqSpec, SocialClusterSpec};
pub use nodes::{Broker, build};

/// Broker user the synchronizers log in as.
pub const USERNAME: &str = "tinysns";
pub const KEY_USERNAME: &str = "username";
pub const KEY_PASSWORD: &str = "password";
pub const KEY_URL: &str = "url";
/// The Erlang cookie the nodes of a managed broker share (they refuse each other without it).
pub const KEY_ERLANG_COOKIE: &str = "erlang-cookie";
/// uid of the broker process (the `rabbitmq` user of the official image). The container runs
/// as that user from the start, so the pod fits the restricted Pod Security Standard.
pub const RABBITMQ_UID: i64 = 999;
const PASSWORD_LEN: usize = 32;
const ERLANG_COOKIE_LEN: usize = 48;
/// Pod template annotation: a digest of the broker credentials. A new password (a deleted or
/// damaged credentials Secret) changes it, so the broker nodes restart and load it, and the
/// synchronizers restart and use it.
pub const CREDENTIALS_ANNOTATION: &str = "tinysns.io/broker-credentials";

/// The managed broker settings, or None for a broker run elsewhere.
pub fn managed(spec: &SocialClusterSpec) -> Option<&ManagedRabbitMq> {
    match &spec.rabbitmq {
        RabbitMqSpec::Managed(m) => Some(m),
        RabbitMqSpec::ClusterRef(_) | RabbitMqSpec::External(_) => None,
    }
}

/// A fresh random alphanumeric string: it needs no escaping inside the amqp:// URL.
fn generate(len: usize) -> String {
    rand::rng()
        .sample_iter(&rand::distr::Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

pub fn generate_password() -> String {
    generate(PASSWORD_LEN)
}

pub fn generate_erlang_cookie() -> String {
    generate(ERLANG_COOKIE_LEN)
}

/// A generated value stored under `key` of an existing credentials Secret, if it is one we
/// would have generated; anything else (edited by hand into something that breaks the URL)
/// is replaced.
fn generated_value(secret: &Secret, key: &str) -> Option<String> {
    let bytes = secret.data.as_ref()?.get(key)?;
    let value = String::from_utf8(bytes.0.clone()).ok()?;
    (value.len() >= 16 && value.chars().all(|c| c.is_ascii_alphanumeric())).then_some(value)
}

/// The password stored in an existing credentials Secret, if it holds a usable one.
pub fn password_from_secret(secret: &Secret) -> Option<String> {
    generated_value(secret, KEY_PASSWORD)
}

/// The Erlang cookie stored in an existing credentials Secret (older operators wrote none).
pub fn erlang_cookie_from_secret(secret: &Secret) -> Option<String> {
    generated_value(secret, KEY_ERLANG_COOKIE)
}

/// The AMQP URL of the managed broker (vhost "/" escaped as %2f).
pub fn amqp_url(owner: &Owner, password: &str) -> String {
    format!(
        "amqp://{USERNAME}:{password}@{}:{AMQP_PORT}/%2f",
        owner.service_host(&owner.rabbitmq_name())
    )
}

/// The credentials Secret of the managed broker: what the synchronizers read (url), what the
/// nodes share (Erlang cookie) and load at boot (definitions, with a hash of the password).
pub fn credentials_secret(owner: &Owner, password: &str, erlang_cookie: &str) -> Secret {
    let bytes = |s: &str| ByteString(s.as_bytes().to_vec());
    Secret {
        metadata: owner.meta(owner.rabbitmq_secret_name(), Role::RabbitMq, None),
        type_: Some("Opaque".to_owned()),
        data: Some(BTreeMap::from([
            (KEY_USERNAME.to_owned(), bytes(USERNAME)),
            (KEY_PASSWORD.to_owned(), bytes(password)),
            (KEY_URL.to_owned(), bytes(&amqp_url(owner, password))),
            (KEY_ERLANG_COOKIE.to_owned(), bytes(erlang_cookie)),
            (
                config::DEFINITIONS_FILE.to_owned(),
                bytes(&config::definitions(password).to_string()),
            ),
        ])),
        ..Secret::default()
    }
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

/// The RabbitMQ Cluster Operator's Secret with a RabbitmqCluster's default user.
pub fn cluster_ref_secret(cluster: &str) -> String {
    format!("{cluster}-default-user")
}

/// How a synchronizer reaches the broker: AMQP_URL from a Secret (the password never appears
/// in the StatefulSet) and the queue type to declare.
pub fn connection_env(owner: &Owner, spec: &SocialClusterSpec) -> Vec<EnvVar> {
    let (mut vars, queue_type) = match &spec.rabbitmq {
        RabbitMqSpec::Managed(managed) => (
            vec![secret_env("AMQP_URL", &owner.rabbitmq_secret_name(), KEY_URL)],
            managed.queue_type(),
        ),
        RabbitMqSpec::External(external) => {
            let key = &external.url_secret_ref;
            (vec![secret_env("AMQP_URL", &key.name, &key.key)], external.queue_type)
        }
        // The Cluster Operator's Secret holds user and password apart; the kubelet expands
        // $(VAR) references to variables defined before.
        RabbitMqSpec::ClusterRef(reference) => {
            let secret = cluster_ref_secret(&reference.name);
            let host = owner.service_host(&reference.name);
            (
                vec![
                    secret_env("AMQP_USERNAME", &secret, KEY_USERNAME),
                    secret_env("AMQP_PASSWORD", &secret, KEY_PASSWORD),
                    env(
                        "AMQP_URL",
                        format!("amqp://$(AMQP_USERNAME):$(AMQP_PASSWORD)@{host}:{AMQP_PORT}/%2f"),
                    ),
                ],
                reference.queue_type,
            )
        }
    };
    vars.push(env("TINYSNS_AMQP_QUEUE_TYPE", queue_type.as_str()));
    vars
}

/// Annotations of the synchronizers' pod template: the managed broker's credentials digest,
/// so a new password restarts them (they read it once, at start).
pub fn synchronizer_annotations(spec: &SocialClusterSpec, password: &str) -> BTreeMap<String, String> {
    match managed(spec) {
        Some(_) => BTreeMap::from([(CREDENTIALS_ANNOTATION.to_owned(), config::digest(&[password]))]),
        None => BTreeMap::new(),
    }
}

#[cfg(test)]
mod tests;
