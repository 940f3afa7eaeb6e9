//! `R2Proxy` over real loopback HTTP, on a local-directory bucket: the shared `ObjectSigner`
//! conformance suite, the file routes' refusals (each leaving the bucket untouched), ranges,
//! conditional requests, CORS, and two engines syncing through the server and its relay.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use filesync_core::FileSync;
use filesync_core::fs::{FileSystem, NativeFs, collect_stream};
use filesync_core::preprocess::FileInput;
use filesync_core::server::{
    EventLog, ObjectSigner, RouterConfig, Secret, SqliteEventLog, UploadSpec,
};
use filesync_core::store::{SqliteStore, Store};
use filesync_core::sync::HttpRelay;
use filesync_core::testing::sync::settled;
use filesync_core::types::{StoreId, Timestamp};
use filesync_r2::{Bucket, R2Config, R2Proxy, router};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::{TOKEN, client, grants, json, key, serve_proxy, signed_put, spec};

mod common;

const OTHER_TOKEN: &str = "other-store-token-0123456789";

struct Server {
    addr: std::net::SocketAddr,
    proxy: Arc<R2Proxy>,
    dir: tempfile::TempDir,
}

impl Server {
    fn signer(&self) -> &R2Proxy {
        &self.proxy
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Every file under the data directory's `objects/` (staging files included).
    fn objects(&self) -> Vec<PathBuf> {
        fn walk(d: &Path, out: &mut Vec<PathBuf>) {
            for e in std::fs::read_dir(d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    walk(&p, out);
                } else {
                    out.push(p);
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.dir.path().join("objects"), &mut out);
        out.sort();
        out
    }
}

async fn start_with(max_object_size: u64) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let relay: Arc<dyn EventLog> = Arc::new(
        SqliteEventLog::open(dir.path().join("relay.sqlite"))
            .await
            .unwrap(),
    );
    let (addr, proxy) = serve_proxy(
        Bucket::local(dir.path()).unwrap(),
        |config| config.max_object_size = max_object_size,
        |proxy| {
            router(
                proxy,
                grants(&[TOKEN, &format!("{OTHER_TOKEN}:other/")]),
                Some(relay),
            )
        },
    )
    .await;
    Server { addr, proxy, dir }
}

async fn start() -> Server {
    start_with(filesync_r2::DEFAULT_MAX_OBJECT_SIZE).await
}

filesync_core::signer_conformance!(
    #[tokio::test]
    start().await,
    "conformance"
);

const LIFE: Duration = Duration::from_secs(900);

async fn upload(s: &Server, k: &str, body: &'static [u8]) -> reqwest::Response {
    let signed = s
        .signer()
        .sign_upload(&spec(k, body), LIFE, Timestamp::now())
        .await
        .unwrap();
    signed_put(&reqwest::Client::new(), &signed, body)
        .send()
        .await
        .unwrap()
}

async fn download_url(s: &Server, k: &str) -> String {
    s.signer()
        .sign_download(&key(k), LIFE, Timestamp::now())
        .await
        .unwrap()
        .url
}

/// R2-4 and the vector: a URL signed with a known secret at a fixed time is exactly
/// `base64url(HMAC-SHA256(secret, "PUT\n<key>\n<exp>"))`, computed independently (Python's
/// hmac module) from the spec's formula.
#[tokio::test]
async fn r2_4_signed_url_matches_the_spec_vector() {
    let proxy = R2Proxy::new(
        Bucket::local(tempfile::tempdir().unwrap().path()).unwrap(),
        R2Config::new(
            "https://files.example.com".parse().unwrap(),
            Secret::new("filesync-vector-secret"),
        ),
    );
    let now = Timestamp::parse_iso8601("2026-01-02T03:04:05.678Z").unwrap();
    let k = key("store-1/ü b+c.txt");
    let up = proxy
        .sign_upload(
            &UploadSpec {
                key: k.clone(),
                content_length: None,
                content_type: None,
                content_hash: None,
            },
            Duration::from_secs(900),
            now,
        )
        .await
        .unwrap();
    // exp = floor(1767323045.678) + 900 = 1767323945
    assert_eq!(
        up.url,
        "https://files.example.com/livestore-filesync-files/store-1/%C3%BC%20b%2Bc.txt?exp=1767323945&sig=Kj-qeUwCvwTuYfxa_ViRqCwLcPYRE7UZcdhIJtX3TcQ"
    );
    assert_eq!(up.expires_at.to_iso8601(), "2026-01-02T03:19:05.000Z");
    assert!(up.headers.is_empty());
    let down = proxy
        .sign_download(&k, Duration::from_secs(900), now)
        .await
        .unwrap();
    assert_eq!(
        down.url,
        "https://files.example.com/livestore-filesync-files/store-1/%C3%BC%20b%2Bc.txt?exp=1767323945&sig=e4achUQvgtBM9Z8nonB9tKi06WgVMnQuVFkEhk69eUs"
    );
}

/// R2-8/R2-9: tampered, expired and other-method URLs are 403; no credentials at all is 401;
/// in each case nothing is read or written.
#[tokio::test]
async fn bad_urls_are_refused_and_touch_nothing() {
    let s = start().await;
    assert_eq!(upload(&s, "s/a", b"original").await.status(), 200);
    let before = s.objects();
    let http = reqwest::Client::new();
    let down = download_url(&s, "s/a").await;
    // A changed signature, a changed expiry, a changed key.
    let tampered = down.replace("sig=", "sig=A");
    let (base, exp) = down.split_once("exp=").unwrap();
    let (exp, sig) = exp.split_once('&').unwrap();
    let later = format!("{base}exp={}&{sig}", exp.parse::<i64>().unwrap() + 1);
    let other_key = down.replace("/s/a?", "/s/b?");
    for url in [&tampered, &later, &other_key] {
        let r = http.get(url.as_str()).send().await.unwrap();
        assert_eq!(r.status(), 403, "{url}");
        assert_ne!(r.text().await.unwrap(), "original");
    }
    // A download URL used to upload or delete: 403, nothing changed.
    for method in [reqwest::Method::PUT, reqwest::Method::DELETE] {
        let r = http
            .request(method.clone(), &down)
            .body("replaced")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "{method}");
    }
    // Expired: signed an hour ago for a minute.
    let past = Timestamp::from_millis(Timestamp::now().as_millis() - 3_600_000).unwrap();
    let old = s
        .signer()
        .sign_upload(&spec("s/new", b"x"), Duration::from_secs(60), past)
        .await
        .unwrap();
    let r = http.put(&old.url).body("x").send().await.unwrap();
    assert_eq!(r.status(), 403);
    // No signature, no token: 401.
    let bare = s.url("/livestore-filesync-files/s/a");
    assert_eq!(http.get(&bare).send().await.unwrap().status(), 401);
    assert_eq!(
        http.put(&bare).body("x").send().await.unwrap().status(),
        401
    );
    assert_eq!(s.objects(), before);
    assert_eq!(
        http.get(&down).send().await.unwrap().text().await.unwrap(),
        "original"
    );
}

/// R2-8.2: a token in the headers works on the file routes, within its prefixes.
#[tokio::test]
async fn tokens_authorize_file_routes_within_their_prefixes() {
    let s = start().await;
    let http = reqwest::Client::new();
    let url = s.url("/livestore-filesync-files/other/x.txt");
    let r = http
        .put(&url)
        .bearer_auth(OTHER_TOKEN)
        .body("by token")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = http
        .get(&url)
        .bearer_auth(OTHER_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.text().await.unwrap(), "by token");
    let outside = s.url("/livestore-filesync-files/s/x.txt");
    let r = http
        .put(&outside)
        .header("x-worker-auth", OTHER_TOKEN)
        .body("no")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = http
        .put(&outside)
        .bearer_auth("not-a-token-at-all-000")
        .body("no")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = http
        .delete(&url)
        .bearer_auth(OTHER_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(
        http.get(&url)
            .bearer_auth(OTHER_TOKEN)
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
}

/// Send raw bytes (no URL normalisation by a client library) and read the status code.
async fn raw_status(s: &Server, request: &[u8]) -> u16 {
    let mut c = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    c.write_all(request).await.unwrap();
    let mut buf = vec![0u8; 64];
    let n = c.read(&mut buf).await.unwrap();
    let line = String::from_utf8_lossy(&buf[..n]).to_string();
    line.split(' ').nth(1).unwrap().parse().unwrap()
}

/// WEAK-24: traversal and malformed keys are 400 on the file routes and the contract routes;
/// missing tokens are 401 there.
#[tokio::test]
async fn traversal_keys_are_400_and_missing_tokens_401() {
    let s = start().await;
    for path in [
        "/livestore-filesync-files/s/../etc/passwd",
        "/livestore-filesync-files/s/%2e%2e/x",
        "/livestore-filesync-files/./x",
        "/livestore-filesync-files/s/%ff",
        "/livestore-filesync-files/s/a%00b",
    ] {
        let req =
            format!("GET {path}?exp=1&sig=x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        assert_eq!(raw_status(&s, req.as_bytes()).await, 400, "{path}");
    }
    let http = reqwest::Client::new();
    for k in ["s/../x", "s/./x", "../x", "s//x", "s/a\u{0}b"] {
        let r = http
            .post(s.url("/api/v1/sign/upload"))
            .bearer_auth(TOKEN)
            .json(&serde_json::json!({"key": k, "contentLength": 1}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{k}");
    }
    let r = http
        .post(s.url("/api/v1/sign/upload"))
        .json(&serde_json::json!({"key": "s/a"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = http
        .post(s.url("/api/v1/sign/download"))
        .bearer_auth(OTHER_TOKEN)
        .json(&serde_json::json!({"key": "s/a"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(s.objects().is_empty());
}

/// WEAK-18 and R2-9: `Range`, `HEAD`, `If-None-Match` → 304, quoted `ETag`, the stored
/// `Content-Type`, `Cache-Control`, and R2-12's CORS headers.
#[tokio::test]
async fn range_head_conditional_and_headers() {
    let s = start().await;
    let put = upload(&s, "s/r.txt", b"0123456789").await;
    assert_eq!(put.status(), 200);
    let put_etag = put.headers()["etag"].to_str().unwrap().to_owned();
    let url = download_url(&s, "s/r.txt").await;
    let http = reqwest::Client::new();
    let full = http.get(&url).send().await.unwrap();
    assert_eq!(full.status(), 200);
    let h = full.headers().clone();
    let etag = h["etag"].to_str().unwrap().to_owned();
    assert!(etag.starts_with('"') && etag.ends_with('"'), "{etag}");
    assert_eq!(etag, put_etag);
    assert_eq!(h["content-type"], "text/plain");
    assert_eq!(h["content-length"], "10");
    assert_eq!(h["cache-control"], "public, max-age=31536000, immutable");
    assert_eq!(h["access-control-allow-origin"], "*");
    assert_eq!(
        h["access-control-allow-methods"],
        "GET, POST, PUT, DELETE, OPTIONS"
    );
    assert_eq!(h["cross-origin-resource-policy"], "cross-origin");
    assert_eq!(full.text().await.unwrap(), "0123456789");

    for (range, status, body, content_range) in [
        ("bytes=2-5", 206, "2345", Some("bytes 2-5/10")),
        ("bytes=7-", 206, "789", Some("bytes 7-9/10")),
        ("bytes=-2", 206, "89", Some("bytes 8-9/10")),
        ("bytes=0-1,4-5", 200, "0123456789", None),
        ("bytes=10-", 416, "", Some("bytes */10")),
    ] {
        let r = http.get(&url).header("range", range).send().await.unwrap();
        assert_eq!(r.status(), status, "{range}");
        assert_eq!(
            r.headers()
                .get("content-range")
                .map(|v| v.to_str().unwrap()),
            content_range,
            "{range}"
        );
        if status != 416 {
            assert_eq!(r.text().await.unwrap(), body, "{range}");
        }
    }
    let head = http.head(&url).send().await.unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(head.headers()["content-length"], "10");
    assert_eq!(head.headers()["etag"], etag.as_str());
    let not_modified = http
        .get(&url)
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(not_modified.status(), 304);
    assert_eq!(not_modified.headers()["etag"], etag.as_str());
    assert!(not_modified.bytes().await.unwrap().is_empty());
    let changed = http
        .get(&url)
        .header("if-none-match", "\"something-else\"")
        .send()
        .await
        .unwrap();
    assert_eq!(changed.status(), 200);
    // Preflight on a file path, and the missing-file answer.
    let pre = http
        .request(
            reqwest::Method::OPTIONS,
            s.url("/livestore-filesync-files/s/r.txt"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(pre.status(), 204);
    assert_eq!(pre.headers()["access-control-max-age"], "86400");
    // A page on another origin may send what sign_upload asks for and conditional/ranged GETs.
    let allowed = pre.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    for header in [
        "content-type",
        "authorization",
        "x-worker-auth",
        "x-amz-checksum-sha256",
        "if-none-match",
        "range",
    ] {
        assert!(
            allowed.split(", ").any(|h| h == header),
            "{header} not in {allowed}"
        );
    }
    let missing = http
        .get(download_url(&s, "s/none").await)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    assert_eq!(
        missing.json::<serde_json::Value>().await.unwrap(),
        serde_json::json!({"error": "File not found"})
    );
    // R2-3: health.
    let health = json(http.get(s.url("/api/health"))).await;
    assert_eq!(health["status"], "ok");
    assert_eq!(health["bucket"], true);
    assert!(health["timestamp"].as_str().unwrap().ends_with('Z'));
    // A bucket that is gone (the objects directory removed) is unhealthy, not "ok".
    std::fs::remove_dir_all(s.dir.path().join("objects")).unwrap();
    let gone = http.get(s.url("/api/health")).send().await.unwrap();
    let status = gone.status();
    let health: serde_json::Value = gone.json().await.unwrap();
    assert_eq!(health["bucket"], false, "{status} {health}");
    assert_ne!(status, 200);
}

/// WEAK-4: a body that does not match its declared checksum or length, or is over the size
/// limit, or is cut off mid-way, leaves nothing behind (no object, no staging file), and an
/// existing object under the key is untouched.
#[tokio::test]
async fn failed_uploads_leave_nothing() {
    let s = start_with(20 * 1024 * 1024).await;
    let http = reqwest::Client::new();
    // Wrong checksum.
    let signed = s
        .signer()
        .sign_upload(&spec("s/sum", b"declared"), LIFE, Timestamp::now())
        .await
        .unwrap();
    let r = signed_put(&http, &signed, "imposter").send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("BadDigest"));
    assert!(s.objects().is_empty());
    // Over the limit, declared by the sign request, by Content-Length, or only in the stream.
    let big = UploadSpec {
        content_length: Some(21 * 1024 * 1024),
        ..spec("s/big", b"")
    };
    assert!(
        s.signer()
            .sign_upload(&big, LIFE, Timestamp::now())
            .await
            .is_err()
    );
    let r = http
        .post(s.url("/api/v1/sign/upload"))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({"key": "s/big", "contentLength": 21 * 1024 * 1024}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let url = s
        .signer()
        .sign_upload(&spec("s/big", b""), LIFE, Timestamp::now())
        .await
        .unwrap()
        .url;
    let r = http
        .put(&url)
        .body(vec![7u8; 21 * 1024 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    let chunks = futures::stream::iter(
        (0..21).map(|_| Ok::<_, std::io::Error>(bytes::Bytes::from(vec![7u8; 1024 * 1024]))),
    );
    let r = http
        .put(&url)
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert!(s.objects().is_empty(), "{:?}", s.objects());

    // Cut off: declare 16 MiB, send 12 MiB (past the first part), then hang up.
    assert_eq!(upload(&s, "s/cut", b"the old bytes").await.status(), 200);
    let before = s.objects();
    let url = download_url(&s, "s/cut").await; // any valid PUT URL that binds no length:
    let unbound = UploadSpec {
        content_length: None,
        content_hash: None,
        ..spec("s/cut", b"")
    };
    let put_url = s
        .signer()
        .sign_upload(&unbound, LIFE, Timestamp::now())
        .await
        .unwrap()
        .url;
    let path_and_query = put_url
        .split_once(&s.addr.to_string())
        .unwrap()
        .1
        .to_owned();
    let mut c = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    c.write_all(
        format!(
            "PUT {path_and_query} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
            16 * 1024 * 1024
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let chunk = vec![1u8; 1024 * 1024];
    for _ in 0..12 {
        c.write_all(&chunk).await.unwrap();
    }
    drop(c);
    // The server notices the cut, aborts, and removes its staging file.
    let mut left = Vec::new();
    for _ in 0..200 {
        left = s.objects();
        if left == before {
            break;
        }
        filesync_core::rt::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(left, before);
    assert_eq!(
        http.get(&url).send().await.unwrap().text().await.unwrap(),
        "the old bytes"
    );
}

/// Two engines, each with its own directory and SQLite store, sync save, update and delete
/// through this server: `SignerClient` for bytes, `HttpRelay` for events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_engines_sync_through_the_proxy_and_relay() {
    let s = start().await;
    let base = s.url("/api");
    let mut clients = Vec::new();
    for _ in 0..2 {
        let fs: Arc<dyn FileSystem> = Arc::new(NativeFs::scratch().unwrap());
        let store: Arc<dyn Store> = Arc::new(SqliteStore::scratch().await.unwrap());
        let remote = client(s.addr);
        let relay = HttpRelay::new(&base, Some(TOKEN.into())).unwrap();
        let sync = FileSync::builder(StoreId::parse("shared").unwrap(), fs, Arc::clone(&store))
            .with_remote(Arc::new(remote))
            .with_relay(Arc::new(relay))
            .start()
            .await
            .unwrap();
        clients.push((sync, store));
    }
    let (a, b) = (&clients[0], &clients[1]);
    let saved =
        a.0.save_file(FileInput::from_bytes(
            "a.txt",
            "text/plain",
            "through the proxy",
        ))
        .await
        .unwrap();
    settled(&b.1, &saved.file_id, Some(saved.content_hash)).await;
    let stored = s
        .dir
        .path()
        .join(format!("objects/shared/{}", saved.content_hash));
    assert_eq!(std::fs::read(&stored).unwrap(), b"through the proxy");
    let content = b.0.read_file(&saved.file_id).await.unwrap();
    assert_eq!(
        collect_stream(content.body).await.unwrap(),
        "through the proxy"
    );
    let up =
        b.0.update_file(
            &saved.file_id,
            FileInput::from_bytes("a.txt", "text/plain", "edited on b"),
        )
        .await
        .unwrap();
    settled(&a.1, &saved.file_id, Some(up.content_hash)).await;
    a.0.delete_file(&saved.file_id).await.unwrap();
    settled(&b.1, &saved.file_id, None).await;
    assert_eq!(
        a.1.events_after(filesync_core::schema::EventSeq::ROOT, 100)
            .await
            .unwrap(),
        b.1.events_after(filesync_core::schema::EventSeq::ROOT, 100)
            .await
            .unwrap()
    );
    for (sync, _) in clients {
        sync.shutdown().await;
    }
}

/// `router_with_static`: a web app's files are served outside `/api` and the file routes,
/// which keep working; a missing static file is 404.
#[tokio::test]
async fn static_files_beside_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let web = tempfile::tempdir().unwrap();
    std::fs::write(web.path().join("index.html"), "<h1>app</h1>").unwrap();
    std::fs::write(web.path().join("app.js"), "console.log(1)").unwrap();
    let (addr, proxy) = serve_proxy(
        Bucket::local(dir.path()).unwrap(),
        |_| {},
        |proxy| {
            filesync_r2::router_with_static(proxy, RouterConfig::default(), None, Some(web.path()))
        },
    )
    .await;
    let http = reqwest::Client::new();
    let index = http.get(format!("http://{addr}/")).send().await.unwrap();
    assert_eq!(index.status(), 200);
    assert_eq!(index.text().await.unwrap(), "<h1>app</h1>");
    let js = http
        .get(format!("http://{addr}/app.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(js.headers()["content-type"], "text/javascript");
    assert_eq!(
        http.get(format!("http://{addr}/missing.css"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    let health = http
        .get(format!("http://{addr}/api/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let signed = proxy
        .sign_upload(&spec("s/x", b"x"), LIFE, Timestamp::now())
        .await
        .unwrap();
    assert_eq!(
        signed_put(&http, &signed, "x")
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}
