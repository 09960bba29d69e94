//! Group commit on PostgreSQL (docs/postgres.md): sends and deletes go through [`WRITERS`]
//! writer tasks. A writer takes every operation waiting (up to [`MAX_GROUP`]) and runs them in
//! ONE transaction, with one statement per queue and kind where the rules allow (the standard
//! sends of a queue in one insert, its standard deletes in one delete), one count update and one
//! NOTIFY per queue, and one commit, one WAL flush, for them all; each operation is answered
//! after that commit. While one writer waits for its commit the other collects the next group,
//! so under load many requests share a round trip, as in the SQLite store's writer.
//!
//! Failure: an operation on a queue that does not exist is answered `QueueDoesNotExist` alone
//! (its lookup wrote nothing). An error PostgreSQL reports for a statement rolls the whole
//! group back, and each of its operations runs again in a transaction of its own, so a fault is
//! answered to the operation that met it; a fault of the connection (PostgreSQL unreachable)
//! is answered to them all at once. Nothing is acknowledged before its commit.
//!
//! Lock order, so that groups (of this instance or another) never wait on each other in a
//! circle: a group takes the FIFO queues' advisory locks in queue-name order and updates the
//! queue counts at the end, in queue-id order.

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, Mutex};

use super::super::sql::tombstones::Fate;
use super::{listen, lock_fifo, queues, send, settle, tally};
use super::{EntryResults, PgStore, StoreError};
use crate::domain::error::chain;
use crate::domain::message::{NewMessage, SendReceipt};
use crate::domain::queue::QueueName;
use crate::domain::Rejection;

/// How many writer tasks an instance runs.
const WRITERS: usize = 2;

/// Most operations one group takes.
const MAX_GROUP: usize = 256;

/// Operations waiting for a writer before senders wait for room.
const QUEUED: usize = 4096;

/// What a send is answered.
type Sent = Result<EntryResults<SendReceipt>, StoreError>;

/// What a delete is answered.
type Deleted = Result<EntryResults<()>, StoreError>;

/// One operation for a writer.
pub(super) enum Op {
    /// SendMessage(Batch).
    Send {
        queue: QueueName,
        batch: Vec<NewMessage>,
        reply: oneshot::Sender<Sent>,
    },
    /// DeleteMessage(Batch), or a mapping's delete of what its filters dropped (`fate`).
    Delete {
        queue: QueueName,
        handles: Vec<String>,
        fate: Fate,
        reply: oneshot::Sender<Deleted>,
    },
}

impl Op {
    fn queue(&self) -> &QueueName {
        match self {
            Op::Send { queue, .. } | Op::Delete { queue, .. } => queue,
        }
    }

    /// Answers the operation (a caller that went away is not waited for).
    fn answer(self, answer: Answer) {
        match (self, answer) {
            (Op::Send { reply, .. }, Answer::Sent(a)) => drop(reply.send(a)),
            (Op::Delete { reply, .. }, Answer::Deleted(a)) => drop(reply.send(a)),
            (op, Answer::Failed(e)) => op.fail(e),
            (op, _) => op.fail(StoreError::WriterStopped {
                reason: "the writer answered an operation with another's result".into(),
            }),
        }
    }

    fn fail(self, e: StoreError) {
        match self {
            Op::Send { reply, .. } => drop(reply.send(Err(e))),
            Op::Delete { reply, .. } => drop(reply.send(Err(e))),
        }
    }
}

/// An operation's result within a group.
enum Answer {
    Sent(Sent),
    Deleted(Deleted),
    Failed(StoreError),
}

/// The writers' queue; cloned into every handle of one store.
#[derive(Clone, Debug)]
pub(super) struct Writers {
    tx: mpsc::Sender<Op>,
}

impl Writers {
    /// Starts the writer tasks on `store`, a handle without writers of its own. They stop when
    /// the last [`Writers`] is dropped, after answering what is queued.
    pub(super) fn start(store: PgStore) -> Writers {
        let (tx, rx) = mpsc::channel(QUEUED);
        let rx = Arc::new(Mutex::new(rx));
        for _ in 0..WRITERS {
            let (store, rx) = (store.clone(), Arc::clone(&rx));
            tokio::spawn(async move {
                while let Some(ops) = next_group(&rx).await {
                    run(&store, ops).await;
                }
            });
        }
        Writers { tx }
    }

    /// Queues `op`; if the writers are gone (the runtime is shutting down) it is answered so.
    async fn submit(&self, op: Op) {
        if let Err(mpsc::error::SendError(op)) = self.tx.send(op).await {
            op.fail(StoreError::WriterStopped {
                reason: "the store is closing".into(),
            });
        }
    }
}

/// The next group: the first operation to arrive and every one waiting behind it.
async fn next_group(rx: &Mutex<mpsc::Receiver<Op>>) -> Option<Vec<Op>> {
    let mut rx = rx.lock().await;
    let first = rx.recv().await?;
    let mut ops = vec![first];
    while ops.len() < MAX_GROUP {
        match rx.try_recv() {
            Ok(op) => ops.push(op),
            Err(_) => break,
        }
    }
    Some(ops)
}

/// Runs `op` through the writers, or at once when `s` is a writer's own handle.
async fn submit(s: &PgStore, op: Op) {
    match &s.writers {
        Some(w) => w.submit(op).await,
        None => run(s, vec![op]).await,
    }
}

/// Sends `batch` to `queue` in the next group.
pub(super) async fn send(s: &PgStore, queue: &QueueName, batch: Vec<NewMessage>) -> Sent {
    let (reply, answer) = oneshot::channel();
    let queue = queue.clone();
    submit(
        s,
        Op::Send {
            queue,
            batch,
            reply,
        },
    )
    .await;
    answer.await.unwrap_or_else(|_| Err(gone()))
}

/// Deletes `handles` of `queue` in the next group; the tombstones say `fate`.
pub(super) async fn delete(
    s: &PgStore,
    queue: &QueueName,
    handles: &[String],
    fate: Fate,
) -> Deleted {
    let (reply, answer) = oneshot::channel();
    let (queue, handles) = (queue.clone(), handles.to_vec());
    submit(
        s,
        Op::Delete {
            queue,
            handles,
            fate,
            reply,
        },
    )
    .await;
    answer.await.unwrap_or_else(|_| Err(gone()))
}

fn gone() -> StoreError {
    StoreError::WriterStopped {
        reason: "the writer stopped before answering".into(),
    }
}

/// Runs one group and answers its operations: together, or one by one if the group failed.
async fn run(s: &PgStore, ops: Vec<Op>) {
    let result = execute(s, &ops).await;
    match result {
        Ok(answers) => ops
            .into_iter()
            .zip(answers)
            .for_each(|(op, a)| op.answer(a)),
        // One operation, or a fault of the connection or the server rather than of a
        // statement (PostgreSQL unreachable, the pool timed out): every operation would meet
        // it again, one acquire timeout each.
        Err(e) if ops.len() == 1 || !statement_error(&e) => {
            ops.into_iter().for_each(|op| op.fail(e.clone()))
        }
        Err(e) => {
            tracing::debug!(
                error = %chain(&e),
                operations = ops.len(),
                "a group of operations failed; each runs again on its own"
            );
            for op in ops {
                let answer = match execute(s, std::slice::from_ref(&op)).await {
                    Ok(mut a) => a.remove(0),
                    Err(e) => Answer::Failed(e),
                };
                op.answer(answer);
            }
        }
    }
}

/// Whether `e` is an error PostgreSQL reported for a statement (a constraint, a trigger, a
/// deadlock), which may be one operation's alone.
fn statement_error(e: &StoreError) -> bool {
    matches!(e, StoreError::Database { source, .. } if matches!(**source, sqlx::Error::Database(_)))
}

/// What a group did to one queue, applied once at its end.
#[derive(Default)]
struct Effects {
    /// Messages stored less messages deleted.
    delta: i64,
    /// Waiters to wake.
    wake: u64,
}

/// Runs `ops` in one transaction: the answer of each, in order, once committed; `Err` if the
/// transaction failed (nothing of it was stored).
async fn execute(s: &PgStore, ops: &[Op]) -> Result<Vec<Answer>, StoreError> {
    let mut by_queue: BTreeMap<&QueueName, Vec<usize>> = BTreeMap::new();
    for (i, op) in ops.iter().enumerate() {
        by_queue.entry(op.queue()).or_default().push(i);
    }
    let mut answers: Vec<Option<Answer>> = ops.iter().map(|_| None).collect();
    let mut effects: BTreeMap<i64, (&QueueName, Effects)> = BTreeMap::new();
    let mut tx = s.begin().await?;
    let now = s.now();
    for (name, indexes) in by_queue {
        let Some(q) = queues::lookup(&mut tx, name).await? else {
            for i in indexes {
                answers[i] = Some(Answer::Failed(Rejection::no_queue().into()));
            }
            continue;
        };
        lock_fifo(&mut tx, &q).await?;
        let e = &mut effects.entry(q.id).or_insert((name, Effects::default())).1;
        let sends: Vec<(usize, &[NewMessage])> = indexes
            .iter()
            .filter_map(|&i| match &ops[i] {
                Op::Send { batch, .. } => Some((i, batch.as_slice())),
                Op::Delete { .. } => None,
            })
            .collect();
        if !sends.is_empty() {
            let batches: Vec<&[NewMessage]> = sends.iter().map(|(_, b)| *b).collect();
            let staged = send::stage(&mut tx, &q, &batches, now).await?;
            e.delta += staged.stored as i64;
            e.wake += staged.wake;
            for ((i, _), results) in sends.iter().zip(staged.results) {
                answers[*i] = Some(Answer::Sent(Ok(results)));
            }
        }
        for fate in [Fate::Deleted, Fate::FilteredOut] {
            let deletes: Vec<(usize, &[String])> = indexes
                .iter()
                .filter_map(|&i| match &ops[i] {
                    Op::Delete {
                        handles, fate: f, ..
                    } if *f == fate => Some((i, handles.as_slice())),
                    _ => None,
                })
                .collect();
            if deletes.is_empty() {
                continue;
            }
            let lists: Vec<&[String]> = deletes.iter().map(|(_, h)| *h).collect();
            let staged = settle::stage_delete(s, &mut tx, &q, &lists, fate, now).await?;
            e.delta -= staged.removed as i64;
            e.wake += staged.wake;
            for ((i, _), results) in deletes.iter().zip(staged.results) {
                answers[*i] = Some(Answer::Deleted(Ok(results)));
            }
        }
    }
    for (id, (_, e)) in &effects {
        tally::add(&mut tx, *id, e.delta).await?;
    }
    let wakes: Vec<(&QueueName, u64)> = effects
        .values()
        .filter(|(_, e)| e.wake > 0)
        .map(|(name, e)| (*name, e.wake))
        .collect();
    listen::notify_many(&mut tx, &wakes).await?;
    tx.commit().await?;
    Ok(answers
        .into_iter()
        .map(|a| a.unwrap_or_else(|| Answer::Failed(gone())))
        .collect())
}
