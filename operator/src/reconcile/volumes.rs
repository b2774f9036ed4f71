//! The volume step of a reconcile, before the apply (the rules are in [`crate::volumes`]):
//! claims of a StatefulSet whose size grew are patched to the new size, then the
//! StatefulSet is deleted without its pods so that the apply recreates it with the new
//! claim template. A StorageClass that cannot expand refuses the patch: then the
//! StatefulSet keeps its template (the apply would be refused too) and status says why.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PropagationPolicy};
use kube::runtime::events::EventType;
use tracing::{info, warn};

use super::{Error, Run, is_rejection};
use crate::build::{Children, DATA_VOLUME, Owner, quantity};
use crate::crd::VolumeStatus;
use crate::volumes::{self, Claim, Phase, Wanted};

/// What the volume step saw, for status.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Volumes {
    pub claims: Vec<VolumeStatus>,
    /// Why a volume could not grow, if one could not.
    pub refused: Option<String>,
    /// StatefulSets deleted (without their pods) for a new claim template: not applied until
    /// the API server has removed them, or the apply would meet the old template.
    pub recreating: Vec<String>,
}

/// The size the data claim template of a StatefulSet asks for.
fn template_size(set: &StatefulSet) -> Option<&Quantity> {
    let claims = set.spec.as_ref()?.volume_claim_templates.as_ref()?;
    let data = claims
        .iter()
        .find(|c| c.metadata.name.as_deref() == Some(DATA_VOLUME))?;
    data.spec
        .as_ref()?
        .resources
        .as_ref()?
        .requests
        .as_ref()?
        .get("storage")
}

fn template_size_mut(set: &mut StatefulSet) -> Option<&mut Quantity> {
    let claims = set.spec.as_mut()?.volume_claim_templates.as_mut()?;
    let data = claims
        .iter_mut()
        .find(|c| c.metadata.name.as_deref() == Some(DATA_VOLUME))?;
    data.spec
        .as_mut()?
        .resources
        .as_mut()?
        .requests
        .as_mut()?
        .get_mut("storage")
}

fn units(q: Option<&Quantity>) -> Option<u64> {
    q.and_then(|q| quantity::to_units(q).ok())
}

fn claim_of(pvc: &PersistentVolumeClaim) -> (Claim, VolumeStatus) {
    let requested = pvc
        .spec
        .as_ref()
        .and_then(|s| s.resources.as_ref()?.requests.as_ref()?.get("storage").cloned());
    let capacity = pvc
        .status
        .as_ref()
        .and_then(|s| s.capacity.as_ref()?.get("storage").cloned());
    let claim = Claim {
        name: pvc.name_any(),
        requested: units(requested.as_ref()).unwrap_or(0),
        capacity: units(capacity.as_ref()),
    };
    let phase = match volumes::phase(&claim) {
        Phase::Ready => "Ready",
        Phase::Expanding => "Expanding",
    };
    let status = VolumeStatus {
        name: claim.name.clone(),
        requested: requested.map(|q| q.0).unwrap_or_default(),
        capacity: capacity.map(|q| q.0),
        phase: phase.to_owned(),
    };
    (claim, status)
}

impl Run<'_> {
    /// Grows what must grow; may change `children` (a StatefulSet whose volumes cannot grow
    /// keeps its old claim template).
    pub(super) async fn grow_volumes(&self, owner: &Owner, children: &mut Children) -> Result<Volumes, Error> {
        let client = &self.ctx.client;
        let selector = ListParams::default().labels(&owner.instance_selector());
        let sets: Api<StatefulSet> = Api::namespaced(client.clone(), &self.ns);
        let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &self.ns);
        let existing: BTreeMap<String, (u64, Quantity)> = sets
            .list(&selector)
            .await?
            .items
            .iter()
            .filter_map(|set| {
                let size = template_size(set)?;
                Some((set.name_any(), (units(Some(size))?, size.clone())))
            })
            .collect();
        let (claims, mut seen): (Vec<Claim>, Vec<VolumeStatus>) =
            pvcs.list(&selector).await?.items.iter().map(claim_of).unzip();
        let wanted: Vec<Wanted> = children
            .stateful_sets
            .iter()
            .filter_map(|set| {
                Some(Wanted {
                    set: set.name_any(),
                    size: units(template_size(set))?,
                })
            })
            .collect();
        let sizes = existing.iter().map(|(name, (size, _))| (name.clone(), *size)).collect();
        let mut refused = None;
        let mut recreating = Vec::new();
        for growth in volumes::plan(&wanted, &sizes, &claims, DATA_VOLUME) {
            let Some(set) = children.stateful_sets.iter_mut().find(|s| s.name_any() == growth.set) else {
                continue;
            };
            let Some(new_size) = template_size(set).cloned() else {
                continue;
            };
            match self.expand(&pvcs, &growth.expand, &new_size).await? {
                Ok(()) => {
                    sets.delete(
                        &growth.set,
                        &DeleteParams {
                            propagation_policy: Some(PropagationPolicy::Orphan),
                            ..DeleteParams::default()
                        },
                    )
                    .await?;
                    recreating.push(growth.set.clone());
                    let note = format!(
                        "{}: volumes grow to {}; the StatefulSet is recreated with the new claim template, its pods keep running",
                        growth.set, new_size.0
                    );
                    info!(object = %self.key(), %note, "growing volumes");
                    self.publish(EventType::Normal, "ExpandingVolumes", "Resize", note)
                        .await;
                    for status in seen.iter_mut().filter(|s| growth.expand.contains(&s.name)) {
                        status.requested = new_size.0.clone();
                        status.phase = "Expanding".to_owned();
                    }
                }
                Err(why) => {
                    if let (Some(size), Some((_, old))) = (template_size_mut(set), existing.get(&growth.set)) {
                        *size = old.clone();
                    }
                    refused = Some(format!(
                        "the volumes of {} cannot grow to {}: {why}. Use a StorageClass with allowVolumeExpansion: true (see docs/kubernetes.md)",
                        growth.set, new_size.0
                    ));
                }
            }
        }
        if let Some(message) = &refused {
            warn!(object = %self.key(), %message, "volume expansion refused");
        }
        Ok(Volumes {
            claims: seen,
            refused,
            recreating,
        })
    }

    /// Patches each claim to `size`; a refusal by the API server (the StorageClass does not
    /// allow expansion) is returned as its message.
    async fn expand(
        &self,
        pvcs: &Api<PersistentVolumeClaim>,
        claims: &[String],
        size: &Quantity,
    ) -> Result<Result<(), String>, Error> {
        let body = serde_json::json!({"spec": {"resources": {"requests": {"storage": size}}}});
        for name in claims {
            match pvcs.patch(name, &PatchParams::default(), &Patch::Merge(&body)).await {
                Ok(_) => {}
                Err(kube::Error::Api(status)) if is_rejection(&status) => return Ok(Err(status.message)),
                Err(e) => return Err(e.into()),
            }
        }
        Ok(Ok(()))
    }
}
