//! The Kubernetes source against a mocked API server (tower-test): StorageServices, their
//! pods (whose /metrics is a local fake target) and Events become pages; API failures are
//! shown, never a 500.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{eventually, fast_settings, get, metrics_text, strip_tags, FakeTarget};
use http::{Request, Response};
use kube::client::Body;
use serde_json::json;
use strata_dashboard::collector::Source;
use strata_dashboard::sources::kubernetes::KubeSource;

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

fn storage_service() -> serde_json::Value {
    json!({
        "apiVersion": "strata.dev/v1alpha1",
        "kind": "StorageService",
        "metadata": {"name": "s1", "namespace": "prod", "uid": "u1", "generation": 3},
        "spec": {"replicas": 2},
        "status": {
            "observedGeneration": 3,
            "replicas": 2,
            "readyReplicas": 1,
            "selector": "app.kubernetes.io/instance=s1,app.kubernetes.io/name=strata-server",
            "endpoint": "http://s1.prod.svc:8888",
            "conditions": [
                {"type": "Ready", "status": "False", "reason": "PodsNotReady",
                 "message": "1 of 2 pods ready", "lastTransitionTime": "2026-11-25T09:00:00Z"},
                {"type": "Progressing", "status": "True", "reason": "RollingOut",
                 "message": "rolling out config abc123", "lastTransitionTime": "2026-11-25T09:00:00Z"},
                {"type": "Degraded", "status": "False", "reason": "AsExpected",
                 "message": "", "lastTransitionTime": "2026-11-25T09:00:00Z"}
            ]
        }
    })
}

fn pod(name: &str, port: u16, labels: serde_json::Value, ready: bool) -> serde_json::Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "prod", "labels": labels},
        "spec": {"containers": [{"name": "server", "image": "x",
                  "ports": [{"name": "http", "containerPort": port}]}]},
        "status": {"phase": "Running", "podIP": "127.0.0.1",
                   "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}],
                   "containerStatuses": [{"name": "server", "image": "x", "imageID": "",
                       "ready": ready, "restartCount": 2}]}
    })
}

fn list(kind: &str, items: Vec<serde_json::Value>) -> serde_json::Value {
    json!({"apiVersion": "v1", "kind": kind, "metadata": {"resourceVersion": "1"}, "items": items})
}

fn respond(status: u16, body: serde_json::Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(&body).unwrap()))
        .unwrap()
}

/// Serves the scenario forever, recording every request line.
fn serve(mut handle: Handle, port: u16, fail_services: bool, seen: Arc<Mutex<Vec<String>>>) {
    tokio::spawn(async move {
        while let Some((req, send)) = handle.next_request().await {
            let line = format!("{} {}", req.method(), req.uri());
            seen.lock().unwrap().push(line);
            let path = req.uri().path().to_owned();
            let query = req.uri().query().unwrap_or("").to_owned();
            let resp = if path == "/apis/strata.dev/v1alpha1/namespaces/prod/storageservices" {
                if fail_services {
                    respond(
                        403,
                        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                        "message": "storageservices.strata.dev is forbidden", "reason": "Forbidden", "code": 403}),
                    )
                } else {
                    respond(200, list("StorageServiceList", vec![storage_service()]))
                }
            } else if path == "/api/v1/namespaces/prod/pods" {
                assert!(
                    query.contains("labelSelector=app.kubernetes.io%2Fname%3Dstrata-server"),
                    "{query}"
                );
                let labels = json!({"app.kubernetes.io/name": "strata-server", "app.kubernetes.io/instance": "s1"});
                let other = json!({"app.kubernetes.io/name": "strata-server", "app.kubernetes.io/instance": "other"});
                respond(
                    200,
                    list(
                        "PodList",
                        vec![
                            pod("s1-0", port, labels.clone(), true),
                            pod("s1-1", 9, labels, false),
                            pod("other-0", port, other, true),
                        ],
                    ),
                )
            } else if path == "/api/v1/namespaces/prod/events" {
                respond(
                    200,
                    list(
                        "EventList",
                        vec![
                            json!({"metadata": {"name": "e1", "namespace": "prod"},
                           "involvedObject": {"kind": "StorageService", "name": "s1", "namespace": "prod"},
                           "type": "Normal", "reason": "ConfigChanged", "message": "rolling pods for config abc123",
                           "count": 1, "lastTimestamp": "2026-11-25T09:00:01Z"}),
                            json!({"metadata": {"name": "e2", "namespace": "prod"},
                           "involvedObject": {"kind": "Pod", "name": "s1-1", "namespace": "prod"},
                           "type": "Warning", "reason": "BackOff", "message": "Back-off restarting failed container",
                           "count": 5, "lastTimestamp": "2026-11-25T09:00:02Z"}),
                            json!({"metadata": {"name": "e3", "namespace": "prod"},
                           "involvedObject": {"kind": "Pod", "name": "unrelated", "namespace": "prod"},
                           "type": "Warning", "reason": "Noise", "message": "not ours",
                           "count": 1, "lastTimestamp": "2026-11-25T09:00:03Z"}),
                        ],
                    ),
                )
            } else {
                respond(
                    404,
                    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                    "message": "not found", "reason": "NotFound", "code": 404}),
                )
            };
            send.send_response(resp);
        }
    });
}

fn mock_client(port: u16, fail: bool) -> (kube::Client, Arc<Mutex<Vec<String>>>) {
    let (svc, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let seen = Arc::new(Mutex::new(Vec::new()));
    serve(handle, port, fail, seen.clone());
    (kube::Client::new(svc, "default"), seen)
}

#[tokio::test]
async fn discovers_services_pods_conditions_and_events() {
    let fake = FakeTarget::start(metrics_text(0, 0, 0, 5)).await;
    let (client, seen) = mock_client(fake.addr.port(), false);
    let source = KubeSource::new(client, Some("prod".to_owned()));

    // Discovery alone: one service with exactly its two pods and its two events.
    let topo = source.discover().await.unwrap();
    assert_eq!(topo.services.len(), 1);
    let s = &topo.services[0];
    assert_eq!((s.namespace.as_str(), s.name.as_str()), ("prod", "s1"));
    assert_eq!((s.desired, s.ready), (Some(2), Some(1)));
    assert_eq!(s.endpoint.as_deref(), Some("http://s1.prod.svc:8888"));
    let pods: Vec<_> = s.pods.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(pods, vec!["s1-0", "s1-1"]);
    assert_eq!(
        s.pods[0].metrics_url.as_deref(),
        Some(format!("http://127.0.0.1:{}/metrics", fake.addr.port()).as_str())
    );
    assert_eq!(s.pods[1].ready, Some(false));
    assert_eq!(s.pods[0].restarts, Some(2));
    assert_eq!(s.events.len(), 2);
    assert_eq!(s.events[0].reason, "BackOff", "newest first");
    assert_eq!(s.events[0].count, 5);
    assert_eq!(s.conditions.len(), 3);

    // The whole dashboard on top of it.
    let fake_text = fake.text.clone();
    let dash = strata_dashboard::start(fast_settings(), Source::Kubernetes(source))
        .await
        .unwrap();
    let base = format!("http://{}", dash.addr());
    eventually("s1-0 scraped", Duration::from_secs(10), || async {
        let (_, body) = get(&format!("{base}/services/prod/s1")).await;
        let text = strip_tags(&body);
        if text.contains("last scrape") {
            Ok(())
        } else {
            Err(text)
        }
    })
    .await;
    *fake_text.lock().unwrap() = metrics_text(2, 0, 0, 9);
    let text = eventually("panic on s1", Duration::from_secs(10), || async {
        let (status, body) = get(&format!("{base}/services/prod/s1")).await;
        assert_eq!(status, 200);
        let text = strip_tags(&body);
        if text.contains("operation get") {
            Ok(text)
        } else {
            Err(text)
        }
    })
    .await;
    for needle in [
        "CRIT",
        "1 / 2 ready",
        "not Ready: PodsNotReady",
        "Progressing",
        "RollingOut",
        "rolling out config abc123",
        "ConfigChanged",
        "Back-off restarting failed container",
        "×5",
        "s1-0",
        "s1-1",
        "Running, NOT ready, 2 restart(s)",
        "http://s1.prod.svc:8888",
        "unreachable since",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
    assert!(
        !text.contains("not ours"),
        "events of other objects are filtered"
    );
    let (_, overview) = get(&format!("{base}/")).await;
    let overview = strip_tags(&overview);
    assert!(overview.contains("prod/ s1"), "{overview}");
    assert!(overview.contains("source: Kubernetes"), "{overview}");
    dash.shutdown().await;

    // Read-only: every API call was a GET.
    let seen = seen.lock().unwrap().clone();
    assert!(!seen.is_empty());
    assert!(seen.iter().all(|l| l.starts_with("GET ")), "{seen:?}");
    fake.stop().await;
}

#[tokio::test]
async fn api_errors_are_shown_not_fatal() {
    let (client, _) = mock_client(9, true);
    let source = KubeSource::new(client, Some("prod".to_owned()));
    let err = source.discover().await.unwrap_err();
    assert!(
        err.to_string().contains("listing StorageServices failed"),
        "{err}"
    );

    let dash = strata_dashboard::start(fast_settings(), Source::Kubernetes(source))
        .await
        .unwrap();
    let base = format!("http://{}", dash.addr());
    let text = eventually("discovery error shown", Duration::from_secs(10), || async {
        let (status, body) = get(&format!("{base}/")).await;
        assert_eq!(status, 200);
        let text = strip_tags(&body);
        if text.contains("discovery failing since") {
            Ok(text)
        } else {
            Err(text)
        }
    })
    .await;
    assert!(text.contains("forbidden"), "{text}");
    dash.shutdown().await;
}
