//! Reading messages and tombstones for peek and explain, on the reader pool: nothing here
//! writes, so a peek changes no receive count, visibility or anything else. There is no index
//! on `message_id` (it would cost every send), so finding one message reads its queue's rows;
//! the tombstones read are those of the retention window, from the front of their key.

use sqlx::SqlitePool;

use super::super::error::StoreError;

/// The columns peek reads of a stored message.
const PEEK_COLUMNS: &str =
    "id, message_id, body, group_id, dead_letter_source, sent_at, retain_from, \
     visible_at, in_flight, receive_count, receipt, is_head";

/// A stored message as peek reads it.
#[derive(sqlx::FromRow, Debug)]
pub(crate) struct PeekRow {
    pub id: i64,
    pub message_id: String,
    pub body: String,
    pub group_id: Option<String>,
    pub dead_letter_source: Option<String>,
    pub sent_at: i64,
    pub retain_from: i64,
    pub visible_at: i64,
    pub in_flight: bool,
    pub receive_count: i64,
    pub receipt: Option<i64>,
    pub is_head: bool,
}

/// The first `limit` messages of a queue, in send order.
pub(crate) async fn list(
    reader: &SqlitePool,
    queue_id: i64,
    limit: u32,
) -> Result<Vec<PeekRow>, StoreError> {
    Ok(sqlx::query_as(&format!(
        "SELECT {PEEK_COLUMNS} FROM messages WHERE queue_id = ? ORDER BY id LIMIT ?"
    ))
    .bind(queue_id)
    .bind(i64::from(limit))
    .fetch_all(reader)
    .await?)
}

/// The stored message `message_id` of a queue, if any.
pub(crate) async fn one(
    reader: &SqlitePool,
    queue_id: i64,
    message_id: &str,
) -> Result<Option<PeekRow>, StoreError> {
    Ok(sqlx::query_as(&format!(
        "SELECT {PEEK_COLUMNS} FROM messages WHERE queue_id = ? AND message_id = ? LIMIT 1"
    ))
    .bind(queue_id)
    .bind(message_id)
    .fetch_optional(reader)
    .await?)
}

/// The earliest message of `group` before row `id` that is not visible at `now` (what keeps a
/// FIFO message from being received), and the group's head.
pub(crate) async fn blocker(
    reader: &SqlitePool,
    queue_id: i64,
    group: &str,
    id: i64,
    now: i64,
) -> Result<Option<(String, String)>, StoreError> {
    let behind: Option<(String,)> = sqlx::query_as(
        "SELECT message_id FROM messages WHERE queue_id = ? AND group_id = ? AND id < ? \
         AND visible_at > ? ORDER BY id LIMIT 1",
    )
    .bind(queue_id)
    .bind(group)
    .bind(id)
    .bind(now)
    .fetch_optional(reader)
    .await?;
    let Some((behind,)) = behind else {
        return Ok(None);
    };
    let (head,): (String,) = sqlx::query_as(
        "SELECT message_id FROM messages WHERE queue_id = ? AND group_id = ? ORDER BY id LIMIT 1",
    )
    .bind(queue_id)
    .bind(group)
    .fetch_one(reader)
    .await?;
    Ok(Some((behind, head)))
}

/// A tombstone as stored.
#[derive(sqlx::FromRow, Debug)]
pub(crate) struct TombRow {
    pub at: i64,
    pub state: i64,
    pub receive_count: i64,
    pub receipt: Option<i64>,
    pub dead_letter_queue: Option<String>,
}

/// The latest tombstone of `message_id` in a queue written after `since`.
pub(crate) async fn tombstone(
    reader: &SqlitePool,
    queue_id: i64,
    message_id: &str,
    since: i64,
) -> Result<Option<TombRow>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT at, state, receive_count, receipt, dead_letter_queue FROM tombstones \
         WHERE at > ? AND queue_id = ? AND message_id = ? ORDER BY at DESC LIMIT 1",
    )
    .bind(since)
    .bind(queue_id)
    .bind(message_id)
    .fetch_optional(reader)
    .await?)
}

/// The name of receiver `id`, if registered.
pub(crate) async fn receiver_name(
    reader: &SqlitePool,
    id: u16,
) -> Result<Option<String>, StoreError> {
    let row: Option<(String,)> = sqlx::query_as("SELECT name FROM receivers WHERE id = ?")
        .bind(i64::from(id))
        .fetch_optional(reader)
        .await?;
    Ok(row.map(|(n,)| n))
}

/// The number of receiver `name`, registered on first use (a short transaction on the writer
/// pool, like a queue change). `None` once every number is taken.
pub(crate) async fn register_receiver(
    writer: &SqlitePool,
    name: &str,
) -> Result<Option<u16>, StoreError> {
    let mut tx = writer.begin_with("BEGIN IMMEDIATE").await?;
    let found: Option<(i64,)> = sqlx::query_as("SELECT id FROM receivers WHERE name = ?")
        .bind(name)
        .fetch_optional(&mut *tx)
        .await?;
    let id = match found {
        Some((id,)) => id,
        None => {
            let (next,): (i64,) = sqlx::query_as("SELECT COALESCE(MAX(id), 0) + 1 FROM receivers")
                .fetch_one(&mut *tx)
                .await?;
            if next > i64::from(u16::MAX) {
                return Ok(None);
            }
            sqlx::query("INSERT INTO receivers (id, name) VALUES (?, ?)")
                .bind(next)
                .bind(name)
                .execute(&mut *tx)
                .await?;
            next
        }
    };
    tx.commit().await?;
    Ok(u16::try_from(id).ok())
}
