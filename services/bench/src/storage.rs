//! Stored copies per post: how many clusters keep each post the run made (a post is kept
//! only where its author lives and where it has followers, topic homes and subscribers:
//! `tsd::routing`), read from one replica's store per cluster at the end of the run.

use serde::Serialize;
use std::collections::BTreeMap;
use tinysns_stack::preload::PRELOAD_AUTHOR;
use tinysns_stack::topology::Topology;
use tinysns_tsd::reader::Reader;

#[derive(Debug, Clone, Serialize, Default)]
pub struct StoredCopies {
    pub clusters: u32,
    /// Posts the run made (kept somewhere).
    pub posts: u64,
    /// Copies kept, over all clusters.
    pub copies: u64,
    /// `copies / posts`; every cluster would keep every post: `clusters`.
    pub copies_per_post: Option<f64>,
    /// How many posts are kept in 1, 2, ... clusters.
    pub posts_by_copies: BTreeMap<u32, u64>,
}

/// Counts, in server 1 of every cluster of `t`, the posts of the run's users.
pub async fn stored_copies(t: &Topology) -> anyhow::Result<StoredCopies> {
    let clusters = t.options.clusters;
    let mut kept: BTreeMap<(u64, u64), u32> = BTreeMap::new();
    for cluster in 1..=clusters {
        let reader = Reader::new(&t.server_data_dir(cluster, 1));
        let posts = reader
            .with(|conn| {
                let mut stmt = conn.prepare("SELECT author, post_id FROM posts WHERE author < ?1")?;
                let rows = stmt.query_map([PRELOAD_AUTHOR as i64], |r| {
                    Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64))
                })?;
                Ok(rows.collect::<Result<Vec<_>, _>>()?)
            })
            .await?;
        for post in posts {
            *kept.entry(post).or_default() += 1;
        }
    }
    Ok(summarize(clusters, kept.into_values()))
}

/// The figures from the number of clusters keeping each post.
fn summarize(clusters: u32, copies_of_each: impl Iterator<Item = u32>) -> StoredCopies {
    let mut figures = StoredCopies {
        clusters,
        ..Default::default()
    };
    for copies in copies_of_each {
        figures.posts += 1;
        figures.copies += u64::from(copies);
        *figures.posts_by_copies.entry(copies).or_default() += 1;
    }
    figures.copies_per_post = (figures.posts > 0).then(|| figures.copies as f64 / figures.posts as f64);
    figures
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_per_post_and_their_spread() {
        let figures = summarize(10, [1, 1, 3, 10].into_iter());
        assert_eq!((figures.posts, figures.copies), (4, 15));
        assert_eq!(figures.copies_per_post, Some(3.75));
        assert_eq!(figures.posts_by_copies, [(1, 2), (3, 1), (10, 1)].into());
        assert_eq!(summarize(3, std::iter::empty()).copies_per_post, None);
    }
}
