//! The store's message move tasks (StartMessageMoveTask, ListMessageMoveTasks,
//! CancelMessageMoveTask; docs/semantics.md §6.6): starting, listing and cancelling tasks, and
//! [`Store::move_step`], one durable chunk of a move, which the daemon's runner calls at the
//! task's rate. Every change runs on the write connection between the writer's groups, like the
//! queue changes. A start or a cancel raises [`Store::move_signal`], which the runner watches.

use tokio::sync::watch;

use super::sql::moves::{self, NewTask, Step, TaskRow};
use super::{SqliteStore, StoreError};
use crate::domain::queue::QueueName;
use crate::domain::Timestamp;

/// A task's status, as SQS names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MoveStatus {
    /// Moving.
    Running,
    /// Asked to stop; the runner has not yet seen it.
    Cancelling,
    /// Every receivable message of the source was moved.
    Completed,
    /// Stopped by CancelMessageMoveTask.
    Cancelled,
    /// Stopped because a queue it needs is gone ([`MoveTask::failure_reason`]).
    Failed,
}

impl MoveStatus {
    /// The status as SQS spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            MoveStatus::Running => "RUNNING",
            MoveStatus::Cancelling => "CANCELLING",
            MoveStatus::Completed => "COMPLETED",
            MoveStatus::Cancelled => "CANCELLED",
            MoveStatus::Failed => "FAILED",
        }
    }

    pub(super) fn parse(s: &str) -> MoveStatus {
        match s {
            "RUNNING" => MoveStatus::Running,
            "CANCELLING" => MoveStatus::Cancelling,
            "COMPLETED" => MoveStatus::Completed,
            "CANCELLED" => MoveStatus::Cancelled,
            _ => MoveStatus::Failed,
        }
    }

    /// Whether the task still runs (RUNNING or CANCELLING).
    pub fn is_active(self) -> bool {
        matches!(self, MoveStatus::Running | MoveStatus::Cancelling)
    }
}

/// One message move task, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoveTask {
    /// The task's UUID (inside its TaskHandle).
    pub task_id: String,
    /// The source (dead-letter) queue.
    pub source: String,
    /// The source's ARN, as given.
    pub source_arn: String,
    /// The destination's ARN, as given; `None`: each message's original source queue.
    pub destination_arn: Option<String>,
    /// `MaxNumberOfMessagesPerSecond`, if given.
    pub max_per_second: Option<u32>,
    /// Where it stands.
    pub status: MoveStatus,
    /// Receivable messages of the source when it started.
    pub to_move: u64,
    /// Messages moved so far (exact: raised by the commit that moved them).
    pub moved: u64,
    /// Why it failed (FAILED only).
    pub failure_reason: Option<String>,
    /// When it started.
    pub started_at: Timestamp,
}

impl From<TaskRow> for MoveTask {
    fn from(r: TaskRow) -> Self {
        MoveTask {
            task_id: r.task_id,
            source: r.source,
            source_arn: r.source_arn,
            destination_arn: r.destination_arn,
            max_per_second: r.max_per_second.and_then(|v| u32::try_from(v).ok()),
            status: MoveStatus::parse(&r.status),
            to_move: u64::try_from(r.to_move).unwrap_or(0),
            moved: u64::try_from(r.moved).unwrap_or(0),
            failure_reason: r.failure_reason,
            started_at: Timestamp::from_millis(r.started_at),
        }
    }
}

/// What StartMessageMoveTask asks for, checked by the caller (the source is a dead-letter queue,
/// the destination exists and is of the source's type, the rate is 1 to 500).
#[derive(Debug, Clone)]
pub struct MoveRequest {
    /// The source (dead-letter) queue.
    pub source: QueueName,
    /// Its ARN, as given.
    pub source_arn: String,
    /// The destination and its ARN as given; `None`: each message's original source queue.
    pub destination: Option<(QueueName, String)>,
    /// `MaxNumberOfMessagesPerSecond`.
    pub max_per_second: Option<u32>,
}

/// What one [`Store::move_step`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MoveStep {
    /// Moved this many messages, in one commit.
    Moved(u64),
    /// Nothing this time: the budget was 0 and the task still runs.
    Idle,
    /// The task is over, with this status.
    Over(MoveStatus),
}

/// A signal raised on every start and cancel (a counter; the runner watches for changes).
#[derive(Debug, Clone)]
pub(super) struct MoveSignal(watch::Sender<u64>);

impl Default for MoveSignal {
    fn default() -> Self {
        MoveSignal(watch::channel(0).0)
    }
}

impl MoveSignal {
    fn raise(&self) {
        self.0.send_modify(|n| *n = n.wrapping_add(1));
    }
}

impl SqliteStore {
    /// Starts a move task: stores it as RUNNING with the source's receivable messages as
    /// `to_move`, and raises the runner's signal.
    ///
    /// # Errors
    /// `Rejected(InvalidParameterValue)` if a task of the source is still running or
    /// cancelling; `Rejected(QueueDoesNotExist)` if the source is gone.
    pub async fn start_move_task(&self, req: &MoveRequest) -> Result<MoveTask, StoreError> {
        let to_move = self.counts(&req.source).await?.visible;
        let task_id = uuid::Uuid::new_v4().to_string();
        let task = NewTask {
            task_id: &task_id,
            source: &req.source,
            source_arn: &req.source_arn,
            destination: req.destination.as_ref().map(|(q, _)| q),
            destination_arn: req.destination.as_ref().map(|(_, a)| a.as_str()),
            max_per_second: req.max_per_second,
        };
        let now = self.now();
        let row = self
            .changing(moves::start(&self.writer, &task, to_move, now))
            .await?;
        self.moves.raise();
        Ok(row.into())
    }

    /// The source's most recent tasks, newest first, at most `limit`.
    pub async fn move_tasks(
        &self,
        source: &QueueName,
        limit: u32,
    ) -> Result<Vec<MoveTask>, StoreError> {
        let rows = self.reported(moves::list(&self.reader, source, limit).await)?;
        Ok(rows.into_iter().map(MoveTask::from).collect())
    }

    /// Every task still to run (RUNNING or CANCELLING), oldest first: what the runner runs.
    pub async fn active_move_tasks(&self) -> Result<Vec<MoveTask>, StoreError> {
        let rows = self.reported(moves::active(&self.reader).await)?;
        Ok(rows.into_iter().map(MoveTask::from).collect())
    }

    /// Asks a running task of `source` to stop (CANCELLING; its runner makes it CANCELLED).
    /// Returns the task as it is now (unchanged if it was not RUNNING), or `None` if `source`
    /// has no such task.
    pub async fn cancel_move_task(
        &self,
        source: &QueueName,
        task_id: &str,
    ) -> Result<Option<MoveTask>, StoreError> {
        let row = self
            .changing(moves::cancel(&self.writer, source, task_id))
            .await?;
        self.moves.raise();
        Ok(row.map(MoveTask::from))
    }

    /// One step of a task: moves up to `max` messages in one commit (the source's oldest
    /// receivable ones, each to the task's destination or its original source queue), or ends
    /// the task (COMPLETED when nothing is left, CANCELLED when asked, FAILED when a queue it
    /// needs is gone). With `max` 0 it only settles a cancellation.
    pub async fn move_step(&self, task_id: &str, max: u32) -> Result<MoveStep, StoreError> {
        let now = self.now();
        let step = self
            .freeing(|| moves::step(&self.writer, task_id, max, now))
            .await?;
        Ok(match step {
            Step::Idle => MoveStep::Idle,
            Step::Over(status) => MoveStep::Over(MoveStatus::parse(&status)),
            Step::Moved { source, to } => {
                let total: u64 = to.iter().map(|(_, n)| n).sum();
                self.tally
                    .add(&source, -i64::try_from(total).unwrap_or(i64::MAX));
                for (queue, n) in &to {
                    self.tally
                        .add(queue.as_str(), i64::try_from(*n).unwrap_or(i64::MAX));
                    self.wake.messages(queue.as_str(), *n);
                }
                MoveStep::Moved(total)
            }
        })
    }

    /// A receiver that changes on every start and cancel of a move task.
    pub fn move_signal(&self) -> watch::Receiver<u64> {
        self.moves.0.subscribe()
    }
}
