//! RabbitMQ: the topology tinysns uses and the format of its messages.
//!
//! One durable direct exchange carries every cluster's changes. Each cluster has a durable
//! queue bound to every *other* cluster's origin key (`from.<n>`), so a message published
//! once with its origin's key reaches each other cluster and never comes back to its own;
//! and to its own destination key (`to.<n>`), for changes only some clusters need.
//! A message carries a run of consecutive changes: the broker's cost is per message, so a
//! busy cluster pays it once for many changes. Messages that can never be applied
//! (undecodable, unknown version, refused by tsd) are dead-lettered to the dead-letter
//! queue instead of blocking their queue.

use lapin::options::{
    BasicQosOptions, ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use prost::Message;
use tinysns_common::proto::internal::{BusEnvelope, RemoteChange};
use tinysns_common::secret::ClusterSecret;

/// AMQP header holding the hex HMAC-SHA256 of the message body under the cluster secret:
/// only a member can publish a change other clusters will apply.
pub const SIGNATURE_HEADER: &str = "x-tinysns-hmac";

/// Version of [`BusEnvelope`] this build writes: a batch of changes in `changes`.
pub const ENVELOPE_VERSION: u32 = 2;
/// The first version, one change per message in `change`; still read.
const SINGLE_CHANGE_VERSION: u32 = 1;
/// Most changes, and about the most bytes, one message carries (well under the gRPC
/// message limit of the `ApplyRemote` call that applies it).
pub const MAX_MESSAGE_CHANGES: usize = 512;
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024;
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

    /// The direct exchange every cluster's changes are published to. (Not `<ns>.changes`:
    /// that was a fanout exchange before, and the broker refuses to redeclare a name with
    /// another type.)
    pub fn exchange(&self) -> String {
        format!("{}.changes-by-origin", self.namespace)
    }

    /// The routing key of changes that come from `cluster`.
    pub fn origin_key(cluster: u32) -> String {
        format!("from.{cluster}")
    }

    /// The routing key of changes for `cluster` alone.
    pub fn destination_key(cluster: u32) -> String {
        format!("to.{cluster}")
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
    #[error("the broker did not set up the connection within {0:?}")]
    Timeout(std::time::Duration),
    #[error("the broker confirmed nothing for {0:?}")]
    ConfirmTimeout(std::time::Duration),
    #[error("bad AMQP URL: {0}")]
    BadUrl(String),
}

/// Why a message can never be applied.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum Poison {
    #[error("undecodable message: {0}")]
    Undecodable(String),
    #[error("unknown message version {0} (this build reads {SINGLE_CHANGE_VERSION} and {ENVELOPE_VERSION})")]
    UnknownVersion(u32),
    #[error("message without a change")]
    Empty,
    #[error("message is not signed with the cluster secret")]
    Unsigned,
    #[error("message signature does not match its body (forged or corrupted)")]
    BadSignature,
}

pub fn encode(changes: Vec<RemoteChange>) -> Vec<u8> {
    BusEnvelope {
        version: ENVELOPE_VERSION,
        change: None,
        changes,
    }
    .encode_to_vec()
}

/// The changes of a message, in order; a message that holds none, or one without content,
/// is poison as a whole.
pub fn decode(bytes: &[u8]) -> Result<Vec<RemoteChange>, Poison> {
    let envelope = BusEnvelope::decode(bytes).map_err(|e| Poison::Undecodable(e.to_string()))?;
    let changes = match envelope.version {
        SINGLE_CHANGE_VERSION => envelope.change.into_iter().collect(),
        ENVELOPE_VERSION => envelope.changes,
        other => return Err(Poison::UnknownVersion(other)),
    };
    let complete = |c: &RemoteChange| c.change.as_ref().is_some_and(|c| c.kind.is_some());
    if changes.is_empty() || !changes.iter().all(complete) {
        return Err(Poison::Empty);
    }
    Ok(changes)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The signature headers of `body` (none without a secret).
pub fn signature(body: &[u8], secret: Option<&ClusterSecret>) -> FieldTable {
    let mut headers = FieldTable::default();
    if let Some(secret) = secret {
        headers.insert(
            SIGNATURE_HEADER.into(),
            AMQPValue::LongString(hex(&secret.sign(body)).into()),
        );
    }
    headers
}

/// Checks the signature of a delivered `body` against its `headers`. Without a secret
/// (a loopback-only local system) nothing is checked.
pub fn verify(body: &[u8], headers: Option<&FieldTable>, secret: Option<&ClusterSecret>) -> Result<(), Poison> {
    let Some(secret) = secret else {
        return Ok(());
    };
    let value = headers.and_then(|h| h.inner().get(SIGNATURE_HEADER));
    let text = match value {
        Some(AMQPValue::LongString(s)) => s.to_string(),
        _ => return Err(Poison::Unsigned),
    };
    let tag = unhex(&text).ok_or(Poison::BadSignature)?;
    if secret.verify(body, &tag) {
        Ok(())
    } else {
        Err(Poison::BadSignature)
    }
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || text.len() > 128 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Persistent, typed, signed (see [`SIGNATURE_HEADER`]), with an id that names the changes
/// (for tracing duplicates): `<origin cluster>-<first lsn>-<last lsn>`.
pub fn properties(changes: &[RemoteChange], body: &[u8], secret: Option<&ClusterSecret>) -> BasicProperties {
    let (origin, first, last) = match (changes.first(), changes.last()) {
        (Some(first), Some(last)) => (first.origin_cluster, first.origin_lsn, last.origin_lsn),
        _ => (0, 0, 0),
    };
    BasicProperties::default()
        .with_delivery_mode(2)
        .with_content_type("application/x-protobuf".into())
        .with_type("tinysns.changes.v2".into())
        .with_message_id(format!("{origin}-{first}-{last}").into())
        .with_headers(signature(body, secret))
}

/// Logs what the broker says about `connection` for as long as it lasts, and returns the
/// error that ends it. A resource alarm (memory or disk) makes the broker send
/// `connection.blocked`: lapin then stops sending, publishes and their confirms wait
/// (nothing is confirmed early, nothing is lost, the change feed is read no further), and
/// `connection.unblocked` ends the wait. Consuming goes on meanwhile, so other clusters'
/// changes keep arriving here.
///
/// A connection that fails without a close from the broker (a broker killed, a connection
/// reset) is reported here, while confirms the publisher waits on may never resolve and the
/// consumer may never see its stream end: the caller must end its work when this returns.
pub async fn watch_connection(
    events: impl futures_util::Stream<Item = lapin::Event> + Unpin,
    blocked: tokio::sync::watch::Sender<bool>,
) -> Option<lapin::Error> {
    use futures_util::StreamExt;
    let mut events = events;
    let mut blocked_since: Option<std::time::Instant> = None;
    while let Some(event) = events.next().await {
        match event {
            lapin::Event::ConnectionBlocked(reason) => {
                blocked_since.get_or_insert_with(std::time::Instant::now);
                blocked.send_replace(true);
                tracing::warn!(%reason, "the broker blocks publishing (resource alarm); changes wait here until it clears");
            }
            lapin::Event::ConnectionUnblocked => {
                let waited = blocked_since.take().map(|since| since.elapsed());
                blocked.send_replace(false);
                tracing::info!(?waited, "the broker accepts publishing again");
            }
            lapin::Event::Error(error) => return Some(error),
            _ => {}
        }
    }
    None
}

/// How to reach the broker.
#[derive(Debug, Clone, Copy)]
pub struct Endpoint<'a> {
    pub url: &'a str,
    /// PEM CA certificate(s) an `amqps://` broker is checked against, besides the system's.
    pub ca: Option<&'a str>,
    /// The heartbeat asked of the broker, unless the URL names one.
    pub heartbeat: std::time::Duration,
    /// Longest wait for the connection to be set up, and for it to close.
    pub timeout: std::time::Duration,
}

/// `url` with a `heartbeat` of `interval` (whole seconds, at least 1) unless it names one.
pub fn with_heartbeat(url: &str, interval: std::time::Duration) -> Result<lapin::uri::AMQPUri, BusError> {
    let mut uri: lapin::uri::AMQPUri = url.parse().map_err(BusError::BadUrl)?;
    if uri.query.heartbeat.is_none() {
        let seconds = interval.as_secs().clamp(1, u64::from(u16::MAX));
        uri.query.heartbeat = Some(u16::try_from(seconds).unwrap_or(u16::MAX));
    }
    Ok(uri)
}

/// Connects to the broker of `endpoint`.
async fn connect(endpoint: Endpoint<'_>) -> Result<Connection, BusError> {
    let properties = ConnectionProperties::default().with_connection_name("tinysns-synchronizer".into());
    let tls = lapin::tcp::OwnedTLSConfig {
        identity: None,
        cert_chain: endpoint.ca.map(str::to_string),
    };
    let runtime = lapin::runtime::default_runtime()?;
    let uri = with_heartbeat(endpoint.url, endpoint.heartbeat)?;
    Ok(Connection::connect_uri_with_config(uri, properties, tls, runtime).await?)
}

/// Closes `conn`, returning its unacknowledged deliveries to their queues; gives up after
/// the endpoint's timeout (on a connection that failed, lapin's close may never answer).
pub async fn close(conn: &Connection, endpoint: Endpoint<'_>) {
    let closing = conn.close(200, "synchronizer stopping".into());
    if tokio::time::timeout(endpoint.timeout, closing).await.is_err() {
        tracing::warn!(timeout = ?endpoint.timeout, "the broker connection did not close in time; dropping it");
    }
}

/// The kind of queue the changes wait in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum QueueType {
    /// A classic durable queue: kept on the one node that hosts it.
    #[default]
    Classic,
    /// A quorum queue (Raft-replicated over the broker's nodes): what confirmed messages
    /// should sit in on a broker of 3 nodes. A queue's type is fixed when it is created:
    /// changing it means deleting the queues (drained) first.
    Quorum,
}

/// A connection with a confirming publisher channel and a consumer channel, on a broker
/// whose topology is declared; given up after `timeout` (lapin itself waits forever on a
/// broker that accepts the socket and never answers, as one does while it starts).
pub async fn open(
    endpoint: Endpoint<'_>,
    names: &Names,
    clusters: u32,
    queue_type: QueueType,
) -> Result<(Connection, Channel, Channel), BusError> {
    let setup = async {
        let conn = connect(endpoint).await?;
        let publish = publisher_channel(&conn).await?;
        declare(&publish, names, clusters, queue_type).await?;
        let consume = consumer_channel(&conn).await?;
        Ok((conn, publish, consume))
    };
    tokio::time::timeout(endpoint.timeout, setup)
        .await
        .unwrap_or(Err(BusError::Timeout(endpoint.timeout)))
}

/// Declares the exchanges and the queues of all `clusters` and binds each queue to every
/// other cluster's origin key and its own destination key (idempotent). Every publisher
/// declares every queue before its first publish, so no cluster misses a change published
/// before its own synchronizer first started.
async fn declare(channel: &Channel, names: &Names, clusters: u32, queue_type: QueueType) -> Result<(), BusError> {
    let durable = ExchangeDeclareOptions {
        durable: true,
        ..Default::default()
    };
    let none = FieldTable::default;
    channel
        .exchange_declare(names.exchange().into(), ExchangeKind::Direct, durable, none())
        .await?;
    channel
        .exchange_declare(names.dead_exchange().into(), ExchangeKind::Fanout, durable, none())
        .await?;
    let queue = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    channel
        .queue_declare(names.dead_queue().into(), queue, queue_arguments(queue_type, None))
        .await?;
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
        let args = queue_arguments(queue_type, Some(names));
        channel.queue_declare(names.queue(cluster).into(), queue, args).await?;
        channel
            .queue_bind(
                names.queue(cluster).into(),
                names.exchange().into(),
                Names::destination_key(cluster).into(),
                QueueBindOptions::default(),
                none(),
            )
            .await?;
        for origin in (1..=clusters).filter(|origin| *origin != cluster) {
            channel
                .queue_bind(
                    names.queue(cluster).into(),
                    names.exchange().into(),
                    Names::origin_key(origin).into(),
                    QueueBindOptions::default(),
                    none(),
                )
                .await?;
        }
    }
    Ok(())
}

/// The arguments of a queue of `queue_type`; with `changes`, those of a cluster's queue of
/// changes in that topology (dead-lettered, one active consumer).
pub fn queue_arguments(queue_type: QueueType, changes: Option<&Names>) -> FieldTable {
    let mut args = FieldTable::default();
    if queue_type == QueueType::Quorum {
        args.insert("x-queue-type".into(), AMQPValue::LongString("quorum".into()));
    }
    if let Some(names) = changes {
        args.insert(
            "x-dead-letter-exchange".into(),
            AMQPValue::LongString(names.dead_exchange().into()),
        );
        // Only one consumer at a time gets a cluster's changes, so they apply in order
        // even if two synchronizers briefly both believe they are master.
        args.insert("x-single-active-consumer".into(), AMQPValue::Boolean(true));
    }
    args
}

async fn publisher_channel(conn: &Connection) -> Result<Channel, BusError> {
    let channel = conn.create_channel().await?;
    channel.confirm_select(ConfirmSelectOptions::default()).await?;
    Ok(channel)
}

async fn consumer_channel(conn: &Connection) -> Result<Channel, BusError> {
    let channel = conn.create_channel().await?;
    channel.basic_qos(PREFETCH, BasicQosOptions::default()).await?;
    Ok(channel)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_heartbeat_is_asked_for_unless_the_url_names_one() {
        let ten = std::time::Duration::from_secs(10);
        let asked = with_heartbeat("amqp://u:p@h:5672/%2f", ten).expect("a good URL");
        assert_eq!(asked.query.heartbeat, Some(10));
        let named = with_heartbeat("amqp://u:p@h:5672/%2f?heartbeat=42", ten).expect("a good URL");
        assert_eq!(named.query.heartbeat, Some(42));
        let sub_second = with_heartbeat("amqp://h", std::time::Duration::from_millis(300)).expect("a good URL");
        assert_eq!(sub_second.query.heartbeat, Some(1), "0 would turn heartbeats off");
        assert!(matches!(with_heartbeat("http://h", ten), Err(BusError::BadUrl(_))));
    }

    #[tokio::test]
    async fn a_failed_connection_ends_the_watch_with_its_error_and_an_alarm_does_not() {
        let reset = lapin::Error::from(lapin::ErrorKind::IOError(std::sync::Arc::new(std::io::Error::from(
            std::io::ErrorKind::ConnectionReset,
        ))));
        let events = futures_util::stream::iter(vec![
            lapin::Event::ConnectionBlocked("memory".into()),
            lapin::Event::ConnectionUnblocked,
            lapin::Event::Error(reset),
            lapin::Event::Connected,
        ]);
        let (blocked, _) = tokio::sync::watch::channel(false);
        let ended = watch_connection(events, blocked.clone())
            .await
            .expect("the error ends the watch");
        assert!(matches!(ended.kind(), lapin::ErrorKind::IOError(_)), "{ended}");
        assert!(!*blocked.borrow(), "the alarm cleared");
        let quiet = futures_util::stream::iter(vec![lapin::Event::ConnectionBlocked("disk".into())]);
        assert!(
            watch_connection(quiet, blocked.clone()).await.is_none(),
            "an alarm alone is not a failure"
        );
        assert!(*blocked.borrow(), "the alarm is reported to the publisher");
    }
    use tinysns_common::proto::internal::{Change, PostCreated, change};

    fn sample() -> RemoteChange {
        sample_at(7)
    }

    fn sample_at(lsn: u64) -> RemoteChange {
        RemoteChange {
            origin_cluster: 2,
            origin_lsn: lsn,
            timestamp_ms: 1,
            hlc: 0,
            change: Some(Change {
                kind: Some(change::Kind::Post(PostCreated {
                    author: 2,
                    post_id: 9,
                    text: "hi".into(),
                    author_name: String::new(),
                    number: 1,
                    ..Default::default()
                })),
            }),
        }
    }

    #[test]
    fn round_trip_keeps_order() {
        let batch = vec![sample_at(7), sample_at(8), sample_at(9)];
        let body = encode(batch.clone());
        assert_eq!(decode(&body).unwrap(), batch);
        assert_eq!(
            properties(&batch, &body, None).message_id().as_ref().unwrap().as_str(),
            "2-7-9"
        );
    }

    #[test]
    fn messages_of_the_first_version_are_still_read() {
        let v1 = BusEnvelope {
            version: 1,
            change: Some(sample()),
            changes: vec![],
        }
        .encode_to_vec();
        assert_eq!(decode(&v1).unwrap(), vec![sample()]);
    }

    #[test]
    fn poison_is_recognised() {
        let envelope = |version, change, changes| BusEnvelope {
            version,
            change,
            changes,
        };
        assert!(matches!(decode(b"\xff\xff\xff"), Err(Poison::Undecodable(_))));
        let future = envelope(3, None, vec![sample()]).encode_to_vec();
        assert_eq!(decode(&future), Err(Poison::UnknownVersion(3)));
        assert_eq!(decode(&envelope(1, None, vec![]).encode_to_vec()), Err(Poison::Empty));
        assert_eq!(decode(&envelope(2, None, vec![]).encode_to_vec()), Err(Poison::Empty));
        // A batch with one hollow change is refused whole: nothing of it is half-applied.
        let hollow = RemoteChange {
            change: None,
            ..sample_at(8)
        };
        let partly = envelope(2, None, vec![sample(), hollow]).encode_to_vec();
        assert_eq!(decode(&partly), Err(Poison::Empty));
        assert_eq!(decode(b""), Err(Poison::UnknownVersion(0)));
    }

    #[test]
    fn only_messages_signed_with_the_secret_verify() {
        let secret = ClusterSecret::new("0123456789abcdef0123456789abcdef").unwrap();
        let other = ClusterSecret::new("fedcba9876543210fedcba9876543210").unwrap();
        let body = encode(vec![sample()]);
        let signed = properties(&[sample()], &body, Some(&secret));
        assert_eq!(verify(&body, signed.headers().as_ref(), Some(&secret)), Ok(()));
        // Forged by someone who can publish to the broker but lacks the secret.
        assert_eq!(verify(&body, None, Some(&secret)), Err(Poison::Unsigned));
        let forged = properties(&[sample()], &body, Some(&other));
        assert_eq!(
            verify(&body, forged.headers().as_ref(), Some(&secret)),
            Err(Poison::BadSignature)
        );
        // A signed message whose body was changed.
        let mut tampered = body.clone();
        tampered.push(0);
        assert_eq!(
            verify(&tampered, signed.headers().as_ref(), Some(&secret)),
            Err(Poison::BadSignature)
        );
        let mut garbage = FieldTable::default();
        garbage.insert(SIGNATURE_HEADER.into(), AMQPValue::LongString("zz".into()));
        assert_eq!(verify(&body, Some(&garbage), Some(&secret)), Err(Poison::BadSignature));
        // Without a secret (loopback-only local system) nothing is checked.
        assert_eq!(verify(&body, None, None), Ok(()));
    }
}
