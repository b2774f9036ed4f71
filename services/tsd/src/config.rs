//! Command line of tsd (classic: `tsd -c <clusterId> -s <serverId> -h <host> -k <port> -p <port>`).

use crate::accounts::HashCost;
use clap::Parser;
use serde::Serialize;
use std::path::PathBuf;
use std::time::Duration;
use tinysns_common::auth::AuthMode;
use tinysns_common::secret::ClusterSecret;
use tinysns_common::tls::{Tls, TlsArgs};
use tinysns_common::topology;

#[derive(Debug, Clone, Parser)]
#[command(name = "tsd", version, about = "tinysns social server", disable_help_flag = true)]
pub struct Args {
    /// Cluster this server belongs to.
    #[arg(short = 'c', long = "cluster", env = "TINYSNS_CLUSTER", value_parser = clap::value_parser!(u32).range(1..))]
    pub cluster: u32,
    /// Server id within the cluster; derived from POD_NAME's ordinal (+1) when absent.
    #[arg(short = 's', long = "server", env = "TINYSNS_SERVER", value_parser = clap::value_parser!(u32).range(1..))]
    pub server: Option<u32>,
    /// Port to serve on; defaults to the classic layout 10000 + (cluster-1) + (server-1)*3.
    #[arg(short = 'p', long, env = "TINYSNS_PORT")]
    pub port: Option<u16>,
    /// Port of the internal API (replication, change feed): other members only, each call
    /// proven with the cluster secret. Defaults to the client port + 20000.
    #[arg(long, env = "TINYSNS_INTERNAL_PORT")]
    pub internal_port: Option<u16>,
    /// `host:port` peers reach the internal API at, when not the advertise host and the
    /// internal port (behind a NAT, a proxy, or the test harness's partition proxy).
    #[arg(long, env = "TINYSNS_INTERNAL_ADVERTISE")]
    pub internal_advertise: Option<String>,
    /// Where the store lives; defaults to ./tinysns-data/cluster<c>-server<s>.
    #[arg(long, env = "TINYSNS_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    #[command(flatten)]
    pub member: tinysns_common::cli::MemberArgs,
    #[command(flatten)]
    pub auth: tinysns_common::auth::AuthArgs,
    /// How long a session token stays valid after login (password mode; logout and a
    /// password change end it sooner).
    #[arg(long, env = "TINYSNS_SESSION_TTL", default_value = "7d", value_parser = tinysns_common::cli::parse_duration)]
    pub session_ttl: Duration,
    /// How long a member of a room this cluster hosts shows as present after it last looked
    /// at the room or spoke in it; then it shows as away and is dropped from presence.
    #[arg(long, env = "TINYSNS_ROOM_IDLE", default_value = "60s", value_parser = tinysns_common::cli::parse_duration)]
    pub room_idle: Duration,
    /// Argon2id memory cost of new password hashes, in KiB (stored hashes keep theirs).
    #[arg(long, env = "TINYSNS_ARGON2_MEMORY_KIB", default_value_t = HashCost::DEFAULT.memory_kib,
          value_parser = clap::value_parser!(u32).range(8..=4 * 1024 * 1024))]
    pub argon2_memory_kib: u32,
    /// Argon2id passes over memory for new password hashes.
    #[arg(long, env = "TINYSNS_ARGON2_ITERATIONS", default_value_t = HashCost::DEFAULT.iterations,
          value_parser = clap::value_parser!(u32).range(1..=64))]
    pub argon2_iterations: u32,
    /// Also serve the gRPC health service, in plaintext, on this port (for Kubernetes probes
    /// when the client port uses TLS).
    #[arg(long, env = "TINYSNS_HEALTH_PORT")]
    pub health_port: Option<u16>,
    #[command(flatten)]
    pub metrics: tinysns_common::metrics::MetricsArgs,
    /// Longest a unary call (or the opening of a stream) may take before the server gives up.
    #[arg(long, env = "TINYSNS_REQUEST_TIMEOUT", default_value = "30s", value_parser = tinysns_common::cli::parse_duration)]
    pub request_timeout: Duration,
    /// An in-sync slave that keeps a write waiting this long is dropped from the in-sync set
    /// (once the coordinator has recorded that) and writes go on without it; it rejoins when
    /// it has caught up.
    #[arg(long, env = "TINYSNS_REPLICA_TIMEOUT", default_value = "2s", value_parser = tinysns_common::cli::parse_duration)]
    pub replica_timeout: Duration,
    /// Entries kept in the log behind the commit point (and behind what the synchronizer
    /// published) when its front is dropped. A slave or stream further behind is brought up
    /// from a snapshot of the whole store instead.
    #[arg(long, env = "TINYSNS_LOG_RETAIN", default_value_t = 100_000)]
    pub log_retain: u64,
    /// How often the commit position is stored (with a write) and the log's front
    /// considered for compaction. A restart publishes nothing past the stored position until
    /// it is replicated again, so a longer interval only delays streams after a restart.
    #[arg(long, env = "TINYSNS_COMMIT_POINT_INTERVAL", default_value = "100ms", value_parser = tinysns_common::cli::parse_duration)]
    pub commit_point_interval: Duration,
    /// How often a master does its background chores (`chores`): numbering the posts waiting
    /// in the topics whose home is its cluster (the longest a topic post waits for its
    /// number, besides the write), and moving account deletions through their phases.
    #[arg(long, env = "TINYSNS_CHORE_INTERVAL", default_value = "20ms", value_parser = tinysns_common::cli::parse_duration)]
    pub chore_interval: Duration,
    /// MiB per second a master sends a snapshot at (0: as fast as it goes). Sending, and the
    /// slave's install, compete with the writes for disk and CPU.
    #[arg(long, env = "TINYSNS_SNAPSHOT_RATE_MIB", default_value_t = 64)]
    pub snapshot_rate_mib: u64,
    /// How long a stopping server waits for open calls (timeline streams) to end before it
    /// exits anyway.
    #[arg(long, env = "TINYSNS_SHUTDOWN_GRACE", default_value = "5s", value_parser = tinysns_common::cli::parse_duration)]
    pub shutdown_grace: Duration,
    /// On SIGTERM the server first leaves its cluster (a master hands over to an in-sync
    /// slave; a slave leaves the in-sync set so no write waits for it), then stops. It stops
    /// anyway if the coordinator has not let it go within this time (a second signal stops
    /// it at once).
    #[arg(long, env = "TINYSNS_LEAVE_TIMEOUT", default_value = "10s", value_parser = tinysns_common::cli::parse_duration)]
    pub leave_timeout: Duration,
    /// Shift this server's wall clock by this many milliseconds (negative: behind). For
    /// rehearsing clock skew and steps: the wall clock is only shown, never compared.
    #[arg(long, env = "TINYSNS_CLOCK_SKEW_MS", default_value_t = 0, allow_hyphen_values = true)]
    pub clock_skew_ms: i64,
    /// Print the resolved configuration as JSON and exit.
    #[arg(long)]
    pub print_config: bool,
    /// Print help.
    #[arg(long, action = clap::ArgAction::Help)]
    pub help: Option<bool>,
}

/// The resolved configuration.
#[derive(Debug, Clone, Serialize)]
pub struct Config {
    pub cluster: u32,
    pub server: u32,
    pub coordinators: Vec<String>,
    /// The coordinators' members' API.
    pub coordinators_internal: Vec<String>,
    pub port: u16,
    pub bind: String,
    pub advertise: String,
    pub internal_port: u16,
    /// Loopback unless there is a cluster secret.
    pub internal_bind: String,
    pub internal_advertise: String,
    pub cluster_secret_file: Option<PathBuf>,
    #[serde(skip)]
    pub secret: Option<ClusterSecret>,
    pub data_dir: PathBuf,
    pub auth: AuthMode,
    #[serde(with = "tinysns_common::cli::millis")]
    pub session_ttl: Duration,
    #[serde(with = "tinysns_common::cli::millis")]
    pub room_idle: Duration,
    pub argon2: HashCost,
    #[serde(with = "tinysns_common::cli::millis")]
    pub request_timeout: Duration,
    #[serde(with = "tinysns_common::cli::millis")]
    pub replica_timeout: Duration,
    pub log_retain: u64,
    #[serde(with = "tinysns_common::cli::millis")]
    pub commit_point_interval: Duration,
    #[serde(with = "tinysns_common::cli::millis")]
    pub chore_interval: Duration,
    pub snapshot_rate_mib: u64,
    #[serde(with = "tinysns_common::cli::millis")]
    pub shutdown_grace: Duration,
    #[serde(with = "tinysns_common::cli::millis")]
    pub leave_timeout: Duration,
    pub clock_skew_ms: i64,
    pub health_port: Option<u16>,
    /// The Prometheus endpoint (plaintext HTTP on `bind`); None: off.
    pub metrics_port: Option<u16>,
    /// The PEM files (paths).
    pub tls_files: TlsArgs,
    #[serde(skip)]
    pub tls: Option<Tls>,
}

impl Config {
    /// Bytes per second a snapshot is sent at (`None`: unlimited).
    pub fn snapshot_rate(&self) -> Option<u64> {
        (self.snapshot_rate_mib > 0).then(|| self.snapshot_rate_mib.saturating_mul(1024 * 1024))
    }
}

impl Args {
    pub fn resolve(self) -> Result<Config, String> {
        let server = match self.server {
            Some(s) => s,
            None => tinysns_common::cli::ordinal_from_env(std::env::var("POD_NAME").ok().as_deref())? + 1,
        };
        let port = match self.port {
            Some(p) => p,
            None => topology::classic_server_port(self.cluster, server, 3),
        };
        let data_dir = self
            .data_dir
            .unwrap_or_else(|| PathBuf::from(format!("tinysns-data/cluster{}-server{server}", self.cluster)));
        let internal_port = tinysns_common::cli::internal_port(port, self.internal_port)?;
        let mut taken = vec![("--internal-port", internal_port)];
        taken.extend(self.health_port.map(|p| ("--health-port", p)));
        let metrics_port = self.metrics.resolve(port, &taken)?;
        let secret = self.member.secret.load()?;
        if self.auth.auth == AuthMode::Password && secret.is_none() {
            return Err(
                "--auth password needs a cluster secret (--cluster-secret-file): without one \
                        anybody on the host could write into replicas; use --auth open for a classic \
                        local system"
                    .into(),
            );
        }
        if self.session_ttl < Duration::from_secs(1) {
            return Err("--session-ttl must be at least 1s".into());
        }
        if self.room_idle < Duration::from_secs(1) {
            return Err("--room-idle must be at least 1s".into());
        }
        if self.replica_timeout < Duration::from_millis(100) {
            return Err("--replica-timeout must be at least 100ms, or a slave would be dropped from the in-sync set on every fsync stall".into());
        }
        Ok(Config {
            cluster: self.cluster,
            server,
            coordinators: self.member.coordinators()?,
            coordinators_internal: self.member.coordinators_internal()?,
            port,
            advertise: self.member.advertise(port),
            bind: self.member.bind.clone(),
            internal_port,
            internal_bind: tinysns_common::cli::internal_bind(&self.member.bind, secret.as_ref()),
            internal_advertise: self
                .internal_advertise
                .clone()
                .unwrap_or_else(|| self.member.advertise(internal_port)),
            cluster_secret_file: self.member.secret.cluster_secret_file.clone(),
            secret,
            data_dir,
            auth: self.auth.auth,
            session_ttl: self.session_ttl,
            room_idle: self.room_idle,
            argon2: HashCost {
                memory_kib: self.argon2_memory_kib,
                iterations: self.argon2_iterations,
            },
            request_timeout: self.request_timeout,
            replica_timeout: self.replica_timeout,
            log_retain: self.log_retain,
            commit_point_interval: self.commit_point_interval,
            chore_interval: self.chore_interval.max(Duration::from_millis(1)),
            snapshot_rate_mib: self.snapshot_rate_mib,
            shutdown_grace: self.shutdown_grace,
            leave_timeout: self.leave_timeout,
            clock_skew_ms: self.clock_skew_ms,
            health_port: self.health_port,
            metrics_port,
            tls: self.member.tls.load().map_err(|e| e.to_string())?,
            tls_files: self.member.tls.clone(),
        })
    }
}

/// What `main` does with the command line.
pub struct Resolved {
    pub config: Config,
    /// Set when only the configuration is to be printed.
    pub print_only: Option<Config>,
}

impl Args {
    pub fn resolve_checked(self) -> Result<Resolved, String> {
        let print = self.print_config;
        let config = self.resolve()?;
        Ok(Resolved {
            print_only: print.then(|| config.clone()),
            config,
        })
    }
}
