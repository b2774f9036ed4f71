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
        clusters,
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
                let batch = ready_changes(link.cluster, item, &mut feed)?;
                let lsn = batch.last().map(|c| c.change.origin_lsn).unwrap_or_default();
                let count = batch.iter().filter(|a| a.change.change.is_some()).count();
                let mut confirms = Vec::new();
                for (key, changes) in messages(batch, link.cluster, clusters) {
                    let body = bus::encode(changes.clone());
                    let properties = bus::properties(&changes, &body, secret);
                    let confirm = channel
                        .basic_publish(
                            names.exchange().into(),
                            key.into(),
                            BasicPublishOptions::default(),
                            &body,
                            properties,
                        )
                        .await
                        .map_err(bus::BusError::from)?;
                    confirms.push(confirm);
                }
                metrics.published(count, lsn);
                unconfirmed.push_back(async move {
                    for confirm in confirms {
                        match confirm.await {
                            Ok(confirmation) if confirmation.is_ack() => {}
                            Ok(_) => return (lsn, Ok(false)),
                            Err(error) => return (lsn, Err(error)),
                        }
                    }
                    (lsn, Ok(true))
                });
                late = late.or_else(|| confirm_deadline(true, *blocked.borrow(), confirm_timeout));
            }
            Some((lsn, acked)) = unconfirmed.next() => {
                if !acked.map_err(bus::BusError::from)? {
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

/// One of this cluster's changes and the clusters it goes to (none named: every other).
#[derive(Debug, Clone, PartialEq)]
struct Addressed {
    change: RemoteChange,
    destinations: Vec<u32>,
}

/// `first` and whatever else the feed has ready right now, up to one message's worth.
fn ready_changes(
    cluster: u32,
    first: ChangeFeedItem,
    feed: &mut Streaming<ChangeFeedItem>,
) -> Result<Vec<Addressed>, SyncError> {
    let addressed = |item: ChangeFeedItem| Addressed {
        change: RemoteChange {
            origin_cluster: cluster,
            origin_lsn: item.lsn,
            timestamp_ms: item.timestamp_ms,
            change: item.change,
            hlc: item.hlc,
        },
        destinations: item.destinations,
    };
    let mut bytes = prost::Message::encoded_len(&first);
    let mut changes = vec![addressed(first)];
    while changes.len() < bus::MAX_MESSAGE_CHANGES && bytes < bus::MAX_MESSAGE_BYTES {
        match feed.message().now_or_never() {
            Some(Ok(Some(item))) => {
                bytes += prost::Message::encoded_len(&item);
                changes.push(addressed(item));
            }
            // Nothing more yet, or the feed ended (the next read reports that).
            Some(Ok(None)) | None => break,
            // What was read is not confirmed, so a new master synchronizer publishes it again.
            Some(Err(status)) => return Err(status.into()),
        }
    }
    Ok(changes)
}

/// The messages (routing key, changes) that carry `batch` from cluster `here` of
/// `clusters` (none for a batch of markers, whose position is confirmed at once): one with the origin key when every change goes to every other cluster, else
/// one per destination with the changes it needs. Either way each cluster's queue gets the
/// batch's changes for it in one message, in log order, so batches arrive in order too.
fn messages(batch: Vec<Addressed>, here: u32, clusters: u32) -> Vec<(String, Vec<RemoteChange>)> {
    // (Markers only move the cursor: nothing to carry.)
    let batch: Vec<Addressed> = batch.into_iter().filter(|a| a.change.change.is_some()).collect();
    if batch.is_empty() {
        return Vec::new();
    }
    let others: Vec<u32> = (1..=clusters).filter(|c| *c != here).collect();
    let goes_to = |a: &Addressed, cluster: u32| a.destinations.is_empty() || a.destinations.contains(&cluster);
    if batch.iter().all(|a| others.iter().all(|c| goes_to(a, *c))) {
        let changes = batch.into_iter().map(|a| a.change).collect();
        return vec![(bus::Names::origin_key(here), changes)];
    }
    others
        .into_iter()
        .filter_map(|cluster| {
            let changes: Vec<RemoteChange> = batch
                .iter()
                .filter(|a| goes_to(a, cluster))
                .map(|a| a.change.clone())
                .collect();
            (!changes.is_empty()).then(|| (bus::Names::destination_key(cluster), changes))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addressed(lsn: u64, destinations: &[u32]) -> Addressed {
        Addressed {
            change: RemoteChange {
                origin_cluster: 1,
                origin_lsn: lsn,
                change: Some(Default::default()),
                ..Default::default()
            },
            destinations: destinations.to_vec(),
        }
    }

    fn marker(lsn: u64) -> Addressed {
        Addressed {
            change: RemoteChange {
                origin_cluster: 1,
                origin_lsn: lsn,
                ..Default::default()
            },
            destinations: Vec::new(),
        }
    }

    /// (routing key, origin positions) of each message.
    fn keys(messages: Vec<(String, Vec<RemoteChange>)>) -> Vec<(String, Vec<u64>)> {
        messages
            .into_iter()
            .map(|(key, changes)| (key, changes.iter().map(|c| c.origin_lsn).collect()))
            .collect()
    }

    #[test]
    fn a_batch_for_everyone_is_one_message_with_the_origin_key() {
        let batch = vec![addressed(1, &[]), addressed(2, &[2, 3]), addressed(3, &[3, 2])];
        assert_eq!(keys(messages(batch, 1, 3)), [("from.1".to_string(), vec![1, 2, 3])]);
    }

    #[test]
    fn a_batch_for_some_is_one_message_per_destination_in_log_order() {
        let batch = vec![
            addressed(1, &[]),
            addressed(2, &[3]),
            addressed(3, &[2, 4]),
            addressed(4, &[]),
        ];
        assert_eq!(
            keys(messages(batch, 1, 4)),
            [
                ("to.2".to_string(), vec![1, 3, 4]),
                ("to.3".to_string(), vec![1, 2, 4]),
                ("to.4".to_string(), vec![1, 3, 4]),
            ]
        );
        let quiet = vec![addressed(5, &[3]), marker(6)];
        assert_eq!(keys(messages(quiet, 1, 4)), [("to.3".to_string(), vec![5])]);
        assert_eq!(keys(messages(vec![marker(7)], 1, 4)), []);
    }

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
