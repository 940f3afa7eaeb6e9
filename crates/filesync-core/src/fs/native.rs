//! [`NativeFs`]: the [`FileSystem`] on a real directory, with tokio.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use futures::StreamExt;
use tokio::io::AsyncWriteExt;

use super::{ByteStream, DirEntry, EntryKind, FileStat, FileSystem};
use crate::types::{LocalPath, Timestamp};
use crate::{Error, Result};

/// Read chunk size: large enough that hashing runs at full speed, small enough to stay bounded.
const READ_CHUNK: usize = 256 * 1024;

/// A [`FileSystem`] rooted at a directory on disk.
///
/// Writes go to a hidden temporary file next to the target (`.<name>.tmp-<random>`), are
/// fsynced, then renamed over the target, and the directory is fsynced: a reader sees the old
/// file or the new one, never a part, also across a crash. Reads stream in 256 KiB chunks.
/// [`LocalPath`] cannot contain `..`, so no path leaves the root (symlinks placed inside the
/// root by someone else are followed, as the OS does).
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
        let mut rand = [0u8; 8];
        crate::rt::fill_random(&mut rand);
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        target.with_file_name(format!(".{name}.tmp-{}", hex::encode(rand)))
    }
}

async fn sync_dir(dir: &Path) {
    // Persist the rename itself. Not every platform can open a directory; that is not an error.
    if let Ok(d) = tokio::fs::File::open(dir).await {
        let _ = d.sync_all().await;
    }
}

fn modified(meta: &std::fs::Metadata) -> Option<Timestamp> {
    meta.modified().ok().map(Timestamp::from_system_time)
}

#[async_trait]
impl FileSystem for NativeFs {
    async fn read(&self, path: &LocalPath) -> Result<ByteStream> {
        let full = self.resolve(path);
        let file = match tokio::fs::File::open(&full).await {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::not_found(format_args!("file {path}")));
            }
            Err(e) => return Err(Error::io("open", path, e)),
        };
        let meta = file
            .metadata()
            .await
            .map_err(|e| Error::io("stat", path, e))?;
        if !meta.is_file() {
            return Err(Error::not_found(format_args!("file {path}")));
        }
        let shown = path.to_string();
        let stream = tokio_util::io::ReaderStream::with_capacity(file, READ_CHUNK)
            .map(move |r| r.map_err(|e| Error::io("read", &shown, e)));
        Ok(Box::pin(stream))
    }

    async fn write(&self, path: &LocalPath, mut body: ByteStream) -> Result<u64> {
        let target = self.resolve(path);
        let dir = target.parent().unwrap_or(&self.root).to_path_buf();
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(|e| Error::io("create directory", path, e))?;
        let temp = self.temp_path(&target);
        let mut file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)
            .await
            .map_err(|e| Error::io("create", path, e))?;

        let outcome: Result<u64> = async {
            let mut len = 0u64;
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(|e| match e {
                    Error::Stream { .. } => e,
                    other => Error::Stream {
                        source: Box::new(other),
                    },
                })?;
                file.write_all(&chunk)
                    .await
                    .map_err(|e| Error::io("write", path, e))?;
                len += chunk.len() as u64;
            }
            file.sync_all()
                .await
                .map_err(|e| Error::io("sync", path, e))?;
            Ok(len)
        }
        .await;
        drop(file);

        let len = match outcome {
            Ok(len) => len,
            Err(e) => {
                let _ = tokio::fs::remove_file(&temp).await;
                return Err(e);
            }
        };
        if let Err(e) = tokio::fs::rename(&temp, &target).await {
            let _ = tokio::fs::remove_file(&temp).await;
            return Err(Error::io("rename", path, e));
        }
        sync_dir(&dir).await;
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
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(|e| Error::io("create directory", to, e))?;
        tokio::fs::rename(&src, &dst)
            .await
            .map_err(|e| Error::io("rename", from, e))?;
        sync_dir(&dir).await;
        Ok(())
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
