//! A mapping's invocation slots across instances: on PostgreSQL `max_concurrency` bounds the
//! mapping's invocations on every instance together, as Lambda's bounds them across its pollers.
//! Each slot is a row of `mapping_slots`; an invocation holds one by a lease (this instance's
//! name and an expiry), taken with `FOR UPDATE SKIP LOCKED` so that instances never wait for
//! each other's row locks, and given back when the invocation has answered, with `NOTIFY
//! esmd_slots` so that a collector waiting on any instance looks again at once. A lease
//! outlives the longest invocation (the caller's `ttl`), so the slots of a killed instance come
//! free by themselves; a waiter looks again at least every [`RECHECK`] for those.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{listen, PgStore, StoreError};

/// The longest a waiting collector goes without looking at the slots again: only leases that
/// run out (a killed instance's) free a slot without a notification.
const RECHECK: Duration = Duration::from_secs(1);

/// One invocation slot of a mapping, held until dropped.
#[derive(Debug)]
pub struct PgSlot {
    store: PgStore,
    mapping: String,
    slot: i64,
}

impl Drop for PgSlot {
    fn drop(&mut self) {
        let (store, mapping, slot) = (
            self.store.clone(),
            std::mem::take(&mut self.mapping),
            self.slot,
        );
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(e) = store.release_slot(&mapping, slot).await {
                    tracing::warn!(mapping, slot, error = %crate::domain::error::chain(&e), "could not give a mapping's invocation slot back; its lease runs out instead");
                }
            });
        }
    }
}

impl PgStore {
    /// Takes one of the `max` invocation slots of `mapping` for at most `ttl`, waiting until
    /// one is free; `None` when `cancel` fires first.
    ///
    /// # Errors
    /// The database error of an attempt.
    pub async fn mapping_slot(
        &self,
        mapping: &str,
        max: u32,
        ttl: Duration,
        cancel: &CancellationToken,
    ) -> Result<Option<PgSlot>, StoreError> {
        let mut released = self.signals.slots.subscribe();
        let mut seeded = false;
        loop {
            released.borrow_and_update();
            if let Some(slot) = self.try_slot(mapping, max, ttl).await? {
                return Ok(Some(PgSlot {
                    store: self.clone(),
                    mapping: mapping.to_owned(),
                    slot,
                }));
            }
            if !seeded {
                // The mapping's rows, up to its (possibly raised) max_concurrency.
                sqlx::query(
                    "INSERT INTO mapping_slots (mapping, slot) \
                     SELECT $1, g FROM generate_series(0, $2 - 1) g ON CONFLICT DO NOTHING",
                )
                .bind(mapping)
                .bind(i64::from(max))
                .execute(&self.pool)
                .await?;
                seeded = true;
                continue;
            }
            tokio::select! {
                () = cancel.cancelled() => return Ok(None),
                _ = released.changed() => {}
                () = tokio::time::sleep(RECHECK) => {}
            }
        }
    }

    /// One attempt: a free slot below `max`, leased to this instance.
    async fn try_slot(
        &self,
        mapping: &str,
        max: u32,
        ttl: Duration,
    ) -> Result<Option<i64>, StoreError> {
        let now = self.now();
        let expires = now.saturating_add(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX));
        let mut tx = self.begin().await?;
        unsynced(&mut tx).await?;
        let taken: Option<(i64,)> = sqlx::query_as(
            "UPDATE mapping_slots SET holder = $3, expires_at = $5 \
             WHERE mapping = $1 AND slot = ( \
                 SELECT slot FROM mapping_slots \
                 WHERE mapping = $1 AND slot < $2 AND (holder IS NULL OR expires_at <= $4) \
                 ORDER BY slot LIMIT 1 FOR UPDATE SKIP LOCKED) \
             RETURNING slot",
        )
        .bind(mapping)
        .bind(i64::from(max))
        .bind(&*self.instance)
        .bind(now)
        .bind(expires)
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(taken.map(|(slot,)| slot))
    }

    /// Gives a slot back (if this instance still holds it) and tells every instance.
    async fn release_slot(&self, mapping: &str, slot: i64) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        unsynced(&mut tx).await?;
        sqlx::query(
            "UPDATE mapping_slots SET holder = NULL, expires_at = 0 \
             WHERE mapping = $1 AND slot = $2 AND holder = $3",
        )
        .bind(mapping)
        .bind(slot)
        .bind(&*self.instance)
        .execute(&mut *tx)
        .await?;
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(listen::SLOTS)
            .bind(mapping)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }
}

/// A slot's lease is not data: a commit lost in a crash only leaves a lease to run out, or a
/// slot free that was taken by an instance that is gone. So slot transactions do not wait for
/// the WAL's flush (one fsync less per invocation twice over); what they change is visible to
/// every instance at commit all the same.
async fn unsynced(tx: &mut super::Tx) -> Result<(), StoreError> {
    sqlx::query("SET LOCAL synchronous_commit TO OFF")
        .execute(&mut **tx)
        .await?;
    Ok(())
}
