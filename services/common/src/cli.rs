//! Command-line helpers shared by the service binaries.

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
    /// Coordinator host.
    #[arg(
        short = 'h',
        long = "coordinator-host",
        env = "TINYSNS_COORDINATOR_HOST",
        default_value = "127.0.0.1"
    )]
    pub coordinator_host: String,
    /// Coordinator port.
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
}

impl MemberArgs {
    /// `host:port` of the coordinator.
    pub fn coordinator(&self) -> String {
        format!("{}:{}", self.coordinator_host, self.coordinator_port)
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
