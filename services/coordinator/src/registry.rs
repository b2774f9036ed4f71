//! Membership and role assignment, as a pure state machine.
//!
//! Each (kind, cluster) pair is a *group*: the servers of a cluster, or its synchronizers.
//! A group has at most one master and a term that only grows; every change of master bumps
//! the term, so a deposed master that comes back can tell it has been replaced.
//!
//! What the registry decides (terms, masters, in-sync sets: [`Metadata`]) is durable: the
//! caller stores it whenever [`Registry::take_changed`] says so, before answering anyone, and
//! a restarted coordinator starts from it ([`Registry::restore`]). What it observes (who is
//! alive, where, how far each log reaches) is soft and rebuilt from heartbeats.
//!
//! Servers are tracked per [`Replica`] (member id and incarnation): a server wiped and
//! restarted comes back as a new incarnation that holds nothing, so it is neither master nor
//! in sync, whatever its id was (Kafka's KIP-903 failure).

mod switchover;

pub use switchover::{Handover, Switchover};

use crate::metadata::{GroupMeta, Metadata, Replica};
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};
use tinysns_common::proto::coordinator::{Member, MemberKind, ReplicaId, Role};
use tinysns_common::topology;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RegistryError {
    #[error("member kind must be SERVER or SYNCHRONIZER")]
    UnknownKind,
    #[error("cluster {0} does not exist (clusters are 1..={1})")]
    NoSuchCluster(u32, u32),
    #[error("member id must be positive")]
    InvalidMemberId,
    #[error("member address must be host:port, got {0:?}")]
    InvalidAddress(String),
    #[error("user ids are positive integers")]
    InvalidUser,
    #[error("cluster {0} has no live server")]
    Unavailable(u32),
    #[error("term {0} is beyond any term a real member can reach (limit {MAX_TERM})")]
    TermOutOfRange(u64),
    #[error("member {id} of cluster {cluster} is alive at {address}; another process claims its id")]
    DuplicateMember { cluster: u32, id: u32, address: String },
    #[error("member address is {0} bytes; the limit is {MAX_ADDRESS_LEN}")]
    AddressTooLong(usize),
    #[error("cluster {0} has no live master to switch over from")]
    NoMaster(u32),
    #[error("server {id} of cluster {cluster} is not a live slave in sync with the master")]
    NotInSync { cluster: u32, id: u32 },
    #[error("cluster {0} has no live slave in sync with its master to switch over to")]
    NoCandidate(u32),
    #[error("cluster {cluster} is already switching over to server {to}")]
    SwitchoverUnderWay { cluster: u32, to: u32 },
}

pub use tinysns_common::limits::MAX_TERM;
/// Longest `host:port` accepted.
pub const MAX_ADDRESS_LEN: usize = 255;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Server,
    Synchronizer,
}

impl Kind {
    fn from_proto(kind: i32) -> Result<Self, RegistryError> {
        match MemberKind::try_from(kind) {
            Ok(MemberKind::Server) => Ok(Kind::Server),
            Ok(MemberKind::Synchronizer) => Ok(Kind::Synchronizer),
            _ => Err(RegistryError::UnknownKind),
        }
    }

    fn to_proto(self) -> MemberKind {
        match self {
            Kind::Server => MemberKind::Server,
            Kind::Synchronizer => MemberKind::Synchronizer,
        }
    }
}

/// What the registry observes of a live member (soft state).
#[derive(Debug, Clone)]
struct Alive {
    address: String,
    internal_address: String,
    incarnation: u64,
    last_seen: Instant,
    applied_lsn: u64,
    /// The highest term the member reported.
    term: u64,
    /// What its release can store and carry (`tinysns_common::features`).
    feature_level: u32,
}

impl Alive {
    fn member(&self, kind: Kind, cluster: u32, id: u32) -> Member {
        Member {
            kind: kind.to_proto() as i32,
            cluster_id: cluster,
            member_id: id,
            address: self.address.clone(),
            internal_address: self.internal_address.clone(),
            incarnation: self.incarnation,
            feature_level: self.feature_level,
        }
    }
}

type Members = BTreeMap<u32, Alive>;

/// The answer to a heartbeat.
#[derive(Debug, Clone, PartialEq)]
pub struct Assignment {
    pub role: Role,
    pub term: u64,
    pub member: Member,
    pub master: Option<Member>,
    pub slaves: Vec<Member>,
    /// Slaves that may be promoted.
    pub in_sync: Vec<ReplicaId>,
    /// (To the master and the target of a planned switchover) the replica taking over.
    pub handover_to: Option<ReplicaId>,
    /// (To a member that said it is leaving) it is out: nobody waits for it any more.
    pub left: bool,
}

/// What a member says in a heartbeat.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub member: Member,
    pub believed_role: Role,
    pub believed_term: u64,
    pub applied_lsn: u64,
    pub in_sync: Vec<ReplicaId>,
    /// (A master in a planned switchover) the target holds its whole log.
    pub ready_to_hand_over: Option<ReplicaId>,
    /// The member is shutting down.
    pub leaving: bool,
}

/// A change worth a log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Joined {
        kind: Kind,
        cluster: u32,
        id: u32,
    },
    Died {
        kind: Kind,
        cluster: u32,
        id: u32,
    },
    MasterChanged {
        kind: Kind,
        cluster: u32,
        id: Option<u32>,
        term: u64,
    },
    /// A server came back under a new incarnation: whatever it held is gone.
    DataLost {
        cluster: u32,
        id: u32,
        was_master: bool,
    },
    /// A member said it is shutting down and was let go.
    Left {
        kind: Kind,
        cluster: u32,
        id: u32,
    },
    SwitchoverStarted {
        cluster: u32,
        from: u32,
        to: u32,
    },
    SwitchoverCancelled {
        cluster: u32,
        to: u32,
        why: String,
    },
    /// A planned switchover handed the cluster from `from` to `to` (a `MasterChanged` with
    /// the new term comes with it).
    SwitchoverCompleted {
        cluster: u32,
        from: u32,
        to: u32,
    },
    /// The master `from` died or lost its data: a failover (a `MasterChanged` says to whom,
    /// maybe nobody yet).
    FailedOver {
        kind: Kind,
        cluster: u32,
        from: u32,
    },
}

/// How long a master has to hand over when it leaves, unless the coordinator says otherwise.
pub const DEFAULT_SWITCHOVER_TIMEOUT: Duration = Duration::from_secs(5);

pub struct Registry {
    clusters: u32,
    failure_timeout: Duration,
    started: Instant,
    meta: Metadata,
    alive: HashMap<(Kind, u32), Members>,
    events: Vec<Event>,
    changed: bool,
    /// Planned switchovers under way, per cluster (soft state: see `switchover`).
    handovers: BTreeMap<u32, Handover>,
    /// Why the last switchover of a cluster was cancelled, and to whom it was.
    cancelled: BTreeMap<u32, (Replica, String)>,
    /// How long a leaving master has to hand over.
    switchover_timeout: Duration,
}

fn group_meta(meta: &mut Metadata, kind: Kind, cluster: u32) -> &mut GroupMeta {
    match kind {
        Kind::Server => meta.servers.entry(cluster).or_default(),
        Kind::Synchronizer => meta.synchronizers.entry(cluster).or_default(),
    }
}

impl Registry {
    pub fn new(clusters: u32, failure_timeout: Duration, now: Instant) -> Self {
        Self::restore(clusters, failure_timeout, now, Metadata::default())
    }

    /// A registry that continues from stored metadata. Recorded masters keep their role if
    /// they heartbeat within one failure timeout; otherwise their in-sync slaves take over.
    pub fn restore(clusters: u32, failure_timeout: Duration, now: Instant, meta: Metadata) -> Self {
        Self {
            clusters,
            failure_timeout,
            started: now,
            meta,
            alive: HashMap::new(),
            events: Vec::new(),
            changed: false,
            handovers: BTreeMap::new(),
            cancelled: BTreeMap::new(),
            switchover_timeout: DEFAULT_SWITCHOVER_TIMEOUT,
        }
    }

    /// How long a master that leaves has to hand over to a slave.
    pub fn with_switchover_timeout(mut self, timeout: Duration) -> Self {
        self.switchover_timeout = timeout;
        self
    }

    pub fn clusters(&self) -> u32 {
        self.clusters
    }

    /// Live members of `kind`, over every cluster.
    pub fn alive(&self, kind: Kind) -> usize {
        self.alive
            .iter()
            .filter(|((k, _), _)| *k == kind)
            .map(|(_, members)| members.len())
            .sum()
    }

    /// Events since the last call, oldest first.
    pub fn drain_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    /// Everything decided so far.
    pub fn metadata(&self) -> &Metadata {
        &self.meta
    }

    /// Storing the metadata failed: offer it again on the next [`Registry::take_changed`].
    pub fn mark_changed(&mut self) {
        self.changed = true;
    }

    /// The metadata, if it changed since the last call: store it before answering.
    pub fn take_changed(&mut self) -> Option<&Metadata> {
        std::mem::take(&mut self.changed).then_some(&self.meta)
    }

    /// Checks a report; returns the member's kind and cluster.
    fn check(&self, report: &Report) -> Result<(Kind, u32), RegistryError> {
        let member = &report.member;
        let kind = Kind::from_proto(member.kind)?;
        if member.member_id == 0 {
            return Err(RegistryError::InvalidMemberId);
        }
        for address in [&member.address, &member.internal_address] {
            if address.len() > MAX_ADDRESS_LEN {
                return Err(RegistryError::AddressTooLong(address.len()));
            }
        }
        if !valid_address(&member.address) {
            return Err(RegistryError::InvalidAddress(member.address.clone()));
        }
        // Servers serve replication on their internal address; synchronizers serve nothing.
        if (kind == Kind::Server || !member.internal_address.is_empty()) && !valid_address(&member.internal_address) {
            return Err(RegistryError::InvalidAddress(member.internal_address.clone()));
        }
        if report.believed_term > MAX_TERM {
            return Err(RegistryError::TermOutOfRange(report.believed_term));
        }
        let cluster = match kind {
            Kind::Server => member.cluster_id,
            Kind::Synchronizer => topology::cluster_of_synchronizer(member.member_id, self.clusters)
                .map_err(|_| RegistryError::InvalidMemberId)?,
        };
        if cluster == 0 || cluster > self.clusters {
            return Err(RegistryError::NoSuchCluster(cluster, self.clusters));
        }
        Ok((kind, cluster))
    }

    /// Records that a member is alive and tells it its role.
    pub fn heartbeat(&mut self, report: &Report, now: Instant) -> Result<Assignment, RegistryError> {
        let (kind, cluster) = self.check(report)?;
        let Report {
            member,
            believed_role,
            believed_term,
            applied_lsn,
            in_sync,
            ready_to_hand_over,
            leaving,
        } = report;
        let id = member.member_id;
        let in_grace = now.duration_since(self.started) < self.failure_timeout;
        let members = self.alive.entry((kind, cluster)).or_default();
        // Two live processes with one id would take turns being this member.
        if let Some(p) = members.get(&id)
            && (p.address != member.address || p.internal_address != member.internal_address)
            && now.duration_since(p.last_seen) < self.failure_timeout
        {
            return Err(RegistryError::DuplicateMember {
                cluster,
                id,
                address: p.address.clone(),
            });
        }
        let alive = Alive {
            address: member.address.clone(),
            internal_address: member.internal_address.clone(),
            incarnation: member.incarnation,
            last_seen: now,
            applied_lsn: *applied_lsn,
            term: *believed_term,
            feature_level: member.feature_level,
        };
        if members.insert(id, alive).is_none() {
            self.events.push(Event::Joined { kind, cluster, id });
        }
        let mut group = Group::new(kind, cluster, &mut self.meta, members, &mut self.events);
        if kind == Kind::Server {
            group.forget_lost_data(id, member.incarnation);
        }
        let claim = (*believed_role == Role::Master && *believed_term > 0).then_some(*believed_term);
        // A member on its way out is never elected (it may still say it is master).
        if !*leaving || claim.is_some() {
            group.place(id, member.incarnation, claim, in_grace);
        }
        if kind == Kind::Server {
            group.record_in_sync(id, member.incarnation, in_sync, in_grace);
        }
        self.changed |= group.changed;
        if kind == Kind::Server {
            self.advance_handover(cluster, id, member.incarnation, ready_to_hand_over.as_ref(), now);
        }
        if *leaving {
            return Ok(self.leave(kind, cluster, id, member.incarnation, now));
        }
        Ok(self.assignment(kind, cluster, id))
    }

    fn assignment(&self, kind: Kind, cluster: u32, id: u32) -> Assignment {
        let mut view = self.view(kind, cluster);
        let alive = &self.alive[&(kind, cluster)][&id];
        let is_master = self
            .meta_of(kind, cluster)
            .and_then(|m| m.master)
            .is_some_and(|m| m.is(id, alive.incarnation));
        view.role = if is_master { Role::Master } else { Role::Slave };
        view.member = alive.member(kind, cluster, id);
        if kind == Kind::Server {
            view.handover_to = self.handover_target(cluster, id, alive.incarnation);
        }
        view
    }

    fn meta_of(&self, kind: Kind, cluster: u32) -> Option<&GroupMeta> {
        match kind {
            Kind::Server => self.meta.servers.get(&cluster),
            Kind::Synchronizer => self.meta.synchronizers.get(&cluster),
        }
    }

    /// The coordinator itself did not run for `stall` (the machine was overloaded or the
    /// process paused): heartbeats could not be received meanwhile, so that time must not
    /// count against the members.
    pub fn forgive(&mut self, stall: Duration) {
        self.started += stall;
        for members in self.alive.values_mut() {
            for alive in members.values_mut() {
                alive.last_seen += stall;
            }
        }
    }

    /// Forgets members silent for longer than the failure timeout; a dead master's best
    /// in-sync slave takes over under a new term. A recorded master that never heartbeat
    /// since this coordinator started counts as dead once one failure timeout has passed.
    pub fn expire(&mut self, now: Instant) {
        let timeout = self.failure_timeout;
        let past_grace = now.duration_since(self.started) > timeout;
        for kind in [Kind::Server, Kind::Synchronizer] {
            for cluster in 1..=self.clusters {
                let members = self.alive.entry((kind, cluster)).or_default();
                let dead: Vec<u32> = members
                    .iter()
                    .filter(|(_, alive)| now.duration_since(alive.last_seen) > timeout)
                    .map(|(id, _)| *id)
                    .collect();
                for id in &dead {
                    members.remove(id);
                    self.events.push(Event::Died { kind, cluster, id: *id });
                }
                let mut group = Group::new(kind, cluster, &mut self.meta, members, &mut self.events);
                group.after_deaths(&dead, past_grace);
                self.changed |= group.changed;
            }
        }
        self.expire_handovers(now);
        self.establish_feature_level(now);
    }

    /// The lowest feature level among the live members of every cluster. While this registry
    /// is too new to have heard from every live member (one not heard yet may run an older
    /// release), no higher than the level last established ([`Metadata::feature_level`]).
    pub fn system_feature_level(&self, now: Instant) -> u32 {
        let heard = tinysns_common::features::system_level(
            self.alive
                .values()
                .flat_map(|members| members.values().map(|alive| alive.feature_level)),
        );
        if now.duration_since(self.started) < self.failure_timeout {
            self.meta
                .feature_level
                .map_or(heard, |established| established.min(heard))
        } else {
            heard
        }
    }

    /// Stores the system's feature level once every live member has been heard from.
    fn establish_feature_level(&mut self, now: Instant) {
        if now.duration_since(self.started) <= self.failure_timeout {
            return;
        }
        let level = Some(self.system_feature_level(now));
        if self.meta.feature_level != level {
            self.meta.feature_level = level;
            self.changed = true;
        }
    }

    /// The master server of the user's cluster.
    pub fn server_for_user(&self, user_id: u64) -> Result<(u32, Member, u64), RegistryError> {
        let cluster = topology::cluster_of_user(user_id, self.clusters).map_err(|_| RegistryError::InvalidUser)?;
        self.server_of_cluster(cluster)
    }

    /// The master server of the cluster that owns a username (given in canonical form).
    pub fn server_for_username(&self, canonical: &str) -> Result<(u32, Member, u64), RegistryError> {
        let cluster =
            topology::cluster_of_username(canonical, self.clusters).map_err(|_| RegistryError::InvalidUser)?;
        self.server_of_cluster(cluster)
    }

    fn server_of_cluster(&self, cluster: u32) -> Result<(u32, Member, u64), RegistryError> {
        let view = self.view(Kind::Server, cluster);
        match view.master {
            Some(master) => Ok((cluster, master, view.term)),
            None => Err(RegistryError::Unavailable(cluster)),
        }
    }

    /// Master, slaves and term of a group (an empty view for a group nobody joined yet). A
    /// recorded master shows only while it is alive under its recorded incarnation.
    pub fn view(&self, kind: Kind, cluster: u32) -> Assignment {
        let mut view = Assignment {
            role: Role::Unspecified,
            term: 0,
            member: Member::default(),
            master: None,
            slaves: Vec::new(),
            in_sync: Vec::new(),
            handover_to: None,
            left: false,
        };
        let Some(meta) = self.meta_of(kind, cluster) else {
            return view;
        };
        view.term = meta.term;
        let empty = Members::new();
        let members = self.alive.get(&(kind, cluster)).unwrap_or(&empty);
        for (id, alive) in members {
            let member = alive.member(kind, cluster, *id);
            if meta.master.is_some_and(|m| m.is(*id, alive.incarnation)) {
                view.master = Some(member);
                continue;
            }
            if meta.in_sync.iter().any(|r| r.is(*id, alive.incarnation)) {
                view.in_sync.push(ReplicaId {
                    member_id: *id,
                    incarnation: alive.incarnation,
                });
            }
            view.slaves.push(member);
        }
        // Recorded in sync but not heard from by this registry yet (it is new: the
        // coordinator restarted, or another one leads now): the master keeps replicating to
        // them and counting them, rather than dropping them because its first reply from a
        // new leader listed nobody.
        for r in meta.in_sync.iter().filter(|r| !members.contains_key(&r.member)) {
            view.in_sync.push(ReplicaId {
                member_id: r.member,
                incarnation: r.incarnation,
            });
        }
        view
    }
}

/// One group's durable state and live members, borrowed together for a decision.
struct Group<'a> {
    kind: Kind,
    cluster: u32,
    meta: &'a mut GroupMeta,
    members: &'a mut Members,
    events: &'a mut Vec<Event>,
    changed: bool,
}

impl<'a> Group<'a> {
    fn new(
        kind: Kind,
        cluster: u32,
        meta: &'a mut Metadata,
        members: &'a mut Members,
        events: &'a mut Vec<Event>,
    ) -> Self {
        Self {
            kind,
            cluster,
            meta: group_meta(meta, kind, cluster),
            members,
            events,
            changed: false,
        }
    }

    /// A higher term than any this group's members have seen.
    fn next_term(&self) -> u64 {
        let reported = self.members.values().map(|a| a.term).max().unwrap_or(0);
        self.meta.term.max(reported) + 1
    }

    fn set_master(&mut self, master: Option<Replica>, term: u64) {
        self.meta.term = term;
        self.meta.master = master;
        if let Some(m) = master {
            self.meta.in_sync.remove(&m);
        }
        self.meta.waiting_for.clear();
        self.changed = true;
        self.events.push(Event::MasterChanged {
            kind: self.kind,
            cluster: self.cluster,
            id: master.map(|m| m.member),
            term,
        });
    }

    /// `id` reported `incarnation`: a replica of it recorded under another one lost its data.
    fn forget_lost_data(&mut self, id: u32, incarnation: u64) {
        let lost = |r: &Replica| r.member == id && !r.is(id, incarnation);
        let was_in_sync = self.meta.in_sync.iter().any(lost);
        let was_master = self.meta.master.as_ref().is_some_and(lost);
        if !(was_in_sync || was_master || self.meta.waiting_for.iter().any(lost)) {
            return;
        }
        self.events.push(Event::DataLost {
            cluster: self.cluster,
            id,
            was_master,
        });
        self.meta.in_sync.retain(|r| !lost(r));
        self.changed |= was_in_sync;
        if was_master && let Some(old) = self.meta.master {
            self.failed(old);
        }
    }

    /// The master `old` failed (it died or lost its data): a failover.
    fn failed(&mut self, old: Replica) {
        self.events.push(Event::FailedOver {
            kind: self.kind,
            cluster: self.cluster,
            from: old.member,
        });
        self.fail_over(old);
    }

    /// The master `old` is gone (or its data is): its best live in-sync slave takes over. With
    /// none, the group waits for a replica that holds every acknowledged write: `old` itself
    /// or a slave that was in sync with it.
    fn fail_over(&mut self, old: Replica) {
        let in_sync = &self.meta.in_sync;
        let candidate = self
            .members
            .iter()
            .filter(|(id, _)| **id != old.member)
            .filter(|(id, alive)| {
                self.kind == Kind::Synchronizer || in_sync.iter().any(|r| r.is(**id, alive.incarnation))
            })
            .max_by(|(ia, a), (ib, b)| a.applied_lsn.cmp(&b.applied_lsn).then(ib.cmp(ia)))
            .map(|(id, alive)| Replica {
                member: *id,
                incarnation: alive.incarnation,
            });
        let term = self.next_term();
        let waiting: std::collections::BTreeSet<Replica> = match (candidate, self.kind) {
            (None, Kind::Server) => std::iter::once(old).chain(self.meta.in_sync.iter().copied()).collect(),
            _ => Default::default(),
        };
        self.set_master(candidate, term);
        self.meta.in_sync.clear();
        self.meta.waiting_for = waiting;
    }

    /// Decides whether the replica `(id, incarnation)` becomes master. `claim` is the term it
    /// believes it is master of.
    fn place(&mut self, id: u32, incarnation: u64, claim: Option<u64>, in_grace: bool) {
        let me = Replica {
            member: id,
            incarnation,
        };
        match self.meta.master {
            Some(m) if m.is(id, incarnation) => {
                // The recorded master knows a higher term: our metadata is behind (lost).
                if let Some(term) = claim.filter(|t| *t > self.meta.term) {
                    self.meta.term = term;
                    self.changed = true;
                }
            }
            // A claim above the recorded term is a more recent master than we know of.
            Some(_) => {
                if let Some(term) = claim.filter(|t| *t > self.meta.term) {
                    self.set_master(Some(me), term);
                }
            }
            None if !self.meta.waiting_for.is_empty() => {
                if self.meta.waiting_for.iter().any(|r| r.is(id, incarnation)) {
                    let term = self.next_term();
                    self.meta.in_sync.clear();
                    self.set_master(Some(me), term);
                }
            }
            // Nobody holds the group (a new group, or a coordinator that lost its state): a
            // member that says it is master is adopted; otherwise elect, but right after a
            // start give a master one failure timeout to announce itself first.
            None => {
                if let Some(term) = claim.filter(|t| *t >= self.meta.term) {
                    self.set_master(Some(me), term);
                } else if !(in_grace && self.members[&id].term > 0) {
                    let best = self
                        .members
                        .iter()
                        .max_by(|(ia, a), (ib, b)| a.applied_lsn.cmp(&b.applied_lsn).then(ib.cmp(ia)))
                        .map(|(id, alive)| Replica {
                            member: *id,
                            incarnation: alive.incarnation,
                        });
                    let term = self.next_term();
                    self.set_master(best.or(Some(me)), term);
                }
            }
        }
    }

    /// The master `(id, incarnation)` says which slaves hold its whole log; only live slaves
    /// under the incarnation it replicated to count. While this registry is new (`in_grace`:
    /// the coordinator restarted, or another one leads now) a recorded slave it has not heard
    /// from yet stays in the set even if the master no longer reports it: the master heard
    /// of no slaves in its first reply and dropped its links, but its writes still wait for
    /// every recorded slave, so nothing it acknowledges can be missing there.
    fn record_in_sync(&mut self, id: u32, incarnation: u64, reported: &[ReplicaId], in_grace: bool) {
        if !self.meta.master.is_some_and(|m| m.is(id, incarnation)) {
            return;
        }
        let members = &*self.members;
        let recorded = &self.meta.in_sync;
        let in_sync: std::collections::BTreeSet<Replica> = reported
            .iter()
            .filter(|r| r.member_id != id)
            .filter(|r| match members.get(&r.member_id) {
                Some(alive) => alive.incarnation == r.incarnation,
                // Not heard from by this registry yet (the coordinator restarted, or another
                // one leads now): what was recorded stands until it is heard from, or the
                // master stops reporting it. Never added without being heard from.
                None => recorded
                    .iter()
                    .any(|k| k.member == r.member_id && k.incarnation == r.incarnation),
            })
            .map(|r| Replica {
                member: r.member_id,
                incarnation: r.incarnation,
            })
            .chain(
                recorded
                    .iter()
                    .filter(|r| in_grace && r.member != id && !members.contains_key(&r.member))
                    .copied(),
            )
            .collect();
        if in_sync != self.meta.in_sync {
            self.meta.in_sync = in_sync;
            self.changed = true;
        }
    }

    /// `dead` members were just forgotten. A master that is not alive is replaced; dead
    /// slaves leave the in-sync set (their master goes on without them).
    fn after_deaths(&mut self, dead: &[u32], past_grace: bool) {
        match self.meta.master {
            Some(m) if past_grace && !self.members.contains_key(&m.member) => self.failed(m),
            _ => {
                let before = self.meta.in_sync.len();
                self.meta.in_sync.retain(|r| !dead.contains(&r.member));
                self.changed |= before != self.meta.in_sync.len();
            }
        }
    }
}

fn valid_address(address: &str) -> bool {
    address
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(1);

    pub(super) fn server(cluster: u32, id: u32) -> Member {
        Member {
            kind: MemberKind::Server as i32,
            cluster_id: cluster,
            member_id: id,
            address: format!("127.0.0.1:{}", 10000 + id),
            internal_address: format!("127.0.0.1:{}", 30000 + id),
            incarnation: 100 + u64::from(id),
            feature_level: tinysns_common::features::FEATURE_LEVEL,
        }
    }

    /// A synchronizer (its cluster follows from its id).
    pub(super) fn synchronizer(id: u32) -> Member {
        Member {
            kind: MemberKind::Synchronizer as i32,
            member_id: id,
            address: format!("127.0.0.1:{}", 9000 + id),
            feature_level: tinysns_common::features::FEATURE_LEVEL,
            ..Default::default()
        }
    }

    /// The same server after its data directory was wiped.
    fn wiped(m: &Member) -> Member {
        Member {
            incarnation: m.incarnation + 1000,
            ..m.clone()
        }
    }

    /// Slaves in sync under the incarnation `server` gives them.
    pub(super) fn replicas(ids: &[u32]) -> Vec<ReplicaId> {
        ids.iter()
            .map(|id| ReplicaId {
                member_id: *id,
                incarnation: 100 + u64::from(*id),
            })
            .collect()
    }

    pub(super) fn report(m: &Member, role: Role, term: u64, lsn: u64, in_sync: &[u32]) -> Report {
        Report {
            member: m.clone(),
            believed_role: role,
            believed_term: term,
            applied_lsn: lsn,
            in_sync: replicas(in_sync),
            ..Default::default()
        }
    }

    pub(super) fn beat(r: &mut Registry, m: &Member, now: Instant) -> Assignment {
        r.heartbeat(&report(m, Role::Unspecified, 0, 0, &[]), now).unwrap()
    }

    /// The master of a cluster says which slaves are in sync.
    pub(super) fn master_beat(r: &mut Registry, m: &Member, in_sync: &[u32], now: Instant) -> Assignment {
        r.heartbeat(&report(m, Role::Master, 1, 0, in_sync), now).unwrap()
    }

    #[test]
    fn the_system_feature_level_is_the_oldest_live_members_and_a_new_leader_never_answers_above_the_established_one() {
        let t0 = Instant::now();
        let mut r = Registry::new(2, TIMEOUT, t0);
        let at = |m: Member, level: u32| Member {
            feature_level: level,
            ..m
        };
        // A new system: nothing established, what is heard counts at once.
        beat(&mut r, &at(server(1, 1), 3), t0);
        beat(&mut r, &at(server(2, 2), 3), t0);
        assert_eq!(r.system_feature_level(t0), 3);
        // An old synchronizer joins (a release from before feature levels reports 0), then
        // is upgraded in place to level 2.
        let old_sync = at(synchronizer(7), 0);
        beat(&mut r, &old_sync, t0);
        assert_eq!(r.system_feature_level(t0), 0);
        beat(&mut r, &at(old_sync.clone(), 2), t0);
        assert_eq!(r.system_feature_level(t0), 2);
        // Past the first failure timeout the level is established (stored).
        let t1 = t0 + TIMEOUT + Duration::from_millis(10);
        for m in [at(server(1, 1), 3), at(server(2, 2), 3), at(old_sync.clone(), 2)] {
            beat(&mut r, &m, t1);
        }
        r.expire(t1);
        assert_eq!(r.metadata().feature_level, Some(2));
        assert!(r.take_changed().is_some(), "the level is stored");
        // A coordinator taking over has heard only the servers so far: it answers no higher
        // than the established level until everyone could have been heard.
        let t2 = t1 + Duration::from_secs(60);
        let mut next = Registry::restore(2, TIMEOUT, t2, r.metadata().clone());
        beat(&mut next, &at(server(1, 1), 3), t2);
        assert_eq!(next.system_feature_level(t2), 2);
        // The old synchronizer is gone for good: once everyone could be heard, the level rises.
        let t3 = t2 + TIMEOUT + Duration::from_millis(10);
        beat(&mut next, &at(server(1, 1), 3), t3);
        beat(&mut next, &at(server(2, 2), 3), t3);
        next.expire(t3);
        assert_eq!(next.system_feature_level(t3), 3);
        assert_eq!(next.metadata().feature_level, Some(3));
    }

    #[test]
    fn first_server_is_master_second_is_slave() {
        let t0 = Instant::now();
        let mut r = Registry::new(3, TIMEOUT, t0);
        let a = beat(&mut r, &server(1, 1), t0);
        assert_eq!((a.role, a.term), (Role::Master, 1));
        let b = beat(&mut r, &server(1, 2), t0);
        assert_eq!((b.role, b.term), (Role::Slave, 1));
        assert_eq!(b.master.unwrap().member_id, 1);
        let (cluster, master, _) = r.server_for_user(4).unwrap();
        assert_eq!((cluster, master.member_id), (1, 1));
        assert_eq!((r.alive(Kind::Server), r.alive(Kind::Synchronizer)), (2, 0));
        let events = r.drain_events();
        assert!(
            !events.iter().any(|e| matches!(e, Event::FailedOver { .. })),
            "a first master is no failover: {events:?}"
        );
    }

    #[test]
    fn dead_master_is_replaced_by_slave_under_a_new_term() {
        let t0 = Instant::now();
        let mut r = Registry::new(3, TIMEOUT, t0);
        beat(&mut r, &server(2, 1), t0);
        beat(&mut r, &server(2, 2), t0);
        master_beat(&mut r, &server(2, 1), &[2], t0);
        let t1 = t0 + Duration::from_millis(800);
        beat(&mut r, &server(2, 2), t1);
        r.expire(t0 + Duration::from_millis(1200));
        assert_eq!(r.alive(Kind::Server), 1, "the dead master is no longer counted");
        let a = beat(&mut r, &server(2, 2), t0 + Duration::from_millis(1250));
        assert_eq!((a.role, a.term), (Role::Master, 2));
        // The old master comes back: it is now a slave and learns the newer term.
        let old = beat(&mut r, &server(2, 1), t0 + Duration::from_millis(1300));
        assert_eq!((old.role, old.term), (Role::Slave, 2));
        let events = r.drain_events();
        assert!(events.contains(&Event::MasterChanged {
            kind: Kind::Server,
            cluster: 2,
            id: Some(2),
            term: 2
        }));
        assert!(events.contains(&Event::FailedOver {
            kind: Kind::Server,
            cluster: 2,
            from: 1
        }));
    }

    #[test]
    fn promotion_prefers_the_most_up_to_date_slave() {
        let t0 = Instant::now();
        let mut r = Registry::new(1, TIMEOUT, t0);
        beat(&mut r, &server(1, 1), t0);
        r.heartbeat(&report(&server(1, 2), Role::Slave, 1, 5, &[]), t0).unwrap();
        r.heartbeat(&report(&server(1, 3), Role::Slave, 1, 9, &[]), t0).unwrap();
        master_beat(&mut r, &server(1, 1), &[2, 3], t0);
        let t1 = t0 + Duration::from_millis(900);
        r.heartbeat(&report(&server(1, 2), Role::Slave, 1, 5, &[]), t1).unwrap();
        r.heartbeat(&report(&server(1, 3), Role::Slave, 1, 9, &[]), t1).unwrap();
        r.expire(t0 + Duration::from_millis(1500));
        assert_eq!(r.server_for_user(1).unwrap().1.member_id, 3);
    }

    #[test]
    fn a_slave_out_of_sync_is_never_promoted_and_the_old_master_gets_its_role_back() {
        let t0 = Instant::now();
        let mut r = Registry::new(1, TIMEOUT, t0);
        beat(&mut r, &server(1, 1), t0);
        beat(&mut r, &server(1, 2), t0);
        // The master reports its slave still catching up, then dies.
        master_beat(&mut r, &server(1, 1), &[], t0);
        let t1 = t0 + Duration::from_millis(900);
        beat(&mut r, &server(1, 2), t1);
        r.expire(t0 + Duration::from_millis(1500));
        let s = beat(&mut r, &server(1, 2), t0 + Duration::from_millis(1600));
        assert_eq!(s.role, Role::Slave, "an out-of-sync slave must not take over");
        assert_eq!(r.server_for_user(1).unwrap_err(), RegistryError::Unavailable(1));
        // The old master returns (it holds every acknowledged write) and leads again.
        let m = r
            .heartbeat(
                &report(&server(1, 1), Role::Master, 1, 7, &[]),
                t0 + Duration::from_millis(1700),
            )
            .unwrap();
        assert_eq!((m.role, m.term), (Role::Master, 3));
        // Once it reports the slave caught up, that slave may take over again.
        master_beat(&mut r, &server(1, 1), &[2], t0 + Duration::from_millis(1700));
        let t2 = t0 + Duration::from_millis(2500);
        beat(&mut r, &server(1, 2), t2);
        r.expire(t0 + Duration::from_millis(2800));
        assert_eq!(r.server_for_user(1).unwrap().1.member_id, 2);
    }

    #[test]
    fn time_the_coordinator_did_not_run_does_not_count_against_members() {
        let t0 = Instant::now();
        let mut r = Registry::new(1, TIMEOUT, t0);
        beat(&mut r, &server(1, 1), t0);
        r.forgive(Duration::from_secs(2));
        r.expire(t0 + Duration::from_millis(2500));
        assert_eq!(r.server_for_user(1).unwrap().1.member_id, 1);
        r.expire(t0 + Duration::from_millis(3100));
        assert!(r.server_for_user(1).is_err());
    }

    #[test]
    fn cluster_without_servers_is_unavailable() {
        let t0 = Instant::now();
        let mut r = Registry::new(3, TIMEOUT, t0);
        assert_eq!(r.server_for_user(3).unwrap_err(), RegistryError::Unavailable(3));
        beat(&mut r, &server(3, 1), t0);
        r.expire(t0 + Duration::from_secs(2));
        assert_eq!(r.server_for_user(3).unwrap_err(), RegistryError::Unavailable(3));
        assert_eq!(r.server_for_user(0).unwrap_err(), RegistryError::InvalidUser);
    }

    #[test]
    fn restarted_coordinator_keeps_the_running_master() {
        let t0 = Instant::now();
        let mut r = Registry::new(3, TIMEOUT, t0);
        // The slave happens to heartbeat first after the restart: no election during grace.
        let s = r
            .heartbeat(&report(&server(1, 2), Role::Slave, 4, 10, &[]), t0)
            .unwrap();
        assert_eq!(s.role, Role::Slave);
        assert!(s.master.is_none());
        let m = r
            .heartbeat(&report(&server(1, 1), Role::Master, 4, 10, &[]), t0)
            .unwrap();
        assert_eq!((m.role, m.term), (Role::Master, 4));
        let s = r
            .heartbeat(&report(&server(1, 2), Role::Slave, 4, 10, &[]), t0)
            .unwrap();
        assert_eq!(s.master.unwrap().member_id, 1);
    }

    #[test]
    fn a_coordinator_without_stored_state_elects_above_every_reported_term() {
        let t0 = Instant::now();
        let mut r = Registry::new(3, TIMEOUT, t0);
        let t1 = t0 + Duration::from_millis(1100);
        r.heartbeat(&report(&server(1, 1), Role::Slave, 6, 10, &[]), t1)
            .unwrap();
        let s = r
            .heartbeat(&report(&server(1, 2), Role::Slave, 4, 10, &[]), t1)
            .unwrap();
        // Member 1 knows term 6, so the new master's term must be above it, not above 4.
        assert_eq!(s.term, 7);
        assert!(r.take_changed().is_some(), "an election changes the stored state");
    }

    /// Master 1 with slave 2 in sync, at term 1.
    fn healthy_pair(t0: Instant) -> Registry {
        let mut r = Registry::new(1, TIMEOUT, t0);
        beat(&mut r, &server(1, 1), t0);
        beat(&mut r, &server(1, 2), t0);
        master_beat(&mut r, &server(1, 1), &[2], t0);
        assert_eq!(r.view(Kind::Server, 1).in_sync, replicas(&[2]));
        r
    }

    #[test]
    fn a_wiped_slave_is_not_in_sync_and_is_never_promoted() {
        let t0 = Instant::now();
        let mut r = healthy_pair(t0);
        // Slave 2 is wiped and restarted well within the failure timeout.
        let t1 = t0 + Duration::from_millis(300);
        let s = beat(&mut r, &wiped(&server(1, 2)), t1);
        assert_eq!(s.role, Role::Slave);
        assert!(
            r.view(Kind::Server, 1).in_sync.is_empty(),
            "a wiped replica holds nothing"
        );
        // The master has not noticed yet and still reports the old incarnation in sync.
        master_beat(&mut r, &server(1, 1), &[2], t1);
        assert!(r.metadata().servers[&1].in_sync.is_empty());
        // The master dies: the empty slave must not take over (it would truncate the master's
        // log when it returns).
        let t2 = t0 + Duration::from_millis(900);
        beat(&mut r, &wiped(&server(1, 2)), t2);
        r.expire(t0 + Duration::from_millis(1500));
        let s = beat(&mut r, &wiped(&server(1, 2)), t0 + Duration::from_millis(1600));
        assert_eq!(s.role, Role::Slave);
        assert_eq!(r.server_for_user(1).unwrap_err(), RegistryError::Unavailable(1));
        // The old master returns with its data and leads again, above every term so far.
        let m = beat(&mut r, &server(1, 1), t0 + Duration::from_millis(1700));
        assert_eq!((m.role, m.term), (Role::Master, 3));
        // The new incarnation counts once the master says it has caught up.
        master_beat(&mut r, &server(1, 1), &[2], t0 + Duration::from_millis(1700));
        assert!(
            r.view(Kind::Server, 1).in_sync.is_empty(),
            "reported under the old incarnation"
        );
        let caught_up = Report {
            in_sync: vec![ReplicaId {
                member_id: 2,
                incarnation: wiped(&server(1, 2)).incarnation,
            }],
            ..report(&server(1, 1), Role::Master, 3, 0, &[])
        };
        r.heartbeat(&caught_up, t0 + Duration::from_millis(1750)).unwrap();
        assert_eq!(r.view(Kind::Server, 1).in_sync[0].member_id, 2);
    }

    #[test]
    fn a_wiped_master_is_replaced_by_its_in_sync_slave_at_once() {
        let t0 = Instant::now();
        let mut r = healthy_pair(t0);
        let t1 = t0 + Duration::from_millis(300);
        beat(&mut r, &server(1, 2), t1);
        let m = beat(&mut r, &wiped(&server(1, 1)), t1);
        assert_eq!(
            (m.role, m.term),
            (Role::Slave, 2),
            "an empty replica must not stay master"
        );
        assert_eq!(r.server_for_user(1).unwrap().1.member_id, 2);
        let events = r.drain_events();
        assert!(events.contains(&Event::DataLost {
            cluster: 1,
            id: 1,
            was_master: true
        }));
        assert!(events.contains(&Event::FailedOver {
            kind: Kind::Server,
            cluster: 1,
            from: 1
        }));
    }

    #[test]
    fn a_wiped_master_without_an_in_sync_slave_leaves_the_cluster_unavailable() {
        let t0 = Instant::now();
        let mut r = Registry::new(1, TIMEOUT, t0);
        beat(&mut r, &server(1, 1), t0);
        beat(&mut r, &server(1, 2), t0);
        master_beat(&mut r, &server(1, 1), &[], t0);
        let m = beat(&mut r, &wiped(&server(1, 1)), t0 + Duration::from_millis(100));
        assert_eq!(m.role, Role::Slave);
        // Neither the wiped master nor the lagging slave holds every acknowledged write.
        for _ in 0..3 {
            beat(&mut r, &server(1, 2), t0 + Duration::from_millis(200));
            beat(&mut r, &wiped(&server(1, 1)), t0 + Duration::from_millis(200));
        }
        assert_eq!(r.server_for_user(1).unwrap_err(), RegistryError::Unavailable(1));
    }

    #[test]
    fn a_slave_that_died_is_out_of_sync_when_its_master_dies_later() {
        let t0 = Instant::now();
        let mut r = healthy_pair(t0);
        // The slave dies; the master goes on alone (and acknowledges writes the slave lacks).
        let t1 = t0 + Duration::from_millis(900);
        master_beat(&mut r, &server(1, 1), &[], t1);
        r.expire(t0 + Duration::from_millis(1100));
        assert!(r.view(Kind::Server, 1).in_sync.is_empty());
        // Then the master dies and the slave returns: it must wait for the master.
        r.expire(t0 + Duration::from_millis(2000));
        let s = beat(&mut r, &server(1, 2), t0 + Duration::from_millis(2100));
        assert_eq!(s.role, Role::Slave);
        let m = beat(&mut r, &server(1, 1), t0 + Duration::from_millis(2200));
        assert_eq!(m.role, Role::Master);
    }

    #[test]
    fn when_both_replicas_die_at_once_either_may_return_first() {
        for first in [1, 2] {
            let t0 = Instant::now();
            let mut r = healthy_pair(t0);
            r.expire(t0 + Duration::from_millis(1100));
            assert_eq!(r.server_for_user(1).unwrap_err(), RegistryError::Unavailable(1));
            let a = beat(&mut r, &server(1, first), t0 + Duration::from_millis(1200));
            assert_eq!(
                (a.role, a.term),
                (Role::Master, 3),
                "member {first} holds every acknowledged write"
            );
        }
    }

    fn restored(meta: &Metadata, t0: Instant) -> Registry {
        Registry::restore(1, TIMEOUT, t0, meta.clone())
    }

    #[test]
    fn a_restarted_coordinator_continues_from_its_stored_state() {
        let t0 = Instant::now();
        let mut r = healthy_pair(t0);
        let meta = r.take_changed().expect("decisions to store").clone();
        // A fresh process from the stored state: the slave heartbeats first and the running
        // master second; nothing changes.
        let t1 = t0 + Duration::from_secs(10);
        let mut r = restored(&meta, t1);
        let s = beat(&mut r, &server(1, 2), t1);
        assert_eq!((s.role, s.term), (Role::Slave, 1));
        let m = master_beat(&mut r, &server(1, 1), &[2], t1);
        assert_eq!((m.role, m.term), (Role::Master, 1));
        assert_eq!(r.view(Kind::Server, 1).in_sync, replicas(&[2]));
        assert!(r.take_changed().is_none());
    }

    #[test]
    fn a_new_leader_keeps_the_recorded_in_sync_slave_when_the_master_reports_first() {
        let t0 = Instant::now();
        let mut r = healthy_pair(t0);
        let meta = r.take_changed().expect("decisions to store").clone();
        // Another coordinator takes over from the replicated metadata; the master's heartbeat
        // reaches it before the slave's.
        let t1 = t0 + Duration::from_secs(10);
        let mut r = restored(&meta, t1);
        let m = master_beat(&mut r, &server(1, 1), &[2], t1);
        assert_eq!(r.metadata().servers[&1].in_sync, meta.servers[&1].in_sync);
        assert!(r.take_changed().is_none(), "nothing to record");
        // The master hears that the slave is still recorded in sync, so it keeps its link and
        // goes on reporting it (it used to drop it: the reply listed only slaves heard from).
        let told: Vec<u32> = m.in_sync.iter().map(|r| r.member_id).collect();
        assert_eq!(told, vec![2]);
        // The master dies right after: its in-sync slave takes over.
        for ms in [250, 500, 750, 1000, 1250] {
            beat(&mut r, &server(1, 2), t1 + Duration::from_millis(ms));
            r.expire(t1 + Duration::from_millis(ms + 10));
        }
        let s = beat(&mut r, &server(1, 2), t1 + Duration::from_millis(1300));
        assert_eq!((s.role, s.term), (Role::Master, 2));
        // Even when the master's first report is empty (its first reply listed no slaves, so
        // it dropped its links), the recorded slave stays until it is heard from.
        let mut r = restored(&meta, t1);
        master_beat(&mut r, &server(1, 1), &[], t1);
        assert_eq!(r.metadata().servers[&1].in_sync, meta.servers[&1].in_sync);
        beat(&mut r, &server(1, 2), t1 + Duration::from_millis(100));
        master_beat(&mut r, &server(1, 1), &[], t1 + Duration::from_millis(200));
        assert!(
            r.metadata().servers[&1].in_sync.is_empty(),
            "heard from, and the master counts it out: out"
        );
        // A slave the new registry never heard from is not added by a master's report.
        let mut r = Registry::restore(1, TIMEOUT, t1, Metadata::default());
        beat(&mut r, &server(1, 1), t1);
        master_beat(&mut r, &server(1, 1), &[2], t1);
        assert!(r.metadata().servers[&1].in_sync.is_empty());
    }

    #[test]
    fn a_restarted_coordinator_does_not_readopt_a_deposed_master() {
        let t0 = Instant::now();
        let mut r = healthy_pair(t0);
        // Master 1 is partitioned away; slave 2 takes over at term 2.
        beat(&mut r, &server(1, 2), t0 + Duration::from_millis(900));
        r.expire(t0 + Duration::from_millis(1100));
        assert_eq!(r.server_for_user(1).unwrap().2, 2);
        let meta = r.metadata().clone();
        // The coordinator restarts; the deposed master, still believing in term 1, is first.
        let t1 = t0 + Duration::from_secs(10);
        let mut r = restored(&meta, t1);
        let old = r
            .heartbeat(&report(&server(1, 1), Role::Master, 1, 50, &[]), t1)
            .unwrap();
        assert_eq!((old.role, old.term), (Role::Slave, 2));
        let new = r
            .heartbeat(&report(&server(1, 2), Role::Master, 2, 40, &[]), t1)
            .unwrap();
        assert_eq!((new.role, new.term), (Role::Master, 2));
    }

    #[test]
    fn a_restarted_coordinator_replaces_a_silent_master_only_with_an_in_sync_slave() {
        for (in_sync, promoted) in [(vec![2], true), (vec![], false)] {
            let t0 = Instant::now();
            let mut r = Registry::new(1, TIMEOUT, t0);
            beat(&mut r, &server(1, 1), t0);
            beat(&mut r, &server(1, 2), t0);
            master_beat(&mut r, &server(1, 1), &in_sync, t0);
            let meta = r.metadata().clone();
            // The coordinator restarts while the master is paused (a double fault).
            let t1 = t0 + Duration::from_secs(10);
            let mut r = restored(&meta, t1);
            for ms in [0, 500, 1000] {
                beat(&mut r, &server(1, 2), t1 + Duration::from_millis(ms));
                r.expire(t1 + Duration::from_millis(ms + 50));
            }
            let s = beat(&mut r, &server(1, 2), t1 + Duration::from_millis(1100));
            if promoted {
                assert_eq!((s.role, s.term), (Role::Master, 2));
            } else {
                assert_eq!(s.role, Role::Slave, "an out-of-sync slave must not take over");
                assert_eq!(r.server_for_user(1).unwrap_err(), RegistryError::Unavailable(1));
            }
        }
    }

    #[test]
    fn synchronizers_are_grouped_by_their_derived_cluster() {
        let t0 = Instant::now();
        let mut r = Registry::new(3, TIMEOUT, t0);
        let sync = synchronizer;
        let a = beat(&mut r, &sync(1), t0);
        let b = beat(&mut r, &sync(4), t0);
        let c = beat(&mut r, &sync(2), t0);
        assert_eq!((a.role, a.member.cluster_id), (Role::Master, 1));
        assert_eq!((b.role, b.member.cluster_id), (Role::Slave, 1));
        assert_eq!((c.role, c.member.cluster_id), (Role::Master, 2));
    }

    #[test]
    fn malformed_heartbeats_are_rejected() {
        let t0 = Instant::now();
        let mut r = Registry::new(3, TIMEOUT, t0);
        let mut m = server(4, 1);
        assert_eq!(
            r.heartbeat(&report(&m, Role::Unspecified, 0, 0, &[]), t0).unwrap_err(),
            RegistryError::NoSuchCluster(4, 3)
        );
        m = server(1, 0);
        assert_eq!(
            r.heartbeat(&report(&m, Role::Unspecified, 0, 0, &[]), t0).unwrap_err(),
            RegistryError::InvalidMemberId
        );
        m = server(1, 1);
        m.address = "nohost".into();
        assert!(matches!(
            r.heartbeat(&report(&m, Role::Unspecified, 0, 0, &[]), t0).unwrap_err(),
            RegistryError::InvalidAddress(_)
        ));
        m = server(1, 1);
        m.kind = 0;
        assert_eq!(
            r.heartbeat(&report(&m, Role::Unspecified, 0, 0, &[]), t0).unwrap_err(),
            RegistryError::UnknownKind
        );
    }

    #[test]
    fn a_forged_term_near_the_maximum_is_refused_and_changes_nothing() {
        let t0 = Instant::now();
        let mut r = Registry::new(3, TIMEOUT, t0);
        let m = beat(&mut r, &server(1, 1), t0 + TIMEOUT * 2);
        assert_eq!((m.role, m.term), (Role::Master, 1));
        let mut attacker = server(1, 2);
        attacker.address = "evil.example:1".into();
        for term in [MAX_TERM + 1, u64::MAX - 1, u64::MAX] {
            assert_eq!(
                r.heartbeat(&report(&attacker, Role::Master, term, 99, &[]), t0 + TIMEOUT * 2)
                    .unwrap_err(),
                RegistryError::TermOutOfRange(term)
            );
        }
        let view = r.view(Kind::Server, 1);
        assert_eq!(view.term, 1);
        assert_eq!(view.master.unwrap().address, server(1, 1).address);
        assert!(view.slaves.is_empty(), "the refused member must not have joined");
    }

    #[test]
    fn a_live_member_id_cannot_move_to_another_address() {
        let t0 = Instant::now();
        let mut r = Registry::new(3, TIMEOUT, t0);
        beat(&mut r, &server(1, 1), t0 + TIMEOUT * 2);
        let mut moved = server(1, 1);
        moved.address = "10.0.0.9:10000".into();
        let t1 = t0 + TIMEOUT * 2 + Duration::from_millis(100);
        assert!(matches!(
            r.heartbeat(&report(&moved, Role::Master, 5, 0, &[]), t1).unwrap_err(),
            RegistryError::DuplicateMember { id: 1, .. }
        ));
        assert_eq!(r.server_for_user(1).unwrap().1.address, server(1, 1).address);
        // Once the old process is gone for a failure timeout, the id is free to move.
        let later = t1 + TIMEOUT * 2;
        r.expire(later);
        assert_eq!(beat(&mut r, &moved, later).member.address, "10.0.0.9:10000");
    }

    #[test]
    fn servers_need_an_internal_address_and_addresses_are_bounded() {
        let t0 = Instant::now();
        let mut r = Registry::new(3, TIMEOUT, t0);
        let mut m = server(1, 1);
        m.internal_address = String::new();
        assert!(matches!(
            r.heartbeat(&report(&m, Role::Unspecified, 0, 0, &[]), t0).unwrap_err(),
            RegistryError::InvalidAddress(_)
        ));
        m = server(1, 1);
        m.address = format!("{}:1", "h".repeat(300));
        assert_eq!(
            r.heartbeat(&report(&m, Role::Unspecified, 0, 0, &[]), t0).unwrap_err(),
            RegistryError::AddressTooLong(302)
        );
    }
}
