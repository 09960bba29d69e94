//! Row structs and their conversion to domain types: the only place that knows column names
//! and types.

use std::collections::BTreeMap;
use std::time::Duration;

use sqlx::sqlite::SqliteRow;
use sqlx::{FromRow, Row as _};

use super::types::QueueInfo;
use crate::domain::attributes::Attributes;
use crate::domain::message::{Message, ReceiptHandle, SENDER_ID};
use crate::domain::queue::{
    is_region, DedupScope, Encryption, FifoThroughputLimit, QueueName, QueueSettings, Redrive,
};
use crate::domain::Timestamp;

/// Columns of `queues` (all of them).
pub const QUEUE_COLUMNS: &str = "id, region, name, fifo, visibility_timeout_ms, delay_ms, retention_ms, max_message_size, \
     receive_wait_ms, dead_letter_queue, max_receive_count, redrive_allow_policy, content_based_dedup, dedup_scope, \
     fifo_throughput_limit, tags, created_at, last_modified_at, policy, sse, kms_master_key_id, \
     kms_data_key_reuse_s, dedup_applied";

/// A queue's key ([`QueueName::as_str`]) in SQL, over `queues` aliased `q`: the name for the
/// default region (`region = ''`), else `<region>/<name>`.
pub const QUEUE_KEY: &str = "CASE q.region WHEN '' THEN q.name ELSE q.region || '/' || q.name END";

#[derive(FromRow)]
pub struct QueueRow {
    id: i64,
    region: String,
    name: String,
    #[allow(dead_code)]
    fifo: bool,
    visibility_timeout_ms: i64,
    delay_ms: i64,
    retention_ms: i64,
    max_message_size: i64,
    receive_wait_ms: i64,
    dead_letter_queue: Option<String>,
    max_receive_count: Option<i64>,
    redrive_allow_policy: Option<String>,
    content_based_dedup: bool,
    dedup_scope: String,
    fifo_throughput_limit: String,
    tags: String,
    created_at: i64,
    last_modified_at: i64,
    policy: Option<String>,
    sse: String,
    kms_master_key_id: Option<String>,
    kms_data_key_reuse_s: i64,
    dedup_applied: Option<String>,
}

fn ms(v: i64) -> Duration {
    Duration::from_millis(u64::try_from(v).unwrap_or(0))
}

/// Milliseconds of a duration as stored.
pub fn to_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl QueueRow {
    /// The domain view. Values were validated on the way in; a damaged row degrades to
    /// defaults rather than failing every request on the queue.
    pub fn into_info(self) -> Result<QueueInfo, sqlx::Error> {
        let region = self.region;
        if !region.is_empty() && !is_region(&region) {
            return Err(sqlx::Error::Decode(
                format!("stored queue region {region:?} is not valid").into(),
            ));
        }
        let name = QueueName::parse(&self.name)
            .map_err(|e| {
                sqlx::Error::Decode(
                    format!("stored queue name {:?} is not valid: {e}", self.name).into(),
                )
            })?
            .in_region(&region);
        // A dead-letter queue is in its source's region.
        let redrive = match (self.dead_letter_queue, self.max_receive_count) {
            (Some(q), Some(n)) => QueueName::parse(&q).ok().map(|dlq| Redrive {
                dead_letter_queue: dlq.in_region(&region),
                max_receive_count: n as u32,
            }),
            _ => None,
        };
        let deduplication_scope = DedupScope::parse(&self.dedup_scope).unwrap_or_default();
        let encryption = match (self.sse.as_str(), self.kms_master_key_id) {
            ("kms", Some(key)) => Encryption::Kms(key),
            ("off", _) => Encryption::Off,
            _ => Encryption::SqsManaged,
        };
        Ok(QueueInfo {
            id: self.id,
            name,
            settings: QueueSettings {
                visibility_timeout: ms(self.visibility_timeout_ms),
                delay: ms(self.delay_ms),
                retention: ms(self.retention_ms),
                max_message_size: self.max_message_size as u32,
                receive_wait: ms(self.receive_wait_ms),
                redrive,
                redrive_allow_policy: self.redrive_allow_policy,
                content_based_deduplication: self.content_based_dedup,
                deduplication_scope,
                fifo_throughput_limit: FifoThroughputLimit::parse(&self.fifo_throughput_limit)
                    .unwrap_or_default(),
                policy: self.policy,
                encryption,
                kms_data_key_reuse: Duration::from_secs(
                    u64::try_from(self.kms_data_key_reuse_s).unwrap_or(300),
                ),
            },
            dedup_applied: self
                .dedup_applied
                .as_deref()
                .and_then(DedupScope::parse)
                .unwrap_or(deduplication_scope),
            tags: serde_json::from_str::<BTreeMap<String, String>>(&self.tags).unwrap_or_default(),
            created_at: Timestamp::from_millis(self.created_at),
            last_modified_at: Timestamp::from_millis(self.last_modified_at),
        })
    }
}

/// The `receipt` of a message never received. A send writes it, and `received_at` and
/// `first_receive_at` as the send time, so that each column is as wide on disk as what a
/// receive writes there: a receive rewrites its rows in place and never grows the database, and
/// a database full for sends can always be drained (docs/architecture.md, `store/writer/room.rs`).
/// No receive's token is this value, and no handle carrying it holds a lease.
pub const UNRECEIVED: i64 = i64::MIN;

/// Columns of `messages` that a receive returns.
pub const MESSAGE_COLUMNS: &str =
    "id, message_id, body, attributes, md5_of_body, trace_header, group_id, dedup_id, \
     sequence_number, dead_letter_source, sent_at, receive_count, first_receive_at, receipt";

#[derive(FromRow, Debug)]
pub struct MessageRow {
    pub id: i64,
    pub message_id: String,
    pub body: String,
    pub attributes: Option<String>,
    pub md5_of_body: String,
    pub trace_header: Option<String>,
    pub group_id: Option<String>,
    pub dedup_id: Option<String>,
    pub sequence_number: Option<String>,
    pub dead_letter_source: Option<String>,
    pub sent_at: i64,
    pub receive_count: i64,
    pub first_receive_at: Option<i64>,
    pub receipt: Option<i64>,
}

/// Serializes user attributes for storage; `None` when there are none.
pub fn encode_attributes(a: &Attributes) -> Option<String> {
    (!a.is_empty()).then(|| serde_json::to_string(a).expect("attributes serialize"))
}

impl MessageRow {
    /// The domain message, with a receipt handle for `queue_id`.
    pub fn into_message(self, queue_id: i64) -> Message {
        let token = self.receipt.unwrap_or(0);
        Message {
            receipt_handle: ReceiptHandle {
                queue_id,
                row_id: self.id,
                token,
            }
            .encode(),
            message_id: self.message_id,
            body: self.body,
            md5_of_body: self.md5_of_body,
            attributes: self
                .attributes
                .and_then(|a| serde_json::from_str(&a).ok())
                .unwrap_or_default(),
            trace_header: self.trace_header,
            sent_at: Timestamp::from_millis(self.sent_at),
            receive_count: self.receive_count as u32,
            first_receive_at: Timestamp::from_millis(self.first_receive_at.unwrap_or(self.sent_at)),
            sender_id: SENDER_ID.to_owned(),
            group_id: self.group_id,
            dedup_id: self.dedup_id,
            sequence_number: self.sequence_number,
            dead_letter_source: self
                .dead_letter_source
                .and_then(|q| QueueName::from_key(&q).ok()),
        }
    }
}

/// A row a receive claimed: what the writer needs decoded at once (order, redrive, FIFO heads);
/// the rest is decoded by the receiver on its own task, off the writer's critical path.
pub struct Claimed {
    pub id: i64,
    pub receive_count: i64,
    pub group_id: Option<String>,
    row: SqliteRow,
}

impl Claimed {
    /// Reads a row selected with [`MESSAGE_COLUMNS`].
    pub fn from_row(row: SqliteRow) -> Result<Claimed, sqlx::Error> {
        Ok(Claimed {
            id: row.try_get("id")?,
            receive_count: row.try_get("receive_count")?,
            group_id: row.try_get("group_id")?,
            row,
        })
    }

    /// The domain message, with a receipt handle for `queue_id`.
    pub fn into_message(self, queue_id: i64) -> Result<Message, sqlx::Error> {
        Ok(MessageRow::from_row(&self.row)?.into_message(queue_id))
    }
}
