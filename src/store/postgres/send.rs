//! Storing messages on PostgreSQL: a standard queue's accepted entries in one multi-row insert;
//! a FIFO queue's one by one under the queue's advisory lock (deduplication within the 5-minute
//! window, sequence numbers). The receipt (id and MD5s) and the attributes' stored form are
//! computed as the SQLite store computes them (`sql/send.rs`), and the commit notifies waiters
//! (`listen.rs`).

use sha2::{Digest, Sha256};
use sqlx::{Postgres, QueryBuilder};

use super::super::rows::to_ms;
use super::super::sql::send::{prepare, Prepared};
use super::{listen, lock_fifo, queues, tally, EntryResults, PgStore, QueueInfo, StoreError, Tx};
use crate::domain::message::{NewMessage, SendReceipt};
use crate::domain::queue::{DedupScope, QueueName, DEDUP_WINDOW};
use crate::domain::Rejection;

/// Most rows one insert takes.
const CHUNK: usize = 64;

/// Sends one batch: each entry validated on its own; a rejected entry does not stop the others.
pub(super) async fn send(
    s: &PgStore,
    queue: &QueueName,
    batch: &[NewMessage],
) -> Result<EntryResults<SendReceipt>, StoreError> {
    let prepared = prepare(batch);
    let mut tx = s.begin().await?;
    let q = queues::require(&mut tx, queue).await?;
    lock_fifo(&mut tx, &q).await?;
    let now = s.now();
    let mut results: EntryResults<SendReceipt> = batch
        .iter()
        .zip(&prepared)
        .map(|(m, p)| {
            m.validate(queue.kind(), &q.settings, false)
                .map(|()| p.receipt.clone())
        })
        .collect();
    let (visible, delayed) = if queue.is_fifo() {
        send_fifo(&mut tx, &q, batch, &prepared, &mut results, now).await?
    } else {
        insert_standard(&mut tx, &q, batch, &prepared, &results, now).await?
    };
    tally::add(&mut tx, q.id, (visible + delayed) as i64).await?;
    // A delayed message wakes one waiter, so that it sets its timer for the delay.
    let wake = visible + u64::from(delayed > 0);
    if wake > 0 {
        listen::notify(&mut tx, queue, wake).await?;
    }
    tx.commit().await?;
    Ok(results)
}

/// One row to insert.
struct Row<'a> {
    m: &'a NewMessage,
    receipt: &'a SendReceipt,
    attributes: Option<&'a str>,
    dedup_id: Option<&'a str>,
    visible_at: i64,
}

/// Inserts `rows`, up to [`CHUNK`] per statement, with the time `now`.
async fn insert(tx: &mut Tx, q: &QueueInfo, rows: &[Row<'_>], now: i64) -> Result<(), StoreError> {
    for chunk in rows.chunks(CHUNK) {
        let mut insert = QueryBuilder::<Postgres>::new(
            "INSERT INTO messages (queue_id, message_id, body, attributes, md5_of_body, md5_of_attributes, \
             trace_header, group_id, dedup_id, sequence_number, sent_at, retain_from, visible_at) ",
        );
        insert.push_values(chunk, |mut b, r| {
            b.push_bind(q.id)
                .push_bind(r.receipt.message_id.clone())
                .push_bind(r.m.body.clone())
                .push_bind(r.attributes.map(str::to_owned))
                .push_bind(r.receipt.md5_of_body.clone())
                .push_bind(r.receipt.md5_of_attributes.clone())
                .push_bind(r.m.trace_header.clone())
                // A standard queue keeps a MessageGroupId as an attribute (fair queues).
                .push_bind(r.m.group_id.clone())
                .push_bind(r.dedup_id.map(str::to_owned))
                .push_bind(r.receipt.sequence_number.clone())
                .push_bind(now)
                .push_bind(now)
                .push_bind(r.visible_at);
        });
        insert.build().execute(&mut **tx).await?;
    }
    Ok(())
}

/// Inserts a standard queue's accepted messages; returns how many are visible and delayed.
async fn insert_standard(
    tx: &mut Tx,
    q: &QueueInfo,
    batch: &[NewMessage],
    prepared: &[Prepared],
    results: &EntryResults<SendReceipt>,
    now: i64,
) -> Result<(u64, u64), StoreError> {
    let (mut visible, mut delayed) = (0, 0);
    let mut rows = Vec::new();
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
    insert(tx, q, &rows, now).await?;
    Ok((visible, delayed))
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
