//! The reconcile loop: validate → build → server-side apply (one field manager) → delete
//! orphaned children → one rollout step (`rolling`) → status. Every step is idempotent, so a failure anywhere is retried
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
use kube::core::DeserializeGuard;
use kube::core::error_boundary::InvalidObject;
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::{debug, info, warn};

use crate::build::security::{self, UnusableSecret};
use crate::build::{self, Credentials, FIELD_MANAGER, InvalidSpec, Owner, rabbitmq};
use crate::coordinators::CoordinatorApi;
use crate::crd::{SocialCluster, SocialClusterStatus};
use crate::metrics::Metrics;
use crate::status;

/// Requeue interval once everything is ready: a safety net, since changes to the children
/// already trigger a reconcile through the owner references.
pub const RESYNC_READY: Duration = Duration::from_secs(300);
/// Requeue interval while replicas are still coming up.
pub const RESYNC_PROGRESSING: Duration = Duration::from_secs(30);
/// Requeue interval while a rollout is under way (pod events also trigger reconciles).
pub const RESYNC_ROLLING: Duration = Duration::from_secs(5);
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
    pub environment: build::Environment,
    /// The SocialClusters' coordinators (who is master; planned switchovers).
    pub coordinators: Arc<dyn CoordinatorApi>,
    /// Consecutive failures per object, for exponential backoff.
    failures: Mutex<HashMap<String, u32>>,
    /// Whether the cluster has ServiceMonitors (discovery, cached).
    service_monitor_resource: tokio::sync::Mutex<monitoring::Discovered>,
}

impl Context {
    pub fn new(
        client: Client,
        recorder: Recorder,
        metrics: Arc<Metrics>,
        environment: build::Environment,
        coordinators: Arc<dyn CoordinatorApi>,
    ) -> Self {
        Self {
            client,
            recorder,
            metrics,
            environment,
            coordinators,
            failures: Mutex::new(HashMap::new()),
            service_monitor_resource: tokio::sync::Mutex::new(None),
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

/// Entry point for the Controller. The watch decodes each SocialCluster through a
/// [`DeserializeGuard`], so one object that does not decode (written before a schema change,
/// or by a client that skipped validation) is reported on itself instead of stopping the
/// watch of every SocialCluster in scope.
pub async fn reconcile_guarded(
    guard: Arc<DeserializeGuard<SocialCluster>>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    match &guard.0 {
        Ok(sc) => reconcile(Arc::new(sc.clone()), ctx).await,
        Err(invalid) => {
            let started = Instant::now();
            let result = report_undecodable(invalid, &ctx).await;
            ctx.metrics.observe(
                match &result {
                    Ok(_) => "undecodable",
                    Err(e) => e.metric_label(),
                },
                started.elapsed(),
            );
            result
        }
    }
}

/// `error_policy` for the guarded watch.
pub fn error_policy_guarded(guard: Arc<DeserializeGuard<SocialCluster>>, err: &Error, ctx: Arc<Context>) -> Action {
    let key = format!(
        "{}/{}",
        guard.meta().namespace.as_deref().unwrap_or_default(),
        guard.meta().name.as_deref().unwrap_or_default()
    );
    retry_after_failure(&key, err, &ctx)
}

/// Why a SocialCluster cannot be read: a Warning event and a Degraded status on it. Nothing
/// else is touched; an edit of the object triggers the next attempt.
pub async fn report_undecodable(invalid: &InvalidObject, ctx: &Context) -> Result<Action, Error> {
    let meta = &invalid.metadata;
    let ns = meta.namespace.clone().ok_or(Error::MissingNamespace)?;
    let name = meta.name.clone().ok_or(Error::UnnamedObject)?;
    let message = format!("the operator cannot read this SocialCluster: {}", invalid.error);
    warn!(object = %format!("{ns}/{name}"), %message, "undecodable object");
    let reference = k8s_openapi::api::core::v1::ObjectReference {
        api_version: Some(SocialCluster::api_version(&()).into_owned()),
        kind: Some(SocialCluster::kind(&()).into_owned()),
        name: Some(name.clone()),
        namespace: Some(ns.clone()),
        uid: meta.uid.clone(),
        ..Default::default()
    };
    let event = Event {
        type_: EventType::Warning,
        reason: status::REASON_UNDECODABLE.to_owned(),
        note: Some(message.clone()),
        action: "Decode".to_owned(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, &reference).await {
        warn!(error = %e, "could not publish event");
    }
    let api: Api<DeserializeGuard<SocialCluster>> = Api::namespaced(ctx.client.clone(), &ns);
    let body = serde_json::json!({
        "apiVersion": SocialCluster::api_version(&()),
        "kind": SocialCluster::kind(&()),
        "status": status::undecodable(&message, meta.generation, &Time(Timestamp::now())),
    });
    api.patch_status(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&body))
        .await?;
    Ok(Action::await_change())
}

/// Entry point for one decoded SocialCluster: runs one reconcile and records its metrics.
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
    retry_after_failure(&object_key(&sc), err, &ctx)
}

fn retry_after_failure(key: &str, err: &Error, ctx: &Context) -> Action {
    let failures = {
        let mut map = ctx.failures();
        let n = map.entry(key.to_owned()).or_insert(0);
        *n = n.saturating_add(1);
        *n
    };
    let delay = backoff(failures);
    warn!(
        object = %key,
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
    InvalidClusterSecret,
    Paused,
    Deleting,
}

impl Outcome {
    fn label(self) -> &'static str {
        match self {
            Outcome::Applied { .. } => "ok",
            Outcome::InvalidSpec => "invalid_spec",
            Outcome::InvalidClusterSecret => "invalid_cluster_secret",
            Outcome::Paused => "paused",
            Outcome::Deleting => "deleting",
        }
    }
}

/// Why nothing can be built until the user acts: reported as Degraded with its reason and a
/// Warning event; nothing is retried with backoff.
#[derive(Debug, thiserror::Error)]
enum Blocked {
    #[error(transparent)]
    Spec(#[from] InvalidSpec),
    #[error(
        "{0}. Correct it, or delete it to have a new one generated and then restart every tinysns pod of this SocialCluster"
    )]
    ClusterSecret(#[from] UnusableSecret),
}

impl Blocked {
    fn reason(&self) -> &'static str {
        match self {
            Blocked::Spec(_) => status::REASON_INVALID_SPEC,
            Blocked::ClusterSecret(_) => status::REASON_INVALID_CLUSTER_SECRET,
        }
    }

    fn outcome(&self) -> Outcome {
        match self {
            Blocked::Spec(_) => Outcome::InvalidSpec,
            Blocked::ClusterSecret(_) => Outcome::InvalidClusterSecret,
        }
    }

    /// An edit of the spec triggers a reconcile. A Secret created by hand carries none of the
    /// labels the operator watches, so fixing or deleting it is only noticed by looking again.
    fn action(&self) -> Action {
        match self {
            Blocked::Spec(_) => Action::await_change(),
            Blocked::ClusterSecret(_) => Action::requeue(RESYNC_PROGRESSING),
        }
    }
}

/// One reconcile of one SocialCluster: what every step needs.
struct Run<'a> {
    ctx: &'a Context,
    sc: &'a SocialCluster,
    ns: String,
    now: Time,
}

/// The pipeline; returns what to do next and how it ended.
pub async fn reconcile_inner(sc: &SocialCluster, ctx: &Context) -> Result<(Action, Outcome), Error> {
    if sc.metadata.deletion_timestamp.is_some() {
        // Children carry owner references: the garbage collector removes them.
        return Ok((Action::await_change(), Outcome::Deleting));
    }
    let run = Run {
        ctx,
        sc,
        ns: sc.namespace().ok_or(Error::MissingNamespace)?,
        now: Time(Timestamp::now()),
    };
    let validated = match build::check(sc, &ctx.environment) {
        Ok(validated) => validated,
        Err(invalid) => return run.blocked(invalid.into()).await,
    };
    if sc.spec.paused {
        return run.paused().await;
    }
    let owner = validated.owner();
    let credentials = match run.credentials(owner).await? {
        Ok(credentials) => credentials,
        Err(unusable) => return run.blocked(unusable.into()).await,
    };
    let mut children = build::build_all(&validated, &credentials);
    let volumes = run.grow_volumes(owner, &mut children).await?;
    let Applied {
        stateful_sets,
        deployments,
    } = run.apply(&children, &volumes.recreating).await?;
    run.delete_orphans(owner, &children).await?;
    run.monitor(owner).await?;
    let progress = run.roll(owner, &credentials, &stateful_sets).await?;
    let workloads = status::Workloads {
        stateful_sets: &stateful_sets,
        deployments: &deployments,
    };
    let new_status = status::observed(sc, owner, workloads, &progress, &volumes, &run.now);
    let rolling = progress.step != crate::rollout::Step::Done;
    run.observed(new_status, rolling).await
}

impl Run<'_> {
    fn key(&self) -> String {
        object_key(self.sc)
    }

    /// Reports why nothing is built (once per problem as an event, always in status).
    async fn blocked(&self, blocked: Blocked) -> Result<(Action, Outcome), Error> {
        let message = blocked.to_string();
        let reason = blocked.reason();
        info!(object = %self.key(), reason, %message, "cannot build the children");
        if !status::already_degraded(self.sc, reason, &message) {
            self.publish(EventType::Warning, reason, "Validate", message.clone())
                .await;
        }
        self.patch_status(&status::invalid(self.sc, reason, &message, &self.now))
            .await?;
        Ok((blocked.action(), blocked.outcome()))
    }

    async fn paused(&self) -> Result<(Action, Outcome), Error> {
        if !status::already_paused(self.sc) {
            let note = "spec.paused is true: child objects are left as they are".to_owned();
            self.publish(EventType::Normal, "Paused", "Reconcile", note).await;
        }
        self.patch_status(&status::paused(self.sc, &self.now)).await?;
        Ok((Action::await_change(), Outcome::Paused))
    }

    /// The generated values, read back from their Secrets so they never change; generated
    /// only when their Secret is absent. An existing cluster secret the binaries would refuse
    /// is reported rather than replaced: replacing it under running members would split them.
    async fn credentials(&self, owner: &Owner) -> Result<Result<Credentials, UnusableSecret>, Error> {
        let secrets: Api<Secret> = Api::namespaced(self.ctx.client.clone(), &self.ns);
        let cluster_secret = match secrets.get_opt(&owner.cluster_secret_name()).await? {
            Some(existing) => match security::cluster_secret_from(&existing) {
                Ok(value) => value,
                Err(unusable) => return Ok(Err(unusable)),
            },
            None => {
                info!(object = %self.key(), "generating the cluster secret");
                security::generate_cluster_secret()
            }
        };
        let (rabbitmq_password, rabbitmq_erlang_cookie) = match rabbitmq::managed(&self.sc.spec) {
            Some(_) => {
                let existing = secrets.get_opt(&owner.rabbitmq_secret_name()).await?;
                let password = existing
                    .as_ref()
                    .and_then(rabbitmq::password_from_secret)
                    .unwrap_or_else(|| {
                        info!(object = %self.key(), "generating RabbitMQ credentials");
                        rabbitmq::generate_password()
                    });
                // Secrets of older operators hold no cookie: one is added, the password kept.
                let cookie = existing
                    .as_ref()
                    .and_then(rabbitmq::erlang_cookie_from_secret)
                    .unwrap_or_else(rabbitmq::generate_erlang_cookie);
                (password, cookie)
            }
            None => (String::new(), String::new()),
        };
        Ok(Ok(Credentials {
            rabbitmq_password,
            rabbitmq_erlang_cookie,
            cluster_secret,
        }))
    }

    /// Applies every child; a rejection by the API server is reported in status and events
    /// and still returned, so error_policy retries with backoff.
    async fn apply(&self, children: &build::Children, deferred: &[String]) -> Result<Applied, Error> {
        match apply_children(&self.ctx.client, &self.ns, children, deferred).await {
            Err(Error::Kube(kube::Error::Api(rejected))) if is_rejection(&rejected) => {
                self.report_rejection(&rejected).await;
                Err(Error::Kube(kube::Error::Api(rejected)))
            }
            other => other,
        }
    }

    /// The API server refused an object (e.g. a changed storage size: StatefulSet
    /// volumeClaimTemplates are immutable). Retrying alone will not help, so tell the user.
    async fn report_rejection(&self, rejected: &kube::core::Status) {
        let message = format!("the API server rejected a child object: {}", rejected.message);
        warn!(object = %self.key(), %message, "apply rejected");
        if !status::already_degraded(self.sc, status::REASON_APPLY_REJECTED, &message) {
            self.publish(
                EventType::Warning,
                status::REASON_APPLY_REJECTED,
                "Apply",
                message.clone(),
            )
            .await;
        }
        let rejected_status = status::apply_rejected(self.sc, &message, &self.now);
        if let Err(e) = self.patch_status(&rejected_status).await {
            warn!(object = %self.key(), error = %e, "could not report the rejection in status");
        }
    }

    /// Deletes orphaned children: Ingresses and workloads first, so Services outlive what
    /// uses them, and Secrets last.
    async fn delete_orphans(&self, owner: &Owner, children: &build::Children) -> Result<(), Error> {
        // Exhaustive: a new kind of child that is not cleaned up does not compile.
        let build::Children {
            stateful_sets,
            deployments,
            services,
            secrets,
            config_maps,
            pdbs,
            network_policies,
            ingresses,
        } = children;
        let (client, ns) = (&self.ctx.client, self.ns.as_str());
        let mut deleted = Vec::new();
        deleted.extend(delete_orphans(client, ns, owner, ingresses).await?);
        deleted.extend(delete_orphans(client, ns, owner, stateful_sets).await?);
        deleted.extend(delete_orphans(client, ns, owner, deployments).await?);
        deleted.extend(delete_orphans(client, ns, owner, pdbs).await?);
        deleted.extend(delete_orphans(client, ns, owner, network_policies).await?);
        deleted.extend(delete_orphans(client, ns, owner, services).await?);
        deleted.extend(delete_orphans(client, ns, owner, config_maps).await?);
        deleted.extend(delete_orphans(client, ns, owner, secrets).await?);
        if !deleted.is_empty() {
            info!(object = %self.key(), ?deleted, "deleted orphaned children");
            let note = format!("deleted {}", deleted.join(", "));
            self.publish(EventType::Normal, "DeletedOrphans", "Reconcile", note)
                .await;
        }
        Ok(())
    }

    /// Writes the observed status; requeues sooner while replicas are coming up, and sooner
    /// still while a rollout is under way.
    async fn observed(&self, new_status: SocialClusterStatus, rolling: bool) -> Result<(Action, Outcome), Error> {
        let ready = new_status
            .conditions
            .iter()
            .any(|c| c.type_ == status::READY && c.status == "True");
        self.patch_status(&new_status).await?;
        debug!(object = %self.key(), ready, "reconciled");
        let requeue = if rolling {
            RESYNC_ROLLING
        } else if ready {
            RESYNC_READY
        } else {
            RESYNC_PROGRESSING
        };
        Ok((Action::requeue(requeue), Outcome::Applied { ready }))
    }

    async fn patch_status(&self, status: &SocialClusterStatus) -> Result<(), Error> {
        patch_status(self.ctx, self.sc, &self.ns, status).await
    }

    async fn publish(&self, type_: EventType, reason: &str, action: &str, note: String) {
        publish(self.ctx, self.sc, type_, reason, action, note).await;
    }
}

/// The workloads as the API server stored them: their status feeds the SocialCluster's.
struct Applied {
    stateful_sets: Vec<StatefulSet>,
    deployments: Vec<Deployment>,
}

/// Applies every child in dependency order; returns the workloads as stored. Secrets and
/// ConfigMaps go first (pods mount them), Services before the pods that resolve them, the
/// Ingresses last (after the Service they route to). StatefulSets named in `deferred` are
/// being recreated and wait for the next reconcile.
async fn apply_children(
    client: &Client,
    ns: &str,
    children: &build::Children,
    deferred: &[String],
) -> Result<Applied, Error> {
    // Exhaustive: a new kind of child that is not applied does not compile.
    let build::Children {
        stateful_sets,
        deployments,
        services,
        secrets,
        config_maps,
        pdbs,
        network_policies,
        ingresses,
    } = children;
    for secret in secrets {
        apply(client, ns, secret).await?;
    }
    for config_map in config_maps {
        apply(client, ns, config_map).await?;
    }
    for svc in services {
        apply(client, ns, svc).await?;
    }
    let mut applied_deployments = Vec::new();
    for d in deployments {
        applied_deployments.push(apply(client, ns, d).await?);
    }
    let mut applied_stateful_sets = Vec::new();
    for s in stateful_sets.iter().filter(|s| !deferred.contains(&s.name_any())) {
        applied_stateful_sets.push(apply(client, ns, s).await?);
    }
    for p in pdbs {
        apply(client, ns, p).await?;
    }
    for policy in network_policies {
        apply(client, ns, policy).await?;
    }
    for ingress in ingresses {
        apply(client, ns, ingress).await?;
    }
    Ok(Applied {
        stateful_sets: applied_stateful_sets,
        deployments: applied_deployments,
    })
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

mod monitoring;
pub mod rolling;
mod volumes;

pub use rolling::{SWITCHOVER_ANNOTATION, parse_switchover};
pub use volumes::Volumes;

#[cfg(test)]
mod rbac_tests;
#[cfg(test)]
mod tests;
