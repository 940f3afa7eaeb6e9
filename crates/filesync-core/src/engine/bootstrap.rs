//! Bootstrap (ENG-8, ENG-9), start-up recovery (ENG-18) and re-enqueueing queued rows
//! (API-12, NET-1, WEAK-13).

use std::collections::BTreeMap;

use crate::Result;
use crate::cas::References;
use crate::events::{SyncEvent, TransferKind};
use crate::schema::{
    Event, FileSyncCursor, FileSyncCursorSet, LocalFileState, LocalFileStateRemove, TransferStatus,
};
use crate::types::{FileId, Timestamp};

use super::Engine;

impl Engine {
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
    pub(super) async fn adopt_queued(&self) -> Result<()> {
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
}
