//! The store's plain data types, shared by every part of it: a queue as stored, its counts,
//! per-entry batch results, and the test-only writer fault. No behaviour, no imports of the
//! store's other parts, so every part can use them without importing upward.

use std::collections::BTreeMap;

use crate::domain::queue::{DedupScope, QueueName, QueueSettings};
use crate::domain::{Rejection, Timestamp};

/// A writer failure injected by tests, to check that a dead writer stops the daemon.
#[doc(hidden)]
#[derive(Debug, Clone)]
pub enum WriterFault {
    /// The writer panics when it takes an operation on this queue.
    PanicOnQueue(QueueName),
}

/// A queue as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueInfo {
    /// Internal id (appears inside receipt handles).
    pub id: i64,
    /// The name.
    pub name: QueueName,
    /// Every attribute.
    pub settings: QueueSettings,
    /// The deduplication scope sends are checked in: the one the queue was created with (AWS
    /// keeps it when `DeduplicationScope` is changed later; a configuration file's change applies).
    pub dedup_applied: DedupScope,
    /// Queue tags.
    pub tags: BTreeMap<String, String>,
    /// `CreatedTimestamp`.
    pub created_at: Timestamp,
    /// `LastModifiedTimestamp`.
    pub last_modified_at: Timestamp,
}

/// How many messages a queue holds, by state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QueueCounts {
    /// Receivable now (`ApproximateNumberOfMessages`).
    pub visible: u64,
    /// Received and not yet visible again (`ApproximateNumberOfMessagesNotVisible`).
    pub in_flight: u64,
    /// Waiting out a delay (`ApproximateNumberOfMessagesDelayed`).
    pub delayed: u64,
    /// When the oldest message still stored was sent (retention clock).
    pub oldest_sent_at: Option<Timestamp>,
}

/// Per-entry results of a batch operation, in request order.
pub type EntryResults<T> = Vec<Result<T, Rejection>>;
