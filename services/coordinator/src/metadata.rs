//! What the coordinator has decided and must never forget: per group, the term, the master,
//! the in-sync set and who a blocked group waits for. Everything else it knows (who is
//! alive, at which address, how far each log reaches) is rebuilt from heartbeats within one
//! failure timeout. Decisions are stored before anyone hears of them.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};

/// One incarnation of a member: the member id names a place, the incarnation its data.
/// Incarnation 0 means "not known" (synchronizers, which hold no data).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Replica {
    pub member: u32,
    pub incarnation: u64,
}

impl Replica {
    /// Whether `incarnation` of `member` still holds this replica's data.
    pub fn is(&self, member: u32, incarnation: u64) -> bool {
        self.member == member && (self.incarnation == incarnation || self.incarnation == 0 || incarnation == 0)
    }
}

/// The durable state of one group (the servers, or the synchronizers, of one cluster).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupMeta {
    /// Only grows; every change of master raises it.
    pub term: u64,
    pub master: Option<Replica>,
    /// Slaves that hold every write the master acknowledged: only these may be promoted.
    pub in_sync: BTreeSet<Replica>,
    /// The master died with no live slave in sync: only these replicas hold every
    /// acknowledged write, and the first of them to return becomes master. Empty otherwise.
    pub waiting_for: BTreeSet<Replica>,
}

/// The durable state of every group.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    pub servers: BTreeMap<u32, GroupMeta>,
    pub synchronizers: BTreeMap<u32, GroupMeta>,
}

#[derive(Debug, thiserror::Error)]
pub enum StateFileError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path} is not a coordinator state file: {source}")]
    Parse { path: PathBuf, source: serde_json::Error },
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
}

/// The metadata in a JSON file, replaced atomically (write, fsync, rename, fsync the
/// directory) so a crash leaves either the old state or the new one.
#[derive(Debug, Clone)]
pub struct StateFile {
    path: PathBuf,
}

impl StateFile {
    pub fn in_dir(dir: &Path) -> Self {
        Self {
            path: dir.join("coordinator-state.json"),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The stored metadata; `None` when nothing was stored yet.
    pub fn load(&self) -> Result<Option<Metadata>, StateFileError> {
        match std::fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|source| StateFileError::Parse {
                    path: self.path.clone(),
                    source,
                }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(StateFileError::Read {
                path: self.path.clone(),
                source,
            }),
        }
    }

    pub fn save(&self, metadata: &Metadata) -> Result<(), StateFileError> {
        let write_err = |source| StateFileError::Write {
            path: self.path.clone(),
            source,
        };
        let dir = self.path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(write_err)?;
        let tmp = self.path.with_extension("json.tmp");
        let bytes = serde_json::to_vec_pretty(metadata).map_err(|e| write_err(std::io::Error::other(e)))?;
        let mut file = std::fs::File::create(&tmp).map_err(write_err)?;
        file.write_all(&bytes).map_err(write_err)?;
        file.sync_all().map_err(write_err)?;
        std::fs::rename(&tmp, &self.path).map_err(write_err)?;
        std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(write_err)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips_and_a_missing_file_is_no_state() {
        let dir = tempfile::tempdir().unwrap();
        let file = StateFile::in_dir(&dir.path().join("nested"));
        assert!(file.load().unwrap().is_none());
        let mut meta = Metadata::default();
        meta.servers.insert(
            2,
            GroupMeta {
                term: 7,
                master: Some(Replica {
                    member: 1,
                    incarnation: 99,
                }),
                in_sync: [Replica {
                    member: 2,
                    incarnation: 5,
                }]
                .into(),
                waiting_for: BTreeSet::new(),
            },
        );
        file.save(&meta).unwrap();
        assert_eq!(file.load().unwrap(), Some(meta));
    }

    #[test]
    fn a_corrupt_file_is_an_error_not_an_empty_state() {
        let dir = tempfile::tempdir().unwrap();
        let file = StateFile::in_dir(dir.path());
        std::fs::write(file.path(), b"{ not json").unwrap();
        assert!(matches!(file.load(), Err(StateFileError::Parse { .. })));
    }
}
