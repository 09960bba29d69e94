//! The message move task actions (a dead-letter queue's redrive, docs/semantics.md §6.6):
//! StartMessageMoveTask, ListMessageMoveTasks and CancelMessageMoveTask, with AWS's checks,
//! codes and messages (as recorded from AWS in LocalStack's validated tests). The task runs in
//! the daemon (`daemon/moves.rs`); these only store, read and cancel it.
//!
//! A TaskHandle is AWS's: the base64 of `{"taskId":"<uuid>","sourceArn":"<arn>"}`.

use base64::Engine as _;
use serde_json::{json, Map, Value};

use super::input::Input;
use super::{ActionResult, Ctx};
use crate::api::error::SqsError;
use crate::domain::queue::QueueName;
use crate::domain::{RejectCode, Rejection};
use crate::store::{MoveRequest, MoveStatus, MoveTask};

/// Most tasks ListMessageMoveTasks answers.
const MAX_RESULTS: i64 = 10;
/// Highest `MaxNumberOfMessagesPerSecond`.
const MAX_RATE: i64 = 500;

/// `ResourceNotFoundException` for the queue a `parameter` ARN names.
fn not_found(parameter: &str) -> SqsError {
    Rejection::new(
        RejectCode::ResourceNotFound,
        format!("The resource that you specified for the {parameter} parameter doesn't exist."),
    )
    .into()
}

/// The existing queue an ARN names; a malformed ARN is `InvalidParameterValue`, an ARN of no
/// queue here `ResourceNotFoundException`.
async fn queue_of_arn(ctx: &Ctx, arn: &str, parameter: &str) -> Result<QueueName, SqsError> {
    let parts: Vec<&str> = arn.split(':').collect();
    if parts.len() != 6 || parts[0] != "arn" || parts.iter().any(|p| p.is_empty()) {
        return Err(Rejection::invalid(format!(
            "You must use this format to specify the {parameter}: arn:<partition>:<service>:<region>:<account-id>:<resource-id>"
        ))
        .into());
    }
    let name = ctx.resolve_arn(arn).ok_or_else(|| not_found(parameter))?;
    match ctx.state.store.queue(&name).await {
        Ok(_) => Ok(name),
        Err(crate::store::StoreError::Rejected(r)) if r.code == RejectCode::QueueDoesNotExist => {
            Err(not_found(parameter))
        }
        Err(e) => Err(SqsError::from_store(e, "MessageMoveTask")),
    }
}

/// `StartMessageMoveTask`: checks the source is a dead-letter queue, the destination exists and
/// is of the source's type, and the rate; stores the task (refused while one of the source is
/// still active) and answers its handle.
pub(crate) async fn start_message_move_task(ctx: &Ctx, input: Input<'_>) -> ActionResult {
    let source_arn = input.required_str("SourceArn")?;
    let destination_arn = input.str("DestinationArn")?.filter(|a| !a.is_empty());
    let rate = input.int("MaxNumberOfMessagesPerSecond")?;
    let source = queue_of_arn(ctx, source_arn, "SourceArn").await?;
    let store = &ctx.state.store;
    let sources = store
        .dead_letter_sources(&source)
        .await
        .map_err(|e| SqsError::from_store(e, "StartMessageMoveTask"))?;
    if sources.is_empty() {
        return Err(
            Rejection::invalid("Source queue must be configured as a Dead Letter Queue.").into(),
        );
    }
    let destination = match destination_arn {
        Some(arn) => {
            let name = queue_of_arn(ctx, arn, "DestinationArn").await?;
            if name.kind() != source.kind() {
                return Err(Rejection::invalid(format!(
                    "The source queue {source} and the destination queue {name} must be of the same type (both standard or both FIFO)."
                ))
                .into());
            }
            Some((name, arn.to_owned()))
        }
        None => None,
    };
    let max_per_second = match rate {
        None => None,
        Some(r) if (1..=MAX_RATE).contains(&r) => u32::try_from(r).ok(),
        Some(r) => {
            return Err(Rejection::bad_value(
                "MaxNumberOfMessagesPerSecond",
                r,
                &format!("It must be between 1 and {MAX_RATE}."),
            )
            .into())
        }
    };
    let req = MoveRequest {
        source,
        source_arn: source_arn.to_owned(),
        destination,
        max_per_second,
    };
    let task = store
        .start_move_task(&req)
        .await
        .map_err(|e| SqsError::from_store(e, "StartMessageMoveTask"))?;
    Ok(json!({ "TaskHandle": handle(&task) }))
}

/// `ListMessageMoveTasks`: the source's most recent tasks, newest first (`MaxResults` 1 to 10,
/// default 1).
pub(crate) async fn list_message_move_tasks(ctx: &Ctx, input: Input<'_>) -> ActionResult {
    let source_arn = input.required_str("SourceArn")?;
    let max = match input.int("MaxResults")? {
        None => 1,
        Some(n) if (1..=MAX_RESULTS).contains(&n) => n,
        Some(n) => {
            return Err(Rejection::bad_value(
                "MaxResults",
                n,
                &format!("It must be between 1 and {MAX_RESULTS}."),
            )
            .into())
        }
    };
    let source = queue_of_arn(ctx, source_arn, "SourceArn").await?;
    let tasks = ctx
        .state
        .store
        .move_tasks(&source, u32::try_from(max).unwrap_or(1))
        .await
        .map_err(|e| SqsError::from_store(e, "ListMessageMoveTasks"))?;
    Ok(json!({ "Results": tasks.iter().map(entry).collect::<Vec<_>>() }))
}

/// `CancelMessageMoveTask`: a RUNNING task becomes CANCELLING (the runner makes it CANCELLED
/// after the chunk it is moving); answers the messages moved so far.
pub(crate) async fn cancel_message_move_task(ctx: &Ctx, input: Input<'_>) -> ActionResult {
    let raw = input.required_str("TaskHandle")?;
    let (task_id, source_arn) = decode_handle(raw).ok_or_else(|| {
        SqsError::from(Rejection::invalid(
            "Value for parameter TaskHandle is invalid.",
        ))
    })?;
    let source = queue_of_arn(ctx, &source_arn, "SourceArn").await?;
    let task = ctx
        .state
        .store
        .cancel_move_task(&source, &task_id)
        .await
        .map_err(|e| SqsError::from_store(e, "CancelMessageMoveTask"))?
        .ok_or_else(|| {
            SqsError::from(Rejection::new(
                RejectCode::ResourceNotFound,
                "Task does not exist.",
            ))
        })?;
    match task.status {
        MoveStatus::Cancelling => Ok(json!({ "ApproximateNumberOfMessagesMoved": task.moved })),
        other => Err(Rejection::invalid(format!(
            "Only a task with status RUNNING can be cancelled; this task is {}.",
            other.as_str()
        ))
        .into()),
    }
}

/// A task's handle.
fn handle(task: &MoveTask) -> String {
    let doc = json!({ "taskId": task.task_id, "sourceArn": task.source_arn }).to_string();
    base64::engine::general_purpose::STANDARD.encode(doc)
}

/// The task id and source ARN inside a handle, if it is one.
fn decode_handle(handle: &str) -> Option<(String, String)> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(handle.trim())
        .ok()?;
    let doc: Map<String, Value> = serde_json::from_slice(&bytes).ok()?;
    let id = doc.get("taskId")?.as_str()?.to_owned();
    let arn = doc.get("sourceArn")?.as_str()?.to_owned();
    Some((id, arn))
}

/// A ListMessageMoveTasks entry, with AWS's members: TaskHandle only while RUNNING, the
/// destination and rate only if given, FailureReason only if FAILED.
fn entry(task: &MoveTask) -> Value {
    let mut e = json!({
        "Status": task.status.as_str(),
        "SourceArn": task.source_arn,
        "ApproximateNumberOfMessagesMoved": task.moved,
        "ApproximateNumberOfMessagesToMove": task.to_move,
        "StartedTimestamp": task.started_at.as_millis(),
    });
    if task.status == MoveStatus::Running {
        e["TaskHandle"] = handle(task).into();
    }
    if let Some(arn) = &task.destination_arn {
        e["DestinationArn"] = arn.clone().into();
    }
    if let Some(rate) = task.max_per_second {
        e["MaxNumberOfMessagesPerSecond"] = rate.into();
    }
    if let Some(reason) = &task.failure_reason {
        e["FailureReason"] = reason.clone().into();
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_handle_is_awss_base64_json_and_anything_else_is_refused() {
        let doc = r#"{"taskId":"10f57157-fc38-4da9-a113-4de7e12d05dd","sourceArn":"arn:aws:sqs:us-east-1:000000000000:dlq"}"#;
        let h = base64::engine::general_purpose::STANDARD.encode(doc);
        assert_eq!(
            decode_handle(&h),
            Some((
                "10f57157-fc38-4da9-a113-4de7e12d05dd".to_owned(),
                "arn:aws:sqs:us-east-1:000000000000:dlq".to_owned()
            ))
        );
        assert_eq!(decode_handle("foobared"), None);
        let no_arn = base64::engine::general_purpose::STANDARD.encode(r#"{"taskId":"x"}"#);
        assert_eq!(decode_handle(&no_arn), None);
    }
}
