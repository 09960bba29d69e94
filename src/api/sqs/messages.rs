//! Send and receive: SendMessage, SendMessageBatch (whole-request rules, then per-entry results)
//! and ReceiveMessage (parameter ranges, short and long polls, system-attribute selection, and
//! message-attribute selection with `MD5OfMessageAttributes` over the returned subset).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use super::batch::{self, BatchOut, Failed};
use super::input::{Input, TypeError};
use super::msg_attrs::{self, WireValue};
use super::{output, ActionResult, Ctx};
use crate::api::error::SqsError;
use crate::domain::attributes::{md5_of_attributes, selected};
use crate::domain::message::{Message, NewMessage, SendReceipt};
use crate::domain::queue::{QueueKind, QueueName, MAX_MESSAGE_SIZE};
use crate::domain::{RejectCode, Rejection};

/// A send entry decoded from the wire. Value errors are the entry's; type errors the request's.
fn new_message(e: &Input<'_>) -> Result<Result<NewMessage, Rejection>, TypeError> {
    let body = e.str("MessageBody")?.unwrap_or("").to_owned();
    let delay = e.int("DelaySeconds")?;
    let group_id = e.str("MessageGroupId")?.map(str::to_owned);
    let dedup_id = e.str("MessageDeduplicationId")?.map(str::to_owned);
    let attributes = msg_attrs::user(e)?;
    let trace_header = msg_attrs::trace_header(e)?;
    let delay = match delay {
        None => None,
        Some(d) if d < 0 => {
            return Ok(Err(Rejection::bad_value(
                "DelaySeconds",
                d,
                "Must be >= 0 and <= 900, if provided.",
            )))
        }
        Some(d) => Some(Duration::from_secs(d.unsigned_abs())),
    };
    let (attributes, trace_header) = match (attributes, trace_header) {
        (Ok(a), Ok(t)) => (a, t),
        (Err(r), _) | (_, Err(r)) => return Ok(Err(r)),
    };
    Ok(Ok(NewMessage {
        body,
        attributes,
        trace_header,
        delay,
        group_id,
        dedup_id,
    }))
}

/// Gives `m` the request's `X-Amzn-Trace-Id` as its `AWSTraceHeader` when it has none of its
/// own; whether it did. Such a trace is stored and received like a sent one, but SQS leaves it
/// out of `MD5OfMessageSystemAttributes`, which covers only the attributes the entry sent.
fn trace_from_request(ctx: &Ctx, m: &mut NewMessage) -> bool {
    if m.trace_header.is_some() || ctx.trace_id.is_none() {
        return false;
    }
    m.trace_header = ctx.trace_id.clone();
    true
}

/// A successful send, as SendMessage and each SendMessageBatch entry report it.
#[derive(Serialize)]
struct SendOut {
    #[serde(rename = "Id", skip_serializing_if = "Option::is_none")]
    id: Option<String>,
    #[serde(rename = "MD5OfMessageBody")]
    md5_of_body: String,
    #[serde(
        rename = "MD5OfMessageAttributes",
        skip_serializing_if = "Option::is_none"
    )]
    md5_of_attributes: Option<String>,
    #[serde(
        rename = "MD5OfMessageSystemAttributes",
        skip_serializing_if = "Option::is_none"
    )]
    md5_of_system_attributes: Option<String>,
    #[serde(rename = "MessageId")]
    message_id: String,
    #[serde(rename = "SequenceNumber", skip_serializing_if = "Option::is_none")]
    sequence_number: Option<String>,
}

impl SendOut {
    fn new(id: Option<&str>, r: SendReceipt) -> Self {
        SendOut {
            id: id.map(str::to_owned),
            md5_of_body: r.md5_of_body,
            md5_of_attributes: r.md5_of_attributes,
            md5_of_system_attributes: r.md5_of_system_attributes,
            message_id: r.message_id,
            sequence_number: r.sequence_number,
        }
    }
}

pub(crate) async fn send_message(ctx: &Ctx, input: Input<'_>) -> ActionResult {
    let mut message = new_message(&input)??;
    let from_request = trace_from_request(ctx, &mut message);
    let name = ctx.queue_of(&input)?;
    let mut results = ctx
        .state
        .store
        .send(&name, vec![message])
        .await
        .map_err(|e| SqsError::from_store(e, "SendMessage"))?;
    match results.pop() {
        Some(Ok(mut receipt)) => {
            if from_request {
                receipt.md5_of_system_attributes = None;
            }
            output(&SendOut::new(None, receipt))
        }
        Some(Err(r)) => Err(r.into()),
        None => Err(SqsError::internal(
            "the store answered a send of one message with no result",
        )),
    }
}

pub(crate) async fn send_message_batch(ctx: &Ctx, input: Input<'_>) -> ActionResult {
    let entries = batch::entries(&input, "SendMessageBatchRequestEntry")?;
    let mut checked = Vec::with_capacity(entries.len());
    let mut total = 0usize;
    for (id, e) in &entries {
        let m = new_message(e)?;
        total += match &m {
            Ok(m) => m.size(),
            Err(_) => e.str("MessageBody")?.map_or(0, str::len),
        };
        checked.push((*id, m));
    }
    if total > MAX_MESSAGE_SIZE as usize {
        return Err(Rejection::new(
            RejectCode::BatchRequestTooLong,
            format!("Batch requests cannot be longer than {MAX_MESSAGE_SIZE} bytes. You have sent {total} bytes."),
        )
        .into());
    }
    // Check each entry here with the batch wording AWS uses (the store checks again).
    let name = ctx.queue_of(&input)?;
    let queue = ctx.queue_info(&name, "SendMessageBatch").await?;
    if name.kind() == QueueKind::Fifo {
        // A FIFO entry without its group id, or without a deduplication id where the queue
        // needs one, fails the whole request (AWS's 400), not just the entry.
        let needs_dedup = !queue.settings.content_based_deduplication;
        for m in checked.iter().filter_map(|(_, m)| m.as_ref().ok()) {
            if m.group_id.is_none() {
                return Err(Rejection::invalid(
                    "The request must contain the parameter MessageGroupId.",
                )
                .into());
            }
            if needs_dedup && m.dedup_id.is_none() {
                return Err(Rejection::invalid(
                    "The queue should either have ContentBasedDeduplication enabled or \
                     MessageDeduplicationId provided explicitly",
                )
                .into());
            }
        }
    }
    let checked: Vec<(&str, Result<NewMessage, Rejection>, bool)> = checked
        .into_iter()
        .map(|(id, m)| {
            let m = m.and_then(|m| m.validate(name.kind(), &queue.settings, true).map(|()| m));
            match m {
                Ok(mut m) => {
                    let from_request = trace_from_request(ctx, &mut m);
                    (id, Ok(m), from_request)
                }
                Err(r) => (id, Err(r), false),
            }
        })
        .collect();
    let valid: Vec<NewMessage> = checked
        .iter()
        .filter_map(|(_, m, _)| m.as_ref().ok().cloned())
        .collect();
    let mut stored = if valid.is_empty() {
        Vec::new()
    } else {
        ctx.state
            .store
            .send(&name, valid)
            .await
            .map_err(|e| SqsError::from_store(e, "SendMessageBatch"))?
    }
    .into_iter();
    let mut out = BatchOut {
        successful: Vec::new(),
        failed: Vec::new(),
    };
    for (id, m, from_request) in checked {
        let result = match m {
            Err(r) => Err(r),
            Ok(_) => stored.next().ok_or_else(|| {
                SqsError::internal("the store answered a batch with too few results")
            })?,
        };
        match result {
            Ok(mut receipt) => {
                if from_request {
                    receipt.md5_of_system_attributes = None;
                }
                out.successful.push(SendOut::new(Some(id), receipt))
            }
            Err(r) => out.failed.push(Failed::new(id, r)),
        }
    }
    output(&out)
}

/// A received message on the wire.
#[derive(Serialize)]
struct WireMessage {
    #[serde(rename = "MessageId")]
    message_id: String,
    #[serde(rename = "ReceiptHandle")]
    receipt_handle: String,
    #[serde(rename = "MD5OfBody")]
    md5_of_body: String,
    #[serde(rename = "Body")]
    body: String,
    #[serde(rename = "Attributes", skip_serializing_if = "BTreeMap::is_empty")]
    attributes: BTreeMap<&'static str, String>,
    #[serde(
        rename = "MD5OfMessageAttributes",
        skip_serializing_if = "Option::is_none"
    )]
    md5_of_message_attributes: Option<String>,
    #[serde(
        rename = "MessageAttributes",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    message_attributes: BTreeMap<String, WireValue>,
}

#[derive(Serialize)]
struct ReceiveOut {
    #[serde(rename = "Messages", skip_serializing_if = "Vec::is_empty")]
    messages: Vec<WireMessage>,
}

/// An optional integer parameter within `range`, with AWS's "Value V for parameter P is
/// invalid. Reason: R" on failure.
fn ranged(
    input: &Input<'_>,
    member: &str,
    range: std::ops::RangeInclusive<i64>,
    reason: &str,
) -> Result<Option<u64>, SqsError> {
    match input.int(member)? {
        None => Ok(None),
        Some(v) if range.contains(&v) => Ok(Some(v.unsigned_abs())),
        Some(v) => Err(Rejection::bad_value(member, v, reason).into()),
    }
}

pub(crate) async fn receive_message(ctx: &Ctx, input: Input<'_>) -> ActionResult {
    let max = ranged(
        &input,
        "MaxNumberOfMessages",
        1..=10,
        "Must be between 1 and 10, if provided.",
    )?
    .unwrap_or(1);
    let wait = ranged(
        &input,
        "WaitTimeSeconds",
        0..=20,
        "Must be >= 0 and <= 20, if provided.",
    )?;
    let visibility = ranged(
        &input,
        "VisibilityTimeout",
        0..=43_200,
        "Must be >= 0 and <= 43200, if provided.",
    )?
    .map(Duration::from_secs);
    let mut system = input.str_list("AttributeNames")?;
    system.extend(input.str_list("MessageSystemAttributeNames")?);
    let patterns: Vec<String> = input
        .str_list("MessageAttributeNames")?
        .into_iter()
        .map(str::to_owned)
        .collect();
    let attempt = input.str("ReceiveRequestAttemptId")?;
    if let Some(attempt) = attempt {
        if attempt.is_empty() || attempt.len() > 128 {
            return Err(Rejection::bad_value(
                "ReceiveRequestAttemptId",
                super::shorten(attempt),
                "ReceiveRequestAttemptId can only include alphanumeric and punctuation characters. 1 to 128 in length.",
            )
            .into());
        }
    }
    let name = ctx.queue_of(&input)?;
    // Only FIFO queues honour attempt ids (AWS ignores them on standard queues).
    let attempt = attempt.filter(|_| name.is_fifo());
    let queue_key = name.as_str().to_owned();
    let all_system = system.contains(&"All");
    let to_wire = |received: Vec<Message>| -> Vec<WireMessage> {
        received
            .into_iter()
            .map(|m| wire_message(ctx, m, &|n| all_system || system.contains(&n), &patterns))
            .collect()
    };
    if let Some(attempt) = attempt {
        if let Some(messages) = replay(ctx, &name, &queue_key, attempt, visibility).await? {
            return output(&ReceiveOut {
                messages: to_wire(messages),
            });
        }
    }
    let wait = match wait {
        Some(w) => Duration::from_secs(w),
        None => {
            let q = ctx.queue_info(&name, "ReceiveMessage").await?;
            q.settings.receive_wait
        }
    };
    let max = u32::try_from(max).unwrap_or(1);
    let store = &ctx.state.store;
    let received = if wait.is_zero() {
        store.receive(&name, max, visibility).await
    } else {
        let poll = store.receive_wait(&name, max, visibility, wait);
        match &ctx.shutdown {
            Some(token) => tokio::select! {
                biased;
                r = poll => r,
                () = token.cancelled() => Ok(Vec::new()),
            },
            None => poll.await,
        }
    };
    let received = received.map_err(|e| SqsError::from_store(e, "ReceiveMessage"))?;
    if let Some(attempt) = attempt.filter(|_| !received.is_empty()) {
        ctx.state
            .receive_attempts
            .remember(&queue_key, attempt, &received);
    }
    output(&ReceiveOut {
        messages: to_wire(received),
    })
}

/// The messages of an earlier receive with the same attempt id, their visibility timeout reset,
/// if every one of them is still held by that receive (docs/semantics.md §6.3).
async fn replay(
    ctx: &Ctx,
    name: &QueueName,
    queue_key: &str,
    attempt: &str,
    visibility: Option<Duration>,
) -> Result<Option<Vec<Message>>, SqsError> {
    let attempts = &ctx.state.receive_attempts;
    let Some(messages) = attempts.recall(queue_key, attempt) else {
        return Ok(None);
    };
    let timeout = match visibility {
        Some(v) => v,
        None => {
            ctx.queue_info(name, "ReceiveMessage")
                .await?
                .settings
                .visibility_timeout
        }
    };
    let entries: Vec<(String, Duration)> = messages
        .iter()
        .map(|m| (m.receipt_handle.clone(), timeout))
        .collect();
    let reset = ctx
        .state
        .store
        .change_visibility(name, &entries)
        .await
        .map_err(|e| SqsError::from_store(e, "ReceiveMessage"))?;
    if reset.iter().all(Result::is_ok) {
        Ok(Some(messages))
    } else {
        attempts.forget(queue_key, attempt);
        Ok(None)
    }
}

fn wire_message(
    ctx: &Ctx,
    m: Message,
    want: &dyn Fn(&str) -> bool,
    patterns: &[String],
) -> WireMessage {
    let mut attributes = BTreeMap::new();
    let mut put = |name: &'static str, v: Option<String>| {
        if let Some(v) = v.filter(|_| want(name)) {
            attributes.insert(name, v);
        }
    };
    put("SenderId", Some(m.sender_id.clone()));
    put("SentTimestamp", Some(m.sent_at.as_millis().to_string()));
    put("ApproximateReceiveCount", Some(m.receive_count.to_string()));
    put(
        "ApproximateFirstReceiveTimestamp",
        Some(m.first_receive_at.as_millis().to_string()),
    );
    put("SequenceNumber", m.sequence_number.clone());
    put("MessageDeduplicationId", m.dedup_id.clone());
    put("MessageGroupId", m.group_id.clone());
    put("AWSTraceHeader", m.trace_header.clone());
    put(
        "DeadLetterQueueSourceArn",
        m.dead_letter_source.as_ref().map(|q| ctx.queue_arn(q)),
    );
    let chosen: Vec<_> = m
        .attributes
        .iter()
        .filter(|(n, _)| selected(n, patterns))
        .collect();
    let md5_of_message_attributes = md5_of_attributes(chosen.iter().copied());
    let message_attributes = chosen
        .into_iter()
        .map(|(n, v)| (n.clone(), WireValue::from(v)))
        .collect();
    WireMessage {
        message_id: m.message_id,
        receipt_handle: m.receipt_handle,
        md5_of_body: m.md5_of_body,
        body: m.body,
        attributes,
        md5_of_message_attributes,
        message_attributes,
    }
}
