//! Bearer tokens: [`Secret`], the operator syntax ([`TokenGrant`]), and [`Tokens`], the
//! constant-time check every authenticated route goes through.

use axum::http::{HeaderMap, header};
use sha2::Digest;
use subtle::ConstantTimeEq;

use crate::types::ObjectKey;
use crate::{Error, Result};

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

    /// The prefixes granted to the request's token (`Authorization: Bearer <t>`, the scheme in
    /// any case, or `X-Worker-Auth: <t>`), or `None` (also for a request with two
    /// `Authorization` or two `X-Worker-Auth` headers). With no tokens configured every request is granted
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

/// The token a request carries: `Authorization: Bearer <t>` (the scheme in any case, RFC
/// 7235), else `X-Worker-Auth: <t>`. A request with more than one `Authorization` or
/// `X-Worker-Auth` header carries none: which one counts would be a guess.
fn token_from(headers: &HeaderMap) -> Option<&str> {
    let only = |name| {
        let mut values = headers.get_all(name).iter();
        match (values.next(), values.next()) {
            (Some(v), None) => Ok(v.to_str().ok()),
            (None, _) => Ok(None),
            (Some(_), Some(_)) => Err(()),
        }
    };
    let authorization = only(header::AUTHORIZATION.as_str()).ok()?;
    let worker = only("x-worker-auth").ok()?;
    if let Some(t) = authorization.and_then(bearer_token) {
        return Some(t);
    }
    worker.map(str::trim)
}

/// The token of a `Bearer <t>` credential, the scheme matched case-insensitively.
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.append(*name, HeaderValue::from_static(value));
        }
        h
    }

    #[test]
    fn bearer_scheme_is_case_insensitive_and_duplicates_carry_no_token() {
        for v in [
            "Bearer t",
            "bearer t",
            "BEARER t",
            "bEaReR   t ",
            " Bearer t",
        ] {
            assert_eq!(
                token_from(&headers(&[("authorization", v)])),
                Some("t"),
                "{v:?}"
            );
        }
        for v in ["Basic t", "Bearer", "Bearert", "t"] {
            assert_eq!(token_from(&headers(&[("authorization", v)])), None, "{v:?}");
        }
        assert_eq!(token_from(&headers(&[("x-worker-auth", " t ")])), Some("t"));
        let two = [("authorization", "Bearer t"), ("authorization", "Bearer t")];
        assert_eq!(token_from(&headers(&two)), None);
        let two = [
            ("authorization", "Bearer t"),
            ("x-worker-auth", "a"),
            ("x-worker-auth", "b"),
        ];
        assert_eq!(token_from(&headers(&two)), None);
    }
}
