//! The event handlers (ENG-3..7): what a file event means for `localFileState` and which
//! transfer it enqueues.

use crate::Result;
use crate::events::{SyncEvent, TransferKind};
use crate::rt::Instant;
use crate::schema::{
    Event, FileRecord, FileSyncCursor, FileSyncCursorSet, LocalFileState, TransferStatus,
};
use crate::store::StoredEvent;
use crate::types::Timestamp;

use super::{Engine, lock};

/// ENG-5: a `queued` or `inProgress` status is kept; anything else takes the new value.
fn merge_status(old: TransferStatus, new: TransferStatus) -> TransferStatus {
    match old {
        TransferStatus::Queued | TransferStatus::InProgress => old,
        _ => new,
    }
}

impl Engine {
    /// The decision for one record: the state row to write (merged per ENG-5) and what to enqueue.
    pub(super) async fn decide(
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
                let guard = self.lock_state().await;
                let current = self.store.local_state(id).await?;
                // ENG-3: a creation whose bytes are absent changes nothing.
                if matches!(event, Event::FileCreated(_))
                    && !self.cas.contains(&record.content_hash).await?
                {
                    return Ok(());
                }
                // An update from another device replaced the content this device held: those
                // bytes are garbage now unless another live file uses them, and so is their
                // object, which this device may have uploaded after the device that replaced
                // the content last looked (concurrent updates). The debt is recorded before
                // the row forgets the old hash, so a crash in between cannot lose it (the event
                // is handled again).
                let replaced = current
                    .as_ref()
                    .and_then(|c| c.local_hash)
                    .filter(|old| *old != record.content_hash);
                if let Some(old) = replaced {
                    let refs = crate::cas::References::from_records(&self.store.files().await?);
                    self.release_replaced(&old, &refs).await?;
                }
                let decision = self.decide(&record, current.as_ref()).await?;
                self.apply_decision(&record, decision).await?;
                drop(guard);
                if replaced.is_some() {
                    self.drain_remote_deletes().await;
                }
                Ok(())
            }
            Event::FileDeleted(_) => self.on_deleted(&record).await,
            _ => Ok(()),
        }
    }

    /// Content `old` this device held no longer belongs to its file: owe the deletion of its
    /// object and remove the local bytes, unless a live file in `refs` uses them. Returns
    /// whether a debt was recorded.
    async fn release_replaced(
        &self,
        old: &crate::types::ContentHash,
        refs: &crate::cas::References,
    ) -> Result<bool> {
        let unused = !refs.is_referenced(old);
        if unused {
            let key = crate::types::ObjectKey::for_content(&self.store_id, old);
            self.owe_remote_delete(&key).await?;
        }
        self.cas.release(old, refs).await?;
        Ok(unused)
    }

    /// ENG-6, WEAK-6: remove local content unless shared, cancel the download, drop the row.
    async fn on_deleted(&self, record: &FileRecord) -> Result<()> {
        self.release_local(record).await?;
        // Whichever device deleted it, the last uploaded content goes unless shared: the
        // deleting device may not have known the key (an upload finished elsewhere after it
        // deleted), or may have died before it recorded the debt.
        // Recorded before the row goes, so a crash in between cannot lose it. The row may
        // name older content than the record (an update this device never handled, because
        // the file was already deleted when it got to it): that goes too.
        let refs = crate::cas::References::from_records(&self.store.files().await?);
        let mut owed = false;
        if let Some(key) = &record.remote_key
            && !refs.is_referenced(&record.content_hash)
        {
            self.owe_remote_delete(key).await?;
            owed = true;
        }
        let held = self
            .store
            .local_state(&record.id)
            .await?
            .and_then(|s| s.local_hash);
        if let Some(old) = held.filter(|h| *h != record.content_hash) {
            owed |= self.release_replaced(&old, &refs).await?;
        }
        if let Some(exec) = self.executor() {
            exec.cancel_download(&record.id);
        }
        {
            let _guard = self.lock_state().await;
            self.remove_state(&record.id).await?;
        }
        if owed {
            self.drain_remote_deletes().await;
        }
        Ok(())
    }

    /// ENG-7: one batch of file events.
    pub(super) async fn handle_batch(&self, batch: Vec<StoredEvent>) -> Result<()> {
        let Some(last) = batch.last().map(|e| e.seq) else {
            return Ok(());
        };
        self.emit(SyncEvent::SyncStart);
        for e in &batch {
            if let Err(err) = self.on_file_event(&e.event).await {
                self.emit(SyncEvent::SyncError {
                    error: err.report(),
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
}
