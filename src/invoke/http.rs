//! `type = "http"` functions: POST the event as `application/json` to the configured URL, which
//! may be the Lambda Invoke API (`/2015-03-31/functions/NAME/invocations`) of `sam local
//! start-lambda`, `cargo lambda watch`, the runtime interface emulator or LocalStack, or any
//! endpoint that answers the same way. The only file that imports reqwest.
//!
//! Success is a 2xx answer without `X-Amz-Function-Error` (the Invoke API answers 200 with that
//! header when the handler threw). Anything else, including a connection error, is a function
//! error; no complete answer (headers and body) within the timeout is [`Invocation::TimedOut`].
//! Redirects are not followed (that would post the event to wherever the answer points): a 3xx
//! is a function error naming the status and the `Location`.

use std::time::Duration;

use reqwest::header::{HeaderValue, CONTENT_TYPE};
use reqwest::{Client, Response};

use super::{response, too_large, Invocation, MAX_RESPONSE_BYTES};
use crate::domain::error::chain;

/// The header with which the Lambda Invoke API marks a failed invocation (`Unhandled`, `Handled`).
const FUNCTION_ERROR_HEADER: &str = "x-amz-function-error";

/// How much of an error response is quoted in the failure message.
const MAX_QUOTED: usize = 200;

/// One pooled client for every HTTP function.
#[derive(Debug, Clone)]
pub(super) struct HttpInvoker {
    client: Client,
}

impl HttpInvoker {
    pub(super) fn new() -> Self {
        let client = Client::builder()
            .user_agent(concat!("esmd/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("the HTTP client's TLS backend initialises");
        HttpInvoker { client }
    }

    /// POSTs `payload` to `url` and classifies the answer; see the module docs.
    pub(super) async fn invoke(
        &self,
        url: &str,
        timeout: Duration,
        payload: Vec<u8>,
    ) -> Invocation {
        match tokio::time::timeout(timeout, self.exchange(url, payload)).await {
            Ok(invocation) => invocation,
            Err(_elapsed) => Invocation::TimedOut,
        }
    }

    async fn exchange(&self, url: &str, payload: Vec<u8>) -> Invocation {
        let request = self
            .client
            .post(url)
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            // The Invoke API's default, stated so that a proxy or emulator cannot mistake it.
            .header(
                "x-amz-invocation-type",
                HeaderValue::from_static("RequestResponse"),
            )
            .body(payload);
        let mut resp = match request.send().await {
            Ok(resp) => resp,
            Err(e) => return Invocation::FunctionError(format!("request failed: {}", chain(&e))),
        };
        let status = resp.status();
        let function_error = resp
            .headers()
            .get(FUNCTION_ERROR_HEADER)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        let location = resp
            .headers()
            .get(reqwest::header::LOCATION)
            .map(|v| quote(v.as_bytes()));
        let body = match read_bounded(&mut resp).await {
            Ok(Some(body)) => body,
            Ok(None) => return too_large(),
            Err(e) => {
                return Invocation::FunctionError(format!(
                    "reading the response failed: {}",
                    chain(&e)
                ))
            }
        };
        if let Some(kind) = function_error {
            return Invocation::FunctionError(format!("function error ({kind}): {}", quote(&body)));
        }
        if status.is_redirection() {
            return Invocation::FunctionError(format!(
                "HTTP status {status} (a redirect to {}, which is not followed)",
                location.as_deref().unwrap_or("nowhere")
            ));
        }
        if !status.is_success() {
            return Invocation::FunctionError(format!("HTTP status {status}: {}", quote(&body)));
        }
        response(body)
    }
}

/// Reads the whole body, or `None` if it is longer than [`MAX_RESPONSE_BYTES`] (reading stops
/// at the first byte past the limit).
async fn read_bounded(resp: &mut Response) -> reqwest::Result<Option<Vec<u8>>> {
    if resp
        .content_length()
        .is_some_and(|n| n > MAX_RESPONSE_BYTES as u64)
    {
        return Ok(None);
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
            return Ok(None);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Some(body))
}

/// The start of a response body, lossily decoded, for a failure message.
fn quote(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return "(empty response)".to_owned();
    }
    let mut quoted: String = text.chars().take(MAX_QUOTED).collect();
    if quoted.len() < text.len() {
        quoted.push('…');
    }
    quoted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_are_short_and_never_empty() {
        assert_eq!(quote(b""), "(empty response)");
        assert_eq!(
            quote(b" {\"errorMessage\":\"boom\"}\n"),
            "{\"errorMessage\":\"boom\"}"
        );
        let long = "é".repeat(300);
        assert_eq!(quote(long.as_bytes()).chars().count(), MAX_QUOTED + 1);
    }
}
