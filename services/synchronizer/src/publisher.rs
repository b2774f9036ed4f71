//! Publishes this cluster's own changes: tails the change feed of the tsd master, publishes
//! them persistently with publisher confirms, and records in the cluster how far the broker
//! has confirmed, so a new master synchronizer resumes there. A change may be published
//! twice around a failover; consumers apply idempotently.
//!
//! Whatever the feed has ready goes out as one message (up to a size limit): one change
//! per message when the cluster is quiet, so nothing waits, and many when it is busy, so
//! the broker keeps up.

use crate::bus;
use crate::run::{Session, SyncError};
use futures_util::stream::FuturesOrdered;
use futures_util::{FutureExt, StreamExt};
use lapin::Channel;
use lapin::options::BasicPublishOptions;
use std::time::Duration;
use tinysns_common::proto::internal::{ChangeFeedItem, ChangeFeedRequest, CommitCursorRequest, RemoteChange};
use tokio::sync::watch;
use tokio::time::Instant;
use tonic::Streaming;

/// Messages published but not yet confirmed by the broker, at most.
const MAX_UNCONFIRMED: usize = 64;
/// How often the confirmed position is recorded in the cluster.
const CURSOR_PERIOD: Duration = Duration::from_millis(200);

/// Publishes until stopped or the session fails. A broker that confirms nothing for
/// `confirm_timeout` (while no resource alarm, reported on `blocked`, excuses it) fails the
/// session: its unconfirmed changes are published again on the next one.
pub async fn publish(
    session: &Session<'_>,
    channel: &Channel,
    confirm_timeout: Duration,
    mut blocked: watch::Receiver<bool>,
) -> Result<(), SyncError> {
    let Session {
        link,
        names,
        secret,
        metrics,
        stop,
    } = *session;
    let mut tsd = link.master().await?;
    let mut feed = tsd.subscribe(ChangeFeedRequest { after_lsn: 0 }).await?.into_inner();
    tracing::info!(cluster = link.cluster, "publishing this cluster's changes");
    let mut unconfirmed = FuturesOrdered::new();
    let (mut confirmed, mut recorded) = (0u64, 0u64);
    let mut tick = tokio::time::interval(CURSOR_PERIOD);
    // When the broker is late confirming: set while confirms are awaited and no alarm
    // blocks publishing, moved on by each confirm.
    let mut late: Option<Instant> = None;
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
                late = late.or_else(|| confirm_deadline(true, *blocked.borrow(), confirm_timeout));
            }
            Some((lsn, confirmation)) = unconfirmed.next() => {
                let confirmation = confirmation.map_err(bus::BusError::from)?;
                if !confirmation.is_ack() {
                    return Err(bus::BusError::Nacked(lsn).into());
                }
                confirmed = lsn;
                metrics.confirmed(lsn);
                late = confirm_deadline(!unconfirmed.is_empty(), *blocked.borrow(), confirm_timeout);
            }
            Ok(()) = blocked.changed() => {
                late = confirm_deadline(!unconfirmed.is_empty(), *blocked.borrow(), confirm_timeout);
            }
            _ = tokio::time::sleep_until(late.unwrap_or_else(Instant::now)), if late.is_some() => {
                return Err(bus::BusError::ConfirmTimeout(confirm_timeout).into());
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

/// When the broker is late if no confirm arrives from now on: never while nothing waits for
/// one, nor while a resource alarm blocks publishing (confirms wait for it to clear).
fn confirm_deadline(waiting: bool, blocked: bool, timeout: Duration) -> Option<Instant> {
    (waiting && !blocked).then(|| Instant::now() + timeout)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_broker_is_late_only_while_confirms_are_awaited_and_no_alarm_excuses_it() {
        let timeout = Duration::from_secs(30);
        let before = Instant::now();
        let deadline = confirm_deadline(true, false, timeout).expect("awaited and not blocked");
        assert!(deadline >= before + timeout && deadline <= Instant::now() + timeout);
        assert_eq!(confirm_deadline(false, false, timeout), None, "nothing awaited");
        assert_eq!(
            confirm_deadline(true, true, timeout),
            None,
            "an alarm blocks publishing"
        );
    }
}
