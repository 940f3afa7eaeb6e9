//! [`NativeFs`]: the [`FileSystem`] on a real directory, with tokio.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use tokio::sync::mpsc;

use super::{ByteStream, DirEntry, EntryKind, FileStat, FileSystem};
use crate::types::{LocalPath, Timestamp};
use crate::{Error, Result};

/// Chunk size of reads: large enough that hashing runs at full speed, small enough to stay bounded.
const CHUNK: usize = 256 * 1024;
/// Chunks in flight between the I/O thread and the async side, each way. Memory per open
/// stream is bounded by `(DEPTH + 2) * CHUNK` (about 1.5 MiB), whatever the file size.
const DEPTH: usize = 4;

/// A [`FileSystem`] rooted at a directory on disk.
///
/// Reads and writes run on tokio's blocking pool and exchange 256 KiB chunks with the caller
/// through a bounded channel, so disk I/O overlaps with whatever the caller does with the bytes
/// (hashing, uploading) and memory stays bounded whatever the file size.
///
/// Writes go to a hidden temporary file next to the target (`.<name>.tmp-<random>`), are
/// fsynced, then renamed over the target, and the directory is fsynced: a reader sees the old
/// file or the new one, never a part, also across a crash. A failed or cancelled write removes
/// its temporary file. [`LocalPath`] cannot contain `..`, so no path leaves the root (symlinks
/// placed inside the root by someone else are followed, as the OS does).
#[derive(Debug, Clone)]
pub struct NativeFs {
    root: PathBuf,
    #[cfg(feature = "testing")]
    _scratch: Option<std::sync::Arc<tempfile::TempDir>>,
}

impl NativeFs {
    /// A filesystem rooted at `root`. The directory is created on first write if missing.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            #[cfg(feature = "testing")]
            _scratch: None,
        }
    }

    /// A filesystem in a new temporary directory, removed when the last clone is dropped.
    #[cfg(feature = "testing")]
    pub fn scratch() -> Result<Self> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("create", "temporary directory", e))?;
        Ok(Self {
            root: dir.path().to_path_buf(),
            _scratch: Some(std::sync::Arc::new(dir)),
        })
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The absolute path of `path` under the root.
    pub fn resolve(&self, path: &LocalPath) -> PathBuf {
        let mut p = self.root.clone();
        p.extend(path.segments());
        p
    }

    fn temp_path(&self, target: &Path) -> PathBuf {
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        target.with_file_name(super::temp_name(&name))
    }
}

fn sync_dir(dir: &Path) {
    // Persist the rename itself. Not every platform can open a directory; that is not an error.
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

fn modified(meta: &std::fs::Metadata) -> Option<Timestamp> {
    meta.modified().ok().map(Timestamp::from_system_time)
}

/// What the async side sends to the writer thread.
enum Feed {
    Data(Bytes),
    /// The body ended: fsync and report. A closed channel without `Finish` means "abort".
    Finish,
}

/// The writer thread: write chunks to `temp`, fsync on `Finish`; on any error or abort remove
/// `temp`. Returns the number of bytes written.
fn write_temp(temp: &Path, mut rx: mpsc::Receiver<Feed>) -> std::io::Result<u64> {
    let result = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(temp)?;
        let mut len = 0u64;
        loop {
            match rx.blocking_recv() {
                Some(Feed::Data(chunk)) => {
                    file.write_all(&chunk)?;
                    len += chunk.len() as u64;
                }
                Some(Feed::Finish) => {
                    file.sync_all()?;
                    return Ok(len);
                }
                None => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::Interrupted,
                        "write abandoned",
                    ));
                }
            }
        }
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(temp);
    }
    result
}

#[async_trait]
impl FileSystem for NativeFs {
    async fn read(&self, path: &LocalPath) -> Result<ByteStream> {
        let full = self.resolve(path);
        let opened = crate::rt::spawn_blocking(move || {
            let file = std::fs::File::open(&full)?;
            let is_file = file.metadata()?.is_file();
            Ok::<_, std::io::Error>((file, is_file))
        })
        .await
        .and_then(|r| r);
        let mut file = match opened {
            Ok((file, true)) => file,
            Ok((_, false)) => return Err(Error::not_found(format_args!("file {path}"))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::not_found(format_args!("file {path}")));
            }
            Err(e) => return Err(Error::io("open", path, e)),
        };
        let (tx, rx) = mpsc::channel::<Result<Bytes>>(DEPTH);
        let shown = path.to_string();
        // Read ahead on the blocking pool; stops when the stream is dropped (send fails).
        drop(crate::rt::spawn_blocking(move || {
            loop {
                let mut buf = BytesMut::zeroed(CHUNK);
                let item = match file.read(&mut buf) {
                    Ok(0) => return,
                    Ok(n) => {
                        buf.truncate(n);
                        Ok(buf.freeze())
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => Err(Error::io("read", &shown, e)),
                };
                let failed = item.is_err();
                if tx.blocking_send(item).is_err() || failed {
                    return;
                }
            }
        }));
        let stream = futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        });
        Ok(Box::pin(stream))
    }

    async fn write(&self, path: &LocalPath, mut body: ByteStream) -> Result<u64> {
        let target = self.resolve(path);
        let dir = target.parent().unwrap_or(&self.root).to_path_buf();
        let temp = self.temp_path(&target);
        let (tx, rx) = mpsc::channel::<Feed>(DEPTH);
        let writer = {
            let (dir, temp) = (dir.clone(), temp.clone());
            crate::rt::spawn_blocking(move || {
                std::fs::create_dir_all(&dir)?;
                write_temp(&temp, rx)
            })
        };

        // Feed the writer; stop early if it failed (its error is reported below).
        let mut fed: Result<()> = Ok(());
        while let Some(chunk) = body.next().await {
            match chunk {
                Ok(chunk) => {
                    if tx.send(Feed::Data(chunk)).await.is_err() {
                        break;
                    }
                }
                Err(e) => {
                    fed = Err(match e {
                        Error::Stream { .. } => e,
                        other => Error::Stream {
                            source: Box::new(other),
                        },
                    });
                    break;
                }
            }
        }
        if fed.is_ok() {
            let _ = tx.send(Feed::Finish).await;
        }
        drop(tx); // without `Finish`, the writer removes the temporary file
        let written = writer.await.and_then(|r| r);
        fed?;
        let len = written.map_err(|e| Error::io("write", path, e))?;

        let shown = path.to_string();
        crate::rt::spawn_blocking(move || {
            if let Err(e) = std::fs::rename(&temp, &target) {
                let _ = std::fs::remove_file(&temp);
                return Err(Error::io("rename", &shown, e));
            }
            sync_dir(&dir);
            Ok(())
        })
        .await
        .map_err(|e| Error::io("rename", path, e))??;
        Ok(len)
    }

    async fn rename(&self, from: &LocalPath, to: &LocalPath) -> Result<()> {
        let src = self.resolve(from);
        match tokio::fs::metadata(&src).await {
            Ok(m) if m.is_file() => {}
            Ok(_) => return Err(Error::not_found(format_args!("file {from}"))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::not_found(format_args!("file {from}")));
            }
            Err(e) => return Err(Error::io("stat", from, e)),
        }
        let dst = self.resolve(to);
        let dir = dst.parent().unwrap_or(&self.root).to_path_buf();
        crate::rt::spawn_blocking(move || {
            std::fs::create_dir_all(&dir)?;
            std::fs::rename(&src, &dst)?;
            sync_dir(&dir);
            Ok::<_, std::io::Error>(())
        })
        .await
        .and_then(|r| r)
        .map_err(|e| Error::io("rename", from, e))
    }

    async fn remove(&self, path: &LocalPath) -> Result<()> {
        let full = self.resolve(path);
        let result = match tokio::fs::symlink_metadata(&full).await {
            Ok(m) if m.is_dir() => tokio::fs::remove_dir_all(&full).await,
            Ok(_) => tokio::fs::remove_file(&full).await,
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io("remove", path, e)),
        }
    }

    async fn stat(&self, path: &LocalPath) -> Result<Option<FileStat>> {
        match tokio::fs::metadata(self.resolve(path)).await {
            Ok(m) => Ok(Some(FileStat {
                kind: if m.is_dir() {
                    EntryKind::Directory
                } else {
                    EntryKind::File
                },
                len: if m.is_dir() { 0 } else { m.len() },
                modified: modified(&m),
            })),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io("stat", path, e)),
        }
    }

    async fn list(&self, dir: &LocalPath) -> Result<Vec<DirEntry>> {
        let full = self.resolve(dir);
        let mut rd = match tokio::fs::read_dir(&full).await {
            Ok(rd) => rd,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
                ) =>
            {
                return Err(Error::not_found(format_args!("directory {dir}")));
            }
            Err(e) => return Err(Error::io("list", dir, e)),
        };
        let mut out = Vec::new();
        while let Some(entry) = rd
            .next_entry()
            .await
            .map_err(|e| Error::io("list", dir, e))?
        {
            let Ok(name) = entry.file_name().into_string() else {
                continue; // not UTF-8: not ours
            };
            let Ok(path) = dir.join(&name) else {
                continue; // not a valid LocalPath segment: not ours
            };
            let kind = match entry.file_type().await {
                Ok(t) if t.is_dir() => EntryKind::Directory,
                Ok(_) => EntryKind::File,
                Err(e) => return Err(Error::io("stat", &path, e)),
            };
            out.push(DirEntry { path, kind });
        }
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

    async fn create_dir_all(&self, path: &LocalPath) -> Result<()> {
        tokio::fs::create_dir_all(self.resolve(path))
            .await
            .map_err(|e| Error::io("create directory", path, e))
    }
}
