//! tsd, the social server of one cluster.
//!
//! A write's path: `social` (client API) validates the request and hands a [`writer::Command`]
//! to the single `writer` thread, which turns it into a `LogEntry`, applies it to the `store`
//! and commits; the `replication` stage ships the entry to the slave and, once the slave has
//! stored it, acknowledges the client and publishes it on the in-memory `feed`. Timelines
//! and the synchronizer's `changefeed` tail that feed; `fanout` routes each post to the open
//! timelines of its author's followers. The server's role comes from
//! `tinysns_common::membership` (heartbeats to the coordinator).

pub mod changefeed;
pub mod config;
pub mod fanout;
pub mod feed;
pub mod reader;
pub mod remote;
pub mod replication;
pub mod server;
pub mod sessions;
pub mod social;
pub mod store;
pub mod writer;
