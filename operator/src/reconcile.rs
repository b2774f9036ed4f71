//! The reconcile loop: validate → build → server-side apply (one field manager) → delete
//! orphaned children → status. Every step is idempotent, so a failure anywhere is retried
//! from the top by `error_policy` with backoff.

use std::collections::{HashMap, HashSet};
use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::{debug, info, warn};

use crate::build::{self, FIELD_MANAGER, Owner, rabbitmq};
use crate::crd::{SocialCluster, SocialClusterStatus};
use crate::metrics::Metrics;
use crate::status;

/// Requeue interval once everything is ready: a safety net, since changes to the children
/// already trigger a reconcile through the owner references.
pub const RESYNC_READY: Duration = Duration::from_secs(300);
/// Requeue interval while replicas are still coming up.
pub const RESYNC_PROGRESSING: Duration = Duration::from_secs(30);
/// Backoff bounds of `error_policy`.
pub const BACKOFF_MIN: Duration = Duration::from_secs(2);
pub const BACKOFF_MAX: Duration = Duration::from_secs(300);

/// What can make a reconcile fail (and be retried). An invalid spec is not an error: it is
/// reported in status and waits for the user.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API request failed: {0}")]
    Kube(#[from] kube::Error),
    #[error("could not serialize an object: {0}")]
    Serialize(#[from] serde_json::Error),
    #[error("the SocialCluster has no namespace")]
    MissingNamespace,
    #[error("a built object has no name")]
    UnnamedObject,
}

impl Error {
    /// Short label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube_error",
            Error::Serialize(_) => "serialize_error",
            Error::MissingNamespace | Error::UnnamedObject => "bad_object",
        }
    }
}

/// Shared state of all reconciles.
pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    /// Consecutive failures per object, for exponential backoff.
    failures: Mutex<HashMap<String, u32>>,
}

impl Context {
    pub fn new(client: Client, recorder: Recorder, metrics: Arc<Metrics>) -> Self {
        Self {
            client,
            recorder,
            metrics,
            failures: Mutex::new(HashMap::new()),
        }
    }

    fn failures(&self) -> std::sync::MutexGuard<'_, HashMap<String, u32>> {
        // A panic while holding this lock cannot leave the map inconsistent (single
        // insert/remove), so a poisoned lock is still usable.
        self.failures.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn object_key(sc: &SocialCluster) -> String {
    format!("{}/{}", sc.namespace().unwrap_or_default(), sc.name_any())
}

/// Entry point for the Controller: runs one reconcile and records its metrics.
pub async fn reconcile(sc: Arc<SocialCluster>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let result = reconcile_inner(&sc, &ctx).await;
    let label = match &result {
        Ok((_, outcome)) => outcome.label(),
        Err(e) => e.metric_label(),
    };
    ctx.metrics.observe(label, started.elapsed());
    if result.is_ok() {
        ctx.failures().remove(&object_key(&sc));
    }
    result.map(|(action, _)| action)
}

/// Exponential backoff per object: 2 s, 4 s, 8 s, … up to 5 min, reset by a success.
pub fn error_policy(sc: Arc<SocialCluster>, err: &Error, ctx: Arc<Context>) -> Action {
    let failures = {
        let mut map = ctx.failures();
        let n = map.entry(object_key(&sc)).or_insert(0);
        *n = n.saturating_add(1);
        *n
    };
    let delay = backoff(failures);
    warn!(
        object = %object_key(&sc),
        error = %err,
        failures,
        retry_in = ?delay,
        "reconcile failed"
    );
    Action::requeue(delay)
}

/// Delay before retry number `failures` (1-based).
pub fn backoff(failures: u32) -> Duration {
    let exp = failures.saturating_sub(1).min(16);
    BACKOFF_MIN.saturating_mul(1u32 << exp).min(BACKOFF_MAX)
}

/// How a successful reconcile ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Applied { ready: bool },
    InvalidSpec,
    Paused,
    Deleting,
}

impl Outcome {
    fn label(self) -> &'static str {
        match self {
            Outcome::Applied { .. } => "ok",
            Outcome::InvalidSpec => "invalid_spec",
            Outcome::Paused => "paused",
            Outcome::Deleting => "deleting",
        }
    }
}

/// The pipeline; returns what to do next and how it ended.
pub async fn reconcile_inner(sc: &SocialCluster, ctx: &Context) -> Result<(Action, Outcome), Error> {
    if sc.metadata.deletion_timestamp.is_some() {
        // Children carry owner references: the garbage collector removes them.
        return Ok((Action::await_change(), Outcome::Deleting));
    }
    let ns = sc.namespace().ok_or(Error::MissingNamespace)?;
    let now = Time(Timestamp::now());

    // validate
    let owner = match Owner::from_object(sc).and_then(|owner| {
        build::validate(&sc.spec)?;
        Ok(owner)
    }) {
        Ok(owner) => owner,
        Err(invalid) => {
            let message = invalid.to_string();
            info!(object = %object_key(sc), %message, "invalid spec");
            if !status::already_degraded(sc, status::REASON_INVALID_SPEC, &message) {
                publish(ctx, sc, EventType::Warning, "InvalidSpec", "Validate", message.clone()).await;
            }
            patch_status(ctx, sc, &ns, &status::invalid(sc, &message, &now)).await?;
            // Nothing changes until the user edits the spec, which triggers a reconcile.
            return Ok((Action::await_change(), Outcome::InvalidSpec));
        }
    };

    if sc.spec.paused {
        if !status::already_paused(sc) {
            publish(
                ctx,
                sc,
                EventType::Normal,
                "Paused",
                "Reconcile",
                "spec.paused is true: child objects are left as they are".to_owned(),
            )
            .await;
        }
        patch_status(ctx, sc, &ns, &status::paused(sc, &now)).await?;
        return Ok((Action::await_change(), Outcome::Paused));
    }

    // credentials: generated once, then read back so the password never changes.
    let password = match rabbitmq::managed(&sc.spec) {
        Some(_) => {
            let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
            let existing = secrets.get_opt(&owner.rabbitmq_secret_name()).await?;
            match existing.as_ref().and_then(rabbitmq::password_from_secret) {
                Some(p) => p,
                None => {
                    info!(object = %object_key(sc), "generating RabbitMQ credentials");
                    rabbitmq::generate_password()
                }
            }
        }
        None => String::new(),
    };

    // build
    let children = build::build_all(&owner, &sc.spec, &password);

    // apply: Secret before the workloads that read it, Services before the pods that resolve them.
    let (deployments, stateful_sets) = match apply_children(&ctx.client, &ns, &children).await {
        Ok(applied) => applied,
        Err(Error::Kube(kube::Error::Api(rejected))) if is_rejection(&rejected) => {
            // The API server refused an object (e.g. a changed storage size: StatefulSet
            // volumeClaimTemplates are immutable). Retrying alone will not help, so tell the
            // user in status and events; the error still goes to error_policy for backoff.
            let message = format!("the API server rejected a child object: {}", rejected.message);
            warn!(object = %object_key(sc), %message, "apply rejected");
            if !status::already_degraded(sc, status::REASON_APPLY_REJECTED, &message) {
                publish(
                    ctx,
                    sc,
                    EventType::Warning,
                    status::REASON_APPLY_REJECTED,
                    "Apply",
                    message.clone(),
                )
                .await;
            }
            if let Err(e) = patch_status(ctx, sc, &ns, &status::apply_rejected(sc, &message, &now)).await {
                warn!(object = %object_key(sc), error = %e, "could not report the rejection in status");
            }
            return Err(Error::Kube(kube::Error::Api(rejected)));
        }
        Err(e) => return Err(e),
    };

    // delete orphans: workloads first, so Services outlive the pods that use them.
    let mut deleted = Vec::new();
    deleted.extend(delete_orphans(&ctx.client, &ns, &owner, &children.stateful_sets).await?);
    deleted.extend(delete_orphans(&ctx.client, &ns, &owner, &children.deployments).await?);
    deleted.extend(delete_orphans(&ctx.client, &ns, &owner, &children.pdbs).await?);
    deleted.extend(delete_orphans(&ctx.client, &ns, &owner, &children.services).await?);
    deleted.extend(delete_orphans(&ctx.client, &ns, &owner, &children.secrets).await?);
    if !deleted.is_empty() {
        info!(object = %object_key(sc), ?deleted, "deleted orphaned children");
        publish(
            ctx,
            sc,
            EventType::Normal,
            "DeletedOrphans",
            "Reconcile",
            format!("deleted {}", deleted.join(", ")),
        )
        .await;
    }

    // status
    let new_status = status::observed(sc, &owner, &stateful_sets, &deployments, &now);
    let ready = new_status
        .conditions
        .iter()
        .any(|c| c.type_ == status::READY && c.status == "True");
    patch_status(ctx, sc, &ns, &new_status).await?;
    debug!(object = %object_key(sc), ready, "reconciled");
    let requeue = if ready { RESYNC_READY } else { RESYNC_PROGRESSING };
    Ok((Action::requeue(requeue), Outcome::Applied { ready }))
}

/// Applies every child in dependency order; returns the Deployments and StatefulSets as
/// stored, whose status feeds the SocialCluster status.
async fn apply_children(
    client: &Client,
    ns: &str,
    children: &build::Children,
) -> Result<(Vec<Deployment>, Vec<StatefulSet>), Error> {
    for secret in &children.secrets {
        apply(client, ns, secret).await?;
    }
    for svc in &children.services {
        apply(client, ns, svc).await?;
    }
    let mut deployments = Vec::new();
    for d in &children.deployments {
        deployments.push(apply(client, ns, d).await?);
    }
    let mut stateful_sets = Vec::new();
    for s in &children.stateful_sets {
        stateful_sets.push(apply(client, ns, s).await?);
    }
    for p in &children.pdbs {
        apply(client, ns, p).await?;
    }
    Ok((deployments, stateful_sets))
}

/// Whether an API error means "this object is not acceptable" rather than a transient
/// failure: 400 Bad Request, 403 Forbidden (RBAC or admission), 422 Invalid.
fn is_rejection(e: &kube::core::Status) -> bool {
    matches!(e.code, 400 | 403 | 422)
}

/// Server-side apply of one child with the operator's field manager; returns the object as
/// stored (including its status, which feeds the SocialCluster status).
async fn apply<K>(client: &Client, ns: &str, obj: &K) -> Result<K, Error>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()> + Clone + Debug + Serialize + DeserializeOwned,
{
    let name = obj.meta().name.clone().ok_or(Error::UnnamedObject)?;
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    let body = build::typed_value(obj)?;
    let params = PatchParams::apply(FIELD_MANAGER).force();
    Ok(api.patch(&name, &params, &Patch::Apply(&body)).await?)
}

/// Deletes children of kind K that carry this SocialCluster's labels and controller owner
/// reference but were not built this time (e.g. the clusters removed by a scale-down, or the
/// managed broker after switching to an external one). Returns "Kind/name" of each.
async fn delete_orphans<K>(client: &Client, ns: &str, owner: &Owner, desired: &[K]) -> Result<Vec<String>, Error>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()> + Clone + Debug + DeserializeOwned,
{
    let keep: HashSet<String> = desired.iter().map(ResourceExt::name_any).collect();
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    let existing = api
        .list(&ListParams::default().labels(&owner.instance_selector()))
        .await?;
    let mut deleted = Vec::new();
    for obj in existing {
        let name = obj.name_any();
        // Only delete what this SocialCluster controls: labels can be copied by hand.
        let controlled = obj
            .owner_references()
            .iter()
            .any(|r| r.controller == Some(true) && r.uid == owner.owner_ref.uid);
        if keep.contains(&name) || !controlled {
            continue;
        }
        match api.delete(&name, &DeleteParams::background()).await {
            Ok(_) => deleted.push(format!("{}/{name}", K::kind(&()))),
            // Already gone (e.g. deleted by hand meanwhile): that is what we wanted.
            Err(kube::Error::Api(status)) if status.is_not_found() => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(deleted)
}

/// Writes the status subresource by server-side apply with the same field manager.
async fn patch_status(ctx: &Context, sc: &SocialCluster, ns: &str, status: &SocialClusterStatus) -> Result<(), Error> {
    let api: Api<SocialCluster> = Api::namespaced(ctx.client.clone(), ns);
    let body = serde_json::json!({
        "apiVersion": SocialCluster::api_version(&()),
        "kind": SocialCluster::kind(&()),
        "status": status,
    });
    let params = PatchParams::apply(FIELD_MANAGER).force();
    api.patch_status(&sc.name_any(), &params, &Patch::Apply(&body)).await?;
    Ok(())
}

/// Publishes an Event on the SocialCluster. Best effort: failing to record an event must
/// not fail (and retry) the reconcile.
async fn publish(ctx: &Context, sc: &SocialCluster, type_: EventType, reason: &str, action: &str, note: String) {
    let event = Event {
        type_,
        reason: reason.to_owned(),
        note: Some(note),
        action: action.to_owned(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, &sc.object_ref(&())).await {
        warn!(object = %object_key(sc), error = %e, "could not publish event");
    }
}

#[cfg(test)]
mod tests;
