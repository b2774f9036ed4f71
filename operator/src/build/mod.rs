//! Pure builders: a validated spec in, the Kubernetes objects that run it out. Nothing here
//! talks to the API server, so every object the operator writes can be unit-tested and
//! rendered offline (see the `render` binary).

pub mod coordinator;
pub mod monitoring;
pub mod network;
pub mod overrides;
pub mod quantity;
pub mod rabbitmq;
pub mod scheduling;
pub mod security;
pub mod synchronizer;
pub mod tsd;
pub mod validation;

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMap, Container, ContainerPort, EmptyDirVolumeSource, EnvVar, EnvVarSource, GRPCAction,
    ObjectFieldSelector, PersistentVolumeClaim, PersistentVolumeClaimSpec, PodSecurityContext, PodSpec,
    PodTemplateSpec, Probe, ResourceRequirements, SeccompProfile, Secret, SecurityContext, Service, ServicePort,
    ServiceSpec, Volume, VolumeMount, VolumeResourceRequirements,
};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{Resource, ResourceExt};

use crate::crd::{SocialCluster, SocialClusterSpec};
pub use security::Credentials;
pub use validation::{DEFAULT_CLUSTER_DOMAIN, DEFAULT_IMAGE_TAG, Environment, InvalidSpec, check, validate};

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

pub const LABEL_NAME: &str = "app.kubernetes.io/name";
pub const LABEL_INSTANCE: &str = "app.kubernetes.io/instance";
pub const LABEL_COMPONENT: &str = "app.kubernetes.io/component";
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
pub const LABEL_CLUSTER: &str = "tinysns.io/cluster";
pub const APP_NAME: &str = "tinysns";

/// The roles the operator runs; each becomes the `component` label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Coordinator,
    Tsd,
    Synchronizer,
    RabbitMq,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Coordinator, Role::Tsd, Role::Synchronizer, Role::RabbitMq];

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
        }
    }
}

/// Identity of the SocialCluster being built: everything the builders need from metadata.
#[derive(Clone, Debug)]
pub struct Owner {
    pub name: String,
    pub namespace: String,
    pub owner_ref: OwnerReference,
    /// The cluster's DNS domain (`Environment`).
    pub cluster_domain: String,
    /// The tinysns image tag for a spec that names none (`Environment`).
    pub default_image_tag: String,
    /// The operator's namespace (`Environment`).
    pub operator_namespace: Option<String>,
}

/// Longest SocialCluster name whose children still make valid names: StatefulSet pods get a
/// `controller-revision-hash` label `<sts>-<10 chars>` that must fit in 63 characters, so a
/// StatefulSet name may have at most 52; `<name>-coordinator` adds 12.
pub const MAX_NAME_LEN: usize = 40;

impl Owner {
    /// Extracts the owner identity; fails on objects that did not come from an API server.
    pub fn from_object(sc: &SocialCluster, environment: &Environment) -> Result<Self, InvalidSpec> {
        let name = sc.name_any();
        if name.is_empty() {
            return Err(InvalidSpec::MissingMetadata("metadata.name"));
        }
        if name.len() > MAX_NAME_LEN {
            return Err(InvalidSpec::NameTooLong(name));
        }
        // The API server accepts any DNS subdomain ("1demo", "a.b"), but every Service this
        // name prefixes must be an RFC 1035 label.
        if !validation::is_rfc1035_label(&name) {
            return Err(InvalidSpec::NameNotALabel(name));
        }
        let namespace = sc
            .namespace()
            .ok_or(InvalidSpec::MissingMetadata("metadata.namespace"))?;
        // controller_owner_ref is None without a uid; objects read from the API always have one.
        let owner_ref = sc
            .controller_owner_ref(&())
            .ok_or(InvalidSpec::MissingMetadata("metadata.uid"))?;
        Ok(Self {
            name,
            namespace,
            owner_ref,
            cluster_domain: environment.cluster_domain.clone(),
            default_image_tag: environment.default_image_tag.clone(),
            operator_namespace: environment.operator_namespace.clone(),
        })
    }

    /// Labels shared by every child of this SocialCluster (used to find orphans).
    pub fn instance_labels(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (LABEL_NAME.to_owned(), APP_NAME.to_owned()),
            (LABEL_INSTANCE.to_owned(), self.name.clone()),
            (LABEL_MANAGED_BY.to_owned(), FIELD_MANAGER.to_owned()),
        ])
    }

    /// Label selector string matching every child of this SocialCluster.
    pub fn instance_selector(&self) -> String {
        format!(
            "{LABEL_NAME}={APP_NAME},{LABEL_INSTANCE}={},{LABEL_MANAGED_BY}={FIELD_MANAGER}",
            self.name
        )
    }

    /// Pod selector labels of one role (and cluster). Immutable in StatefulSets, so they
    /// never include anything that a spec change could alter.
    pub fn selector_labels(&self, role: Role, cluster: Option<u32>) -> BTreeMap<String, String> {
        let mut labels = BTreeMap::from([
            (LABEL_NAME.to_owned(), APP_NAME.to_owned()),
            (LABEL_INSTANCE.to_owned(), self.name.clone()),
            (LABEL_COMPONENT.to_owned(), role.as_str().to_owned()),
        ]);
        if let Some(k) = cluster {
            labels.insert(LABEL_CLUSTER.to_owned(), k.to_string());
        }
        labels
    }

    /// Object labels: selector labels plus managed-by.
    pub fn labels(&self, role: Role, cluster: Option<u32>) -> BTreeMap<String, String> {
        let mut labels = self.selector_labels(role, cluster);
        labels.insert(LABEL_MANAGED_BY.to_owned(), FIELD_MANAGER.to_owned());
        labels
    }

    /// Metadata of a child object: name, namespace, labels and the controller owner reference.
    pub fn meta(&self, name: String, role: Role, cluster: Option<u32>) -> ObjectMeta {
        ObjectMeta {
            name: Some(name),
            namespace: Some(self.namespace.clone()),
            labels: Some(self.labels(role, cluster)),
            owner_references: Some(vec![self.owner_ref.clone()]),
            ..ObjectMeta::default()
        }
    }

    /// Metadata of a child shared by every role (the cluster secret): instance labels plus
    /// `component`.
    pub fn shared_meta(&self, name: String, component: &str) -> ObjectMeta {
        let mut labels = self.instance_labels();
        labels.insert(LABEL_COMPONENT.to_owned(), component.to_owned());
        ObjectMeta {
            name: Some(name),
            namespace: Some(self.namespace.clone()),
            labels: Some(labels),
            owner_references: Some(vec![self.owner_ref.clone()]),
            ..ObjectMeta::default()
        }
    }

    pub fn coordinator_name(&self) -> String {
        format!("{}-coordinator", self.name)
    }
    pub fn tsd_name(&self, cluster: u32) -> String {
        format!("{}-tsd-{cluster}", self.name)
    }
    pub fn sync_name(&self, cluster: u32) -> String {
        format!("{}-sync-{cluster}", self.name)
    }
    pub fn rabbitmq_name(&self) -> String {
        format!("{}-rabbitmq", self.name)
    }
    /// The generated broker credentials (username, password, url).
    pub fn rabbitmq_secret_name(&self) -> String {
        format!("{}-rabbitmq-credentials", self.name)
    }
    /// The generated cluster secret every member reads (key `secret`).
    pub fn cluster_secret_name(&self) -> String {
        format!("{}-cluster-secret", self.name)
    }
    /// Every Secret the operator writes for this SocialCluster.
    pub fn managed_secret_names(&self) -> [String; 2] {
        [self.cluster_secret_name(), self.rabbitmq_secret_name()]
    }
    /// Fully qualified DNS name of a Service of this SocialCluster.
    pub fn service_host(&self, service: &str) -> String {
        format!("{service}.{}.svc.{}", self.namespace, self.cluster_domain)
    }
    /// The DNS name of each of the `replicas` coordinator pods (behind their headless Service).
    pub fn coordinator_hosts(&self, replicas: u32) -> Vec<String> {
        let service = self.service_host(&self.coordinator_name());
        (0..replicas)
            .map(|i| format!("{}-{i}.{service}", self.coordinator_name()))
            .collect()
    }
    /// The addresses tsc and every server use to reach the coordinators (comma-separated).
    pub fn coordinator_address(&self, replicas: u32) -> String {
        self.coordinator_hosts(replicas)
            .iter()
            .map(|host| format!("{host}:{COORDINATOR_PORT}"))
            .collect::<Vec<_>>()
            .join(",")
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
pub fn build_all(owner: &Owner, spec: &SocialClusterSpec, credentials: &Credentials) -> Children {
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
    scheduling::place_all(owner, spec, &mut children.stateful_sets);
    if spec.network_policies.enabled {
        children.network_policies = network::policies(owner, spec);
    }
    children
}

/// One PodDisruptionBudget per role (per cluster for tsd and synchronizer): a node drain may
/// take one pod of a cluster at a time, so each cluster keeps a serving tsd while the other
/// moves, and drains of different clusters proceed in parallel.
pub fn pdb(owner: &Owner, role: Role, cluster: Option<u32>) -> PodDisruptionBudget {
    pdb_allowing(owner, role, cluster, 1)
}

/// A PodDisruptionBudget letting `max_unavailable` pods of a role (and cluster) be evicted
/// at once.
pub fn pdb_allowing(owner: &Owner, role: Role, cluster: Option<u32>, max_unavailable: i32) -> PodDisruptionBudget {
    let name = match (role, cluster) {
        (Role::Coordinator, _) => owner.coordinator_name(),
        (Role::RabbitMq, _) => owner.rabbitmq_name(),
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

/// Default requests when the spec leaves a role's resources out: small enough for kind,
/// large enough that the scheduler does not pack every pod onto one node.
pub fn default_resources(role: Role) -> ResourceRequirements {
    let (cpu, memory, memory_limit) = match role {
        Role::Coordinator => ("50m", "32Mi", "128Mi"),
        Role::Tsd => ("100m", "64Mi", "256Mi"),
        Role::Synchronizer => ("50m", "32Mi", "128Mi"),
        Role::RabbitMq => ("100m", "256Mi", "512Mi"),
    };
    ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".to_owned(), Quantity(cpu.to_owned())),
            ("memory".to_owned(), Quantity(memory.to_owned())),
        ])),
        limits: Some(BTreeMap::from([(
            "memory".to_owned(),
            Quantity(memory_limit.to_owned()),
        )])),
        ..ResourceRequirements::default()
    }
}

/// The spec's resources for a role, or the defaults.
pub fn resources_for(spec: &SocialClusterSpec, role: Role) -> ResourceRequirements {
    let r = &spec.resources;
    let chosen = match role {
        Role::Coordinator => &r.coordinator,
        Role::Tsd => &r.tsd,
        Role::Synchronizer => &r.synchronizer,
        Role::RabbitMq => &r.rabbitmq,
    };
    chosen.clone().unwrap_or_else(|| default_resources(role))
}

/// Pod security context for the tinysns binaries: non-root, with fsGroup so the tsd volume
/// is writable by that user.
pub fn pod_security_context(uid: i64) -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(uid),
        run_as_group: Some(uid),
        fs_group: Some(uid),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".to_owned(),
            ..SeccompProfile::default()
        }),
        ..PodSecurityContext::default()
    }
}

/// Container security context: no privilege escalation, no capabilities.
pub fn container_security_context(read_only_root: bool) -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(read_only_root),
        run_as_non_root: Some(true),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".to_owned()]),
            ..Capabilities::default()
        }),
        ..SecurityContext::default()
    }
}

/// Liveness: the gRPC health service "" is SERVING while the process runs.
pub fn liveness_probe(port: i32) -> Probe {
    Probe {
        grpc: Some(GRPCAction {
            port,
            service: Some(String::new()),
        }),
        initial_delay_seconds: Some(5),
        period_seconds: Some(10),
        timeout_seconds: Some(2),
        failure_threshold: Some(3),
        ..Probe::default()
    }
}

/// Readiness: the gRPC health service "readiness" is SERVING once the process registered
/// with the coordinator (the coordinator's once it listens); a tsd's only while it is a
/// master holding its lease or a slave recorded in sync, so a PodDisruptionBudget never
/// counts a slave still catching up as one that could take over.
pub fn readiness_probe(port: i32) -> Probe {
    Probe {
        grpc: Some(GRPCAction {
            port,
            service: Some("readiness".to_owned()),
        }),
        period_seconds: Some(2),
        timeout_seconds: Some(2),
        failure_threshold: Some(2),
        ..Probe::default()
    }
}

/// Plain `name=value` environment variable.
pub fn env(name: &str, value: impl Into<String>) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: Some(value.into()),
        ..EnvVar::default()
    }
}

/// `POD_NAME` from the downward API: tsd and synchronizer derive their ids from its ordinal.
pub fn pod_name_env() -> EnvVar {
    EnvVar {
        name: "POD_NAME".to_owned(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: "metadata.name".to_owned(),
                ..ObjectFieldSelector::default()
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

/// RUST_LOG for the service binaries.
pub fn log_env() -> EnvVar {
    env("RUST_LOG", "info")
}

/// The ports of a tinysns process: the client port (client API, health probes) and, for the
/// coordinator and tsd, the internal port only members may call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ports {
    pub client: i32,
    pub internal: Option<i32>,
}

/// Port names shared by containers and Services (Services target ports by name).
pub const PORT_NAME_CLIENT: &str = "grpc";
pub const PORT_NAME_INTERNAL: &str = "internal";
pub const PORT_NAME_HEALTH: &str = "health";
pub const PORT_NAME_METRICS: &str = "metrics";

impl Ports {
    /// (name, port) of each port: client, internal, metrics.
    pub fn named(self) -> Vec<(&'static str, i32)> {
        let mut ports = vec![(PORT_NAME_CLIENT, self.client)];
        ports.extend(self.internal.map(|p| (PORT_NAME_INTERNAL, p)));
        ports.push((PORT_NAME_METRICS, METRICS_PORT));
        ports
    }

    /// The plaintext health port of a coordinator or tsd whose client port uses TLS.
    pub fn health(self, spec: &SocialClusterSpec) -> Option<i32> {
        (spec.tls.is_some() && self.internal.is_some()).then_some(HEALTH_PORT)
    }

    fn container_ports(self, health: Option<i32>) -> Vec<ContainerPort> {
        self.named()
            .into_iter()
            .chain(health.map(|p| (PORT_NAME_HEALTH, p)))
            .map(|(name, port)| ContainerPort {
                name: Some(name.to_owned()),
                container_port: port,
                protocol: Some("TCP".to_owned()),
                ..ContainerPort::default()
            })
            .collect()
    }

    /// Service ports, each targeting the container port of the same name.
    pub fn service_ports(self) -> Vec<ServicePort> {
        self.named()
            .into_iter()
            .map(|(name, port)| ServicePort {
                name: Some(name.to_owned()),
                port,
                target_port: Some(IntOrString::String(name.to_owned())),
                protocol: Some("TCP".to_owned()),
                ..ServicePort::default()
            })
            .collect()
    }
}

/// A tinysns container with the shared settings (image, probes, security, resources), the
/// cluster secret and TLS mounts, and `env` followed by the shared security environment.
pub fn tinysns_container(
    owner: &Owner,
    spec: &SocialClusterSpec,
    role: Role,
    binary: &str,
    ports: Ports,
    mut env: Vec<EnvVar>,
) -> Container {
    env.extend(security::env_vars(spec));
    env.push(self::env("TINYSNS_METRICS_PORT", METRICS_PORT.to_string()));
    let health = ports.health(spec);
    if let Some(port) = health {
        env.push(self::env("TINYSNS_HEALTH_PORT", port.to_string()));
    }
    let probe_port = health.unwrap_or(ports.client);
    let mut volume_mounts = vec![VolumeMount {
        name: TMP_VOLUME.to_owned(),
        mount_path: "/tmp".to_owned(),
        ..VolumeMount::default()
    }];
    volume_mounts.extend(security::mounts(spec));
    Container {
        name: role.as_str().to_owned(),
        image: Some(spec.image.reference(&owner.default_image_tag)),
        image_pull_policy: Some(spec.image.pull_policy.as_str().to_owned()),
        command: Some(vec![format!("/usr/local/bin/{binary}")]),
        env: Some(env),
        ports: Some(ports.container_ports(health)),
        liveness_probe: Some(liveness_probe(probe_port)),
        readiness_probe: Some(readiness_probe(probe_port)),
        resources: Some(resources_for(spec, role)),
        // The root filesystem is read-only; /tmp is a scratch emptyDir (see tmp_volume).
        security_context: Some(container_security_context(true)),
        volume_mounts: Some(volume_mounts),
        // Show the last log lines in `kubectl describe pod` when a binary fails to start.
        termination_message_policy: Some("FallbackToLogsOnError".to_owned()),
        ..Container::default()
    }
}

/// The pod template every tinysns service runs in: one container, a scratch /tmp, the
/// cluster secret (and TLS) volumes, non-root, no service-account token, and no service
/// links (for a SocialCluster named "tinysns" they would inject e.g.
/// TINYSNS_COORDINATOR_PORT=tcp://.., clashing with the binaries' env).
pub fn tinysns_pod_template(
    owner: &Owner,
    spec: &SocialClusterSpec,
    role: Role,
    cluster: Option<u32>,
    container: Container,
    grace_seconds: i64,
) -> PodTemplateSpec {
    let mut volumes = vec![tmp_volume()];
    volumes.extend(security::volumes(owner, spec));
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(owner.labels(role, cluster)),
            ..ObjectMeta::default()
        }),
        spec: Some(PodSpec {
            containers: vec![container],
            volumes: Some(volumes),
            security_context: Some(pod_security_context(TINYSNS_UID)),
            automount_service_account_token: Some(false),
            enable_service_links: Some(false),
            termination_grace_period_seconds: Some(grace_seconds),
            ..PodSpec::default()
        }),
    }
}

/// One cluster's members of a role (servers or synchronizers): how many, and the name of
/// their StatefulSet and headless Service.
#[derive(Clone, Debug)]
pub struct ClusterMembers {
    pub name: String,
    pub role: Role,
    pub cluster: u32,
    pub replicas: u32,
}

/// The StatefulSet of one cluster's members, pods behind the headless Service of the same
/// name. Pods start and are replaced in parallel: the members of a cluster recover
/// independently, and after losing every pod at once OrderedReady would wait forever on a
/// pod that needs its peers.
pub fn cluster_stateful_set(
    owner: &Owner,
    spec: &SocialClusterSpec,
    members: ClusterMembers,
    container: Container,
) -> StatefulSet {
    use k8s_openapi::api::apps::v1::StatefulSetSpec;
    let ClusterMembers {
        name,
        role,
        cluster,
        replicas,
    } = members;
    StatefulSet {
        metadata: owner.meta(name.clone(), role, Some(cluster)),
        spec: Some(StatefulSetSpec {
            replicas: Some(i32::try_from(replicas).unwrap_or(i32::MAX)),
            service_name: Some(name),
            pod_management_policy: Some("Parallel".to_owned()),
            update_strategy: Some(operator_driven_updates()),
            selector: LabelSelector {
                match_labels: Some(owner.selector_labels(role, Some(cluster))),
                ..LabelSelector::default()
            },
            template: tinysns_pod_template(owner, spec, role, Some(cluster), container, 30),
            ..StatefulSetSpec::default()
        }),
        ..StatefulSet::default()
    }
}

/// Kubernetes replaces no tinysns pod on its own when a template changes: the operator
/// deletes them one at a time, in an order that keeps every cluster writable
/// (`crate::rollout`).
pub fn operator_driven_updates() -> k8s_openapi::api::apps::v1::StatefulSetUpdateStrategy {
    k8s_openapi::api::apps::v1::StatefulSetUpdateStrategy {
        type_: Some("OnDelete".to_owned()),
        rolling_update: None,
    }
}

/// The emptyDir behind /tmp of every tinysns container.
pub fn tmp_volume() -> Volume {
    Volume {
        name: TMP_VOLUME.to_owned(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Volume::default()
    }
}

/// The volume claim template of a role that keeps data (tsd, the coordinators).
pub fn data_claim(
    owner: &Owner,
    role: Role,
    cluster: Option<u32>,
    size: Quantity,
    storage_class_name: Option<String>,
) -> PersistentVolumeClaim {
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(DATA_VOLUME.to_owned()),
            labels: Some(owner.labels(role, cluster)),
            ..ObjectMeta::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".to_owned()]),
            storage_class_name,
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([("storage".to_owned(), size)])),
                ..VolumeResourceRequirements::default()
            }),
            ..PersistentVolumeClaimSpec::default()
        }),
        ..PersistentVolumeClaim::default()
    }
}

/// Where a data volume is mounted (TINYSNS_DATA_DIR).
pub fn data_mount() -> VolumeMount {
    VolumeMount {
        name: DATA_VOLUME.to_owned(),
        mount_path: DATA_DIR.to_owned(),
        ..VolumeMount::default()
    }
}

/// A headless Service in front of a StatefulSet: gives each pod the stable DNS name it
/// advertises. Not-ready addresses are published because peers must resolve a pod before it
/// is ready (a slave catching up is replicated to through this name).
pub fn headless_service(owner: &Owner, name: String, role: Role, cluster: Option<u32>, ports: Ports) -> Service {
    Service {
        metadata: owner.meta(name, role, cluster),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".to_owned()),
            publish_not_ready_addresses: Some(true),
            selector: Some(owner.selector_labels(role, cluster)),
            ports: Some(ports.service_ports()),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

#[cfg(test)]
pub(crate) mod tests;
