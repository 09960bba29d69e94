//! Running message move tasks (a dead-letter queue's redrive, docs/semantics.md §6.6): one
//! watcher on the `services` tracker that starts a runner for every task the store holds as
//! RUNNING or CANCELLING, at start (so a task interrupted by a crash or a shutdown resumes) and
//! whenever a task is started or cancelled through the API.
//!
//! A runner calls [`Store::move_step`] until the task is over. Each step is one commit that
//! moves a chunk and counts it, so stopping between steps (shutdown cancels the runners' token)
//! or being killed anywhere loses or repeats nothing. `MaxNumberOfMessagesPerSecond` is kept
//! exactly: by `t` seconds after the runner started, at most `1 + floor(t × rate)` messages
//! have moved (the first at once), measured on the store's [`Clock`](crate::clock::Clock).
//! Without a rate, steps of [`UNLIMITED_CHUNK`] follow each other, leaving the write connection
//! to the writer's groups in between.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::domain::error::chain;
use crate::store::{MoveStep, MoveTask, Store};

/// Messages one step moves when the task has no rate.
const UNLIMITED_CHUNK: u32 = 100;
/// Most messages one step moves under a rate.
const RATED_CHUNK: u64 = 100;
/// How long a runner waits after a step the store could not do before it tries again.
const RETRY: Duration = Duration::from_secs(1);

/// The ids of the tasks with a runner.
type Running = Arc<Mutex<HashSet<String>>>;

/// Starts the watcher on `tracker`; it and its runners stop when `cancel` fires.
pub(super) fn spawn(store: Store, tracker: &TaskTracker, cancel: CancellationToken) {
    let runners = tracker.clone();
    tracker.spawn(async move {
        let running: Running = Arc::default();
        let mut signal = store.move_signal();
        loop {
            signal.borrow_and_update();
            match store.active_move_tasks().await {
                Ok(tasks) => {
                    for task in tasks {
                        let fresh = running
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .insert(task.task_id.clone());
                        if fresh {
                            let (store, running) = (store.clone(), running.clone());
                            let cancel = cancel.child_token();
                            runners.spawn(async move {
                                let id = task.task_id.clone();
                                run(&store, task, &cancel).await;
                                running
                                    .lock()
                                    .unwrap_or_else(PoisonError::into_inner)
                                    .remove(&id);
                            });
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %chain(&e), "cannot read the message move tasks"),
            }
            tokio::select! {
                _ = cancel.cancelled() => break,
                changed = signal.changed() => if changed.is_err() { break },
            }
        }
    });
}

/// How many messages a task may move now: all it wants without a rate, else what the rate
/// allows `elapsed_ms` after its runner started, less what it moved since.
fn budget(rate: Option<u32>, elapsed_ms: i64, moved: u64) -> u32 {
    let Some(rate) = rate else {
        return UNLIMITED_CHUNK;
    };
    let elapsed = u64::try_from(elapsed_ms).unwrap_or(0);
    let allowed = elapsed.saturating_mul(u64::from(rate)) / 1000 + 1;
    u32::try_from(allowed.saturating_sub(moved).min(RATED_CHUNK)).unwrap_or(0)
}

/// When, in milliseconds after the runner started, the rate allows one more message than the
/// `moved` so far.
fn next_allowed_ms(rate: u32, moved: u64) -> i64 {
    let ms = moved.saturating_mul(1000).div_ceil(u64::from(rate.max(1)));
    i64::try_from(ms).unwrap_or(i64::MAX)
}

/// Runs one task until it is over or `cancel` fires.
async fn run(store: &Store, task: MoveTask, cancel: &CancellationToken) {
    let clock = store.clock().clone();
    let started = clock.now();
    let mut signal = store.move_signal();
    let mut moved: u64 = 0;
    tracing::info!(task = %task.task_id, source = %task.source, to = task.destination_arn.as_deref().unwrap_or("the original source queues"), "message move task running");
    loop {
        if cancel.is_cancelled() {
            return;
        }
        signal.borrow_and_update();
        let elapsed = clock.now().as_millis() - started.as_millis();
        let wake_at = match store
            .move_step(&task.task_id, budget(task.max_per_second, elapsed, moved))
            .await
        {
            Ok(MoveStep::Moved(n)) => {
                moved += n;
                if task.max_per_second.is_none() {
                    tokio::task::yield_now().await;
                }
                continue;
            }
            Ok(MoveStep::Over(status)) => {
                tracing::info!(task = %task.task_id, source = %task.source, status = status.as_str(), moved, "message move task over");
                return;
            }
            Ok(MoveStep::Idle) => {
                let rate = task.max_per_second.unwrap_or(1);
                started.plus(Duration::from_millis(
                    u64::try_from(next_allowed_ms(rate, moved)).unwrap_or(0),
                ))
            }
            Err(e) => {
                tracing::warn!(task = %task.task_id, error = %chain(&e), "a message move step failed; retrying");
                clock.now().plus(RETRY)
            }
        };
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = clock.sleep_until(wake_at) => {}
            changed = signal.changed() => if changed.is_err() { return },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_message_moves_at_once_and_then_one_per_interval() {
        assert_eq!(budget(Some(1), 0, 0), 1);
        assert_eq!(budget(Some(1), 999, 1), 0);
        assert_eq!(budget(Some(1), 1000, 1), 1);
        assert_eq!(budget(Some(10), 1000, 3), 8);
        assert_eq!(
            budget(Some(500), 60_000, 0),
            100,
            "a step moves at most a chunk"
        );
        assert_eq!(budget(None, 0, 1_000_000), UNLIMITED_CHUNK);
        assert_eq!(next_allowed_ms(1, 1), 1000);
        assert_eq!(next_allowed_ms(3, 1), 334);
        assert_eq!(next_allowed_ms(3, 0), 0);
    }
}
