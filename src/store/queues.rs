//! Queue rows: create, read, update settings, tag, purge, delete.

use std::collections::BTreeMap;

use sqlx::{Sqlite, Transaction};

use super::rows::{to_ms, QueueRow, QUEUE_COLUMNS};
use super::{QueueInfo, Store, StoreError};
use crate::domain::queue::{QueueName, QueueSettings, PURGE_INTERVAL};
use crate::domain::{RejectCode, Rejection};

pub(super) async fn lookup(
    tx: &mut Transaction<'_, Sqlite>,
    name: &QueueName,
) -> Result<Option<QueueInfo>, StoreError> {
    let row: Option<QueueRow> = sqlx::query_as(&format!(
        "SELECT {QUEUE_COLUMNS} FROM queues WHERE name = ?"
    ))
    .bind(name.as_str())
    .fetch_optional(&mut **tx)
    .await?;
    Ok(row.map(QueueRow::into_info))
}

pub(super) async fn require(
    tx: &mut Transaction<'_, Sqlite>,
    name: &QueueName,
) -> Result<QueueInfo, StoreError> {
    lookup(tx, name)
        .await?
        .ok_or_else(|| Rejection::no_queue().into())
}

async fn check_dead_letter(
    tx: &mut Transaction<'_, Sqlite>,
    name: &QueueName,
    settings: &QueueSettings,
) -> Result<(), StoreError> {
    if let Some(r) = &settings.redrive {
        if lookup(tx, &r.dead_letter_queue).await?.is_none() {
            return Err(Rejection::new(
                RejectCode::InvalidParameterValue,
                format!(
                    "Value {{\"deadLetterTargetArn\":\"{}\"}} for parameter RedrivePolicy is invalid. Reason: Dead letter target does not exist.",
                    r.dead_letter_queue
                ),
            )
            .into());
        }
        if r.dead_letter_queue.kind() != name.kind() {
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
                .map(|r| r.dead_letter_queue.as_str().to_owned()),
        )
        .bind(s.redrive.as_ref().map(|r| i64::from(r.max_receive_count)))
        .bind(s.redrive_allow_policy.as_deref())
        .bind(s.content_based_deduplication)
        .bind(s.deduplication_scope.as_str())
        .bind(s.fifo_throughput_limit.as_str())
}

async fn insert(
    tx: &mut Transaction<'_, Sqlite>,
    name: &QueueName,
    s: &QueueSettings,
    tags: &BTreeMap<String, String>,
    now: i64,
) -> Result<(), StoreError> {
    let query = sqlx::query(
        "INSERT INTO queues (name, fifo, visibility_timeout_ms, delay_ms, retention_ms, max_message_size, \
         receive_wait_ms, dead_letter_queue, max_receive_count, redrive_allow_policy, content_based_dedup, \
         dedup_scope, fifo_throughput_limit, tags, created_at, last_modified_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(name.as_str())
    .bind(name.is_fifo());
    bind_settings(query, s)
        .bind(serde_json::to_string(tags).expect("tags serialize"))
        .bind(now)
        .bind(now)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

async fn update(
    tx: &mut Transaction<'_, Sqlite>,
    name: &QueueName,
    s: &QueueSettings,
    now: i64,
) -> Result<(), StoreError> {
    let query = sqlx::query(
        "UPDATE queues SET visibility_timeout_ms = ?, delay_ms = ?, retention_ms = ?, max_message_size = ?, \
         receive_wait_ms = ?, dead_letter_queue = ?, max_receive_count = ?, redrive_allow_policy = ?, \
         content_based_dedup = ?, dedup_scope = ?, fifo_throughput_limit = ?, last_modified_at = ? WHERE name = ?",
    );
    bind_settings(query, s)
        .bind(now)
        .bind(name.as_str())
        .execute(&mut **tx)
        .await?;
    Ok(())
}

fn settings_rejection(name: &QueueName, s: &QueueSettings) -> Result<(), StoreError> {
    match s.problems(name.kind()).into_iter().next() {
        None => Ok(()),
        Some(p) => Err(Rejection::new(
            RejectCode::InvalidAttributeValue,
            format!("Invalid value for {}: {}", p.key, p.message),
        )
        .into()),
    }
}

pub(super) async fn create(
    store: &Store,
    name: &QueueName,
    settings: &QueueSettings,
    tags: &BTreeMap<String, String>,
) -> Result<(QueueInfo, bool), StoreError> {
    settings_rejection(name, settings)?;
    let now = store.clock.now().as_millis();
    let mut tx = store.writer.begin_with("BEGIN IMMEDIATE").await?;
    if let Some(existing) = lookup(&mut tx, name).await? {
        return Ok((existing, false));
    }
    check_dead_letter(&mut tx, name, settings).await?;
    insert(&mut tx, name, settings, tags, now).await?;
    let info = require(&mut tx, name).await?;
    tx.commit().await?;
    Ok((info, true))
}

pub(super) async fn ensure(
    store: &Store,
    name: &QueueName,
    settings: &QueueSettings,
) -> Result<QueueInfo, StoreError> {
    settings_rejection(name, settings)?;
    let now = store.clock.now().as_millis();
    let mut tx = store.writer.begin_with("BEGIN IMMEDIATE").await?;
    match lookup(&mut tx, name).await? {
        Some(existing) if existing.settings == *settings => return Ok(existing),
        Some(_) => update(&mut tx, name, settings, now).await?,
        None => insert(&mut tx, name, settings, &BTreeMap::new(), now).await?,
    }
    let info = require(&mut tx, name).await?;
    tx.commit().await?;
    store.wake.all(name.as_str());
    Ok(info)
}

pub(super) async fn set_settings(
    store: &Store,
    name: &QueueName,
    settings: &QueueSettings,
) -> Result<QueueInfo, StoreError> {
    settings_rejection(name, settings)?;
    let now = store.clock.now().as_millis();
    let mut tx = store.writer.begin_with("BEGIN IMMEDIATE").await?;
    require(&mut tx, name).await?;
    check_dead_letter(&mut tx, name, settings).await?;
    update(&mut tx, name, settings, now).await?;
    let info = require(&mut tx, name).await?;
    tx.commit().await?;
    store.wake.all(name.as_str());
    Ok(info)
}

pub(super) async fn get(store: &Store, name: &QueueName) -> Result<QueueInfo, StoreError> {
    let row: Option<QueueRow> = sqlx::query_as(&format!(
        "SELECT {QUEUE_COLUMNS} FROM queues WHERE name = ?"
    ))
    .bind(name.as_str())
    .fetch_optional(&store.reader)
    .await?;
    row.map(QueueRow::into_info)
        .ok_or_else(|| Rejection::no_queue().into())
}

pub(super) async fn list(store: &Store) -> Result<Vec<QueueInfo>, StoreError> {
    let rows: Vec<QueueRow> =
        sqlx::query_as(&format!("SELECT {QUEUE_COLUMNS} FROM queues ORDER BY name"))
            .fetch_all(&store.reader)
            .await?;
    Ok(rows.into_iter().map(QueueRow::into_info).collect())
}

pub(super) async fn delete(store: &Store, name: &QueueName) -> Result<(), StoreError> {
    let mut tx = store.writer.begin_with("BEGIN IMMEDIATE").await?;
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
    store.metrics.remove_queue(name.as_str());
    store.wake.all(name.as_str());
    Ok(())
}

pub(super) async fn purge(store: &Store, name: &QueueName) -> Result<(), StoreError> {
    let now = store.clock.now().as_millis();
    let mut tx = store.writer.begin_with("BEGIN IMMEDIATE").await?;
    let q = require(&mut tx, name).await?;
    let (last,): (Option<i64>,) = sqlx::query_as("SELECT last_purge_at FROM queues WHERE id = ?")
        .bind(q.id)
        .fetch_one(&mut *tx)
        .await?;
    if last.is_some_and(|l| now - l < to_ms(PURGE_INTERVAL)) {
        return Err(Rejection::new(
            RejectCode::PurgeQueueInProgress,
            format!("Only one PurgeQueue operation on {name} is allowed every 60 seconds."),
        )
        .into());
    }
    sqlx::query("DELETE FROM messages WHERE queue_id = ?")
        .bind(q.id)
        .execute(&mut *tx)
        .await?;
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
    Ok(())
}

async fn write_tags(
    store: &Store,
    name: &QueueName,
    f: impl FnOnce(&mut BTreeMap<String, String>),
) -> Result<(), StoreError> {
    let mut tx = store.writer.begin_with("BEGIN IMMEDIATE").await?;
    let mut q = require(&mut tx, name).await?;
    f(&mut q.tags);
    sqlx::query("UPDATE queues SET tags = ? WHERE id = ?")
        .bind(serde_json::to_string(&q.tags).expect("tags serialize"))
        .bind(q.id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

pub(super) async fn tag(
    store: &Store,
    name: &QueueName,
    tags: &BTreeMap<String, String>,
) -> Result<(), StoreError> {
    write_tags(store, name, |t| {
        t.extend(tags.iter().map(|(k, v)| (k.clone(), v.clone())))
    })
    .await
}

pub(super) async fn untag(
    store: &Store,
    name: &QueueName,
    keys: &[String],
) -> Result<(), StoreError> {
    write_tags(store, name, |t| keys.iter().for_each(|k| drop(t.remove(k)))).await
}

pub(super) async fn dead_letter_sources(
    store: &Store,
    name: &QueueName,
) -> Result<Vec<QueueName>, StoreError> {
    get(store, name).await?;
    let rows: Vec<(String,)> =
        sqlx::query_as("SELECT name FROM queues WHERE dead_letter_queue = ? ORDER BY name")
            .bind(name.as_str())
            .fetch_all(&store.reader)
            .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(n,)| QueueName::parse(&n).ok())
        .collect())
}
