//! Wiring test: the pod templates the operator renders must start the real binaries with the
//! intended configuration. For the default spec it fakes what the kubelet provides (POD_NAME,
//! Secret values, `$(VAR)` expansion), runs `$TINYSNS_BIN_DIR/<binary> --print-config` with
//! exactly the rendered command, args and env, and checks the JSON each binary prints.
//!
//! Needs the service binaries: `cargo build --bins` first (scripts/test.sh does).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Container, EnvVar};
use kube::ResourceExt;
use serde_json::Value;

use tinysns_operator::build::{self, Owner};
use tinysns_operator::crd::SocialClusterSpec;
use tinysns_operator::render;

const NAMESPACE: &str = "tinysns-test";
/// Stand-in for the Secret value the kubelet would inject as AMQP_URL.
const FAKE_AMQP_URL: &str = "amqp://tinysns:fakePassword123@demo-rabbitmq.tinysns-test.svc.cluster.local:5672/%2f";

/// `$TINYSNS_BIN_DIR`, else `$CARGO_TARGET_DIR/debug`, else `<workspace>/target/debug`:
/// wherever `cargo build --bins` put the service binaries.
fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("TINYSNS_BIN_DIR") {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(dir).join("debug");
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/debug")
}

/// Kubernetes `$(VAR)` expansion: references to variables defined earlier in the list are
/// replaced, `$$` escapes, anything else is left as written.
fn expand(value: &str, defined: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = value;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            out.push('$');
            rest = stripped;
        } else if let Some(inner) = after.strip_prefix('(') {
            match inner.find(')') {
                Some(end) => {
                    let name = &inner[..end];
                    match defined.get(name) {
                        Some(v) => out.push_str(v),
                        None => out.push_str(&format!("$({name})")),
                    }
                    rest = &inner[end + 1..];
                }
                None => {
                    out.push_str(&rest[pos..]);
                    rest = "";
                }
            }
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// The environment the kubelet would give `container` in pod `pod_name`.
fn pod_env(container: &Container, pod_name: &str) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    for EnvVar {
        name,
        value,
        value_from,
    } in container.env.clone().unwrap_or_default()
    {
        let resolved = if let Some(v) = value {
            expand(&v, &env)
        } else if let Some(from) = value_from {
            if let Some(field) = from.field_ref {
                match field.field_path.as_str() {
                    "metadata.name" => pod_name.to_owned(),
                    "metadata.namespace" => NAMESPACE.to_owned(),
                    other => panic!("{name}: unexpected downward API field {other}"),
                }
            } else if let Some(secret) = from.secret_key_ref {
                assert_eq!(name, "AMQP_URL", "only the AMQP URL comes from a Secret");
                assert_eq!(secret.key, "url");
                FAKE_AMQP_URL.to_owned()
            } else {
                panic!("{name}: unexpected valueFrom {from:?}");
            }
        } else {
            String::new()
        };
        env.insert(name, resolved);
    }
    env
}

/// Runs the container's binary with its rendered command line and env plus --print-config.
fn print_config(container: &Container, pod_name: &str) -> Value {
    let command = container.command.clone().unwrap_or_default();
    let image_path = command.first().expect("the container names its binary");
    let binary = image_path
        .strip_prefix("/usr/local/bin/")
        .unwrap_or_else(|| panic!("binaries live in /usr/local/bin, got {image_path}"));
    let path = bin_dir().join(binary);
    assert!(
        path.is_file(),
        "{} is missing: run `cargo build --bins` first (scripts/test.sh does), or point \
         TINYSNS_BIN_DIR at the directory holding coordinator, tsd and synchronizer",
        path.display()
    );
    let env = pod_env(container, pod_name);
    let mut args: Vec<String> = command[1..].to_vec();
    args.extend(container.args.clone().unwrap_or_default());
    args.push("--print-config".to_owned());
    let output = Command::new(&path)
        .args(&args)
        // Only what the pod would have: no TINYSNS_* from the developer's shell.
        .env_clear()
        .envs(&env)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", path.display()));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{binary} {args:?} with env {env:?} exited with {}: {stderr}",
        output.status
    );
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .unwrap_or_else(|| panic!("{binary} printed no JSON object: {stdout}"));
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{binary} printed bad JSON ({e}): {line}"))
}

/// The first number found under any of `keys` (the binaries' JSON is flat or nested).
fn number(json: &Value, keys: &[&str]) -> Option<u64> {
    match json {
        Value::Object(map) => {
            for k in keys {
                if let Some(n) = map.get(*k).and_then(Value::as_u64) {
                    return Some(n);
                }
            }
            map.values().find_map(|v| number(v, keys))
        }
        _ => None,
    }
}

/// Whether the duration under one of `keys` is `millis` (as a number of milliseconds) or
/// `text` (as a humantime string).
fn duration_is(json: &Value, keys: &[&str], millis: u64, text: &str) -> bool {
    let Value::Object(map) = json else {
        return false;
    };
    keys.iter().filter_map(|k| map.get(*k)).any(|v| {
        v.as_u64() == Some(millis)
            || v.as_str()
                .and_then(|s| humantime::parse_duration(s).ok())
                .is_some_and(|d| Some(d) == humantime::parse_duration(text).ok())
    })
}

/// Whether any string in the JSON contains `needle`.
fn has_string(json: &Value, needle: &str) -> bool {
    match json {
        Value::String(s) => s.contains(needle),
        Value::Array(items) => items.iter().any(|v| has_string(v, needle)),
        Value::Object(map) => map.values().any(|v| has_string(v, needle)),
        _ => false,
    }
}

fn container(sts: &StatefulSet) -> &Container {
    &sts.spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .expect("pod template")
        .containers[0]
}

#[test]
fn expand_follows_kubernetes_rules() {
    let defined = BTreeMap::from([("A".to_owned(), "x".to_owned())]);
    assert_eq!(expand("$(A).y", &defined), "x.y");
    assert_eq!(expand("$(B).y", &defined), "$(B).y");
    assert_eq!(expand("$$(A)", &defined), "$(A)");
    assert_eq!(expand("a$b", &defined), "a$b");
}

/// Checks every pod of the default spec's StatefulSets whose name starts with `prefix`;
/// returns how many pods were checked.
fn check_pods(prefix: &str) -> usize {
    let spec = SocialClusterSpec::default();
    let sc = render::object("demo", NAMESPACE, spec.clone());
    let owner = Owner::from_object(&sc).expect("fixture is complete");
    let children = build::build_all(&owner, &spec, render::RENDER_PASSWORD);
    let coordinator_host = format!("demo-coordinator.{NAMESPACE}.svc.cluster.local");
    let mut checked = 0;

    for sts in &children.stateful_sets {
        let name = sts.name_any();
        if !name.starts_with(prefix) {
            continue;
        }
        let c = container(sts);
        let replicas = sts.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        for ordinal in 0..replicas {
            let pod = format!("{name}-{ordinal}");
            let json = print_config(c, &pod);
            let ordinal = u64::try_from(ordinal).expect("non-negative");
            let ctx = format!("{pod}: {json}");
            if name == "demo-coordinator" {
                assert_eq!(number(&json, &["port"]), Some(9000), "{ctx}");
                assert_eq!(number(&json, &["clusters"]), Some(3), "{ctx}");
                assert!(
                    duration_is(&json, &["heartbeat_interval", "heartbeatInterval"], 250, "250ms"),
                    "heartbeat interval: {ctx}"
                );
                assert!(
                    duration_is(&json, &["failure_timeout", "failureTimeout"], 1000, "1s"),
                    "failure timeout: {ctx}"
                );
            } else if let Some(k) = name.strip_prefix("demo-tsd-") {
                let k: u64 = k.parse().expect("cluster number");
                assert_eq!(number(&json, &["cluster", "cluster_id", "clusterId"]), Some(k), "{ctx}");
                assert_eq!(
                    number(&json, &["server", "server_id", "serverId"]),
                    Some(ordinal + 1),
                    "server id = ordinal + 1: {ctx}"
                );
                assert_eq!(number(&json, &["port"]), Some(10000), "{ctx}");
                assert!(
                    has_string(&json, &format!("{pod}.demo-tsd-{k}.{NAMESPACE}.svc.cluster.local")),
                    "advertises its stable DNS name: {ctx}"
                );
                assert!(has_string(&json, &coordinator_host), "{ctx}");
                assert!(has_string(&json, "/var/lib/tinysns"), "data dir: {ctx}");
            } else if let Some(k) = name.strip_prefix("demo-sync-") {
                let k: u64 = k.parse().expect("cluster number");
                assert_eq!(
                    number(&json, &["id", "synch_id", "synchId", "sync_id"]),
                    Some(k + ordinal * 3),
                    "synch id = cluster + ordinal * clusters: {ctx}"
                );
                assert_eq!(number(&json, &["port"]), Some(9100), "{ctx}");
                assert!(
                    has_string(&json, &format!("{pod}.demo-sync-{k}.{NAMESPACE}.svc.cluster.local")),
                    "advertises its stable DNS name: {ctx}"
                );
                assert!(has_string(&json, &coordinator_host), "{ctx}");
                // The URL may be printed with the password masked; the broker host must be there.
                assert!(
                    has_string(&json, &format!("demo-rabbitmq.{NAMESPACE}.svc.cluster.local:5672")),
                    "amqp url: {ctx}"
                );
            } else {
                panic!("unexpected StatefulSet {name}");
            }
            checked += 1;
        }
    }
    checked
}

#[test]
fn coordinator_pod_starts_with_the_intended_configuration() {
    assert_eq!(check_pods("demo-coordinator"), 1);
}

#[test]
fn tsd_pods_start_with_the_intended_configuration() {
    // 3 clusters x 2 servers
    assert_eq!(check_pods("demo-tsd-"), 6);
}

#[test]
fn synchronizer_pods_start_with_the_intended_configuration() {
    // 3 clusters x 2 synchronizers
    assert_eq!(check_pods("demo-sync-"), 6);
}
