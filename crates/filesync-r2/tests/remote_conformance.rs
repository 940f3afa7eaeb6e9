//! The `RemoteStorage` conformance suite through `SignerClient` against a real `filesync-r2`
//! server on loopback HTTP: on a local-directory bucket, and on an S3 bucket (`s3s-fs`, which
//! verifies SigV4). Each rule starts its own server.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use filesync_core::remote::{RemoteStorage, SignerClient};
use filesync_core::testing::remote::RemoteFixture;
use filesync_core::testing::s3s::S3s;
use filesync_r2::{Bucket, router};

use crate::common::{TOKEN, client, grants, s3_settings, serve_proxy};

mod common;

/// A running server and a client of it; the server lives as long as the test's runtime,
/// its bucket as long as this value.
struct Fixture {
    client: SignerClient,
    _dir: tempfile::TempDir,
    _s3: Option<S3s>,
}

impl RemoteFixture for Fixture {
    fn remote(&self) -> &dyn RemoteStorage {
        &self.client
    }
}

/// Serve `bucket` on an ephemeral loopback port and connect a `SignerClient` to it.
async fn serve_bucket(bucket: Bucket) -> SignerClient {
    let (addr, _) = serve_proxy(
        bucket,
        |_| {},
        |proxy| router(proxy, grants(&[TOKEN]), None),
    )
    .await;
    client(addr)
}

async fn local() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let client = serve_bucket(Bucket::local(dir.path()).unwrap()).await;
    Fixture {
        client,
        _dir: dir,
        _s3: None,
    }
}

async fn on_s3() -> Fixture {
    let s3 = S3s::start().await;
    let bucket = Bucket::s3(&s3_settings(&s3)).unwrap();
    Fixture {
        client: serve_bucket(bucket).await,
        _dir: tempfile::tempdir().unwrap(),
        _s3: Some(s3),
    }
}

/// `filesync-r2` on a local-directory bucket (its default).
mod local_bucket {
    use super::*;
    filesync_core::remote_conformance!(
        #[tokio::test]
        local().await
    );
}

/// `filesync-r2` on an S3 bucket.
mod s3_bucket {
    use super::*;
    filesync_core::remote_conformance!(
        #[tokio::test]
        on_s3().await
    );
}
