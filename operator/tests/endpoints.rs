//! The operator's own HTTP endpoints, driven through the router without a socket.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use http::{Request, StatusCode};
use http_body_util::BodyExt;
use strata_operator::metrics::Metrics;
use strata_operator::server::{router, Probes};
use tower::ServiceExt;

async fn get(probes: &Probes, path: &str) -> (StatusCode, String) {
    let response = router(probes.clone())
        .oneshot(Request::get(path).body(axum::body::Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

#[tokio::test]
async fn health_ready_and_metrics() {
    let probes = Probes {
        metrics: Arc::new(Metrics::new()),
        ready: Arc::new(AtomicBool::new(false)),
    };
    assert_eq!(get(&probes, "/healthz").await.0, StatusCode::OK);
    assert_eq!(
        get(&probes, "/readyz").await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    probes.ready.store(true, Ordering::Release);
    assert_eq!(get(&probes, "/readyz").await.0, StatusCode::OK);

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
    let (status, text) = get(&probes, "/metrics").await;
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
