//! The engine and API end to end on the in-process parts: MemoryFs/NativeFs,
//! MemoryStore/SqliteStore and MemoryRemote (with faults). Intervals are shortened so the
//! tests run in real time quickly; nothing asserts on timing.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use filesync_core::api::FileUrl;
use filesync_core::api::SaveResult;
use filesync_core::events::SyncEvent;
use filesync_core::fs::{FileSystem, FileSystemExt, MemoryFs, NativeFs, collect_stream};
use filesync_core::preprocess::{FileInput, Preprocessor, Processed, match_mime_type};
use filesync_core::remote::MemoryRemote;
use filesync_core::schema::{EventSeq, FileMetadata, TransferStatus};
use filesync_core::store::{MemoryStore, SqliteStore, Store};
use filesync_core::testing::remote::{Fault, FaultyRemote, HoldingRemote};
use filesync_core::types::{FileId, ObjectKey};
use filesync_core::{Error, FileSync};
use futures::StreamExt;

use common::engine::{Disk, buffered, fast, forward, until_downloaded, until_uploaded, uploaded};
use common::{eventually, store_id, text};

mod common;

const STORE: &str = "test_store";

type Remote = FaultyRemote<MemoryRemote>;

struct Client {
    sync: FileSync,
    fs: Arc<dyn FileSystem>,
    store: Arc<dyn Store>,
}

impl Client {
    /// Save a text file (see [`text`]).
    async fn save(&self, name: &str, body: &str) -> SaveResult {
        self.sync.save_file(text(name, body)).await.unwrap()
    }
}

async fn client(remote: Option<&Remote>) -> Client {
    let Disk { fs, store } = Disk::memory();
    client_on(fs, store, remote).await
}

async fn client_on(
    fs: Arc<dyn FileSystem>,
    store: Arc<dyn Store>,
    remote: Option<&Remote>,
) -> Client {
    let disk = Disk { fs, store };
    let mut b = disk.builder(STORE).with_options(fast());
    if let Some(r) = remote {
        b = b.with_remote(Arc::new(r.clone()));
    }
    Client {
        sync: b.start().await.unwrap(),
        fs: disk.fs,
        store: disk.store,
    }
}

async fn state(c: &Client, id: &FileId) -> (TransferStatus, TransferStatus) {
    let s = c.store.local_state(id).await.unwrap().unwrap();
    (s.upload_status, s.download_status)
}

/// CFG-4, API-3, API-6, TST-2: local-only saves locally, marks done/done, makes no remote call.
#[tokio::test]
async fn cfg_4_local_only_save_read_update_delete() {
    let c = client(None).await;
    let saved = c.save("a.txt", "hello").await;
    assert_eq!(
        saved.content_hash,
        filesync_core::hash::hash_bytes(b"hello")
    );
    assert_eq!(
        saved.path.as_str(),
        format!("livestore-filesync-files/test_store/{}", saved.content_hash)
    );
    let rec = c.store.file(&saved.file_id).await.unwrap().unwrap();
    // TST-2 records `null` without a preprocessor; filesync keeps the name (and so also the
    // type and size, as PRE-6 fills them in).
    assert_eq!(
        (rec.remote_key, rec.metadata_json.as_deref()),
        (
            None,
            Some(r#"{"mimeType":"text/plain","sizeBytes":5,"name":"a.txt"}"#)
        ),
        "TST-2 plus the name"
    );
    assert_eq!(
        state(&c, &saved.file_id).await,
        (TransferStatus::Done, TransferStatus::Done)
    );
    let content = c.sync.read_file(&saved.file_id).await.unwrap();
    assert_eq!(content.mime_type, "text/plain");
    assert_eq!(collect_stream(content.body).await.unwrap(), "hello");
    assert!(c.sync.is_online());
    assert_eq!(c.sync.retry_errors().await.unwrap(), Vec::<FileId>::new());

    // API-4: update writes the new content and removes the old path.
    let up = c
        .sync
        .update_file(&saved.file_id, text("a.txt", "hello v2"))
        .await
        .unwrap();
    assert!(
        !c.fs.exists(&saved.path).await.unwrap(),
        "old content removed"
    );
    assert!(c.fs.exists(&up.path).await.unwrap());
    let rec = c.store.file(&saved.file_id).await.unwrap().unwrap();
    assert_eq!((rec.content_hash, rec.remote_key), (up.content_hash, None));
    // Same content again: nothing changes.
    let same = c
        .sync
        .update_file(&saved.file_id, text("a.txt", "hello v2"))
        .await
        .unwrap();
    assert_eq!(same, up);

    // API-5: soft delete, local content removed, state row removed.
    c.sync.delete_file(&saved.file_id).await.unwrap();
    let rec = c.store.file(&saved.file_id).await.unwrap().unwrap();
    assert!(rec.is_deleted());
    assert!(!c.fs.exists(&up.path).await.unwrap());
    assert!(c.store.local_state(&saved.file_id).await.unwrap().is_none());
    c.sync
        .delete_file(&FileId::parse("unknown").unwrap())
        .await
        .unwrap();
    let err = c
        .sync
        .update_file(&FileId::parse("unknown").unwrap(), text("x", "y"))
        .await
        .unwrap_err();
    assert!(err.is_not_found(), "{err:?}");
    c.sync.shutdown().await;
}

/// ENG-3, ENG-13, KEY-1, EVT-7, EVT-8: a save is uploaded in the background and its key published.
#[tokio::test]
async fn eng_13_save_uploads_and_publishes_key() {
    let remote = FaultyRemote::new(MemoryRemote::new());
    let c = client(Some(&remote)).await;
    let mut events = Box::pin(c.sync.events());
    let saved = c.save("a.txt", "upload me").await;
    let key = ObjectKey::for_content(&store_id(STORE), &saved.content_hash);
    until_uploaded("the upload", &*c.store, &saved.file_id).await;
    c.sync.await_idle().await;
    let rec = c.store.file(&saved.file_id).await.unwrap().unwrap();
    assert_eq!(rec.remote_key, Some(key.clone()));
    assert_eq!(remote.object(&key).unwrap(), "upload me");
    assert_eq!(
        state(&c, &saved.file_id).await,
        (TransferStatus::Done, TransferStatus::Done)
    );
    let seen = buffered(&mut events);
    let kinds: Vec<&str> = seen.iter().map(SyncEvent::kind).collect();
    for k in [
        "sync:start",
        "sync:complete",
        "upload:start",
        "upload:progress",
        "upload:complete",
    ] {
        assert!(kinds.contains(&k), "missing {k} in {kinds:?}");
    }
    let progress = seen.iter().find(|e| e.kind() == "upload:progress").unwrap();
    let json = progress.to_json();
    assert!(
        json.contains(r#""progress":{"kind":"upload","fileId":"#)
            && json.contains(r#""status":"inProgress","loaded":9,"total":9"#),
        "{json}"
    );
    let display = c
        .sync
        .file_display_state(&saved.file_id)
        .await
        .unwrap()
        .unwrap();
    assert!(display.can_display && display.has_local_copy && display.is_uploaded);
    c.sync.shutdown().await;
}

/// ENG-4, ENG-12, TST-1: a record with a remote key but no local bytes is downloaded on another
/// client, verified, and readable with the same hash.
#[tokio::test]
async fn eng_12_second_client_downloads() {
    let remote = FaultyRemote::new(MemoryRemote::new());
    let a = client(Some(&remote)).await;
    let b = client(Some(&remote)).await;
    let saved = a.save("a.txt", "shared bytes").await;
    until_uploaded("upload on A", &*a.store, &saved.file_id).await;
    forward(&*a.store, &*b.store, EventSeq::ROOT).await;
    until_downloaded("download on B", &*b.store, &saved.file_id).await;
    let content = b.sync.read_file(&saved.file_id).await.unwrap();
    assert_eq!(content.content_hash, saved.content_hash);
    assert_eq!(collect_stream(content.body).await.unwrap(), "shared bytes");
    assert_eq!(
        content.mime_type, "text/plain",
        "WEAK-17: the MIME type survives the trip"
    );
    assert!(matches!(
        a.sync.resolve_file_url(&saved.file_id).await.unwrap(),
        Some(FileUrl::Local(_))
    ));
    a.sync.shutdown().await;
    b.sync.shutdown().await;
}

/// WEAK-5, WEAK-14: corrupted, cut and hung downloads are rejected and retried; no wrong or
/// partial bytes are ever visible.
#[tokio::test]
async fn weak_5_corrupt_download_is_retried_never_stored() {
    let remote = FaultyRemote::new(MemoryRemote::new());
    let a = client(Some(&remote)).await;
    let saved = a.save("a.txt", "genuine content").await;
    until_uploaded("upload", &*a.store, &saved.file_id).await;
    remote.push_fault(Fault::Corrupt);
    remote.push_fault(Fault::CutAt(3));
    remote.push_fault(Fault::Hang); // half the body, then nothing: the timeout ends it
    let b = client(Some(&remote)).await;
    let mut events = Box::pin(b.sync.events());
    forward(&*a.store, &*b.store, EventSeq::ROOT).await;
    until_downloaded("verified download", &*b.store, &saved.file_id).await;
    let content = b.sync.read_file(&saved.file_id).await.unwrap();
    assert_eq!(
        collect_stream(content.body).await.unwrap(),
        "genuine content"
    );
    let listed =
        b.fs.list_files_recursive(&filesync_core::schema::store_root(&store_id(STORE)))
            .await
            .unwrap();
    let names: Vec<String> = listed.iter().map(|p| p.file_name().to_owned()).collect();
    assert_eq!(
        names,
        [
            saved.content_hash.to_string(),
            format!("{}.meta.json", saved.content_hash)
        ]
    );
    let errors: Vec<SyncEvent> = buffered(&mut events)
        .into_iter()
        .filter(|e| e.kind() == "download:error")
        .collect();
    assert_eq!(errors.len(), 3, "one error per bad attempt: {errors:?}");
    assert!(
        errors[0].to_json().contains("hash mismatch"),
        "{:?}",
        errors[0]
    );
    a.sync.shutdown().await;
    b.sync.shutdown().await;
}

/// WEAK-14: a transfer that hangs times out and completes on retry.
#[tokio::test]
async fn weak_14_hung_upload_times_out_then_completes() {
    let remote = FaultyRemote::new(MemoryRemote::new());
    remote.push_fault(Fault::Hang);
    let c = client(Some(&remote)).await;
    let saved = c.save("h", "after a hang").await;
    until_uploaded("upload after timeout", &*c.store, &saved.file_id).await;
    assert!(remote.calls("upload") >= 2);
    c.sync.shutdown().await;
}

/// NET-1, NET-3, NET-4, EVT-10, TST-1: a failed upload while the remote is down takes the
/// client offline; when health returns it goes online and finishes the queued work.
#[tokio::test]
async fn net_1_offline_then_online_resumes_uploads() {
    let remote = FaultyRemote::new(MemoryRemote::new());
    let c = client(Some(&remote)).await;
    let mut events = Box::pin(c.sync.events());
    remote.set_offline(true);
    let saved = c.save("o", "made offline").await;
    eventually("offline", || async { !c.sync.is_online() }).await;
    remote.set_offline(false);
    eventually("online and uploaded", || async {
        c.sync.is_online() && uploaded(&*c.store, &saved.file_id).await
    })
    .await;
    let kinds: Vec<&str> = buffered(&mut events).iter().map(SyncEvent::kind).collect();
    let off = kinds.iter().position(|k| *k == "offline").unwrap();
    let on = kinds.iter().position(|k| *k == "online").unwrap();
    assert!(off < on, "{kinds:?}");
    c.sync.shutdown().await;
}

/// NET-2: connectivity is judged only by probing `/health`, and the initial state is online.
/// Against an unreachable remote with the health loop far off, a fresh engine is online and
/// has probed nothing; only a failed upload's probe (NET-4) takes it offline.
#[tokio::test]
async fn net_2_starts_online_and_only_a_probe_takes_it_offline() {
    let remote = FaultyRemote::new(MemoryRemote::new());
    remote.set_offline(true);
    let Disk { fs, store } = Disk::memory();
    let sync = Disk {
        fs,
        store: Arc::clone(&store),
    }
    .builder(STORE)
    .with_options({
        let mut o = fast();
        o.health_check_interval = Duration::from_secs(3600);
        o
    })
    .with_remote(Arc::new(remote.clone()))
    .start()
    .await
    .unwrap();
    assert!(sync.is_online(), "the initial state is online");
    assert_eq!(remote.calls("health"), 0, "nothing probed yet");
    sync.save_file(text("n", "probe me")).await.unwrap();
    eventually("offline after a failed probe", || async {
        !sync.is_online()
    })
    .await;
    assert!(remote.calls("upload") >= 1);
    assert!(remote.calls("health") >= 1, "a probe decided it");
    sync.shutdown().await;
}

/// WEAK-11, ENG-18, EVT-6: a restart with rows left inProgress, queued or in error finishes them.
#[tokio::test]
async fn weak_11_restart_finishes_stuck_rows() {
    let remote = FaultyRemote::new(MemoryRemote::new());
    let Disk { fs, store } = Disk::scratch().await;
    // First run: offline the whole time, so every upload fails into "error" and stays there.
    remote.set_offline(true);
    let first = client_on(Arc::clone(&fs), Arc::clone(&store), Some(&remote)).await;
    let ids: Vec<FileId> = futures::future::join_all(
        (0..3).map(|n| first.sync.save_file(text("f", &format!("file {n}")))),
    )
    .await
    .into_iter()
    .map(|r| r.unwrap().file_id)
    .collect();
    eventually("first run went offline", || async {
        !first.sync.is_online()
    })
    .await;
    first.sync.shutdown().await;
    // Leave one row inProgress, one queued, one error, as a crash would.
    for (id, status) in ids.iter().zip([
        TransferStatus::InProgress,
        TransferStatus::Queued,
        TransferStatus::Error,
    ]) {
        let mut row = store.local_state(id).await.unwrap().unwrap();
        row.upload_status = status;
        row.last_sync_error = if status == TransferStatus::Error {
            "boom".into()
        } else {
            String::new()
        };
        store
            .commit(vec![filesync_core::schema::Event::LocalFileStateUpsert(
                row,
            )])
            .await
            .unwrap();
    }
    remote.set_offline(false);
    let second = client_on(Arc::clone(&fs), Arc::clone(&store), Some(&remote)).await;
    eventually("every file uploaded after restart", || async {
        let mut all = true;
        for id in &ids {
            all &= store.file(id).await.unwrap().unwrap().remote_key.is_some();
        }
        all
    })
    .await;
    second.sync.await_idle().await;
    for id in &ids {
        let s = store.local_state(id).await.unwrap().unwrap();
        assert_eq!(
            (s.upload_status, s.last_sync_error.as_str()),
            (TransferStatus::Done, "")
        );
    }
    second.sync.shutdown().await;
}

/// WEAK-6, WEAK-25: two files with the same bytes share one object; deleting one keeps the
/// content locally and remotely; deleting both removes it.
#[tokio::test]
async fn weak_6_shared_content_survives_one_delete() {
    let remote = FaultyRemote::new(MemoryRemote::new());
    let c = client(Some(&remote)).await;
    let one = c.save("1", "same").await;
    let two = c.save("2", "same").await;
    assert_eq!(one.path, two.path);
    eventually("both uploaded", || async {
        uploaded(&*c.store, &one.file_id).await && uploaded(&*c.store, &two.file_id).await
    })
    .await;
    let key = ObjectKey::for_content(&store_id(STORE), &one.content_hash);
    c.sync.delete_file(&one.file_id).await.unwrap();
    assert!(
        c.fs.exists(&two.path).await.unwrap(),
        "local content of the other file kept"
    );
    assert!(
        remote.object(&key).is_some(),
        "remote object of the other file kept"
    );
    c.sync.delete_file(&two.file_id).await.unwrap();
    assert!(!c.fs.exists(&two.path).await.unwrap());
    assert!(remote.object(&key).is_none());
    c.sync.shutdown().await;
}

/// An engine on a `MemoryFs` and `MemoryStore` syncing through `remote`, whose transfers do
/// not time out while a test holds them (the `fast` options otherwise).
async fn held_client(remote: &HoldingRemote<MemoryRemote>) -> Client {
    let Disk { fs, store } = Disk::memory();
    let disk = Disk { fs, store };
    let sync = disk
        .builder(STORE)
        .with_options({
            let mut o = fast();
            o.transfer_timeout = Duration::from_secs(3600);
            o
        })
        .with_remote(Arc::new(remote.clone()))
        .start()
        .await
        .unwrap();
    Client {
        sync,
        fs: disk.fs,
        store: disk.store,
    }
}

/// TST-3: a file deleted while its upload is in flight leaves the remote empty. The upload is
/// held after its bytes were read; the file is deleted; then the upload completes (the object
/// is stored) and the engine, finding the file deleted, removes the object again.
#[tokio::test]
async fn tst_3_delete_during_upload_leaves_remote_empty() {
    let remote = HoldingRemote::new(MemoryRemote::new());
    let c = held_client(&remote).await;
    let saved = c.save("d", "short-lived").await;
    let held = remote.until_held(1).await;
    assert_eq!(held[0].content_hash, saved.content_hash);
    c.sync.delete_file(&saved.file_id).await.unwrap();
    remote.open();
    remote.until_finished(1).await;
    c.sync.await_idle().await;
    assert!(remote.keys().is_empty(), "{:?}", remote.keys());
    assert_eq!(remote.held().len(), 1, "no upload after the delete");
    assert!(c.store.local_state(&saved.file_id).await.unwrap().is_none());
    c.sync.shutdown().await;
}

/// WEAK-12: content updated during an upload never gets the old key; the new content is
/// uploaded and published under its own key. The first upload is held after its bytes were
/// read; the file is updated; then the old upload completes and must not publish.
#[tokio::test]
async fn weak_12_update_during_upload_publishes_the_right_key() {
    let remote = HoldingRemote::new(MemoryRemote::new());
    let c = held_client(&remote).await;
    let saved = c.save("u", "version one").await;
    let held = remote.until_held(1).await;
    assert_eq!(held[0].content_hash, saved.content_hash);
    let updated = c
        .sync
        .update_file(&saved.file_id, text("u", "version two"))
        .await
        .unwrap();
    remote.open();
    let new_key = ObjectKey::for_content(&store_id(STORE), &updated.content_hash);
    eventually("new content published", || async {
        c.store
            .file(&saved.file_id)
            .await
            .unwrap()
            .unwrap()
            .remote_key
            .as_ref()
            == Some(&new_key)
    })
    .await;
    c.sync.await_idle().await;
    let hashes: Vec<_> = remote.held().iter().map(|r| r.content_hash).collect();
    assert_eq!(
        hashes,
        [saved.content_hash, updated.content_hash],
        "the old upload finished after the update, then the new one ran"
    );
    let rec = c.store.file(&saved.file_id).await.unwrap().unwrap();
    assert_eq!(rec.content_hash, updated.content_hash);
    assert_eq!(remote.object(&new_key).unwrap(), "version two");
    // The old content's object, stored after the update, is not left behind.
    let old_key = ObjectKey::for_content(&store_id(STORE), &saved.content_hash);
    assert!(
        remote.object(&old_key).is_none(),
        "the superseded upload's object was removed"
    );
    c.sync.shutdown().await;
}

/// ENG-9, TST-1: after start the cursor equals the head; restart does not bootstrap again.
#[tokio::test]
async fn eng_9_bootstrap_sets_cursor_to_head() {
    let remote = FaultyRemote::new(MemoryRemote::new());
    let a = client(Some(&remote)).await;
    let s1 = a.save("1", "one").await;
    a.save("2", "two").await;
    until_uploaded("uploads", &*a.store, &s1.file_id).await;
    a.sync.await_idle().await;
    // A fresh client whose store already holds the log (e.g. restored): bootstrap enqueues
    // downloads for both and sets the cursor to the head.
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    forward(&*a.store, &*store, EventSeq::ROOT).await;
    let head = store.head().await.unwrap();
    let b = client_on(Arc::new(MemoryFs::new()), Arc::clone(&store), Some(&remote)).await;
    assert_eq!(store.cursor().await.unwrap().last_event_sequence, head);
    eventually("both downloaded", || async {
        let states = store.local_states().await.unwrap();
        states.len() == 2
            && states
                .iter()
                .all(|s| s.download_status == TransferStatus::Done)
    })
    .await;
    a.sync.shutdown().await;
    b.sync.shutdown().await;
}

struct Upper;

#[async_trait]
impl Preprocessor for Upper {
    async fn process(&self, file: FileInput) -> filesync_core::Result<Processed> {
        let data = collect_stream(file.body).await?;
        let upper = String::from_utf8_lossy(&data).to_uppercase();
        Ok(Processed {
            file: FileInput::from_bytes(file.name, "text/x-upper", upper.into_bytes()),
            metadata: Some(FileMetadata {
                custom: Some(serde_json::Map::from_iter([("by".into(), "upper".into())])),
                ..FileMetadata::default()
            }),
        })
    }
}

struct Broken;

#[async_trait]
impl Preprocessor for Broken {
    async fn process(&self, _file: FileInput) -> filesync_core::Result<Processed> {
        Err(Error::InvalidInput {
            what: "image",
            reason: "cannot decode".into(),
            source: None,
        })
    }
}

/// PRE-1..6, TST-2: preprocessors by precedence, metadata serialised with mimeType and
/// sizeBytes, failures become `Preprocessor` errors with nothing written.
#[tokio::test]
async fn pre_preprocessors_apply_with_precedence() {
    assert!(match_mime_type("image/*", " IMAGE/PNG "));
    assert!(match_mime_type("*/*", "x"));
    assert!(!match_mime_type("image/png", "image/jpeg"));
    let disk = Disk::memory();
    let store = Arc::clone(&disk.store);
    let sync = disk
        .builder(STORE)
        .with_preprocessor("text/*", Arc::new(Upper))
        .with_preprocessor("*", Arc::new(Broken))
        .with_preprocessor("text/plain", Arc::new(Upper))
        .start()
        .await
        .unwrap();
    let saved = sync.save_file(text("t", "shout")).await.unwrap();
    let rec = store.file(&saved.file_id).await.unwrap().unwrap();
    assert_eq!(
        saved.content_hash,
        filesync_core::hash::hash_bytes(b"SHOUT")
    );
    assert_eq!(
        rec.metadata_json.as_deref(),
        Some(r#"{"mimeType":"text/x-upper","sizeBytes":5,"custom":{"by":"upper"},"name":"t"}"#)
    );
    let err = sync
        .save_file(FileInput::from_bytes("p.png", "image/png", vec![1, 2, 3]))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Preprocessor { .. }), "{err:?}");
    assert!(
        err.to_string().starts_with("preprocessor failed for p.png"),
        "{err}"
    );
    assert_eq!(store.files().await.unwrap().len(), 1, "nothing written");
    sync.shutdown().await;
}

/// EVT-1..10: the JSON of every event matches the original's shapes.
#[test]
fn evt_json_shapes() {
    use filesync_core::events::*;
    let id = FileId::parse("f").unwrap();
    let cases = [
        (SyncEvent::SyncStart, r#"{"type":"sync:start"}"#),
        (
            SyncEvent::SyncError {
                error: "e".into(),
                context: Some("event:v1.FileCreated".into()),
            },
            r#"{"type":"sync:error","error":"e","context":"event:v1.FileCreated"}"#,
        ),
        (
            SyncEvent::StreamError {
                error: "e".into(),
                attempt: 1,
            },
            r#"{"type":"sync:stream-error","error":"e","attempt":1}"#,
        ),
        (
            SyncEvent::StreamExhausted {
                error: "e".into(),
                attempts: 5,
            },
            r#"{"type":"sync:stream-exhausted","error":"e","attempts":5}"#,
        ),
        (
            SyncEvent::Recovery {
                from: RecoveryFrom::ErrorRetry,
            },
            r#"{"type":"sync:recovery","from":"error-retry"}"#,
        ),
        (
            SyncEvent::HeartbeatRecovery {
                reason: HeartbeatReason::StreamStalled,
            },
            r#"{"type":"sync:heartbeat-recovery","reason":"stream-stalled"}"#,
        ),
        (
            SyncEvent::ErrorRetryStart {
                file_ids: vec![id.clone()],
            },
            r#"{"type":"sync:error-retry-start","fileIds":["f"]}"#,
        ),
        (
            SyncEvent::UploadError {
                file_id: id.clone(),
                error: "x".into(),
            },
            r#"{"type":"upload:error","fileId":"f","error":"x"}"#,
        ),
        (
            SyncEvent::DownloadProgress {
                file_id: id.clone(),
                progress: TransferProgress {
                    kind: TransferKind::Download,
                    file_id: id.clone(),
                    status: "inProgress",
                    loaded: 1,
                    total: 0,
                },
            },
            r#"{"type":"download:progress","fileId":"f","progress":{"kind":"download","fileId":"f","status":"inProgress","loaded":1,"total":0}}"#,
        ),
        (
            SyncEvent::TransferExhausted {
                kind: TransferKind::Upload,
                file_id: id,
                error: "x".into(),
            },
            r#"{"type":"transfer:exhausted","kind":"upload","fileId":"f","error":"x"}"#,
        ),
        (SyncEvent::Offline, r#"{"type":"offline"}"#),
    ];
    for (event, json) in cases {
        assert_eq!(event.to_json(), json);
    }
}

/// ENG-15..17, WEAK-13: two engines on one directory and one SQLite file elect one leader with
/// a file lock; only the leader transfers; the other takes over when the leader stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eng_16_file_lock_elects_one_leader_and_fails_over() {
    use filesync_core::sync::FileLock;
    let dir = tempfile::tempdir().unwrap();
    let remote = FaultyRemote::new(MemoryRemote::new());
    let lock = || {
        Arc::new(
            FileLock::new(dir.path().join("filesync.lock"))
                .with_poll_interval(Duration::from_millis(20)),
        )
    };
    let open = |leader: Arc<FileLock>| {
        let remote = remote.clone();
        let path = dir.path().to_path_buf();
        async move {
            let store: Arc<dyn Store> =
                Arc::new(SqliteStore::open(path.join("store.sqlite")).await.unwrap());
            let fs: Arc<dyn FileSystem> = Arc::new(NativeFs::new(&path));
            let sync = FileSync::builder(store_id(STORE), fs, Arc::clone(&store))
                .with_remote(Arc::new(remote))
                .with_options(fast())
                .with_leadership(leader)
                .start()
                .await
                .unwrap();
            (sync, store)
        }
    };
    let (a, store) = open(lock()).await;
    eventually("A leads", || async { remote.calls("health") > 0 }).await;
    let (b, _) = open(lock()).await;
    assert!(
        a.is_leader() && !b.is_leader(),
        "is_leader reports the election"
    );
    // B is a follower: it can save, but A (the leader) uploads; B's trigger_sync is a no-op
    // (ENG-19: a follower neither follows the log nor transfers).
    b.trigger_sync().await.unwrap();
    let first = b
        .save_file(text("b1", "saved by the follower"))
        .await
        .unwrap();
    until_uploaded(
        "leader uploads the follower's file",
        &*store,
        &first.file_id,
    )
    .await;
    assert_eq!(remote.calls("upload"), 1, "exactly one engine uploaded");
    // WEAK-13: a follower's retry_errors is carried out by the leader (the follower only
    // re-queues the rows in the shared store; the leader adopts them at its heartbeat).
    for _ in 0..6 {
        remote.push_fault(Fault::Fail);
    }
    // Every failed attempt marks the row `error`; only `transfer:exhausted` says the leader
    // has stopped retrying.
    let mut leader_events = Box::pin(a.events());
    let failing = b
        .save_file(text("b-err", "fails until retried"))
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(e) = leader_events.next().await {
            if matches!(&e, SyncEvent::TransferExhausted { file_id, .. } if *file_id == failing.file_id)
            {
                return;
            }
        }
    })
    .await
    .expect("the leader's upload exhausts its retries");
    assert_eq!(
        store
            .local_state(&failing.file_id)
            .await
            .unwrap()
            .unwrap()
            .upload_status,
        TransferStatus::Error
    );
    assert_eq!(
        b.retry_errors().await.unwrap(),
        vec![failing.file_id.clone()]
    );
    until_uploaded(
        "the leader uploads the follower's retry",
        &*store,
        &failing.file_id,
    )
    .await;
    assert!(!b.is_leader(), "B stayed a follower throughout");
    let uploads_so_far = remote.calls("upload");
    a.shutdown().await;
    let second = b
        .save_file(text("b2", "saved after failover"))
        .await
        .unwrap();
    until_uploaded("B took over and uploads", &*store, &second.file_id).await;
    assert_eq!(remote.calls("upload"), uploads_so_far + 1);
    assert!(b.is_leader());
    b.shutdown().await;
}

/// A local disk fault during a download (write fails) or an upload (read cut) is retried and
/// the transfer completes; nothing partial becomes visible.
#[tokio::test]
async fn local_faults_are_retried() {
    use filesync_core::testing::fs::FaultyFs;
    let remote = FaultyRemote::new(MemoryRemote::new());
    let fs_a = FaultyFs::new(MemoryFs::new());
    let a = client_on(
        Arc::new(fs_a.clone()),
        Arc::new(MemoryStore::new()),
        Some(&remote),
    )
    .await;
    fs_a.cut_reads_at(Some(4));
    let saved = a.save("a", "read me in pieces").await;
    eventually("upload attempted", || async { remote.calls("upload") >= 1 }).await;
    fs_a.cut_reads_at(None);
    until_uploaded("upload after the read fault", &*a.store, &saved.file_id).await;

    let fs_b = FaultyFs::new(MemoryFs::new());
    fs_b.fail_next_writes(2);
    let b = client_on(
        Arc::new(fs_b.clone()),
        Arc::new(MemoryStore::new()),
        Some(&remote),
    )
    .await;
    forward(&*a.store, &*b.store, EventSeq::ROOT).await;
    until_downloaded("download after write faults", &*b.store, &saved.file_id).await;
    assert!(fs_b.writes() >= 3);
    let content = b.sync.read_file(&saved.file_id).await.unwrap();
    assert_eq!(
        collect_stream(content.body).await.unwrap(),
        "read me in pieces"
    );
    a.sync.shutdown().await;
    b.sync.shutdown().await;
}

/// WEAK-7: a remote delete lost to an outage is owed durably and done once the remote is
/// back, also after a restart.
#[tokio::test]
async fn weak_7_remote_delete_survives_outage_and_restart() {
    let remote = FaultyRemote::new(MemoryRemote::new());
    let Disk { fs, store } = Disk::scratch().await;
    let first = client_on(Arc::clone(&fs), Arc::clone(&store), Some(&remote)).await;
    let saved = first.save("x", "to be deleted").await;
    until_uploaded("uploaded", &*store, &saved.file_id).await;
    let key = ObjectKey::for_content(&store_id(STORE), &saved.content_hash);
    remote.set_offline(true);
    first.sync.delete_file(&saved.file_id).await.unwrap();
    assert!(
        remote.object(&key).is_some(),
        "the delete could not happen yet"
    );
    assert_eq!(store.remote_deletes().await.unwrap(), vec![key.clone()]);
    first.sync.shutdown().await;

    remote.set_offline(false);
    let second = client_on(fs, Arc::clone(&store), Some(&remote)).await;
    eventually("owed delete done after restart", || async {
        remote.object(&key).is_none()
    })
    .await;
    eventually("debt cleared", || async {
        store.remote_deletes().await.unwrap().is_empty()
    })
    .await;
    second.sync.shutdown().await;
}

/// A leadership whose first grant can be revoked, and which grants again on request.
#[derive(Debug, Default)]
struct Revocable {
    revoke: std::sync::Mutex<Option<tokio::sync::oneshot::Receiver<()>>>,
    regrant: tokio::sync::Notify,
    grants: std::sync::atomic::AtomicUsize,
}

#[async_trait]
impl filesync_core::sync::Leadership for Revocable {
    async fn acquire(&self) -> filesync_core::Result<filesync_core::sync::LeaderGuard> {
        let n = self
            .grants
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if n == 0 {
            let rx = self.revoke.lock().unwrap().take().unwrap();
            return Ok(filesync_core::sync::LeaderGuard::with_loss(
                (),
                Box::pin(async move {
                    let _ = rx.await;
                }),
            ));
        }
        self.regrant.notified().await;
        Ok(filesync_core::sync::LeaderGuard::new(()))
    }
}

/// ENG-17: losing leadership interrupts in-flight transfers, resets them to queued and stops
/// transferring; regaining it finishes them.
#[tokio::test]
async fn eng_17_losing_leadership_interrupts_and_requeues() {
    let remote = FaultyRemote::new(MemoryRemote::new());
    remote.push_fault(Fault::Hang);
    let (revoke, rx) = tokio::sync::oneshot::channel();
    let leadership = Arc::new(Revocable {
        revoke: std::sync::Mutex::new(Some(rx)),
        ..Revocable::default()
    });
    let disk = Disk::memory();
    let store = Arc::clone(&disk.store);
    let sync = disk
        .builder(STORE)
        .with_remote(Arc::new(remote.clone()))
        .with_options({
            let mut o = fast();
            o.transfer_timeout = Duration::from_secs(60);
            o
        })
        .with_leadership(leadership.clone())
        .start()
        .await
        .unwrap();
    let saved = sync.save_file(text("l", "led")).await.unwrap();
    eventually("upload in flight", || async {
        remote.calls("upload") == 1
            && store
                .local_state(&saved.file_id)
                .await
                .unwrap()
                .unwrap()
                .upload_status
                == TransferStatus::InProgress
    })
    .await;
    revoke.send(()).unwrap();
    eventually("reset to queued", || async {
        store
            .local_state(&saved.file_id)
            .await
            .unwrap()
            .unwrap()
            .upload_status
            == TransferStatus::Queued
    })
    .await;
    filesync_core::rt::sleep(Duration::from_millis(200)).await;
    assert_eq!(remote.calls("upload"), 1, "a follower does not transfer");
    leadership.regrant.notify_one();
    until_uploaded(
        "uploaded after regaining leadership",
        &*store,
        &saved.file_id,
    )
    .await;
    sync.shutdown().await;
}

/// ENG-16: a process holding the leader lock is killed; the OS releases the lock and the
/// waiting engine takes over. The test re-runs its own binary as the leader process.
#[tokio::test]
async fn eng_16_killed_leader_process_releases_the_lock() {
    use filesync_core::sync::{FileLock, Leadership};
    const CHILD: &str = "FILESYNC_TEST_LOCK_CHILD";
    if let Ok(dir) = std::env::var(CHILD) {
        let dir = std::path::PathBuf::from(dir);
        let _guard = FileLock::new(dir.join("filesync.lock"))
            .acquire()
            .await
            .unwrap();
        std::fs::write(dir.join("leader-ready"), b"1").unwrap();
        filesync_core::rt::sleep(Duration::from_secs(120)).await;
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut child = tokio::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "eng_16_killed_leader_process_releases_the_lock",
            "--exact",
            "--test-threads=1",
        ])
        .env(CHILD, dir.path())
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    eventually("the child holds the lock", || async {
        dir.path().join("leader-ready").exists()
    })
    .await;
    let lock = FileLock::new(dir.path().join("filesync.lock"))
        .with_poll_interval(Duration::from_millis(20));
    let blocked = filesync_core::rt::timeout(Duration::from_millis(300), lock.acquire()).await;
    assert!(
        blocked.is_err(),
        "the lock was granted while another process held it"
    );
    child.kill().await.unwrap();
    let granted = filesync_core::rt::timeout(Duration::from_secs(5), lock.acquire()).await;
    assert!(
        granted.is_ok_and(|g| g.is_ok()),
        "the lock was not released by the killed process"
    );
}
