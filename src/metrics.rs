//! Prometheus metrics: every series of docs/interface.md §3.3, defined in this one file on a
//! non-global registry, recorded through typed methods. Label values are only configured names
//! and fixed words. The only module that imports `prometheus`.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

mod mapping;
mod runtime;

pub use runtime::RuntimeMetrics;

use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

/// How an invocation ended, as the `outcome` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Every record succeeded.
    Success,
    /// The function reported some records as failed.
    PartialFailure,
    /// A function error (or a malformed partial-failure response).
    Error,
    /// No answer within the function's timeout.
    Timeout,
}

impl Outcome {
    fn label(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::PartialFailure => "partial_failure",
            Outcome::Error => "error",
            Outcome::Timeout => "timeout",
        }
    }
}

/// AWS's event source mapping event counts, as the `event` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MappingEvent {
    /// Records received from the queue.
    Polled,
    /// Records dropped by filters.
    FilteredOut,
    /// Records sent to the function.
    Invoked,
    /// Records in invocations that failed.
    FailedInvoke,
    /// Records deleted after success.
    Deleted,
}

impl MappingEvent {
    fn label(self) -> &'static str {
        match self {
            MappingEvent::Polled => "polled",
            MappingEvent::FilteredOut => "filtered_out",
            MappingEvent::Invoked => "invoked",
            MappingEvent::FailedInvoke => "failed_invoke",
            MappingEvent::Deleted => "deleted",
        }
    }
}

/// All of esmd's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    queue_messages: IntGaugeVec,
    oldest_age: GaugeVec,
    sent: IntCounterVec,
    received: IntCounterVec,
    deleted: IntCounterVec,
    dead_lettered: IntCounterVec,
    mapping_events: IntCounterVec,
    invocations: IntCounterVec,
    duration: HistogramVec,
    batch_records: HistogramVec,
    batch_bytes: HistogramVec,
    in_flight: IntGaugeVec,
    claimed: IntGaugeVec,
    batch_age: HistogramVec,
    store_errors: IntCounterVec,
    source_errors: IntCounterVec,
    store_commits: HistogramVec,
    tombstones: IntCounterVec,
    async_events: IntCounterVec,
    async_dropped: IntCounterVec,
    async_delivered: IntCounterVec,
    runtime: RuntimeMetrics,
    /// The queues whose series exist (registered, not yet removed): a scrape sets gauges only
    /// for these, so it never brings back a queue deleted meanwhile.
    queues: Mutex<HashSet<String>>,
}

fn reg<T: prometheus::core::Collector + Clone + 'static>(r: &Registry, c: T) -> T {
    r.register(Box::new(c.clone()))
        .expect("metric names are unique");
    c
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every series on a fresh registry.
    pub fn new() -> Self {
        let r = Registry::new();
        let q = &["queue"];
        let counter = |name: &str, help: &str, labels: &[&str]| {
            reg(
                &r,
                IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric"),
            )
        };
        let hist = |name: &str, help: &str, labels: &[&str], buckets: Vec<f64>| {
            reg(
                &r,
                HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), labels)
                    .expect("valid metric"),
            )
        };
        let m = Metrics {
            queue_messages: reg(
                &r,
                IntGaugeVec::new(
                    Opts::new("esmd_queue_messages", "Messages in a queue by state."),
                    &["queue", "state"],
                )
                .expect("valid metric"),
            ),
            oldest_age: reg(
                &r,
                GaugeVec::new(
                    Opts::new(
                        "esmd_queue_oldest_message_age_seconds",
                        "Age of the oldest message in a queue.",
                    ),
                    q,
                )
                .expect("valid metric"),
            ),
            sent: counter(
                "esmd_messages_sent_total",
                "Messages accepted by a queue.",
                q,
            ),
            received: counter(
                "esmd_messages_received_total",
                "Messages handed out by receives.",
                q,
            ),
            deleted: counter(
                "esmd_messages_deleted_total",
                "Messages deleted by receipt handle.",
                q,
            ),
            dead_lettered: counter(
                "esmd_messages_dead_lettered_total",
                "Messages moved from this queue to its dead-letter queue.",
                q,
            ),
            mapping_events: counter(
                "esmd_mapping_events_total",
                "Event source mapping record counts, as AWS's EventCount metrics.",
                &["mapping", "event"],
            ),
            invocations: counter(
                "esmd_invocations_total",
                "Function invocations by outcome.",
                &["mapping", "function", "outcome"],
            ),
            duration: hist(
                "esmd_invocation_duration_seconds",
                "Function invocation duration.",
                &["mapping", "function"],
                vec![
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                    30.0, 60.0, 300.0, 900.0,
                ],
            ),
            batch_records: hist(
                "esmd_batch_records",
                "Records per invocation.",
                &["mapping"],
                vec![
                    1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0,
                    10000.0,
                ],
            ),
            batch_bytes: hist(
                "esmd_batch_payload_bytes",
                "Invocation payload size in bytes.",
                &["mapping"],
                prometheus::exponential_buckets(256.0, 4.0, 10).expect("valid buckets"),
            ),
            in_flight: reg(
                &r,
                IntGaugeVec::new(
                    Opts::new(
                        "esmd_invocations_in_flight",
                        "Invocations of a mapping running now.",
                    ),
                    &["mapping"],
                )
                .expect("valid metric"),
            ),
            claimed: reg(
                &r,
                IntGaugeVec::new(
                    Opts::new(
                        "esmd_mapping_claimed_messages",
                        "Messages a mapping has claimed (in flight) but not yet sent to its function.",
                    ),
                    &["mapping"],
                )
                .expect("valid metric"),
            ),
            batch_age: hist(
                "esmd_batch_oldest_message_age_seconds",
                "Age of the oldest message of a batch (since it was sent) when the batch was invoked.",
                &["mapping"],
                vec![
                    0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0,
                    3600.0, 86400.0,
                ],
            ),
            store_errors: counter(
                "esmd_store_errors_total",
                "Database writes refused, by cause (full, locked, other); the requests were not acknowledged.",
                &["kind"],
            ),
            store_commits: hist(
                "esmd_store_commit_operations",
                "Operations (sends, receives, deletes, visibility changes) per committed write transaction: how many requests each commit carried (group commit).",
                &[],
                vec![1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 512.0],
            ),
            tombstones: counter(
                "esmd_tombstones_total",
                "Tombstones of messages deleted, filtered out, expired or dead-lettered (for explain): written, skipped (the database was near full) and swept (past storage.tombstone_retention).",
                &["event"],
            ),
            async_events: counter(
                "esmd_async_events_total",
                "Asynchronous (Event) invocations stored (queued) and retried after a function error.",
                &["function", "event"],
            ),
            async_dropped: counter(
                "esmd_async_events_dropped_total",
                "Asynchronous invocations given up without a destination to send their record to, by reason.",
                &["function", "reason"],
            ),
            async_delivered: counter(
                "esmd_async_events_delivered_total",
                "Destination records sent to an on_success or on_failure queue, by condition.",
                &["function", "condition"],
            ),
            runtime: RuntimeMetrics::register(&r),
            source_errors: reg(&r, mapping::source_errors()),
            registry: r,
            queues: Mutex::default(),
        };
        for kind in ["full", "locked", "other"] {
            m.store_errors.with_label_values(&[kind]);
        }
        for event in ["written", "skipped", "swept"] {
            m.tombstones.with_label_values(&[event]);
        }
        m
    }

    /// The series of runtime functions' execution environments.
    pub fn runtime(&self) -> RuntimeMetrics {
        self.runtime.clone()
    }

    /// Messages accepted by `queue`.
    pub fn messages_sent(&self, queue: &str, n: u64) {
        self.sent.with_label_values(&[queue]).inc_by(n);
    }

    /// Messages handed out by receives from `queue`.
    pub fn messages_received(&self, queue: &str, n: u64) {
        self.received.with_label_values(&[queue]).inc_by(n);
    }

    /// Messages deleted from `queue`.
    pub fn messages_deleted(&self, queue: &str, n: u64) {
        self.deleted.with_label_values(&[queue]).inc_by(n);
    }

    /// Messages moved from `queue` to its dead-letter queue.
    pub fn messages_dead_lettered(&self, queue: &str, n: u64) {
        self.dead_lettered.with_label_values(&[queue]).inc_by(n);
    }

    fn known(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.queues
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Makes a queue's series appear from its creation, the counters at 0 (so `rate()` and
    /// alerts see the first messages). Idempotent.
    pub fn register_queue(&self, queue: &str) {
        let mut known = self.known();
        for c in [
            &self.sent,
            &self.received,
            &self.deleted,
            &self.dead_lettered,
        ] {
            c.with_label_values(&[queue]);
        }
        known.insert(queue.to_owned());
    }

    /// Sets the queue gauges (refreshed at scrape time) of a registered queue; a queue not
    /// registered, or removed since, is left alone.
    pub fn set_queue_state(
        &self,
        queue: &str,
        visible: u64,
        in_flight: u64,
        delayed: u64,
        oldest_age_seconds: f64,
    ) {
        let known = self.known();
        if !known.contains(queue) {
            return;
        }
        for (state, v) in [
            ("visible", visible),
            ("in_flight", in_flight),
            ("delayed", delayed),
        ] {
            self.queue_messages
                .with_label_values(&[queue, state])
                .set(v as i64);
        }
        self.oldest_age
            .with_label_values(&[queue])
            .set(oldest_age_seconds);
    }

    /// Drops every series of a deleted queue (gauges and counters).
    pub fn remove_queue(&self, queue: &str) {
        let mut known = self.known();
        known.remove(queue);
        for c in [
            &self.sent,
            &self.received,
            &self.deleted,
            &self.dead_lettered,
        ] {
            let _ = c.remove_label_values(&[queue]);
        }
        for state in ["visible", "in_flight", "delayed"] {
            let _ = self.queue_messages.remove_label_values(&[queue, state]);
        }
        let _ = self.oldest_age.remove_label_values(&[queue]);
    }

    /// Counts `n` records of a mapping event.
    pub fn mapping_event(&self, mapping: &str, event: MappingEvent, n: u64) {
        if n > 0 {
            self.mapping_events
                .with_label_values(&[mapping, event.label()])
                .inc_by(n);
        }
    }

    /// `mapping` holds `n` claimed messages not yet invoked.
    pub fn mapping_claimed(&self, mapping: &str, n: usize) {
        self.claimed
            .with_label_values(&[mapping])
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// A batch of `mapping` was invoked with its oldest message sent `age` ago.
    pub fn batch_invoked_at_age(&self, mapping: &str, age: Duration) {
        self.batch_age
            .with_label_values(&[mapping])
            .observe(age.as_secs_f64());
    }

    /// An invocation started: records its batch shape and raises the in-flight gauge.
    pub fn invocation_started(&self, mapping: &str, records: usize, bytes: usize) {
        self.batch_records
            .with_label_values(&[mapping])
            .observe(records as f64);
        self.batch_bytes
            .with_label_values(&[mapping])
            .observe(bytes as f64);
        self.in_flight.with_label_values(&[mapping]).inc();
    }

    /// An invocation finished with `outcome` after `took`.
    pub fn invocation_finished(
        &self,
        mapping: &str,
        function: &str,
        outcome: Outcome,
        took: Duration,
    ) {
        self.in_flight.with_label_values(&[mapping]).dec();
        self.invocations
            .with_label_values(&[mapping, function, outcome.label()])
            .inc();
        self.duration
            .with_label_values(&[mapping, function])
            .observe(took.as_secs_f64());
    }

    /// A group of database writes was refused because the database is `kind` ("full",
    /// "locked" or "other").
    pub fn store_error(&self, kind: &'static str) {
        self.store_errors.with_label_values(&[kind]).inc();
    }

    /// A write transaction of the store committed `operations` operations.
    pub fn store_committed(&self, operations: usize) {
        self.store_commits
            .with_label_values::<&str>(&[])
            .observe(operations as f64);
    }

    /// Tombstones `written`, `skipped` for lack of room, and `swept` past their retention.
    pub fn tombstones(&self, written: u64, skipped: u64, swept: u64) {
        for (event, n) in [("written", written), ("skipped", skipped), ("swept", swept)] {
            if n > 0 {
                self.tombstones.with_label_values(&[event]).inc_by(n);
            }
        }
    }

    /// An asynchronous invocation of `function` was stored (`queued`) or will be `retried`.
    pub fn async_event(&self, function: &str, event: &'static str) {
        self.async_events
            .with_label_values(&[function, event])
            .inc();
    }

    /// An asynchronous invocation of `function` was given up without a destination, for
    /// `reason` (`retries_exhausted`, `event_age_exceeded`, `function_removed`,
    /// `destination_failed`).
    pub fn async_dropped(&self, function: &str, reason: &'static str) {
        self.async_dropped
            .with_label_values(&[function, reason])
            .inc();
    }

    /// A destination record of `function` with `condition` (`Success`, `RetriesExhausted`,
    /// `EventAgeExceeded`) was sent.
    pub fn async_delivered(&self, function: &str, condition: &'static str) {
        self.async_delivered
            .with_label_values(&[function, condition])
            .inc();
    }

    /// The Prometheus text exposition of every series.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .expect("encoding to a Vec cannot fail");
        String::from_utf8(buf).expect("the text format is UTF-8")
    }
}
