//! The signer contract router (SGN, S3-1..11, WEAK-2, WEAK-3, WEAK-23), through
//! `tower::ServiceExt::oneshot` for every route, status and CORS header, and once over a real
//! loopback socket.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use filesync_core::contract::UploadMethod;
use filesync_core::server::{
    HealthReport, ObjectSigner, RouterConfig, SignedRequest, UploadSpec, router,
};
use filesync_core::types::{ObjectKey, Timestamp};
use filesync_core::{Error, Result};
use http_body_util::BodyExt;
use tower::ServiceExt;

use common::http::{get, grants, post, serve_app};

mod common;

#[derive(Default)]
struct TestSigner {
    healthy: AtomicBool,
    fail_delete: AtomicBool,
    signed: AtomicUsize,
    specs: Mutex<Vec<UploadSpec>>,
    deleted: Mutex<Vec<String>>,
}

/// A signed `PUT` of `url` with `headers`, expiring `expires_in` after `now`.
fn signed(
    url: String,
    headers: BTreeMap<String, String>,
    expires_in: Duration,
    now: Timestamp,
) -> SignedRequest {
    SignedRequest {
        method: UploadMethod::Put,
        url,
        headers,
        expires_at: Timestamp::from_millis(now.as_millis() + expires_in.as_millis() as i64)
            .unwrap(),
    }
}

#[async_trait]
impl ObjectSigner for TestSigner {
    async fn sign_upload(
        &self,
        spec: &UploadSpec,
        expires_in: Duration,
        now: Timestamp,
    ) -> Result<SignedRequest> {
        self.signed.fetch_add(1, Ordering::SeqCst);
        self.specs.lock().unwrap().push(spec.clone());
        let mut headers = BTreeMap::new();
        if let Some(t) = &spec.content_type {
            headers.insert("content-type".to_owned(), t.clone());
        }
        Ok(signed(
            format!("https://bucket.test/{}?sig=x", spec.key),
            headers,
            expires_in,
            now,
        ))
    }
    async fn sign_download(
        &self,
        key: &ObjectKey,
        expires_in: Duration,
        now: Timestamp,
    ) -> Result<SignedRequest> {
        self.signed.fetch_add(1, Ordering::SeqCst);
        Ok(signed(
            format!("https://bucket.test/{key}?sig=y"),
            BTreeMap::new(),
            expires_in,
            now,
        ))
    }
    async fn delete(&self, key: &ObjectKey) -> Result<()> {
        if self.fail_delete.load(Ordering::SeqCst) {
            return Err(Error::Remote {
                what: "bucket down".into(),
                status: Some(503),
                retryable: true,
                source: None,
            });
        }
        self.deleted.lock().unwrap().push(key.to_string());
        Ok(())
    }
    async fn health(&self) -> HealthReport {
        HealthReport {
            ok: self.healthy.load(Ordering::SeqCst),
            details: Default::default(),
        }
    }
}

fn config() -> RouterConfig {
    grants(&[
        ("alpha-token", &["store-a/"]),
        ("admin-token", &[]),
        ("multi-token", &["x/", "y/"]),
    ])
}

struct Reply {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: String,
}

async fn call(signer: &Arc<TestSigner>, config: RouterConfig, req: Request<Body>) -> Reply {
    let resp = router(Arc::clone(signer), config)
        .oneshot(req)
        .await
        .unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    Reply {
        status,
        headers,
        body: String::from_utf8(body.to_vec()).unwrap(),
    }
}

fn signer() -> Arc<TestSigner> {
    let s = Arc::new(TestSigner::default());
    s.healthy.store(true, Ordering::SeqCst);
    s
}

fn assert_cors(r: &Reply) {
    let h = |n: &str| r.headers.get(n).map(|v| v.to_str().unwrap().to_owned());
    assert_eq!(h("access-control-allow-origin").as_deref(), Some("*"));
    assert_eq!(
        h("access-control-allow-methods").as_deref(),
        Some("GET, POST, DELETE, OPTIONS")
    );
    assert_eq!(
        h("access-control-allow-headers").as_deref(),
        Some("Content-Type, Authorization, X-Worker-Auth")
    );
    assert_eq!(h("access-control-max-age").as_deref(), Some("86400"));
}

/// S3-4, S3-11: health needs no auth; 200 ok / 503 error (the original: 500) naming the
/// failing part and why; the version added; JSON with CORS headers.
#[tokio::test]
async fn s3_4_health() {
    let s = signer();
    let version = env!("CARGO_PKG_VERSION");
    let r = call(&s, config(), get("/api/health", None)).await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (
            StatusCode::OK,
            format!(r#"{{"status":"ok","version":"{version}"}}"#).as_str()
        )
    );
    assert_eq!(r.headers["content-type"], "application/json");
    assert_cors(&r);
    s.healthy.store(false, Ordering::SeqCst);
    let r = call(&s, config(), get("/api/health", None)).await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                r#"{{"failing":"bucket","reason":"the bucket probe failed","status":"error","version":"{version}"}}"#
            )
            .as_str()
        )
    );
}

/// S3-1: OPTIONS anywhere under the base is a 204 preflight with CORS headers; paths outside
/// the base (including `/apix`: a segment boundary, WEAK-3) are not ours.
#[tokio::test]
async fn s3_1_preflight_and_base_path() {
    let s = signer();
    let opt = |p: &str| Request::options(p).body(Body::empty()).unwrap();
    let r = call(&s, config(), opt("/api/v1/sign/upload")).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_cors(&r);
    assert_eq!(
        call(&s, config(), opt("/apix/v1/sign/upload")).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        call(&s, config(), opt("/other")).await.status,
        StatusCode::NOT_FOUND
    );
    let custom = RouterConfig {
        base_path: "/files-api/".into(),
        ..config()
    };
    let r = call(&s, custom, get("/files-api/health", None)).await;
    assert_eq!(r.status, StatusCode::OK);
}

/// S3-5, WEAK-2: 401 before routing (also for unknown routes); Bearer and X-Worker-Auth work;
/// a wrong or missing token is refused and nothing is signed.
#[tokio::test]
async fn s3_5_auth_before_routing() {
    let s = signer();
    let body = r#"{"key":"store-a/abc"}"#;
    for req in [
        post("/api/v1/sign/upload", None, body),
        post("/api/v1/sign/upload", Some("wrong"), body),
        post("/api/v1/sign/upload", Some("alpha-tokenX"), body),
        post("/api/nope", None, "{}"),
    ] {
        let r = call(&s, config(), req).await;
        assert_eq!(
            (r.status, r.body.as_str()),
            (StatusCode::UNAUTHORIZED, r#"{"error":"Unauthorized"}"#)
        );
        assert_cors(&r);
    }
    assert_eq!(s.signed.load(Ordering::SeqCst), 0);
    let r = call(&s, config(), post("/api/nope", Some("admin-token"), "{}")).await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (StatusCode::NOT_FOUND, r#"{"error":"Not found"}"#)
    );
    let worker = Request::post("/api/v1/sign/download")
        .header("x-worker-auth", "alpha-token")
        .body(Body::from(body))
        .unwrap();
    assert_eq!(call(&s, config(), worker).await.status, StatusCode::OK);
}

/// S3-6: malformed bodies → 400 Invalid request; unsafe keys → 400 Invalid key; out-of-prefix
/// → 403; nothing is signed for any of them.
#[tokio::test]
async fn s3_6_key_and_body_rules() {
    let s = signer();
    for (body, status, msg) in [
        ("not json", StatusCode::BAD_REQUEST, "Invalid request"),
        ("{}", StatusCode::BAD_REQUEST, "Invalid request"),
        (r#"{"key":5}"#, StatusCode::BAD_REQUEST, "Invalid request"),
        (
            r#"{"key":"store-a/x","contentHash":"XYZ"}"#,
            StatusCode::BAD_REQUEST,
            "Invalid request",
        ),
        (r#"{"key":""}"#, StatusCode::BAD_REQUEST, "Invalid key"),
        (
            r#"{"key":"store-a/../store-b/x"}"#,
            StatusCode::BAD_REQUEST,
            "Invalid key",
        ),
        (
            r#"{"key":"store-a/./x"}"#,
            StatusCode::BAD_REQUEST,
            "Invalid key",
        ),
        (
            r#"{"key":"store-a//x"}"#,
            StatusCode::BAD_REQUEST,
            "Invalid key",
        ),
        (r#"{"key":"store-b/x"}"#, StatusCode::FORBIDDEN, "Forbidden"),
        (
            r#"{"key":"store-ab/x"}"#,
            StatusCode::FORBIDDEN,
            "Forbidden",
        ),
    ] {
        for route in [
            "/api/v1/sign/upload",
            "/api/v1/sign/download",
            "/api/v1/delete",
        ] {
            if body.contains("contentHash") && route != "/api/v1/sign/upload" {
                continue;
            }
            let r = call(&s, config(), post(route, Some("alpha-token"), body)).await;
            assert_eq!(r.status, status, "{route} {body}");
            assert_eq!(r.body, format!(r#"{{"error":"{msg}"}}"#), "{route} {body}");
        }
    }
    assert_eq!(s.signed.load(Ordering::SeqCst), 0);
    assert!(s.deleted.lock().unwrap().is_empty());
    // Leading slashes are stripped (S3-6); several prefixes; an admin token has no prefix limit.
    let r = call(
        &s,
        config(),
        post(
            "/api/v1/sign/download",
            Some("alpha-token"),
            r#"{"key":"//store-a/x"}"#,
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(
        r.body.contains("https://bucket.test/store-a/x"),
        "{}",
        r.body
    );
    for key in ["x/1", "y/2"] {
        let r = call(
            &s,
            config(),
            post(
                "/api/v1/delete",
                Some("multi-token"),
                format!(r#"{{"key":"{key}"}}"#),
            ),
        )
        .await;
        assert_eq!(r.status, StatusCode::NO_CONTENT);
    }
    let r = call(
        &s,
        config(),
        post(
            "/api/v1/delete",
            Some("admin-token"),
            r#"{"key":"any/where"}"#,
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(*s.deleted.lock().unwrap(), ["x/1", "y/2", "any/where"]);
}

/// SGN-3, S3-7: the upload response shape; length, type and hash reach the signer; expiresAt
/// is now + the clamped expiry.
#[tokio::test]
async fn sgn_3_sign_upload_response() {
    let s = signer();
    let hash = "ab".repeat(32);
    let body = format!(
        r#"{{"key":"store-a/{hash}","contentType":"image/png","contentLength":42,"contentHash":"{hash}"}}"#
    );
    let before = Timestamp::now().as_millis();
    let r = call(
        &s,
        config(),
        post("/api/v1/sign/upload", Some("alpha-token"), &body),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v["method"], "PUT");
    assert_eq!(v["headers"]["content-type"], "image/png");
    let expires = Timestamp::parse_iso8601(v["expiresAt"].as_str().unwrap())
        .unwrap()
        .as_millis();
    assert!((before + 900_000..=Timestamp::now().as_millis() + 900_000).contains(&expires));
    let spec = s.specs.lock().unwrap()[0].clone();
    assert_eq!(
        (spec.content_length, spec.content_type.as_deref()),
        (Some(42), Some("image/png"))
    );
    assert_eq!(spec.content_hash.unwrap().to_hex(), hash);
    // S3-7: the expiry is clamped to 1..=3600 s.
    let long = RouterConfig {
        max_expiry: Duration::from_secs(86_400),
        ..config()
    };
    let r = call(
        &s,
        long,
        post(
            "/api/v1/sign/download",
            Some("admin-token"),
            r#"{"key":"k/1"}"#,
        ),
    )
    .await;
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    let expires = Timestamp::parse_iso8601(v["expiresAt"].as_str().unwrap())
        .unwrap()
        .as_millis();
    assert!(expires <= Timestamp::now().as_millis() + 3_600_000);
    assert!(
        v.get("method").is_none(),
        "download responses have no method"
    );
}

/// S3-10: a failing delete is 500 `{"error":"Delete failed"}` without details.
#[tokio::test]
async fn s3_10_delete_failure() {
    let s = signer();
    s.fail_delete.store(true, Ordering::SeqCst);
    let r = call(
        &s,
        config(),
        post("/api/v1/delete", Some("admin-token"), r#"{"key":"k/1"}"#),
    )
    .await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            r#"{"error":"Delete failed"}"#
        )
    );
    assert!(!r.body.contains("bucket down"));
}

/// Bodies over the limit are refused with 413 before parsing.
#[tokio::test]
async fn body_limit() {
    let s = signer();
    let big = format!(r#"{{"key":"k/1","pad":"{}"}}"#, "x".repeat(20_000));
    let r = call(
        &s,
        config(),
        post("/api/v1/sign/download", Some("admin-token"), &big),
    )
    .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(s.signed.load(Ordering::SeqCst), 0);
}

/// WEAK-23: with an origin allow-list, allowed origins get credentialed CORS; others get none.
#[tokio::test]
async fn weak_23_credentialed_cors() {
    let s = signer();
    let cfg = || RouterConfig {
        allowed_origins: vec!["https://app.example".into()],
        extra_allowed_headers: vec!["X-App-Version".into()],
        ..config()
    };
    let with_origin = |o: &str| {
        Request::get("/api/health")
            .header("origin", o)
            .body(Body::empty())
            .unwrap()
    };
    let r = call(&s, cfg(), with_origin("https://app.example")).await;
    assert_eq!(
        r.headers["access-control-allow-origin"],
        "https://app.example"
    );
    assert_eq!(r.headers["access-control-allow-credentials"], "true");
    assert_eq!(r.headers["vary"], "Origin");
    assert_eq!(
        r.headers["access-control-allow-headers"],
        "Content-Type, Authorization, X-Worker-Auth, X-App-Version"
    );
    let r = call(&s, cfg(), with_origin("https://evil.example")).await;
    assert!(r.headers.get("access-control-allow-origin").is_none());
    assert!(r.headers.get("access-control-allow-credentials").is_none());
}

/// The router over a real loopback socket, with graceful shutdown.
#[tokio::test]
async fn serves_over_loopback() {
    let server = serve_app(router(signer(), config())).await;
    let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream
        .write_all(b"GET /api/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).await.unwrap();
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(reply.contains(r#"{"status":"ok","version":""#), "{reply}");
    server.stop().await;
}

/// Over real HTTP: the Bearer scheme is matched in any case (RFC 7235: `bearer`, `BEARER`);
/// a request with two `Authorization` headers (or two `X-Worker-Auth`) is 401 even when one
/// of them is valid, and nothing is signed for it.
#[tokio::test]
async fn bearer_scheme_any_case_and_duplicate_authorization() {
    let s = signer();
    let server = serve_app(router(Arc::clone(&s), config())).await;
    let url = format!("{}/api/v1/sign/download", server.base());
    let body = r#"{"key":"store-a/abc"}"#;
    let send = |headers: &[(&str, &str)]| {
        let mut r = reqwest::Client::new().post(&url).body(body);
        for (name, value) in headers {
            r = r.header(*name, *value);
        }
        async move {
            let resp = r.send().await.unwrap();
            (resp.status(), resp.text().await.unwrap())
        }
    };
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        let auth = format!("{scheme} alpha-token");
        let (status, b) = send(&[("authorization", &auth)]).await;
        assert_eq!(status, StatusCode::OK, "{scheme}: {b}");
    }
    let signed = s.signed.load(Ordering::SeqCst);
    for headers in [
        &[
            ("authorization", "Bearer alpha-token"),
            ("authorization", "Bearer alpha-token"),
        ][..],
        &[
            ("authorization", "Bearer alpha-token"),
            ("authorization", "Bearer wrong"),
        ],
        &[
            ("authorization", "Bearer wrong"),
            ("authorization", "Bearer alpha-token"),
        ],
        &[
            ("x-worker-auth", "alpha-token"),
            ("x-worker-auth", "alpha-token"),
        ],
        &[
            ("authorization", "Bearer alpha-token"),
            ("x-worker-auth", "a"),
            ("x-worker-auth", "b"),
        ],
        &[("authorization", "Basic alpha-token")],
        &[("authorization", "Bearer")],
    ] {
        let (status, b) = send(headers).await;
        assert_eq!(
            (status, b.as_str()),
            (StatusCode::UNAUTHORIZED, r#"{"error":"Unauthorized"}"#),
            "{headers:?}"
        );
    }
    assert_eq!(
        s.signed.load(Ordering::SeqCst),
        signed,
        "nothing signed for a 401"
    );
    server.stop().await;
}
