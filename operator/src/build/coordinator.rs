//! The coordinator: one replica that tracks which servers and synchronizers are alive and
//! hands the failure-detection timings to them in heartbeat replies.

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec};
use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{COORDINATOR_PORT, Owner, Role, env, log_env, tinysns_container, tinysns_pod_template};
use crate::crd::SocialClusterSpec;

/// The coordinator StatefulSet (1 replica: a StatefulSet, not a Deployment, so that a
/// rolling update never runs two coordinators at once) and its ClusterIP Service.
pub fn build(owner: &Owner, spec: &SocialClusterSpec) -> (StatefulSet, Service) {
    let name = owner.coordinator_name();
    let role = Role::Coordinator;
    let container = tinysns_container(
        spec,
        role,
        "coordinator",
        COORDINATOR_PORT,
        vec![
            env("TINYSNS_PORT", COORDINATOR_PORT.to_string()),
            env("TINYSNS_BIND", "0.0.0.0"),
            env("TINYSNS_CLUSTERS", spec.clusters.to_string()),
            env("TINYSNS_HEARTBEAT_INTERVAL", spec.timing.heartbeat_interval.clone()),
            env("TINYSNS_FAILURE_TIMEOUT", spec.timing.failure_timeout.clone()),
            log_env(),
        ],
    );
    let sts = StatefulSet {
        metadata: owner.meta(name.clone(), role, None),
        spec: Some(StatefulSetSpec {
            replicas: Some(1),
            service_name: Some(name.clone()),
            selector: LabelSelector {
                match_labels: Some(owner.selector_labels(role, None)),
                ..LabelSelector::default()
            },
            template: tinysns_pod_template(owner, role, None, container, 10),
            ..StatefulSetSpec::default()
        }),
        ..StatefulSet::default()
    };
    let svc = Service {
        metadata: owner.meta(name, role, None),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".to_owned()),
            selector: Some(owner.selector_labels(role, None)),
            ports: Some(vec![ServicePort {
                name: Some("grpc".to_owned()),
                port: COORDINATOR_PORT,
                target_port: Some(IntOrString::String("grpc".to_owned())),
                protocol: Some("TCP".to_owned()),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    };
    (sts, svc)
}
