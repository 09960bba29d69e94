//! The pure vocabulary of esmd: queue names and settings, messages and their attributes, receipt
//! handles, timestamps, the SQS-shaped rejections every layer speaks, a mapping's event filters
//! ([`filter`]) and retry back-off ([`backoff`]), mappings made through Lambda's API ([`esm`]),
//! and the one way every layer reports an error with its causes ([`error::chain`]).
//!
//! Nothing here does I/O or knows about tokio, sqlx, axum or reqwest. Validation of external
//! input happens here, once, so that everything past the edge can trust its types.

pub mod attributes;
pub mod backoff;
pub mod batch_response;
pub mod error;
pub mod esm;
pub mod event;
pub mod filter;
pub mod message;
pub mod queue;
pub mod rejection;
pub mod text;
pub mod time;

pub use rejection::{RejectCode, Rejection};
pub use time::Timestamp;
