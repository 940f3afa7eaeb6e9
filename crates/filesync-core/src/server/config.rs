//! [`RouterConfig`]: how the routers behave.

use std::time::Duration;

use super::TokenGrant;

/// How the router behaves. Defaults are safe and match the original where it is safe.
#[derive(Debug, Clone)]
pub struct RouterConfig {
    /// Where the routes live (default `/api`; a missing leading `/` is added).
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
    /// How long a JSON route (health, the signer routes, a relay push) may take before it
    /// answers 504 `{"error":"Timed out"}` (default 30 s). A relay pull gets this on top of
    /// its 30 s long-poll; the event stream has none.
    pub request_timeout: Duration,
    /// `Access-Control-Allow-Methods` (default `GET, POST, DELETE, OPTIONS`, as S3-11; the
    /// byte proxy adds `PUT`, as R2-12).
    pub cors_methods: String,
    /// `Cross-Origin-Resource-Policy` on every response, if set (R2-12: `cross-origin`).
    pub cross_origin_resource_policy: Option<String>,
    /// The `version` in `/health`'s body: the server crate's version (default
    /// `filesync-core`'s; the server crates set their own).
    pub version: &'static str,
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
            request_timeout: Duration::from_secs(30),
            cors_methods: "GET, POST, DELETE, OPTIONS".into(),
            cross_origin_resource_policy: None,
            version: env!("CARGO_PKG_VERSION"),
        }
    }
}

impl RouterConfig {
    /// The effective URL lifetime: `max_expiry` clamped to 1..=3600 s (S3-7).
    pub fn expiry(&self) -> Duration {
        self.max_expiry
            .clamp(Duration::from_secs(1), Duration::from_secs(3600))
    }

    /// Where the routes are nested: `base_path` with one leading `/` and no trailing one;
    /// empty for the root.
    pub(super) fn nest_path(&self) -> String {
        let trimmed = self.base_path.trim_matches('/');
        if trimmed.is_empty() {
            String::new()
        } else {
            format!("/{trimmed}")
        }
    }
}
