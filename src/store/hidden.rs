//! The in-flight and delayed counts of every queue for `/metrics`, at a cost bounded by the
//! number of queues whatever the depth (docs/architecture.md §2, "What a scrape costs").
//!
//! A message is in flight or delayed while `visible_at > now`: that changes with the clock
//! alone, so these counts cannot be kept as writes commit (the total is: `tally.rs`) and are
//! read on the `messages_claim` index. A scrape reads at most [`HiddenCap::cap`] index entries
//! per queue and state (a few milliseconds). A queue that reaches the cap ("big") is shown by a
//! full count kept here: the first scrape that finds the queue big counts it in full; later
//! ones show the kept count and, once it is [`FRESH_MS`] old, start a new full count in a
//! task (on the SQLite store's tracker; a plain task on PostgreSQL), so no later scrape waits.
//! A big queue's two figures are thus at most a few seconds behind, all three of one moment
//! (the total is kept with them; AWS's own `ApproximateNumberOf…` are approximate too);
//! every queue under the cap is counted exactly at each scrape. GetQueueAttributes counts its
//! one queue exactly (`Store::counts`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use futures_util::future::BoxFuture;

use super::error::StoreError;

/// Index entries a scrape reads at most per queue and state (about 2 ms each on SQLite).
pub(crate) const DEFAULT_CAP: u64 = 50_000;

/// Age, in the clock's milliseconds, after which a scrape starts a new full count of a big queue.
pub(super) const FRESH_MS: i64 = 5_000;

/// A big queue's figures from its last full count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Full {
    /// When it was counted (the clock's milliseconds).
    pub at: i64,
    /// The queue's kept total then, so that the figures shown are one moment's.
    pub total: u64,
    pub in_flight: u64,
    pub delayed: u64,
}

/// The kept full counts of the big queues (cheap to clone; shared with the refresh task).
#[derive(Debug, Clone)]
pub(super) struct HiddenCap {
    cap: Arc<AtomicU64>,
    inner: Arc<Mutex<Inner>>,
}

#[derive(Debug, Default)]
struct Inner {
    /// By queue id.
    full: HashMap<i64, Full>,
    /// A refresh task is running.
    refreshing: bool,
}

/// A full count of one big queue (by id), as a backend takes it.
pub(super) type Count =
    Arc<dyn Fn(i64) -> BoxFuture<'static, Result<Full, StoreError>> + Send + Sync>;

/// What a scrape does about its big queues.
#[derive(Debug, Default)]
struct Plan {
    /// Kept figures to show, by queue id.
    kept: HashMap<i64, Full>,
    /// Big queues with no kept figure: counted in full by this scrape.
    count_now: Vec<i64>,
    /// Big queues whose figure is old: counted again in the background (empty when a refresh
    /// is already running).
    refresh: Vec<i64>,
}

impl HiddenCap {
    pub(super) fn new(cap: u64) -> HiddenCap {
        HiddenCap {
            cap: Arc::new(AtomicU64::new(cap.max(1))),
            inner: Arc::default(),
        }
    }

    /// Index entries a scrape reads at most per queue and state.
    pub(super) fn cap(&self) -> u64 {
        self.cap.load(Ordering::Relaxed)
    }

    /// Sets [`HiddenCap::cap`] (tests make it small, to reach it with a few messages).
    pub(super) fn set_cap(&self, cap: u64) {
        self.cap.store(cap.max(1), Ordering::Relaxed);
    }

    /// Whether a capped count reached the cap (the queue is big).
    pub(super) fn reached(&self, in_flight: u64, delayed: u64) -> bool {
        let cap = self.cap();
        in_flight >= cap || delayed >= cap
    }

    fn inner(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The plan for a scrape at `now` that found the queues `big` over the cap. Queues no longer
    /// big lose their kept figure. Claims the refresh when it returns a non-empty `refresh`:
    /// the caller then runs it and calls [`HiddenCap::refreshed`].
    fn plan(&self, big: &[i64], now: i64) -> Plan {
        let mut inner = self.inner();
        inner.full.retain(|id, _| big.contains(id));
        let mut plan = Plan::default();
        for &id in big {
            match inner.full.get(&id) {
                Some(full) => {
                    plan.kept.insert(id, *full);
                    if now.saturating_sub(full.at) >= FRESH_MS {
                        plan.refresh.push(id);
                    }
                }
                None => plan.count_now.push(id),
            }
        }
        if inner.refreshing {
            plan.refresh.clear();
        } else if !plan.refresh.is_empty() {
            inner.refreshing = true;
        }
        plan
    }

    /// Keeps a full count of queue `id`.
    fn keep(&self, id: i64, full: Full) {
        self.inner().full.insert(id, full);
    }

    /// The refresh claimed by [`HiddenCap::plan`] ended (however it ended).
    fn refreshed(&self) {
        self.inner().refreshing = false;
    }

    /// The full counts a scrape at `now` shows for the queues `big` it found over the cap: the
    /// kept ones, those missing counted now with `count`, and, when old, counted again with
    /// `count` in the task handed to `spawn` (the backend's way of running one).
    pub(super) async fn figures(
        &self,
        big: &[i64],
        now: i64,
        count: Count,
        spawn: impl FnOnce(BoxFuture<'static, ()>),
    ) -> Result<HashMap<i64, Full>, StoreError> {
        let mut plan = self.plan(big, now);
        for id in std::mem::take(&mut plan.count_now) {
            let full = count(id).await?;
            self.keep(id, full);
            plan.kept.insert(id, full);
        }
        if !plan.refresh.is_empty() {
            let (kept, ids) = (self.clone(), plan.refresh);
            spawn(Box::pin(async move {
                for id in ids {
                    match count(id).await {
                        Ok(full) => kept.keep(id, full),
                        Err(e) => {
                            tracing::debug!(error = %e, "a big queue's count was not renewed");
                            break;
                        }
                    }
                }
                kept.refreshed();
            }));
        }
        Ok(plan.kept)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full(at: i64, n: u64) -> Full {
        Full {
            at,
            total: n,
            in_flight: 0,
            delayed: n,
        }
    }

    #[test]
    fn a_big_queue_is_counted_now_once_then_refreshed_in_the_background_when_old() {
        let h = HiddenCap::new(10);
        assert!(h.reached(0, 10) && h.reached(10, 0) && !h.reached(9, 9));
        let plan = h.plan(&[7], 1_000);
        assert_eq!(plan.count_now, vec![7]);
        assert!(plan.refresh.is_empty());
        h.keep(7, full(1_000, 500));
        let plan = h.plan(&[7], 1_000 + FRESH_MS - 1);
        assert_eq!(plan.kept[&7], full(1_000, 500));
        assert!(plan.count_now.is_empty() && plan.refresh.is_empty());
        // Old: one scrape claims the refresh, the next one (while it runs) does not.
        let plan = h.plan(&[7], 1_000 + FRESH_MS);
        assert_eq!(plan.refresh, vec![7]);
        assert_eq!(
            plan.kept[&7],
            full(1_000, 500),
            "the old figure is shown meanwhile"
        );
        assert!(h.plan(&[7], 1_000 + FRESH_MS).refresh.is_empty());
        h.keep(7, full(7_000, 600));
        h.refreshed();
        assert_eq!(h.plan(&[7], 7_000).kept[&7], full(7_000, 600));
        // No longer big: forgotten, so a later big spell starts with a count of its own.
        assert!(h.plan(&[], 8_000).kept.is_empty());
        assert_eq!(h.plan(&[7], 8_000).count_now, vec![7]);
    }
}
