//! One poller worker: collect a batch, invoke, settle, repeat (docs/semantics.md §2.3). The same
//! worker also makes [`Poller::poll_once`]'s single step, without waiting.

use std::collections::BTreeSet;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::settle::Settled;
use super::{Batch, PollReport, Poller};
use crate::domain::error::chain;
use crate::domain::event::encode_record;
use crate::domain::message::Message;
use crate::metrics::MappingEvent;
use crate::store::StoreError;

/// Longest single long poll (SQS's limit; Lambda polls with it).
const LONG_POLL: Duration = Duration::from_secs(20);
/// Pause after a store error before polling again.
const ERROR_BACKOFF: Duration = Duration::from_secs(1);

pub(super) struct Worker {
    poller: Poller,
    n: u32,
    /// Fired when the shutdown grace period is over: an invocation still running is dropped
    /// (a command is killed with its children) and its batch is left to its visibility timeout.
    abandon: CancellationToken,
    /// Messages received but not yet invoked because the previous batch was full; they seed the
    /// next batch, still in flight under this worker's receipt handles.
    carry: Vec<(Message, String)>,
    /// Whether collecting waits (long polls, the batching window): a background worker does; a
    /// step of [`Poller::poll_once`] takes only what is receivable now.
    waits: bool,
    /// Carried messages too large for any batch, left to their visibility timeout by the last
    /// collect (for a step's report).
    oversized: Vec<String>,
}

impl Worker {
    pub(super) fn new(poller: Poller, n: u32, abandon: CancellationToken) -> Self {
        Worker {
            poller,
            n,
            abandon,
            carry: Vec::new(),
            waits: true,
            oversized: Vec::new(),
        }
    }

    /// A worker for one step of [`Poller::poll_once`], seeded with what the previous step
    /// carried; [`Worker::into_carry`] hands what it carries on to the next step.
    pub(super) fn stepping(poller: Poller, carry: Vec<(Message, String)>) -> Self {
        Worker {
            carry,
            waits: false,
            ..Worker::new(poller, 0, CancellationToken::new())
        }
    }

    /// What this worker carries: received, not yet invoked, still in flight under its handles.
    pub(super) fn into_carry(self) -> Vec<(Message, String)> {
        self.carry
    }

    /// One step: collects what is receivable now (no long poll, no batching window), invokes and
    /// settles it, and reports.
    pub(super) async fn step(&mut self) -> Result<PollReport, StoreError> {
        let batch = self.collect(&CancellationToken::new()).await?;
        let mut report = PollReport {
            kept: std::mem::take(&mut self.oversized),
            ..PollReport::default()
        };
        if let Some(batch) = batch {
            report.invoked = batch
                .messages()
                .iter()
                .map(|msg| msg.message_id.clone())
                .collect();
            match self.invoke_and_settle(batch).await {
                Some(settled) => {
                    report.outcome = Some(settled.outcome);
                    report.error = settled.error;
                    report.deleted = settled.deleted;
                    report.kept.extend(settled.kept);
                }
                None => report.kept.extend(report.invoked.iter().cloned()),
            }
        }
        report.carried = self
            .carry
            .iter()
            .map(|(msg, _)| msg.message_id.clone())
            .collect();
        Ok(report)
    }

    pub(super) async fn run(mut self, cancel: CancellationToken) {
        let m = &self.poller.mapping;
        tracing::debug!(mapping = %m.name, worker = self.n, "poller worker started");
        while !cancel.is_cancelled() {
            let collected = self.collect(&cancel).await;
            self.oversized.clear();
            match collected {
                Ok(Some(batch)) => {
                    self.invoke_and_settle(batch).await;
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(mapping = %self.poller.mapping.name, error = %chain(&e), "poll failed, retrying");
                    tokio::select! {
                        _ = cancel.cancelled() => {}
                        _ = tokio::time::sleep(ERROR_BACKOFF) => {}
                    }
                }
            }
        }
        self.release_carry().await;
        tracing::debug!(mapping = %self.poller.mapping.name, worker = self.n, "poller worker stopped");
    }

    /// Messages carried but never invoked go back to the queue at once on shutdown.
    async fn release_carry(&mut self) {
        if self.carry.is_empty() {
            return;
        }
        let m = &self.poller.mapping;
        let entries: Vec<_> = self
            .carry
            .drain(..)
            .map(|(msg, _)| (msg.receipt_handle, Duration::ZERO))
            .collect();
        if let Err(e) = self
            .poller
            .store
            .change_visibility(&m.config.queue, &entries)
            .await
        {
            tracing::warn!(mapping = %m.name, error = %chain(&e), "could not release carried messages; they return after their visibility timeout");
        }
    }

    /// Collects one batch. `Ok(None)`: nothing to invoke (cancelled, or a window closed empty).
    async fn collect(&mut self, cancel: &CancellationToken) -> Result<Option<Batch>, StoreError> {
        let m = self.poller.mapping.clone();
        let store = &self.poller.store;
        let max_records = m.config.batch_size as usize;
        let max_payload = usize::try_from(m.config.max_payload).unwrap_or(usize::MAX);
        let visibility = m.claim_visibility();
        let (window, long_poll) = if self.waits {
            (m.config.batching_window, LONG_POLL)
        } else {
            (Duration::ZERO, Duration::ZERO)
        };
        let mut batch = Batch::default();
        let mut full = false;

        // Seed with what the previous batch could not take, extending its visibility so it does
        // not reappear while this batch fills and runs. A carried message whose handle no longer
        // extends is not this worker's any more (its visibility ran out and another receive took
        // it, or it is gone): it is dropped, never invoked; on a FIFO queue, so are the carried
        // messages behind it in its group. The rest go in in order: once one does not fit, all
        // that follow wait too, so a smaller record never overtakes a larger one of its group.
        if !self.carry.is_empty() {
            let vt = visibility.unwrap_or(m.queue_visibility_timeout);
            let entries: Vec<_> = self
                .carry
                .iter()
                .map(|(msg, _)| (msg.receipt_handle.clone(), vt))
                .collect();
            let extended = store.change_visibility(&m.config.queue, &entries).await?;
            let mut lost_groups = BTreeSet::new();
            for ((msg, record), extended) in
                std::mem::take(&mut self.carry).into_iter().zip(extended)
            {
                if extended.is_err()
                    || msg
                        .group_id
                        .as_ref()
                        .is_some_and(|g| lost_groups.contains(g))
                {
                    tracing::debug!(mapping = %m.name, message_id = %msg.message_id, "a carried message is no longer held; not invoked");
                    lost_groups.extend(msg.group_id);
                    continue;
                }
                if full {
                    self.carry.push((msg, record));
                } else if let Some(back) = batch.try_push(msg, record, max_records, max_payload) {
                    self.carry.push(back);
                    full = true;
                }
            }
            if window.is_zero() || full {
                return Ok(self.finish(batch));
            }
        }

        // The window starts now, when the previous invocation finished (docs/semantics.md §2.1).
        let deadline = Instant::now() + window;
        loop {
            let wait = if window.is_zero() {
                long_poll
            } else {
                deadline
                    .saturating_duration_since(Instant::now())
                    .min(LONG_POLL)
            };
            let want = (max_records - batch.len()) as u32;
            let received = tokio::select! {
                biased;
                _ = cancel.cancelled() => {
                    // Give back what this window collected: it was never invoked.
                    let pending: Vec<_> = batch.take_messages().into_iter().map(|msg| (self.record(&msg), msg)).collect();
                    self.carry.extend(pending.into_iter().map(|(r, msg)| (msg, r)));
                    return Ok(None);
                }
                r = store.receive_wait(&m.config.queue, want, visibility, wait) => r?,
            };
            self.poller
                .metrics
                .mapping_event(&m.name, MappingEvent::Polled, received.len() as u64);
            for msg in received {
                let record = self.record(&msg);
                if full {
                    self.carry.push((msg, record));
                } else if let Some(back) = batch.try_push(msg, record, max_records, max_payload) {
                    self.carry.push(back);
                    full = true;
                }
            }
            let window_over = window.is_zero() || Instant::now() >= deadline;
            if full || batch.len() >= max_records || window_over {
                break;
            }
        }
        Ok(self.finish(batch))
    }

    fn record(&self, msg: &Message) -> String {
        let m = &self.poller.mapping;
        encode_record(msg, &m.queue_arn, &m.region)
    }

    /// Returns the batch to invoke, or `None` if it is empty. A carried record too large for
    /// any batch on its own is left in flight (it returns after its visibility timeout and, with
    /// a redrive policy, ends in the dead-letter queue) rather than sent over the cap.
    fn finish(&mut self, batch: Batch) -> Option<Batch> {
        if batch.is_empty() && !self.carry.is_empty() {
            let m = &self.poller.mapping;
            let (msg, record) = self.carry.remove(0);
            tracing::error!(
                mapping = %m.name, message_id = %msg.message_id, record_bytes = record.len(), max_payload = m.config.max_payload,
                "a record alone exceeds max_payload; it is not invoked and returns after its visibility timeout"
            );
            self.oversized.push(msg.message_id);
        }
        (!batch.is_empty()).then_some(batch)
    }

    /// Invokes and settles `batch`; `None` if the shutdown grace period ran out first.
    async fn invoke_and_settle(&mut self, batch: Batch) -> Option<Settled> {
        let settled = self.poller.invoke_and_settle(&batch, &self.abandon).await?;
        // FIFO: carried messages of a group that failed must wait for the failed ones to be
        // retried first; leave them in flight so they come back behind them, in order.
        let failed_groups = &settled.failed_groups;
        if self.poller.mapping.config.queue.is_fifo() && !failed_groups.is_empty() {
            self.carry.retain(|(msg, _)| {
                msg.group_id
                    .as_ref()
                    .is_none_or(|g| !failed_groups.contains(g))
            });
        }
        Some(settled)
    }
}
