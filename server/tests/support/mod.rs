//! Real shared-storage services for tests: the Google Cloud Bigtable emulator and an
//! S3 server (`moto_server`), each started on a free loopback port and stopped (killed)
//! when its handle drops.

#![allow(dead_code)]

pub mod multipart;

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use strata_server::config::StorageConfig;

/// The emulator binary shipped with the Google Cloud SDK.
pub const CBTEMULATOR: &str = "/usr/lib/google-cloud-sdk/platform/bigtable-emulator/cbtemulator";
/// The S3 server from PyPI `moto[server]` (requirements-test.txt).
pub const MOTO_SERVER: &str = "moto_server";
/// Credentials the S3 server accepts; they are fake and only live in the environment.
pub const ACCESS_KEY: &str = "strata-test-access-key";
/// Secret for [`ACCESS_KEY`]; tests check it never appears in output.
pub const SECRET_KEY: &str = "strata-test-SECRET-do-not-log-8c1f";

/// A child process killed on drop.
#[derive(Debug)]
pub struct Service {
    child: Child,
    /// `127.0.0.1:PORT`.
    pub addr: String,
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Service {
    /// Stops the service now (to simulate an outage).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// Polls until `addr` accepts TCP connections (or the child exits / 60 s pass).
async fn wait_for_port(child: &mut Child, addr: &str, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited before listening on {addr}: {status}");
        }
        assert!(Instant::now() < deadline, "{what} did not listen on {addr}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Starts the Bigtable emulator on a free port.
pub async fn bigtable_emulator() -> Service {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut child = Command::new(CBTEMULATOR)
        .args(["-host", "127.0.0.1", "-port", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {CBTEMULATOR}: {e}"));
    wait_for_port(&mut child, &addr, "cbtemulator").await;
    Service { child, addr }
}

/// Puts the fake S3 credentials into this process's environment (idempotent).
pub fn s3_credentials() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        std::env::set_var("AWS_ACCESS_KEY_ID", ACCESS_KEY);
        std::env::set_var("AWS_SECRET_ACCESS_KEY", SECRET_KEY);
    });
}

/// Starts `moto_server` on a free port and creates `bucket` in it.
pub async fn s3_server(bucket: &str) -> Service {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut child = Command::new(MOTO_SERVER)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {MOTO_SERVER} (pip install 'moto[server]'): {e}"));
    wait_for_port(&mut child, &addr, "moto_server").await;
    let service = Service { child, addr };
    create_bucket(&service.addr, bucket).await;
    service
}

/// Creates a bucket with a plain (unsigned) request, which moto accepts.
pub async fn create_bucket(addr: &str, bucket: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let http = reqwest::Client::new();
    loop {
        let sent = http.put(format!("http://{addr}/{bucket}")).send().await;
        if sent.is_ok_and(|r| r.status().is_success()) {
            return;
        }
        assert!(Instant::now() < deadline, "cannot create bucket {bucket}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A `bigtable` storage section for the emulator at `addr`.
pub fn bigtable_config(addr: &str, table: &str) -> StorageConfig {
    StorageConfig::Bigtable {
        endpoint: Some(addr.to_owned()),
        project_id: "test".to_owned(),
        instance_name: "test".to_owned(),
        table_name: table.to_owned(),
        connections: None,
        create_table: true,
    }
}

/// An `s3compatible` storage section for the server at `addr`.
pub fn s3_config(addr: &str, bucket: &str) -> StorageConfig {
    StorageConfig::S3compatible {
        endpoint: format!("http://{addr}"),
        bucket: bucket.to_owned(),
        region: None,
        path_style: None,
    }
}

/// A round-robin TCP balancer, as a Kubernetes Service spreads connections over pods:
/// each accepted connection goes to the next backend in turn.
#[derive(Debug)]
pub struct RoundRobin {
    /// The address clients connect to.
    pub addr: std::net::SocketAddr,
    task: tokio::task::JoinHandle<()>,
    /// Connections handed to each backend so far.
    pub counts: std::sync::Arc<Vec<std::sync::atomic::AtomicUsize>>,
}

impl RoundRobin {
    /// Starts balancing over `backends` on a free loopback port.
    pub async fn start(backends: Vec<std::net::SocketAddr>) -> Self {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let counts: std::sync::Arc<Vec<AtomicUsize>> =
            std::sync::Arc::new(backends.iter().map(|_| AtomicUsize::new(0)).collect());
        let shared = counts.clone();
        let task = tokio::spawn(async move {
            let mut next = 0usize;
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                let index = next % backends.len();
                next += 1;
                shared[index].fetch_add(1, Ordering::Relaxed);
                let target = backends[index];
                tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        Self { addr, task, counts }
    }

    /// Connections each backend received.
    pub fn connections(&self) -> Vec<usize> {
        self.counts
            .iter()
            .map(|c| c.load(std::sync::atomic::Ordering::Relaxed))
            .collect()
    }
}

impl Drop for RoundRobin {
    fn drop(&mut self) {
        self.task.abort();
    }
}
