//! The rollout step of a reconcile (the rules are in [`crate::rollout`]): a manual
//! switchover asked for by annotation, then the one step `rollout::next_step` picks, taken
//! here: a pod deleted (its StatefulSet recreates it from the new template) or a planned
//! switchover asked of the coordinators.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::events::EventType;
use tracing::{info, warn};

use super::{Error, Run};
use crate::build::{COORDINATOR_INTERNAL_PORT, Credentials, Owner};
use crate::coordinators::{Endpoint, TlsPem};
use crate::crd::SocialCluster;
use crate::rollout::{self, ClusterRoles, PodState, SetKind, SetState, Step};

/// `kubectl annotate socialcluster NAME tinysns.io/switchover=<cluster>[/<server>]` hands
/// the cluster's master role to that server (or its best in-sync slave); the operator
/// removes the annotation once it has tried, and reports the outcome as an event.
pub const SWITCHOVER_ANNOTATION: &str = "tinysns.io/switchover";

/// The label a StatefulSet puts on each pod: the revision of the template it was made from.
const REVISION_LABEL: &str = "controller-revision-hash";

/// What the rollout saw and did this time, for status.
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    pub step: Step,
    /// The coordinators' view, when they were asked.
    pub roles: Option<BTreeMap<u32, ClusterRoles>>,
}

impl Progress {
    fn idle() -> Self {
        Self {
            step: Step::Done,
            roles: None,
        }
    }
}

/// A manual switchover request: the cluster, and the server to hand over to (or the best).
pub fn parse_switchover(value: &str, clusters: u32) -> Result<(u32, Option<u32>), String> {
    let (cluster, server) = match value.trim().split_once('/') {
        Some((c, s)) => (c, Some(s)),
        None => (value.trim(), None),
    };
    let cluster: u32 = cluster
        .parse()
        .ok()
        .filter(|c| (1..=clusters).contains(c))
        .ok_or_else(|| format!("{SWITCHOVER_ANNOTATION}={value:?}: the cluster must be 1 to {clusters}"))?;
    let server = server
        .map(|s| s.parse::<u32>().ok().filter(|s| *s > 0))
        .map(|s| s.ok_or_else(|| format!("{SWITCHOVER_ANNOTATION}={value:?}: the server must be a positive number")))
        .transpose()?;
    Ok((cluster, server))
}

/// Whether a StatefulSet has pods that do not run its newest template.
fn update_pending(sts: &StatefulSet) -> bool {
    let replicas = sts.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    sts.status.as_ref().is_some_and(|st| {
        // The API server omits a zero updatedReplicas; without an update revision the
        // status says nothing about revisions yet.
        st.update_revision.is_some() && st.updated_replicas.unwrap_or(0) < replicas
    })
}

/// The rollout's view of the StatefulSets and their pods.
pub fn observe(owner: &Owner, clusters: u32, stateful_sets: &[StatefulSet], pods: &[Pod]) -> Vec<SetState> {
    let kind_of = |name: &str| {
        if name == owner.coordinator_name() {
            return Some(SetKind::Coordinator);
        }
        (1..=clusters).find_map(|cluster| {
            if name == owner.tsd_name(cluster) {
                Some(SetKind::Tsd { cluster })
            } else if name == owner.sync_name(cluster) {
                Some(SetKind::Synchronizer { cluster })
            } else {
                None
            }
        })
    };
    stateful_sets
        .iter()
        .filter_map(|sts| {
            let name = sts.name_any();
            let kind = kind_of(&name)?;
            let revision = sts.status.as_ref().and_then(|s| s.update_revision.clone());
            let desired = sts.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
            let pods = pods
                .iter()
                .filter(|pod| {
                    pod.owner_references()
                        .iter()
                        .any(|r| r.kind == "StatefulSet" && r.name == name && r.controller == Some(true))
                })
                .filter_map(|pod| pod_state(pod, revision.as_deref()))
                .collect();
            Some(SetState {
                kind,
                desired: u32::try_from(desired).unwrap_or(0),
                pods,
            })
        })
        .collect()
}

fn pod_state(pod: &Pod, update_revision: Option<&str>) -> Option<PodState> {
    let name = pod.name_any();
    let ordinal = name.rsplit_once('-')?.1.parse().ok()?;
    let updated = match update_revision {
        Some(revision) => pod.labels().get(REVISION_LABEL).map(String::as_str) == Some(revision),
        None => true,
    };
    let ready = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|conditions| conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    Some(PodState {
        name,
        ordinal,
        updated,
        ready,
        terminating: pod.metadata.deletion_timestamp.is_some(),
    })
}

impl Run<'_> {
    /// Takes at most one rollout step (and a manual switchover, if one is asked for).
    pub(super) async fn roll(
        &self,
        owner: &Owner,
        credentials: &Credentials,
        stateful_sets: &[StatefulSet],
    ) -> Result<Progress, Error> {
        let asked = self.sc.annotations().get(SWITCHOVER_ANNOTATION).cloned();
        if asked.is_none() && !stateful_sets.iter().any(update_pending) {
            return Ok(Progress::idle());
        }
        let endpoint = self.endpoint(owner, credentials).await?;
        if let Some(value) = asked {
            self.manual_switchover(&endpoint, &value).await?;
        }
        let roles = match self.ctx.coordinators.roles(&endpoint).await {
            Ok(roles) => Some(roles),
            Err(error) => {
                warn!(object = %self.key(), %error, "cannot ask the coordinators who is master; the rollout waits");
                None
            }
        };
        let pods: Api<Pod> = Api::namespaced(self.ctx.client.clone(), &self.ns);
        let pods = pods
            .list(&ListParams::default().labels(&owner.instance_selector()))
            .await?
            .items;
        let sets = observe(owner, self.sc.spec.clusters, stateful_sets, &pods);
        let step = rollout::next_step(&sets, roles.as_ref());
        self.take(&endpoint, &step).await?;
        Ok(Progress { step, roles })
    }

    async fn take(&self, endpoint: &Endpoint, step: &Step) -> Result<(), Error> {
        match step {
            Step::Done | Step::Wait { .. } => Ok(()),
            Step::DeletePod { pod, .. } => {
                info!(object = %self.key(), %pod, "rolling update: deleting an outdated pod");
                let pods: Api<Pod> = Api::namespaced(self.ctx.client.clone(), &self.ns);
                match pods.delete(pod, &DeleteParams::default()).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(status)) if status.is_not_found() => {}
                    Err(e) => return Err(e.into()),
                }
                self.publish(EventType::Normal, "RollingUpdate", "DeletePod", step.to_string())
                    .await;
                Ok(())
            }
            Step::Switchover { cluster, to } => {
                match self.ctx.coordinators.switchover(endpoint, *cluster, Some(*to)).await {
                    Ok(master) => {
                        let note =
                            format!("cluster {cluster}: server {master} is master, before its old master is updated");
                        self.publish(EventType::Normal, "Switchover", "RollingUpdate", note)
                            .await;
                    }
                    Err(error) => {
                        let note = format!("cluster {cluster}: switchover to server {to} failed ({error}); retrying");
                        warn!(object = %self.key(), %note);
                        self.publish(EventType::Warning, "SwitchoverFailed", "RollingUpdate", note)
                            .await;
                    }
                }
                Ok(())
            }
        }
    }

    /// Runs the switchover the annotation asks for, reports it, and removes the annotation.
    async fn manual_switchover(&self, endpoint: &Endpoint, value: &str) -> Result<(), Error> {
        let (type_, reason, note) = match parse_switchover(value, self.sc.spec.clusters) {
            Err(why) => (EventType::Warning, "SwitchoverRefused", why),
            Ok((cluster, to)) => match self.ctx.coordinators.switchover(endpoint, cluster, to).await {
                Ok(master) => (
                    EventType::Normal,
                    "Switchover",
                    format!("cluster {cluster}: server {master} is master, as asked"),
                ),
                Err(error) => (
                    EventType::Warning,
                    "SwitchoverFailed",
                    format!("cluster {cluster}: switchover failed: {error}"),
                ),
            },
        };
        info!(object = %self.key(), %note, "manual switchover");
        self.publish(type_, reason, "Switchover", note).await;
        let api: Api<SocialCluster> = Api::namespaced(self.ctx.client.clone(), &self.ns);
        let remove = serde_json::json!({"metadata": {"annotations": {SWITCHOVER_ANNOTATION: null}}});
        api.patch(&self.sc.name_any(), &PatchParams::default(), &Patch::Merge(&remove))
            .await?;
        Ok(())
    }

    /// The coordinators' internal API, with the cluster secret and (with spec.tls) the
    /// members' certificate from their TLS Secret.
    async fn endpoint(&self, owner: &Owner, credentials: &Credentials) -> Result<Endpoint, Error> {
        let spec = &self.sc.spec;
        let addresses = owner
            .coordinator_hosts(spec.coordinator.replicas)
            .into_iter()
            .map(|host| format!("{host}:{COORDINATOR_INTERNAL_PORT}"))
            .collect();
        let tls = match &spec.tls {
            None => None,
            Some(tls) => {
                let secrets: Api<Secret> = Api::namespaced(self.ctx.client.clone(), &self.ns);
                let secret = secrets.get_opt(&tls.secret_name).await?;
                let key = |name: &str| {
                    secret
                        .as_ref()
                        .and_then(|s| s.data.as_ref())
                        .and_then(|d| d.get(name))
                        .map(|b| b.0.clone())
                        .unwrap_or_default()
                };
                Some(TlsPem {
                    cert: key("tls.crt"),
                    key: key("tls.key"),
                    ca: key("ca.crt"),
                })
            }
        };
        Ok(Endpoint {
            addresses,
            secret: credentials.cluster_secret.clone(),
            tls,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_switchover_annotation_names_a_cluster_and_maybe_a_server() {
        assert_eq!(parse_switchover("2", 3), Ok((2, None)));
        assert_eq!(parse_switchover(" 3/2 ", 3), Ok((3, Some(2))));
        for bad in ["0", "4", "x", "", "1/0", "1/x", "1/", "-1"] {
            let error = parse_switchover(bad, 3).expect_err(bad);
            assert!(error.contains(SWITCHOVER_ANNOTATION), "{error}");
        }
    }
}

#[cfg(test)]
pub(super) mod reconcile_tests;
