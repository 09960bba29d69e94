//! AWS Signature Version 4 verification with the configured token as the secret key: rebuilds
//! the canonical request from what arrived (method, path, query, signed headers, payload hash),
//! derives the signing key from the token and the request's own credential scope, and compares
//! signatures in constant time. The access key id is not checked (esmd has one secret), and
//! neither is clock skew: the clock that matters here is the client's, and esmd's own may be
//! a manual one in tests.

use axum::body::Body;
use axum::extract::Request;
use hmac::{Hmac, Mac as _};
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use sha2::{Digest, Sha256};

use crate::api::{body, MAX_SQS_BODY};

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

/// The parts of `Authorization: AWS4-HMAC-SHA256 Credential=…, SignedHeaders=…, Signature=…`.
struct Parsed<'a> {
    scope: &'a str,
    signed_headers: &'a str,
    signature: &'a str,
}

fn parse(authorization: &str) -> Option<Parsed<'_>> {
    let rest = authorization.strip_prefix(ALGORITHM)?.trim();
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

/// Verifies the signature; gives the request back (its body re-attached) when it holds.
pub(crate) async fn verify(
    req: Request,
    authorization: &str,
    secret: &str,
) -> Result<Request, String> {
    let parsed =
        parse(authorization).ok_or("the AWS4-HMAC-SHA256 Authorization header is malformed")?;
    let (parts, body) = req.into_parts();
    let amz_date = parts
        .headers
        .get("x-amz-date")
        .and_then(|v| v.to_str().ok())
        .ok_or("a SigV4-signed request needs an X-Amz-Date header")?
        .to_owned();
    let declared_hash = parts
        .headers
        .get("x-amz-content-sha256")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let bytes = match body::read(body, MAX_SQS_BODY).await {
        Ok(b) => b,
        Err(body::ReadError::TooLarge) => return Err("the request body is too large".to_owned()),
        Err(body::ReadError::Broken(e)) => {
            return Err(format!("the request body could not be read: {e}"))
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
        Err("the SigV4 signature does not match (is the secret access key the configured auth_token?)".to_owned())
    }
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
