#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::Router;
use axum::http::{HeaderValue, header};
use tower_http::set_header::SetResponseHeaderLayer;

use filesync_core::contract::UploadMethod;
use filesync_core::server::s3::{check_upload, upload_headers};
use filesync_core::server::{
    EventLog, HealthReport, ObjectSigner, RouterConfig, Secret, SignedRequest, Tokens, UploadSpec,
    router_with_fallback, with_cors, with_request_log,
};
use filesync_core::types::{ObjectKey, Timestamp};

mod bucket;
mod error;
mod files;
pub mod signature;

pub use bucket::Bucket;
pub use error::{Error, Result};
pub use filesync_core::server::s3::S3Settings;

/// The original's file route prefix (R2-1).
pub const DEFAULT_FILES_BASE_PATH: &str = "/livestore-filesync-files";
/// The largest object accepted by default: 5 GiB.
pub const DEFAULT_MAX_OBJECT_SIZE: u64 = 5 * 1024 * 1024 * 1024;

/// How the proxy signs and where its URLs point.
#[derive(Debug, Clone)]
pub struct R2Config {
    /// The server's public origin (and path prefix, if a reverse proxy adds one), as clients
    /// reach it, e.g. `https://files.example.com`. Signed URLs start with it.
    pub public_url: url::Url,
    /// Where the file routes live (default [`DEFAULT_FILES_BASE_PATH`]).
    pub files_base_path: String,
    /// The HMAC key for file URLs. Share it between instances (and with the TypeScript
    /// server, whose URLs then verify here).
    pub signing_secret: Secret,
    /// Largest accepted object, checked when signing and while streaming the upload.
    pub max_object_size: u64,
}

impl R2Config {
    /// Defaults for everything but the public URL and the secret.
    pub fn new(public_url: url::Url, signing_secret: Secret) -> Self {
        Self {
            public_url,
            files_base_path: DEFAULT_FILES_BASE_PATH.into(),
            signing_secret,
            max_object_size: DEFAULT_MAX_OBJECT_SIZE,
        }
    }
}

/// An [`ObjectSigner`] whose URLs point back at this server's file routes.
#[derive(Debug)]
pub struct R2Proxy {
    bucket: Bucket,
    config: R2Config,
}

impl R2Proxy {
    /// A proxy for `bucket`.
    pub fn new(bucket: Bucket, config: R2Config) -> Self {
        Self { bucket, config }
    }

    /// The bucket.
    pub fn bucket(&self) -> &Bucket {
        &self.bucket
    }

    /// The configuration.
    pub fn config(&self) -> &R2Config {
        &self.config
    }

    fn sign(
        &self,
        method: &str,
        key: &ObjectKey,
        expires_in: Duration,
        now: Timestamp,
        bound: &signature::Bound,
    ) -> (String, Timestamp) {
        // R2-4: exp = floor(now_s) + ttl; `expiresAt` is exactly exp.
        let exp = now.as_millis().div_euclid(1000) + expires_in.as_secs() as i64;
        let url = signature::signed_url_bound(
            self.config.public_url.as_str(),
            &self.config.files_base_path,
            &self.config.signing_secret,
            method,
            key,
            exp,
            bound,
        );
        let expires_at = Timestamp::from_millis(exp * 1000).unwrap_or(now);
        (url, expires_at)
    }
}

#[async_trait]
impl ObjectSigner for R2Proxy {
    async fn sign_upload(
        &self,
        spec: &UploadSpec,
        expires_in: Duration,
        now: Timestamp,
    ) -> filesync_core::Result<SignedRequest> {
        if spec
            .content_length
            .is_some_and(|n| n > self.config.max_object_size)
        {
            return Err(filesync_core::Error::InvalidInput {
                what: "contentLength",
                reason: format!(
                    "{} bytes is over this server's limit of {} bytes",
                    spec.content_length.unwrap_or_default(),
                    self.config.max_object_size
                ),
                source: None,
            });
        }
        check_upload(spec)?;
        // The URL binds the declared length and SHA-256 (`len`, `sha256`, covered by `sig`);
        // the file route refuses a body that differs from them, and for a content-addressed
        // key one that does not hash to the key, bound or not.
        let bound = signature::Bound {
            length: spec.content_length,
            sha256: spec.content_hash,
        };
        let (url, expires_at) = self.sign("PUT", &spec.key, expires_in, now, &bound);
        // Headers the client sends with the bytes: the checksum (checked again) and the type
        // (stored). The length is left to the client's HTTP stack: the route counts the body.
        let mut headers = upload_headers(spec);
        headers.remove("content-length");
        Ok(SignedRequest {
            method: UploadMethod::Put,
            url,
            headers,
            expires_at,
        })
    }

    async fn sign_download(
        &self,
        key: &ObjectKey,
        expires_in: Duration,
        now: Timestamp,
    ) -> filesync_core::Result<SignedRequest> {
        let (url, expires_at) =
            self.sign("GET", key, expires_in, now, &signature::Bound::default());
        Ok(SignedRequest {
            method: UploadMethod::Put,
            url,
            headers: Default::default(),
            expires_at,
        })
    }

    async fn delete(&self, key: &ObjectKey) -> filesync_core::Result<()> {
        self.bucket
            .delete(key)
            .await
            .map_err(|e| filesync_core::Error::Remote {
                what: "delete failed".into(),
                status: None,
                retryable: true,
                source: Some(e.into()),
            })
    }

    async fn health(&self) -> HealthReport {
        // R2-3: list one object (and, on local disk, find the bucket's directories).
        let report = match self.bucket.health().await {
            Ok(()) => HealthReport::healthy(),
            Err(reason) => HealthReport::failing("bucket", reason),
        };
        let ok = report.ok;
        report
            .with_detail("bucket", ok)
            .with_detail("timestamp", Timestamp::now().to_iso8601())
    }
}

/// The whole server: the contract routes (and the relay, if `relay` is given) under
/// `config.base_path`, plus the file routes. CORS as R2-12 (`PUT` allowed,
/// `Cross-Origin-Resource-Policy: cross-origin`).
pub fn router(
    proxy: Arc<R2Proxy>,
    config: RouterConfig,
    relay: Option<Arc<dyn EventLog>>,
) -> Router {
    router_with_static(proxy, config, relay, None)
}

/// [`router`], also serving the files under `static_dir` (e.g. a web app built for wasm32) at
/// every path outside the base path and the file routes (`index.html` for directories).
pub fn router_with_static(
    proxy: Arc<R2Proxy>,
    mut config: RouterConfig,
    relay: Option<Arc<dyn EventLog>>,
    static_dir: Option<&std::path::Path>,
) -> Router {
    config.version = env!("CARGO_PKG_VERSION");
    config.cors_methods = "GET, POST, PUT, DELETE, OPTIONS".into();
    config.cross_origin_resource_policy = Some("cross-origin".into());
    // What a page on another origin sends to the file routes: the checksum `sign_upload`
    // asks for, and conditional / ranged reads (the original allows none of them: WEAK-23).
    for header in ["x-amz-checksum-sha256", "If-None-Match", "Range"] {
        if !config
            .extra_allowed_headers
            .iter()
            .any(|h| h.eq_ignore_ascii_case(header))
        {
            config.extra_allowed_headers.push(header.into());
        }
    }
    let files_path = format!(
        "{}/{{*key}}",
        proxy.config.files_base_path.trim_end_matches('/')
    );
    let state = Arc::new(files::FilesState {
        tokens: Tokens::new(&config.tokens),
        max_ttl_s: i64::try_from(config.expiry().as_secs()).unwrap_or(i64::MAX),
        proxy: Arc::clone(&proxy),
    });
    let files = Router::new()
        .route(&files_path, axum::routing::any(files::handle))
        .with_state(state);
    let files = with_request_log(with_cors(files, &config).layer(
        SetResponseHeaderLayer::overriding(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static("ETag, Content-Length, Content-Range, Accept-Ranges"),
        ),
    ));
    let fallback = static_dir.map(|dir| {
        Router::new().fallback_service(
            tower_http::services::ServeDir::new(dir).append_index_html_on_directories(true),
        )
    });
    files.merge(router_with_fallback(proxy, config, relay, fallback))
}
