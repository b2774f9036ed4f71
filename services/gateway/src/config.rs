//! The gateway's flags, checked once at start.

use std::time::Duration;
use tinysns_common::metrics::MetricsArgs;
use tinysns_common::tls::TlsArgs;

#[derive(Debug, Clone, clap::Parser, serde::Serialize)]
#[command(
    name = "tinysns-gateway",
    version,
    about = "tinysns HTTP/WebSocket gateway and web UI"
)]
pub struct Args {
    /// Address to listen on.
    #[arg(long, env = "TINYSNS_BIND", default_value = "0.0.0.0")]
    pub bind: String,
    /// HTTP(S) port of the API, the live WebSocket and the web UI.
    #[arg(long, env = "TINYSNS_PORT", default_value_t = 8080)]
    pub port: u16,
    /// Coordinator host; with several coordinators, all of them, comma-separated, each `host`
    /// or `host:port`.
    #[arg(long, env = "TINYSNS_COORDINATOR_HOST", default_value = "127.0.0.1")]
    pub coordinator_host: String,
    /// Coordinator port (for hosts given without one).
    #[arg(long, env = "TINYSNS_COORDINATOR_PORT", default_value_t = 9000)]
    pub coordinator_port: u16,
    /// HTTPS: --tls-cert and --tls-key are the gateway's own certificate; --tls-ca is the CA
    /// that signs the coordinators' and servers' certificates (their client ports use TLS).
    #[command(flatten)]
    #[serde(skip)]
    pub tls: TlsArgs,
    #[command(flatten)]
    pub metrics: MetricsArgs,
    /// Largest request body accepted, in bytes.
    #[arg(long, env = "TINYSNS_MAX_BODY", default_value_t = 16 * 1024)]
    pub max_body: usize,
    /// Requests per second each session may make (WebSocket opens included).
    #[arg(long, env = "TINYSNS_SESSION_RATE", default_value_t = 20)]
    pub session_rate: u32,
    /// Requests a session may make at once above its rate.
    #[arg(long, env = "TINYSNS_SESSION_BURST", default_value_t = 60)]
    pub session_burst: u32,
    /// How long a browser keeps its session cookie.
    #[arg(long, env = "TINYSNS_SESSION_MAX_AGE", default_value = "7d", value_parser = humantime::parse_duration)]
    #[serde(with = "tinysns_common::cli::millis")]
    pub session_max_age: Duration,
    /// How long a live stream keeps reconnecting before it tells the page it has closed.
    #[arg(long, env = "TINYSNS_LIVE_RETRY_FOR", default_value = "60s", value_parser = humantime::parse_duration)]
    #[serde(with = "tinysns_common::cli::millis")]
    pub live_retry_for: Duration,
    /// How often the live WebSocket pings the browser (a dead peer is dropped after two).
    #[arg(long, env = "TINYSNS_LIVE_PING", default_value = "20s", value_parser = humantime::parse_duration)]
    #[serde(with = "tinysns_common::cli::millis")]
    pub live_ping: Duration,
    /// How often a live WebSocket whose page shows a room looks at who is present there.
    #[arg(long, env = "TINYSNS_LIVE_PRESENCE_EVERY", default_value = "5s", value_parser = humantime::parse_duration)]
    #[serde(with = "tinysns_common::cli::millis")]
    pub live_presence_every: Duration,
    /// Live WebSockets one session may hold open at once (its tabs and devices' pages).
    #[arg(long, env = "TINYSNS_MAX_LIVE_PER_SESSION", default_value_t = 8)]
    pub max_live_per_session: u32,
    /// Proxies (addresses or CIDR blocks, comma-separated) in front of the gateway, such as
    /// the Ingress controller's pods: from them `X-Forwarded-For` names the client, whose
    /// address the login rate limit counts. Empty: every peer is the client.
    #[arg(long, env = "TINYSNS_TRUSTED_PROXIES", default_value = "")]
    pub trusted_proxies: String,
    /// Print the resolved configuration as JSON and exit.
    #[arg(long)]
    #[serde(skip)]
    pub print_config: bool,
}

impl Args {
    /// Checks the flags together.
    pub fn check(&self) -> Result<(), String> {
        if self.session_rate == 0 || self.session_burst == 0 {
            return Err("--session-rate and --session-burst must be at least 1".into());
        }
        if !(256..=16 * 1024 * 1024).contains(&self.max_body) {
            return Err("--max-body must be between 256 bytes and 16 MiB".into());
        }
        if self.max_live_per_session == 0 {
            return Err("--max-live-per-session must be at least 1".into());
        }
        if self.live_presence_every < Duration::from_millis(500) {
            return Err("--live-presence-every must be at least 500ms".into());
        }
        if self.live_ping.is_zero() {
            return Err("--live-ping must be more than 0".into());
        }
        self.coordinators()?;
        crate::client_address::TrustedProxies::parse(&self.trusted_proxies)?;
        self.metrics.resolve(self.port, &[])?;
        Ok(())
    }

    /// `host:port` of each coordinator.
    pub fn coordinators(&self) -> Result<Vec<String>, String> {
        tinysns_common::coordinators::parse_addresses(&self.coordinator_host, self.coordinator_port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn defaults_are_valid_and_bad_values_are_named() {
        let args = Args::parse_from(["tinysns-gateway"]);
        assert_eq!(args.check(), Ok(()));
        for (flags, problem) in [
            (vec!["--session-rate", "0"], "--session-rate"),
            (vec!["--max-body", "10"], "--max-body"),
            (vec!["--live-ping", "0s"], "--live-ping"),
            (vec!["--max-live-per-session", "0"], "--max-live-per-session"),
            (vec!["--trusted-proxies", "10.0.0.0/8,nope"], "--trusted-proxies"),
            (vec!["--metrics-port", "8080"], "metrics port"),
        ] {
            let args = Args::parse_from(std::iter::once("tinysns-gateway").chain(flags));
            let error = args.check().unwrap_err();
            assert!(error.contains(problem), "{error}");
        }
    }
}
