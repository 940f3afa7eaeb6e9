//! Content-addressed local storage over any [`FileSystem`].
//!
//! Layout (FS-1, FS-2), compatible with the original:
//! `livestore-filesync-files/<storeId>/<sha256hex>` holds the bytes and
//! `livestore-filesync-files/<storeId>/<sha256hex>.meta.json` the sidecar
//! `{"type":"<mime>","lastModified":<epoch ms>}`.
//!
//! Better than the original:
//! - Bytes are hashed while they are written (never read twice) into a temporary file under
//!   `livestore-filesync-files/<storeId>/.tmp/`, then renamed to the path of the hash they actually
//!   produced. The sidecar is written atomically *before* the rename, so a crash never leaves
//!   bytes without their type (WEAK-27).
//! - [`ContentStore::import_verified`] accepts downloaded bytes only when they hash to the
//!   expected [`ContentHash`]; otherwise [`Error::HashMismatch`] and nothing becomes visible (WEAK-5).
//! - Removal goes through [`References`]: content another live file still uses is never
//!   removed (WEAK-6), and [`ContentStore::gc`] removes content no file references (WEAK-8).
//!   Content written but not yet committed is protected by the [`Pin`] that `put` returns.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::fs::{ByteStream, EntryKind, FileSystem, FileSystemExt};
use crate::hash;
use crate::schema::{FileRecord, store_root, stored_path};
use crate::types::{ContentHash, LocalPath, StoreId, Timestamp};
use crate::{Error, Result};

/// The sidecar's file name suffix.
pub const SIDECAR_SUFFIX: &str = ".meta.json";
/// The MIME type reported when none was recorded (FS-6).
pub const DEFAULT_MIME_TYPE: &str = "application/octet-stream";
const TEMP_DIR: &str = ".tmp";

/// The `<hash>.meta.json` sidecar (FS-2): `{"type":"<mime>","lastModified":<epoch ms>}`, with
/// `type` omitted when empty. A malformed sidecar reads as empty (FS-6).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Sidecar {
    /// The MIME type recorded at write time.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub mime: Option<String>,
    /// When the bytes were written, epoch milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_modified: Option<i64>,
}

impl Sidecar {
    /// The recorded MIME type, or `application/octet-stream`.
    pub fn mime_type(&self) -> &str {
        self.mime
            .as_deref()
            .filter(|m| !m.is_empty())
            .unwrap_or(DEFAULT_MIME_TYPE)
    }
}

/// What [`ContentStore::put`] and [`ContentStore::import_verified`] report.
#[derive(Debug)]
pub struct PutOutcome {
    /// The hash of the bytes written.
    pub hash: ContentHash,
    /// Their length.
    pub size: u64,
    /// Where they are: `livestore-filesync-files/<storeId>/<hash>`.
    pub path: LocalPath,
    /// Keeps [`ContentStore::gc`] away from the content until the record referencing it is
    /// committed. Drop it after the commit.
    pub pin: Pin,
}

/// Protects content from [`ContentStore::gc`] while it is alive.
#[derive(Debug)]
pub struct Pin {
    pins: Arc<Mutex<HashMap<ContentHash, usize>>>,
    hash: ContentHash,
}

impl Drop for Pin {
    fn drop(&mut self) {
        let mut pins = self.pins.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = pins.get_mut(&self.hash) {
            *n -= 1;
            if *n == 0 {
                pins.remove(&self.hash);
            }
        }
    }
}

/// How many live (not soft-deleted) file records use each content hash: computed from the
/// `files` rows, so it is always in step with the log.
#[derive(Debug, Clone, Default)]
pub struct References {
    counts: HashMap<ContentHash, usize>,
}

impl References {
    /// Count the live records per content hash.
    pub fn from_records<'a>(records: impl IntoIterator<Item = &'a FileRecord>) -> Self {
        let mut counts = HashMap::new();
        for r in records.into_iter().filter(|r| !r.is_deleted()) {
            *counts.entry(r.content_hash).or_insert(0) += 1;
        }
        Self { counts }
    }

    /// How many live records use `hash`.
    pub fn count(&self, hash: &ContentHash) -> usize {
        self.counts.get(hash).copied().unwrap_or(0)
    }

    /// Whether any live record uses `hash`.
    pub fn is_referenced(&self, hash: &ContentHash) -> bool {
        self.count(hash) > 0
    }
}

/// What [`ContentStore::gc`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcReport {
    /// Content removed because no live record referenced it.
    pub removed: Vec<ContentHash>,
    /// Leftover temporary files removed.
    pub temp_files_removed: usize,
    /// Content kept because a record references it or a [`Pin`] protects it.
    pub kept: usize,
}

/// Content-addressed storage for one store id over any [`FileSystem`].
#[derive(Debug, Clone)]
pub struct ContentStore {
    fs: Arc<dyn FileSystem>,
    store: StoreId,
    pins: Arc<Mutex<HashMap<ContentHash, usize>>>,
}

impl ContentStore {
    /// Content storage for `store` on `fs`.
    pub fn new(fs: Arc<dyn FileSystem>, store: StoreId) -> Self {
        Self {
            fs,
            store,
            pins: Arc::default(),
        }
    }

    /// The filesystem underneath.
    pub fn fs(&self) -> &Arc<dyn FileSystem> {
        &self.fs
    }

    /// The store id.
    pub fn store_id(&self) -> &StoreId {
        &self.store
    }

    /// Where `hash`'s bytes live: `livestore-filesync-files/<storeId>/<hash>`.
    pub fn path_of(&self, hash: &ContentHash) -> LocalPath {
        stored_path(&self.store, hash)
    }

    fn sidecar_path(&self, hash: &ContentHash) -> LocalPath {
        LocalPath::parse(format!("{}{SIDECAR_SUFFIX}", self.path_of(hash)))
            .unwrap_or_else(|_| unreachable!("a stored path plus a suffix is a valid path"))
    }

    fn temp_path(&self) -> LocalPath {
        store_root(&self.store)
            .join(&format!("{TEMP_DIR}/{}", crate::rt::random_hex(12)))
            .unwrap_or_else(|_| unreachable!("hex is a valid path segment"))
    }

    fn pin(&self, hash: ContentHash) -> Pin {
        *self
            .pins
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(hash)
            .or_insert(0) += 1;
        Pin {
            pins: Arc::clone(&self.pins),
            hash,
        }
    }

    fn is_pinned(&self, hash: &ContentHash) -> bool {
        self.pins
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(hash)
    }

    /// Store bytes under the hash they produce, hashing while writing. `mime` goes into the sidecar.
    pub async fn put(&self, body: ByteStream, mime: Option<&str>) -> Result<PutOutcome> {
        self.write_hashed(body, mime, None).await
    }

    /// Store downloaded bytes, accepting them only if they hash to `expected`. On a mismatch the
    /// result is [`Error::HashMismatch`] and nothing becomes visible; existing content is untouched.
    pub async fn import_verified(
        &self,
        expected: &ContentHash,
        body: ByteStream,
        mime: Option<&str>,
    ) -> Result<PutOutcome> {
        self.write_hashed(body, mime, Some(expected)).await
    }

    async fn write_hashed(
        &self,
        body: ByteStream,
        mime: Option<&str>,
        expected: Option<&ContentHash>,
    ) -> Result<PutOutcome> {
        let temp = self.temp_path();
        let (body, digest) = hash::tee(body);
        let written = self.fs.write(&temp, body).await;
        let outcome = async {
            let size = written?;
            let (hash, hashed) = digest.get().ok_or_else(hash::incomplete)?;
            debug_assert_eq!(hashed, size);
            if let Some(expected) = expected
                && *expected != hash
            {
                return Err(Error::HashMismatch {
                    expected: *expected,
                    actual: hash,
                });
            }
            let pin = self.pin(hash);
            // The sidecar first: the bytes never appear without their type.
            let sidecar = Sidecar {
                mime: mime
                    .map(str::trim)
                    .filter(|m| !m.is_empty())
                    .map(str::to_owned),
                last_modified: Some(Timestamp::now().as_millis()),
            };
            let json =
                serde_json::to_vec(&sidecar).map_err(|e| Error::unencodable("sidecar", e))?;
            self.fs
                .write_bytes(&self.sidecar_path(&hash), json.into())
                .await?;
            let path = self.path_of(&hash);
            self.fs.rename(&temp, &path).await?;
            Ok(PutOutcome {
                hash,
                size,
                path,
                pin,
            })
        }
        .await;
        if outcome.is_err() {
            // Best effort: the write itself already cleans up after a failed stream.
            let _ = self.fs.remove(&temp).await;
        }
        outcome
    }

    /// Stream `hash`'s bytes, with its sidecar ([`Error::NotFound`] if absent).
    pub async fn read(&self, hash: &ContentHash) -> Result<(ByteStream, Sidecar)> {
        let body = self.fs.read(&self.path_of(hash)).await?;
        Ok((body, self.sidecar(hash).await))
    }

    /// The sidecar of `hash`; missing or malformed reads as empty (FS-6).
    pub async fn sidecar(&self, hash: &ContentHash) -> Sidecar {
        match self.fs.read_bytes(&self.sidecar_path(hash)).await {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_default(),
            Err(_) => Sidecar::default(),
        }
    }

    /// Whether the bytes of `hash` are stored.
    pub async fn contains(&self, hash: &ContentHash) -> Result<bool> {
        self.fs.exists(&self.path_of(hash)).await
    }

    /// Remove `hash`'s bytes and sidecar unless a live record in `refs` or a [`Pin`] still uses
    /// it. Returns whether it was removed. Removing absent content is `Ok(false)`.
    pub async fn release(&self, hash: &ContentHash, refs: &References) -> Result<bool> {
        if refs.is_referenced(hash) || self.is_pinned(hash) {
            return Ok(false);
        }
        let existed = self.contains(hash).await?;
        self.fs.remove(&self.path_of(hash)).await?;
        self.fs.remove(&self.sidecar_path(hash)).await?;
        Ok(existed)
    }

    /// Every stored hash (sidecars and temporary files are not listed), sorted.
    pub async fn list(&self) -> Result<Vec<ContentHash>> {
        let root = store_root(&self.store);
        let entries = match self.fs.list(&root).await {
            Ok(e) => e,
            Err(e) if e.is_not_found() => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let set: BTreeSet<ContentHash> = entries
            .iter()
            .filter(|e| e.kind == EntryKind::File)
            .filter_map(|e| ContentHash::parse(e.path.file_name()).ok())
            .collect();
        Ok(set.into_iter().collect())
    }

    /// Remove content no live record references and no [`Pin`] protects, orphaned sidecars,
    /// and leftover temporary files (from crashed writes). Meant for when no write runs (in
    /// this process or another on the same directory); otherwise use [`gc_older_than`](Self::gc_older_than).
    pub async fn gc(&self, refs: &References) -> Result<GcReport> {
        self.sweep(refs, None).await
    }

    /// [`gc`](Self::gc), sparing every entry modified after `cutoff` (or whose modification
    /// time the backend does not know): content another process has just written and not yet
    /// committed, or a write still running, stays until it is older.
    pub async fn gc_older_than(&self, refs: &References, cutoff: Timestamp) -> Result<GcReport> {
        self.sweep(refs, Some(cutoff)).await
    }

    /// Whether `path` may go: always without a cutoff, else only if modified before it.
    async fn old_enough(&self, path: &LocalPath, cutoff: Option<Timestamp>) -> Result<bool> {
        let Some(cutoff) = cutoff else {
            return Ok(true);
        };
        Ok(self
            .fs
            .stat(path)
            .await?
            .and_then(|s| s.modified)
            .is_some_and(|m| m < cutoff))
    }

    async fn sweep(&self, refs: &References, cutoff: Option<Timestamp>) -> Result<GcReport> {
        let mut report = GcReport::default();
        let root = store_root(&self.store);
        let entries = match self.fs.list(&root).await {
            Ok(e) => e,
            Err(e) if e.is_not_found() => return Ok(report),
            Err(e) => return Err(e),
        };
        let present: BTreeSet<ContentHash> = self.list().await?.into_iter().collect();
        for entry in &entries {
            let name = entry.path.file_name();
            if entry.kind == EntryKind::Directory && name == TEMP_DIR {
                continue;
            }
            if let Ok(hash) = ContentHash::parse(name) {
                let unused = !refs.is_referenced(&hash) && !self.is_pinned(&hash);
                if unused
                    && self.old_enough(&entry.path, cutoff).await?
                    && self.release(&hash, refs).await?
                {
                    report.removed.push(hash);
                } else {
                    report.kept += 1;
                }
            } else if let Some(base) = name.strip_suffix(SIDECAR_SUFFIX) {
                // A sidecar whose bytes are gone (e.g. a crash before the rename).
                if let Ok(hash) = ContentHash::parse(base)
                    && !present.contains(&hash)
                    && !self.is_pinned(&hash)
                    && self.old_enough(&entry.path, cutoff).await?
                {
                    self.fs.remove(&entry.path).await?;
                }
            }
        }
        // Temporary files belong to writes in progress only while a write is running: without
        // a cutoff gc must run when none is (at start-up); with one, only old ones go.
        if let Ok(temp_dir) = root.join(TEMP_DIR)
            && let Ok(temps) = self.fs.list(&temp_dir).await
        {
            for t in temps {
                if self.old_enough(&t.path, cutoff).await? {
                    self.fs.remove(&t.path).await?;
                    report.temp_files_removed += 1;
                }
            }
        }
        Ok(report)
    }
}
