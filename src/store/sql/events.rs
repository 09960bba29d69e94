//! Asynchronous invocations (`Event`): their rows. Each change is one statement on the write
//! connection; the row is the event's whole durable state.

use sqlx::{FromRow, SqlitePool};

use super::super::error::StoreError;

/// Most events one read returns (the runner reads again as they settle).
const PAGE: i64 = 1000;

/// An event row.
#[derive(FromRow, Debug, Clone)]
pub(crate) struct EventRow {
    pub request_id: String,
    pub function: String,
    pub payload: Vec<u8>,
    pub client_context: Option<String>,
    pub trace_id: Option<String>,
    pub queued_at: i64,
    pub due_at: i64,
    pub attempts: i64,
}

/// Stores a new event, due at once.
pub(crate) async fn insert(writer: &SqlitePool, e: &EventRow) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO async_invocations (request_id, function, payload, client_context, trace_id, \
         queued_at, due_at, attempts) VALUES (?, ?, ?, ?, ?, ?, ?, 0)",
    )
    .bind(&e.request_id)
    .bind(&e.function)
    .bind(&e.payload)
    .bind(&e.client_context)
    .bind(&e.trace_id)
    .bind(e.queued_at)
    .bind(e.due_at)
    .execute(writer)
    .await?;
    Ok(())
}

/// The stored events, soonest due first.
pub(crate) async fn pending(reader: &SqlitePool) -> Result<Vec<EventRow>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT request_id, function, payload, client_context, trace_id, queued_at, due_at, \
         attempts FROM async_invocations ORDER BY due_at, id LIMIT ?",
    )
    .bind(PAGE)
    .fetch_all(reader)
    .await?)
}

/// Counts one more attempt; returns the count, or `None` if the event is gone.
pub(crate) async fn attempt(
    writer: &SqlitePool,
    request_id: &str,
) -> Result<Option<i64>, StoreError> {
    Ok(sqlx::query_scalar(
        "UPDATE async_invocations SET attempts = attempts + 1 WHERE request_id = ? \
         RETURNING attempts",
    )
    .bind(request_id)
    .fetch_optional(writer)
    .await?)
}

/// Makes the event due again at `due_at`.
pub(crate) async fn postpone(
    writer: &SqlitePool,
    request_id: &str,
    due_at: i64,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE async_invocations SET due_at = ? WHERE request_id = ?")
        .bind(due_at)
        .bind(request_id)
        .execute(writer)
        .await?;
    Ok(())
}

/// Forgets a settled event.
pub(crate) async fn remove(writer: &SqlitePool, request_id: &str) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM async_invocations WHERE request_id = ?")
        .bind(request_id)
        .execute(writer)
        .await?;
    Ok(())
}
