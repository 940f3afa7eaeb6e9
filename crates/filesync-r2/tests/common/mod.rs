//! Shared by the `filesync-r2` tests: the bearer token and router settings, an `R2Proxy`
//! served over loopback HTTP and a `SignerClient` of it, S3 settings for the test S3 server,
//! upload specs and signed uploads, and JSON answers.
#![allow(dead_code)] // each test binary uses its own part

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use filesync_core::remote::SignerClient;
use filesync_core::server::{RouterConfig, Secret, SignedRequest, TokenGrant, UploadSpec, serve};
use filesync_core::testing::s3s::S3s;
use filesync_core::types::ObjectKey;
use filesync_r2::{Bucket, R2Config, R2Proxy, S3Settings};
use tokio::net::TcpListener;

/// The bearer token the tests' servers accept (at least 16 characters).
pub const TOKEN: &str = "r2-test-token-0123456789";

/// Router settings accepting these tokens (`token` or `token:prefix,…`).
pub fn grants(specs: &[&str]) -> RouterConfig {
    RouterConfig {
        tokens: TokenGrant::parse_all(specs).unwrap(),
        ..RouterConfig::default()
    }
}

/// A `SignerClient` of the server at `addr` (its contract under `/api`), with [`TOKEN`].
pub fn client(addr: SocketAddr) -> SignerClient {
    SignerClient::builder(format!("http://{addr}/api"))
        .with_auth_token(TOKEN)
        .build()
        .unwrap()
}

/// Path-style settings for the test S3 server's bucket in `us-east-1`, with its credentials
/// and no session token; tests override fields with `..s3_settings(..)`.
pub fn s3_settings(s3: &S3s) -> S3Settings {
    S3Settings {
        endpoint: s3.endpoint().parse().unwrap(),
        region: "us-east-1".into(),
        bucket: S3s::BUCKET.into(),
        access_key_id: S3s::ACCESS_KEY.into(),
        secret_access_key: Secret::new(S3s::SECRET_KEY),
        session_token: None,
        force_path_style: true,
    }
}

/// Serve `app` on `listener` in the background, for the rest of the test.
pub fn serve_in_background(listener: TcpListener, app: Router) {
    drop(filesync_core::rt::spawn(async move {
        serve(listener, app, std::future::pending()).await.unwrap();
    }));
}

/// An `R2Proxy` on `bucket` served on `127.0.0.1:<free port>`, which is also its public URL;
/// `configure` adjusts its settings and `app` builds the router around it. Returns the
/// address and the proxy.
pub async fn serve_proxy(
    bucket: Bucket,
    configure: impl FnOnce(&mut R2Config),
    app: impl FnOnce(Arc<R2Proxy>) -> Router,
) -> (SocketAddr, Arc<R2Proxy>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut config = R2Config::new(
        format!("http://{addr}").parse().unwrap(),
        Secret::new("r2-test-signing-secret"),
    );
    configure(&mut config);
    let proxy = Arc::new(R2Proxy::new(bucket, config));
    serve_in_background(listener, app(Arc::clone(&proxy)));
    (addr, proxy)
}

pub fn key(s: &str) -> ObjectKey {
    ObjectKey::parse(s).unwrap()
}

/// An upload of `body` under `key` as `text/plain`, its length and SHA-256 declared.
pub fn spec(k: &str, body: &[u8]) -> UploadSpec {
    UploadSpec {
        key: key(k),
        content_length: Some(body.len() as u64),
        content_type: Some("text/plain".into()),
        content_hash: Some(filesync_core::hash::hash_bytes(body)),
    }
}

/// A `PUT` of `body` to a signed upload URL, with the headers it was signed with.
pub fn signed_put(
    http: &reqwest::Client,
    signed: &SignedRequest,
    body: impl Into<reqwest::Body>,
) -> reqwest::RequestBuilder {
    let mut req = http.put(&signed.url).body(body);
    for (h, v) in &signed.headers {
        req = req.header(h, v);
    }
    req
}

/// Send `request` and read its answer as JSON.
pub async fn json(request: reqwest::RequestBuilder) -> serde_json::Value {
    request.send().await.unwrap().json().await.unwrap()
}
