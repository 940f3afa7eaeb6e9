//! Engines in tests: where they keep files and rows ([`Disk`]), fast options, and what tests
//! wait for (uploads, downloads, events).

use std::sync::Arc;
use std::time::Duration;

use filesync_core::events::SyncEvent;
use filesync_core::fs::{FileSystem, MemoryFs, NativeFs, collect_stream};
use filesync_core::schema::{EventSeq, TransferStatus};
use filesync_core::store::{MemoryStore, SqliteStore, Store};
use filesync_core::types::FileId;
use filesync_core::{FileSync, FileSyncBuilder, Options, RetryPolicy};
use futures::{Stream, StreamExt};

use super::{eventually, store_id};

/// Where an engine keeps its files and its rows.
pub struct Disk {
    pub fs: Arc<dyn FileSystem>,
    pub store: Arc<dyn Store>,
}

impl Disk {
    /// `MemoryFs` and `MemoryStore`.
    pub fn memory() -> Self {
        Self {
            fs: Arc::new(MemoryFs::new()),
            store: Arc::new(MemoryStore::new()),
        }
    }

    /// A fresh directory (`NativeFs`) and SQLite file, removed when the test process ends.
    pub async fn scratch() -> Self {
        Self {
            fs: Arc::new(NativeFs::scratch().unwrap()),
            store: Arc::new(SqliteStore::scratch().await.unwrap()),
        }
    }

    /// A builder for an engine of store `store` on this disk.
    pub fn builder(&self, store: &str) -> FileSyncBuilder {
        FileSync::builder(
            store_id(store),
            Arc::clone(&self.fs),
            Arc::clone(&self.store),
        )
    }
}

/// Intervals short enough for tests to run in real time: health every 50 ms, heartbeat every
/// 100 ms, five retries from 20 ms, transfers time out after 500 ms.
pub fn fast() -> Options {
    {
        let mut o = Options::default();
        o.health_check_interval = Duration::from_millis(50);
        o.heartbeat_interval = Duration::from_millis(100);
        o.retry = {
            let mut o = RetryPolicy::default();
            o.base_delay = Duration::from_millis(20);
            o.max_elapsed = Duration::from_secs(10);
            o.max_retries = 5;
            o.jitter = 0.2;
            o
        };
        o.transfer_timeout = Duration::from_millis(500);
        o
    }
}

/// The default options, with retries starting at 20 ms.
pub fn retry_fast() -> Options {
    {
        let mut o = Options::default();
        o.retry = {
            let mut o = RetryPolicy::default();
            o.base_delay = Duration::from_millis(20);
            o
        };
        o
    }
}

/// Whether the file's record has a remote key (its upload finished); panics if there is no
/// record.
pub async fn uploaded(store: &(impl Store + ?Sized), id: &FileId) -> bool {
    store
        .file(id)
        .await
        .unwrap()
        .expect("the file's record")
        .remote_key
        .is_some()
}

/// Wait (up to 10 s) until the file's upload finished; panics naming `what` if it does not.
pub async fn until_uploaded(what: &str, store: &(impl Store + ?Sized), id: &FileId) {
    eventually(what, || uploaded(store, id)).await;
}

/// Wait (up to 10 s) until the file is downloaded; panics naming `what` if it is not.
pub async fn until_downloaded(what: &str, store: &(impl Store + ?Sized), id: &FileId) {
    eventually(what, || downloaded(store, id)).await;
}

/// Whether the file's local state says it is downloaded.
pub async fn downloaded(store: &(impl Store + ?Sized), id: &FileId) -> bool {
    store
        .local_state(id)
        .await
        .unwrap()
        .is_some_and(|s| s.download_status == TransferStatus::Done)
}

/// Copy the synced events of `from` after `after` into `to`, as the relay will. Returns the
/// new position.
pub async fn forward(
    from: &(impl Store + ?Sized),
    to: &(impl Store + ?Sized),
    after: EventSeq,
) -> EventSeq {
    let events = from.events_after(after, 1000).await.unwrap();
    let last = events.last().map_or(after, |e| e.seq);
    if !events.is_empty() {
        to.commit(events.into_iter().map(|e| e.event).collect())
            .await
            .unwrap();
    }
    last
}

/// Every event `events` has already received, without waiting for more: a negative check
/// first waits for a condition under which the event would have been emitted, then looks
/// here. (Unconstrained by tokio's co-operative budget, so a long backlog is read in full.)
pub fn buffered(events: &mut (impl Stream<Item = SyncEvent> + Unpin)) -> Vec<SyncEvent> {
    let mut out = Vec::new();
    while let Some(Some(e)) =
        futures::FutureExt::now_or_never(tokio::task::unconstrained(events.next()))
    {
        out.push(e);
    }
    out
}

/// Read `events` (up to 10 s) until one satisfies `pred`: every event seen, that one last.
/// Panics naming `what` and the kinds seen if none does.
pub async fn until(
    events: &mut (impl Stream<Item = SyncEvent> + Unpin),
    what: &str,
    pred: impl Fn(&SyncEvent) -> bool,
) -> Vec<SyncEvent> {
    let mut seen = Vec::new();
    let found = filesync_core::rt::timeout(Duration::from_secs(10), async {
        while let Some(e) = events.next().await {
            let hit = pred(&e);
            seen.push(e);
            if hit {
                return;
            }
        }
    })
    .await;
    assert!(
        found.is_ok(),
        "no {what}; saw {:?}",
        seen.iter().map(SyncEvent::kind).collect::<Vec<_>>()
    );
    seen
}

/// The content of file `id` as text, if `sync` can read it.
pub async fn content(sync: &FileSync, id: &FileId) -> Option<String> {
    let f = sync.read_file(id).await.ok()?;
    Some(String::from_utf8(collect_stream(f.body).await.ok()?.to_vec()).unwrap())
}
