//! Coordination between engines: leader election (one engine per store syncs at a time).
//!
//! Natively [`FileLock`] holds an OS lock on a file in the store directory, so two processes
//! on one directory never both transfer, and the second takes over when the first exits or is
//! killed (the OS releases the lock). In the browser `WebLock` uses the Web Locks API: one tab
//! (or worker) of an origin leads, and the next takes over as soon as it closes.

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
#[cfg(target_arch = "wasm32")]
pub use web::WebLock;

#[cfg(target_arch = "wasm32")]
mod web {
    use async_trait::async_trait;
    use futures::FutureExt;
    use futures::channel::oneshot;
    use wasm_bindgen::JsCast;
    use wasm_bindgen::prelude::*;

    use super::{LeaderGuard, Leadership};
    use crate::{Error, Result};

    /// Leadership across the tabs and workers of one origin through the Web Locks API
    /// (`navigator.locks.request(name, cb)`, WEAK-13): the lock is held until the guard is
    /// dropped or the tab goes away, and the browser grants it to the next waiter at once.
    /// Found through `globalThis`, so it works on a page and in a worker.
    #[derive(Debug, Clone)]
    pub struct WebLock {
        name: String,
    }

    impl WebLock {
        /// A lock named `name`, usually `filesync:<store id>`.
        pub fn new(name: impl Into<String>) -> Self {
            Self { name: name.into() }
        }

        /// The lock's name.
        pub fn name(&self) -> &str {
            &self.name
        }
    }

    fn js_err(what: &str, e: JsValue) -> Error {
        Error::Io {
            op: "web lock",
            path: what.to_owned(),
            source: std::io::Error::other(format!("{e:?}")),
        }
    }

    #[async_trait(?Send)]
    impl Leadership for WebLock {
        async fn acquire(&self) -> Result<LeaderGuard> {
            let locks = js_sys::Reflect::get(&js_sys::global(), &"navigator".into())
                .and_then(|n| js_sys::Reflect::get(&n, &"locks".into()))
                .map_err(|e| js_err("navigator.locks", e))?;
            if locks.is_undefined() {
                return Err(Error::Unsupported {
                    what: "the Web Locks API (navigator.locks)",
                });
            }
            let request: js_sys::Function = js_sys::Reflect::get(&locks, &"request".into())
                .map_err(|e| js_err("navigator.locks.request", e))?
                .dyn_into()
                .map_err(|e| js_err("navigator.locks.request", e))?;
            let (granted_tx, granted_rx) = oneshot::channel::<()>();
            let (release_tx, release_rx) = oneshot::channel::<()>();
            // Called when the lock is granted; the lock is held until the promise it returns
            // settles, which is when the guard drops `release_tx`.
            let callback = Closure::once_into_js(move |_lock: JsValue| -> js_sys::Promise {
                let _ = granted_tx.send(());
                wasm_bindgen_futures::future_to_promise(async move {
                    let _ = release_rx.await;
                    Ok(JsValue::UNDEFINED)
                })
            });
            let held = request
                .call2(&locks, &JsValue::from_str(&self.name), &callback)
                .map_err(|e| js_err(&self.name, e))?;
            let held: js_sys::Promise = held.dyn_into().map_err(|e| js_err(&self.name, e))?;
            // Settles when the lock is released or taken away (`steal`): leadership is lost.
            let lost = wasm_bindgen_futures::JsFuture::from(held)
                .map(drop)
                .boxed_local();
            granted_rx.await.map_err(|_| Error::Io {
                op: "web lock",
                path: self.name.clone(),
                source: std::io::Error::other("the lock request ended before it was granted"),
            })?;
            tracing::debug!(name = %self.name, "became leader (web lock)");
            Ok(LeaderGuard::with_loss(release_tx, lost))
        }
    }
}

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

// ---- event exchange ------------------------------------------------------------------

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use crate::contract::{PushOutcome, RelayEvent};

mod http;
use crate::Error;
use crate::contract::{AppendDecision, decide_append};
use crate::types::StoreId;
pub use http::HttpRelay;

/// Moves events between devices through a relay that totally orders each store's events.
/// `HttpRelay` talks to a relay server; [`MemoryRelay`] is the in-process one.
#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
pub trait EventExchange: MaybeSend + MaybeSync + std::fmt::Debug + 'static {
    /// Append a batch whose first `parentSeqNum` must be the relay's head.
    async fn push(&self, store: &StoreId, batch: Vec<RelayEvent>) -> Result<PushOutcome>;
    /// Events after position `after`, in order, at most `limit`.
    async fn pull(&self, store: &StoreId, after: u64, limit: usize) -> Result<Vec<RelayEvent>>;
    /// Return when the relay has events after `after`, or after `max` at the latest.
    async fn wait(&self, store: &StoreId, after: u64, max: Duration) -> Result<()>;
}

#[derive(Debug, Default)]
struct RelayLogs {
    logs: HashMap<StoreId, Vec<RelayEvent>>,
    heads: HashMap<StoreId, tokio::sync::watch::Sender<u64>>,
}

/// An in-process relay: one shared log per store. [`MemoryRelay::handle`] gives each client its
/// own connection with its own offline switch, for tests of partitions.
#[derive(Debug, Clone, Default)]
pub struct MemoryRelay {
    logs: Arc<Mutex<RelayLogs>>,
    offline: Arc<AtomicBool>,
}

impl MemoryRelay {
    /// An empty relay.
    pub fn new() -> Self {
        Self::default()
    }

    /// Another connection to the same relay, with its own offline switch.
    pub fn handle(&self) -> Self {
        Self {
            logs: Arc::clone(&self.logs),
            offline: Arc::default(),
        }
    }

    /// Cut this connection off (every call fails) or restore it.
    pub fn set_offline(&self, offline: bool) {
        self.offline.store(offline, Ordering::Release);
    }

    /// The events stored for `store`.
    pub fn log(&self, store: &StoreId) -> Vec<RelayEvent> {
        self.lock().logs.get(store).cloned().unwrap_or_default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, RelayLogs> {
        self.logs.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn check(&self) -> Result<()> {
        if self.offline.load(Ordering::Acquire) {
            return Err(Error::Remote {
                what: "relay unreachable (offline)".into(),
                status: None,
                retryable: true,
                source: None,
            });
        }
        Ok(())
    }

    fn head_rx(&self, store: &StoreId) -> tokio::sync::watch::Receiver<u64> {
        let mut logs = self.lock();
        let head = logs.logs.get(store).map_or(0, |l| l.len() as u64);
        logs.heads
            .entry(store.clone())
            .or_insert_with(|| tokio::sync::watch::channel(head).0)
            .subscribe()
    }
}

#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
impl EventExchange for MemoryRelay {
    async fn push(&self, store: &StoreId, batch: Vec<RelayEvent>) -> Result<PushOutcome> {
        self.check()?;
        let mut logs = self.lock();
        let log = logs.logs.entry(store.clone()).or_default();
        let head = log.len() as u64;
        match decide_append(head, &batch, |seq| {
            Ok(seq
                .checked_sub(1)
                .and_then(|i| log.get(i as usize).cloned()))
        })? {
            AppendDecision::Append => {}
            AppendDecision::Done(outcome) => return Ok(outcome),
        }
        log.extend(batch);
        let head = log.len() as u64;
        if let Some(tx) = logs.heads.get(store) {
            tx.send_replace(head);
        } else {
            logs.heads
                .insert(store.clone(), tokio::sync::watch::channel(head).0);
        }
        Ok(PushOutcome::Accepted { head })
    }

    async fn pull(&self, store: &StoreId, after: u64, limit: usize) -> Result<Vec<RelayEvent>> {
        self.check()?;
        let logs = self.lock();
        Ok(logs
            .logs
            .get(store)
            .map(|l| l.iter().skip(after as usize).take(limit).cloned().collect())
            .unwrap_or_default())
    }

    async fn wait(&self, store: &StoreId, after: u64, max: Duration) -> Result<()> {
        self.check()?;
        let mut rx = self.head_rx(store);
        let _ = crate::rt::timeout(max, rx.wait_for(|h| *h > after)).await;
        Ok(())
    }
}
