//! The message counts of every queue on PostgreSQL, for `/metrics`: [`PgStore::all_counts`]
//! costs the number of queues (plus the messages in flight or delayed, read on an index), not
//! the number of messages, as the SQLite store's does. Every transaction that inserts or
//! deletes messages adds its delta to `queue_counts` ([`add`]) before it commits, so the sum of
//! a queue's shards is its stored messages in every committed state, whichever instance wrote
//! them; a random shard per delta keeps concurrent writers of one queue from waiting on one
//! row. [`PgStore::counts_scanned`] reads every row instead: what the kept counts must agree
//! with. Both count messages past retention until the sweep deletes them (as SQLite's do).

use super::{PgStore, QueueCounts, StoreError, Tx};
use crate::domain::queue::QueueName;
use crate::domain::Timestamp;

/// How many shards a queue's count is spread over.
const SHARDS: i64 = 8;

/// Adds `delta` stored messages to queue `queue_id`'s count, in `tx`.
pub(super) async fn add(tx: &mut Tx, queue_id: i64, delta: i64) -> Result<(), StoreError> {
    if delta == 0 {
        return Ok(());
    }
    let shard = i64::from(rand::random::<u8>()) % SHARDS;
    sqlx::query(
        "INSERT INTO queue_counts (queue_id, shard, total) VALUES ($1, $2, $3) \
         ON CONFLICT (queue_id, shard) DO UPDATE SET total = queue_counts.total + EXCLUDED.total",
    )
    .bind(queue_id)
    .bind(shard)
    .bind(delta)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Counts as stored: `u64`, never negative.
fn n(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

impl PgStore {
    /// Every queue's counts, sorted by region and name, in one statement (one snapshot): the
    /// kept totals less the messages in flight or delayed.
    pub async fn all_counts(&self) -> Result<Vec<(QueueName, QueueCounts)>, StoreError> {
        let rows: Vec<(String, String, i64, i64, i64, Option<i64>)> = sqlx::query_as(
            "SELECT q.region, q.name, \
             COALESCE((SELECT SUM(total) FROM queue_counts c WHERE c.queue_id = q.id), 0)::BIGINT, \
             (SELECT COUNT(*) FROM messages m WHERE m.queue_id = q.id AND m.in_flight AND m.visible_at > $1), \
             (SELECT COUNT(*) FROM messages m WHERE m.queue_id = q.id AND NOT m.in_flight AND m.visible_at > $1), \
             (SELECT MIN(retain_from) FROM messages m WHERE m.queue_id = q.id) \
             FROM queues q ORDER BY q.region, q.name",
        )
        .bind(self.now())
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .filter_map(|(region, name, total, in_flight, delayed, oldest)| {
                let name = QueueName::parse(&name).ok()?.in_region(&region);
                let (in_flight, delayed) = (n(in_flight), n(delayed));
                let counts = QueueCounts {
                    visible: n(total).saturating_sub(in_flight + delayed),
                    in_flight,
                    delayed,
                    oldest_sent_at: oldest.map(Timestamp::from_millis),
                };
                Some((name, counts))
            })
            .collect())
    }
}
