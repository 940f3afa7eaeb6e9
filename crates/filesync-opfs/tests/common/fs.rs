//! The `OpfsFs`-specific tests, run by `browser.rs` (a page) and `worker.rs` (a dedicated
//! worker).

use bytes::Bytes;
use filesync_core::fs::{EntryKind, FileSystem, FileSystemExt};
use filesync_core::testing::fs::{chunked, failing_after, pattern};
use filesync_core::types::LocalPath;
use filesync_opfs::OpfsFs;

pub fn p(s: &str) -> LocalPath {
    LocalPath::parse(s).expect("test paths are valid")
}

/// A fresh, empty filesystem in its own base directory.
pub async fn fresh() -> OpfsFs {
    OpfsFs::scratch().await.expect("open OPFS")
}

/// Every entry name in `<base>/<dir>` as the raw OPFS sees it (temporaries included), read
/// through the `opfs` crate directly.
pub async fn raw_names(fs: &OpfsFs, dir: &str) -> Vec<String> {
    use futures::StreamExt;
    use opfs::DirectoryHandle as _;
    let mut handle = opfs::persistent::app_specific_dir()
        .await
        .expect("OPFS root");
    for segment in fs.base().split('/').chain(dir.split('/')) {
        handle = handle
            .get_directory_handle_with_options(
                segment,
                &opfs::GetDirectoryHandleOptions { create: false },
            )
            .await
            .expect("directory exists");
    }
    let entries = handle.entries().await.expect("entries");
    let mut entries = std::pin::pin!(entries);
    let mut names = Vec::new();
    while let Some(entry) = entries.next().await {
        names.push(entry.expect("entry").0);
    }
    names.sort();
    names
}

pub async fn request_persistence_does_not_fail() {
    // Headless Chromium answers without a prompt; in a worker the API is absent: `false`.
    let granted = OpfsFs::request_persistence().await;
    let persisted = OpfsFs::is_persisted().await;
    assert!(!granted || persisted, "granted implies persisted");
}

pub async fn open_rejects_bad_base() {
    for bad in ["", "/abs", "a//b", "a/../b", "."] {
        let err = OpfsFs::open(bad).await.expect_err(bad);
        assert!(
            matches!(err, filesync_core::Error::Invalid(_)),
            "{bad:?}: {err:?}"
        );
    }
}

pub async fn base_dirs_are_isolated() {
    let a = fresh().await;
    let b = fresh().await;
    assert_ne!(a.base(), b.base());
    a.write_bytes(&p("same/name"), Bytes::from_static(b"a"))
        .await
        .expect("write a");
    assert!(!b.exists(&p("same/name")).await.expect("exists"));
    assert!(b.list(&p("same")).await.is_err(), "b has no `same`");
    b.write_bytes(&p("same/name"), Bytes::from_static(b"b"))
        .await
        .expect("write b");
    assert_eq!(
        a.read_bytes(&p("same/name")).await.expect("read"),
        &b"a"[..]
    );
    assert_eq!(
        b.read_bytes(&p("same/name")).await.expect("read"),
        &b"b"[..]
    );

    // Reopening the same base sees the same files; a nested base is a subdirectory.
    let again = OpfsFs::open(a.base()).await.expect("reopen");
    assert_eq!(
        again.read_bytes(&p("same/name")).await.expect("read"),
        &b"a"[..]
    );
    let nested = OpfsFs::open(&format!("{}/same", a.base()))
        .await
        .expect("nested");
    assert_eq!(
        nested.read_bytes(&p("name")).await.expect("read"),
        &b"a"[..]
    );

    // `destroy` removes one base and leaves the other alone.
    a.destroy().await.expect("destroy");
    assert!(!again.exists(&p("same/name")).await.unwrap_or(false));
    assert_eq!(
        b.read_bytes(&p("same/name")).await.expect("read"),
        &b"b"[..]
    );
    b.destroy().await.expect("destroy");
}

pub async fn temp_entries_are_hidden() {
    let fs = fresh().await;
    fs.write_bytes(&p("d/visible"), Bytes::from_static(b"x"))
        .await
        .expect("write");
    // A temporary entry as a write in progress (or a closed tab) leaves it.
    fs.write_bytes(
        &p("d/.visible.tmp-0123456789abcdef"),
        Bytes::from_static(b"partial"),
    )
    .await
    .expect("write temp-shaped");
    // Names that only look similar are listed.
    fs.write_bytes(&p("d/.x.tmp-short"), Bytes::from_static(b"y"))
        .await
        .expect("write");
    let names: Vec<String> = fs
        .list(&p("d"))
        .await
        .expect("list")
        .into_iter()
        .map(|e| e.path.to_string())
        .collect();
    assert_eq!(names, vec!["d/.x.tmp-short", "d/visible"]);
    assert_eq!(
        raw_names(&fs, "d").await,
        vec![".visible.tmp-0123456789abcdef", ".x.tmp-short", "visible"],
        "the temporary entry exists, only hidden"
    );
    fs.destroy().await.expect("destroy");
}

pub async fn failed_write_leaves_no_temp_entry() {
    let fs = fresh().await;
    fs.write_bytes(&p("t/keep"), Bytes::from_static(b"old"))
        .await
        .expect("write");
    let err = fs
        .write(&p("t/keep"), failing_after(pattern(3 * 1024 * 1024, 9)))
        .await
        .expect_err("must fail");
    assert!(
        matches!(err, filesync_core::Error::Stream { .. }),
        "{err:?}"
    );
    assert_eq!(
        raw_names(&fs, "t").await,
        vec!["keep"],
        "no temporary entry is left"
    );
    assert_eq!(
        fs.read_bytes(&p("t/keep")).await.expect("read"),
        &b"old"[..]
    );
    fs.destroy().await.expect("destroy");
}

pub async fn write_then_stat_reports_size_and_time() {
    let fs = fresh().await;
    let data = pattern(2 * 1024 * 1024 + 5, 1);
    let n = fs
        .write(&p("s/f"), chunked(data.clone(), 3000))
        .await
        .expect("write");
    assert_eq!(n, data.len() as u64);
    let st = fs.stat(&p("s/f")).await.expect("stat").expect("present");
    assert_eq!(st.kind, EntryKind::File);
    assert_eq!(st.len, data.len() as u64);
    assert!(st.modified.is_some(), "OPFS files have lastModified");
    // Reads come in chunks of at most READ_CHUNK.
    let mut stream = fs.read(&p("s/f")).await.expect("read");
    let mut sizes = Vec::new();
    let mut got = Vec::new();
    use futures::StreamExt;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.expect("chunk");
        sizes.push(chunk.len());
        got.extend_from_slice(&chunk);
    }
    assert!(got == data);
    assert_eq!(
        sizes,
        vec![filesync_opfs::READ_CHUNK, filesync_opfs::READ_CHUNK, 5]
    );
    fs.destroy().await.expect("destroy");
}

pub async fn write_over_directory_fails() {
    let fs = fresh().await;
    fs.create_dir_all(&p("dir/sub")).await.expect("mkdir");
    assert!(
        fs.write_bytes(&p("dir"), Bytes::from_static(b"x"))
            .await
            .is_err()
    );
    assert_eq!(
        fs.stat(&p("dir")).await.expect("stat").expect("dir").kind,
        EntryKind::Directory
    );
    fs.destroy().await.expect("destroy");
}

/// A write cancelled part-way (its future dropped) cleans up its temporary entry.
pub async fn dropped_write_cleans_up() {
    let fs = fresh().await;
    let (tx, rx) = futures::channel::mpsc::unbounded::<filesync_core::Result<Bytes>>();
    tx.unbounded_send(Ok(Bytes::from_static(b"partial")))
        .expect("send");
    {
        let body = filesync_core::rt::boxed_stream(rx);
        let path = p("c/file");
        let write = fs.write(&path, body);
        // Poll it until it waits for more body, then drop it.
        let _ = filesync_core::rt::timeout(std::time::Duration::from_millis(200), write).await;
    }
    drop(tx);
    filesync_core::rt::sleep(std::time::Duration::from_millis(200)).await;
    assert!(
        raw_names(&fs, "c").await.is_empty(),
        "temporary entry removed"
    );
    assert!(!fs.exists(&p("c/file")).await.expect("exists"));
    fs.destroy().await.expect("destroy");
}

/// Chromium has `move()` (on `FileSystemFileHandle.prototype`), so the atomic path is used.
pub async fn move_is_detected() {
    let fs = fresh().await;
    assert!(format!("{fs:?}").contains("use_move: true"), "{fs:?}");
    fs.destroy().await.expect("destroy");
}

/// Many failed writes in a row, with `move()` and without: none leaves an entry behind.
pub async fn failed_writes_never_leave_entries() {
    for without_move in [false, true] {
        let mut fs = fresh().await;
        if without_move {
            fs = fs.without_move();
        }
        for i in 0..20 {
            let path = p(&format!("dir/fresh{i}"));
            fs.write(&path, failing_after(vec![1, 2, 3]))
                .await
                .expect_err("a failing body fails the write");
            assert!(
                !fs.exists(&path).await.expect("exists"),
                "iteration {i}, without move: {without_move}"
            );
            let raw = raw_names(&fs, "dir").await;
            assert!(
                raw.is_empty(),
                "iteration {i}, without move: {without_move}: {raw:?}"
            );
        }
        fs.destroy().await.expect("destroy");
    }
}

/// The example of the crate docs (which only compiles, not runs, as a native doctest).
pub async fn crate_doc_example() -> filesync_core::Result<()> {
    use filesync_core::fs::FileSystemExt;

    let _persistent: bool = OpfsFs::request_persistence().await;
    let fs = OpfsFs::open(&format!("filesync-doc-example/{}", fresh().await.base())).await?;
    let path = LocalPath::parse("notes/hello.txt")?;
    fs.write_bytes(&path, Bytes::from_static(b"hello")).await?;
    assert_eq!(fs.read_bytes(&path).await?, &b"hello"[..]);
    OpfsFs::open("filesync-doc-example").await?.destroy().await
}

/// A file replaced while it is being read: the reader gets old bytes or an error, never new bytes.
pub async fn replaced_mid_read_never_mixes() -> String {
    use futures::StreamExt;
    let fs = fresh().await;
    let old = pattern(3 * filesync_opfs::READ_CHUNK, 1);
    let new = pattern(3 * filesync_opfs::READ_CHUNK, 2);
    fs.write(&p("f"), chunked(old.clone(), 1 << 20))
        .await
        .expect("write old");
    let mut stream = fs.read(&p("f")).await.expect("read");
    let first = stream.next().await.expect("chunk").expect("first chunk");
    assert_eq!(&first[..], &old[..first.len()]);
    fs.write(&p("f"), chunked(new, 1 << 20))
        .await
        .expect("write new");
    let mut got = first.to_vec();
    let mut outcome = String::from("old content");
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(chunk) => got.extend_from_slice(&chunk),
            Err(e) => {
                assert!(e.is_retryable(), "{e:?}");
                outcome = format!("error: {e} ({:?})", std::error::Error::source(&e));
                break;
            }
        }
    }
    assert!(
        old.starts_with(&got),
        "the reader saw bytes of the new file"
    );
    fs.destroy().await.expect("destroy");
    outcome
}

/// `blob()` hands out the file itself (a disk-backed `Blob` with the written bytes, no copy
/// through wasm memory); missing files and directories give `None`.
pub async fn blob_is_the_file() {
    let fs = fresh().await;
    let data = pattern(300_000, 7);
    fs.write(&p("s/b"), chunked(data.clone(), 4096))
        .await
        .expect("write");
    let blob = fs
        .blob(&p("s/b"))
        .await
        .expect("blob")
        .expect("a blob for a file");
    assert_eq!(blob.size() as usize, data.len());
    let buf = wasm_bindgen_futures::JsFuture::from(blob.array_buffer())
        .await
        .expect("array buffer");
    assert_eq!(js_sys::Uint8Array::new(&buf).to_vec(), data.to_vec());
    assert!(fs.blob(&p("s/none")).await.expect("blob").is_none());
    assert!(fs.blob(&p("s")).await.expect("blob").is_none());
}

/// Every `OpfsFs` test, expanded once per mode (`browser.rs`: a page; `worker.rs`: a dedicated
/// worker), so the two files differ only in where they run.
#[macro_export]
macro_rules! opfs_tests {
    () => {
        mod conformance {
            filesync_core::fs_conformance!(
                #[wasm_bindgen_test::wasm_bindgen_test]
                $crate::common::fs::fresh().await
            );
        }

        mod conformance_without_move {
            filesync_core::fs_conformance!(
                #[wasm_bindgen_test::wasm_bindgen_test]
                filesync_opfs::OpfsFs::scratch()
                    .await
                    .expect("open")
                    .without_move()
            );
        }

        #[wasm_bindgen_test::wasm_bindgen_test]
        async fn crate_doc_example() {
            common::fs::crate_doc_example().await.expect("example");
        }

        #[wasm_bindgen_test::wasm_bindgen_test]
        async fn replaced_mid_read_never_mixes() {
            let outcome = common::fs::replaced_mid_read_never_mixes().await;
            wasm_bindgen_test::console_log!("replaced mid-read: {outcome}");
        }

        $crate::opfs_tests!(@each request_persistence_does_not_fail, open_rejects_bad_base, base_dirs_are_isolated, temp_entries_are_hidden, failed_write_leaves_no_temp_entry, write_then_stat_reports_size_and_time, blob_is_the_file, write_over_directory_fails, dropped_write_cleans_up, move_is_detected, failed_writes_never_leave_entries);
    };
    (@each $($rule:ident),*) => {
        $(
            #[wasm_bindgen_test::wasm_bindgen_test]
            async fn $rule() {
                common::fs::$rule().await;
            }
        )*
    };
}
