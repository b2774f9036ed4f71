//! The coordinators' shared memory: the metadata (terms, masters, in-sync sets) replicated by
//! Raft ([openraft]) across every coordinator, so losing one is not an outage.
//!
//! - `store`: the Raft log and the state machine in one SQLite file (durable before Raft is
//!   told anything is written);
//! - `network`: Raft's messages over gRPC on the internal port, both directions;
//! - `leadership`: whether this coordinator may decide right now (leader, with a lease a
//!   quorum confirmed), and the registry it decides with.
//!
//! Only the leader decides; each decision is a [`Command`] committed by a quorum before any
//! member hears of it.

pub mod leadership;
pub mod network;
pub mod node;
pub mod store;

use crate::metadata::Metadata;
use serde::{Deserialize, Serialize};

pub type NodeId = u64;

/// A change to the replicated metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Replaces the groups it names, leaves the others as they are.
    Update(Metadata),
}

openraft::declare_raft_types!(
    /// Openraft's types for the coordinators' metadata.
    pub TypeConfig:
        D = Command,
        R = (),
        SnapshotData = std::io::Cursor<Vec<u8>>,
);

pub type Raft = openraft::Raft<TypeConfig>;
