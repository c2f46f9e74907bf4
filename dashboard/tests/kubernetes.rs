//! The Kubernetes source against a mocked API server (tower-test): StorageServices, their
//! pods (whose /metrics is a local fake target) and Events become pages; API failures are
//! shown, never a 500.

mod common;

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::{eventually, fast_settings, get, metrics_text, strip_tags, FakeTarget};
use futures::channel::mpsc;
use futures::StreamExt;
use http::{Request, Response};
use http_body::Frame;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use kube::client::Body;
use serde_json::json;
use strata_dashboard::collector::Source;
use strata_dashboard::sources::kubernetes::KubeSource;

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

type MockBody = BoxBody<Bytes, Infallible>;
type Handle = tower_test::mock::Handle<Request<Body>, Response<MockBody>>;

fn respond(status: u16, body: serde_json::Value) -> Response<MockBody> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(serde_json::to_vec(&body).unwrap())).boxed())
        .unwrap()
}

/// A watched kind of the mocked API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Services,
    Pods,
}

impl Kind {
    fn of(path: &str) -> Option<Kind> {
        match path {
            "/apis/strata.dev/v1alpha1/namespaces/prod/storageservices" => Some(Kind::Services),
            "/api/v1/namespaces/prod/pods" => Some(Kind::Pods),
            _ => None,
        }
    }
}

/// The mocked API server: what it was asked, and the open watch streams it can push to.
#[derive(Default)]
struct MockApi {
    fail_services: bool,
    /// Every request line (`GET /path?query`).
    seen: Mutex<Vec<String>>,
    /// Open watch responses: newline-delimited WatchEvents are written to these.
    watches: Mutex<Vec<(Kind, mpsc::UnboundedSender<Bytes>)>>,
}

impl MockApi {
    /// List (not watch) requests made for `kind` so far.
    fn lists(&self, kind: Kind) -> usize {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|line| {
                let uri: http::Uri = line.trim_start_matches("GET ").parse().unwrap();
                Kind::of(uri.path()) == Some(kind)
                    && !uri.query().unwrap_or("").contains("watch=true")
            })
            .count()
    }

    /// Watch streams currently open for `kind`.
    fn watching(&self, kind: Kind) -> usize {
        let mut watches = self.watches.lock().unwrap();
        watches.retain(|(_, tx)| !tx.is_closed());
        watches.iter().filter(|(k, _)| *k == kind).count()
    }

    /// Sends one WatchEvent (`ADDED`, `MODIFIED`, `DELETED`) to every open watch of `kind`.
    fn push(&self, kind: Kind, kind_name: &str, object: serde_json::Value) {
        let mut line = serde_json::to_vec(&json!({"type": kind_name, "object": object})).unwrap();
        line.push(b'\n');
        for (k, tx) in self.watches.lock().unwrap().iter() {
            if *k == kind {
                let _ = tx.unbounded_send(Bytes::from(line.clone()));
            }
        }
    }
}

fn pods(port: u16) -> Vec<serde_json::Value> {
    let labels =
        json!({"app.kubernetes.io/name": "strata-server", "app.kubernetes.io/instance": "s1"});
    let other =
        json!({"app.kubernetes.io/name": "strata-server", "app.kubernetes.io/instance": "other"});
    vec![
        pod("s1-0", port, labels.clone(), true),
        pod("s1-1", 9, labels, false),
        pod("other-0", port, other, true),
    ]
}

fn events() -> Vec<serde_json::Value> {
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
    ]
}

/// Serves the scenario forever: lists answer with the fixtures, `watch=true` requests with a
/// stream that stays open and carries whatever the test pushes.
fn serve(mut handle: Handle, port: u16, api: Arc<MockApi>) {
    tokio::spawn(async move {
        while let Some((req, send)) = handle.next_request().await {
            let line = format!("{} {}", req.method(), req.uri());
            api.seen.lock().unwrap().push(line);
            let path = req.uri().path().to_owned();
            let query = req.uri().query().unwrap_or("").to_owned();
            let kind = Kind::of(&path);
            if kind == Some(Kind::Pods) {
                assert!(
                    query.contains("labelSelector=app.kubernetes.io%2Fname%3Dstrata-server"),
                    "{query}"
                );
            }
            let resp = match kind {
                Some(Kind::Services) if api.fail_services => respond(
                    403,
                    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                    "message": "storageservices.strata.dev is forbidden", "reason": "Forbidden", "code": 403}),
                ),
                Some(kind) if query.contains("watch=true") => {
                    assert!(
                        query.contains("resourceVersion="),
                        "watch from a known version: {query}"
                    );
                    let (tx, rx) = mpsc::unbounded::<Bytes>();
                    api.watches.lock().unwrap().push((kind, tx));
                    let body = StreamBody::new(rx.map(|b| Ok::<_, Infallible>(Frame::data(b))));
                    Response::builder()
                        .status(200)
                        .header("content-type", "application/json")
                        .body(BodyExt::boxed(body))
                        .unwrap()
                }
                Some(Kind::Services) => {
                    respond(200, list("StorageServiceList", vec![storage_service()]))
                }
                Some(Kind::Pods) => respond(200, list("PodList", pods(port))),
                None if path == "/api/v1/namespaces/prod/events" => {
                    respond(200, list("EventList", events()))
                }
                None => respond(
                    404,
                    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                    "message": "not found", "reason": "NotFound", "code": 404}),
                ),
            };
            send.send_response(resp);
        }
    });
}

fn mock_client(port: u16, fail_services: bool) -> (kube::Client, Arc<MockApi>) {
    let (svc, handle) = tower_test::mock::pair::<Request<Body>, Response<MockBody>>();
    let api = Arc::new(MockApi {
        fail_services,
        ..Default::default()
    });
    serve(handle, port, api.clone());
    (kube::Client::new(svc, "default"), api)
}

#[tokio::test]
async fn discovers_services_pods_conditions_and_events() {
    let fake = FakeTarget::start(metrics_text(0, 0, 0, 5)).await;
    let (client, api) = mock_client(fake.addr.port(), false);
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
    let seen = api.seen.lock().unwrap().clone();
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
        err.to_string().contains("watching StorageServices failed"),
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

/// `obj` with `metadata.resourceVersion` set, as the API server sends it in watch events.
fn with_version(mut obj: serde_json::Value, version: &str) -> serde_json::Value {
    obj["metadata"]["resourceVersion"] = json!(version);
    obj
}

#[tokio::test]
async fn watch_events_show_without_another_list() {
    let fake = FakeTarget::start(metrics_text(0, 0, 0, 5)).await;
    let (client, api) = mock_client(fake.addr.port(), false);
    let source = KubeSource::new(client, Some("prod".to_owned()));
    let topo = source.discover().await.unwrap();
    assert_eq!(topo.services[0].pods.len(), 2);

    let dash = strata_dashboard::start(fast_settings(), Source::Kubernetes(source.clone()))
        .await
        .unwrap();
    let base = format!("http://{}", dash.addr());
    eventually("both watches open", Duration::from_secs(10), || async {
        let open = (api.watching(Kind::Services), api.watching(Kind::Pods));
        if open.0 > 0 && open.1 > 0 {
            Ok(())
        } else {
            Err(format!("{open:?}"))
        }
    })
    .await;
    let lists = (api.lists(Kind::Services), api.lists(Kind::Pods));
    assert_eq!(lists, (1, 1), "one initial list per kind");

    // The operator scales s1 to 3 and all are ready; a third pod appears; s1-1 goes away.
    let mut svc = with_version(storage_service(), "2");
    svc["spec"]["replicas"] = json!(3);
    svc["status"]["replicas"] = json!(3);
    svc["status"]["readyReplicas"] = json!(3);
    svc["status"]["conditions"][0] = json!({"type": "Ready", "status": "True",
        "reason": "AllPodsReady", "message": "3 of 3 pods ready",
        "lastTransitionTime": "2026-11-25T09:05:00Z"});
    api.push(Kind::Services, "MODIFIED", svc);
    let labels =
        json!({"app.kubernetes.io/name": "strata-server", "app.kubernetes.io/instance": "s1"});
    let port = fake.addr.port();
    api.push(
        Kind::Pods,
        "ADDED",
        with_version(pod("s1-2", port, labels.clone(), true), "3"),
    );
    api.push(
        Kind::Pods,
        "DELETED",
        with_version(pod("s1-1", 9, labels, false), "4"),
    );

    // The source sees it from its stores alone...
    eventually(
        "watch events in the source",
        Duration::from_secs(10),
        || async {
            let topo = source.snapshot().await.map_err(|e| e.to_string())?;
            let s = &topo.services[0];
            let pods: Vec<_> = s.pods.iter().map(|p| p.name.as_str()).collect();
            if (s.desired, s.ready) == (Some(3), Some(3)) && pods == ["s1-0", "s1-2"] {
                Ok(())
            } else {
                Err(format!("{s:?}"))
            }
        },
    )
    .await;
    // ...and so does the page.
    let text = eventually(
        "watch events on the page",
        Duration::from_secs(10),
        || async {
            let (status, body) = get(&format!("{base}/services/prod/s1")).await;
            assert_eq!(status, 200);
            let text = strip_tags(&body);
            if text.contains("s1-2") && !text.contains("s1-1 ") && text.contains("3 / 3 ready") {
                Ok(text)
            } else {
                Err(text)
            }
        },
    )
    .await;
    assert!(text.contains("AllPodsReady"), "{text}");

    // The API server ends the watches (as it does every few minutes): they resume from the
    // last version seen, and later events still arrive.
    api.watches.lock().unwrap().clear();
    eventually("watches resumed", Duration::from_secs(10), || async {
        let open = (api.watching(Kind::Services), api.watching(Kind::Pods));
        if open.0 > 0 && open.1 > 0 {
            Ok(())
        } else {
            Err(format!("{open:?}"))
        }
    })
    .await;
    assert!(
        api.seen
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("watch=true") && l.contains("resourceVersion=4")),
        "pods resumed from the last event's version"
    );
    let labels =
        json!({"app.kubernetes.io/name": "strata-server", "app.kubernetes.io/instance": "s1"});
    api.push(
        Kind::Pods,
        "MODIFIED",
        with_version(pod("s1-0", port, labels, false), "5"),
    );
    eventually(
        "event on a resumed watch",
        Duration::from_secs(10),
        || async {
            let topo = source.snapshot().await.map_err(|e| e.to_string())?;
            let p = &topo.services[0].pods[0];
            if (p.name.as_str(), p.ready) == ("s1-0", Some(false)) {
                Ok(())
            } else {
                Err(format!("{p:?}"))
            }
        },
    )
    .await;

    // No re-list: StorageServices and pods came through the watches.
    assert_eq!((api.lists(Kind::Services), api.lists(Kind::Pods)), lists);
    dash.shutdown().await;
    fake.stop().await;
}
