//! [`FaultyRemote`]: wraps any [`RemoteStorage`] and injects faults: offline, failures,
//! corrupted or cut bodies, hangs. Counts calls per method.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;

use crate::fs::ByteStream;
use crate::remote::{Download, RemoteStorage, UploadRequest};
use crate::types::ObjectKey;
use crate::{Error, Result};

/// A fault injected into the next transfer (uploads and downloads take them in order).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The call fails with a retryable 500.
    Fail,
    /// A download's first byte is flipped.
    Corrupt,
    /// The transfer never finishes (the caller's timeout must end it); a download first
    /// delivers half of the body.
    Hang,
    /// The body is cut after this many bytes, then fails.
    CutAt(usize),
}

#[derive(Debug, Default)]
struct State {
    offline: bool,
    faults: Vec<Fault>,
    calls: HashMap<&'static str, usize>,
}

/// Wraps a [`RemoteStorage`] and injects faults. Clones share the switches and counters.
#[derive(Debug, Clone)]
pub struct FaultyRemote<R> {
    inner: R,
    state: Arc<Mutex<State>>,
}

impl<R> std::ops::Deref for FaultyRemote<R> {
    type Target = R;
    fn deref(&self) -> &R {
        &self.inner
    }
}

fn injected() -> Error {
    Error::Remote {
        status: Some(500),
        retryable: true,
        message: "injected failure".into(),
    }
}

fn offline() -> Error {
    Error::Remote {
        status: None,
        retryable: true,
        message: "remote unreachable (offline)".into(),
    }
}

/// A stream that yields `bytes`, then `tail`.
fn then(head: Bytes, tail: ByteStream) -> ByteStream {
    crate::rt::boxed_stream(futures::stream::once(async move { Ok(head) }).chain(tail))
}

impl<R: RemoteStorage> FaultyRemote<R> {
    /// Wrap `inner` with no faults.
    pub fn new(inner: R) -> Self {
        Self {
            inner,
            state: Arc::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Go offline (every call fails, `health` is false) or back online.
    pub fn set_offline(&self, offline: bool) {
        self.lock().offline = offline;
    }

    /// Inject `fault` into the next transfer.
    pub fn push_fault(&self, fault: Fault) {
        self.lock().faults.push(fault);
    }

    /// How often `method` (`upload`, `download`, `delete`, `download_url`, `health`) was called.
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
        Ok((transfer && !s.faults.is_empty()).then(|| s.faults.remove(0)))
    }
}

#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
impl<R: RemoteStorage> RemoteStorage for FaultyRemote<R> {
    async fn upload(&self, request: UploadRequest, body: ByteStream) -> Result<()> {
        let body = match self.enter("upload")? {
            Some(Fault::Fail) => return Err(injected()),
            Some(Fault::Hang) => futures::future::pending().await,
            Some(Fault::CutAt(n)) => {
                let mut seen = 0usize;
                crate::rt::boxed_stream(body.map(move |chunk| {
                    let chunk = chunk?;
                    seen += chunk.len();
                    if seen >= n {
                        Err(injected())
                    } else {
                        Ok(chunk)
                    }
                }))
            }
            Some(Fault::Corrupt) | None => body,
        };
        self.inner.upload(request, body).await
    }

    async fn download(&self, key: &ObjectKey) -> Result<Download> {
        let fault = self.enter("download")?;
        if fault == Some(Fault::Fail) {
            return Err(injected());
        }
        let mut d = self.inner.download(key).await?;
        let Some(fault) = fault else { return Ok(d) };
        let data = crate::fs::collect_stream(d.body).await?;
        d.body = match fault {
            Fault::Hang => then(
                data.slice(..data.len() / 2),
                crate::rt::boxed_stream(futures::stream::pending()),
            ),
            Fault::Corrupt => {
                let mut v = data.to_vec();
                match v.first_mut() {
                    Some(b) => *b ^= 0xff,
                    None => v.push(0),
                }
                crate::fs::bytes_stream(v)
            }
            Fault::CutAt(n) => then(
                data.slice(..n.min(data.len())),
                crate::rt::boxed_stream(futures::stream::iter([Err(injected())])),
            ),
            Fault::Fail => unreachable!("handled above"),
        };
        Ok(d)
    }

    async fn delete(&self, key: &ObjectKey) -> Result<()> {
        self.enter("delete")?;
        self.inner.delete(key).await
    }

    async fn download_url(&self, key: &ObjectKey) -> Result<String> {
        self.enter("download_url")?;
        self.inner.download_url(key).await
    }

    async fn health(&self) -> bool {
        let offline = {
            let mut s = self.lock();
            *s.calls.entry("health").or_insert(0) += 1;
            s.offline
        };
        !offline && self.inner.health().await
    }
}
