//! A workload for fault-injection tests: users spread over the clusters follow each other
//! (seeded, with cross-cluster edges), keep their timelines open and post at a steady pace,
//! riding through failovers the way `tsc` does (resume after the last post seen, re-send an
//! unacknowledged post under its id). Everything acknowledged and received is recorded so
//! a test can check that every acknowledged post reached every follower exactly once. Every
//! post carries a `#tag` of one of three topics, so topic numbering runs through the faults;
//! every fifth post is followed by a like of the last post received and a direct message to
//! a random user, so those run through the faults too.

use crate::client::User;
use crate::topology::Topology;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tinysns_common::proto::social::Status as Code;
use tinysns_common::shutdown::Shutdown;

/// A post the system acknowledged.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Acked {
    pub author: u64,
    pub post_id: u64,
}

/// A direct message the system acknowledged or refused (its text is unique).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct SentMessage {
    pub sender: u64,
    pub recipient: u64,
    pub text: String,
}

/// A like the system acknowledged: `liker` likes `author`'s post `number`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Liked {
    pub liker: u64,
    pub author: u64,
    pub number: u64,
}

#[derive(Default)]
struct Record {
    acked_messages: BTreeSet<SentMessage>,
    /// Messages refused (a definite no: they must never be stored).
    refused_messages: BTreeSet<SentMessage>,
    acked_likes: BTreeSet<Liked>,
    acked: BTreeSet<Acked>,
    /// Posts the system refused (a definite no: they must never be stored).
    refused_posts: BTreeSet<Acked>,
    /// follower -> (author, post_id) -> times received
    received: BTreeMap<u64, BTreeMap<(u64, u64), u32>>,
    refused: Vec<String>,
    reconnects: u64,
    /// Live posts and messages a server sent twice on a timeline (the client shows them once).
    repeats: u64,
    /// When each acknowledgement arrived, by author.
    acked_at: Vec<(u64, Instant)>,
}

pub struct Workload {
    pub seed: u64,
    pub users: Vec<u64>,
    /// follower -> followees
    pub follows: BTreeMap<u64, BTreeSet<u64>>,
    clusters: u32,
    started: Instant,
    record: Arc<Mutex<Record>>,
    posting: Shutdown,
    stop: Shutdown,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// What the workload saw, and what it found wrong.
#[derive(Debug)]
pub struct Outcome {
    pub acked: usize,
    /// Every acknowledged post, for the stored-state checker (`crate::checker`).
    pub acked_posts: BTreeSet<Acked>,
    pub refused_posts: BTreeSet<Acked>,
    pub acked_messages: BTreeSet<SentMessage>,
    pub refused_messages: BTreeSet<SentMessage>,
    pub acked_likes: BTreeSet<Liked>,
    pub reconnects: u64,
    pub missing: Vec<String>,
    pub duplicates: Vec<String>,
    pub refused: Vec<String>,
    /// Per cluster, the longest time between two acknowledgements of its users' posts while
    /// they posted: how long writes were unavailable there (at most, since users post every
    /// interval).
    pub longest_ack_gap: BTreeMap<u32, Duration>,
}

impl Workload {
    /// Logs in `users_per_cluster` users per cluster, sets up a seeded follow graph, opens
    /// every timeline and starts posting every `interval`.
    pub async fn start(t: &Topology, users_per_cluster: u64, seed: u64, interval: Duration) -> Result<Self, String> {
        let clusters = t.options.clusters;
        let connection = t.connection();
        let mut rng = StdRng::seed_from_u64(seed);
        let users: Vec<u64> = (1..=u64::from(clusters) * users_per_cluster).collect();
        let mut sessions = Vec::new();
        for &u in &users {
            let credentials = t.credentials(u).await.map_err(|e| e.to_string())?;
            let user = User::connect(connection.clone(), credentials, Duration::from_secs(20)).await;
            sessions.push(user.map_err(|e| format!("login {u}: {e}"))?);
        }
        // Everyone must know everyone before following across clusters.
        let deadline = Instant::now() + Duration::from_secs(20);
        for s in sessions.iter_mut() {
            loop {
                let list = s.list().await.map_err(|e| e.to_string())?;
                if users.iter().all(|u| list.user_ids().contains(u)) {
                    break;
                }
                if Instant::now() > deadline {
                    return Err(format!("user {} never learned every user", s.id()));
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        let mut follows: BTreeMap<u64, BTreeSet<u64>> = BTreeMap::new();
        for s in sessions.iter_mut() {
            let me = s.id();
            let others: Vec<u64> = users.iter().copied().filter(|u| *u != me).collect();
            let mut chosen = BTreeSet::new();
            // At least one followee in another cluster, then a few at random.
            let remote: Vec<u64> = others
                .iter()
                .copied()
                .filter(|u| (u - 1) % u64::from(clusters) != (me - 1) % u64::from(clusters))
                .collect();
            if !remote.is_empty() {
                chosen.insert(remote[rng.random_range(0..remote.len())]);
            }
            for _ in 0..2 {
                chosen.insert(others[rng.random_range(0..others.len())]);
            }
            for f in &chosen {
                let status = s.follow(&t.name(*f)).await.map_err(|e| e.to_string())?;
                if status != Code::Success {
                    return Err(format!("{me} follow {f}: {status:?}"));
                }
            }
            follows.insert(me, chosen);
        }
        let record = Arc::new(Mutex::new(Record::default()));
        let names: Arc<BTreeMap<u64, String>> = Arc::new(users.iter().map(|&u| (u, t.name(u))).collect());
        let (posting, stop) = (Shutdown::new(), Shutdown::new());
        let mut tasks = Vec::new();
        let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel(sessions.len());
        for (index, session) in sessions.into_iter().enumerate() {
            let task = run_user(
                session,
                seed.wrapping_add(index as u64),
                interval,
                Shared {
                    record: record.clone(),
                    names: names.clone(),
                },
                (posting.clone(), stop.clone()),
                ready_tx.clone(),
            );
            tasks.push(tokio::spawn(task));
        }
        for _ in 0..tasks.len() {
            ready_rx.recv().await;
        }
        Ok(Self {
            seed,
            users,
            follows,
            clusters,
            started: Instant::now(),
            record,
            posting,
            stop,
            tasks,
        })
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    pub fn acked(&self) -> usize {
        self.record.lock().unwrap_or_else(|p| p.into_inner()).acked.len()
    }

    /// Stops posting, waits up to `drain` for every acknowledged post to reach every
    /// follower, stops the readers, and reports.
    pub async fn finish(mut self, drain: Duration) -> Outcome {
        self.posting.trigger();
        // Let in-flight posts settle (a post being retried through a failover completes).
        tokio::time::sleep(Duration::from_millis(500)).await;
        let deadline = Instant::now() + drain;
        loop {
            let (missing, _) = self.check();
            if missing.is_empty() || Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.stop.trigger();
        for task in self.tasks.drain(..) {
            let _ = task.await;
        }
        let (missing, duplicates) = self.check();
        let record = self.record.lock().unwrap_or_else(|p| p.into_inner());
        Outcome {
            acked: record.acked.len(),
            acked_posts: record.acked.clone(),
            refused_posts: record.refused_posts.clone(),
            acked_messages: record.acked_messages.clone(),
            refused_messages: record.refused_messages.clone(),
            acked_likes: record.acked_likes.clone(),
            reconnects: record.reconnects,
            missing,
            duplicates,
            refused: record.refused.clone(),
            longest_ack_gap: longest_gaps(&record.acked_at, self.clusters),
        }
    }

    fn check(&self) -> (Vec<String>, Vec<String>) {
        let record = self.record.lock().unwrap_or_else(|p| p.into_inner());
        let (mut missing, mut duplicates) = (Vec::new(), Vec::new());
        for (follower, followees) in &self.follows {
            let got = record.received.get(follower);
            for post in record.acked.iter().filter(|p| followees.contains(&p.author)) {
                match got.and_then(|g| g.get(&(post.author, post.post_id))) {
                    None => missing.push(format!(
                        "post {}/{} never reached follower {follower}",
                        post.author, post.post_id
                    )),
                    Some(1) => {}
                    Some(n) => duplicates.push(format!(
                        "post {}/{} reached {follower} {n} times",
                        post.author, post.post_id
                    )),
                }
            }
        }
        if record.repeats > 0 {
            duplicates.push(format!(
                "servers sent {} live posts or messages twice on resumed timelines",
                record.repeats
            ));
        }
        (missing, duplicates)
    }
}

/// What every user's task shares: the record, and every user's name.
struct Shared {
    record: Arc<Mutex<Record>>,
    names: Arc<BTreeMap<u64, String>>,
}

/// Every fifth post: a like of the last post received (if any) and a direct message to a
/// random other user. A call that fails (no answer) may or may not have been applied: it
/// is recorded as neither acknowledged nor refused.
async fn like_and_message(
    user: &mut User,
    shared: &Shared,
    last_received: Option<(u64, u64)>,
    rng: &mut StdRng,
    n: u64,
) {
    let me = user.id();
    if let Some((author, number)) = last_received {
        let post = format!("{}/{number}", shared.names[&author]);
        if let Ok((Code::Success, _)) = user.like(&post, true).await {
            let liked = Liked {
                liker: me,
                author,
                number,
            };
            shared
                .record
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .acked_likes
                .insert(liked);
        }
    }
    let others: Vec<u64> = shared.names.keys().copied().filter(|u| *u != me).collect();
    let Some(&recipient) = others.get(rng.random_range(0..others.len().max(1))) else {
        return;
    };
    let message = SentMessage {
        sender: me,
        recipient,
        text: format!("message {n} from {me} to {recipient}"),
    };
    let answer = user.send_message(&shared.names[&recipient], &message.text).await;
    let mut record = shared.record.lock().unwrap_or_else(|p| p.into_inner());
    match answer {
        Ok((Code::Success, _)) => record.acked_messages.insert(message),
        Ok(_) => record.refused_messages.insert(message),
        Err(_) => false,
    };
}

async fn run_user(
    mut user: User,
    seed: u64,
    interval: Duration,
    shared: Shared,
    (posting, stop): (Shutdown, Shutdown),
    ready: tokio::sync::mpsc::Sender<()>,
) {
    let record = shared.record.clone();
    let me = user.id();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut last_received: Option<(u64, u64)> = None;
    let mut cursor = 0u64;
    let mut pending: Option<u64> = None;
    let mut announced = false;
    let mut counter = 0u64;
    let receive = |p: tinysns_common::proto::social::Post, last: &mut Option<(u64, u64)>| {
        *last = Some((p.author, p.number));
        let mut r = record.lock().unwrap_or_else(|p| p.into_inner());
        *r.received
            .entry(me)
            .or_default()
            .entry((p.author, p.post_id))
            .or_insert(0) += 1;
    };
    // The timeline resumes on its own across failovers; it is opened again only when the
    // user's cluster stayed unreachable for longer than its retry window.
    while !stop.is_triggered() {
        let mut timeline = match user.timeline(cursor).await {
            Ok(t) => t,
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if !announced {
            let _ = ready.send(()).await;
            announced = true;
        }
        let mut tick = tokio::time::interval(interval + Duration::from_millis(rng.random_range(0..5)));
        let broken = loop {
            tokio::select! {
                _ = tick.tick(), if !posting.is_triggered() || pending.is_some() => {
                    let post_id = *pending.get_or_insert_with(|| {
                        counter += 1;
                        (me << 32) | counter
                    });
                    // Every post is in one of three topics (numbered by their home clusters).
                    let text = format!("post {counter} by {me} #t{}", post_id % 3);
                    match timeline.post_with_id(post_id, &text).await {
                        Ok(ack) if ack.status == Code::Success as i32 => {
                            {
                                let mut record = record.lock().unwrap_or_else(|p| p.into_inner());
                                record.acked.insert(Acked { author: me, post_id });
                                record.acked_at.push((me, Instant::now()));
                            }
                            pending = None;
                            if counter.is_multiple_of(5) && !posting.is_triggered() {
                                like_and_message(&mut user, &shared, last_received, &mut rng, counter).await;
                            }
                        }
                        Ok(ack) => {
                            let mut record = record.lock().unwrap_or_else(|p| p.into_inner());
                            record.refused.push(format!("{me}/{post_id}: {}", ack.message));
                            record.refused_posts.insert(Acked { author: me, post_id });
                            pending = None;
                        }
                        Err(_) => break true,
                    }
                }
                post = timeline.next_post(Duration::from_millis(50)) => match post {
                    Ok(Some(p)) => receive(p, &mut last_received),
                    Ok(None) => {}
                    Err(_) => break true,
                },
                _ = stop.wait() => break false,
            }
            // Posts that arrived while we waited for an ack.
            while let Ok(Some(p)) = timeline.next_post(Duration::ZERO).await {
                receive(p, &mut last_received);
            }
        };
        cursor = timeline.cursor();
        {
            let mut r = record.lock().unwrap_or_else(|p| p.into_inner());
            r.reconnects += timeline.reconnects + u64::from(broken);
            r.repeats += timeline.repeats();
        }
        if broken {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    user.logout().await;
}

/// Per cluster, the longest time between consecutive acknowledgements of its users' posts.
fn longest_gaps(acked_at: &[(u64, Instant)], clusters: u32) -> BTreeMap<u32, Duration> {
    let mut by_cluster: BTreeMap<u32, Vec<Instant>> = BTreeMap::new();
    for (author, at) in acked_at {
        if let Ok(cluster) = tinysns_common::topology::cluster_of_user(*author, clusters) {
            by_cluster.entry(cluster).or_default().push(*at);
        }
    }
    by_cluster
        .into_iter()
        .map(|(cluster, mut times)| {
            times.sort_unstable();
            let gap = times.windows(2).map(|w| w[1] - w[0]).max().unwrap_or_default();
            (cluster, gap)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_gap_is_taken_per_cluster_over_all_its_authors() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        // Users 1 and 3 live in cluster 1 of 2, user 2 in cluster 2.
        let acked = [
            (1, ms(0)),
            (3, ms(40)),
            (2, ms(0)),
            (1, ms(300)),
            (3, ms(320)),
            (2, ms(50)),
        ];
        let gaps = longest_gaps(&acked, 2);
        assert_eq!(gaps[&1], Duration::from_millis(260));
        assert_eq!(gaps[&2], Duration::from_millis(50));
        assert!(longest_gaps(&[], 2).is_empty());
    }
}
