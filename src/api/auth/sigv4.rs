//! AWS Signature Version 4 verification with the configured token as the secret key: rebuilds
//! the canonical request from what arrived (method, path, query, signed headers, payload hash),
//! derives the signing key from the token and the request's own credential scope, and compares
//! signatures in constant time. The access key id is not checked (esmd has one secret).
//! `X-Amz-Date` is: a malformed date, or one more than 15 minutes from esmd's clock (the store's
//! [`crate::clock::Clock`], so a manual one in tests), is refused before the body is read, with
//! the words and code SQS uses (see [`super::Denied`]), so a captured request cannot be replayed
//! after that.

use std::time::{Duration, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::Request;
use hmac::{Hmac, Mac as _};
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use sha2::{Digest, Sha256};

use super::Denied;
use crate::api::{body, MAX_SQS_BODY};
use crate::domain::Timestamp;

/// The algorithm prefix of a SigV4 `Authorization` header.
pub(crate) const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// What SigV4 percent-encodes in a query name or value: every byte but RFC 3986's unreserved
/// characters (`A-Z a-z 0-9 - _ . ~`), with upper-case hex digits.
const QUERY_COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// What SigV4 percent-encodes in the path: the same, but `/` separates segments and stays.
const PATH: &AsciiSet = &QUERY_COMPONENT.remove(b'/');

/// How far `X-Amz-Date` may be from esmd's clock, either way: AWS's 15 minutes.
pub(crate) const MAX_SKEW: Duration = Duration::from_secs(15 * 60);

/// The parts of `Authorization: AWS4-HMAC-SHA256 Credential=…, SignedHeaders=…, Signature=…`.
struct Parsed<'a> {
    scope: &'a str,
    signed_headers: &'a str,
    signature: &'a str,
}

/// Parses what follows the `AWS4-HMAC-SHA256` scheme.
fn parse(credentials: &str) -> Option<Parsed<'_>> {
    let rest = credentials.trim();
    let (mut credential, mut signed_headers, mut signature) = (None, None, None);
    for part in rest.split(',') {
        let (k, v) = part.trim().split_once('=')?;
        match k {
            "Credential" => credential = Some(v),
            "SignedHeaders" => signed_headers = Some(v),
            "Signature" => signature = Some(v),
            _ => {}
        }
    }
    let (_, scope) = credential?.split_once('/')?;
    Some(Parsed {
        scope,
        signed_headers: signed_headers?,
        signature: signature?,
    })
}

/// Verifies the signature made at a time within [`MAX_SKEW`] of `now`; gives the request back
/// (its body re-attached) when it holds. `credentials` is what follows the scheme.
pub(crate) async fn verify(
    req: Request,
    credentials: &str,
    secret: &str,
    now: Timestamp,
) -> Result<Request, Denied> {
    let bad = |why: &str| Denied::BadSignature(why.to_owned());
    let parsed = parse(credentials).ok_or(bad(
        "the AWS4-HMAC-SHA256 Authorization header is malformed",
    ))?;
    let (parts, body) = req.into_parts();
    let amz_date = parts
        .headers
        .get("x-amz-date")
        .and_then(|v| v.to_str().ok())
        .ok_or(bad("a SigV4-signed request needs an X-Amz-Date header"))?
        .to_owned();
    check_date(&amz_date, parsed.scope, now).map_err(Denied::BadSignature)?;
    let declared_hash = parts
        .headers
        .get("x-amz-content-sha256")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let bytes = match body::read(body, MAX_SQS_BODY).await {
        Ok(b) => b,
        Err(body::ReadError::TooLarge) => return Err(bad("the request body is too large")),
        Err(body::ReadError::Broken(e)) => {
            return Err(Denied::BadSignature(format!(
                "the request body could not be read: {e}"
            )))
        }
    };
    let payload_hash = match declared_hash {
        Some(h) if h == "UNSIGNED-PAYLOAD" => h,
        _ => hex::encode(Sha256::digest(&bytes)),
    };
    let mut canonical_headers = String::new();
    for name in parsed.signed_headers.split(';') {
        let values: Vec<String> = parts
            .headers
            .get_all(name)
            .iter()
            .map(|v| {
                String::from_utf8_lossy(v.as_bytes())
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect();
        canonical_headers.push_str(&format!("{name}:{}\n", values.join(",")));
    }
    let canonical_request = format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        parts.method,
        encode(parts.uri.path(), false),
        canonical_query(parts.uri.query().unwrap_or("")),
        canonical_headers,
        parsed.signed_headers,
        payload_hash
    );
    let string_to_sign = format!(
        "{ALGORITHM}\n{amz_date}\n{}\n{}",
        parsed.scope,
        hex::encode(Sha256::digest(canonical_request.as_bytes()))
    );
    let mut key = format!("AWS4{secret}").into_bytes();
    for step in parsed.scope.split('/') {
        key = hmac(&key, step.as_bytes()).to_vec();
    }
    let expected = hex::encode(hmac(&key, string_to_sign.as_bytes()));
    if super::constant_time_eq(expected.as_bytes(), parsed.signature.as_bytes()) {
        Ok(Request::from_parts(parts, Body::from(bytes)))
    } else {
        Err(bad("the SigV4 signature does not match (is the secret access key the configured auth_token?)"))
    }
}

/// Checks `X-Amz-Date` (`YYYYMMDDTHHMMSSZ`): well formed, on the credential scope's day, and
/// within [`MAX_SKEW`] of `now`. The messages are SQS's own, e.g. "Signature expired:
/// 20150619T100249Z is now earlier than 20150619T100713Z (20150619T102213Z - 15 min.)".
fn check_date(amz_date: &str, scope: &str, now: Timestamp) -> Result<(), String> {
    let signed = parse_amz_date(amz_date).ok_or_else(|| {
        format!("X-Amz-Date {amz_date:?} is not a date of the form YYYYMMDDTHHMMSSZ")
    })?;
    if scope.split('/').next() != Some(&amz_date[..8]) {
        return Err(format!(
            "the date in the credential scope does not match YYYYMMDD from X-Amz-Date {amz_date}"
        ));
    }
    let (earliest, latest) = (now.minus(MAX_SKEW), now.plus(MAX_SKEW));
    if signed < earliest {
        return Err(format!(
            "Signature expired: {amz_date} is now earlier than {} ({} - 15 min.)",
            amz_format(earliest),
            amz_format(now)
        ));
    }
    if signed > latest {
        return Err(format!(
            "Signature not yet current: {amz_date} is still later than {} ({} + 15 min.)",
            amz_format(latest),
            amz_format(now)
        ));
    }
    Ok(())
}

/// Parses SigV4's basic ISO 8601 form, `20150830T123600Z`, strictly.
fn parse_amz_date(s: &str) -> Option<Timestamp> {
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' || !digits(0..8) || !digits(9..15) {
        return None;
    }
    let rfc3339 = format!(
        "{}-{}-{}T{}:{}:{}Z",
        &s[0..4],
        &s[4..6],
        &s[6..8],
        &s[9..11],
        &s[11..13],
        &s[13..15]
    );
    let t = humantime::parse_rfc3339(&rfc3339).ok()?;
    let ms = t.duration_since(UNIX_EPOCH).ok()?.as_millis();
    Some(Timestamp::from_millis(i64::try_from(ms).ok()?))
}

/// Formats an instant as SigV4's `YYYYMMDDTHHMMSSZ` (before 1970: the epoch).
fn amz_format(t: Timestamp) -> String {
    let secs = u64::try_from(t.as_secs()).unwrap_or(0);
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(secs))
        .to_string()
        .replace(['-', ':'], "")
}

/// HMAC-SHA256 (RFC 2104).
fn hmac(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(message);
    mac.finalize().into_bytes().into()
}

/// URI-encodes every byte but the unreserved ones, and `/` too when `encode_slash`.
fn encode(s: &str, encode_slash: bool) -> String {
    let set = if encode_slash { QUERY_COMPONENT } else { PATH };
    utf8_percent_encode(s, set).to_string()
}

/// Decodes `%XX` escapes (nothing else: `+` stays `+`); a `%` without two hex digits stays.
fn decode(s: &str) -> String {
    percent_decode_str(s).decode_utf8_lossy().into_owned()
}

/// The canonical query string: parameters sorted by name then value, each strictly encoded.
fn canonical_query(query: &str) -> String {
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (encode(&decode(k), true), encode(&decode(v), true))
        })
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc4231_case_2() {
        let mac = hmac(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn hmac_matches_rfc4231_case_6_a_key_longer_than_a_block() {
        let mac = hmac(
            &[0xaa; 131],
            b"Test Using Larger Than Block-Size Key - Hash Key First",
        );
        assert_eq!(
            hex::encode(mac),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn amz_dates_parse_strictly_and_format_back() {
        let t = parse_amz_date("20150619T100249Z").expect("a good date");
        assert_eq!(t.as_secs(), 1_434_708_169);
        assert_eq!(amz_format(t), "20150619T100249Z");
        for bad in [
            "",
            "garbage",
            "2015-06-19T10:02:49Z",
            "20150619T100249",
            "20151319T100249Z",
            "20150619T250249Z",
            "20150619t100249Z",
            "2015061９T10024Z",
        ] {
            assert_eq!(parse_amz_date(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_date_is_accepted_up_to_15_minutes_either_way() {
        let now = parse_amz_date("20260101T120000Z").unwrap();
        let scope = "20260101/us-east-1/sqs/aws4_request";
        assert_eq!(check_date("20260101T114500Z", scope, now), Ok(()));
        assert_eq!(check_date("20260101T121500Z", scope, now), Ok(()));
        assert_eq!(
            check_date("20260101T114459Z", scope, now),
            Err(
                "Signature expired: 20260101T114459Z is now earlier than 20260101T114500Z \
                 (20260101T120000Z - 15 min.)"
                    .to_owned()
            )
        );
        assert!(check_date("20260101T121501Z", scope, now)
            .unwrap_err()
            .starts_with("Signature not yet current: 20260101T121501Z is still later than"));
        assert!(check_date(
            "20260101T120000Z",
            "20251231/us-east-1/sqs/aws4_request",
            now
        )
        .unwrap_err()
        .contains("credential scope"));
        assert!(check_date("20010101T000000", scope, now)
            .unwrap_err()
            .contains("YYYYMMDDTHHMMSSZ"));
    }

    #[test]
    fn query_is_sorted_and_encoded() {
        assert_eq!(canonical_query("b=2&a=x%20y&a=1"), "a=1&a=x%20y&b=2");
        assert_eq!(encode("/a b/%", false), "/a%20b/%25");
    }

    #[test]
    fn only_unreserved_characters_and_path_slashes_stay_unencoded() {
        for b in 0u8..=127 {
            let s = char::from(b).to_string();
            let unreserved = b.is_ascii_alphanumeric() || b"-_.~".contains(&b);
            let escaped = format!("%{b:02X}");
            let query = if unreserved { &s } else { &escaped };
            let path = if unreserved || b == b'/' {
                &s
            } else {
                &escaped
            };
            assert_eq!(&encode(&s, true), query, "byte {b:#04x} in a query");
            assert_eq!(&encode(&s, false), path, "byte {b:#04x} in a path");
        }
        assert_eq!(encode("é/€", false), "%C3%A9/%E2%82%AC");
        assert_eq!(encode("é/€", true), "%C3%A9%2F%E2%82%AC");
    }

    #[test]
    fn decoding_takes_only_complete_escapes() {
        assert_eq!(decode("a%20b+c%2fd"), "a b+c/d");
        assert_eq!(decode("100%"), "100%");
        assert_eq!(decode("%zz%4"), "%zz%4");
        assert_eq!(decode("%C3%A9%FF"), "é\u{FFFD}");
    }
}
