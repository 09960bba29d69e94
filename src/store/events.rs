//! The store's asynchronous invocations (the Invoke API's `Event` type, docs/semantics.md §11):
//! [`Store::enqueue_event`] stores one before the caller gets its 202; the daemon's runner reads
//! [`Store::pending_events`], counts each attempt durably ([`Store::event_attempt`]), postpones a
//! retry ([`Store::postpone_event`]) and forgets the event once its outcome is settled
//! ([`Store::remove_event`]). Every change raises [`Store::event_signal`], which the runner
//! watches.

use tokio::sync::watch;

use super::sql::events::{self, EventRow};
use super::{SqliteStore, StoreError};
use crate::domain::Timestamp;

/// One stored `Event` invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AsyncEvent {
    /// The request id the caller got.
    pub request_id: String,
    /// The configured function's name.
    pub function: String,
    /// The event, as sent.
    pub payload: Vec<u8>,
    /// `X-Amz-Client-Context`, decoded.
    pub client_context: Option<String>,
    /// `X-Amzn-Trace-Id`.
    pub trace_id: Option<String>,
    /// When it was accepted.
    pub queued_at: Timestamp,
    /// When it may run next.
    pub due_at: Timestamp,
    /// Invocations started so far.
    pub attempts: u32,
}

impl From<EventRow> for AsyncEvent {
    fn from(r: EventRow) -> Self {
        AsyncEvent {
            request_id: r.request_id,
            function: r.function,
            payload: r.payload,
            client_context: r.client_context,
            trace_id: r.trace_id,
            queued_at: Timestamp::from_millis(r.queued_at),
            due_at: Timestamp::from_millis(r.due_at),
            attempts: u32::try_from(r.attempts).unwrap_or(u32::MAX),
        }
    }
}

/// Raised on every change (a counter; the runner watches for changes).
#[derive(Debug, Clone)]
pub(super) struct EventSignal(watch::Sender<u64>);

impl Default for EventSignal {
    fn default() -> Self {
        EventSignal(watch::channel(0).0)
    }
}

impl EventSignal {
    fn raise(&self) {
        self.0.send_modify(|n| *n = n.wrapping_add(1));
    }
}

impl SqliteStore {
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
        self.changing(events::insert(&self.writer, &row)).await?;
        self.events.raise();
        Ok(row.into())
    }

    /// The stored events, soonest due first (at most a thousand at a time).
    pub async fn pending_events(&self) -> Result<Vec<AsyncEvent>, StoreError> {
        let rows = self.reported(events::pending(&self.reader).await)?;
        Ok(rows.into_iter().map(AsyncEvent::from).collect())
    }

    /// Counts one more attempt of the event, before it runs; returns the count so far, or `None`
    /// if the event is gone.
    pub async fn event_attempt(&self, request_id: &str) -> Result<Option<u32>, StoreError> {
        let n = self
            .changing(events::attempt(&self.writer, request_id))
            .await?;
        Ok(n.map(|n| u32::try_from(n).unwrap_or(u32::MAX)))
    }

    /// Makes the event due again at `due_at` (a retry).
    pub async fn postpone_event(
        &self,
        request_id: &str,
        due_at: Timestamp,
    ) -> Result<(), StoreError> {
        self.changing(events::postpone(
            &self.writer,
            request_id,
            due_at.as_millis(),
        ))
        .await?;
        self.events.raise();
        Ok(())
    }

    /// Forgets a settled event.
    pub async fn remove_event(&self, request_id: &str) -> Result<(), StoreError> {
        self.changing(events::remove(&self.writer, request_id))
            .await?;
        self.events.raise();
        Ok(())
    }

    /// A receiver that changes whenever an event is stored, postponed or removed.
    pub fn event_signal(&self) -> watch::Receiver<u64> {
        self.events.0.subscribe()
    }
}
