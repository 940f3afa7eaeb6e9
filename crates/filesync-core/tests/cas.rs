//! The content-addressed store on every native `FileSystem`.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::sync::Arc;

use bytes::Bytes;
use filesync_core::Error;
use filesync_core::cas::{ContentStore, References};
use filesync_core::fs::{
    FileSystem, FileSystemExt, MemoryFs, NativeFs, bytes_stream, collect_stream,
};
use filesync_core::hash::hash_bytes;
use filesync_core::schema::FileRecord;
use filesync_core::testing::fs::{chunked, failing_after, pattern};
use filesync_core::types::{ContentHash, FileId, LocalPath, Timestamp};

use common::store_id;

mod common;

const STORE: &str = "node_filesync_store";

fn p(s: &str) -> LocalPath {
    LocalPath::parse(s).unwrap()
}

fn record(id: &str, hash: ContentHash, deleted: bool) -> FileRecord {
    FileRecord {
        id: FileId::parse(id).unwrap(),
        path: filesync_core::schema::stored_path(&store_id(STORE), &hash),
        remote_key: None,
        content_hash: hash,
        metadata_json: None,
        created_at: Timestamp::EPOCH,
        updated_at: Timestamp::EPOCH,
        deleted_at: deleted.then_some(Timestamp::EPOCH),
    }
}

async fn names(fs: &dyn FileSystem, dir: &str) -> Vec<String> {
    match fs.list(&p(dir)).await {
        Ok(entries) => entries
            .into_iter()
            .map(|e| e.path.file_name().to_owned())
            .collect(),
        Err(e) if e.is_not_found() => Vec::new(),
        Err(e) => panic!("{e}"),
    }
}

const ROOT: &str = "livestore-filesync-files/node_filesync_store";

/// FS-1, FS-2, API-3: bytes land at `livestore-filesync-files/<storeId>/<hash>` with the sidecar
/// `{"type":…,"lastModified":…}`; the hash is computed while writing.
async fn put_uses_the_original_layout(fs: Arc<dyn FileSystem>) {
    let cas = ContentStore::new(Arc::clone(&fs), store_id(STORE));
    let data = pattern(300_000, 11);
    let out = cas
        .put(chunked(data.clone(), 4096), Some("text/plain"))
        .await
        .unwrap();
    assert_eq!(out.hash, hash_bytes(&data));
    assert_eq!(out.size, data.len() as u64);
    assert_eq!(out.path.as_str(), format!("{ROOT}/{}", out.hash));
    let sidecar = fs
        .read_bytes(&p(&format!("{}.meta.json", out.path)))
        .await
        .unwrap();
    let sidecar = String::from_utf8(sidecar.to_vec()).unwrap();
    assert!(
        sidecar.starts_with(r#"{"type":"text/plain","lastModified":"#),
        "{sidecar}"
    );
    let (body, meta) = cas.read(&out.hash).await.unwrap();
    assert_eq!(collect_stream(body).await.unwrap(), data);
    assert_eq!(meta.mime_type(), "text/plain");
    // The same bytes again: same path, still one object; no temp files left.
    let again = cas.put(bytes_stream(data), None).await.unwrap();
    assert_eq!(again.path, out.path);
    assert_eq!(cas.list().await.unwrap(), vec![out.hash]);
    assert_eq!(
        cas.sidecar(&out.hash).await.mime_type(),
        "application/octet-stream"
    );
    assert!(names(&*fs, &format!("{ROOT}/.tmp")).await.is_empty());
}

/// WEAK-27, bad input: a body that fails halfway stores nothing and leaves no temporary file.
async fn failed_put_leaves_nothing(fs: Arc<dyn FileSystem>) {
    let cas = ContentStore::new(Arc::clone(&fs), store_id(STORE));
    let err = cas
        .put(failing_after(pattern(70_000, 2)), Some("a/b"))
        .await
        .unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
    assert!(cas.list().await.unwrap().is_empty());
    assert!(
        names(&*fs, &format!("{ROOT}/.tmp")).await.is_empty(),
        "temp file left behind"
    );
    let visible: Vec<String> = names(&*fs, ROOT)
        .await
        .into_iter()
        .filter(|n| n != ".tmp")
        .collect();
    assert!(visible.is_empty(), "visible leftovers: {visible:?}");
}

/// WEAK-5: downloaded bytes that do not hash to the expected hash are rejected and never
/// visible; existing good content is not touched; matching bytes are accepted.
async fn import_verified_rejects_wrong_bytes(fs: Arc<dyn FileSystem>) {
    let cas = ContentStore::new(Arc::clone(&fs), store_id(STORE));
    let good = Bytes::from_static(b"the real content");
    let expected = hash_bytes(&good);
    let err = cas
        .import_verified(&expected, bytes_stream(&b"tampered content"[..]), None)
        .await
        .unwrap_err();
    match &err {
        Error::HashMismatch {
            expected: e,
            actual,
        } => {
            assert_eq!(*e, expected);
            assert_eq!(*actual, hash_bytes(b"tampered content"));
        }
        other => panic!("expected HashMismatch, got {other:?}"),
    }
    assert!(err.is_retryable(), "a mismatch is retried by the engine");
    assert!(!cas.contains(&expected).await.unwrap());
    assert!(
        !cas.contains(&hash_bytes(b"tampered content"))
            .await
            .unwrap(),
        "wrong bytes stored"
    );
    assert!(names(&*fs, &format!("{ROOT}/.tmp")).await.is_empty());
    let ok = cas
        .import_verified(&expected, bytes_stream(good.clone()), Some("image/png"))
        .await
        .unwrap();
    assert_eq!(ok.hash, expected);
    // A later bad download of the same hash leaves the good copy alone.
    cas.import_verified(&expected, bytes_stream(&b"junk"[..]), None)
        .await
        .unwrap_err();
    let (body, meta) = cas.read(&expected).await.unwrap();
    assert_eq!(collect_stream(body).await.unwrap(), good);
    assert_eq!(meta.mime_type(), "image/png");
}

/// WEAK-6: content used by another live file is never released; soft-deleted records do not
/// count; pinned (not yet committed) content is not released either.
async fn release_respects_references_and_pins(fs: Arc<dyn FileSystem>) {
    let cas = ContentStore::new(Arc::clone(&fs), store_id(STORE));
    let shared = cas.put(bytes_stream(&b"shared"[..]), None).await.unwrap();
    let hash = shared.hash;
    drop(shared.pin);
    let both = [record("a", hash, false), record("b", hash, false)];
    let refs = References::from_records(&both);
    assert_eq!(refs.count(&hash), 2);
    // File "a" is deleted: "b" still uses the content.
    let after_a = [record("a", hash, true), record("b", hash, false)];
    assert!(
        !cas.release(&hash, &References::from_records(&after_a))
            .await
            .unwrap()
    );
    assert!(
        cas.contains(&hash).await.unwrap(),
        "shared content was removed"
    );
    let pinned = cas.put(bytes_stream(&b"shared"[..]), None).await.unwrap();
    let none = [record("a", hash, true), record("b", hash, true)];
    assert!(
        !cas.release(&hash, &References::from_records(&none))
            .await
            .unwrap(),
        "pinned"
    );
    drop(pinned);
    assert!(
        cas.release(&hash, &References::from_records(&none))
            .await
            .unwrap()
    );
    assert!(!cas.contains(&hash).await.unwrap());
    assert!(
        !fs.exists(&p(&format!("{ROOT}/{hash}.meta.json")))
            .await
            .unwrap(),
        "sidecar kept"
    );
    assert!(
        !cas.release(&hash, &References::default()).await.unwrap(),
        "already gone"
    );
}

/// WEAK-8: gc removes unreferenced content, orphan sidecars and crashed temp files; it keeps
/// referenced and pinned content.
async fn gc_collects_only_garbage(fs: Arc<dyn FileSystem>) {
    let cas = ContentStore::new(Arc::clone(&fs), store_id(STORE));
    let live = cas.put(bytes_stream(&b"live"[..]), None).await.unwrap();
    let orphan = cas.put(bytes_stream(&b"orphan"[..]), None).await.unwrap();
    let pinned = cas
        .put(bytes_stream(&b"in flight"[..]), None)
        .await
        .unwrap();
    let (live_hash, orphan_hash) = (live.hash, orphan.hash);
    drop((live.pin, orphan.pin));
    // A crash mid-write and a crash between sidecar and rename.
    fs.write_bytes(
        &p(&format!("{ROOT}/.tmp/deadbeef")),
        Bytes::from_static(b"partial"),
    )
    .await
    .unwrap();
    let ghost = hash_bytes(b"ghost");
    fs.write_bytes(
        &p(&format!("{ROOT}/{ghost}.meta.json")),
        Bytes::from_static(b"{}"),
    )
    .await
    .unwrap();
    let refs = References::from_records(&[
        record("l", live_hash, false),
        record("o", orphan_hash, true),
    ]);
    let report = cas.gc(&refs).await.unwrap();
    assert_eq!(report.removed, vec![orphan_hash]);
    assert_eq!(report.temp_files_removed, 1);
    assert_eq!(report.kept, 2);
    let mut left = cas.list().await.unwrap();
    left.sort();
    let mut expect = vec![live_hash, pinned.hash];
    expect.sort();
    assert_eq!(left, expect);
    assert!(
        !fs.exists(&p(&format!("{ROOT}/{ghost}.meta.json")))
            .await
            .unwrap()
    );
    assert!(
        fs.exists(&p(&format!("{ROOT}/{live_hash}.meta.json")))
            .await
            .unwrap()
    );
}

/// FS-6: a missing hash is NotFound; a malformed sidecar reads as the default type.
async fn missing_content_and_bad_sidecar(fs: Arc<dyn FileSystem>) {
    let cas = ContentStore::new(Arc::clone(&fs), store_id(STORE));
    let err = cas.read(&hash_bytes(b"nope")).await.err().unwrap();
    assert!(err.is_not_found(), "{err:?}");
    let out = cas
        .put(bytes_stream(&b"x"[..]), Some("text/csv"))
        .await
        .unwrap();
    fs.write_bytes(
        &p(&format!("{}.meta.json", out.path)),
        Bytes::from_static(b"{not json"),
    )
    .await
    .unwrap();
    assert_eq!(
        cas.sidecar(&out.hash).await.mime_type(),
        "application/octet-stream"
    );
    assert!(cas.list().await.unwrap().contains(&out.hash));
}

macro_rules! cas_tests {
    ($module:ident, $make:expr) => {
        mod $module {
            use super::*;
            #[tokio::test]
            async fn fs_1_fs_2_put_uses_the_original_layout() {
                put_uses_the_original_layout($make).await;
            }
            #[tokio::test]
            async fn weak_27_failed_put_leaves_nothing() {
                failed_put_leaves_nothing($make).await;
            }
            #[tokio::test]
            async fn weak_5_import_verified_rejects_wrong_bytes() {
                import_verified_rejects_wrong_bytes($make).await;
            }
            #[tokio::test]
            async fn weak_6_release_respects_references_and_pins() {
                release_respects_references_and_pins($make).await;
            }
            #[tokio::test]
            async fn weak_8_gc_collects_only_garbage() {
                gc_collects_only_garbage($make).await;
            }
            #[tokio::test]
            async fn fs_6_missing_content_and_bad_sidecar() {
                missing_content_and_bad_sidecar($make).await;
            }
        }
    };
}

cas_tests!(memory, Arc::new(MemoryFs::new()));
cas_tests!(native, Arc::new(NativeFs::scratch().unwrap()));
