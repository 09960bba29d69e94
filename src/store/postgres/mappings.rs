//! Event source mappings created through Lambda's API, on PostgreSQL: the SQLite store's rules
//! (`sql/mappings.rs`) with the same signatures. A mapping created, changed or deleted through
//! one instance is seen by all (nothing is cached). Creates and updates hold a
//! transaction-scoped advisory lock of their own, so the check that no other mapping connects
//! the same function and queue and the write that follows are one step across instances; a
//! change based on a stale read fails by the version column, as in SQLite.

use super::super::mappings::MappingChange;
use super::super::sql::mappings::{filters_json, EsmRow, COLUMNS};
use super::{PgStore, StoreError, Tx};
use crate::domain::esm::{EsmSettings, EsmState, StoredEsm};

/// The advisory lock (two-key form, apart from the queues' one-key locks) of mapping changes.
const LOCK: (i32, i32) = (0x6573_6d64, 1);

/// Begins a mapping change: a transaction holding [`LOCK`].
async fn begin_locked(s: &PgStore) -> Result<Tx, StoreError> {
    let mut tx = s.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1, $2)")
        .bind(LOCK.0)
        .bind(LOCK.1)
        .execute(&mut *tx)
        .await?;
    Ok(tx)
}

/// The mapping of `function` and `queue` other than `except`, if any.
async fn same_pair(
    tx: &mut Tx,
    s: &EsmSettings,
    except: &str,
) -> Result<Option<String>, StoreError> {
    let found: Option<(String,)> = sqlx::query_as(
        "SELECT uuid FROM event_source_mappings WHERE function = $1 AND queue = $2 AND uuid <> $3",
    )
    .bind(&s.function)
    .bind(s.queue.as_str())
    .bind(except)
    .fetch_optional(&mut **tx)
    .await?;
    Ok(found.map(|(u,)| u))
}

impl PgStore {
    /// Stores a new mapping `uuid` in state `Creating`. [`MappingChange::Conflict`] if another
    /// API mapping connects the same function and queue.
    pub async fn create_mapping(
        &self,
        uuid: &str,
        settings: &EsmSettings,
    ) -> Result<MappingChange, StoreError> {
        let s = settings;
        let mut tx = begin_locked(self).await?;
        if let Some(other) = same_pair(&mut tx, s, uuid).await? {
            return Ok(MappingChange::Conflict(other));
        }
        let row: EsmRow = sqlx::query_as(&format!(
            "INSERT INTO event_source_mappings ({COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 1, $11) RETURNING {COLUMNS}"
        ))
        .bind(uuid)
        .bind(&s.function)
        .bind(s.queue.as_str())
        .bind(s.enabled)
        .bind(i64::from(s.batch_size))
        .bind(i64::from(s.batching_window_secs))
        .bind(s.max_concurrency.map(i64::from))
        .bind(s.report_batch_item_failures)
        .bind(filters_json(s))
        .bind(EsmState::Creating.as_str())
        .bind(self.now())
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(MappingChange::Done(row.into_esm()?))
    }

    /// Replaces mapping `uuid`'s settings and sets `state`, if it is still at `version`
    /// ([`MappingChange::Stale`] otherwise); raises its version.
    pub async fn update_mapping(
        &self,
        uuid: &str,
        version: i64,
        settings: &EsmSettings,
        state: EsmState,
    ) -> Result<MappingChange, StoreError> {
        let s = settings;
        let mut tx = begin_locked(self).await?;
        if let Some(other) = same_pair(&mut tx, s, uuid).await? {
            return Ok(MappingChange::Conflict(other));
        }
        let row: Option<EsmRow> = sqlx::query_as(&format!(
            "UPDATE event_source_mappings SET function = $1, queue = $2, enabled = $3, \
             batch_size = $4, batching_window_s = $5, max_concurrency = $6, \
             report_batch_item_failures = $7, filters = $8, state = $9, version = version + 1, \
             last_modified_at = $10 WHERE uuid = $11 AND version = $12 RETURNING {COLUMNS}"
        ))
        .bind(&s.function)
        .bind(s.queue.as_str())
        .bind(s.enabled)
        .bind(i64::from(s.batch_size))
        .bind(i64::from(s.batching_window_secs))
        .bind(s.max_concurrency.map(i64::from))
        .bind(s.report_batch_item_failures)
        .bind(filters_json(s))
        .bind(state.as_str())
        .bind(self.now())
        .bind(uuid)
        .bind(version)
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(match row {
            Some(row) => MappingChange::Done(row.into_esm()?),
            None => MappingChange::Stale,
        })
    }

    /// Moves mapping `uuid` from state `from` to `to` if it is still at `version` and in `from`;
    /// whether it was. The version stays.
    pub async fn set_mapping_state(
        &self,
        uuid: &str,
        version: i64,
        from: EsmState,
        to: EsmState,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE event_source_mappings SET state = $1 \
             WHERE uuid = $2 AND version = $3 AND state = $4",
        )
        .bind(to.as_str())
        .bind(uuid)
        .bind(version)
        .bind(from.as_str())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Removes mapping `uuid` if it is still at `version` and `Deleting`; whether it was.
    pub async fn remove_mapping(&self, uuid: &str, version: i64) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "DELETE FROM event_source_mappings WHERE uuid = $1 AND version = $2 AND state = $3",
        )
        .bind(uuid)
        .bind(version)
        .bind(EsmState::Deleting.as_str())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Mapping `uuid`, if there is one.
    pub async fn mapping(&self, uuid: &str) -> Result<Option<StoredEsm>, StoreError> {
        let row: Option<EsmRow> = sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM event_source_mappings WHERE uuid = $1"
        ))
        .bind(uuid)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(EsmRow::into_esm).transpose()?)
    }

    /// Every API mapping, by UUID.
    pub async fn mappings(&self) -> Result<Vec<StoredEsm>, StoreError> {
        let rows: Vec<EsmRow> = sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM event_source_mappings ORDER BY uuid"
        ))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(EsmRow::into_esm)
            .collect::<Result<_, _>>()?)
    }
}
