//! The CRD's CEL rules (`x-kubernetes-validations`), evaluated as the API server would:
//! each rule found in the generated schema runs with `self` (and `oldSelf` for transition
//! rules) bound to a value at its place, under cel-interpreter.

use cel_interpreter::{Context, Program, Value};
use serde_json::{Value as Json, json};

/// Every rule of the CRD: the path of properties it sits at, the rule and its message.
fn rules() -> Vec<(Vec<String>, String, String)> {
    fn walk(schema: &Json, path: &mut Vec<String>, out: &mut Vec<(Vec<String>, String, String)>) {
        for rule in schema["x-kubernetes-validations"].as_array().into_iter().flatten() {
            let text = rule["rule"].as_str().unwrap_or_default().to_owned();
            let message = rule["message"].as_str().unwrap_or_default().to_owned();
            out.push((path.clone(), text, message));
        }
        for (name, child) in schema["properties"].as_object().into_iter().flatten() {
            path.push(name.clone());
            walk(child, path, out);
            path.pop();
        }
        for child in schema["oneOf"].as_array().into_iter().flatten() {
            walk(child, path, out);
        }
    }
    let crd = serde_json::to_value(super::definition()).expect("the CRD serializes");
    let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
    let mut out = Vec::new();
    walk(schema, &mut Vec::new(), &mut out);
    out
}

/// The messages of the rules at `path` that refuse `new` (replacing `old`, for transition
/// rules; a transition rule does not run on create, as in the API server).
fn refusals(path: &[&str], new: Json, old: Option<Json>) -> Vec<String> {
    let here: Vec<(String, String)> = rules()
        .into_iter()
        .filter(|(p, _, _)| p.iter().map(String::as_str).eq(path.iter().copied()))
        .map(|(_, rule, message)| (rule, message))
        .collect();
    assert!(!here.is_empty(), "no rule at {path:?}");
    let mut refused = Vec::new();
    for (rule, message) in here {
        let transition = rule.contains("oldSelf");
        if transition && old.is_none() {
            continue;
        }
        let program = Program::compile(&rule).unwrap_or_else(|e| panic!("{rule:?} does not compile: {e:?}"));
        let mut context = Context::default();
        add_quantity_library(&mut context);
        context
            .add_variable("self", cel_interpreter::to_value(&new).expect("a CEL value"))
            .expect("self");
        if let Some(old) = &old {
            context
                .add_variable("oldSelf", cel_interpreter::to_value(old).expect("a CEL value"))
                .expect("oldSelf");
        }
        match program.execute(&context) {
            Ok(Value::Bool(true)) => {}
            Ok(Value::Bool(false)) => refused.push(message),
            other => panic!("{rule:?} on {new} gave {other:?}, not a boolean"),
        }
    }
    refused
}

/// Kubernetes' CEL quantity library as far as the CRD uses it: `quantity(string)` and
/// `compareTo`, a quantity standing for its value in units (the operator's own reading,
/// `build::quantity`). A string that is no quantity is an error, as in the API server.
fn add_quantity_library(context: &mut Context) {
    use cel_interpreter::{ExecutionError, FunctionContext};
    use std::sync::Arc;
    context.add_function(
        "quantity",
        |ftx: &FunctionContext, text: Arc<String>| -> Result<i64, ExecutionError> {
            let q = k8s_openapi::apimachinery::pkg::api::resource::Quantity(text.to_string());
            let units = crate::build::quantity::to_units(&q).map_err(|e| ftx.error(e.to_string()))?;
            i64::try_from(units).map_err(|e| ftx.error(e.to_string()))
        },
    );
    context.add_function(
        "compareTo",
        |cel_interpreter::extractors::This(this): cel_interpreter::extractors::This<i64>, other: i64| -> i64 {
            match this.cmp(&other) {
                std::cmp::Ordering::Less => -1,
                std::cmp::Ordering::Equal => 0,
                std::cmp::Ordering::Greater => 1,
            }
        },
    );
}

#[test]
fn every_rule_of_the_crd_compiles_as_cel() {
    let rules = rules();
    assert!(rules.len() >= 3, "{rules:?}");
    for (path, rule, message) in rules {
        assert!(Program::compile(&rule).is_ok(), "{path:?}: {rule:?}");
        assert!(!message.is_empty(), "{path:?}: a rule without a message");
    }
}

#[test]
fn clusters_cannot_change_after_creation() {
    let path = ["spec", "clusters"];
    assert!(refusals(&path, json!(3), None).is_empty(), "any count on create");
    assert!(refusals(&path, json!(3), Some(json!(3))).is_empty());
    let refused = refusals(&path, json!(4), Some(json!(3)));
    assert_eq!(refused.len(), 1);
    assert!(refused[0].contains("strands every user"), "{refused:?}");
    assert_eq!(refusals(&path, json!(2), Some(json!(3))).len(), 1);
}

#[test]
fn coordinator_replicas_cannot_change_after_creation() {
    let path = ["spec", "coordinator", "replicas"];
    assert!(refusals(&path, json!(3), Some(json!(3))).is_empty());
    assert_eq!(refusals(&path, json!(5), Some(json!(3))).len(), 1);
}

#[test]
fn the_failure_timeout_is_at_least_twice_the_heartbeat() {
    let path = ["spec", "timing"];
    let timing = |heartbeat: &str, failure: &str| json!({"heartbeatInterval": heartbeat, "failureTimeout": failure});
    for (heartbeat, failure) in [("250ms", "1s"), ("500ms", "1s"), ("1s", "1m30s"), ("100us", "1ms")] {
        assert!(
            refusals(&path, timing(heartbeat, failure), None).is_empty(),
            "{heartbeat} / {failure}"
        );
    }
    for (heartbeat, failure) in [("250ms", "400ms"), ("1s", "1s"), ("1m", "1m59s")] {
        let refused = refusals(&path, timing(heartbeat, failure), None);
        assert_eq!(refused.len(), 1, "{heartbeat} / {failure}");
        assert!(refused[0].contains("at least twice"), "{refused:?}");
    }
}

#[test]
fn broker_nodes_cannot_change_after_creation() {
    let path = ["spec", "rabbitmq", "managed", "replicas"];
    assert!(refusals(&path, json!(3), None).is_empty(), "any count on create");
    assert!(refusals(&path, json!(1), Some(json!(1))).is_empty());
    let refused = refusals(&path, json!(3), Some(json!(1)));
    assert_eq!(refused.len(), 1);
    assert!(refused[0].contains("queue type"), "{refused:?}");
}

#[test]
fn storage_may_only_grow() {
    for path in [vec!["spec", "storage"], vec!["spec", "rabbitmq", "managed", "storage"]] {
        let size = |s: &str| json!({"size": s});
        assert!(refusals(&path, size("1Gi"), None).is_empty(), "any size on create");
        assert!(
            refusals(&path, size("2Gi"), Some(size("1Gi"))).is_empty(),
            "{path:?}: growth"
        );
        assert!(
            refusals(&path, size("1024Mi"), Some(size("1Gi"))).is_empty(),
            "the same size written otherwise"
        );
        let refused = refusals(&path, size("512Mi"), Some(size("1Gi")));
        assert_eq!(refused.len(), 1, "{path:?}");
        assert!(refused[0].contains("may only grow"), "{refused:?}");
        assert!(
            refusals(&path, json!({}), Some(size("1Gi"))).is_empty(),
            "left out: the default"
        );
    }
    let path = ["spec", "coordinator"];
    let size = |s: &str| json!({"replicas": 3, "storageSize": s});
    assert!(refusals(&path, size("1Gi"), Some(size("256Mi"))).is_empty());
    assert_eq!(refusals(&path, size("128Mi"), Some(size("256Mi"))).len(), 1);
}

#[test]
fn the_name_must_be_able_to_prefix_every_child() {
    let named = |name: &str| json!({"metadata": {"name": name}, "spec": {}});
    for good in ["demo", "a", "social-1", &"x".repeat(40)] {
        assert!(refusals(&[], named(good), None).is_empty(), "{good}");
    }
    for bad in ["1demo", "demo.eu", "Demo", "demo-", &"x".repeat(41)] {
        let refused = refusals(&[], named(bad), None);
        assert_eq!(refused.len(), 1, "{bad}");
        assert!(refused[0].contains("DNS label"), "{refused:?}");
    }
    assert_eq!(
        crate::build::MAX_NAME_LEN,
        40,
        "the rule and the operator's own check agree on the length"
    );
}

#[test]
fn the_ingress_host_is_a_name_not_an_ip() {
    let path = ["spec", "gateway", "ingress", "host"];
    for good in ["social.example.com", "*.example.com", "localhost", "a1.example"] {
        assert!(refusals(&path, json!(good), None).is_empty(), "{good}");
    }
    for bad in ["10.0.0.1", "192.168.1.20"] {
        let refused = refusals(&path, json!(bad), None);
        assert_eq!(refused.len(), 1, "{bad}");
        assert!(refused[0].contains("not an IP address"), "{refused:?}");
    }
}
