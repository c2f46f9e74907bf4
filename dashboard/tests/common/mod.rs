//! Shared test helpers: a fake metrics target whose text the test controls, fast dashboard
//! settings, and polling.

#![allow(dead_code, missing_docs)]

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::routing::get as route_get;
use axum::Router;

/// A `/metrics` endpoint serving whatever text the test sets.
pub struct FakeTarget {
    pub addr: SocketAddr,
    pub text: Arc<Mutex<String>>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeTarget {
    pub async fn start(initial: String) -> Self {
        let text = Arc::new(Mutex::new(initial));
        let t = text.clone();
        let app = Router::new().route(
            "/metrics",
            route_get(move || {
                let t = t.clone();
                async move { t.lock().unwrap().clone() }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self { addr, text, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}/metrics", self.addr)
    }

    pub fn set(&self, text: String) {
        *self.text.lock().unwrap() = text;
    }

    /// Stops serving: the port refuses connections afterwards.
    pub async fn stop(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

/// Strata metrics text with the given counters (everything else at fixed values).
pub fn metrics_text(panics_get: u64, rejections: u64, http_rejections: u64, ops: u64) -> String {
    format!(
        "# TYPE strata_service_tasks_running gauge\nstrata_service_tasks_running 1\n\
         # TYPE strata_service_tasks_queued gauge\nstrata_service_tasks_queued 0\n\
         # TYPE strata_service_tasks_limit gauge\nstrata_service_tasks_limit 4\n\
         # TYPE strata_http_requests_in_flight gauge\nstrata_http_requests_in_flight 3\n\
         # TYPE strata_http_requests_limit gauge\nstrata_http_requests_limit 100\n\
         # TYPE strata_service_operations_total counter\n\
         strata_service_operations_total{{operation=\"get\",outcome=\"ok\"}} {ops}\n\
         strata_service_operations_total{{operation=\"get\",outcome=\"panic\"}} {panics_get}\n\
         # TYPE strata_service_rejections_total counter\n\
         strata_service_rejections_total{{reason=\"at_capacity\"}} {rejections}\n\
         # TYPE strata_service_panics_total counter\n\
         strata_service_panics_total{{operation=\"get\"}} {panics_get}\n\
         strata_service_panics_total{{operation=\"insert\"}} 0\n\
         # TYPE strata_http_rejections_total counter\nstrata_http_rejections_total {http_rejections}\n\
         # TYPE strata_build_info gauge\nstrata_build_info{{version=\"0.1.0\"}} 1\n\
         # TYPE strata_service_operation_duration_seconds histogram\n\
         strata_service_operation_duration_seconds_bucket{{operation=\"get\",le=\"0.001\"}} {ops}\n\
         strata_service_operation_duration_seconds_bucket{{operation=\"get\",le=\"+Inf\"}} {ops}\n\
         strata_service_operation_duration_seconds_sum{{operation=\"get\"}} 0\n\
         strata_service_operation_duration_seconds_count{{operation=\"get\"}} {ops}\n"
    )
}

/// Dashboard settings for tests: fast scrapes and refreshes on a free local port.
pub fn fast_settings() -> strata_dashboard::Settings {
    strata_dashboard::Settings {
        listen: "127.0.0.1:0".parse().unwrap(),
        scrape_interval: Duration::from_millis(200),
        discovery_interval: Duration::from_millis(200),
        scrape_timeout: Duration::from_millis(1000),
        rate_window: Duration::from_secs(10),
        refresh: Duration::from_millis(500),
        history: Duration::from_secs(120),
        ..Default::default()
    }
}

pub async fn get(url: &str) -> (u16, String) {
    let resp = reqwest::Client::new().get(url).send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap())
}

/// Polls `check` until it returns `Some`, or panics with `what` and the last value.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        match check().await {
            Ok(v) => return v,
            Err(last) => {
                if Instant::now() > deadline {
                    panic!("timed out waiting for {what}; last observation:\n{last}");
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The text of the overview's services table, with tags stripped (for readable asserts).
/// Polls `url` until its HTML contains `needle` (bounded by `timeout`).
pub async fn wait_for_text(url: &str, needle: &str, timeout: Duration) {
    eventually(needle, timeout, || async {
        let (_, body) = get(url).await;
        if body.contains(needle) {
            Ok(())
        } else {
            Err(strip_tags(&body))
        }
    })
    .await
}

pub fn strip_tags(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' => {
                in_tag = false;
                out.push(' ');
            }
            _ if !in_tag => out.push(c),
            _ => {}
        }
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}
