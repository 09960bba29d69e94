//! Event source mappings: a [`Poller`] per enabled mapping polls its queue in batches and invokes
//! its function synchronously, exactly as Lambda's SQS event source mapping does (docs/semantics.md
//! §1 to §4).
//!
//! As in Lambda, pollers and invocations are apart: one collector per mapping claims from the
//! store and fills batches under `batch_size`, `batching_window` and `max_payload` for the whole
//! mapping (`collect.rs`), and hands each batch to an invocation of its own, at most
//! `max_concurrency` at once (`dispatch.rs`). An invocation's slot is free as soon as the
//! function answers; its deletes go to the store's writer and share commits with other
//! invocations' (`settle.rs`). The store's rules give the guarantees: a claimed message is
//! invisible to everyone else, and a FIFO group with a message in flight is not handed out
//! again, so two invocations never hold the same group. Cancellation only interrupts waiting; a
//! claimed batch is always invoked and settled (or, past the shutdown grace period, abandoned to
//! its visibility timeout).
//!
//! [`Poller::poll_once`] is one collect, invoke and settle driven by its caller (no waiting, no
//! background task), for tests on a manual clock and for embedding.

mod batch;
mod collect;
mod dispatch;
mod failure;
mod kept;
mod once;
mod remote;
mod settle;
mod source;

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{Config, FunctionConfig, MappingConfig};
use crate::domain::event::{arn_of, queue_arn};
use crate::invoke::Invoker;
use crate::metrics::Metrics;
use crate::store::Store;
use source::Source;

pub use batch::Batch;
pub use failure::PollError;
pub use once::PollReport;

/// Everything a mapping's workers need to know, resolved once from the configuration.
#[derive(Debug, Clone)]
pub struct Mapping {
    /// The mapping's name (`[mappings.NAME]`).
    pub name: String,
    /// Its settings.
    pub config: MappingConfig,
    /// The function's name.
    pub function_name: String,
    /// The function's settings.
    pub function: FunctionConfig,
    /// The queue's ARN, for `eventSourceARN` (a remote queue's: its region, the account of its
    /// URL).
    pub queue_arn: String,
    /// The region, for `awsRegion`.
    pub region: String,
    /// The queue's visibility timeout when the mapping was built. Not used for a remote queue:
    /// its poller asks the queue.
    pub queue_visibility_timeout: Duration,
}

impl Mapping {
    /// The mapping `name` of `config`, for a queue whose visibility timeout is
    /// `queue_visibility_timeout`; `None` if `config` has no such mapping (or not its function).
    /// A disabled mapping resolves too: nothing starts its workers, but [`Poller::poll_once`]
    /// can drive it.
    pub fn from_config(
        name: &str,
        config: &Config,
        queue_visibility_timeout: Duration,
    ) -> Option<Mapping> {
        let m = config.mappings.get(name)?;
        let (queue_arn, region) = match &m.remote {
            Some(r) => (
                queue_arn(&r.region, &r.account_id, m.queue.name()),
                r.region.clone(),
            ),
            None => (
                arn_of(&m.queue, &config.server.region, &config.server.account_id),
                m.queue.region_or(&config.server.region).to_owned(),
            ),
        };
        Some(Mapping {
            name: name.to_owned(),
            config: m.clone(),
            function_name: m.function.clone(),
            function: config.functions.get(&m.function)?.clone(),
            queue_arn,
            region,
            queue_visibility_timeout,
        })
    }

    /// The visibility timeout messages are claimed with. With a batching window, Lambda raises it
    /// to `window + function timeout + 30 s` when the queue's is shorter than `window + timeout`,
    /// so that messages collected early in a window do not reappear before they are invoked.
    pub fn claim_visibility(&self) -> Option<Duration> {
        self.claim_visibility_on(self.queue_visibility_timeout)
    }

    /// [`Mapping::claim_visibility`] on a queue whose visibility timeout is `queue_vt`.
    fn claim_visibility_on(&self, queue_vt: Duration) -> Option<Duration> {
        let window = self.config.batching_window;
        let needed = window + self.function.timeout;
        (!window.is_zero() && needed > queue_vt).then(|| needed + Duration::from_secs(30))
    }
}

/// One mapping's poller.
#[derive(Debug, Clone)]
pub struct Poller {
    mapping: Arc<Mapping>,
    /// The daemon's store: its clock, and the queue of a local mapping.
    store: Store,
    /// Where the mapping's messages come from.
    source: Arc<Source>,
    invoker: Invoker,
    metrics: Arc<Metrics>,
    /// What [`Poller::poll_once`] carries from one call to the next.
    step: Arc<tokio::sync::Mutex<collect::Collector>>,
}

impl Poller {
    /// A poller for `mapping`.
    pub fn new(mapping: Mapping, store: Store, invoker: Invoker, metrics: Arc<Metrics>) -> Self {
        metrics.register_mapping(&mapping.name, &mapping.function_name);
        for pattern in mapping.config.filters.patterns() {
            let keys = pattern.metadata_keys();
            if !keys.is_empty() {
                tracing::warn!(
                    mapping = %mapping.name, pattern = pattern.source(), keys = ?keys,
                    "this filter names record fields other than body; esmd matches them against the record, but AWS documents filtering on body only for SQS"
                );
            }
        }
        Poller {
            source: Arc::new(Source::new(&mapping, &store, &metrics)),
            mapping: Arc::new(mapping),
            store,
            invoker,
            metrics,
            step: Arc::default(),
        }
    }

    /// The mapping this poller serves.
    pub fn mapping(&self) -> &Mapping {
        &self.mapping
    }

    /// The visibility timeout the mapping claims with (`None`: the queue's own) and the queue's
    /// own, which a remote source asks its queue for.
    async fn visibility(&self) -> Result<(Option<Duration>, Duration), PollError> {
        let m = &self.mapping;
        let queue_vt = self
            .source
            .visibility_timeout(m.queue_visibility_timeout)
            .await?;
        Ok((m.claim_visibility_on(queue_vt), queue_vt))
    }

    /// Starts the mapping on `tracker`: its collector, which starts each invocation on the same
    /// tracker. It stops claiming when `cancel` fires; a batch already claimed is still invoked
    /// and settled, unless `abandon` fires first (the end of the shutdown grace period), which
    /// drops the invocation and leaves its messages in flight.
    pub fn spawn(
        self,
        tracker: &TaskTracker,
        cancel: &CancellationToken,
        abandon: &CancellationToken,
    ) {
        tracker.spawn(self.dispatch(tracker.clone(), cancel.clone(), abandon.clone()));
    }
}
