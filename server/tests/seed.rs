//! The seed behaviours of the storage service, through the public API and over HTTP:
//! run-to-completion, panic isolation, service-tier and web-tier admission.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures::StreamExt;
use strata_server::app::{self, RunningServer};
use strata_server::backend::memory::MemoryBackend;
use strata_server::backend::{faults::FaultyBackend, Backend, PayloadStream};
use strata_server::config::{Config, FaultsConfig, ServiceConfig, StorageConfig};
use strata_server::metrics::Metrics;
use strata_server::object::{Metadata, ObjectId, Scopes};
use strata_server::service::{ServiceError, StorageService};

fn id(key: &str) -> ObjectId {
    ObjectId::new("seed".to_owned(), Scopes::default(), key.to_owned()).unwrap()
}

fn body(bytes: &'static [u8]) -> PayloadStream {
    futures::stream::once(async move { Ok(Bytes::from_static(bytes)) }).boxed()
}

fn faults() -> FaultsConfig {
    FaultsConfig {
        panic_key_prefix: Some("panic/".to_owned()),
        delay_key_prefix: Some("slow/".to_owned()),
        delay: Duration::from_millis(300),
    }
}

fn service(max: usize) -> (StorageService, Metrics) {
    let backend: Arc<dyn Backend> = Arc::new(MemoryBackend::default());
    let backend = Arc::new(FaultyBackend::wrap(backend, &faults()).unwrap());
    let metrics = Metrics::new();
    let config = ServiceConfig {
        max_concurrency: max,
        ..ServiceConfig::default()
    };
    (
        StorageService::new(backend, &config, metrics.clone()),
        metrics,
    )
}

#[tokio::test]
async fn dropped_caller_operation_still_completes() {
    let (service, _) = service(4);
    // The caller gives up long before the delayed insert finishes.
    let insert = service.insert(id("slow/k"), Metadata::default(), body(b"kept"));
    assert!(tokio::time::timeout(Duration::from_millis(20), insert)
        .await
        .is_err());
    // The spawned task finishes on its own; wait for its permit to come back.
    for _ in 0..200 {
        if service.available_permits() == 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let got = service.head(id("slow/k"), SystemTime::now()).await.unwrap();
    assert_eq!(got.unwrap().size, Some(4));
}

#[tokio::test]
async fn panic_is_isolated_counted_and_releases_its_permit() {
    let (service, metrics) = service(1);
    let err = service
        .get(id("panic/x"), SystemTime::now())
        .await
        .unwrap_err();
    match &err {
        ServiceError::Panic(message) => assert!(message.contains("injected fault"), "{message}"),
        other => panic!("expected a panic error, got {other:?}"),
    }
    assert_eq!(metrics.panics.with_label_values(&["get"]).get(), 1);
    assert_eq!(
        metrics
            .operations
            .with_label_values(&["get", "panic"])
            .get(),
        1
    );
    // The only permit came back: the next operation runs.
    assert_eq!(service.available_permits(), 1);
    service
        .insert(id("fine"), Metadata::default(), body(b"ok"))
        .await
        .unwrap();
    assert_eq!(metrics.tasks_running.get(), 0);
}

#[tokio::test]
async fn at_capacity_rejects_and_counts() {
    let (service, metrics) = service(2);
    let mut slow = Vec::new();
    for i in 0..2 {
        let s = service.clone();
        slow.push(tokio::spawn(async move {
            s.head(id(&format!("slow/{i}")), SystemTime::now()).await
        }));
    }
    while service.available_permits() > 0 {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let err = service
        .head(id("other"), SystemTime::now())
        .await
        .unwrap_err();
    assert!(matches!(err, ServiceError::AtCapacity(_)), "{err:?}");
    assert_eq!(
        metrics
            .service_rejections
            .with_label_values(&["at_capacity"])
            .get(),
        1
    );
    for task in slow {
        task.await.unwrap().unwrap();
    }
}

async fn start(max_concurrency: usize, max_requests: usize) -> RunningServer {
    let mut config = Config {
        auth: strata_server::auth::AuthConfig::disabled(),
        ..Config::default()
    };
    config.http.addr = "127.0.0.1:0".parse().unwrap();
    config.http.max_requests = max_requests;
    config.http.drain_file =
        std::env::temp_dir().join(format!("strata-seed-{}", uuid::Uuid::new_v4()));
    config.service.max_concurrency = max_concurrency;
    config.storage = StorageConfig::Memory {};
    config.faults = faults();
    app::start(config).await.unwrap()
}

/// Fetches `/metrics` and returns the value of one series.
async fn scrape(client: &reqwest::Client, base: &str, series: &str) -> f64 {
    let text = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    metric(&text, series)
}

/// Starts a GET of a delayed (`slow/`) key in the background; yields its status.
fn slow_get(client: &reqwest::Client, base: &str) -> tokio::task::JoinHandle<reqwest::StatusCode> {
    let (client, url) = (client.clone(), format!("{base}/v1/objects/seed/_/slow/x"));
    tokio::spawn(async move { client.get(url).send().await.unwrap().status() })
}

fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("series {series} not found"))
}

#[tokio::test]
async fn http_panic_is_500_json_and_next_request_succeeds() {
    let server = start(1, 100).await;
    let base = format!("http://{}", server.addr());
    let client = reqwest::Client::new();
    let res = client
        .get(format!("{base}/v1/objects/seed/_/panic/boom"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 500);
    assert_eq!(res.headers()["content-type"], "application/json");
    let body: serde_json::Value = res.json().await.unwrap();
    let detail = body["detail"].as_str().unwrap();
    assert!(
        detail.starts_with("service error: service task failed: injected fault"),
        "{detail}"
    );
    assert_eq!(
        scrape(
            &client,
            &base,
            "strata_service_panics_total{operation=\"get\"}"
        )
        .await,
        1.0
    );
    let res = client
        .put(format!("{base}/v1/objects/seed/_/after"))
        .body("still alive")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    server.shutdown().await;
}

#[tokio::test]
async fn http_service_tier_429_and_web_tier_503() {
    let server = start(1, 100).await;
    let base = format!("http://{}", server.addr());
    let client = reqwest::Client::new();
    let slow = slow_get(&client, &base);
    while server.service().available_permits() > 0 {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let res = client
        .get(format!("{base}/v1/objects/seed/_/y"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 429);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["detail"], "service error: concurrency limit reached");
    assert_eq!(slow.await.unwrap(), 404);
    assert_eq!(
        scrape(
            &client,
            &base,
            "strata_service_rejections_total{reason=\"at_capacity\"}"
        )
        .await,
        1.0
    );
    server.shutdown().await;

    // Web tier: with one request slot held by a slow request, the next gets an empty 503.
    let server = start(10, 1).await;
    let base = format!("http://{}", server.addr());
    let slow = slow_get(&client, &base);
    while server.metrics().http_in_flight.get() == 0 {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let res = client
        .get(format!("{base}/v1/objects/seed/_/y"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 503);
    assert!(res.bytes().await.unwrap().is_empty());
    // Internal routes are never rejected.
    let res = client.get(format!("{base}/health")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(slow.await.unwrap(), 404);
    assert_eq!(
        scrape(&client, &base, "strata_http_rejections_total").await,
        1.0
    );
    server.shutdown().await;
}
