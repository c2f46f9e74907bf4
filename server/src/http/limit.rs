//! Web-tier admission and request metrics.
//!
//! At most `http.max_requests` requests are in flight; beyond that new requests get 503
//! with an empty body before any extractor runs. Internal routes are counted but never
//! rejected. A request counts until its response body has finished streaming.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http_body::{Body as _, Frame, SizeHint};

use crate::metrics::{method_label, status_class, Metrics};

/// Paths that are never rejected and stay out of request metrics.
pub fn is_internal(path: &str) -> bool {
    matches!(path, "/" | "/health" | "/ready" | "/keda" | "/metrics")
}

/// Shared in-flight counter and limit.
#[derive(Debug)]
pub struct WebLimit {
    in_flight: AtomicUsize,
    max: usize,
    metrics: Metrics,
}

impl WebLimit {
    /// A limiter admitting at most `max` requests at once.
    pub fn new(max: usize, metrics: Metrics) -> Arc<Self> {
        metrics.http_limit.set(max as i64);
        Arc::new(Self {
            in_flight: AtomicUsize::new(0),
            max,
            metrics,
        })
    }
}

/// Releases one in-flight slot when the response body is done (or dropped).
struct InFlight(Arc<WebLimit>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.0.metrics.http_in_flight.dec();
    }
}

/// What happens when a wrapped body has yielded its last frame.
trait AtEnd: Send + 'static {
    fn reached(&mut self);
}

/// Response side: the in-flight slot is released at the end (or when the body is dropped).
impl AtEnd for Option<InFlight> {
    fn reached(&mut self) {
        self.take();
    }
}

/// Request side: records that the handler read the body to the end.
impl AtEnd for Arc<AtomicBool> {
    fn reached(&mut self) {
        self.store(true, Ordering::Release);
    }
}

pin_project_lite::pin_project! {
    /// A body that runs its [`AtEnd`] action once the last frame has been polled.
    struct EndAware<E> {
        #[pin]
        inner: Body,
        at_end: E,
    }
}

impl<E: AtEnd> http_body::Body for EndAware<E> {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        if let Poll::Ready(None) = polled {
            this.at_end.reached();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The middleware: admit or reject, then record method/status/latency.
///
/// When a response goes out before the request body was read (an early 4xx, a 429),
/// the connection cannot be reused: it is marked `connection: close` so HTTP/1.1
/// clients open a new one instead of writing into a socket the server will close.
pub async fn web_tier(
    State(limit): State<Arc<WebLimit>>,
    request: Request,
    next: Next,
) -> Response {
    let internal = is_internal(request.uri().path());
    let before = limit.in_flight.fetch_add(1, Ordering::AcqRel);
    limit.metrics.http_in_flight.inc();
    let slot = InFlight(limit.clone());
    if !internal && before >= limit.max {
        drop(slot);
        limit.metrics.http_rejections.inc();
        let mut response = StatusCode::SERVICE_UNAVAILABLE.into_response();
        if !request.body().is_end_stream() && request.version() < axum::http::Version::HTTP_2 {
            response.headers_mut().insert(
                axum::http::header::CONNECTION,
                axum::http::HeaderValue::from_static("close"),
            );
        }
        return response;
    }
    if !internal {
        limit.metrics.requests_admitted.inc();
    }
    let method = method_label(request.method());
    let http1 = request.version() < axum::http::Version::HTTP_2;
    let (parts, body) = request.into_parts();
    let finished = Arc::new(AtomicBool::new(body.is_end_stream()));
    let request = Request::from_parts(
        parts,
        Body::new(EndAware {
            inner: body,
            at_end: finished.clone(),
        }),
    );
    let started = Instant::now();
    let mut response = next.run(request).await;
    if http1 && !finished.load(Ordering::Acquire) {
        response.headers_mut().insert(
            axum::http::header::CONNECTION,
            axum::http::HeaderValue::from_static("close"),
        );
    }
    if !internal {
        let m = &limit.metrics;
        m.http_requests
            .with_label_values(&[method, status_class(response.status())])
            .inc();
        m.http_duration
            .with_label_values(&[method])
            .observe(started.elapsed().as_secs_f64());
    }
    response.map(|inner| {
        Body::new(EndAware {
            inner,
            at_end: Some(slot),
        })
    })
}
