//! AWS Signature Version 4 verification with the configured token as the secret key: rebuilds
//! the canonical request from what arrived (method, path, query, signed headers, payload hash),
//! derives the signing key from the token and the request's own credential scope, and compares
//! signatures in constant time. The access key id is not checked (esmd has one secret), and
//! neither is clock skew: the clock that matters here is the client's, and esmd's own may be
//! a manual one in tests.

use axum::body::Body;
use axum::extract::Request;
use sha2::{Digest, Sha256};

use crate::api::{body, MAX_SQS_BODY};

/// The algorithm prefix of a SigV4 `Authorization` header.
pub(crate) const ALGORITHM: &str = "AWS4-HMAC-SHA256";

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
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(block.map(|b| b ^ 0x36));
    inner.update(message);
    let mut outer = Sha256::new();
    outer.update(block.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

/// URI-encodes every byte but the unreserved ones, and `/` too when `encode_slash`.
fn encode(s: &str, encode_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'_' | b'.' | b'~')
            || (b == b'/' && !encode_slash)
        {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Decodes `%XX` escapes (nothing else).
fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(v)) => {
                out.push(v);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
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
    fn query_is_sorted_and_encoded() {
        assert_eq!(canonical_query("b=2&a=x%20y&a=1"), "a=1&a=x%20y&b=2");
        assert_eq!(encode("/a b/%", false), "/a%20b/%25");
    }
}
