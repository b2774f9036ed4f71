//! The operator's Prometheus metrics. They are served, with `/healthz` for the Deployment's
//! probes, by the endpoint every tinysns process shares (`tinysns_common::metrics`).

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Outcome label of a reconciliation.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: String,
}

/// The operator's metrics.
pub struct Metrics {
    registry: Registry,
    reconciliations: Family<ResultLabels, Counter>,
    duration: Histogram,
    leader: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("tinysns_operator");
        let reconciliations = Family::<ResultLabels, Counter>::default();
        // 1 ms .. ~16 s: a reconcile is a handful of API round trips.
        let duration = Histogram::new(exponential_buckets(0.001, 2.0, 15));
        registry.register(
            "reconciliations",
            "Reconciliations by result (ok, invalid_spec, paused, error)",
            reconciliations.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Time spent in one reconciliation",
            duration.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 while this replica holds the leader lease and reconciles, 0 while it stands by",
            leader.clone(),
        );
        Self {
            registry,
            reconciliations,
            duration,
            leader,
        }
    }

    /// Counts one reconciliation and its duration.
    pub fn observe(&self, result: &str, elapsed: Duration) {
        self.reconciliations
            .get_or_create(&ResultLabels {
                result: result.to_owned(),
            })
            .inc();
        self.duration.observe(elapsed.as_secs_f64());
    }

    /// Whether this replica leads.
    pub fn set_leader(&self, leading: bool) {
        self.leader.set(i64::from(leading));
    }
}

/// Scrapes read the registry through the endpoint every tinysns process shares
/// (`tinysns_common::metrics`).
impl tinysns_common::metrics::Source for Metrics {
    fn registry(&self) -> &Registry {
        &self.registry
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconciliations_and_leadership_are_encoded() {
        let metrics = Metrics::new();
        metrics.observe("ok", Duration::from_millis(1));
        metrics.set_leader(true);
        let text = tinysns_common::metrics::encode(&metrics).expect("encodes");
        assert!(
            text.contains("tinysns_operator_reconciliations_total{result=\"ok\"} 1"),
            "{text}"
        );
        assert!(text.contains("tinysns_operator_leader 1"), "{text}");
        assert!(
            text.contains("tinysns_operator_reconcile_duration_seconds_count 1"),
            "{text}"
        );
    }
}
