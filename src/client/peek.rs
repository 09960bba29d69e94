//! `esmd peek` and `esmd explain`: the REST shim's `GET /queues/{name}/messages` and
//! `GET /queues/{name}/messages/{message_id}` (docs/interface.md §3.2), printed for a person.
//! Both only read: peeking changes no receive count or visibility.

use serde_json::Value;

use super::{base_url, execute, http, segment, ClientError};

/// What a JSON member holds as text ("" when absent or null).
fn text<'v>(v: &'v Value, key: &str) -> &'v str {
    v.get(key).and_then(Value::as_str).unwrap_or_default()
}

/// Who: "mapping NAME", "a client" or "an unknown receiver".
fn who(v: &Value) -> String {
    match text(v, "by") {
        "mapping" => format!("mapping {}", text(v, "mapping")),
        "client" => "a client".to_owned(),
        _ => "an unknown receiver".to_owned(),
    }
}

/// "until T (in 3.5s)".
fn until(v: &Value) -> String {
    let left = v.get("secondsLeft").and_then(Value::as_f64).unwrap_or(0.0);
    format!("until {} (in {left:.1}s)", text(v, "until"))
}

fn receives(v: &Value) -> String {
    let n = v.get("receiveCount").and_then(Value::as_u64).unwrap_or(0);
    format!("{n} receive{}", if n == 1 { "" } else { "s" })
}

/// The state of one message of a peek or explain answer, in words.
pub(super) fn describe(v: &Value) -> String {
    match text(v, "state") {
        "visible" => "visible: the next receive can take it".to_owned(),
        "delayed" => format!("delayed {}", until(v)),
        "in_flight" => format!("in flight {}, received by {}", until(v), who(v)),
        "blocked" if text(v, "behind") == text(v, "head") => format!(
            "blocked behind message {}, the head of FIFO group {}, which is not visible",
            text(v, "behind"),
            text(v, "groupId"),
        ),
        "blocked" => format!(
            "blocked behind message {} of FIFO group {}, which is not visible (the group's head is {})",
            text(v, "behind"),
            text(v, "groupId"),
            text(v, "head")
        ),
        "expired" => format!("expired at {} (past the queue's retention)", text(v, "at")),
        "deleted" => format!(
            "deleted at {} by {}, after {}",
            text(v, "at"),
            who(v),
            receives(v)
        ),
        "filtered_out" => format!(
            "filtered out at {} by {}: no filter of the mapping matched it",
            text(v, "at"),
            who(v)
        ),
        "dead_lettered" => format!(
            "moved to dead-letter queue {} at {}, after {}",
            text(v, "deadLetterQueue"),
            text(v, "at"),
            receives(v)
        ),
        other => other.to_owned(),
    }
}

async fn get(endpoint: &str, path: &str, auth_token: Option<&str>) -> Result<Value, ClientError> {
    let base = base_url(endpoint)?;
    let mut builder = http()?.get(format!("{base}{path}"));
    if let Some(t) = auth_token {
        builder = builder.bearer_auth(t);
    }
    let resp = execute(&base, builder).await?;
    resp.json().await.map_err(|source| ClientError::BadAnswer {
        endpoint: base,
        source,
    })
}

/// Lists the first `limit` messages of `queue` with their state, as a table.
///
/// # Errors
/// [`ClientError::Unreachable`] when no daemon answers, [`ClientError::Refused`] for an
/// unknown queue or a bad limit.
pub async fn peek(
    endpoint: &str,
    queue: &str,
    limit: u32,
    auth_token: Option<&str>,
) -> Result<String, ClientError> {
    let path = format!("/queues/{}/messages?limit={limit}", segment(queue));
    let answer = get(endpoint, &path, auth_token).await?;
    let messages = answer
        .get("messages")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if messages.is_empty() {
        return Ok(format!("queue {queue} holds no messages\n"));
    }
    let mut out = String::new();
    for m in &messages {
        let body: String = text(m, "body").chars().take(60).collect();
        let more = if text(m, "body").chars().count() > 60 {
            "..."
        } else {
            ""
        };
        out.push_str(&format!(
            "{}  {}, {}\n    body: {body}{more}\n",
            text(m, "messageId"),
            describe(m),
            receives(m)
        ));
    }
    Ok(out)
}

/// Says where message `message_id` of `queue` stands, or what became of it.
///
/// # Errors
/// [`ClientError::Refused`] (404) for a message never seen, or whose tombstone expired.
pub async fn explain(
    endpoint: &str,
    queue: &str,
    message_id: &str,
    auth_token: Option<&str>,
) -> Result<String, ClientError> {
    let path = format!(
        "/queues/{}/messages/{}",
        segment(queue),
        segment(message_id)
    );
    let v = get(endpoint, &path, auth_token).await?;
    let mut out = format!(
        "message {} of queue {}\n  {}\n",
        text(&v, "messageId"),
        text(&v, "queue"),
        describe(&v)
    );
    if v.get("body").is_some() {
        out.push_str(&format!("  {} so far\n", receives(&v)));
        out.push_str(&format!("  sent at {}\n", text(&v, "sentAt")));
        if let Some(g) = v.get("groupId").and_then(Value::as_str) {
            out.push_str(&format!("  message group {g}\n"));
        }
        if let Some(q) = v.get("deadLetterSource").and_then(Value::as_str) {
            out.push_str(&format!("  moved here from queue {q}\n"));
        }
        out.push_str(&format!("  body: {}\n", text(&v, "body")));
    } else {
        out.push_str(&format!(
            "  (a tombstone, kept until {})\n",
            text(&v, "tombstoneUntil")
        ));
    }
    Ok(out)
}
