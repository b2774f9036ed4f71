//! The coordinator's Prometheus metrics (`tinysns_coordinator_*`), served by
//! `tinysns_common::metrics`.
//!
//! Heartbeats are counted as they arrive; failovers and switchovers from the registry's
//! events; live members after every decision of the leading coordinator. Leadership and the
//! terms are read when a scrape comes in ([`Exposed`]): the terms from the replicated
//! metadata, which every coordinator holds, leader or not. Only the leader knows who is
//! alive (members heartbeat the leader), so the others show no live members.

use crate::raft::Raft;
use crate::raft::leadership::Leadership;
use crate::raft::store::StateMachine;
use crate::registry::{Event, Kind};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

type U64Gauge = Gauge<u64, AtomicU64>;

fn kind_label(kind: Kind) -> &'static str {
    match kind {
        Kind::Server => "server",
        Kind::Synchronizer => "synchronizer",
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClusterLabel {
    cluster: u32,
}

/// What a scrape shows of the coordinators' shared state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StateSample {
    /// This coordinator leads (Raft leader with a quorum-confirmed lease): it decides.
    pub leader: bool,
    pub raft_term: u64,
    /// The servers' term of each cluster, 1..=clusters (0: nobody was ever master).
    pub terms: Vec<(u32, u64)>,
}

pub struct Metrics {
    registry: Registry,
    heartbeats: Counter,
    servers_alive: Gauge,
    synchronizers_alive: Gauge,
    failovers: Family<KindLabel, Counter>,
    switchovers: Family<OutcomeLabel, Counter>,
    term: Family<ClusterLabel, U64Gauge>,
    leader: Gauge,
    raft_term: U64Gauge,
    system_feature_level: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("tinysns_coordinator");
        let heartbeats = Counter::default();
        registry.register(
            "heartbeats",
            "Heartbeats received from servers and synchronizers",
            heartbeats.clone(),
        );
        let alive = Family::<KindLabel, Gauge>::default();
        registry.register(
            "members_alive",
            "Members heard from within the failure timeout, by kind (on the leading coordinator; 0 elsewhere)",
            alive.clone(),
        );
        let servers_alive = alive
            .get_or_create(&KindLabel {
                kind: kind_label(Kind::Server),
            })
            .clone();
        let synchronizers_alive = alive
            .get_or_create(&KindLabel {
                kind: kind_label(Kind::Synchronizer),
            })
            .clone();
        let failovers = Family::<KindLabel, Counter>::default();
        registry.register(
            "failovers",
            "Masters replaced because they died or lost their data, by kind of group (decided here)",
            failovers.clone(),
        );
        let switchovers = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "switchovers",
            "Planned switchovers by outcome (completed, cancelled), decided here",
            switchovers.clone(),
        );
        // Shown as 0 from the start, so that rates and alerts work before the first one.
        for kind in [Kind::Server, Kind::Synchronizer] {
            drop(failovers.get_or_create(&KindLabel { kind: kind_label(kind) }));
        }
        for outcome in ["completed", "cancelled"] {
            drop(switchovers.get_or_create(&OutcomeLabel { outcome }));
        }
        let term = Family::<ClusterLabel, U64Gauge>::default();
        registry.register(
            "term",
            "Current term of each cluster's servers (raised by every change of master)",
            term.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 while this coordinator is the Raft leader with a confirmed lease (it decides), else 0",
            leader.clone(),
        );
        let raft_term = U64Gauge::default();
        registry.register(
            "raft_term",
            "The coordinators' Raft term as this one knows it",
            raft_term.clone(),
        );
        let system_feature_level = Gauge::default();
        registry.register(
            "system_feature_level",
            "The lowest feature level among live members (writes of newer kinds wait for it; 0 while not known or not leading)",
            system_feature_level.clone(),
        );
        Self {
            system_feature_level,
            registry,
            heartbeats,
            servers_alive,
            synchronizers_alive,
            failovers,
            switchovers,
            term,
            leader,
            raft_term,
        }
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    pub fn heartbeat(&self) {
        self.heartbeats.inc();
    }

    /// Counts the failovers and switchovers among a decision's events.
    pub fn record_events(&self, events: &[Event]) {
        for event in events {
            match event {
                Event::FailedOver { kind, .. } => {
                    self.failovers
                        .get_or_create(&KindLabel {
                            kind: kind_label(*kind),
                        })
                        .inc();
                }
                Event::SwitchoverCompleted { .. } => {
                    self.switchovers
                        .get_or_create(&OutcomeLabel { outcome: "completed" })
                        .inc();
                }
                Event::SwitchoverCancelled { .. } => {
                    self.switchovers
                        .get_or_create(&OutcomeLabel { outcome: "cancelled" })
                        .inc();
                }
                _ => {}
            }
        }
    }

    /// Live members of each kind, as the leader's registry sees them.
    pub fn observe_alive(&self, servers: usize, synchronizers: usize) {
        self.servers_alive.set(i64::try_from(servers).unwrap_or(i64::MAX));
        self.synchronizers_alive
            .set(i64::try_from(synchronizers).unwrap_or(i64::MAX));
    }

    /// The system's feature level, as the leader's registry sees it.
    pub fn observe_feature_level(&self, level: u32) {
        self.system_feature_level.set(i64::from(level));
    }

    pub fn observe_state(&self, state: &StateSample) {
        self.leader.set(i64::from(state.leader));
        self.raft_term.set(state.raft_term);
        for (cluster, term) in &state.terms {
            self.term.get_or_create(&ClusterLabel { cluster: *cluster }).set(*term);
        }
        if !state.leader {
            // Members heartbeat the leader: anything else this coordinator saw is stale.
            self.observe_alive(0, 0);
            self.observe_feature_level(0);
        }
    }
}

/// What a scrape of the coordinator reads: the metrics, and the coordinators' state.
pub struct Exposed {
    pub metrics: Arc<Metrics>,
    pub leadership: Arc<Leadership>,
    pub machine: StateMachine,
    pub raft: Raft,
    pub clusters: u32,
}

impl tinysns_common::metrics::Source for Exposed {
    fn registry(&self) -> &Registry {
        self.metrics.registry()
    }

    fn refresh(&self) {
        let raft_term = self.raft.metrics().borrow().current_term;
        let metadata = self.machine.metadata();
        let terms = (1..=self.clusters)
            .map(|c| (c, metadata.servers.get(&c).map_or(0, |g| g.term)))
            .collect();
        self.metrics.observe_state(&StateSample {
            leader: self.leadership.current().is_ok(),
            raft_term,
            terms,
        });
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

    #[test]
    fn failovers_and_switchovers_are_counted_from_the_registrys_events() {
        let m = Metrics::new();
        assert_shows(
            &m,
            &[
                "tinysns_coordinator_failovers_total{kind=\"server\"} 0",
                "tinysns_coordinator_switchovers_total{outcome=\"completed\"} 0",
            ],
        );
        m.record_events(&[
            Event::Joined {
                kind: Kind::Server,
                cluster: 1,
                id: 1,
            },
            Event::FailedOver {
                kind: Kind::Server,
                cluster: 1,
                from: 1,
            },
            Event::MasterChanged {
                kind: Kind::Server,
                cluster: 1,
                id: Some(2),
                term: 2,
            },
            Event::FailedOver {
                kind: Kind::Synchronizer,
                cluster: 2,
                from: 5,
            },
            Event::SwitchoverCompleted {
                cluster: 1,
                from: 2,
                to: 1,
            },
            Event::SwitchoverCancelled {
                cluster: 3,
                to: 2,
                why: "server 2 stopped".into(),
            },
        ]);
        m.record_events(&[Event::FailedOver {
            kind: Kind::Server,
            cluster: 3,
            from: 1,
        }]);
        assert_shows(
            &m,
            &[
                "tinysns_coordinator_failovers_total{kind=\"server\"} 2",
                "tinysns_coordinator_failovers_total{kind=\"synchronizer\"} 1",
                "tinysns_coordinator_switchovers_total{outcome=\"completed\"} 1",
                "tinysns_coordinator_switchovers_total{outcome=\"cancelled\"} 1",
            ],
        );
    }

    #[test]
    fn the_leader_shows_live_members_and_every_coordinator_the_terms() {
        let m = Metrics::new();
        m.heartbeat();
        m.observe_alive(6, 6);
        let leading = StateSample {
            leader: true,
            raft_term: 3,
            terms: vec![(1, 2), (2, 1), (3, 0)],
        };
        m.observe_state(&leading);
        assert_shows(
            &m,
            &[
                "tinysns_coordinator_heartbeats_total 1",
                "tinysns_coordinator_leader 1",
                "tinysns_coordinator_raft_term 3",
                "tinysns_coordinator_term{cluster=\"1\"} 2",
                "tinysns_coordinator_term{cluster=\"3\"} 0",
                "tinysns_coordinator_members_alive{kind=\"server\"} 6",
                "tinysns_coordinator_members_alive{kind=\"synchronizer\"} 6",
            ],
        );
        m.observe_state(&StateSample {
            leader: false,
            raft_term: 4,
            ..leading
        });
        assert_shows(
            &m,
            &[
                "tinysns_coordinator_leader 0",
                "tinysns_coordinator_raft_term 4",
                "tinysns_coordinator_term{cluster=\"1\"} 2",
                "tinysns_coordinator_members_alive{kind=\"server\"} 0",
            ],
        );
    }
}
