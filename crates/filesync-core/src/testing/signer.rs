//! The [`ObjectSigner`] conformance suite (features `testing` + `server`, native): one rule per
//! function, each performing the signed requests itself over real HTTP, the way a client
//! does. Run it against every signer with [`signer_conformance!`](crate::signer_conformance):
//! `S3Signer` against a real S3 server, `R2Proxy` against itself.
//!
//! Every rule uses its own random keys under `prefix`, so rules can share a bucket.

use std::time::Duration;

use bytes::Bytes;

use crate::hash::hash_bytes;
use crate::server::{ObjectSigner, SignedRequest, UploadSpec};
use crate::types::{ObjectKey, Timestamp};

/// The lifetime the rules sign with.
pub const EXPIRY: Duration = Duration::from_secs(300);

fn key(prefix: &str, name: &str) -> ObjectKey {
    let id = crate::rt::random_hex(16);
    ObjectKey::parse(format!("{prefix}/{name}-{id}")).expect("a valid test key")
}

fn spec(key: &ObjectKey, body: &[u8], content_type: Option<&str>) -> UploadSpec {
    UploadSpec {
        key: key.clone(),
        content_length: Some(body.len() as u64),
        content_type: content_type.map(str::to_owned),
        content_hash: Some(hash_bytes(body)),
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("an HTTP client")
}

/// Perform a signed upload as a client does: `signed.method`, exactly `signed.headers`.
pub async fn put(signed: &SignedRequest, body: impl Into<Bytes>) -> reqwest::StatusCode {
    let method = match signed.method {
        crate::contract::UploadMethod::Put => reqwest::Method::PUT,
        crate::contract::UploadMethod::Post => reqwest::Method::POST,
    };
    let mut req = client().request(method, &signed.url).body(body.into());
    // Exactly the signed headers, `Content-Length` included (as `SignerClient` sends it: an
    // HTTP client may leave it out of an empty body).
    for (k, v) in &signed.headers {
        req = req.header(k, v);
    }
    req.send().await.expect("the upload request").status()
}

/// Perform a signed download: its status, `Content-Type` and body.
pub async fn get(signed: &SignedRequest) -> (reqwest::StatusCode, Option<String>, Bytes) {
    let mut req = client().get(&signed.url);
    for (k, v) in &signed.headers {
        req = req.header(k, v);
    }
    let res = req.send().await.expect("the download request");
    let status = res.status();
    let content_type = res
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    (
        status,
        content_type,
        res.bytes().await.expect("the download body"),
    )
}

async fn upload<S: ObjectSigner + ?Sized>(
    signer: &S,
    key: &ObjectKey,
    body: &'static [u8],
    content_type: Option<&str>,
) {
    let signed = signer
        .sign_upload(&spec(key, body, content_type), EXPIRY, Timestamp::now())
        .await
        .expect("sign upload");
    let status = put(&signed, body).await;
    assert!(status.is_success(), "upload of {key} answered {status}");
}

async fn download<S: ObjectSigner + ?Sized>(
    signer: &S,
    key: &ObjectKey,
) -> (reqwest::StatusCode, Option<String>, Bytes) {
    let signed = signer
        .sign_download(key, EXPIRY, Timestamp::now())
        .await
        .expect("sign download");
    get(&signed).await
}

/// Bytes uploaded through a signed URL come back byte-identical through a signed download,
/// with the declared `Content-Type`.
pub async fn upload_then_download_round_trips<S: ObjectSigner + ?Sized>(signer: &S, prefix: &str) {
    let body: &'static [u8] = b"\x00\x01binary \xff content\r\n";
    let k = key(prefix, "round-trip");
    upload(signer, &k, body, Some("image/png")).await;
    let (status, content_type, got) = download(signer, &k).await;
    assert_eq!(status, 200);
    assert_eq!(&got[..], body);
    assert_eq!(content_type.as_deref(), Some("image/png"));
}

/// An empty object round-trips too.
pub async fn empty_object_round_trips<S: ObjectSigner + ?Sized>(signer: &S, prefix: &str) {
    let k = key(prefix, "empty");
    upload(signer, &k, b"", None).await;
    let (status, _, got) = download(signer, &k).await;
    assert_eq!(status, 200);
    assert!(got.is_empty());
}

/// A signed download of a missing object answers 404.
pub async fn download_of_missing_object_is_404<S: ObjectSigner + ?Sized>(signer: &S, prefix: &str) {
    let (status, _, _) = download(signer, &key(prefix, "missing")).await;
    assert_eq!(status, 404);
}

/// `delete` removes the object; deleting it again (missing) is `Ok`.
pub async fn delete_removes_and_missing_is_ok<S: ObjectSigner + ?Sized>(signer: &S, prefix: &str) {
    let k = key(prefix, "delete");
    upload(signer, &k, b"to be deleted", None).await;
    signer.delete(&k).await.expect("delete");
    assert_eq!(download(signer, &k).await.0, 404);
    signer.delete(&k).await.expect("deleting a missing object");
}

/// `expires_at` is the URL's real lifetime: `now + expires_in`, to the second.
pub async fn expires_at_is_now_plus_lifetime<S: ObjectSigner + ?Sized>(signer: &S, prefix: &str) {
    let k = key(prefix, "expiry");
    let now = Timestamp::now();
    for signed in [
        signer
            .sign_upload(&spec(&k, b"x", None), EXPIRY, now)
            .await
            .expect("sign upload"),
        signer
            .sign_download(&k, EXPIRY, now)
            .await
            .expect("sign download"),
    ] {
        let lifetime = signed.expires_at.as_millis() - now.as_millis();
        let want = EXPIRY.as_millis() as i64;
        assert!(
            (want - 1000..=want + 1000).contains(&lifetime),
            "expires_at is {lifetime} ms after now, want {want}"
        );
    }
}

/// A URL signed in the past whose lifetime is over is refused (403), for both methods, and
/// the refused upload stores nothing.
pub async fn expired_urls_are_refused<S: ObjectSigner + ?Sized>(signer: &S, prefix: &str) {
    let k = key(prefix, "expired");
    let past = Timestamp::from_millis(Timestamp::now().as_millis() - 3_600_000)
        .expect("a valid timestamp");
    let life = Duration::from_secs(60);
    let up = signer
        .sign_upload(&spec(&k, b"late", None), life, past)
        .await
        .expect("sign upload");
    assert_eq!(put(&up, &b"late"[..]).await, 403);
    let down = signer
        .sign_download(&k, life, past)
        .await
        .expect("sign download");
    assert_eq!(get(&down).await.0, 403);
    assert_eq!(download(signer, &k).await.0, 404, "a refused upload stored");
}

/// A URL signed for one key does not work for another: the path is part of the signature.
pub async fn url_is_bound_to_its_key<S: ObjectSigner + ?Sized>(signer: &S, prefix: &str) {
    let a = key(prefix, "bound-a");
    let b = key(prefix, "bound-b");
    upload(signer, &b, b"the other object", None).await;
    let mut down = signer
        .sign_download(&a, EXPIRY, Timestamp::now())
        .await
        .expect("sign download");
    let (a_name, b_name) = (last(&a), last(&b));
    down.url = down.url.replace(a_name, b_name);
    let status = get(&down).await.0;
    assert!(
        status == 403 || status == 401,
        "a URL for {a} read {b}: {status}"
    );
    let mut up = signer
        .sign_upload(&spec(&a, b"overwrite", None), EXPIRY, Timestamp::now())
        .await
        .expect("sign upload");
    up.url = up.url.replace(a_name, b_name);
    up.headers.remove("x-amz-checksum-sha256");
    let status = put(&up, &b"overwrite"[..]).await;
    assert!(
        status == 403 || status == 401,
        "a URL for {a} wrote {b}: {status}"
    );
    assert_eq!(&download(signer, &b).await.2[..], b"the other object");
}

fn last(key: &ObjectKey) -> &str {
    key.as_str().rsplit('/').next().unwrap_or(key.as_str())
}

/// A download URL cannot be used to upload: the method is part of the signature.
pub async fn url_is_bound_to_its_method<S: ObjectSigner + ?Sized>(signer: &S, prefix: &str) {
    let k = key(prefix, "method");
    upload(signer, &k, b"original", None).await;
    let down = signer
        .sign_download(&k, EXPIRY, Timestamp::now())
        .await
        .expect("sign download");
    let status = client()
        .put(&down.url)
        .body(&b"replaced"[..])
        .send()
        .await
        .expect("the request")
        .status();
    assert!(
        status == 403 || status == 401,
        "a download URL uploaded: {status}"
    );
    assert_eq!(&download(signer, &k).await.2[..], b"original");
}

/// An upload whose bytes do not match the declared SHA-256 is refused (4xx).
pub async fn upload_with_wrong_checksum_is_refused<S: ObjectSigner + ?Sized>(
    signer: &S,
    prefix: &str,
) {
    let k = key(prefix, "checksum");
    let signed = signer
        .sign_upload(&spec(&k, b"declared", None), EXPIRY, Timestamp::now())
        .await
        .expect("sign upload");
    let status = put(&signed, &b"imposter"[..]).await;
    assert!(
        status.is_client_error(),
        "a wrong body was accepted: {status}"
    );
}

/// The health probe reports a reachable bucket.
pub async fn health_reports_ok<S: ObjectSigner + ?Sized>(signer: &S, _prefix: &str) {
    assert!(signer.health().await.ok);
}

/// Run every [`ObjectSigner`] rule as its own test. `$make` is an expression (it may
/// `.await`) giving a value with a `signer()` method returning `&impl ObjectSigner` (a
/// fixture that keeps its servers alive); `$prefix` is the key prefix the rules write under.
#[macro_export]
macro_rules! signer_conformance {
    (#[$attr:meta] $make:expr, $prefix:expr) => {
        $crate::signer_conformance!(@each #[$attr] $make, $prefix;
            upload_then_download_round_trips,
            empty_object_round_trips,
            download_of_missing_object_is_404,
            delete_removes_and_missing_is_ok,
            expires_at_is_now_plus_lifetime,
            expired_urls_are_refused,
            url_is_bound_to_its_key,
            url_is_bound_to_its_method,
            upload_with_wrong_checksum_is_refused,
            health_reports_ok
        );
    };
    (@each #[$attr:meta] $make:expr, $prefix:expr; $($rule:ident),* $(,)?) => {
        $(
            #[$attr]
            async fn $rule() {
                let fixture = $make;
                $crate::testing::signer::$rule(fixture.signer(), $prefix).await;
            }
        )*
    };
}
