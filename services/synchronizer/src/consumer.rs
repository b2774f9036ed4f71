//! Applies other clusters' changes to this cluster: reads the cluster's queue, hands the
//! changes to the tsd master, and acknowledges a message only once tsd has stored it. A
//! message that can never apply (undecodable, unsigned, refused by tsd for what it carries
//! after a few tries) is dead-lettered with a log line and does not block the queue; one that
//! cannot apply *yet* (tsd unavailable) stays unacknowledged and is retried.

use crate::bus;
use crate::cluster::ClusterLink;
use crate::metrics::Metrics;
use crate::run::{Session, SyncError};
use futures_util::{FutureExt, StreamExt};
use lapin::Channel;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicNackOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use std::time::{Duration, Instant};
use tinysns_common::backoff::Backoff;
use tinysns_common::proto::internal::{ApplyRemoteRequest, RemoteChange};
use tinysns_common::secret::ClusterSecret;
use tinysns_common::shutdown::Shutdown;

/// Most changes, and about the most bytes, handed to tsd in one call (the gRPC limit on a
/// message is 4 MiB).
const MAX_BATCH_CHANGES: usize = 1024;
const MAX_BATCH_BYTES: usize = 1024 * 1024;

pub async fn consume(
    session: &Session<'_>,
    channel: &Channel,
    consumer_tag: &str,
    stall_timeout: Duration,
) -> Result<(), SyncError> {
    let Session {
        link,
        clusters: _,
        names,
        secret,
        metrics,
        stop,
    } = *session;
    let mut deliveries = channel
        .basic_consume(
            names.queue(link.cluster).into(),
            consumer_tag.into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(bus::BusError::from)?;
    tracing::info!(cluster = link.cluster, queue = %names.queue(link.cluster), "consuming other clusters' changes");
    let mut watchdog = tokio::time::interval(stall_timeout / 2);
    let mut last_delivery = Instant::now();
    loop {
        let first = tokio::select! {
            d = deliveries.next() => d,
            _ = watchdog.tick() => {
                if last_delivery.elapsed() >= stall_timeout {
                    check_not_stalled(channel, names, link.cluster, last_delivery.elapsed()).await?;
                }
                continue;
            }
            _ = stop.wait() => return Ok(()),
        };
        last_delivery = Instant::now();
        let Some(first) = first else {
            return Err(SyncError::ConsumerEnded);
        };
        let mut batch = Batch::default();
        batch
            .add(
                first.map_err(bus::BusError::from)?,
                link.cluster,
                names,
                secret,
                metrics,
            )
            .await?;
        while !batch.is_full() {
            match deliveries.next().now_or_never() {
                Some(Some(d)) => {
                    batch
                        .add(d.map_err(bus::BusError::from)?, link.cluster, names, secret, metrics)
                        .await?
                }
                _ => break,
            }
        }
        if batch.changes.is_empty() {
            continue;
        }
        match apply(link, &batch.changes, metrics, stop).await {
            Applied::Stored(reply) => {
                metrics.applied(&batch.changes, &reply, tinysns_common::now_ms());
                settle(batch.deliveries, &reply, names, metrics).await?
            }
            // Stopping: the unacknowledged messages go back to the queue.
            Applied::Stopped => return Ok(()),
            // tsd will never take this call: find the message at fault, one at a time.
            Applied::Refused(status) if batch.deliveries.len() > 1 => {
                tracing::warn!(error = %status.message(), messages = batch.deliveries.len(), "tsd refuses the batch; applying its messages one by one");
                for (delivery, range) in batch.deliveries {
                    let changes = &batch.changes[range.clone()];
                    match apply(link, changes, metrics, stop).await {
                        Applied::Stored(reply) => {
                            metrics.applied(changes, &reply, tinysns_common::now_ms());
                            settle(vec![(delivery, 0..changes.len())], &reply, names, metrics).await?
                        }
                        Applied::Stopped => return Ok(()),
                        Applied::Refused(status) => dead_letter(&delivery, names, &refusal(&status), metrics).await?,
                    }
                }
            }
            Applied::Refused(status) => {
                for (delivery, _) in batch.deliveries {
                    dead_letter(&delivery, names, &refusal(&status), metrics).await?;
                }
            }
        }
    }
}

/// Ends the session when the queue holds ready messages although none was delivered for
/// `idle`: a consumer the broker forgot (or a connection lost without a word) would otherwise
/// leave this cluster behind for good. A new session consumes again.
pub async fn check_not_stalled(
    channel: &Channel,
    names: &bus::Names,
    cluster: u32,
    idle: Duration,
) -> Result<(), SyncError> {
    let passive = QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    let queue = channel
        .queue_declare(names.queue(cluster).into(), passive, FieldTable::default())
        .await
        .map_err(bus::BusError::from)?;
    match queue.message_count() {
        0 => Ok(()),
        ready => Err(SyncError::ConsumerStalled { ready, idle }),
    }
}

fn refusal(status: &tonic::Status) -> String {
    format!(
        "tsd refused it {MAX_REFUSALS} times ({:?}: {})",
        status.code(),
        status.message()
    )
}

/// Acknowledges each delivery whose changes tsd stored; one of which tsd refused some changes
/// as invalid is dead-lettered.
async fn settle(
    deliveries: Vec<(Delivery, std::ops::Range<usize>)>,
    reply: &tinysns_common::proto::internal::ApplyRemoteReply,
    names: &bus::Names,
    metrics: &Metrics,
) -> Result<(), SyncError> {
    for (delivery, changes) in deliveries {
        let refused = reply
            .rejected
            .iter()
            .filter(|i| changes.contains(&(**i as usize)))
            .count();
        if refused > 0 {
            // The rest of its changes are stored; the message is kept whole for a
            // person to look at (replaying it is harmless: applying is idempotent).
            let why = format!("tsd refused {refused} of its {} changes as invalid", changes.len());
            dead_letter(&delivery, names, &why, metrics).await?;
        } else {
            delivery
                .ack(BasicAckOptions::default())
                .await
                .map_err(bus::BusError::from)?;
        }
    }
    Ok(())
}

/// Deliveries taken together into one `ApplyRemote` call.
#[derive(Default)]
struct Batch {
    /// Every change to apply, in delivery order.
    changes: Vec<RemoteChange>,
    /// Each delivery with the indexes (into `changes`) of the changes it carried.
    deliveries: Vec<(Delivery, std::ops::Range<usize>)>,
    bytes: usize,
}

impl Batch {
    fn is_full(&self) -> bool {
        self.changes.len() >= MAX_BATCH_CHANGES || self.bytes >= MAX_BATCH_BYTES
    }

    /// Takes the changes of `delivery`; poison is dead-lettered at once, and changes that
    /// came back to their own cluster are acknowledged and dropped.
    async fn add(
        &mut self,
        delivery: Delivery,
        cluster: u32,
        names: &bus::Names,
        secret: Option<&ClusterSecret>,
        metrics: &Metrics,
    ) -> Result<(), SyncError> {
        metrics.consumed();
        let signed = bus::verify(&delivery.data, delivery.properties.headers().as_ref(), secret);
        match signed.and_then(|()| bus::decode(&delivery.data)) {
            Err(poison) => dead_letter(&delivery, names, &poison.to_string(), metrics).await,
            Ok(changes) if changes.iter().all(|c| c.origin_cluster == cluster) => {
                delivery
                    .ack(BasicAckOptions::default())
                    .await
                    .map_err(bus::BusError::from)?;
                Ok(())
            }
            Ok(changes) => {
                let start = self.changes.len();
                self.bytes += delivery.data.len();
                self.changes
                    .extend(changes.into_iter().filter(|c| c.origin_cluster != cluster));
                self.deliveries.push((delivery, start..self.changes.len()));
                Ok(())
            }
        }
    }
}

/// How often tsd may refuse a call for what it carries (too large, malformed) before its
/// messages are dead-lettered instead of blocking the queue.
const MAX_REFUSALS: u32 = 5;

enum Applied {
    Stored(tinysns_common::proto::internal::ApplyRemoteReply),
    Stopped,
    /// tsd refused the call for what it carries, [`MAX_REFUSALS`] times.
    Refused(tonic::Status),
}

/// Whether tsd refuses the call for what it carries: retrying it can never help. Anything
/// else (tsd away, a failover, a wrong secret) is retried for as long as it takes.
fn refuses_content(status: &tonic::Status) -> bool {
    matches!(
        status.code(),
        tonic::Code::InvalidArgument | tonic::Code::ResourceExhausted | tonic::Code::OutOfRange
    )
}

/// Retries until tsd has stored the changes (following master changes), we stop, or tsd
/// has refused them for their content [`MAX_REFUSALS`] times.
async fn apply(link: &ClusterLink, changes: &[RemoteChange], metrics: &Metrics, stop: &Shutdown) -> Applied {
    let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(2));
    let mut refusals = 0;
    loop {
        let attempt = async {
            let mut tsd = link.master().await?;
            tsd.apply_remote(ApplyRemoteRequest {
                changes: changes.to_vec(),
            })
            .await
        };
        match attempt.await {
            Ok(reply) => return Applied::Stored(reply.into_inner()),
            Err(status) if refuses_content(&status) => {
                refusals += 1;
                if refusals >= MAX_REFUSALS {
                    return Applied::Refused(status);
                }
                tracing::warn!(error = %status.message(), refusals, "tsd refuses remote changes");
            }
            Err(status) => {
                tracing::warn!(error = %status.message(), "cannot apply remote changes yet");
            }
        }
        metrics.apply_retried();
        tokio::select! {
            _ = tokio::time::sleep(backoff.next_delay()) => {}
            _ = stop.wait() => return Applied::Stopped,
        }
    }
}

async fn dead_letter(delivery: &Delivery, names: &bus::Names, why: &str, metrics: &Metrics) -> Result<(), SyncError> {
    let id = delivery
        .properties
        .message_id()
        .as_ref()
        .map(|s| s.to_string())
        .unwrap_or_default();
    tracing::warn!(message_id = %id, bytes = delivery.data.len(), reason = why, queue = %names.dead_queue(), "poison message dead-lettered");
    delivery
        .nack(BasicNackOptions {
            requeue: false,
            ..Default::default()
        })
        .await
        .map_err(bus::BusError::from)?;
    metrics.dead_lettered();
    Ok(())
}
