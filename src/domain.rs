//! The pure vocabulary of esmd: queue names and settings, messages and their attributes, receipt
//! handles, timestamps, and the SQS-shaped rejections every layer speaks.
//!
//! Nothing here does I/O or knows about tokio, sqlx, axum or reqwest. Validation of external
//! input happens here, once, so that everything past the edge can trust its types.

pub mod attributes;
pub mod batch_response;
pub mod event;
pub mod message;
pub mod queue;
pub mod rejection;
pub mod text;
pub mod time;

pub use rejection::{RejectCode, Rejection};
pub use time::Timestamp;
