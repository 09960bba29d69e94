//! Settling received messages: deletes by receipt handle (one statement per queue for standard
//! queues, with the stale-handle rules; FIFO deletes one by one, moving the group head) and
//! visibility changes within the 12-hour cap.

use std::time::Duration;

use sqlx::{QueryBuilder, Sqlite};

use super::super::error::StoreError;
use super::super::report::{Counter, Effects};
use super::super::rows::{to_ms, UNRECEIVED};
use super::super::types::{EntryResults, QueueInfo};
use super::tombstones::{Fate, Tombs};
use super::{fifo, padded, Tx, CHUNK, CHUNKS_PER_TRIP};
use crate::domain::message::ReceiptHandle;
use crate::domain::queue::MAX_VISIBILITY_TIMEOUT;
use crate::domain::{RejectCode, Rejection};

fn not_available(handle: &str) -> Rejection {
    Rejection::bad_value(
        "ReceiptHandle",
        handle,
        "Message does not exist or is not available for visibility timeout change.",
    )
}

#[derive(sqlx::FromRow)]
struct LeaseRow {
    receipt: Option<i64>,
    visible_at: i64,
    received_at: Option<i64>,
    group_id: Option<String>,
    is_head: bool,
    in_flight: bool,
}

impl LeaseRow {
    /// Whether `h` is the handle of the row's latest receive.
    fn holds(&self, h: &ReceiptHandle) -> bool {
        h.token != UNRECEIVED && self.receipt == Some(h.token)
    }

    /// Whether a visibility change with `h` applies: the latest receive's handle, or on a
    /// standard queue the handle of any receive while the message is in flight (AWS changes
    /// the current lease with an earlier handle: LocalStack's validated
    /// `test_terminate_visibility_timeout_after_receive`).
    fn may_change(&self, h: &ReceiptHandle, fifo: bool, now: i64) -> bool {
        self.holds(h)
            || (!fifo
                && h.token != UNRECEIVED
                && self.in_flight
                && self.visible_at > now
                && self.receipt.is_some_and(|r| r != UNRECEIVED))
    }
}

async fn lease(tx: &mut Tx<'_>, h: &ReceiptHandle) -> Result<Option<LeaseRow>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT receipt, visible_at, received_at, group_id, is_head, in_flight FROM messages WHERE id = ? AND queue_id = ?",
    )
    .bind(h.row_id)
    .bind(h.queue_id)
    .fetch_optional(&mut *tx)
    .await?)
}

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

/// Deletes by receipt handle for several requests to one queue, leaving a tombstone of `fate`
/// (deleted, or filtered out by a mapping) for each message deleted.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn delete(
    tx: &mut Tx<'_>,
    fx: &mut Effects,
    tombs: &mut Tombs,
    q: &QueueInfo,
    lists: &[&[String]],
    fate: Fate,
    now: i64,
) -> Result<Vec<EntryResults<()>>, StoreError> {
    let parsed: Vec<Vec<Result<ReceiptHandle, Rejection>>> = lists
        .iter()
        .map(|handles| handles.iter().map(|h| parse_for(q, h)).collect())
        .collect();
    if !q.name.is_fifo() {
        let deleted = delete_standard(tx, tombs, q, parsed.iter().flatten(), fate, now).await?;
        fx.count(Counter::Deleted, &q.name, deleted);
        return Ok(parsed
            .into_iter()
            .map(|p| p.into_iter().map(|h| h.map(|_| ())).collect())
            .collect());
    }
    let mut all = Vec::with_capacity(lists.len());
    let mut deleted = 0u64;
    for (handles, parsed) in lists.iter().zip(parsed) {
        let mut results = Vec::with_capacity(handles.len());
        for (handle, h) in handles.iter().zip(parsed) {
            results.push(match h {
                Ok(h) => delete_fifo(tx, tombs, q, (handle, &h), fate, now, &mut deleted).await?,
                Err(r) => Err(r),
            });
        }
        all.push(results);
    }
    fx.count(Counter::Deleted, &q.name, deleted);
    // The next message of each group the deletes unblocked.
    fx.wake(&q.name, deleted);
    Ok(all)
}

/// A FIFO delete: refused once the handle's visibility ran out (the group may have moved on).
async fn delete_fifo(
    tx: &mut Tx<'_>,
    tombs: &mut Tombs,
    q: &QueueInfo,
    (handle, h): (&str, &ReceiptHandle),
    fate: Fate,
    now: i64,
    deleted: &mut u64,
) -> Result<Result<(), Rejection>, StoreError> {
    let Some(row) = lease(tx, h).await? else {
        // Already deleted (or expired): deleting again succeeds.
        return Ok(Ok(()));
    };
    if !(row.holds(h) && row.visible_at > now) {
        return Ok(Err(Rejection::bad_value(
            "ReceiptHandle",
            handle,
            "The receipt handle has expired.",
        )));
    }
    let id = h.row_id;
    *deleted += tombs
        .delete(tx, fate, now, 1, |b, _| {
            b.push("id = ").push_bind(id);
        })
        .await?;
    if row.is_head {
        fifo::rehead(tx, q.id, row.group_id.as_deref()).await?;
    }
    Ok(Ok(()))
}

/// Deletes a standard queue's messages by handle, in one round trip for up to
/// [`CHUNKS_PER_TRIP`] × [`CHUNK`] handles. A handle whose visibility
/// ran out still deletes, unless the message was received again since (the newer receiver owns
/// it and the call is a no-op); a handle of a message already gone succeeds too.
async fn delete_standard<'h>(
    tx: &mut Tx<'_>,
    tombs: &mut Tombs,
    q: &QueueInfo,
    parsed: impl Iterator<Item = &'h Result<ReceiptHandle, Rejection>>,
    fate: Fate,
    now: i64,
) -> Result<u64, StoreError> {
    let mut pairs: Vec<(i64, i64)> = parsed
        .filter_map(|h| h.as_ref().ok())
        .filter(|h| h.token != UNRECEIVED)
        .map(|h| (h.row_id, h.token))
        .collect();
    if pairs.is_empty() {
        return Ok(0);
    }
    // Padded with pairs that match no row (no message has id 0) to a power of two, or past
    // one chunk to whole chunks, so the statement texts are few and each is prepared once.
    pairs.resize(padded(pairs.len()), (0, 0));
    let mut deleted = 0;
    for list in pairs.chunks(CHUNK * CHUNKS_PER_TRIP) {
        let chunks: Vec<&[(i64, i64)]> = list.chunks(CHUNK).collect();
        // `id IN (...)` makes the plan one primary-key lookup per handle at any depth, and the
        // pair test checks each row's current receipt; `+queue_id` keeps SQLite from scanning
        // the queue through an index on `queue_id` instead.
        let rows = |b: &mut QueryBuilder<'_, Sqlite>, k: usize| {
            let chunk = chunks[k];
            b.push("id IN (");
            let mut ids = b.separated(", ");
            for (id, _) in chunk {
                ids.push_bind(*id);
            }
            b.push(") AND +queue_id = ")
                .push_bind(q.id)
                .push(" AND (id, receipt) IN (");
            b.push_values(chunk, |mut b, (id, token)| {
                b.push_bind(*id).push_bind(*token);
            });
            b.push(")");
        };
        // The tombstones first, over the same rows; every chunk in one round trip.
        deleted += tombs.delete(tx, fate, now, chunks.len(), rows).await?;
    }
    Ok(deleted)
}

pub(crate) async fn change_visibility(
    tx: &mut Tx<'_>,
    fx: &mut Effects,
    q: &QueueInfo,
    entries: &[(String, Duration)],
    now: i64,
) -> Result<EntryResults<()>, StoreError> {
    let mut results = Vec::with_capacity(entries.len());
    let (mut made_visible, mut later) = (0u64, 0u64);
    for (handle, timeout) in entries {
        let h = match parse_for(q, handle) {
            Ok(h) => h,
            Err(r) => {
                results.push(Err(r));
                continue;
            }
        };
        let row = lease(tx, &h).await?;
        let fifo = q.name.is_fifo();
        let Some(row) = row.filter(|r| r.may_change(&h, fifo, now)) else {
            results.push(Err(not_available(handle)));
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
        sqlx::query("UPDATE messages SET visible_at = ?, in_flight = 1 WHERE id = ?")
            .bind(until)
            .bind(h.row_id)
            .execute(&mut *tx)
            .await?;
        let _ = row.visible_at;
        if *timeout == Duration::ZERO {
            made_visible += 1;
        } else {
            // A waiter resets its timer for the new visibility.
            later = 1;
        }
        results.push(Ok(()));
    }
    fx.wake(&q.name, made_visible + later);
    Ok(results)
}
