//! One task per slave on the master: ships our log to the slave until it holds the goal the
//! replication stage sets, at its own pace. A slave far behind (it was away, or joined empty)
//! is caught up here, never in the write path.

use super::in_sync::{LinkView, Replica};
use crate::feed::Feed;
use crate::reader::Reader;
use crate::store::snapshot::{self, SnapshotFile};
use crate::store::{self, compaction};
use std::sync::Arc;
use std::time::Duration;
use tinysns_common::backoff::Backoff;
use tinysns_common::grpc::{InternalChannel, MemberCredentials, internal_channel};
use tinysns_common::proto::coordinator::Member;
use tinysns_common::proto::internal::replication_client::ReplicationClient;
use tinysns_common::proto::internal::{AppendRequest, SnapshotChunk};
use tokio::sync::{Notify, watch};
use tonic::Request;

/// Entries sent per Append call.
const CHUNK: usize = 512;
/// Bytes of a snapshot sent per InstallSnapshot call.
const SNAPSHOT_CHUNK: usize = 1024 * 1024;
/// Where a snapshot being sent is written (in the data directory), before the slave's id.
pub const OUTGOING_SNAPSHOT_PREFIX: &str = "snapshot-outgoing-";
/// How long one Append may take before the slave counts as unreachable for this try.
const APPEND_TIMEOUT: Duration = Duration::from_secs(1);
/// Retry delays after a failed Append (doubling).
const RETRY_FIRST: Duration = Duration::from_millis(20);
const RETRY_MAX: Duration = Duration::from_millis(500);

/// What the replication stage asks of every link.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Goal {
    pub term: u64,
    pub master_id: u32,
    /// Bring the slave up to here.
    pub lsn: u64,
    /// Contact the slave at least once after this probe number was set, even if it holds
    /// everything (see `in_sync::Round::probe`).
    pub probe: u64,
}

/// A running link; dropping it stops its task.
pub struct Link {
    pub replica: Replica,
    pub address: String,
    state: watch::Receiver<LinkView>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Link {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Link {
    /// Starts replicating to `member`; `changed` is notified whenever the link's view moves.
    pub fn start(
        member: &Member,
        secret: &MemberCredentials,
        goal: watch::Receiver<Goal>,
        reader: Reader,
        feed: Feed,
        changed: Arc<Notify>,
        snapshot_rate: Option<u64>,
    ) -> Option<Self> {
        let channel = internal_channel(&member.internal_address, Duration::from_millis(500), secret).ok()?;
        let client = ReplicationClient::new(channel).max_decoding_message_size(64 * 1024 * 1024);
        let replica = (member.member_id, member.incarnation);
        let (tx, state) = watch::channel(LinkView {
            replica,
            matched: None,
            probed: 0,
            deposed: None,
        });
        let shipper = Shipper {
            client,
            reader,
            feed,
            state: tx,
            changed,
            snapshot_rate,
        };
        Some(Self {
            replica,
            address: member.internal_address.clone(),
            state,
            task: tokio::spawn(shipper.run(goal)),
        })
    }

    pub fn view(&self) -> LinkView {
        *self.state.borrow()
    }
}

struct Shipper {
    client: ReplicationClient<InternalChannel>,
    reader: Reader,
    feed: Feed,
    state: watch::Sender<LinkView>,
    changed: Arc<Notify>,
    /// Bytes per second a snapshot is sent at.
    snapshot_rate: Option<u64>,
}

enum Failure {
    Deposed(u64),
    Unreachable(String),
}

impl Shipper {
    async fn run(mut self, mut goal: watch::Receiver<Goal>) {
        let mut retry = Backoff::new(RETRY_FIRST, RETRY_MAX);
        let mut warned = false;
        loop {
            let want = *goal.borrow_and_update();
            let view = *self.state.borrow();
            let behind = view.matched.is_none_or(|m| m < want.lsn);
            if want.term == 0 || view.deposed.is_some() || !(behind || view.probed < want.probe) {
                if goal.changed().await.is_err() {
                    return;
                }
                continue;
            }
            match self.step(want, view).await {
                Ok(next) => {
                    retry.reset();
                    if warned {
                        tracing::info!(slave = view.replica.0, "slave reachable again");
                        warned = false;
                    }
                    self.publish(next);
                }
                Err(Failure::Deposed(term)) => self.publish(LinkView {
                    deposed: Some(term),
                    ..view
                }),
                Err(Failure::Unreachable(why)) => {
                    if !warned {
                        tracing::warn!(slave = view.replica.0, %why, "slave unreachable; retrying");
                        warned = true;
                    }
                    tokio::time::sleep(retry.next_delay()).await;
                }
            }
        }
    }

    fn publish(&self, view: LinkView) {
        self.state.send_replace(view);
        self.changed.notify_one();
    }

    /// One Append: the next entries the slave lacks (or, on first contact, a probe at our
    /// end that tells where it stands). Returns the link's new view.
    async fn step(&mut self, want: Goal, view: LinkView) -> Result<LinkView, Failure> {
        let prev_lsn = view.matched.map_or(want.lsn, |m| m.min(want.lsn));
        let probing = view.matched.is_none();
        let next = self
            .reader
            .with(move |c| {
                if prev_lsn < compaction::bounds(c)?.start {
                    // The slave needs entries we no longer hold.
                    return Ok(None);
                }
                let entries = if probing {
                    Vec::new()
                } else {
                    store::entries_after(c, prev_lsn, want.lsn, CHUNK)?
                };
                Ok(Some((entries, store::term_at(c, prev_lsn)?)))
            })
            .await;
        let (entries, prev_term) = match next {
            Ok(Some((entries, Some(term)))) => (entries, term),
            Ok(None) => return self.ship_snapshot(want, view).await,
            Ok(Some((_, None))) => return Err(Failure::Unreachable(format!("our log has no entry {prev_lsn}"))),
            Err(e) => return Err(Failure::Unreachable(format!("reading our log: {e}"))),
        };
        let mut call = Request::new(AppendRequest {
            term: want.term,
            master_id: want.master_id,
            prev_lsn,
            prev_term,
            entries,
            commit_lsn: self.feed.committed(),
        });
        call.set_timeout(APPEND_TIMEOUT);
        let reply = self
            .client
            .append(call)
            .await
            .map_err(|s| Failure::Unreachable(s.message().to_string()))?
            .into_inner();
        if reply.term > want.term {
            return Err(Failure::Deposed(reply.term));
        }
        // Accepted: matched up to what we sent. Refused: the reply is where its log agrees
        // with ours at most; continue from there.
        let matched = if reply.accepted {
            reply.last_lsn
        } else {
            let agreed = reply.last_lsn.min(prev_lsn);
            // Refused without moving back: step back one entry to find agreement.
            if agreed == prev_lsn {
                prev_lsn.saturating_sub(1)
            } else {
                agreed
            }
        };
        Ok(LinkView {
            matched: Some(matched),
            probed: want.probe,
            ..view
        })
    }

    /// Brings up a slave that needs entries we compacted away: a copy of our whole store,
    /// sent in chunks; the slave continues from the copy's last entry.
    async fn ship_snapshot(&mut self, want: Goal, view: LinkView) -> Result<LinkView, Failure> {
        let started = std::time::Instant::now();
        let unreachable = |what: &str, e: &dyn std::fmt::Display| Failure::Unreachable(format!("{what}: {e}"));
        // A name of its own: a link stopped while taking one leaves its thread running on.
        static TAKEN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = TAKEN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let file = SnapshotFile(
            self.reader
                .dir()
                .join(format!("{OUTGOING_SNAPSHOT_PREFIX}{}-{n}.db", view.replica.0)),
        );
        let db = self.reader.db_path().to_path_buf();
        // The file goes with the result: if nobody waits for it any more, it is removed.
        let (file, info) = tinysns_common::background::run_low_priority("tsd-snapshot", move || {
            snapshot::take(&db, &file.0).map(|info| (file, info))
        })
        .await
        .map_err(|e| unreachable("cannot take a snapshot", &e))?
        .map_err(|e| unreachable("cannot take a snapshot", &e))?;
        let mut source = tokio::fs::File::open(&file.0)
            .await
            .map_err(|e| unreachable("cannot read the snapshot", &e))?;
        let size = source
            .metadata()
            .await
            .map_err(|e| unreachable("cannot read the snapshot", &e))?
            .len();
        let taken_ms = started.elapsed().as_millis() as u64;
        tracing::info!(
            slave = view.replica.0,
            last_lsn = info.last_lsn,
            bytes = size,
            taken_ms,
            "sending a snapshot"
        );
        let mut offset = 0u64;
        let sending = tokio::time::Instant::now();
        loop {
            tokio::time::sleep_until(sending + paced(offset, self.snapshot_rate)).await;
            let data = read_chunk(&mut source, SNAPSHOT_CHUNK)
                .await
                .map_err(|e| unreachable("cannot read the snapshot", &e))?;
            let last = offset + data.len() as u64 >= size;
            let sent = data.len() as u64;
            let mut call = Request::new(SnapshotChunk {
                term: want.term,
                master_id: want.master_id,
                offset,
                data,
                last,
            });
            call.set_timeout(if last { install_timeout(size) } else { CHUNK_TIMEOUT });
            let reply = self
                .client
                .install_snapshot(call)
                .await
                .map_err(|s| Failure::Unreachable(s.message().to_string()))?
                .into_inner();
            if reply.term > want.term {
                return Err(Failure::Deposed(reply.term));
            }
            if !reply.accepted {
                return Err(Failure::Unreachable("the slave refused the snapshot".into()));
            }
            offset += sent;
            if last {
                tracing::info!(
                    slave = view.replica.0,
                    last_lsn = reply.last_lsn,
                    bytes = size,
                    taken_ms,
                    ms = started.elapsed().as_millis() as u64,
                    "snapshot installed"
                );
                return Ok(LinkView {
                    matched: Some(reply.last_lsn),
                    probed: want.probe,
                    ..view
                });
            }
        }
    }
}

/// How long one InstallSnapshot call with a chunk may take.
const CHUNK_TIMEOUT: Duration = Duration::from_secs(30);

/// How long the last InstallSnapshot call may take: the slave installs the copy before it
/// answers, in paced steps at the lowest priority (a minute, and a second per 2 MiB).
fn install_timeout(size: u64) -> Duration {
    Duration::from_secs(60 + size / (2 * 1024 * 1024))
}

/// When, from the start of sending, a snapshot's byte `offset` may go at `rate` bytes/s.
fn paced(offset: u64, rate: Option<u64>) -> Duration {
    match rate {
        Some(rate) if rate > 0 => Duration::from_secs_f64(offset as f64 / rate as f64),
        _ => Duration::ZERO,
    }
}

/// Up to `limit` bytes from `source` (fewer only at its end).
async fn read_chunk(source: &mut tokio::fs::File, limit: usize) -> std::io::Result<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    let mut data = Vec::with_capacity(limit);
    while data.len() < limit {
        if (&mut *source)
            .take((limit - data.len()) as u64)
            .read_to_end(&mut data)
            .await?
            == 0
        {
            break;
        }
    }
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_is_sent_no_faster_than_its_rate() {
        let mib = 1024 * 1024;
        assert_eq!(paced(0, Some(64 * mib)), Duration::ZERO);
        assert_eq!(paced(32 * mib, Some(64 * mib)), Duration::from_millis(500));
        assert_eq!(paced(640 * mib, Some(64 * mib)), Duration::from_secs(10));
        assert_eq!(paced(640 * mib, None), Duration::ZERO);
        assert_eq!(paced(640 * mib, Some(0)), Duration::ZERO);
    }
}
