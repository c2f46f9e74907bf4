//! End-to-end through HTTP with fake `/metrics` targets the test controls: the dashboard
//! scrapes them, and its pages show panics, rejections and unreachable targets.

mod common;

use std::time::Duration;

use common::{eventually, fast_settings, get, metrics_text, strip_tags, wait_for_text, FakeTarget};
use strata_dashboard::collector::Source;
use strata_dashboard::sources::local::Target;

fn target(name: &str, url: &str) -> Target {
    format!("{name}={url}").parse().unwrap()
}

#[tokio::test]
async fn panics_appear_on_overview_and_alert_strip_names_the_operation() {
    let fake = FakeTarget::start(metrics_text(0, 0, 0, 10)).await;
    let dash = strata_dashboard::start(
        fast_settings(),
        Source::Static(vec![target("demo", &fake.url())]),
    )
    .await
    .unwrap();
    let base = format!("http://{}", dash.addr());
    // Wait until at least one scrape saw the zero baseline.
    wait_for_text(
        &format!("{base}/"),
        "1 / 1 reachable",
        Duration::from_secs(10),
    )
    .await;
    fake.set(metrics_text(3, 0, 0, 20));
    let body = eventually(
        "panic count on overview",
        Duration::from_secs(10),
        || async {
            let (status, body) = get(&format!("{base}/fragments/overview")).await;
            assert_eq!(status, 200);
            if body.contains(r#"<span class="panics-5m">3</span>"#) {
                Ok(body)
            } else {
                Err(strip_tags(&body))
            }
        },
    )
    .await;
    let text = strip_tags(&body);
    assert!(text.contains("CRIT: FIRING"), "{text}");
    assert!(text.contains("PANIC"), "{text}");
    assert!(text.contains("operation get"), "{text}");
    assert!(text.contains("3 panics"), "{text}");
    assert!(text.contains("local/demo"), "{text}");
    // The full page (no JS needed) says the same, and so does the service page.
    let (_, page) = get(&format!("{base}/")).await;
    assert!(page.contains("operation get"));
    assert!(page.contains(r#"data-src="/fragments/overview""#));
    let (status, svc) = get(&format!("{base}/services/local/demo")).await;
    assert_eq!(status, 200);
    let svc_text = strip_tags(&svc);
    assert!(svc_text.contains("panics since start: get 3"), "{svc_text}");
    assert!(svc.contains("<svg class=\"spark\""));
    dash.shutdown().await;
    fake.stop().await;
}

#[tokio::test]
async fn rejections_give_a_non_zero_rate() {
    let fake = FakeTarget::start(metrics_text(0, 0, 0, 0)).await;
    let dash = strata_dashboard::start(
        fast_settings(),
        Source::Static(vec![target("busy", &fake.url())]),
    )
    .await
    .unwrap();
    let base = format!("http://{}", dash.addr());
    let fake_text = fake.text.clone();
    // Counters climb on every scrape, like a saturated server.
    let bump = tokio::spawn(async move {
        for i in 1..200u64 {
            *fake_text.lock().unwrap() = metrics_text(0, i * 5, i * 2, i * 10);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let row = eventually("non-zero 429 rate", Duration::from_secs(10), || async {
        let (_, body) = get(&format!("{base}/fragments/overview")).await;
        let text = strip_tags(&body);
        // Column order: ops/s, 429/s, 503/s.
        let has_429 = body.contains(r#"data-label="429/s" class="num">"#)
            && !body.contains(r#"data-label="429/s" class="num">0/s<"#)
            && !body.contains(r#"data-label="429/s" class="num">—<"#);
        if has_429 && text.contains("WARN") {
            Ok(text)
        } else {
            Err(text)
        }
    })
    .await;
    assert!(row.contains("rejecting"), "{row}");
    bump.abort();
    dash.shutdown().await;
    fake.stop().await;
}

#[tokio::test]
async fn stopped_target_shows_unreachable_since() {
    let fake = FakeTarget::start(metrics_text(0, 0, 0, 1)).await;
    let url = fake.url();
    let dash = strata_dashboard::start(fast_settings(), Source::Static(vec![target("gone", &url)]))
        .await
        .unwrap();
    let base = format!("http://{}", dash.addr());
    wait_for_text(
        &format!("{base}/fragments/overview"),
        "1 / 1 reachable",
        Duration::from_secs(10),
    )
    .await;
    fake.stop().await;
    let text = eventually("unreachable", Duration::from_secs(10), || async {
        let (status, body) = get(&format!("{base}/")).await;
        assert_eq!(status, 200, "a dead target must never make the page fail");
        let text = strip_tags(&body);
        if text.contains("unreachable since") {
            Ok(text)
        } else {
            Err(text)
        }
    })
    .await;
    assert!(text.contains("UNREACHABLE"), "{text}");
    assert!(text.contains("connection failed"), "{text}");
    let (status, svc) = get(&format!("{base}/services/local/gone")).await;
    assert_eq!(status, 200);
    assert!(strip_tags(&svc).contains("unreachable since"));
    dash.shutdown().await;
}

#[tokio::test]
async fn never_reachable_target_and_empty_dashboard_still_render() {
    // Port 9 (discard) on localhost: nothing listens.
    let dash = strata_dashboard::start(
        fast_settings(),
        Source::Static(vec![target("nowhere", "http://127.0.0.1:9/metrics")]),
    )
    .await
    .unwrap();
    let base = format!("http://{}", dash.addr());
    let (status, body) = get(&format!("{base}/")).await;
    assert_eq!(status, 200);
    assert!(body.contains("as of"));
    eventually("unreachable", Duration::from_secs(10), || async {
        let (_, body) = get(&format!("{base}/fragments/overview")).await;
        let text = strip_tags(&body);
        if text.contains("unreachable since") {
            Ok(())
        } else {
            Err(text)
        }
    })
    .await;
    dash.shutdown().await;

    let empty = strata_dashboard::start(fast_settings(), Source::Static(vec![]))
        .await
        .unwrap();
    let (status, body) = get(&format!("http://{}/", empty.addr())).await;
    assert_eq!(status, 200);
    assert!(body.contains("No StorageService found yet"));
    empty.shutdown().await;
}

#[tokio::test]
async fn read_only_safe_headers_health_and_own_metrics() {
    let fake = FakeTarget::start(metrics_text(0, 0, 0, 1)).await;
    // Credentials in a target URL must never reach a page.
    let secret_url = format!("http://user:hunter2@{}/metrics?token=s3cr3t", fake.addr);
    let dash = strata_dashboard::start(
        fast_settings(),
        Source::Static(vec![target("sec", &secret_url)]),
    )
    .await
    .unwrap();
    let base = format!("http://{}", dash.addr());
    let client = reqwest::Client::new();
    for method in ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"] {
        for path in [
            "/",
            "/fragments/overview",
            "/services/local/sec",
            "/healthz",
            "/nope",
        ] {
            let resp = client
                .request(method.parse().unwrap(), format!("{base}{path}"))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status().as_u16(), 405, "{method} {path}");
            assert_eq!(resp.headers()["allow"], "GET");
        }
    }
    let resp = client.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let resp = client.head(format!("{base}/")).send().await.unwrap();
    assert_eq!(
        resp.status().as_u16(),
        405,
        "every non-GET method is refused"
    );
    let resp = client.get(format!("{base}/")).send().await.unwrap();
    let csp = resp.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(csp.contains("default-src 'none'"));
    assert_eq!(resp.headers()["x-content-type-options"], "nosniff");
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));

    let svc = eventually("scraped", Duration::from_secs(10), || async {
        let (_, body) = get(&format!("{base}/services/local/sec")).await;
        if body.contains("last scrape") {
            Ok(body)
        } else {
            Err(strip_tags(&body))
        }
    })
    .await;
    for page in [svc, get(&format!("{base}/")).await.1] {
        assert!(!page.contains("hunter2"));
        assert!(!page.contains("s3cr3t"));
    }
    let (status, own) = get(&format!("{base}/metrics")).await;
    assert_eq!(status, 200);
    assert!(
        own.contains("strata_dashboard_scrapes_total{result=\"ok\"}"),
        "{own}"
    );
    assert!(own.contains("strata_dashboard_targets 1"), "{own}");
    let (status, body) = get(&format!("{base}/services/local/missing")).await;
    assert_eq!(status, 404);
    assert!(body.contains("No such service"));
    let (status, _) = get(&format!("{base}/static/live.js")).await;
    assert_eq!(status, 200);
    dash.shutdown().await;
    fake.stop().await;
}

/// The pooled executor's numbers, as a pod exports them.
fn executor_text(busy: u64, bulk_queued: u64, cancelled: u64) -> String {
    format!(
        "{}# TYPE strata_service_executor_queue_depth gauge\n\
         strata_service_executor_queue_depth{{priority=\"interactive\"}} 0\n\
         strata_service_executor_queue_depth{{priority=\"bulk\"}} {bulk_queued}\n\
         strata_service_executor_queue_depth{{priority=\"background\"}} 1\n\
         # TYPE strata_service_workers gauge\nstrata_service_workers 64\n\
         # TYPE strata_service_workers_busy gauge\nstrata_service_workers_busy {busy}\n\
         # TYPE strata_service_cancellations_total counter\n\
         strata_service_cancellations_total{{operation=\"get\"}} {cancelled}\n\
         strata_service_cancellations_total{{operation=\"head\"}} 0\n",
        metrics_text(0, 0, 0, 10)
    )
}

#[tokio::test]
async fn service_page_shows_queue_depth_worker_utilisation_and_cancellations_per_pod() {
    let fake = FakeTarget::start(executor_text(0, 0, 0)).await;
    let dash = strata_dashboard::start(
        fast_settings(),
        Source::Static(vec![target("pooled", &fake.url())]),
    )
    .await
    .unwrap();
    let base = format!("http://{}", dash.addr());
    wait_for_text(
        &format!("{base}/"),
        "1 / 1 reachable",
        Duration::from_secs(10),
    )
    .await;
    let fake_text = fake.text.clone();
    // Reads keep being cancelled (clients hanging up) while the pool is busy.
    let bump = tokio::spawn(async move {
        for i in 1..200u64 {
            *fake_text.lock().unwrap() = executor_text(16, 7, i * 4);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let text = eventually(
        "executor numbers on the service page",
        Duration::from_secs(10),
        || async {
            let (status, body) = get(&format!("{base}/fragments/services/local/pooled")).await;
            assert_eq!(status, 200);
            let text = strip_tags(&body);
            if text.contains("16/64 workers busy (25 %)") && !text.contains("cancelled reads: 0/s")
            {
                Ok(text)
            } else {
                Err(text)
            }
        },
    )
    .await;
    assert!(
        text.contains("queued 0 interactive · 7 bulk · 1 background"),
        "{text}"
    );
    assert!(text.contains("executor: pool:"), "{text}");
    bump.abort();

    // A pod on the spawn executor says so instead of showing an empty pool.
    fake.set(format!(
        "{}# TYPE strata_service_workers gauge\nstrata_service_workers 0\n",
        metrics_text(0, 0, 0, 10)
    ));
    eventually("spawn executor named", Duration::from_secs(10), || async {
        let (_, body) = get(&format!("{base}/services/local/pooled")).await;
        let text = strip_tags(&body);
        if text.contains("executor: spawn (a task per operation)") {
            Ok(())
        } else {
            Err(text)
        }
    })
    .await;
    dash.shutdown().await;
    fake.stop().await;
}
