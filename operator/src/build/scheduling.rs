//! Where pods run: each role's pods avoid sharing a node (master and slave of a cluster never
//! fail together with one node, by default only when the scheduler can help it) and spread
//! over zones; node selector, tolerations, priority class and image pull secrets from the
//! spec; then the role's `podOverrides`. Applied to every pod template after the role
//! builders, so no builder repeats it.

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{
    Affinity, LocalObjectReference, PodAffinityTerm, PodAntiAffinity, PodSpec, PodTemplateSpec,
    TopologySpreadConstraint, WeightedPodAffinityTerm,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use super::{LABEL_CLUSTER, LABEL_COMPONENT, Owner, Role, overrides};
use crate::crd::{AntiAffinity, SocialClusterSpec};

pub const HOSTNAME_KEY: &str = "kubernetes.io/hostname";
pub const ZONE_KEY: &str = "topology.kubernetes.io/zone";

/// Places the pods of every StatefulSet and Deployment the builders made.
pub fn place_all(
    owner: &Owner,
    spec: &SocialClusterSpec,
    stateful_sets: &mut [StatefulSet],
    deployments: &mut [Deployment],
) {
    let templates = stateful_sets
        .iter_mut()
        .filter_map(|s| s.spec.as_mut().map(|s| &mut s.template))
        .chain(
            deployments
                .iter_mut()
                .filter_map(|d| d.spec.as_mut().map(|s| &mut s.template)),
        );
    for template in templates {
        place(owner, spec, template);
    }
}

/// The role and cluster a pod template's labels name.
fn identity(template: &PodTemplateSpec) -> Option<(Role, Option<u32>)> {
    let labels = template.metadata.as_ref()?.labels.as_ref()?;
    let role = Role::from_label(labels.get(LABEL_COMPONENT)?)?;
    let cluster = labels.get(LABEL_CLUSTER).and_then(|k| k.parse().ok());
    Some((role, cluster))
}

/// Places one pod template.
pub fn place(owner: &Owner, spec: &SocialClusterSpec, template: &mut PodTemplateSpec) {
    let Some((role, cluster)) = identity(template) else {
        return;
    };
    if let Some(pod) = template.spec.as_mut() {
        let peers = LabelSelector {
            match_labels: Some(owner.selector_labels(role, cluster)),
            ..LabelSelector::default()
        };
        pod.affinity = anti_affinity(spec.scheduling.anti_affinity, &peers);
        pod.topology_spread_constraints = spec.scheduling.spread_over_zones.then(|| {
            vec![TopologySpreadConstraint {
                max_skew: 1,
                topology_key: ZONE_KEY.to_owned(),
                when_unsatisfiable: "ScheduleAnyway".to_owned(),
                label_selector: Some(peers.clone()),
                ..TopologySpreadConstraint::default()
            }]
        });
        select_nodes(spec, pod);
    }
    // `validate` checked every override (`overrides::check`): merged over a built template it
    // cannot fail, and if it did, the template stays as built.
    if let Some(patch) = overrides::of(&spec.pod_overrides, role)
        && let Ok(merged) = overrides::apply(template, patch)
    {
        *template = merged;
    }
}

fn select_nodes(spec: &SocialClusterSpec, pod: &mut PodSpec) {
    let scheduling = &spec.scheduling;
    pod.node_selector = (!scheduling.node_selector.is_empty()).then(|| scheduling.node_selector.clone());
    pod.tolerations = (!scheduling.tolerations.is_empty()).then(|| scheduling.tolerations.clone());
    pod.priority_class_name = scheduling.priority_class_name.clone();
    pod.image_pull_secrets = (!spec.image.pull_secrets.is_empty()).then(|| {
        spec.image
            .pull_secrets
            .iter()
            .map(|name| LocalObjectReference { name: name.clone() })
            .collect()
    });
}

/// Pods matching `peers` on different nodes: preferred (weight 100) or required.
fn anti_affinity(mode: AntiAffinity, peers: &LabelSelector) -> Option<Affinity> {
    let term = PodAffinityTerm {
        label_selector: Some(peers.clone()),
        topology_key: HOSTNAME_KEY.to_owned(),
        ..PodAffinityTerm::default()
    };
    let anti = match mode {
        AntiAffinity::None => return None,
        AntiAffinity::Preferred => PodAntiAffinity {
            preferred_during_scheduling_ignored_during_execution: Some(vec![WeightedPodAffinityTerm {
                weight: 100,
                pod_affinity_term: term,
            }]),
            ..PodAntiAffinity::default()
        },
        AntiAffinity::Required => PodAntiAffinity {
            required_during_scheduling_ignored_during_execution: Some(vec![term]),
            ..PodAntiAffinity::default()
        },
    };
    Some(Affinity {
        pod_anti_affinity: Some(anti),
        ..Affinity::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::{Children, Environment, InvalidSpec, build_all, validate};
    use crate::render;
    use k8s_openapi::api::core::v1::Toleration;
    use kube::ResourceExt;
    use serde_json::json;

    fn owner() -> Owner {
        let sc = render::object("demo", "ns1", SocialClusterSpec::default());
        Owner::from_object(&sc, &Environment::default()).expect("a complete fixture")
    }

    fn build(spec: &SocialClusterSpec) -> Children {
        let validated = render::validated("ns1", spec.clone(), &Environment::default()).expect("a valid spec");
        build_all(&validated, &render::credentials())
    }

    fn pod<'a>(c: &'a Children, name: &str) -> &'a PodSpec {
        c.stateful_sets
            .iter()
            .find(|s| s.name_any() == name)
            .and_then(|s| s.spec.as_ref()?.template.spec.as_ref())
            .unwrap_or_else(|| panic!("no pod template for {name}"))
    }

    #[test]
    fn by_default_each_roles_pods_prefer_other_nodes_and_zones() {
        let c = build(&SocialClusterSpec::default());
        for (name, role, cluster) in [
            ("demo-tsd-2", Role::Tsd, Some(2)),
            ("demo-sync-1", Role::Synchronizer, Some(1)),
            ("demo-coordinator", Role::Coordinator, None),
            ("demo-rabbitmq", Role::RabbitMq, None),
        ] {
            let pod = pod(&c, name);
            let anti = pod
                .affinity
                .as_ref()
                .and_then(|a| a.pod_anti_affinity.as_ref())
                .unwrap_or_else(|| panic!("{name}: no anti-affinity"));
            assert!(anti.required_during_scheduling_ignored_during_execution.is_none());
            let preferred = anti
                .preferred_during_scheduling_ignored_during_execution
                .as_ref()
                .expect("preferred");
            let term = &preferred[0].pod_affinity_term;
            assert_eq!(term.topology_key, HOSTNAME_KEY);
            let selected = term.label_selector.as_ref().and_then(|s| s.match_labels.clone());
            assert_eq!(
                selected,
                Some(owner().selector_labels(role, cluster)),
                "{name}: its peers only"
            );
            let spread = pod.topology_spread_constraints.as_ref().expect("zone spread");
            assert_eq!(spread[0].topology_key, ZONE_KEY);
            assert_eq!(spread[0].when_unsatisfiable, "ScheduleAnyway");
            assert!(pod.node_selector.is_none() && pod.tolerations.is_none());
        }
    }

    #[test]
    fn required_anti_affinity_and_no_spreading_are_choices() {
        let mut spec = SocialClusterSpec::default();
        spec.scheduling.anti_affinity = AntiAffinity::Required;
        spec.scheduling.spread_over_zones = false;
        let c = build(&spec);
        let placed = pod(&c, "demo-tsd-1");
        let anti = placed
            .affinity
            .as_ref()
            .and_then(|a| a.pod_anti_affinity.as_ref())
            .expect("anti");
        assert!(anti.preferred_during_scheduling_ignored_during_execution.is_none());
        assert_eq!(
            anti.required_during_scheduling_ignored_during_execution
                .as_ref()
                .map(Vec::len),
            Some(1)
        );
        assert!(placed.topology_spread_constraints.is_none());
        spec.scheduling.anti_affinity = AntiAffinity::None;
        assert!(pod(&build(&spec), "demo-tsd-1").affinity.is_none());
    }

    #[test]
    fn node_selection_and_pull_secrets_reach_every_pod() {
        let mut spec = SocialClusterSpec::default();
        spec.scheduling
            .node_selector
            .insert("pool".to_owned(), "social".to_owned());
        spec.scheduling.tolerations.push(Toleration {
            key: Some("dedicated".to_owned()),
            operator: Some("Equal".to_owned()),
            value: Some("social".to_owned()),
            effect: Some("NoSchedule".to_owned()),
            ..Toleration::default()
        });
        spec.scheduling.priority_class_name = Some("tinysns-critical".to_owned());
        spec.image.pull_secrets = vec!["registry".to_owned()];
        let c = build(&spec);
        assert_eq!(c.stateful_sets.len(), 8);
        for set in &c.stateful_sets {
            let pod = pod(&c, &set.name_any());
            assert_eq!(pod.node_selector.as_ref().map(|s| s["pool"].as_str()), Some("social"));
            assert_eq!(pod.tolerations.as_ref().map(Vec::len), Some(1));
            assert_eq!(pod.priority_class_name.as_deref(), Some("tinysns-critical"));
            let secrets = pod.image_pull_secrets.as_ref().expect("pull secrets");
            assert_eq!(secrets[0].name, "registry");
        }
    }

    #[test]
    fn a_roles_override_changes_only_that_roles_pods() {
        let mut spec = SocialClusterSpec::default();
        spec.pod_overrides.tsd = Some(json!({
            "metadata": {"annotations": {"backup": "yes"}},
            "spec": {"containers": [{"name": "tsd", "env": [{"name": "RUST_LOG", "value": "debug"}]}]}
        }));
        let c = build(&spec);
        for set in &c.stateful_sets {
            let template = &set.spec.as_ref().expect("spec").template;
            let annotated = template
                .metadata
                .as_ref()
                .and_then(|m| m.annotations.as_ref())
                .is_some_and(|a| a.get("backup").is_some());
            assert_eq!(annotated, set.name_any().starts_with("demo-tsd-"), "{}", set.name_any());
        }
        let tsd = &pod(&c, "demo-tsd-1").containers[0];
        let log = tsd
            .env
            .iter()
            .flatten()
            .find(|e| e.name == "RUST_LOG")
            .and_then(|e| e.value.clone());
        assert_eq!(log.as_deref(), Some("debug"));
        assert!(
            tsd.env.iter().flatten().any(|e| e.name == "TINYSNS_CLUSTER"),
            "the rest stays"
        );
    }

    #[test]
    fn an_override_that_is_no_pod_template_is_an_invalid_spec() {
        let mut spec = SocialClusterSpec::default();
        spec.pod_overrides.synchronizer = Some(json!({"spec": {"containers": "sidecar"}}));
        assert!(matches!(
            validate(&spec),
            Err(InvalidSpec::BadPodOverride {
                role: "synchronizer",
                ..
            })
        ));
        let mut spec = SocialClusterSpec::default();
        spec.image.pull_secrets = vec!["Not A Name".to_owned()];
        assert!(matches!(validate(&spec), Err(InvalidSpec::BadSecretName { .. })));
    }
}
