//! [`SignerClient`]: [`RemoteStorage`] over the signer HTTP contract (SGN-1..7), so it works
//! with this project's servers and the original TypeScript ones. Built on reqwest: hyper +
//! rustls natively, the browser's `fetch` on wasm32 (where upload bodies are collected before
//! sending, because `fetch` takes no streamed request body without HTTP/2). Signer calls
//! (`sign`, `delete`, `health`) are bounded by the connect + read timeouts as a whole, on both
//! platforms; transfers are bounded by the engine's `transfer_timeout`, and natively also by
//! the connect and read (idle) timeouts.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use reqwest::StatusCode;
#[cfg(not(target_arch = "wasm32"))]
use reqwest::header::CONTENT_LENGTH;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};

use super::{Download, RemoteStorage, UploadRequest};
use crate::contract::{
    KeyRequest, SignDownloadResponse, SignUploadRequest, SignUploadResponse, UploadMethod,
};
use crate::fs::ByteStream;
use crate::types::{ObjectKey, Timestamp};
use crate::{Error, Result};

/// A signed URL this close to expiry is signed again before use.
const EXPIRY_MARGIN_MS: i64 = 1_000;

/// Builds a [`SignerClient`].
#[derive(Debug, Clone)]
pub struct SignerClientBuilder {
    base_url: String,
    token: Option<String>,
    headers: Vec<(String, String)>,
    connect_timeout: Duration,
    read_timeout: Duration,
}

impl SignerClientBuilder {
    /// Send `Authorization: Bearer <token>` on signer calls (never on the signed URLs).
    pub fn with_auth_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// Send this header on every signer call (SGN-1).
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Connection timeout (default 10 s).
    pub fn with_connect_timeout(mut self, t: Duration) -> Self {
        self.connect_timeout = t;
        self
    }

    /// Longest wait for the next bytes of a response (default 30 s).
    pub fn with_read_timeout(mut self, t: Duration) -> Self {
        self.read_timeout = t;
        self
    }

    /// Validate and build.
    pub fn build(self) -> Result<SignerClient> {
        let base = parse_base_url(&self.base_url)?;
        let mut headers = HeaderMap::new();
        for (name, value) in &self.headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|e| Error::invalid_because("header name", name.clone(), e))?;
            let value = HeaderValue::from_str(value)
                .map_err(|e| Error::invalid_because("header value", format!("for {name}"), e))?;
            headers.insert(name, value);
        }
        #[cfg(not(target_arch = "wasm32"))]
        let http = crate::rt::http_client()?
            .connect_timeout(self.connect_timeout)
            .read_timeout(self.read_timeout);
        #[cfg(target_arch = "wasm32")]
        let http = crate::rt::http_client()?;
        let http = http
            .build()
            .map_err(|e| Error::invalid_because("HTTP client", "cannot be built", e))?;
        Ok(SignerClient {
            http,
            base,
            token: self.token,
            headers,
            call_timeout: self.connect_timeout.saturating_add(self.read_timeout),
        })
    }
}

/// The signer's base URL, parsed by `url`: `http` or `https`, a host, no query or fragment
/// (the routes are appended to its path); returned normalised, without a trailing `/`.
fn parse_base_url(raw: &str) -> Result<String> {
    parse_service_url(raw, "signer base URL")
}

/// A service's base URL (`what` names it in errors), as [`parse_base_url`] describes; shared
/// with `HttpRelay`.
pub(crate) fn parse_service_url(raw: &str, what: &'static str) -> Result<String> {
    let url = url::Url::parse(raw.trim())
        .map_err(|e| Error::invalid_because(what, format!("{raw:?} is not a URL"), e))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(Error::invalid(
            what,
            format!("{raw:?} must start with http:// or https://"),
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(Error::invalid(what, format!("{raw:?} has no host")));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(Error::invalid(
            what,
            format!("{raw:?} must not have a query or fragment (routes are appended to its path)"),
        ));
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

/// [`RemoteStorage`] through a signer service: signs, then moves bytes directly to the signed
/// URLs. Upload bodies stream from the caller (bounded memory); downloads stream back.
/// Failures are classified: network errors, timeouts, 408, 429, 5xx and expired URLs are
/// retryable; other statuses are permanent.
#[derive(Debug, Clone)]
pub struct SignerClient {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
    headers: HeaderMap,
    /// The whole of one signer call (connect + read timeouts).
    call_timeout: Duration,
}

/// A transport failure (no HTTP status): always retryable. `e` is kept as the cause.
pub(crate) fn network(what: &str, e: reqwest::Error) -> Error {
    #[cfg(not(target_arch = "wasm32"))]
    let connect = e.is_connect();
    #[cfg(target_arch = "wasm32")]
    let connect = false;
    let why = if e.is_timeout() {
        "timed out"
    } else if connect {
        "connection failed"
    } else {
        "network error"
    };
    Error::Remote {
        what: format!("{what}: {why}"),
        status: e.status().map(|s| s.as_u16()),
        retryable: true,
        source: Some(e.into()),
    }
}

/// A non-2xx answer, classified once for every HTTP client in the crate: 404 is
/// [`Error::NotFound`]; 408, 429, 5xx and expired signed URLs (403 "expired") are retryable;
/// other statuses are permanent. A JSON `{"error": "..."}` body is quoted.
/// `resp` when it succeeded, else the [`status_error`] its status and body describe.
async fn ensure_success(what: &str, resp: reqwest::Response) -> Result<reqwest::Response> {
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let text = resp.text().await.unwrap_or_default();
    Err(status_error(what, status, &text))
}

pub(crate) fn status_error(what: &str, status: StatusCode, body: &str) -> Error {
    if status == StatusCode::NOT_FOUND {
        return Error::NotFound {
            what: format!("{what}: 404"),
        };
    }
    let expired = status == StatusCode::FORBIDDEN && body.contains("expired");
    let retryable = expired
        || status.is_server_error()
        || status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS;
    let detail = serde_json::from_str::<crate::contract::ErrorBody>(body)
        .map(|b| format!(": {}", b.error))
        .unwrap_or_default();
    Error::Remote {
        what: if expired {
            format!("{what}: the signed URL expired")
        } else {
            format!("{what} failed with status: {}{detail}", status.as_u16())
        },
        status: Some(status.as_u16()),
        retryable,
        source: None,
    }
}

fn signed_headers(h: &Option<BTreeMap<String, String>>) -> Result<HeaderMap> {
    let mut out = HeaderMap::new();
    for (k, v) in h.iter().flatten() {
        let name = HeaderName::from_bytes(k.as_bytes())
            .map_err(|e| Error::invalid_because("signed header", k.clone(), e))?;
        let value = HeaderValue::from_str(v)
            .map_err(|e| Error::invalid_because("signed header value", k.clone(), e))?;
        out.insert(name, value);
    }
    Ok(out)
}

/// `body` as sent with `Content-Length: declared`, failing if it holds more bytes: hyper
/// sends only the declared length and drops the rest, so a longer body would otherwise be
/// stored cut to its declared length. The chunk that reaches the length is held back until
/// the body is seen to end there.
#[cfg(not(target_arch = "wasm32"))]
fn no_longer_than(
    body: ByteStream,
    declared: u64,
) -> impl futures::Stream<Item = std::io::Result<bytes::Bytes>> {
    let longer = || std::io::Error::other("the body is longer than its declared length");
    futures::stream::unfold(Some((body, 0u64)), move |state| async move {
        let (mut body, mut sent) = state?;
        let chunk = match body.next().await? {
            Ok(chunk) => chunk,
            Err(e) => return Some((Err(std::io::Error::other(e)), None)),
        };
        sent += chunk.len() as u64;
        if sent > declared {
            return Some((Err(longer()), None));
        }
        if sent == declared {
            while let Some(next) = body.next().await {
                match next {
                    Ok(more) if more.is_empty() => {}
                    Ok(_) => return Some((Err(longer()), None)),
                    Err(e) => return Some((Err(std::io::Error::other(e)), None)),
                }
            }
        }
        Some((Ok(chunk), Some((body, sent))))
    })
}

fn fresh(expires_at: &str) -> bool {
    Timestamp::parse_iso8601(expires_at)
        .map(|t| t.as_millis() > Timestamp::now().as_millis() + EXPIRY_MARGIN_MS)
        .unwrap_or(true)
}

impl SignerClient {
    /// A client for the signer at `base_url` (e.g. `https://example.com/api`).
    pub fn builder(base_url: impl Into<String>) -> SignerClientBuilder {
        SignerClientBuilder {
            base_url: base_url.into(),
            token: None,
            headers: Vec::new(),
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(30),
        }
    }

    /// SGN-1: a POST to the signer with the configured headers and token.
    async fn call<T: serde::Serialize + Sync>(
        &self,
        route: &str,
        body: &T,
    ) -> Result<reqwest::Response> {
        let mut req = self
            .http
            .post(format!("{}{route}", self.base))
            .headers(self.headers.clone())
            .timeout(self.call_timeout)
            .json(body);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        req.send().await.map_err(|e| network(route, e))
    }

    async fn parse<T: serde::de::DeserializeOwned>(
        route: &str,
        resp: reqwest::Response,
        invalid: &str,
    ) -> Result<T> {
        let status = resp.status();
        let text = resp.text().await.map_err(|e| network(route, e))?;
        if !status.is_success() {
            return Err(status_error(route, status, &text));
        }
        serde_json::from_str(&text).map_err(|e| Error::Remote {
            what: invalid.to_owned(),
            status: Some(status.as_u16()),
            retryable: false,
            source: Some(e.into()),
        })
    }

    async fn sign_upload(&self, request: &UploadRequest) -> Result<SignUploadResponse> {
        let body = SignUploadRequest {
            key: request.key.to_string(),
            content_type: request.content_type.clone().filter(|t| !t.is_empty()),
            content_length: Some(request.content_length),
            content_hash: Some(request.content_hash.to_hex()),
        };
        let resp = self.call("/v1/sign/upload", &body).await?;
        let signed: SignUploadResponse =
            Self::parse("/v1/sign/upload", resp, "Failed to sign upload").await?;
        if signed.url.is_empty() {
            return Err(Error::Remote {
                what: "Failed to sign upload".into(),
                status: None,
                retryable: false,
                source: None,
            });
        }
        Ok(signed)
    }

    async fn sign_download(&self, key: &ObjectKey) -> Result<SignDownloadResponse> {
        for _ in 0..2 {
            let resp = self
                .call(
                    "/v1/sign/download",
                    &KeyRequest {
                        key: key.to_string(),
                    },
                )
                .await?;
            let signed: SignDownloadResponse =
                Self::parse("/v1/sign/download", resp, "Failed to sign download").await?;
            if signed.url.is_empty() {
                break;
            }
            if fresh(&signed.expires_at) {
                return Ok(signed);
            }
        }
        Err(Error::Remote {
            what: "Failed to sign download: no usable URL".into(),
            status: None,
            retryable: true,
            source: None,
        })
    }
}

#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
impl RemoteStorage for SignerClient {
    async fn upload(&self, request: UploadRequest, body: ByteStream) -> Result<()> {
        let mut signed = self.sign_upload(&request).await?;
        if !fresh(&signed.expires_at) {
            signed = self.sign_upload(&request).await?; // expired on arrival: sign again
        }
        #[allow(unused_mut)] // wasm32 adds nothing
        let mut headers = signed_headers(&signed.headers)?;
        let method = match signed.method {
            UploadMethod::Put => reqwest::Method::PUT,
            UploadMethod::Post => reqwest::Method::POST,
        };
        #[cfg(not(target_arch = "wasm32"))]
        let body = {
            // A streamed body needs an explicit length (S3 refuses chunked uploads).
            headers.insert(CONTENT_LENGTH, HeaderValue::from(request.content_length));
            reqwest::Body::wrap_stream(no_longer_than(body, request.content_length))
        };
        // fetch() sets Content-Length itself (a forbidden header) and takes no stream here.
        #[cfg(target_arch = "wasm32")]
        let body = crate::fs::collect_stream(body).await?;
        let resp = self
            .http
            .request(method, &signed.url)
            .headers(headers)
            .body(body)
            .send()
            .await
            .map_err(|e| network("upload", e))?;
        ensure_success("Upload", resp).await.map(drop)
    }

    async fn download(&self, key: &ObjectKey) -> Result<Download> {
        let signed = self.sign_download(key).await?;
        let resp = self
            .http
            .get(&signed.url)
            .headers(signed_headers(&signed.headers)?)
            .send()
            .await
            .map_err(|e| network("download", e))?;
        let resp = ensure_success("Download", resp).await?;
        let content_length = resp.content_length();
        let content_type = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = resp
            .bytes_stream()
            .map(|r| r.map_err(|e| network("download body", e)));
        Ok(Download {
            body: Box::pin(body),
            content_length,
            content_type,
        })
    }

    async fn delete(&self, key: &ObjectKey) -> Result<()> {
        let resp = self
            .call(
                "/v1/delete",
                &KeyRequest {
                    key: key.to_string(),
                },
            )
            .await?;
        ensure_success("Delete", resp).await.map(drop)
    }

    async fn download_url(&self, key: &ObjectKey) -> Result<String> {
        Ok(self.sign_download(key).await?.url)
    }

    /// A signed GET of the first byte only (`Range: bytes=0-0`; a presigned GET URL does not
    /// allow HEAD): 404 is absent, 416 an empty object.
    async fn exists(&self, key: &ObjectKey) -> Result<bool> {
        let signed = match self.sign_download(key).await {
            Ok(s) => s,
            Err(e) if e.is_not_found() => return Ok(false),
            Err(e) => return Err(e),
        };
        let resp = self
            .http
            .get(&signed.url)
            .headers(signed_headers(&signed.headers)?)
            .header(reqwest::header::RANGE, "bytes=0-0")
            .send()
            .await
            .map_err(|e| network("exists", e))?;
        match resp.status().as_u16() {
            404 => Ok(false),
            416 => Ok(true),
            _ => ensure_success("Exists", resp).await.map(|_| true),
        }
    }

    async fn health(&self) -> bool {
        let mut req = self
            .http
            .get(format!("{}/health", self.base))
            .headers(self.headers.clone())
            .timeout(self.call_timeout);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        matches!(req.send().await, Ok(r) if r.status().is_success())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::parse_base_url;

    #[test]
    fn base_urls_are_parsed_and_normalised() {
        assert_eq!(
            parse_base_url("https://Example.COM/api/").unwrap(),
            "https://example.com/api"
        );
        assert_eq!(
            parse_base_url("http://127.0.0.1:8787").unwrap(),
            "http://127.0.0.1:8787"
        );
        assert_eq!(parse_base_url(" http://h/a b ").unwrap(), "http://h/a%20b");
        for bad in [
            "",
            "example.com/api",
            "ftp://x",
            "http://",
            "http://h/api?x=1",
            "http://h/api#f",
            "http://[::1/api",
        ] {
            assert!(parse_base_url(bad).is_err(), "{bad:?}");
        }
    }
}
