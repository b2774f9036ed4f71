//! One task per slave on the master: ships our log to the slave until it holds the goal the
//! replication stage sets, at its own pace. A slave far behind (it was away, or joined empty)
//! is caught up here, never in the write path.

use super::in_sync::{LinkView, Replica};
use crate::feed::Feed;
use crate::reader::Reader;
use crate::store;
use std::sync::Arc;
use std::time::Duration;
use tinysns_common::backoff::Backoff;
use tinysns_common::grpc::{InternalChannel, MemberCredentials, internal_channel};
use tinysns_common::proto::coordinator::Member;
use tinysns_common::proto::internal::AppendRequest;
use tinysns_common::proto::internal::replication_client::ReplicationClient;
use tokio::sync::{Notify, watch};
use tonic::Request;

/// Entries sent per Append call.
const CHUNK: usize = 512;
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
        let entries = if view.matched.is_some() {
            self.reader
                .with(move |c| store::entries_after(c, prev_lsn, want.lsn, CHUNK))
                .await
        } else {
            Ok(Vec::new())
        };
        let prev_term = self.reader.with(move |c| store::term_at(c, prev_lsn)).await;
        let (entries, prev_term) = match (entries, prev_term) {
            (Ok(e), Ok(Some(t))) => (e, t),
            (Err(e), _) | (_, Err(e)) => return Err(Failure::Unreachable(format!("reading our log: {e}"))),
            (_, Ok(None)) => return Err(Failure::Unreachable(format!("our log has no entry {prev_lsn}"))),
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
}
