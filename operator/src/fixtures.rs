//! Test fixtures: a mocked API server behind a real `kube::Client` (tower-test's mock pair).
//! It answers like the API server would for the requests the reconciler makes and records
//! each request (method, path, query, JSON body) so tests can assert on all of them.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use http::{Request, Response, StatusCode};
use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use kube::client::Body;
use kube::runtime::events::{Recorder, Reporter};
use serde_json::{Value, json};
use tokio::task::JoinHandle;

use crate::coordinators::{CoordinatorApi, CoordinatorError, Endpoint};
use crate::crd::{SocialCluster, SocialClusterSpec};
use crate::metrics::Metrics;
use crate::reconcile::Context;
use crate::render;
use crate::rollout::ClusterRoles;

/// One request as the API server saw it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: String,
    pub body: Value,
}

impl Recorded {
    /// "METHOD path" for compact sequence assertions.
    pub fn line(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
    /// The last path segment (object name, or resource plural for collections).
    pub fn name(&self) -> &str {
        self.path.rsplit('/').next().unwrap_or_default()
    }
}

/// What the mocked API server holds.
#[derive(Default, Clone)]
pub struct ApiServer {
    /// The SocialCluster returned by status patches (needs a full object to deserialize).
    pub socialcluster: Value,
    /// Secrets that already exist, by name (the credentials, the cluster secret).
    pub secrets: HashMap<String, Secret>,
    /// Items returned by label-selector lists, by resource plural ("statefulsets", ...).
    pub lists: HashMap<&'static str, Vec<Value>>,
    /// Whether applied workloads report all replicas ready.
    pub ready: bool,
    /// Whether the cluster serves ServiceMonitors (the Prometheus Operator's CRD).
    pub service_monitors: bool,
    /// Applies to a path ending with this are refused with 422 Invalid.
    pub reject: Option<String>,
    /// Applied StatefulSets report this update revision, with this many pods updated (a
    /// rollout under way). None: no revision in their status.
    pub revision: Option<(&'static str, i64)>,
}

fn json_response(status: StatusCode, value: &Value) -> Response<Body> {
    let bytes = serde_json::to_vec(value).expect("a JSON value serializes");
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Body::from(bytes))
        .expect("static response parts are valid")
}

fn not_found(name: &str) -> Response<Body> {
    json_response(
        StatusCode::NOT_FOUND,
        &json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": format!("\"{name}\" not found"), "reason": "NotFound", "code": 404
        }),
    )
}

impl ApiServer {
    pub fn new(sc: &SocialCluster) -> Self {
        Self {
            socialcluster: serde_json::to_value(sc).expect("fixture serializes"),
            ..Self::default()
        }
    }

    /// The same server, holding `secret` as well (named by its metadata).
    pub fn with_secret(mut self, secret: Secret) -> Self {
        let name = secret.metadata.name.clone().expect("fixture secrets are named");
        self.secrets.insert(name, secret);
        self
    }

    fn answer(&self, r: &Recorded) -> Response<Body> {
        let segments: Vec<&str> = r.path.split('/').collect();
        // .../<plural>/<name> for single objects
        let plural = segments.iter().rev().nth(1).copied().unwrap_or("");
        match r.method.as_str() {
            "PATCH" if r.path.ends_with("/status") => {
                let mut sc = self.socialcluster.clone();
                sc["status"] = r.body["status"].clone();
                json_response(StatusCode::OK, &sc)
            }
            "PATCH"
                if self
                    .reject
                    .as_ref()
                    .is_some_and(|suffix| r.path.ends_with(suffix.as_str())) =>
            {
                json_response(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    &json!({
                        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                        "message": "StatefulSet.apps \"demo-tsd-1\" is invalid: spec: Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden",
                        "reason": "Invalid", "code": 422
                    }),
                )
            }
            // A merge patch of the SocialCluster itself (removing an annotation).
            "PATCH" if plural == "socialclusters" => json_response(StatusCode::OK, &self.socialcluster),
            "PATCH" => {
                let mut obj = r.body.clone();
                let kind = obj["kind"].as_str().unwrap_or_default().to_owned();
                if kind == "StatefulSet" || kind == "Deployment" {
                    let replicas = obj["spec"]["replicas"].as_i64().unwrap_or(1);
                    let ready = if self.ready { replicas } else { 0 };
                    obj["status"] = json!({"replicas": replicas, "readyReplicas": ready});
                    if let (Some((revision, updated)), "StatefulSet") = (self.revision, kind.as_str()) {
                        obj["status"]["updateRevision"] = json!(revision);
                        obj["status"]["updatedReplicas"] = json!(updated.min(replicas));
                    }
                }
                json_response(StatusCode::OK, &obj)
            }
            "GET" if r.path == "/apis/monitoring.coreos.com/v1" => match self.service_monitors {
                true => json_response(
                    StatusCode::OK,
                    &json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "monitoring.coreos.com/v1",
                            "resources": [{"name": "servicemonitors", "singularName": "servicemonitor", "namespaced": true,
                                           "kind": "ServiceMonitor", "verbs": ["get", "list", "patch", "delete"]}]}),
                ),
                false => not_found("monitoring.coreos.com/v1"),
            },
            "GET" if r.query.contains("labelSelector") => {
                let items = self.lists.get(segments.last().copied().unwrap_or("")).cloned();
                json_response(
                    StatusCode::OK,
                    &json!({"metadata": {"resourceVersion": "1"}, "items": items.unwrap_or_default()}),
                )
            }
            "GET" if plural == "secrets" => match self.secrets.get(r.name()) {
                Some(s) => json_response(StatusCode::OK, &serde_json::to_value(s).expect("secret serializes")),
                None => not_found(r.name()),
            },
            "DELETE" => json_response(
                StatusCode::OK,
                &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 200}),
            ),
            "POST" => json_response(StatusCode::CREATED, &r.body),
            _ => panic!("unexpected request {} {}?{}", r.method, r.path, r.query),
        }
    }

    /// Serves requests until every client is dropped; returns what it saw.
    pub fn spawn(
        self,
        mut handle: tower_test::mock::Handle<Request<Body>, Response<Body>>,
    ) -> JoinHandle<Vec<Recorded>> {
        tokio::spawn(async move {
            let mut seen = Vec::new();
            while let Some((request, send)) = handle.next_request().await {
                let (parts, body) = request.into_parts();
                let bytes = body.collect_bytes().await.expect("request body is readable");
                let body = if bytes.is_empty() {
                    Value::Null
                } else {
                    serde_json::from_slice(&bytes).expect("request body is JSON")
                };
                let recorded = Recorded {
                    method: parts.method.to_string(),
                    path: parts.uri.path().to_owned(),
                    query: parts.uri.query().unwrap_or_default().to_owned(),
                    body,
                };
                send.send_response(self.answer(&recorded));
                seen.push(recorded);
            }
            seen
        })
    }
}

/// A SocialCluster named "demo" in "ns1" with a uid (controller_owner_ref needs one).
pub fn socialcluster(spec: SocialClusterSpec) -> SocialCluster {
    render::object("demo", "ns1", spec)
}

/// Coordinators that answer from a table and record what they are asked.
#[derive(Default)]
pub struct FakeCoordinators {
    pub roles: Mutex<BTreeMap<u32, ClusterRoles>>,
    /// Every call: "roles <addresses>" or "switchover <cluster> <to>".
    pub calls: Mutex<Vec<String>>,
    /// Answer every call with UNAVAILABLE.
    pub down: bool,
}

impl FakeCoordinators {
    /// `clusters` clusters, each with server 1 master and the others in sync.
    pub fn healthy(clusters: u32, servers: u32) -> Self {
        let roles = (1..=clusters)
            .map(|c| {
                let roles = ClusterRoles {
                    master: Some(1),
                    in_sync: (2..=servers).collect(),
                    sync_master: Some(1),
                };
                (c, roles)
            })
            .collect();
        Self {
            roles: Mutex::new(roles),
            ..Self::default()
        }
    }

    pub fn calls(&self) -> Vec<String> {
        self.calls.lock().expect("not poisoned").clone()
    }

    fn record(&self, call: String) -> Result<(), CoordinatorError> {
        self.calls.lock().expect("not poisoned").push(call);
        if self.down {
            return Err(CoordinatorError::Unavailable("no coordinator answers".into()));
        }
        Ok(())
    }
}

#[tonic::async_trait]
impl CoordinatorApi for FakeCoordinators {
    async fn roles(&self, endpoint: &Endpoint) -> Result<BTreeMap<u32, ClusterRoles>, CoordinatorError> {
        self.record(format!("roles {}", endpoint.addresses.join(",")))?;
        Ok(self.roles.lock().expect("not poisoned").clone())
    }

    async fn switchover(&self, _: &Endpoint, cluster: u32, to: Option<u32>) -> Result<u32, CoordinatorError> {
        self.record(format!("switchover {cluster} {to:?}"))?;
        let mut roles = self.roles.lock().expect("not poisoned");
        let view = roles.entry(cluster).or_default();
        let new = to.or_else(|| view.in_sync.first().copied()).unwrap_or(1);
        if let Some(old) = view.master.replace(new) {
            view.in_sync.retain(|s| *s != new);
            view.in_sync.push(old);
        }
        Ok(new)
    }
}

/// A reconcile context on `client`, with these coordinators and default settings.
pub fn context(client: Client, coordinators: Arc<FakeCoordinators>) -> Context {
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "tinysns-operator".to_owned(),
            instance: None,
        },
    );
    Context::new(
        client,
        recorder,
        Arc::new(Metrics::new()),
        Default::default(),
        coordinators,
    )
}

/// Runs one reconcile of `sc` against `server` and returns its result and the requests made.
pub async fn run(
    sc: SocialCluster,
    server: ApiServer,
) -> (
    Result<(kube::runtime::controller::Action, crate::reconcile::Outcome), crate::reconcile::Error>,
    Vec<Recorded>,
) {
    run_with(sc, server, Arc::new(FakeCoordinators::healthy(3, 2))).await
}

/// The same, with these coordinators.
pub async fn run_with(
    sc: SocialCluster,
    server: ApiServer,
    coordinators: Arc<FakeCoordinators>,
) -> (
    Result<(kube::runtime::controller::Action, crate::reconcile::Outcome), crate::reconcile::Error>,
    Vec<Recorded>,
) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let verifier = server.spawn(handle);
    let ctx = context(Client::new(service, "default"), coordinators);
    let result = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        crate::reconcile::reconcile_inner(&sc, &ctx),
    )
    .await
    .expect("reconcile finishes within 10 s");
    drop(ctx);
    let seen = tokio::time::timeout(std::time::Duration::from_secs(10), verifier)
        .await
        .expect("the mock server stops once the client is dropped")
        .expect("the mock server did not panic");
    (result, seen)
}
