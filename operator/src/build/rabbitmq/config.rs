//! What the managed broker is told: its configuration file, its plugins, and the definitions
//! (user, vhost, permissions) it loads at every boot. Pure text, unit-tested here and loaded
//! by a real RabbitMQ in `operator/tests/broker.rs`.

use base64::Engine;
use sha2::{Digest, Sha256};

use super::USERNAME;

/// Where the definitions file is mounted (from the credentials Secret: it holds a hash of
/// the password).
pub const DEFINITIONS_DIR: &str = "/etc/rabbitmq/definitions";
pub const DEFINITIONS_FILE: &str = "definitions.json";
/// RabbitMQ's memory budget is this share of the container's limit, so the Erlang VM's own
/// overhead and the page cache fit under the limit too (the RabbitMQ cluster operator uses
/// the same margin).
pub const MEMORY_BUDGET_PERCENT: u64 = 80;
/// Share of the budget at which RabbitMQ blocks publishers (its memory alarm) instead of
/// growing until the kernel kills it.
pub const MEMORY_HIGH_WATERMARK: &str = "0.6";

/// The node settings of rabbitmq.conf: the definitions to load, the memory budget derived
/// from the container's memory limit in bytes (without one RabbitMQ measures the node), and
/// logging to the console (`kubectl logs`).
pub fn node_settings(memory_limit: Option<u64>) -> String {
    let mut conf = String::from("# written by tinysns-operator\n");
    conf.push_str(&format!("load_definitions = {DEFINITIONS_DIR}/{DEFINITIONS_FILE}\n"));
    if let Some(limit) = memory_limit {
        let budget = limit / 100 * MEMORY_BUDGET_PERCENT;
        conf.push_str(&format!("total_memory_available_override_value = {budget}\n"));
    }
    conf.push_str(&format!(
        "vm_memory_high_watermark.relative = {MEMORY_HIGH_WATERMARK}\n"
    ));
    conf.push_str("log.console = true\nlog.console.level = info\nlog.file = false\n");
    conf
}

/// The clustering settings: nodes find each other by their StatefulSet ordinals (RabbitMQ
/// 4.1's Kubernetes peer discovery: node 0 forms the cluster, the others join it; no API
/// access needed), and a node cut off from the majority pauses rather than diverging.
pub fn cluster_settings() -> &'static str {
    "cluster_formation.peer_discovery_backend = k8s\n\
     cluster_partition_handling = pause_minority\n\
     queue_leader_locator = balanced\n"
}

/// The whole rabbitmq.conf of a managed node.
pub fn rabbitmq_conf(memory_limit: Option<u64>) -> String {
    format!("{}{}", node_settings(memory_limit), cluster_settings())
}

/// enabled_plugins: peer discovery, and Prometheus metrics on port 15692.
pub const ENABLED_PLUGINS: &str = "[rabbitmq_peer_discovery_k8s,rabbitmq_prometheus].\n";

/// RabbitMQ's salted SHA-256 password hash (`rabbit_password_hashing_sha256`):
/// base64(salt ++ sha256(salt ++ password)) with a 4-byte salt. The salt is derived from the
/// password, so the same password always gives the same definitions (and the same Secret:
/// a random salt would change the Secret, and so restart the broker, on every reconcile).
pub fn password_hash(password: &str) -> String {
    let salt: [u8; 4] = {
        let seed = Sha256::digest(format!("tinysns-broker-salt:{password}"));
        [seed[0], seed[1], seed[2], seed[3]]
    };
    let mut hasher = Sha256::new();
    hasher.update(salt);
    hasher.update(password.as_bytes());
    let mut salted = salt.to_vec();
    salted.extend_from_slice(&hasher.finalize());
    base64::engine::general_purpose::STANDARD.encode(salted)
}

/// definitions.json: the synchronizers' user with every permission on the default vhost.
/// Loaded at each boot, so a changed password takes effect when the pods restart (their
/// template carries a hash of the credentials). No `guest`: with definitions loaded at boot
/// RabbitMQ creates no default user.
pub fn definitions(password: &str) -> serde_json::Value {
    serde_json::json!({
        "users": [{
            "name": USERNAME,
            "password_hash": password_hash(password),
            "hashing_algorithm": "rabbit_password_hashing_sha256",
            "tags": [],
        }],
        "vhosts": [{"name": "/"}],
        "permissions": [{
            "user": USERNAME,
            "vhost": "/",
            "configure": ".*",
            "write": ".*",
            "read": ".*",
        }],
    })
}

/// A short digest of some text, for pod template annotations: a change of what it covers
/// changes the template, and so restarts the pods.
pub fn digest(parts: &[&str]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part.as_bytes());
    }
    hasher.finalize().iter().take(8).map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_memory_budget_is_eighty_percent_of_the_limit() {
        let conf = node_settings(Some(1 << 30));
        assert!(
            conf.contains(&format!(
                "total_memory_available_override_value = {}\n",
                (1u64 << 30) / 100 * 80
            )),
            "{conf}"
        );
        assert!(conf.contains("vm_memory_high_watermark.relative = 0.6\n"));
    }

    #[test]
    fn without_a_limit_rabbitmq_measures_the_node() {
        let conf = node_settings(None);
        assert!(!conf.contains("total_memory_available_override_value"), "{conf}");
    }

    #[test]
    fn the_password_hash_is_rabbitmqs_salted_sha256() {
        let hash = password_hash("secret");
        let bytes = base64::engine::general_purpose::STANDARD.decode(&hash).unwrap();
        assert_eq!(bytes.len(), 4 + 32);
        let (salt, digest) = bytes.split_at(4);
        let mut hasher = Sha256::new();
        hasher.update(salt);
        hasher.update(b"secret");
        assert_eq!(digest, hasher.finalize().as_slice());
        assert_eq!(password_hash("secret"), hash, "stable for one password");
        assert_ne!(password_hash("other"), hash);
    }

    #[test]
    fn definitions_hold_one_user_with_the_password_hash() {
        let defs = definitions("pw");
        assert_eq!(defs["users"][0]["name"], USERNAME);
        assert_eq!(defs["users"][0]["password_hash"], password_hash("pw"));
        assert_eq!(defs["permissions"][0]["configure"], ".*");
        assert!(
            !defs.to_string().contains("\"pw\""),
            "the password itself is not stored"
        );
    }

    #[test]
    fn digests_change_with_any_part() {
        assert_eq!(digest(&["a", "b"]), digest(&["a", "b"]));
        assert_ne!(digest(&["a", "b"]), digest(&["ab", ""]));
        assert_eq!(digest(&["x"]).len(), 16);
    }
}
