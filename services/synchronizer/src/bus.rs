//! RabbitMQ: the topology tinysns uses and the format of its messages.
//!
//! One durable fanout exchange carries every cluster's changes; each cluster has a durable
//! queue bound to it, so a change published once reaches every cluster. Messages that can
//! never be applied (undecodable, unknown version, refused by tsd) are dead-lettered to
//! the dead-letter queue instead of blocking their queue.

use lapin::options::{
    BasicQosOptions, ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use prost::Message;
use tinysns_common::proto::internal::{BusEnvelope, RemoteChange};

/// Version of [`BusEnvelope`] this build writes and reads.
pub const ENVELOPE_VERSION: u32 = 1;
/// Deliveries a consumer may hold unacknowledged.
pub const PREFETCH: u16 = 512;

/// The names of everything one tinysns deployment uses on the broker, under a namespace
/// (default `tinysns`) so that several deployments can share one broker.
#[derive(Debug, Clone)]
pub struct Names {
    namespace: String,
}

impl Names {
    pub fn new(namespace: &str) -> Self {
        Self {
            namespace: namespace.to_string(),
        }
    }

    /// The fanout exchange every cluster's changes are published to.
    pub fn exchange(&self) -> String {
        format!("{}.changes", self.namespace)
    }

    pub fn dead_exchange(&self) -> String {
        format!("{}.dead", self.namespace)
    }

    /// Where poison messages end up.
    pub fn dead_queue(&self) -> String {
        format!("{}.dead-letter", self.namespace)
    }

    /// The queue a cluster consumes.
    pub fn queue(&self, cluster: u32) -> String {
        format!("{}.cluster.{cluster}", self.namespace)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("RabbitMQ: {0}")]
    Amqp(#[from] lapin::Error),
    #[error("the broker refused message {0}")]
    Nacked(u64),
}

/// Why a message can never be applied.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum Poison {
    #[error("undecodable message: {0}")]
    Undecodable(String),
    #[error("unknown message version {0} (this build reads {ENVELOPE_VERSION})")]
    UnknownVersion(u32),
    #[error("message without a change")]
    Empty,
}

pub fn encode(change: RemoteChange) -> Vec<u8> {
    BusEnvelope {
        version: ENVELOPE_VERSION,
        change: Some(change),
    }
    .encode_to_vec()
}

pub fn decode(bytes: &[u8]) -> Result<RemoteChange, Poison> {
    let envelope = BusEnvelope::decode(bytes).map_err(|e| Poison::Undecodable(e.to_string()))?;
    if envelope.version != ENVELOPE_VERSION {
        return Err(Poison::UnknownVersion(envelope.version));
    }
    match envelope.change {
        Some(change) if change.change.as_ref().is_some_and(|c| c.kind.is_some()) => Ok(change),
        _ => Err(Poison::Empty),
    }
}

/// Persistent, typed, with an id that names the change (for tracing duplicates).
pub fn properties(change: &RemoteChange) -> BasicProperties {
    BasicProperties::default()
        .with_delivery_mode(2)
        .with_content_type("application/x-protobuf".into())
        .with_type("tinysns.change.v1".into())
        .with_message_id(format!("{}-{}", change.origin_cluster, change.origin_lsn).into())
}

pub async fn connect(url: &str) -> Result<Connection, BusError> {
    Ok(Connection::connect(
        url,
        ConnectionProperties::default().with_connection_name("tinysns-synchronizer".into()),
    )
    .await?)
}

/// Declares the exchanges and the queues of all `clusters` (idempotent). Every publisher
/// declares every queue before its first publish, so no cluster misses a change published
/// before its own synchronizer first started.
pub async fn declare(channel: &Channel, names: &Names, clusters: u32) -> Result<(), BusError> {
    let durable = ExchangeDeclareOptions {
        durable: true,
        ..Default::default()
    };
    let none = FieldTable::default;
    channel
        .exchange_declare(names.exchange().into(), ExchangeKind::Fanout, durable, none())
        .await?;
    channel
        .exchange_declare(names.dead_exchange().into(), ExchangeKind::Fanout, durable, none())
        .await?;
    let queue = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    channel.queue_declare(names.dead_queue().into(), queue, none()).await?;
    channel
        .queue_bind(
            names.dead_queue().into(),
            names.dead_exchange().into(),
            "".into(),
            QueueBindOptions::default(),
            none(),
        )
        .await?;
    for cluster in 1..=clusters {
        let mut args = FieldTable::default();
        args.insert(
            "x-dead-letter-exchange".into(),
            AMQPValue::LongString(names.dead_exchange().into()),
        );
        // Only one consumer at a time gets a cluster's changes, so they apply in order
        // even if two synchronizers briefly both believe they are master.
        args.insert("x-single-active-consumer".into(), AMQPValue::Boolean(true));
        channel.queue_declare(names.queue(cluster).into(), queue, args).await?;
        channel
            .queue_bind(
                names.queue(cluster).into(),
                names.exchange().into(),
                "".into(),
                QueueBindOptions::default(),
                none(),
            )
            .await?;
    }
    Ok(())
}

pub async fn publisher_channel(conn: &Connection) -> Result<Channel, BusError> {
    let channel = conn.create_channel().await?;
    channel.confirm_select(ConfirmSelectOptions::default()).await?;
    Ok(channel)
}

pub async fn consumer_channel(conn: &Connection) -> Result<Channel, BusError> {
    let channel = conn.create_channel().await?;
    channel.basic_qos(PREFETCH, BasicQosOptions::default()).await?;
    Ok(channel)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tinysns_common::proto::internal::{Change, PostCreated, change};

    fn sample() -> RemoteChange {
        RemoteChange {
            origin_cluster: 2,
            origin_lsn: 7,
            timestamp_ms: 1,
            change: Some(Change {
                kind: Some(change::Kind::Post(PostCreated {
                    author: 2,
                    post_id: 9,
                    text: "hi".into(),
                })),
            }),
        }
    }

    #[test]
    fn round_trip() {
        assert_eq!(decode(&encode(sample())).unwrap(), sample());
    }

    #[test]
    fn poison_is_recognised() {
        assert!(matches!(decode(b"\xff\xff\xff"), Err(Poison::Undecodable(_))));
        let future = BusEnvelope {
            version: 2,
            change: Some(sample()),
        }
        .encode_to_vec();
        assert_eq!(decode(&future), Err(Poison::UnknownVersion(2)));
        let empty = BusEnvelope {
            version: 1,
            change: None,
        }
        .encode_to_vec();
        assert_eq!(decode(&empty), Err(Poison::Empty));
        assert_eq!(decode(b""), Err(Poison::UnknownVersion(0)));
    }
}
