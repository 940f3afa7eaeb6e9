#![doc = include_str!("../README.md")]

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use aws_sigv4::http_request::{
    PercentEncodingMode, SignableBody, SignableRequest, SignatureLocation, SigningInstructions,
    SigningSettings, UriPathNormalizationMode, sign,
};
use aws_smithy_runtime_api::client::identity::Identity;
use filesync_core::contract::UploadMethod;
use filesync_core::server::s3::{check_upload, upload_headers};
use filesync_core::server::{HealthReport, ObjectSigner, SignedRequest, UploadSpec};
use filesync_core::types::{ObjectKey, Timestamp};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

/// Everything but SigV4's unreserved characters is encoded in a key segment.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

mod error;

pub use error::{Error, Result};
pub use filesync_core::server::s3::S3Settings;

/// [`ObjectSigner`] for any S3-compatible store: SigV4 query-presigned URLs (via `aws-sigv4`)
/// whose real lifetime (`X-Amz-Expires`) is exactly the `expiresAt` it reports (WEAK-1), with
/// the upload's length, type and SHA-256 bound as signed headers when the client declares them
/// (WEAK-4, WEAK-17). Deletes and health checks are header-signed requests from the server.
#[derive(Debug, Clone)]
pub struct S3Signer {
    config: S3Settings,
    http: reqwest::Client,
}

fn to_system_time(t: Timestamp) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(t.as_millis().max(0) as u64)
}

impl S3Signer {
    /// A signer for `config` (validated).
    pub fn new(config: S3Settings) -> Result<Self> {
        config.validate()?;
        let http = filesync_core::rt::http_client()
            .map_err(|e| Error::Signing(Box::new(e)))?
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(Error::HttpClient)?;
        Ok(Self { config, http })
    }

    /// The bucket's base URL (S3-3): path style `<endpoint>/<bucket>`, else `<bucket>.<host>`.
    pub fn bucket_url(&self) -> url::Url {
        let mut url = self.config.endpoint.clone();
        if self.config.force_path_style {
            let path = format!(
                "{}/{}",
                url.path().trim_end_matches('/'),
                self.config.bucket
            );
            url.set_path(&path);
        } else if let Some(host) = url.host_str() {
            let host = format!("{}.{host}", self.config.bucket);
            // A host from a valid URL plus a valid bucket name is a valid host.
            let _ = url.set_host(Some(&host));
            url.set_path("/");
        }
        url.set_query(None);
        url
    }

    /// The object's URL: each key segment percent-encoded (S3-3).
    pub fn object_url(&self, key: &ObjectKey) -> String {
        let base = self.bucket_url();
        let encoded: Vec<String> = key
            .as_str()
            .split('/')
            .map(|s| utf8_percent_encode(s, SEGMENT).to_string())
            .collect();
        format!(
            "{}/{}",
            base.as_str().trim_end_matches('/'),
            encoded.join("/")
        )
    }

    fn identity(&self) -> Identity {
        aws_credential_types::Credentials::new(
            self.config.access_key_id.clone(),
            self.config.secret_access_key.expose().to_owned(),
            self.config
                .session_token
                .as_ref()
                .map(|t| t.expose().to_owned()),
            None,
            "filesync-s3-signer",
        )
        .into()
    }

    fn settings(location: SignatureLocation, expires_in: Option<Duration>) -> SigningSettings {
        let mut s = SigningSettings::default();
        s.signature_location = location;
        s.expires_in = expires_in;
        s.percent_encoding_mode = PercentEncodingMode::Single;
        s.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
        s
    }

    /// SigV4 instructions for `method url` with `headers`: a query signature valid for
    /// `expires_in` (presigned URLs), or header signing when `expires_in` is `None`.
    fn instructions(
        &self,
        method: &str,
        url: &str,
        headers: &BTreeMap<String, String>,
        expires_in: Option<Duration>,
        now: SystemTime,
    ) -> Result<SigningInstructions> {
        let identity = self.identity();
        let location = if expires_in.is_some() {
            SignatureLocation::QueryParams
        } else {
            SignatureLocation::Headers
        };
        let params = aws_sigv4::sign::v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.config.region)
            .name("s3")
            .time(now)
            .settings(Self::settings(location, expires_in))
            .build()
            .map_err(|e| Error::Signing(e.into()))?
            .into();
        let signable = SignableRequest::new(
            method,
            url,
            headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            SignableBody::UnsignedPayload,
        )
        .map_err(|e| Error::Signing(e.into()))?;
        Ok(sign(signable, &params)
            .map_err(|e| Error::Signing(e.into()))?
            .into_parts()
            .0)
    }

    /// Presign `method` on `url` for `expires_in` from `now`, signing `headers` too.
    /// Returns the URL with the signature in its query.
    pub fn presign(
        &self,
        method: &str,
        url: &str,
        headers: &BTreeMap<String, String>,
        expires_in: Duration,
        now: Timestamp,
    ) -> Result<String> {
        let instructions =
            self.instructions(method, url, headers, Some(expires_in), to_system_time(now))?;
        let mut out = url::Url::parse(url).map_err(|source| Error::Url {
            url: url.to_owned(),
            source,
        })?;
        {
            let mut q = out.query_pairs_mut();
            for (k, v) in instructions.params() {
                q.append_pair(k, v);
            }
        }
        Ok(out.to_string())
    }

    /// A presigned request's answer: the URL (query signature) and what it reports.
    fn presigned(
        &self,
        method: &str,
        key: &ObjectKey,
        headers: BTreeMap<String, String>,
        expires_in: Duration,
        now: Timestamp,
    ) -> filesync_core::Result<SignedRequest> {
        let url = self
            .presign(method, &self.object_url(key), &headers, expires_in, now)
            .map_err(core_err)?;
        Ok(SignedRequest {
            method: UploadMethod::Put,
            url,
            headers,
            expires_at: expiry(now, expires_in),
        })
    }

    /// Send a header-signed request (delete, health) from the server.
    async fn send_signed(
        &self,
        method: reqwest::Method,
        url: &str,
    ) -> filesync_core::Result<reqwest::Response> {
        let mut headers = BTreeMap::new();
        headers.insert(
            "x-amz-content-sha256".to_owned(),
            "UNSIGNED-PAYLOAD".to_owned(),
        );
        let instructions = self
            .instructions(method.as_str(), url, &headers, None, SystemTime::now())
            .map_err(core_err)?;
        let mut request = self.http.request(method.clone(), url);
        for (k, v) in headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .chain(instructions.headers())
        {
            request = request.header(k, v);
        }
        request
            .send()
            .await
            .map_err(|e| filesync_core::Error::Remote {
                what: format!(
                    "{method}: {}",
                    if e.is_timeout() {
                        "timed out"
                    } else {
                        "network error"
                    }
                ),
                status: None,
                retryable: true,
                source: Some(e.into()),
            })
    }
}

#[async_trait]
impl ObjectSigner for S3Signer {
    async fn sign_upload(
        &self,
        spec: &UploadSpec,
        expires_in: Duration,
        now: Timestamp,
    ) -> filesync_core::Result<SignedRequest> {
        // A control character in the type, or a hash that contradicts the key: refused.
        check_upload(spec)?;
        // Every declared header is signed, and a content-addressed key's checksum always
        // (`upload_headers`): the bucket refuses other bytes, even from a client that sends
        // no checksum header (the signature then fails).
        self.presigned("PUT", &spec.key, upload_headers(spec), expires_in, now)
    }

    async fn sign_download(
        &self,
        key: &ObjectKey,
        expires_in: Duration,
        now: Timestamp,
    ) -> filesync_core::Result<SignedRequest> {
        self.presigned("GET", key, BTreeMap::new(), expires_in, now)
    }

    async fn delete(&self, key: &ObjectKey) -> filesync_core::Result<()> {
        let resp = self
            .send_signed(reqwest::Method::DELETE, &self.object_url(key))
            .await?;
        let status = resp.status();
        if status.is_success() || status == reqwest::StatusCode::NOT_FOUND {
            return Ok(());
        }
        Err(filesync_core::Error::Remote {
            what: format!("delete failed with status {}", status.as_u16()),
            status: Some(status.as_u16()),
            retryable: status.is_server_error(),
            source: None,
        })
    }

    async fn health(&self) -> HealthReport {
        match self
            .send_signed(reqwest::Method::HEAD, self.bucket_url().as_str())
            .await
        {
            Ok(r) if r.status().is_success() => HealthReport::healthy(),
            Ok(r) => {
                let status = r.status().as_u16();
                tracing::warn!(status, "health: the bucket answered HEAD with an error");
                HealthReport::failing("bucket", format!("S3 answered {status}"))
            }
            Err(e) => {
                tracing::warn!(error = %e, "health: the bucket could not be reached");
                HealthReport::failing("bucket", "S3 could not be reached")
            }
        }
    }
}

fn expiry(now: Timestamp, expires_in: Duration) -> Timestamp {
    Timestamp::from_millis(now.as_millis() + expires_in.as_millis() as i64).unwrap_or(now)
}

/// `e` as the contract's error, with `e` as its cause.
fn core_err(e: Error) -> filesync_core::Error {
    filesync_core::Error::Remote {
        what: "cannot sign the request".into(),
        status: None,
        retryable: false,
        source: Some(e.into()),
    }
}
