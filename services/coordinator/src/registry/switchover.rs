//! Planned switchover: a master hands its cluster to a slave in sync with it, losing
//! nothing, with writes unavailable only while the slave takes the master's last entries.
//!
//! 1. [`Registry::begin_switchover`] records a handover: from the master, to a live slave in
//!    the recorded in-sync set.
//! 2. Every heartbeat reply to the master and to the target names the target. The master
//!    stops taking writes, and once the target holds its whole log it says so in a heartbeat
//!    (`ready_to_hand_over`).
//! 3. That heartbeat promotes the target under a higher term. The in-sync set starts empty,
//!    as after any change of master: the new master admits the old one (and any other
//!    slave) once its link has matched their logs, which it does within moments. Recording
//!    the old master in sync here would not last: the new master's first heartbeat reports
//!    the set it has admitted, and that is what stands.
//!
//! A handover is cancelled, and the master takes writes again, when its deadline passes,
//! the target dies or leaves the in-sync set, or the master changes for another reason.
//!
//! A handover is soft state: a coordinator that takes over without it answers the master
//! without a target, and the master goes on as master. Nothing is lost either way: the
//! target is promoted only from the in-sync set, as in any failover.
//!
//! A member that is shutting down says so (`leaving`): a slave leaves the in-sync set and
//! the membership at once, so its master stops waiting for it before it stops answering; a
//! master starts a handover to its best in-sync slave.

use super::{Event, Kind, Registry, RegistryError};
use crate::metadata::Replica;
use std::time::{Duration, Instant};
use tinysns_common::proto::coordinator::ReplicaId;

/// A switchover under way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Handover {
    pub from: Replica,
    pub to: Replica,
    pub timeout: Duration,
    pub deadline: Instant,
}

/// Where a switchover to a replica stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Switchover {
    Pending,
    /// The replica is master under `term`.
    Done {
        term: u64,
    },
    /// It was cancelled; the old master (or whoever took over) goes on.
    Failed(String),
}

pub(super) fn replica_id(r: Replica) -> ReplicaId {
    ReplicaId {
        member_id: r.member,
        incarnation: r.incarnation,
    }
}

impl Registry {
    /// Starts handing cluster `cluster` from its master to the slave `to` (or, given none,
    /// the live in-sync slave with the longest log). Returns the replica to wait for with
    /// [`Registry::switchover`]; asking again for a switchover under way is not an error.
    pub fn begin_switchover(
        &mut self,
        cluster: u32,
        to: Option<u32>,
        now: Instant,
        timeout: Duration,
    ) -> Result<Replica, RegistryError> {
        if cluster == 0 || cluster > self.clusters {
            return Err(RegistryError::NoSuchCluster(cluster, self.clusters));
        }
        let master = self.live_master(cluster).ok_or(RegistryError::NoMaster(cluster))?;
        if to == Some(master.member) {
            // Already there (a retried request whose switchover completed).
            return Ok(master);
        }
        let candidates = self.live_in_sync(cluster);
        let target = match to {
            Some(id) => candidates
                .iter()
                .find(|(r, _)| r.member == id)
                .map(|(r, _)| *r)
                .ok_or(RegistryError::NotInSync { cluster, id })?,
            None => candidates
                .iter()
                .max_by(|(ra, la), (rb, lb)| la.cmp(lb).then(rb.member.cmp(&ra.member)))
                .map(|(r, _)| *r)
                .ok_or(RegistryError::NoCandidate(cluster))?,
        };
        if let Some(pending) = self.handovers.get(&cluster) {
            return if pending.to == target {
                Ok(target)
            } else {
                Err(RegistryError::SwitchoverUnderWay {
                    cluster,
                    to: pending.to.member,
                })
            };
        }
        self.handovers.insert(
            cluster,
            Handover {
                from: master,
                to: target,
                timeout,
                deadline: now + timeout,
            },
        );
        self.cancelled.remove(&cluster);
        self.events.push(Event::SwitchoverStarted {
            cluster,
            from: master.member,
            to: target.member,
        });
        Ok(target)
    }

    /// Where the switchover of `cluster` to `to` stands.
    pub fn switchover(&self, cluster: u32, to: Replica) -> Switchover {
        if self.handovers.get(&cluster).is_some_and(|h| h.to == to) {
            return Switchover::Pending;
        }
        let meta = self.meta_of(Kind::Server, cluster);
        if let Some(meta) = meta.filter(|m| m.master == Some(to)) {
            return Switchover::Done { term: meta.term };
        }
        match self.cancelled.get(&cluster) {
            Some((target, why)) if *target == to => Switchover::Failed(why.clone()),
            _ => Switchover::Failed("cancelled: the cluster's master changed meanwhile".into()),
        }
    }

    /// The target of the handover `(id, incarnation)` takes part in, if any: the master
    /// stops taking writes, and both heartbeat more often until it is over.
    pub(super) fn handover_target(&self, cluster: u32, id: u32, incarnation: u64) -> Option<ReplicaId> {
        self.handovers
            .get(&cluster)
            .filter(|h| h.from.is(id, incarnation) || h.to.is(id, incarnation))
            .map(|h| replica_id(h.to))
    }

    /// A heartbeat from server `(id, incarnation)` of `cluster`: completes the handover if
    /// the master says the target holds its whole log; cancels it if it cannot complete.
    pub(super) fn advance_handover(
        &mut self,
        cluster: u32,
        id: u32,
        incarnation: u64,
        ready: Option<&ReplicaId>,
        now: Instant,
    ) {
        let Some(handover) = self.handovers.get(&cluster).copied() else {
            return;
        };
        if let Some(why) = self.handover_broken(cluster, &handover, now) {
            self.cancel_handover(cluster, why);
            return;
        }
        let ready =
            ready.is_some_and(|r| r.member_id == handover.to.member && r.incarnation == handover.to.incarnation);
        if handover.from.is(id, incarnation) && ready {
            self.complete_handover(cluster, handover);
        }
    }

    /// Cancels every handover that can no longer complete (run with the failure detector).
    pub(super) fn expire_handovers(&mut self, now: Instant) {
        let pending: Vec<(u32, Handover)> = self.handovers.iter().map(|(c, h)| (*c, *h)).collect();
        for (cluster, handover) in pending {
            if let Some(why) = self.handover_broken(cluster, &handover, now) {
                self.cancel_handover(cluster, why);
            }
        }
    }

    fn handover_broken(&self, cluster: u32, h: &Handover, now: Instant) -> Option<String> {
        let meta = self.meta_of(Kind::Server, cluster)?;
        let to = h.to.member;
        if meta.master != Some(h.from) {
            return Some("the cluster's master changed meanwhile".into());
        }
        if !self.is_alive(cluster, h.to) {
            return Some(format!("server {to} stopped"));
        }
        if !meta.in_sync.contains(&h.to) {
            return Some(format!("server {to} left the in-sync set"));
        }
        if now > h.deadline {
            return Some(format!(
                "server {to} did not hold the master's whole log within {:?}",
                h.timeout
            ));
        }
        None
    }

    fn complete_handover(&mut self, cluster: u32, handover: Handover) {
        self.handovers.remove(&cluster);
        let members = self.alive.entry((Kind::Server, cluster)).or_default();
        let mut group = super::Group::new(Kind::Server, cluster, &mut self.meta, members, &mut self.events);
        let term = group.next_term();
        group.set_master(Some(handover.to), term);
        group.meta.in_sync.clear();
        self.changed |= group.changed;
        self.events.push(Event::SwitchoverCompleted {
            cluster,
            from: handover.from.member,
            to: handover.to.member,
        });
    }

    fn cancel_handover(&mut self, cluster: u32, why: String) {
        if let Some(handover) = self.handovers.remove(&cluster) {
            self.events.push(Event::SwitchoverCancelled {
                cluster,
                to: handover.to.member,
                why: why.clone(),
            });
            self.cancelled.insert(cluster, (handover.to, why));
        }
    }

    /// The recorded master of `cluster`'s servers, if it is alive under its incarnation.
    fn live_master(&self, cluster: u32) -> Option<Replica> {
        let master = self.meta_of(Kind::Server, cluster)?.master?;
        self.is_alive(cluster, master).then_some(master)
    }

    /// Live slaves of `cluster` recorded in sync, with how far their logs reach.
    fn live_in_sync(&self, cluster: u32) -> Vec<(Replica, u64)> {
        let Some(meta) = self.meta_of(Kind::Server, cluster) else {
            return Vec::new();
        };
        let Some(members) = self.alive.get(&(Kind::Server, cluster)) else {
            return Vec::new();
        };
        meta.in_sync
            .iter()
            .filter_map(|r| {
                let alive = members.get(&r.member).filter(|a| a.incarnation == r.incarnation)?;
                Some((*r, alive.applied_lsn))
            })
            .collect()
    }

    fn is_alive(&self, cluster: u32, r: Replica) -> bool {
        self.alive
            .get(&(Kind::Server, cluster))
            .and_then(|members| members.get(&r.member))
            .is_some_and(|alive| r.is(r.member, alive.incarnation))
    }
}

/// Shutting down.
impl Registry {
    /// `(id, incarnation)` of `cluster` says it is shutting down. A master server hands over
    /// first and leaves as a slave once that is done; anyone else leaves at once: out of the
    /// membership and the in-sync set, so nobody waits for it. A synchronizer master is
    /// replaced at once (it holds no data).
    pub(super) fn leave(
        &mut self,
        kind: Kind,
        cluster: u32,
        id: u32,
        incarnation: u64,
        now: Instant,
    ) -> super::Assignment {
        let is_master = self
            .meta_of(kind, cluster)
            .and_then(|m| m.master)
            .is_some_and(|m| m.is(id, incarnation));
        if kind == Kind::Server && is_master {
            let timeout = self.switchover_timeout;
            let handing_over =
                self.begin_switchover(cluster, None, now, timeout).is_ok() || self.handovers.contains_key(&cluster);
            let mut assignment = self.assignment(kind, cluster, id);
            // With nobody to hand over to there is nothing to wait for: its slaves wait for
            // it (they are not in sync), or it is the only server.
            assignment.left = !handing_over;
            return assignment;
        }
        let mut assignment = self.assignment(kind, cluster, id);
        assignment.role = tinysns_common::proto::coordinator::Role::Slave;
        assignment.left = true;
        let members = self.alive.entry((kind, cluster)).or_default();
        if members.remove(&id).is_some() {
            self.events.push(Event::Left { kind, cluster, id });
        }
        let mut group = super::Group::new(kind, cluster, &mut self.meta, members, &mut self.events);
        match group.meta.master {
            Some(old) if is_master => group.fail_over(old),
            _ => {
                let before = group.meta.in_sync.len();
                group.meta.in_sync.retain(|r| r.member != id);
                group.changed |= before != group.meta.in_sync.len();
            }
        }
        self.changed |= group.changed;
        assignment
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{beat, master_beat, replicas, report, server};
    use super::*;
    use crate::registry::Report;
    use tinysns_common::proto::coordinator::Role;

    const TIMEOUT: Duration = Duration::from_secs(1);
    const HANDOVER: Duration = Duration::from_secs(5);

    /// Cluster 1 with master 1 and slaves 2 and 3, both in sync; slave 3 has the longer log.
    fn cluster(t0: Instant) -> Registry {
        let mut r = Registry::new(1, TIMEOUT, t0);
        beat(&mut r, &server(1, 1), t0);
        r.heartbeat(&report(&server(1, 2), Role::Slave, 1, 5, &[]), t0).unwrap();
        r.heartbeat(&report(&server(1, 3), Role::Slave, 1, 9, &[]), t0).unwrap();
        master_beat(&mut r, &server(1, 1), &[2, 3], t0);
        r.drain_events();
        r
    }

    /// The master's heartbeat saying whether the target holds its whole log.
    fn master_ready(r: &mut Registry, ready: Option<u32>, now: Instant) -> crate::registry::Assignment {
        let report = Report {
            ready_to_hand_over: ready.map(|id| replicas(&[id])[0]),
            ..report(&server(1, 1), Role::Master, 1, 9, &[2, 3])
        };
        r.heartbeat(&report, now).unwrap()
    }

    #[test]
    fn a_switchover_promotes_the_target_once_the_master_says_it_holds_the_whole_log() {
        let t0 = Instant::now();
        let mut r = cluster(t0);
        let target = r.begin_switchover(1, Some(2), t0, HANDOVER).unwrap();
        assert_eq!(target.member, 2);
        assert_eq!(r.switchover(1, target), Switchover::Pending);
        // Master and target hear of it; the other slave does not.
        assert_eq!(master_ready(&mut r, None, t0).handover_to, Some(replicas(&[2])[0]));
        assert_eq!(beat(&mut r, &server(1, 2), t0).handover_to, Some(replicas(&[2])[0]));
        assert_eq!(beat(&mut r, &server(1, 3), t0).handover_to, None);
        // Not ready yet: nothing changes.
        assert_eq!(r.server_for_user(1).unwrap().1.member_id, 1);
        let a = master_ready(&mut r, Some(2), t0 + Duration::from_millis(50));
        assert_eq!((a.role, a.term, a.handover_to), (Role::Slave, 2, None));
        assert_eq!(r.switchover(1, target), Switchover::Done { term: 2 });
        let events = r.drain_events();
        assert!(events.contains(&Event::SwitchoverCompleted {
            cluster: 1,
            from: 1,
            to: 2
        }));
        assert!(
            !events.iter().any(|e| matches!(e, Event::FailedOver { .. })),
            "a planned switchover is no failover: {events:?}"
        );
        let (_, master, term) = r.server_for_user(1).unwrap();
        assert_eq!((master.member_id, term), (2, 2));
        // The new master admits its slaves into a new in-sync set once it has matched them.
        assert!(r.metadata().servers[&1].in_sync.is_empty());
        assert_eq!(beat(&mut r, &server(1, 2), t0).role, Role::Master);
        assert!(
            r.take_changed().is_some(),
            "the new master is stored before anyone hears of it"
        );
        master_beat(&mut r, &server(1, 2), &[1, 3], t0);
        let meta = &r.metadata().servers[&1];
        let replica = |member, incarnation| Replica { member, incarnation };
        assert!(meta.in_sync.contains(&replica(1, 101)) && meta.in_sync.contains(&replica(3, 103)));
    }

    #[test]
    fn without_a_target_the_in_sync_slave_with_the_longest_log_is_chosen() {
        let t0 = Instant::now();
        let mut r = cluster(t0);
        assert_eq!(r.begin_switchover(1, None, t0, HANDOVER).unwrap().member, 3);
        // Asking again is answered the same; asking for another target is refused.
        assert_eq!(r.begin_switchover(1, Some(3), t0, HANDOVER).unwrap().member, 3);
        assert_eq!(
            r.begin_switchover(1, Some(2), t0, HANDOVER),
            Err(RegistryError::SwitchoverUnderWay { cluster: 1, to: 3 })
        );
    }

    #[test]
    fn only_a_live_slave_in_sync_may_be_the_target() {
        let t0 = Instant::now();
        let mut r = cluster(t0);
        // The master reports slave 2 catching up.
        master_beat(&mut r, &server(1, 1), &[3], t0);
        assert_eq!(
            r.begin_switchover(1, Some(2), t0, HANDOVER),
            Err(RegistryError::NotInSync { cluster: 1, id: 2 })
        );
        assert_eq!(
            r.begin_switchover(1, Some(7), t0, HANDOVER),
            Err(RegistryError::NotInSync { cluster: 1, id: 7 })
        );
        master_beat(&mut r, &server(1, 1), &[], t0);
        assert_eq!(
            r.begin_switchover(1, None, t0, HANDOVER),
            Err(RegistryError::NoCandidate(1))
        );
        assert_eq!(
            r.begin_switchover(2, None, t0, HANDOVER),
            Err(RegistryError::NoSuchCluster(2, 1))
        );
        let mut empty = Registry::new(1, TIMEOUT, t0);
        assert_eq!(
            empty.begin_switchover(1, None, t0, HANDOVER),
            Err(RegistryError::NoMaster(1))
        );
        // Switching to the master itself is already done (a retried request).
        let master = r.begin_switchover(1, Some(1), t0, HANDOVER).unwrap();
        assert_eq!(r.switchover(1, master), Switchover::Done { term: 1 });
    }

    #[test]
    fn a_handover_past_its_deadline_is_cancelled_and_the_master_goes_on() {
        let t0 = Instant::now();
        let mut r = cluster(t0);
        let target = r.begin_switchover(1, Some(2), t0, Duration::from_millis(300)).unwrap();
        let t1 = t0 + Duration::from_millis(400);
        for id in [2, 3] {
            beat(&mut r, &server(1, id), t1);
        }
        r.expire(t1);
        let a = master_ready(&mut r, None, t1);
        assert_eq!((a.role, a.term, a.handover_to), (Role::Master, 1, None));
        assert!(matches!(r.switchover(1, target), Switchover::Failed(why) if why.contains("did not hold")));
        // A late "ready" for the cancelled handover changes nothing.
        assert_eq!(master_ready(&mut r, Some(2), t1).role, Role::Master);
        assert!(
            r.drain_events()
                .iter()
                .any(|e| matches!(e, Event::SwitchoverCancelled { to: 2, .. }))
        );
    }

    #[test]
    fn a_target_that_dies_or_falls_behind_cancels_the_handover() {
        let t0 = Instant::now();
        let mut r = cluster(t0);
        let target = r.begin_switchover(1, Some(2), t0, HANDOVER).unwrap();
        master_beat(&mut r, &server(1, 1), &[3], t0);
        assert!(matches!(r.switchover(1, target), Switchover::Failed(why) if why.contains("left the in-sync set")));

        let mut r = cluster(t0);
        let target = r.begin_switchover(1, Some(2), t0, HANDOVER).unwrap();
        let t1 = t0 + Duration::from_millis(900);
        master_ready(&mut r, None, t1);
        beat(&mut r, &server(1, 3), t1);
        r.expire(t0 + Duration::from_millis(1200));
        assert!(matches!(r.switchover(1, target), Switchover::Failed(why) if why.contains("stopped")));
        assert_eq!(r.server_for_user(1).unwrap().1.member_id, 1);
    }

    #[test]
    fn a_wiped_target_is_not_promoted() {
        let t0 = Instant::now();
        let mut r = cluster(t0);
        r.begin_switchover(1, Some(2), t0, HANDOVER).unwrap();
        let mut wiped = server(1, 2);
        wiped.incarnation += 1000;
        beat(&mut r, &wiped, t0);
        let a = master_ready(&mut r, Some(2), t0);
        assert_eq!(a.role, Role::Master);
        assert_eq!(r.server_for_user(1).unwrap().1.member_id, 1);
    }

    fn leaving(m: &crate::registry::Member, role: Role, in_sync: &[u32]) -> Report {
        Report {
            leaving: true,
            ..report(m, role, 1, 9, in_sync)
        }
    }

    #[test]
    fn a_leaving_slave_is_out_of_the_membership_and_the_in_sync_set_at_once() {
        let t0 = Instant::now();
        let mut r = cluster(t0);
        let a = r.heartbeat(&leaving(&server(1, 2), Role::Slave, &[]), t0).unwrap();
        assert!(a.left);
        let view = r.view(Kind::Server, 1);
        assert!(view.slaves.iter().all(|s| s.member_id != 2));
        assert!(!r.metadata().servers[&1].in_sync.iter().any(|s| s.member == 2));
        assert!(r.drain_events().contains(&Event::Left {
            kind: Kind::Server,
            cluster: 1,
            id: 2
        }));
        // Restarted, it joins again as a slave that is not in sync.
        assert_eq!(beat(&mut r, &server(1, 2), t0).role, Role::Slave);
        assert!(!r.metadata().servers[&1].in_sync.iter().any(|s| s.member == 2));
    }

    #[test]
    fn a_leaving_master_hands_over_then_leaves_as_a_slave() {
        let t0 = Instant::now();
        let mut r = cluster(t0);
        let a = r.heartbeat(&leaving(&server(1, 1), Role::Master, &[3]), t0).unwrap();
        assert!(!a.left, "it must wait for the handover");
        assert_eq!((a.role, a.handover_to), (Role::Master, Some(replicas(&[3])[0])));
        let ready = Report {
            ready_to_hand_over: Some(replicas(&[3])[0]),
            ..leaving(&server(1, 1), Role::Master, &[2, 3])
        };
        let a = r.heartbeat(&ready, t0).unwrap();
        assert_eq!(r.server_for_user(1).unwrap().1.member_id, 3);
        // Promoted first, then gone: nobody waits for it.
        assert!(a.left);
        assert!(!r.metadata().servers[&1].in_sync.iter().any(|s| s.member == 1));
    }

    #[test]
    fn a_leaving_master_with_nobody_to_hand_over_to_need_not_wait() {
        let t0 = Instant::now();
        let mut r = Registry::new(1, TIMEOUT, t0);
        beat(&mut r, &server(1, 1), t0);
        let a = r.heartbeat(&leaving(&server(1, 1), Role::Master, &[3]), t0).unwrap();
        assert!(a.left);
        // It stays master on record: its slaves (none in sync) wait for it to return.
        assert_eq!(r.metadata().servers[&1].master.map(|m| m.member), Some(1));
    }

    #[test]
    fn a_leaving_synchronizer_master_is_replaced_at_once() {
        let sync = super::super::tests::synchronizer;
        let t0 = Instant::now();
        let mut r = Registry::new(1, TIMEOUT, t0);
        assert_eq!(beat(&mut r, &sync(1), t0).role, Role::Master);
        beat(&mut r, &sync(2), t0);
        assert!(r.heartbeat(&leaving(&sync(1), Role::Master, &[]), t0).unwrap().left);
        assert_eq!(beat(&mut r, &sync(2), t0).role, Role::Master);
    }
}
