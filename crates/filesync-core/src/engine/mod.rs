//! The sync engine: follows the store's file events from the persisted cursor, keeps
//! `localFileState`, and moves bytes through [`RemoteStorage`] with the [`executor`].
//!
//! Users drive it through [`FileSync`](crate::api::FileSync); this module holds the machinery,
//! one file per concern, each adding methods to the one [`Engine`]:
//! - `mod.rs`: the `Engine` struct, construction, leadership (`lead`, `step_down`), task
//!   spawning and `shutdown`;
//! - [`options`]: [`Options`] and [`RetryPolicy`] (public, re-exported at the crate root);
//! - [`backoff`]: [`Backoff`](backoff::Backoff), the one retry-delay schedule;
//! - [`state`]: the local state manager (ENG-1), `lock_state`, owed remote deletes;
//! - [`handlers`]: the event handlers (ENG-3..7);
//! - [`bootstrap`]: bootstrap (ENG-8/9), start-up recovery (ENG-18), re-enqueueing;
//! - [`transfers`]: the transfer handlers (ENG-12/13) the [`executor`] runs;
//! - [`connectivity`]: the health loop and offline handling (NET-1..5);
//! - [`stream`]: the sync loop (ENG-16), stream recovery (NET-6) and the heartbeat (NET-7);
//! - [`exchange`]: the event exchange with the relay.

mod backoff;
mod bootstrap;
mod connectivity;
mod exchange;
pub(crate) mod executor;
mod handlers;
mod options;
mod state;
mod stream;
mod transfers;

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::broadcast;

use crate::cas::ContentStore;
use crate::events::{SyncEvent, TransferKind};
use crate::fs::FileSystem;
use crate::preprocess::Preprocessors;
use crate::remote::RemoteStorage;
use crate::rt::{self, Instant, Task};
use crate::schema::EventSeq;
use crate::store::Store;
use crate::types::{FileId, StoreId};

use executor::{Executor, ExecutorConfig};
pub use options::{Options, RetryPolicy};
use transfers::Transfers;

#[derive(Default)]
struct StreamState {
    task: Option<Task>,
    last_batch: Option<(Instant, EventSeq)>,
    stuck_ticks: u32,
}

/// Shared engine state. `FileSync` holds it; background tasks hold weak references.
pub(crate) struct Engine {
    pub(crate) store_id: StoreId,
    pub(crate) cas: ContentStore,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) remote: Option<Arc<dyn RemoteStorage>>,
    pub(crate) relay: Option<Arc<dyn crate::sync::EventExchange>>,
    pub(crate) options: Options,
    pub(crate) preprocessors: Preprocessors,
    pub(crate) events: broadcast::Sender<SyncEvent>,
    pub(crate) executor: Mutex<Option<Arc<Executor>>>,
    online: AtomicBool,
    stopped: AtomicBool,
    /// Whether this engine currently holds leadership (always, without a `Leadership`).
    leader: AtomicBool,
    stream: Mutex<StreamState>,
    stream_attempts: AtomicU32,
    /// Asks the running stream to re-subscribe from the stored cursor at its next batch
    /// boundary (never aborting a handler half-way, whose commit could land late).
    stream_restart: tokio::sync::Notify,
    /// Held while a batch is handled and while remote events are applied, so a rebase never
    /// happens in the middle of a batch.
    batch_gate: tokio::sync::Mutex<()>,
    /// Bumped (under `batch_gate`) by every rebase: a batch read before it is stale.
    rebase_epoch: std::sync::atomic::AtomicU64,
    /// Serialises read-modify-write of `localFileState` rows between the event handlers and
    /// the transfer tasks, so one never overwrites the other's newer status.
    state_lock: tokio::sync::Mutex<()>,
    tasks: Mutex<Vec<Task>>,
    /// Files whose next upload must send the bytes even though the record says they are
    /// uploaded: their object may have been deleted by a device that did not know they
    /// share its content (see `verify_uploaded`).
    pub(crate) reupload: Mutex<std::collections::BTreeSet<FileId>>,
    /// Tasks that run only while this engine is the leader (health loop, heartbeat).
    leader_tasks: Mutex<Vec<Task>>,
    self_ref: Weak<Engine>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("store_id", &self.store_id)
            .field("remote", &self.remote)
            .field("online", &self.is_online())
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Keep `task` in `list`, dropping the handles of tasks that have finished.
fn track(list: &Mutex<Vec<Task>>, task: Task) {
    let mut tasks = lock(list);
    tasks.retain(|t| !t.is_finished());
    tasks.push(task);
}

/// Everything an engine is made of; assembled by the builder.
pub(crate) struct EngineParts {
    pub(crate) store_id: StoreId,
    pub(crate) fs: Arc<dyn FileSystem>,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) remote: Option<Arc<dyn RemoteStorage>>,
    pub(crate) relay: Option<Arc<dyn crate::sync::EventExchange>>,
    pub(crate) options: Options,
    pub(crate) preprocessors: Preprocessors,
    pub(crate) events: broadcast::Sender<SyncEvent>,
}

impl Engine {
    pub(crate) fn new(parts: EngineParts) -> Arc<Self> {
        let EngineParts {
            store_id,
            fs,
            store,
            remote,
            relay,
            options,
            preprocessors,
            events,
        } = parts;
        let engine = Arc::new_cyclic(|weak: &Weak<Engine>| Engine {
            cas: ContentStore::new(fs, store_id.clone()),
            store_id,
            store,
            remote,
            relay,
            preprocessors,
            events,
            executor: Mutex::new(None),
            online: AtomicBool::new(true),
            stopped: AtomicBool::new(false),
            leader: AtomicBool::new(false),
            stream: Mutex::default(),
            stream_attempts: AtomicU32::new(0),
            stream_restart: tokio::sync::Notify::new(),
            batch_gate: tokio::sync::Mutex::new(()),
            rebase_epoch: std::sync::atomic::AtomicU64::new(0),
            state_lock: tokio::sync::Mutex::new(()),
            tasks: Mutex::default(),
            reupload: Mutex::default(),
            leader_tasks: Mutex::default(),
            self_ref: weak.clone(),
            options,
        });
        if engine.remote.is_some() {
            let config = ExecutorConfig {
                max_concurrent_uploads: engine.options.max_concurrent_uploads,
                max_concurrent_downloads: engine.options.max_concurrent_downloads,
                retry: engine.options.retry,
                // A backstop: the handlers time their attempts out themselves (so a hung
                // attempt is recorded as an error like any other failure).
                transfer_timeout: engine.options.transfer_timeout.saturating_mul(2),
                jitter_seed: engine.options.jitter_seed,
            };
            let exec = Executor::start(Arc::new(Transfers(Arc::downgrade(&engine))), config);
            exec.pause(); // until the sync loop has recovered state (ENG-16)
            *lock(&engine.executor) = Some(exec);
        }
        engine
    }

    pub(crate) fn emit(&self, event: SyncEvent) {
        tracing::trace!(event = event.kind(), "filesync event");
        let _ = self.events.send(event);
    }

    pub(crate) fn is_leader(&self) -> bool {
        self.leader.load(Ordering::Acquire)
    }

    pub(crate) fn set_leader(&self, leader: bool) {
        self.leader.store(leader, Ordering::Release);
    }

    pub(crate) fn is_online(&self) -> bool {
        self.remote.is_none() || self.online.load(Ordering::Acquire)
    }

    pub(crate) fn executor(&self) -> Option<Arc<Executor>> {
        lock(&self.executor).clone()
    }

    /// The last event this engine's own stream handled, if any yet.
    pub(crate) fn handled_up_to(&self) -> Option<EventSeq> {
        lock(&self.stream).last_batch.map(|(_, seq)| seq)
    }

    fn enqueue(&self, kind: TransferKind, id: &FileId) {
        if let Some(exec) = self.executor() {
            exec.enqueue(kind, id.clone());
        }
    }

    /// Spawn a task that `shutdown` stops.
    pub(crate) fn spawn_task(
        &self,
        fut: impl std::future::Future<Output = ()> + rt::MaybeSend + 'static,
    ) {
        track(&self.tasks, rt::spawn(fut));
    }

    /// Spawn a task that `step_down` (and `shutdown`) stops.
    fn spawn_leader_task(
        &self,
        fut: impl std::future::Future<Output = ()> + rt::MaybeSend + 'static,
    ) {
        track(&self.leader_tasks, rt::spawn(fut));
    }

    /// Run `tick` every `period` while this engine leads (and exists).
    fn every<F, Fut>(self: &Arc<Self>, period: Duration, tick: F)
    where
        F: Fn(Arc<Engine>) -> Fut + rt::MaybeSend + 'static,
        Fut: std::future::Future<Output = ()> + rt::MaybeSend + 'static,
    {
        let weak = Arc::downgrade(self);
        self.spawn_leader_task(async move {
            let mut ticks = rt::interval(period);
            while ticks.next().await.is_some() {
                let Some(engine) = weak.upgrade() else { return };
                tick(engine).await;
            }
        });
    }

    /// Run as the leader whenever `leadership` grants it (ENG-16), and step down when it is
    /// lost (ENG-17). Runs until shutdown.
    pub(crate) async fn lead(weak: Weak<Engine>, leadership: Arc<dyn crate::sync::Leadership>) {
        loop {
            let mut guard = match leadership.acquire().await {
                Ok(g) => g,
                Err(e) => {
                    if let Some(engine) = weak.upgrade() {
                        engine.emit(SyncEvent::SyncError {
                            error: e.report(),
                            context: Some("start".into()),
                        });
                    }
                    rt::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            {
                let Some(engine) = weak.upgrade() else { return };
                if engine.stopped.load(Ordering::Acquire) {
                    return;
                }
                // A failed start was reported; the next heartbeat or leadership retries it.
                let _ = engine.start_leading().await;
            }
            guard.lost().await;
            let Some(engine) = weak.upgrade() else { return };
            engine.step_down().await;
        }
    }

    /// ENG-17: pause, interrupt in-flight transfers and reset them to `queued`, stop the stream
    /// and the leader-only loops.
    pub(crate) async fn step_down(&self) {
        self.set_leader(false);
        let tasks: Vec<Task> = lock(&self.leader_tasks).drain(..).collect();
        for t in tasks {
            t.shutdown().await;
        }
        if let Some(t) = lock(&self.stream).task.take() {
            t.abort();
        }
        let Some(exec) = self.executor() else { return };
        exec.pause();
        let interrupted = exec.interrupt_inflight();
        let _guard = self.lock_state().await;
        let mut rows = Vec::new();
        for (kind, id) in interrupted {
            if let Ok(Some(row)) = self.store.local_state(&id).await {
                rows.push((row, Some(kind)));
            }
        }
        self.requeue_in_progress(rows, "reset interrupted transfers")
            .await;
    }

    /// Stop every task and transfer this engine started.
    pub(crate) async fn shutdown(&self) {
        if self.stopped.swap(true, Ordering::AcqRel) {
            return;
        }
        let stream = lock(&self.stream).task.take();
        if let Some(t) = stream {
            t.shutdown().await;
        }
        let tasks: Vec<Task> = lock(&self.tasks)
            .drain(..)
            .chain(lock(&self.leader_tasks).drain(..))
            .collect();
        for t in tasks {
            t.shutdown().await;
        }
        let exec = lock(&self.executor).take();
        if let Some(exec) = exec {
            exec.shutdown().await;
        }
    }
}
