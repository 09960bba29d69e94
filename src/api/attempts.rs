//! FIFO `ReceiveRequestAttemptId` of the SQS API (docs/semantics.md §6.3): a ReceiveMessage retried with the
//! same attempt id within 5 minutes gets the same messages with the same receipt handles, and
//! the retry resets their visibility timeout, as long as none of them was deleted or had its
//! visibility changed since. Otherwise the retry is a new receive.
//!
//! The attempts live in memory, per daemon: after a restart a retry is a new receive (the
//! messages it got before return after their visibility timeout), as after any lost attempt.
//! At most [`MAX_KEPT`] attempts are kept; past that, new attempts are not remembered.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::domain::message::Message;

/// How long an attempt can be replayed (AWS's deduplication interval).
pub(crate) const WINDOW: Duration = Duration::from_secs(300);

/// The most attempts kept at once.
pub(crate) const MAX_KEPT: usize = 10_000;

#[derive(Debug)]
struct Attempt {
    at: Instant,
    messages: Vec<Message>,
}

/// Received batches by (queue, attempt id). Cloning shares them.
#[derive(Debug, Clone, Default)]
pub struct ReceiveAttempts {
    inner: Arc<Mutex<HashMap<(String, String), Attempt>>>,
}

impl ReceiveAttempts {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Attempt>> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The messages an earlier receive of `queue` with `attempt` got, if within the window.
    pub(crate) fn recall(&self, queue: &str, attempt: &str) -> Option<Vec<Message>> {
        let mut map = self.map();
        let key = (queue.to_owned(), attempt.to_owned());
        match map.get(&key) {
            Some(a) if a.at.elapsed() < WINDOW => Some(a.messages.clone()),
            Some(_) => {
                map.remove(&key);
                None
            }
            None => None,
        }
    }

    /// Remembers what a receive of `queue` with `attempt` got.
    pub(crate) fn remember(&self, queue: &str, attempt: &str, messages: &[Message]) {
        let mut map = self.map();
        if map.len() >= MAX_KEPT {
            map.retain(|_, a| a.at.elapsed() < WINDOW);
            if map.len() >= MAX_KEPT {
                return;
            }
        }
        map.insert(
            (queue.to_owned(), attempt.to_owned()),
            Attempt {
                at: Instant::now(),
                messages: messages.to_vec(),
            },
        );
    }

    /// Forgets an attempt whose messages are no longer all held.
    pub(crate) fn forget(&self, queue: &str, attempt: &str) {
        self.map().remove(&(queue.to_owned(), attempt.to_owned()));
    }
}
