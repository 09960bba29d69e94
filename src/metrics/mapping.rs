//! A mapping's series made to appear at zero when it starts, and the series of its source
//! (docs/interface.md §3.3): calls to the queue a mapping polls that failed, by operation. A
//! local queue's failures are the store's; a remote queue's (`queue_url`) are connection errors,
//! throttling and error answers of the remote SQS.

use prometheus::{IntCounterVec, Opts};

use super::{MappingEvent, Metrics, Outcome};

/// The operations of a mapping's source, as the `operation` label.
const OPERATIONS: [&str; 4] = [
    "receive",
    "delete",
    "change_visibility",
    "get_queue_attributes",
];

/// `esmd_mapping_source_errors_total{mapping, operation}`.
pub(super) fn source_errors() -> IntCounterVec {
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
    /// Makes a mapping's series appear (at zero) before its first event.
    pub fn register_mapping(&self, mapping: &str, function: &str) {
        for e in [
            MappingEvent::Polled,
            MappingEvent::FilteredOut,
            MappingEvent::Invoked,
            MappingEvent::FailedInvoke,
            MappingEvent::Deleted,
        ] {
            self.mapping_events.with_label_values(&[mapping, e.label()]);
        }
        for o in [
            Outcome::Success,
            Outcome::PartialFailure,
            Outcome::Error,
            Outcome::Timeout,
        ] {
            self.invocations
                .with_label_values(&[mapping, function, o.label()]);
        }
        self.in_flight.with_label_values(&[mapping]).set(0);
        self.claimed.with_label_values(&[mapping]).set(0);
        self.batch_age.with_label_values(&[mapping]);
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
