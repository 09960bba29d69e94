//! The SQS JSON protocol endpoint (`POST /`, docs/semantics.md §7): request framing (body limit,
//! content type, `X-Amz-Target`), JSON decoding, dispatch to the actions, and the success
//! envelope (`Content-Type: application/x-amz-json-1.0`, `x-amzn-RequestId`).
//!
//! The actions live in the submodules, split by role: `queues` (queue lifecycle, attributes,
//! tags), `messages` (send and receive), `batch` (delete, visibility and the batch rules every
//! batch action shares). `input` is the typed reader over the JSON body that names the member in
//! every type error; `queue_attrs` converts between the SQS attribute map and `QueueSettings`;
//! `msg_attrs` converts message attributes; `url` builds and resolves queue URLs and ARNs.

mod batch;
mod input;
mod members;
mod messages;
mod msg_attrs;
mod queue_attrs;
mod queues;
mod url;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;

use super::error::{SqsError, AMZ_JSON, REQUEST_ID};
use super::{body, AppState, Shutdown, MAX_SQS_BODY};
use crate::domain::{RejectCode, Rejection};
use input::Input;

/// What an action needs besides its input: the state, the host the client used (for queue URLs)
/// and the server's cancellation (for long polls).
pub(crate) struct Ctx {
    /// Shared handles.
    pub(crate) state: AppState,
    /// `host[:port]` for queue URLs.
    pub(crate) host: String,
    /// Fires on shutdown.
    pub(crate) shutdown: Option<CancellationToken>,
}

impl Ctx {
    /// A context for callers outside the SQS endpoint (the REST shim).
    pub(crate) fn plain(state: &AppState, headers: &HeaderMap) -> Self {
        let host = url::request_host(headers).unwrap_or_else(|| state.server.listen.clone());
        Ctx {
            state: state.clone(),
            host,
            shutdown: None,
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

/// `POST /`: one SQS JSON protocol request.
pub(crate) async fn endpoint(
    State(state): State<AppState>,
    shutdown: Option<Extension<Shutdown>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let request_id = uuid::Uuid::new_v4().to_string();
    let host = url::request_host(&headers).unwrap_or_else(|| state.server.listen.clone());
    let ctx = Ctx {
        state,
        host,
        shutdown: shutdown.map(|Extension(Shutdown(c))| c),
    };
    match handle(&ctx, &headers, body).await {
        Ok(value) => success(&value, &request_id),
        Err(e) => e.into_response_with(&request_id),
    }
}

/// Any other method on `/`.
pub(crate) async fn wrong_method() -> Response {
    let mut resp = SqsError::serialization(
        "The SQS JSON protocol takes POST / with X-Amz-Target: AmazonSQS.<Action> and Content-Type: application/x-amz-json-1.0.",
    )
    .into_response_with(&uuid::Uuid::new_v4().to_string());
    *resp.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
    resp
}

async fn handle(ctx: &Ctx, headers: &HeaderMap, body: Body) -> ActionResult {
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
    let map = parse(&bytes)?;
    tracing::debug!(action, "sqs request");
    dispatch(ctx, action, Input::root(&map)).await
}

/// The action named by `X-Amz-Target: AmazonSQS.<Action>`.
fn action(headers: &HeaderMap) -> Result<&str, SqsError> {
    let Some(target) = headers.get("x-amz-target") else {
        if headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"))
        {
            return Err(SqsError::serialization(
                "This looks like an SQS query-protocol request (form-encoded Action=...). esmd speaks the SQS JSON protocol: use an SDK or CLI released after April 2024, which sends X-Amz-Target and application/x-amz-json-1.0.",
            ));
        }
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
        "AddPermission"
        | "RemovePermission"
        | "StartMessageMoveTask"
        | "CancelMessageMoveTask"
        | "ListMessageMoveTasks" => Err(Rejection::new(
            RejectCode::UnsupportedOperation,
            format!("The action {action} is not supported by esmd."),
        )
        .into()),
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
