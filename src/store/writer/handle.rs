//! The store's side of the writer task: starting it on the owner's tracker, submitting
//! operations and waiting for their answers, and watching the task, so that a writer that
//! panicked is reported ([`Handle::failed`]) instead of leaving a daemon that looks healthy.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures_util::FutureExt as _;
use sqlx::SqlitePool;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::super::error::StoreError;
use super::super::health::Health;
use super::super::report::Observer;
use super::super::reserve::Reserve;
use super::super::tally::Tally;
use super::super::types::WriterFault;
use super::super::wake::Wakers;
use super::sync::Syncer;
use super::{Op, Writer};
use crate::clock::Clock;

/// Whether the writer task runs.
#[derive(Debug, Clone)]
pub(super) enum State {
    Running,
    /// Stopped on purpose (the store closed, or every handle was dropped).
    Closed,
    /// Stopped by a failure: the cause.
    Failed(Arc<str>),
}

/// The store's side of the writer: submits operations and watches the task.
#[derive(Debug, Clone)]
pub(in crate::store) struct Handle {
    ops: mpsc::Sender<Op>,
    state: watch::Receiver<State>,
    stop: CancellationToken,
}

/// What starts a writer.
pub(in crate::store) struct Start {
    pub pool: SqlitePool,
    pub clock: Clock,
    pub wake: Wakers,
    pub observer: Observer,
    pub fault: Option<WriterFault>,
    pub health: Health,
    pub tally: Tally,
    pub tasks: TaskTracker,
    pub stop: CancellationToken,
    /// Pages in use past which sends are refused (`room.rs`); `None` without `storage.max_size`.
    pub send_limit: Option<u64>,
    /// The disk reserve (`reserve.rs`).
    pub reserve: Arc<Reserve>,
    /// Whether deletes leave tombstones (`storage.tombstone_retention` > 0).
    pub tombstones: bool,
    /// The database file, when the writer flushes its WAL beside it (`sync.rs`):
    /// `storage.synchronous = "full"`.
    pub flush_beside: Option<std::path::PathBuf>,
}

impl Handle {
    /// Starts the writer task on `start.tasks`.
    pub(in crate::store) fn start(start: Start) -> Handle {
        let (ops, rx) = mpsc::channel(4096);
        let (state_tx, state) = watch::channel(State::Running);
        let (sync, flusher) = match start.flush_beside {
            Some(path) => {
                let (sync, flusher) = Syncer::new(path);
                (Some(sync), Some(flusher))
            }
            None => (None, None),
        };
        let writer = Writer {
            pool: start.pool,
            clock: start.clock,
            wake: start.wake,
            observer: start.observer,
            fault: start.fault,
            health: start.health,
            tally: start.tally,
            expired_at: HashMap::new(),
            pending: Vec::new(),
            send_limit: start.send_limit,
            reserve: start.reserve,
            tombstones: start.tombstones,
            sync,
            held: HashMap::new(),
            open: false,
            discard: false,
        };
        let stop = start.stop.clone();
        start.tasks.spawn(async move {
            // The flusher ends after the writer (which holds its sender) and what it was
            // handed; a panic in either is the writer's failure.
            let both = async move {
                let flushing = async move {
                    if let Some(flusher) = flusher {
                        flusher.await;
                    }
                };
                tokio::join!(writer.run(rx, stop), flushing);
            };
            let ended = AssertUnwindSafe(both).catch_unwind().await;
            let state = match ended {
                Ok(()) => State::Closed,
                Err(panic) => {
                    let cause = panic
                        .downcast_ref::<&str>()
                        .map(|s| (*s).to_owned())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "a panic without a message".to_owned());
                    tracing::error!(
                        cause = %cause,
                        "the database writer failed: every write is refused from now on"
                    );
                    State::Failed(format!("the writer panicked: {cause}").into())
                }
            };
            state_tx.send_replace(state);
        });
        Handle {
            ops,
            state,
            stop: start.stop,
        }
    }

    /// Runs `op` and waits for its answer, which comes after its group committed.
    pub(in crate::store) async fn submit<T>(
        &self,
        op: Op,
        rx: oneshot::Receiver<Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        self.ops.send(op).await.map_err(|_| self.stopped())?;
        rx.await.map_err(|_| self.stopped())?
    }

    /// The error for an operation the writer could not take.
    fn stopped(&self) -> StoreError {
        let reason: Arc<str> = match &*self.state.borrow() {
            State::Failed(cause) => cause.clone(),
            State::Running | State::Closed => "the store is closing".into(),
        };
        StoreError::writer_stopped(&reason)
    }

    /// Resolves with the cause once the writer has failed; never if it stops on purpose.
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub(in crate::store) async fn failed(&self) -> Arc<str> {
        let mut state = self.state.clone();
        loop {
            if let State::Failed(cause) = &*state.borrow_and_update() {
                return cause.clone();
            }
            if state.changed().await.is_err() {
                // The task is gone without saying why: it cannot be running.
                if let State::Failed(cause) = &*state.borrow() {
                    return cause.clone();
                }
                std::future::pending::<()>().await;
            }
        }
    }

    /// Stops the writer after it has answered what is queued, and waits until it has.
    pub(in crate::store) async fn close(&self) {
        self.stop.cancel();
        let mut state = self.state.clone();
        let _ = state.wait_for(|s| !matches!(s, State::Running)).await;
    }
}
