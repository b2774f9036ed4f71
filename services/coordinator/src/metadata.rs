//! What the coordinator has decided and must never forget: per group, the term, the master,
//! the in-sync set and who a blocked group waits for. Everything else it knows (who is
//! alive, at which address, how far each log reaches) is rebuilt from heartbeats within one
//! failure timeout. Decisions are committed by the coordinators' Raft group (`raft`) before
//! anyone hears of them.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// One incarnation of a member: the member id names a place, the incarnation its data.
/// Incarnation 0 means "not known" (synchronizers, which hold no data).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Replica {
    pub member: u32,
    pub incarnation: u64,
}

impl Replica {
    /// Whether `incarnation` of `member` still holds this replica's data.
    pub fn is(&self, member: u32, incarnation: u64) -> bool {
        self.member == member && (self.incarnation == incarnation || self.incarnation == 0 || incarnation == 0)
    }
}

/// The durable state of one group (the servers, or the synchronizers, of one cluster).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupMeta {
    /// Only grows; every change of master raises it.
    pub term: u64,
    pub master: Option<Replica>,
    /// Slaves that hold every write the master acknowledged: only these may be promoted.
    pub in_sync: BTreeSet<Replica>,
    /// The master died with no live slave in sync: only these replicas hold every
    /// acknowledged write, and the first of them to return becomes master. Empty otherwise.
    pub waiting_for: BTreeSet<Replica>,
}

/// The durable state of every group, and the system's feature level.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    pub servers: BTreeMap<u32, GroupMeta>,
    pub synchronizers: BTreeMap<u32, GroupMeta>,
    /// The lowest feature level among live members, as last established with every member
    /// heard from (`tinysns_common::features`). A coordinator that has just started leading
    /// answers no higher than this until it has heard from everyone itself. None: never
    /// established (a new system, or coordinators from before feature levels).
    #[serde(default)]
    pub feature_level: Option<u32>,
}

impl Metadata {
    /// The groups of `self` that differ from `before` (groups are never removed).
    pub fn changed_since(&self, before: &Metadata) -> Metadata {
        fn diff(now: &BTreeMap<u32, GroupMeta>, before: &BTreeMap<u32, GroupMeta>) -> BTreeMap<u32, GroupMeta> {
            now.iter()
                .filter(|(cluster, group)| before.get(cluster) != Some(group))
                .map(|(cluster, group)| (*cluster, group.clone()))
                .collect()
        }
        Metadata {
            servers: diff(&self.servers, &before.servers),
            synchronizers: diff(&self.synchronizers, &before.synchronizers),
            feature_level: self
                .feature_level
                .filter(|_| self.feature_level != before.feature_level),
        }
    }

    /// Takes every group `part` names, and its feature level if it has one.
    pub fn merge(&mut self, part: Metadata) {
        let Metadata {
            servers,
            synchronizers,
            feature_level,
        } = part;
        self.servers.extend(servers);
        self.synchronizers.extend(synchronizers);
        if feature_level.is_some() {
            self.feature_level = feature_level;
        }
    }

    pub fn is_empty(&self) -> bool {
        self.servers.is_empty() && self.synchronizers.is_empty() && self.feature_level.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(term: u64) -> GroupMeta {
        GroupMeta {
            term,
            master: Some(Replica {
                member: 1,
                incarnation: 99,
            }),
            in_sync: [Replica {
                member: 2,
                incarnation: 5,
            }]
            .into(),
            waiting_for: BTreeSet::new(),
        }
    }

    #[test]
    fn a_change_carries_only_the_groups_that_changed_and_merges_back() {
        let mut before = Metadata::default();
        before.servers.insert(1, group(3));
        before.servers.insert(2, group(7));
        before.synchronizers.insert(1, group(1));
        let mut after = before.clone();
        after.servers.get_mut(&2).unwrap().term = 8;
        after.synchronizers.insert(3, group(1));
        after.feature_level = Some(4);
        let part = after.changed_since(&before);
        assert_eq!(part.servers.keys().collect::<Vec<_>>(), [&2]);
        assert_eq!(part.synchronizers.keys().collect::<Vec<_>>(), [&3]);
        assert_eq!(part.feature_level, Some(4));
        assert!(after.changed_since(&after).is_empty());
        let mut merged = before;
        merged.merge(part);
        assert_eq!(merged, after);
    }

    #[test]
    fn metadata_round_trips_through_json() {
        let mut meta = Metadata::default();
        meta.servers.insert(2, group(7));
        meta.feature_level = Some(3);
        let text = serde_json::to_string(&meta).unwrap();
        assert_eq!(serde_json::from_str::<Metadata>(&text).unwrap(), meta);
        // Stored by a coordinator from before feature levels.
        let old: Metadata = serde_json::from_str(r#"{"servers":{},"synchronizers":{}}"#).unwrap();
        assert_eq!(old.feature_level, None);
    }
}
