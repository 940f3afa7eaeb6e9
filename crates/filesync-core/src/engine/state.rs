//! The local state manager (ENG-1): `localFileState` read-modify-writes under
//! [`Engine::lock_state`], and releasing content no live record uses (WEAK-6, WEAK-7).

use crate::Result;
use crate::cas::References;
use crate::events::TransferKind;
use crate::schema::{Event, FileRecord, LocalFileState, LocalFileStateRemove, TransferStatus};
use crate::types::{FileId, ObjectKey};

use super::Engine;

impl Engine {
    /// Hold this while reading a state row and writing it back.
    pub(crate) async fn lock_state(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.state_lock.lock().await
    }

    /// Reset transfers that were `inProgress` to `queued` (the `kind` given, or both when
    /// `None`) in each row, and commit the rows that changed; a failure is logged with `what`.
    /// The caller holds [`lock_state`](Self::lock_state).
    pub(super) async fn requeue_in_progress(
        &self,
        rows: impl IntoIterator<Item = (LocalFileState, Option<TransferKind>)>,
        what: &str,
    ) {
        let mut changes = Vec::new();
        for (mut row, kind) in rows {
            let mut changed = false;
            for (k, s) in [
                (TransferKind::Upload, &mut row.upload_status),
                (TransferKind::Download, &mut row.download_status),
            ] {
                if kind.is_none_or(|only| only == k) && *s == TransferStatus::InProgress {
                    *s = TransferStatus::Queued;
                    changed = true;
                }
            }
            if changed {
                changes.push(Event::LocalFileStateUpsert(row));
            }
        }
        if !changes.is_empty()
            && let Err(e) = self.store.commit(changes).await
        {
            tracing::warn!(error = %e, "could not {what}");
        }
    }

    pub(super) async fn put_state(&self, row: LocalFileState) -> Result<()> {
        self.store
            .commit(vec![Event::LocalFileStateUpsert(row)])
            .await
            .map(drop)
    }

    /// Change one status (and the error); a no-op when the row is missing (ENG-1).
    pub(super) async fn set_status(
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

    pub(super) async fn remove_state(&self, id: &FileId) -> Result<()> {
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

    /// Remove local content no live file uses that is older than `orphan_grace` (left by a
    /// crash between writing and committing, or by an update), then perform owed remote
    /// deletes.
    pub(crate) async fn collect_garbage(&self) -> Result<crate::cas::GcReport> {
        let refs = References::from_records(&self.store.files().await?);
        let cutoff = crate::rt::now()
            .checked_sub(self.options.orphan_grace)
            .unwrap_or(crate::rt::UNIX_EPOCH);
        let report = self
            .cas
            .gc_older_than(&refs, crate::types::Timestamp::from_system_time(cutoff))
            .await?;
        self.drain_remote_deletes().await;
        Ok(report)
    }

    /// Record that the remote object `key` may have to go, before the commit that may make it
    /// unused: if the process dies after that commit, the debt survives it. A debt whose
    /// object a live file still uses is dropped when the debts are drained.
    pub(crate) async fn owe_remote_delete(&self, key: &ObjectKey) -> Result<()> {
        if self.remote.is_some() {
            self.store.set_remote_delete(key, true).await?;
        }
        Ok(())
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

    /// The relay confirmed that these files' objects were uploaded (our `FileUpdated` events
    /// that set their remote keys). A device that deleted an object of the same content
    /// before it could see these events may have removed it after the upload: check, and
    /// upload again if it is gone.
    pub(crate) fn verify_uploaded(&self, ids: impl IntoIterator<Item = FileId>) {
        for id in ids {
            super::lock(&self.reupload).insert(id.clone());
            self.enqueue(crate::events::TransferKind::Upload, &id);
        }
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
        // Only with the relay's whole log in view: a file another device saved with the same
        // content, already ordered by the relay, keeps the object. (One ordered later
        // re-checks its object once its event is confirmed: `verify_uploaded`.)
        if let Some(relay) = &self.relay {
            // Our own events that made the objects unused must be in the relay first, so that
            // a device whose upload of the same content is ordered after them verifies it.
            let (Ok(confirmed), Ok(head)) = (self.store.confirmed().await, self.store.head().await)
            else {
                return;
            };
            if head.global != confirmed.global {
                return;
            }
            match relay.pull(&self.store_id, confirmed.global, 1).await {
                Ok(newer) if newer.is_empty() => {}
                _ => return,
            }
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
            // A debt taken before an upload (see `upload_attempt`) stays while a live file of
            // that content is not recorded as uploaded: the upload may be running, and if the
            // process dies after its PUT the debt is what removes an object nobody records.
            if hash.is_some_and(|h| {
                files
                    .iter()
                    .any(|f| !f.is_deleted() && f.content_hash == h && f.remote_key.is_none())
            }) {
                continue;
            }
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
}
