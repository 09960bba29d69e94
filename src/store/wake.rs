//! In-process wake-ups for long polls and pollers, per queue name. A hint only: a woken waiter
//! always re-checks the database, and time-based visibility is waited for with a timer.
//!
//! Waking is targeted, not a broadcast: a commit that makes `n` messages receivable wakes about
//! one waiter per ten of them (ten is the most one receive takes from SQS), and a waiter whose
//! receive came back full passes the wake on, so an idle mapping with fifty workers does not
//! run fifty claims for every message sent. A wake that reaches a waiter which no longer needs
//! it (it was served before it slept) is forwarded to the next waiter by `tokio::sync::Notify`,
//! so none is lost. Settings changes and queue deletion wake everyone.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::Notify;

/// How many messages one wake-up stands for.
const MESSAGES_PER_WAKE: u64 = 10;

/// One `Notify` per queue name.
#[derive(Debug, Default, Clone)]
pub struct Wakers {
    inner: Arc<Mutex<HashMap<String, Arc<Notify>>>>,
}

impl Wakers {
    /// The queue's wake-up handle. Waiters create their `Notified` (and `enable` it) before they
    /// look at the database, so a commit between the look and the wait is never missed.
    pub fn get(&self, queue: &str) -> Arc<Notify> {
        let mut map = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = map.get(queue) {
            return n.clone();
        }
        map.entry(queue.to_owned()).or_default().clone()
    }

    /// `n` messages of `queue` became receivable: wakes enough waiters to take them.
    pub fn messages(&self, queue: &str, n: u64) {
        let notify = self.get(queue);
        for _ in 0..n.div_ceil(MESSAGES_PER_WAKE) {
            notify.notify_one();
        }
    }

    /// Wakes every waiter of `queue` (its settings changed, or it was deleted or purged).
    pub fn all(&self, queue: &str) {
        self.get(queue).notify_waiters();
    }

    /// Wakes every waiter of every queue (wake-ups may have been lost: the PostgreSQL store's
    /// LISTEN connection was down).
    pub fn every_queue(&self) {
        let map = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        for n in map.values() {
            n.notify_waiters();
        }
    }
}
