//! Issue 12 over real loopback HTTP, on a local-directory bucket: a content-addressed key only
//! ever holds bytes that hash to it; a signed upload URL binds its declared length and
//! checksum; the verifier refuses far, non-canonical and duplicate `exp`/`sig`; keys that
//! collide with another key's directory are 409; a `contentType` with control characters is
//! 400; a type is served only with the bytes it was stored with; staging files are swept at
//! start-up and never served. Each refusal leaves the bucket as it was.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use filesync_core::hash::hash_bytes;
use filesync_core::server::{ObjectSigner, UploadSpec};
use filesync_core::types::Timestamp;
use filesync_r2::{Bucket, R2Proxy, router};

use crate::common::{TOKEN, grants, key, serve_proxy, signed_put, spec};

mod common;

struct Server {
    addr: std::net::SocketAddr,
    proxy: Arc<R2Proxy>,
    dir: tempfile::TempDir,
    http: reqwest::Client,
}

/// The router's longest URL lifetime (its default `max_expiry`).
const LIFE: Duration = Duration::from_secs(900);

async fn start() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let (addr, proxy) = serve_proxy(
        Bucket::local(dir.path()).unwrap(),
        |_| {},
        |proxy| router(proxy, grants(&[TOKEN]), None),
    )
    .await;
    Server {
        addr,
        proxy,
        dir,
        http: reqwest::Client::new(),
    }
}

/// Every file under `dir` with its bytes (staging files and sidecars included).
fn tree(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                pending.push(p);
            } else {
                let bytes = std::fs::read(&p).unwrap();
                out.push((p, bytes));
            }
        }
    }
    out.sort();
    out
}

impl Server {
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn file_url(&self, k: &str) -> String {
        self.url(&format!("/livestore-filesync-files/{k}"))
    }

    /// The bucket's files (objects and sidecars) with their bytes.
    fn bucket(&self) -> Vec<(PathBuf, Vec<u8>)> {
        tree(self.dir.path())
    }

    /// `POST /api/v1/sign/<route>` with `body`: status and JSON.
    async fn sign(&self, route: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
        let r = self
            .http
            .post(self.url(&format!("/api/v1/sign/{route}")))
            .bearer_auth(TOKEN)
            .json(&body)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap())
    }

    /// A signed upload URL and headers for `body` (a sign-upload request).
    async fn upload_url(&self, body: serde_json::Value) -> serde_json::Value {
        let (status, signed) = self.sign("upload", body).await;
        assert_eq!(status, 200, "{signed}");
        signed
    }

    /// `PUT` `bytes` to `url` with `headers`: status and body.
    async fn put(
        &self,
        url: &str,
        headers: &[(&str, &str)],
        bytes: &'static [u8],
    ) -> (u16, String) {
        let mut r = self.http.put(url).body(bytes);
        for (h, v) in headers {
            r = r.header(*h, *v);
        }
        let r = r.send().await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    /// `GET` through a freshly signed download URL: status, content type and body.
    async fn get(&self, k: &str) -> (u16, Option<String>, String) {
        let url = self
            .proxy
            .sign_download(&key(k), LIFE, Timestamp::now())
            .await
            .unwrap()
            .url;
        let r = self.http.get(url).send().await.unwrap();
        let t = r
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned());
        (r.status().as_u16(), t, r.text().await.unwrap())
    }
}

/// The headers a signed upload answer asks for.
fn headers_of(signed: &serde_json::Value) -> Vec<(String, String)> {
    signed["headers"]
        .as_object()
        .map(|h| {
            h.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
                .collect()
        })
        .unwrap_or_default()
}

/// 1a: `NOT hello` under sha256("hello") is 400 BadDigest and stores nothing, whether the
/// client sends the checksum header, no header at all, or a token instead of a signature;
/// once the right bytes are stored, other bytes never replace them; a `contentHash` that
/// contradicts the key is refused when signing.
#[tokio::test]
async fn content_addressed_keys_only_take_their_own_bytes() {
    let s = start().await;
    let k = format!("store/{}", hash_bytes(b"hello"));
    // Signed without a declared hash: the answer still carries the key's checksum.
    let signed = s.upload_url(serde_json::json!({ "key": k })).await;
    let url = signed["url"].as_str().unwrap();
    let headers = headers_of(&signed);
    assert_eq!(
        headers,
        vec![(
            "x-amz-checksum-sha256".to_owned(),
            "LPJNul+wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ=".to_owned()
        )]
    );
    let with_header: Vec<(&str, &str)> = headers
        .iter()
        .map(|(h, v)| (h.as_str(), v.as_str()))
        .collect();
    for sent in [&with_header[..], &[]] {
        let (status, body) = s.put(url, sent, b"NOT hello").await;
        assert_eq!(status, 400, "{body}");
        assert!(body.contains("BadDigest"), "{body}");
        assert!(s.bucket().is_empty(), "{:?}", s.bucket());
    }
    // A header that contradicts the key is refused before any byte is read.
    let (status, body) = s
        .put(
            url,
            &[(
                "x-amz-checksum-sha256",
                "q6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s=",
            )],
            b"hello",
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("BadDigest"), "{body}");
    // A token opens the route but not the check.
    let r = s
        .http
        .put(s.file_url(&k))
        .bearer_auth(TOKEN)
        .body("NOT hello")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(s.bucket().is_empty());
    // The right bytes, then other bytes again: the stored object stays.
    assert_eq!(s.put(url, &[], b"hello").await.0, 200);
    let stored = s.bucket();
    assert_eq!(s.put(url, &[], b"NOT hello").await.0, 400);
    assert_eq!(s.bucket(), stored);
    assert_eq!(s.get(&k).await.2, "hello");
    // Signing: a contentHash other than the key's is 400, matching is fine.
    let (status, body) = s
        .sign(
            "upload",
            serde_json::json!({ "key": k, "contentHash": hash_bytes(b"other").to_string() }),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        body["error"],
        "invalid contentHash: does not match the content-addressed key"
    );
    let (status, _) = s
        .sign(
            "upload",
            serde_json::json!({ "key": k, "contentHash": hash_bytes(b"hello").to_string() }),
        )
        .await;
    assert_eq!(status, 200);
}

/// 1a: a URL signed with a length and a hash binds them: other bytes of the same length, a
/// longer or shorter body, or the URL with `len` or `sha256` removed are refused, without the
/// client sending any header; the declared bytes go through.
#[tokio::test]
async fn signed_length_and_checksum_bind_the_upload() {
    let s = start().await;
    let signed = s
        .upload_url(serde_json::json!({
            "key": "s/plain.txt",
            "contentLength": 5,
            "contentHash": hash_bytes(b"hello").to_string(),
        }))
        .await;
    let url = signed["url"].as_str().unwrap();
    assert!(
        url.contains(&format!("&len=5&sha256={}&sig=", hash_bytes(b"hello"))),
        "{url}"
    );
    let (status, body) = s.put(url, &[], b"HELLO").await;
    assert_eq!((status, body.contains("BadDigest")), (400, true), "{body}");
    assert_eq!(s.put(url, &[], b"hello!").await.0, 400);
    assert_eq!(s.put(url, &[], b"hell").await.0, 400);
    let no_len = url.replace("&len=5", "");
    let no_sum = url.replace(&format!("&sha256={}", hash_bytes(b"hello")), "");
    for dropped in [&no_len, &no_sum] {
        let (status, body) = s.put(dropped, &[], b"HELLO").await;
        assert_eq!(status, 403, "{dropped}: {body}");
    }
    assert!(s.bucket().is_empty(), "{:?}", s.bucket());
    assert_eq!(s.put(url, &[], b"hello").await.0, 200);
    assert_eq!(s.get("s/plain.txt").await.2, "hello");
}

/// Item 2: `exp` further ahead than the server signs is 403; non-canonical or repeated
/// `exp`/`sig` are 400; none of them reads or writes anything.
#[tokio::test]
async fn far_non_canonical_and_duplicate_signatures_are_refused() {
    let s = start().await;
    let signed = s
        .proxy
        .sign_upload(&spec("s/a", b"original"), LIFE, Timestamp::now())
        .await
        .unwrap();
    assert_eq!(
        signed_put(&s.http, &signed, "original")
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let before = s.bucket();
    let down = s
        .proxy
        .sign_download(&key("s/a"), LIFE, Timestamp::now())
        .await
        .unwrap()
        .url;
    let (base, query) = down.split_once('?').unwrap();
    let (exp, sig) = query.split_once('&').unwrap();
    let (exp, sig) = (
        exp.strip_prefix("exp=").unwrap(),
        sig.strip_prefix("sig=").unwrap(),
    );
    for bad in [
        format!("exp=0{exp}&sig={sig}"),
        format!("exp=%2B{exp}&sig={sig}"),
        format!("exp=+{exp}&sig={sig}"),
        format!("exp=%20{exp}&sig={sig}"),
        format!("exp={exp}&exp={exp}&sig={sig}"),
        format!("exp={exp}&sig={sig}&sig={sig}"),
        format!("exp={exp}&sig={sig}="),
    ] {
        let r = s.http.get(format!("{base}?{bad}")).send().await.unwrap();
        assert_eq!(r.status(), 400, "{bad}");
        assert!(r.text().await.unwrap().contains("Invalid signed URL"));
    }
    // Signed properly, but for longer than this server hands out.
    for method in ["GET", "PUT"] {
        let far = s
            .proxy
            .sign_download(&key("s/a"), LIFE * 4, Timestamp::now())
            .await
            .unwrap()
            .url;
        let r = if method == "GET" {
            s.http.get(&far).send().await.unwrap()
        } else {
            let up = s
                .proxy
                .sign_upload(&spec("s/a", b"replaced"), LIFE * 4, Timestamp::now())
                .await
                .unwrap();
            signed_put(&s.http, &up, "replaced").send().await.unwrap()
        };
        assert_eq!(r.status(), 403, "{method}");
        assert!(r.text().await.unwrap().contains("further ahead"));
    }
    // The original URL still works, and nothing changed.
    assert_eq!(
        s.http
            .get(&down)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        "original"
    );
    assert_eq!(s.bucket(), before);
}

/// Item 2: a key that is another key's directory on the local bucket (or runs through another
/// key's object) is 409 to store, 404 to read and 204 to delete; the objects stay.
#[tokio::test]
async fn keys_colliding_with_directories_are_409() {
    let s = start().await;
    let put = |k: &'static str, body: &'static [u8]| {
        let s = &s;
        async move {
            let signed = s
                .proxy
                .sign_upload(&spec(k, body), LIFE, Timestamp::now())
                .await
                .unwrap();
            let r = signed_put(&s.http, &signed, body).send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    assert_eq!(put("s/a/b", b"deep").await.0, 200);
    assert_eq!(put("t/a", b"flat").await.0, 200);
    let before = s.bucket();
    for (k, body) in [("s/a", b"over a dir" as &[u8]), ("t/a/b", b"under a file")] {
        let signed = s
            .proxy
            .sign_upload(&spec(k, body), LIFE, Timestamp::now())
            .await
            .unwrap();
        let r = signed_put(&s.http, &signed, body.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 409, "{k}");
        assert!(r.text().await.unwrap().contains("Conflict"));
        assert_eq!(s.get(k).await.0, 404, "{k}");
        let r = s
            .http
            .delete(s.file_url(k))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204, "{k}");
    }
    assert_eq!(s.bucket(), before);
    assert_eq!(s.get("s/a/b").await.2, "deep");
    assert_eq!(s.get("t/a").await.2, "flat");
}

/// Item 2: a `contentType` with control characters (or outside ASCII) is 400 when signing.
#[tokio::test]
async fn content_types_with_control_characters_are_400() {
    let s = start().await;
    for bad in ["text/plain\r\nx-evil: 1", "text/plain\u{7}", "caf\u{e9}/x"] {
        let (status, body) = s
            .sign(
                "upload",
                serde_json::json!({ "key": "s/t.txt", "contentType": bad }),
            )
            .await;
        assert_eq!(status, 400, "{bad:?}");
        assert!(
            body["error"]
                .as_str()
                .unwrap()
                .starts_with("invalid contentType: "),
            "{body}"
        );
    }
    assert!(s.bucket().is_empty());
}

/// 1d: a type is served only with the bytes it was written for. Writer A's sidecar landing
/// after writer B's bytes (what an interleaving or a crash between the two steps leaves) is
/// not paired with B's bytes; concurrent writers of one key each keep type and bytes
/// together.
#[tokio::test]
async fn content_types_stay_with_their_bytes() {
    let s = start().await;
    let upload = |body: &'static [u8], t: &'static str| {
        let s = &s;
        async move {
            let signed = s
                .proxy
                .sign_upload(
                    &UploadSpec {
                        content_type: Some(t.into()),
                        ..spec("s/k", body)
                    },
                    LIFE,
                    Timestamp::now(),
                )
                .await
                .unwrap();
            signed_put(&s.http, &signed, body)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(upload(b"from a", "text/x-a").await, 200);
    assert_eq!(s.get("s/k").await.1.as_deref(), Some("text/x-a"));
    let sidecar = s.dir.path().join("meta/s/k");
    let a_type = std::fs::read(&sidecar).unwrap();
    assert_eq!(upload(b"from b", "text/x-b").await, 200);
    assert_eq!(s.get("s/k").await.1.as_deref(), Some("text/x-b"));
    // A's type written after B's bytes were published:
    std::fs::write(&sidecar, &a_type).unwrap();
    let (status, t, body) = s.get("s/k").await;
    assert_eq!((status, body.as_str()), (200, "from b"));
    assert_eq!(t.as_deref(), Some("application/octet-stream"));

    // Many writers at once: whichever bytes win, their own type is served with them.
    const BODIES: [&[u8]; 8] = [b"0", b"1", b"2", b"3", b"4", b"5", b"6", b"7"];
    const TYPES: [&str; 8] = [
        "text/x-0", "text/x-1", "text/x-2", "text/x-3", "text/x-4", "text/x-5", "text/x-6",
        "text/x-7",
    ];
    let all = futures::future::join_all((0..8).map(|i| upload(BODIES[i], TYPES[i]))).await;
    assert!(all.iter().all(|st| *st == 200), "{all:?}");
    let (_, t, body) = s.get("s/k").await;
    let i: usize = body.parse().unwrap();
    assert_eq!(t.as_deref(), Some(TYPES[i]));
}

/// 1d: what an upload interrupted by a crash leaves (object_store's `<name>#<n>` staging
/// files, beside objects and sidecars) is never listed or served, and opening the bucket
/// again sweeps it; the objects stay.
#[tokio::test]
async fn staging_files_are_swept_at_start_up_and_never_served() {
    let s = start().await;
    let signed = s
        .proxy
        .sign_upload(&spec("s/done", b"done"), LIFE, Timestamp::now())
        .await
        .unwrap();
    assert_eq!(
        signed_put(&s.http, &signed, "done")
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let completed = s.bucket();
    let leftovers = [
        "objects/s/done#1",
        "objects/s/new#2",
        "objects/deep/dir/x#17",
        "meta/s/new#1",
    ];
    for l in leftovers {
        let p = s.dir.path().join(l);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, b"half an upload").unwrap();
    }
    // Not objects: not listed, not served.
    let listed: Vec<String> =
        futures::TryStreamExt::try_collect::<Vec<_>>(s.proxy.bucket().store().list(None))
            .await
            .unwrap()
            .into_iter()
            .map(|m| m.location.to_string())
            .collect();
    assert_eq!(listed, ["s/done"]);
    for k in ["s/new", "s/done#1", "deep/dir/x"] {
        assert_eq!(s.get(k).await.0, 404, "{k}");
    }
    assert_eq!(s.get("s/done").await.2, "done");
    // Start-up (the bucket opened again on the same directory) sweeps them.
    let _reopened = Bucket::local(s.dir.path()).unwrap();
    for l in leftovers {
        assert!(!s.dir.path().join(l).exists(), "{l}");
    }
    let now: Vec<_> = s
        .bucket()
        .into_iter()
        .filter(|(p, _)| !p.is_dir())
        .collect();
    assert_eq!(now, completed);
}
