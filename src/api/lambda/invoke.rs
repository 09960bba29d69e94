//! Lambda's Invoke API (docs/interface.md §3.8): `POST /2015-03-31/functions/{FunctionName}/
//! invocations[?Qualifier=$LATEST]` for every configured function, as `aws lambda invoke`,
//! boto3 and the SDKs call it. `X-Amz-Invocation-Type` picks the kind: `RequestResponse` (the
//! default) runs the function now through the daemon's [`Invoker`](crate::invoke::Invoker) and
//! answers 200 with its result, or with its error document and `X-Amz-Function-Error:
//! Unhandled`; `Event` stores the event durably and answers 202 (the daemon's runner invokes it
//! later, `daemon/events.rs`); `DryRun` checks the request and answers 204.
//!
//! The checks come in Lambda's order: the function and qualifier (404), the headers (400), the
//! size (413: 6 MB synchronous, 1 MB `Event`), the body being JSON (400).

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde::Deserialize;

use super::error::LambdaError;
use super::resolve;
use crate::api::{body, AppState};
use crate::config::FunctionTarget;
use crate::domain::error::chain;
use crate::invoke::{Invocation, InvokeOptions, InvokeTarget, Invoked, EXECUTED_VERSION};

/// The largest synchronous request body (Lambda's 6 MB).
pub(crate) const MAX_SYNC_PAYLOAD: usize = 6_291_456;
/// The largest `Event` request body (Lambda's 1 MB).
pub(crate) const MAX_EVENT_PAYLOAD: usize = 1_048_576;
/// The longest `X-Amz-Client-Context` header (base64), as Lambda allows.
const MAX_CLIENT_CONTEXT: usize = 3583;
/// How much of the invocation's log `X-Amz-Log-Result` carries (the last 4 KB).
const LOG_TAIL: usize = 4096;
/// The `mapping` field of the logs of an invocation through this API.
pub(crate) const INVOKE_API: &str = "invoke-api";

/// The route's path.
pub(crate) const INVOCATIONS: &str = "/2015-03-31/functions/{name}/invocations";

/// `?Qualifier=`.
#[derive(Deserialize)]
pub(crate) struct InvokeQuery {
    #[serde(rename = "Qualifier")]
    qualifier: Option<String>,
}

/// `X-Amz-Invocation-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    RequestResponse,
    Event,
    DryRun,
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// POST on [`INVOCATIONS`].
pub(crate) async fn invoke(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(query): Query<InvokeQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, LambdaError> {
    let known = state.mappings.known();
    let function = resolve::function(&name, &state.server, &known)?;
    if let Some(q) = query
        .qualifier
        .as_deref()
        .filter(|q| *q != EXECUTED_VERSION)
    {
        return Err(LambdaError::not_found(format!(
            "Function not found: {}:{q}",
            resolve::function_arn(&state.server, &function)
        )));
    }
    let config = known
        .functions
        .get(&function)
        .cloned()
        .ok_or_else(|| LambdaError::service("the function was removed meanwhile"))?;
    let kind = match header(&headers, "x-amz-invocation-type") {
        None | Some("RequestResponse") => Kind::RequestResponse,
        Some("Event") => Kind::Event,
        Some("DryRun") => Kind::DryRun,
        Some(other) => {
            return Err(LambdaError::invalid(format!(
                "1 validation error detected: Value '{other}' at 'invocationType' failed to \
                 satisfy constraint: Member must satisfy enum value set: [Event, \
                 RequestResponse, DryRun]"
            )))
        }
    };
    let tail = match header(&headers, "x-amz-log-type") {
        None | Some("None") => false,
        Some("Tail") => true,
        Some(other) => {
            return Err(LambdaError::invalid(format!(
                "1 validation error detected: Value '{other}' at 'logType' failed to satisfy \
                 constraint: Member must satisfy enum value set: [None, Tail]"
            )))
        }
    };
    let client_context = client_context(&headers)?;
    let limit = if kind == Kind::Event {
        MAX_EVENT_PAYLOAD
    } else {
        MAX_SYNC_PAYLOAD
    };
    let payload = read_payload(&headers, body, kind).await?;
    if payload.len() > limit {
        return Err(too_large(kind, payload.len()));
    }
    let payload = if payload.trim_ascii().is_empty() {
        b"{}".to_vec()
    } else {
        if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(&payload) {
            return Err(LambdaError::invalid_content(format!(
                "Could not parse request body into json: {e}"
            )));
        }
        payload.to_vec()
    };
    let trace_id = header(&headers, "x-amzn-trace-id").map(str::to_owned);
    let request_id = uuid::Uuid::new_v4().to_string();
    match kind {
        Kind::DryRun => Ok(empty(StatusCode::NO_CONTENT, &request_id)),
        Kind::Event => {
            state
                .store
                .enqueue_event(&request_id, &function, payload, client_context, trace_id)
                .await
                .map_err(|e| {
                    LambdaError::service(format!(
                        "esmd could not store the Event invocation: {}",
                        chain(&e)
                    ))
                })?;
            state.metrics.async_event(&function, "queued");
            Ok(empty(StatusCode::ACCEPTED, &request_id))
        }
        Kind::RequestResponse => {
            let target = InvokeTarget {
                function: &function,
                mapping: INVOKE_API,
                region: &state.server.region,
                config: &config,
            };
            let options = InvokeOptions {
                request_id: Some(request_id),
                client_context,
                trace_id,
                tail,
                // A synchronous caller is told at once when every environment is busy (429),
                // as Lambda does; mappings and Event invocations wait for one instead.
                throttle_when_busy: true,
            };
            let invoked = state.invoker.invoke_with(&target, payload, options).await;
            if invoked.invocation == Invocation::Throttled {
                let max = match &config.target {
                    FunctionTarget::Runtime(r) => r.max_environments as usize,
                    _ => 1,
                };
                return Err(throttled(&function, max));
            }
            Ok(answer(&invoked, config.timeout))
        }
    }
}

/// `X-Amz-Client-Context`, base64-decoded; at most [`MAX_CLIENT_CONTEXT`] bytes.
fn client_context(headers: &HeaderMap) -> Result<Option<String>, LambdaError> {
    let Some(raw) = headers.get("x-amz-client-context") else {
        return Ok(None);
    };
    let raw = raw.to_str().map_err(|_| {
        LambdaError::invalid_content("X-Amz-Client-Context must be base64 (ASCII) text")
    })?;
    if raw.len() > MAX_CLIENT_CONTEXT {
        return Err(LambdaError::invalid_content(format!(
            "Client context must be no longer than {MAX_CLIENT_CONTEXT} bytes (base64), not {}",
            raw.len()
        )));
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(raw.trim())
        .map_err(|e| {
            LambdaError::invalid_content(format!("X-Amz-Client-Context is not valid base64: {e}"))
        })?;
    String::from_utf8(decoded)
        .map(Some)
        .map_err(|_| LambdaError::invalid_content("X-Amz-Client-Context is not UTF-8 once decoded"))
}

/// The body, refused from its declared length when that is over the synchronous limit, and
/// read at most one byte past it otherwise.
async fn read_payload(
    headers: &HeaderMap,
    body: Body,
    kind: Kind,
) -> Result<bytes::Bytes, LambdaError> {
    if let Some(n) = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.trim().parse::<usize>().ok())
        .filter(|&n| n > MAX_SYNC_PAYLOAD)
    {
        return Err(too_large(kind, n));
    }
    match body::read(body, MAX_SYNC_PAYLOAD).await {
        Ok(b) => Ok(b),
        Err(body::ReadError::TooLarge) => Err(too_large(kind, MAX_SYNC_PAYLOAD + 1)),
        Err(body::ReadError::Broken(why)) => Err(LambdaError::invalid_content(format!(
            "the request body could not be read: {why}"
        ))),
    }
}

/// The 413 of a `size`-byte request, worded as Lambda words it.
fn too_large(kind: Kind, size: usize) -> LambdaError {
    if kind == Kind::Event {
        LambdaError::too_large(format!(
            "{size} byte payload is too large for the Event invocation type (limit \
             {MAX_EVENT_PAYLOAD} bytes)"
        ))
    } else {
        LambdaError::too_large(format!(
            "Request must be smaller than {MAX_SYNC_PAYLOAD} bytes for the InvokeFunction operation"
        ))
    }
}

fn empty(status: StatusCode, request_id: &str) -> Response {
    let mut response = status.into_response();
    if let Ok(id) = HeaderValue::from_str(request_id) {
        response.headers_mut().insert("x-amzn-RequestId", id);
    }
    response
}

/// The answer to a synchronous invocation: 200 with the result, or with the error document and
/// `X-Amz-Function-Error: Unhandled`; the request id, the executed version and the log tail.
fn answer(invoked: &Invoked, timeout: std::time::Duration) -> Response {
    let (body, failed) = match &invoked.invocation {
        Invocation::Returned(Some(body)) => (body.clone(), false),
        Invocation::Returned(None) => (b"null".to_vec(), false),
        failed => (
            failed
                .error_document(&invoked.request_id, timeout)
                .unwrap_or_default(),
            true,
        ),
    };
    let mut response = (StatusCode::OK, body).into_response();
    let h = response.headers_mut();
    h.insert(
        axum::http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(
        "X-Amz-Executed-Version",
        HeaderValue::from_static(EXECUTED_VERSION),
    );
    if failed {
        h.insert(
            "X-Amz-Function-Error",
            HeaderValue::from_static("Unhandled"),
        );
    }
    if let Ok(id) = HeaderValue::from_str(&invoked.request_id) {
        h.insert("x-amzn-RequestId", id);
    }
    if let Some(log) = &invoked.log {
        let tail = base64::engine::general_purpose::STANDARD.encode(log_tail(log));
        if let Ok(v) = HeaderValue::from_str(&tail) {
            h.insert("X-Amz-Log-Result", v);
        }
    }
    response
}

/// The refusal of a synchronous call that found no free environment and could start none
/// (Lambda's 429 past the function's concurrency). The runtime functions' invoker reports that
/// case; the handler maps it here.
pub(crate) fn throttled(function: &str, max_environments: usize) -> LambdaError {
    LambdaError::throttled(
        "ReservedFunctionConcurrentInvocationLimitExceeded",
        format!(
            "Rate Exceeded. Function {function} already runs {max_environments} invocations \
             (max_environments)"
        ),
    )
}

/// The last [`LOG_TAIL`] bytes of `log`, starting on a character boundary.
fn log_tail(log: &str) -> &[u8] {
    let mut start = log.len().saturating_sub(LOG_TAIL);
    while !log.is_char_boundary(start) {
        start += 1;
    }
    &log.as_bytes()[start..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_tail_is_the_last_4_kb_on_a_character_boundary() {
        assert_eq!(log_tail("short"), b"short");
        let long = format!("é{}", "x".repeat(LOG_TAIL - 1));
        // 'é' is two bytes: the tail starts after it rather than in its middle.
        assert_eq!(log_tail(&long).len(), LOG_TAIL - 1);
        let longer = "y".repeat(10_000);
        assert_eq!(log_tail(&longer).len(), LOG_TAIL);
    }
}
