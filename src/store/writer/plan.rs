//! The operations the writer takes and how one group of them is planned: operations of one kind
//! on one queue share a statement (every send to a queue is one insert, every delete one
//! delete, every standard receive with the same visibility timeout one claim dealt out in
//! order), and each operation's answer waits for the group's commit; and how a group that did
//! not commit is described ([`Failed`]).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;

use super::super::error::StoreError;
use super::super::sql::claim::Received;
use super::super::sql::send::Prepared;
use super::super::sql::tombstones::Fate;
use super::super::types::EntryResults;
use crate::domain::message::{NewMessage, SendReceipt};
use crate::domain::queue::QueueName;

pub(in crate::store) type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

/// A message operation waiting for the writer.
pub(in crate::store) enum Op {
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
        /// Who receives (`Store::receiver`), carried in the low bits of the receipt token.
        receiver: u16,
        reply: Reply<Received>,
    },
    Delete {
        queue: QueueName,
        handles: Vec<String>,
        /// What the tombstones say: deleted, or filtered out by a mapping.
        fate: Fate,
        reply: Reply<EntryResults<()>>,
    },
    ChangeVisibility {
        queue: QueueName,
        entries: Vec<(String, Duration)>,
        reply: Reply<EntryResults<()>>,
    },
}

/// The result of one operation inside a group, answered only once the group commits.
pub(super) enum Outcome {
    Send(Result<EntryResults<SendReceipt>, StoreError>),
    Receive(Result<Received, StoreError>),
    Entries(Result<EntryResults<()>, StoreError>),
}

impl Op {
    pub(super) fn queue(&self) -> &QueueName {
        match self {
            Op::Send { queue, .. }
            | Op::Receive { queue, .. }
            | Op::Delete { queue, .. }
            | Op::ChangeVisibility { queue, .. } => queue,
        }
    }

    /// This operation's outcome when it cannot run at all.
    pub(super) fn refused(&self, e: StoreError) -> Outcome {
        match self {
            Op::Send { .. } => Outcome::Send(Err(e)),
            Op::Receive { .. } => Outcome::Receive(Err(e)),
            Op::Delete { .. } | Op::ChangeVisibility { .. } => Outcome::Entries(Err(e)),
        }
    }

    /// Answers with `outcome`. The planner gives each operation its own kind of outcome; were
    /// that ever broken, the operation is refused as retriable rather than answered wrongly.
    ///
    /// A receive whose caller went away before the answer (a long poll cancelled mid-claim, a
    /// client that hung up) comes back as a visibility change that releases what it claimed, so
    /// nobody's messages stay hidden for a visibility timeout on behalf of no one.
    pub(super) fn answer(self, outcome: Outcome) -> Option<Op> {
        match (self, outcome) {
            (Op::Send { reply, .. }, Outcome::Send(r)) => drop(reply.send(r)),
            (Op::Receive { queue, reply, .. }, Outcome::Receive(r)) => {
                if let Err(Ok(unclaimed)) = reply.send(r) {
                    return release(queue, unclaimed);
                }
            }
            (
                Op::Delete { reply, .. } | Op::ChangeVisibility { reply, .. },
                Outcome::Entries(r),
            ) => drop(reply.send(r)),
            (op, _) => {
                tracing::error!("internal error: an operation got another kind's outcome; refused");
                op.fail(&internal("an operation got another kind's outcome"));
            }
        }
        None
    }

    /// Whether it is a receive (answered at its commit, without waiting for a flush).
    pub(super) fn is_receive(&self) -> bool {
        matches!(self, Op::Receive { .. })
    }

    /// Refuses the operation with a database error.
    pub(super) fn fail(self, e: &StoreError) {
        let err = || e.clone();
        match self {
            Op::Send { reply, .. } => drop(reply.send(Err(err()))),
            Op::Receive { reply, .. } => drop(reply.send(Err(err()))),
            Op::Delete { reply, .. } | Op::ChangeVisibility { reply, .. } => {
                drop(reply.send(Err(err())))
            }
        }
    }
}

/// The operation that makes `unclaimed` (received for a caller that is gone) visible again.
fn release(queue: QueueName, unclaimed: Received) -> Option<Op> {
    if unclaimed.len() == 0 {
        return None;
    }
    let entries: Vec<(String, Duration)> = unclaimed
        .into_messages()
        .ok()?
        .into_iter()
        .map(|m| (m.receipt_handle, Duration::ZERO))
        .collect();
    tracing::debug!(queue = %queue, messages = entries.len(), "a receiver went away before its answer; releasing what it claimed");
    // Nobody waits for this answer.
    let (reply, _) = oneshot::channel();
    Some(Op::ChangeVisibility {
        queue,
        entries,
        reply,
    })
}

/// A retriable error for a broken internal promise (never expected).
pub(super) fn internal(what: &str) -> StoreError {
    sqlx::Error::Protocol(format!("internal error: {what}")).into()
}

/// A group's operations sorted into shared statements, each list in arrival order. Queues are
/// indexes into the group's looked-up queues.
#[derive(Default)]
pub(super) struct Plan<'o> {
    pub sends: BTreeMap<usize, Shared<SendItem<'o>>>,
    /// (operation, queue, entries): each visibility change runs on its own.
    pub visibility: Vec<(usize, usize, VisibilityEntries<'o>)>,
    /// Keyed by queue and what the tombstones say (filtered-out deletes share their own).
    pub deletes: BTreeMap<(usize, FateKey), Shared<&'o [String]>>,
    /// Keyed by queue, visibility timeout, receiver (one claim has one receipt token, which
    /// names the receiver) and, for a FIFO queue, the operation itself: standard receives
    /// share a claim, a FIFO receive has its own (one group's run goes to one receiver).
    pub receives: BTreeMap<ReceiveKey, Shared<u32>>,
}

/// A [`Fate`] as a map key.
pub(super) type FateKey = u8;
/// (queue, visibility timeout, receiver, FIFO operation).
pub(super) type ReceiveKey = (usize, Option<Duration>, u16, Option<usize>);

/// A send's batch and what its sender prepared for it.
pub(super) type SendItem<'o> = (&'o [NewMessage], &'o [Prepared]);
/// A visibility change's (receipt handle, timeout) entries.
pub(super) type VisibilityEntries<'o> = &'o [(String, Duration)];

/// The operations (by index in the group) that share one statement, and what each brings to it.
pub(super) struct Shared<T> {
    pub ops: Vec<usize>,
    pub items: Vec<T>,
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
    /// Adds operation `k` on the group's queue number `at`.
    pub(super) fn add(&mut self, k: usize, op: &'o Op, at: usize, fifo: bool) {
        match op {
            Op::Send {
                batch, prepared, ..
            } => self.sends.entry(at).or_default().push(k, (batch, prepared)),
            Op::ChangeVisibility { entries, .. } => self.visibility.push((k, at, entries)),
            Op::Delete { handles, fate, .. } => self
                .deletes
                .entry((at, *fate as u8))
                .or_default()
                .push(k, handles),
            Op::Receive {
                visibility,
                max,
                receiver,
                ..
            } => {
                let own = fifo.then_some(k);
                self.receives
                    .entry((at, *visibility, *receiver, own))
                    .or_default()
                    .push(k, *max)
            }
        }
    }
}

/// Shared by both error paths: the group's database error as a [`StoreError`].
pub(super) fn database(e: &Arc<sqlx::Error>) -> StoreError {
    StoreError::Database {
        fault: super::super::error::DbFault::of(e),
        source: e.clone(),
    }
}

/// Why a group did not commit: the database error, and the operations whose statement hit it
/// (none when the transaction as a whole failed to begin or commit).
pub(super) struct Failed {
    pub error: Arc<sqlx::Error>,
    pub culprits: Vec<usize>,
    /// A tombstone insert found the database full: the group runs again without tombstones.
    pub tombstones: bool,
}

impl Failed {
    pub(super) fn of(e: StoreError, culprits: Vec<usize>) -> Failed {
        let error = match e {
            StoreError::Database { source, .. } => source,
            // Rejections are answered per entry and never abort a group; should one arrive here,
            // the operations are refused rather than answered wrongly.
            other => Arc::new(sqlx::Error::Protocol(other.to_string())),
        };
        Failed {
            error,
            culprits,
            tombstones: false,
        }
    }
}

pub(super) fn db_error<T>(r: &Result<T, StoreError>) -> Option<Arc<sqlx::Error>> {
    match r {
        Err(StoreError::Database { source, .. }) => Some(source.clone()),
        _ => None,
    }
}
