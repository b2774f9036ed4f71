//! Leader election over a `coordination.k8s.io/v1` Lease, so that two operator replicas never
//! reconcile at once and a standby takes over within a lease duration when the leader dies.
//!
//! Client-go's rules: a lease is free when nobody holds it or when its record has not
//! changed for a whole lease duration *by this replica's clock* (never by comparing the
//! holder's timestamps with ours, so clock skew between nodes does not matter); writes carry
//! the resourceVersion read, so of two replicas racing for a free lease one gets a conflict;
//! a leader that cannot renew within the renew deadline stops leading (the binary exits and
//! restarts as a standby); a leader shutting down releases the lease for a quick takeover.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use tokio::time::Instant;
use tracing::{debug, info, warn};

/// Lease timings (client-go's defaults: 15 s, 10 s, 2 s).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// How long a record must stay unchanged before others may take the lease.
    pub lease: Duration,
    /// A leader that has not renewed for this long stops leading (less than `lease`, so it
    /// stops before anyone may take over).
    pub renew_deadline: Duration,
    /// How often a leader renews and a standby looks.
    pub retry: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            lease: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry: Duration::from_secs(2),
        }
    }
}

/// The lease's record as last read, and when this replica saw it change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    pub holder: Option<String>,
    pub renew_time: Option<String>,
    pub transitions: i32,
    pub since: Instant,
}

/// What to do with the lease now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// No Lease object: create it, holding it.
    Create,
    /// We hold it: write a new renew time.
    Renew,
    /// Free or expired: write ourselves as holder (one more transition).
    TakeOver,
    /// Someone else holds it and renews.
    Wait,
}

/// The rules, without a client.
pub fn decide(observed: Option<&Observed>, me: &str, now: Instant, lease: Duration) -> Decision {
    match observed {
        None => Decision::Create,
        Some(o) if o.holder.as_deref() == Some(me) => Decision::Renew,
        Some(o) if o.holder.as_deref().is_none_or(str::is_empty) => Decision::TakeOver,
        Some(o) if now.saturating_duration_since(o.since) >= lease => Decision::TakeOver,
        Some(_) => Decision::Wait,
    }
}

/// Why leading stopped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Lost {
    #[error("the lease was not renewed for {0:?}")]
    RenewDeadline(Duration),
    #[error("{0} holds the lease now")]
    TakenBy(String),
}

/// One replica's part in the election.
pub struct Elector {
    api: Api<Lease>,
    name: String,
    me: String,
    timing: Timing,
    observed: Option<Observed>,
    /// The resourceVersion of the Lease as last read (writes must match it).
    version: Option<String>,
}

fn now_micro() -> MicroTime {
    MicroTime(Timestamp::now())
}

impl Elector {
    pub fn new(api: Api<Lease>, name: &str, me: &str, timing: Timing) -> Self {
        Self {
            api,
            name: name.to_owned(),
            me: me.to_owned(),
            timing,
            observed: None,
            version: None,
        }
    }

    pub fn identity(&self) -> &str {
        &self.me
    }

    /// Reads the Lease and notes when its record changed.
    async fn observe(&mut self) -> Result<Option<Lease>, kube::Error> {
        let lease = self.api.get_opt(&self.name).await?;
        let Some(lease) = lease else {
            self.observed = None;
            self.version = None;
            return Ok(None);
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone();
        let renew_time = spec.renew_time.as_ref().map(|t| t.0.to_string());
        let changed = self
            .observed
            .as_ref()
            .is_none_or(|o| o.holder != holder || o.renew_time != renew_time);
        let since = match &self.observed {
            Some(o) if !changed => o.since,
            _ => Instant::now(),
        };
        self.observed = Some(Observed {
            holder,
            renew_time,
            transitions: spec.lease_transitions.unwrap_or(0),
            since,
        });
        self.version = lease.metadata.resource_version.clone();
        Ok(Some(lease))
    }

    /// One round: read, decide, write. Ok(true) while this replica holds the lease.
    pub async fn try_acquire_or_renew(&mut self) -> Result<bool, kube::Error> {
        let current = self.observe().await?;
        let decision = decide(self.observed.as_ref(), &self.me, Instant::now(), self.timing.lease);
        debug!(lease = %self.name, ?decision, "leader election");
        let seconds = i32::try_from(self.timing.lease.as_secs()).unwrap_or(i32::MAX);
        let written = match (decision, current) {
            (Decision::Wait, _) => return Ok(false),
            (Decision::Create, _) => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.name.clone()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(LeaseSpec {
                        holder_identity: Some(self.me.clone()),
                        lease_duration_seconds: Some(seconds),
                        acquire_time: Some(now_micro()),
                        renew_time: Some(now_micro()),
                        lease_transitions: Some(0),
                        ..LeaseSpec::default()
                    }),
                };
                self.api.create(&PostParams::default(), &lease).await
            }
            (Decision::Renew | Decision::TakeOver, None) => return Ok(false),
            (decision, Some(mut lease)) => {
                let spec = lease.spec.get_or_insert_default();
                if decision == Decision::TakeOver {
                    spec.holder_identity = Some(self.me.clone());
                    spec.acquire_time = Some(now_micro());
                    spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
                    info!(lease = %self.name, identity = %self.me, "taking over the lease");
                }
                spec.lease_duration_seconds = Some(seconds);
                spec.renew_time = Some(now_micro());
                lease.metadata.resource_version = self.version.clone();
                self.api.replace(&self.name, &PostParams::default(), &lease).await
            }
        };
        match written {
            Ok(lease) => {
                self.version = lease.metadata.resource_version.clone();
                self.observed = Some(Observed {
                    holder: Some(self.me.clone()),
                    renew_time: lease
                        .spec
                        .as_ref()
                        .and_then(|s| s.renew_time.as_ref())
                        .map(|t| t.0.to_string()),
                    transitions: lease.spec.as_ref().and_then(|s| s.lease_transitions).unwrap_or(0),
                    since: Instant::now(),
                });
                Ok(true)
            }
            // Another replica wrote first: it holds the lease.
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Waits until this replica leads; None if `stop` fires first.
    pub async fn acquire(&mut self, stop: impl std::future::Future<Output = ()>) -> Option<()> {
        tokio::pin!(stop);
        loop {
            match self.try_acquire_or_renew().await {
                Ok(true) => {
                    info!(lease = %self.name, identity = %self.me, "leading");
                    return Some(());
                }
                Ok(false) => {}
                Err(e) => warn!(lease = %self.name, error = %e, "cannot read or write the lease"),
            }
            tokio::select! {
                () = &mut stop => return None,
                () = tokio::time::sleep(self.timing.retry) => {}
            }
        }
    }

    /// Renews while leading; returns why leading stopped (it never stops on its own).
    pub async fn hold(&mut self) -> Lost {
        let mut renewed = Instant::now();
        loop {
            tokio::time::sleep(self.timing.retry).await;
            match self.try_acquire_or_renew().await {
                Ok(true) => renewed = Instant::now(),
                Ok(false) => {
                    let holder = self.observed.as_ref().and_then(|o| o.holder.clone());
                    return Lost::TakenBy(holder.unwrap_or_default());
                }
                Err(e) => warn!(lease = %self.name, error = %e, "cannot renew the lease"),
            }
            if renewed.elapsed() >= self.timing.renew_deadline {
                return Lost::RenewDeadline(self.timing.renew_deadline);
            }
        }
    }

    /// Gives the lease up (on shutdown) so a standby takes over at once: no holder, and a
    /// lease of one second.
    pub async fn release(&mut self) {
        let Ok(Some(mut lease)) = self.observe().await else {
            return;
        };
        let spec = lease.spec.get_or_insert_default();
        if spec.holder_identity.as_deref() != Some(self.me.as_str()) {
            return;
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(now_micro());
        lease.metadata.resource_version = self.version.clone();
        match self.api.replace(&self.name, &PostParams::default(), &lease).await {
            Ok(_) => info!(lease = %self.name, "released the lease"),
            Err(e) => warn!(lease = %self.name, error = %e, "could not release the lease"),
        }
    }
}

#[cfg(test)]
mod tests;
