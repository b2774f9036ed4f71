//! The fault suite's checker of stored state. Live deliveries show what reached open
//! timelines; this reads what every replica of every cluster holds on disk, after the faults
//! healed, and finds what a correct system never shows:
//! - an acknowledged post missing from a replica (every cluster holds every post today);
//! - a refused post stored anywhere;
//! - a post stored under different clock stamps in two places (timelines order by the stamp,
//!   so they would order differently).
//!
//! Posts are stored under their id once (the primary key), so "exactly once" is a matter of
//! presence. Replicas being equal in everything else is `Topology::replica_digests`.

use crate::topology::Topology;
use crate::workload::Acked;
use std::collections::{BTreeMap, BTreeSet};

/// What one replica stores: `(author, post_id)` -> clock stamp.
pub type StoredPosts = BTreeMap<(u64, u64), u64>;

/// The posts every server of `t` stores, read from its data directory.
pub fn stored_posts(t: &Topology) -> BTreeMap<(u32, u32), Result<StoredPosts, String>> {
    t.server_ids()
        .into_iter()
        .map(|(cluster, server)| {
            let posts = tinysns_tsd::store::open(&t.server_data_dir(cluster, server))
                .and_then(|c| tinysns_tsd::store::all_posts(&c))
                .map(|rows| rows.into_iter().map(|(a, p, hlc)| ((a, p), hlc)).collect())
                .map_err(|e| e.to_string());
            ((cluster, server), posts)
        })
        .collect()
}

/// Everything wrong with `stored` given what the workload was told (empty when all is well).
pub fn problems(
    stored: &BTreeMap<(u32, u32), Result<StoredPosts, String>>,
    acked: &BTreeSet<Acked>,
    refused: &BTreeSet<Acked>,
) -> Vec<String> {
    let mut found = Vec::new();
    let mut stamps: BTreeMap<(u64, u64), (u64, (u32, u32))> = BTreeMap::new();
    for (&replica, posts) in stored {
        let posts = match posts {
            Ok(posts) => posts,
            Err(e) => {
                found.push(format!("replica {replica:?} cannot be read: {e}"));
                continue;
            }
        };
        for post in acked {
            if !posts.contains_key(&(post.author, post.post_id)) {
                found.push(format!(
                    "acknowledged post {}/{} missing from replica {replica:?}",
                    post.author, post.post_id
                ));
            }
        }
        for post in refused {
            if posts.contains_key(&(post.author, post.post_id)) {
                found.push(format!(
                    "refused post {}/{} stored in replica {replica:?}",
                    post.author, post.post_id
                ));
            }
        }
        for (&key, &stamp) in posts {
            match stamps.get(&key) {
                Some(&(first, at)) if first != stamp => found.push(format!(
                    "post {}/{} stamped {first} in {at:?} but {stamp} in {replica:?}: timelines would differ",
                    key.0, key.1
                )),
                Some(_) => {}
                None => {
                    stamps.insert(key, (stamp, replica));
                }
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn post(author: u64, post_id: u64) -> Acked {
        Acked { author, post_id }
    }

    #[test]
    fn finds_missing_refused_and_reordered_posts() {
        let replica = |posts: &[((u64, u64), u64)]| Ok(posts.iter().copied().collect::<StoredPosts>());
        let acked: BTreeSet<Acked> = [post(1, 1), post(2, 1)].into();
        let refused: BTreeSet<Acked> = [post(3, 9)].into();
        let good: BTreeMap<_, _> = [
            ((1, 1), replica(&[((1, 1), 10), ((2, 1), 20), ((4, 4), 5)])),
            ((2, 1), replica(&[((1, 1), 10), ((2, 1), 20)])),
        ]
        .into();
        assert_eq!(problems(&good, &acked, &refused), Vec::<String>::new());
        let bad: BTreeMap<_, _> = [
            ((1, 1), replica(&[((1, 1), 10), ((2, 1), 20)])),
            ((1, 2), replica(&[((1, 1), 10)])),
            ((2, 1), replica(&[((1, 1), 11), ((2, 1), 20), ((3, 9), 30)])),
            ((3, 1), Err("gone".to_string())),
        ]
        .into();
        let found = problems(&bad, &acked, &refused);
        assert_eq!(found.len(), 4, "{found:#?}");
        assert!(found[0].contains("2/1 missing from replica (1, 2)"));
        assert!(found[1].contains("refused post 3/9"));
        assert!(found[2].contains("stamped 10 in (1, 1) but 11 in (2, 1)"));
        assert!(found[3].contains("(3, 1) cannot be read"));
    }
}
