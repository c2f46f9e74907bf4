//! The accept loop: one task per connection, HTTP/1.1 or HTTP/2 (prior knowledge), with
//! every client bounded in time and header size, and graceful shutdown.
//!
//! `axum::serve` has no knobs for these bounds, so connections are served with hyper
//! directly: the request head must be complete within `http.header_read_timeout` (idle
//! keep-alive connections close after it too) and fit in `http.max_header_bytes` (else
//! 431); every request body is wrapped in a [`BoundedBody`](super::bounds::BoundedBody).

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::bounds::BodyBounds;
use crate::config::HttpConfig;
use crate::metrics::{Metrics, TimeoutPhase};

/// The client preface of HTTP/2 with prior knowledge (RFC 9113 §3.4).
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// hyper's own HTTP/1 read buffer limit; raised only for larger header limits.
const HYPER_DEFAULT_MAX_BUF: usize = 8192 + 4096 * 100;

/// Per-connection bounds, from the `http` config section.
#[derive(Debug, Clone)]
pub struct ConnectionLimits {
    /// `http.header_read_timeout`.
    pub header_read_timeout: Duration,
    /// `http.max_header_bytes`.
    pub max_header_bytes: usize,
    /// Body deadlines (`http.body_idle_timeout`, `http.request_timeout`).
    pub body: BodyBounds,
}

impl ConnectionLimits {
    /// The limits `config` asks for; timeouts are counted in `metrics`.
    pub fn new(config: &HttpConfig, metrics: Metrics) -> Self {
        Self {
            header_read_timeout: config.header_read_timeout,
            max_header_bytes: config.max_header_bytes,
            body: BodyBounds {
                idle: config.body_idle_timeout,
                total: config.request_timeout,
                metrics,
            },
        }
    }
}

/// Serves `router` on `listener` until `shutdown` completes, then stops accepting, lets
/// every connection finish its in-flight requests and returns once all are closed (the
/// caller bounds that wait).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()>,
) {
    let limits = Arc::new(limits);
    let stop = CancellationToken::new();
    let connections = TaskTracker::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => {
                    // Without TCP_NODELAY small keep-alive responses stall on Nagle +
                    // delayed ACK.
                    if let Err(err) = tcp.set_nodelay(true) {
                        tracing::warn!(%err, "cannot set TCP_NODELAY");
                    }
                    connections.spawn(connection(tcp, router.clone(), limits.clone(), stop.clone()));
                }
                Err(err) if is_connection_error(&err) => {}
                Err(err) => {
                    // Typically out of descriptors: back off instead of spinning.
                    tracing::error!(%err, "accept failed");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            },
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    stop.cancel();
    connections.close();
    connections.wait().await;
}

/// Errors that concern one connection only; the listener is fine.
fn is_connection_error(err: &std::io::Error) -> bool {
    matches!(
        err.kind(),
        std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::ConnectionReset
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    Http1,
    Http2,
}

/// Tells HTTP/1 from the HTTP/2 preface by peeking (nothing is consumed). `None` when
/// the client closed before sending a byte.
async fn sniff(tcp: &TcpStream) -> std::io::Result<Option<Protocol>> {
    let mut buf = [0u8; 24];
    loop {
        let n = tcp.peek(&mut buf).await?;
        if n == 0 {
            return Ok(None);
        }
        if buf[..n] != H2_PREFACE[..n] {
            return Ok(Some(Protocol::Http1));
        }
        if n == H2_PREFACE.len() {
            return Ok(Some(Protocol::Http2));
        }
        // Part of the preface: `peek` returns at once while bytes are buffered, so wait
        // a little instead of spinning (the caller's timeout bounds the whole sniff).
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn connection(
    tcp: TcpStream,
    router: Router,
    limits: Arc<ConnectionLimits>,
    stop: CancellationToken,
) {
    // hyper's header timer starts only once the protocol is known, so the wait for the
    // first bytes has its own bound: a connection that sends nothing is closed too.
    let sniffed = tokio::select! {
        sniffed = tokio::time::timeout(limits.header_read_timeout, sniff(&tcp)) => sniffed,
        () = stop.cancelled() => return,
    };
    let protocol = match sniffed {
        Ok(Ok(Some(protocol))) => protocol,
        Ok(Ok(None) | Err(_)) => return,
        Err(_elapsed) => {
            limits.body.metrics.record_timeout(TimeoutPhase::Header);
            return;
        }
    };
    let started_request = Arc::new(AtomicBool::new(false));
    let service = {
        let started_request = started_request.clone();
        let bounds = limits.body.clone();
        hyper::service::service_fn(move |request: http::Request<Incoming>| {
            started_request.store(true, Ordering::Relaxed);
            let request = request.map(|body| bounds.wrap(body));
            tower::ServiceExt::oneshot(router.clone(), request)
        })
    };
    let io = TokioIo::new(tcp);
    let result = match protocol {
        Protocol::Http1 => {
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_read_timeout)
                .max_header_size(limits.max_header_bytes)
                .max_buf_size(limits.max_header_bytes.max(HYPER_DEFAULT_MAX_BUF));
            let conn = builder.serve_connection(io, service);
            drive(conn, &stop, |conn| conn.graceful_shutdown()).await
        }
        Protocol::Http2 => {
            let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
            builder
                .timer(TokioTimer::new())
                .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX));
            let conn = builder.serve_connection(io, service);
            drive(conn, &stop, |conn| conn.graceful_shutdown()).await
        }
    };
    if let Err(err) = result {
        // A header timeout before any request is a slow or silent client; after one it
        // is an idle keep-alive connection closing, which is normal.
        if err.is_timeout() && !started_request.load(Ordering::Relaxed) {
            limits.body.metrics.record_timeout(TimeoutPhase::Header);
        }
        tracing::trace!(%err, "connection ended with an error");
    }
}

/// Runs a connection to its end; on shutdown asks it to finish in-flight requests and
/// close instead of waiting for more.
async fn drive<C>(
    conn: C,
    stop: &CancellationToken,
    graceful: impl FnOnce(std::pin::Pin<&mut C>),
) -> Result<(), hyper::Error>
where
    C: Future<Output = Result<(), hyper::Error>>,
{
    let mut conn = std::pin::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => return result,
        () = stop.cancelled() => graceful(conn.as_mut()),
    }
    conn.await
}
