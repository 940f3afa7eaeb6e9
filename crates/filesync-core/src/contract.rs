//! The signer HTTP contract (SGN, S3, R2) and the event relay's, as serde types shared by the
//! clients and both servers so they cannot drift apart. Routes, relative to a base path
//! (default `/api`):
//!
//! | route | request | response |
//! |---|---|---|
//! | `GET /health` | — | 200 `{"status":"ok",…}` / 500 `{"status":"error",…}` |
//! | `POST /v1/sign/upload` | [`SignUploadRequest`] | [`SignUploadResponse`] |
//! | `POST /v1/sign/download` | [`KeyRequest`] | [`SignDownloadResponse`] |
//! | `POST /v1/delete` | [`KeyRequest`] | 204 |
//! | `POST /v1/stores/{storeId}/push` | [`PushRequest`] | 200 [`HeadBody`]; 409 [`HeadBody`] with `"error":"ServerAhead"` |
//! | `GET /v1/stores/{storeId}/pull?after=N&limit=L&wait=S` | — | [`PullResponse`] |
//! | `GET /v1/stores/{storeId}/stream` | `Last-Event-ID` or `?after=N` | server-sent events: `id` = `seqNum`, `data` = a [`RelayEvent`] |
//!
//! The relay routes exist only where a server is given an event log; a push is judged by
//! [`decide_append`] and carries at most [`MAX_PUSH_BATCH`] events. The protocol is described
//! in `docs/relay-protocol.md`.
//!
//! Errors are [`ErrorBody`]: `{"error":"Unauthorized"}` (401), `{"error":"Invalid request"}`
//! and `{"error":"Invalid key"}` (400), `{"error":"Forbidden"}` (403); a refused relay request
//! is 400 with its reason (e.g. `{"error":"invalid relay batch: …"}`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::schema::{Event, MetadataJson};
use crate::types::{ContentHash, ObjectKey, ParseError, StoreId};

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

/// An event as the relay carries it, in the original's JSON shape
/// `{name, args, seqNum, parentSeqNum, clientId, sessionId}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RelayEvent {
    /// `name` and `args`.
    #[serde(flatten)]
    pub event: Event,
    /// Its position in the store's total order.
    pub seq_num: u64,
    /// The position before it.
    pub parent_seq_num: u64,
    /// The client that committed it.
    pub client_id: String,
    /// The session (engine run) that committed it.
    pub session_id: String,
}

/// What a push achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushOutcome {
    /// Stored (or already stored: a repeated push is acknowledged again); the relay's head.
    Accepted {
        /// The relay's head after the push.
        head: u64,
    },
    /// The relay has events the client has not pulled: pull, rebase, push again.
    ServerAhead {
        /// The relay's head.
        head: u64,
    },
}

/// The most events one push may carry.
pub const MAX_PUSH_BATCH: usize = 1000;

/// The largest `seqNum`, `parentSeqNum`, pull `after` and `Last-Event-ID` a relay accepts:
/// `i64::MAX`, the largest position SQLite (and most databases) can store. Larger values are
/// refused (400), never wrapped to the start of the log.
pub const MAX_SEQ_NUM: u64 = i64::MAX as u64;

/// The most bytes of event JSON one read of a relay log returns (a pull page, a stream
/// batch): 1 MiB, counted as the page's `events` array (`[`, each event's compact JSON, the
/// commas, `]`). A read always returns at least one event when there is one after `after`,
/// so a page may exceed this only by holding a single event larger than it.
pub const MAX_PAGE_BYTES: usize = 1 << 20;

/// The largest `metadataJson` string a relay stores: 64 KiB (UTF-8 bytes). It must also be
/// valid JSON.
pub const MAX_METADATA_JSON_BYTES: usize = 64 * 1024;

/// The longest `clientId` or `sessionId` a relay stores: 128 bytes.
pub const MAX_CLIENT_ID_LEN: usize = 128;

/// Whether `c` may appear in a `clientId` or `sessionId`: ASCII letters and digits, `-`, `_`,
/// `.` and `:`. LiveStore's ids (nanoid, alphabet `A-Za-z0-9_-`) and this crate's (UUIDs)
/// use a subset.
pub fn is_client_id_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':')
}

/// Check a `clientId` or `sessionId` (`field` names it in the error): 1 to
/// [`MAX_CLIENT_ID_LEN`] characters allowed by [`is_client_id_char`].
fn check_client_id(field: &str, id: &str) -> crate::Result<()> {
    if id.is_empty() || id.len() > MAX_CLIENT_ID_LEN {
        return Err(crate::Error::invalid(
            "relay event",
            format!("{field} must be 1 to {MAX_CLIENT_ID_LEN} characters"),
        ));
    }
    if !id.chars().all(is_client_id_char) {
        return Err(crate::Error::invalid(
            "relay event",
            format!("{field} may hold only ASCII letters, digits, '-', '_', '.' and ':'"),
        ));
    }
    Ok(())
}

/// The bounds every relay applies to each pushed event, whatever its position: `seqNum` and
/// `parentSeqNum` at most [`MAX_SEQ_NUM`]; `clientId` and `sessionId` as
/// [`is_client_id_char`] and [`MAX_CLIENT_ID_LEN`] say; a `metadataJson` string at most
/// [`MAX_METADATA_JSON_BYTES`] and valid JSON. Applied by [`decide_append`].
pub fn check_relay_event(e: &RelayEvent) -> crate::Result<()> {
    if e.seq_num > MAX_SEQ_NUM || e.parent_seq_num > MAX_SEQ_NUM {
        return Err(crate::Error::invalid(
            "relay event",
            format!("seqNum and parentSeqNum must be at most {MAX_SEQ_NUM}"),
        ));
    }
    check_client_id("clientId", &e.client_id)?;
    check_client_id("sessionId", &e.session_id)?;
    let metadata = match &e.event {
        Event::FileCreated(a) => &a.metadata_json,
        Event::FileUpdated(a) => &a.metadata_json,
        _ => return Ok(()),
    };
    if let MetadataJson::Value(json) = metadata {
        if json.len() > MAX_METADATA_JSON_BYTES {
            return Err(crate::Error::invalid(
                "relay event",
                format!("metadataJson is over {MAX_METADATA_JSON_BYTES} bytes"),
            ));
        }
        serde_json::from_str::<serde::de::IgnoredAny>(json).map_err(|err| {
            crate::Error::invalid_because("relay event", "metadataJson is not valid JSON", err)
        })?;
    }
    Ok(())
}

/// Counts the bytes written to it.
struct ByteCount(usize);

impl std::io::Write for ByteCount {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The length of `e`'s compact JSON, as [`MAX_PAGE_BYTES`] counts it.
pub fn event_json_len(e: &RelayEvent) -> crate::Result<usize> {
    let mut count = ByteCount(0);
    serde_json::to_writer(&mut count, e)
        .map_err(|err| crate::Error::unencodable("relay event", err))?;
    Ok(count.0)
}

/// A read's page, taken from `events` (in order, lazily): at most `limit` events, and no
/// more than [`MAX_PAGE_BYTES`] of JSON, except that the first event is always taken. Every
/// relay log builds its reads with it; it stops pulling from `events` at the first event
/// beyond the budget.
pub fn collect_page(
    events: impl IntoIterator<Item = crate::Result<RelayEvent>>,
    limit: usize,
) -> crate::Result<Vec<RelayEvent>> {
    let mut page = Vec::new();
    // `[` and `]`, then each event and its separator.
    let mut bytes = 1;
    for e in events.into_iter().take(limit) {
        let e = e?;
        bytes += event_json_len(&e)? + 1;
        if bytes > MAX_PAGE_BYTES && !page.is_empty() {
            break;
        }
        page.push(e);
    }
    Ok(page)
}

/// `POST /v1/stores/{storeId}/push`: `{"batch": [...]}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushRequest {
    /// Events in order; the first one's `parentSeqNum` must be the relay's head.
    pub batch: Vec<RelayEvent>,
}

/// 200 to a push: `{"head": N}`; 409 adds `"error":"ServerAhead"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeadBody {
    /// `"ServerAhead"` on a 409.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The relay's head for the store.
    pub head: u64,
}

/// `GET /v1/stores/{storeId}/pull?after=N&limit=L&wait=S`: `{"events": [...], "head": N}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullResponse {
    /// Events after `after`, in order.
    pub events: Vec<RelayEvent>,
    /// The relay's head.
    pub head: u64,
}

/// What a relay does with a pushed batch, decided by [`decide_append`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendDecision {
    /// Store the batch after the head.
    Append,
    /// Answer without storing: already stored (a repeated push), or the client is behind.
    Done(PushOutcome),
}

/// The one rule every relay log applies to a push: every event within the bounds of
/// [`check_relay_event`]; sequence numbers must be contiguous from
/// `parentSeqNum + 1`; a batch starting at the head is appended; one starting earlier is
/// acknowledged again if exactly those events (same client, same event, same position) are
/// stored, else the client is behind (`ServerAhead`); one starting beyond the head is invalid.
/// `stored(seq)` returns the stored event at `seq`; its error (the log could not be read) is
/// returned as is.
pub fn decide_append(
    head: u64,
    batch: &[RelayEvent],
    mut stored: impl FnMut(u64) -> crate::Result<Option<RelayEvent>>,
) -> crate::Result<AppendDecision> {
    let Some(first) = batch.first() else {
        return Ok(AppendDecision::Done(PushOutcome::Accepted { head }));
    };
    if batch.len() > MAX_PUSH_BATCH {
        return Err(crate::Error::invalid(
            "relay batch",
            format!("more than {MAX_PUSH_BATCH} events"),
        ));
    }
    for (i, e) in batch.iter().enumerate() {
        check_relay_event(e)?;
        // Both are at most `MAX_SEQ_NUM` (checked above), so nothing here overflows.
        let want = first.parent_seq_num + 1 + i as u64;
        if e.seq_num != want || e.parent_seq_num + 1 != want {
            return Err(crate::Error::invalid(
                "relay batch",
                "sequence numbers are not contiguous",
            ));
        }
        if !e.event.is_synced() {
            return Err(crate::Error::invalid(
                "relay batch",
                format!("{} is client-only and is never synced", e.event.name()),
            ));
        }
    }
    if first.parent_seq_num > head {
        return Err(crate::Error::invalid(
            "relay batch",
            "parentSeqNum is beyond the relay's head",
        ));
    }
    if first.parent_seq_num == head {
        return Ok(AppendDecision::Append);
    }
    let mut same = true;
    for e in batch {
        if !stored(e.seq_num)?.is_some_and(|s| s.client_id == e.client_id && s.event == e.event) {
            same = false;
            break;
        }
    }
    Ok(AppendDecision::Done(if same {
        PushOutcome::Accepted { head }
    } else {
        PushOutcome::ServerAhead { head }
    }))
}

/// A request key made safe (S3-6): leading `/` stripped, then validated as an [`ObjectKey`]
/// (non-empty; no `.`, `..` or empty segments; no `\` or control characters).
pub fn parse_request_key(raw: &str) -> Result<ObjectKey, ParseError> {
    ObjectKey::parse(raw.trim_start_matches('/'))
}

/// The hash a content-addressed key names (KEY, ENG-14): `Some` for `<storeId>/<hash>` with a
/// valid store id and 64 lower-case hex characters, `None` for any other key. Bytes stored
/// under such a key must hash to it; both servers refuse others (400 `BadDigest`).
pub fn content_address(key: &ObjectKey) -> Option<ContentHash> {
    let (store, hash) = key.as_str().split_once('/')?;
    StoreId::parse(store).ok()?;
    ContentHash::parse(hash).ok()
}

/// The longest `contentType` a sign-upload request may declare, in bytes.
pub const MAX_CONTENT_TYPE_LEN: usize = 256;

/// Check a declared `contentType`: printable ASCII (no control characters: it becomes an HTTP
/// header, signed by S3 and stored by the proxy) and at most [`MAX_CONTENT_TYPE_LEN`] bytes.
pub fn check_content_type(raw: &str) -> Result<(), ParseError> {
    let reason = if raw.len() > MAX_CONTENT_TYPE_LEN {
        "is longer than 256 bytes"
    } else if raw.chars().any(char::is_control) {
        "contains control characters"
    } else if !raw.is_ascii() {
        "is not ASCII"
    } else {
        return Ok(());
    };
    Err(ParseError::new("content type", raw, reason))
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

    /// A `v1.FileDeleted` at `seq` whose `clientId` is `client`.
    fn deleted(seq: u64, client: &str) -> RelayEvent {
        serde_json::from_value(serde_json::json!({
            "name": "v1.FileDeleted",
            "args": {"id": format!("f{seq}"), "deletedAt": "2026-01-04T08:00:00.000Z"},
            "seqNum": seq, "parentSeqNum": seq - 1, "clientId": client, "sessionId": "s",
        }))
        .unwrap()
    }

    #[test]
    fn a_page_holds_at_least_one_event_and_at_most_limit() {
        // An event larger than the whole budget (only old or foreign data can be) still
        // comes alone, so a reader paging by seqNum never stalls.
        let huge = deleted(1, &"c".repeat(MAX_PAGE_BYTES));
        let events = || vec![huge.clone(), deleted(2, "c"), deleted(3, "c")];
        let page = collect_page(events().into_iter().map(Ok), 10).unwrap();
        assert_eq!(page, vec![huge.clone()]);
        let small = || (1..=5).map(|n| Ok(deleted(n, "c")));
        assert_eq!(collect_page(small(), 3).unwrap().len(), 3);
        assert!(collect_page(small(), 0).unwrap().is_empty());
        // A source error is returned as is.
        let failing = vec![Ok(deleted(1, "c")), Err(crate::Error::invalid("x", "y"))];
        assert!(collect_page(failing, 10).is_err());
    }

    #[test]
    fn content_addresses_and_content_types() {
        let h = "ab".repeat(32);
        let key = |s: &str| ObjectKey::parse(s).unwrap();
        assert_eq!(
            content_address(&key(&format!("s-1/{h}"))).map(|c| c.to_hex()),
            Some(h.clone())
        );
        for other in [
            format!("s/{}", h.to_uppercase()),
            format!("s/{h}/x"),
            format!("a/b/{h}"),
            format!("s/{h}0"),
            "s/hello".to_owned(),
            h.clone(),
        ] {
            assert_eq!(content_address(&key(&other)), None, "{other}");
        }
        assert!(check_content_type("image/png; charset=utf-8").is_ok());
        for bad in [
            "text/plain\r\nx-evil: 1",
            "a\u{7f}",
            "t\u{0}",
            "caf\u{e9}/x",
        ] {
            assert!(check_content_type(bad).is_err(), "{bad:?}");
        }
        assert!(check_content_type(&"a".repeat(MAX_CONTENT_TYPE_LEN + 1)).is_err());
    }

    #[test]
    fn s3_6_request_keys() {
        assert_eq!(parse_request_key("//s/abc").unwrap().as_str(), "s/abc");
        for bad in ["", "/", "s/../x", "s/./x", "s//x", "..", "a\\b"] {
            assert!(parse_request_key(bad).is_err(), "{bad:?}");
        }
    }
}
