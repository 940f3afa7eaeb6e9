//! The sync engine: follows the store's file events from the persisted cursor, keeps
//! `localFileState`, and moves bytes through [`RemoteStorage`] with the [`executor`].
//!
//! Users drive it through [`FileSync`](crate::api::FileSync); this module holds the machinery:
//! the event handlers (ENG-3..7), bootstrap (ENG-8/9), transfer handlers (ENG-12/13), start-up
//! recovery (ENG-18), the health loop and offline handling (NET-1..5), stream recovery (NET-6)
//! and the heartbeat (NET-7).

pub mod executor;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use tokio::sync::broadcast;

use crate::cas::{ContentStore, References};
use crate::events::{HeartbeatReason, RecoveryFrom, SyncEvent, TransferKind, TransferProgress};
use crate::fs::{ByteStream, FileSystem};
use crate::preprocess::Preprocessors;
use crate::remote::{RemoteStorage, UploadRequest};
use crate::rt::{self, Instant, Task};
use crate::schema::{
    Event, EventSeq, FileRecord, FileSyncCursor, FileSyncCursorSet, FileUpdated, LocalFileState,
    LocalFileStateRemove, MetadataJson, TransferStatus,
};
use crate::store::{Store, StoredEvent, subscribe};
use crate::types::{FileId, ObjectKey, StoreId, Timestamp};
use crate::{Error, Result};

use executor::{Executor, ExecutorConfig, RetryPolicy, TransferHandler};

/// Engine options, with the original's defaults (CFG-2, CFG-3). Every one is settable (WEAK-22).
#[derive(Debug, Clone)]
pub struct Options {
    /// Downloads at once (2).
    pub max_concurrent_downloads: usize,
    /// Uploads at once (2).
    pub max_concurrent_uploads: usize,
    /// How often the remote's health is probed (10 s).
    pub health_check_interval: Duration,
    /// `resolve_file_url` moves a queued download to the front (true).
    pub auto_prioritize_on_resolve: bool,
    /// How long `resolve_file_url` reuses a signed download URL for the same object instead
    /// of asking the signer again (60 s; zero disables). Keep it well under the server's URL
    /// lifetime (900 s by default) (WEAK-16).
    pub signed_url_reuse: Duration,
    /// Heartbeat period (15 s); zero disables it.
    pub heartbeat_interval: Duration,
    /// How long the stream may lag behind file events before it is restarted (30 s); zero disables.
    pub stream_stall_threshold: Duration,
    /// Stream attempts before giving up to the heartbeat (5).
    pub max_stream_recovery_attempts: u32,
    /// First stream-recovery delay (1 s), doubling.
    pub stream_recovery_base_delay: Duration,
    /// Cap of one stream-recovery delay (60 s).
    pub stream_recovery_max_delay: Duration,
    /// Total stream-recovery window (120 s).
    pub stream_recovery_window: Duration,
    /// Transfer retries: 1 s base, ×0.8–1.2 jitter, 5 retries, 60 s window.
    pub retry: RetryPolicy,
    /// Longest one transfer attempt may take (5 min).
    pub transfer_timeout: Duration,
    /// Directory the `FileSystem` is rooted at, to build `file://` URLs (API-9).
    pub local_path_root: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            max_concurrent_downloads: 2,
            max_concurrent_uploads: 2,
            health_check_interval: Duration::from_millis(10_000),
            auto_prioritize_on_resolve: true,
            signed_url_reuse: Duration::from_secs(60),
            heartbeat_interval: Duration::from_millis(15_000),
            stream_stall_threshold: Duration::from_millis(30_000),
            max_stream_recovery_attempts: 5,
            stream_recovery_base_delay: Duration::from_millis(1000),
            stream_recovery_max_delay: Duration::from_millis(60_000),
            stream_recovery_window: Duration::from_millis(120_000),
            retry: RetryPolicy::default(),
            transfer_timeout: Duration::from_secs(300),
            local_path_root: None,
        }
    }
}

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

/// Run `fut` on its own task and wait for it: if the caller is cancelled (an aborted
/// transfer), `fut` still finishes, so a state write never lands after the lock was released.
async fn uncancellable<T, F>(fut: F) -> Result<T>
where
    F: std::future::Future<Output = Result<T>> + rt::MaybeSend + 'static,
    T: rt::MaybeSend + 'static,
{
    let (tx, rx) = tokio::sync::oneshot::channel();
    drop(rt::spawn(async move {
        let _ = tx.send(fut.await);
    }));
    rx.await.unwrap_or(Err(Error::Shutdown))
}

/// ENG-5: a `queued` or `inProgress` status is kept; anything else takes the new value.
fn merge_status(old: TransferStatus, new: TransferStatus) -> TransferStatus {
    match old {
        TransferStatus::Queued | TransferStatus::InProgress => old,
        _ => new,
    }
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

struct Transfers(Weak<Engine>);

#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
impl TransferHandler for Transfers {
    async fn run(&self, kind: TransferKind, id: FileId) -> Result<()> {
        let engine = self.0.upgrade().ok_or(Error::Shutdown)?;
        engine.transfer(kind, &id).await
    }

    fn exhausted(&self, kind: TransferKind, id: FileId, error: Error) {
        if let Some(engine) = self.0.upgrade() {
            engine.emit(SyncEvent::TransferExhausted {
                kind,
                file_id: id,
                error: error.to_string(),
            });
        }
    }
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
                            error: e.to_string(),
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
                engine.set_leader(true);
                if let Err(e) = engine.run_sync_loop().await {
                    engine.emit(SyncEvent::SyncError {
                        error: e.to_string(),
                        context: Some("start".into()),
                    });
                }
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
        let mut changes = Vec::new();
        for (kind, id) in interrupted {
            if let Ok(Some(mut row)) = self.store.local_state(&id).await {
                let s = match kind {
                    TransferKind::Upload => &mut row.upload_status,
                    TransferKind::Download => &mut row.download_status,
                };
                if *s == TransferStatus::InProgress {
                    *s = TransferStatus::Queued;
                    changes.push(Event::LocalFileStateUpsert(row));
                }
            }
        }
        if !changes.is_empty()
            && let Err(e) = self.store.commit(changes).await
        {
            tracing::warn!(error = %e, "could not reset interrupted transfers");
        }
    }

    // ---- local state manager (ENG-1) -------------------------------------------------

    /// Hold this while reading a state row and writing it back.
    pub(crate) async fn lock_state(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.state_lock.lock().await
    }

    async fn put_state(&self, row: LocalFileState) -> Result<()> {
        self.store
            .commit(vec![Event::LocalFileStateUpsert(row)])
            .await
            .map(drop)
    }

    /// Change one status (and the error); a no-op when the row is missing (ENG-1).
    async fn set_status(
        &self,
        id: &FileId,
        kind: TransferKind,
        status: TransferStatus,
        error: Option<String>,
    ) -> Result<()> {
        let _guard = self.lock_state().await;
        let Some(mut row) = self.store.local_state(id).await? else {
            return Ok(());
        };
        match kind {
            TransferKind::Upload => row.upload_status = status,
            TransferKind::Download => row.download_status = status,
        }
        if let Some(e) = error {
            row.last_sync_error = e;
        }
        self.put_state(row).await
    }

    async fn remove_state(&self, id: &FileId) -> Result<()> {
        if self.store.local_state(id).await?.is_some() {
            self.store
                .commit(vec![Event::LocalFileStateRemove(LocalFileStateRemove {
                    file_id: id.clone(),
                })])
                .await?;
        }
        Ok(())
    }

    /// Release local content of `hash` unless a live record uses it (WEAK-6).
    pub(crate) async fn release_local(&self, record: &FileRecord) -> Result<()> {
        let refs = References::from_records(&self.store.files().await?);
        self.cas
            .release(&record.content_hash, &refs)
            .await
            .map(drop)
    }

    /// Owe the deletion of a remote object of `hash` unless a live record uses it (WEAK-6),
    /// and try it now. The debt is stored, so a delete lost to an outage or a crash is retried
    /// later (WEAK-7) rather than forgotten.
    pub(crate) async fn release_remote(&self, key: &ObjectKey, hash: &crate::types::ContentHash) {
        if self.remote.is_none() {
            return;
        }
        match self.store.files().await {
            Ok(files) if !References::from_records(&files).is_referenced(hash) => {}
            _ => return,
        }
        if let Err(e) = self.store.set_remote_delete(key, true).await {
            tracing::warn!(%key, error = %e, "could not record the remote delete");
        }
        self.drain_remote_deletes().await;
    }

    /// Perform owed remote deletes, skipping (and forgetting) objects a live record uses again.
    /// Stops at the first failure; the rest stays owed.
    pub(crate) async fn drain_remote_deletes(&self) {
        let Some(remote) = &self.remote else { return };
        let Ok(keys) = self.store.remote_deletes().await else {
            return;
        };
        if keys.is_empty() {
            return;
        }
        let Ok(files) = self.store.files().await else {
            return;
        };
        let refs = References::from_records(&files);
        for key in keys {
            let hash = key
                .as_str()
                .rsplit('/')
                .next()
                .and_then(|h| crate::types::ContentHash::parse(h).ok());
            if !hash.is_some_and(|h| refs.is_referenced(&h))
                && let Err(e) = remote.delete(&key).await
            {
                tracing::debug!(%key, error = %e, "remote delete failed; will retry");
                return;
            }
            if let Err(e) = self.store.set_remote_delete(&key, false).await {
                tracing::warn!(%key, error = %e, "could not clear the remote delete");
                return;
            }
        }
    }

    // ---- event handlers (ENG-3, ENG-4, ENG-6) -----------------------------------------

    /// The decision for one record: the state row to write (merged per ENG-5) and what to enqueue.
    async fn decide(
        &self,
        record: &FileRecord,
        current: Option<&LocalFileState>,
    ) -> Result<(Option<LocalFileState>, Option<TransferKind>, bool)> {
        // CAS content is verified when written, so "present" implies "hash equals" (ENG-2
        // without re-reading the file).
        let present = self.cas.contains(&record.content_hash).await?;
        let remove = || (None, None, current.is_some());
        let row = |local: bool, up: TransferStatus, down: TransferStatus| {
            let (up, down) = match current {
                Some(c) => (
                    merge_status(c.upload_status, up),
                    merge_status(c.download_status, down),
                ),
                None => (up, down),
            };
            LocalFileState {
                file_id: record.id.clone(),
                path: Some(record.path.clone()),
                local_hash: local.then_some(record.content_hash),
                download_status: down,
                upload_status: up,
                last_sync_error: String::new(),
            }
        };
        use TransferStatus::{Done, Queued};
        if self.remote.is_none() {
            return Ok(if present {
                (Some(row(true, Done, Done)), None, false)
            } else {
                remove()
            });
        }
        Ok(match (present, record.remote_key.is_some()) {
            // ENG-4 / ENG-9: absent bytes and no remote copy: nothing to do yet.
            (false, false) => (None, None, false),
            (false, true) => (
                Some(row(false, Done, Queued)),
                Some(TransferKind::Download),
                false,
            ),
            (true, false) => (
                Some(row(true, Queued, Done)),
                Some(TransferKind::Upload),
                false,
            ),
            (true, true) => (Some(row(true, Done, Done)), None, false),
        })
    }

    async fn apply_decision(
        &self,
        record: &FileRecord,
        decision: (Option<LocalFileState>, Option<TransferKind>, bool),
    ) -> Result<()> {
        let (row, enqueue, remove) = decision;
        if let Some(row) = row {
            self.put_state(row).await?;
        } else if remove {
            self.remove_state(&record.id).await?;
        }
        if let Some(kind) = enqueue {
            self.enqueue(kind, &record.id);
        }
        Ok(())
    }

    async fn on_file_event(&self, event: &Event) -> Result<()> {
        let Some(id) = event.file_id() else {
            return Ok(());
        };
        let Some(record) = self.store.file(id).await? else {
            return Ok(());
        };
        match event {
            Event::FileCreated(_) | Event::FileUpdated(_) => {
                if record.is_deleted() {
                    return Ok(());
                }
                let _guard = self.lock_state().await;
                let current = self.store.local_state(id).await?;
                // ENG-3: a creation whose bytes are absent changes nothing.
                if matches!(event, Event::FileCreated(_))
                    && !self.cas.contains(&record.content_hash).await?
                {
                    return Ok(());
                }
                let decision = self.decide(&record, current.as_ref()).await?;
                self.apply_decision(&record, decision).await
            }
            Event::FileDeleted(_) => self.on_deleted(&record).await,
            _ => Ok(()),
        }
    }

    /// ENG-6, WEAK-6: remove local content unless shared, cancel the download, drop the row.
    async fn on_deleted(&self, record: &FileRecord) -> Result<()> {
        self.release_local(record).await?;
        if let Some(exec) = self.executor() {
            exec.cancel_download(&record.id);
        }
        let _guard = self.lock_state().await;
        self.remove_state(&record.id).await
    }

    /// ENG-7: one batch of file events.
    async fn handle_batch(&self, batch: Vec<StoredEvent>) -> Result<()> {
        let Some(last) = batch.last().map(|e| e.seq) else {
            return Ok(());
        };
        self.emit(SyncEvent::SyncStart);
        for e in &batch {
            if let Err(err) = self.on_file_event(&e.event).await {
                self.emit(SyncEvent::SyncError {
                    error: err.to_string(),
                    context: Some(format!("event:{}", e.event.name())),
                });
            }
        }
        self.store
            .commit(vec![Event::FileSyncCursorSet(FileSyncCursorSet::global(
                FileSyncCursor {
                    last_event_sequence: last,
                    updated_at: Timestamp::now(),
                },
            ))])
            .await?;
        {
            let mut s = lock(&self.stream);
            s.last_batch = Some((Instant::now(), last));
        }
        self.emit(SyncEvent::SyncComplete);
        Ok(())
    }

    // ---- bootstrap and recovery (ENG-8, ENG-9, ENG-18) --------------------------------

    /// ENG-8: bootstrap when the cursor is the root or there are no state rows.
    pub(crate) async fn needs_bootstrap(&self) -> Result<bool> {
        Ok(self.store.cursor().await?.last_event_sequence.is_root()
            || self.store.local_states().await?.is_empty())
    }

    /// ENG-9: rebuild the state rows from every record in one commit, then set the cursor.
    pub(crate) async fn bootstrap(&self) -> Result<()> {
        let guard = self.lock_state().await;
        let head = self.store.head().await?;
        let records = self.store.files().await?;
        let states: BTreeMap<FileId, LocalFileState> = self
            .store
            .local_states()
            .await?
            .into_iter()
            .map(|s| (s.file_id.clone(), s))
            .collect();
        let refs = References::from_records(&records);
        let mut changes = Vec::new();
        let (mut uploads, mut downloads) = (Vec::new(), Vec::new());
        for record in &records {
            let current = states.get(&record.id);
            if record.is_deleted() {
                self.cas.release(&record.content_hash, &refs).await?;
                if let Some(exec) = self.executor() {
                    exec.cancel_download(&record.id);
                }
                if current.is_some() {
                    changes.push(Event::LocalFileStateRemove(LocalFileStateRemove {
                        file_id: record.id.clone(),
                    }));
                }
                continue;
            }
            let (row, enqueue, remove) = self.decide(record, current).await?;
            match row {
                Some(row) if Some(&row) != current => {
                    changes.push(Event::LocalFileStateUpsert(row));
                }
                Some(_) => {}
                None if remove => changes.push(Event::LocalFileStateRemove(LocalFileStateRemove {
                    file_id: record.id.clone(),
                })),
                None => {}
            }
            match enqueue {
                Some(TransferKind::Upload) => uploads.push(record.id.clone()),
                Some(TransferKind::Download) => downloads.push(record.id.clone()),
                None => {}
            }
        }
        changes.push(Event::FileSyncCursorSet(FileSyncCursorSet::global(
            FileSyncCursor {
                last_event_sequence: head,
                updated_at: Timestamp::now(),
            },
        )));
        self.store.commit(changes).await?;
        drop(guard);
        for id in &uploads {
            self.enqueue(TransferKind::Upload, id);
        }
        for id in &downloads {
            self.enqueue(TransferKind::Download, id);
        }
        Ok(())
    }

    /// ENG-18 with WEAK-11 fixed: every row left `inProgress`, `queued` or `error` is queued
    /// *and enqueued*. Local-only: every row becomes done/done.
    pub(crate) async fn recover(&self) -> Result<()> {
        let guard = self.lock_state().await;
        let rows = self.store.local_states().await?;
        let mut changes = Vec::new();
        let mut retried = Vec::new();
        let mut enqueue = Vec::new();
        for row in rows {
            let mut next = row.clone();
            if self.remote.is_none() {
                next.upload_status = TransferStatus::Done;
                next.download_status = TransferStatus::Done;
                next.last_sync_error.clear();
            } else {
                for (kind, status) in [
                    (TransferKind::Upload, &mut next.upload_status),
                    (TransferKind::Download, &mut next.download_status),
                ] {
                    match *status {
                        TransferStatus::InProgress | TransferStatus::Queued => {
                            *status = TransferStatus::Queued;
                            enqueue.push((kind, row.file_id.clone()));
                        }
                        TransferStatus::Error => {
                            *status = TransferStatus::Queued;
                            enqueue.push((kind, row.file_id.clone()));
                            if !retried.contains(&row.file_id) {
                                retried.push(row.file_id.clone());
                            }
                        }
                        _ => {}
                    }
                }
                if retried.contains(&row.file_id) {
                    next.last_sync_error.clear();
                }
            }
            if next != row {
                changes.push(Event::LocalFileStateUpsert(next));
            }
        }
        if !changes.is_empty() {
            self.store.commit(changes).await?;
        }
        drop(guard);
        for (kind, id) in enqueue {
            self.enqueue(kind, &id);
        }
        if !retried.is_empty() {
            self.emit(SyncEvent::ErrorRetryStart { file_ids: retried });
        }
        Ok(())
    }

    /// Re-enqueue every `queued` row (API-12, NET-1).
    /// Enqueue the rows marked `queued` that this engine's executor does not know: those a
    /// follower re-queued in the shared store (`retry_errors` in another tab or process;
    /// WEAK-13: the follower asks, the leader transfers). Leader only, from the heartbeat.
    async fn adopt_queued(&self) -> Result<()> {
        let Some(exec) = self.executor() else {
            return Ok(());
        };
        // Only once the stream has handled every file event: until then it enqueues new rows
        // itself, and adopting them first would race its handling of the same file.
        let cursor = self.store.cursor().await?.last_event_sequence;
        if self.store.head().await?.global != cursor.global {
            return Ok(());
        }
        for row in self.store.local_states().await? {
            for (kind, status) in [
                (TransferKind::Upload, row.upload_status),
                (TransferKind::Download, row.download_status),
            ] {
                if status == TransferStatus::Queued && !exec.knows(kind, &row.file_id) {
                    exec.enqueue(kind, row.file_id.clone());
                }
            }
        }
        Ok(())
    }

    pub(crate) async fn reenqueue_queued(&self) -> Result<()> {
        for row in self.store.local_states().await? {
            if row.upload_status == TransferStatus::Queued {
                self.enqueue(TransferKind::Upload, &row.file_id);
            }
            if row.download_status == TransferStatus::Queued {
                self.enqueue(TransferKind::Download, &row.file_id);
            }
        }
        Ok(())
    }

    // ---- transfers (ENG-12, ENG-13) ----------------------------------------------------

    fn progress_stream(
        &self,
        body: ByteStream,
        kind: TransferKind,
        id: &FileId,
        total: u64,
    ) -> ByteStream {
        let weak = self.self_ref.clone();
        let id = id.clone();
        let mut loaded = 0u64;
        rt::boxed_stream(body.inspect(move |chunk| {
            if let (Ok(chunk), Some(engine)) = (chunk, weak.upgrade()) {
                loaded += chunk.len() as u64;
                let progress = TransferProgress {
                    kind,
                    file_id: id.clone(),
                    status: "inProgress",
                    loaded,
                    total,
                };
                engine.emit(match kind {
                    TransferKind::Upload => SyncEvent::UploadProgress {
                        file_id: id.clone(),
                        progress,
                    },
                    TransferKind::Download => SyncEvent::DownloadProgress {
                        file_id: id.clone(),
                        progress,
                    },
                });
            }
        }))
    }

    /// NET-4: after a failed attempt, probe health; go offline only if the probe fails.
    async fn connectivity_check(&self) {
        if let Some(remote) = &self.remote
            && !remote.health().await
        {
            self.go_offline().await;
        }
    }

    /// One attempt of a transfer, with the bookkeeping around it (ENG-12, ENG-13): status
    /// `inProgress`, `*:start`, the attempt under a timeout, then `*:complete`, or status
    /// `error` with the message, `*:error` and a connectivity check (NET-4).
    async fn transfer(&self, kind: TransferKind, id: &FileId) -> Result<()> {
        let remote = self.remote.clone().ok_or(Error::Unsupported {
            what: "transfers in local-only mode",
        })?;
        self.set_status(id, kind, TransferStatus::InProgress, None)
            .await?;
        let file_id = id.clone();
        self.emit(match kind {
            TransferKind::Upload => SyncEvent::UploadStart { file_id },
            TransferKind::Download => SyncEvent::DownloadStart { file_id },
        });
        let attempt = async {
            match kind {
                TransferKind::Upload => self.upload_attempt(&*remote, id).await,
                TransferKind::Download => self.download_attempt(&*remote, id).await,
            }
        };
        let result = rt::timeout(self.options.transfer_timeout, attempt)
            .await
            .unwrap_or(Err(Error::Timeout { what: "transfer" }));
        let file_id = id.clone();
        let error = match result {
            Ok(()) => {
                self.emit(match kind {
                    TransferKind::Upload => SyncEvent::UploadComplete { file_id },
                    TransferKind::Download => SyncEvent::DownloadComplete { file_id },
                });
                return Ok(());
            }
            Err(error) => error,
        };
        if kind == TransferKind::Download {
            let record = self.store.file(id).await.ok().flatten();
            if record.as_ref().is_none_or(FileRecord::is_deleted) {
                // Deleted meanwhile: nothing to fetch any more, and not an error (ENG-12).
                let _guard = self.lock_state().await;
                let _ = self.remove_state(id).await;
                return Ok(());
            }
        }
        self.set_status(id, kind, TransferStatus::Error, Some(error.to_string()))
            .await?;
        let message = error.to_string();
        self.emit(match kind {
            TransferKind::Upload => SyncEvent::UploadError {
                file_id,
                error: message,
            },
            TransferKind::Download => SyncEvent::DownloadError {
                file_id,
                error: message,
            },
        });
        self.connectivity_check().await;
        Err(error)
    }

    async fn record(&self, id: &FileId) -> Result<FileRecord> {
        self.store
            .file(id)
            .await?
            .ok_or_else(|| Error::not_found(format_args!("file {id}")))
    }

    async fn download_attempt(&self, remote: &dyn RemoteStorage, id: &FileId) -> Result<()> {
        let record = self.record(id).await?;
        if record.is_deleted() {
            return Ok(()); // the failure path removes the row
        }
        let key = record
            .remote_key
            .clone()
            .ok_or_else(|| Error::not_found("remote URL: the file has not been uploaded"))?;
        let hash = record.content_hash;
        if !self.cas.contains(&hash).await? {
            let download = remote.download(&key).await?;
            let total = download.content_length.unwrap_or(0);
            let mime = download
                .content_type
                .clone()
                .or_else(|| record.metadata().and_then(|m| m.mime_type));
            let body = self.progress_stream(download.body, TransferKind::Download, id, total);
            // WEAK-5: only bytes that hash to the record's contentHash are accepted.
            let put = self
                .cas
                .import_verified(&hash, body, mime.as_deref())
                .await?;
            drop(put.pin);
        }
        // The bookkeeping runs to completion even if this transfer is aborted now (a cancel on
        // delete): a row written after the lock was given up could resurrect a deleted file.
        let engine = self.self_ref.upgrade().ok_or(Error::Shutdown)?;
        uncancellable(engine.finish_download(id.clone(), hash)).await
    }

    async fn finish_download(
        self: Arc<Self>,
        id: FileId,
        hash: crate::types::ContentHash,
    ) -> Result<()> {
        let id = &id;
        let _guard = self.lock_state().await;
        let now = self.store.file(id).await?;
        match now {
            Some(r) if !r.is_deleted() => {
                let current = r.content_hash == hash;
                self.put_state(LocalFileState {
                    file_id: id.clone(),
                    path: Some(r.path.clone()),
                    local_hash: Some(hash),
                    download_status: if current {
                        TransferStatus::Done
                    } else {
                        TransferStatus::Queued
                    },
                    upload_status: TransferStatus::Done,
                    last_sync_error: String::new(),
                })
                .await
            }
            Some(r) => {
                self.release_local(&r).await?;
                self.remove_state(id).await
            }
            None => self.remove_state(id).await,
        }
    }

    async fn upload_attempt(&self, remote: &dyn RemoteStorage, id: &FileId) -> Result<()> {
        let record = self.record(id).await?;
        if record.is_deleted() {
            let _guard = self.lock_state().await;
            return self.remove_state(id).await;
        }
        let hash = record.content_hash;
        let key = ObjectKey::for_content(&self.store_id, &hash);
        if record.remote_key.as_ref() != Some(&key) {
            let path = self.cas.path_of(&hash);
            let size = self
                .cas
                .fs()
                .stat(&path)
                .await?
                .ok_or_else(|| Error::not_found(format_args!("local content of file {id}")))?
                .len;
            let (body, sidecar) = self.cas.read(&hash).await?;
            let body = self.progress_stream(body, TransferKind::Upload, id, size);
            remote
                .upload(
                    UploadRequest {
                        key: key.clone(),
                        content_length: size,
                        content_type: sidecar.mime.clone(),
                        content_hash: hash,
                    },
                    body,
                )
                .await?;
        }
        let Some(now) = self.store.file(id).await?.filter(|r| !r.is_deleted()) else {
            // Deleted during the upload (TST-3): remove the object unless shared.
            self.release_remote(&key, &hash).await;
            let _guard = self.lock_state().await;
            return self.remove_state(id).await;
        };
        if now.content_hash != hash {
            // WEAK-12: the content changed meanwhile; never publish this key for the new hash.
            // The new content's own upload is queued by its FileUpdated.
            return Ok(());
        }
        if now.remote_key.as_ref() != Some(&key) {
            self.store
                .commit(vec![Event::FileUpdated(FileUpdated {
                    id: id.clone(),
                    path: now.path.clone(),
                    remote_key: Some(key),
                    content_hash: hash,
                    metadata_json: MetadataJson::from_row_value(now.metadata_json.clone()),
                    updated_at: Timestamp::now(),
                })])
                .await?;
        }
        let engine = self.self_ref.upgrade().ok_or(Error::Shutdown)?;
        let id = id.clone();
        uncancellable(async move {
            let _guard = engine.lock_state().await;
            if let Some(mut row) = engine.store.local_state(&id).await? {
                row.upload_status = TransferStatus::Done;
                row.last_sync_error.clear();
                engine.put_state(row).await?;
            }
            Ok(())
        })
        .await
    }

    // ---- online / offline (NET-1..5) ---------------------------------------------------

    /// NET-3: go offline (only if online): pause and reset `inProgress` rows to `queued`.
    pub(crate) async fn go_offline(&self) {
        if self.remote.is_none() || !self.online.swap(false, Ordering::AcqRel) {
            return;
        }
        self.emit(SyncEvent::Offline);
        if let Some(exec) = self.executor() {
            exec.pause();
        }
        let _guard = self.lock_state().await;
        let Ok(rows) = self.store.local_states().await else {
            return;
        };
        let changes: Vec<Event> = rows
            .into_iter()
            .filter(|r| {
                r.upload_status == TransferStatus::InProgress
                    || r.download_status == TransferStatus::InProgress
            })
            .map(|mut r| {
                for s in [&mut r.upload_status, &mut r.download_status] {
                    if *s == TransferStatus::InProgress {
                        *s = TransferStatus::Queued;
                    }
                }
                Event::LocalFileStateUpsert(r)
            })
            .collect();
        if !changes.is_empty()
            && let Err(e) = self.store.commit(changes).await
        {
            tracing::warn!(error = %e, "could not reset in-progress rows");
        }
    }

    /// NET-1: offline → healthy: online, resume, re-enqueue every queued row.
    pub(crate) async fn come_online(&self) {
        if self.online.swap(true, Ordering::AcqRel) {
            return;
        }
        self.emit(SyncEvent::Online);
        if let Some(exec) = self.executor() {
            exec.resume();
        }
        if let Err(e) = self.reenqueue_queued().await {
            tracing::warn!(error = %e, "could not re-enqueue queued rows");
        }
    }

    async fn health_tick(&self) {
        let Some(remote) = &self.remote else { return };
        if remote.health().await {
            self.come_online().await;
            self.drain_remote_deletes().await;
        } else {
            self.go_offline().await;
        }
    }

    // ---- the sync loop, stream recovery and heartbeat (ENG-16, NET-6, NET-7) ----------

    /// ENG-16: start syncing as the leader.
    pub(crate) async fn run_sync_loop(self: &Arc<Self>) -> Result<()> {
        self.recover().await?;
        if let Some(exec) = self.executor() {
            if self.is_online() {
                exec.resume();
            } else {
                exec.pause();
            }
        }
        if self.needs_bootstrap().await?
            && let Err(e) = self.bootstrap().await
        {
            self.emit(SyncEvent::SyncError {
                error: e.to_string(),
                context: Some("bootstrap".into()),
            });
        }
        self.start_stream();
        if self.remote.is_some() {
            self.every(self.options.health_check_interval, |e| async move {
                e.health_tick().await;
            });
        }
        if let Some(relay) = self.relay.clone() {
            let weak = Arc::downgrade(self);
            self.spawn_leader_task(async move {
                Engine::exchange_loop(weak, relay).await;
            });
        }
        if !self.options.heartbeat_interval.is_zero() {
            self.every(self.options.heartbeat_interval, |e| async move {
                e.heartbeat_tick().await;
            });
        }
        Ok(())
    }

    /// Start (or restart) the event stream from the stored cursor (ENG-10).
    pub(crate) fn start_stream(self: &Arc<Self>) {
        // Only the leader follows the log (ENG-19): a follower's state is the leader's to write.
        if self.stopped.load(Ordering::Acquire) || !self.is_leader() {
            return;
        }
        if lock(&self.stream)
            .task
            .as_ref()
            .is_some_and(|t| !t.is_finished())
        {
            self.stream_restart.notify_one();
            return;
        }
        let weak = Arc::downgrade(self);
        let task = rt::spawn(async move {
            if let Some(engine) = weak.upgrade() {
                engine.stream_loop().await;
            }
        });
        let old = lock(&self.stream).task.replace(task);
        if let Some(old) = old {
            old.abort();
        }
    }

    fn stream_delay(&self, attempt: u32) -> Duration {
        let base = self
            .options
            .stream_recovery_base_delay
            .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1)))
            .min(self.options.stream_recovery_max_delay);
        let jitter = RetryPolicy {
            base_delay: base,
            jitter: 0.2,
            ..RetryPolicy::default()
        };
        jitter.jittered(0)
    }

    /// NET-6: follow the stream; on errors retry with backoff, then give up to the heartbeat.
    async fn stream_loop(self: Arc<Self>) {
        let mut window_start: Option<Instant> = None;
        loop {
            let cursor = match self.store.cursor().await {
                Ok(c) => c.last_event_sequence,
                Err(e) => {
                    self.emit(SyncEvent::SyncError {
                        error: e.to_string(),
                        context: Some("stream-start".into()),
                    });
                    return;
                }
            };
            let epoch = self.rebase_epoch.load(Ordering::Acquire);
            let mut stream = subscribe(Arc::clone(&self.store), cursor);
            let error = loop {
                let next = {
                    let restart = std::pin::pin!(self.stream_restart.notified());
                    match futures::future::select(stream.next(), restart).await {
                        futures::future::Either::Left((next, _)) => Some(next),
                        futures::future::Either::Right(((), _)) => None,
                    }
                };
                let Some(next) = next else {
                    // Restart requested (rebase, trigger_sync, stall): follow from the cursor.
                    break None;
                };
                match next {
                    None => return,
                    Some(Ok(batch)) => {
                        if self.stream_attempts.swap(0, Ordering::AcqRel) > 0 {
                            window_start = None;
                            self.emit(SyncEvent::Recovery {
                                from: RecoveryFrom::StreamError,
                            });
                        }
                        let gate = self.batch_gate.lock().await;
                        if self.rebase_epoch.load(Ordering::Acquire) != epoch {
                            // The log was rebased after this batch was read: its numbers are
                            // stale. Follow the log again from the (rewound) cursor.
                            drop(gate);
                            break None;
                        }
                        let handled = self.handle_batch(batch).await;
                        drop(gate);
                        if let Err(e) = handled {
                            self.emit(SyncEvent::SyncError {
                                error: e.to_string(),
                                context: Some("event-batch".into()),
                            });
                            break Some(e);
                        }
                    }
                    Some(Err(e)) => break Some(e),
                }
            };
            let Some(error) = error else {
                continue;
            };
            let attempt = self.stream_attempts.fetch_add(1, Ordering::AcqRel) + 1;
            self.emit(SyncEvent::StreamError {
                error: error.to_string(),
                attempt,
            });
            let started = *window_start.get_or_insert_with(Instant::now);
            let delay = self.stream_delay(attempt);
            if attempt >= self.options.max_stream_recovery_attempts
                || Instant::now().duration_since(started) + delay
                    > self.options.stream_recovery_window
            {
                self.emit(SyncEvent::StreamExhausted {
                    error: error.to_string(),
                    attempts: attempt,
                });
                // The heartbeat sees the finished task and restarts the stream.
                return;
            }
            rt::sleep(delay).await;
        }
    }

    /// NET-7 (leader only): restart a dead or stalled stream, unstick a stuck queue. Stall
    /// detection compares with the head of *file* events only (WEAK-10).
    async fn heartbeat_tick(self: &Arc<Self>) {
        if self.is_online()
            && let Err(e) = self.adopt_queued().await
        {
            tracing::debug!(error = %e, "adopting queued rows failed");
        }
        if self.stopped.load(Ordering::Acquire) {
            return;
        }
        let dead = lock(&self.stream)
            .task
            .as_ref()
            .is_none_or(Task::is_finished);
        if dead {
            self.emit(SyncEvent::HeartbeatRecovery {
                reason: HeartbeatReason::StreamDead,
            });
            self.stream_attempts.store(0, Ordering::Release);
            self.start_stream();
            return;
        }
        if let Some(exec) = self.executor() {
            let s = exec.stats();
            let stuck = self.is_online()
                && !s.paused
                && s.queued_uploads + s.queued_downloads > 0
                && s.inflight_uploads + s.inflight_downloads == 0;
            let fire = {
                let mut st = lock(&self.stream);
                st.stuck_ticks = if stuck { st.stuck_ticks + 1 } else { 0 };
                if st.stuck_ticks >= 2 {
                    st.stuck_ticks = 0;
                    true
                } else {
                    false
                }
            };
            if fire {
                self.emit(SyncEvent::HeartbeatRecovery {
                    reason: HeartbeatReason::StuckQueue,
                });
                exec.resume();
            }
        }
        let threshold = self.options.stream_stall_threshold;
        let last = lock(&self.stream).last_batch;
        if !threshold.is_zero()
            && self.is_online()
            && let Some((at, cursor)) = last
            && Instant::now().duration_since(at) >= threshold
            && let Ok(head) = self.store.head().await
            && head.global != cursor.global
        {
            self.emit(SyncEvent::HeartbeatRecovery {
                reason: HeartbeatReason::StreamStalled,
            });
            self.start_stream();
        }
    }

    // ---- event exchange with other devices ---------------------------------------------

    /// Push local events and pull remote ones through the relay, rebasing on conflicts. Never
    /// loses or duplicates an event across a crash: a push whose answer was lost is
    /// recognised when its own events come back in a pull.
    async fn exchange_loop(weak: Weak<Engine>, relay: Arc<dyn crate::sync::EventExchange>) {
        let session = FileId::random().to_string();
        let mut failures = 0u32;
        loop {
            let Some(engine) = weak.upgrade() else { return };
            let step = engine.exchange_step(&*relay, &session).await;
            let wait = match step {
                Ok(true) => {
                    failures = 0;
                    continue;
                }
                Ok(false) => {
                    failures = 0;
                    None
                }
                Err(e) => {
                    failures += 1;
                    tracing::debug!(error = %e, failures, "event exchange failed");
                    // Retried with backoff either way (a token may be fixed on the server),
                    // but say whether retrying the same request can help.
                    engine.emit(SyncEvent::SyncError {
                        error: e.to_string(),
                        context: Some(
                            if e.is_retryable() {
                                "relay"
                            } else {
                                "relay:refused"
                            }
                            .into(),
                        ),
                    });
                    Some(engine.options.retry.jittered(failures.min(6) - 1))
                }
            };
            let store = Arc::clone(&engine.store);
            let store_id = engine.store_id.clone();
            drop(engine);
            match wait {
                Some(delay) => rt::sleep(delay).await,
                None => {
                    let confirmed = store.confirmed().await.map(|c| c.global).unwrap_or(0);
                    let mut local = store.watch();
                    local.borrow_and_update();
                    let pending = store.head().await.map(|h| h.global).unwrap_or(0) > confirmed;
                    if pending {
                        continue;
                    }
                    let remote = relay.wait(&store_id, confirmed, Duration::from_secs(25));
                    let remote = std::pin::pin!(remote);
                    let local = std::pin::pin!(local.changed());
                    let _ = futures::future::select(remote, local).await;
                }
            }
        }
    }

    /// One round: pull (and apply) remote events, else push pending ones. Returns whether it
    /// made progress.
    async fn exchange_step(
        self: &Arc<Self>,
        relay: &dyn crate::sync::EventExchange,
        session: &str,
    ) -> Result<bool> {
        use crate::sync::{PushOutcome, RelayEvent};
        let client = self.store.client_id().await?;
        let confirmed = self.store.confirmed().await?;
        let pulled = relay.pull(&self.store_id, confirmed.global, 500).await?;
        if !pulled.is_empty() {
            for (i, e) in pulled.iter().enumerate() {
                if e.seq_num != confirmed.global + 1 + i as u64 {
                    return Err(Error::Conflict {
                        reason: format!("relay sent {} after {}", e.seq_num, confirmed),
                    });
                }
            }
            // Our own events coming back (a push whose answer was lost) only confirm them.
            let pending = self.store.events_after(confirmed, pulled.len()).await?;
            let own = pulled
                .iter()
                .zip(&pending)
                .take_while(|(r, p)| r.client_id == client && r.event == p.event)
                .count();
            if own > 0 {
                self.store
                    .confirm(EventSeq::global(confirmed.global + own as u64))
                    .await?;
            }
            let foreign: Vec<Event> = pulled.into_iter().skip(own).map(|e| e.event).collect();
            if !foreign.is_empty() {
                let gate = self.batch_gate.lock().await;
                let rebased = self.store.apply_remote(foreign).await?;
                if rebased {
                    self.rebase_epoch.fetch_add(1, Ordering::AcqRel);
                }
                drop(gate);
                if rebased {
                    // Pending events were renumbered: follow the log again from the rewound cursor.
                    self.start_stream();
                }
            }
            return Ok(true);
        }
        let pending = self.store.events_after(confirmed, 500).await?;
        if pending.is_empty() {
            return Ok(false);
        }
        let last = pending.last().map_or(confirmed, |e| e.seq);
        let batch: Vec<RelayEvent> = pending
            .into_iter()
            .map(|e| RelayEvent {
                seq_num: e.seq.global,
                parent_seq_num: e.seq.global - 1,
                event: e.event,
                client_id: client.clone(),
                session_id: session.to_owned(),
            })
            .collect();
        match relay.push(&self.store_id, batch).await? {
            PushOutcome::Accepted { .. } => self.store.confirm(last).await?,
            PushOutcome::ServerAhead { .. } => {} // the next round pulls and rebases
        }
        Ok(true)
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
