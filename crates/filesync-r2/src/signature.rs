//! The original's signed file URLs (R2-4, R2-6, R2-7), byte for byte:
//! `<origin><filesBasePath>/<key, each segment encodeURIComponent'd>?exp=<unix s>&sig=<sig>`
//! with `sig = base64url_nopad(HMAC-SHA256(secret, "<METHOD>\n<key>\n<exp>"))`. URLs minted by
//! the TypeScript package verify here and ours verify there (same secret). The comparison is
//! constant-time (WEAK-2); keys are [`ObjectKey`]s, so a key with `//`, `.` or `..` never gets
//! this far (WEAK-24).

use base64::Engine;
use hmac::{Hmac, Mac};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use filesync_core::server::Secret;
use filesync_core::types::{ObjectKey, ParseError};

/// What JavaScript's `encodeURIComponent` leaves alone: `A-Z a-z 0-9 - _ . ! ~ * ' ( )`.
const URI_COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'!')
    .remove(b'~')
    .remove(b'*')
    .remove(b'\'')
    .remove(b'(')
    .remove(b')');

/// The signature of `method` on `key` until `exp` (unix seconds).
pub fn signature(secret: &Secret, method: &str, key: &ObjectKey, exp: i64) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac(secret, method, key, exp))
}

fn mac(secret: &Secret, method: &str, key: &ObjectKey, exp: i64) -> [u8; 32] {
    // HMAC accepts keys of any length; `new_from_slice` cannot fail for it.
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes()) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC takes keys of any length"),
    };
    mac.update(format!("{method}\n{key}\n{exp}").as_bytes());
    mac.finalize().into_bytes().into()
}

/// The key's URL path: each segment percent-encoded as `encodeURIComponent` does.
pub fn encode_key(key: &ObjectKey) -> String {
    key.as_str()
        .split('/')
        .map(|s| utf8_percent_encode(s, URI_COMPONENT).to_string())
        .collect::<Vec<_>>()
        .join("/")
}

/// The key a file path names (R2-6): the path after the files prefix, percent-decoded per
/// segment, empty segments dropped, then validated as an [`ObjectKey`]. `None` for an empty
/// key; `Err` for a key that is not valid UTF-8 or not a safe key (`..`, control characters).
pub fn decode_key(path: &str) -> Option<Result<ObjectKey, ParseError>> {
    let mut segments = Vec::new();
    for raw in path.split('/').filter(|s| !s.is_empty()) {
        match percent_decode_str(raw).decode_utf8() {
            Ok(s) => segments.push(s.into_owned()),
            Err(_) => {
                return Some(Err(ParseError {
                    what: "object key",
                    input: path.chars().take(80).collect(),
                    reason: "not valid UTF-8 once percent-decoded",
                }));
            }
        }
    }
    if segments.is_empty() {
        return None;
    }
    Some(ObjectKey::parse(segments.join("/")))
}

/// Why a signed query was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No `exp` or no `sig`.
    Missing,
    /// `exp` is not a number, or is in the past.
    Expired,
    /// `sig` is not the signature of this method, key and `exp`.
    BadSignature,
}

/// Check `exp` and `sig` (raw query values) for `method` on `key` at `now_s` (R2-7): `exp`
/// must be an integer not before `now_s`, and `sig` must match in constant time.
pub fn verify(
    secret: &Secret,
    method: &str,
    key: &ObjectKey,
    exp: Option<&str>,
    sig: Option<&str>,
    now_s: i64,
) -> Result<(), Refusal> {
    let (Some(exp), Some(sig)) = (exp, sig) else {
        return Err(Refusal::Missing);
    };
    let exp: i64 = exp.trim().parse().map_err(|_| Refusal::Expired)?;
    let given = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(sig.trim_end_matches('='))
        .map_err(|_| Refusal::BadSignature)?;
    let want = mac(secret, method, key, exp);
    let good: bool = given.as_slice().ct_eq(want.as_slice()).into();
    if !good {
        return Err(Refusal::BadSignature);
    }
    if exp < now_s {
        return Err(Refusal::Expired);
    }
    Ok(())
}

/// The signed URL for `method` on `key`: `<base><files_base_path>/<key>?exp=..&sig=..`.
pub fn signed_url(
    base: &str,
    files_base_path: &str,
    secret: &Secret,
    method: &str,
    key: &ObjectKey,
    exp: i64,
) -> String {
    format!(
        "{}{}/{}?exp={exp}&sig={}",
        base.trim_end_matches('/'),
        files_base_path.trim_end_matches('/'),
        encode_key(key),
        signature(secret, method, key, exp)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> ObjectKey {
        ObjectKey::parse(s).expect("valid key")
    }

    #[test]
    fn r2_6_keys_decode_per_segment_and_drop_empty_segments() {
        assert_eq!(
            decode_key("/store//a%20b%2Bc.txt/").map(Result::ok),
            Some(Some(key("store/a b+c.txt")))
        );
        assert_eq!(decode_key("//"), None);
        assert!(matches!(decode_key("a/../b"), Some(Err(_))));
        assert!(matches!(decode_key("a/%2e%2e/b"), Some(Err(_))));
        assert!(matches!(decode_key("a/%ff"), Some(Err(_))));
    }

    #[test]
    fn encoding_is_encode_uri_component() {
        assert_eq!(
            encode_key(&key("s/ü (1)!~*'.txt")),
            "s/%C3%BC%20(1)!~*'.txt"
        );
        assert_eq!(encode_key(&key("s/a+b&c=d%e")), "s/a%2Bb%26c%3Dd%25e");
    }

    #[test]
    fn r2_7_verification() {
        let secret = Secret::new("s3cr3t");
        let k = key("store/abc");
        let sig = signature(&secret, "GET", &k, 1000);
        assert_eq!(
            verify(&secret, "GET", &k, Some("1000"), Some(&sig), 1000),
            Ok(())
        );
        assert_eq!(
            verify(&secret, "GET", &k, Some("1000"), Some(&sig), 1001),
            Err(Refusal::Expired)
        );
        assert_eq!(
            verify(&secret, "PUT", &k, Some("1000"), Some(&sig), 0),
            Err(Refusal::BadSignature)
        );
        assert_eq!(
            verify(&secret, "GET", &k, Some("1001"), Some(&sig), 0),
            Err(Refusal::BadSignature)
        );
        assert_eq!(
            verify(
                &secret,
                "GET",
                &key("store/abd"),
                Some("1000"),
                Some(&sig),
                0
            ),
            Err(Refusal::BadSignature)
        );
        assert_eq!(
            verify(&secret, "GET", &k, None, Some(&sig), 0),
            Err(Refusal::Missing)
        );
        assert_eq!(
            verify(&secret, "GET", &k, Some("1e3"), Some(&sig), 0),
            Err(Refusal::Expired)
        );
        assert_eq!(
            verify(&secret, "GET", &k, Some("1000"), Some("!!"), 0),
            Err(Refusal::BadSignature)
        );
    }
}
