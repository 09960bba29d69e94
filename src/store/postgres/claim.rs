//! Receives on PostgreSQL: standard queues claim with `FOR UPDATE SKIP LOCKED` (two instances
//! never take one message, and neither waits for the other); FIFO queues pick from their group
//! heads under the queue's advisory lock (a group whose oldest message is not visible is
//! blocked, and a receive takes the visible run from the head, in send order); messages past
//! `max_receive_count` move to the dead-letter queue; long polls wait for a wake-up
//! (`listen.rs`) or the next message's `visible_at`, never polling the table.

use std::collections::HashMap;
use std::time::Duration;

use super::super::rows::{to_ms, MessageRow, MESSAGE_COLUMNS};
use super::super::sql::claim::token_for;
use super::super::sql::tombstones::Fate;
use super::send::next_sequences;
use super::tombstones::{self, Gone, GONE_COLUMNS};
use super::{listen, lock_fifo, queues, tally, PgStore, QueueInfo, StoreError, Tx};
use crate::domain::message::Message;
use crate::domain::queue::QueueName;
use crate::domain::Timestamp;

/// How many claim rounds one receive makes when redrive moves some of what it claimed.
const MAX_CLAIM_ROUNDS: usize = 8;

/// What a claim writes: `$1` the lease's end, `$2` now, `$3` the receipt token.
const SET: &str = "SET visible_at = $1, in_flight = TRUE, receive_count = m.receive_count + 1, \
     first_receive_at = CASE WHEN m.receive_count = 0 THEN $2 ELSE m.first_receive_at END, \
     received_at = $2, receipt = $3";

/// Claims up to `want` receivable rows (none past retention, `cutoff`).
async fn claim(
    tx: &mut Tx,
    q: &QueueInfo,
    want: u32,
    (now, until, token, cutoff): (i64, i64, i64, i64),
) -> Result<Vec<MessageRow>, StoreError> {
    if !q.name.is_fifo() {
        // A requeued message (its lease ran out) goes before messages never received, as AWS
        // hands them out; then by `visible_at`. Two range scans of `messages_claim`, each in
        // its order (one `ORDER BY in_flight DESC, ...` sorted every visible row of the queue:
        // 25 ms per claim with 25k queued).
        let sql = format!(
            "WITH requeued AS (SELECT id FROM messages WHERE queue_id = $4 AND in_flight \
             AND visible_at <= $2 AND retain_from > $6 ORDER BY visible_at, id LIMIT $5 \
             FOR UPDATE SKIP LOCKED), \
             fresh AS (SELECT id FROM messages WHERE queue_id = $4 AND NOT in_flight \
             AND visible_at <= $2 AND retain_from > $6 ORDER BY visible_at, id \
             LIMIT $5 - (SELECT COUNT(*) FROM requeued) FOR UPDATE SKIP LOCKED) \
             UPDATE messages m {SET} WHERE m.id IN (SELECT id FROM requeued UNION ALL SELECT id FROM fresh) \
             RETURNING {MESSAGE_COLUMNS}"
        );
        let mut rows: Vec<MessageRow> = sqlx::query_as(&sql)
            .bind(until)
            .bind(now)
            .bind(token)
            .bind(q.id)
            .bind(i64::from(want))
            .bind(cutoff)
            .fetch_all(&mut **tx)
            .await?;
        rows.sort_by_key(|r| r.id);
        return Ok(rows);
    }
    let ids = pick_fifo(tx, q.id, want, now, cutoff).await?;
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!("UPDATE messages m {SET} WHERE m.id = ANY($4) RETURNING {MESSAGE_COLUMNS}");
    let mut rows: Vec<MessageRow> = sqlx::query_as(&sql)
        .bind(until)
        .bind(now)
        .bind(token)
        .bind(&ids)
        .fetch_all(&mut **tx)
        .await?;
    let order: HashMap<i64, usize> = ids.iter().enumerate().map(|(i, id)| (*id, i)).collect();
    rows.sort_by_key(|r| order[&r.id]);
    Ok(rows)
}

/// Up to `want` receivable rows of a FIFO queue in delivery order: the oldest available group's
/// visible run from its head, then the next group's. A group is available exactly when its
/// head (oldest stored message not past retention) is visible (docs/semantics.md §6.3).
pub(super) async fn pick_fifo(
    tx: &mut Tx,
    queue_id: i64,
    want: u32,
    now: i64,
    cutoff: i64,
) -> Result<Vec<i64>, StoreError> {
    let heads: Vec<(String,)> = sqlx::query_as(
        "SELECT group_id FROM (SELECT DISTINCT ON (group_id) group_id, id, visible_at FROM messages \
         WHERE queue_id = $1 AND group_id IS NOT NULL AND retain_from > $3 ORDER BY group_id, id) h \
         WHERE visible_at <= $2 ORDER BY visible_at, id LIMIT $4",
    )
    .bind(queue_id)
    .bind(now)
    .bind(cutoff)
    .bind(i64::from(want))
    .fetch_all(&mut **tx)
    .await?;
    let mut ids = Vec::new();
    for (group,) in heads {
        let remaining = i64::from(want) - ids.len() as i64;
        if remaining <= 0 {
            break;
        }
        let run: Vec<(i64, i64)> = sqlx::query_as(
            "SELECT id, visible_at FROM messages WHERE queue_id = $1 AND group_id = $2 \
             AND retain_from > $3 ORDER BY id LIMIT $4",
        )
        .bind(queue_id)
        .bind(&group)
        .bind(cutoff)
        .bind(remaining)
        .fetch_all(&mut **tx)
        .await?;
        ids.extend(
            run.into_iter()
                .take_while(|&(_, visible_at)| visible_at <= now)
                .map(|(id, _)| id),
        );
    }
    Ok(ids)
}

/// Moves `rows` to the source's dead-letter queue, leaving tombstones; `None` (nothing moved)
/// if it is gone.
async fn dead_letter(
    s: &PgStore,
    tx: &mut Tx,
    src: &QueueInfo,
    rows: &[MessageRow],
    now: i64,
) -> Result<Option<QueueName>, StoreError> {
    let Some(redrive) = &src.settings.redrive else {
        return Ok(None);
    };
    let Some(dlq) = queues::lookup(tx, &redrive.dead_letter_queue).await? else {
        return Ok(None);
    };
    lock_fifo(tx, &dlq).await?;
    let fifo = dlq.name.is_fifo();
    let seqs = if fifo {
        next_sequences(tx, dlq.id, rows.len(), now).await?
    } else {
        Vec::new()
    };
    for (i, row) in rows.iter().enumerate() {
        // As the SQLite store: the receive that triggered the move does not count; a FIFO DLQ
        // restarts the retention clock and takes the message id as deduplication id.
        sqlx::query(
            "INSERT INTO messages (queue_id, message_id, body, attributes, md5_of_body, md5_of_attributes, \
             trace_header, group_id, dedup_id, sequence_number, dead_letter_source, sent_at, retain_from, \
             visible_at, in_flight, receive_count, first_receive_at) \
             SELECT $1, message_id, body, attributes, md5_of_body, md5_of_attributes, trace_header, group_id, \
             CASE WHEN $2 THEN message_id ELSE dedup_id END, $3, $4, sent_at, \
             CASE WHEN $2 THEN $5 ELSE retain_from END, $5, FALSE, receive_count - 1, first_receive_at \
             FROM messages WHERE id = $6",
        )
        .bind(dlq.id)
        .bind(fifo)
        .bind(seqs.get(i))
        .bind(src.name.as_str())
        .bind(now)
        .bind(row.id)
        .execute(&mut **tx)
        .await?;
    }
    let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
    let gone: Vec<Gone> = sqlx::query_as(&format!(
        "DELETE FROM messages WHERE id = ANY($1) RETURNING {GONE_COLUMNS}"
    ))
    .bind(&ids)
    .fetch_all(&mut **tx)
    .await?;
    tally::add(tx, dlq.id, gone.len() as i64).await?;
    let to = dlq.name.as_str();
    tombstones::removed(s, tx, src.id, Fate::DeadLettered, Some(to), &gone).await?;
    listen::notify(tx, &dlq.name, rows.len() as u64).await?;
    Ok(Some(dlq.name))
}

/// A short poll; when it finds nothing, also when the next message becomes receivable by the
/// passage of time, if any.
/// `receiver` is who receives (0: a client; else a mapping's number, `peek.rs`), carried in the
/// receipt token.
pub(super) async fn receive(
    s: &PgStore,
    queue: &QueueName,
    max: u32,
    visibility: Option<Duration>,
    receiver: u16,
) -> Result<(Vec<Message>, Option<Timestamp>), StoreError> {
    let mut tx = s.begin().await?;
    let q = queues::require(&mut tx, queue).await?;
    lock_fifo(&mut tx, &q).await?;
    let now = s.now();
    let until = now + to_ms(visibility.unwrap_or(q.settings.visibility_timeout));
    let cutoff = now - to_ms(q.settings.retention);
    let token = token_for(receiver);
    let limit = q
        .settings
        .redrive
        .as_ref()
        .map_or(u32::MAX, |r| r.max_receive_count);
    let mut out: Vec<MessageRow> = Vec::new();
    for _ in 0..MAX_CLAIM_ROUNDS {
        let want = max.saturating_sub(out.len() as u32);
        if want == 0 {
            break;
        }
        let rows = claim(&mut tx, &q, want, (now, until, token, cutoff)).await?;
        if rows.is_empty() {
            break;
        }
        let (over, keep): (Vec<_>, Vec<_>) = rows
            .into_iter()
            .partition(|r| r.receive_count > i64::from(limit));
        out.extend(keep);
        if over.is_empty() {
            break;
        }
        if dead_letter(s, &mut tx, &q, &over, now).await?.is_none() {
            // The dead-letter queue is gone: deliver rather than lose the messages.
            out.extend(over);
        }
    }
    let next = if out.is_empty() {
        next_visible(&mut tx, &q, now, cutoff).await?
    } else {
        None
    };
    tx.commit().await?;
    Ok((
        out.into_iter().map(|r| r.into_message(q.id)).collect(),
        next,
    ))
}

/// When the next message becomes receivable by the passage of time: for a FIFO queue, the
/// earliest `visible_at` in the future of a group head; for a standard queue, of any message.
async fn next_visible(
    tx: &mut Tx,
    q: &QueueInfo,
    now: i64,
    cutoff: i64,
) -> Result<Option<Timestamp>, StoreError> {
    let sql = if q.name.is_fifo() {
        "SELECT MIN(visible_at) FROM (SELECT DISTINCT ON (group_id) visible_at FROM messages \
         WHERE queue_id = $1 AND group_id IS NOT NULL AND retain_from > $3 ORDER BY group_id, id) h \
         WHERE visible_at > $2"
    } else {
        // The first row of each half of `messages_claim` past `now` (one `MIN` over both read
        // every message in flight: 18 ms with a few thousand).
        "SELECT LEAST(\
         (SELECT visible_at FROM messages WHERE queue_id = $1 AND in_flight AND visible_at > $2 \
          AND retain_from > $3 ORDER BY visible_at LIMIT 1), \
         (SELECT visible_at FROM messages WHERE queue_id = $1 AND NOT in_flight AND visible_at > $2 \
          AND retain_from > $3 ORDER BY visible_at LIMIT 1))"
    };
    let (at,): (Option<i64>,) = sqlx::query_as(sql)
        .bind(q.id)
        .bind(now)
        .bind(cutoff)
        .fetch_one(&mut **tx)
        .await?;
    Ok(at.map(Timestamp::from_millis))
}

/// Receives up to `max`, waiting up to `wait` for something to receive: registered for a
/// wake-up before each look, so a commit between the look and the wait still wakes it.
///
/// # Cancel safety
/// Cancelled while waiting, it has claimed nothing; cancelled inside a claim, the transaction
/// is rolled back. Cancelled between the claim's commit and the answer, the messages stay in
/// flight until their visibility timeout runs out (the SQLite store gives them back at once).
pub(super) async fn receive_wait(
    s: &PgStore,
    queue: &QueueName,
    max: u32,
    visibility: Option<Duration>,
    wait: Duration,
    receiver: u16,
) -> Result<Vec<Message>, StoreError> {
    let deadline = s.clock.now().plus(wait);
    let notify = s.wake.get(queue.as_str());
    loop {
        let woken = notify.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        let (got, next) = receive(s, queue, max, visibility, receiver).await?;
        if !got.is_empty() {
            if got.len() >= max as usize {
                // There may be more: pass the wake on to the next waiter.
                notify.notify_one();
            }
            return Ok(got);
        }
        if s.clock.now() >= deadline {
            return Ok(Vec::new());
        }
        let until = next.filter(|t| *t < deadline).unwrap_or(deadline);
        tokio::select! {
            () = &mut woken => {}
            () = s.clock.sleep_until(until) => {}
        }
    }
}
