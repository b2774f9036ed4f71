//! Master -> slave replication. The master's replication stage receives each batch the
//! writer committed, makes sure every live slave has stored it, and only then acknowledges
//! the clients and publishes the entries on the feed. A slave that was away is caught up
//! from the master's log by the same loop.

use crate::feed::Feed;
use crate::reader::Reader;
use crate::store;
use crate::writer::{Batch, WriteError, Writer};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tinysns_common::grpc::{InternalChannel, MemberCredentials, internal_channel};
use tinysns_common::limits::{MAX_LSN, MAX_TERM};
use tinysns_common::membership::{Progress, RoleHandle};
use tinysns_common::proto::coordinator::{Member, ReplicaId};
use tinysns_common::proto::internal::replication_client::ReplicationClient;
use tinysns_common::proto::internal::replication_server::{Replication, ReplicationServer};
use tinysns_common::proto::internal::{AppendReply, AppendRequest};
use tonic::{Request, Response, Status};

/// Entries sent per Append call.
const CHUNK: usize = 512;
/// Most committed batches replicated in one round.
const MAX_BATCHES_PER_ROUND: usize = 64;
/// How long one Append may take before the slave counts as unreachable for this round.
const APPEND_TIMEOUT: Duration = Duration::from_secs(1);

/// The slave side: entries from the master go through the writer like any other write.
pub struct ReplicationService {
    writer: Writer,
}

impl ReplicationService {
    pub fn server(writer: Writer) -> ReplicationServer<Self> {
        ReplicationServer::new(Self { writer }).max_decoding_message_size(64 * 1024 * 1024)
    }
}

/// Why an Append is malformed: no master sends it, so it is refused before it touches the log.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AppendError {
    #[error("term {0} is out of range (1..={MAX_TERM})")]
    Term(u64),
    #[error("prev_lsn {0} is out of range (0..={MAX_LSN})")]
    PrevLsn(u64),
    #[error("prev_term {prev_term} is above the request's term {term}")]
    PrevTerm { prev_term: u64, term: u64 },
    #[error("entry {index} has lsn {got}; entries must follow prev_lsn without gaps (expected {expected})")]
    Gap { index: usize, got: u64, expected: u64 },
    #[error("entry {index} has term {got}, outside {low}..={high} (terms never fall along the log)")]
    EntryTerm {
        index: usize,
        got: u64,
        low: u64,
        high: u64,
    },
}

/// Checks that an Append is one a master could have sent: terms in range and never above the
/// sender's, entries consecutive after `prev_lsn` with non-decreasing terms.
pub fn check_append(req: &AppendRequest) -> Result<(), AppendError> {
    if req.term == 0 || req.term > MAX_TERM {
        return Err(AppendError::Term(req.term));
    }
    if req.prev_lsn > MAX_LSN {
        return Err(AppendError::PrevLsn(req.prev_lsn));
    }
    if req.prev_term > req.term {
        return Err(AppendError::PrevTerm {
            prev_term: req.prev_term,
            term: req.term,
        });
    }
    let mut low = req.prev_term.max(1);
    for (index, entry) in req.entries.iter().enumerate() {
        let expected = req.prev_lsn + 1 + index as u64;
        if entry.lsn != expected || entry.lsn > MAX_LSN {
            return Err(AppendError::Gap {
                index,
                got: entry.lsn,
                expected,
            });
        }
        if entry.term < low || entry.term > req.term {
            return Err(AppendError::EntryTerm {
                index,
                got: entry.term,
                low,
                high: req.term,
            });
        }
        low = entry.term;
    }
    Ok(())
}

#[tonic::async_trait]
impl Replication for ReplicationService {
    async fn append(&self, request: Request<AppendRequest>) -> Result<Response<AppendReply>, Status> {
        let request = request.into_inner();
        check_append(&request).map_err(|e| Status::invalid_argument(e.to_string()))?;
        self.writer
            .append(request)
            .await
            .map(Response::new)
            .map_err(WriteError::into_status)
    }
}

enum LinkError {
    /// The slave knows a newer term: we are no longer master.
    Deposed(u64),
    Unreachable(String),
}

struct SlaveLink {
    address: String,
    /// The slave's data directory this link replicates to: a wiped slave is a new link.
    incarnation: u64,
    client: ReplicationClient<InternalChannel>,
    /// Position up to which the slave's log is known to equal ours.
    matched: Option<u64>,
}

impl SlaveLink {
    fn new(member: &Member, secret: &MemberCredentials) -> Option<Self> {
        let channel = internal_channel(&member.internal_address, Duration::from_millis(500), secret).ok()?;
        let client = ReplicationClient::new(channel).max_decoding_message_size(64 * 1024 * 1024);
        Some(Self {
            address: member.internal_address.clone(),
            incarnation: member.incarnation,
            client,
            matched: None,
        })
    }

    /// Brings the slave up to `target`, sending what it lacks from our log. With `confirm`
    /// it is contacted at least once even if it has everything, which proves it has not
    /// seen a newer term (it would refuse us).
    async fn sync_to(
        &mut self,
        term: u64,
        master_id: u32,
        target: u64,
        feed: &Feed,
        reader: &Reader,
        confirm: bool,
    ) -> Result<(), LinkError> {
        let mut contacted = false;
        loop {
            let prev_lsn = match self.matched {
                Some(m) if m >= target && (contacted || !confirm) => return Ok(()),
                Some(m) => m,
                // First contact: probe at our end; the reply says where the slave stands.
                None => target,
            };
            let entries = if self.matched.is_some() {
                reader
                    .with(move |c| store::entries_after(c, prev_lsn, target, CHUNK))
                    .await
            } else {
                Ok(Vec::new())
            };
            let prev_term = reader.with(move |c| store::term_at(c, prev_lsn)).await;
            let (entries, prev_term) = match (entries, prev_term) {
                (Ok(e), Ok(Some(t))) => (e, t),
                (Err(e), _) | (_, Err(e)) => return Err(LinkError::Unreachable(format!("reading our log: {e}"))),
                (_, Ok(None)) => return Err(LinkError::Unreachable(format!("our log has no entry {prev_lsn}"))),
            };
            let mut call = Request::new(AppendRequest {
                term,
                master_id,
                prev_lsn,
                prev_term,
                entries,
                commit_lsn: feed.committed(),
            });
            call.set_timeout(APPEND_TIMEOUT);
            let reply = self
                .client
                .append(call)
                .await
                .map_err(|s| LinkError::Unreachable(s.message().to_string()))?
                .into_inner();
            if reply.term > term {
                return Err(LinkError::Deposed(reply.term));
            }
            contacted = true;
            // Accepted: matched up to what we sent. Refused: the reply is where its log
            // agrees with ours at most; continue from there.
            self.matched = Some(if reply.accepted {
                reply.last_lsn
            } else {
                let agreed = reply.last_lsn.min(prev_lsn);
                // Refused without moving back: step back one entry to find agreement.
                if agreed == prev_lsn {
                    prev_lsn.saturating_sub(1)
                } else {
                    agreed
                }
            });
        }
    }
}

/// The master side.
pub struct Replicator {
    role: RoleHandle,
    reader: Reader,
    feed: Feed,
    master_id: u32,
    progress: Arc<Progress>,
    secret: MemberCredentials,
    links: HashMap<u32, SlaveLink>,
}

/// How often an idle master checks that its slaves hold its whole log (a slave that
/// restarted or joined empty is caught up even when no client writes).
const CATCH_UP_PERIOD: Duration = Duration::from_millis(100);

impl Replicator {
    pub fn new(
        role: RoleHandle,
        reader: Reader,
        feed: Feed,
        master_id: u32,
        progress: Arc<Progress>,
        secret: MemberCredentials,
    ) -> Self {
        Self {
            role,
            reader,
            feed,
            master_id,
            progress,
            secret,
            links: HashMap::new(),
        }
    }

    pub async fn run(mut self, mut batches: tokio::sync::mpsc::Receiver<Batch>) {
        let mut tick = tokio::time::interval(CATCH_UP_PERIOD);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                batch = batches.recv() => match batch {
                    Some(first) => {
                        // Everything the writer committed meanwhile goes out in the same
                        // round trip: under load, replication keeps up by batching.
                        let mut group = vec![first];
                        while group.len() < MAX_BATCHES_PER_ROUND {
                            match batches.try_recv() {
                                Ok(next) if next.term == group[0].term => group.push(next),
                                Ok(next) => {
                                    self.acknowledge(std::mem::take(&mut group)).await;
                                    group.push(next);
                                }
                                Err(_) => break,
                            }
                        }
                        self.acknowledge(group).await;
                    }
                    None => return,
                },
                _ = tick.tick() => self.catch_up().await,
            }
        }
    }

    /// Replicates batches of one term up to the newest, then answers their clients.
    async fn acknowledge(&mut self, group: Vec<Batch>) {
        let Some(term) = group.first().map(|b| b.term) else {
            return;
        };
        // A batch that wrote nothing (only refusals) still waits for what was committed
        // before it: its answers were decided on that state.
        let target = group
            .iter()
            .map(|b| b.last_lsn)
            .max()
            .unwrap_or(0)
            .max(self.feed.committed());
        let result = self.replicate(term, target).await;
        if let Err(why) = &result {
            tracing::warn!(%why, lsn = target, "writes not acknowledged");
        }
        for batch in group {
            match &result {
                Ok(()) => {
                    self.feed.publish(&batch.entries);
                    for (reply, outcome) in batch.replies {
                        let _ = reply.send(Ok(outcome));
                    }
                }
                Err(why) => {
                    for (reply, _) in batch.replies {
                        let _ = reply.send(Err(WriteError::NotMaster(why.clone())));
                    }
                }
            }
        }
    }

    /// Brings lagging slaves up to our log's end while no batch is waiting.
    async fn catch_up(&mut self) {
        let view = self.role.current();
        if !view.is_master() {
            self.links.clear();
            self.progress.set_in_sync(Vec::new());
            return;
        }
        self.refresh_links(&view.assignment.slaves);
        let target = self.progress.applied_lsn.load(std::sync::atomic::Ordering::SeqCst);
        if self.links.values().any(|l| l.matched.is_none_or(|m| m < target)) {
            if self.replicate(view.term, target).await.is_err() {
                return;
            }
        } else if self.links.is_empty() && !view.has_lease() {
            return;
        } else {
            self.report_in_sync(target);
        }
        // Entries we hold but never acknowledged (their batch failed) are committed now
        // that the slaves have them: make them visible.
        if self.feed.committed() < target {
            self.feed.publish_through(target, &self.reader).await;
        }
    }

    fn report_in_sync(&self, target: u64) {
        let ids = self
            .links
            .iter()
            .filter(|(_, l)| l.matched.is_some_and(|m| m >= target))
            .map(|(id, l)| ReplicaId {
                member_id: *id,
                incarnation: l.incarnation,
            })
            .collect();
        self.progress.set_in_sync(ids);
    }

    /// Waits until every live slave holds the log up to `target`, as long as we are master
    /// under `term`. With the coordinator's lease we may go on alone when the coordinator
    /// has dropped our slaves; without it (coordinator unreachable) only a slave of our
    /// term storing the entries proves nobody else has been made master.
    async fn replicate(&mut self, term: u64, target: u64) -> Result<(), String> {
        let mut attempt = 0u32;
        let mut lease_lost_at: Option<std::time::Instant> = None;
        loop {
            let view = self.role.current();
            if !view.is_master() || view.term != term {
                self.progress.set_in_sync(Vec::new());
                return Err(format!("no longer master of term {term}"));
            }
            self.refresh_links(&view.assignment.slaves);
            if !view.has_lease() {
                let since = *lease_lost_at.get_or_insert_with(std::time::Instant::now);
                if since.elapsed() > view.assignment.failure_timeout * 2 {
                    return Err("cannot confirm mastership: coordinator unreachable".into());
                }
            }
            if self.links.is_empty() {
                if view.has_lease() {
                    tracing::debug!(term, target, "no slave; acknowledged under the lease");
                    self.report_in_sync(target);
                    return Ok(());
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
            // Without the lease even a reply that writes nothing (a refusal decided on our
            // data) waits for a slave to confirm our term: it could be stale otherwise.
            let confirm = !view.has_lease();
            let (master_id, reader, feed) = (self.master_id, &self.reader, &self.feed);
            let results = futures_util::future::join_all(
                self.links
                    .values_mut()
                    .map(|link| link.sync_to(term, master_id, target, feed, reader, confirm)),
            )
            .await;
            let mut pending = false;
            for result in results {
                match result {
                    Ok(()) => {}
                    Err(LinkError::Deposed(newer)) => {
                        if let Err(error) = self.role.observe_term(newer) {
                            tracing::error!(%error, "deposed, but the newer term is not stored");
                        }
                        self.progress.set_in_sync(Vec::new());
                        return Err(format!("a slave knows the newer term {newer}"));
                    }
                    Err(LinkError::Unreachable(why)) => {
                        if attempt == 0 {
                            tracing::warn!(%why, "slave unreachable; retrying until it answers or the coordinator drops it");
                        }
                        pending = true;
                    }
                }
            }
            self.report_in_sync(target);
            if !pending {
                tracing::debug!(term, target, confirm, slaves = self.links.len(), "replicated");
                return Ok(());
            }
            attempt += 1;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn refresh_links(&mut self, slaves: &[Member]) {
        self.links.retain(|id, link| {
            slaves
                .iter()
                .any(|s| s.member_id == *id && s.internal_address == link.address && s.incarnation == link.incarnation)
        });
        for slave in slaves {
            if !self.links.contains_key(&slave.member_id)
                && let Some(link) = SlaveLink::new(slave, &self.secret)
            {
                tracing::info!(slave = slave.member_id, address = %slave.internal_address, "replicating to slave");
                self.links.insert(slave.member_id, link);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tinysns_common::proto::internal::LogEntry;

    fn entry(lsn: u64, term: u64) -> LogEntry {
        LogEntry {
            lsn,
            term,
            ..Default::default()
        }
    }

    fn append(term: u64, prev_lsn: u64, prev_term: u64, entries: Vec<LogEntry>) -> AppendRequest {
        AppendRequest {
            term,
            master_id: 1,
            prev_lsn,
            prev_term,
            entries,
            commit_lsn: 0,
        }
    }

    #[test]
    fn appends_a_master_sends_pass() {
        assert_eq!(check_append(&append(3, 0, 0, vec![])), Ok(()));
        assert_eq!(check_append(&append(3, 0, 0, vec![entry(1, 1), entry(2, 3)])), Ok(()));
        assert_eq!(check_append(&append(3, 7, 2, vec![entry(8, 2), entry(9, 2)])), Ok(()));
    }

    #[test]
    fn malformed_appends_are_refused() {
        // lsn 0 (the old code underflowed computing lsn - 1), a gap, a repeat.
        assert!(matches!(
            check_append(&append(1, 0, 0, vec![entry(0, 1)])),
            Err(AppendError::Gap { got: 0, .. })
        ));
        assert!(matches!(
            check_append(&append(1, 0, 0, vec![entry(1, 1), entry(3, 1)])),
            Err(AppendError::Gap { index: 1, .. })
        ));
        assert!(matches!(
            check_append(&append(1, 4, 1, vec![entry(4, 1)])),
            Err(AppendError::Gap { .. })
        ));
        // Terms out of range, above the sender's, or falling along the log.
        for term in [0, MAX_TERM + 1, u64::MAX] {
            assert_eq!(check_append(&append(term, 0, 0, vec![])), Err(AppendError::Term(term)));
        }
        assert!(matches!(
            check_append(&append(2, 0, 0, vec![entry(1, 3)])),
            Err(AppendError::EntryTerm { got: 3, .. })
        ));
        assert!(matches!(
            check_append(&append(3, 0, 0, vec![entry(1, 2), entry(2, 1)])),
            Err(AppendError::EntryTerm { index: 1, .. })
        ));
        assert!(matches!(
            check_append(&append(3, 5, 2, vec![entry(6, 1)])),
            Err(AppendError::EntryTerm { .. })
        ));
        assert_eq!(
            check_append(&append(2, 1, 3, vec![])),
            Err(AppendError::PrevTerm { prev_term: 3, term: 2 })
        );
        assert_eq!(
            check_append(&append(2, u64::MAX, 1, vec![])),
            Err(AppendError::PrevLsn(u64::MAX))
        );
    }
}
