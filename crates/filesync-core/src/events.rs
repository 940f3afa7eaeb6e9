//! Lifecycle and transfer events (EVT-1..10), with the original's exact `type` strings and
//! payloads. [`SyncEvent`] serializes to the same JSON the TypeScript `onEvent` receives.

use serde::Serialize;

use crate::types::FileId;

/// Upload or download.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TransferKind {
    /// Local bytes to remote storage.
    Upload,
    /// Remote storage to local bytes.
    Download,
}

impl std::fmt::Display for TransferKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Upload => "upload",
            Self::Download => "download",
        })
    }
}

/// The `progress` payload of `upload:progress` / `download:progress` (EVT-8).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TransferProgress {
    /// Upload or download.
    pub kind: TransferKind,
    /// The file.
    pub file_id: FileId,
    /// Always `"inProgress"`.
    pub status: &'static str,
    /// Bytes moved so far.
    pub loaded: u64,
    /// Total bytes; 0 when unknown (a download without `Content-Length`).
    pub total: u64,
}

/// Where a `sync:recovery` came from (EVT-4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum RecoveryFrom {
    /// The event stream recovered after errors.
    StreamError,
    /// `retry_errors` re-queued failed transfers.
    ErrorRetry,
}

/// Why the heartbeat intervened (EVT-5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum HeartbeatReason {
    /// The event stream task had ended.
    StreamDead,
    /// Work was queued but nothing ran for two ticks.
    StuckQueue,
    /// File events exist that the stream has not delivered for too long.
    StreamStalled,
}

/// Every event the engine emits (EVT-1..10). Serializes as `{"type": "...", ...}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type")]
#[non_exhaustive]
pub enum SyncEvent {
    /// A non-empty batch of file events is being processed (EVT-1).
    #[serde(rename = "sync:start")]
    SyncStart,
    /// The batch was processed and the cursor persisted (EVT-1).
    #[serde(rename = "sync:complete")]
    SyncComplete,
    /// Something failed (EVT-2). `context` is e.g. `"bootstrap"` or `"event:v1.FileCreated"`;
    /// `"relay"` when an exchange with the relay failed and is retried with backoff, and
    /// `"relay:refused"` when the relay refused it (a 4xx such as a bad token or batch:
    /// retrying the same request will not help, though the engine keeps trying).
    #[serde(rename = "sync:error")]
    SyncError {
        /// The error, as text.
        error: String,
        /// Where it happened.
        #[serde(skip_serializing_if = "Option::is_none")]
        context: Option<String>,
    },
    /// The event stream failed; it will be retried (EVT-3).
    #[serde(rename = "sync:stream-error")]
    StreamError {
        /// The error, as text.
        error: String,
        /// 1 for the first failure in a row.
        attempt: u32,
    },
    /// The event stream failed too often; the heartbeat restarts it (EVT-3).
    #[serde(rename = "sync:stream-exhausted")]
    StreamExhausted {
        /// The last error.
        error: String,
        /// How many attempts were made.
        attempts: u32,
    },
    /// Recovery happened (EVT-4).
    #[serde(rename = "sync:recovery")]
    Recovery {
        /// What recovered.
        from: RecoveryFrom,
    },
    /// The heartbeat restarted something (EVT-5).
    #[serde(rename = "sync:heartbeat-recovery")]
    HeartbeatRecovery {
        /// Why.
        reason: HeartbeatReason,
    },
    /// Start-up recovery re-queued failed transfers (EVT-6).
    #[serde(rename = "sync:error-retry-start")]
    ErrorRetryStart {
        /// The files.
        #[serde(rename = "fileIds")]
        file_ids: Vec<FileId>,
    },
    /// EVT-7.
    #[serde(rename = "upload:start")]
    UploadStart {
        /// The file.
        #[serde(rename = "fileId")]
        file_id: FileId,
    },
    /// EVT-7.
    #[serde(rename = "upload:complete")]
    UploadComplete {
        /// The file.
        #[serde(rename = "fileId")]
        file_id: FileId,
    },
    /// EVT-7: one attempt failed.
    #[serde(rename = "upload:error")]
    UploadError {
        /// The file.
        #[serde(rename = "fileId")]
        file_id: FileId,
        /// The error, as text.
        error: String,
    },
    /// EVT-8.
    #[serde(rename = "upload:progress")]
    UploadProgress {
        /// The file.
        #[serde(rename = "fileId")]
        file_id: FileId,
        /// Bytes so far.
        progress: TransferProgress,
    },
    /// EVT-7.
    #[serde(rename = "download:start")]
    DownloadStart {
        /// The file.
        #[serde(rename = "fileId")]
        file_id: FileId,
    },
    /// EVT-7.
    #[serde(rename = "download:complete")]
    DownloadComplete {
        /// The file.
        #[serde(rename = "fileId")]
        file_id: FileId,
    },
    /// EVT-7: one attempt failed.
    #[serde(rename = "download:error")]
    DownloadError {
        /// The file.
        #[serde(rename = "fileId")]
        file_id: FileId,
        /// The error, as text.
        error: String,
    },
    /// EVT-8.
    #[serde(rename = "download:progress")]
    DownloadProgress {
        /// The file.
        #[serde(rename = "fileId")]
        file_id: FileId,
        /// Bytes so far.
        progress: TransferProgress,
    },
    /// Retries are used up; the row stays `error` (EVT-9).
    #[serde(rename = "transfer:exhausted")]
    TransferExhausted {
        /// Upload or download.
        kind: TransferKind,
        /// The file.
        #[serde(rename = "fileId")]
        file_id: FileId,
        /// The last error.
        error: String,
    },
    /// Remote storage became reachable (EVT-10).
    #[serde(rename = "online")]
    Online,
    /// Remote storage became unreachable (EVT-10).
    #[serde(rename = "offline")]
    Offline,
}

impl SyncEvent {
    /// The `type` string, e.g. `"upload:complete"`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::SyncStart => "sync:start",
            Self::SyncComplete => "sync:complete",
            Self::SyncError { .. } => "sync:error",
            Self::StreamError { .. } => "sync:stream-error",
            Self::StreamExhausted { .. } => "sync:stream-exhausted",
            Self::Recovery { .. } => "sync:recovery",
            Self::HeartbeatRecovery { .. } => "sync:heartbeat-recovery",
            Self::ErrorRetryStart { .. } => "sync:error-retry-start",
            Self::UploadStart { .. } => "upload:start",
            Self::UploadComplete { .. } => "upload:complete",
            Self::UploadError { .. } => "upload:error",
            Self::UploadProgress { .. } => "upload:progress",
            Self::DownloadStart { .. } => "download:start",
            Self::DownloadComplete { .. } => "download:complete",
            Self::DownloadError { .. } => "download:error",
            Self::DownloadProgress { .. } => "download:progress",
            Self::TransferExhausted { .. } => "transfer:exhausted",
            Self::Online => "online",
            Self::Offline => "offline",
        }
    }

    /// The event as the original's JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}
