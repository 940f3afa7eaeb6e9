//! The original's signed file URLs (R2-4, R2-6, R2-7), byte for byte:
//! `<origin><filesBasePath>/<key, each segment encodeURIComponent'd>?exp=<unix s>&sig=<sig>`
//! with `sig = base64url_nopad(HMAC-SHA256(secret, "<METHOD>\n<key>\n<exp>"))`. Extended
//! additively: an upload URL may also bind `len` and `sha256` ([`Bound`]), which the
//! signature then covers (`"…\n<exp>\nlen=<n>\nsha256=<hex>"`); URLs without them are
//! unchanged. The verifier takes each parameter once and only in its canonical form, and
//! refuses an `exp` further ahead than the server's longest lifetime. URLs minted by
//! the TypeScript package verify here and ours verify there (same secret). The comparison is
//! constant-time (WEAK-2); keys are [`ObjectKey`]s, so a key with `//`, `.` or `..` never gets
//! this far (WEAK-24).

use base64::Engine;
use hmac::{Hmac, Mac};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use filesync_core::server::Secret;
use filesync_core::types::{ContentHash, ObjectKey, ParseError};

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

/// What a signed upload URL binds beyond the original's `exp`: the body's length and SHA-256,
/// when the signer was told them. Carried as the query parameters `len` (decimal) and `sha256`
/// (64 lower-case hex) and covered by `sig`, so a holder can neither drop nor change them. A URL
/// without them is the original's format, signed and verified exactly as before.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Bound {
    /// The body's exact length in bytes.
    pub length: Option<u64>,
    /// The body's SHA-256.
    pub sha256: Option<ContentHash>,
}

impl Bound {
    /// What the signature covers after `exp`: nothing for the original's format, else
    /// `\nlen=<n>` and/or `\nsha256=<hex>`. (Keys and `exp` hold no newline, so the two forms
    /// never sign the same string.)
    fn signed_suffix(&self) -> String {
        self.pairs().map(|p| format!("\n{p}")).collect()
    }

    /// The query parameters, `&len=..&sha256=..`, or nothing.
    fn query(&self) -> String {
        self.pairs().map(|p| format!("&{p}")).collect()
    }

    /// `len=<n>` and `sha256=<hex>`, for what is bound.
    fn pairs(&self) -> impl Iterator<Item = String> {
        let len = self.length.map(|n| format!("len={n}"));
        let sha256 = self.sha256.as_ref().map(|h| format!("sha256={h}"));
        len.into_iter().chain(sha256)
    }
}

/// The signature of `method` on `key` until `exp` (unix seconds), in the original's format.
pub fn signature(secret: &Secret, method: &str, key: &ObjectKey, exp: i64) -> String {
    signature_bound(secret, method, key, exp, &Bound::default())
}

/// The signature of `method` on `key` until `exp`, also covering `bound`.
pub fn signature_bound(
    secret: &Secret,
    method: &str,
    key: &ObjectKey,
    exp: i64,
    bound: &Bound,
) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac(secret, method, key, exp, bound))
}

fn mac(secret: &Secret, method: &str, key: &ObjectKey, exp: i64, bound: &Bound) -> [u8; 32] {
    // HMAC accepts keys of any length; `new_from_slice` cannot fail for it.
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes()) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC takes keys of any length"),
    };
    mac.update(format!("{method}\n{key}\n{exp}{}", bound.signed_suffix()).as_bytes());
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
    /// A signed parameter appears twice, or is not in its one canonical form (`exp` and `len`
    /// plain decimal digits without leading zeros, `sig` unpadded base64url, `sha256` 64
    /// lower-case hex): no sign, no space, no percent-encoding.
    Malformed,
    /// `exp` is in the past.
    Expired,
    /// `exp` is further ahead than the longest lifetime this server signs.
    TooFarAhead,
    /// `sig` is not the signature of this method, key, `exp` and bound parameters.
    BadSignature,
}

/// The signed parameters of a file URL's query, each at most once and still raw (not
/// percent-decoded: their canonical forms need no encoding).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SignedQuery<'a> {
    /// `exp`.
    pub exp: Option<&'a str>,
    /// `sig`.
    pub sig: Option<&'a str>,
    /// `len`.
    pub len: Option<&'a str>,
    /// `sha256`.
    pub sha256: Option<&'a str>,
}

impl<'a> SignedQuery<'a> {
    /// Pick `exp`, `sig`, `len` and `sha256` out of a raw query string; any of them twice is
    /// [`Refusal::Malformed`]. Other parameters are ignored.
    pub fn parse(query: &'a str) -> Result<Self, Refusal> {
        let mut q = Self::default();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let slot = match name {
                "exp" => &mut q.exp,
                "sig" => &mut q.sig,
                "len" => &mut q.len,
                "sha256" => &mut q.sha256,
                _ => continue,
            };
            if slot.replace(value).is_some() {
                return Err(Refusal::Malformed);
            }
        }
        Ok(q)
    }
}

/// A non-negative decimal integer in its one canonical spelling: `0` or digits without a
/// leading zero (no sign, space or `+`).
fn canonical_uint(s: &str) -> Option<u64> {
    let digits = !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits || (s.len() > 1 && s.starts_with('0')) {
        return None;
    }
    s.parse().ok()
}

/// Check a signed query for `method` on `key` at `now_s` (R2-7): `exp` and `sig` present and
/// canonical, `sig` matching `exp` and the bound parameters in constant time, `exp` not before
/// `now_s` and not more than `max_ttl_s` after it. Returns what the URL binds.
pub fn verify(
    secret: &Secret,
    method: &str,
    key: &ObjectKey,
    query: &SignedQuery<'_>,
    now_s: i64,
    max_ttl_s: i64,
) -> Result<Bound, Refusal> {
    let (Some(exp), Some(sig)) = (query.exp, query.sig) else {
        return Err(Refusal::Missing);
    };
    let exp = canonical_uint(exp)
        .and_then(|e| i64::try_from(e).ok())
        .ok_or(Refusal::Malformed)?;
    let given = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(sig)
        .map_err(|_| Refusal::Malformed)?;
    if base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&given) != sig {
        return Err(Refusal::Malformed);
    }
    let bound = Bound {
        length: match query.len {
            None => None,
            Some(l) => Some(canonical_uint(l).ok_or(Refusal::Malformed)?),
        },
        sha256: match query.sha256 {
            None => None,
            Some(h) => Some(ContentHash::parse(h).map_err(|_| Refusal::Malformed)?),
        },
    };
    let want = mac(secret, method, key, exp, &bound);
    let good: bool = given.as_slice().ct_eq(want.as_slice()).into();
    if !good {
        return Err(Refusal::BadSignature);
    }
    if exp < now_s {
        return Err(Refusal::Expired);
    }
    if exp > now_s.saturating_add(max_ttl_s) {
        return Err(Refusal::TooFarAhead);
    }
    Ok(bound)
}

/// The signed URL for `method` on `key`: `<base><files_base_path>/<key>?exp=..&sig=..`
/// (the original's format).
pub fn signed_url(
    base: &str,
    files_base_path: &str,
    secret: &Secret,
    method: &str,
    key: &ObjectKey,
    exp: i64,
) -> String {
    signed_url_bound(
        base,
        files_base_path,
        secret,
        method,
        key,
        exp,
        &Bound::default(),
    )
}

/// [`signed_url`] also binding `bound`: `?exp=..[&len=..][&sha256=..]&sig=..`.
pub fn signed_url_bound(
    base: &str,
    files_base_path: &str,
    secret: &Secret,
    method: &str,
    key: &ObjectKey,
    exp: i64,
    bound: &Bound,
) -> String {
    format!(
        "{}{}/{}?exp={exp}{}&sig={}",
        base.trim_end_matches('/'),
        files_base_path.trim_end_matches('/'),
        encode_key(key),
        bound.query(),
        signature_bound(secret, method, key, exp, bound)
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a panic is the failure report
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

    fn q<'a>(exp: &'a str, sig: &'a str) -> SignedQuery<'a> {
        SignedQuery {
            exp: Some(exp),
            sig: Some(sig),
            ..SignedQuery::default()
        }
    }

    const TTL: i64 = 3600;

    #[test]
    fn r2_7_verification() {
        let secret = Secret::new("s3cr3t");
        let k = key("store/abc");
        let sig = signature(&secret, "GET", &k, 1000);
        let ok = |exp: &str, sig: &str, method: &str, k: &ObjectKey, now: i64| {
            verify(&secret, method, k, &q(exp, sig), now, TTL)
        };
        assert_eq!(ok("1000", &sig, "GET", &k, 1000), Ok(Bound::default()));
        assert_eq!(ok("1000", &sig, "GET", &k, 1001), Err(Refusal::Expired));
        assert_eq!(ok("1000", &sig, "PUT", &k, 0), Err(Refusal::BadSignature));
        assert_eq!(ok("1001", &sig, "GET", &k, 0), Err(Refusal::BadSignature));
        assert_eq!(
            ok("1000", &sig, "GET", &key("store/abd"), 0),
            Err(Refusal::BadSignature)
        );
        assert_eq!(
            verify(
                &secret,
                "GET",
                &k,
                &SignedQuery {
                    sig: Some(&sig),
                    ..SignedQuery::default()
                },
                0,
                TTL
            ),
            Err(Refusal::Missing)
        );
        assert_eq!(ok("1000", "!!", "GET", &k, 0), Err(Refusal::Malformed));
    }

    #[test]
    fn non_canonical_and_far_expiries_are_refused() {
        let secret = Secret::new("s3cr3t");
        let k = key("store/abc");
        let sig = signature(&secret, "GET", &k, 1000);
        let check =
            |exp: &str, sig: &str, now: i64| verify(&secret, "GET", &k, &q(exp, sig), now, TTL);
        for exp in [
            "01000", "+1000", " 1000", "1000 ", "1e3", "1000.0", "%31000", "-1000", "",
        ] {
            assert_eq!(check(exp, &sig, 0), Err(Refusal::Malformed), "{exp:?}");
        }
        // Padding or a changed last character that decodes to the same bytes.
        assert_eq!(
            check("1000", &format!("{sig}="), 0),
            Err(Refusal::Malformed)
        );
        // Further ahead than the longest lifetime: refused even though it is signed.
        assert_eq!(check("1000", &sig, 1000 - TTL), Ok(Bound::default()));
        assert_eq!(check("1000", &sig, 999 - TTL), Err(Refusal::TooFarAhead));
        let far = signature(&secret, "GET", &k, i64::MAX);
        assert_eq!(
            check(&i64::MAX.to_string(), &far, 0),
            Err(Refusal::TooFarAhead)
        );
        for query in [
            "exp=1&exp=1&sig=x",
            "exp=1&sig=x&sig=x",
            "len=1&len=1",
            "sha256=a&sha256=a",
        ] {
            assert_eq!(
                SignedQuery::parse(query),
                Err(Refusal::Malformed),
                "{query}"
            );
        }
        assert_eq!(
            SignedQuery::parse("a=1&exp=2&&sig=3&b").unwrap(),
            q("2", "3")
        );
    }

    #[test]
    fn bound_parameters_are_signed_and_cannot_be_dropped() {
        let secret = Secret::new("s3cr3t");
        let k = key("store/abc");
        let hash = filesync_core::hash::hash_bytes(b"hello");
        let bound = Bound {
            length: Some(5),
            sha256: Some(hash),
        };
        let url = signed_url_bound("http://h", "/f", &secret, "PUT", &k, 1000, &bound);
        let query = url.split_once('?').unwrap().1;
        assert!(
            query.starts_with(&format!("exp=1000&len=5&sha256={hash}&sig=")),
            "{query}"
        );
        let parsed = SignedQuery::parse(query).unwrap();
        assert_eq!(verify(&secret, "PUT", &k, &parsed, 0, TTL), Ok(bound));
        // Dropping or changing a bound parameter breaks the signature.
        for changed in [
            SignedQuery {
                len: None,
                ..parsed
            },
            SignedQuery {
                sha256: None,
                ..parsed
            },
            SignedQuery {
                len: Some("6"),
                ..parsed
            },
        ] {
            assert_eq!(
                verify(&secret, "PUT", &k, &changed, 0, TTL),
                Err(Refusal::BadSignature)
            );
        }
        // Adding them to an original-format URL breaks it too.
        let plain = signature(&secret, "PUT", &k, 1000);
        let added = SignedQuery {
            len: Some("5"),
            ..q("1000", &plain)
        };
        assert_eq!(
            verify(&secret, "PUT", &k, &added, 0, TTL),
            Err(Refusal::BadSignature)
        );
        // A non-canonical bound value is malformed.
        let padded = SignedQuery {
            len: Some("05"),
            ..parsed
        };
        assert_eq!(
            verify(&secret, "PUT", &k, &padded, 0, TTL),
            Err(Refusal::Malformed)
        );
    }
}
