//! The rules every batch action shares (1 to 10 entries, ids of `[A-Za-z0-9_-]{1,80}`, distinct
//! ids, per-entry `Failed` results with `SenderFault`), and the receipt-handle actions built on
//! them: DeleteMessage(+Batch) and ChangeMessageVisibility(+Batch).

use std::collections::HashSet;
use std::time::Duration;

use serde::Serialize;

use super::input::Input;
use super::{empty, output, ActionResult, Ctx};
use crate::api::error::{wire, SqsError};
use crate::domain::{RejectCode, Rejection};

/// The most entries a batch may hold.
pub(crate) const MAX_ENTRIES: usize = 10;

/// The longest visibility timeout, in seconds.
const MAX_VISIBILITY_SECS: i64 = 43_200;

/// A failed batch entry.
#[derive(Serialize)]
pub(crate) struct Failed {
    #[serde(rename = "Id")]
    id: String,
    #[serde(rename = "SenderFault")]
    sender_fault: bool,
    #[serde(rename = "Code")]
    code: &'static str,
    #[serde(rename = "Message")]
    message: String,
}

impl Failed {
    /// The entry `id` failed with `r`; the code is the legacy (query) code, as AWS reports it.
    pub(crate) fn new(id: &str, r: Rejection) -> Self {
        let (_, code, _) = wire(r.code);
        Failed {
            id: id.to_owned(),
            sender_fault: r.code != RejectCode::ServiceUnavailable,
            code,
            message: r.message,
        }
    }
}

/// A batch answer: `Successful` always, `Failed` only when something failed.
#[derive(Serialize)]
pub(crate) struct BatchOut<T: Serialize> {
    #[serde(rename = "Successful")]
    pub(crate) successful: Vec<T>,
    #[serde(rename = "Failed", skip_serializing_if = "Vec::is_empty")]
    pub(crate) failed: Vec<Failed>,
}

/// A successful entry of the actions without per-entry output.
#[derive(Serialize)]
struct Done {
    #[serde(rename = "Id")]
    id: String,
}

/// The entries of a batch with their ids, after the whole-request rules: present and 1 to 10,
/// valid ids, distinct ids. `entry_shape` names the entry in AWS's `EmptyBatchRequest` text.
pub(crate) fn entries<'a>(
    input: &Input<'a>,
    entry_shape: &str,
) -> Result<Vec<(&'a str, Input<'a>)>, SqsError> {
    let entries = input.objects("Entries")?.unwrap_or_default();
    if entries.is_empty() {
        return Err(Rejection::new(
            RejectCode::EmptyBatchRequest,
            format!("There should be at least one {entry_shape} in the request."),
        )
        .into());
    }
    if entries.len() > MAX_ENTRIES {
        return Err(Rejection::new(
            RejectCode::TooManyEntriesInBatchRequest,
            format!(
                "Maximum number of entries per request are {MAX_ENTRIES}. You have sent {}.",
                entries.len()
            ),
        )
        .into());
    }
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(entries.len());
    for entry in entries {
        let id = entry.str("Id")?.unwrap_or("");
        let valid = !id.is_empty()
            && id.len() <= 80
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !valid {
            return Err(Rejection::new(
                RejectCode::InvalidBatchEntryId,
                "A batch entry id can only contain alphanumeric characters, hyphens and underscores. It can be at most 80 letters long.",
            )
            .into());
        }
        if !seen.insert(id) {
            return Err(Rejection::new(
                RejectCode::BatchEntryIdsNotDistinct,
                format!("Id {id} repeated."),
            )
            .into());
        }
        out.push((id, entry));
    }
    Ok(out)
}

/// A visibility timeout from the wire, range-checked.
fn visibility(input: &Input<'_>) -> Result<Result<Duration, Rejection>, SqsError> {
    Ok(match input.int("VisibilityTimeout")? {
        None => Err(Rejection::missing(&input.name("VisibilityTimeout"))),
        Some(v @ 0..=MAX_VISIBILITY_SECS) => Ok(Duration::from_secs(v as u64)),
        Some(v) => Err(Rejection::bad_value(
            "VisibilityTimeout",
            v,
            "Must be >= 0 and <= 43200, if provided.",
        )),
    })
}

pub(crate) async fn delete_message(ctx: &Ctx, input: Input<'_>) -> ActionResult {
    let handle = input.required_str("ReceiptHandle")?.to_owned();
    let name = ctx.queue_of(&input)?;
    let mut results = ctx
        .state
        .store
        .delete(&name, &[handle])
        .await
        .map_err(|e| SqsError::from_store(e, "DeleteMessage"))?;
    match results.pop() {
        Some(Ok(())) => empty(),
        Some(Err(r)) => Err(r.into()),
        None => Err(SqsError::internal(
            "the store answered a delete of one handle with no result",
        )),
    }
}

pub(crate) async fn change_message_visibility(ctx: &Ctx, input: Input<'_>) -> ActionResult {
    let handle = input.required_str("ReceiptHandle")?.to_owned();
    let timeout = visibility(&input)??;
    let name = ctx.queue_of(&input)?;
    let mut results = ctx
        .state
        .store
        .change_visibility(&name, &[(handle, timeout)])
        .await
        .map_err(|e| SqsError::from_store(e, "ChangeMessageVisibility"))?;
    match results.pop() {
        Some(Ok(())) => empty(),
        Some(Err(r)) => Err(r.into()),
        None => Err(SqsError::internal(
            "the store answered a visibility change of one handle with no result",
        )),
    }
}

/// Runs the store on the entries that passed their own checks and merges its per-entry results
/// with the failures found before, in request order.
fn merge<T>(
    checked: Vec<(&str, Result<T, Rejection>)>,
    mut stored: impl Iterator<Item = Result<(), Rejection>>,
) -> Result<BatchOut<Done>, SqsError> {
    let mut out = BatchOut {
        successful: Vec::new(),
        failed: Vec::new(),
    };
    for (id, check) in checked {
        let result = match check {
            Err(r) => Err(r),
            Ok(_) => match stored.next() {
                Some(r) => r,
                None => {
                    return Err(SqsError::internal(
                        "the store answered a batch with too few results",
                    ))
                }
            },
        };
        match result {
            Ok(()) => out.successful.push(Done { id: id.to_owned() }),
            Err(r) => out.failed.push(Failed::new(id, r)),
        }
    }
    Ok(out)
}

pub(crate) async fn delete_message_batch(ctx: &Ctx, input: Input<'_>) -> ActionResult {
    let entries = entries(&input, "DeleteMessageBatchRequestEntry")?;
    let mut checked = Vec::with_capacity(entries.len());
    for (id, e) in &entries {
        let handle = e
            .str("ReceiptHandle")?
            .map(str::to_owned)
            .ok_or_else(|| Rejection::missing(&e.name("ReceiptHandle")));
        checked.push((*id, handle));
    }
    let handles: Vec<String> = checked
        .iter()
        .filter_map(|(_, h)| h.as_ref().ok().cloned())
        .collect();
    let name = ctx.queue_of(&input)?;
    let stored = if handles.is_empty() {
        Vec::new()
    } else {
        ctx.state
            .store
            .delete(&name, &handles)
            .await
            .map_err(|e| SqsError::from_store(e, "DeleteMessageBatch"))?
    };
    output(&merge(checked, stored.into_iter())?)
}

pub(crate) async fn change_message_visibility_batch(ctx: &Ctx, input: Input<'_>) -> ActionResult {
    let entries = entries(&input, "ChangeMessageVisibilityBatchRequestEntry")?;
    let mut checked = Vec::with_capacity(entries.len());
    for (id, e) in &entries {
        let handle = e
            .str("ReceiptHandle")?
            .map(str::to_owned)
            .ok_or_else(|| Rejection::missing(&e.name("ReceiptHandle")));
        let change = match (handle, visibility(e)?) {
            (Ok(h), Ok(t)) => Ok((h, t)),
            (Err(r), _) | (_, Err(r)) => Err(r),
        };
        checked.push((*id, change));
    }
    let changes: Vec<(String, Duration)> = checked
        .iter()
        .filter_map(|(_, c)| c.as_ref().ok().cloned())
        .collect();
    let name = ctx.queue_of(&input)?;
    let stored = if changes.is_empty() {
        Vec::new()
    } else {
        ctx.state
            .store
            .change_visibility(&name, &changes)
            .await
            .map_err(|e| SqsError::from_store(e, "ChangeMessageVisibilityBatch"))?
    };
    output(&merge(checked, stored.into_iter())?)
}
