//! tsd, the social server of one cluster.
//!
//! A client call is authenticated from its session token (`social`; accounts and sessions in
//! `login` and `accounts`, presence in `presence`). A write's path: `social` validates the
//! request and hands a [`command::Command`] to the single `writer` thread, which decides what
//! it means (`command`), turns it into a `LogEntry`, applies it to the `store` and commits;
//! the `replication` stage ships the entry to the slaves and, once those the in-sync rules
//! require have stored it, acknowledges the client and publishes it on the in-memory `feed`.
//! A slave's writer applies what its master sends by the rule in `log_matching`. Timelines (`timeline`)
//! and the synchronizer's `changefeed` tail that feed; `fanout` routes each post to the open
//! timelines of its author's followers (and topic posts to their subscribers); a master's
//! background `chores` are the `sequencer` (numbering the posts of the topics whose home is
//! this cluster), `deletions` (the phases of deleting accounts) and `rooms::RoomDeletions`
//! (the phases of deleting rooms); `rooms` answers room calls at the room's host (presence in
//! `room_presence`); `remote` checks what other clusters send. The
//! server's role comes from `tinysns_common::membership` (heartbeats to the coordinator);
//! `identity` keeps its incarnation and its durable term. `metrics` counts what happens for
//! Prometheus.

pub mod accounts;
pub mod changefeed;
pub mod chores;
pub mod clock;
pub mod command;
pub mod config;
pub mod deletions;
pub mod fanout;
pub mod feed;
pub mod identity;
pub mod likes;
pub mod log_matching;
pub mod login;
pub mod messages;
pub mod metrics;
pub mod peers;
pub mod posts;
pub mod presence;
pub mod profiles;
pub mod reader;
pub mod readiness;
pub mod remote;
pub mod replication;
pub mod room_presence;
pub mod rooms;
pub mod routing;
pub mod sequencer;
pub mod server;
pub mod social;
pub mod store;
pub mod timeline;
pub mod topics;
pub mod writer;
