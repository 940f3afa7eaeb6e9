//! `R2Proxy` on an S3 bucket (object_store's `AmazonS3`), against a real S3-compatible server
//! that verifies SigV4 (`s3s-fs`): the shared `ObjectSigner` suite, content types kept as
//! object attributes, ranges, and a multipart upload larger than one part.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::sync::Arc;
use std::time::Duration;

use filesync_core::server::{ObjectSigner, RouterConfig, Secret, UploadSpec};
use filesync_core::testing::s3s::S3s;
use filesync_core::types::Timestamp;
use filesync_r2::{Bucket, R2Proxy, S3Settings, router};

use crate::common::{key, s3_settings, serve_proxy, spec};

mod common;

struct Server {
    _s3: S3s,
    proxy: Arc<R2Proxy>,
}

impl Server {
    fn signer(&self) -> &R2Proxy {
        &self.proxy
    }
}

fn bucket(s3: &S3s, force_path_style: bool) -> Bucket {
    Bucket::s3(&S3Settings {
        force_path_style,
        ..s3_settings(s3)
    })
    .unwrap()
}

async fn start() -> Server {
    let s3 = S3s::start().await;
    let (_, proxy) = serve_proxy(
        bucket(&s3, true),
        |_| {},
        |proxy| router(proxy, RouterConfig::default(), None),
    )
    .await;
    Server { _s3: s3, proxy }
}

filesync_core::signer_conformance!(
    #[tokio::test]
    start().await,
    "conformance"
);

/// A 20 MiB upload (three multipart parts) streams through the proxy into S3 and back, with
/// its type stored as the object's `Content-Type` and ranges served from S3.
#[tokio::test]
async fn multipart_upload_type_and_range_through_s3() {
    let s = start().await;
    let body: Vec<u8> = (0..20 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let key = key("s/big.bin");
    let spec = UploadSpec {
        content_type: Some("application/x-test".into()),
        ..spec("s/big.bin", &body)
    };
    let life = Duration::from_secs(300);
    let up = s
        .signer()
        .sign_upload(&spec, life, Timestamp::now())
        .await
        .unwrap();
    assert_eq!(
        filesync_core::testing::signer::put(&up, body.clone()).await,
        200
    );
    let stored = s._s3.root().join("bkt/s/big.bin");
    assert_eq!(std::fs::read(&stored).unwrap(), body);
    let down = s
        .signer()
        .sign_download(&key, life, Timestamp::now())
        .await
        .unwrap();
    let (status, content_type, got) = filesync_core::testing::signer::get(&down).await;
    assert_eq!(status, 200);
    assert_eq!(content_type.as_deref(), Some("application/x-test"));
    assert!(got == body);
    let r = reqwest::Client::new()
        .get(&down.url)
        .header("range", "bytes=10000000-10000009")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(&r.bytes().await.unwrap()[..], &body[10_000_000..10_000_010]);
}

/// Virtual-hosted style is what R2 and AWS use; it needs DNS for `<bucket>.<host>`, so here
/// only the configuration is checked: a bad endpoint is refused when the bucket is built.
#[test]
fn s3_settings_are_validated() {
    let good = S3Settings {
        endpoint: "https://account.r2.cloudflarestorage.com".parse().unwrap(),
        region: "auto".into(),
        // S3 and R2 bucket names are 3 to 63 characters, checked by `S3Settings::validate`.
        bucket: "bkt".into(),
        access_key_id: "a".into(),
        secret_access_key: Secret::new("s"),
        session_token: None,
        force_path_style: false,
    };
    assert!(Bucket::s3(&good).is_ok());
    // An endpoint that is not a URL cannot be an `S3Settings` at all.
    assert!(filesync_core::server::s3::parse_endpoint("not a url").is_err());
    for bad in [
        S3Settings {
            endpoint: "ftp://host".parse().unwrap(),
            ..good.clone()
        },
        S3Settings {
            bucket: " ".into(),
            ..good.clone()
        },
        S3Settings {
            access_key_id: String::new(),
            ..good.clone()
        },
        S3Settings {
            secret_access_key: Secret::new(""),
            ..good.clone()
        },
    ] {
        let err = Bucket::s3(&bad).unwrap_err().to_string();
        assert!(err.starts_with("bucket: "), "{err}");
    }
}
