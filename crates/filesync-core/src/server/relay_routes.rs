//! The event relay's HTTP routes, relative to the base path and behind [`super::auth`]:
//! `POST /v1/stores/{storeId}/push`, `GET /v1/stores/{storeId}/pull` (long-poll) and
//! `GET /v1/stores/{storeId}/stream` (server-sent events, resumable with `Last-Event-ID`).
//! [`store_scope`] checks the store id and the token's prefixes (a prefix `p` covers the store
//! `S` when `S/` starts with `p`) before anything is read.
//!
//! Limits: a push body over `RouterConfig::relay_body_limit` is a bad batch (400, nothing
//! stored), not a 413; push answers within `request_timeout`, pull within its own long-poll
//! cap ([`MAX_WAIT`]) plus `request_timeout`. The stream has no timeout: its handler answers at
//! once and its body never ends by design. A pull page (and each batch the stream reads) is
//! also capped in bytes by the log (`contract::MAX_PAGE_BYTES`); positions beyond
//! `contract::MAX_SEQ_NUM` (`after`, `Last-Event-ID`) are 400, never wrapped.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Extension, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tower_http::limit::RequestBodyLimitLayer;

use super::auth::Grant;
use super::contract::timeout_layer;
use super::error::{json, layer_statuses, not_found};
use super::{ApiError, EventLog, RouterConfig};
use crate::Error;
use crate::contract::{
    HeadBody, MAX_PUSH_BATCH, MAX_SEQ_NUM, PullResponse, PushOutcome, PushRequest, RelayEvent,
};
use crate::types::StoreId;

/// Longest long-poll a pull may ask for.
const MAX_WAIT: Duration = Duration::from_secs(30);

/// What the relay handlers share.
struct Relay {
    log: Arc<dyn EventLog>,
    /// The largest push body (`RouterConfig::relay_body_limit`).
    body_limit: usize,
}

#[derive(serde::Deserialize)]
struct PullParams {
    #[serde(default)]
    after: u64,
    #[serde(default)]
    limit: Option<usize>,
    #[serde(default)]
    wait: Option<u64>,
}

/// The authenticated relay routes on `log`, relative to the base path.
pub(super) fn routes(log: Arc<dyn EventLog>, config: &RouterConfig) -> Router {
    let body_limit = config.relay_body_limit;
    let state = Arc::new(Relay { log, body_limit });
    let push_route = post(push)
        .layer::<_, Infallible>(RequestBodyLimitLayer::new(body_limit))
        .layer::<_, Infallible>(middleware::map_response_with_state(body_limit, oversized))
        .layer::<_, Infallible>(timeout_layer(config.request_timeout))
        .layer(middleware::map_response(layer_statuses));
    Router::new()
        .route("/v1/stores/{store}/push", push_route)
        .route(
            "/v1/stores/{store}/pull",
            get(pull)
                .layer::<_, Infallible>(timeout_layer(MAX_WAIT + config.request_timeout))
                .layer(middleware::map_response(layer_statuses)),
        )
        .route("/v1/stores/{store}/stream", get(stream))
        .method_not_allowed_fallback(not_found)
        .route_layer(middleware::from_fn(store_scope))
        .with_state(state)
}

/// The push refusal for a body over `limit` bytes (or cut off).
fn oversized_batch(limit: usize) -> ApiError {
    ApiError::BadRequest(format!(
        "invalid batch: the body is over {limit} bytes or was cut off"
    ))
}

/// An oversized batch is a bad push like any other: the limit layer's 413 becomes 400.
async fn oversized(State(limit): State<usize>, response: Response) -> Response {
    if response.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return oversized_batch(limit).into_response();
    }
    response
}

/// 400 for an invalid store id, 403 unless the token's prefixes cover the store; otherwise the
/// parsed [`StoreId`] is attached to the request for the handler.
async fn store_scope(
    store: Result<Path<String>, PathRejection>,
    Extension(Grant(prefixes)): Extension<Grant>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let Path(store) =
        store.map_err(|e| ApiError::BadRequest(format!("invalid store id: {}", e.body_text())))?;
    let store = StoreId::parse(store)
        .map_err(|e| ApiError::BadRequest(format!("invalid store id: {}", e.reason)))?;
    let scope = format!("{store}/");
    if !prefixes.is_empty() && !prefixes.iter().any(|p| scope.starts_with(p.as_str())) {
        return Err(ApiError::Forbidden);
    }
    request.extensions_mut().insert(store);
    Ok(next.run(request).await)
}

async fn push(
    State(relay): State<Arc<Relay>>,
    Extension(store): Extension<StoreId>,
    body: Body,
) -> Result<Response, ApiError> {
    let bytes = axum::body::to_bytes(body, relay.body_limit)
        .await
        .map_err(|_| oversized_batch(relay.body_limit))?;
    let req: PushRequest = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::BadRequest(format!("invalid batch: {e}")))?;
    match relay.log.append(&store, req.batch).await {
        Ok(PushOutcome::Accepted { head }) => {
            Ok(json(StatusCode::OK, &HeadBody { error: None, head }))
        }
        Ok(PushOutcome::ServerAhead { head }) => Err(ApiError::ServerAhead(head)),
        Err(Error::InvalidInput { what, reason, .. }) => {
            Err(ApiError::BadRequest(format!("invalid {what}: {reason}")))
        }
        Err(e) => Err(ApiError::Internal("Push failed", e)),
    }
}

async fn pull(
    State(relay): State<Arc<Relay>>,
    Extension(store): Extension<StoreId>,
    params: Result<Query<PullParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(params) =
        params.map_err(|_| ApiError::BadRequest("invalid pull parameters".into()))?;
    check_after("pull parameters", "after", params.after)?;
    let log = &*relay.log;
    let failed = |e| ApiError::Internal("Pull failed", e);
    let limit = params.limit.unwrap_or(500).clamp(1, MAX_PUSH_BATCH);
    let wait = Duration::from_secs(params.wait.unwrap_or(0)).min(MAX_WAIT);
    let head = log.head(&store).await.map_err(failed)?;
    if head <= params.after && !wait.is_zero() {
        log.wait(&store, params.after, wait).await.map_err(failed)?;
    }
    let events = log
        .read(&store, params.after, limit)
        .await
        .map_err(failed)?;
    let head = log.head(&store).await.map_err(failed)?;
    Ok(json(StatusCode::OK, &PullResponse { events, head }))
}

/// 400 unless the position `after` (named `name`) is at most [`MAX_SEQ_NUM`]: a larger one
/// must not wrap around to the start of the log.
fn check_after(what: &str, name: &str, after: u64) -> Result<(), ApiError> {
    if after > MAX_SEQ_NUM {
        return Err(ApiError::BadRequest(format!(
            "invalid {what}: {name} must be at most {MAX_SEQ_NUM}"
        )));
    }
    Ok(())
}

/// The `Last-Event-ID` header: `None` when absent or not a decimal number (it is then
/// ignored), `Some(None)` for a decimal number too large for a `u64`, else `Some(Some(n))`.
fn last_event_id(headers: &HeaderMap) -> Option<Option<u64>> {
    let v = headers.get("last-event-id")?.to_str().ok()?.trim();
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(v.parse::<u64>().ok())
}

/// Server-sent events: resumable from `Last-Event-ID` (or `?after=N`).
async fn stream(
    State(relay): State<Arc<Relay>>,
    Extension(store): Extension<StoreId>,
    headers: HeaderMap,
    params: Result<Query<PullParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(params) =
        params.map_err(|_| ApiError::BadRequest("invalid stream parameters".into()))?;
    check_after("stream parameters", "after", params.after)?;
    let after = match last_event_id(&headers) {
        Some(Some(id)) => {
            check_after("stream parameters", "Last-Event-ID", id)?;
            id
        }
        Some(None) => {
            return Err(ApiError::BadRequest(format!(
                "invalid stream parameters: Last-Event-ID must be at most {MAX_SEQ_NUM}"
            )));
        }
        None => params.after,
    };
    Ok(sse_stream(Arc::clone(&relay.log), store, after).into_response())
}

/// The `/stream` body: every event after `after` as an SSE message (`id` = `seqNum`,
/// `data` = the event's JSON), then new ones as they are appended; a comment every 15 s keeps
/// proxies from closing the connection.
fn sse_stream(
    log: Arc<dyn EventLog>,
    store: StoreId,
    after: u64,
) -> Sse<impl futures::Stream<Item = Result<SseEvent, Infallible>>> {
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
                        let e: &(dyn std::error::Error + 'static) = &e;
                        tracing::warn!(error = e, "relay stream read failed");
                        return None;
                    }
                }
            }
        },
    );
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}
