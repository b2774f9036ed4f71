//! Read-only connections to the store, used off the async threads. SQLite in WAL mode lets
//! them read while the writer commits.

use crate::store::StoreError;
use rusqlite::{Connection, OpenFlags};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

#[derive(Clone)]
pub struct Reader {
    dir: Arc<PathBuf>,
    path: Arc<PathBuf>,
    idle: Arc<Mutex<Vec<Connection>>>,
}

impl Reader {
    /// Readers of the store in `dir` (which the writer has already created).
    pub fn new(dir: &std::path::Path) -> Self {
        Self {
            dir: Arc::new(dir.to_path_buf()),
            path: Arc::new(dir.join("tsd.db")),
            idle: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// The data directory the store is in.
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    /// The store's file.
    pub fn db_path(&self) -> &std::path::Path {
        &self.path
    }

    fn take(&self) -> Result<Connection, StoreError> {
        if let Some(conn) = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop() {
            return Ok(conn);
        }
        let conn = Connection::open_with_flags(
            self.path.as_ref(),
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.set_prepared_statement_cache_capacity(crate::store::STATEMENT_CACHE);
        Ok(conn)
    }

    /// Runs `f` with a connection on the blocking pool.
    pub async fn with<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let me = self.clone();
        tokio::task::spawn_blocking(move || {
            let conn = me.take()?;
            let out = f(&conn);
            let mut idle = me.idle.lock().unwrap_or_else(|p| p.into_inner());
            if idle.len() < 8 {
                idle.push(conn);
            }
            out
        })
        .await
        .unwrap_or_else(|join| Err(StoreError::Internal(format!("reader task failed: {join}"))))
    }
}
