//! Routes for operators and their tooling: liveness, readiness and Prometheus metrics.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::respond::error_response;
use super::state::AppState;
use crate::error::code;

/// Liveness: 200 only while the writer and the projector are alive and no log has failed; else
/// 503 naming what is wrong (fail-stop: a restart after the cause is fixed recovers). A part
/// beside the node that fails (the backup) makes it `degraded`, still 200: it serves on.
pub(super) async fn healthz(State(state): State<AppState>) -> Response {
    let failures = state.engine.failures();
    let degraded = state.settings.degraded.as_ref().map(|probe| (probe.0)()).unwrap_or_default();
    let status = if failures.is_empty() { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let (word, reasons) = match (failures.is_empty(), degraded.is_empty()) {
        (false, _) => ("failed", [failures, degraded].concat()),
        (true, false) => ("degraded", degraded),
        (true, true) => ("ok", Vec::new()),
    };
    let body = serde_json::json!({
        "status": word,
        "reasons": reasons,
        "committed": state.engine.committed(),
        "projected": state.engine.projected(),
        "accessRecords": state.engine.access_log().committed(),
    });
    (status, Json(body)).into_response()
}

/// Prometheus text format. Gauges that are states rather than events are set at scrape time.
pub(super) async fn metrics_text(State(state): State<AppState>) -> Response {
    let Some(render) = &state.settings.metrics else {
        return error_response(StatusCode::NOT_FOUND, code::NOT_FOUND, "metrics are not enabled");
    };
    let engine = &state.engine;
    let lag = engine.committed().saturating_sub(engine.projected());
    metrics::gauge!("forlop_projection_lag_events").set(lag as f64);
    metrics::gauge!("forlop_live_subscriptions").set(engine.live_subscriptions() as f64);
    metrics::gauge!("forlop_failed").set(if engine.failures().is_empty() { 0.0 } else { 1.0 });
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], (render.0)()).into_response()
}

/// Readiness: 503 until the read model has folded every event the log held at start (and while
/// the node is failed), 200 afterwards.
pub(super) async fn readyz(State(state): State<AppState>) -> Response {
    let ready = state.engine.ready() && state.engine.failures().is_empty();
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let body = serde_json::json!({
        "status": if ready { "ready" } else { "not ready" },
        "committed": state.engine.committed(),
        "projected": state.engine.projected(),
    });
    (status, Json(body)).into_response()
}
