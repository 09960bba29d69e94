//! Rows of `event_source_mappings`: the mappings created through Lambda's API. Not message
//! traffic, so each change is one short `BEGIN IMMEDIATE` transaction on the writer pool (as
//! queue changes are), and reads use the reader pool. The row struct lives here, beside the only
//! statements that use its columns.

use sqlx::{FromRow, SqlitePool};

use super::super::error::StoreError;
use crate::domain::esm::{EsmSettings, EsmState, StoredEsm};
use crate::domain::queue::QueueName;
use crate::domain::Timestamp;

/// Every column, in [`EsmRow`]'s order.
pub(crate) const COLUMNS: &str =
    "uuid, function, queue, enabled, batch_size, batching_window_s, max_concurrency, \
     report_batch_item_failures, filters, state, version, last_modified_at";

#[derive(FromRow)]
pub(crate) struct EsmRow {
    uuid: String,
    function: String,
    queue: String,
    enabled: bool,
    batch_size: i64,
    batching_window_s: i64,
    max_concurrency: Option<i64>,
    report_batch_item_failures: bool,
    filters: String,
    state: String,
    version: i64,
    last_modified_at: i64,
}

fn decode(what: &str, value: &str) -> sqlx::Error {
    sqlx::Error::Decode(format!("stored event source mapping {what} {value:?} is not valid").into())
}

impl EsmRow {
    pub(crate) fn into_esm(self) -> Result<StoredEsm, sqlx::Error> {
        let queue = QueueName::from_key(&self.queue).map_err(|_| decode("queue", &self.queue))?;
        let state = EsmState::parse(&self.state).ok_or_else(|| decode("state", &self.state))?;
        let filters: Vec<String> =
            serde_json::from_str(&self.filters).map_err(|_| decode("filters", &self.filters))?;
        let num = |v: i64| u32::try_from(v).unwrap_or(0);
        Ok(StoredEsm {
            uuid: self.uuid,
            settings: EsmSettings {
                function: self.function,
                queue,
                enabled: self.enabled,
                batch_size: num(self.batch_size),
                batching_window_secs: num(self.batching_window_s),
                max_concurrency: self.max_concurrency.map(num),
                report_batch_item_failures: self.report_batch_item_failures,
                filters,
            },
            state,
            last_modified: Timestamp::from_millis(self.last_modified_at),
            version: self.version,
        })
    }
}

pub(crate) fn filters_json(s: &EsmSettings) -> String {
    serde_json::to_string(&s.filters).unwrap_or_else(|_| "[]".to_owned())
}

/// The mapping of `function` and `queue` other than `except`, if any.
async fn same_pair(
    tx: &mut super::Tx<'_>,
    s: &EsmSettings,
    except: &str,
) -> Result<Option<String>, StoreError> {
    let found: Option<(String,)> = sqlx::query_as(
        "SELECT uuid FROM event_source_mappings WHERE function = ? AND queue = ? AND uuid <> ?",
    )
    .bind(&s.function)
    .bind(s.queue.as_str())
    .bind(except)
    .fetch_optional(&mut *tx)
    .await?;
    Ok(found.map(|(u,)| u))
}

/// What a change of a mapping came to.
#[derive(Debug)]
pub enum Change {
    /// Stored; the mapping as it is now.
    Done(StoredEsm),
    /// Another API mapping already connects this function and queue (its UUID).
    Conflict(String),
    /// No mapping has this UUID, or it changed since it was read (its version differs).
    Stale,
}

/// Inserts a new mapping in state `Creating`, unless another connects the same pair.
pub(crate) async fn create(
    writer: &SqlitePool,
    uuid: &str,
    s: &EsmSettings,
    now: i64,
) -> Result<Change, StoreError> {
    let mut tx = writer.begin_with("BEGIN IMMEDIATE").await?;
    if let Some(other) = same_pair(&mut tx, s, uuid).await? {
        return Ok(Change::Conflict(other));
    }
    let row: EsmRow = sqlx::query_as(&format!(
        "INSERT INTO event_source_mappings ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?) \
         RETURNING {COLUMNS}"
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
    .bind(now)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Change::Done(row.into_esm()?))
}

/// Replaces the settings and state of mapping `uuid` if it is still at `version`.
pub(crate) async fn update(
    writer: &SqlitePool,
    uuid: &str,
    version: i64,
    s: &EsmSettings,
    state: EsmState,
    now: i64,
) -> Result<Change, StoreError> {
    let mut tx = writer.begin_with("BEGIN IMMEDIATE").await?;
    if let Some(other) = same_pair(&mut tx, s, uuid).await? {
        return Ok(Change::Conflict(other));
    }
    let row: Option<EsmRow> = sqlx::query_as(&format!(
        "UPDATE event_source_mappings SET function = ?, queue = ?, enabled = ?, batch_size = ?, \
         batching_window_s = ?, max_concurrency = ?, report_batch_item_failures = ?, filters = ?, \
         state = ?, version = version + 1, last_modified_at = ? WHERE uuid = ? AND version = ? \
         RETURNING {COLUMNS}"
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
    .bind(now)
    .bind(uuid)
    .bind(version)
    .fetch_optional(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(match row {
        Some(row) => Change::Done(row.into_esm()?),
        None => Change::Stale,
    })
}

/// Moves mapping `uuid` from state `from` to `to` if it is still at `version` and in `from`
/// (the daemon settling what it acted on; the API's deletion). Does not raise the version.
/// Whether a row was changed.
pub(crate) async fn set_state(
    writer: &SqlitePool,
    uuid: &str,
    version: i64,
    from: EsmState,
    to: EsmState,
) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE event_source_mappings SET state = ? WHERE uuid = ? AND version = ? AND state = ?",
    )
    .bind(to.as_str())
    .bind(uuid)
    .bind(version)
    .bind(from.as_str())
    .execute(writer)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Removes mapping `uuid` if it is still at `version` and `Deleting`.
pub(crate) async fn remove(
    writer: &SqlitePool,
    uuid: &str,
    version: i64,
) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "DELETE FROM event_source_mappings WHERE uuid = ? AND version = ? AND state = ?",
    )
    .bind(uuid)
    .bind(version)
    .bind(EsmState::Deleting.as_str())
    .execute(writer)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// One mapping.
pub(crate) async fn get(reader: &SqlitePool, uuid: &str) -> Result<Option<StoredEsm>, StoreError> {
    let row: Option<EsmRow> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM event_source_mappings WHERE uuid = ?"
    ))
    .bind(uuid)
    .fetch_optional(reader)
    .await?;
    Ok(row.map(EsmRow::into_esm).transpose()?)
}

/// Every mapping, by UUID.
pub(crate) async fn list(reader: &SqlitePool) -> Result<Vec<StoredEsm>, StoreError> {
    let rows: Vec<EsmRow> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM event_source_mappings ORDER BY uuid"
    ))
    .fetch_all(reader)
    .await?;
    Ok(rows
        .into_iter()
        .map(EsmRow::into_esm)
        .collect::<Result<_, _>>()?)
}
