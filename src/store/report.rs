//! What the store reports to its owner: [`StoreEvent`]s (messages sent, received, deleted,
//! dead-lettered; a queue created or deleted; a refused write) delivered to the [`Observer`] given at
//! open. The store imports no metrics: the daemon's observer records them. [`Effects`] is a
//! group's tally of events and wake-ups, applied only once its transaction has committed.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use super::error::DbFault;
use super::tally::Tally;
use super::wake::Wakers;
use crate::domain::queue::QueueName;

/// Something that happened in the store, for the owner's metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreEvent<'a> {
    /// `n` messages were stored in `queue` (deduplicated sends are not).
    Sent { queue: &'a str, n: u64 },
    /// `n` messages of `queue` were handed to receivers.
    Received { queue: &'a str, n: u64 },
    /// `n` messages of `queue` were deleted by receipt handle.
    Deleted { queue: &'a str, n: u64 },
    /// `n` messages of `queue` were moved to its dead-letter queue.
    DeadLettered { queue: &'a str, n: u64 },
    /// `queue` exists (created now, or its settings set from the configuration): its series
    /// should appear, the counters at 0.
    QueueCreated { queue: &'a str },
    /// `queue` was deleted.
    QueueDeleted { queue: &'a str },
    /// A database fault refused work (`operations` requests).
    Refused { fault: DbFault, operations: usize },
    /// The writer committed one transaction holding `operations` requests (group commit).
    Committed { operations: usize },
    /// Tombstones: `written` for messages deleted, filtered out, expired or dead-lettered;
    /// `skipped` messages got none because the database was near full; `swept` were past
    /// `storage.tombstone_retention`.
    Tombstones {
        written: u64,
        skipped: u64,
        swept: u64,
    },
}

type Sink = dyn Fn(StoreEvent<'_>) + Send + Sync;

/// Receives every [`StoreEvent`], on the task where it happened: keep it quick (counters).
#[derive(Clone, Default)]
pub struct Observer(Option<Arc<Sink>>);

impl Observer {
    /// An observer calling `f` for every event.
    pub fn new(f: impl Fn(StoreEvent<'_>) + Send + Sync + 'static) -> Self {
        Observer(Some(Arc::new(f)))
    }

    pub(super) fn emit(&self, event: StoreEvent<'_>) {
        if let Some(f) = &self.0 {
            f(event);
        }
    }
}

impl fmt::Debug for Observer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() {
            "Observer(..)"
        } else {
            "Observer(none)"
        })
    }
}

/// Which per-queue count an [`Effects`] entry adds to.
#[derive(Debug, Clone, Copy)]
pub(super) enum Counter {
    Sent,
    Received,
    Deleted,
    DeadLettered,
    /// Messages that arrived from a source queue's redrive (the dead-letter queue's gain; no
    /// event, the source reports `DeadLettered`).
    Arrived,
    /// Messages deleted past retention (no event).
    Expired,
}

/// Side effects of a group, applied only after it commits.
#[derive(Default)]
pub(super) struct Effects {
    /// Messages made receivable, per queue name.
    wake: HashMap<String, u64>,
    counters: Vec<(Counter, QueueName, u64)>,
    /// Tombstones written and skipped (`sql/tombstones.rs`).
    tombstones: (u64, u64),
}

impl Effects {
    /// `n` messages of `queue` may have become receivable.
    pub(super) fn wake(&mut self, queue: &QueueName, n: u64) {
        if n > 0 {
            *self.wake.entry(queue.as_str().to_owned()).or_default() += n;
        }
    }

    pub(super) fn count(&mut self, counter: Counter, queue: &QueueName, n: u64) {
        if n > 0 {
            self.counters.push((counter, queue.clone(), n));
        }
    }

    /// The group's tombstones: `written`, and `skipped` for lack of room.
    pub(super) fn tombstones(&mut self, written: u64, skipped: u64) {
        self.tombstones.0 += written;
        self.tombstones.1 += skipped;
    }

    /// Wakes the waiters, keeps the messages per queue and reports the counts: called once the
    /// group has committed.
    pub(super) fn apply(self, wakers: &Wakers, observer: &Observer, tally: &Tally) {
        for (q, n) in self.wake {
            wakers.messages(&q, n);
        }
        if self.tombstones != (0, 0) {
            observer.emit(StoreEvent::Tombstones {
                written: self.tombstones.0,
                skipped: self.tombstones.1,
                swept: 0,
            });
        }
        for (c, q, n) in self.counters {
            let queue = q.as_str();
            let delta = i64::try_from(n).unwrap_or(i64::MAX);
            observer.emit(match c {
                Counter::Sent => {
                    tally.add(queue, delta);
                    StoreEvent::Sent { queue, n }
                }
                Counter::Received => StoreEvent::Received { queue, n },
                Counter::Deleted => {
                    tally.add(queue, -delta);
                    StoreEvent::Deleted { queue, n }
                }
                Counter::DeadLettered => {
                    tally.add(queue, -delta);
                    StoreEvent::DeadLettered { queue, n }
                }
                Counter::Arrived => {
                    tally.add(queue, delta);
                    continue;
                }
                Counter::Expired => {
                    tally.add(queue, -delta);
                    continue;
                }
            });
        }
    }
}
