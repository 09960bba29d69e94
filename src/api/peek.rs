//! Peek and explain on the REST shim (docs/interface.md §3.2): `GET /queues/{name}/messages`
//! lists the first messages of a queue with where each stands, and
//! `GET /queues/{name}/messages/{message_id}` says where one stands or what became of it. Both
//! only read (`Store::peek`, `Store::explain`): no receive count or visibility changes.
//! Times are RFC 3339 in UTC with milliseconds.

use std::time::{Duration, UNIX_EPOCH};

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{StatusCode, Uri};
use axum::Json;
use serde_json::{json, Map, Value};

use super::error::RestError;
use super::rest::path_queue;
use super::AppState;
use crate::domain::Timestamp;
use crate::store::{Explained, Fate, MessageState, Peeked, Receiver, Tombstone};

/// Messages a peek lists when `limit` is not given.
const DEFAULT_LIMIT: u32 = 10;
/// The most messages one peek lists.
const MAX_LIMIT: u32 = 1000;

/// An instant as RFC 3339 (UTC, milliseconds).
fn rfc3339(t: Timestamp) -> String {
    let at = UNIX_EPOCH + Duration::from_millis(u64::try_from(t.as_millis()).unwrap_or(0));
    humantime::format_rfc3339_millis(at).to_string()
}

/// `by` (client, mapping or unknown) and `mapping` (its name, or null).
fn put_receiver(out: &mut Map<String, Value>, by: Option<&Receiver>) {
    let (kind, mapping) = match by {
        Some(Receiver::Client) => ("client", None),
        Some(Receiver::Mapping(name)) => ("mapping", Some(name.clone())),
        Some(Receiver::Unknown) | None => ("unknown", None),
    };
    out.insert("by".into(), kind.into());
    out.insert("mapping".into(), mapping.into());
}

/// Where a stored message stands, as JSON.
fn peeked_json(p: &Peeked, now: Timestamp) -> Value {
    let mut out = Map::new();
    out.insert("messageId".into(), p.message_id.clone().into());
    let until = |out: &mut Map<String, Value>, t: Timestamp| {
        out.insert("until".into(), rfc3339(t).into());
        out.insert(
            "secondsLeft".into(),
            json!(t.since(now).as_millis() as f64 / 1000.0),
        );
    };
    match &p.state {
        MessageState::Visible => {
            out.insert("state".into(), "visible".into());
        }
        MessageState::Delayed { until: t } => {
            out.insert("state".into(), "delayed".into());
            until(&mut out, *t);
        }
        MessageState::InFlight { until: t, by } => {
            out.insert("state".into(), "in_flight".into());
            until(&mut out, *t);
            put_receiver(&mut out, Some(by));
        }
        // The group is `groupId`, below.
        MessageState::Blocked { behind, head, .. } => {
            out.insert("state".into(), "blocked".into());
            out.insert("behind".into(), behind.clone().into());
            out.insert("head".into(), head.clone().into());
        }
        MessageState::Expired { at } => {
            out.insert("state".into(), "expired".into());
            out.insert("at".into(), rfc3339(*at).into());
        }
    }
    out.insert("receiveCount".into(), p.receive_count.into());
    out.insert("sentAt".into(), rfc3339(p.sent_at).into());
    out.insert("groupId".into(), p.group_id.clone().into());
    out.insert(
        "deadLetterSource".into(),
        p.dead_letter_source.clone().into(),
    );
    out.insert("body".into(), p.body.clone().into());
    Value::Object(out)
}

/// What became of a message, as JSON.
fn tombstone_json(t: &Tombstone) -> Value {
    let mut out = Map::new();
    out.insert("messageId".into(), t.message_id.clone().into());
    let state = match t.fate {
        Fate::Deleted => "deleted",
        Fate::FilteredOut => "filtered_out",
        Fate::Expired => "expired",
        Fate::DeadLettered => "dead_lettered",
    };
    out.insert("state".into(), state.into());
    out.insert("at".into(), rfc3339(t.at).into());
    out.insert("receiveCount".into(), t.receive_count.into());
    match t.fate {
        Fate::Deleted | Fate::FilteredOut => put_receiver(&mut out, t.by.as_ref()),
        Fate::DeadLettered => {
            out.insert("deadLetterQueue".into(), t.dead_letter_queue.clone().into());
        }
        Fate::Expired => {}
    }
    out.insert("tombstoneUntil".into(), rfc3339(t.kept_until).into());
    Value::Object(out)
}

/// `limit` from the query string (the only parameter).
fn limit_of(uri: &Uri) -> Result<u32, RestError> {
    let mut limit = DEFAULT_LIMIT;
    for pair in uri.query().unwrap_or_default().split('&') {
        if pair.is_empty() {
            continue;
        }
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if key != "limit" {
            return Err(RestError::bad_request(format!(
                "unknown query parameter '{key}'; a peek takes limit"
            )));
        }
        limit = value
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .ok_or_else(|| {
                RestError::bad_request(format!(
                    "limit '{value}' is not a whole number from 1 to {MAX_LIMIT}"
                ))
            })?;
    }
    Ok(limit)
}

/// `GET /queues/{name}/messages?limit=N`
pub(crate) async fn list(
    State(state): State<AppState>,
    name: Result<Path<String>, PathRejection>,
    uri: Uri,
) -> Result<Json<Value>, RestError> {
    let name = path_queue(name)?;
    let limit = limit_of(&uri)?;
    let peeked = state
        .store
        .peek(&name, limit)
        .await
        .map_err(|e| RestError::from_store(e, "peek"))?;
    let now = state.store.clock().now();
    let messages: Vec<Value> = peeked.iter().map(|p| peeked_json(p, now)).collect();
    Ok(Json(
        json!({ "queue": name.as_str(), "messages": messages }),
    ))
}

/// `GET /queues/{name}/messages/{message_id}`
pub(crate) async fn explain(
    State(state): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<Json<Value>, RestError> {
    let Path((queue, message_id)) =
        path.map_err(|e| RestError::bad_request(format!("the path could not be decoded: {e}")))?;
    let name = path_queue(Ok(Path(queue)))?;
    let found = state
        .store
        .explain(&name, &message_id)
        .await
        .map_err(|e| RestError::from_store(e, "explain"))?;
    let mut answer = match found {
        Explained::Stored(p) => peeked_json(&p, state.store.clock().now()),
        Explained::Gone(t) => tombstone_json(&t),
        Explained::Unknown => {
            return Err(RestError::new(
                StatusCode::NOT_FOUND,
                "MessageNotFound",
                format!(
                    "queue {name} has no message {message_id:?} and no tombstone of one: it was \
                     never sent there, or it is gone for longer than storage.tombstone_retention"
                ),
            ))
        }
    };
    answer["queue"] = name.as_str().into();
    Ok(Json(answer))
}
