//! The HTTP surface (docs/interface.md §3): the SQS JSON and query protocols on `/` and on queue
//! URL paths `/<account>/<queue>`, the REST shim under `/queues`, Lambda's event source mapping
//! API under `/2015-03-31/event-source-mappings`, and `/healthz`, `/readyz`, `/metrics`. Owns
//! request framing (body limits, content
//! types, targets), decoding into domain types, and encoding results and errors exactly as SQS
//! does. Every queue rule lives in the store; this layer only translates.
//!
//! Shape: [`router`] builds one axum `Router` over an [`AppState`] of cheap handles (no lock
//! around the state); [`serve`] runs it on a listener the caller bound until a cancellation token
//! fires. The token is also handed to the handlers (as an extension) so that long polls end at
//! once on shutdown with an empty answer instead of holding the graceful shutdown for 20 s.
//!
//! Never panics on input, never logs request bodies, and answers every bad request with a clear
//! error in the shape of the protocol that was spoken.

mod admin;
mod attempts;
mod auth;
mod body;
mod conn;
mod error;
mod guard;
mod lambda;
mod peek;
mod rest;
mod scope;
mod sqs;
mod state;

use axum::routing::{any, get, post};
use std::sync::Arc;

use axum::{Extension, Router};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::config::ServerConfig;

pub use attempts::ReceiveAttempts;
pub use lambda::{file_uuid, MappingCatalog};
pub use state::{AppState, Readiness};

/// The largest legal SQS JSON request body, in bytes; anything larger is refused with 413
/// before it is read.
///
/// The largest request is a SendMessage(Batch) whose messages add up to 1 MiB (bodies plus
/// attribute names, types and values; `BatchRequestTooLong` above that). JSON can make that
/// payload up to six times larger: botocore's `json.dumps` escapes DEL and every non-ASCII
/// character (`\u007f` is 6 bytes for 1), supplementary characters become surrogate pairs (12
/// bytes for 4), and binary values grow by 4/3 in base64. Around the payload come members that do
/// not count toward the 1 MiB: ten entry ids (80 bytes), group and deduplication ids (128 each,
/// doubled by escaping), trace headers, the queue URL and the JSON punctuation, well under
/// 256 KiB. So: 6 × 1 MiB + 256 KiB = 6,553,600 bytes.
pub const MAX_SQS_BODY: usize = 6 * 1_048_576 + 256 * 1024;

/// The largest legal REST shim body: the raw message body, at most 1 MiB (attributes travel in
/// the query string).
pub const MAX_REST_BODY: usize = 1_048_576;

/// The bytes of request bodies esmd holds at once across all connections (`guard.rs`): twenty
/// of the largest legal requests. Beyond it a request is answered 503 and its connection closed.
pub const BODY_BUDGET: usize = 20 * MAX_SQS_BODY;

/// Cancellation of the server, visible to handlers so that long polls can end early.
#[derive(Clone, Debug)]
pub(crate) struct Shutdown(pub(crate) CancellationToken);

/// Builds every route over `state`.
pub fn router(state: AppState) -> Router {
    let authed = Router::new()
        .route(
            "/",
            get(sqs::endpoint)
                .post(sqs::endpoint)
                .fallback(sqs::wrong_method),
        )
        .route("/{account}/{queue}", any(sqs::queue_endpoint))
        .route("/{account}/{queue}/", any(sqs::queue_endpoint))
        .route(
            "/queue/{region}/{account}/{queue}",
            any(sqs::queue_endpoint),
        )
        .route(
            "/queue/{region}/{account}/{queue}/",
            any(sqs::queue_endpoint),
        )
        .route(
            "/queues",
            get(rest::list_queues).fallback(rest::method_not_allowed),
        )
        .route(
            "/queues/{name}",
            get(rest::get_queue).fallback(rest::method_not_allowed),
        )
        .route(
            "/queues/{name}/messages",
            post(rest::send_message)
                .get(peek::list)
                .fallback(rest::method_not_allowed),
        )
        .route(
            "/queues/{name}/messages/{message_id}",
            get(peek::explain).fallback(rest::method_not_allowed),
        )
        .route(
            "/readyz",
            get(admin::readyz).fallback(rest::method_not_allowed),
        )
        .route(
            "/metrics",
            get(admin::metrics).fallback(rest::method_not_allowed),
        )
        .merge(lambda::routes())
        .fallback(error::not_found)
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require,
        ));
    Router::new()
        .route(
            "/healthz",
            get(admin::healthz).fallback(rest::method_not_allowed),
        )
        .merge(authed)
        .with_state(state)
}

/// Serves `router` on `listener` until `cancel` fires, then stops accepting, lets in-flight
/// requests finish (long polls return empty at once) and returns. `server`'s timeouts and
/// connection cap apply (`conn.rs`), and the body guard (`guard.rs`) wraps every route.
///
/// # Errors
/// An I/O error of the listener.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    server: &ServerConfig,
    cancel: CancellationToken,
) -> std::io::Result<()> {
    let guard = guard::Guard {
        budget: Arc::new(Semaphore::new(BODY_BUDGET)),
        body_timeout: server.body_timeout,
    };
    let app = router
        .layer(Extension(Shutdown(cancel.clone())))
        .layer(axum::middleware::from_fn_with_state(guard, guard::guard));
    conn::run(listener, app, server, cancel).await
}
