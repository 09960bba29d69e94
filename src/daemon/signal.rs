//! Signals: SIGTERM and SIGINT shut down, SIGHUP reloads the configuration. The handlers are
//! installed once, at start, and kept for the daemon's life: a signal that arrives while the
//! daemon is busy (a reload in progress) waits in its stream and is seen on the next turn.

use tokio::signal::unix::{signal, Signal, SignalKind};

/// The daemon's signal streams.
#[derive(Debug)]
pub struct Signals {
    term: Signal,
    int: Signal,
    hup: Signal,
}

impl Signals {
    /// Installs the handlers for SIGTERM, SIGINT and SIGHUP.
    ///
    /// # Errors
    /// If a handler cannot be installed.
    pub fn install() -> std::io::Result<Signals> {
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    /// Waits for the next signal.
    ///
    /// # Cancel safety
    /// Cancel safe: a signal not yet returned stays in its stream.
    pub async fn next(&mut self) -> Received {
        tokio::select! {
            _ = self.term.recv() => Received::Shutdown("SIGTERM"),
            _ = self.int.recv() => Received::Shutdown("SIGINT"),
            _ = self.hup.recv() => Received::Reload,
        }
    }
}

/// A signal the daemon acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    /// SIGTERM or SIGINT (its name): shut down.
    Shutdown(&'static str),
    /// SIGHUP: reload the configuration.
    Reload,
}
