//! Filling batches for a whole mapping (docs/semantics.md §2): one collector per mapping claims
//! from the store, fills one batch at a time under `batch_size`, `batching_window` and
//! `max_payload`, and carries what did not fit (still in flight under its receipt handle) into
//! the next batch.
//!
//! A claim takes what every free invocation slot can take and a few rounds ahead, so under a
//! backlog one claim feeds many batches; with little traffic it takes what there is. With a
//! window, messages that arrive within it go into one batch whatever `max_concurrency` is.
//!
//! On a FIFO queue the store never hands out a group with a message in flight; the collector adds
//! the one rule the store cannot see: a carried message of a group that is still being invoked or
//! settled waits ([`Groups`]), and one of a group whose invocation failed is dropped from the
//! carry (left in flight, it returns behind the failed ones, in order).

use std::collections::{BTreeSet, HashSet, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::{Batch, PollError, Poller};
use crate::domain::error::chain;
use crate::domain::event::encode_record;
use crate::domain::message::Message;
use crate::domain::Timestamp;
use crate::metrics::MappingEvent;

/// Longest single long poll (SQS's limit; Lambda polls with it).
const LONG_POLL: Duration = Duration::from_secs(20);

/// Most messages one claim takes.
const MAX_CLAIM: usize = 10_000;

/// A carried message claimed longer ago than this has its visibility extended before it is
/// invoked, so that it does not reappear while its batch runs.
const EXTEND_AFTER: Duration = Duration::from_secs(1);

/// A message received but not yet in a batch.
#[derive(Debug)]
struct Carried {
    msg: Message,
    record: String,
    claimed_at: Timestamp,
}

/// The FIFO groups of a mapping that are being invoked or settled, and those whose invocation
/// failed since the collector last looked; shared between the collector and the invocations.
#[derive(Debug, Default)]
pub(super) struct Groups {
    state: Mutex<GroupState>,
    /// Woken when an invocation has settled (its deletes committed).
    settled: Notify,
}

#[derive(Debug, Default)]
struct GroupState {
    busy: HashSet<String>,
    failed: HashSet<String>,
}

impl Groups {
    fn state(&self) -> std::sync::MutexGuard<'_, GroupState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `batch`'s groups are being invoked.
    pub(super) fn invoking(&self, batch: &Batch) {
        let mut s = self.state();
        for msg in batch.messages() {
            if let Some(g) = &msg.group_id {
                s.busy.insert(g.clone());
            }
        }
    }

    /// `batch` has settled; `failed` are its groups with a record left in flight.
    pub(super) fn settled(&self, batch: &Batch, failed: &BTreeSet<String>) {
        {
            let mut s = self.state();
            for msg in batch.messages() {
                if let Some(g) = &msg.group_id {
                    s.busy.remove(g);
                }
            }
            s.failed.extend(failed.iter().cloned());
        }
        self.settled.notify_one();
    }
}

/// A mapping's collector: the carry between batches and the shared group state.
#[derive(Debug, Default)]
pub(super) struct Collector {
    carry: VecDeque<Carried>,
    groups: Arc<Groups>,
    /// Carried messages too large for any batch, left to their visibility timeout by the last
    /// fill (for [`Poller::poll_once`]'s report).
    pub oversized: Vec<String>,
    /// Messages no filter matched, deleted without an invocation by the last fill that did not
    /// wait (for [`Poller::poll_once`]'s report; a background fill keeps no list).
    pub filtered: Vec<String>,
}

/// How a fill waits: a background collector waits for messages and for its window; a step of
/// [`Poller::poll_once`] takes only what is receivable now.
#[derive(Debug, Clone, Copy)]
pub(super) struct Waiting {
    /// Whether to long-poll and wait out the batching window.
    pub waits: bool,
    /// Invocation slots free besides the one this batch will take (a window-0 claim takes what
    /// they can take too).
    pub spare_slots: usize,
    /// Batches to claim ahead for slots that are busy now: they wait in the carry, so that a
    /// slot that frees up finds its next batch without waiting for a commit.
    pub ahead: usize,
}

impl Collector {
    /// A collector sharing `groups` with the mapping's invocations.
    pub(super) fn new(groups: Arc<Groups>) -> Self {
        Collector {
            groups,
            ..Collector::default()
        }
    }

    /// The group state shared with the invocations.
    pub(super) fn groups(&self) -> &Arc<Groups> {
        &self.groups
    }

    /// How many messages are carried (claimed, not yet in a batch).
    pub(super) fn carried_len(&self) -> usize {
        self.carry.len()
    }

    /// Message ids carried into the next batch, in order.
    pub(super) fn carried(&self) -> Vec<String> {
        self.carry
            .iter()
            .map(|c| c.msg.message_id.clone())
            .collect()
    }

    /// Fills one batch. `Ok(None)`: nothing to invoke (cancelled, or a window closed empty).
    ///
    /// # Cancel safety
    /// Not cancel safe: cancel through `cancel`, which gives what the batch collected back to
    /// the carry.
    pub(super) async fn fill(
        &mut self,
        poller: &Poller,
        how: Waiting,
        cancel: &CancellationToken,
    ) -> Result<Option<Batch>, PollError> {
        let m = poller.mapping.clone();
        let clock = poller.store.clock().clone();
        let max_records = m.config.batch_size as usize;
        let max_payload = usize::try_from(m.config.max_payload).unwrap_or(usize::MAX);
        let (visibility, _) = poller.visibility().await?;
        let window = if how.waits {
            m.config.batching_window
        } else {
            Duration::ZERO
        };
        let mut batch = Batch::default();
        // The window starts when the collector starts this batch: when a slot was free.
        let deadline = clock.now().plus(window);
        let groups = self.groups.clone();
        let mut polled = false;
        // The last receive came back full and some of it was filtered out: what it took does
        // not fill the batch, so receive again at once, even where a batch would go now.
        let mut refill = false;
        loop {
            // Registered before the carry is looked at, so a settle in between is not missed.
            let settled = groups.settled.notified();
            tokio::pin!(settled);
            settled.as_mut().enable();
            // Everything received goes through the carry, which keeps order and FIFO groups.
            if self
                .take_carried(poller, &mut batch, max_records, max_payload)
                .await?
            {
                break;
            }
            let again = std::mem::take(&mut refill);
            if !again && ((window.is_zero() && !batch.is_empty()) || (!how.waits && polled)) {
                break;
            }
            let now = clock.now();
            let wait = if !how.waits || again {
                Duration::ZERO
            } else if window.is_zero() {
                LONG_POLL
            } else if now >= deadline {
                break;
            } else {
                deadline.since(now).min(LONG_POLL)
            };
            let room = max_records - batch.len();
            // Beyond this batch, what the free slots and the batches ahead can take: under a
            // backlog one claim feeds many batches; with little traffic it takes what there is.
            let want = (room + (how.spare_slots + how.ahead) * max_records).min(MAX_CLAIM) as u32;
            // What is left in the carry waits for its group to settle.
            let blocked = !self.carry.is_empty();
            let received = tokio::select! {
                biased;
                _ = cancel.cancelled() => {
                    self.give_back(batch);
                    return Ok(None);
                }
                _ = &mut settled, if blocked => continue,
                r = poller.source.receive(want, visibility, wait) => r?,
            };
            polled = true;
            poller
                .metrics
                .mapping_event(&m.name, MappingEvent::Polled, received.len() as u64);
            let claimed_at = clock.now();
            let received_len = received.len();
            let mut filtered = Vec::new();
            for mut msg in received {
                let record = encode_record(&msg, &m.queue_arn, &m.region);
                if !m.config.queue.is_fifo() {
                    // A standard (fair) queue's message group is an attribute of the record,
                    // not an ordering: the mapping does not hold such messages back by group.
                    msg.group_id = None;
                }
                // Filtered out on arrival: it never joins a batch, so it counts toward neither
                // batch_size nor max_payload, and a poll of nothing else invokes nothing.
                if !m.config.filters.keeps(&msg.body, &record) {
                    filtered.push(msg);
                    continue;
                }
                self.carry.push_back(Carried {
                    msg,
                    record,
                    claimed_at,
                });
            }
            if !filtered.is_empty() {
                refill = received_len == want as usize;
                let ids = poller.delete_filtered(filtered).await;
                if !how.waits {
                    self.filtered.extend(ids);
                }
            }
        }
        Ok((!batch.is_empty()).then_some(batch))
    }

    /// Moves carried messages into `batch`, in order, while they fit. A message of a group being
    /// invoked waits (and so do the later ones of its group); one of a group whose invocation
    /// failed is dropped (left in flight, it returns behind the failed ones). Returns whether the
    /// batch is full.
    ///
    /// Only the front of the carry that the batch takes is moved: under a backlog the carry holds
    /// many batches, and walking all of it for each batch made the collector's cost per message
    /// grow with `max_concurrency`.
    async fn take_carried(
        &mut self,
        poller: &Poller,
        batch: &mut Batch,
        max_records: usize,
        max_payload: usize,
    ) -> Result<bool, PollError> {
        // A failure concerns only what was carried when it settled: taken even when nothing is,
        // or a group's next receive (its failed message coming back) would be dropped for it.
        // Both read under one lock: a settle moves a group from busy to failed.
        let (busy, failed) = {
            let mut s = self.groups.state();
            let failed = std::mem::take(&mut s.failed);
            if self.carry.is_empty() {
                return Ok(false);
            }
            (s.busy.clone(), failed)
        };
        if !failed.is_empty() {
            self.carry.retain(|c| !in_groups(c, &failed));
        }
        self.extend_stale(poller, &busy).await?;

        let m = &poller.mapping;
        let mut passed: Vec<Carried> = Vec::new();
        let mut blocked: HashSet<String> = HashSet::new();
        let mut oversized_groups: HashSet<String> = HashSet::new();
        let mut full = false;
        while !full {
            let Some(c) = self.carry.pop_front() else {
                break;
            };
            if let Some(g) = c.msg.group_id.as_deref() {
                if busy.contains(g) || blocked.contains(g) {
                    blocked.insert(g.to_owned());
                    passed.push(c);
                    continue;
                }
            }
            let claimed_at = c.claimed_at;
            let alone = batch.is_empty();
            let Some((msg, record)) = batch.try_push(c.msg, c.record, max_records, max_payload)
            else {
                continue;
            };
            if alone {
                // Too large even alone: never invoked; it returns after its visibility timeout
                // (and, with a redrive policy, ends in the dead-letter queue) rather than being
                // sent over the cap. Its group's later records follow it.
                tracing::error!(
                    mapping = %m.name, message_id = %msg.message_id, record_bytes = record.len(), max_payload = m.config.max_payload,
                    "a record alone exceeds max_payload; it is not invoked and returns after its visibility timeout"
                );
                oversized_groups.extend(msg.group_id.clone());
                self.oversized.push(msg.message_id);
                continue;
            }
            // It and everything after it wait for the next batch, in order.
            full = true;
            passed.push(Carried {
                msg,
                record,
                claimed_at,
            });
        }
        for c in passed.into_iter().rev() {
            self.carry.push_front(c);
        }
        if !oversized_groups.is_empty() {
            // Behind a record that can never be invoked: left in flight, in order.
            self.carry.retain(|c| !in_groups(c, &oversized_groups));
        }
        Ok(full || batch.len() >= max_records)
    }

    /// Gives carried messages held longer than [`EXTEND_AFTER`] a fresh visibility timeout, so
    /// that none reappears while it waits or while its batch runs; one whose handle no longer
    /// extends is not ours any more (its timeout ran out and another receive took it) and is
    /// dropped, with the rest of its group. Each message is extended at most once a period.
    async fn extend_stale(
        &mut self,
        poller: &Poller,
        busy: &HashSet<String>,
    ) -> Result<(), PollError> {
        let now = poller.store.clock().now();
        if self
            .carry
            .iter()
            .all(|c| now.since(c.claimed_at) <= EXTEND_AFTER)
        {
            return Ok(());
        }
        // Messages that wait behind a group being invoked are extended once they can go.
        let mut blocked: HashSet<&str> = HashSet::new();
        let stale: Vec<usize> = (0..self.carry.len())
            .filter(|&i| {
                let c = &self.carry[i];
                if let Some(g) = c.msg.group_id.as_deref() {
                    if busy.contains(g) || blocked.contains(g) {
                        blocked.insert(g);
                        return false;
                    }
                }
                now.since(c.claimed_at) > EXTEND_AFTER
            })
            .collect();
        if stale.is_empty() {
            return Ok(());
        }
        let m = &poller.mapping;
        let (claim, queue_vt) = poller.visibility().await?;
        let vt = claim.unwrap_or(queue_vt);
        let entries: Vec<(String, Duration)> = stale
            .iter()
            .map(|&i| (self.carry[i].msg.receipt_handle.clone(), vt))
            .collect();
        let extended = poller.source.change_visibility(&entries).await?;
        let mut lost: HashSet<String> = HashSet::new();
        let mut lost_ids: HashSet<String> = HashSet::new();
        for (&i, r) in stale.iter().zip(&extended) {
            let c = &mut self.carry[i];
            match r {
                Ok(()) => c.claimed_at = now,
                Err(e) => {
                    tracing::debug!(mapping = %m.name, message_id = %c.msg.message_id, error = %chain(e), "a carried message is no longer held; not invoked");
                    lost_ids.insert(c.msg.message_id.clone());
                    lost.extend(c.msg.group_id.clone());
                }
            }
        }
        if !lost_ids.is_empty() {
            self.carry
                .retain(|c| !lost_ids.contains(&c.msg.message_id) && !in_groups(c, &lost));
        }
        Ok(())
    }

    /// Puts a batch that will not be invoked back in front of the carry. Its messages count as
    /// claimed long ago, so they are extended before they are invoked.
    fn give_back(&mut self, mut batch: Batch) {
        for (msg, record) in batch.take_all().into_iter().rev() {
            self.carry.push_front(Carried {
                msg,
                record,
                claimed_at: Timestamp::default(),
            });
        }
    }

    /// Gives every carried message back to the queue at once (visibility 0): on shutdown, and
    /// when the mapping stops.
    pub(super) async fn release(&mut self, poller: &Poller) {
        if self.carry.is_empty() {
            return;
        }
        let m = &poller.mapping;
        let entries: Vec<_> = self
            .carry
            .drain(..)
            .map(|c| (c.msg.receipt_handle, Duration::ZERO))
            .collect();
        if let Err(e) = poller.source.change_visibility(&entries).await {
            tracing::warn!(mapping = %m.name, error = %chain(&e), "could not release carried messages; they return after their visibility timeout");
        }
    }
}

/// Whether `c` belongs to one of `groups`.
fn in_groups(c: &Carried, groups: &HashSet<String>) -> bool {
    c.msg.group_id.as_ref().is_some_and(|g| groups.contains(g))
}
