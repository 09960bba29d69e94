//! Retention: deleting messages past their queue's retention period (in every state) and
//! expired deduplication entries (all queues in one statement), and counting a queue's messages
//! by state.

use std::collections::BTreeMap;

use sqlx::SqlitePool;

use super::super::error::StoreError;
use super::super::rows::{to_ms, QUEUE_KEY};
use super::super::types::{QueueCounts, QueueInfo};
use super::tombstones::{Fate, Tombs};
use super::{fifo, Tx};
use crate::domain::Timestamp;

/// Deletes the queue's messages that are past retention, in every state.
pub(super) async fn expire(
    tx: &mut Tx<'_>,
    tombs: &mut Tombs,
    q: &QueueInfo,
    now: i64,
) -> Result<u64, StoreError> {
    let cutoff = now - to_ms(q.settings.retention);
    let wrote = tombs
        .record(tx, Fate::Expired, now, None, |b| {
            b.push("queue_id = ")
                .push_bind(q.id)
                .push(" AND retain_from <= ")
                .push_bind(cutoff);
        })
        .await?;
    let gone: Vec<(Option<String>,)> = sqlx::query_as(
        "DELETE FROM messages WHERE queue_id = ? AND retain_from <= ? RETURNING group_id",
    )
    .bind(q.id)
    .bind(cutoff)
    .fetch_all(&mut *tx)
    .await?;
    if !wrote {
        tombs.missed(gone.len() as u64);
    }
    if q.name.is_fifo() && !gone.is_empty() {
        fifo::rehead(tx, q.id, gone.iter().filter_map(|(g,)| g.as_deref())).await?;
    }
    Ok(gone.len() as u64)
}

/// Every queue's id and key, its messages in flight and delayed at `now` (those with
/// `visible_at > now`, read on the `messages_claim` index, at most `cap` of each per queue, so the
/// cost is the number of queues times at most `cap`, never the depth: `hidden.rs`) and when its
/// oldest was sent (the retention index's first entry). One statement on the reader pool;
/// visible is the kept total less these (`Store::all_counts`).
pub(crate) async fn hidden(
    reader: &SqlitePool,
    now: i64,
    cap: u64,
) -> Result<Vec<Hidden>, StoreError> {
    let rows: Vec<(i64, String, i64, i64, Option<i64>)> = sqlx::query_as(&format!(
        "SELECT q.id, {QUEUE_KEY}, \
         (SELECT COUNT(*) FROM (SELECT 1 FROM messages m WHERE m.queue_id = q.id AND m.visible_at > ?1 AND m.in_flight = 1 LIMIT ?2)), \
         (SELECT COUNT(*) FROM (SELECT 1 FROM messages m WHERE m.queue_id = q.id AND m.visible_at > ?1 AND m.in_flight = 0 LIMIT ?2)), \
         (SELECT MIN(retain_from) FROM messages m WHERE m.queue_id = q.id) \
         FROM queues q ORDER BY q.region, q.name"
    ))
    .bind(now)
    .bind(i64::try_from(cap).unwrap_or(i64::MAX))
    .fetch_all(reader)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(id, key, in_flight, delayed, oldest)| Hidden {
            id,
            key,
            in_flight: in_flight as u64,
            delayed: delayed as u64,
            oldest: oldest.map(Timestamp::from_millis),
        })
        .collect())
}

/// One queue's row of [`hidden`].
pub(crate) struct Hidden {
    pub id: i64,
    pub key: String,
    pub in_flight: u64,
    pub delayed: u64,
    pub oldest: Option<Timestamp>,
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

/// What a sweep did.
#[derive(Debug, Default)]
pub(crate) struct Swept {
    /// Messages each queue (by name) lost.
    pub lost: BTreeMap<String, u64>,
    /// Tombstones written for them, and messages that got none for lack of room.
    pub tombstones_written: u64,
    pub tombstones_skipped: u64,
    /// Tombstones past `storage.tombstone_retention`, deleted.
    pub tombstones_swept: u64,
}

/// The sweep's settings.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SweepPolicy {
    /// `storage.tombstone_retention` in milliseconds (0: none are kept).
    pub tombstone_retention_ms: i64,
    /// The send limit in pages (`writer/room.rs`), for the tombstones' room check.
    pub send_limit: Option<u64>,
}

/// Deletes every queue's expired messages in one statement (`CROSS JOIN` keeps SQLite on the
/// plan of reading the queues first, then each queue's retention index only where it has
/// expired rows, so the cost is the number of queues plus the rows deleted), leaving a
/// tombstone for each, gives the FIFO groups that lost their head a new one, all in one
/// transaction; then deletes the expired deduplication entries and tombstones. Should the
/// tombstones not fit (`SQLITE_FULL`), the expiry runs again without them.
pub(crate) async fn sweep(
    writer: &SqlitePool,
    now: i64,
    policy: SweepPolicy,
) -> Result<Swept, StoreError> {
    let keep = policy.tombstone_retention_ms > 0;
    let mut tombs = Tombs::new(keep, policy.send_limit);
    let mut swept = match expire_all(writer, now, &mut tombs).await {
        Err(_) if tombs.failed => {
            tracing::warn!("the database is full: expired messages are deleted without tombstones");
            tombs = Tombs::no_room();
            expire_all(writer, now, &mut tombs).await?
        }
        done => done?,
    };
    swept.tombstones_written = tombs.written;
    swept.tombstones_skipped = tombs.skipped;
    sqlx::query("DELETE FROM dedup WHERE expires_at <= ?")
        .bind(now)
        .execute(writer)
        .await?;
    swept.tombstones_swept = sqlx::query("DELETE FROM tombstones WHERE at <= ?")
        .bind(now - policy.tombstone_retention_ms)
        .execute(writer)
        .await?
        .rows_affected();
    Ok(swept)
}

/// The expiry of every queue in one transaction (see [`sweep`]).
async fn expire_all(writer: &SqlitePool, now: i64, tombs: &mut Tombs) -> Result<Swept, StoreError> {
    let mut tx = writer.begin_with("BEGIN IMMEDIATE").await?;
    const EXPIRED: &str = "id IN (SELECT m.id FROM queues q CROSS JOIN messages m \
         ON m.queue_id = q.id AND m.retain_from <= ";
    let wrote = tombs
        .record(&mut tx, Fate::Expired, now, None, |b| {
            b.push(EXPIRED).push_bind(now).push(" - q.retention_ms)");
        })
        .await?;
    let gone: Vec<(i64, Option<String>)> = sqlx::query_as(&format!(
        "DELETE FROM messages WHERE {EXPIRED}? - q.retention_ms) RETURNING queue_id, group_id"
    ))
    .bind(now)
    .fetch_all(&mut *tx)
    .await?;
    if !wrote {
        tombs.missed(gone.len() as u64);
    }
    let mut lost: BTreeMap<i64, u64> = BTreeMap::new();
    let mut groups: BTreeMap<i64, Vec<&str>> = BTreeMap::new();
    for (queue, group) in &gone {
        *lost.entry(*queue).or_default() += 1;
        if let Some(g) = group {
            groups.entry(*queue).or_default().push(g);
        }
    }
    for (queue, groups) in groups {
        // Standard (fair) queues keep group ids too, but have no group heads.
        let (is_fifo,): (bool,) = sqlx::query_as("SELECT fifo FROM queues WHERE id = ?")
            .bind(queue)
            .fetch_one(&mut *tx)
            .await?;
        if is_fifo {
            fifo::rehead(&mut tx, queue, groups).await?;
        }
    }
    let mut swept = Swept::default();
    for (queue, n) in lost {
        let (name,): (String,) =
            sqlx::query_as(&format!("SELECT {QUEUE_KEY} FROM queues q WHERE q.id = ?"))
                .bind(queue)
                .fetch_one(&mut *tx)
                .await?;
        swept.lost.insert(name, n);
    }
    tx.commit().await?;
    Ok(swept)
}
