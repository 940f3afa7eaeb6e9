//! [`IdbStore`]: the [`Store`] over the browser's IndexedDB.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::fmt;
use std::ops::{Bound, RangeBounds};
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use filesync_core::rt::Instant;
use filesync_core::schema::{
    CURSOR_DOCUMENT_ID, Event, EventSeq, FileRecord, FileSyncCursor, LocalFileState, Mutation,
};
use filesync_core::store::{
    MAX_READ_BATCH, Store, StoredEvent, Tables, commit_batch, confirm_batch, rebase_batch,
};
use filesync_core::types::{FileId, ObjectKey};
use filesync_core::{Error, Result};
use serde::{Deserialize, Serialize};
use tokio::sync::{Mutex, watch};
use wasm_bindgen::JsValue;
use wasm_bindgen::prelude::Closure;
use web_sys::{BroadcastChannel, IdbDatabase, IdbFactory, IdbTransaction, MessageEvent};

use crate::idb::{self, Op};

/// The IndexedDB schema version of the database [`IdbStore`] creates.
pub const IDB_SCHEMA_VERSION: u32 = 1;
/// The database name of [`IdbStore::open_default`].
pub const DEFAULT_DATABASE: &str = "filesync";

// Object stores, named after the SQLite store's tables. Keys are out-of-line; values are
// strings (JSON for rows).
/// Synced events, keyed by global sequence number (a number); value `{"seq","event"}` JSON.
const EVENTLOG: &str = "eventlog";
/// `files` rows keyed by id; value: the row as JSON.
const FILES: &str = "files";
/// `localFileState` rows keyed by file id; value: the row as JSON.
const LOCAL: &str = "localFileState";
/// Client documents keyed by id (`"global"`); value: the cursor as JSON.
const CURSORS: &str = "fileSyncCursor";
/// Owed remote deletes keyed by position (a number, insertion order); value: the object key.
const REMOTE_DELETES: &str = "remoteDeleteQueue";
/// `clientId`, `confirmed` (the confirmed global position, in decimal) and `writes` (the
/// write counter, in decimal).
const META: &str = "filesyncMeta";
const ALL_STORES: [&str; 6] = [EVENTLOG, FILES, LOCAL, CURSORS, REMOTE_DELETES, META];
const CLIENT_ID: &str = "clientId";
const CONFIRMED: &str = "confirmed";
/// The number of write transactions ever committed to the database (by any connection), in
/// decimal; missing means 0. Every write checks it (is memory current?) and bumps it in the
/// same read-write transaction.
const WRITES: &str = "writes";
/// How many times one write recomputes its batch after other connections wrote first before
/// it gives up (with a retryable error). Each retry means another write landed.
const MAX_WRITE_ATTEMPTS: u32 = 50;
/// Reads that follow the log ([`Store::events_after`], [`Store::head`]) check the write
/// counter at most this often, in case a change notification was missed.
const READ_CHECK_INTERVAL: Duration = Duration::from_millis(250);

/// The `BroadcastChannel` name of the database `name`.
fn channel_name(name: &str) -> String {
    format!("filesync-idb:{name}")
}

/// A write counter as stored: `undefined` (never written) is 0.
fn parse_writes(value: &JsValue) -> Option<u64> {
    if value.is_undefined() {
        return Some(0);
    }
    value.as_string()?.parse().ok()
}

/// An event log row as stored.
#[derive(Serialize, Deserialize)]
struct LogRow {
    seq: EventSeq,
    event: Event,
}

/// Everything in the database, in memory. Reads are served from here.
#[derive(Debug, Default)]
struct Data {
    log: BTreeMap<u64, StoredEvent>,
    files: BTreeMap<FileId, FileRecord>,
    local: BTreeMap<FileId, LocalFileState>,
    cursors: BTreeMap<String, FileSyncCursor>,
    confirmed: EventSeq,
    remote_deletes: BTreeMap<u64, ObjectKey>,
    client_id: String,
    /// The database's write counter ([`WRITES`]) this copy is current with.
    writes: u64,
    /// `commit_batch`'s counter for client-only events (in memory only, as in every store).
    client_seq: (u64, u64),
}

impl Data {
    fn head(&self) -> EventSeq {
        self.log
            .last_key_value()
            .map_or(EventSeq::ROOT, |(_, e)| e.seq)
    }
}

/// Changes to one table on top of its committed rows: a row is replaced (`Some`) or removed
/// (`None`); `cleared` hides every committed row.
#[derive(Debug)]
struct Changes<K, V> {
    cleared: bool,
    rows: BTreeMap<K, Option<V>>,
}

impl<K, V> Default for Changes<K, V> {
    fn default() -> Self {
        Self {
            cleared: false,
            rows: BTreeMap::new(),
        }
    }
}

impl<K: Ord + Clone, V> Changes<K, V> {
    fn is_empty(&self) -> bool {
        !self.cleared && self.rows.is_empty()
    }

    fn get<'a>(&'a self, base: &'a BTreeMap<K, V>, key: &K) -> Option<&'a V> {
        match self.rows.get(key) {
            Some(row) => row.as_ref(),
            None if self.cleared => None,
            None => base.get(key),
        }
    }

    fn put(&mut self, key: K, value: V) {
        self.rows.insert(key, Some(value));
    }

    fn remove(&mut self, key: K) {
        self.rows.insert(key, None);
    }

    fn clear(&mut self) {
        self.cleared = true;
        self.rows.clear();
    }

    /// The rows in `range` as they are with these changes.
    fn range<'a, R: RangeBounds<K> + Clone>(
        &'a self,
        base: &'a BTreeMap<K, V>,
        range: R,
    ) -> BTreeMap<&'a K, &'a V> {
        let mut out: BTreeMap<&K, &V> = if self.cleared {
            BTreeMap::new()
        } else {
            base.range(range.clone()).collect()
        };
        for (key, row) in self.rows.range(range) {
            match row {
                Some(value) => out.insert(key, value),
                None => out.remove(key),
            };
        }
        out
    }

    /// The last row as it is with these changes.
    fn last<'a>(&'a self, base: &'a BTreeMap<K, V>) -> Option<(&'a K, &'a V)> {
        let changed = self
            .rows
            .iter()
            .rev()
            .find_map(|(k, row)| row.as_ref().map(|v| (k, v)));
        let kept = if self.cleared {
            None
        } else {
            base.iter().rev().find(|(k, _)| !self.rows.contains_key(*k))
        };
        match (changed, kept) {
            (Some(a), Some(b)) => Some(if a.0 >= b.0 { a } else { b }),
            (a, b) => a.or(b),
        }
    }

    fn apply_to(self, base: &mut BTreeMap<K, V>) {
        if self.cleared {
            base.clear();
        }
        for (key, row) in self.rows {
            match row {
                Some(value) => base.insert(key, value),
                None => base.remove(&key),
            };
        }
    }

    /// The operations that make the object store `store` match.
    fn ops(
        &self,
        store: &'static str,
        key: impl Fn(&K) -> JsValue,
        value: impl Fn(&V) -> Result<String>,
        out: &mut Vec<Op>,
    ) -> Result<()> {
        if self.cleared {
            out.push(Op::Clear(store));
        }
        for (k, row) in &self.rows {
            out.push(match row {
                Some(v) => Op::Put {
                    store,
                    key: key(k),
                    value: value(v)?,
                },
                None => Op::Delete { store, key: key(k) },
            });
        }
        Ok(())
    }
}

/// Everything one write changes, recorded while the shared batch function runs.
#[derive(Debug, Default)]
struct Batch {
    log: Changes<u64, StoredEvent>,
    files: Changes<FileId, FileRecord>,
    local: Changes<FileId, LocalFileState>,
    cursors: Changes<String, FileSyncCursor>,
    remote_deletes: Changes<u64, ObjectKey>,
    confirmed: Option<EventSeq>,
    client_seq: Option<(u64, u64)>,
}

fn json<T: Serialize>(what: &'static str) -> impl Fn(&T) -> Result<String> {
    move |v| {
        serde_json::to_string(v).map_err(|e| Error::InvalidInput {
            what,
            reason: e.to_string(),
        })
    }
}

fn number_key(k: &u64) -> JsValue {
    // Exact up to 2^53, far beyond any log.
    JsValue::from_f64(*k as f64)
}

impl Batch {
    /// The IndexedDB operations that persist this batch (empty if it changes nothing stored).
    fn ops(&self) -> Result<Vec<Op>> {
        let mut ops = Vec::new();
        let log_value = |e: &StoredEvent| {
            json("event")(&LogRow {
                seq: e.seq,
                event: e.event.clone(),
            })
        };
        self.log.ops(EVENTLOG, number_key, log_value, &mut ops)?;
        let str_key = |k: &FileId| JsValue::from_str(k.as_str());
        self.files.ops(FILES, str_key, json("file row"), &mut ops)?;
        self.local
            .ops(LOCAL, str_key, json("local file state"), &mut ops)?;
        self.cursors.ops(
            CURSORS,
            |k: &String| JsValue::from_str(k),
            json("cursor"),
            &mut ops,
        )?;
        self.remote_deletes.ops(
            REMOTE_DELETES,
            number_key,
            |k: &ObjectKey| Ok(k.as_str().to_owned()),
            &mut ops,
        )?;
        if let Some(seq) = self.confirmed {
            ops.push(Op::Put {
                store: META,
                key: JsValue::from_str(CONFIRMED),
                value: seq.global.to_string(),
            });
        }
        Ok(ops)
    }

    fn apply_to(self, data: &mut Data) {
        self.log.apply_to(&mut data.log);
        self.files.apply_to(&mut data.files);
        self.local.apply_to(&mut data.local);
        self.cursors.apply_to(&mut data.cursors);
        self.remote_deletes.apply_to(&mut data.remote_deletes);
        if let Some(seq) = self.confirmed {
            data.confirmed = seq;
        }
        if let Some(seq) = self.client_seq {
            data.client_seq = seq;
        }
    }
}

/// The tables as one write sees them: the committed data plus this write's changes.
struct Pending<'a> {
    base: &'a Data,
    batch: Batch,
}

impl Tables for Pending<'_> {
    fn file(&mut self, id: &FileId) -> Result<Option<FileRecord>> {
        Ok(self.batch.files.get(&self.base.files, id).cloned())
    }

    fn head(&mut self) -> Result<EventSeq> {
        Ok(self
            .batch
            .log
            .last(&self.base.log)
            .map_or(EventSeq::ROOT, |(_, e)| e.seq))
    }

    fn append(&mut self, seq: EventSeq, event: &Event) -> Result<()> {
        let seq = EventSeq { client: 0, ..seq };
        self.batch.log.put(
            seq.global,
            StoredEvent {
                seq,
                event: event.clone(),
            },
        );
        Ok(())
    }

    fn apply(&mut self, mutation: Mutation) -> Result<()> {
        match mutation {
            Mutation::PutFile(row) => self.batch.files.put(row.id.clone(), row),
            Mutation::PutLocalState(row) => self.batch.local.put(row.file_id.clone(), row),
            Mutation::RemoveLocalState(id) => self.batch.local.remove(id),
            Mutation::ClearLocalState => self.batch.local.clear(),
            Mutation::PutCursor { id, value } => self.batch.cursors.put(id, value),
            Mutation::Nothing => {}
        }
        Ok(())
    }

    fn log_after(&mut self, seq: EventSeq) -> Result<Vec<StoredEvent>> {
        Ok(self
            .batch
            .log
            .range(
                &self.base.log,
                (Bound::Excluded(seq.global), Bound::Unbounded),
            )
            .into_values()
            .cloned()
            .collect())
    }

    fn truncate_after(&mut self, seq: EventSeq) -> Result<()> {
        let keys: Vec<u64> = self
            .batch
            .log
            .range(
                &self.base.log,
                (Bound::Excluded(seq.global), Bound::Unbounded),
            )
            .into_keys()
            .copied()
            .collect();
        for key in keys {
            self.batch.log.remove(key);
        }
        Ok(())
    }

    fn finalize_up_to(&mut self, global: u64) -> Result<()> {
        let finalized: Vec<StoredEvent> = self
            .batch
            .log
            .range(&self.base.log, ..=global)
            .into_values()
            .filter(|e| e.seq.rebase != 0)
            .map(|e| StoredEvent {
                seq: EventSeq::global(e.seq.global),
                event: e.event.clone(),
            })
            .collect();
        for e in finalized {
            self.batch.log.put(e.seq.global, e);
        }
        Ok(())
    }

    fn clear_files(&mut self) -> Result<()> {
        self.batch.files.clear();
        Ok(())
    }

    fn confirmed(&mut self) -> Result<EventSeq> {
        Ok(self.batch.confirmed.unwrap_or(self.base.confirmed))
    }

    fn set_confirmed(&mut self, seq: EventSeq) -> Result<()> {
        self.batch.confirmed = Some(seq);
        Ok(())
    }

    fn cursor(&mut self) -> Result<FileSyncCursor> {
        Ok(self
            .batch
            .cursors
            .get(&self.base.cursors, &CURSOR_DOCUMENT_ID.to_owned())
            .cloned()
            .unwrap_or_default())
    }
}

/// A [`Store`] in one IndexedDB database, for `wasm32-unknown-unknown` on a page or in a
/// dedicated worker. Cloning is cheap and shares the same connection and data.
///
/// Object stores mirror the SQLite store's tables: `eventlog` (keyed by global sequence
/// number), `files`, `localFileState`, `fileSyncCursor`, `remoteDeleteQueue` (keyed by
/// position) and `filesyncMeta` (`clientId`, `confirmed`, and `writes`: a counter of committed
/// write transactions). Rows are JSON strings of the core types.
///
/// - **Open** loads the whole database into memory in one read-only transaction; reads are
///   served from memory. A new database gets its schema and a random client id in its
///   version-change transaction, so the client id is stable for the database's life.
/// - **Writes** ([`Store::commit`], [`Store::apply_remote`], [`Store::confirm`],
///   [`Store::set_remote_delete`]) are serialised. Each runs filesync-core's shared
///   [`commit_batch`] / [`rebase_batch`] / [`confirm_batch`] over the in-memory tables while
///   recording what changes, writes exactly those rows in **one** read-write transaction
///   (`durability: "strict"`), waits for its `complete` event, and only then updates memory
///   and [`Store::watch`]. A refused batch or a failed transaction changes neither memory nor
///   the database (a failed transaction is a [`Error::Store`], retryable when the browser
///   says so, e.g. a full quota). A write whose future is dropped part-way still finishes (or
///   fails) as a whole in the background, so memory never diverges from the database.
/// - **Several connections** (tabs, workers, or several `IdbStore`s in one page) may open
///   and write the same database. Writes never build on stale memory: the write transaction
///   first reads the `writes` counter and, from that read's `success` event (the transaction
///   still active), writes the rows plus `writes + 1` only if the counter equals the one
///   memory was loaded at; otherwise it aborts, memory is reloaded from the database and the
///   batch runs again on the fresh tables. IndexedDB runs read-write transactions on the same
///   object stores one at a time across all connections of the origin, so this
///   compare-and-write is atomic: two writers never take the same sequence number or
///   overwrite each other's rows. A write that computes nothing to store (or is refused)
///   checks the counter in a read-only transaction before answering.
/// - **Other connections' writes** become visible promptly: each committed write posts the
///   new counter on `BroadcastChannel("filesync-idb:<name>")`; on such a message the other
///   stores reload memory and send their new head on [`Store::watch`] (so an engine following
///   the log with `subscribe` in another tab sees them). As a fallback for a missed message,
///   [`Store::events_after`] and [`Store::head`] check the counter at most every 250 ms
///   (`subscribe` polls `events_after` every 500 ms).
/// - If another connection deletes or upgrades the database, this store closes its
///   connection at once (so that it does not block them); its later writes fail with a
///   non-retryable [`Error::Store`] and reads keep answering from memory.
///
/// ```
/// # #[cfg(target_arch = "wasm32")]
/// # async fn example() -> filesync_core::Result<()> {
/// use std::sync::Arc;
/// use filesync_core::store::Store;
/// use filesync_opfs::IdbStore;
///
/// let store = IdbStore::open("filesync").await?;
/// let client_id = store.client_id().await?; // the same after every reopen
/// let store: Arc<dyn Store> = Arc::new(store); // hand it to the engine
/// # let _ = (client_id, store);
/// # Ok(())
/// # }
/// # fn main() {}
/// ```
#[derive(Clone)]
pub struct IdbStore {
    inner: Rc<Inner>,
}

struct Inner {
    name: String,
    db: IdbDatabase,
    data: RefCell<Data>,
    head: watch::Sender<EventSeq>,
    /// Held from the start of a write until its transaction finished and memory is updated,
    /// and while memory is reloaded: `data` only changes under it.
    write_lock: Arc<Mutex<()>>,
    /// Set when the connection was closed (versionchange elsewhere, or `destroy`).
    closed: Rc<Cell<bool>>,
    /// `BroadcastChannel("filesync-idb:<name>")`: after each write this posts the new write
    /// counter; other connections' messages make this store reload. `None` where the browser
    /// has no `BroadcastChannel` (reads then notice other writes by polling the counter).
    channel: Option<BroadcastChannel>,
    /// A reload task is queued (notifications arriving meanwhile are coalesced).
    refresh_queued: Cell<bool>,
    /// When memory was last known to be current; [`READ_CHECK_INTERVAL`] after it, log reads
    /// check the write counter again.
    checked_at: Cell<Option<Instant>>,
    _on_versionchange: Closure<dyn FnMut(web_sys::Event)>,
    _on_message: Option<Closure<dyn FnMut(MessageEvent)>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(channel) = &self.channel {
            channel.set_onmessage(None);
            channel.close();
        }
        self.db.set_onversionchange(None);
        self.db.close();
    }
}

/// The error of a write on a closed connection.
fn closed_error(op: &'static str) -> Error {
    idb::store_error(
        op,
        &idb::dom_error("InvalidStateError", "the database connection is closed"),
    )
}

impl Inner {
    /// The database's write counter, read in its own transaction.
    async fn read_writes(&self, op: &'static str) -> Result<u64> {
        let value = idb::get(&self.db, META, &JsValue::from_str(WRITES))
            .await
            .map_err(|e| idb::store_error(op, &e))?;
        parse_writes(&value).ok_or_else(|| not_a_store(&self.name, "unreadable write counter"))
    }

    /// Replace memory with what the database holds now and tell watchers. Call with the write
    /// lock held.
    async fn reload(&self) -> Result<()> {
        let mut fresh = load(&self.db, &self.name).await?;
        let head = {
            let mut data = self.data.borrow_mut();
            fresh.client_seq = data.client_seq;
            tracing::debug!(
                database = %self.name,
                from = data.writes,
                to = fresh.writes,
                "IndexedDB store changed by another connection: reloaded"
            );
            *data = fresh;
            data.head()
        };
        self.checked_at.set(Some(Instant::now()));
        self.head.send_replace(head);
        Ok(())
    }

    /// Reload if another connection wrote since memory was loaded. `wait`: wait for a running
    /// write of this store; otherwise skip the check then (that write brings memory up to date).
    async fn refresh(&self, wait: bool) -> Result<()> {
        let _guard = if wait {
            self.write_lock.lock().await
        } else {
            match self.write_lock.try_lock() {
                Ok(guard) => guard,
                Err(_) => return Ok(()),
            }
        };
        if self.closed.get() {
            return Ok(());
        }
        let current = self.read_writes("refresh").await?;
        if current == self.data.borrow().writes {
            self.checked_at.set(Some(Instant::now()));
            return Ok(());
        }
        self.reload().await
    }

    /// Another connection says it wrote: reload (in a task) unless memory is that new already.
    fn notified(self: Rc<Self>, writes: Option<f64>) {
        if self.closed.get() {
            return;
        }
        if let Some(writes) = writes
            && let Ok(data) = self.data.try_borrow()
            && writes <= data.writes as f64
        {
            return;
        }
        if self.refresh_queued.replace(true) {
            return;
        }
        wasm_bindgen_futures::spawn_local(async move {
            self.refresh_queued.set(false);
            if let Err(e) = self.refresh(true).await {
                tracing::warn!(database = %self.name, error = %e, "reloading the IndexedDB store failed");
            }
        });
    }

    /// Before a read that follows the log: check the write counter if it was not checked for
    /// [`READ_CHECK_INTERVAL`] (a fallback for missed notifications). Errors are logged only:
    /// the read is then answered from memory.
    async fn check_if_due(&self) {
        if self.closed.get() {
            return;
        }
        if let Some(at) = self.checked_at.get()
            && at.elapsed() < READ_CHECK_INTERVAL
        {
            return;
        }
        self.checked_at.set(Some(Instant::now()));
        if let Err(e) = self.refresh(false).await {
            tracing::debug!(database = %self.name, error = %e, "checking the IndexedDB store failed");
        }
    }

    /// Make memory what the database holds after a write of `batch` that left the counter at
    /// `writes`, and tell watchers.
    fn apply(&self, batch: Batch, writes: u64, notify: bool) {
        let notify = notify || !batch.log.is_empty();
        let head = {
            let mut data = self.data.borrow_mut();
            batch.apply_to(&mut data);
            data.writes = writes;
            data.head()
        };
        self.checked_at.set(Some(Instant::now()));
        if notify {
            self.head.send_replace(head);
        }
    }

    /// One write, with the write lock held: compute the batch on memory, then store it only
    /// if the database's write counter still equals memory's (bumping it in the same
    /// transaction). If another connection wrote first, reload and compute again.
    async fn write_locked<T>(
        &self,
        op: &'static str,
        notify: bool,
        mut f: impl FnMut(&mut Pending<'_>) -> Result<T>,
    ) -> Result<T> {
        for _ in 0..MAX_WRITE_ATTEMPTS {
            if self.closed.get() {
                return Err(closed_error(op));
            }
            let (outcome, batch, writes) = {
                let data = self.data.borrow();
                let mut pending = Pending {
                    base: &data,
                    batch: Batch::default(),
                };
                let outcome = f(&mut pending);
                (outcome, pending.batch, data.writes)
            };
            let mut ops = match &outcome {
                Ok(_) => batch.ops()?,
                Err(_) => Vec::new(),
            };
            if ops.is_empty() {
                // Nothing to store, or the batch was refused: that answer holds only if memory
                // was current.
                if self.read_writes(op).await? == writes {
                    if outcome.is_ok() {
                        self.apply(batch, writes, notify);
                    }
                    return outcome;
                }
            } else {
                ops.push(Op::Put {
                    store: META,
                    key: JsValue::from_str(WRITES),
                    value: (writes + 1).to_string(),
                });
                let committed = idb::write_if(
                    &self.db,
                    &ALL_STORES,
                    META,
                    &JsValue::from_str(WRITES),
                    move |stored| parse_writes(stored) == Some(writes),
                    ops,
                )
                .await
                .map_err(|e| idb::store_error(op, &e))?;
                if committed {
                    self.apply(batch, writes + 1, notify);
                    if let Some(channel) = &self.channel
                        && let Err(e) =
                            channel.post_message(&JsValue::from_f64((writes + 1) as f64))
                    {
                        tracing::debug!(error = ?e, "posting the IndexedDB change notification failed");
                    }
                    return outcome;
                }
            }
            tracing::debug!(database = %self.name, op, "another connection wrote first: reloading");
            self.reload().await?;
        }
        Err(Error::Store {
            op,
            retryable: true,
            source: Box::new(std::io::Error::other(format!(
                "other connections kept writing the database; gave up after \
                 {MAX_WRITE_ATTEMPTS} attempts"
            ))),
        })
    }
}

impl fmt::Debug for IdbStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let data = self.inner.data.borrow();
        f.debug_struct("IdbStore")
            .field("name", &self.inner.name)
            .field("head", &data.head())
            .field("confirmed", &data.confirmed)
            .field("writes", &data.writes)
            .field("closed", &self.inner.closed.get())
            .finish_non_exhaustive()
    }
}

fn get_factory() -> Result<IdbFactory> {
    match idb::factory() {
        Ok(Some(f)) => Ok(f),
        Ok(None) => Err(Error::Unsupported {
            what: "IndexedDB (globalThis.indexedDB)",
        }),
        Err(e) => Err(idb::store_error("open", &e)),
    }
}

fn not_a_store(name: &str, reason: impl Into<String>) -> Error {
    Error::NotAStore {
        path: format!("IndexedDB database {name:?}"),
        reason: reason.into(),
    }
}

/// Create the object stores and the metadata of a new database (inside `upgradeneeded`).
fn create_schema(db: &IdbDatabase, txn: &IdbTransaction, old_version: f64) -> Result<(), JsValue> {
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

/// The values of a finished `getAll`/`getAllKeys` request.
fn array_of(request: &web_sys::IdbRequest) -> Result<Vec<JsValue>, JsValue> {
    let result = request.result()?;
    Ok(js_sys::Array::from(&result).to_vec())
}

/// Read every object store in one read-only transaction.
async fn load(db: &IdbDatabase, name: &str) -> Result<Data> {
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
        move |e: serde_json::Error| not_a_store(name, format!("unreadable {what}: {e}"))
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
            .map_err(|e| not_a_store(name, format!("unreadable remote delete: {e}")))?;
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

impl IdbStore {
    /// Open (creating it if needed) the IndexedDB database `name` of this origin and load it.
    ///
    /// Fails with [`Error::Unsupported`] where there is no IndexedDB, with
    /// [`Error::NotAStore`] (leaving it untouched) if the database exists but is not a
    /// filesync store (other object stores, a newer schema version, unreadable rows), and with
    /// [`Error::Store`] when the browser refuses (e.g. some private modes).
    pub async fn open(name: &str) -> Result<Self> {
        if name.is_empty() {
            return Err(Error::InvalidInput {
                what: "IndexedDB database name",
                reason: "must not be empty".into(),
            });
        }
        let factory = get_factory()?;
        let db = idb::open(&factory, name, IDB_SCHEMA_VERSION, Box::new(create_schema))
            .await
            .map_err(|e| match crate::js::error_name(&e).as_str() {
                "VersionError" => not_a_store(
                    name,
                    format!(
                        "its schema version is newer than this build understands \
                         ({IDB_SCHEMA_VERSION})"
                    ),
                ),
                _ => idb::store_error("open", &e),
            })?;
        let names = db.object_store_names();
        if let Some(missing) = ALL_STORES.iter().find(|s| !names.contains(s)) {
            db.close();
            return Err(not_a_store(
                name,
                format!("it has no {missing:?} object store"),
            ));
        }
        let data = match load(&db, name).await {
            Ok(data) => data,
            Err(e) => {
                db.close();
                return Err(e);
            }
        };
        let closed = Rc::new(Cell::new(false));
        let on_versionchange = Closure::<dyn FnMut(web_sys::Event)>::new({
            let db = db.clone();
            let closed = Rc::clone(&closed);
            let name = name.to_owned();
            move |_: web_sys::Event| {
                tracing::info!(
                    database = %name,
                    "IndexedDB database deleted or upgraded elsewhere: closing this store"
                );
                closed.set(true);
                db.close();
            }
        });
        db.set_onversionchange(Some(wasm_bindgen::JsCast::unchecked_ref(
            on_versionchange.as_ref(),
        )));
        let head = data.head();
        let channel = match BroadcastChannel::new(&channel_name(name)) {
            Ok(channel) => Some(channel),
            Err(e) => {
                tracing::warn!(
                    database = %name,
                    error = ?e,
                    "no BroadcastChannel: other connections' writes are noticed by polling"
                );
                None
            }
        };
        let inner = Rc::new_cyclic(|weak: &Weak<Inner>| {
            let on_message = channel.as_ref().map(|channel| {
                let weak = weak.clone();
                let callback =
                    Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
                        if let Some(inner) = weak.upgrade() {
                            inner.notified(event.data().as_f64());
                        }
                    });
                channel.set_onmessage(Some(wasm_bindgen::JsCast::unchecked_ref(callback.as_ref())));
                callback
            });
            Inner {
                name: name.to_owned(),
                db,
                data: RefCell::new(data),
                head: watch::channel(head).0,
                write_lock: Arc::new(Mutex::new(())),
                closed,
                channel,
                refresh_queued: Cell::new(false),
                checked_at: Cell::new(Some(Instant::now())),
                _on_versionchange: on_versionchange,
                _on_message: on_message,
            }
        });
        Ok(Self { inner })
    }

    /// [`IdbStore::open`] on [`DEFAULT_DATABASE`] (`"filesync"`).
    pub async fn open_default() -> Result<Self> {
        Self::open(DEFAULT_DATABASE).await
    }

    /// A store in a new, uniquely named database `filesync-scratch-<uuid>`, for tests. It is
    /// not removed automatically: call [`IdbStore::destroy`].
    pub async fn scratch() -> Result<Self> {
        Self::open(&format!("filesync-scratch-{}", FileId::random())).await
    }

    /// The database name, as given to [`IdbStore::open`].
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Close this store's connection and delete its database. Other clones of this store
    /// (and other stores on the same database) are closed too: their writes fail from then on.
    pub async fn destroy(self) -> Result<()> {
        self.inner.closed.set(true);
        self.inner.db.close();
        let name = self.inner.name.clone();
        drop(self);
        Self::delete(&name).await
    }

    /// Delete the database `name` (fine if there is none). Open stores on it close their
    /// connections when asked, so this does not wait for them to be dropped.
    pub async fn delete(name: &str) -> Result<()> {
        let factory = get_factory()?;
        idb::delete(&factory, name)
            .await
            .map_err(|e| idb::store_error("delete", &e))
    }

    /// Run one write: `f` records its changes on the committed data; they are persisted in one
    /// transaction (if no other connection wrote first: then memory is reloaded and `f` runs
    /// again) and then applied to memory. `notify` sends the head to watchers even when the
    /// log did not change. The write runs in its own task, so dropping the returned future
    /// does not leave memory and the database apart.
    async fn write<T: 'static>(
        &self,
        op: &'static str,
        notify: bool,
        f: impl FnMut(&mut Pending<'_>) -> Result<T> + 'static,
    ) -> Result<T> {
        let guard = Arc::clone(&self.inner.write_lock).lock_owned().await;
        let inner = Rc::clone(&self.inner);
        let (tx, rx) = futures::channel::oneshot::channel();
        wasm_bindgen_futures::spawn_local(async move {
            let result = inner.write_locked(op, notify, f).await;
            drop(guard);
            let _ = tx.send(result);
        });
        rx.await.map_err(|_| Error::Shutdown)?
    }
}

#[async_trait(?Send)]
impl Store for IdbStore {
    async fn commit(&self, events: Vec<Event>) -> Result<Vec<EventSeq>> {
        self.write("commit", false, move |p| {
            let mut client_seq = p.base.client_seq;
            let seqs = commit_batch(p, &mut client_seq, &events)?;
            p.batch.client_seq = Some(client_seq);
            Ok(seqs)
        })
        .await
    }

    async fn file(&self, id: &FileId) -> Result<Option<FileRecord>> {
        Ok(self.inner.data.borrow().files.get(id).cloned())
    }

    async fn files(&self) -> Result<Vec<FileRecord>> {
        Ok(self.inner.data.borrow().files.values().cloned().collect())
    }

    async fn local_state(&self, id: &FileId) -> Result<Option<LocalFileState>> {
        Ok(self.inner.data.borrow().local.get(id).cloned())
    }

    async fn local_states(&self) -> Result<Vec<LocalFileState>> {
        Ok(self.inner.data.borrow().local.values().cloned().collect())
    }

    async fn cursor(&self) -> Result<FileSyncCursor> {
        Ok(self
            .inner
            .data
            .borrow()
            .cursors
            .get(CURSOR_DOCUMENT_ID)
            .cloned()
            .unwrap_or_default())
    }

    async fn events_after(&self, after: EventSeq, limit: usize) -> Result<Vec<StoredEvent>> {
        self.inner.check_if_due().await;
        Ok(self
            .inner
            .data
            .borrow()
            .log
            .range((Bound::Excluded(after.global), Bound::Unbounded))
            .take(limit.min(MAX_READ_BATCH))
            .map(|(_, e)| e.clone())
            .collect())
    }

    async fn head(&self) -> Result<EventSeq> {
        self.inner.check_if_due().await;
        Ok(self.inner.data.borrow().head())
    }

    fn watch(&self) -> watch::Receiver<EventSeq> {
        self.inner.head.subscribe()
    }

    async fn client_id(&self) -> Result<String> {
        Ok(self.inner.data.borrow().client_id.clone())
    }

    async fn confirmed(&self) -> Result<EventSeq> {
        Ok(self.inner.data.borrow().confirmed)
    }

    async fn confirm(&self, seq: EventSeq) -> Result<()> {
        self.write("confirm", true, move |p| confirm_batch(p, seq))
            .await
    }

    async fn apply_remote(&self, events: Vec<Event>) -> Result<bool> {
        self.write("apply remote events", true, move |p| {
            rebase_batch(p, &events)
        })
        .await
    }

    async fn remote_deletes(&self) -> Result<Vec<ObjectKey>> {
        Ok(self
            .inner
            .data
            .borrow()
            .remote_deletes
            .values()
            .cloned()
            .collect())
    }

    async fn set_remote_delete(&self, key: &ObjectKey, owed: bool) -> Result<()> {
        let key = key.clone();
        self.write("queue remote delete", false, move |p| {
            let key = &key;
            let queue = &p.base.remote_deletes;
            let present = queue.iter().find(|(_, k)| *k == key).map(|(pos, _)| *pos);
            match (owed, present) {
                (true, None) => {
                    let next = queue.last_key_value().map_or(1, |(pos, _)| pos + 1);
                    p.batch.remote_deletes.put(next, key.clone());
                }
                (false, Some(pos)) => p.batch.remote_deletes.remove(pos),
                _ => {}
            }
            Ok(())
        })
        .await
    }
}
