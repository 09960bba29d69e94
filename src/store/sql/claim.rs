//! Claiming messages for receives: one claim statement for every standard receive of a group,
//! FIFO groups from their heads, messages past `max_receive_count` moved to the dead-letter
//! queue, and when nothing is receivable, the time the next message will be.

use std::collections::HashMap;
use std::time::Duration;

use super::super::error::StoreError;
use super::super::report::{Counter, Effects};
use super::super::rows::{to_ms, Claimed, MESSAGE_COLUMNS, UNRECEIVED};
use super::super::types::QueueInfo;
use super::tombstones::{Fate, Tombs};
use super::{fifo, queues, retention, Tx};
use crate::domain::message::Message;
use crate::domain::queue::QueueName;
use crate::domain::Timestamp;

/// How many claim rounds one receive makes when redrive moves some of what it claimed.
const MAX_CLAIM_ROUNDS: usize = 8;

async fn claim(
    tx: &mut Tx<'_>,
    q: &QueueInfo,
    want: u32,
    now: i64,
    until: i64,
    token: i64,
) -> Result<Vec<Claimed>, StoreError> {
    // Expired rows are deleted only now and then (see `Writer`); they are never handed out.
    let cutoff = now - to_ms(q.settings.retention);
    let set = "SET visible_at = ?1, in_flight = 1, receive_count = receive_count + 1, \
               first_receive_at = CASE WHEN receive_count = 0 THEN ?2 ELSE first_receive_at END, \
               received_at = ?2, receipt = ?3";
    if !q.name.is_fifo() {
        let sql = format!(
            "UPDATE messages {set} WHERE id IN (\
             SELECT id FROM (SELECT id FROM messages WHERE queue_id = ?4 AND in_flight = 1 AND visible_at <= ?2 \
             AND +retain_from > ?6 ORDER BY visible_at LIMIT ?5) \
             UNION ALL \
             SELECT id FROM (SELECT id FROM messages WHERE queue_id = ?4 AND in_flight = 0 AND visible_at <= ?2 \
             AND +retain_from > ?6 ORDER BY visible_at LIMIT ?5) \
             LIMIT ?5) RETURNING {MESSAGE_COLUMNS}"
        );
        let mut rows = sqlx::query(&sql)
            .bind(until)
            .bind(now)
            .bind(token)
            .bind(q.id)
            .bind(i64::from(want))
            .bind(cutoff)
            .fetch_all(&mut *tx)
            .await?
            .into_iter()
            .map(Claimed::from_row)
            .collect::<Result<Vec<_>, _>>()?;
        rows.sort_by_key(|r| r.id);
        return Ok(rows);
    }
    let ids = fifo::pick(tx, q.id, want, now).await?;
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!("UPDATE messages {set} WHERE id IN (SELECT value FROM json_each(?4)) RETURNING {MESSAGE_COLUMNS}");
    let mut rows = sqlx::query(&sql)
        .bind(until)
        .bind(now)
        .bind(token)
        .bind(json_array(&ids))
        .fetch_all(&mut *tx)
        .await?
        .into_iter()
        .map(Claimed::from_row)
        .collect::<Result<Vec<_>, _>>()?;
    let order: HashMap<i64, usize> = ids.iter().enumerate().map(|(i, id)| (*id, i)).collect();
    rows.sort_by_key(|r| order[&r.id]);
    Ok(rows)
}

/// Moves rows that exceeded the redrive policy to the dead-letter queue. Returns how many moved
/// (zero if the dead-letter queue no longer exists, in which case nothing moves).
async fn dead_letter(
    tx: &mut Tx<'_>,
    tombs: &mut Tombs,
    src: &QueueInfo,
    rows: &[Claimed],
    now: i64,
) -> Result<Option<QueueName>, StoreError> {
    let Some(redrive) = &src.settings.redrive else {
        return Ok(None);
    };
    let Some(dlq) = queues::lookup(tx, &redrive.dead_letter_queue).await? else {
        return Ok(None);
    };
    let fifo = dlq.name.is_fifo();
    // The source queue's tombstones, over the rows about to move.
    let ids = json_array(&rows.iter().map(|r| r.id).collect::<Vec<_>>());
    let wrote = tombs
        .record(tx, Fate::DeadLettered, now, Some(dlq.name.as_str()), |b| {
            b.push("id IN (SELECT value FROM json_each(")
                .push_bind(ids.clone())
                .push("))");
        })
        .await?;
    if !wrote {
        tombs.missed(rows.len() as u64);
    }
    let seqs = if fifo {
        fifo::next_sequences(tx, dlq.id, rows.len(), now).await?
    } else {
        Vec::new()
    };
    for (i, row) in rows.iter().enumerate() {
        let is_head = match (&row.group_id, fifo) {
            (Some(g), true) => fifo::is_empty_group(tx, dlq.id, g).await?,
            _ => false,
        };
        // The receive that triggered the move does not count: the DLQ shows the source's count
        // plus its own receives. Standard DLQs keep the original retention clock; FIFO ones
        // restart it, and replace the deduplication id with the message id.
        sqlx::query(
            "INSERT INTO messages (queue_id, message_id, body, attributes, md5_of_body, md5_of_attributes, \
             trace_header, group_id, dedup_id, sequence_number, dead_letter_source, sent_at, retain_from, visible_at, \
             in_flight, receive_count, first_receive_at, is_head, received_at, receipt) \
             SELECT ?1, message_id, body, attributes, md5_of_body, md5_of_attributes, trace_header, group_id, \
             CASE WHEN ?2 THEN message_id ELSE dedup_id END, ?3, ?4, sent_at, \
             CASE WHEN ?2 THEN ?5 ELSE retain_from END, ?5, 0, receive_count - 1, first_receive_at, ?6, ?5, ?8 \
             FROM messages WHERE id = ?7",
        )
        .bind(dlq.id)
        .bind(fifo)
        .bind(seqs.get(i))
        .bind(src.name.as_str())
        .bind(now)
        .bind(is_head)
        .bind(row.id)
        .bind(UNRECEIVED)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM messages WHERE id = ?")
            .bind(row.id)
            .execute(&mut *tx)
            .await?;
    }
    if src.name.is_fifo() {
        fifo::rehead(
            tx,
            src.id,
            rows.iter().filter_map(|r| r.group_id.as_deref()),
        )
        .await?;
    }
    Ok(Some(dlq.name))
}

/// What a receive got, as rows (turned into messages by the caller, off the writer task); when
/// nothing, also when the next message becomes receivable by the passage of time (a delay or a
/// visibility timeout running out), if any.
pub(crate) struct Received {
    rows: Vec<Claimed>,
    queue_id: i64,
    pub next_visible: Option<Timestamp>,
}

impl Received {
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn into_messages(self) -> Result<Vec<Message>, StoreError> {
        let queue_id = self.queue_id;
        Ok(self
            .rows
            .into_iter()
            .map(|r| r.into_message(queue_id))
            .collect::<Result<_, _>>()?)
    }
}

/// One claim for the receives of a group that share it.
pub(crate) struct Claim<'a> {
    /// Each request's maximum, in order.
    pub maxes: &'a [u32],
    /// The visibility timeout (the queue's when `None`).
    pub visibility: Option<Duration>,
    /// Who receives: the low bits of the receipt token (`Store::receiver`).
    pub receiver: u16,
    pub now: i64,
    /// Whether to delete the queue's expired messages first.
    pub expire_first: bool,
}

/// The receipt token of a claim by `receiver`: 46 random bits, then the receiver in the low 16,
/// in [2^62, 2^63): never `UNRECEIVED`, and always 8 bytes on disk like it, so a receive never
/// grows a row. Peek and explain read the receiver back from it ([`receiver_of`]).
pub(crate) fn token_for(receiver: u16) -> i64 {
    let random = (rand::random::<u64>() >> 2) | (1 << 62);
    ((random & !0xFFFF) | u64::from(receiver)) as i64
}

/// The receiver a receipt token names (see [`token_for`]).
pub(crate) fn receiver_of(token: i64) -> u16 {
    (token & 0xFFFF) as u16
}

/// Receives for several requests at once (the same queue, visibility timeout and receiver): one
/// claim for all of them, dealt out in order. A FIFO queue takes one request at a time, since a
/// group's run must go to one receiver.
pub(crate) async fn receive(
    tx: &mut Tx<'_>,
    fx: &mut Effects,
    tombs: &mut Tombs,
    q: &QueueInfo,
    claim_: Claim<'_>,
) -> Result<Vec<Received>, StoreError> {
    let Claim {
        maxes,
        visibility,
        receiver,
        now,
        expire_first,
    } = claim_;
    let queue = &q.name;
    debug_assert!(!queue.is_fifo() || maxes.len() == 1);
    if expire_first {
        let expired = retention::expire(tx, tombs, q, now).await?;
        fx.count(Counter::Expired, queue, expired);
    }
    let max: u32 = maxes.iter().sum();
    let until = now + to_ms(visibility.unwrap_or(q.settings.visibility_timeout));
    let token = token_for(receiver);
    let mut out: Vec<Claimed> = Vec::new();
    let mut moved = 0u64;
    let mut woken_dlq = None;
    for _ in 0..MAX_CLAIM_ROUNDS {
        let want = max.saturating_sub(out.len() as u32);
        if want == 0 {
            break;
        }
        let rows = claim(tx, q, want, now, until, token).await?;
        if rows.is_empty() {
            break;
        }
        let limit = q
            .settings
            .redrive
            .as_ref()
            .map_or(u32::MAX, |r| r.max_receive_count);
        let (over, keep): (Vec<_>, Vec<_>) = rows
            .into_iter()
            .partition(|r| r.receive_count as u32 > limit);
        out.extend(keep);
        if over.is_empty() {
            break;
        }
        match dead_letter(tx, tombs, q, &over, now).await? {
            Some(dlq) => {
                moved += over.len() as u64;
                woken_dlq = Some(dlq);
            }
            // The dead-letter queue is gone: deliver rather than lose the messages.
            None => out.extend(over),
        }
    }
    if let Some(dlq) = woken_dlq {
        fx.wake(&dlq, moved);
        fx.count(Counter::DeadLettered, queue, moved);
        fx.count(Counter::Arrived, &dlq, moved);
    }
    fx.count(Counter::Received, queue, out.len() as u64);
    // Requests are served in order, so the last one comes away empty exactly when the rows do
    // not reach it; only then is the next visibility time needed.
    let last_empty = out.len() as u32 <= max - maxes.last().copied().unwrap_or(0);
    let next_visible = if last_empty {
        next_visible(tx, q, now).await?
    } else {
        None
    };
    let mut rows = out.into_iter();
    Ok(maxes
        .iter()
        .map(|&n| {
            let rows: Vec<Claimed> = rows.by_ref().take(n as usize).collect();
            Received {
                next_visible: if rows.is_empty() { next_visible } else { None },
                rows,
                queue_id: q.id,
            }
        })
        .collect())
}

/// When the next message of the queue becomes receivable by the passage of time, if any.
async fn next_visible(
    tx: &mut Tx<'_>,
    q: &QueueInfo,
    now: i64,
) -> Result<Option<Timestamp>, StoreError> {
    let sql = if q.name.is_fifo() {
        "SELECT MIN(visible_at) FROM messages WHERE queue_id = ? AND is_head = 1 AND visible_at > ?"
    } else {
        "SELECT MIN(at) FROM (\
         SELECT MIN(visible_at) AS at FROM messages WHERE queue_id = ?1 AND in_flight = 0 AND visible_at > ?2 \
         UNION ALL \
         SELECT MIN(visible_at) FROM messages WHERE queue_id = ?1 AND in_flight = 1 AND visible_at > ?2)"
    };
    let (at,): (Option<i64>,) = sqlx::query_as(sql)
        .bind(q.id)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
    Ok(at.map(Timestamp::from_millis))
}

/// `ids` as a JSON array, for `json_each`.
fn json_array(ids: &[i64]) -> String {
    let items: Vec<String> = ids.iter().map(i64::to_string).collect();
    format!("[{}]", items.join(","))
}
