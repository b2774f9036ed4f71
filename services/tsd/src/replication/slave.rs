//! The slave side of replication: the `Append` RPC, checked before it reaches the writer
//! (which applies the log-matching rule).

use crate::writer::{WriteError, Writer};
use tinysns_common::limits::{MAX_LSN, MAX_TERM};
use tinysns_common::proto::internal::replication_server::{Replication, ReplicationServer};
use tinysns_common::proto::internal::{AppendReply, AppendRequest};
use tonic::{Request, Response, Status};

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
