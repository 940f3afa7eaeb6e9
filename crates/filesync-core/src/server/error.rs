//! [`ApiError`]: the one place that maps errors to statuses and JSON bodies, and
//! [`layer_statuses`], which gives the bodyless answers of tower-http layers the same shape.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::Error;
use crate::contract::{ErrorBody, HeadBody};

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
    /// 504 `{"error":"Timed out"}`: a JSON route ran past `RouterConfig::request_timeout`.
    Timeout,
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
            ApiError::Timeout => (StatusCode::GATEWAY_TIMEOUT, "Timed out"),
            ApiError::BadRequest(message) => {
                return json(StatusCode::BAD_REQUEST, &ErrorBody { error: message });
            }
            ApiError::ServerAhead(head) => {
                return json(
                    StatusCode::CONFLICT,
                    &HeadBody {
                        error: Some("ServerAhead".into()),
                        head,
                    },
                );
            }
            ApiError::Internal(message, cause) => {
                // As `dyn Error`, so the subscriber records the cause's whole chain.
                let cause: &(dyn std::error::Error + 'static) = &cause;
                tracing::error!(error = cause, "{message}");
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

/// Refusals from the signer: what the request declares (e.g. a size over the limit) is the
/// client's error; anything else is the server's.
pub(super) fn signing_error(e: Error) -> ApiError {
    match e {
        Error::InvalidInput { what, reason, .. } => {
            ApiError::BadRequest(format!("invalid {what}: {reason}"))
        }
        e => ApiError::Internal("Signing failed", e),
    }
}

/// `body` as JSON with `status` and `Content-Type: application/json`.
pub(super) fn json<T: Serialize>(status: StatusCode, body: &T) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let mut r = (status, bytes).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// For `axum::middleware::map_response` around a JSON route's limit and timeout layers:
/// `RequestBodyLimitLayer`'s 413 (plain text) becomes [`ApiError::TooLarge`] and
/// `TimeoutLayer`'s 504 (empty) becomes [`ApiError::Timeout`]. The handlers inside answer
/// neither status in another shape, so the mapping only ever touches the layers' answers.
pub(super) async fn layer_statuses(response: Response) -> Response {
    match response.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::TooLarge.into_response(),
        StatusCode::GATEWAY_TIMEOUT => ApiError::Timeout.into_response(),
        _ => response,
    }
}

/// The authenticated routes' fallback (and their answer to an unrouted method): 404.
pub(super) async fn not_found() -> ApiError {
    ApiError::NotFound
}
