//! The series of a mapping's source (docs/interface.md §3.3): calls to the queue a mapping polls
//! that failed, by operation. A local queue's failures are the store's; a remote queue's
//! (`queue_url`) are connection errors, throttling and error answers of the remote SQS.

use prometheus::{IntCounterVec, Opts};

use super::Metrics;

/// The operations of a mapping's source, as the `operation` label.
const OPERATIONS: [&str; 4] = [
    "receive",
    "delete",
    "change_visibility",
    "get_queue_attributes",
];

/// `esmd_mapping_source_errors_total{mapping, operation}`.
pub(super) fn counter() -> IntCounterVec {
    IntCounterVec::new(
        Opts::new(
            "esmd_mapping_source_errors_total",
            "Calls to a mapping's queue (local store or remote SQS) that failed, by operation.",
        ),
        &["mapping", "operation"],
    )
    .expect("valid metric")
}

impl Metrics {
    /// Makes `mapping`'s source error series appear at zero.
    pub(super) fn register_source(&self, mapping: &str) {
        for op in OPERATIONS {
            self.source_errors.with_label_values(&[mapping, op]);
        }
    }

    /// A call of `mapping` to its queue failed; `operation` is one of `receive`, `delete`,
    /// `change_visibility`, `get_queue_attributes`.
    pub fn mapping_source_error(&self, mapping: &str, operation: &'static str) {
        debug_assert!(OPERATIONS.contains(&operation), "{operation}");
        self.source_errors
            .with_label_values(&[mapping, operation])
            .inc();
    }
}
