//! One step of a message move task on PostgreSQL ([`PgStore::move_step`]): as the SQLite
//! store's (`sql/moves.rs`), one transaction moves a chunk of the source's oldest receivable
//! messages to their destination (deleted from the source, inserted into the destination as new
//! messages) and raises the task's `moved` count in the same commit, so a crash loses or repeats
//! no message and the count stays exact.
//!
//! Across instances a task is run by one instance at a time. A step locks the task's row with
//! `FOR UPDATE SKIP LOCKED` (a step of another instance in progress: this one gives up) and
//! takes or renews the task's lease (`owner`, `lease_until`, [`MOVE_LEASE`]); while another
//! instance's lease holds, the step answers `Over(Running)`: not this instance's to run, so its
//! runner stops (the daemon's runner ends on `Over`). The source's rows are taken with
//! `FOR UPDATE SKIP LOCKED` (a standard queue) or under its advisory lock (a FIFO queue), so a
//! receive never gets a message being moved. A FIFO destination's advisory lock is only tried
//! (`pg_try_advisory_xact_lock`): a receive holds its queue's lock and then its dead-letter
//! queue's, the reverse of a move's order, so waiting could deadlock; when the lock is taken the
//! step moves nothing and answers `Idle`, and the runner tries again.

use std::collections::HashMap;
use std::time::Duration;

use super::super::moves::{MoveStatus, MoveStep};
use super::super::rows::to_ms;
use super::super::sql::moves::{TaskRow, NO_QUEUE};
use super::claim::pick_fifo;
use super::moves::TASK_COLUMNS;
use super::send::next_sequences;
use super::{listen, lock_fifo, queues, tally, PgStore, QueueInfo, StoreError, Tx};
use crate::domain::queue::QueueName;

/// How long a step holds its task against other instances. The runner steps at least once a
/// second while a task runs, renewing it; a task whose instance died is taken over by another
/// once it runs out (at that instance's next look at the active tasks).
const MOVE_LEASE: Duration = Duration::from_secs(30);

/// A task row with its lease.
#[derive(sqlx::FromRow)]
struct Leased {
    #[sqlx(flatten)]
    task: TaskRow,
    owner: Option<String>,
    lease_until: i64,
}

/// A message about to move.
#[derive(sqlx::FromRow)]
struct Moving {
    id: i64,
    dead_letter_source: Option<String>,
}

/// Ends a task with `status` (and a failure reason), ends its lease, and commits.
async fn end(
    mut tx: Tx,
    task_id: &str,
    status: MoveStatus,
    reason: Option<&str>,
) -> Result<MoveStep, StoreError> {
    sqlx::query(
        "UPDATE move_tasks SET status = $1, failure_reason = $2, owner = NULL, lease_until = 0 \
         WHERE task_id = $3",
    )
    .bind(status.as_str())
    .bind(reason)
    .bind(task_id)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(MoveStep::Over(status))
}

/// The source's oldest receivable messages not past retention (FIFO: from the heads of its
/// receivable groups, under the queue's lock), locked for this transaction.
async fn pick(tx: &mut Tx, q: &QueueInfo, max: u32, now: i64) -> Result<Vec<Moving>, StoreError> {
    let cutoff = now - to_ms(q.settings.retention);
    if q.name.is_fifo() {
        let ids = pick_fifo(tx, q.id, max, now, cutoff).await?;
        return Ok(sqlx::query_as(
            "SELECT id, dead_letter_source FROM messages WHERE id = ANY($1) ORDER BY id",
        )
        .bind(&ids)
        .fetch_all(&mut **tx)
        .await?);
    }
    Ok(sqlx::query_as(
        "SELECT id, dead_letter_source FROM messages \
         WHERE queue_id = $1 AND visible_at <= $2 AND retain_from > $3 \
         ORDER BY id LIMIT $4 FOR UPDATE SKIP LOCKED",
    )
    .bind(q.id)
    .bind(now)
    .bind(cutoff)
    .bind(i64::from(max))
    .fetch_all(&mut **tx)
    .await?)
}

/// Inserts message `id` into `dest` as a new message, as the SQLite store's move does: a new
/// message id, sent (and retained from) now, never received, with the body, attributes, trace
/// header, group and deduplication id kept; the destination's delay applies, and a FIFO
/// destination gives it a new sequence number.
async fn insert_moved(tx: &mut Tx, dest: &QueueInfo, id: i64, now: i64) -> Result<(), StoreError> {
    let seq = if dest.name.is_fifo() {
        next_sequences(tx, dest.id, 1, now).await?.pop()
    } else {
        None
    };
    sqlx::query(
        "INSERT INTO messages (queue_id, message_id, body, attributes, md5_of_body, md5_of_attributes, \
         trace_header, group_id, dedup_id, sequence_number, sent_at, retain_from, visible_at) \
         SELECT $1, $2, body, attributes, md5_of_body, md5_of_attributes, trace_header, group_id, \
         dedup_id, $3, $4, $4, $5 FROM messages WHERE id = $6",
    )
    .bind(dest.id)
    .bind(uuid::Uuid::new_v4().to_string())
    .bind(seq)
    .bind(now)
    .bind(now + to_ms(dest.settings.delay))
    .bind(id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

impl PgStore {
    /// One step of a task: moves up to `max` messages in one commit (the source's oldest
    /// receivable ones, each to the task's destination or its original source queue), or ends
    /// the task (COMPLETED when nothing is left, CANCELLED when asked, FAILED when a queue it
    /// needs is gone). With `max` 0 it only settles a cancellation. `Over(Running)` when another
    /// instance runs the task (see the module doc).
    pub async fn move_step(&self, task_id: &str, max: u32) -> Result<MoveStep, StoreError> {
        let now = self.now();
        let mut tx = self.begin().await?;
        let leased: Option<Leased> = sqlx::query_as(&format!(
            "SELECT {TASK_COLUMNS}, owner, lease_until FROM move_tasks WHERE task_id = $1 \
             FOR UPDATE SKIP LOCKED"
        ))
        .bind(task_id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(Leased {
            task,
            owner,
            lease_until,
        }) = leased
        else {
            let exists: Option<(i32,)> =
                sqlx::query_as("SELECT 1 FROM move_tasks WHERE task_id = $1")
                    .bind(task_id)
                    .fetch_optional(&mut *tx)
                    .await?;
            // Locked by another instance's step: it runs the task.
            return Ok(MoveStep::Over(match exists {
                Some(_) => MoveStatus::Running,
                None => MoveStatus::Failed,
            }));
        };
        if owner.is_some_and(|o| *o != *self.instance) && lease_until > now {
            return Ok(MoveStep::Over(MoveStatus::Running));
        }
        match MoveStatus::parse(&task.status) {
            MoveStatus::Running => {}
            MoveStatus::Cancelling => return end(tx, task_id, MoveStatus::Cancelled, None).await,
            other => return Ok(MoveStep::Over(other)),
        }
        sqlx::query("UPDATE move_tasks SET owner = $1, lease_until = $2 WHERE task_id = $3")
            .bind(&*self.instance)
            .bind(now + to_ms(MOVE_LEASE))
            .bind(task_id)
            .execute(&mut *tx)
            .await?;
        if max == 0 {
            tx.commit().await?;
            return Ok(MoveStep::Idle);
        }
        let source = match QueueName::from_key(&task.source) {
            Ok(name) => queues::lookup(&mut tx, &name).await?,
            Err(_) => None,
        };
        let Some(source) = source else {
            return end(tx, task_id, MoveStatus::Failed, Some(NO_QUEUE)).await;
        };
        lock_fifo(&mut tx, &source).await?;
        let rows = pick(&mut tx, &source, max, now).await?;
        if rows.is_empty() {
            return end(tx, task_id, MoveStatus::Completed, None).await;
        }
        // Every destination first: a missing one fails the task before anything moves.
        let mut targets: HashMap<String, QueueInfo> = HashMap::new();
        for row in &rows {
            let Some(name) = task
                .destination
                .as_ref()
                .or(row.dead_letter_source.as_ref())
            else {
                return end(tx, task_id, MoveStatus::Failed, Some(NO_QUEUE)).await;
            };
            if targets.contains_key(name) {
                continue;
            }
            let found = match QueueName::from_key(name) {
                Ok(q) => queues::lookup(&mut tx, &q).await?,
                Err(_) => None,
            };
            let reason = match found {
                Some(q) if q.name.kind() == source.name.kind() => {
                    targets.insert(name.clone(), q);
                    continue;
                }
                Some(_) => "InvalidParameterValue",
                None => NO_QUEUE,
            };
            return end(tx, task_id, MoveStatus::Failed, Some(reason)).await;
        }
        for dest in targets
            .values()
            .filter(|d| d.name.is_fifo() && d.id != source.id)
        {
            let (locked,): (bool,) = sqlx::query_as("SELECT pg_try_advisory_xact_lock($1)")
                .bind(dest.id)
                .fetch_one(&mut *tx)
                .await?;
            if !locked {
                // Busy: nothing moves this time (rolled back), and the runner tries again.
                return Ok(MoveStep::Idle);
            }
        }
        let mut moved: HashMap<i64, (QueueName, i64)> = HashMap::new();
        for row in &rows {
            let name = task
                .destination
                .as_ref()
                .or(row.dead_letter_source.as_ref());
            let dest = &targets[name.expect("checked above")];
            insert_moved(&mut tx, dest, row.id, now).await?;
            moved.entry(dest.id).or_insert((dest.name.clone(), 0)).1 += 1;
        }
        let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
        sqlx::query("DELETE FROM messages WHERE id = ANY($1)")
            .bind(&ids)
            .execute(&mut *tx)
            .await?;
        let total = rows.len() as i64;
        tally::add(&mut tx, source.id, -total).await?;
        for (dest_id, (name, n)) in &moved {
            tally::add(&mut tx, *dest_id, *n).await?;
            listen::notify(&mut tx, name, u64::try_from(*n).unwrap_or(0)).await?;
        }
        sqlx::query("UPDATE move_tasks SET moved = moved + $1 WHERE task_id = $2")
            .bind(total)
            .bind(task_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(MoveStep::Moved(u64::try_from(total).unwrap_or(0)))
    }
}
