//! The coordinator: who is alive, who is master of each cluster (and under which term), and
//! which server serves a user.
//!
//! `registry` is the pure state machine (time is passed in, so it is unit-tested without
//! sleeping); `service` puts it behind gRPC and runs the failure detector; `metrics` counts
//! what it sees and decides for Prometheus.

pub mod config;
pub mod metadata;
pub mod metrics;
pub mod raft;
pub mod registry;
pub mod service;
