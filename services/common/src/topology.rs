//! The arithmetic that maps users and synchronizers onto clusters, and pod names onto ids.
//! Kept in one place because the coordinator, the servers, the synchronizers and the client
//! must all agree on it.

use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum TopologyError {
    #[error("user ids are positive integers, got {0}")]
    InvalidUser(u64),
    #[error("the number of clusters must be at least 1")]
    NoClusters,
    #[error("cannot derive an ordinal from pod name {0:?}: expected <name>-<number>")]
    BadPodName(String),
}

/// `cluster = ((user_id - 1) % clusters) + 1`.
pub fn cluster_of_user(user_id: u64, clusters: u32) -> Result<u32, TopologyError> {
    if user_id == 0 {
        return Err(TopologyError::InvalidUser(user_id));
    }
    if clusters == 0 {
        return Err(TopologyError::NoClusters);
    }
    Ok(((user_id - 1) % u64::from(clusters)) as u32 + 1)
}

/// The cluster that owns a username: it alone registers the name (so two registrations of
/// one name always meet in one writer, without any global lock) and allocates the user's id
/// in its own residue class, so [`cluster_of_user`] of that id is this cluster too.
/// FNV-1a of the canonical name: fixed forever, since changing it would move every account.
pub fn cluster_of_username(canonical: &str, clusters: u32) -> Result<u32, TopologyError> {
    if clusters == 0 {
        return Err(TopologyError::NoClusters);
    }
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in canonical.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    Ok((hash % u64::from(clusters)) as u32 + 1)
}

/// The id the cluster allocates after `highest` (its highest id so far, 0 for none): the
/// next number of its residue class, so `cluster_of_user` maps it back to `cluster`.
pub fn next_user_id(highest: u64, cluster: u32, clusters: u32) -> u64 {
    let (cluster, clusters) = (u64::from(cluster), u64::from(clusters.max(1)));
    if highest < cluster {
        cluster
    } else {
        highest + clusters - (highest - cluster) % clusters
    }
}

/// Synchronizers follow the same rule as users: `((synch_id - 1) % clusters) + 1`.
pub fn cluster_of_synchronizer(synch_id: u32, clusters: u32) -> Result<u32, TopologyError> {
    cluster_of_user(u64::from(synch_id), clusters)
}

/// The synchronizer id of the pod with `ordinal` in the synchronizer set of `cluster`,
/// chosen so that [`cluster_of_synchronizer`] maps it back to `cluster`.
pub fn synchronizer_id(cluster: u32, ordinal: u32, clusters: u32) -> u32 {
    cluster + ordinal * clusters
}

/// The ordinal of a StatefulSet pod, from its name (`web-2` -> 2).
pub fn ordinal_from_pod_name(pod: &str) -> Result<u32, TopologyError> {
    pod.rsplit_once('-')
        .and_then(|(_, n)| n.parse().ok())
        .ok_or_else(|| TopologyError::BadPodName(pod.to_string()))
}

/// The classic local port layout: coordinator 9000, servers 10000 + (cluster-1) +
/// (server-1) * clusters, synchronizers 9000 + id.
pub fn classic_server_port(cluster: u32, server: u32, clusters: u32) -> u16 {
    (10000 + (cluster - 1) + (server - 1) * clusters) as u16
}

pub fn classic_synchronizer_port(synch_id: u32) -> u16 {
    (9000 + synch_id) as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_spread_round_robin_over_clusters() {
        let got: Vec<u32> = (1..=7).map(|u| cluster_of_user(u, 3).unwrap()).collect();
        assert_eq!(got, vec![1, 2, 3, 1, 2, 3, 1]);
        assert_eq!(cluster_of_user(0, 3), Err(TopologyError::InvalidUser(0)));
        assert_eq!(cluster_of_user(5, 0), Err(TopologyError::NoClusters));
    }

    #[test]
    fn synchronizer_ids_from_ordinals_map_back_to_their_cluster() {
        for clusters in 1..6 {
            for cluster in 1..=clusters {
                for ordinal in 0..4 {
                    let id = synchronizer_id(cluster, ordinal, clusters);
                    assert_eq!(cluster_of_synchronizer(id, clusters).unwrap(), cluster);
                }
            }
        }
    }

    #[test]
    fn pod_ordinals() {
        assert_eq!(ordinal_from_pod_name("demo-tsd-2-1").unwrap(), 1);
        assert_eq!(ordinal_from_pod_name("x-0").unwrap(), 0);
        assert!(ordinal_from_pod_name("nodash").is_err());
        assert!(ordinal_from_pod_name("bad-x").is_err());
    }

    #[test]
    fn classic_ports() {
        assert_eq!(classic_server_port(1, 1, 3), 10000);
        assert_eq!(classic_server_port(3, 1, 3), 10002);
        assert_eq!(classic_server_port(1, 2, 3), 10003);
        assert_eq!(classic_server_port(3, 2, 3), 10005);
        assert_eq!(classic_synchronizer_port(6), 9006);
    }

    #[test]
    fn usernames_own_a_fixed_cluster_and_ids_stay_in_its_residue_class() {
        // Fixed forever: these values must never change.
        assert_eq!(cluster_of_username("alice", 3), Ok(3));
        assert_eq!(cluster_of_username("bob", 3), Ok(1));
        assert_eq!(cluster_of_username("carol", 3), Ok(2));
        assert_eq!(cluster_of_username("alice", 5), Ok(4));
        let spread: std::collections::BTreeSet<u32> = (0..100)
            .map(|i| cluster_of_username(&format!("user{i}"), 3).unwrap())
            .collect();
        assert_eq!(spread.into_iter().collect::<Vec<_>>(), vec![1, 2, 3]);
        assert_eq!(cluster_of_username("x", 0), Err(TopologyError::NoClusters));
        for cluster in 1..=3 {
            let mut highest = 0;
            for _ in 0..5 {
                let id = next_user_id(highest, cluster, 3);
                assert!(id > highest);
                assert_eq!(cluster_of_user(id, 3), Ok(cluster));
                highest = id;
            }
        }
        assert_eq!(next_user_id(0, 2, 3), 2);
        assert_eq!(next_user_id(2, 2, 3), 5);
        // An id of another class in the store (open-mode leftovers) is skipped over.
        assert_eq!(next_user_id(6, 2, 3), 8);
    }
}
