//! Remote object storage, client side: [`RemoteStorage`] and the in-memory reference
//! implementation [`MemoryRemote`], and [`SignerClient`] that speaks the signer HTTP contract
//! (natively and, over `fetch`, in the browser).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;

use crate::fs::ByteStream;

pub(crate) mod signer;
use crate::rt::{MaybeSend, MaybeSync};
use crate::types::{ContentHash, ObjectKey};
use crate::{Error, Result};
pub use signer::{SignerClient, SignerClientBuilder};

/// What an upload declares about its body; a server may bind these into the signed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadRequest {
    /// Where the object goes: `<storeId>/<hash>`.
    pub key: ObjectKey,
    /// Exact body length in bytes.
    pub content_length: u64,
    /// MIME type, when known.
    pub content_type: Option<String>,
    /// SHA-256 of the body.
    pub content_hash: ContentHash,
}

/// A download in progress: its body and what the server said about it.
pub struct Download {
    /// The bytes.
    pub body: ByteStream,
    /// `Content-Length`, when the server sent it.
    pub content_length: Option<u64>,
    /// `Content-Type`, when the server sent it.
    pub content_type: Option<String>,
}

impl std::fmt::Debug for Download {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Download")
            .field("content_length", &self.content_length)
            .field("content_type", &self.content_type)
            .finish_non_exhaustive()
    }
}

/// Remote object storage as the engine sees it.
///
/// Contract (checked rule by rule by `testing::remote`, run with `remote_conformance!`):
/// - `upload` then `download` gives back the same bytes, streamed both ways, with the
///   declared content type; a `content_length` it reports is exact; empty objects work.
/// - `upload` stores the body under the key only if it is complete and matches its
///   declaration: a body shorter or longer than `content_length`, one whose SHA-256 is not
///   `content_hash`, or one whose stream fails is an error and stores nothing.
/// - Uploading an object that is already stored (a retry after a lost acknowledgement, or two
///   clients racing) is `Ok` and leaves it intact.
/// - `download` of a missing key is [`Error::NotFound`].
/// - `delete` removes only that object; deleting a missing key, or twice, is `Ok`.
/// - `download_url` gives a URL that serves the object's bytes to a plain `GET`.
/// - `health` never fails: it answers `true` while the remote is reachable, else `false`.
#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
pub trait RemoteStorage: MaybeSend + MaybeSync + std::fmt::Debug + 'static {
    /// Upload a body that must match `request`'s length and hash.
    async fn upload(&self, request: UploadRequest, body: ByteStream) -> Result<()>;
    /// Start downloading an object; [`Error::NotFound`] if there is none.
    async fn download(&self, key: &ObjectKey) -> Result<Download>;
    /// Delete an object; missing is fine.
    async fn delete(&self, key: &ObjectKey) -> Result<()>;
    /// A URL a browser or another program can fetch the object from (signed, short-lived).
    async fn download_url(&self, key: &ObjectKey) -> Result<String>;
    /// Whether the remote is reachable (`GET /health` answered 2xx).
    async fn health(&self) -> bool;
    /// Whether an object is stored under `key`. The default starts a download and drops it;
    /// implementations with a cheaper probe override it.
    async fn exists(&self, key: &ObjectKey) -> Result<bool> {
        match self.download(key).await {
            Ok(_) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e),
        }
    }
}

/// An in-memory [`RemoteStorage`]: the reference implementation. Cloning shares the objects,
/// so several engines can sync through one `MemoryRemote`. Like a store that checks a signed
/// length and checksum, it refuses bodies that do not match the upload's declaration. Faults
/// (offline, failures, corruption, hangs) come from `testing::remote::FaultyRemote`.
#[derive(Debug, Clone, Default)]
pub struct MemoryRemote {
    objects: Arc<Mutex<Objects>>,
}

/// Stored bytes and content type per key.
type Objects = HashMap<ObjectKey, (Bytes, Option<String>)>;

impl MemoryRemote {
    /// An empty remote.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Objects> {
        self.objects.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The stored objects' keys, sorted.
    pub fn keys(&self) -> Vec<ObjectKey> {
        let mut keys: Vec<_> = self.lock().keys().cloned().collect();
        keys.sort();
        keys
    }

    /// An object's bytes.
    pub fn object(&self, key: &ObjectKey) -> Option<Bytes> {
        self.lock().get(key).map(|(b, _)| b.clone())
    }
}

/// Split bytes into 64 KiB chunks, so progress is observable.
pub(crate) fn chunks(data: Bytes) -> ByteStream {
    let chunks: Vec<Result<Bytes>> = (0..data.len())
        .step_by(64 * 1024)
        .map(|i| Ok(data.slice(i..(i + 64 * 1024).min(data.len()))))
        .collect();
    crate::rt::boxed_stream(futures::stream::iter(chunks))
}

#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
impl RemoteStorage for MemoryRemote {
    async fn upload(&self, request: UploadRequest, mut body: ByteStream) -> Result<()> {
        let mut data = bytes::BytesMut::new();
        while let Some(chunk) = body.next().await {
            data.extend_from_slice(&chunk?);
        }
        let data = data.freeze();
        if data.len() as u64 != request.content_length
            || crate::hash::hash_bytes(&data) != request.content_hash
        {
            return Err(Error::Remote {
                what: "body does not match the declared length or checksum".into(),
                status: Some(400),
                retryable: false,
                source: None,
            });
        }
        self.lock()
            .insert(request.key, (data, request.content_type));
        Ok(())
    }

    async fn download(&self, key: &ObjectKey) -> Result<Download> {
        let Some((data, content_type)) = self.lock().get(key).cloned() else {
            return Err(Error::not_found(format_args!("object {key}")));
        };
        Ok(Download {
            content_length: Some(data.len() as u64),
            body: chunks(data),
            content_type,
        })
    }

    async fn delete(&self, key: &ObjectKey) -> Result<()> {
        self.lock().remove(key);
        Ok(())
    }

    async fn download_url(&self, key: &ObjectKey) -> Result<String> {
        Ok(format!("https://test-storage.local/{key}"))
    }

    async fn health(&self) -> bool {
        true
    }

    async fn exists(&self, key: &ObjectKey) -> Result<bool> {
        Ok(self.lock().contains_key(key))
    }
}
