//! Shared by the `filesync-s3-signer` tests: the signer's settings, in one place.
#![allow(dead_code)] // each test binary uses its own part

use filesync_core::server::Secret;
use filesync_core::testing::s3s::S3s;
use filesync_s3_signer::S3Settings;

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
