//! Message rows: send, receive (with redrive), delete, change visibility, counts, retention.

use std::collections::HashMap;
use std::time::Duration;

use sha2::{Digest, Sha256};
use sqlx::{QueryBuilder, Sqlite, Transaction};

use super::rows::{encode_attributes, to_ms, Claimed, MESSAGE_COLUMNS};
use super::writer::{Counter, Effects};
use super::{fifo, queues, EntryResults, QueueCounts, QueueInfo, Store, StoreError};
use crate::domain::attributes::{md5_hex, md5_of_attributes, AttributeValue};
use crate::domain::message::{Message, NewMessage, ReceiptHandle, SendReceipt};
use crate::domain::queue::{DedupScope, QueueName, DEDUP_WINDOW, MAX_VISIBILITY_TIMEOUT};
use crate::domain::{RejectCode, Rejection, Timestamp};

pub(super) type Tx<'c> = Transaction<'c, Sqlite>;

/// How many claim rounds one receive makes when redrive moves some of what it claimed.
const MAX_CLAIM_ROUNDS: usize = 8;

/// What a send computes before it reaches the writer, on the sender's own task: the receipt
/// (id and MD5s) and the stored form of the attributes.
pub(super) struct Prepared {
    receipt: SendReceipt,
    attributes: Option<String>,
}

/// Prepares every message of a batch (see [`Prepared`]).
pub(super) fn prepare(batch: &[NewMessage]) -> Vec<Prepared> {
    batch
        .iter()
        .map(|m| Prepared {
            receipt: receipt_for(m),
            attributes: encode_attributes(&m.attributes),
        })
        .collect()
}

/// The receipt of an accepted message, before FIFO deduplication fills in its sequence number.
fn receipt_for(m: &NewMessage) -> SendReceipt {
    SendReceipt {
        message_id: uuid::Uuid::new_v4().to_string(),
        md5_of_body: md5_hex(m.body.as_bytes()),
        md5_of_attributes: md5_of_attributes(&m.attributes),
        md5_of_system_attributes: m.trace_header.as_ref().map(|t| {
            let sys = [(
                "AWSTraceHeader".to_owned(),
                AttributeValue::string(t.clone()),
            )];
            md5_of_attributes(sys.iter().map(|(k, v)| (k, v))).expect("one attribute")
        }),
        sequence_number: None,
    }
}

/// Sends the batches of several requests to one queue. Each entry is validated on its own; a
/// standard queue's accepted messages go in with one statement.
pub(super) async fn send(
    tx: &mut Tx<'_>,
    fx: &mut Effects,
    q: &QueueInfo,
    batches: &[(&[NewMessage], &[Prepared])],
    now: i64,
) -> Result<Vec<EntryResults<SendReceipt>>, StoreError> {
    let queue = &q.name;
    let mut results: Vec<EntryResults<SendReceipt>> = batches
        .iter()
        .map(|(batch, prepared)| {
            batch
                .iter()
                .zip(prepared.iter())
                .map(|(m, p)| {
                    m.validate(queue.kind(), &q.settings, false)
                        .map(|()| p.receipt.clone())
                })
                .collect()
        })
        .collect();
    let mut stored = Stored::default();
    for ((batch, prepared), results) in batches.iter().zip(results.iter_mut()) {
        if queue.is_fifo() {
            send_fifo(tx, q, batch, prepared, results, now, &mut stored).await?;
        }
    }
    if !queue.is_fifo() {
        insert_standard(tx, q, batches, &results, now, &mut stored).await?;
    }
    // Deduplicated sends are accepted but not stored, and not counted.
    fx.count(Counter::Sent, queue, stored.visible + stored.delayed);
    // A delayed message wakes one waiter, so that it sets its timer for the delay.
    let delayed = stored.delayed > 0;
    fx.wake(queue, stored.visible + u64::from(delayed));
    Ok(results)
}

/// What a send stored: messages receivable at once, and delayed ones.
#[derive(Default)]
struct Stored {
    visible: u64,
    delayed: u64,
}

impl Stored {
    fn add(&mut self, delay: Duration) {
        if delay.is_zero() {
            self.visible += 1;
        } else {
            self.delayed += 1;
        }
    }
}

/// Most rows one multi-row statement takes. Every row count up to this is a distinct statement
/// text, each prepared once and kept (the writer's statement cache holds them all).
pub(super) const CHUNK: usize = 64;

/// Inserts a standard queue's accepted messages, up to [`CHUNK`] rows per statement.
async fn insert_standard(
    tx: &mut Tx<'_>,
    q: &QueueInfo,
    batches: &[(&[NewMessage], &[Prepared])],
    results: &[EntryResults<SendReceipt>],
    now: i64,
    stored: &mut Stored,
) -> Result<(), StoreError> {
    let mut rows: Vec<(&NewMessage, &SendReceipt, i64, Option<&str>)> = Vec::new();
    for ((batch, prepared), results) in batches.iter().zip(results) {
        for ((m, p), r) in batch.iter().zip(prepared.iter()).zip(results) {
            let Ok(r) = r else { continue };
            let delay = m.delay.unwrap_or(q.settings.delay);
            stored.add(delay);
            rows.push((m, r, now + to_ms(delay), p.attributes.as_deref()));
        }
    }
    for chunk in rows.chunks(CHUNK) {
        let mut insert = QueryBuilder::<Sqlite>::new(
            "INSERT INTO messages (queue_id, message_id, body, attributes, md5_of_body, md5_of_attributes, \
             trace_header, sent_at, retain_from, visible_at) ",
        );
        insert.push_values(chunk, |mut b, (m, r, visible_at, attributes)| {
            b.push_bind(q.id)
                .push_bind(r.message_id.as_str())
                .push_bind(m.body.as_str())
                .push_bind(*attributes)
                .push_bind(r.md5_of_body.as_str())
                .push_bind(r.md5_of_attributes.as_deref())
                .push_bind(m.trace_header.as_deref())
                .push_bind(now)
                .push_bind(now)
                .push_bind(*visible_at);
        });
        insert.build().execute(&mut **tx).await?;
    }
    Ok(())
}

/// Stores a FIFO queue's accepted messages one by one: deduplication, sequence numbers and
/// group heads depend on what the same batch stored before.
async fn send_fifo(
    tx: &mut Tx<'_>,
    q: &QueueInfo,
    batch: &[NewMessage],
    prepared: &[Prepared],
    results: &mut EntryResults<SendReceipt>,
    now: i64,
    stored: &mut Stored,
) -> Result<(), StoreError> {
    for ((m, p), result) in batch.iter().zip(prepared).zip(results.iter_mut()) {
        let Ok(receipt) = result else { continue };
        let group = m
            .group_id
            .as_deref()
            .expect("validated: FIFO messages have a group");
        let id = m
            .dedup_id
            .clone()
            .unwrap_or_else(|| hex::encode(Sha256::digest(m.body.as_bytes())));
        let scope = match q.settings.deduplication_scope {
            DedupScope::Queue => "",
            DedupScope::MessageGroup => group,
        };
        let seen: Option<(String, Option<String>)> = sqlx::query_as(
            "SELECT message_id, sequence_number FROM dedup \
             WHERE queue_id = ? AND scope = ? AND dedup_id = ? AND expires_at > ?",
        )
        .bind(q.id)
        .bind(scope)
        .bind(&id)
        .bind(now)
        .fetch_optional(&mut **tx)
        .await?;
        if let Some((message_id, sequence_number)) = seen {
            // Accepted, not delivered: the original's id and sequence number.
            receipt.message_id = message_id;
            receipt.sequence_number = sequence_number;
            continue;
        }
        let seq = fifo::next_sequences(tx, q.id, 1, now).await?.remove(0);
        sqlx::query(
            "INSERT OR REPLACE INTO dedup (queue_id, scope, dedup_id, message_id, sequence_number, expires_at) \
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(q.id)
        .bind(scope)
        .bind(&id)
        .bind(&receipt.message_id)
        .bind(&seq)
        .bind(now + to_ms(DEDUP_WINDOW))
        .execute(&mut **tx)
        .await?;
        let is_head = fifo::is_empty_group(tx, q.id, group).await?;
        receipt.sequence_number = Some(seq);
        // FIFO queues take no per-message delay; the queue's applies.
        let delay = q.settings.delay;
        sqlx::query(
            "INSERT INTO messages (queue_id, message_id, body, attributes, md5_of_body, md5_of_attributes, \
             trace_header, group_id, dedup_id, sequence_number, sent_at, retain_from, visible_at, is_head) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(q.id)
        .bind(&receipt.message_id)
        .bind(&m.body)
        .bind(p.attributes.as_deref())
        .bind(&receipt.md5_of_body)
        .bind(&receipt.md5_of_attributes)
        .bind(&m.trace_header)
        .bind(&m.group_id)
        .bind(&id)
        .bind(&receipt.sequence_number)
        .bind(now)
        .bind(now)
        .bind(now + to_ms(delay))
        .bind(is_head)
        .execute(&mut **tx)
        .await?;
        stored.add(delay);
    }
    Ok(())
}

/// Deletes the queue's messages that are past retention, in every state.
async fn expire(tx: &mut Tx<'_>, q: &QueueInfo, now: i64) -> Result<u64, StoreError> {
    let cutoff = now - to_ms(q.settings.retention);
    let gone: Vec<(Option<String>,)> = sqlx::query_as(
        "DELETE FROM messages WHERE queue_id = ? AND retain_from <= ? RETURNING group_id",
    )
    .bind(q.id)
    .bind(cutoff)
    .fetch_all(&mut **tx)
    .await?;
    if q.name.is_fifo() && !gone.is_empty() {
        fifo::rehead(tx, q.id, gone.iter().filter_map(|(g,)| g.as_deref())).await?;
    }
    Ok(gone.len() as u64)
}

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
               first_receive_at = COALESCE(first_receive_at, ?2), received_at = ?2, receipt = ?3";
    if !q.name.is_fifo() {
        let sql = format!(
            "UPDATE messages {set} WHERE id IN (SELECT id FROM messages WHERE queue_id = ?4 AND visible_at <= ?2 \
             AND +retain_from > ?6 ORDER BY visible_at LIMIT ?5) RETURNING {MESSAGE_COLUMNS}"
        );
        let mut rows = sqlx::query(&sql)
            .bind(until)
            .bind(now)
            .bind(token)
            .bind(q.id)
            .bind(i64::from(want))
            .bind(cutoff)
            .fetch_all(&mut **tx)
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
        .bind(serde_json::to_string(&ids).expect("ids serialize"))
        .fetch_all(&mut **tx)
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
             in_flight, receive_count, first_receive_at, is_head) \
             SELECT ?1, message_id, body, attributes, md5_of_body, md5_of_attributes, trace_header, group_id, \
             CASE WHEN ?2 THEN message_id ELSE dedup_id END, ?3, ?4, sent_at, \
             CASE WHEN ?2 THEN ?5 ELSE retain_from END, ?5, 0, receive_count - 1, first_receive_at, ?6 \
             FROM messages WHERE id = ?7",
        )
        .bind(dlq.id)
        .bind(fifo)
        .bind(seqs.get(i))
        .bind(src.name.as_str())
        .bind(now)
        .bind(is_head)
        .bind(row.id)
        .execute(&mut **tx)
        .await?;
        sqlx::query("DELETE FROM messages WHERE id = ?")
            .bind(row.id)
            .execute(&mut **tx)
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
pub(super) struct Received {
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

/// Receives for several requests at once (the same queue and visibility timeout): one claim
/// for all of them, dealt out in order. A FIFO queue takes one request at a time, since a
/// group's run must go to one receiver.
#[allow(clippy::too_many_arguments)]
pub(super) async fn receive(
    tx: &mut Tx<'_>,
    fx: &mut Effects,
    q: &QueueInfo,
    maxes: &[u32],
    visibility: Option<Duration>,
    now: i64,
    expire_first: bool,
) -> Result<Vec<Received>, StoreError> {
    let queue = &q.name;
    debug_assert!(!queue.is_fifo() || maxes.len() == 1);
    if expire_first {
        expire(tx, q, now).await?;
    }
    let max: u32 = maxes.iter().sum();
    let until = now + to_ms(visibility.unwrap_or(q.settings.visibility_timeout));
    let token: i64 = rand::random();
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
        match dead_letter(tx, q, &over, now).await? {
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
        "SELECT MIN(visible_at) FROM messages WHERE queue_id = ? AND visible_at > ?"
    };
    let (at,): (Option<i64>,) = sqlx::query_as(sql)
        .bind(q.id)
        .bind(now)
        .fetch_one(&mut **tx)
        .await?;
    Ok(at.map(Timestamp::from_millis))
}

pub(super) async fn receive_wait(
    store: &Store,
    queue: &QueueName,
    max: u32,
    visibility: Option<Duration>,
    wait: Duration,
) -> Result<Vec<Message>, StoreError> {
    let deadline = store.clock.now().plus(wait);
    let notify = store.wake.get(queue.as_str());
    loop {
        // Registered before looking, so a commit between the look and the wait still wakes us.
        let woken = notify.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        let got = store.receive_next(queue, max, visibility).await?;
        if got.len() > 0 {
            if got.len() >= max as usize {
                // There may be more: pass the wake on to the next waiter.
                notify.notify_one();
            }
            return got.into_messages();
        }
        let now = store.clock.now();
        if now >= deadline {
            return Ok(Vec::new());
        }
        let until = match got.next_visible {
            Some(t) if t < deadline => t,
            _ => deadline,
        };
        tokio::select! {
            _ = woken => {}
            _ = store.clock.sleep_until(until) => {}
        }
    }
}

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
}

async fn lease(tx: &mut Tx<'_>, h: &ReceiptHandle) -> Result<Option<LeaseRow>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT receipt, visible_at, received_at, group_id, is_head FROM messages WHERE id = ? AND queue_id = ?",
    )
    .bind(h.row_id)
    .bind(h.queue_id)
    .fetch_optional(&mut **tx)
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

/// Deletes by receipt handle for several requests to one queue.
pub(super) async fn delete(
    tx: &mut Tx<'_>,
    fx: &mut Effects,
    q: &QueueInfo,
    lists: &[&[String]],
    now: i64,
) -> Result<Vec<EntryResults<()>>, StoreError> {
    let parsed: Vec<Vec<Result<ReceiptHandle, Rejection>>> = lists
        .iter()
        .map(|handles| handles.iter().map(|h| parse_for(q, h)).collect())
        .collect();
    if !q.name.is_fifo() {
        let deleted = delete_standard(tx, q, parsed.iter().flatten()).await?;
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
                Ok(h) => delete_fifo(tx, q, handle, &h, now, &mut deleted).await?,
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
    q: &QueueInfo,
    handle: &str,
    h: &ReceiptHandle,
    now: i64,
    deleted: &mut u64,
) -> Result<Result<(), Rejection>, StoreError> {
    let Some(row) = lease(tx, h).await? else {
        // Already deleted (or expired): deleting again succeeds.
        return Ok(Ok(()));
    };
    if !(row.receipt == Some(h.token) && row.visible_at > now) {
        return Ok(Err(Rejection::bad_value(
            "ReceiptHandle",
            handle,
            "The receipt handle has expired.",
        )));
    }
    sqlx::query("DELETE FROM messages WHERE id = ?")
        .bind(h.row_id)
        .execute(&mut **tx)
        .await?;
    *deleted += 1;
    if row.is_head {
        fifo::rehead(tx, q.id, row.group_id.as_deref()).await?;
    }
    Ok(Ok(()))
}

/// Deletes a standard queue's messages by handle in one statement. A handle whose visibility
/// ran out still deletes, unless the message was received again since (the newer receiver owns
/// it and the call is a no-op); a handle of a message already gone succeeds too.
async fn delete_standard<'h>(
    tx: &mut Tx<'_>,
    q: &QueueInfo,
    parsed: impl Iterator<Item = &'h Result<ReceiptHandle, Rejection>>,
) -> Result<u64, StoreError> {
    let pairs: Vec<(i64, i64)> = parsed
        .filter_map(|h| h.as_ref().ok())
        .map(|h| (h.row_id, h.token))
        .collect();
    let mut deleted = 0;
    for chunk in pairs.chunks(CHUNK) {
        // `id IN (...)` makes the plan one primary-key lookup per handle at any depth, and the
        // pair test checks each row's current receipt; `+queue_id` keeps SQLite from scanning
        // the queue through an index on `queue_id` instead.
        let mut delete = QueryBuilder::<Sqlite>::new("DELETE FROM messages WHERE id IN (");
        let mut ids = delete.separated(", ");
        for (id, _) in chunk {
            ids.push_bind(*id);
        }
        delete
            .push(") AND +queue_id = ")
            .push_bind(q.id)
            .push(" AND (id, receipt) IN (");
        delete.push_values(chunk, |mut b, (id, token)| {
            b.push_bind(*id).push_bind(*token);
        });
        delete.push(")");
        deleted += delete.build().execute(&mut **tx).await?.rows_affected();
    }
    Ok(deleted)
}

pub(super) async fn change_visibility(
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
        let Some(row) = row.filter(|r| r.receipt == Some(h.token)) else {
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
            .execute(&mut **tx)
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

pub(super) async fn counts(store: &Store, queue: &QueueName) -> Result<QueueCounts, StoreError> {
    let q = queues::get(store, queue).await?;
    let now = store.clock.now().as_millis();
    let (visible, in_flight, delayed): (i64, i64, i64) = sqlx::query_as(
        "SELECT COALESCE(SUM(visible_at <= ?1), 0), COALESCE(SUM(visible_at > ?1 AND in_flight = 1), 0), \
         COALESCE(SUM(visible_at > ?1 AND in_flight = 0), 0) FROM messages WHERE queue_id = ?2",
    )
    .bind(now)
    .bind(q.id)
    .fetch_one(&store.reader)
    .await?;
    let (oldest,): (Option<i64>,) =
        sqlx::query_as("SELECT MIN(retain_from) FROM messages WHERE queue_id = ?")
            .bind(q.id)
            .fetch_one(&store.reader)
            .await?;
    Ok(QueueCounts {
        visible: visible as u64,
        in_flight: in_flight as u64,
        delayed: delayed as u64,
        oldest_sent_at: oldest.map(Timestamp::from_millis),
    })
}

pub(super) async fn sweep(store: &Store) -> Result<u64, StoreError> {
    let mut total = 0;
    for q in queues::list(store).await? {
        let now = store.clock.now().as_millis();
        let mut tx = store.writer.begin_with("BEGIN IMMEDIATE").await?;
        total += expire(&mut tx, &q, now).await?;
        tx.commit().await?;
    }
    let now = store.clock.now().as_millis();
    sqlx::query("DELETE FROM dedup WHERE expires_at <= ?")
        .bind(now)
        .execute(&store.writer)
        .await?;
    Ok(total)
}
