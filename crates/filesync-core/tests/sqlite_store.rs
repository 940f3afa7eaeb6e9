//! `SqliteStore` beyond the shared suite: durability, foreign and corrupt files, sharing a file.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use filesync_core::Error;
use filesync_core::schema::{Event, EventSeq, FileDeleted, MetadataJson};
use filesync_core::store::{SqliteStore, Store};
use filesync_core::testing::store::created;
use filesync_core::types::{FileId, Timestamp};

use common::scratch_path;

mod common;

fn file_bytes(path: &std::path::Path) -> Vec<u8> {
    std::fs::read(path).unwrap()
}

/// Commit files `<prefix>-0` to `<prefix>-24`, one commit each.
async fn create_25(store: &SqliteStore, prefix: &str) {
    for n in 0..25u8 {
        store
            .commit(vec![created(
                &format!("{prefix}-{n}"),
                n,
                MetadataJson::Absent,
            )])
            .await
            .unwrap();
    }
}

/// SQLite's `PRAGMA integrity_check` of the database at `path` (`"ok"` when sound).
fn integrity_check(path: &std::path::Path) -> String {
    rusqlite::Connection::open(path)
        .unwrap()
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap()
}

/// Commits survive closing and reopening the file, and numbering continues after the old head.
#[tokio::test]
async fn reopen_keeps_log_rows_and_numbering() {
    let (_dir, path) = scratch_path("s.sqlite");
    {
        let store = SqliteStore::open(&path).await.unwrap();
        store
            .commit(vec![
                created("a", 1, MetadataJson::Value("{}".into())),
                created("b", 2, MetadataJson::Absent),
            ])
            .await
            .unwrap();
    }
    let client = SqliteStore::open(&path)
        .await
        .unwrap()
        .client_id()
        .await
        .unwrap();
    let store = SqliteStore::open(&path).await.unwrap();
    assert_eq!(
        store.client_id().await.unwrap(),
        client,
        "the client id persists"
    );
    assert_eq!(store.head().await.unwrap(), EventSeq::global(2));
    assert_eq!(store.files().await.unwrap().len(), 2);
    let seqs = store
        .commit(vec![Event::FileDeleted(FileDeleted {
            id: FileId::parse("a").unwrap(),
            deleted_at: Timestamp::from_millis(9).unwrap(),
        })])
        .await
        .unwrap();
    assert_eq!(seqs, vec![EventSeq::global(3)]);
    assert_eq!(*store.watch().borrow(), EventSeq::global(3));
}

/// Bad input: a file that is not SQLite is refused with a clear error and left untouched.
#[tokio::test]
async fn garbage_file_is_refused_untouched() {
    let (dir, path) = scratch_path("notes.txt");
    std::fs::write(&path, b"these are my notes, not a database\n").unwrap();
    let before = file_bytes(&path);
    let err = SqliteStore::open(&path).await.unwrap_err();
    assert!(matches!(err, Error::NotAStore { .. }), "got {err:?}");
    assert!(err.to_string().contains("is not a filesync store"), "{err}");
    assert!(!err.is_retryable());
    assert_eq!(file_bytes(&path), before);
    assert!(
        !dir.path().join("notes.txt-wal").exists(),
        "no WAL file was created"
    );
}

/// Bad input: another program's SQLite database is refused and left byte-for-byte untouched.
#[tokio::test]
async fn foreign_sqlite_database_is_refused_untouched() {
    let (_dir, path) = scratch_path("other.db");
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch("CREATE TABLE people (name TEXT); INSERT INTO people VALUES ('ada');")
            .unwrap();
    }
    let before = file_bytes(&path);
    let err = SqliteStore::open(&path).await.unwrap_err();
    assert!(matches!(err, Error::NotAStore { .. }), "got {err:?}");
    assert!(err.to_string().contains("another program"), "{err}");
    assert_eq!(file_bytes(&path), before, "the foreign file was modified");
}

/// Bad input: a filesync store whose pages were damaged is reported as not a store, not a panic.
#[tokio::test]
async fn corrupted_store_is_a_clear_error() {
    let (dir, path) = scratch_path("s.sqlite");
    {
        let store = SqliteStore::open(&path).await.unwrap();
        store
            .commit(vec![created("a", 1, MetadataJson::Absent)])
            .await
            .unwrap();
    }
    // Checkpointed on close; now overwrite everything after the 100-byte header with noise.
    let mut bytes = file_bytes(&path);
    for (i, b) in bytes.iter_mut().enumerate().skip(100) {
        *b = (i * 31 % 251) as u8;
    }
    std::fs::write(&path, &bytes).unwrap();
    let _ = std::fs::remove_file(dir.path().join("s.sqlite-wal"));
    let _ = std::fs::remove_file(dir.path().join("s.sqlite-shm"));
    let result = match SqliteStore::open(&path).await {
        Err(e) => Err(e),
        Ok(store) => store.files().await.map(drop),
    };
    let err = result.expect_err("a corrupted store must not read as valid");
    assert!(matches!(err, Error::NotAStore { .. }), "got {err:?}");
}

/// Two stores (as two processes would) on one file: commits are serialised by SQLite's locks,
/// numbers stay distinct and nothing is lost or corrupted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_connections_share_one_file_safely() {
    let (_dir, path) = scratch_path("shared.sqlite");
    let one = SqliteStore::open(&path).await.unwrap();
    let two = SqliteStore::open(&path).await.unwrap();
    let a = {
        let one = one.clone();
        filesync_core::rt::spawn(async move { create_25(&one, "one").await })
    };
    let b = {
        let two = two.clone();
        filesync_core::rt::spawn(async move { create_25(&two, "two").await })
    };
    a.join().await;
    b.join().await;
    let events = one.events_after(EventSeq::ROOT, 1000).await.unwrap();
    let seqs: Vec<u64> = events.iter().map(|e| e.seq.global).collect();
    assert_eq!(seqs, (1..=50).collect::<Vec<u64>>());
    assert_eq!(two.files().await.unwrap().len(), 50);
    let check = integrity_check(&path);
    assert_eq!(check, "ok");
}

/// Several connections opening the same fresh file at once all succeed: the one that creates
/// the schema holds the write lock, the others wait for it (issue 16: four parallel
/// `filesync save` on a new directory failed three times with "store is in use").
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_first_opens_of_a_fresh_file_all_succeed() {
    for round in 0..40 {
        let (_dir, path) = scratch_path(&format!("fresh-{round}.sqlite"));
        // Each open runs on its own blocking thread (`spawn_blocking`), so they race.
        let opens = (0..8).map(|_| SqliteStore::open(&path));
        for store in futures::future::join_all(opens).await {
            let store = store.unwrap_or_else(|e| panic!("round {round}: {e}"));
            assert_eq!(store.files().await.unwrap().len(), 0);
        }
    }
}

/// A connection holding a long write transaction makes another wait, then fail clearly.
#[tokio::test]
async fn a_held_write_lock_gives_a_clear_retryable_error() {
    let (_dir, path) = scratch_path("locked.sqlite");
    let store = SqliteStore::open_with(&path, std::time::Duration::from_millis(300))
        .await
        .unwrap();
    let blocker = rusqlite::Connection::open(&path).unwrap();
    blocker.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let err = store
        .commit(vec![created("x", 1, MetadataJson::Absent)])
        .await
        .unwrap_err();
    assert!(matches!(err, Error::StoreLocked { .. }), "got {err:?}");
    assert!(err.is_retryable());
    assert!(
        err.to_string().contains("in use by another process"),
        "{err}"
    );
    blocker.execute_batch("ROLLBACK").unwrap();
    store
        .commit(vec![created("x", 1, MetadataJson::Absent)])
        .await
        .unwrap();
}

/// Two real processes commit to one file at the same time: nothing is lost, duplicated or
/// corrupted. The test re-runs its own binary as the second process.
#[tokio::test]
async fn two_processes_share_one_file_safely() {
    const CHILD: &str = "FILESYNC_TEST_CHILD_DB";
    if let Ok(path) = std::env::var(CHILD) {
        create_25(&SqliteStore::open(&path).await.unwrap(), "child").await;
        return;
    }
    let (_dir, path) = scratch_path("two-processes.sqlite");
    let store = SqliteStore::open(&path).await.unwrap();
    let mut child = tokio::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "two_processes_share_one_file_safely",
            "--exact",
            "--test-threads=1",
        ])
        .env(CHILD, &path)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    create_25(&store, "parent").await;
    let status = child.wait().await.unwrap();
    assert!(status.success(), "the child process failed: {status}");
    let events = store.events_after(EventSeq::ROOT, 1000).await.unwrap();
    let seqs: Vec<u64> = events.iter().map(|e| e.seq.global).collect();
    assert_eq!(seqs, (1..=50).collect::<Vec<u64>>());
    let files = store.files().await.unwrap();
    assert_eq!(
        files
            .iter()
            .filter(|f| f.id.as_str().starts_with("child-"))
            .count(),
        25
    );
    assert_eq!(
        files
            .iter()
            .filter(|f| f.id.as_str().starts_with("parent-"))
            .count(),
        25
    );
    let check = integrity_check(&path);
    assert_eq!(check, "ok");
}
