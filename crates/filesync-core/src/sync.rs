//! Coordination between engines: leader election (one engine per store syncs at a time).
//!
//! Natively [`FileLock`] holds an OS lock on a file in the store directory, so two processes
//! on one directory never both transfer, and the second takes over when the first exits or is
//! killed (the OS releases the lock). The browser issue adds Web Locks behind [`Leadership`].

use async_trait::async_trait;

use crate::Result;
use crate::rt::{MaybeSend, MaybeSync};

#[cfg(not(target_arch = "wasm32"))]
type Held = Box<dyn std::any::Any + Send + Sync>;
#[cfg(target_arch = "wasm32")]
type Held = Box<dyn std::any::Any>;

/// Proof of leadership: held while this engine is the leader, released on drop.
pub struct LeaderGuard {
    lost: Option<crate::rt::BoxFuture<'static, ()>>,
    _held: Held,
}

impl std::fmt::Debug for LeaderGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaderGuard").finish_non_exhaustive()
    }
}

impl LeaderGuard {
    /// A guard that keeps `held` alive and is never lost before it is dropped.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn new(held: impl std::any::Any + Send + Sync) -> Self {
        Self {
            lost: None,
            _held: Box::new(held),
        }
    }

    /// A guard whose leadership ends when `lost` completes (e.g. a lock the browser revoked).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn with_loss(
        held: impl std::any::Any + Send + Sync,
        lost: crate::rt::BoxFuture<'static, ()>,
    ) -> Self {
        Self {
            lost: Some(lost),
            _held: Box::new(held),
        }
    }

    /// A guard that keeps `held` alive and is never lost before it is dropped.
    #[cfg(target_arch = "wasm32")]
    pub fn new(held: impl std::any::Any) -> Self {
        Self {
            lost: None,
            _held: Box::new(held),
        }
    }

    /// A guard whose leadership ends when `lost` completes (e.g. a lock the browser revoked).
    #[cfg(target_arch = "wasm32")]
    pub fn with_loss(held: impl std::any::Any, lost: crate::rt::BoxFuture<'static, ()>) -> Self {
        Self {
            lost: Some(lost),
            _held: Box::new(held),
        }
    }

    /// Completes when leadership is lost; never, for locks that last until dropped.
    pub async fn lost(&mut self) {
        match self.lost.as_mut() {
            Some(f) => f.await,
            None => futures::future::pending().await,
        }
    }
}

/// Decides which engine of a store runs the sync loop (ENG-15..17, WEAK-13).
#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
pub trait Leadership: MaybeSend + MaybeSync + std::fmt::Debug + 'static {
    /// Wait until this engine is the leader.
    async fn acquire(&self) -> Result<LeaderGuard>;
}

/// Every engine is the leader: for a single engine per store (the default).
#[derive(Debug, Clone, Copy, Default)]
pub struct AlwaysLeader;

#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
impl Leadership for AlwaysLeader {
    async fn acquire(&self) -> Result<LeaderGuard> {
        Ok(LeaderGuard::new(()))
    }
}

#[cfg(not(target_arch = "wasm32"))]
pub use native::FileLock;

#[cfg(not(target_arch = "wasm32"))]
mod native {
    use std::path::PathBuf;
    use std::time::Duration;

    use async_trait::async_trait;

    use super::{LeaderGuard, Leadership};
    use crate::{Error, Result};

    /// Leadership through an exclusive OS lock (`flock`/`LockFileEx`) on a file, usually
    /// `<store dir>/filesync.lock`. Waiting engines poll every `poll` (default 250 ms).
    #[derive(Debug, Clone)]
    pub struct FileLock {
        path: PathBuf,
        poll: Duration,
    }

    impl FileLock {
        /// Lock `path` (created if missing).
        pub fn new(path: impl Into<PathBuf>) -> Self {
            Self {
                path: path.into(),
                poll: Duration::from_millis(250),
            }
        }

        /// How often a waiting engine retries.
        pub fn with_poll_interval(mut self, poll: Duration) -> Self {
            self.poll = poll;
            self
        }

        fn try_acquire(&self) -> Result<Option<std::fs::File>> {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&self.path)
                .map_err(|e| Error::io("open lock file", self.path.display(), e))?;
            match file.try_lock() {
                Ok(()) => Ok(Some(file)),
                Err(std::fs::TryLockError::WouldBlock) => Ok(None),
                Err(std::fs::TryLockError::Error(e)) => {
                    Err(Error::io("lock", self.path.display(), e))
                }
            }
        }
    }

    #[async_trait]
    impl Leadership for FileLock {
        async fn acquire(&self) -> Result<LeaderGuard> {
            loop {
                let this = self.clone();
                let got = crate::rt::spawn_blocking(move || this.try_acquire())
                    .await
                    .map_err(|e| Error::io("lock", self.path.display(), e))??;
                if let Some(file) = got {
                    tracing::debug!(path = %self.path.display(), "became leader");
                    return Ok(LeaderGuard::new(file));
                }
                crate::rt::sleep(self.poll).await;
            }
        }
    }
}
