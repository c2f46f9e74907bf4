//! The operator's own HTTP endpoints: `/healthz`, `/readyz`, `/metrics`.
//!
//! Three tiny GET routes do not justify a server stack: they are answered by
//! `tiny_http` on one dedicated thread, so the operator links no axum and no hyper
//! `server` (hyper arrives only as the kube client's transport). Every answer is
//! computed by [`respond`], a pure function the tests can also call without a socket.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use crate::metrics::Metrics;

/// What the probe handlers look at.
#[derive(Clone)]
pub struct Probes {
    /// Metrics to expose.
    pub metrics: Arc<Metrics>,
    /// Set once the API server was reached and discovery ran. Standby replicas are
    /// ready too: readiness gating on leadership would stall the operator's own rollouts.
    pub ready: Arc<AtomicBool>,
}

/// Content type of the plain-text probe answers.
pub const TEXT_PLAIN: &str = "text/plain; charset=utf-8";
/// Content type of `/metrics` (Prometheus text exposition format 0.0.4).
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4";
/// Methods every route answers (HEAD gets the GET headers without a body).
const ALLOWED: &str = "GET,HEAD";

/// One answer of the endpoints, independent of the server that sends it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// HTTP status code.
    pub status: u16,
    /// `Content-Type`, or none for empty answers.
    pub content_type: Option<&'static str>,
    /// `Allow`, set on 405 answers so clients learn what the route takes.
    pub allow: Option<&'static str>,
    /// The body (dropped on the wire for HEAD).
    pub body: Vec<u8>,
}

impl Reply {
    fn text(status: u16, content_type: &'static str, body: impl Into<Vec<u8>>) -> Self {
        Self {
            status,
            content_type: Some(content_type),
            allow: None,
            body: body.into(),
        }
    }

    fn empty(status: u16) -> Self {
        Self {
            status,
            content_type: None,
            allow: None,
            body: Vec::new(),
        }
    }
}

/// The answer to `method` on `target` (path, optionally with a query, which is
/// ignored): the routing table of the endpoints.
pub fn respond(probes: &Probes, method: &str, target: &str) -> Reply {
    let path = target.split_once('?').map_or(target, |(path, _)| path);
    if !matches!(path, "/healthz" | "/readyz" | "/metrics") {
        return Reply::empty(404);
    }
    if !matches!(method, "GET" | "HEAD") {
        return Reply {
            allow: Some(ALLOWED),
            ..Reply::empty(405)
        };
    }
    match path {
        "/healthz" => Reply::text(200, TEXT_PLAIN, "ok"),
        "/readyz" if probes.ready.load(Ordering::Acquire) => Reply::text(200, TEXT_PLAIN, "ready"),
        "/readyz" => Reply::text(503, TEXT_PLAIN, "starting"),
        _ => Reply::text(200, METRICS_CONTENT_TYPE, probes.metrics.render()),
    }
}

/// The endpoints, listening on their own thread until stopped.
///
/// Dropping it (for instance when the task awaiting [`ProbeServer::serve_until`] is
/// aborted) also stops the thread, after the request in hand is answered.
pub struct ProbeServer {
    server: Arc<tiny_http::Server>,
    addr: SocketAddr,
    thread: Option<JoinHandle<()>>,
}

/// Builds the `tiny_http` header `name: value` (both are ASCII constants).
fn header(name: &str, value: &str) -> tiny_http::Header {
    tiny_http::Header::from_bytes(name.as_bytes(), value.as_bytes())
        .expect("ASCII header name and value")
}

fn answer(probes: &Probes, request: tiny_http::Request) {
    let reply = respond(probes, request.method().as_str(), request.url());
    let mut response = tiny_http::Response::from_data(reply.body).with_status_code(reply.status);
    if let Some(content_type) = reply.content_type {
        response.add_header(header("Content-Type", content_type));
    }
    if let Some(allow) = reply.allow {
        response.add_header(header("Allow", allow));
    }
    // A client that hung up has nothing left to be told.
    if let Err(err) = request.respond(response) {
        tracing::debug!(error = %err, "could not answer a probe request");
    }
}

impl ProbeServer {
    /// Binds `addr` (port 0 picks a free port) and starts answering on a thread named
    /// `operator-http`.
    pub fn bind(addr: SocketAddr, probes: Probes) -> io::Result<Self> {
        let server = Arc::new(tiny_http::Server::http(addr).map_err(io::Error::other)?);
        let addr = server
            .server_addr()
            .to_ip()
            .ok_or_else(|| io::Error::other("bound a non-IP address"))?;
        let thread = std::thread::Builder::new()
            .name("operator-http".into())
            .spawn({
                let server = server.clone();
                move || {
                    // Ends when `unblock` is called: no more requests are taken.
                    for request in server.incoming_requests() {
                        answer(&probes, request);
                    }
                }
            })?;
        Ok(Self {
            server,
            addr,
            thread: Some(thread),
        })
    }

    /// The address actually bound (the chosen port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Answers until `shutdown` resolves, then stops taking requests, lets the one in
    /// hand finish and closes the listening socket.
    pub async fn serve_until(mut self, shutdown: impl std::future::Future<Output = ()>) {
        shutdown.await;
        self.server.unblock();
        if let Some(thread) = self.thread.take() {
            // Joining blocks; the request in hand is answered within its own write.
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }
}

impl Drop for ProbeServer {
    fn drop(&mut self) {
        self.server.unblock();
    }
}
