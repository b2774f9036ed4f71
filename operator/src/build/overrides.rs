//! `spec.podOverrides`: a partial pod template per role, merged over the one the operator
//! builds. Objects merge key by key; lists whose items all have a `name` (containers, env,
//! volumes, volumeMounts, ports) merge item by item by name, new names appended; any other
//! value, lists included, replaces what was there. A `null` removes a key.

use k8s_openapi::api::core::v1::PodTemplateSpec;
use serde_json::Value;

use super::Role;
use crate::crd::PodOverrides;

/// Why an override cannot be merged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OverrideError {
    #[error("must be an object (a partial pod template)")]
    NotAnObject,
    #[error("does not make a pod template: {0}")]
    NotAPodTemplate(String),
    #[error("may not set the label {0:?}: the operator's selectors depend on it")]
    ReservedLabel(String),
}

/// The override of one role, if any.
pub fn of(overrides: &PodOverrides, role: Role) -> Option<&Value> {
    let PodOverrides {
        coordinator,
        tsd,
        synchronizer,
        rabbitmq,
        gateway,
    } = overrides;
    match role {
        Role::Coordinator => coordinator.as_ref(),
        Role::Tsd => tsd.as_ref(),
        Role::Synchronizer => synchronizer.as_ref(),
        Role::RabbitMq => rabbitmq.as_ref(),
        Role::Gateway => gateway.as_ref(),
    }
}

/// Label keys an override may not set: they select the pods.
fn reserved(key: &str) -> bool {
    key.starts_with("app.kubernetes.io/") || key.starts_with("tinysns.io/")
}

/// The template with the override merged in.
pub fn apply(template: &PodTemplateSpec, patch: &Value) -> Result<PodTemplateSpec, OverrideError> {
    if !patch.is_object() {
        return Err(OverrideError::NotAnObject);
    }
    if let Some(labels) = patch.pointer("/metadata/labels").and_then(Value::as_object)
        && let Some(key) = labels.keys().find(|k| reserved(k))
    {
        return Err(OverrideError::ReservedLabel(key.clone()));
    }
    let mut value = serde_json::to_value(template).map_err(|e| OverrideError::NotAPodTemplate(e.to_string()))?;
    merge(&mut value, patch);
    serde_json::from_value(value).map_err(|e| OverrideError::NotAPodTemplate(e.to_string()))
}

/// Checks an override against an empty template: a value of the wrong type anywhere fails
/// here, so it also fails nowhere when merged over a built template.
pub fn check(patch: &Value) -> Result<(), OverrideError> {
    apply(&PodTemplateSpec::default(), patch).map(|_| ())
}

fn merge(base: &mut Value, patch: &Value) {
    match (base, patch) {
        (Value::Object(base), Value::Object(patch)) => {
            for (key, value) in patch {
                if value.is_null() {
                    base.remove(key);
                } else if let Some(existing) = base.get_mut(key) {
                    merge(existing, value);
                } else {
                    base.insert(key.clone(), value.clone());
                }
            }
        }
        (Value::Array(base), Value::Array(patch)) if named(base) && named(patch) => {
            for item in patch {
                let name = &item["name"];
                match base.iter_mut().find(|b| &b["name"] == name) {
                    Some(existing) => merge(existing, item),
                    None => base.push(item.clone()),
                }
            }
        }
        (base, patch) => *base = patch.clone(),
    }
}

/// Whether every item of a list is an object with a string `name`.
fn named(items: &[Value]) -> bool {
    !items.is_empty() && items.iter().all(|item| item["name"].is_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Container, EnvVar, PodSpec};
    use serde_json::json;

    fn template() -> PodTemplateSpec {
        PodTemplateSpec {
            metadata: None,
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "tsd".to_owned(),
                    image: Some("tinysns:1".to_owned()),
                    env: Some(vec![EnvVar {
                        name: "RUST_LOG".to_owned(),
                        value: Some("info".to_owned()),
                        ..EnvVar::default()
                    }]),
                    ..Container::default()
                }],
                ..PodSpec::default()
            }),
        }
    }

    #[test]
    fn containers_and_env_merge_by_name() {
        let merged = apply(
            &template(),
            &json!({"spec": {"containers": [{"name": "tsd", "env": [
                {"name": "RUST_LOG", "value": "debug"},
                {"name": "EXTRA", "value": "1"}
            ]}]}}),
        )
        .unwrap();
        let container = &merged.spec.as_ref().unwrap().containers[0];
        assert_eq!(container.image.as_deref(), Some("tinysns:1"), "untouched fields stay");
        let env: Vec<(&str, Option<&str>)> = container
            .env
            .iter()
            .flatten()
            .map(|e| (e.name.as_str(), e.value.as_deref()))
            .collect();
        assert_eq!(env, [("RUST_LOG", Some("debug")), ("EXTRA", Some("1"))]);
    }

    #[test]
    fn a_sidecar_is_appended_and_null_removes() {
        let merged = apply(
            &template(),
            &json!({"spec": {
                "containers": [{"name": "sidecar", "image": "busybox"}],
                "hostNetwork": null,
                "dnsPolicy": "None"
            }}),
        )
        .unwrap();
        let spec = merged.spec.unwrap();
        assert_eq!(
            spec.containers.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
            ["tsd", "sidecar"]
        );
        assert_eq!(spec.dns_policy.as_deref(), Some("None"));
    }

    #[test]
    fn wrong_types_and_selector_labels_are_refused() {
        assert_eq!(check(&json!("x")), Err(OverrideError::NotAnObject));
        assert!(matches!(
            check(&json!({"spec": {"nodeSelector": 5}})),
            Err(OverrideError::NotAPodTemplate(_))
        ));
        assert_eq!(
            check(&json!({"metadata": {"labels": {"app.kubernetes.io/component": "x"}}})),
            Err(OverrideError::ReservedLabel("app.kubernetes.io/component".to_owned()))
        );
        assert!(check(&json!({"metadata": {"labels": {"team": "social"}}})).is_ok());
    }
}
