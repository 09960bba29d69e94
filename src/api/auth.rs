//! Request authentication (docs/interface.md §3.4). With `server.auth_token` unset every request
//! passes. With it set, every request but `/healthz` must carry `Authorization: Bearer <token>`
//! or be SigV4-signed (`AWS4-HMAC-SHA256`, any access key id) with the token as the secret
//! key, so the AWS SDKs and CLIs work by configuring the token as their secret. A signature
//! whose `X-Amz-Date` is more than 15 minutes from the server's clock has expired, as in AWS.
//! Anything else is refused in the shape of the protocol that was spoken: on either SQS protocol
//! (JSON or query, on `/` or a queue's URL path) with the 403 and code SQS itself answers
//! ([`Denied`]), elsewhere with 401 `Unauthorized`.

mod form;
mod sigv4;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq as _;

use super::error::{RestError, SqsError};
use super::sqs::Protocol;
use super::{body, AppState, MAX_SQS_BODY};

/// Lets the request through if it is authenticated.
pub(crate) async fn require(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let Some(token) = state.server.auth_token.as_deref() else {
        return next.run(req).await;
    };
    let sqs = super::sqs::protocol_of(req.uri().path(), req.headers());
    // Refuse an oversized body here too, before a signature check would read it.
    if body::declared_too_large(req.headers(), MAX_SQS_BODY) {
        return if let Some(protocol) = sqs {
            sqs_refusal(protocol, SqsError::too_large(MAX_SQS_BODY))
        } else {
            RestError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "RequestEntityTooLarge",
                format!("the request body is larger than the largest legal request ({MAX_SQS_BODY} bytes)"),
            )
            .into_response()
        };
    }
    let authorization = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let now = state.store.clock().now();
    let parsed = authorization.as_deref().map(scheme);
    let outcome = match parsed.as_ref().map(|(s, rest)| (s.as_str(), *rest)) {
        Some(("bearer", credentials)) => {
            if constant_time_eq(credentials.trim().as_bytes(), token.as_bytes()) {
                Ok(req)
            } else {
                Err(Denied::BadToken(
                    "the bearer token is not the configured auth_token".to_owned(),
                ))
            }
        }
        Some(("aws4-hmac-sha256", credentials)) => {
            match form::check(authorization.as_deref().unwrap_or_default(), req.headers()) {
                // Only a header that could be valid gets its body read for the signature.
                Ok(()) => sigv4::verify(req, credentials, token, now).await,
                Err(why) => Err(Denied::BadSignature(why)),
            }
        }
        Some(_) => Err(Denied::BadToken(
            "the Authorization header is neither Bearer nor AWS4-HMAC-SHA256".to_owned(),
        )),
        None => Err(Denied::Missing(
            "the request has no Authorization header and this esmd requires one (server.auth_token)"
                .to_owned(),
        )),
    };
    match (outcome, sqs) {
        (Ok(req), _) => next.run(req).await,
        (Err(denied), Some(protocol)) => {
            let (code, why) = denied.code_and_reason();
            let e = SqsError::unauthorized(code, format!("Access denied: {why}."));
            sqs_refusal(protocol, e)
        }
        (Err(denied), None) => RestError::new(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            denied.code_and_reason().1,
        )
        .into_response(),
    }
}

/// A refusal in the shape of the SQS protocol the request speaks.
fn sqs_refusal(protocol: Protocol, e: SqsError) -> Response {
    let request_id = uuid::Uuid::new_v4().to_string();
    match protocol {
        Protocol::Json => e.into_response_with(&request_id),
        Protocol::Query => super::sqs::query_error(&e, &request_id),
    }
}

/// Why a request was refused, which also picks the code SQS answers with (403 each):
/// `MissingAuthenticationToken` without credentials, `InvalidClientTokenId` for credentials
/// that are not the token ("The security token included in the request is invalid", as SQS
/// answers an unknown key), `SignatureDoesNotMatch` for a SigV4 signature that does not hold or
/// has expired (SQS answers both so: "Signature expired: … is now earlier than … - 15 min.",
/// 403 `SignatureDoesNotMatch`, e.g. github.com/aws/aws-sdk-php/issues/642 and
/// github.com/aws-amplify/aws-sdk-android/issues/88; docs/interface.md §3.4).
#[derive(Debug)]
pub(crate) enum Denied {
    /// No `Authorization` header.
    Missing(String),
    /// A bearer token that is not the configured one, or a header esmd cannot read.
    BadToken(String),
    /// A SigV4 signature that does not match, is malformed, or is outside the 15 minutes.
    BadSignature(String),
}

impl Denied {
    /// The SQS error code and the reason.
    fn code_and_reason(self) -> (&'static str, String) {
        match self {
            Denied::Missing(why) => ("MissingAuthenticationToken", why),
            Denied::BadToken(why) => ("InvalidClientTokenId", why),
            Denied::BadSignature(why) => ("SignatureDoesNotMatch", why),
        }
    }
}

/// Splits `Authorization: <scheme> <credentials>` into the scheme, lower-cased (schemes are
/// case-insensitive, RFC 9110 §11.1), and the rest.
fn scheme(authorization: &str) -> (String, &str) {
    let authorization = authorization.trim_start();
    let (scheme, rest) = authorization
        .split_once(|c: char| c.is_ascii_whitespace())
        .unwrap_or((authorization, ""));
    (scheme.to_ascii_lowercase(), rest)
}

/// Compares secrets in time that does not depend on where they differ (only on their length).
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}
