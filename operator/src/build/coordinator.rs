//! The coordinators: `coordinator.replicas` pods (3 by default) that replicate their
//! decisions with Raft, each with its own volume, behind a headless Service that gives each
//! pod the DNS name the others (and every member) reach it by.

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetSpec};
use k8s_openapi::api::core::v1::{EnvVar, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use super::{
    COORDINATOR_INTERNAL_PORT, COORDINATOR_PORT, DATA_DIR, Owner, Ports, Role, data_claim, data_mount, env,
    headless_service, log_env, pod_name_env, tinysns_container, tinysns_pod_template,
};
use crate::crd::SocialClusterSpec;

/// Client port (GetServer, health) and internal port (the members' API, Raft between
/// coordinators).
pub const PORTS: Ports = Ports {
    client: COORDINATOR_PORT,
    internal: Some(COORDINATOR_INTERNAL_PORT),
};

/// Environment of a coordinator (the shared security variables are added by
/// `tinysns_container`). The node id comes from POD_NAME's ordinal.
pub fn container_env(owner: &Owner, spec: &SocialClusterSpec) -> Vec<EnvVar> {
    let peers: Vec<String> = owner
        .coordinator_hosts(spec.coordinator.replicas)
        .iter()
        .map(|host| format!("{host}:{COORDINATOR_INTERNAL_PORT}"))
        .collect();
    vec![
        pod_name_env(),
        env("TINYSNS_PORT", COORDINATOR_PORT.to_string()),
        env("TINYSNS_INTERNAL_PORT", COORDINATOR_INTERNAL_PORT.to_string()),
        env("TINYSNS_BIND", "0.0.0.0"),
        env("TINYSNS_CLUSTERS", spec.clusters.to_string()),
        env("TINYSNS_HEARTBEAT_INTERVAL", spec.timing.heartbeat_interval.clone()),
        env("TINYSNS_FAILURE_TIMEOUT", spec.timing.failure_timeout.clone()),
        env("TINYSNS_PEERS", peers.join(",")),
        // The Raft log, vote and state live on the pod's own volume.
        env("TINYSNS_DATA_DIR", DATA_DIR),
        log_env(),
    ]
}

/// How tsd and synchronizers find the coordinators: every pod's name, one port rule.
pub fn member_env(owner: &Owner, spec: &SocialClusterSpec) -> [EnvVar; 3] {
    [
        env(
            "TINYSNS_COORDINATOR_HOST",
            owner.coordinator_hosts(spec.coordinator.replicas).join(","),
        ),
        env("TINYSNS_COORDINATOR_PORT", COORDINATOR_PORT.to_string()),
        env(
            "TINYSNS_COORDINATOR_INTERNAL_PORT",
            COORDINATOR_INTERNAL_PORT.to_string(),
        ),
    ]
}

/// The coordinators' StatefulSet and its headless Service. Pods start in parallel (the Raft
/// group needs a majority up to elect anyone); volumes are kept when the StatefulSet goes,
/// like the servers'.
pub fn build(owner: &Owner, spec: &SocialClusterSpec) -> (StatefulSet, Service) {
    let name = owner.coordinator_name();
    let role = Role::Coordinator;
    let mut container = tinysns_container(owner, spec, role, "coordinator", PORTS, container_env(owner, spec));
    container.volume_mounts.get_or_insert_with(Vec::new).push(data_mount());
    let claim = data_claim(
        owner,
        role,
        None,
        spec.coordinator.storage_size.clone(),
        spec.storage.storage_class_name.clone(),
    );
    let sts = StatefulSet {
        metadata: owner.meta(name.clone(), role, None),
        spec: Some(StatefulSetSpec {
            replicas: Some(i32::try_from(spec.coordinator.replicas).unwrap_or(1)),
            service_name: Some(name.clone()),
            pod_management_policy: Some("Parallel".to_owned()),
            update_strategy: Some(super::operator_driven_updates()),
            selector: LabelSelector {
                match_labels: Some(owner.selector_labels(role, None)),
                ..LabelSelector::default()
            },
            template: tinysns_pod_template(owner, spec, role, None, container, 10),
            volume_claim_templates: Some(vec![claim]),
            persistent_volume_claim_retention_policy: Some(StatefulSetPersistentVolumeClaimRetentionPolicy {
                when_deleted: Some("Retain".to_owned()),
                when_scaled: Some("Retain".to_owned()),
            }),
            ..StatefulSetSpec::default()
        }),
        ..StatefulSet::default()
    };
    let svc = headless_service(owner, name, role, None, PORTS);
    (sts, svc)
}
