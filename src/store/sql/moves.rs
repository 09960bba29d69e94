//! Message move tasks (a dead-letter queue's redrive): the task rows, and the move itself. One
//! call of [`step`] is one `BEGIN IMMEDIATE` transaction that moves a chunk of the source's
//! oldest receivable messages to their destination (deleted from the source and inserted into
//! the destination as new messages) and raises the task's `moved` count in the same commit, so a
//! crash at any point loses or repeats no message, and the count stays exact.

use std::collections::HashMap;

use sqlx::{FromRow, SqlitePool};

use super::super::error::StoreError;
use super::super::rows::{to_ms, UNRECEIVED};
use super::super::types::QueueInfo;
use super::{fifo, queues, Tx};
use crate::domain::queue::QueueName;
use crate::domain::Rejection;

/// Most tasks kept per source queue (ListMessageMoveTasks shows at most 10).
const KEPT_PER_SOURCE: i64 = 10;

/// The failure reason of a task whose destination queue is gone, as AWS words it.
pub(crate) const NO_QUEUE: &str = "AWS.SimpleQueueService.NonExistentQueue";

const TASK_COLUMNS: &str = "task_id, source, source_arn, destination, destination_arn, \
    max_per_second, status, to_move, moved, failure_reason, started_at";

/// A task row.
#[derive(FromRow, Debug, Clone)]
pub(crate) struct TaskRow {
    pub task_id: String,
    pub source: String,
    pub source_arn: String,
    pub destination: Option<String>,
    pub destination_arn: Option<String>,
    pub max_per_second: Option<i64>,
    pub status: String,
    pub to_move: i64,
    pub moved: i64,
    pub failure_reason: Option<String>,
    pub started_at: i64,
}

/// What a new task is.
pub(crate) struct NewTask<'a> {
    pub task_id: &'a str,
    pub source: &'a QueueName,
    pub source_arn: &'a str,
    pub destination: Option<&'a QueueName>,
    pub destination_arn: Option<&'a str>,
    pub max_per_second: Option<u32>,
}

/// Stores a new RUNNING task, unless one is already active (RUNNING or CANCELLING) for the
/// source; forgets the source's tasks beyond the most recent [`KEPT_PER_SOURCE`].
pub(crate) async fn start(
    writer: &SqlitePool,
    task: &NewTask<'_>,
    to_move: u64,
    now: i64,
) -> Result<TaskRow, StoreError> {
    let mut tx = writer.begin_with("BEGIN IMMEDIATE").await?;
    queues::require(&mut tx, task.source).await?;
    let active: Option<(i64,)> = sqlx::query_as(
        "SELECT 1 FROM move_tasks WHERE source = ? AND status IN ('RUNNING', 'CANCELLING') LIMIT 1",
    )
    .bind(task.source.as_str())
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
         max_per_second, status, to_move, started_at) VALUES (?, ?, ?, ?, ?, ?, 'RUNNING', ?, ?) \
         RETURNING {TASK_COLUMNS}"
    ))
    .bind(task.task_id)
    .bind(task.source.as_str())
    .bind(task.source_arn)
    .bind(task.destination.map(QueueName::as_str))
    .bind(task.destination_arn)
    .bind(task.max_per_second.map(i64::from))
    .bind(i64::try_from(to_move).unwrap_or(i64::MAX))
    .bind(now)
    .fetch_one(&mut *tx)
    .await?;
    sqlx::query(
        "DELETE FROM move_tasks WHERE source = ?1 AND id NOT IN \
         (SELECT id FROM move_tasks WHERE source = ?1 ORDER BY id DESC LIMIT ?2)",
    )
    .bind(task.source.as_str())
    .bind(KEPT_PER_SOURCE)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(row)
}

/// The source's most recent tasks, newest first.
pub(crate) async fn list(
    reader: &SqlitePool,
    source: &QueueName,
    limit: u32,
) -> Result<Vec<TaskRow>, StoreError> {
    Ok(sqlx::query_as(&format!(
        "SELECT {TASK_COLUMNS} FROM move_tasks WHERE source = ? ORDER BY id DESC LIMIT ?"
    ))
    .bind(source.as_str())
    .bind(i64::from(limit))
    .fetch_all(reader)
    .await?)
}

/// Every task still to run (RUNNING, or CANCELLING and not yet settled), oldest first.
pub(crate) async fn active(reader: &SqlitePool) -> Result<Vec<TaskRow>, StoreError> {
    Ok(sqlx::query_as(&format!(
        "SELECT {TASK_COLUMNS} FROM move_tasks WHERE status IN ('RUNNING', 'CANCELLING') ORDER BY id"
    ))
    .fetch_all(reader)
    .await?)
}

/// Asks a RUNNING task to stop: it becomes CANCELLING, and its runner's next step makes it
/// CANCELLED. Returns the task as it is now, or `None` if there is no such task of `source`.
pub(crate) async fn cancel(
    writer: &SqlitePool,
    source: &QueueName,
    task_id: &str,
) -> Result<Option<TaskRow>, StoreError> {
    let mut tx = writer.begin_with("BEGIN IMMEDIATE").await?;
    sqlx::query(
        "UPDATE move_tasks SET status = 'CANCELLING' WHERE task_id = ? AND source = ? AND status = 'RUNNING'",
    )
    .bind(task_id)
    .bind(source.as_str())
    .execute(&mut *tx)
    .await?;
    let row: Option<TaskRow> = sqlx::query_as(&format!(
        "SELECT {TASK_COLUMNS} FROM move_tasks WHERE task_id = ? AND source = ?"
    ))
    .bind(task_id)
    .bind(source.as_str())
    .fetch_optional(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(row)
}

/// What one step did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    /// Moved messages out of `source`, in one commit: `(destination queue, how many)`.
    Moved {
        /// The source queue.
        source: String,
        /// Where they went.
        to: Vec<(QueueName, u64)>,
    },
    /// Nothing to do this time (a step with a budget of 0 on a running task).
    Idle,
    /// The task is over, with this status (COMPLETED, CANCELLED or FAILED).
    Over(String),
}

/// Moves up to `max` of the source's oldest receivable messages (FIFO: from the heads of
/// receivable groups, in order) in one transaction; ends the task when nothing is left to move
/// (COMPLETED), when it was asked to stop (CANCELLED), or when a queue it needs is gone
/// (FAILED).
pub(crate) async fn step(
    writer: &SqlitePool,
    task_id: &str,
    max: u32,
    now: i64,
) -> Result<Step, StoreError> {
    let mut tx = writer.begin_with("BEGIN IMMEDIATE").await?;
    let task: Option<TaskRow> = sqlx::query_as(&format!(
        "SELECT {TASK_COLUMNS} FROM move_tasks WHERE task_id = ?"
    ))
    .bind(task_id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(task) = task else {
        return Ok(Step::Over("FAILED".to_owned()));
    };
    match task.status.as_str() {
        "RUNNING" => {}
        "CANCELLING" => return end(tx, task_id, "CANCELLED", None).await,
        other => return Ok(Step::Over(other.to_owned())),
    }
    if max == 0 {
        return Ok(Step::Idle);
    }
    let source = match QueueName::from_key(&task.source) {
        Ok(name) => queues::lookup(&mut tx, &name).await?,
        Err(_) => None,
    };
    let Some(source) = source else {
        return end(tx, task_id, "FAILED", Some(NO_QUEUE)).await;
    };
    let rows = pick(&mut tx, &source, max, now).await?;
    if rows.is_empty() {
        return end(tx, task_id, "COMPLETED", None).await;
    }
    // Every destination first: a missing one fails the task before anything moves.
    let mut targets: HashMap<String, QueueInfo> = HashMap::new();
    for row in &rows {
        let Some(name) = task
            .destination
            .as_ref()
            .or(row.dead_letter_source.as_ref())
        else {
            return end(tx, task_id, "FAILED", Some(NO_QUEUE)).await;
        };
        if targets.contains_key(name) {
            continue;
        }
        let found = match QueueName::from_key(name) {
            Ok(q) => queues::lookup(&mut tx, &q).await?,
            Err(_) => None,
        };
        match found {
            Some(q) if q.name.kind() == source.name.kind() => drop(targets.insert(name.clone(), q)),
            Some(_) => return end(tx, task_id, "FAILED", Some("InvalidParameterValue")).await,
            None => return end(tx, task_id, "FAILED", Some(NO_QUEUE)).await,
        }
    }
    let mut moved: Vec<(QueueName, u64)> = Vec::new();
    for row in &rows {
        let name = task
            .destination
            .as_ref()
            .or(row.dead_letter_source.as_ref());
        let dest = &targets[name.expect("checked above")];
        insert_moved(&mut tx, dest, row, now).await?;
        match moved.iter_mut().find(|(q, _)| *q == dest.name) {
            Some((_, n)) => *n += 1,
            None => moved.push((dest.name.clone(), 1)),
        }
    }
    let ids = serde_json::to_string(&rows.iter().map(|r| r.id).collect::<Vec<_>>())
        .expect("ids serialize");
    sqlx::query("DELETE FROM messages WHERE id IN (SELECT value FROM json_each(?))")
        .bind(&ids)
        .execute(&mut *tx)
        .await?;
    if source.name.is_fifo() {
        fifo::rehead(
            &mut tx,
            source.id,
            rows.iter().filter_map(|r| r.group_id.as_deref()),
        )
        .await?;
    }
    sqlx::query("UPDATE move_tasks SET moved = moved + ? WHERE task_id = ?")
        .bind(rows.len() as i64)
        .bind(task_id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Step::Moved {
        source: task.source,
        to: moved,
    })
}

/// Ends a task with `status` (and a failure reason) and commits.
async fn end(
    mut tx: sqlx::Transaction<'_, sqlx::Sqlite>,
    task_id: &str,
    status: &str,
    reason: Option<&str>,
) -> Result<Step, StoreError> {
    sqlx::query("UPDATE move_tasks SET status = ?, failure_reason = ? WHERE task_id = ?")
        .bind(status)
        .bind(reason)
        .bind(task_id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Step::Over(status.to_owned()))
}

/// A message about to move.
#[derive(FromRow)]
struct Moving {
    id: i64,
    group_id: Option<String>,
    dead_letter_source: Option<String>,
}

/// The source's oldest receivable messages, not past retention: for a FIFO queue, from the
/// heads of its receivable groups, so that a group's order survives the move.
async fn pick(
    tx: &mut Tx<'_>,
    q: &QueueInfo,
    max: u32,
    now: i64,
) -> Result<Vec<Moving>, StoreError> {
    let cutoff = now - to_ms(q.settings.retention);
    if q.name.is_fifo() {
        let ids = fifo::pick(tx, q.id, max, now).await?;
        let ids = serde_json::to_string(&ids).expect("ids serialize");
        return Ok(sqlx::query_as(
            "SELECT id, group_id, dead_letter_source FROM messages \
             WHERE id IN (SELECT value FROM json_each(?)) AND retain_from > ? ORDER BY id",
        )
        .bind(ids)
        .bind(cutoff)
        .fetch_all(&mut *tx)
        .await?);
    }
    Ok(sqlx::query_as(
        "SELECT id, group_id, dead_letter_source FROM messages \
         WHERE queue_id = ? AND visible_at <= ? AND +retain_from > ? ORDER BY id LIMIT ?",
    )
    .bind(q.id)
    .bind(now)
    .bind(cutoff)
    .bind(i64::from(max))
    .fetch_all(&mut *tx)
    .await?)
}

/// Inserts the message `row` into `dest` as a new message, as AWS's redrive does: a new message
/// id, sent (and retained from) now, never received, with the body, attributes, trace header,
/// group and deduplication id kept; the destination's delay applies, and a FIFO destination
/// gives it a new sequence number.
async fn insert_moved(
    tx: &mut Tx<'_>,
    dest: &QueueInfo,
    row: &Moving,
    now: i64,
) -> Result<(), StoreError> {
    let fifo = dest.name.is_fifo();
    let seq = if fifo {
        fifo::next_sequences(tx, dest.id, 1, now).await?.pop()
    } else {
        None
    };
    let is_head = match (&row.group_id, fifo) {
        (Some(g), true) => fifo::is_empty_group(tx, dest.id, g).await?,
        _ => false,
    };
    sqlx::query(
        "INSERT INTO messages (queue_id, message_id, body, attributes, md5_of_body, md5_of_attributes, \
         trace_header, group_id, dedup_id, sequence_number, sent_at, retain_from, visible_at, \
         first_receive_at, received_at, receipt, is_head) \
         SELECT ?1, ?2, body, attributes, md5_of_body, md5_of_attributes, trace_header, group_id, \
         dedup_id, ?3, ?4, ?4, ?5, ?4, ?4, ?6, ?7 FROM messages WHERE id = ?8",
    )
    .bind(dest.id)
    .bind(uuid::Uuid::new_v4().to_string())
    .bind(seq)
    .bind(now)
    .bind(now + to_ms(dest.settings.delay))
    .bind(UNRECEIVED)
    .bind(is_head)
    .bind(row.id)
    .execute(&mut *tx)
    .await?;
    Ok(())
}
