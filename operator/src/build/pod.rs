//! What every tinysns pod shares: resources, security contexts, probes, environment, ports,
//! the container and pod template, the StatefulSet of one cluster's members, volumes and the
//! headless Service. The role builders (`coordinator`, `tsd`, `synchronizer`) compose these.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EmptyDirVolumeSource, EnvVar, EnvVarSource, GRPCAction,
    ObjectFieldSelector, PersistentVolumeClaim, PersistentVolumeClaimSpec, PodSecurityContext, PodSpec,
    PodTemplateSpec, Probe, ResourceRequirements, SeccompProfile, SecurityContext, Service, ServicePort, ServiceSpec,
    Volume, VolumeMount, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{DATA_DIR, DATA_VOLUME, HEALTH_PORT, METRICS_PORT, Owner, Role, TINYSNS_UID, TMP_VOLUME, security};
use crate::crd::SocialClusterSpec;

/// Default requests when the spec leaves a role's resources out: small enough for kind,
/// large enough that the scheduler does not pack every pod onto one node.
pub fn default_resources(role: Role) -> ResourceRequirements {
    let (cpu, memory, memory_limit) = match role {
        Role::Coordinator => ("50m", "32Mi", "128Mi"),
        Role::Tsd => ("100m", "64Mi", "256Mi"),
        Role::Synchronizer => ("50m", "32Mi", "128Mi"),
        Role::RabbitMq => ("100m", "256Mi", "512Mi"),
        Role::Gateway => ("50m", "32Mi", "128Mi"),
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
        Role::Gateway => &spec.gateway.resources,
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
