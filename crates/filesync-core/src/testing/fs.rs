//! The [`FileSystem`] conformance suite. Each function checks one rule of the trait's contract
//! on an empty filesystem and panics with a message when the rule is broken.
//!
//! Run it with [`fs_conformance!`](crate::fs_conformance), which expands to one test per rule:
//! ```
//! mod memory_fs {
//!     filesync_core::fs_conformance!(#[tokio::test] filesync_core::fs::MemoryFs::new());
//! }
//! # fn main() {}
//! ```
//! It uses no runtime-specific API, so it runs under tokio and under `wasm-bindgen-test` alike.

use bytes::Bytes;
use futures::StreamExt;

use crate::Error;
use crate::fs::{ByteStream, EntryKind, FileSystem, FileSystemExt, bytes_stream, collect_stream};
use crate::types::LocalPath;

fn p(s: &str) -> LocalPath {
    LocalPath::parse(s).expect("test paths are valid")
}

/// A deterministic pseudo-random buffer (xorshift), so large-file tests need no RNG crate.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A stream of `data` in chunks of `chunk` bytes.
pub fn chunked(data: Vec<u8>, chunk: usize) -> ByteStream {
    let data = Bytes::from(data);
    let chunks: Vec<crate::Result<Bytes>> = (0..data.len())
        .step_by(chunk.max(1))
        .map(|i| Ok(data.slice(i..(i + chunk).min(data.len()))))
        .collect();
    crate::rt::boxed_stream(futures::stream::iter(chunks))
}

/// A stream that yields `good` and then fails.
pub fn failing_after(good: Vec<u8>) -> ByteStream {
    let items: Vec<crate::Result<Bytes>> = vec![
        Ok(Bytes::from(good)),
        Err(Error::Stream {
            source: "connection reset (injected)".into(),
        }),
    ];
    crate::rt::boxed_stream(futures::stream::iter(items))
}

/// Yield to the executor once (re-scheduling itself), runtime-independent.
async fn yield_now() {
    let mut yielded = false;
    futures::future::poll_fn(|cx| {
        if yielded {
            std::task::Poll::Ready(())
        } else {
            yielded = true;
            cx.waker().wake_by_ref();
            std::task::Poll::Pending
        }
    })
    .await;
}

async fn read_all(fs: &dyn FileSystem, path: &LocalPath) -> Bytes {
    collect_stream(fs.read(path).await.expect("read"))
        .await
        .expect("read stream")
}

/// FS: a written file reads back byte for byte, with its parent directories created.
pub async fn write_then_read_round_trips(fs: &dyn FileSystem) {
    let path = p("a/b/c/file.bin");
    let n = fs
        .write(&path, bytes_stream(&b"hello world"[..]))
        .await
        .expect("write");
    assert_eq!(n, 11, "write returns the byte count");
    assert_eq!(read_all(fs, &path).await, &b"hello world"[..]);
    let dir = fs
        .stat(&p("a/b/c"))
        .await
        .expect("stat")
        .expect("parent exists");
    assert_eq!(dir.kind, EntryKind::Directory);
}

/// FS: an empty body writes an empty file.
pub async fn empty_file_round_trips(fs: &dyn FileSystem) {
    let path = p("empty");
    assert_eq!(
        fs.write(&path, bytes_stream(Bytes::new()))
            .await
            .expect("write"),
        0
    );
    assert!(fs.exists(&path).await.expect("exists"));
    assert!(read_all(fs, &path).await.is_empty());
}

/// FS/WEAK-15: a multi-chunk body of several MiB round-trips through the streaming paths.
pub async fn large_streamed_file_round_trips(fs: &dyn FileSystem) {
    let data = pattern(5 * 1024 * 1024 + 17, 7);
    let path = p("big/file");
    let n = fs
        .write(&path, chunked(data.clone(), 64 * 1024))
        .await
        .expect("write");
    assert_eq!(n, data.len() as u64);
    let mut stream = fs.read(&path).await.expect("read");
    let mut got = Vec::with_capacity(data.len());
    while let Some(chunk) = stream.next().await {
        got.extend_from_slice(&chunk.expect("chunk"));
    }
    assert!(got == data, "large file differs after round trip");
}

/// FS-6: reading a missing path (or a directory) is `NotFound`.
pub async fn read_missing_is_not_found(fs: &dyn FileSystem) {
    let err = fs
        .read(&p("missing/file"))
        .await
        .err()
        .expect("missing file must fail");
    assert!(err.is_not_found(), "expected NotFound, got {err:?}");
    fs.create_dir_all(&p("dir")).await.expect("mkdir");
    let err = fs
        .read(&p("dir"))
        .await
        .err()
        .expect("reading a directory must fail");
    assert!(
        err.is_not_found(),
        "expected NotFound for a directory, got {err:?}"
    );
}

/// FS: writing over a file replaces its content completely (shorter content leaves no tail).
pub async fn overwrite_replaces_content(fs: &dyn FileSystem) {
    let path = p("f");
    fs.write_bytes(&path, Bytes::from_static(b"first version, long"))
        .await
        .expect("write 1");
    fs.write_bytes(&path, Bytes::from_static(b"second"))
        .await
        .expect("write 2");
    assert_eq!(read_all(fs, &path).await, &b"second"[..]);
}

/// FS/WEAK-27: a body stream that fails halfway leaves the old content, no new file and no
/// temporary file behind, and reports a retryable error.
pub async fn failed_stream_leaves_nothing(fs: &dyn FileSystem) {
    let existing = p("dir/existing");
    fs.write_bytes(&existing, Bytes::from_static(b"old"))
        .await
        .expect("write old");
    let err = fs
        .write(&existing, failing_after(pattern(100_000, 3)))
        .await
        .expect_err("a failing stream must fail the write");
    assert!(
        err.is_retryable(),
        "a failed input stream is retryable: {err:?}"
    );
    assert_eq!(
        read_all(fs, &existing).await,
        &b"old"[..],
        "old content must survive"
    );

    let fresh = p("dir/fresh");
    fs.write(&fresh, failing_after(vec![1, 2, 3]))
        .await
        .expect_err("a failing stream must fail the write");
    assert!(
        !fs.exists(&fresh).await.expect("exists"),
        "no partial file may appear"
    );
    let names: Vec<_> = fs
        .list(&p("dir"))
        .await
        .expect("list")
        .into_iter()
        .map(|e| e.path.to_string())
        .collect();
    assert_eq!(
        names,
        vec!["dir/existing"],
        "no temporary file may be left behind"
    );
}

/// FS: while a write is in progress a reader sees the complete old content, never a part.
pub async fn reader_never_sees_partial_write(fs: &dyn FileSystem) {
    let path = p("atomic");
    fs.write_bytes(&path, Bytes::from_static(b"old content"))
        .await
        .expect("write old");
    let (tx, rx) = futures::channel::mpsc::unbounded::<crate::Result<Bytes>>();
    let body = crate::rt::boxed_stream(rx);
    let writer = fs.write(&path, body);
    let checker = async {
        tx.unbounded_send(Ok(Bytes::from_static(b"new ")))
            .expect("send");
        // Give the writer a chance to consume the first chunk.
        for _ in 0..10 {
            yield_now().await;
        }
        let seen = collect_stream(fs.read(&path).await.expect("read during write"))
            .await
            .expect("read stream");
        assert_eq!(seen, &b"old content"[..], "a reader saw a partial write");
        tx.unbounded_send(Ok(Bytes::from_static(b"content")))
            .expect("send");
        drop(tx);
    };
    let (written, ()) = futures::join!(writer, checker);
    assert_eq!(written.expect("write"), 11);
    assert_eq!(read_all(fs, &path).await, &b"new content"[..]);
}

/// FS-4: `exists` is true only for regular files; `stat` reports kind and size.
pub async fn exists_and_stat(fs: &dyn FileSystem) {
    let f = p("s/file");
    assert!(!fs.exists(&f).await.expect("exists"));
    assert!(fs.stat(&f).await.expect("stat").is_none());
    fs.write_bytes(&f, Bytes::from_static(b"12345"))
        .await
        .expect("write");
    assert!(fs.exists(&f).await.expect("exists"));
    let st = fs.stat(&f).await.expect("stat").expect("present");
    assert_eq!((st.kind, st.len), (EntryKind::File, 5));
    assert!(
        !fs.exists(&p("s")).await.expect("exists"),
        "a directory is not a file"
    );
    assert_eq!(
        fs.stat(&p("s")).await.expect("stat").expect("dir").kind,
        EntryKind::Directory
    );
}

/// FS-5: removing a file works, removing a missing path is Ok, removing a directory removes its tree.
pub async fn remove_file_dir_and_missing(fs: &dyn FileSystem) {
    fs.remove(&p("never/existed"))
        .await
        .expect("removing a missing path is Ok");
    let f = p("r/a/file");
    fs.write_bytes(&f, Bytes::from_static(b"x"))
        .await
        .expect("write");
    fs.write_bytes(&p("r/a/other"), Bytes::from_static(b"y"))
        .await
        .expect("write");
    fs.remove(&f).await.expect("remove file");
    assert!(!fs.exists(&f).await.expect("exists"));
    assert!(
        fs.exists(&p("r/a/other")).await.expect("exists"),
        "siblings stay"
    );
    fs.remove(&p("r")).await.expect("remove tree");
    assert!(fs.stat(&p("r")).await.expect("stat").is_none());
    assert!(fs.stat(&p("r/a/other")).await.expect("stat").is_none());
}

/// FS-7: `list` returns direct children sorted, an empty directory lists empty, a missing one is NotFound.
pub async fn list_children_sorted(fs: &dyn FileSystem) {
    for name in ["l/b", "l/a", "l/sub/deep"] {
        fs.write_bytes(&p(name), Bytes::from_static(b"x"))
            .await
            .expect("write");
    }
    let listed: Vec<(String, EntryKind)> = fs
        .list(&p("l"))
        .await
        .expect("list")
        .into_iter()
        .map(|e| (e.path.to_string(), e.kind))
        .collect();
    assert_eq!(
        listed,
        vec![
            ("l/a".to_owned(), EntryKind::File),
            ("l/b".to_owned(), EntryKind::File),
            ("l/sub".to_owned(), EntryKind::Directory),
        ]
    );
    fs.create_dir_all(&p("l/empty")).await.expect("mkdir");
    assert!(fs.list(&p("l/empty")).await.expect("list").is_empty());
    let err = fs.list(&p("nope")).await.expect_err("missing dir");
    assert!(err.is_not_found(), "expected NotFound, got {err:?}");
    let all = fs.list_files_recursive(&p("l")).await.expect("recursive");
    let all: Vec<String> = all.into_iter().map(|x| x.to_string()).collect();
    assert_eq!(all, vec!["l/a", "l/b", "l/sub/deep"]);
}

/// FS: `rename` moves a file, replacing the destination and creating its parents; a missing
/// source is NotFound and changes nothing.
pub async fn rename_replaces_destination(fs: &dyn FileSystem) {
    fs.write_bytes(&p("m/src"), Bytes::from_static(b"new"))
        .await
        .expect("write");
    fs.write_bytes(&p("n/dst"), Bytes::from_static(b"old"))
        .await
        .expect("write");
    fs.rename(&p("m/src"), &p("n/dst")).await.expect("rename");
    assert_eq!(read_all(fs, &p("n/dst")).await, &b"new"[..]);
    assert!(!fs.exists(&p("m/src")).await.expect("exists"));
    fs.write_bytes(&p("m/src2"), Bytes::from_static(b"z"))
        .await
        .expect("write");
    fs.rename(&p("m/src2"), &p("fresh/dir/dst"))
        .await
        .expect("rename into new dir");
    assert_eq!(read_all(fs, &p("fresh/dir/dst")).await, &b"z"[..]);
    let err = fs
        .rename(&p("m/missing"), &p("n/dst"))
        .await
        .expect_err("missing source");
    assert!(err.is_not_found(), "expected NotFound, got {err:?}");
    assert_eq!(read_all(fs, &p("n/dst")).await, &b"new"[..]);
}

/// FS: `create_dir_all` is idempotent and fails when a file is in the way.
pub async fn create_dir_all_idempotent(fs: &dyn FileSystem) {
    fs.create_dir_all(&p("d/e/f")).await.expect("mkdir");
    fs.create_dir_all(&p("d/e/f")).await.expect("mkdir again");
    assert_eq!(
        fs.stat(&p("d/e")).await.expect("stat").expect("dir").kind,
        EntryKind::Directory
    );
    fs.write_bytes(&p("d/file"), Bytes::from_static(b"x"))
        .await
        .expect("write");
    assert!(
        fs.create_dir_all(&p("d/file/sub")).await.is_err(),
        "a file is in the way"
    );
}

/// Expands to one test per rule of the [`FileSystem`](crate::fs::FileSystem) contract. The
/// first argument is the test attribute, the second an expression (it may `.await`) that makes
/// a fresh, empty filesystem for each test.
///
/// ```
/// mod native_fs {
///     use filesync_core::fs::NativeFs;
///     filesync_core::fs_conformance!(#[tokio::test] NativeFs::scratch().unwrap());
/// }
/// # fn main() {}
/// ```
///
/// In the browser the same line runs under `wasm-bindgen-test`, e.g.
/// `fs_conformance!(#[wasm_bindgen_test] OpfsFs::scratch().await.unwrap())`.
#[macro_export]
macro_rules! fs_conformance {
    (#[$attr:meta] $make:expr) => {
        $crate::fs_conformance!(@each #[$attr] $make;
            write_then_read_round_trips,
            empty_file_round_trips,
            large_streamed_file_round_trips,
            read_missing_is_not_found,
            overwrite_replaces_content,
            failed_stream_leaves_nothing,
            reader_never_sees_partial_write,
            exists_and_stat,
            remove_file_dir_and_missing,
            list_children_sorted,
            rename_replaces_destination,
            create_dir_all_idempotent
        );
    };
    (@each #[$attr:meta] $make:expr; $($rule:ident),* $(,)?) => {
        $(
            #[$attr]
            async fn $rule() {
                let fs = $make;
                $crate::testing::fs::$rule(&fs).await;
            }
        )*
    };
}

/// Wraps any [`FileSystem`] and injects faults: the next writes fail (before anything is
/// written), and reads can be cut after a number of bytes. Clones share the switches.
#[derive(Debug, Clone)]
pub struct FaultyFs<F> {
    inner: F,
    faults: std::sync::Arc<std::sync::Mutex<FsFaults>>,
}

#[derive(Debug, Default)]
struct FsFaults {
    failing_writes: usize,
    cut_reads_at: Option<usize>,
    writes: usize,
}

impl<F: FileSystem> FaultyFs<F> {
    /// Wrap `inner` with no faults.
    pub fn new(inner: F) -> Self {
        Self {
            inner,
            faults: std::sync::Arc::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FsFaults> {
        self.faults.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The next `n` writes fail with a retryable I/O error.
    pub fn fail_next_writes(&self, n: usize) {
        self.lock().failing_writes = n;
    }

    /// Reads fail after `bytes` bytes (`None`: no longer).
    pub fn cut_reads_at(&self, bytes: Option<usize>) {
        self.lock().cut_reads_at = bytes;
    }

    /// How many writes were attempted.
    pub fn writes(&self) -> usize {
        self.lock().writes
    }
}

fn injected_io() -> Error {
    Error::Io {
        op: "write",
        path: "(injected)".into(),
        source: std::io::Error::new(std::io::ErrorKind::Interrupted, "injected fault"),
    }
}

#[cfg_attr(target_arch = "wasm32", async_trait::async_trait(?Send))]
#[cfg_attr(not(target_arch = "wasm32"), async_trait::async_trait)]
impl<F: FileSystem> FileSystem for FaultyFs<F> {
    async fn read(&self, path: &LocalPath) -> crate::Result<ByteStream> {
        let body = self.inner.read(path).await?;
        let Some(limit) = self.lock().cut_reads_at else {
            return Ok(body);
        };
        let mut seen = 0usize;
        Ok(crate::rt::boxed_stream(body.map(move |chunk| {
            let chunk = chunk?;
            seen += chunk.len();
            if seen > limit {
                Err(Error::Io {
                    op: "read",
                    path: "(injected)".into(),
                    source: std::io::Error::new(std::io::ErrorKind::Interrupted, "injected cut"),
                })
            } else {
                Ok(chunk)
            }
        })))
    }
    async fn write(&self, path: &LocalPath, body: ByteStream) -> crate::Result<u64> {
        let fail = {
            let mut f = self.lock();
            f.writes += 1;
            let fail = f.failing_writes > 0;
            f.failing_writes = f.failing_writes.saturating_sub(1);
            fail
        };
        if fail {
            return Err(injected_io());
        }
        self.inner.write(path, body).await
    }
    async fn rename(&self, from: &LocalPath, to: &LocalPath) -> crate::Result<()> {
        self.inner.rename(from, to).await
    }
    async fn remove(&self, path: &LocalPath) -> crate::Result<()> {
        self.inner.remove(path).await
    }
    async fn stat(&self, path: &LocalPath) -> crate::Result<Option<crate::fs::FileStat>> {
        self.inner.stat(path).await
    }
    async fn list(&self, dir: &LocalPath) -> crate::Result<Vec<crate::fs::DirEntry>> {
        self.inner.list(dir).await
    }
    async fn create_dir_all(&self, path: &LocalPath) -> crate::Result<()> {
        self.inner.create_dir_all(path).await
    }
}
