//! tinysns-operator: runs tinysns (coordinator, per-cluster tsd servers and synchronizers,
//! RabbitMQ) on Kubernetes from one `SocialCluster` resource.
//!
//! The reconcile loop is a pipeline: validate → build (pure, see [`build`]) → grow volumes
//! (pure rules in [`volumes`]) → server-side apply → delete orphaned children → one rollout
//! step (pure rules in [`rollout`], asking the [`coordinators`] who is master) → status (see
//! [`status`]).

pub mod build;
pub mod coordinators;
pub mod crd;
pub mod leader;
pub mod metrics;
pub mod reconcile;
pub mod render;
pub mod rollout;
pub mod status;
pub mod volumes;

#[cfg(test)]
mod fixtures;

/// The CRD as YAML, exactly as checked in under crds/ and the chart.
pub fn crd_yaml() -> Result<String, serde_yaml::Error> {
    serde_yaml::to_string(&crd::definition())
}

#[cfg(test)]
mod crd_drift {
    use std::path::Path;

    /// crds/socialcluster.yaml and the chart's copy must be exactly what crdgen prints, or
    /// users would install a schema that differs from what the operator expects.
    #[test]
    fn checked_in_crds_match_the_generated_one() {
        let generated = super::crd_yaml().expect("the CRD serializes");
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        for file in [
            "crds/socialcluster.yaml",
            "charts/tinysns-operator/crds/socialcluster.yaml",
        ] {
            let path = root.join(file);
            let checked_in =
                std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
            assert!(
                checked_in == generated,
                "{file} is out of date: run `cargo run -q -p tinysns-operator --bin crdgen > {file}`"
            );
        }
    }
}
