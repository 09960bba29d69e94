//! Long-poll wake-ups across instances: a commit that can make messages receivable sends
//! `NOTIFY esmd_wake, '<n> <queue key>'` inside its transaction (PostgreSQL delivers it at
//! commit, and not at all on rollback), and each instance's one LISTEN connection hands it to
//! its in-process [`Wakers`] (the SQLite store's, `wake.rs`): `n` messages wake about one waiter
//! per ten, `0` wakes every waiter of the queue (a settings change, a deletion). Waiters do not
//! poll the table; a woken waiter always looks again, so a notification is a hint only.
//!
//! The same connection carries the signals of the move-task and event runners: a start or a
//! cancel of a move task sends `NOTIFY esmd_moves`, and a change of an asynchronous invocation
//! `NOTIFY esmd_events`, each in its transaction, and a released mapping invocation slot
//! `NOTIFY esmd_slots`; every instance raises its [`Signals`] on them (the `watch` counters
//! `move_signal` and `event_signal` give out, and the slot waiters of `slots.rs`).
//!
//! Notifications sent while the LISTEN connection is down are lost: when it is lost, a new one
//! is connected (retrying), and once it listens every waiter of every queue is woken to look
//! again, and every signal is raised.

use std::time::Duration;

use sqlx::postgres::{PgListener, PgPool};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::super::wake::Wakers;
use super::{StoreError, Tx};
use crate::domain::queue::QueueName;

/// The channel of long-poll wake-ups.
const CHANNEL: &str = "esmd_wake";

/// The channel of move-task starts and cancels.
pub(super) const MOVES: &str = "esmd_moves";

/// The channel of changes of asynchronous invocations.
pub(super) const EVENTS: &str = "esmd_events";

/// The channel of released mapping invocation slots (`slots.rs`).
pub(super) const SLOTS: &str = "esmd_slots";

/// The move, event and slot signals of one instance (cheap to clone).
#[derive(Debug, Clone)]
pub(super) struct Signals {
    pub moves: watch::Sender<u64>,
    pub events: watch::Sender<u64>,
    pub slots: watch::Sender<u64>,
}

impl Default for Signals {
    fn default() -> Self {
        Signals {
            moves: watch::channel(0).0,
            events: watch::channel(0).0,
            slots: watch::channel(0).0,
        }
    }
}

/// Raises a signal (its receivers see a change).
pub(super) fn raise(signal: &watch::Sender<u64>) {
    signal.send_modify(|n| *n = n.wrapping_add(1));
}

impl Signals {
    fn all(&self) {
        raise(&self.moves);
        raise(&self.events);
        raise(&self.slots);
    }
}

/// Stops the listener task when dropped.
#[derive(Debug)]
pub(super) struct Guard(CancellationToken);

impl Drop for Guard {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

/// Connects the LISTEN connection and starts the task that dispatches notifications. Returns
/// once the connection listens, so every commit after it is seen.
pub(super) async fn start(
    pool: &PgPool,
    wake: Wakers,
    signals: Signals,
) -> Result<Guard, StoreError> {
    let mut listener = connect(pool).await?;
    let stop = CancellationToken::new();
    let stopped = stop.clone();
    let pool = pool.clone();
    tokio::spawn(async move {
        loop {
            let got = tokio::select! {
                () = stopped.cancelled() => return,
                got = listener.try_recv() => got,
            };
            let lost = match got {
                Ok(Some(n)) => {
                    match n.channel() {
                        MOVES => raise(&signals.moves),
                        EVENTS => raise(&signals.events),
                        SLOTS => raise(&signals.slots),
                        _ => dispatch(&wake, n.payload()),
                    }
                    continue;
                }
                Ok(None) => "the connection was closed".to_owned(),
                Err(e) => crate::domain::error::chain(&e).to_string(),
            };
            tracing::warn!(error = %lost, "the PostgreSQL LISTEN connection was lost; long polls are woken by their timers until it is back");
            wake.every_queue();
            signals.all();
            // A new connection rather than sqlx's implicit reconnect: once it listens, every
            // waiter looks again, since what was sent meanwhile is lost.
            let mut wait = Duration::from_millis(100);
            listener = loop {
                tokio::select! {
                    () = stopped.cancelled() => return,
                    () = tokio::time::sleep(wait) => {}
                }
                match connect(&pool).await {
                    Ok(l) => break l,
                    Err(_) => wait = (wait * 2).min(Duration::from_secs(2)),
                }
            };
            tracing::info!("the PostgreSQL LISTEN connection is back");
            wake.every_queue();
            signals.all();
        }
    });
    Ok(Guard(stop))
}

/// A listening connection of its own from the pool's options.
async fn connect(pool: &PgPool) -> Result<PgListener, StoreError> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen_all([CHANNEL, MOVES, EVENTS, SLOTS]).await?;
    Ok(listener)
}

/// Wakes the waiters a payload names (see the module doc).
fn dispatch(wake: &Wakers, payload: &str) {
    let Some((n, queue)) = payload.split_once(' ') else {
        return;
    };
    match n.parse::<u64>() {
        Ok(0) => wake.all(queue),
        Ok(n) => wake.messages(queue, n),
        Err(_) => {}
    }
}

/// Sends the wake-up for `n` messages of `queue` (`0`: every waiter) at the commit of `tx`.
pub(super) async fn notify(tx: &mut Tx, queue: &QueueName, n: u64) -> Result<(), StoreError> {
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(CHANNEL)
        .bind(format!("{n} {}", queue.as_str()))
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Sends the wake-ups for `n` messages of each queue of `wakes` at the commit of `tx`, in one
/// statement.
pub(super) async fn notify_many(
    tx: &mut Tx,
    wakes: &[(&QueueName, u64)],
) -> Result<(), StoreError> {
    if wakes.is_empty() {
        return Ok(());
    }
    let payloads: Vec<String> = wakes
        .iter()
        .map(|(queue, n)| format!("{n} {}", queue.as_str()))
        .collect();
    sqlx::query("SELECT pg_notify($1, p) FROM UNNEST($2::text[]) AS p")
        .bind(CHANNEL)
        .bind(&payloads)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Sends a signal on `channel` ([`MOVES`] or [`EVENTS`]) at the commit of `tx`.
pub(super) async fn signal(tx: &mut Tx, channel: &str) -> Result<(), StoreError> {
    sqlx::query("SELECT pg_notify($1, '')")
        .bind(channel)
        .execute(&mut **tx)
        .await?;
    Ok(())
}
