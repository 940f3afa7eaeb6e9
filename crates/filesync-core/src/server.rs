//! The signer contract router (feature `server`): one axum router, generic over an
//! [`ObjectSigner`], used by both server crates so their HTTP surface cannot drift.
//!
//! Behaviour (SGN, S3-1..11, R2-1..5, with WEAK-2, WEAK-3 and WEAK-23 fixed):
//! - Routes under a base path (default `/api`), matched on a segment boundary (`/api` does not
//!   match `/apix`): `GET /health` (no auth), `POST /v1/sign/upload`, `POST /v1/sign/download`,
//!   `POST /v1/delete`; `OPTIONS` on anything under the base answers 204.
//! - Every other request under the base is authenticated *before* routing (S3-5): a token from
//!   `Authorization: Bearer <t>` or `X-Worker-Auth: <t>`, compared in constant time with every
//!   configured token; each token grants key prefixes (none = any key). No tokens configured
//!   means open access, as the original without `validateAuth`.
//! - Bodies are limited (16 KiB by default); malformed JSON → 400 `Invalid request`; unsafe
//!   keys → 400 `Invalid key`; keys outside the token's prefixes → 403 `Forbidden`.
//! - CORS headers on every response: `*` by default, or the request's origin with
//!   `Access-Control-Allow-Credentials: true` when it is in the configured allow-list.
//! - Errors map to statuses in one place ([`ApiError`]); 5xx bodies carry no details. Logs
//!   carry the method and path only: never query strings, tokens or signed URLs.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use sha2::Digest;
use subtle::ConstantTimeEq;

use crate::contract::{
    ErrorBody, KeyRequest, RelayEvent, SignDownloadResponse, SignUploadRequest, SignUploadResponse,
    UploadMethod, parse_request_key,
};
use crate::types::{ContentHash, ObjectKey, StoreId, Timestamp};
use crate::{Error, Result};

mod memory_log;
mod relay;
pub use memory_log::MemoryEventLog;
pub use relay::{EventLog, SqliteEventLog};

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
#[derive(Debug, Clone, PartialEq, Default)]
pub struct HealthReport {
    /// Whether the bucket answered.
    pub ok: bool,
    /// Extra fields, e.g. R2's `bucket` and `timestamp`.
    pub details: serde_json::Map<String, serde_json::Value>,
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

/// A secret string whose `Debug` prints `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wrap a secret.
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    /// The secret itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// A bearer token and the key prefixes it may sign and delete (empty: any key).
#[derive(Debug, Clone)]
pub struct TokenGrant {
    /// The token.
    pub token: Secret,
    /// Allowed key prefixes, e.g. store ids followed by `/`.
    pub prefixes: Vec<String>,
}

impl TokenGrant {
    /// Parse the operator syntax `TOKEN` or `TOKEN:prefix1,prefix2` (used by the servers'
    /// `--token` flags). Tokens shorter than 16 characters are refused.
    pub fn parse(spec: &str) -> Result<Self> {
        let (token, prefixes) = match spec.split_once(':') {
            Some((token, p)) => (
                token.trim(),
                p.split(',')
                    .map(str::trim)
                    .filter(|p| !p.is_empty())
                    .map(str::to_owned)
                    .collect(),
            ),
            None => (spec.trim(), Vec::new()),
        };
        if token.chars().count() < 16 {
            return Err(Error::invalid("token", "must be at least 16 characters"));
        }
        Ok(Self {
            token: Secret::new(token),
            prefixes,
        })
    }

    /// [`TokenGrant::parse`] for every non-blank entry.
    pub fn parse_all<S: AsRef<str>>(specs: &[S]) -> Result<Vec<Self>> {
        specs
            .iter()
            .map(AsRef::as_ref)
            .filter(|s| !s.trim().is_empty())
            .map(Self::parse)
            .collect()
    }
}

/// The configured tokens, hashed once; checks compare every token in constant time.
#[derive(Debug, Clone)]
pub struct Tokens {
    hashes: Vec<([u8; 32], Vec<String>)>,
}

impl Tokens {
    /// Hash `grants` for checking.
    pub fn new(grants: &[TokenGrant]) -> Self {
        Self {
            hashes: grants
                .iter()
                .map(|g| {
                    (
                        sha2::Sha256::digest(g.token.expose().as_bytes()).into(),
                        g.prefixes.clone(),
                    )
                })
                .collect(),
        }
    }

    /// Whether no token is configured (open access on the contract routes).
    pub fn is_empty(&self) -> bool {
        self.hashes.is_empty()
    }

    /// The prefixes granted to the request's token (`Authorization: Bearer <t>` or
    /// `X-Worker-Auth: <t>`), or `None`. With no tokens configured every request is granted
    /// every key. Every configured token is compared, in constant time, whatever matches
    /// first (WEAK-2).
    pub fn authorize(&self, headers: &HeaderMap) -> Option<Vec<String>> {
        if self.hashes.is_empty() {
            return Some(Vec::new());
        }
        let given: [u8; 32] = sha2::Sha256::digest(token_from(headers)?.as_bytes()).into();
        let mut granted: Option<Vec<String>> = None;
        for (hash, prefixes) in &self.hashes {
            if bool::from(hash.ct_eq(&given)) && granted.is_none() {
                granted = Some(prefixes.clone());
            }
        }
        granted
    }
}

/// Whether `key` is under one of `prefixes` (none: any key).
pub fn key_allowed(key: &ObjectKey, prefixes: &[String]) -> bool {
    prefixes.is_empty() || prefixes.iter().any(|p| key.has_prefix(p))
}

/// How the router behaves. Defaults are safe and match the original where it is safe.
#[derive(Debug, Clone)]
pub struct RouterConfig {
    /// Where the routes live (default `/api`).
    pub base_path: String,
    /// Accepted tokens. Empty: no authentication (as the original without `validateAuth`).
    pub tokens: Vec<TokenGrant>,
    /// Longest URL lifetime, clamped to 1..=3600 s (default 900 s).
    pub max_expiry: Duration,
    /// Origins allowed credentialed CORS; empty: `Access-Control-Allow-Origin: *`.
    pub allowed_origins: Vec<String>,
    /// Extra request headers browsers may send (added to `Allow-Headers`).
    pub extra_allowed_headers: Vec<String>,
    /// Largest accepted JSON body on the signer routes (default 16 KiB).
    pub body_limit: usize,
    /// Largest accepted push body on the relay routes (default 4 MiB).
    pub relay_body_limit: usize,
    /// `Access-Control-Allow-Methods` (default `GET, POST, DELETE, OPTIONS`, as S3-11; the
    /// byte proxy adds `PUT`, as R2-12).
    pub cors_methods: String,
    /// `Cross-Origin-Resource-Policy` on every response, if set (R2-12: `cross-origin`).
    pub cross_origin_resource_policy: Option<String>,
}

impl Default for RouterConfig {
    fn default() -> Self {
        Self {
            base_path: "/api".into(),
            tokens: Vec::new(),
            max_expiry: Duration::from_secs(900),
            allowed_origins: Vec::new(),
            extra_allowed_headers: Vec::new(),
            body_limit: 16 * 1024,
            relay_body_limit: 4 * 1024 * 1024,
            cors_methods: "GET, POST, DELETE, OPTIONS".into(),
            cross_origin_resource_policy: None,
        }
    }
}

impl RouterConfig {
    /// The effective URL lifetime: `max_expiry` clamped to 1..=3600 s (S3-7).
    pub fn expiry(&self) -> Duration {
        self.max_expiry
            .clamp(Duration::from_secs(1), Duration::from_secs(3600))
    }
}

/// Every error the router answers with; the one place that maps errors to statuses.
#[derive(Debug)]
pub enum ApiError {
    /// 401 `{"error":"Unauthorized"}`.
    Unauthorized,
    /// 400 `{"error":"Invalid request"}`.
    InvalidRequest,
    /// 400 `{"error":"Invalid key"}`.
    InvalidKey,
    /// 403 `{"error":"Forbidden"}`.
    Forbidden,
    /// 404 `{"error":"Not found"}`.
    NotFound,
    /// 413 `{"error":"Payload too large"}`.
    TooLarge,
    /// 400 with a specific message (relay validation).
    BadRequest(String),
    /// 409 `{"error":"ServerAhead","head":N}`: pull first.
    ServerAhead(u64),
    /// 500 with a fixed message; the cause is logged, not sent.
    Internal(&'static str, Error),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, message) = match self {
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, "Unauthorized"),
            ApiError::InvalidRequest => (StatusCode::BAD_REQUEST, "Invalid request"),
            ApiError::InvalidKey => (StatusCode::BAD_REQUEST, "Invalid key"),
            ApiError::Forbidden => (StatusCode::FORBIDDEN, "Forbidden"),
            ApiError::NotFound => (StatusCode::NOT_FOUND, "Not found"),
            ApiError::TooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "Payload too large"),
            ApiError::BadRequest(message) => {
                return json(StatusCode::BAD_REQUEST, &ErrorBody { error: message });
            }
            ApiError::ServerAhead(head) => {
                return json(
                    StatusCode::CONFLICT,
                    &crate::contract::HeadBody {
                        error: Some("ServerAhead".into()),
                        head,
                    },
                );
            }
            ApiError::Internal(message, cause) => {
                tracing::error!(error = %cause, "{message}");
                (StatusCode::INTERNAL_SERVER_ERROR, message)
            }
        };
        json(
            status,
            &ErrorBody {
                error: message.into(),
            },
        )
    }
}

fn json<T: Serialize>(status: StatusCode, body: &T) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let mut r = (status, bytes).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

struct AppState<S> {
    signer: Arc<S>,
    relay: Option<Arc<dyn EventLog>>,
    fallback: Option<Router>,
    config: RouterConfig,
    base: String,
    tokens: Tokens,
}

/// The router for `signer` under `config.base_path`. Serve it with `axum::serve`.
pub fn router<S: ObjectSigner>(signer: Arc<S>, config: RouterConfig) -> Router {
    router_with_relay(signer, config, None)
}

/// [`router`] plus the event relay routes (`POST /v1/stores/{storeId}/push`,
/// `GET /v1/stores/{storeId}/pull`, `GET /v1/stores/{storeId}/stream`) on `relay`, behind the same tokens (a token's prefixes
/// scope it to store ids: `store/`).
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
    let base = config.base_path.trim_end_matches('/').to_owned();
    let tokens = Tokens::new(&config.tokens);
    let state = Arc::new(AppState {
        signer,
        relay,
        fallback,
        config,
        base,
        tokens,
    });
    Router::new()
        .fallback(dispatch::<S>)
        .with_state(state)
        .layer(
            tower_http::trace::TraceLayer::new_for_http().make_span_with(
                |req: &axum::http::Request<Body>| {
                    // The path only: query strings of signed URLs are credentials.
                    tracing::info_span!("http", method = %req.method(), path = %req.uri().path())
                },
            ),
        )
}

/// The part of `path` after `base`, if `path` is under it (segment boundary).
fn under<'a>(base: &str, path: &'a str) -> Option<&'a str> {
    let rest = path.strip_prefix(base)?;
    (rest.is_empty() || rest.starts_with('/')).then_some(rest)
}

fn token_from(headers: &HeaderMap) -> Option<&str> {
    if let Some(v) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let v = v.trim();
        if let Some(t) = v
            .strip_prefix("Bearer ")
            .or_else(|| v.strip_prefix("bearer "))
        {
            return Some(t.trim());
        }
    }
    headers
        .get("x-worker-auth")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

/// Add the CORS headers `config` asks for to `response` (and `Cross-Origin-Resource-Policy`
/// if configured): one place for every route of both servers.
pub fn apply_cors(config: &RouterConfig, request: &HeaderMap, response: &mut Response) {
    let h = response.headers_mut();
    if config.allowed_origins.is_empty() {
        h.insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static("*"),
        );
    } else {
        h.append(header::VARY, HeaderValue::from_static("Origin"));
        let origin = request.get(header::ORIGIN).and_then(|o| o.to_str().ok());
        if let Some(origin) = origin.filter(|o| config.allowed_origins.iter().any(|a| a == o))
            && let Ok(v) = HeaderValue::from_str(origin)
        {
            h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
            h.insert(
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
    }
    if let Ok(v) = HeaderValue::from_str(&config.cors_methods) {
        h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, v);
    }
    if let Some(v) = config
        .cross_origin_resource_policy
        .as_deref()
        .and_then(|v| HeaderValue::from_str(v).ok())
    {
        h.insert("cross-origin-resource-policy", v);
    }
    let mut allow = String::from("Content-Type, Authorization, X-Worker-Auth");
    for extra in &config.extra_allowed_headers {
        allow.push_str(", ");
        allow.push_str(extra);
    }
    if let Ok(v) = HeaderValue::from_str(&allow) {
        h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, v);
    }
    h.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("86400"),
    );
}

async fn dispatch<S: ObjectSigner>(
    State(state): State<Arc<AppState<S>>>,
    request: axum::extract::Request,
) -> Response {
    if under(&state.base, request.uri().path()).is_none() {
        // Not ours: the fallback's (the request untouched), if there is one.
        let Some(fallback) = &state.fallback else {
            return StatusCode::NOT_FOUND.into_response();
        };
        return match tower::ServiceExt::oneshot(fallback.clone(), request).await {
            Ok(r) => r,
            Err(never) => match never {},
        };
    }
    let (parts, body) = request.into_parts();
    let rest = under(&state.base, parts.uri.path()).unwrap_or_default();
    let mut response = match route(
        &state,
        &parts.method,
        rest,
        &parts.uri,
        &parts.headers,
        body,
    )
    .await
    {
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
    apply_cors(&state.config, &parts.headers, &mut response);
    response
}

async fn read_json<T: serde::de::DeserializeOwned>(
    body: Body,
    limit: usize,
) -> Result<T, ApiError> {
    let bytes = axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| ApiError::TooLarge)?;
    serde_json::from_slice(&bytes).map_err(|_| ApiError::InvalidRequest)
}

fn allowed_key(raw: &str, prefixes: &[String]) -> Result<ObjectKey, ApiError> {
    let key = parse_request_key(raw).map_err(|_| ApiError::InvalidKey)?;
    if !key_allowed(&key, prefixes) {
        return Err(ApiError::Forbidden);
    }
    Ok(key)
}

/// Longest long-poll a pull may ask for.
const MAX_WAIT: Duration = Duration::from_secs(30);

#[derive(serde::Deserialize)]
struct PullParams {
    #[serde(default)]
    after: u64,
    #[serde(default)]
    limit: Option<usize>,
    #[serde(default)]
    wait: Option<u64>,
}

/// The `/stream` body: every event after `after` as an SSE message (`id` = `seqNum`,
/// `data` = the event's JSON), then new ones as they are appended; a comment every 15 s keeps
/// proxies from closing the connection.
fn sse_stream(
    log: Arc<dyn EventLog>,
    store: StoreId,
    after: u64,
) -> axum::response::sse::Sse<
    impl futures::Stream<
        Item = std::result::Result<axum::response::sse::Event, std::convert::Infallible>,
    >,
> {
    use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
    let stream = futures::stream::unfold(
        (log, store, after, Vec::<RelayEvent>::new()),
        |(log, store, mut after, mut buffered)| async move {
            loop {
                if !buffered.is_empty() {
                    let e = buffered.remove(0);
                    after = e.seq_num;
                    let data = serde_json::to_string(&e).unwrap_or_default();
                    let msg = SseEvent::default().id(e.seq_num.to_string()).data(data);
                    return Some((Ok(msg), (log, store, after, buffered)));
                }
                match log.read(&store, after, 500).await {
                    Ok(events) if !events.is_empty() => buffered = events,
                    Ok(_) => {
                        let _ = log.wait(&store, after, MAX_WAIT).await;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "relay stream read failed");
                        return None;
                    }
                }
            }
        },
    );
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

#[allow(clippy::too_many_arguments)] // one call site: the parts of the request
async fn relay_route(
    log_arc: Arc<dyn EventLog>,
    config: &RouterConfig,
    prefixes: &[String],
    method: &Method,
    rest: &str,
    uri: &Uri,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let log = &*log_arc;
    let Some(tail) = rest.strip_prefix("/v1/stores/") else {
        return Err(ApiError::NotFound);
    };
    let Some((store, action)) = tail.split_once('/') else {
        return Err(ApiError::NotFound);
    };
    let store = StoreId::parse(store)
        .map_err(|e| ApiError::BadRequest(format!("invalid store id: {}", e.reason)))?;
    let scope = format!("{store}/");
    if !prefixes.is_empty() && !prefixes.iter().any(|p| scope.starts_with(p.as_str())) {
        return Err(ApiError::Forbidden);
    }
    match (method.as_str(), action) {
        ("POST", "push") => {
            // An oversized batch is a bad push like any other (400, nothing stored).
            let bytes = axum::body::to_bytes(body, config.relay_body_limit)
                .await
                .map_err(|_| {
                    ApiError::BadRequest(format!(
                        "invalid batch: the body is over {} bytes or was cut off",
                        config.relay_body_limit
                    ))
                })?;
            let req: crate::contract::PushRequest = serde_json::from_slice(&bytes)
                .map_err(|e| ApiError::BadRequest(format!("invalid batch: {e}")))?;
            match log.append(&store, req.batch).await {
                Ok(crate::contract::PushOutcome::Accepted { head }) => Ok(json(
                    StatusCode::OK,
                    &crate::contract::HeadBody { error: None, head },
                )),
                Ok(crate::contract::PushOutcome::ServerAhead { head }) => {
                    Err(ApiError::ServerAhead(head))
                }
                Err(Error::InvalidInput { what, reason }) => {
                    Err(ApiError::BadRequest(format!("invalid {what}: {reason}")))
                }
                Err(e) => Err(ApiError::Internal("Push failed", e)),
            }
        }
        ("GET", "stream") => {
            // Server-sent events: resumable from `Last-Event-ID` (or `?after=N`).
            let params = axum::extract::Query::<PullParams>::try_from_uri(uri)
                .map_err(|_| ApiError::BadRequest("invalid stream parameters".into()))?
                .0;
            let after = headers
                .get("last-event-id")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .unwrap_or(params.after);
            Ok(sse_stream(log_arc, store, after).into_response())
        }
        ("GET", "pull") => {
            let params = axum::extract::Query::<PullParams>::try_from_uri(uri)
                .map_err(|_| ApiError::BadRequest("invalid pull parameters".into()))?
                .0;
            let limit = params
                .limit
                .unwrap_or(500)
                .clamp(1, crate::contract::MAX_PUSH_BATCH);
            let wait = Duration::from_secs(params.wait.unwrap_or(0)).min(MAX_WAIT);
            let head = log
                .head(&store)
                .await
                .map_err(|e| ApiError::Internal("Pull failed", e))?;
            if head <= params.after && !wait.is_zero() {
                log.wait(&store, params.after, wait)
                    .await
                    .map_err(|e| ApiError::Internal("Pull failed", e))?;
            }
            let events = log
                .read(&store, params.after, limit)
                .await
                .map_err(|e| ApiError::Internal("Pull failed", e))?;
            let head = log
                .head(&store)
                .await
                .map_err(|e| ApiError::Internal("Pull failed", e))?;
            Ok(json(
                StatusCode::OK,
                &crate::contract::PullResponse { events, head },
            ))
        }
        _ => Err(ApiError::NotFound),
    }
}

async fn route<S: ObjectSigner>(
    state: &AppState<S>,
    method: &Method,
    rest: &str,
    uri: &Uri,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    if method == Method::OPTIONS {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    if method == Method::GET && rest == "/health" {
        let report = state.signer.health().await;
        let mut body = serde_json::Map::new();
        body.insert(
            "status".into(),
            (if report.ok { "ok" } else { "error" }).into(),
        );
        body.extend(report.details);
        let status = if report.ok {
            StatusCode::OK
        } else {
            StatusCode::INTERNAL_SERVER_ERROR
        };
        return Ok(json(status, &body));
    }
    let prefixes = state
        .tokens
        .authorize(headers)
        .ok_or(ApiError::Unauthorized)?;
    if rest.starts_with("/v1/stores/")
        && let Some(log) = &state.relay
    {
        return relay_route(
            Arc::clone(log),
            &state.config,
            &prefixes,
            method,
            rest,
            uri,
            headers,
            body,
        )
        .await;
    }
    let limit = state.config.body_limit;
    let expiry = state.config.expiry();
    match (method.as_str(), rest) {
        ("POST", "/v1/sign/upload") => {
            let req: SignUploadRequest = read_json(body, limit).await?;
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
            let signed = state
                .signer
                .sign_upload(&spec, expiry, Timestamp::now())
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
        ("POST", "/v1/sign/download") => {
            let req: KeyRequest = read_json(body, limit).await?;
            let key = allowed_key(&req.key, &prefixes)?;
            let signed = state
                .signer
                .sign_download(&key, expiry, Timestamp::now())
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
        ("POST", "/v1/delete") => {
            let req: KeyRequest = read_json(body, limit).await?;
            let key = allowed_key(&req.key, &prefixes)?;
            state
                .signer
                .delete(&key)
                .await
                .map_err(|e| ApiError::Internal("Delete failed", e))?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        _ => Err(ApiError::NotFound),
    }
}

/// A signer's refusal of what the request declares (e.g. a size over the limit) is the
/// client's error; anything else is the server's.
fn signing_error(e: Error) -> ApiError {
    match e {
        Error::InvalidInput { what, reason } => {
            ApiError::BadRequest(format!("invalid {what}: {reason}"))
        }
        e => ApiError::Internal("Signing failed", e),
    }
}

/// For the server binaries' `main`: log to stderr (filtered by `RUST_LOG`, default `info`),
/// run `app`, and turn its error into `<name>: <error>` on stderr and exit code 2.
pub async fn main_with(
    name: &str,
    app: impl std::future::Future<Output = std::result::Result<(), String>>,
) -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match app.await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: {e}");
            std::process::ExitCode::from(2)
        }
    }
}

/// For the server binaries: the relay log at `path` (`--relay-db`), or none; the error names
/// the setting.
pub async fn open_relay(
    path: Option<&std::path::Path>,
) -> std::result::Result<Option<Arc<dyn EventLog>>, String> {
    let Some(path) = path else {
        return Ok(None);
    };
    let log = SqliteEventLog::open(path).await.map_err(|e| {
        format!(
            "--relay-db (FILESYNC_RELAY_DB): cannot open {}: {e}",
            path.display()
        )
    })?;
    Ok(Some(Arc::new(log)))
}

/// For the server binaries: listen on `addr` (`--listen`); the error names the setting.
pub async fn bind(
    addr: std::net::SocketAddr,
) -> std::result::Result<tokio::net::TcpListener, String> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("--listen (FILESYNC_LISTEN): cannot bind {addr}: {e}"))
}

/// Completes on Ctrl-C or SIGTERM: the servers' graceful-shutdown trigger.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down: finishing in-flight requests");
}

/// How long [`serve`] lets in-flight requests finish after the shutdown signal.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Serve `app` on `listener` until `shutdown` completes: no new connections are accepted, and
/// in-flight requests get [`SHUTDOWN_GRACE`] to finish. If connections are still open then
/// (an event stream never ends by itself; a long-poll may wait 30 s), `serve` returns anyway;
/// they are closed when the runtime shuts down (a binary's `main` returning).
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with_grace(listener, app, shutdown, SHUTDOWN_GRACE).await
}

/// [`serve`] with another grace period.
pub async fn serve_with_grace(
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    grace: Duration,
) -> std::io::Result<()> {
    let (started, shutting_down) = tokio::sync::oneshot::channel::<()>();
    let shutdown = async move {
        shutdown.await;
        let _ = started.send(());
    };
    let server = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .into_future();
    tokio::pin!(server);
    tokio::select! {
        result = &mut server => return result,
        Ok(()) = shutting_down => {}
    }
    match tokio::time::timeout(grace, server).await {
        Ok(result) => result,
        Err(_) => {
            tracing::warn!(
                grace_secs = grace.as_secs_f64(),
                "connections still open after the grace period (event streams, long polls): not waiting"
            );
            Ok(())
        }
    }
}
