//! Wiring test: the pod templates the operator renders must start the real binaries with the
//! intended configuration. For the default spec it fakes what the kubelet provides (POD_NAME,
//! Secret values, Secret volumes projected as files, `$(VAR)` expansion), runs
//! `$TINYSNS_BIN_DIR/<binary> --print-config` with exactly the rendered command, args and env,
//! and checks the JSON each binary prints.
//!
//! Needs the service binaries: `cargo build --bins` first (scripts/test.sh does).

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Container, EnvVar, Secret, SecretVolumeSource};
use kube::ResourceExt;
use serde_json::{Value, json};

use tinysns_operator::build;
use tinysns_operator::build::security::CLUSTER_SECRET_FILE;
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

/// A directory standing in for a pod's filesystem: every Secret volume the container mounts
/// is projected under it as the kubelet would (one file per item, with the volume's mode,
/// from the Secret the operator built), and env values naming a path inside a mount are
/// mapped to the projected file. Removed on drop.
struct Mounts {
    root: PathBuf,
    /// (path in the container, path on this machine)
    mounts: Vec<(String, PathBuf)>,
}

impl Mounts {
    /// Projects the Secret volumes of `sts`'s container for pod `pod_name`; `secrets` are the
    /// Secrets that exist (those the operator built, plus any a test provides).
    fn project(sts: &StatefulSet, secrets: &[Secret], pod_name: &str) -> Self {
        let spec = sts.spec.as_ref().expect("StatefulSet spec");
        let pod = spec.template.spec.as_ref().expect("pod template");
        let root = std::env::temp_dir().join(format!("tinysns-wiring-{}-{pod_name}", std::process::id()));
        // Leftovers of a killed earlier run with the same pid.
        let _ = std::fs::remove_dir_all(&root);
        let mut mounts = Mounts {
            root,
            mounts: Vec::new(),
        };
        for m in pod.containers[0].volume_mounts.iter().flatten() {
            let claims = spec.volume_claim_templates.iter().flatten();
            if claims
                .map(|c| c.metadata.name.as_deref())
                .any(|n| n == Some(m.name.as_str()))
            {
                continue; // a PersistentVolumeClaim: nothing to read at start
            }
            let volume = pod
                .volumes
                .iter()
                .flatten()
                .find(|v| v.name == m.name)
                .unwrap_or_else(|| panic!("{pod_name}: mount {} has no volume", m.name));
            let Some(source) = &volume.secret else {
                continue; // emptyDir: nothing to read at start
            };
            assert_eq!(
                m.read_only,
                Some(true),
                "{pod_name}: Secret {} mounted read-only",
                m.name
            );
            let dir = mounts.root.join(m.mount_path.trim_start_matches('/'));
            write_secret_files(&dir, source, secrets);
            mounts.mounts.push((m.mount_path.clone(), dir));
        }
        mounts
    }

    /// Where `path` (inside the container) is on this machine, if it is inside a Secret mount.
    fn host_path(&self, path: &str) -> Option<PathBuf> {
        self.mounts.iter().find_map(|(mount, dir)| {
            let rest = path.strip_prefix(mount.as_str())?.strip_prefix('/')?;
            Some(dir.join(rest))
        })
    }

    /// Maps env values that are paths inside a Secret mount to the projected files.
    fn map_env(&self, env: &mut BTreeMap<String, String>) {
        for value in env.values_mut() {
            if let Some(host) = self.host_path(value) {
                *value = host.display().to_string();
            }
        }
    }
}

impl Drop for Mounts {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// Writes each item of a Secret volume to `dir` with the volume's file mode, as the kubelet does.
fn write_secret_files(dir: &Path, source: &SecretVolumeSource, secrets: &[Secret]) {
    let name = source.secret_name.as_deref().expect("a Secret volume names its Secret");
    let secret = secrets
        .iter()
        .find(|s| s.name_any() == name)
        .unwrap_or_else(|| panic!("the pod needs Secret {name}, which does not exist"));
    std::fs::create_dir_all(dir).expect("temp dir is writable");
    for item in source.items.iter().flatten() {
        let data = secret
            .data
            .as_ref()
            .and_then(|d| d.get(&item.key))
            .unwrap_or_else(|| panic!("Secret {name} has no key {}", item.key));
        let file = dir.join(&item.path);
        std::fs::write(&file, &data.0).expect("temp file is writable");
        let mode = u32::try_from(item.mode.or(source.default_mode).unwrap_or(0o644)).expect("a file mode");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).expect("chmod");
    }
}

/// Runs the container's binary with its rendered command line, `env` and --print-config.
fn print_config(container: &Container, env: &BTreeMap<String, String>) -> Value {
    let command = container.command.clone().unwrap_or_default();
    let image_path = command.first().expect("the container names its binary");
    let binary = image_path
        .strip_prefix("/usr/local/bin/")
        .unwrap_or_else(|| panic!("binaries live in /usr/local/bin, got {image_path}"));
    let path = bin_dir().join(binary);
    assert!(
        path.is_file(),
        "{} is missing: run `cargo build --bins` first (scripts/test.sh does), or point \
         TINYSNS_BIN_DIR at the directory holding coordinator, tsd, synchronizer and tinysns-gateway",
        path.display()
    );
    let mut args: Vec<String> = command[1..].to_vec();
    args.extend(container.args.clone().unwrap_or_default());
    args.push("--print-config".to_owned());
    let output = Command::new(&path)
        .args(&args)
        // Only what the pod would have: no TINYSNS_* from the developer's shell.
        .env_clear()
        .envs(env)
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

/// Asserts that each JSON pointer of `expected` holds its value in what a binary printed.
fn expect_fields(json: &Value, expected: &[(&str, Value)], ctx: &str) {
    for (pointer, want) in expected {
        assert_eq!(json.pointer(pointer), Some(want), "{pointer}: {ctx}");
    }
}

/// What a pod is and where its Secret files landed, for the per-role expectations.
struct PodUnderTest<'a> {
    pod: &'a str,
    ordinal: u64,
    mounts: &'a Mounts,
}

impl PodUnderTest<'_> {
    /// The projected cluster secret file, where the rendered TINYSNS_CLUSTER_SECRET_FILE
    /// points inside the pod.
    fn secret_file(&self) -> Value {
        let host = self
            .mounts
            .host_path(CLUSTER_SECRET_FILE)
            .unwrap_or_else(|| panic!("{}: {CLUSTER_SECRET_FILE} is not inside a Secret mount", self.pod));
        let content = std::fs::read_to_string(&host).expect("the projected secret file exists");
        assert_eq!(
            content,
            render::RENDER_CLUSTER_SECRET,
            "{}: the built Secret's value",
            self.pod
        );
        json!(host.display().to_string())
    }
}

/// Every coordinator pod's name, port `port`.
fn coordinators(port: u16) -> Value {
    let hosts: Vec<String> = (0..3)
        .map(|i| format!("demo-coordinator-{i}.demo-coordinator.{NAMESPACE}.svc.cluster.local:{port}"))
        .collect();
    json!(hosts)
}

/// Fields of the coordinator's --print-config that the operator sets, one line per setting.
fn coordinator_fields(p: &PodUnderTest) -> Vec<(&'static str, Value)> {
    vec![
        ("/port", json!(9000)),
        ("/internal_port", json!(29000)),
        ("/bind", json!("0.0.0.0")),
        ("/clusters", json!(3)),
        ("/heartbeat_interval", json!(250)),
        ("/failure_timeout", json!(1000)),
        ("/secret/cluster_secret_file", p.secret_file()),
        ("/auth", json!("password")),
        ("/node_id", json!(p.ordinal)),
        ("/peers", coordinators(29000)),
        ("/data_dir", json!("/var/lib/tinysns")),
        ("/metrics_port", json!(9464)),
    ]
}

/// Fields of a tsd of cluster `k`.
fn tsd_fields(p: &PodUnderTest, k: u64) -> Vec<(&'static str, Value)> {
    let host = format!("{}.demo-tsd-{k}.{NAMESPACE}.svc.cluster.local", p.pod);
    vec![
        ("/cluster", json!(k)),
        ("/server", json!(p.ordinal + 1)),
        ("/port", json!(10000)),
        ("/advertise", json!(format!("{host}:10000"))),
        ("/internal_port", json!(30000)),
        // Not loopback: the secret file was read, so other pods can reach the internal port.
        ("/internal_bind", json!("0.0.0.0")),
        ("/internal_advertise", json!(format!("{host}:30000"))),
        ("/coordinators", coordinators(9000)),
        ("/coordinators_internal", coordinators(29000)),
        ("/cluster_secret_file", p.secret_file()),
        ("/data_dir", json!("/var/lib/tinysns")),
        ("/auth", json!("password")),
        ("/metrics_port", json!(9464)),
    ]
}

/// Fields of a synchronizer of cluster `k`.
fn synchronizer_fields(p: &PodUnderTest, k: u64) -> Vec<(&'static str, Value)> {
    let host = format!("{}.demo-sync-{k}.{NAMESPACE}.svc.cluster.local", p.pod);
    vec![
        ("/id", json!(k + p.ordinal * 3)),
        ("/port", json!(9100)),
        ("/advertise", json!(format!("{host}:9100"))),
        ("/coordinators_internal", coordinators(29000)),
        ("/cluster_secret_file", p.secret_file()),
        ("/auth", json!("password")),
        ("/metrics_port", json!(9464)),
    ]
}

/// Checks every pod of the default spec's StatefulSets whose name starts with `prefix`;
/// returns how many pods were checked.
fn check_pods(prefix: &str) -> usize {
    let spec = SocialClusterSpec::default();
    let validated = render::validated(NAMESPACE, spec, &Default::default()).expect("the default spec is valid");
    let children = build::build_all(&validated, &render::credentials());
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
            let mounts = Mounts::project(sts, &children.secrets, &pod);
            let mut env = pod_env(c, &pod);
            assert_eq!(
                env.get("TINYSNS_CLUSTER_SECRET_FILE").map(String::as_str),
                Some(CLUSTER_SECRET_FILE),
                "{pod}"
            );
            mounts.map_env(&mut env);
            let json = print_config(c, &env);
            let ctx = format!("{pod}: {json}");
            let under_test = PodUnderTest {
                pod: &pod,
                ordinal: u64::try_from(ordinal).expect("non-negative"),
                mounts: &mounts,
            };
            let expected = if name == "demo-coordinator" {
                coordinator_fields(&under_test)
            } else if let Some(k) = name.strip_prefix("demo-tsd-") {
                tsd_fields(&under_test, k.parse().expect("cluster number"))
            } else if let Some(k) = name.strip_prefix("demo-sync-") {
                let fields = synchronizer_fields(&under_test, k.parse().expect("cluster number"));
                // The URL may be printed with the password masked; the broker host must be there.
                assert!(
                    has_string(&json, &format!("demo-rabbitmq.{NAMESPACE}.svc.cluster.local:5672")),
                    "amqp url: {ctx}"
                );
                fields
            } else {
                panic!("unexpected StatefulSet {name}");
            };
            expect_fields(&json, &expected, &ctx);
            checked += 1;
        }
    }
    checked
}

#[test]
fn coordinator_pod_starts_with_the_intended_configuration() {
    assert_eq!(check_pods("demo-coordinator"), 3);
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

#[test]
fn gateway_pods_start_with_the_intended_configuration() {
    let spec = SocialClusterSpec::default();
    let validated = render::validated(NAMESPACE, spec, &Default::default()).expect("the default spec is valid");
    let children = build::build_all(&validated, &render::credentials());
    let deployment = children
        .deployments
        .iter()
        .find(|d| d.name_any() == "demo-gateway")
        .expect("the gateway Deployment");
    let pod = deployment
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .expect("pod template");
    assert!(
        pod.volumes.iter().flatten().all(|v| v.secret.is_none()),
        "without spec.tls the gateway mounts no Secret: it holds no cluster secret"
    );
    let c = &pod.containers[0];
    let env = pod_env(c, "demo-gateway-5d8f7c9b4-x2x7q");
    let json = print_config(c, &env);
    let hosts: Vec<String> = (0..3)
        .map(|i| format!("demo-coordinator-{i}.demo-coordinator.{NAMESPACE}.svc.cluster.local"))
        .collect();
    expect_fields(
        &json,
        &[
            ("/bind", json!("0.0.0.0")),
            ("/port", json!(8080)),
            ("/coordinator_host", json!(hosts.join(","))),
            ("/coordinator_port", json!(9000)),
            ("/metrics/metrics_port", json!(9464)),
        ],
        &format!("gateway: {json}"),
    );
}
