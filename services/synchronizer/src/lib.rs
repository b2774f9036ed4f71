//! The synchronizer: carries one cluster's users, follow relations and posts to every other
//! cluster over RabbitMQ, and applies theirs to its own cluster.
//!
//! Only the master synchronizer of a cluster works (`run`): its `publisher` tails the
//! cluster's change feed on the tsd master and publishes each change with publisher confirms,
//! recording its progress back in the cluster; its `consumer` reads the cluster's queue and
//! applies changes through the tsd master before acknowledging them. `bus` owns the AMQP
//! topology and the message format; `cluster` finds the tsd master; `metrics` counts what
//! goes through for Prometheus.

pub mod bus;
pub mod cluster;
pub mod config;
pub mod consumer;
pub mod metrics;
pub mod publisher;
pub mod run;
