//! The slave side of replication: the `Append` RPC, checked before it reaches the writer
//! (which applies the log-matching rule), and `InstallSnapshot`, received into a file the
//! writer then installs.

use crate::store::snapshot::SnapshotFile;
use crate::writer::{SnapshotOffer, WriteError, Writer};
use std::path::{Path, PathBuf};
use tinysns_common::limits::{MAX_LSN, MAX_TERM};
use tinysns_common::proto::internal::replication_server::{Replication, ReplicationServer};
use tinysns_common::proto::internal::{AppendReply, AppendRequest, SnapshotChunk};
use tokio::io::AsyncWriteExt;
use tonic::{Request, Response, Status};

/// Largest piece of a snapshot in one message.
pub const MAX_SNAPSHOT_CHUNK: usize = 4 * 1024 * 1024;
/// Largest snapshot a slave accepts (the file is written to its data directory first).
pub const MAX_SNAPSHOT_BYTES: u64 = 1 << 40;
/// Where a snapshot being received is kept, in the data directory.
pub const INCOMING_SNAPSHOT: &str = "snapshot-incoming.db";

/// The slave side: entries from the master go through the writer like any other write.
pub struct ReplicationService {
    writer: Writer,
    data_dir: PathBuf,
    /// The snapshot being received, if any (one at a time).
    incoming: tokio::sync::Mutex<Option<Incoming>>,
}

impl ReplicationService {
    pub fn server(writer: Writer, data_dir: &Path) -> ReplicationServer<Self> {
        ReplicationServer::new(Self {
            writer,
            data_dir: data_dir.to_path_buf(),
            incoming: tokio::sync::Mutex::new(None),
        })
        .max_decoding_message_size(64 * 1024 * 1024)
    }
}

/// Removes what a snapshot received before a crash left behind.
pub fn remove_stale_snapshots(data_dir: &Path) {
    drop(SnapshotFile(data_dir.join(INCOMING_SNAPSHOT)));
    // And those this server was sending as a master.
    let Ok(entries) = std::fs::read_dir(data_dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        if let Some(name) = name.to_str()
            && let Some(rest) = name.strip_prefix(super::link::OUTGOING_SNAPSHOT_PREFIX)
            && rest.ends_with(".db")
        {
            drop(SnapshotFile(entry.path()));
        }
    }
}

/// Why a snapshot chunk is refused: no master sends it.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SnapshotStreamError {
    #[error("term {0} is out of range (1..={MAX_TERM})")]
    Term(u64),
    #[error("chunk from master {got:?} in a stream from {expected:?} (term, master id)")]
    Sender { got: (u64, u32), expected: (u64, u32) },
    #[error("chunk at offset {got}, expected {expected}: chunks come in order without gaps")]
    Offset { got: u64, expected: u64 },
    #[error("chunk of {0} bytes is above {MAX_SNAPSHOT_CHUNK}")]
    ChunkSize(usize),
    #[error("snapshot above {MAX_SNAPSHOT_BYTES} bytes")]
    Total,
}

/// What a snapshot's chunks have delivered so far; checks each chunk before it is written.
#[derive(Debug, Default)]
pub struct Receipt {
    sender: Option<(u64, u32)>,
    received: u64,
}

impl Receipt {
    pub fn accept(&mut self, chunk: &SnapshotChunk) -> Result<(), SnapshotStreamError> {
        if chunk.term == 0 || chunk.term > MAX_TERM {
            return Err(SnapshotStreamError::Term(chunk.term));
        }
        let sender = (chunk.term, chunk.master_id);
        if let Some(expected) = self.sender
            && expected != sender
        {
            return Err(SnapshotStreamError::Sender { got: sender, expected });
        }
        if chunk.offset != self.received {
            return Err(SnapshotStreamError::Offset {
                got: chunk.offset,
                expected: self.received,
            });
        }
        if chunk.data.len() > MAX_SNAPSHOT_CHUNK {
            return Err(SnapshotStreamError::ChunkSize(chunk.data.len()));
        }
        let received = self.received + chunk.data.len() as u64;
        if received > MAX_SNAPSHOT_BYTES {
            return Err(SnapshotStreamError::Total);
        }
        self.sender = Some(sender);
        self.received = received;
        Ok(())
    }
}

/// A snapshot being received.
struct Incoming {
    receipt: Receipt,
    out: tokio::fs::File,
    file: SnapshotFile,
}

impl ReplicationService {
    /// Writes one chunk; once the last chunk is in, the offer to install the snapshot and its
    /// file (removed when dropped).
    async fn receive(&self, chunk: SnapshotChunk) -> Result<Option<(SnapshotOffer, SnapshotFile)>, Status> {
        let io = |e: std::io::Error| Status::internal(format!("cannot write the snapshot: {e}"));
        let mut incoming = self.incoming.lock().await;
        if chunk.offset == 0 {
            // A new snapshot: drop what an earlier one left (its file first).
            *incoming = None;
            let file = SnapshotFile(self.data_dir.join(INCOMING_SNAPSHOT));
            let out = tokio::fs::File::create(&file.0).await.map_err(io)?;
            *incoming = Some(Incoming {
                receipt: Receipt::default(),
                out,
                file,
            });
        }
        let Some(current) = incoming.as_mut() else {
            return Err(Status::failed_precondition(
                SnapshotStreamError::Offset {
                    got: chunk.offset,
                    expected: 0,
                }
                .to_string(),
            ));
        };
        current
            .receipt
            .accept(&chunk)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        current.out.write_all(&chunk.data).await.map_err(io)?;
        if !chunk.last {
            return Ok(None);
        }
        // Not flushed: the file is only read by the install (which makes the store durable
        // in its own transactions) and removed after it; a crash means a new snapshot.
        current.out.flush().await.map_err(io)?;
        let Some(Incoming { file, .. }) = incoming.take() else {
            return Ok(None);
        };
        let offer = SnapshotOffer {
            term: chunk.term,
            master_id: chunk.master_id,
            path: file.0.clone(),
        };
        Ok(Some((offer, file)))
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

    async fn install_snapshot(&self, request: Request<SnapshotChunk>) -> Result<Response<AppendReply>, Status> {
        let chunk = request.into_inner();
        let term = chunk.term;
        let Some((offer, file)) = self.receive(chunk).await? else {
            return Ok(Response::new(AppendReply {
                accepted: true,
                last_lsn: 0,
                term,
            }));
        };
        let installed = self.writer.install(offer).await;
        drop(file);
        installed.map(Response::new).map_err(WriteError::into_status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshots_left_by_a_crash_are_removed_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let names = [
            INCOMING_SNAPSHOT,
            "snapshot-outgoing-2-0.db",
            "snapshot-outgoing-2-0.db-journal",
            "snapshot-outgoing-3-17.db",
            "tsd.db",
            "tsd.db-wal",
            "snapshot-outgoing-notes.txt",
        ];
        for name in names {
            std::fs::write(dir.path().join(name), b"x").unwrap();
        }
        remove_stale_snapshots(dir.path());
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left, ["snapshot-outgoing-notes.txt", "tsd.db", "tsd.db-wal"]);
    }
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

    fn chunk(term: u64, master_id: u32, offset: u64, len: usize) -> SnapshotChunk {
        SnapshotChunk {
            term,
            master_id,
            offset,
            data: vec![0; len],
            last: false,
        }
    }

    #[test]
    fn a_snapshot_stream_comes_from_one_master_in_order() {
        let mut receipt = Receipt::default();
        assert_eq!(receipt.accept(&chunk(3, 1, 0, 10)), Ok(()));
        assert_eq!(receipt.accept(&chunk(3, 1, 10, 0)), Ok(()));
        assert_eq!(
            receipt.accept(&chunk(3, 2, 10, 5)),
            Err(SnapshotStreamError::Sender {
                got: (3, 2),
                expected: (3, 1)
            })
        );
        assert_eq!(
            receipt.accept(&chunk(4, 1, 10, 5)),
            Err(SnapshotStreamError::Sender {
                got: (4, 1),
                expected: (3, 1)
            })
        );
        assert_eq!(
            receipt.accept(&chunk(3, 1, 0, 5)),
            Err(SnapshotStreamError::Offset { got: 0, expected: 10 })
        );
        assert_eq!(
            receipt.accept(&chunk(3, 1, 15, 5)),
            Err(SnapshotStreamError::Offset { got: 15, expected: 10 })
        );
        assert_eq!(
            receipt.accept(&chunk(3, 1, 10, MAX_SNAPSHOT_CHUNK + 1)),
            Err(SnapshotStreamError::ChunkSize(MAX_SNAPSHOT_CHUNK + 1))
        );
        // A refused chunk changes nothing: the stream may not go on past it.
        assert_eq!(receipt.accept(&chunk(3, 1, 10, 1)), Ok(()));
        for term in [0, MAX_TERM + 1] {
            assert_eq!(
                Receipt::default().accept(&chunk(term, 1, 0, 1)),
                Err(SnapshotStreamError::Term(term))
            );
        }
        let mut huge = Receipt {
            sender: Some((3, 1)),
            received: MAX_SNAPSHOT_BYTES - 1,
        };
        assert_eq!(
            huge.accept(&chunk(3, 1, MAX_SNAPSHOT_BYTES - 1, 2)),
            Err(SnapshotStreamError::Total)
        );
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
