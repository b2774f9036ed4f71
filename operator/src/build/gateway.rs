//! The gateway (`tinysns-gateway`): the HTTP API, the live WebSocket and the web UI. It keeps
//! no state, so it is a Deployment (rolling updates by Kubernetes, not by the operator)
//! behind a ClusterIP Service, with a PodDisruptionBudget once there are two replicas, and
//! optionally an Ingress. Like `tsc` it is a client: it is given every coordinator's client
//! address and, with `spec.tls`, the CA (and serves HTTPS with the same certificate), but
//! never the cluster secret.

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EnvVar, HTTPGetAction, PodSpec, PodTemplateSpec, Probe, Service, ServicePort,
    ServiceSpec, VolumeMount,
};
use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressRule, IngressServiceBackend, IngressSpec,
    IngressTLS, ServiceBackendPort,
};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{
    GATEWAY_PORT, METRICS_PORT, Owner, PORT_NAME_METRICS, Role, TINYSNS_UID, TMP_VOLUME, container_security_context,
    coordinator, env, log_env, pdb, pod_security_context, resources_for, security, tmp_volume,
};
use crate::crd::{GatewayIngress, GatewaySpec, SocialClusterSpec};

/// The name of the gateway's HTTP(S) port on its container and Service (the Ingress targets it).
pub const PORT_NAME_HTTP: &str = "http";
/// Liveness: the process answers.
pub const LIVENESS_PATH: &str = "/healthz";
/// Readiness: the gateway serves (it finds the coordinators per request, so it needs none
/// of them to be ready).
pub const READINESS_PATH: &str = "/readyz";
/// The binary in the tinysns image.
pub const BINARY: &str = "tinysns-gateway";
/// The gateway drains within 10 s of SIGTERM (open WebSockets are told to reconnect
/// elsewhere); the rest is margin.
pub const GRACE_SECONDS: i64 = 30;

/// Everything one SocialCluster's gateway is made of.
#[derive(Clone, Debug)]
pub struct Gateway {
    pub deployment: Deployment,
    pub service: Service,
    /// With two replicas or more.
    pub pdb: Option<PodDisruptionBudget>,
    /// When `gateway.ingress` is given.
    pub ingress: Option<Ingress>,
}

/// The gateway's objects; None with `gateway.replicas: 0` (every one of them is then an
/// orphan the reconciler deletes).
pub fn build(owner: &Owner, spec: &SocialClusterSpec) -> Option<Gateway> {
    let GatewaySpec {
        replicas,
        resources: _,
        ingress,
        trusted_proxies: _,
    } = &spec.gateway;
    if *replicas == 0 {
        return None;
    }
    Some(Gateway {
        deployment: deployment(owner, spec, *replicas),
        service: service(owner, spec),
        pdb: (*replicas > 1).then(|| pdb(owner, Role::Gateway, None)),
        ingress: ingress.as_ref().map(|i| self::ingress(owner, i)),
    })
}

/// HTTPS when the SocialCluster uses TLS: the gateway then serves with its certificate.
fn scheme(spec: &SocialClusterSpec) -> &'static str {
    if spec.tls.is_some() { "HTTPS" } else { "HTTP" }
}

/// The gateway's environment: where it listens, every coordinator's client address (the
/// same list the servers get, without the internal port), metrics, the trusted proxies, and
/// with TLS the certificate, key and CA files.
pub fn container_env(owner: &Owner, spec: &SocialClusterSpec) -> Vec<EnvVar> {
    let [host, port, _internal] = coordinator::member_env(owner, spec);
    let mut vars = vec![
        env("TINYSNS_BIND", "0.0.0.0"),
        env("TINYSNS_PORT", GATEWAY_PORT.to_string()),
        host,
        port,
        env("TINYSNS_METRICS_PORT", METRICS_PORT.to_string()),
    ];
    if !spec.gateway.trusted_proxies.is_empty() {
        vars.push(env("TINYSNS_TRUSTED_PROXIES", spec.gateway.trusted_proxies.join(",")));
    }
    vars.extend(security::tls_env(spec));
    vars.push(log_env());
    vars
}

fn probe(path: &str, scheme: &str) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_owned()),
            port: IntOrString::String(PORT_NAME_HTTP.to_owned()),
            scheme: Some(scheme.to_owned()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(5),
        timeout_seconds: Some(2),
        failure_threshold: Some(3),
        ..Probe::default()
    }
}

fn container(owner: &Owner, spec: &SocialClusterSpec) -> Container {
    let scheme = scheme(spec);
    let mut volume_mounts = vec![VolumeMount {
        name: TMP_VOLUME.to_owned(),
        mount_path: "/tmp".to_owned(),
        ..VolumeMount::default()
    }];
    volume_mounts.extend(security::tls_mount(spec));
    let ports = [(PORT_NAME_HTTP, GATEWAY_PORT), (PORT_NAME_METRICS, METRICS_PORT)]
        .into_iter()
        .map(|(name, port)| ContainerPort {
            name: Some(name.to_owned()),
            container_port: port,
            protocol: Some("TCP".to_owned()),
            ..ContainerPort::default()
        })
        .collect();
    Container {
        name: Role::Gateway.as_str().to_owned(),
        image: Some(spec.image.reference(&owner.default_image_tag)),
        image_pull_policy: Some(spec.image.pull_policy.as_str().to_owned()),
        command: Some(vec![format!("/usr/local/bin/{BINARY}")]),
        env: Some(container_env(owner, spec)),
        ports: Some(ports),
        liveness_probe: Some(Probe {
            initial_delay_seconds: Some(5),
            period_seconds: Some(10),
            ..probe(LIVENESS_PATH, scheme)
        }),
        readiness_probe: Some(probe(READINESS_PATH, scheme)),
        resources: Some(resources_for(spec, Role::Gateway)),
        security_context: Some(container_security_context(true)),
        volume_mounts: Some(volume_mounts),
        termination_message_policy: Some("FallbackToLogsOnError".to_owned()),
        ..Container::default()
    }
}

/// The Deployment `<name>-gateway`: a rolling update that starts a new pod before stopping
/// an old one, so the gateway never serves with fewer replicas than asked.
fn deployment(owner: &Owner, spec: &SocialClusterSpec, replicas: u32) -> Deployment {
    let role = Role::Gateway;
    let mut volumes = vec![tmp_volume()];
    volumes.extend(security::tls_volume(spec));
    let template = PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(owner.labels(role, None)),
            ..ObjectMeta::default()
        }),
        spec: Some(PodSpec {
            containers: vec![container(owner, spec)],
            volumes: Some(volumes),
            security_context: Some(pod_security_context(TINYSNS_UID)),
            automount_service_account_token: Some(false),
            enable_service_links: Some(false),
            termination_grace_period_seconds: Some(GRACE_SECONDS),
            ..PodSpec::default()
        }),
    };
    Deployment {
        metadata: owner.meta(owner.gateway_name(), role, None),
        spec: Some(DeploymentSpec {
            replicas: Some(i32::try_from(replicas).unwrap_or(i32::MAX)),
            selector: LabelSelector {
                match_labels: Some(owner.selector_labels(role, None)),
                ..LabelSelector::default()
            },
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".to_owned()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_unavailable: Some(IntOrString::Int(0)),
                    max_surge: Some(IntOrString::Int(1)),
                }),
            }),
            revision_history_limit: Some(5),
            template,
            ..DeploymentSpec::default()
        }),
        ..Deployment::default()
    }
}

/// The Service `<name>-gateway`: `http` (8080, HTTPS with spec.tls, as `appProtocol` says)
/// and `metrics`.
fn service(owner: &Owner, spec: &SocialClusterSpec) -> Service {
    let role = Role::Gateway;
    let app_protocol = scheme(spec).to_ascii_lowercase();
    let ports = [
        (PORT_NAME_HTTP, GATEWAY_PORT, Some(app_protocol)),
        (PORT_NAME_METRICS, METRICS_PORT, Some("http".to_owned())),
    ]
    .into_iter()
    .map(|(name, port, app_protocol)| ServicePort {
        name: Some(name.to_owned()),
        port,
        target_port: Some(IntOrString::String(name.to_owned())),
        protocol: Some("TCP".to_owned()),
        app_protocol,
        ..ServicePort::default()
    })
    .collect();
    Service {
        metadata: owner.meta(owner.gateway_name(), role, None),
        spec: Some(ServiceSpec {
            selector: Some(owner.selector_labels(role, None)),
            ports: Some(ports),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

/// The Ingress `<name>-gateway`: every path of `host` to the Service's `http` port, with the
/// given certificate, class and annotations.
fn ingress(owner: &Owner, spec: &GatewayIngress) -> Ingress {
    let GatewayIngress {
        host,
        tls_secret_name,
        class_name,
        annotations,
    } = spec;
    let mut metadata = owner.meta(owner.gateway_name(), Role::Gateway, None);
    metadata.annotations = (!annotations.is_empty()).then(|| annotations.clone());
    let backend = IngressBackend {
        service: Some(IngressServiceBackend {
            name: owner.gateway_name(),
            port: Some(ServiceBackendPort {
                name: Some(PORT_NAME_HTTP.to_owned()),
                number: None,
            }),
        }),
        resource: None,
    };
    Ingress {
        metadata,
        spec: Some(IngressSpec {
            ingress_class_name: class_name.clone(),
            rules: Some(vec![IngressRule {
                host: Some(host.clone()),
                http: Some(HTTPIngressRuleValue {
                    paths: vec![HTTPIngressPath {
                        path: Some("/".to_owned()),
                        path_type: "Prefix".to_owned(),
                        backend,
                    }],
                }),
            }]),
            tls: tls_secret_name.as_ref().map(|secret| {
                vec![IngressTLS {
                    hosts: Some(vec![host.clone()]),
                    secret_name: Some(secret.clone()),
                }]
            }),
            ..IngressSpec::default()
        }),
        ..Ingress::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::{Children, Environment, LABEL_COMPONENT, build_all};
    use crate::crd::TlsSpec;
    use crate::render;
    use k8s_openapi::api::core::v1::ResourceRequirements;
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    use kube::ResourceExt;
    use serde_json::json;
    use std::collections::BTreeMap;

    fn build(spec: SocialClusterSpec) -> Children {
        let validated = render::validated("ns1", spec, &Environment::default()).expect("a valid spec");
        build_all(&validated, &render::credentials())
    }

    fn gateway_of(c: &Children) -> &Deployment {
        c.deployments
            .iter()
            .find(|d| d.name_any() == "demo-gateway")
            .expect("the gateway Deployment")
    }

    fn pod(d: &Deployment) -> &PodSpec {
        d.spec
            .as_ref()
            .and_then(|s| s.template.spec.as_ref())
            .expect("a pod template")
    }

    fn env_of(c: &Container) -> BTreeMap<&str, &str> {
        c.env
            .iter()
            .flatten()
            .map(|e| (e.name.as_str(), e.value.as_deref().unwrap_or_default()))
            .collect()
    }

    fn probe_target(p: Option<&Probe>) -> (String, String, String) {
        let get = p.and_then(|p| p.http_get.as_ref()).expect("an HTTP probe");
        let port = match &get.port {
            IntOrString::String(name) => name.clone(),
            IntOrString::Int(n) => n.to_string(),
        };
        (
            get.path.clone().unwrap_or_default(),
            port,
            get.scheme.clone().unwrap_or_default(),
        )
    }

    fn names<T: kube::Resource>(items: &[T]) -> Vec<String> {
        items.iter().map(ResourceExt::name_any).collect()
    }

    #[test]
    fn by_default_two_gateways_reach_every_coordinator_on_its_client_port() {
        let c = build(SocialClusterSpec::default());
        let d = gateway_of(&c);
        let spec = d.spec.as_ref().expect("spec");
        assert_eq!(spec.replicas, Some(2));
        let labels = spec
            .template
            .metadata
            .as_ref()
            .and_then(|m| m.labels.as_ref())
            .expect("template labels");
        for (k, v) in spec.selector.match_labels.iter().flatten() {
            assert_eq!(labels.get(k), Some(v), "the selector matches the pods");
        }
        assert_eq!(labels.get(LABEL_COMPONENT).map(String::as_str), Some("gateway"));
        let strategy = spec.strategy.as_ref().expect("strategy");
        assert_eq!(strategy.type_.as_deref(), Some("RollingUpdate"));
        let rolling = strategy.rolling_update.as_ref().expect("rolling update");
        assert_eq!(
            rolling.max_unavailable,
            Some(IntOrString::Int(0)),
            "never below the replicas asked"
        );

        let pod = pod(d);
        let container = &pod.containers[0];
        assert_eq!(
            container.command.as_deref(),
            Some(&["/usr/local/bin/tinysns-gateway".to_owned()][..])
        );
        let hosts: Vec<String> = (0..3)
            .map(|i| format!("demo-coordinator-{i}.demo-coordinator.ns1.svc.cluster.local"))
            .collect();
        let env = env_of(container);
        assert_eq!(env.get("TINYSNS_COORDINATOR_HOST"), Some(&hosts.join(",").as_str()));
        assert_eq!(env.get("TINYSNS_COORDINATOR_PORT"), Some(&"9000"));
        assert_eq!(env.get("TINYSNS_PORT"), Some(&"8080"));
        assert_eq!(env.get("TINYSNS_BIND"), Some(&"0.0.0.0"));
        assert_eq!(env.get("TINYSNS_METRICS_PORT"), Some(&"9464"));
        assert!(!env.contains_key("TINYSNS_TRUSTED_PROXIES"), "none unless asked");
        for absent in [
            "TINYSNS_COORDINATOR_INTERNAL_PORT",
            "TINYSNS_CLUSTER_SECRET_FILE",
            "TINYSNS_TLS_CERT",
            "TINYSNS_TLS_CA",
        ] {
            assert!(!env.contains_key(absent), "{absent}: a client needs no internal access");
        }
        let volumes: Vec<&str> = pod.volumes.iter().flatten().map(|v| v.name.as_str()).collect();
        assert_eq!(volumes, ["tmp"], "no cluster secret, no TLS");
        assert_eq!(
            probe_target(container.liveness_probe.as_ref()),
            ("/healthz".to_owned(), "http".to_owned(), "HTTP".to_owned())
        );
        assert_eq!(
            probe_target(container.readiness_probe.as_ref()),
            ("/readyz".to_owned(), "http".to_owned(), "HTTP".to_owned())
        );
        // The same hardening as every tinysns pod (the restricted Pod Security Standard).
        let psc = pod.security_context.as_ref().expect("pod security context");
        assert_eq!(psc.run_as_non_root, Some(true));
        assert_eq!(psc.run_as_user, Some(TINYSNS_UID));
        let csc = container.security_context.as_ref().expect("container security context");
        assert_eq!(csc.allow_privilege_escalation, Some(false));
        assert_eq!(csc.read_only_root_filesystem, Some(true));
        assert_eq!(
            csc.capabilities.as_ref().and_then(|c| c.drop.clone()),
            Some(vec!["ALL".to_owned()])
        );
        assert_eq!(pod.automount_service_account_token, Some(false));
        assert_eq!(pod.enable_service_links, Some(false));
        assert!(
            pod.affinity.as_ref().is_some_and(|a| a.pod_anti_affinity.is_some()),
            "placed like every role"
        );

        let service = c
            .services
            .iter()
            .find(|s| s.name_any() == "demo-gateway")
            .expect("the gateway Service");
        let svc = service.spec.as_ref().expect("spec");
        assert_eq!(svc.cluster_ip, None, "a ClusterIP Service, not headless");
        let ports: Vec<(String, i32, Option<String>)> = svc
            .ports
            .iter()
            .flatten()
            .map(|p| (p.name.clone().unwrap_or_default(), p.port, p.app_protocol.clone()))
            .collect();
        assert_eq!(
            ports,
            [
                ("http".to_owned(), 8080, Some("http".to_owned())),
                ("metrics".to_owned(), 9464, Some("http".to_owned()))
            ]
        );
        assert_eq!(svc.selector.as_ref(), spec.selector.match_labels.as_ref());

        let budget = c
            .pdbs
            .iter()
            .find(|p| p.name_any() == "demo-gateway")
            .and_then(|p| p.spec.as_ref())
            .expect("a budget for two replicas");
        assert_eq!(budget.max_unavailable, Some(IntOrString::Int(1)));
        assert!(c.ingresses.is_empty(), "no Ingress unless asked");
    }

    #[test]
    fn trusted_proxies_reach_the_gateway_as_one_flag() {
        let mut spec = SocialClusterSpec::default();
        spec.gateway.trusted_proxies = vec!["10.0.0.0/8".to_owned(), "192.168.1.5".to_owned()];
        let c = build(spec);
        let env = env_of(&pod(gateway_of(&c)).containers[0])
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect::<BTreeMap<_, _>>();
        assert_eq!(
            env.get("TINYSNS_TRUSTED_PROXIES").map(String::as_str),
            Some("10.0.0.0/8,192.168.1.5")
        );
    }

    #[test]
    fn with_tls_the_gateway_serves_https_and_checks_the_servers_certificates() {
        let c = build(SocialClusterSpec {
            tls: Some(TlsSpec {
                secret_name: "demo-tls".to_owned(),
            }),
            ..SocialClusterSpec::default()
        });
        let d = gateway_of(&c);
        let pod = pod(d);
        let container = &pod.containers[0];
        let env = env_of(container);
        assert_eq!(env.get("TINYSNS_TLS_CERT"), Some(&"/etc/tinysns/tls/tls.crt"));
        assert_eq!(env.get("TINYSNS_TLS_KEY"), Some(&"/etc/tinysns/tls/tls.key"));
        assert_eq!(env.get("TINYSNS_TLS_CA"), Some(&"/etc/tinysns/tls/ca.crt"));
        let tls = pod
            .volumes
            .iter()
            .flatten()
            .find(|v| v.name == security::TLS_VOLUME)
            .and_then(|v| v.secret.as_ref())
            .expect("the TLS volume");
        assert_eq!(tls.secret_name.as_deref(), Some("demo-tls"));
        assert!(
            pod.volumes
                .iter()
                .flatten()
                .all(|v| v.name != security::CLUSTER_SECRET_VOLUME),
            "never the cluster secret"
        );
        let mount = container
            .volume_mounts
            .iter()
            .flatten()
            .find(|m| m.name == security::TLS_VOLUME)
            .expect("the TLS mount");
        assert_eq!(
            (mount.mount_path.as_str(), mount.read_only),
            (security::TLS_DIR, Some(true))
        );
        assert_eq!(probe_target(container.readiness_probe.as_ref()).2, "HTTPS");
        assert_eq!(probe_target(container.liveness_probe.as_ref()).2, "HTTPS");
        let service = c
            .services
            .iter()
            .find(|s| s.name_any() == "demo-gateway")
            .expect("Service");
        let http = service
            .spec
            .as_ref()
            .and_then(|s| s.ports.as_ref())
            .and_then(|p| p.first())
            .expect("http port");
        assert_eq!(http.app_protocol.as_deref(), Some("https"));
    }

    #[test]
    fn one_replica_has_no_budget_and_none_has_no_gateway_at_all() {
        let mut spec = SocialClusterSpec::default();
        spec.gateway.replicas = 1;
        let c = build(spec.clone());
        assert_eq!(names(&c.deployments), ["demo-gateway"]);
        assert!(
            c.pdbs.iter().all(|p| p.name_any() != "demo-gateway"),
            "a budget over one pod would block every drain"
        );

        spec.gateway.replicas = 0;
        spec.gateway.ingress = Some(GatewayIngress {
            host: "social.example.com".to_owned(),
            tls_secret_name: None,
            class_name: None,
            annotations: BTreeMap::new(),
        });
        let c = build(spec);
        assert!(c.deployments.is_empty() && c.ingresses.is_empty());
        assert!(c.services.iter().all(|s| s.name_any() != "demo-gateway"));
        assert!(c.pdbs.iter().all(|p| p.name_any() != "demo-gateway"));
        assert!(c.network_policies.iter().all(|p| p.name_any() != "demo-gateway"));
    }

    #[test]
    fn the_ingress_routes_its_host_to_the_http_port() {
        let mut spec = SocialClusterSpec::default();
        spec.gateway.ingress = Some(GatewayIngress {
            host: "social.example.com".to_owned(),
            tls_secret_name: Some("social-example-tls".to_owned()),
            class_name: Some("nginx".to_owned()),
            annotations: BTreeMap::from([("cert-manager.io/cluster-issuer".to_owned(), "letsencrypt".to_owned())]),
        });
        let c = build(spec);
        assert_eq!(names(&c.ingresses), ["demo-gateway"]);
        let ingress = &c.ingresses[0];
        assert_eq!(
            ingress
                .annotations()
                .get("cert-manager.io/cluster-issuer")
                .map(String::as_str),
            Some("letsencrypt")
        );
        assert_eq!(
            ingress.labels().get(LABEL_COMPONENT).map(String::as_str),
            Some("gateway")
        );
        let spec = ingress.spec.as_ref().expect("spec");
        assert_eq!(spec.ingress_class_name.as_deref(), Some("nginx"));
        let tls = spec.tls.as_ref().and_then(|t| t.first()).expect("TLS");
        assert_eq!(tls.secret_name.as_deref(), Some("social-example-tls"));
        assert_eq!(tls.hosts.as_deref(), Some(&["social.example.com".to_owned()][..]));
        let rule = spec.rules.as_ref().and_then(|r| r.first()).expect("a rule");
        assert_eq!(rule.host.as_deref(), Some("social.example.com"));
        let path = &rule.http.as_ref().expect("http").paths[0];
        assert_eq!((path.path.as_deref(), path.path_type.as_str()), (Some("/"), "Prefix"));
        let backend = path.backend.service.as_ref().expect("a Service backend");
        assert_eq!(backend.name, "demo-gateway");
        assert_eq!(
            backend.port.as_ref().and_then(|p| p.name.as_deref()),
            Some(PORT_NAME_HTTP)
        );
        // Without a certificate or class: plain HTTP, the cluster's default class.
        let validated =
            render::validated("ns1", SocialClusterSpec::default(), &Environment::default()).expect("a valid spec");
        let bare = self::ingress(
            validated.owner(),
            &GatewayIngress {
                host: "*.example.com".to_owned(),
                tls_secret_name: None,
                class_name: None,
                annotations: BTreeMap::new(),
            },
        );
        let spec = bare.spec.expect("spec");
        assert_eq!((spec.tls, spec.ingress_class_name), (None, None));
        assert_eq!(bare.metadata.annotations, None);
    }

    #[test]
    fn resources_and_overrides_come_from_the_spec() {
        let mut spec = SocialClusterSpec::default();
        let resources = ResourceRequirements {
            requests: Some(BTreeMap::from([("cpu".to_owned(), Quantity("200m".to_owned()))])),
            ..ResourceRequirements::default()
        };
        spec.gateway.resources = Some(resources.clone());
        spec.pod_overrides.gateway = Some(json!({
            "metadata": {"annotations": {"team": "web"}},
            "spec": {"containers": [{"name": "gateway", "env": [{"name": "TINYSNS_SESSION_RATE", "value": "50"}]}]}
        }));
        let c = build(spec);
        let d = gateway_of(&c);
        let template = &d.spec.as_ref().expect("spec").template;
        assert_eq!(
            template
                .metadata
                .as_ref()
                .and_then(|m| m.annotations.as_ref())
                .and_then(|a| a.get("team"))
                .map(String::as_str),
            Some("web")
        );
        let container = &pod(d).containers[0];
        assert_eq!(container.resources.as_ref(), Some(&resources));
        assert_eq!(env_of(container).get("TINYSNS_SESSION_RATE"), Some(&"50"));
        assert_eq!(
            env_of(container).get("TINYSNS_PORT"),
            Some(&"8080"),
            "merged by name, the rest kept"
        );
    }
}
