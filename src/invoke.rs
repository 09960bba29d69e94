//! Function invocation (docs/interface.md §4): the [`Invoker`], built once, sends one event to one
//! function and classifies what happened as an [`Invocation`]. It never interprets a response:
//! the caller applies [`crate::domain::event::parse_batch_response`] (docs/architecture.md §5 rule 7).
//!
//! Each backend lives in its own file and is the only one to import its crate: `http` (reqwest),
//! `command` (tokio::process), `log` (built in). Failures are logged here, once, at warn level with
//! the `function` and `mapping` fields; the event itself is never logged.

use crate::config::{FunctionConfig, FunctionTarget};

mod command;
mod http;
mod log;

/// The largest response esmd accepts from a function: Lambda's 6 MiB synchronous limit.
pub const MAX_RESPONSE_BYTES: usize = 6 * 1024 * 1024;

/// The version every esmd function runs as (`X-Amz-Executed-Version`, and the qualifier the
/// Invoke API accepts).
pub const EXECUTED_VERSION: &str = "$LATEST";

/// Invokes functions. Cheap to clone: all clones share one pooled HTTP client.
#[derive(Debug, Clone)]
pub struct Invoker {
    http: http::HttpInvoker,
}

/// What to invoke, and the names to tag its logs with.
#[derive(Debug, Clone, Copy)]
pub struct InvokeTarget<'a> {
    /// The function's configured name (`AWS_LAMBDA_FUNCTION_NAME` for commands).
    pub function: &'a str,
    /// The mapping invoking it.
    pub mapping: &'a str,
    /// The region (`AWS_REGION` for commands).
    pub region: &'a str,
    /// The function's configuration.
    pub config: &'a FunctionConfig,
}

/// How one invocation ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invocation {
    /// The function returned (a 2xx answer, or exit status 0). `None` is an empty or `null`
    /// response; otherwise the response body, at most [`MAX_RESPONSE_BYTES`].
    Returned(Option<Vec<u8>>),
    /// The function failed: the whole batch failed. The string says why, for the log.
    FunctionError(String),
    /// The function did not answer within its timeout (a command was killed with its children).
    TimedOut,
}

impl Invoker {
    /// Builds the invoker and its HTTP connection pool.
    ///
    /// # Panics
    /// If the TLS backend cannot be initialised, as `reqwest::Client::new` does.
    pub fn new() -> Self {
        Invoker {
            http: http::HttpInvoker::new(),
        }
    }

    /// Invokes `target` synchronously with `payload` (an assembled SQS event) and classifies the
    /// result. One call per batch.
    ///
    /// # Cancel safety
    /// Dropping the future abandons the invocation: an HTTP request is cancelled, and a command is
    /// killed together with every process of its process group.
    pub async fn invoke(&self, target: &InvokeTarget<'_>, payload: Vec<u8>) -> Invocation {
        let timeout = target.config.timeout;
        let invocation = match &target.config.target {
            FunctionTarget::Http { url } => self.http.invoke(url, timeout, payload).await,
            FunctionTarget::Command {
                argv,
                env,
                working_dir,
            } => {
                let command = command::CommandSpec {
                    argv,
                    env,
                    working_dir: working_dir.as_deref(),
                };
                command::invoke(target, &command, payload).await
            }
            FunctionTarget::Log => log::invoke(target, &payload),
        };
        match &invocation {
            Invocation::Returned(_) => {}
            Invocation::FunctionError(why) => {
                tracing::warn!(function = target.function, mapping = target.mapping, error = %why, "function failed");
            }
            Invocation::TimedOut => {
                tracing::warn!(
                    function = target.function,
                    mapping = target.mapping,
                    timeout = %humantime::format_duration(timeout),
                    "function timed out"
                );
            }
        }
        invocation
    }
}

/// What a caller of Lambda's Invoke API adds to an invocation (docs/interface.md §3.8).
#[derive(Debug, Clone, Default)]
pub struct InvokeOptions {
    /// The request id to use (a new UUID when `None`).
    pub request_id: Option<String>,
    /// `X-Amz-Client-Context`, already base64-decoded (a JSON document).
    pub client_context: Option<String>,
    /// `X-Amzn-Trace-Id`.
    pub trace_id: Option<String>,
    /// Whether the caller asked for the invocation's log (`X-Amz-Log-Type: Tail`).
    pub tail: bool,
}

/// One invocation with its request id and, when asked for, its log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invoked {
    /// The invocation's request id.
    pub request_id: String,
    /// How it ended.
    pub invocation: Invocation,
    /// `START RequestId: …`, what the function wrote during the invocation, `END …` and
    /// `REPORT …`, when [`InvokeOptions::tail`] asked for it.
    pub log: Option<String>,
}

impl Invoker {
    /// Invokes `target` with `payload` as the Invoke API does: with a request id, and the
    /// invocation's log when asked for.
    pub async fn invoke_with(
        &self,
        target: &InvokeTarget<'_>,
        payload: Vec<u8>,
        options: InvokeOptions,
    ) -> Invoked {
        let request_id = options
            .request_id
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let started = std::time::Instant::now();
        let invocation = self.invoke(target, payload).await;
        let log = options.tail.then(|| {
            let ms = started.elapsed().as_secs_f64() * 1000.0;
            format!(
                "START RequestId: {request_id} Version: $LATEST\nEND RequestId: {request_id}\n\
                 REPORT RequestId: {request_id}\tDuration: {ms:.2} ms\tBilled Duration: {billed} ms\t\
                 Memory Size: {memory} MB\tMax Memory Used: 0 MB\t\n",
                billed = ms.ceil() as u64,
                memory = 128,
            )
        });
        Invoked {
            request_id,
            invocation,
            log,
        }
    }
}

impl Invocation {
    /// The Lambda error document a synchronous caller gets for a failed invocation (with
    /// `X-Amz-Function-Error: Unhandled`), or `None` when it returned.
    pub fn error_document(
        &self,
        request_id: &str,
        timeout: std::time::Duration,
    ) -> Option<Vec<u8>> {
        let doc = match self {
            Invocation::Returned(_) => return None,
            Invocation::FunctionError(why) => serde_json::json!({
                "errorType": "Function.Error",
                "errorMessage": why,
            }),
            Invocation::TimedOut => serde_json::json!({
                "errorType": "Sandbox.Timedout",
                "errorMessage": format!(
                    "RequestId: {request_id} Error: Task timed out after {:.2} seconds",
                    timeout.as_secs_f64()
                ),
            }),
        };
        Some(doc.to_string().into_bytes())
    }
}

impl Default for Invoker {
    fn default() -> Self {
        Self::new()
    }
}

/// A response body as [`Invocation::Returned`] carries it: `None` when empty, blank or `null`.
fn response(body: Vec<u8>) -> Invocation {
    let trimmed = body.trim_ascii();
    if trimmed.is_empty() || trimmed == b"null" {
        Invocation::Returned(None)
    } else {
        Invocation::Returned(Some(body))
    }
}

/// The error for a response over [`MAX_RESPONSE_BYTES`].
fn too_large() -> Invocation {
    Invocation::FunctionError(format!(
        "response too large: more than {MAX_RESPONSE_BYTES} bytes"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blank_and_null_responses_are_none() {
        for body in ["", " \n", "null", " null\n"] {
            assert_eq!(
                response(body.as_bytes().to_vec()),
                Invocation::Returned(None),
                "{body:?}"
            );
        }
        assert_eq!(
            response(b"{}".to_vec()),
            Invocation::Returned(Some(b"{}".to_vec()))
        );
    }
}
