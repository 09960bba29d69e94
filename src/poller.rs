//! Event source mappings: a [`Poller`] per enabled mapping polls its queue in batches and invokes
//! its function synchronously, exactly as Lambda's SQS event source mapping does (docs/semantics.md
//! §1 to §4).
//!
//! A poller runs `max_concurrency` identical workers, like Lambda's concurrent pollers: each
//! collects a batch (batch size, batching window, payload cap), invokes, settles, and starts its
//! next window when the invocation finished. Because every worker claims through the store, the
//! store's rules give the guarantees: a claimed message is invisible to the other workers, and a
//! FIFO group with a message in flight is not handed out again, so two invocations never hold the
//! same group. Cancellation only interrupts waiting; a claimed batch is always invoked and settled
//! (or, past the shutdown grace period, abandoned to its visibility timeout).
//!
//! [`Poller::poll_once`] is one worker's step driven by its caller (no waiting, no background
//! task), for tests on a manual clock and for embedding.

mod batch;
mod once;
mod settle;
mod worker;

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{Config, FunctionConfig, MappingConfig};
use crate::domain::event::queue_arn;
use crate::domain::message::Message;
use crate::invoke::Invoker;
use crate::metrics::Metrics;
use crate::store::Store;

pub use batch::Batch;
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
    /// The queue's ARN, for `eventSourceARN`.
    pub queue_arn: String,
    /// The region, for `awsRegion`.
    pub region: String,
    /// The queue's visibility timeout when the mapping was built.
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
        Some(Mapping {
            name: name.to_owned(),
            config: m.clone(),
            function_name: m.function.clone(),
            function: config.functions.get(&m.function)?.clone(),
            queue_arn: queue_arn(
                &config.server.region,
                &config.server.account_id,
                m.queue.as_str(),
            ),
            region: config.server.region.clone(),
            queue_visibility_timeout,
        })
    }

    /// The visibility timeout messages are claimed with. With a batching window, Lambda raises it
    /// to `window + function timeout + 30 s` when the queue's is shorter than `window + timeout`,
    /// so that messages collected early in a window do not reappear before they are invoked.
    pub fn claim_visibility(&self) -> Option<Duration> {
        let window = self.config.batching_window;
        let needed = window + self.function.timeout;
        (!window.is_zero() && needed > self.queue_visibility_timeout)
            .then(|| needed + Duration::from_secs(30))
    }
}

/// One mapping's poller.
#[derive(Debug, Clone)]
pub struct Poller {
    mapping: Arc<Mapping>,
    store: Store,
    invoker: Invoker,
    metrics: Arc<Metrics>,
    /// What [`Poller::poll_once`] carries from one call to the next.
    step_carry: Arc<tokio::sync::Mutex<Vec<(Message, String)>>>,
}

impl Poller {
    /// A poller for `mapping`.
    pub fn new(mapping: Mapping, store: Store, invoker: Invoker, metrics: Arc<Metrics>) -> Self {
        metrics.register_mapping(&mapping.name, &mapping.function_name);
        Poller {
            mapping: Arc::new(mapping),
            store,
            invoker,
            metrics,
            step_carry: Arc::default(),
        }
    }

    /// The mapping this poller serves.
    pub fn mapping(&self) -> &Mapping {
        &self.mapping
    }

    /// Starts the workers on `tracker`. They stop claiming when `cancel` fires; a batch already
    /// claimed is still invoked and settled, unless `abandon` fires first (the end of the
    /// shutdown grace period), which drops the invocation and leaves its messages in flight.
    pub fn spawn(
        self,
        tracker: &TaskTracker,
        cancel: &CancellationToken,
        abandon: &CancellationToken,
    ) {
        for n in 0..self.mapping.config.max_concurrency {
            let worker = worker::Worker::new(self.clone(), n, abandon.clone());
            tracker.spawn(worker.run(cancel.clone()));
        }
    }
}
