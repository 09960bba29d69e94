//! The PostgreSQL backend (`storage.backend = "postgres"`, docs/postgres.md): [`PgStore`]
//! implements the store contract ([`QueueStore`](super::QueueStore)) on a database that several
//! esmd instances may share, so that they behave as one SQS.
//!
//! Shape: a connection pool, the schema of `migrations/postgres/` (the SQLite schema's queue
//! tables, so that `rows.rs` maps both), and one LISTEN connection (`listen.rs`). Sends and
//! deletes go through group-commit writers (`group.rs`): many in one transaction and one
//! commit. Every other operation is one short transaction of its own. All run at READ
//! COMMITTED; times come from the [`Clock`] and are bound as parameters, as in the SQLite store.
//!
//! How the queue rules hold across instances:
//! - a receive claims with `FOR UPDATE SKIP LOCKED`, so two instances never claim one message
//!   (`claim.rs`);
//! - every FIFO operation on a queue (send, receive, delete, visibility change) first takes the
//!   queue's transaction-scoped advisory lock, so group order, the in-flight blocking rule,
//!   deduplication and sequence numbers are decided by one transaction at a time;
//! - a commit that can make a message receivable sends `NOTIFY esmd_wake` in its transaction
//!   (delivered at commit); every instance's listener wakes its own long polls (`listen.rs`);
//! - receipt handles are the SQLite store's (queue id, row id, random token of the receive), and
//!   a delete or visibility change checks the token against the row's latest receive
//!   (`settle.rs`).
//!
//! Beyond the contract, `PgStore` has the SQLite `Store`'s other public methods, with the same
//! signatures (so that a facade can dispatch to either): mappings (`mappings.rs`), message move
//! tasks (`moves.rs`, `move_step.rs`: one instance runs a task at a time, by a lease on its
//! row), asynchronous invocations (`events.rs`: one instance runs an event at a time, by a
//! lease), tags and dead-letter sources (`tags.rs`), peek, explain, tombstones and receivers
//! (`peek.rs`, `tombstones.rs`), and the counts of every queue (`tally.rs`). The move and event
//! signals reach every instance by LISTEN/NOTIFY (`listen.rs`). A mapping's invocation slots
//! are leased rows shared by every instance (`slots.rs`), so its `max_concurrency` holds across
//! them.
//!
//! Not carried over (docs/postgres.md): the queue cache, the file's health.

mod claim;
mod events;
mod group;
mod listen;
mod mappings;
mod move_step;
mod moves;
mod peek;
mod queues;
mod send;
mod settle;
mod slots;
mod tags;
mod tally;
mod tombstones;

pub use slots::PgSlot;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{Postgres, Transaction};

use super::sql::tombstones::Fate;
use super::wake::Wakers;
use super::{EntryResults, QueueCounts, QueueInfo, QueueStore, StoreError};
use crate::clock::Clock;
use crate::domain::message::{Message, NewMessage, SendReceipt};
use crate::domain::queue::{QueueName, QueueSettings};

/// The PostgreSQL schema, embedded at build time.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// A transaction on the pool.
type Tx = Transaction<'static, Postgres>;

/// How a [`PgStore`] is run.
#[derive(Debug, Clone)]
pub struct PgOptions {
    /// Most connections in the pool (the LISTEN connection is one more).
    pub max_connections: u32,
    /// `storage.max_queues`: CreateQueue past it is refused.
    pub max_queues: u64,
    /// `storage.tombstone_retention`: how long a tombstone is kept (0: none are written).
    pub tombstone_retention: Duration,
}

impl Default for PgOptions {
    fn default() -> Self {
        PgOptions {
            max_connections: 8,
            max_queues: 1000,
            tombstone_retention: Duration::from_secs(300),
        }
    }
}

/// A cheap, cloneable handle on a PostgreSQL database shared with other esmd instances.
#[derive(Clone, Debug)]
pub struct PgStore {
    pool: PgPool,
    clock: Clock,
    wake: Wakers,
    max_queues: u64,
    /// `storage.tombstone_retention`, in milliseconds.
    tombstone_ms: i64,
    /// This instance's name in the leases of move tasks and events (a v4 UUID per connect).
    instance: Arc<str>,
    /// The move and event signals, raised by this instance's changes and by other instances'
    /// (`listen.rs`).
    signals: listen::Signals,
    /// Receiver numbers by mapping name, as registered (`peek.rs`).
    receivers: Arc<Mutex<HashMap<String, u16>>>,
    /// The group-commit writers that sends and deletes go through (`group.rs`); `None` in the
    /// writers' own handle, which runs them directly.
    writers: Option<group::Writers>,
    /// The full in-flight and delayed counts of queues too deep to count at each scrape
    /// (`hidden.rs`).
    hidden: super::hidden::HiddenCap,
    /// Stops the listener task when the last handle is dropped.
    _listener: Arc<listen::Guard>,
}

impl PgStore {
    /// Connects, applies the migrations the database lacks (sqlx holds an advisory lock while
    /// it does, so instances starting together migrate once), and starts listening for
    /// wake-ups before it returns, so no commit after it is missed.
    ///
    /// # Errors
    /// The database error: unreachable, refused credentials, a failed migration.
    pub async fn connect(
        connect: PgConnectOptions,
        clock: Clock,
        options: PgOptions,
    ) -> Result<PgStore, StoreError> {
        // Random reads cost about what sequential ones do on the disks esmd runs on; at the
        // default (4) a plan made while a queue was small read and sorted every row of it once
        // it had grown, rather than walking the claim index in order.
        let connect = connect.options([("random_page_cost", "1.1")]);
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(connect)
            .await?;
        MIGRATOR.run(&pool).await.map_err(|e| {
            StoreError::from(match e {
                sqlx::migrate::MigrateError::Execute(e) => e,
                other => sqlx::Error::Migrate(Box::new(other)),
            })
        })?;
        let wake = Wakers::default();
        let signals = listen::Signals::default();
        let listener = listen::start(&pool, wake.clone(), signals.clone()).await?;
        let store = PgStore {
            pool,
            clock,
            wake,
            max_queues: options.max_queues,
            tombstone_ms: super::rows::to_ms(options.tombstone_retention),
            instance: uuid::Uuid::new_v4().to_string().into(),
            signals,
            receivers: Arc::default(),
            writers: None,
            hidden: super::hidden::HiddenCap::new(super::hidden::DEFAULT_CAP),
            _listener: Arc::new(listener),
        };
        Ok(PgStore {
            writers: Some(group::Writers::start(store.clone())),
            ..store
        })
    }

    /// The clock's now, as stored.
    fn now(&self) -> i64 {
        self.clock.now().as_millis()
    }

    /// Begins a transaction.
    async fn begin(&self) -> Result<Tx, StoreError> {
        Ok(self.pool.begin().await?)
    }

    /// The pool: the store's facade pings it to tell whether PostgreSQL is reachable, and gives
    /// it a new password on a reload (`facade/link.rs`).
    pub(in crate::store) fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Closes the pool (the listener stops when the last handle is dropped).
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Takes a FIFO queue's advisory lock for the rest of the transaction (see the module doc).
async fn lock_fifo(tx: &mut Tx, q: &QueueInfo) -> Result<(), StoreError> {
    if q.name.is_fifo() {
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(q.id)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

impl QueueStore for PgStore {
    fn clock(&self) -> &Clock {
        &self.clock
    }

    async fn create_queue(
        &self,
        name: &QueueName,
        settings: &QueueSettings,
        tags: &BTreeMap<String, String>,
    ) -> Result<(QueueInfo, bool), StoreError> {
        queues::create(self, name, settings, tags).await
    }

    async fn ensure_queue(
        &self,
        name: &QueueName,
        settings: &QueueSettings,
    ) -> Result<QueueInfo, StoreError> {
        queues::ensure(self, name, settings).await
    }

    async fn set_settings(
        &self,
        name: &QueueName,
        settings: &QueueSettings,
    ) -> Result<QueueInfo, StoreError> {
        queues::set_settings(self, name, settings).await
    }

    async fn queue(&self, name: &QueueName) -> Result<QueueInfo, StoreError> {
        let mut tx = self.begin().await?;
        let q = queues::require(&mut tx, name).await?;
        tx.commit().await?;
        Ok(q)
    }

    async fn queues(&self) -> Result<Vec<QueueInfo>, StoreError> {
        queues::list(&self.pool).await
    }

    async fn delete_queue(&self, name: &QueueName) -> Result<(), StoreError> {
        queues::delete(self, name).await
    }

    async fn purge(&self, name: &QueueName) -> Result<(), StoreError> {
        queues::purge(self, name).await
    }

    async fn send(
        &self,
        queue: &QueueName,
        batch: Vec<NewMessage>,
    ) -> Result<EntryResults<SendReceipt>, StoreError> {
        group::send(self, queue, batch).await
    }

    async fn receive(
        &self,
        queue: &QueueName,
        max: u32,
        visibility: Option<Duration>,
    ) -> Result<Vec<Message>, StoreError> {
        Ok(claim::receive(self, queue, max, visibility, 0).await?.0)
    }

    async fn receive_wait(
        &self,
        queue: &QueueName,
        max: u32,
        visibility: Option<Duration>,
        wait: Duration,
    ) -> Result<Vec<Message>, StoreError> {
        claim::receive_wait(self, queue, max, visibility, wait, 0).await
    }

    async fn delete(
        &self,
        queue: &QueueName,
        handles: &[String],
    ) -> Result<EntryResults<()>, StoreError> {
        group::delete(self, queue, handles, Fate::Deleted).await
    }

    async fn change_visibility(
        &self,
        queue: &QueueName,
        entries: &[(String, Duration)],
    ) -> Result<EntryResults<()>, StoreError> {
        settle::change_visibility(self, queue, entries).await
    }

    async fn counts(&self, name: &QueueName) -> Result<QueueCounts, StoreError> {
        settle::counts(self, name).await
    }

    async fn sweep(&self) -> Result<u64, StoreError> {
        settle::sweep(self).await
    }
}
