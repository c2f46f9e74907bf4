//! Bounded slow clients (issue 15): header-read timeout, per-chunk body idle timeout,
//! overall body deadline and the header size limit, driven over raw TCP the way a
//! slowloris client would. Every bound is configured short (about a second) and every
//! assertion waits generously: these tests check what happens, never how fast.

use std::time::Duration;

use strata_server::app::{self, RunningServer};
use strata_server::auth::AuthConfig;
use strata_server::config::{Config, StorageConfig};
use strata_server::metrics::TimeoutPhase;
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const OBJ: &str = "/v1/objects/slow/org=1";

/// Far beyond every configured bound: a test waiting this long has found a hang.
const PATIENCE: Duration = Duration::from_secs(30);

struct Harness {
    server: RunningServer,
    _dir: TempDir,
    http: reqwest::Client,
}

impl Harness {
    async fn start(adjust: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = Config {
            auth: AuthConfig::disabled(),
            ..Config::default()
        };
        config.http.addr = "127.0.0.1:0".parse().expect("address");
        config.http.drain_file = dir.path().join("strata.down");
        config.http.header_read_timeout = Duration::from_secs(1);
        config.http.body_idle_timeout = Duration::from_secs(1);
        config.storage = StorageConfig::Filesystem {
            path: dir.path().join("data"),
        };
        adjust(&mut config);
        let server = app::start(config).await.expect("server starts");
        Harness {
            server,
            _dir: dir,
            http: reqwest::Client::new(),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.server.addr(), path)
    }

    fn timeouts(&self, phase: TimeoutPhase) -> u64 {
        self.server
            .metrics()
            .http_timeouts
            .with_label_values(&[phase.as_str()])
            .get()
    }

    async fn connect(&self) -> TcpStream {
        TcpStream::connect(self.server.addr())
            .await
            .expect("connect")
    }

    /// A plain PUT through a pooled client: proves the server serves normally.
    async fn put(&self, key: &str, body: &'static [u8]) -> reqwest::StatusCode {
        self.http
            .put(self.url(&format!("{OBJ}/{key}")))
            .body(body)
            .send()
            .await
            .expect("PUT sent")
            .status()
    }

    async fn get(&self, key: &str) -> (reqwest::StatusCode, Vec<u8>) {
        let res = self
            .http
            .get(self.url(&format!("{OBJ}/{key}")))
            .send()
            .await
            .expect("GET sent");
        let status = res.status();
        (status, res.bytes().await.expect("body").to_vec())
    }
}

/// A response read off a raw connection until the server closed it.
#[derive(Debug)]
struct Raw {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Raw {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "JSON body expected ({e}): {:?}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

/// Reads until the server closes the connection; `None` when it closed without a byte.
async fn read_until_closed(stream: &mut TcpStream) -> Option<Raw> {
    let mut bytes = Vec::new();
    let read = tokio::time::timeout(PATIENCE, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => bytes.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "connection still open after {PATIENCE:?}");
    if bytes.is_empty() {
        return None;
    }
    let split = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("end of response head");
    let head = std::str::from_utf8(&bytes[..split]).expect("ASCII head");
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let headers = lines
        .map(|l| {
            let (n, v) = l.split_once(':').expect("header line");
            (n.to_owned(), v.trim().to_owned())
        })
        .collect();
    Some(Raw {
        status,
        headers,
        body: bytes[split + 4..].to_vec(),
    })
}

/// Opens an upload of `length` bytes, sends `sent` of them and goes silent.
async fn silent_upload(h: &Harness, key: &str, length: usize, sent: usize) -> TcpStream {
    let mut stream = h.connect().await;
    let head =
        format!("PUT {OBJ}/{key} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {length}\r\n\r\n");
    stream.write_all(head.as_bytes()).await.expect("write head");
    stream
        .write_all(&vec![b'x'; sent])
        .await
        .expect("write part");
    stream
}

#[tokio::test]
async fn header_trickle_slower_than_the_timeout_is_disconnected() {
    let h = Harness::start(|_| {}).await;
    let mut stream = h.connect().await;
    let (mut reader, mut writer) = stream.split();
    let trickle = async {
        writer
            .write_all(format!("PUT {OBJ}/k HTTP/1.1\r\nHost: localhost\r\n").as_bytes())
            .await?;
        // One header line every 200 ms, for far longer than the 1 s header timeout.
        for i in 0..150 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            writer
                .write_all(format!("x-pad-{i}: y\r\n").as_bytes())
                .await?;
        }
        Ok::<_, std::io::Error>(())
    };
    let mut response = Vec::new();
    tokio::select! {
        result = trickle => panic!("the trickle ran to its end ({result:?}): never disconnected"),
        read = reader.read_to_end(&mut response) => {
            // Closed (EOF or reset): no request was ever answered.
            assert!(read.is_err() || response.is_empty(), "unexpected response {response:?}");
        }
    }
    assert_eq!(h.timeouts(TimeoutPhase::Header), 1);
    assert_eq!(h.put("after", b"fine").await, reqwest::StatusCode::OK);
    h.server.shutdown().await;
}

#[tokio::test]
async fn connection_that_sends_nothing_is_closed() {
    let h = Harness::start(|_| {}).await;
    let mut stream = h.connect().await;
    assert!(read_until_closed(&mut stream).await.is_none());
    assert_eq!(h.timeouts(TimeoutPhase::Header), 1);
    h.server.shutdown().await;
}

#[tokio::test]
async fn silent_upload_after_a_partial_body_gets_408_json_and_stores_nothing() {
    let h = Harness::start(|_| {}).await;
    let mut stream = silent_upload(&h, "silent", 1000, 10).await;
    let r = read_until_closed(&mut stream).await.expect("a response");
    assert_eq!(r.status, 408, "{r:?}");
    assert_eq!(r.header("connection"), Some("close"));
    assert!(r
        .header("content-type")
        .is_some_and(|ct| ct.starts_with("application/json")));
    let detail = r.json()["detail"].as_str().expect("detail").to_owned();
    assert_eq!(detail, "client error: request body idle for longer than 1s");
    assert_eq!(h.timeouts(TimeoutPhase::BodyIdle), 1);
    assert_eq!(h.timeouts(TimeoutPhase::Request), 0);
    assert_eq!(h.get("silent").await.0, reqwest::StatusCode::NOT_FOUND);
    h.server.shutdown().await;
}

#[tokio::test]
async fn silent_uploads_release_their_permits() {
    const N: usize = 8;
    let h = Harness::start(|c| {
        c.service.max_concurrency = N / 2;
        c.service.queue_depth = 0;
    })
    .await;
    let mut streams = Vec::new();
    for i in 0..N {
        streams.push(silent_upload(&h, &format!("silent-{i}"), 100_000, 100).await);
    }
    let mut timed_out = 0;
    let mut rejected = 0;
    for stream in &mut streams {
        let r = read_until_closed(stream).await.expect("a response");
        match r.status {
            408 => timed_out += 1,
            429 => rejected += 1,
            other => panic!("unexpected status {other}: {r:?}"),
        }
    }
    // Every upload that got a permit held it until its body timed out; the rest were
    // refused at once. (Normally exactly N/2 each; a very slow machine may let a late
    // upload in after an early one timed out.)
    assert_eq!(timed_out + rejected, N);
    assert!(timed_out >= N / 2, "{timed_out} timed out");
    assert_eq!(h.timeouts(TimeoutPhase::BodyIdle), timed_out as u64);
    let running = &h.server.metrics().tasks_running;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while running.get() != 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(running.get(), 0, "permits still held");
    assert_eq!(h.put("normal", b"served").await, reqwest::StatusCode::OK);
    assert_eq!(
        h.get("normal").await,
        (reqwest::StatusCode::OK, b"served".to_vec())
    );
    for i in 0..N {
        assert_eq!(
            h.get(&format!("silent-{i}")).await.0,
            reqwest::StatusCode::NOT_FOUND
        );
    }
    h.server.shutdown().await;
}

#[tokio::test]
async fn trickling_body_hits_the_overall_deadline() {
    let h = Harness::start(|c| c.http.request_timeout = Duration::from_secs(2)).await;
    let mut stream = silent_upload(&h, "trickle", 10_000, 1).await;
    let (mut reader, mut writer) = stream.split();
    let trickle = async {
        // A byte every 200 ms never trips the 1 s idle timeout.
        for _ in 0..150 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            writer.write_all(b"x").await?;
        }
        Ok::<_, std::io::Error>(())
    };
    let mut response = Vec::new();
    tokio::select! {
        result = trickle => panic!("the trickle ran to its end ({result:?}): no deadline"),
        _ = reader.read_to_end(&mut response) => {}
    }
    let text = String::from_utf8_lossy(&response);
    assert!(text.starts_with("HTTP/1.1 408 "), "{text}");
    assert!(
        text.contains("client error: request body not complete within 2s"),
        "{text}"
    );
    assert_eq!(h.timeouts(TimeoutPhase::Request), 1);
    assert_eq!(h.timeouts(TimeoutPhase::BodyIdle), 0);
    h.server.shutdown().await;
}

#[tokio::test]
async fn oversized_header_gets_431_and_a_large_one_passes() {
    let h = Harness::start(|c| c.http.max_header_bytes = 8192).await;
    let request = |pad: usize| {
        format!(
            "GET {OBJ}/missing HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nx-pad: {}\r\n\r\n",
            "a".repeat(pad)
        )
    };
    let mut stream = h.connect().await;
    stream
        .write_all(request(6000).as_bytes())
        .await
        .expect("write");
    let r = read_until_closed(&mut stream).await.expect("a response");
    assert_eq!(r.status, 404, "a head within the limit is served");
    for pad in [9000, 200_000, 1_000_000] {
        let mut stream = h.connect().await;
        // The server may close before the whole head is written.
        let _ = stream.write_all(request(pad).as_bytes()).await;
        let r = read_until_closed(&mut stream).await.expect("a response");
        assert_eq!(r.status, 431, "head of {pad} bytes");
    }
    assert_eq!(h.put("after", b"fine").await, reqwest::StatusCode::OK);
    h.server.shutdown().await;
}

#[tokio::test]
async fn slow_but_steady_upload_succeeds() {
    let h = Harness::start(|_| {}).await;
    const BODY: &[u8] = b"steady-upload-20byte";
    let mut stream = h.connect().await;
    let head = format!(
        "PUT {OBJ}/steady HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        BODY.len()
    );
    stream.write_all(head.as_bytes()).await.expect("write head");
    // 20 bytes over about 4 s: four times the idle timeout, but never idle for long.
    for byte in BODY {
        tokio::time::sleep(Duration::from_millis(200)).await;
        stream.write_all(&[*byte]).await.expect("write byte");
    }
    let r = read_until_closed(&mut stream).await.expect("a response");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(
        h.get("steady").await,
        (reqwest::StatusCode::OK, BODY.to_vec())
    );
    for phase in TimeoutPhase::ALL {
        assert_eq!(h.timeouts(phase), 0, "{phase:?}");
    }
    h.server.shutdown().await;
}

#[tokio::test]
async fn keep_alive_requests_are_not_counted_as_timeouts() {
    let h = Harness::start(|_| {}).await;
    let mut stream = h.connect().await;
    stream
        .write_all(format!("GET {OBJ}/none HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes())
        .await
        .expect("write");
    // The response arrives, then the idle keep-alive connection is closed by the
    // header timeout without counting as a slow client.
    let r = read_until_closed(&mut stream).await.expect("a response");
    assert_eq!(r.status, 404);
    for phase in TimeoutPhase::ALL {
        assert_eq!(h.timeouts(phase), 0, "{phase:?}");
    }
    h.server.shutdown().await;
}
