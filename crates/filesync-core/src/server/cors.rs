//! CORS for every route of both servers: tower-http's `CorsLayer` decides the origin
//! (`*` by default; the request's origin with `Access-Control-Allow-Credentials: true` when it
//! is in `RouterConfig::allowed_origins`) and answers preflights; `SetResponseHeaderLayer`s
//! add what this server has always sent on *every* response, not only on preflights, in its
//! exact spelling (`Access-Control-Allow-Methods`, `-Allow-Headers`, `-Max-Age`,
//! `Vary: Origin` with an allow-list, and `Cross-Origin-Resource-Policy` if configured).

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::Response;
use tower_http::cors::{AllowCredentials, AllowOrigin, Any, CorsLayer};
use tower_http::set_header::SetResponseHeaderLayer;

use super::RouterConfig;

/// The request headers every page may send: the contract's own, then
/// `RouterConfig::extra_allowed_headers`.
const BASE_ALLOWED_HEADERS: &str = "Content-Type, Authorization, X-Worker-Auth";

/// `Access-Control-Max-Age`: browsers cache a preflight for a day.
const MAX_AGE: &str = "86400";

/// `router` with the CORS headers `config` asks for on every response, and `OPTIONS` answered
/// with 204 (a preflight never reaches a route or its authentication). The file routes of
/// `filesync-r2` go through this too, so both servers send the same headers.
pub fn with_cors(router: Router, config: &RouterConfig) -> Router {
    let origins: Vec<HeaderValue> = config
        .allowed_origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    let credentialed = !config.allowed_origins.is_empty();
    // Vary is set below in its historical spelling (`Origin`), not by the CorsLayer.
    let cors = CorsLayer::new().vary(Vec::<HeaderName>::new());
    let cors = if credentialed {
        let allowed = origins.clone();
        cors.allow_origin(AllowOrigin::list(origins))
            .allow_credentials(AllowCredentials::predicate(move |origin, _| {
                allowed.contains(origin)
            }))
    } else {
        cors.allow_origin(Any)
    };
    let mut allow_headers = String::from(BASE_ALLOWED_HEADERS);
    for extra in &config.extra_allowed_headers {
        allow_headers.push_str(", ");
        allow_headers.push_str(extra);
    }
    let corp = config
        .cross_origin_resource_policy
        .as_deref()
        .and_then(|v| HeaderValue::from_str(v).ok());
    router
        .layer(cors)
        .layer(SetResponseHeaderLayer::overriding(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_str(&config.cors_methods).ok(),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_str(&allow_headers).ok(),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static(MAX_AGE),
        ))
        .layer(SetResponseHeaderLayer::appending(
            header::VARY,
            credentialed.then(|| HeaderValue::from_static("Origin")),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            HeaderName::from_static("cross-origin-resource-policy"),
            corp,
        ))
        .layer(middleware::from_fn(preflight_no_content))
}

/// The `CorsLayer` answers every `OPTIONS` itself with 200; this server has always said 204.
async fn preflight_no_content(request: Request, next: Next) -> Response {
    let preflight = request.method() == Method::OPTIONS;
    let mut response = next.run(request).await;
    if preflight && response.status() == StatusCode::OK {
        *response.status_mut() = StatusCode::NO_CONTENT;
    }
    response
}
