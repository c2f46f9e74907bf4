//! End-to-end upload benchmarks against an in-process server on the filesystem backend:
//! one batch of 1000 × 1 KiB inserts against 1000 sequential single PUTs over one
//! keep-alive connection, a batch of 1000 mixed operations under each executor
//! (`service.executor: spawn | pool`), and a resumable upload against a plain PUT of the
//! same size.
//!
//! Why: batching and resumable sessions exist for throughput; these figures
//! (BENCHMARKS.md) show whether they deliver it. Run with
//! `cargo bench -p strata-server --bench uploads`.

// `criterion_main!` generates an undocumented `main`.
#![allow(missing_docs)]

use std::time::Duration;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use strata_server::app::{self, RunningServer};
use strata_server::config::{Config, ExecutorKind, StorageConfig};

const OPS: usize = 1000;
const SMALL: usize = 1024;
const LARGE: usize = 64 * 1024 * 1024;
const CHUNK: usize = 16 * 1024 * 1024;

struct Bench {
    rt: tokio::runtime::Runtime,
    server: RunningServer,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl Bench {
    fn start() -> Self {
        Self::with_executor(ExecutorKind::default())
    }

    fn with_executor(executor: ExecutorKind) -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::default();
        config.auth = strata_server::config::AuthConfig::disabled();
        config.http.addr = "127.0.0.1:0".parse().unwrap();
        config.http.drain_file = dir.path().join("strata.down");
        config.service.executor = executor;
        config.storage = StorageConfig::Filesystem {
            path: dir.path().join("data"),
        };
        let server = rt.block_on(app::start(config)).unwrap();
        // One idle connection: sequential requests reuse one keep-alive connection.
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(1)
            .build()
            .unwrap();
        Self {
            rt,
            server,
            http,
            _dir: dir,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.server.addr())
    }

    /// Sends one batch request (boundary `bench-boundary`) and returns its 200 body.
    async fn post_batch(&self, body: Bytes) -> Bytes {
        let r = self
            .http
            .post(self.url("/v1/objects:batch/bench/org=1/"))
            .header(
                "content-type",
                "multipart/form-data; boundary=bench-boundary",
            )
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.bytes().await.unwrap()
    }
}

fn batch_body(boundary: &str, payload: &[u8]) -> Bytes {
    let mut body = Vec::new();
    for i in 0..OPS {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\ncontent-disposition: form-data; name=part\r\n\
                 x-sn-batch-operation-kind: insert\r\nx-sn-batch-operation-key: b{i}\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(payload);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    Bytes::from(body)
}

/// A batch of [`OPS`] operations cycling insert, get, head and delete over 250 keys, so
/// reads and deletes find objects written by earlier batches.
fn mixed_batch_body(boundary: &str, payload: &[u8]) -> Bytes {
    let mut body = Vec::new();
    for i in 0..OPS {
        let kind = ["insert", "get", "head", "delete"][i % 4];
        body.extend_from_slice(
            format!(
                "--{boundary}\r\ncontent-disposition: form-data; name=part\r\n\
                 x-sn-batch-operation-kind: {kind}\r\nx-sn-batch-operation-key: m{}\r\n\r\n",
                i / 4
            )
            .as_bytes(),
        );
        if kind == "insert" {
            body.extend_from_slice(payload);
        }
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    Bytes::from(body)
}

/// The same mixed batch under each executor: whether `pool`'s hand-off costs batch work
/// what it costs single requests (BENCHMARKS.md, issue #14).
fn batch_mix_per_executor(c: &mut Criterion) {
    let payload = Bytes::from(vec![b'x'; SMALL]);
    let body = mixed_batch_body("bench-boundary", &payload);
    let mut group = c.benchmark_group("executors");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    group.throughput(Throughput::Elements(OPS as u64));
    for (name, executor) in [("spawn", ExecutorKind::Spawn), ("pool", ExecutorKind::Pool)] {
        let bench = Bench::with_executor(executor);
        group.bench_function(format!("batch_mix_1000_{name}"), |b| {
            b.to_async(&bench.rt).iter(|| async {
                let text = bench.post_batch(body.clone()).await;
                let parts = text
                    .windows(27)
                    .filter(|w| w.eq_ignore_ascii_case(b"x-sn-batch-operation-status"))
                    .count();
                assert_eq!(parts, OPS);
            })
        });
        bench.rt.block_on(bench.server.shutdown());
    }
    group.finish();
}

fn batch_vs_single(c: &mut Criterion) {
    let bench = Bench::start();
    let payload = Bytes::from(vec![b'x'; SMALL]);
    let body = batch_body("bench-boundary", &payload);
    let mut group = c.benchmark_group("uploads");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    group.throughput(Throughput::Elements(OPS as u64));
    group.bench_function("put_sequential_1000x1KiB", |b| {
        b.to_async(&bench.rt).iter(|| async {
            for i in 0..OPS {
                let r = bench
                    .http
                    .put(bench.url(&format!("/v1/objects/bench/org=1/p{i}")))
                    .body(payload.clone())
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
                r.bytes().await.unwrap();
            }
        })
    });
    group.bench_function("batch_1000x1KiB", |b| {
        b.to_async(&bench.rt).iter(|| async {
            let text = bench.post_batch(body.clone()).await;
            let created = text.windows(11).filter(|w| w == b"201 Created").count();
            assert_eq!(created, OPS);
        })
    });
    group.finish();
    bench.rt.block_on(bench.server.shutdown());
}

fn resumable_vs_put(c: &mut Criterion) {
    let bench = Bench::start();
    let payload = Bytes::from(
        (0..LARGE)
            .map(|i| (i * 7 + i / 4096) as u8)
            .collect::<Vec<_>>(),
    );
    let mut group = c.benchmark_group("uploads");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(15));
    group.throughput(Throughput::Bytes(LARGE as u64));
    group.bench_function("put_64MiB", |b| {
        b.to_async(&bench.rt).iter(|| async {
            let r = bench
                .http
                .put(bench.url("/v1/objects/bench/org=2/plain"))
                .body(payload.clone())
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
        })
    });
    group.bench_function("resumable_64MiB_4_chunks", |b| {
        b.to_async(&bench.rt).iter(|| async {
            let object = bench.url("/v1/objects/bench/org=2/resumable");
            let r = bench
                .http
                .put(format!("{object}?upload_type=resumable"))
                .header("upload-length", LARGE)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            let created: serde_json::Value = r.json().await.unwrap();
            let token = created["session"].as_str().unwrap().to_owned();
            for offset in (0..LARGE).step_by(CHUNK) {
                let r = bench
                    .http
                    .put(format!("{object}?session={token}"))
                    .header("upload-offset", offset)
                    .body(payload.slice(offset..offset + CHUNK))
                    .send()
                    .await
                    .unwrap();
                let want = if offset + CHUNK == LARGE { 201 } else { 204 };
                assert_eq!(r.status(), want);
            }
        })
    });
    group.finish();
    bench.rt.block_on(bench.server.shutdown());
}

criterion_group!(
    benches,
    batch_vs_single,
    batch_mix_per_executor,
    resumable_vs_put
);
criterion_main!(benches);
