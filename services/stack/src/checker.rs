//! The fault suite's checker of stored state. Live deliveries show what reached open
//! timelines; this reads what every replica of every cluster holds on disk, after the faults
//! healed, and finds what a correct system never shows:
//! - an acknowledged post missing from a replica of a cluster that must keep it: its
//!   author's, and those of its author's followers (the workload follows before it posts);
//! - an acknowledged follow missing from a replica, or one nobody made in force there;
//! - a refused post stored anywhere;
//! - a post stored under different clock stamps in two places (timelines order by the stamp,
//!   so they would order differently);
//! - a topic whose numbers have a gap, differ between replicas, or give an acknowledged post
//!   no number or two (every workload post carries one `#tag`, and nothing is deleted). Every
//!   cluster holds every number, also of posts it does not keep;
//! - an acknowledged direct message missing from (or stored twice in) a replica of its
//!   sender's or its recipient's cluster, any direct message stored in a cluster of neither,
//!   or a refused one stored anywhere;
//! - an acknowledged like missing from a replica (likes are kept everywhere).
//!
//! Posts are stored under their id once (the primary key), so "exactly once" is a matter of
//! presence. Replicas being equal in everything else is `Topology::replica_digests`.

use crate::topology::Topology;
use crate::workload::{Acked, Liked, SentMessage};
use std::collections::{BTreeMap, BTreeSet};

/// What one replica stores of what the workload did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stored {
    /// `(author, post_id)` -> (author's post number, clock stamp).
    pub posts: BTreeMap<(u64, u64), (u64, u64)>,
    /// `(follower, followee)` relations in force.
    pub follows: BTreeSet<(u64, u64)>,
    pub topics: Numbering,
    /// Likes in force as `(liker, author, number)`.
    pub likes: BTreeSet<(u64, u64, u64)>,
    /// Direct messages as `(sender, recipient, text)`, each as often as stored.
    pub messages: Vec<(u64, u64, String)>,
}

/// topic -> number -> `(author, author's post number)`.
pub type Numbering = BTreeMap<String, BTreeMap<u64, (u64, u64)>>;

/// What every server of `t` stores, read from its data directory.
pub fn stored(t: &Topology) -> BTreeMap<(u32, u32), Result<Stored, String>> {
    t.server_ids()
        .into_iter()
        .map(|(cluster, server)| {
            let read = || -> Result<Stored, tinysns_tsd::store::StoreError> {
                let conn = tinysns_tsd::store::open(&t.server_data_dir(cluster, server))?;
                Ok(Stored {
                    posts: tinysns_tsd::store::all_posts(&conn)?
                        .into_iter()
                        .map(|(author, post_id, number, hlc)| ((author, post_id), (number, hlc)))
                        .collect(),
                    follows: tinysns_tsd::store::all_follows(&conn)?.into_iter().collect(),
                    likes: tinysns_tsd::store::all_likes(&conn)?.into_iter().collect(),
                    messages: tinysns_tsd::store::all_messages(&conn)?,
                    topics: tinysns_tsd::store::all_topic_posts(&conn)?.into_iter().fold(
                        BTreeMap::new(),
                        |mut topics: Numbering, (topic, seq, author, number)| {
                            topics.entry(topic).or_default().insert(seq, (author, number));
                            topics
                        },
                    ),
                })
            };
            ((cluster, server), read().map_err(|e| e.to_string()))
        })
        .collect()
}

/// What the workload was told.
pub struct Told<'a> {
    pub acked: &'a BTreeSet<Acked>,
    pub refused: &'a BTreeSet<Acked>,
    /// follower -> followees, every follow acknowledged (and none undone).
    pub follows: &'a BTreeMap<u64, BTreeSet<u64>>,
    pub messages: &'a BTreeSet<SentMessage>,
    pub refused_messages: &'a BTreeSet<SentMessage>,
    pub likes: &'a BTreeSet<Liked>,
}

/// Everything wrong with `stored` given what the workload was told (empty when all is well).
pub fn problems(stored: &BTreeMap<(u32, u32), Result<Stored, String>>, told: &Told) -> Vec<String> {
    let follows: BTreeSet<(u64, u64)> = told
        .follows
        .iter()
        .flat_map(|(follower, followees)| followees.iter().map(|f| (*follower, *f)))
        .collect();
    let clusters = stored.keys().map(|(cluster, _)| *cluster).max().unwrap_or(1);
    let home = |user: u64| ((user - 1) % u64::from(clusters)) as u32 + 1;
    // Where each author's posts must be: its cluster and its followers'.
    let mut keepers: BTreeMap<u64, BTreeSet<u32>> = BTreeMap::new();
    for &(follower, followee) in &follows {
        keepers.entry(followee).or_default().insert(home(follower));
    }
    let must_keep = |author: u64, cluster: u32| {
        home(author) == cluster || keepers.get(&author).is_some_and(|c| c.contains(&cluster))
    };
    // Each post's number, wherever it is kept.
    let numbers: BTreeMap<(u64, u64), u64> = stored
        .values()
        .flatten()
        .flat_map(|state| state.posts.iter().map(|(&post, &(number, _))| (post, number)))
        .collect();
    let mut found = Vec::new();
    let mut stamps: BTreeMap<(u64, u64), (u64, (u32, u32))> = BTreeMap::new();
    let mut first_topics: Option<(&Numbering, (u32, u32))> = None;
    for (&replica, state) in stored {
        let state = match state {
            Ok(state) => state,
            Err(e) => {
                found.push(format!("replica {replica:?} cannot be read: {e}"));
                continue;
            }
        };
        for (follower, followee) in follows.symmetric_difference(&state.follows) {
            let what = if state.follows.contains(&(*follower, *followee)) {
                "nobody made"
            } else {
                "missing from"
            };
            found.push(format!("follow {follower} -> {followee} {what} replica {replica:?}"));
        }
        let posts = &state.posts;
        for post in told.acked.iter().filter(|p| must_keep(p.author, replica.0)) {
            if !posts.contains_key(&(post.author, post.post_id)) {
                found.push(format!(
                    "acknowledged post {}/{} missing from replica {replica:?}",
                    post.author, post.post_id
                ));
            }
        }
        for post in told.refused {
            if posts.contains_key(&(post.author, post.post_id)) {
                found.push(format!(
                    "refused post {}/{} stored in replica {replica:?}",
                    post.author, post.post_id
                ));
            }
        }
        found.extend(topic_problems(&state.topics, told, &numbers, replica));
        found.extend(social_problems(state, told, replica, &home));
        match first_topics {
            Some((first, at)) if first != &state.topics => {
                found.push(format!("topics are numbered differently in {at:?} and {replica:?}"))
            }
            Some(_) => {}
            None => first_topics = Some((&state.topics, replica)),
        }
        for (&key, &(_, stamp)) in posts {
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

/// One replica's direct messages and likes: each acknowledged message once where its sender
/// or recipient lives and nowhere else, no refused one, every acknowledged like.
fn social_problems(state: &Stored, told: &Told, replica: (u32, u32), home: &impl Fn(u64) -> u32) -> Vec<String> {
    let mut found = Vec::new();
    let mut stored: BTreeMap<(u64, u64, &str), u32> = BTreeMap::new();
    for (sender, recipient, text) in &state.messages {
        *stored.entry((*sender, *recipient, text.as_str())).or_default() += 1;
        if home(*sender) != replica.0 && home(*recipient) != replica.0 {
            found.push(format!(
                "message from {sender} to {recipient} stored in replica {replica:?}, a cluster of neither"
            ));
        }
    }
    for m in told.messages {
        let keeps = home(m.sender) == replica.0 || home(m.recipient) == replica.0;
        match stored.get(&(m.sender, m.recipient, m.text.as_str())) {
            None if keeps => found.push(format!("acknowledged {:?} missing from replica {replica:?}", m.text)),
            Some(n) if *n > 1 => found.push(format!("{:?} stored {n} times in replica {replica:?}", m.text)),
            _ => {}
        }
    }
    for m in told.refused_messages {
        if stored.contains_key(&(m.sender, m.recipient, m.text.as_str())) {
            found.push(format!("refused {:?} stored in replica {replica:?}", m.text));
        }
    }
    for like in told.likes {
        if !state.likes.contains(&(like.liker, like.author, like.number)) {
            found.push(format!(
                "acknowledged like of {}/{} by {} missing from replica {replica:?}",
                like.author, like.number, like.liker
            ));
        }
    }
    found
}

/// One replica's topics: numbered 1..=n without gaps, each acknowledged post exactly once.
fn topic_problems(
    topics: &Numbering,
    told: &Told,
    numbers: &BTreeMap<(u64, u64), u64>,
    replica: (u32, u32),
) -> Vec<String> {
    let mut found = Vec::new();
    let mut numbered: BTreeMap<(u64, u64), u32> = BTreeMap::new();
    for (topic, posts) in topics {
        if let Some(gap) = (1..=posts.len() as u64).find(|n| !posts.contains_key(n)) {
            found.push(format!(
                "#{topic} has no post {gap} in replica {replica:?} (it has {})",
                posts.len()
            ));
        }
        for &(author, number) in posts.values() {
            *numbered.entry((author, number)).or_default() += 1;
        }
    }
    for post in told.acked {
        let number = numbers.get(&(post.author, post.post_id)).copied().unwrap_or(0);
        match numbered.get(&(post.author, number)) {
            Some(1) => {}
            None => found.push(format!(
                "acknowledged post {}/{} has no topic number in replica {replica:?}",
                post.author, post.post_id
            )),
            Some(n) => found.push(format!(
                "acknowledged post {}/{} has {n} topic numbers in replica {replica:?}",
                post.author, post.post_id
            )),
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
    fn finds_missing_refused_and_reordered_posts_and_wrong_follows() {
        let replica = |posts: &[((u64, u64), u64)], follows: &[(u64, u64)]| {
            // (Every replica numbers the two acknowledged posts alike; a post's number here
            // is its id.)
            let numbered = [(1, (1, 1)), (2, (2, 1))].into();
            Ok(Stored {
                posts: posts.iter().map(|&(post, stamp)| (post, (post.1, stamp))).collect(),
                follows: follows.iter().copied().collect(),
                topics: [("t".to_string(), numbered)].into(),
                ..Default::default()
            })
        };
        let acked: BTreeSet<Acked> = [post(1, 1), post(2, 1)].into();
        let refused: BTreeSet<Acked> = [post(3, 9)].into();
        let follows: BTreeMap<u64, BTreeSet<u64>> = [(1, [2].into())].into();
        let told = Told {
            acked: &acked,
            refused: &refused,
            follows: &follows,
            messages: &BTreeSet::new(),
            refused_messages: &BTreeSet::new(),
            likes: &BTreeSet::new(),
        };
        // Cluster 3 has no follower of users 1 and 2: it need not keep their posts.
        let good: BTreeMap<_, _> = [
            ((1, 1), replica(&[((1, 1), 10), ((2, 1), 20), ((4, 4), 5)], &[(1, 2)])),
            ((2, 1), replica(&[((1, 1), 10), ((2, 1), 20)], &[(1, 2)])),
            ((3, 1), replica(&[], &[(1, 2)])),
        ]
        .into();
        assert_eq!(problems(&good, &told), Vec::<String>::new());
        let bad: BTreeMap<_, _> = [
            ((1, 1), replica(&[((1, 1), 10), ((2, 1), 20)], &[(1, 2), (2, 1)])),
            ((1, 2), replica(&[((1, 1), 10)], &[(1, 2)])),
            ((2, 1), replica(&[((1, 1), 11), ((2, 1), 20), ((3, 9), 30)], &[])),
            ((3, 1), Err("gone".to_string())),
        ]
        .into();
        let found = problems(&bad, &told);
        assert_eq!(found.len(), 6, "{found:#?}");
        assert!(found[0].contains("follow 2 -> 1 nobody made replica (1, 1)"));
        assert!(found[1].contains("2/1 missing from replica (1, 2)"));
        assert!(found[2].contains("follow 1 -> 2 missing from replica (2, 1)"));
        assert!(found[3].contains("refused post 3/9"));
        assert!(found[4].contains("stamped 10 in (1, 1) but 11 in (2, 1)"));
        assert!(found[5].contains("(3, 1) cannot be read"));
    }

    #[test]
    fn finds_gaps_differences_and_missing_or_double_topic_numbers() {
        let acked: BTreeSet<Acked> = [post(1, 1), post(2, 1), post(2, 2)].into();
        let (refused, follows) = (BTreeSet::new(), BTreeMap::new());
        let told = Told {
            acked: &acked,
            refused: &refused,
            follows: &follows,
            messages: &BTreeSet::new(),
            refused_messages: &BTreeSet::new(),
            likes: &BTreeSet::new(),
        };
        type Topic<'a> = (&'a str, &'a [(u64, (u64, u64))]);
        let replica = |topics: &[Topic]| {
            Ok(Stored {
                posts: [((1, 1), (1, 1)), ((2, 1), (1, 2)), ((2, 2), (2, 3))].into(),
                follows: BTreeSet::new(),
                topics: topics
                    .iter()
                    .map(|(t, posts)| (t.to_string(), posts.iter().copied().collect()))
                    .collect(),
                ..Default::default()
            })
        };
        let good: &[(u64, (u64, u64))] = &[(1, (1, 1)), (2, (2, 1))];
        let go: &[(u64, (u64, u64))] = &[(1, (2, 2))];
        let fine: BTreeMap<_, _> = [
            ((1, 1), replica(&[("a", good), ("b", go)])),
            ((2, 1), replica(&[("a", good), ("b", go)])),
        ]
        .into();
        assert_eq!(problems(&fine, &told), Vec::<String>::new());
        let gap: &[(u64, (u64, u64))] = &[(1, (1, 1)), (3, (2, 1))];
        let twice: &[(u64, (u64, u64))] = &[(1, (2, 2)), (2, (2, 2))];
        let bad: BTreeMap<_, _> = [
            ((1, 1), replica(&[("a", good), ("b", go)])),
            ((2, 1), replica(&[("a", gap), ("b", go)])),
            ((3, 1), replica(&[("a", good), ("b", twice)])),
            ((3, 2), replica(&[("a", good)])),
        ]
        .into();
        let found = problems(&bad, &told);
        assert_eq!(found.len(), 6, "{found:#?}");
        assert!(found[0].contains("#a has no post 2 in replica (2, 1)"), "{found:#?}");
        assert!(found[1].contains("numbered differently in (1, 1) and (2, 1)"));
        assert!(found[2].contains("2/2 has 2 topic numbers in replica (3, 1)"));
        assert!(found[3].contains("numbered differently in (1, 1) and (3, 1)"));
        assert!(found[4].contains("2/2 has no topic number in replica (3, 2)"));
        assert!(found[5].contains("numbered differently in (1, 1) and (3, 2)"));
    }

    #[test]
    fn finds_messages_kept_wrongly_and_likes_missing() {
        // Three clusters: user 1 lives in 1, user 2 in 2; cluster 3 keeps none of their
        // messages.
        let (acked, refused_posts, follows) = (BTreeSet::new(), BTreeSet::new(), BTreeMap::new());
        let sent = |text: &str| SentMessage {
            sender: 1,
            recipient: 2,
            text: text.into(),
        };
        let messages: BTreeSet<SentMessage> = [sent("hello")].into();
        let refused_messages: BTreeSet<SentMessage> = [sent("refused")].into();
        let likes: BTreeSet<Liked> = [Liked {
            liker: 1,
            author: 2,
            number: 3,
        }]
        .into();
        let told = Told {
            acked: &acked,
            refused: &refused_posts,
            follows: &follows,
            messages: &messages,
            refused_messages: &refused_messages,
            likes: &likes,
        };
        let replica = |messages: &[&str], liked: bool| {
            Ok(Stored {
                messages: messages.iter().map(|t| (1, 2, t.to_string())).collect(),
                likes: if liked { [(1, 2, 3)].into() } else { BTreeSet::new() },
                ..Default::default()
            })
        };
        let good: BTreeMap<_, _> = [
            ((1, 1), replica(&["hello"], true)),
            ((2, 1), replica(&["hello"], true)),
            ((3, 1), replica(&[], true)),
        ]
        .into();
        assert_eq!(problems(&good, &told), Vec::<String>::new());
        let bad: BTreeMap<_, _> = [
            ((1, 1), replica(&["hello", "hello"], true)),
            ((2, 1), replica(&["refused"], false)),
            ((3, 1), replica(&["hello"], true)),
        ]
        .into();
        let found = problems(&bad, &told);
        assert_eq!(found.len(), 5, "{found:#?}");
        assert!(
            found[0].contains("\"hello\" stored 2 times in replica (1, 1)"),
            "{found:#?}"
        );
        assert!(found[1].contains("\"hello\" missing from replica (2, 1)"));
        assert!(found[2].contains("refused \"refused\" stored in replica (2, 1)"));
        assert!(found[3].contains("like of 2/3 by 1 missing from replica (2, 1)"));
        assert!(found[4].contains("to 2 stored in replica (3, 1), a cluster of neither"));
    }
}
