//! What is checked before anything is built: the operator's own settings (`Environment`) and
//! what the CRD schema cannot express about a SocialCluster (`validate`, `check`), each
//! failure a typed `InvalidSpec` that status reports.

use std::time::Duration;

use crate::crd::{GatewayIngress, GatewaySpec, SocialCluster, SocialClusterSpec, TlsSpec};

use super::Owner;
use super::Role;
use super::overrides::{self, OverrideError};
use super::quantity::{self, QuantityError};

/// The Kubernetes cluster DNS domain most clusters use (`--cluster-domain`'s default).
pub const DEFAULT_CLUSTER_DOMAIN: &str = "cluster.local";

/// The tinysns image tag used when a SocialCluster names none: the operator's own version,
/// which is the chart's appVersion.
pub const DEFAULT_IMAGE_TAG: &str = env!("CARGO_PKG_VERSION");

/// What the operator knows of the Kubernetes cluster it runs in, and its own defaults (its
/// flags).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Environment {
    /// The cluster's DNS domain: advertised pod host names end in `.svc.<domain>`.
    pub cluster_domain: String,
    /// The tinysns image tag for a SocialCluster that names none.
    pub default_image_tag: String,
    /// The operator's own namespace: its pods may call the coordinators' internal port
    /// (NetworkPolicies). None: from any namespace.
    pub operator_namespace: Option<String>,
}

impl Default for Environment {
    fn default() -> Self {
        Self {
            cluster_domain: DEFAULT_CLUSTER_DOMAIN.to_owned(),
            default_image_tag: DEFAULT_IMAGE_TAG.to_owned(),
            operator_namespace: None,
        }
    }
}

impl Environment {
    /// Checks the flags: the domain must be a DNS name, the tag an image tag.
    pub fn new(cluster_domain: &str, default_image_tag: &str) -> Result<Self, String> {
        let domain = cluster_domain.trim_end_matches('.');
        if domain.is_empty() || !is_dns_subdomain(domain) {
            return Err(format!(
                "--cluster-domain {cluster_domain:?} is not a DNS domain (e.g. cluster.local)"
            ));
        }
        if !is_image_tag(default_image_tag) {
            return Err(format!(
                "--default-image-tag {default_image_tag:?} is not an image tag (letters, digits, '_', '.', '-'; at most 128)"
            ));
        }
        Ok(Self {
            cluster_domain: domain.to_owned(),
            default_image_tag: default_image_tag.to_owned(),
            operator_namespace: None,
        })
    }
}

/// An OCI image tag: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
fn is_image_tag(tag: &str) -> bool {
    tag.len() <= 128
        && tag
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
        && tag
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// Errors that make a spec impossible to build. Reported as Degraded/InvalidSpec in status.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InvalidSpec {
    #[error("{field}: {value:?} is not a duration (use e.g. 250ms, 1s): {reason}")]
    BadDuration {
        field: &'static str,
        value: String,
        reason: String,
    },
    #[error(
        "timing.failureTimeout ({failure:?}) must be at least twice timing.heartbeatInterval ({heartbeat:?}), or one late heartbeat would depose a healthy master"
    )]
    TimeoutNotAboveHeartbeat { heartbeat: String, failure: String },
    #[error("timing.heartbeatInterval must be positive")]
    ZeroHeartbeat,
    #[error("podOverrides.{role}: {reason}")]
    BadPodOverride { role: &'static str, reason: OverrideError },
    #[error("rabbitmq.managed.replicas must be 1 or 3, got {0}")]
    RabbitMqReplicas(u32),
    #[error("{field}: {reason}")]
    BadQuantity { field: &'static str, reason: QuantityError },
    #[error("{field} must be between {min} and {max}, got {value}")]
    OutOfRange {
        field: &'static str,
        value: u32,
        min: u32,
        max: u32,
    },
    #[error(
        "the SocialCluster name {0:?} is too long: at most 40 characters so that {0}-coordinator fits the 52 a StatefulSet name may have"
    )]
    NameTooLong(String),
    #[error(
        "the SocialCluster name {0:?} cannot name its Services: it must start with a lowercase letter and hold only lowercase letters, digits and '-' (an RFC 1035 label)"
    )]
    NameNotALabel(String),
    #[error("the SocialCluster has no {0} (it must come from the API server)")]
    MissingMetadata(&'static str),
    #[error("{field}: {value:?} is not a Secret name (lowercase letters, digits, '-' and '.', at most 253)")]
    BadSecretName { field: &'static str, value: String },
    #[error("coordinator.replicas must be 1, 3 or 5 (a Raft group of an odd size), got {0}")]
    CoordinatorReplicas(u32),
    #[error("{field}: {value:?} is a Secret the operator manages for this SocialCluster; name your own Secret")]
    ReservedSecretName { field: &'static str, value: String },
    #[error(
        "gateway.ingress.host: {0:?} is not a host name (a lowercase DNS name, optionally starting with '*.'; not an IP address)"
    )]
    BadIngressHost(String),
    #[error("gateway.ingress.className: {0:?} is not an IngressClass name (lowercase letters, digits, '-' and '.')")]
    BadIngressClass(String),
    #[error(
        "gateway.ingress.annotations: {0:?} is not an annotation key (an optional DNS prefix and '/', then at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit)"
    )]
    BadAnnotationKey(String),
    #[error("gateway.trustedProxies: {0:?} is not an IP address or a CIDR block")]
    BadTrustedProxy(String),
}

/// Checks what the CRD schema cannot express. The API server already enforces ranges and
/// patterns, but an object written before a schema change (or a test fixture) may not.
pub fn validate(spec: &SocialClusterSpec) -> Result<(), InvalidSpec> {
    use crate::crd::{MAX_CLUSTERS, MAX_PER_CLUSTER};
    let ranges = [
        ("clusters", spec.clusters, MAX_CLUSTERS),
        ("serversPerCluster", spec.servers_per_cluster, MAX_PER_CLUSTER),
        (
            "synchronizersPerCluster",
            spec.synchronizers_per_cluster,
            MAX_PER_CLUSTER,
        ),
    ];
    for (field, value, max) in ranges {
        if !(1..=max).contains(&value) {
            return Err(InvalidSpec::OutOfRange {
                field,
                value,
                min: 1,
                max,
            });
        }
    }
    if ![1, 3, 5].contains(&spec.coordinator.replicas) {
        return Err(InvalidSpec::CoordinatorReplicas(spec.coordinator.replicas));
    }
    let heartbeat = parse_duration("timing.heartbeatInterval", &spec.timing.heartbeat_interval)?;
    let failure = parse_duration("timing.failureTimeout", &spec.timing.failure_timeout)?;
    if heartbeat.is_zero() {
        return Err(InvalidSpec::ZeroHeartbeat);
    }
    // The coordinator refuses to start otherwise (same rule as its --failure-timeout check).
    if failure < heartbeat.saturating_mul(2) {
        return Err(InvalidSpec::TimeoutNotAboveHeartbeat {
            heartbeat: spec.timing.heartbeat_interval.clone(),
            failure: spec.timing.failure_timeout.clone(),
        });
    }
    if let Some(TlsSpec { secret_name }) = &spec.tls
        && !is_dns_subdomain(secret_name)
    {
        return Err(InvalidSpec::BadSecretName {
            field: "tls.secretName",
            value: secret_name.clone(),
        });
    }
    for name in &spec.image.pull_secrets {
        if !is_dns_subdomain(name) {
            return Err(InvalidSpec::BadSecretName {
                field: "image.pullSecrets",
                value: name.clone(),
            });
        }
    }
    validate_gateway(&spec.gateway)?;
    for role in Role::ALL {
        if let Some(patch) = overrides::of(&spec.pod_overrides, role) {
            overrides::check(patch).map_err(|reason| InvalidSpec::BadPodOverride {
                role: role.as_str(),
                reason,
            })?;
        }
    }
    validate_quantities(spec)
}

/// `10.0.0.1`, `10.0.0.0/8`, `fd00::/8`: what the gateway's `--trusted-proxies` takes.
fn is_address_or_block(text: &str) -> bool {
    let (address, prefix) = match text.split_once('/') {
        Some((address, prefix)) => (address, Some(prefix)),
        None => (text, None),
    };
    let Ok(address) = address.parse::<std::net::IpAddr>() else {
        return false;
    };
    let bits = if address.is_ipv4() { 32 } else { 128 };
    prefix.is_none_or(|p| p.parse::<u8>().is_ok_and(|p| p <= bits))
}

/// The gateway's replica count and Ingress: what the API server would refuse in the Ingress
/// is refused here, with the field that holds it.
fn validate_gateway(gateway: &GatewaySpec) -> Result<(), InvalidSpec> {
    let GatewaySpec {
        replicas,
        resources: _,
        ingress,
        trusted_proxies,
    } = gateway;
    if let Some(bad) = trusted_proxies.iter().find(|p| !is_address_or_block(p)) {
        return Err(InvalidSpec::BadTrustedProxy(bad.clone()));
    }
    let max = crate::crd::MAX_GATEWAY_REPLICAS;
    if *replicas > max {
        return Err(InvalidSpec::OutOfRange {
            field: "gateway.replicas",
            value: *replicas,
            min: 0,
            max,
        });
    }
    let Some(GatewayIngress {
        host,
        tls_secret_name,
        class_name,
        annotations,
    }) = ingress
    else {
        return Ok(());
    };
    let name = host.strip_prefix("*.").unwrap_or(host);
    if !is_dns_subdomain(name) || name.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return Err(InvalidSpec::BadIngressHost(host.clone()));
    }
    if let Some(secret) = tls_secret_name
        && !is_dns_subdomain(secret)
    {
        return Err(InvalidSpec::BadSecretName {
            field: "gateway.ingress.tlsSecretName",
            value: secret.clone(),
        });
    }
    if let Some(class) = class_name
        && !is_dns_subdomain(class)
    {
        return Err(InvalidSpec::BadIngressClass(class.clone()));
    }
    if let Some(key) = annotations.keys().find(|key| !is_qualified_name(key)) {
        return Err(InvalidSpec::BadAnnotationKey(key.clone()));
    }
    Ok(())
}

/// A Kubernetes qualified name (an annotation or label key): `[prefix/]name`, the prefix a
/// DNS subdomain, the name 1-63 of `[A-Za-z0-9_.-]` starting and ending alphanumeric.
fn is_qualified_name(key: &str) -> bool {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    let name_ok = (1..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && name.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && name.bytes().last().is_some_and(|b| b.is_ascii_alphanumeric());
    name_ok && prefix.is_none_or(is_dns_subdomain)
}

/// The quantities the operator computes with (the broker's memory budget) or compares
/// (storage that may only grow) must be readable. The API server checks none of them: the
/// CRD's quantity schema is a plain string.
fn validate_quantities(spec: &SocialClusterSpec) -> Result<(), InvalidSpec> {
    let mut quantities = vec![
        ("storage.size", &spec.storage.size),
        ("coordinator.storageSize", &spec.coordinator.storage_size),
    ];
    if let Some(managed) = super::rabbitmq::managed(spec) {
        if ![1, 3].contains(&managed.replicas) {
            return Err(InvalidSpec::RabbitMqReplicas(managed.replicas));
        }
        quantities.push(("rabbitmq.managed.storage.size", &managed.storage.size));
    }
    let broker_limit = spec
        .resources
        .rabbitmq
        .as_ref()
        .and_then(|r| r.limits.as_ref()?.get("memory"));
    quantities.extend(broker_limit.map(|limit| ("resources.rabbitmq.limits.memory", limit)));
    for (field, value) in quantities {
        quantity::to_units(value).map_err(|reason| InvalidSpec::BadQuantity { field, reason })?;
    }
    Ok(())
}

/// A SocialCluster the operator can build: its owner identity and a spec that passed every
/// check. Only [`check`] makes one, so the builders never see an unchecked spec.
#[derive(Clone, Debug)]
pub struct Validated {
    owner: Owner,
    spec: SocialClusterSpec,
}

impl Validated {
    pub fn owner(&self) -> &Owner {
        &self.owner
    }

    pub fn spec(&self) -> &SocialClusterSpec {
        &self.spec
    }
}

/// A SocialCluster whose spec can be built: metadata complete, spec valid, and no Secret it
/// references is one the operator writes itself.
pub fn check(sc: &SocialCluster, environment: &Environment) -> Result<Validated, InvalidSpec> {
    let owner = Owner::from_object(sc, environment)?;
    validate(&sc.spec)?;
    let referenced = [
        ("tls.secretName", sc.spec.tls.as_ref().map(|t| &t.secret_name)),
        (
            "gateway.ingress.tlsSecretName",
            sc.spec
                .gateway
                .ingress
                .as_ref()
                .and_then(|i| i.tls_secret_name.as_ref()),
        ),
    ];
    for (field, name) in referenced {
        if let Some(name) = name
            && owner.managed_secret_names().contains(name)
        {
            return Err(InvalidSpec::ReservedSecretName {
                field,
                value: name.clone(),
            });
        }
    }
    Ok(Validated {
        owner,
        spec: sc.spec.clone(),
    })
}

/// Whether `name` may name a Service: a lowercase letter first, then lowercase letters, digits
/// and '-', not ending in '-' (length is checked apart).
pub(super) fn is_rfc1035_label(name: &str) -> bool {
    name.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.ends_with('-')
}

/// Whether `name` is a valid Secret name: an RFC 1123 DNS subdomain.
fn is_dns_subdomain(name: &str) -> bool {
    let label_ok = |label: &str| {
        !label.is_empty()
            && label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    name.len() <= crate::crd::MAX_SECRET_NAME_LEN && name.split('.').all(label_ok)
}

fn parse_duration(field: &'static str, value: &str) -> Result<Duration, InvalidSpec> {
    humantime::parse_duration(value).map_err(|e| InvalidSpec::BadDuration {
        field,
        value: value.to_owned(),
        reason: e.to_string(),
    })
}
