//! Master -> slave replication.
//!
//! - `slave`: the `Append` and `InstallSnapshot` RPCs a slave serves (checked, then applied
//!   by the writer).
//! - `link`: one task per slave on the master, shipping the log to it at its own pace (a
//!   slave catching up never holds up the others or the writes).
//! - `in_sync`: the rules, as pure functions: which slaves a write must reach before it is
//!   acknowledged, when a lagging slave is dropped from the in-sync set (only once the
//!   coordinator has recorded that), and when a caught-up slave joins it.
//! - `master`: the replication stage. It receives each batch the writer committed, waits
//!   until the slaves the rules require have stored it, then acknowledges the clients and
//!   publishes the entries on the feed.

mod in_sync;
mod link;
mod master;
mod slave;

pub use master::{ReplicationSettings, Replicator};
pub use slave::{AppendError, ReplicationService, check_append, remove_stale_snapshots};
