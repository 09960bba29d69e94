//! The SQS query protocol (docs/interface.md §3.6), which AWS SDKs and tools from before 2024 speak:
//! `Action=SendMessage&QueueUrl=…&MessageBody=…` as a form body (`POST`) or a query string (`GET`
//! or `POST`), sent to `/` or to a queue's URL path (`/<account>/<queue>`, whose queue is the
//! `QueueUrl` unless the request names another), answered in XML.
//!
//! Each request is read into the JSON protocol's request object (`decode.rs`, by the table in
//! `shapes.rs`), run by the same action as a JSON request, and its answer or error written as
//! XML (`xml.rs`), so the two protocols cannot drift apart. Only the framing is this protocol's
//! own: no `Action` is `404 <UnknownOperationException/>`, an action SQS does not have (or
//! CreateQueue and ListQueues sent to a queue's URL) is `400 InvalidAction`, as AWS answers. A
//! request whose `Accept` asks for `application/json` (and not XML) gets AWS's envelope as JSON,
//! `{"<Action>Response": {"<Action>Result": …, "ResponseMetadata": {"RequestId": …}}}`, with the
//! JSON protocol's answer as the result (ReceiveMessage's list named `messages`, as AWS names it),
//! and errors as `{"Error": {"Type", "Code", "Message"}}`.

mod decode;
mod shapes;
mod xml;

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::input::Input;
use super::{dispatch, Ctx};
use crate::api::error::{SqsError, REQUEST_ID};
use crate::api::{body, MAX_SQS_BODY};
use decode::Params;

/// The content type of query-protocol answers.
const TEXT_XML: &str = "text/xml";

/// The content type of answers to clients that ask for JSON.
const JSON: &str = "application/json";

/// A query request's `Action` names nothing: AWS's bare 404 body.
const UNKNOWN_OPERATION: &str = "<UnknownOperationException/>";

/// The SQS protocol a request to `/` or a queue's URL path speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Protocol {
    /// `X-Amz-Target` and a JSON body.
    Json,
    /// `Action=…` parameters, XML answers.
    Query,
}

/// JSON when the request names its action in `X-Amz-Target` or sends a JSON content type; the
/// query protocol otherwise (a form body, or parameters in the query string).
pub(crate) fn protocol(headers: &HeaderMap) -> Protocol {
    if headers.contains_key("x-amz-target") {
        return Protocol::Json;
    }
    let essence = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        });
    match essence.as_deref() {
        Some("application/x-amz-json-1.0" | "application/json") => Protocol::Json,
        _ => Protocol::Query,
    }
}

/// Where a query request arrived.
pub(crate) struct Target<'a> {
    /// The request's URI (its query string carries parameters).
    pub(crate) uri: &'a Uri,
    /// The URL of the queue whose path it was sent to, if it was.
    pub(crate) queue_url: Option<String>,
}

/// Runs one query-protocol request and answers it in XML.
pub(crate) async fn handle(
    ctx: &Ctx,
    target: Target<'_>,
    headers: &HeaderMap,
    body: Body,
    request_id: &str,
) -> Response {
    let json = wants_json(headers);
    match run(ctx, target, headers, body, request_id, json).await {
        Ok(resp) => resp,
        Err(e) if json => json_error(&e, request_id),
        Err(e) => error_response(&e, request_id),
    }
}

async fn run(
    ctx: &Ctx,
    target: Target<'_>,
    headers: &HeaderMap,
    body: Body,
    request_id: &str,
    json: bool,
) -> Result<Response, SqsError> {
    if body::declared_too_large(headers, MAX_SQS_BODY) {
        return Err(SqsError::too_large(MAX_SQS_BODY));
    }
    let bytes = match body::read(body, MAX_SQS_BODY).await {
        Ok(b) => b,
        Err(body::ReadError::TooLarge) => return Err(SqsError::too_large(MAX_SQS_BODY)),
        Err(body::ReadError::Broken(e)) => {
            return Err(SqsError::query_only(
                "MalformedQueryString",
                format!("The request body could not be read: {e}."),
            ))
        }
    };
    let mut params = parameters(target.uri, &bytes);
    let Some(action) = params.remove("Action") else {
        return Ok(unknown_operation(request_id));
    };
    let on_queue = target.queue_url.is_some();
    let op = shapes::op(&action)
        .filter(|op| !(on_queue && matches!(op.name, "CreateQueue" | "ListQueues")))
        .ok_or_else(|| {
            SqsError::query_only(
                "InvalidAction",
                format!(
                    "The action {} is not valid for this endpoint.",
                    super::shorten(&action)
                ),
            )
        })?;
    if let Some(url) = target.queue_url {
        params.entry("QueueUrl".to_owned()).or_insert(url);
    }
    let request = decode::decode(op.input, &params)?;
    tracing::debug!(action = op.name, "sqs query request");
    let answer = dispatch(ctx, op.name, Input::root(&request)).await?;
    if json {
        let mut response = serde_json::Map::new();
        if op.output.is_some() {
            response.insert(format!("{}Result", op.name), json_result(op.name, answer));
        }
        response.insert(
            "ResponseMetadata".into(),
            json!({ "RequestId": request_id }),
        );
        let body = json!({ format!("{}Response", op.name): response });
        return Ok(with_type(
            StatusCode::OK,
            body.to_string().into(),
            request_id,
            JSON,
        ));
    }
    let xml = xml::success(op, &answer, request_id)?;
    Ok(with_headers(StatusCode::OK, xml, request_id))
}

/// The JSON protocol's answer as AWS's query-as-JSON result: the same members, except that
/// ReceiveMessage's list is `messages` (AWS's recorded answer, LocalStack's validated
/// `test_marker_serialization_json_protocol`: `ReceiveMessageResult.messages[0].Body`).
fn json_result(action: &str, mut answer: serde_json::Value) -> serde_json::Value {
    if action == "ReceiveMessage" {
        if let Some(map) = answer.as_object_mut() {
            let messages = map.remove("Messages").unwrap_or_else(|| json!([]));
            map.insert("messages".into(), messages);
        }
    }
    answer
}

/// Whether the client asks for JSON rather than XML (`Accept: application/json`).
fn wants_json(headers: &HeaderMap) -> bool {
    let accept = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect::<Vec<_>>()
        .join(",")
        .to_ascii_lowercase();
    accept.contains("application/json") && !accept.contains("xml")
}

/// An error as JSON, for a client that asked for JSON.
fn json_error(e: &SqsError, request_id: &str) -> Response {
    let body = json!({
        "Error": { "Type": e.fault(), "Code": e.query_code(), "Message": e.message() },
        "RequestId": request_id,
    });
    with_type(e.status(), body.to_string().into(), request_id, JSON)
}

/// The parameters of the query string and then of the form body (which wins for a name sent in
/// both). Percent-escapes and `+` are decoded; bytes that are not UTF-8 become U+FFFD.
fn parameters(uri: &Uri, body: &[u8]) -> Params {
    let from_query = form_urlencoded::parse(uri.query().unwrap_or("").as_bytes());
    from_query
        .chain(form_urlencoded::parse(body))
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// An error in the query protocol's XML shape.
pub(crate) fn error_response(e: &SqsError, request_id: &str) -> Response {
    if e.status().is_client_error() {
        tracing::debug!(code = %e.query_code(), status = e.status().as_u16(), "sqs query request refused");
    }
    with_headers(e.status(), xml::error(e, request_id), request_id)
}

fn unknown_operation(request_id: &str) -> Response {
    with_headers(StatusCode::NOT_FOUND, UNKNOWN_OPERATION.into(), request_id)
}

fn with_headers(status: StatusCode, body: Vec<u8>, request_id: &str) -> Response {
    with_type(status, body, request_id, TEXT_XML)
}

fn with_type(status: StatusCode, body: Vec<u8>, request_id: &str, kind: &'static str) -> Response {
    let mut resp = (status, body).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    if let Ok(v) = HeaderValue::from_str(request_id) {
        h.insert(REQUEST_ID, v);
    }
    resp
}
