//! The single writer of the store. Client writes, remote changes and replicated entries all
//! pass through one thread, which batches whatever is queued into one transaction (one fsync
//! for many writes) and hands the result on in order.

use crate::clock::{self, Hlc, WallClock};
use crate::command::{Command, Decision, Origin, Outcome, decide};
use crate::feed::Feed;
use crate::log_matching;
use crate::metrics::Metrics;
use crate::store::{self, compaction, snapshot};
use rusqlite::Connection;
use std::sync::Arc;
use tinysns_common::membership::{Progress, RoleHandle};
use tinysns_common::proto::internal::{AppendReply, AppendRequest, LogEntry};
use tinysns_common::shutdown::Shutdown;
use tokio::sync::{mpsc, oneshot};

/// Most writes committed in one transaction.
const MAX_BATCH: usize = 512;
/// Most entries dropped from the log's front per transaction (it runs with the commit
/// position's, so this bounds the extra work a write may wait for).
const COMPACT_CHUNK: u64 = 2_000;

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("not master: {0}")]
    NotMaster(String),
    #[error("store failure: {0}")]
    Store(#[from] store::StoreError),
    #[error("the writer has stopped")]
    Stopped,
    /// The store was held by another connection for longer than the busy timeout.
    #[error("store busy: {0}")]
    Busy(String),
    #[error(transparent)]
    Term(#[from] tinysns_common::membership::TermError),
}

impl WriteError {
    pub fn into_status(self) -> tonic::Status {
        match self {
            WriteError::NotMaster(why) => tinysns_common::grpc::not_master(why),
            WriteError::Stopped => tonic::Status::unavailable("server is shutting down"),
            WriteError::Term(e) => tonic::Status::unavailable(e.to_string()),
            WriteError::Store(e) if e.is_busy() => tonic::Status::unavailable(e.to_string()),
            WriteError::Busy(why) => tonic::Status::unavailable(why),
            WriteError::Store(e) => tonic::Status::internal(e.to_string()),
        }
    }
}

type Reply<T> = oneshot::Sender<Result<T, WriteError>>;

enum Job {
    Command(Command, Reply<Outcome>),
    Append(AppendRequest, Reply<AppendReply>),
    Install(SnapshotOffer, Reply<AppendReply>),
}

/// A snapshot a master sent, received into a file, to install in place of our store.
#[derive(Debug)]
pub struct SnapshotOffer {
    pub term: u64,
    pub master_id: u32,
    pub path: std::path::PathBuf,
}

/// What the writer works with besides its connection.
pub struct WriterSetup {
    pub cluster: u32,
    pub role: RoleHandle,
    pub feed: Feed,
    /// Our last durable lsn, reported to the coordinator.
    pub progress: Arc<Progress>,
    pub wall: WallClock,
    /// Entries kept behind the commit point when the log's front is dropped.
    pub log_retain: u64,
    /// How often the commit position is stored with a transaction (and the log's front
    /// considered for compaction). It is a lower bound (a restart re-confirms what lies past
    /// it), so it need not cost a page write per commit.
    pub commit_point_period: std::time::Duration,
    pub metrics: Arc<Metrics>,
}

/// Committed locally, waiting for the slaves before the clients hear about it.
pub struct Batch {
    pub term: u64,
    pub last_lsn: u64,
    pub entries: Vec<LogEntry>,
    pub replies: Vec<(Reply<Outcome>, Outcome)>,
}

#[derive(Clone)]
pub struct Writer {
    jobs: mpsc::Sender<Job>,
}

impl Writer {
    /// Starts the writer thread on the store in `dir`. Batches it commits as master go to
    /// the returned receiver (the replication stage).
    /// If the thread ever stops before `shutdown` (a panic, a failing disk), the server stops
    /// heartbeating (its slave takes over) and shuts down: a master that cannot write must
    /// not go on holding its cluster.
    pub fn start(
        conn: Connection,
        setup: WriterSetup,
        shutdown: Shutdown,
    ) -> Result<(Self, mpsc::Receiver<Batch>), store::StoreError> {
        let WriterSetup {
            cluster,
            role,
            feed,
            progress,
            wall,
            log_retain,
            commit_point_period,
            metrics,
        } = setup;
        let hlc = Hlc::new(wall, store::max_hlc(&conn)?);
        let (jobs_tx, jobs_rx) = mpsc::channel(4096);
        let (batches_tx, batches_rx) = mpsc::channel(64);
        let guard = StopGuard {
            progress: progress.clone(),
            shutdown,
        };
        let mut state = State {
            conn,
            cluster,
            role,
            feed,
            batches: batches_tx,
            progress,
            broken: None,
            commit_point: CommitPointSchedule {
                period: commit_point_period,
                recorded: None,
            },
            hlc,
            log_retain,
            backlog: false,
            metrics,
        };
        std::thread::Builder::new()
            .name("tsd-writer".into())
            .spawn(move || {
                let _guard = guard;
                state.run(jobs_rx)
            })
            .map_err(|e| store::StoreError::DataDir {
                path: "writer thread".into(),
                source: e,
            })?;
        Ok((Self { jobs: jobs_tx }, batches_rx))
    }

    pub async fn submit(&self, command: Command) -> Result<Outcome, WriteError> {
        self.ask(|tx| Job::Command(command, tx)).await
    }

    pub async fn append(&self, request: AppendRequest) -> Result<AppendReply, WriteError> {
        self.ask(|tx| Job::Append(request, tx)).await
    }

    /// Replaces the store with the snapshot `offer` names (the slave side of InstallSnapshot).
    pub async fn install(&self, offer: SnapshotOffer) -> Result<AppendReply, WriteError> {
        self.ask(|tx| Job::Install(offer, tx)).await
    }

    async fn ask<T>(&self, job: impl FnOnce(Reply<T>) -> Job) -> Result<T, WriteError> {
        let (tx, rx) = oneshot::channel();
        self.jobs.send(job(tx)).await.map_err(|_| WriteError::Stopped)?;
        rx.await.map_err(|_| WriteError::Stopped)?
    }
}

/// When the commit position is stored with a transaction.
struct CommitPointSchedule {
    period: std::time::Duration,
    recorded: Option<std::time::Instant>,
}

impl CommitPointSchedule {
    /// Whether to store it with this transaction (at most once a period).
    fn due(&mut self) -> bool {
        let now = std::time::Instant::now();
        let due = self.recorded.is_none_or(|at| now.duration_since(at) >= self.period);
        if due {
            self.recorded = Some(now);
        }
        due
    }
}

/// Drops part of the log's front that nobody needs (`store::compaction`), in `tx`.
/// A `busy` writer (a full batch, or more writes queued) defers the work.
fn compact_front(tx: &Connection, role: &RoleHandle, log_retain: u64, busy: bool) -> Result<(), store::StoreError> {
    let clusters = role.current().assignment.clusters;
    if clusters == 0 {
        // Not assigned yet: we cannot tell whether other clusters still need entries.
        return Ok(());
    }
    let held = store::last_lsn(tx)?.saturating_sub(compaction::bounds(tx)?.start);
    if !compaction::due(held, log_retain, busy) {
        return Ok(());
    }
    let published = (clusters > 1).then(|| store::sync_cursor(tx)).transpose()?;
    let horizon = compaction::horizon(store::commit_point(tx)?, published, log_retain);
    compaction::compact(tx, horizon, COMPACT_CHUNK)?;
    Ok(())
}

/// Runs when the writer thread ends, however it ends.
struct StopGuard {
    progress: Arc<Progress>,
    shutdown: Shutdown,
}

impl Drop for StopGuard {
    fn drop(&mut self) {
        if !self.shutdown.is_triggered() {
            let why = match self.progress.failure() {
                Some(why) => why,
                None => "the writer thread stopped unexpectedly".to_string(),
            };
            tracing::error!(%why, "cannot write: giving up this server's role and shutting down");
            self.progress.fail(why);
            self.shutdown.trigger();
        }
    }
}

struct State {
    /// Stamps the changes made here; moves past every stamp stored.
    hlc: Hlc,
    commit_point: CommitPointSchedule,
    /// Set by a store failure nothing can recover from in this process (disk full or
    /// failing, the file gone): the writer stops.
    broken: Option<String>,
    conn: Connection,
    cluster: u32,
    role: RoleHandle,
    feed: Feed,
    batches: mpsc::Sender<Batch>,
    /// Our last durable lsn, reported to the coordinator.
    progress: Arc<Progress>,
    log_retain: u64,
    /// Writes were queued behind the batch being committed.
    backlog: bool,
    metrics: Arc<Metrics>,
}

impl State {
    fn run(&mut self, mut jobs: mpsc::Receiver<Job>) {
        while let Some(first) = jobs.blocking_recv() {
            let mut commands = Vec::new();
            let mut next = Some(first);
            while let Some(job) = next.take() {
                match job {
                    Job::Command(c, reply) => commands.push((c, reply)),
                    Job::Append(req, reply) => {
                        // Keep log order: what was queued before the append goes first.
                        self.run_commands(std::mem::take(&mut commands));
                        let result = self.append(req);
                        self.answer(reply, result);
                    }
                    Job::Install(offer, reply) => {
                        self.run_commands(std::mem::take(&mut commands));
                        let result = self.install(offer);
                        self.answer(reply, result);
                    }
                }
                if commands.len() < MAX_BATCH {
                    next = jobs.try_recv().ok();
                }
            }
            // More waiting behind this batch: the log's clean-up can wait (`compact_front`).
            self.backlog = !jobs.is_empty();
            self.run_commands(commands);
            if let Some(why) = &self.broken {
                self.progress.fail(why.clone());
                break;
            }
        }
        tracing::debug!("writer stopped");
    }

    fn run_commands(&mut self, commands: Vec<(Command, Reply<Outcome>)>) {
        if commands.is_empty() {
            return;
        }
        let role = self.role.current();
        let refusal = if !role.is_master() {
            Some("this server is a slave".to_string())
        } else {
            // A planned switchover: the target must catch up with a log that stays put.
            role.assignment
                .handover_to
                .map(|to| format!("handing over to server {}", to.member_id))
        };
        if let Some(why) = refusal {
            for (_, reply) in commands {
                let _ = reply.send(Err(WriteError::NotMaster(why.clone())));
            }
            return;
        }
        match self.commit_batch(role.term, &commands) {
            Ok((entries, outcomes)) => {
                let last_lsn = entries.last().map(|e| e.lsn).unwrap_or(0);
                let replies = commands.into_iter().map(|(_, r)| r).zip(outcomes).collect();
                let batch = Batch {
                    term: role.term,
                    last_lsn,
                    entries,
                    replies,
                };
                if let Err(mpsc::error::SendError(batch)) = self.batches.blocking_send(batch) {
                    for (reply, _) in batch.replies {
                        let _ = reply.send(Err(WriteError::Stopped));
                    }
                }
            }
            Err(error) => {
                tracing::error!(%error, "commit failed");
                self.check_fatal(&error);
                let text = error.to_string();
                let (busy, fatal) = (error.is_busy(), error.is_fatal());
                for (_, reply) in commands {
                    let _ = reply.send(Err(if busy {
                        WriteError::Busy(text.clone())
                    } else if fatal {
                        // Retryable: the client finds the master that replaces us.
                        WriteError::NotMaster(format!("this server cannot write ({text}) and gives up its role"))
                    } else {
                        WriteError::Store(store::StoreError::Internal(text.clone()))
                    }));
                }
            }
        }
    }

    fn answer<T>(&mut self, reply: Reply<T>, result: Result<T, WriteError>) {
        if let Err(WriteError::Store(e)) = &result {
            self.check_fatal(e);
        }
        let _ = reply.send(result);
    }

    fn check_fatal(&mut self, error: &store::StoreError) {
        if error.is_fatal() && self.broken.is_none() {
            self.broken = Some(format!("the store cannot be written: {error}"));
        }
    }

    fn commit_batch(
        &mut self,
        term: u64,
        commands: &[(Command, Reply<Outcome>)],
    ) -> Result<(Vec<LogEntry>, Vec<Outcome>), store::StoreError> {
        let started = std::time::Instant::now();
        let tx = store::write_transaction(&mut self.conn)?;
        let mut lsn = store::last_lsn(&tx)?;
        let mut entries = Vec::new();
        let mut outcomes = Vec::with_capacity(commands.len());
        for (command, _) in commands {
            let outcome = match decide(&tx, command)? {
                Decision::Write { kind, origin } => {
                    lsn += 1;
                    let origin = match origin {
                        Some(origin) => {
                            self.hlc.observe(origin.hlc);
                            origin
                        }
                        None => Origin {
                            cluster: self.cluster,
                            lsn,
                            timestamp_ms: self.hlc.wall().now_ms(),
                            hlc: self.hlc.tick(),
                        },
                    };
                    let entry = LogEntry {
                        lsn,
                        term,
                        timestamp_ms: origin.timestamp_ms,
                        origin_cluster: origin.cluster,
                        origin_lsn: origin.lsn,
                        kind: Some(kind),
                        hlc: origin.hlc,
                    };
                    store::append(&tx, &entry)?;
                    entries.push(entry);
                    Outcome::Written(lsn)
                }
                Decision::Done(outcome) => outcome,
            };
            outcomes.push(outcome);
        }
        if !entries.is_empty() && self.commit_point.due() {
            // What was acknowledged before this batch: a restart publishes nothing past it
            // until it is replicated again.
            store::record_commit_point(&tx, self.feed.committed())?;
            let busy = self.backlog || commands.len() >= MAX_BATCH / 2;
            compact_front(&tx, &self.role, self.log_retain, busy)?;
        }
        tx.commit()?;
        if let Some(last) = entries.last() {
            self.progress.set_applied(last.lsn);
            self.metrics.committed_batch(self.cluster, &entries, started.elapsed());
        }
        Ok((entries, outcomes))
    }

    /// The slave side of replication (`log_matching`), then what it changed made known.
    fn append(&mut self, req: AppendRequest) -> Result<AppendReply, WriteError> {
        // The term is stored before we answer under it: a restart never forgets it.
        let known_term = self.role.observe_term(req.term)?;
        let record = !req.entries.is_empty() && self.commit_point.due();
        let busy = req.entries.len() >= MAX_BATCH / 2;
        let matched = log_matching::apply(&mut self.conn, req, known_term, record)?;
        if record {
            let tx = store::write_transaction(&mut self.conn)?;
            compact_front(&tx, &self.role, self.log_retain, busy)?;
            tx.commit().map_err(store::StoreError::from)?;
        }
        if let Some(keep) = matched.truncated_to {
            tracing::warn!(
                keep_up_to = keep,
                "dropped log entries the current master does not have"
            );
            self.feed.reset(keep);
            self.progress.set_applied(keep);
        }
        for entry in &matched.stored {
            self.hlc.observe(clock::stamp(entry));
        }
        if let Some(last) = matched.stored.last() {
            self.feed.publish(&matched.stored);
            self.progress.set_applied(last.lsn);
        }
        Ok(AppendReply {
            accepted: matched.accepted,
            last_lsn: matched.last_lsn,
            term: known_term,
        })
    }

    /// The slave side of InstallSnapshot: our store becomes the master's copy.
    fn install(&mut self, offer: SnapshotOffer) -> Result<AppendReply, WriteError> {
        let known_term = self.role.observe_term(offer.term)?;
        if offer.term < known_term {
            return Ok(AppendReply {
                accepted: false,
                last_lsn: store::last_lsn(&self.conn)?,
                term: known_term,
            });
        }
        let started = std::time::Instant::now();
        let db = self
            .conn
            .path()
            .map(std::path::PathBuf::from)
            .ok_or_else(|| store::StoreError::Internal("the store has no file".into()))?;
        let path = offer.path.clone();
        // At the lowest priority, resting as long as each step took: the master's writes
        // (on this machine, or sharing its disk) go first.
        let info = tinysns_common::background::run_low_priority_blocking("tsd-install", move || {
            snapshot::install(&db, &path, snapshot::INSTALL_STEP, std::thread::sleep)
        })
        // A panic may have come after the store began to change.
        .map_err(|e| store::StoreError::InstallInterrupted(e.to_string()))??;
        tracing::info!(
            master = offer.master_id,
            last_lsn = info.last_lsn,
            committed = info.committed,
            ms = started.elapsed().as_millis() as u64,
            "installed the master's snapshot"
        );
        self.hlc.observe(info.max_hlc);
        self.feed.reset(info.last_lsn);
        self.progress.set_applied(info.last_lsn);
        Ok(AppendReply {
            accepted: true,
            last_lsn: info.last_lsn,
            term: known_term,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};
    use tinysns_common::membership::{Assignment, Membership};
    use tinysns_common::proto::coordinator::Role;

    /// A writer on a fresh store in `dir`, master of cluster 1 at term 1 with a lease.
    fn master_writer(dir: &std::path::Path, max_pages: Option<u32>) -> (Writer, Arc<Progress>, Shutdown) {
        let conn = store::open(dir).unwrap();
        if let Some(pages) = max_pages {
            conn.pragma_update(None, "max_page_count", pages).unwrap();
        }
        let membership = Membership::new();
        membership.assume(Assignment {
            role: Role::Master,
            term: 1,
            clusters: 1,
            lease_until: Some(Instant::now() + Duration::from_secs(600)),
            ..Assignment::default()
        });
        let progress = Progress::new(0);
        let shutdown = Shutdown::new();
        let setup = WriterSetup {
            cluster: 1,
            role: membership.handle(),
            feed: Feed::new(0),
            progress: progress.clone(),
            wall: WallClock::default(),
            log_retain: 10,
            commit_point_period: std::time::Duration::from_millis(100),
            metrics: Arc::default(),
        };
        let (writer, mut batches) = Writer::start(conn, setup, shutdown.clone()).unwrap();
        // Stand in for replication: acknowledge every batch at once.
        tokio::spawn(async move {
            while let Some(batch) = batches.recv().await {
                for (reply, outcome) in batch.replies {
                    let _ = reply.send(Ok(outcome));
                }
            }
        });
        (writer, progress, shutdown)
    }

    fn post(id: u64, bytes: usize) -> Command {
        Command::Post {
            author: 1,
            author_name: String::new(),
            post_id: id,
            text: "x".repeat(bytes),
            reply_to: None,
            parent_vouched: false,
            topics: Vec::new(),
        }
    }

    #[tokio::test]
    async fn a_full_disk_makes_the_server_give_up_its_role_and_stop() {
        let dir = tempfile::tempdir().unwrap();
        let (writer, progress, shutdown) = master_writer(dir.path(), Some(64));
        writer.submit(Command::CreateUser { user: 1 }).await.unwrap();
        let mut failed = None;
        for id in 1..=1000 {
            if let Err(error) = writer.submit(post(id, 2000)).await {
                failed = Some(error);
                break;
            }
        }
        let error = failed.expect("the store filled up");
        // Retryable for the client: it goes to the master that takes over.
        assert!(matches!(error, WriteError::NotMaster(_)), "{error}");
        tokio::time::timeout(Duration::from_secs(5), shutdown.wait())
            .await
            .expect("the server shuts down");
        assert!(progress.failure().unwrap().contains("full"), "{:?}", progress.failure());
        assert!(matches!(writer.submit(post(5000, 1)).await, Err(WriteError::Stopped)));
    }

    #[tokio::test]
    async fn a_healthy_writer_keeps_the_server_up() {
        let dir = tempfile::tempdir().unwrap();
        let (writer, progress, shutdown) = master_writer(dir.path(), None);
        writer.submit(Command::CreateUser { user: 1 }).await.unwrap();
        for id in 1..=50 {
            assert!(matches!(writer.submit(post(id, 100)).await, Ok(Outcome::Written(_))));
        }
        assert!(progress.failure().is_none());
        assert!(!shutdown.is_triggered());
    }
}
