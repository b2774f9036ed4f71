//! The committed tail of the log, in memory, for everyone who follows new entries as they
//! come: open timelines, the synchronizer's change feed and the replicator. Readers that
//! fall further behind than the ring holds continue from the store.

use crate::reader::Reader;
use crate::store;
use std::collections::VecDeque;
use std::sync::{Arc, RwLock};
use tinysns_common::proto::internal::LogEntry;
use tokio::sync::watch;

/// Entries kept in memory; older ones are read from the store.
const RING_CAPACITY: usize = 65_536;
/// Entries handed out per read.
const READ_CHUNK: usize = 512;

#[derive(Clone)]
pub struct Feed {
    ring: Arc<RwLock<Ring>>,
    committed: Arc<watch::Sender<u64>>,
}

struct Ring {
    entries: VecDeque<Arc<LogEntry>>,
    /// lsn of the newest entry (0 for an empty log).
    last: u64,
}

impl Ring {
    fn first(&self) -> u64 {
        self.last + 1 - self.entries.len() as u64
    }
}

enum Read {
    Entries(Vec<Arc<LogEntry>>),
    FromStore,
}

impl Feed {
    /// A feed whose committed position is `committed` (what the store knew to be committed
    /// at start-up; entries after it become visible once replicated).
    pub fn new(committed: u64) -> Self {
        Self {
            ring: Arc::new(RwLock::new(Ring {
                entries: VecDeque::new(),
                last: committed,
            })),
            committed: Arc::new(watch::channel(committed).0),
        }
    }

    pub fn committed(&self) -> u64 {
        *self.committed.borrow()
    }

    /// Waits until entries through `lsn` are committed.
    pub async fn committed_through(&self, lsn: u64) {
        let mut changes = self.committed.subscribe();
        // The sender lives as long as `self`, so this cannot end early.
        let _ = changes.wait_for(|committed| *committed >= lsn).await;
    }

    /// Makes entries visible to readers. Entries must follow on from what was published;
    /// anything already published is skipped.
    pub fn publish(&self, entries: &[LogEntry]) {
        if entries.is_empty() {
            return;
        }
        let mut ring = self.ring.write().unwrap_or_else(|p| p.into_inner());
        for entry in entries {
            if entry.lsn <= ring.last {
                continue;
            }
            if entry.lsn != ring.last + 1 {
                // A gap means someone else wrote the store; forget the ring rather than
                // hand out a hole. Readers continue from the store.
                ring.entries.clear();
            }
            ring.last = entry.lsn;
            ring.entries.push_back(Arc::new(entry.clone()));
            if ring.entries.len() > RING_CAPACITY {
                ring.entries.pop_front();
            }
        }
        let last = ring.last;
        drop(ring);
        self.committed.send_replace(last);
    }

    /// Publishes what the store holds up to `lsn` beyond what was published.
    pub async fn publish_through(&self, lsn: u64, reader: &Reader) {
        let committed = self.committed();
        if lsn <= committed {
            return;
        }
        // Only the newest entries go into the ring; readers behind it read the store.
        let from = committed.max(lsn.saturating_sub(RING_CAPACITY as u64));
        match reader
            .with(move |c| store::entries_after(c, from, lsn, usize::MAX))
            .await
        {
            Ok(entries) => self.publish(&entries),
            Err(error) => tracing::warn!(%error, "cannot read the log to publish it"),
        }
    }

    /// Forgets everything after `lsn` (the log was truncated there).
    pub fn reset(&self, lsn: u64) {
        let mut ring = self.ring.write().unwrap_or_else(|p| p.into_inner());
        ring.entries.clear();
        ring.last = lsn;
        drop(ring);
        self.committed.send_replace(lsn);
    }

    fn read_after(&self, after: u64) -> Read {
        let ring = self.ring.read().unwrap_or_else(|p| p.into_inner());
        if after >= ring.last {
            return Read::Entries(Vec::new());
        }
        if ring.entries.is_empty() || after + 1 < ring.first() {
            return Read::FromStore;
        }
        let skip = (after + 1 - ring.first()) as usize;
        Read::Entries(ring.entries.iter().skip(skip).take(READ_CHUNK).cloned().collect())
    }

    /// Follows the committed log from just after `after`.
    pub fn tail(&self, reader: Reader, after: u64) -> Tail {
        Tail {
            feed: self.clone(),
            reader,
            cursor: after,
            changes: self.committed.subscribe(),
        }
    }
}

/// A reader's position in the committed log.
pub struct Tail {
    feed: Feed,
    reader: Reader,
    cursor: u64,
    changes: watch::Receiver<u64>,
}

impl Tail {
    pub fn cursor(&self) -> u64 {
        self.cursor
    }

    /// Moves the cursor on to `lsn` (past a stretch the reader took from elsewhere).
    pub fn skip_to(&mut self, lsn: u64) {
        self.cursor = self.cursor.max(lsn);
    }

    /// The next committed entries after the cursor, waiting until there are some.
    pub async fn next(&mut self) -> Result<Vec<Arc<LogEntry>>, store::StoreError> {
        loop {
            self.changes.borrow_and_update();
            let committed = self.feed.committed();
            if self.cursor > committed {
                // The log was truncated below our position: continue from its new end.
                self.cursor = committed;
            }
            if self.cursor < committed {
                let entries = match self.feed.read_after(self.cursor) {
                    Read::Entries(entries) => entries,
                    Read::FromStore => {
                        let (after, upto) = (self.cursor, committed);
                        let entries = self
                            .reader
                            .with(move |c| store::entries_after(c, after, upto, READ_CHUNK))
                            .await?;
                        // Never skip entries silently: the caller decides what a compacted
                        // stretch means to it.
                        if entries.first().is_none_or(|e| e.lsn != after + 1) {
                            let start = entries.first().map_or(upto, |e| e.lsn - 1);
                            return Err(store::StoreError::Compacted { after, start });
                        }
                        entries.into_iter().map(Arc::new).collect()
                    }
                };
                if let Some(last) = entries.last() {
                    self.cursor = last.lsn;
                    return Ok(entries);
                }
            }
            if self.changes.changed().await.is_err() {
                return Ok(Vec::new());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::{mixed_entries, write};

    #[tokio::test]
    async fn a_reader_behind_the_compacted_front_is_told_not_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = store::open(dir.path()).unwrap();
        write(&mut conn, &mixed_entries(4, 100));
        let tx = store::write_transaction(&mut conn).unwrap();
        store::record_commit_point(&tx, 100).unwrap();
        store::compaction::compact(&tx, 50, 1000).unwrap();
        tx.commit().unwrap();
        let (feed, reader) = (Feed::new(100), Reader::new(dir.path()));
        let mut behind = feed.tail(reader.clone(), 10);
        match behind.next().await {
            Err(store::StoreError::Compacted { after: 10, start: 50 }) => {}
            other => panic!("expected the compacted stretch to be reported, got {other:?}"),
        }
        // Having read the stretch elsewhere, the reader goes on from the front.
        behind.skip_to(50);
        assert_eq!(behind.next().await.unwrap()[0].lsn, 51);
        let mut ahead = feed.tail(reader, 60);
        assert_eq!(ahead.next().await.unwrap()[0].lsn, 61);
    }
}
