//! The operator's own HTTP endpoints, over a real socket bound to port 0.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use strata_operator::metrics::Metrics;
use strata_operator::server::{respond, ProbeServer, Probes};

/// One answer as it came over the wire.
struct Answer {
    status: StatusCode,
    /// Header lines, names lower-cased.
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Sends one HTTP/1.1 request with `Connection: close` and reads the whole answer.
fn request(addr: SocketAddr, method: &str, path: &str) -> Answer {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: operator\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").expect("a complete answer");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let code: u16 = status_line.split(' ').nth(1).unwrap().parse().unwrap();
    let headers = lines
        .map(|l| {
            let (n, v) = l.split_once(':').unwrap();
            (n.trim().to_ascii_lowercase(), v.trim().to_owned())
        })
        .collect();
    Answer {
        status: StatusCode::from_u16(code).unwrap(),
        headers,
        body: body.to_owned(),
    }
}

async fn get(addr: SocketAddr, path: &str) -> (StatusCode, String) {
    let path = path.to_owned();
    let answer = tokio::task::spawn_blocking(move || request(addr, "GET", &path))
        .await
        .unwrap();
    (answer.status, answer.body)
}

fn probes() -> Probes {
    Probes {
        metrics: Arc::new(Metrics::new()),
        ready: Arc::new(AtomicBool::new(false)),
    }
}

#[tokio::test]
async fn health_ready_and_metrics() {
    let probes = probes();
    let server = ProbeServer::bind("127.0.0.1:0".parse().unwrap(), probes.clone()).unwrap();
    let addr = server.local_addr();
    assert_ne!(addr.port(), 0);
    assert_eq!(get(addr, "/healthz").await.0, StatusCode::OK);
    assert_eq!(
        get(addr, "/readyz").await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    probes.ready.store(true, Ordering::Release);
    assert_eq!(get(addr, "/readyz").await.0, StatusCode::OK);

    probes
        .metrics
        .reconciliations
        .with_label_values(&["ok"])
        .inc();
    probes.metrics.reconcile_duration.observe(0.02);
    probes
        .metrics
        .objects_managed
        .with_label_values(&["Deployment"])
        .set(3);
    let (status, text) = get(addr, "/metrics").await;
    assert_eq!(status, StatusCode::OK);
    for needle in [
        "strata_operator_reconciliations_total{result=\"ok\"} 1",
        "strata_operator_reconciliations_total{result=\"error\"} 0",
        "strata_operator_reconcile_duration_seconds_bucket",
        "strata_operator_objects_managed{kind=\"Deployment\"} 3",
        "strata_operator_leader 0",
    ] {
        assert!(text.contains(needle), "missing {needle} in\n{text}");
    }
}

/// Bodies, content types and the answers to unknown paths and other methods, as
/// clients (kubelet, Prometheus) see them on the wire.
#[test]
fn wire_format_of_every_route() {
    let probes = probes();
    let server = ProbeServer::bind("127.0.0.1:0".parse().unwrap(), probes.clone()).unwrap();
    let addr = server.local_addr();

    let health = request(addr, "GET", "/healthz");
    assert_eq!(health.status, StatusCode::OK);
    assert_eq!(health.body, "ok");
    assert_eq!(
        health.header("content-type"),
        Some("text/plain; charset=utf-8")
    );

    let starting = request(addr, "GET", "/readyz");
    assert_eq!(starting.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(starting.body, "starting");
    probes.ready.store(true, Ordering::Release);
    let ready = request(addr, "GET", "/readyz?verbose=1");
    assert_eq!(
        (ready.status, ready.body.as_str()),
        (StatusCode::OK, "ready")
    );

    let metrics = request(addr, "GET", "/metrics");
    assert_eq!(
        metrics.header("content-type"),
        Some("text/plain; version=0.0.4")
    );
    assert!(metrics.body.contains("strata_operator_leader 0"));

    let head = request(addr, "HEAD", "/healthz");
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(head.body, "", "HEAD has no body");

    let missing = request(addr, "GET", "/nope");
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.body, "");

    let post = request(addr, "POST", "/metrics");
    assert_eq!(post.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(post.header("allow"), Some("GET,HEAD"));
}

#[test]
fn respond_is_the_routing_table() {
    let probes = probes();
    assert_eq!(respond(&probes, "GET", "/healthz").body, b"ok");
    assert_eq!(respond(&probes, "GET", "/readyz").status, 503);
    assert_eq!(respond(&probes, "DELETE", "/readyz").status, 405);
    assert_eq!(respond(&probes, "GET", "/healthz/extra").status, 404);
    assert_eq!(respond(&probes, "GET", "/").status, 404);
}

/// When the operator shuts down the endpoints stop: `serve_until` returns and the port
/// no longer accepts connections.
#[tokio::test]
async fn shutdown_stops_the_endpoints() {
    let server = ProbeServer::bind("127.0.0.1:0".parse().unwrap(), probes()).unwrap();
    let addr = server.local_addr();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.serve_until(async move {
        let _ = stopped.await;
    }));
    assert_eq!(get(addr, "/healthz").await.0, StatusCode::OK);
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), serving)
        .await
        .expect("serve_until returns after shutdown")
        .unwrap();
    // The listening socket is closed by tiny_http's accept thread as it exits.
    tokio::time::timeout(Duration::from_secs(10), async {
        while TcpStream::connect(addr).is_ok() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the port stops accepting connections after shutdown");
}
