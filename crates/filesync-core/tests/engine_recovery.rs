//! Engine recovery paths: stream errors and exhaustion (NET-6), the heartbeat (NET-7),
//! bootstrap in one commit (ENG-9), start-up error retry (ENG-18), `retry_errors` (API-13),
//! auto-prioritise on resolve (API-8). A store wrapper injects read failures and counts commits.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use filesync_core::events::{HeartbeatReason, RecoveryFrom, SyncEvent};
use filesync_core::fs::{FileSystem, MemoryFs};
use filesync_core::remote::MemoryRemote;
use filesync_core::schema::{
    Event, EventSeq, FileRecord, FileSyncCursor, LocalFileState, TransferStatus,
};
use filesync_core::store::{MemoryStore, Store, StoredEvent};
use filesync_core::testing::remote::{Fault, FaultyRemote};
use filesync_core::types::{FileId, ObjectKey};
use filesync_core::{Error, FileSync, Result};
use filesync_core::{Options, RetryPolicy};

use tokio::sync::watch;

use common::engine::{buffered, forward, until, until_uploaded};
use common::{eventually, store_id, text};

mod common;

#[derive(Debug, Default)]
struct Flaky {
    inner: MemoryStore,
    failing_reads: AtomicUsize,
    blind: AtomicBool,
    /// How often `head` was read: while idle, only the heartbeat's stall check reads it.
    head_reads: AtomicUsize,
    commits: Mutex<Vec<Vec<&'static str>>>,
}

#[async_trait]
impl Store for Flaky {
    async fn commit(&self, events: Vec<Event>) -> Result<Vec<EventSeq>> {
        self.commits
            .lock()
            .unwrap()
            .push(events.iter().map(Event::name).collect());
        self.inner.commit(events).await
    }
    async fn file(&self, id: &FileId) -> Result<Option<FileRecord>> {
        self.inner.file(id).await
    }
    async fn files(&self) -> Result<Vec<FileRecord>> {
        self.inner.files().await
    }
    async fn local_state(&self, id: &FileId) -> Result<Option<LocalFileState>> {
        self.inner.local_state(id).await
    }
    async fn local_states(&self) -> Result<Vec<LocalFileState>> {
        self.inner.local_states().await
    }
    async fn cursor(&self) -> Result<FileSyncCursor> {
        self.inner.cursor().await
    }
    async fn events_after(&self, after: EventSeq, limit: usize) -> Result<Vec<StoredEvent>> {
        if self
            .failing_reads
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(Error::Timeout {
                what: "injected store read",
            });
        }
        if self.blind.load(Ordering::Acquire) {
            return Ok(Vec::new());
        }
        self.inner.events_after(after, limit).await
    }
    async fn head(&self) -> Result<EventSeq> {
        self.head_reads.fetch_add(1, Ordering::AcqRel);
        self.inner.head().await
    }
    fn watch(&self) -> watch::Receiver<EventSeq> {
        self.inner.watch()
    }
    async fn client_id(&self) -> Result<String> {
        self.inner.client_id().await
    }
    async fn confirmed(&self) -> Result<EventSeq> {
        self.inner.confirmed().await
    }
    async fn confirm(&self, seq: EventSeq) -> Result<()> {
        self.inner.confirm(seq).await
    }
    async fn apply_remote(&self, events: Vec<Event>) -> Result<bool> {
        self.inner.apply_remote(events).await
    }
    async fn remote_deletes(&self) -> Result<Vec<ObjectKey>> {
        self.inner.remote_deletes().await
    }
    async fn set_remote_delete(&self, key: &ObjectKey, owed: bool) -> Result<()> {
        self.inner.set_remote_delete(key, owed).await
    }
}

const STORE: &str = "s";

fn options() -> Options {
    {
        let mut o = Options::default();
        o.health_check_interval = Duration::from_millis(30);
        o.heartbeat_interval = Duration::from_millis(40);
        o.stream_stall_threshold = Duration::from_millis(100);
        o.stream_recovery_base_delay = Duration::from_millis(10);
        o.retry = {
            let mut o = RetryPolicy::default();
            o.base_delay = Duration::from_millis(5);
            o.max_elapsed = Duration::from_secs(5);
            o.max_retries = 2;
            o.jitter = 0.2;
            o
        };
        o
    }
}

/// An engine on a `MemoryFs` and `store`, with `options`.
async fn start(store: &Arc<Flaky>, options: Options) -> FileSync {
    FileSync::builder(store_id(STORE), Arc::new(MemoryFs::new()), store.clone())
        .with_options(options)
        .start()
        .await
        .unwrap()
}

/// NET-6, EVT-3, EVT-4: a failing stream emits `sync:stream-error` with attempts counting
/// from 1, then `sync:recovery{from:"stream-error"}` when events flow again.
#[tokio::test]
async fn net_6_stream_errors_then_recovers() {
    let store = Arc::new(Flaky::default());
    let sync = start(&store, options()).await;
    let mut events = Box::pin(sync.events());
    store.failing_reads.store(2, Ordering::Release);
    sync.save_file(text("t", "a")).await.unwrap();
    let seen = until(&mut events, "recovery", |e| {
        *e == SyncEvent::Recovery {
            from: RecoveryFrom::StreamError,
        }
    })
    .await;
    let attempts: Vec<u32> = seen
        .iter()
        .filter_map(|e| match e {
            SyncEvent::StreamError { attempt, .. } => Some(*attempt),
            _ => None,
        })
        .collect();
    assert_eq!(attempts, [1, 2]);
    sync.shutdown().await;
}

/// NET-6, NET-7, EVT-3, EVT-5: when retries are used up the stream gives up
/// (`sync:stream-exhausted`) and the heartbeat restarts it (`stream-dead`); events then flow.
#[tokio::test]
async fn net_7_heartbeat_restarts_an_exhausted_stream() {
    let store = Arc::new(Flaky::default());
    let sync = start(&store, options()).await;
    let mut events = Box::pin(sync.events());
    store.failing_reads.store(5, Ordering::Release);
    let saved = sync.save_file(text("t", "b")).await.unwrap();
    until(&mut events, "exhaustion", |e| {
        matches!(e, SyncEvent::StreamExhausted { attempts: 5, .. })
    })
    .await;
    until(&mut events, "stream-dead recovery", |e| {
        *e == SyncEvent::HeartbeatRecovery {
            reason: HeartbeatReason::StreamDead,
        }
    })
    .await;
    until(&mut events, "the batch after restart", |e| {
        *e == SyncEvent::SyncComplete
    })
    .await;
    assert_eq!(
        store.cursor().await.unwrap().last_event_sequence,
        store.head().await.unwrap()
    );
    assert!(store.file(&saved.file_id).await.unwrap().is_some());
    sync.shutdown().await;
}

/// NET-7, WEAK-10: a stream that stops delivering while file events exist is restarted
/// (`stream-stalled`); an idle stream (nothing new) is not. On a paused clock: the idle check
/// waits until the heartbeat has compared the cursor with the head several times (each
/// comparison reads the head; nothing else does while idle), then looks at every event
/// emitted meanwhile.
#[tokio::test(start_paused = true)]
async fn net_7_stall_detected_without_false_positive() {
    let store = Arc::new(Flaky::default());
    let sync = start(&store, options()).await;
    let mut events = Box::pin(sync.events());
    sync.save_file(text("t", "first")).await.unwrap();
    until(&mut events, "first batch", |e| {
        *e == SyncEvent::SyncComplete
    })
    .await;
    // Idle for several heartbeats past the stall threshold: five stall checks, no recovery.
    let before = store.head_reads.load(Ordering::Acquire);
    eventually("five stall checks while idle", || async {
        store.head_reads.load(Ordering::Acquire) >= before + 5
    })
    .await;
    let idle = buffered(&mut events);
    assert!(
        idle.iter().all(|e| e.kind() != "sync:heartbeat-recovery"),
        "{idle:?}"
    );
    store.blind.store(true, Ordering::Release);
    sync.save_file(text("t", "second")).await.unwrap();
    until(&mut events, "stall", |e| {
        *e == SyncEvent::HeartbeatRecovery {
            reason: HeartbeatReason::StreamStalled,
        }
    })
    .await;
    store.blind.store(false, Ordering::Release);
    until(&mut events, "the stalled batch", |e| {
        *e == SyncEvent::SyncComplete
    })
    .await;
    sync.shutdown().await;
}

/// NET-7: heartbeat interval 0 disables it: an exhausted stream stays dead. On a paused clock
/// a control engine with the same faults and a 40 ms heartbeat runs beside it; once the
/// control's heartbeat has restarted its stream three times (at least three intervals after
/// the first engine's stream died), every event the first engine emitted meanwhile is checked.
#[tokio::test(start_paused = true)]
async fn net_7_zero_interval_disables_heartbeat() {
    let store = Arc::new(Flaky::default());
    let sync = start(&store, {
        let mut o = options();
        o.heartbeat_interval = Duration::ZERO;
        o
    })
    .await;
    let mut events = Box::pin(sync.events());
    store.failing_reads.store(5, Ordering::Release);
    sync.save_file(text("t", "c")).await.unwrap();
    until(&mut events, "exhaustion", |e| {
        e.kind() == "sync:stream-exhausted"
    })
    .await;

    let control_store = Arc::new(Flaky::default());
    let control = start(&control_store, options()).await;
    let mut control_events = Box::pin(control.events());
    control_store
        .failing_reads
        .store(usize::MAX, Ordering::Release); // exhausted after every restart
    control.save_file(text("t", "c")).await.unwrap();
    for n in 1..=3 {
        until(&mut control_events, &format!("control recovery {n}"), |e| {
            *e == SyncEvent::HeartbeatRecovery {
                reason: HeartbeatReason::StreamDead,
            }
        })
        .await;
    }

    let after = buffered(&mut events);
    assert!(
        after.iter().all(|e| e.kind() != "sync:heartbeat-recovery"),
        "{after:?}"
    );
    assert_ne!(
        store.cursor().await.unwrap().last_event_sequence,
        store.head().await.unwrap(),
        "the stream stayed dead: the save was never handled"
    );
    control.shutdown().await;
    sync.shutdown().await;
}

/// ENG-9, TST-1: bootstrap writes every state row and the cursor in exactly one commit.
#[tokio::test]
async fn eng_9_bootstrap_is_one_commit() {
    let source = MemoryStore::new();
    let fs: Arc<dyn FileSystem> = Arc::new(MemoryFs::new());
    let writer = FileSync::builder(store_id(STORE), Arc::clone(&fs), Arc::new(source.clone()))
        .start()
        .await
        .unwrap();
    for n in 0..3 {
        writer
            .save_file(text("t", &format!("file {n}")))
            .await
            .unwrap();
    }
    writer.shutdown().await;
    // A second store with the same log but no state rows: bootstrap applies.
    let store = Arc::new(Flaky::default());
    forward(&source, &store.inner, EventSeq::ROOT).await;
    let remote = FaultyRemote::new(MemoryRemote::new());
    remote.set_offline(true); // keep the uploads from changing rows meanwhile
    let sync = FileSync::builder(store_id(STORE), fs, store.clone())
        .with_remote(Arc::new(remote))
        .with_options(options())
        .start()
        .await
        .unwrap();
    let commits = store.commits.lock().unwrap().clone();
    let with_rows: Vec<_> = commits
        .iter()
        .filter(|c| c.contains(&"v1.LocalFileStateUpsert"))
        .collect();
    assert_eq!(with_rows.len(), 1, "{commits:?}");
    assert_eq!(
        with_rows[0]
            .iter()
            .filter(|n| **n == "v1.LocalFileStateUpsert")
            .count(),
        3
    );
    assert_eq!(with_rows[0].last(), Some(&"fileSyncCursorSet"));
    // API-12: trigger_sync does not bootstrap again.
    sync.trigger_sync().await.unwrap();
    filesync_core::rt::sleep(Duration::from_millis(100)).await;
    let upserts_after = store
        .commits
        .lock()
        .unwrap()
        .iter()
        .filter(|c| {
            c.iter()
                .filter(|n| **n == "v1.LocalFileStateUpsert")
                .count()
                == 3
        })
        .count();
    assert_eq!(upserts_after, 1);
    sync.shutdown().await;
}

/// ENG-18, EVT-6, API-13, EVT-9, EVT-4: exhausted uploads stay `error`; `retry_errors`
/// re-queues them (emitting `sync:recovery{from:"error-retry"}`); a restart re-queues error
/// rows with the error cleared (emitting `sync:error-retry-start`).
#[tokio::test]
async fn api_13_retry_errors_and_eng_18_restart_recovery() {
    let remote = FaultyRemote::new(MemoryRemote::new());
    for _ in 0..3 {
        remote.push_fault(Fault::Fail);
    }
    let fs: Arc<dyn FileSystem> = Arc::new(MemoryFs::new());
    let store = Arc::new(MemoryStore::new());
    let sync = FileSync::builder(store_id(STORE), Arc::clone(&fs), store.clone())
        .with_remote(Arc::new(remote.clone()))
        .with_options(options())
        .start()
        .await
        .unwrap();
    let mut events = Box::pin(sync.events());
    let saved = sync.save_file(text("t", "flaky")).await.unwrap();
    until(&mut events, "exhausted", |e| {
        e.kind() == "transfer:exhausted"
    })
    .await;
    let row = store.local_state(&saved.file_id).await.unwrap().unwrap();
    assert_eq!(row.upload_status, TransferStatus::Error);
    assert!(row.last_sync_error.contains("injected failure"), "{row:?}");
    assert!(
        sync.is_online(),
        "health was fine: the failures were the transfer's"
    );

    // Restart: the error row is queued, its error cleared, the upload enqueued (WEAK-11).
    sync.shutdown().await;
    remote.push_fault(Fault::Fail);
    remote.push_fault(Fault::Fail);
    remote.push_fault(Fault::Fail);
    let builder = FileSync::builder(store_id(STORE), Arc::clone(&fs), store.clone())
        .with_remote(Arc::new(remote.clone()))
        .with_options(options());
    let mut early = Box::pin(builder.events());
    let sync = builder.start().await.unwrap();
    until(&mut early, "error-retry-start", |e| {
        *e == SyncEvent::ErrorRetryStart {
            file_ids: vec![saved.file_id.clone()],
        }
    })
    .await;
    until(&mut early, "exhausted again", |e| {
        e.kind() == "transfer:exhausted"
    })
    .await;
    assert_eq!(
        sync.retry_errors().await.unwrap(),
        vec![saved.file_id.clone()]
    );
    until(&mut early, "error-retry recovery", |e| {
        *e == SyncEvent::Recovery {
            from: RecoveryFrom::ErrorRetry,
        }
    })
    .await;
    until(&mut early, "upload complete", |e| {
        e.kind() == "upload:complete"
    })
    .await;
    assert!(sync.retry_errors().await.unwrap().is_empty());
    sync.shutdown().await;
}

/// API-8, EXE-6: resolving a file that is queued for download prioritises it and returns a
/// signed remote URL; after the download it resolves locally.
#[tokio::test]
async fn api_8_resolve_prioritises_and_falls_back_to_remote() {
    use filesync_core::api::FileUrl;
    let remote = FaultyRemote::new(MemoryRemote::new());
    let a_store = Arc::new(MemoryStore::new());
    let a = FileSync::builder(store_id(STORE), Arc::new(MemoryFs::new()), a_store.clone())
        .with_remote(Arc::new(remote.clone()))
        .with_options(options())
        .start()
        .await
        .unwrap();
    let saved = a.save_file(text("t", "remote first")).await.unwrap();
    a.await_idle().await;
    until_uploaded("the upload", &*a_store, &saved.file_id).await;
    let b_store = Arc::new(MemoryStore::new());
    remote.push_fault(Fault::Hang);
    let b = FileSync::builder(store_id(STORE), Arc::new(MemoryFs::new()), b_store.clone())
        .with_remote(Arc::new(remote.clone()))
        .with_options({
            let mut o = options();
            o.transfer_timeout = Duration::from_millis(300);
            o
        })
        .start()
        .await
        .unwrap();
    forward(&*a_store, &*b_store, EventSeq::ROOT).await;
    let url = b.resolve_file_url(&saved.file_id).await.unwrap();
    let key = ObjectKey::for_content(&store_id(STORE), &saved.content_hash);
    assert_eq!(
        url,
        Some(FileUrl::Remote(format!("https://test-storage.local/{key}")))
    );
    // WEAK-16: resolving again within `signed_url_reuse` reuses the signed URL.
    let signed = remote.calls("download_url");
    assert_eq!(signed, 1);
    assert_eq!(b.resolve_file_url(&saved.file_id).await.unwrap(), url);
    assert_eq!(
        remote.calls("download_url"),
        signed,
        "the signed URL was reused"
    );
    b.await_idle().await;
    eventually("a local copy", || async {
        matches!(
            b.resolve_file_url(&saved.file_id).await.unwrap(),
            Some(FileUrl::Local(_))
        )
    })
    .await;
    assert_eq!(
        b.resolve_file_url(&FileId::parse("nope").unwrap())
            .await
            .unwrap(),
        None
    );
    a.shutdown().await;
    b.shutdown().await;
}
