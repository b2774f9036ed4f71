//! Membership and role assignment, as a pure state machine.
//!
//! Each (kind, cluster) pair is a *group*: the servers of a cluster, or its synchronizers.
//! A group has at most one master and a term that only grows; every change of master bumps
//! the term, so a deposed master that comes back can tell it has been replaced.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};
use tinysns_common::proto::coordinator::{Member, MemberKind, Role};
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
}

#[derive(Debug, Clone)]
struct Alive {
    address: String,
    internal_address: String,
    last_seen: Instant,
    applied_lsn: u64,
    /// Holds the master's whole log (as the master last reported). Only such a slave may
    /// be promoted; a member that (re)joins is not in sync until the master says so.
    in_sync: bool,
}

#[derive(Debug, Default)]
struct Group {
    term: u64,
    master: Option<u32>,
    members: BTreeMap<u32, Alive>,
    /// The master died with no slave in sync: only it may become master again, since it
    /// alone may hold acknowledged writes.
    blocked_on: Option<u32>,
}

impl Group {
    fn member(&self, kind: Kind, cluster: u32, id: u32) -> Option<Member> {
        self.members.get(&id).map(|alive| Member {
            kind: match kind {
                Kind::Server => MemberKind::Server,
                Kind::Synchronizer => MemberKind::Synchronizer,
            } as i32,
            cluster_id: cluster,
            member_id: id,
            address: alive.address.clone(),
            internal_address: alive.internal_address.clone(),
        })
    }

    /// The live non-master best placed to take over: the one that has stored the most,
    /// among those in sync if `in_sync_only`.
    fn best_candidate(&self, in_sync_only: bool) -> Option<u32> {
        self.members
            .iter()
            .filter(|(id, _)| Some(**id) != self.master)
            .filter(|(_, alive)| alive.in_sync || !in_sync_only)
            .max_by(|(ia, a), (ib, b)| a.applied_lsn.cmp(&b.applied_lsn).then(ib.cmp(ia)))
            .map(|(id, _)| *id)
    }
}

/// The answer to a heartbeat.
#[derive(Debug, Clone, PartialEq)]
pub struct Assignment {
    pub role: Role,
    pub term: u64,
    pub member: Member,
    pub master: Option<Member>,
    pub slaves: Vec<Member>,
    /// Slaves that may be promoted.
    pub in_sync: Vec<u32>,
}

/// What a member says in a heartbeat.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub member: Member,
    pub believed_role: Role,
    pub believed_term: u64,
    pub applied_lsn: u64,
    pub in_sync_slaves: Vec<u32>,
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
}

pub struct Registry {
    clusters: u32,
    failure_timeout: Duration,
    started: Instant,
    groups: HashMap<(Kind, u32), Group>,
    events: Vec<Event>,
}

impl Registry {
    pub fn new(clusters: u32, failure_timeout: Duration, now: Instant) -> Self {
        Self {
            clusters,
            failure_timeout,
            started: now,
            groups: HashMap::new(),
            events: Vec::new(),
        }
    }

    pub fn clusters(&self) -> u32 {
        self.clusters
    }

    /// Events since the last call, oldest first.
    pub fn drain_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    /// Records that a member is alive and tells it its role.
    pub fn heartbeat(&mut self, report: &Report, now: Instant) -> Result<Assignment, RegistryError> {
        let Report {
            member,
            believed_role,
            believed_term,
            applied_lsn,
            in_sync_slaves,
        } = report;
        let (believed_role, believed_term, applied_lsn) = (*believed_role, *believed_term, *applied_lsn);
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
        if believed_term > MAX_TERM {
            return Err(RegistryError::TermOutOfRange(believed_term));
        }
        let cluster = match kind {
            Kind::Server => member.cluster_id,
            Kind::Synchronizer => topology::cluster_of_synchronizer(member.member_id, self.clusters)
                .map_err(|_| RegistryError::InvalidMemberId)?,
        };
        if cluster == 0 || cluster > self.clusters {
            return Err(RegistryError::NoSuchCluster(cluster, self.clusters));
        }
        let in_grace = now.duration_since(self.started) < self.failure_timeout;
        let group = self.groups.entry((kind, cluster)).or_default();
        let id = member.member_id;
        let previous = group.members.get(&id);
        // Two live processes with one id would take turns being this member.
        if let Some(p) = previous
            && (p.address != member.address || p.internal_address != member.internal_address)
            && now.duration_since(p.last_seen) < self.failure_timeout
        {
            return Err(RegistryError::DuplicateMember {
                cluster,
                id,
                address: p.address.clone(),
            });
        }
        let is_new = previous.is_none();
        // Synchronizers hold no data: any of them may take over.
        let in_sync = kind == Kind::Synchronizer || previous.is_some_and(|p| p.in_sync);
        let alive = Alive {
            address: member.address.clone(),
            internal_address: member.internal_address.clone(),
            last_seen: now,
            applied_lsn,
            in_sync,
        };
        group.members.insert(id, alive);
        if is_new {
            self.events.push(Event::Joined { kind, cluster, id });
        }

        let claims_master = believed_role == Role::Master && believed_term > 0;
        let master_changed = match group.master {
            // A restarted coordinator learns the master from the master itself; a claim with
            // a higher term than the one we adopted is the more recent master.
            None if claims_master && believed_term >= group.term => {
                group.term = believed_term;
                group.master = Some(id);
                true
            }
            Some(current) if current != id && claims_master && believed_term > group.term => {
                group.term = believed_term;
                group.master = Some(id);
                true
            }
            // Waiting for the master that died with no slave in sync.
            None if group.blocked_on == Some(id) => {
                group.term = group.term.max(believed_term) + 1;
                group.master = Some(id);
                group.blocked_on = None;
                true
            }
            None if group.blocked_on.is_some() => false,
            // Nobody claims the group: elect, but right after a coordinator restart give the
            // real master one failure timeout to announce itself first.
            None if !(in_grace && believed_term > 0) => {
                group.term = group.term.max(believed_term) + 1;
                group.master = group.best_candidate(false).or(Some(id));
                true
            }
            _ => false,
        };
        if group.master == Some(id) && kind == Kind::Server {
            for (other, alive) in group.members.iter_mut() {
                if *other != id {
                    alive.in_sync = in_sync_slaves.contains(other);
                }
            }
        }
        if master_changed {
            self.events.push(Event::MasterChanged {
                kind,
                cluster,
                id: group.master,
                term: group.term,
            });
        }
        Ok(self.assignment(kind, cluster, id))
    }

    fn assignment(&self, kind: Kind, cluster: u32, id: u32) -> Assignment {
        let mut view = self.view(kind, cluster);
        let group = &self.groups[&(kind, cluster)];
        view.role = if group.master == Some(id) {
            Role::Master
        } else {
            Role::Slave
        };
        view.member = group.member(kind, cluster, id).unwrap_or_default();
        view
    }

    /// The coordinator itself did not run for `stall` (the machine was overloaded or the
    /// process paused): heartbeats could not be received meanwhile, so that time must not
    /// count against the members.
    pub fn forgive(&mut self, stall: Duration) {
        for group in self.groups.values_mut() {
            for alive in group.members.values_mut() {
                alive.last_seen += stall;
            }
        }
    }

    /// Forgets members silent for longer than the failure timeout; a dead master's best
    /// slave takes over under a new term.
    pub fn expire(&mut self, now: Instant) {
        let timeout = self.failure_timeout;
        for ((kind, cluster), group) in self.groups.iter_mut() {
            let dead: Vec<u32> = group
                .members
                .iter()
                .filter(|(_, alive)| now.duration_since(alive.last_seen) > timeout)
                .map(|(id, _)| *id)
                .collect();
            for id in dead {
                group.members.remove(&id);
                self.events.push(Event::Died {
                    kind: *kind,
                    cluster: *cluster,
                    id,
                });
                if group.master == Some(id) {
                    group.master = None;
                    group.master = group.best_candidate(true);
                    if group.master.is_none() && *kind == Kind::Server {
                        group.blocked_on = Some(id);
                    }
                    group.term += 1;
                    self.events.push(Event::MasterChanged {
                        kind: *kind,
                        cluster: *cluster,
                        id: group.master,
                        term: group.term,
                    });
                }
            }
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

    /// Master, slaves and term of a group (an empty view for a group nobody joined yet).
    pub fn view(&self, kind: Kind, cluster: u32) -> Assignment {
        let mut view = Assignment {
            role: Role::Unspecified,
            term: 0,
            member: Member::default(),
            master: None,
            slaves: Vec::new(),
            in_sync: Vec::new(),
        };
        if let Some(group) = self.groups.get(&(kind, cluster)) {
            view.term = group.term;
            view.master = group.master.and_then(|m| group.member(kind, cluster, m));
            for (id, alive) in group.members.iter().filter(|(id, _)| Some(**id) != group.master) {
                view.slaves.extend(group.member(kind, cluster, *id));
                if alive.in_sync {
                    view.in_sync.push(*id);
                }
            }
        }
        view
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

    fn server(cluster: u32, id: u32) -> Member {
        Member {
            kind: MemberKind::Server as i32,
            cluster_id: cluster,
            member_id: id,
            address: format!("127.0.0.1:{}", 10000 + id),
            internal_address: format!("127.0.0.1:{}", 30000 + id),
        }
    }

    fn report(m: &Member, role: Role, term: u64, lsn: u64, in_sync: &[u32]) -> Report {
        Report {
            member: m.clone(),
            believed_role: role,
            believed_term: term,
            applied_lsn: lsn,
            in_sync_slaves: in_sync.to_vec(),
        }
    }

    fn beat(r: &mut Registry, m: &Member, now: Instant) -> Assignment {
        r.heartbeat(&report(m, Role::Unspecified, 0, 0, &[]), now).unwrap()
    }

    /// The master of a cluster says which slaves are in sync.
    fn master_beat(r: &mut Registry, m: &Member, in_sync: &[u32], now: Instant) -> Assignment {
        r.heartbeat(&report(m, Role::Master, 1, 0, in_sync), now).unwrap()
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
        let a = beat(&mut r, &server(2, 2), t0 + Duration::from_millis(1250));
        assert_eq!((a.role, a.term), (Role::Master, 2));
        // The old master comes back: it is now a slave and learns the newer term.
        let old = beat(&mut r, &server(2, 1), t0 + Duration::from_millis(1300));
        assert_eq!((old.role, old.term), (Role::Slave, 2));
        assert!(r.drain_events().contains(&Event::MasterChanged {
            kind: Kind::Server,
            cluster: 2,
            id: Some(2),
            term: 2
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
    fn after_grace_a_restarted_coordinator_elects_with_a_higher_term() {
        let t0 = Instant::now();
        let mut r = Registry::new(3, TIMEOUT, t0);
        let t1 = t0 + Duration::from_millis(1100);
        let s = r
            .heartbeat(&report(&server(1, 2), Role::Slave, 4, 10, &[]), t1)
            .unwrap();
        assert_eq!((s.role, s.term), (Role::Master, 5));
    }

    #[test]
    fn synchronizers_are_grouped_by_their_derived_cluster() {
        let t0 = Instant::now();
        let mut r = Registry::new(3, TIMEOUT, t0);
        let sync = |id| Member {
            kind: MemberKind::Synchronizer as i32,
            cluster_id: 0,
            member_id: id,
            address: format!("127.0.0.1:{}", 9000 + id),
            internal_address: String::new(),
        };
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
