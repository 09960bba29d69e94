//! Storing messages on PostgreSQL, within a group writer's transaction (`group.rs`): a
//! standard queue's accepted entries of every send in the group in one multi-row insert; a FIFO
//! queue's one by one under the queue's advisory lock (deduplication within the 5-minute
//! window, sequence numbers). The receipt (id and MD5s) and the attributes' stored form are
//! computed as the SQLite store computes them (`sql/send.rs`); the writer updates the count and
//! notifies waiters (`listen.rs`) once per queue.

use sha2::{Digest, Sha256};

use super::super::rows::to_ms;
use super::super::sql::send::{prepare, Prepared};
use super::{EntryResults, QueueInfo, StoreError, Tx};
use crate::domain::message::{NewMessage, SendReceipt};
use crate::domain::queue::{DedupScope, DEDUP_WINDOW};
use crate::domain::Rejection;

/// What [`stage`] did: each batch's results, and the messages it stored.
pub(super) struct Staged {
    pub results: Vec<EntryResults<SendReceipt>>,
    /// Messages stored (duplicates within a FIFO queue's window are not).
    pub stored: u64,
    /// Waiters to wake: one per visible message, and one if any is delayed (so that it sets
    /// its timer for the delay).
    pub wake: u64,
}

/// Stores `batches` sent to queue `q` in `tx` (the group writer's, `group.rs`; the caller holds
/// the queue's advisory lock if it is FIFO): each entry validated on its own, a rejected entry
/// not stopping the others; a standard queue's accepted entries of every batch in one insert.
pub(super) async fn stage(
    tx: &mut Tx,
    q: &QueueInfo,
    batches: &[&[NewMessage]],
    now: i64,
) -> Result<Staged, StoreError> {
    let prepared: Vec<Vec<Prepared>> = batches.iter().map(|b| prepare(b)).collect();
    let mut results: Vec<EntryResults<SendReceipt>> = batches
        .iter()
        .zip(&prepared)
        .map(|(batch, prepared)| {
            batch
                .iter()
                .zip(prepared)
                .map(|(m, p)| {
                    m.validate(q.name.kind(), &q.settings, false)
                        .map(|()| p.receipt.clone())
                })
                .collect()
        })
        .collect();
    let (mut visible, mut delayed) = (0, 0);
    if q.name.is_fifo() {
        for ((batch, prepared), results) in batches.iter().zip(&prepared).zip(&mut results) {
            let (v, d) = send_fifo(tx, q, batch, prepared, results, now).await?;
            visible += v;
            delayed += d;
        }
    } else {
        let mut rows = Vec::new();
        for ((batch, prepared), results) in batches.iter().zip(&prepared).zip(&results) {
            let (v, d) = standard_rows(q, batch, prepared, results, now, &mut rows);
            visible += v;
            delayed += d;
        }
        insert(tx, q, &rows, now).await?;
    }
    Ok(Staged {
        results,
        stored: visible + delayed,
        wake: visible + u64::from(delayed > 0),
    })
}

/// One row to insert.
struct Row<'a> {
    m: &'a NewMessage,
    receipt: &'a SendReceipt,
    attributes: Option<&'a str>,
    dedup_id: Option<&'a str>,
    visible_at: i64,
}

/// Inserts `rows`, in one statement, with the time `now`.
async fn insert(tx: &mut Tx, q: &QueueInfo, rows: &[Row<'_>], now: i64) -> Result<(), StoreError> {
    if rows.is_empty() {
        return Ok(());
    }
    let text =
        |f: fn(&Row<'_>) -> Option<String>| -> Vec<Option<String>> { rows.iter().map(f).collect() };
    // One statement text whatever the number of rows: a `VALUES` list was parsed and planned
    // anew for each row count, up to 12 ms for a large group.
    sqlx::query(
        "INSERT INTO messages (queue_id, sent_at, retain_from, message_id, body, attributes, \
         md5_of_body, md5_of_attributes, trace_header, group_id, dedup_id, sequence_number, visible_at) \
         SELECT $1, $2, $2, r.* FROM UNNEST($3::text[], $4::text[], $5::text[], $6::text[], \
         $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::int8[]) AS r",
    )
    .bind(q.id)
    .bind(now)
    .bind(text(|r| Some(r.receipt.message_id.clone())))
    .bind(text(|r| Some(r.m.body.clone())))
    .bind(text(|r| r.attributes.map(str::to_owned)))
    .bind(text(|r| Some(r.receipt.md5_of_body.clone())))
    .bind(text(|r| r.receipt.md5_of_attributes.clone()))
    .bind(text(|r| r.m.trace_header.clone()))
    // A standard queue keeps a MessageGroupId as an attribute (fair queues).
    .bind(text(|r| r.m.group_id.clone()))
    .bind(text(|r| r.dedup_id.map(str::to_owned)))
    .bind(text(|r| r.receipt.sequence_number.clone()))
    .bind(rows.iter().map(|r| r.visible_at).collect::<Vec<i64>>())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Adds a standard queue's accepted messages of one batch to `rows`; returns how many are
/// visible and delayed.
fn standard_rows<'a>(
    q: &QueueInfo,
    batch: &'a [NewMessage],
    prepared: &'a [Prepared],
    results: &'a EntryResults<SendReceipt>,
    now: i64,
    rows: &mut Vec<Row<'a>>,
) -> (u64, u64) {
    let (mut visible, mut delayed) = (0, 0);
    for ((m, p), r) in batch.iter().zip(prepared).zip(results) {
        let Ok(receipt) = r else { continue };
        let delay = m.delay.unwrap_or(q.settings.delay);
        if delay.is_zero() {
            visible += 1;
        } else {
            delayed += 1;
        }
        rows.push(Row {
            m,
            receipt,
            attributes: p.attributes.as_deref(),
            dedup_id: None,
            visible_at: now + to_ms(delay),
        });
    }
    (visible, delayed)
}

/// Stores a FIFO queue's accepted messages one by one (the caller holds the queue's advisory
/// lock): a deduplication id seen within the window is accepted and not stored, answering with
/// the original's id and sequence number. Returns how many were stored visible and delayed.
async fn send_fifo(
    tx: &mut Tx,
    q: &QueueInfo,
    batch: &[NewMessage],
    prepared: &[Prepared],
    results: &mut EntryResults<SendReceipt>,
    now: i64,
) -> Result<(u64, u64), StoreError> {
    let (mut visible, mut delayed) = (0, 0);
    for ((m, p), result) in batch.iter().zip(prepared).zip(results.iter_mut()) {
        let Ok(receipt) = result else { continue };
        let Some(group) = m.group_id.as_deref() else {
            *result = Err(Rejection::missing("MessageGroupId"));
            continue;
        };
        let id = m
            .dedup_id
            .clone()
            .unwrap_or_else(|| hex::encode(Sha256::digest(m.body.as_bytes())));
        let scope = match q.dedup_applied {
            DedupScope::Queue => "",
            DedupScope::MessageGroup => group,
        };
        let seen: Option<(String, Option<String>)> = sqlx::query_as(
            "SELECT message_id, sequence_number FROM dedup \
             WHERE queue_id = $1 AND scope = $2 AND dedup_id = $3 AND expires_at > $4",
        )
        .bind(q.id)
        .bind(scope)
        .bind(&id)
        .bind(now)
        .fetch_optional(&mut **tx)
        .await?;
        if let Some((message_id, sequence_number)) = seen {
            receipt.message_id = message_id;
            receipt.sequence_number = sequence_number;
            continue;
        }
        let seq = next_sequences(tx, q.id, 1, now).await?.remove(0);
        sqlx::query(
            "INSERT INTO dedup (queue_id, scope, dedup_id, message_id, sequence_number, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (queue_id, scope, dedup_id) DO UPDATE SET \
             message_id = EXCLUDED.message_id, sequence_number = EXCLUDED.sequence_number, \
             expires_at = EXCLUDED.expires_at",
        )
        .bind(q.id)
        .bind(scope)
        .bind(&id)
        .bind(&receipt.message_id)
        .bind(&seq)
        .bind(now + to_ms(DEDUP_WINDOW))
        .execute(&mut **tx)
        .await?;
        receipt.sequence_number = Some(seq);
        // FIFO queues take no per-message delay; the queue's applies.
        let delay = q.settings.delay;
        if delay.is_zero() {
            visible += 1;
        } else {
            delayed += 1;
        }
        let row = Row {
            m,
            receipt,
            attributes: p.attributes.as_deref(),
            dedup_id: Some(&id),
            visible_at: now + to_ms(delay),
        };
        insert(tx, q, std::slice::from_ref(&row), now).await?;
    }
    Ok((visible, delayed))
}

/// Reserves `n` sequence numbers of a queue: large, increasing, never reused (20 digits),
/// seeded from the clock so they keep increasing across a purge, as in the SQLite store.
pub(super) async fn next_sequences(
    tx: &mut Tx,
    queue_id: i64,
    n: usize,
    now: i64,
) -> Result<Vec<String>, StoreError> {
    if n == 0 {
        return Ok(Vec::new());
    }
    let n = n as i64;
    let (last,): (i64,) = sqlx::query_as(
        "UPDATE queues SET last_sequence = GREATEST(last_sequence, $1) + $2 WHERE id = $3 \
         RETURNING last_sequence",
    )
    .bind(now.saturating_mul(1000))
    .bind(n)
    .bind(queue_id)
    .fetch_one(&mut **tx)
    .await?;
    Ok(((last - n + 1)..=last)
        .map(|v| (10u128.pow(19) + v as u128).to_string())
        .collect())
}
