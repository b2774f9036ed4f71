//! Offline rendering of every object the operator builds, for `kubernetes-validate`, the
//! wiring test and for reading what a spec turns into without a cluster.

use kube::api::ObjectMeta;

use crate::build::{self, Credentials, InvalidSpec};
use crate::crd::{AuthMode, GatewayIngress, GatewaySpec, SocialCluster, SocialClusterSpec, TlsSpec};

/// Fake uid given to objects that did not come from an API server (owner references need one).
pub const RENDER_UID: &str = "00000000-0000-4000-8000-000000000001";
/// Stand-in broker password for rendering (the real one is generated in the cluster).
pub const RENDER_PASSWORD: &str = "renderedPassword0123456789abcdef";
/// Stand-in Erlang cookie of the broker nodes for rendering.
pub const RENDER_ERLANG_COOKIE: &str = "renderedErlangCookie0123456789abcdefghijklmnopq";
/// Stand-in cluster secret for rendering (the real one is generated in the cluster).
pub const RENDER_CLUSTER_SECRET: &str = "renderedClusterSecret0123456789abcdefghijklmnop";

/// The stand-in credentials every offline rendering uses.
pub fn credentials() -> Credentials {
    Credentials {
        rabbitmq_password: RENDER_PASSWORD.to_owned(),
        rabbitmq_erlang_cookie: RENDER_ERLANG_COOKIE.to_owned(),
        cluster_secret: RENDER_CLUSTER_SECRET.to_owned(),
    }
}

/// Why rendering failed.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("invalid spec: {0}")]
    Invalid(#[from] InvalidSpec),
    #[error("serialization failed: {0}")]
    Json(#[from] serde_json::Error),
    #[error("YAML failed: {0}")]
    Yaml(#[from] serde_yaml::Error),
}

/// `spec` in a SocialCluster "demo" in `namespace`, checked with `environment`: what the
/// builders take (tests and the wiring test build from it).
pub fn validated(
    namespace: &str,
    spec: SocialClusterSpec,
    environment: &build::Environment,
) -> Result<build::Validated, InvalidSpec> {
    build::check(&object("demo", namespace, spec), environment)
}

/// A SocialCluster object as the API server would hand it over (with uid and generation).
pub fn object(name: &str, namespace: &str, spec: SocialClusterSpec) -> SocialCluster {
    let mut sc = SocialCluster::new(name, spec);
    sc.metadata = ObjectMeta {
        name: Some(name.to_owned()),
        namespace: Some(namespace.to_owned()),
        uid: Some(RENDER_UID.to_owned()),
        generation: Some(1),
        ..ObjectMeta::default()
    };
    sc
}

/// Fills in what the API server fills in for a SocialCluster read from YAML: a namespace
/// ("default" when absent), a uid and a generation.
pub fn complete(mut sc: SocialCluster) -> SocialCluster {
    if sc.metadata.namespace.is_none() {
        sc.metadata.namespace = Some("default".to_owned());
    }
    if sc.metadata.uid.is_none() {
        sc.metadata.uid = Some(RENDER_UID.to_owned());
    }
    if sc.metadata.generation.is_none() {
        sc.metadata.generation = Some(1);
    }
    sc
}

/// Every child object of `sc`, validated and built, as JSON values with apiVersion and kind.
pub fn children(sc: &SocialCluster) -> Result<Vec<serde_json::Value>, RenderError> {
    let validated = build::check(sc, &build::Environment::default())?;
    Ok(build::build_all(&validated, &credentials()).to_values()?)
}

/// The children as one multi-document YAML stream.
pub fn children_yaml(sc: &SocialCluster) -> Result<String, RenderError> {
    let mut out = String::new();
    for value in children(sc)? {
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(&value)?);
    }
    Ok(out)
}

/// The spec shapes every check covers: smallest, default, a larger one, and one with every
/// optional setting (TLS, open login, the gateway's Ingress).
pub fn standard_specs() -> Vec<(&'static str, SocialClusterSpec)> {
    vec![
        (
            "1x1",
            SocialClusterSpec {
                clusters: 1,
                servers_per_cluster: 1,
                synchronizers_per_cluster: 1,
                ..SocialClusterSpec::default()
            },
        ),
        ("default", SocialClusterSpec::default()),
        (
            "5x3",
            SocialClusterSpec {
                clusters: 5,
                servers_per_cluster: 3,
                synchronizers_per_cluster: 2,
                ..SocialClusterSpec::default()
            },
        ),
        (
            "tls-open",
            SocialClusterSpec {
                clusters: 2,
                auth: AuthMode::Open,
                tls: Some(TlsSpec {
                    secret_name: "demo-tls".to_owned(),
                }),
                gateway: GatewaySpec {
                    replicas: 3,
                    resources: None,
                    trusted_proxies: vec!["10.0.0.0/8".to_owned()],
                    ingress: Some(GatewayIngress {
                        host: "social.example.com".to_owned(),
                        tls_secret_name: Some("social-example-tls".to_owned()),
                        class_name: Some("nginx".to_owned()),
                        annotations: [(
                            "nginx.ingress.kubernetes.io/backend-protocol".to_owned(),
                            "HTTPS".to_owned(),
                        )]
                        .into(),
                    }),
                },
                ..SocialClusterSpec::default()
            },
        ),
    ]
}
