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
use filesync_core::server::{HealthReport, ObjectSigner, Secret, SignedRequest, UploadSpec};
use filesync_core::types::{ObjectKey, Timestamp};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

/// Everything but SigV4's unreserved characters is encoded in a key segment.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A setting is missing or malformed; names the flag and the environment variable.
    #[error("{setting} ({env}): {reason}")]
    Config {
        /// The setting, e.g. `--s3-endpoint`.
        setting: &'static str,
        /// Its environment variable, e.g. `S3_ENDPOINT`.
        env: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// Signing failed.
    #[error("signing failed: {0}")]
    Signing(String),
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Where the bucket is and how to sign for it (S3-2).
#[derive(Debug, Clone)]
pub struct S3Config {
    /// `S3_ENDPOINT`, e.g. `https://<account>.r2.cloudflarestorage.com` or `http://127.0.0.1:9000`.
    pub endpoint: url::Url,
    /// `S3_REGION` (default `auto`, as R2 expects; `us-east-1` for AWS's default region).
    pub region: String,
    /// `S3_BUCKET`.
    pub bucket: String,
    /// `S3_ACCESS_KEY_ID`.
    pub access_key_id: String,
    /// `S3_SECRET_ACCESS_KEY`.
    pub secret_access_key: Secret,
    /// `S3_SESSION_TOKEN`, for temporary credentials.
    pub session_token: Option<Secret>,
    /// `S3_FORCE_PATH_STYLE`: `<endpoint>/<bucket>/<key>` instead of `<bucket>.<host>/<key>`.
    pub force_path_style: bool,
}

impl S3Config {
    /// Validate the settings (no network access).
    pub fn validate(&self) -> Result<()> {
        if !matches!(self.endpoint.scheme(), "http" | "https") || self.endpoint.host_str().is_none()
        {
            return Err(Error::Config {
                setting: "--s3-endpoint",
                env: "S3_ENDPOINT",
                reason: format!("{} is not an http(s) URL with a host", self.endpoint),
            });
        }
        let bucket_ok = (3..=63).contains(&self.bucket.len())
            && self
                .bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
        if !bucket_ok {
            return Err(Error::Config {
                setting: "--s3-bucket",
                env: "S3_BUCKET",
                reason: format!("{:?} is not a valid bucket name", self.bucket),
            });
        }
        for (value, setting, env) in [
            (&self.region, "--s3-region", "S3_REGION"),
            (
                &self.access_key_id,
                "--s3-access-key-id",
                "S3_ACCESS_KEY_ID",
            ),
            (
                &self.secret_access_key.expose().to_owned(),
                "--s3-secret-access-key",
                "S3_SECRET_ACCESS_KEY",
            ),
        ] {
            if value.trim().is_empty() {
                return Err(Error::Config {
                    setting,
                    env,
                    reason: "must not be empty".into(),
                });
            }
        }
        Ok(())
    }
}

/// [`ObjectSigner`] for any S3-compatible store: SigV4 query-presigned URLs (via `aws-sigv4`)
/// whose real lifetime (`X-Amz-Expires`) is exactly the `expiresAt` it reports (WEAK-1), with
/// the upload's length, type and SHA-256 bound as signed headers when the client declares them
/// (WEAK-4, WEAK-17). Deletes and health checks are header-signed requests from the server.
#[derive(Debug, Clone)]
pub struct S3Signer {
    config: S3Config,
    http: reqwest::Client,
}

fn to_system_time(t: Timestamp) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(t.as_millis().max(0) as u64)
}

impl S3Signer {
    /// A signer for `config` (validated).
    pub fn new(config: S3Config) -> Result<Self> {
        config.validate()?;
        let http = filesync_core::rt::http_client()
            .map_err(|e| Error::Signing(e.to_string()))?
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| Error::Signing(e.to_string()))?;
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
            .map_err(|e| Error::Signing(e.to_string()))?
            .into();
        let signable = SignableRequest::new(
            method,
            url,
            headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            SignableBody::UnsignedPayload,
        )
        .map_err(|e| Error::Signing(e.to_string()))?;
        Ok(sign(signable, &params)
            .map_err(|e| Error::Signing(e.to_string()))?
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
        let mut out = url::Url::parse(url).map_err(|e| Error::Signing(e.to_string()))?;
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
                status: None,
                retryable: true,
                message: format!(
                    "{method}: {}",
                    if e.is_timeout() {
                        "timed out"
                    } else {
                        "network error"
                    }
                ),
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
        let mut headers = BTreeMap::new();
        if let Some(len) = spec.content_length {
            headers.insert("content-length".to_owned(), len.to_string());
        }
        if let Some(t) = &spec.content_type {
            headers.insert("content-type".to_owned(), t.clone());
        }
        if let Some(h) = &spec.content_hash {
            headers.insert("x-amz-checksum-sha256".to_owned(), base64(h.as_bytes()));
        }
        self.presigned("PUT", &spec.key, headers, expires_in, now)
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
            status: Some(status.as_u16()),
            retryable: status.is_server_error(),
            message: format!("delete failed with status {}", status.as_u16()),
        })
    }

    async fn health(&self) -> HealthReport {
        let ok = matches!(
            self.send_signed(reqwest::Method::HEAD, self.bucket_url().as_str()).await,
            Ok(r) if r.status().is_success()
        );
        HealthReport {
            ok,
            details: Default::default(),
        }
    }
}

fn expiry(now: Timestamp, expires_in: Duration) -> Timestamp {
    Timestamp::from_millis(now.as_millis() + expires_in.as_millis() as i64).unwrap_or(now)
}

fn core_err(e: Error) -> filesync_core::Error {
    filesync_core::Error::Remote {
        status: None,
        retryable: false,
        message: e.to_string(),
    }
}

fn base64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
