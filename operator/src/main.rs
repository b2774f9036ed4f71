//! tinysns-operator: watches SocialCluster objects and runs their tinysns deployments.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use futures_util::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, ListParams};
use kube::core::DeserializeGuard;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::{Controller, watcher};
use kube::{Client, Resource};
use tracing::{error, info, warn};

use tinysns_common::shutdown::Shutdown;
use tinysns_operator::build::{APP_NAME, FIELD_MANAGER, LABEL_MANAGED_BY, LABEL_NAME};
use tinysns_operator::crd::SocialCluster;
use tinysns_operator::leader;
use tinysns_operator::metrics::Metrics;
use tinysns_operator::reconcile::{self, Context};

#[derive(Parser, Debug)]
#[command(version, about = "Kubernetes operator for tinysns SocialCluster resources")]
struct Args {
    /// Watch only this namespace (all namespaces when empty).
    #[arg(long, env = "WATCH_NAMESPACE", default_value = "")]
    watch_namespace: String,
    /// Address of the /metrics and /healthz server.
    #[arg(long, env = "METRICS_ADDR", default_value = "0.0.0.0:8080")]
    metrics_addr: SocketAddr,
    /// Log output as JSON lines instead of text.
    #[arg(long, env = "LOG_JSON", default_value_t = false)]
    log_json: bool,
    /// The cluster's DNS domain: tinysns pods advertise `<pod>.<service>.<namespace>.svc.<domain>`.
    #[arg(long, env = "CLUSTER_DOMAIN", default_value = tinysns_operator::build::DEFAULT_CLUSTER_DOMAIN)]
    cluster_domain: String,
    /// The tinysns image tag for a SocialCluster that names none (the chart passes its
    /// appVersion).
    #[arg(long, env = "TINYSNS_DEFAULT_IMAGE_TAG", default_value = tinysns_operator::build::DEFAULT_IMAGE_TAG)]
    default_image_tag: String,
    /// Elect a leader among the operator's replicas with a Lease: only the leader reconciles.
    #[arg(long, env = "LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set)]
    leader_election: bool,
    /// Name of the Lease.
    #[arg(long, env = "LEASE_NAME", default_value = "tinysns-operator")]
    lease_name: String,
    /// Namespace of the Lease (the operator's own; the chart passes it).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    lease_namespace: String,
    /// How long the leader's lease record must stay unchanged before a standby takes over.
    #[arg(long, default_value = "15s", value_parser = tinysns_common::cli::parse_duration)]
    lease_duration: Duration,
    /// A leader that could not renew for this long stops (and restarts as a standby).
    #[arg(long, default_value = "10s", value_parser = tinysns_common::cli::parse_duration)]
    lease_renew_deadline: Duration,
    /// How often the leader renews and a standby looks.
    #[arg(long, default_value = "2s", value_parser = tinysns_common::cli::parse_duration)]
    lease_retry: Duration,
}

impl Args {
    fn lease_timing(&self) -> anyhow::Result<leader::Timing> {
        let timing = leader::Timing {
            lease: self.lease_duration,
            renew_deadline: self.lease_renew_deadline,
            retry: self.lease_retry,
        };
        anyhow::ensure!(
            timing.retry < timing.renew_deadline && timing.renew_deadline < timing.lease,
            "--lease-retry < --lease-renew-deadline < --lease-duration must hold, or two replicas could lead at once"
        );
        Ok(timing)
    }
}

/// SIGTERM or Ctrl-C.
async fn terminated() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(e) => {
            warn!(error = %e, "cannot watch SIGTERM; Ctrl-C only");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

fn api<K>(client: &Client, namespace: &str) -> Api<K>
where
    K: Resource<DynamicType = ()>,
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
{
    if namespace.is_empty() {
        Api::all(client.clone())
    } else {
        Api::namespaced(client.clone(), namespace)
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    if args.log_json {
        tracing_subscriber::fmt().with_env_filter(filter).json().init();
    } else {
        tracing_subscriber::fmt().with_env_filter(filter).init();
    }

    let client = Client::try_default()
        .await
        .context("no Kubernetes configuration (in-cluster or kubeconfig) found")?;
    let ns = args.watch_namespace.as_str();
    // Decoded through a guard: one undecodable object is reported on itself, the others go on.
    let socialclusters: Api<DeserializeGuard<SocialCluster>> = api(&client, ns);
    // Fail fast with a clear message when the CRD is missing instead of retrying forever.
    socialclusters
        .list(&ListParams::default().limit(1))
        .await
        .context("cannot list SocialClusters: is the CRD installed (crds/socialcluster.yaml) and does the ServiceAccount have access?")?;

    let metrics = Arc::new(Metrics::new());
    let reporter = Reporter {
        controller: FIELD_MANAGER.to_owned(),
        instance: std::env::var("POD_NAME").ok(),
    };
    let recorder = Recorder::new(client.clone(), reporter);
    let mut environment = tinysns_operator::build::Environment::new(&args.cluster_domain, &args.default_image_tag)
        .map_err(anyhow::Error::msg)?;
    // The coordinators' NetworkPolicies admit the operator's pods from this namespace.
    environment.operator_namespace = std::env::var("POD_NAMESPACE").ok();
    let ctx = Arc::new(Context::new(
        client.clone(),
        recorder,
        metrics.clone(),
        environment,
        Arc::new(tinysns_operator::coordinators::Grpc),
    ));

    // Only watch children this operator labelled: above all, never cache every Secret.
    let children =
        watcher::Config::default().labels(&format!("{LABEL_NAME}={APP_NAME},{LABEL_MANAGED_BY}={FIELD_MANAGER}"));

    let stop = Shutdown::new();
    let (_, server) = tinysns_common::metrics::serve(
        &args.metrics_addr.ip().to_string(),
        args.metrics_addr.port(),
        metrics.clone(),
        stop.clone(),
    )
    .await
    .context("cannot serve /metrics and /healthz")?;

    let mut elector = if args.leader_election {
        let identity = std::env::var("POD_NAME").unwrap_or_else(|_| format!("tinysns-operator-{}", std::process::id()));
        let leases = Api::namespaced(client.clone(), &args.lease_namespace);
        let mut elector = leader::Elector::new(leases, &args.lease_name, &identity, args.lease_timing()?);
        info!(lease = %args.lease_name, namespace = %args.lease_namespace, %identity, "waiting to lead");
        if elector.acquire(terminated()).await.is_none() {
            info!("stopped before leading");
            stop.trigger();
            return Ok(());
        }
        Some(elector)
    } else {
        None
    };
    metrics.set_leader(true);

    info!(
        namespace = if ns.is_empty() { "<all>" } else { ns },
        "starting controller"
    );
    let controller = Controller::new(socialclusters, watcher::Config::default().any_semantic())
        .owns(api::<StatefulSet>(&client, ns), children.clone())
        .owns(api::<Deployment>(&client, ns), children.clone())
        .owns(api::<Service>(&client, ns), children.clone())
        .owns(api::<Secret>(&client, ns), children.clone())
        .owns(api::<PodDisruptionBudget>(&client, ns), children.clone())
        .owns(api::<Ingress>(&client, ns), children)
        .shutdown_on_signal()
        .run(reconcile::reconcile_guarded, reconcile::error_policy_guarded, ctx)
        .for_each(|result| async move {
            match result {
                Ok((object, _)) => tracing::debug!(%object, "reconciled"),
                Err(e) => warn!(error = %e, "reconcile error"),
            }
        });
    let lost = match elector.as_mut() {
        Some(elector) => tokio::select! {
            () = controller => None,
            lost = elector.hold() => Some(lost),
        },
        None => {
            controller.await;
            None
        }
    };
    metrics.set_leader(false);
    if let Some(lost) = lost {
        // Another replica may lead now: stop at once, and come back as a standby.
        error!(reason = %lost, "lost the leader lease; exiting");
        stop.trigger();
        anyhow::bail!("lost the leader lease: {lost}");
    }
    if let Some(elector) = elector.as_mut() {
        elector.release().await;
    }

    info!("controller stopped, shutting down");
    stop.trigger();
    if let Err(e) = server.await {
        warn!(error = %e, "metrics server task failed");
    }
    Ok(())
}
