//! The synchronizer's Prometheus metrics (`tinysns_synchronizer_*`), served by
//! `tinysns_common::metrics`.
//!
//! The publisher counts what it publishes and what the broker confirms, and shows how far
//! along this cluster's log it is; the consumer counts what it takes from the queue, what
//! tsd stored (new or duplicate), what it dead-letters and how often it retries, and how
//! long each change took from its commit in the cluster where it was made to its apply here
//! (the bus lag). Every event is one atomic add, the lag one histogram observation.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;
use tinysns_common::proto::internal::{ApplyRemoteReply, RemoteChange};

type U64Gauge = Gauge<u64, AtomicU64>;

/// When `change` was committed in its own cluster, in ms since the epoch: the wall part of
/// its hybrid logical clock stamp (microseconds), or its wall-clock time for a change
/// stamped before stamps existed.
pub fn committed_ms(change: &RemoteChange) -> i64 {
    if change.hlc > 0 {
        i64::try_from(change.hlc / 1000).unwrap_or(i64::MAX)
    } else {
        change.timestamp_ms
    }
}

/// Seconds from `change`'s commit to `now_ms` (never negative: the clusters' clocks may
/// disagree by a little).
pub fn bus_lag_seconds(change: &RemoteChange, now_ms: i64) -> f64 {
    now_ms.saturating_sub(committed_ms(change)).max(0) as f64 / 1000.0
}

/// Changes tsd stored again (it had them already) out of `sent`, by its reply.
pub fn duplicates(sent: usize, reply: &ApplyRemoteReply) -> usize {
    sent.saturating_sub(reply.applied as usize)
        .saturating_sub(reply.rejected.len())
}

pub struct Metrics {
    registry: Registry,
    master: Gauge,
    messages_published: Counter,
    changes_published: Counter,
    messages_confirmed: Counter,
    published_lsn: U64Gauge,
    confirmed_lsn: U64Gauge,
    messages_consumed: Counter,
    changes_applied: Counter,
    changes_duplicate: Counter,
    messages_dead_lettered: Counter,
    apply_retries: Counter,
    restarts: Counter,
    bus_lag: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("tinysns_synchronizer");
        let master = Gauge::default();
        registry.register(
            "master",
            "1 while this is its cluster's master synchronizer (the one that syncs), else 0",
            master.clone(),
        );
        let messages_published = Counter::default();
        registry.register(
            "messages_published",
            "Bus messages published with this cluster's changes",
            messages_published.clone(),
        );
        let changes_published = Counter::default();
        registry.register(
            "changes_published",
            "Changes of this cluster published (a message carries one or many)",
            changes_published.clone(),
        );
        let messages_confirmed = Counter::default();
        registry.register(
            "messages_confirmed",
            "Published messages the broker confirmed (stored persistently)",
            messages_confirmed.clone(),
        );
        let published_lsn = U64Gauge::default();
        registry.register(
            "published_lsn",
            "Position in this cluster's log of the last change published",
            published_lsn.clone(),
        );
        let confirmed_lsn = U64Gauge::default();
        registry.register(
            "confirmed_lsn",
            "Position in this cluster's log up to which the broker confirmed every change",
            confirmed_lsn.clone(),
        );
        let messages_consumed = Counter::default();
        registry.register(
            "messages_consumed",
            "Bus messages taken from this cluster's queue",
            messages_consumed.clone(),
        );
        let changes_applied = Counter::default();
        registry.register(
            "changes_applied",
            "Other clusters' changes tsd stored that it did not have yet",
            changes_applied.clone(),
        );
        let changes_duplicate = Counter::default();
        registry.register(
            "changes_duplicate",
            "Other clusters' changes skipped because tsd had them already (redelivered or republished)",
            changes_duplicate.clone(),
        );
        let messages_dead_lettered = Counter::default();
        registry.register(
            "messages_dead_lettered",
            "Messages that can never apply (undecodable, unsigned, refused by tsd), sent to the dead-letter queue",
            messages_dead_lettered.clone(),
        );
        let apply_retries = Counter::default();
        registry.register(
            "apply_retries",
            "Calls to tsd's ApplyRemote that failed and were tried again",
            apply_retries.clone(),
        );
        let restarts = Counter::default();
        registry.register(
            "restarts",
            "Times syncing was interrupted (broker or tsd master gone) and started again",
            restarts.clone(),
        );
        // 1 ms .. ~65 s.
        let bus_lag = Histogram::new(exponential_buckets(0.001, 2.0, 17));
        registry.register(
            "bus_lag_seconds",
            "Time from a change's commit in its cluster (its HLC stamp) until tsd here stored it",
            bus_lag.clone(),
        );
        Self {
            registry,
            master,
            messages_published,
            changes_published,
            messages_confirmed,
            published_lsn,
            confirmed_lsn,
            messages_consumed,
            changes_applied,
            changes_duplicate,
            messages_dead_lettered,
            apply_retries,
            restarts,
            bus_lag,
        }
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    pub fn set_master(&self, master: bool) {
        self.master.set(i64::from(master));
    }

    /// A message with `changes` changes, up to `lsn`, went to the broker.
    pub fn published(&self, changes: usize, lsn: u64) {
        self.messages_published.inc();
        self.changes_published.inc_by(changes as u64);
        self.published_lsn.set(lsn);
    }

    /// The broker confirmed everything up to `lsn`.
    pub fn confirmed(&self, lsn: u64) {
        self.messages_confirmed.inc();
        self.confirmed_lsn.set(lsn);
    }

    pub fn consumed(&self) {
        self.messages_consumed.inc();
    }

    /// tsd stored `changes` (its reply says how many were new and which it refused), at
    /// `now_ms`.
    pub fn applied(&self, changes: &[RemoteChange], reply: &ApplyRemoteReply, now_ms: i64) {
        self.changes_applied.inc_by(u64::from(reply.applied));
        self.changes_duplicate.inc_by(duplicates(changes.len(), reply) as u64);
        for (i, change) in changes.iter().enumerate() {
            if !reply.rejected.iter().any(|r| *r as usize == i) {
                self.bus_lag.observe(bus_lag_seconds(change, now_ms));
            }
        }
    }

    pub fn dead_lettered(&self) {
        self.messages_dead_lettered.inc();
    }

    pub fn apply_retried(&self) {
        self.apply_retries.inc();
    }

    pub fn restarted(&self) {
        self.restarts.inc();
    }
}

impl tinysns_common::metrics::Source for Metrics {
    fn registry(&self) -> &Registry {
        &self.registry
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(m: &Metrics) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, m.registry()).unwrap();
        out
    }

    fn assert_shows(m: &Metrics, expected: &[&str]) {
        let scraped = text(m);
        for line in expected {
            assert!(scraped.contains(&format!("{line}\n")), "{line} in {scraped}");
        }
    }

    fn change(hlc: u64, timestamp_ms: i64) -> RemoteChange {
        RemoteChange {
            origin_cluster: 2,
            origin_lsn: 1,
            timestamp_ms,
            change: None,
            hlc,
        }
    }

    #[test]
    fn the_bus_lag_runs_from_the_changes_hlc_wall_time_to_its_apply() {
        // HLC stamps are microseconds; the wall clock of the change is only a fallback.
        assert_eq!(committed_ms(&change(1_700_000_000_123_456, 5)), 1_700_000_000_123);
        assert_eq!(committed_ms(&change(0, 1_700_000_000_000)), 1_700_000_000_000);
        assert_eq!(bus_lag_seconds(&change(1_000_000_000, 0), 1_002_500), 2.5);
        assert_eq!(
            bus_lag_seconds(&change(2_000_000_000, 0), 1_000_000),
            0.0,
            "a clock behind the origin's is no negative lag"
        );
    }

    #[test]
    fn duplicates_are_what_tsd_neither_applied_nor_refused() {
        let reply = |applied, rejected: Vec<u32>| ApplyRemoteReply { applied, rejected };
        assert_eq!(duplicates(10, &reply(10, vec![])), 0);
        assert_eq!(duplicates(10, &reply(7, vec![])), 3);
        assert_eq!(duplicates(10, &reply(7, vec![1, 2])), 1);
        assert_eq!(duplicates(1, &reply(3, vec![])), 0, "never negative");
    }

    #[test]
    fn applying_counts_new_and_duplicate_changes_and_observes_each_stored_ones_lag() {
        let m = Metrics::new();
        let now_ms = 10_000;
        let changes = [change(9_000_000, 0), change(8_000_000, 0), change(1, 0)];
        m.applied(
            &changes,
            &ApplyRemoteReply {
                applied: 1,
                rejected: vec![2],
            },
            now_ms,
        );
        m.consumed();
        m.published(3, 42);
        m.confirmed(42);
        m.apply_retried();
        m.dead_lettered();
        m.set_master(true);
        assert_shows(
            &m,
            &[
                "tinysns_synchronizer_changes_applied_total 1",
                "tinysns_synchronizer_changes_duplicate_total 1",
                "tinysns_synchronizer_bus_lag_seconds_count 2",
                "tinysns_synchronizer_bus_lag_seconds_sum 3.0",
                "tinysns_synchronizer_messages_consumed_total 1",
                "tinysns_synchronizer_messages_published_total 1",
                "tinysns_synchronizer_changes_published_total 3",
                "tinysns_synchronizer_published_lsn 42",
                "tinysns_synchronizer_confirmed_lsn 42",
                "tinysns_synchronizer_messages_confirmed_total 1",
                "tinysns_synchronizer_apply_retries_total 1",
                "tinysns_synchronizer_messages_dead_lettered_total 1",
                "tinysns_synchronizer_master 1",
            ],
        );
    }
}
