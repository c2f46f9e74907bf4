//! Internal endpoints: what this server is, liveness, readiness (drain), autoscaling
//! gauges and metrics.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::AppState;

const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// `GET /`: names this server and says where its API and internal endpoints live, so
/// whoever points a browser or `curl` at the bare address learns what answered.
pub async fn index() -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "name": "strata-server",
        "version": env!("CARGO_PKG_VERSION"),
        "protocol": "objectstore v1 HTTP API",
        "api": "/v1/objects/{usecase}/{scopes}/{key}",
        "health": "/health",
        "ready": "/ready",
        "metrics": "/metrics",
        "keda": "/keda",
    }))
}

/// `GET /health`: the process is alive.
pub async fn health() -> &'static str {
    "OK"
}

/// `GET /ready`: 503 while draining (drain file present or shutdown begun) or while
/// the storage backend does not answer (a shared backend's outage).
pub async fn ready(State(state): State<AppState>) -> Response {
    if state.is_draining() {
        return (StatusCode::SERVICE_UNAVAILABLE, "Shutting down").into_response();
    }
    match state.service.probe().await {
        Ok(()) => "OK".into_response(),
        Err(err) => {
            tracing::warn!(%err, "readiness probe: storage unavailable");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("Storage unavailable: {err}"),
            )
                .into_response()
        }
    }
}

/// `GET /metrics`: every Strata metric in Prometheus text format.
pub async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, PROMETHEUS_TEXT)],
        state.metrics.encode(),
    )
        .into_response()
}

/// `GET /keda`: the upstream-compatible autoscaling gauges.
pub async fn keda(State(state): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, PROMETHEUS_TEXT)],
        state.metrics.encode_keda(),
    )
        .into_response()
}
