//! Shared by the `filesync-core` integration tests: store ids, text inputs and waiting for a
//! condition here; engines, their disks and their events in [`engine`]; servers on loopback
//! HTTP, token grants and requests in [`http`], relay logs in [`relay`] (both feature `server`).
#![allow(dead_code)] // each test binary uses its own part
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::time::Duration;

use filesync_core::preprocess::FileInput;
use filesync_core::types::StoreId;

pub mod engine;
#[cfg(feature = "server")]
pub mod http;
#[cfg(feature = "server")]
pub mod relay;

/// The store id `name` (a valid one: tests name their stores).
pub fn store_id(name: &str) -> StoreId {
    StoreId::parse(name).unwrap()
}

/// A fresh temporary directory (removed when dropped) and the path `name` in it.
pub fn scratch_path(name: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    (dir, path)
}

/// A `text/plain` file named `name` holding `body`.
pub fn text(name: &str, body: &str) -> FileInput {
    FileInput::from_bytes(name, "text/plain", body.as_bytes().to_vec())
}

/// Wait (up to 10 s, checking every 10 ms) until `check` holds; panics naming `what` if it
/// never does.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = filesync_core::rt::Instant::now() + Duration::from_secs(10);
    while filesync_core::rt::Instant::now() < deadline {
        if check().await {
            return;
        }
        filesync_core::rt::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for: {what}");
}

/// Check `check` up to `tries` times, 10 ms apart: whether it held.
pub async fn within<F, Fut>(tries: usize, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..tries {
        if check().await {
            return true;
        }
        filesync_core::rt::sleep(Duration::from_millis(10)).await;
    }
    false
}
