//! Remote object storage, client side: [`RemoteStorage`] and the in-memory reference
//! implementation [`MemoryRemote`] (with fault injection for tests). The HTTP `SignerClient`
//! that talks to the signer contract arrives with the s3-signer issue.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;

use crate::fs::{ByteStream, bytes_stream};
use crate::rt::{MaybeSend, MaybeSync};
use crate::types::{ContentHash, ObjectKey};
use crate::{Error, Result};

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
/// Contract: `upload` stores the body under the key only if it is complete (a failed body
/// stores nothing); `delete` of a missing key is `Ok`; `download` of a missing key is
/// [`Error::NotFound`]; `health` never fails, it answers `false`.
#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
pub trait RemoteStorage: MaybeSend + MaybeSync + std::fmt::Debug + 'static {
    /// Upload a body.
    async fn upload(&self, request: UploadRequest, body: ByteStream) -> Result<()>;
    /// Start downloading an object.
    async fn download(&self, key: &ObjectKey) -> Result<Download>;
    /// Delete an object; missing is fine.
    async fn delete(&self, key: &ObjectKey) -> Result<()>;
    /// A URL a browser or another program can fetch the object from (signed, short-lived).
    async fn download_url(&self, key: &ObjectKey) -> Result<String>;
    /// Whether the remote is reachable (`GET /health` answered 2xx).
    async fn health(&self) -> bool;
}

/// A fault [`MemoryRemote`] injects into its next transfers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The call fails with a retryable error.
    Fail,
    /// A download yields different bytes than were stored (one byte flipped).
    Corrupt,
    /// The transfer never finishes (until the caller's timeout).
    Hang,
    /// The body is cut after this many bytes, then fails.
    CutAt(usize),
}

#[derive(Debug, Default)]
struct MemoryState {
    objects: HashMap<ObjectKey, (Bytes, Option<String>)>,
    offline: bool,
    faults: Vec<Fault>,
    calls: HashMap<&'static str, usize>,
}

/// An in-memory [`RemoteStorage`]: the reference implementation. Cloning shares the objects,
/// so two engines can sync through one `MemoryRemote`. It can be switched offline and told to
/// fail, corrupt, hang or cut its next transfers.
#[derive(Debug, Clone, Default)]
pub struct MemoryRemote {
    state: Arc<Mutex<MemoryState>>,
}

impl MemoryRemote {
    /// An empty remote.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemoryState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Go offline (every call fails, `health` is false) or back online.
    pub fn set_offline(&self, offline: bool) {
        self.lock().offline = offline;
    }

    /// Inject `fault` into the next transfer (uploads and downloads take faults in order).
    pub fn push_fault(&self, fault: Fault) {
        self.lock().faults.push(fault);
    }

    /// The stored objects' keys.
    pub fn keys(&self) -> Vec<ObjectKey> {
        let mut keys: Vec<_> = self.lock().objects.keys().cloned().collect();
        keys.sort();
        keys
    }

    /// An object's bytes.
    pub fn object(&self, key: &ObjectKey) -> Option<Bytes> {
        self.lock().objects.get(key).map(|(b, _)| b.clone())
    }

    /// How many times `method` (`"upload"`, `"download"`, `"delete"`, `"download_url"`,
    /// `"health"`) was called.
    pub fn calls(&self, method: &str) -> usize {
        self.lock().calls.get(method).copied().unwrap_or(0)
    }

    fn enter(&self, method: &'static str) -> Result<Option<Fault>> {
        let mut s = self.lock();
        *s.calls.entry(method).or_insert(0) += 1;
        if s.offline {
            return Err(offline());
        }
        let transfer = matches!(method, "upload" | "download");
        Ok(if transfer && !s.faults.is_empty() {
            Some(s.faults.remove(0))
        } else {
            None
        })
    }
}

fn offline() -> Error {
    Error::Remote {
        status: None,
        retryable: true,
        message: "remote unreachable (offline)".into(),
    }
}

fn injected() -> Error {
    Error::Remote {
        status: Some(500),
        retryable: true,
        message: "injected failure".into(),
    }
}

#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
impl RemoteStorage for MemoryRemote {
    async fn upload(&self, request: UploadRequest, mut body: ByteStream) -> Result<()> {
        let fault = self.enter("upload")?;
        match fault {
            Some(Fault::Fail) => return Err(injected()),
            Some(Fault::Hang) => futures::future::pending::<()>().await,
            _ => {}
        }
        let mut data = bytes::BytesMut::new();
        while let Some(chunk) = body.next().await {
            data.extend_from_slice(&chunk?);
            if let Some(Fault::CutAt(n)) = fault
                && data.len() >= n
            {
                return Err(injected());
            }
        }
        // Like a store that verifies a signed checksum and length: wrong bytes are refused.
        let data = data.freeze();
        if data.len() as u64 != request.content_length
            || crate::hash::hash_bytes(&data) != request.content_hash
        {
            return Err(Error::Remote {
                status: Some(400),
                retryable: false,
                message: "body does not match the declared length or checksum".into(),
            });
        }
        self.lock()
            .objects
            .insert(request.key, (data, request.content_type));
        Ok(())
    }

    async fn download(&self, key: &ObjectKey) -> Result<Download> {
        let fault = self.enter("download")?;
        let Some((data, content_type)) = self.lock().objects.get(key).cloned() else {
            return Err(Error::not_found(format_args!("object {key}")));
        };
        let len = data.len() as u64;
        let body = match fault {
            Some(Fault::Fail) => return Err(injected()),
            Some(Fault::Hang) => {
                let head = data.slice(..data.len() / 2);
                crate::rt::boxed_stream(
                    futures::stream::once(async move { Ok(head) })
                        .chain(futures::stream::pending()),
                )
            }
            Some(Fault::Corrupt) => {
                let mut v = data.to_vec();
                if let Some(b) = v.first_mut() {
                    *b ^= 0xff;
                } else {
                    v.push(0);
                }
                bytes_stream(v)
            }
            Some(Fault::CutAt(n)) => {
                let head = data.slice(..n.min(data.len()));
                crate::rt::boxed_stream(futures::stream::iter(vec![Ok(head), Err(injected())]))
            }
            None => {
                // Several chunks, so progress is observable.
                let chunks: Vec<Result<Bytes>> = (0..data.len())
                    .step_by(64 * 1024)
                    .map(|i| Ok(data.slice(i..(i + 64 * 1024).min(data.len()))))
                    .collect();
                crate::rt::boxed_stream(futures::stream::iter(chunks))
            }
        };
        Ok(Download {
            body,
            content_length: Some(len),
            content_type,
        })
    }

    async fn delete(&self, key: &ObjectKey) -> Result<()> {
        self.enter("delete")?;
        self.lock().objects.remove(key);
        Ok(())
    }

    async fn download_url(&self, key: &ObjectKey) -> Result<String> {
        self.enter("download_url")?;
        Ok(format!("https://test-storage.local/{key}"))
    }

    async fn health(&self) -> bool {
        let mut s = self.lock();
        *s.calls.entry("health").or_insert(0) += 1;
        !s.offline
    }
}
