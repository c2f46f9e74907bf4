//! The request span: every request runs inside `request{method, route}` (tower-http's
//! `TraceLayer`); status and latency are recorded on it when the response head is ready.
//! Everything the request causes (service operation, backend call) logs inside it, so
//! JSON log lines carry these fields.

use std::time::Duration;

use axum::body::Body;
use axum::extract::MatchedPath;
use axum::http::{Request, Response};
use tower_http::classify::{ServerErrorsAsFailures, SharedClassifier};
use tower_http::trace::{DefaultOnFailure, DefaultOnRequest, TraceLayer};
use tracing::{Level, Span};

/// The layer type [`layer`] builds.
pub type RequestTrace = TraceLayer<
    SharedClassifier<ServerErrorsAsFailures>,
    fn(&Request<Body>) -> Span,
    DefaultOnRequest,
    fn(&Response<Body>, Duration, &Span),
    (),
    (),
    DefaultOnFailure,
>;

/// The request span with method and route (the matched pattern, never the raw path,
/// so keys do not end up in logs); status and latency are filled in on response.
fn request_span(request: &Request<Body>) -> Span {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str);
    tracing::info_span!(
        "request",
        method = %request.method(),
        route,
        status = tracing::field::Empty,
        latency_ms = tracing::field::Empty,
    )
}

fn record_response(response: &Response<Body>, latency: Duration, span: &Span) {
    span.record("status", response.status().as_u16());
    span.record("latency_ms", latency.as_secs_f64() * 1000.0);
    tracing::debug!("response");
}

/// A `TraceLayer` opening [`request_span`] per request; start and failure events are
/// debug level, so the default `info` logging stays as quiet as before.
pub fn layer() -> RequestTrace {
    TraceLayer::new_for_http()
        .make_span_with(request_span as fn(&Request<Body>) -> Span)
        .on_request(DefaultOnRequest::new().level(Level::DEBUG))
        .on_response(record_response as fn(&Response<Body>, Duration, &Span))
        .on_body_chunk(())
        .on_eos(())
        .on_failure(DefaultOnFailure::new().level(Level::DEBUG))
}
