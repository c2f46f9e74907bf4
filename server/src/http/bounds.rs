//! Deadlines on request bodies: a client that stops sending (or sends too slowly) must
//! not hold a service permit, an upload or a connection for longer than configured.
//!
//! [`BoundedBody`] wraps every request body before routing. It fails the body stream
//! with [`BodyTimeout`] when the server has waited `http.body_idle_timeout` for the next
//! chunk, or when the body is not complete `http.request_timeout` after its head
//! arrived. Whatever consumes the body then fails like on any stream error, dropping its
//! permit; `http::error` turns the error into 408 with `connection: close`.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use crate::metrics::{Metrics, TimeoutPhase};

/// Errors of the wrapped body, boxed as hyper and axum expect them.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why a request body was cut off. Found anywhere in an error's source chain by
/// [`find_timeout`], so every consumer (plain inserts, multipart parts, resumable
/// chunks) answers 408 without knowing about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BodyTimeout {
    /// No bytes arrived while the server waited this long for them.
    #[error("request body idle for longer than {}", humantime::format_duration(*.0))]
    Idle(Duration),
    /// The body was not complete this long after the request head.
    #[error("request body not complete within {}", humantime::format_duration(*.0))]
    Deadline(Duration),
}

impl BodyTimeout {
    /// The metric label of this timeout.
    pub fn phase(self) -> TimeoutPhase {
        match self {
            BodyTimeout::Idle(_) => TimeoutPhase::BodyIdle,
            BodyTimeout::Deadline(_) => TimeoutPhase::Request,
        }
    }
}

/// Walks `err` and its sources (looking inside `io::Error`s, whose `source` skips the
/// error they wrap) for a [`BodyTimeout`].
pub fn find_timeout(err: &(dyn std::error::Error + 'static)) -> Option<BodyTimeout> {
    let mut next = Some(err);
    while let Some(err) = next {
        if let Some(timeout) = err.downcast_ref::<BodyTimeout>() {
            return Some(*timeout);
        }
        if let Some(inner) = err
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            if let Some(timeout) = find_timeout(inner) {
                return Some(timeout);
            }
        }
        next = err.source();
    }
    None
}

/// The configured body deadlines plus where to count timeouts; cloned per request.
#[derive(Debug, Clone)]
pub struct BodyBounds {
    /// `http.body_idle_timeout`.
    pub idle: Duration,
    /// `http.request_timeout`.
    pub total: Duration,
    /// Counts each cut-off body once.
    pub metrics: Metrics,
}

impl BodyBounds {
    /// Wraps one request body; the overall deadline starts now.
    pub fn wrap<B>(&self, inner: B) -> BoundedBody<B> {
        BoundedBody {
            inner,
            idle: self.idle,
            total: self.total,
            deadline: Instant::now() + self.total,
            waiting_since: None,
            timer: None,
            failed: None,
            metrics: self.metrics.clone(),
        }
    }
}

pin_project_lite::pin_project! {
    /// A request body with an idle timeout per chunk and an overall deadline.
    pub struct BoundedBody<B> {
        #[pin]
        inner: B,
        idle: Duration,
        total: Duration,
        deadline: Instant,
        // When the consumer began waiting for the current chunk: time the server spends
        // elsewhere (queued for a permit, writing the previous chunk) is not idleness.
        waiting_since: Option<Instant>,
        timer: Option<Pin<Box<Sleep>>>,
        // Once failed, every later poll repeats the error: a consumer that ignored it
        // must never see a clean end of a truncated body.
        failed: Option<BodyTimeout>,
        metrics: Metrics,
    }
}

impl<B> Body for BoundedBody<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        if let Some(timeout) = *this.failed {
            return Poll::Ready(Some(Err(timeout.into())));
        }
        match this.inner.poll_frame(cx) {
            Poll::Ready(frame) => {
                *this.waiting_since = None;
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => {
                let since = *this.waiting_since.get_or_insert_with(Instant::now);
                let idle_due = since + *this.idle;
                let due = idle_due.min(*this.deadline);
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(due)));
                if timer.deadline() != due {
                    timer.as_mut().reset(due);
                }
                if timer.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                let timeout = if due == *this.deadline {
                    BodyTimeout::Deadline(*this.total)
                } else {
                    BodyTimeout::Idle(*this.idle)
                };
                tracing::debug!(%timeout, "request body cut off");
                this.metrics.record_timeout(timeout.phase());
                *this.failed = Some(timeout);
                Poll::Ready(Some(Err(timeout.into())))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.failed.is_none() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;
    use http_body_util::{BodyExt, StreamBody};

    fn bounds(idle: u64, total: u64) -> (BodyBounds, Metrics) {
        let metrics = Metrics::new();
        let bounds = BodyBounds {
            idle: Duration::from_secs(idle),
            total: Duration::from_secs(total),
            metrics: metrics.clone(),
        };
        (bounds, metrics)
    }

    /// A body fed by the test through a channel; dropping the sender ends it.
    fn channel_body() -> (
        tokio::sync::mpsc::Sender<Bytes>,
        impl Body<Data = Bytes, Error = std::convert::Infallible>,
    ) {
        let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(8);
        let stream = tokio_stream_from(rx).map(|b| Ok(Frame::data(b)));
        (tx, StreamBody::new(stream))
    }

    fn tokio_stream_from(
        mut rx: tokio::sync::mpsc::Receiver<Bytes>,
    ) -> impl futures::Stream<Item = Bytes> {
        futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
    }

    fn count(metrics: &Metrics, phase: TimeoutPhase) -> u64 {
        metrics
            .http_timeouts
            .with_label_values(&[phase.as_str()])
            .get()
    }

    #[tokio::test(start_paused = true)]
    async fn silent_body_fails_idle_once_and_keeps_failing() {
        let (bounds, metrics) = bounds(30, 600);
        let (tx, inner) = channel_body();
        let mut body = std::pin::pin!(bounds.wrap(inner));
        tx.send(Bytes::from_static(b"abc")).await.unwrap();
        let first = body.frame().await.unwrap().unwrap();
        assert_eq!(first.into_data().unwrap(), Bytes::from_static(b"abc"));
        let started = Instant::now();
        let err = body.frame().await.unwrap().unwrap_err();
        assert_eq!(started.elapsed(), Duration::from_secs(30));
        assert_eq!(
            find_timeout(err.as_ref()),
            Some(BodyTimeout::Idle(Duration::from_secs(30)))
        );
        assert_eq!(err.to_string(), "request body idle for longer than 30s");
        // Later polls repeat the error instead of ending the body cleanly.
        assert!(body.frame().await.unwrap().is_err());
        assert!(!body.is_end_stream());
        assert_eq!(count(&metrics, TimeoutPhase::BodyIdle), 1);
        assert_eq!(count(&metrics, TimeoutPhase::Request), 0);
        drop(tx);
    }

    #[tokio::test(start_paused = true)]
    async fn steady_trickle_passes_idle_but_not_the_deadline() {
        let (bounds, metrics) = bounds(10, 60);
        let (tx, inner) = channel_body();
        let feeder = tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(5)).await;
                if tx.send(Bytes::from_static(b"x")).await.is_err() {
                    break;
                }
            }
        });
        let mut body = std::pin::pin!(bounds.wrap(inner));
        let mut received = 0;
        let err = loop {
            match body.frame().await.unwrap() {
                Ok(frame) => received += frame.into_data().unwrap().len(),
                Err(err) => break err,
            }
        };
        // Chunks every 5 s never trip the 10 s idle timeout; the 60 s deadline does.
        assert!((10..=12).contains(&received), "{received}");
        assert_eq!(
            find_timeout(err.as_ref()),
            Some(BodyTimeout::Deadline(Duration::from_secs(60)))
        );
        assert_eq!(count(&metrics, TimeoutPhase::Request), 1);
        assert_eq!(count(&metrics, TimeoutPhase::BodyIdle), 0);
        feeder.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn time_not_spent_waiting_is_not_idleness() {
        let (bounds, metrics) = bounds(10, 600);
        let (tx, inner) = channel_body();
        let body = std::pin::pin!(bounds.wrap(inner));
        // The consumer is busy elsewhere for longer than the idle timeout …
        tokio::time::sleep(Duration::from_secs(20)).await;
        tx.send(Bytes::from_static(b"late")).await.unwrap();
        drop(tx);
        // … which does not count against the client.
        let data = body.collect().await.unwrap().to_bytes();
        assert_eq!(data, Bytes::from_static(b"late"));
        assert_eq!(count(&metrics, TimeoutPhase::BodyIdle), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn complete_bodies_never_time_out() {
        let (bounds, metrics) = bounds(1, 1);
        let body = bounds.wrap(http_body_util::Full::new(Bytes::from_static(b"all")));
        tokio::time::sleep(Duration::from_secs(5)).await;
        let data = body.collect().await.unwrap().to_bytes();
        assert_eq!(data, Bytes::from_static(b"all"));
        let empty = bounds.wrap(http_body_util::Empty::<Bytes>::new());
        assert!(empty.is_end_stream());
        assert_eq!(count(&metrics, TimeoutPhase::Request), 0);
    }

    #[test]
    fn found_through_io_and_boxed_layers() {
        let boxed: BoxError = BodyTimeout::Idle(Duration::from_secs(1)).into();
        let io = std::io::Error::other(axum::Error::new(boxed));
        #[derive(Debug, thiserror::Error)]
        #[error("payload")]
        struct Outer(#[source] std::io::Error);
        let outer = Outer(io);
        assert_eq!(
            find_timeout(&outer),
            Some(BodyTimeout::Idle(Duration::from_secs(1)))
        );
        assert_eq!(find_timeout(&std::io::Error::other("other")), None);
    }
}
