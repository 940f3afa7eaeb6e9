//! `SignerClient` over real loopback HTTP: the shared contract router in front of a test
//! signer whose URLs point at a small test bucket server (which checks an expiry, the declared
//! length and a signed SHA-256, like a real store). Then two engines sync through it.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::put;
use filesync_core::contract::UploadMethod;
use filesync_core::fs::{bytes_stream, collect_stream};
use filesync_core::hash::hash_bytes;
use filesync_core::remote::{RemoteStorage, SignerClient, UploadRequest};
use filesync_core::schema::{EventSeq, TransferStatus};
use filesync_core::server::{
    HealthReport, ObjectSigner, SHUTDOWN_GRACE, SignedRequest, UploadSpec, router,
};
use filesync_core::store::Store;
use filesync_core::sync::MemoryRelay;
use filesync_core::types::{ObjectKey, Timestamp};
use filesync_core::{Error, Result};

use common::engine::Disk;
use common::http::{Served, grants, listen, serve_listener};
use common::{store_id, text, within};

mod common;

#[derive(Default)]
struct Bucket {
    objects: Mutex<HashMap<String, (Bytes, Option<String>)>>,
    failing: AtomicBool,
}

type Shared = Arc<Bucket>;

fn expired(q: &HashMap<String, String>) -> bool {
    q.get("exp")
        .and_then(|e| e.parse::<i64>().ok())
        .is_none_or(|e| e < Timestamp::now().as_millis())
}

async fn put_object(
    State(b): State<Shared>,
    Path(key): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, &'static str) {
    if b.failing.load(Ordering::SeqCst) {
        return (StatusCode::SERVICE_UNAVAILABLE, "SlowDown");
    }
    if expired(&q) {
        return (StatusCode::FORBIDDEN, "AccessDenied: Request has expired");
    }
    let declared = headers
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    let sha = headers
        .get("x-test-content-sha256")
        .and_then(|v| v.to_str().ok());
    if declared != Some(body.len()) || sha != Some(hash_bytes(&body).to_hex().as_str()) {
        return (StatusCode::BAD_REQUEST, "BadDigest");
    }
    let ct = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    b.objects.lock().unwrap().insert(key, (body, ct));
    (StatusCode::OK, "")
}

async fn get_object(
    State(b): State<Shared>,
    Path(key): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    if b.failing.load(Ordering::SeqCst) {
        return (StatusCode::SERVICE_UNAVAILABLE, "SlowDown").into_response();
    }
    if expired(&q) {
        return (StatusCode::FORBIDDEN, "Request has expired").into_response();
    }
    match b.objects.lock().unwrap().get(&key).cloned() {
        None => (StatusCode::NOT_FOUND, "NoSuchKey").into_response(),
        Some((data, ct)) => {
            let mut r = data.into_response();
            if let Some(ct) = ct {
                r.headers_mut().insert("content-type", ct.parse().unwrap());
            }
            r
        }
    }
}

struct BucketSigner {
    bucket: Shared,
    addr: SocketAddr,
    stale_next: AtomicUsize,
}

impl BucketSigner {
    fn sign(
        &self,
        key: &ObjectKey,
        expires_in: Duration,
        now: Timestamp,
        headers: BTreeMap<String, String>,
    ) -> SignedRequest {
        let stale = self
            .stale_next
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        let exp = if stale {
            now.as_millis() - 1
        } else {
            now.as_millis() + expires_in.as_millis() as i64
        };
        SignedRequest {
            method: UploadMethod::Put,
            url: format!("http://{}/bucket/{key}?exp={exp}", self.addr),
            headers,
            expires_at: Timestamp::from_millis(exp).unwrap(),
        }
    }
}

#[async_trait]
impl ObjectSigner for BucketSigner {
    async fn sign_upload(
        &self,
        spec: &UploadSpec,
        expires_in: Duration,
        now: Timestamp,
    ) -> Result<SignedRequest> {
        let mut h = BTreeMap::new();
        if let Some(t) = &spec.content_type {
            h.insert("content-type".to_owned(), t.clone());
        }
        if let Some(sha) = &spec.content_hash {
            h.insert("x-test-content-sha256".to_owned(), sha.to_hex());
        }
        Ok(self.sign(&spec.key, expires_in, now, h))
    }
    async fn sign_download(
        &self,
        key: &ObjectKey,
        expires_in: Duration,
        now: Timestamp,
    ) -> Result<SignedRequest> {
        Ok(self.sign(key, expires_in, now, BTreeMap::new()))
    }
    async fn delete(&self, key: &ObjectKey) -> Result<()> {
        self.bucket.objects.lock().unwrap().remove(key.as_str());
        Ok(())
    }
    async fn health(&self) -> HealthReport {
        HealthReport {
            ok: !self.bucket.failing.load(Ordering::SeqCst),
            details: Default::default(),
        }
    }
}

struct Servers {
    bucket: Shared,
    signer: Arc<BucketSigner>,
    server: Served,
}

async fn start() -> Servers {
    let bucket: Shared = Arc::default();
    let (listener, addr) = listen(0).await;
    let signer = Arc::new(BucketSigner {
        bucket: Arc::clone(&bucket),
        addr,
        stale_next: AtomicUsize::new(0),
    });
    let config = grants(&[("t0k3n", &["shared_store/"])]);
    let app = router(Arc::clone(&signer), config).merge(
        Router::new()
            .route("/bucket/{*key}", put(put_object).get(get_object))
            .with_state(Arc::clone(&bucket)),
    );
    Servers {
        bucket,
        signer,
        server: serve_listener(listener, app, SHUTDOWN_GRACE),
    }
}

fn client(s: &Servers) -> SignerClient {
    SignerClient::builder(s.server.api())
        .with_auth_token("t0k3n")
        .with_header("x-app", "test")
        .build()
        .unwrap()
}

fn key(hash: &filesync_core::types::ContentHash) -> ObjectKey {
    ObjectKey::for_content(&store_id("shared_store"), hash)
}

fn request(data: &[u8], ct: Option<&str>) -> UploadRequest {
    let h = hash_bytes(data);
    UploadRequest {
        key: key(&h),
        content_length: data.len() as u64,
        content_type: ct.map(str::to_owned),
        content_hash: h,
    }
}

/// SGN-2..7: upload (streamed, with the signed headers), download (with Content-Type and
/// length), signed URL, delete, health, over real HTTP.
#[tokio::test]
async fn sgn_round_trip_over_http() {
    let mut s = start().await;
    let c = client(&s);
    assert!(c.health().await);
    let data = filesync_core::testing::fs::pattern(300_000, 5);
    let req = request(&data, Some("image/png"));
    let k = req.key.clone();
    c.upload(
        req,
        filesync_core::testing::fs::chunked(data.clone(), 10_000),
    )
    .await
    .unwrap();
    assert_eq!(
        s.bucket.objects.lock().unwrap()[k.as_str()].1.as_deref(),
        Some("image/png")
    );
    let d = c.download(&k).await.unwrap();
    assert_eq!(
        (d.content_length, d.content_type.as_deref()),
        (Some(300_000), Some("image/png"))
    );
    assert_eq!(collect_stream(d.body).await.unwrap(), data);
    assert!(
        c.download_url(&k)
            .await
            .unwrap()
            .contains(&format!("/bucket/{k}?exp="))
    );
    c.delete(&k).await.unwrap();
    let err = c.download(&k).await.unwrap_err();
    assert!(err.is_not_found(), "{err:?}");
    s.server.shutdown();
    filesync_core::rt::sleep(Duration::from_millis(50)).await;
    assert!(
        !c.health().await,
        "health is false when the signer is gone, never an error"
    );
}

/// SGN-1, WEAK-4: a wrong token is a permanent 401; a body that does not match the signed
/// hash is refused by the bucket and nothing is stored; bucket 5xx is retryable.
#[tokio::test]
async fn sgn_errors_are_classified() {
    let s = start().await;
    let anon = SignerClient::builder(s.server.api()).build().unwrap();
    let err = anon
        .upload(request(b"x", None), bytes_stream(&b"x"[..]))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Remote {
                status: Some(401),
                retryable: false,
                ..
            }
        ),
        "{err:?}"
    );
    let c = client(&s);
    let err = c
        .upload(request(b"declared", None), bytes_stream(&b"tampered"[..]))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Remote {
                status: Some(400),
                retryable: false,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(s.bucket.objects.lock().unwrap().is_empty());
    s.bucket.failing.store(true, Ordering::SeqCst);
    let err = c
        .upload(request(b"y", None), bytes_stream(&b"y"[..]))
        .await
        .unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
    assert!(!c.health().await);
    s.bucket.failing.store(false, Ordering::SeqCst);
    let out_of_prefix = UploadRequest {
        key: ObjectKey::parse("other/k").unwrap(),
        ..request(b"z", None)
    };
    let err = c
        .upload(out_of_prefix, bytes_stream(&b"z"[..]))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Remote {
                status: Some(403),
                retryable: false,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(SignerClient::builder("ftp://x").build().is_err());
}

/// A URL that arrives already expired is signed again before use.
#[tokio::test]
async fn expired_urls_are_signed_again() {
    let s = start().await;
    let c = client(&s);
    let req = request(b"fresh", None);
    let k = req.key.clone();
    s.signer.stale_next.store(1, Ordering::SeqCst);
    c.upload(req, bytes_stream(&b"fresh"[..])).await.unwrap();
    s.signer.stale_next.store(1, Ordering::SeqCst);
    let d = c.download(&k).await.unwrap();
    assert_eq!(collect_stream(d.body).await.unwrap(), "fresh");
}

/// Two engines, each with its own directory and SQLite store, sync save, update and delete
/// through the signer over HTTP (and an in-process relay for events).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_engines_sync_through_the_signer() {
    let s = start().await;
    let relay = MemoryRelay::new();
    let mut clients = Vec::new();
    for _ in 0..2 {
        let disk = Disk::scratch().await;
        let sync = disk
            .builder("shared_store")
            .with_remote(Arc::new(client(&s)))
            .with_relay(Arc::new(relay.handle()))
            .start()
            .await
            .unwrap();
        clients.push((sync, disk.store));
    }
    let (a, b) = (&clients[0], &clients[1]);
    let settled = |store: Arc<dyn Store>,
                   id: filesync_core::types::FileId,
                   want: Option<filesync_core::types::ContentHash>| async move {
        let settled = within(500, || async {
            let rec = store.file(&id).await.unwrap();
            let state = store.local_state(&id).await.unwrap();
            let ok = match (want, rec) {
                (None, Some(r)) => r.is_deleted() && state.is_none(),
                (Some(h), Some(r)) => {
                    !r.is_deleted()
                        && r.content_hash == h
                        && r.remote_key.is_some()
                        && state.is_some_and(|s| {
                            s.local_hash == Some(h) && s.download_status == TransferStatus::Done
                        })
                }
                _ => false,
            };
            ok && store.cursor().await.unwrap().last_event_sequence == store.head().await.unwrap()
        })
        .await;
        if !settled {
            panic!("did not settle");
        }
    };
    let saved = a.0.save_file(text("a", "over http")).await.unwrap();
    settled(
        Arc::clone(&b.1),
        saved.file_id.clone(),
        Some(saved.content_hash),
    )
    .await;
    let up =
        b.0.update_file(&saved.file_id, text("a", "edited"))
            .await
            .unwrap();
    settled(
        Arc::clone(&a.1),
        saved.file_id.clone(),
        Some(up.content_hash),
    )
    .await;
    let content = a.0.read_file(&saved.file_id).await.unwrap();
    assert_eq!(collect_stream(content.body).await.unwrap(), "edited");
    a.0.delete_file(&saved.file_id).await.unwrap();
    settled(Arc::clone(&b.1), saved.file_id.clone(), None).await;
    within(200, || async {
        s.bucket.objects.lock().unwrap().is_empty()
    })
    .await;
    assert!(
        s.bucket.objects.lock().unwrap().is_empty(),
        "the bucket still holds objects"
    );
    assert_eq!(
        a.1.events_after(EventSeq::ROOT, 100).await.unwrap(),
        b.1.events_after(EventSeq::ROOT, 100).await.unwrap()
    );
    for (sync, _) in clients {
        sync.shutdown().await;
    }
}

/// A signer that accepts connections and never answers: each call ends after the connect +
/// read timeouts with a retryable error, and `health` is false (no call hangs a slot forever).
#[tokio::test]
async fn a_silent_signer_times_out() {
    let (listener, addr) = listen(0).await;
    let held = Arc::new(Mutex::new(Vec::new()));
    let keep = Arc::clone(&held);
    let _accepting = filesync_core::rt::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            keep.lock().unwrap().push(socket); // read nothing, answer nothing
        }
    });
    let c = SignerClient::builder(format!("http://{addr}/api"))
        .with_connect_timeout(Duration::from_millis(100))
        .with_read_timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let key = ObjectKey::parse("s/k").unwrap();
    let err = tokio::time::timeout(Duration::from_secs(10), c.download_url(&key))
        .await
        .expect("the call ended on its own")
        .unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
    let healthy = tokio::time::timeout(Duration::from_secs(10), c.health())
        .await
        .expect("health ended on its own");
    assert!(!healthy);
    assert!(!held.lock().unwrap().is_empty(), "the client did connect");
}
