//! Operational endpoints: `/healthz` (200 while the process serves), `/readyz` (200 once the
//! daemon says it is ready and the database can be used, else 503 with the reason) and `/metrics` (queue gauges refreshed from
//! the store's kept counts in one read, then the Prometheus text exposition).

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::AppState;
use crate::domain::error::chain;

/// The Prometheus text exposition content type.
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4";

/// `GET /healthz`
pub(crate) async fn healthz() -> Response {
    (StatusCode::OK, Json(json!({ "status": "ok" }))).into_response()
}

/// `GET /readyz`
pub(crate) async fn readyz(State(state): State<AppState>) -> Response {
    let reason = state.readiness.not_ready_reason().or_else(|| {
        state
            .store
            .unavailable()
            .map(|why| format!("the database is unavailable: {why}"))
    });
    match reason {
        None => (StatusCode::OK, Json(json!({ "status": "ready" }))).into_response(),
        Some(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "not ready", "reason": reason })),
        )
            .into_response(),
    }
}

/// `GET /metrics`: refreshes every queue's gauges from the store, then renders. A store failure
/// leaves the gauges as they were (the store logs it); the rest still renders.
pub(crate) async fn metrics(State(state): State<AppState>) -> Response {
    refresh_queue_gauges(&state).await;
    (
        [(header::CONTENT_TYPE, PROMETHEUS_TEXT)],
        state.metrics.render(),
    )
        .into_response()
}

/// One read for every queue (`Store::all_counts`: counts kept as writes commit, so a scrape
/// costs the number of queues, not of messages).
async fn refresh_queue_gauges(state: &AppState) {
    let counts = match state.store.all_counts().await {
        Ok(c) => c,
        Err(e) => {
            tracing::debug!(error = %chain(&e), "metrics: cannot count messages (the store logged why)");
            return;
        }
    };
    let now = state.store.clock().now();
    for (name, c) in counts {
        let age = c.oldest_sent_at.map_or(0.0, |t| now.since(t).as_secs_f64());
        state
            .metrics
            .set_queue_state(name.as_str(), c.visible, c.in_flight, c.delayed, age);
    }
}
