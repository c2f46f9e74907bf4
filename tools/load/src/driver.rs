//! The I/O part: HTTP/1.1 connections (hyper), workers, warm-up and the measurement window.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, Method, Request, StatusCode};
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::args::{Args, Op, Target};
use crate::report::{Outcome, Stats};

/// Everything a worker needs, shared read-only.
#[derive(Debug)]
pub struct Plan {
    /// Resolved socket address of the server.
    pub addr: SocketAddr,
    /// Value of the `Host` header.
    pub authority: String,
    /// `{base}/v1/objects/{usecase}/{scopes}/` (keys are appended); empty with a fixed path.
    pub path_prefix: String,
    /// When set, every request is `GET` of exactly this path.
    pub fixed_path: Option<String>,
    /// Operation mix.
    pub op: Op,
    /// GET percentage for `Op::Mixed`.
    pub read_percent: u8,
    /// Prefix of every key (`{prefix}{index}`).
    pub key_prefix: String,
    /// Distinct keys.
    pub keys: u64,
    /// Write payload (shared, cheap to clone).
    pub payload: Bytes,
    /// Whether each request uses a fresh connection.
    pub new_connection: bool,
    /// Per-request timeout.
    pub timeout: Duration,
    /// `x-os-auth` header value, when a token was given.
    pub auth: Option<http::HeaderValue>,
}

impl Plan {
    /// Builds the plan from validated arguments and a resolved address.
    pub fn new(args: &Args, target: &Target, addr: SocketAddr) -> Result<Self, String> {
        let scopes = args.scope_segment()?;
        let (path_prefix, fixed_path) = match &args.target_path {
            Some(path) => (String::new(), Some(format!("{}{}", target.base_path, path))),
            None => (
                format!(
                    "{}/v1/objects/{}/{}/",
                    target.base_path, args.usecase, scopes
                ),
                None,
            ),
        };
        Ok(Self {
            addr,
            authority: target.authority.clone(),
            path_prefix,
            fixed_path,
            op: args.op,
            read_percent: args.read_percent,
            key_prefix: args.key_prefix.clone(),
            keys: args.keys,
            payload: payload(args.size as usize),
            new_connection: args.new_connection,
            timeout: args.timeout,
            auth: args
                .token
                .as_ref()
                .map(|token| http::HeaderValue::from_str(&format!("Bearer {token}")))
                .transpose()
                .map_err(|_| "--token must be a valid header value".to_owned())?,
        })
    }

    /// One-line description of what is driven, for the report.
    pub fn describe(&self) -> String {
        match &self.fixed_path {
            Some(path) => format!("GET http://{}{}", self.authority, path),
            None => {
                let op = match self.op {
                    Op::Put => "PUT".to_owned(),
                    Op::Get => "GET".to_owned(),
                    Op::Mixed => format!("{}% GET / PUT", self.read_percent),
                };
                format!(
                    "{op} http://{}{}{}{{0..{}}} ({} B payload)",
                    self.authority,
                    self.path_prefix,
                    self.key_prefix,
                    self.keys - 1,
                    self.payload.len()
                )
            }
        }
    }

    fn object_path(&self, index: u64) -> String {
        format!("{}{}{}", self.path_prefix, self.key_prefix, index)
    }

    fn request(&self, method: Method, path: &str, body: Bytes) -> Request<Full<Bytes>> {
        let mut builder = Request::builder()
            .method(method.clone())
            .uri(path)
            .header(header::HOST, &self.authority)
            .header(header::USER_AGENT, "strata-load");
        if method == Method::PUT {
            builder = builder.header(header::CONTENT_TYPE, "application/octet-stream");
        }
        if let Some(auth) = &self.auth {
            builder = builder.header("x-os-auth", auth);
        }
        builder
            .body(Full::new(body))
            .expect("request parts are valid")
    }
}

/// Deterministic, incompressible-looking payload of `size` bytes.
pub fn payload(size: usize) -> Bytes {
    let mut state = Rng::new(0x5EED_0BAD_CAFE_F00D);
    let mut data = Vec::with_capacity(size + 8);
    while data.len() < size {
        data.extend_from_slice(&state.next_u64().to_le_bytes());
    }
    data.truncate(size);
    Bytes::from(data)
}

/// xorshift64*: tiny, deterministic, good enough to pick keys and operations.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a non-zero seed (zero is replaced).
    pub fn new(seed: u64) -> Self {
        Self(if seed == 0 {
            0x9E37_79B9_7F4A_7C15
        } else {
            seed
        })
    }

    /// Next pseudo-random value.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform-ish value in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// A worker's connection: kept across requests unless `--new-connection`.
struct Connection {
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl Connection {
    async fn connect(addr: SocketAddr) -> std::io::Result<SendRequest<Full<Bytes>>> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(std::io::Error::other)?;
        tokio::spawn(async move {
            // Ends when the server closes or the sender is dropped; errors surface on send.
            let _ = conn.await;
        });
        Ok(sender)
    }

    /// Sends one request and drains the response body. Returns the outcome and the
    /// number of body bytes received.
    async fn send(&mut self, plan: &Plan, request: Request<Full<Bytes>>) -> (Outcome, u64) {
        let reuse = !plan.new_connection;
        let mut sender = match self.sender.take().filter(|s| reuse && !s.is_closed()) {
            Some(sender) => sender,
            None => match Connection::connect(plan.addr).await {
                Ok(sender) => sender,
                Err(_) => return (Outcome::ConnectError, 0),
            },
        };
        if sender.ready().await.is_err() {
            return (Outcome::IoError, 0);
        }
        let response = match sender.send_request(request).await {
            Ok(response) => response,
            Err(_) => return (Outcome::IoError, 0),
        };
        let status = response.status();
        let keep = reuse && !closes_connection(response.headers());
        let mut body = response.into_body();
        let mut received = 0u64;
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(frame) => {
                    if let Some(data) = frame.data_ref() {
                        received += data.len() as u64;
                    }
                }
                Err(_) => return (Outcome::IoError, received),
            }
        }
        if keep {
            self.sender = Some(sender);
        }
        (Outcome::Status(status.as_u16()), received)
    }
}

fn closes_connection(headers: &http::HeaderMap) -> bool {
    headers
        .get(header::CONNECTION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("close"))
}

/// Writes every key once (so GETs find objects), `concurrency` at a time.
/// Returns the number of keys that could not be written.
pub async fn populate(plan: Arc<Plan>, concurrency: usize) -> u64 {
    let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..concurrency.min(plan.keys as usize).max(1) {
        let plan = plan.clone();
        let next = next.clone();
        tasks.push(tokio::spawn(async move {
            let mut conn = Connection { sender: None };
            let mut failed = 0u64;
            loop {
                let index = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if index >= plan.keys {
                    break;
                }
                let request =
                    plan.request(Method::PUT, &plan.object_path(index), plan.payload.clone());
                let outcome = tokio::time::timeout(plan.timeout, conn.send(&plan, request)).await;
                match outcome {
                    Ok((outcome, _)) if outcome.is_success() => {}
                    _ => failed += 1,
                }
            }
            failed
        }));
    }
    let mut failed = 0;
    for task in tasks {
        failed += task.await.unwrap_or(0);
    }
    failed
}

/// Runs one worker until `end`; requests that complete before `record_from` are not
/// recorded (warm-up).
pub async fn worker(plan: Arc<Plan>, seed: u64, record_from: Instant, end: Instant) -> Stats {
    let mut stats = Stats::new();
    let mut rng = Rng::new(seed);
    let mut conn = Connection { sender: None };
    while Instant::now() < end {
        let (request, sent) = match &plan.fixed_path {
            Some(path) => (plan.request(Method::GET, path, Bytes::new()), 0),
            None => {
                let path = plan.object_path(rng.below(plan.keys));
                let read = match plan.op {
                    Op::Get => true,
                    Op::Put => false,
                    Op::Mixed => rng.below(100) < u64::from(plan.read_percent),
                };
                if read {
                    (plan.request(Method::GET, &path, Bytes::new()), 0)
                } else {
                    let body = plan.payload.clone();
                    let len = body.len() as u64;
                    (plan.request(Method::PUT, &path, body), len)
                }
            }
        };
        let started = Instant::now();
        let (outcome, received) =
            match tokio::time::timeout(plan.timeout, conn.send(&plan, request)).await {
                Ok(result) => result,
                Err(_) => {
                    conn.sender = None;
                    (Outcome::Timeout, 0)
                }
            };
        let finished = Instant::now();
        if finished >= record_from {
            // Bytes only count for requests the server accepted the payload of.
            let sent = if outcome.is_success() { sent } else { 0 };
            stats.record(outcome, finished - started, sent, received);
        }
        if matches!(outcome, Outcome::ConnectError) {
            // Do not spin on a refused port.
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    stats
}

/// Checks that the server answers at all (any HTTP status) before the run.
pub async fn probe(plan: &Plan) -> Result<StatusCode, String> {
    let mut conn = Connection { sender: None };
    let path = plan
        .fixed_path
        .clone()
        .unwrap_or_else(|| format!("{}{}probe", plan.path_prefix, plan.key_prefix));
    let request = plan.request(Method::HEAD, &path, Bytes::new());
    match tokio::time::timeout(plan.timeout, conn.send(plan, request)).await {
        Ok((Outcome::Status(code), _)) => StatusCode::from_u16(code).map_err(|err| err.to_string()),
        Ok((other, _)) => Err(format!("{} unreachable: {other:?}", plan.addr)),
        Err(_) => Err(format!("{} did not answer within the timeout", plan.addr)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_is_deterministic_and_sized() {
        assert_eq!(payload(0).len(), 0);
        assert_eq!(payload(5).len(), 5);
        assert_eq!(payload(4096), payload(4096));
        assert_eq!(&payload(100)[..], &payload(4096)[..100]);
    }

    #[test]
    fn rng_stays_in_range() {
        let mut rng = Rng::new(0);
        let mut seen = [false; 10];
        for _ in 0..1000 {
            seen[rng.below(10) as usize] = true;
        }
        assert!(seen.iter().all(|s| *s));
    }
}
