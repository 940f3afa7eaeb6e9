//! Streaming SHA-256: bytes are hashed while they are written, so a file is never read a
//! second time to be named.
//!
//! `sha2` picks the SHA-NI / ARMv8 instructions at run time where the CPU has them
//! (`cargo xtask bench hash` compares it with `openssl dgst -sha256`).

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::Stream;
use sha2::Digest;

use crate::fs::ByteStream;
use crate::types::ContentHash;
use crate::{Error, Result};

/// An incremental SHA-256.
#[derive(Clone, Default)]
pub struct Hasher {
    inner: sha2::Sha256,
    len: u64,
}

impl std::fmt::Debug for Hasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hasher").field("len", &self.len).finish()
    }
}

impl Hasher {
    /// A fresh hasher.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feed bytes.
    pub fn update(&mut self, data: &[u8]) {
        self.inner.update(data);
        self.len += data.len() as u64;
    }

    /// How many bytes have been fed.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether no bytes have been fed.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The hash of everything fed.
    pub fn finish(self) -> ContentHash {
        ContentHash::from_bytes(self.inner.finalize().into())
    }
}

/// The SHA-256 of a byte slice.
pub fn hash_bytes(data: &[u8]) -> ContentHash {
    let mut h = Hasher::new();
    h.update(data);
    h.finish()
}

/// Drain a stream, returning its hash and length. Memory stays at one chunk.
pub async fn hash_stream(mut stream: ByteStream) -> Result<(ContentHash, u64)> {
    use futures::StreamExt;
    let mut h = Hasher::new();
    while let Some(chunk) = stream.next().await {
        h.update(&chunk?);
    }
    let len = h.len();
    Ok((h.finish(), len))
}

/// The result side of [`tee`]: available once the stream has been read to its end.
#[derive(Debug, Clone)]
pub struct StreamDigest {
    slot: Arc<Mutex<Option<(ContentHash, u64)>>>,
}

impl StreamDigest {
    /// The hash and length, or `None` if the stream was not read to its end (or failed).
    pub fn get(&self) -> Option<(ContentHash, u64)> {
        self.slot.lock().ok().and_then(|g| *g)
    }
}

/// Pass a stream through a hasher: the returned stream yields the same chunks, and the digest is
/// filled in when it ends. Used to hash bytes while a [`FileSystem`](crate::fs::FileSystem) writes them.
pub fn tee(stream: ByteStream) -> (ByteStream, StreamDigest) {
    let slot = Arc::new(Mutex::new(None));
    let digest = StreamDigest {
        slot: Arc::clone(&slot),
    };
    let hashing = HashingStream {
        inner: stream,
        hasher: Some(Hasher::new()),
        slot,
    };
    (crate::rt::boxed_stream(hashing), digest)
}

struct HashingStream {
    inner: ByteStream,
    hasher: Option<Hasher>,
    slot: Arc<Mutex<Option<(ContentHash, u64)>>>,
}

impl Stream for HashingStream {
    type Item = Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        match this.inner.as_mut().poll_next(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                if let Some(h) = this.hasher.as_mut() {
                    h.update(&chunk);
                }
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(Some(Err(e))) => {
                this.hasher = None;
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(None) => {
                if let Some(h) = this.hasher.take() {
                    let len = h.len();
                    let hash = h.finish();
                    if let Ok(mut g) = this.slot.lock() {
                        *g = Some((hash, len));
                    }
                }
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Turn an error from a hashing pass into the crate error (helper for callers that got `None`).
pub(crate) fn incomplete() -> Error {
    Error::Stream {
        source: "the stream was not read to its end".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    #[test]
    fn known_vectors() {
        assert_eq!(
            hash_bytes(b"").to_hex(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            hash_bytes(b"abc").to_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[tokio::test]
    async fn tee_hashes_while_streaming() {
        let chunks: Vec<Result<Bytes>> =
            vec![Ok(Bytes::from_static(b"a")), Ok(Bytes::from_static(b"bc"))];
        let (mut s, digest) = tee(crate::rt::boxed_stream(futures::stream::iter(chunks)));
        assert!(digest.get().is_none());
        let mut seen = Vec::new();
        while let Some(c) = s.next().await {
            seen.extend_from_slice(&c.unwrap());
        }
        assert_eq!(seen, b"abc");
        assert_eq!(digest.get(), Some((hash_bytes(b"abc"), 3)));
    }

    #[tokio::test]
    async fn tee_gives_no_digest_after_a_failed_stream() {
        let chunks: Vec<Result<Bytes>> = vec![
            Ok(Bytes::from_static(b"a")),
            Err(Error::Stream {
                source: "cut".into(),
            }),
        ];
        let (s, digest) = tee(crate::rt::boxed_stream(futures::stream::iter(chunks)));
        let out: Vec<_> = s.collect().await;
        assert!(out[1].is_err());
        assert!(digest.get().is_none());
    }
}
