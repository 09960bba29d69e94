//! The clock: the only place esmd reads the wall clock. Tests inject a manual clock and move it
//! with [`Clock::advance`], which also wakes anything sleeping on it.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;

use crate::domain::Timestamp;

/// Wall-clock time source: the system clock, or a manual clock for tests.
#[derive(Clone, Debug)]
pub enum Clock {
    /// The system clock.
    System,
    /// A clock that moves only when told to.
    Manual(Arc<ManualClock>),
}

/// State of a manual clock.
#[derive(Debug)]
pub struct ManualClock {
    now: AtomicI64,
    moved: watch::Sender<i64>,
}

impl Clock {
    /// A manual clock starting at `start`.
    pub fn manual(start: Timestamp) -> Self {
        let (moved, _) = watch::channel(start.as_millis());
        Clock::Manual(Arc::new(ManualClock {
            now: AtomicI64::new(start.as_millis()),
            moved,
        }))
    }

    /// The current time.
    pub fn now(&self) -> Timestamp {
        match self {
            Clock::System => {
                let d = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default();
                Timestamp::from_millis(d.as_millis() as i64)
            }
            Clock::Manual(m) => Timestamp::from_millis(m.now.load(Ordering::SeqCst)),
        }
    }

    /// Moves a manual clock forward and wakes its sleepers. Does nothing to the system clock.
    pub fn advance(&self, by: Duration) {
        if let Clock::Manual(m) = self {
            let now =
                m.now.fetch_add(by.as_millis() as i64, Ordering::SeqCst) + by.as_millis() as i64;
            m.moved.send_replace(now);
        }
    }

    /// Whether this is a manual clock.
    pub fn is_manual(&self) -> bool {
        matches!(self, Clock::Manual(_))
    }

    /// Sleeps until the clock reads `at` or later.
    ///
    /// # Cancel safety
    /// Cancel safe: dropping the future only stops the wait.
    pub async fn sleep_until(&self, at: Timestamp) {
        match self {
            Clock::System => {
                let now = self.now();
                if at > now {
                    tokio::time::sleep(at.since(now)).await;
                }
            }
            Clock::Manual(m) => {
                let mut rx = m.moved.subscribe();
                let _ = rx.wait_for(|&now| now >= at.as_millis()).await;
            }
        }
    }
}
