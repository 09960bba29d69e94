//! Errors of the mapping API in Lambda's REST-JSON shape: the status of the exception, its name
//! in `x-amzn-ErrorType`, a request id in `x-amzn-RequestId`, and a JSON body
//! `{"Type": "User", "message": ...}` (the message member spelled as Lambda's model spells it
//! for that exception). Store failures are `ServiceException`s (500, `"Type": "Service"`).

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::domain::error::chain;
use crate::store::StoreError;

/// One refused request.
#[derive(Debug)]
pub(crate) struct LambdaError {
    status: StatusCode,
    kind: &'static str,
    message: String,
    /// `Reason` of a `TooManyRequestsException`.
    reason: Option<&'static str>,
}

impl LambdaError {
    /// `InvalidParameterValueException` (400).
    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "InvalidParameterValueException",
            message,
        )
    }

    /// `ResourceNotFoundException` (404).
    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "ResourceNotFoundException", message)
    }

    /// `ResourceConflictException` (409).
    pub(crate) fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "ResourceConflictException", message)
    }

    /// `ResourceInUseException` (400).
    pub(crate) fn in_use(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "ResourceInUseException", message)
    }

    /// `ServiceException` (500) for a store that could not do the work.
    pub(crate) fn store(e: &StoreError) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "ServiceException",
            format!(
                "esmd could not store the event source mapping: {}",
                chain(e)
            ),
        )
    }

    /// `RequestEntityTooLargeException` (413), as Lambda names it on the wire.
    pub(crate) fn too_large(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestEntityTooLargeException",
            message,
        )
    }

    /// `InvalidRequestContentException` (400): a body that is not JSON, or a bad header.
    pub(crate) fn invalid_content(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "InvalidRequestContentException",
            message,
        )
    }

    /// `TooManyRequestsException` (429) with its `Reason`.
    pub(crate) fn throttled(reason: &'static str, message: impl Into<String>) -> Self {
        let mut e = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "TooManyRequestsException",
            message,
        );
        e.reason = Some(reason);
        e
    }

    /// `ServiceException` (500): esmd could not do the work.
    pub(crate) fn service(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "ServiceException",
            message,
        )
    }

    fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        LambdaError {
            status,
            kind,
            message: message.into(),
            reason: None,
        }
    }

    /// The exception's name.
    #[cfg(test)]
    pub(crate) fn kind(&self) -> &'static str {
        self.kind
    }
}

impl IntoResponse for LambdaError {
    fn into_response(self) -> Response {
        let who = if self.status.is_server_error() {
            "Service"
        } else {
            "User"
        };
        // Lambda's model spells the member `Message` for these two and `message` for the rest.
        let member = match self.kind {
            "ResourceNotFoundException" | "ServiceException" | "ResourceInUseException" => {
                "Message"
            }
            _ => "message",
        };
        let mut body = json!({ "Type": who, member: self.message });
        if let Some(reason) = self.reason {
            body["Reason"] = json!(reason);
        }
        let mut response = (self.status, axum::Json(body)).into_response();
        let headers = response.headers_mut();
        headers.insert("x-amzn-ErrorType", HeaderValue::from_static(self.kind));
        if let Ok(id) = HeaderValue::from_str(&uuid::Uuid::new_v4().to_string()) {
            headers.insert("x-amzn-RequestId", id);
        }
        response
    }
}
