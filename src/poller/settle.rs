//! Invoking one batch and settling it by the function's result (docs/semantics.md §3): shared by the
//! background workers and by [`Poller::poll_once`], so the one-step seam settles exactly as the
//! workers do.

use std::collections::{BTreeSet, HashSet};

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{Batch, Poller};
use crate::domain::error::chain;
use crate::domain::event::{parse_batch_response, BatchResponse};
use crate::invoke::{Invocation, InvokeTarget};
use crate::metrics::{MappingEvent, Outcome};

/// How one batch was settled.
#[derive(Debug)]
pub(super) struct Settled {
    /// How the invocation ended.
    pub outcome: Outcome,
    /// Why the whole batch failed, when it did (a function error, a timeout, a malformed
    /// `batchItemFailures` response).
    pub error: Option<String>,
    /// Message ids deleted, in batch order.
    pub deleted: Vec<String>,
    /// Message ids left in flight, in batch order: they return after their visibility timeout
    /// (the failed records, and any whose delete did not go through).
    pub kept: Vec<String>,
    /// FIFO groups with a record that failed.
    pub failed_groups: BTreeSet<String>,
}

impl Poller {
    /// Invokes `batch` and settles it: deletes what succeeded, leaves the rest in flight.
    /// `None` if `abandon` fired first: the invocation was dropped and the whole batch is left to
    /// its visibility timeout.
    pub(super) async fn invoke_and_settle(
        &self,
        batch: &Batch,
        abandon: &CancellationToken,
    ) -> Option<Settled> {
        let m = &self.mapping;
        let n = batch.len() as u64;
        let payload = batch.event();
        self.metrics
            .invocation_started(&m.name, batch.len(), payload.len());
        self.metrics
            .mapping_event(&m.name, MappingEvent::Invoked, n);
        let target = InvokeTarget {
            function: &m.function_name,
            mapping: &m.name,
            region: &m.region,
            config: &m.function,
        };
        let started = Instant::now();
        let invocation = tokio::select! {
            inv = self.invoker.invoke(&target, payload) => inv,
            _ = abandon.cancelled() => {
                self.metrics.invocation_finished(&m.name, &m.function_name, Outcome::Error, started.elapsed());
                tracing::warn!(
                    mapping = %m.name, function = %m.function_name, records = n,
                    "invocation abandoned at the end of the shutdown grace period; its messages return after their visibility timeout"
                );
                return None;
            }
        };
        let ids: HashSet<&str> = batch
            .messages()
            .iter()
            .map(|msg| msg.message_id.as_str())
            .collect();
        let (outcome, failed, error): (Outcome, Option<BTreeSet<String>>, Option<String>) =
            match invocation {
                Invocation::Returned(_) if !m.config.report_batch_item_failures => {
                    (Outcome::Success, Some(BTreeSet::new()), None)
                }
                Invocation::Returned(body) => match parse_batch_response(body.as_deref(), &ids) {
                    BatchResponse::AllSucceeded => (Outcome::Success, Some(BTreeSet::new()), None),
                    BatchResponse::SomeFailed(f) => (Outcome::PartialFailure, Some(f), None),
                    BatchResponse::Invalid(why) => {
                        tracing::warn!(mapping = %m.name, function = %m.function_name, reason = %why, "malformed batchItemFailures response; the whole batch failed");
                        let error = format!("malformed batchItemFailures response: {why}");
                        (Outcome::Error, None, Some(error))
                    }
                },
                Invocation::FunctionError(why) => (Outcome::Error, None, Some(why)),
                Invocation::TimedOut => (
                    Outcome::Timeout,
                    None,
                    Some("function timed out".to_owned()),
                ),
            };
        self.metrics
            .invocation_finished(&m.name, &m.function_name, outcome, started.elapsed());
        let mut settled = Settled {
            outcome,
            error,
            deleted: Vec::new(),
            kept: Vec::new(),
            failed_groups: BTreeSet::new(),
        };
        match failed {
            None => {
                // Delete nothing: the batch returns after its visibility timeout.
                self.metrics
                    .mapping_event(&m.name, MappingEvent::FailedInvoke, n);
                settled.failed_groups = batch
                    .messages()
                    .iter()
                    .filter_map(|msg| msg.group_id.clone())
                    .collect();
                settled.kept = batch
                    .messages()
                    .iter()
                    .map(|msg| msg.message_id.clone())
                    .collect();
            }
            Some(failed) => {
                let (done, left): (Vec<_>, Vec<_>) = batch
                    .messages()
                    .iter()
                    .partition(|msg| !failed.contains(&msg.message_id));
                settled.failed_groups =
                    left.iter().filter_map(|msg| msg.group_id.clone()).collect();
                settled.kept = left.iter().map(|msg| msg.message_id.clone()).collect();
                let handles: Vec<String> =
                    done.iter().map(|msg| msg.receipt_handle.clone()).collect();
                let deleted = self.delete(&handles).await;
                for (msg, ok) in done.into_iter().zip(deleted) {
                    if ok {
                        settled.deleted.push(msg.message_id.clone());
                    } else {
                        settled.kept.push(msg.message_id.clone());
                    }
                }
            }
        }
        Some(settled)
    }

    /// Deletes by receipt handle; says for each handle whether it was deleted.
    async fn delete(&self, handles: &[String]) -> Vec<bool> {
        if handles.is_empty() {
            return Vec::new();
        }
        let m = &self.mapping;
        match self.store.delete(&m.config.queue, handles).await {
            Ok(results) => {
                let ok = results.iter().filter(|r| r.is_ok()).count() as u64;
                self.metrics
                    .mapping_event(&m.name, MappingEvent::Deleted, ok);
                results
                    .into_iter()
                    .map(|r| match r {
                        Ok(()) => true,
                        Err(e) => {
                            tracing::warn!(mapping = %m.name, error = %chain(&e), "could not delete a processed message; it will be delivered again");
                            false
                        }
                    })
                    .collect()
            }
            Err(e) => {
                tracing::error!(mapping = %m.name, error = %chain(&e), "could not delete processed messages; they will be delivered again");
                vec![false; handles.len()]
            }
        }
    }
}
