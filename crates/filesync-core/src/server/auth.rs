//! Bearer authentication as middleware: every route of the authenticated router (and its
//! fallback, so unknown routes answer 401 before 404: S3-5) passes [`require_token`] first.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{ApiError, Tokens};

/// The key prefixes the request's token grants (empty: any key), for the handlers behind
/// [`require_token`] (an `Extension`).
#[derive(Debug, Clone)]
pub(super) struct Grant(pub(super) Vec<String>);

/// 401 unless the request carries a configured token (compared in constant time by
/// [`Tokens::authorize`]); otherwise the token's [`Grant`] is attached to the request.
pub(super) async fn require_token(
    State(tokens): State<Arc<Tokens>>,
    mut request: Request,
    next: Next,
) -> Response {
    match tokens.authorize(request.headers()) {
        Some(prefixes) => {
            request.extensions_mut().insert(Grant(prefixes));
            next.run(request).await
        }
        None => ApiError::Unauthorized.into_response(),
    }
}
