//! Peek and explain on PostgreSQL, with the SQLite store's signatures and answers
//! (`store/peek.rs`): where a stored message stands without receiving it, or what became of
//! one no longer stored (its tombstone, `tombstones.rs`); and the receivers that say who holds
//! a message in flight: a mapping's receives ([`PgStore::receive_wait_for_mapping`]) carry its
//! number in the low 16 bits of the receipt token, registered by name in `receivers` (under an
//! advisory lock of its own, so two instances never give one name two numbers) and cached per
//! instance. [`PgStore::delete_filtered`] deletes what a mapping's filters dropped, with
//! `filtered_out` tombstones. Peek and explain only read.

use std::time::Duration;

use super::super::peek::{Explained, MessageState, Peeked, Receiver, Tombstone};
use super::super::rows::{to_ms, UNRECEIVED};
use super::super::sql::claim::receiver_of;
use super::super::sql::peek::{PeekRow, TombRow};
use super::super::sql::tombstones::Fate;
use super::super::types::EntryResults;
use super::{claim, group, queues, tombstones, PgStore, QueueInfo, StoreError};
use crate::domain::message::Message;
use crate::domain::queue::QueueName;
use crate::domain::Timestamp;

/// The columns peek reads (`is_head` is the SQLite store's; here blocking is looked up).
const PEEK_COLUMNS: &str = "id, message_id, body, group_id, dead_letter_source, sent_at, \
    retain_from, visible_at, in_flight, receive_count, receipt, FALSE AS is_head";

/// The advisory lock (two-key form, apart from the queues' one-key locks) of receiver numbers.
const RECEIVERS_LOCK: (i32, i32) = (0x6573_6d64, 3);

impl PgStore {
    /// The receiver number of mapping `name`, registered on its first use. Should that fail,
    /// the mapping's receives are told as a client's.
    async fn receiver(&self, name: &str) -> u16 {
        let cached = self
            .receivers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .copied();
        if let Some(id) = cached {
            return id;
        }
        match self.register(name).await {
            Ok(Some(id)) => {
                let mut map = self.receivers.lock().unwrap_or_else(|p| p.into_inner());
                map.insert(name.to_owned(), id);
                id
            }
            Ok(None) => {
                tracing::warn!(mapping = name, "every receiver number is taken: explain tells this mapping's messages in flight as a client's");
                0
            }
            Err(e) => {
                tracing::warn!(mapping = name, error = %crate::domain::error::chain(&e), "could not record the mapping as a receiver: explain tells its messages in flight as a client's until it is");
                0
            }
        }
    }

    /// The number of receiver `name`, registered if new; `None` once every number is taken.
    async fn register(&self, name: &str) -> Result<Option<u16>, StoreError> {
        let mut tx = self.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1, $2)")
            .bind(RECEIVERS_LOCK.0)
            .bind(RECEIVERS_LOCK.1)
            .execute(&mut *tx)
            .await?;
        let found: Option<i64> = sqlx::query_scalar("SELECT id FROM receivers WHERE name = $1")
            .bind(name)
            .fetch_optional(&mut *tx)
            .await?;
        let id = match found {
            Some(id) => id,
            None => {
                let next: i64 =
                    sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) + 1 FROM receivers")
                        .fetch_one(&mut *tx)
                        .await?;
                if next > i64::from(u16::MAX) {
                    return Ok(None);
                }
                sqlx::query("INSERT INTO receivers (id, name) VALUES ($1, $2)")
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

    /// Who a receipt token names; `None` if the message was never received.
    async fn receiver_named(&self, token: Option<i64>) -> Result<Option<Receiver>, StoreError> {
        let Some(token) = token.filter(|t| *t != UNRECEIVED) else {
            return Ok(None);
        };
        let id = receiver_of(token);
        if id == 0 {
            return Ok(Some(Receiver::Client));
        }
        let cached = {
            let map = self.receivers.lock().unwrap_or_else(|p| p.into_inner());
            map.iter().find(|(_, v)| **v == id).map(|(k, _)| k.clone())
        };
        if let Some(name) = cached {
            return Ok(Some(Receiver::Mapping(name)));
        }
        let name: Option<String> = sqlx::query_scalar("SELECT name FROM receivers WHERE id = $1")
            .bind(i64::from(id))
            .fetch_optional(&self.pool)
            .await?;
        Ok(Some(name.map_or(Receiver::Unknown, Receiver::Mapping)))
    }

    /// [`PgStore`]'s `receive_wait` by the mapping `mapping`: the messages it claims say so
    /// while they are in flight ([`PgStore::explain`]).
    pub async fn receive_wait_for_mapping(
        &self,
        mapping: &str,
        queue: &QueueName,
        max: u32,
        visibility: Option<Duration>,
        wait: Duration,
    ) -> Result<Vec<Message>, StoreError> {
        let receiver = self.receiver(mapping).await;
        claim::receive_wait(self, queue, max, visibility, wait, receiver).await
    }

    /// Deletes by receipt handle the messages a mapping's filters dropped: their tombstones
    /// say `filtered_out`.
    pub async fn delete_filtered(
        &self,
        queue: &QueueName,
        handles: &[String],
    ) -> Result<EntryResults<()>, StoreError> {
        group::delete(self, queue, handles, Fate::FilteredOut).await
    }

    /// The queue named `name`; `Rejected(QueueDoesNotExist)` if there is none.
    async fn queue_info(&self, name: &QueueName) -> Result<QueueInfo, StoreError> {
        let mut tx = self.begin().await?;
        let q = queues::require(&mut tx, name).await?;
        tx.commit().await?;
        Ok(q)
    }

    /// The first `limit` messages of `queue` in send order, with where each stands. Receives
    /// nothing and changes nothing.
    pub async fn peek(&self, queue: &QueueName, limit: u32) -> Result<Vec<Peeked>, StoreError> {
        let q = self.queue_info(queue).await?;
        let rows: Vec<PeekRow> = sqlx::query_as(&format!(
            "SELECT {PEEK_COLUMNS} FROM messages WHERE queue_id = $1 ORDER BY id LIMIT $2"
        ))
        .bind(q.id)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            out.push(self.peeked(&q, row).await?);
        }
        Ok(out)
    }

    /// Where message `message_id` of `queue` stands, or what became of it. Changes nothing.
    pub async fn explain(
        &self,
        queue: &QueueName,
        message_id: &str,
    ) -> Result<Explained, StoreError> {
        let q = self.queue_info(queue).await?;
        let row: Option<PeekRow> = sqlx::query_as(&format!(
            "SELECT {PEEK_COLUMNS} FROM messages WHERE queue_id = $1 AND message_id = $2 LIMIT 1"
        ))
        .bind(q.id)
        .bind(message_id)
        .fetch_optional(&self.pool)
        .await?;
        if let Some(row) = row {
            return Ok(Explained::Stored(self.peeked(&q, row).await?));
        }
        let keep = self.tombstone_ms;
        if keep <= 0 {
            return Ok(Explained::Unknown);
        }
        let since = self.now() - keep;
        let Some(t) = tombstones::find(self, q.id, message_id, since).await? else {
            return Ok(Explained::Unknown);
        };
        Ok(Explained::Gone(self.tombstone(message_id, t, keep).await?))
    }

    async fn tombstone(
        &self,
        message_id: &str,
        t: TombRow,
        keep_ms: i64,
    ) -> Result<Tombstone, StoreError> {
        let by = if t.names_holder() {
            self.receiver_named(t.receipt).await?
        } else {
            None
        };
        Ok(t.into_tombstone(message_id, by, keep_ms))
    }

    /// The earliest message of `group` before row `id` that is not visible at `now` (what keeps
    /// a FIFO message from being received), and the group's head.
    async fn blocker(
        &self,
        queue_id: i64,
        group: &str,
        id: i64,
        now: i64,
    ) -> Result<Option<(String, String)>, StoreError> {
        let found: Option<(String, String)> = sqlx::query_as(
            "SELECT b.message_id, (SELECT h.message_id FROM messages h \
             WHERE h.queue_id = $1 AND h.group_id = $2 ORDER BY h.id LIMIT 1) \
             FROM messages b WHERE b.queue_id = $1 AND b.group_id = $2 AND b.id < $3 \
             AND b.visible_at > $4 ORDER BY b.id LIMIT 1",
        )
        .bind(queue_id)
        .bind(group)
        .bind(id)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        Ok(found)
    }

    async fn peeked(&self, q: &QueueInfo, row: PeekRow) -> Result<Peeked, StoreError> {
        let now = self.now();
        let expires = row.retain_from.saturating_add(to_ms(q.settings.retention));
        let state = if expires <= now {
            MessageState::Expired {
                at: Timestamp::from_millis(expires),
            }
        } else if row.visible_at > now && row.in_flight {
            MessageState::InFlight {
                until: Timestamp::from_millis(row.visible_at),
                by: self
                    .receiver_named(row.receipt)
                    .await?
                    .unwrap_or(Receiver::Unknown),
            }
        } else if row.visible_at > now {
            MessageState::Delayed {
                until: Timestamp::from_millis(row.visible_at),
            }
        } else {
            match &row.group_id {
                // A standard (fair) queue's group orders nothing.
                Some(group) if q.name.is_fifo() => {
                    match self.blocker(q.id, group, row.id, now).await? {
                        Some((behind, head)) => MessageState::Blocked {
                            group: group.clone(),
                            behind,
                            head,
                        },
                        None => MessageState::Visible,
                    }
                }
                _ => MessageState::Visible,
            }
        };
        Ok(Peeked {
            message_id: row.message_id,
            body: row.body,
            sent_at: Timestamp::from_millis(row.sent_at),
            receive_count: u32::try_from(row.receive_count).unwrap_or(0),
            group_id: row.group_id,
            dead_letter_source: row.dead_letter_source,
            state,
        })
    }
}
