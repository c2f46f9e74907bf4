//! How storage operations are executed: cancellation of abandoned reads (writes run to
//! completion), gauges that survive clients hanging up, the worker pool and background
//! chores (issue #14).

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use futures::StreamExt;
use strata_server::app::{self, RunningServer};
use strata_server::backend::memory::MemoryBackend;
use strata_server::backend::{faults::FaultyBackend, Backend, PayloadStream};
use strata_server::config::{Config, ExecutorKind, FaultsConfig, ServiceConfig, StorageConfig};
use strata_server::metrics::{BackgroundJob, Metrics};
use strata_server::object::{Metadata, ObjectId, Scopes};
use strata_server::service::{background, StorageService};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// Generous bound for anything that should happen "promptly".
const PATIENCE: Duration = Duration::from_secs(20);

fn faults(delay: Duration) -> FaultsConfig {
    FaultsConfig {
        panic_key_prefix: Some("panic/".to_owned()),
        delay_key_prefix: Some("slow/".to_owned()),
        delay,
    }
}

fn id(key: &str) -> ObjectId {
    ObjectId::new("exec".to_owned(), Scopes::default(), key.to_owned()).unwrap()
}

fn body(bytes: &'static [u8]) -> PayloadStream {
    futures::stream::once(async move { Ok(Bytes::from_static(bytes)) }).boxed()
}

async fn start(service: ServiceConfig, delay: Duration) -> RunningServer {
    let mut config = Config {
        auth: strata_server::auth::AuthConfig::disabled(),
        ..Config::default()
    };
    config.http.addr = "127.0.0.1:0".parse().unwrap();
    config.http.drain_file =
        std::env::temp_dir().join(format!("strata-executor-{}", uuid::Uuid::new_v4()));
    config.service = service;
    config.storage = StorageConfig::Memory {};
    config.faults = faults(delay);
    app::start(config).await.unwrap()
}

fn one_permit() -> ServiceConfig {
    ServiceConfig {
        max_concurrency: 1,
        ..ServiceConfig::default()
    }
}

/// Sends a whole request on a fresh connection and returns the connection unread, so
/// the test decides when the "client" hangs up (by dropping it).
async fn send_raw(server: &RunningServer, request: String) -> TcpStream {
    let mut stream = TcpStream::connect(server.addr()).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    stream.flush().await.unwrap();
    stream
}

fn raw_get(key: &str) -> String {
    format!("GET /v1/objects/exec/_/{key} HTTP/1.1\r\nhost: test\r\n\r\n")
}

/// Polls `check` until it holds, failing after [`PATIENCE`].
async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn series(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("series {name} not found"))
}

#[tokio::test]
async fn get_whose_client_disconnects_is_cancelled_and_frees_its_permit() {
    get_disconnect_case(one_permit()).await;
}

#[tokio::test]
async fn pooled_get_whose_client_disconnects_is_cancelled_and_frees_its_permit() {
    get_disconnect_case(pool(1, 1)).await;
}

async fn get_disconnect_case(service: ServiceConfig) {
    // The delayed GET would hold the only permit for a minute if it ran on.
    let server = start(service, Duration::from_secs(60)).await;
    let base = format!("http://{}", server.addr());
    let metrics = server.metrics().clone();
    let client = reqwest::Client::new();

    let hung_up = send_raw(&server, raw_get("slow/x")).await;
    eventually("the delayed GET holds the permit", || {
        server.service().available_permits() == 0
    })
    .await;
    // While it holds the permit, the next request is refused.
    let res = client
        .get(format!("{base}/v1/objects/exec/_/other"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 429);

    drop(hung_up);
    eventually("the cancelled GET released its permit", || {
        server.service().available_permits() == 1
    })
    .await;
    // The next request is admitted while the delayed call would still be sleeping.
    let res = client
        .get(format!("{base}/v1/objects/exec/_/other"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);

    assert_eq!(metrics.cancellations.with_label_values(&["get"]).get(), 1);
    assert_eq!(
        metrics
            .operations
            .with_label_values(&["get", "cancelled"])
            .get(),
        1
    );
    assert_eq!(metrics.tasks_running.get(), 0);
    let text = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        series(
            &text,
            "strata_service_cancellations_total{operation=\"get\"}"
        ),
        1.0
    );
    assert_eq!(
        series(
            &text,
            "strata_service_cancellations_total{operation=\"head\"}"
        ),
        0.0
    );
    server.shutdown().await;
}

#[tokio::test]
async fn put_whose_client_disconnects_completes_and_is_readable() {
    let server = start(one_permit(), Duration::from_millis(500)).await;
    let base = format!("http://{}", server.addr());
    let metrics = server.metrics().clone();
    let payload = "written although nobody waited";
    let request = format!(
        "PUT /v1/objects/exec/_/slow/w HTTP/1.1\r\nhost: test\r\ncontent-length: {}\r\n\r\n{payload}",
        payload.len()
    );
    let hung_up = send_raw(&server, request).await;
    eventually("the delayed PUT is running", || {
        metrics.tasks_running.get() == 1
    })
    .await;
    drop(hung_up);

    eventually("the abandoned PUT finished", || {
        metrics
            .operations
            .with_label_values(&["insert", "ok"])
            .get()
            == 1
    })
    .await;
    let res = reqwest::get(format!("{base}/v1/objects/exec/_/slow/w"))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.text().await.unwrap(), payload);
    assert_eq!(
        metrics
            .operations
            .with_label_values(&["insert", "cancelled"])
            .get(),
        0
    );
    assert_eq!(metrics.cancellations.with_label_values(&["get"]).get(), 0);
    server.shutdown().await;
}

#[tokio::test]
async fn client_hanging_up_while_queued_leaves_no_queued_gauge() {
    let service = ServiceConfig {
        max_concurrency: 1,
        queue_depth: 4,
        queue_timeout: Duration::from_secs(120),
        ..ServiceConfig::default()
    };
    let server = start(service, Duration::from_secs(60)).await;
    let metrics = server.metrics().clone();

    let holder = send_raw(&server, raw_get("slow/hold")).await;
    eventually("the delayed GET holds the permit", || {
        server.service().available_permits() == 0
    })
    .await;
    let queued = send_raw(&server, raw_get("waiting")).await;
    eventually("the second GET is queued", || {
        metrics.tasks_queued.get() == 1
    })
    .await;

    drop(queued);
    eventually("the abandoned waiter left the queue gauge", || {
        metrics.tasks_queued.get() == 0
    })
    .await;
    // The permit was still held the whole time: the waiter left, it was not served.
    assert_eq!(server.service().available_permits(), 0);
    assert_eq!(metrics.tasks_running.get(), 1);

    drop(holder);
    eventually("the holder was cancelled", || {
        metrics.tasks_running.get() == 0
    })
    .await;
    assert_eq!(metrics.tasks_queued.get(), 0);
    server.shutdown().await;
}

#[tokio::test]
async fn dropped_service_read_is_cancelled_but_dropped_write_completes() {
    let backend: Arc<dyn Backend> = Arc::new(MemoryBackend::default());
    let backend =
        Arc::new(FaultyBackend::wrap(backend, &faults(Duration::from_millis(300))).unwrap());
    let metrics = Metrics::new();
    let config = ServiceConfig {
        max_concurrency: 2,
        ..ServiceConfig::default()
    };
    let service = StorageService::new(backend, &config, metrics.clone());

    let read = service.head(id("slow/r"), SystemTime::now());
    assert!(tokio::time::timeout(Duration::from_millis(20), read)
        .await
        .is_err());
    let write = service.insert(id("slow/w"), Metadata::default(), body(b"kept"));
    assert!(tokio::time::timeout(Duration::from_millis(20), write)
        .await
        .is_err());

    eventually("both permits are back", || service.available_permits() == 2).await;
    assert_eq!(metrics.cancellations.with_label_values(&["head"]).get(), 1);
    assert_eq!(
        metrics
            .operations
            .with_label_values(&["insert", "ok"])
            .get(),
        1
    );
    let stored = service.head(id("slow/w"), SystemTime::now()).await.unwrap();
    assert_eq!(stored.unwrap().size, Some(4));
}

fn pool(workers: usize, max_concurrency: usize) -> ServiceConfig {
    ServiceConfig {
        max_concurrency,
        executor: ExecutorKind::Pool,
        workers,
        ..ServiceConfig::default()
    }
}

#[tokio::test]
async fn panic_in_a_pooled_job_fails_only_its_request_and_the_pool_keeps_its_size() {
    let server = start(pool(2, 8), Duration::from_millis(10)).await;
    let base = format!("http://{}", server.addr());
    let metrics = server.metrics().clone();
    let client = reqwest::Client::new();
    assert_eq!(metrics.workers.get(), 2);

    let (mut ok, mut failed) = (0, 0);
    for i in 0..30 {
        if i % 3 == 0 {
            let res = client
                .get(format!("{base}/v1/objects/exec/_/panic/{i}"))
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 500);
            let body: serde_json::Value = res.json().await.unwrap();
            assert!(body["detail"].as_str().unwrap().contains("injected fault"));
            failed += 1;
        } else {
            let res = client
                .put(format!("{base}/v1/objects/exec/_/k{i}"))
                .body(format!("value {i}"))
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 200);
            let res = client
                .get(format!("{base}/v1/objects/exec/_/k{i}"))
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 200);
            assert_eq!(res.text().await.unwrap(), format!("value {i}"));
            ok += 1;
        }
    }
    assert_eq!((ok, failed), (20, 10));
    assert_eq!(metrics.panics.with_label_values(&["get"]).get(), 10);
    assert_eq!(
        metrics
            .operations
            .with_label_values(&["get", "panic"])
            .get(),
        10
    );
    assert_eq!(
        metrics.operations.with_label_values(&["get", "ok"]).get(),
        20
    );
    assert_eq!(
        metrics
            .operations
            .with_label_values(&["insert", "ok"])
            .get(),
        20
    );
    assert_eq!(metrics.workers.get(), 2);
    eventually("workers idle", || metrics.workers_busy.get() == 0).await;
    assert_eq!(metrics.tasks_running.get(), 0);
    assert_eq!(server.service().available_permits(), 8);
    server.shutdown().await;
}

/// A batch of many slow reads saturates both workers and fills the bulk queue; single
/// requests sent meanwhile still succeed, served before the waiting batch parts.
#[tokio::test]
async fn single_requests_keep_being_served_under_a_saturating_batch() {
    let server = start(pool(2, 16), Duration::from_millis(50)).await;
    let base = format!("http://{}", server.addr());
    let metrics = server.metrics().clone();
    let client = reqwest::Client::new();
    client
        .put(format!("{base}/v1/objects/exec/_/single"))
        .body("here")
        .send()
        .await
        .unwrap();

    const PARTS: usize = 200;
    let boundary = "exec-boundary";
    let mut body = Vec::new();
    for i in 0..PARTS {
        body.extend(
            format!(
                "--{boundary}\r\ncontent-disposition: form-data; name=part\r\n\
                 x-sn-batch-operation-kind: get\r\nx-sn-batch-operation-key: slow/{i}\r\n\r\n\r\n"
            )
            .into_bytes(),
        );
    }
    body.extend(format!("--{boundary}--\r\n").into_bytes());
    let batch = {
        let request = client
            .post(format!("{base}/v1/objects:batch/exec/_/"))
            .header(
                "content-type",
                format!("multipart/form-data; boundary={boundary}"),
            )
            .body(body);
        tokio::spawn(async move {
            let res = request.send().await.unwrap();
            assert_eq!(res.status(), 200);
            res.text().await.unwrap()
        })
    };
    eventually("batch parts wait for a worker", || {
        metrics
            .executor_queue_depth
            .with_label_values(&["bulk"])
            .get()
            > 0
    })
    .await;

    let (mut served, mut latencies) = (0, Vec::new());
    const SINGLES: usize = 40;
    for _ in 0..SINGLES {
        let started = Instant::now();
        let res = client
            .get(format!("{base}/v1/objects/exec/_/single"))
            .send()
            .await
            .unwrap();
        latencies.push(started.elapsed());
        if res.status() == 200 && res.text().await.unwrap() == "here" {
            served += 1;
        }
    }
    // The batch was still running when the last single request was answered.
    assert!(!batch.is_finished(), "the batch did not saturate the pool");
    assert!(served >= SINGLES * 95 / 100, "served {served} of {SINGLES}");
    latencies.sort();
    // Generous: a single waits for at most one running slow part, never the batch.
    assert!(
        latencies[SINGLES / 2] < Duration::from_secs(5),
        "median {:?}",
        latencies[SINGLES / 2]
    );

    let text = batch.await.unwrap();
    assert_eq!(
        text.matches("x-sn-batch-operation-status: 404").count(),
        PARTS
    );
    assert_eq!(
        metrics
            .operations
            .with_label_values(&["batch_get", "not_found"])
            .get(),
        PARTS as u64
    );
    server.shutdown().await;
}

fn memory_service(config: ServiceConfig) -> (StorageService, Metrics) {
    let metrics = Metrics::new();
    let backend: Arc<dyn Backend> = Arc::new(MemoryBackend::default());
    (
        StorageService::new(backend, &config, metrics.clone()),
        metrics,
    )
}

fn sleeping(duration: Duration) -> background::Work {
    background::work(move || async move {
        tokio::time::sleep(duration).await;
        Ok(1)
    })
}

#[tokio::test]
async fn background_jobs_are_retried_counted_and_drained_at_shutdown() {
    let (service, metrics) = memory_service(pool(2, 8));
    // Fails twice, then succeeds: retried with backoff, counted once as completed.
    let attempts = Arc::new(AtomicU32::new(0));
    let counted = attempts.clone();
    assert!(service.submit_background(
        BackgroundJob::ExpirySweep,
        background::work(move || {
            let n = counted.fetch_add(1, Ordering::SeqCst) + 1;
            async move {
                if n < 3 {
                    Err(format!("attempt {n} fails"))
                } else {
                    Ok(0)
                }
            }
        }),
    ));
    // Always fails (here: panics): counted as failed after every attempt.
    assert!(service.submit_background(
        BackgroundJob::UploadCleanup,
        background::work(|| async { panic!("chore bug") }),
    ));
    for _ in 0..3 {
        assert!(service.submit_background(
            BackgroundJob::ExpirySweep,
            sleeping(Duration::from_millis(20))
        ));
    }

    let report = service.drain(PATIENCE).await;
    assert_eq!(report.background_left, 0);
    assert!(report.on_time);
    assert_eq!(attempts.load(Ordering::SeqCst), 3);
    let count = |vec: &prometheus::IntCounterVec, job: &str| vec.with_label_values(&[job]).get();
    assert_eq!(count(&metrics.background_jobs_completed, "expiry_sweep"), 4);
    assert_eq!(count(&metrics.background_jobs_failed, "upload_cleanup"), 1);
    assert_eq!(count(&metrics.background_jobs_dropped, "expiry_sweep"), 0);
    assert_eq!(metrics.background_jobs_queued.get(), 0);
    assert_eq!(metrics.background_jobs_running.get(), 0);
    // The pool survived the panicking chore.
    assert_eq!(metrics.workers.get(), 2);
    // Closed: later chores are dropped and counted.
    assert!(!service.submit_background(BackgroundJob::ExpirySweep, sleeping(Duration::ZERO)));
    assert_eq!(count(&metrics.background_jobs_dropped, "expiry_sweep"), 1);
}

#[tokio::test]
async fn shutdown_reports_background_jobs_left_undone_and_full_queue_drops() {
    let config = ServiceConfig {
        background_queue: 4,
        ..ServiceConfig::default()
    };
    let (service, metrics) = memory_service(config);
    assert!(service.submit_background(
        BackgroundJob::ExpirySweep,
        sleeping(Duration::from_secs(600))
    ));
    eventually("the first chore runs", || {
        metrics.background_jobs_running.get() == 1
    })
    .await;
    for _ in 0..4 {
        assert!(service.submit_background(
            BackgroundJob::UploadCleanup,
            sleeping(Duration::from_secs(600))
        ));
    }
    // The queue holds 4: the next one is dropped and counted.
    assert!(!service.submit_background(BackgroundJob::UploadCleanup, sleeping(Duration::ZERO)));
    assert_eq!(
        metrics
            .background_jobs_dropped
            .with_label_values(&["upload_cleanup"])
            .get(),
        1
    );
    assert_eq!(metrics.background_jobs_queued.get(), 4);

    let report = service.drain(Duration::from_millis(200)).await;
    assert!(!report.on_time);
    // One running plus four queued were left; the queued ones count as dropped.
    assert_eq!(report.background_left, 5);
    assert_eq!(
        metrics
            .background_jobs_dropped
            .with_label_values(&["upload_cleanup"])
            .get(),
        5
    );
    assert_eq!(metrics.background_jobs_queued.get(), 0);
    assert_eq!(metrics.background_jobs_running.get(), 0);
}

#[tokio::test]
async fn the_expiry_sweep_runs_as_a_background_job() {
    let (service, metrics) = memory_service(ServiceConfig::default());
    let sweeper = service.start_sweeper(Duration::from_millis(10));
    eventually("a sweep completed", || {
        metrics
            .background_jobs_completed
            .with_label_values(&["expiry_sweep"])
            .get()
            >= 2
    })
    .await;
    sweeper.abort();
    assert!(service.drain(PATIENCE).await.on_time);
}
