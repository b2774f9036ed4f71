//! The tsd side of cross-cluster sync: the synchronizer reads this cluster's own changes
//! from here (and records how far it has published), and hands in other clusters' changes.

use crate::command::{Command, Outcome};
use crate::feed::Feed;
use crate::metrics::Metrics;
use crate::reader::Reader;
use crate::remote::{check_remote, stored_here};
use crate::store;
use crate::writer::{WriteError, Writer};
use tinysns_common::grpc::not_master;
use tinysns_common::membership::RoleHandle;
use tinysns_common::proto::internal::change_feed_server::{ChangeFeed, ChangeFeedServer};
use tinysns_common::proto::internal::{
    AccountChange, ApplyRemoteReply, ApplyRemoteRequest, Change, ChangeFeedItem, ChangeFeedRequest, CommitCursorReply,
    CommitCursorRequest, LogEntry, UserCreated, account_change, change, log_entry,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

/// What other clusters learn of one of our entries: social changes as they are (but what
/// a user has read stays home), a new account as a user with its name (never its password
/// hash), sessions nothing.
pub fn published_change(entry: &LogEntry) -> Option<Change> {
    match entry.kind.as_ref()? {
        log_entry::Kind::Change(Change {
            kind: Some(change::Kind::ConversationRead(_)),
        }) => None,
        log_entry::Kind::Change(change) => Some(change.clone()),
        log_entry::Kind::Account(AccountChange {
            kind: Some(account_change::Kind::Registered(r)),
        }) => Some(Change {
            kind: Some(change::Kind::User(UserCreated {
                user_id: r.user_id,
                username: r.username.clone(),
            })),
        }),
        log_entry::Kind::Account(_) | log_entry::Kind::SyncCursor(_) => None,
    }
}

#[derive(Clone)]
pub struct ChangeFeedService {
    pub cluster: u32,
    pub writer: Writer,
    pub reader: Reader,
    pub feed: Feed,
    pub role: RoleHandle,
    pub metrics: std::sync::Arc<Metrics>,
}

impl ChangeFeedService {
    pub fn server(self) -> ChangeFeedServer<Self> {
        ChangeFeedServer::new(self)
    }

    /// Ok with the number of clusters while we are master.
    fn master(&self) -> Result<u32, Status> {
        let view = self.role.current();
        if view.is_master() {
            Ok(view.assignment.clusters.max(1))
        } else {
            Err(not_master(format!("not the master of cluster {}", self.cluster)))
        }
    }

    async fn stream(self, after: u64, tx: mpsc::Sender<Result<ChangeFeedItem, Status>>) {
        let mut tail = self.feed.tail(self.reader.clone(), after);
        let mut role = self.role.clone();
        loop {
            let entries = tokio::select! {
                entries = tail.next() => entries,
                _ = role.changed() => {
                    if let Err(status) = self.master() {
                        let _ = tx.send(Err(status)).await;
                        return;
                    }
                    continue;
                }
                _ = tx.closed() => return,
            };
            if let Err(status) = self.master() {
                let _ = tx.send(Err(status)).await;
                return;
            }
            let entries = match entries {
                Ok(e) => e,
                Err(error) => {
                    let _ = tx.send(Err(Status::internal(error.to_string()))).await;
                    return;
                }
            };
            for entry in entries {
                if entry.origin_cluster != self.cluster {
                    continue;
                }
                if let Some(change) = published_change(&entry) {
                    let item = ChangeFeedItem {
                        lsn: entry.lsn,
                        timestamp_ms: entry.timestamp_ms,
                        change: Some(change),
                        hlc: crate::clock::stamp(&entry),
                    };
                    if tx.send(Ok(item)).await.is_err() {
                        return;
                    }
                }
            }
            self.metrics.change_feed_read(tail.cursor());
        }
    }
}

#[tonic::async_trait]
impl ChangeFeed for ChangeFeedService {
    type SubscribeStream = ReceiverStream<Result<ChangeFeedItem, Status>>;

    async fn subscribe(&self, request: Request<ChangeFeedRequest>) -> Result<Response<Self::SubscribeStream>, Status> {
        self.master()?;
        let after = match request.into_inner().after_lsn {
            0 => self
                .reader
                .with(store::sync_cursor)
                .await
                .map_err(|e| Status::internal(e.to_string()))?,
            n => n,
        };
        tracing::info!(after, "synchronizer subscribed to the change feed");
        self.metrics.change_feed_read(after);
        let (tx, rx) = mpsc::channel(1024);
        tokio::spawn(self.clone().stream(after, tx));
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn commit_cursor(
        &self,
        request: Request<CommitCursorRequest>,
    ) -> Result<Response<CommitCursorReply>, Status> {
        self.master()?;
        let lsn = request.into_inner().lsn;
        // The synchronizer can only have published what the feed served it.
        let committed = self.feed.committed();
        if lsn > committed {
            return Err(Status::invalid_argument(format!(
                "cursor {lsn} is past the end of the committed log ({committed})"
            )));
        }
        self.writer
            .submit(Command::SyncCursor(lsn))
            .await
            .map_err(WriteError::into_status)?;
        Ok(Response::new(CommitCursorReply {}))
    }

    async fn apply_remote(&self, request: Request<ApplyRemoteRequest>) -> Result<Response<ApplyRemoteReply>, Status> {
        let clusters = self.master()?;
        let changes = request.into_inner().changes;
        let now = tinysns_common::now_ms();
        let mut reply = ApplyRemoteReply::default();
        let mut valid = Vec::with_capacity(changes.len());
        for (index, change) in changes.into_iter().enumerate() {
            match check_remote(&change, self.cluster, clusters, now) {
                // A direct message between users of other clusters: not ours to keep.
                Ok(()) if !stored_here(&change, self.cluster, clusters) => {}
                Ok(()) => valid.push((index, change)),
                Err(why) => {
                    tracing::warn!(index, %why, "remote change refused");
                    reply.rejected.push(index as u32);
                }
            }
        }
        // Submitted together so the writer commits them in one transaction.
        let outcomes = futures_util::future::join_all(
            valid
                .into_iter()
                .map(|(index, c)| async move { (index, self.writer.submit(Command::Remote(c)).await) }),
        )
        .await;
        for (index, outcome) in outcomes {
            match outcome.map_err(WriteError::into_status)? {
                Outcome::Written(_) => reply.applied += 1,
                Outcome::Unchanged(_) => {}
                Outcome::Rejected(_, why) => {
                    tracing::warn!(index, %why, "remote change refused");
                    reply.rejected.push(index as u32);
                }
            }
        }
        reply.rejected.sort_unstable();
        Ok(Response::new(reply))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tinysns_common::proto::internal::{Registered, SessionStarted};

    fn account(kind: account_change::Kind) -> LogEntry {
        LogEntry {
            kind: Some(log_entry::Kind::Account(AccountChange { kind: Some(kind) })),
            ..Default::default()
        }
    }

    #[test]
    fn other_clusters_learn_accounts_without_their_secrets() {
        let registered = account(account_change::Kind::Registered(Registered {
            user_id: 4,
            username: "alice".into(),
            password_phc: "$argon2id$secret".into(),
        }));
        let published = published_change(&registered).unwrap();
        assert_eq!(
            published.kind,
            Some(change::Kind::User(UserCreated {
                user_id: 4,
                username: "alice".into()
            }))
        );
        assert!(!format!("{published:?}").contains("argon2"));
        let session = account(account_change::Kind::SessionStarted(SessionStarted {
            user_id: 4,
            token_hash: vec![1; 32],
            expires_ms: 1,
        }));
        assert_eq!(published_change(&session), None, "sessions never leave their cluster");
    }
}
