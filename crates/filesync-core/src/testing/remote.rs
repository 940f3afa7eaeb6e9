//! The [`RemoteStorage`] conformance suite, [`FaultyRemote`] and [`HoldingRemote`].
//!
//! The suite has one function per rule of the trait's contract, each on a fresh, empty
//! remote; run it with [`remote_conformance!`](crate::remote_conformance), one test per rule:
//! ```
//! mod memory {
//!     filesync_core::remote_conformance!(#[tokio::test] filesync_core::remote::MemoryRemote::new());
//! }
//! # fn main() {}
//! ```
//! A rule gets a [`RemoteFixture`]: the remote, and how to fetch the URLs it signs. It uses no
//! runtime-specific API.
//!
//! [`FaultyRemote`] wraps any [`RemoteStorage`] and injects faults: offline, failures,
//! corrupted or cut bodies, hangs. It counts calls per method. [`HoldingRemote`] holds each
//! upload in flight until the test releases it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;

use crate::fs::{ByteStream, collect_stream};
use crate::hash::hash_bytes;
use crate::remote::{Download, MemoryRemote, RemoteStorage, SignerClient, UploadRequest};
use crate::rt::{MaybeSend, MaybeSync};
use crate::testing::fs::{chunked, pattern};
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
        what: "injected failure".into(),
        status: Some(500),
        retryable: true,
        source: None,
    }
}

fn offline() -> Error {
    Error::Remote {
        what: "remote unreachable (offline)".into(),
        status: None,
        retryable: true,
        source: None,
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

    /// Drop every fault not yet injected.
    pub fn clear_faults(&self) {
        self.lock().faults.clear();
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

    async fn exists(&self, key: &ObjectKey) -> Result<bool> {
        self.enter("exists")?;
        self.inner.exists(key).await
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

/// Wraps a [`RemoteStorage`] and holds every upload in flight until the test lets it go: the
/// upload's body is read in full, the upload is recorded as held, and only then does it wait
/// for [`release`](Self::release) (one upload) or [`open`](Self::open) (all, from now on)
/// before the inner remote stores the bytes and the call returns. A test can so change or
/// delete a file while its upload is provably in flight. Other calls pass through. Clones
/// share the gate.
#[derive(Debug, Clone)]
pub struct HoldingRemote<R> {
    inner: R,
    gate: Arc<Gate>,
}

#[derive(Debug)]
struct Gate {
    /// Uploads that reached the gate, in order.
    held: Mutex<Vec<UploadRequest>>,
    /// How many uploads reached the gate.
    arrived: tokio::sync::watch::Sender<usize>,
    /// How many uploads the inner remote finished (successfully or not).
    finished: tokio::sync::watch::Sender<usize>,
    /// One permit per released upload; closed once the gate is open.
    permits: tokio::sync::Semaphore,
}

impl<R> std::ops::Deref for HoldingRemote<R> {
    type Target = R;
    fn deref(&self) -> &R {
        &self.inner
    }
}

impl<R: RemoteStorage> HoldingRemote<R> {
    /// Wrap `inner`, holding every upload until it is released.
    pub fn new(inner: R) -> Self {
        Self {
            inner,
            gate: Arc::new(Gate {
                held: Mutex::default(),
                arrived: tokio::sync::watch::Sender::new(0),
                finished: tokio::sync::watch::Sender::new(0),
                permits: tokio::sync::Semaphore::new(0),
            }),
        }
    }

    /// Wait until `n` uploads in all have reached the gate (their bodies read); what they
    /// declared, in order of arrival.
    pub async fn until_held(&self, n: usize) -> Vec<UploadRequest> {
        let mut arrived = self.gate.arrived.subscribe();
        // The sender lives in `self`, so the channel cannot close while we wait.
        let _ = arrived.wait_for(|a| *a >= n).await;
        self.held()
    }

    /// What every upload that reached the gate declared, in order of arrival.
    pub fn held(&self) -> Vec<UploadRequest> {
        self.gate
            .held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Let one held (or the next) upload through.
    pub fn release(&self) {
        self.gate.permits.add_permits(1);
    }

    /// Let every held upload through, and hold none from now on.
    pub fn open(&self) {
        self.gate.permits.close();
    }

    /// Wait until the inner remote has finished `n` uploads in all (each returned, whether it
    /// stored the bytes or failed).
    pub async fn until_finished(&self, n: usize) {
        let mut finished = self.gate.finished.subscribe();
        let _ = finished.wait_for(|f| *f >= n).await;
    }
}

#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
impl<R: RemoteStorage> RemoteStorage for HoldingRemote<R> {
    async fn upload(&self, request: UploadRequest, body: ByteStream) -> Result<()> {
        let bytes = collect_stream(body).await?;
        self.gate
            .held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(request.clone());
        self.gate.arrived.send_modify(|a| *a += 1);
        // A closed semaphore (an open gate) lets everyone through.
        if let Ok(permit) = self.gate.permits.acquire().await {
            permit.forget();
        }
        let result = self
            .inner
            .upload(request, crate::fs::bytes_stream(bytes))
            .await;
        self.gate.finished.send_modify(|f| *f += 1);
        result
    }

    async fn download(&self, key: &ObjectKey) -> Result<Download> {
        self.inner.download(key).await
    }

    async fn delete(&self, key: &ObjectKey) -> Result<()> {
        self.inner.delete(key).await
    }

    async fn download_url(&self, key: &ObjectKey) -> Result<String> {
        self.inner.download_url(key).await
    }

    async fn health(&self) -> bool {
        self.inner.health().await
    }
}

/// What fetching a URL answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    /// The HTTP status.
    pub status: u16,
    /// The body (empty unless 2xx).
    pub body: Bytes,
}

/// A plain `GET` of `url`, no credentials, as a browser's `<img src>` does.
pub async fn http_get(url: &str) -> Fetched {
    let res = reqwest::get(url).await.expect("the GET request");
    let status = res.status().as_u16();
    let body = res.bytes().await.expect("the GET body");
    Fetched { status, body }
}

/// What a rule runs on: the remote under test, kept alive with whatever it needs (servers, a
/// bucket), and how to fetch the URLs its `download_url` gives out.
#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
pub trait RemoteFixture: MaybeSend + MaybeSync {
    /// The remote under test.
    fn remote(&self) -> &dyn RemoteStorage;

    /// Fetch a URL from `download_url` as a browser or another program does. By default a
    /// plain HTTP `GET` ([`http_get`]).
    async fn fetch(&self, url: &str) -> Fetched {
        http_get(url).await
    }

    /// A known deviation of the storage behind the remote, not of the remote: the storage
    /// answers an upload whose bytes do not match the declared SHA-256 with an error but keeps
    /// the bytes (`s3s-fs` 0.14 answers 400 BadDigest and stores the body; S3 and R2 store
    /// nothing). [`body_with_another_hash_is_refused`] then checks exactly that. Default
    /// `false`.
    fn keeps_bodies_refused_for_their_hash(&self) -> bool {
        false
    }
}

/// `MemoryRemote`'s URLs point nowhere (`https://test-storage.local/<key>`): its fixture
/// resolves them to its own objects, so the rule checks that the URL names the object.
#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
impl RemoteFixture for MemoryRemote {
    fn remote(&self) -> &dyn RemoteStorage {
        self
    }

    async fn fetch(&self, url: &str) -> Fetched {
        let object = url
            .strip_prefix("https://test-storage.local/")
            .and_then(|k| ObjectKey::parse(k).ok())
            .and_then(|k| self.object(&k));
        match object {
            Some(body) => Fetched { status: 200, body },
            None => Fetched {
                status: 404,
                body: Bytes::new(),
            },
        }
    }
}

/// A `SignerClient` whose signer outlives the test; its URLs are fetched over HTTP.
impl RemoteFixture for SignerClient {
    fn remote(&self) -> &dyn RemoteStorage {
        self
    }
}

/// The key an object is stored under: `conformance/<sha-256>`, as the engine names them.
fn key_of(data: &[u8]) -> ObjectKey {
    ObjectKey::parse(format!("conformance/{}", hash_bytes(data))).expect("a valid key")
}

/// The upload request declaring exactly `data`.
fn declare(data: &[u8], content_type: Option<&str>) -> UploadRequest {
    UploadRequest {
        key: key_of(data),
        content_length: data.len() as u64,
        content_type: content_type.map(str::to_owned),
        content_hash: hash_bytes(data),
    }
}

/// Upload `data` as declared, in 16 KiB chunks; panics if refused.
async fn upload(r: &dyn RemoteStorage, data: &[u8], content_type: Option<&str>) -> ObjectKey {
    let request = declare(data, content_type);
    let key = request.key.clone();
    r.upload(request, chunked(data.to_vec(), 16 * 1024))
        .await
        .unwrap_or_else(|e| panic!("upload of {key}: {e}"));
    key
}

/// Download `key` whole: the body and the download's declared length and type.
async fn download(r: &dyn RemoteStorage, key: &ObjectKey) -> Result<(Bytes, Download)> {
    let mut d = r.download(key).await?;
    let body = std::mem::replace(
        &mut d.body,
        crate::rt::boxed_stream(futures::stream::empty()),
    );
    Ok((collect_stream(body).await?, d))
}

/// Assert that `key` holds nothing: `download` is `NotFound`.
async fn assert_absent(r: &dyn RemoteStorage, key: &ObjectKey, why: &str) {
    match download(r, key).await {
        Err(Error::NotFound { .. }) => {}
        Err(e) => panic!("{why}: download of {key} should be NotFound, got {e:?}"),
        Ok((body, _)) => panic!("{why}: {key} holds {} bytes", body.len()),
    }
}

/// Bytes uploaded with their declared length, type and hash come back byte-identical from
/// `download`, streamed in several chunks both ways; a reported `content_length` is exact.
pub async fn upload_then_download_round_trips(f: &dyn RemoteFixture) {
    let r = f.remote();
    let data = pattern(300 * 1024 + 7, 1);
    let key = upload(r, &data, Some("application/octet-stream")).await;
    let (body, d) = download(r, &key).await.expect("download");
    assert!(body == data[..], "the downloaded bytes differ");
    if let Some(n) = d.content_length {
        assert_eq!(n, data.len() as u64, "content_length");
    }
}

/// The declared content type comes back with the download.
pub async fn content_type_round_trips(f: &dyn RemoteFixture) {
    let r = f.remote();
    let key = upload(r, b"\x89PNG not really", Some("image/png")).await;
    let (_, d) = download(r, &key).await.expect("download");
    assert_eq!(d.content_type.as_deref(), Some("image/png"));
}

/// A zero-length object round-trips.
pub async fn empty_object_round_trips(f: &dyn RemoteFixture) {
    let r = f.remote();
    let key = upload(r, b"", None).await;
    let (body, d) = download(r, &key)
        .await
        .expect("download of an empty object");
    assert!(body.is_empty());
    assert!(matches!(d.content_length, None | Some(0)), "{d:?}");
}

/// `download` of a key nothing was uploaded to is `Error::NotFound`.
pub async fn download_of_missing_key_is_not_found(f: &dyn RemoteFixture) {
    assert_absent(f.remote(), &key_of(b"never uploaded"), "a missing key").await;
}

/// `delete` removes the object (its download is then `NotFound`) and nothing else.
pub async fn delete_removes_only_that_object(f: &dyn RemoteFixture) {
    let r = f.remote();
    let gone = upload(r, b"to be deleted", None).await;
    let kept = upload(r, b"to be kept", None).await;
    r.delete(&gone).await.expect("delete");
    assert_absent(r, &gone, "after delete").await;
    let (body, _) = download(r, &kept)
        .await
        .expect("download of the other object");
    assert_eq!(&body[..], b"to be kept");
}

/// `delete` is idempotent: deleting a key that never existed, or deleting twice, is `Ok`.
pub async fn delete_is_idempotent(f: &dyn RemoteFixture) {
    let r = f.remote();
    r.delete(&key_of(b"never uploaded"))
        .await
        .expect("deleting a missing key");
    let key = upload(r, b"deleted twice", None).await;
    r.delete(&key).await.expect("delete");
    r.delete(&key).await.expect("deleting again");
    assert_absent(r, &key, "after two deletes").await;
}

/// Uploading an object that is already stored (a retry whose acknowledgement was lost) is
/// `Ok` and leaves it intact, also when two uploads of it race.
pub async fn uploading_again_is_ok(f: &dyn RemoteFixture) {
    let r = f.remote();
    let data = pattern(100 * 1024, 2);
    let key = upload(r, &data, Some("text/plain")).await;
    upload(r, &data, Some("text/plain")).await;
    futures::join!(
        upload(r, &data, Some("text/plain")),
        upload(r, &data, Some("text/plain"))
    );
    let (body, _) = download(r, &key).await.expect("download");
    assert!(body == data[..], "the object changed");
}

/// Try to upload `body` under a declaration made for `declared`: it must fail and store
/// nothing.
async fn refuse(r: &dyn RemoteStorage, declared: &[u8], body: ByteStream, why: &str) {
    let request = declare(declared, None);
    let key = request.key.clone();
    let result = r.upload(request, body).await;
    assert!(result.is_err(), "{why}: the upload was accepted");
    assert_absent(r, &key, why).await;
}

/// A stream of these chunks.
fn stream_of(chunks: &[&'static [u8]]) -> ByteStream {
    let chunks: Vec<Result<Bytes>> = chunks.iter().map(|c| Ok(Bytes::from_static(c))).collect();
    crate::rt::boxed_stream(futures::stream::iter(chunks))
}

const DECLARED: &[u8] = b"the declared body";

/// A body shorter than its declared length is refused and stores nothing.
pub async fn shorter_body_than_declared_is_refused(f: &dyn RemoteFixture) {
    let body = stream_of(&[b"the declared"]);
    refuse(f.remote(), DECLARED, body, "a shorter body").await;
}

/// A body longer than its declared length is refused and stores nothing, also when it
/// starts with exactly the declared bytes (so a client that sends only the declared length
/// would store the declared object while its caller's body was another), and also when the
/// extra bytes come in a chunk of their own.
pub async fn longer_body_than_declared_is_refused(f: &dyn RemoteFixture) {
    let r = f.remote();
    let body = stream_of(&[b"the declared body, and more"]);
    refuse(r, DECLARED, body, "a longer body in one chunk").await;
    let body = stream_of(&[DECLARED, b", and more"]);
    refuse(
        r,
        DECLARED,
        body,
        "a longer body, the extra bytes in their own chunk",
    )
    .await;
}

/// A body of the declared length whose SHA-256 is not the declared hash is refused and
/// stores nothing. Where the fixture declares
/// [`keeps_bodies_refused_for_their_hash`](RemoteFixture::keeps_bodies_refused_for_their_hash),
/// the refusal must still be an error, and the key then holds exactly the refused bytes
/// (which do not hash to the key, so the engine's verified download rejects them).
pub async fn body_with_another_hash_is_refused(f: &dyn RemoteFixture) {
    const IMPOSTER: &[u8] = b"the imposter body";
    let r = f.remote();
    let why = "another body of the same length";
    if !f.keeps_bodies_refused_for_their_hash() {
        return refuse(r, DECLARED, stream_of(&[IMPOSTER]), why).await;
    }
    let request = declare(DECLARED, None);
    let key = request.key.clone();
    let result = r.upload(request, stream_of(&[IMPOSTER])).await;
    assert!(result.is_err(), "{why}: the upload was accepted");
    let (kept, _) = download(r, &key).await.expect("the kept body");
    assert_eq!(&kept[..], IMPOSTER, "{why}: the key holds other bytes");
}

/// An upload whose body stream fails part-way is an error and stores nothing.
pub async fn failed_body_stores_nothing(f: &dyn RemoteFixture) {
    let r = f.remote();
    let data = pattern(64 * 1024, 3);
    let request = declare(&data, None);
    let key = request.key.clone();
    let head = Bytes::from(data[..16 * 1024].to_vec());
    let body = crate::rt::boxed_stream(futures::stream::iter([
        Ok(head),
        Err(Error::Stream {
            source: "the body failed part-way".into(),
        }),
    ]));
    assert!(
        r.upload(request, body).await.is_err(),
        "an upload whose body failed was accepted"
    );
    assert_absent(r, &key, "a failed body").await;
}

/// `download_url` gives a URL that serves the object's bytes to a plain `GET`.
pub async fn download_url_serves_the_object(f: &dyn RemoteFixture) {
    let r = f.remote();
    let data = pattern(20 * 1024, 4);
    let key = upload(r, &data, Some("image/png")).await;
    let url = r.download_url(&key).await.expect("download_url");
    let got = f.fetch(&url).await;
    assert_eq!(got.status, 200, "GET {key} through its download URL");
    assert!(got.body == data[..], "the URL served other bytes");
}

/// `exists` is true for a stored object (empty ones too) and false for a missing or a
/// deleted one.
pub async fn exists_reports_presence(f: &dyn RemoteFixture) {
    let r = f.remote();
    let data = b"exists?";
    let missing = key_of(data);
    assert!(
        !r.exists(&missing).await.expect("exists"),
        "a missing object is reported present"
    );
    let key = upload(r, data, None).await;
    assert!(
        r.exists(&key).await.expect("exists"),
        "a stored object is reported absent"
    );
    r.delete(&key).await.expect("delete");
    assert!(
        !r.exists(&key).await.expect("exists"),
        "a deleted object is reported present"
    );
    let empty = upload(r, b"", None).await;
    assert!(
        r.exists(&empty).await.expect("exists"),
        "an empty object is reported absent"
    );
}

/// `health` answers `true` while the remote is reachable.
pub async fn health_is_true_when_reachable(f: &dyn RemoteFixture) {
    assert!(f.remote().health().await);
}

/// Run every [`RemoteStorage`] rule as its own test, each on a fresh remote. `$make` is an
/// expression (it may `.await`) giving a [`RemoteFixture`]: a `MemoryRemote`, or a fixture
/// that keeps a `SignerClient`'s servers alive.
#[macro_export]
macro_rules! remote_conformance {
    (#[$attr:meta] $make:expr) => {
        $crate::remote_conformance!(@each #[$attr] $make;
            upload_then_download_round_trips,
            content_type_round_trips,
            empty_object_round_trips,
            download_of_missing_key_is_not_found,
            delete_removes_only_that_object,
            delete_is_idempotent,
            uploading_again_is_ok,
            shorter_body_than_declared_is_refused,
            longer_body_than_declared_is_refused,
            body_with_another_hash_is_refused,
            failed_body_stores_nothing,
            download_url_serves_the_object,
            exists_reports_presence,
            health_is_true_when_reachable
        );
    };
    (@each #[$attr:meta] $make:expr; $($rule:ident),* $(,)?) => {
        $(
            #[$attr]
            async fn $rule() {
                let fixture = $make;
                $crate::testing::remote::$rule(&fixture).await;
            }
        )*
    };
}
