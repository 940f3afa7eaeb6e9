//! Relay event logs in tests.

use std::path::Path;
use std::sync::Arc;

use filesync_core::server::SqliteEventLog;

/// The SQLite event log `relay.sqlite` in `dir`.
pub async fn open_log(dir: &Path) -> SqliteEventLog {
    SqliteEventLog::open(dir.join("relay.sqlite"))
        .await
        .unwrap()
}

/// An SQLite event log in a fresh temporary directory, removed when the directory is dropped.
pub async fn scratch_log() -> (tempfile::TempDir, Arc<SqliteEventLog>) {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(open_log(dir.path()).await);
    (dir, log)
}
