//! Synchronizers of one cluster: they move follow/post events between clusters over RabbitMQ.
//! Their id is derived by the binary from POD_NAME's ordinal, cluster and cluster count.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{EnvVar, Service};

use super::{
    ClusterMembers, Owner, Ports, Role, SYNCHRONIZER_PORT, cluster_stateful_set, coordinator, env, headless_service,
    log_env, pod_name_env, rabbitmq, tinysns_container,
};
use crate::crd::SocialClusterSpec;

/// Health only: a synchronizer serves no API, it calls tsd and the coordinator.
pub const PORTS: Ports = Ports {
    client: SYNCHRONIZER_PORT,
    internal: None,
};

/// Environment of a synchronizer of cluster `k`; the broker connection comes from
/// `rabbitmq::connection_env`, the shared security variables from `tinysns_container`.
pub fn container_env(owner: &Owner, spec: &SocialClusterSpec, k: u32) -> Vec<EnvVar> {
    let service = owner.sync_name(k);
    let [host, port, internal_port] = coordinator::member_env(owner, spec);
    let mut vars = vec![
        pod_name_env(),
        env("TINYSNS_CLUSTER", k.to_string()),
        env("TINYSNS_CLUSTERS", spec.clusters.to_string()),
        host,
        port,
        internal_port,
        env("TINYSNS_PORT", SYNCHRONIZER_PORT.to_string()),
        env("TINYSNS_BIND", "0.0.0.0"),
        env(
            "TINYSNS_ADVERTISE_HOST",
            format!("$(POD_NAME).{}", owner.service_host(&service)),
        ),
    ];
    vars.extend(rabbitmq::connection_env(owner, spec));
    vars.push(log_env());
    vars
}

/// StatefulSet `<name>-sync-<k>` and its headless Service.
/// `broker_password` is the managed broker's: its digest on the pod template restarts the
/// synchronizers when it changes.
pub fn build(owner: &Owner, spec: &SocialClusterSpec, k: u32, broker_password: &str) -> (StatefulSet, Service) {
    let name = owner.sync_name(k);
    let role = Role::Synchronizer;
    let container = tinysns_container(owner, spec, role, "synchronizer", PORTS, container_env(owner, spec, k));
    let members = ClusterMembers {
        name: name.clone(),
        role,
        cluster: k,
        replicas: spec.synchronizers_per_cluster,
    };
    let mut sts = cluster_stateful_set(owner, spec, members, container);
    let annotations = rabbitmq::synchronizer_annotations(spec, broker_password);
    if let Some(meta) = sts
        .spec
        .as_mut()
        .and_then(|s| s.template.metadata.as_mut())
        .filter(|_| !annotations.is_empty())
    {
        meta.annotations = Some(annotations);
    }
    let svc = headless_service(owner, name, role, Some(k), PORTS);
    (sts, svc)
}
