//! The bucket behind the proxy: any [`object_store::ObjectStore`], with the content type kept
//! beside each object. S3 and R2 keep it as the object's `Content-Type`; object_store's
//! `LocalFileSystem` cannot store attributes, so a local bucket keeps it in a small sidecar
//! store (`<data-dir>/meta/<key>`) next to the objects (`<data-dir>/objects/<key>`).
//!
//! A local sidecar holds `<etag>\n<type>`: the type and the identity (object_store's etag:
//! inode, mtime, size) of the object it was written for, after that object was published.
//! A type is served only with the object it names, so concurrent writers of one key can never
//! pair one writer's type with another's bytes; a process that dies between publishing the
//! bytes and writing their sidecar leaves an object served as `application/octet-stream`
//! (its upload was never acknowledged, so the client uploads it again). Within a process,
//! publishing and writing the sidecar (and deleting) hold a per-key lock, so the last
//! writer's type is the one kept. A sidecar without a newline (written before this format)
//! is taken as it is.
//!
//! Uploads are staged by object_store as `<key>#<n>` beside their target and renamed into
//! place; such names are never listed and no key maps to them (`#` is encoded in paths). A
//! process that dies mid-upload leaves its staging file: [`Bucket::local`] sweeps them at
//! start-up (one server per data directory).

use std::path::Path as FsPath;
use std::sync::Arc;

use bytes::Bytes;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{Attribute, Attributes, ObjectStore, ObjectStoreExt, PutPayload};
use tokio::io::AsyncWriteExt;

use filesync_core::BoxError;
use filesync_core::server::s3::S3Settings;
use filesync_core::types::ObjectKey;

use crate::{Error, Result};

/// Where content types live.
#[derive(Debug, Clone)]
enum TypeStore {
    /// The object's own `Content-Type` attribute.
    Attributes,
    /// A sidecar store holding each object's type as its body.
    Sidecar(Arc<dyn ObjectStore>),
}

/// How many locks the keys of a bucket share (a key's lock is picked by its hash).
const KEY_LOCKS: usize = 64;

/// An object store plus where its content types live.
#[derive(Debug, Clone)]
pub struct Bucket {
    store: Arc<dyn ObjectStore>,
    types: TypeStore,
    description: String,
    /// A local bucket's directories (objects, types): they must exist for it to be healthy
    /// (object_store lists a missing directory as empty).
    local_dirs: Vec<std::path::PathBuf>,
    /// Serialise publishing an object with writing its type (and deleting both), per key.
    key_locks: Arc<[tokio::sync::Mutex<()>; KEY_LOCKS]>,
}

fn key_locks() -> Arc<[tokio::sync::Mutex<()>; KEY_LOCKS]> {
    Arc::new(std::array::from_fn(|_| tokio::sync::Mutex::new(())))
}

/// Whether `name` is an object_store staging file's name: `<name>#<digits>`.
fn is_staging_name(name: &str) -> bool {
    name.rsplit_once('#')
        .is_some_and(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Remove every staging file under `dir` (what an upload interrupted by a crash leaves):
/// how many were removed.
pub(crate) fn sweep_staging(dir: &FsPath) -> std::io::Result<usize> {
    let mut removed = 0;
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        for entry in std::fs::read_dir(&d)? {
            let entry = entry?;
            let kind = entry.file_type()?;
            if kind.is_dir() {
                pending.push(entry.path());
            } else if entry.file_name().to_str().is_some_and(is_staging_name) {
                std::fs::remove_file(entry.path())?;
                removed += 1;
            }
        }
    }
    Ok(removed)
}

impl Bucket {
    /// A bucket on local disk under `dir` (created if missing): objects in `dir/objects`,
    /// content types in `dir/meta`. Writes are atomic (a staging file, then a rename); staging
    /// files left by a process that died mid-upload are removed here, so open one data
    /// directory from one server at a time.
    pub fn local(dir: &FsPath) -> Result<Self> {
        let objects = dir.join("objects");
        let meta = dir.join("meta");
        for d in [&objects, &meta] {
            std::fs::create_dir_all(d).map_err(|source| Error::CreateDir {
                path: d.clone(),
                source,
            })?;
            let swept = sweep_staging(d).map_err(|source| Error::Io {
                op: "sweep staging files in",
                path: d.clone(),
                source,
            })?;
            if swept > 0 {
                tracing::info!(swept, dir = %d.display(), "removed interrupted uploads");
            }
        }
        let open = |d: &FsPath| {
            LocalFileSystem::new_with_prefix(d)
                .map(|fs| {
                    Arc::new(fs.with_automatic_cleanup(true).with_fsync(true))
                        as Arc<dyn ObjectStore>
                })
                .map_err(|source| Error::OpenStore {
                    what: d.display().to_string(),
                    source,
                })
        };
        Ok(Self {
            store: open(&objects)?,
            types: TypeStore::Sidecar(open(&meta)?),
            description: format!("local directory {}", objects.display()),
            local_dirs: vec![objects, meta],
            key_locks: key_locks(),
        })
    }

    /// A bucket on S3-compatible storage (`settings` validated first).
    pub fn s3(settings: &S3Settings) -> Result<Self> {
        settings.validate().map_err(Error::InvalidS3Settings)?;
        let endpoint = settings.endpoint.as_str().trim_end_matches('/');
        let description = format!("S3 bucket {} at {endpoint}", settings.bucket);
        let mut b = AmazonS3Builder::new()
            .with_endpoint(endpoint)
            .with_region(&settings.region)
            .with_bucket_name(&settings.bucket)
            .with_access_key_id(&settings.access_key_id)
            .with_secret_access_key(settings.secret_access_key.expose())
            .with_virtual_hosted_style_request(!settings.force_path_style)
            .with_allow_http(settings.endpoint.scheme() == "http");
        if let Some(t) = &settings.session_token {
            b = b.with_token(t.expose());
        }
        let store = b.build().map_err(|source| Error::OpenStore {
            what: description.clone(),
            source,
        })?;
        Ok(Self {
            store: Arc::new(store),
            types: TypeStore::Attributes,
            description,
            local_dirs: Vec::new(),
            key_locks: key_locks(),
        })
    }

    /// Any object store that keeps `Content-Type` attributes itself.
    pub fn with_attributes(store: Arc<dyn ObjectStore>, description: impl Into<String>) -> Self {
        Self {
            store,
            types: TypeStore::Attributes,
            description: description.into(),
            local_dirs: Vec::new(),
            key_locks: key_locks(),
        }
    }

    /// Whether the bucket answers: a local bucket's directories exist, and listing works.
    /// `Err` holds a short public reason; the whole error is logged here.
    pub(crate) async fn health(&self) -> std::result::Result<(), &'static str> {
        use futures::StreamExt;
        if let Some(dir) = self.local_dirs.iter().find(|d| !d.is_dir()) {
            tracing::warn!(dir = %dir.display(), "health: a bucket directory is missing");
            return Err("a bucket directory is missing");
        }
        if let Some(Err(e)) = self.store.list(None).next().await {
            tracing::warn!(error = %e, "health: listing the bucket failed");
            return Err("listing the bucket failed");
        }
        Ok(())
    }

    /// What the bucket is, for logs.
    pub fn description(&self) -> &str {
        &self.description
    }

    /// The object store.
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// The store path of `key`: its segments, each made a valid path part.
    pub fn path(key: &ObjectKey) -> Path {
        Path::from_iter(key.as_str().split('/'))
    }

    /// How much an upload buffers before it becomes a multipart upload, and each part's size.
    /// Object stores with attributes (S3, R2) need parts of at least 5 MiB but the last; a
    /// local disk is fastest with small parts, whose buffers the allocator keeps reusing
    /// (measured with `cargo xtask bench r2`: 8 MiB parts made a 1 GiB upload about 20%
    /// slower than 256 KiB ones).
    pub(crate) fn part_size(&self) -> usize {
        match self.types {
            TypeStore::Attributes => 8 * 1024 * 1024,
            TypeStore::Sidecar(_) => 256 * 1024,
        }
    }

    /// The attributes to store with an object of `content_type`.
    pub(crate) fn attributes(&self, content_type: &str) -> Attributes {
        let mut a = Attributes::new();
        if matches!(self.types, TypeStore::Attributes) {
            a.insert(Attribute::ContentType, content_type.to_owned().into());
        }
        a
    }

    /// The lock of `key` (shared with the keys of the same stripe).
    fn lock(&self, key: &ObjectKey) -> &tokio::sync::Mutex<()> {
        use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
        let h = BuildHasherDefault::<DefaultHasher>::default().hash_one(key.as_str());
        &self.key_locks[(h % KEY_LOCKS as u64) as usize]
    }

    /// Whether `key` collides with the layout of a local bucket: its path is a directory
    /// (another key continues it) or one of its parents is an object. Such a key can be neither
    /// stored (409) nor found (404). Always `false` for S3 and R2.
    pub(crate) fn collides(&self, key: &ObjectKey) -> bool {
        let path = Self::path(key);
        let parts: Vec<_> = path.parts().collect();
        self.local_dirs.iter().any(|root| {
            let mut p = root.clone();
            for (i, part) in parts.iter().enumerate() {
                p.push(part.as_ref());
                match std::fs::metadata(&p) {
                    Err(_) => return false,
                    Ok(m) if i + 1 < parts.len() && !m.is_dir() => return true,
                    Ok(m) if i + 1 == parts.len() && m.is_dir() => return true,
                    Ok(_) => {}
                }
            }
            false
        })
    }

    /// Publish the upload in `writer` as `key` with `content_type`: returns the object's etag.
    /// On a local bucket, the sidecar then records the type with that etag, under the key's
    /// lock (see the module docs); S3 and R2 stored the type with the bytes.
    pub(crate) async fn complete(
        &self,
        key: &ObjectKey,
        mut writer: object_store::buffered::BufWriter,
        content_type: &str,
    ) -> std::result::Result<Option<String>, BoxError> {
        let path = Self::path(key);
        let _guard = self.lock(key).lock().await;
        writer.shutdown().await?;
        let TypeStore::Sidecar(meta) = &self.types else {
            // The type is stored with the bytes; the etag is only reported.
            return Ok(self.store.head(&path).await.ok().and_then(|m| m.e_tag));
        };
        let etag = self.store.head(&path).await?.e_tag;
        let record = format!("{}\n{content_type}", etag.as_deref().unwrap_or_default());
        meta.put(&path, PutPayload::from(Bytes::from(record)))
            .await?;
        Ok(etag)
    }

    /// The content type stored for `key` (whose current etag is `etag`), from its attributes
    /// or its sidecar; `application/octet-stream` when none is known for these bytes.
    pub(crate) async fn content_type(
        &self,
        key: &ObjectKey,
        attributes: &Attributes,
        etag: Option<&str>,
    ) -> String {
        if let Some(t) = attributes.get(&Attribute::ContentType) {
            return t.to_string();
        }
        if let TypeStore::Sidecar(meta) = &self.types
            && let Ok(r) = meta.get(&Self::path(key)).await
            && let Ok(b) = r.bytes().await
            && let Ok(record) = std::str::from_utf8(&b)
        {
            let t = match record.split_once('\n') {
                Some((written_for, t)) if Some(written_for) == etag => t,
                Some(_) => "",
                None => record,
            };
            if !t.is_empty() {
                return t.to_owned();
            }
        }
        "application/octet-stream".to_owned()
    }

    /// Delete `key` and its sidecar; a missing object (or a key that collides with another's
    /// directory, so cannot exist) is fine (R2-5).
    pub(crate) async fn delete(&self, key: &ObjectKey) -> object_store::Result<()> {
        let path = Self::path(key);
        let _guard = self.lock(key).lock().await;
        let r = ignore_missing(self.store.delete(&path).await);
        if r.is_err() && self.collides(key) {
            return Ok(());
        }
        r?;
        if let TypeStore::Sidecar(meta) = &self.types {
            ignore_missing(meta.delete(&path).await)?;
        }
        Ok(())
    }
}

fn ignore_missing(r: object_store::Result<()>) -> object_store::Result<()> {
    match r {
        Err(object_store::Error::NotFound { .. }) => Ok(()),
        r => r,
    }
}
