//! Group commit: the message operations (send, receive, delete, change visibility) go through one
//! writer task, which runs every operation waiting in its queue inside ONE transaction and
//! answers them all after ONE commit. While a commit's fsync is in progress new requests pile up
//! and share the next one, so `synchronous = full` costs one fsync per group rather than per
//! request, and no acknowledged write is ever answered before it is durable.
//!
//! An operation that is rejected (an SQS rule) has written nothing, so the group goes on. A
//! database error aborts the group: it is rolled back and every operation in it gets
//! `StoreError::Unavailable`, which is retriable; nothing in it was acknowledged.
//!
//! The kinds of database trouble that callers word differently ([`DbFault`]) are told apart
//! here: a full database (`storage.max_size` or the disk), a lock held by another process past
//! the busy timeout, and everything else.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use sqlx::SqlitePool;
use tokio::sync::{mpsc, oneshot};

use super::messages::{self, Received, Tx};
use super::queues;
use super::wake::Wakers;
use super::{EntryResults, QueueInfo, StoreError};
use crate::clock::Clock;
use crate::domain::message::{NewMessage, SendReceipt};
use crate::domain::queue::QueueName;
use crate::domain::Rejection;
use crate::metrics::Metrics;

/// What kind of trouble a database error is, as far as a client is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum DbFault {
    /// `SQLITE_FULL`: `storage.max_size` is reached or the disk is full. Nothing of the refused
    /// work was stored; deleting messages (or freeing disk space) lets writes succeed again.
    Full,
    /// `SQLITE_BUSY`/`SQLITE_LOCKED`: another process held the database past the busy timeout.
    Locked,
    /// Anything else (I/O errors, a damaged file, the store closing).
    Other,
}

impl DbFault {
    /// Classifies an error from SQLite by its primary result code.
    pub(super) fn of(e: &sqlx::Error) -> DbFault {
        const SQLITE_BUSY: i64 = 5;
        const SQLITE_LOCKED: i64 = 6;
        const SQLITE_FULL: i64 = 13;
        let code = match e {
            sqlx::Error::Database(d) => d.code().and_then(|c| c.parse::<i64>().ok()),
            _ => None,
        };
        match code.map(|c| c & 0xff) {
            Some(SQLITE_FULL) => DbFault::Full,
            Some(SQLITE_BUSY | SQLITE_LOCKED) => DbFault::Locked,
            _ => DbFault::Other,
        }
    }

    /// A few words for a log line.
    pub(super) fn describe(self) -> &'static str {
        match self {
            DbFault::Full => "the database is full (storage.max_size or the disk)",
            DbFault::Locked => "the database is locked by another process",
            DbFault::Other => "the database could not do the work",
        }
    }
}

impl StoreError {
    fn fault(&self) -> Option<DbFault> {
        match self {
            StoreError::Unavailable(e) => Some(DbFault::of(e)),
            StoreError::Rejected(_) => None,
        }
    }

    /// Whether this is the database being full (`storage.max_size` reached, or the disk):
    /// nothing of the refused work was stored, and it succeeds again once space is freed.
    pub fn is_database_full(&self) -> bool {
        self.fault() == Some(DbFault::Full)
    }

    /// Whether another process held the database locked past the busy timeout.
    pub fn is_database_locked(&self) -> bool {
        self.fault() == Some(DbFault::Locked)
    }
}

/// Logs a refused group once, in words that say what happened and that nothing was stored.
fn log_refused(metrics: &Metrics, e: &sqlx::Error, operations: usize) {
    let fault = DbFault::of(e);
    if !matches!(e, sqlx::Error::PoolClosed) {
        metrics.store_error(match fault {
            DbFault::Full => "full",
            DbFault::Locked => "locked",
            DbFault::Other => "other",
        });
    }
    match fault {
        DbFault::Full => tracing::warn!(
            error = %e, operations,
            "{}: the writes were refused and rolled back, nothing acknowledged is lost; they succeed again once messages are deleted or space is freed",
            fault.describe()
        ),
        DbFault::Locked => tracing::warn!(
            error = %e, operations,
            "{} (held past the busy timeout): the writes were refused and may be retried",
            fault.describe()
        ),
        DbFault::Other if matches!(e, sqlx::Error::PoolClosed) => {
            tracing::debug!(operations, "the store is closing; late writes were refused")
        }
        DbFault::Other => tracing::warn!(
            error = %e, operations,
            "database write failed; the requests were refused and may be retried"
        ),
    }
}

/// Most operations one transaction takes.
const MAX_GROUP: usize = 512;

type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

/// A message operation waiting for the writer.
pub(super) enum Op {
    Send {
        queue: QueueName,
        batch: Vec<NewMessage>,
        reply: Reply<EntryResults<SendReceipt>>,
    },
    Receive {
        queue: QueueName,
        max: u32,
        visibility: Option<Duration>,
        reply: Reply<Received>,
    },
    Delete {
        queue: QueueName,
        handles: Vec<String>,
        reply: Reply<EntryResults<()>>,
    },
    ChangeVisibility {
        queue: QueueName,
        entries: Vec<(String, Duration)>,
        reply: Reply<EntryResults<()>>,
    },
}

/// Queue counters to bump once the transaction has committed.
#[derive(Debug, Clone, Copy)]
pub(super) enum Counter {
    Sent,
    Received,
    Deleted,
    DeadLettered,
}

/// Side effects of a group, applied only after it commits.
#[derive(Default)]
pub(super) struct Effects {
    /// Messages made receivable, per queue name.
    wake: HashMap<String, u64>,
    counters: Vec<(Counter, QueueName, u64)>,
}

impl Effects {
    /// `n` messages of `queue` may have become receivable.
    pub(super) fn wake(&mut self, queue: &QueueName, n: u64) {
        if n > 0 {
            *self.wake.entry(queue.as_str().to_owned()).or_default() += n;
        }
    }

    pub(super) fn count(&mut self, counter: Counter, queue: &QueueName, n: u64) {
        if n > 0 {
            self.counters.push((counter, queue.clone(), n));
        }
    }

    fn apply(self, wakers: &Wakers, metrics: &Metrics) {
        for (q, n) in self.wake {
            wakers.messages(&q, n);
        }
        for (c, q, n) in self.counters {
            let q = q.as_str();
            match c {
                Counter::Sent => metrics.messages_sent(q, n),
                Counter::Received => metrics.messages_received(q, n),
                Counter::Deleted => metrics.messages_deleted(q, n),
                Counter::DeadLettered => metrics.messages_dead_lettered(q, n),
            }
        }
    }
}

/// The writer task's inputs.
pub(super) struct Writer {
    pub pool: SqlitePool,
    pub clock: Clock,
    pub wake: Wakers,
    pub metrics: Arc<Metrics>,
    /// When each standard queue (by id) last had its expired messages deleted by a receive.
    pub expired_at: HashMap<i64, i64>,
}

/// How often, in the clock's milliseconds, a receive on a standard queue also deletes the
/// queue's expired messages. Receives never hand out an expired message in between (the claim
/// skips them); this only bounds how long the rows linger.
const EXPIRE_EVERY_MS: i64 = 1000;

/// The result of one operation inside a group, answered only once the group commits.
enum Outcome {
    Send(Result<EntryResults<SendReceipt>, StoreError>),
    Receive(Result<Received, StoreError>),
    Entries(Result<EntryResults<()>, StoreError>),
}

impl Outcome {
    fn db_error(&self) -> Option<Arc<sqlx::Error>> {
        match self {
            Outcome::Send(r) => db_error(r),
            Outcome::Receive(r) => db_error(r),
            Outcome::Entries(r) => db_error(r),
        }
    }
}

/// Sends `op`'s answer.
fn answer(op: Op, outcome: Outcome) {
    match (op, outcome) {
        (Op::Send { reply, .. }, Outcome::Send(r)) => drop(reply.send(r)),
        (Op::Receive { reply, .. }, Outcome::Receive(r)) => drop(reply.send(r)),
        (Op::Delete { reply, .. } | Op::ChangeVisibility { reply, .. }, Outcome::Entries(r)) => {
            drop(reply.send(r))
        }
        _ => unreachable!("each operation yields its own kind of outcome"),
    }
}

/// Why a group did not commit: the database error, and the operation that hit it (`None` when
/// the transaction as a whole failed to begin or commit).
struct Failed {
    error: Arc<sqlx::Error>,
    culprit: Option<usize>,
}

fn op_fail(op: Op, e: &Arc<sqlx::Error>) {
    let err = || StoreError::Unavailable(e.clone());
    match op {
        Op::Send { reply, .. } => drop(reply.send(Err(err()))),
        Op::Receive { reply, .. } => drop(reply.send(Err(err()))),
        Op::Delete { reply, .. } | Op::ChangeVisibility { reply, .. } => {
            drop(reply.send(Err(err())))
        }
    }
}

fn db_error<T>(r: &Result<T, StoreError>) -> Option<Arc<sqlx::Error>> {
    match r {
        Err(StoreError::Unavailable(e)) => Some(e.clone()),
        _ => None,
    }
}

impl Writer {
    /// Runs until every sender is gone.
    pub(super) async fn run(mut self, mut rx: mpsc::Receiver<Op>) {
        while let Some(first) = rx.recv().await {
            let mut ops = vec![first];
            while ops.len() < MAX_GROUP {
                match rx.try_recv() {
                    Ok(op) => ops.push(op),
                    Err(_) => break,
                }
            }
            self.execute(ops).await;
        }
    }

    /// Runs a group. If one operation hits a database error (a full disk, say), it alone is
    /// refused and the others run again in a fresh transaction, so a send that does not fit
    /// never takes a poller's deletes down with it. Nothing is answered before its commit.
    async fn execute(&mut self, mut ops: Vec<Op>) {
        loop {
            match self.attempt(&ops).await {
                Ok((outcomes, fx)) => {
                    fx.apply(&self.wake, &self.metrics);
                    ops.into_iter()
                        .zip(outcomes)
                        .for_each(|(op, o)| answer(op, o));
                    return;
                }
                Err(Failed {
                    error,
                    culprit: Some(k),
                }) if ops.len() > 1 => {
                    log_refused(&self.metrics, &error, 1);
                    op_fail(ops.remove(k), &error);
                }
                Err(Failed { error, .. }) => {
                    log_refused(&self.metrics, &error, ops.len());
                    ops.into_iter().for_each(|op| op_fail(op, &error));
                    return;
                }
            }
        }
    }

    /// One transaction over every operation of the group; rolled back on any database error.
    /// Each queue is looked up once per group: message operations never change a queue's row,
    /// and queue changes take the same connection between groups.
    async fn attempt(&mut self, ops: &[Op]) -> Result<(Vec<Outcome>, Effects), Failed> {
        let whole = |e: sqlx::Error| Failed {
            error: Arc::new(e),
            culprit: None,
        };
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(whole)?;
        let mut fx = Effects::default();
        let mut outcomes = Vec::with_capacity(ops.len());
        let mut found: HashMap<&QueueName, Option<QueueInfo>> = HashMap::new();
        for (k, op) in ops.iter().enumerate() {
            let now = self.clock.now().as_millis();
            let outcome = match resolve(&mut tx, &mut found, op.queue()).await {
                Ok(q) => self.run_op(&mut tx, &mut fx, q, op, now).await,
                Err(e) => op.refused(e),
            };
            if let Some(error) = outcome.db_error() {
                // Dropping the transaction rolls it back (or finds SQLite already did).
                return Err(Failed {
                    error,
                    culprit: Some(k),
                });
            }
            outcomes.push(outcome);
        }
        tx.commit().await.map_err(whole)?;
        Ok((outcomes, fx))
    }

    async fn run_op(
        &mut self,
        tx: &mut Tx,
        fx: &mut Effects,
        q: &QueueInfo,
        op: &Op,
        now: i64,
    ) -> Outcome {
        match op {
            Op::Send { batch, .. } => Outcome::Send(messages::send(tx, fx, q, batch, now).await),
            Op::Receive {
                max, visibility, ..
            } => {
                let expire = q.name.is_fifo() || {
                    let last = self.expired_at.entry(q.id).or_insert(i64::MIN);
                    let due = now.saturating_sub(*last) >= EXPIRE_EVERY_MS;
                    if due {
                        *last = now;
                    }
                    due
                };
                Outcome::Receive(messages::receive(tx, fx, q, *max, *visibility, now, expire).await)
            }
            Op::Delete { handles, .. } => {
                Outcome::Entries(messages::delete(tx, fx, q, handles, now).await)
            }
            Op::ChangeVisibility { entries, .. } => {
                Outcome::Entries(messages::change_visibility(tx, fx, q, entries, now).await)
            }
        }
    }
}

/// The queue an operation names, looked up once per group.
async fn resolve<'m, 'o>(
    tx: &mut Tx,
    found: &'m mut HashMap<&'o QueueName, Option<QueueInfo>>,
    name: &'o QueueName,
) -> Result<&'m QueueInfo, StoreError> {
    if !found.contains_key(name) {
        let info = queues::lookup(tx, name).await?;
        found.insert(name, info);
    }
    found[name]
        .as_ref()
        .ok_or_else(|| Rejection::no_queue().into())
}

impl Op {
    fn queue(&self) -> &QueueName {
        match self {
            Op::Send { queue, .. }
            | Op::Receive { queue, .. }
            | Op::Delete { queue, .. }
            | Op::ChangeVisibility { queue, .. } => queue,
        }
    }

    /// This operation's outcome when it cannot run at all.
    fn refused(&self, e: StoreError) -> Outcome {
        match self {
            Op::Send { .. } => Outcome::Send(Err(e)),
            Op::Receive { .. } => Outcome::Receive(Err(e)),
            Op::Delete { .. } | Op::ChangeVisibility { .. } => Outcome::Entries(Err(e)),
        }
    }
}
