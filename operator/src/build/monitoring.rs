//! The ServiceMonitor (Prometheus Operator, `monitoring.coreos.com/v1`) that scrapes every
//! process of a SocialCluster: the `metrics` port of each tinysns Service and the broker's
//! `prometheus` port. Built as JSON: the operator does not depend on the Prometheus
//! Operator's types, and applies it only where its CRD is installed.

use serde_json::{Value, json};

use super::{APP_NAME, LABEL_INSTANCE, LABEL_NAME, Owner, PORT_NAME_METRICS};
use crate::crd::SocialClusterSpec;

pub const GROUP: &str = "monitoring.coreos.com";
pub const VERSION: &str = "v1";
pub const KIND: &str = "ServiceMonitor";

/// The ServiceMonitor's name.
pub fn name(owner: &Owner) -> String {
    owner.name.clone()
}

/// The ServiceMonitor of this SocialCluster.
pub fn service_monitor(owner: &Owner, spec: &SocialClusterSpec) -> Value {
    let meta = owner.shared_meta(name(owner), "monitoring");
    let endpoint = |port: &str| {
        json!({
            "port": port,
            "path": "/metrics",
            "interval": spec.monitoring.scrape_interval,
            "scheme": "http",
        })
    };
    json!({
        "apiVersion": format!("{GROUP}/{VERSION}"),
        "kind": KIND,
        "metadata": meta,
        "spec": {
            "selector": {"matchLabels": {LABEL_NAME: APP_NAME, LABEL_INSTANCE: owner.name}},
            "namespaceSelector": {"matchNames": [owner.namespace]},
            // Services without a port of that name are skipped for that endpoint.
            "endpoints": [endpoint(PORT_NAME_METRICS), endpoint("prometheus")],
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::{Children, Environment, build_all};
    use crate::render;
    use kube::ResourceExt;

    #[test]
    fn every_service_with_a_named_metrics_port_is_scraped() {
        let spec = SocialClusterSpec::default();
        let sc = render::object("demo", "ns1", spec.clone());
        let owner = Owner::from_object(&sc, &Environment::default()).expect("a complete fixture");
        let monitor = service_monitor(&owner, &spec.clone());
        assert_eq!(monitor["kind"], "ServiceMonitor");
        assert_eq!(monitor["metadata"]["ownerReferences"][0]["kind"], "SocialCluster");
        let selector = monitor["spec"]["selector"]["matchLabels"].as_object().expect("labels");
        let ports: Vec<&str> = monitor["spec"]["endpoints"]
            .as_array()
            .expect("endpoints")
            .iter()
            .filter_map(|e| e["port"].as_str())
            .collect();
        // Every Service the monitor selects has one of its ports; every process is covered.
        let validated = render::validated("ns1", spec, &Environment::default()).expect("a valid spec");
        let children: Children = build_all(&validated, &render::credentials());
        let mut scraped = Vec::new();
        for service in &children.services {
            let labels = service.labels();
            if !selector
                .iter()
                .all(|(k, v)| labels.get(k).map(String::as_str) == v.as_str())
            {
                continue;
            }
            let names: Vec<String> = service
                .spec
                .as_ref()
                .and_then(|s| s.ports.clone())
                .unwrap_or_default()
                .into_iter()
                .filter_map(|p| p.name)
                .collect();
            if names.iter().any(|n| ports.contains(&n.as_str())) {
                scraped.push(service.name_any());
            }
        }
        scraped.sort();
        assert_eq!(
            scraped,
            [
                "demo-coordinator",
                "demo-gateway",
                "demo-rabbitmq",
                "demo-sync-1",
                "demo-sync-2",
                "demo-sync-3",
                "demo-tsd-1",
                "demo-tsd-2",
                "demo-tsd-3"
            ]
        );
    }
}
