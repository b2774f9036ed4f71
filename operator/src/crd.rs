//! The `SocialCluster` custom resource: the one object a user writes to get a whole tinysns
//! deployment (coordinator, per-cluster servers and synchronizers, RabbitMQ).

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The SocialCluster's name prefixes every child's name and every Service's DNS name: the API
/// server accepts any DNS subdomain ("1demo", "a.b"), so the CRD refuses what could not name
/// them (a CEL rule on the root, where `metadata.name` is visible).
pub const NAME_RULE: &str =
    "size(self.metadata.name) <= 40 && self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')";
pub const NAME_RULE_MESSAGE: &str = "the SocialCluster name must be a DNS label of at most 40 characters that starts with a letter (lowercase letters, digits, '-'): it prefixes every Service and StatefulSet the operator creates";

/// The CRD as the API server gets it: the derived one, plus the root rules the derive cannot
/// express on the spec.
pub fn definition() -> k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition {
    use kube::CustomResourceExt;
    let mut crd = SocialCluster::crd();
    for version in &mut crd.spec.versions {
        if let Some(schema) = version.schema.as_mut().and_then(|s| s.open_api_v3_schema.as_mut()) {
            schema.x_kubernetes_validations.get_or_insert_default().push(
                k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::ValidationRule {
                    rule: NAME_RULE.to_owned(),
                    message: Some(NAME_RULE_MESSAGE.to_owned()),
                    ..Default::default()
                },
            );
        }
    }
    crd
}

/// Upper bound on clusters and per-cluster replicas. tinysns ids are small integers and a
/// typo such as `clusters: 300` should be rejected by the API server, not turn into 600 pods.
pub const MAX_CLUSTERS: u32 = 32;
/// See [`MAX_CLUSTERS`].
pub const MAX_PER_CLUSTER: u32 = 8;

/// Desired state of a tinysns deployment.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "tinysns.io",
    version = "v1alpha1",
    kind = "SocialCluster",
    namespaced,
    shortname = "sc",
    status = "SocialClusterStatus",
    derive = "PartialEq",
    printcolumn = r#"{"name":"Clusters","type":"integer","jsonPath":".spec.clusters"}"#,
    printcolumn = r#"{"name":"Ready Clusters","type":"integer","jsonPath":".status.readyClusters"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Paused","type":"boolean","jsonPath":".spec.paused","priority":1}"#,
    printcolumn = r#"{"name":"Coordinator","type":"string","jsonPath":".status.coordinatorAddress","priority":1}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct SocialClusterSpec {
    /// Number of tinysns clusters (ids 1..=clusters). Each has its own servers and synchronizers.
    /// Fixed at creation: a user's home cluster is ((id - 1) % clusters) + 1, so changing it
    /// would move most users to a cluster that holds none of their data.
    #[serde(default = "default_clusters")]
    #[schemars(range(min = 1, max = 32))]
    #[schemars(extend(
        "x-kubernetes-validations" = [{
            "rule": "self == oldSelf",
            "message": "clusters is fixed at creation: users are homed by ((id - 1) % clusters) + 1, so changing it strands every user whose home moves"
        }]
    ))]
    pub clusters: u32,

    /// tsd servers per cluster (server ids 1..=serversPerCluster; the coordinator picks the master).
    #[serde(default = "default_servers")]
    #[schemars(range(min = 1, max = 8))]
    pub servers_per_cluster: u32,

    /// Synchronizers per cluster.
    #[serde(default = "default_synchronizers")]
    #[schemars(range(min = 1, max = 8))]
    pub synchronizers_per_cluster: u32,

    /// The image that contains /usr/local/bin/{coordinator,tsd,synchronizer,tsc,tinysns-gateway}.
    #[serde(default)]
    pub image: ImageSpec,

    /// Failure detection timings, handed by the coordinator to every server and synchronizer.
    #[serde(default)]
    pub timing: TimingSpec,

    /// The coordinators: how many replicate their decisions (Raft), and their volumes.
    #[serde(default)]
    pub coordinator: CoordinatorSpec,

    /// Persistent storage of each tsd server.
    #[serde(default)]
    pub storage: StorageSpec,

    /// Compute resources per role. A role left out gets small default requests.
    #[serde(default)]
    pub resources: RoleResources,

    /// Where pods run: spread over nodes and zones, node selection, tolerations, priority.
    #[serde(default)]
    pub scheduling: SchedulingSpec,

    /// Prometheus scraping of every process (and the broker).
    #[serde(default)]
    pub monitoring: MonitoringSpec,

    /// NetworkPolicies that admit only the traffic tinysns needs.
    #[serde(default)]
    pub network_policies: NetworkPoliciesSpec,

    /// Per role, a partial pod template merged over the one the operator builds (objects
    /// merge key by key; lists of named items such as containers, env and volumes merge by
    /// name; other lists are replaced). The escape hatch for what the spec has no field for.
    #[serde(default)]
    pub pod_overrides: PodOverrides,

    /// The message bus between clusters: a broker managed by the operator, or an external one.
    #[serde(default)]
    pub rabbitmq: RabbitMqSpec,

    /// The HTTP/WebSocket gateway and web UI (`tinysns-gateway`): stateless pods behind the
    /// Service `<name>-gateway` (port 8080), optionally published by an Ingress.
    #[serde(default)]
    pub gateway: GatewaySpec,

    /// How users log in: `password` (accounts with passwords) or `open` (any user id, as the
    /// classic client does). Passed to every tinysns binary as TINYSNS_AUTH.
    #[serde(default)]
    pub auth: AuthMode,

    /// TLS for every tinysns process, from a `kubernetes.io/tls` Secret the user provides
    /// (e.g. by cert-manager). Plaintext when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsSpec>,

    /// While true the operator changes no child object (it still reports status).
    #[serde(default)]
    pub paused: bool,
}

fn default_clusters() -> u32 {
    3
}
fn default_servers() -> u32 {
    2
}
fn default_synchronizers() -> u32 {
    2
}

impl Default for SocialClusterSpec {
    fn default() -> Self {
        Self {
            clusters: default_clusters(),
            servers_per_cluster: default_servers(),
            synchronizers_per_cluster: default_synchronizers(),
            image: ImageSpec::default(),
            timing: TimingSpec::default(),
            coordinator: CoordinatorSpec::default(),
            storage: StorageSpec::default(),
            resources: RoleResources::default(),
            scheduling: SchedulingSpec::default(),
            pod_overrides: PodOverrides::default(),
            network_policies: NetworkPoliciesSpec::default(),
            monitoring: MonitoringSpec::default(),
            rabbitmq: RabbitMqSpec::default(),
            gateway: GatewaySpec::default(),
            auth: AuthMode::default(),
            tls: None,
            paused: false,
        }
    }
}

/// Container image of the tinysns binaries.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImageSpec {
    #[serde(default = "default_repository")]
    #[schemars(length(min = 1))]
    pub repository: String,
    /// The tag; left out, the operator's own version (the chart's appVersion), so an operator
    /// upgrade moves the system with it. Never `latest` by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub tag: Option<String>,
    #[serde(default)]
    pub pull_policy: PullPolicy,
    /// Secrets (in the SocialCluster's namespace) to pull images with, for every pod
    /// including the broker's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pull_secrets: Vec<String>,
}

fn default_repository() -> String {
    "tinysns".to_owned()
}

impl Default for ImageSpec {
    fn default() -> Self {
        Self {
            repository: default_repository(),
            tag: None,
            pull_policy: PullPolicy::default(),
            pull_secrets: Vec::new(),
        }
    }
}

impl ImageSpec {
    /// `repository:tag`, the form a container spec wants; `default_tag` when no tag is given.
    pub fn reference(&self, default_tag: &str) -> String {
        format!("{}:{}", self.repository, self.tag.as_deref().unwrap_or(default_tag))
    }
}

/// Kubernetes image pull policy.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum PullPolicy {
    Always,
    #[default]
    IfNotPresent,
    Never,
}

impl PullPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            PullPolicy::Always => "Always",
            PullPolicy::IfNotPresent => "IfNotPresent",
            PullPolicy::Never => "Never",
        }
    }
}

/// How users prove who they are.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    #[default]
    Password,
    Open,
}

impl AuthMode {
    /// The value of TINYSNS_AUTH.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMode::Password => "password",
            AuthMode::Open => "open",
        }
    }
}

/// Longest Secret name Kubernetes accepts (a DNS subdomain).
pub const MAX_SECRET_NAME_LEN: usize = 253;

/// Where the TLS certificate, key and CA come from.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TlsSpec {
    /// A Secret of type kubernetes.io/tls in the SocialCluster's namespace with the keys
    /// tls.crt, tls.key and ca.crt (what a cert-manager Certificate writes). The operator
    /// mounts it read-only into every tinysns pod; it neither creates nor changes it.
    #[schemars(length(min = 1, max = 253))]
    #[schemars(regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"))]
    pub secret_name: String,
}

/// Durations in humantime syntax ("250ms", "1s", "1m30s").
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend(
    "x-kubernetes-validations" = [{
        "rule": "duration(self.failureTimeout) >= duration(self.heartbeatInterval) + duration(self.heartbeatInterval)",
        "message": "timing.failureTimeout must be at least twice timing.heartbeatInterval, or one late heartbeat would depose a healthy master"
    }]
))]
pub struct TimingSpec {
    /// How often servers and synchronizers heartbeat to the coordinator.
    #[serde(default = "default_heartbeat")]
    #[schemars(regex(pattern = r"^([0-9]+(ns|us|ms|s|m|h))+$"), length(min = 2, max = 32))]
    pub heartbeat_interval: String,
    /// After this long without a heartbeat a process is declared dead. At least 2 x heartbeatInterval.
    #[serde(default = "default_failure_timeout")]
    #[schemars(regex(pattern = r"^([0-9]+(ns|us|ms|s|m|h))+$"), length(min = 2, max = 32))]
    pub failure_timeout: String,
}

fn default_heartbeat() -> String {
    "250ms".to_owned()
}
fn default_failure_timeout() -> String {
    "1s".to_owned()
}

impl Default for TimingSpec {
    fn default() -> Self {
        Self {
            heartbeat_interval: default_heartbeat(),
            failure_timeout: default_failure_timeout(),
        }
    }
}

/// The coordinators.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend(
    "x-kubernetes-validations" = [{
        "rule": "!has(self.storageSize) || !has(oldSelf.storageSize) || quantity(string(self.storageSize)).compareTo(quantity(string(oldSelf.storageSize))) >= 0",
        "message": "coordinator.storageSize may only grow: volumes cannot shrink"
    }]
))]
pub struct CoordinatorSpec {
    /// 3 (the default) or 5 coordinators replicate terms, masters and in-sync sets with
    /// Raft, so losing one (or two of five) is not an outage; 1 for a throwaway system.
    /// Fixed at creation: changing it later is refused.
    #[serde(default = "default_coordinators")]
    #[schemars(extend(
        "enum" = [1, 3, 5],
        "x-kubernetes-validations" = [{"rule": "self == oldSelf", "message": "coordinator.replicas is fixed at creation"}]
    ))]
    pub replicas: u32,
    /// Size of each coordinator's volume (its Raft log and state; a few MiB).
    #[serde(
        default = "default_coordinator_storage",
        deserialize_with = "coordinator_storage_or_default"
    )]
    #[schemars(with = "Quantity")]
    pub storage_size: Quantity,
}

fn default_coordinators() -> u32 {
    3
}

fn default_coordinator_storage() -> Quantity {
    Quantity("256Mi".to_owned())
}

// The schema of a Quantity is nullable (k8s-openapi's), so the API server stores `null`
// where a user wrote it: read it as the default, as a field left out, rather than fail to
// decode the object (which would stop the watch of every SocialCluster in scope).
fn coordinator_storage_or_default<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Quantity, D::Error> {
    Ok(Option::<Quantity>::deserialize(d)?.unwrap_or_else(default_coordinator_storage))
}

fn storage_size_or_default<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Quantity, D::Error> {
    Ok(Option::<Quantity>::deserialize(d)?.unwrap_or_else(default_storage_size))
}

impl Default for CoordinatorSpec {
    fn default() -> Self {
        Self {
            replicas: default_coordinators(),
            storage_size: default_coordinator_storage(),
        }
    }
}

/// A persistent volume per pod. The size may only grow: the operator expands the existing
/// claims when the StorageClass allows it (`allowVolumeExpansion`), and reports each
/// claim's progress in `status.volumes`.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend(
    "x-kubernetes-validations" = [{
        "rule": "!has(self.size) || !has(oldSelf.size) || quantity(string(self.size)).compareTo(quantity(string(oldSelf.size))) >= 0",
        "message": "storage size may only grow: volumes cannot shrink"
    }]
))]
pub struct StorageSpec {
    #[serde(default = "default_storage_size", deserialize_with = "storage_size_or_default")]
    #[schemars(with = "Quantity")]
    pub size: Quantity,
    /// Storage class of the claims; the cluster default when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
}

fn default_storage_size() -> Quantity {
    Quantity("1Gi".to_owned())
}

impl Default for StorageSpec {
    fn default() -> Self {
        Self {
            size: default_storage_size(),
            storage_class_name: None,
        }
    }
}

/// How strongly pods of one kind (the servers of a cluster, its synchronizers, the
/// coordinators, the broker nodes) avoid sharing a node.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum AntiAffinity {
    /// Spread when the scheduler can; share a node when it must (fewer nodes than pods).
    #[default]
    Preferred,
    /// Never share a node: a pod stays Pending rather than sit beside its peer, so master and
    /// slave never fail together with their node.
    Required,
    /// No spreading rule.
    None,
}

/// Pod placement for every role.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SchedulingSpec {
    /// Master and slave of a cluster (and each role's other pods) on different nodes.
    #[serde(default)]
    pub anti_affinity: AntiAffinity,
    /// Spread each role's pods over zones (`topology.kubernetes.io/zone`) as evenly as the
    /// scheduler can; never blocks scheduling.
    #[serde(default = "default_true")]
    pub spread_over_zones: bool,
    /// Nodes the pods may run on: every label here must match.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub node_selector: std::collections::BTreeMap<String, String>,
    /// Taints the pods tolerate.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<k8s_openapi::api::core::v1::Toleration>,
    /// PriorityClass of every pod (e.g. one that keeps them from being preempted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub priority_class_name: Option<String>,
}

fn default_true() -> bool {
    true
}

impl Default for SchedulingSpec {
    fn default() -> Self {
        Self {
            anti_affinity: AntiAffinity::default(),
            spread_over_zones: true,
            node_selector: std::collections::BTreeMap::new(),
            tolerations: Vec::new(),
            priority_class_name: None,
        }
    }
}

/// One NetworkPolicy per role: client ports (and health and metrics) open to every pod;
/// internal ports only to this SocialCluster's members (and the coordinators' to the
/// operator); the broker only to the synchronizers and its own nodes.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NetworkPoliciesSpec {
    /// Needs a network plugin that enforces NetworkPolicies (without one they change nothing).
    #[serde(default = "default_true")]
    pub enabled: bool,
}

impl Default for NetworkPoliciesSpec {
    fn default() -> Self {
        Self { enabled: true }
    }
}

/// Every tinysns process serves Prometheus metrics on port 9464 (`metrics` on its Service),
/// the broker on 15692 (`prometheus`).
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MonitoringSpec {
    /// A ServiceMonitor (Prometheus Operator) scraping all of them, when its CRD is installed.
    #[serde(default = "default_true")]
    pub service_monitor: bool,
    /// How often Prometheus scrapes.
    #[serde(default = "default_scrape_interval")]
    #[schemars(regex(pattern = r"^([0-9]+(ms|s|m|h))+$"), length(min = 2, max = 32))]
    pub scrape_interval: String,
}

fn default_scrape_interval() -> String {
    "30s".to_owned()
}

impl Default for MonitoringSpec {
    fn default() -> Self {
        Self {
            service_monitor: true,
            scrape_interval: default_scrape_interval(),
        }
    }
}

/// A partial pod template per role (see `podOverrides`).
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodOverrides {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "free_form")]
    pub coordinator: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "free_form")]
    pub tsd: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "free_form")]
    pub synchronizer: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "free_form")]
    pub rabbitmq: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "free_form")]
    pub gateway: Option<serde_json::Value>,
}

/// An object the API server keeps as written (a partial PodTemplateSpec).
fn free_form(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true
    })
}

/// Resources per role; each left out gets the defaults in `build::resources`. The gateway's
/// are `gateway.resources`.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RoleResources {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coordinator: Option<ResourceRequirements>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tsd: Option<ResourceRequirements>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synchronizer: Option<ResourceRequirements>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rabbitmq: Option<ResourceRequirements>,
}

/// Most gateway replicas: it is stateless, but a typo such as `replicas: 200` should be
/// refused, not turn into 200 pods.
pub const MAX_GATEWAY_REPLICAS: u32 = 32;

/// The gateway (`tinysns-gateway`): the HTTP API, the live WebSocket and the web UI. A client
/// of the system like `tsc`: it calls the coordinators' and servers' client ports, never
/// their internal ones, and needs no cluster secret.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GatewaySpec {
    /// Gateway pods (a Deployment; any replica serves any browser). 0 runs no gateway: its
    /// Deployment, Service, PodDisruptionBudget and Ingress are deleted.
    #[serde(default = "default_gateway_replicas")]
    #[schemars(range(min = 0, max = 32))]
    pub replicas: u32,
    /// Compute resources of each gateway pod; small defaults when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// An Ingress (networking.k8s.io/v1) for the gateway Service, for browsers outside the
    /// Kubernetes cluster. None when left out: reach it by port-forward or your own Ingress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress: Option<GatewayIngress>,
    /// The proxies in front of the gateway (addresses or CIDR blocks, e.g. the Ingress
    /// controller's pod network): from them `X-Forwarded-For` names the browser, whose
    /// address the login rate limit counts. Left out: every peer is the browser.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub trusted_proxies: Vec<String>,
}

fn default_gateway_replicas() -> u32 {
    2
}

impl Default for GatewaySpec {
    fn default() -> Self {
        Self {
            replicas: default_gateway_replicas(),
            resources: None,
            ingress: None,
            trusted_proxies: Vec::new(),
        }
    }
}

/// The Ingress in front of the gateway: one host, every path to the gateway Service.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GatewayIngress {
    /// The host name browsers use (e.g. social.example.com); a leading `*.` is a wildcard.
    #[schemars(length(min = 1, max = 253))]
    #[schemars(regex(pattern = r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"))]
    #[schemars(extend(
        "x-kubernetes-validations" = [{
            "rule": "!self.matches('^[0-9.]+$')",
            "message": "gateway.ingress.host must be a DNS name, not an IP address: an Ingress rule cannot name an IP"
        }]
    ))]
    pub host: String,
    /// A `kubernetes.io/tls` Secret in the SocialCluster's namespace with the certificate of
    /// `host`: the Ingress controller terminates HTTPS with it. Plain HTTP when left out
    /// (browsers then refuse the gateway's `Secure` session cookie, except on localhost).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    #[schemars(regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"))]
    pub tls_secret_name: Option<String>,
    /// The IngressClass (e.g. nginx); the cluster's default class when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    #[schemars(regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"))]
    pub class_name: Option<String>,
    /// Annotations of the Ingress, for its controller (e.g. cert-manager's issuer, or
    /// `nginx.ingress.kubernetes.io/backend-protocol: HTTPS` with `spec.tls`).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub annotations: std::collections::BTreeMap<String, String>,
}

/// Exactly one of `managed`, `clusterRef` or `external`.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum RabbitMqSpec {
    /// The operator runs the broker: a StatefulSet of 1 or 3 nodes on persistent volumes,
    /// with generated credentials.
    Managed(ManagedRabbitMq),
    /// A `RabbitmqCluster` of the RabbitMQ Cluster Operator in the same namespace: the
    /// synchronizers log in with its default user (Secret `<name>-default-user`).
    ClusterRef(RabbitMqClusterRef),
    /// Use an existing broker; its amqp:// URL is read from a Secret.
    External(ExternalRabbitMq),
}

impl Default for RabbitMqSpec {
    fn default() -> Self {
        RabbitMqSpec::Managed(ManagedRabbitMq::default())
    }
}

/// How the synchronizers declare their queues. Fixed once queues exist: RabbitMQ refuses
/// to redeclare a queue with another type.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum QueueType {
    /// Durable classic queues: one copy, on the node that holds the queue.
    #[default]
    Classic,
    /// Quorum queues (Raft): replicated to every node of the broker, so losing one of three
    /// nodes loses no confirmed message.
    Quorum,
}

impl QueueType {
    /// The value of TINYSNS_AMQP_QUEUE_TYPE.
    pub fn as_str(self) -> &'static str {
        match self {
            QueueType::Classic => "classic",
            QueueType::Quorum => "quorum",
        }
    }
}

/// Most broker nodes the operator runs.
pub const MAX_RABBITMQ_REPLICAS: u32 = 3;

/// A broker run by the operator.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ManagedRabbitMq {
    /// The official (Debian-based) RabbitMQ image, 4.1 or newer (the nodes find each other
    /// with 4.1's Kubernetes peer discovery). Pinned by tag: an upgrade is a spec change.
    #[serde(default = "default_rabbitmq_image")]
    #[schemars(length(min = 1))]
    pub image: String,
    #[serde(default)]
    pub pull_policy: PullPolicy,
    /// 1 node (classic queues; a node drain waits for you, see docs/kubernetes.md) or 3
    /// nodes (quorum queues: one node may be down or drained at a time). Fixed at creation:
    /// the queue type follows from it.
    #[serde(default = "default_rabbitmq_replicas")]
    #[schemars(extend(
        "enum" = [1, 3],
        "x-kubernetes-validations" = [{"rule": "self == oldSelf", "message": "rabbitmq.managed.replicas is fixed at creation: the queue type (classic with 1 node, quorum with 3) follows from it"}]
    ))]
    pub replicas: u32,
    /// The persistent volume of each broker node (its queues and their messages).
    #[serde(default)]
    pub storage: StorageSpec,
}

fn default_rabbitmq_image() -> String {
    "rabbitmq:4.1.0".to_owned()
}

fn default_rabbitmq_replicas() -> u32 {
    1
}

impl Default for ManagedRabbitMq {
    fn default() -> Self {
        Self {
            image: default_rabbitmq_image(),
            pull_policy: PullPolicy::default(),
            replicas: default_rabbitmq_replicas(),
            storage: StorageSpec::default(),
        }
    }
}

impl ManagedRabbitMq {
    /// Quorum queues when there are nodes to replicate to.
    pub fn queue_type(&self) -> QueueType {
        if self.replicas > 1 {
            QueueType::Quorum
        } else {
            QueueType::Classic
        }
    }
}

/// A `RabbitmqCluster` (rabbitmq.com/v1beta1) in the SocialCluster's namespace.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RabbitMqClusterRef {
    /// Its name: the operator reads the Secret `<name>-default-user` and connects to the
    /// Service `<name>`.
    #[schemars(length(min = 1, max = 52))]
    #[schemars(regex(pattern = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"))]
    pub name: String,
    /// Quorum unless the RabbitmqCluster has a single node and you want classic queues.
    #[serde(default = "default_cluster_ref_queue_type")]
    pub queue_type: QueueType,
}

fn default_cluster_ref_queue_type() -> QueueType {
    QueueType::Quorum
}

/// A broker run elsewhere.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExternalRabbitMq {
    /// Secret key holding the full AMQP URL, e.g. amqp://user:pass@host:5672/%2f
    pub url_secret_ref: SecretKeyRef,
    /// The queue type to declare (classic unless the broker is a cluster).
    #[serde(default)]
    pub queue_type: QueueType,
}

/// A key of a Secret in the SocialCluster's namespace.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    #[schemars(length(min = 1))]
    pub name: String,
    #[schemars(length(min = 1))]
    pub key: String,
}

/// Observed state, written only by the operator.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SocialClusterStatus {
    /// The metadata.generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready, Progressing and Degraded.
    #[serde(default)]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// host:port clients (tsc) connect to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coordinator_address: Option<String>,
    /// Clusters whose servers and synchronizers are all ready.
    #[serde(default)]
    pub ready_clusters: u32,
    /// Ready/desired replicas per role, summed over clusters.
    #[serde(default)]
    pub replicas: RoleReplicas,
    /// Ready/desired replicas per cluster.
    #[serde(default)]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["id"]))]
    pub clusters: Vec<ClusterStatus>,
    /// Every data volume (tsd, coordinator, broker): its size asked for and had, so that a
    /// grown `storage.size` can be followed to the end.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub volumes: Vec<VolumeStatus>,
}

/// One PersistentVolumeClaim.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VolumeStatus {
    pub name: String,
    pub requested: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<String>,
    /// Ready (capacity reached the request) or Expanding.
    pub phase: String,
}

/// Ready and desired replica counts.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReplicaCount {
    pub ready: u32,
    pub desired: u32,
}

impl ReplicaCount {
    pub fn is_ready(self) -> bool {
        self.ready >= self.desired
    }
    pub fn plus(self, other: ReplicaCount) -> ReplicaCount {
        ReplicaCount {
            ready: self.ready + other.ready,
            desired: self.desired + other.desired,
        }
    }
}

/// Per-role replica counts.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RoleReplicas {
    pub coordinator: ReplicaCount,
    pub tsd: ReplicaCount,
    pub synchronizer: ReplicaCount,
    /// Absent when the broker is external.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rabbitmq: Option<ReplicaCount>,
    /// Absent when `gateway.replicas` is 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<ReplicaCount>,
}

/// Replica counts of one cluster.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterStatus {
    pub id: u32,
    pub tsd: ReplicaCount,
    pub synchronizer: ReplicaCount,
    /// Ready, NotReady, or the rollout step under way in this cluster (RollingSynchronizers,
    /// RollingSlaves, SwitchingOver, RollingOldMaster, RolloutWaiting).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// Server id of the master tsd, as the coordinators last said (while a rollout or a
    /// switchover asked them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub master: Option<u32>,
}

#[cfg(test)]
mod validation_rules;
