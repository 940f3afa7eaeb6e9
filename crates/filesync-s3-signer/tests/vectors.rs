//! Presigned URLs pinned by vectors: AWS's documented example (a fixed clock and the
//! documentation's example credentials) and our own upload binding.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::collections::BTreeMap;
use std::time::Duration;

use filesync_core::server::{ObjectSigner, Secret, UploadSpec};
use filesync_core::types::{ContentHash, ObjectKey, Timestamp};
use filesync_s3_signer::{S3Settings, S3Signer};

use crate::common::config;

mod common;

fn aws_example(path_style: bool) -> S3Signer {
    S3Signer::new(S3Settings {
        access_key_id: "AKIAIOSFODNN7EXAMPLE".into(),
        secret_access_key: Secret::new("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
        force_path_style: path_style,
        ..config("https://s3.amazonaws.com", "examplebucket")
    })
    .unwrap()
}

/// Settings for a local S3 server (region `auto`, bucket `files`, keys `AK`/`SK`).
fn local() -> S3Settings {
    S3Settings {
        region: "auto".into(),
        access_key_id: "AK".into(),
        secret_access_key: Secret::new("SK"),
        ..config("http://127.0.0.1:9000", "files")
    }
}

/// A presigned `GET` of `key` valid for `secs` seconds from [`may_24_2013`].
fn presigned_get(signer: &S3Signer, key: &ObjectKey, secs: u64) -> String {
    signer
        .presign(
            "GET",
            &signer.object_url(key),
            &BTreeMap::new(),
            Duration::from_secs(secs),
            may_24_2013(),
        )
        .unwrap()
}

/// The query parameters of `url`.
fn query(url: &str) -> BTreeMap<String, String> {
    url::Url::parse(url)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect()
}

fn may_24_2013() -> Timestamp {
    Timestamp::parse_iso8601("2013-05-24T00:00:00Z").unwrap()
}

/// S3-3, S3-9: AWS's documented query-string example ("Authenticating Requests: Using Query
/// Parameters", GET `test.txt`, 86400 s) gives AWS's documented signature.
#[test]
fn aws_documented_presigned_get() {
    let signer = aws_example(false);
    let key = ObjectKey::parse("test.txt").unwrap();
    assert_eq!(
        signer.object_url(&key),
        "https://examplebucket.s3.amazonaws.com/test.txt"
    );
    let q = query(&presigned_get(&signer, &key, 86_400));
    assert_eq!(q["X-Amz-Algorithm"], "AWS4-HMAC-SHA256");
    assert_eq!(
        q["X-Amz-Credential"],
        "AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request"
    );
    assert_eq!(q["X-Amz-Date"], "20130524T000000Z");
    assert_eq!(q["X-Amz-Expires"], "86400");
    assert_eq!(q["X-Amz-SignedHeaders"], "host");
    assert_eq!(
        q["X-Amz-Signature"],
        "aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"
    );
}

/// S3-3: path style puts the bucket in the path; key segments are percent-encoded.
#[test]
fn s3_3_path_style_and_key_encoding() {
    let signer = aws_example(true);
    let key = ObjectKey::parse("store 1/ä+b").unwrap();
    assert_eq!(
        signer.object_url(&key),
        "https://s3.amazonaws.com/examplebucket/store%201/%C3%A4%2Bb"
    );
    assert_eq!(
        signer.bucket_url().as_str(),
        "https://s3.amazonaws.com/examplebucket"
    );
}

/// WEAK-1, WEAK-4, WEAK-17: the URL's real lifetime equals `expiresAt`; declared length, type
/// and SHA-256 are signed headers and returned for the client to send.
#[tokio::test]
async fn weak_1_expiry_and_weak_4_bound_headers() {
    let signer = aws_example(true);
    let hash = ContentHash::parse(&"ab".repeat(32)).unwrap();
    let spec = UploadSpec {
        key: ObjectKey::parse(format!("s/{hash}")).unwrap(),
        content_length: Some(42),
        content_type: Some("image/png".into()),
        content_hash: Some(hash),
    };
    let signed = signer
        .sign_upload(&spec, Duration::from_secs(900), may_24_2013())
        .await
        .unwrap();
    let q = query(&signed.url);
    assert_eq!(q["X-Amz-Expires"], "900");
    assert_eq!(signed.expires_at.to_iso8601(), "2013-05-24T00:15:00.000Z");
    assert_eq!(
        q["X-Amz-SignedHeaders"],
        "content-length;content-type;host;x-amz-checksum-sha256"
    );
    assert_eq!(signed.headers["content-length"], "42");
    assert_eq!(signed.headers["content-type"], "image/png");
    assert_eq!(
        signed.headers["x-amz-checksum-sha256"],
        "q6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s="
    );
    // Without declarations a content-addressed key still signs its checksum (issue 12)...
    let bare = UploadSpec {
        content_length: None,
        content_type: None,
        content_hash: None,
        ..spec
    };
    let signed = signer
        .sign_upload(&bare, Duration::from_secs(60), may_24_2013())
        .await
        .unwrap();
    assert!(
        signed
            .url
            .contains("X-Amz-SignedHeaders=host%3Bx-amz-checksum-sha256&"),
        "{}",
        signed.url
    );
    assert_eq!(
        signed.headers["x-amz-checksum-sha256"],
        "q6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s="
    );
    // ...and any other key signs only `host`, as the original.
    let other = UploadSpec {
        key: ObjectKey::parse("s/photo.png").unwrap(),
        ..bare
    };
    let signed = signer
        .sign_upload(&other, Duration::from_secs(60), may_24_2013())
        .await
        .unwrap();
    assert!(signed.url.contains("X-Amz-SignedHeaders=host&"));
    assert!(signed.headers.is_empty());
}

/// S3-2, S3-7: a session token travels as `X-Amz-Security-Token` and is signed.
#[test]
fn s3_7_session_token_in_query() {
    let signer = S3Signer::new(S3Settings {
        session_token: Some(Secret::new("FQoGZXIvYXdzEXAMPLETOKEN")),
        ..local()
    })
    .unwrap();
    let key = ObjectKey::parse("s/x").unwrap();
    let url = presigned_get(&signer, &key, 60);
    let q = query(&url);
    assert_eq!(q["X-Amz-Security-Token"], "FQoGZXIvYXdzEXAMPLETOKEN");
    assert_eq!(q["X-Amz-Credential"], "AK/20130524/auto/s3/aws4_request");
    assert!(url.starts_with("http://127.0.0.1:9000/files/s/x?"));
    assert!(
        !format!("{signer:?}").contains("SK\""),
        "secrets stay out of Debug"
    );
}

/// Bad settings are refused with the flag and variable named.
#[test]
fn config_validation_names_the_setting() {
    let base = local();
    let err = S3Signer::new(S3Settings {
        bucket: "X".into(),
        ..base.clone()
    })
    .unwrap_err();
    assert!(
        err.to_string().starts_with("--s3-bucket (S3_BUCKET)"),
        "{err}"
    );
    let err = S3Signer::new(S3Settings {
        endpoint: "ftp://h".parse().unwrap(),
        ..base.clone()
    })
    .unwrap_err();
    assert!(err.to_string().contains("S3_ENDPOINT"), "{err}");
    let err = S3Signer::new(S3Settings {
        access_key_id: " ".into(),
        ..base
    })
    .unwrap_err();
    assert!(err.to_string().contains("S3_ACCESS_KEY_ID"), "{err}");
}
