//! Group commit: the message operations (send, receive, delete, change visibility) go through one
//! writer task, which runs every operation waiting in its queue inside ONE transaction and
//! answers them all after ONE commit. With `synchronous = full` the WAL is flushed beside the
//! writer (`sync.rs`) while it runs the next group, and sends, deletes and visibility changes
//! are answered after that flush: one fsync per group or fewer, none on the writer's path, and
//! no acknowledged write answered before it is durable.
//!
//! Within the transaction, operations of one kind on one queue share a statement (`plan.rs`).
//! An operation that is rejected (an SQS rule) has written nothing, so the group goes on. A
//! database error rolls the group back: the operations whose statement hit it get
//! `StoreError::Database` (retriable; nothing of theirs was acknowledged), the fault is logged
//! once and reported, and the others run again in a fresh transaction.
//!
//! Supervision: the task runs on the owner's `TaskTracker` and stops when the owner's token is
//! cancelled (after answering what is queued). Should it panic, [`Handle::failed`] resolves with
//! the cause and every later operation is refused with `StoreError::WriterStopped`, so the owner
//! can stop serving instead of looking healthy.

mod handle;
mod plan;
pub(super) mod room;
mod sync;
mod txn;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::{SqliteConnection, SqlitePool};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::error::log_fault;
use super::error::StoreError;
use super::health::Health;
use super::report::{Effects, Observer, StoreEvent};
use super::reserve::Reserve;
use super::sql::tombstones::{Fate, Tombs};
use super::sql::{self, queues};
use super::tally::Tally;
use super::types::{QueueInfo, WriterFault};
use super::wake::Wakers;
use crate::clock::Clock;
use crate::domain::queue::QueueName;
use crate::domain::Rejection;
pub(super) use handle::{Handle, Start};
pub(super) use plan::Op;
use plan::{database, db_error, internal, Failed, Outcome, Plan};

/// Most operations one transaction takes.
const MAX_GROUP: usize = 512;

/// Longest the writer keeps the connection from the pool while groups keep coming.
const HOLD: Duration = Duration::from_millis(100);

/// How often, in the clock's milliseconds, a receive on a standard queue also deletes the
/// queue's expired messages. Receives never hand out an expired message in between (the claim
/// skips them); this only bounds how long the rows linger.
const EXPIRE_EVERY_MS: i64 = 1000;

/// How a group ended.
enum Executed {
    /// Committed and answered.
    Committed,
    /// Refused as a whole and answered; the connection goes back to the pool to be checked.
    Refused,
    /// Some operations were refused and the connection was left unusable (SQLite rolled the
    /// transaction back by itself); these run again on a connection from the pool.
    Retry(Vec<Op>),
}

/// Adds the operations already waiting, up to [`MAX_GROUP`].
fn fill(rx: &mut mpsc::Receiver<Op>, ops: &mut Vec<Op>) {
    while ops.len() < MAX_GROUP {
        match rx.try_recv() {
            Ok(op) => ops.push(op),
            Err(_) => break,
        }
    }
}

/// The writer task's state.
struct Writer {
    pool: SqlitePool,
    clock: Clock,
    wake: Wakers,
    observer: Observer,
    fault: Option<WriterFault>,
    /// Whether the database file is still the one opened (checked before every group).
    health: Health,
    /// Messages per queue, kept as groups commit.
    tally: Tally,
    /// When each standard queue (by id) last had its expired messages deleted by a receive.
    expired_at: HashMap<i64, i64>,
    /// Operations of the writer's own (releases of unclaimed receives), run in the next group.
    pending: Vec<Op>,
    /// See [`Start::send_limit`].
    send_limit: Option<u64>,
    /// See [`Start::reserve`].
    reserve: Arc<Reserve>,
    /// See [`Start::tombstones`].
    tombstones: bool,
    /// Flushes the WAL beside the writer and answers after it (`sync.rs`); `None` when
    /// SQLite flushes at each commit or not at all.
    sync: Option<sync::Syncer>,
    /// The queue rows looked up since the connection was taken from the pool (`None`: no such
    /// queue). Only the write connection changes queues, and the writer holds the only one, so
    /// a row read while it is held stays right until it goes back; it is forgotten at every
    /// acquire.
    held: HashMap<QueueName, Option<QueueInfo>>,
    /// SQLite is inside a transaction of the writer's (`txn.rs`).
    open: bool,
    /// A rollback failed: the connection is closed rather than pooled (`txn.rs`).
    discard: bool,
}

impl Writer {
    /// Runs until `stop` is cancelled (then answers what is queued and returns) or every
    /// sender is gone.
    ///
    /// The connection is held from one group to the next while operations keep arriving, so
    /// a busy writer does not wait for the pool to take it back and hand it out again (under
    /// load that round trip cost as much as the commit). It goes back to the pool when the
    /// queue runs dry, after [`HOLD`], or after a failed group (the pool then checks it), so
    /// queue changes and the sweeper get their turn.
    async fn run(mut self, mut rx: mpsc::Receiver<Op>, stop: CancellationToken) {
        let mut retry: Option<Vec<Op>> = None;
        loop {
            let mut ops = match retry.take() {
                Some(ops) => ops,
                None if !self.pending.is_empty() => std::mem::take(&mut self.pending),
                None => {
                    let first = tokio::select! {
                        op = rx.recv() => op,
                        _ = stop.cancelled() => {
                            // Refuse new operations; answer those already queued.
                            rx.close();
                            rx.recv().await
                        }
                    };
                    match first {
                        Some(first) => vec![first],
                        None => return,
                    }
                }
            };
            fill(&mut rx, &mut ops);
            self.inject_fault(&ops);
            let mut conn = match self.pool.acquire().await {
                Ok(conn) => conn,
                Err(e) => {
                    let error = Arc::new(e);
                    self.refused(&error, ops.len());
                    ops.into_iter().for_each(|op| op.fail(&database(&error)));
                    continue;
                }
            };
            if self.sync.is_some() {
                // The flush runs beside the writer (`sync.rs`); the pool sets FULL again when
                // the connection goes back (`open.rs`).
                if let Err(e) = sqlx::query("PRAGMA synchronous = NORMAL")
                    .execute(&mut *conn)
                    .await
                {
                    let error = Arc::new(e);
                    self.refused(&error, ops.len());
                    ops.into_iter().for_each(|op| op.fail(&database(&error)));
                    continue;
                }
            }
            self.held.clear();
            let held = Instant::now();
            loop {
                ops = match self.unless_broken(ops) {
                    Some(ops) => ops,
                    None => break,
                };
                // The next group's BEGIN goes with this one's commit when it is already waiting.
                let more = || held.elapsed() < HOLD && !rx.is_empty();
                match self.execute(&mut conn, ops, &more).await {
                    Executed::Committed if self.open || held.elapsed() < HOLD => {}
                    Executed::Committed | Executed::Refused => break,
                    Executed::Retry(rest) => {
                        retry = Some(rest);
                        break;
                    }
                }
                ops = std::mem::take(&mut self.pending);
                fill(&mut rx, &mut ops);
                if ops.is_empty() {
                    break;
                }
                self.inject_fault(&ops);
            }
            // A pooled connection is never inside a transaction.
            self.roll_back(&mut conn).await;
            if std::mem::take(&mut self.discard) {
                conn.close_on_drop();
            }
        }
    }

    /// Answers a committed group: at once, or, with the flush beside the writer, receives at
    /// once and the rest after the flush (`sync.rs`).
    fn answer(&mut self, ops: Vec<Op>, outcomes: Vec<Outcome>) {
        let mut after_flush = Vec::new();
        for (op, outcome) in ops.into_iter().zip(outcomes) {
            if self.sync.is_some() && !op.is_receive() {
                after_flush.push((op, outcome));
            } else if let Some(release) = op.answer(outcome) {
                self.pending.push(release);
            }
        }
        if let (Some(sync), false) = (&self.sync, after_flush.is_empty()) {
            sync.after_flush(after_flush);
        }
    }

    /// The test hook: fails the writer as a bug would.
    fn inject_fault(&self, ops: &[Op]) {
        if let Some(WriterFault::PanicOnQueue(q)) = &self.fault {
            if ops.iter().any(|op| op.queue() == q) {
                panic!("injected writer failure on an operation for queue {q}");
            }
        }
    }

    /// The group, unless the store is broken (the database file deleted or replaced: see
    /// `health.rs`); then every operation is refused as retriable and nothing is committed.
    fn unless_broken(&self, ops: Vec<Op>) -> Option<Vec<Op>> {
        let Some(reason) = self.health.check() else {
            return Some(ops);
        };
        let refused = StoreError::writer_stopped(&reason);
        ops.into_iter().for_each(|op| op.fail(&refused));
        None
    }

    /// Logs and reports a refused group once.
    fn refused(&self, e: &sqlx::Error, operations: usize) {
        if matches!(e, sqlx::Error::PoolClosed) {
            tracing::debug!(operations, "the store is closing; late writes were refused");
            return;
        }
        let fault = super::error::DbFault::of(e);
        if fault == super::error::DbFault::Other {
            // A write failure may be the file gone from under the daemon: look.
            self.health.check();
        }
        log_fault(fault, e, operations);
        self.observer
            .emit(StoreEvent::Refused { fault, operations });
    }

    /// Runs a group. If a statement hits a database error (a full disk, say), only the
    /// operations it served are refused and the others run again in a fresh transaction, so a
    /// send that does not fit never takes a poller's deletes down with it. Nothing is answered
    /// before its commit.
    async fn execute(
        &mut self,
        conn: &mut SqliteConnection,
        mut ops: Vec<Op>,
        more: &(dyn Fn() -> bool + Sync),
    ) -> Executed {
        let mut room_for_tombstones = true;
        loop {
            let tombs = if !room_for_tombstones {
                Tombs::no_room()
            } else {
                Tombs::new(self.tombstones, self.send_limit)
            };
            match self.attempt(conn, &ops, tombs, more).await {
                Ok((outcomes, fx)) => {
                    self.observer.emit(StoreEvent::Committed {
                        operations: ops.len(),
                    });
                    fx.apply(&self.wake, &self.observer, &self.tally);
                    self.answer(ops, outcomes);
                    return Executed::Committed;
                }
                Err(Failed { error, .. }) if room::release_reserve(&self.reserve, &error) => {
                    if !self.usable() {
                        return Executed::Retry(ops);
                    }
                }
                // A delete never fails for want of room for its tombstones: run the group
                // again without them (`sql/tombstones.rs`).
                Err(Failed {
                    tombstones: true, ..
                }) if room_for_tombstones => {
                    tracing::warn!("the database is full: deletes go on without tombstones");
                    room_for_tombstones = false;
                    if !self.usable() {
                        return Executed::Retry(ops);
                    }
                }
                Err(Failed {
                    error,
                    mut culprits,
                    ..
                }) if !culprits.is_empty() && culprits.len() < ops.len() => {
                    self.refused(&error, culprits.len());
                    culprits.sort_unstable();
                    for k in culprits.into_iter().rev() {
                        ops.remove(k).fail(&database(&error));
                    }
                    if !self.usable() {
                        return Executed::Retry(ops);
                    }
                }
                Err(Failed { error, .. }) => {
                    self.refused(&error, ops.len());
                    ops.into_iter().for_each(|op| op.fail(&database(&error)));
                    return Executed::Refused;
                }
            }
        }
    }

    /// One transaction over every operation of the group; rolled back on any database error.
    ///
    /// Keeping operations of one kind on one queue in one statement keeps the statements per
    /// group, each a round trip to SQLite's thread, near the number of queues rather than of
    /// requests. Sends run first so that receives in the same group see them. Each queue is
    /// looked up once per group: message operations never change a queue's row, and queue
    /// changes take the same connection between groups, so the rows are kept while the
    /// connection is held (`held`).
    async fn attempt(
        &mut self,
        conn: &mut SqliteConnection,
        ops: &[Op],
        mut tombs: Tombs,
        more: &(dyn Fn() -> bool + Sync),
    ) -> Result<(Vec<Outcome>, Effects), Failed> {
        match self.attempt_with(conn, ops, &mut tombs, more).await {
            Ok((outcomes, mut fx)) => {
                fx.tombstones(tombs.written, tombs.skipped);
                Ok((outcomes, fx))
            }
            Err(mut failed) => {
                failed.tombstones = tombs.failed;
                self.roll_back(conn).await;
                Err(failed)
            }
        }
    }

    /// [`Writer::attempt`] with the group's tombstone policy.
    async fn attempt_with(
        &mut self,
        conn: &mut SqliteConnection,
        ops: &[Op],
        tombs: &mut Tombs,
        more: &(dyn Fn() -> bool + Sync),
    ) -> Result<(Vec<Outcome>, Effects), Failed> {
        let whole = |e: sqlx::Error| Failed {
            error: Arc::new(e),
            culprits: Vec::new(),
            tombstones: false,
        };
        self.begin(conn).await.map_err(whole)?;
        let tx = &mut *conn;
        let now = self.clock.now().as_millis();
        let mut fx = Effects::default();
        let mut outcomes: Vec<Option<Outcome>> = ops.iter().map(|_| None).collect();

        let mut found: Vec<QueueInfo> = Vec::new();
        let mut known: HashMap<&QueueName, Option<usize>> = HashMap::new();
        let mut plan = Plan::default();
        for (k, op) in ops.iter().enumerate() {
            let name = op.queue();
            let at = match known.get(name) {
                Some(at) => *at,
                None => {
                    let info = match self.held.get(name) {
                        Some(info) => info.clone(),
                        None => {
                            let info = queues::lookup(tx, name)
                                .await
                                .map_err(|e| Failed::of(e, vec![k]))?;
                            self.held.insert(name.clone(), info.clone());
                            info
                        }
                    };
                    let at = info.map(|info| {
                        found.push(info);
                        found.len() - 1
                    });
                    known.insert(name, at);
                    at
                }
            };
            match at {
                Some(at) => plan.add(k, op, at, found[at].name.is_fifo()),
                None => outcomes[k] = Some(op.refused(Rejection::no_queue().into())),
            }
        }

        for (at, shared) in &plan.sends {
            let results = sql::send::send(tx, &mut fx, &found[*at], &shared.items, now)
                .await
                .map_err(|e| Failed::of(e, shared.ops.clone()))?;
            room::check(tx, self.send_limit, &self.reserve)
                .await
                .map_err(|e| Failed::of(e.into(), shared.ops.clone()))?;
            for (&k, r) in shared.ops.iter().zip(results) {
                outcomes[k] = Some(Outcome::Send(Ok(r)));
            }
        }
        for &(k, at, entries) in &plan.visibility {
            let r = sql::settle::change_visibility(tx, &mut fx, &found[at], entries, now).await;
            if let Some(error) = db_error(&r) {
                return Err(Failed {
                    error,
                    culprits: vec![k],
                    tombstones: false,
                });
            }
            outcomes[k] = Some(Outcome::Entries(r));
        }
        for ((at, fate), shared) in &plan.deletes {
            let fate = Fate::from_code(i64::from(*fate)).unwrap_or(Fate::Deleted);
            let q = &found[*at];
            let results = sql::settle::delete(tx, &mut fx, tombs, q, &shared.items, fate, now)
                .await
                .map_err(|e| Failed::of(e, shared.ops.clone()))?;
            for (&k, r) in shared.ops.iter().zip(results) {
                outcomes[k] = Some(Outcome::Entries(Ok(r)));
            }
        }
        for ((at, visibility, receiver, _), shared) in &plan.receives {
            let q = &found[*at];
            let expire = self.expire_due(q, now);
            let claim = sql::claim::Claim {
                maxes: &shared.items,
                visibility: *visibility,
                receiver: *receiver,
                now,
                expire_first: expire,
            };
            let got = sql::claim::receive(tx, &mut fx, tombs, q, claim)
                .await
                .map_err(|e| Failed::of(e, shared.ops.clone()))?;
            for (&k, r) in shared.ops.iter().zip(got) {
                outcomes[k] = Some(Outcome::Receive(Ok(r)));
            }
        }
        self.commit(tx, more()).await.map_err(whole)?;
        let outcomes = ops
            .iter()
            .zip(outcomes)
            .map(|(op, o)| {
                o.unwrap_or_else(|| op.refused(internal("an operation was not planned")))
            })
            .collect();
        Ok((outcomes, fx))
    }

    /// Whether a receive on `q` should first delete the queue's expired messages: always on a
    /// FIFO queue (an expired head would block its group), at most every
    /// [`EXPIRE_EVERY_MS`] on a standard one.
    fn expire_due(&mut self, q: &QueueInfo, now: i64) -> bool {
        if q.name.is_fifo() {
            return true;
        }
        let last = self.expired_at.entry(q.id).or_insert(i64::MIN);
        let due = now.saturating_sub(*last) >= EXPIRE_EVERY_MS;
        if due {
            *last = now;
        }
        due
    }
}
