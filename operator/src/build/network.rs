//! One NetworkPolicy per role, admitting only the traffic tinysns needs. Client ports (and
//! the plaintext health port, and metrics) are open to every pod: clients, probes and
//! Prometheus live anywhere. Internal ports admit only this SocialCluster's members: tsd's
//! to its servers (replication, and reads one cluster asks of another's master: `Peer`) and
//! synchronizers (change feed), the coordinators' to every
//! member and to the operator (rollouts, switchovers). The broker admits the synchronizers
//! on AMQP and its own nodes on the clustering ports. The gateway is the public entry: its
//! HTTP(S) port admits everyone, and it is the one role whose egress is closed too: it may
//! call DNS and the coordinators' and servers' client ports, nothing else (it is a client,
//! like tsc). The other roles' egress stays open (DNS, the API).

use std::collections::BTreeMap;

use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort,
    NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::rabbitmq::nodes::{DIST_PORT, EPMD_PORT, PROMETHEUS_PORT};
use super::{
    AMQP_PORT, APP_NAME, COORDINATOR_INTERNAL_PORT, COORDINATOR_PORT, GATEWAY_PORT, HEALTH_PORT, LABEL_COMPONENT,
    LABEL_INSTANCE, LABEL_NAME, METRICS_PORT, Owner, Role, SYNCHRONIZER_PORT, TSD_INTERNAL_PORT, TSD_PORT, rabbitmq,
};
use crate::crd::SocialClusterSpec;

/// The label the operator's own pods carry (the chart's selector).
pub const OPERATOR_NAME_LABEL: &str = "tinysns-operator";

/// DNS, which the gateway needs to find the coordinators and servers by name.
pub const DNS_PORT: i32 = 53;

fn ports(numbers: &[i32]) -> Vec<NetworkPolicyPort> {
    ports_of("TCP", numbers)
}

fn ports_of(protocol: &str, numbers: &[i32]) -> Vec<NetworkPolicyPort> {
    numbers
        .iter()
        .map(|port| NetworkPolicyPort {
            port: Some(IntOrString::Int(*port)),
            protocol: Some(protocol.to_owned()),
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

/// The gateway's: its HTTP(S) port (and metrics) open to everyone; egress only to DNS and to
/// the client ports of the coordinators and servers. Their internal ports stay closed to it
/// on their side too: no rule of theirs names the gateway.
fn gateway_policy(owner: &Owner) -> NetworkPolicy {
    let mut gateway = policy(owner, Role::Gateway, vec![open(&[GATEWAY_PORT, METRICS_PORT])]);
    if let Some(spec) = gateway.spec.as_mut() {
        spec.policy_types = Some(vec!["Ingress".to_owned(), "Egress".to_owned()]);
        let mut dns = ports_of("UDP", &[DNS_PORT]);
        dns.extend(ports(&[DNS_PORT]));
        spec.egress = Some(vec![
            NetworkPolicyEgressRule {
                ports: Some(dns),
                to: None,
            },
            NetworkPolicyEgressRule {
                ports: Some(ports(&[COORDINATOR_PORT])),
                to: Some(members(owner, &[Role::Coordinator])),
            },
            NetworkPolicyEgressRule {
                ports: Some(ports(&[TSD_PORT])),
                to: Some(members(owner, &[Role::Tsd])),
            },
        ]);
    }
    gateway
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
    if spec.gateway.replicas > 0 {
        out.push(gateway_policy(owner));
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
        let types = spec.policy_types.as_deref().unwrap_or_default();
        let expected: &[&str] = if role == Role::Gateway {
            &["Ingress", "Egress"]
        } else {
            &["Ingress"]
        };
        assert_eq!(types, expected, "{role:?}: only the gateway's egress is closed");
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

    /// (protocol and port of each port, the components allowed, or None for anywhere) of an
    /// egress rule.
    type EgressRule = (Vec<(String, i32)>, Option<Vec<String>>);

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
    fn the_gateway_is_open_to_everyone_and_reaches_only_client_ports() {
        let p = policies(&owner(None), &SocialClusterSpec::default());
        assert_eq!(rules(&p, Role::Gateway), [(vec![GATEWAY_PORT, METRICS_PORT], None)]);
        let spec = p
            .iter()
            .find(|p| p.metadata.name.as_deref() == Some("demo-gateway"))
            .and_then(|p| p.spec.as_ref())
            .expect("the gateway's policy");
        assert_eq!(
            spec.policy_types.as_deref(),
            Some(&["Ingress".to_owned(), "Egress".to_owned()][..])
        );
        let egress: Vec<EgressRule> = spec
            .egress
            .iter()
            .flatten()
            .map(|rule| {
                let ports = rule
                    .ports
                    .iter()
                    .flatten()
                    .filter_map(|p| match &p.port {
                        Some(IntOrString::Int(n)) => Some((p.protocol.clone().unwrap_or_default(), *n)),
                        _ => None,
                    })
                    .collect();
                let to = rule.to.as_ref().map(|peers| {
                    peers
                        .iter()
                        .filter_map(|peer| {
                            peer.pod_selector
                                .as_ref()
                                .and_then(|s| s.match_labels.as_ref())
                                .and_then(|l| l.get(LABEL_COMPONENT).cloned())
                        })
                        .collect()
                });
                (ports, to)
            })
            .collect();
        let tcp = |port: i32| ("TCP".to_owned(), port);
        assert_eq!(
            egress,
            [
                (vec![("UDP".to_owned(), DNS_PORT), tcp(DNS_PORT)], None),
                (vec![tcp(COORDINATOR_PORT)], names(&["coordinator"])),
                (vec![tcp(TSD_PORT)], names(&["tsd"])),
            ]
        );
        // The internal ports admit no gateway on their side either.
        for role in [Role::Coordinator, Role::Tsd] {
            for (ports, from) in rules(&p, role) {
                if ports.contains(&COORDINATOR_INTERNAL_PORT) || ports.contains(&TSD_INTERNAL_PORT) {
                    let from = from.expect("internal ports name their callers");
                    assert!(!from.contains(&"gateway".to_owned()), "{role:?}: {from:?}");
                }
            }
        }
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
        assert_eq!(policies(&owner(None), &spec).len(), 4, "no broker, no broker policy");
        spec.gateway.replicas = 0;
        assert_eq!(policies(&owner(None), &spec).len(), 3, "no gateway, no gateway policy");
        spec.network_policies.enabled = false;
        let validated = render::validated("ns1", spec, &Environment::default()).expect("a valid spec");
        let children = crate::build::build_all(&validated, &render::credentials());
        assert!(children.network_policies.is_empty());
    }
}
