//! What makes members trust each other and clients trust members: the cluster secret (a
//! Secret the operator generates once and mounts into every tinysns pod), the login mode
//! (spec.auth) and TLS material (a Secret the user provides, spec.tls).
//!
//! The secret value never appears in an environment variable, a log line or an error: pods
//! read it from a file (TINYSNS_CLUSTER_SECRET_FILE), and [`Credentials`]' Debug hides it.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{EnvVar, KeyToPath, Secret, SecretVolumeSource, Volume, VolumeMount};
use rand::Rng;

use super::{Owner, env};
use crate::crd::{SocialClusterSpec, TlsSpec};

/// Key of the cluster secret in `<name>-cluster-secret`.
pub const CLUSTER_SECRET_KEY: &str = "secret";
/// Length of a generated cluster secret: 48 alphanumeric characters, about 285 bits.
pub const CLUSTER_SECRET_LEN: usize = 48;
/// What the binaries accept (tinysns_common::secret): 32 to 256 printable ASCII characters
/// without spaces, surrounding whitespace ignored.
pub const MIN_SECRET_LEN: usize = 32;
pub const MAX_SECRET_LEN: usize = 256;
/// `labels[component]` of the Secret: it belongs to every role, not to one.
pub const CLUSTER_SECRET_COMPONENT: &str = "cluster-secret";

pub const CLUSTER_SECRET_VOLUME: &str = "cluster-secret";
/// Where the cluster secret Secret is mounted in every tinysns container.
pub const CLUSTER_SECRET_DIR: &str = "/etc/tinysns/cluster-secret";
/// The file the binaries read (TINYSNS_CLUSTER_SECRET_FILE): CLUSTER_SECRET_DIR/secret.
pub const CLUSTER_SECRET_FILE: &str = "/etc/tinysns/cluster-secret/secret";

pub const TLS_VOLUME: &str = "tls";
/// Where the user's TLS Secret is mounted when spec.tls is set.
pub const TLS_DIR: &str = "/etc/tinysns/tls";
/// Keys of a `kubernetes.io/tls` Secret (cert-manager adds ca.crt), each projected to a file
/// of the same name, with the variable that names that file.
pub const TLS_FILES: [(&str, &str); 3] = [
    ("TINYSNS_TLS_CERT", "tls.crt"),
    ("TINYSNS_TLS_KEY", "tls.key"),
    ("TINYSNS_TLS_CA", "ca.crt"),
];

/// Mode of the secret files: read-only for root and for the pod's fsGroup (the tinysns
/// group), nothing for others. With fsGroup set the kubelet grants the group read access
/// anyway, so 0400 would end up as 0440 too; saying 0440 keeps the manifest honest.
pub const SECRET_FILE_MODE: i32 = 0o440;

/// Generated values the reconciler keeps across reconciles by reading them back from their
/// Secrets. Debug shows only lengths.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// Password of the managed broker (unused with an external one).
    pub rabbitmq_password: String,
    /// Erlang cookie the managed broker's nodes share (unused with a broker run elsewhere).
    pub rabbitmq_erlang_cookie: String,
    /// The cluster secret, exactly as stored (so re-applying it changes nothing).
    pub cluster_secret: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field(
                "rabbitmq_password",
                &format_args!("<{} characters>", self.rabbitmq_password.len()),
            )
            .field(
                "rabbitmq_erlang_cookie",
                &format_args!("<{} characters>", self.rabbitmq_erlang_cookie.len()),
            )
            .field(
                "cluster_secret",
                &format_args!("<{} characters>", self.cluster_secret.len()),
            )
            .finish()
    }
}

/// Why an existing `<name>-cluster-secret` cannot be used. Never carries the value.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UnusableSecret {
    #[error("the Secret {name} has no key {CLUSTER_SECRET_KEY:?}")]
    MissingKey { name: String },
    #[error("the Secret {name}: key {CLUSTER_SECRET_KEY:?} is not UTF-8 text")]
    NotText { name: String },
    #[error(
        "the Secret {name}: key {CLUSTER_SECRET_KEY:?} holds {len} characters; the binaries need {MIN_SECRET_LEN} to {MAX_SECRET_LEN}"
    )]
    Length { name: String, len: usize },
    #[error(
        "the Secret {name}: key {CLUSTER_SECRET_KEY:?} must be printable ASCII without spaces (e.g. alphanumeric, base64 or hex)"
    )]
    Alphabet { name: String },
}

/// A fresh random cluster secret: alphanumeric, so it is valid for every binary.
pub fn generate_cluster_secret() -> String {
    rand::rng()
        .sample_iter(&rand::distr::Alphanumeric)
        .take(CLUSTER_SECRET_LEN)
        .map(char::from)
        .collect()
}

/// The cluster secret stored in an existing Secret, exactly as stored, if the binaries would
/// accept it (same rule as theirs: trimmed, 32-256 printable ASCII characters).
pub fn cluster_secret_from(secret: &Secret) -> Result<String, UnusableSecret> {
    let name = secret.metadata.name.clone().unwrap_or_default();
    let bytes = secret
        .data
        .as_ref()
        .and_then(|d| d.get(CLUSTER_SECRET_KEY))
        .ok_or_else(|| UnusableSecret::MissingKey { name: name.clone() })?;
    let text = String::from_utf8(bytes.0.clone()).map_err(|_| UnusableSecret::NotText { name: name.clone() })?;
    let trimmed = text.trim();
    if !(MIN_SECRET_LEN..=MAX_SECRET_LEN).contains(&trimmed.len()) {
        return Err(UnusableSecret::Length {
            name,
            len: trimmed.len(),
        });
    }
    if !trimmed.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(UnusableSecret::Alphabet { name });
    }
    Ok(text)
}

/// The Secret `<name>-cluster-secret`. Immutable: changing the value under running members
/// would split them (and dead-letter every bus message signed with the old one), so the API
/// server refuses edits; replacing it means deleting it (see docs/kubernetes.md).
pub fn cluster_secret(owner: &Owner, value: &str) -> Secret {
    Secret {
        metadata: owner.shared_meta(owner.cluster_secret_name(), CLUSTER_SECRET_COMPONENT),
        type_: Some("Opaque".to_owned()),
        immutable: Some(true),
        data: Some(BTreeMap::from([(
            CLUSTER_SECRET_KEY.to_owned(),
            ByteString(value.as_bytes().to_vec()),
        )])),
        ..Secret::default()
    }
}

/// A read-only Secret volume projecting `keys` to files of the same name.
fn secret_volume(volume: &str, secret: String, keys: &[&str]) -> Volume {
    Volume {
        name: volume.to_owned(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(secret),
            default_mode: Some(SECRET_FILE_MODE),
            items: Some(
                keys.iter()
                    .map(|k| KeyToPath {
                        key: (*k).to_owned(),
                        path: (*k).to_owned(),
                        mode: None,
                    })
                    .collect(),
            ),
            optional: Some(false),
        }),
        ..Volume::default()
    }
}

fn read_only_mount(volume: &str, path: &str) -> VolumeMount {
    VolumeMount {
        name: volume.to_owned(),
        mount_path: path.to_owned(),
        read_only: Some(true),
        ..VolumeMount::default()
    }
}

fn tls_keys() -> [&'static str; 3] {
    TLS_FILES.map(|(_, key)| key)
}

/// Pod volumes: the cluster secret, and the TLS Secret when spec.tls is set.
pub fn volumes(owner: &Owner, spec: &SocialClusterSpec) -> Vec<Volume> {
    let mut volumes = vec![secret_volume(
        CLUSTER_SECRET_VOLUME,
        owner.cluster_secret_name(),
        &[CLUSTER_SECRET_KEY],
    )];
    volumes.extend(tls_volume(spec));
    volumes
}

/// The TLS Secret's volume when spec.tls is set. The gateway mounts only this one: it is a
/// client of the system and never holds the cluster secret.
pub fn tls_volume(spec: &SocialClusterSpec) -> Option<Volume> {
    let TlsSpec { secret_name } = spec.tls.as_ref()?;
    Some(secret_volume(TLS_VOLUME, secret_name.clone(), &tls_keys()))
}

/// The mount matching [`tls_volume`].
pub fn tls_mount(spec: &SocialClusterSpec) -> Option<VolumeMount> {
    spec.tls.as_ref().map(|_| read_only_mount(TLS_VOLUME, TLS_DIR))
}

/// With spec.tls, the variables naming the certificate, key and CA files.
pub fn tls_env(spec: &SocialClusterSpec) -> Vec<EnvVar> {
    match spec.tls {
        Some(_) => TLS_FILES
            .iter()
            .map(|(var, file)| env(var, format!("{TLS_DIR}/{file}")))
            .collect(),
        None => Vec::new(),
    }
}

/// Container mounts matching [`volumes`].
pub fn mounts(spec: &SocialClusterSpec) -> Vec<VolumeMount> {
    let mut mounts = vec![read_only_mount(CLUSTER_SECRET_VOLUME, CLUSTER_SECRET_DIR)];
    mounts.extend(tls_mount(spec));
    mounts
}

/// Environment every tinysns binary gets: the secret file, the login mode and, with TLS,
/// the certificate, key and CA files.
pub fn env_vars(spec: &SocialClusterSpec) -> Vec<EnvVar> {
    let mut vars = vec![
        env("TINYSNS_CLUSTER_SECRET_FILE", CLUSTER_SECRET_FILE),
        env("TINYSNS_AUTH", spec.auth.as_str()),
    ];
    vars.extend(tls_env(spec));
    vars
}
