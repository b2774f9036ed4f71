//! One NetworkPolicy per role, admitting only the traffic tinysns needs. Client ports (and
//! the plaintext health port, and metrics) are open to every pod: clients, probes and
//! Prometheus live anywhere. Internal ports admit only this SocialCluster's members: tsd's
//! to its servers (replication, and reads one cluster asks of another's master: `Peer`) and
//! synchronizers (change feed), the coordinators' to every
//! member and to the operator (rollouts, switchovers). The broker admits the synchronizers
//! on AMQP and its own nodes on the clustering ports. Egress stays open (DNS, the API).

use std::collections::BTreeMap;

use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::rabbitmq::nodes::{DIST_PORT, EPMD_PORT, PROMETHEUS_PORT};
use super::{
    AMQP_PORT, APP_NAME, COORDINATOR_INTERNAL_PORT, COORDINATOR_PORT, HEALTH_PORT, LABEL_COMPONENT, LABEL_INSTANCE,
    LABEL_NAME, METRICS_PORT, Owner, Role, SYNCHRONIZER_PORT, TSD_INTERNAL_PORT, TSD_PORT, rabbitmq,
};
use crate::crd::SocialClusterSpec;

/// The label the operator's own pods carry (the chart's selector).
pub const OPERATOR_NAME_LABEL: &str = "tinysns-operator";

fn ports(numbers: &[i32]) -> Vec<NetworkPolicyPort> {
    numbers
        .iter()
        .map(|port| NetworkPolicyPort {
            port: Some(IntOrString::Int(*port)),
            protocol: Some("TCP".to_owned()),
            ..NetworkPolicyPort::default()
        })
        .collect()
}

/// Pods of these roles of this SocialCluster.
fn members(owner: &Owner, roles: &[Role]) -> Vec<NetworkPolicyPeer> {
    roles
        .iter()
        .map(|role| NetworkPolicyPeer {
            pod_selector: Some(LabelSelector {
                match_labels: Some(BTreeMap::from([
                    (LABEL_NAME.to_owned(), APP_NAME.to_owned()),
                    (LABEL_INSTANCE.to_owned(), owner.name.clone()),
                    (LABEL_COMPONENT.to_owned(), role.as_str().to_owned()),
                ])),
                ..LabelSelector::default()
            }),
            ..NetworkPolicyPeer::default()
        })
        .collect()
}

/// The operator's pods, in its namespace (any namespace when it is not known).
fn operator(owner: &Owner) -> NetworkPolicyPeer {
    NetworkPolicyPeer {
        namespace_selector: Some(LabelSelector {
            match_labels: owner
                .operator_namespace
                .as_ref()
                .map(|ns| BTreeMap::from([("kubernetes.io/metadata.name".to_owned(), ns.clone())])),
            ..LabelSelector::default()
        }),
        pod_selector: Some(LabelSelector {
            match_labels: Some(BTreeMap::from([(
                LABEL_NAME.to_owned(),
                OPERATOR_NAME_LABEL.to_owned(),
            )])),
            ..LabelSelector::default()
        }),
        ..NetworkPolicyPeer::default()
    }
}

/// Open to every pod.
fn open(numbers: &[i32]) -> NetworkPolicyIngressRule {
    NetworkPolicyIngressRule {
        ports: Some(ports(numbers)),
        from: None,
    }
}

fn only(numbers: &[i32], from: Vec<NetworkPolicyPeer>) -> NetworkPolicyIngressRule {
    NetworkPolicyIngressRule {
        ports: Some(ports(numbers)),
        from: Some(from),
    }
}

fn policy(owner: &Owner, role: Role, ingress: Vec<NetworkPolicyIngressRule>) -> NetworkPolicy {
    NetworkPolicy {
        metadata: owner.meta(format!("{}-{}", owner.name, role.as_str()), role, None),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector {
                match_labels: Some(owner.selector_labels(role, None)),
                ..LabelSelector::default()
            }),
            policy_types: Some(vec!["Ingress".to_owned()]),
            ingress: Some(ingress),
            ..NetworkPolicySpec::default()
        }),
    }
}

/// The policies of every role this spec runs.
pub fn policies(owner: &Owner, spec: &SocialClusterSpec) -> Vec<NetworkPolicy> {
    let everyone = [Role::Coordinator, Role::Tsd, Role::Synchronizer];
    let mut coordinator_peers = members(owner, &everyone);
    coordinator_peers.push(operator(owner));
    let mut out = vec![
        policy(
            owner,
            Role::Coordinator,
            vec![
                open(&[COORDINATOR_PORT, HEALTH_PORT, METRICS_PORT]),
                only(&[COORDINATOR_INTERNAL_PORT], coordinator_peers),
            ],
        ),
        policy(
            owner,
            Role::Tsd,
            vec![
                open(&[TSD_PORT, HEALTH_PORT, METRICS_PORT]),
                only(&[TSD_INTERNAL_PORT], members(owner, &[Role::Tsd, Role::Synchronizer])),
            ],
        ),
        policy(
            owner,
            Role::Synchronizer,
            vec![open(&[SYNCHRONIZER_PORT, METRICS_PORT])],
        ),
    ];
    if rabbitmq::managed(spec).is_some() {
        out.push(policy(
            owner,
            Role::RabbitMq,
            vec![
                open(&[PROMETHEUS_PORT]),
                only(&[AMQP_PORT], members(owner, &[Role::Synchronizer, Role::RabbitMq])),
                only(&[EPMD_PORT, DIST_PORT], members(owner, &[Role::RabbitMq])),
            ],
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::Environment;
    use crate::render;

    fn owner(operator_namespace: Option<&str>) -> Owner {
        let sc = render::object("demo", "ns1", SocialClusterSpec::default());
        let environment = Environment {
            operator_namespace: operator_namespace.map(str::to_owned),
            ..Environment::default()
        };
        Owner::from_object(&sc, &environment).expect("a complete fixture")
    }

    /// (ports, the components allowed, or None for everyone) of each rule of a role.
    fn rules(policies: &[NetworkPolicy], role: Role) -> Vec<(Vec<i32>, Option<Vec<String>>)> {
        let policy = policies
            .iter()
            .find(|p| p.metadata.name.as_deref() == Some(&format!("demo-{}", role.as_str())))
            .unwrap_or_else(|| panic!("no policy for {role:?}"));
        let spec = policy.spec.as_ref().expect("spec");
        assert_eq!(spec.policy_types.as_deref(), Some(&["Ingress".to_owned()][..]));
        spec.ingress
            .iter()
            .flatten()
            .map(|rule| {
                let ports = rule
                    .ports
                    .iter()
                    .flatten()
                    .filter_map(|p| match &p.port {
                        Some(IntOrString::Int(n)) => Some(*n),
                        _ => None,
                    })
                    .collect();
                let from = rule.from.as_ref().map(|peers| {
                    peers
                        .iter()
                        .map(|peer| {
                            let labels = peer
                                .pod_selector
                                .as_ref()
                                .and_then(|s| s.match_labels.clone())
                                .unwrap_or_default();
                            labels
                                .get(LABEL_COMPONENT)
                                .cloned()
                                .or_else(|| labels.get(LABEL_NAME).cloned())
                                .unwrap_or_default()
                        })
                        .collect()
                });
                (ports, from)
            })
            .collect()
    }

    fn names(list: &[&str]) -> Option<Vec<String>> {
        Some(list.iter().map(|s| (*s).to_owned()).collect())
    }

    #[test]
    fn internal_ports_admit_only_the_members_that_call_them() {
        let p = policies(&owner(Some("tinysns-system")), &SocialClusterSpec::default());
        assert_eq!(
            rules(&p, Role::Tsd),
            [
                (vec![TSD_PORT, HEALTH_PORT, METRICS_PORT], None),
                (vec![TSD_INTERNAL_PORT], names(&["tsd", "synchronizer"])),
            ]
        );
        assert_eq!(
            rules(&p, Role::Coordinator),
            [
                (vec![COORDINATOR_PORT, HEALTH_PORT, METRICS_PORT], None),
                (
                    vec![COORDINATOR_INTERNAL_PORT],
                    names(&["coordinator", "tsd", "synchronizer", "tinysns-operator"])
                ),
            ]
        );
        assert_eq!(
            rules(&p, Role::Synchronizer),
            [(vec![SYNCHRONIZER_PORT, METRICS_PORT], None)]
        );
        assert_eq!(
            rules(&p, Role::RabbitMq),
            [
                (vec![PROMETHEUS_PORT], None),
                (vec![AMQP_PORT], names(&["synchronizer", "rabbitmq"])),
                (vec![EPMD_PORT, DIST_PORT], names(&["rabbitmq"])),
            ]
        );
    }

    #[test]
    fn the_operator_is_admitted_from_its_own_namespace() {
        let operator_peer = |owner: &Owner| operator(owner).namespace_selector.and_then(|s| s.match_labels);
        assert_eq!(
            operator_peer(&owner(Some("tinysns-system"))),
            Some(BTreeMap::from([(
                "kubernetes.io/metadata.name".to_owned(),
                "tinysns-system".to_owned()
            )]))
        );
        assert_eq!(operator_peer(&owner(None)), None, "any namespace when unknown");
    }

    #[test]
    fn policies_follow_the_spec() {
        let mut spec = SocialClusterSpec {
            rabbitmq: crate::crd::RabbitMqSpec::External(crate::crd::ExternalRabbitMq {
                url_secret_ref: crate::crd::SecretKeyRef {
                    name: "amqp".to_owned(),
                    key: "url".to_owned(),
                },
                queue_type: crate::crd::QueueType::Classic,
            }),
            ..SocialClusterSpec::default()
        };
        assert_eq!(policies(&owner(None), &spec).len(), 3, "no broker, no broker policy");
        spec.network_policies.enabled = false;
        let validated = render::validated("ns1", spec, &Environment::default()).expect("a valid spec");
        let children = crate::build::build_all(&validated, &render::credentials());
        assert!(children.network_policies.is_empty());
    }
}
