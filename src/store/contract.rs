//! The store contract: the core queue operations every backend implements ([`QueueStore`]),
//! written once against the SQLite [`Store`](super::Store) and the PostgreSQL
//! [`PgStore`](super::PgStore), so that one conformance suite (tests/it/conformance) checks
//! both against the same queue rules (docs/semantics.md §6).
//!
//! The contract uses the store's own types (`QueueInfo`, `QueueCounts`, `EntryResults`,
//! `StoreError`) and the domain's (`QueueName`, `QueueSettings`, `NewMessage`, `Message`), and
//! says nothing about how a backend stores, batches or wakes: the SQLite store's group commit
//! and in-process wake-ups, and PostgreSQL's row locks and LISTEN/NOTIFY, are each backend's
//! own. What the daemon needs beyond it (peek, mappings, move tasks, asynchronous invocations)
//! each backend has as methods of the same name and signature, which the `Store` facade
//! dispatches to (docs/postgres.md); the SQLite file's health is the SQLite store's alone.
//!
//! Every method returns a `Send` future, so a caller may spawn it on a multi-threaded runtime.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use super::{EntryResults, QueueCounts, QueueInfo, Store, StoreError};
use crate::clock::Clock;
use crate::domain::message::{Message, NewMessage, SendReceipt};
use crate::domain::queue::{QueueName, QueueSettings};

/// The core queue operations, with the semantics of docs/semantics.md §6.
pub trait QueueStore: Clone + Send + Sync + 'static {
    /// The clock the store reads (every time it stores comes from it).
    fn clock(&self) -> &Clock;

    /// Creates a queue, or returns the existing one unchanged; the `bool` says whether it was
    /// created. `Rejected` when `settings` break a rule (a missing dead-letter queue, a range)
    /// or `storage.max_queues` queues exist already.
    fn create_queue(
        &self,
        name: &QueueName,
        settings: &QueueSettings,
        tags: &BTreeMap<String, String>,
    ) -> impl Future<Output = Result<(QueueInfo, bool), StoreError>> + Send;

    /// Creates the queue or overwrites its settings (the configuration file's queues).
    fn ensure_queue(
        &self,
        name: &QueueName,
        settings: &QueueSettings,
    ) -> impl Future<Output = Result<QueueInfo, StoreError>> + Send;

    /// Replaces a queue's settings (SetQueueAttributes after merging).
    fn set_settings(
        &self,
        name: &QueueName,
        settings: &QueueSettings,
    ) -> impl Future<Output = Result<QueueInfo, StoreError>> + Send;

    /// One queue; `Rejected(QueueDoesNotExist)` for an unknown name.
    fn queue(&self, name: &QueueName)
        -> impl Future<Output = Result<QueueInfo, StoreError>> + Send;

    /// Every queue, sorted by region and name.
    fn queues(&self) -> impl Future<Output = Result<Vec<QueueInfo>, StoreError>> + Send;

    /// Deletes a queue and all its messages.
    fn delete_queue(&self, name: &QueueName)
        -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Deletes every message of a queue and its FIFO deduplication entries;
    /// `Rejected(PurgeQueueInProgress)` within 60 s of the previous purge.
    fn purge(&self, name: &QueueName) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Sends a batch; each entry is validated on its own, and FIFO entries deduplicated within
    /// the 5-minute window.
    fn send(
        &self,
        queue: &QueueName,
        batch: Vec<NewMessage>,
    ) -> impl Future<Output = Result<EntryResults<SendReceipt>, StoreError>> + Send;

    /// Receives up to `max` messages now, invisible for `visibility` (the queue's visibility
    /// timeout when `None`); messages past `max_receive_count` go to the dead-letter queue.
    fn receive(
        &self,
        queue: &QueueName,
        max: u32,
        visibility: Option<Duration>,
    ) -> impl Future<Output = Result<Vec<Message>, StoreError>> + Send;

    /// Receives like [`QueueStore::receive`], waiting up to `wait` for a message when none is
    /// receivable, and returning as soon as one is.
    fn receive_wait(
        &self,
        queue: &QueueName,
        max: u32,
        visibility: Option<Duration>,
        wait: Duration,
    ) -> impl Future<Output = Result<Vec<Message>, StoreError>> + Send;

    /// Deletes by receipt handle, with the stale-handle rules (standard: a handle whose
    /// visibility ran out still deletes unless the message was received again; FIFO: refused).
    fn delete(
        &self,
        queue: &QueueName,
        handles: &[String],
    ) -> impl Future<Output = Result<EntryResults<()>, StoreError>> + Send;

    /// Changes the visibility timeout of received messages, from now, within the 12-hour cap.
    fn change_visibility(
        &self,
        queue: &QueueName,
        entries: &[(String, Duration)],
    ) -> impl Future<Output = Result<EntryResults<()>, StoreError>> + Send;

    /// Message counts by state (visible, in flight, delayed).
    fn counts(
        &self,
        name: &QueueName,
    ) -> impl Future<Output = Result<QueueCounts, StoreError>> + Send;

    /// Deletes messages past their queue's retention and expired deduplication entries;
    /// returns how many messages expired.
    fn sweep(&self) -> impl Future<Output = Result<u64, StoreError>> + Send;
}

impl QueueStore for Store {
    fn clock(&self) -> &Clock {
        Store::clock(self)
    }

    async fn create_queue(
        &self,
        name: &QueueName,
        settings: &QueueSettings,
        tags: &BTreeMap<String, String>,
    ) -> Result<(QueueInfo, bool), StoreError> {
        Store::create_queue(self, name, settings, tags).await
    }

    async fn ensure_queue(
        &self,
        name: &QueueName,
        settings: &QueueSettings,
    ) -> Result<QueueInfo, StoreError> {
        Store::ensure_queue(self, name, settings).await
    }

    async fn set_settings(
        &self,
        name: &QueueName,
        settings: &QueueSettings,
    ) -> Result<QueueInfo, StoreError> {
        Store::set_settings(self, name, settings).await
    }

    async fn queue(&self, name: &QueueName) -> Result<QueueInfo, StoreError> {
        Store::queue(self, name).await
    }

    async fn queues(&self) -> Result<Vec<QueueInfo>, StoreError> {
        Store::queues(self).await
    }

    async fn delete_queue(&self, name: &QueueName) -> Result<(), StoreError> {
        Store::delete_queue(self, name).await
    }

    async fn purge(&self, name: &QueueName) -> Result<(), StoreError> {
        Store::purge(self, name).await
    }

    async fn send(
        &self,
        queue: &QueueName,
        batch: Vec<NewMessage>,
    ) -> Result<EntryResults<SendReceipt>, StoreError> {
        Store::send(self, queue, batch).await
    }

    async fn receive(
        &self,
        queue: &QueueName,
        max: u32,
        visibility: Option<Duration>,
    ) -> Result<Vec<Message>, StoreError> {
        Store::receive(self, queue, max, visibility).await
    }

    async fn receive_wait(
        &self,
        queue: &QueueName,
        max: u32,
        visibility: Option<Duration>,
        wait: Duration,
    ) -> Result<Vec<Message>, StoreError> {
        Store::receive_wait(self, queue, max, visibility, wait).await
    }

    async fn delete(
        &self,
        queue: &QueueName,
        handles: &[String],
    ) -> Result<EntryResults<()>, StoreError> {
        Store::delete(self, queue, handles).await
    }

    async fn change_visibility(
        &self,
        queue: &QueueName,
        entries: &[(String, Duration)],
    ) -> Result<EntryResults<()>, StoreError> {
        Store::change_visibility(self, queue, entries).await
    }

    async fn counts(&self, name: &QueueName) -> Result<QueueCounts, StoreError> {
        Store::counts(self, name).await
    }

    async fn sweep(&self) -> Result<u64, StoreError> {
        Store::sweep(self).await
    }
}
