//! Message move tasks on PostgreSQL (StartMessageMoveTask, ListMessageMoveTasks,
//! CancelMessageMoveTask), with the SQLite store's signatures (`store/moves.rs`): starting,
//! listing and cancelling tasks; the step that moves messages is `move_step.rs`.
//!
//! Across instances: a start holds an advisory lock of its own, so one source never gets two
//! active tasks; a task is run by the instance holding its lease (`move_step.rs`), and
//! [`PgStore::active_move_tasks`] leaves out the tasks another instance's lease holds, so that
//! runner does not start here. A start or a cancel sends `NOTIFY esmd_moves` in its
//! transaction, which raises [`PgStore::move_signal`] on every instance (`listen.rs`).

use tokio::sync::watch;

use super::super::moves::{MoveRequest, MoveTask};
use super::super::sql::moves::TaskRow;
use super::{listen, queues, PgStore, QueueStore, StoreError};
use crate::domain::queue::QueueName;
use crate::domain::Rejection;

/// Most tasks kept per source queue (ListMessageMoveTasks shows at most 10).
const KEPT_PER_SOURCE: i64 = 10;

/// Every column of a task, in [`TaskRow`]'s order.
pub(super) const TASK_COLUMNS: &str = "task_id, source, source_arn, destination, \
    destination_arn, max_per_second, status, to_move, moved, failure_reason, started_at";

/// The advisory lock (two-key form, apart from the queues' one-key locks) of task starts.
const START_LOCK: (i32, i32) = (0x6573_6d64, 2);

impl PgStore {
    /// Starts a move task: stores it as RUNNING with the source's receivable messages as
    /// `to_move`, and raises every instance's move signal.
    ///
    /// # Errors
    /// `Rejected(InvalidParameterValue)` if a task of the source is still running or
    /// cancelling; `Rejected(QueueDoesNotExist)` if the source is gone.
    pub async fn start_move_task(&self, req: &MoveRequest) -> Result<MoveTask, StoreError> {
        let to_move = self.counts(&req.source).await?.visible;
        let task_id = uuid::Uuid::new_v4().to_string();
        let mut tx = self.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1, $2)")
            .bind(START_LOCK.0)
            .bind(START_LOCK.1)
            .execute(&mut *tx)
            .await?;
        queues::require(&mut tx, &req.source).await?;
        let active: Option<(i32,)> = sqlx::query_as(
            "SELECT 1 FROM move_tasks WHERE source = $1 AND status IN ('RUNNING', 'CANCELLING') LIMIT 1",
        )
        .bind(req.source.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        if active.is_some() {
            return Err(Rejection::invalid(
                "There is already a task running. Only one active task is allowed for a source queue arn at a given time.",
            )
            .into());
        }
        let row: TaskRow = sqlx::query_as(&format!(
            "INSERT INTO move_tasks (task_id, source, source_arn, destination, destination_arn, \
             max_per_second, status, to_move, started_at) \
             VALUES ($1, $2, $3, $4, $5, $6, 'RUNNING', $7, $8) RETURNING {TASK_COLUMNS}"
        ))
        .bind(&task_id)
        .bind(req.source.as_str())
        .bind(&req.source_arn)
        .bind(req.destination.as_ref().map(|(q, _)| q.as_str()))
        .bind(req.destination.as_ref().map(|(_, a)| a.as_str()))
        .bind(req.max_per_second.map(i64::from))
        .bind(i64::try_from(to_move).unwrap_or(i64::MAX))
        .bind(self.now())
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query(
            "DELETE FROM move_tasks WHERE source = $1 AND id NOT IN \
             (SELECT id FROM move_tasks WHERE source = $1 ORDER BY id DESC LIMIT $2)",
        )
        .bind(req.source.as_str())
        .bind(KEPT_PER_SOURCE)
        .execute(&mut *tx)
        .await?;
        listen::signal(&mut tx, listen::MOVES).await?;
        tx.commit().await?;
        listen::raise(&self.signals.moves);
        Ok(row.into())
    }

    /// The source's most recent tasks, newest first, at most `limit`.
    pub async fn move_tasks(
        &self,
        source: &QueueName,
        limit: u32,
    ) -> Result<Vec<MoveTask>, StoreError> {
        let rows: Vec<TaskRow> = sqlx::query_as(&format!(
            "SELECT {TASK_COLUMNS} FROM move_tasks WHERE source = $1 ORDER BY id DESC LIMIT $2"
        ))
        .bind(source.as_str())
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(MoveTask::from).collect())
    }

    /// Every task still to run (RUNNING or CANCELLING), oldest first, that this instance may
    /// run: not held by another instance's lease.
    pub async fn active_move_tasks(&self) -> Result<Vec<MoveTask>, StoreError> {
        let rows: Vec<TaskRow> = sqlx::query_as(&format!(
            "SELECT {TASK_COLUMNS} FROM move_tasks WHERE status IN ('RUNNING', 'CANCELLING') \
             AND (owner IS NULL OR owner = $1 OR lease_until <= $2) ORDER BY id"
        ))
        .bind(&*self.instance)
        .bind(self.now())
        .fetch_all(&self.pool)
        .await?;
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
        let mut tx = self.begin().await?;
        sqlx::query(
            "UPDATE move_tasks SET status = 'CANCELLING' \
             WHERE task_id = $1 AND source = $2 AND status = 'RUNNING'",
        )
        .bind(task_id)
        .bind(source.as_str())
        .execute(&mut *tx)
        .await?;
        let row: Option<TaskRow> = sqlx::query_as(&format!(
            "SELECT {TASK_COLUMNS} FROM move_tasks WHERE task_id = $1 AND source = $2"
        ))
        .bind(task_id)
        .bind(source.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        listen::signal(&mut tx, listen::MOVES).await?;
        tx.commit().await?;
        listen::raise(&self.signals.moves);
        Ok(row.map(MoveTask::from))
    }

    /// A receiver that changes on every start and cancel of a move task, through any instance
    /// on the database.
    pub fn move_signal(&self) -> watch::Receiver<u64> {
        self.signals.moves.subscribe()
    }
}
