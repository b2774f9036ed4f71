//! Accounts for the users of tests, the fault suite and the benchmark, which name users by
//! number: user `k` gets a username owned by the cluster `cluster_of_user(k)` names, and
//! accounts are registered in ascending order, so each cluster hands out ids `k` exactly
//! (`c, c + clusters, ...`) and `k` is both the test's name for the user and its id.

use crate::client::User;
use std::time::Duration;
use tinysns_client::session::{Connection, Credentials};
use tinysns_common::topology::{cluster_of_user, cluster_of_username};

/// The password of every generated account.
pub const PASSWORD: &str = "tinysns-test-password";

/// The username of user `k` in a system of `clusters` clusters.
pub fn username_for(k: u64, clusters: u32) -> String {
    let home = cluster_of_user(k, clusters).unwrap_or(1);
    let base = format!("user{k}");
    std::iter::once(base.clone())
        .chain((1..).map(|i| format!("{base}_{i}")))
        .find(|name| cluster_of_username(name, clusters) == Ok(home))
        .unwrap_or(base)
}

pub fn credentials(k: u64, clusters: u32, register: bool) -> Credentials {
    Credentials::Password {
        username: username_for(k, clusters),
        password: PASSWORD.to_string(),
        register,
    }
}

/// Registers users `from..=through` in order (clusters in parallel, each cluster's users in
/// ascending order), checking that each got id `k`.
pub async fn register_in_order(connection: &Connection, clusters: u32, from: u64, through: u64) -> Result<(), String> {
    let per_cluster = (1..=clusters).map(|c| {
        let ks: Vec<u64> = (from..=through)
            .filter(|k| cluster_of_user(*k, clusters) == Ok(c))
            .collect();
        async move {
            for k in ks {
                let user = User::connect(
                    connection.clone(),
                    credentials(k, clusters, true),
                    Duration::from_secs(20),
                )
                .await
                .map_err(|e| format!("register user {k}: {e}"))?;
                if user.id() != k {
                    return Err(format!(
                        "user {k} was registered as id {}: accounts must be made in order on a fresh system",
                        user.id()
                    ));
                }
                user.logout().await;
            }
            Ok(())
        }
    });
    futures_util::future::try_join_all(per_cluster).await.map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_user_gets_a_name_its_cluster_owns() {
        for clusters in [1, 3, 5] {
            for k in 1..=50 {
                let name = username_for(k, clusters);
                assert!(name.starts_with(&format!("user{k}")));
                assert_eq!(cluster_of_username(&name, clusters), cluster_of_user(k, clusters));
                assert!(tinysns_common::limits::canonical_username(&name).is_ok());
            }
        }
    }
}
