//! The SQS endpoint (`/` and queue URL paths, docs/semantics.md §7, docs/interface.md §3.6):
//! which protocol a request speaks, the JSON protocol's framing (body limit, content type,
//! `X-Amz-Target`), JSON decoding, dispatch to the actions, and the JSON success envelope
//! (`Content-Type: application/x-amz-json-1.0`, `x-amzn-RequestId`). The query protocol
//! (`query`) reads its parameters into the same JSON request and runs the same actions.
//!
//! The actions live in the submodules, split by role: `queues` (queue lifecycle, attributes,
//! tags), `messages` (send and receive), `batch` (delete, visibility and the batch rules every
//! batch action shares), `moves` (message move tasks: a dead-letter queue's redrive). `input`
//! is the typed reader over the JSON body that names the member in every type error;
//! `queue_attrs` converts between the SQS attribute map and `QueueSettings`; `msg_attrs`
//! converts message attributes; `url` builds and resolves queue URLs and ARNs.

mod batch;
mod input;
mod members;
mod messages;
mod moves;
mod msg_attrs;
mod permissions;
mod query;
mod queue_attrs;
mod queues;
mod url;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;

use super::error::{SqsError, AMZ_JSON, REQUEST_ID};
use super::{body, AppState, Shutdown, MAX_SQS_BODY};
use crate::domain::{RejectCode, Rejection};
use input::Input;
pub(crate) use query::Protocol;

/// What an action needs besides its input: the state, the host the client used (for queue URLs)
/// and the server's cancellation (for long polls).
pub(crate) struct Ctx {
    /// Shared handles.
    pub(crate) state: AppState,
    /// `host[:port]` for queue URLs.
    pub(crate) host: String,
    /// The request's region (`url.rs`); `""` for the default region.
    pub(crate) region: String,
    /// Fires on shutdown.
    pub(crate) shutdown: Option<CancellationToken>,
    /// The request's `X-Amzn-Trace-Id` header: a sent message without its own `AWSTraceHeader`
    /// system attribute takes it as that attribute, as SQS does (docs/semantics.md §6.2).
    pub(crate) trace_id: Option<String>,
}

/// The request's `X-Amzn-Trace-Id`, when it is non-empty text.
fn trace_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get("x-amzn-trace-id")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

impl Ctx {
    /// A context for callers outside the SQS endpoint (the REST shim): of the default region.
    pub(crate) fn plain(state: &AppState, headers: &HeaderMap) -> Self {
        let host = url::request_host(headers).unwrap_or_else(|| state.server.listen.clone());
        Ctx {
            state: state.clone(),
            host,
            region: String::new(),
            shutdown: None,
            trace_id: trace_id(headers),
        }
    }
}

/// Every attribute of a queue, as GetQueueAttributes with `All` reports it.
pub(crate) fn all_attributes(
    ctx: &Ctx,
    queue: &crate::store::QueueInfo,
    counts: &crate::store::QueueCounts,
) -> std::collections::BTreeMap<&'static str, String> {
    queue_attrs::all_names(queue.name.kind(), &queue.settings)
        .into_iter()
        .filter_map(|n| Some((n, queue_attrs::render(ctx, n, queue, Some(counts))?)))
        .collect()
}

/// The result of an action: the JSON body of a 200 answer.
type ActionResult = Result<Value, SqsError>;

/// The shape a refusal before any action (authentication) takes for a request to `path`: the
/// SQS protocol it speaks if it is sent to `/` or a queue's URL path, else `None` (the REST
/// shim's shape).
pub(crate) fn protocol_of(path: &str, headers: &HeaderMap) -> Option<Protocol> {
    let sqs = path == "/" || queue_path_parts(path).is_some();
    sqs.then(|| query::protocol(headers))
}

/// A query-protocol error answer (for refusals made before the endpoint, e.g. authentication).
pub(crate) fn query_error(e: &SqsError, request_id: &str) -> Response {
    query::error_response(e, request_id)
}

/// `/<account>/<queue>` or `/queue/<region>/<account>/<queue>` (either with a trailing `/`, as
/// SDKs whose endpoint is a queue URL send) with an account id of 12 digits: a queue's URL path
/// (`url.rs`), as the queue URL it stands for: the path, which names the request's region unless
/// it names its own.
fn queue_path_parts(path: &str) -> Option<String> {
    let path = path.strip_suffix('/').unwrap_or(path);
    let (region, rest) = match path.strip_prefix("/queue/") {
        Some(rest) => {
            let (region, rest) = rest.split_once('/')?;
            (Some(region), rest)
        }
        None => (None, path.strip_prefix('/')?),
    };
    let (account, queue) = rest.split_once('/')?;
    let looks_like_account = account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit());
    let ok = looks_like_account
        && !queue.is_empty()
        && !queue.contains('/')
        && region.is_none_or(crate::domain::queue::is_region);
    ok.then(|| path.to_owned())
}

/// `GET` or `POST /`: one SQS request, in the JSON protocol or the query protocol.
pub(crate) async fn endpoint(
    State(state): State<AppState>,
    shutdown: Option<Extension<Shutdown>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let ctx = context(state, shutdown, &headers, &uri);
    serve(&ctx, &method, &uri, &headers, body, None).await
}

/// `GET` or `POST /<account>/<queue>` or `/queue/<region>/<account>/<queue>`: a request sent to
/// a queue's URL, as the PHP SDK and query-protocol clients do; the queue is the request's
/// `QueueUrl` when it names one, else the path's. Any other path of these shapes is not esmd's.
pub(crate) async fn queue_endpoint(
    State(state): State<AppState>,
    shutdown: Option<Extension<Shutdown>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let Some(url) = queue_path_parts(uri.path()) else {
        return super::error::not_found(method, uri).await;
    };
    let ctx = context(state, shutdown, &headers, &uri);
    serve(&ctx, &method, &uri, &headers, body, Some(url)).await
}

fn context(
    state: AppState,
    shutdown: Option<Extension<Shutdown>>,
    headers: &HeaderMap,
    uri: &Uri,
) -> Ctx {
    let host = url::request_host(headers).unwrap_or_else(|| state.server.listen.clone());
    let region = url::request_region(headers, uri.query(), &host, &state.server.region);
    Ctx {
        state,
        host,
        region,
        shutdown: shutdown.map(|Extension(Shutdown(c))| c),
        trace_id: trace_id(headers),
    }
}

async fn serve(
    ctx: &Ctx,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: Body,
    queue_url: Option<String>,
) -> Response {
    let request_id = uuid::Uuid::new_v4().to_string();
    if *method != Method::GET && *method != Method::POST {
        return wrong_method().await;
    }
    match query::protocol(headers) {
        query::Protocol::Json if *method == Method::POST => {
            match handle(ctx, headers, body, queue_url).await {
                Ok(value) => success(&value, &request_id),
                Err(e) => e.into_response_with(&request_id),
            }
        }
        query::Protocol::Json => wrong_method().await,
        query::Protocol::Query => {
            let target = query::Target { uri, queue_url };
            query::handle(ctx, target, headers, body, &request_id).await
        }
    }
}

/// A method SQS does not take on `/` or a queue's URL path.
pub(crate) async fn wrong_method() -> Response {
    let mut resp = SqsError::serialization(
        "SQS takes POST with X-Amz-Target: AmazonSQS.<Action> and Content-Type: application/x-amz-json-1.0 (the JSON protocol), or GET or POST with Action=<Action> parameters (the query protocol).",
    )
    .into_response_with(&uuid::Uuid::new_v4().to_string());
    *resp.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
    resp
}

/// One JSON request; `queue_url` is the queue whose URL path it was sent to, if it was, which
/// stands for a `QueueUrl` the body does not give.
async fn handle(
    ctx: &Ctx,
    headers: &HeaderMap,
    body: Body,
    queue_url: Option<String>,
) -> ActionResult {
    if body::declared_too_large(headers, MAX_SQS_BODY) {
        return Err(SqsError::too_large(MAX_SQS_BODY));
    }
    let action = action(headers)?;
    check_content_type(headers)?;
    let bytes = match body::read(body, MAX_SQS_BODY).await {
        Ok(b) => b,
        Err(body::ReadError::TooLarge) => return Err(SqsError::too_large(MAX_SQS_BODY)),
        Err(body::ReadError::Broken(e)) => {
            return Err(SqsError::serialization(format!(
                "The request body could not be read: {e}."
            )))
        }
    };
    let mut map = parse(&bytes)?;
    if let Some(url) = queue_url {
        map.entry("QueueUrl").or_insert(Value::String(url));
    }
    tracing::debug!(action, "sqs request");
    dispatch(ctx, action, Input::root(&map)).await
}

/// The action named by `X-Amz-Target: AmazonSQS.<Action>`.
fn action(headers: &HeaderMap) -> Result<&str, SqsError> {
    let Some(target) = headers.get("x-amz-target") else {
        return Err(Rejection::new(
            RejectCode::UnsupportedOperation,
            "The request has no X-Amz-Target header. The SQS JSON protocol names the action in it: X-Amz-Target: AmazonSQS.<Action>.",
        )
        .into());
    };
    let target = target.to_str().map_err(|_| {
        SqsError::from(Rejection::new(
            RejectCode::UnsupportedOperation,
            "The X-Amz-Target header is not valid text.",
        ))
    })?;
    match target.strip_prefix("AmazonSQS.") {
        Some(a) if !a.is_empty() => Ok(a),
        _ => Err(Rejection::new(
            RejectCode::UnsupportedOperation,
            format!(
                "The target {} is not an SQS action; expected AmazonSQS.<Action>.",
                shorten(target)
            ),
        )
        .into()),
    }
}

fn check_content_type(headers: &HeaderMap) -> Result<(), SqsError> {
    let given = headers
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap_or("(not text)"));
    let ok = given.is_some_and(|v| {
        let essence = v.split(';').next().unwrap_or("").trim();
        essence.eq_ignore_ascii_case(AMZ_JSON) || essence.eq_ignore_ascii_case("application/json")
    });
    if ok {
        Ok(())
    } else {
        Err(SqsError::serialization(format!(
            "The SQS JSON protocol needs Content-Type: {AMZ_JSON} (got {}).",
            given.map_or_else(|| "none".to_owned(), shorten)
        )))
    }
}

/// Decodes the body: UTF-8, JSON, an object. An empty body is an empty object.
fn parse(bytes: &[u8]) -> Result<Map<String, Value>, SqsError> {
    let text = std::str::from_utf8(bytes).map_err(|e| {
        SqsError::serialization(format!(
            "The request body is not valid UTF-8 (bad byte at offset {}).",
            e.valid_up_to()
        ))
    })?;
    if text.trim().is_empty() {
        return Ok(Map::new());
    }
    match members::parse(text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(SqsError::serialization(
            "The request body must be a JSON object.",
        )),
        Err(e) => Err(SqsError::serialization(format!(
            "The request body is not valid JSON: {e}."
        ))),
    }
}

async fn dispatch(ctx: &Ctx, action: &str, input: Input<'_>) -> ActionResult {
    match action {
        "CreateQueue" => queues::create_queue(ctx, input).await,
        "GetQueueUrl" => queues::get_queue_url(ctx, input).await,
        "ListQueues" => queues::list_queues(ctx, input).await,
        "GetQueueAttributes" => queues::get_queue_attributes(ctx, input).await,
        "SetQueueAttributes" => queues::set_queue_attributes(ctx, input).await,
        "DeleteQueue" => queues::delete_queue(ctx, input).await,
        "PurgeQueue" => queues::purge_queue(ctx, input).await,
        "ListDeadLetterSourceQueues" => queues::list_dead_letter_source_queues(ctx, input).await,
        "TagQueue" => queues::tag_queue(ctx, input).await,
        "UntagQueue" => queues::untag_queue(ctx, input).await,
        "ListQueueTags" => queues::list_queue_tags(ctx, input).await,
        "SendMessage" => messages::send_message(ctx, input).await,
        "SendMessageBatch" => messages::send_message_batch(ctx, input).await,
        "ReceiveMessage" => messages::receive_message(ctx, input).await,
        "DeleteMessage" => batch::delete_message(ctx, input).await,
        "DeleteMessageBatch" => batch::delete_message_batch(ctx, input).await,
        "ChangeMessageVisibility" => batch::change_message_visibility(ctx, input).await,
        "ChangeMessageVisibilityBatch" => batch::change_message_visibility_batch(ctx, input).await,
        "AddPermission" => permissions::add_permission(ctx, input).await,
        "RemovePermission" => permissions::remove_permission(ctx, input).await,
        "StartMessageMoveTask" => moves::start_message_move_task(ctx, input).await,
        "ListMessageMoveTasks" => moves::list_message_move_tasks(ctx, input).await,
        "CancelMessageMoveTask" => moves::cancel_message_move_task(ctx, input).await,
        other => Err(Rejection::new(
            RejectCode::UnsupportedOperation,
            format!("{} is not a valid SQS action.", shorten(other)),
        )
        .into()),
    }
}

/// At most 100 characters of client-supplied text, for error messages.
fn shorten(s: &str) -> String {
    if s.chars().count() <= 100 {
        s.to_owned()
    } else {
        let mut out: String = s.chars().take(100).collect();
        out.push('…');
        out
    }
}

fn success(value: &Value, request_id: &str) -> Response {
    let mut resp = (StatusCode::OK, value.to_string()).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(AMZ_JSON));
    if let Ok(v) = HeaderValue::from_str(request_id) {
        h.insert(REQUEST_ID, v);
    }
    resp
}

/// Serializes an action's output.
fn output<T: serde::Serialize>(out: &T) -> ActionResult {
    serde_json::to_value(out)
        .map_err(|_| SqsError::internal("an SQS response could not be serialized"))
}

/// The `{}` of actions without output.
fn empty() -> ActionResult {
    Ok(Value::Object(Map::new()))
}
