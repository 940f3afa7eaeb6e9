//! Validated newtypes, parsed at the edge.
//!
//! Untrusted strings become a [`FileId`], [`ContentHash`], [`StoreId`], [`ObjectKey`] or
//! [`LocalPath`] where they enter (serde, CLI, HTTP) or fail there with a [`ParseError`]; inside
//! the crate, functions take these types, never `&str`. Deserializing validates, so a malformed
//! value in an event or a row is an error, never a panic or a silently accepted string.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A value that failed validation: what was being parsed, the (truncated) input and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} {input:?}: {reason}")]
pub struct ParseError {
    /// The kind of value, e.g. `"content hash"`.
    pub what: &'static str,
    /// The rejected input, truncated to 80 characters.
    pub input: String,
    /// Why it was rejected.
    pub reason: &'static str,
}

impl ParseError {
    pub(crate) fn new(what: &'static str, input: &str, reason: &'static str) -> Self {
        Self {
            what,
            input: input.chars().take(80).collect(),
            reason,
        }
    }
}

macro_rules! string_newtype {
    ($(#[$meta:meta])* $name:ident, $what:literal, $check:path) => {
        $(#[$meta])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Parse and validate.
            pub fn parse(input: impl Into<String>) -> Result<Self, ParseError> {
                let input = input.into();
                match $check(&input) {
                    Ok(()) => Ok(Self(input)),
                    Err(reason) => Err(ParseError::new($what, &input, reason)),
                }
            }

            /// The value as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = ParseError;
            fn from_str(s: &str) -> Result<Self, ParseError> {
                Self::parse(s)
            }
        }

        impl TryFrom<String> for $name {
            type Error = ParseError;
            fn try_from(s: String) -> Result<Self, ParseError> {
                Self::parse(s)
            }
        }

        impl TryFrom<&str> for $name {
            type Error = ParseError;
            fn try_from(s: &str) -> Result<Self, ParseError> {
                Self::parse(s)
            }
        }

        impl From<$name> for String {
            fn from(v: $name) -> String {
                v.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.0)
            }
        }
    };
}

/// Longest accepted [`FileId`], in bytes.
pub const MAX_FILE_ID_LEN: usize = 256;
/// Longest accepted [`ObjectKey`], in bytes (S3's limit).
pub const MAX_OBJECT_KEY_LEN: usize = 1024;
/// Longest accepted [`StoreId`], in bytes.
pub const MAX_STORE_ID_LEN: usize = 200;
/// Longest accepted [`LocalPath`], in bytes.
pub const MAX_LOCAL_PATH_LEN: usize = 4096;

fn check_printable(s: &str) -> Result<(), &'static str> {
    if s.chars().any(char::is_control) {
        return Err("contains control characters");
    }
    Ok(())
}

fn check_file_id(s: &str) -> Result<(), &'static str> {
    if s.is_empty() {
        return Err("is empty");
    }
    if s.len() > MAX_FILE_ID_LEN {
        return Err("is longer than 256 bytes");
    }
    if s.trim() != s {
        return Err("has leading or trailing whitespace");
    }
    check_printable(s)
}

string_newtype!(
    /// A file's identity: opaque, non-empty, at most 256 bytes, printable. New ids are random
    /// UUIDv4s ([`FileId::random`]), as in the original, but any id another client chose is accepted.
    FileId,
    "file id",
    check_file_id
);

impl FileId {
    /// A new random UUIDv4 id, formatted like `crypto.randomUUID()`.
    pub fn random() -> Self {
        let mut bytes = [0u8; 16];
        crate::rt::fill_random(&mut bytes);
        Self(
            uuid::Builder::from_random_bytes(bytes)
                .into_uuid()
                .hyphenated()
                .to_string(),
        )
    }
}

fn check_store_id(s: &str) -> Result<(), &'static str> {
    if s.is_empty() {
        return Err("is empty");
    }
    if s.len() > MAX_STORE_ID_LEN {
        return Err("is longer than 200 bytes");
    }
    if s == "." || s == ".." {
        return Err("is a relative path segment");
    }
    if !s
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Err("may only contain A-Z, a-z, 0-9, '.', '_' and '-'");
    }
    Ok(())
}

string_newtype!(
    /// A store's id as it appears in local paths and remote keys: `[A-Za-z0-9._-]+`, never `.` or
    /// `..`. [`StoreId::sanitize`] derives it from any application store id the way the original does
    /// (CFG-5: every other character becomes `_`).
    StoreId,
    "store id",
    check_store_id
);

impl StoreId {
    /// Replace every character outside `[A-Za-z0-9._-]` with `_` (CFG-5), then validate.
    pub fn sanitize(raw: &str) -> Result<Self, ParseError> {
        // The original runs `replace(/[^A-Za-z0-9._-]/g, "_")` on a UTF-16 string: one `_`
        // per UTF-16 unit, so a character outside the BMP becomes two.
        let mut s = String::with_capacity(raw.len());
        for c in raw.chars() {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                s.push(c);
            } else {
                s.extend(std::iter::repeat_n('_', c.len_utf16()));
            }
        }
        Self::parse(s).map_err(|e| ParseError::new("store id", raw, e.reason))
    }
}

/// Checks shared by [`ObjectKey`] and [`LocalPath`]: `/`-separated, relative, no empty, `.` or
/// `..` segments, no backslashes or control characters.
fn check_relative_path(s: &str, max: usize) -> Result<(), &'static str> {
    if s.is_empty() {
        return Err("is empty");
    }
    if s.len() > max {
        return Err("is too long");
    }
    if s.starts_with('/') {
        return Err("starts with '/'");
    }
    if s.contains('\\') {
        return Err("contains a backslash");
    }
    check_printable(s)?;
    for seg in s.split('/') {
        match seg {
            "" => return Err("has an empty segment"),
            "." | ".." => return Err("has a '.' or '..' segment"),
            _ => {}
        }
    }
    Ok(())
}

fn check_object_key(s: &str) -> Result<(), &'static str> {
    check_relative_path(s, MAX_OBJECT_KEY_LEN)
}

string_newtype!(
    /// A remote object key (KEY): normally `<storeId>/<sha256hex>`. Never starts with `/`, has no
    /// empty, `.` or `..` segments, no `\`, no control characters, at most 1024 bytes.
    ObjectKey,
    "object key",
    check_object_key
);

impl ObjectKey {
    /// The content-addressed key of `hash` in `store`: `<storeId>/<hash>` (ENG-14).
    pub fn for_content(store: &StoreId, hash: &ContentHash) -> Self {
        Self(format!("{store}/{hash}"))
    }

    /// Whether the key starts with `prefix` (a plain string prefix, as the signers check).
    pub fn has_prefix(&self, prefix: &str) -> bool {
        self.0.starts_with(prefix)
    }
}

fn check_local_path(s: &str) -> Result<(), &'static str> {
    check_relative_path(s, MAX_LOCAL_PATH_LEN)
}

string_newtype!(
    /// A path relative to a [`FileSystem`](crate::fs::FileSystem) root, `/`-separated. It cannot
    /// escape the root: no leading `/`, no `.` or `..` or empty segments, no `\`.
    LocalPath,
    "local path",
    check_local_path
);

impl LocalPath {
    /// Append one or more `/`-separated segments, validating the result.
    pub fn join(&self, rest: &str) -> Result<Self, ParseError> {
        Self::parse(format!("{}/{rest}", self.0))
    }

    /// The parent directory, or `None` for a single segment.
    pub fn parent(&self) -> Option<LocalPath> {
        self.0.rfind('/').map(|i| Self(self.0[..i].to_owned()))
    }

    /// The last segment.
    pub fn file_name(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or(&self.0)
    }

    /// The segments, in order.
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }
}

/// The SHA-256 of a file's bytes: 64 lower-case hex characters on the wire, as in the original.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ContentHash([u8; 32]);

impl ContentHash {
    /// The hash from its 32 raw bytes.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The 32 raw bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Parse 64 lower-case hex characters.
    pub fn parse(input: &str) -> Result<Self, ParseError> {
        if input.len() != 64 {
            return Err(ParseError::new(
                "content hash",
                input,
                "must be 64 hex characters",
            ));
        }
        if !input
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        {
            return Err(ParseError::new(
                "content hash",
                input,
                "must be lower-case hex",
            ));
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(input, &mut out)
            .map_err(|_| ParseError::new("content hash", input, "must be lower-case hex"))?;
        Ok(Self(out))
    }

    /// The hash as 64 lower-case hex characters.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl FromStr for ContentHash {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        Self::parse(s)
    }
}

impl TryFrom<String> for ContentHash {
    type Error = ParseError;
    fn try_from(s: String) -> Result<Self, ParseError> {
        Self::parse(&s)
    }
}

impl From<ContentHash> for String {
    fn from(h: ContentHash) -> String {
        h.to_hex()
    }
}

impl fmt::Display for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ContentHash({}…)", &self.to_hex()[..12])
    }
}

/// A point in time with millisecond precision, as JavaScript's `Date` holds it.
///
/// Events carry it as an ISO-8601 string (`2026-01-03T20:30:24.642Z`, [`iso8601`]); rows as
/// integer epoch milliseconds ([`epoch_ms`]), as the original's schema does (SCH-11).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Timestamp(i64);

/// The earliest and latest instants JavaScript's `Date` can hold (±8.64e15 ms).
const JS_DATE_LIMIT_MS: i64 = 8_640_000_000_000_000;

impl Timestamp {
    /// The Unix epoch, `1970-01-01T00:00:00.000Z`.
    pub const EPOCH: Timestamp = Timestamp(0);

    /// From epoch milliseconds; fails outside the range of a JavaScript `Date`.
    pub fn from_millis(ms: i64) -> Result<Self, ParseError> {
        if !(-JS_DATE_LIMIT_MS..=JS_DATE_LIMIT_MS).contains(&ms) {
            return Err(ParseError::new(
                "timestamp",
                &ms.to_string(),
                "is outside the range of a JavaScript Date",
            ));
        }
        Ok(Self(ms))
    }

    /// Epoch milliseconds.
    pub const fn as_millis(&self) -> i64 {
        self.0
    }

    /// The current time, from [`rt::now`](crate::rt::now).
    pub fn now() -> Self {
        Self::from_system_time(crate::rt::now())
    }

    /// From a [`SystemTime`](crate::rt::SystemTime), truncated to milliseconds.
    pub fn from_system_time(t: crate::rt::SystemTime) -> Self {
        match t.duration_since(crate::rt::UNIX_EPOCH) {
            Ok(d) => Self(i64::try_from(d.as_millis()).unwrap_or(JS_DATE_LIMIT_MS)),
            Err(e) => Self(-i64::try_from(e.duration().as_millis()).unwrap_or(JS_DATE_LIMIT_MS)),
        }
    }

    /// Parse an RFC 3339 / ISO-8601 date-time (any offset; sub-millisecond digits are dropped),
    /// including the signed six-digit years `toISOString` writes outside 0000..=9999.
    pub fn parse_iso8601(input: &str) -> Result<Self, ParseError> {
        let bad = || ParseError::new("timestamp", input, "is not an ISO-8601 date-time");
        let ms = match Self::split_extended_year(input) {
            None => chrono::DateTime::parse_from_rfc3339(input)
                .map_err(|_| bad())?
                .timestamp_millis(),
            Some((year, rest)) => {
                // Parse the rest with a leap placeholder year, then put the real year back.
                let dt = chrono::DateTime::parse_from_rfc3339(&format!("2000{rest}"))
                    .map_err(|_| bad())?;
                let local = dt.naive_local();
                let date = chrono::NaiveDate::from_ymd_opt(
                    year,
                    chrono::Datelike::month(&local),
                    chrono::Datelike::day(&local),
                )
                .ok_or_else(bad)?;
                let naive = date.and_time(local.time());
                naive.and_utc().timestamp_millis() - i64::from(dt.offset().local_minus_utc()) * 1000
            }
        };
        Self::from_millis(ms).map_err(|e| ParseError::new("timestamp", input, e.reason))
    }

    /// `+YYYYYY-…` or `-YYYYYY-…`: the year and the rest starting at its `-`.
    fn split_extended_year(input: &str) -> Option<(i32, &str)> {
        let sign = match input.as_bytes().first()? {
            b'+' => 1,
            b'-' => -1,
            _ => return None,
        };
        let digits = input.get(1..7)?;
        if !digits.bytes().all(|b| b.is_ascii_digit()) || !input[7..].starts_with('-') {
            return None;
        }
        let year: i32 = digits.parse().ok()?;
        if sign < 0 && year == 0 {
            return None; // "-000000" is not a valid year in ECMAScript
        }
        Some((sign * year, &input[7..]))
    }

    /// Format as JavaScript's `Date.prototype.toISOString()` does: `YYYY-MM-DDTHH:mm:ss.sssZ`
    /// (with a signed six-digit year outside 0000..=9999).
    pub fn to_iso8601(&self) -> String {
        let Some(dt) = chrono::DateTime::from_timestamp_millis(self.0) else {
            return String::from("invalid date");
        };
        let year = chrono::Datelike::year(&dt);
        if (0..=9999).contains(&year) {
            dt.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
        } else {
            let sign = if year < 0 { '-' } else { '+' };
            format!(
                "{sign}{:06}{}",
                year.unsigned_abs(),
                dt.format("-%m-%dT%H:%M:%S%.3fZ")
            )
        }
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_iso8601())
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Timestamp({})", self.to_iso8601())
    }
}

/// Serde for a [`Timestamp`] as an ISO-8601 string (event arguments).
pub mod iso8601 {
    use super::Timestamp;
    use serde::{Deserialize, Deserializer, Serializer};

    /// Serialize as `YYYY-MM-DDTHH:mm:ss.sssZ`.
    pub fn serialize<S: Serializer>(t: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&t.to_iso8601())
    }

    /// Deserialize from an ISO-8601 string.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Timestamp, D::Error> {
        let s = String::deserialize(d)?;
        Timestamp::parse_iso8601(&s).map_err(serde::de::Error::custom)
    }
}

/// Serde for a [`Timestamp`] as integer epoch milliseconds (table rows).
pub mod epoch_ms {
    use super::Timestamp;
    use serde::{Deserialize, Deserializer, Serializer};

    /// Serialize as an integer.
    pub fn serialize<S: Serializer>(t: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i64(t.as_millis())
    }

    /// Deserialize from an integer.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Timestamp, D::Error> {
        let ms = i64::deserialize(d)?;
        Timestamp::from_millis(ms).map_err(serde::de::Error::custom)
    }

    /// The same for `Option<Timestamp>` (`null` when absent).
    pub mod option {
        use super::Timestamp;
        use serde::{Deserialize, Deserializer, Serializer};

        /// Serialize `Some` as an integer and `None` as `null`.
        pub fn serialize<S: Serializer>(t: &Option<Timestamp>, s: S) -> Result<S::Ok, S::Error> {
            match t {
                Some(t) => s.serialize_i64(t.as_millis()),
                None => s.serialize_none(),
            }
        }

        /// Deserialize an integer or `null`.
        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Timestamp>, D::Error> {
            Option::<i64>::deserialize(d)?
                .map(|ms| Timestamp::from_millis(ms).map_err(serde::de::Error::custom))
                .transpose()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_hash_accepts_only_64_lowercase_hex() {
        let ok = "afb166d8".repeat(8);
        assert_eq!(ContentHash::parse(&ok).unwrap().to_hex(), ok);
        for bad in [
            "",
            "abc",
            &"A".repeat(64),
            &"g".repeat(64),
            &"a".repeat(63),
            &"a".repeat(65),
        ] {
            let err = ContentHash::parse(bad).unwrap_err();
            assert_eq!(err.what, "content hash");
        }
        let de: Result<ContentHash, _> = serde_json::from_str("\"XYZ\"");
        assert!(de.is_err());
    }

    #[test]
    fn object_key_rejects_escapes_key_rules() {
        assert!(ObjectKey::parse("store/abc").is_ok());
        for bad in [
            "", "/a", "a//b", "a/./b", "a/../b", "..", ".", "a/", "a\\b", "a\nb",
        ] {
            assert!(ObjectKey::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert!(ObjectKey::parse("a".repeat(1025)).is_err());
        let h = ContentHash::from_bytes([0xab; 32]);
        let s = StoreId::parse("s1").unwrap();
        assert_eq!(
            ObjectKey::for_content(&s, &h).as_str(),
            format!("s1/{}", "ab".repeat(32))
        );
    }

    #[test]
    fn local_path_cannot_escape_root() {
        let p = LocalPath::parse("livestore-filesync-files/s/h").unwrap();
        assert_eq!(p.file_name(), "h");
        assert_eq!(p.parent().unwrap().as_str(), "livestore-filesync-files/s");
        for bad in ["../x", "/etc/passwd", "a/../../b", "a\\..\\b", "", "a//b"] {
            assert!(LocalPath::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert!(p.join("../x").is_err());
    }

    #[test]
    fn store_id_sanitizes_like_cfg_5() {
        assert_eq!(
            StoreId::sanitize("node filesync/store@1").unwrap().as_str(),
            "node_filesync_store_1"
        );
        assert!(StoreId::sanitize("..").is_err());
        assert_eq!(StoreId::sanitize("photos📷").unwrap().as_str(), "photos__");
        assert!(StoreId::parse("a b").is_err());
        assert!(StoreId::parse("").is_err());
    }

    #[test]
    fn file_id_rules() {
        let id = FileId::random();
        assert_eq!(id.as_str().len(), 36);
        assert_eq!(id.as_str().as_bytes()[14], b'4');
        assert_ne!(FileId::random(), id);
        assert!(FileId::parse("").is_err());
        assert!(FileId::parse("a\u{0}b").is_err());
        assert!(FileId::parse(" a").is_err());
        assert!(FileId::parse("x".repeat(257)).is_err());
        assert!(serde_json::from_str::<FileId>("\"\"").is_err());
    }

    #[test]
    fn timestamps_format_like_js_to_iso_string() {
        let t = Timestamp::from_millis(1_767_472_224_642).unwrap();
        assert_eq!(t.to_iso8601(), "2026-01-03T20:30:24.642Z");
        assert_eq!(Timestamp::EPOCH.to_iso8601(), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            Timestamp::parse_iso8601("2026-01-03T21:30:24.642+01:00").unwrap(),
            t
        );
        assert!(Timestamp::parse_iso8601("yesterday").is_err());
        for extended in ["+010000-01-01T00:00:00.000Z", "-000001-01-01T00:00:00.000Z"] {
            let t = Timestamp::parse_iso8601(extended).unwrap();
            assert_eq!(t.to_iso8601(), extended);
        }
        assert!(Timestamp::parse_iso8601("+010001-02-29T00:00:00.000Z").is_err());
        assert!(Timestamp::parse_iso8601("-000000-01-01T00:00:00.000Z").is_err());
        assert!(Timestamp::from_millis(i64::MAX).is_err());
        assert_eq!(
            Timestamp::from_millis(-62_198_755_200_000)
                .unwrap()
                .to_iso8601(),
            "-000001-01-01T00:00:00.000Z"
        );
    }
}
