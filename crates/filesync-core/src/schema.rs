//! The schema shared with the TypeScript original: events, rows, metadata and their JSON.
//!
//! Names and JSON shapes match `@livestore-filesync/core` exactly (SCH-1..17), so event logs and
//! stored rows can be exchanged with it. Dates are ISO-8601 strings in event arguments and
//! integer epoch milliseconds in rows (SCH-11). `tests/vectors/*.json` pins every shape.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::types::{
    ContentHash, FileId, LocalPath, ObjectKey, ParseError, StoreId, Timestamp, epoch_ms, iso8601,
};

/// The root directory of all local content (API-25): `livestore-filesync-files`.
pub const FILES_ROOT: &str = "livestore-filesync-files";

/// The local path of `hash` in `store`: `livestore-filesync-files/<storeId>/<hash>` (FS-1).
pub fn stored_path(store: &StoreId, hash: &ContentHash) -> LocalPath {
    // Both parts are validated single segments, so the result is always a valid path.
    LocalPath::parse(format!("{FILES_ROOT}/{store}/{hash}"))
        .unwrap_or_else(|_| unreachable!("store id and hash are valid path segments"))
}

/// The directory holding `store`'s content: `livestore-filesync-files/<storeId>`.
pub fn store_root(store: &StoreId) -> LocalPath {
    LocalPath::parse(format!("{FILES_ROOT}/{store}"))
        .unwrap_or_else(|_| unreachable!("store id is a valid path segment"))
}

/// The remote key for a stored path: the path without `livestore-filesync-files/` (ENG-13 step 6).
pub fn key_for_path(path: &LocalPath) -> Result<ObjectKey, ParseError> {
    let rest = path
        .as_str()
        .strip_prefix(FILES_ROOT)
        .and_then(|r| r.strip_prefix('/'))
        .unwrap_or(path.as_str());
    ObjectKey::parse(rest)
}

/// A transfer's state in `localFileState` (SCH-4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum TransferStatus {
    /// The column default; the engine never writes it.
    #[default]
    Pending,
    /// Waiting for a worker.
    Queued,
    /// A worker is on it.
    InProgress,
    /// Finished.
    Done,
    /// The last attempt failed; see `lastSyncError`.
    Error,
}

impl TransferStatus {
    /// The wire name, e.g. `"inProgress"`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Queued => "queued",
            Self::InProgress => "inProgress",
            Self::Done => "done",
            Self::Error => "error",
        }
    }
}

impl fmt::Display for TransferStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TransferStatus {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        Ok(match s {
            "pending" => Self::Pending,
            "queued" => Self::Queued,
            "inProgress" => Self::InProgress,
            "done" => Self::Done,
            "error" => Self::Error,
            _ => {
                return Err(ParseError::new(
                    "transfer status",
                    s,
                    "must be pending, queued, inProgress, done or error",
                ));
            }
        })
    }
}

/// `metadataJson` in event arguments: absent, `null` or a JSON string (SCH-13). Absent leaves the
/// row's value alone on update; `null` clears it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum MetadataJson {
    /// The field is not in the arguments (older events).
    #[default]
    Absent,
    /// `"metadataJson": null`.
    Null,
    /// `"metadataJson": "<json>"`: an opaque string, as in the original.
    Value(String),
}

impl MetadataJson {
    /// Whether the field is absent (used to skip it when serializing).
    pub fn is_absent(&self) -> bool {
        matches!(self, Self::Absent)
    }

    /// The value as the row stores it: absent and `null` both become `None`.
    pub fn as_row_value(&self) -> Option<String> {
        match self {
            Self::Value(s) => Some(s.clone()),
            Self::Absent | Self::Null => None,
        }
    }

    /// `Null` for `None`, `Value` for `Some`.
    pub fn from_row_value(v: Option<String>) -> Self {
        v.map_or(Self::Null, Self::Value)
    }
}

impl Serialize for MetadataJson {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Value(v) => s.serialize_str(v),
            Self::Absent | Self::Null => s.serialize_none(),
        }
    }
}

impl<'de> Deserialize<'de> for MetadataJson {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Option::<String>::deserialize(d)?.map_or(Self::Null, Self::Value))
    }
}

/// Serde for `Option<T>` written as `""` when `None` (`remoteKey`, `localHash`, `path` columns).
pub mod empty_as_none {
    use std::fmt::Display;

    use serde::{Deserialize, Deserializer, Serializer};

    use crate::types::ParseError;

    /// `None` becomes `""`, `Some(v)` its `Display` form.
    pub fn serialize<S: Serializer, T: Display>(v: &Option<T>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => s.collect_str(v),
            None => s.serialize_str(""),
        }
    }

    /// `""` becomes `None`; anything else must parse as `T`.
    pub fn deserialize<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
    where
        D: Deserializer<'de>,
        T: TryFrom<String, Error = ParseError>,
    {
        let s = String::deserialize(d)?;
        if s.is_empty() {
            Ok(None)
        } else {
            T::try_from(s).map(Some).map_err(serde::de::Error::custom)
        }
    }
}

/// Arguments of `v1.FileCreated` (SCH-5).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FileCreated {
    /// The new file's id.
    pub id: FileId,
    /// Where its bytes live locally: `livestore-filesync-files/<storeId>/<hash>`.
    pub path: LocalPath,
    /// SHA-256 of the bytes.
    pub content_hash: ContentHash,
    /// Serialized [`FileMetadata`], `null`, or absent.
    #[serde(default, skip_serializing_if = "MetadataJson::is_absent")]
    pub metadata_json: MetadataJson,
    /// Creation time.
    #[serde(with = "iso8601")]
    pub created_at: Timestamp,
    /// Same as `created_at` on creation.
    #[serde(with = "iso8601")]
    pub updated_at: Timestamp,
}

/// Arguments of `v1.FileUpdated` (SCH-6). A content change resets `remoteKey` to `""` (KEY-2);
/// a successful upload sets it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FileUpdated {
    /// The file.
    pub id: FileId,
    /// The (possibly new) local path.
    pub path: LocalPath,
    /// The remote object, or `""` when not uploaded.
    #[serde(with = "empty_as_none")]
    pub remote_key: Option<ObjectKey>,
    /// SHA-256 of the (possibly new) bytes.
    pub content_hash: ContentHash,
    /// Absent leaves the row's metadata; `null` clears it (SCH-13).
    #[serde(default, skip_serializing_if = "MetadataJson::is_absent")]
    pub metadata_json: MetadataJson,
    /// Update time.
    #[serde(with = "iso8601")]
    pub updated_at: Timestamp,
}

/// Arguments of `v1.FileDeleted` (SCH-7).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FileDeleted {
    /// The file.
    pub id: FileId,
    /// Deletion time.
    #[serde(with = "iso8601")]
    pub deleted_at: Timestamp,
}

/// A `localFileState` row, which is also the argument of `v1.LocalFileStateUpsert` (SCH-2, SCH-8).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LocalFileState {
    /// The file.
    pub file_id: FileId,
    /// Local path of the bytes, `""` when unknown.
    #[serde(with = "empty_as_none")]
    pub path: Option<LocalPath>,
    /// Hash of the local bytes, `""` when there are none.
    #[serde(with = "empty_as_none")]
    pub local_hash: Option<ContentHash>,
    /// Download state.
    pub download_status: TransferStatus,
    /// Upload state.
    pub upload_status: TransferStatus,
    /// The last transfer error, `""` when none.
    pub last_sync_error: String,
}

impl LocalFileState {
    /// A row with the column defaults (SCH-2): no path, no hash, both `pending`, no error.
    pub fn new(file_id: FileId) -> Self {
        Self {
            file_id,
            path: None,
            local_hash: None,
            download_status: TransferStatus::Pending,
            upload_status: TransferStatus::Pending,
            last_sync_error: String::new(),
        }
    }
}

/// Arguments of `v1.LocalFileStateRemove` (SCH-9).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LocalFileStateRemove {
    /// The row to remove.
    pub file_id: FileId,
}

/// Arguments of `v1.LocalFileStateClear`: `{}` (SCH-9).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct LocalFileStateClear {}

/// The value of the `fileSyncCursor` client document (SCH-3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FileSyncCursor {
    /// The sequence number of the last processed file event.
    pub last_event_sequence: EventSeq,
    /// When it was persisted.
    #[serde(with = "iso8601")]
    pub updated_at: Timestamp,
}

impl Default for FileSyncCursor {
    /// `{"lastEventSequence":"e0","updatedAt":"1970-01-01T00:00:00.000Z"}` (SCH-3).
    fn default() -> Self {
        Self {
            last_event_sequence: EventSeq::ROOT,
            updated_at: Timestamp::EPOCH,
        }
    }
}

/// The id of the one `fileSyncCursor` document.
pub const CURSOR_DOCUMENT_ID: &str = "global";

/// Arguments of `fileSyncCursorSet` (SCH-10): `{id: "global", value: {...}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileSyncCursorSet {
    /// Always `"global"` for the file-sync cursor.
    pub id: String,
    /// The new cursor.
    pub value: FileSyncCursor,
}

impl FileSyncCursorSet {
    /// Set the global cursor.
    pub fn global(value: FileSyncCursor) -> Self {
        Self {
            id: CURSOR_DOCUMENT_ID.to_owned(),
            value,
        }
    }
}

/// Every event filesync commits, tagged by its exact name (SCH-5..10). Serializes as
/// `{"name": "...", "args": {...}}`. Deserializing requires `args` to be a JSON object (serde
/// would otherwise also accept an array for a struct) and names the event in errors.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "name", content = "args")]
pub enum Event {
    /// `v1.FileCreated` (synced).
    #[serde(rename = "v1.FileCreated")]
    FileCreated(FileCreated),
    /// `v1.FileUpdated` (synced).
    #[serde(rename = "v1.FileUpdated")]
    FileUpdated(FileUpdated),
    /// `v1.FileDeleted` (synced).
    #[serde(rename = "v1.FileDeleted")]
    FileDeleted(FileDeleted),
    /// `v1.LocalFileStateUpsert` (client-only).
    #[serde(rename = "v1.LocalFileStateUpsert")]
    LocalFileStateUpsert(LocalFileState),
    /// `v1.LocalFileStateRemove` (client-only).
    #[serde(rename = "v1.LocalFileStateRemove")]
    LocalFileStateRemove(LocalFileStateRemove),
    /// `v1.LocalFileStateClear` (client-only).
    #[serde(rename = "v1.LocalFileStateClear")]
    LocalFileStateClear(LocalFileStateClear),
    /// `fileSyncCursorSet` (client-only).
    #[serde(rename = "fileSyncCursorSet")]
    FileSyncCursorSet(FileSyncCursorSet),
}

impl<'de> Deserialize<'de> for Event {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Raw {
            name: String,
            args: serde_json::Value,
        }
        let Raw { name, args } = Raw::deserialize(d)?;
        if !args.is_object() {
            return Err(D::Error::custom(format!(
                "{name}: args must be a JSON object"
            )));
        }
        fn parse<T: serde::de::DeserializeOwned, E: serde::de::Error>(
            name: &str,
            args: serde_json::Value,
        ) -> Result<T, E> {
            serde_json::from_value(args).map_err(|e| E::custom(format!("{name}: {e}")))
        }
        Ok(match name.as_str() {
            "v1.FileCreated" => Event::FileCreated(parse(&name, args)?),
            "v1.FileUpdated" => Event::FileUpdated(parse(&name, args)?),
            "v1.FileDeleted" => Event::FileDeleted(parse(&name, args)?),
            "v1.LocalFileStateUpsert" => Event::LocalFileStateUpsert(parse(&name, args)?),
            "v1.LocalFileStateRemove" => Event::LocalFileStateRemove(parse(&name, args)?),
            "v1.LocalFileStateClear" => Event::LocalFileStateClear(parse(&name, args)?),
            "fileSyncCursorSet" => Event::FileSyncCursorSet(parse(&name, args)?),
            other => return Err(D::Error::custom(format!("unknown event name {other:?}"))),
        })
    }
}

/// The names of the synced file events, the engine's stream filter (ENG-10).
pub const FILE_EVENT_NAMES: [&str; 3] = ["v1.FileCreated", "v1.FileUpdated", "v1.FileDeleted"];

impl Event {
    /// The exact event name, e.g. `"v1.FileCreated"`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::FileCreated(_) => "v1.FileCreated",
            Self::FileUpdated(_) => "v1.FileUpdated",
            Self::FileDeleted(_) => "v1.FileDeleted",
            Self::LocalFileStateUpsert(_) => "v1.LocalFileStateUpsert",
            Self::LocalFileStateRemove(_) => "v1.LocalFileStateRemove",
            Self::LocalFileStateClear(_) => "v1.LocalFileStateClear",
            Self::FileSyncCursorSet(_) => "fileSyncCursorSet",
        }
    }

    /// Whether the event is synced to other clients (the three file events) rather than client-only.
    pub fn is_synced(&self) -> bool {
        matches!(
            self,
            Self::FileCreated(_) | Self::FileUpdated(_) | Self::FileDeleted(_)
        )
    }

    /// Parse `{name, args}` JSON, with an error that names the event when its args are wrong.
    pub fn from_json(json: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(json)
    }
}

/// A `files` row (SCH-1). Dates are epoch milliseconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FileRecord {
    /// The file's id.
    pub id: FileId,
    /// Local path of the current content.
    pub path: LocalPath,
    /// The uploaded object, `""` until an upload succeeds.
    #[serde(with = "empty_as_none")]
    pub remote_key: Option<ObjectKey>,
    /// SHA-256 of the current content.
    pub content_hash: ContentHash,
    /// Serialized [`FileMetadata`] of the current content, or `null`.
    pub metadata_json: Option<String>,
    /// Creation time.
    #[serde(with = "epoch_ms")]
    pub created_at: Timestamp,
    /// Last update time.
    #[serde(with = "epoch_ms")]
    pub updated_at: Timestamp,
    /// Soft-delete time; rows are never physically removed (SCH-14).
    #[serde(with = "epoch_ms::option")]
    pub deleted_at: Option<Timestamp>,
}

impl FileRecord {
    /// Whether the record is soft-deleted.
    pub fn is_deleted(&self) -> bool {
        self.deleted_at.is_some()
    }

    /// The parsed metadata, `None` when absent or not a JSON object (SCH-16).
    pub fn metadata(&self) -> Option<FileMetadata> {
        self.metadata_json
            .as_deref()
            .and_then(|j| FileMetadata::from_json(j).ok())
    }
}

/// Image dimensions in [`FileMetadata`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageSize {
    /// Width in pixels.
    pub width: u64,
    /// Height in pixels.
    pub height: u64,
}

/// What `metadataJson` holds (SCH-16, plus `name`). Other keys are ignored when parsing.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FileMetadata {
    /// MIME type of the (processed) content.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mime_type: Option<String>,
    /// Size of the content in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<u64>,
    /// Image dimensions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<ImageSize>,
    /// Application data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom: Option<serde_json::Map<String, serde_json::Value>>,
    /// The file's name as it was saved (`photo.jpg`): a filesync addition, written last. The
    /// original ignores unknown keys, so its clients read these events as before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl FileMetadata {
    /// Parse `metadataJson`. Unlike the original's `parseFileMetadata` (which returns `null`),
    /// anything but a JSON object (an array, a number, invalid JSON) is a typed error (WEAK-26).
    pub fn from_json(json: &str) -> crate::Result<Self> {
        let value: serde_json::Value =
            serde_json::from_str(json).map_err(|e| crate::Error::bad_json("metadata", e))?;
        if !value.is_object() {
            return Err(crate::Error::invalid("metadata", "not a JSON object"));
        }
        serde_json::from_value(value)
            .map_err(|e| crate::Error::invalid_because("metadata", "wrong field type", e))
    }

    /// Serialize to the `metadataJson` string.
    pub fn to_json(&self) -> String {
        // Serializing plain structs, strings, integers and JSON maps cannot fail.
        serde_json::to_string(self).unwrap_or_else(|_| String::from("{}"))
    }
}

/// A position in the event log: `e{global}[.{client}][r{rebaseGeneration}]` (SCH-3), as LiveStore
/// writes it. Synced events get a new `global` number; client-only events share the last global
/// number and count up `client`. Ordered by `(global, client)`, then rebase generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct EventSeq {
    /// The global (synced) position.
    pub global: u64,
    /// The client-local position after `global`, 0 for synced events.
    pub client: u64,
    /// The rebase generation, 0 unless the client rebased.
    pub rebase: u64,
}

impl EventSeq {
    /// `e0`, before any event.
    pub const ROOT: EventSeq = EventSeq {
        global: 0,
        client: 0,
        rebase: 0,
    };

    /// A synced position `e{global}`.
    pub const fn global(global: u64) -> Self {
        Self {
            global,
            client: 0,
            rebase: 0,
        }
    }

    /// Whether this is the root `e0`.
    pub fn is_root(&self) -> bool {
        self.global == 0 && self.client == 0
    }

    /// Parse `e12`, `e12.3`, `e12r1` or `e12.3r1`.
    pub fn parse(input: &str) -> Result<Self, ParseError> {
        let err = |reason| ParseError::new("event sequence number", input, reason);
        let rest = input
            .strip_prefix('e')
            .ok_or_else(|| err("must start with 'e'"))?;
        let (nums, rebase) = match rest.split_once('r') {
            Some((n, r)) => (n, Some(r)),
            None => (rest, None),
        };
        let (global, client) = match nums.split_once('.') {
            Some((g, c)) => (g, Some(c)),
            None => (nums, None),
        };
        let num = |s: &str| -> Result<u64, ParseError> {
            if s.is_empty()
                || !s.bytes().all(|b| b.is_ascii_digit())
                || (s.len() > 1 && s.starts_with('0'))
            {
                return Err(err(
                    "must be e<global>[.<client>][r<generation>] with decimal numbers",
                ));
            }
            s.parse().map_err(|_| err("number is too large"))
        };
        Ok(Self {
            global: num(global)?,
            client: client.map(num).transpose()?.unwrap_or(0),
            rebase: rebase.map(num).transpose()?.unwrap_or(0),
        })
    }
}

impl fmt::Display for EventSeq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "e{}", self.global)?;
        if self.client != 0 {
            write!(f, ".{}", self.client)?;
        }
        if self.rebase != 0 {
            write!(f, "r{}", self.rebase)?;
        }
        Ok(())
    }
}

impl FromStr for EventSeq {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        Self::parse(s)
    }
}

impl Serialize for EventSeq {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for EventSeq {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// A change to the materialized tables, produced by [`materialize`] and applied by a
/// [`Store`](crate::store::Store). Keeping the rules here means every store applies the same ones.
#[derive(Debug, Clone, PartialEq)]
pub enum Mutation {
    /// Insert or replace a `files` row.
    PutFile(FileRecord),
    /// Replace a `localFileState` row (delete + insert: a full replace, SCH-15).
    PutLocalState(LocalFileState),
    /// Delete one `localFileState` row.
    RemoveLocalState(FileId),
    /// Delete every `localFileState` row.
    ClearLocalState,
    /// Set a `fileSyncCursor` document.
    PutCursor {
        /// The document id (`"global"`).
        id: String,
        /// The value.
        value: FileSyncCursor,
    },
    /// The event changes nothing (e.g. an update of an unknown id).
    Nothing,
}

/// The materializers (SCH-12..15): what `event` does to the tables, given the current `files`
/// row for the event's id (if it is a file event).
///
/// - `v1.FileCreated` inserts a row with `remoteKey ""`, `deletedAt null`, missing metadata as
///   `null`. A row with that id already existing is left as it is (a replayed event is a no-op).
/// - `v1.FileUpdated` sets `path`, `remoteKey`, `contentHash`, `updatedAt`; `metadataJson` only
///   when present in the args (`null` clears); never touches `deletedAt`; unknown id: no-op.
/// - `v1.FileDeleted` sets `deletedAt` only (soft delete); unknown id: no-op.
/// - `v1.LocalFileStateUpsert` fully replaces the row; `Remove` deletes one; `Clear` deletes all.
pub fn materialize(event: &Event, current: Option<&FileRecord>) -> Mutation {
    match event {
        Event::FileCreated(a) => match current {
            Some(_) => Mutation::Nothing,
            None => Mutation::PutFile(FileRecord {
                id: a.id.clone(),
                path: a.path.clone(),
                remote_key: None,
                content_hash: a.content_hash,
                metadata_json: a.metadata_json.as_row_value(),
                created_at: a.created_at,
                updated_at: a.updated_at,
                deleted_at: None,
            }),
        },
        Event::FileUpdated(a) => match current {
            None => Mutation::Nothing,
            Some(row) => {
                let mut row = row.clone();
                row.path = a.path.clone();
                row.remote_key = a.remote_key.clone();
                row.content_hash = a.content_hash;
                row.updated_at = a.updated_at;
                if !a.metadata_json.is_absent() {
                    row.metadata_json = a.metadata_json.as_row_value();
                }
                Mutation::PutFile(row)
            }
        },
        Event::FileDeleted(a) => match current {
            None => Mutation::Nothing,
            Some(row) => {
                let mut row = row.clone();
                row.deleted_at = Some(a.deleted_at);
                Mutation::PutFile(row)
            }
        },
        Event::LocalFileStateUpsert(row) => Mutation::PutLocalState(row.clone()),
        Event::LocalFileStateRemove(a) => Mutation::RemoveLocalState(a.file_id.clone()),
        Event::LocalFileStateClear(_) => Mutation::ClearLocalState,
        Event::FileSyncCursorSet(a) => Mutation::PutCursor {
            id: a.id.clone(),
            value: a.value.clone(),
        },
    }
}

impl Event {
    /// The `files` row id this event touches, if it is a file event.
    pub fn file_id(&self) -> Option<&FileId> {
        match self {
            Self::FileCreated(a) => Some(&a.id),
            Self::FileUpdated(a) => Some(&a.id),
            Self::FileDeleted(a) => Some(&a.id),
            _ => None,
        }
    }
}
