//! Where changes go, decided from a real store: 10 clusters, this is cluster 1 (users 1,
//! 11, 21, ... live here; user `n` lives in cluster `(n - 1) % 10 + 1`).

use super::*;
use tinysns_common::proto::internal::{
    ConversationRead, DirectMessage, FollowChanged, PostCreated, Registered, TopicSubscription,
};

const HERE: u32 = 1;
const CLUSTERS: u32 = 10;

struct Log {
    _dir: tempfile::TempDir,
    conn: Connection,
    lsn: u64,
}

impl Log {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let conn = store::open(dir.path()).unwrap();
        Self {
            _dir: dir,
            conn,
            lsn: 0,
        }
    }

    /// Appends (and applies) an entry made in `origin` at stamp `hlc`.
    fn add(&mut self, origin: u32, hlc: u64, kind: change::Kind) -> LogEntry {
        self.lsn += 1;
        let entry = LogEntry {
            lsn: self.lsn,
            term: 1,
            timestamp_ms: (hlc / 1000) as i64,
            origin_cluster: origin,
            origin_lsn: self.lsn,
            kind: Some(log_entry::Kind::Change(Change { kind: Some(kind) })),
            hlc,
        };
        store::append(&self.conn, &entry).unwrap();
        entry
    }

    fn follow(&mut self, follower: u64, followee: u64, following: bool) -> LogEntry {
        let origin = cluster_of_user(follower, CLUSTERS).unwrap();
        let hlc = 1_000_000 + self.lsn;
        self.add(
            origin,
            hlc,
            change::Kind::Follow(FollowChanged {
                follower,
                followee,
                following,
            }),
        )
    }

    fn routes(&self, entry: &LogEntry) -> Vec<Route> {
        routes(&self.conn, entry, HERE, CLUSTERS, Routing::Selective).unwrap()
    }
}

fn post(author: u64, number: u64, topics: &[&str], reply_to: Option<(u64, u64)>) -> change::Kind {
    change::Kind::Post(PostCreated {
        author,
        post_id: number,
        text: format!("post {number}"),
        author_name: String::new(),
        number,
        reply_to_author: reply_to.map_or(0, |r| r.0),
        reply_to_number: reply_to.map_or(0, |r| r.1),
        topics: topics.iter().map(|t| t.to_string()).collect(),
    })
}

fn only(clusters: &[u32]) -> Destinations {
    Destinations::Only(clusters.iter().copied().collect())
}

fn destinations(routes: &[Route]) -> Vec<Destinations> {
    routes.iter().map(|r| r.destinations.clone()).collect()
}

#[test]
fn a_post_goes_to_its_followers_clusters_only() {
    let mut log = Log::new();
    let alice = 11;
    let lonely = log.add(HERE, 2_000_000, post(alice, 1, &[], None));
    assert_eq!(log.routes(&lonely), [], "no audience elsewhere: the post stays here");
    log.follow(3, alice, true);
    log.follow(13, alice, true);
    log.follow(5, alice, true);
    log.follow(21, alice, true); // a follower here
    log.follow(7, alice, true);
    log.follow(7, alice, false); // gone again
    let entry = log.add(HERE, 3_000_000, post(alice, 2, &[], None));
    let routes = log.routes(&entry);
    assert_eq!(destinations(&routes), [only(&[3, 5])]);
    assert_eq!(routes[0].hlc, 3_000_000, "the post keeps its stamp");
    assert_eq!(routes[0].change.kind, Some(post(alice, 2, &[], None)));
}

#[test]
fn a_post_goes_to_its_topics_homes_and_a_reply_to_the_answered_authors_cluster() {
    let mut log = Log::new();
    let rust_home = home_cluster("rust", CLUSTERS);
    let entry = log.add(HERE, 2_000_000, post(11, 1, &["rust"], Some((19, 4))));
    let mut expected: BTreeSet<u32> = [rust_home, 9].into_iter().collect();
    expected.remove(&HERE);
    assert_eq!(destinations(&log.routes(&entry)), [Destinations::Only(expected)]);
}

#[test]
fn a_topics_number_carries_the_text_only_to_clusters_with_subscribers() {
    let mut log = Log::new();
    log.add(
        4,
        1_000_000,
        change::Kind::TopicSubscription(TopicSubscription {
            user: 4,
            topic: "rust".into(),
            subscribed: true,
        }),
    );
    log.add(
        6,
        1_000_001,
        change::Kind::TopicSubscription(TopicSubscription {
            user: 16,
            topic: "rust".into(),
            subscribed: false,
        }),
    );
    let numbered = TopicSequenced {
        topic: "rust".into(),
        seq: 1,
        post: Some(PostCreated {
            author: 12,
            post_id: 9,
            text: "hello #rust".into(),
            number: 1,
            topics: vec!["rust".into()],
            ..Default::default()
        }),
        post_hlc: 999,
        numbering_only: false,
    };
    let entry = log.add(HERE, 2_000_000, change::Kind::TopicSequenced(numbered.clone()));
    let routes = log.routes(&entry);
    assert_eq!(destinations(&routes), [only(&[2, 3, 5, 6, 7, 8, 9, 10]), only(&[4])]);
    let Some(change::Kind::TopicSequenced(bare)) = &routes[0].change.kind else {
        panic!("a number: {:?}", routes[0]);
    };
    assert!(bare.numbering_only);
    let post = bare.post.as_ref().unwrap();
    assert_eq!(
        (post.author, post.number, post.post_id, post.text.as_str()),
        (12, 1, 9, "")
    );
    assert_eq!(routes[1].change.kind, Some(change::Kind::TopicSequenced(numbered)));
}

#[test]
fn a_direct_message_goes_to_its_recipients_cluster_and_reads_stay_home() {
    let mut log = Log::new();
    let message = |recipient| {
        change::Kind::DirectMessage(DirectMessage {
            sender: 1,
            recipient,
            message_id: recipient,
            text: "hi".into(),
            sender_name: String::new(),
        })
    };
    let away = log.add(HERE, 1, message(8));
    assert_eq!(destinations(&log.routes(&away)), [only(&[8])]);
    let local = log.add(HERE, 2, message(31));
    assert_eq!(log.routes(&local), []);
    let read = log.add(
        HERE,
        3,
        change::Kind::ConversationRead(ConversationRead {
            reader: 1,
            peer: 8,
            up_to_hlc: 1,
        }),
    );
    assert_eq!(log.routes(&read), []);
}

#[test]
fn small_changes_go_everywhere_and_accounts_without_secrets() {
    let mut log = Log::new();
    let follow = log.follow(1, 2, true);
    assert_eq!(destinations(&log.routes(&follow)), [Destinations::Everywhere]);
    let registered = LogEntry {
        lsn: 99,
        origin_cluster: HERE,
        kind: Some(log_entry::Kind::Account(AccountChange {
            kind: Some(account_change::Kind::Registered(Registered {
                user_id: 4,
                username: "alice".into(),
                password_phc: "$argon2id$secret".into(),
            })),
        })),
        ..Default::default()
    };
    let routes = log.routes(&registered);
    assert_eq!(destinations(&routes), [Destinations::Everywhere]);
    assert_eq!(
        routes[0].change.kind,
        Some(change::Kind::User(UserCreated {
            user_id: 4,
            username: "alice".into()
        }))
    );
    assert!(!format!("{routes:?}").contains("argon2"));
}

#[test]
fn a_follow_from_elsewhere_brings_the_posts_made_since_to_the_followers_cluster() {
    let mut log = Log::new();
    let alice = 11;
    log.add(HERE, 1_000_000, post(alice, 1, &[], None));
    log.add(HERE, 5_000_000, post(alice, 2, &[], None));
    log.add(HERE, 6_000_000, post(alice, 3, &[], None));
    // Bob (cluster 3) followed at 4_000_000; it arrives after alice's posts 2 and 3.
    let follow = log.add(
        3,
        4_000_000,
        change::Kind::Follow(FollowChanged {
            follower: 3,
            followee: alice,
            following: true,
        }),
    );
    let routes = log.routes(&follow);
    let numbers: Vec<(u64, u64)> = routes
        .iter()
        .map(|r| match &r.change.kind {
            Some(change::Kind::Post(p)) => (p.number, r.hlc),
            other => panic!("a post: {other:?}"),
        })
        .collect();
    assert_eq!(
        numbers,
        [(3, 6_000_000), (2, 5_000_000)],
        "newest first, none from before"
    );
    assert!(routes.iter().all(|r| r.destinations == only(&[3])));
    // A post after the follow in the log is routed with the follow known, not backfilled
    // (the feed may read the follow when the post is already stored).
    let later = log.add(HERE, 6_500_000, post(alice, 4, &["rust"], None));
    assert_eq!(log.routes(&follow).len(), 2, "still the two posts before it");
    let routed = log.routes(&later);
    assert!(destined(&routed[0].destinations, 3), "{routed:?}");
    // An unfollow, a follow of someone elsewhere, or one from here bring nothing.
    let unfollow = log.add(
        3,
        7_000_000,
        change::Kind::Follow(FollowChanged {
            follower: 3,
            followee: alice,
            following: false,
        }),
    );
    assert_eq!(log.routes(&unfollow), []);
    let elsewhere = log.add(
        3,
        8_000_000,
        change::Kind::Follow(FollowChanged {
            follower: 3,
            followee: 12,
            following: true,
        }),
    );
    assert_eq!(log.routes(&elsewhere), []);
    let from_here = log.follow(21, alice, true);
    assert_eq!(destinations(&log.routes(&from_here)), [Destinations::Everywhere]);
}

#[test]
fn until_every_member_routes_everything_goes_everywhere_and_nothing_is_backfilled() {
    let mut log = Log::new();
    let alice = 11;
    let lonely = log.add(HERE, 2_000_000, post(alice, 1, &["rust"], None));
    let everywhere = routes(&log.conn, &lonely, HERE, CLUSTERS, Routing::Everywhere).unwrap();
    assert_eq!(destinations(&everywhere), [Destinations::Everywhere]);
    let follow = log.add(
        3,
        1_000_000,
        change::Kind::Follow(FollowChanged {
            follower: 3,
            followee: alice,
            following: true,
        }),
    );
    assert_eq!(
        routes(&log.conn, &follow, HERE, CLUSTERS, Routing::Everywhere).unwrap(),
        []
    );
    assert_eq!(
        log.routes(&follow).len(),
        1,
        "routed, the post since the follow goes to cluster 3"
    );
}
