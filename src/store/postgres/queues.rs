//! Queue rows on PostgreSQL: create (CreateQueue's rule, `storage.max_queues`), ensure, settings,
//! lookup, list, delete, purge. The same rules as the SQLite store's `sql/queues.rs`, each one
//! transaction; a queue created or deleted through one instance is there or gone for all, since
//! no instance caches queue rows.

use std::collections::BTreeMap;

use sqlx::postgres::{PgArguments, PgPool};
use sqlx::Postgres;

use super::super::rows::{to_ms, QueueRow, QUEUE_COLUMNS};
use super::super::sql::queues::{purge_allowed, settings_rejection, tags_json};
use super::{listen, tally, PgStore, QueueInfo, StoreError, Tx};
use crate::domain::queue::{Encryption, QueueName, QueueSettings};
use crate::domain::{RejectCode, Rejection};

/// The queue named `name`, if any; `lock` takes its row lock for the rest of the transaction.
pub(super) async fn find(
    tx: &mut Tx,
    name: &QueueName,
    lock: bool,
) -> Result<Option<QueueInfo>, StoreError> {
    let sql = format!(
        "SELECT {QUEUE_COLUMNS} FROM queues WHERE region = $1 AND name = $2{}",
        if lock { " FOR UPDATE" } else { "" }
    );
    let row: Option<QueueRow> = sqlx::query_as(&sql)
        .bind(name.region())
        .bind(name.name())
        .fetch_optional(&mut **tx)
        .await?;
    Ok(row.map(QueueRow::into_info).transpose()?)
}

/// The queue named `name`, if any.
pub(super) async fn lookup(tx: &mut Tx, name: &QueueName) -> Result<Option<QueueInfo>, StoreError> {
    find(tx, name, false).await
}

/// The queue named `name`; `Rejected(QueueDoesNotExist)` if there is none.
pub(super) async fn require(tx: &mut Tx, name: &QueueName) -> Result<QueueInfo, StoreError> {
    lookup(tx, name)
        .await?
        .ok_or_else(|| Rejection::no_queue().into())
}

async fn check_dead_letter(
    tx: &mut Tx,
    name: &QueueName,
    settings: &QueueSettings,
) -> Result<(), StoreError> {
    let Some(r) = &settings.redrive else {
        return Ok(());
    };
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
    if r.dead_letter_queue.kind() != name.kind() || r.dead_letter_queue.region() != name.region() {
        return Err(Rejection::invalid(
            "Value for parameter RedrivePolicy is invalid. Reason: Dead-letter target owner, type and region must be the same as the source queue.",
        )
        .into());
    }
    Ok(())
}

type Query<'q> = sqlx::query::Query<'q, Postgres, PgArguments>;

/// Binds every setting from `$first` on, in the column order both statements below use.
fn bind_settings<'q>(query: Query<'q>, s: &'q QueueSettings) -> Query<'q> {
    let (sse, key) = match &s.encryption {
        Encryption::SqsManaged => ("sqs", None),
        Encryption::Kms(key) => ("kms", Some(key.as_str())),
        Encryption::Off => ("off", None),
    };
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
        .bind(sse)
        .bind(key)
        .bind(i64::try_from(s.kms_data_key_reuse.as_secs()).unwrap_or(300))
}

/// Inserts the queue unless another transaction did; says whether this one did.
async fn insert(
    tx: &mut Tx,
    name: &QueueName,
    s: &QueueSettings,
    tags: &BTreeMap<String, String>,
    now: i64,
) -> Result<bool, StoreError> {
    let query = sqlx::query(
        "INSERT INTO queues (visibility_timeout_ms, delay_ms, retention_ms, max_message_size, \
         receive_wait_ms, dead_letter_queue, max_receive_count, redrive_allow_policy, content_based_dedup, \
         dedup_scope, fifo_throughput_limit, policy, sse, kms_master_key_id, kms_data_key_reuse_s, \
         region, name, fifo, tags, created_at, last_modified_at, dedup_applied) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $20, $10) \
         ON CONFLICT (region, name) DO NOTHING",
    );
    let done = bind_settings(query, s)
        .bind(name.region())
        .bind(name.name())
        .bind(name.is_fifo())
        .bind(tags_json(tags))
        .bind(now)
        .execute(&mut **tx)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Overwrites the settings; `follow` also makes the new deduplication scope the applied one
/// (the configuration file; SetQueueAttributes keeps the one the queue was created with).
async fn update(
    tx: &mut Tx,
    name: &QueueName,
    s: &QueueSettings,
    now: i64,
    follow: bool,
) -> Result<(), StoreError> {
    let query = sqlx::query(
        "UPDATE queues SET visibility_timeout_ms = $1, delay_ms = $2, retention_ms = $3, max_message_size = $4, \
         receive_wait_ms = $5, dead_letter_queue = $6, max_receive_count = $7, redrive_allow_policy = $8, \
         content_based_dedup = $9, dedup_scope = $10, fifo_throughput_limit = $11, policy = $12, sse = $13, \
         kms_master_key_id = $14, kms_data_key_reuse_s = $15, last_modified_at = $16, \
         dedup_applied = CASE WHEN $17 THEN $10 ELSE COALESCE(dedup_applied, dedup_scope) END \
         WHERE region = $18 AND name = $19",
    );
    bind_settings(query, s)
        .bind(now)
        .bind(follow)
        .bind(name.region())
        .bind(name.name())
        .execute(&mut **tx)
        .await?;
    Ok(())
}

pub(super) async fn create(
    s: &PgStore,
    name: &QueueName,
    settings: &QueueSettings,
    tags: &BTreeMap<String, String>,
) -> Result<(QueueInfo, bool), StoreError> {
    settings_rejection(name, settings)?;
    let mut tx = s.begin().await?;
    if let Some(existing) = lookup(&mut tx, name).await? {
        return Ok((existing, false));
    }
    let (queues,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM queues")
        .fetch_one(&mut *tx)
        .await?;
    let max = s.max_queues;
    if u64::try_from(queues).unwrap_or(0) >= max {
        return Err(Rejection::new(
            RejectCode::OverLimit,
            format!(
                "Cannot create queue {name}: there are already {queues} queues, the most this \
                 esmd allows (storage.max_queues = {max}). Delete a queue or raise the limit."
            ),
        )
        .into());
    }
    check_dead_letter(&mut tx, name, settings).await?;
    let created = insert(&mut tx, name, settings, tags, s.now()).await?;
    let info = require(&mut tx, name).await?;
    tx.commit().await?;
    Ok((info, created))
}

pub(super) async fn ensure(
    s: &PgStore,
    name: &QueueName,
    settings: &QueueSettings,
) -> Result<QueueInfo, StoreError> {
    settings_rejection(name, settings)?;
    let mut tx = s.begin().await?;
    let now = s.now();
    match find(&mut tx, name, true).await? {
        Some(existing) if existing.settings == *settings => return Ok(existing),
        Some(_) => {
            update(&mut tx, name, settings, now, true).await?;
            listen::notify(&mut tx, name, 0).await?;
        }
        None => {
            insert(&mut tx, name, settings, &BTreeMap::new(), now).await?;
        }
    }
    let info = require(&mut tx, name).await?;
    tx.commit().await?;
    Ok(info)
}

pub(super) async fn set_settings(
    s: &PgStore,
    name: &QueueName,
    settings: &QueueSettings,
) -> Result<QueueInfo, StoreError> {
    settings_rejection(name, settings)?;
    let mut tx = s.begin().await?;
    find(&mut tx, name, true)
        .await?
        .ok_or_else(Rejection::no_queue)?;
    check_dead_letter(&mut tx, name, settings).await?;
    update(&mut tx, name, settings, s.now(), false).await?;
    listen::notify(&mut tx, name, 0).await?;
    let info = require(&mut tx, name).await?;
    tx.commit().await?;
    Ok(info)
}

pub(super) async fn list(pool: &PgPool) -> Result<Vec<QueueInfo>, StoreError> {
    let rows: Vec<QueueRow> = sqlx::query_as(&format!(
        "SELECT {QUEUE_COLUMNS} FROM queues ORDER BY region, name"
    ))
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(QueueRow::into_info)
        .collect::<Result<_, _>>()?)
}

/// Deletes the queue; its messages and deduplication entries go with it (`ON DELETE CASCADE`).
pub(super) async fn delete(s: &PgStore, name: &QueueName) -> Result<(), StoreError> {
    let mut tx = s.begin().await?;
    let gone = sqlx::query("DELETE FROM queues WHERE region = $1 AND name = $2")
        .bind(name.region())
        .bind(name.name())
        .execute(&mut *tx)
        .await?;
    if gone.rows_affected() == 0 {
        return Err(Rejection::no_queue().into());
    }
    listen::notify(&mut tx, name, 0).await?;
    tx.commit().await?;
    Ok(())
}

pub(super) async fn purge(s: &PgStore, name: &QueueName) -> Result<(), StoreError> {
    let now = s.now();
    let mut tx = s.begin().await?;
    let q = find(&mut tx, name, true)
        .await?
        .ok_or_else(Rejection::no_queue)?;
    let (last,): (Option<i64>,) = sqlx::query_as("SELECT last_purge_at FROM queues WHERE id = $1")
        .bind(q.id)
        .fetch_one(&mut *tx)
        .await?;
    purge_allowed(name, last, now)?;
    let purged = sqlx::query("DELETE FROM messages WHERE queue_id = $1")
        .bind(q.id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    // The delta of exactly the rows deleted: a send committed meanwhile keeps its count.
    tally::add(&mut tx, q.id, -(purged as i64)).await?;
    sqlx::query("DELETE FROM dedup WHERE queue_id = $1")
        .bind(q.id)
        .execute(&mut *tx)
        .await?;
    sqlx::query("UPDATE queues SET last_purge_at = $1 WHERE id = $2")
        .bind(now)
        .bind(q.id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}
