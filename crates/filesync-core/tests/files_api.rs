//! The file-level API: `FileInput::from_path`, the name kept in `metadataJson`, `list_files`
//! and `changes()` (also across two processes' connections to one SQLite store).

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::sync::Arc;
use std::time::Duration;

use filesync_core::FileSync;
use filesync_core::api::FileChange;
use filesync_core::fs::{NativeFs, collect_stream};
use filesync_core::preprocess::FileInput;
use filesync_core::remote::MemoryRemote;
use filesync_core::schema::{Event, EventSeq};
use filesync_core::store::SqliteStore;
use futures::StreamExt;

use common::engine::{Disk, fast};
use common::store_id;

mod common;

/// The next change within `secs` seconds, or a panic naming `what`.
async fn next_change(
    changes: &mut (impl futures::Stream<Item = filesync_core::Result<FileChange>> + Unpin),
    what: &str,
    secs: u64,
) -> FileChange {
    match tokio::time::timeout(Duration::from_secs(secs), changes.next()).await {
        Ok(Some(Ok(c))) => c,
        Ok(Some(Err(e))) => panic!("{what}: the change stream failed: {e}"),
        Ok(None) => panic!("{what}: the change stream ended"),
        Err(_) => panic!("{what}: no change within {secs} s"),
    }
}

#[tokio::test]
async fn from_path_takes_the_name_and_type_and_streams_the_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("holiday photo.png");
    let data: Vec<u8> = (0..700_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&path, &data).unwrap();
    let input = FileInput::from_path(&path).await.unwrap();
    assert_eq!(input.name, "holiday photo.png");
    assert_eq!(input.mime_type, "image/png");

    let disk = Disk::scratch().await;
    let sync = disk.builder("files").start().await.unwrap();
    let saved = sync.save_file(input).await.unwrap();
    let files = sync.list_files().await.unwrap();
    assert_eq!(files.len(), 1);
    let f = &files[0];
    assert_eq!(f.id, saved.file_id);
    assert_eq!(f.name.as_deref(), Some("holiday photo.png"));
    assert_eq!(f.mime_type.as_deref(), Some("image/png"));
    assert_eq!(f.size, Some(data.len() as u64));
    assert!(f.display.has_local_copy);
    let back = collect_stream(sync.read_file(&saved.file_id).await.unwrap().body)
        .await
        .unwrap();
    assert!(back == data[..], "the saved bytes differ from the file's");
    sync.shutdown().await;
}

#[tokio::test]
async fn from_path_refuses_a_directory_and_a_missing_path() {
    let dir = tempfile::tempdir().unwrap();
    let err = FileInput::from_path(dir.path()).await.err().unwrap();
    assert!(err.to_string().contains("directory"), "{err}");
    let err = FileInput::from_path(dir.path().join("nope.txt"))
        .await
        .err()
        .unwrap();
    assert!(err.to_string().contains("nope.txt"), "{err}");
}

/// The name is in the event's `metadataJson` (what other devices and the TypeScript clients
/// receive); without a name and without a preprocessor the original's `null` stays.
#[tokio::test]
async fn the_name_travels_in_metadata_json() {
    let disk = Disk::memory();
    let sync = disk.builder("files").start().await.unwrap();
    sync.save_file(FileInput::from_bytes("notes.txt", "text/plain", "hi"))
        .await
        .unwrap();
    sync.save_file(FileInput::from_bytes("", "", "anonymous"))
        .await
        .unwrap();
    let log = disk.store.events_after(EventSeq::ROOT, 10).await.unwrap();
    let metadata: Vec<Option<String>> = log
        .iter()
        .filter_map(|e| match &e.event {
            Event::FileCreated(c) => Some(c.metadata_json.as_row_value()),
            _ => None,
        })
        .collect();
    assert_eq!(
        metadata,
        [
            Some(r#"{"mimeType":"text/plain","sizeBytes":2,"name":"notes.txt"}"#.to_owned()),
            None
        ]
    );
    sync.shutdown().await;
}

#[tokio::test]
async fn list_files_reports_live_files_oldest_first() {
    let disk = Disk::memory();
    let sync = disk.builder("files").start().await.unwrap();
    let a = sync
        .save_file(FileInput::from_bytes("a.txt", "text/plain", "a"))
        .await
        .unwrap();
    filesync_core::rt::sleep(Duration::from_millis(5)).await;
    let b = sync
        .save_file(FileInput::from_bytes("b.txt", "text/plain", "bb"))
        .await
        .unwrap();
    filesync_core::rt::sleep(Duration::from_millis(5)).await;
    let c = sync
        .save_file(FileInput::from_bytes("c.txt", "text/plain", "ccc"))
        .await
        .unwrap();
    sync.delete_file(&b.file_id).await.unwrap();
    let names: Vec<_> = sync
        .list_files()
        .await
        .unwrap()
        .into_iter()
        .map(|f| (f.id, f.name.unwrap(), f.size.unwrap()))
        .collect();
    assert_eq!(
        names,
        [
            (a.file_id, "a.txt".to_owned(), 1),
            (c.file_id, "c.txt".to_owned(), 3)
        ]
    );
    sync.shutdown().await;
}

/// Created, uploaded (the engine's own `FileUpdated` with the remote key), updated and
/// deleted, in that order, for a file saved through this engine.
#[tokio::test]
async fn changes_report_created_uploaded_updated_deleted() {
    let disk = Disk::memory();
    let sync = disk
        .builder("files")
        .with_remote(Arc::new(MemoryRemote::new()))
        .with_options(fast())
        .start()
        .await
        .unwrap();
    let mut changes = sync.changes().await.unwrap();
    let saved = sync
        .save_file(FileInput::from_bytes("a.txt", "text/plain", "one"))
        .await
        .unwrap();
    let id = saved.file_id;
    assert_eq!(
        next_change(&mut changes, "save", 5).await,
        FileChange::Created(id.clone())
    );
    assert_eq!(
        next_change(&mut changes, "upload", 10).await,
        FileChange::Uploaded(id.clone())
    );
    sync.update_file(&id, FileInput::from_bytes("a.txt", "text/plain", "two"))
        .await
        .unwrap();
    assert_eq!(
        next_change(&mut changes, "update", 5).await,
        FileChange::Updated(id.clone())
    );
    // The update's own upload follows; then the delete.
    assert_eq!(
        next_change(&mut changes, "upload of the update", 10).await,
        FileChange::Uploaded(id.clone())
    );
    sync.delete_file(&id).await.unwrap();
    assert_eq!(
        next_change(&mut changes, "delete", 5).await,
        FileChange::Deleted(id.clone())
    );
    sync.shutdown().await;
}

/// A save made by another process on the same directory (its own connection to the SQLite
/// file, its own engine) shows in this engine's `changes()`, as `watch` needs.
#[tokio::test]
async fn changes_see_commits_of_another_connection() {
    let fs = Arc::new(NativeFs::scratch().unwrap());
    let first = SqliteStore::scratch().await.unwrap();
    let second = SqliteStore::open(first.path()).await.unwrap();
    let watcher = FileSync::builder(store_id("files"), fs.clone(), Arc::new(first))
        .start()
        .await
        .unwrap();
    let other = FileSync::builder(store_id("files"), fs, Arc::new(second))
        .start()
        .await
        .unwrap();
    let mut changes = watcher.changes().await.unwrap();
    let saved = other
        .save_file(FileInput::from_bytes("elsewhere.txt", "text/plain", "x"))
        .await
        .unwrap();
    assert_eq!(
        next_change(&mut changes, "another connection's save", 5).await,
        FileChange::Created(saved.file_id.clone())
    );
    let listed = watcher.list_files().await.unwrap();
    assert_eq!(listed[0].name.as_deref(), Some("elsewhere.txt"));
    watcher.shutdown().await;
    other.shutdown().await;
}

/// Several engines on one store without a leadership (the CLI's local-only commands run in
/// parallel) each write the shared cursor; a slower one can write an older position after
/// this engine handled the last event. `await_idle` must still return: this engine has
/// handled everything. (A parallel `filesync save` hung forever in CI before this.)
#[tokio::test]
async fn await_idle_returns_when_another_engine_rewinds_the_shared_cursor() {
    use filesync_core::schema::{FileSyncCursor, FileSyncCursorSet};
    let disk = Disk::memory();
    let sync = disk.builder("files").start().await.unwrap();
    for name in ["a.txt", "b.txt"] {
        sync.save_file(FileInput::from_bytes(name, "text/plain", name))
            .await
            .unwrap();
    }
    sync.await_idle().await;
    // A slower engine on the same store writes the position it had reached.
    disk.store
        .commit(vec![Event::FileSyncCursorSet(FileSyncCursorSet::global(
            FileSyncCursor {
                last_event_sequence: EventSeq::global(1),
                updated_at: filesync_core::types::Timestamp::now(),
            },
        ))])
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(5), sync.await_idle())
        .await
        .expect("await_idle waited for a position this engine had already handled");
    sync.shutdown().await;
}
