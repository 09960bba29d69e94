//! Invoking one batch and settling it by the function's result (docs/semantics.md §3), in two
//! steps so that an invocation slot is free again as soon as the function has answered:
//! [`Poller::invoke`] runs the function and decides what succeeded (a [`Verdict`]), and
//! [`Poller::settle`] hands the deletes to the store's writer, where the deletes of many
//! invocations share one statement and one commit. Shared by the mapping's dispatcher and by
//! [`Poller::poll_once`], so the one-step seam settles exactly as the background does.
//!
//! With `retry_backoff`, the messages a failed invocation leaves get their back-off delay as
//! their visibility timeout, through the store's change-visibility path; without it they
//! return after the queue's visibility timeout, as with Lambda. Records that no filter matched
//! are deleted here too, without an invocation ([`Poller::delete_filtered`]).

use std::collections::{BTreeSet, HashSet};

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{Batch, Poller};
use crate::domain::error::chain;
use crate::domain::event::{parse_batch_response, BatchResponse};
use crate::domain::message::Message;
use crate::invoke::{Invocation, InvokeTarget};
use crate::metrics::{MappingEvent, Outcome};

/// What an invocation decided about its batch, before anything is deleted.
#[derive(Debug)]
pub(super) struct Verdict {
    /// How the invocation ended.
    pub outcome: Outcome,
    /// Why the whole batch failed, when it did (a function error, a timeout, a malformed
    /// `batchItemFailures` response).
    pub error: Option<String>,
    /// The message ids reported as failed; `None` when the whole batch failed.
    pub failed: Option<BTreeSet<String>>,
}

/// How one batch was settled.
#[derive(Debug)]
pub(super) struct Settled {
    /// How the invocation ended.
    pub outcome: Outcome,
    /// Why the whole batch failed, when it did.
    pub error: Option<String>,
    /// Message ids deleted, in batch order.
    pub deleted: Vec<String>,
    /// Message ids left in flight, in batch order: they return after their visibility timeout
    /// (the failed records, and any whose delete did not go through).
    pub kept: Vec<String>,
    /// FIFO groups with a record that was not deleted.
    pub failed_groups: BTreeSet<String>,
}

impl Poller {
    /// Invokes the function with `batch` and decides what succeeded. `None` if `abandon` fired
    /// first: the invocation was dropped and the whole batch is left to its visibility timeout.
    pub(super) async fn invoke(
        &self,
        batch: &Batch,
        abandon: &CancellationToken,
    ) -> Option<Verdict> {
        let m = &self.mapping;
        let n = batch.len() as u64;
        let payload = batch.event();
        self.metrics
            .invocation_started(&m.name, batch.len(), payload.len());
        if let Some(oldest) = batch.messages().iter().map(|msg| msg.sent_at).min() {
            let age = self.store.clock().now().since(oldest);
            self.metrics.batch_invoked_at_age(&m.name, age);
        }
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
        let (outcome, failed, error) = match invocation {
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
            Invocation::FunctionError(why) | Invocation::RuntimeError { why, .. } => {
                (Outcome::Error, None, Some(why))
            }
            // A mapping waits for an environment; should it ever be throttled, nothing ran.
            Invocation::Throttled => (
                Outcome::Error,
                None,
                Some("throttled: every execution environment was busy".to_owned()),
            ),
            Invocation::TimedOut => (
                Outcome::Timeout,
                None,
                Some("function timed out".to_owned()),
            ),
        };
        self.metrics
            .invocation_finished(&m.name, &m.function_name, outcome, started.elapsed());
        if failed.is_none() {
            self.metrics
                .mapping_event(&m.name, MappingEvent::FailedInvoke, n);
        }
        Some(Verdict {
            outcome,
            error,
            failed,
        })
    }

    /// Settles `batch` by `verdict`: deletes what succeeded (waiting for the commit), leaves the
    /// rest in flight. Nothing is deleted after a failed invocation.
    pub(super) async fn settle(&self, batch: &Batch, verdict: Verdict) -> Settled {
        let mut settled = Settled {
            outcome: verdict.outcome,
            error: verdict.error,
            deleted: Vec::new(),
            kept: Vec::new(),
            failed_groups: BTreeSet::new(),
        };
        let failed = match verdict.failed {
            Some(failed) => failed,
            None => {
                // Delete nothing: the batch returns after its visibility timeout.
                for msg in batch.messages() {
                    settled.failed_groups.extend(msg.group_id.clone());
                    settled.kept.push(msg.message_id.clone());
                }
                self.back_off(batch.messages().iter()).await;
                return settled;
            }
        };
        let (done, left): (Vec<_>, Vec<_>) = batch
            .messages()
            .iter()
            .partition(|msg| !failed.contains(&msg.message_id));
        for msg in &left {
            settled.failed_groups.extend(msg.group_id.clone());
            settled.kept.push(msg.message_id.clone());
        }
        self.back_off(left.into_iter()).await;
        let handles: Vec<String> = done.iter().map(|msg| msg.receipt_handle.clone()).collect();
        let deleted = self.delete(&handles).await;
        for (msg, ok) in done.into_iter().zip(deleted) {
            if ok {
                settled.deleted.push(msg.message_id.clone());
            } else {
                settled.failed_groups.extend(msg.group_id.clone());
                settled.kept.push(msg.message_id.clone());
            }
        }
        settled
    }

    /// With `retry_backoff`, makes the failed `msgs` visible again after their back-off delay
    /// (by receive count) instead of the rest of the queue's visibility timeout. A message whose
    /// change is refused (its handle is stale, or the delay would pass SQS's 12 hours from its
    /// receive) keeps the visibility timeout it has.
    async fn back_off(&self, msgs: impl Iterator<Item = &Message>) {
        let m = &self.mapping;
        let Some(backoff) = m.config.retry_backoff else {
            return;
        };
        let entries: Vec<(String, std::time::Duration)> = msgs
            .map(|msg| {
                let delay = backoff.delay(msg.receive_count, rand::random::<f64>());
                (msg.receipt_handle.clone(), delay)
            })
            .collect();
        if entries.is_empty() {
            return;
        }
        match self.source.change_visibility(&entries).await {
            Ok(results) => {
                for r in results {
                    if let Err(e) = r {
                        tracing::warn!(mapping = %m.name, error = %chain(&e), "could not delay a failed message by its back-off; it returns after its visibility timeout");
                    }
                }
            }
            Err(e) => {
                tracing::warn!(mapping = %m.name, error = %chain(&e), "could not delay failed messages by their back-off; they return after their visibility timeout");
            }
        }
    }

    /// Deletes `msgs`, which no filter matched, without invoking them, and counts them as
    /// `filtered_out`. One whose delete does not go through returns after its visibility
    /// timeout and is filtered again. Returns their message ids.
    pub(super) async fn delete_filtered(&self, msgs: Vec<Message>) -> Vec<String> {
        let m = &self.mapping;
        self.metrics
            .mapping_event(&m.name, MappingEvent::FilteredOut, msgs.len() as u64);
        let handles: Vec<String> = msgs.iter().map(|x| x.receipt_handle.clone()).collect();
        match self.source.delete(&handles, true).await {
            Ok(results) => {
                for r in results {
                    if let Err(e) = r {
                        tracing::warn!(mapping = %m.name, error = %chain(&e), "could not delete a filtered-out message; it returns after its visibility timeout");
                    }
                }
            }
            Err(e) => {
                tracing::warn!(mapping = %m.name, error = %chain(&e), "could not delete filtered-out messages; they return after their visibility timeout");
            }
        }
        msgs.into_iter().map(|x| x.message_id).collect()
    }

    /// Deletes by receipt handle; says for each handle whether it was deleted.
    async fn delete(&self, handles: &[String]) -> Vec<bool> {
        if handles.is_empty() {
            return Vec::new();
        }
        let m = &self.mapping;
        match self.source.delete(handles, false).await {
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
