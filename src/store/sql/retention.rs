//! Retention: deleting messages past their queue's retention period (in every state) and
//! expired deduplication entries (all queues in one statement), and counting a queue's messages
//! by state.

use std::collections::BTreeMap;

use sqlx::SqlitePool;

use super::super::error::StoreError;
use super::super::rows::to_ms;
use super::super::types::{QueueCounts, QueueInfo};
use super::{fifo, Tx};
use crate::domain::Timestamp;

/// Deletes the queue's messages that are past retention, in every state.
pub(super) async fn expire(tx: &mut Tx<'_>, q: &QueueInfo, now: i64) -> Result<u64, StoreError> {
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

/// The messages of every queue in flight and delayed at `now` (those with `visible_at > now`,
/// read on the `messages_claim` index, so the cost is the number of queues plus the messages
/// not visible, never the visible backlog) and when its oldest was sent (the retention
/// index's first entry). One statement on the reader pool; visible is the kept total less
/// these (`Store::all_counts`).
pub(crate) async fn hidden(
    reader: &SqlitePool,
    now: i64,
) -> Result<Vec<(String, u64, u64, Option<Timestamp>)>, StoreError> {
    let rows: Vec<(String, i64, i64, Option<i64>)> = sqlx::query_as(
        "SELECT q.name, \
         (SELECT COUNT(*) FROM messages m WHERE m.queue_id = q.id AND m.visible_at > ?1 AND m.in_flight = 1), \
         (SELECT COUNT(*) FROM messages m WHERE m.queue_id = q.id AND m.visible_at > ?1 AND m.in_flight = 0), \
         (SELECT MIN(retain_from) FROM messages m WHERE m.queue_id = q.id) \
         FROM queues q ORDER BY q.name",
    )
    .bind(now)
    .fetch_all(reader)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(name, in_flight, delayed, oldest)| {
            (
                name,
                in_flight as u64,
                delayed as u64,
                oldest.map(Timestamp::from_millis),
            )
        })
        .collect())
}

/// [`hidden`] for one queue (by id).
pub(crate) async fn hidden_of(
    reader: &SqlitePool,
    queue_id: i64,
    now: i64,
) -> Result<(u64, u64, Option<Timestamp>), StoreError> {
    let (in_flight, delayed, oldest): (i64, i64, Option<i64>) = sqlx::query_as(
        "SELECT \
         (SELECT COUNT(*) FROM messages WHERE queue_id = ?2 AND visible_at > ?1 AND in_flight = 1), \
         (SELECT COUNT(*) FROM messages WHERE queue_id = ?2 AND visible_at > ?1 AND in_flight = 0), \
         (SELECT MIN(retain_from) FROM messages WHERE queue_id = ?2)",
    )
    .bind(now)
    .bind(queue_id)
    .fetch_one(reader)
    .await?;
    Ok((
        in_flight as u64,
        delayed as u64,
        oldest.map(Timestamp::from_millis),
    ))
}

/// Message counts of `q` by state at `now`, read on the reader pool by reading every row of
/// the queue (the check that the kept counts are right; `Store::counts_scanned`).
pub(crate) async fn counts(
    reader: &SqlitePool,
    q: &QueueInfo,
    now: i64,
) -> Result<QueueCounts, StoreError> {
    let (visible, in_flight, delayed): (i64, i64, i64) = sqlx::query_as(
        "SELECT COALESCE(SUM(visible_at <= ?1), 0), COALESCE(SUM(visible_at > ?1 AND in_flight = 1), 0), \
         COALESCE(SUM(visible_at > ?1 AND in_flight = 0), 0) FROM messages WHERE queue_id = ?2",
    )
    .bind(now)
    .bind(q.id)
    .fetch_one(reader)
    .await?;
    let (oldest,): (Option<i64>,) =
        sqlx::query_as("SELECT MIN(retain_from) FROM messages WHERE queue_id = ?")
            .bind(q.id)
            .fetch_one(reader)
            .await?;
    Ok(QueueCounts {
        visible: visible as u64,
        in_flight: in_flight as u64,
        delayed: delayed as u64,
        oldest_sent_at: oldest.map(Timestamp::from_millis),
    })
}

/// Deletes every queue's expired messages in one statement (`CROSS JOIN` keeps SQLite on the
/// plan of reading the queues first, then each queue's retention index only where it has
/// expired rows, so the cost is the number of queues plus the rows deleted), gives the FIFO groups that lost their head a new one, all in one transaction, and
/// deletes the expired deduplication entries. Returns how many messages each queue (by name)
/// lost.
pub(crate) async fn sweep(
    writer: &SqlitePool,
    now: i64,
) -> Result<BTreeMap<String, u64>, StoreError> {
    let mut tx = writer.begin_with("BEGIN IMMEDIATE").await?;
    let gone: Vec<(i64, Option<String>)> = sqlx::query_as(
        "DELETE FROM messages WHERE id IN (SELECT m.id FROM queues q CROSS JOIN messages m \
         ON m.queue_id = q.id AND m.retain_from <= ? - q.retention_ms) \
         RETURNING queue_id, group_id",
    )
    .bind(now)
    .fetch_all(&mut *tx)
    .await?;
    let mut lost: BTreeMap<i64, u64> = BTreeMap::new();
    let mut groups: BTreeMap<i64, Vec<&str>> = BTreeMap::new();
    for (queue, group) in &gone {
        *lost.entry(*queue).or_default() += 1;
        if let Some(g) = group {
            groups.entry(*queue).or_default().push(g);
        }
    }
    for (queue, groups) in groups {
        fifo::rehead(&mut tx, queue, groups).await?;
    }
    let mut by_name = BTreeMap::new();
    for (queue, n) in lost {
        let (name,): (String,) = sqlx::query_as("SELECT name FROM queues WHERE id = ?")
            .bind(queue)
            .fetch_one(&mut *tx)
            .await?;
        by_name.insert(name, n);
    }
    tx.commit().await?;
    sqlx::query("DELETE FROM dedup WHERE expires_at <= ?")
        .bind(now)
        .execute(writer)
        .await?;
    Ok(by_name)
}
