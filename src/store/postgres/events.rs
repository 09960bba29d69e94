//! Asynchronous invocations (the Invoke API's `Event` type) on PostgreSQL, with the SQLite
//! store's signatures (`store/events.rs`). Several instances run the events of one database,
//! and each event is run by one instance at a time: [`PgStore::event_attempt`] takes a lease on
//! the event's row (`owner`, `lease_until`) in the update that counts the attempt, and answers
//! `None` (as for an event gone) while another instance's lease holds. [`PgStore::pending_events`]
//! shows an event leased by another instance as due when that lease runs out, so a runner
//! neither spins on it nor forgets it should that instance die. A postponement or removal ends
//! the lease. Every change sends `NOTIFY esmd_events` in its transaction, which raises
//! [`PgStore::event_signal`] on every instance (`listen.rs`).

use std::time::Duration;

use tokio::sync::watch;

use super::super::events::AsyncEvent;
use super::super::rows::to_ms;
use super::super::sql::events::EventRow;
use super::{listen, PgStore, StoreError};
use crate::domain::Timestamp;

/// How long an attempt holds its event against other instances: longer than the longest
/// invocation (Lambda's limit is 15 minutes), so that a live instance's attempt is never run
/// twice; an instance that dies mid-attempt holds its event that long.
const EVENT_LEASE: Duration = Duration::from_secs(20 * 60);

/// Most events one read returns (the runner reads again as they settle).
const PAGE: i64 = 1000;

impl PgStore {
    /// Runs `sql` (binding `request_id` and then `bind`) and signals the change at its commit.
    async fn event_change(
        &self,
        sql: &str,
        request_id: &str,
        due: Option<i64>,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        let mut query = sqlx::query(sql).bind(request_id);
        if let Some(due) = due {
            query = query.bind(due);
        }
        query.execute(&mut *tx).await?;
        listen::signal(&mut tx, listen::EVENTS).await?;
        tx.commit().await?;
        listen::raise(&self.signals.events);
        Ok(())
    }

    /// Stores a new event for `function`, due at once; returns it as stored. The write is
    /// committed when this returns.
    pub async fn enqueue_event(
        &self,
        request_id: &str,
        function: &str,
        payload: Vec<u8>,
        client_context: Option<String>,
        trace_id: Option<String>,
    ) -> Result<AsyncEvent, StoreError> {
        let now = self.now();
        let row = EventRow {
            request_id: request_id.to_owned(),
            function: function.to_owned(),
            payload,
            client_context,
            trace_id,
            queued_at: now,
            due_at: now,
            attempts: 0,
        };
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO async_invocations (request_id, function, payload, client_context, \
             trace_id, queued_at, due_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&row.request_id)
        .bind(&row.function)
        .bind(&row.payload)
        .bind(&row.client_context)
        .bind(&row.trace_id)
        .bind(row.queued_at)
        .bind(row.due_at)
        .execute(&mut *tx)
        .await?;
        listen::signal(&mut tx, listen::EVENTS).await?;
        tx.commit().await?;
        listen::raise(&self.signals.events);
        Ok(row.into())
    }

    /// The stored events, soonest due first (at most a thousand at a time); one another
    /// instance is running is due when its lease runs out.
    pub async fn pending_events(&self) -> Result<Vec<AsyncEvent>, StoreError> {
        let rows: Vec<EventRow> = sqlx::query_as(
            "SELECT request_id, function, payload, client_context, trace_id, queued_at, \
             CASE WHEN owner IS NOT NULL AND owner <> $1 AND lease_until > $2 \
             THEN GREATEST(due_at, lease_until) ELSE due_at END AS due_at, attempts \
             FROM async_invocations ORDER BY due_at, id LIMIT $3",
        )
        .bind(&*self.instance)
        .bind(self.now())
        .bind(PAGE)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(AsyncEvent::from).collect())
    }

    /// Counts one more attempt of the event and takes its lease for this instance, before it
    /// runs; returns the count so far, or `None` if the event is gone or another instance
    /// holds it.
    pub async fn event_attempt(&self, request_id: &str) -> Result<Option<u32>, StoreError> {
        let now = self.now();
        let n: Option<i64> = sqlx::query_scalar(
            "UPDATE async_invocations SET attempts = attempts + 1, owner = $2, lease_until = $3 \
             WHERE request_id = $1 AND (owner IS NULL OR owner = $2 OR lease_until <= $4) \
             RETURNING attempts",
        )
        .bind(request_id)
        .bind(&*self.instance)
        .bind(now + to_ms(EVENT_LEASE))
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        Ok(n.map(|n| u32::try_from(n).unwrap_or(u32::MAX)))
    }

    /// Makes the event due again at `due_at` (a retry), and ends its lease.
    pub async fn postpone_event(
        &self,
        request_id: &str,
        due_at: Timestamp,
    ) -> Result<(), StoreError> {
        self.event_change(
            "UPDATE async_invocations SET due_at = $2, owner = NULL, lease_until = 0 \
             WHERE request_id = $1",
            request_id,
            Some(due_at.as_millis()),
        )
        .await
    }

    /// Forgets a settled event.
    pub async fn remove_event(&self, request_id: &str) -> Result<(), StoreError> {
        self.event_change(
            "DELETE FROM async_invocations WHERE request_id = $1",
            request_id,
            None,
        )
        .await
    }

    /// A receiver that changes whenever an event is stored, postponed or removed, through any
    /// instance on the database.
    pub fn event_signal(&self) -> watch::Receiver<u64> {
        self.signals.events.subscribe()
    }
}
