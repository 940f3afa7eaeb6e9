//! The bucket behind the proxy: any [`object_store::ObjectStore`], with the content type kept
//! beside each object. S3 and R2 keep it as the object's `Content-Type`; object_store's
//! `LocalFileSystem` cannot store attributes, so a local bucket keeps it in a small sidecar
//! store (`<data-dir>/meta/<key>`) next to the objects (`<data-dir>/objects/<key>`).

use std::path::Path as FsPath;
use std::sync::Arc;

use bytes::Bytes;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{Attribute, Attributes, ObjectStore, ObjectStoreExt, PutPayload};

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

/// An object store plus where its content types live.
#[derive(Debug, Clone)]
pub struct Bucket {
    store: Arc<dyn ObjectStore>,
    types: TypeStore,
    description: String,
    /// A local bucket's directories (objects, types): they must exist for it to be healthy
    /// (object_store lists a missing directory as empty).
    local_dirs: Vec<std::path::PathBuf>,
}

impl Bucket {
    /// A bucket on local disk under `dir` (created if missing): objects in `dir/objects`,
    /// content types in `dir/meta`. Writes are atomic (a staging file, then a rename).
    pub fn local(dir: &FsPath) -> Result<Self> {
        let objects = dir.join("objects");
        let meta = dir.join("meta");
        for d in [&objects, &meta] {
            std::fs::create_dir_all(d).map_err(|source| Error::CreateDir {
                path: d.clone(),
                source,
            })?;
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
        })
    }

    /// Any object store that keeps `Content-Type` attributes itself.
    pub fn with_attributes(store: Arc<dyn ObjectStore>, description: impl Into<String>) -> Self {
        Self {
            store,
            types: TypeStore::Attributes,
            description: description.into(),
            local_dirs: Vec::new(),
        }
    }

    /// Whether the bucket answers: a local bucket's directories exist, and listing works.
    pub(crate) async fn healthy(&self) -> bool {
        use futures::StreamExt;
        if self.local_dirs.iter().any(|d| !d.is_dir()) {
            return false;
        }
        !matches!(self.store.list(None).next().await, Some(Err(_)))
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

    /// Record `content_type` for `key` where attributes are not supported (before the object
    /// itself is completed, so a completed object always has its type).
    pub(crate) async fn save_type(
        &self,
        key: &ObjectKey,
        content_type: &str,
    ) -> object_store::Result<()> {
        if let TypeStore::Sidecar(meta) = &self.types {
            meta.put(
                &Self::path(key),
                PutPayload::from(Bytes::from(content_type.to_owned())),
            )
            .await?;
        }
        Ok(())
    }

    /// The content type stored for `key`, from its attributes or its sidecar.
    pub(crate) async fn content_type(&self, key: &ObjectKey, attributes: &Attributes) -> String {
        if let Some(t) = attributes.get(&Attribute::ContentType) {
            return t.to_string();
        }
        if let TypeStore::Sidecar(meta) = &self.types
            && let Ok(r) = meta.get(&Self::path(key)).await
            && let Ok(b) = r.bytes().await
            && let Ok(t) = std::str::from_utf8(&b)
            && !t.is_empty()
        {
            return t.to_owned();
        }
        "application/octet-stream".to_owned()
    }

    /// Delete `key` and its sidecar; a missing object is fine (R2-5).
    pub(crate) async fn delete(&self, key: &ObjectKey) -> object_store::Result<()> {
        let path = Self::path(key);
        ignore_missing(self.store.delete(&path).await)?;
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
