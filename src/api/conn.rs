//! The accept loop: each connection is served by hyper's HTTP/1 server on a task of the server's
//! own tracker, and the number of connections served at once is capped below the process's
//! descriptor limit, so that idle or slow clients can never take the descriptors the database,
//! the functions and their pipes need.
//!
//! A connection must deliver a complete request head within `server.header_timeout` of starting
//! to wait for one (when it opens, and after each response on a kept-alive connection: so an
//! idle keep-alive connection is closed after the same time), or it is closed. Once the cap is
//! reached no more connections are accepted: new clients wait in the kernel's backlog (holding
//! no descriptor of esmd's) until a connection ends.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::ServerConfig;
use crate::domain::error::chain;

/// Descriptors kept free of connections when the cap comes from the descriptor limit: the
/// database and its WAL, the listener, the log, and the functions' processes and pipes.
const DESCRIPTOR_MARGIN: u64 = 128;

/// The fewest connections esmd allows itself, whatever the descriptor limit says.
const MIN_CONNECTIONS: u64 = 16;

/// The connection cap: `server.max_connections`, else the soft `RLIMIT_NOFILE` less
/// [`DESCRIPTOR_MARGIN`]; a configured cap above that is lowered to it, with a warning.
pub(crate) fn max_connections(server: &ServerConfig) -> usize {
    let soft = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .map(|(soft, _)| soft)
        .unwrap_or(1024);
    let room = soft.saturating_sub(DESCRIPTOR_MARGIN).max(MIN_CONNECTIONS);
    let cap = match server.max_connections {
        Some(n) if u64::from(n) > room => {
            tracing::warn!(
                max_connections = n,
                descriptor_limit = soft,
                used = room,
                "server.max_connections is above the descriptor limit (RLIMIT_NOFILE) less a margin of {DESCRIPTOR_MARGIN}; using that instead"
            );
            room
        }
        Some(n) => u64::from(n),
        None => room,
    };
    usize::try_from(cap)
        .unwrap_or(usize::MAX)
        .min(Semaphore::MAX_PERMITS)
}

/// Accepts connections until `cancel` fires, then lets each finish its request in flight and
/// returns once all have ended.
pub(crate) async fn run(
    listener: TcpListener,
    app: Router,
    server: &ServerConfig,
    cancel: CancellationToken,
) -> std::io::Result<()> {
    let slots = Arc::new(Semaphore::new(max_connections(server)));
    let tasks = TaskTracker::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(server.header_timeout)
        .keep_alive(true);
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
            _ = cancel.cancelled() => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of descriptors or a connection reset before it was accepted: the
                    // listener itself is fine, so wait a little and go on.
                    tracing::warn!(error = %chain(&e), "accepting a connection failed");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(100)) => continue,
                        _ = cancel.cancelled() => break,
                    }
                }
            },
            _ = cancel.cancelled() => break,
        };
        let _ = stream.set_nodelay(true);
        let conn =
            builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app.clone()));
        let cancel = cancel.clone();
        tasks.spawn(async move {
            let _slot = slot;
            let mut conn = std::pin::pin!(conn);
            let ended = tokio::select! {
                ended = conn.as_mut() => ended,
                _ = cancel.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = ended {
                tracing::debug!(error = %chain(&e), "connection ended with an error");
            }
        });
    }
    drop(listener);
    tasks.close();
    tasks.wait().await;
    Ok(())
}
