//! Publishes this cluster's own changes: tails the change feed of the tsd master, publishes
//! them persistently with publisher confirms, and records in the cluster how far the broker
//! has confirmed, so a new master synchronizer resumes there. A change may be published
//! twice around a failover; consumers apply idempotently.
//!
//! Whatever the feed has ready goes out as one message (up to a size limit): one change
//! per message when the cluster is quiet, so nothing waits, and many when it is busy, so
//! the broker keeps up.

use crate::bus;
use crate::cluster::ClusterLink;
use crate::metrics::Metrics;
use crate::run::SyncError;
use futures_util::stream::FuturesOrdered;
use futures_util::{FutureExt, StreamExt};
use lapin::Channel;
use lapin::options::BasicPublishOptions;
use std::time::Duration;
use tinysns_common::proto::internal::{ChangeFeedItem, ChangeFeedRequest, CommitCursorRequest, RemoteChange};
use tinysns_common::secret::ClusterSecret;
use tinysns_common::shutdown::Shutdown;
use tonic::Streaming;

/// Messages published but not yet confirmed by the broker, at most.
const MAX_UNCONFIRMED: usize = 64;
/// How often the confirmed position is recorded in the cluster.
const CURSOR_PERIOD: Duration = Duration::from_millis(200);

pub async fn publish(
    link: &ClusterLink,
    channel: &Channel,
    names: &bus::Names,
    secret: Option<&ClusterSecret>,
    metrics: &Metrics,
    stop: &Shutdown,
) -> Result<(), SyncError> {
    let mut tsd = link.master().await?;
    let mut feed = tsd.subscribe(ChangeFeedRequest { after_lsn: 0 }).await?.into_inner();
    tracing::info!(cluster = link.cluster, "publishing this cluster's changes");
    let mut unconfirmed = FuturesOrdered::new();
    let (mut confirmed, mut recorded) = (0u64, 0u64);
    let mut tick = tokio::time::interval(CURSOR_PERIOD);
    loop {
        tokio::select! {
            item = feed.message(), if unconfirmed.len() < MAX_UNCONFIRMED => {
                let Some(item) = item? else {
                    return Err(SyncError::FeedEnded);
                };
                let changes = ready_changes(link.cluster, item, &mut feed)?;
                let lsn = changes.last().map(|c| c.origin_lsn).unwrap_or_default();
                let body = bus::encode(changes.clone());
                let properties = bus::properties(&changes, &body, secret);
                let confirm = channel
                    .basic_publish(
                        names.exchange().into(),
                        bus::Names::origin_key(link.cluster).into(),
                        BasicPublishOptions::default(),
                        &body,
                        properties,
                    )
                    .await
                    .map_err(bus::BusError::from)?;
                metrics.published(changes.len(), lsn);
                unconfirmed.push_back(async move { (lsn, confirm.await) });
            }
            Some((lsn, confirmation)) = unconfirmed.next() => {
                let confirmation = confirmation.map_err(bus::BusError::from)?;
                if !confirmation.is_ack() {
                    return Err(bus::BusError::Nacked(lsn).into());
                }
                confirmed = lsn;
                metrics.confirmed(lsn);
            }
            _ = tick.tick() => {
                if confirmed > recorded {
                    tsd.commit_cursor(CommitCursorRequest { lsn: confirmed }).await?;
                    recorded = confirmed;
                }
            }
            _ = stop.wait() => {
                if confirmed > recorded {
                    let _ = tsd.commit_cursor(CommitCursorRequest { lsn: confirmed }).await;
                }
                return Ok(());
            }
        }
    }
}

/// `first` and whatever else the feed has ready right now, up to one message's worth.
fn ready_changes(
    cluster: u32,
    first: ChangeFeedItem,
    feed: &mut Streaming<ChangeFeedItem>,
) -> Result<Vec<RemoteChange>, SyncError> {
    let change = |item: ChangeFeedItem| RemoteChange {
        origin_cluster: cluster,
        origin_lsn: item.lsn,
        timestamp_ms: item.timestamp_ms,
        change: item.change,
        hlc: item.hlc,
    };
    let mut bytes = prost::Message::encoded_len(&first);
    let mut changes = vec![change(first)];
    while changes.len() < bus::MAX_MESSAGE_CHANGES && bytes < bus::MAX_MESSAGE_BYTES {
        match feed.message().now_or_never() {
            Some(Ok(Some(item))) => {
                bytes += prost::Message::encoded_len(&item);
                changes.push(change(item));
            }
            // Nothing more yet, or the feed ended (the next read reports that).
            Some(Ok(None)) | None => break,
            // What was read is not confirmed, so a new master synchronizer publishes it again.
            Some(Err(status)) => return Err(status.into()),
        }
    }
    Ok(changes)
}
