//! Group commit: the message operations (send, receive, delete, change visibility) go through one
//! writer task, which runs every operation waiting in its queue inside ONE transaction and
//! answers them all after ONE commit. While a commit's fsync is in progress new requests pile up
//! and share the next one, so `synchronous = full` costs one fsync per group rather than per
//! request, and no acknowledged write is ever answered before it is durable.
//!
//! Within the transaction, operations of one kind on one queue share a statement (see
//! `Writer::attempt`). An operation that is rejected (an SQS rule) has written nothing, so the
//! group goes on. A database error rolls the group back: the operations whose statement hit it
//! get `StoreError::Unavailable` (retriable; nothing of theirs was acknowledged) and the others
//! run again in a fresh transaction. How errors are classified and logged is in `fault.rs`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::{Connection as _, SqliteConnection, SqlitePool};
use tokio::sync::{mpsc, oneshot};

use super::fault::log_refused;
use super::messages::{self, Prepared, Received};
use super::queues;
use super::wake::Wakers;
use super::{EntryResults, QueueInfo, StoreError};
use crate::clock::Clock;
use crate::domain::message::{NewMessage, SendReceipt};
use crate::domain::queue::QueueName;
use crate::domain::Rejection;
use crate::metrics::Metrics;

/// Most operations one transaction takes.
const MAX_GROUP: usize = 512;

/// Longest the writer keeps the connection from the pool while groups keep coming.
const HOLD: Duration = Duration::from_millis(100);

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

/// Whether the connection can take the next transaction after a failed one: sqlx's queued
/// ROLLBACK runs with the ping, and a connection still marked as inside a transaction is not
/// (the pool replaces it on release; see `open.rs`).
async fn usable(conn: &mut SqliteConnection) -> bool {
    if !conn.is_in_transaction() {
        return true;
    }
    conn.ping().await.is_ok() && !conn.is_in_transaction()
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

type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

/// A message operation waiting for the writer.
pub(super) enum Op {
    Send {
        queue: QueueName,
        batch: Vec<NewMessage>,
        prepared: Vec<Prepared>,
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

/// Why a group did not commit: the database error, and the operations whose statement hit it
/// (none when the transaction as a whole failed to begin or commit).
struct Failed {
    error: Arc<sqlx::Error>,
    culprits: Vec<usize>,
}

impl Failed {
    fn of(e: StoreError, culprits: Vec<usize>) -> Failed {
        let error = match e {
            StoreError::Unavailable(e) => e,
            // Rejections are answered per entry and never abort a group; should one arrive here,
            // the operations are refused rather than answered wrongly.
            StoreError::Rejected(r) => Arc::new(sqlx::Error::Protocol(r.to_string())),
        };
        Failed { error, culprits }
    }
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
    ///
    /// The connection is held from one group to the next while operations keep arriving, so
    /// a busy writer does not wait for the pool to take it back and hand it out again (under
    /// load that round trip cost as much as the commit). It goes back to the pool when the
    /// queue runs dry, after [`HOLD`], or after a failed group (the pool then checks it), so
    /// queue changes and the sweeper get their turn.
    pub(super) async fn run(mut self, mut rx: mpsc::Receiver<Op>) {
        let mut retry: Option<Vec<Op>> = None;
        loop {
            let mut ops = match retry.take() {
                Some(ops) => ops,
                None => match rx.recv().await {
                    Some(first) => vec![first],
                    None => return,
                },
            };
            fill(&mut rx, &mut ops);
            let mut conn = match self.pool.acquire().await {
                Ok(conn) => conn,
                Err(e) => {
                    let error = Arc::new(e);
                    log_refused(&self.metrics, &error, ops.len());
                    ops.into_iter().for_each(|op| op_fail(op, &error));
                    continue;
                }
            };
            let held = Instant::now();
            loop {
                match self.execute(&mut conn, ops).await {
                    Executed::Committed if held.elapsed() < HOLD => {}
                    Executed::Committed | Executed::Refused => break,
                    Executed::Retry(rest) => {
                        retry = Some(rest);
                        break;
                    }
                }
                ops = Vec::new();
                fill(&mut rx, &mut ops);
                if ops.is_empty() {
                    break;
                }
            }
        }
    }

    /// Runs a group. If a statement hits a database error (a full disk, say), only the
    /// operations it served are refused and the others run again in a fresh transaction, so a
    /// send that does not fit never takes a poller's deletes down with it. Nothing is answered
    /// before its commit.
    async fn execute(&mut self, conn: &mut SqliteConnection, mut ops: Vec<Op>) -> Executed {
        loop {
            match self.attempt(conn, &ops).await {
                Ok((outcomes, fx)) => {
                    fx.apply(&self.wake, &self.metrics);
                    ops.into_iter()
                        .zip(outcomes)
                        .for_each(|(op, o)| answer(op, o));
                    return Executed::Committed;
                }
                Err(Failed {
                    error,
                    mut culprits,
                }) if !culprits.is_empty() && culprits.len() < ops.len() => {
                    log_refused(&self.metrics, &error, culprits.len());
                    culprits.sort_unstable();
                    for k in culprits.into_iter().rev() {
                        op_fail(ops.remove(k), &error);
                    }
                    if !usable(conn).await {
                        return Executed::Retry(ops);
                    }
                }
                Err(Failed { error, .. }) => {
                    log_refused(&self.metrics, &error, ops.len());
                    ops.into_iter().for_each(|op| op_fail(op, &error));
                    return Executed::Refused;
                }
            }
        }
    }

    /// One transaction over every operation of the group; rolled back on any database error.
    ///
    /// Operations of one kind on one queue share a statement: every send to a queue is one
    /// insert, every delete one delete, every receive (same visibility timeout, standard queue)
    /// one claim dealt out in order. That keeps the statements per group, each a round trip to
    /// SQLite's thread, near the number of queues rather than of requests. Sends run first so
    /// that receives in the same group see them. Each queue is looked up once per group:
    /// message operations never change a queue's row, and queue changes take the same
    /// connection between groups.
    async fn attempt(
        &mut self,
        conn: &mut SqliteConnection,
        ops: &[Op],
    ) -> Result<(Vec<Outcome>, Effects), Failed> {
        let whole = |e: sqlx::Error| Failed {
            error: Arc::new(e),
            culprits: Vec::new(),
        };
        let mut tx = conn.begin_with("BEGIN IMMEDIATE").await.map_err(whole)?;
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
                    let info = queues::lookup(&mut tx, name)
                        .await
                        .map_err(|e| Failed::of(e, vec![k]))?;
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
            let results = messages::send(&mut tx, &mut fx, &found[*at], &shared.items, now)
                .await
                .map_err(|e| Failed::of(e, shared.ops.clone()))?;
            for (&k, r) in shared.ops.iter().zip(results) {
                outcomes[k] = Some(Outcome::Send(Ok(r)));
            }
        }
        for &(k, at, entries) in &plan.visibility {
            let r = messages::change_visibility(&mut tx, &mut fx, &found[at], entries, now).await;
            if let Some(error) = db_error(&r) {
                return Err(Failed {
                    error,
                    culprits: vec![k],
                });
            }
            outcomes[k] = Some(Outcome::Entries(r));
        }
        for (at, shared) in &plan.deletes {
            let results = messages::delete(&mut tx, &mut fx, &found[*at], &shared.items, now)
                .await
                .map_err(|e| Failed::of(e, shared.ops.clone()))?;
            for (&k, r) in shared.ops.iter().zip(results) {
                outcomes[k] = Some(Outcome::Entries(Ok(r)));
            }
        }
        for ((at, visibility, _), shared) in &plan.receives {
            let q = &found[*at];
            let expire = self.expire_due(q, now);
            let got =
                messages::receive(&mut tx, &mut fx, q, &shared.items, *visibility, now, expire)
                    .await
                    .map_err(|e| Failed::of(e, shared.ops.clone()))?;
            for (&k, r) in shared.ops.iter().zip(got) {
                outcomes[k] = Some(Outcome::Receive(Ok(r)));
            }
        }
        tx.commit().await.map_err(whole)?;
        let outcomes = outcomes
            .into_iter()
            .map(|o| o.expect("every operation was planned"))
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

/// A group's operations sorted into shared statements, each list in arrival order. Queues are
/// indexes into the group's looked-up queues.
#[derive(Default)]
struct Plan<'o> {
    sends: BTreeMap<usize, Shared<SendItem<'o>>>,
    /// (operation, queue, entries): each visibility change runs on its own.
    visibility: Vec<(usize, usize, VisibilityEntries<'o>)>,
    deletes: BTreeMap<usize, Shared<&'o [String]>>,
    /// Keyed by queue, visibility timeout and, for a FIFO queue, the operation itself: standard
    /// receives share a claim, a FIFO receive has its own (one group's run goes to one receiver).
    receives: BTreeMap<(usize, Option<Duration>, Option<usize>), Shared<u32>>,
}

/// A send's batch and what its sender prepared for it.
type SendItem<'o> = (&'o [NewMessage], &'o [Prepared]);
/// A visibility change's (receipt handle, timeout) entries.
type VisibilityEntries<'o> = &'o [(String, Duration)];

/// The operations (by index in the group) that share one statement, and what each brings to it.
struct Shared<T> {
    ops: Vec<usize>,
    items: Vec<T>,
}

impl<T> Default for Shared<T> {
    fn default() -> Self {
        Shared {
            ops: Vec::new(),
            items: Vec::new(),
        }
    }
}

impl<T> Shared<T> {
    fn push(&mut self, k: usize, item: T) {
        self.ops.push(k);
        self.items.push(item);
    }
}

impl<'o> Plan<'o> {
    fn add(&mut self, k: usize, op: &'o Op, at: usize, fifo: bool) {
        match op {
            Op::Send {
                batch, prepared, ..
            } => self.sends.entry(at).or_default().push(k, (batch, prepared)),
            Op::ChangeVisibility { entries, .. } => self.visibility.push((k, at, entries)),
            Op::Delete { handles, .. } => self.deletes.entry(at).or_default().push(k, handles),
            Op::Receive {
                visibility, max, ..
            } => {
                let own = fifo.then_some(k);
                self.receives
                    .entry((at, *visibility, own))
                    .or_default()
                    .push(k, *max)
            }
        }
    }
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
