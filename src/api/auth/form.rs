//! What can be checked of a SigV4 request before its body is read: the `Authorization`
//! header's form (`Credential=<key>/<yyyymmdd>/<region>/<service>/aws4_request, SignedHeaders=…,
//! Signature=<64 hex digits>`), an access key id of letters and digits, `host` among the signed
//! headers, and an `X-Amz-Date` header whose day is the credential scope's. A request failing
//! any of these is refused without reading its body, so a bogus signature costs esmd no memory
//! for the body; the signature itself (which covers the body) is checked after.

use axum::http::HeaderMap;

use super::sigv4::ALGORITHM;

/// `Ok` when the header could be a valid signature; else why it cannot.
pub(super) fn check(authorization: &str, headers: &HeaderMap) -> Result<(), String> {
    let malformed =
        |what: &str| format!("the AWS4-HMAC-SHA256 Authorization header is malformed ({what})");
    let rest = authorization
        .strip_prefix(ALGORITHM)
        .ok_or_else(|| malformed("no algorithm"))?;
    let (mut credential, mut signed, mut signature) = (None, None, None);
    for part in rest.trim().split(',') {
        let (k, v) = part
            .trim()
            .split_once('=')
            .ok_or_else(|| malformed("a part is not Name=value"))?;
        match k {
            "Credential" => credential = Some(v),
            "SignedHeaders" => signed = Some(v),
            "Signature" => signature = Some(v),
            _ => {}
        }
    }
    let credential = credential.ok_or_else(|| malformed("no Credential"))?;
    let signed = signed.ok_or_else(|| malformed("no SignedHeaders"))?;
    let signature = signature.ok_or_else(|| malformed("no Signature"))?;
    let scope: Vec<&str> = credential.split('/').collect();
    let [key, day, region, service, terminator] = scope[..] else {
        return Err(malformed(
            "the Credential is not <key>/<date>/<region>/<service>/aws4_request",
        ));
    };
    if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(malformed("the access key id is not letters and digits"));
    }
    if day.len() != 8 || !day.bytes().all(|b| b.is_ascii_digit()) {
        return Err(malformed("the credential scope's date is not yyyymmdd"));
    }
    if region.is_empty() || service.is_empty() || terminator != "aws4_request" {
        return Err(malformed(
            "the Credential is not <key>/<date>/<region>/<service>/aws4_request",
        ));
    }
    if !signed.split(';').any(|h| h == "host") {
        return Err(malformed("SignedHeaders does not include host"));
    }
    if signature.len() != 64 || !signature.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(malformed("the Signature is not 64 hex digits"));
    }
    let amz_date = headers
        .get("x-amz-date")
        .and_then(|v| v.to_str().ok())
        .ok_or("a SigV4-signed request needs an X-Amz-Date header")?;
    if !amz_date.starts_with(day) {
        return Err(
            "the credential scope's date is not the day of the X-Amz-Date header".to_owned(),
        );
    }
    Ok(())
}
