//! One poll driven by the caller ([`Poller::poll_once`]): a worker's collect, invoke and settle,
//! once, without waiting, and a report of what happened. The seam for tests on a manual clock and
//! for programs that embed a poller in their own loop.

use tokio_util::sync::CancellationToken;

use super::collect::Waiting;
use super::{PollError, Poller};
use crate::metrics::Outcome;

/// What one [`Poller::poll_once`] did. Every id is a message id; each list is in batch order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PollReport {
    /// The records the function was invoked with; empty when there was nothing to invoke (then
    /// no invocation happened).
    pub invoked: Vec<String>,
    /// How the invocation ended; `None` when there was none.
    pub outcome: Option<Outcome>,
    /// Why the whole batch failed, when it did: the function's error, its timeout, or a
    /// malformed `batchItemFailures` response.
    pub error: Option<String>,
    /// Deleted after the invocation.
    pub deleted: Vec<String>,
    /// Left in flight, to return after their visibility timeout: the records of a failed
    /// invocation, the reported item failures, any whose delete did not go through, and a
    /// carried record too large for any batch on its own.
    pub kept: Vec<String>,
    /// Received and deleted without an invocation: no filter matched them.
    pub filtered: Vec<String>,
    /// Received but not invoked because the batch was full: carried, in flight, into the next
    /// `poll_once`'s batch, as a worker carries them into its next batch.
    pub carried: Vec<String>,
}

impl Poller {
    /// Polls once, in the caller's task, as one of the mapping's workers would with no batching
    /// window: builds one batch within `batch_size` and `max_payload` from the records carried
    /// from the previous call or, when there are none, from one receive of what the queue holds
    /// receivable now (claimed with the workers' visibility timeout; records no filter matches
    /// are deleted at once and reported as `filtered`); invokes the function once
    /// with it, settles by the result (deletes what succeeded, leaves the rest in flight; metrics
    /// and logs included) and reports what it did.
    ///
    /// Use it where the caller decides when each step happens: tests on a manual clock
    /// ([`crate::clock::Clock::advance`] then decides when a visibility timeout runs out, so
    /// redelivery is tested without waiting for it), or a program embedding a poller in its own
    /// loop. Run it on a mapping whose workers are not running (a disabled mapping, or a
    /// [`Poller`] never [`spawn`](Poller::spawn)ed), or they compete for the same messages.
    ///
    /// It never waits: an empty queue gives an empty report at once, and a batching window is
    /// not waited for. Calls on clones of one poller run one at a time and share the carried
    /// records; if the poller is dropped (or a call cancelled) while records are carried, they
    /// return after their visibility timeout.
    ///
    /// # Errors
    /// [`PollError`] if the queue cannot be read (the store, or a remote queue); what was claimed before the error returns
    /// after its visibility timeout. Failures after the claim (the function failing, a delete
    /// that does not go through) are not errors: they are in the report.
    pub async fn poll_once(&self) -> Result<PollReport, PollError> {
        let mut collector = self.step.lock().await;
        let how = Waiting {
            waits: false,
            spare_slots: 0,
            ahead: 0,
        };
        let batch = collector.fill(self, how, &CancellationToken::new()).await?;
        let mut report = PollReport {
            kept: std::mem::take(&mut collector.oversized),
            filtered: std::mem::take(&mut collector.filtered),
            ..PollReport::default()
        };
        if let Some(batch) = batch {
            report.invoked = batch
                .messages()
                .iter()
                .map(|msg| msg.message_id.clone())
                .collect();
            collector.groups().invoking(&batch);
            match self.invoke(&batch, &CancellationToken::new()).await {
                Some(verdict) => {
                    let settled = self.settle(&batch, verdict).await;
                    collector.groups().settled(&batch, &settled.failed_groups);
                    report.outcome = Some(settled.outcome);
                    report.error = settled.error;
                    report.deleted = settled.deleted;
                    report.kept.extend(settled.kept);
                }
                None => report.kept.extend(report.invoked.iter().cloned()),
            }
        }
        report.carried = collector.carried();
        Ok(report)
    }
}
