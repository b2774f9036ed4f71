//! What "ready" means for a tsd: its gRPC health entry `readiness`, which Kubernetes probes
//! and so PodDisruptionBudgets and rollouts go by. A replica is ready when it could serve its
//! cluster now with every acknowledged write: a master while it holds its lease, a slave
//! while the coordinator records it in sync under this incarnation. A slave that is still
//! catching up (new, wiped, or back after a while) is alive but not ready, so nothing counts
//! it as a replica that could take over.

use tinysns_common::membership::RoleView;

pub fn is_ready(view: &RoleView) -> bool {
    let assignment = &view.assignment;
    if !assignment.registered() {
        return false;
    }
    if view.is_master() {
        return view.has_lease();
    }
    let me = &assignment.me;
    assignment
        .in_sync
        .iter()
        .any(|r| r.member_id == me.member_id && r.incarnation == me.incarnation)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};
    use tinysns_common::membership::{Assignment, Membership};
    use tinysns_common::proto::coordinator::{Member, ReplicaId, Role};

    fn view(role: Role, lease: Option<Duration>, in_sync: &[(u32, u64)]) -> RoleView {
        let membership = Membership::new();
        membership.assume(Assignment {
            role,
            term: 3,
            me: Member {
                member_id: 2,
                incarnation: 77,
                ..Member::default()
            },
            lease_until: lease.map(|d| Instant::now() + d),
            in_sync: in_sync
                .iter()
                .map(|(member_id, incarnation)| ReplicaId {
                    member_id: *member_id,
                    incarnation: *incarnation,
                })
                .collect(),
            ..Assignment::default()
        });
        membership.handle().current()
    }

    const LEASE: Option<Duration> = Some(Duration::from_secs(60));

    #[test]
    fn a_slave_is_ready_only_while_recorded_in_sync_under_its_incarnation() {
        assert!(is_ready(&view(Role::Slave, LEASE, &[(2, 77)])));
        // Still catching up.
        assert!(!is_ready(&view(Role::Slave, LEASE, &[])));
        assert!(!is_ready(&view(Role::Slave, LEASE, &[(3, 77)])));
        // In sync before its data directory was wiped, not now.
        assert!(!is_ready(&view(Role::Slave, LEASE, &[(2, 76)])));
    }

    #[test]
    fn a_master_is_ready_while_it_holds_its_lease() {
        assert!(is_ready(&view(Role::Master, LEASE, &[])));
        // The lease ran out: the coordinator may have made someone else master.
        assert!(!is_ready(&view(Role::Master, Some(Duration::ZERO), &[])));
    }

    #[test]
    fn nobody_is_ready_before_the_coordinator_answered() {
        assert!(!is_ready(&view(Role::Slave, None, &[(2, 77)])));
        assert!(!is_ready(&view(Role::Master, None, &[])));
    }
}
