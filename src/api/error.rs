//! Errors as the wire shows them. [`SqsError`] is an SQS JSON protocol error: the `__type` shape
//! name, the `x-amzn-query-error: <LegacyCode>;<Fault>` header that query-compatible clients
//! (boto3, the AWS SDKs) read the error code from, and the status (400; 403 for
//! PurgeQueueInProgress and refused credentials; 413, 500, 503 for framing and server trouble).
//! [`RestError`] is the REST shim's `{"error", "message"}` body. Client mistakes are not logged above debug; server
//! trouble is logged once, with its whole cause chain. A store that cannot do the work is a 503
//! (`ServiceUnavailable`, retried by every AWS SDK) whose message says whether the database is
//! full, locked by another process, or failing otherwise; nothing of the request was stored.

use std::borrow::Cow;

use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::domain::error::chain;
use crate::domain::{RejectCode, Rejection};
use crate::store::StoreError;

/// The SQS JSON protocol's content type.
pub(crate) const AMZ_JSON: &str = "application/x-amz-json-1.0";

/// Header carrying the request id on every SQS answer.
pub(crate) const REQUEST_ID: HeaderName = HeaderName::from_static("x-amzn-requestid");

/// Header carrying the query-protocol error code and fault.
const QUERY_ERROR: HeaderName = HeaderName::from_static("x-amzn-query-error");

/// How SQS names an error: `__type` shape, legacy (query) code, HTTP status.
pub(crate) fn wire(code: RejectCode) -> (&'static str, &'static str, StatusCode) {
    use RejectCode::*;
    let bad = StatusCode::BAD_REQUEST;
    match code {
        InvalidParameterValue => (
            "com.amazonaws.sqs#InvalidParameterValueException",
            "InvalidParameterValue",
            bad,
        ),
        MissingParameter => (
            "com.amazonaws.sqs#MissingRequiredParameterException",
            "MissingParameter",
            bad,
        ),
        InvalidMessageContents => (
            "com.amazonaws.sqs#InvalidMessageContents",
            "InvalidMessageContents",
            bad,
        ),
        ReceiptHandleIsInvalid => (
            "com.amazonaws.sqs#ReceiptHandleIsInvalid",
            "ReceiptHandleIsInvalid",
            bad,
        ),
        MessageNotInflight => (
            "com.amazonaws.sqs#MessageNotInflight",
            "AWS.SimpleQueueService.MessageNotInflight",
            bad,
        ),
        InvalidAttributeName => (
            "com.amazonaws.sqs#InvalidAttributeName",
            "InvalidAttributeName",
            bad,
        ),
        InvalidAttributeValue => (
            "com.amazonaws.sqs#InvalidAttributeValue",
            "InvalidAttributeValue",
            bad,
        ),
        QueueAlreadyExists => (
            "com.amazonaws.sqs#QueueNameExists",
            "QueueAlreadyExists",
            bad,
        ),
        QueueDoesNotExist => (
            "com.amazonaws.sqs#QueueDoesNotExist",
            "AWS.SimpleQueueService.NonExistentQueue",
            bad,
        ),
        PurgeQueueInProgress => (
            "com.amazonaws.sqs#PurgeQueueInProgress",
            "AWS.SimpleQueueService.PurgeQueueInProgress",
            StatusCode::FORBIDDEN,
        ),
        QueueDeletedRecently => (
            "com.amazonaws.sqs#QueueDeletedRecently",
            "AWS.SimpleQueueService.QueueDeletedRecently",
            bad,
        ),
        BatchEntryIdsNotDistinct => (
            "com.amazonaws.sqs#BatchEntryIdsNotDistinct",
            "AWS.SimpleQueueService.BatchEntryIdsNotDistinct",
            bad,
        ),
        BatchRequestTooLong => (
            "com.amazonaws.sqs#BatchRequestTooLong",
            "AWS.SimpleQueueService.BatchRequestTooLong",
            bad,
        ),
        EmptyBatchRequest => (
            "com.amazonaws.sqs#EmptyBatchRequest",
            "AWS.SimpleQueueService.EmptyBatchRequest",
            bad,
        ),
        InvalidBatchEntryId => (
            "com.amazonaws.sqs#InvalidBatchEntryId",
            "AWS.SimpleQueueService.InvalidBatchEntryId",
            bad,
        ),
        TooManyEntriesInBatchRequest => (
            "com.amazonaws.sqs#TooManyEntriesInBatchRequest",
            "AWS.SimpleQueueService.TooManyEntriesInBatchRequest",
            bad,
        ),
        UnsupportedOperation => (
            "com.amazonaws.sqs#UnsupportedOperation",
            "AWS.SimpleQueueService.UnsupportedOperation",
            bad,
        ),
        OverLimit => ("com.amazonaws.sqs#OverLimit", "OverLimit", bad),
        ResourceNotFound => (
            "com.amazonaws.sqs#ResourceNotFoundException",
            "ResourceNotFoundException",
            StatusCode::NOT_FOUND,
        ),
        AccessDenied => (
            "com.amazonaws.sqs#AccessDeniedException",
            "AccessDenied",
            StatusCode::FORBIDDEN,
        ),
        ServiceUnavailable => (
            "com.amazonaws.sqs#ServiceUnavailable",
            "ServiceUnavailable",
            StatusCode::SERVICE_UNAVAILABLE,
        ),
    }
}

/// What a client is told about a store that could not do the work: every case is retriable
/// (503), and nothing of the refused request was stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unavailable {
    /// `storage.max_size` or the disk is full.
    Full,
    /// Another process holds the database.
    Locked,
    /// Anything else.
    Other,
}

impl Unavailable {
    /// Classifies `err`. The store logged the fault once, where it happened (a stopped writer
    /// was logged as an ERROR when it stopped), so it is not logged again here.
    fn of(err: &StoreError, action: &str) -> Self {
        tracing::debug!(context = action, error = %chain(err), "request refused: the store could not do the work");
        if err.is_database_full() {
            Unavailable::Full
        } else if err.is_database_locked() {
            Unavailable::Locked
        } else {
            Unavailable::Other
        }
    }

    /// The message of an SQS `ServiceUnavailable` error.
    fn sqs_message(self) -> &'static str {
        match self {
            Unavailable::Full => "The database is full (storage.max_size or the disk): nothing was stored. Retry once messages are deleted or space is freed.",
            Unavailable::Locked => "The database is locked by another process: nothing was done. Please retry.",
            Unavailable::Other => "The service is unavailable (the database could not do the work); please retry.",
        }
    }

    /// The message of a REST 503.
    fn rest_message(self) -> &'static str {
        match self {
            Unavailable::Full => "the database is full (storage.max_size or the disk): nothing was stored; retry once messages are deleted or space is freed",
            Unavailable::Locked => "the database is locked by another process: nothing was done; please retry",
            Unavailable::Other => "the database could not do the work; please retry",
        }
    }
}

/// An error answered in the SQS JSON protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SqsError {
    status: StatusCode,
    shape: Cow<'static, str>,
    query_code: Cow<'static, str>,
    receiver_fault: bool,
    message: String,
}

impl From<Rejection> for SqsError {
    fn from(r: Rejection) -> Self {
        let (shape, query_code, status) = wire(r.code);
        SqsError {
            status,
            shape: shape.into(),
            query_code: query_code.into(),
            receiver_fault: r.code == RejectCode::ServiceUnavailable,
            message: r.message,
        }
    }
}

impl SqsError {
    fn framing(
        status: StatusCode,
        shape: &'static str,
        query_code: &'static str,
        message: String,
    ) -> Self {
        SqsError {
            status,
            shape: shape.into(),
            query_code: query_code.into(),
            receiver_fault: false,
            message,
        }
    }

    /// The body is not a JSON object, not UTF-8, or sent with the wrong content type.
    pub(crate) fn serialization(message: impl Into<String>) -> Self {
        Self::framing(
            StatusCode::BAD_REQUEST,
            "com.amazon.coral.service#SerializationException",
            "SerializationException",
            message.into(),
        )
    }

    /// A 400 only the query protocol answers (`InvalidAction`, `MalformedQueryString`): `code` is
    /// its `<Code>`, and its shape name in JSON.
    pub(crate) fn query_only(code: &'static str, message: impl Into<String>) -> Self {
        Self::framing(StatusCode::BAD_REQUEST, code, code, message.into())
    }

    /// The body is larger than any legal request.
    pub(crate) fn too_large(limit: usize) -> Self {
        Self::framing(
            StatusCode::PAYLOAD_TOO_LARGE,
            "com.amazon.coral.service#RequestEntityTooLargeException",
            "RequestEntityTooLarge",
            format!(
                "The request body is larger than the largest legal SQS request ({limit} bytes)."
            ),
        )
    }

    /// Missing or bad credentials (docs/interface.md §3.4): 403 with the code SQS itself
    /// answers, `code` being `MissingAuthenticationToken`, `InvalidClientTokenId` or
    /// `SignatureDoesNotMatch` (see [`crate::api::auth::Denied`]).
    pub(crate) fn unauthorized(code: &'static str, message: impl Into<String>) -> Self {
        let shape = match code {
            "MissingAuthenticationToken" => "com.amazonaws.sqs#MissingAuthenticationToken",
            "SignatureDoesNotMatch" => "com.amazonaws.sqs#SignatureDoesNotMatch",
            _ => "com.amazonaws.sqs#InvalidClientTokenId",
        };
        Self::framing(StatusCode::FORBIDDEN, shape, code, message.into())
    }

    /// A failure of the store: a rejection keeps its code; unavailability (a full or locked
    /// database, I/O) is logged and answered 503 `ServiceUnavailable`, which every SDK retries,
    /// with a message saying which it is.
    pub(crate) fn from_store(err: StoreError, action: &str) -> Self {
        match err {
            StoreError::Rejected(r) => r.into(),
            unavailable => {
                let kind = Unavailable::of(&unavailable, action);
                Rejection::new(RejectCode::ServiceUnavailable, kind.sqs_message()).into()
            }
        }
    }

    /// A bug: something that cannot happen did.
    pub(crate) fn internal(what: &str) -> Self {
        tracing::error!(what, "internal error");
        SqsError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            shape: "com.amazonaws.sqs#InternalError".into(),
            query_code: "InternalError".into(),
            receiver_fault: true,
            message: "We encountered an internal error. Please try again.".into(),
        }
    }

    /// The HTTP status.
    pub(crate) fn status(&self) -> StatusCode {
        self.status
    }

    /// The legacy code: the query protocol's `<Code>` (and `x-amzn-query-error`'s first part).
    pub(crate) fn query_code(&self) -> &str {
        &self.query_code
    }

    /// `"Receiver"` for the service's own trouble, `"Sender"` for the client's.
    pub(crate) fn fault(&self) -> &'static str {
        if self.receiver_fault {
            "Receiver"
        } else {
            "Sender"
        }
    }

    /// The human-readable message.
    pub(crate) fn message(&self) -> &str {
        &self.message
    }

    /// The response, stamped with `request_id`.
    pub(crate) fn into_response_with(self, request_id: &str) -> Response {
        if self.status.is_client_error() {
            tracing::debug!(code = %self.query_code, status = self.status.as_u16(), "sqs request refused");
        }
        let body = json!({ "__type": self.shape, "message": self.message }).to_string();
        let fault = self.fault();
        let mut resp = (self.status, body).into_response();
        let h = resp.headers_mut();
        h.insert(
            axum::http::header::CONTENT_TYPE,
            HeaderValue::from_static(AMZ_JSON),
        );
        if let Ok(v) = HeaderValue::from_str(request_id) {
            h.insert(REQUEST_ID, v);
        }
        if let Ok(v) = HeaderValue::from_str(&format!("{};{fault}", self.query_code)) {
            h.insert(QUERY_ERROR, v);
        }
        resp
    }
}

/// An error of the REST shim: `{"error": "<code>", "message": "..."}` with a 4xx/5xx status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RestError {
    status: StatusCode,
    code: Cow<'static, str>,
    message: String,
}

impl RestError {
    /// An error with the given status, code and message.
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        RestError {
            status,
            code: code.into(),
            message: message.into(),
        }
    }

    /// A 400 `InvalidParameterValue`.
    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "InvalidParameterValue", message)
    }

    /// A failure of the store: rejections keep their code (404 for an unknown queue),
    /// unavailability is logged and answered 503 (with `Retry-After`) saying whether the
    /// database is full, locked, or failing otherwise.
    pub(crate) fn from_store(err: StoreError, action: &str) -> Self {
        match err {
            StoreError::Rejected(r) => r.into(),
            unavailable => {
                let kind = Unavailable::of(&unavailable, action);
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "ServiceUnavailable",
                    kind.rest_message(),
                )
            }
        }
    }
}

impl From<Rejection> for RestError {
    fn from(r: Rejection) -> Self {
        let (_, _, status) = wire(r.code);
        let status = match r.code {
            RejectCode::QueueDoesNotExist => StatusCode::NOT_FOUND,
            RejectCode::QueueAlreadyExists | RejectCode::PurgeQueueInProgress => {
                StatusCode::CONFLICT
            }
            _ => status,
        };
        RestError {
            status,
            code: format!("{:?}", r.code).into(),
            message: r.message,
        }
    }
}

impl IntoResponse for RestError {
    fn into_response(self) -> Response {
        if self.status.is_client_error() {
            tracing::debug!(code = %self.code, status = self.status.as_u16(), "rest request refused");
        }
        let mut resp = (
            self.status,
            axum::Json(json!({ "error": self.code, "message": self.message })),
        )
            .into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            // For `curl --retry` and other generic HTTP clients.
            resp.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                HeaderValue::from_static("1"),
            );
        }
        resp
    }
}

/// Any path nothing else answers.
pub(crate) async fn not_found(method: axum::http::Method, uri: axum::http::Uri) -> Response {
    RestError::new(
        StatusCode::NOT_FOUND,
        "NotFound",
        format!(
            "no route for {method} {}; esmd serves / and queue URLs /<account>/<queue> (SQS JSON and query protocols), /queues, /2015-03-31/event-source-mappings, /healthz, /readyz and /metrics",
            uri.path()
        ),
    )
    .into_response()
}
