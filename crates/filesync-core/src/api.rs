//! The facade: [`FileSync`], built with [`FileSync::builder`].

use std::collections::HashMap;
use std::sync::Arc;

use futures::Stream;

use crate::engine::{Engine, EngineParts, Options};
use crate::events::{SyncEvent, TransferKind};
use crate::fs::{ByteStream, FileSystem};
use crate::preprocess::{FileInput, Preprocessor, Preprocessors, named_metadata};
use crate::remote::RemoteStorage;
use crate::rt;
use crate::schema::{
    Event, FileCreated, FileDeleted, FileRecord, FileUpdated, LocalFileState, LocalFileStateRemove,
    MetadataJson, TransferStatus,
};
use crate::store::Store;
use crate::types::{ContentHash, FileId, LocalPath, ObjectKey, StoreId, Timestamp};
use crate::{Error, Result};

/// What `save_file` and `update_file` return (API-3, API-4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaveResult {
    /// The file's id.
    pub file_id: FileId,
    /// Where its bytes are: `livestore-filesync-files/<storeId>/<hash>`.
    pub path: LocalPath,
    /// SHA-256 of the stored bytes.
    pub content_hash: ContentHash,
}

/// A file's content as `read_file` returns it (API-6).
pub struct FileContent {
    /// The bytes.
    pub body: ByteStream,
    /// The MIME type from the sidecar (`application/octet-stream` when unknown).
    pub mime_type: String,
    /// The size in bytes.
    pub size: u64,
    /// The content hash (the original's `File.name`).
    pub content_hash: ContentHash,
}

impl std::fmt::Debug for FileContent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileContent")
            .field("mime_type", &self.mime_type)
            .field("size", &self.size)
            .field("content_hash", &self.content_hash)
            .finish_non_exhaustive()
    }
}

/// Where a file can be displayed from (API-7, API-8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileUrl {
    /// The local copy: a `file://` URL when `local_path_root` is set (API-9), else the path
    /// relative to the filesystem root.
    Local(String),
    /// A signed, short-lived URL of the remote copy.
    Remote(String),
}

/// One live file, as [`FileSync::list_files`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FileEntry {
    /// The file's id.
    pub id: FileId,
    /// The name it was saved under (`metadataJson`'s `name`), if known.
    pub name: Option<String>,
    /// Its MIME type (`metadataJson`'s `mimeType`), if known.
    pub mime_type: Option<String>,
    /// Its size in bytes (`metadataJson`'s `sizeBytes`), if known.
    pub size: Option<u64>,
    /// SHA-256 of its current content.
    pub content_hash: ContentHash,
    /// When it was created.
    pub created_at: Timestamp,
    /// When it last changed.
    pub updated_at: Timestamp,
    /// Whether it can be shown, and what is moving (API-24).
    pub display: DisplayState,
}

impl FileEntry {
    fn new(record: FileRecord, state: Option<LocalFileState>) -> Self {
        let meta = record.metadata().unwrap_or_default();
        Self {
            id: record.id.clone(),
            name: meta.name,
            mime_type: meta.mime_type,
            size: meta.size_bytes,
            content_hash: record.content_hash,
            created_at: record.created_at,
            updated_at: record.updated_at,
            display: DisplayState::new(record, state),
        }
    }
}

/// A change to a file, from [`FileSync::changes`]: made here, by another engine or process on
/// the same store (another tab, another `filesync` command), or by another device.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FileChange {
    /// A new file.
    Created(FileId),
    /// New content.
    Updated(FileId),
    /// Its content reached the remote (the record now has its remote key).
    Uploaded(FileId),
    /// Deleted.
    Deleted(FileId),
}

impl FileChange {
    /// The file concerned.
    pub fn id(&self) -> &FileId {
        match self {
            Self::Created(id) | Self::Updated(id) | Self::Uploaded(id) | Self::Deleted(id) => id,
        }
    }
}

/// What [`FileSync::changes`] remembers of a row to tell what changed.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    hash: ContentHash,
    uploaded: bool,
    deleted: bool,
}

type Snapshot = std::collections::BTreeMap<FileId, Seen>;

async fn snapshot(store: &dyn Store) -> Result<Snapshot> {
    Ok(store
        .files()
        .await?
        .into_iter()
        .map(|f| {
            let seen = Seen {
                hash: f.content_hash,
                uploaded: f.remote_key.is_some(),
                deleted: f.is_deleted(),
            };
            (f.id, seen)
        })
        .collect())
}

/// The changes from `old` to `new`, in id order.
fn diff(old: &Snapshot, new: &Snapshot) -> Vec<FileChange> {
    let mut out = Vec::new();
    for (id, now) in new {
        let change = match old.get(id) {
            None if now.deleted => None,
            None => Some(FileChange::Created(id.clone())),
            Some(before) if now.deleted && !before.deleted => Some(FileChange::Deleted(id.clone())),
            Some(before) if now.deleted || before.deleted => None,
            Some(before) if before.hash != now.hash => Some(FileChange::Updated(id.clone())),
            Some(before) if now.uploaded && !before.uploaded => {
                Some(FileChange::Uploaded(id.clone()))
            }
            Some(_) => None,
        };
        out.extend(change);
    }
    out
}

/// `getFileDisplayState` (API-24).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisplayState {
    /// The record.
    pub file: FileRecord,
    /// Its state row, if any.
    pub local_state: Option<LocalFileState>,
    /// `has_local_copy || is_uploaded`.
    pub can_display: bool,
    /// The local bytes are the record's current content.
    pub has_local_copy: bool,
    /// `remoteKey` is set.
    pub is_uploaded: bool,
    /// Upload `inProgress`.
    pub is_uploading: bool,
    /// Download `inProgress`.
    pub is_downloading: bool,
    /// Upload `queued`.
    pub is_upload_queued: bool,
    /// Download `queued`.
    pub is_download_queued: bool,
}

impl DisplayState {
    /// API-24, from a record and its state row.
    pub fn new(file: FileRecord, local_state: Option<LocalFileState>) -> Self {
        let has_local_copy = local_state
            .as_ref()
            .and_then(|s| s.local_hash)
            .is_some_and(|h| h == file.content_hash);
        let is_uploaded = file.remote_key.is_some();
        let st = |f: fn(&LocalFileState) -> TransferStatus, want| {
            local_state.as_ref().is_some_and(|s| f(s) == want)
        };
        Self {
            can_display: has_local_copy || is_uploaded,
            has_local_copy,
            is_uploaded,
            is_uploading: st(|s| s.upload_status, TransferStatus::InProgress),
            is_downloading: st(|s| s.download_status, TransferStatus::InProgress),
            is_upload_queued: st(|s| s.upload_status, TransferStatus::Queued),
            is_download_queued: st(|s| s.download_status, TransferStatus::Queued),
            file,
            local_state,
        }
    }
}

/// Builds a [`FileSync`]. Required parts are arguments of [`FileSync::builder`].
pub struct FileSyncBuilder {
    store_id: StoreId,
    fs: Arc<dyn FileSystem>,
    store: Arc<dyn Store>,
    remote: Option<Arc<dyn RemoteStorage>>,
    options: Options,
    preprocessors: Preprocessors,
    leadership: Option<Arc<dyn crate::sync::Leadership>>,
    relay: Option<Arc<dyn crate::sync::EventExchange>>,
    events: tokio::sync::broadcast::Sender<SyncEvent>,
}

/// The stream behind `events()`: skips what a slow consumer missed.
fn event_stream(
    rx: tokio::sync::broadcast::Receiver<SyncEvent>,
) -> impl Stream<Item = SyncEvent> + Send + 'static {
    futures::stream::unfold(rx, |mut rx| async move {
        loop {
            match rx.recv().await {
                Ok(ev) => return Some((ev, rx)),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            }
        }
    })
}

impl std::fmt::Debug for FileSyncBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileSyncBuilder")
            .field("store_id", &self.store_id)
            .field("remote", &self.remote)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl FileSyncBuilder {
    /// Sync through this remote storage. Without it, the engine runs local-only (CFG-4).
    pub fn with_remote(mut self, remote: Arc<dyn RemoteStorage>) -> Self {
        self.remote = Some(remote);
        self
    }

    /// Engine options (defaults: [`Options::default`]).
    pub fn with_options(mut self, options: Options) -> Self {
        self.options = options;
        self
    }

    /// Events from the start on, including those emitted while [`start`](Self::start) runs
    /// recovery and bootstrap (e.g. `sync:error-retry-start`).
    pub fn events(&self) -> impl Stream<Item = SyncEvent> + Send + 'static + use<> {
        event_stream(self.events.subscribe())
    }

    /// Exchange file events with other devices through this relay (the leader pushes local
    /// events, pulls remote ones and rebases). Without it, events stay in the local store.
    pub fn with_relay(mut self, relay: Arc<dyn crate::sync::EventExchange>) -> Self {
        self.relay = Some(relay);
        self
    }

    /// Elect one leader among engines of the same store (e.g. [`crate::sync::FileLock`] on
    /// the store directory). Only the leader follows events, probes health and transfers;
    /// every engine can save, update and delete. Without it, this engine always leads.
    pub fn with_leadership(mut self, leadership: Arc<dyn crate::sync::Leadership>) -> Self {
        self.leadership = Some(leadership);
        self
    }

    /// Add a preprocessor for a MIME pattern (`image/png`, `image/*`, `*`, `*/*`).
    pub fn with_preprocessor(mut self, pattern: &str, p: Arc<dyn Preprocessor>) -> Self {
        self.preprocessors.insert(pattern, p);
        self
    }

    /// Validate the options and start the engine: recovery, bootstrap if needed, the event
    /// stream, and in remote mode the transfer workers, health loop and heartbeat.
    pub async fn start(self) -> Result<FileSync> {
        let o = &self.options;
        if o.max_concurrent_uploads == 0 || o.max_concurrent_downloads == 0 {
            return Err(Error::invalid(
                "options",
                "concurrency limits must be at least 1",
            ));
        }
        if o.health_check_interval.is_zero() || o.transfer_timeout.is_zero() {
            return Err(Error::invalid(
                "options",
                "health_check_interval and transfer_timeout must be positive",
            ));
        }
        if o.max_stream_recovery_attempts == 0 {
            return Err(Error::invalid(
                "options",
                "max_stream_recovery_attempts must be at least 1",
            ));
        }
        let engine = Engine::new(EngineParts {
            store_id: self.store_id,
            fs: self.fs,
            store: self.store,
            remote: self.remote,
            relay: self.relay,
            options: self.options,
            preprocessors: self.preprocessors,
            events: self.events,
        });
        match self.leadership {
            None => {
                if let Err(e) = engine.start_leading().await {
                    engine.shutdown().await;
                    return Err(e);
                }
            }
            Some(leadership) => {
                engine.spawn_task(Engine::lead(Arc::downgrade(&engine), leadership));
            }
        }
        Ok(FileSync {
            engine,
            signed_urls: Default::default(),
            #[cfg(target_arch = "wasm32")]
            object_urls: Default::default(),
        })
    }
}

/// Local-first file sync for one store: the handle users call. Cheap to clone.
///
/// Saving writes locally and commits events before any network work; the engine uploads,
/// downloads and deletes in the background. Call [`shutdown`](Self::shutdown) to stop every
/// task it started.
#[derive(Debug, Clone)]
pub struct FileSync {
    engine: Arc<Engine>,
    /// Signed download URLs by object key, with when they were signed (WEAK-16).
    signed_urls: Arc<std::sync::Mutex<HashMap<ObjectKey, (String, rt::Instant)>>>,
    #[cfg(target_arch = "wasm32")]
    object_urls: object_urls::ObjectUrls,
}

impl FileSync {
    /// Start building: the store id (sanitised into paths and keys), the local filesystem and
    /// the event store.
    pub fn builder(
        store_id: StoreId,
        fs: Arc<dyn FileSystem>,
        store: Arc<dyn Store>,
    ) -> FileSyncBuilder {
        FileSyncBuilder {
            store_id,
            fs,
            store,
            remote: None,
            options: Options::default(),
            preprocessors: Preprocessors::default(),
            leadership: None,
            relay: None,
            events: tokio::sync::broadcast::channel(4096).0,
        }
    }

    fn state_row(&self, id: &FileId, hash: ContentHash, path: &LocalPath) -> LocalFileState {
        let remote = self.engine.remote.is_some();
        LocalFileState {
            file_id: id.clone(),
            path: Some(path.clone()),
            local_hash: Some(hash),
            download_status: TransferStatus::Done,
            upload_status: if remote {
                TransferStatus::Queued
            } else {
                TransferStatus::Done
            },
            last_sync_error: String::new(),
        }
    }

    /// Save a new file (API-3): preprocess, stream into the content store (hashed while
    /// written), then commit `v1.FileCreated` and the state row in one commit. Returns before
    /// any network work; the engine uploads in the background.
    pub async fn save_file(&self, file: FileInput) -> Result<SaveResult> {
        let processed = self.engine.preprocessors.apply(file).await?;
        let mime = processed.file.mime_type.clone();
        let name = processed.file.name.clone();
        let put = self
            .engine
            .cas
            .put(processed.file.body, Some(&mime))
            .await?;
        let metadata_json = named_metadata(processed.metadata, &name, &mime, put.size);
        let id = FileId::random();
        let now = Timestamp::now();
        self.engine
            .store
            .commit(vec![
                Event::FileCreated(FileCreated {
                    id: id.clone(),
                    path: put.path.clone(),
                    content_hash: put.hash,
                    metadata_json: MetadataJson::from_row_value(metadata_json),
                    created_at: now,
                    updated_at: now,
                }),
                Event::LocalFileStateUpsert(self.state_row(&id, put.hash, &put.path)),
            ])
            .await?;
        Ok(SaveResult {
            file_id: id,
            path: put.path,
            content_hash: put.hash,
        })
    }

    /// Replace a file's content (API-4). Unchanged content writes nothing. Old content is
    /// removed locally and remotely only when no other file uses it (WEAK-6).
    pub async fn update_file(&self, id: &FileId, file: FileInput) -> Result<SaveResult> {
        let record = self
            .engine
            .store
            .file(id)
            .await?
            .ok_or_else(|| Error::not_found(format_args!("file {id}")))?;
        let processed = self.engine.preprocessors.apply(file).await?;
        let mime = processed.file.mime_type.clone();
        let name = processed.file.name.clone();
        let put = self
            .engine
            .cas
            .put(processed.file.body, Some(&mime))
            .await?;
        if put.hash == record.content_hash {
            return Ok(SaveResult {
                file_id: id.clone(),
                path: record.path,
                content_hash: record.content_hash,
            });
        }
        let metadata_json = named_metadata(processed.metadata, &name, &mime, put.size);
        if let Some(key) = &record.remote_key {
            self.engine.owe_remote_delete(key).await?;
        }
        self.engine
            .store
            .commit(vec![
                Event::FileUpdated(FileUpdated {
                    id: id.clone(),
                    path: put.path.clone(),
                    remote_key: None,
                    content_hash: put.hash,
                    metadata_json: MetadataJson::from_row_value(metadata_json),
                    updated_at: Timestamp::now(),
                }),
                Event::LocalFileStateUpsert(self.state_row(id, put.hash, &put.path)),
            ])
            .await?;
        drop(put.pin);
        if let Err(e) = self.engine.release_local(&record).await {
            tracing::warn!(%id, error = %e, "could not remove the old local content");
        }
        if let Some(key) = &record.remote_key {
            self.engine.release_remote(key, &record.content_hash).await;
        }
        Ok(SaveResult {
            file_id: id.clone(),
            path: put.path,
            content_hash: put.hash,
        })
    }

    /// Delete a file (API-5): soft-delete the record, drop its state, and remove its local and
    /// remote content unless another file uses it. Unknown ids are a no-op.
    pub async fn delete_file(&self, id: &FileId) -> Result<()> {
        let Some(record) = self.engine.store.file(id).await? else {
            return Ok(());
        };
        if let Some(exec) = self.engine.executor() {
            exec.cancel_download(id);
        }
        let mut events = vec![Event::FileDeleted(FileDeleted {
            id: id.clone(),
            deleted_at: Timestamp::now(),
        })];
        if self.engine.store.local_state(id).await?.is_some() {
            events.push(Event::LocalFileStateRemove(LocalFileStateRemove {
                file_id: id.clone(),
            }));
        }
        if let Some(key) = &record.remote_key {
            self.engine.owe_remote_delete(key).await?;
        }
        self.engine.store.commit(events).await?;
        if let Err(e) = self.engine.release_local(&record).await {
            tracing::warn!(%id, error = %e, "could not remove local content");
        }
        if let Some(key) = &record.remote_key {
            self.engine.release_remote(key, &record.content_hash).await;
        }
        Ok(())
    }

    /// Read a file's local content (API-6). [`Error::NotFound`] if the record or its local
    /// bytes are missing.
    pub async fn read_file(&self, id: &FileId) -> Result<FileContent> {
        let record = self
            .engine
            .store
            .file(id)
            .await?
            .ok_or_else(|| Error::not_found(format_args!("file {id}")))?;
        let size = self
            .engine
            .cas
            .fs()
            .stat(&record.path)
            .await?
            .map(|s| s.len)
            .unwrap_or(0);
        let (body, sidecar) = self.engine.cas.read(&record.content_hash).await?;
        Ok(FileContent {
            body,
            mime_type: sidecar.mime_type().to_owned(),
            size,
            content_hash: record.content_hash,
        })
    }

    /// The local URL of stored content, or `None` if it is not here (API-7, API-9).
    pub async fn file_url(&self, path: &LocalPath) -> Result<Option<String>> {
        use crate::fs::FileSystemExt;
        if !self.engine.cas.fs().exists(path).await? {
            return Ok(None);
        }
        Ok(Some(match &self.engine.options.local_path_root {
            Some(root) => file_url(root, path),
            None => path.to_string(),
        }))
    }

    /// Where to display a file from (API-8): the local copy if present, else (remote mode) a
    /// signed URL, prioritising its download on the way (EXE-6). `None` without a record or
    /// any copy.
    pub async fn resolve_file_url(&self, id: &FileId) -> Result<Option<FileUrl>> {
        let engine = &self.engine;
        let Some(record) = engine.store.file(id).await? else {
            return Ok(None);
        };
        #[cfg(target_arch = "wasm32")]
        if engine.cas.contains(&record.content_hash).await? {
            // An object URL of the local copy, one per content, revoked once the content is
            // gone (WEAK-16).
            self.object_urls.sweep(&engine.cas).await;
            let mime = record.metadata().and_then(|m| m.mime_type);
            let url = self
                .object_urls
                .get_or_create(&engine.cas, &record.content_hash, mime.as_deref())
                .await?;
            return Ok(Some(FileUrl::Local(url)));
        }
        #[cfg(not(target_arch = "wasm32"))]
        if engine.cas.contains(&record.content_hash).await?
            && let Some(url) = self
                .file_url(&engine.cas.path_of(&record.content_hash))
                .await?
        {
            return Ok(Some(FileUrl::Local(url)));
        }
        let Some(remote) = &engine.remote else {
            return Ok(None);
        };
        if engine.options.auto_prioritize_on_resolve
            && let Some(exec) = engine.executor()
        {
            let state = engine.store.local_state(id).await?;
            if state.is_some_and(|s| {
                matches!(
                    s.download_status,
                    TransferStatus::Pending | TransferStatus::Queued
                )
            }) {
                exec.prioritize_download(id);
            }
        }
        let Some(key) = &record.remote_key else {
            return Ok(None);
        };
        let reuse = engine.options.signed_url_reuse;
        let signed_urls = || self.signed_urls.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((url, at)) = signed_urls().get(key)
            && at.elapsed() < reuse
        {
            return Ok(Some(FileUrl::Remote(url.clone())));
        }
        let url = remote.download_url(key).await?;
        if !reuse.is_zero() {
            let mut urls = signed_urls();
            urls.retain(|_, (_, at)| at.elapsed() < reuse);
            urls.insert(key.clone(), (url.clone(), rt::Instant::now()));
        }
        Ok(Some(FileUrl::Remote(url)))
    }

    /// API-24 for one file; `None` if there is no record.
    pub async fn file_display_state(&self, id: &FileId) -> Result<Option<DisplayState>> {
        let Some(record) = self.engine.store.file(id).await? else {
            return Ok(None);
        };
        let state = self.engine.store.local_state(id).await?;
        Ok(Some(DisplayState::new(record, state)))
    }

    /// Every live (not deleted) file with its name, size, type and display state, oldest
    /// first.
    pub async fn list_files(&self) -> Result<Vec<FileEntry>> {
        let store = &self.engine.store;
        let mut states: std::collections::BTreeMap<FileId, LocalFileState> = store
            .local_states()
            .await?
            .into_iter()
            .map(|s| (s.file_id.clone(), s))
            .collect();
        let mut files: Vec<FileEntry> = store
            .files()
            .await?
            .into_iter()
            .filter(|f| !f.is_deleted())
            .map(|f| {
                let state = states.remove(&f.id);
                FileEntry::new(f, state)
            })
            .collect();
        files.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(files)
    }

    /// Files created, updated, uploaded and deleted from now on, whoever committed them: this
    /// engine, another engine or process on the same store (commits through another
    /// connection are seen within [`store::POLL_INTERVAL`](crate::store::POLL_INTERVAL)), or
    /// another device (once the relay's events are applied). Changes that happen in quick
    /// succession may be reported once (created and deleted in between: not at all). Each
    /// wake-up compares the `files` table with the last one seen, so it costs one read of
    /// the table per batch of commits. A store error ends nothing: it is yielded and the stream
    /// goes on.
    pub async fn changes(&self) -> Result<rt::BoxStream<'static, Result<FileChange>>> {
        use futures::StreamExt;
        let store = Arc::clone(&self.engine.store);
        let seen = snapshot(&*store).await?;
        let head = store.head().await?;
        let batches = crate::store::subscribe(Arc::clone(&store), head);
        let stream = futures::stream::unfold(
            (store, seen, batches, std::collections::VecDeque::new()),
            |(store, mut seen, mut batches, mut ready)| async move {
                loop {
                    if let Some(change) = ready.pop_front() {
                        return Some((Ok(change), (store, seen, batches, ready)));
                    }
                    match batches.next().await? {
                        Err(e) => return Some((Err(e), (store, seen, batches, ready))),
                        Ok(_) => match snapshot(&*store).await {
                            Ok(now) => {
                                ready.extend(diff(&seen, &now));
                                seen = now;
                            }
                            Err(e) => return Some((Err(e), (store, seen, batches, ready))),
                        },
                    }
                }
            },
        );
        Ok(rt::boxed_stream(stream))
    }

    /// Move a queued download to the front (API-10). No-op in local-only mode.
    pub fn prioritize_download(&self, id: &FileId) {
        if let Some(exec) = self.engine.executor() {
            exec.prioritize_download(id);
        }
    }

    /// Re-enqueue every queued row and restart the event stream from the cursor (API-12).
    /// A no-op on an engine that does not lead (ENG-19): the leader does the syncing.
    pub async fn trigger_sync(&self) -> Result<()> {
        if !self.engine.is_leader() {
            return Ok(());
        }
        if self.engine.remote.is_some() {
            self.engine.reenqueue_queued().await?;
        }
        self.engine.start_stream();
        Ok(())
    }

    /// Re-queue every failed transfer (API-13); returns the ids. `[]` in local-only mode. On a
    /// follower the rows are re-queued in the shared store and the leader transfers them at
    /// its next heartbeat (WEAK-13: never two engines transferring the same file).
    pub async fn retry_errors(&self) -> Result<Vec<FileId>> {
        let Some(exec) = self.engine.executor() else {
            return Ok(Vec::new());
        };
        let guard = self.engine.lock_state().await;
        let mut ids = Vec::new();
        let mut changes = Vec::new();
        let mut enqueue = Vec::new();
        for mut row in self.engine.store.local_states().await? {
            let mut touched = false;
            if row.upload_status == TransferStatus::Error {
                row.upload_status = TransferStatus::Queued;
                enqueue.push((TransferKind::Upload, row.file_id.clone()));
                touched = true;
            }
            if row.download_status == TransferStatus::Error {
                row.download_status = TransferStatus::Queued;
                enqueue.push((TransferKind::Download, row.file_id.clone()));
                touched = true;
            }
            if touched {
                ids.push(row.file_id.clone());
                changes.push(Event::LocalFileStateUpsert(row));
            }
        }
        if !changes.is_empty() {
            self.engine.store.commit(changes).await?;
        }
        drop(guard);
        if self.engine.is_leader() {
            for (kind, id) in enqueue {
                exec.enqueue(kind, id);
            }
        }
        if !ids.is_empty() {
            self.engine.emit(SyncEvent::Recovery {
                from: crate::events::RecoveryFrom::ErrorRetry,
            });
        }
        Ok(ids)
    }

    /// `getSyncStatus` over every state row (API-22).
    pub async fn sync_status(&self) -> Result<crate::status::SyncStatus> {
        Ok(crate::status::SyncStatus::from_states(
            &self.engine.store.local_states().await?,
        ))
    }

    /// Whether the remote was reachable at the last probe (API-11); always true local-only.
    pub fn is_online(&self) -> bool {
        self.engine.is_online()
    }

    /// Whether this engine is the leader of its store now: the one that follows events,
    /// transfers and exchanges with the relay (ENG-15..17). Others only save and read.
    pub fn is_leader(&self) -> bool {
        self.engine.is_leader()
    }

    /// Wait until the engine has processed every file event in the store and no transfer is
    /// queued or running.
    pub async fn await_idle(&self) {
        loop {
            if let Some(exec) = self.engine.executor() {
                exec.await_idle().await;
            }
            let caught_up = match (
                self.engine.store.cursor().await,
                self.engine.store.head().await,
            ) {
                // The shared cursor, or this engine's own progress: several engines on one
                // store without a leadership each write the cursor, and a slower one can
                // write an older position after this one handled the last event.
                (Ok(c), Ok(h)) => {
                    c.last_event_sequence.global >= h.global
                        || self
                            .engine
                            .handled_up_to()
                            .is_some_and(|seq| seq.global >= h.global)
                }
                _ => true, // a store error: nothing to wait for that could end
            };
            let idle = self.engine.executor().is_none_or(|e| {
                let s = e.stats();
                s.queued_uploads + s.queued_downloads + s.inflight_uploads + s.inflight_downloads
                    == 0
            });
            if caught_up && idle {
                return;
            }
            crate::rt::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    /// Every event from now on (EVT-1..10). A slow consumer that falls more than 4096 events
    /// behind skips the oldest.
    pub fn events(&self) -> impl Stream<Item = SyncEvent> + Send + 'static + use<> {
        event_stream(self.engine.events.subscribe())
    }

    /// The store this instance syncs.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.engine.store
    }

    /// Collect garbage now: local content, sidecars and temporary files that no live file
    /// uses and that are older than [`Options::orphan_grace`](crate::Options::orphan_grace),
    /// then the remote deletes still owed. The leader also does this when it starts.
    pub async fn collect_garbage(&self) -> Result<crate::cas::GcReport> {
        self.engine.collect_garbage().await
    }

    /// Stop every task and transfer this instance started. Idempotent.
    pub async fn shutdown(&self) {
        self.engine.shutdown().await;
        #[cfg(target_arch = "wasm32")]
        self.object_urls.revoke_all();
    }

    /// In the browser: revoke an object URL [`resolve_file_url`](Self::resolve_file_url)
    /// returned, once nothing displays it any more (they are also revoked when their content
    /// is gone and on [`shutdown`](Self::shutdown)). Unknown URLs are ignored.
    #[cfg(target_arch = "wasm32")]
    pub fn revoke_file_url(&self, url: &str) {
        self.object_urls.revoke(url);
    }

    /// In the browser: how many object URLs are live (for tests and diagnostics).
    #[cfg(target_arch = "wasm32")]
    pub fn live_object_urls(&self) -> usize {
        self.object_urls.len()
    }
}

#[cfg(target_arch = "wasm32")]
mod object_urls {
    use std::cell::RefCell;
    use std::collections::HashMap;
    use std::rc::Rc;

    use crate::cas::ContentStore;
    use crate::types::ContentHash;
    use crate::{Error, Result};

    /// Object URLs of local content, one per content hash, so resolving a file again reuses
    /// its URL instead of leaking a new one. Clones of a `FileSync` share them.
    #[derive(Debug, Default, Clone)]
    pub(super) struct ObjectUrls(Rc<RefCell<HashMap<ContentHash, String>>>);

    fn js(what: &'static str, e: wasm_bindgen::JsValue) -> Error {
        Error::Io {
            op: what,
            path: String::new(),
            source: std::io::Error::other(format!("{e:?}")),
        }
    }

    impl ObjectUrls {
        pub(super) async fn get_or_create(
            &self,
            cas: &ContentStore,
            hash: &ContentHash,
            mime: Option<&str>,
        ) -> Result<String> {
            if let Some(url) = self.0.borrow().get(hash) {
                return Ok(url.clone());
            }
            let path = cas.path_of(hash);
            let blob = match cas.fs().blob(&path).await? {
                Some(blob) => blob,
                None => {
                    let bytes = crate::fs::FileSystemExt::read_bytes(&**cas.fs(), &path).await?;
                    let parts = js_sys::Array::of1(&js_sys::Uint8Array::from(&bytes[..]));
                    let options = web_sys::BlobPropertyBag::new();
                    if let Some(m) = mime {
                        options.set_type(m);
                    }
                    web_sys::Blob::new_with_u8_array_sequence_and_options(&parts, &options)
                        .map_err(|e| js("create blob", e))?
                }
            };
            let url = web_sys::Url::create_object_url_with_blob(&blob)
                .map_err(|e| js("create object URL", e))?;
            // Another resolve may have raced this one: keep the first, revoke ours.
            let mut urls = self.0.borrow_mut();
            if let Some(existing) = urls.get(hash) {
                let _ = web_sys::Url::revoke_object_url(&url);
                return Ok(existing.clone());
            }
            urls.insert(*hash, url.clone());
            Ok(url)
        }

        /// Revoke the URLs of content that is no longer stored.
        pub(super) async fn sweep(&self, cas: &ContentStore) {
            let hashes: Vec<ContentHash> = self.0.borrow().keys().copied().collect();
            for h in hashes {
                if !cas.contains(&h).await.unwrap_or(true)
                    && let Some(url) = self.0.borrow_mut().remove(&h)
                {
                    let _ = web_sys::Url::revoke_object_url(&url);
                }
            }
        }

        pub(super) fn revoke(&self, url: &str) {
            self.0.borrow_mut().retain(|_, u| {
                let keep = u != url;
                if !keep {
                    let _ = web_sys::Url::revoke_object_url(u);
                }
                keep
            });
        }

        pub(super) fn revoke_all(&self) {
            for (_, url) in self.0.borrow_mut().drain() {
                let _ = web_sys::Url::revoke_object_url(&url);
            }
        }

        pub(super) fn len(&self) -> usize {
            self.0.borrow().len()
        }
    }
}

/// API-9: `file://` URL of a stored path under `root`. The path is normalised as the original
/// does (`/` separators, one leading `/`, no repeated `/`), then made a URL by `url`, which
/// percent-encodes what a URL cannot hold (spaces, `#`, `?`, `%`): `Url::from_file_path` on
/// Unix; elsewhere (a Windows drive path written with `/`, wasm32) the same segments through
/// `Url::path_segments_mut`.
fn file_url(root: &str, path: &LocalPath) -> String {
    let mut root = root.replace('\\', "/");
    while root.ends_with('/') {
        root.pop();
    }
    if !root.starts_with('/') {
        root.insert(0, '/');
    }
    let joined = format!("{root}/{}", path.as_str().trim_start_matches('/'));
    let mut collapsed = String::with_capacity(joined.len());
    for c in joined.chars() {
        if c == '/' && collapsed.ends_with('/') {
            continue;
        }
        collapsed.push(c);
    }
    #[cfg(unix)]
    if let Ok(url) = url::Url::from_file_path(&collapsed) {
        return url.into();
    }
    match url::Url::parse("file:///") {
        Ok(mut url) => {
            if let Ok(mut segments) = url.path_segments_mut() {
                segments.clear().extend(collapsed.split('/').skip(1));
            }
            url.into()
        }
        // `file:///` always parses.
        Err(_) => format!("file://{collapsed}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_9_file_url() {
        let p = LocalPath::parse("livestore-filesync-files/s/h").unwrap();
        assert_eq!(
            file_url("tmp/filesync", &p),
            "file:///tmp/filesync/livestore-filesync-files/s/h"
        );
        assert_eq!(
            file_url("/a//b/", &p),
            "file:///a/b/livestore-filesync-files/s/h"
        );
        assert_eq!(
            file_url("C:\\data", &p),
            "file:///C:/data/livestore-filesync-files/s/h"
        );
    }

    /// Spaces and other characters a URL cannot hold are percent-encoded, and the URL leads
    /// back to the real file.
    #[cfg(unix)]
    #[test]
    fn api_9_file_url_with_spaces_points_at_the_file() {
        let p = LocalPath::parse("livestore-filesync-files/s/h").unwrap();
        assert_eq!(
            file_url("/my files/#1 100%", &p),
            "file:///my%20files/%231%20100%25/livestore-filesync-files/s/h"
        );
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("a dir with spaces");
        std::fs::create_dir_all(root.join("livestore-filesync-files/s")).unwrap();
        std::fs::write(root.join("livestore-filesync-files/s/h"), b"bytes").unwrap();
        let url = url::Url::parse(&file_url(root.to_str().unwrap(), &p)).unwrap();
        assert!(url.as_str().contains("a%20dir%20with%20spaces"), "{url}");
        assert_eq!(
            std::fs::read(url.to_file_path().unwrap()).unwrap(),
            b"bytes"
        );
    }
}
