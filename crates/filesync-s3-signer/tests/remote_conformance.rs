//! The `RemoteStorage` conformance suite through `SignerClient` against the
//! `filesync-s3-signer` router on loopback HTTP, presigning for a real S3 server that
//! verifies SigV4 (`s3s-fs`). Each rule starts its own S3 server and signer.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use filesync_core::remote::{RemoteStorage, SignerClient};
use filesync_core::server::{RouterConfig, TokenGrant};
use filesync_core::testing::remote::RemoteFixture;
use filesync_core::testing::s3s::S3s;

use crate::common::{client, serve_signer, signer};

mod common;

const TOKEN: &str = "remote-conformance-token-0123";

/// A running S3 server, a signer serving it, and a client of the signer; the signer lives as
/// long as the test's runtime, the S3 server as long as this value.
struct Fixture {
    client: SignerClient,
    _s3: S3s,
}

impl RemoteFixture for Fixture {
    fn remote(&self) -> &dyn RemoteStorage {
        &self.client
    }

    /// s3s-fs 0.14 answers 400 BadDigest to a body whose SHA-256 is not the signed one, but
    /// stores it (S3 and R2 do not); `S3Signer` signs the checksum, the storage checks it.
    fn keeps_bodies_refused_for_their_hash(&self) -> bool {
        true
    }
}

async fn start() -> Fixture {
    let s3 = S3s::start().await;
    let config = RouterConfig {
        tokens: vec![TokenGrant::parse(TOKEN).unwrap()],
        ..RouterConfig::default()
    };
    let addr = serve_signer(signer(&s3, S3s::BUCKET), config).await;
    Fixture {
        client: client(addr, TOKEN),
        _s3: s3,
    }
}

filesync_core::remote_conformance!(
    #[tokio::test]
    start().await
);
