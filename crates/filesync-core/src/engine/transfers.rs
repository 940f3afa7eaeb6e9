//! Transfer handlers (ENG-12, ENG-13): one attempt of an upload or a download with its
//! bookkeeping, progress events, and the [`TransferHandler`] the executor runs.

use std::sync::{Arc, Weak};

use async_trait::async_trait;
use futures::StreamExt;

use crate::events::{SyncEvent, TransferKind, TransferProgress};
use crate::fs::ByteStream;
use crate::remote::{RemoteStorage, UploadRequest};
use crate::rt;
use crate::schema::{Event, FileRecord, FileUpdated, LocalFileState, MetadataJson, TransferStatus};
use crate::types::{FileId, ObjectKey, Timestamp};
use crate::{Error, Result};

use super::Engine;
use super::executor::TransferHandler;

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

pub(super) struct Transfers(pub(super) Weak<Engine>);

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
                error: error.report(),
            });
        }
    }
}

impl Engine {
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
        self.set_status(id, kind, TransferStatus::Error, Some(error.report()))
            .await?;
        let message = error.report();
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
        let verify = super::lock(&self.reupload).contains(id);
        let missing =
            record.remote_key.as_ref() != Some(&key) || (verify && !remote.exists(&key).await?);
        if missing {
            // Owe the object's deletion before it exists: if the file is deleted or changed
            // meanwhile, or the process dies before the upload is recorded, the debt removes
            // it. Recording the upload clears the debt.
            self.owe_remote_delete(&key).await?;
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
        // Checked (or sent again): a failed attempt above keeps the check for the retry.
        super::lock(&self.reupload).remove(id);
        let Some(now) = self.store.file(id).await?.filter(|r| !r.is_deleted()) else {
            // Deleted during the upload (TST-3): remove the object unless shared.
            self.release_remote(&key, &hash).await;
            let _guard = self.lock_state().await;
            return self.remove_state(id).await;
        };
        if now.content_hash != hash {
            // WEAK-12: the content changed meanwhile; never publish this key for the new hash.
            // The new content's own upload is queued by its FileUpdated. The object just
            // stored is nobody's now (unless another file shares the content): remove it.
            self.release_remote(&key, &hash).await;
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
}
