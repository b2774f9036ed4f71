//! The workload's shape, decided up front from the seed: who exists, who follows whom.
//!
//! Every user follows the next user (a ring, so every user has at least one follower and,
//! with users spread round-robin over clusters, the ring crosses clusters), plus further
//! users drawn from a Zipf distribution over a seeded popularity order: a few users gather
//! many followers, most gather few.

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::Serialize;

/// Samples ranks `0..n` with probability proportional to `1 / (rank + 1)^exponent`.
pub struct Zipf {
    cumulative: Vec<f64>,
}

impl Zipf {
    pub fn new(n: usize, exponent: f64) -> Self {
        let mut total = 0.0;
        let cumulative = (1..=n)
            .map(|k| {
                total += 1.0 / (k as f64).powf(exponent);
                total
            })
            .collect();
        Self { cumulative }
    }

    pub fn sample(&self, rng: &mut impl Rng) -> usize {
        let Some(total) = self.cumulative.last() else {
            return 0;
        };
        let x = rng.random::<f64>() * total;
        self.cumulative
            .partition_point(|c| *c <= x)
            .min(self.cumulative.len() - 1)
    }
}

/// Users `1..=users` and their follow relations.
pub struct Graph {
    pub users: u64,
    pub clusters: u32,
    /// `followees[u - 1]`: whom user `u` follows, ascending.
    pub followees: Vec<Vec<u64>>,
    /// `followers[u - 1]`: who follows user `u`, ascending.
    pub followers: Vec<Vec<u64>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct GraphSummary {
    pub users: u64,
    pub follow_edges: usize,
    pub cross_cluster_edges: usize,
    pub max_followers: usize,
    pub median_followers: usize,
    pub users_without_followees: usize,
    /// The most followed users: (user, followers).
    pub most_followed: Vec<(u64, usize)>,
}

impl Graph {
    /// `follows_per_user` is the mean out-degree (the ring edge included).
    pub fn build(users: u64, clusters: u32, follows_per_user: usize, exponent: f64, seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let n = users as usize;
        let mut popularity: Vec<u64> = (1..=users).collect();
        popularity.shuffle(&mut rng);
        let zipf = Zipf::new(n, exponent);
        let mut followees: Vec<Vec<u64>> = vec![Vec::new(); n];
        if users >= 2 {
            for (index, list) in followees.iter_mut().enumerate() {
                let user = index as u64 + 1;
                list.push(user % users + 1);
                // Bounded attempts: with a steep distribution the popular few are drawn
                // again and again.
                let mut attempts = 0;
                while list.len() < follows_per_user.min(n - 1) && attempts < follows_per_user * 20 {
                    attempts += 1;
                    let target = popularity[zipf.sample(&mut rng)];
                    if target != user && !list.contains(&target) {
                        list.push(target);
                    }
                }
                list.sort_unstable();
            }
        }
        let mut followers: Vec<Vec<u64>> = vec![Vec::new(); n];
        for (index, list) in followees.iter().enumerate() {
            for &target in list {
                followers[target as usize - 1].push(index as u64 + 1);
            }
        }
        Self {
            users,
            clusters,
            followees,
            followers,
        }
    }

    pub fn cluster_of(&self, user: u64) -> u32 {
        tinysns_common::topology::cluster_of_user(user, self.clusters).unwrap_or(1)
    }

    pub fn followers_of(&self, user: u64) -> &[u64] {
        self.followers.get(user as usize - 1).map(Vec::as_slice).unwrap_or(&[])
    }

    pub fn followees_of(&self, user: u64) -> &[u64] {
        self.followees.get(user as usize - 1).map(Vec::as_slice).unwrap_or(&[])
    }

    pub fn summary(&self) -> GraphSummary {
        let mut counts: Vec<(u64, usize)> = self
            .followers
            .iter()
            .enumerate()
            .map(|(i, f)| (i as u64 + 1, f.len()))
            .collect();
        counts.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let median = counts.get(counts.len() / 2).map(|c| c.1).unwrap_or(0);
        let cross = self
            .followees
            .iter()
            .enumerate()
            .flat_map(|(i, f)| f.iter().map(move |t| (i as u64 + 1, *t)))
            .filter(|(a, b)| self.cluster_of(*a) != self.cluster_of(*b))
            .count();
        GraphSummary {
            users: self.users,
            follow_edges: self.followees.iter().map(Vec::len).sum(),
            cross_cluster_edges: cross,
            max_followers: counts.first().map(|c| c.1).unwrap_or(0),
            median_followers: median,
            users_without_followees: self.followees.iter().filter(|f| f.is_empty()).count(),
            most_followed: counts.into_iter().take(5).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zipf_prefers_low_ranks() {
        let zipf = Zipf::new(100, 1.0);
        let mut rng = StdRng::seed_from_u64(7);
        let mut hits = [0usize; 100];
        for _ in 0..100_000 {
            hits[zipf.sample(&mut rng)] += 1;
        }
        assert!(hits[0] > hits[1] && hits[1] > hits[9] && hits[9] > hits[99]);
        // P(rank 0) = 1 / H(100) ~ 0.193.
        assert!((17_000..22_000).contains(&hits[0]), "{}", hits[0]);
    }

    #[test]
    fn graph_is_deterministic_skewed_and_everyone_has_a_follower() {
        let a = Graph::build(300, 3, 8, 1.0, 42);
        let b = Graph::build(300, 3, 8, 1.0, 42);
        assert_eq!(a.followees, b.followees);
        for user in 1..=300u64 {
            assert!(!a.followers_of(user).is_empty(), "user {user} has no follower");
            assert!(!a.followees_of(user).contains(&user), "user {user} follows itself");
        }
        let s = a.summary();
        assert!(s.max_followers > 10 * s.median_followers.max(1), "{s:?}");
        assert!(s.cross_cluster_edges > s.follow_edges / 2, "{s:?}");
        assert_eq!(s.follow_edges, a.followers.iter().map(Vec::len).sum::<usize>());
    }

    #[test]
    fn tiny_graphs() {
        assert!(Graph::build(1, 3, 5, 1.0, 1).followees[0].is_empty());
        let two = Graph::build(2, 2, 5, 1.0, 1);
        assert_eq!(two.followees, vec![vec![2], vec![1]]);
    }
}
