//! The region a request's SigV4 credential scope names (docs/interface.md §3.7), read whether or
//! not esmd checks signatures. A leaf of the API layer: both the signature check and queue URL
//! resolution read it, so it imports neither.

use axum::http::{header, HeaderMap};

/// SigV4's algorithm name, as the `Authorization` header starts with it.
const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// The region of a SigV4-signed request's credential scope (`Credential=<key>/<date>/<region>/
/// ...` in its `Authorization` header, or a presigned URL's `X-Amz-Credential` parameter),
/// whether or not esmd checks signatures: the region the client's SDK is configured for, which
/// names the region of the queues it means.
pub(crate) fn scope_region(headers: &HeaderMap, query: Option<&str>) -> Option<String> {
    let region = |credential: &str| credential.split('/').nth(2).map(str::to_owned);
    if let Some(authorization) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let credential = authorization
            .strip_prefix(ALGORITHM)?
            .split(',')
            .find_map(|part| part.trim().strip_prefix("Credential="))?;
        return region(credential);
    }
    form_urlencoded::parse(query?.as_bytes())
        .find(|(k, _)| k == "X-Amz-Credential")
        .and_then(|(_, v)| region(&v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scope_region_is_the_credentials_third_part() {
        let mut headers = HeaderMap::new();
        assert_eq!(scope_region(&headers, None), None);
        let presigned =
            "Action=ListQueues&X-Amz-Credential=AKID%2F20260101%2Fap-east-1%2Fsqs%2Faws4_request";
        assert_eq!(
            scope_region(&headers, Some(presigned)).as_deref(),
            Some("ap-east-1")
        );
        headers.insert(
            header::AUTHORIZATION,
            "AWS4-HMAC-SHA256 Credential=AKID/20260101/eu-west-1/sqs/aws4_request, SignedHeaders=host, Signature=00"
                .parse()
                .unwrap(),
        );
        assert_eq!(scope_region(&headers, None).as_deref(), Some("eu-west-1"));
        headers.insert(header::AUTHORIZATION, "Bearer x".parse().unwrap());
        assert_eq!(scope_region(&headers, Some(presigned)), None);
    }
}
