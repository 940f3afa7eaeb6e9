//! Shared by the `filesync-s3-signer` tests: the signer's settings and a signer for the test S3
//! server, the contract router served on loopback HTTP, and a `SignerClient` of it.
#![allow(dead_code)] // each test binary uses its own part

use std::fmt::Display;
use std::net::SocketAddr;
use std::sync::Arc;

use filesync_core::remote::SignerClient;
use filesync_core::server::{RouterConfig, Secret, router, serve};
use filesync_core::testing::s3s::S3s;
use filesync_s3_signer::{S3Settings, S3Signer};

/// Path-style settings for `bucket` at `endpoint` in `us-east-1`, with the test S3 server's
/// credentials and no session token; tests override fields with `..config(..)`.
pub fn config(endpoint: &str, bucket: &str) -> S3Settings {
    S3Settings {
        endpoint: endpoint.parse().unwrap(),
        region: "us-east-1".into(),
        bucket: bucket.into(),
        access_key_id: S3s::ACCESS_KEY.into(),
        secret_access_key: Secret::new(S3s::SECRET_KEY),
        session_token: None,
        force_path_style: true,
    }
}

/// A signer for `bucket` on the test S3 server `s3`.
pub fn signer(s3: &S3s, bucket: &str) -> S3Signer {
    S3Signer::new(config(&s3.endpoint(), bucket)).unwrap()
}

/// The contract router for `signer` with `config`, served on a free loopback port for the
/// rest of the test: its address.
pub async fn serve_signer(signer: S3Signer, config: RouterConfig) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = router(Arc::new(signer), config);
    drop(filesync_core::rt::spawn(async move {
        serve(listener, app, std::future::pending()).await.unwrap();
    }));
    addr
}

/// A `SignerClient` of the signer at `addr` (its contract under `/api`), sending `token`.
pub fn client(addr: impl Display, token: &str) -> SignerClient {
    SignerClient::builder(format!("http://{addr}/api"))
        .with_auth_token(token)
        .build()
        .unwrap()
}
