//! Pure builders: a validated spec in, the Kubernetes objects that run it out. Nothing here
//! talks to the API server, so every object the operator writes can be unit-tested and
//! rendered offline (see the `render` binary).

pub mod coordinator;
pub mod gateway;
pub mod monitoring;
pub mod network;
pub mod overrides;
mod owner;
mod pod;
pub mod quantity;
pub mod rabbitmq;
pub mod scheduling;
pub mod security;
pub mod synchronizer;
pub mod tsd;
pub mod validation;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::Resource;

pub use owner::*;
pub use pod::*;
pub use security::Credentials;
pub use validation::{DEFAULT_CLUSTER_DOMAIN, DEFAULT_IMAGE_TAG, Environment, InvalidSpec, Validated, check, validate};

/// The single field manager for every server-side apply, children and status alike, so the
/// operator never fights itself over field ownership.
pub const FIELD_MANAGER: &str = "tinysns-operator";

/// Client ports: what tsc and health probes use.
pub const COORDINATOR_PORT: i32 = 9000;
pub const TSD_PORT: i32 = 10000;
/// Internal ports: the members' API (coordinator heartbeats, replication, change feed),
/// served only to callers presenting the cluster secret. The binaries' default is the
/// client port + 20000; the operator sets them explicitly.
pub const COORDINATOR_INTERNAL_PORT: i32 = 29000;
pub const TSD_INTERNAL_PORT: i32 = 30000;
pub const SYNCHRONIZER_PORT: i32 = 9100;
/// The gateway's HTTP(S) port: API, live WebSocket, web UI and its /healthz, /readyz.
pub const GATEWAY_PORT: i32 = 8080;
/// With TLS, coordinator and tsd answer health probes in plaintext here (kubelet's gRPC
/// probes cannot speak TLS); the synchronizer's port serves only health and stays plaintext.
pub const HEALTH_PORT: i32 = 9090;
pub const AMQP_PORT: i32 = 5672;
/// Every tinysns process serves Prometheus metrics here (plain HTTP, /metrics).
pub const METRICS_PORT: i32 = 9464;
/// Where the tsd volume is mounted (passed as TINYSNS_DATA_DIR).
pub const DATA_DIR: &str = "/var/lib/tinysns";
/// Scratch volume at /tmp: the root filesystem of tinysns containers is read-only.
pub const TMP_VOLUME: &str = "tmp";
/// Name of the tsd volumeClaimTemplate.
pub const DATA_VOLUME: &str = "data";
/// Non-root uid/gid of the tinysns image (see the root Dockerfile).
pub const TINYSNS_UID: i64 = 10001;

/// The roles the operator runs; each becomes the `component` label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Coordinator,
    Tsd,
    Synchronizer,
    RabbitMq,
    Gateway,
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::Coordinator,
        Role::Tsd,
        Role::Synchronizer,
        Role::RabbitMq,
        Role::Gateway,
    ];

    /// The role a `component` label names.
    pub fn from_label(label: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|role| role.as_str() == label)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Coordinator => "coordinator",
            Role::Tsd => "tsd",
            Role::Synchronizer => "synchronizer",
            Role::RabbitMq => "rabbitmq",
            Role::Gateway => "gateway",
        }
    }
}

/// Everything the operator writes for one SocialCluster.
#[derive(Clone, Debug, Default)]
pub struct Children {
    pub stateful_sets: Vec<StatefulSet>,
    pub deployments: Vec<Deployment>,
    pub services: Vec<Service>,
    pub secrets: Vec<Secret>,
    pub config_maps: Vec<ConfigMap>,
    pub pdbs: Vec<PodDisruptionBudget>,
    pub network_policies: Vec<NetworkPolicy>,
    pub ingresses: Vec<Ingress>,
}

impl Children {
    /// Every object as YAML-able JSON values, in apply order (used by `render`).
    pub fn to_values(&self) -> Result<Vec<serde_json::Value>, serde_json::Error> {
        // Exhaustive: a new field that is not rendered does not compile.
        let Children {
            stateful_sets,
            deployments,
            services,
            secrets,
            config_maps,
            pdbs,
            network_policies,
            ingresses,
        } = self;
        let mut out = Vec::new();
        out.extend(secrets.iter().map(typed_value).collect::<Result<Vec<_>, _>>()?);
        out.extend(config_maps.iter().map(typed_value).collect::<Result<Vec<_>, _>>()?);
        out.extend(services.iter().map(typed_value).collect::<Result<Vec<_>, _>>()?);
        out.extend(deployments.iter().map(typed_value).collect::<Result<Vec<_>, _>>()?);
        out.extend(stateful_sets.iter().map(typed_value).collect::<Result<Vec<_>, _>>()?);
        out.extend(pdbs.iter().map(typed_value).collect::<Result<Vec<_>, _>>()?);
        out.extend(
            network_policies
                .iter()
                .map(typed_value)
                .collect::<Result<Vec<_>, _>>()?,
        );
        out.extend(ingresses.iter().map(typed_value).collect::<Result<Vec<_>, _>>()?);
        Ok(out)
    }
}

/// Serializes an object with apiVersion and kind, as server-side apply and kubectl want it.
pub fn typed_value<K>(obj: &K) -> Result<serde_json::Value, serde_json::Error>
where
    K: Resource<DynamicType = ()> + serde::Serialize,
{
    let mut value = serde_json::to_value(obj)?;
    if let Some(map) = value.as_object_mut() {
        map.insert(
            "apiVersion".to_owned(),
            serde_json::Value::String(K::api_version(&()).into_owned()),
        );
        map.insert("kind".to_owned(), serde_json::Value::String(K::kind(&()).into_owned()));
    }
    Ok(value)
}

/// Builds every child object. `credentials` are the values to keep (generated once by the
/// reconciler and read back on later reconciles); the broker password is ignored for
/// external brokers.
pub fn build_all(validated: &Validated, credentials: &Credentials) -> Children {
    let (owner, spec) = (validated.owner(), validated.spec());
    let mut children = Children::default();
    children
        .secrets
        .push(security::cluster_secret(owner, &credentials.cluster_secret));

    let (sts, svc) = coordinator::build(owner, spec);
    children.stateful_sets.push(sts);
    children.services.push(svc);
    children.pdbs.push(pdb(owner, Role::Coordinator, None));

    if let Some(managed) = rabbitmq::managed(spec) {
        let rabbitmq::Broker {
            stateful_set,
            service,
            nodes_service,
            config_map,
            secret,
            pdb,
        } = rabbitmq::build(
            owner,
            spec,
            managed,
            &credentials.rabbitmq_password,
            &credentials.rabbitmq_erlang_cookie,
        );
        children.stateful_sets.push(stateful_set);
        children.services.extend([service, nodes_service]);
        children.config_maps.push(config_map);
        children.secrets.push(secret);
        children.pdbs.push(pdb);
    }

    for k in 1..=spec.clusters {
        let (sts, svc) = tsd::build(owner, spec, k);
        children.stateful_sets.push(sts);
        children.services.push(svc);
        children.pdbs.push(pdb(owner, Role::Tsd, Some(k)));

        let (sts, svc) = synchronizer::build(owner, spec, k, &credentials.rabbitmq_password);
        children.stateful_sets.push(sts);
        children.services.push(svc);
        children.pdbs.push(pdb(owner, Role::Synchronizer, Some(k)));
    }
    if let Some(gateway::Gateway {
        deployment,
        service,
        pdb,
        ingress,
    }) = gateway::build(owner, spec)
    {
        children.deployments.push(deployment);
        children.services.push(service);
        children.pdbs.extend(pdb);
        children.ingresses.extend(ingress);
    }
    scheduling::place_all(owner, spec, &mut children.stateful_sets, &mut children.deployments);
    if spec.network_policies.enabled {
        children.network_policies = network::policies(owner, spec);
    }
    children
}

/// One PodDisruptionBudget per role (per cluster for tsd and synchronizer): a node drain may
/// take one pod of a cluster at a time, so each cluster keeps a serving tsd while the other
/// moves, and drains of different clusters proceed in parallel. The gateway's has one only
/// with two replicas or more (a budget over one pod would block every drain).
pub fn pdb(owner: &Owner, role: Role, cluster: Option<u32>) -> PodDisruptionBudget {
    pdb_allowing(owner, role, cluster, 1)
}

/// A PodDisruptionBudget letting `max_unavailable` pods of a role (and cluster) be evicted
/// at once.
pub fn pdb_allowing(owner: &Owner, role: Role, cluster: Option<u32>, max_unavailable: i32) -> PodDisruptionBudget {
    let name = match (role, cluster) {
        (Role::Coordinator, _) => owner.coordinator_name(),
        (Role::RabbitMq, _) => owner.rabbitmq_name(),
        (Role::Gateway, _) => owner.gateway_name(),
        (Role::Tsd, Some(k)) => owner.tsd_name(k),
        (Role::Synchronizer, Some(k)) => owner.sync_name(k),
        (Role::Tsd, None) => format!("{}-tsd", owner.name),
        (Role::Synchronizer, None) => format!("{}-sync", owner.name),
    };
    PodDisruptionBudget {
        metadata: owner.meta(name, role, cluster),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(max_unavailable)),
            selector: Some(LabelSelector {
                match_labels: Some(owner.selector_labels(role, cluster)),
                ..LabelSelector::default()
            }),
            ..PodDisruptionBudgetSpec::default()
        }),
        ..PodDisruptionBudget::default()
    }
}

#[cfg(test)]
pub(crate) mod tests;
