//! tsd's Prometheus metrics (`tinysns_tsd_*`), served by `tinysns_common::metrics`.
//!
//! Events are counted where they happen, with one atomic add each (the writer thread counts
//! its batches and their entries, the timeline stream its accepted posts, the login call its
//! result). State is read when a scrape comes in ([`Exposed`]): the role and term, log
//! positions, open timelines and present sessions. The replication stage sets each slave's
//! lag and in-sync flag on its idle tick (every 100 ms), never per write; the change feed
//! records how far the synchronizer has read, once per batch it hands over.

use crate::feed::Feed;
use crate::presence::Presence;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tinysns_common::membership::{Progress, RoleHandle};
use tinysns_common::proto::internal::{
    AccountChange, Change, LogEntry, account_change, change, log_entry, room_change,
};

type U64Gauge = Gauge<u64, AtomicU64>;

/// What a log entry a master wrote does (`kind` label of `tinysns_tsd_writes_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteKind {
    User,
    Follow,
    Unfollow,
    Post,
    Profile,
    Like,
    Unlike,
    DeletePost,
    Message,
    Read,
    Block,
    Unblock,
    /// A topic's home numbered a post in it.
    TopicNumber,
    Subscribe,
    Unsubscribe,
    /// The phases of deleting an account: asked for (at the user's home), this cluster ready,
    /// done (at the user's home).
    DeleteAccount,
    DeletionReady,
    AccountDeleted,
    /// Rooms: made, joined or left, a message, and the phases of deleting one.
    RoomCreated,
    RoomMembership,
    RoomMessage,
    RoomDeletion,
    /// A change made in another cluster, applied here (any social kind).
    Remote,
    Register,
    Password,
    SessionStart,
    SessionEnd,
    /// The synchronizer's record of how far it has published.
    SyncCursor,
}

impl WriteKind {
    pub const ALL: [WriteKind; 28] = [
        WriteKind::User,
        WriteKind::Follow,
        WriteKind::Unfollow,
        WriteKind::Post,
        WriteKind::Profile,
        WriteKind::Like,
        WriteKind::Unlike,
        WriteKind::DeletePost,
        WriteKind::Message,
        WriteKind::Read,
        WriteKind::Block,
        WriteKind::Unblock,
        WriteKind::TopicNumber,
        WriteKind::Subscribe,
        WriteKind::Unsubscribe,
        WriteKind::DeleteAccount,
        WriteKind::DeletionReady,
        WriteKind::AccountDeleted,
        WriteKind::RoomCreated,
        WriteKind::RoomMembership,
        WriteKind::RoomMessage,
        WriteKind::RoomDeletion,
        WriteKind::Remote,
        WriteKind::Register,
        WriteKind::Password,
        WriteKind::SessionStart,
        WriteKind::SessionEnd,
        WriteKind::SyncCursor,
    ];

    pub fn label(self) -> &'static str {
        match self {
            WriteKind::User => "user",
            WriteKind::Follow => "follow",
            WriteKind::Unfollow => "unfollow",
            WriteKind::Post => "post",
            WriteKind::Profile => "profile",
            WriteKind::Like => "like",
            WriteKind::Unlike => "unlike",
            WriteKind::DeletePost => "delete_post",
            WriteKind::Message => "message",
            WriteKind::Read => "read",
            WriteKind::Block => "block",
            WriteKind::Unblock => "unblock",
            WriteKind::TopicNumber => "topic_number",
            WriteKind::Subscribe => "subscribe",
            WriteKind::Unsubscribe => "unsubscribe",
            WriteKind::DeleteAccount => "delete_account",
            WriteKind::DeletionReady => "deletion_ready",
            WriteKind::AccountDeleted => "account_deleted",
            WriteKind::RoomCreated => "room_created",
            WriteKind::RoomMembership => "room_membership",
            WriteKind::RoomMessage => "room_message",
            WriteKind::RoomDeletion => "room_deletion",
            WriteKind::Remote => "remote",
            WriteKind::Register => "register",
            WriteKind::Password => "password",
            WriteKind::SessionStart => "session_start",
            WriteKind::SessionEnd => "session_end",
            WriteKind::SyncCursor => "sync_cursor",
        }
    }

    /// The kind of `entry`, written by a master of `cluster` (None: an entry without a kind).
    pub fn of(entry: &LogEntry, cluster: u32) -> Option<WriteKind> {
        if entry.origin_cluster != cluster {
            return Some(WriteKind::Remote);
        }
        Some(match entry.kind.as_ref()? {
            log_entry::Kind::Change(Change { kind }) => match kind.as_ref()? {
                change::Kind::User(_) => WriteKind::User,
                change::Kind::Follow(f) if f.following => WriteKind::Follow,
                change::Kind::Follow(_) => WriteKind::Unfollow,
                change::Kind::Post(_) => WriteKind::Post,
                change::Kind::Profile(_) => WriteKind::Profile,
                change::Kind::Like(l) if l.liked => WriteKind::Like,
                change::Kind::Like(_) => WriteKind::Unlike,
                change::Kind::PostDeleted(_) => WriteKind::DeletePost,
                change::Kind::DirectMessage(_) => WriteKind::Message,
                change::Kind::ConversationRead(_) => WriteKind::Read,
                change::Kind::Block(b) if b.blocking => WriteKind::Block,
                change::Kind::Block(_) => WriteKind::Unblock,
                change::Kind::TopicSequenced(_) => WriteKind::TopicNumber,
                change::Kind::TopicSubscription(t) if t.subscribed => WriteKind::Subscribe,
                change::Kind::TopicSubscription(_) => WriteKind::Unsubscribe,
                change::Kind::DeletionPrepared(_) => WriteKind::DeleteAccount,
                change::Kind::DeletionReady(_) => WriteKind::DeletionReady,
                change::Kind::AccountDeleted(_) => WriteKind::AccountDeleted,
                change::Kind::Room(r) => match r.kind.as_ref()? {
                    room_change::Kind::Created(_) => WriteKind::RoomCreated,
                    room_change::Kind::Membership(_) => WriteKind::RoomMembership,
                    room_change::Kind::Message(_) => WriteKind::RoomMessage,
                    room_change::Kind::DeletionPrepared(_)
                    | room_change::Kind::DeletionReady(_)
                    | room_change::Kind::Deleted(_) => WriteKind::RoomDeletion,
                },
            },
            log_entry::Kind::SyncCursor(_) => WriteKind::SyncCursor,
            log_entry::Kind::Account(AccountChange { kind }) => match kind.as_ref()? {
                account_change::Kind::Registered(_) => WriteKind::Register,
                account_change::Kind::Password(_) => WriteKind::Password,
                account_change::Kind::SessionStarted(_) => WriteKind::SessionStart,
                account_change::Kind::SessionEnded(_) => WriteKind::SessionEnd,
            },
        })
    }
}

/// How a login ended (`result` label of `tinysns_tsd_logins_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginResult {
    Ok,
    /// Unknown username or wrong password (one answer for both).
    WrongCredentials,
    /// Anything else the request was refused for: a malformed name, the wrong cluster, the
    /// wrong mode, the user already present elsewhere.
    Refused,
    /// Too many failed logins for the name: try later.
    Throttled,
    /// The call failed (not master, store failure, shutting down).
    Error,
}

impl LoginResult {
    pub const ALL: [LoginResult; 5] = [
        LoginResult::Ok,
        LoginResult::WrongCredentials,
        LoginResult::Refused,
        LoginResult::Throttled,
        LoginResult::Error,
    ];

    pub fn label(self) -> &'static str {
        match self {
            LoginResult::Ok => "ok",
            LoginResult::WrongCredentials => "wrong_credentials",
            LoginResult::Refused => "refused",
            LoginResult::Throttled => "throttled",
            LoginResult::Error => "error",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SlaveLabel {
    slave: u32,
}

/// The state a scrape shows, read from the running server.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StateSample {
    pub master: bool,
    pub term: u64,
    pub last_lsn: u64,
    pub commit_lsn: u64,
    pub timeline_streams: usize,
    pub sessions_present: usize,
}

/// What the master knows of one slave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlaveSample {
    pub id: u32,
    /// Where the slave's log is known to equal ours (None: not heard from yet).
    pub matched: Option<u64>,
    /// In the in-sync set the master proposes: every write waits for it.
    pub in_sync: bool,
}

/// Entries a slave lacks: everything past what it is known to hold.
pub fn slave_lag(last_lsn: u64, matched: Option<u64>) -> u64 {
    last_lsn.saturating_sub(matched.unwrap_or(0))
}

/// Committed entries the synchronizer has not read from the change feed yet (`read`: where
/// it last was; None: no synchronizer subscribed since this server started). Only a master
/// serves the feed.
pub fn change_feed_lag(master: bool, commit_lsn: u64, read: Option<u64>) -> u64 {
    match read {
        Some(read) if master => commit_lsn.saturating_sub(read),
        _ => 0,
    }
}

pub struct Metrics {
    registry: Registry,
    posts: Counter,
    /// Indexed like [`WriteKind::ALL`].
    writes: Vec<Counter>,
    batches: Counter,
    batch_seconds: Histogram,
    replication_seconds: Histogram,
    /// Indexed like [`LoginResult::ALL`].
    logins: Vec<Counter>,
    master: Gauge,
    term: U64Gauge,
    last_lsn: U64Gauge,
    commit_lsn: U64Gauge,
    timeline_streams: Gauge,
    sessions_present: Gauge,
    slave_lag: Family<SlaveLabel, U64Gauge>,
    slave_in_sync: Family<SlaveLabel, Gauge>,
    /// The slaves that have series, so those gone can be removed.
    slaves_shown: Mutex<BTreeSet<u32>>,
    change_feed_lag: U64Gauge,
    /// Where the synchronizer last read the change feed up to, once it has subscribed.
    change_feed_read: AtomicU64,
    change_feed_subscribed: AtomicBool,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("tinysns_tsd");
        let posts = Counter::default();
        registry.register(
            "posts",
            "Posts accepted from clients: stored, replicated and acknowledged",
            posts.clone(),
        );
        let writes = Family::<KindLabel, Counter>::default();
        registry.register(
            "writes",
            "Log entries written as master, by kind (remote: changes from other clusters)",
            writes.clone(),
        );
        let writes = WriteKind::ALL
            .iter()
            .map(|k| writes.get_or_create(&KindLabel { kind: k.label() }).clone())
            .collect();
        let batches = Counter::default();
        registry.register(
            "write_batches",
            "Transactions the writer committed as master that wrote entries (one fsync each)",
            batches.clone(),
        );
        // 100 µs .. ~3.3 s: one SQLite transaction with its fsync.
        let batch_seconds = Histogram::new(exponential_buckets(0.0001, 2.0, 16));
        registry.register(
            "write_batch_seconds",
            "Time the writer took to decide, store and commit one batch",
            batch_seconds.clone(),
        );
        let replication_seconds = Histogram::new(exponential_buckets(0.0001, 2.0, 17));
        registry.register(
            "replication_seconds",
            "Time from committing a group of batches until the slaves the in-sync rules require held it",
            replication_seconds.clone(),
        );
        let logins = Family::<ResultLabel, Counter>::default();
        registry.register(
            "logins",
            "Login calls by result (ok, wrong_credentials, refused, throttled, error)",
            logins.clone(),
        );
        let logins = LoginResult::ALL
            .iter()
            .map(|r| logins.get_or_create(&ResultLabel { result: r.label() }).clone())
            .collect();
        let master = Gauge::default();
        registry.register(
            "master",
            "1 while this server is its cluster's master, 0 otherwise",
            master.clone(),
        );
        let term = U64Gauge::default();
        registry.register("term", "The term this server was last assigned", term.clone());
        let last_lsn = U64Gauge::default();
        registry.register(
            "last_lsn",
            "Position of the last entry in this server's log",
            last_lsn.clone(),
        );
        let commit_lsn = U64Gauge::default();
        registry.register(
            "commit_lsn",
            "Position up to which the log is committed (acknowledged, visible to timelines and the synchronizer)",
            commit_lsn.clone(),
        );
        let timeline_streams = Gauge::default();
        registry.register(
            "timeline_streams",
            "Timeline streams open on this server",
            timeline_streams.clone(),
        );
        let sessions_present = Gauge::default();
        registry.register(
            "sessions_present",
            "Logged-in sessions present on this server (holding an Attach stream or a keep-alive lease)",
            sessions_present.clone(),
        );
        let slave_lag = Family::<SlaveLabel, U64Gauge>::default();
        registry.register(
            "slave_lag_entries",
            "(Master) entries of its log each slave is not known to hold",
            slave_lag.clone(),
        );
        let slave_in_sync = Family::<SlaveLabel, Gauge>::default();
        registry.register(
            "slave_in_sync",
            "(Master) 1 while a slave is in the in-sync set (every write waits for it), else 0",
            slave_in_sync.clone(),
        );
        let change_feed_lag = U64Gauge::default();
        registry.register(
            "change_feed_lag_entries",
            "(Master) committed entries the synchronizer has not read from the change feed yet",
            change_feed_lag.clone(),
        );
        Self {
            registry,
            posts,
            writes,
            batches,
            batch_seconds,
            replication_seconds,
            logins,
            master,
            term,
            last_lsn,
            commit_lsn,
            timeline_streams,
            sessions_present,
            slave_lag,
            slave_in_sync,
            slaves_shown: Mutex::new(BTreeSet::new()),
            change_feed_lag,
            change_feed_read: AtomicU64::new(0),
            change_feed_subscribed: AtomicBool::new(false),
        }
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// A client's post was stored and acknowledged.
    pub fn post_accepted(&self) {
        self.posts.inc();
    }

    /// The writer committed `entries` as master of `cluster`, in `elapsed`.
    pub fn committed_batch(&self, cluster: u32, entries: &[LogEntry], elapsed: Duration) {
        self.batches.inc();
        self.batch_seconds.observe(elapsed.as_secs_f64());
        for entry in entries {
            if let Some(kind) = WriteKind::of(entry, cluster) {
                self.count_write(kind);
            }
        }
    }

    fn count_write(&self, kind: WriteKind) {
        // `ALL` lists the kinds in declaration order: a kind's discriminant is its index.
        if let Some(counter) = self.writes.get(kind as usize) {
            counter.inc();
        }
    }

    /// A group of batches reached the slaves it had to, `started` when it was handed over.
    pub fn replicated(&self, started: Instant) {
        self.replication_seconds.observe(started.elapsed().as_secs_f64());
    }

    pub fn login(&self, result: LoginResult) {
        // `ALL` lists the results in declaration order: a result's discriminant is its index.
        if let Some(counter) = self.logins.get(result as usize) {
            counter.inc();
        }
    }

    /// The synchronizer's change feed has been handed everything up to `lsn`.
    pub fn change_feed_read(&self, lsn: u64) {
        self.change_feed_read.store(lsn, Ordering::Relaxed);
        self.change_feed_subscribed.store(true, Ordering::Relaxed);
    }

    /// Sets the state gauges.
    pub fn observe_state(&self, state: &StateSample) {
        let read = self
            .change_feed_subscribed
            .load(Ordering::Relaxed)
            .then(|| self.change_feed_read.load(Ordering::Relaxed));
        self.change_feed_lag
            .set(change_feed_lag(state.master, state.commit_lsn, read));
        self.master.set(i64::from(state.master));
        self.term.set(state.term);
        self.last_lsn.set(state.last_lsn);
        self.commit_lsn.set(state.commit_lsn);
        self.timeline_streams.set(saturating_i64(state.timeline_streams));
        self.sessions_present.set(saturating_i64(state.sessions_present));
    }

    /// Sets each slave's lag behind `last_lsn` and whether it is in sync; slaves not listed
    /// any more (gone, or we are no longer master) lose their series.
    pub fn observe_slaves(&self, last_lsn: u64, slaves: &[SlaveSample]) {
        let mut shown = tinysns_common::lock(&self.slaves_shown);
        let now: BTreeSet<u32> = slaves.iter().map(|s| s.id).collect();
        for gone in shown.difference(&now) {
            self.slave_lag.remove(&SlaveLabel { slave: *gone });
            self.slave_in_sync.remove(&SlaveLabel { slave: *gone });
        }
        for slave in slaves {
            let label = SlaveLabel { slave: slave.id };
            self.slave_lag
                .get_or_create(&label)
                .set(slave_lag(last_lsn, slave.matched));
            self.slave_in_sync.get_or_create(&label).set(i64::from(slave.in_sync));
        }
        *shown = now;
    }
}

fn saturating_i64(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// What a scrape of tsd reads: the metrics, and the running server's state.
pub struct Exposed {
    pub metrics: Arc<Metrics>,
    pub role: RoleHandle,
    pub progress: Arc<Progress>,
    pub feed: Feed,
    pub presence: Arc<Presence>,
}

impl tinysns_common::metrics::Source for Exposed {
    fn registry(&self) -> &Registry {
        self.metrics.registry()
    }

    fn refresh(&self) {
        let view = self.role.current();
        let (sessions_present, timeline_streams) = self.presence.counts(Instant::now());
        self.metrics.observe_state(&StateSample {
            master: view.is_master(),
            term: view.term,
            last_lsn: self.progress.applied_lsn.load(Ordering::SeqCst),
            commit_lsn: self.feed.committed(),
            timeline_streams,
            sessions_present,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tinysns_common::proto::internal::{
        FollowChanged, PasswordSet, PostCreated, Registered, SessionEnded, SessionStarted, SyncCursor, UserCreated,
    };

    fn text(m: &Metrics) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, m.registry()).unwrap();
        out
    }

    fn entry(origin_cluster: u32, kind: log_entry::Kind) -> LogEntry {
        LogEntry {
            lsn: 1,
            term: 1,
            origin_cluster,
            kind: Some(kind),
            ..Default::default()
        }
    }

    fn social(kind: change::Kind) -> log_entry::Kind {
        log_entry::Kind::Change(Change { kind: Some(kind) })
    }

    fn account(kind: account_change::Kind) -> log_entry::Kind {
        log_entry::Kind::Account(AccountChange { kind: Some(kind) })
    }

    fn follow(following: bool) -> log_entry::Kind {
        social(change::Kind::Follow(FollowChanged {
            follower: 1,
            followee: 2,
            following,
        }))
    }

    fn post() -> log_entry::Kind {
        social(change::Kind::Post(PostCreated::default()))
    }

    #[test]
    fn every_kind_of_entry_is_counted_under_its_own_label_and_other_clusters_changes_as_remote() {
        let cases = [
            (social(change::Kind::User(UserCreated::default())), WriteKind::User),
            (follow(true), WriteKind::Follow),
            (follow(false), WriteKind::Unfollow),
            (post(), WriteKind::Post),
            (
                log_entry::Kind::SyncCursor(SyncCursor::default()),
                WriteKind::SyncCursor,
            ),
            (
                account(account_change::Kind::Registered(Registered::default())),
                WriteKind::Register,
            ),
            (
                account(account_change::Kind::Password(PasswordSet::default())),
                WriteKind::Password,
            ),
            (
                account(account_change::Kind::SessionStarted(SessionStarted::default())),
                WriteKind::SessionStart,
            ),
            (
                account(account_change::Kind::SessionEnded(SessionEnded::default())),
                WriteKind::SessionEnd,
            ),
        ];
        for (kind, expected) in cases {
            assert_eq!(WriteKind::of(&entry(2, kind.clone()), 2), Some(expected), "{kind:?}");
        }
        assert_eq!(WriteKind::of(&entry(3, post()), 2), Some(WriteKind::Remote));
        assert_eq!(WriteKind::of(&entry(3, follow(false)), 2), Some(WriteKind::Remote));
        assert_eq!(WriteKind::of(&LogEntry::default(), 0), None, "no kind, nothing counted");
    }

    #[test]
    fn the_label_lists_follow_declaration_order() {
        for (i, kind) in WriteKind::ALL.iter().enumerate() {
            assert_eq!(*kind as usize, i, "{kind:?}");
        }
        for (i, result) in LoginResult::ALL.iter().enumerate() {
            assert_eq!(*result as usize, i, "{result:?}");
        }
    }

    #[test]
    fn a_committed_batch_counts_once_and_each_entry_by_kind() {
        let m = Metrics::new();
        let scraped = text(&m);
        for kind in WriteKind::ALL {
            assert!(
                scraped.contains(&format!("tinysns_tsd_writes_total{{kind=\"{}\"}} 0\n", kind.label())),
                "every kind shows from the start: {scraped}"
            );
        }
        m.committed_batch(
            1,
            &[entry(1, post()), entry(1, post()), entry(2, post())],
            Duration::from_millis(2),
        );
        m.committed_batch(1, &[entry(1, follow(false))], Duration::from_millis(3));
        m.committed_batch(1, &[], Duration::from_millis(1));
        let scraped = text(&m);
        for expected in [
            "tinysns_tsd_writes_total{kind=\"post\"} 2\n",
            "tinysns_tsd_writes_total{kind=\"remote\"} 1\n",
            "tinysns_tsd_writes_total{kind=\"unfollow\"} 1\n",
            "tinysns_tsd_writes_total{kind=\"follow\"} 0\n",
            "tinysns_tsd_write_batches_total 3\n",
            "tinysns_tsd_write_batch_seconds_count 3\n",
        ] {
            assert!(scraped.contains(expected), "{expected} in {scraped}");
        }
    }

    #[test]
    fn posts_and_logins_are_counted() {
        let m = Metrics::new();
        m.post_accepted();
        m.post_accepted();
        m.login(LoginResult::Ok);
        m.login(LoginResult::WrongCredentials);
        m.login(LoginResult::WrongCredentials);
        let scraped = text(&m);
        for expected in [
            "tinysns_tsd_posts_total 2\n",
            "tinysns_tsd_logins_total{result=\"ok\"} 1\n",
            "tinysns_tsd_logins_total{result=\"wrong_credentials\"} 2\n",
            "tinysns_tsd_logins_total{result=\"throttled\"} 0\n",
        ] {
            assert!(scraped.contains(expected), "{expected} in {scraped}");
        }
    }

    #[test]
    fn the_state_gauges_show_the_role_and_positions() {
        let m = Metrics::new();
        let master = StateSample {
            master: true,
            term: 4,
            last_lsn: 120,
            commit_lsn: 118,
            timeline_streams: 3,
            sessions_present: 2,
        };
        m.observe_state(&master);
        let scraped = text(&m);
        for expected in [
            "tinysns_tsd_master 1\n",
            "tinysns_tsd_term 4\n",
            "tinysns_tsd_last_lsn 120\n",
            "tinysns_tsd_commit_lsn 118\n",
            "tinysns_tsd_timeline_streams 3\n",
            "tinysns_tsd_sessions_present 2\n",
        ] {
            assert!(scraped.contains(expected), "{expected} in {scraped}");
        }
        m.observe_state(&StateSample {
            master: false,
            term: 5,
            ..master
        });
        let scraped = text(&m);
        assert!(scraped.contains("tinysns_tsd_master 0\n"), "{scraped}");
        assert!(scraped.contains("tinysns_tsd_term 5\n"), "{scraped}");
    }

    #[test]
    fn a_slaves_lag_is_what_it_is_not_known_to_hold() {
        assert_eq!(slave_lag(100, Some(100)), 0);
        assert_eq!(slave_lag(100, Some(90)), 10);
        assert_eq!(slave_lag(100, None), 100, "nothing known of a slave not heard from");
        assert_eq!(slave_lag(90, Some(100)), 0, "never negative");
    }

    #[test]
    fn the_change_feed_lag_is_what_the_synchronizer_has_not_read_of_the_committed_log() {
        assert_eq!(change_feed_lag(true, 100, Some(100)), 0);
        assert_eq!(change_feed_lag(true, 100, Some(70)), 30);
        assert_eq!(change_feed_lag(true, 100, None), 0, "no synchronizer subscribed yet");
        assert_eq!(change_feed_lag(false, 100, Some(70)), 0, "a slave serves no feed");
        assert_eq!(
            change_feed_lag(true, 90, Some(100)),
            0,
            "a truncated log: never negative"
        );
        let m = Metrics::new();
        let master = StateSample {
            master: true,
            commit_lsn: 50,
            ..StateSample::default()
        };
        m.observe_state(&master);
        assert!(text(&m).contains("tinysns_tsd_change_feed_lag_entries 0\n"));
        m.change_feed_read(20);
        m.observe_state(&master);
        assert!(text(&m).contains("tinysns_tsd_change_feed_lag_entries 30\n"));
    }

    #[test]
    fn each_slave_has_its_series_until_it_is_gone() {
        let m = Metrics::new();
        m.observe_slaves(
            50,
            &[
                SlaveSample {
                    id: 2,
                    matched: Some(50),
                    in_sync: true,
                },
                SlaveSample {
                    id: 3,
                    matched: Some(20),
                    in_sync: false,
                },
            ],
        );
        let scraped = text(&m);
        for expected in [
            "tinysns_tsd_slave_lag_entries{slave=\"2\"} 0\n",
            "tinysns_tsd_slave_lag_entries{slave=\"3\"} 30\n",
            "tinysns_tsd_slave_in_sync{slave=\"2\"} 1\n",
            "tinysns_tsd_slave_in_sync{slave=\"3\"} 0\n",
        ] {
            assert!(scraped.contains(expected), "{expected} in {scraped}");
        }
        m.observe_slaves(
            60,
            &[SlaveSample {
                id: 3,
                matched: Some(60),
                in_sync: true,
            }],
        );
        let scraped = text(&m);
        assert!(
            !scraped.contains("slave=\"2\""),
            "a slave gone loses its series: {scraped}"
        );
        assert!(
            scraped.contains("tinysns_tsd_slave_lag_entries{slave=\"3\"} 0\n"),
            "{scraped}"
        );
        m.observe_slaves(60, &[]);
        assert!(!text(&m).contains("slave="), "no longer master: no slaves shown");
    }
}
