//! The message counts of every queue on PostgreSQL, for `/metrics`: [`PgStore::all_counts`]
//! costs the number of queues (each one's messages in flight or delayed read on an index up to a
//! cap, `hidden.rs`), not the number of messages, as the SQLite store's does. Every transaction that inserts or
//! deletes messages adds its delta to `queue_counts` ([`add`]) before it commits, so the sum of
//! a queue's shards is its stored messages in every committed state, whichever instance wrote
//! them; a random shard per delta keeps concurrent writers of one queue from waiting on one
//! row. [`PgStore::counts_scanned`] reads every row instead: what the kept counts must agree
//! with. Both count messages past retention until the sweep deletes them (as SQLite's do).

use std::sync::Arc;

use super::super::hidden::{Count, Full};
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

/// One queue's row of the counts: (id, region, name, total, in flight, delayed, oldest).
type Row = (i64, String, String, i64, i64, i64, Option<i64>);

impl PgStore {
    /// Sets how many index entries a `/metrics` read counts at most per queue and state before
    /// the queue's figures come from a full count (`hidden.rs`): tests make it small.
    #[doc(hidden)]
    pub fn set_scrape_cap(&self, cap: u64) {
        self.hidden.set_cap(cap);
    }

    /// Every queue's counts, sorted by region and name, in one statement (one snapshot): the
    /// kept totals less the messages in flight or delayed, each read up to a cap; a queue over
    /// it shows a full count at most a few seconds old (`hidden.rs`, as on SQLite).
    pub async fn all_counts(&self) -> Result<Vec<(QueueName, QueueCounts)>, StoreError> {
        let now = self.now();
        let cap = i64::try_from(self.hidden.cap()).unwrap_or(i64::MAX);
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT q.id, q.region, q.name, \
             COALESCE((SELECT SUM(total) FROM queue_counts c WHERE c.queue_id = q.id), 0)::BIGINT, \
             (SELECT COUNT(*) FROM (SELECT 1 FROM messages m WHERE m.queue_id = q.id AND m.in_flight AND m.visible_at > $1 LIMIT $2) h), \
             (SELECT COUNT(*) FROM (SELECT 1 FROM messages m WHERE m.queue_id = q.id AND NOT m.in_flight AND m.visible_at > $1 LIMIT $2) h), \
             (SELECT MIN(retain_from) FROM messages m WHERE m.queue_id = q.id) \
             FROM queues q ORDER BY q.region, q.name",
        )
        .bind(now)
        .bind(cap)
        .fetch_all(&self.pool)
        .await?;
        let big: Vec<i64> = rows
            .iter()
            .filter(|r| self.hidden.reached(n(r.4), n(r.5)))
            .map(|r| r.0)
            .collect();
        let (pool, clock) = (self.pool.clone(), self.clock.clone());
        let count: Count =
            Arc::new(move |id| Box::pin(count_hidden(pool.clone(), id, clock.now().as_millis())));
        // The renewal reads only and ends by itself; a closed pool ends it at once.
        let kept = self
            .hidden
            .figures(&big, now, count, |task| {
                tokio::spawn(task);
            })
            .await?;
        Ok(rows
            .into_iter()
            .filter_map(|(id, region, name, total, in_flight, delayed, oldest)| {
                let name = QueueName::parse(&name).ok()?.in_region(&region);
                let full = kept.get(&id).copied().unwrap_or(Full {
                    at: now,
                    total: n(total),
                    in_flight: n(in_flight),
                    delayed: n(delayed),
                });
                let counts = QueueCounts {
                    visible: full.total.saturating_sub(full.in_flight + full.delayed),
                    in_flight: full.in_flight,
                    delayed: full.delayed,
                    oldest_sent_at: oldest.map(Timestamp::from_millis),
                };
                Some((name, counts))
            })
            .collect())
    }
}

/// A full count of queue `id`'s messages in flight and delayed at `now`, with its kept total,
/// in one snapshot.
async fn count_hidden(pool: sqlx::PgPool, id: i64, now: i64) -> Result<Full, StoreError> {
    let (total, in_flight, delayed): (i64, i64, i64) = sqlx::query_as(
        "SELECT COALESCE((SELECT SUM(total) FROM queue_counts WHERE queue_id = $2), 0)::BIGINT, \
         (SELECT COUNT(*) FROM messages WHERE queue_id = $2 AND in_flight AND visible_at > $1), \
         (SELECT COUNT(*) FROM messages WHERE queue_id = $2 AND NOT in_flight AND visible_at > $1)",
    )
    .bind(now)
    .bind(id)
    .fetch_one(&pool)
    .await?;
    Ok(Full {
        at: now,
        total: n(total),
        in_flight: n(in_flight),
        delayed: n(delayed),
    })
}
