//! The gateway's Prometheus metrics (`tinysns_gateway_*`), served by
//! `tinysns_common::metrics` on the metrics port: requests by outcome, refusals by the rate
//! limit, open live streams, what they delivered and how often they reconnected.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Outcome {
    /// `2xx`, `4xx` or `5xx`.
    pub class: String,
}

pub struct Metrics {
    registry: Registry,
    pub requests: Family<Outcome, Counter>,
    pub rate_limited: Counter,
    pub live_streams: Gauge,
    pub live_events: Counter,
    pub live_reconnects: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("tinysns_gateway");
        let requests = Family::<Outcome, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests answered, by status class",
            requests.clone(),
        );
        let rate_limited = Counter::default();
        registry.register(
            "rate_limited",
            "Requests refused by a session's rate limit",
            rate_limited.clone(),
        );
        let live_streams = Gauge::default();
        registry.register("live_streams", "Live WebSockets open", live_streams.clone());
        let live_events = Counter::default();
        registry.register("live_events", "Events sent on live WebSockets", live_events.clone());
        let live_reconnects = Counter::default();
        registry.register(
            "live_reconnects",
            "Times a live stream lost its server and reconnected (failovers)",
            live_reconnects.clone(),
        );
        Self {
            registry,
            requests,
            rate_limited,
            live_streams,
            live_events,
            live_reconnects,
        }
    }
}

impl Metrics {
    /// Counts one answered request by its status.
    pub fn answered(&self, status: u16) {
        let class = format!("{}xx", status / 100);
        self.requests.get_or_create(&Outcome { class }).inc();
    }
}

impl tinysns_common::metrics::Source for Metrics {
    fn registry(&self) -> &Registry {
        &self.registry
    }
}
