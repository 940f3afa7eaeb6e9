//! The database layout: object store names, metadata keys, the stored log row, and the
//! schema a new database gets.

use filesync_core::Error;
use filesync_core::schema::{Event, EventSeq};
use filesync_core::types::FileId;
use serde::{Deserialize, Serialize};
use wasm_bindgen::JsValue;
use web_sys::{IdbDatabase, IdbTransaction};

// Object stores, named after the SQLite store's tables. Keys are out-of-line; values are
// strings (JSON for rows).
/// Synced events, keyed by global sequence number (a number); value `{"seq","event"}` JSON.
pub(super) const EVENTLOG: &str = "eventlog";
/// `files` rows keyed by id; value: the row as JSON.
pub(super) const FILES: &str = "files";
/// `localFileState` rows keyed by file id; value: the row as JSON.
pub(super) const LOCAL: &str = "localFileState";
/// Client documents keyed by id (`"global"`); value: the cursor as JSON.
pub(super) const CURSORS: &str = "fileSyncCursor";
/// Owed remote deletes keyed by position (a number, insertion order); value: the object key.
pub(super) const REMOTE_DELETES: &str = "remoteDeleteQueue";
/// `clientId`, `confirmed` (the confirmed global position, in decimal) and `writes` (the
/// write counter, in decimal).
pub(super) const META: &str = "filesyncMeta";
pub(super) const ALL_STORES: [&str; 6] = [EVENTLOG, FILES, LOCAL, CURSORS, REMOTE_DELETES, META];
pub(super) const CLIENT_ID: &str = "clientId";
pub(super) const CONFIRMED: &str = "confirmed";
/// The number of write transactions ever committed to the database (by any connection), in
/// decimal; missing means 0. Every write checks it (is memory current?) and bumps it in the
/// same read-write transaction.
pub(super) const WRITES: &str = "writes";

/// A write counter as stored: `undefined` (never written) is 0.
pub(super) fn parse_writes(value: &JsValue) -> Option<u64> {
    if value.is_undefined() {
        return Some(0);
    }
    value.as_string()?.parse().ok()
}

/// An event log row as stored.
#[derive(Serialize, Deserialize)]
pub(super) struct LogRow {
    pub(super) seq: EventSeq,
    pub(super) event: Event,
}

pub(super) fn not_a_store(name: &str, reason: impl Into<String>) -> Error {
    Error::NotAStore {
        path: format!("IndexedDB database {name:?}"),
        reason: reason.into(),
        source: None,
    }
}

/// [`not_a_store`] keeping the error that showed it as the cause.
pub(super) fn not_a_store_because(
    name: &str,
    reason: impl Into<String>,
    source: impl Into<filesync_core::BoxError>,
) -> Error {
    Error::NotAStore {
        path: format!("IndexedDB database {name:?}"),
        reason: reason.into(),
        source: Some(source.into()),
    }
}

/// Create the object stores and the metadata of a new database (inside `upgradeneeded`).
pub(super) fn create_schema(
    db: &IdbDatabase,
    txn: &IdbTransaction,
    old_version: f64,
) -> Result<(), JsValue> {
    if old_version >= 1.0 {
        return Ok(());
    }
    for name in ALL_STORES {
        db.create_object_store(name)?;
    }
    let meta = txn.object_store(META)?;
    meta.put_with_key(
        &JsValue::from_str(FileId::random().as_str()),
        &JsValue::from_str(CLIENT_ID),
    )?;
    meta.put_with_key(&JsValue::from_str("0"), &JsValue::from_str(CONFIRMED))?;
    Ok(())
}
