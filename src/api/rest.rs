//! The REST shim for curl and scripts (docs/interface.md §3.2): `POST /queues/{name}/messages` with
//! the raw body (query `group`, `dedup`, `delay`, repeated `attr=NAME=TYPE:VALUE`), `GET /queues`
//! and `GET /queues/{name}` (peek and explain, `GET /queues/{name}/messages[/{id}]`, are in
//! `peek.rs`). Errors are `{"error", "message"}` JSON with a 4xx/5xx status; an
//! unknown queue is 404.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine as _;
use serde::Serialize;
use serde_json::json;

use super::error::RestError;
use super::{body, sqs, AppState, MAX_REST_BODY};
use crate::domain::attributes::{base_type, AttributeData, AttributeValue, Attributes, BaseType};
use crate::domain::message::NewMessage;
use crate::domain::queue::{QueueKind, QueueName};
use crate::domain::{RejectCode, Rejection};
use crate::store::{QueueCounts, QueueInfo};

/// One queue in `GET /queues`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct QueueSummary {
    name: String,
    #[serde(rename = "type")]
    kind: &'static str,
    visible: u64,
    in_flight: u64,
    delayed: u64,
    /// Seconds since the oldest stored message was sent; `null` for an empty queue.
    oldest_message_age_seconds: Option<f64>,
    dead_letter_queue: Option<String>,
}

/// `GET /queues/{name}`: the summary plus every attribute and the tags.
#[derive(Serialize)]
struct QueueDetail {
    #[serde(flatten)]
    summary: QueueSummary,
    url: String,
    attributes: BTreeMap<&'static str, String>,
    tags: BTreeMap<String, String>,
}

fn summary(state: &AppState, q: &QueueInfo, c: &QueueCounts) -> QueueSummary {
    let now = state.store.clock().now();
    QueueSummary {
        name: q.name.to_string(),
        kind: match q.name.kind() {
            QueueKind::Standard => "standard",
            QueueKind::Fifo => "fifo",
        },
        visible: c.visible,
        in_flight: c.in_flight,
        delayed: c.delayed,
        oldest_message_age_seconds: c
            .oldest_sent_at
            .map(|t| now.since(t).as_millis() as f64 / 1000.0),
        dead_letter_queue: q
            .settings
            .redrive
            .as_ref()
            .map(|r| r.dead_letter_queue.to_string()),
    }
}

/// The queue named in the path; a name that cannot exist is an unknown queue (404).
pub(crate) fn path_queue(raw: Result<Path<String>, PathRejection>) -> Result<QueueName, RestError> {
    let Path(raw) =
        raw.map_err(|e| RestError::bad_request(format!("the path could not be decoded: {e}")))?;
    QueueName::parse(&raw).map_err(|_| Rejection::no_queue().into())
}

/// `GET /queues`
pub(crate) async fn list_queues(
    State(state): State<AppState>,
) -> Result<Json<Vec<QueueSummary>>, RestError> {
    let queues = state
        .store
        .queues()
        .await
        .map_err(|e| RestError::from_store(e, "list queues"))?;
    let mut out = Vec::with_capacity(queues.len());
    // The shim names queues by plain name: the default region's (docs/interface.md §3.6).
    for q in queues.iter().filter(|q| q.name.region().is_empty()) {
        match state.store.counts(&q.name).await {
            Ok(c) => out.push(summary(&state, q, &c)),
            // Deleted between the two reads: leave it out.
            Err(crate::store::StoreError::Rejected(r))
                if r.code == RejectCode::QueueDoesNotExist => {}
            Err(e) => return Err(RestError::from_store(e, "list queues")),
        }
    }
    Ok(Json(out))
}

/// `GET /queues/{name}`
pub(crate) async fn get_queue(
    State(state): State<AppState>,
    headers: HeaderMap,
    name: Result<Path<String>, PathRejection>,
) -> Result<Json<serde_json::Value>, RestError> {
    let name = path_queue(name)?;
    let q = state
        .store
        .queue(&name)
        .await
        .map_err(|e| RestError::from_store(e, "get queue"))?;
    let c = state
        .store
        .counts(&name)
        .await
        .map_err(|e| RestError::from_store(e, "get queue"))?;
    let ctx = sqs::Ctx::plain(&state, &headers);
    let detail = QueueDetail {
        summary: summary(&state, &q, &c),
        url: ctx.queue_url(&q.name),
        attributes: sqs::all_attributes(&ctx, &q, &c),
        tags: q.tags.clone(),
    };
    serde_json::to_value(detail).map(Json).map_err(|_| {
        RestError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            "the answer could not be encoded",
        )
    })
}

/// `POST /queues/{name}/messages`
pub(crate) async fn send_message(
    State(state): State<AppState>,
    name: Result<Path<String>, PathRejection>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, RestError> {
    let too_large = || {
        RestError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestEntityTooLarge",
            format!("the message body is larger than the largest message ({MAX_REST_BODY} bytes)"),
        )
    };
    if body::declared_too_large(&headers, MAX_REST_BODY) {
        return Err(too_large());
    }
    let name = path_queue(name)?;
    let mut message = message_from_query(&uri)?;
    let bytes = match body::read(body, MAX_REST_BODY).await {
        Ok(b) => b,
        Err(body::ReadError::TooLarge) => return Err(too_large()),
        Err(body::ReadError::Broken(e)) => {
            return Err(RestError::bad_request(format!(
                "the request body could not be read: {e}"
            )))
        }
    };
    message.body = String::from_utf8(bytes.to_vec()).map_err(|_| {
        RestError::new(
            StatusCode::BAD_REQUEST,
            "InvalidMessageContents",
            "the message body must be UTF-8 text",
        )
    })?;
    let mut results = state
        .store
        .send(&name, vec![message])
        .await
        .map_err(|e| RestError::from_store(e, "send message"))?;
    let receipt = match results.pop() {
        Some(Ok(r)) => r,
        Some(Err(r)) => return Err(r.into()),
        None => {
            return Err(RestError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalError",
                "the store gave no result",
            ))
        }
    };
    let mut out = json!({ "messageId": receipt.message_id, "md5OfBody": receipt.md5_of_body });
    if let Some(seq) = receipt.sequence_number {
        out["sequenceNumber"] = seq.into();
    }
    Ok((StatusCode::CREATED, Json(out)).into_response())
}

/// The message's parameters from the query string (its body comes later).
fn message_from_query(uri: &Uri) -> Result<NewMessage, RestError> {
    let Query(pairs) = Query::<Vec<(String, String)>>::try_from_uri(uri).map_err(|e| {
        RestError::bad_request(format!("the query string could not be parsed: {e}"))
    })?;
    let mut m = NewMessage::default();
    let mut attributes = Attributes::new();
    for (key, value) in pairs {
        match key.as_str() {
            "group" => m.group_id = Some(value),
            "dedup" => m.dedup_id = Some(value),
            "delay" => m.delay = Some(parse_delay(&value)?),
            "attr" => {
                let (name, v) = parse_attr(&value)?;
                attributes.insert(name, v);
            }
            other => {
                return Err(RestError::bad_request(format!(
                    "unknown query parameter '{other}'; expected group, dedup, delay or attr"
                )))
            }
        }
    }
    m.attributes = attributes;
    Ok(m)
}

/// `delay`: a humantime duration (`5s`, `2min`) or a bare number of seconds.
fn parse_delay(v: &str) -> Result<Duration, RestError> {
    if let Ok(secs) = v.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    humantime::parse_duration(v).map_err(|e| {
        RestError::bad_request(format!(
            "delay '{v}' is not a duration such as 5s or 2min: {e}"
        ))
    })
}

/// `attr=NAME=TYPE:VALUE`; a Binary value is base64.
fn parse_attr(v: &str) -> Result<(String, AttributeValue), RestError> {
    let shape = || {
        RestError::bad_request(format!(
            "attr '{v}' must look like NAME=TYPE:VALUE, e.g. color=String:red"
        ))
    };
    let (name, rest) = v.split_once('=').ok_or_else(shape)?;
    let (data_type, value) = rest.split_once(':').ok_or_else(shape)?;
    if name.is_empty() {
        return Err(shape());
    }
    let value = match base_type(data_type) {
        Some(BaseType::Binary) => AttributeData::Binary(
            base64::engine::general_purpose::STANDARD
                .decode(value)
                .map_err(|_| {
                    RestError::bad_request(format!(
                        "attr '{name}' is Binary but its value is not base64"
                    ))
                })?,
        ),
        _ => AttributeData::String(value.to_owned()),
    };
    Ok((
        name.to_owned(),
        AttributeValue {
            data_type: data_type.to_owned(),
            value,
        },
    ))
}

/// A known path with a method it does not take.
pub(crate) async fn method_not_allowed(method: Method, uri: Uri) -> Response {
    RestError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "MethodNotAllowed",
        format!("{} does not take {method}", uri.path()),
    )
    .into_response()
}
