//! Signals: SIGTERM and SIGINT shut down, SIGHUP reloads the configuration.

use tokio::signal::unix::{signal, SignalKind};

/// Waits for SIGTERM or SIGINT and returns its name.
///
/// # Panics
/// If the signal handlers cannot be installed (only at process start, never in practice).
pub async fn shutdown_signal() -> &'static str {
    let mut term = signal(SignalKind::terminate()).expect("install SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("install SIGINT handler");
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}

/// A stream of SIGHUPs (configuration reloads).
///
/// # Panics
/// If the handler cannot be installed (only at process start, never in practice).
pub fn hangups() -> tokio::signal::unix::Signal {
    signal(SignalKind::hangup()).expect("install SIGHUP handler")
}
