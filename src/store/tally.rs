//! How many messages each queue holds, kept in memory as the writes commit, so that counting a
//! queue (`/metrics`, `GET /queues`, GetQueueAttributes) does not read every row of it.
//!
//! Only the total per queue is kept: it changes only by writes (a send, a delete, a move to the
//! dead-letter queue, an expiry, a purge), each of which adds its delta here once its
//! transaction has committed (a group's [`Effects`](super::report::Effects), or the queue
//! change itself). Deltas commute, so the order in which commits report them does not matter.
//! The states (visible, in flight, delayed) change with the clock alone, without a write, so they
//! are not kept: the messages in flight or delayed are the ones with `visible_at > now`, counted
//! on the `messages_claim` index, and visible is the total less those (see
//! `sql::retention::counts`). The tally starts from one full count when the store opens.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use sqlx::SqlitePool;

use super::rows::QUEUE_KEY;

/// Messages per queue key ([`QueueName::as_str`](crate::domain::queue::QueueName::as_str); cheap to clone; shared by the store and its writer).
#[derive(Debug, Clone, Default)]
pub(super) struct Tally(Arc<Mutex<HashMap<String, i64>>>);

impl Tally {
    /// One full count of every queue (at open, before anything writes).
    pub(super) async fn load(pool: &SqlitePool) -> Result<Tally, sqlx::Error> {
        let rows: Vec<(String, i64)> = sqlx::query_as(&format!(
            "SELECT {QUEUE_KEY}, (SELECT COUNT(*) FROM messages m WHERE m.queue_id = q.id) FROM queues q"
        ))
        .fetch_all(pool)
        .await?;
        Ok(Tally(Arc::new(Mutex::new(rows.into_iter().collect()))))
    }

    fn map(&self) -> MutexGuard<'_, HashMap<String, i64>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// `queue` gained (`delta > 0`) or lost messages in a committed write.
    pub(super) fn add(&self, queue: &str, delta: i64) {
        if delta != 0 {
            *self.map().entry(queue.to_owned()).or_default() += delta;
        }
    }

    /// `queue` is gone.
    pub(super) fn remove(&self, queue: &str) {
        self.map().remove(queue);
    }

    /// The messages `queue` holds (0 for a queue not seen).
    pub(super) fn total(&self, queue: &str) -> u64 {
        u64::try_from(self.map().get(queue).copied().unwrap_or(0)).unwrap_or(0)
    }
}
