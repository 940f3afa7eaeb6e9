//! The event log and its materialized tables: [`Store`], with [`MemoryStore`] (reference
//! implementation) and [`SqliteStore`] (rusqlite, native; the embedded default).
//!
//! A store appends [`Event`]s, applies the schema's materializers ([`crate::schema::materialize`])
//! in the same transaction, serves the `files` and `localFileState` rows and the `fileSyncCursor`
//! document, and lets the engine follow the log from a cursor ([`subscribe`]).
//!
//! Sequence numbers follow LiveStore (SCH-3): each synced event (`v1.File*`) gets the next global
//! number `e{n}`; a client-only event gets `e{head}.{k}`. Only synced events are kept in the log;
//! client-only events change their tables and are then done (they are never pushed anywhere).
//!
//! Every implementation passes the same conformance suite, `testing::store` (feature `testing`),
//! and runs the same commit, rebase and confirm algorithms over its own transaction
//! ([`backend`]: how to implement a new store).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tokio::sync::watch;

use crate::Result;
use crate::rt::{BoxStream, MaybeSend, MaybeSync};
use crate::schema::{
    CURSOR_DOCUMENT_ID, Event, EventSeq, FileRecord, FileSyncCursor, LocalFileState, Mutation,
};
use crate::types::{FileId, ObjectKey};

use backend::{Tables, commit_batch, confirm_batch, rebase_batch};

pub mod backend;
#[cfg(not(target_arch = "wasm32"))]
mod sqlite;
#[cfg(not(target_arch = "wasm32"))]
pub use sqlite::{DEFAULT_BUSY_TIMEOUT, SqliteStore};

/// A synced event in the log with its position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    /// Its sequence number, `e{global}`.
    pub seq: EventSeq,
    /// The event.
    pub event: Event,
}

/// How often [`subscribe`] re-reads the log when no notification came: commits made through
/// another connection to the same file (another process) do not notify this one.
pub const POLL_INTERVAL: std::time::Duration = std::time::Duration::from_millis(500);

/// The most events [`Store::events_after`] returns at once.
pub const MAX_READ_BATCH: usize = 1000;

/// An event log with materialized tables.
///
/// Contract (checked by `testing::store`):
/// - `commit` is atomic: every event of the batch is logged and materialized, or none is.
///   It returns the sequence number assigned to each event, in order.
/// - A `fileSyncCursorSet` whose cursor is beyond the log head is refused with
///   [`Error::Conflict`](crate::Error::Conflict) (and, being atomic, takes the rest of its batch with it).
/// - `files` returns every row, soft-deleted ones included, ordered by id.
/// - `events_after(seq, limit)` returns synced events with a global number above `seq.global`,
///   in order, at most `limit` (capped at [`MAX_READ_BATCH`]).
/// - `watch` yields the head after every commit that appended synced events.
#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
pub trait Store: MaybeSend + MaybeSync + std::fmt::Debug + 'static {
    /// Append and materialize events in one transaction.
    async fn commit(&self, events: Vec<Event>) -> Result<Vec<EventSeq>>;
    /// One `files` row.
    async fn file(&self, id: &FileId) -> Result<Option<FileRecord>>;
    /// Every `files` row, including soft-deleted ones, ordered by id.
    async fn files(&self) -> Result<Vec<FileRecord>>;
    /// One `localFileState` row.
    async fn local_state(&self, id: &FileId) -> Result<Option<LocalFileState>>;
    /// Every `localFileState` row, ordered by file id.
    async fn local_states(&self) -> Result<Vec<LocalFileState>>;
    /// The `fileSyncCursor` document, or its default (`e0`, epoch) if never set.
    async fn cursor(&self) -> Result<FileSyncCursor>;
    /// Synced events after `after`, in order.
    async fn events_after(&self, after: EventSeq, limit: usize) -> Result<Vec<StoredEvent>>;
    /// The sequence number of the last synced event (`e0` when the log is empty).
    async fn head(&self) -> Result<EventSeq>;
    /// A receiver that changes to the new head whenever synced events are appended.
    fn watch(&self) -> watch::Receiver<EventSeq>;

    /// This store's client id: random, stable for the life of the store, sent as `clientId`.
    async fn client_id(&self) -> Result<String>;
    /// The last position the relay acknowledged (`e0` if never synced). Synced events after it
    /// are pending: committed here, not yet ordered by the relay.
    async fn confirmed(&self) -> Result<EventSeq>;
    /// Record that the relay acknowledged every event up to `seq` (at most the head). Their
    /// numbers are final from then on: a rebase generation they carried is dropped (`e7r1`
    /// becomes `e7`, as every other client numbers it).
    async fn confirm(&self, seq: EventSeq) -> Result<()>;
    /// Insert events other clients committed, which the relay ordered right after
    /// [`confirmed`](Store::confirmed), and move the confirmed position past them. Pending local
    /// events are rebased after them (renumbered, tables rebuilt, and the cursor rewound to the
    /// old confirmed position so the engine sees every event in the new order). Atomic.
    /// Returns whether pending events were rebased.
    async fn apply_remote(&self, events: Vec<Event>) -> Result<bool>;

    /// Remote objects whose deletion is still owed (WEAK-7), in the order they were added.
    async fn remote_deletes(&self) -> Result<Vec<ObjectKey>>;
    /// Record (`owed = true`) or clear an owed remote delete. Idempotent.
    async fn set_remote_delete(&self, key: &ObjectKey, owed: bool) -> Result<()>;
}

/// Follow the log from `after`: a stream of non-empty batches of synced events, in order,
/// waiting for new commits when it has caught up (and re-reading every [`POLL_INTERVAL`], to
/// see other processes' commits). Ends only if the store is dropped.
pub fn subscribe(
    store: Arc<dyn Store>,
    after: EventSeq,
) -> BoxStream<'static, Result<Vec<StoredEvent>>> {
    let state = (store, after, None::<watch::Receiver<EventSeq>>);
    let stream = futures::stream::unfold(Some(state), |state| async move {
        let (store, mut after, rx) = state?;
        // Subscribe before reading, so a commit between the read and the wait is not missed.
        let mut rx = rx.unwrap_or_else(|| store.watch());
        loop {
            rx.borrow_and_update();
            match store.events_after(after, MAX_READ_BATCH).await {
                Err(e) => return Some((Err(e), None)),
                Ok(batch) if !batch.is_empty() => {
                    if let Some(last) = batch.last() {
                        after = last.seq;
                    }
                    return Some((Ok(batch), Some((store, after, Some(rx)))));
                }
                Ok(_) => {
                    let changed = std::pin::pin!(rx.changed());
                    let poll = std::pin::pin!(crate::rt::sleep(POLL_INTERVAL));
                    if let futures::future::Either::Left((Err(_), _)) =
                        futures::future::select(changed, poll).await
                    {
                        return None;
                    }
                }
            }
        }
    });
    crate::rt::boxed_stream(stream)
}

#[derive(Debug, Default, Clone)]
struct MemoryTables {
    log: Vec<StoredEvent>,
    files: BTreeMap<FileId, FileRecord>,
    local: BTreeMap<FileId, LocalFileState>,
    cursors: HashMap<String, FileSyncCursor>,
    client_seq: (u64, u64),
    confirmed: EventSeq,
    remote_deletes: Vec<ObjectKey>,
}

impl Tables for MemoryTables {
    fn file(&mut self, id: &FileId) -> Result<Option<FileRecord>> {
        Ok(self.files.get(id).cloned())
    }
    fn head(&mut self) -> Result<EventSeq> {
        Ok(self.log.last().map_or(EventSeq::ROOT, |e| e.seq))
    }
    fn append(&mut self, seq: EventSeq, event: &Event) -> Result<()> {
        self.log.push(StoredEvent {
            seq,
            event: event.clone(),
        });
        Ok(())
    }
    fn apply(&mut self, mutation: Mutation) -> Result<()> {
        match mutation {
            Mutation::PutFile(row) => {
                self.files.insert(row.id.clone(), row);
            }
            Mutation::PutLocalState(row) => {
                self.local.insert(row.file_id.clone(), row);
            }
            Mutation::RemoveLocalState(id) => {
                self.local.remove(&id);
            }
            Mutation::ClearLocalState => self.local.clear(),
            Mutation::PutCursor { id, value } => {
                self.cursors.insert(id, value);
            }
            Mutation::Nothing => {}
        }
        Ok(())
    }
    fn log_after(&mut self, seq: EventSeq) -> Result<Vec<StoredEvent>> {
        Ok(self
            .log
            .iter()
            .filter(|e| e.seq.global > seq.global)
            .cloned()
            .collect())
    }
    fn truncate_after(&mut self, seq: EventSeq) -> Result<()> {
        self.log.retain(|e| e.seq.global <= seq.global);
        Ok(())
    }
    fn finalize_up_to(&mut self, global: u64) -> Result<()> {
        for e in self.log.iter_mut().filter(|e| e.seq.global <= global) {
            e.seq.rebase = 0;
        }
        Ok(())
    }

    fn clear_files(&mut self) -> Result<()> {
        self.files.clear();
        Ok(())
    }
    fn confirmed(&mut self) -> Result<EventSeq> {
        Ok(self.confirmed)
    }
    fn set_confirmed(&mut self, seq: EventSeq) -> Result<()> {
        self.confirmed = seq;
        Ok(())
    }
    fn cursor(&mut self) -> Result<FileSyncCursor> {
        Ok(self
            .cursors
            .get(CURSOR_DOCUMENT_ID)
            .cloned()
            .unwrap_or_default())
    }
}

/// An in-memory [`Store`]: the reference implementation, for fast tests and ephemeral use.
/// Cloning shares the same log.
#[derive(Debug, Clone)]
pub struct MemoryStore {
    tables: Arc<Mutex<MemoryTables>>,
    head: Arc<watch::Sender<EventSeq>>,
    client_id: Arc<str>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self {
            tables: Arc::default(),
            head: Arc::new(watch::channel(EventSeq::ROOT).0),
            client_id: FileId::random().to_string().into(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemoryTables> {
        // Commits work on a copy and swap it in, so a poisoned lock never holds a half commit.
        self.tables.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
impl Store for MemoryStore {
    async fn commit(&self, events: Vec<Event>) -> Result<Vec<EventSeq>> {
        let (seqs, head, grew) = {
            let mut guard = self.lock();
            let before = guard.log.len();
            let mut next = guard.clone();
            let mut client_seq = next.client_seq;
            let seqs = commit_batch(&mut next, &mut client_seq, &events)?;
            next.client_seq = client_seq;
            let grew = next.log.len() > before;
            *guard = next;
            (seqs, guard.head()?, grew)
        };
        if grew {
            self.head.send_replace(head);
        }
        Ok(seqs)
    }

    async fn file(&self, id: &FileId) -> Result<Option<FileRecord>> {
        Ok(self.lock().files.get(id).cloned())
    }

    async fn files(&self) -> Result<Vec<FileRecord>> {
        Ok(self.lock().files.values().cloned().collect())
    }

    async fn local_state(&self, id: &FileId) -> Result<Option<LocalFileState>> {
        Ok(self.lock().local.get(id).cloned())
    }

    async fn local_states(&self) -> Result<Vec<LocalFileState>> {
        Ok(self.lock().local.values().cloned().collect())
    }

    async fn cursor(&self) -> Result<FileSyncCursor> {
        Ok(self
            .lock()
            .cursors
            .get(CURSOR_DOCUMENT_ID)
            .cloned()
            .unwrap_or_default())
    }

    async fn events_after(&self, after: EventSeq, limit: usize) -> Result<Vec<StoredEvent>> {
        let guard = self.lock();
        let start = guard.log.partition_point(|e| e.seq.global <= after.global);
        Ok(guard.log[start..]
            .iter()
            .take(limit.min(MAX_READ_BATCH))
            .cloned()
            .collect())
    }

    async fn head(&self) -> Result<EventSeq> {
        self.lock().head()
    }

    fn watch(&self) -> watch::Receiver<EventSeq> {
        self.head.subscribe()
    }

    async fn client_id(&self) -> Result<String> {
        Ok(self.client_id.to_string())
    }

    async fn confirmed(&self) -> Result<EventSeq> {
        Ok(self.lock().confirmed)
    }

    async fn confirm(&self, seq: EventSeq) -> Result<()> {
        let mut guard = self.lock();
        let mut next = guard.clone();
        confirm_batch(&mut next, seq)?;
        *guard = next;
        let head = guard.head()?;
        drop(guard);
        self.head.send_replace(head);
        Ok(())
    }

    async fn apply_remote(&self, events: Vec<Event>) -> Result<bool> {
        let (rebased, head) = {
            let mut guard = self.lock();
            let mut next = guard.clone();
            let rebased = rebase_batch(&mut next, &events)?;
            *guard = next;
            (rebased, guard.head()?)
        };
        self.head.send_replace(head);
        Ok(rebased)
    }

    async fn remote_deletes(&self) -> Result<Vec<ObjectKey>> {
        Ok(self.lock().remote_deletes.clone())
    }

    async fn set_remote_delete(&self, key: &ObjectKey, owed: bool) -> Result<()> {
        let mut guard = self.lock();
        let present = guard.remote_deletes.contains(key);
        if owed && !present {
            guard.remote_deletes.push(key.clone());
        } else if !owed && present {
            guard.remote_deletes.retain(|k| k != key);
        }
        Ok(())
    }
}
