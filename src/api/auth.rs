//! Request authentication (docs/interface.md §3.4). With `server.auth_token` unset every request
//! passes. With it set, every request but `/healthz` must carry `Authorization: Bearer <token>`
//! or be SigV4-signed (`AWS4-HMAC-SHA256`, any access key id) with the token as the secret
//! key, so the AWS SDKs and CLIs work by configuring the token as their secret. Anything else
//! gets 401 in the shape of the protocol that was spoken.

mod form;
mod sigv4;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq as _;

use super::error::{RestError, SqsError};
use super::{body, AppState, MAX_SQS_BODY};

/// Lets the request through if it is authenticated.
pub(crate) async fn require(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let Some(token) = state.server.auth_token.as_deref() else {
        return next.run(req).await;
    };
    let sqs = req.uri().path() == "/";
    // Refuse an oversized body here too, before a signature check would read it.
    if body::declared_too_large(req.headers(), MAX_SQS_BODY) {
        let request_id = uuid::Uuid::new_v4().to_string();
        return if sqs {
            SqsError::too_large(MAX_SQS_BODY).into_response_with(&request_id)
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
    let outcome = match authorization.as_deref() {
        Some(a) if a.starts_with("Bearer ") => {
            if constant_time_eq(a["Bearer ".len()..].trim().as_bytes(), token.as_bytes()) {
                Ok(req)
            } else {
                Err("the bearer token is not the configured auth_token".to_owned())
            }
        }
        Some(a) if a.starts_with(sigv4::ALGORITHM) => match form::check(a, req.headers()) {
            // Only a header that could be valid gets its body read for the signature.
            Ok(()) => sigv4::verify(req, a, token).await,
            Err(why) => Err(why),
        },
        Some(_) => Err("the Authorization header is neither Bearer nor AWS4-HMAC-SHA256".to_owned()),
        None => Err("the request has no Authorization header and this esmd requires one (server.auth_token)".to_owned()),
    };
    match outcome {
        Ok(req) => next.run(req).await,
        Err(why) if sqs => SqsError::unauthorized(format!("Access denied: {why}."))
            .into_response_with(&uuid::Uuid::new_v4().to_string()),
        Err(why) => RestError::new(StatusCode::UNAUTHORIZED, "Unauthorized", why).into_response(),
    }
}

/// Compares secrets in time that does not depend on where they differ (only on their length).
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}
