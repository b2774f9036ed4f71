//! The ServiceMonitor step: applied where the Prometheus Operator's CRD is installed (looked
//! up through discovery, remembered for a few minutes), deleted when the spec turns it off.

use std::time::{Duration, Instant};

use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use tracing::debug;

use super::{Context, Error, Run};
use crate::build::{FIELD_MANAGER, Owner, monitoring};

/// How long a discovery answer is trusted: installing the Prometheus Operator later is
/// noticed within this.
pub const DISCOVERY_TTL: Duration = Duration::from_secs(300);

/// The last discovery answer: the ServiceMonitor resource, if the cluster has it.
pub type Discovered = Option<(Instant, Option<ApiResource>)>;

impl Context {
    /// The ServiceMonitor resource, if its CRD is installed.
    async fn service_monitors(&self) -> Option<ApiResource> {
        let mut cached = self.service_monitor_resource.lock().await;
        if let Some((at, resource)) = cached.as_ref()
            && at.elapsed() < DISCOVERY_TTL
        {
            return resource.clone();
        }
        let gvk = GroupVersionKind::gvk(monitoring::GROUP, monitoring::VERSION, monitoring::KIND);
        let resource = match kube::discovery::pinned_kind(&self.client, &gvk).await {
            Ok((resource, _)) => Some(resource),
            Err(e) => {
                debug!(error = %e, "no ServiceMonitor resource (the Prometheus Operator is not installed)");
                None
            }
        };
        *cached = Some((Instant::now(), resource.clone()));
        resource
    }
}

impl Run<'_> {
    /// Applies (or, turned off, deletes) the ServiceMonitor where the cluster has the kind.
    pub(super) async fn monitor(&self, owner: &Owner) -> Result<(), Error> {
        let Some(resource) = self.ctx.service_monitors().await else {
            return Ok(());
        };
        let api: Api<DynamicObject> = Api::namespaced_with(self.ctx.client.clone(), &self.ns, &resource);
        let name = monitoring::name(owner);
        if self.sc.spec.monitoring.service_monitor {
            let body = monitoring::service_monitor(owner, &self.sc.spec);
            api.patch(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&body))
                .await?;
        } else {
            match api.delete(&name, &DeleteParams::background()).await {
                Ok(_) => {}
                Err(kube::Error::Api(status)) if status.is_not_found() => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
}
