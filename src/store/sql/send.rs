//! Storing messages: the receipt computed before the writer, then one multi-row insert per
//! queue for standard queues, and one message at a time for FIFO queues (deduplication,
//! sequence numbers and group heads depend on what the same batch stored before).

use std::time::Duration;

use sha2::{Digest, Sha256};
use sqlx::{QueryBuilder, Sqlite};

use super::super::error::StoreError;
use super::super::report::{Counter, Effects};
use super::super::rows::{encode_attributes, to_ms, UNRECEIVED};
use super::super::types::{EntryResults, QueueInfo};
use super::{fifo, Tx, CHUNK};
use crate::domain::attributes::{md5_hex, md5_of_attributes, AttributeValue};
use crate::domain::message::{NewMessage, SendReceipt};
use crate::domain::queue::{DedupScope, DEDUP_WINDOW};
use crate::domain::Rejection;

/// What a send computes before it reaches the writer, on the sender's own task: the receipt
/// (id and MD5s) and the stored form of the attributes.
pub(crate) struct Prepared {
    pub(crate) receipt: SendReceipt,
    pub(crate) attributes: Option<String>,
}

/// Prepares every message of a batch (see [`Prepared`]).
pub(crate) fn prepare(batch: &[NewMessage]) -> Vec<Prepared> {
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
        md5_of_system_attributes: m.trace_header.as_ref().and_then(|t| {
            let sys = [(
                "AWSTraceHeader".to_owned(),
                AttributeValue::string(t.clone()),
            )];
            md5_of_attributes(sys.iter().map(|(k, v)| (k, v)))
        }),
        sequence_number: None,
    }
}

/// Sends the batches of several requests to one queue. Each entry is validated on its own; a
/// standard queue's accepted messages go in with one statement.
pub(crate) async fn send(
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
             trace_header, group_id, sent_at, retain_from, visible_at, first_receive_at, received_at, receipt) ",
        );
        insert.push_values(chunk, |mut b, (m, r, visible_at, attributes)| {
            b.push_bind(q.id)
                .push_bind(r.message_id.as_str())
                .push_bind(m.body.as_str())
                .push_bind(*attributes)
                .push_bind(r.md5_of_body.as_str())
                .push_bind(r.md5_of_attributes.as_deref())
                .push_bind(m.trace_header.as_deref())
                // A standard queue keeps a MessageGroupId as an attribute (fair queues): it
                // orders nothing, and no row of a standard queue is a group head.
                .push_bind(m.group_id.as_deref())
                .push_bind(now)
                .push_bind(now)
                .push_bind(*visible_at)
                .push_bind(now)
                .push_bind(now)
                .push_bind(UNRECEIVED);
        });
        insert.build().execute(&mut *tx).await?;
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
        let Some(group) = m.group_id.as_deref() else {
            // `validate` refuses this before; answer it the same way should it ever get here.
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
             WHERE queue_id = ? AND scope = ? AND dedup_id = ? AND expires_at > ?",
        )
        .bind(q.id)
        .bind(scope)
        .bind(&id)
        .bind(now)
        .fetch_optional(&mut *tx)
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
        .execute(&mut *tx)
        .await?;
        let is_head = fifo::is_empty_group(tx, q.id, group).await?;
        receipt.sequence_number = Some(seq);
        // FIFO queues take no per-message delay; the queue's applies.
        let delay = q.settings.delay;
        sqlx::query(
            "INSERT INTO messages (queue_id, message_id, body, attributes, md5_of_body, md5_of_attributes, \
             trace_header, group_id, dedup_id, sequence_number, sent_at, retain_from, visible_at, is_head, \
             first_receive_at, received_at, receipt) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
        .bind(now)
        .bind(now)
        .bind(UNRECEIVED)
        .execute(&mut *tx)
        .await?;
        stored.add(delay);
    }
    Ok(())
}
