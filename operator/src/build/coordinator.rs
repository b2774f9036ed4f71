//! The coordinator: one replica that tracks which servers and synchronizers are alive and
//! hands the failure-detection timings to them in heartbeat replies.

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec};
use k8s_openapi::api::core::v1::{EnvVar, Service, ServiceSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use super::{
    COORDINATOR_INTERNAL_PORT, COORDINATOR_PORT, Owner, Ports, Role, env, log_env, tinysns_container,
    tinysns_pod_template,
};
use crate::crd::SocialClusterSpec;

/// Client port (GetServer, health) and internal port (the members' API).
pub const PORTS: Ports = Ports {
    client: COORDINATOR_PORT,
    internal: Some(COORDINATOR_INTERNAL_PORT),
};

/// Environment of the coordinator (the shared security variables are added by
/// `tinysns_container`).
pub fn container_env(spec: &SocialClusterSpec) -> Vec<EnvVar> {
    vec![
        env("TINYSNS_PORT", COORDINATOR_PORT.to_string()),
        env("TINYSNS_INTERNAL_PORT", COORDINATOR_INTERNAL_PORT.to_string()),
        env("TINYSNS_BIND", "0.0.0.0"),
        env("TINYSNS_CLUSTERS", spec.clusters.to_string()),
        env("TINYSNS_HEARTBEAT_INTERVAL", spec.timing.heartbeat_interval.clone()),
        env("TINYSNS_FAILURE_TIMEOUT", spec.timing.failure_timeout.clone()),
        // Terms, masters and in-sync sets survive a container restart (the emptyDir at /tmp
        // lives as long as the pod; a PersistentVolume comes with the replicated coordinator).
        env("TINYSNS_DATA_DIR", "/tmp/coordinator"),
        log_env(),
    ]
}

/// The coordinator StatefulSet (1 replica: a StatefulSet, not a Deployment, so that a
/// rolling update never runs two coordinators at once) and its ClusterIP Service, which
/// exposes both ports: clients use the first, members the second.
pub fn build(owner: &Owner, spec: &SocialClusterSpec) -> (StatefulSet, Service) {
    let name = owner.coordinator_name();
    let role = Role::Coordinator;
    let container = tinysns_container(spec, role, "coordinator", PORTS, container_env(spec));
    let sts = StatefulSet {
        metadata: owner.meta(name.clone(), role, None),
        spec: Some(StatefulSetSpec {
            replicas: Some(1),
            service_name: Some(name.clone()),
            selector: LabelSelector {
                match_labels: Some(owner.selector_labels(role, None)),
                ..LabelSelector::default()
            },
            template: tinysns_pod_template(owner, spec, role, None, container, 10),
            ..StatefulSetSpec::default()
        }),
        ..StatefulSet::default()
    };
    let svc = Service {
        metadata: owner.meta(name, role, None),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".to_owned()),
            selector: Some(owner.selector_labels(role, None)),
            ports: Some(PORTS.service_ports()),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    };
    (sts, svc)
}
