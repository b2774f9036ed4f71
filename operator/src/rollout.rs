//! Rolling updates the operator drives (CloudNativePG's pattern), as a pure function.
//!
//! Every tinysns StatefulSet uses the `OnDelete` update strategy: a changed pod template
//! replaces no pod by itself. Each reconcile looks at the pods (which revision each runs,
//! whether it is ready; a tsd is ready only while it is in sync) and at the coordinators'
//! view (who is master, who is in sync), and [`next_step`] picks at most one thing to do:
//!
//! 1. the coordinators, one pod at a time, each only while all of them are ready;
//! 2. then cluster by cluster: its synchronizers (slaves first), then its tsd slaves one at
//!    a time, each back in sync before the next; then a planned switchover of the master to
//!    an updated in-sync slave; then the old master, now a slave;
//! 3. never a step in one cluster while another cluster has no master or a pod that is not
//!    ready: a rollout does not take a second cluster down while one is unavailable.
//!
//! Pods stopped this way leave their cluster first (SIGTERM: a slave leaves the in-sync set,
//! a master hands over), so no write waits for them.

use std::collections::BTreeMap;
use std::fmt;

/// Which StatefulSet a pod belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SetKind {
    Coordinator,
    Synchronizer { cluster: u32 },
    Tsd { cluster: u32 },
}

/// What the operator sees of one pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodState {
    pub name: String,
    /// Its ordinal in the StatefulSet; a member's id is the ordinal + 1.
    pub ordinal: u32,
    /// Runs the StatefulSet's update revision (its newest template).
    pub updated: bool,
    pub ready: bool,
    /// Being deleted.
    pub terminating: bool,
}

impl PodState {
    pub fn member_id(&self) -> u32 {
        self.ordinal + 1
    }
}

/// What the operator sees of one StatefulSet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetState {
    pub kind: SetKind,
    pub desired: u32,
    pub pods: Vec<PodState>,
}

impl SetState {
    /// Every desired pod exists, is ready and not being deleted.
    fn available(&self) -> bool {
        self.pods.len() >= self.desired as usize && self.pods.iter().all(|p| p.ready && !p.terminating)
    }

    fn outdated(&self) -> impl Iterator<Item = &PodState> {
        self.pods.iter().filter(|p| !p.updated && !p.terminating)
    }
}

/// The coordinators' view of one cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterRoles {
    /// Member id of the master tsd.
    pub master: Option<u32>,
    /// Member ids of the tsd slaves in sync with it.
    pub in_sync: Vec<u32>,
    /// Member id of the master synchronizer.
    pub sync_master: Option<u32>,
}

/// The one thing to do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Every pod runs its newest template.
    Done,
    Wait {
        phase: Phase,
        why: String,
    },
    DeletePod {
        phase: Phase,
        pod: String,
    },
    Switchover {
        cluster: u32,
        to: u32,
    },
}

/// Where a rollout stands, for status (the Progressing condition's reason).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Coordinators,
    Synchronizers {
        cluster: u32,
    },
    Slaves {
        cluster: u32,
    },
    Switchover {
        cluster: u32,
    },
    Master {
        cluster: u32,
    },
    /// Something is unavailable; the rollout waits for it.
    Blocked {
        cluster: Option<u32>,
    },
}

impl Phase {
    /// The reason of the Progressing condition.
    pub fn reason(self) -> &'static str {
        match self {
            Phase::Coordinators => "RollingCoordinators",
            Phase::Synchronizers { .. } => "RollingSynchronizers",
            Phase::Slaves { .. } => "RollingSlaves",
            Phase::Switchover { .. } => "SwitchingOver",
            Phase::Master { .. } => "RollingOldMaster",
            Phase::Blocked { .. } => "RolloutWaiting",
        }
    }

    pub fn cluster(self) -> Option<u32> {
        match self {
            Phase::Coordinators => None,
            Phase::Synchronizers { cluster }
            | Phase::Slaves { cluster }
            | Phase::Switchover { cluster }
            | Phase::Master { cluster } => Some(cluster),
            Phase::Blocked { cluster } => cluster,
        }
    }
}

impl Step {
    pub fn phase(&self) -> Option<Phase> {
        match self {
            Step::Done => None,
            Step::Wait { phase, .. } | Step::DeletePod { phase, .. } => Some(*phase),
            Step::Switchover { cluster, .. } => Some(Phase::Switchover { cluster: *cluster }),
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Done => write!(f, "every pod runs its newest template"),
            Step::Wait { why, .. } => write!(f, "waiting: {why}"),
            Step::DeletePod { pod, .. } => write!(f, "deleting pod {pod} to update it"),
            Step::Switchover { cluster, to } => {
                write!(
                    f,
                    "switching cluster {cluster} over to server {to} before updating its master"
                )
            }
        }
    }
}

fn wait(phase: Phase, why: impl Into<String>) -> Step {
    Step::Wait { phase, why: why.into() }
}

/// The next step of the rollout. `roles` is the coordinators' view (None: they could not be
/// asked, so no tsd or synchronizer is touched).
pub fn next_step(sets: &[SetState], roles: Option<&BTreeMap<u32, ClusterRoles>>) -> Step {
    // A pod being deleted is a step under way: wait for its replacement.
    if let Some(pod) = sets.iter().flat_map(|s| &s.pods).find(|p| p.terminating) {
        return wait(
            Phase::Blocked { cluster: None },
            format!("pod {} is stopping", pod.name),
        );
    }
    if let Some(step) = coordinators(sets) {
        return step;
    }
    let Some(roles) = roles else {
        let pending = sets.iter().any(|s| s.outdated().next().is_some());
        return if pending {
            wait(
                Phase::Blocked { cluster: None },
                "the coordinators cannot be asked who is master",
            )
        } else {
            Step::Done
        };
    };
    let mut clusters: Vec<u32> = sets
        .iter()
        .filter_map(|s| match s.kind {
            SetKind::Tsd { cluster } | SetKind::Synchronizer { cluster } => Some(cluster),
            SetKind::Coordinator => None,
        })
        .collect();
    clusters.sort_unstable();
    clusters.dedup();
    for &cluster in &clusters {
        let of = |kind: SetKind| sets.iter().find(|s| s.kind == kind);
        let tsd = of(SetKind::Tsd { cluster });
        let syncs = of(SetKind::Synchronizer { cluster });
        let pending =
            tsd.is_some_and(|s| s.outdated().next().is_some()) || syncs.is_some_and(|s| s.outdated().next().is_some());
        if !pending {
            continue;
        }
        if let Some(blocked) = unavailable_elsewhere(sets, roles, &clusters, cluster) {
            return blocked;
        }
        let view = roles.get(&cluster).cloned().unwrap_or_default();
        if let Some(step) = syncs.and_then(|s| synchronizers(s, cluster, &view)) {
            return step;
        }
        if let Some(step) = tsd.and_then(|s| servers(s, cluster, &view)) {
            return step;
        }
    }
    Step::Done
}

/// Coordinators, one at a time, only while every one of them is ready (a majority must stay).
fn coordinators(sets: &[SetState]) -> Option<Step> {
    let set = sets.iter().find(|s| s.kind == SetKind::Coordinator)?;
    let pod = set.outdated().max_by_key(|p| p.ordinal)?;
    if !set.available() {
        return Some(wait(Phase::Coordinators, "waiting for every coordinator to be ready"));
    }
    Some(Step::DeletePod {
        phase: Phase::Coordinators,
        pod: pod.name.clone(),
    })
}

/// A cluster other than `cluster` without a master or with a pod not ready.
fn unavailable_elsewhere(
    sets: &[SetState],
    roles: &BTreeMap<u32, ClusterRoles>,
    clusters: &[u32],
    cluster: u32,
) -> Option<Step> {
    for &other in clusters.iter().filter(|c| **c != cluster) {
        let blocked = Phase::Blocked { cluster: Some(other) };
        if roles.get(&other).and_then(|r| r.master).is_none() {
            return Some(wait(blocked, format!("cluster {other} has no master")));
        }
        let not_ready = sets
            .iter()
            .filter(
                |s| matches!(s.kind, SetKind::Tsd { cluster: c } | SetKind::Synchronizer { cluster: c } if c == other),
            )
            .find(|s| !s.available());
        if let Some(set) = not_ready {
            let what = match set.kind {
                SetKind::Tsd { .. } => "servers",
                _ => "synchronizers",
            };
            return Some(wait(blocked, format!("cluster {other}: not all its {what} are ready")));
        }
    }
    None
}

/// A cluster's synchronizers, slaves first, each only while the others are ready.
fn synchronizers(set: &SetState, cluster: u32, view: &ClusterRoles) -> Option<Step> {
    let phase = Phase::Synchronizers { cluster };
    let is_master = |p: &PodState| view.sync_master == Some(p.member_id());
    let pod = set.outdated().min_by_key(|p| (is_master(p), p.ordinal))?;
    if !set.available() {
        return Some(wait(
            phase,
            format!("cluster {cluster}: waiting for every synchronizer to be ready"),
        ));
    }
    Some(Step::DeletePod {
        phase,
        pod: pod.name.clone(),
    })
}

/// A cluster's servers: slaves one at a time (each back in sync before the next), then a
/// switchover to an updated in-sync slave, then the old master.
fn servers(set: &SetState, cluster: u32, view: &ClusterRoles) -> Option<Step> {
    let outdated: Vec<&PodState> = set.outdated().collect();
    if outdated.is_empty() {
        return None;
    }
    let Some(master) = view.master else {
        return Some(wait(
            Phase::Blocked { cluster: Some(cluster) },
            format!("cluster {cluster} has no master"),
        ));
    };
    // A slave that is not ready holds nothing anyone waits for: updating it is safe, and may
    // be what makes it ready again. Ready slaves go one at a time, while all are ready.
    let slaves = outdated.iter().filter(|p| p.member_id() != master);
    if let Some(pod) = slaves.min_by_key(|p| (p.ready, p.ordinal)) {
        let phase = Phase::Slaves { cluster };
        let others_ready = set.pods.iter().filter(|p| p.name != pod.name).all(|p| p.ready);
        if pod.ready && !others_ready {
            return Some(wait(
                phase,
                format!("cluster {cluster}: waiting for its servers to be in sync"),
            ));
        }
        return Some(Step::DeletePod {
            phase,
            pod: pod.name.clone(),
        });
    }
    // Only the master is left.
    let old = outdated.first()?;
    let target = set
        .pods
        .iter()
        .filter(|p| p.updated && p.ready && view.in_sync.contains(&p.member_id()))
        .min_by_key(|p| p.ordinal);
    match target {
        Some(to) => Some(Step::Switchover {
            cluster,
            to: to.member_id(),
        }),
        // A cluster of one server: there is nobody to hand over to, and updating it costs an
        // outage whenever it happens.
        None if set.desired <= 1 => Some(Step::DeletePod {
            phase: Phase::Master { cluster },
            pod: old.name.clone(),
        }),
        None => Some(wait(
            Phase::Switchover { cluster },
            format!("cluster {cluster}: waiting for an updated slave in sync to hand the master's role to"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(set: &str, ordinal: u32, updated: bool, ready: bool) -> PodState {
        PodState {
            name: format!("{set}-{ordinal}"),
            ordinal,
            updated,
            ready,
            terminating: false,
        }
    }

    fn set(kind: SetKind, pods: Vec<PodState>) -> SetState {
        SetState {
            kind,
            desired: pods.len() as u32,
            pods,
        }
    }

    /// Coordinators updated; per cluster, two servers and one synchronizer.
    fn system(updated_tsd: &[(u32, u32)], ready: bool) -> Vec<SetState> {
        let mut sets = vec![set(
            SetKind::Coordinator,
            (0..3).map(|o| pod("sc-coordinator", o, true, true)).collect(),
        )];
        for cluster in 1..=2 {
            let name = format!("sc-tsd-{cluster}");
            sets.push(set(
                SetKind::Tsd { cluster },
                (0..2)
                    .map(|o| pod(&name, o, updated_tsd.contains(&(cluster, o + 1)), ready))
                    .collect(),
            ));
            sets.push(set(
                SetKind::Synchronizer { cluster },
                vec![pod(&format!("sc-sync-{cluster}"), 0, true, true)],
            ));
        }
        sets
    }

    /// Server 1 master of both clusters, server 2 in sync.
    fn roles() -> BTreeMap<u32, ClusterRoles> {
        (1..=2)
            .map(|c| {
                (
                    c,
                    ClusterRoles {
                        master: Some(1),
                        in_sync: vec![2],
                        sync_master: Some(1),
                    },
                )
            })
            .collect()
    }

    fn deletes(step: &Step) -> &str {
        match step {
            Step::DeletePod { pod, .. } => pod,
            other => panic!("expected a pod deletion, got {other:?}"),
        }
    }

    #[test]
    fn nothing_outdated_is_done() {
        let sets = system(&[(1, 1), (1, 2), (2, 1), (2, 2)], true);
        assert_eq!(next_step(&sets, Some(&roles())), Step::Done);
        assert_eq!(next_step(&sets, None), Step::Done);
    }

    #[test]
    fn coordinators_go_first_one_at_a_time_highest_ordinal_first() {
        let mut sets = system(&[], true);
        for p in &mut sets[0].pods {
            p.updated = false;
        }
        assert_eq!(deletes(&next_step(&sets, Some(&roles()))), "sc-coordinator-2");
        // Its replacement is not ready yet: nothing else moves.
        sets[0].pods[2] = pod("sc-coordinator", 2, true, false);
        let step = next_step(&sets, Some(&roles()));
        assert_eq!(step.phase(), Some(Phase::Coordinators));
        assert!(matches!(step, Step::Wait { .. }));
        sets[0].pods[2].ready = true;
        assert_eq!(deletes(&next_step(&sets, Some(&roles()))), "sc-coordinator-1");
    }

    #[test]
    fn a_cluster_rolls_its_slave_then_switches_over_then_rolls_the_old_master() {
        let mut sets = system(&[(2, 1), (2, 2)], true);
        let mut view = roles();
        // Cluster 1: slave (server 2, ordinal 1) first.
        let step = next_step(&sets, Some(&view));
        assert_eq!(deletes(&step), "sc-tsd-1-1");
        assert_eq!(step.phase(), Some(Phase::Slaves { cluster: 1 }));
        // Back, updated, but not yet in sync: wait.
        sets[1].pods[1] = pod("sc-tsd-1", 1, true, false);
        view.get_mut(&1).unwrap().in_sync.clear();
        let step = next_step(&sets, Some(&view));
        assert!(matches!(step, Step::Wait { .. }), "{step:?}");
        // In sync: hand the master's role to it.
        sets[1].pods[1].ready = true;
        view.get_mut(&1).unwrap().in_sync = vec![2];
        assert_eq!(next_step(&sets, Some(&view)), Step::Switchover { cluster: 1, to: 2 });
        // Switched: server 1 is now an outdated slave.
        view.insert(
            1,
            ClusterRoles {
                master: Some(2),
                in_sync: vec![1],
                sync_master: Some(1),
            },
        );
        let step = next_step(&sets, Some(&view));
        assert_eq!(deletes(&step), "sc-tsd-1-0");
        sets[1].pods[0] = pod("sc-tsd-1", 0, true, true);
        assert_eq!(next_step(&sets, Some(&view)), Step::Done);
    }

    #[test]
    fn no_step_in_one_cluster_while_another_is_unavailable() {
        let mut sets = system(&[(1, 1), (1, 2)], true);
        let mut view = roles();
        // Cluster 1 is done; cluster 2 is outdated, but cluster 1 lost its master.
        view.get_mut(&1).unwrap().master = None;
        let step = next_step(&sets, Some(&view));
        assert_eq!(step.phase(), Some(Phase::Blocked { cluster: Some(1) }), "{step:?}");
        view = roles();
        sets[1].pods[0].ready = false;
        let step = next_step(&sets, Some(&view));
        assert_eq!(step.phase(), Some(Phase::Blocked { cluster: Some(1) }), "{step:?}");
    }

    #[test]
    fn a_stopping_pod_holds_everything_and_an_unknown_master_touches_nothing() {
        let mut sets = system(&[], true);
        sets[3].pods[0].terminating = true;
        assert!(matches!(next_step(&sets, Some(&roles())), Step::Wait { .. }));
        let sets = system(&[], true);
        let step = next_step(&sets, None);
        assert_eq!(step.phase(), Some(Phase::Blocked { cluster: None }));
        let mut view = roles();
        view.get_mut(&1).unwrap().master = None;
        let step = next_step(&sets, Some(&view));
        assert_eq!(step.phase(), Some(Phase::Blocked { cluster: Some(1) }), "{step:?}");
    }

    #[test]
    fn the_master_waits_for_an_updated_in_sync_slave() {
        // Server 2 updated but not in sync (catching up): no switchover to it.
        let sets = system(&[(1, 2), (2, 1), (2, 2)], true);
        let mut view = roles();
        view.get_mut(&1).unwrap().in_sync.clear();
        let step = next_step(&sets, Some(&view));
        assert_eq!(step.phase(), Some(Phase::Switchover { cluster: 1 }));
        assert!(matches!(step, Step::Wait { .. }), "{step:?}");
    }

    #[test]
    fn a_slave_that_is_not_ready_is_updated_first_and_does_not_block() {
        let mut sets = system(&[(2, 1), (2, 2)], true);
        // Three servers in cluster 1: server 3 is outdated and not ready (crash-looping).
        sets[1].pods.push(pod("sc-tsd-1", 2, false, false));
        sets[1].desired = 3;
        assert_eq!(deletes(&next_step(&sets, Some(&roles()))), "sc-tsd-1-2");
    }

    #[test]
    fn a_single_server_cluster_is_updated_in_place() {
        let mut sets = system(&[(2, 1), (2, 2)], true);
        sets[1].pods.truncate(1);
        sets[1].desired = 1;
        let mut view = roles();
        view.get_mut(&1).unwrap().in_sync.clear();
        let step = next_step(&sets, Some(&view));
        assert_eq!(deletes(&step), "sc-tsd-1-0");
        assert_eq!(step.phase(), Some(Phase::Master { cluster: 1 }));
    }

    #[test]
    fn synchronizers_roll_before_servers_slaves_first() {
        let mut sets = system(&[(1, 1), (1, 2), (2, 1), (2, 2)], true);
        sets[2] = set(
            SetKind::Synchronizer { cluster: 1 },
            vec![pod("sc-sync-1", 0, false, true), pod("sc-sync-1", 1, false, true)],
        );
        // Synchronizer 1 is master: synchronizer 2 goes first.
        let step = next_step(&sets, Some(&roles()));
        assert_eq!(deletes(&step), "sc-sync-1-1");
        assert_eq!(step.phase(), Some(Phase::Synchronizers { cluster: 1 }));
    }
}
