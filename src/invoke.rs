//! Function invocation (docs/interface.md §4): the [`Invoker`], built once, sends one event to one
//! function and classifies what happened as an [`Invocation`]. It never interprets a response:
//! the caller applies [`crate::domain::event::parse_batch_response`] (docs/architecture.md §5 rule 7).
//!
//! Each backend lives in its own file and is the only one to import its crate: `http` (reqwest),
//! `command` (tokio::process), `log` (built in), `runtime` (Lambda runtimes served the Runtime
//! API, in execution environments that live as long as the invoker). Failures are logged here, once, at warn level with
//! the `function` and `mapping` fields; the event itself is never logged.

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::config::{FunctionConfig, FunctionTarget};
use crate::metrics::RuntimeMetrics;

mod command;
mod http;
mod log;
mod runtime;

/// The largest response esmd accepts from a function: Lambda's 6 MiB synchronous limit.
pub const MAX_RESPONSE_BYTES: usize = 6 * 1024 * 1024;

/// The version every esmd function runs as (`X-Amz-Executed-Version`, and the qualifier the
/// Invoke API accepts).
pub const EXECUTED_VERSION: &str = "$LATEST";

/// Invokes functions. Cheap to clone: all clones share one pooled HTTP client and the runtime
/// functions' execution environments.
#[derive(Debug, Clone)]
pub struct Invoker {
    http: http::HttpInvoker,
    runtimes: Arc<runtime::Runtimes>,
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
    /// The function did not answer within its timeout (a command was killed with its children,
    /// a runtime's execution environment killed and replaced).
    TimedOut,
    /// A `runtime` function failed with Lambda's error document: the runtime's own (verbatim from
    /// `/error` or `/init/error`) or esmd's (`Runtime.ExitError`,
    /// `Function.ResponseSizeTooLarge`...). The whole batch failed.
    RuntimeError {
        /// Why, for the log.
        why: String,
        /// The error document a synchronous caller gets.
        document: Vec<u8>,
    },
    /// Every execution environment was busy and none could be started, and the caller asked
    /// not to wait ([`InvokeOptions::throttle_when_busy`]): nothing ran. The Invoke API answers
    /// 429 `TooManyRequestsException`.
    Throttled,
}

impl Invoker {
    /// Builds the invoker and its HTTP connection pool.
    ///
    /// # Panics
    /// If the TLS backend cannot be initialised, as `reqwest::Client::new` does.
    pub fn new() -> Self {
        Self::with_runtimes(RuntimeMetrics::default(), CancellationToken::new())
    }

    /// Builds the invoker of a daemon: runtime functions' environments are recorded in
    /// `metrics` and killed when `cancel` fires (or at [`Invoker::shutdown`]).
    pub fn with_runtimes(metrics: RuntimeMetrics, cancel: CancellationToken) -> Self {
        Invoker {
            http: http::HttpInvoker::new(),
            runtimes: Arc::new(runtime::Runtimes::new(metrics, cancel)),
        }
    }

    /// After a reload: the execution environments of runtime functions whose configuration
    /// changed, or that are gone, are shut down (new ones start at their next invocation).
    pub fn reconfigure(&self, functions: &BTreeMap<String, FunctionConfig>) {
        self.runtimes.reconfigure(functions);
    }

    /// Kills every execution environment (esmd is stopping).
    pub fn shutdown(&self) {
        self.runtimes.shutdown();
    }

    /// Invokes `target` synchronously with `payload` (an assembled SQS event) and classifies the
    /// result. One call per batch.
    ///
    /// # Cancel safety
    /// Dropping the future abandons the invocation: an HTTP request is cancelled, and a command is
    /// killed together with every process of its process group.
    pub async fn invoke(&self, target: &InvokeTarget<'_>, payload: Vec<u8>) -> Invocation {
        let request_id = uuid::Uuid::new_v4().to_string();
        let options = InvokeOptions {
            request_id: Some(request_id),
            ..InvokeOptions::default()
        };
        self.invoke_with(target, payload, options).await.invocation
    }

    /// Invokes a backend; a runtime function also gives its log.
    async fn dispatch(
        &self,
        target: &InvokeTarget<'_>,
        payload: Vec<u8>,
        request_id: &str,
        options: &InvokeOptions,
    ) -> (Invocation, Option<String>) {
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
            FunctionTarget::Runtime(runtime) => {
                let call = runtime::Call {
                    request_id,
                    trace_id: options.trace_id.as_deref(),
                    client_context: options.client_context.as_deref(),
                    throttle_when_busy: options.throttle_when_busy,
                };
                let invoked = self.runtimes.invoke(target, runtime, payload, call).await;
                log_failure(target, &invoked.invocation);
                return (invoked.invocation, invoked.log);
            }
        };
        log_failure(target, &invocation);
        (invocation, None)
    }
}

/// Logs why an invocation failed, once.
fn log_failure(target: &InvokeTarget<'_>, invocation: &Invocation) {
    let timeout = target.config.timeout;
    {
        match invocation {
            Invocation::Returned(_) | Invocation::Throttled => {}
            Invocation::FunctionError(why) | Invocation::RuntimeError { why, .. } => {
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
    /// When every execution environment of a runtime function is busy and no other can start,
    /// end at once with [`Invocation::Throttled`] (a synchronous Invoke API call) instead of
    /// waiting for one (a mapping, an Event invocation).
    pub throttle_when_busy: bool,
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
            .clone()
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let started = std::time::Instant::now();
        let (invocation, real_log) = self.dispatch(target, payload, &request_id, &options).await;
        let synthesized = real_log.is_none();
        let log = options
            .tail
            .then(|| real_log.unwrap_or_default())
            .filter(|_| !synthesized);
        let log = log.or_else(|| (options.tail && synthesized).then(|| {
            let ms = started.elapsed().as_secs_f64() * 1000.0;
            format!(
                "START RequestId: {request_id} Version: $LATEST\nEND RequestId: {request_id}\n\
                 REPORT RequestId: {request_id}\tDuration: {ms:.2} ms\tBilled Duration: {billed} ms\t\
                 Memory Size: {memory} MB\tMax Memory Used: 0 MB\t\n",
                billed = ms.ceil() as u64,
                memory = 128,
            )
        }));
        Invoked {
            request_id,
            invocation,
            log,
        }
    }
}

impl Invocation {
    /// The Lambda error document a synchronous caller gets for a failed invocation (with
    /// `X-Amz-Function-Error: Unhandled`), or `None` when it returned or was throttled (nothing
    /// ran: the Invoke API answers 429).
    pub fn error_document(
        &self,
        request_id: &str,
        timeout: std::time::Duration,
    ) -> Option<Vec<u8>> {
        let doc = match self {
            Invocation::Returned(_) | Invocation::Throttled => return None,
            Invocation::RuntimeError { document, .. } => return Some(document.clone()),
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
