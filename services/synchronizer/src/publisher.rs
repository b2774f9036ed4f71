//! Publishes this cluster's own changes: tails the change feed of the tsd master, publishes
//! each change persistently with publisher confirms, and records in the cluster how far the
//! broker has confirmed, so a new master synchronizer resumes there. A change may be
//! published twice around a failover; consumers apply idempotently.

use crate::bus;
use crate::cluster::ClusterLink;
use crate::run::SyncError;
use futures_util::StreamExt;
use futures_util::stream::FuturesOrdered;
use lapin::Channel;
use lapin::options::BasicPublishOptions;
use std::time::Duration;
use tinysns_common::proto::internal::{ChangeFeedRequest, CommitCursorRequest, RemoteChange};
use tinysns_common::shutdown::Shutdown;

/// Published but not yet confirmed by the broker, at most.
const MAX_UNCONFIRMED: usize = 256;
/// How often the confirmed position is recorded in the cluster.
const CURSOR_PERIOD: Duration = Duration::from_millis(200);

pub async fn publish(
    link: &ClusterLink,
    channel: &Channel,
    names: &bus::Names,
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
                let change = RemoteChange {
                    origin_cluster: link.cluster,
                    origin_lsn: item.lsn,
                    timestamp_ms: item.timestamp_ms,
                    change: item.change,
                };
                let properties = bus::properties(&change);
                let confirm = channel
                    .basic_publish(names.exchange().into(), "".into(), BasicPublishOptions::default(), &bus::encode(change), properties)
                    .await
                    .map_err(bus::BusError::from)?;
                let lsn = item.lsn;
                unconfirmed.push_back(async move { (lsn, confirm.await) });
            }
            Some((lsn, confirmation)) = unconfirmed.next() => {
                let confirmation = confirmation.map_err(bus::BusError::from)?;
                if !confirmation.is_ack() {
                    return Err(bus::BusError::Nacked(lsn).into());
                }
                confirmed = lsn;
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
