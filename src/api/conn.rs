//! The accept loop: each connection is served by hyper's HTTP/1 server on a task of the server's
//! own tracker, and the number of connections served at once is capped below the process's
//! descriptor limit, so that idle or slow clients can never take the descriptors the database,
//! the functions and their pipes need.
//!
//! A connection must deliver a complete request head within `server.header_timeout` of starting
//! to wait for one (when it opens, and after each response on a kept-alive connection: so an
//! idle keep-alive connection is closed after the same time), or it is closed. At the cap, a
//! new connection closes the oldest one that has no request in flight (idle, or still waiting
//! for its head) and takes its place; if every connection has a request in flight, new clients
//! wait in the kernel's backlog until one ends. On shutdown a connection with no request in
//! flight is closed at once, and the others finish their request first.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use hyper::service::Service as _;
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

/// The open connections, oldest first: how many requests each has in flight, and its token
/// to close it.
#[derive(Clone, Default)]
struct Conns(Arc<Mutex<BTreeMap<u64, Conn>>>);

/// One connection's requests in flight and its token to close it.
type Conn = (Arc<AtomicUsize>, CancellationToken);

impl Conns {
    fn insert(&self, id: u64, busy: Arc<AtomicUsize>, evict: CancellationToken) {
        self.0.lock().expect("lock").insert(id, (busy, evict));
    }

    fn remove(&self, id: u64) {
        self.0.lock().expect("lock").remove(&id);
    }

    /// Closes the oldest connection that has no request in flight, if there is one.
    fn evict_oldest_idle(&self) {
        let conns = self.0.lock().expect("lock");
        let oldest = conns
            .values()
            .find(|(busy, evict)| busy.load(Ordering::SeqCst) == 0 && !evict.is_cancelled());
        if let Some((_, evict)) = oldest {
            tracing::debug!("at server.max_connections: closing the oldest idle connection");
            evict.cancel();
        }
    }
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
    let conns = Conns::default();
    let mut next_id = 0u64;
    loop {
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
        let slot = match slots.clone().try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                // At the cap: the oldest connection with no request in flight makes room.
                conns.evict_oldest_idle();
                tokio::select! {
                    slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
                    _ = cancel.cancelled() => break,
                }
            }
        };
        let _ = stream.set_nodelay(true);
        let id = next_id;
        next_id += 1;
        let busy = Arc::new(AtomicUsize::new(0));
        let evict = cancel.child_token();
        conns.insert(id, busy.clone(), evict.clone());
        let service = TowerToHyperService::new(app.clone());
        let counted = busy.clone();
        let conn = builder.serve_connection(
            TokioIo::new(stream),
            hyper::service::service_fn(move |req| {
                counted.fetch_add(1, Ordering::SeqCst);
                let answer = service.call(req);
                let counted = counted.clone();
                async move {
                    let answered = answer.await;
                    counted.fetch_sub(1, Ordering::SeqCst);
                    answered
                }
            }),
        );
        let conns = conns.clone();
        tasks.spawn(async move {
            let _slot = slot;
            let mut conn = std::pin::pin!(conn);
            let ended = tokio::select! {
                ended = conn.as_mut() => ended,
                _ = evict.cancelled() => {
                    if busy.load(Ordering::SeqCst) == 0 {
                        // Nothing in flight (no complete head yet, or idle between requests):
                        // close it now, a partial head included.
                        Ok(())
                    } else {
                        conn.as_mut().graceful_shutdown();
                        conn.await
                    }
                }
            };
            conns.remove(id);
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
