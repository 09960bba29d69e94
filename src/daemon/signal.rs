//! Shutdown signals: resolves on SIGTERM or SIGINT and says which.

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
