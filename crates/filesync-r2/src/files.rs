//! The file routes: `PUT`, `GET`, `HEAD`, `DELETE` and `OPTIONS` on
//! `{filesBasePath}/<key>` (R2-6..9), streaming both ways.
//!
//! Authorisation (R2-8): a valid signature for the method (`GET` covers `HEAD`), else a
//! configured token (header) whose prefixes allow the key. A signature that is present but
//! wrong, expired or for another method is 403; no credentials at all is 401. Nothing is read
//! or written before that.
//!
//! Fixed here: uploads stream into the bucket with bounded memory (WEAK-15), up to a size limit,
//! are checked against `Content-Length`, the length and SHA-256 the URL signed, a declared
//! `x-amz-checksum-sha256` and, for a content-addressed key, the key itself (issue 12), and
//! leave nothing behind when they fail or are cut off (WEAK-4); downloads answer single `Range`s, `HEAD`,
//! `If-None-Match` (304) and carry a quoted `ETag` (WEAK-18).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use bytes::Bytes;
use futures::StreamExt;
use object_store::buffered::BufWriter;
use object_store::{GetOptions, GetRange, GetResultPayload};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use filesync_core::contract::{ErrorBody, content_address};
use filesync_core::server::{Tokens, key_allowed};
use filesync_core::types::{ObjectKey, Timestamp};

use crate::signature::{self, Bound, Refusal, SignedQuery};
use crate::{Bucket, R2Proxy};

/// `Cache-Control` on every file (R2-9): keys are content addresses, so bytes never change.
const CACHE_CONTROL: &str = "public, max-age=31536000, immutable";
/// Parts in flight at once during an upload.
const PART_CONCURRENCY: usize = 2;
/// Chunks queued for the hashing thread.
const HASH_QUEUE: usize = 64;
/// Read size when streaming a local file.
const READ_CHUNK: usize = 256 * 1024;

pub(crate) struct FilesState {
    pub(crate) proxy: Arc<R2Proxy>,
    pub(crate) tokens: Tokens,
    /// The longest URL lifetime this server signs: a later `exp` is refused.
    pub(crate) max_ttl_s: i64,
}

/// A refusal: a status and its message (small, unlike a `Response`).
type Reject = (StatusCode, &'static str);

fn error(status: StatusCode, message: &str) -> Response {
    let body = serde_json::to_vec(&ErrorBody {
        error: message.to_owned(),
    })
    .unwrap_or_default();
    let mut r = (status, body).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

pub(crate) async fn handle(
    State(state): State<Arc<FilesState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    // CORS and `Access-Control-Expose-Headers` are layers (see `router_with_static`).
    route(&state, &method, &uri, &headers, body).await
}

async fn route(
    state: &FilesState,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: Body,
) -> Response {
    if method == Method::OPTIONS {
        return StatusCode::NO_CONTENT.into_response();
    }
    let base = state.proxy.config.files_base_path.trim_end_matches('/');
    let rest = uri.path().strip_prefix(base).unwrap_or_default();
    let key = match signature::decode_key(rest) {
        None => return error(StatusCode::NOT_FOUND, "Not found"),
        Some(Err(_)) => return error(StatusCode::BAD_REQUEST, "Invalid key"),
        Some(Ok(key)) => key,
    };
    let signed_method = match *method {
        Method::PUT => "PUT",
        Method::GET | Method::HEAD => "GET",
        Method::DELETE => "DELETE",
        _ => return error(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed"),
    };
    let bound = match authorize(state, signed_method, &key, uri, headers) {
        Ok(bound) => bound,
        Err((status, message)) => return error(status, message),
    };
    let bucket = &state.proxy.bucket;
    match *method {
        Method::PUT => put(state, &key, bound, headers, body).await,
        Method::DELETE => match bucket.delete(&key).await {
            Ok(()) => StatusCode::NO_CONTENT.into_response(),
            Err(e) => internal("delete failed", &e),
        },
        _ => get(bucket, &key, headers, *method == Method::HEAD).await,
    }
}

/// What the request may do: `Ok` with what a signed URL binds (nothing for a token).
fn authorize(
    state: &FilesState,
    method: &str,
    key: &ObjectKey,
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<Bound, Reject> {
    let now_s = Timestamp::now().as_millis().div_euclid(1000);
    let refusal = match SignedQuery::parse(uri.query().unwrap_or_default()).and_then(|query| {
        signature::verify(
            &state.proxy.config.signing_secret,
            method,
            key,
            &query,
            now_s,
            state.max_ttl_s,
        )
    }) {
        Ok(bound) => return Ok(bound),
        Err(r) => r,
    };
    // R2-8.2: a token in the headers (only when tokens are configured: no tokens does not
    // open the file routes; every file URL is signed).
    if !state.tokens.is_empty()
        && let Some(prefixes) = state.tokens.authorize(headers)
    {
        return if key_allowed(key, &prefixes) {
            Ok(Bound::default())
        } else {
            Err((StatusCode::FORBIDDEN, "Forbidden"))
        };
    }
    Err(match refusal {
        Refusal::Missing => (StatusCode::UNAUTHORIZED, "Unauthorized"),
        Refusal::Malformed => (
            StatusCode::BAD_REQUEST,
            "Invalid signed URL: exp, sig, len and sha256 must each appear once, in canonical form",
        ),
        Refusal::Expired => (StatusCode::FORBIDDEN, "URL expired"),
        Refusal::TooFarAhead => (
            StatusCode::FORBIDDEN,
            "URL expiry is further ahead than this server signs",
        ),
        Refusal::BadSignature => (StatusCode::FORBIDDEN, "Invalid signature"),
    })
}

fn internal(what: &str, e: &dyn std::fmt::Display) -> Response {
    tracing::error!(error = %e, "{what}");
    error(StatusCode::INTERNAL_SERVER_ERROR, "Storage error")
}

fn header_str(headers: &HeaderMap, name: impl header::AsHeaderName) -> Option<&str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

/// The SHA-256 a `PUT` must have and what says so: the content-addressed key, the signed
/// `sha256`, the `x-amz-checksum-sha256` header. `Err` when two of them disagree (nothing is
/// read then).
fn wanted_sum(
    key: &ObjectKey,
    bound: &Bound,
    headers: &HeaderMap,
) -> Result<Option<[u8; 32]>, Reject> {
    let declared: Option<[u8; 32]> = match header_str(headers, "x-amz-checksum-sha256") {
        None => None,
        Some(b64) => Some(
            base64::engine::general_purpose::STANDARD
                .decode(b64)
                .ok()
                .and_then(|v| <[u8; 32]>::try_from(v).ok())
                .ok_or((StatusCode::BAD_REQUEST, "Invalid x-amz-checksum-sha256"))?,
        ),
    };
    let sources = [
        content_address(key).map(|h| *h.as_bytes()),
        bound.sha256.map(|h| *h.as_bytes()),
        declared,
    ];
    let mut wanted = None;
    for sum in sources.into_iter().flatten() {
        if wanted.is_some_and(|w| w != sum) {
            return Err((
                StatusCode::BAD_REQUEST,
                "BadDigest: the declared checksum contradicts the key or the signed URL",
            ));
        }
        wanted = Some(sum);
    }
    Ok(wanted)
}

async fn put(
    state: &FilesState,
    key: &ObjectKey,
    bound: Bound,
    headers: &HeaderMap,
    body: Body,
) -> Response {
    let mut limit = state.proxy.config.max_object_size;
    let declared_len = match header_str(headers, header::CONTENT_LENGTH).map(str::parse::<u64>) {
        None => None,
        Some(Ok(n)) if n > limit => return error(StatusCode::PAYLOAD_TOO_LARGE, "Too large"),
        Some(Ok(n)) => Some(n),
        Some(Err(_)) => return error(StatusCode::BAD_REQUEST, "Invalid Content-Length"),
    };
    if let (Some(signed), Some(declared)) = (bound.length, declared_len)
        && signed != declared
    {
        return error(
            StatusCode::BAD_REQUEST,
            "Content-Length does not match the signed length",
        );
    }
    // A body longer than the signed length is cut off as soon as it is.
    limit = limit.min(bound.length.unwrap_or(u64::MAX));
    let wanted = match wanted_sum(key, &bound, headers) {
        Ok(w) => w,
        Err((status, message)) => return error(status, message),
    };
    let content_type = header_str(headers, header::CONTENT_TYPE)
        .filter(|t| !t.is_empty())
        .unwrap_or("application/octet-stream")
        .to_owned();
    let bucket = &state.proxy.bucket;
    if bucket.collides(key) {
        return error(StatusCode::CONFLICT, COLLISION);
    }
    let mut writer = BufWriter::with_capacity(
        Arc::clone(bucket.store()),
        Bucket::path(key),
        bucket.part_size(),
    )
    .with_max_concurrency(PART_CONCURRENCY)
    .with_attributes(bucket.attributes(&content_type));
    // Dropping the writer (a cut connection drops this future) abandons the upload: a local
    // staging file is removed (and swept at the next start if the process died), an S3
    // multipart upload is never completed.
    // Hashing costs CPU on every byte: done only when there is a sum to check.
    let outcome = stream_into(&mut writer, body, limit, wanted.is_some()).await;
    let (len, sum) = match outcome {
        Ok(v) => v,
        Err((status, message)) => {
            let _ = writer.abort().await;
            if status == StatusCode::INTERNAL_SERVER_ERROR && bucket.collides(key) {
                return error(StatusCode::CONFLICT, COLLISION);
            }
            return error(status, message);
        }
    };
    let refusal = if declared_len.is_some_and(|n| n != len) {
        Some("Content-Length does not match the body")
    } else if bound.length.is_some_and(|n| n != len) {
        Some("The body does not match the signed length")
    } else if wanted.is_some() && wanted != sum {
        Some(if content_address(key).is_some() {
            "BadDigest: the body does not hash to its content-addressed key"
        } else {
            "BadDigest: x-amz-checksum-sha256 does not match the body"
        })
    } else {
        None
    };
    if let Some(message) = refusal {
        let _ = writer.abort().await;
        return error(StatusCode::BAD_REQUEST, message);
    }
    match bucket.complete(key, writer, &content_type).await {
        Ok(etag) => {
            let mut response = StatusCode::OK.into_response();
            if let Some(etag) = quoted_etag(etag.as_deref()) {
                response.headers_mut().insert(header::ETAG, etag);
            }
            response
        }
        Err(_) if bucket.collides(key) => error(StatusCode::CONFLICT, COLLISION),
        Err(e) => internal("completing the upload failed", &e),
    }
}

/// The answer to a key that a local bucket cannot hold beside another (`a` and `a/b`).
const COLLISION: &str = "Conflict: the key collides with another key's directory";

/// Stream `body` into `writer`: the length of what arrived and, when `hash`, its SHA-256.
/// The hash runs on a blocking thread fed through a bounded channel (the chunks are shared,
/// not copied), so hashing overlaps receiving and writing.
async fn stream_into(
    writer: &mut BufWriter,
    body: Body,
    limit: u64,
    hash: bool,
) -> Result<(u64, Option<[u8; 32]>), Reject> {
    let (tx, hashing) = if hash {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(HASH_QUEUE);
        let hashing = tokio::task::spawn_blocking(move || {
            let mut hasher = Sha256::new();
            while let Some(chunk) = rx.blocking_recv() {
                hasher.update(&chunk);
            }
            <[u8; 32]>::from(hasher.finalize())
        });
        (Some(tx), Some(hashing))
    } else {
        (None, None)
    };
    let mut stream = body.into_data_stream();
    let mut len: u64 = 0;
    while let Some(chunk) = stream.next().await {
        let chunk: Bytes = chunk.map_err(|e| {
            tracing::info!(error = %e, "upload body ended early");
            (StatusCode::BAD_REQUEST, "The upload body was cut off")
        })?;
        len += chunk.len() as u64;
        if len > limit {
            return Err((StatusCode::PAYLOAD_TOO_LARGE, "Too large"));
        }
        if let Some(tx) = &tx
            && tx.send(chunk.clone()).await.is_err()
        {
            return Err((StatusCode::INTERNAL_SERVER_ERROR, "Hashing failed"));
        }
        writer.put(chunk).await.map_err(|e| {
            tracing::error!(error = %e, "writing the upload failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "Storage error")
        })?;
    }
    drop(tx);
    let sum = match hashing {
        Some(hashing) => Some(
            hashing
                .await
                .map_err(|_| (StatusCode::INTERNAL_SERVER_ERROR, "Hashing failed"))?,
        ),
        None => None,
    };
    Ok((len, sum))
}

/// `"etag"`: object_store's etags are unquoted (WEAK-18).
fn quoted_etag(etag: Option<&str>) -> Option<HeaderValue> {
    let etag = etag?.trim_matches('"');
    HeaderValue::from_str(&format!("\"{etag}\"")).ok()
}

/// Whether an `If-None-Match` value matches `etag` (weak comparison, `*` matches anything).
fn none_match(header: &str, etag: &HeaderValue) -> bool {
    let etag = etag.to_str().unwrap_or_default();
    header
        .split(',')
        .map(str::trim)
        .any(|t| t == "*" || t.trim_start_matches("W/") == etag)
}

/// A single `bytes=` range resolved against `size` (parsed by `http-range-header`, as
/// tower-http's `ServeDir` does): `Ok(None)` for none, or one we ignore as RFC 9110 allows
/// (several ranges, another unit); `Err(())` when malformed or unsatisfiable. A suffix longer
/// than the object is the whole object (RFC 9110 §14.1.2; the crate refuses it).
fn parse_range(header: Option<&str>, size: u64) -> Result<Option<(u64, u64)>, ()> {
    use http_range_header::{RangeUnsatisfiableError, StartPosition};
    let Some(value) = header else {
        return Ok(None);
    };
    let parsed = match http_range_header::parse_range_header(value) {
        Ok(parsed) => parsed,
        Err(RangeUnsatisfiableError::DoesNotStartWithToken) => return Ok(None),
        Err(_) => return Err(()),
    };
    let [range] = parsed.ranges.as_slice() else {
        return Ok(None);
    };
    if size == 0 {
        return Err(());
    }
    if let StartPosition::FromLast(n) = range.start
        && n > size
    {
        return Ok(Some((0, size - 1)));
    }
    let valid = parsed.validate(size).map_err(|_| ())?;
    match valid.as_slice() {
        [r] if *r.start() < size => Ok(Some((*r.start(), *r.end()))),
        _ => Err(()),
    }
}

async fn get(bucket: &Bucket, key: &ObjectKey, headers: &HeaderMap, head_only: bool) -> Response {
    let path = Bucket::path(key);
    let head = GetOptions {
        head: true,
        ..GetOptions::default()
    };
    let info = match bucket.store().get_opts(&path, head).await {
        Ok(info) => info,
        Err(object_store::Error::NotFound { .. }) => {
            return error(StatusCode::NOT_FOUND, "File not found");
        }
        // `a/b` when `a` is an object: there is no such object.
        Err(_) if bucket.collides(key) => return error(StatusCode::NOT_FOUND, "File not found"),
        Err(e) => return internal("reading the object failed", &e),
    };
    let size = info.meta.size;
    let etag = quoted_etag(info.meta.e_tag.as_deref());
    let mut response_headers = HeaderMap::new();
    response_headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(CACHE_CONTROL),
    );
    response_headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Some(etag) = &etag {
        response_headers.insert(header::ETAG, etag.clone());
        if let Some(inm) = header_str(headers, header::IF_NONE_MATCH)
            && none_match(inm, etag)
        {
            return (StatusCode::NOT_MODIFIED, response_headers).into_response();
        }
    }
    let content_type = bucket
        .content_type(key, &info.attributes, info.meta.e_tag.as_deref())
        .await;
    if let Ok(v) = HeaderValue::from_str(&content_type) {
        response_headers.insert(header::CONTENT_TYPE, v);
    }
    let range = match parse_range(header_str(headers, header::RANGE), size) {
        Ok(r) => r,
        Err(()) => {
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                response_headers.insert(header::CONTENT_RANGE, v);
            }
            let mut r = error(StatusCode::RANGE_NOT_SATISFIABLE, "Range not satisfiable");
            r.headers_mut().extend(response_headers);
            return r;
        }
    };
    let (status, start, len) = match range {
        Some((s, e)) => {
            if let Ok(v) = HeaderValue::from_str(&format!("bytes {s}-{e}/{size}")) {
                response_headers.insert(header::CONTENT_RANGE, v);
            }
            (StatusCode::PARTIAL_CONTENT, s, e - s + 1)
        }
        None => (StatusCode::OK, 0, size),
    };
    response_headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    if head_only || len == 0 {
        return (status, response_headers).into_response();
    }
    let options = GetOptions {
        range: range.map(|(s, e)| GetRange::Bounded(s..e + 1)),
        // The bytes must be the ones described above.
        if_match: info.meta.e_tag.clone(),
        ..GetOptions::default()
    };
    let body = match bucket.store().get_opts(&path, options).await {
        Ok(r) => match r.payload {
            GetResultPayload::File(file, _) => Body::from_stream(read_file(file, start, len)),
            GetResultPayload::Stream(s) => Body::from_stream(s),
        },
        Err(object_store::Error::NotFound { .. }) => {
            return error(StatusCode::NOT_FOUND, "File not found");
        }
        Err(e) => return internal("reading the object failed", &e),
    };
    (status, response_headers, body).into_response()
}

/// Stream `len` bytes of a local file from `start`, in large chunks (object_store's own local
/// stream reads 8 KiB at a time).
fn read_file(
    file: std::fs::File,
    start: u64,
    len: u64,
) -> impl futures::Stream<Item = std::io::Result<Bytes>> {
    futures::stream::try_unfold(
        (tokio::fs::File::from_std(file), start, len, false),
        |(mut file, start, left, positioned)| async move {
            if !positioned {
                file.seek(std::io::SeekFrom::Start(start)).await?;
            }
            if left == 0 {
                return Ok(None);
            }
            let want = usize::try_from(left).unwrap_or(READ_CHUNK).min(READ_CHUNK);
            let mut buf = vec![0u8; want];
            let mut filled = 0;
            while filled < want {
                let n = file.read(&mut buf[filled..]).await?;
                if n == 0 {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "the object is shorter than its size",
                    ));
                }
                filled += n;
            }
            Ok(Some((
                Bytes::from(buf),
                (file, start, left - want as u64, true),
            )))
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range(None, 10), Ok(None));
        assert_eq!(parse_range(Some("bytes=0-4"), 10), Ok(Some((0, 4))));
        assert_eq!(parse_range(Some("bytes=5-"), 10), Ok(Some((5, 9))));
        assert_eq!(parse_range(Some("bytes=-3"), 10), Ok(Some((7, 9))));
        assert_eq!(parse_range(Some("bytes=-30"), 10), Ok(Some((0, 9))));
        assert_eq!(parse_range(Some("bytes=2-100"), 10), Ok(Some((2, 9))));
        assert_eq!(parse_range(Some("bytes=10-"), 10), Err(()));
        assert_eq!(parse_range(Some("bytes=5-2"), 10), Err(()));
        assert_eq!(parse_range(Some("bytes=-0"), 10), Err(()));
        assert_eq!(parse_range(Some("bytes=0-1,3-4"), 10), Ok(None));
        assert_eq!(parse_range(Some("items=0-1"), 10), Ok(None));
        assert_eq!(parse_range(Some("bytes=x-1"), 10), Err(()));
        assert_eq!(parse_range(Some("bytes=0-"), 0), Err(()));
        assert_eq!(parse_range(Some("bytes=-1"), 0), Err(()));
        assert_eq!(parse_range(Some("bytes=9-9"), 10), Ok(Some((9, 9))));
        assert_eq!(parse_range(Some("bytes=-10"), 10), Ok(Some((0, 9))));
    }

    #[test]
    fn etags_are_quoted_and_compared_weakly() {
        let e = quoted_etag(Some("abc")).expect("etag");
        assert_eq!(e, "\"abc\"");
        assert_eq!(quoted_etag(Some("\"abc\"")).expect("etag"), "\"abc\"");
        assert!(none_match("\"abc\"", &e));
        assert!(none_match("W/\"abc\", \"x\"", &e));
        assert!(none_match("*", &e));
        assert!(!none_match("\"abd\"", &e));
    }
}
