//! Settling received messages on PostgreSQL, with the SQLite store's rules (`sql/settle.rs`):
//! delete by receipt handle (standard: a handle whose visibility ran out still deletes unless
//! the message was received again since, in which case the call succeeds and deletes nothing;
//! FIFO: refused once the visibility ran out), change visibility within the 12-hour cap; and
//! the counts by state and the retention sweep. Deletes run in a group writer's transaction
//! (`group.rs`), which takes what they delete off the queues' counts; they and the sweep leave
//! tombstones (`tombstones.rs`).

use std::time::Duration;

use std::collections::BTreeMap;

use super::super::rows::to_ms;
use super::super::sql::tombstones::Fate;
use super::tombstones::{self, Gone, GONE_COLUMNS};
use super::{
    listen, lock_fifo, queues, EntryResults, PgStore, QueueCounts, QueueInfo, StoreError, Tx,
};
use crate::domain::message::ReceiptHandle;
use crate::domain::queue::{QueueName, MAX_VISIBILITY_TIMEOUT};
use crate::domain::{RejectCode, Rejection, Timestamp};

/// The handle, if it is one of `q`'s.
fn parse_for(q: &QueueInfo, handle: &str) -> Result<ReceiptHandle, Rejection> {
    let h = ReceiptHandle::parse(handle)?;
    if h.queue_id != q.id {
        return Err(Rejection::new(
            RejectCode::ReceiptHandleIsInvalid,
            format!("The input receipt handle \"{handle}\" is not a valid receipt handle."),
        ));
    }
    Ok(h)
}

/// A received row's lease, read with its row lock.
#[derive(sqlx::FromRow)]
struct Lease {
    receipt: Option<i64>,
    visible_at: i64,
    received_at: Option<i64>,
    in_flight: bool,
}

impl Lease {
    /// Whether `h` is the handle of the row's latest receive.
    fn holds(&self, h: &ReceiptHandle) -> bool {
        self.receipt == Some(h.token)
    }
}

async fn lease(tx: &mut super::Tx, h: &ReceiptHandle) -> Result<Option<Lease>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT receipt, visible_at, received_at, in_flight FROM messages \
         WHERE id = $1 AND queue_id = $2 FOR UPDATE",
    )
    .bind(h.row_id)
    .bind(h.queue_id)
    .fetch_optional(&mut **tx)
    .await?)
}

/// What [`stage_delete`] did: each list's results, and the messages it deleted.
pub(super) struct Staged {
    pub results: Vec<EntryResults<()>>,
    /// Messages deleted.
    pub removed: u64,
    /// Waiters to wake: on a FIFO queue, one per delete (the next message of its group).
    pub wake: u64,
}

/// Deletes by receipt handle, in `tx` (the group writer's, `group.rs`; the caller holds a FIFO
/// queue's advisory lock), the handles of each of `lists`; the tombstones say `fate`
/// (deleted, or filtered out by a mapping). A standard queue's deletes of every list share one
/// statement; the caller takes the deleted messages off the queue's count.
pub(super) async fn stage_delete(
    s: &PgStore,
    tx: &mut Tx,
    q: &QueueInfo,
    lists: &[&[String]],
    fate: Fate,
    now: i64,
) -> Result<Staged, StoreError> {
    let parsed: Vec<Vec<_>> = lists
        .iter()
        .map(|handles| handles.iter().map(|h| parse_for(q, h)).collect())
        .collect();
    if !q.name.is_fifo() {
        let (ids, tokens): (Vec<i64>, Vec<i64>) = parsed
            .iter()
            .flatten()
            .filter_map(|h| h.as_ref().ok())
            .map(|h| (h.row_id, h.token))
            .unzip();
        // A row locked by a claim in flight is waited for, then checked against its new receipt.
        let gone: Vec<Gone> = sqlx::query_as(&format!(
            // Primary-key lookups whatever the statistics say: with a queue filling faster than
            // autovacuum analyzes it, the planner took the queue's index and read every row of
            // the queue (8 ms per delete of 10 with 20k queued; `+ 0` keeps that index out).
            "DELETE FROM messages WHERE id = ANY($2::int8[]) AND queue_id + 0 = $1 AND (id, receipt) IN \
             (SELECT * FROM UNNEST($2::int8[], $3::int8[])) RETURNING {GONE_COLUMNS}"
        ))
        .bind(q.id)
        .bind(&ids)
        .bind(&tokens)
        .fetch_all(&mut **tx)
        .await?;
        tombstones::write(s, tx, q.id, fate, None, &gone).await?;
        return Ok(Staged {
            results: parsed
                .into_iter()
                .map(|list| list.into_iter().map(|h| h.map(|_| ())).collect())
                .collect(),
            removed: gone.len() as u64,
            wake: 0,
        });
    }
    let mut all = Vec::with_capacity(lists.len());
    let mut deleted: Vec<Gone> = Vec::new();
    for (handles, parsed) in lists.iter().zip(parsed) {
        let mut results = Vec::with_capacity(handles.len());
        for (handle, h) in handles.iter().zip(parsed) {
            let h = match h {
                Ok(h) => h,
                Err(r) => {
                    results.push(Err(r));
                    continue;
                }
            };
            let Some(row) = lease(tx, &h).await? else {
                // Already deleted (or expired): deleting again succeeds.
                results.push(Ok(()));
                continue;
            };
            if !(row.holds(&h) && row.visible_at > now) {
                results.push(Err(Rejection::bad_value(
                    "ReceiptHandle",
                    handle,
                    "The receipt handle has expired.",
                )));
                continue;
            }
            let gone: Gone = sqlx::query_as(&format!(
                "DELETE FROM messages WHERE id = $1 RETURNING {GONE_COLUMNS}"
            ))
            .bind(h.row_id)
            .fetch_one(&mut **tx)
            .await?;
            deleted.push(gone);
            results.push(Ok(()));
        }
        all.push(results);
    }
    tombstones::write(s, tx, q.id, fate, None, &deleted).await?;
    Ok(Staged {
        results: all,
        removed: deleted.len() as u64,
        // The next message of each group the deletes unblocked.
        wake: deleted.len() as u64,
    })
}

pub(super) async fn change_visibility(
    s: &PgStore,
    queue: &QueueName,
    entries: &[(String, Duration)],
) -> Result<EntryResults<()>, StoreError> {
    let mut tx = s.begin().await?;
    let q = queues::require(&mut tx, queue).await?;
    lock_fifo(&mut tx, &q).await?;
    let now = s.now();
    let fifo = queue.is_fifo();
    let mut results = Vec::with_capacity(entries.len());
    let (mut made_visible, mut later) = (0u64, 0u64);
    for (handle, timeout) in entries {
        let h = match parse_for(&q, handle) {
            Ok(h) => h,
            Err(r) => {
                results.push(Err(r));
                continue;
            }
        };
        // The latest receive's handle; on a standard queue also an earlier receive's while the
        // message is in flight (AWS changes the current lease with it).
        let ok = |r: &Lease| {
            r.holds(&h) || (!fifo && r.in_flight && r.visible_at > now && r.receipt.is_some())
        };
        let Some(row) = lease(&mut tx, &h).await?.filter(ok) else {
            results.push(Err(Rejection::bad_value(
                "ReceiptHandle",
                handle,
                "Message does not exist or is not available for visibility timeout change.",
            )));
            continue;
        };
        let until = now + to_ms(*timeout);
        if *timeout > MAX_VISIBILITY_TIMEOUT
            || until - row.received_at.unwrap_or(now) > to_ms(MAX_VISIBILITY_TIMEOUT)
        {
            results.push(Err(Rejection::bad_value(
                "VisibilityTimeout",
                timeout.as_secs(),
                "Total VisibilityTimeout for the message is beyond the limit [43200 seconds]",
            )));
            continue;
        }
        sqlx::query("UPDATE messages SET visible_at = $1, in_flight = TRUE WHERE id = $2")
            .bind(until)
            .bind(h.row_id)
            .execute(&mut *tx)
            .await?;
        if timeout.is_zero() {
            made_visible += 1;
        } else {
            // A waiter resets its timer for the new visibility.
            later = 1;
        }
        results.push(Ok(()));
    }
    if made_visible + later > 0 {
        listen::notify(&mut tx, queue, made_visible + later).await?;
    }
    tx.commit().await?;
    Ok(results)
}

/// Counts by state, of the messages not past retention.
pub(super) async fn counts(s: &PgStore, name: &QueueName) -> Result<QueueCounts, StoreError> {
    let mut tx = s.begin().await?;
    let q = queues::require(&mut tx, name).await?;
    let now = s.now();
    let (visible, in_flight, delayed, oldest): (i64, i64, i64, Option<i64>) = sqlx::query_as(
        "SELECT COUNT(*) FILTER (WHERE visible_at <= $1), \
         COUNT(*) FILTER (WHERE visible_at > $1 AND in_flight), \
         COUNT(*) FILTER (WHERE visible_at > $1 AND NOT in_flight), MIN(retain_from) \
         FROM messages WHERE queue_id = $2 AND retain_from > $3",
    )
    .bind(now)
    .bind(q.id)
    .bind(now - to_ms(q.settings.retention))
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    let n = |v: i64| u64::try_from(v).unwrap_or(0);
    Ok(QueueCounts {
        visible: n(visible),
        in_flight: n(in_flight),
        delayed: n(delayed),
        oldest_sent_at: oldest.map(Timestamp::from_millis),
    })
}

/// A message the sweep deleted, with its queue.
#[derive(sqlx::FromRow)]
struct Expired {
    queue_id: i64,
    #[sqlx(flatten)]
    gone: Gone,
}

/// Deletes every queue's messages past retention (leaving tombstones), expired deduplication
/// entries and tombstones past their retention.
pub(super) async fn sweep(s: &PgStore) -> Result<u64, StoreError> {
    let now = s.now();
    let mut tx = s.begin().await?;
    let rows: Vec<Expired> = sqlx::query_as(
        "DELETE FROM messages m USING queues q \
         WHERE m.queue_id = q.id AND m.retain_from <= $1 - q.retention_ms \
         RETURNING m.queue_id, m.message_id, m.receive_count, m.receipt",
    )
    .bind(now)
    .fetch_all(&mut *tx)
    .await?;
    let expired = rows.len() as u64;
    let mut by_queue: BTreeMap<i64, Vec<Gone>> = BTreeMap::new();
    for r in rows {
        by_queue.entry(r.queue_id).or_default().push(r.gone);
    }
    for (queue_id, gone) in &by_queue {
        tombstones::removed(s, &mut tx, *queue_id, Fate::Expired, None, gone).await?;
    }
    tombstones::sweep(s, &mut tx, now).await?;
    sqlx::query("DELETE FROM dedup WHERE expires_at <= $1")
        .bind(now)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(expired)
}

impl PgStore {
    /// A queue's counts by state from a read of every row of the queue (what
    /// [`PgStore::all_counts`] must agree with).
    pub async fn counts_scanned(&self, name: &QueueName) -> Result<QueueCounts, StoreError> {
        let mut tx = self.begin().await?;
        let q = queues::require(&mut tx, name).await?;
        let (visible, in_flight, delayed, oldest): (i64, i64, i64, Option<i64>) = sqlx::query_as(
            "SELECT COUNT(*) FILTER (WHERE visible_at <= $1), \
             COUNT(*) FILTER (WHERE visible_at > $1 AND in_flight), \
             COUNT(*) FILTER (WHERE visible_at > $1 AND NOT in_flight), MIN(retain_from) \
             FROM messages WHERE queue_id = $2",
        )
        .bind(self.now())
        .bind(q.id)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(QueueCounts {
            visible: count(visible),
            in_flight: count(in_flight),
            delayed: count(delayed),
            oldest_sent_at: oldest.map(Timestamp::from_millis),
        })
    }
}

/// A count as stored (never negative).
fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}
