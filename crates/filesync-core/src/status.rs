//! Pure helpers over state rows and progress events: sync status (API-22) and transfer
//! progress aggregation (API-23).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::events::TransferProgress;
use crate::schema::{LocalFileState, TransferStatus};
use crate::types::FileId;

/// One failed file in [`SyncStatus::errors`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FileError {
    /// The file.
    pub file_id: FileId,
    /// Its `lastSyncError`.
    pub error: String,
}

/// `getSyncStatus` (API-22): which files are uploading, downloading, queued, pending, failed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncStatus {
    /// Upload `inProgress`.
    pub uploading_file_ids: Vec<FileId>,
    /// Download `inProgress`.
    pub downloading_file_ids: Vec<FileId>,
    /// Upload `queued`.
    pub queued_upload_file_ids: Vec<FileId>,
    /// Download `queued`.
    pub queued_download_file_ids: Vec<FileId>,
    /// Upload `pending`.
    pub pending_upload_file_ids: Vec<FileId>,
    /// Download `pending`.
    pub pending_download_file_ids: Vec<FileId>,
    /// Files with a status `error` and a non-empty `lastSyncError`, each listed once.
    pub errors: Vec<FileError>,
}

impl SyncStatus {
    /// Aggregate state rows.
    pub fn from_states<'a>(rows: impl IntoIterator<Item = &'a LocalFileState>) -> Self {
        let mut s = Self::default();
        for row in rows {
            let id = || row.file_id.clone();
            for (status, active, queued, pending) in [
                (
                    row.upload_status,
                    &mut s.uploading_file_ids,
                    &mut s.queued_upload_file_ids,
                    &mut s.pending_upload_file_ids,
                ),
                (
                    row.download_status,
                    &mut s.downloading_file_ids,
                    &mut s.queued_download_file_ids,
                    &mut s.pending_download_file_ids,
                ),
            ] {
                match status {
                    TransferStatus::InProgress => active.push(id()),
                    TransferStatus::Queued => queued.push(id()),
                    TransferStatus::Pending => pending.push(id()),
                    TransferStatus::Done | TransferStatus::Error => {}
                }
            }
            let failed = row.upload_status == TransferStatus::Error
                || row.download_status == TransferStatus::Error;
            if failed && !row.last_sync_error.is_empty() {
                s.errors.push(FileError {
                    file_id: id(),
                    error: row.last_sync_error.clone(),
                });
            }
        }
        s
    }

    /// `errorCount`.
    pub fn error_count(&self) -> usize {
        self.errors.len()
    }

    /// `isSyncing`: something is uploading or downloading.
    pub fn is_syncing(&self) -> bool {
        !self.uploading_file_ids.is_empty() || !self.downloading_file_ids.is_empty()
    }

    /// `hasPending`: something is queued or pending.
    pub fn has_pending(&self) -> bool {
        !(self.queued_upload_file_ids.is_empty()
            && self.queued_download_file_ids.is_empty()
            && self.pending_upload_file_ids.is_empty()
            && self.pending_download_file_ids.is_empty())
    }
}

/// `percent` of one transfer (API-23): `round(loaded / total * 100)`, `None` when `total` is 0.
pub fn percent(progress: &TransferProgress) -> Option<u64> {
    (progress.total > 0)
        .then(|| ((progress.loaded as f64 / progress.total as f64) * 100.0).round() as u64)
}

/// Totals over [`ActiveTransfers`] (API-23).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TotalProgress {
    /// Bytes moved.
    pub total_loaded: u64,
    /// Bytes to move.
    pub total_size: u64,
    /// `None` when empty, when any total is unknown, or when the size is 0.
    pub percent: Option<u64>,
    /// Transfers counted.
    pub count: usize,
}

/// The transfers in flight, keyed by file, fed from progress events (API-23).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ActiveTransfers {
    entries: BTreeMap<FileId, TransferProgress>,
}

impl ActiveTransfers {
    /// Add or replace a transfer's progress.
    pub fn update(&mut self, progress: TransferProgress) {
        self.entries.insert(progress.file_id.clone(), progress);
    }

    /// The progress of `file_id`'s transfer, if one is in flight.
    pub fn get(&self, file_id: &FileId) -> Option<&TransferProgress> {
        self.entries.get(file_id)
    }

    /// Forget a transfer (completed or failed).
    pub fn remove(&mut self, file_id: &FileId) {
        self.entries.remove(file_id);
    }

    /// `computeTotalProgress`.
    pub fn total(&self) -> TotalProgress {
        let total_loaded = self.entries.values().map(|p| p.loaded).sum();
        let total_size: u64 = self.entries.values().map(|p| p.total).sum();
        let unknown = self.entries.values().any(|p| p.total == 0);
        let percent = (!self.entries.is_empty() && !unknown && total_size > 0)
            .then(|| ((total_loaded as f64 / total_size as f64) * 100.0).round() as u64);
        TotalProgress {
            total_loaded,
            total_size,
            percent,
            count: self.entries.len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::TransferKind;

    fn row(id: &str, up: TransferStatus, down: TransferStatus, err: &str) -> LocalFileState {
        LocalFileState {
            last_sync_error: err.into(),
            upload_status: up,
            download_status: down,
            ..LocalFileState::new(FileId::parse(id).unwrap())
        }
    }

    /// API-22: counts, ids, the error rule (status error and a message; once per file).
    #[test]
    fn api_22_sync_status() {
        use TransferStatus::*;
        let rows = [
            row("a", InProgress, Done, ""),
            row("b", Queued, Queued, ""),
            row("c", Error, Error, "boom"),
            row("d", Error, Done, ""),
            row("e", Done, Pending, ""),
        ];
        let s = SyncStatus::from_states(&rows);
        let ids = |v: &Vec<FileId>| v.iter().map(|i| i.to_string()).collect::<Vec<_>>();
        assert_eq!(ids(&s.uploading_file_ids), ["a"]);
        assert_eq!(ids(&s.queued_upload_file_ids), ["b"]);
        assert_eq!(ids(&s.queued_download_file_ids), ["b"]);
        assert_eq!(ids(&s.pending_download_file_ids), ["e"]);
        assert_eq!(s.error_count(), 1);
        assert_eq!(s.errors[0].error, "boom");
        assert!(s.is_syncing() && s.has_pending());
        let idle = SyncStatus::from_states(&[row("z", Done, Done, "")]);
        assert!(!idle.is_syncing() && !idle.has_pending());
    }

    /// API-23: per-transfer percent and totals, `None` when a total is unknown.
    #[test]
    fn api_23_progress() {
        let p = |id: &str, loaded, total| TransferProgress {
            kind: TransferKind::Download,
            file_id: FileId::parse(id).unwrap(),
            status: "inProgress",
            loaded,
            total,
        };
        assert_eq!(percent(&p("a", 1, 3)), Some(33));
        assert_eq!(percent(&p("a", 1, 0)), None);
        let mut t = ActiveTransfers::default();
        assert_eq!(t.total().percent, None);
        t.update(p("a", 50, 100));
        t.update(p("b", 0, 100));
        t.update(p("a", 100, 100));
        let total = t.total();
        assert_eq!(
            (
                total.total_loaded,
                total.total_size,
                total.percent,
                total.count
            ),
            (100, 200, Some(50), 2)
        );
        t.update(p("c", 5, 0));
        assert_eq!(t.total().percent, None);
        t.remove(&FileId::parse("c").unwrap());
        assert_eq!(t.total().percent, Some(50));
    }
}
