//! The tsd side of cross-cluster sync: the synchronizer reads this cluster's own changes
//! from here (and records how far it has published), and hands in other clusters' changes.

use crate::command::{Command, Outcome};
use crate::feed::Feed;
use crate::metrics::Metrics;
use crate::reader::Reader;
use crate::remote::{check_remote, stored_here};
use crate::routing::{self, Destinations, Route, Routing};
use crate::store::{self, StoreError};
use crate::writer::{WriteError, Writer};
use std::sync::Arc;
use tinysns_common::features::Feature;
use tinysns_common::grpc::not_master;
use tinysns_common::membership::RoleHandle;
use tinysns_common::proto::internal::change_feed_server::{ChangeFeed, ChangeFeedServer};
use tinysns_common::proto::internal::{
    ApplyRemoteReply, ApplyRemoteRequest, ChangeFeedItem, ChangeFeedRequest, CommitCursorReply, CommitCursorRequest,
    LogEntry,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

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
        self.master_routing().map(|(clusters, _)| clusters)
    }

    /// Ok with the number of clusters and how to route while we are master.
    fn master_routing(&self) -> Result<(u32, Routing), Status> {
        let view = self.role.current();
        let routing = match Feature::SelectiveReplication.enabled_at(view.assignment.system_feature_level) {
            true => Routing::Selective,
            false => Routing::Everywhere,
        };
        if view.is_master() {
            Ok((view.assignment.clusters.max(1), routing))
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
            let (clusters, routing) = match self.master_routing() {
                Ok(routed) => routed,
                Err(status) => {
                    let _ = tx.send(Err(status)).await;
                    return;
                }
            };
            let entries = match entries {
                Ok(e) => e,
                Err(error) => {
                    let _ = tx.send(Err(Status::internal(error.to_string()))).await;
                    return;
                }
            };
            let items = match self.items(entries, clusters, routing).await {
                Ok(items) => items,
                Err(error) => {
                    let _ = tx.send(Err(Status::internal(error.to_string()))).await;
                    return;
                }
            };
            for item in items {
                if tx.send(Ok(item)).await.is_err() {
                    return;
                }
            }
            self.metrics.change_feed_read(tail.cursor());
        }
    }
}

impl ChangeFeedService {
    /// What to publish of `entries` (`routing`: where each change goes, read from the store
    /// as it is now). Routed selectively, our own entries that go nowhere (a post without
    /// an audience elsewhere) end with a marker, an item without a change, so that the
    /// synchronizer's cursor (and with it the log's compaction) moves past them.
    async fn items(
        &self,
        entries: Vec<Arc<LogEntry>>,
        clusters: u32,
        routing: Routing,
    ) -> Result<Vec<ChangeFeedItem>, StoreError> {
        let here = self.cluster;
        self.reader
            .with(move |conn| {
                let mut items = Vec::new();
                for entry in &entries {
                    for route in routing::routes(conn, entry, here, clusters, routing)? {
                        items.push(feed_item(entry.lsn, route));
                    }
                }
                let last_own = entries
                    .iter()
                    .filter(|e| e.origin_cluster == here)
                    .map(|e| e.lsn)
                    .max()
                    .unwrap_or(0);
                if routing == Routing::Selective && last_own > items.last().map_or(0, |i| i.lsn) {
                    items.push(ChangeFeedItem {
                        lsn: last_own,
                        ..Default::default()
                    });
                }
                Ok(items)
            })
            .await
    }
}

/// A route as the synchronizer reads it (no destinations: every other cluster).
fn feed_item(lsn: u64, route: Route) -> ChangeFeedItem {
    ChangeFeedItem {
        lsn,
        timestamp_ms: route.timestamp_ms,
        hlc: route.hlc,
        change: Some(route.change),
        destinations: match route.destinations {
            Destinations::Everywhere => Vec::new(),
            Destinations::Only(set) => set.into_iter().collect(),
        },
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
