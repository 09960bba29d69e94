//! Bounded request-body reading: a body larger than the limit is refused from its declared
//! `Content-Length` before a byte is read, and a body without one (chunked) is read only up to
//! the limit, so no request can make esmd buffer more than the largest legal request.

use axum::body::Body;
use axum::http::{header, HeaderMap};
use bytes::Bytes;
use http_body_util::{BodyExt, LengthLimitError, Limited};

/// Why a body could not be read.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// It is longer than the limit.
    TooLarge,
    /// The connection broke or the framing was bad.
    Broken(String),
}

/// Whether the request declares a `Content-Length` above `limit`.
pub(crate) fn declared_too_large(headers: &HeaderMap, limit: usize) -> bool {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.trim().parse::<u64>().ok())
        .is_some_and(|n| n > limit as u64)
}

/// Reads the whole body, at most `limit` bytes.
pub(crate) async fn read(body: Body, limit: usize) -> Result<Bytes, ReadError> {
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => Err(ReadError::TooLarge),
        Err(e) => Err(ReadError::Broken(e.to_string())),
    }
}
