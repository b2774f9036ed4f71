//! Who the children belong to: the SocialCluster's identity (name, namespace, owner
//! reference, the operator's environment), the labels every child carries, and the names
//! and DNS names derived from it.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::{Resource, ResourceExt};

use super::validation::{self, Environment, InvalidSpec};
use super::{COORDINATOR_PORT, FIELD_MANAGER, Role};
use crate::crd::SocialCluster;

pub const LABEL_NAME: &str = "app.kubernetes.io/name";
pub const LABEL_INSTANCE: &str = "app.kubernetes.io/instance";
pub const LABEL_COMPONENT: &str = "app.kubernetes.io/component";
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
pub const LABEL_CLUSTER: &str = "tinysns.io/cluster";
pub const APP_NAME: &str = "tinysns";

/// Identity of the SocialCluster being built: everything the builders need from metadata.
#[derive(Clone, Debug)]
pub struct Owner {
    pub name: String,
    pub namespace: String,
    pub owner_ref: OwnerReference,
    /// The cluster's DNS domain (`Environment`).
    pub cluster_domain: String,
    /// The tinysns image tag for a spec that names none (`Environment`).
    pub default_image_tag: String,
    /// The operator's namespace (`Environment`).
    pub operator_namespace: Option<String>,
}

/// Longest SocialCluster name whose children still make valid names: StatefulSet pods get a
/// `controller-revision-hash` label `<sts>-<10 chars>` that must fit in 63 characters, so a
/// StatefulSet name may have at most 52; `<name>-coordinator` adds 12.
pub const MAX_NAME_LEN: usize = 40;

impl Owner {
    /// Extracts the owner identity; fails on objects that did not come from an API server.
    pub fn from_object(sc: &SocialCluster, environment: &Environment) -> Result<Self, InvalidSpec> {
        let name = sc.name_any();
        if name.is_empty() {
            return Err(InvalidSpec::MissingMetadata("metadata.name"));
        }
        if name.len() > MAX_NAME_LEN {
            return Err(InvalidSpec::NameTooLong(name));
        }
        // The API server accepts any DNS subdomain ("1demo", "a.b"), but every Service this
        // name prefixes must be an RFC 1035 label.
        if !validation::is_rfc1035_label(&name) {
            return Err(InvalidSpec::NameNotALabel(name));
        }
        let namespace = sc
            .namespace()
            .ok_or(InvalidSpec::MissingMetadata("metadata.namespace"))?;
        // controller_owner_ref is None without a uid; objects read from the API always have one.
        let owner_ref = sc
            .controller_owner_ref(&())
            .ok_or(InvalidSpec::MissingMetadata("metadata.uid"))?;
        Ok(Self {
            name,
            namespace,
            owner_ref,
            cluster_domain: environment.cluster_domain.clone(),
            default_image_tag: environment.default_image_tag.clone(),
            operator_namespace: environment.operator_namespace.clone(),
        })
    }

    /// Labels shared by every child of this SocialCluster (used to find orphans).
    pub fn instance_labels(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (LABEL_NAME.to_owned(), APP_NAME.to_owned()),
            (LABEL_INSTANCE.to_owned(), self.name.clone()),
            (LABEL_MANAGED_BY.to_owned(), FIELD_MANAGER.to_owned()),
        ])
    }

    /// Label selector string matching every child of this SocialCluster.
    pub fn instance_selector(&self) -> String {
        format!(
            "{LABEL_NAME}={APP_NAME},{LABEL_INSTANCE}={},{LABEL_MANAGED_BY}={FIELD_MANAGER}",
            self.name
        )
    }

    /// Pod selector labels of one role (and cluster). Immutable in StatefulSets, so they
    /// never include anything that a spec change could alter.
    pub fn selector_labels(&self, role: Role, cluster: Option<u32>) -> BTreeMap<String, String> {
        let mut labels = BTreeMap::from([
            (LABEL_NAME.to_owned(), APP_NAME.to_owned()),
            (LABEL_INSTANCE.to_owned(), self.name.clone()),
            (LABEL_COMPONENT.to_owned(), role.as_str().to_owned()),
        ]);
        if let Some(k) = cluster {
            labels.insert(LABEL_CLUSTER.to_owned(), k.to_string());
        }
        labels
    }

    /// Object labels: selector labels plus managed-by.
    pub fn labels(&self, role: Role, cluster: Option<u32>) -> BTreeMap<String, String> {
        let mut labels = self.selector_labels(role, cluster);
        labels.insert(LABEL_MANAGED_BY.to_owned(), FIELD_MANAGER.to_owned());
        labels
    }

    /// Metadata of a child object: name, namespace, labels and the controller owner reference.
    pub fn meta(&self, name: String, role: Role, cluster: Option<u32>) -> ObjectMeta {
        ObjectMeta {
            name: Some(name),
            namespace: Some(self.namespace.clone()),
            labels: Some(self.labels(role, cluster)),
            owner_references: Some(vec![self.owner_ref.clone()]),
            ..ObjectMeta::default()
        }
    }

    /// Metadata of a child shared by every role (the cluster secret): instance labels plus
    /// `component`.
    pub fn shared_meta(&self, name: String, component: &str) -> ObjectMeta {
        let mut labels = self.instance_labels();
        labels.insert(LABEL_COMPONENT.to_owned(), component.to_owned());
        ObjectMeta {
            name: Some(name),
            namespace: Some(self.namespace.clone()),
            labels: Some(labels),
            owner_references: Some(vec![self.owner_ref.clone()]),
            ..ObjectMeta::default()
        }
    }

    pub fn coordinator_name(&self) -> String {
        format!("{}-coordinator", self.name)
    }
    pub fn tsd_name(&self, cluster: u32) -> String {
        format!("{}-tsd-{cluster}", self.name)
    }
    pub fn sync_name(&self, cluster: u32) -> String {
        format!("{}-sync-{cluster}", self.name)
    }
    /// The gateway's Deployment, Service, PodDisruptionBudget and Ingress.
    pub fn gateway_name(&self) -> String {
        format!("{}-gateway", self.name)
    }
    pub fn rabbitmq_name(&self) -> String {
        format!("{}-rabbitmq", self.name)
    }
    /// The generated broker credentials (username, password, url).
    pub fn rabbitmq_secret_name(&self) -> String {
        format!("{}-rabbitmq-credentials", self.name)
    }
    /// The generated cluster secret every member reads (key `secret`).
    pub fn cluster_secret_name(&self) -> String {
        format!("{}-cluster-secret", self.name)
    }
    /// Every Secret the operator writes for this SocialCluster.
    pub fn managed_secret_names(&self) -> [String; 2] {
        [self.cluster_secret_name(), self.rabbitmq_secret_name()]
    }
    /// Fully qualified DNS name of a Service of this SocialCluster.
    pub fn service_host(&self, service: &str) -> String {
        format!("{service}.{}.svc.{}", self.namespace, self.cluster_domain)
    }
    /// The DNS name of each of the `replicas` coordinator pods (behind their headless Service).
    pub fn coordinator_hosts(&self, replicas: u32) -> Vec<String> {
        let service = self.service_host(&self.coordinator_name());
        (0..replicas)
            .map(|i| format!("{}-{i}.{service}", self.coordinator_name()))
            .collect()
    }
    /// The addresses tsc and every server use to reach the coordinators (comma-separated).
    pub fn coordinator_address(&self, replicas: u32) -> String {
        self.coordinator_hosts(replicas)
            .iter()
            .map(|host| format!("{host}:{COORDINATOR_PORT}"))
            .collect::<Vec<_>>()
            .join(",")
    }
}
