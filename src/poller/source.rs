//! Where a mapping's messages come from: a queue of this esmd (the store) or a remote SQS queue
//! (`queue_url`, `remote.rs`). The collector and the settle code speak only to a [`Source`], so
//! both kinds go through the same batching, window, concurrency, FIFO, filter, partial-failure
//! and delete code; only the four calls below differ. Every failed call is counted in
//! `esmd_mapping_source_errors_total{mapping, operation}`.

use std::sync::Arc;
use std::time::Duration;

use super::failure::{Entries, EntryFailed, PollError};
use super::remote::Remote;
use super::Mapping;
use crate::domain::message::Message;
use crate::domain::queue::QueueName;
use crate::metrics::Metrics;
use crate::store::{EntryResults, Store, StoreError};

/// A mapping's queue.
#[derive(Debug)]
pub(super) enum Source {
    /// A queue of this esmd.
    Local {
        store: Store,
        queue: QueueName,
        mapping: String,
        metrics: Arc<Metrics>,
    },
    /// A remote SQS queue, through the AWS SDK.
    Remote(Remote),
}

impl Source {
    /// The source of `mapping`: its remote queue if it has one, else its queue in `store`.
    pub(super) fn new(mapping: &Mapping, store: &Store, metrics: &Arc<Metrics>) -> Self {
        match &mapping.config.remote {
            Some(remote) => Source::Remote(Remote::new(mapping, remote, metrics.clone())),
            None => Source::Local {
                store: store.clone(),
                queue: mapping.config.queue.clone(),
                mapping: mapping.name.clone(),
                metrics: metrics.clone(),
            },
        }
    }

    /// The queue's visibility timeout: `local` (read when the mapping was built) for a queue of
    /// this esmd; a remote queue's is asked for once.
    pub(super) async fn visibility_timeout(&self, local: Duration) -> Result<Duration, PollError> {
        match self {
            Source::Local { .. } => Ok(local),
            Source::Remote(r) => r.visibility_timeout().await,
        }
    }

    /// Receives up to `max` messages, waiting up to `wait` for the first, claimed for
    /// `visibility` (`None`: the queue's own).
    pub(super) async fn receive(
        &self,
        max: u32,
        visibility: Option<Duration>,
        wait: Duration,
    ) -> Result<Vec<Message>, PollError> {
        match self {
            Source::Local {
                store,
                queue,
                mapping,
                metrics,
            } => counted(
                metrics,
                mapping,
                "receive",
                store
                    .receive_wait_for_mapping(mapping, queue, max, visibility, wait)
                    .await,
            ),
            Source::Remote(r) => r.receive(max, visibility, wait).await,
        }
    }

    /// Deletes by receipt handle after a successful invocation (`filtered`: no filter matched).
    pub(super) async fn delete(
        &self,
        handles: &[String],
        filtered: bool,
    ) -> Result<Entries, PollError> {
        match self {
            Source::Local {
                store,
                queue,
                mapping,
                metrics,
            } => {
                let r = if filtered {
                    store.delete_filtered(queue, handles).await
                } else {
                    store.delete(queue, handles).await
                };
                counted(metrics, mapping, "delete", r.map(entries))
            }
            Source::Remote(r) => r.delete(handles).await,
        }
    }

    /// Changes the visibility timeout of received messages, counted from now.
    pub(super) async fn change_visibility(
        &self,
        entries: &[(String, Duration)],
    ) -> Result<Entries, PollError> {
        match self {
            Source::Local {
                store,
                queue,
                mapping,
                metrics,
            } => counted(
                metrics,
                mapping,
                "change_visibility",
                store
                    .change_visibility(queue, entries)
                    .await
                    .map(self::entries),
            ),
            Source::Remote(r) => r.change_visibility(entries).await,
        }
    }
}

/// The store's per-entry results as a source's.
fn entries(results: EntryResults<()>) -> Entries {
    results
        .into_iter()
        .map(|r| r.map_err(|e| EntryFailed(e.to_string())))
        .collect()
}

/// `r`, counted in the mapping's source errors when it failed.
fn counted<T>(
    metrics: &Metrics,
    mapping: &str,
    operation: &'static str,
    r: Result<T, StoreError>,
) -> Result<T, PollError> {
    if r.is_err() {
        metrics.mapping_source_error(mapping, operation);
    }
    r.map_err(PollError::from)
}
