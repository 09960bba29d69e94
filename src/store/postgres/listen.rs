//! Long-poll wake-ups across instances: a commit that can make messages receivable sends
//! `NOTIFY esmd_wake, '<n> <queue key>'` inside its transaction (PostgreSQL delivers it at
//! commit, and not at all on rollback), and each instance's one LISTEN connection hands it to
//! its in-process [`Wakers`] (the SQLite store's, `wake.rs`): `n` messages wake about one waiter
//! per ten, `0` wakes every waiter of the queue (a settings change, a deletion). Waiters do not
//! poll the table; a woken waiter always looks again, so a notification is a hint only.
//!
//! Notifications sent while the LISTEN connection is down are lost; when it comes back, every
//! waiter of every queue is woken to look again.

use std::time::Duration;

use sqlx::postgres::{PgListener, PgPool};
use tokio_util::sync::CancellationToken;

use super::super::wake::Wakers;
use super::{StoreError, Tx};
use crate::domain::queue::QueueName;

/// The channel every instance listens on.
const CHANNEL: &str = "esmd_wake";

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
pub(super) async fn start(pool: &PgPool, wake: Wakers) -> Result<Guard, StoreError> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(CHANNEL).await?;
    let stop = CancellationToken::new();
    let stopped = stop.clone();
    tokio::spawn(async move {
        loop {
            let got = tokio::select! {
                () = stopped.cancelled() => return,
                got = listener.try_recv() => got,
            };
            match got {
                Ok(Some(n)) => dispatch(&wake, n.payload()),
                // The connection was lost (it reconnects on the next call): whatever was sent
                // meanwhile is lost, so everyone looks again.
                Ok(None) => wake.every_queue(),
                Err(e) => {
                    tracing::warn!(
                        error = %crate::domain::error::chain(&e),
                        "the PostgreSQL LISTEN connection failed; long polls are woken by their timers until it is back"
                    );
                    wake.every_queue();
                    tokio::select! {
                        () = stopped.cancelled() => return,
                        () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            }
        }
    });
    Ok(Guard(stop))
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
