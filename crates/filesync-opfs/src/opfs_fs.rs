//! [`OpfsFs`]: the [`FileSystem`] over the Origin Private File System.

use std::fmt;
use std::io::ErrorKind;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use filesync_core::fs::{ByteStream, DirEntry, EntryKind, FileStat, FileSystem};
use filesync_core::fs::{is_temp_name, temp_name};
use filesync_core::types::{LocalPath, Timestamp};
use filesync_core::{Error, Result};
use futures::StreamExt;
use opfs::{
    DirectoryEntry, DirectoryHandle as _, FileSystemRemoveOptions, WritableFileStream as _,
};
use wasm_bindgen::{JsCast, JsValue};
use web_sys::{
    FileSystemDirectoryHandle, FileSystemFileHandle, FileSystemGetDirectoryOptions,
    FileSystemGetFileOptions, FileSystemWritableFileStream,
};

use crate::js;

/// Size of the chunks [`FileSystem::read`] yields (the last one may be shorter).
pub const READ_CHUNK: usize = 1024 * 1024;
/// Writes are batched into pieces of about this size before they go to the browser (one
/// `write()` promise per piece); memory per write stays below this plus one input chunk.
pub const WRITE_CHUNK: usize = 1024 * 1024;
/// The base directory of [`OpfsFs::open_default`].
pub const DEFAULT_BASE: &str = "filesync";

thread_local! {
    /// Whether this JavaScript realm (page or worker) has asked for persistent storage.
    static PERSISTENCE_REQUESTED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// `navigator.storage.persist()`, once per realm, fire-and-forget (OPFS-1).
fn request_persistence_once() {
    if PERSISTENCE_REQUESTED.with(|r| r.replace(true)) {
        return;
    }
    wasm_bindgen_futures::spawn_local(async {
        let persistent = OpfsFs::request_persistence().await;
        tracing::debug!(persistent, "navigator.storage.persist()");
    });
}

/// A [`FileSystem`] in the browser's Origin Private File System (OPFS), below a base directory.
///
/// Works on a page and in a dedicated worker (it reaches `navigator.storage` through the
/// global scope, never through `window`). Cloning is cheap and shares the same directory.
///
/// - **Reads** take one `File` snapshot (`getFile()`) and yield [`READ_CHUNK`]-sized slices
///   of it, so a reader never mixes two versions. If the file is replaced while it is being
///   read, Chromium fails the rest of the read (`NotReadableError`, a retryable
///   [`Error::Io`]) instead of yielding new bytes.
/// - **Writes** stream into a hidden temporary entry `.<name>.tmp-<16 hex>` next to the
///   target, through `createWritable()` and cursor writes (`opfs`'s `write_at_cursor_pos`),
///   then `close()` it and `move()` it over the target, so readers see the old file or the new
///   one, never a part. If the body stream fails, the writable is aborted and the temporary
///   entry removed before `write` returns; if the write future is dropped part-way, the same
///   clean-up runs in a spawned task. Temporary entries never appear in [`FileSystem::list`].
/// - Without `FileSystemFileHandle.move()` (older browsers) writes go straight into the target
///   through `createWritable()`, whose data only becomes visible on `close()` (a swap file), and
///   `rename` copies then removes. A new file is then visible (empty) while it is written.
#[derive(Clone)]
pub struct OpfsFs {
    base: String,
    /// The OPFS root (for [`OpfsFs::destroy`]).
    root: FileSystemDirectoryHandle,
    /// The base directory: every [`LocalPath`] is resolved below it.
    dir: FileSystemDirectoryHandle,
    use_move: bool,
}

impl fmt::Debug for OpfsFs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpfsFs")
            .field("base", &self.base)
            .field("use_move", &self.use_move)
            .finish_non_exhaustive()
    }
}

impl OpfsFs {
    /// Open (creating it if needed) the directory `base` below the OPFS root. `base` is a
    /// `/`-separated path of directory names such as `"filesync"` or `"apps/filesync/store1"`;
    /// it follows the rules of [`LocalPath`] (no empty, `.` or `..` segment), otherwise
    /// [`Error::Invalid`]. Fails with [`Error::Unsupported`] where there is no OPFS (no
    /// `navigator.storage.getDirectory`, e.g. an insecure context) and with [`Error::Io`]
    /// when the browser refuses it (e.g. some private modes).
    ///
    /// The first successful `open` in a page or worker also asks, once and without waiting for
    /// the answer, that the origin's storage be persistent (`navigator.storage.persist()`, as
    /// the original's `layer()` does); [`OpfsFs::request_persistence`] asks and returns it.
    pub async fn open(base: &str) -> Result<Self> {
        let base_path = LocalPath::parse(base)?;
        let storage = js::storage_manager().ok_or(Error::Unsupported {
            what: "the Origin Private File System (navigator.storage.getDirectory)",
        })?;
        let root: FileSystemDirectoryHandle = js::await_promise(storage.get_directory())
            .await
            .map_err(|e| io("open", "the OPFS root", &e, ErrorKind::Other))?
            .unchecked_into();
        let dir = dir_at(&root, &base_path, true)
            .await
            .map_err(|e| io("create directory", &base_path, &e, ErrorKind::NotADirectory))?;
        request_persistence_once();
        Ok(Self {
            base: base_path.to_string(),
            root,
            dir,
            use_move: js::move_supported(),
        })
    }

    /// [`OpfsFs::open`] on [`DEFAULT_BASE`] (`"filesync"`).
    pub async fn open_default() -> Result<Self> {
        Self::open(DEFAULT_BASE).await
    }

    /// A filesystem in a new, uniquely named directory `filesync-scratch/<random>`, for tests.
    /// It is not removed automatically: call [`OpfsFs::destroy`].
    pub async fn scratch() -> Result<Self> {
        Self::open(&format!(
            "filesync-scratch/{}",
            filesync_core::rt::random_hex(8)
        ))
        .await
    }

    /// The base directory below the OPFS root, as given to [`OpfsFs::open`].
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Remove the base directory and everything in it. Missing is fine.
    pub async fn destroy(self) -> Result<()> {
        let base = LocalPath::parse(self.base.as_str())?;
        let parent = match base.parent() {
            Some(p) => match dir_at(&self.root, &p, false).await {
                Ok(d) => d,
                Err(e) if js::is_not_found(&e) => return Ok(()),
                Err(e) => return Err(io("remove", &base, &e, ErrorKind::NotADirectory)),
            },
            None => self.root.clone(),
        };
        remove_entry(&parent, base.file_name())
            .await
            .map_err(|e| io("remove", &base, &e, ErrorKind::Other))
    }

    /// Ask the browser to make this origin's storage persistent (`navigator.storage.persist()`,
    /// called once), so it is not evicted under storage pressure. Returns whether storage is
    /// persistent. Never fails: where the API does not exist (it is not exposed in workers, and
    /// some browsers lack it) or the call throws, the answer is `false`.
    pub async fn request_persistence() -> bool {
        let Some(storage) = js::storage() else {
            return false;
        };
        match js::call_async(&storage, "persist", &[]).await {
            Some(Ok(granted)) => granted.as_bool().unwrap_or(false),
            _ => false,
        }
    }

    /// Whether this origin's storage is already persistent (`navigator.storage.persisted()`);
    /// `false` where unsupported.
    pub async fn is_persisted() -> bool {
        let Some(storage) = js::storage() else {
            return false;
        };
        match js::call_async(&storage, "persisted", &[]).await {
            Some(Ok(persisted)) => persisted.as_bool().unwrap_or(false),
            _ => false,
        }
    }

    /// Behave as in a browser without `FileSystemFileHandle.move()` (to test the fallback).
    #[doc(hidden)]
    pub fn without_move(mut self) -> Self {
        self.use_move = false;
        self
    }

    async fn parent_dir(
        &self,
        path: &LocalPath,
        create: bool,
    ) -> std::result::Result<FileSystemDirectoryHandle, JsValue> {
        match path.parent() {
            Some(parent) => dir_at(&self.dir, &parent, create).await,
            None => Ok(self.dir.clone()),
        }
    }

    /// What is at `path`. A missing parent is `Missing`; a file in place of a parent directory
    /// is an error (`TypeMismatchError`), as `NotADirectory` is natively.
    async fn lookup(&self, path: &LocalPath) -> std::result::Result<Found, JsValue> {
        let parent = match self.parent_dir(path, false).await {
            Ok(d) => d,
            Err(e) if js::is_not_found(&e) => return Ok(Found::Missing),
            Err(e) => return Err(e),
        };
        let name = path.file_name();
        match file_handle(&parent, name, false).await {
            Ok(h) => Ok(Found::File(h)),
            Err(e) if js::is_not_found(&e) => Ok(Found::Missing),
            Err(e) if js::is_type_mismatch(&e) => match sub_dir(&parent, name, false).await {
                Ok(_) => Ok(Found::Dir),
                Err(e) if js::is_not_found(&e) => Ok(Found::Missing),
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        }
    }

    /// Stream `body` into `name` in `dir` and commit it (`close()`). `fresh`: the entry did not
    /// exist before (remove it on failure) or it did (keep it on failure: `abort()` leaves the
    /// old content). Returns the handle and the byte count; on failure cleans up first.
    async fn write_entry(
        &self,
        dir: &FileSystemDirectoryHandle,
        name: &str,
        fresh: bool,
        path: &LocalPath,
        body: ByteStream,
    ) -> Result<(FileSystemFileHandle, u64)> {
        let handle = file_handle(dir, name, true)
            .await
            .map_err(|e| io("create", path, &e, ErrorKind::IsADirectory))?;
        let mut guard = Cleanup {
            dir: dir.clone(),
            name: name.to_owned(),
            remove: fresh,
            writable: None,
            armed: true,
        };
        match fill(&handle, body, path, &mut guard).await {
            Ok(len) => {
                guard.disarm();
                Ok((handle, len))
            }
            Err(e) => {
                guard.run().await;
                Err(e)
            }
        }
    }

    /// The fallback without `move()`: write straight into the target. `createWritable()` keeps
    /// the new data in a swap file until `close()`, so an existing file changes all at once.
    async fn write_in_place(
        &self,
        dir: &FileSystemDirectoryHandle,
        path: &LocalPath,
        body: ByteStream,
    ) -> Result<u64> {
        let name = path.file_name();
        let fresh = match file_handle(dir, name, false).await {
            Ok(_) => false,
            Err(e) if js::is_not_found(&e) => true,
            Err(e) => return Err(io("open", path, &e, ErrorKind::IsADirectory)),
        };
        let (_, len) = self.write_entry(dir, name, fresh, path, body).await?;
        Ok(len)
    }
}

/// What a path names.
enum Found {
    File(FileSystemFileHandle),
    Dir,
    Missing,
}

fn io(op: &'static str, path: impl fmt::Display, err: &JsValue, mismatch: ErrorKind) -> Error {
    Error::Io {
        op,
        path: path.to_string(),
        source: js::io_error(err, mismatch),
    }
}

fn plain_io(op: &'static str, path: impl fmt::Display, kind: ErrorKind, msg: &str) -> Error {
    Error::Io {
        op,
        path: path.to_string(),
        source: std::io::Error::new(kind, msg.to_owned()),
    }
}

fn not_found(what: impl fmt::Display) -> Error {
    Error::NotFound {
        what: what.to_string(),
    }
}

/// A failed body stream is reported as [`Error::Stream`] (retryable), as `NativeFs` does.
fn stream_error(e: Error) -> Error {
    match e {
        Error::Stream { .. } => e,
        other => Error::Stream {
            source: Box::new(other),
        },
    }
}

async fn sub_dir(
    dir: &FileSystemDirectoryHandle,
    name: &str,
    create: bool,
) -> std::result::Result<FileSystemDirectoryHandle, JsValue> {
    let options = FileSystemGetDirectoryOptions::new();
    options.set_create(create);
    Ok(
        js::await_promise(dir.get_directory_handle_with_options(name, &options))
            .await?
            .unchecked_into(),
    )
}

async fn dir_at(
    start: &FileSystemDirectoryHandle,
    path: &LocalPath,
    create: bool,
) -> std::result::Result<FileSystemDirectoryHandle, JsValue> {
    let mut dir = start.clone();
    for segment in path.segments() {
        dir = sub_dir(&dir, segment, create).await?;
    }
    Ok(dir)
}

async fn file_handle(
    dir: &FileSystemDirectoryHandle,
    name: &str,
    create: bool,
) -> std::result::Result<FileSystemFileHandle, JsValue> {
    let options = FileSystemGetFileOptions::new();
    options.set_create(create);
    Ok(
        js::await_promise(dir.get_file_handle_with_options(name, &options))
            .await?
            .unchecked_into(),
    )
}

/// `removeEntry(name, { recursive: true })`; missing is fine.
async fn remove_entry(
    dir: &FileSystemDirectoryHandle,
    name: &str,
) -> std::result::Result<(), JsValue> {
    let mut dir = opfs::web::DirectoryHandle::from(dir.clone());
    match dir
        .remove_entry_with_options(name, &FileSystemRemoveOptions { recursive: true })
        .await
    {
        Err(e) if !js::is_not_found(&e) => Err(e),
        _ => Ok(()),
    }
}

/// Open a writable on `handle` and copy `body` into it, batching small chunks up to
/// [`WRITE_CHUNK`], then `close()` (commit). The writable is recorded in `guard` while open.
async fn fill(
    handle: &FileSystemFileHandle,
    mut body: ByteStream,
    path: &LocalPath,
    guard: &mut Cleanup,
) -> Result<u64> {
    // Opened through web-sys, not `opfs`, because `opfs` hides the JS object and `abort()`
    // needs it; the writes go through `opfs`'s wrapper of the same object.
    // `createWritable()` defaults to `keepExistingData: false`: the entry starts empty.
    let raw: FileSystemWritableFileStream = js::await_promise(handle.create_writable())
        .await
        .map_err(|e| io("open", path, &e, ErrorKind::IsADirectory))?
        .unchecked_into();
    guard.writable = Some(raw.clone());
    let mut writer = opfs::web::WritableFileStream::from(raw);
    let write_err = |e: JsValue| io("write", path, &e, ErrorKind::Other);

    let mut pending = BytesMut::new();
    let mut len = 0u64;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(stream_error)?;
        len += chunk.len() as u64;
        if pending.is_empty() && chunk.len() >= WRITE_CHUNK {
            writer
                .write_at_cursor_pos(&chunk)
                .await
                .map_err(write_err)?;
            continue;
        }
        pending.extend_from_slice(&chunk);
        if pending.len() >= WRITE_CHUNK {
            writer
                .write_at_cursor_pos(&pending)
                .await
                .map_err(write_err)?;
            pending.clear();
        }
    }
    if !pending.is_empty() {
        writer
            .write_at_cursor_pos(&pending)
            .await
            .map_err(write_err)?;
    }
    writer.close().await.map_err(write_err)?;
    guard.writable = None; // closed: nothing left to abort
    Ok(len)
}

/// Undoes a write that did not complete: aborts the writable (its data is discarded) and, for
/// an entry the write created, removes it. Runs explicitly on errors and from `Drop` (in a
/// spawned task) when the write future is dropped part-way.
struct Cleanup {
    dir: FileSystemDirectoryHandle,
    name: String,
    remove: bool,
    writable: Option<FileSystemWritableFileStream>,
    armed: bool,
}

impl Cleanup {
    fn disarm(&mut self) {
        self.armed = false;
    }

    async fn run(&mut self) {
        self.armed = false;
        discard(&self.dir, &self.name, self.remove, self.writable.take()).await;
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if self.armed {
            let (dir, name, remove, writable) = (
                self.dir.clone(),
                std::mem::take(&mut self.name),
                self.remove,
                self.writable.take(),
            );
            drop(filesync_core::rt::spawn(async move {
                discard(&dir, &name, remove, writable).await;
            }));
        }
    }
}

async fn discard(
    dir: &FileSystemDirectoryHandle,
    name: &str,
    remove: bool,
    writable: Option<FileSystemWritableFileStream>,
) {
    if let Some(writable) = writable {
        let _ = js::await_promise(writable.abort()).await;
    }
    if remove && let Err(e) = retry_while_locked(|| remove_entry(dir, name)).await {
        tracing::warn!(entry = name, error = %js::describe(&e), "could not remove an unfinished write");
    }
}

/// `handle.move(dir, name)`, retried while the file is still locked by the writable that was
/// just closed. `None` if the browser has no `move()`.
async fn move_over(
    handle: &FileSystemFileHandle,
    dir: &FileSystemDirectoryHandle,
    name: &str,
) -> Option<std::result::Result<(), JsValue>> {
    match js::move_file(handle, dir, name).await {
        Some(Err(e)) if js::is_locked(&e) => Some(
            retry_while_locked(|| async {
                // `move()` existed a moment ago, so `None` cannot happen here.
                js::move_file(handle, dir, name).await.unwrap_or(Ok(()))
            })
            .await,
        ),
        other => other,
    }
}

/// Run `op` again (up to about 2 s in all) while it fails because the entry is still locked:
/// the browser releases a writable's lock asynchronously, shortly after `close()`/`abort()`
/// resolve, so a `removeEntry`/`move` right after them can fail with
/// `NoModificationAllowedError` on a busy machine.
async fn retry_while_locked<F, Fut>(mut op: F) -> std::result::Result<(), JsValue>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = std::result::Result<(), JsValue>>,
{
    const ATTEMPTS: u64 = 12;
    for attempt in 1.. {
        match op().await {
            Err(e) if attempt < ATTEMPTS && js::is_locked(&e) => {
                filesync_core::rt::sleep(std::time::Duration::from_millis(10 * attempt)).await;
            }
            done => return done,
        }
    }
    Ok(())
}

/// The state of a streamed read: one `File` snapshot and the next offset.
struct Reader {
    file: web_sys::File,
    pos: u64,
    len: u64,
    path: String,
}

async fn next_chunk(mut r: Reader) -> Option<(Result<Bytes>, Reader)> {
    if r.pos >= r.len {
        return None;
    }
    let end = r.len.min(r.pos + READ_CHUNK as u64);
    match read_slice(&r.file, r.pos, end).await {
        Ok(bytes) => {
            r.pos = end;
            Some((Ok(bytes), r))
        }
        Err(e) => {
            r.pos = r.len; // stop after the error
            let err = io("read", &r.path, &e, ErrorKind::Other);
            Some((Err(err), r))
        }
    }
}

/// Bytes `start..end` of the snapshot. Offsets are `f64` in JS: exact far beyond 4 GiB.
async fn read_slice(
    file: &web_sys::File,
    start: u64,
    end: u64,
) -> std::result::Result<Bytes, JsValue> {
    let blob = file.slice_with_f64_and_f64(start as f64, end as f64)?;
    let buffer = js::await_promise(blob.array_buffer()).await?;
    let array = js_sys::Uint8Array::new(&buffer);
    if u64::from(array.length()) != end - start {
        return Err(js_sys::Error::new("short read: the file changed while it was read").into());
    }
    Ok(Bytes::from(array.to_vec()))
}

#[async_trait(?Send)]
impl FileSystem for OpfsFs {
    async fn read(&self, path: &LocalPath) -> Result<ByteStream> {
        let handle = match self
            .lookup(path)
            .await
            .map_err(|e| io("open", path, &e, ErrorKind::NotADirectory))?
        {
            Found::File(h) => h,
            Found::Dir | Found::Missing => return Err(not_found(format_args!("file {path}"))),
        };
        let file: web_sys::File = match js::await_promise(handle.get_file()).await {
            Ok(f) => f.unchecked_into(),
            Err(e) if js::is_not_found(&e) => return Err(not_found(format_args!("file {path}"))),
            Err(e) => return Err(io("open", path, &e, ErrorKind::Other)),
        };
        let reader = Reader {
            len: file.size() as u64,
            file,
            pos: 0,
            path: path.to_string(),
        };
        Ok(Box::pin(futures::stream::unfold(reader, next_chunk)))
    }

    async fn write(&self, path: &LocalPath, body: ByteStream) -> Result<u64> {
        let dir = self.parent_dir(path, true).await.map_err(|e| {
            let parent = path.parent().map(|p| p.to_string()).unwrap_or_default();
            io("create directory", parent, &e, ErrorKind::NotADirectory)
        })?;
        let name = path.file_name();
        if sub_dir(&dir, name, false).await.is_ok() {
            return Err(plain_io(
                "write",
                path,
                ErrorKind::IsADirectory,
                "is a directory",
            ));
        }
        if !self.use_move {
            return self.write_in_place(&dir, path, body).await;
        }
        let temp = temp_name(name);
        let (handle, len) = self.write_entry(&dir, &temp, true, path, body).await?;
        let moved = move_over(&handle, &dir, name).await;
        match moved {
            Some(Ok(())) => Ok(len),
            Some(Err(e)) => {
                let _ = retry_while_locked(|| remove_entry(&dir, &temp)).await;
                Err(io("rename", path, &e, ErrorKind::IsADirectory))
            }
            None => {
                // `open` found `move()`, so this does not happen; fail cleanly if it does.
                let _ = retry_while_locked(|| remove_entry(&dir, &temp)).await;
                Err(Error::Unsupported {
                    what: "FileSystemFileHandle.move()",
                })
            }
        }
    }

    async fn rename(&self, from: &LocalPath, to: &LocalPath) -> Result<()> {
        let source = match self
            .lookup(from)
            .await
            .map_err(|e| io("stat", from, &e, ErrorKind::NotADirectory))?
        {
            Found::File(h) => h,
            Found::Dir | Found::Missing => return Err(not_found(format_args!("file {from}"))),
        };
        if from == to {
            return Ok(());
        }
        let dir = self
            .parent_dir(to, true)
            .await
            .map_err(|e| io("rename", from, &e, ErrorKind::NotADirectory))?;
        if sub_dir(&dir, to.file_name(), false).await.is_ok() {
            return Err(plain_io(
                "rename",
                from,
                ErrorKind::IsADirectory,
                "destination is a directory",
            ));
        }
        if self.use_move
            && let Some(moved) = move_over(&source, &dir, to.file_name()).await
        {
            return moved.map_err(|e| io("rename", from, &e, ErrorKind::IsADirectory));
        }
        // No `move()`: copy, then remove the source (not atomic across the two paths).
        let body = self.read(from).await?;
        self.write(to, body).await?;
        self.remove(from).await
    }

    async fn remove(&self, path: &LocalPath) -> Result<()> {
        let dir = match self.parent_dir(path, false).await {
            Ok(d) => d,
            Err(e) if js::is_not_found(&e) => return Ok(()),
            Err(e) => return Err(io("remove", path, &e, ErrorKind::NotADirectory)),
        };
        remove_entry(&dir, path.file_name())
            .await
            .map_err(|e| io("remove", path, &e, ErrorKind::Other))
    }

    /// The file's `File` (a disk-backed `Blob`): object URLs of local content need no copy.
    async fn blob(&self, path: &LocalPath) -> Result<Option<web_sys::Blob>> {
        let handle = match self
            .lookup(path)
            .await
            .map_err(|e| io("open", path, &e, ErrorKind::NotADirectory))?
        {
            Found::File(h) => h,
            Found::Dir | Found::Missing => return Ok(None),
        };
        match js::await_promise(handle.get_file()).await {
            Ok(f) => Ok(Some(f.unchecked_into())),
            Err(e) if js::is_not_found(&e) => Ok(None),
            Err(e) => Err(io("open", path, &e, ErrorKind::Other)),
        }
    }

    async fn stat(&self, path: &LocalPath) -> Result<Option<FileStat>> {
        let handle = match self
            .lookup(path)
            .await
            .map_err(|e| io("stat", path, &e, ErrorKind::NotADirectory))?
        {
            Found::Missing => return Ok(None),
            Found::Dir => {
                return Ok(Some(FileStat {
                    kind: EntryKind::Directory,
                    len: 0,
                    modified: None,
                }));
            }
            Found::File(h) => h,
        };
        let file: web_sys::File = match js::await_promise(handle.get_file()).await {
            Ok(f) => f.unchecked_into(),
            Err(e) if js::is_not_found(&e) => return Ok(None),
            Err(e) => return Err(io("stat", path, &e, ErrorKind::Other)),
        };
        Ok(Some(FileStat {
            kind: EntryKind::File,
            len: file.size() as u64,
            modified: Timestamp::from_millis(file.last_modified() as i64).ok(),
        }))
    }

    async fn list(&self, dir: &LocalPath) -> Result<Vec<DirEntry>> {
        let handle = match dir_at(&self.dir, dir, false).await {
            Ok(h) => h,
            Err(e) if js::is_not_found(&e) || js::is_type_mismatch(&e) => {
                return Err(not_found(format_args!("directory {dir}")));
            }
            Err(e) => return Err(io("list", dir, &e, ErrorKind::NotADirectory)),
        };
        let list_err = |e: JsValue| io("list", dir, &e, ErrorKind::Other);
        let handle = opfs::web::DirectoryHandle::from(handle);
        let entries = handle.entries().await.map_err(list_err)?;
        let mut entries = std::pin::pin!(entries);
        let mut out = Vec::new();
        while let Some(entry) = entries.next().await {
            let (name, entry) = entry.map_err(list_err)?;
            if is_temp_name(&name) {
                continue; // a write in progress (or one cut short by a closed tab)
            }
            let Ok(path) = dir.join(&name) else {
                continue; // not a valid LocalPath segment: not ours
            };
            let kind = match entry {
                DirectoryEntry::File(_) => EntryKind::File,
                DirectoryEntry::Directory(_) => EntryKind::Directory,
            };
            out.push(DirEntry { path, kind });
        }
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

    async fn create_dir_all(&self, path: &LocalPath) -> Result<()> {
        dir_at(&self.dir, path, true)
            .await
            .map(drop)
            .map_err(|e| io("create directory", path, &e, ErrorKind::NotADirectory))
    }
}
