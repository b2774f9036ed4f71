//! Command line of the synchronizer (classic: `synchronizer -h <host> -k <port> -p <port> -i <id>`).

use clap::Parser;
use serde::Serialize;
use tinysns_common::topology;

#[derive(Debug, Clone, Parser)]
#[command(
    name = "synchronizer",
    version,
    about = "tinysns cross-cluster synchronizer",
    disable_help_flag = true
)]
pub struct Args {
    /// Synchronizer id; its cluster is ((id - 1) % clusters) + 1. Derived from POD_NAME's
    /// ordinal with --cluster and --clusters when absent.
    #[arg(short = 'i', long = "id", env = "TINYSNS_SYNCH_ID", value_parser = clap::value_parser!(u32).range(1..))]
    pub id: Option<u32>,
    /// With POD_NAME: the cluster this synchronizer serves.
    #[arg(long, env = "TINYSNS_CLUSTER", value_parser = clap::value_parser!(u32).range(1..))]
    pub cluster: Option<u32>,
    /// With POD_NAME: the number of clusters.
    #[arg(long, env = "TINYSNS_CLUSTERS", value_parser = clap::value_parser!(u32).range(1..))]
    pub clusters: Option<u32>,
    /// Port for health checks; defaults to 9000 + id.
    #[arg(short = 'p', long, env = "TINYSNS_PORT")]
    pub port: Option<u16>,
    #[command(flatten)]
    pub metrics: tinysns_common::metrics::MetricsArgs,
    /// RabbitMQ URL.
    #[arg(long, env = "AMQP_URL", default_value = "amqp://guest:guest@127.0.0.1:5672/%2f")]
    pub amqp_url: String,
    /// PEM CA certificate(s) to check an `amqps://` broker against, besides the system's.
    #[arg(long, env = "TINYSNS_AMQP_CA_FILE", value_name = "FILE")]
    pub amqp_ca_file: Option<std::path::PathBuf>,
    /// Prefix of the exchanges and queues on the broker, so deployments can share a broker.
    #[arg(long, env = "TINYSNS_AMQP_NAMESPACE", default_value = "tinysns")]
    pub amqp_namespace: String,
    /// Longest wait for the broker to accept a connection and set up channels and queues
    /// (a broker that is still starting can accept the socket and then say nothing).
    #[arg(
        long,
        env = "TINYSNS_AMQP_CONNECT_TIMEOUT",
        default_value = "10s",
        value_parser = tinysns_common::cli::parse_duration
    )]
    pub amqp_connect_timeout: std::time::Duration,
    /// AMQP heartbeat asked of the broker: a connection silent for two of these is taken as
    /// lost, and work resumes on a new one (a `heartbeat=` in the URL wins).
    #[arg(
        long,
        env = "TINYSNS_AMQP_HEARTBEAT",
        default_value = "10s",
        value_parser = tinysns_common::cli::parse_duration
    )]
    pub amqp_heartbeat: std::time::Duration,
    /// Longest wait for the broker to confirm a published message; past it the connection is
    /// taken as broken and the unconfirmed changes are published again on a new one.
    #[arg(
        long,
        env = "TINYSNS_AMQP_CONFIRM_TIMEOUT",
        default_value = "30s",
        value_parser = tinysns_common::cli::parse_duration
    )]
    pub amqp_confirm_timeout: std::time::Duration,
    /// How long the consumer may receive nothing while its queue holds ready messages before
    /// it is taken as stalled and consumes again on a new connection.
    #[arg(
        long,
        env = "TINYSNS_CONSUMER_STALL_TIMEOUT",
        default_value = "30s",
        value_parser = tinysns_common::cli::parse_duration
    )]
    pub consumer_stall_timeout: std::time::Duration,
    /// On SIGTERM the synchronizer first leaves (a master synchronizer is replaced at once),
    /// then stops; it stops anyway after this long without the coordinator's answer.
    #[arg(long, env = "TINYSNS_LEAVE_TIMEOUT", default_value = "5s", value_parser = tinysns_common::cli::parse_duration)]
    pub leave_timeout: std::time::Duration,
    /// Queue type of the changes' queues: `quorum` (replicated, for a broker of 3 nodes) or
    /// `classic`. Fixed when the queues are created.
    #[arg(long, env = "TINYSNS_AMQP_QUEUE_TYPE", value_enum, default_value_t = crate::bus::QueueType::Classic)]
    pub amqp_queue_type: crate::bus::QueueType,
    #[command(flatten)]
    pub member: tinysns_common::cli::MemberArgs,
    #[command(flatten)]
    pub auth: tinysns_common::auth::AuthArgs,
    /// Print the resolved configuration as JSON (password masked) and exit.
    #[arg(long)]
    pub print_config: bool,
    /// Print help.
    #[arg(long, action = clap::ArgAction::Help)]
    pub help: Option<bool>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Config {
    pub id: u32,
    /// The coordinators' members' API (the synchronizer needs nothing else of them).
    pub coordinators_internal: Vec<String>,
    pub cluster_secret_file: Option<std::path::PathBuf>,
    #[serde(skip)]
    pub secret: Option<tinysns_common::secret::ClusterSecret>,
    pub auth: tinysns_common::auth::AuthMode,
    /// The PEM files (paths): the synchronizer presents its certificate to tsd and the
    /// coordinator and checks theirs.
    pub tls_files: tinysns_common::tls::TlsArgs,
    #[serde(skip)]
    pub tls: Option<tinysns_common::tls::Tls>,
    pub port: u16,
    pub bind: String,
    pub advertise: String,
    /// The Prometheus endpoint (plaintext HTTP on `bind`); None: off.
    pub metrics_port: Option<u16>,
    #[serde(serialize_with = "masked")]
    pub amqp_url: String,
    pub amqp_ca_file: Option<std::path::PathBuf>,
    /// The PEM text of `amqp_ca_file`.
    #[serde(skip)]
    pub amqp_ca: Option<String>,
    pub amqp_namespace: String,
    #[serde(with = "tinysns_common::cli::millis")]
    pub amqp_connect_timeout: std::time::Duration,
    #[serde(with = "tinysns_common::cli::millis")]
    pub amqp_heartbeat: std::time::Duration,
    #[serde(with = "tinysns_common::cli::millis")]
    pub amqp_confirm_timeout: std::time::Duration,
    #[serde(with = "tinysns_common::cli::millis")]
    pub consumer_stall_timeout: std::time::Duration,
    pub amqp_queue_type: crate::bus::QueueType,
    #[serde(with = "tinysns_common::cli::millis")]
    pub leave_timeout: std::time::Duration,
}

fn masked<S: serde::Serializer>(url: &str, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&mask_password(url))
}

/// `amqp://user:secret@host` -> `amqp://user:***@host`, for logs and --print-config.
pub fn mask_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let Some((userinfo, host)) = rest.rsplit_once('@') else {
        return url.to_string();
    };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_string(),
    }
}

impl Args {
    pub fn resolve(self) -> Result<Config, String> {
        let id = match (self.id, self.cluster, self.clusters) {
            (Some(id), _, _) => id,
            (None, Some(cluster), Some(clusters)) => {
                if cluster > clusters {
                    return Err(format!("--cluster {cluster} is greater than --clusters {clusters}"));
                }
                let ordinal = tinysns_common::cli::ordinal_from_env(std::env::var("POD_NAME").ok().as_deref())?;
                topology::synchronizer_id(cluster, ordinal, clusters)
            }
            _ => return Err("give -i <id>, or --cluster and --clusters with POD_NAME set".into()),
        };
        let port = self.port.unwrap_or_else(|| topology::classic_synchronizer_port(id));
        let metrics_port = self.metrics.resolve(port, &[])?;
        crate::bus::with_heartbeat(&self.amqp_url, self.amqp_heartbeat).map_err(|e| e.to_string())?;
        for (flag, value) in [
            ("--amqp-confirm-timeout", self.amqp_confirm_timeout),
            ("--consumer-stall-timeout", self.consumer_stall_timeout),
        ] {
            if value < std::time::Duration::from_secs(1) {
                return Err(format!("{flag} must be at least 1s"));
            }
        }
        Ok(Config {
            id,
            coordinators_internal: self.member.coordinators_internal()?,
            cluster_secret_file: self.member.secret.cluster_secret_file.clone(),
            secret: match (self.member.secret.load()?, self.auth.auth) {
                (None, tinysns_common::auth::AuthMode::Password) => {
                    return Err("--auth password needs a cluster secret (--cluster-secret-file); \
                                use --auth open for a classic local system"
                        .into());
                }
                (secret, _) => secret,
            },
            auth: self.auth.auth,
            tls: self.member.tls.load().map_err(|e| e.to_string())?,
            tls_files: self.member.tls.clone(),
            port,
            bind: self.member.bind.clone(),
            advertise: self.member.advertise(port),
            metrics_port,
            amqp_url: self.amqp_url,
            amqp_ca: self
                .amqp_ca_file
                .as_deref()
                .map(|path| std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display())))
                .transpose()?,
            amqp_ca_file: self.amqp_ca_file,
            amqp_namespace: self.amqp_namespace,
            amqp_connect_timeout: self.amqp_connect_timeout,
            amqp_heartbeat: self.amqp_heartbeat,
            amqp_confirm_timeout: self.amqp_confirm_timeout,
            consumer_stall_timeout: self.consumer_stall_timeout,
            leave_timeout: self.leave_timeout,
            amqp_queue_type: self.amqp_queue_type,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_masked() {
        assert_eq!(mask_password("amqp://u:p@h:5672/%2f"), "amqp://u:***@h:5672/%2f");
        assert_eq!(mask_password("amqp://h:5672"), "amqp://h:5672");
    }

    #[test]
    fn a_bad_amqp_url_is_refused_at_start() {
        let args = |url: &str| {
            Args::try_parse_from(["synchronizer", "-i", "1", "--amqp-url", url, "--auth", "open"]).expect("parses")
        };
        let error = args("http://nowhere").resolve().expect_err("not an AMQP URL");
        assert!(error.contains("bad AMQP URL"), "{error}");
        assert!(args("amqp://u:p@h:5672/%2f").resolve().is_ok());
        let zero = Args::try_parse_from([
            "synchronizer",
            "-i",
            "1",
            "--auth",
            "open",
            "--consumer-stall-timeout",
            "0s",
        ])
        .expect("parses");
        assert!(zero.resolve().expect_err("too short").contains("at least 1s"));
    }
}
