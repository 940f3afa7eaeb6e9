//! The local filesystem seam: [`FileSystem`], with [`MemoryFs`] (reference implementation) and
//! [`NativeFs`] (tokio, native targets). The browser's `OpfsFs` lives in `filesync-opfs`.
//!
//! Every implementation passes the same conformance suite, `testing::fs` (feature `testing`).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;

use crate::rt::{BoxStream, MaybeSend, MaybeSync};
use crate::types::{LocalPath, Timestamp};
use crate::{Error, Result};

#[cfg(not(target_arch = "wasm32"))]
mod native;
#[cfg(not(target_arch = "wasm32"))]
pub use native::NativeFs;

/// A stream of byte chunks: the body of every read and write. `Send` natively.
pub type ByteStream = BoxStream<'static, Result<Bytes>>;

/// Turn a buffer into a one-chunk [`ByteStream`].
pub fn bytes_stream(data: impl Into<Bytes>) -> ByteStream {
    let data: Bytes = data.into();
    crate::rt::boxed_stream(futures::stream::once(async move { Ok(data) }))
}

/// Read a whole stream into memory. Only for small bodies (sidecars, tests).
pub async fn collect_stream(mut stream: ByteStream) -> Result<Bytes> {
    let mut out = bytes::BytesMut::new();
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk?);
    }
    Ok(out.freeze())
}

/// What a path names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// A regular file.
    File,
    /// A directory.
    Directory,
}

/// What [`FileSystem::stat`] reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileStat {
    /// File or directory.
    pub kind: EntryKind,
    /// Size in bytes (0 for directories).
    pub len: u64,
    /// Last modification, when the backend knows it.
    pub modified: Option<Timestamp>,
}

/// One child of a directory, as [`FileSystem::list`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    /// The entry's full path.
    pub path: LocalPath,
    /// File or directory.
    pub kind: EntryKind,
}

/// The hidden temporary entry an atomic write of `name` goes through before it is moved over
/// the target: `.<name>.tmp-<16 hex>` (shared by `NativeFs` and `filesync-opfs`'s `OpfsFs`).
pub fn temp_name(name: &str) -> String {
    format!(".{name}.tmp-{}", crate::rt::random_hex(8))
}

/// Whether `name` has the shape of [`temp_name`]'s output (listings hide such entries: a write
/// in progress, or one a crash cut short).
pub fn is_temp_name(name: &str) -> bool {
    name.starts_with('.')
        && name.rsplit_once(".tmp-").is_some_and(|(head, tail)| {
            head.len() > 1
                && tail.len() == 16
                && tail.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        })
}

/// A filesystem rooted somewhere, addressed by [`LocalPath`]s that cannot escape the root.
///
/// Contract (checked by `testing::fs`):
/// - `write` is atomic: a reader sees the old content or the new, never a part; if the body
///   stream fails, the old content (or absence) stays and no temporary file is left behind.
///   `write` creates missing parent directories and returns the number of bytes written.
/// - `read` streams; a missing path or a directory is [`Error::NotFound`].
/// - `rename` atomically replaces the destination, creating its parent directories.
/// - `remove` removes a file or a directory with everything in it; a missing path is `Ok`.
/// - `list` returns the direct children sorted by path; a missing directory is `NotFound`.
/// - Memory stays bounded by the chunk size, whatever the file size (native backends).
#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
pub trait FileSystem: MaybeSend + MaybeSync + std::fmt::Debug + 'static {
    /// Stream the file's bytes.
    async fn read(&self, path: &LocalPath) -> Result<ByteStream>;
    /// Atomically replace (or create) the file with the streamed body.
    async fn write(&self, path: &LocalPath, body: ByteStream) -> Result<u64>;
    /// Atomically move a file, replacing the destination.
    async fn rename(&self, from: &LocalPath, to: &LocalPath) -> Result<()>;
    /// Remove a file or directory tree; missing is fine.
    async fn remove(&self, path: &LocalPath) -> Result<()>;
    /// Kind, size and modification time, or `None` if nothing is there.
    async fn stat(&self, path: &LocalPath) -> Result<Option<FileStat>>;
    /// The direct children of a directory, sorted by path.
    async fn list(&self, dir: &LocalPath) -> Result<Vec<DirEntry>>;
    /// Create a directory and its parents; existing directories are fine.
    async fn create_dir_all(&self, path: &LocalPath) -> Result<()>;

    /// In the browser: the file as a `Blob` the browser reads itself (an OPFS `File` is backed
    /// by disk), for `URL.createObjectURL` without copying the bytes into memory. `None` (the
    /// default) makes callers build a Blob from [`read`](Self::read).
    #[cfg(target_arch = "wasm32")]
    async fn blob(&self, _path: &LocalPath) -> Result<Option<web_sys::Blob>> {
        Ok(None)
    }
}

/// Conveniences over any [`FileSystem`].
#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
pub trait FileSystemExt: FileSystem {
    /// Whether a regular file exists at `path` (FS-4: directories do not count).
    async fn exists(&self, path: &LocalPath) -> Result<bool> {
        Ok(matches!(
            self.stat(path).await?,
            Some(FileStat {
                kind: EntryKind::File,
                ..
            })
        ))
    }

    /// Read a whole file into memory (for small files).
    async fn read_bytes(&self, path: &LocalPath) -> Result<Bytes> {
        collect_stream(self.read(path).await?).await
    }

    /// Atomically write a buffer.
    async fn write_bytes(&self, path: &LocalPath, data: Bytes) -> Result<u64> {
        self.write(path, bytes_stream(data)).await
    }

    /// Every file below `dir`, recursively, sorted by path.
    async fn list_files_recursive(&self, dir: &LocalPath) -> Result<Vec<LocalPath>> {
        let mut out = Vec::new();
        let mut pending = vec![dir.clone()];
        while let Some(d) = pending.pop() {
            for entry in self.list(&d).await? {
                match entry.kind {
                    EntryKind::File => out.push(entry.path),
                    EntryKind::Directory => pending.push(entry.path),
                }
            }
        }
        out.sort();
        Ok(out)
    }
}

impl<T: FileSystem + ?Sized> FileSystemExt for T {}

#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
impl<T: FileSystem + ?Sized> FileSystem for Arc<T> {
    async fn read(&self, path: &LocalPath) -> Result<ByteStream> {
        (**self).read(path).await
    }
    async fn write(&self, path: &LocalPath, body: ByteStream) -> Result<u64> {
        (**self).write(path, body).await
    }
    async fn rename(&self, from: &LocalPath, to: &LocalPath) -> Result<()> {
        (**self).rename(from, to).await
    }
    async fn remove(&self, path: &LocalPath) -> Result<()> {
        (**self).remove(path).await
    }
    async fn stat(&self, path: &LocalPath) -> Result<Option<FileStat>> {
        (**self).stat(path).await
    }
    async fn list(&self, dir: &LocalPath) -> Result<Vec<DirEntry>> {
        (**self).list(dir).await
    }
    async fn create_dir_all(&self, path: &LocalPath) -> Result<()> {
        (**self).create_dir_all(path).await
    }
}

#[derive(Debug, Clone)]
enum Node {
    File { data: Bytes, modified: Timestamp },
    Dir,
}

/// An in-memory [`FileSystem`]: the reference implementation, for fast tests. Cloning shares
/// the same tree. File contents live in memory, by definition.
#[derive(Debug, Clone, Default)]
pub struct MemoryFs {
    nodes: Arc<Mutex<BTreeMap<String, Node>>>,
}

impl MemoryFs {
    /// An empty filesystem.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Node>> {
        // A panic while holding the lock cannot leave the map half-updated (every change is one
        // insert or remove), so a poisoned lock is safe to keep using.
        self.nodes.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn ensure_parents(nodes: &mut BTreeMap<String, Node>, path: &LocalPath) -> Result<()> {
        let mut cur = path.parent();
        let mut missing = Vec::new();
        while let Some(p) = cur {
            match nodes.get(p.as_str()) {
                Some(Node::Dir) => break,
                Some(Node::File { .. }) => {
                    return Err(Error::io(
                        "create directory",
                        &p,
                        std::io::Error::other("a file is in the way"),
                    ));
                }
                None => {
                    cur = p.parent();
                    missing.push(p);
                }
            }
        }
        for p in missing {
            nodes.insert(p.as_str().to_owned(), Node::Dir);
        }
        Ok(())
    }

    fn remove_tree(nodes: &mut BTreeMap<String, Node>, path: &str) {
        nodes.remove(path);
        let prefix = format!("{path}/");
        let children: Vec<String> = nodes
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .map(|(k, _)| k.clone())
            .collect();
        for k in children {
            nodes.remove(&k);
        }
    }
}

#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
impl FileSystem for MemoryFs {
    async fn read(&self, path: &LocalPath) -> Result<ByteStream> {
        match self.lock().get(path.as_str()) {
            Some(Node::File { data, .. }) => Ok(bytes_stream(data.clone())),
            _ => Err(Error::not_found(format_args!("file {path}"))),
        }
    }

    async fn write(&self, path: &LocalPath, body: ByteStream) -> Result<u64> {
        // Collect first: the tree changes only once the whole body has arrived.
        let data = collect_stream(body).await.map_err(|e| match e {
            Error::Stream { .. } => e,
            other => Error::Stream {
                source: Box::new(other),
            },
        })?;
        let len = data.len() as u64;
        let mut nodes = self.lock();
        if matches!(nodes.get(path.as_str()), Some(Node::Dir)) {
            return Err(Error::io(
                "write",
                path,
                std::io::Error::other("is a directory"),
            ));
        }
        Self::ensure_parents(&mut nodes, path)?;
        nodes.insert(
            path.as_str().to_owned(),
            Node::File {
                data,
                modified: Timestamp::now(),
            },
        );
        Ok(len)
    }

    async fn rename(&self, from: &LocalPath, to: &LocalPath) -> Result<()> {
        let mut nodes = self.lock();
        let node = match nodes.get(from.as_str()) {
            Some(n @ Node::File { .. }) => n.clone(),
            _ => return Err(Error::not_found(format_args!("file {from}"))),
        };
        if matches!(nodes.get(to.as_str()), Some(Node::Dir)) {
            return Err(Error::io(
                "rename",
                to,
                std::io::Error::other("is a directory"),
            ));
        }
        Self::ensure_parents(&mut nodes, to)?;
        nodes.remove(from.as_str());
        nodes.insert(to.as_str().to_owned(), node);
        Ok(())
    }

    async fn remove(&self, path: &LocalPath) -> Result<()> {
        Self::remove_tree(&mut self.lock(), path.as_str());
        Ok(())
    }

    async fn stat(&self, path: &LocalPath) -> Result<Option<FileStat>> {
        Ok(self.lock().get(path.as_str()).map(|n| match n {
            Node::File { data, modified } => FileStat {
                kind: EntryKind::File,
                len: data.len() as u64,
                modified: Some(*modified),
            },
            Node::Dir => FileStat {
                kind: EntryKind::Directory,
                len: 0,
                modified: None,
            },
        }))
    }

    async fn list(&self, dir: &LocalPath) -> Result<Vec<DirEntry>> {
        let nodes = self.lock();
        if !matches!(nodes.get(dir.as_str()), Some(Node::Dir)) {
            return Err(Error::not_found(format_args!("directory {dir}")));
        }
        let prefix = format!("{dir}/");
        let mut out = Vec::new();
        for (k, n) in nodes.range(prefix.clone()..) {
            let Some(rest) = k.strip_prefix(&prefix) else {
                break;
            };
            if rest.contains('/') {
                continue;
            }
            out.push(DirEntry {
                path: LocalPath::parse(k.clone())?,
                kind: match n {
                    Node::File { .. } => EntryKind::File,
                    Node::Dir => EntryKind::Directory,
                },
            });
        }
        Ok(out)
    }

    async fn create_dir_all(&self, path: &LocalPath) -> Result<()> {
        let mut nodes = self.lock();
        match nodes.get(path.as_str()) {
            Some(Node::Dir) => return Ok(()),
            Some(Node::File { .. }) => {
                return Err(Error::io(
                    "create directory",
                    path,
                    std::io::Error::other("a file is in the way"),
                ));
            }
            None => {}
        }
        Self::ensure_parents(&mut nodes, path)?;
        nodes.insert(path.as_str().to_owned(), Node::Dir);
        Ok(())
    }
}
