//! Tombstones on PostgreSQL: what became of a message no longer stored (deleted, filtered out,
//! expired, moved to a dead-letter queue), written by the transaction that deletes it, from the
//! rows its `DELETE … RETURNING` gave back, in one `INSERT … SELECT FROM UNNEST` per delete;
//! kept for `storage.tombstone_retention` (none are written when it is 0) and swept with the
//! expired messages. The same transaction takes the deleted messages off the queue's count
//! ([`removed`]). A purge, a queue's deletion and a move task's step leave no tombstones, as in
//! the SQLite store.

use super::super::sql::peek::TombRow;
use super::super::sql::tombstones::Fate;
use super::{tally, PgStore, StoreError, Tx};

/// What a `DELETE … RETURNING` of messages gives back for their tombstones.
pub(super) const GONE_COLUMNS: &str = "message_id, receive_count, receipt";

/// A deleted message, as its tombstone needs it.
#[derive(sqlx::FromRow, Debug)]
pub(super) struct Gone {
    pub message_id: String,
    pub receive_count: i64,
    pub receipt: Option<i64>,
}

/// `gone` were deleted from queue `queue_id` by `tx`: writes their tombstones (when kept) and
/// takes them off the queue's count. `dead_letter_queue` is where dead-lettered ones went.
pub(super) async fn removed(
    s: &PgStore,
    tx: &mut Tx,
    queue_id: i64,
    fate: Fate,
    dead_letter_queue: Option<&str>,
    gone: &[Gone],
) -> Result<(), StoreError> {
    tally::add(tx, queue_id, -(gone.len() as i64)).await?;
    write(s, tx, queue_id, fate, dead_letter_queue, gone).await
}

/// Writes the tombstones of `gone`, deleted from queue `queue_id` by `tx`, when they are kept;
/// the caller takes them off the queue's count.
pub(super) async fn write(
    s: &PgStore,
    tx: &mut Tx,
    queue_id: i64,
    fate: Fate,
    dead_letter_queue: Option<&str>,
    gone: &[Gone],
) -> Result<(), StoreError> {
    if gone.is_empty() || s.tombstone_ms <= 0 {
        return Ok(());
    }
    // The receive that moves a message to the dead-letter queue does not count (as in the
    // dead-letter queue itself): the tombstone says after how many receives it went.
    let less = i64::from(fate == Fate::DeadLettered);
    let ids: Vec<&str> = gone.iter().map(|g| g.message_id.as_str()).collect();
    let counts: Vec<i64> = gone.iter().map(|g| g.receive_count - less).collect();
    let receipts: Vec<Option<i64>> = gone.iter().map(|g| g.receipt).collect();
    sqlx::query(
        "INSERT INTO tombstones (queue_id, message_id, at, state, receive_count, receipt, dead_letter_queue) \
         SELECT $1, g.message_id, $2, $3, g.receive_count, g.receipt, $4 \
         FROM UNNEST($5::text[], $6::int8[], $7::int8[]) AS g (message_id, receive_count, receipt) \
         ON CONFLICT (queue_id, message_id, at) DO UPDATE SET state = EXCLUDED.state, \
         receive_count = EXCLUDED.receive_count, receipt = EXCLUDED.receipt, \
         dead_letter_queue = EXCLUDED.dead_letter_queue",
    )
    .bind(queue_id)
    .bind(s.now())
    .bind(fate as i64)
    .bind(dead_letter_queue)
    .bind(&ids)
    .bind(&counts)
    .bind(&receipts)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The latest tombstone of `message_id` in queue `queue_id` written after `since`.
pub(super) async fn find(
    s: &PgStore,
    queue_id: i64,
    message_id: &str,
    since: i64,
) -> Result<Option<TombRow>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT at, state, receive_count, receipt, dead_letter_queue FROM tombstones \
         WHERE queue_id = $1 AND message_id = $2 AND at > $3 ORDER BY at DESC LIMIT 1",
    )
    .bind(queue_id)
    .bind(message_id)
    .bind(since)
    .fetch_optional(&s.pool)
    .await?)
}

/// Deletes the tombstones past retention at `now`; returns how many.
pub(super) async fn sweep(s: &PgStore, tx: &mut Tx, now: i64) -> Result<u64, StoreError> {
    Ok(sqlx::query("DELETE FROM tombstones WHERE at <= $1")
        .bind(now - s.tombstone_ms.max(0))
        .execute(&mut **tx)
        .await?
        .rows_affected())
}
