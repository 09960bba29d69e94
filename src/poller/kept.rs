//! A mapping's shared invocation slots kept between invocations (PostgreSQL, docs/postgres.md):
//! taking a slot of the database's table is a transaction, and giving it back another, on the
//! collector's path before every invocation. An invocation that ends hands its shared slot to
//! [`Kept`] instead; the collector's next invocation takes it from there without a round trip.
//! A kept slot nobody takes within [`KEEP`] is given back to the database, so an idle instance
//! holds none and other instances can take them; a slot is kept at most [`REUSE`] after it was
//! taken, well inside its lease (which outlasts a window, the function's timeout and a minute).
//! On SQLite the slot is a local one and nothing is kept.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crate::store::MappingSlot;

/// How long a kept slot waits for the next invocation before it is given back.
const KEEP: Duration = Duration::from_millis(250);

/// How long after it was taken a slot may still be reused.
pub(super) const REUSE: Duration = Duration::from_secs(30);

/// A shared slot and when it was taken from the database.
pub(super) struct Shared {
    pub slot: MappingSlot,
    pub taken: Instant,
}

/// The shared slots one mapping's collector keeps between invocations.
#[derive(Default, Clone)]
pub(super) struct Kept {
    slots: Arc<Mutex<Vec<(u64, Shared)>>>,
    next: Arc<std::sync::atomic::AtomicU64>,
}

impl Kept {
    /// A kept slot still fit for an invocation, if there is one.
    pub(super) fn take(&self) -> Option<Shared> {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        while let Some((_, shared)) = slots.pop() {
            if shared.taken.elapsed() < REUSE {
                return Some(shared);
            }
        }
        None
    }

    /// Keeps `shared` for the next invocation, or gives it back at once if it is local or too
    /// old; a kept slot no one takes within [`KEEP`] is given back.
    pub(super) fn put(&self, shared: Shared) {
        if !shared.slot.is_shared() || shared.taken.elapsed() >= REUSE {
            return;
        }
        let id = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.slots
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((id, shared));
        let slots = Arc::downgrade(&self.slots);
        tokio::spawn(async move {
            tokio::time::sleep(KEEP).await;
            let Some(slots) = slots.upgrade() else { return };
            let expired: Vec<_> = {
                let mut slots = slots.lock().unwrap_or_else(|e| e.into_inner());
                let (expired, kept) = std::mem::take(&mut *slots)
                    .into_iter()
                    .partition(|(i, _)| *i == id);
                *slots = kept;
                expired
            };
            drop(expired);
        });
    }

    /// Gives every kept slot back (the collector is stopping).
    pub(super) fn clear(&self) {
        let all = std::mem::take(&mut *self.slots.lock().unwrap_or_else(|e| e.into_inner()));
        drop(all);
    }
}
