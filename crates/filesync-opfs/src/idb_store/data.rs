//! [`Data`]: the whole database in memory, and [`load`], which reads it in one transaction.

use std::collections::BTreeMap;

use filesync_core::Result;
use filesync_core::schema::{EventSeq, FileRecord, FileSyncCursor, LocalFileState};
use filesync_core::store::StoredEvent;
use filesync_core::types::{FileId, ObjectKey};
use wasm_bindgen::JsValue;
use web_sys::IdbDatabase;

use super::schema::{
    ALL_STORES, CLIENT_ID, CONFIRMED, CURSORS, EVENTLOG, FILES, LOCAL, LogRow, META,
    REMOTE_DELETES, WRITES, not_a_store, not_a_store_because,
};
use crate::idb;

/// Everything in the database, in memory. Reads are served from here.
#[derive(Debug, Default)]
pub(super) struct Data {
    pub(super) log: BTreeMap<u64, StoredEvent>,
    pub(super) files: BTreeMap<FileId, FileRecord>,
    pub(super) local: BTreeMap<FileId, LocalFileState>,
    pub(super) cursors: BTreeMap<String, FileSyncCursor>,
    pub(super) confirmed: EventSeq,
    pub(super) remote_deletes: BTreeMap<u64, ObjectKey>,
    pub(super) client_id: String,
    /// The database's write counter ([`WRITES`]) this copy is current with.
    pub(super) writes: u64,
    /// `commit_batch`'s counter for client-only events (in memory only, as in every store).
    pub(super) client_seq: (u64, u64),
}

impl Data {
    pub(super) fn head(&self) -> EventSeq {
        self.log
            .last_key_value()
            .map_or(EventSeq::ROOT, |(_, e)| e.seq)
    }
}

/// The values of a finished `getAll`/`getAllKeys` request.
fn array_of(request: &web_sys::IdbRequest) -> Result<Vec<JsValue>, JsValue> {
    let result = request.result()?;
    Ok(js_sys::Array::from(&result).to_vec())
}

/// Read every object store in one read-only transaction.
pub(super) async fn load(db: &IdbDatabase, name: &str) -> Result<Data> {
    let read = |e: JsValue| idb::store_error("read", &e);
    let txn = idb::transaction(db, &ALL_STORES, false).map_err(read)?;
    let store = |n: &str| txn.object_store(n);
    let requests = (|| -> Result<_, JsValue> {
        Ok([
            store(EVENTLOG)?.get_all()?,
            store(FILES)?.get_all()?,
            store(LOCAL)?.get_all()?,
            store(CURSORS)?.get_all_keys()?,
            store(CURSORS)?.get_all()?,
            store(REMOTE_DELETES)?.get_all_keys()?,
            store(REMOTE_DELETES)?.get_all()?,
            store(META)?.get_all_keys()?,
            store(META)?.get_all()?,
        ])
    })()
    .map_err(read)?;
    idb::finish(&txn).await.map_err(read)?;
    let [
        log,
        files,
        local,
        cursor_ids,
        cursors,
        rd_keys,
        rd_values,
        meta_keys,
        meta_values,
    ] = requests;
    let rows = |r: &web_sys::IdbRequest| array_of(r).map_err(read);
    let text = |v: &JsValue, what: &str| {
        v.as_string()
            .ok_or_else(|| not_a_store(name, format!("a {what} is not a string")))
    };
    let parse = |what: &'static str| {
        move |e: serde_json::Error| not_a_store_because(name, format!("unreadable {what}"), e)
    };
    let number = |v: &JsValue, what: &str| {
        v.as_f64()
            .filter(|n| n.fract() == 0.0 && *n >= 0.0)
            .map(|n| n as u64)
            .ok_or_else(|| not_a_store(name, format!("a {what} key is not a position")))
    };

    let mut data = Data::default();
    for v in rows(&log)? {
        let row: LogRow = serde_json::from_str(&text(&v, "log row")?).map_err(parse("event"))?;
        data.log.insert(
            row.seq.global,
            StoredEvent {
                seq: row.seq,
                event: row.event,
            },
        );
    }
    for v in rows(&files)? {
        let row: FileRecord =
            serde_json::from_str(&text(&v, "file row")?).map_err(parse("file row"))?;
        data.files.insert(row.id.clone(), row);
    }
    for v in rows(&local)? {
        let row: LocalFileState =
            serde_json::from_str(&text(&v, "local state")?).map_err(parse("local state"))?;
        data.local.insert(row.file_id.clone(), row);
    }
    for (k, v) in rows(&cursor_ids)?.iter().zip(rows(&cursors)?) {
        let cursor: FileSyncCursor =
            serde_json::from_str(&text(&v, "cursor")?).map_err(parse("cursor"))?;
        data.cursors.insert(text(k, "cursor id")?, cursor);
    }
    for (k, v) in rows(&rd_keys)?.iter().zip(rows(&rd_values)?) {
        let key = ObjectKey::parse(text(&v, "remote delete")?)
            .map_err(|e| not_a_store_because(name, "unreadable remote delete", e))?;
        data.remote_deletes.insert(number(k, "remote delete")?, key);
    }
    let mut meta = BTreeMap::new();
    for (k, v) in rows(&meta_keys)?.iter().zip(rows(&meta_values)?) {
        meta.insert(text(k, "metadata key")?, text(&v, "metadata value")?);
    }
    data.client_id = meta
        .remove(CLIENT_ID)
        .filter(|id| !id.is_empty())
        .ok_or_else(|| not_a_store(name, "it has no filesync client id"))?;
    let confirmed = meta.remove(CONFIRMED).unwrap_or_else(|| "0".to_owned());
    data.confirmed = confirmed
        .parse::<u64>()
        .map(EventSeq::global)
        .map_err(|_| not_a_store(name, format!("confirmed position {confirmed:?}")))?;
    let writes = meta.remove(WRITES).unwrap_or_else(|| "0".to_owned());
    data.writes = writes
        .parse::<u64>()
        .map_err(|_| not_a_store(name, format!("write counter {writes:?}")))?;
    let head = data.head();
    data.client_seq = (head.global, 0);
    Ok(data)
}
