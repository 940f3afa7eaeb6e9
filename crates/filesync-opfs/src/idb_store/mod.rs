//! [`IdbStore`]: the [`Store`] over the browser's IndexedDB.
//!
//! By concern: `schema` (object stores and the schema of a new database), `data` (the
//! database in memory and loading it), `batch` (one write's changes as the shared batch
//! functions see them), `write` (writes and following other connections' writes) and
//! `open` (opening and deleting databases).

mod batch;
mod data;
mod open;
mod schema;
mod write;

use std::cell::{Cell, RefCell};
use std::fmt;
use std::ops::Bound;
use std::rc::Rc;
use std::sync::Arc;

use async_trait::async_trait;
use filesync_core::Result;
use filesync_core::rt::Instant;
use filesync_core::schema::{
    CURSOR_DOCUMENT_ID, Event, EventSeq, FileRecord, FileSyncCursor, LocalFileState,
};
use filesync_core::store::backend::{commit_batch, confirm_batch, rebase_batch};
use filesync_core::store::{MAX_READ_BATCH, Store, StoredEvent};
use filesync_core::types::{FileId, ObjectKey};
use tokio::sync::{Mutex, watch};
use wasm_bindgen::prelude::Closure;
use web_sys::{BroadcastChannel, IdbDatabase, MessageEvent};

use self::data::Data;

/// The IndexedDB schema version of the database [`IdbStore`] creates.
pub const IDB_SCHEMA_VERSION: u32 = 1;
/// The database name of [`IdbStore::open_default`].
pub const DEFAULT_DATABASE: &str = "filesync";

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
///   the database (a failed transaction is a [`Error::Store`](filesync_core::Error::Store),
///   retryable when the browser says so, e.g. a full quota). A write whose future is dropped
///   part-way still finishes (or fails) as a whole in the background, so memory never
///   diverges from the database.
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
///   non-retryable [`Error::Store`](filesync_core::Error::Store) and reads keep answering from
///   memory.
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
    /// When memory was last known to be current; [`write::READ_CHECK_INTERVAL`] after it, log reads
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
