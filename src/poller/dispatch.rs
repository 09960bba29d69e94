//! A mapping's background life: one collector fills batches ([`Collector`]) and hands each to
//! an invocation of its own, at most `max_concurrency` at once (a semaphore of slots). An
//! invocation gives its slot back as soon as the function has answered, then hands its deletes
//! to the store's writer, where they share a commit with the deletes of other invocations; the
//! collector is never held up by a settle. On PostgreSQL a slot is also a row shared by every
//! instance; an invocation that ends keeps that row for the next one a moment (`kept.rs`).
//! Concurrency follows the backlog: with nothing to do the mapping is one long poll and no
//! invocation; under load every slot is busy.
//!
//! Cancellation (the mapping stopping, or shutdown) stops the collector only while it waits;
//! invocations already started finish and settle unless `abandon` fires (the end of the
//! shutdown grace period). What was collected but not invoked goes back to the queue at once.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::collect::{Collector, Groups, Waiting};
use super::kept::{Kept, Shared, REUSE};
use super::{Batch, Poller};
use crate::domain::error::chain;

/// Pause after the first failed poll (the store, or a remote queue) before polling again; it
/// doubles with each failure in a row up to [`MAX_ERROR_BACKOFF`], and starts over after a poll
/// that works.
const ERROR_BACKOFF: Duration = Duration::from_secs(1);
/// Longest pause between failed polls.
const MAX_ERROR_BACKOFF: Duration = Duration::from_secs(10);
/// How much longer than a window and the function's timeout a shared slot's lease lasts.
const SLOT_LEASE_MARGIN: Duration = Duration::from_secs(60);

/// An invocation slot: this process's, and the store's (shared by instances on PostgreSQL);
/// when it is dropped the first is given back and the second kept for the next invocation.
struct Slot {
    _local: OwnedSemaphorePermit,
    shared: Option<Shared>,
    kept: Kept,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(shared) = self.shared.take() {
            self.kept.put(shared);
        }
    }
}

impl Poller {
    /// The collector's loop: wait for a free slot, fill a batch, start its invocation on
    /// `tracker`; until `cancel`.
    pub(super) async fn dispatch(
        self,
        tracker: TaskTracker,
        cancel: CancellationToken,
        abandon: CancellationToken,
    ) {
        let m = self.mapping.clone();
        tracing::debug!(mapping = %m.name, "collector started");
        let slots = Arc::new(Semaphore::new(m.config.max_concurrency as usize));
        let mut collector = Collector::new(Arc::new(Groups::default()));
        let mut backoff = ERROR_BACKOFF;
        let kept = Kept::default();
        loop {
            let local = tokio::select! {
                biased;
                _ = cancel.cancelled() => break,
                permit = slots.clone().acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_) => break,
                },
            };
            // On a database shared by several instances, a slot of the mapping's there too, so
            // that max_concurrency bounds the mapping on all of them together.
            let shared = match kept.take() {
                Some(shared) => Ok(Some(shared)),
                None => self.shared_slot(&cancel).await,
            };
            let shared = match shared {
                Ok(Some(shared)) => shared,
                Ok(None) => break,
                Err(e) => {
                    drop(local);
                    tracing::warn!(mapping = %m.name, error = %chain(&e), retry_in = ?backoff, "could not take an invocation slot, retrying");
                    tokio::select! {
                        _ = cancel.cancelled() => {}
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(MAX_ERROR_BACKOFF);
                    continue;
                }
            };
            let permit = Slot {
                _local: local,
                shared: Some(shared),
                kept: kept.clone(),
            };
            let how = Waiting {
                waits: true,
                spare_slots: slots.available_permits(),
                ahead: 4 * m.config.max_concurrency as usize,
            };
            let filled = collector.fill(&self, how, &cancel).await;
            self.metrics
                .mapping_claimed(&m.name, collector.carried_len());
            if filled.is_ok() {
                backoff = ERROR_BACKOFF;
            }
            match filled {
                Ok(Some(batch)) => {
                    collector.groups().invoking(&batch);
                    let invocation = self.clone().invocation(
                        batch,
                        permit,
                        collector.groups().clone(),
                        abandon.clone(),
                    );
                    tracker.spawn(invocation);
                }
                Ok(None) => {}
                Err(e) => {
                    drop(permit);
                    tracing::warn!(mapping = %m.name, error = %chain(&e), retry_in = ?backoff, "poll failed, retrying");
                    tokio::select! {
                        _ = cancel.cancelled() => {}
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(MAX_ERROR_BACKOFF);
                }
            }
        }
        kept.clear();
        collector.release(&self).await;
        self.metrics.mapping_claimed(&m.name, 0);
        tracing::debug!(mapping = %m.name, "collector stopped");
    }

    /// The mapping's slot on the store (at once on SQLite; shared by every instance on
    /// PostgreSQL); `None` once `cancel` fires.
    async fn shared_slot(
        &self,
        cancel: &CancellationToken,
    ) -> Result<Option<Shared>, crate::store::StoreError> {
        let m = &self.mapping;
        // Longer than anything an invocation holds it for: its window, the function's timeout,
        // and the settle after it, from any time it may be reused (`kept.rs`).
        let ttl = m.config.batching_window + m.function.timeout + SLOT_LEASE_MARGIN + REUSE;
        let taken = Instant::now();
        let slot = self
            .store
            .mapping_slot(&m.name, m.config.max_concurrency, ttl, cancel)
            .await?;
        Ok(slot.map(|slot| Shared { slot, taken }))
    }

    /// One invocation: runs the function, frees its slot, then settles.
    async fn invocation(
        self,
        batch: Batch,
        slot: Slot,
        groups: Arc<Groups>,
        abandon: CancellationToken,
    ) {
        let verdict = self.invoke(&batch, &abandon).await;
        drop(slot);
        // Abandoned at shutdown (`None`), its messages stay in flight; nothing collects any more.
        if let Some(verdict) = verdict {
            let settled = self.settle(&batch, verdict).await;
            groups.settled(&batch, &settled.failed_groups);
        }
    }
}
