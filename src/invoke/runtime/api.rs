//! The Runtime API (2018-06-01) that one execution environment's runtime talks to
//! (docs/interface.md §4.4): `GET /runtime/invocation/next` (a long poll without timeout),
//! `POST …/{id}/response`, `POST …/{id}/error` and `POST /runtime/init/error`, with Lambda's
//! status codes and error bodies for misuse. One server per environment, bound on 127.0.0.1:0
//! before the runtime starts, keep-alive and TCP_NODELAY; it never maps connections to anything.

use std::sync::{Arc, Mutex, PoisonError};

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::ListenerExt as _;
use axum::Router;
use http_body_util::BodyExt as _;
use tokio::sync::{oneshot, Notify};

/// The largest response or error body the Runtime API accepts: 6 MiB + 100 bytes, as Lambda's.
pub(super) const MAX_PAYLOAD: usize = 6_291_556;

/// An invocation handed to the runtime as the answer to its `/next`.
pub(super) struct Event {
    pub request_id: String,
    pub deadline_ms: u128,
    pub function_arn: String,
    pub trace_id: Option<String>,
    pub client_context: Option<String>,
    pub payload: Vec<u8>,
}

/// How the runtime ended the invocation in flight.
#[derive(Debug)]
pub(super) enum Reported {
    /// `/response` with this body.
    Response(Vec<u8>),
    /// `/error` with this error document (the body, or one built from the error-type header).
    Error(Vec<u8>),
    /// `/response` with a body of this many bytes, over [`MAX_PAYLOAD`].
    TooLarge(usize),
    /// `/response` in a response mode esmd does not serve (streaming).
    InvalidResponseMode,
}

/// The state the Runtime API shares with the environment that owns it.
#[derive(Default)]
pub(super) struct Shared {
    state: Mutex<ApiState>,
    /// Signalled when a `/next` starts waiting or `/init/error` arrives.
    pub changed: Notify,
}

#[derive(Default)]
struct ApiState {
    /// The pending `/next`, waiting for an invocation.
    next: Option<oneshot::Sender<Event>>,
    /// The invocation in flight and where its report goes (taken by the first report).
    current: Option<(String, Option<oneshot::Sender<Reported>>)>,
    /// The last invocation reported: another report for it is a refused state transition (403)
    /// rather than an unknown id (400), until the next invocation is handed over.
    reported: Option<String>,
    /// Whether Init has ended (the first `/next`).
    initialised: bool,
    /// The document of `/init/error`.
    init_error: Option<Vec<u8>>,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, ApiState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether a `/next` is waiting, and the `/init/error` document if one came.
    pub(super) fn ready(&self) -> (bool, Option<Vec<u8>>) {
        let state = self.lock();
        let waiting = state.next.as_ref().is_some_and(|tx| !tx.is_closed());
        (waiting, state.init_error.clone())
    }

    /// Hands `event` to the waiting `/next`; the runtime's report arrives on the receiver.
    /// `Err` gives the event back when no `/next` is waiting any more.
    pub(super) fn dispatch(&self, event: Event) -> Result<oneshot::Receiver<Reported>, Box<Event>> {
        let mut state = self.lock();
        let Some(next) = state.next.take() else {
            return Err(Box::new(event));
        };
        let (tx, rx) = oneshot::channel();
        state.current = Some((event.request_id.clone(), Some(tx)));
        state.reported = None;
        match next.send(event) {
            Ok(()) => Ok(rx),
            Err(event) => {
                state.current = None;
                Err(Box::new(event))
            }
        }
    }

    /// Ends the invocation in flight: a later report for it is an invalid request id.
    pub(super) fn release(&self) {
        self.lock().current = None;
    }

    /// The environment is going away: a pending `/next` is answered (500) so that its
    /// connection, and this state, do not outlive it.
    pub(super) fn close(&self) {
        let mut state = self.lock();
        state.next = None;
        state.current = None;
    }
}

/// Binds the listener (before the runtime starts) and serves the API until the task is aborted.
pub(super) async fn bind(
    shared: Arc<Shared>,
) -> std::io::Result<(std::net::SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let app = Router::new()
        .route("/2018-06-01/runtime/invocation/next", get(next))
        .route(
            "/2018-06-01/runtime/invocation/{id}/response",
            post(response),
        )
        .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
        .route("/2018-06-01/runtime/init/error", post(init_error))
        .with_state(shared);
    let listener = listener.tap_io(|tcp| {
        // Without it a runtime writing headers and body separately waits ~40 ms per request.
        let _ = tcp.set_nodelay(true);
    });
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((addr, task))
}

/// An error as the Runtime API words it.
fn fail(status: StatusCode, kind: &str, message: &str) -> Response {
    let body = serde_json::json!({"errorMessage": message, "errorType": kind}).to_string();
    (status, [("content-type", "application/json")], body).into_response()
}

fn accepted() -> Response {
    (
        StatusCode::ACCEPTED,
        [("content-type", "application/json")],
        r#"{"status":"OK"}"#,
    )
        .into_response()
}

fn transition_refused(to: &str) -> Response {
    fail(
        StatusCode::FORBIDDEN,
        "InvalidStateTransition",
        &format!(
            "State transition from Ready to {to} failed for runtime. Error: State transition is \
             not allowed"
        ),
    )
}

async fn next(State(shared): State<Arc<Shared>>) -> Response {
    let rx = {
        let mut state = shared.lock();
        let waiting = state.next.as_ref().is_some_and(|tx| !tx.is_closed());
        // An invocation already reported may not be released yet: its runtime asks for the next
        // one as soon as its report is accepted.
        let unreported = matches!(&state.current, Some((_, Some(_))));
        if waiting || unreported {
            return transition_refused("Ready");
        }
        state.current = None;
        let (tx, rx) = oneshot::channel();
        state.next = Some(tx);
        state.initialised = true;
        rx
    };
    shared.changed.notify_waiters();
    let Ok(event) = rx.await else {
        // The environment is going away: "container error, the runtime should exit".
        return fail(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Runtime.ExitError",
            "the execution environment is shutting down",
        );
    };
    let mut headers = HeaderMap::new();
    let mut put = |name: &'static str, value: &str| {
        if let Ok(v) = HeaderValue::from_str(value) {
            headers.insert(name, v);
        }
    };
    put("lambda-runtime-aws-request-id", &event.request_id);
    put("lambda-runtime-deadline-ms", &event.deadline_ms.to_string());
    put("lambda-runtime-invoked-function-arn", &event.function_arn);
    // Without it awslambdaric crashes; its marshaller parses exactly application/json.
    put("content-type", "application/json");
    if let Some(trace) = event.trace_id.as_deref().filter(|t| !t.is_empty()) {
        put("lambda-runtime-trace-id", trace);
    }
    if let Some(context) = event.client_context.as_deref() {
        put("lambda-runtime-client-context", context);
    }
    (StatusCode::OK, headers, event.payload).into_response()
}

/// Reads a body up to [`MAX_PAYLOAD`]: `Ok(Err(n))` when it held `n > MAX_PAYLOAD` bytes.
#[allow(clippy::result_large_err)] // see `claim`
async fn read_body(body: Body) -> Result<Result<Vec<u8>, usize>, Response> {
    let mut body = body;
    let mut out = Vec::new();
    let mut total = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| {
            fail(
                StatusCode::BAD_REQUEST,
                "TruncatedHTTPRequest",
                "HTTP request detected as truncated",
            )
        })?;
        if let Ok(data) = frame.into_data() {
            total += data.len();
            if total <= MAX_PAYLOAD {
                out.extend_from_slice(&data);
            }
        }
    }
    Ok(if total > MAX_PAYLOAD {
        Err(total)
    } else {
        Ok(out)
    })
}

/// Takes the report channel of invocation `id`, or answers why not.
#[allow(clippy::result_large_err)] // an axum Response, built on the error path only
fn claim(shared: &Shared, id: &str) -> Result<oneshot::Sender<Reported>, Response> {
    let mut state = shared.lock();
    if let Some((current, slot)) = &mut state.current {
        if current == id {
            if let Some(tx) = slot.take() {
                state.reported = Some(id.to_owned());
                return Ok(tx);
            }
        }
    }
    if state.reported.as_deref() == Some(id) {
        return Err(transition_refused("InvocationResponse"));
    }
    Err(fail(
        StatusCode::BAD_REQUEST,
        "InvalidRequestID",
        "Invalid request ID",
    ))
}

async fn response(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if headers.contains_key("lambda-runtime-function-response-mode") {
        let Ok(tx) = claim(&shared, &id) else {
            return fail(
                StatusCode::BAD_REQUEST,
                "InvalidRequestID",
                "Invalid request ID",
            );
        };
        let _ = tx.send(Reported::InvalidResponseMode);
        return fail(
            StatusCode::BAD_REQUEST,
            "InvalidFunctionResponseMode",
            "Invalid function response mode",
        );
    }
    let body = match read_body(body).await {
        Ok(body) => body,
        Err(refused) => return refused,
    };
    let tx = match claim(&shared, &id) {
        Ok(tx) => tx,
        Err(refused) => return refused,
    };
    match body {
        Ok(body) => {
            let _ = tx.send(Reported::Response(body));
            accepted()
        }
        Err(size) => {
            let _ = tx.send(Reported::TooLarge(size));
            fail(
                StatusCode::PAYLOAD_TOO_LARGE,
                "RequestEntityTooLarge",
                &format!("Exceeded maximum allowed payload size ({MAX_PAYLOAD} bytes)."),
            )
        }
    }
}

/// The error document of an `/error` or `/init/error`: the body verbatim, or one built from the
/// `Lambda-Runtime-Function-Error-Type` header when there is no body.
fn error_document(headers: &HeaderMap, body: Vec<u8>) -> Vec<u8> {
    if !body.trim_ascii().is_empty() {
        return body;
    }
    let kind = headers
        .get("lambda-runtime-function-error-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("Runtime.Unknown");
    serde_json::json!({"errorType": kind, "errorMessage": ""})
        .to_string()
        .into_bytes()
}

fn too_large_request() -> Response {
    fail(
        StatusCode::PAYLOAD_TOO_LARGE,
        "RequestEntityTooLarge",
        &format!("Exceeded maximum allowed payload size ({MAX_PAYLOAD} bytes)."),
    )
}

async fn error(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let body = match read_body(body).await {
        Ok(Ok(body)) => body,
        Ok(Err(_)) => return too_large_request(),
        Err(refused) => return refused,
    };
    let tx = match claim(&shared, &id) {
        Ok(tx) => tx,
        Err(refused) => return refused,
    };
    let _ = tx.send(Reported::Error(error_document(&headers, body)));
    accepted()
}

async fn init_error(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Body) -> Response {
    let body = match read_body(body).await {
        Ok(Ok(body)) => body,
        Ok(Err(_)) => return too_large_request(),
        Err(refused) => return refused,
    };
    {
        let mut state = shared.lock();
        if state.initialised || state.init_error.is_some() {
            return fail(
                StatusCode::FORBIDDEN,
                "InvalidStateTransition",
                "State transition from Ready to InitError failed for runtime. Error: State \
                 transition is not allowed",
            );
        }
        state.init_error = Some(error_document(&headers, body));
    }
    shared.changed.notify_waiters();
    accepted()
}
