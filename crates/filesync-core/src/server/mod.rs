//! The signer contract router (feature `server`): axum routes, generic over an
//! [`ObjectSigner`], used by both server crates so their HTTP surface cannot drift.
//!
//! Behaviour (SGN, S3-1..11, R2-1..5, with WEAK-2, WEAK-3 and WEAK-23 fixed):
//! - Routes are nested under a base path (default `/api`; `/api` does not match `/apix`):
//!   `GET /health` (no auth), `POST /v1/sign/upload`, `POST /v1/sign/download`,
//!   `POST /v1/delete`, and with an [`EventLog`] the relay's
//!   `/v1/stores/{storeId}/{push,pull,stream}` ([`relay_router`] mounts the relay alone).
//!   `OPTIONS` on anything under the base answers 204 (CORS preflight).
//! - Every other request under the base passes the bearer middleware *before* routing (S3-5):
//!   unknown routes answer 401 without a token, 404 with one. A token comes from
//!   `Authorization: Bearer <t>` or `X-Worker-Auth: <t>` and is compared in constant time with
//!   every configured token; each token grants key prefixes (none = any key). No tokens
//!   configured means open access, as the original without `validateAuth`.
//! - Bodies are limited (`RequestBodyLimitLayer`, 16 KiB by default); malformed JSON → 400
//!   `Invalid request`; unsafe keys → 400 `Invalid key`; keys outside the token's prefixes →
//!   403 `Forbidden`. JSON routes time out (`TimeoutLayer`, 30 s by default) with 504.
//! - CORS headers on every response under the base ([`with_cors`]): `*` by default, or the
//!   request's origin with `Access-Control-Allow-Credentials: true` when it is in the
//!   configured allow-list.
//! - Errors map to statuses in one place ([`ApiError`]); 5xx bodies carry no details. One
//!   INFO line per request ([`with_request_log`]): method, route template, status, latency;
//!   never raw paths, query strings, tokens or signed URLs.
//! - `GET /health` answers 200 `{"status":"ok",…,"version":…}`, or 503
//!   `{"status":"error",…,"failing":…,"reason":…,"version":…}` ([`HealthReport`]).
//!
//! Nothing here installs global state; the binaries' process setup is `server::cli` (feature
//! `cli`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::Router;
use axum::body::Body;
use axum::routing::MethodRouter;

use crate::Result;
use crate::contract::UploadMethod;
use crate::types::{ContentHash, ObjectKey, Timestamp};

mod auth;
#[cfg(feature = "cli")]
pub mod cli;
mod config;
mod contract;
mod cors;
mod error;
mod memory_log;
mod relay;
mod relay_routes;
pub mod s3;
mod serve;
mod tokens;

pub use config::RouterConfig;
pub use cors::with_cors;
pub use error::ApiError;
pub use memory_log::MemoryEventLog;
pub use relay::{EventLog, SqliteEventLog};
pub use serve::{
    ConnectionLimits, SHUTDOWN_GRACE, ServeConfig, serve, serve_with_config, serve_with_grace,
};
pub use tokens::{Secret, TokenGrant, Tokens, key_allowed};

/// What an upload declares; a signer may bind each into the signed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadSpec {
    /// The object key.
    pub key: ObjectKey,
    /// The body's length.
    pub content_length: Option<u64>,
    /// The body's MIME type.
    pub content_type: Option<String>,
    /// The body's SHA-256.
    pub content_hash: Option<ContentHash>,
}

/// A signed request the client performs itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedRequest {
    /// `PUT` or `POST` for uploads (ignored for downloads).
    pub method: UploadMethod,
    /// The URL. A credential: never log it.
    pub url: String,
    /// Headers the client must send exactly.
    pub headers: BTreeMap<String, String>,
    /// When the URL stops working; must equal its real lifetime.
    pub expires_at: Timestamp,
}

/// What a health probe found: `ok` and extra fields for the JSON body.
///
/// A failed probe names the failing part and why in `details` (`failing`, `reason`: see
/// [`HealthReport::failing`]); the health route answers 503 with them, and adds `version`.
/// The reason is public (the route needs no token): say what failed, not where (no paths,
/// no credentials); log the whole error instead.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct HealthReport {
    /// Whether the bucket answered.
    pub ok: bool,
    /// Extra fields, e.g. R2's `bucket` and `timestamp`.
    pub details: serde_json::Map<String, serde_json::Value>,
}

impl HealthReport {
    /// A passed probe, no extra fields.
    pub fn healthy() -> Self {
        Self {
            ok: true,
            details: serde_json::Map::new(),
        }
    }

    /// A failed probe: `part` (e.g. `bucket`) failed because of `reason` (one short public
    /// sentence, e.g. `S3 answered 403`).
    pub fn failing(part: impl Into<String>, reason: impl Into<String>) -> Self {
        let mut details = serde_json::Map::new();
        details.insert("failing".into(), part.into().into());
        details.insert("reason".into(), reason.into().into());
        Self { ok: false, details }
    }

    /// This report with one more field in its body.
    pub fn with_detail(mut self, name: &str, value: impl Into<serde_json::Value>) -> Self {
        self.details.insert(name.into(), value.into());
        self
    }
}

/// Mints signed URLs and deletes objects: implemented by `S3Signer` and `R2Proxy`.
#[async_trait]
pub trait ObjectSigner: Send + Sync + 'static {
    /// Sign an upload valid for `expires_in` from `now`.
    async fn sign_upload(
        &self,
        spec: &UploadSpec,
        expires_in: Duration,
        now: Timestamp,
    ) -> Result<SignedRequest>;
    /// Sign a download valid for `expires_in` from `now`.
    async fn sign_download(
        &self,
        key: &ObjectKey,
        expires_in: Duration,
        now: Timestamp,
    ) -> Result<SignedRequest>;
    /// Delete an object; a missing object is `Ok` (S3-10, R2-5).
    async fn delete(&self, key: &ObjectKey) -> Result<()>;
    /// Probe the bucket.
    async fn health(&self) -> HealthReport;
}

/// The router for `signer` under `config.base_path`. Serve it with [`serve`].
pub fn router<S: ObjectSigner>(signer: Arc<S>, config: RouterConfig) -> Router {
    router_with_relay(signer, config, None)
}

/// [`router`] plus the event relay routes (`POST /v1/stores/{storeId}/push`,
/// `GET /v1/stores/{storeId}/pull`, `GET /v1/stores/{storeId}/stream`) on `relay`, behind the
/// same tokens (a token's prefixes scope it to store ids: `store/`).
pub fn router_with_relay<S: ObjectSigner>(
    signer: Arc<S>,
    config: RouterConfig,
    relay: Option<Arc<dyn EventLog>>,
) -> Router {
    router_with_fallback(signer, config, relay, None)
}

/// [`router_with_relay`], handing requests outside the base path to `fallback` (e.g. a
/// static-file service for a web app) instead of answering 404.
pub fn router_with_fallback<S: ObjectSigner>(
    signer: Arc<S>,
    config: RouterConfig,
    relay: Option<Arc<dyn EventLog>>,
    fallback: Option<Router>,
) -> Router {
    let health = contract::health_route(Arc::clone(&signer), &config);
    let mut authed = contract::routes(signer, &config);
    if let Some(log) = relay {
        authed = authed.merge(relay_routes::routes(log, &config));
    }
    assemble(&config, Some(health), authed, fallback)
}

/// The event relay alone under `config.base_path` (no signer, no `/health`), with the same
/// tokens, CORS and limits as [`router_with_relay`].
pub fn relay_router(log: Arc<dyn EventLog>, config: RouterConfig) -> Router {
    let authed = relay_routes::routes(log, &config);
    assemble(&config, None, authed, None)
}

/// The public `health` route and the `authed` routes, behind the bearer middleware (with a 404
/// fallback, so unknown routes are authenticated too) and CORS, nested under the base path;
/// `fallback` answers outside it; one log line per request ([`with_request_log`]).
fn assemble(
    config: &RouterConfig,
    health: Option<MethodRouter>,
    authed: Router,
    fallback: Option<Router>,
) -> Router {
    let tokens = Arc::new(Tokens::new(&config.tokens));
    let authed = authed
        .fallback(error::not_found)
        .layer(axum::middleware::from_fn_with_state(
            tokens,
            auth::require_token,
        ));
    let mut api = Router::new();
    if let Some(health) = health {
        // Another method on /health is an unknown route: authenticated, then 404.
        api = api.route("/health", health.fallback_service(authed.clone()));
    }
    let api = with_cors(api.merge(authed), config);
    let base = config.nest_path();
    let app = if base.is_empty() {
        // Everything is under the root: nothing is left for a fallback.
        api
    } else {
        // `nest` leaves `{base}/` out; it is under the base like any other path.
        let app = Router::new()
            .route(&format!("{base}/"), axum::routing::any_service(api.clone()))
            .nest(&base, api);
        match fallback {
            Some(fallback) => app.fallback_service(fallback),
            None => app,
        }
    };
    with_request_log(app)
}

/// `app` with one INFO line per request (tower-http's `TraceLayer`): in a span with the
/// method and the matched route template (`route`, e.g. `/api/v1/sign/upload`; `-` when no
/// route matched), the status and the latency in ms when the response starts. Never the raw
/// path (file routes carry object keys), a query string (signed URLs' are credentials) or a
/// header (tokens). A response body that fails mid-stream is logged as a warning; 5xx
/// statuses are logged where they are made. Apply it last: it covers the routes `app` has.
pub fn with_request_log(app: Router) -> Router {
    use tower_http::classify::ServerErrorsFailureClass;
    use tower_http::trace::{DefaultOnResponse, TraceLayer};
    app.layer(
        TraceLayer::new_for_http()
            .make_span_with(|req: &axum::http::Request<Body>| {
                let route = req
                    .extensions()
                    .get::<axum::extract::MatchedPath>()
                    .map_or("-", axum::extract::MatchedPath::as_str);
                tracing::info_span!("request", method = %req.method(), route)
            })
            .on_request(())
            .on_response(
                DefaultOnResponse::new()
                    .level(tracing::Level::INFO)
                    .latency_unit(tower_http::LatencyUnit::Millis),
            )
            .on_failure(
                |class: ServerErrorsFailureClass, _: Duration, _: &tracing::Span| {
                    if let ServerErrorsFailureClass::Error(error) = class {
                        tracing::warn!(%error, "response failed");
                    }
                },
            ),
    )
}
