//! Applies other clusters' changes to this cluster: reads the cluster's queue, hands the
//! changes to the tsd master, and acknowledges a message only once tsd has stored it. A
//! message that can never apply is dead-lettered with a log line and does not block the
//! queue; one that cannot apply *yet* (tsd unavailable) stays unacknowledged and is retried.

use crate::bus;
use crate::cluster::ClusterLink;
use crate::run::SyncError;
use futures_util::{FutureExt, StreamExt};
use lapin::Channel;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicNackOptions};
use lapin::types::FieldTable;
use std::time::Duration;
use tinysns_common::proto::internal::{ApplyRemoteRequest, RemoteChange};
use tinysns_common::shutdown::Shutdown;

/// Most changes handed to tsd in one call.
const MAX_BATCH: usize = 256;

pub async fn consume(
    link: &ClusterLink,
    channel: &Channel,
    names: &bus::Names,
    consumer_tag: &str,
    stop: &Shutdown,
) -> Result<(), SyncError> {
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
    loop {
        let first = tokio::select! {
            d = deliveries.next() => d,
            _ = stop.wait() => return Ok(()),
        };
        let Some(first) = first else {
            return Err(SyncError::ConsumerEnded);
        };
        let mut batch = vec![first.map_err(bus::BusError::from)?];
        while batch.len() < MAX_BATCH {
            match deliveries.next().now_or_never() {
                Some(Some(d)) => batch.push(d.map_err(bus::BusError::from)?),
                _ => break,
            }
        }
        let mut pending: Vec<(Delivery, RemoteChange)> = Vec::with_capacity(batch.len());
        for delivery in batch {
            match bus::decode(&delivery.data) {
                Err(poison) => dead_letter(&delivery, names, &poison.to_string()).await?,
                Ok(change) if change.origin_cluster == link.cluster => {
                    delivery
                        .ack(BasicAckOptions::default())
                        .await
                        .map_err(bus::BusError::from)?;
                }
                Ok(change) => pending.push((delivery, change)),
            }
        }
        if pending.is_empty() {
            continue;
        }
        let changes: Vec<RemoteChange> = pending.iter().map(|(_, c)| c.clone()).collect();
        let Some(reply) = apply(link, changes, stop).await else {
            // Stopping: the unacknowledged messages go back to the queue.
            return Ok(());
        };
        for (index, (delivery, _)) in pending.into_iter().enumerate() {
            if reply.rejected.contains(&(index as u32)) {
                dead_letter(&delivery, names, "refused by tsd as invalid").await?;
            } else {
                delivery
                    .ack(BasicAckOptions::default())
                    .await
                    .map_err(bus::BusError::from)?;
            }
        }
    }
}

/// Retries until tsd has stored the changes (following master changes), or we stop.
async fn apply(
    link: &ClusterLink,
    changes: Vec<RemoteChange>,
    stop: &Shutdown,
) -> Option<tinysns_common::proto::internal::ApplyRemoteReply> {
    let mut backoff = Duration::from_millis(50);
    loop {
        let attempt = async {
            let mut tsd = link.master().await?;
            tsd.apply_remote(ApplyRemoteRequest {
                changes: changes.clone(),
            })
            .await
        };
        match attempt.await {
            Ok(reply) => return Some(reply.into_inner()),
            Err(status) => {
                tracing::warn!(error = %status.message(), retry_in = ?backoff, "cannot apply remote changes yet");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop.wait() => return None,
        }
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

async fn dead_letter(delivery: &Delivery, names: &bus::Names, why: &str) -> Result<(), SyncError> {
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
    Ok(())
}
