//! Each service's storage kind (from `spec.storage.type`) is shown on the overview and
//! on the service page, so on-call sees at a glance whether a service can scale out.

use std::time::Duration;

use axum::body::Body;
use http::Request;
use strata_dashboard::collector::Source;
use strata_dashboard::sources::{PodInfo, ServiceInfo, Topology};
use tower::ServiceExt;

async fn get(router: &axum::Router, path: &str) -> String {
    let resp = tokio::time::timeout(
        Duration::from_secs(5),
        router
            .clone()
            .oneshot(Request::get(path).body(Body::empty()).unwrap()),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(resp.status(), 200, "{path}");
    let body = axum::body::to_bytes(resp.into_body(), 1 << 22)
        .await
        .unwrap();
    String::from_utf8(body.to_vec()).unwrap()
}

#[tokio::test]
async fn storage_kind_is_shown_on_overview_and_service_page() {
    let settings = strata_dashboard::Settings::default();
    let (app, _) = strata_dashboard::build(&settings, &Source::Static(vec![]));
    let svc = |name: &str, storage: Option<&str>| ServiceInfo {
        namespace: "prod".into(),
        name: name.into(),
        storage: storage.map(str::to_owned),
        pods: vec![PodInfo {
            name: format!("{name}-0"),
            ..Default::default()
        }],
        ..Default::default()
    };
    app.store.write().unwrap().set_topology(Topology {
        services: vec![
            svc("wide", Some("tiered")),
            svc("solo", Some("filesystem")),
            svc("local", None),
        ],
    });
    let router = strata_dashboard::web::router(app);
    for path in ["/", "/fragments/overview"] {
        let body = get(&router, path).await;
        assert!(body.contains("<th scope=\"col\">Storage</th>"), "{path}");
        for kind in ["tiered", "filesystem", "—"] {
            assert!(
                body.contains(&format!(
                    "<td data-label=\"Storage\" class=\"storage\">{kind}</td>"
                )),
                "{path}: no {kind} cell"
            );
        }
    }
    for (name, kind) in [("wide", "tiered"), ("solo", "filesystem")] {
        for path in [
            format!("/services/prod/{name}"),
            format!("/fragments/services/prod/{name}"),
        ] {
            let body = get(&router, &path).await;
            assert!(
                body.contains(&format!(
                    "<dt>Storage</dt><dd class=\"storage\">{kind}</dd>"
                )),
                "{path}: storage kind missing"
            );
        }
    }
}
