//! Which slaves a write must reach, as pure functions of what the master knows.
//!
//! Two sets matter. `proposed` is the in-sync set the master reports to the coordinator;
//! `recorded` is the one the coordinator has stored (and would promote from). The invariant:
//! every slave in `recorded` holds every acknowledged write. So a write waits for every
//! slave in `proposed ∪ recorded`:
//! - a slave joins `proposed` only once it holds everything acknowledged so far, and from
//!   then on every write waits for it, before the coordinator can hear of it;
//! - a slave that keeps a write waiting longer than the replica timeout leaves `proposed`,
//!   but writes go on without it only once `recorded` no longer holds it either.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// A slave under one incarnation of its data.
pub type Replica = (u32, u64);

/// What the master knows of one slave's link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkView {
    pub replica: Replica,
    /// Where the slave's log is known to equal ours.
    pub matched: Option<u64>,
    /// The last probe it answered under our term (see [`Round::probe`]).
    pub probed: u64,
    /// It refused us: it knows this newer term.
    pub deposed: Option<u64>,
}

/// One write (or group of writes) waiting to be acknowledged.
#[derive(Debug, Clone, Copy)]
pub struct Round {
    /// Log position every required slave must hold.
    pub target: u64,
    /// Without the coordinator's lease, a write must also be confirmed under our term by a
    /// slave answering this probe (sent after the lease was lost): nobody else can have been
    /// made master then, since the slave that would be promoted has not seen a newer term.
    pub probe: Option<u64>,
    pub started: Instant,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Acknowledge,
    Wait,
    /// A slave knows a newer term: we are no longer master.
    Deposed(u64),
    /// These slaves kept the write waiting too long: propose the in-sync set without them.
    Drop(Vec<Replica>),
}

fn done(link: &LinkView, round: &Round) -> bool {
    link.matched.is_some_and(|m| m >= round.target) && round.probe.is_none_or(|p| link.probed >= p)
}

/// Whether the round may be acknowledged now.
pub fn verdict(
    links: &[LinkView],
    proposed: &BTreeSet<Replica>,
    recorded: &BTreeSet<Replica>,
    round: &Round,
    now: Instant,
    timeout: Duration,
) -> Verdict {
    if let Some(term) = links.iter().filter_map(|l| l.deposed).max() {
        return Verdict::Deposed(term);
    }
    let required: BTreeSet<Replica> = proposed.union(recorded).copied().collect();
    let is_done = |r: &Replica| links.iter().any(|l| l.replica == *r && done(l, round));
    let lagging: Vec<Replica> = required.iter().filter(|r| !is_done(r)).copied().collect();
    if round.probe.is_some() {
        // No lease: only a slave's answer proves our term, and nobody can be dropped (that
        // takes the coordinator).
        return if !required.is_empty() && lagging.is_empty() {
            Verdict::Acknowledge
        } else {
            Verdict::Wait
        };
    }
    if lagging.is_empty() {
        return Verdict::Acknowledge;
    }
    let overdue: Vec<Replica> = lagging.into_iter().filter(|r| proposed.contains(r)).collect();
    if !overdue.is_empty() && now.duration_since(round.started) > timeout {
        Verdict::Drop(overdue)
    } else {
        Verdict::Wait
    }
}

/// Slaves that may join the in-sync set: they hold everything acknowledged and everything
/// a write is waiting for (`end`, at least the committed position). A slave dropped for
/// keeping a write waiting therefore rejoins only once it has answered for that write.
pub fn ready_to_join(links: &[LinkView], proposed: &BTreeSet<Replica>, end: u64) -> Vec<Replica> {
    links
        .iter()
        .filter(|l| !proposed.contains(&l.replica) && l.deposed.is_none())
        .filter(|l| l.matched.is_some_and(|m| m >= end))
        .map(|l| l.replica)
        .collect()
}

/// Whether a master in a planned switchover may tell the coordinator that `target` holds
/// its whole log: the log ends at `end`, every entry in it was acknowledged (`committed`: no
/// client still waits on a write the switchover would fail), and the target's log equals
/// ours through `end`.
pub fn may_hand_over(links: &[LinkView], target: Replica, end: u64, committed: u64) -> bool {
    committed >= end
        && links
            .iter()
            .any(|l| l.replica == target && l.deposed.is_none() && l.matched.is_some_and(|m| m >= end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_master_hands_over_only_once_the_target_holds_its_whole_acknowledged_log() {
        let links = [link(S, Some(10)), link(T, Some(12))];
        assert!(may_hand_over(&links, S, 10, 10));
        // The target lacks the last entry, or a client still waits for one.
        assert!(!may_hand_over(&links, S, 12, 12));
        assert!(may_hand_over(&links, T, 12, 12));
        assert!(!may_hand_over(&links, T, 12, 11));
        // Not a slave we replicate to (another incarnation, or no link).
        assert!(!may_hand_over(&links, (2, 8), 10, 10));
        assert!(!may_hand_over(&[], S, 0, 0));
        // A target that knows a newer term is not ours to hand to.
        let deposed = [LinkView {
            deposed: Some(9),
            ..link(S, Some(10))
        }];
        assert!(!may_hand_over(&deposed, S, 10, 10));
    }

    const S: Replica = (2, 7);
    const T: Replica = (3, 9);
    const TIMEOUT: Duration = Duration::from_secs(2);

    fn link(replica: Replica, matched: Option<u64>) -> LinkView {
        LinkView {
            replica,
            matched,
            probed: 0,
            deposed: None,
        }
    }

    fn set(replicas: &[Replica]) -> BTreeSet<Replica> {
        replicas.iter().copied().collect()
    }

    fn round(target: u64, t0: Instant) -> Round {
        Round {
            target,
            probe: None,
            started: t0,
        }
    }

    #[test]
    fn a_write_waits_for_every_slave_proposed_or_recorded() {
        let t0 = Instant::now();
        let links = [link(S, Some(10)), link(T, Some(4))];
        let r = round(10, t0);
        // T is only recorded (e.g. the coordinator's set from before our restart).
        assert_eq!(verdict(&links, &set(&[S]), &set(&[T]), &r, t0, TIMEOUT), Verdict::Wait);
        assert_eq!(
            verdict(&links, &set(&[S]), &set(&[]), &r, t0, TIMEOUT),
            Verdict::Acknowledge
        );
        // A slave in neither set (catching up) holds nothing up.
        assert_eq!(
            verdict(&links, &set(&[]), &set(&[]), &r, t0, TIMEOUT),
            Verdict::Acknowledge
        );
    }

    #[test]
    fn a_lagging_slave_is_dropped_after_the_timeout_but_the_write_waits_for_the_coordinator() {
        let t0 = Instant::now();
        let links = [link(S, Some(3))];
        let r = round(10, t0);
        let soon = t0 + Duration::from_secs(1);
        let late = t0 + Duration::from_secs(3);
        assert_eq!(
            verdict(&links, &set(&[S]), &set(&[S]), &r, soon, TIMEOUT),
            Verdict::Wait
        );
        assert_eq!(
            verdict(&links, &set(&[S]), &set(&[S]), &r, late, TIMEOUT),
            Verdict::Drop(vec![S])
        );
        // Proposed without S, but the coordinator has not recorded it yet: still wait.
        assert_eq!(verdict(&links, &set(&[]), &set(&[S]), &r, late, TIMEOUT), Verdict::Wait);
        // Recorded: the write goes on without S.
        assert_eq!(
            verdict(&links, &set(&[]), &set(&[]), &r, late, TIMEOUT),
            Verdict::Acknowledge
        );
    }

    #[test]
    fn a_slave_that_vanished_from_the_view_still_counts_while_recorded() {
        let t0 = Instant::now();
        let r = round(10, t0);
        assert_eq!(verdict(&[], &set(&[]), &set(&[S]), &r, t0, TIMEOUT), Verdict::Wait);
        assert_eq!(
            verdict(&[], &set(&[]), &set(&[]), &r, t0, TIMEOUT),
            Verdict::Acknowledge
        );
    }

    #[test]
    fn without_the_lease_a_slave_must_confirm_our_term() {
        let t0 = Instant::now();
        let mut r = round(10, t0);
        r.probe = Some(5);
        let mut s = link(S, Some(10));
        s.probed = 4;
        assert_eq!(verdict(&[s], &set(&[S]), &set(&[S]), &r, t0, TIMEOUT), Verdict::Wait);
        s.probed = 5;
        assert_eq!(
            verdict(&[s], &set(&[S]), &set(&[S]), &r, t0, TIMEOUT),
            Verdict::Acknowledge
        );
        // Alone, without the lease: never (someone else may be master by now), and no drop.
        assert_eq!(verdict(&[], &set(&[]), &set(&[]), &r, t0, TIMEOUT), Verdict::Wait);
        let late = t0 + TIMEOUT * 3;
        assert_eq!(
            verdict(&[link(S, Some(1))], &set(&[S]), &set(&[S]), &r, late, TIMEOUT),
            Verdict::Wait
        );
    }

    #[test]
    fn a_newer_term_anywhere_deposes_us() {
        let t0 = Instant::now();
        let mut s = link(S, Some(10));
        s.deposed = Some(8);
        let t = link(T, Some(10));
        assert_eq!(
            verdict(&[s, t], &set(&[]), &set(&[]), &round(10, t0), t0, TIMEOUT),
            Verdict::Deposed(8)
        );
    }

    #[test]
    fn a_dropped_slave_does_not_rejoin_before_it_holds_the_waiting_write() {
        let t0 = Instant::now();
        let late = t0 + TIMEOUT * 2;
        // S holds everything acknowledged (10) but not the write waiting for 12.
        let links = [link(S, Some(10))];
        let r = round(12, t0);
        assert_eq!(
            verdict(&links, &set(&[S]), &set(&[]), &r, late, TIMEOUT),
            Verdict::Drop(vec![S])
        );
        assert!(ready_to_join(&links, &set(&[]), 12).is_empty());
        assert_eq!(
            verdict(&links, &set(&[]), &set(&[]), &r, late, TIMEOUT),
            Verdict::Acknowledge
        );
        assert_eq!(ready_to_join(&[link(S, Some(12))], &set(&[]), 12), vec![S]);
    }

    #[test]
    fn only_a_slave_holding_everything_acknowledged_joins() {
        let links = [link(S, Some(10)), link(T, Some(9)), link((4, 1), None)];
        assert_eq!(ready_to_join(&links, &set(&[]), 10), vec![S]);
        assert_eq!(ready_to_join(&links, &set(&[S]), 9), vec![T]);
    }
}
