//! In-process wake-ups: a counter per queue, bumped by every write that can make a message
//! receivable, awaited by long polls and pollers. A hint only: waiters always re-check the
//! database, and time-based visibility is waited for with a timer.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

/// One watch channel per queue id.
#[derive(Debug, Default, Clone)]
pub struct Wakers {
    inner: Arc<Mutex<HashMap<i64, watch::Sender<u64>>>>,
}

impl Wakers {
    fn sender(&self, queue_id: i64) -> watch::Sender<u64> {
        let mut map = self.inner.lock().expect("wakers lock is never poisoned");
        map.entry(queue_id)
            .or_insert_with(|| watch::channel(0).0)
            .clone()
    }

    /// The current counter.
    pub fn token(&self, queue_id: i64) -> u64 {
        *self.sender(queue_id).borrow()
    }

    /// Wakes every waiter of `queue_id`.
    pub fn notify(&self, queue_id: i64) {
        self.sender(queue_id)
            .send_modify(|v| *v = v.wrapping_add(1));
    }

    /// Resolves when the counter differs from `since`, or after `timeout`.
    pub async fn wait(&self, queue_id: i64, since: u64, timeout: Duration) {
        let mut rx = self.sender(queue_id).subscribe();
        let _ = tokio::time::timeout(timeout, rx.wait_for(|&v| v != since)).await;
    }
}
