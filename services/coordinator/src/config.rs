//! Command line of the coordinator (classic: `coordinator -p <port>`).

use clap::Parser;
use serde::Serialize;
use std::time::Duration;
use tinysns_common::cli::parse_duration;

#[derive(Debug, Clone, Parser, Serialize)]
#[command(name = "coordinator", version, about = "tinysns coordinator")]
pub struct Config {
    /// Port to listen on.
    #[arg(short = 'p', long, env = "TINYSNS_PORT", default_value_t = 9000)]
    pub port: u16,
    /// Address to listen on.
    #[arg(long, env = "TINYSNS_BIND", default_value = "0.0.0.0")]
    pub bind: String,
    /// Port of the members' API (heartbeats, cluster views); defaults to --port + 20000.
    /// Never served on the client port; every call must carry the cluster secret.
    #[arg(long, env = "TINYSNS_INTERNAL_PORT")]
    pub internal_port: Option<u16>,
    #[command(flatten)]
    pub secret: tinysns_common::cli::SecretArgs,
    #[command(flatten)]
    #[serde(flatten)]
    pub auth: tinysns_common::auth::AuthArgs,
    /// The PEM files (paths).
    #[command(flatten)]
    pub tls_files: tinysns_common::tls::TlsArgs,
    /// Also serve the gRPC health service, in plaintext, on this port (for Kubernetes probes
    /// when the client port uses TLS).
    #[arg(long, env = "TINYSNS_HEALTH_PORT")]
    pub health_port: Option<u16>,
    // Once resolved (`resolved_metrics_port`): the port, or none when turned off.
    #[command(flatten)]
    #[serde(flatten)]
    pub metrics: tinysns_common::metrics::MetricsArgs,
    /// Where the coordinator keeps what it decided (terms, masters, in-sync sets), so a
    /// restart continues from it instead of guessing from heartbeats. Without it the state
    /// lives in memory only (a warning is logged): fine for a throwaway local system.
    #[arg(long, env = "TINYSNS_DATA_DIR")]
    pub data_dir: Option<std::path::PathBuf>,
    /// This coordinator's place in `--peers` (0-based). Defaults to the ordinal in POD_NAME
    /// (a StatefulSet pod `...-coordinator-2` is node 2).
    #[arg(long, env = "TINYSNS_NODE_ID")]
    pub node_id: Option<u64>,
    /// The internal addresses (`host:port`) of every coordinator, the same list, in the same
    /// order, for each of them. They replicate their decisions with Raft: with 3, losing any
    /// one is not an outage. Empty: a single coordinator.
    #[arg(long, env = "TINYSNS_PEERS", value_delimiter = ',')]
    pub peers: Vec<String>,
    /// How often the leading coordinator heartbeats the others (Raft).
    #[arg(long, env = "TINYSNS_RAFT_HEARTBEAT_INTERVAL", default_value = "100ms", value_parser = parse_duration)]
    #[serde(with = "tinysns_common::cli::millis")]
    pub raft_heartbeat_interval: Duration,
    /// A coordinator that hears nothing from the leader for between this and twice this
    /// stands for election (Raft). The leader decides only within this of its last
    /// confirmation by a quorum.
    #[arg(long, env = "TINYSNS_RAFT_ELECTION_TIMEOUT", default_value = "400ms", value_parser = parse_duration)]
    #[serde(with = "tinysns_common::cli::millis")]
    pub raft_election_timeout: Duration,
    /// Number of clusters users are spread over.
    #[arg(long, env = "TINYSNS_CLUSTERS", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub clusters: u32,
    /// How often servers and synchronizers heartbeat (handed to them in every reply).
    #[arg(long, env = "TINYSNS_HEARTBEAT_INTERVAL", default_value = "250ms", value_parser = parse_duration)]
    #[serde(with = "tinysns_common::cli::millis")]
    pub heartbeat_interval: Duration,
    /// A member silent for this long is dead; its slave takes over if it was master.
    #[arg(long, env = "TINYSNS_FAILURE_TIMEOUT", default_value = "1s", value_parser = parse_duration)]
    #[serde(with = "tinysns_common::cli::millis")]
    pub failure_timeout: Duration,
    /// How long a master may take to hand over to a slave in a planned switchover (asked
    /// for, or because the master is shutting down) before it is cancelled.
    #[arg(long, env = "TINYSNS_SWITCHOVER_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    #[serde(with = "tinysns_common::cli::millis")]
    pub switchover_timeout: Duration,
    /// Print the resolved configuration as JSON and exit.
    #[arg(long)]
    #[serde(skip)]
    pub print_config: bool,
}

impl Config {
    /// The internal port, resolved.
    pub fn resolved_internal_port(&self) -> Result<u16, String> {
        tinysns_common::cli::internal_port(self.port, self.internal_port)
    }

    /// The metrics port, resolved (None: off).
    pub fn resolved_metrics_port(&self) -> Result<Option<u16>, String> {
        let mut taken = vec![("--internal-port", self.resolved_internal_port()?)];
        taken.extend(self.health_port.map(|p| ("--health-port", p)));
        self.metrics.resolve(self.port, &taken)
    }

    /// This coordinator's Raft node id and every coordinator's internal address.
    pub fn raft_peers(&self) -> Result<(u64, Vec<String>), String> {
        if self.peers.is_empty() {
            let port = self.resolved_internal_port()?;
            return Ok((self.node_id.unwrap_or(0), vec![format!("127.0.0.1:{port}")]));
        }
        let id = match self.node_id {
            Some(id) => id,
            None => u64::from(tinysns_common::cli::ordinal_from_env(
                std::env::var("POD_NAME").ok().as_deref(),
            )?),
        };
        if id >= self.peers.len() as u64 {
            return Err(format!(
                "--node-id {id} is not a place in --peers ({} coordinators)",
                self.peers.len()
            ));
        }
        Ok((id, self.peers.clone()))
    }

    pub fn validate(&self) -> Result<(), String> {
        self.resolved_internal_port()?;
        self.resolved_metrics_port()?;
        let (_, peers) = self.raft_peers()?;
        if peers.len() > 1 && self.data_dir.is_none() {
            return Err(
                "several coordinators (--peers) need --data-dir: a coordinator that forgets its Raft \
                 vote and log can break the others' agreement"
                    .into(),
            );
        }
        if self.raft_election_timeout < self.raft_heartbeat_interval * 3 {
            return Err(format!(
                "--raft-election-timeout ({:?}) must be at least three times --raft-heartbeat-interval ({:?})",
                self.raft_election_timeout, self.raft_heartbeat_interval
            ));
        }
        self.secret.load()?;
        self.tls_files.load().map_err(|e| e.to_string())?;
        if self.heartbeat_interval.is_zero() {
            return Err("--heartbeat-interval must be positive".into());
        }
        if self.failure_timeout < self.heartbeat_interval * 2 {
            return Err(format!(
                "--failure-timeout ({:?}) must be at least twice --heartbeat-interval ({:?}), \
                 or one late heartbeat would depose a healthy master",
                self.failure_timeout, self.heartbeat_interval
            ));
        }
        Ok(())
    }
}
