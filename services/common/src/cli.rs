//! Command-line helpers shared by the service binaries.

use crate::secret::ClusterSecret;
use std::path::PathBuf;
use std::time::Duration;

/// Parses `250ms`, `1s`, `2m`... for timing flags.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|e| format!("invalid duration {text:?}: {e}"))
}

/// `--print-config`: prints the resolved configuration as one JSON object, so that
/// deployment tooling can check its wiring against the real binary.
pub fn print_config<T: serde::Serialize>(config: &T) -> Result<(), serde_json::Error> {
    println!("{}", serde_json::to_string(config)?);
    Ok(())
}

/// Resolves an id that is either given or derived from a StatefulSet pod's ordinal.
pub fn ordinal_from_env(pod_name: Option<&str>) -> Result<u32, String> {
    let pod = pod_name.ok_or_else(|| "no id given and POD_NAME is not set".to_string())?;
    crate::topology::ordinal_from_pod_name(pod).map_err(|e| e.to_string())
}

/// The flags every cluster member (tsd, synchronizer) shares: where the coordinator is,
/// where to listen, and the name others reach this member by.
#[derive(Debug, Clone, clap::Args)]
pub struct MemberArgs {
    /// Coordinator host; with several coordinators, all of them, comma-separated, each
    /// `host` or `host:port` (`c0:9000,c1:9000,c2:9000`).
    #[arg(
        short = 'h',
        long = "coordinator-host",
        env = "TINYSNS_COORDINATOR_HOST",
        default_value = "127.0.0.1"
    )]
    pub coordinator_host: String,
    /// Coordinator port (for hosts given without one).
    #[arg(
        short = 'k',
        long = "coordinator-port",
        env = "TINYSNS_COORDINATOR_PORT",
        default_value_t = 9000
    )]
    pub coordinator_port: u16,
    /// Address to listen on.
    #[arg(long, env = "TINYSNS_BIND", default_value = "0.0.0.0")]
    pub bind: String,
    /// Host name other processes use to reach this member (the pod's DNS name on Kubernetes).
    #[arg(long, env = "TINYSNS_ADVERTISE_HOST", default_value = "127.0.0.1")]
    pub advertise_host: String,
    /// Port of the coordinators' internal (member) API; defaults to each one's port + 20000.
    #[arg(long, env = "TINYSNS_COORDINATOR_INTERNAL_PORT")]
    pub coordinator_internal_port: Option<u16>,
    /// The coordinators' internal addresses (`host:port`, comma-separated, in the order of
    /// --coordinator-host), when their ports do not follow one rule.
    #[arg(
        long,
        env = "TINYSNS_COORDINATOR_INTERNAL_ADDRESSES",
        value_delimiter = ',',
        conflicts_with = "coordinator_internal_port"
    )]
    pub coordinator_internal_addresses: Vec<String>,
    #[command(flatten)]
    pub secret: SecretArgs,
    #[command(flatten)]
    pub tls: crate::tls::TlsArgs,
}

/// How a process proves membership to, and checks it of, the other members.
#[derive(Debug, Clone, clap::Args, serde::Serialize)]
pub struct SecretArgs {
    /// File holding the cluster secret (32-256 printable ASCII characters, the same for every
    /// member). Without it, internal APIs listen on loopback only.
    #[arg(long, env = "TINYSNS_CLUSTER_SECRET_FILE")]
    pub cluster_secret_file: Option<PathBuf>,
}

impl SecretArgs {
    /// Reads the secret, if one is configured.
    pub fn load(&self) -> Result<Option<ClusterSecret>, String> {
        self.cluster_secret_file
            .as_deref()
            .map(ClusterSecret::from_file)
            .transpose()
            .map_err(|e| e.to_string())
    }
}

/// Internal APIs listen on the client port plus this, unless told otherwise.
pub const INTERNAL_PORT_OFFSET: u16 = 20000;

/// The internal port: as given, or the client port + [`INTERNAL_PORT_OFFSET`].
pub fn internal_port(client_port: u16, given: Option<u16>) -> Result<u16, String> {
    match given {
        Some(port) if port == client_port => {
            Err(format!("the internal port must differ from the client port ({port})"))
        }
        Some(port) => Ok(port),
        None => client_port.checked_add(INTERNAL_PORT_OFFSET).ok_or_else(|| {
            format!("port {client_port} leaves no room for the default internal port; set --internal-port")
        }),
    }
}

/// Where the internal API listens: on `bind` when callers must present a secret, on loopback
/// only when there is none (nobody else could prove membership anyway).
pub fn internal_bind(bind: &str, secret: Option<&ClusterSecret>) -> String {
    match secret {
        Some(_) => bind.to_string(),
        None => "127.0.0.1".to_string(),
    }
}

/// Logs the warning a process without a cluster secret owes its operator.
pub fn warn_if_no_secret(secret: Option<&ClusterSecret>) {
    if secret.is_none() {
        tracing::warn!(
            "no cluster secret (--cluster-secret-file): internal APIs listen on 127.0.0.1 only, \
             so members on other hosts cannot join"
        );
    }
}

impl MemberArgs {
    /// `host:port` of each coordinator.
    pub fn coordinators(&self) -> Result<Vec<String>, String> {
        crate::coordinators::parse_addresses(&self.coordinator_host, self.coordinator_port)
    }

    /// `host:port` of each coordinator's internal (member) API.
    pub fn coordinators_internal(&self) -> Result<Vec<String>, String> {
        let client = self.coordinators()?;
        if self.coordinator_internal_addresses.is_empty() {
            return crate::coordinators::internal_addresses(&client, self.coordinator_internal_port);
        }
        if self.coordinator_internal_addresses.len() != client.len() {
            return Err(format!(
                "--coordinator-internal-addresses names {} coordinators, --coordinator-host {}",
                self.coordinator_internal_addresses.len(),
                client.len()
            ));
        }
        Ok(self.coordinator_internal_addresses.clone())
    }

    /// `host:port` this member advertises when it serves on `port`.
    pub fn advertise(&self, port: u16) -> String {
        format!("{}:{port}", self.advertise_host)
    }
}

/// `#[serde(with = ...)]` for a `Duration` shown as whole milliseconds (`--print-config`).
pub mod millis {
    pub fn serialize<S: serde::Serializer>(d: &std::time::Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }
}
