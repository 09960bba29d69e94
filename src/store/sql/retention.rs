//! Retention: deleting messages past their queue's retention period (in every state) and
//! expired deduplication entries, and counting a queue's messages by state.

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

/// Message counts of `q` by state at `now`, read on the reader pool.
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

/// Deletes every queue's expired messages (one short transaction per queue) and the expired
/// deduplication entries. Returns how many messages were deleted.
pub(crate) async fn sweep(
    writer: &SqlitePool,
    queues: &[QueueInfo],
    now: impl Fn() -> i64,
) -> Result<u64, StoreError> {
    let mut total = 0;
    for q in queues {
        let mut tx = writer.begin_with("BEGIN IMMEDIATE").await?;
        total += expire(&mut tx, q, now()).await?;
        tx.commit().await?;
    }
    sqlx::query("DELETE FROM dedup WHERE expires_at <= ?")
        .bind(now())
        .execute(writer)
        .await?;
    Ok(total)
}
