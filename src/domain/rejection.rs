//! Rejections: the SQS-shaped "no" that the queue engine and the request decoders give for bad
//! input. Each carries the SQS error code and AWS's message text; the HTTP layer maps the code to
//! the wire (`__type`, `x-amzn-query-error`, status) and the REST shim to its JSON error.

/// The SQS error codes esmd can answer with (shape names as in the SQS API model).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectCode {
    /// `InvalidParameterValueException` / legacy `InvalidParameterValue`.
    InvalidParameterValue,
    /// `MissingRequiredParameterException` / legacy `MissingParameter`.
    MissingParameter,
    /// `InvalidMessageContents`: a character outside the allowed set.
    InvalidMessageContents,
    /// `ReceiptHandleIsInvalid`: a handle that was never issued by this queue.
    ReceiptHandleIsInvalid,
    /// `MessageNotInflight`.
    MessageNotInflight,
    /// `InvalidAttributeName`: an unknown queue attribute.
    InvalidAttributeName,
    /// `InvalidAttributeValue`: a queue attribute out of range.
    InvalidAttributeValue,
    /// `QueueNameExists` / legacy `QueueAlreadyExists`.
    QueueAlreadyExists,
    /// `QueueDoesNotExist` / legacy `AWS.SimpleQueueService.NonExistentQueue`.
    QueueDoesNotExist,
    /// `PurgeQueueInProgress` (HTTP 403).
    PurgeQueueInProgress,
    /// `QueueDeletedRecently`.
    QueueDeletedRecently,
    /// `BatchEntryIdsNotDistinct`.
    BatchEntryIdsNotDistinct,
    /// `BatchRequestTooLong`.
    BatchRequestTooLong,
    /// `EmptyBatchRequest`.
    EmptyBatchRequest,
    /// `InvalidBatchEntryId`.
    InvalidBatchEntryId,
    /// `TooManyEntriesInBatchRequest`.
    TooManyEntriesInBatchRequest,
    /// `UnsupportedOperation`.
    UnsupportedOperation,
    /// `OverLimit`.
    OverLimit,
    /// `ResourceNotFoundException` (HTTP 404): a move task, or a queue named by an ARN of a
    /// move task action.
    ResourceNotFound,
    /// `AccessDeniedException` / legacy `AccessDenied`.
    AccessDenied,
    /// The store cannot take writes right now (disk full, locked); retry later. HTTP 503.
    ServiceUnavailable,
}

/// An SQS-shaped refusal: a code and AWS's message text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Rejection {
    /// The SQS error code.
    pub code: RejectCode,
    /// The human-readable reason, worded as AWS words it.
    pub message: String,
}

impl Rejection {
    /// A rejection with the given code and message.
    pub fn new(code: RejectCode, message: impl Into<String>) -> Self {
        Rejection {
            code,
            message: message.into(),
        }
    }

    /// `InvalidParameterValue` with the given message.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(RejectCode::InvalidParameterValue, message)
    }

    /// `MissingParameter`: "The request must contain the parameter X."
    pub fn missing(parameter: &str) -> Self {
        Self::new(
            RejectCode::MissingParameter,
            format!("The request must contain the parameter {parameter}."),
        )
    }

    /// `QueueDoesNotExist` with AWS's JSON-protocol text.
    pub fn no_queue() -> Self {
        Self::new(
            RejectCode::QueueDoesNotExist,
            "The specified queue does not exist.",
        )
    }

    /// `InvalidParameterValue` in AWS's "Value V for parameter P is invalid. Reason: R" form.
    pub fn bad_value(parameter: &str, value: impl std::fmt::Display, reason: &str) -> Self {
        Self::invalid(format!(
            "Value {value} for parameter {parameter} is invalid. Reason: {reason}"
        ))
    }
}
