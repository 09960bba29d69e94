//! Queue rows: create, read, update settings, tag, purge, delete. Each change is one short
//! `BEGIN IMMEDIATE` transaction on the writer pool; reads use the reader pool. Wake-ups, the
//! queue cache and events are the caller's ([`Store`](super::super::Store)).

use std::collections::BTreeMap;

use sqlx::{Sqlite, SqlitePool};

use super::Tx;

use super::super::error::StoreError;
use super::super::rows::{to_ms, QueueRow, QUEUE_COLUMNS};
use super::super::types::QueueInfo;
use crate::domain::queue::{Encryption, QueueName, QueueSettings, PURGE_INTERVAL};
use crate::domain::{RejectCode, Rejection};

pub(crate) async fn lookup(
    tx: &mut Tx<'_>,
    name: &QueueName,
) -> Result<Option<QueueInfo>, StoreError> {
    let row: Option<QueueRow> = sqlx::query_as(&format!(
        "SELECT {QUEUE_COLUMNS} FROM queues WHERE region = ? AND name = ?"
    ))
    .bind(name.region())
    .bind(name.name())
    .fetch_optional(&mut *tx)
    .await?;
    Ok(row.map(QueueRow::into_info).transpose()?)
}

pub(crate) async fn require(tx: &mut Tx<'_>, name: &QueueName) -> Result<QueueInfo, StoreError> {
    lookup(tx, name)
        .await?
        .ok_or_else(|| Rejection::no_queue().into())
}

async fn check_dead_letter(
    tx: &mut Tx<'_>,
    name: &QueueName,
    settings: &QueueSettings,
) -> Result<(), StoreError> {
    if let Some(r) = &settings.redrive {
        if lookup(tx, &r.dead_letter_queue).await?.is_none() {
            return Err(Rejection::new(
                RejectCode::InvalidParameterValue,
                format!(
                    "Value {{\"deadLetterTargetArn\":\"{}\"}} for parameter RedrivePolicy is invalid. Reason: Dead letter target does not exist.",
                    r.dead_letter_queue.name()
                ),
            )
            .into());
        }
        if r.dead_letter_queue.kind() != name.kind()
            || r.dead_letter_queue.region() != name.region()
        {
            return Err(Rejection::invalid(
                "Value for parameter RedrivePolicy is invalid. Reason: Dead-letter target owner, type and region must be the same as the source queue.",
            )
            .into());
        }
    }
    Ok(())
}

type Query<'q> = sqlx::query::Query<'q, Sqlite, sqlx::sqlite::SqliteArguments<'q>>;

/// Binds every setting, in the column order both statements below use.
fn bind_settings<'q>(query: Query<'q>, s: &'q QueueSettings) -> Query<'q> {
    query
        .bind(to_ms(s.visibility_timeout))
        .bind(to_ms(s.delay))
        .bind(to_ms(s.retention))
        .bind(i64::from(s.max_message_size))
        .bind(to_ms(s.receive_wait))
        .bind(
            s.redrive
                .as_ref()
                .map(|r| r.dead_letter_queue.name().to_owned()),
        )
        .bind(s.redrive.as_ref().map(|r| i64::from(r.max_receive_count)))
        .bind(s.redrive_allow_policy.as_deref())
        .bind(s.content_based_deduplication)
        .bind(s.deduplication_scope.as_str())
        .bind(s.fifo_throughput_limit.as_str())
        .bind(s.policy.as_deref())
        .bind(match &s.encryption {
            Encryption::SqsManaged => "sqs",
            Encryption::Kms(_) => "kms",
            Encryption::Off => "off",
        })
        .bind(match &s.encryption {
            Encryption::Kms(key) => Some(key.as_str()),
            _ => None,
        })
        .bind(i64::try_from(s.kms_data_key_reuse.as_secs()).unwrap_or(300))
}

async fn insert(
    tx: &mut Tx<'_>,
    name: &QueueName,
    s: &QueueSettings,
    tags: &BTreeMap<String, String>,
    now: i64,
) -> Result<(), StoreError> {
    let query = sqlx::query(
        "INSERT INTO queues (region, name, fifo, visibility_timeout_ms, delay_ms, retention_ms, max_message_size, \
         receive_wait_ms, dead_letter_queue, max_receive_count, redrive_allow_policy, content_based_dedup, \
         dedup_scope, fifo_throughput_limit, policy, sse, kms_master_key_id, kms_data_key_reuse_s, \
         tags, created_at, last_modified_at, dedup_applied) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(name.region())
    .bind(name.name())
    .bind(name.is_fifo());
    bind_settings(query, s)
        .bind(tags_json(tags))
        .bind(now)
        .bind(now)
        .bind(s.deduplication_scope.as_str())
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// Which deduplication scope an update leaves applied.
#[derive(Clone, Copy)]
enum DedupApplied {
    /// The one the queue was created with (SetQueueAttributes, as AWS does).
    Keep,
    /// The new setting's (the configuration file, which defines the queue).
    Follow,
}

async fn update(
    tx: &mut Tx<'_>,
    name: &QueueName,
    s: &QueueSettings,
    now: i64,
    applied: DedupApplied,
) -> Result<(), StoreError> {
    let query = sqlx::query(
        "UPDATE queues SET visibility_timeout_ms = ?, delay_ms = ?, retention_ms = ?, max_message_size = ?, \
         receive_wait_ms = ?, dead_letter_queue = ?, max_receive_count = ?, redrive_allow_policy = ?, \
         content_based_dedup = ?, dedup_scope = ?, fifo_throughput_limit = ?, policy = ?, sse = ?, \
         kms_master_key_id = ?, kms_data_key_reuse_s = ?, last_modified_at = ?, \
         dedup_applied = CASE WHEN ? THEN ? ELSE COALESCE(dedup_applied, dedup_scope) END \
         WHERE region = ? AND name = ?",
    );
    bind_settings(query, s)
        .bind(now)
        .bind(matches!(applied, DedupApplied::Follow))
        .bind(s.deduplication_scope.as_str())
        .bind(name.region())
        .bind(name.name())
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// AWS's purge rule, for both backends: one purge of a queue every 60 seconds
/// (`PurgeQueueInProgress`), `last` being the previous purge's time.
pub(crate) fn purge_allowed(
    name: &QueueName,
    last: Option<i64>,
    now: i64,
) -> Result<(), StoreError> {
    if last.is_some_and(|l| now - l < to_ms(PURGE_INTERVAL)) {
        return Err(Rejection::new(
            RejectCode::PurgeQueueInProgress,
            format!(
                "Only one PurgeQueue operation on {} is allowed every 60 seconds.",
                name.name()
            ),
        )
        .into());
    }
    Ok(())
}

pub(crate) fn settings_rejection(name: &QueueName, s: &QueueSettings) -> Result<(), StoreError> {
    match s.problems(name.kind()).into_iter().next() {
        None => Ok(()),
        Some(p) => Err(Rejection::new(
            RejectCode::InvalidAttributeValue,
            format!("Invalid value for {}: {}", p.key, p.message),
        )
        .into()),
    }
}

pub(crate) async fn create(
    writer: &SqlitePool,
    name: &QueueName,
    settings: &QueueSettings,
    tags: &BTreeMap<String, String>,
    now: i64,
    max_queues: u64,
) -> Result<(QueueInfo, bool), StoreError> {
    settings_rejection(name, settings)?;
    let mut tx = writer.begin_with("BEGIN IMMEDIATE").await?;
    if let Some(existing) = lookup(&mut tx, name).await? {
        return Ok((existing, false));
    }
    let (queues,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM queues")
        .fetch_one(&mut *tx)
        .await?;
    if u64::try_from(queues).unwrap_or(0) >= max_queues {
        return Err(Rejection::new(
            RejectCode::OverLimit,
            format!(
                "Cannot create queue {name}: there are already {queues} queues, the most this \
                 esmd allows (storage.max_queues = {max_queues}). Delete a queue or raise the limit."
            ),
        )
        .into());
    }
    check_dead_letter(&mut tx, name, settings).await?;
    insert(&mut tx, name, settings, tags, now).await?;
    let info = require(&mut tx, name).await?;
    tx.commit().await?;
    Ok((info, true))
}

/// Creates the queue or overwrites its settings; says whether anything changed.
pub(crate) async fn ensure(
    writer: &SqlitePool,
    name: &QueueName,
    settings: &QueueSettings,
    now: i64,
) -> Result<(QueueInfo, bool), StoreError> {
    settings_rejection(name, settings)?;
    let mut tx = writer.begin_with("BEGIN IMMEDIATE").await?;
    match lookup(&mut tx, name).await? {
        Some(existing) if existing.settings == *settings => return Ok((existing, false)),
        Some(_) => update(&mut tx, name, settings, now, DedupApplied::Follow).await?,
        None => insert(&mut tx, name, settings, &BTreeMap::new(), now).await?,
    }
    let info = require(&mut tx, name).await?;
    tx.commit().await?;
    Ok((info, true))
}

pub(crate) async fn set_settings(
    writer: &SqlitePool,
    name: &QueueName,
    settings: &QueueSettings,
    now: i64,
) -> Result<QueueInfo, StoreError> {
    settings_rejection(name, settings)?;
    let mut tx = writer.begin_with("BEGIN IMMEDIATE").await?;
    require(&mut tx, name).await?;
    check_dead_letter(&mut tx, name, settings).await?;
    update(&mut tx, name, settings, now, DedupApplied::Keep).await?;
    let info = require(&mut tx, name).await?;
    tx.commit().await?;
    Ok(info)
}

pub(crate) async fn get(reader: &SqlitePool, name: &QueueName) -> Result<QueueInfo, StoreError> {
    let row: Option<QueueRow> = sqlx::query_as(&format!(
        "SELECT {QUEUE_COLUMNS} FROM queues WHERE region = ? AND name = ?"
    ))
    .bind(name.region())
    .bind(name.name())
    .fetch_optional(reader)
    .await?;
    row.map(QueueRow::into_info)
        .transpose()?
        .ok_or_else(|| Rejection::no_queue().into())
}

pub(crate) async fn list(reader: &SqlitePool) -> Result<Vec<QueueInfo>, StoreError> {
    let rows: Vec<QueueRow> = sqlx::query_as(&format!(
        "SELECT {QUEUE_COLUMNS} FROM queues ORDER BY region, name"
    ))
    .fetch_all(reader)
    .await?;
    Ok(rows
        .into_iter()
        .map(QueueRow::into_info)
        .collect::<Result<_, _>>()?)
}

pub(crate) async fn delete(writer: &SqlitePool, name: &QueueName) -> Result<(), StoreError> {
    let mut tx = writer.begin_with("BEGIN IMMEDIATE").await?;
    let q = require(&mut tx, name).await?;
    sqlx::query("DELETE FROM messages WHERE queue_id = ?")
        .bind(q.id)
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM queues WHERE id = ?")
        .bind(q.id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

pub(crate) async fn purge(
    writer: &SqlitePool,
    name: &QueueName,
    now: i64,
) -> Result<u64, StoreError> {
    let mut tx = writer.begin_with("BEGIN IMMEDIATE").await?;
    let q = require(&mut tx, name).await?;
    let (last,): (Option<i64>,) = sqlx::query_as("SELECT last_purge_at FROM queues WHERE id = ?")
        .bind(q.id)
        .fetch_one(&mut *tx)
        .await?;
    purge_allowed(name, last, now)?;
    let purged = sqlx::query("DELETE FROM messages WHERE queue_id = ?")
        .bind(q.id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    sqlx::query("DELETE FROM dedup WHERE queue_id = ?")
        .bind(q.id)
        .execute(&mut *tx)
        .await?;
    sqlx::query("UPDATE queues SET last_purge_at = ? WHERE id = ?")
        .bind(now)
        .bind(q.id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(purged)
}

async fn write_tags(
    writer: &SqlitePool,
    name: &QueueName,
    f: impl FnOnce(&mut BTreeMap<String, String>),
) -> Result<(), StoreError> {
    let mut tx = writer.begin_with("BEGIN IMMEDIATE").await?;
    let mut q = require(&mut tx, name).await?;
    f(&mut q.tags);
    sqlx::query("UPDATE queues SET tags = ? WHERE id = ?")
        .bind(tags_json(&q.tags))
        .bind(q.id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

pub(crate) async fn tag(
    writer: &SqlitePool,
    name: &QueueName,
    tags: &BTreeMap<String, String>,
) -> Result<(), StoreError> {
    write_tags(writer, name, |t| {
        t.extend(tags.iter().map(|(k, v)| (k.clone(), v.clone())))
    })
    .await
}

pub(crate) async fn untag(
    writer: &SqlitePool,
    name: &QueueName,
    keys: &[String],
) -> Result<(), StoreError> {
    write_tags(writer, name, |t| {
        keys.iter().for_each(|k| drop(t.remove(k)))
    })
    .await
}

pub(crate) async fn dead_letter_sources(
    reader: &SqlitePool,
    name: &QueueName,
) -> Result<Vec<QueueName>, StoreError> {
    get(reader, name).await?;
    // A dead-letter queue is in its sources' region (`check_dead_letter`).
    let rows: Vec<(String,)> = sqlx::query_as(
        "SELECT name FROM queues WHERE region = ? AND dead_letter_queue = ? ORDER BY name",
    )
    .bind(name.region())
    .bind(name.name())
    .fetch_all(reader)
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(n,)| {
            QueueName::parse(&n)
                .ok()
                .map(|q| q.in_region(name.region()))
        })
        .collect())
}

/// Tags as stored: a JSON object of strings.
pub(crate) fn tags_json(tags: &BTreeMap<String, String>) -> String {
    serde_json::Value::from(serde_json::Map::from_iter(
        tags.iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::from(v.as_str()))),
    ))
    .to_string()
}
