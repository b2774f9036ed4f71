//! Prometheus metrics: the one small HTTP server every tinysns process runs beside its gRPC
//! ports, serving `GET /metrics` (OpenMetrics text) and `GET /healthz`.
//!
//! Each crate defines its own metrics in a `metrics.rs` (counters, gauges and histograms
//! registered into one [`Registry`] with the prefix `tinysns_<role>`) and hands them by
//! `Arc` to where events happen; incrementing one is an atomic add. Values that are state
//! rather than events (a role, a log position, open streams) are read when a scrape comes
//! in ([`Source::refresh`]), so keeping them costs nothing between scrapes.
//!
//! The endpoint is **plaintext HTTP**, also when the gRPC ports use TLS: Prometheus scrapes
//! inside the cluster without TLS, and nothing it shows is secret (counts, positions and
//! roles; no user data, no credentials). It listens on the process' `--bind` address, on
//! `--metrics-port` (default: the client port + [`METRICS_PORT_OFFSET`]; `0` turns it off).

use crate::shutdown::Shutdown;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::registry::Registry;
use std::net::SocketAddr;
use std::sync::Arc;

/// The content type of `/metrics` (what prometheus-client's text encoder writes).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The metrics endpoint listens on the client port plus this, unless told otherwise.
pub const METRICS_PORT_OFFSET: u16 = 30000;

/// The metrics flag every service binary shares.
#[derive(Debug, Clone, Default, clap::Args, serde::Serialize)]
pub struct MetricsArgs {
    /// Port of the Prometheus endpoint (`/metrics`, `/healthz`): plaintext HTTP on --bind,
    /// for scrapers inside the cluster. Defaults to the client port + 30000; 0 turns it off.
    #[arg(long, env = "TINYSNS_METRICS_PORT")]
    pub metrics_port: Option<u16>,
}

impl MetricsArgs {
    /// The port to serve metrics on (`None`: off), given the process' client port and the
    /// other ports it listens on (`(flag, port)`, so a clash names the flag).
    pub fn resolve(&self, client_port: u16, others: &[(&str, u16)]) -> Result<Option<u16>, String> {
        metrics_port(client_port, self.metrics_port, others)
    }
}

/// The metrics port: as given (`0`: off), or the client port + [`METRICS_PORT_OFFSET`]. It
/// must differ from the client port and from every port in `others`.
pub fn metrics_port(client_port: u16, given: Option<u16>, others: &[(&str, u16)]) -> Result<Option<u16>, String> {
    let port = match given {
        Some(0) => return Ok(None),
        Some(port) => port,
        None => client_port.checked_add(METRICS_PORT_OFFSET).ok_or_else(|| {
            format!(
                "port {client_port} leaves no room for the default metrics port (+{METRICS_PORT_OFFSET}); \
                 set --metrics-port (0 turns metrics off)"
            )
        })?,
    };
    if port == client_port {
        return Err(format!("the metrics port must differ from the client port ({port})"));
    }
    if let Some((flag, _)) = others.iter().find(|(_, other)| *other == port) {
        return Err(format!(
            "the metrics port {port} is also {flag}; set --metrics-port to another port (0 turns metrics off)"
        ));
    }
    Ok(Some(port))
}

/// What a scrape reads: a process' registry, and how to bring its state gauges up to date.
pub trait Source: Send + Sync + 'static {
    fn registry(&self) -> &Registry;

    /// Sets the gauges that mirror state (read just before encoding). Must be cheap and
    /// must not block for long: it runs on the async runtime.
    fn refresh(&self) {}
}

/// The source's registry in OpenMetrics text format, state gauges refreshed first.
pub fn encode(source: &dyn Source) -> Result<String, std::fmt::Error> {
    source.refresh();
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, source.registry())?;
    Ok(out)
}

async fn metrics_handler(State(source): State<Arc<dyn Source>>) -> impl IntoResponse {
    match encode(source.as_ref()) {
        Ok(body) => (StatusCode::OK, [(header::CONTENT_TYPE, CONTENT_TYPE)], body).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// The HTTP routes, separate from [`serve`] so tests can call them without a socket.
pub fn router(source: Arc<dyn Source>) -> Router {
    Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(source)
}

#[derive(Debug, thiserror::Error)]
#[error("cannot serve metrics on {address}: {source}")]
pub struct MetricsError {
    address: String,
    source: std::io::Error,
}

/// Listens on `bind:port` and serves the routes there until `shutdown`. Binds before it
/// returns, so a port already taken fails the start of the process, not a scrape later.
pub async fn serve(
    bind: &str,
    port: u16,
    source: Arc<dyn Source>,
    shutdown: Shutdown,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), MetricsError> {
    let address = format!("{bind}:{port}");
    let error = |source| MetricsError {
        address: address.clone(),
        source,
    };
    let listener = tokio::net::TcpListener::bind(&address).await.map_err(error)?;
    let local = listener.local_addr().map_err(error)?;
    tracing::info!(address = %local, "serving Prometheus metrics on /metrics (plaintext HTTP)");
    Ok((local, serve_on(listener, source, shutdown)))
}

/// Serves the routes on an already bound listener until `shutdown`.
pub fn serve_on(
    listener: tokio::net::TcpListener,
    source: Arc<dyn Source>,
    shutdown: Shutdown,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let served = axum::serve(listener, router(source))
            .with_graceful_shutdown(async move { shutdown.wait().await })
            .await;
        if let Err(error) = served {
            tracing::error!(%error, "the metrics endpoint stopped");
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::metrics::counter::Counter;
    use prometheus_client::metrics::gauge::Gauge;
    use std::sync::atomic::{AtomicI64, Ordering};
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    struct Fixture {
        registry: Registry,
        events: Counter,
        state: Gauge,
        /// What `refresh` copies into `state`.
        truth: AtomicI64,
    }

    impl Fixture {
        fn new() -> Self {
            let mut registry = Registry::with_prefix("tinysns_test");
            let events = Counter::default();
            let state = Gauge::default();
            registry.register("events", "Events", events.clone());
            registry.register("state", "State read at scrape time", state.clone());
            Self {
                registry,
                events,
                state,
                truth: AtomicI64::new(0),
            }
        }
    }

    impl Source for Fixture {
        fn registry(&self) -> &Registry {
            &self.registry
        }

        fn refresh(&self) {
            self.state.set(self.truth.load(Ordering::Relaxed));
        }
    }

    async fn get(addr: SocketAddr, path: &str) -> String {
        let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connects");
        let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.expect("writes");
        let mut response = String::new();
        stream.read_to_string(&mut response).await.expect("reads");
        response
    }

    #[test]
    fn the_default_port_is_the_client_port_plus_the_offset_and_zero_turns_it_off() {
        assert_eq!(metrics_port(9000, None, &[]), Ok(Some(39000)));
        assert_eq!(
            metrics_port(10000, None, &[("--internal-port", 30000)]),
            Ok(Some(40000))
        );
        assert_eq!(metrics_port(10000, Some(12345), &[]), Ok(Some(12345)));
        assert_eq!(metrics_port(10000, Some(0), &[]), Ok(None));
        assert_eq!(
            MetricsArgs { metrics_port: Some(0) }.resolve(u16::MAX, &[]),
            Ok(None),
            "off needs no room"
        );
    }

    #[test]
    fn a_port_that_overflows_or_clashes_is_a_clear_error() {
        let overflow = metrics_port(40000, None, &[]).unwrap_err();
        assert!(overflow.contains("--metrics-port"), "{overflow}");
        let same = metrics_port(10000, Some(10000), &[]).unwrap_err();
        assert!(same.contains("client port"), "{same}");
        let clash = metrics_port(10000, None, &[("--internal-port", 40000)]).unwrap_err();
        assert!(clash.contains("--internal-port"), "{clash}");
        let clash = metrics_port(10000, Some(9090), &[("--health-port", 9090)]).unwrap_err();
        assert!(clash.contains("--health-port"), "{clash}");
    }

    #[tokio::test]
    async fn serves_metrics_with_state_read_at_scrape_time_and_healthz_until_shutdown() {
        let fixture = Arc::new(Fixture::new());
        fixture.events.inc_by(3);
        fixture.truth.store(7, Ordering::Relaxed);
        let shutdown = Shutdown::new();
        let (addr, server) = serve("127.0.0.1", 0, fixture.clone(), shutdown.clone())
            .await
            .expect("binds");

        let health = get(addr, "/healthz").await;
        assert!(health.starts_with("HTTP/1.1 200"), "{health}");
        assert!(health.ends_with("ok"), "{health}");
        let scraped = get(addr, "/metrics").await;
        assert!(scraped.starts_with("HTTP/1.1 200"), "{scraped}");
        assert!(scraped.contains(CONTENT_TYPE), "{scraped}");
        assert!(scraped.contains("tinysns_test_events_total 3\n"), "{scraped}");
        assert!(scraped.contains("tinysns_test_state 7\n"), "{scraped}");
        assert!(scraped.trim_end().ends_with("# EOF"), "{scraped}");
        fixture.truth.store(8, Ordering::Relaxed);
        assert!(get(addr, "/metrics").await.contains("tinysns_test_state 8\n"));
        assert!(get(addr, "/nope").await.starts_with("HTTP/1.1 404"));

        shutdown.trigger();
        tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .expect("stops after shutdown")
            .expect("did not panic");
    }

    #[tokio::test]
    async fn a_port_in_use_fails_at_start() {
        let taken = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("binds");
        let port = taken.local_addr().expect("has an address").port();
        let error = serve("127.0.0.1", port, Arc::new(Fixture::new()), Shutdown::new())
            .await
            .expect_err("the port is taken");
        assert!(error.to_string().contains(&format!("127.0.0.1:{port}")), "{error}");
    }
}
