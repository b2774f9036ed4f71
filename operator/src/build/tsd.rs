//! tsd servers of one cluster: a StatefulSet whose pods derive their server id from their
//! ordinal (POD_NAME), each with its own volume, behind a headless Service.

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy};
use k8s_openapi::api::core::v1::Service;

use super::{
    ClusterMembers, DATA_DIR, Owner, Ports, Role, TSD_INTERNAL_PORT, TSD_PORT, cluster_stateful_set, coordinator,
    data_claim, data_mount, env, headless_service, log_env, pod_name_env, tinysns_container,
};
use crate::crd::SocialClusterSpec;

/// Client port (SocialService, health) and internal port (replication, change feed).
pub const PORTS: Ports = Ports {
    client: TSD_PORT,
    internal: Some(TSD_INTERNAL_PORT),
};

/// Environment of a tsd container of cluster `k`. The server id is not set: the binary
/// derives it from POD_NAME's ordinal (+1), so all pods of the StatefulSet share one template.
/// The shared security variables are added by `tinysns_container`.
pub fn container_env(owner: &Owner, spec: &SocialClusterSpec, k: u32) -> Vec<k8s_openapi::api::core::v1::EnvVar> {
    let service = owner.tsd_name(k);
    let [host, port, internal_port] = coordinator::member_env(owner, spec);
    vec![
        pod_name_env(),
        env("TINYSNS_CLUSTER", k.to_string()),
        host,
        port,
        internal_port,
        env("TINYSNS_PORT", TSD_PORT.to_string()),
        env("TINYSNS_INTERNAL_PORT", TSD_INTERNAL_PORT.to_string()),
        env("TINYSNS_BIND", "0.0.0.0"),
        // $(POD_NAME) is expanded by the kubelet; POD_NAME is defined first for that reason.
        env(
            "TINYSNS_ADVERTISE_HOST",
            format!("$(POD_NAME).{}", owner.service_host(&service)),
        ),
        env("TINYSNS_DATA_DIR", DATA_DIR),
        log_env(),
    ]
}

/// StatefulSet `<name>-tsd-<k>` and its headless Service.
pub fn build(owner: &Owner, spec: &SocialClusterSpec, k: u32) -> (StatefulSet, Service) {
    let name = owner.tsd_name(k);
    let role = Role::Tsd;
    let mut container = tinysns_container(owner, spec, role, "tsd", PORTS, container_env(owner, spec, k));
    container.volume_mounts.get_or_insert_with(Vec::new).push(data_mount());

    let claim = data_claim(
        owner,
        role,
        Some(k),
        spec.storage.size.clone(),
        spec.storage.storage_class_name.clone(),
    );

    let members = ClusterMembers {
        name: name.clone(),
        role,
        cluster: k,
        replicas: spec.servers_per_cluster,
    };
    let mut sts = cluster_stateful_set(owner, spec, members, container);
    if let Some(sts_spec) = sts.spec.as_mut() {
        sts_spec.volume_claim_templates = Some(vec![claim]);
        // User data lives in these volumes: keep them when the StatefulSet is scaled down
        // or deleted (scale back up and the servers find their data again).
        sts_spec.persistent_volume_claim_retention_policy = Some(StatefulSetPersistentVolumeClaimRetentionPolicy {
            when_deleted: Some("Retain".to_owned()),
            when_scaled: Some("Retain".to_owned()),
        });
    }
    let svc = headless_service(owner, name, role, Some(k), PORTS);
    (sts, svc)
}
