//! Whether this coordinator may decide right now.
//!
//! Being Raft's leader is not enough: a leader cut off from the others still believes it is
//! one until it hears otherwise, and meanwhile it would hand out leases to masters another
//! coordinator is replacing. So the leader confirms its leadership with a quorum every
//! `period` (a round of Raft heartbeats) and decides only within `lease` of the start of the
//! last confirmed round. `lease` is at most Raft's minimum election timeout: openraft's
//! followers refuse to elect anyone for longer than that after the leader's last heartbeat,
//! so no other coordinator decides while this one still may.

use super::{NodeId, Raft};
use openraft::ServerState;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tinysns_common::shutdown::Shutdown;

#[derive(Debug, Clone, Copy)]
struct Confirmed {
    term: u64,
    at: Instant,
    /// When this unbroken stretch of confirmed leadership began.
    since: Instant,
}

/// A stretch of leadership without a lapse: whatever was decided in one stays valid in it.
/// After a lapse (or in another term) the leader must start again from the replicated state,
/// since members' heartbeats went unanswered meanwhile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tenure {
    pub term: u64,
    pub since: Instant,
}

/// Why this coordinator may not decide; `leader` is who may, when known.
#[derive(Debug, thiserror::Error)]
#[error("this coordinator is not the leader{}; ask another", leader.map(|l| format!(" (coordinator {l} is)")).unwrap_or_default())]
pub struct NotLeader {
    pub leader: Option<NodeId>,
}

pub struct Leadership {
    raft: Raft,
    lease: Duration,
    confirmed: Mutex<Option<Confirmed>>,
}

impl Leadership {
    pub fn new(raft: Raft, lease: Duration) -> Arc<Self> {
        Arc::new(Self {
            raft,
            lease,
            confirmed: Mutex::new(None),
        })
    }

    /// The tenure this coordinator leads in, if its lease holds.
    pub fn current(&self) -> Result<Tenure, NotLeader> {
        // Read only the fields needed: this runs on every heartbeat and lookup.
        let (state, term, leader, id) = {
            let metrics = self.raft.metrics();
            let m = metrics.borrow();
            (m.state, m.current_term, m.current_leader, m.id)
        };
        let confirmed = *tinysns_common::lock(&self.confirmed);
        match confirmed {
            Some(c) if state == ServerState::Leader && term == c.term && c.at.elapsed() < self.lease => Ok(Tenure {
                term: c.term,
                since: c.since,
            }),
            _ => Err(NotLeader {
                leader: leader.filter(|l| *l != id),
            }),
        }
    }

    /// Confirms the leadership every `period` until shutdown.
    pub async fn run(self: Arc<Self>, period: Duration, shutdown: Shutdown) {
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut leading = false;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.wait() => return,
            }
            let (state, term) = {
                let m = self.raft.metrics();
                let m = m.borrow();
                (m.state, m.current_term)
            };
            if state != ServerState::Leader {
                *tinysns_common::lock(&self.confirmed) = None;
                if leading {
                    tracing::info!(term, "no longer the leading coordinator");
                    leading = false;
                }
                continue;
            }
            let at = Instant::now();
            // Also waits until everything committed before is applied, so the registry the
            // leader builds from the state machine misses no decision.
            if let Ok(Ok(_)) = tokio::time::timeout(self.lease, self.raft.ensure_linearizable()).await {
                let mut confirmed = tinysns_common::lock(&self.confirmed);
                let since = match *confirmed {
                    Some(c) if c.term == term && c.at.elapsed() < self.lease => c.since,
                    _ => at,
                };
                *confirmed = Some(Confirmed { term, at, since });
                if !leading {
                    tracing::info!(term, "leading the coordinators");
                    leading = true;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::node::{self, Timing};

    #[tokio::test]
    async fn a_single_coordinator_leads_once_confirmed_and_not_after_its_raft_stops() {
        let timing = Timing {
            heartbeat: Duration::from_millis(50),
            election_timeout: Duration::from_millis(200),
        };
        let peers = ["127.0.0.1:1".to_string()];
        let (raft, _machine) = node::start(0, &peers, None, timing, Default::default()).await.unwrap();
        let leadership = Leadership::new(raft.clone(), timing.election_timeout);
        assert!(leadership.current().is_err(), "nothing confirmed yet");
        let shutdown = Shutdown::new();
        let confirmer = tokio::spawn(leadership.clone().run(Duration::from_millis(20), shutdown.clone()));
        let deadline = Instant::now() + Duration::from_secs(5);
        let tenure = loop {
            if let Ok(tenure) = leadership.current() {
                break tenure;
            }
            assert!(Instant::now() < deadline, "never led");
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(leadership.current().unwrap(), tenure, "one unbroken tenure");
        raft.shutdown().await.unwrap();
        tokio::time::sleep(timing.election_timeout + Duration::from_millis(50)).await;
        assert!(leadership.current().is_err(), "a stopped node must not lead");
        shutdown.trigger();
        confirmer.await.unwrap();
    }
}
