//! The signer contract routes (SGN, S3-4..10): `GET /health` (unauthenticated),
//! `POST /v1/sign/upload`, `POST /v1/sign/download` and `POST /v1/delete` (behind
//! [`super::auth`]). The JSON routes carry a `RequestBodyLimitLayer`
//! (`RouterConfig::body_limit`) and a `TimeoutLayer` (`RouterConfig::request_timeout`).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Extension, FromRequest, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post};
use serde::de::DeserializeOwned;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;

use super::auth::Grant;
use super::error::{json, layer_statuses, not_found, signing_error};
use super::s3::check_upload;
use super::{ApiError, ObjectSigner, RouterConfig, UploadSpec, key_allowed};
use crate::contract::{
    KeyRequest, SignDownloadResponse, SignUploadRequest, SignUploadResponse, parse_request_key,
};
use crate::types::{ContentHash, ObjectKey, Timestamp};

/// What the contract handlers share.
struct Contract<S> {
    signer: Arc<S>,
    /// The effective URL lifetime (`RouterConfig::expiry`).
    expiry: Duration,
}

/// The timeout every JSON route gets: 504 `{"error":"Timed out"}` after `timeout`.
pub(super) fn timeout_layer(timeout: Duration) -> TimeoutLayer {
    TimeoutLayer::with_status_code(StatusCode::GATEWAY_TIMEOUT, timeout)
}

/// `GET /health`: the signer's probe, 200 `{"status":"ok",…}` or 503
/// `{"status":"error",…,"failing":…,"reason":…}`, both with `version`
/// (`RouterConfig::version`).
pub(super) fn health_route<S: ObjectSigner>(signer: Arc<S>, config: &RouterConfig) -> MethodRouter {
    get(health::<S>)
        .layer::<_, Infallible>(timeout_layer(config.request_timeout))
        .layer(axum::middleware::map_response(layer_statuses))
        .with_state((signer, config.version))
}

/// The authenticated contract routes, relative to the base path.
pub(super) fn routes<S: ObjectSigner>(signer: Arc<S>, config: &RouterConfig) -> Router {
    let state = Arc::new(Contract {
        signer,
        expiry: config.expiry(),
    });
    Router::new()
        .route("/v1/sign/upload", post(sign_upload::<S>))
        .route("/v1/sign/download", post(sign_download::<S>))
        .route("/v1/delete", post(delete::<S>))
        .method_not_allowed_fallback(not_found)
        .route_layer(RequestBodyLimitLayer::new(config.body_limit))
        .route_layer(timeout_layer(config.request_timeout))
        .route_layer(axum::middleware::map_response(layer_statuses))
        .with_state(state)
}

/// A JSON body: any failure to read it (over the limit, cut off) is 413 `Payload too large`,
/// and any failure to parse it is 400 `Invalid request`. No `Content-Type` is required.
struct JsonBody<T>(T);

impl<T: DeserializeOwned, St: Send + Sync> FromRequest<St> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &St) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|_| ApiError::TooLarge)?;
        serde_json::from_slice(&bytes)
            .map(JsonBody)
            .map_err(|_| ApiError::InvalidRequest)
    }
}

/// The request's key, if it is safe (400 `Invalid key`) and the token may use it (403).
fn allowed_key(raw: &str, prefixes: &[String]) -> Result<ObjectKey, ApiError> {
    let key = parse_request_key(raw).map_err(|_| ApiError::InvalidKey)?;
    if !key_allowed(&key, prefixes) {
        return Err(ApiError::Forbidden);
    }
    Ok(key)
}

async fn health<S: ObjectSigner>(
    State((signer, version)): State<(Arc<S>, &'static str)>,
) -> Response {
    let report = signer.health().await;
    let mut body = serde_json::Map::new();
    body.insert(
        "status".into(),
        (if report.ok { "ok" } else { "error" }).into(),
    );
    body.extend(report.details);
    if !report.ok {
        // A signer that did not say what failed: its probe is of the bucket.
        if !body.contains_key("failing") {
            body.insert("failing".into(), "bucket".into());
        }
        if !body.contains_key("reason") {
            body.insert("reason".into(), "the bucket probe failed".into());
        }
        // The signer logs the whole error; the request line shows the 503.
        tracing::debug!(
            failing = %body["failing"],
            reason = %body["reason"],
            "health check failed"
        );
    }
    body.insert("version".into(), version.into());
    let status = if report.ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    json(status, &body)
}

async fn sign_upload<S: ObjectSigner>(
    State(c): State<Arc<Contract<S>>>,
    Extension(Grant(prefixes)): Extension<Grant>,
    JsonBody(req): JsonBody<SignUploadRequest>,
) -> Result<Response, ApiError> {
    let key = allowed_key(&req.key, &prefixes)?;
    let content_hash = req
        .content_hash
        .as_deref()
        .map(ContentHash::parse)
        .transpose()
        .map_err(|_| ApiError::InvalidRequest)?;
    let spec = UploadSpec {
        key,
        content_length: req.content_length,
        content_type: req.content_type.filter(|t| !t.trim().is_empty()),
        content_hash,
    };
    // A control character in the type, or a hash that contradicts the key: 400 on both
    // servers, before any signer sees it.
    check_upload(&spec).map_err(signing_error)?;
    let signed = c
        .signer
        .sign_upload(&spec, c.expiry, Timestamp::now())
        .await
        .map_err(signing_error)?;
    Ok(json(
        StatusCode::OK,
        &SignUploadResponse {
            method: signed.method,
            url: signed.url,
            headers: (!signed.headers.is_empty()).then_some(signed.headers),
            expires_at: signed.expires_at.to_iso8601(),
        },
    ))
}

async fn sign_download<S: ObjectSigner>(
    State(c): State<Arc<Contract<S>>>,
    Extension(Grant(prefixes)): Extension<Grant>,
    JsonBody(req): JsonBody<KeyRequest>,
) -> Result<Response, ApiError> {
    let key = allowed_key(&req.key, &prefixes)?;
    let signed = c
        .signer
        .sign_download(&key, c.expiry, Timestamp::now())
        .await
        .map_err(signing_error)?;
    Ok(json(
        StatusCode::OK,
        &SignDownloadResponse {
            url: signed.url,
            headers: (!signed.headers.is_empty()).then_some(signed.headers),
            expires_at: signed.expires_at.to_iso8601(),
        },
    ))
}

async fn delete<S: ObjectSigner>(
    State(c): State<Arc<Contract<S>>>,
    Extension(Grant(prefixes)): Extension<Grant>,
    JsonBody(req): JsonBody<KeyRequest>,
) -> Result<Response, ApiError> {
    let key = allowed_key(&req.key, &prefixes)?;
    c.signer
        .delete(&key)
        .await
        .map_err(|e| ApiError::Internal("Delete failed", e))?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
