//! Long polls: a receive that, finding nothing, waits until a message may have become
//! receivable (a commit's wake-up from `wake.rs`, or the time the next message becomes visible
//! by a delay or visibility timeout running out) or until its wait time is over.

use std::time::Duration;

use tokio::sync::oneshot;

use super::error::StoreError;
use super::sql::claim::Received;
use super::wake::Wakers;
use super::writer::{Handle, Op};
use crate::clock::Clock;
use crate::domain::message::Message;
use crate::domain::queue::QueueName;

/// What a receive needs: the writer to claim through, the wake-ups, the clock.
pub(super) struct Waiter<'s> {
    pub writer: &'s Handle,
    pub wake: &'s Wakers,
    pub clock: &'s Clock,
    /// Who receives (`Store::receiver`): 0 for a client.
    pub receiver: u16,
}

impl Waiter<'_> {
    /// A short poll that, when it finds nothing, also says when the next message becomes
    /// receivable by the passage of time.
    pub(super) async fn receive_now(
        &self,
        queue: &QueueName,
        max: u32,
        visibility: Option<Duration>,
    ) -> Result<Received, StoreError> {
        let (reply, rx) = oneshot::channel();
        let op = Op::Receive {
            queue: queue.clone(),
            max,
            visibility,
            receiver: self.receiver,
            reply,
        };
        self.writer.submit(op, rx).await
    }

    /// Receives up to `max`, waiting up to `wait` for something to receive.
    ///
    /// # Cancel safety
    /// Cancel safe: cancelled while waiting, it has claimed nothing; cancelled after it handed
    /// its claim to the writer, what the claim took is given back at once (see `writer.rs`).
    pub(super) async fn receive_wait(
        &self,
        queue: &QueueName,
        max: u32,
        visibility: Option<Duration>,
        wait: Duration,
    ) -> Result<Vec<Message>, StoreError> {
        let deadline = self.clock.now().plus(wait);
        let notify = self.wake.get(queue.as_str());
        loop {
            // Registered before looking, so a commit between the look and the wait still wakes us.
            let woken = notify.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            let got = self.receive_now(queue, max, visibility).await?;
            if got.len() > 0 {
                if got.len() >= max as usize {
                    // There may be more: pass the wake on to the next waiter.
                    notify.notify_one();
                }
                return got.into_messages();
            }
            let now = self.clock.now();
            if now >= deadline {
                return Ok(Vec::new());
            }
            let until = match got.next_visible {
                Some(t) if t < deadline => t,
                _ => deadline,
            };
            tokio::select! {
                _ = woken => {}
                _ = self.clock.sleep_until(until) => {}
            }
        }
    }
}
