//! The signer HTTP contract (SGN, S3, R2) as serde types, shared by the client and both
//! servers so they cannot drift apart. Routes, relative to a base path (default `/api`):
//!
//! | route | request | response |
//! |---|---|---|
//! | `GET /health` | — | 200 `{"status":"ok",…}` / 500 `{"status":"error",…}` |
//! | `POST /v1/sign/upload` | [`SignUploadRequest`] | [`SignUploadResponse`] |
//! | `POST /v1/sign/download` | [`KeyRequest`] | [`SignDownloadResponse`] |
//! | `POST /v1/delete` | [`KeyRequest`] | 204 |
//!
//! Errors are [`ErrorBody`]: `{"error":"Unauthorized"}` (401), `{"error":"Invalid request"}`
//! and `{"error":"Invalid key"}` (400), `{"error":"Forbidden"}` (403).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::types::{ObjectKey, ParseError};

/// `POST /v1/sign/upload` (SGN-3). `contentHash` (hex SHA-256) is this project's addition: a
/// signer may bind it (and the length and type) into the signed request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SignUploadRequest {
    /// The object key, `<storeId>/<hash>`.
    pub key: String,
    /// The body's MIME type, only when non-empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// The body's length in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_length: Option<u64>,
    /// The body's SHA-256, 64 lower-case hex characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_hash: Option<String>,
}

/// `POST /v1/sign/download` and `POST /v1/delete` (SGN-5, SGN-7).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRequest {
    /// The object key.
    pub key: String,
}

/// The HTTP method of a signed upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum UploadMethod {
    /// `PUT` the body.
    #[serde(rename = "PUT")]
    Put,
    /// `POST` the body.
    #[serde(rename = "POST")]
    Post,
}

/// The answer to `sign/upload` (SGN-3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SignUploadResponse {
    /// `PUT` or `POST`.
    pub method: UploadMethod,
    /// Where to send the body.
    pub url: String,
    /// Headers the upload must carry exactly (signed ones included).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<BTreeMap<String, String>>,
    /// When the URL stops working, ISO-8601.
    pub expires_at: String,
}

/// The answer to `sign/download` (SGN-5).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SignDownloadResponse {
    /// Where to `GET` the object.
    pub url: String,
    /// Headers the download must carry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<BTreeMap<String, String>>,
    /// When the URL stops working, ISO-8601.
    pub expires_at: String,
}

/// Every error body: `{"error": "..."}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The message: `Unauthorized`, `Invalid request`, `Invalid key`, `Forbidden`, …
    pub error: String,
}

/// A request key made safe (S3-6): leading `/` stripped, then validated as an [`ObjectKey`]
/// (non-empty; no `.`, `..` or empty segments; no `\` or control characters).
pub fn parse_request_key(raw: &str) -> Result<ObjectKey, ParseError> {
    ObjectKey::parse(raw.trim_start_matches('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sgn_3_request_and_response_json() {
        let req = SignUploadRequest {
            key: "s/abc".into(),
            content_type: Some("text/plain".into()),
            content_length: Some(5),
            content_hash: None,
        };
        assert_eq!(
            serde_json::to_string(&req).unwrap(),
            r#"{"key":"s/abc","contentType":"text/plain","contentLength":5}"#
        );
        let resp: SignUploadResponse = serde_json::from_str(
            r#"{"method":"PUT","url":"https://x/s/abc","expiresAt":"2026-01-01T00:15:00.000Z"}"#,
        )
        .unwrap();
        assert_eq!((resp.method, resp.headers), (UploadMethod::Put, None));
        assert!(
            serde_json::from_str::<SignUploadResponse>(
                r#"{"method":"GET","url":"u","expiresAt":"x"}"#
            )
            .is_err()
        );
    }

    #[test]
    fn s3_6_request_keys() {
        assert_eq!(parse_request_key("//s/abc").unwrap().as_str(), "s/abc");
        for bad in ["", "/", "s/../x", "s/./x", "s//x", "..", "a\\b"] {
            assert!(parse_request_key(bad).is_err(), "{bad:?}");
        }
    }
}
