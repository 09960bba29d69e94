//! The request path's copy of the queue rows: SendMessage and friends look their queue up on
//! every request, and a read-pool round trip for a row that changes only when an operator
//! changes it was a few percent of the CPU under load. Every queue change made through the
//! [`Store`](super::Store) empties the copy; a generation number keeps a lookup that raced with a
//! change from putting the old row back.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use super::types::QueueInfo;

#[derive(Debug, Default, Clone)]
pub struct QueueCache {
    inner: Arc<RwLock<Inner>>,
}

#[derive(Debug, Default)]
struct Inner {
    generation: u64,
    queues: HashMap<String, QueueInfo>,
}

impl QueueCache {
    /// The cached row, or the generation to hand to [`QueueCache::insert`] after reading it.
    pub fn get(&self, name: &str) -> Result<QueueInfo, u64> {
        let inner = self.inner.read().unwrap_or_else(PoisonError::into_inner);
        inner.queues.get(name).cloned().ok_or(inner.generation)
    }

    /// Keeps `info`, unless a queue changed since `generation` was read.
    pub fn insert(&self, generation: u64, info: &QueueInfo) {
        let mut inner = self.inner.write().unwrap_or_else(PoisonError::into_inner);
        if inner.generation == generation {
            inner
                .queues
                .insert(info.name.as_str().to_owned(), info.clone());
        }
    }

    /// Forgets every row: called after any change to any queue.
    pub fn forget(&self) {
        let mut inner = self.inner.write().unwrap_or_else(PoisonError::into_inner);
        inner.generation += 1;
        inner.queues.clear();
    }
}
