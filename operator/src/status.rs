//! Status conditions: Ready / Progressing / Degraded with observedGeneration, so that
//! `kubectl wait --for=condition=Ready socialcluster/NAME` works and a user can see why not.

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::ResourceExt;

use crate::build::{Owner, rabbitmq};
use crate::crd::{ClusterStatus, ReplicaCount, RoleReplicas, SocialCluster, SocialClusterStatus};
use crate::reconcile::Volumes;
use crate::reconcile::rolling::Progress;
use crate::rollout::Step;

pub const READY: &str = "Ready";
pub const PROGRESSING: &str = "Progressing";
pub const DEGRADED: &str = "Degraded";

pub const REASON_ALL_READY: &str = "AllReplicasReady";
pub const REASON_NOT_READY: &str = "ReplicasNotReady";
pub const REASON_ROLLING_OUT: &str = "RollingOut";
pub const REASON_COMPLETE: &str = "ReconcileComplete";
pub const REASON_AS_EXPECTED: &str = "AsExpected";
pub const REASON_INVALID_SPEC: &str = "InvalidSpec";
/// `<name>-cluster-secret` exists but holds nothing the binaries accept.
pub const REASON_INVALID_CLUSTER_SECRET: &str = "InvalidClusterSecret";
pub const REASON_PAUSED: &str = "Paused";
pub const REASON_APPLY_REJECTED: &str = "ApplyRejected";
/// The object does not decode as a SocialCluster.
pub const REASON_UNDECODABLE: &str = "UndecodableObject";
/// A volume asked to grow whose StorageClass does not allow expansion.
pub const REASON_VOLUME_EXPANSION_REFUSED: &str = "VolumeExpansionRefused";

/// Makes the conditions of one status update, against the conditions reported before.
struct Conditions<'a> {
    previous: &'a [Condition],
    generation: Option<i64>,
    now: &'a Time,
}

impl<'a> Conditions<'a> {
    fn of(sc: &'a SocialCluster, now: &'a Time) -> Self {
        Self {
            previous: previous_conditions(sc),
            generation: sc.metadata.generation,
            now,
        }
    }

    /// A condition whose lastTransitionTime moves only when its status changes, as the API
    /// conventions ask: otherwise every reconcile would look like a transition.
    fn set(&self, type_: &str, status: bool, reason: &str, message: String) -> Condition {
        let status = if status { "True" } else { "False" }.to_owned();
        let last_transition_time = self
            .previous
            .iter()
            .find(|c| c.type_ == type_ && c.status == status)
            .map(|c| c.last_transition_time.clone())
            .unwrap_or_else(|| self.now.clone());
        Condition {
            type_: type_.to_owned(),
            status,
            reason: reason.to_owned(),
            message,
            last_transition_time,
            observed_generation: self.generation,
        }
    }

    /// The condition of `type_` as reported before, if any.
    fn previous(&self, type_: &str) -> Option<Condition> {
        self.previous.iter().find(|c| c.type_ == type_).cloned()
    }
}

fn previous_conditions(sc: &SocialCluster) -> &[Condition] {
    sc.status.as_ref().map(|s| s.conditions.as_slice()).unwrap_or(&[])
}

/// Ready replicas of a StatefulSet that already run the current template, capped at the
/// desired count. Counting only updated pods keeps Ready false during a rolling update
/// (old pods are ready but not what the spec asks for); a status that predates the
/// current generation counts nothing yet.
fn sts_count(sts: Option<&StatefulSet>, desired: u32) -> ReplicaCount {
    let rollout = sts.and_then(|s| {
        let st = s.status.as_ref()?;
        Some(Rollout {
            generation: s.metadata.generation,
            observed: st.observed_generation,
            ready: st.ready_replicas,
            // The API server omits a zero updatedReplicas: with an update revision on record,
            // absent means none.
            updated: st.updated_replicas.or(st.update_revision.as_ref().map(|_| 0)),
        })
    });
    workload_count(rollout, desired)
}

/// Ready replicas of a Deployment that run the current template (its updated ones), capped
/// at the desired count, as for a StatefulSet.
fn deployment_count(deployment: Option<&Deployment>, desired: u32) -> ReplicaCount {
    let rollout = deployment.and_then(|d| {
        let st = d.status.as_ref()?;
        Some(Rollout {
            generation: d.metadata.generation,
            observed: st.observed_generation,
            ready: st.ready_replicas,
            updated: st.updated_replicas,
        })
    });
    workload_count(rollout, desired)
}

/// The status fields of a workload that tell how far its rollout got.
struct Rollout {
    generation: Option<i64>,
    observed: Option<i64>,
    ready: Option<i32>,
    updated: Option<i32>,
}

fn workload_count(rollout: Option<Rollout>, desired: u32) -> ReplicaCount {
    let ready = match rollout {
        Some(Rollout {
            generation,
            observed,
            ready,
            updated,
        }) if status_is_current(generation, observed) => {
            let ready = count(ready);
            // updatedReplicas is absent on a fresh status; then every pod is at the revision.
            updated.map_or(ready, |updated| ready.min(count(Some(updated))))
        }
        _ => 0,
    };
    ReplicaCount {
        ready: ready.min(desired),
        desired,
    }
}

fn count(replicas: Option<i32>) -> u32 {
    replicas.and_then(|r| u32::try_from(r).ok()).unwrap_or(0)
}

/// Whether a workload's status describes its current spec (unknown counts as current).
fn status_is_current(generation: Option<i64>, observed: Option<i64>) -> bool {
    match (generation, observed) {
        (Some(g), Some(o)) => o >= g,
        _ => true,
    }
}

/// The workloads as the API server returned them from the apply.
#[derive(Clone, Copy, Debug)]
pub struct Workloads<'a> {
    pub stateful_sets: &'a [StatefulSet],
    pub deployments: &'a [Deployment],
}

/// Status after a successful apply, computed from the objects the API server returned.
pub fn observed(
    sc: &SocialCluster,
    owner: &Owner,
    workloads: Workloads<'_>,
    progress: &Progress,
    volumes: &Volumes,
    now: &Time,
) -> SocialClusterStatus {
    let spec = &sc.spec;
    let Workloads {
        stateful_sets,
        deployments,
    } = workloads;
    let find_sts = |name: &str| stateful_sets.iter().find(|s| s.name_any() == name);
    let gateway = (spec.gateway.replicas > 0).then(|| {
        let name = owner.gateway_name();
        deployment_count(deployments.iter().find(|d| d.name_any() == name), spec.gateway.replicas)
    });

    let coordinator = sts_count(find_sts(&owner.coordinator_name()), spec.coordinator.replicas);
    let rabbitmq = rabbitmq::managed(spec).map(|managed| sts_count(find_sts(&owner.rabbitmq_name()), managed.replicas));
    let clusters: Vec<ClusterStatus> = (1..=spec.clusters)
        .map(|k| {
            let tsd = sts_count(find_sts(&owner.tsd_name(k)), spec.servers_per_cluster);
            let synchronizer = sts_count(find_sts(&owner.sync_name(k)), spec.synchronizers_per_cluster);
            ClusterStatus {
                id: k,
                tsd,
                synchronizer,
                phase: Some(cluster_phase(
                    k,
                    tsd.is_ready() && synchronizer.is_ready(),
                    &progress.step,
                )),
                master: progress
                    .roles
                    .as_ref()
                    .and_then(|roles| roles.get(&k))
                    .and_then(|r| r.master),
            }
        })
        .collect();
    let tsd = clusters.iter().fold(ReplicaCount::default(), |acc, c| acc.plus(c.tsd));
    let synchronizer = clusters
        .iter()
        .fold(ReplicaCount::default(), |acc, c| acc.plus(c.synchronizer));
    let ready_clusters = clusters
        .iter()
        .filter(|c| c.tsd.is_ready() && c.synchronizer.is_ready())
        .count();

    let mut not_ready = Vec::new();
    let mut check = |role: &str, count: ReplicaCount| {
        if !count.is_ready() {
            not_ready.push(format!("{role} {}/{}", count.ready, count.desired));
        }
    };
    check("coordinator", coordinator);
    if let Some(r) = rabbitmq {
        check("rabbitmq", r);
    }
    check("tsd", tsd);
    check("synchronizer", synchronizer);
    if let Some(g) = gateway {
        check("gateway", g);
    }
    let all_ready = not_ready.is_empty();

    let generation = sc.metadata.generation;
    let builder = Conditions::of(sc, now);
    let conditions = if let Some(phase) = progress.step.phase() {
        // A rollout under way: Progressing says which step, and why it waits if it does.
        let message = progress.step.to_string();
        let ready_message = if all_ready {
            "every replica is ready; updating".to_owned()
        } else {
            format!("waiting for {}", not_ready.join(", "))
        };
        vec![
            builder.set(
                READY,
                all_ready,
                if all_ready { REASON_ALL_READY } else { REASON_NOT_READY },
                ready_message,
            ),
            builder.set(PROGRESSING, true, phase.reason(), message),
            builder.set(DEGRADED, false, REASON_AS_EXPECTED, String::new()),
        ]
    } else if all_ready {
        vec![
            builder.set(
                READY,
                true,
                REASON_ALL_READY,
                format!("all {} clusters are ready", spec.clusters),
            ),
            builder.set(PROGRESSING, false, REASON_COMPLETE, "every replica is ready".to_owned()),
            builder.set(DEGRADED, false, REASON_AS_EXPECTED, String::new()),
        ]
    } else {
        let message = format!("waiting for {}", not_ready.join(", "));
        vec![
            builder.set(READY, false, REASON_NOT_READY, message.clone()),
            builder.set(PROGRESSING, true, REASON_ROLLING_OUT, message),
            builder.set(DEGRADED, false, REASON_AS_EXPECTED, String::new()),
        ]
    };

    let mut conditions = conditions;
    if let Some(message) = &volumes.refused {
        conditions.retain(|c| c.type_ != DEGRADED);
        conditions.push(builder.set(DEGRADED, true, REASON_VOLUME_EXPANSION_REFUSED, message.clone()));
    }
    SocialClusterStatus {
        observed_generation: generation,
        conditions,
        coordinator_address: Some(owner.coordinator_address(spec.coordinator.replicas)),
        ready_clusters: u32::try_from(ready_clusters).unwrap_or(u32::MAX),
        replicas: RoleReplicas {
            coordinator,
            tsd,
            synchronizer,
            rabbitmq,
            gateway,
        },
        clusters,
        volumes: volumes.claims.clone(),
    }
}

/// The phase of cluster `k`: the rollout step under way there, else whether it is ready.
fn cluster_phase(k: u32, ready: bool, step: &Step) -> String {
    match step.phase().filter(|p| p.cluster() == Some(k)) {
        Some(phase) => phase.reason().to_owned(),
        None if ready => "Ready".to_owned(),
        None => "NotReady".to_owned(),
    }
}

/// Status of a SocialCluster that does not decode: only conditions, since nothing else of
/// it can be read.
pub fn undecodable(message: &str, generation: Option<i64>, now: &Time) -> SocialClusterStatus {
    let condition = |type_: &str, status: bool, reason: &str, message: &str| Condition {
        type_: type_.to_owned(),
        status: if status { "True" } else { "False" }.to_owned(),
        reason: reason.to_owned(),
        message: message.to_owned(),
        observed_generation: generation,
        last_transition_time: now.clone(),
    };
    SocialClusterStatus {
        observed_generation: generation,
        conditions: vec![
            condition(READY, false, REASON_UNDECODABLE, message),
            condition(PROGRESSING, false, REASON_UNDECODABLE, ""),
            condition(DEGRADED, true, REASON_UNDECODABLE, message),
        ],
        ..SocialClusterStatus::default()
    }
}

/// Status of a SocialCluster the operator refuses to build (`reason`: InvalidSpec or
/// InvalidClusterSecret): Degraded with the message, replica counts kept from before
/// (nothing was changed).
pub fn invalid(sc: &SocialCluster, reason: &str, message: &str, now: &Time) -> SocialClusterStatus {
    let conditions = Conditions::of(sc, now);
    let mut status = sc.status.clone().unwrap_or_default();
    status.observed_generation = sc.metadata.generation;
    let (summary, fix) = if reason == REASON_INVALID_SPEC {
        ("the spec is invalid", "fix the spec to continue")
    } else {
        ("cannot build the children", "fix what Degraded names to continue")
    };
    status.conditions = vec![
        conditions.set(READY, false, reason, format!("{summary}: {message}")),
        conditions.set(PROGRESSING, false, reason, fix.to_owned()),
        conditions.set(DEGRADED, true, reason, message.to_owned()),
    ];
    status
}

/// Status when the API server rejected a child: Degraded/ApplyRejected. Ready keeps its
/// value (the running pods are untouched), replica counts are kept from before.
pub fn apply_rejected(sc: &SocialCluster, message: &str, now: &Time) -> SocialClusterStatus {
    let conditions = Conditions::of(sc, now);
    let mut status = sc.status.clone().unwrap_or_default();
    status.observed_generation = sc.metadata.generation;
    let ready = conditions
        .previous(READY)
        .unwrap_or_else(|| conditions.set(READY, false, REASON_APPLY_REJECTED, message.to_owned()));
    status.conditions = vec![
        ready,
        conditions.set(
            PROGRESSING,
            false,
            REASON_APPLY_REJECTED,
            "retrying with backoff; fix the spec or the object named in Degraded".to_owned(),
        ),
        conditions.set(DEGRADED, true, REASON_APPLY_REJECTED, message.to_owned()),
    ];
    status
}

/// Whether the status already says Degraded for `reason` with this exact message for this
/// generation (so a Warning event is published once per problem, not on every resync).
pub fn already_degraded(sc: &SocialCluster, reason: &str, message: &str) -> bool {
    previous_conditions(sc).iter().any(|c| {
        c.type_ == DEGRADED
            && c.status == "True"
            && c.reason == reason
            && c.message == message
            && c.observed_generation == sc.metadata.generation
    })
}

/// Status while paused: Progressing=False/Paused; Ready and Degraded keep what they were,
/// since the children keep running untouched.
pub fn paused(sc: &SocialCluster, now: &Time) -> SocialClusterStatus {
    let conditions = Conditions::of(sc, now);
    let mut status = sc.status.clone().unwrap_or_default();
    status.observed_generation = sc.metadata.generation;
    let keep = |type_: &str, default_reason: &str| {
        conditions
            .previous(type_)
            .unwrap_or_else(|| conditions.set(type_, false, default_reason, "reconciliation is paused".to_owned()))
    };
    status.conditions = vec![
        keep(READY, REASON_PAUSED),
        conditions.set(
            PROGRESSING,
            false,
            REASON_PAUSED,
            "spec.paused is true: child objects are not changed".to_owned(),
        ),
        keep(DEGRADED, REASON_AS_EXPECTED),
    ];
    status
}

/// Whether the status already says paused for this generation.
pub fn already_paused(sc: &SocialCluster) -> bool {
    previous_conditions(sc)
        .iter()
        .any(|c| c.type_ == PROGRESSING && c.reason == REASON_PAUSED && c.observed_generation == sc.metadata.generation)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::StatefulSetStatus;
    use kube::api::ObjectMeta;

    fn sts(generation: i64, observed: i64, ready: i32, updated: Option<i32>) -> StatefulSet {
        StatefulSet {
            metadata: ObjectMeta {
                generation: Some(generation),
                ..ObjectMeta::default()
            },
            status: Some(StatefulSetStatus {
                observed_generation: Some(observed),
                ready_replicas: Some(ready),
                updated_replicas: updated,
                replicas: 2,
                ..StatefulSetStatus::default()
            }),
            ..StatefulSet::default()
        }
    }

    #[test]
    fn only_updated_ready_pods_of_the_current_generation_count() {
        assert_eq!(sts_count(Some(&sts(2, 2, 2, Some(2))), 2).ready, 2);
        assert_eq!(sts_count(Some(&sts(2, 2, 2, Some(1))), 2).ready, 1, "rolling update");
        assert_eq!(sts_count(Some(&sts(3, 2, 2, Some(2))), 2).ready, 0, "status is stale");
        assert_eq!(sts_count(Some(&sts(2, 2, 2, None)), 2).ready, 2);
        assert_eq!(sts_count(Some(&sts(2, 2, 5, Some(5))), 2).ready, 2, "capped");
        assert_eq!(sts_count(None, 2), ReplicaCount { ready: 0, desired: 2 });
    }

    #[test]
    fn a_gateway_counts_its_updated_ready_pods_of_the_current_generation() {
        use k8s_openapi::api::apps::v1::DeploymentStatus;
        let deployment = |generation: i64, observed: i64, ready: i32, updated: Option<i32>| Deployment {
            metadata: ObjectMeta {
                generation: Some(generation),
                ..ObjectMeta::default()
            },
            status: Some(DeploymentStatus {
                observed_generation: Some(observed),
                ready_replicas: Some(ready),
                updated_replicas: updated,
                ..DeploymentStatus::default()
            }),
            ..Deployment::default()
        };
        assert_eq!(deployment_count(Some(&deployment(1, 1, 2, Some(2))), 2).ready, 2);
        assert_eq!(
            deployment_count(Some(&deployment(2, 2, 3, Some(1))), 2).ready,
            1,
            "rolling: old pods do not count"
        );
        assert_eq!(
            deployment_count(Some(&deployment(2, 1, 2, Some(2))), 2).ready,
            0,
            "stale"
        );
        assert_eq!(deployment_count(None, 2), ReplicaCount { ready: 0, desired: 2 });
    }

    #[test]
    fn last_transition_time_moves_only_on_change() {
        let t1 = Time(k8s_openapi::jiff::Timestamp::from_second(1).expect("valid"));
        let t2 = Time(k8s_openapi::jiff::Timestamp::from_second(2).expect("valid"));
        let first = Conditions {
            previous: &[],
            generation: Some(1),
            now: &t1,
        }
        .set(READY, false, "A", String::new());
        let history = [first];
        let later = Conditions {
            previous: &history,
            generation: Some(2),
            now: &t2,
        };
        let same = later.set(READY, false, "B", "m".into());
        assert_eq!(same.last_transition_time, t1);
        let flipped = later.set(READY, true, "C", String::new());
        assert_eq!(flipped.last_transition_time, t2);
    }
}
